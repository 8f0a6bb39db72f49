"""The ``depth`` section of ``python -m torch_plugin.bench``: the peak memory of one training step as
the network deepens (rendered by ``bench.report.depth_markdown``, plotted by ``bench.report.plot_depth``
as DIR/depth.png).

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

Peak: the bytes a step allocates above what was resident before it (``timing.Timer.peak_memory``:
CUDA ``max_memory_allocated``; CPU the profiler's allocator events), the larger of two steps. ``resident`` is what stays
allocated between steps: parameters, NI buffers, ``.grad`` and optimizer state.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .. import learn, models
from .harness import Timer

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


def bench_depth(device: torch.device, timer: Timer, quick: bool) -> dict:
    """The rows of the MLP, conv and spiking grids, and the depth targets of the MLP rows."""
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


def run(device: torch.device, timer: Timer, quick: bool, bounds: dict) -> dict:
    """{"depth": bench_depth(...)}."""
    return {"depth": bench_depth(device, timer, quick)}
