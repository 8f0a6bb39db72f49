"""Each NACA ANN op against the pure-PyTorch reference (torch_plugin.reference),
on random shapes, dtypes and seeds; CPU always, CUDA when a GPU is there."""
import pytest
import torch

from torch_plugin import ops, reference as ref

from conftest import DEVICE_DTYPES, DEVICES, tol

SEEDS = [0, 1, 2]
# (lam, theta) per seed for the NACA updates, none the defaults (0.5, 1.2); NL lies in [0, 1], so every
# piece of f (x <= lam/2 where theta sets f, ..., x > 1.5 lam where theta sets f again) is reached.
LAM_THETA = [(0.3, 1.6), (0.7, 0.8), (0.45, 2.0), (0.25, 1.0), (0.6, 1.4)]


def rand_case(seed, device, dtype, batch=None):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(2, 12, (1,), generator=g))
    b = batch if batch is not None else int(torch.randint(1, 40, (1,), generator=g))
    i = int(torch.randint(1, 50, (1,), generator=g))
    h = int(torch.randint(1, 60, (1,), generator=g))
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    case = dict(
        weight=mk(h, i) * 0.3, bias=mk(h), pre=mk(b, i), preact=mk(b, h), signal=mk(b, h),
        labels=torch.randint(0, n, (b,), generator=g), ni=torch.rand(2 * n, h, generator=g, dtype=torch.float64),
    )
    return {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in case.items()}


def as64(t):
    return None if t is None else t.double().cpu()


def test_expectation_matrix_n10():
    e = ops.expectation_matrix(10)
    assert e.shape == (10, 20) and e.dtype == torch.float32
    k = [18, 15, 13, 11, 9, 8, 7, 5, 3, 0]
    for c in range(10):
        assert torch.nonzero(e[c]).flatten().tolist() == [k[c], k[c] + 1]
        assert e[c, k[c]] == 0.5 and e[c, k[c] + 1] == 0.5
    assert torch.equal(e, ref.expectation_matrix(10))


@pytest.mark.parametrize("n", [2, 3, 5, 7, 10, 26, 47, 100, 200])
def test_expectation_matrix_matches_reference(n):
    assert torch.equal(ops.expectation_matrix(n, dtype=torch.float64), ref.expectation_matrix(n, torch.float64))


@pytest.mark.parametrize("device", DEVICES)
def test_expectation_matrix_dtype_device(device):
    e = ops.expectation_matrix(4, dtype=torch.float64, device=device)
    assert e.dtype == torch.float64 and e.device.type == device


@pytest.mark.parametrize("n", [1, 0, -3, 300])
def test_expectation_matrix_rejects(n):
    with pytest.raises(RuntimeError, match="num_classes"):
        ops.expectation_matrix(n)


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_neuromodulator(device, dtype, seed):
    c = rand_case(seed, device, dtype)
    out = ops.neuromodulator(c["labels"], c["ni"])
    assert out.shape == (c["labels"].shape[0], c["ni"].shape[1]) and out.dtype == dtype
    expected = ref.neuromodulator(c["labels"].cpu(), as64(c["ni"]))
    torch.testing.assert_close(as64(out), expected, rtol=tol(dtype)[0], atol=tol(dtype)[1])


@pytest.mark.parametrize("device", DEVICES)
def test_neuromodulator_conv_shape(device):
    ni = torch.rand(6, 4, 5, 7, device=device)
    y = torch.tensor([0, 2, 1, 1], device=device)
    out = ops.neuromodulator(y, ni)
    assert out.shape == (4, 4, 5, 7)
    torch.testing.assert_close(out.cpu(), ref.neuromodulator(y.cpu(), ni.cpu()))


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
def test_modulation(device, dtype):
    x = torch.linspace(-0.5, 1.5, 4001, dtype=torch.float64)
    for lam, theta in [(0.5, 1.2), (0.3, 1.5), (0.7, 1.0)]:
        out = ops.modulation(x.to(device, dtype), lam, theta)
        expected = ref.modulation(x.to(dtype).double(), lam, theta)
        torch.testing.assert_close(as64(out), expected, rtol=tol(dtype)[0], atol=tol(dtype)[1] * 10)


