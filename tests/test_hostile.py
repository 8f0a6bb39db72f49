"""Hostile input, property-based (hypothesis): every naca op, started from a valid
sample of tests/op_samples.py, gets one argument spoiled (wrong shape, dtype,
device, non-contiguous, expanded, aliased with another argument, NaN/Inf,
empty, out-of-range labels, absurd scalars and strings, a flipped bool, None
for an optional tensor). Whether the spoiled call is valid is decided by
``documented_valid`` below, a restatement of the README's operator table that
does not look at the C++ checks. The property:

* the process never crashes;
* a valid call succeeds (no exception of any type), and when every tensor and
  scalar it gets is finite and of moderate size, so is everything it returns or
  writes;
* an invalid call raises a RuntimeError naming the op (``naca::<op>: ...``);
  when the spoiled argument is a scalar, string, label or written tensor the
  message names that argument, and an alias error names both arguments;
* after every rejected call, every argument the op may write is bit-identical
  to a clone taken before the call;
* a non-contiguous copy of a read-only argument gives the same result as the
  original (the ops make their inputs contiguous), and so does flipping
  ``check_labels`` on labels that are in range;
* NaN/Inf inside tensors is not checked by the ops (no device sync): such calls
  are valid and the NaN propagates; the learners' ``skip_nonfinite`` option
  skips such updates (tests/test_hostile_learners.py).

The argument kinds come from each op's schema, so a new op is covered as soon as
it has samples (and a line in ``SHAPES``). derandomize=True keeps CI stable.
"""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CUDA
from op_samples import SAMPLES

