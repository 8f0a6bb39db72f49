"""Short-term plasticity (Tsodyks-Markram) and the homeostatic relaxation of
SBP (docs/algorithms.md §2.2): the fused ops (ops.stp_forward, ops.homeostatic_relax)
and the nn functions that use them, against the references, the torch
compositions and hand-worked values."""
import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from torch_plugin import ops, reference as ref
from torch_plugin.nn import STPSynapse, homeostatic_relax, spiking, stp_forward

from conftest import DEVICE_DTYPES, tol


def test_stp_hand_worked():
    s = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64).view(3, 1, 1)
    out = stp_forward(s).flatten()
    # t0: u = 0.45, x = 0.55, I = 0.2475; t1: u = 0.405, x = 0.775, I = 0.12375
    assert out[0].item() == pytest.approx(0.2475)
    assert out[1].item() == pytest.approx(0.12375)
    u2 = 0.405 - 0.0405 + 0.45 * (1 - 0.405)  # 0.63225
    x2 = 0.775 + 0.225 / 2 - u2 * 0.775
    assert out[2].item() == pytest.approx(0.12375 / 2 + u2 * x2)


@pytest.mark.parametrize("seed", range(3))
def test_stp_matches_reference(seed):
    g = torch.Generator().manual_seed(seed)
    t = [1, 5, 20][seed]
    s = (torch.rand(t, 3, 4, generator=g) < 0.4).double()
    params = [dict(), dict(U=0.2, tau_f=50.0, tau_d=5.0, tau_s=3.0, A=2.0), dict(U=0.8)][seed]
    torch.testing.assert_close(STPSynapse(**params)(s), ref.stp(s, **params))


def test_stp_facilitates_or_depresses_under_a_burst():
    burst = torch.ones(10, 1, 1, dtype=torch.float64)
    out = stp_forward(burst).flatten()  # defaults (fast recovery tau_d = 2): facilitation
    assert (out[1:] - out[:-1] / 2)[-1] > (out[1:] - out[:-1] / 2)[0]  # the increment A u x of each spike
    out = stp_forward(burst, U=0.8, tau_d=20.0, tau_s=2.0).flatten()  # slow recovery: depression
    assert (out[1:] - out[:-1] / 2)[-1] < (out[1:] - out[:-1] / 2)[0]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("top_down", [False, True])
def test_homeostatic_relax_matches_reference(seed, top_down):
    g = torch.Generator().manual_seed(seed)
    b, i, h, o = 4, 7, 5, 3
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64) * 0.5
    s_h, s_below, w_in, b_h = torch.rand(b, h, generator=g, dtype=torch.float64), torch.rand(b, i, generator=g, dtype=torch.float64), mk(h, i), mk(h)
    s_above, w_out = (torch.rand(b, o, generator=g, dtype=torch.float64), mk(o, h)) if top_down else (None, None)
    got = homeostatic_relax(s_h, s_below, w_in, s_above, w_out, b_h, eps=0.5, iters=[1, 3, 20][seed])
    want = ref.homeostatic_relax(s_h, s_below, w_in, s_above, w_out, b_h, eps=0.5, iters=[1, 3, 20][seed])
    torch.testing.assert_close(got, want)


