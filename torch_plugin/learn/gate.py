"""NACA's input-derived gate on a hidden layer (docs/algorithms.md §1.4, the authors' class-incremental code)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InputGate:
    """The gate on a hidden NACALinear or NACASpikingLinear.

    m is the batch mean of the layer input (spiking: over time steps and batch, i.e. the
    input rates, which the Bernoulli code makes the pixel means), resampled to the layer's
    H units (nearest); ``mask[j] = sigmoid(1000 (m[j] - (max m - delta)))``. The mask
    multiplies the layer's output (activity: h, or the spikes of every step) through a
    forward hook and, through ``scale_grads``, its update (plasticity). The authors' SNN
    code takes m from the network's input image for every hidden layer: the same thing for
    one hidden layer, the papers' class-incremental networks.

    Args:
        layer: the hidden layer; its forward input is ``Tensor[B, I]`` or spiking ``Tensor[T, B, I]``.
        delta: the gate's width in the input's raw units (>= 0).

    Attributes:
        mask: ``Tensor[H]`` of the last forward (None before the first).
    """

    def __init__(self, layer: nn.Module, delta: float):
        delta = float(delta)
        if not delta >= 0.0:
            raise ValueError(f"InputGate: argument 'delta' expected a finite value >= 0, got {delta!r}")
        self.layer, self.delta, self.mask = layer, delta, None
        self.handle = layer.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        x = inputs[0].detach()
        m = x.reshape(-1, x.shape[-1]).mean(0).view(1, 1, -1)  # (B, I) or spiking (T, B, I)
        m = F.interpolate(m, size=output.shape[-1], mode="nearest").view(-1)
        self.mask = torch.sigmoid(1000.0 * (m - (m.max() - self.delta)))
        return output * self.mask

    def scale_grads(self) -> None:
        """Multiply the layer's ``.grad`` (weight rows ``[H, I]``, bias ``[H]``) by the last mask."""
        w, b = self.layer.weight, self.layer.bias
        if w.grad is not None:
            w.grad.mul_(self.mask.view(-1, 1))
        if b is not None and b.grad is not None:
            b.grad.mul_(self.mask)

    def remove(self) -> None:
        """Take the gate off the layer (its forward hook)."""
        self.handle.remove()
