"""The C++ API against the Python package: the same model, from the same weights, trained on the
same batches by naca::learn::NACA or naca::learn::SBP (tests/cpp/equiv_main.cpp, the ``naca_equiv``
driver of the CMake test build) and by ``torch_plugin.learn.NACA`` / ``learn.SBP`` ends with the same
weights.

Bitwise on CPU for in-place SGD and torch.optim.SGD (the same op calls on the same tensors): the ANN
models (and a hidden_only stage), the spiking MLP under each NACA rule variant (every step, the last
step, the membrane chain; streamed or not; checked and unchecked labels) and SBP on the SNN and on
the ANN. With Adam
within 1e-6 relative (torch's C++ Adam updates its first moment with mul_ + add_, Python's with
lerp_, which round differently). The builders are compared too: from the same ``torch.manual_seed``
the C++ models::mlp / conv_net / spiking_mlp / sbp_snn / sbp_ann build the same weights and, from
the same seeds, the same NI buffers as Python's, bit for bit (and a seeded encoder the same spikes).

A case is a dict (``_case``): ``kind`` names the builder on both sides (``BUILDERS`` here,
``build()`` in equiv_main.cpp), so each further model kind is one entry in each.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.jit._pickle
from torch import nn

from torch_plugin import models
from torch_plugin.learn import NACA, SBP
from torch_plugin.nn import NACALinear, NACAOutput

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("TORCH_PLUGIN_BUILD_DIR", ROOT / "build-cmake"))
DRIVER = BUILD / "tests" / "cpp" / "naca_equiv"


def _driver() -> Path:
    """The naca_equiv executable: built by the test build (ctest's, .ci/test.sh), else built here
    into that CMake build when it exists; skipped when neither CMake nor the build is there."""
    if DRIVER.exists():
        return DRIVER
    if shutil.which("cmake") is None or not (BUILD / "CMakeCache.txt").exists():
        pytest.skip(f"needs the C++ test driver {DRIVER} (a CMake build with -DNACA_BUILD_TESTS=ON) or CMake and "
                    f"the set-up's build {BUILD} to build it")
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(BUILD), "-DNACA_BUILD_TESTS=ON"], check=True,
                   capture_output=True, timeout=600)
    subprocess.run(["cmake", "--build", str(BUILD), "--target", "naca_equiv"], check=True, capture_output=True,
                   timeout=1200)
    return DRIVER


def _sequential(num_classes: int, layers: list) -> nn.Sequential:
    out = []
    for spec in layers:
        kw = {k: v for k, v in spec.items() if k not in ("type", "in", "out")}
        if spec["type"] == "flatten":
            out.append(nn.Flatten())
        elif spec["type"] == "linear":
            out.append(NACALinear(spec["in"], spec["out"], num_classes, **kw))
        elif spec["type"] == "output":
            out.append(NACAOutput(spec["in"], num_classes, **kw))
    return nn.Sequential(*out)


BUILDERS = {
    "mlp": lambda a: models.mlp(**a),
    "conv_net": lambda a: models.conv_net(**a),
    "sequential": lambda a: _sequential(**a),
    "spiking_mlp": lambda a: models.spiking_mlp(**a),
    "sbp_snn": lambda a: models.sbp_snn(**a),
    "sbp_ann": lambda a: models.sbp_ann(**a),
}

SBP_ARGS = ("lr", "fraction", "percentage", "seed", "beta", "alpha", "relax_steps", "eps", "local_rule",
            "skip_nonfinite")


def _optimizer(model: nn.Module, learner: dict):
    name = learner.get("optimizer", "none")
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=learner["opt_lr"])
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=learner["opt_lr"], momentum=learner.get("momentum", 0.0))
    return None


def _case(kind: str, args: dict, learner: dict, x: list, y: list, init_seed: int = 0) -> dict:
    return {"kind": kind, "args": args, "learner": learner, "x": x, "y": y, "init_seed": init_seed}


def _python(case: dict):
    """Build (from init_seed) and train with torch_plugin. Returns the model as built, the final
    model, the logits per step and the learner."""
    torch.manual_seed(case["init_seed"])
    model = BUILDERS[case["kind"]](case["args"])
    built = {k: v.clone() for k, v in model.state_dict().items()}
    lc = case["learner"]
    if lc.get("kind", "naca") == "sbp":
        learner = SBP(model, **{k: v for k, v in lc.items() if k in SBP_ARGS})
    else:
        learner = NACA(model, lr=lc.get("lr", 1e-3), lam=lc.get("lam", 0.5), theta=lc.get("theta", 1.2),
                       optimizer=_optimizer(model, lc), streaming=lc.get("streaming", True),
                       skip_nonfinite=lc.get("skip_nonfinite", False), check_labels=lc.get("check_labels", True),
                       all_steps=lc.get("all_steps", True), membrane_chain=lc.get("membrane_chain", False),
                       hidden_only=lc.get("hidden_only", False))
    logits = [learner.step(x, y).clone() for x, y in zip(case["x"], case["y"])]
    return built, model.state_dict(), logits, learner


def _cpp(case: dict, built: dict, tmp_path: Path) -> dict:
    """The same case through naca_equiv, from Python's initial state `built`."""
    src, dst = tmp_path / "case.pt", tmp_path / "result.pt"
    torch.save({**case, "state": built}, src)
    # The same thread count as this process: a parallel reduction's order depends on it.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    run = subprocess.run([str(_driver()), str(src), str(dst)], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    # (torch::pickle_save tags typed containers with torch.jit._pickle functions)
    with torch.serialization.safe_globals([torch.jit._pickle.restore_type_tag, torch.jit._pickle.build_tensorlist]):
        return torch.load(dst)


def _assert_same(a: dict, b: dict, exact: bool, what: str):
    assert sorted(a) == sorted(b), what
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), f"{what}: {k} differs by {(a[k] - b[k]).abs().max().item()}"
        else:
            torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7, msg=f"{what}: {k}")


