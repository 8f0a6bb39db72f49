"""Weight sharing under the NACA learner: a layer called several times in one forward, and a parameter
held by two modules, learn the sum of every use's update, each computed from the weights the forward
used (as backprop sums the uses' gradients). Compared bit for bit with the plain algorithm of
tests/naca_plain.py (whole forward, then every call's update in call order)."""
import copy

import pytest
import torch
from torch import nn

from naca_plain import LAM, LR, THETA, plain_forward, plain_step, plain_update
from torch_plugin import learn, models, ops
from torch_plugin.learn import NACA
from torch_plugin.nn import NACALinear, NACAOutput, NACASpikingLinear


def repeated_ann():
    sq = NACALinear(8, 8, 4, activation="relu")
    return nn.Sequential(nn.Flatten(), NACALinear(12, 8, 4), sq, sq, NACALinear(8, 6, 4), NACAOutput(6, 4))


def tied_ann():
    a, b = NACALinear(8, 8, 4), NACALinear(8, 8, 4, activation="sigmoid")
    b.weight = a.weight  # two layers, one weight (their biases their own)
    return nn.Sequential(nn.Flatten(), NACALinear(12, 8, 4), a, b, NACAOutput(8, 4))


def plain_module_reads_the_weight():
    a = NACALinear(8, 8, 4)
    reader = nn.Linear(8, 8, bias=False)
    reader.weight = a.weight  # a plain module uses the trained weight after the layer's own call
    return nn.Sequential(nn.Flatten(), NACALinear(12, 8, 4), a, reader, nn.Tanh(), NACAOutput(8, 4))


def repeated_snn():
    base = models.spiking_mlp(12, [9], 4, T=5, seed=1, init_gain=2.0)
    sq = NACASpikingLinear(9, 9, 4, seed=7)
    with torch.no_grad():
        sq.weight.mul_(2.0)
    return nn.Sequential(base[0], base[1], sq, sq, base[2], base[3])


BUILDS = {"repeated_ann": repeated_ann, "tied_ann": tied_ann, "plain_reader": plain_module_reads_the_weight,
          "repeated_snn": repeated_snn}


def batches(n=3, batch=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, 12, generator=g), torch.randint(0, 4, (batch,), generator=g)) for _ in range(n)]


@pytest.mark.parametrize("streaming", [True, False])
@pytest.mark.parametrize("mode", ["sgd", "adam", "guard"])
@pytest.mark.parametrize("case", list(BUILDS))
def test_shared_weights_learn_the_sum_of_their_uses(case, mode, streaming):
    torch.manual_seed(3)
    model = BUILDS[case]()
    ref = copy.deepcopy(model)  # (deepcopy keeps the sharing)
    adam = (lambda m: torch.optim.Adam(m.parameters(), lr=1e-2)) if mode == "adam" else (lambda m: None)
    opt, ref_opt = adam(model), adam(ref)
    learner = NACA(model, lr=LR, lam=LAM, theta=THETA, optimizer=opt, skip_nonfinite=mode == "guard",
                   streaming=streaming)
    for x, y in batches():
        assert torch.equal(learner.step(x, y), plain_step(ref, ref_opt, x, y, mode))
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            assert torch.equal(p, q), name
    assert len(list(model.parameters())) == len(list(ref.parameters()))


def test_the_update_is_the_sum_of_the_calls_updates():
    """The shared layer's step equals subtracting lr times the sum of each call's own update
    (computed alone into zeros): the calls are not lost, nor applied to each other's weights."""
    torch.manual_seed(3)
    model = repeated_ann()
    sq = model[2]
    x, y = batches(n=1)[0]
    _, kept = plain_forward(copy.deepcopy(model), x)
    calls = [saved for m, saved in kept if isinstance(m, NACALinear) and m.weight.shape == (8, 8)]
    assert len(calls) == 2
    total = torch.zeros_like(sq.weight)
    for pre, h in calls:
        u = torch.zeros_like(sq.weight)
        ops.naca_hidden_update_(u, None, pre, h, y, sq.ni, "relu", -1.0, LAM, THETA, from_output=True)
        assert u.abs().sum() > 0
        total += u
    w0 = sq.weight.detach().clone()
    NACA(model, lr=LR, lam=LAM, theta=THETA).step(x, y)
    torch.testing.assert_close(sq.weight.detach(), w0 - LR * total, rtol=0, atol=1e-6)


def test_shared_layer_under_compile_step():
    """The eager first step finds the repeated calls; the compiled steps keep them (aot_eager: the bits)."""
    torch._dynamo.reset()
    torch.manual_seed(3)
    model = repeated_ann()
    ref = copy.deepcopy(model)
    step = learn.compile_step(NACA(model, lr=LR, lam=LAM, theta=THETA), backend="aot_eager")
    for x, y in batches(n=4):
        assert torch.equal(step(x, y), plain_step(ref, None, x, y, "sgd"))
        for p, q in zip(model.parameters(), ref.parameters()):
            assert torch.equal(p, q)
    torch._dynamo.reset()


class SometimesTwice(nn.Module):
    """A forward whose layer calls depend on the data."""

    def __init__(self):
        super().__init__()
        self.first, self.sq, self.out = NACALinear(12, 8, 4), NACALinear(8, 8, 4), NACAOutput(8, 4)

    def forward(self, x):
        h = self.sq(self.first(x))
        if bool(x.sum() > 100):
            h = self.sq(h)
        return self.out(h)


def test_a_call_the_first_step_did_not_make_is_refused_and_named():
    learner = NACA(SometimesTwice(), lr=LR)
    x, y = batches(n=1)[0]
    learner.step(x, y)
    with pytest.raises(RuntimeError, match=r"layer 'sq' ran twice in this forward but once in the first step"):
        learner.step(x + 10, y)
    # streaming=False sees every call before writing: the layer learns from both
    learner = NACA(SometimesTwice(), lr=LR, streaming=False)
    learner.step(x, y)
    learner.step(x + 10, y)