def test_homeostatic_relax_converges_to_clamped_drive():
    g = torch.Generator().manual_seed(0)
    s_below, w = torch.rand(2, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    got = homeostatic_relax(torch.zeros(2, 4, dtype=torch.float64), s_below, w, iters=60)
    torch.testing.assert_close(got, (s_below @ w.t()).clamp(0, 1), atol=1e-12, rtol=0)


# --- the fused ops: ops.stp_forward and ops.homeostatic_relax ------------------

def seq_shape(seed):
    g = torch.Generator().manual_seed(seed)
    t = [1, 2, 7, 20][seed % 4]
    return g, t, int(torch.randint(1, 5, (1,), generator=g)), int(torch.randint(1, 12, (1,), generator=g))


STP_PARAMS = [dict(), dict(U=0.2, tau_f=50.0, tau_d=5.0, tau_s=3.0, A=2.0), dict(U=0.8, tau_d=20.0),
              dict(U=0.45, tau_f=1.0, tau_d=1.0, tau_s=1.0, A=-0.5)]


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("seed", range(4))
def test_stp_op_matches_reference(device, dtype, seed):
    g, t, b, n = seq_shape(seed)
    s = (torch.rand(t, b, n, generator=g) < 0.4).double()
    params = STP_PARAMS[seed]
    got = ops.stp_forward(s.to(device, dtype), **params)
    assert got.shape == (t, b, n) and got.dtype == dtype and got.device.type == device and got.is_contiguous()
    rtol, atol = tol(dtype)
    torch.testing.assert_close(got.double().cpu(), ref.stp(s, **params), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(4))
def test_stp_op_matches_torch_composition(dtype, seed):
    """Graded (non-binary) input too: the op is the composition's arithmetic, to rounding."""
    g, t, b, n = seq_shape(seed + 10)
    s = torch.rand(t, b, n, generator=g, dtype=dtype) * 1.5
    params = STP_PARAMS[seed]
    want = spiking.stp_forward_torch(s, **params)
    torch.testing.assert_close(ops.stp_forward(s, **params), want, rtol=4 * torch.finfo(dtype).eps, atol=0)
    nc = s.transpose(1, 2).contiguous().transpose(1, 2)  # non-contiguous input, contiguous output
    out = ops.stp_forward(nc, **params)
    assert out.is_contiguous()
    torch.testing.assert_close(out, want, rtol=4 * torch.finfo(dtype).eps, atol=0)


def test_stp_empty_batch_and_neurons():
    for shape in [(3, 0, 4), (3, 2, 0)]:
        assert ops.stp_forward(torch.zeros(shape)).shape == shape


def _relax_loop(state, drive, eps, iters):
    for _ in range(iters):
        state = (state - eps * (state - drive)).clamp(0, 1)
    return state


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("seed", range(4))
def test_homeostatic_relax_op_matches_loop(device, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    shape = [(5, 7), (3,), (2, 3, 4), ()][seed]
    eps, iters = [(0.5, 20), (0.3, 1), (1.5, 7), (0.9, 0)][seed]
    state = torch.rand(shape, generator=g, dtype=torch.float64)
    drive = torch.randn(shape, generator=g, dtype=torch.float64)
    to = lambda x: x.to(device, dtype)  # noqa: E731
    got = ops.homeostatic_relax(to(state), to(drive), eps, iters)
    assert got.shape == state.shape and got.dtype == dtype and got.is_contiguous()
    want = _relax_loop(to(state).double().cpu(), to(drive).double().cpu(), eps, iters)
    rtol, atol = tol(dtype)
    torch.testing.assert_close(got.double().cpu(), want, rtol=rtol, atol=atol)


def ulps(dtype, k=2):  # states lie in [0, 1]: k units in the last place at most
    return dict(rtol=0, atol=k * torch.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_homeostatic_relax_op_is_the_loop_to_rounding(dtype):
    """Same arithmetic as the torch loop (on x86-64 bit for bit; a compiler that contracts to FMA may round
    differently), over several CPU blocks and through the early exit at a fixed point (iters=300)."""
    g = torch.Generator().manual_seed(0)
    state = torch.rand(3000, generator=g, dtype=dtype)
    drive = torch.randn(3000, generator=g, dtype=dtype)
    for eps, iters in [(0.5, 20), (0.2, 3), (1.7, 11), (-1.0, 5), (0.5, 300)]:
        got = ops.homeostatic_relax(state, drive, eps, iters)
        torch.testing.assert_close(got, _relax_loop(state, drive, eps, iters), **ulps(dtype))


def test_homeostatic_relax_op_huge_iters_stops_at_the_fixed_point():
    g = torch.Generator().manual_seed(1)
    state, drive = torch.rand(4, 6, generator=g), torch.randn(4, 6, generator=g)
    state[0, 0], drive[1, 1] = float("nan"), float("inf")
    got = ops.homeostatic_relax(state, drive, 0.5, 2 ** 40)  # returns: every element settles within ~100 steps
    torch.testing.assert_close(got, _relax_loop(state, drive, 0.5, 400), equal_nan=True, **ulps(torch.float32))
    assert got[0, 0].isnan() and got[1, 1] == 1


def test_homeostatic_relax_op_returns_a_new_tensor():
    state, drive = torch.rand(2, 3), torch.rand(2, 3)
    out = ops.homeostatic_relax(state, drive, 0.5, 0)
    assert torch.equal(out, state) and out.data_ptr() != state.data_ptr()
    nc = torch.rand(3, 2).t()
    out = ops.homeostatic_relax(nc, drive, 0.5, 4)
    assert out.is_contiguous() and torch.equal(out, _relax_loop(nc, drive, 0.5, 4))
    assert ops.homeostatic_relax(torch.rand(0, 3), torch.rand(0, 3)).shape == (0, 3)


# --- nn.stp_forward / nn.homeostatic_relax: the op without a gradient, the torch loop with one --------

class OpCalls(TorchDispatchMode):
    """Counts the dispatcher calls of every op run inside it (``naca::stp_forward``, ``aten::mul``...)."""

    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[func._schema.name] += 1
        return func(*args, **(kwargs or {}))


def count_calls(fn):
    with OpCalls() as mode:
        out = fn()
    return out, mode.calls


def test_nn_stp_forward_uses_the_op_and_stays_differentiable():
    g = torch.Generator().manual_seed(0)
    s = torch.rand(6, 2, 3, generator=g, dtype=torch.float64)
    fused, calls = count_calls(lambda: stp_forward(s, U=0.3))
    assert calls["naca::stp_forward"] == 1  # one fused op, not the loop
    assert calls["aten::stack"] == 0, calls  # the loop's torch.stack did not run
    torch.testing.assert_close(fused, spiking.stp_forward_torch(s, U=0.3), rtol=1e-14, atol=0)
    _, calls = count_calls(lambda: STPSynapse(U=0.3)(s))
    assert calls["naca::stp_forward"] == 1
    _, calls = count_calls(lambda: stp_forward(s[:, 0]))  # (T, N): runs as (T, 1, N), through the op too
    assert calls["naca::stp_forward"] == 1
    sg = s.clone().requires_grad_(True)
    out, calls = count_calls(lambda: stp_forward(sg, U=0.3))
    assert calls["naca::stp_forward"] == 0  # a gradient is needed: the differentiable loop
    assert out.grad_fn is not None
    torch.testing.assert_close(out.detach(), fused, rtol=1e-14, atol=0)
    out.sum().backward()
    assert sg.grad is not None and torch.isfinite(sg.grad).all()
    assert torch.autograd.gradcheck(lambda x: stp_forward(x, U=0.3), (sg[:3, :1, :2].detach().requires_grad_(),))
    with torch.no_grad():
        out, calls = count_calls(lambda: stp_forward(sg))
        assert out.grad_fn is None and calls["naca::stp_forward"] == 1
    assert stp_forward(s[:, 0]).shape == (6, 3)  # (T, N): runs as (T, 1, N)


def test_nn_homeostatic_relax_uses_the_op_and_stays_differentiable():
    g = torch.Generator().manual_seed(0)
    s_h, s_below = torch.rand(4, 5, generator=g, dtype=torch.float64), torch.rand(4, 7, generator=g, dtype=torch.float64)
    w = (torch.randn(5, 7, generator=g, dtype=torch.float64) * 0.3).requires_grad_(True)
    with torch.no_grad():
        fused, calls = count_calls(lambda: homeostatic_relax(s_h, s_below, w, iters=5))
    assert calls["naca::homeostatic_relax"] == 1  # the drive's GEMM, then one fused op for the 5 steps
    assert calls["aten::clamp"] == 0, calls
    out, calls = count_calls(lambda: homeostatic_relax(s_h, s_below, w, iters=5))
    assert calls["naca::homeostatic_relax"] == 0  # a gradient is needed: the differentiable loop
    assert out.grad_fn is not None and fused.grad_fn is None
    torch.testing.assert_close(out.detach(), fused, **ulps(torch.float64))
    out.sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()
    # a broadcast start state (H,) and mixed dtypes still work (the latter by the torch loop)
    with torch.no_grad():
        got, calls = count_calls(lambda: homeostatic_relax(s_h[0], s_below, w, iters=5))
        assert calls["naca::homeostatic_relax"] == 1  # broadcast (expanded) start state: still the op
        torch.testing.assert_close(got, _relax_loop(s_h[0], s_below @ w.t(), 0.5, 5), **ulps(torch.float64))
        assert homeostatic_relax(s_h.float(), s_below, w, iters=5).dtype == torch.float64


# --- bad input ------------------------------------------------------------------

@pytest.mark.parametrize("arg,call", [
    ("spikes", lambda: ops.stp_forward(torch.rand(3, 4))),
    ("spikes", lambda: ops.stp_forward(torch.rand(0, 2, 4))),
    ("spikes", lambda: ops.stp_forward(torch.rand(3, 2, 4).int())),
    ("tau_f", lambda: ops.stp_forward(torch.rand(3, 2, 4), tau_f=0.0)),
    ("tau_d", lambda: ops.stp_forward(torch.rand(3, 2, 4), tau_d=-1.0)),
    ("tau_s", lambda: ops.stp_forward(torch.rand(3, 2, 4), tau_s=float("nan"))),
    ("U", lambda: ops.stp_forward(torch.rand(3, 2, 4), U=float("inf"))),
    ("A", lambda: ops.stp_forward(torch.rand(3, 2, 4), A=float("nan"))),
])
def test_stp_forward_rejects(arg, call):
    with pytest.raises(RuntimeError, match=f"naca::stp_forward: argument '{arg}'"):
        call()


@pytest.mark.parametrize("arg,call", [
    ("drive", lambda: ops.homeostatic_relax(torch.rand(3, 4), torch.rand(4, 3))),
    ("drive", lambda: ops.homeostatic_relax(torch.rand(3, 4), torch.rand(3, 4).double())),
    ("drive", lambda: ops.homeostatic_relax(torch.rand(3, 4), torch.rand(3, 4).to("meta"))),
    ("state", lambda: ops.homeostatic_relax(torch.rand(3, 4).int(), torch.rand(3, 4))),
    ("eps", lambda: ops.homeostatic_relax(torch.rand(3, 4), torch.rand(3, 4), eps=float("nan"))),
    ("iters", lambda: ops.homeostatic_relax(torch.rand(3, 4), torch.rand(3, 4), iters=-1)),
])
def test_homeostatic_relax_rejects(arg, call):
    with pytest.raises(RuntimeError, match=f"naca::homeostatic_relax: (argument '{arg}'|every tensor)"):
        call()