OPS = sorted(SAMPLES)
FLOAT_DTYPES = (torch.float32, torch.float64)
SETTINGS = settings(max_examples=250, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def schema_args(op_name):
    return getattr(torch.ops.naca, op_name).default._schema.arguments


def written(op_name):
    return [i for i, a in enumerate(schema_args(op_name)) if a.alias_info is not None and a.alias_info.is_write]


def full_args(op_name, args, kwargs):
    """Positional list of every schema argument (defaults filled in)."""
    out = list(args)
    for a in schema_args(op_name)[len(args):]:
        out.append(kwargs[a.name] if a.name in kwargs else a.default_value)
    return out


def call(op_name, vals):
    schema = schema_args(op_name)
    pos = [v for a, v in zip(schema, vals) if not a.kwarg_only]
    kw = {a.name: v for a, v in zip(schema, vals) if a.kwarg_only}
    return getattr(torch.ops.naca, op_name)(*pos, **kw)


def same_bits(a, b):
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.device.type == "meta":  # no data to compare
        return True
    bits = lambda t: t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # noqa: E731
    return torch.equal(bits(a), bits(b))


def non_contiguous(t):
    if t.dim() == 0 or t.numel() == 0:
        return t
    buf = torch.empty((*t.shape, 2), dtype=t.dtype, device=t.device)
    out = buf[..., 0]
    out.copy_(t)
    return out


# --- the documented contract (README, operator reference) -------------------

STRINGS = {"activation": {"tanh", "sigmoid", "relu", "identity"}, "reset": {"hard", "soft"},
           "current": {"linear", "sigmoid"}, "bound": {"hard", "soft", "none"}}
POSITIVE = {"lam", "tau_pre", "tau_post", "tau_f", "tau_d", "tau_s", "dt"}  # lam <= 0, tau_* <= 0, dt <= 0 rejected
NON_NEGATIVE = {"fraction"}
LR_FITS_WEIGHT = {"plasticity_update_", "naca_hidden_update_", "naca_output_update_", "conv_plasticity_update_",
                  "naca_conv_update_", "naca_snn_update_", "naca_snn_chain_update_"}  # lr beyond float range rejected
F32_MAX = torch.finfo(torch.float32).max


def float_dtypes(device):
    return FLOAT_DTYPES + ((torch.float16, torch.bfloat16) if device.type == "cuda" else ())


def shares_memory(a, b):
    """Whether two tensors touch a common byte (same storage, overlapping extents)."""
    if a.numel() == 0 or b.numel() == 0 or a.device != b.device or a.device.type == "meta":
        return False
    if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return False

    def span(t):
        lo = t.storage_offset()
        hi = lo + sum((s - 1) * abs(st) for s, st in zip(t.shape, t.stride()))
        return lo * t.element_size(), (hi + 1) * t.element_size()
    (a0, a1), (b0, b1) = span(a), span(b)
    return a0 < b1 and b0 < a1


def _seq(t):  # (T, B, N), T >= 1
    return t.dim() == 3 and t.shape[0] >= 1


def _linear(a, preact="preact"):  # weight (H, I), bias (H), pre (B, I), preact (B, H)
    w, b, pre, z = a["weight"], a["bias"], a["pre"], a[preact]
    return (w.dim() == 2 and (b is None or tuple(b.shape) == (w.shape[0],)) and pre.dim() == 2
            and pre.shape[1] == w.shape[1] and tuple(z.shape) == (pre.shape[0], w.shape[0]))


def _classes(ni):  # N for an NI of shape (2N, ...), N >= 2
    return ni.shape[0] // 2 if ni.dim() >= 2 and ni.shape[0] >= 4 and ni.shape[0] % 2 == 0 else None


def _labels(a, n, batch=None):  # int64 (B,), values in [0, N) unless check_labels=False
    lab = a["labels"]
    if n is None or lab.dim() != 1 or batch is not None and lab.shape[0] != batch:
        return False
    if a.get("check_labels", True) and lab.numel() and lab.device.type != "meta":
        return bool(((lab >= 0) & (lab < n)).all())
    return True


def _conv(a):  # preact (B, C_out, Ho, Wo): conv2d of input (B, C_in, H, W) by weight (C_out, C_in / g, kh, kw)
    s, p, d, g = a["stride"], a["padding"], a["dilation"], a["groups"]
    w, x, b = a["weight"], a["input"], a["bias"]
    if any(len(v) != 2 for v in (s, p, d)) or min(s) < 1 or min(d) < 1 or min(p) < 0 or g < 1:
        return False
    if w.dim() != 4 or x.dim() != 4 or w.shape[0] % g or x.shape[1] != w.shape[1] * g \
            or b is not None and tuple(b.shape) != (w.shape[0],):
        return False
    out = [x.shape[0], w.shape[0]]
    for i in range(2):
        span = d[i] * (w.shape[2 + i] - 1) + 1
        if x.shape[2 + i] + 2 * p[i] < span:
            return False
        out.append((x.shape[2 + i] + 2 * p[i] - span) // s[i] + 1)
    return list(a["preact"].shape) == out


def _snn(a):  # weight (H, I), bias (H), pre_spikes (T, B, I), voltages/spikes (T, B, H), signal (B, H)
    w, b, x = a["weight"], a["bias"], a["pre_spikes"]
    if w.dim() != 2 or not _seq(x) or x.shape[2] != w.shape[1] or b is not None and tuple(b.shape) != (w.shape[0],):
        return False
    t, bs, h = x.shape[0], x.shape[1], w.shape[0]
    return (tuple(a["voltages"].shape) == (t, bs, h) and tuple(a["spikes"].shape) == (t, bs, h)
            and tuple(a["signal"].shape) == (bs, h))


def _stdp(a):  # weight (H, I), pre (T, B, I), post (T, B, H), modulator scalar, (H) or (B, H)
    w, x, y, m = a["weight"], a["pre_spikes"], a["post_spikes"], a["modulator"]
    if w.dim() != 2 or not _seq(x) or x.shape[2] != w.shape[1]:
        return False
    t, b, h = x.shape[0], x.shape[1], w.shape[0]
    return tuple(y.shape) == (t, b, h) and (m is None or m.numel() == 1 and m.dim() <= 1
                                            or tuple(m.shape) in ((h,), (b, h)))


SHAPES = {
    "expectation_matrix": lambda a: True,
    "neuromodulator": lambda a: _labels(a, _classes(a["ni"])),
    "modulation": lambda a: True,
    "plasticity_update_": lambda a: _linear(a) and a["signal"].shape == a["preact"].shape,
    "naca_hidden_update_": lambda a: (_linear(a) and a["ni"].dim() == 2 and a["ni"].shape[1] == a["weight"].shape[0]
                                      and _labels(a, _classes(a["ni"]), a["pre"].shape[0])),
    "naca_output_update_": lambda a: _linear(a, "logits") and _labels(a, a["weight"].shape[0], a["pre"].shape[0]),
    "conv_plasticity_update_": lambda a: _conv(a) and a["signal"].shape == a["preact"].shape,
    "naca_conv_update_": lambda a: (_conv(a) and a["ni"].dim() == 4 and a["ni"].shape[1:] == a["preact"].shape[1:]
                                    and _labels(a, _classes(a["ni"]), a["input"].shape[0])),
    "lif_forward": lambda a: _seq(a["current"]) and all(a[n] is None or a[n].shape == a["current"].shape[1:]
                                                        for n in ("v_init", "s_init")),
    "naca_snn_update_": _snn,
    "naca_snn_chain_update_": _snn,
    "stdp_update_": _stdp,
    "sbp_update_": lambda a: (a["w_in"].dim() == 2 and a["w_out"].dim() == 2
                              and a["w_out"].shape[1] == a["w_in"].shape[0]
                              and a["dw_in"].shape == a["w_in"].shape and a["dw_out"].shape == a["w_out"].shape
                              and (a["mask"] is None or a["mask"].shape == a["w_in"].shape)),
    "stp_forward": lambda a: _seq(a["spikes"]),
    "homeostatic_relax": lambda a: a["drive"].shape == a["state"].shape,
}


def documented_valid(op, vals):
    """Whether the README's contract accepts this call (a written tensor must be contiguous and share no memory
    with another argument; every tensor on one device; float32/float64 on CPU, all float tensors one dtype,
    labels int64, a mask bool or the weights' dtype; finite scalars in their ranges; known strings; shapes)."""
    schema = schema_args(op)
    a = {arg.name: v for arg, v in zip(schema, vals)}
    tensors = [v for v in vals if isinstance(v, torch.Tensor)]
    if len({t.device for t in tensors}) > 1:
        return False
    for arg in schema:
        v, tname = a[arg.name], str(arg.type)
        if tname == "str" and v not in STRINGS[arg.name]:
            return False
        if tname == "float" and (not math.isfinite(v) or arg.name in POSITIVE and v <= 0
                                 or arg.name in NON_NEGATIVE and v < 0
                                 or arg.name == "lr" and op in LR_FITS_WEIGHT and a["weight"].dtype != torch.float64
                                 and abs(v) > F32_MAX):
            return False
        if tname == "int" and (arg.name == "num_classes" and not 2 <= v <= 2 ** 20 or arg.name == "iters" and v < 0):
            return False
    if op == "stdp_update_" and a["bound"] != "none" and a["w_min"] > a["w_max"]:
        return False
    floats = {v.dtype for n, v in a.items() if isinstance(v, torch.Tensor) and n not in ("labels", "mask")}
    if len(floats) > 1 or floats and not floats <= set(float_dtypes(tensors[0].device)):
        return False
    if "labels" in a and a["labels"].dtype != torch.int64:
        return False
    if a.get("mask") is not None and a["mask"].dtype not in (torch.bool, *floats):
        return False
    for j in written(op):
        w = vals[j]
        if w is None:
            continue
        if not w.is_contiguous() or any(t is not w and shares_memory(w, t) for t in tensors):
            return False
    return SHAPES[op](a)


def moderate(vals):
    """Every tensor finite and every float scalar 0 or of moderate size (so a valid call must give finite results)."""
    for v in vals:
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.device.type != "meta" \
                and not torch.isfinite(v).all():
            return False
        if isinstance(v, float) and v != 0 and not 1e-30 < abs(v) < 1e30:
            return False
    return True


# mutations of a tensor argument
TENSOR_MUTATIONS = ["unsqueeze", "drop_dim", "grow_last", "shrink_first", "empty_first", "dtype", "non_contiguous",
                    "expand", "alias", "nan", "inf", "other_device", "none"]
SCALAR_VALUES = [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e308, -1e308, 1e-320]
INT_VALUES = [-1, 0, 2 ** 40]
INTLIST_VALUES = [[0, 0], [-1, -1], [1], [2 ** 40, 1]]
STR_VALUES = ["", "bogus", "TANH", "tanh\0"]


@st.composite
def spoiled_call(draw, op):
    """(op, sample index, argument index, mutation kind, names, vals): `names` are the argument names a rejection
    must quote (the spoiled argument where the blame cannot go elsewhere)."""
    i = draw(st.integers(0, len(SAMPLES[op]) - 1))
    args, kwargs = SAMPLES[op][i]("cpu")
    vals = full_args(op, args, kwargs)
    schema = schema_args(op)
    k = draw(st.integers(0, len(schema) - 1))
    arg, v = schema[k], vals[k]
    tname = str(arg.type)
    kind, names = None, []
    writes = written(op)
    if isinstance(v, torch.Tensor):
        kind = draw(st.sampled_from(TENSOR_MUTATIONS))
        if kind == "unsqueeze":
            v = v.unsqueeze(draw(st.integers(0, v.dim())))
        elif kind == "drop_dim" and v.dim() > 0:
            v = v.select(0, 0) if v.shape[0] > 0 else v.sum(0)
        elif kind == "grow_last" and v.dim() > 0:
            v = torch.cat([v, v.narrow(-1, 0, 1)], -1) if v.shape[-1] > 0 else v
        elif kind == "shrink_first" and v.dim() > 0 and v.shape[0] > 1:
            v = v[1:]
        elif kind == "empty_first" and v.dim() > 0:
            v = v[:0]
        elif kind == "dtype":
            dt = draw(st.sampled_from([torch.int32, torch.int64, torch.bool, torch.float16, torch.bfloat16,
                                       torch.complex64, torch.float32, torch.float64]))
            v = v.to(torch.int32 if dt == v.dtype else dt)
        elif kind == "non_contiguous":
            v = non_contiguous(v)
            names = [arg.name] if k in writes and not v.is_contiguous() else []
        elif kind == "expand" and v.dim() > 0 and v.shape[0] > 1:
            v = v[:1].expand_as(v)
            names = [arg.name] if k in writes else []
        elif kind == "alias":
            others = [j for j, o in enumerate(vals) if j != k and isinstance(o, torch.Tensor)
                      and o.dtype == v.dtype and o.numel() >= max(v.numel(), 1) and (j in writes or k in writes)]
            if others:
                j = draw(st.sampled_from(others))
                v = vals[j].as_strided(v.shape, torch.empty(v.shape).stride())  # shares memory with argument j
                names = [arg.name, schema[j].name] if v.numel() > 0 else []
        elif kind in ("nan", "inf") and v.is_floating_point() and v.numel() > 0:
            v = v.clone()
            v[torch.unravel_index(torch.tensor(draw(st.integers(0, v.numel() - 1))), v.shape)] = \
                math.nan if kind == "nan" else -math.inf
        elif kind == "other_device":
            v = v.to("cuda" if CUDA else "meta")
        elif kind == "none":
            if tname.startswith("Optional"):
                v = None
        if isinstance(v, torch.Tensor) and v.dtype == torch.int64 and arg.name == "labels" and draw(st.booleans()) \
                and v.numel() > 0:
            kind += "+labels_out_of_range"
            v = v.clone()
            v[torch.unravel_index(torch.tensor(draw(st.integers(0, v.numel() - 1))), v.shape)] = \
                draw(st.sampled_from([-1, 10 ** 6, 2 ** 40]))
    elif tname == "float":
        kind, v, names = "scalar", draw(st.sampled_from(SCALAR_VALUES)), [arg.name]
    elif tname == "int":
        kind, v, names = "int", draw(st.sampled_from(INT_VALUES)), [arg.name]
    elif tname == "List[int]":  # blamed on the conv arithmetic or on preact/input
        kind, v = "intlist", draw(st.sampled_from(INTLIST_VALUES))
    elif tname == "str":
        kind, v, names = "str", draw(st.sampled_from(STR_VALUES)), [arg.name]
    elif tname == "bool":
        kind, v = "bool", not v
        names = ["labels"] if arg.name == "check_labels" else []  # True on out-of-range labels
    vals[k] = v
    return op, i, k, kind, names, vals


def _outputs(out):
    return [o for o in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(o, torch.Tensor)]


def _same_as_original(op, i, vals, out, where):
    """The accepted call gave what the unspoiled sample gives: to a few ulps for floating
    tensors (a GEMM over a copied, re-laid-out input may round differently: plasticity_update_
    with a strided `pre` was 1 ulp off on an AMD EPYC, bit-identical on an Intel Xeon),
    exactly for the rest. Reading a wrong element would be off by O(1)."""
    args, kwargs = SAMPLES[op][i]("cpu")
    ref = full_args(op, args, kwargs)
    out_ref = call(op, ref)
    pairs = [(vals[j], ref[j]) for j in written(op) if isinstance(ref[j], torch.Tensor)]
    for a, b in pairs + list(zip(_outputs(out), _outputs(out_ref))):
        tol = dict(rtol=1e-5, atol=1e-6) if b.is_floating_point() else dict(rtol=0, atol=0)
        torch.testing.assert_close(a, b, equal_nan=True, msg=where, **tol)


def check_spoiled(op, i, k, kind, names, vals):
    writes = written(op)
    schema = schema_args(op)
    valid = documented_valid(op, vals)
    clean = moderate(vals)
    before = {j: vals[j].clone() for j in writes if isinstance(vals[j], torch.Tensor)}
    where = f"{op} sample {i}, argument {schema[k].name}: {kind} ({'valid' if valid else 'invalid'})"
    try:
        out = call(op, vals)
    except RuntimeError as e:
        msg = str(e)
        assert not valid, f"{where}: a valid call was rejected: {msg[:300]}"
        assert f"naca::{op}:" in msg, f"{where}: unclear error: {msg[:300]}"
        for name in names:
            assert f"'{name}'" in msg, f"{where}: the error does not name '{name}': {msg[:300]}"
        for j, b in before.items():
            assert same_bits(vals[j], b), f"{where}: rejected, but argument {j} changed"
        return
    assert valid, f"{where}: accepted"
    if clean:
        for t in _outputs(out) + [vals[j] for j in writes if isinstance(vals[j], torch.Tensor)]:
            assert t.device.type == "meta" or not t.is_floating_point() or torch.isfinite(t).all(), \
                f"{where}: finite input, non-finite result"
    if kind == "non_contiguous" or kind == "bool" and schema[k].name == "check_labels":
        _same_as_original(op, i, vals, out, where)


@pytest.mark.parametrize("op", OPS)
@SETTINGS
@given(data=st.data())
def test_spoiled_argument(op, data):
    check_spoiled(*data.draw(spoiled_call(op)))


# A read-only input that is not non-overlapping-and-dense (an expanded input, a strided slice such
# as x[..., ::2]) is valid: at::get_overlap_status(out, in) answers TooHard for it, so an alias check
# built on that status alone would refuse it with a false "argument 'weight' shares memory with
# argument '<input>'". check_no_alias treats different storages as never aliasing and, within one
# storage, lets the bytes the tensors reach decide.
@pytest.mark.parametrize("op", [o for o in OPS if written(o)])
def test_non_dense_read_only_input_gives_the_same_result(op):
    bad = []
    for i, make in enumerate(SAMPLES[op]):
        args, kwargs = make("cpu")
        base = full_args(op, args, kwargs)
        for k, v in enumerate(base):
            if k in written(op) or not isinstance(v, torch.Tensor) or v.numel() == 0:
                continue
            args, kwargs = make("cpu")
            vals = full_args(op, args, kwargs)
            vals[k] = non_contiguous(vals[k])  # same values, stride 2 in the last dimension: not dense
            try:
                out = call(op, vals)
            except RuntimeError as e:
                bad.append(f"sample {i}, {schema_args(op)[k].name}: {str(e).splitlines()[0][:160]}")
                continue
            _same_as_original(op, i, vals, out, f"{op} sample {i}, {schema_args(op)[k].name}")
    assert not bad, "non-dense read-only inputs rejected:\n" + "\n".join(bad)


# The spiking updates reshape pre_spikes and voltages internally (as 'pre' and 'preact'); their
# alias errors must name the schema's arguments, not those internal names.
@pytest.mark.parametrize("op", ["naca_snn_update_", "naca_snn_chain_update_"])
@pytest.mark.parametrize("arg", ["pre_spikes", "voltages"])
@pytest.mark.parametrize("out", ["weight", "bias"])
def test_snn_alias_error_names_the_argument(op, arg, out):
    args, kwargs = SAMPLES[op][0]("cpu")
    vals = full_args(op, args, kwargs)
    names = [a.name for a in schema_args(op)]
    j, k = names.index(out), names.index(arg)
    vals[j] = vals[k].as_strided(vals[j].shape, torch.empty(vals[j].shape).stride())
    with pytest.raises(RuntimeError, match=f"naca::{op}: argument '{out}' shares memory with argument '{arg}'"):
        call(op, vals)


@pytest.mark.parametrize("op", OPS)
def test_every_op_survives_all_meta(op):
    """Every tensor on the meta device: shape inference only (the fake kernel), no crash."""
    for make in SAMPLES[op]:
        args, kwargs = make("cpu")
        vals = [a.to("meta") if isinstance(a, torch.Tensor) else a for a in full_args(op, args, kwargs)]
        if op == "expectation_matrix":
            continue
        call(op, vals)


EMPTY_BATCH = {  # op -> positions of the arguments whose dim `d` is the batch
    "plasticity_update_": ({2: 0, 3: 0, 4: 0}),
    "naca_hidden_update_": ({2: 0, 3: 0, 4: 0}),
    "conv_plasticity_update_": ({2: 0, 3: 0, 4: 0}),
    "naca_conv_update_": ({2: 0, 3: 0, 4: 0}),
    "naca_snn_update_": ({2: 1, 3: 1, 4: 1, 5: 0}),
    "naca_snn_chain_update_": ({2: 1, 3: 1, 4: 1, 5: 0}),
    "stdp_update_": ({1: 1, 2: 1}),
}


@pytest.mark.parametrize("op", sorted(EMPTY_BATCH))
def test_empty_batch_is_a_no_op(op):
    """An empty batch is valid and changes nothing (documented: nothing to learn)."""
    for make in SAMPLES[op]:
        args, kwargs = make("cpu")
        vals = full_args(op, args, kwargs)
        for j, d in EMPTY_BATCH[op].items():
            vals[j] = vals[j].narrow(d, 0, 0)
        if op == "stdp_update_" and isinstance(vals[10], torch.Tensor) and vals[10].dim() == 2:
            vals[10] = vals[10][:0]
        before = {j: vals[j].clone() for j in written(op) if isinstance(vals[j], torch.Tensor)}
        call(op, vals)
        for j, b in before.items():
            assert same_bits(vals[j], b), (op, j)
