"""Data-parallel NACA and SBP on ``torch.distributed``.

Every rank holds a full replica of the model and runs the learner's forward and
local updates on its own shard of the batch. NACA's updates are sums over the
batch, so the sum (all-reduce SUM) of the ranks' local updates is exactly the
update of the concatenated batch: the replicas stay identical and train as one
learner on the global batch. The local updates are written as pseudo-gradients
into ``.grad`` (``NACA.local_update(into_grad=True)``), flattened into buckets
of at most ``bucket_cap_mb`` and all-reduced, all buckets in flight at once;
then plain SGD (``w -= lr * update``) or the learner's optimizer applies them.

SBP's local changes (``SBP.local_changes``) are batch sums too; only what follows
(the division by beta B, the LTP/LTD split and spreads of ``ops.sbp_update_``)
is not. So the ranks all-reduce the sums and their sample counts, and every rank
then applies the global batch's change (``SBP.apply_changes``), which is again
exactly the single-process step on the concatenated batch.

The fixed random matrices (NI buffers) and the initial weights are broadcast
from the group's rank 0 when the learner is wrapped, so they are identical on
every rank whatever each rank's seed; E depends on the class count alone.

The equivalence with one process is exact for deterministic forwards. Random
draws in the forward (a spiking model's ``BernoulliEncoder``, dropout) are each
rank's own: a seeded encoder is re-seeded with ``seed + RANK_SEED_STRIDE * rank``
(rank 0 keeps its seed), so the ranks' spike trains are independent rather than
the same noise on every shard; seed torch's RNG per rank for dropout.

Launch (one process per GPU, NCCL), e.g. ``torchrun --nproc-per-node=8 train.py``;
in train.py::

    dist.init_process_group("nccl")            # or "gloo" on CPU
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    model = models.mlp(784, [1000], 10).cuda()
    learner = DistributedLearner(learn.NACA(model, lr=1e-3))
    for x, y in loader:                        # a DistributedSampler shards the data
        learner.step(x.cuda(), y.cuda())
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist
from torch import Tensor
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.utils._pytree import tree_map

from ..learn.nonfinite import all_finite, sgd_from_grads, trained_params, zero_grads

__all__ = ["DistributedLearner", "all_reduce_buckets", "broadcast_tensors", "buckets", "RANK_SEED_STRIDE"]

# A seeded encoder on rank r draws from seed + RANK_SEED_STRIDE * r (a prime far from small seeds).
RANK_SEED_STRIDE = 1_000_003


def buckets(tensors: Iterable[Tensor], cap_bytes: int) -> list[list[Tensor]]:
    """Split tensors, in order, into runs of one dtype and device of at most cap_bytes each
    (a tensor larger than the cap gets a bucket of its own)."""
    out: list[list[Tensor]] = []
    size = 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        last = out[-1] if out else None
        if (last is None or last[0].dtype != t.dtype or last[0].device != t.device
                or size + nbytes > cap_bytes):
            out.append([t])
            size = nbytes
        else:
            last.append(t)
            size += nbytes
    return out


def all_reduce_buckets(tensors: list[Tensor], cap_bytes: int, group=None) -> None:
    """All-reduce (SUM) the tensors in place, bucketed; all buckets are launched before any is waited on."""
    pending = []
    for bucket in buckets(tensors, cap_bytes):
        flat = _flatten_dense_tensors(bucket)
        pending.append((bucket, flat, dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group, async_op=True)))
    for bucket, flat, work in pending:
        work.wait()
        for t, reduced in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
            t.copy_(reduced)


def broadcast_tensors(tensors: list[Tensor], cap_bytes: int, group=None, group_src: int = 0) -> None:
    """Overwrite the tensors in place with those of the group's rank ``group_src``, bucketed."""
    src = dist.get_global_rank(group, group_src) if group is not None else group_src
    for bucket in buckets(tensors, cap_bytes):
        flat = _flatten_dense_tensors(bucket)
        dist.broadcast(flat, src=src, group=group)
        for t, value in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
            t.copy_(value)


