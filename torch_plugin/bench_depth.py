"""The ``depth`` section of ``python -m torch_plugin.bench``: the peak memory of one training step as
the network deepens.

Measured in one process, each model built afresh from one seed, after warm-up steps (the first step
of a NACA learner's input signature keeps its whole forward while it validates it, see
``learn.stream``; Adam's state and ``.grad`` exist after the first step):

* MLP 784-[W] x depth-10, W in (512, 2048), depth in (1, 2, 4, 8, 16), batch 256 and 1024:
  NACA with in-place SGD (streamed), NACA with in-place SGD and ``streaming=False`` (every layer's
  input and output kept until the forward ends: the memory of the forward-then-update algorithm),
  NACA with Adam, and BP (autograd, cross-entropy, SGD, grads set to None before the step);
* the conv net conv64-conv128-FC1000 (28 x 28 inputs), batch 256: the same four;
* the spiking MLP 784-[512] x depth-10 (depth 1, 2, 4), T = 20 and 100, batch 256: the same four
  (BP: through time, surrogate spikes, cross-entropy on the rates).

Peak: the bytes a step allocates above what was resident before it (``bench.Timer.peak_memory``:
CUDA ``max_memory_allocated``; CPU the profiler's allocator events), the larger of two steps. ``resident`` is what stays
allocated between steps: parameters, NI buffers, ``.grad`` and optimizer state.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from . import learn, models

METHODS = ("naca_sgd", "naca_kept", "naca_adam", "bp_sgd")


def grids(quick: bool) -> dict:
    if quick:
        return {"mlp": [(16, d, 8) for d in (1, 2, 4)], "conv": [8], "snn": [(16, 2, 3, 4)],
                "in": 32, "conv_in": (1, 8, 8)}
    return {"mlp": [(w, d, b) for w in (512, 2048) for b in (256, 1024) for d in (1, 2, 4, 8, 16)],
            "conv": [256], "snn": [(512, d, t, 256) for t in (20, 100) for d in (1, 2, 4)],
            "in": 784, "conv_in": (1, 28, 28)}


def resident_bytes(model: torch.nn.Module, opt: Optional[torch.optim.Optimizer]) -> int:
    tensors = {id(t): t for t in model.state_dict(keep_vars=True).values() if isinstance(t, torch.Tensor)}
    tensors.update({id(p.grad): p.grad for p in model.parameters() if p.grad is not None})
    if opt is not None:
        tensors.update({id(v): v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)})
    return sum(t.numel() * t.element_size() for t in tensors.values())


def method_step(method: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 1e-3):
    """(step, before, optimizer) of one method on ``model`` (which it trains)."""
    if method == "bp_sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr)

        def bp():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return bp, (lambda: opt.zero_grad(set_to_none=True)), opt
    opt = torch.optim.Adam(model.parameters(), lr=lr) if method == "naca_adam" else None
    learner = learn.NACA(model, lr=lr, optimizer=opt, streaming=method != "naca_kept")
    return (lambda: learner.step(x, y)), None, opt


def measure(make, x: torch.Tensor, y: torch.Tensor, device, timer, methods=METHODS) -> dict:
    """{method: peak bytes, method + '_resident': bytes} for one model and batch."""
    out = {}
    for method in methods:
        torch.manual_seed(0)
        model = make().to(device)
        step, before, opt = method_step(method, model, x, y)
        for _ in range(2):  # warm-up: the signature validated, optimizer state and grads allocated
            step()
        timer.sync()
        # Two measured steps, the larger kept: the profiler's CPU event tree has been seen to miss a
        # step's allocations (a 32-byte "peak" once in a full run); the runs disagreeing is recorded.
        peaks = [timer.peak_memory(step, before=before) for _ in range(2)]
        known = [p for p in peaks if p is not None]
        out[method] = max(known) if known else None
        if len(set(known)) > 1:
            out.setdefault("disagreeing_runs", {})[method] = peaks
        out[method + "_resident"] = resident_bytes(model, opt)
        del model, step, before, opt  # (freed by reference counting before the next method's model)
    return out


def bench_depth(device: torch.device, timer, quick: bool) -> dict:
    g = grids(quick)
    gen = torch.Generator().manual_seed(0)
    mlp_rows = []
    for width, depth, batch in g["mlp"]:
        x = torch.rand(batch, g["in"], generator=gen).to(device)
        y = torch.randint(0, 10, (batch,), generator=gen).to(device)
        make = lambda: models.mlp(g["in"], [width] * depth, 10, seed=0)  # noqa: E731
        mlp_rows.append({"width": width, "depth": depth, "batch": batch, **measure(make, x, y, device, timer)})
    conv_rows = []
    for batch in g["conv"]:
        x = torch.rand(batch, *g["conv_in"], generator=gen).to(device)
        y = torch.randint(0, 10, (batch,), generator=gen).to(device)
        c = (4, 8) if quick else (64, 128)
        make = lambda: models.conv_net(g["conv_in"], 10, channels=c, hidden=32 if quick else 1000, seed=0)  # noqa
        conv_rows.append({"model": f"conv{c[0]}-conv{c[1]}-FC{32 if quick else 1000}", "batch": batch,
                          **measure(make, x, y, device, timer)})
    snn_rows = []
    for width, depth, T, batch in g["snn"]:
        x = torch.rand(batch, g["in"], generator=gen).to(device)
        y = torch.randint(0, 10, (batch,), generator=gen).to(device)
        make = lambda: models.spiking_mlp(g["in"], [width] * depth, 10, T=T, seed=0)  # noqa: E731
        snn_rows.append({"width": width, "depth": depth, "T": T, "batch": batch,
                         **measure(make, x, y, device, timer)})
    return {"in_features": g["in"], "mlp": mlp_rows, "conv": conv_rows, "snn": snn_rows,
            "targets": depth_targets(mlp_rows)}


def depth_targets(rows: list) -> list:
    """Per (width, batch): NACA (SGD) peak at the deepest / at depth 2 (target <= 1.25) and BP / NACA
    at the deepest (target >= 8)."""
    out = []
    for w, b in dict.fromkeys((r["width"], r["batch"]) for r in rows):
        by = {r["depth"]: r for r in rows if r["width"] == w and r["batch"] == b}
        deep = max(by)
        if 2 not in by or not by[2]["naca_sgd"] or not by[deep]["naca_sgd"] or not by[deep]["bp_sgd"]:
            continue
        growth = by[deep]["naca_sgd"] / by[2]["naca_sgd"]
        vs_bp = by[deep]["bp_sgd"] / by[deep]["naca_sgd"]
        out.append({"width": w, "batch": b, "deepest": deep, "growth_2_to_deepest": growth,
                    "bp_over_naca_deepest": vs_bp, "growth_met": growth <= 1.25, "vs_bp_met": vs_bp >= 8.0})
    return out


def _mib(b) -> str:
    return "n/a" if not b else f"{b / 2 ** 20:.3g}"


def _ratio(a, b) -> str:
    return "n/a" if not a or not b else f"{a / b:.1f}x"


def depth_markdown(res: dict) -> list:
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
