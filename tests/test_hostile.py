"""Hostile input, property-based (hypothesis): every naca op, started from a valid
sample of tests/op_samples.py, gets one argument spoiled (wrong shape, dtype,
device, non-contiguous, expanded, aliased with another argument, NaN/Inf,
empty, out-of-range labels, absurd scalars and strings). The property:

* the process never crashes, and the op either raises a RuntimeError whose
  message names the op (``naca::<op>: ...``), or a TypeError from the
  dispatcher's schema parsing, or succeeds;
* after every rejected call, every argument the op may write is bit-identical
  to a clone taken before the call;
* the spoilings that can never be valid are rejected (aliasing a written
  argument, expanding one, NaN hyper-parameters, unknown strings, labels out of
  range, non-float data where floats are expected, mixed devices);
* a non-contiguous copy of a read-only argument gives the same result as the
  original (the ops make their inputs contiguous);
* NaN/Inf inside tensors is not checked by the ops (no device sync): it
  propagates into the result; the learners' ``skip_nonfinite`` option skips
  such updates (tested at the end).

The argument kinds come from each op's schema, so a new op is covered as soon as
it has samples. derandomize=True keeps CI stable.
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


# mutation -> must it be rejected?
TENSOR_MUTATIONS = ["unsqueeze", "drop_dim", "grow_last", "shrink_first", "empty_first", "dtype", "non_contiguous",
                    "expand", "alias", "nan", "inf", "other_device", "none"]
SCALAR_VALUES = [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e308, -1e308, 1e-320]
INT_VALUES = [-1, 0, 2 ** 40]
INTLIST_VALUES = [[0, 0], [-1, -1], [1], [2 ** 40, 1]]
STR_VALUES = ["", "bogus", "TANH", "tanh\0"]
NEVER_NAN = ("lr", "lam", "theta", "threshold", "lens", "decay", "fraction", "alpha_in", "alpha_out", "tau_pre",
             "tau_post", "a_plus", "a_minus", "w_min", "w_max", "dt")


@st.composite
def spoiled_call(draw, op):
    i = draw(st.integers(0, len(SAMPLES[op]) - 1))
    args, kwargs = SAMPLES[op][i]("cpu")
    vals = full_args(op, args, kwargs)
    schema = schema_args(op)
    k = draw(st.integers(0, len(schema) - 1))
    arg, v = schema[k], vals[k]
    tname = str(arg.type)
    must_reject, kind = False, None
    if isinstance(v, torch.Tensor):
        kind = draw(st.sampled_from(TENSOR_MUTATIONS))
        writes = written(op)
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
            if dt == v.dtype:
                dt = torch.int32
            # non-float data in a float argument (masks may be bool, labels int64 only) is never valid
            must_reject = v.dtype in FLOAT_DTYPES and arg.name != "mask" and not dt.is_floating_point \
                or v.dtype == torch.int64 and dt != torch.int64
            v = v.to(dt)
        elif kind == "non_contiguous":
            v = non_contiguous(v)
            must_reject = k in writes and not v.is_contiguous()
        elif kind == "expand" and v.dim() > 0 and v.shape[0] > 1:
            v = v[:1].expand_as(v)
            must_reject = k in writes
        elif kind == "alias":
            others = [j for j, o in enumerate(vals) if j != k and isinstance(o, torch.Tensor)
                      and o.dtype == v.dtype and o.numel() >= max(v.numel(), 1) and (j in writes or k in writes)]
            if others:
                j = draw(st.sampled_from(others))
                v = vals[j].as_strided(v.shape, torch.empty(v.shape).stride())  # shares memory with argument j
                must_reject = v.numel() > 0
        elif kind in ("nan", "inf") and v.is_floating_point() and v.numel() > 0:
            v = v.clone()
            v[torch.unravel_index(torch.tensor(draw(st.integers(0, v.numel() - 1))), v.shape)] = \
                math.nan if kind == "nan" else -math.inf
        elif kind == "other_device":
            v = v.to("cuda" if CUDA else "meta")
            must_reject = any(isinstance(o, torch.Tensor) for j, o in enumerate(vals) if j != k)
        elif kind == "none":
            if tname.startswith("Optional"):
                v = None
        if isinstance(v, torch.Tensor) and v.dtype == torch.int64 and arg.name == "labels" and draw(st.booleans()) \
                and v.numel() > 0:
            kind = "labels_out_of_range"
            v = v.clone()
            v[torch.unravel_index(torch.tensor(draw(st.integers(0, v.numel() - 1))), v.shape)] = \
                draw(st.sampled_from([-1, 10 ** 6, 2 ** 40]))
            names = [a.name for a in schema_args(op)]
            unchecked = "check_labels" in names and vals[names.index("check_labels")] is False
            must_reject = v.device.type != "meta" and not unchecked  # unchecked: those samples do not learn
    elif tname == "float":
        kind, v = "scalar", draw(st.sampled_from(SCALAR_VALUES))
        must_reject = math.isnan(v) and arg.name in NEVER_NAN
    elif tname == "int":
        kind, v = "int", draw(st.sampled_from(INT_VALUES))
        must_reject = arg.name == "groups" and v < 1 or arg.name == "num_classes" and v < 2
    elif tname == "List[int]":
        kind, v = "intlist", draw(st.sampled_from(INTLIST_VALUES))
        must_reject = v in ([-1, -1], [1])
    elif tname == "str":
        kind, v = "str", draw(st.sampled_from(STR_VALUES))
        must_reject = v in ("", "bogus", "tanh\0")
    elif tname == "bool":
        kind, v = "bool", not v
    vals[k] = v
    return op, i, k, kind, must_reject, vals


@pytest.mark.parametrize("op", OPS)
@SETTINGS
@given(data=st.data())
def test_spoiled_argument(op, data):
    op, i, k, kind, must_reject, vals = data.draw(spoiled_call(op))
    writes = written(op)
    before = {j: vals[j].clone() for j in writes if isinstance(vals[j], torch.Tensor)}
    where = f"{op} sample {i}, argument {schema_args(op)[k].name}: {kind}"
    try:
        out = call(op, vals)
    except RuntimeError as e:
        msg = str(e)
        assert f"naca::{op}" in msg or "naca." + op in msg, f"{where}: unclear error: {msg[:300]}"
        for j, b in before.items():
            assert same_bits(vals[j], b), f"{where}: rejected, but argument {j} changed"
        return
    except TypeError as e:  # the dispatcher's schema parsing (e.g. a float where an int is required)
        for j, b in before.items():
            assert same_bits(vals[j], b), f"{where}: rejected, but argument {j} changed"
        assert "naca" in str(e) or "argument" in str(e), str(e)[:300]
        return
    assert not must_reject, f"{where}: accepted"
    if kind == "non_contiguous":  # same result as the original call
        args, kwargs = SAMPLES[op][i]("cpu")
        ref = full_args(op, args, kwargs)
        out_ref = call(op, ref)
        for j in writes:
            if isinstance(ref[j], torch.Tensor):
                torch.testing.assert_close(vals[j], ref[j], rtol=0, atol=0, equal_nan=True, msg=where)
        for a, b in zip(out if isinstance(out, tuple) else [out], out_ref if isinstance(out_ref, tuple) else [out_ref]):
            if isinstance(a, torch.Tensor):
                torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)


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


# --- the learners' NaN/Inf policy ------------------------------------------

def _nan_batch(shape=(10,)):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, *shape, generator=g, dtype=torch.float64)
    bad = x.clone()
    bad[2, 0] = math.nan
    return x, bad, torch.randint(0, 4, (6,), generator=g)


@pytest.mark.parametrize("optimizer", [False, True])
def test_skip_nonfinite_skips_and_counts(optimizer):
    from torch_plugin import learn, models
    model = models.mlp(10, [12], 4, seed=0).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2) if optimizer else None
    learner = learn.NACA(model, lr=0.05, optimizer=opt, skip_nonfinite=True)
    x, bad, y = _nan_batch()
    learner.step(x, y)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = None if opt is None else {k: v["exp_avg"].clone() for k, v in opt.state_dict()["state"].items()}
    learner.step(bad, y)
    assert learner.skipped_steps == 1 and learner.steps == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    if opt is not None:
        assert all(torch.equal(opt_before[k], v["exp_avg"]) for k, v in opt.state_dict()["state"].items())
    learner.step(x, y)  # a finite batch trains again
    assert learner.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert learner.state_dict()["skipped_steps"] == 1


def test_skip_nonfinite_matches_default_on_finite_batches():
    from torch_plugin import learn, models
    a, b = models.mlp(10, [12], 4, seed=0).double(), models.mlp(10, [12], 4, seed=0).double()
    b.load_state_dict(a.state_dict())
    la, lb = learn.NACA(a, lr=0.05), learn.NACA(b, lr=0.05, skip_nonfinite=True)
    x, _, y = _nan_batch()
    for _ in range(3):
        la.step(x, y), lb.step(x, y)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-14)
    assert lb.skipped_steps == 0


def test_default_policy_propagates_nonfinite():
    """Documented default (skip_nonfinite=False): a NaN input makes NaN weights, as backprop + SGD would."""
    from torch_plugin import learn, models
    model = models.mlp(10, [12], 4, seed=0).double()
    learner = learn.NACA(model, lr=0.05)
    _, bad, y = _nan_batch()
    learner.step(bad, y)
    assert not all(torch.isfinite(p).all() for p in model.parameters())
