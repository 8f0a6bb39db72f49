"""The example scripts still run end to end (tiny settings; Fashion-MNIST ones skip without the data)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(not os.path.isdir(FASHION), reason="Debian's dataset-fashion-mnist is not installed")


def run(script, *args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *args], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_class_incremental_example_on_digits():
    out = run("class_incremental.py", "--dataset", "digits", "--hidden", "50", "--max-epochs", "1")
    assert "mean accuracy after the last task" in out


@needs_fashion
def test_mlp_naca_vs_bp_example():
    out = run("mlp_naca_vs_bp.py", "--train", "1000", "--epochs", "1", "--hidden", "64")
    assert "NACA" in out and "BP" in out


@needs_fashion
def test_snn_example():
    out = run("snn_fashion_mnist.py", "--train", "300", "--test", "200", "--epochs", "1", "--hidden", "32", "--T", "4")
    assert all(name in out for name in ("NACA", "SBP", "BP"))


def test_sbp_spread_size_example_on_digits():
    """The spread's share of the update grows with lambda_f (about linearly) and shrinks with the width."""
    out = run("sbp_spread_size.py", "--dataset", "digits", "--widths", "8,256", "--models", "ann",
              "--train-batches", "5", "--batches", "2")
    rows = [r.split("|")[1:-1] for r in out.splitlines() if r.startswith("| ANN")]
    size = {(int(r[1]), r[2].strip(), float(r[3])): float(r[4]) for r in rows}  # W_in column
    assert len(size) == 8 and all(v > 0 for v in size.values())
    for stage in ("init", "trained"):
        for w in (8, 256):
            assert 3.5 < size[(w, stage, 1.0)] / size[(w, stage, 0.2)] < 6.5
        assert size[(256, stage, 0.2)] < size[(8, stage, 0.2)]


def test_results_overview_plot(tmp_path):
    """The overview figure reads the committed class-incremental studies (pooling the authors' ANN loop's two
    folders into its 10 class orders) and writes the PNG; a missing study folder is noted and left out."""
    png = tmp_path / "overview.png"
    out = run("plot_results_overview.py", "--out", str(png))
    assert png.stat().st_size > 10000
    assert "authors' ANN loop, 10 class orders [sorted]: BP 73.29, NACA 68.45" in out
    assert "MLP, 10 tasks x 1 class [mixed]: BP 10.00, NACA 10.00" in out
    assert "every method, 10 x 1 (5 epochs/task) [per-class]: NACA + gate 82.63, NACA 10.00, BP + gate 82.55" in out
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    try:
        import plot_results_overview as ov
    finally:
        sys.path.pop(0)
    rows, missing = ov.collect(os.path.join(ROOT, "examples", "results"),
                               ov.STUDIES[:1] + [("nowhere", ["no_such_study"], "sorted")])
    assert missing == ["no_such_study"] and [r["label"] for r in rows] == [ov.STUDIES[0][0]]
    assert {m: len(v) for m, v in rows[0]["methods"].items()} == {"bp": 3, "naca": 3}


def test_snn_rule_update_size_example_on_digits():
    """At initialisation the all-steps update sums about T steps' worth (here T = 20) and the chain
    rule's is below one step's (sigmoid' <= 1/4 times the membrane-decayed steps), in both layers."""
    out = run("snn_rule_update_size.py", "--dataset", "digits", "--hidden", "64", "--train-batches", "3",
              "--batches", "2", "--tasks", "1")
    rows = [[c.strip() for c in r.split("|")[1:-1]] for r in out.splitlines() if r.startswith("| init")]
    assert [r[1] for r in rows] == ["hidden", "output"]
    for r in rows:
        chain, all_steps, last = (float(v) for v in r[2:5])
        assert last > 0 and 0 < chain / last < 1 and 5 < all_steps / last < 40, r


def test_naca_activations_example_runs():
    out = run("naca_activations.py", "--epochs", "1", "--seeds", "0", "--max-depth", "1")
    assert "| sgd 0.0312 |" in out and "relu clipped to [0, 1]" in out and "Timeline of a 4-layer tanh stack" in out


def test_sbp_lr_example_runs():
    out = run("sbp_lr.py", "--datasets", "digits", "--models", "ann", "--lrs", "3", "--seeds", "0")
    assert "## digits, ANN 64-200-10" in out and "| 3 |" in out