def _batches(shape, num_classes: int, sizes, seed: int, nonfinite_at: int = -1):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.rand((b, *shape), generator=g) for b in sizes]
    ys = [torch.randint(0, num_classes, (b,), generator=g) for b in sizes]
    if nonfinite_at >= 0:
        xs[nonfinite_at][0, 0] = float("nan")
    return xs, ys


def _check(case: dict, tmp_path: Path, exact: bool = True):
    built, final, logits, learner = _python(case)
    out = _cpp(case, built, tmp_path)
    _assert_same(built, out["built"], True, "the C++ builder's initial state")
    _assert_same(dict(final), out["state"], exact, "the trained state")
    assert len(out["logits"]) == len(logits)
    for i, (a, b) in enumerate(zip(logits, out["logits"])):
        # (a skipped step's logits hold its NaN on both sides)
        tol = {"rtol": 0.0, "atol": 0.0} if exact else {"rtol": 1e-6, "atol": 1e-6}
        torch.testing.assert_close(b, a, equal_nan=True, msg=f"logits of step {i}", **tol)
    assert (out["steps"], out["skipped_steps"]) == (learner.steps, learner.skipped_steps)
    # The case trained: the weights moved.
    assert any(not torch.equal(built[k], final[k]) for k in built if k.endswith("weight"))
    return out


MIXED = {"num_classes": 5, "layers": [
    {"type": "flatten"},
    {"type": "linear", "in": 24, "out": 16, "activation": "tanh", "seed": 4},
    {"type": "linear", "in": 16, "out": 12, "activation": "sigmoid", "bias": False, "ni_init": "beta", "seed": 5},
    {"type": "linear", "in": 12, "out": 10, "activation": "tanh", "ni_init": "normal", "seed": 6},
    {"type": "output", "in": 10, "sigmoid_grad": False},
]}


@pytest.mark.parametrize("streaming", [True, False])
def test_mixed_activations_in_place_sgd(tmp_path, streaming):
    # batch sizes change mid-run: a second input signature, validated again
    xs, ys = _batches((4, 6), 5, [8, 8, 8, 5, 8, 5], seed=1)
    _check(_case("sequential", MIXED, {"lr": 0.05, "lam": 0.4, "theta": 1.1, "streaming": streaming}, xs, ys,
                 init_seed=11), tmp_path)


def test_mlp_sgd_momentum_bitwise(tmp_path):
    xs, ys = _batches((20,), 6, [16] * 5, seed=2)
    args = {"in_features": 20, "hidden": [32, 16], "num_classes": 6, "seed": 3, "output_bias": False}
    _check(_case("mlp", args, {"optimizer": "sgd", "opt_lr": 0.02, "momentum": 0.9}, xs, ys, init_seed=5), tmp_path)


def test_mlp_adam_within_1e6(tmp_path):
    xs, ys = _batches((20,), 6, [16] * 6, seed=3)
    args = {"in_features": 20, "hidden": [32, 16], "num_classes": 6, "seed": 7, "activation": "sigmoid"}
    _check(_case("mlp", args, {"optimizer": "adam", "opt_lr": 1e-2}, xs, ys, init_seed=6), tmp_path, exact=False)


def test_large_hidden_layer_updated_in_batch_slices(tmp_path):
    # a (32, 8192) float32 output is 1 MiB: both learners apply its update in 8 batch slices
    xs, ys = _batches((20,), 4, [32, 32], seed=6)
    args = {"in_features": 20, "hidden": [8192], "num_classes": 4, "seed": 2}
    _check(_case("mlp", args, {"lr": 0.01}, xs, ys, init_seed=10), tmp_path)


