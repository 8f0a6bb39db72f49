"""The comparison command's training-loop options, the --resume store and its documentation."""
import json
import math
import os

import numpy as np
import pytest
import torch

from torch_plugin import compare, data


def _finite_in(v, lo, hi):
    return v is not None and math.isfinite(v) and lo <= v <= hi


def test_studies_doc_documents_every_flag():
    """docs/studies.md's flag tables name every option of the command (docs that drift get caught)."""
    readme = open(os.path.join(os.path.dirname(__file__), os.pardir, "docs", "studies.md"), encoding="utf-8").read()
    flags = [o for a in compare.build_parser()._actions for o in a.option_strings if o.startswith("--")]
    missing = [f for f in flags if f != "--help" and f"`{f}`" not in readme]
    assert len(flags) > 30 and not missing, missing


def test_compare_restore_best_and_eval_stop(tmp_path):
    """--restore-best puts back the weights of the epoch with the lowest training-set MSE (so the final
    accuracy is that epoch's test accuracy); --stop-metric eval stops a task at the first epoch whose
    re-evaluated training accuracy reaches --stop-at (the authors' class-incremental loop)."""
    compare.main(["--dataset", "digits", "--hidden", "32", "--epochs", "4", "--methods", "bp,naca,sbp",
                  "--optimizer", "sgd", "--restore-best", "--quiet", "--no-plots", "--out", str(tmp_path / "s")])
    for r in json.loads((tmp_path / "s" / "results.json").read_text())["runs"]:
        mse = [e["eval_train_mse"] for e in r["epochs"]]
        best = int(np.argmin(mse))
        assert r["restored_epochs"] == [best + 1], (r["method"], mse)
        assert r["final_test_acc"] == r["test_acc_per_epoch"][best]
        assert all(_finite_in(e["eval_train_acc"], 0, 1) for e in r["epochs"])
    compare.main(["--dataset", "digits", "--hidden", "32", "--epochs", "3", "--methods", "bp,naca",
                  "--scenario", "class-incremental", "--stop-metric", "eval", "--stop-at", "0.9", "--quiet",
                  "--no-plots", "--out", str(tmp_path / "c")])
    res = json.loads((tmp_path / "c" / "results.json").read_text())
    assert "re-evaluated" in (tmp_path / "c" / "results.md").read_text()
    for r in res["runs"]:
        assert r["restored_epochs"] is None
        per_task = r["class_incremental"]["epochs_per_task"]
        for t, n in enumerate(per_task):
            accs = [e["eval_train_acc"] for e in r["epochs"] if e["task"] == t]
            assert len(accs) == n and all(a < 0.9 for a in accs[:-1])
            assert accs[-1] >= 0.9 or n == 3


def test_compare_clip_grad_norm(tmp_path):
    """--clip-grad-norm counts the steps it clipped; a bound that never binds changes nothing (for naca the
    clipped path is SGD on the pseudo-gradient, which equals the in-place step); sbp runs do not clip."""
    def run(out, *extra):
        compare.main(["--dataset", "digits", "--hidden", "32", "--epochs", "2", "--methods", "bp,naca,sbp",
                      "--optimizer", "sgd", "--quiet", "--no-plots", "--out", str(tmp_path / out), *extra])
        return {r["method"]: r for r in json.loads((tmp_path / out / "results.json").read_text())["runs"]}

    plain, loose, tight = run("p"), run("l", "--clip-grad-norm", "1e9"), run("t", "--clip-grad-norm", "1e-3")
    steps = 2 * math.ceil(1437 / 32)  # digits' training split: 1437 samples
    for m in ("bp", "naca"):
        assert loose[m]["grad_clip"] == {"max_norm": 1e9, "steps": steps, "clipped_steps": 0}
        assert tight[m]["grad_clip"]["clipped_steps"] == steps
        assert np.allclose(loose[m]["test_acc_per_epoch"], plain[m]["test_acc_per_epoch"], atol=0.01), m
        assert tight[m]["final_test_acc"] < plain[m]["final_test_acc"] - 0.2  # steps of norm 1e-3 barely move
    assert loose["sbp"]["grad_clip"] is None and plain["bp"]["grad_clip"] is None
    assert loose["sbp"]["test_acc_per_epoch"] == plain["sbp"]["test_acc_per_epoch"]


