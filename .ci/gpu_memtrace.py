"""Which allocations make one NACA step's peak on CUDA (MLP 784-1000-10), batch 256 and 1024.

Run by .ci/gpu_check.sh on a GPU machine: BENCHMARKS.md reports NACA's CUDA peak at
batch 1024 as 2 B H above its CPU peak; this prints each allocation of >= 100 kB in
one step with the live total and the Python frames that made it.
"""
import torch

from torch_plugin import models
from torch_plugin.learn import NACA

dev = "cuda"
for B in (256, 1024):
    torch.manual_seed(0)
    m = models.mlp(784, [1000], 10, seed=0).to(dev)
    learner = NACA(m, lr=0.01)
    x = torch.rand(B, 784, device=dev)
    y = torch.randint(0, 10, (B,), device=dev)
    for _ in range(3):
        learner.step(x, y)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.memory._record_memory_history(max_entries=100000, stacks="python")
    learner.step(x, y)
    torch.cuda.synchronize()
    snap = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    print(f"B={B}: peak above resident {(torch.cuda.max_memory_allocated() - base) / 2**20:.2f} MiB")
    live = 0
    for ev in snap["device_traces"][0]:
        if ev["action"] not in ("alloc", "free_requested"):
            continue
        live += ev["size"] if ev["action"] == "alloc" else -ev["size"]
        if ev["size"] >= 100_000:
            frames = [f for f in ev.get("frames", []) if "torch_plugin" in f["filename"]
                      or "torch/nn" in f["filename"]]
            where = "; ".join(f"{f['filename'].split('/')[-1]}:{f['line']} {f['name']}" for f in frames[:4])
            print(f"  {ev['action']:14s} {ev['size'] / 2**20:7.2f} MiB  live {live / 2**20:7.2f}  {where}")
