"""Pieces shared by the NACA layers: activations by name and the fixed NI matrix."""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "identity": lambda t: t,
}

# In-place forms, for a forward that records for a learner (no autograd): z's
# buffer becomes h, so the layer keeps one B x H tensor instead of two.
ACTIVATIONS_INPLACE: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh_,
    "sigmoid": torch.sigmoid_,
    "relu": torch.relu_,
    "identity": lambda t: t,
}

NI_INITS = ("uniform", "normal", "beta", "zeros")


def activation_fn(name: str) -> Callable[[Tensor], Tensor]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


class Recording:
    """Mixin of the trained layers: ``record`` (set by the learners), ``saved``
    (what the forward kept) and ``sink`` are plain attributes, set without
    ``nn.Module.__setattr__``'s parameter/buffer/module bookkeeping, which costs more
    than the rest of a small step's Python (they are set a few times per layer per step).

    ``sink``: None (the class default), or a callable ``sink(layer, saved)`` that a
    learner sets while it records: the forward then hands what it would keep to the
    sink instead of storing it in ``saved`` (the NACA learner updates the layer right
    there and keeps nothing; see ``learn.naca``).
    """

    _PLAIN = frozenset(("record", "saved", "sink"))
    sink = None

    def __setattr__(self, name, value):
        if name in Recording._PLAIN:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


def keep(layer, saved: tuple) -> None:
    """Hand what the forward recorded to the layer's sink, or store it in ``layer.saved``."""
    sink = layer.sink
    if sink is None:
        layer.saved = saved
    else:
        sink(layer, saved)


def activate_and_record(layer, x: Tensor, z: Tensor) -> Tensor:
    """h = act(z); when the layer records for a learner, keep (x, h) (``keep``: in
    ``layer.saved``, or handed to ``layer.sink``). x: (B, ...) input, z: pre-activation.

    The NACA learner takes act' from h (the update ops' ``from_output=True``), so z
    is not kept; without autograd (the learners' forward) h overwrites z in place.
    ``layer.record == "preact"`` keeps (x, z) instead (see learn.common.recording).
    """
    if not layer.record:
        return layer._act(z)
    if layer.record == "preact":  # the learner asked for z (SBP)
        keep(layer, (x.detach(), z.detach()))
        return layer._act(z)
    if torch.is_grad_enabled() and (z.requires_grad or x.requires_grad):
        h = layer._act(z)
    else:
        h = ACTIVATIONS_INPLACE[layer.activation](z)
    keep(layer, (x.detach(), h.detach()))
    return h


def make_ni(
    num_classes: int,
    shape: Sequence[int],
    init: str = "uniform",
    seed: Optional[int] = None,
    dtype: Optional[torch.dtype] = None,
    device=None,
) -> Tensor:
    """The fixed random neuromodulator projection NI, shape (2N, *shape), values in [0, 1].

    init: 'uniform' U(0,1) (the default), 'normal' N(0.5, 1) clamped to [0, 1],
    'beta' Beta(0.5, 0.5) (drawn as sin^2(pi U / 2)), or 'zeros'. With a seed the
    draw uses its own generator; without one, torch's global RNG (so
    torch.manual_seed fixes it, as it fixes weight initialisation).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if init not in NI_INITS:
        raise ValueError(f"ni_init must be one of {NI_INITS}, got {init!r}")
    size = (2 * num_classes, *shape)
    gen = None
    if seed is not None:
        gen = torch.Generator().manual_seed(int(seed))
    if init == "zeros":
        ni = torch.zeros(size, dtype=torch.float64)
    elif init == "uniform":
        ni = torch.rand(size, generator=gen, dtype=torch.float64)
    elif init == "normal":
        ni = (0.5 + torch.randn(size, generator=gen, dtype=torch.float64)).clamp_(0.0, 1.0)
    else:  # arcsine law: Beta(0.5, 0.5) = sin^2(pi U / 2)
        ni = torch.sin(math.pi / 2 * torch.rand(size, generator=gen, dtype=torch.float64)) ** 2
    return ni.to(dtype=dtype or torch.get_default_dtype(), device=device)
