"""Bad calls get a clear error naming the argument, and leave the weights untouched."""
import re

import pytest
import torch

from torch_plugin import ops

from conftest import CUDA


def good():
    g = torch.Generator().manual_seed(0)
    return dict(
        weight=torch.randn(5, 3, generator=g), bias=torch.randn(5, generator=g), pre=torch.randn(4, 3, generator=g),
        preact=torch.randn(4, 5, generator=g), signal=torch.randn(4, 5, generator=g),
        labels=torch.tensor([0, 1, 2, 1]), ni=torch.rand(6, 5, generator=g),
    )


def call_plasticity(a):
    ops.plasticity_update_(a["weight"], a["bias"], a["pre"], a["preact"], a["signal"], a.get("act", "tanh"), a.get("lr", 0.1))


def call_hidden(a):
    ops.naca_hidden_update_(a["weight"], a["bias"], a["pre"], a["preact"], a["labels"], a["ni"],
                            a.get("act", "tanh"), a.get("lr", 0.1), a.get("lam", 0.5), a.get("theta", 1.2))


def mutate(name, fn):
    return pytest.param(name, fn, id=name)


BAD = [
    mutate("pre", lambda a: a.update(pre=torch.randn(4, 7))),
    # pre with a batch of 3: the batch is taken from pre, so the mismatch is reported on preact
    # ("argument 'preact' expected shape [3, 5], got [4, 5]").
    mutate("preact", lambda a: a.update(pre=torch.randn(3, 3))),
    mutate("preact", lambda a: a.update(preact=torch.randn(4, 6))),
    mutate("pre", lambda a: a.update(pre=a["pre"].double())),
    mutate("weight", lambda a: a.update(weight=a["weight"].int())),
    mutate("weight", lambda a: a.update(weight=torch.randn(3, 5).t())),
    mutate("weight", lambda a: a.update(weight=torch.randn(5, 3, 1))),
    mutate("bias", lambda a: a.update(bias=torch.randn(4))),
    mutate("bias", lambda a: a.update(bias=a["bias"].double())),
    mutate("weight", lambda a: a.update(weight=torch.randn(1, 3).expand(5, 3))),
    mutate("activation", lambda a: a.update(act="softplus")),
    mutate("lr", lambda a: a.update(lr=float("nan"))),
    mutate("lr", lambda a: a.update(lr=float("inf"))),
]


def names(op, arg):
    """The message must blame `arg` itself, as csrc/checks.h formats it: "naca::<op>: argument '<arg>' ..."
    ("'pre'" inside "'preact'" or "(the dtype of 'weight')" does not count)."""
    return f"naca::{op}: argument '{re.escape(arg)}' "


def written_tensors(a):
    """Clones of the tensors the op may write, exactly as they are passed (after the mutation)."""
    return {k: a[k].clone() for k in ("weight", "bias") if isinstance(a.get(k), torch.Tensor)}


def assert_untouched(a, before):
    for k, b in before.items():
        assert a[k].dtype == b.dtype and a[k].shape == b.shape and torch.equal(a[k], b), f"{k} changed"


@pytest.mark.parametrize("arg,bad", BAD + [mutate("signal", lambda a: a.update(signal=torch.randn(4, 4)))])
def test_plasticity_rejects(arg, bad):
    a = good()
    bad(a)
    before = written_tensors(a)
    with pytest.raises(RuntimeError, match=names("plasticity_update_", arg)):
        call_plasticity(a)
    assert_untouched(a, before)


HIDDEN_BAD = BAD + [
    mutate("labels", lambda a: a.update(labels=torch.tensor([0, 1, 3, 1]))),
    mutate("labels", lambda a: a.update(labels=torch.tensor([0, -1, 2, 1]))),
    mutate("labels", lambda a: a.update(labels=torch.tensor([0, 1, 2, 1], dtype=torch.int32))),
    mutate("labels", lambda a: a.update(labels=torch.tensor([0, 1, 2]))),
    mutate("ni", lambda a: a.update(ni=torch.rand(5, 5))),
    mutate("ni", lambda a: a.update(ni=torch.rand(6, 4))),
    mutate("ni", lambda a: a.update(ni=torch.rand(6, 5, dtype=torch.float64))),
    mutate("lam", lambda a: a.update(lam=0.0)),
    mutate("theta", lambda a: a.update(theta=float("nan"))),
]


@pytest.mark.parametrize("arg,bad", HIDDEN_BAD)
def test_hidden_rejects_and_leaves_weights(arg, bad):
    a = good()
    bad(a)
    before = written_tensors(a)  # the weight and bias actually passed (non-contiguous, expanded, int...)
    with pytest.raises(RuntimeError, match=names("naca_hidden_update_", arg)):
        call_hidden(a)
    assert_untouched(a, before)


