"""The continual-learning baselines of the comparison command (ewc, ewc-online, si, lwf, replay), its
evaluation views, --bp-loss, --gate-methods and the authors' epochs-to-criterion rule."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from torch_plugin import compare, models
from torch_plugin.compare import continual

CI = ["--dataset", "digits", "--hidden", "32", "--epochs", "2", "--scenario", "class-incremental", "--optimizer",
      "sgd", "--quiet", "--no-plots"]


def _study(tmp_path, name, *argv):
    compare.main([*CI, "--out", str(tmp_path / name), *argv])
    res = json.loads((tmp_path / name / "results.json").read_text())
    return {r["method"]: r for r in res["runs"]}, res


def _same(a, b):
    return (a["test_acc_per_epoch"] == b["test_acc_per_epoch"] and a["weight_change"] == b["weight_change"]
            and a["class_incremental"]["acc_matrix"] == b["class_incremental"]["acc_matrix"])


@pytest.mark.parametrize("method,zero,strong", [("ewc", ["--ewc-lambda", "0"], ["--ewc-lambda", "5e4"]),
                                                ("ewc-online", ["--ewc-lambda", "0"], ["--ewc-lambda", "5e4"]),
                                                ("si", ["--si-c", "0"], ["--si-c", "1"])])
def test_penalty_zero_is_bp_and_a_penalty_holds_old_classes(tmp_path, method, zero, strong):
    """With lambda (c) 0 the penalty is computed and added times 0: the run equals bp bit for bit. With the
    penalty on, the weights stay near the earlier tasks' and per-class forgetting drops far below bp's."""
    off, _ = _study(tmp_path, "off", "--methods", f"bp,{method}", *zero)
    assert _same(off["bp"], off[method])
    on, _ = _study(tmp_path, "on", "--methods", f"bp,{method}", *strong)
    assert not _same(on["bp"], on[method])
    f_bp, f_m = (on[m]["class_incremental"]["forgetting_per_class"] for m in ("bp", method))
    assert f_m < f_bp - 0.3, (f_bp, f_m)


def test_lwf_alpha_zero_is_bp_and_distillation_changes_training(tmp_path):
    off, _ = _study(tmp_path, "off", "--methods", "bp,lwf", "--lwf-alpha", "0")
    assert _same(off["bp"], off["lwf"])
    on, _ = _study(tmp_path, "on", "--methods", "bp,lwf", "--lwf-alpha", "10")
    assert not _same(on["bp"], on["lwf"])


def test_replay_keeps_old_classes_above_fine_tuning(tmp_path):
    runs, res = _study(tmp_path, "r", "--methods", "bp,replay", "--replay-size", "200")
    bp, rp = (runs[m]["class_incremental"]["mean_acc_after_last"] for m in ("bp", "replay"))
    assert rp > bp + 0.15, (bp, rp)  # measured on digits: bp 0.19, replay 0.45 at --replay-size 500
    assert "| replay |" in (tmp_path / "r" / "results.md").read_text()
    # the standard scenario has one task, so the buffer never fills: replay trains as bp
    std = ["--dataset", "digits", "--hidden", "16", "--epochs", "1", "--optimizer", "sgd", "--quiet", "--no-plots"]
    compare.main([*std, "--methods", "bp,replay", "--out", str(tmp_path / "s")])
    runs = {r["method"]: r for r in json.loads((tmp_path / "s" / "results.json").read_text())["runs"]}
    assert runs["bp"]["test_acc_per_epoch"] == runs["replay"]["test_acc_per_epoch"]


def test_ewc_penalty_and_fisher_match_a_hand_computation():
    """Fisher: the mean squared per-sample gradient of the loss; penalty (lambda / 2) sum F (theta - theta*)^2."""
    torch.manual_seed(0)
    model = models.mlp(6, [5], 3, seed=0)
    x, y = torch.rand(7, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    ewc = continual.EWC(model, F.cross_entropy, lam=3.0)
    ewc.end_task(x, y, [0, 1, 2])
    params = [p for p in model.parameters()]
    want = [torch.zeros_like(p) for p in params]
    for i in range(7):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        for w, p in zip(want, params):
            w += p.grad ** 2 / 7
    assert all(torch.allclose(f, w, atol=1e-7) for f, w in zip(ewc.terms[0][0], want))
    with torch.no_grad():
        for p in params:
            p.add_(0.1)
    expect = 1.5 * sum((w * 0.01).sum() for w in want)
    assert float(ewc.penalty(x, None).detach()) == pytest.approx(float(expect), rel=1e-4)


def test_lwf_penalty_is_the_tempered_kl_on_seen_classes():
    model = models.mlp(6, [5], 4, seed=0)
    lwf = continual.LwF(model, alpha=0.5, temperature=2.0)
    x = torch.rand(3, 6)
    lwf.end_task(x, torch.tensor([0, 1, 0]), [0, 1])
    z = torch.randn(3, 4)
    old = model(x).detach()
    p_old = torch.softmax(old[:, :2] / 2, 1)
    kl = (p_old * (p_old.log() - torch.log_softmax(z[:, :2] / 2, 1))).sum(1).mean()
    assert float(lwf.penalty(x, z)) == pytest.approx(float(0.5 * 4 * kl), rel=1e-5)


def test_replay_buffer_is_class_balanced():
    rp = continual.Replay(6, torch.Generator().manual_seed(0))
    x, y = torch.arange(40.).view(20, 2), torch.tensor([0] * 10 + [1] * 10)
    rp.end_task(x, y, [0, 1])
    assert sorted(rp.y.tolist()) == [0, 0, 0, 1, 1, 1]
    rp.end_task(x + 100, torch.tensor([2] * 20), [2])
    assert sorted(rp.y.tolist()) == [0, 0, 1, 1, 2, 2]
    xm, ym = rp.mix(x[:4], y[:4])
    assert len(ym) == 8 and torch.equal(xm[:4], x[:4])


def test_continual_flags_are_checked(tmp_path):
    for argv in (["--methods", "replay", "--replay-size", "0"], ["--methods", "ewc", "--model", "snn"],
                 ["--methods", "bp", "--ewc-lambda", "1"], ["--methods", "ewc", "--ewc-lambda", "-1"],
                 ["--methods", "si", "--si-xi", "0"], ["--methods", "naca", "--bp-loss", "mse"],
                 ["--methods", "bp,naca", "--gate-methods", "sbp"], ["--methods", "bp", "--gate-methods", "naca"]):
        with pytest.raises(SystemExit):
            compare.parse_args(["--dataset", "digits", "--out", str(tmp_path), *argv])


def test_gate_methods_and_views(tmp_path):
    """--gate-methods naca: only naca is gated; --eval per-class evaluates each class's test set on its own,
    which for an ungated run equals the mixed batches and for the gated one reads the class through the gate."""
    runs, res = _study(tmp_path, "g", "--methods", "bp,naca", "--gate-methods", "naca", "--eval", "per-class",
                       "--tasks-classes", "1", "--epochs", "1")
    assert runs["naca"]["gate"] and not runs["bp"]["gate"]
    bp, naca = runs["bp"], runs["naca"]
    assert bp["per_class_eval"]["test_acc"] == pytest.approx(bp["final_test_acc"])
    assert bp["gate_by_class_eval"] is None and naca["gate_by_class_eval"] is not None
    assert naca["per_class_eval"]["mean_acc_after_last"] > naca["class_incremental"]["mean_acc_after_last"] + 0.1
    assert "each class's test set on its own (%)" in (tmp_path / "g" / "results.md").read_text()
    assert res["summary"]["naca"]["per_class_mean_acc_after_last"]["se"] == 0.0


def test_bp_loss_mse(tmp_path):
    std = ["--dataset", "digits", "--hidden", "32", "--epochs", "2", "--optimizer", "sgd", "--methods", "bp",
           "--quiet", "--no-plots"]
    compare.main([*std, "--out", str(tmp_path / "ce")])
    compare.main([*std, "--bp-loss", "mse", "--lr", "bp=1", "--out", str(tmp_path / "mse")])
    ce, mse = (json.loads((tmp_path / n / "results.json").read_text())["runs"][0] for n in ("ce", "mse"))
    # measured: ce 0.82, mse 0.41 after 2 epochs (the sigmoid-MSE gradient is small): both above chance (0.1)
    assert ce["test_acc_per_epoch"] != mse["test_acc_per_epoch"] and mse["final_test_acc"] > 0.3
    args = compare.parse_args([*std, "--bp-loss", "mse", "--out", str(tmp_path / "x")])
    out, y = torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    want = ((torch.sigmoid(out) - F.one_hot(y, 10).float()) ** 2).mean()
    assert float(compare.methods.training_loss(args)(out, y)) == pytest.approx(float(want))


def test_authors_criterion_by_hand():
    """Thresholds from the best mean error of any method (0.1, method b) to 5 %: 0.1, 0.0875, ..., 0.05; for
    each, the last epoch whose error is still above it."""
    runs = [{"method": "a", "test_acc_per_epoch": [0.7, 0.8, 0.85]},
            {"method": "b", "test_acc_per_epoch": [0.8, 0.9, 0.9]}]
    compare.report.authors_criterion(runs)
    a, b = (r["epochs_to_criterion_authors"] for r in runs)
    assert a["thresholds"] == pytest.approx([0.1, 0.0875, 0.075, 0.0625, 0.05])
    assert a["value"] == 3 and b["value"] == pytest.approx((1 + 3 * 4) / 5)  # b reaches 0.1 after epoch 1
    assert all(math.isfinite(r["epochs_to_criterion_authors"]["value"]) for r in runs)


def test_preset_naca_class_il(tmp_path):
    """--preset naca-class-il sets the authors' loop; a flag given beside it wins; results.md names every flag the
    preset set and prints the paper's numbers beside ours."""
    a = compare.parse_args(["--preset", "naca-class-il", "--dataset", "digits", "--out", str(tmp_path)])
    assert (a.scenario, a.tasks_classes, a.batch_size, a.bias, a.stop_metric, a.eval) == (
        "class-incremental", 1, 256, "none", "eval", "per-class")
    assert a.standardize and a.restore_best and a.clip_grad_norm == 10000 and a.seeds == [0, 1, 2, 3, 4]
    assert a.methods == ["naca+gate", "naca", "bp+gate", "bp", "ewc", "si", "lwf", "replay"]
    assert a.gate_methods == ["naca+gate", "bp+gate"]
    assert a.lr_given == {"naca": 0.0005} and a.epochs == 100
    a = compare.parse_args(["--preset", "naca-class-il", "--dataset", "digits", "--epochs", "3", "--methods",
                            "bp+gate,ewc", "--seeds", "7", "--out", str(tmp_path)])
    assert a.epochs == 3 and a.seeds == [7] and a.methods == ["bp+gate", "ewc"] and a.gate_methods == ["bp+gate"]
    assert a.lr_given == {}  # the preset's NACA lr goes with naca and naca+gate
    a = compare.parse_args(["--preset", "naca-class-il", "--dataset", "digits", "--methods", "naca,bp",
                            "--out", str(tmp_path)])
    assert a.gate_methods == [] and not a.gate and a.lr_given == {"naca": 0.0005}
    with pytest.raises(SystemExit):
        compare.parse_args(["--preset", "nope", "--dataset", "digits"])
    compare.main(["--preset", "naca-class-il", "--dataset", "digits", "--hidden", "16", "--epochs", "1", "--seeds",
                  "0", "--quiet", "--no-plots", "--out", str(tmp_path / "p")])
    md = (tmp_path / "p" / "results.md").read_text()
    assert "Preset naca-class-il set:" in md and "--restore-best" in md and "--batch-size 256" in md
    assert "--epochs" not in md.split("Preset naca-class-il set:")[1].split("\n")[0]  # given, so not the preset's
    assert "NACA 79.2 ± 3.8 (SE)" in md
    runs = json.loads((tmp_path / "p" / "results.json").read_text())["runs"]
    assert [r["method"] for r in runs] == ["naca+gate", "naca", "bp+gate", "bp", "ewc", "si", "lwf", "replay"]
    assert [r["gate"] for r in runs] == [True, False, True, False, False, False, False, False]
    assert all(r["per_class_eval"] is not None and r["batch_size"] == 256 for r in runs)


