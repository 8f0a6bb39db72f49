"""sbp_update_ against the reference written in ALGORITHMS.md's (pre, post)
orientation, its special cases (lambda_p = 1, lambda_f = 0), and the SBP
learner on the sklearn digits (SNN with and without the spread; ANN)."""
import pytest
import torch

from torch_plugin import learn, models, ops, reference as ref
from torch_plugin.learn.sbp import subset_mask

from conftest import DEVICE_DTYPES, DEVICES, tol


def case(seed, device="cpu", dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    i, h, o = (int(torch.randint(1, 30, (1,), generator=g)) for _ in range(3))
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    c = dict(w_in=mk(h, i), w_out=mk(o, h), dw_in=mk(h, i), dw_out=mk(o, h))
    if seed % 3 == 1:  # zero rows/columns and an all-LTP matrix: the N(v) sum-0 branch
        c["dw_in"][0] = 0
        c["dw_out"] = c["dw_out"].abs()
    c = {k: v.to(device, dtype) for k, v in c.items()}
    c["mask"] = (torch.rand(h, i, generator=g) < 0.5).to(device)
    return c


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("use_mask", [False, True])
def test_sbp_update_matches_reference(device, dtype, seed, use_mask):
    c = case(seed, device, dtype)
    mask = c["mask"] if use_mask else None
    f, a_in, a_out = [(0.2, 0.1, 0.05), (1.0, 0.3, 0.2), (0.5, 1.0, 1.0)][seed % 3]
    w_in_r, w_out_r = ref.sbp_update(*(c[k].double().cpu() for k in ("w_in", "w_out", "dw_in", "dw_out")),
                                     None if mask is None else mask.cpu(), f, a_in, a_out)
    w_in, w_out = c["w_in"].clone(), c["w_out"].clone()
    ops.sbp_update_(w_in, w_out, c["dw_in"], c["dw_out"], mask, f, a_in, a_out)
    rtol, atol = tol(dtype)
    torch.testing.assert_close(w_in.double().cpu(), w_in_r, rtol=rtol, atol=atol)
    torch.testing.assert_close(w_out.double().cpu(), w_out_r, rtol=rtol, atol=atol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(4))
def test_lambda_p_one_is_exactly_no_subset(device, seed):
    c = case(seed, device, torch.float32)
    a = (c["w_in"].clone(), c["w_out"].clone())
    b = (c["w_in"].clone(), c["w_out"].clone())
    ops.sbp_update_(*a, c["dw_in"], c["dw_out"], None, 0.3, 0.1, 0.05)
    ops.sbp_update_(*b, c["dw_in"], c["dw_out"], torch.ones_like(c["mask"]), 0.3, 0.1, 0.05)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert subset_mask(5, 7, 1.0, 0) is None


@pytest.mark.parametrize("use_mask", [False, True])
def test_lambda_f_zero_is_the_local_rule(use_mask):
    c = case(2)
    w_in, w_out = c["w_in"].clone(), c["w_out"].clone()
    ops.sbp_update_(w_in, w_out, c["dw_in"], c["dw_out"], c["mask"] if use_mask else None, 0.0, 0.1, 0.05)
    torch.testing.assert_close(w_in, c["w_in"] + 0.1 * c["dw_in"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w_out, c["w_out"] + 0.05 * c["dw_out"], rtol=1e-12, atol=1e-12)


def test_subset_mask_seeded_and_sized():
    m = subset_mask(6, 10, 0.3, seed=4)
    assert m.shape == (6, 10) and m.dtype == torch.bool and (m.sum(1) == 3).all()
    assert torch.equal(m, subset_mask(6, 10, 0.3, seed=4)) and not torch.equal(m, subset_mask(6, 10, 0.3, seed=5))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_sbp(device):
    c = case(0, device, torch.float32)
    torch.library.opcheck(torch.ops.naca.sbp_update_.default,
                          (c["w_in"], c["w_out"], c["dw_in"], c["dw_out"], c["mask"], 0.2, 0.1, 0.05))
    torch.library.opcheck(torch.ops.naca.sbp_update_.default,
                          (c["w_in"], c["w_out"], c["dw_in"], c["dw_out"], None, 0.2, 0.1, 0.05))


@pytest.mark.parametrize("arg,change", [
    ("dw_in", lambda c: c.update(dw_in=torch.randn(3, 3, dtype=torch.float64))),
    ("dw_out", lambda c: c.update(dw_out=c["dw_out"].float())),
    ("w_out", lambda c: c.update(w_out=torch.randn(2, c["w_in"].shape[0] + 1, dtype=torch.float64),
                                 dw_out=torch.randn(2, c["w_in"].shape[0] + 1, dtype=torch.float64))),
    ("mask", lambda c: c.update(mask=c["mask"][:, :1].clone())),
    ("mask", lambda c: c.update(mask=c["mask"].int())),
    ("fraction", lambda c: c.update(f=-0.1)),
    ("alpha_in", lambda c: c.update(a=float("nan"))),
    ("w_in", lambda c: c.update(w_in=c["w_in"].int())),
])
def test_sbp_update_rejects(arg, change):
    c = case(5)
    change(c)
    w_in0, w_out0 = c["w_in"].clone(), c["w_out"].clone()
    with pytest.raises(RuntimeError, match=f"naca::sbp_update_: argument '{arg}'"):
        ops.sbp_update_(c["w_in"], c["w_out"], c["dw_in"], c["dw_out"], c["mask"], c.get("f", 0.2), c.get("a", 0.1), 0.05)
    assert torch.equal(c["w_in"], w_in0) and torch.equal(c["w_out"], w_out0)


def test_sbp_update_rejects_aliasing():
    c = case(0)
    with pytest.raises(RuntimeError, match="shares memory"):
        ops.sbp_update_(c["w_in"], c["w_out"], c["w_in"], c["dw_out"], None, 0.2, 0.1, 0.05)


from test_snn import digits, run_epochs  # noqa: E402


def sbp_snn_accuracy(fraction, percentage=1.0):
    xtr, ytr, xte, yte = digits()
    torch.manual_seed(0)
    m = models.sbp_snn(64, 200, 10, T=20, seed=0)
    learner = learn.SBP(m, lr=2.0, fraction=fraction, percentage=percentage, seed=0)
    return run_epochs(learner, m, xtr, ytr, xte, yte, epochs=5)


def test_sbp_snn_learns_digits_with_and_without_spread():
    # Measured (same seed, 64-200-10, T=20, lr=2, 5 epochs): SBP 0.927, lambda_p=0.5 0.950, no spread 0.929.
    with_sbp, without = sbp_snn_accuracy(0.2), sbp_snn_accuracy(0.0)
    partial = sbp_snn_accuracy(0.2, percentage=0.5)
    print(f"SBP SNN digits test accuracy: with spread {with_sbp:.3f}, lambda_p=0.5 {partial:.3f}, without {without:.3f}")
    assert with_sbp > 0.85 and without > 0.85 and partial > 0.85


def test_sbp_ann_learns_digits_and_state_dict():
    xtr, ytr, xte, yte = digits()
    torch.manual_seed(0)
    m = models.sbp_ann(64, 200, 10, seed=0)
    learner = learn.SBP(m, lr=10.0, fraction=0.2)
    acc = run_epochs(learner, m, xtr, ytr, xte, yte, epochs=5)
    print(f"SBP ANN digits test accuracy: {acc:.3f}")
    assert acc > 0.85  # measured 0.932
    other = learn.SBP(models.sbp_ann(64, 200, 10), percentage=1.0)
    other.load_state_dict({**learner.state_dict(), "percentage": 0.5})
    assert other.steps == learner.steps and other.mask is not None


def test_sbp_rejects_other_models():
    with pytest.raises(ValueError, match="SBP"):
        learn.SBP(models.mlp(8, [4, 4], 3))
    with pytest.raises(ValueError, match="SBP"):
        learn.SBP(models.spiking_mlp(8, [4, 4], 3))
