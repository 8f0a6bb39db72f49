"""Forward-only pipeline NACA at scale: per-stage times measured in one process, the schedules simulated
for S = 2 to 16 stages, and a pipeline of 2 gloo ranks measured against one process.

    python -m torch_plugin.bench.pipeline --out out/pipeline           # a few minutes on 2 CPU cores
    python -m torch_plugin.bench.pipeline --out out/pipeline --quick   # tiny sizes (the test's smoke run)

Writes DIR/pipeline.md and DIR/pipeline.json. ``bench_pipeline(timer, quick)`` returns the results and
``pipeline_markdown(res)`` renders them (for a bench section).

Every stage of the balanced split (``distributed.balanced_split``) of the MLP 784-[1000] x L-10 into
S = 1 (the whole model), 2, 4, 8, 16 stages is timed on its own in one process with one thread (one
core per stage), for microbatches of b samples: NACA's forward + local updates (``NACA.step``;
``hidden_only=True`` before the last stage), BP's forward (autograd recording), backward (input and
weight gradients; the last stage's from cross-entropy) and SGD step; and its memory: the bytes autograd
saves for the backward (``saved_tensors_hooks``, parameters excluded) and the peak bytes of NACA's step
(the profiler's allocator events). Each time is the fastest of 2 x repeats samples (as
``timing.Timer.best``: on a shared machine a median measured in a busy moment says more about the other
load than about the code), the samples of all stages at one microbatch size taken in turn. The schedules (``distributed.schedules``) then give the time per batch of B
samples cut into M microbatches and each stage's peak count of stashed microbatches; one process runs
the same stages one after the other (M times the sum of the stage times; the whole model measured on
its own checks that sum).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from .. import models
from ..distributed import balanced_split, schedules
from ..learn import NACA
from ..nn import NACALinear, NACAOutput
from .harness import Timer, cpu_model, cpu_peak_bytes

IN, CLASSES = 784, 10


def grid(quick: bool) -> dict:
    if quick:
        return {"width": 64, "in": 32, "depths": [2, 4], "stages": [2, 4], "batch": 16, "microbatches": [1, 4],
                "ranks": {"depth": 2, "microbatches": [2], "steps": 2, "rounds": 1}}
    return {"width": 1000, "in": IN, "depths": [4, 8, 16], "stages": [2, 4, 8, 16], "batch": 256,
            "microbatches": [1, 2, 4, 8, 16, 32], "ranks": {"depth": 4, "microbatches": [1, 4, 8], "steps": 5, "rounds": 4}}


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for the backward during fn (each storage once, parameters excluded)."""
    seen: dict = {}

    def pack(t):
        if not isinstance(t, nn.Parameter):
            seen[(t.untyped_storage().data_ptr(), t.dtype)] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def _stage(kinds: tuple, g: dict) -> nn.Sequential:
    """A stage of the MLP: 'first' (in -> width), 'hidden' (width -> width), 'output' (width -> classes)."""
    fan_in = {"first": g["in"], "hidden": g["width"], "output": g["width"]}
    return nn.Sequential(*(NACAOutput(g["width"], CLASSES) if k == "output" else NACALinear(fan_in[k], g["width"], CLASSES)
                           for k in kinds))


class _Stage:
    """One stage at microbatch b, ready to time: its NACA step, BP forward, forward + backward and SGD step
    (one module serves both: NACA's lr is tiny), the bytes autograd saves and the peak bytes of NACA's step."""

    def __init__(self, kinds: tuple, g: dict, b: int):
        torch.manual_seed(0)
        fan_in = g["in"] if kinds[0] == "first" else g["width"]
        self.last = kinds[-1] == "output"
        self.y, a = torch.randint(0, CLASSES, (b,)), torch.rand(b, fan_in)
        self.module = _stage(kinds, g)
        learner = NACA(self.module, lr=1e-7, hidden_only=not self.last)
        learner.step(a, self.y)  # the first step of a signature validates (whole forward kept)
        self.naca = lambda: learner.step(a, self.y)
        self.naca_peak = cpu_peak_bytes(self.naca)
        self.xin = a.clone().requires_grad_(kinds[0] != "first")  # the first stage needs no input gradient
        self.grad = torch.randn(b, g["width"])
        self.params = list(self.module.parameters())
        self.forward_backward()  # (creates .grad)
        self.bp_saved = saved_bytes(self.forward)

    def forward(self):
        out = self.module(self.xin)
        return F.cross_entropy(out, self.y) if self.last else out

    def forward_backward(self):
        self.forward().backward(None if self.last else self.grad)

    def sgd(self):
        with torch.no_grad():
            for p in self.params:
                p.sub_(p.grad, alpha=1e-7)


