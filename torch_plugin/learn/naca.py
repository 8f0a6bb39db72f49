"""The NACA learner: one forward, then purely local updates, no backward()."""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from ..nn import NACAConv2d, NACALinear, NACAOutput, NACASpikingLinear
from . import nonfinite
from .common import check_label_range, check_only_these_train, recording, targets


class NACA:
    """Trains a model built of NACA layers with NACA instead of ``loss.backward()``.

    The model is any ``nn.Module`` whose trainable layers are ``NACALinear`` /
    ``NACAConv2d`` (hidden, modulated by f(E[y] NI)) and one ``NACAOutput``
    (trained by its own error sigmoid(z) - onehot(y)); parameter-free torch
    layers (Flatten, pooling, dropout, activations) are simply run forward.

    Args:
        model: the network. Its forward must return the output layer's logits.
        lr: learning rate of the in-place SGD step (used when ``optimizer`` is None).
            The updates sum over the batch, as in the reference code.
        optimizer: any torch optimizer over the model's parameters. The NACA
            update is then written to ``.grad`` as a pseudo-gradient and
            ``optimizer.step()`` applies it (Adam in the paper's classification code).
        lam, theta: the modulation curve's parameters (0.5, 1.2).

    ``step(x, y)`` runs the forward under ``torch.no_grad()`` and updates the
    weights in place; it returns the logits (computed before the update).

    Spiking models (ALGORITHMS.md 1.5): when the trainable layers are
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
                 check_labels: bool = True, membrane_chain: bool = False):
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
        spiking = [m for m in model.modules() if isinstance(m, NACASpikingLinear)]
        if spiking:
            self._init_spiking(model, spiking)
            return
        if self.membrane_chain:
            raise ValueError("NACA: membrane_chain=True applies to spiking models (NACASpikingLinear layers)")
        self.spiking = False
        self.hidden = [m for m in model.modules() if isinstance(m, (NACALinear, NACAConv2d))]
        outputs = [m for m in model.modules() if isinstance(m, NACAOutput)]
        if len(outputs) != 1:
            raise ValueError(f"NACA: the model needs exactly one NACAOutput layer, found {len(outputs)}")
        self.output = outputs[0]
        for layer in self.hidden:
            if layer.num_classes != self.output.num_classes:
                raise ValueError(
                    f"NACA: hidden layer {layer} has num_classes={layer.num_classes} but the output "
                    f"layer has {self.output.num_classes}"
                )
        check_only_these_train(model, self.hidden + [self.output], "NACA")
        self.steps = 0

    def _init_spiking(self, model: nn.Module, layers: list) -> None:
        self.spiking = True
        outputs = [m for m in layers if m.is_output]
        if len(outputs) != 1:
            raise ValueError(f"NACA: a spiking model needs exactly one NACASpikingLinear with is_output=True, "
                             f"found {len(outputs)}")
        if any(isinstance(m, (NACALinear, NACAConv2d, NACAOutput)) for m in model.modules()):
            raise ValueError("NACA: a model mixing spiking and non-spiking NACA layers is not supported")
        self.output = outputs[0]
        self.hidden = [m for m in layers if not m.is_output]
        for layer in self.hidden:
            if layer.num_classes != self.output.num_classes:
                raise ValueError(f"NACA: hidden layer {layer} has num_classes={layer.num_classes} but the output "
                                 f"layer has {self.output.num_classes}")
        check_only_these_train(model, layers, "NACA")
        self.steps = 0

    def _spiking_update(self, layer, signal: Tensor, lr: float, into_grad: bool, all_steps: bool) -> None:
        if layer.saved is None:
            raise RuntimeError(f"NACA: layer {layer} was not used in the model's forward")
        pre, volts, spikes = layer.saved
        w, b = targets([layer.weight, layer.bias], into_grad or None)
        if self.membrane_chain:
            lif = layer.lif
            ops.naca_snn_chain_update_(w, b, pre, volts, spikes, signal, lif.decay, lif.threshold, layer.lens,
                                       lif.reset, layer.current, lr)
        else:
            ops.naca_snn_update_(w, b, pre, volts, spikes, signal, layer.threshold, layer.lens, lr, all_steps)
        layer.saved = None

    @property
    def num_classes(self) -> int:
        return self.output.num_classes

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One NACA training step on a batch: x (B, ...), y (B,) int64 labels."""
        guard = self.skip_nonfinite
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=False)
        elif guard:
            nonfinite.zero_grads(nonfinite.trained_params(self))
        logits = self.local_update(x, y, into_grad=self.optimizer is not None or guard)
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

        into_grad False: weights -= lr * update, in place. True: the update (the
        sum over the batch) is added to each parameter's ``.grad`` (created as
        zeros when missing) and the weights are left alone. None: True when the
        learner has an optimizer. Free of graph breaks: ``torch.compile(
        learner.local_update, fullgraph=True)`` works (see ``learn.compile_step``).
        Returns the logits (the spiking model's output rates).
        """
        if y.dtype != torch.long or y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"NACA.step: y must be int64 of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}")
        # The labels' range is read on the host once per step, here, before anything
        # is written; the fused ops then skip their own read (one sync per hidden
        # layer on CUDA). Under torch.compile (no host reads) the ops check instead.
        op_checks = self.check_labels
        if self.check_labels and not torch.compiler.is_compiling():
            check_label_range(y, self.num_classes, "NACA.step")
            op_checks = False
        into_grad = self.optimizer is not None if into_grad is None else bool(into_grad)
        if not self.model.training:  # (a recursive train() per step costs more than the checks)
            self.model.train()
        lr = -1.0 if into_grad else self.lr
        with torch.no_grad(), recording(self.hidden + [self.output]):
            logits = self.model(x)
            if self.spiking:
                # Unchecked labels: a sample whose label is out of range gets a zero signal in
                # every layer (f(NL) of its zero NL row is not zero, hence the mask).
                valid = None if self.check_labels else ((y >= 0) & (y < self.num_classes)).unsqueeze(1)
                for layer in self.hidden:
                    signal = ops.modulation(ops.neuromodulator(y, layer.ni, check_labels=op_checks),
                                            self.lam, self.theta)
                    self._spiking_update(layer, signal if valid is None else signal * valid, lr, into_grad,
                                         self.all_steps)
                spikes = self.output.saved[2] if self.output.saved is not None else None
                if spikes is not None:
                    if valid is None:
                        spikes = spikes.mean(0) - F.one_hot(y, self.output.num_classes).to(spikes.dtype)
                    else:  # no one_hot (a device assert on CUDA for a bad label)
                        target = y.unsqueeze(1) == torch.arange(self.output.num_classes, device=y.device)
                        spikes = (spikes.mean(0) - target.to(spikes.dtype)) * valid
                self._spiking_update(self.output, spikes, lr, into_grad, True)  # every step (see the docstring)
            else:
                # The hidden layers from the last to the first, then the output layer: the
                # updates are independent (each reads only its own saved forward tensors);
                # in this order each layer's input, kept by the layer above, is freed before
                # the larger, earlier layers' deltas are allocated (lower peak memory). The
                # labels were validated above (or, under torch.compile, by every op).
                for layer in reversed(self.hidden):
                    self._hidden_update(layer, y, lr, into_grad, op_checks)
                self._output_update(y, lr, into_grad, op_checks)
        return logits

    def _hidden_update(self, layer, y: Tensor, lr: float, into_grad: bool, check_labels: bool) -> None:
        if layer.saved is None:
            raise RuntimeError(f"NACA: layer {layer} was not used in the model's forward")
        pre, h = layer.saved  # the layer keeps its output h = act(z); act' is taken from h
        w, b = targets([layer.weight, layer.bias], into_grad or None)
        if isinstance(layer, NACAConv2d):
            ops.naca_conv_update_(w, b, pre, h, y, layer.ni, layer.stride, layer.padding, layer.dilation,
                                  layer.groups, layer.activation, lr, self.lam, self.theta, from_output=True,
                                  check_labels=check_labels)
        else:
            ops.naca_hidden_update_(w, b, pre, h, y, layer.ni, layer.activation, lr, self.lam, self.theta,
                                    from_output=True, check_labels=check_labels)
        layer.saved = None

    def _output_update(self, y: Tensor, lr: float, into_grad: bool, check_labels: bool) -> None:
        out = self.output
        if out.saved is None:
            raise RuntimeError("NACA: the output layer was not used in the model's forward")
        h, z = out.saved
        w, b = targets([out.weight, out.bias], into_grad or None)
        # e = sigmoid(z) - onehot(y), times sigmoid'(z) or not, in one kernel; the labels were
        # checked already (or the learner runs unchecked: bad samples then learn nothing).
        ops.naca_output_update_(w, b, h, z, y, lr, out.sigmoid_grad, check_labels=check_labels)
        out.saved = None

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
        self.lr, self.lam, self.theta = float(state["lr"]), float(state["lam"]), float(state["theta"])
        self.steps = int(state["steps"])
        self.all_steps = bool(state.get("all_steps", self.all_steps))
        self.membrane_chain = bool(state.get("membrane_chain", self.membrane_chain))
        self.skip_nonfinite = bool(state.get("skip_nonfinite", self.skip_nonfinite))
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.check_labels = bool(state.get("check_labels", self.check_labels))
        if (state.get("optimizer") is None) != (self.optimizer is None):
            raise ValueError("NACA.load_state_dict: optimizer state given without an optimizer, or vice versa")
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