def test_modulation_landmarks():
    x = torch.tensor([0.0, 0.125, 0.25, 0.5, 0.75, 0.875, 1.0], dtype=torch.float64)
    expected = torch.tensor([1.0, 1.2, 1.0, 0.0, -1.0, -1.2, -1.0], dtype=torch.float64)
    torch.testing.assert_close(ops.modulation(x), expected)
    # odd about lambda: f(2 lam - x) = -f(x)
    z = torch.rand(1000, dtype=torch.float64)
    torch.testing.assert_close(ops.modulation(1.0 - z), -ops.modulation(z))


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "identity"])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_plasticity_update(device, dtype, activation, seed, with_bias):
    c = rand_case(seed, device, dtype)
    w, b = c["weight"].clone(), c["bias"].clone() if with_bias else None
    lr = 0.05
    ew, eb = ref.plasticity_update(as64(c["weight"]), as64(c["bias"]) if with_bias else None,
                                   as64(c["pre"]), as64(c["preact"]), as64(c["signal"]), activation, lr)
    v = w._version
    ops.plasticity_update_(w, b, c["pre"], c["preact"], c["signal"], activation, lr)
    assert w._version > v
    rtol, atol = tol(dtype)
    scale = max(1.0, float(c["pre"].shape[0]) ** 0.5)
    torch.testing.assert_close(as64(w), ew, rtol=rtol, atol=atol * scale)
    if with_bias:
        torch.testing.assert_close(as64(b), eb, rtol=rtol, atol=atol * scale)


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("batch", [1, None])
def test_naca_hidden_update(device, dtype, seed, batch):
    c = rand_case(seed, device, dtype, batch)
    w, b = c["weight"].clone(), c["bias"].clone()
    lam, theta = LAM_THETA[seed]  # not the defaults (0.5, 1.2): an op ignoring them fails
    ew, eb = ref.naca_hidden_update(as64(c["weight"]), as64(c["bias"]), as64(c["pre"]), as64(c["preact"]),
                                    c["labels"].cpu(), as64(c["ni"]), "tanh", 0.02, lam, theta)
    ops.naca_hidden_update_(w, b, c["pre"], c["preact"], c["labels"], c["ni"], "tanh", 0.02, lam, theta)
    rtol, atol = tol(dtype)
    torch.testing.assert_close(as64(w), ew, rtol=rtol, atol=atol * 5)
    torch.testing.assert_close(as64(b), eb, rtol=rtol, atol=atol * 5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", ["one", "classes", "classes+1", "many"])
def test_naca_hidden_equals_composition(device, dtype, batch):
    """The fused op = plasticity_update_(signal = modulation(neuromodulator(y, NI))).

    Batches up to the class count evaluate f(NL) per element, larger ones from a
    per-(class, unit) table on CPU: both paths must give the composition's update
    (bit for bit on CPU, where both round the same products)."""
    n = 7
    size = {"one": 1, "classes": n, "classes+1": n + 1, "many": 64}[batch]
    g = torch.Generator().manual_seed(7 + size)
    h, i = 37, 23
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    w0, b0, pre, preact = mk(h, i) * 0.3, mk(h), mk(size, i), mk(size, h)
    labels = torch.randint(0, n, (size,), generator=g).to(device)
    ni = torch.rand(2 * n, h, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    for activation, from_output in [("sigmoid", False), ("tanh", True), ("relu", True)]:
        u = torch.tanh(preact) if from_output and activation == "tanh" else preact
        w1, b1, w2, b2 = w0.clone(), b0.clone(), w0.clone(), b0.clone()
        ops.naca_hidden_update_(w1, b1, pre, u, labels, ni, activation, 0.1, 0.4, 1.3, from_output=from_output)
        signal = ops.modulation(ops.neuromodulator(labels, ni), 0.4, 1.3)
        ops.plasticity_update_(w2, b2, pre, u, signal, activation, 0.1, from_output=from_output)
        if device == "cpu":
            assert torch.equal(w1, w2) and torch.equal(b1, b2), (activation, from_output)
        else:
            torch.testing.assert_close(w1, w2)
            torch.testing.assert_close(b1, b2)
        assert not torch.equal(w1, w0)


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("sigmoid_grad", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_naca_output_update(device, dtype, seed, sigmoid_grad, with_bias):
    g = torch.Generator().manual_seed(100 + seed)
    b, i, n = int(torch.randint(1, 40, (1,), generator=g)), int(torch.randint(1, 50, (1,), generator=g)), \
        int(torch.randint(2, 12, (1,), generator=g))
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    w0, b0, pre = mk(n, i) * 0.3, mk(n) if with_bias else None, mk(b, i)
    logits = pre @ w0.t() + (b0 if with_bias else 0)
    labels = torch.randint(0, n, (b,), generator=g)
    ew, eb = ref.naca_output_update(w0, b0, pre, logits, labels, 0.05, sigmoid_grad)
    c = lambda t: None if t is None else t.to(device, dtype)  # noqa: E731
    w, bias = c(w0), c(b0)
    ops.naca_output_update_(w, bias, c(pre), c(logits), labels.to(device), 0.05, sigmoid_grad)
    rtol, atol = tol(dtype)
    torch.testing.assert_close(as64(w), ew, rtol=rtol, atol=atol * 5)
    if with_bias:
        torch.testing.assert_close(as64(bias), eb, rtol=rtol, atol=atol * 5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("sigmoid_grad", [True, False])
def test_naca_output_update_equals_composition_and_unchecked_rule(device, sigmoid_grad):
    """= plasticity_update_ with signal sigmoid(z) - onehot(y) (bit for bit on CPU, where both take
    sigmoid from ATen); check_labels=False: out-of-range samples learn nothing; True: rejected."""
    g = torch.Generator().manual_seed(9)
    w0 = torch.randn(5, 7, generator=g).to(device)
    b0, pre, z = (torch.randn(*s, generator=g).to(device) for s in [(5,), (12, 7), (12, 5)])
    y = (torch.arange(12) % 5).to(device)
    w1, b1, w2, b2 = w0.clone(), b0.clone(), w0.clone(), b0.clone()
    ops.naca_output_update_(w1, b1, pre, z, y, 0.1, sigmoid_grad)
    error = torch.sigmoid(z) - torch.nn.functional.one_hot(y, 5).to(z.dtype)
    ops.plasticity_update_(w2, b2, pre, z, error, "sigmoid" if sigmoid_grad else "identity", 0.1)
    if device == "cpu":
        assert torch.equal(w1, w2) and torch.equal(b1, b2)
    else:
        torch.testing.assert_close(w1, w2)
        torch.testing.assert_close(b1, b2)
    bad = y.clone()
    bad[[0, 5]] = torch.tensor([-1, 5], device=device)
    keep = torch.ones(12, dtype=torch.bool, device=device)
    keep[[0, 5]] = False
    w3, b3, w4, b4 = w0.clone(), b0.clone(), w0.clone(), b0.clone()
    ops.naca_output_update_(w3, b3, pre, z, bad, 0.1, sigmoid_grad, check_labels=False)
    ops.naca_output_update_(w4, b4, pre[keep], z[keep], y[keep], 0.1, sigmoid_grad)
    torch.testing.assert_close(w3, w4)
    torch.testing.assert_close(b3, b4)
    w5 = w0.clone()
    with pytest.raises(RuntimeError, match="naca::naca_output_update_: argument 'labels' expected values in"):
        ops.naca_output_update_(w5, None, pre, z, bad, 0.1, sigmoid_grad)
    assert torch.equal(w5, w0)
    with pytest.raises(RuntimeError, match="naca::naca_output_update_: argument 'logits' expected shape"):
        ops.naca_output_update_(w5, None, pre, z[:, :4], y, 0.1, sigmoid_grad)


ACT = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "identity": lambda t: t}


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "identity"])
@pytest.mark.parametrize("seed", SEEDS)
def test_update_ops_from_output(device, dtype, activation, seed):
    """from_output=True: given h = act(z) the ops apply the same update the reference computes from z."""
    c = rand_case(seed, device, dtype)
    h = ACT[activation](c["preact"])
    lr = 0.05
    rtol, atol = tol(dtype)
    scale = max(1.0, float(c["pre"].shape[0]) ** 0.5)

    w, b = c["weight"].clone(), c["bias"].clone()
    ew, eb = ref.plasticity_update(as64(c["weight"]), as64(c["bias"]), as64(c["pre"]), as64(c["preact"]),
                                   as64(c["signal"]), activation, lr)
    ops.plasticity_update_(w, b, c["pre"], h, c["signal"], activation, lr, from_output=True)
    torch.testing.assert_close(as64(w), ew, rtol=rtol, atol=atol * scale)
    torch.testing.assert_close(as64(b), eb, rtol=rtol, atol=atol * scale)

    w, b = c["weight"].clone(), c["bias"].clone()
    ew, eb = ref.naca_hidden_update(as64(c["weight"]), as64(c["bias"]), as64(c["pre"]), as64(c["preact"]),
                                    c["labels"].cpu(), as64(c["ni"]), activation, lr, 0.5, 1.2)
    ops.naca_hidden_update_(w, b, c["pre"], h, c["labels"], c["ni"], activation, lr, from_output=True)
    torch.testing.assert_close(as64(w), ew, rtol=rtol, atol=atol * scale * 5)
    torch.testing.assert_close(as64(b), eb, rtol=rtol, atol=atol * scale * 5)


def test_from_output_differs_from_preact():
    """The flag changes the meaning of `preact`: the same tensor read as z or as act(z) gives different updates."""
    c = rand_case(3, "cpu", torch.float64)
    w1, w2 = c["weight"].clone(), c["weight"].clone()
    ops.naca_hidden_update_(w1, None, c["pre"], c["preact"], c["labels"], c["ni"], "tanh", 0.1)
    ops.naca_hidden_update_(w2, None, c["pre"], c["preact"], c["labels"], c["ni"], "tanh", 0.1, from_output=True)
    assert not torch.allclose(w1, w2)


def conv_case(seed, device, dtype):
    g = torch.Generator().manual_seed(seed)
    r = lambda lo, hi: int(torch.randint(lo, hi, (1,), generator=g))
    groups = [1, 2][r(0, 2)]
    cin, cout = groups * r(1, 4), groups * r(1, 4)
    k, stride, pad, dil = r(1, 4), r(1, 3), r(0, 2), r(1, 3)
    hw = dil * (k - 1) + 1 + r(0, 6)
    b, n = r(1, 5), r(2, 6)
    x = torch.randn(b, cin, hw, hw + 1, generator=g, dtype=torch.float64)
    w = torch.randn(cout, cin // groups, k, k, generator=g, dtype=torch.float64) * 0.3
    z = torch.nn.functional.conv2d(x, w, None, stride, pad, dil, groups)
    ni = torch.rand(2 * n, *z.shape[1:], generator=g, dtype=torch.float64)
    y = torch.randint(0, n, (b,), generator=g)
    cast = lambda t: t.to(device, dtype)
    return dict(weight=cast(w), bias=cast(torch.randn(cout, generator=g, dtype=torch.float64)), input=cast(x),
                preact=cast(z), signal=cast(torch.randn(z.shape, generator=g, dtype=torch.float64)),
                labels=y.to(device), ni=cast(ni), geom=((stride,) * 2, (pad,) * 2, (dil,) * 2, groups))


@pytest.mark.parametrize("seed", range(5))
def test_conv_reference_im2col_equals_autograd(seed):
    """The reference's conv weight change (im2col by F.unfold and einsum, independent of the
    convolution_backward kernel the op calls) equals autograd's gradient of <conv(x, W), delta>
    (the benchmark's baseline form), over the strides, paddings, dilations and groups of conv_case."""
    c = conv_case(seed, "cpu", torch.float64)
    args = (c["weight"], c["bias"], c["input"], c["preact"], c["signal"], *c["geom"], "tanh", 0.01)
    w1, b1 = ref.conv_plasticity_update(*args)
    w2, b2 = ref.conv_plasticity_update(*args, im2col=False)
    assert not torch.allclose(w1, c["weight"])
    torch.testing.assert_close(w1, w2, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b1, b2, rtol=0, atol=0)


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("seed", range(5))
def test_conv_plasticity_update(device, dtype, seed):
    c = conv_case(seed, device, dtype)
    stride, pad, dil, groups = c["geom"]
    w, b = c["weight"].clone(), c["bias"].clone()
    ew, eb = ref.conv_plasticity_update(as64(c["weight"]), as64(c["bias"]), as64(c["input"]), as64(c["preact"]),
                                        as64(c["signal"]), stride, pad, dil, groups, "tanh", 0.01)
    ops.conv_plasticity_update_(w, b, c["input"], c["preact"], c["signal"], stride, pad, dil, groups, "tanh", 0.01)
    rtol, atol = tol(dtype)
    torch.testing.assert_close(as64(w), ew, rtol=rtol, atol=atol * 10)
    torch.testing.assert_close(as64(b), eb, rtol=rtol, atol=atol * 10)


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("seed", range(5))
def test_naca_conv_update(device, dtype, seed):
    c = conv_case(seed, device, dtype)
    stride, pad, dil, groups = c["geom"]
    w, b = c["weight"].clone(), c["bias"].clone()
    lam, theta = LAM_THETA[seed]  # not the defaults: an op ignoring them fails
    ew, eb = ref.naca_conv_update(as64(c["weight"]), as64(c["bias"]), as64(c["input"]), as64(c["preact"]),
                                  c["labels"].cpu(), as64(c["ni"]), stride, pad, dil, groups, "relu", 0.01,
                                  lam, theta)
    ops.naca_conv_update_(w, b, c["input"], c["preact"], c["labels"], c["ni"], stride, pad, dil, groups, "relu", 0.01,
                          lam, theta)
    rtol, atol = tol(dtype)
    torch.testing.assert_close(as64(w), ew, rtol=rtol, atol=atol * 10)
    torch.testing.assert_close(as64(b), eb, rtol=rtol, atol=atol * 10)


@pytest.mark.parametrize("device,dtype", DEVICE_DTYPES)
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_conv_updates_from_output(device, dtype, seed, activation):
    c = conv_case(seed, device, dtype)
    stride, pad, dil, groups = c["geom"]
    h = ACT[activation](c["preact"])
    rtol, atol = tol(dtype)
    w, b = c["weight"].clone(), c["bias"].clone()
    ew, eb = ref.conv_plasticity_update(as64(c["weight"]), as64(c["bias"]), as64(c["input"]), as64(c["preact"]),
                                        as64(c["signal"]), stride, pad, dil, groups, activation, 0.01)
    ops.conv_plasticity_update_(w, b, c["input"], h, c["signal"], stride, pad, dil, groups, activation, 0.01,
                                from_output=True)
    torch.testing.assert_close(as64(w), ew, rtol=rtol, atol=atol * 10)
    torch.testing.assert_close(as64(b), eb, rtol=rtol, atol=atol * 10)
    w, b = c["weight"].clone(), c["bias"].clone()
    lam, theta = LAM_THETA[seed]
    ew, eb = ref.naca_conv_update(as64(c["weight"]), as64(c["bias"]), as64(c["input"]), as64(c["preact"]),
                                  c["labels"].cpu(), as64(c["ni"]), stride, pad, dil, groups, activation, 0.01,
                                  lam, theta)
    ops.naca_conv_update_(w, b, c["input"], h, c["labels"], c["ni"], stride, pad, dil, groups, activation, 0.01,
                          lam, theta, from_output=True)
    torch.testing.assert_close(as64(w), ew, rtol=rtol, atol=atol * 10)
    torch.testing.assert_close(as64(b), eb, rtol=rtol, atol=atol * 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_updates_in_chunks_match_reference(dtype):
    """On CPU the conv updates run over the batch in chunks of ~8 MiB of delta
    (update.h, conv_chunk_samples); a batch of 9 maps of 64 x 64 x 64 (2 MiB each
    in float64: chunks of 4, 4, 1; 1 MiB in float32: 8, 1) must give the
    reference's whole-batch update."""
    g = torch.Generator().manual_seed(11)
    b, cin, cout, n = 9, 2, 64, 5
    x = torch.randn(b, cin, 64, 64, generator=g, dtype=torch.float64)
    w = torch.randn(cout, cin, 3, 3, generator=g, dtype=torch.float64) * 0.3
    z = torch.nn.functional.conv2d(x, w, None, 1, 1)
    bias = torch.randn(cout, generator=g, dtype=torch.float64)
    signal = torch.randn(z.shape, generator=g, dtype=torch.float64)
    ni = torch.rand(2 * n, *z.shape[1:], generator=g, dtype=torch.float64)
    y = torch.randint(0, n, (b,), generator=g)
    c = lambda t: t.to(dtype)
    rtol, atol = tol(dtype)
    geom = ((1, 1), (1, 1), (1, 1), 1)
    ew, eb = ref.naca_conv_update(w, bias, x, z, y, ni, *geom, "tanh", 0.01)
    w1, b1 = c(w), c(bias)
    ops.naca_conv_update_(w1, b1, c(x), c(z), y, c(ni), *geom, "tanh", 0.01)
    torch.testing.assert_close(as64(w1), ew, rtol=rtol, atol=atol * 50)
    torch.testing.assert_close(as64(b1), eb, rtol=rtol, atol=atol * 50)
    ew, eb = ref.conv_plasticity_update(w, bias, x, z, signal, *geom, "sigmoid", 0.01)
    w2, b2 = c(w), c(bias)
    ops.conv_plasticity_update_(w2, b2, c(x), c(torch.sigmoid(z)), c(signal), *geom, "sigmoid", 0.01,
                                from_output=True)
    torch.testing.assert_close(as64(w2), ew, rtol=rtol, atol=atol * 50)
    torch.testing.assert_close(as64(b2), eb, rtol=rtol, atol=atol * 50)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [3, 40])  # per element / per-class table on CPU
def test_unchecked_labels_out_of_range_do_not_learn(device, batch):
    """check_labels=False: no host read of the labels; a sample whose label is out
    of range contributes nothing, so the update equals the checked update over the
    valid samples. check_labels=True rejects the same call and writes nothing."""
    n = 4
    c = rand_case(21, device, torch.float64, batch)
    h = c["preact"].shape[1]
    ni = torch.rand(2 * n, h, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).to(device)
    labels = torch.arange(batch, device=device) % n
    labels[0], labels[-1] = -1, 10 ** 6
    valid = (labels >= 0) & (labels < n)
    w1, b1, w2, b2 = (t.clone() for t in (c["weight"], c["bias"], c["weight"], c["bias"]))
    ops.naca_hidden_update_(w1, b1, c["pre"], c["preact"], labels, ni, "tanh", 0.1, check_labels=False)
    ops.naca_hidden_update_(w2, b2, c["pre"][valid], c["preact"][valid], labels[valid], ni, "tanh", 0.1)
    torch.testing.assert_close(w1, w2)
    torch.testing.assert_close(b1, b2)
    assert not torch.equal(w1, c["weight"])
    w3 = c["weight"].clone()
    with pytest.raises(RuntimeError, match="naca::naca_hidden_update_: argument 'labels' expected values"):
        ops.naca_hidden_update_(w3, None, c["pre"], c["preact"], labels, ni, "tanh", 0.1)
    assert torch.equal(w3, c["weight"])
    # the conv op, same rule
    g = torch.Generator().manual_seed(5)
    x = torch.randn(batch, 2, 6, 6, generator=g, dtype=torch.float64).to(device)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64).to(device)
    z = torch.nn.functional.conv2d(x, w, None, 1, 1)
    nic = torch.rand(2 * n, *z.shape[1:], generator=g, dtype=torch.float64).to(device)
    geom = ((1, 1), (1, 1), (1, 1), 1)
    wc1, wc2 = w.clone(), w.clone()
    ops.naca_conv_update_(wc1, None, x, z, labels, nic, *geom, "relu", 0.1, check_labels=False)
    ops.naca_conv_update_(wc2, None, x[valid], z[valid], labels[valid], nic, *geom, "relu", 0.1)
    torch.testing.assert_close(wc1, wc2)


@pytest.mark.parametrize("device", DEVICES)
def test_neuromodulator_unchecked_labels(device):
    ni = torch.rand(8, 3, 5, dtype=torch.float64).to(device)
    y = torch.tensor([0, 3, -1, 4, 2], device=device)
    nl = ops.neuromodulator(y, ni, check_labels=False)
    ok = torch.tensor([True, True, False, False, True], device=device)
    torch.testing.assert_close(nl[ok], ops.neuromodulator(y[ok], ni), rtol=0, atol=0)
    assert torch.count_nonzero(nl[~ok]) == 0
    with pytest.raises(RuntimeError, match="naca::neuromodulator: argument 'labels' expected values in"):
        ops.neuromodulator(y, ni)


@pytest.mark.parametrize("device", DEVICES)
def test_updates_under_inference_mode_and_no_graph(device):
    c = rand_case(3, device, torch.float32)
    w = torch.nn.Parameter(c["weight"].clone())
    ops.plasticity_update_(w, None, c["pre"], c["preact"], c["signal"], "tanh", 0.1)
    assert w.grad_fn is None and w.is_leaf
    with torch.inference_mode():
        wi = c["weight"].clone()
        ops.naca_hidden_update_(wi, None, c["pre"], c["preact"], c["labels"], c["ni"], "tanh", 0.1)
        assert not torch.equal(wi, c["weight"])


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch_is_a_noop(device):
    c = rand_case(4, device, torch.float32, batch=0)
    w, b = c["weight"].clone(), c["bias"].clone()
    ops.plasticity_update_(w, b, c["pre"], c["preact"], c["signal"], "tanh", 0.1)
    ops.naca_hidden_update_(w, b, c["pre"], c["preact"], c["labels"], c["ni"], "tanh", 0.1)
    assert torch.equal(w, c["weight"]) and torch.equal(b, c["bias"])
    assert ops.neuromodulator(c["labels"], c["ni"]).shape == (0, c["ni"].shape[1])


def test_pseudo_gradient_accumulates_with_lr_minus_one():
    c = rand_case(5, "cpu", torch.float64)
    grad = torch.zeros_like(c["weight"])
    ops.plasticity_update_(grad, None, c["pre"], c["preact"], c["signal"], "identity", -1.0)
    torch.testing.assert_close(grad, c["signal"].t() @ c["pre"])