def stage_costs(timer: Timer, compositions: list, g: dict, b: int) -> dict:
    """{kinds: costs} of the stages at microbatch b, each kind of figure sampled in turn across the stages
    (a busy moment of the machine hits them alike): seconds and bytes."""
    stages = [_Stage(kinds, g, b) for kinds in compositions]
    naca = timer.best_of([s.naca for s in stages])
    bp = timer.best_of([f for s in stages for f in (s.forward, s.forward_backward)])
    sgd = timer.best_of([s.sgd for s in stages])
    return {kinds: {"naca": naca[i], "bp_forward": bp[2 * i], "bp_backward": max(bp[2 * i + 1] - bp[2 * i], 0.0),
                    "bp_update": sgd[i], "bp_saved": s.bp_saved, "naca_peak": s.naca_peak}
            for i, (kinds, s) in enumerate(zip(compositions, stages))}


def stage_layers(depth: int, stages: int, g: dict) -> list[tuple]:
    """The layer kinds of each stage of the balanced split of the MLP."""
    model = models.mlp(g["in"], [g["width"]] * depth, CLASSES)
    kinds = ["flatten", "first"] + ["hidden"] * (depth - 1) + ["output"]
    out, start = [], 0
    for n in balanced_split(model, stages):
        out.append(tuple(k for k in kinds[start:start + n] if k != "flatten"))
        start += n
    return out


def configs(g: dict) -> list:
    """(depth, stages, each stage's kinds) for every simulated pipeline, S = 1 (the whole model) first."""
    return [(d, S, stage_layers(d, S, g)) for d in g["depths"] for S in [1] + g["stages"] if S <= d + 1]


