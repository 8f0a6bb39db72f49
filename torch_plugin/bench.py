"""Benchmarks: NACA against backprop, the pure-PyTorch reference and the hardware bound.

    python -m torch_plugin.bench [--device cpu|cuda] [--quick] [--out DIR]
                                 [--sections step,ops,snn,scaling,depth] [--repeats N]
                                 [--warmup N] [--threads N]

Writes Markdown (stdout and DIR/benchmarks.md) and DIR/benchmarks.json. Every
figure is a ratio against a baseline measured in the same process:

* step: one training step, same model (deep copies of one init), same batch:
  NACA (``learn.NACA``, in-place SGD) vs BP (autograd, cross-entropy, SGD);
  time and peak memory of the step (model and data resident, not counted);
  on CUDA also NACA(check_labels=False), whose step reads nothing back to the host.
* ops: each op vs its float32 reference (``torch_plugin.reference``) and vs the
  eager composition of torch ops a user would write (closed-form phi', in-place
  addmm_), and vs the roofline bound max(bytes / copy bandwidth, FLOPs / mm peak),
  both measured in this process (each the fastest of 2 x repeats runs).
* snn: the fused multi-step LIF and the NACA-SNN / STDP updates (T = 20, 100) vs
  the reference's loop over T; the fused STP scan and homeostatic relaxation
  (T or iters = 20, 100) vs their loops of elementwise torch ops.
* scaling: time per NACA and BP step as the width and the batch grow.
* depth: peak memory of one step as the MLP deepens (and the conv net, the spiking MLP
  at T = 20, 100): NACA streamed, kept (``streaming=False``), with Adam, and BP; also
  DIR/depth.png (``torch_plugin/bench_depth.py``).

Times are medians of ``repeats`` runs after warm-up. The runs of what is compared
alternate (NACA and BP steps; an op, its eager composition and its reference), so a
drift of the machine's speed hits all alike. CUDA: events, synchronized; each run is
``inner`` = 10 back-to-back calls, so the host may run ahead of the GPU as in a
training loop, unless a call synchronizes. CPU: a run of a short call repeats it back
to back for about ``Timer.CPU_SAMPLE_S`` (2 ms, at most 100 calls).
Peak memory: CUDA ``max_memory_allocated`` after a reset, minus what was allocated
before the step; CPU: the peak of the running sum of the tensor allocations and
frees the step makes, from the profiler's memory events (the CPU allocator's
bytes, not RSS). ``--quick`` runs tiny sizes with 2 repeats (a smoke test for CI).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from . import bench_depth, learn, models, ops
from . import reference as ref
from .nn import spiking

SECTIONS = ("step", "ops", "snn", "scaling", "depth")


# ---------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------

class Timer:
    """Median seconds per call. On CUDA each timed sample is ``inner`` back-to-back
    calls between two events (what a training loop sees: the host may run ahead of
    the GPU, except where a call synchronizes), divided by ``inner``."""

    # CPU: a sample runs a short fn back to back until it lasts about this long (at most
    # 100 calls), so that timer resolution and one-off stalls weigh little.
    CPU_SAMPLE_S = 2e-3

    def __init__(self, device: torch.device, repeats: int, warmup: int, inner: int = 1):
        self.device, self.repeats, self.warmup = device, repeats, warmup
        self.cuda = device.type == "cuda"
        self.inner = max(1, int(inner)) if self.cuda else 1

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def _sample(self, fn: Callable[[], object], calls: int = 1) -> float:
        """Seconds per call of one timed sample (CPU: `calls` back-to-back calls)."""
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(self.inner):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / self.inner
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t0) / calls

    def _calls(self, fn: Callable[[], object]) -> int:
        """CPU calls per sample: enough for CPU_SAMPLE_S (one untimed probe call)."""
        if self.cuda:
            return 1
        t = self._sample(fn)
        return int(min(100, max(1, math.ceil(self.CPU_SAMPLE_S / max(t, 1e-9)))))

    def __call__(self, fn: Callable[[], object], repeats: Optional[int] = None) -> float:
        """Median seconds per call of fn."""
        return self.interleaved([fn], repeats)[0]

    def _samples(self, fns: list, n: int) -> list:
        """n samples (seconds per call) of each fn after warm-up, taken in turn (a, b, a, b, ...),
        so that a drift of the machine's speed (other load, clocks) hits every fn alike."""
        for fn in fns:
            for _ in range(self.warmup):
                fn()
        self.sync()
        calls = [self._calls(fn) for fn in fns]
        times = [[] for _ in fns]
        for _ in range(n):
            for fn, k, ts in zip(fns, calls, times):
                ts.append(self._sample(fn, k))
        return times

    def interleaved(self, fns: list, repeats: Optional[int] = None) -> list:
        """Median seconds per call of each fn, their samples taken in turn."""
        return [statistics.median(ts) for ts in self._samples(fns, repeats or self.repeats)]

    def best(self, fn: Callable[[], object], repeats: Optional[int] = None) -> float:
        """Seconds per call of fn's fastest sample: for the bounds, what the machine can do (on a
        shared machine a median would put ops timed in a quieter moment above their bound)."""
        return min(self._samples([fn], repeats or 2 * self.repeats)[0])

    def against(self, op: Callable[[], object], baselines: dict) -> tuple[float, dict]:
        """Median seconds per call of op and of each baseline {name: fn}, sampled in turn."""
        names = list(baselines)
        ts = self.interleaved([op] + [baselines[k] for k in names])
        return ts[0], dict(zip(names, ts[1:]))

    def peak_memory(self, fn: Callable[[], object], before: Optional[Callable[[], object]] = None) -> Optional[int]:
        """Bytes allocated at the peak of one call of fn, above what was allocated before it."""
        if before is not None:
            before()
        if self.cuda:
            self.sync()
            base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            fn()
            self.sync()
            return int(torch.cuda.max_memory_allocated(self.device) - base)
        return cpu_peak_bytes(fn)


