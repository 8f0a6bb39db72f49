"""What every bench section shares: the timer (``torch_plugin.timing.Timer``: interleaved samples,
peak memory), the hardware bounds measured in the same process, the roofline and the machine's
description."""
from __future__ import annotations

import os
import platform
from typing import Callable

import torch

from ..timing import Timer, cpu_peak_bytes

__all__ = ["Timer", "cpu_peak_bytes", "measure_bounds", "roofline", "no_grad", "device_name", "cpu_model",
           "machine_meta"]


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


def no_grad(fn: Callable[[], object]) -> Callable[[], object]:
    """fn run under ``torch.no_grad()``: a reference (which follows its inputs' dtype, float32
    here) timed without autograd state leaking out."""
    def run():
        with torch.no_grad():
            return fn()
    return run


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's (``cpu_model``)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def machine_meta(device: str, dev: torch.device, timer: Timer, quick: bool, bounds: dict, command: str) -> dict:
    """The ``meta`` block of a bench result: device, versions, machine, timer settings, bounds, load."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    meta = {"device": device, "device_name": device_name(dev),
            "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores", "quick": quick,
            "repeats": timer.repeats, "warmup": timer.warmup, "inner": timer.inner, "bounds": bounds,
            "command": command, "load_average_1min_at_start": load}
    if dev.type == "cpu" and os.cpu_count() and os.cpu_count() <= 4:
        meta["caveat"] = (f"{os.cpu_count()} CPU cores, possibly shared with other processes "
                          f"(1-min load average {load:.2f} at start): CPU times are noisy.")
    return meta
