"""The spiking layers (LIF, the surrogate spike, the encoder) and NACA training a spiking MLP end
to end; the spiking ops themselves: tests/test_snn_ops.py."""
import copy

import pytest
import torch

from torch_plugin import learn, models, ops, reference as ref
from torch_plugin.nn import LIF, BernoulliEncoder, NACASpikingLinear

from conftest import DEVICES, NoNacaOps
from snn_cases import AuthorsSpike, rand_seq


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
        s = AuthorsSpike.apply(v, s.detach(), th, layer.lens)
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
