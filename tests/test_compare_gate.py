"""The comparison command's input gate (torch_plugin.learn.InputGate on the study's runs) and its spiking model."""
import json
import math
import os

import pytest
import torch

from torch_plugin import compare, data


def _finite_in(v, lo, hi):
    return v is not None and math.isfinite(v) and lo <= v <= hi


@pytest.mark.parametrize("method", ["bp", "naca"])
def test_gate_delta_in_std_units_gates_bp_and_naca(method):
    """--gate-delta is in standard deviations of the training inputs (the authors' inputs are
    standardized), and the gate closes the same hidden units for BP and NACA: a closed unit's
    weights and bias do not move, open units learn."""
    args = compare.parse_args(["--dataset", "digits", "--hidden", "32", "--methods", method, "--gate",
                               "--gate-delta", "0.5", "--scenario", "class-incremental", "--quiet"])
    ds = data.load_dataset("digits")
    raw = compare.gate_delta_raw(args, ds)
    assert raw == pytest.approx(0.5 * ds.x_train.float().std().item(), rel=1e-6)
    torch.manual_seed(0)
    model, _ = compare.build_model(args, method, ds, 0)
    assert model[-1].sigmoid_grad  # auto: sigmoid' on, as the authors' codes (class-CL included)
    step, _ = compare.make_step(args, method, model, compare.resolve_lr(args, method, ds), raw)
    hidden = model[1]
    w0, b0 = hidden.weight.detach().clone(), hidden.bias.detach().clone()
    xb, yb = ds.x_train[:64], ds.y_train[:64]
    # the mask, computed here: nearest resampling of the 64 input means onto 32 units is m[2 j]
    m = xb.flatten(1).float().mean(0)[torch.arange(32) * 2]
    mask = torch.sigmoid(1000.0 * (m - (m.max() - raw)))
    closed, opened = mask < 1e-20, mask > 0.99
    assert closed.any() and opened.any()
    out = step(xb, yb)
    assert torch.isfinite(out).all()
    assert torch.equal(hidden.weight[closed], w0[closed]) and torch.equal(hidden.bias[closed], b0[closed])
    moved = (hidden.weight[opened] != w0[opened]).any(1)
    assert moved.float().mean() > 0.5
    # without the gate every unit may move
    args2 = compare.parse_args(["--dataset", "digits", "--hidden", "32", "--methods", method,
                                "--scenario", "class-incremental", "--quiet"])
    torch.manual_seed(0)
    model2, _ = compare.build_model(args2, method, ds, 0)
    step2, _ = compare.make_step(args2, method, model2, compare.resolve_lr(args2, method, ds))
    w2 = model2[1].weight.detach().clone()
    step2(xb, yb)
    assert (model2[1].weight[closed] != w2[closed]).any()


def test_gate_delta_rejects_negative():
    with pytest.raises(SystemExit):
        compare.parse_args(["--dataset", "digits", "--gate", "--gate-delta", "-0.1"])


@pytest.mark.parametrize("method", ["naca", "bp-surrogate"])
def test_gate_on_spiking_hidden_layer(method):
    """--model snn --gate: the mask comes from the hidden layer's input rates (mean of the
    input spikes over time and batch), multiplies the hidden spikes of every step, and closed
    units learn nothing, for NACA and for surrogate-gradient BPTT alike."""
    from torch_plugin.nn import NACASpikingLinear

    args = compare.parse_args(["--dataset", "digits", "--model", "snn", "--hidden", "32", "--T", "4",
                               "--methods", method, "--gate", "--gate-delta", "0.5",
                               "--scenario", "class-incremental", "--quiet"])
    ds = data.load_dataset("digits")
    raw = compare.gate_delta_raw(args, ds)
    torch.manual_seed(0)
    model, _ = compare.build_model(args, method, ds, 0)
    step, _ = compare.make_step(args, method, model, compare.resolve_lr(args, method, ds), raw)
    hidden = next(m for m in model.modules() if isinstance(m, NACASpikingLinear) and not m.is_output)
    seen = {}
    hidden.register_forward_hook(lambda mod, inp, out: seen.update(x=inp[0].detach(), out=out.detach()))
    w0 = hidden.weight.detach().clone()
    xb, yb = ds.x_train[:64], ds.y_train[:64]
    step(xb, yb)
    x = seen["x"]                                      # (T, B, 64) input spikes of this step
    m = x.mean((0, 1))[torch.arange(32) * 2]           # nearest resampling of 64 inputs onto 32 units
    mask = torch.sigmoid(1000.0 * (m - (m.max() - raw)))
    closed, opened = mask < 1e-20, mask > 0.99
    assert closed.any() and opened.any()
    assert seen["out"][..., closed].abs().max() < 1e-20  # hooks run in order: the gate's came first
    assert seen["out"][..., opened].any()
    assert torch.equal(hidden.weight[closed], w0[closed])
    assert (hidden.weight[opened] != w0[opened]).any()


