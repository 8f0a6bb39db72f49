"""Cutting an ``nn.Sequential`` into pipeline stages: contiguous runs of its children.

A *unit* is a child holding a trained NACA layer, together with the parameter-free (or
frozen) children that follow it up to the next one; children before the first trained one
join the first unit (an input ``Flatten``, an encoder). A stage is a contiguous run of
units, so every stage trains at least one layer and the pooling after a conv, or the
``SpikeRate`` after a spiking output layer, stays with the layer it follows.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

from torch import nn

from ..nn import NACAConv2d, NACALinear, NACAOutput, NACASpikingLinear

TRAINED = (NACALinear, NACAConv2d, NACAOutput, NACASpikingLinear)

__all__ = ["balanced_split", "stage_module", "check_split", "units"]


def _trains(child: nn.Module) -> bool:
    return any(isinstance(m, TRAINED) for m in child.modules())


def _holds_output(child: nn.Module) -> bool:
    return any(isinstance(m, NACAOutput) or (isinstance(m, NACASpikingLinear) and m.is_output)
               for m in child.modules())


def units(model: nn.Sequential) -> list[tuple[int, int]]:
    """The units of the model's children, as (first child, number of children)."""
    starts = [i for i, c in enumerate(model) if _trains(c)]
    if not starts:
        raise ValueError("PipelineLearner: the model holds no NACA layer to train")
    starts[0] = 0
    ends = starts[1:] + [len(model)]
    return [(a, b - a) for a, b in zip(starts, ends)]


def balanced_split(model: nn.Sequential, stages: int) -> tuple[int, ...]:
    """The number of children in each of ``stages`` stages: contiguous runs of units whose
    largest parameter count is the smallest possible (ties: the earliest cuts)."""
    us = units(model)
    if not 1 <= stages <= len(us):
        raise ValueError(f"PipelineLearner: {stages} stages need at least {stages} trained layers (children of "
                         f"the model holding one), the model has {len(us)}")
    weights = [sum(p.numel() for c in list(model)[a:a + n] for p in c.parameters()) for a, n in us]
    prefix = [0]
    for w in weights:
        prefix.append(prefix[-1] + w)
    # best[s][j]: the smallest largest stage of units[:j] cut into s stages; cut[s][j]: where its last starts
    inf = float("inf")
    best = [[inf] * (len(us) + 1) for _ in range(stages + 1)]
    cut = [[0] * (len(us) + 1) for _ in range(stages + 1)]
    best[0][0] = 0
    for s in range(1, stages + 1):
        for j in range(s, len(us) + 1):
            for i in range(s - 1, j):
                cost = max(best[s - 1][i], prefix[j] - prefix[i])
                if cost < best[s][j]:
                    best[s][j], cut[s][j] = cost, i
    bounds, j = [], len(us)
    for s in range(stages, 0, -1):
        bounds.append(j)
        j = cut[s][j]
    bounds = [0] + bounds[::-1]
    return tuple(sum(n for _, n in us[bounds[s]:bounds[s + 1]]) for s in range(stages))


def check_split(model: nn.Sequential, split: Sequence[int], stages: int) -> tuple[int, ...]:
    """Validate a user's split (children per stage): one positive count per stage, summing to the
    model's children, every stage training a layer and the last holding the output layer."""
    try:
        sizes = tuple(int(n) for n in split)
    except (TypeError, ValueError):
        raise TypeError(f"PipelineLearner: split must be a sequence of ints (children per stage), got "
                        f"{split!r}") from None
    if len(sizes) != stages or any(n < 1 for n in sizes) or sum(sizes) != len(model):
        raise ValueError(f"PipelineLearner: split must give {stages} positive child counts (one per stage) "
                         f"summing to the model's {len(model)} children, got {list(split)}")
    start = 0
    for s, n in enumerate(sizes):
        children = list(model)[start:start + n]
        if not any(_trains(c) for c in children):
            raise ValueError(f"PipelineLearner: split {list(sizes)}: stage {s} (children {start}..{start + n - 1}) "
                             f"holds no NACA layer to train")
        if s < stages - 1 and any(_holds_output(c) for c in children):
            raise ValueError(f"PipelineLearner: split {list(sizes)}: the output layer must be in the last stage, "
                             f"it is in stage {s}")
        start += n
    return sizes


class SwapBatchTime(nn.Module):
    """(T, B, ...) <-> (B, T, ...), contiguous: a spiking model's stages exchange their time-major spike
    trains batch-major, as every stage's learner takes a batch (B, ...)."""

    def forward(self, x):
        return x.transpose(0, 1).contiguous()


def stage_module(model: nn.Sequential, sizes: Sequence[int], stage: int) -> nn.Sequential:
    """Stage ``stage``'s children as an ``nn.Sequential`` that keeps their names in the model (so its
    state_dict keys are the model's); a spiking model's inner boundaries get a ``SwapBatchTime``."""
    start = sum(sizes[:stage])
    names = list(model._modules)[start:start + sizes[stage]]
    children = [(name, model._modules[name]) for name in names]
    if any(isinstance(m, NACASpikingLinear) for m in model.modules()):
        if stage > 0:
            children.insert(0, ("from_batch_major", SwapBatchTime()))
        if stage < len(sizes) - 1:
            children.append(("to_batch_major", SwapBatchTime()))
    return nn.Sequential(OrderedDict(children))


def describe(model: nn.Sequential, sizes: Optional[Sequence[int]] = None) -> list:
    """What every rank must agree on: each child's type and parameter shapes (and the split)."""
    kids = [(type(c).__name__, tuple(tuple(p.shape) for p in c.parameters())) for c in model]
    return [kids, None if sizes is None else list(sizes)]
