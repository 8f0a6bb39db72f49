"""Forward-only pipeline-parallel NACA on ``torch.distributed``.

A NACA layer's update needs only the labels and the layer's own input and output, so a
layer can learn the moment its forward is done: no stage of a pipeline ever waits for a
backward pass. Every rank builds the same ``nn.Sequential``; rank r keeps stage r // D (D:
``data_parallel``), a contiguous run of its children (``partition``). A batch is cut into
M microbatches (``Tensor.tensor_split``); microbatch k goes forward through the stages, its
labels travelling with it, and each stage trains its layers on it as soon as its forward
is done (``NACA.step``), then hands its output to the next stage and takes microbatch
k + 1. Stage s works on microbatch k while stage s + 1 works on k - 1: after S - 1
microbatches every stage is busy, and a batch takes M + S - 1 stage-times instead of
M S (S stages of equal time).

The weights are those of one process training the whole model on the microbatches in
order (``NACA(model).step(x_k, y_k)`` for k = 0 .. M-1): a stage trains microbatch k + 1
with the weights it had after microbatch k, and each layer's update reads only its own
input and output, which are the same tensors in both. With an optimizer each stage has its
own, built by the ``optimizer`` factory from the stage's parameters; an optimizer whose
step treats each parameter on its own (SGD, Adam, AdamW, RMSprop, ...) gives the one-process
bits, one that couples parameters (a global gradient norm) sees only its stage's.

Data parallel x pipeline (``data_parallel=D``): D replicas of the pipeline, ranks laid out
stage-major (rank = stage * D + replica), each replica fed its own shard. The D ranks of a
stage form a ``DistributedLearner`` over their stage: each microbatch's update is summed
over them (its bucketed all-reduce) before it is applied, so the model equals one process
training on the microbatches concatenated over the replicas, in order. (That is one
all-reduce of the stage's parameters per microbatch, M per batch.)

Failure. Every wait (point-to-point and collective) is bounded by ``timeout`` (the
learner's own process groups). A rank whose step raises (its own check or forward, or a
neighbour's FAILED header) sends FAILED headers downstream instead of activations, keeps
receiving from upstream, and tells its data-parallel peers through the all-reduce; every
step then ends with one all-reduce of each rank's outcome. So when one rank raises, every
rank raises (the raising rank its own exception, the others ``PipelineError`` naming it),
each restores its stage to what it was before the step (``atomic``) and the process group
stays usable. A rank that dies or hangs makes the others raise within about two timeouts;
their stages are restored, the lost rank's state is gone (restart from a checkpoint).
"""
from __future__ import annotations

import math
from datetime import timedelta
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..learn import NACA
from ..learn.common import check_label_range
from ..learn.nonfinite import zero_grads
from .data_parallel import DistributedLearner
from .outcome import DONE, LOST, RAISED, STOPPED, Outcome, PipelineError, Snapshot
from .p2p import FAILED, OK, Link, check_sendable
from .partition import balanced_split, check_split, describe, stage_module

__all__ = ["PipelineLearner", "PipelineError"]

NACA_OPTIONS = ("lam", "theta", "all_steps", "skip_nonfinite", "check_labels", "membrane_chain", "streaming")