@pytest.mark.parametrize("argv", [["--stop-metric", "eval", "--stop-at", "0"], ["--clip-grad-norm", "-1"],
                                  ["--clip-grad-norm", "10", "--methods", "sbp"]])
def test_compare_rejects_bad_loop_flags(argv, tmp_path):
    with pytest.raises(SystemExit):
        compare.parse_args(["--dataset", "digits", "--out", str(tmp_path), *argv])


def test_class_order_shuffled_per_seed(tmp_path):
    """--class-order shuffled: each seed draws its own class order, shared by every method of that seed."""
    assert data.class_incremental_tasks(5, 2, order=[3, 0, 4, 1, 2]) == [[3, 0], [4, 1], [2]]
    with pytest.raises(ValueError, match="permutation"):
        data.class_incremental_tasks(4, 1, order=[0, 1, 1, 2])
    compare.main(["--dataset", "digits", "--hidden", "16", "--epochs", "1", "--methods", "bp,naca", "--seeds", "0,1",
                  "--scenario", "class-incremental", "--tasks-classes", "1", "--class-order", "shuffled",
                  "--train-subset", "400", "--test-subset", "200", "--quiet", "--no-plots", "--out", str(tmp_path)])
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    tasks = {(r["method"], r["seed"]): r["class_incremental"]["tasks"] for r in runs}
    assert tasks[("bp", 0)] == tasks[("naca", 0)] and tasks[("bp", 1)] == tasks[("naca", 1)]
    assert tasks[("bp", 0)] != tasks[("bp", 1)]
    for t in tasks.values():
        assert sorted(c for task in t for c in task) == list(range(10)) and all(len(task) == 1 for task in t)
    for r in runs:  # the per-class metrics follow the run's own order
        assert _finite_in(r["class_incremental"]["forgetting_per_class"], -1, 1)
    with pytest.raises(SystemExit):
        compare.parse_args(["--class-order", "shuffled"])


def test_compare_standardize(tmp_path):
    """--standardize: inputs with mean 0 and std 1 over the training set, so the gate's delta (in standard
    deviations) is its raw value; both methods still learn; the spiking model refuses it."""
    def run(out, *extra):
        compare.main(["--dataset", "digits", "--hidden", "32", "--epochs", "2", "--methods", "bp,naca",
                      "--optimizer", "sgd", "--quiet", "--no-plots", "--out", str(tmp_path / out), *extra])
        return json.loads((tmp_path / out / "results.json").read_text())["runs"]

    raw, std = run("raw", "--gate"), run("std", "--gate", "--standardize")
    assert all(r["gate_delta_raw"] == pytest.approx(0.2, rel=1e-5) for r in std)
    assert all(r["gate_delta_raw"] == pytest.approx(raw[0]["gate_delta_raw"]) != pytest.approx(0.2) for r in raw)
    assert all(_finite_in(r["final_test_acc"], 0.8, 1) for r in run("learn", "--standardize"))
    with pytest.raises(SystemExit):
        compare.parse_args(["--model", "snn", "--standardize"])