def cpu_peak_bytes(fn: Callable[[], object]) -> Optional[int]:
    """Peak of the running sum of CPU tensor allocations during fn (profiler memory events)."""
    try:
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events = []

        def walk(node):
            if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
                events.append((node.start_time_ns, node.extra_fields.alloc_size))
            for child in node.children:
                walk(child)

        for root in prof.profiler.kineto_results.experimental_event_tree():
            walk(root)
    except Exception:  # private profiler API: report "n/a" rather than fail the suite
        return None
    total = peak = 0
    for _, size in sorted(events):
        total += size
        peak = max(peak, total)
    return int(peak)


def measure_bounds(device: torch.device, timer: Timer, quick: bool) -> dict:
    """Device-to-device copy bandwidth (bytes/s) and fp32 (and bf16 on CUDA) mm peak (FLOP/s)."""
    cuda = device.type == "cuda"
    n = (1 << 20) if quick else ((1 << 28) if cuda else (1 << 26))  # floats: 4 MiB, 1 GiB, 256 MiB
    src = torch.rand(n, device=device)
    dst = torch.empty_like(src)
    t = timer.best(lambda: dst.copy_(src))
    out = {"copy_bytes": 2 * 4 * n, "bandwidth": 2 * 4 * n / t}
    del src, dst
    m = 256 if quick else (8192 if cuda else 2048)
    dtypes = [torch.float32] + ([torch.bfloat16] if cuda and not quick else [])
    for dtype in dtypes:
        a = torch.randn(m, m, device=device, dtype=dtype)
        b = torch.randn(m, m, device=device, dtype=dtype)
        t = timer.best(lambda: torch.mm(a, b))
        out[f"peak_flops_{str(dtype).split('.')[-1]}"] = 2 * m ** 3 / t
    out["mm_size"] = m
    out["tf32"] = bool(cuda and torch.backends.cuda.matmul.allow_tf32)
    return out


def roofline(seconds: float, bytes_moved: float, flops: float, bounds: dict, dtype=torch.float32) -> dict:
    """The bound max(bytes / bandwidth, flops / peak) and measured / bound (1.0 = at the bound)."""
    peak = bounds.get(f"peak_flops_{str(dtype).split('.')[-1]}", bounds["peak_flops_float32"])
    t_mem = bytes_moved / bounds["bandwidth"]
    t_flop = flops / peak
    bound = max(t_mem, t_flop)
    return {"bytes": bytes_moved, "flops": flops, "bound_s": bound,
            "bound_kind": "memory" if t_mem >= t_flop else "compute", "x_of_bound": seconds / bound}


# ---------------------------------------------------------------------------
# 1. One training step: NACA vs BP
# ---------------------------------------------------------------------------

def step_pair(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 1e-3,
              check_labels: bool = True):
    """(naca_step, bp_step, bp_before): the two learners on deep copies of one model."""
    m_naca, m_bp = copy.deepcopy(model), copy.deepcopy(model)
    learner = learn.NACA(m_naca, lr=lr, check_labels=check_labels)
    opt = torch.optim.SGD(m_bp.parameters(), lr=lr)

    def naca_step():
        learner.step(x, y)

    def bp_step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m_bp(x), y).backward()
        opt.step()

    def bp_before():  # the step starts without grads (set_to_none), as bp_step does
        opt.zero_grad(set_to_none=True)

    return naca_step, bp_step, bp_before


def step_models(quick: bool):
    if quick:
        return {"mlp 784-32-10": (lambda: models.mlp(784, [32], 10, seed=0), (784,)),
                "conv 4-8-FC32": (lambda: models.conv_net((1, 8, 8), 10, channels=(4, 8), hidden=32, seed=0),
                                  (1, 8, 8))}
    return {"mlp 784-1000-10": (lambda: models.mlp(784, [1000], 10, seed=0), (784,)),
            "conv64-conv128-FC1000 (28x28)": (lambda: models.conv_net((1, 28, 28), 10, seed=0), (1, 28, 28))}


