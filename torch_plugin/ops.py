"""Typed wrappers of the ``torch.ops.naca`` operators, and their fake kernels.

Shapes: B batch, I inputs, H hidden units, N classes, C/H/W channels and
spatial size. Ops ending in ``_`` update their first argument(s) in place,
bump their version counters and return ``None``; none of them records an
autograd graph. Every op checks its arguments and leaves the weights untouched
when it rejects a call.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = [
    "expectation_matrix",
    "neuromodulator",
    "modulation",
    "plasticity_update_",
    "naca_hidden_update_",
    "conv_plasticity_update_",
    "naca_conv_update_",
    "ACTIVATIONS",
]

ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity")


def expectation_matrix(
    num_classes: int, *, dtype: Optional[torch.dtype] = None, device: Optional[torch.device] = None
) -> Tensor:
    """E, the (N, 2N) class-expectation matrix: row c is 0.5 at columns k_c and k_c+1.

    k_c = floor(a_c / max(a) * 2(N-1)), a_c = sqrt(2 ln(N / (c+1))). For N = 10,
    k = [18, 15, 13, 11, 9, 8, 7, 5, 3, 0]. Raises when two classes share a slot.
    """
    return torch.ops.naca.expectation_matrix(num_classes, dtype=dtype, device=device)


def neuromodulator(labels: Tensor, ni: Tensor) -> Tensor:
    """NL = E[labels] @ NI.

    labels: (B,) int64 in [0, N). ni: (2N, H) or (2N, C, H, W), the fixed random
    neuromodulator projection. Returns (B, *ni.shape[1:]) with ni's dtype.
    """
    return torch.ops.naca.neuromodulator(labels, ni)


def modulation(level: Tensor, lam: float = 0.5, theta: float = 1.2) -> Tensor:
    """f(level), the piecewise-quadratic modulation curve (any shape; f(lam) = 0)."""
    return torch.ops.naca.modulation(level, lam, theta)


def plasticity_update_(
    weight: Tensor,
    bias: Optional[Tensor],
    pre: Tensor,
    preact: Tensor,
    signal: Tensor,
    activation: str,
    lr: float,
) -> None:
    """weight -= lr * (signal * act'(preact))^T @ pre; bias -= lr * sum_b(signal * act'(preact)).

    weight: (H, I), bias: (H,) or None, pre: (B, I), preact and signal: (B, H).
    activation: 'tanh', 'sigmoid', 'relu' or 'identity'. Sums over the batch.
    With signal = f(NL) it is the NACA hidden rule; with signal = the output
    error it is the output layer's delta rule. To accumulate a pseudo-gradient
    for a torch optimizer instead, pass the ``.grad`` buffers and ``lr=-1``.
    """
    torch.ops.naca.plasticity_update_(weight, bias, pre, preact, signal, activation, float(lr))


def naca_hidden_update_(
    weight: Tensor,
    bias: Optional[Tensor],
    pre: Tensor,
    preact: Tensor,
    labels: Tensor,
    ni: Tensor,
    activation: str,
    lr: float,
    lam: float = 0.5,
    theta: float = 1.2,
) -> None:
    """The fused NACA hidden-layer update: plasticity_update_ with signal = f(E[labels] @ NI).

    weight: (H, I), bias: (H,) or None, pre: (B, I), preact: (B, H),
    labels: (B,) int64, ni: (2N, H). NL and f(NL) are never stored.
    """
    torch.ops.naca.naca_hidden_update_(
        weight, bias, pre, preact, labels, ni, activation, float(lr), float(lam), float(theta)
    )


def conv_plasticity_update_(
    weight: Tensor,
    bias: Optional[Tensor],
    input: Tensor,
    preact: Tensor,
    signal: Tensor,
    stride: Sequence[int] = (1, 1),
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
    groups: int = 1,
    activation: str = "tanh",
    lr: float = 1e-3,
) -> None:
    """Conv2d plasticity: weight -= lr * dConv/dW(input, signal * act'(preact)).

    weight: (C_out, C_in/groups, kh, kw), input: (B, C_in, H, W),
    preact and signal: (B, C_out, Ho, Wo), the conv output before activation
    (and before any pooling). bias -= lr * sum over (B, Ho, Wo).
    """
    torch.ops.naca.conv_plasticity_update_(
        weight, bias, input, preact, signal, list(stride), list(padding), list(dilation),
        int(groups), activation, float(lr),
    )


def naca_conv_update_(
    weight: Tensor,
    bias: Optional[Tensor],
    input: Tensor,
    preact: Tensor,
    labels: Tensor,
    ni: Tensor,
    stride: Sequence[int] = (1, 1),
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
    groups: int = 1,
    activation: str = "tanh",
    lr: float = 1e-3,
    lam: float = 0.5,
    theta: float = 1.2,
) -> None:
    """The fused NACA conv update: f(NL) per (channel, y, x), ni: (2N, C_out, Ho, Wo)."""
    torch.ops.naca.naca_conv_update_(
        weight, bias, input, preact, labels, ni, list(stride), list(padding), list(dilation),
        int(groups), activation, float(lr), float(lam), float(theta),
    )


# ---------------------------------------------------------------------------
# Fake kernels: shapes only, for torch.compile / FakeTensor / opcheck.
# ---------------------------------------------------------------------------

@torch.library.register_fake("naca::expectation_matrix")
def _expectation_matrix_fake(num_classes, *, dtype=None, device=None):
    return torch.empty(
        (num_classes, 2 * num_classes), dtype=dtype or torch.float32, device=device or "cpu"
    )


@torch.library.register_fake("naca::neuromodulator")
def _neuromodulator_fake(labels, ni):
    torch._check(labels.dim() == 1, lambda: "naca::neuromodulator: 'labels' must be 1-D")
    return ni.new_empty((labels.shape[0], *ni.shape[1:]))


@torch.library.register_fake("naca::modulation")
def _modulation_fake(level, lam=0.5, theta=1.2):
    return torch.empty_like(level)


def _no_output(*args, **kwargs):
    return None


for _name in ("plasticity_update_", "naca_hidden_update_", "conv_plasticity_update_", "naca_conv_update_"):
    torch.library.register_fake(f"naca::{_name}")(_no_output)
