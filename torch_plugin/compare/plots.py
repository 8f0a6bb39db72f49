"""The study's PNG plots: accuracy curves, accuracy matrices, weight-change histograms."""
from __future__ import annotations

import os

import numpy as np

def _plot_acc_matrix(plt, runs: list[dict], methods: list[str], matrix, title: str, path: str) -> None:
    """Heat map per method of the accuracy matrix (after-task x evaluated task), mean over seeds."""
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.8), squeeze=False)
    for ax, m in zip(axes[0], methods):
        mats = [np.asarray(matrix(r)) for r in runs if r["method"] == m]
        mat = 100 * np.mean(mats, axis=0)
        im = ax.imshow(mat, vmin=0, vmax=100, cmap="viridis")
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                ax.text(j, i, f"{mat[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="w" if mat[i, j] < 60 else "k")
        ax.set_title(f"{m}{title}\naccuracy (%), mean of {len(mats)} seed(s)", fontsize=9)
        ax.set_xlabel("evaluated task")
        ax.set_ylabel("after training task")
        ax.set_xticks(range(mat.shape[1]))
        ax.set_yticks(range(mat.shape[0]))
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_mean_acc_bars(plt, runs: list[dict], methods: list[str], path: str) -> None:
    """Mean accuracy after the last task per method ± standard error over seeds, one bar per evaluation view."""
    views = [("mixed batches", lambda r: r["class_incremental"]["mean_acc_after_last"]),
             ("class-sorted (gate)",
              lambda r: r["gate_by_class_eval"] and r["gate_by_class_eval"]["mean_acc_after_last"]),
             ("each class alone", lambda r: r.get("per_class_eval") and r["per_class_eval"]["mean_acc_after_last"])]
    views = [(n, f) for n, f in views if any(f(r) is not None for r in runs)]
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(methods) * len(views), 4.0))
    width = 0.8 / len(views)
    for k, (name, get) in enumerate(views):
        means, ses, xs = [], [], []
        for i, m in enumerate(methods):
            vals = [100 * get(r) for r in runs if r["method"] == m and get(r) is not None]
            if vals:
                xs.append(i + (k - (len(views) - 1) / 2) * width)
                means.append(np.mean(vals))
                ses.append(np.std(vals, ddof=1) / np.sqrt(len(vals)) if len(vals) > 1 else 0.0)
        ax.bar(xs, means, width, yerr=ses, capsize=3, label=name, color=f"C{k}")
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(methods)
    ax.set_ylabel("mean accuracy after the last task (%)")
    ax.set_title("± standard error over seeds", fontsize=9)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def make_plots(runs: list[dict], methods: list[str], ci: bool, out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in runs:
        curve = [100 * a for a in r["test_acc_per_epoch"]]
        ax.plot(range(1, len(curve) + 1), curve, color=colors[r["method"]], alpha=0.8, marker="o", ms=3,
                label=r["method"] if r["seed"] == min(x["seed"] for x in runs if x["method"] == r["method"]) else None)
        if ci:
            ends = np.cumsum(r["class_incremental"]["epochs_per_task"])[:-1]
            for e in ends:
                ax.axvline(e + 0.5, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("epoch" + (" (all tasks, grey lines: task boundaries of each run)" if ci else ""))
    ax.set_ylabel("test accuracy (%) on all classes")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "accuracy_curves.png"), dpi=120)
    plt.close(fig)
    files.append("accuracy_curves.png")
    if ci:
        _plot_acc_matrix(plt, runs, methods, lambda r: r["class_incremental"]["acc_matrix"],
                         "", os.path.join(out, "acc_matrix.png"))
        files.append("acc_matrix.png")
        gated = [m for m in methods if any(r["method"] == m and r["gate_by_class_eval"] for r in runs)]
        if gated:  # the gate's leak, shown apart: the same models on class-sorted test batches
            _plot_acc_matrix(plt, [r for r in runs if r["gate_by_class_eval"]], gated,
                             lambda r: r["gate_by_class_eval"]["acc_matrix"], " (gate, class-sorted batches)",
                             os.path.join(out, "acc_matrix_class_sorted.png"))
            files.append("acc_matrix_class_sorted.png")
        per_class = [m for m in methods if any(r["method"] == m and r.get("per_class_eval") for r in runs)]
        if per_class:
            _plot_acc_matrix(plt, [r for r in runs if r.get("per_class_eval")], per_class,
                             lambda r: r["per_class_eval"]["acc_matrix"], " (each class's test set alone)",
                             os.path.join(out, "acc_matrix_per_class.png"))
            files.append("acc_matrix_per_class.png")
        _plot_mean_acc_bars(plt, runs, methods, os.path.join(out, "mean_acc_bars.png"))
        files.append("mean_acc_bars.png")
    wc = [r for r in runs if r["weight_change"]]
    if wc:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for m in methods:
            rs = [r["weight_change"] for r in wc if r["method"] == m]
            if not rs:
                continue
            counts = np.sum([w["hist_counts"] for w in rs], axis=0)
            edges = np.asarray(rs[0]["hist_log10_edges"])
            frac = counts / counts.sum()
            label = f"{m} (hidden layer '{rs[0]['layer']}', {len(rs)} run(s))"
            ax.stairs(100 * frac, edges, color=colors[m], label=label, lw=1.5)
        ax.set_xlabel("log10 |ΔW| per synapse of the hidden layer, over all training (clipped to the axis)")
        ax.set_ylabel("synapses (%)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, "weight_change.png"), dpi=120)
        plt.close(fig)
        files.append("weight_change.png")
    return files

