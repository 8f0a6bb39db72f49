"""torch.compile(fullgraph=True): the plugin's layers and the learners' steps
compile without graph breaks and give the eager weights (allclose).

fullgraph=True raises on any graph break, so passing proves the plugin adds
none: every op has a fake kernel, the learners' Python (recording flags, saved
activations, step counters) is traceable.
"""
import copy

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from torch_plugin import learn, models

STEPS = 4


def batches(shape, n=STEPS, batch=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, *shape, generator=g, dtype=torch.float64),
             torch.randint(0, classes, (batch,), generator=g)) for _ in range(n)]


def assert_same_weights(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-9, atol=1e-12, msg=name)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def twin_naca(build, optimizer, **kwargs):
    """Two equal models and their NACA learners (lr 0.05, Adam when optimizer == "adam"): eager and compiled."""
    eager = build()
    comp = copy.deepcopy(eager)
    mk = lambda m: learn.NACA(m, lr=0.05, **kwargs,  # noqa: E731
                              optimizer=None if optimizer is None else torch.optim.Adam(m.parameters(), lr=1e-2))
    return eager, comp, mk(eager), mk(comp)


MLP = lambda: models.mlp(12, [16, 8], 4, seed=1).double()  # noqa: E731
CONV = lambda: models.conv_net((1, 8, 8), 4, channels=(3,), hidden=10, seed=1).double()  # noqa: E731
SBP_ANN = lambda: models.sbp_ann(12, 10, 4, seed=1).double()  # noqa: E731


@pytest.mark.parametrize("build,shape", [(MLP, (12,)), (CONV, (1, 8, 8))], ids=["mlp", "conv"])
@pytest.mark.parametrize("optimizer", [None, "adam"])
@pytest.mark.parametrize("check_labels", [True, False])
def test_naca_step_compiles_fullgraph(build, shape, optimizer, check_labels):
    eager, comp, le, lc = twin_naca(build, optimizer, check_labels=check_labels)
    counter = CompileCounterWithBackend("inductor")
    step = learn.compile_step(lc, backend=counter)
    for x, y in batches(shape):
        torch.testing.assert_close(step(x, y), le.step(x, y), rtol=1e-9, atol=1e-12)
    assert counter.frame_count >= 1  # really compiled (fullgraph would have raised on a break)
    assert lc.steps == le.steps == STEPS
    assert_same_weights(eager, comp)


def test_sbp_step_compiles_fullgraph():
    eager = SBP_ANN()
    comp = copy.deepcopy(eager)
    le, lc = learn.SBP(eager), learn.SBP(comp)
    counter = CompileCounterWithBackend("inductor")
    step = learn.compile_step(lc, backend=counter)
    for x, y in batches((12,)):
        torch.testing.assert_close(step(x, y), le.step(x, y), rtol=1e-9, atol=1e-12)
    assert counter.frame_count >= 1  # really compiled (fullgraph would have raised on a break)
    assert lc.steps == le.steps == STEPS
    assert_same_weights(eager, comp)


@pytest.mark.parametrize("optimizer", [None, "adam"])
def test_naca_step_with_skip_nonfinite_compiles(optimizer):
    """compile_step with skip_nonfinite: the update is compiled, the check and the apply step run eagerly;
    a batch with a NaN is skipped and counted as in eager, the others give the eager weights."""
    eager, comp, le, lc = twin_naca(MLP, optimizer, skip_nonfinite=True)
    counter = CompileCounterWithBackend("aot_eager")
    step = learn.compile_step(lc, backend=counter)
    data = batches((12,))
    data[1][0][2, 3] = float("nan")
    for x, y in data:
        step(x, y), le.step(x, y)
    assert counter.frame_count >= 1
    assert lc.skipped_steps == le.skipped_steps == 1 and lc.steps == le.steps == STEPS
    assert_same_weights(eager, comp)
    assert not torch.equal(MLP().state_dict()["1.weight"], comp.state_dict()["1.weight"])  # it learned


def test_local_update_is_one_graph():
    """The pure-ops part of a NACA step (forward + updates into .grad) is a single graph."""
    m = MLP()
    learner = learn.NACA(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1))
    explained = torch._dynamo.explain(learner.local_update)(*batches((12,), n=1)[0])
    assert explained.graph_break_count == 0 and explained.graph_count == 1


@pytest.mark.parametrize("build,shape", [(MLP, (12,)), (CONV, (1, 8, 8))], ids=["mlp", "conv"])
def test_model_forward_and_backprop_compile(build, shape):
    """The layers are ordinary modules for autograd too: forward + backward of a loss compile."""
    eager = build()
    comp = copy.deepcopy(eager)
    f = torch.compile(comp, fullgraph=True)
    x, y = batches(shape, n=1)[0]
    le = torch.nn.functional.cross_entropy(eager(x), y)
    lc = torch.nn.functional.cross_entropy(f(x), y)
    le.backward(), lc.backward()
    torch.testing.assert_close(lc, le)
    for p, q in zip(eager.parameters(), comp.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-12)
