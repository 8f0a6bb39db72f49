"""Summaries over seeds (mean, std, standard error) and the results.md table."""
from __future__ import annotations

import numpy as np

SUMMARY_KEYS = {
    "final_test_acc": lambda r: r["final_test_acc"],
    "epochs_to_criterion": lambda r: r["epochs_to_criterion"] and r["epochs_to_criterion"]["value"],
    "epochs_to_criterion_shared":
        lambda r: r["epochs_to_criterion_shared"] and r["epochs_to_criterion_shared"]["value"],
    "epochs_trained": lambda r: len(r["epochs"]),
    "multiplies_formula": lambda r: r["multiplies_per_sample"]["formula"],
    "multiplies_measured": lambda r: r["multiplies_per_sample"]["measured"],
    "seconds_per_epoch": lambda r: r["seconds_per_epoch"],
    "samples_per_s": lambda r: r["samples_per_s"],
    "peak_rss_mib": lambda r: r["peak_memory"]["cpu_rss_bytes"] / 2**20,
    "peak_cuda_mib": lambda r: r["peak_memory"]["cuda_bytes"] and r["peak_memory"]["cuda_bytes"] / 2**20,
    "weight_frac_below_1e-3": lambda r: r["weight_change"] and r["weight_change"]["fraction_below"]["0.001"],
    "mean_acc_after_last": lambda r: r["class_incremental"] and r["class_incremental"]["mean_acc_after_last"],
    "forgetting": lambda r: r["class_incremental"] and r["class_incremental"]["forgetting"],
    "forgetting_per_class": lambda r: r["class_incremental"] and r["class_incremental"]["forgetting_per_class"],
    "bwt": lambda r: r["class_incremental"] and r["class_incremental"]["bwt"],
    "gate_by_class_test_acc": lambda r: r["gate_by_class_eval"] and r["gate_by_class_eval"]["test_acc"],
    "gate_by_class_mean_acc_after_last":
        lambda r: r["gate_by_class_eval"] and r["gate_by_class_eval"].get("mean_acc_after_last"),
    "gate_by_class_forgetting": lambda r: r["gate_by_class_eval"] and r["gate_by_class_eval"].get("forgetting"),
    "gate_by_class_forgetting_per_class":
        lambda r: r["gate_by_class_eval"] and r["gate_by_class_eval"].get("forgetting_per_class"),
    "per_class_test_acc": lambda r: r.get("per_class_eval") and r["per_class_eval"]["test_acc"],
    "per_class_mean_acc_after_last":
        lambda r: r.get("per_class_eval") and r["per_class_eval"].get("mean_acc_after_last"),
    "per_class_forgetting_per_class":
        lambda r: r.get("per_class_eval") and r["per_class_eval"].get("forgetting_per_class"),
    "epochs_to_criterion_authors":
        lambda r: r.get("epochs_to_criterion_authors") and r["epochs_to_criterion_authors"]["value"],
}


def authors_criterion(runs: list[dict], floor: float = 0.05, count: int = 5) -> None:
    """The authors' epochs to criterion (docs/algorithms.md §1.7), set on each run as
    ``epochs_to_criterion_authors``: five thresholds evenly spaced from the best mean test error of any
    method (mean over its seeds, per epoch) to ``floor``; for each threshold, the last epoch whose error is
    still above it (0 if none); averaged over the thresholds."""
    curves = {}
    for r in runs:
        curves.setdefault(r["method"], []).append([1 - a for a in r["test_acc_per_epoch"]])
    best = min(float(np.mean([c[:min(map(len, cs))] for c in cs], axis=0).min()) for cs in curves.values())
    thresholds = [float(t) for t in np.linspace(best, floor, count)]
    for r in runs:
        errors = [1 - a for a in r["test_acc_per_epoch"]]
        last = [max((e + 1 for e, err in enumerate(errors) if err > th + 1e-12), default=0) for th in thresholds]
        r["epochs_to_criterion_authors"] = {"value": float(np.mean(last)), "thresholds": thresholds,
                                            "rule": "authors: last epoch above each threshold"}


CRITERION_KEYS = ("epochs_to_criterion", "epochs_to_criterion_shared")


def summarize(runs: list[dict], methods: list[str]) -> dict:
    """Per method and metric: {mean, std (sample std, 0 for one run), se (std / sqrt(n)), n} over the seeds.

    The epochs-to-criterion entries also count ``censored`` runs (a threshold not reached: the value is
    a lower bound), ``unreached`` runs (no threshold reached) and ``max_epochs`` (the most epochs trained).
    """
    out = {}
    for m in methods:
        rs = [r for r in runs if r["method"] == m]
        out[m] = {}
        for key, get in SUMMARY_KEYS.items():
            vals = [get(r) for r in rs]
            vals = [float(v) for v in vals if v is not None and not isinstance(v, bool)]
            if vals:
                std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
                out[m][key] = {"mean": float(np.mean(vals)), "std": std, "se": std / float(np.sqrt(len(vals))),
                               "n": len(vals)}
        for key in CRITERION_KEYS:
            crit = [r[key] for r in rs if r.get(key)]
            if key in out[m] and crit:
                out[m][key].update(censored=sum(bool(c["censored"]) for c in crit),
                                   unreached=sum(c["reached"] == 0 for c in crit),
                                   max_epochs=max(len(r["test_acc_per_epoch"]) for r in rs))
    return out


