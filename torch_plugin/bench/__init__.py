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
  DIR/depth.png (``torch_plugin/bench/depth.py``).

The package: ``harness`` (the timer of ``torch_plugin.timing``, the bounds, the roofline), one module
per section (``step``, ``ops``, ``snn`` with ``spikingjelly``, ``scaling``, ``depth``), ``report``
(Markdown, JSON, the depth figure) and ``__main__`` (the command line). ``python -m
torch_plugin.bench.pipeline`` is the pipeline benchmark (``pipeline``, ``ranks``).

Times are medians of ``repeats`` runs after warm-up. The runs of what is compared
alternate (NACA and BP steps; an op, its eager composition and its reference), so a
drift of the machine's speed hits all alike. CUDA: events, synchronized; each run is
``inner`` = 10 back-to-back calls, so the host may run ahead of the GPU as in a
training loop, unless a call synchronizes. CPU: a run of a short call repeats it back
to back for about ``timing.Timer.CPU_SAMPLE_S`` (2 ms, at most 100 calls).
Peak memory: CUDA ``max_memory_allocated`` after a reset, minus what was allocated
before the step; CPU: the peak of the running sum of the tensor allocations and
frees the step makes, from the profiler's memory events (the CPU allocator's
bytes, not RSS). ``--quick`` runs tiny sizes with 2 repeats (a smoke test for CI).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from . import depth, ops, scaling, snn, step
from .harness import Timer, machine_meta, measure_bounds

SECTIONS = ("step", "ops", "snn", "scaling", "depth")
_RUNNERS = {"step": step.run, "ops": ops.run, "snn": snn.run, "scaling": scaling.run, "depth": depth.run}


def run(device: str = "cpu", quick: bool = False, sections=SECTIONS, repeats: Optional[int] = None,
        warmup: Optional[int] = None, command: str = "", inner: Optional[int] = None,
        on_section: Optional[Callable[[dict], None]] = None) -> dict:
    """Runs ``sections`` in the order given; ``on_section(res)`` after each one, so a run
    cut short (a time limit on a lent GPU) still leaves the sections it finished.

    Args:
        device (str): "cpu" or "cuda".
        quick (bool): tiny sizes, 2 repeats (a smoke test).
        sections (Sequence[str]): names from ``SECTIONS``, run in this order (a repeat runs once).
        repeats (int | None): timed samples per figure; None: 2 quick, 5 on the CPU, 20 on CUDA.
        warmup (int | None): untimed calls before each figure; None: 1 quick, 2 on the CPU, 5 on CUDA.
        command (str): the command line, recorded in ``meta``.
        inner (int | None): CUDA back-to-back calls per sample; None: 1 quick, else 10.
        on_section (Callable[[dict], None] | None): called with the results so far after each section.

    Returns:
        dict: ``{"meta": ..., <section>: rows, ...}`` (the snn section adds ``snn_notes``).

    Raises:
        ValueError: an unknown section name (before anything is measured).
        SystemExit: ``device="cuda"`` without a CUDA device.
    """
    sections = list(dict.fromkeys(sections))
    unknown = [s for s in sections if s not in _RUNNERS]
    if unknown:
        raise ValueError(f"unknown bench section {unknown[0]!r}; choose from {SECTIONS}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench: --device cuda but no CUDA device is available")
    timer = Timer(dev, repeats or (2 if quick else (5 if dev.type == "cpu" else 20)),
                  warmup if warmup is not None else (1 if quick else (2 if dev.type == "cpu" else 5)),
                  inner if inner is not None else (1 if quick else 10))
    bounds = measure_bounds(dev, timer, quick)
    res: dict = {"meta": machine_meta(device, dev, timer, quick, bounds, command)}
    for section in sections:
        res.update(_RUNNERS[section](dev, timer, quick, bounds))
        if on_section is not None:
            on_section(res)
    return res