def test_bias_may_be_none_but_weight_may_not():
    a = good()
    a["bias"] = None
    call_plasticity(a)  # fine
    with pytest.raises((RuntimeError, TypeError)):
        ops.plasticity_update_(None, None, a["pre"], a["preact"], a["signal"], "tanh", 0.1)


def test_weight_aliasing_an_input_is_rejected():
    a = good()
    w = torch.randn(5, 5)
    with pytest.raises(RuntimeError, match="'weight' shares memory with argument 'pre'"):
        ops.plasticity_update_(w, None, w[:4], torch.randn(4, 5), torch.randn(4, 5), "tanh", 0.1)
    grad_w = torch.zeros(4, 4)
    with pytest.raises(RuntimeError, match="'weight' shares memory with argument 'preact'"):
        ops.plasticity_update_(grad_w, None, torch.randn(4, 4), grad_w, torch.randn(4, 4), "tanh", 0.1)


def test_error_names_expected_and_got():
    a = good()
    a["pre"] = torch.randn(4, 7)
    with pytest.raises(RuntimeError) as err:
        call_plasticity(a)
    msg = str(err.value)
    assert "'pre'" in msg and "[4, 3]" in msg and "[4, 7]" in msg


def test_neuromodulator_and_modulation_reject():
    with pytest.raises(RuntimeError, match="naca::neuromodulator: argument 'labels' expected values in \\[0, 3\\)"):
        ops.neuromodulator(torch.tensor([3]), torch.rand(6, 2))
    with pytest.raises(RuntimeError, match="'ni' expected an even first dimension"):
        ops.neuromodulator(torch.tensor([0]), torch.rand(7, 2))
    with pytest.raises(RuntimeError, match="naca::modulation: argument 'level' expected dtype float32 or float64"):
        ops.modulation(torch.tensor([1, 2]))
    with pytest.raises(RuntimeError, match="'lam' expected > 0"):
        ops.modulation(torch.rand(3), -1.0)


def test_conv_rejects():
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    z = torch.nn.functional.conv2d(x, w)
    w0 = w.clone()
    with pytest.raises(RuntimeError, match="'preact' expected shape \\[2, 4, 6, 6\\]"):
        ops.conv_plasticity_update_(w, None, x, z[:, :, :5], z[:, :, :5], activation="tanh", lr=0.1)
    with pytest.raises(RuntimeError, match="'input' expected 3 channels"):
        ops.conv_plasticity_update_(w, None, x[:, :2], z, z, activation="tanh", lr=0.1)
    with pytest.raises(RuntimeError, match="'groups'"):
        ops.conv_plasticity_update_(w, None, x, z, z, groups=3, activation="tanh", lr=0.1)
    with pytest.raises(RuntimeError, match="stride >= 1"):
        ops.conv_plasticity_update_(w, None, x, z, z, stride=(0, 1), activation="tanh", lr=0.1)
    with pytest.raises(RuntimeError, match="'ni' expected shape \\[4, 4, 6, 6\\]"):
        ops.naca_conv_update_(w, None, x, z, torch.tensor([0, 1]), torch.rand(4, 4, 6, 5), activation="tanh", lr=0.1)
    assert torch.equal(w, w0)


@pytest.mark.skipif(not CUDA, reason="needs a GPU")
def test_device_mismatch_is_rejected():
    a = good()
    a["pre"] = a["pre"].cuda()
    with pytest.raises(RuntimeError, match="'pre' expected on device cpu"):
        call_plasticity(a)
    b = {k: v.cuda() for k, v in good().items()}
    b["labels"] = b["labels"].cpu()
    with pytest.raises(RuntimeError, match="'labels' expected on device cuda"):
        call_hidden(b)


def test_half_on_cpu_is_rejected():
    a = {k: (v.half() if v.is_floating_point() else v) for k, v in good().items()}
    with pytest.raises(RuntimeError, match="float16/bfloat16 on CUDA|expected dtype float32 or float64"):
        call_plasticity(a)


# --- the argument at fault, where the shapes could point at another one -----------------------

WEIGHT_T = [mutate("weight", lambda a: a.update(weight=torch.randn(3, 5))),  # transposed: (I, H)
            mutate("weight", lambda a: a.update(weight=torch.randn(6, 4)))]  # neither size fits


