"""The comparison command (torch_plugin.compare), its metrics and its data loaders."""
import gzip
import json
import math

import numpy as np
import pytest
import torch

from torch_plugin import compare, data, metrics

# ----------------------------------------------------------------------------- metrics on hand-made numbers

R = [[0.9, 0.0, 0.0],
     [0.5, 0.8, 0.0],
     [0.3, 0.4, 0.7]]


def test_forgetting_bwt_mean():
    assert metrics.forgetting(R) == pytest.approx((0.6 + 0.4) / 2)
    assert metrics.backward_transfer(R) == pytest.approx(((0.3 - 0.9) + (0.4 - 0.8)) / 2)
    assert metrics.mean_accuracy_after_last(R) == pytest.approx((0.3 + 0.4 + 0.7) / 3)
    # the best earlier accuracy, not the one right after learning, defines forgetting
    r2 = [[0.5, 0.0], [0.9, 0.6]]
    assert metrics.forgetting(r2) == pytest.approx(0.5 - 0.9)  # negative: it improved
    assert metrics.backward_transfer(r2) == pytest.approx(0.4)
    assert metrics.forgetting([[0.7]]) == 0.0 and metrics.backward_transfer([[0.7]]) == 0.0
    with pytest.raises(ValueError):
        metrics.forgetting([[0.1, 0.2]])


def test_forgetting_columns_per_class():
    # classes 0,1 learned at task 0, class 2 at task 1 (the last: skipped)
    rows = [[0.9, 0.8, 0.0], [0.2, 0.6, 0.9]]
    assert metrics.forgetting_columns(rows, [0, 0, 1]) == pytest.approx(((0.9 - 0.2) + (0.8 - 0.6)) / 2)
    assert metrics.forgetting_columns([[0.5]], [0]) == 0.0
    # a class without test samples (NaN) is left out, not read as accuracy 0
    nan = float("nan")
    rows = [[0.9, nan, 0.0], [0.2, nan, 0.9]]
    assert metrics.forgetting_columns(rows, [0, 0, 1]) == pytest.approx(0.9 - 0.2)


def test_epochs_to_criterion_paper_rule():
    res = metrics.epochs_to_criterion([0.2, 0.1, 0.04, 0.03, 0.035])
    assert res["rule"] == "paper" and not res["censored"] and res["reached"] == 5
    assert res["thresholds"] == pytest.approx([0.03, 0.035, 0.04, 0.045, 0.05])
    assert res["value"] == pytest.approx((4 + 4 + 3 + 3 + 3) / 5)


def test_epochs_to_criterion_edge_cases():
    # best error above 5 %: thresholds from best to best + 5 %
    res = metrics.epochs_to_criterion([0.3, 0.2, 0.15])
    assert res["rule"] == "relative"
    assert res["thresholds"] == pytest.approx([0.15, 0.1625, 0.175, 0.1875, 0.2])
    assert res["value"] == pytest.approx((3 + 3 + 3 + 3 + 2) / 5)
    # a shared best the run never reaches: unreached thresholds count as epochs + 1, censored
    res = metrics.epochs_to_criterion([0.3, 0.2], best_error=0.01)
    assert res["censored"] and res["reached"] == 0 and res["value"] == 3
    # one epoch: 1
    assert metrics.epochs_to_criterion([0.02])["value"] == 1
    with pytest.raises(ValueError):
        metrics.epochs_to_criterion([])
    with pytest.raises(ValueError):
        metrics.epochs_to_criterion([float("nan")])


def test_accuracy_helpers_and_formulas():
    pred = torch.tensor([0, 1, 1, 2])
    y = torch.tensor([0, 1, 2, 2])
    assert metrics.accuracy(pred, y) == 0.75
    assert metrics.per_class_accuracy(pred, y, 4)[:3] == [1.0, 1.0, 0.5]
    assert math.isnan(metrics.per_class_accuracy(pred, y, 4)[3])
    assert metrics.task_accuracies(pred, y, [[0, 1], [2, 3]]) == [1.0, 0.5]
    assert metrics.multiplies_formula("naca", 784, 1000, 10) == 784 * 1000 + 1000 * 10
    assert metrics.multiplies_formula("bp", 784, 1000, 10) == 784000 + 10**6 + 10000 + 784000
    assert metrics.multiplies_formula("sbp", 1, 1, 1) is None


