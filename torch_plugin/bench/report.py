"""Rendering of a bench result: Markdown (``to_markdown``, with the depth section's tables from
``depth_markdown``), the JSON and Markdown files a run writes after each section (``write``) and the
depth section's figure (``plot_depth``)."""
from __future__ import annotations

import json
import math
import os
from typing import Optional

from .harness import Timer


def _mb(b):
    return "n/a" if b is None else f"{b / 2 ** 20:.3g}"


def _x(v):
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.2f}x"


def to_markdown(res: dict) -> str:
    """The Markdown report of the sections present in ``res`` (in the numbered order)."""
    m = res["meta"]
    out = [f"## {m['device_name']} ({m['device']})", "",
           f"Command: `{m['command']}`  ",
           f"torch {m['torch']}, Python {m['python']}, {m['threads']} CPU threads, {m['machine']}  ",
           f"Measured bounds (same process): copy bandwidth {m['bounds']['bandwidth'] / 1e9:.1f} GB/s, "
           f"fp32 mm peak {m['bounds']['peak_flops_float32'] / 1e12:.3f} TFLOP/s"
           + (f", bf16 mm peak {m['bounds']['peak_flops_bfloat16'] / 1e12:.1f} TFLOP/s"
              if "peak_flops_bfloat16" in m["bounds"] else "")
           + f" ({m['bounds']['mm_size']}^3 torch.mm; each the fastest of {2 * m['repeats']} runs). Median of "
           f"{m['repeats']} runs after {m['warmup']} warm-up"
           + (f", each run {m['inner']} back-to-back calls" if m.get("inner", 1) > 1 else "")
           + ("" if m["device"] == "cuda" else ", each run of a short call repeated back to back for about "
              f"{Timer.CPU_SAMPLE_S * 1e3:g} ms (at most 100 calls)")
           + "; an op's runs alternate with its baselines' (SpikingJelly rows: median of 3)."]
    if m.get("caveat"):
        out += ["", f"Caveat: {m['caveat']}"]
    if "step" in res:
        out += ["", "### 1. One training step: NACA vs BP (same model, same batch)", "",
                "speedup = BP time / NACA time; memory = BP peak / NACA peak: the peak of the bytes the step allocates "
                "above what was resident before it (model and data; BP starts with grads set to None). "
                + ("CUDA: torch.cuda.max_memory_allocated after a reset." if m["device"] == "cuda" else
                   "CPU: peak of the running sum of tensor allocations/frees from the profiler's memory events "
                   "(allocator bytes, not RSS)."), "",
                "| model | batch | NACA ms | BP ms | speedup | NACA peak MiB | BP peak MiB | memory |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["step"]:
            out.append(f"| {r['model']} | {r['batch']} | {r['naca_ms']:.3f} | {r['bp_ms']:.3f} | {_x(r['speedup'])} | "
                       f"{_mb(r['naca_peak_bytes'])} | {_mb(r['bp_peak_bytes'])} | {_x(r.get('memory_ratio'))} |")
        unchecked = [r for r in res["step"] if "naca_unchecked_ms" in r]
        if unchecked:
            out += ["", "NACA with `check_labels=False` (labels validated up front; the step reads nothing back "
                    "from the GPU, so the host runs ahead as BP's does), same BP time:", "",
                    "| model | batch | NACA unchecked ms | BP ms | speedup |", "|---|---:|---:|---:|---:|"]
            for r in unchecked:
                out.append(f"| {r['model']} | {r['batch']} | {r['naca_unchecked_ms']:.3f} | {r['bp_ms']:.3f} | "
                           f"{_x(r['speedup_unchecked'])} |")
    if "ops" in res:
        out += ["", "### 2. Ops vs the float32 reference, the eager torch composition and the roofline", "",
                "vs X = X time / op time (higher is better). x bound = op time / max(bytes / bandwidth, FLOPs / peak) "
                "(1.00x = at the bound). reference = torch_plugin.reference (autograd for phi' and conv); "
                "eager = closed-form torch ops, in-place addmm_.", "",
                "| op | shape | dtype | op ms | vs reference | vs eager | bound | x bound |",
                "|---|---|---|---:|---:|---:|---|---:|"]
        for r in res["ops"]:
            out.append(f"| {r['op']} | {r['shape']} | {r['dtype']} | {r['op_ms']:.4f} | {_x(r.get('vs_reference'))} | "
                       f"{_x(r.get('vs_eager'))} | {r['bound_kind']} | {_x(r['x_of_bound'])} |")
    if "snn" in res:
        out += ["", "### 3. Spiking: fused multi-step ops vs the reference's loop over T", ""]
        for note in res.get("snn_notes", []):
            out.append(f"- {note}")
        if res["snn"]:
            out += ["", "| op | shape | op ms | reference ms | vs reference | x bound |", "|---|---|---:|---:|---:|---:|"]
            for r in res["snn"]:
                out.append(f"| {r['op']} | {r['shape']} | {r['op_ms']:.3f} | {r['reference_ms']:.3f} | "
                           f"{_x(r['vs_reference'])} | {_x(r.get('x_of_bound'))} |")
    if "scaling" in res:
        out += ["", "### 4. Scaling: MLP 784-hidden-10, time per step", "",
                "| hidden | batch | NACA ms | BP ms | speedup |", "|---|---:|---:|---:|---:|"]
        for r in res["scaling"]:
            out.append(f"| {r['hidden']} | {r['batch']} | {r['naca_ms']:.3f} | {r['bp_ms']:.3f} | {_x(r['speedup'])} |")
    if "depth" in res:
        out += depth_markdown(res["depth"])
    return "\n".join(out) + "\n"


def _mib(b) -> str:
    return "n/a" if not b else f"{b / 2 ** 20:.3g}"


def _ratio(a, b) -> str:
    return "n/a" if not a or not b else f"{a / b:.1f}x"


def depth_markdown(res: dict) -> list:
    """The depth section's Markdown lines (its MLP, targets, conv and spiking tables)."""
    out = ["", "### 5. Depth: peak memory of one step (MiB above the resident model, data and optimizer)", "",
           "NACA SGD: streamed (each layer learns as its forward ends, `learn.stream`); kept: "
           "`NACA(streaming=False)`, every layer's input and output kept until the forward ends; Adam: NACA "
           "with Adam (its `.grad` and moments are resident, not in the peak); BP: autograd + SGD (grads set "
           "to None before the step, so they are in its peak). BP / NACA = BP peak / NACA SGD peak.", "",
           "| width | batch | depth | NACA SGD | kept | NACA Adam | BP | BP / NACA | resident NACA SGD / Adam / BP |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in res["mlp"]:
        out.append(f"| {r['width']} | {r['batch']} | {r['depth']} | {_mib(r['naca_sgd'])} | {_mib(r['naca_kept'])} | "
                   f"{_mib(r['naca_adam'])} | {_mib(r['bp_sgd'])} | {_ratio(r['bp_sgd'], r['naca_sgd'])} | "
                   f"{_mib(r['naca_sgd_resident'])} / {_mib(r['naca_adam_resident'])} / "
                   f"{_mib(r['bp_sgd_resident'])} |")
    if res["targets"]:
        out += ["", "| width | batch | NACA SGD peak, depth 2 -> {d} | target <= 1.25x | BP / NACA at depth {d} | "
                "target >= 8x |".format(d=res["targets"][0]["deepest"]), "|---:|---:|---:|---|---:|---|"]
        for t in res["targets"]:
            out.append(f"| {t['width']} | {t['batch']} | {t['growth_2_to_deepest']:.2f}x | "
                       f"{'met' if t['growth_met'] else 'not met'} | {t['bp_over_naca_deepest']:.1f}x | "
                       f"{'met' if t['vs_bp_met'] else 'not met'} |")
    out += ["", "| model | batch | NACA SGD | kept | NACA Adam | BP | BP / NACA |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["conv"]:
        out.append(f"| {r['model']} | {r['batch']} | {_mib(r['naca_sgd'])} | {_mib(r['naca_kept'])} | "
                   f"{_mib(r['naca_adam'])} | {_mib(r['bp_sgd'])} | {_ratio(r['bp_sgd'], r['naca_sgd'])} |")
    out += ["", "Spiking MLP (BP: through time with surrogate spikes):", "",
            "| width | depth | T | batch | NACA SGD | kept | NACA Adam | BP | BP / NACA |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["snn"]:
        out.append(f"| {r['width']} | {r['depth']} | {r['T']} | {r['batch']} | {_mib(r['naca_sgd'])} | "
                   f"{_mib(r['naca_kept'])} | {_mib(r['naca_adam'])} | {_mib(r['bp_sgd'])} | "
                   f"{_ratio(r['bp_sgd'], r['naca_sgd'])} |")
    return out


def plot_depth(res: dict, path: str) -> Optional[str]:
    """Peak against depth, one panel per width (log scale); None when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    widths = list(dict.fromkeys(r["width"] for r in res["mlp"]))
    fig, axes = plt.subplots(1, len(widths), figsize=(5.5 * len(widths), 4.2), squeeze=False)
    styles = {"naca_sgd": ("NACA SGD (streamed)", "-"), "naca_kept": ("NACA kept", ":"),
              "naca_adam": ("NACA Adam", "--"), "bp_sgd": ("BP SGD", "-.")}
    for ax, w in zip(axes[0], widths):
        for b in dict.fromkeys(r["batch"] for r in res["mlp"]):
            rows = [r for r in res["mlp"] if r["width"] == w and r["batch"] == b]
            for method, (label, ls) in styles.items():
                pts = [(r["depth"], r[method] / 2 ** 20) for r in rows if r[method]]
                if pts:
                    ax.plot(*zip(*pts), ls, marker="o", label=f"{label}, batch {b}")
        ax.set(xscale="log", yscale="log", xlabel="hidden layers", ylabel="step peak (MiB)",
               title=f"MLP {res.get('in_features', '')}-[{w}] x depth-10")
        ax.set_xticks(sorted({r["depth"] for r in res["mlp"] if r["width"] == w}))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Peak memory of one training step ({res.get('device_name', '')})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(res: dict, out: str) -> None:
    """DIR/benchmarks.md, DIR/benchmarks.json and, with a depth section, DIR/depth.png: rewritten
    after each section, so a run cut short keeps what it finished."""
    with open(os.path.join(out, "benchmarks.md"), "w") as f:
        f.write(to_markdown(res))
    with open(os.path.join(out, "benchmarks.json"), "w") as f:
        json.dump(res, f, indent=1)
    if "depth" in res:
        plot_depth({**res["depth"], "device_name": res["meta"]["device_name"]}, os.path.join(out, "depth.png"))