@pytest.mark.parametrize("arg,bad", WEIGHT_T)
@pytest.mark.parametrize("call", [call_plasticity, call_hidden], ids=["plasticity", "hidden"])
def test_a_misshapen_weight_is_blamed_not_pre(arg, bad, call):
    a = good()
    a["bias"] = None
    bad(a)
    before = written_tensors(a)
    op = "plasticity_update_" if call is call_plasticity else "naca_hidden_update_"
    with pytest.raises(RuntimeError, match=names(op, "weight") + r"expected shape \[5, 3\]"):
        call(a)
    assert_untouched(a, before)


def test_a_misshapen_weight_is_blamed_in_the_output_conv_and_snn_updates():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 5, generator=g)  # (N, I) transposed: pre (4, 3), logits (4, 5)
    w0 = w.clone()
    with pytest.raises(RuntimeError, match=names("naca_output_update_", "weight")):
        ops.naca_output_update_(w, None, torch.randn(4, 3), torch.randn(4, 5), torch.tensor([0, 1, 2, 1]), 0.1)
    x, wc = torch.randn(2, 3, 8, 8, generator=g), torch.randn(4, 3, 3, 3, generator=g)
    z = torch.nn.functional.conv2d(x, wc)
    wt = wc.transpose(0, 1).contiguous()  # (C_in, C_out, k, k)
    wt0 = wt.clone()
    with pytest.raises(RuntimeError, match=names("conv_plasticity_update_", "weight")):
        ops.conv_plasticity_update_(wt, None, x, z, z, activation="tanh", lr=0.1)
    pre, v = torch.rand(3, 4, 3, generator=g), torch.rand(3, 4, 5, generator=g)
    ws = torch.randn(3, 5, generator=g)
    ws0 = ws.clone()
    with pytest.raises(RuntimeError, match=names("naca_snn_update_", "weight")):
        ops.naca_snn_update_(ws, None, pre, v, (v > 0.5).float(), torch.rand(4, 5, generator=g))
    assert torch.equal(w, w0) and torch.equal(wt, wt0) and torch.equal(ws, ws0)


def test_a_single_wrong_size_still_names_the_weight_it_was_compared_with():
    a = good()
    a["weight"] = torch.randn(5, 4)  # pre (4, 3): either may be wrong
    with pytest.raises(RuntimeError, match=names("plasticity_update_", "pre") + r".*weight\.size\(1\)"):
        call_plasticity(a)


def test_ni_with_one_row_per_class_is_named():
    """NI holds 2N rows; one of N rows reads as N / 2 classes. Labels beyond N / 2 (but below N)
    then name 'ni' as well as 'labels' (an off-by-one label looks the same to the op)."""
    a = good()
    a["labels"], a["ni"] = torch.tensor([0, 1, 2, 3]), torch.rand(4, 5)  # 4 classes, NI of 4 rows
    before = written_tensors(a)
    msg = r"argument 'labels' expected values in \[0, 2\).*or argument 'ni' expected 2N rows .*8 rows for 4 classes"
    with pytest.raises(RuntimeError, match=names("naca_hidden_update_", "labels") + msg[len("argument 'labels' "):]):
        call_hidden(a)
    assert_untouched(a, before)
    with pytest.raises(RuntimeError, match="naca::neuromodulator: " + msg):
        ops.neuromodulator(a["labels"], a["ni"])
    x, w = torch.randn(4, 3, 8, 8), torch.randn(2, 3, 3, 3)
    z, w0 = torch.nn.functional.conv2d(x, w), w.clone()
    with pytest.raises(RuntimeError, match="naca::naca_conv_update_: " + msg):
        ops.naca_conv_update_(w, None, x, z, a["labels"], torch.rand(4, 2, 6, 6), activation="tanh", lr=0.1)
    assert torch.equal(w, w0)
    # Labels beyond what even ni.size(0) classes hold blame the labels alone.
    with pytest.raises(RuntimeError, match=r"got values in \[0, 9\]$"):
        ops.neuromodulator(torch.tensor([0, 9]), a["ni"])


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_expectation_matrix_rejects_a_dtype_that_cannot_hold_one_half(dtype):
    with pytest.raises(RuntimeError, match="naca::expectation_matrix: argument 'dtype' expected a floating-point"):
        ops.expectation_matrix(4, dtype=dtype)
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode(), pytest.raises(RuntimeError, match="naca::expectation_matrix: argument 'dtype'"):
        torch.ops.naca.expectation_matrix(4, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_expectation_matrix_floating_dtypes(dtype):
    e = ops.expectation_matrix(10, dtype=dtype)
    assert e.dtype == dtype and e.sum().item() == 10 and set(e.unique().tolist()) == {0.0, 0.5}