def test_measured_macs_counts_plugin_ops():
    from torch_plugin import learn, models

    torch.manual_seed(0)
    model = models.mlp(20, [30], 5, seed=0)
    learner = learn.NACA(model, lr=0.01)
    x, y = torch.rand(8, 20), torch.randint(0, 5, (8,))
    # forward 20*30 + 30*5, update the same again
    assert metrics.measured_macs(lambda: learner.step(x, y), 8) == pytest.approx(2 * (20 * 30 + 30 * 5))


def test_weight_change_stats():
    w0 = torch.zeros(10, 10)
    w1 = w0.clone()
    w1[0] = 0.5
    s = metrics.weight_change_stats(w0, w1)
    assert s["synapses"] == 100
    assert s["fraction_below"]["0.001"] == pytest.approx(0.9)
    assert sum(s["hist_counts"]) == 100 and len(s["hist_log10_edges"]) == len(s["hist_counts"]) + 1


# ----------------------------------------------------------------------------- data loaders

def _write_idx(path, arr, gz):
    arr = np.asarray(arr)
    code = {np.dtype(np.uint8): 0x08}[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(head + arr.tobytes())


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder(tmp_path, gz):
    rng = np.random.default_rng(0)
    xtr = rng.integers(0, 256, (12, 4, 5), dtype=np.uint8)
    ytr = np.arange(12, dtype=np.uint8) % 3
    sfx = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", xtr, gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", ytr, gz)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", xtr[:6], gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", ytr[:6], gz)
    assert np.array_equal(data.read_idx(str(tmp_path / f"train-images-idx3-ubyte{sfx}")), xtr)
    ds = data.load_dataset(str(tmp_path))
    assert ds.x_train.shape == (12, 1, 4, 5) and ds.x_train.dtype == torch.float32
    assert torch.allclose(ds.x_train[:, 0], torch.from_numpy(xtr).float() / 255)
    assert ds.y_train.dtype == torch.int64 and ds.y_train.tolist() == ytr.tolist()
    assert ds.num_classes == 3 and len(ds.x_test) == 6 and ds.in_features == 20


