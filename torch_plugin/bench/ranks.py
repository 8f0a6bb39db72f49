"""A ``PipelineLearner`` of 2 gloo ranks (one thread each) measured against one process on this machine
(``bench.pipeline``'s measured part).

In each of ``rounds`` rounds (after a warm-up round), rank 0 times the one-process baselines while rank 1
waits in a barrier: NACA on the whole model stepping the M microbatches in order (the pipeline's
semantics) with 1 thread and with 2 threads, and NACA on the whole batch at once; then both ranks run the
pipeline (atomic, then atomic=False), ``steps`` steps each. Each figure is the fastest step over the rounds
(the median is kept too): the rounds interleave the kinds, so a busy moment of the shared machine hits
them alike.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

import torch

from .. import models
from ..learn import NACA

CLASSES = 10


def _times(fn, steps: int) -> list:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _model(g: dict):
    torch.manual_seed(0)
    return models.mlp(g["in"], [g["width"]] * g["ranks"]["depth"], CLASSES)


def _one_process(g: dict, x, y, M: int) -> dict:
    """The baselines' step functions: the whole model on the M microbatches in order (1 and 2 threads),
    and on the whole batch."""
    learner = NACA(_model(g), lr=1e-5)
    parts = list(zip(x.tensor_split(M), y.tensor_split(M)))

    def microbatched():
        for xk, yk in parts:
            learner.step(xk, yk)

    def two_threads():
        torch.set_num_threads(2)
        try:
            microbatched()
        finally:
            torch.set_num_threads(1)
    return {"one_1thread": microbatched, "one_2threads": two_threads, "one_whole_batch": lambda: learner.step(x, y)}


def _rank(rank: int, world: int, path: str, g: dict, out: str) -> None:
    import torch.distributed as dist

    from ..distributed import PipelineLearner

    dist.init_process_group("gloo", store=dist.FileStore(path, world), rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(g["batch"], g["in"], generator=gen)
        y = torch.randint(0, CLASSES, (g["batch"],), generator=gen)
        rows, split, r = [], None, g["ranks"]
        for M in r["microbatches"]:
            row = {"microbatches": M, "microbatch": g["batch"] // M, "load_1min": os.getloadavg()[0]}
            fns = _one_process(g, x, y, M) if rank == 0 else {}
            for atomic, name in ((True, "pipe_atomic"), (False, "pipe")):
                learner = PipelineLearner(_model(g), lr=1e-5, microbatches=M, atomic=atomic, timeout=600)
                fns[name] = (lambda lr: lambda: lr.step(x if lr.stage == 0 else None, y))(learner)
                split = list(learner.split)
            samples: dict = {k: [] for k in fns}
            for round_ in range(r["rounds"] + 1):  # (round 0: warm-up, not kept)
                for name, fn in fns.items():  # rank 0's baselines while rank 1 waits, then both pipelines
                    if name.startswith("pipe"):
                        dist.barrier()
                    if rank == 0 or name.startswith("pipe"):
                        times = _times(fn, r["steps"] if round_ else 2)
                        samples[name] += times if round_ else []
            dist.barrier()
            row.update({k: min(v) for k, v in samples.items()})
            row.update({k + "_median": statistics.median(v) for k, v in samples.items()})
            rows.append(row)
        if rank == 0:
            with open(out, "w") as f:
                json.dump({"rows": rows, "split": split, "depth": g["ranks"]["depth"], "batch": g["batch"]}, f)
    finally:
        dist.destroy_process_group()
    os._exit(0)  # (no interpreter teardown in a spawned gloo worker)


def measure_ranks(g: dict) -> dict:
    """The measured rows (seconds per batch) of the 2-rank pipeline and the one-process baselines."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ranks.json")
        mp.spawn(_rank, args=(2, os.path.join(tmp, "store"), g, out), nprocs=2, join=True)
        with open(out) as f:
            return json.load(f)