def test_resume_with_continual_methods_and_standard_errors(tmp_path):
    """--resume reuses continual runs; a saved study with another --ewc-lambda is refused for its ewc runs only (the
    saved bp runs, which do not read it, still match). The summary's se is std / sqrt(n), and results.md gives it
    for the accuracy columns."""
    argv = [*CI, "--hidden", "16", "--epochs", "1", "--train-subset", "500", "--methods", "bp,ewc", "--seeds", "0,1",
            "--out", str(tmp_path)]
    compare.main(argv)
    real, calls = compare.study.train_run, []

    def counted(args, method, seed, ds, tasks):
        calls.append((method, seed))
        return real(args, method, seed, ds, tasks)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compare.study, "train_run", counted)
        compare.main(argv + ["--resume"])
        assert calls == []
        with pytest.raises(SystemExit, match=r"ewc_seed0\.json was trained with other settings \(ewc_lambda: saved "
                                             r"50000\.0, now 10\.0\)"):
            compare.main(argv + ["--resume", "--ewc-lambda", "10"])
        compare.main(argv[:-1] + [str(tmp_path / "b"), "--methods", "bp"])  # bp alone, no ewc flag
        compare.main(argv[:-1] + [str(tmp_path / "b"), "--resume", "--ewc-lambda", "10"])
        assert calls == [("bp", 0), ("bp", 1), ("ewc", 0), ("ewc", 1)]  # the saved bp runs were reused
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    s = res["summary"]["bp"]["mean_acc_after_last"]
    assert s["n"] == 2 and s["se"] == pytest.approx(s["std"] / math.sqrt(2))
    assert "standard errors (std / sqrt(n)" in (tmp_path / "b" / "results.md").read_text()
    assert sorted(res["resumed_runs"]) == ["bp_seed0", "bp_seed1"]


