"""One figure for the committed class-incremental studies: the mean accuracy over all classes after the
last task, per study and method (mean +- sample std over seeds, each seed a dot), read from the
results.json files under examples/results/.

    python examples/plot_results_overview.py                  # writes examples/results/overview.png
    python examples/plot_results_overview.py --results DIR --out overview.png

Left panel: studies without the input gate, evaluated on mixed test batches. Right panel: studies with
the gate, evaluated the authors' way (class-sorted test batches, through which the gate sees the class;
docs/studies.md, the evaluation views). Bottom panel: the studies of every method in one study (NACA and
BP with and without the gate, the continual-learning baselines), each class's test set on its own. A study may pool several folders run with the same settings
and other seeds (the authors' ANN loop: seeds 0-2 and 3-9). Folders that are missing are left out with
a note, so the script also runs on a checkout that holds only some of them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (label, folders, metric): metric "mixed" reads run["class_incremental"]["mean_acc_after_last"],
# "sorted" reads run["gate_by_class_eval"]["mean_acc_after_last"], "per-class" run["per_class_eval"][...].
STUDIES = [
    ("MLP, 5 tasks x 2 classes", ["class_incremental_fashion"], "mixed"),
    ("MLP, 10 tasks x 1 class", ["class_incremental_fashion_1class"], "mixed"),
    ("MLP, 5 x 2, no biases", ["class_incremental_fashion_nobias"], "mixed"),
    ("SBP MLP, 5 x 2", ["class_incremental_fashion_sbp"], "mixed"),
    ("MLP + gate, 5 x 2", ["class_incremental_fashion_gate"], "sorted"),
    ("MLP + gate, 10 x 1", ["class_incremental_fashion_1class_gate"], "sorted"),
    ("MLP + gate, 10 x 1, no biases", ["class_incremental_fashion_1class_gate_nobias"], "sorted"),
    ("authors' ANN loop, 10 class orders", ["class_incremental_fashion_1class_gate_authors_loop",
                                             "class_incremental_fashion_1class_gate_authors_loop_seeds3-9"], "sorted"),
    ("SNN + gate, 10 x 1 (10k samples)", ["class_incremental_fashion_snn_1class_gate"], "sorted"),
    ("authors' SNN (10k samples)", ["class_incremental_fashion_snn_1class_gate_authors"], "sorted"),
    ("authors' SNN, output bias (10k)", ["class_incremental_fashion_snn_1class_gate_authors_bias"], "sorted"),
    ("authors' SNN, batch 256 (all 60k)", ["class_incremental_fashion_snn_1class_gate_authors_full"], "sorted"),
    ("authors' SNN loop (10k samples)", ["class_incremental_fashion_snn_1class_gate_authors_loop"], "sorted"),
    ("authors' SNN loop (all 60k)", ["class_incremental_fashion_snn_1class_gate_authors_loop_full"], "sorted"),
    ("every method, 5 x 2 (5 epochs/task)", ["class_incremental_fashion_baselines_2class"], "per-class"),
    ("every method, 10 x 1 (5 epochs/task)", ["class_incremental_fashion_baselines_1class"], "per-class"),
]
METHOD_STYLE = {  # method -> (label, colour)
    "bp": ("BP", "tab:blue"), "bp-surrogate": ("BPTT (surrogate)", "tab:cyan"), "naca": ("NACA", "tab:red"),
    "sbp": ("SBP", "tab:green"), "sbp-local": ("SBP without spread", "tab:olive"),
    "bp+gate": ("BP + gate", "navy"), "naca+gate": ("NACA + gate", "darkred"),
    "ewc": ("EWC", "tab:purple"), "ewc-online": ("online EWC", "plum"), "si": ("SI", "tab:brown"),
    "lwf": ("LwF", "tab:pink"), "replay": ("replay", "tab:gray"),
}


def run_metric(run: dict, metric: str):
    block = {"mixed": run.get("class_incremental"), "sorted": run.get("gate_by_class_eval"),
             "per-class": run.get("per_class_eval")}[metric]
    return None if not block else block.get("mean_acc_after_last")


def collect(results_dir: str, studies=STUDIES) -> tuple[list[dict], list[str]]:
    """Per study: {label, metric, folders, methods: {method: [accuracy per run]}}; plus the folders not found."""
    rows, missing = [], []
    for label, folders, metric in studies:
        per_method: dict[str, list[float]] = {}
        found = []
        for folder in folders:
            path = os.path.join(results_dir, folder, "results.json")
            if not os.path.exists(path):
                missing.append(folder)
                continue
            with open(path) as f:
                res = json.load(f)
            if res["config"]["scenario"] != "class-incremental":
                raise ValueError(f"{path}: not a class-incremental study")
            found.append(folder)
            for run in res["runs"]:
                v = run_metric(run, metric)
                if v is None:
                    raise ValueError(f"{path}: run {run['method']} seed {run['seed']} has no {metric} accuracy")
                per_method.setdefault(run["method"], []).append(float(v))
        if found:
            rows.append({"label": label, "metric": metric, "folders": found, "methods": per_method})
    return rows, missing


def plot(rows: list[dict], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("mixed", "without the gate: mixed test batches"),
              ("sorted", "with the gate: class-sorted test batches (the authors' protocol)"),
              ("per-class", "every method in one study: each class's test set alone (the authors' evaluation)")]
    panels = [pm for pm in panels if any(r["metric"] == pm[0] for r in rows)]
    heights = [max(1, sum(len(r["methods"]) for r in rows if r["metric"] == m)) for m, _ in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.2 + 0.32 * sum(heights) + 1.5),
                             gridspec_kw={"height_ratios": heights})
    seen_methods = set()
    for ax, (metric, title) in zip(axes, panels):
        y, ticks, labels = 0.0, [], []
        for r in [r for r in rows if r["metric"] == metric][::-1]:
            methods = [m for m in METHOD_STYLE if m in r["methods"]][::-1]
            start = y
            for m in methods:
                v = 100 * np.asarray(r["methods"][m])
                name, colour = METHOD_STYLE[m]
                std = v.std(ddof=1) if len(v) > 1 else 0.0
                ax.barh(y, v.mean(), height=0.8, color=colour, alpha=0.75, xerr=std, capsize=2)
                ax.plot(v, np.full(len(v), y), "k.", ms=3)
                ax.text(max(v.max(), v.mean() + std) + 1, y, f"{v.mean():.1f} (n={len(v)})", va="center", fontsize=7)
                seen_methods.add(m)
                y += 1
            ticks.append((start + y - 1) / 2)
            labels.append(r["label"])
            y += 0.6
        ax.set_yticks(ticks, labels, fontsize=8)
        ax.set_xlim(0, 100)
        ax.axvline(10, color="grey", lw=0.8, ls=":")  # one class of ten: what a network that kept only its last task scores
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("mean accuracy over all 10 classes after the last task (%), Fashion-MNIST")
    from matplotlib.patches import Patch

    handles = [Patch(color=c, alpha=0.75, label=n) for m, (n, c) in METHOD_STYLE.items() if m in seen_methods]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.suptitle("Class-incremental studies (examples/results): mean +- std over seeds, dots = seeds", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.98))
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=os.path.join(ROOT, "examples", "results"), help="folder of study folders")
    p.add_argument("--out", default=None, help="PNG path (default RESULTS/overview.png)")
    a = p.parse_args(argv)
    rows, missing = collect(a.results)
    if not rows:
        raise SystemExit(f"no class-incremental study found under {a.results}")
    for folder in missing:
        print(f"note: {folder} not found, left out", file=sys.stderr)
    out = a.out or os.path.join(a.results, "overview.png")
    plot(rows, out)
    for r in rows:
        cells = ", ".join(f"{METHOD_STYLE[m][0]} {100 * np.mean(v):.2f}" for m, v in r["methods"].items())
        print(f"{r['label']} [{r['metric']}]: {cells}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