class DistributedLearner:
    """Data-parallel wrapper of a ``learn.NACA`` or ``learn.SBP`` learner (one replica per process).

    Args:
        learner: the learner of this rank's replica (NACA: in-place SGD or an optimizer).
        process_group: the group to reduce over (None: the default group, which must
            be initialised with ``dist.init_process_group``).
        bucket_cap_mb: size cap of each flattened all-reduce bucket.
        broadcast: broadcast parameters and buffers (NI) from the group's rank 0 now.

    ``step(x, y)`` takes this rank's shard (the shards may differ in size, even be
    empty) and returns this rank's logits. After it (NACA), each trained parameter's
    ``.grad`` holds the summed update of the global batch. Every rank must call
    ``step`` the same number of times (the all-reduce is collective). With
    ``learner.skip_nonfinite`` the check runs on the summed update, so every
    rank skips the same steps. Seeded ``BernoulliEncoder`` layers are re-seeded
    per rank (module docstring).
    """

    def __init__(self, learner, process_group=None, bucket_cap_mb: float = 25.0, broadcast: bool = True):
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("DistributedLearner: call torch.distributed.init_process_group first")
        self.sbp = hasattr(learner, "local_changes") and hasattr(learner, "apply_changes")
        if not self.sbp and not hasattr(learner, "local_update"):
            raise TypeError(f"DistributedLearner supports learn.NACA and learn.SBP; got {type(learner).__name__}")
        if bucket_cap_mb <= 0:
            raise ValueError(f"bucket_cap_mb must be > 0, got {bucket_cap_mb}")
        self.learner = learner
        self.group = process_group
        self.cap_bytes = max(1, int(bucket_cap_mb * 1024 * 1024))
        # What the learner updates, frozen (requires_grad=False) or not, as NACA.step does.
        self.params = [] if self.sbp else trained_params(learner)
        self._seed_encoders_per_rank()
        if broadcast:
            self.broadcast_state()

    def _seed_encoders_per_rank(self) -> None:
        from ..nn.spiking import BernoulliEncoder

        rank = dist.get_rank(self.group)
        for m in self.learner.model.modules():
            if isinstance(m, BernoulliEncoder) and m.seed is not None and rank > 0:
                m.reseed(int(m.seed) + RANK_SEED_STRIDE * rank)

    @property
    def model(self):
        return self.learner.model

    def broadcast_state(self) -> None:
        """Copy rank 0's parameters and buffers (NI, ...) and learner state (step counts, the
        optimizer's state) to every rank, e.g. after loading a checkpoint there. (RNG states are
        each rank's own and are not copied.)"""
        state = [t for t in self.model.state_dict(keep_vars=True).values() if isinstance(t, Tensor)]
        with torch.no_grad():
            broadcast_tensors([t.detach() for t in state], self.cap_bytes, self.group)
        rank = dist.get_rank(self.group)
        src = dist.get_global_rank(self.group, 0) if self.group is not None else 0
        payload = [None]
        if rank == 0:  # tensors to the CPU: each rank's optimizer moves its state to its own parameters
            payload = [tree_map(lambda v: v.detach().cpu() if isinstance(v, Tensor) else v,
                                self.learner.state_dict())]
        dist.broadcast_object_list(payload, src=src, group=self.group)
        if rank != 0:
            self.learner.load_state_dict(payload[0])

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One data-parallel step on this rank's shard (x, y); returns the shard's logits."""
        if self.sbp:
            return self._sbp_step(x, y)
        zero_grads(self.params)
        logits = self.learner.local_update(x, y, into_grad=True)
        self.all_reduce_updates()
        self.apply_updates()
        return logits

    def all_reduce_updates(self, extra: Iterable[Tensor] = ()) -> None:
        """NACA: sum the ranks' updates held in ``.grad`` (and the ``extra`` tensors, in the same
        launch) over the group, in place."""
        with torch.no_grad():
            all_reduce_buckets([p.grad for p in self.params] + list(extra), self.cap_bytes, self.group)

    def apply_updates(self) -> None:
        """NACA: apply the summed update in ``.grad`` (the optimizer, or w -= lr * update) and count the
        step; with ``skip_nonfinite`` a non-finite sum is skipped and counted instead."""
        learner = self.learner
        with torch.no_grad():
            if self._finite_or_skip([p.grad for p in self.params]):
                if learner.optimizer is not None:
                    learner.optimizer.step()
                else:
                    sgd_from_grads(self.params, learner.lr)
        learner.steps += 1

    def _sbp_step(self, x: Tensor, y: Tensor) -> Tensor:
        learner = self.learner
        result, sums = learner.local_changes(x, y)
        count = torch.tensor([x.shape[0]], dtype=torch.float64, device=result.device)
        with torch.no_grad():
            all_reduce_buckets(list(sums.values()) + [count], self.cap_bytes, self.group)
        learner.apply_changes(sums, int(count.item()))
        learner.steps += 1
        return result

    def _finite_or_skip(self, grads: list[Tensor]) -> bool:
        if not getattr(self.learner, "skip_nonfinite", False):
            return True
        finite = all_finite(grads)
        if not finite:
            self.learner.skipped_steps += 1
        return finite

    def state_dict(self):
        return self.learner.state_dict()

    def load_state_dict(self, state) -> None:
        self.learner.load_state_dict(state)
