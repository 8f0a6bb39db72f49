"""What one pipeline step did on this rank (``Outcome``, reported to every rank at the step's end) and
the copy of a stage that a failed step restores (``Snapshot``)."""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor

__all__ = ["PipelineError", "Outcome", "Snapshot", "DONE", "RAISED", "STOPPED", "LOST"]

# A rank's outcome in the step's final all-reduce
DONE, RAISED, STOPPED, LOST = 0, 1, 2, 3


class PipelineError(RuntimeError):
    """A pipeline step stopped because of another rank (or a lost connection); this rank's stage
    was restored. ``codes``: each rank's (outcome, microbatch), None when they are not known."""

    def __init__(self, message: str, codes: Optional[list] = None):
        super().__init__(message)
        self.codes = codes


class Outcome:
    """What happened on this rank during one step: the first event's code, microbatch and error;
    ``lost``: a call to another rank failed (no more are made); ``peers_told``: the data-parallel
    replicas have seen a failure flag (they all stop reducing at the same microbatch)."""

    def __init__(self):
        self.code, self.microbatch, self.error = DONE, 0, None
        self.lost, self.peers_told = None, False

    @property
    def ok(self) -> bool:
        return self.code == DONE

    def set(self, code: int, k: int, error: Optional[BaseException] = None) -> None:
        if code == LOST and self.lost is None:
            self.lost = error
        if self.code == DONE:
            self.code, self.microbatch, self.error = code, k, error


class Snapshot:
    """A stage's parameters, buffers, ``.grad``, optimizer state and counts, to restore after a failed step."""

    def __init__(self, learner):  # (a learn.NACA)
        self.learner, m, opt = learner, learner.model, learner.optimizer
        self.tensors = [(t, t.detach().clone()) for t in m.state_dict(keep_vars=True).values()
                        if isinstance(t, Tensor)]
        self.grads = [(p, None if p.grad is None else p.grad.clone()) for p in m.parameters()]
        self.opt = None if opt is None else {
            p: {k: v.clone() if isinstance(v, Tensor) else copy.deepcopy(v) for k, v in s.items()}
            for p, s in opt.state.items()}
        self.counts = (learner.steps, learner.skipped_steps)

    def restore(self) -> None:
        with torch.no_grad():
            for t, v in self.tensors:
                t.copy_(v)
        for p, g in self.grads:
            p.grad = g
        if self.opt is not None:
            self.learner.optimizer.state.clear()
            self.learner.optimizer.state.update(self.opt)
        self.learner.steps, self.learner.skipped_steps = self.counts