def test_continual_methods_train_the_conv_model(tmp_path):
    runs, _ = _study(tmp_path, "c", "--model", "conv", "--channels", "4,8", "--hidden", "16", "--epochs", "1",
                     "--train-subset", "300", "--test-subset", "100", "--methods", "bp,ewc,si,lwf,replay")
    assert len({r["parameters"] for r in runs.values()}) == 1
    assert all(r["model"].startswith("conv") for r in runs.values())
    assert all(0 <= r["class_incremental"]["mean_acc_after_last"] <= 1 for r in runs.values())
    assert not _same(runs["bp"], runs["replay"]) and not _same(runs["bp"], runs["ewc"])


def test_preset_on_an_idx_folder(tmp_path):
    """--preset naca-class-il --dataset DIR: the same one command on any IDX folder (here digits written as IDX)."""
    import numpy as np

    from torch_plugin import data

    xtr, ytr, xte, yte = data.load_digits()
    for split, x, y in (("train", xtr, ytr), ("t10k", xte, yte)):
        imgs = (x[:, 0].numpy() * 255).round().astype(np.uint8)
        for kind, arr in (("images-idx3", imgs), ("labels-idx1", y.numpy().astype(np.uint8))):
            head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
            (tmp_path / f"{split}-{kind}-ubyte").write_bytes(head + arr.tobytes())
    compare.main(["--preset", "naca-class-il", "--dataset", str(tmp_path), "--hidden", "8", "--epochs", "1", "--seeds",
                  "0", "--methods", "naca+gate,bp+gate,replay", "--quiet", "--no-plots", "--out", str(tmp_path / "o")])
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["dataset"]["train_samples"] == len(ytr) and res["config"]["preset"] == "naca-class-il"
    assert [r["gate"] for r in res["runs"]] == [True, True, False]
