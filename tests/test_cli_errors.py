"""The comparison command refuses every bad value as a usage error before it trains or writes anything.

Each case runs ``python -m torch_plugin.compare`` in a subprocess, as a user would: exit status 2,
argparse's usage line, the flag named, no traceback, and no output folder made.
"""
import json
import os
import subprocess
import sys

import pytest

from torch_plugin import compare

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
BASE = ["--dataset", "digits", "--hidden", "8", "--epochs", "1", "--train-subset", "100", "--quiet", "--no-plots"]

# (flags, the flag the message must name); without its check each would give a traceback, a silent run at
# chance, or a crash after training
BAD = [
    (["--batch-size", "-5"], "--batch-size"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "abc"], "--batch-size"),
    (["--batch-size", "naca=abc"], "--batch-size"),
    (["--batch-size", "naca=0"], "--batch-size"),
    (["--batch-size", "foo=32"], "--batch-size"),
    (["--batch-size", "sbp=32"], "--batch-size"),  # a method not in the study
    (["--hidden", "0"], "--hidden"),
    (["--hidden", "abc"], "--hidden"),
    (["--hidden", ","], "--hidden"),
    (["--seeds", "abc"], "--seeds"),
    (["--seeds", "-1"], "--seeds"),
    (["--seeds", "0,0"], "--seeds"),
    (["--lr", "naca=abc"], "--lr"),
    (["--lr", "naca=-1"], "--lr"),
    (["--lr", "naca=nan"], "--lr"),
    (["--lr", "foo=0.1"], "--lr"),
    (["--lr", "0.1"], "--lr"),
    (["--device", "tpu"], "--device"),
    (["--device", "cuda:99"], "--device"),
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "-3"], "--epochs"),
    (["--stop-at", "1.5"], "--stop-at"),
    (["--stop-at", "nan"], "--stop-at"),
    (["--methods", "sbp", "--sbp-fraction", "1.5"], "--sbp-fraction"),
    (["--methods", "sbp", "--sbp-fraction", "nan"], "--sbp-fraction"),
    (["--methods", "sbp", "--sbp-percentage", "-0.1"], "--sbp-percentage"),
    (["--methods", "sbp", "--sbp-relax-steps", "-1"], "--sbp-relax-steps"),
    (["--clip-grad-norm", "inf"], "--clip-grad-norm"),
    (["--gate", "--gate-delta", "nan"], "--gate-delta"),
    (["--gate-eval-batch-size", "0"], "--gate-eval-batch-size"),
    (["--eval-batch-size", "0"], "--eval-batch-size"),
    (["--threads", "0"], "--threads"),
    (["--train-subset", "0"], "--train-subset"),
    (["--test-subset", "-1"], "--test-subset"),
    (["--model", "snn", "--T", "0"], "--T"),
    (["--model", "snn", "--snn-lens", "-1"], "--snn-lens"),
    (["--model", "conv", "--channels", "0,8"], "--channels"),
    (["--model", "conv", "--conv-kernel", "0"], "--conv-kernel"),
    (["--methods", "bp,bp"], "--methods"),
    (["--methods", "bp,sbp+gate"], "--methods"),  # the gate variant of a method that cannot take the gate
    (["--dataset", "no/such/folder"], "--dataset"),
]


def _run(argv, out):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "torch_plugin.compare", *argv, "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


@pytest.mark.parametrize("flags,flag", BAD, ids=[" ".join(f) for f, _ in BAD])
def test_bad_value_is_a_usage_error(tmp_path, flags, flag):
    out = tmp_path / "out"
    proc = _run(BASE + flags, out)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "usage:" in proc.stderr and flag in proc.stderr.split("error:", 1)[-1], proc.stderr
    assert not out.exists()  # nothing trained, no results or run file written


