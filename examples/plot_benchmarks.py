"""Benchmark figures from the benchmarks.json files that `python -m torch_plugin.bench` writes.

    python examples/plot_benchmarks.py --run H200=examples/results/gpu_h200/step_reruns/run3_4b3f033.json \
        --out /tmp/plot_step
    python examples/plot_benchmarks.py --run H200=examples/results/gpu_h200/bench/benchmarks.json \
        --out /tmp/plot_ops

writes OUT/bench_step.png (a NACA step against a BP step: speed and peak-memory ratios,
per model and batch) and OUT/bench_ops.png (each fused op's time as a multiple of its
memory / compute bound, and its speed-up over the pure-PyTorch reference). BENCHMARKS.md
embeds the first command's bench_step.png and the second's bench_ops.png, copied to
examples/results/gpu_h200/. Several --run flags put the runs side by side.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(spec: str) -> tuple[str, dict]:
    label, _, path = spec.partition("=")
    if not path:
        raise SystemExit(f"--run expects LABEL=PATH, got {spec!r}")
    return label, json.loads(Path(path).read_text())


def plot_step(runs, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / len(runs)
    keys = []
    for _, data in runs:
        for row in data.get("step", []):
            key = f"{row['model'].split()[0]} B={row['batch']}"
            if key not in keys:
                keys.append(key)
    for i, (label, data) in enumerate(runs):
        rows = {f"{r['model'].split()[0]} B={r['batch']}": r for r in data.get("step", [])}
        xs = [k for k in range(len(keys)) if keys[k] in rows]
        for ax, field in zip(axes, ("speedup", "memory_ratio")):
            ax.bar([x + i * width for x in xs], [rows[keys[x]].get(field, float("nan")) for x in xs],
                   width, label=label)
    for ax, title in zip(axes, ("step time: BP / NACA", "step peak memory: BP / NACA")):
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(keys))], keys, rotation=30, ha="right")
        ax.set_title(title)
        ax.set_ylabel("x (higher: NACA better)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_ops(runs, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(9 * len(runs), 6.5), squeeze=False)
    for ax, (label, data) in zip(axes[0], runs):
        rows = [r for r in data.get("ops", []) if r.get("x_of_bound")]
        names = [f"{r['op']} {r['shape']} {r['dtype']}" for r in rows]
        ys = range(len(rows))
        ax.barh(list(ys), [r["x_of_bound"] for r in rows], color="tab:blue", label="op time / bound")
        ax.barh([y + 0.4 for y in ys], [r.get("vs_reference") or 0 for r in rows], height=0.4,
                color="tab:orange", label="reference time / op time")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_yticks(list(ys), names, fontsize=6)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_title(f"{label}: fused ops ({data['meta'].get('device_name', data['meta'].get('device'))})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="LABEL=path/to/benchmarks.json")
    parser.add_argument("--out", default="examples/results", help="output folder")
    args = parser.parse_args()
    runs = [load(spec) for spec in args.run]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_step(runs, out / "bench_step.png")
    plot_ops(runs, out / "bench_ops.png")
    print(f"wrote {out / 'bench_step.png'} and {out / 'bench_ops.png'}")


if __name__ == "__main__":
    main()
