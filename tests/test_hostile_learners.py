"""The learners' NaN/Inf policy: ``skip_nonfinite=True`` skips (and counts) an update whose batch
holds NaN/Inf, leaving weights and optimizer state bit-identical, and matches the default on finite
batches; by default the NaN propagates, as backprop + SGD would. The ops themselves do not check
tensor contents (tests/test_hostile.py)."""
import math

import pytest
import torch

from torch_plugin import learn, models


def _nan_batch(shape=(10,)):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, *shape, generator=g, dtype=torch.float64)
    bad = x.clone()
    bad[2, 0] = math.nan
    return x, bad, torch.randint(0, 4, (6,), generator=g)


@pytest.mark.parametrize("optimizer", [False, True])
def test_skip_nonfinite_skips_and_counts(optimizer):
    model = models.mlp(10, [12], 4, seed=0).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2) if optimizer else None
    learner = learn.NACA(model, lr=0.05, optimizer=opt, skip_nonfinite=True)
    x, bad, y = _nan_batch()
    learner.step(x, y)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = None if opt is None else {k: v["exp_avg"].clone() for k, v in opt.state_dict()["state"].items()}
    learner.step(bad, y)
    assert learner.skipped_steps == 1 and learner.steps == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    if opt is not None:
        assert all(torch.equal(opt_before[k], v["exp_avg"]) for k, v in opt.state_dict()["state"].items())
    learner.step(x, y)  # a finite batch trains again
    assert learner.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert learner.state_dict()["skipped_steps"] == 1


def test_skip_nonfinite_matches_default_on_finite_batches():
    a, b = models.mlp(10, [12], 4, seed=0).double(), models.mlp(10, [12], 4, seed=0).double()
    b.load_state_dict(a.state_dict())
    la, lb = learn.NACA(a, lr=0.05), learn.NACA(b, lr=0.05, skip_nonfinite=True)
    x, _, y = _nan_batch()
    for _ in range(3):
        la.step(x, y), lb.step(x, y)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-14)
    assert lb.skipped_steps == 0


def test_default_policy_propagates_nonfinite():
    """Documented default (skip_nonfinite=False): a NaN input makes NaN weights, as backprop + SGD would."""
    model = models.mlp(10, [12], 4, seed=0).double()
    learner = learn.NACA(model, lr=0.05)
    _, bad, y = _nan_batch()
    learner.step(bad, y)
    assert not all(torch.isfinite(p).all() for p in model.parameters())
