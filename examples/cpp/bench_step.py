"""One training step of the MLP 784-1000-10 on CPU: the C++ NACA step, the Python NACA step and the C++ BP
step, measured in one run.

The C++ steps come from the ``bench_step`` program of this folder (naca::learn::NACA with in-place SGD, and
backprop through torch::autograd with torch::optim::SGD); the Python step is torch_plugin.learn.NACA on
torch_plugin.models.mlp with the same seed, the same lr and the same batch shapes, timed in this process the
same way (5 warm-up steps, then the median of ``--steps`` timed steps). The two alternate round by round, so
a change in the machine's load reaches both sides; the table gives each time's median over the rounds and
its range, and the median and range of each round's ratio::

    cmake -S examples/cpp -B build-examples -DCMAKE_PREFIX_PATH="<prefix>;<torch's cmake_prefix_path>"
    cmake --build build-examples
    PYTHONPATH=$PWD python examples/cpp/bench_step.py --bench build-examples/bench_step --rounds 7 [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import torch

BATCHES = (32, 256)
LINE = re.compile(r"batch (\d+)\s+C\+\+ NACA step ([0-9.e+-]+) ms\s+C\+\+ BP step ([0-9.e+-]+) ms")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def cpp_round(bench: str, steps: int) -> dict[int, tuple[float, float]]:
    """One run of the bench_step program, with this process's thread count: {batch: (C++ NACA ms, C++ BP ms)}.

    Raises:
        RuntimeError: the program failed or printed no line for a batch size.
    """
    proc = subprocess.run([bench, "--steps", str(steps), "--threads", str(torch.get_num_threads())],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{bench} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    found = {int(m.group(1)): (float(m.group(2)), float(m.group(3))) for m in LINE.finditer(proc.stdout)}
    missing = [b for b in BATCHES if b not in found]
    if missing:
        raise RuntimeError(f"{bench} printed no line for batch {missing}:\n{proc.stdout}")
    return found


def python_step_ms(batch: int, steps: int) -> float:
    """Median ms of one torch_plugin.learn.NACA step (in-place SGD, lr 1e-3) of the MLP 784-1000-10 on a
    fixed batch: x ``Tensor[batch, 784]`` in [0, 1], y ``Tensor[batch]`` labels; 5 warm-up steps first."""
    from torch_plugin import models
    from torch_plugin.learn import NACA

    torch.manual_seed(0)
    x = torch.rand(batch, 784)
    y = torch.randint(0, 10, (batch,))
    model = models.mlp(784, [1000], 10, seed=0)
    learner = NACA(model, lr=1e-3)
    for _ in range(5):
        learner.step(x, y)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        learner.step(x, y)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def fmt(values: list[float]) -> str:
    """'median (min-max)' in ms."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def ratio(values: list[float]) -> str:
    """'median x (min-max)' of per-round ratios."""
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bench", default="build-examples/bench_step", help="the bench_step program")
    p.add_argument("--rounds", type=positive_int, default=5, help="rounds: one C++ run, then the Python steps")
    p.add_argument("--steps", type=positive_int, default=50, help="timed steps per batch size and round")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch.set_num_threads for both sides (default: torch's)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if not (os.path.isfile(a.bench) and os.access(a.bench, os.X_OK)):
        p.error(f"argument --bench: expected the bench_step program (build examples/cpp), got {a.bench!r}, "
                f"which is not an executable file")
    cpp_naca = {b: [] for b in BATCHES}
    cpp_bp = {b: [] for b in BATCHES}
    py_naca = {b: [] for b in BATCHES}
    for r in range(a.rounds):
        for b, (naca_ms, bp_ms) in cpp_round(a.bench, a.steps).items():
            if b in cpp_naca:
                cpp_naca[b].append(naca_ms)
                cpp_bp[b].append(bp_ms)
        for b in BATCHES:
            py_naca[b].append(python_step_ms(b, a.steps))
        print(f"round {r + 1}/{a.rounds}: " + "  ".join(
            f"batch {b}: C++ NACA {cpp_naca[b][-1]:.2f}, Python NACA {py_naca[b][-1]:.2f}, C++ BP {cpp_bp[b][-1]:.2f} ms"
            for b in BATCHES), file=sys.stderr)
    print(f"MLP 784-1000-10, CPU, {torch.get_num_threads()} threads, torch {torch.__version__}; ms per step, median "
          f"(range) of {a.rounds} rounds, each the median of {a.steps} steps; ratios: median (range) of the rounds' "
          f"ratios")
    print()
    print("| batch | C++ NACA | Python NACA | C++ BP | Python NACA / C++ NACA | C++ BP / C++ NACA |")
    print("|---|---|---|---|---|---|")
    for b in BATCHES:
        vs_py = [py / c for py, c in zip(py_naca[b], cpp_naca[b])]
        vs_bp = [bp / c for bp, c in zip(cpp_bp[b], cpp_naca[b])]
        print(f"| {b} | {fmt(cpp_naca[b])} | {fmt(py_naca[b])} | {fmt(cpp_bp[b])} | {ratio(vs_py)} | {ratio(vs_bp)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