def test_conv_net_in_place_sgd(tmp_path):
    xs, ys = _batches((2, 8, 8), 4, [6, 6, 6, 3], seed=4)
    args = {"in_shape": (2, 8, 8), "num_classes": 4, "channels": [3, 4], "hidden": 12, "seed": 2}
    _check(_case("conv_net", args, {"lr": 0.05}, xs, ys, init_seed=8), tmp_path)


def test_skip_nonfinite_skips_the_same_step(tmp_path):
    xs, ys = _batches((20,), 4, [8] * 4, seed=5, nonfinite_at=2)
    args = {"in_features": 20, "hidden": [16], "num_classes": 4, "seed": 1}
    out = _check(_case("mlp", args, {"lr": 0.1, "skip_nonfinite": True}, xs, ys, init_seed=9), tmp_path)
    assert out["skipped_steps"] == 1


# ---- spiking models and SBP ---------------------------------------------------------------------

SPIKING = {"in_features": 12, "hidden": [10, 8], "num_classes": 4, "T": 6, "seed": 3, "init_gain": 2.5}

SPIKING_RULES = {
    "all_steps": ({}, {}),
    "last_step": ({}, {"all_steps": False}),
    # the authors' class-incremental SNN: sigmoid current, lens 0.2, an output bias only
    "membrane_chain": ({"current": "sigmoid", "lens": 0.2, "bias": False, "output_bias": True, "init_gain": 1.0},
                       {"membrane_chain": True}),
    "stp_unstreamed": ({"stp": True}, {"streaming": False}),
}


@pytest.mark.parametrize("rule", sorted(SPIKING_RULES))
def test_spiking_mlp_rules_in_place_sgd_bitwise(tmp_path, rule):
    model_args, learner = SPIKING_RULES[rule]
    xs, ys = _batches((3, 4), 4, [8, 8, 8, 5, 8], seed=7)
    _check(_case("spiking_mlp", {**SPIKING, **model_args}, {"lr": 0.05, "lam": 0.45, **learner}, xs, ys,
                 init_seed=12), tmp_path)


def test_spiking_mlp_unchecked_labels_bitwise(tmp_path):
    # check_labels=False: an out-of-range label gets a zero signal in every layer (the valid mask)
    xs, ys = _batches((12,), 4, [6, 6, 6], seed=8)
    ys[1][2], ys[2][0] = 4, -1
    _check(_case("spiking_mlp", SPIKING, {"lr": 0.05, "check_labels": False}, xs, ys, init_seed=13), tmp_path)


def test_spiking_mlp_sgd_momentum_bitwise(tmp_path):
    xs, ys = _batches((12,), 4, [8] * 4, seed=9)
    learner = {"optimizer": "sgd", "opt_lr": 0.05, "momentum": 0.9, "all_steps": False}
    _check(_case("spiking_mlp", SPIKING, learner, xs, ys, init_seed=14), tmp_path)


def test_spiking_mlp_adam_within_1e6(tmp_path):
    xs, ys = _batches((12,), 4, [8] * 4, seed=10)
    learner = {"optimizer": "adam", "opt_lr": 1e-2, "membrane_chain": True}
    _check(_case("spiking_mlp", {**SPIKING, "current": "sigmoid", "lens": 0.2}, learner, xs, ys, init_seed=15),
           tmp_path, exact=False)


SBP_CASES = {
    "snn_contrastive": ("sbp_snn", {"percentage": 0.5, "seed": 2}),
    "snn_relaxed_symmetric": ("sbp_snn", {"relax_steps": 4, "eps": 0.4, "local_rule": "symmetric", "lr": 0.5}),
    "ann_contrastive": ("sbp_ann", {"percentage": 0.5, "seed": 1, "alpha": (0.2, 0.1)}),
    "ann_relaxed_differential": ("sbp_ann", {"relax_steps": 3, "local_rule": "differential", "fraction": 0.3}),
}


@pytest.mark.parametrize("name", sorted(SBP_CASES))
def test_sbp_bitwise(tmp_path, name):
    kind, learner = SBP_CASES[name]
    args = {"in_features": 12, "hidden": 9, "num_classes": 4, "seed": 5}
    if kind == "sbp_snn":
        args.update(T=6, init_gain=2.5)
    xs, ys = _batches((12,), 4, [8, 8, 5, 8], seed=11)
    _check(_case(kind, args, {"kind": "sbp", **learner}, xs, ys, init_seed=16), tmp_path)


def test_hidden_only_stage_bitwise(tmp_path):
    # a pipeline stage before the last: hidden layers, no output layer, trained on the labels
    stage = {"num_classes": 5, "layers": [
        {"type": "flatten"},
        {"type": "linear", "in": 24, "out": 16, "activation": "tanh", "seed": 4},
        {"type": "linear", "in": 16, "out": 12, "activation": "sigmoid", "seed": 5},
    ]}
    xs, ys = _batches((4, 6), 5, [8, 8, 5], seed=12)
    _check(_case("sequential", stage, {"lr": 0.05, "hidden_only": True}, xs, ys, init_seed=17), tmp_path)
