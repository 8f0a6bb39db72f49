"""The spiking ops (lif_forward, naca_snn_update_) against the step-by-step
reference, the spiking layers, and NACA training a spiking MLP end to end."""
import pytest
import torch

from torch_plugin import learn, models, ops, reference as ref
from torch_plugin.nn import LIF, BernoulliEncoder, NACASpikingLinear

from conftest import DEVICE_DTYPES, DEVICES, tol

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
    s, v = ref.lif_forward(rand_seq(g, t, b, h))
    sig = torch.randn(b, h, generator=g, dtype=torch.float64)
    th, lens, lr = 0.5, [0.5, 0.2, 0.3, 0.5][seed], 0.05
    w_r, b_r = ref.naca_snn_update(w, bias, pre, v, s, sig, th, lens, lr, all_steps)
    to = lambda x: None if x is None else x.to(device, dtype)
    wd, bd = to(w), to(bias)
    ops.naca_snn_update_(wd, bd, to(pre), to(v), to(s), to(sig), th, lens, lr, all_steps)
    rtol, atol = tol(dtype)
    torch.testing.assert_close(wd.double().cpu(), w_r, rtol=rtol, atol=atol * 10)
    if with_bias:
        torch.testing.assert_close(bd.double().cpu(), b_r, rtol=rtol, atol=atol * 10)


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


def test_naca_snn_update_under_inference_mode_and_leaf():
    a = naca_snn_args()
    w = a["weight"].clone().requires_grad_(True)
    v0 = w._version
    with torch.inference_mode():
        pass
    ops.naca_snn_update_(w, None, a["pre"], a["volts"], a["spikes"], a["signal"], 0.5, 0.5, 0.1)
    assert w._version > v0 and w.grad_fn is None


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


def test_encoder_seeded_and_rates():
    x = torch.rand(5, 3, 4)
    a, b = BernoulliEncoder(T=50, seed=3)(x), BernoulliEncoder(T=50, seed=3)(x)
    assert a.shape == (50, 5, 12) and torch.equal(a, b)
    big = BernoulliEncoder(T=4000, seed=1)(x)
    torch.testing.assert_close(big.mean(0), x.reshape(5, -1), atol=0.05, rtol=0)


def test_spiking_mlp_backprop_with_surrogate():
    torch.manual_seed(0)
    m = models.spiking_mlp(8, [16], 3, T=5, seed=0, init_gain=2.0)
    rates = m(torch.rand(4, 8))
    assert rates.shape == (4, 3)
    torch.nn.functional.mse_loss(rates, torch.eye(3)[[0, 1, 2, 0]]).backward()
    assert all(p.grad is not None for p in m.parameters())


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
