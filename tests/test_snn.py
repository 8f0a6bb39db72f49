"""The spiking ops (lif_forward, naca_snn_update_) against the step-by-step
reference, the spiking layers, and NACA training a spiking MLP end to end."""
import copy

import pytest
import torch

from torch_plugin import learn, models, ops, reference as ref
from torch_plugin.nn import LIF, BernoulliEncoder, NACASpikingLinear

from conftest import DEVICE_DTYPES, DEVICES, NoNacaOps, tol

SEEDS = [0, 1, 2]


def rand_seq(g, t, b, n, scale=0.6):
    return torch.randn(t, b, n, generator=g, dtype=torch.float64) * scale + 0.3


def shapes(seed):
    g = torch.Generator().manual_seed(seed)
    t = [1, 2, 7, 20][seed % 4]
    return g, t, int(torch.randint(1, 9, (1,), generator=g)), int(torch.randint(1, 40, (1,), generator=g))


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("seed", SEEDS + [3])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_lif_forward_matches_reference(device, dtype, seed, reset):
    g, t, b, n = shapes(seed)
    cur = rand_seq(g, t, b, n)
    v0 = torch.randn(b, n, generator=g, dtype=torch.float64) * 0.3 if seed % 2 else None
    s0 = (torch.rand(b, n, generator=g) > 0.5).double() if seed % 2 else None
    dec, th = [(0.2, 0.5), (0.9, 1.0), (0.5, 0.3)][seed % 3]
    to = lambda x: None if x is None else x.to(device, dtype)
    s, v = ops.lif_forward(to(cur), dec, th, reset, to(v0), to(s0))
    # The reference runs on the op's dtype rounding of the input, in float64.
    s_r, v_r = ref.lif_forward(to(cur).double().cpu(), dec, th, reset,
                               None if v0 is None else to(v0).double().cpu(), None if s0 is None else to(s0).double().cpu())
    assert s.shape == v.shape == (t, b, n) and s.dtype == v.dtype == dtype
    rtol, atol = tol(dtype)
    if dtype in (torch.float32, torch.float64):
        assert torch.equal(s.double().cpu(), s_r)
    else:  # a voltage within rounding of the threshold may flip a spike: allow a few
        assert (s.double().cpu() != s_r).float().mean() < 0.05
        return
    torch.testing.assert_close(v.double().cpu(), v_r, rtol=rtol, atol=atol)


def test_lif_hand_trace():
    # I = 0.4, 0.3, 0.6: V0 = 0.4 (no spike), V1 = 0.08 + 0.3 = 0.38, V2 = 0.076 + 0.6 = 0.676 (spike).
    s, v = ops.lif_forward(torch.tensor([0.4, 0.3, 0.6], dtype=torch.float64).view(3, 1, 1))
    torch.testing.assert_close(v.flatten(), torch.tensor([0.4, 0.38, 0.676], dtype=torch.float64))
    assert s.flatten().tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("seed", SEEDS + [3])
