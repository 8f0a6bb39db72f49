"""stdp_update_ against the step-by-step trace reference, hand-worked pairs,
bounds, the third factor, opcheck and bad input."""
import math

import pytest
import torch

from torch_plugin import ops, reference as ref

from conftest import CUDA, DEVICE_DTYPES, DEVICES, tol


def spikes(g, t, b, n, p=0.3):
    return (torch.rand(t, b, n, generator=g) < p).double()


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bound", ["hard", "soft", "none"])
@pytest.mark.parametrize("mod", [None, "scalar", "neuron", "sample"])
def test_stdp_matches_reference(device, dtype, seed, bound, mod):
    g = torch.Generator().manual_seed(seed)
    t = [1, 3, 20, 9][seed]
    b, i, h = (int(torch.randint(1, 12, (1,), generator=g)) for _ in range(3))
    w = torch.rand(h, i, generator=g, dtype=torch.float64)
    pre, post = spikes(g, t, b, i), spikes(g, t, b, h)
    m = {None: None, "scalar": torch.tensor(-0.7, dtype=torch.float64),
         "neuron": torch.randn(h, generator=g, dtype=torch.float64),
         "sample": torch.randn(b, h, generator=g, dtype=torch.float64)}[mod]
    # Seed 0: the defaults; the others move a_plus, a_minus, w_min and w_max (the weights start in [0, 1], so
    # the hard bounds clamp and the soft ones scale differently): an op ignoring any of them fails.
    kw = dict(tau_pre=[20.0, 5.0, 10.0, 3.0][seed], tau_post=[20.0, 8.0, 2.0, 30.0][seed],
              a_plus=[0.01, 0.05, 0.002, 0.03][seed], a_minus=[0.012, 0.02, 0.004, 0.08][seed],
              w_min=[0.0, 0.25, -0.5, 0.1][seed], w_max=[1.0, 0.75, 0.6, 2.0][seed],
              bound=bound, lr=[1.0, 3.0, 0.5, 2.0][seed], dt=[1.0, 0.5, 1.0, 2.0][seed])
    expected = ref.stdp_update(w, pre, post, modulator=m, **kw)
    to = lambda x: None if x is None else x.to(device, dtype)
    wd = to(w)
    ops.stdp_update_(wd, to(pre), to(post), modulator=to(m), **kw)
    rtol, atol = tol(dtype)
    torch.testing.assert_close(wd.double().cpu(), expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("device,dtype", [(d, t) for d, t in DEVICE_DTYPES if t in (torch.float32, torch.float64)])
@pytest.mark.parametrize("bound", ["hard", "soft"])
def test_stdp_wide_layer_matches_reference(device, dtype, bound):
    """Rows longer than a kernel block and a batch*width above one parallel task (CPU:
    tasks start mid-row), with a per-sample modulator."""
    g = torch.Generator().manual_seed(7)
    t, b, i, h = 4, 5, 3, 7001
    w = torch.rand(h, i, generator=g, dtype=torch.float64)
    pre, post = spikes(g, t, b, i), spikes(g, t, b, h)
    m = torch.randn(b, h, generator=g, dtype=torch.float64)
    kw = dict(tau_pre=7.0, tau_post=3.0, a_plus=0.03, a_minus=0.02, w_min=0.1, w_max=0.9, bound=bound, lr=2.0)
    expected = ref.stdp_update(w, pre, post, modulator=m, **kw)
    wd = w.to(device, dtype)
    ops.stdp_update_(wd, pre.to(device, dtype), post.to(device, dtype), modulator=m.to(device, dtype), **kw)
    rtol, atol = tol(dtype)
    torch.testing.assert_close(wd.double().cpu(), expected, rtol=rtol, atol=atol)


@pytest.mark.skipif(not CUDA, reason="float16 stdp_update_ runs on CUDA only")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_stdp_cuda_half_small_lr_keeps_precision(dtype):
    """lr scales the GEMM, not the float16 factors: lr * a_plus * trace would be a
    subnormal half (~1e-7 here) and lose most of its bits before the sum."""
    g = torch.Generator().manual_seed(3)
    t, b, i, h = 20, 64, 7, 9
    pre, post = spikes(g, t, b, i), spikes(g, t, b, h)
    w = torch.zeros(h, i, dtype=torch.float64)
    kw = dict(tau_pre=20.0, tau_post=20.0, a_plus=0.01, a_minus=0.012, bound="none", lr=1e-5)
    expected = ref.stdp_update(w, pre, post, **kw)
    wd = w.to("cuda", dtype)
    ops.stdp_update_(wd, pre.to("cuda", dtype), post.to("cuda", dtype), **kw)
    rtol = 1e-2 if dtype == torch.float16 else 3e-2
    torch.testing.assert_close(wd.double().cpu(), expected, rtol=rtol, atol=1e-8)


def pair(dt_ms, w0=0.5, **kw):
    """One pre and one post spike dt_ms apart (post - pre), 1 ms steps."""
    t = 12
    pre, post = torch.zeros(t, 1, 1, dtype=torch.float64), torch.zeros(t, 1, 1, dtype=torch.float64)
    t_pre = 1 if dt_ms > 0 else 1 - dt_ms
    pre[t_pre] = 1
    post[t_pre + dt_ms] = 1
    w = torch.full((1, 1), w0, dtype=torch.float64)
    ops.stdp_update_(w, pre, post, tau_pre=20.0, tau_post=20.0, a_plus=0.01, a_minus=0.012, **kw)
    return w.item() - w0


def test_hand_worked_pairs():
    assert pair(5) == pytest.approx(0.01 * math.exp(-5 / 20), abs=1e-15)  # +0.0077880
    assert pair(-5) == pytest.approx(-0.012 * math.exp(-5 / 20), abs=1e-15)  # -0.0093456
    assert pair(0) == pytest.approx(0.01 - 0.012, abs=1e-15)  # simultaneous: both terms, traces include t
    assert pair(5, modulator=torch.tensor(-2.0, dtype=torch.float64)) == pytest.approx(-0.02 * math.exp(-0.25))


def test_bounds():
    assert pair(5, w0=1.0) == 0.0  # hard: clamped at w_max
    assert pair(5, w0=0.9, bound="soft") == pytest.approx(0.01 * math.exp(-0.25) * 0.1)
    assert pair(-5, w0=0.0, bound="soft") == 0.0
    assert pair(5, w0=1.0, bound="none") > 0


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_stdp(device):
    g = torch.Generator().manual_seed(0)
    pre, post = spikes(g, 5, 3, 4).float().to(device), spikes(g, 5, 3, 6).float().to(device)
    w = torch.rand(6, 4, device=device)
    for m, bound in [(None, "hard"), (torch.rand(6, device=device), "soft"), (torch.rand(3, 6, device=device), "none")]:
        torch.library.opcheck(torch.ops.naca.stdp_update_.default,
                              (w, pre, post, 20.0, 20.0, 0.01, 0.012, 0.0, 1.0, bound, m, 1.0, 1.0))


@pytest.mark.parametrize("arg,kw", [
    ("post_spikes", dict(post=torch.zeros(4, 2, 5))),
    ("pre_spikes", dict(pre=torch.zeros(4, 2, 4).double())),
    ("pre_spikes", dict(pre=torch.zeros(0, 2, 3))),
    ("modulator", dict(modulator=torch.ones(2, 2))),
    ("tau_pre", dict(tau_pre=0.0)),
    ("dt", dict(dt=-1.0)),
    ("bound", dict(bound="clip")),
    ("w_min", dict(w_min=2.0)),
    ("a_plus", dict(a_plus=float("nan"))),
    ("weight", dict(weight=torch.rand(3, 4).t())),
])
def test_stdp_rejects(arg, kw):
    w = kw.pop("weight", torch.rand(4, 3))
    pre, post = kw.pop("pre", torch.zeros(4, 2, 3)), kw.pop("post", torch.zeros(4, 2, 4))
    w0 = w.clone()
    with pytest.raises(RuntimeError, match=f"naca::stdp_update_: arguments? '{arg}"):
        ops.stdp_update_(w, pre, post, **kw)
    assert torch.equal(w, w0)
