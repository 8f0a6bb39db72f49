"""Continual-learning baselines on backprop: EWC, online EWC, SI, LwF and experience replay.

Each trains the same model as ``bp`` with the same optimizer and adds one thing at the task
boundaries (docs/algorithms.md §1.8 lists the field's class-incremental anchors):

- ``ewc`` (Kirkpatrick et al. 2017): after each task, the diagonal empirical Fisher F of the task's
  training loss at the task's final weights theta*; later tasks add (lambda / 2) sum F (theta - theta*)^2
  per earlier task. ``ewc-online`` (Schwarz et al. 2018) keeps one F, decayed by gamma and summed, and
  one anchor, the latest weights.
- ``si`` (Zenke et al. 2017): the path integral w = sum -g * delta theta over each task's steps (g the
  gradient of the loss the step minimised, as van de Ven's implementation); at the task's end
  Omega += w / ((theta - theta_start)^2 + xi); later steps add c sum Omega (theta - theta*)^2.
- ``lwf`` (Li and Hoiem 2016): a frozen copy of the model after each task; later steps add
  alpha T^2 KL(softmax(z_old / T) || softmax(z / T)) on the logits of the classes seen so far.
- ``replay``: a class-balanced buffer of at most ``replay_size`` training samples of the finished
  tasks (a seeded random choice per class, re-balanced after each task); each step of a later task
  trains on its batch plus as many buffer samples (drawn with the run's generator).

With lambda, c or alpha 0 the penalty is still computed and added (times 0), so such a run equals
``bp`` exactly: the tests use that to show the machinery alone changes nothing.
"""
from __future__ import annotations

import copy
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FISHER_SAMPLES = 1000  # per task: per-sample gradients on the first 1000 samples of the task's training set


