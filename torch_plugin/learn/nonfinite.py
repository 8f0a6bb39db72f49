"""The ``skip_nonfinite`` policy of the learners: an update with a NaN or an Inf anywhere is not
applied, and counted in ``learner.skipped_steps`` (SBP checks its local changes with ``all_finite``).

The update is first written as a pseudo-gradient into ``.grad`` (in place SGD
then applies ``w -= lr * grad``), checked with one reduction and one
device-to-host read (a synchronisation on CUDA, like ``torch.amp.GradScaler``'s
inf check), and applied only when every element is finite.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor


def trained_params(learner) -> list[Tensor]:
    """The parameters the learner's local rules update (weight and bias of each trained layer), each
    once (a parameter tied between layers would otherwise be zeroed, reduced and stepped twice)."""
    layers = learner.layers  # (NACA: the hidden layers, then the output layer unless hidden_only)
    return list({id(p): p for m in layers for p in (m.weight, m.bias) if p is not None}.values())


def zero_grads(params: Iterable[Tensor]) -> None:
    with torch.no_grad():
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            else:
                p.grad.zero_()


def all_finite(tensors: Iterable[Tensor]) -> bool:
    flags = [torch.isfinite(t).all() for t in tensors if t is not None]
    return bool(torch.stack(flags).all()) if flags else True


def sgd_from_grads(params: Iterable[Tensor], lr: float) -> None:
    """w -= lr * w.grad (the in-place SGD step of an update held in .grad)."""
    with torch.no_grad():
        for p in params:
            p.sub_(p.grad, alpha=lr)