def test_missing_files_name_file_and_package(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*apt-get install dataset-fashion-mnist"):
        data.load_idx_dir(str(tmp_path), "train", package_hint=data.FASHION_MNIST_PACKAGE)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        data.load_npz(str(tmp_path / "nope.npz"))
    with pytest.raises(SystemExit):
        compare.main(["--dataset", str(tmp_path), "--quiet", "--out", str(tmp_path / "o")])
    assert "argument --dataset" in capsys.readouterr().err and not (tmp_path / "o").exists()
    (tmp_path / "bad-idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(str(tmp_path / "bad-idx"))


def test_npz_both_layouts(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((50, 6)).astype(np.float32) * 4.0  # not in [0, 1]: min-max scaled
    y = np.arange(50) % 5
    np.savez(tmp_path / "a.npz", x=x, y=y)
    xtr, ytr, xte, yte = data.load_npz(str(tmp_path / "a.npz"))
    assert len(xtr) == 40 and len(xte) == 10 and xtr.shape[1:] == (6,)
    assert float(torch.cat([xtr, xte]).min()) == 0.0 and float(torch.cat([xtr, xte]).max()) == pytest.approx(1.0)
    imgs = rng.integers(0, 256, (20, 3, 3), dtype=np.uint8)
    np.savez(tmp_path / "b.npz", x_train=imgs[:15], y_train=y[:15], x_test=imgs[15:], y_test=y[15:20])
    ds = data.load_dataset(str(tmp_path / "b.npz"))
    assert ds.x_train.shape == (15, 1, 3, 3) and ds.num_classes == 5
    np.savez(tmp_path / "c.npz", foo=x)
    with pytest.raises(ValueError, match="expected keys"):
        data.load_npz(str(tmp_path / "c.npz"))


def test_subsets_tasks_batches():
    d = data.load_dataset("digits")
    assert d.x_train.shape == (1438, 1, 8, 8) and len(d.x_test) == 359 and float(d.x_train.max()) <= 1.0
    x, y = data.subset(d.x_train, d.y_train, 100, seed=3)
    assert len(x) == 100 and set(y.tolist()) == set(range(10))
    assert torch.equal(data.subset(d.x_train, d.y_train, 100, seed=3)[1], y)
    assert data.class_incremental_tasks(10, 2) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert data.class_incremental_tasks(3, 2) == [[0, 1], [2]]
    xt, yt = data.task_subset(d.x_train, d.y_train, [3, 4])
    assert set(yt.tolist()) == {3, 4} and len(xt) == int(((d.y_train == 3) | (d.y_train == 4)).sum())
    b1 = [yb for _, yb in data.batches(x, y, 32, seed=7)]
    b2 = [yb for _, yb in data.batches(x, y, 32, seed=7)]
    assert [len(b) for b in b1] == [32, 32, 32, 4] and all(torch.equal(a, b) for a, b in zip(b1, b2))
    assert sorted(torch.cat(b1).tolist()) == sorted(y.tolist())


# ----------------------------------------------------------------------------- the command end to end

def _finite_in(v, lo, hi):
    return v is not None and math.isfinite(v) and lo <= v <= hi


# BP, mlp 64-32-10, 4 epochs, batch 32, SGD lr 0.1, seed 0 on digits: measured 0.8886 (1 and 2 threads, torch 2.14)
BP_DIGITS_ACC = 0.8886
BP_TOL = 0.03


def test_compare_standard_digits(tmp_path):
    out = tmp_path / "std"
    compare.main(["--dataset", "digits", "--hidden", "32", "--epochs", "4", "--seeds", "0", "--optimizer", "sgd",
                  "--methods", "bp,naca", "--quiet", "--out", str(out)])
    res = json.loads((out / "results.json").read_text())
    for key in compare.RESULTS_SCHEMA:
        assert key in res, key
    assert res["schema_version"] == 1 and res["dataset"]["num_classes"] == 10
    assert [r["method"] for r in res["runs"]] == ["bp", "naca"]
    for r in res["runs"]:
        for key in compare.RUN_SCHEMA:
            assert key in r, key
        assert len(r["epochs"]) == 4 and len(r["test_acc_per_epoch"]) == 4
        assert all(_finite_in(e["train_acc"], 0, 1) and _finite_in(e["test_acc"], 0, 1) for e in r["epochs"])
        assert _finite_in(r["final_test_acc"], 0, 1)
        assert _finite_in(r["epochs_to_criterion"]["value"], 1, 4)
        assert _finite_in(r["epochs_to_criterion_shared"]["value"], 1, 5)
        mps = r["multiplies_per_sample"]
        assert mps["formula"] > 0 and _finite_in(mps["measured"], 1, 1e9)
        assert _finite_in(r["seconds_per_epoch"], 0, 60) and r["samples_per_s"] > 0
        assert r["peak_memory"]["cpu_rss_bytes"] > 0 and r["peak_memory"]["cuda_bytes"] is None
        wc = r["weight_change"]
        assert wc["synapses"] == 64 * 32 and all(_finite_in(v, 0, 1) for v in wc["fraction_below"].values())
        assert r["class_incremental"] is None
    bp, naca = res["runs"]
    assert abs(bp["final_test_acc"] - BP_DIGITS_ACC) <= BP_TOL, bp["final_test_acc"]
    assert naca["final_test_acc"] > 0.8
    # measured MACs: BP = forward + weight grads + hidden delta; NACA = forward + the two outer products
    assert naca["multiplies_per_sample"]["measured"] == pytest.approx(2 * (64 * 32 + 32 * 10))
    assert bp["multiplies_per_sample"]["measured"] == pytest.approx(2 * (64 * 32 + 32 * 10) + 32 * 10)
    assert set(res["summary"]) == {"bp", "naca"}
    assert "| bp |" in (out / "results.md").read_text()
    assert (out / "accuracy_curves.png").stat().st_size > 1000


def test_compare_class_incremental_digits(tmp_path):
    out = tmp_path / "ci"
    compare.main(["--dataset", "digits", "--hidden", "32", "--scenario", "class-incremental", "--epochs", "2",
                  "--seeds", "0,1", "--methods", "bp,naca", "--quiet", "--out", str(out)])
    res = json.loads((out / "results.json").read_text())
    assert len(res["runs"]) == 4
    for r in res["runs"]:
        ci = r["class_incremental"]
        assert ci["tasks"] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
        assert np.asarray(ci["acc_matrix"]).shape == (5, 5) and np.asarray(ci["class_acc_matrix"]).shape == (5, 10)
        assert all(1 <= e <= 2 for e in ci["epochs_per_task"])
        assert all(_finite_in(v, 0, 1) for row in ci["acc_matrix"] for v in row)
        assert _finite_in(ci["mean_acc_after_last"], 0, 1) and _finite_in(ci["mean_task_acc_after_last"], 0, 1)
        assert _finite_in(ci["forgetting"], -1, 1) and _finite_in(ci["forgetting_per_class"], -1, 1)
        assert _finite_in(ci["bwt"], -1, 1)
        assert r["epochs_to_criterion"] is None
    s = res["summary"]["naca"]
    assert s["mean_acc_after_last"]["n"] == 2 and s["mean_acc_after_last"]["std"] >= 0
    pngs = {"accuracy_curves.png", "acc_matrix.png", "weight_change.png", "mean_acc_bars.png"}
    for png in pngs:
        assert (out / png).stat().st_size > 1000, png
    assert set(res["files"]["plots"]) == pngs


def test_compare_gate_sbp_and_snn(tmp_path):
    compare.main(["--dataset", "digits", "--hidden", "32", "--epochs", "1", "--methods", "naca,bp,sbp", "--gate",
                  "--scenario", "class-incremental", "--quiet", "--out", str(tmp_path / "g")])
    res = json.loads((tmp_path / "g" / "results.json").read_text())
    for r in res["runs"]:
        gated = r["method"] != "sbp"  # the gate is applied to naca and bp runs only
        assert r["gate"] == gated and (r["gate_delta_raw"] > 0 if gated else r["gate_delta_raw"] is None)
        assert _finite_in(r["class_incremental"]["mean_acc_after_last"], 0, 1)
        if gated:
            leak = r["gate_by_class_eval"]
            assert _finite_in(leak["mean_acc_after_last"], 0, 1) and _finite_in(leak["forgetting"], -1, 1)
            assert len(leak["acc_matrix"]) == len(r["class_incremental"]["acc_matrix"])
    assert "acc_matrix_class_sorted.png" in res["files"]["plots"]
    assert (tmp_path / "g" / "acc_matrix_class_sorted.png").stat().st_size > 1000
    table = (tmp_path / "g" / "results.md").read_text()
    assert "forgetting per class, class-sorted (%)" in table and "| sbp |" in table
    compare.main(["--dataset", "digits", "--hidden", "32", "--epochs", "1", "--methods", "sbp", "--quiet",
                  "--no-plots", "--out", str(tmp_path / "s")])
    r = json.loads((tmp_path / "s" / "results.json").read_text())["runs"][0]
    assert _finite_in(r["final_test_acc"], 0, 1) and r["optimizer"] == "sbp"
    compare.main(["--dataset", "digits", "--model", "snn", "--hidden", "16", "--T", "4", "--epochs", "1",
                  "--train-subset", "200", "--test-subset", "100", "--methods", "naca,sbp,bp-surrogate",
                  "--gate", "--quiet", "--no-plots", "--out", str(tmp_path / "n")])
    runs = json.loads((tmp_path / "n" / "results.json").read_text())["runs"]
    assert [r["method"] for r in runs] == ["naca", "sbp", "bp-surrogate"]
    assert all(_finite_in(r["final_test_acc"], 0, 1) for r in runs)
    assert [r["gate"] for r in runs] == [True, False, True]
    assert all(_finite_in(r["gate_by_class_eval"]["test_acc"], 0, 1) for r in runs if r["gate"])
    compare.main(["--dataset", "digits", "--model", "snn", "--hidden", "16", "--T", "4", "--epochs", "1",
                  "--train-subset", "200", "--test-subset", "100", "--methods", "sbp", "--stp",
                  "--sbp-rule", "symmetric", "--sbp-relax-steps", "5", "--quiet", "--no-plots",
                  "--out", str(tmp_path / "o")])
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["config"]["stp"] and res["config"]["sbp_rule"] == "symmetric"
    assert _finite_in(res["runs"][0]["final_test_acc"], 0, 1)


def test_compare_sbp_local_is_sbp_without_spread(tmp_path):
    """sbp-local is SBP with lambda_f = 0 whatever --sbp-fraction says: with --sbp-fraction 0 the
    two methods train identically; with the default 0.2 only sbp changes, sbp-local does not."""
    def runs(out, *extra):
        compare.main(["--dataset", "digits", "--hidden", "32", "--epochs", "2", "--methods", "sbp,sbp-local",
                      "--quiet", "--no-plots", "--out", str(tmp_path / out), *extra])
        res = json.loads((tmp_path / out / "results.json").read_text())
        return {r["method"]: r for r in res["runs"]}, res

    zero, _ = runs("zero", "--sbp-fraction", "0")
    spread, res = runs("spread")
    key = lambda r: (r["test_acc_per_epoch"], r["weight_change"]["mean_abs"], r["weight_change"]["max_abs"])
    assert key(zero["sbp"]) == key(zero["sbp-local"])
    assert key(spread["sbp-local"]) == key(zero["sbp-local"])
    assert spread["sbp"]["weight_change"]["mean_abs"] != spread["sbp-local"]["weight_change"]["mean_abs"]
    assert res["config"]["lr"] == {"sbp": 3.0, "sbp-local": 3.0}
    assert all(_finite_in(r["final_test_acc"], 0.5, 1) for r in spread.values())  # both learn digits
    assert "| sbp-local |" in (tmp_path / "spread" / "results.md").read_text()
    with pytest.raises(SystemExit):
        compare.main(["--dataset", "digits", "--model", "conv", "--methods", "sbp-local", "--out", str(tmp_path)])


def test_compare_bias_choices(tmp_path):
    """--bias none builds every model and method without biases (the authors' ANNs), --bias output
    keeps the output layer's only (their SNN): the parameter counts say which, the model's name
    says so, and every run learns."""
    def run(out, *extra):
        compare.main(["--dataset", "digits", "--hidden", "32", "--epochs", "2", "--quiet", "--no-plots",
                      "--out", str(tmp_path / out), *extra])
        return json.loads((tmp_path / out / "results.json").read_text())

    res = run("mlp", "--bias", "none", "--methods", "bp,naca,sbp,sbp-local", "--optimizer", "sgd")
    assert res["config"]["bias"] == "none"
    for r in res["runs"]:
        assert r["parameters"] == 64 * 32 + 32 * 10 and r["model"].endswith("no bias"), r["method"]
        assert _finite_in(r["final_test_acc"], 0.5, 1), r["method"]
    res = run("snn", "--bias", "output", "--model", "snn", "--hidden", "16", "--T", "4", "--train-subset", "300",
              "--test-subset", "100", "--methods", "naca,sbp,bp-surrogate", "--gate")
    for r in res["runs"]:
        assert r["parameters"] == 64 * 16 + 16 * 10 + 10 and r["model"].endswith("output bias only")
        assert _finite_in(r["final_test_acc"], 0, 1)
    res = run("conv", "--bias", "none", "--model", "conv", "--channels", "4,8", "--hidden", "16", "--train-subset",
              "300", "--test-subset", "100", "--methods", "bp,naca")
    assert all(r["parameters"] == 1 * 4 * 9 + 4 * 8 * 9 + 8 * 2 * 2 * 16 + 16 * 10 for r in res["runs"])
    assert run("all", "--methods", "naca", "--epochs", "1")["runs"][0]["parameters"] == 64 * 32 + 32 + 32 * 10 + 10


def test_compare_bad_flags(tmp_path):
    with pytest.raises(SystemExit):
        compare.main(["--methods", "bp,foo", "--dataset", "digits", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        compare.main(["--methods", "bp-surrogate", "--dataset", "digits", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        compare.main(["--lr", "naca", "--dataset", "digits", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        compare.main(["--stp", "--dataset", "digits", "--out", str(tmp_path)])


def test_package_entry_points_and_gate_import_paths():
    """`python -m torch_plugin.compare` runs the package's main; InputGate lives with the learners and the
    compare package re-exports the same class."""
    import subprocess
    import sys

    from torch_plugin.learn import InputGate

    assert compare.InputGate is InputGate and compare.main is compare.cli.main
    proc = subprocess.run([sys.executable, "-m", "torch_plugin.compare", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "--methods" in proc.stdout, proc.stderr