def test_gate_rejects_conv_and_stp():
    with pytest.raises(SystemExit):
        compare.parse_args(["--dataset", "digits", "--model", "conv", "--gate"])
    with pytest.raises(SystemExit):
        compare.parse_args(["--dataset", "digits", "--model", "snn", "--stp", "--gate"])


def test_compare_snn_authors_class_incremental_variant(tmp_path, monkeypatch):
    """--snn-current sigmoid --snn-lens 0.2 --snn-rule chain builds the authors' class-incremental
    SNN (every layer integrates sigmoid(W x_t + b)) and trains NACA with the membrane-chain op,
    on both layers of every step; the flags are recorded in results.json."""
    from torch_plugin import ops
    from torch_plugin.nn import NACASpikingLinear

    calls = []
    real = ops.naca_snn_chain_update_
    monkeypatch.setattr(ops, "naca_snn_chain_update_", lambda *a, **k: (calls.append(a[9:11]), real(*a, **k)))
    flags = ["--dataset", "digits", "--model", "snn", "--hidden", "16", "--T", "4", "--epochs", "1",
             "--train-subset", "200", "--test-subset", "100", "--methods", "naca,bp-surrogate",
             "--snn-current", "sigmoid", "--snn-lens", "0.2", "--snn-rule", "chain", "--gate",
             "--scenario", "class-incremental", "--quiet", "--no-plots", "--out", str(tmp_path)]
    args = compare.parse_args(flags)
    model, desc = compare.build_model(args, "naca", data.load_dataset("digits"), 0)
    layers = [m for m in model.modules() if isinstance(m, NACASpikingLinear)]
    assert len(layers) == 2 and all(m.current == "sigmoid" and m.lens == 0.2 for m in layers)
    assert "sigmoid current" in desc
    compare.main(flags)
    assert calls and set(calls) == {("hard", "sigmoid")} and len(calls) % 2 == 0
    res = json.loads((tmp_path / "results.json").read_text())
    cfg = res["config"]
    assert (cfg["snn_current"], cfg["snn_lens"], cfg["snn_rule"]) == ("sigmoid", 0.2, "chain")
    assert all(_finite_in(r["class_incremental"]["mean_acc_after_last"], 0, 1) for r in res["runs"])


def test_compare_snn_flags_need_snn_model():
    for flag in (["--snn-rule", "chain"], ["--snn-current", "sigmoid"], ["--snn-lens", "0.2"]):
        with pytest.raises(SystemExit):
            compare.parse_args(["--dataset", "digits", "--model", "mlp"] + flag)


def test_compare_sbp_flags_need_an_sbp_method():
    for flag in (["--sbp-rule", "symmetric"], ["--sbp-relax-steps", "5"], ["--sbp-fraction", "1"],
                 ["--sbp-percentage", "0.5"]):
        with pytest.raises(SystemExit):
            compare.parse_args(["--dataset", "digits", "--methods", "bp,naca"] + flag)
        compare.parse_args(["--dataset", "digits", "--methods", "bp,sbp"] + flag)
    with pytest.raises(SystemExit):  # sbp-local ignores lambda_f: say so rather than drop it
        compare.parse_args(["--dataset", "digits", "--methods", "sbp-local", "--sbp-fraction", "1"])
    compare.parse_args(["--dataset", "digits", "--methods", "sbp-local", "--sbp-rule", "symmetric"])


@pytest.mark.parametrize("rule", ["all-steps", "last-step", "chain"])
def test_measured_macs_of_spiking_naca_rules(rule):
    """The FLOP counter knows both NACA-SNN update ops: forward T (I H + H N) multiplies per
    sample, plus the same for the update over every step (all-steps, chain); last-step updates the
    hidden layer from one step and the output layer from every step: I H + T H N."""
    from torch_plugin import learn, metrics, models

    m = models.spiking_mlp(8, [6], 3, T=5, seed=0)
    learner = learn.NACA(m, lr=0.01, all_steps=rule != "last-step", membrane_chain=rule == "chain")
    x, y = torch.rand(4, 8), torch.tensor([0, 1, 2, 0])
    per_step = 8 * 6 + 6 * 3
    expect = 5 * per_step + (8 * 6 + 5 * 6 * 3 if rule == "last-step" else 5 * per_step)
    assert metrics.measured_macs(lambda: learner.step(x, y), 4) == pytest.approx(expect)


