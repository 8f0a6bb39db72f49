"""Timing and peak memory, shared by the benchmarks (``torch_plugin.bench``) and the comparative
studies (``torch_plugin.compare``).

* ``Timer``: the benchmarks' timer. Median (or fastest) seconds per call of short functions, the
  samples of the functions compared taken in turn, and the peak bytes one call allocates.
* ``Stopwatch``: wall-clock seconds of a block (a training epoch), CUDA synchronized at both ends.
* ``cpu_peak_bytes``: peak of the CPU tensor allocations a call makes (the profiler's memory events).
* ``reset_process_peak`` / ``process_peak_memory``: the process's peak RSS and CUDA allocation
  over a whole run (what a study records).
"""
from __future__ import annotations

import math
import resource
import statistics
import time
from typing import Callable, Optional

import torch

__all__ = ["Timer", "Stopwatch", "cpu_peak_bytes", "reset_process_peak", "process_peak_memory"]


class Timer:
    """Median seconds per call. On CUDA each timed sample is ``inner`` back-to-back
    calls between two events (what a training loop sees: the host may run ahead of
    the GPU, except where a call synchronizes), divided by ``inner``.

    Args:
        device (torch.device): where the timed functions run (CUDA: events; else ``perf_counter``).
        repeats (int): timed samples per figure (the median is taken).
        warmup (int): untimed calls of each function before its samples.
        inner (int): CUDA only: back-to-back calls per sample.
    """

    # CPU: a sample runs a short fn back to back until it lasts about this long (at most
    # 100 calls), so that timer resolution and one-off stalls weigh little.
    CPU_SAMPLE_S = 2e-3

    def __init__(self, device: torch.device, repeats: int, warmup: int, inner: int = 1):
        self.device, self.repeats, self.warmup = device, repeats, warmup
        self.cuda = device.type == "cuda"
        self.inner = max(1, int(inner)) if self.cuda else 1

    def sync(self) -> None:
        """Waits for the device's queued work (a no-op on the CPU)."""
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

    def samples(self, fns: list, n: int) -> list:
        """n samples (seconds per call) of each fn after warm-up, taken in turn (a, b, a, b, ...),
        so that a drift of the machine's speed (other load, clocks) hits every fn alike.

        Args:
            fns (list[Callable]): the functions, called without arguments.
            n (int): samples of each.

        Returns:
            list[list[float]]: ``n`` seconds per call for each fn, in the order of ``fns``.
        """
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
        return [statistics.median(ts) for ts in self.samples(fns, repeats or self.repeats)]

    def best(self, fn: Callable[[], object], repeats: Optional[int] = None) -> float:
        """Seconds per call of fn's fastest sample: for the bounds, what the machine can do (on a
        shared machine a median would put ops timed in a quieter moment above their bound)."""
        return self.best_of([fn], repeats)[0]

    def best_of(self, fns: list, repeats: Optional[int] = None) -> list:
        """Each fn's fastest of 2 x repeats samples, the samples taken in turn (``best`` for several)."""
        return [min(ts) for ts in self.samples(fns, repeats or 2 * self.repeats)]

    def against(self, op: Callable[[], object], baselines: dict) -> tuple[float, dict]:
        """Median seconds per call of op and of each baseline {name: fn}, sampled in turn."""
        names = list(baselines)
        ts = self.interleaved([op] + [baselines[k] for k in names])
        return ts[0], dict(zip(names, ts[1:]))

    def peak_memory(self, fn: Callable[[], object], before: Optional[Callable[[], object]] = None) -> Optional[int]:
        """Bytes allocated at the peak of one call of fn, above what was allocated before it.

        CUDA: ``max_memory_allocated`` after a reset, minus what was allocated before; CPU:
        ``cpu_peak_bytes``. ``before`` runs first, untracked (e.g. setting grads to None).
        None where the CPU profiler's events are unavailable.
        """
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
    """Peak of the running sum of CPU tensor allocations during fn (profiler memory events).

    The CPU allocator's bytes, not RSS; None when the profiler's (private) event tree is
    unavailable, so that a report says "n/a" rather than failing.
    """
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


class Stopwatch:
    """Wall-clock seconds of a block, synchronising CUDA before reading the clock.

    Args:
        device (torch.device | str | None): a CUDA device is synchronized at both ends.

    Example::

        with Stopwatch(device) as sw:
            train_one_epoch()
        print(sw.seconds)
    """

    def __init__(self, device=None):
        self.cuda = device is not None and torch.device(device).type == "cuda"
        self.seconds = 0.0

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self._t
        return False


def _read_status(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_process_peak(device=None) -> None:
    """Reset the peak counters: CPU RSS high-water mark (Linux: /proc/self/clear_refs, when
    writable) and torch.cuda's max allocated memory on a CUDA device."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def process_peak_memory(device=None) -> dict:
    """{"cpu_rss_bytes": peak resident set size since the last reset (VmHWM; else the
    process-wide ru_maxrss), "cuda_bytes": torch.cuda.max_memory_allocated or None}."""
    rss = _read_status("VmHWM")
    if rss is None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cuda = None
    if device is not None and torch.device(device).type == "cuda":
        cuda = int(torch.cuda.max_memory_allocated(device))
    return {"cpu_rss_bytes": int(rss), "cuda_bytes": cuda}
