"""The spiking ops (lif_forward, naca_snn_update_, naca_snn_chain_update_) against the step-by-step
reference and the authors' autograd, their opchecks and their argument checks. The spiking layers
and NACA training a spiking MLP: tests/test_snn.py."""
import pytest
import torch

from torch_plugin import ops, reference as ref

from conftest import DEVICE_DTYPES, DEVICES, tol
from snn_cases import AuthorsSpike, rand_seq, shapes

SEEDS = [0, 1, 2]


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
        s = AuthorsSpike.apply(v, s.detach(), th, lens)
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
