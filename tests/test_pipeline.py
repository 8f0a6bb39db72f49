"""Forward-only pipeline-parallel NACA (``distributed.PipelineLearner``) on 2, 3 and 4 gloo processes: the
weights equal one process training the whole model on the microbatches in order (``NACA.step`` per
microbatch, written independently here), and a rank that raises, hangs or dies makes every rank raise
within a bounded time with its stage unchanged."""
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
from torch import nn

from dist_ranks import spawn, store_path
from torch_plugin import learn, models
from torch_plugin.distributed import PipelineLearner, balanced_split
from torch_plugin.nn import NACALinear, NACAOutput

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

CLASSES, M, LR = 4, 3, 0.05
CASES = [("mlp", "sgd", None), ("mlp", "adam", None), ("conv", "sgd", None), ("conv", "adam", None),
         ("conv", "sgd", "user"), ("snn", "sgd", None)]


def build(kind):
    torch.manual_seed(0)  # every rank builds the same model (as PipelineLearner requires)
    if kind == "conv":
        return models.conv_net((1, 6, 6), CLASSES, channels=(2,), hidden=8).double()
    if kind == "snn":
        return models.spiking_mlp(10, [12, 7], CLASSES, T=4, seed=3).double()
    return models.mlp(10, [12, 7, 9], CLASSES).double()


