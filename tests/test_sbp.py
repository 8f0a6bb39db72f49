"""sbp_update_ against the reference written in docs/algorithms.md §2.1's (pre, post)
orientation, its special cases (lambda_p = 1, lambda_f = 0), the SBP
learner on the sklearn digits (SNN with and without the spread; ANN), and one
learner step against the reference equations (spread, lambda_p mask, relaxation, STP)."""
import copy

import pytest
import torch

from torch_plugin import learn, models, ops, reference as ref
from torch_plugin.learn.sbp import subset_mask

from conftest import DEVICE_DTYPES, DEVICES, NoNacaOps, tol


def case(seed, device="cpu", dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    i, h, o = (int(torch.randint(1, 30, (1,), generator=g)) for _ in range(3))
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    c = dict(w_in=mk(h, i), w_out=mk(o, h), dw_in=mk(h, i), dw_out=mk(o, h))
    if seed % 3 == 1:  # zero rows/columns and an all-LTP matrix: the N(v) sum-0 branch
        c["dw_in"][0] = 0
        c["dw_out"] = c["dw_out"].abs()
    c = {k: v.to(device, dtype) for k, v in c.items()}
    c["mask"] = (torch.rand(h, i, generator=g) < 0.5).to(device)
    return c


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("use_mask", [False, True])
def test_sbp_update_matches_reference(device, dtype, seed, use_mask):
    c = case(seed, device, dtype)
    mask = c["mask"] if use_mask else None
    f, a_in, a_out = [(0.2, 0.1, 0.05), (1.0, 0.3, 0.2), (0.5, 1.0, 1.0)][seed % 3]
    w_in_r, w_out_r = ref.sbp_update(*(c[k].double().cpu() for k in ("w_in", "w_out", "dw_in", "dw_out")),
                                     None if mask is None else mask.cpu(), f, a_in, a_out)
    w_in, w_out = c["w_in"].clone(), c["w_out"].clone()
    ops.sbp_update_(w_in, w_out, c["dw_in"], c["dw_out"], mask, f, a_in, a_out)
    rtol, atol = tol(dtype)
    torch.testing.assert_close(w_in.double().cpu(), w_in_r, rtol=rtol, atol=atol)
    torch.testing.assert_close(w_out.double().cpu(), w_out_r, rtol=rtol, atol=atol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(4))
def test_lambda_p_one_is_exactly_no_subset(device, seed):
    c = case(seed, device, torch.float32)
    a = (c["w_in"].clone(), c["w_out"].clone())
    b = (c["w_in"].clone(), c["w_out"].clone())
    ops.sbp_update_(*a, c["dw_in"], c["dw_out"], None, 0.3, 0.1, 0.05)
    ops.sbp_update_(*b, c["dw_in"], c["dw_out"], torch.ones_like(c["mask"]), 0.3, 0.1, 0.05)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert subset_mask(5, 7, 1.0, 0) is None


@pytest.mark.parametrize("use_mask", [False, True])
def test_lambda_f_zero_is_the_local_rule(use_mask):
    c = case(2)
    w_in, w_out = c["w_in"].clone(), c["w_out"].clone()
    ops.sbp_update_(w_in, w_out, c["dw_in"], c["dw_out"], c["mask"] if use_mask else None, 0.0, 0.1, 0.05)
    torch.testing.assert_close(w_in, c["w_in"] + 0.1 * c["dw_in"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w_out, c["w_out"] + 0.05 * c["dw_out"], rtol=1e-12, atol=1e-12)


def test_subset_mask_seeded_and_sized():
    m = subset_mask(6, 10, 0.3, seed=4)
    assert m.shape == (6, 10) and m.dtype == torch.bool and (m.sum(1) == 3).all()
    assert torch.equal(m, subset_mask(6, 10, 0.3, seed=4)) and not torch.equal(m, subset_mask(6, 10, 0.3, seed=5))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_sbp(device):
    c = case(0, device, torch.float32)
    torch.library.opcheck(torch.ops.naca.sbp_update_.default,
                          (c["w_in"], c["w_out"], c["dw_in"], c["dw_out"], c["mask"], 0.2, 0.1, 0.05))
    torch.library.opcheck(torch.ops.naca.sbp_update_.default,
                          (c["w_in"], c["w_out"], c["dw_in"], c["dw_out"], None, 0.2, 0.1, 0.05))


@pytest.mark.parametrize("arg,change", [
    ("dw_in", lambda c: c.update(dw_in=torch.randn(3, 3, dtype=torch.float64))),
    ("dw_out", lambda c: c.update(dw_out=c["dw_out"].float())),
    ("w_out", lambda c: c.update(w_out=torch.randn(2, c["w_in"].shape[0] + 1, dtype=torch.float64),
                                 dw_out=torch.randn(2, c["w_in"].shape[0] + 1, dtype=torch.float64))),
    ("mask", lambda c: c.update(mask=c["mask"][:, :1].clone())),
    ("mask", lambda c: c.update(mask=c["mask"].int())),
    ("fraction", lambda c: c.update(f=-0.1)),
    ("alpha_in", lambda c: c.update(a=float("nan"))),
    ("w_in", lambda c: c.update(w_in=c["w_in"].int())),
])
def test_sbp_update_rejects(arg, change):
    c = case(5)
    change(c)
    w_in0, w_out0 = c["w_in"].clone(), c["w_out"].clone()
    with pytest.raises(RuntimeError, match=f"naca::sbp_update_: argument '{arg}'"):
        ops.sbp_update_(c["w_in"], c["w_out"], c["dw_in"], c["dw_out"], c["mask"], c.get("f", 0.2), c.get("a", 0.1), 0.05)
    assert torch.equal(c["w_in"], w_in0) and torch.equal(c["w_out"], w_out0)


def test_sbp_update_rejects_aliasing():
    c = case(0)
    with pytest.raises(RuntimeError, match="shares memory"):
        ops.sbp_update_(c["w_in"], c["w_out"], c["w_in"], c["dw_out"], None, 0.2, 0.1, 0.05)


from test_snn import digits, run_epochs  # noqa: E402


def sbp_snn_accuracy(fraction, percentage=1.0):
    xtr, ytr, xte, yte = digits()
    torch.manual_seed(0)
    m = models.sbp_snn(64, 200, 10, T=20, seed=0)
    learner = learn.SBP(m, lr=2.0, fraction=fraction, percentage=percentage, seed=0)
    return run_epochs(learner, m, xtr, ytr, xte, yte, epochs=5)


def test_sbp_snn_learns_digits_with_and_without_spread():
    # Measured (same seed, 64-200-10, T=20, lr=2, 5 epochs): SBP 0.927, lambda_p=0.5 0.950, no spread 0.929.
    # Accuracy only (it passes with the spread or the mask ignored): test_sbp_learner_step_matches_reference
    # checks fraction and lambda_p exactly.
    with_sbp, without = sbp_snn_accuracy(0.2), sbp_snn_accuracy(0.0)
    partial = sbp_snn_accuracy(0.2, percentage=0.5)
    print(f"SBP SNN digits test accuracy: with spread {with_sbp:.3f}, lambda_p=0.5 {partial:.3f}, without {without:.3f}")
    assert with_sbp > 0.85 and without > 0.85 and partial > 0.85


def test_sbp_ann_learns_digits_and_state_dict():
    xtr, ytr, xte, yte = digits()
    torch.manual_seed(0)
    m = models.sbp_ann(64, 200, 10, seed=0)
    learner = learn.SBP(m, lr=10.0, fraction=0.2)
    acc = run_epochs(learner, m, xtr, ytr, xte, yte, epochs=5)
    print(f"SBP ANN digits test accuracy: {acc:.3f}")
    assert acc > 0.85  # measured 0.932
    other = learn.SBP(models.sbp_ann(64, 200, 10), percentage=1.0)
    other.load_state_dict({**learner.state_dict(), "percentage": 0.5})
    # The mask is re-drawn from the state's seed: the same as a learner built with percentage 0.5.
    assert other.steps == learner.steps and other.percentage == 0.5
    assert torch.equal(other.mask, reference_mask(200, 64, 0.5, learner.seed))
    assert torch.equal(other.mask, learn.SBP(models.sbp_ann(64, 200, 10), percentage=0.5, seed=learner.seed).mask)


def test_sbp_default_lr_learns_digits():
    """lr=None resolves per model kind (SBP.DEFAULT_LR: ANN 10, SNN 1, measured by examples/sbp_lr.py).
    Measured here (ANN 64-200-10, 5 epochs, seed 0): the default 0.932; lr 1 0.466, lr 3 0.758."""
    assert learn.SBP(models.sbp_ann(4, 3, 2)).lr == 10.0 and learn.SBP(models.sbp_snn(4, 3, 2)).lr == 1.0
    assert learn.SBP(models.sbp_ann(4, 3, 2), lr=0.5).lr == 0.5
    xtr, ytr, xte, yte = digits()
    torch.manual_seed(0)
    m = models.sbp_ann(64, 200, 10, seed=0)
    learner = learn.SBP(m)
    assert run_epochs(learner, m, xtr, ytr, xte, yte, epochs=5) > 0.85
    assert learner.state_dict()["lr"] == 10.0


def test_sbp_rejects_other_models():
    with pytest.raises(ValueError, match="SBP"):
        learn.SBP(models.mlp(8, [4, 4], 3))
    with pytest.raises(ValueError, match="SBP"):
        learn.SBP(models.spiking_mlp(8, [4, 4], 3))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rule", ["contrastive", "symmetric", "differential"])
def test_sbp_local_rules_follow_their_equations(rule, bias):
    """fraction = 0 (no spread): W += lr * alpha * dW with dW the rule's (post, pre) change / (beta B)
    (bias=False: the authors' bias-free layers)."""
    torch.manual_seed(3)
    m = models.sbp_ann(6, 5, 3, seed=0, bias=bias).double()
    hid, out = m[1], m[2]
    x, y = torch.rand(4, 6, dtype=torch.float64), torch.tensor([0, 2, 1, 2])
    w_in, w_out = hid.weight.detach().clone(), out.weight.detach().clone()
    b_in = hid.bias.detach().clone() if bias else 0.0
    b_out = out.bias.detach().clone() if bias else 0.0
    beta, lr, alpha = 0.5, 2.0, (0.1, 0.05)
    z_h = x @ w_in.t() + b_in
    r_h = torch.sigmoid(z_h)
    r_o = torch.sigmoid(r_h @ w_out.t() + b_out)
    r_ob = r_o + beta * (torch.nn.functional.one_hot(y, 3).double() - r_o)
    r_hb = torch.sigmoid(z_h + (r_ob - r_o) @ w_out)
    change = {"contrastive": lambda p0, pb, q0, qb: (qb - q0).t() @ p0,
              "symmetric": lambda p0, pb, q0, qb: qb.t() @ pb - q0.t() @ p0,
              "differential": lambda p0, pb, q0, qb: q0.t() @ (pb - p0)}[rule]
    dw_out = change(r_h, r_hb, r_o, r_ob) / (beta * 4)
    dw_in = change(x, x, r_h, r_hb) / (beta * 4)
    learn.SBP(m, lr=lr, fraction=0.0, beta=beta, alpha=alpha, local_rule=rule).step(x, y)
    torch.testing.assert_close(out.weight.detach(), w_out + lr * alpha[1] * dw_out)
    torch.testing.assert_close(hid.weight.detach(), w_in + lr * alpha[0] * dw_in)
    if rule == "differential":  # the input of W_in is the same in both phases: no local change
        assert torch.equal(hid.weight.detach(), w_in)
    assert (hid.bias is None and out.bias is None) == (not bias)


def test_sbp_rejects_unknown_rule_and_negative_relax():
    with pytest.raises(ValueError, match="local_rule"):
        learn.SBP(models.sbp_ann(4, 3, 2), local_rule="hebb")
    with pytest.raises(ValueError, match="relax_steps"):
        learn.SBP(models.sbp_ann(4, 3, 2), relax_steps=-1)


def test_sbp_snn_with_stp_and_homeostatic_relaxation_learns_digits():
    # Measured (seed 0, 64-200-10, T=20, lr 2, 5 epochs): STP synapses 0.932; homeostatic
    # relaxation of both phases' rates (20 steps) 0.940; symmetric rule 0.927; chance 0.1.
    # Accuracy only: test_sbp_learner_step_matches_reference checks the STP and relaxation steps exactly.
    # (ANN, 64-200-10, lr 10: default 0.932, relax 0.955, symmetric 0.924; the 'differential'
    # rule leaves W_in unchanged and reaches 0.118 (ANN) / 0.36 (SNN).)
    xtr, ytr, xte, yte = digits()
    results = {}
    for name, kw, stp in [("stp", {}, True), ("relax", {"relax_steps": 20}, False),
                          ("symmetric", {"local_rule": "symmetric"}, False)]:
        torch.manual_seed(0)
        m = models.sbp_snn(64, 200, 10, T=20, seed=0, stp=stp)
        results[name] = run_epochs(learn.SBP(m, lr=2.0, seed=0, **kw), m, xtr, ytr, xte, yte, epochs=5)
    print("SBP SNN digits:", {k: round(v, 3) for k, v in results.items()})
    from torch_plugin.nn import STPSynapse
    assert isinstance(models.sbp_snn(4, 3, 2, stp=True)[1], STPSynapse)
    assert all(v > 0.85 for v in results.values())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["ann", "snn"])
def test_sbp_rejects_out_of_range_labels_before_writing(device, kind):
    """An out-of-range label is a clear ValueError and no weight changes (on CUDA
    F.one_hot would otherwise hit a device-side assert)."""
    torch.manual_seed(0)
    model = (models.sbp_ann(12, 10, 4, seed=1) if kind == "ann" else models.sbp_snn(12, 10, 4, seed=1)).to(device)
    learner = learn.SBP(model)
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.rand(5, 12, device=device)
    for bad in ([0, 1, 2, 3, 4], [-1, 0, 1, 2, 3]):
        with pytest.raises(ValueError, match=r"SBP.step: labels must be in \[0, 4\), got values in"):
            learner.step(x, torch.tensor(bad, device=device))
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    learner.step(x, torch.tensor([0, 1, 2, 3, 0], device=device))
    assert not all(torch.equal(p, b) for p, b in zip(model.parameters(), before))



@pytest.mark.parametrize("kind,kw", [("ann", {}), ("ann", {"relax_steps": 5}), ("snn", {}),
                                     ("snn", {"relax_steps": 5}), ("snn_stp", {})])
def test_sbp_bias_free_step_equals_zero_bias_step(kind, kw):
    """A bias-free model (the authors' layers) takes the same first weight step as the same
    model with its biases set to zero: every path of the learner handles bias=None."""
    def make(bias):
        torch.manual_seed(0)
        if kind == "ann":
            return models.sbp_ann(12, 9, 4, seed=0, bias=bias)
        return models.sbp_snn(12, 9, 4, T=5, seed=0, stp=kind == "snn_stp", bias=bias)
    free, zero = make(False), make(True)
    with torch.no_grad():
        for a, b in zip((m for m in free if hasattr(m, "weight")), (m for m in zero if hasattr(m, "weight"))):
            a.weight.copy_(b.weight)
            b.bias.zero_()
    assert all(getattr(m, "bias", None) is None for m in free)
    x, y = torch.rand(6, 12, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 3, 1, 2])
    before = [m.weight.detach().clone() for m in free if hasattr(m, "weight")]
    for m in (free, zero):
        torch.manual_seed(5)  # the encoder's spikes
        learn.SBP(m, lr=2.0, seed=0, **kw).step(x, y)
    after_free = [m.weight.detach() for m in free if hasattr(m, "weight")]
    after_zero = [m.weight.detach() for m in zero if hasattr(m, "weight")]
    for w0, wf, wz in zip(before, after_free, after_zero):
        assert not torch.equal(w0, wf)
        torch.testing.assert_close(wf, wz)