def compare_steps(model, in_shape, batch, device, timer) -> dict:
    g = torch.Generator().manual_seed(batch)
    x = torch.rand(batch, *in_shape, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    naca_step, bp_step, bp_before = step_pair(model.to(device), x, y)
    steps = [naca_step, bp_step]
    if timer.cuda:  # NACA(check_labels=False): no host read of the labels, the step never waits for the GPU
        steps.append(step_pair(model, x, y, check_labels=False)[0])
    t_naca, t_bp, *t_unchecked = timer.interleaved(steps)
    mem_naca = timer.peak_memory(naca_step)
    mem_bp = timer.peak_memory(bp_step, before=bp_before)
    row = {"batch": batch, "naca_ms": 1e3 * t_naca, "bp_ms": 1e3 * t_bp, "speedup": t_bp / t_naca,
           "naca_peak_bytes": mem_naca, "bp_peak_bytes": mem_bp}
    if t_unchecked:
        row.update(naca_unchecked_ms=1e3 * t_unchecked[0], speedup_unchecked=t_bp / t_unchecked[0])
    if mem_naca and mem_bp:
        row["memory_ratio"] = mem_bp / mem_naca
    return row


def bench_step(device, timer, quick) -> list:
    rows = []
    batches = (4, 8) if quick else (32, 256, 1024)
    for name, (make, in_shape) in step_models(quick).items():
        torch.manual_seed(0)
        model = make()
        for batch in batches:
            row = compare_steps(model, in_shape, batch, device, timer)
            rows.append({"model": name, **row})
    return rows


# ---------------------------------------------------------------------------
# 2. Each op vs its reference, the eager torch composition and the roofline
# ---------------------------------------------------------------------------

def _f32(fn):
    """The reference in float32 (it follows its inputs' dtype) without autograd state leaking out."""
    def run():
        with torch.no_grad():
            return fn()
    return run


def eager_act_grad(z, activation):
    if activation == "tanh":
        return 1 - torch.tanh(z) ** 2
    if activation == "sigmoid":
        s = torch.sigmoid(z)
        return s * (1 - s)
    if activation == "relu":
        return (z > 0).to(z.dtype)
    return torch.ones_like(z)


def eager_neuromodulator(labels, ni, slots):
    k = slots[labels]
    return (ni[k] + ni[k + 1]) / 2


def op_cases(device, quick):
    cuda = device.type == "cuda"
    if quick:
        return {"linear": [(8, 16, 12)], "conv": [(2, 4, 8, 6)], "elementwise": [1000]}
    linear = [(256, 784, 1000), (1024, 1024, 1024)] + ([(1024, 4096, 4096), (4096, 8192, 8192)] if cuda else [])
    conv = [(32, 64, 128, 14), (256, 64, 128, 14)] if cuda else [(32, 64, 128, 14)]
    elementwise = [256 * 1000, 1 << 24] if cuda else [256 * 1000, 1 << 22]
    return {"linear": linear, "conv": conv, "elementwise": elementwise}


def bench_ops(device, timer, quick, bounds) -> list:
    rows = []
    cases = op_cases(device, quick)
    n_cls, lam, theta, lr = 10, 0.5, 1.2, 1e-3
    slots = torch.tensor(ref.expectation_slots(n_cls), device=device)
    dtypes = [torch.float32] + ([torch.bfloat16] if device.type == "cuda" and not quick else [])

    def add(op, shape, dtype, t_op, baselines, bytes_moved, flops):
        row = {"op": op, "shape": shape, "dtype": str(dtype).split(".")[-1], "op_ms": 1e3 * t_op}
        for name, t in baselines.items():
            row[f"{name}_ms"] = 1e3 * t
            row[f"vs_{name}"] = t / t_op
        row.update(roofline(t_op, bytes_moved, flops, bounds, dtype))
        rows.append(row)

    for dtype in dtypes:
        es = torch.finfo(dtype).bits // 8
        for b, i, h in cases["linear"]:
            if dtype != torch.float32 and h < 4096:
                continue
            g = torch.Generator().manual_seed(b + i + h)
            w = (0.01 * torch.randn(h, i, generator=g)).to(device, dtype)
            bias = torch.zeros(h, device=device, dtype=dtype)
            x = torch.rand(b, i, generator=g).to(device, dtype)
            z = torch.randn(b, h, generator=g).to(device, dtype)
            y = torch.randint(0, n_cls, (b,), generator=g).to(device)
            ni = torch.rand(2 * n_cls, h, generator=g).to(device, dtype)
            sig = torch.randn(b, h, generator=g).to(device, dtype)
            shape = f"B={b} I={i} H={h}"
            flops = 2 * b * h * i
            # weight and bias read and written, x and z (and the signal) read once.
            base_bytes = es * (2 * h * i + 2 * h + b * i + b * h)

            def eager_naca():
                d = ref.modulation(eager_neuromodulator(y, ni, slots), lam, theta) * eager_act_grad(z, "tanh")
                w.addmm_(d.t(), x, alpha=-lr)
                bias.sub_(lr * d.sum(0))

            def eager_plast():
                d = sig * eager_act_grad(z, "tanh")
                w.addmm_(d.t(), x, alpha=-lr)
                bias.sub_(lr * d.sum(0))

            fns = {"eager": eager_naca}
            if dtype == torch.float32:
                fns["reference"] = _f32(lambda: ref.naca_hidden_update(w, bias, x, z, y, ni, "tanh", lr, lam, theta))
            t_op, base = timer.against(lambda: ops.naca_hidden_update_(w, bias, x, z, y, ni, "tanh", lr, lam, theta),
                                       fns)
            add("naca_hidden_update_", shape, dtype, t_op, base, base_bytes + es * 2 * n_cls * h + 8 * b, flops)

            fns = {"eager": eager_plast}
            if dtype == torch.float32:
                fns["reference"] = _f32(lambda: ref.plasticity_update(w, bias, x, z, sig, "tanh", lr))
            t_op, base = timer.against(lambda: ops.plasticity_update_(w, bias, x, z, sig, "tanh", lr), fns)
            add("plasticity_update_", shape, dtype, t_op, base, base_bytes + es * b * h, flops)

            # The output layer's own-error rule on this layer's output: weight (N, H), pre (B, H).
            w_o = (0.01 * torch.randn(n_cls, h, generator=g)).to(device, dtype)
            b_o = torch.zeros(n_cls, device=device, dtype=dtype)
            logits = torch.randn(b, n_cls, generator=g).to(device, dtype)
            pre_o = torch.tanh(z)

            def eager_output():
                s = torch.sigmoid(logits)
                d = (s - torch.nn.functional.one_hot(y, n_cls).to(dtype)) * s * (1 - s)
                w_o.addmm_(d.t(), pre_o, alpha=-lr)
                b_o.sub_(lr * d.sum(0))

            fns = {"eager": eager_output}
            if dtype == torch.float32:
                fns["reference"] = _f32(lambda: ref.naca_output_update(w_o, b_o, pre_o, logits, y, lr))
            t_op, base = timer.against(lambda: ops.naca_output_update_(w_o, b_o, pre_o, logits, y, lr), fns)
            add("naca_output_update_", f"B={b} H={h} N={n_cls}", dtype, t_op, base,
                es * (2 * n_cls * h + 2 * n_cls + b * h + b * n_cls) + 8 * b, 2 * b * n_cls * h)

        if dtype != torch.float32:
            continue
        for b, cin, cout, hw in cases["conv"]:
            g = torch.Generator().manual_seed(b + cin)
            w = (0.05 * torch.randn(cout, cin, 3, 3, generator=g)).to(device)
            bias = torch.zeros(cout, device=device)
            inp = torch.rand(b, cin, hw, hw, generator=g).to(device)
            z = torch.randn(b, cout, hw, hw, generator=g).to(device)
            y = torch.randint(0, n_cls, (b,), generator=g).to(device)
            ni = torch.rand(2 * n_cls, cout, hw, hw, generator=g).to(device)
            geo = ((1, 1), (1, 1), (1, 1), 1)

            def eager_conv():
                d = ref.modulation(eager_neuromodulator(y, ni, slots), lam, theta) * eager_act_grad(z, "tanh")
                _, dw, db = torch.ops.aten.convolution_backward(
                    d, inp, w, [cout], (1, 1), (1, 1), (1, 1), False, (0, 0), 1, (False, True, True))
                w.sub_(dw, alpha=lr)
                bias.sub_(db, alpha=lr)

            t_op, base = timer.against(
                lambda: ops.naca_conv_update_(w, bias, inp, z, y, ni, *geo, "tanh", lr, lam, theta),
                {"eager": eager_conv,
                 "reference": _f32(lambda: ref.naca_conv_update(w, bias, inp, z, y, ni, *geo, "tanh", lr, lam, theta,
                                                                im2col=False))})
            flops = 2 * b * cout * hw * hw * cin * 9
            nbytes = 4 * (2 * w.numel() + inp.numel() + z.numel() + ni.numel() + 2 * cout) + 8 * b  # + labels
            add("naca_conv_update_", f"B={b} {cin}->{cout} {hw}x{hw} k3", dtype, t_op, base, nbytes, flops)

            sig = torch.randn(b, cout, hw, hw, generator=g).to(device)

            def eager_conv_plast():
                d = sig * eager_act_grad(z, "tanh")
                _, dw, db = torch.ops.aten.convolution_backward(
                    d, inp, w, [cout], (1, 1), (1, 1), (1, 1), False, (0, 0), 1, (False, True, True))
                w.sub_(dw, alpha=lr)
                bias.sub_(db, alpha=lr)

            t_op, base = timer.against(
                lambda: ops.conv_plasticity_update_(w, bias, inp, z, sig, *geo, "tanh", lr),
                {"eager": eager_conv_plast,
                 "reference": _f32(lambda: ref.conv_plasticity_update(w, bias, inp, z, sig, *geo, "tanh", lr,
                                                                      im2col=False))})
            nbytes = 4 * (2 * w.numel() + inp.numel() + 2 * z.numel() + 2 * cout)
            add("conv_plasticity_update_", f"B={b} {cin}->{cout} {hw}x{hw} k3", dtype, t_op, base, nbytes, flops)

        for n in cases["elementwise"]:
            g = torch.Generator().manual_seed(n)
            level = torch.rand(n, generator=g).to(device)
            t_op, base = timer.against(lambda: ops.modulation(level, lam, theta),
                                       {"reference": _f32(lambda: ref.modulation(level, lam, theta))})
            add("modulation", f"n={n}", dtype, t_op, base, 4 * 2 * n, 0)

            b = max(1, n // 1000)
            h = n // b
            ni = torch.rand(2 * n_cls, h, generator=g).to(device)
            y = torch.randint(0, n_cls, (b,), generator=g).to(device)
            t_op, base = timer.against(lambda: ops.neuromodulator(y, ni),
                                       {"eager": lambda: eager_neuromodulator(y, ni, slots),
                                        "reference": _f32(lambda: ref.neuromodulator(y, ni))})
            add("neuromodulator", f"B={b} H={h}", dtype, t_op, base, 4 * (b * h + 2 * n_cls * h) + 8 * b, 0)

        if hasattr(torch.ops.naca, "sbp_update_"):
            h, i, o = (32, 24, 10) if quick else (1000, 784, 10)
            g = torch.Generator().manual_seed(7)
            w_in, dw_in = torch.randn(h, i, generator=g).to(device), torch.randn(h, i, generator=g).to(device)
            w_out, dw_out = torch.randn(o, h, generator=g).to(device), torch.randn(o, h, generator=g).to(device)
            t_op, base = timer.against(lambda: ops.sbp_update_(w_in, w_out, dw_in, dw_out),
                                       {"reference": _f32(lambda: ref.sbp_update(w_in, w_out, dw_in, dw_out))})
            add("sbp_update_", f"I={i} H={h} O={o}", dtype, t_op, base, 4 * 3 * (h * i + o * h), 0)
    return rows


# ---------------------------------------------------------------------------
# 3. Spiking: fused multi-step LIF and the NACA-SNN / STDP updates over T steps
# ---------------------------------------------------------------------------

def bench_snn(device, timer, quick) -> tuple[list, list]:
    notes = []
    have = {name: hasattr(torch.ops.naca, name)
            for name in ("lif_forward", "naca_snn_update_", "naca_snn_chain_update_", "stdp_update_", "stp_forward",
                         "homeostatic_relax")}
    if not all(have.values()):
        notes.append("skipped ops not built: " + ", ".join(k for k, v in have.items() if not v))
    if not have["lif_forward"]:
        return [], notes
    rows = bench_spikingjelly(device, timer, quick, notes) if have["stdp_update_"] else []
    b, i, h = (4, 16, 12) if quick else ((1024, 784, 1000) if device.type == "cuda" else (64, 784, 1000))
    steps = (3,) if quick else (20, 100)
    decay, th, lens, lr = 0.2, 0.5, 0.5, 1e-3
    for t in steps:
        g = torch.Generator().manual_seed(t)
        cur = (0.8 * torch.rand(t, b, h, generator=g)).to(device)
        pre = (torch.rand(t, b, i, generator=g) < 0.2).float().to(device)
        w = (0.1 * torch.rand(h, i, generator=g)).to(device)
        bias = torch.zeros(h, device=device)
        sig = torch.randn(b, h, generator=g).to(device)
        shape = f"T={t} B={b} I={i} H={h}"
        lif = lambda: ops.lif_forward(cur, decay, th)
        lif_ref = _f32(lambda: ref.lif_forward(cur, decay, th))
        t_op, t_ref = timer.interleaved([lif, lif_ref])
        rows.append({"op": "lif_forward", "shape": shape, "op_ms": 1e3 * t_op, "reference_ms": 1e3 * t_ref,
                     "vs_reference": t_ref / t_op, "bytes": 3 * 4 * t * b * h})
        spikes, volts = lif()
        if have["naca_snn_update_"]:
            def fused():
                s, v = ops.lif_forward(cur, decay, th)
                ops.naca_snn_update_(w, bias, pre, v, s, sig, th, lens, lr, True)

            def unfused():
                with torch.no_grad():
                    s, v = ref.lif_forward(cur, decay, th)
                    return ref.naca_snn_update(w, bias, pre, v, s, sig, th, lens, lr, True)

            t_upd, t_upd_ref = timer.interleaved([
                lambda: ops.naca_snn_update_(w, bias, pre, volts, spikes, sig, th, lens, lr, True),
                _f32(lambda: ref.naca_snn_update(w, bias, pre, volts, spikes, sig, th, lens, lr, True))])
            rows.append({"op": "naca_snn_update_", "shape": shape, "op_ms": 1e3 * t_upd,
                         "reference_ms": 1e3 * t_upd_ref, "vs_reference": t_upd_ref / t_upd,
                         "flops": 2 * t * b * h * i})
            t_f, t_u = timer.interleaved([fused, unfused])
            rows.append({"op": "lif_forward + naca_snn_update_", "shape": shape, "op_ms": 1e3 * t_f,
                         "reference_ms": 1e3 * t_u, "vs_reference": t_u / t_f})
        if have["naca_snn_chain_update_"]:  # the authors' class-CL rule; the reference runs autograd
            def chain():
                ops.naca_snn_chain_update_(w, bias, pre, volts, spikes, sig, decay, th, lens, "hard", "sigmoid", lr)

            t_upd, t_upd_ref = timer.interleaved([chain, _f32(lambda: ref.naca_snn_chain_update(
                w, bias, pre, volts, spikes, sig, decay, th, lens, "hard", "sigmoid", lr))])
            rows.append({"op": "naca_snn_chain_update_", "shape": shape, "op_ms": 1e3 * t_upd,
                         "reference_ms": 1e3 * t_upd_ref, "vs_reference": t_upd_ref / t_upd,
                         "flops": 2 * t * b * h * i})
        if have["stdp_update_"]:
            ones = torch.ones((), device=device)
            ws = (0.5 * torch.ones(h, i)).to(device)

            def fused_stdp():
                s, _ = ops.lif_forward(cur, decay, th)
                ops.stdp_update_(ws, pre, s)

            def unfused_stdp():
                with torch.no_grad():
                    s, _ = ref.lif_forward(cur, decay, th)
                    return ref.stdp_update(ws, pre, s, modulator=ones)

            t_upd, t_upd_ref = timer.interleaved([lambda: ops.stdp_update_(ws, pre, spikes),
                                                  _f32(lambda: ref.stdp_update(ws, pre, spikes, modulator=ones))])
            # Hard bounds need only a_plus ltp - a_minus ltd: one (T B)-row GEMM; soft bounds
            # both sums: one GEMM with twice the rows of the weight.
            rows.append({"op": "stdp_update_", "shape": shape, "op_ms": 1e3 * t_upd, "reference_ms": 1e3 * t_upd_ref,
                         "vs_reference": t_upd_ref / t_upd, "flops": 2 * t * b * h * i})
            t_soft, t_soft_ref = timer.interleaved([
                lambda: ops.stdp_update_(ws, pre, spikes, bound="soft"),
                _f32(lambda: ref.stdp_update(ws, pre, spikes, modulator=ones, bound="soft"))])
            rows.append({"op": "stdp_update_ (soft bounds)", "shape": shape, "op_ms": 1e3 * t_soft,
                         "reference_ms": 1e3 * t_soft_ref, "vs_reference": t_soft_ref / t_soft,
                         "flops": 4 * t * b * h * i})
            t_f, t_u = timer.interleaved([fused_stdp, unfused_stdp])
            rows.append({"op": "lif_forward + stdp_update_", "shape": shape, "op_ms": 1e3 * t_f,
                         "reference_ms": 1e3 * t_u, "vs_reference": t_u / t_f})
        if have["stp_forward"]:  # vs the torch loop nn.spiking.stp_forward runs when a gradient is needed
            spk = (torch.rand(t, b, h, generator=g) < 0.2).float().to(device)
            t_op, t_ref = timer.interleaved([lambda: ops.stp_forward(spk), _f32(lambda: spiking._stp_torch(spk))])
            rows.append({"op": "stp_forward", "shape": f"T={t} B={b} N={h}", "op_ms": 1e3 * t_op,
                         "reference_ms": 1e3 * t_ref, "vs_reference": t_ref / t_op, "bytes": 2 * 4 * t * b * h})
        if have["homeostatic_relax"]:  # iters = T steps on a (B, H) state, vs the elementwise torch loop
            state = torch.rand(b, h, generator=g).to(device)
            drive = torch.rand(b, h, generator=g).to(device)
            # The op stops where an element reaches its fixed point (exact; CPU: checked every 4 steps),
            # the torch loop never: at eps 0.5 these states settle after ~40 steps, so the iters=100 row
            # is mostly that early stop; at eps 0.01 nothing settles within 100 steps.
            for eps, what in ((0.5, "eps 0.5"), (0.01, "eps 0.01, no early stop")):
                t_op, t_ref = timer.interleaved([lambda: ops.homeostatic_relax(state, drive, eps, t),
                                                 _f32(lambda: spiking._relax_torch(state, drive, eps, t))])
                rows.append({"op": f"homeostatic_relax ({what})", "shape": f"iters={t} B={b} H={h}",
                             "op_ms": 1e3 * t_op, "reference_ms": 1e3 * t_ref, "vs_reference": t_ref / t_op,
                             "bytes": 3 * 4 * b * h})
    return rows, notes


def bench_spikingjelly(device, timer, quick, notes: list) -> list:
    """lif_forward and lif_forward + stdp_update_ against SpikingJelly's multi-step LIFNode and
    STDPLearner, when ``spikingjelly`` is importable (``pip install spikingjelly``).

    Same neuron: LIFNode(tau=1.25, decay_input=False, v_reset=0, v_threshold=0.5) integrates
    V_t = (1 - 1/tau) V_{t-1} + I_t = 0.2 V_{t-1} + I_t with a hard reset, lif_forward's defaults
    (the share of differing spikes is recorded as ``spike_mismatch``; SpikingJelly fires at
    V >= threshold, lif_forward at V > threshold). The pipeline row times one unsupervised STDP
    step from input spikes: the synapse's forward (a (T B) x I x H GEMM), the LIF scan and the
    STDP weight change (tau_pre = tau_post = 20, no weight dependence), added to the weight.
    SpikingJelly's traces decay by (1 - 1/tau) per step, ours by exp(-1/tau): a timing, not a
    numerical, comparison.
    """
    try:
        import spikingjelly
        from spikingjelly.activation_based import functional, learning, neuron
    except Exception as e:  # noqa: BLE001  (ImportError, or a missing dependency of it)
        notes.append(f"SpikingJelly not importable ({type(e).__name__}: {e}): comparison skipped "
                     "(pip install spikingjelly)")
        return []
    version = getattr(spikingjelly, "__version__", None)
    if version is None:
        from importlib.metadata import version as _v
        version = _v("spikingjelly")
    notes.append(f"SpikingJelly {version}: LIFNode(step_mode='m', tau=1.25, decay_input=False, v_threshold=0.5, "
                 "v_reset=0) and STDPLearner(step_mode='m', tau_pre=tau_post=20), default backend")
    b, i, h = (4, 16, 12) if quick else ((1024, 784, 1000) if device.type == "cuda" else (64, 784, 1000))
    rows = []
    cuda = device.type == "cuda"
    # SpikingJelly's STDP materializes (B, H, I) products (seconds per call on the CPU): 3 timed
    # runs, and T = 20 only on the CPU.
    sj_repeats = None if quick else 3

    def sj_timer(fn):
        for _ in range(2):  # its kernels are compiled or selected at the first calls
            fn()
        return timer(fn, repeats=sj_repeats)

    for t in ((3,) if quick else ((20, 100) if cuda else (20,))):
        g = torch.Generator().manual_seed(100 + t)
        cur = (0.8 * torch.rand(t, b, h, generator=g)).to(device)
        pre = (torch.rand(t, b, i, generator=g) < 0.2).float().to(device)
        shape = f"T={t} B={b} I={i} H={h}"
        sn = neuron.LIFNode(tau=1.25, decay_input=False, v_threshold=0.5, v_reset=0.0, step_mode="m").to(device)

        def sj_lif():
            with torch.no_grad():
                out = sn(cur)
            functional.reset_net(sn)
            return out

        mismatch = (sj_lif() != ops.lif_forward(cur, 0.2, 0.5)[0]).float().mean().item()
        t_op, t_sj = timer(lambda: ops.lif_forward(cur, 0.2, 0.5)), sj_timer(sj_lif)
        rows.append({"op": "lif_forward vs SpikingJelly LIFNode", "shape": shape, "op_ms": 1e3 * t_op,
                     "reference_ms": 1e3 * t_sj, "vs_reference": t_sj / t_op, "spike_mismatch": mismatch})

        w = (0.05 * torch.rand(h, i, generator=g)).to(device)
        fc = torch.nn.Linear(i, h, bias=False).to(device)
        with torch.no_grad():
            fc.weight.copy_(w)
        sn2 = neuron.LIFNode(tau=1.25, decay_input=False, v_threshold=0.5, v_reset=0.0, step_mode="m").to(device)
        stdp = learning.STDPLearner(step_mode="m", synapse=fc, sn=sn2, tau_pre=20.0, tau_post=20.0)

        def sj_step():
            with torch.no_grad():
                sn2(fc(pre))
                fc.weight.add_(stdp.step(on_grad=False), alpha=1e-4)
            functional.reset_net(sn2)
            stdp.reset()

        def ours_step():
            s, _ = ops.lif_forward(torch.nn.functional.linear(pre, w), 0.2, 0.5)
            ops.stdp_update_(w, pre, s, 20.0, 20.0, 1.0, 1.0, 0.0, 1.0, "none", None, 1e-4)

        t_op, t_sj = timer(ours_step), sj_timer(sj_step)
        rows.append({"op": "linear + lif_forward + stdp_update_ vs SpikingJelly LIFNode + STDPLearner",
                     "shape": shape, "op_ms": 1e3 * t_op, "reference_ms": 1e3 * t_sj, "vs_reference": t_sj / t_op})
    return rows


def add_snn_roofline(rows: list, bounds: dict) -> None:
    for row in rows:
        if "bytes" in row or "flops" in row:
            row.update(roofline(row["op_ms"] / 1e3, row.get("bytes", 0), row.get("flops", 0), bounds))


# ---------------------------------------------------------------------------
# 4. Scaling with width and batch
# ---------------------------------------------------------------------------

def scaling_grid(device, quick):
    if quick:
        return [([16], 4), ([32], 8)]
    cuda = device.type == "cuda"
    widths = (256, 1024, 4096, 8192)
    batches = (32, 256, 1024)
    grid = [([w], bt) for w in widths for bt in batches]
    deep = widths if cuda else (256, 1024, 4096)
    grid += [([w, w], bt) for w in deep for bt in ((256, 1024) if cuda else (256,))]
    return grid


def bench_scaling(device, timer, quick) -> list:
    rows = []
    for hidden, batch in scaling_grid(device, quick):
        torch.manual_seed(0)
        model = models.mlp(784, hidden, 10, seed=0)
        row = compare_steps(model, (784,), batch, device, timer)
        row.pop("naca_peak_bytes"), row.pop("bp_peak_bytes"), row.pop("memory_ratio", None)
        rows.append({"hidden": "-".join(map(str, hidden)), **row})
    return rows


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def _mb(b):
    return "n/a" if b is None else f"{b / 2 ** 20:.3g}"


def _x(v):
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.2f}x"


def to_markdown(res: dict) -> str:
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
        out += bench_depth.depth_markdown(res["depth"])
    return "\n".join(out) + "\n"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def run(device: str = "cpu", quick: bool = False, sections=SECTIONS, repeats: Optional[int] = None,
        warmup: Optional[int] = None, command: str = "", inner: Optional[int] = None,
        on_section: Optional[Callable[[dict], None]] = None) -> dict:
    """Runs ``sections`` in the order given; ``on_section(res)`` after each one, so a run
    cut short (a time limit on a lent GPU) still leaves the sections it finished."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench: --device cuda but no CUDA device is available")
    timer = Timer(dev, repeats or (2 if quick else (5 if dev.type == "cpu" else 20)),
                  warmup if warmup is not None else (1 if quick else (2 if dev.type == "cpu" else 5)),
                  inner if inner is not None else (1 if quick else 10))
    bounds = measure_bounds(dev, timer, quick)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    meta = {"device": device, "device_name": device_name(dev) if dev.type == "cuda" else cpu_model(),
            "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores", "quick": quick,
            "repeats": timer.repeats, "warmup": timer.warmup, "inner": timer.inner, "bounds": bounds, "command": command,
            "load_average_1min_at_start": load}
    if dev.type == "cpu" and os.cpu_count() and os.cpu_count() <= 4:
        meta["caveat"] = (f"{os.cpu_count()} CPU cores, possibly shared with other processes "
                          f"(1-min load average {load:.2f} at start): CPU times are noisy.")
    res: dict = {"meta": meta}
    for section in dict.fromkeys(sections):
        if section == "step":
            res["step"] = bench_step(dev, timer, quick)
        elif section == "ops":
            res["ops"] = bench_ops(dev, timer, quick, bounds)
        elif section == "snn":
            rows, notes = bench_snn(dev, timer, quick)
            add_snn_roofline(rows, bounds)
            res["snn"], res["snn_notes"] = rows, notes
        elif section == "scaling":
            res["scaling"] = bench_scaling(dev, timer, quick)
        elif section == "depth":
            res["depth"] = bench_depth.bench_depth(dev, timer, quick)
        else:
            raise ValueError(f"unknown bench section {section!r}; choose from {SECTIONS}")
        if on_section is not None:
            on_section(res)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m torch_plugin.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats (CI smoke test)")
    p.add_argument("--out", default="out/bench", help="folder for benchmarks.md and benchmarks.json")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS))
    p.add_argument("--repeats", type=int, default=None, help="timed runs per figure (median)")
    p.add_argument("--inner", type=int, default=None,
                   help="CUDA: back-to-back calls per timed run (default 10; 1 = single-call latency)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs before each figure")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU intra-op threads)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    command = "python -m torch_plugin.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    os.makedirs(args.out, exist_ok=True)

    def write(res: dict) -> None:   # after each section: a run cut short keeps what it finished
        with open(os.path.join(args.out, "benchmarks.md"), "w") as f:
            f.write(to_markdown(res))
        with open(os.path.join(args.out, "benchmarks.json"), "w") as f:
            json.dump(res, f, indent=1)
        if "depth" in res:
            bench_depth.plot_depth({**res["depth"], "device_name": res["meta"]["device_name"]},
                                   os.path.join(args.out, "depth.png"))

    res = run(args.device, args.quick, sections, args.repeats, args.warmup, command.strip(), args.inner,
              on_section=write)
    sys.stdout.write(to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
