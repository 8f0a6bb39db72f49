"""The messages of one microbatch between two neighbouring pipeline stages (``torch.distributed``
point-to-point calls).

Each microbatch k travels as three messages, tagged ``3 k``, ``3 k + 1`` and ``3 k + 2``:

* a header, ``HEADER`` int64 values: status (``OK``, or ``FAILED`` when the sender has stopped,
  in which case nothing follows), the number of labels, the activation's dtype (an index into
  ``DTYPES``), its number of dimensions and its shape (up to ``MAX_DIM``, zero-padded);
* the labels (int64), unless the header says 0;
* the activation.

The header comes first so that the receiver can allocate the other two: a stage's output shape
is known only to the stage that computes it. A stage that stops (its own error, or a FAILED
header from upstream) keeps receiving its upstream's messages and sends FAILED headers
downstream for the remaining microbatches, so every message that was posted is matched and
the process group stays usable (``pipeline``).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor

OK, FAILED = 0, 1
MAX_DIM = 8
HEADER = 4 + MAX_DIM
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
          torch.int16, torch.int8, torch.uint8, torch.bool)


def check_sendable(act) -> None:
    """What a stage hands the next must be a tensor the header can describe."""
    if not isinstance(act, Tensor) or act.dim() > MAX_DIM or act.dtype not in DTYPES:
        what = f"{act.dtype} {tuple(act.shape)}" if isinstance(act, Tensor) else type(act).__name__
        raise ValueError(f"PipelineLearner: a stage's output must be a tensor of at most {MAX_DIM} dimensions "
                         f"and a dtype in {[str(d) for d in DTYPES]}, got {what}")


def header(status: int, labels: Optional[Tensor], act: Optional[Tensor], device) -> Tensor:
    h = torch.zeros(HEADER, dtype=torch.int64)
    h[0] = status
    if status == OK:
        h[1] = 0 if labels is None else labels.numel()
        h[2] = DTYPES.index(act.dtype)
        h[3] = act.dim()
        h[4:4 + act.dim()] = torch.tensor(act.shape, dtype=torch.int64)
    return h.to(device)


class Link:
    """One direction of the link between this rank and ``peer`` (a global rank) in ``group``."""

    def __init__(self, peer: int, group, device: torch.device):
        self.peer, self.group, self.device = peer, group, device

    # receiving side
    def post_header(self, k: int):
        """Start receiving microbatch k's header: (work, tensor)."""
        h = torch.empty(HEADER, dtype=torch.int64, device=self.device)
        return dist.irecv(h, src=self.peer, group=self.group, tag=3 * k), h

    def receive(self, posted, k: int) -> tuple[int, Optional[Tensor], Optional[Tensor]]:
        """Wait for the header posted by ``post_header``, then receive what it announces:
        (status, labels or None, activation or None)."""
        work, h = posted
        work.wait()
        status, n, code, ndim, *shape = h.tolist()
        if status != OK:
            return status, None, None
        works = []
        labels = None
        if n:
            labels = torch.empty(n, dtype=torch.int64, device=self.device)
            works.append(dist.irecv(labels, src=self.peer, group=self.group, tag=3 * k + 1))
        act = torch.empty(shape[:ndim], dtype=DTYPES[code], device=self.device)
        works.append(dist.irecv(act, src=self.peer, group=self.group, tag=3 * k + 2))
        for w in works:
            w.wait()
        return status, labels, act

    # sending side
    def send(self, k: int, status: int, labels: Optional[Tensor] = None, act: Optional[Tensor] = None) -> list:
        """Start sending microbatch k (a FAILED header alone, or header, labels and activation): the
        (work, tensor) pairs, to keep until the works complete."""
        out = [(header(status, labels, act, self.device), 3 * k)]
        if status == OK:
            if labels is not None and labels.numel():
                out.append((labels.contiguous(), 3 * k + 1))
            out.append((act.contiguous(), 3 * k + 2))
        return [(dist.isend(t, dst=self.peer, group=self.group, tag=tag), t) for t, tag in out]