def batches(kind, n=3, batch=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (1, 6, 6) if kind == "conv" else (10,)
    return [(torch.rand(batch, *shape, generator=g, dtype=torch.float64),
             torch.randint(0, CLASSES, (batch,), generator=g)) for _ in range(n)]


def adam(params):
    return torch.optim.Adam(params, lr=1e-2)


def one_process(kind, opt, init, data, microbatches=M):
    """The reference: the whole model, NACA.step on each microbatch in order; (state_dict, logits per batch)."""
    model = build(kind)
    model.load_state_dict(init)
    learner = learn.NACA(model, lr=LR, optimizer=adam(model.parameters()) if opt == "adam" else None)
    logits = [torch.cat([learner.step(xk, yk) for xk, yk in zip(x.tensor_split(microbatches),
                                                                y.tensor_split(microbatches))]) for x, y in data]
    return model.state_dict(), logits


def refusals(rank, world):
    """Every rank raises when one rank built another model, or refused its own arguments."""
    messages = []
    for model, kwargs in ((models.mlp(10, [12 + (rank == world - 1), 7, 9], CLASSES), {}),
                          (models.mlp(10, [12, 7, 9], CLASSES), {"microbatches": 0 if rank == world - 1 else 2})):
        try:
            PipelineLearner(model, **kwargs)
        except ValueError as e:
            messages.append(str(e))
    return messages


def equivalence_worker(rank, world, out):
    torch.save(refusals(rank, world), os.path.join(out, f"refusals{rank}.pt"))
    for kind, opt, split in CASES:
        # conv children: conv, pool, flatten, FC, out: the user's split starts stage 1 with the Flatten
        sizes = ((2, 3) if world == 2 else (1, 3, 1)) if split else None
        pl = PipelineLearner(build(kind), lr=LR, optimizer=adam if opt == "adam" else None, microbatches=M,
                             split=sizes, timeout=60)
        init = pl.full_state_dict()
        logits = [pl.step(x if pl.stage == 0 else None, y) for x, y in batches(kind)]
        final = pl.full_state_dict()
        if rank == 0:
            torch.save((init, final), os.path.join(out, f"{kind}-{opt}-{split}.pt"))
        if pl.is_last_stage:
            torch.save(logits, os.path.join(out, f"{kind}-{opt}-{split}-logits.pt"))
        else:
            assert all(v is None for v in logits)


@pytest.mark.parametrize("world", [2, 3])
def test_pipeline_equals_one_process_on_the_microbatches_in_order(world, tmp_path):
    spawn(equivalence_worker, world, tmp_path, str(tmp_path))
    last = world - 1
    for rank in range(world):
        other, refused = torch.load(tmp_path / f"refusals{rank}.pt")
        assert f"rank {last} built another model" in other and "child 1: ('NACALinear', ((13, 10), (13,)))" in other
        assert refused == "PipelineLearner: microbatches must be an int >= 1, got 0" if rank == last else \
            f"rank {last} refused its arguments (ValueError: PipelineLearner: microbatches must be" in refused
    for kind, opt, split in CASES:
        init, final = torch.load(tmp_path / f"{kind}-{opt}-{split}.pt")
        ref, ref_logits = one_process(kind, opt, init, batches(kind))
        assert list(final) == list(ref)  # the whole model's keys, in order (NI buffers included)
        for key, value in ref.items():
            assert torch.equal(final[key], value), (kind, opt, key)
        logits = torch.load(tmp_path / f"{kind}-{opt}-{split}-logits.pt")
        assert all(torch.equal(a, b) for a, b in zip(logits, ref_logits))
        assert not torch.equal(init[next(iter(init))], final[next(iter(init))])  # it learned


def grid_worker(rank, world, out):
    """data_parallel=2 x 2 stages: replica r gets shard r of each batch (uneven: 5 and 3 samples)."""
    pl = PipelineLearner(build("mlp"), lr=LR, optimizer=adam, microbatches=2, data_parallel=2, timeout=60)
    assert (pl.stage, pl.replica) == divmod(rank, 2)
    init = pl.full_state_dict()
    for x, y in batches("mlp"):
        part = slice(0, 5) if pl.replica == 0 else slice(5, 8)
        pl.step(x[part], y[part])
    final = pl.full_state_dict()
    torch.save(pl.module.state_dict(), os.path.join(out, f"stage{rank}.pt"))
    if rank == 0:
        torch.save((init, final), os.path.join(out, "grid.pt"))
    # replica 1's stage 0 raises: its replica peer hears it through the all-reduce, its next stage through
    # the FAILED headers, the other last stage through the all-reduce again
    model = trapped()
    pl = PipelineLearner(model, lr=LR, optimizer=adam, microbatches=2, split=(4, 2), data_parallel=2, timeout=60)
    x, y = batches("mlp", n=1)[0]
    pl.step(x[:4], y[:4])
    if rank == 1:
        model[3].arm("raise", at=1)
    torch.save(failing_step(pl, x[:4], y[:4]), os.path.join(out, f"grid-failure{rank}.pt"))


def test_data_parallel_times_pipeline_equals_one_process_on_the_concatenated_microbatches(tmp_path):
    spawn(grid_worker, 4, tmp_path, str(tmp_path))
    init, final = torch.load(tmp_path / "grid.pt")
    for stage in range(2):  # the replicas of a stage are identical
        a, b = (torch.load(tmp_path / f"stage{2 * stage + r}.pt") for r in range(2))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    model = build("mlp")
    model.load_state_dict(init)
    learner = learn.NACA(model, lr=LR, optimizer=adam(model.parameters()))
    for x, y in batches("mlp"):
        shards = [(x[:5].tensor_split(2), y[:5].tensor_split(2)), (x[5:].tensor_split(2), y[5:].tensor_split(2))]
        for k in range(2):
            learner.step(torch.cat([s[0][k] for s in shards]), torch.cat([s[1][k] for s in shards]))
    for key, value in model.state_dict().items():  # (sums of two partial sums: not bit for bit)
        torch.testing.assert_close(final[key], value, rtol=1e-10, atol=1e-12, msg=key)
    assert not torch.equal(init["1.weight"], final["1.weight"])
    for rank in range(4):
        kind, message, seconds, unchanged = torch.load(tmp_path / f"grid-failure{rank}.pt")
        assert unchanged and seconds < 30, (rank, seconds)
        if rank == 1:
            assert kind == "ValueError" and "every rank stopped" in message
        else:
            assert kind == "PipelineError" and "rank 1 (stage 0, replica 1) at microbatch 1 raised" in message


class Trap(nn.Module):
    """A parameter-free layer that, once armed, raises, sleeps or ends its process at its call number ``at``."""

    def __init__(self):
        super().__init__()
        self.action, self.at, self.calls = None, 0, 0

    def arm(self, action, at):
        self.action, self.at, self.calls = action, at, 0

    def forward(self, x):
        if self.action is not None:
            if self.calls == self.at:
                if self.action == "raise":
                    raise ValueError("trap: this layer failed")
                if self.action == "exit":
                    os._exit(0)  # (exit code 0: spawn waits for the other ranks instead of killing them)
                time.sleep(self.action)
            self.calls += 1
        return x


def trapped():
    """Flatten, L, | L, Trap, | L, Out: the trap in the middle stage (3 ranks) or the last (2 ranks)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), NACALinear(10, 12, CLASSES), NACALinear(12, 7, CLASSES), Trap(),
                         NACALinear(7, 9, CLASSES), NACAOutput(9, CLASSES)).double()


def failing_step(pl, x, y):
    """(exception type, message, seconds, whether the stage is unchanged) of a step expected to raise."""
    from test_atomic import same, snapshot

    before = (snapshot(pl.learner), pl.steps)
    start = time.perf_counter()
    try:
        pl.step(x if pl.stage == 0 else None, y)
    except Exception as e:  # noqa: BLE001 (recorded for the test)
        kind, message = type(e).__name__, str(e) + " ".join(getattr(e, "__notes__", []))
    else:
        kind, message = None, ""
    seconds = time.perf_counter() - start
    after = (snapshot(pl.learner), pl.steps)
    return kind, message, seconds, all(same(before[0][k], after[0][k]) for k in before[0]) and before[1] == after[1]


def failure_worker(rank, world, out):
    model = trapped()
    trap = model[3]
    pl = PipelineLearner(model, lr=LR, optimizer=adam, microbatches=M, split=(2, 2, 2), timeout=60)
    init = pl.full_state_dict()
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = batches("mlp", n=4)
    results = {}
    pl.step(x0 if pl.stage == 0 else None, y0)  # state to spoil (Adam moments)
    if rank == 1:
        trap.arm("raise", at=1)  # microbatch 1: after the stage has trained microbatch 0
    results["raise"] = failing_step(pl, x1, y1)
    trap.arm(None, 0)
    pl.step(x2 if pl.stage == 0 else None, y2)  # the group is still usable
    bad = y3.clone()
    if rank == 2:
        bad[-1] = (bad[-1] + 1) % CLASSES  # the last microbatch's labels differ on the last stage
    results["labels"] = failing_step(pl, x3, bad)
    final = pl.full_state_dict()
    if rank == 0:
        torch.save((init, final), os.path.join(out, "trained.pt"))
    torch.save(results, os.path.join(out, f"failures{rank}.pt"))
    # A rank that dies mid-step: the others raise within the timeout
    pl = PipelineLearner(model, lr=LR, optimizer=adam, microbatches=M, split=(2, 2, 2), timeout=5)
    if rank == 1:
        trap.arm("exit", at=1)
    torch.save(failing_step(pl, x1, y1), os.path.join(out, f"exit{rank}.pt"))
    os._exit(0)  # (no teardown of a group that lost a rank)


def expect_everywhere(results, scenario, origin, error, world):
    for rank in range(world):
        kind, message, seconds, unchanged = results[rank][scenario]
        assert unchanged, (scenario, rank)  # every rank's stage restored
        if rank == origin:
            assert kind == error and "every rank stopped" in message, (rank, kind, message)
        else:
            assert kind == "PipelineError" and f"rank {origin} (stage {origin}, replica 0)" in message, message
        assert seconds < 30, (scenario, rank, seconds)  # told in-band, well before the 60 s timeout


def test_a_rank_that_raises_makes_every_rank_raise_and_restore_its_stage(tmp_path):
    spawn(failure_worker, 3, tmp_path, str(tmp_path))
    results = [torch.load(tmp_path / f"failures{r}.pt") for r in range(3)]
    expect_everywhere(results, "raise", 1, "ValueError", 3)
    expect_everywhere(results, "labels", 2, "ValueError", 3)
    assert "differ from this rank's y" in results[2]["labels"][1]
    # the failed steps changed nothing anywhere: one process on the two good batches
    init, final = torch.load(tmp_path / "trained.pt")
    model = trapped()
    model.load_state_dict(init)
    learner = learn.NACA(model, lr=LR, optimizer=adam(model.parameters()))
    for i, (x, y) in enumerate(batches("mlp", n=4)):
        if i in (0, 2):
            for xk, yk in zip(x.tensor_split(M), y.tensor_split(M)):
                learner.step(xk, yk)
    assert all(torch.equal(final[k], v) for k, v in model.state_dict().items())
    for rank in (0, 2):  # rank 1 died mid-step: the others raised within the 5 s timeout, stages restored
        kind, message, seconds, unchanged = torch.load(tmp_path / f"exit{rank}.pt")
        assert kind == "PipelineError" and unchanged and seconds < 2 * 5 + 5, (rank, kind, message, seconds)


def hang_worker(rank, world, out):
    model = trapped()
    pl = PipelineLearner(model, lr=LR, microbatches=M, split=(2, 4), timeout=2)
    x, y = batches("mlp", n=1)[0]
    pl.step(x if rank == 0 else None, y)
    if rank == 1:
        model[3].arm(8, at=1)  # sleeps 8 s in microbatch 1
    result = failing_step(pl, x, y)
    torch.save(result, os.path.join(out, f"hang{rank}.pt"))
    os._exit(0)


def test_a_rank_that_hangs_makes_the_others_raise_within_the_timeout(tmp_path):
    spawn(hang_worker, 2, tmp_path, str(tmp_path))
    kind, message, seconds, unchanged = torch.load(tmp_path / "hang0.pt")
    # stage 0 waits at most a timeout for its send, then one for the final all-reduce
    assert kind == "PipelineError" and unchanged and seconds < 3 * 2, (kind, message, seconds)
    kind, _, seconds, unchanged = torch.load(tmp_path / "hang1.pt")
    assert kind is not None and unchanged and seconds >= 8  # the sleeper raises too, once awake


def test_balanced_split_by_parameter_count():
    # mlp 784-1000x4-10: Flatten+L1 (785k) | L2..L4 (1.0M each) | Out (10k): 2 stages (1.79M | 2.01M)
    assert balanced_split(models.mlp(784, [1000] * 4, 10), 2) == (3, 3)
    assert balanced_split(models.mlp(784, [1000] * 4, 10), 5) == (2, 1, 1, 1, 1)
    # L1 1100, L2 505, L3 30, Out 24 parameters: the big first layer alone
    assert balanced_split(models.mlp(10, [100, 5, 5], 4), 2) == (2, 3)
    assert balanced_split(models.mlp(10, [100, 5, 5], 4), 3) == (2, 1, 2)
    # conv net: the pooling follows its conv, the Flatten the second conv; the FC layer (6.3M) alone
    assert balanced_split(models.conv_net((1, 28, 28), 10), 2) == (5, 2)
    # spiking: the encoder joins the first layer, the SpikeRate the output layer
    assert balanced_split(models.spiking_mlp(10, [20, 30], 4), 3) == (2, 1, 2)
    with pytest.raises(ValueError, match="3 stages need at least 3 trained layers"):
        balanced_split(models.mlp(10, [5], 4), 3)


@pytest.mark.parametrize("kind", ["mlp", "conv", "snn"])
def test_hidden_only_stages_chained_equal_the_whole_model(kind):
    """NACA(hidden_only=True) on the first children, NACA on the rest, microbatch after microbatch: the
    whole model's learner, bit for bit (the pipeline's semantics, in one process)."""
    from torch_plugin.distributed.partition import stage_module

    whole, staged = build(kind), build(kind)
    sizes = balanced_split(staged, 2)
    first, second = (stage_module(staged, sizes, s) for s in range(2))
    a = learn.NACA(first, lr=LR, optimizer=adam(first.parameters()), hidden_only=True)
    b = learn.NACA(second, lr=LR, optimizer=adam(second.parameters()))
    ref = learn.NACA(whole, lr=LR, optimizer=adam(whole.parameters()))
    for x, y in batches(kind):
        for xk, yk in zip(x.tensor_split(M), y.tensor_split(M)):
            assert torch.equal(b.step(a.step(xk, yk), yk), ref.step(xk, yk))
    assert all(torch.equal(p, q) for p, q in zip(staged.parameters(), whole.parameters()))
    assert a.num_classes == CLASSES and a.output is None and len(a.layers) == len(a.hidden) >= 1


def test_hidden_only_refuses_an_output_layer_or_no_hidden_layer():
    with pytest.raises(ValueError, match="hidden_only=True needs hidden layers and no output layer, found 1 hidden "
                                         "and 1 output"):
        learn.NACA(models.mlp(4, [3], 2), hidden_only=True)
    with pytest.raises(ValueError, match="found 0 hidden and 0 output"):
        learn.NACA(nn.Sequential(nn.Flatten()), hidden_only=True)
    with pytest.raises(ValueError, match="hidden layer .* has num_classes=3 but the first hidden layer has 2"):
        learn.NACA(nn.Sequential(NACALinear(4, 3, 2), NACALinear(3, 3, 3)), hidden_only=True)


@pytest.fixture
def one_rank(tmp_path):
    """A gloo group of one process (this one): a pipeline of one stage."""
    if dist.is_initialized():
        pytest.skip("a default process group exists")
    dist.init_process_group("gloo", store=dist.FileStore(store_path(tmp_path), 1), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_one_stage_equals_naca_on_the_microbatches_and_predicts(one_rank):
    data = batches("conv")
    pl = PipelineLearner(build("conv"), lr=LR, optimizer=adam, microbatches=M)
    ref, ref_logits = one_process("conv", "adam", pl.full_state_dict(), data)
    for (x, y), expected in zip(data, ref_logits):
        assert torch.equal(pl.step(x, y), expected)
    assert all(torch.equal(pl.full_state_dict()[k], v) for k, v in ref.items()) and pl.steps == 3
    model = build("conv")
    model.load_state_dict(ref)
    with torch.no_grad():  # the pipeline's forward runs per microbatch
        expected = torch.cat([model.eval()(xk) for xk in data[0][0].tensor_split(M)])
    assert torch.equal(pl.predict(data[0][0]), expected) and pl.module.training


@pytest.mark.parametrize("kwargs,error,match", [
    ({"model": models.mlp(4, [3], 2)[1]}, TypeError, "model must be an nn.Sequential"),
    ({"microbatches": 0}, ValueError, "microbatches must be an int >= 1, got 0"),
    ({"data_parallel": 2}, ValueError, "world size 1 is not a multiple of data_parallel=2"),
    ({"timeout": float("nan")}, ValueError, "timeout must be a finite number"),
    ({"optimizer": "adam"}, TypeError, "optimizer must be a factory"),
    ({"optimizer": lambda params: None}, TypeError, "must return a torch.optim.Optimizer, got NoneType"),
    ({"momentum": 0.9}, TypeError, r"unknown arguments \['momentum'\]"),
    ({"split": (2, 3)}, ValueError, "split must give 1 positive child counts"),
    ({"model": nn.Sequential(nn.Flatten(), NACALinear(4, 3, 2))}, ValueError, "exactly one NACAOutput"),
])
def test_bad_arguments_are_refused_in_the_constructor(one_rank, kwargs, error, match):
    kwargs = {"model": models.mlp(4, [3], 2), **kwargs}
    with pytest.raises(error, match=match):
        PipelineLearner(**kwargs)


def test_bad_splits_are_refused():
    from torch_plugin.distributed.partition import check_split

    model = models.conv_net((1, 6, 6), CLASSES, channels=(2,), hidden=8)  # conv, pool, flatten, FC, out
    assert check_split(model, [2, 3], 2) == (2, 3)
    with pytest.raises(ValueError, match="stage 1 .children 1..2. holds no NACA layer"):
        check_split(model, [1, 2, 2], 3)
    with pytest.raises(ValueError, match="the output layer must be in the last stage, it is in stage 0"):
        check_split(nn.Sequential(NACALinear(4, 3, 2), NACAOutput(3, 2), NACALinear(2, 2, 2)), [2, 1], 2)
    with pytest.raises(ValueError, match="summing to the model's 5 children, got \\[2, 2\\]"):
        check_split(model, [2, 2], 2)
    with pytest.raises(TypeError, match="split must be a sequence of ints"):
        check_split(model, 3, 1)


@pytest.mark.parametrize("x,y,match", [
    (torch.rand(6, 10), torch.rand(6), "y must be int64 labels of shape .B,. on every rank, got torch.float32"),
    (torch.rand(2, 10), torch.zeros(2, dtype=torch.long), "a batch of 2 samples cannot be cut into microbatches=3"),
    (torch.rand(5, 10), torch.zeros(6, dtype=torch.long), r"x \(5, 10\) and y \(6,\) must hold as many"),
    (torch.rand(6, 10), torch.full((6,), 4), r"labels must be in \[0, 4\), got values in \[4, 4\]"),
    (None, torch.zeros(6, dtype=torch.long), "x must be a batch"),
    (torch.rand(6, 3), torch.zeros(6, dtype=torch.long), "mat1 and mat2 shapes cannot be multiplied"),
])
def test_a_step_that_raises_changes_nothing(one_rank, x, y, match):
    from test_atomic import same, snapshot

    pl = PipelineLearner(trapped(), lr=LR, optimizer=adam, microbatches=M)
    pl.step(*batches("mlp", n=1)[0])
    before = snapshot(pl.learner)
    with pytest.raises((ValueError, RuntimeError), match=match) as info:
        pl.step(None if x is None else x.double(), y)
    assert "every rank stopped; this rank's stage was restored" in " ".join(info.value.__notes__)
    after = snapshot(pl.learner)
    assert all(same(before[k], after[k]) for k in before) and pl.steps == 1


@pytest.mark.parametrize("atomic", [True, False])
def test_a_layer_failing_mid_step_is_undone_unless_atomic_is_false(one_rank, atomic):
    from test_atomic import same, snapshot

    model = trapped()
    pl = PipelineLearner(model, lr=LR, optimizer=adam, microbatches=M, atomic=atomic)
    (x0, y0), (x1, y1) = batches("mlp", n=2)
    pl.step(x0, y0)
    before = snapshot(pl.learner)
    model[3].arm("raise", at=2)  # the last microbatch, after two have been trained
    with pytest.raises(ValueError, match="trap: this layer failed"):
        pl.step(x1, y1)
    after = snapshot(pl.learner)
    assert all(same(before[k], after[k]) for k in before) == atomic


def test_the_torchrun_example_trains_and_saves_the_whole_model(tmp_path):
    """examples/pipeline_mlp.py under torchrun (2 ranks): the state_dict rank 0 saves is the trained whole
    model, whose accuracy on the test set is the one the last stage printed."""
    from torch_plugin import data, metrics

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    path = tmp_path / "model.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           os.path.join(root, "examples", "pipeline_mlp.py"), "--hidden", "128,64", "--epochs", "2", "--threads", "1",
           "--timeout", "60", "--save", str(path)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 stages (children per stage [2, 2]) x 1 replicas" in out.stdout
    printed = float(out.stdout.split("epoch 2:")[1].split("test accuracy ")[1].split(",")[0])
    model = models.mlp(64, [128, 64], 10)
    model.load_state_dict(torch.load(path))
    ds = data.load_dataset("digits")
    with torch.no_grad():
        predicted = torch.cat([model.eval()(x).argmax(1) for x in ds.x_test.split(64)])
    assert round(metrics.accuracy(predicted, ds.y_test), 4) == printed > 0.6