def measure_stages(timer: Timer, g: dict) -> dict:
    """{(kinds, b): costs} for every stage of every simulated pipeline."""
    compositions = sorted({kinds for _, _, stages in configs(g) for kinds in stages}, key=lambda k: (len(k), k))
    return {(kinds, b): c for b in sorted({g["batch"] // m for m in g["microbatches"]})
            for kinds, c in stage_costs(timer, compositions, g, b).items()}


def simulate(costs: dict, g: dict) -> list[dict]:
    rows = []
    B = g["batch"]
    for depth, S, layers in configs(g):
        if S == 1:
            continue
        whole = stage_layers(depth, 1, g)[0]
        for M in g["microbatches"]:
            b = B // M
            c = [costs[(kinds, b)] for kinds in layers]
            one = costs[(whole, b)]
            t, f = [x["naca"] for x in c], [x["bp_forward"] for x in c]
            bw, u = [x["bp_backward"] for x in c], [x["bp_update"] for x in c]
            fo, _ = schedules.forward_only(t, M)
            gp, gp_peak = schedules.gpipe(f, bw, M, u)
            ob, ob_peak = schedules.one_f_one_b(f, bw, M, u)
            # one process runs the same stages one after the other (the whole model measured on its own, in
            # another moment of a shared machine, is the check ``*_stages_over_whole``)
            naca_1p, bp_1p = M * sum(t), M * (sum(f) + sum(bw)) + sum(u)
            # a NACA stage holds its streamed step's peak and the output it is still sending
            naca_mem = [(x["naca_peak"] or 0) + b * (CLASSES if k[-1] == "output" else g["width"]) * 4
                        for x, k in zip(c, layers)]
            rows.append({
                "depth": depth, "stages": S, "microbatches": M, "microbatch": b,
                "split": [len(k) for k in layers], "naca_stage_ms": [1e3 * x for x in t],
                "naca_1proc_ms": 1e3 * naca_1p, "naca_pipe_ms": 1e3 * fo, "naca_speedup": naca_1p / fo,
                "naca_util": schedules.utilization(t, M, fo),
                "bp_1proc_ms": 1e3 * bp_1p, "gpipe_ms": 1e3 * gp, "gpipe_speedup": bp_1p / gp,
                "gpipe_util": schedules.utilization([a + c_ for a, c_ in zip(f, bw)], M, gp),
                "onef1b_ms": 1e3 * ob, "onef1b_speedup": bp_1p / ob,
                "naca_mem_mb": max(naca_mem) / 2 ** 20,
                "gpipe_mem_mb": max(p * x["bp_saved"] for p, x in zip(gp_peak, c)) / 2 ** 20,
                "onef1b_mem_mb": max(p * x["bp_saved"] for p, x in zip(ob_peak, c)) / 2 ** 20,
                "naca_stages_over_whole": sum(t) / one["naca"],
                "bp_stages_over_whole": (sum(f) + sum(bw)) / (one["bp_forward"] + one["bp_backward"]),
            })
    return rows


def bench_pipeline(timer: Timer, quick: bool, ranks: bool = True) -> dict:
    g = grid(quick)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per stage, as the ranks
    try:
        costs = measure_stages(timer, g)
    finally:
        torch.set_num_threads(threads)
    res = {"grid": g, "stages": [{"kinds": list(k), "microbatch": b, **v} for (k, b), v in costs.items()],
           "simulation": simulate(costs, g)}
    if ranks:
        from .ranks import measure_ranks

        res["ranks"] = measure_ranks(g)
    return res


def _f(v, digits=2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _mib(v) -> str:
    return "-" if v is None else f"{v / 2 ** 20:.2f}"


def pipeline_markdown(res: dict) -> str:
    g, out = res["grid"], []
    out.append(f"The whole MLP {g['in']}-[{g['width']}] x L-{CLASSES} in one process, one thread (ms; MiB):\n")
    out.append("| depth L | microbatch | NACA fwd+update | BP forward | BP backward | backward / forward | "
               "BP saved MiB | NACA step peak MiB | sum of the S stages / whole, NACA (BP), over S |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    wholes = {tuple(stage_layers(d, 1, g)[0]): d for d in g["depths"]}
    for r in res["stages"]:
        depth = wholes.get(tuple(r["kinds"]))
        if depth is None:
            continue
        sims = [x for x in res["simulation"] if x["depth"] == depth and x["microbatch"] == r["microbatch"]]
        n, b_ = [x["naca_stages_over_whole"] for x in sims], [x["bp_stages_over_whole"] for x in sims]
        check = f"{min(n):.2f}-{max(n):.2f} ({min(b_):.2f}-{max(b_):.2f})" if sims else "-"
        out.append(f"| {depth} | {r['microbatch']} | {_f(1e3 * r['naca'], 1)} | {_f(1e3 * r['bp_forward'], 1)} | "
                   f"{_f(1e3 * r['bp_backward'], 1)} | {_f(r['bp_backward'] / max(r['bp_forward'], 1e-12))} | "
                   f"{_f(r['bp_saved'] / 2 ** 20)} | {_mib(r['naca_peak'])} | {check} |")
    for depth in g["depths"]:
        out.append(f"\nSimulated, L = {depth} (batch {g['batch']}; ms per batch; speedup over one process on the "
                   f"same microbatches; activation MiB of the fullest stage):\n")
        out.append("| stages S | microbatches M | NACA 1 process | NACA pipeline | speedup | utilization | "
                   "BP 1 process | GPipe | speedup | 1F1B | speedup | NACA pipeline / 1F1B | MiB NACA | MiB GPipe "
                   "| MiB 1F1B |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in (r for r in res["simulation"] if r["depth"] == depth):
            out.append(f"| {r['stages']} | {r['microbatches']} | {_f(r['naca_1proc_ms'], 1)} | "
                       f"{_f(r['naca_pipe_ms'], 1)} | {_f(r['naca_speedup'])} | {_f(r['naca_util'])} | "
                       f"{_f(r['bp_1proc_ms'], 1)} | {_f(r['gpipe_ms'], 1)} | {_f(r['gpipe_speedup'])} | "
                       f"{_f(r['onef1b_ms'], 1)} | {_f(r['onef1b_speedup'])} | "
                       f"{_f(r['naca_pipe_ms'] / r['onef1b_ms'])} | {_f(r['naca_mem_mb'])} | "
                       f"{_f(r['gpipe_mem_mb'])} | {_f(r['onef1b_mem_mb'])} |")
    if "ranks" in res:
        out.append(ranks_markdown(res))
    return "\n".join(out) + "\n"


def ranks_markdown(res: dict) -> str:
    k = res["ranks"]
    sim = {(r["depth"], r["stages"], r["microbatches"]): r for r in res["simulation"]}
    out = [f"\nMeasured: 2 gloo ranks x 1 thread against one process, MLP depth {k['depth']}, batch {k['batch']}, "
           f"split {k['split']} (ms per batch, fastest / median step; samples/s of the fastest):\n",
           "| M | microbatch | 1 process, 1 thread | 1 process, 2 threads | 1 process, whole batch | pipeline | "
           "pipeline, atomic=False | speedup over 1 process, 1 thread | over 2 threads | simulated pipeline | "
           "load (1 min) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in k["rows"]:
        s = sim.get((k["depth"], 2, r["microbatches"]))

        def cell(name):
            t, m = r[name], r[name + "_median"]
            return f"{1e3 * t:.1f} / {1e3 * m:.1f} ({k['batch'] / t:.0f}/s)"
        out.append(f"| {r['microbatches']} | {r['microbatch']} | {cell('one_1thread')} | {cell('one_2threads')} | "
                   f"{cell('one_whole_batch')} | {cell('pipe_atomic')} | {cell('pipe')} | "
                   f"{r['one_1thread'] / r['pipe_atomic']:.2f}x | {r['one_2threads'] / r['pipe_atomic']:.2f}x | "
                   f"{'-' if s is None else _f(s['naca_pipe_ms'], 1)} | {r['load_1min']:.1f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m torch_plugin.bench.pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="out/pipeline", help="folder for pipeline.md and pipeline.json")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats")
    p.add_argument("--repeats", type=int, default=None,
                   help="a figure is the fastest of 2 x repeats timed samples (default 10)")
    p.add_argument("--no-ranks", action="store_true", help="skip the 2-rank measurement")
    args = p.parse_args(argv)
    timer = Timer(torch.device("cpu"), args.repeats or (2 if args.quick else 10), 1 if args.quick else 2)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    res = bench_pipeline(timer, args.quick, ranks=not args.no_ranks)
    res["meta"] = {"command": "python -m torch_plugin.bench.pipeline " + " ".join(argv if argv is not None
                                                                                   else sys.argv[1:]),
                   "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                   "load_1min_start": load, "load_1min_end": os.getloadavg()[0],
                   "seconds": time.perf_counter() - start}
    os.makedirs(args.out, exist_ok=True)
    meta = res["meta"]
    head = (f"`{meta['command']}` on {meta['cpu']} ({meta['cores']} cores, shared), torch {meta['torch']}, "
            f"1-min load average {meta['load_1min_start']:.1f} at start, {meta['load_1min_end']:.1f} at the end, "
            f"{meta['seconds']:.0f} s.\n\n")
    with open(os.path.join(args.out, "pipeline.md"), "w") as f:
        f.write(head + pipeline_markdown(res))
    with open(os.path.join(args.out, "pipeline.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(head + pipeline_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