# ---------------------------------------------------------------------------
# One SBP learner step against the reference equations, for the paths the tests
# above leave out: the spread (fraction > 0), the lambda_p subset mask
# (percentage < 1), homeostatic relaxation (relax_steps > 0) and STP synapses.
# ---------------------------------------------------------------------------

def reference_mask(hidden, inputs, percentage, seed):
    """lambda_p drawn independently of subset_mask: each hidden unit's round(percentage * inputs)
    input synapses with the smallest of a seeded U(0, 1) draw (None when percentage is 1)."""
    if percentage == 1.0:
        return None
    u = torch.rand(hidden, inputs, generator=torch.Generator().manual_seed(seed))
    k = int(round(percentage * inputs))
    return torch.zeros(hidden, inputs, dtype=torch.bool).scatter_(1, u.topk(k, 1, largest=False).indices, True)


def reference_sbp_step(model, inp, y, *, spiking, stp=False, lr, fraction, mask, beta, alpha, relax_steps, eps,
                       rule="contrastive"):
    """One SBP step from docs/algorithms.md §2.1-2.2 (and the learner's documented phases) with ref.*
    only. inp: the ANN's input (B, I), or the SNN's input spikes (T, B, I) from its encoder.
    Returns (free-phase output, {param: new value})."""
    hid, out = [m for m in model if hasattr(m, "weight")]
    w_in, w_out = hid.weight.detach().clone(), out.weight.detach().clone()
    b_in = None if hid.bias is None else hid.bias.detach().clone()
    b_out = None if out.bias is None else out.bias.detach().clone()
    lin = lambda a, w, b: a @ w.t() + (0 if b is None else b)
    with NoNacaOps():
        if spiking:
            pre = ref.stp(inp) if stp else inp  # the hidden layer sees the STP current
            lif = hid.lif
            s_h, _ = ref.lif_forward(lin(pre, w_in, b_in), lif.decay, lif.threshold, lif.reset)
            s_o, _ = ref.lif_forward(lin(s_h, w_out, b_out), out.lif.decay, out.lif.threshold, out.lif.reset)
            r_x, r_h, r_o = pre.mean(0), s_h.mean(0), s_o.mean(0)
            result = r_o
        else:
            z_h = lin(inp, w_in, b_in)
            r_x, r_h = inp, torch.sigmoid(z_h)
            result = lin(r_h, w_out, b_out)
            r_o = torch.sigmoid(result)
        r_ob = r_o + beta * (torch.nn.functional.one_hot(y, r_o.shape[1]).to(r_o.dtype) - r_o)
        top_down = r_ob - r_o
        if relax_steps > 0:  # free phase from the forward's state; nudged phase from the relaxed free one
            r_h = ref.homeostatic_relax(r_h, r_x, w_in, None, None, b_in, eps, relax_steps)
            r_hb = ref.homeostatic_relax(r_h, r_x, w_in, top_down, w_out, b_in, eps, relax_steps)
        elif spiking:
            lif = hid.lif
            r_hb = ref.lif_forward(lin(pre, w_in, b_in) + top_down @ w_out, lif.decay, lif.threshold,
                                   lif.reset)[0].mean(0)
        else:
            r_hb = torch.sigmoid(z_h + top_down @ w_out)
        change = {"contrastive": lambda p0, pb, q0, qb: (qb - q0).t() @ p0,
                  "symmetric": lambda p0, pb, q0, qb: qb.t() @ pb - q0.t() @ p0,
                  "differential": lambda p0, pb, q0, qb: q0.t() @ (pb - p0)}[rule]
        scale = 1.0 / (beta * y.shape[0])
        dw_out = change(r_h, r_hb, r_o, r_ob) * scale
        dw_in = change(r_x, r_x, r_h, r_hb) * scale
        a_in, a_out = lr * alpha[0], lr * alpha[1]
        new_in, new_out = ref.sbp_update(w_in, w_out, dw_in, dw_out, mask, fraction, a_in, a_out)
        new = {hid.weight: new_in, out.weight: new_out}
        if b_out is not None:  # the biases follow their local change, without the spread
            new[out.bias] = b_out + a_out * top_down.sum(0) * scale
        if b_in is not None:
            new[hid.bias] = b_in + a_in * (r_hb - r_h).sum(0) * scale
    return result, new