class PipelineLearner:
    """NACA on a pipeline of ranks: each rank trains one stage of an ``nn.Sequential``, forward only.

    Args:
        model: the whole network, built identically on every rank (``models.mlp``, ``models.conv_net``,
            ``models.spiking_mlp`` or any ``nn.Sequential`` of the plugin's layers that ``learn.NACA``
            accepts). The rank keeps its stage's children (drop your reference to the rest).
        lr: the in-place SGD step (without ``optimizer``), as ``learn.NACA``.
        optimizer: None, or a factory ``optimizer(params) -> torch.optim.Optimizer`` called on each rank
            with its stage's parameters, e.g. ``lambda params: torch.optim.Adam(params, lr=1e-3)``.
        microbatches: M, the microbatches a batch is cut into (``tensor_split``: sizes differ by one at most).
        split: the number of children in each stage (summing to ``len(model)``), or None: balanced by
            parameter count (``partition.balanced_split``: the largest stage as small as possible).
        data_parallel: D, pipeline replicas; the world size must be D times the number of stages.
        timeout: seconds any wait for another rank may last before the step raises.
        atomic: a step that raises restores the stage (True), at the cost of one copy of the stage's
            parameters, ``.grad`` and optimizer state per step; False skips the copy, and a step that
            raises leaves each stage with the microbatches it had trained.
        bucket_cap_mb: the data-parallel all-reduce's bucket cap (``DistributedLearner``).
        **naca: ``lam``, ``theta``, ``all_steps``, ``skip_nonfinite`` (per stage and microbatch: a stage
            skips its own non-finite updates, which one process would skip for every layer),
            ``check_labels``, ``membrane_chain``, ``streaming``, passed to each stage's ``learn.NACA``.

    ``step(x, y)`` is called on every rank with the same batch: stage 0 reads x (the others may pass
    None), every stage checks y (B,) and trains on the labels that travel with each microbatch (which
    must equal its own y). It returns the logits (B, N) on the last stage (computed before each
    microbatch's update, as ``NACA.step``) and None on the others. ``predict(x)`` runs the pipeline
    without learning (eval mode). ``full_state_dict()`` (on every rank) returns the whole model's
    ``state_dict`` on rank 0, None elsewhere. Needs ``dist.init_process_group`` (gloo on CPU, nccl on GPUs).
    """

    def __init__(self, model: nn.Sequential, lr: float = 1e-3, optimizer: Optional[Callable] = None,
                 microbatches: int = 4, split: Optional[Sequence[int]] = None, data_parallel: int = 1,
                 timeout: float = 300.0, atomic: bool = True, bucket_cap_mb: float = 25.0, **naca):
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("PipelineLearner: call torch.distributed.init_process_group first")
        world, rank = dist.get_world_size(), dist.get_rank()
        self.atomic = bool(atomic)
        error, agreed = None, None
        try:  # everything local first: a rank that refuses its arguments makes every rank raise
            self._build(model, lr, optimizer, microbatches, split, data_parallel, timeout, naca, world, rank)
            agreed = describe(model, self.split) + [self.microbatches, self.data_parallel]
        except Exception as e:  # noqa: BLE001 (re-raised below, after the other ranks have heard of it)
            error = e
        views = [None] * world
        dist.all_gather_object(views, (None if error is None else f"{type(error).__name__}: {error}", agreed))
        if error is not None:
            raise error
        refused = [r for r, (e, _) in enumerate(views) if e is not None]
        if refused:
            raise ValueError(f"PipelineLearner: rank {refused[0]} refused its arguments ({views[refused[0]][0]})")
        differ = [r for r, (_, a) in enumerate(views) if a != views[0][1]]
        if differ:
            (kids, sizes, m, d), (kids0, sizes0, m0, d0) = views[differ[0]][1], views[0][1]
            first = next((i for i, (a, b) in enumerate(zip(kids, kids0)) if a != b), min(len(kids), len(kids0)))
            what = (f"child {first}: {kids[first] if first < len(kids) else None} against "
                    f"{kids0[first] if first < len(kids0) else None}" if kids != kids0 else
                    f"split {sizes} against {sizes0}, microbatches {m} against {m0}, data_parallel {d} against {d0}")
            raise ValueError(f"PipelineLearner: rank {differ[0]} built another model or passed other arguments than "
                             f"rank 0 (every rank must build the same nn.Sequential with the same arguments): {what}")
        self._connect(timeout, bucket_cap_mb)

    def _build(self, model, lr, optimizer, microbatches, split, data_parallel, timeout, naca, world, rank):
        if not isinstance(model, nn.Sequential):
            raise TypeError(f"PipelineLearner: model must be an nn.Sequential (its children are cut into "
                            f"stages), got {type(model).__name__}")
        unknown = sorted(set(naca) - set(NACA_OPTIONS))
        if unknown:
            raise TypeError(f"PipelineLearner: unknown arguments {unknown} (NACA options: {list(NACA_OPTIONS)})")
        for name, v in (("microbatches", microbatches), ("data_parallel", data_parallel)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"PipelineLearner: {name} must be an int >= 1, got {v!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            raise ValueError(f"PipelineLearner: timeout must be a finite number of seconds > 0, got {timeout!r}")
        if optimizer is not None and (isinstance(optimizer, torch.optim.Optimizer) or not callable(optimizer)):
            raise TypeError(f"PipelineLearner: optimizer must be a factory called with each stage's parameters, "
                            f"e.g. lambda params: torch.optim.Adam(params, lr=1e-3) (each rank holds only its "
                            f"stage), got {type(optimizer).__name__}")
        if world % data_parallel:
            raise ValueError(f"PipelineLearner: the world size {world} is not a multiple of data_parallel="
                             f"{data_parallel}")
        NACA(model, lr=lr, **naca)  # the whole model's checks (one output layer, classes, stray parameters)
        stages = world // data_parallel
        self.split = balanced_split(model, stages) if split is None else check_split(model, split, stages)
        self.microbatches, self.data_parallel, self.num_stages = microbatches, data_parallel, stages
        self.stage, self.replica, self.rank, self.world = rank // data_parallel, rank % data_parallel, rank, world
        self.module = stage_module(model, self.split, self.stage)
        opt = None
        if optimizer is not None:
            opt = optimizer(list(self.module.parameters()))
            if not isinstance(opt, torch.optim.Optimizer):
                raise TypeError(f"PipelineLearner: the optimizer factory must return a torch.optim.Optimizer, "
                                f"got {type(opt).__name__}")
        self.learner = NACA(self.module, lr=lr, optimizer=opt, hidden_only=self.stage < stages - 1, **naca)
        tensors = list(self.module.parameters()) + list(self.module.buffers())
        self.device = tensors[0].device if tensors else torch.device("cpu")
        self.steps = 0

    def _connect(self, timeout: float, bucket_cap_mb: float) -> None:
        """The learner's process groups (every rank creates each, in the same order)."""
        D, S, td = self.data_parallel, self.num_stages, timedelta(seconds=timeout)
        self.group = dist.new_group(list(range(self.world)), timeout=td)
        self.dp = None
        if D > 1:
            groups = [dist.new_group([s * D + d for d in range(D)], timeout=td) for s in range(S)]
            self.dp = DistributedLearner(self.learner, process_group=groups[self.stage], bucket_cap_mb=bucket_cap_mb)
        self.prev = None if self.stage == 0 else Link(self.rank - D, self.group, self.device)
        self.next = None if self.stage == S - 1 else Link(self.rank + D, self.group, self.device)

    @property
    def is_last_stage(self) -> bool:
        return self.stage == self.num_stages - 1

    def step(self, x: Optional[Tensor], y: Tensor) -> Optional[Tensor]:
        """Train on one batch; x (B, ...) is read by stage 0, y (B,) int64 by every stage. Returns the
        logits (B, N) on the last stage, None elsewhere."""
        return self._pipeline(x, y, learn=True)

    def predict(self, x: Optional[Tensor]) -> Optional[Tensor]:
        """The model's output for x (read by stage 0), through the pipeline, without learning (each stage in
        eval mode): (B, N) on the last stage, None elsewhere."""
        return self._pipeline(x, None, learn=False)

    def _pipeline(self, x, y, learn: bool):
        run = Outcome()
        xs = ys = None
        try:
            ys = self._split_labels(y) if learn else None
            if self.stage == 0:
                xs = self._split_input(x, y)
        except Exception as e:  # noqa: BLE001 (the step goes on without computing: see Outcome)
            run.set(RAISED, 0, e)
        snapshot = Snapshot(self.learner) if learn and self.atomic else None
        training = self.module.training
        if not learn:
            self.module.eval()
        try:
            outs = self._schedule(xs, ys, learn, run)
        finally:
            self.module.train(training)
        codes = self._commit(run)
        if codes is not None and all(c == DONE for c, _ in codes):
            if learn:
                self.steps += 1
            return torch.cat(outs) if self.is_last_stage else None
        if snapshot is not None:
            snapshot.restore()
        raise self._error(run, codes, learn)

    def _split_labels(self, y) -> tuple:
        if not isinstance(y, Tensor) or y.dtype != torch.long or y.dim() != 1:
            what = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(f"PipelineLearner.step: y must be int64 labels of shape (B,) on every rank, got {what}")
        if y.shape[0] < self.microbatches:
            raise ValueError(f"PipelineLearner.step: a batch of {y.shape[0]} samples cannot be cut into "
                             f"microbatches={self.microbatches}")
        if self.learner.check_labels:
            check_label_range(y, self.learner.num_classes, "PipelineLearner.step")
        return y.to(self.device).tensor_split(self.microbatches)

    def _split_input(self, x, y) -> tuple:
        if not isinstance(x, Tensor) or x.dim() == 0:
            raise ValueError(f"PipelineLearner: x must be a batch (B, ...) on stage 0, got "
                             f"{type(x).__name__ if not isinstance(x, Tensor) else tuple(x.shape)}")
        if y is not None and x.shape[0] != y.shape[0]:
            raise ValueError(f"PipelineLearner.step: x {tuple(x.shape)} and y {tuple(y.shape)} must hold as many "
                             f"samples")
        if x.shape[0] < self.microbatches:
            raise ValueError(f"PipelineLearner: a batch of {x.shape[0]} samples cannot be cut into "
                             f"microbatches={self.microbatches}")
        return x.tensor_split(self.microbatches)

    def _schedule(self, xs, ys, learn: bool, run: Outcome) -> list:
        """The microbatch loop: receive, compute (and learn), send; on failure keep every message matched."""
        outs, sending, posted = [], [], None
        if self.prev is not None:
            try:
                posted = self.prev.post_header(0)
            except Exception as e:  # noqa: BLE001
                run.set(LOST, 0, e)
        for k in range(self.microbatches):
            status, labels, act = OK, None, None
            if self.prev is not None and run.lost is None:
                try:
                    status, labels, act = self.prev.receive(posted, k)
                    if k + 1 < self.microbatches:
                        posted = self.prev.post_header(k + 1)
                except Exception as e:  # noqa: BLE001
                    run.set(LOST, k, e)
            yk = ys[k] if learn and ys is not None else None
            out = None
            if run.ok:
                if status != OK:
                    run.set(STOPPED, k)
                else:
                    try:
                        if self.prev is not None and learn:
                            self._check_labels(labels, yk, k)
                        out = self._compute(xs[k] if self.prev is None else act, yk, learn)
                        if self.next is not None:
                            check_sendable(out)
                    except Exception as e:  # noqa: BLE001
                        run.set(RAISED, k, e)
            if learn and self.dp is not None:
                self._all_reduce(run, k)
            if self.next is not None and run.lost is None:
                try:
                    for work, _ in sending:  # (one microbatch in flight per link: bounded memory)
                        work.wait()
                    sending = self.next.send(k, OK if run.ok else FAILED, yk if learn else None, out)
                except Exception as e:  # noqa: BLE001
                    run.set(LOST, k, e)
            if self.next is None and run.ok:
                outs.append(out)
        if run.lost is None:
            try:
                for work, _ in sending:
                    work.wait()
            except Exception as e:  # noqa: BLE001
                run.set(LOST, self.microbatches - 1, e)
        return outs

    def _check_labels(self, labels, yk, k: int) -> None:
        if labels is None or not torch.equal(labels, yk):
            raise ValueError(f"PipelineLearner.step: microbatch {k}'s labels from rank {self.prev.peer} differ from "
                             f"this rank's y (every rank of a pipeline must call step with the same batch)")

    def _compute(self, a: Tensor, yk: Optional[Tensor], learn: bool) -> Tensor:
        if not learn:
            with torch.no_grad():
                return self.module(a)
        if self.dp is None:
            return self.learner.step(a, yk)
        zero_grads(self.dp.params)
        return self.learner.local_update(a, yk, into_grad=True)

    def _all_reduce(self, run: Outcome, k: int) -> None:
        """Data parallel: sum microbatch k's update over the stage's replicas with a failure flag, apply it
        if no replica failed. Once the flag is seen, the replicas (all at once) stop reducing."""
        if run.lost is not None or run.peers_told:
            return
        dtype = self.dp.params[0].dtype if self.dp.params else torch.float32
        flag = torch.tensor([0.0 if run.ok else 1.0], dtype=dtype, device=self.device)
        try:
            self.dp.all_reduce_updates(extra=[flag])
        except Exception as e:  # noqa: BLE001
            run.set(LOST, k, e)
            return
        if flag.item() > 0:
            run.peers_told = True
            run.set(STOPPED, k)
            return
        try:
            self.dp.apply_updates()
        except Exception as e:  # noqa: BLE001 (the optimizer's step: this rank's own error)
            run.set(RAISED, k, e)

    def _commit(self, run: Outcome) -> Optional[list]:
        """Every rank's (outcome, microbatch), from one all-reduce; None when it could not complete."""
        codes = torch.zeros(self.world, 2, dtype=torch.int64, device=self.device)
        codes[self.rank] = torch.tensor([run.code, run.microbatch])
        try:
            dist.all_reduce(codes, group=self.group)
        except Exception as e:  # noqa: BLE001
            run.set(LOST, run.microbatch, e)
            return None
        return codes.tolist()

    def _where(self, r: int) -> str:
        return f"rank {r} (stage {r // self.data_parallel}, replica {r % self.data_parallel})"

    def _error(self, run: Outcome, codes: Optional[list], learn: bool) -> BaseException:
        what = "step" if learn else "predict"
        unchanged = "this rank's stage was restored" if learn and self.atomic else "this rank's stage is as it stopped"
        raised = [r for r, (c, _) in enumerate(codes or []) if c == RAISED]
        if run.code == RAISED:
            others = "every rank stopped" if codes is not None else "the other ranks could not be told"
            note = (f"PipelineLearner.{what}: raised on {self._where(self.rank)} at microbatch {run.microbatch}; "
                    f"{others}; {unchanged}")
            if hasattr(run.error, "add_note"):
                run.error.add_note(note)
            return run.error
        if run.code == LOST or codes is None:
            err = PipelineError(f"PipelineLearner.{what}: communication failed on {self._where(self.rank)} at "
                                f"microbatch {run.microbatch} ({run.lost}); {unchanged}; the process group may be "
                                f"unusable (restart every rank, e.g. from a checkpoint)", codes)
            err.__cause__ = run.lost
            return err
        origin = raised or [r for r, (c, _) in enumerate(codes) if c == LOST]
        where = ", ".join(f"{self._where(r)} at microbatch {codes[r][1]}" for r in origin)
        kind = "raised" if raised else "lost its connection"
        return PipelineError(f"PipelineLearner.{what}: {where} {kind} (its error is raised there); this rank "
                             f"stopped; {unchanged}", codes)

    def full_state_dict(self) -> Optional[dict]:
        """The whole model's state_dict (CPU tensors) on rank 0, None elsewhere; call it on every rank."""
        mine = None
        if self.replica == 0:
            mine = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        parts = [None] * self.world if self.rank == 0 else None
        dist.gather_object(mine, parts, dst=0, group=self.group)
        if self.rank != 0:
            return None
        out: dict = {}
        for part in parts:  # ranks in order: replica 0's stages in order
            out.update(part or {})
        return out

    def load_full_state_dict(self, state: dict) -> None:
        """Load this rank's stage from a whole model's state_dict (e.g. ``full_state_dict()``, saved and
        loaded on every rank)."""
        keys = self.module.state_dict().keys()
        missing = [k for k in keys if k not in state]
        if missing:
            raise KeyError(f"PipelineLearner.load_full_state_dict: the state_dict lacks this stage's {missing}")
        self.module.load_state_dict({k: state[k] for k in keys})
