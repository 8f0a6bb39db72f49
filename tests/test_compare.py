"""The comparison command (torch_plugin.compare), its metrics and its data loaders."""
import gzip
import json
import math
import os

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


def test_missing_files_name_file_and_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*apt-get install dataset-fashion-mnist"):
        data.load_idx_dir(str(tmp_path), "train", package_hint=data.FASHION_MNIST_PACKAGE)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        data.load_npz(str(tmp_path / "nope.npz"))
    with pytest.raises(SystemExit, match="missing data file"):
        compare.main(["--dataset", str(tmp_path), "--quiet", "--out", str(tmp_path / "o")])
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
    for png in ("accuracy_curves.png", "acc_matrix.png", "weight_change.png"):
        assert (out / png).stat().st_size > 1000, png
    assert set(res["files"]["plots"]) == {"accuracy_curves.png", "acc_matrix.png", "weight_change.png"}


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


def test_readme_documents_every_flag():
    """The README's flag table names every option of the command (docs that drift get caught)."""
    readme = open(os.path.join(os.path.dirname(__file__), os.pardir, "README.md"), encoding="utf-8").read()
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

    real, calls = compare.train_run, []

    def dies_on_second_run(args, method, seed, ds, tasks):
        calls.append((method, seed))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(args, method, seed, ds, tasks)

    monkeypatch.setattr(compare, "train_run", dies_on_second_run)
    with pytest.raises(KeyboardInterrupt):
        compare.main(argv + ["--out", out])
    assert os.listdir(os.path.join(out, "runs")) == ["bp_seed0.json"] and not os.path.exists(
        os.path.join(out, "results.json"))

    def counted(args, method, seed, ds, tasks):
        calls.append((method, seed))
        return real(args, method, seed, ds, tasks)

    monkeypatch.setattr(compare, "train_run", counted)
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

    calls.clear()  # another seed and a different thread count: only the new runs train
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
    """The table's main forgetting is ALGORITHMS.md's (per class, averaged); per task stays beside it.
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

    real_import = compare._import
    monkeypatch.setattr(compare, "_import", lambda name, what: Spy if name.endswith(".SBP") else real_import(name, what))
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