def test_data_that_do_not_fit_the_model_are_a_usage_error(tmp_path):
    """A flat .npz dataset with --model conv: refused when the data are read, before the output folder exists."""
    import numpy as np

    path = tmp_path / "flat.npz"
    np.savez(path, x=np.random.default_rng(0).random((40, 6)).astype(np.float32), y=np.arange(40) % 4)
    out = tmp_path / "out"
    proc = _run(["--dataset", str(path), "--model", "conv", "--hidden", "8", "--epochs", "1", "--quiet"], out)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--model" in proc.stderr, proc.stderr
    assert not out.exists()
    (tmp_path / "bad").mkdir()  # an IDX folder without its files
    proc = _run(["--dataset", str(tmp_path / "bad"), "--quiet"], out)
    assert proc.returncode == 2 and "missing data file" in proc.stderr and "--dataset" in proc.stderr
    assert not out.exists()


def test_out_that_is_a_file_is_a_usage_error(tmp_path):
    out = tmp_path / "a_file"
    out.write_text("keep")
    proc = _run(BASE, out)
    assert proc.returncode == 2 and "--out" in proc.stderr and "Traceback" not in proc.stderr
    assert out.read_text() == "keep"


def test_cuda_absent_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = _run(BASE + ["--device", "cuda"], tmp_path / "out")
    assert proc.returncode == 2 and "no CUDA device is available" in proc.stderr, proc.stderr


def test_relu_warns_as_the_learner_does():
    """--activation relu with naca: the NACA learner's warning (docs/activations.md), when the command is read."""
    with pytest.warns(UserWarning, match=r"--activation relu: NACA: the hidden rule has no fixed point.*"
                                         r"docs/activations\.md"):
        compare.parse_args(BASE + ["--activation", "relu", "--methods", "bp,naca"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # bp alone trains relu as usual: no warning
        compare.parse_args(BASE + ["--activation", "relu", "--methods", "bp"])


def test_per_method_batch_sizes_train_at_their_size(tmp_path):
    """--batch-size 64,naca=16: naca steps in batches of 16, bp of 64 (steps per epoch tell which)."""
    compare.main(BASE + ["--batch-size", "64,naca=16", "--methods", "bp,naca", "--out", str(tmp_path)])
    res = json.loads((tmp_path / "results.json").read_text())
    runs = {r["method"]: r for r in res["runs"]}
    assert runs["bp"]["batch_size"] == 64 and runs["naca"]["batch_size"] == 16
    assert res["config"]["batch_size"] == {"bp": 64, "naca": 16}


def test_censored_shared_criterion_is_shown_as_censored():
    """A run that never reaches the study's best error shows '> E (not reached)', not epochs + 1 as a number;
    one that reaches some thresholds shows a lower bound."""
    from torch_plugin import metrics

    def run(method, errors, best):
        return {"method": method, "seed": 0, "test_acc_per_epoch": [1 - e for e in errors],
                "final_test_acc": 1 - errors[-1], "epochs": [{}] * len(errors),
                "epochs_to_criterion": metrics.epochs_to_criterion(errors),
                "epochs_to_criterion_shared": metrics.epochs_to_criterion(errors, best),
                "multiplies_per_sample": {"formula": None, "measured": None}, "seconds_per_epoch": 1.0,
                "samples_per_s": 1.0, "peak_memory": {"cpu_rss_bytes": 2**20, "cuda_bytes": None},
                "weight_change": None, "class_incremental": None, "gate_by_class_eval": None}

    runs = [run("bp", [0.3, 0.2, 0.1], 0.01), run("naca", [0.3, 0.05, 0.04], 0.04)]
    summary = compare.summarize(runs, ["bp", "naca"])
    assert summary["bp"]["epochs_to_criterion_shared"]["unreached"] == 1
    table = compare.markdown_table(summary, ci=False, nseeds=1)
    bp_row = next(line for line in table.splitlines() if line.startswith("| bp |"))
    assert "> 3 (not reached)" in bp_row and "4.00" not in bp_row
    naca_row = next(line for line in table.splitlines() if line.startswith("| naca |"))
    partial = metrics.epochs_to_criterion([0.3, 0.05, 0.04], 0.04)
    assert not partial["censored"] and f"{partial['value']:.2f}" in naca_row
    half = [run("bp", [0.3, 0.1, 0.04], 0.03)]  # reaches thresholds 0.04 .. 0.08, not 0.03: a lower bound
    assert half[0]["epochs_to_criterion_shared"]["censored"]
    text = compare.markdown_table(compare.summarize(half, ["bp"]), ci=False, nseeds=1)
    assert "≥ " in text and "censored" in text
