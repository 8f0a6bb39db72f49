"""Data-parallel NACA and SBP on 2 gloo processes (CPU) equal 1 process on the concatenated batch."""
import os

import pytest
import torch
import torch.distributed as dist

from dist_ranks import spawn
from torch_plugin import learn, models
from torch_plugin.distributed import DistributedLearner, buckets

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

STEPS, CLASSES = 3, 4


def build(kind, seed):
    torch.manual_seed(seed)  # weights and NI differ per rank until the wrapper broadcasts rank 0's
    if kind == "conv":
        return models.conv_net((1, 6, 6), CLASSES, channels=(2,), hidden=8).double()
    if kind.startswith("sbp"):
        return models.sbp_ann(10, 12, CLASSES).double()
    model = models.mlp(10, [12, 7], CLASSES).double()
    if kind == "mlp-frozen":  # NACA still updates a frozen layer (as NACA.step does)
        model[1].weight.requires_grad_(False)
    return model


def data(kind):
    g = torch.Generator().manual_seed(123)
    shape = (1, 6, 6) if kind == "conv" else (10,)  # mlp, mlp-frozen
    # uneven shards (5 + 3) on purpose; one step gives rank 1 an empty shard
    return [(torch.randn(8, *shape, generator=g, dtype=torch.float64),
             torch.randint(0, CLASSES, (8,), generator=g)) for _ in range(STEPS)]


def split(i, rank):
    cut = 8 if i == 1 else 5  # step 1: rank 0 takes all 8, rank 1 an empty batch
    return slice(0, cut) if rank == 0 else slice(cut, 8)


def make_learner(model, optimizer, kind="mlp"):
    if kind == "sbp":
        return learn.SBP(model, lr=3.0, percentage=0.5)
    if kind == "sbp-relax":
        return learn.SBP(model, lr=3.0, relax_steps=5, local_rule="symmetric")
    params = [p for m in model.modules() for p in (getattr(m, "weight", None), getattr(m, "bias", None))
              if isinstance(p, torch.nn.Parameter)]
    opt = None if optimizer is None else torch.optim.Adam(params, lr=1e-2)
    return learn.NACA(model, lr=0.05, optimizer=opt)


def worker(rank, world, kind, optimizer, cap_mb, out_dir, lose_state=False):
    model = build(kind, seed=rank)
    dl = DistributedLearner(make_learner(model, optimizer, kind), bucket_cap_mb=cap_mb)
    if rank == 0:
        torch.save(model.state_dict(), os.path.join(out_dir, "init.pt"))
    for i, (x, y) in enumerate(data(kind)):
        if lose_state and i == 1:
            if rank == 1:  # a rank restarted from scratch: new weights, a fresh optimizer, step 0
                fresh = make_learner(build(kind, seed=7), optimizer, kind)
                model.load_state_dict(fresh.model.state_dict())
                dl.learner.optimizer = None if optimizer is None else torch.optim.Adam(
                    dl.params, lr=1e-2)
                dl.learner.steps = 0
            dl.broadcast_state()  # rank 0's weights, Adam moments and step count
        s = split(i, rank)
        dl.step(x[s], y[s])
    torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    torch.save(dl.learner.state_dict(), os.path.join(out_dir, f"learner{rank}.pt"))


@pytest.mark.parametrize("kind,optimizer,cap_mb,lose_state", [
    ("mlp", None, 25.0, False),
    ("mlp", "adam", 25.0, False),
    ("mlp", None, 0.0005, False),  # ~500 bytes: several buckets, one tensor larger than the cap
    ("conv", None, 25.0, False),
    ("mlp-frozen", "adam", 25.0, False),
    ("mlp", "adam", 25.0, True),  # rank 1 loses its state mid-run; broadcast_state() restores rank 0's
    ("sbp", None, 25.0, False),  # SBP: the ranks add their local-change sums, then each applies sbp_update_
    ("sbp-relax", None, 0.0005, False),
])
def test_two_ranks_equal_one_rank_on_concatenated_batch(kind, optimizer, cap_mb, lose_state, tmp_path):
    spawn(worker, 2, tmp_path, kind, optimizer, cap_mb, str(tmp_path), lose_state)

    init = torch.load(tmp_path / "init.pt")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for key in ranks[0]:  # the replicas are identical, NI included
        assert torch.equal(ranks[0][key], ranks[1][key]), key

    ref = build(kind, seed=0)
    ref.load_state_dict(init)
    learner = make_learner(ref, optimizer, kind)
    for x, y in data(kind):
        learner.step(x, y)
    for key, value in ref.state_dict().items():
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-10, atol=1e-12, msg=key)
    assert not torch.equal(init[next(iter(init))], ranks[0][next(iter(init))])  # it did learn
    if kind == "mlp-frozen":
        assert not torch.equal(init["1.weight"], ranks[0]["1.weight"])  # the frozen layer learned too
    learners = [torch.load(tmp_path / f"learner{r}.pt", weights_only=False) for r in range(2)]
    assert learners[0]["steps"] == learners[1]["steps"] == learner.steps == STEPS


def snn_worker(rank, world, out_dir):
    torch.manual_seed(rank)
    model = models.spiking_mlp(10, [12], CLASSES, T=4, seed=3).double()
    dl = DistributedLearner(learn.NACA(model, lr=0.05))
    x = torch.rand(6, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    torch.save(model[0](x), os.path.join(out_dir, f"spikes{rank}.pt"))  # same input on both ranks
    for i, (xb, yb) in enumerate(data("mlp")):
        s = split(i, rank)
        dl.step(xb[s].abs().clamp(0, 1), yb[s])
    torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))


def test_spiking_ranks_draw_their_own_spikes(tmp_path):
    """A seeded encoder is re-seeded per rank: the same input gives different spike trains on the two
    ranks (not the same noise on every shard), while the replicas stay identical."""
    spawn(snn_worker, 2, tmp_path, str(tmp_path))
    spikes = [torch.load(tmp_path / f"spikes{r}.pt") for r in range(2)]
    x = torch.rand(6, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    assert torch.equal(spikes[0], models.spiking_mlp(10, [12], CLASSES, T=4, seed=3).double()[0](x))  # rank 0: seed 3
    assert not torch.equal(spikes[0], spikes[1])
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key


def test_buckets_respect_cap_dtype_and_order():
    ts = [torch.zeros(10), torch.zeros(10), torch.zeros(100), torch.zeros(3, dtype=torch.float64), torch.zeros(2)]
    bs = buckets(ts, cap_bytes=80)
    assert [[t.numel() for t in b] for b in bs] == [[10, 10], [100], [3], [2]]
    flat = [t for b in bs for t in b]
    assert len(flat) == len(ts) and all(a is b for a, b in zip(flat, ts))


def test_requires_init_process_group():
    if dist.is_initialized():
        pytest.skip("a default process group exists")
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedLearner(learn.NACA(models.mlp(4, [3], 3)))