def _pm(s: dict, key: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    if key not in s:
        return "-"
    v = s[key]
    if v.get("unreached", 0) == v["n"]:  # no run reached any threshold within its epochs
        return f"> {v['max_epochs']} (not reached)"
    text = fmt.format(v["mean"] * scale)
    if v["n"] > 1 and v["std"] > 0:
        text += f" ± {fmt.format(v['std'] * scale)}"
    if v.get("censored", 0):  # some thresholds not reached: the value is a lower bound
        text = f"≥ {text} ({v['censored']} of {v['n']} run(s) censored)"
    return text


def markdown_table(summary: dict, ci: bool, nseeds: int) -> str:
    pct = lambda label, key: (label, key, 100, "{:.2f}")
    has = lambda key: any(key in s for s in summary.values())
    views = [(name, prefix) for name, prefix in (("with gate, class-sorted test batches", "gate_by_class_"),
                                                 ("each class's test set on its own", "per_class_"))
             if has(prefix + "test_acc")]
    cols = [("method", None, 1, "")]
    if ci:  # accuracy of each view, then forgetting of each view (docs/studies.md: the evaluation views)
        cols += [pct("mean acc after last task (%)", "mean_acc_after_last")]
        cols += [pct(f"{name} (%)", prefix + "mean_acc_after_last") for name, prefix in views]
        cols += [pct("forgetting per class (%)", "forgetting_per_class")]
        cols += [pct(f"forgetting per class, {'class-sorted' if prefix == 'gate_by_class_' else 'per-class view'} (%)",
                     prefix + "forgetting_per_class") for _, prefix in views]
        cols += [pct("forgetting per task (%)", "forgetting"), pct("BWT (%)", "bwt"),
                 ("epochs trained", "epochs_trained", 1, "{:.1f}"),
                 ("hidden |ΔW|<1e-3 (%)", "weight_frac_below_1e-3", 100, "{:.1f}")]
    else:
        cols += [pct("test acc (%)", "final_test_acc")]
        cols += [pct(f"{name} (%)", prefix + "test_acc") for name, prefix in views]
        cols += [("epochs to criterion", "epochs_to_criterion", 1, "{:.2f}"),
                 ("epochs to shared criterion", "epochs_to_criterion_shared", 1, "{:.2f}"),
                 ("epochs to criterion, authors' rule", "epochs_to_criterion_authors", 1, "{:.2f}")]
    cols += [("mult./sample formula", "multiplies_formula", 1, "{:.3g}"),
             ("MAC/sample measured", "multiplies_measured", 1, "{:.3g}"),
             ("s/epoch", "seconds_per_epoch", 1, "{:.2f}"), ("samples/s", "samples_per_s", 1, "{:.0f}"),
             ("peak RSS (MiB)", "peak_rss_mib", 1, "{:.0f}")]
    if any("peak_cuda_mib" in s for s in summary.values()):
        cols.append(("peak CUDA (MiB)", "peak_cuda_mib", 1, "{:.0f}"))
    head = "| " + " | ".join(c[0] for c in cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    lines = [head, sep]
    for m, s in summary.items():
        lines.append("| " + " | ".join([m] + [_pm(s, k, sc, f) for _, k, sc, f in cols[1:]]) + " |")
    note = f"mean ± std over {nseeds} seeds" if nseeds > 1 else "one seed"
    if nseeds > 1:  # the papers' ± is a standard error: give it for the accuracy columns
        acc_cols = [c for c in cols[1:4] if c[2] == 100 and "forgetting" not in c[0]]
        parts = [f"{label}: " + ", ".join(f"{m} {s[key]['se'] * 100:.2f}" for m, s in summary.items() if key in s)
                 for label, key, _, _ in acc_cols]
        note += "; standard errors (std / sqrt(n), the papers' ±) of " + "; ".join(parts)
    if not ci:
        note += ("; epochs to criterion: first epoch at or below each of five thresholds from the run's own best "
                 "error to +5 %, averaged; shared: the same from the study's best error, '≥' where a run missed a "
                 "threshold (counted as its epochs + 1); authors' rule: thresholds from the best mean error of "
                 "any method to 5 %, the last epoch still above each")
    return "\n".join(lines) + f"\n\n({note})\n"