def test_compare_resume_after_interruption(tmp_path, monkeypatch):
    """Each finished run is saved to runs/ at once; after a study dies mid-way, --resume trains only the runs
    that were not saved and the study's numbers equal an uninterrupted study's; more seeds extend a finished
    study; a saved run made with other settings (or an unreadable one) stops the study, naming the problem."""
    argv = ["--dataset", "digits", "--hidden", "16", "--epochs", "2", "--methods", "bp,naca,sbp", "--optimizer",
            "sgd", "--train-subset", "400", "--test-subset", "200", "--quiet", "--no-plots"]
    compare.main(argv + ["--out", str(tmp_path / "full")])
    full = json.loads((tmp_path / "full" / "results.json").read_text())
    out = str(tmp_path / "cut")
    assert sorted(os.listdir(tmp_path / "full" / "runs")) == ["bp_seed0.json", "naca_seed0.json", "sbp_seed0.json"]
    assert full["resumed_runs"] == [] and full["files"]["runs"][0] == os.path.join("runs", "bp_seed0.json")

    real, calls = compare.study.train_run, []

    def dies_on_second_run(args, method, seed, ds, tasks):
        calls.append((method, seed))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(args, method, seed, ds, tasks)

    monkeypatch.setattr(compare.study, "train_run", dies_on_second_run)
    with pytest.raises(KeyboardInterrupt):
        compare.main(argv + ["--out", out])
    assert os.listdir(os.path.join(out, "runs")) == ["bp_seed0.json"] and not os.path.exists(
        os.path.join(out, "results.json"))

    def counted(args, method, seed, ds, tasks):
        calls.append((method, seed))
        return real(args, method, seed, ds, tasks)

    monkeypatch.setattr(compare.study, "train_run", counted)
    calls.clear()
    compare.main(argv + ["--out", out, "--resume"])
    assert calls == [("naca", 0), ("sbp", 0)]
    res = json.loads(open(os.path.join(out, "results.json")).read())
    assert res["resumed_runs"] == ["bp_seed0"] and "reused" in open(os.path.join(out, "results.md")).read()
    for a, b in zip(res["runs"], full["runs"]):
        assert (a["method"], a["test_acc_per_epoch"], a["final_test_acc"], a["weight_change"]) == (
            b["method"], b["test_acc_per_epoch"], b["final_test_acc"], b["weight_change"])
    for m in ("bp", "naca", "sbp"):
        assert res["summary"][m]["final_test_acc"] == full["summary"][m]["final_test_acc"]

    calls.clear()  # another seed and a different thread count: only the added runs train
    threads = torch.get_num_threads()
    try:
        compare.main(argv + ["--out", out, "--resume", "--seeds", "0,1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert calls == [("bp", 1), ("naca", 1), ("sbp", 1)]
    assert len(json.loads(open(os.path.join(out, "results.json")).read())["runs"]) == 6

    calls.clear()
    with pytest.raises(SystemExit, match=r"bp_seed0\.json was trained with other settings \(epochs: saved 2, now 3"):
        compare.main(argv + ["--epochs", "3", "--out", out, "--resume"])
    with pytest.raises(SystemExit, match="method_lr: saved 0.1, now 0.5"):
        compare.main(argv + ["--out", out, "--resume", "--lr", "bp=0.5"])
    assert calls == []
    with open(os.path.join(out, "runs", "naca_seed0.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(SystemExit, match=r"cannot read the saved run .*naca_seed0\.json"):
        compare.main(argv + ["--out", out, "--resume"])


def test_compare_records_nonfinite_steps_and_threads(tmp_path):
    """A run whose outputs go NaN (BP at an absurd learning rate) counts those steps, stops its task after
    that epoch, and still reports; every run records the thread count that trained it."""
    compare.main(["--dataset", "digits", "--hidden", "16", "--epochs", "3", "--methods", "bp,naca", "--optimizer",
                  "sgd", "--lr", "bp=1e38", "--quiet", "--no-plots", "--out", str(tmp_path)])
    runs = {r["method"]: r for r in json.loads((tmp_path / "results.json").read_text())["runs"]}
    bp, naca = runs["bp"], runs["naca"]
    assert bp["nonfinite_steps"] > 0 and len(bp["epochs"]) < 3
    assert bp["epochs"][-1]["nonfinite_steps"] > 0
    assert naca["nonfinite_steps"] == 0 and len(naca["epochs"]) == 3
    assert all(r["threads"] == torch.get_num_threads() for r in runs.values())


def test_compare_class_incremental_reports_forgetting_per_class(tmp_path):
    """The table's main forgetting is docs/algorithms.md §3's (per class, averaged); per task stays beside it.
    With two classes per task the two differ in general; with the gate both exist for class-sorted batches."""
    compare.main(["--dataset", "digits", "--hidden", "16", "--epochs", "1", "--methods", "bp,naca", "--gate",
                  "--scenario", "class-incremental", "--quiet", "--no-plots", "--out", str(tmp_path)])
    res = json.loads((tmp_path / "results.json").read_text())
    for r in res["runs"]:
        ci, leak = r["class_incremental"], r["gate_by_class_eval"]
        rows = np.asarray(ci["class_acc_matrix"])
        learned_at = [next(i for i, cl in enumerate(ci["tasks"]) if c in cl) for c in range(10)]
        expect = np.mean([rows[learned_at[c]:4, c].max() - rows[4, c] for c in range(10) if learned_at[c] < 4])
        assert ci["forgetting_per_class"] == pytest.approx(expect)
        assert _finite_in(leak["forgetting_per_class"], -1, 1)
    for m in ("bp", "naca"):
        assert {"forgetting_per_class", "forgetting", "gate_by_class_forgetting_per_class"} <= set(res["summary"][m])
    table = (tmp_path / "results.md").read_text()
    assert "forgetting per class (%)" in table and "forgetting per task (%)" in table
    assert "forgetting per class, class-sorted (%)" in table
    assert res["dataset"]["test_order"] == "stored"  # digits' test split is not sorted by class


def test_gate_shuffles_a_class_sorted_test_set(tmp_path):
    """With --gate, a test set stored sorted by class would make the mixed-batch evaluation class-sorted (the
    gate would see the class): it is evaluated in a fixed shuffled order instead, and results.json says so."""
    xtr, ytr, xte, yte = data.load_digits()
    order = torch.argsort(yte, stable=True)
    path = tmp_path / "sorted.npz"
    np.savez(path, x_train=xtr.numpy(), y_train=ytr.numpy(), x_test=xte[order].numpy(), y_test=yte[order].numpy())
    argv = ["--dataset", str(path), "--hidden", "16", "--epochs", "1", "--methods", "naca", "--quiet", "--no-plots"]
    compare.main(argv + ["--gate", "--out", str(tmp_path / "g")])
    compare.main(argv + ["--out", str(tmp_path / "n")])
    gated = json.loads((tmp_path / "g" / "results.json").read_text())
    plain = json.loads((tmp_path / "n" / "results.json").read_text())
    assert gated["dataset"]["test_order"].startswith("shuffled") and plain["dataset"]["test_order"] == "stored"
    # the class-sorted evaluation (the gate's leak) still scores far above the mixed one
    r = gated["runs"][0]
    assert r["gate_by_class_eval"]["test_acc"] > r["final_test_acc"]


def test_sbp_mask_seed_follows_the_run_seed(monkeypatch, tmp_path):
    """--sbp-percentage < 1: each study seed draws its own synapse subset (the SBP learner gets the run's seed)."""
    from torch_plugin.learn import SBP

    seen = []

    class Spy(SBP):
        def __init__(self, *a, **kw):
            seen.append(kw["seed"])
            super().__init__(*a, **kw)

    real_import = compare.methods.lazy_import
    monkeypatch.setattr(compare.methods, "lazy_import",
                        lambda name, what: Spy if name.endswith(".SBP") else real_import(name, what))
    compare.main(["--dataset", "digits", "--hidden", "16", "--epochs", "1", "--methods", "sbp", "--seeds", "3,4",
                  "--sbp-percentage", "0.5", "--train-subset", "200", "--quiet", "--no-plots", "--out", str(tmp_path)])
    assert sorted(set(seen)) == [3, 4]  # (the MAC count's twin learner draws the same seed as its run)


def test_conv_kernel_option(tmp_path):
    """--conv-kernel 5 builds the authors' 5 x 5 layers (padding keeps the map size) and trains; even sizes and
    other models are refused."""
    from torch_plugin import models

    net = models.conv_net((1, 8, 8), 10, channels=(4, 8), hidden=16, kernel_size=5, seed=0)
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    assert [tuple(c.weight.shape[2:]) for c in convs] == [(5, 5), (5, 5)] and convs[0].padding == (2, 2)
    assert net(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    with pytest.raises(ValueError, match="odd"):
        models.conv_net((1, 8, 8), 10, kernel_size=4)
    compare.main(["--dataset", "digits", "--model", "conv", "--channels", "4,8", "--hidden", "16", "--conv-kernel", "5",
                  "--epochs", "1", "--methods", "bp,naca", "--train-subset", "200", "--quiet", "--no-plots",
                  "--out", str(tmp_path)])
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert all(r["model"].endswith(" 5x5") and _finite_in(r["final_test_acc"], 0, 1) for r in runs)
    for argv in (["--model", "conv", "--conv-kernel", "4"], ["--conv-kernel", "5"]):
        with pytest.raises(SystemExit):
            compare.parse_args(["--dataset", "digits", *argv])


def test_run_study_without_main(tmp_path):
    """compare.run_study(compare.parse_args(argv)) works without main() (the command line is read from sys.argv)."""
    res = compare.run_study(compare.parse_args(["--dataset", "digits", "--hidden", "8", "--epochs", "1", "--methods",
                                                "naca", "--train-subset", "200", "--quiet", "--no-plots",
                                                "--out", str(tmp_path)]))
    assert res["command"].startswith("python -m torch_plugin.compare") and len(res["runs"]) == 1