class Continual:
    """No-op hooks of a training step: ``mix`` a batch, add a ``penalty``, ``after_step``, ``end_task``."""

    def mix(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return x, y

    def penalty(self, x: Tensor, out: Tensor) -> Optional[Tensor]:
        return None

    def after_step(self) -> None:
        pass

    def end_task(self, x: Tensor, y: Tensor, classes: list[int]) -> None:
        pass


def _params(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


class EWC(Continual):
    """Elastic weight consolidation; ``online``: one decayed Fisher and the latest anchor.

    Args:
        model: the trained network.
        loss_fn: ``loss_fn(out Tensor[B, N], y Tensor[B]) -> Tensor[]``, the training loss.
        lam: lambda (>= 0). gamma: the online decay (ignored unless ``online``).
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, lam: float, online: bool = False, gamma: float = 1.0):
        self.model, self.loss_fn, self.lam, self.online, self.gamma = model, loss_fn, float(lam), online, float(gamma)
        self.terms: list[tuple[list[Tensor], list[Tensor]]] = []  # (Fisher, anchor) per task (online: one)

    def fisher(self, x: Tensor, y: Tensor) -> list[Tensor]:
        """Mean over (up to FISHER_SAMPLES) samples of the squared per-sample gradient of the loss."""
        params = _params(self.model)
        acc = [torch.zeros_like(p) for p in params]
        n = min(len(x), FISHER_SAMPLES)
        was_training = self.model.training
        self.model.eval()
        dev = params[0].device
        for i in range(n):
            out = self.model(x[i:i + 1].to(dev))
            grads = torch.autograd.grad(self.loss_fn(out, y[i:i + 1].to(dev)), params, allow_unused=True)
            for a, g in zip(acc, grads):
                if g is not None:
                    a.add_(g.detach() ** 2)
        self.model.train(was_training)
        return [a / max(n, 1) for a in acc]

    def end_task(self, x, y, classes):
        fisher, anchor = self.fisher(x, y), [p.detach().clone() for p in _params(self.model)]
        if self.online and self.terms:
            old = self.terms[0][0]
            fisher = [self.gamma * f0 + f for f0, f in zip(old, fisher)]
            self.terms = []
        self.terms.append((fisher, anchor))

    def penalty(self, x, out):
        if not self.terms:
            return None
        params = _params(self.model)
        total = sum((f * (p - a) ** 2).sum()
                    for fisher, anchor in self.terms for f, p, a in zip(fisher, params, anchor))
        return 0.5 * self.lam * total


class SI(Continual):
    """Synaptic intelligence.

    Args:
        model: the trained network. c: the penalty's strength (>= 0). xi: the damping (> 0).
    """

    def __init__(self, model: nn.Module, c: float, xi: float):
        self.model, self.c, self.xi = model, float(c), float(xi)
        params = _params(model)
        self.w = [torch.zeros_like(p) for p in params]
        self.omega = [torch.zeros_like(p) for p in params]
        self.start = [p.detach().clone() for p in params]  # theta at the task's start
        self.anchor: Optional[list[Tensor]] = None
        self.before: Optional[list[Tensor]] = None
        self.grads: Optional[list[Tensor]] = None

    def penalty(self, x, out):
        self.before = [p.detach().clone() for p in _params(self.model)]
        if self.anchor is None:
            return None
        return self.c * sum((o * (p - a) ** 2).sum() for o, p, a in zip(self.omega, _params(self.model), self.anchor))

    def after_step(self):
        for w, p, b in zip(self.w, _params(self.model), self.before):
            if p.grad is not None:
                w.add_(-p.grad.detach() * (p.detach() - b))

    def end_task(self, x, y, classes):
        params = _params(self.model)
        for o, w, p, s in zip(self.omega, self.w, params, self.start):
            o.add_(w / ((p.detach() - s) ** 2 + self.xi))
            w.zero_()
        self.anchor = [p.detach().clone() for p in params]
        self.start = [p.detach().clone() for p in params]


class LwF(Continual):
    """Learning without forgetting: distillation on the previous model's logits of the classes seen so far.

    Args:
        model: the trained network. alpha: the distillation weight (>= 0). temperature: T (> 0).
    """

    def __init__(self, model: nn.Module, alpha: float, temperature: float):
        self.model, self.alpha, self.t = model, float(alpha), float(temperature)
        self.old: Optional[nn.Module] = None
        self.seen: list[int] = []

    def end_task(self, x, y, classes):
        self.seen = sorted(set(self.seen) | set(classes))
        self.old = copy.deepcopy(self.model).eval()
        for p in self.old.parameters():
            p.requires_grad_(False)

    def penalty(self, x, out):
        if self.old is None:
            return None
        with torch.no_grad():
            target = F.softmax(self.old(x)[:, self.seen] / self.t, dim=1)
        log_p = F.log_softmax(out[:, self.seen] / self.t, dim=1)
        return self.alpha * self.t ** 2 * F.kl_div(log_p, target, reduction="batchmean")


class Replay(Continual):
    """Experience replay from a class-balanced buffer of at most ``size`` samples of the finished tasks.

    Args:
        size: the buffer's capacity (>= 1). generator: the run's generator (buffer choice and draws).
    """

    def __init__(self, size: int, generator: torch.Generator):
        self.size, self.gen = int(size), generator
        self.per_class: dict[int, tuple[Tensor, Tensor]] = {}
        self.x: Optional[Tensor] = None
        self.y: Optional[Tensor] = None

    def end_task(self, x, y, classes):
        for c in classes:
            sel = (y == c).nonzero().flatten().cpu()
            self.per_class[c] = (x[sel.to(x.device)], y[sel.to(y.device)])
        quota = max(self.size // len(self.per_class), 1)
        for c, (xc, yc) in list(self.per_class.items()):
            if len(yc) > quota:
                keep = torch.randperm(len(yc), generator=self.gen)[:quota].to(yc.device)
                self.per_class[c] = (xc[keep], yc[keep])
        self.x = torch.cat([v[0] for v in self.per_class.values()])
        self.y = torch.cat([v[1] for v in self.per_class.values()])

    def mix(self, x, y):
        if self.y is None:
            return x, y
        idx = torch.randint(len(self.y), (len(y),), generator=self.gen).to(self.y.device)
        return torch.cat([x, self.x[idx].to(x.device)]), torch.cat([y, self.y[idx].to(y.device)])


def make_continual(args, method: str, model: nn.Module, loss_fn: Callable, seed: int) -> Continual:
    """The hooks of a bp-family method (bp and bp-surrogate: none)."""
    if method in ("ewc", "ewc-online"):
        return EWC(model, loss_fn, args.ewc_lambda, online=method == "ewc-online", gamma=args.ewc_gamma)
    if method == "si":
        return SI(model, args.si_c, args.si_xi)
    if method == "lwf":
        return LwF(model, args.lwf_alpha, args.lwf_temperature)
    if method == "replay":
        return Replay(args.replay_size, torch.Generator().manual_seed(10007 + int(seed)))
    return Continual()