@pytest.mark.parametrize("all_steps", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_naca_snn_update_matches_reference(device, dtype, seed, all_steps, with_bias):
    g, t, b, h = shapes(seed)
    i = int(torch.randint(1, 30, (1,), generator=g))
    w = torch.randn(h, i, generator=g, dtype=torch.float64) * 0.3
    bias = torch.randn(h, generator=g, dtype=torch.float64) if with_bias else None
    pre = (torch.rand(t, b, i, generator=g) > 0.6).double()
    # The threshold is drawn per seed (th - lens = 0.3, 0.1, 0.6, -0.2), so an op that ignored it
    # (or used the default 0.5) would move the eligibility window and fail.
    th, lens, lr = [0.8, 0.3, 0.8, 0.3][seed], [0.5, 0.2, 0.2, 0.5][seed], 0.05
    s, v = ref.lif_forward(rand_seq(g, t, b, h), 0.2, th)
    sig = torch.randn(b, h, generator=g, dtype=torch.float64)
    to = lambda x: None if x is None else x.to(device, dtype)
    # The reference runs on the op's dtype rounding of the inputs, in float64.
    c64 = lambda x: None if x is None else x.double().cpu()
    wd, bd, vd = to(w), to(bias), to(v)
    w_r, b_r = ref.naca_snn_update(c64(wd), c64(bd), pre, c64(vd), s, c64(to(sig)), th, lens, lr, all_steps)
    ops.naca_snn_update_(wd, bd, to(pre), vd, to(s), to(sig), th, lens, lr, all_steps)
    rtol, atol = tol(dtype)
    torch.testing.assert_close(wd.double().cpu(), w_r, rtol=rtol, atol=atol * 10)
    if with_bias:
        torch.testing.assert_close(bd.double().cpu(), b_r, rtol=rtol, atol=atol * 10)


def chain_case(g, t, b, h, i, current, reset, with_bias=True, decay=0.2, th=0.5):
    """Weights, inputs and the LIF run they drive (currents W x_t + b, or their sigmoid)."""
    w = torch.randn(h, i, generator=g, dtype=torch.float64) * 0.5
    bias = torch.randn(h, generator=g, dtype=torch.float64) * 0.3 if with_bias else None
    pre = (torch.rand(t, b, i, generator=g) > 0.5).double()
    a = torch.einsum("hi,tbi->tbh", w, pre) + (0 if bias is None else bias)
    cur = torch.sigmoid(a) if current == "sigmoid" else a
    s, v = ref.lif_forward(cur, decay, th, reset)
    return w, bias, pre, cur, s, v


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("seed", SEEDS + [3])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("current", ["linear", "sigmoid"])
def test_naca_snn_chain_update_matches_reference(device, dtype, seed, reset, current):
    g, t, b, h = shapes(seed)
    i = int(torch.randint(1, 30, (1,), generator=g))
    # decay and threshold drawn per seed (seed 0 has T = 1, where the decay plays no part), so an
    # op that ignored either (or used the defaults 0.2 / 0.5) would recover other currents or
    # another eligibility window and fail.
    dec, th = [(0.2, 0.8), (0.6, 0.3), (0.1, 0.8), (0.6, 0.3)][seed]
    lens, lr = [0.5, 0.2, 0.3, 0.5][seed], 0.05
    w, bias, pre, _, s, v = chain_case(g, t, b, h, i, current, reset, with_bias=seed % 2 == 0, decay=dec, th=th)
    sig = torch.randn(b, h, generator=g, dtype=torch.float64)
    to = lambda x: None if x is None else x.to(device, dtype)
    wd, bd, vd, sd = to(w), to(bias), to(v), to(s)
    # The reference runs on the op's dtype rounding of the inputs, in float64.
    c64 = lambda x: None if x is None else x.double().cpu()
    w_r, b_r = ref.naca_snn_chain_update(c64(wd), c64(bd), pre, c64(vd), c64(sd), c64(to(sig)), dec, th, lens,
                                         reset, current, lr)
    ops.naca_snn_chain_update_(wd, bd, to(pre), vd, sd, to(sig), dec, th, lens, reset, current, lr)
    rtol, atol = tol(dtype)
    torch.testing.assert_close(wd.double().cpu(), w_r, rtol=rtol, atol=atol * 10)
    if bias is not None:
        torch.testing.assert_close(bd.double().cpu(), b_r, rtol=rtol, atol=atol * 10)


class _AuthorsSpike(torch.autograd.Function):
    """The authors' spike: Heaviside forward, grad * (1[V > th - lens] - s_{t-1}) backward."""

    @staticmethod
    def forward(ctx, v, s_prev, th, lens):
        ctx.save_for_backward(v, s_prev)
        ctx.th, ctx.lens = th, lens
        return (v > th).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        v, s_prev = ctx.saved_tensors
        return grad * ((v > ctx.th - ctx.lens).to(v.dtype) - s_prev), None, None, None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("current", ["linear", "sigmoid"])
@pytest.mark.parametrize("dec,th", [(0.2, 0.5), (0.6, 0.3), (0.1, 0.8)])
def test_naca_snn_chain_update_is_the_authors_autograd(device, reset, current, dec, th):
    """Independent of the op's recurrence and of reference.py: the authors' mechanism
    itself (membrane not detached, signal sent into the last spikes, W.grad by autograd,
    the current not recovered but computed from W and x) gives the op's update."""
    g = torch.Generator().manual_seed(7)
    t, b, h, i, lens = 20, 16, 30, 40, 0.2
    w = (torch.randn(h, i, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    bias = (torch.randn(h, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    pre = (torch.rand(t, b, i, generator=g) > 0.5).double()
    v = s = torch.zeros(b, h, dtype=torch.float64)
    volts, spikes = [], []
    for x in pre:
        a = x @ w.T + bias
        kept = v - th * s if reset == "soft" else v * (1 - s)
        v = dec * kept + (torch.sigmoid(a) if current == "sigmoid" else a)
        s = _AuthorsSpike.apply(v, s.detach(), th, lens)
        volts.append(v.detach())
        spikes.append(s.detach())
    sig = torch.randn(b, h, generator=g, dtype=torch.float64)
    s.backward(sig)
    assert w.grad.abs().max() > 0.1  # a non-trivial case
    wd, bd = w.detach().clone().to(device), bias.detach().clone().to(device)
    to = lambda x: x.to(device)
    ops.naca_snn_chain_update_(wd, bd, to(pre), to(torch.stack(volts)), to(torch.stack(spikes)), to(sig),
                               dec, th, lens, reset, current, 1.0)
    torch.testing.assert_close(w.detach() - wd.cpu(), w.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(bias.detach() - bd.cpu(), bias.grad, rtol=1e-9, atol=1e-12)
    # and differs from the step-wise rule at t = T-1 only (the chain reaches earlier steps)
    w1 = w.detach().clone()
    ops.naca_snn_update_(w1, None, pre, torch.stack(volts), torch.stack(spikes), sig, th, lens, 1.0, False)
    assert not torch.allclose(w.detach() - w1, w.grad)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_spiking_ops(device):
    g = torch.Generator().manual_seed(0)
    cur = rand_seq(g, 4, 3, 5).float().to(device)
    torch.library.opcheck(torch.ops.naca.lif_forward.default, (cur, 0.2, 0.5, "hard", None, None))
    torch.library.opcheck(torch.ops.naca.lif_forward.default, (cur, 0.5, 0.4, "soft", torch.zeros(3, 5, device=device), torch.ones(3, 5, device=device)))
    s, v = ops.lif_forward(cur)
    w = torch.randn(5, 6, device=device)
    pre = (torch.rand(4, 3, 6, device=device) > 0.5).float()
    args = (w, torch.zeros(5, device=device), pre, v, s, torch.randn(3, 5, device=device), 0.5, 0.5, 0.01, True)
    torch.library.opcheck(torch.ops.naca.naca_snn_update_.default, args)


def naca_snn_args():
    s, v = ops.lif_forward(torch.rand(3, 2, 4))
    return dict(weight=torch.randn(4, 5), bias=torch.randn(4), pre=(torch.rand(3, 2, 5) > 0.5).float(),
                volts=v, spikes=s, signal=torch.randn(2, 4))


@pytest.mark.parametrize("arg,change", [
    ("pre_spikes", dict(pre=torch.rand(3, 2, 6))),
    ("pre_spikes", dict(pre=torch.rand(2, 5))),
    ("voltages", dict(volts=torch.rand(2, 2, 4))),
    ("spikes", dict(spikes=torch.rand(3, 2, 4).double())),
    ("signal", dict(signal=torch.randn(3, 4))),
    ("weight", dict(weight=torch.randn(4, 5).int())),
    ("bias", dict(bias=torch.randn(5))),
    ("lr", dict(lr=float("nan"))),
    ("threshold", dict(th=float("inf"))),
])
def test_naca_snn_update_rejects(arg, change):
    a = naca_snn_args()
    a.update(change)
    w0 = a["weight"].clone()
    with pytest.raises(RuntimeError, match=f"naca::naca_snn_update_: argument '{arg}'"):
        ops.naca_snn_update_(a["weight"], a["bias"], a["pre"], a["volts"], a["spikes"], a["signal"],
                             a.get("th", 0.5), 0.5, a.get("lr", 0.1))
    if a["weight"].dtype == w0.dtype:
        assert torch.equal(a["weight"], w0)


@pytest.mark.parametrize("arg,change", [
    ("voltages", dict(volts=torch.rand(3, 2, 5))),
    ("signal", dict(signal=torch.randn(2, 4).double())),
    ("decay", dict(decay=float("nan"))),
    ("reset", dict(reset="none")),
    ("current", dict(current="tanh")),
    ("lr", dict(lr=float("inf"))),
])
def test_naca_snn_chain_update_rejects(arg, change):
    a = naca_snn_args()
    a.update(change)
    w0, b0 = a["weight"].clone(), a["bias"].clone()
    with pytest.raises(RuntimeError, match=f"naca::naca_snn_chain_update_: argument '{arg}'"):
        ops.naca_snn_chain_update_(a["weight"], a["bias"], a["pre"], a["volts"], a["spikes"], a["signal"],
                                   a.get("decay", 0.2), 0.5, 0.5, a.get("reset", "hard"), a.get("current", "linear"),
                                   a.get("lr", 0.1))
    assert torch.equal(a["weight"], w0) and torch.equal(a["bias"], b0)


@pytest.mark.parametrize("arg,call", [
    ("current", lambda: ops.lif_forward(torch.rand(3, 4))),
    ("current", lambda: ops.lif_forward(torch.rand(0, 2, 4))),
    ("current", lambda: ops.lif_forward(torch.rand(3, 2, 4).int())),
    ("reset", lambda: ops.lif_forward(torch.rand(3, 2, 4), reset="none")),
    ("v_init", lambda: ops.lif_forward(torch.rand(3, 2, 4), v_init=torch.rand(2, 5))),
    ("s_init", lambda: ops.lif_forward(torch.rand(3, 2, 4), s_init=torch.rand(2, 4).double())),
    ("decay", lambda: ops.lif_forward(torch.rand(3, 2, 4), decay=float("nan"))),
])
def test_lif_forward_rejects(arg, call):
    with pytest.raises(RuntimeError, match=f"naca::lif_forward: argument '{arg}'"):
        call()


@pytest.mark.parametrize("device", DEVICES)
def test_naca_snn_update_under_inference_mode_and_leaf(device):
    """The op updates inference tensors inside torch.inference_mode() and a leaf that requires
    grad (outside it) in place, each to ref.naca_snn_update's values."""
    a = {k: v.double().to(device) for k, v in naca_snn_args().items()}
    c = lambda x: x.cpu()
    w_r, b_r = ref.naca_snn_update(c(a["weight"]), c(a["bias"]), c(a["pre"]), c(a["volts"]), c(a["spikes"]),
                                   c(a["signal"]), 0.4, 0.3, 0.1, True)
    assert not torch.allclose(w_r, a["weight"].cpu())  # a non-trivial update
    with torch.inference_mode():
        w, bias = a["weight"].clone(), a["bias"].clone()
        args = [x.clone() for x in (a["pre"], a["volts"], a["spikes"], a["signal"])]
        assert w.is_inference() and all(x.is_inference() for x in args)
        ops.naca_snn_update_(w, bias, *args, 0.4, 0.3, 0.1)
    torch.testing.assert_close(w.cpu(), w_r, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(bias.cpu(), b_r, rtol=1e-10, atol=1e-12)
    w = a["weight"].clone().requires_grad_(True)
    v0 = w._version
    ops.naca_snn_update_(w, None, a["pre"], a["volts"], a["spikes"], a["signal"], 0.4, 0.3, 0.1)
    assert w._version > v0 and w.grad_fn is None and w.is_leaf and w.requires_grad
    torch.testing.assert_close(w.detach().cpu(), w_r, rtol=1e-10, atol=1e-12)


def test_lif_module_surrogate_path_matches_op():
    g = torch.Generator().manual_seed(0)
    cur = rand_seq(g, 6, 4, 7).float()
    lif = LIF()
    s_op, v_op = lif.run(cur)
    c = cur.clone().requires_grad_(True)
    s_sg, v_sg = lif.run(c)
    assert torch.equal(s_op, s_sg.detach())
    torch.testing.assert_close(v_op, v_sg.detach())
    s_sg.sum().backward()
    assert c.grad is not None and c.grad.abs().sum() > 0
    with pytest.raises(RuntimeError, match="surrogate"):
        LIF(surrogate=False).run(cur.clone().requires_grad_(True))


def surrogate_closed_form(v, th, slope):
    """d/dv of sigmoid(slope (v - th)), written out: slope e^-z / (1 + e^-z)^2, z = slope (v - th)."""
    e = torch.exp(-slope * (v - th))
    return slope * e / (1 + e) ** 2


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("th,slope", [(0.5, 5.0), (0.3, 2.0), (0.8, 11.0)])
def test_surrogate_spike_gradient_value(device, th, slope):
    """surrogate_spike: Heaviside forward; backward grad * slope sigmoid'(slope (v - th))."""
    from torch_plugin.nn import surrogate_spike
    g = torch.Generator().manual_seed(5)
    v = (torch.randn(7, 9, generator=g, dtype=torch.float64) * 0.5 + th).to(device).requires_grad_(True)
    up = torch.randn(7, 9, generator=g, dtype=torch.float64).to(device)
    s = surrogate_spike(v, th, slope)
    assert torch.equal(s.detach(), (v.detach() > th).double())
    s.backward(up)
    torch.testing.assert_close(v.grad, up * surrogate_closed_form(v.detach(), th, slope), rtol=1e-10, atol=1e-14)


def bptt_straight_through(cur, decay, th, reset, slope):
    """The LIF loop with the reset path detached and the spike as a straight-through estimator
    (Heaviside forward, the gradient of sigmoid(slope (v - th)) backward): independent of _SurrogateSpike."""
    v = s = torch.zeros_like(cur[0])
    ss, vs = [], []
    for i_t in cur:
        sd = s.detach()
        v = decay * (v - th * sd if reset == "soft" else v * (1 - sd)) + i_t
        soft = torch.sigmoid(slope * (v - th))
        s = (v > th).to(v.dtype) + (soft - soft.detach())  # exactly the Heaviside value
        ss.append(s)
        vs.append(v)
    return torch.stack(ss), torch.stack(vs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("decay,th,slope", [(0.2, 0.5, 5.0), (0.6, 0.3, 2.0), (0.1, 0.8, 9.0)])
def test_lif_surrogate_gradient_value(device, reset, decay, th, slope):
    """LIF(decay, threshold, reset, slope).run's gradient (BPTT through the surrogate spikes and
    the membrane) equals the straight-through loop's, for a loss on both spikes and voltages;
    for T = 1 it is the closed form slope sigmoid'(slope (I - th))."""
    g = torch.Generator().manual_seed(11)
    cur = (torch.randn(6, 4, 7, generator=g, dtype=torch.float64) * 0.5 + 0.3).to(device)
    ws = torch.randn(6, 4, 7, generator=g, dtype=torch.float64).to(device)
    wv = torch.randn(6, 4, 7, generator=g, dtype=torch.float64).to(device)
    lif = LIF(decay, th, reset, slope=slope)
    c1, c2 = cur.clone().requires_grad_(True), cur.clone().requires_grad_(True)
    s1, v1 = lif.run(c1)
    s2, v2 = bptt_straight_through(c2, decay, th, reset, slope)
    assert torch.equal(s1.detach(), s2.detach()) and s1.detach().sum() > 0
    torch.testing.assert_close(v1.detach(), v2.detach(), rtol=1e-12, atol=1e-12)
    ((s1 * ws).sum() + (v1 * wv).sum()).backward()
    ((s2 * ws).sum() + (v2 * wv).sum()).backward()
    torch.testing.assert_close(c1.grad, c2.grad, rtol=1e-10, atol=1e-12)
    c = cur[:1].clone().requires_grad_(True)
    s, _ = lif.run(c)
    s.backward(ws[:1])
    torch.testing.assert_close(c.grad, ws[:1] * surrogate_closed_form(cur[:1], th, slope), rtol=1e-10, atol=1e-14)


def test_encoder_seeded_and_rates():
    x = torch.rand(5, 3, 4)
    a, b = BernoulliEncoder(T=50, seed=3)(x), BernoulliEncoder(T=50, seed=3)(x)
    assert a.shape == (50, 5, 12) and torch.equal(a, b)
    big = BernoulliEncoder(T=4000, seed=1)(x)
    torch.testing.assert_close(big.mean(0), x.reshape(5, -1), atol=0.05, rtol=0)


def test_encoder_and_spiking_step_on_an_empty_batch():
    """A data-parallel shard may be empty: the encoder gives (T, 0, N) and a NACA step changes nothing."""
    assert BernoulliEncoder(T=3, seed=1)(torch.rand(0, 2, 4)).shape == (3, 0, 8)
    m = models.spiking_mlp(8, [6], 3, T=4, seed=0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert learn.NACA(m, lr=0.1).step(torch.rand(0, 8), torch.zeros(0, dtype=torch.long)).shape == (0, 3)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())


def test_spiking_mlp_backprop_with_surrogate():
    torch.manual_seed(0)
    m = models.spiking_mlp(8, [16], 3, T=5, seed=0, init_gain=2.0)
    rates = m(torch.rand(4, 8))
    assert rates.shape == (4, 3)
    torch.nn.functional.mse_loss(rates, torch.eye(3)[[0, 1, 2, 0]]).backward()
    assert all(p.grad is not None for p in m.parameters())


def test_no_naca_ops_guard_catches_an_op():
    with pytest.raises(AssertionError, match="reference path called"), NoNacaOps():
        ops.lif_forward(torch.rand(2, 1, 3))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("all_steps", [True, False])
@pytest.mark.parametrize("cfg", [
    dict(decay=0.2, threshold=0.5, lens=0.5, lam=0.5, theta=1.2),  # the defaults
    dict(decay=0.4, threshold=0.4, lens=0.2, lam=0.45, theta=1.3),
])
def test_naca_spiking_learner_default_rule_matches_reference(device, all_steps, cfg):
    """learn.NACA (membrane_chain=False) on a spiking MLP: one step equals the equations of
    docs/algorithms.md §1.5 from reference.py alone: the LIF forward from the encoder's spikes, the
    hidden layer by naca_snn_update with signal f(E[y] NI), summed over every t (all_steps) or at
    t = T only; the output layer by the same rule with signal rate - onehot(y), always over every t
    (the authors' classification code: its loss on the rate sum_t s_t / T reaches every step's
    output spike, while f(NL) enters the hidden layer at the last step only)."""
    dec, th, lens, lam, theta = (cfg[k] for k in ("decay", "threshold", "lens", "lam", "theta"))
    T, lr = 5, 0.1
    torch.manual_seed(0)
    m = models.spiking_mlp(12, [9], 4, T=T, seed=3, init_gain=3.0, decay=dec, threshold=th,
                           lens=lens).double().to(device)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(6, 12, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 1, 0])
    hid, out = m[1], m[2]
    c = lambda p: p.detach().clone().cpu()
    w_h, b_h, w_o, b_o, ni = c(hid.weight), c(hid.bias), c(out.weight), c(out.bias), c(hid.ni)
    x_spikes = BernoulliEncoder(T, seed=3)(x.to(device)).cpu()  # the model's encoder draws the same spikes
    with NoNacaOps():
        s_h, v_h = ref.lif_forward(x_spikes @ w_h.T + b_h, dec, th, "hard")
        s_o, v_o = ref.lif_forward(s_h @ w_o.T + b_o, dec, th, "hard")
        f = ref.modulation(ref.neuromodulator(y, ni), lam, theta)
        rate = s_o.mean(0)
        err = rate - torch.nn.functional.one_hot(y, 4).double()
        expect = (*ref.naca_snn_update(w_h, b_h, x_spikes, v_h, s_h, f, th, lens, lr, all_steps),
                  *ref.naca_snn_update(w_o, b_o, s_h, v_o, s_o, err, th, lens, lr, True))
    # a non-trivial case: both layers fire and both updates move every parameter tensor
    assert s_h.sum() > 0 and s_o.sum() > 0
    for p0, e in zip((w_h, b_h, w_o, b_o), expect):
        assert (p0 - e).abs().max() > 1e-3
    model = copy.deepcopy(m)
    learner = learn.NACA(model, lr=lr, lam=lam, theta=theta, all_steps=all_steps)
    assert learner.membrane_chain is False
    rates = learner.step(x.to(device), y.to(device))
    # the same spikes (a count off by one would be off by 1/T); CUDA's mean multiplies the
    # count by 1/T, one ulp from the CPU's division (seen on an H200: 1.1e-16)
    torch.testing.assert_close(rates.cpu(), rate, rtol=0, atol=1e-15)
    for p, e in zip((model[1].weight, model[1].bias, model[2].weight, model[2].bias), expect):
        torch.testing.assert_close(p.detach().cpu(), e, rtol=1e-10, atol=1e-12)


def test_naca_learner_rejects_spiking_model_without_output():
    m = torch.nn.Sequential(BernoulliEncoder(4), NACASpikingLinear(4, 3, 3))
    with pytest.raises(ValueError, match="is_output"):
        learn.NACA(m)


def digits(seed=0):
    sk = pytest.importorskip("sklearn.datasets")
    d = sk.load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return x[perm[:1400]], y[perm[:1400]], x[perm[1400:]], y[perm[1400:]]


def run_epochs(learner, model, xtr, ytr, xte, yte, epochs, batch=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        p = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(p), batch):
            b = p[i:i + batch]
            learner.step(xtr[b], ytr[b])
    with torch.no_grad():
        return (model(xte).argmax(1) == yte).float().mean().item()


def test_naca_snn_learns_digits():
    # Measured: 0.924 test accuracy after 5 epochs (64-200-10, T=20, Adam lr 2e-3); chance is 0.1.
    xtr, ytr, xte, yte = digits()
    torch.manual_seed(0)
    m = models.spiking_mlp(64, [200], 10, T=20, seed=0)
    learner = learn.NACA(m, optimizer=torch.optim.Adam(m.parameters(), lr=2e-3))
    acc = run_epochs(learner, m, xtr, ytr, xte, yte, epochs=5)
    print(f"NACA SNN digits test accuracy: {acc:.3f}")
    assert acc > 0.80
    sd = learner.state_dict()
    assert sd["all_steps"] is True and sd["steps"] == 5 * 44


def authors_layer_grads(layer, x, signal, dec=0.2, th=0.5):
    """The authors' class-incremental SpikeLinear, as they write it: V_t = dec V_{t-1} (1 - s_{t-1})
    + sigmoid(W x_t + b) with the membrane not detached; `signal` sent into the last spikes;
    returns (spikes, W.grad, b.grad)."""
    w = layer.weight.detach().double().clone().requires_grad_(True)
    b = layer.bias.detach().double().clone().requires_grad_(True)
    v = s = torch.zeros(x.shape[1], w.shape[0], dtype=torch.float64)
    out = []
    for x_t in x.double():
        v = dec * v * (1 - s) + torch.sigmoid(x_t @ w.T + b)
        s = _AuthorsSpike.apply(v, s.detach(), th, layer.lens)
        out.append(s.detach())
    spikes = torch.stack(out)
    s.backward(signal(spikes))
    return spikes, w.grad, b.grad


def test_naca_membrane_chain_learner_is_the_authors_network():
    """learn.NACA(membrane_chain=True) on a sigmoid-current spiking MLP takes the authors'
    class-incremental step: hidden signal f(E[y] NI), output signal rate - onehot(y), each
    layer's gradient by autograd through its own undetached membrane (inputs detached)."""
    torch.manual_seed(0)
    m = models.spiking_mlp(12, [20], 4, T=8, seed=3, current="sigmoid", lens=0.2, init_gain=3.0).double()
    hid, out = m[1], m[2]
    x, y = torch.rand(6, 12, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 1, 0])
    x_spikes = BernoulliEncoder(8, seed=3)(x)  # the model's encoder draws the same spikes
    f = ref.modulation(ref.neuromodulator(y, hid.ni))
    h_spikes, gw_h, gb_h = authors_layer_grads(hid, x_spikes, lambda s: f)
    onehot = torch.nn.functional.one_hot(y, 4).double()
    _, gw_o, gb_o = authors_layer_grads(out, h_spikes, lambda s: s.mean(0) - onehot)
    assert gw_h.abs().max() > 1e-3 and gw_o.abs().max() > 1e-3
    expect = [p.detach() - 0.1 * g for p, g in zip((hid.weight, hid.bias, out.weight, out.bias),
                                                    (gw_h, gb_h, gw_o, gb_o))]
    learn.NACA(m, lr=0.1, membrane_chain=True).step(x, y)
    for p, e in zip((hid.weight, hid.bias, out.weight, out.bias), expect):
        torch.testing.assert_close(p.detach(), e, rtol=1e-9, atol=1e-12)


def test_naca_membrane_chain_rejects_non_spiking_model():
    with pytest.raises(ValueError, match="membrane_chain"):
        learn.NACA(models.mlp(4, [5], 3), membrane_chain=True)


def test_naca_membrane_chain_learns_digits():
    # Measured: 0.793 test accuracy after 5 epochs (64-200-10, T=20, sigmoid current, lens 0.2,
    # Adam lr 2e-3); chance is 0.1.
    xtr, ytr, xte, yte = digits()
    torch.manual_seed(0)
    m = models.spiking_mlp(64, [200], 10, T=20, seed=0, current="sigmoid", lens=0.2)
    learner = learn.NACA(m, optimizer=torch.optim.Adam(m.parameters(), lr=2e-3), membrane_chain=True)
    acc = run_epochs(learner, m, xtr, ytr, xte, yte, epochs=5)
    assert acc > 0.7
    assert learner.state_dict()["membrane_chain"] is True
