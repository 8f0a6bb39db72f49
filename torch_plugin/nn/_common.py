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

NI_INITS = ("uniform", "normal", "beta", "zeros")


def activation_fn(name: str) -> Callable[[Tensor], Tensor]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


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