def _ci_study(out, *argv):
    compare.main(["--dataset", "digits", "--hidden", "16", "--epochs", "1", "--scenario", "class-incremental",
                  "--optimizer", "sgd", "--seeds", "0", "--quiet", "--out", str(out), *argv])
    res = json.loads((out / "results.json").read_text())
    return {r["method"]: r for r in res["runs"]}, res


def _same_run(a, b):
    return (a["test_acc_per_epoch"] == b["test_acc_per_epoch"] and a["weight_change"] == b["weight_change"]
            and a["class_incremental"]["acc_matrix"] == b["class_incremental"]["acc_matrix"])


def test_gate_variant_beside_the_ungated_method(tmp_path):
    """--methods bp,bp+gate,naca+gate: bp+gate is bp with the gate (the runs of a --gate study), bp beside it
    is ungated (the runs of a study without the gate); each label has its row, summary, run file and plot
    entries; --resume reuses both variants' runs."""
    runs, res = _ci_study(tmp_path / "v", "--methods", "bp,bp+gate,naca+gate")
    bp, bpg, nacag = runs["bp"], runs["bp+gate"], runs["naca+gate"]
    assert not bp["gate"] and bpg["gate"] and nacag["gate"]
    assert (bp["base_method"], bpg["base_method"], nacag["base_method"]) == ("bp", "bp", "naca")
    assert bp["gate_by_class_eval"] is None and bpg["gate_by_class_eval"] is not None
    assert not _same_run(bp, bpg)  # the gate changed what bp+gate learned
    assert bpg["lr"] == bp["lr"] and bpg["multiplies_per_sample"]["formula"] == bp["multiplies_per_sample"]["formula"]
    plain, _ = _ci_study(tmp_path / "plain", "--methods", "bp")
    gated, _ = _ci_study(tmp_path / "gated", "--methods", "bp,naca", "--gate")
    assert _same_run(bp, plain["bp"]) and _same_run(bpg, gated["bp"]) and _same_run(nacag, gated["naca"])
    md = (tmp_path / "v" / "results.md").read_text()
    assert "| bp |" in md and "| bp+gate |" in md and "| naca+gate |" in md
    assert list(res["summary"]) == ["bp", "bp+gate", "naca+gate"]
    assert res["files"]["runs"][1] == os.path.join("runs", "bp+gate_seed0.json")
    assert "acc_matrix_class_sorted.png" in res["files"]["plots"] and "mean_acc_bars.png" in res["files"]["plots"]
    calls = []
    real = compare.study.train_run

    def counted(args, method, seed, ds, tasks):
        calls.append(method)
        return real(args, method, seed, ds, tasks)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compare.study, "train_run", counted)
        _, res2 = _ci_study(tmp_path / "v", "--methods", "bp,bp+gate,naca+gate,naca", "--resume", "--no-plots")
    assert calls == ["naca"] and res2["resumed_runs"] == ["bp_seed0", "bp+gate_seed0", "naca+gate_seed0"]
    assert res2["runs"][1] == bpg


@pytest.mark.parametrize("argv,message", [
    (["--methods", "bp,sbp+gate"], "unknown variant 'sbp+gate'"),
    (["--methods", "bp+gated"], "unknown ['bp+gated']"),
    (["--methods", "bp,bp+gate", "--gate"], "argument --gate: gates bp"),
    (["--methods", "bp,bp+gate", "--gate-methods", "bp"], "argument --gate-methods: gates bp"),
    (["--methods", "bp+gate", "--lr", "naca+gate=0.1"], "argument --lr: method 'naca+gate' is not in --methods"),
])
def test_gate_variant_bad_input_is_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        compare.parse_args(["--dataset", "digits", *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_gate_variant_takes_the_base_methods_lr_and_its_own():
    a = compare.parse_args(["--dataset", "digits", "--methods", "naca,naca+gate", "--lr", "naca=0.01"])
    ds = data.load_dataset("digits")
    assert compare.resolve_lr(a, "naca+gate", ds) == compare.resolve_lr(a, "naca", ds) == 0.01
    a = compare.parse_args(["--dataset", "digits", "--methods", "naca,naca+gate", "--lr", "naca+gate=0.02",
                            "--batch-size", "8,naca+gate=4"])
    assert compare.resolve_lr(a, "naca+gate", ds) == 0.02 and compare.resolve_lr(a, "naca", ds) == 1e-3  # adam's
    from torch_plugin.compare.methods import resolve_batch_size

    assert (resolve_batch_size(a, "naca+gate"), resolve_batch_size(a, "naca")) == (4, 8)
