"""Which allocations make one NACA step's peak on CUDA (MLP 784-1000-10), batch 256 and 1024.

Run by .ci/gpu_check.sh on a GPU machine: BENCHMARKS.md reports NACA's CUDA peak at
batch 1024 as 2 B H above its CPU peak; this prints each allocation of >= 100 kB in
one step with the live total and the Python frames that made it.
"""
import torch

from torch_plugin import models, ops
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

# A check of a NACA step's CUDA memory: a column sum over B >= ~1024 rows stages a B x H x 8-byte
# buffer, which is why the CUDA bias update is one cuBLAS gemv. Prints the op's GEMM alone in each
# BLAS library, the step's peak per batch, and the op's large allocations with their C++ frames
# (only the delta is expected).


def peak_mib(fn):
    fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


H, I, lr = 1000, 784, 0.01
W = torch.randn(H, I, device=dev)
blas0 = torch.backends.cuda.preferred_blas_library()
for B in (256, 512, 1024, 2048):
    pre, delta = torch.rand(B, I, device=dev), torch.randn(B, H, device=dev)
    row = []
    for lib in ("cublas", "cublaslt"):
        torch.backends.cuda.preferred_blas_library(lib)
        row.append(f"{lib} addmm_ {peak_mib(lambda: W.addmm_(delta.t(), pre, alpha=-lr)):.2f}")
        row.append(f"mm {peak_mib(lambda: torch.mm(delta.t(), pre)):.2f}")
    torch.backends.cuda.preferred_blas_library(blas0)
    m = models.mlp(784, [1000], 10, seed=0).to(dev)
    learner = NACA(m, lr=0.01)
    y = torch.randint(0, 10, (B,), device=dev)
    row.append(f"NACA step {peak_mib(lambda: learner.step(pre, y)):.2f}")
    print(f"B={B} peak MiB above resident (B H 4 bytes = {B * H * 4 / 2**20:.2f}): " + ", ".join(row))

B = 1024
pre, y = torch.rand(B, I, device=dev), torch.randint(0, 10, (B,), device=dev)
h = torch.tanh(torch.randn(B, H, device=dev))
ni = torch.randn(20, H, device=dev)
call = lambda: ops.naca_hidden_update_(W, None, pre, h, y, ni, "tanh", lr, from_output=True)
call()
torch.cuda.synchronize()
torch.cuda.memory._record_memory_history(max_entries=100000, stacks="all")
call()
torch.cuda.synchronize()
snap = torch.cuda.memory._snapshot()
torch.cuda.memory._record_memory_history(enabled=None)
print(f"naca_hidden_update_ alone, B={B}, blas {blas0}: allocations >= 100 kB")
for ev in snap["device_traces"][0]:
    if ev["action"] == "alloc" and ev["size"] >= 100_000:
        names = [f["name"] for f in ev.get("frames", [])]
        keep = [n for n in names if any(k in n.lower() for k in ("blas", "addmm", "naca", "gemm", "mm_", "matmul"))]
        print(f"  {ev['size'] / 2**20:7.2f} MiB  " + " <- ".join(k[:90] for k in keep[:8]))
