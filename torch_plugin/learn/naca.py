"""The NACA learner: one forward whose layers learn as they go, purely local updates, no backward()."""
from __future__ import annotations

import math
import warnings
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import _disable_current_modes

from ..nn import NACAConv2d, NACALinear, NACAOutput, NACASpikingLinear
from ..nn.common import warn_unsupported_naca_activations
from . import nonfinite, stream
from .common import check_label_range, check_only_these_train, recording


class NACA:
    """Trains a model built of NACA layers with NACA instead of ``loss.backward()``.

    The model is any ``nn.Module`` whose trainable layers are ``NACALinear`` /
    ``NACAConv2d`` (hidden, modulated by f(E[y] NI)) and one ``NACAOutput``
    (trained by its own error sigmoid(z) - onehot(y)); parameter-free torch
    layers (Flatten, pooling, dropout, activations) are simply run forward.

    Args:
        model: the network. Its forward must return the output layer's logits.
        lr: learning rate of the in-place SGD step (used when ``optimizer`` is None),
            finite and >= 0. The updates sum over the batch, as in the reference code.
        optimizer: any torch optimizer holding every parameter the learner trains
            (checked here; freeze a layer with a param group of lr=0). The NACA
            update is then written to ``.grad`` as a pseudo-gradient and
            ``optimizer.step()`` applies it (Adam in the paper's classification code).
        lam, theta: the modulation curve's parameters (0.5, 1.2; lam > 0, both finite).
        streaming: each layer learns as soon as its forward output exists and keeps
            nothing (True, default; the step's memory does not grow with depth), or
            every step keeps its whole forward until it has completed (False).
            The weights are the same bits either way (``learn.stream``).
        hidden_only: the model holds hidden layers and no output layer (a stage of a
            pipeline before the last, ``distributed.PipelineLearner``): ``step``
            trains them on the labels and returns the model's output activations.
        all_steps, membrane_chain: the spiking rules (below).
        skip_nonfinite: skip and count a step whose update holds a NaN or an Inf (below).
        check_labels: check the labels' range in every step (below).

    ``step(x, y)`` runs the forward under ``torch.no_grad()`` and updates the
    weights in place; it returns the logits (computed before the update). Each
    hidden layer's update is applied when its forward ends and the output layer's
    last; the updates are independent (each reads only its own layer's input and
    output), so this equals updating every layer after the whole forward.

    A step that raises changes nothing (no weight, bias, ``.grad``, optimizer state
    or count): inputs and labels are checked first, and the first step for each
    input signature (shapes, dtypes, devices) runs the whole forward and checks every
    update before writing any (``learn.stream`` has the details and the one limit:
    a streamed forward whose errors depend on the data's values, which
    ``streaming=False`` covers).

    Weight sharing: a layer called several times in one forward, or holding a
    parameter another module also holds, learns the sum of its calls' updates (as
    backprop sums their gradients), each computed from the weights the forward
    used; its calls are kept until the forward ends.

    Spiking models (docs/algorithms.md §1.5): when the trainable layers are
    ``NACASpikingLinear`` (e.g. ``models.spiking_mlp``), the hidden ones learn
    with ``ops.naca_snn_update_`` modulated by f(E[y] NI), and the one with
    ``is_output=True`` by its rate error mean_t(s_t) - onehot(y); the model's
    forward returns the output firing rates, which ``step`` returns.
    ``all_steps`` sums the hidden layers' eligibility over every time step
    (default) or uses t = T only (the authors' classification code, whose hidden
    layers receive f(NL) at the last step only); the output layer always learns
    from every step, as theirs does (their loss is on the rate sum_t s_t / T, so
    every step's output spike carries the error). Not modelled: their membrane
    update mem.detach() * decay * (1 - s_{t-1}) keeps s_{t-1} in the graph, so the
    last step's signal also reaches step T-1 through the reset term (about a tenth
    of the hidden update at decay 0.2). ``membrane_chain=True`` is the
    authors' class-incremental SNN rule (``ops.naca_snn_chain_update_``): the
    signal enters the last step's spikes and is carried back through the
    membrane recurrence to every step, the eligibility standing in for the
    spike's derivative (their autograd through an undetached membrane); with
    ``NACASpikingLinear(current='sigmoid', lens=0.2)`` it is their network.
    ``all_steps`` is then not used.

    ``skip_nonfinite=True``: a step whose update holds a NaN or an Inf (bad
    input, an exploding layer) leaves the weights and the optimizer untouched
    and is counted in ``skipped_steps`` (see ``learn.nonfinite``; it costs one
    reduction and one host read per step). Off by default: the update is applied
    as computed, as ``loss.backward(); opt.step()`` would.

    ``check_labels=True`` (default): labels outside [0, N) raise a ValueError
    before anything is written; the learner reads their range once per step (on
    CUDA one device synchronization) and the ops skip their own checks.
    ``check_labels=False``, for labels validated once up front (a dataset's): no
    host read in the step, so a CUDA step never waits for the GPU; a sample
    whose label is out of range then does not learn (zero update), in every layer.
    """

    def __init__(self, model: nn.Module, lr: float = 1e-3, optimizer: Optional[torch.optim.Optimizer] = None,
                 lam: float = 0.5, theta: float = 1.2, all_steps: bool = True, skip_nonfinite: bool = False,
                 check_labels: bool = True, membrane_chain: bool = False, streaming: bool = True,
                 hidden_only: bool = False):
        _check_scalars("NACA", lr, lam, theta)
        self.model = model
        self.check_labels = bool(check_labels)
        self.skip_nonfinite = bool(skip_nonfinite)
        self.skipped_steps = 0
        self.lr = float(lr)
        self.optimizer = optimizer
        self.lam = float(lam)
        self.theta = float(theta)
        self.all_steps = bool(all_steps)
        self.membrane_chain = bool(membrane_chain)
        self.streaming = bool(streaming)
        self.hidden_only = bool(hidden_only)
        spiking = [m for m in model.modules() if isinstance(m, NACASpikingLinear)]
        if spiking:
            self._init_spiking(model, spiking)
        else:
            self._init_ann(model)
        self._init_stream(model)
        self.steps = 0

    def _init_ann(self, model: nn.Module) -> None:
        if self.membrane_chain:
            raise ValueError("NACA: membrane_chain=True applies to spiking models (NACASpikingLinear layers)")
        self.spiking = False
        self.hidden = [m for m in model.modules() if isinstance(m, (NACALinear, NACAConv2d))]
        warn_unsupported_naca_activations(self.hidden)
        outputs = [m for m in model.modules() if isinstance(m, NACAOutput)]
        self.output = self._the_output(outputs, "the model needs exactly one NACAOutput layer")
        self._check_classes()
        check_only_these_train(model, self._trained_layers(), "NACA")

    def _init_spiking(self, model: nn.Module, layers: list) -> None:
        self.spiking = True
        outputs = [m for m in layers if m.is_output]
        self.hidden = [m for m in layers if not m.is_output]
        self.output = self._the_output(outputs, "a spiking model needs exactly one NACASpikingLinear with "
                                                "is_output=True")
        if any(isinstance(m, (NACALinear, NACAConv2d, NACAOutput)) for m in model.modules()):
            raise ValueError("NACA: a model mixing spiking and non-spiking NACA layers is not supported")
        self._check_classes()
        check_only_these_train(model, layers, "NACA")

    def _the_output(self, outputs: list, kind: str) -> Optional[nn.Module]:
        """The output layer (None with hidden_only, which needs hidden layers and no output layer)."""
        if self.hidden_only:
            if outputs or not self.hidden:
                raise ValueError(f"NACA: hidden_only=True needs hidden layers and no output layer, found "
                                 f"{len(self.hidden)} hidden and {len(outputs)} output")
            return None
        if len(outputs) != 1:
            raise ValueError(f"NACA: {kind}, found {len(outputs)}")
        return outputs[0]

    def _trained_layers(self) -> list:
        """The trained layers: the hidden ones, then the output layer (unless hidden_only)."""
        return self.hidden + ([] if self.output is None else [self.output])

    def _check_classes(self) -> None:
        n = self.num_classes
        for layer in self.hidden:
            if layer.num_classes != n:
                raise ValueError(f"NACA: hidden layer {layer} has num_classes={layer.num_classes} but the "
                                 f"{'first hidden' if self.output is None else 'output'} layer has {n}")

    def _init_stream(self, model: nn.Module) -> None:
        self.layers = self._trained_layers()  # the trained layers; a layer's index is its sink's
        names = {id(m): name for name, m in model.named_modules()}
        self._names = [names.get(id(m), type(m).__name__) or "(the model)" for m in self.layers]
        if self.optimizer is not None:
            held = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
            missing = [f"{n}.{k}" if n else k for n, m in zip(self._names, self.layers)
                       for k, p in m.named_parameters(recurse=False) if id(p) not in held]
            if missing:
                raise ValueError(
                    f"NACA: the optimizer does not hold these parameters the learner trains: {missing} (give it "
                    f"model.parameters(); to freeze a layer, put its parameters in a param group with lr=0)")
        # Layers whose updates wait for the end of the forward: tied ones now, repeated calls once seen.
        self._defer = stream.tied_layers(model, self.layers)
        self._sinks = [self._sink(i) for i in range(len(self.layers))]
        self._signatures: dict = {}  # validated signature -> call count of each trained layer
        self._st: Optional[stream.StepState] = None

    def _sink(self, i: int):
        return lambda layer, saved: self._on_forward(i, layer, saved)

    @property
    def num_classes(self) -> int:
        return (self.hidden[0] if self.output is None else self.output).num_classes

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One NACA training step on a batch: the forward under ``torch.no_grad()``, each layer's
        update in place (see the class).

        Args:
            x (Tensor[B, ...]): the model's input (spiking models: what their encoder takes).
            y (Tensor[B]): int64 labels in [0, N).

        Returns:
            Tensor[B, N]: the logits (spiking models: the output firing rates; ``hidden_only``: the
            model's output activations), computed before the update.

        Raises:
            ValueError: bad labels or inputs (nothing is written).
        """
        return self._step(x, y, self._check_inputs(x, y))

    def _step(self, x: Tensor, y: Tensor, op_checks: bool) -> Tensor:
        """``step`` after its input checks (``compile_step`` compiles this)."""
        guard = self.skip_nonfinite
        st = self._prepare(x, y, self.optimizer is not None or guard, op_checks)
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=False)
        elif guard:
            nonfinite.zero_grads(nonfinite.trained_params(self))
        logits = self._run(x, st)
        if guard and not nonfinite.all_finite(p.grad for p in nonfinite.trained_params(self)):
            self.skipped_steps += 1
        elif self.optimizer is not None:
            self.optimizer.step()
        elif guard:
            nonfinite.sgd_from_grads(nonfinite.trained_params(self), self.lr)
        self.steps += 1
        return logits

    def local_update(self, x: Tensor, y: Tensor, into_grad: Optional[bool] = None) -> Tensor:
        """The forward and the local updates of ``step``, without zero_grad, optimizer.step or the step count.

        x: (B, ...) a batch, y: (B,) int64 labels. into_grad False: weights -= lr * update,
        in place. True: the update (the sum over the batch) is added to each parameter's
        ``.grad`` (created as zeros when missing) and the weights are left alone. None:
        True when the learner has an optimizer. Each layer's update is applied as its
        forward ends (``learn.stream``). Free of graph breaks: ``torch.compile(
        learner.local_update, fullgraph=True)`` works (``learn.compile_step`` adds the
        eager validation of each new input signature, which a compiled call skips).
        Returns the logits (B, N) (the spiking model's output rates).
        """
        into_grad = self.optimizer is not None if into_grad is None else bool(into_grad)
        return self._local_update(x, y, into_grad, self._check_inputs(x, y))

    def _local_update(self, x: Tensor, y: Tensor, into_grad: bool, op_checks: bool) -> Tensor:
        return self._run(x, self._prepare(x, y, into_grad, op_checks))

    def _check_inputs(self, x: Tensor, y: Tensor) -> bool:
        """Types and shapes of x and y, and (check_labels) the labels' range, before anything is written.
        Returns whether the ops must check the labels themselves (under torch.compile: no host reads)."""
        if not isinstance(x, Tensor):
            raise TypeError(f"NACA.step: x must be a torch.Tensor batch (B, ...), got {type(x).__name__}")
        if not isinstance(y, Tensor):
            raise TypeError(f"NACA.step: y must be a torch.Tensor of int64 labels, shape (B,), got "
                            f"{type(y).__name__} (e.g. torch.tensor(labels))")
        if y.dtype != torch.long or y.dim() != 1:
            raise ValueError(f"NACA.step: y must be int64 labels of shape (B,), got {y.dtype} {tuple(y.shape)}")
        if x.dim() == 0 or x.shape[0] != y.shape[0]:
            if x.dim() <= 1:
                raise ValueError(f"NACA.step: x must be a batch (B, ...) of {y.shape[0]} sample(s), as y, got shape "
                                 f"{tuple(x.shape)} (one sample: x.unsqueeze(0))")
            raise ValueError(f"NACA.step: x and y must hold as many samples: x {tuple(x.shape)} has {x.shape[0]}, "
                             f"y {tuple(y.shape)} has {y.shape[0]}")
        # The labels' range is read on the host once per step, here, before anything is
        # written; the fused ops then skip their own read (one sync per hidden layer on
        # CUDA). Under torch.compile (no host reads) the ops check instead.
        if self.check_labels and not torch.compiler.is_compiling():
            check_label_range(y, self.num_classes, "NACA.step")
            return False
        return self.check_labels

    def _signature(self, x: Tensor, y: Tensor, into_grad: bool, op_checks: bool) -> tuple:
        scalars = (self.lr, into_grad, op_checks, self.lam, self.theta, self.all_steps, self.membrane_chain)
        return stream.fingerprint(x, y, [m._parameters["weight"] for m in self.layers], scalars)

    def _validated(self, x: Tensor, y: Tensor, into_grad: bool, op_checks: bool) -> bool:
        """Whether a step on this input signature streams (``learn.stream``)."""
        return self._signature(x, y, into_grad, op_checks) in self._signatures

    def _prepare(self, x: Tensor, y: Tensor, into_grad: bool, op_checks: bool) -> stream.StepState:
        """The step's state; for a new signature (or streaming=False) the whole forward, with every
        layer's calls kept and (new signature) every update checked by a dry run: nothing written."""
        if not self.model.training:  # (a recursive train() per step costs more than the checks)
            self.model.train()
        valid = None
        if self.spiking and not self.check_labels:
            valid = ((y >= 0) & (y < self.num_classes)).unsqueeze(1)
        n = len(self.layers)
        st = stream.StepState(y, -1.0 if into_grad else self.lr, into_grad, op_checks, valid, self._defer)
        if torch.compiler.is_compiling():  # compile_step validated the signature eagerly
            if not self.streaming:
                st.keep = (True,) * n
            return st
        key = self._signature(x, y, into_grad, op_checks)
        counts = self._signatures.get(key)
        if counts is not None:
            if self.streaming:
                st.keep = tuple(d or c > 1 for d, c in zip(self._defer, counts))
                return st
        st.keep = (True,) * n
        st.logits = self._forward(x, st)
        self._check_calls(st)
        if counts is None:
            self._dry_run(st)
            if len(self._signatures) >= 64:  # (shapes that keep changing: forget the oldest)
                self._signatures.pop(next(iter(self._signatures)))
            self._signatures[key] = tuple(st.counts)
            self._defer = tuple(d or c > 1 for d, c in zip(self._defer, st.counts))
        return st

    def _forward(self, x: Tensor, st: stream.StepState) -> Tensor:
        self._st = st
        try:
            with torch.no_grad(), recording(self.layers, sinks=self._sinks):
                return self.model(x)
        finally:
            self._st = None

    def _on_forward(self, i: int, layer: nn.Module, saved: tuple) -> None:
        """Layer i's sink: keep its call, or apply its update now (its forward output exists)."""
        st = self._st
        st.counts[i] += 1
        if st.keep[i]:
            st.kept.append((i, saved))
            return
        if st.counts[i] > 1 and not torch.compiler.is_compiling():  # (_run notes what was written)
            raise RuntimeError(f"NACA: layer '{self._names[i]}' ran twice in this forward but once in the first "
                               f"step with this input signature")
        stream.write_update(self, layer, saved, st)
        st.written.append(i)

    def _run(self, x: Tensor, st: stream.StepState) -> Tensor:
        """Run the forward (unless ``_prepare`` did), streaming the updates, then apply the kept calls."""
        logits = st.logits
        if logits is None:
            if torch.compiler.is_compiling():
                logits = self._forward(x, st)
            else:
                try:
                    logits = self._forward(x, st)
                except Exception as e:
                    if st.written and hasattr(e, "add_note"):
                        e.add_note(self._partial(st, "NACA: the error came during a streamed step"))
                    raise
                self._check_calls(st)
        for i, saved in st.kept:
            stream.write_update(self, self.layers[i], saved, st)
        return logits

    def _check_calls(self, st: stream.StepState) -> None:
        """Every trained layer ran (those that streamed ran once: ``_on_forward`` checks it)."""
        for i, c in enumerate(st.counts):
            if c == 0:
                raise RuntimeError(self._partial(st, f"NACA: layer '{self._names[i]}' ({self.layers[i]}) was not "
                                                     f"used in the model's forward"))

    def _dry_run(self, st: stream.StepState) -> None:
        """Every kept update into scratch tensors: the ops check all their arguments, nothing is written
        (not even ``.grad``, which ``step`` zeroes after this). Hidden from torch dispatch modes: a
        ``FlopCounterMode`` around the step counts the step's own arithmetic, not its validation."""
        with _disable_current_modes():
            self._dry_run_updates(st)

    def _dry_run_updates(self, st: stream.StepState) -> None:
        for i, saved in st.kept:
            try:
                stream.write_update(self, self.layers[i], saved, st, dry=True)
            except Exception as e:
                if hasattr(e, "add_note"):
                    e.add_note(f"NACA: in the update of layer '{self._names[i]}'; nothing was written")
                raise

    def _partial(self, st: stream.StepState, message: str) -> str:
        if not st.written:
            return message + "; nothing was written"
        done = sorted({self._names[i] for i in st.written})
        return (f"{message}; the layers {done} were already updated by this step (a forward whose layer calls "
                f"or errors depend on the data: NACA(..., streaming=False) keeps each step's whole forward "
                f"before writing)")

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters, step count and the optimizer's state (the model saves itself)."""
        return {
            "lr": self.lr, "lam": self.lam, "theta": self.theta, "steps": self.steps, "all_steps": self.all_steps,
            "membrane_chain": self.membrane_chain,
            "skip_nonfinite": self.skip_nonfinite, "skipped_steps": self.skipped_steps,
            "check_labels": self.check_labels,
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``'s values; the saved lr, lam and theta win over the constructor's
        (a warning names those that differ). Checked before anything changes."""
        lr, lam, theta = float(state["lr"]), float(state["lam"]), float(state["theta"])
        _check_scalars("NACA.load_state_dict", lr, lam, theta)
        if (state.get("optimizer") is None) != (self.optimizer is None):
            raise ValueError("NACA.load_state_dict: optimizer state given without an optimizer, or vice versa")
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        changed = [f"{k} {old!r} -> {new!r}" for k, old, new in
                   (("lr", self.lr, lr), ("lam", self.lam, lam), ("theta", self.theta, theta))
                   if old != new and (k != "lr" or self.optimizer is None)]  # (with an optimizer lr is unused)
        if changed:
            warnings.warn(f"NACA.load_state_dict: the saved values replace the learner's: {', '.join(changed)}",
                          stacklevel=2)
        self.lr, self.lam, self.theta = lr, lam, theta
        self.steps = int(state["steps"])
        self.all_steps = bool(state.get("all_steps", self.all_steps))
        self.membrane_chain = bool(state.get("membrane_chain", self.membrane_chain))
        self.skip_nonfinite = bool(state.get("skip_nonfinite", self.skip_nonfinite))
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.check_labels = bool(state.get("check_labels", self.check_labels))


def _check_scalars(who: str, lr: float, lam: float, theta: float) -> None:
    """ValueError naming the first bad one: lr finite and >= 0 (as torch.optim), lam finite and > 0
    (the modulation curve's width), theta finite."""
    for name, v, ok, want in (("lr", lr, lambda v: v >= 0, ">= 0"), ("lam", lam, lambda v: v > 0, "> 0"),
                              ("theta", theta, lambda v: True, "")):
        try:
            if isinstance(v, (str, bytes)):  # (float() would parse them)
                raise TypeError
            f = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"{who}: {name} must be a number, got {type(v).__name__}") from None
        if not math.isfinite(f) or not ok(f):
            raise ValueError(f"{who}: {name} must be a finite number{' ' + want if want else ''}, got {v!r}")