def _differs(a, b):
    return any((a[k] - b[k]).abs().max() > 1e-6 for k in a)


SBP_CASES = [  # (kind, fraction, percentage, relax_steps, stp, rule, bias)
    ("ann", 0.3, 1.0, 0, False, "contrastive", True),
    ("ann", 0.3, 0.5, 0, False, "contrastive", True),
    ("ann", 0.6, 0.3, 0, False, "contrastive", False),
    ("ann", 0.3, 1.0, 4, False, "contrastive", True),
    ("ann", 0.5, 0.5, 4, False, "contrastive", False),
    ("ann", 0.4, 0.5, 0, False, "symmetric", True),
    ("snn", 0.4, 0.5, 0, False, "contrastive", True),
    ("snn", 0.4, 1.0, 0, True, "contrastive", True),
    ("snn", 0.4, 0.5, 0, True, "contrastive", False),
    ("snn", 0.4, 0.5, 4, False, "contrastive", True),
    ("snn", 0.4, 0.5, 4, True, "contrastive", True),
]


@pytest.mark.parametrize("kind,fraction,percentage,relax_steps,stp,rule,bias", SBP_CASES)
def test_sbp_learner_step_matches_reference(kind, fraction, percentage, relax_steps, stp, rule, bias):
    """One learner step = reference_sbp_step: the spread with fraction > 0 (lambda_f), the seeded
    subset mask with percentage < 1 (lambda_p, checked against an independent draw), homeostatic
    relaxation with a non-default eps, STP synapses in the SNN, every weight and bias. Each case
    also checks that it can fail: ignoring its fraction, its mask or its relaxation would move
    the weights elsewhere."""
    torch.manual_seed(7)
    spiking = kind == "snn"
    if spiking:
        model = models.sbp_snn(8, 6, 3, T=8, seed=2, stp=stp, bias=bias, init_gain=2.5).double()
    else:
        model = models.sbp_ann(8, 6, 3, seed=2, bias=bias).double()
    g = torch.Generator().manual_seed(8)
    x = torch.rand(5, 8, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0])
    hp = dict(lr=3.0, beta=0.4, alpha=(0.1, 0.05), eps=0.3)
    learner = learn.SBP(model, fraction=fraction, percentage=percentage, seed=11, relax_steps=relax_steps,
                        local_rule=rule, **hp)
    mask = reference_mask(6, 8, percentage, 11)
    if mask is None:
        assert learner.mask is None
    else:
        assert torch.equal(learner.mask, mask) and (mask.sum(1) == round(percentage * 8)).all()
    twin = copy.deepcopy(model)  # the weights before the step, for the reference
    spikes = []
    if spiking:  # the encoder's input spikes, as the learner's forward drew them
        model[0].register_forward_hook(lambda m, i, o: spikes.append(o.clone()))
    result = learner.step(x, y)
    inp = spikes[0] if spiking else x
    kw = dict(spiking=spiking, stp=stp, beta=hp["beta"], alpha=hp["alpha"], lr=hp["lr"], eps=hp["eps"], rule=rule)
    with torch.no_grad():
        expected_out, expected = reference_sbp_step(twin, inp, y, fraction=fraction, mask=mask,
                                                    relax_steps=relax_steps, **kw)
        # The case can fail: each feature it exercises changes the reference step.
        assert _differs(expected, reference_sbp_step(twin, inp, y, fraction=0.0, mask=mask,
                                                     relax_steps=relax_steps, **kw)[1])
        if mask is not None:
            assert _differs(expected, reference_sbp_step(twin, inp, y, fraction=fraction, mask=None,
                                                         relax_steps=relax_steps, **kw)[1])
        if relax_steps:
            assert _differs(expected, reference_sbp_step(twin, inp, y, fraction=fraction, mask=mask,
                                                         relax_steps=0, **kw)[1])
        if stp:
            assert _differs(expected, reference_sbp_step(twin, inp, y, fraction=fraction, mask=mask,
                                                         relax_steps=relax_steps, **{**kw, "stp": False})[1])
    assert len(expected) == len(list(model.parameters())) == (4 if bias else 2)
    torch.testing.assert_close(result, expected_out)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p.detach(), expected[q])
        assert not torch.equal(p, q)  # every parameter learned


def test_sbp_step_on_an_empty_batch_changes_nothing():
    """A data-parallel shard may be empty: no division by a zero batch (it raised ZeroDivisionError)."""
    m = models.sbp_ann(6, 5, 3, seed=0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    out = learn.SBP(m).step(torch.rand(0, 6), torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, 3)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())
