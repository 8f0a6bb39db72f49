"""Typed wrappers of the ``torch.ops.naca`` operators (their fake kernels: ``fake_kernels``).

Shapes: B batch, I inputs, H hidden units, N classes, C/H/W channels and
spatial size; for the spiking ops (``spiking_ops``, re-exported here) T time
steps and I presynaptic and H postsynaptic neurons. Ops ending in ``_`` update
their first argument(s) in place, bump their version counters and return
``None``; none of them records an autograd graph. Every op checks its arguments
and leaves the weights untouched when it rejects a call.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from . import fake_kernels  # noqa: F401  (registers the fake kernels)
from .spiking_ops import (homeostatic_relax, lif_forward, naca_snn_chain_update_, naca_snn_update_, sbp_update_,
                          stdp_update_, stp_forward)

__all__ = [
    "expectation_matrix",
    "neuromodulator",
    "modulation",
    "plasticity_update_",
    "naca_hidden_update_",
    "naca_output_update_",
    "conv_plasticity_update_",
    "naca_conv_update_",
    "ACTIVATIONS",
    "lif_forward",
    "naca_snn_update_",
    "naca_snn_chain_update_",
    "stdp_update_",
    "stp_forward",
    "homeostatic_relax",
    "sbp_update_",
]

# The names the ops' ``activation`` argument takes, in the order of the C++ check's message
# (csrc/checks.h parse_activation; tests/test_activation_names.py holds the two equal).
ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity")


def expectation_matrix(
    num_classes: int, *, dtype: Optional[torch.dtype] = None, device: Optional[torch.device] = None
) -> Tensor:
    """E, the (N, 2N) class-expectation matrix: row c is 0.5 at columns k_c and k_c+1.

    k_c = floor(a_c / max(a) * 2(N-1)), a_c = sqrt(2 ln(N / (c+1))). For N = 10,
    k = [18, 15, 13, 11, 9, 8, 7, 5, 3, 0].

    Args:
        num_classes (int): N >= 2.
        dtype (torch.dtype, optional): a floating-point dtype (E holds 0.5); default float32.
        device (torch.device, optional): default CPU.

    Returns:
        Tensor[N, 2N]: E.

    Raises:
        RuntimeError: two classes share a slot, or ``dtype`` is not floating point.
    """
    return torch.ops.naca.expectation_matrix(num_classes, dtype=dtype, device=device)


def neuromodulator(labels: Tensor, ni: Tensor, *, check_labels: bool = True) -> Tensor:
    """NL = E[labels] @ NI, the neuromodulator level of each sample.

    N is read from NI: N = ni.size(0) / 2. An NI with one row per class reads as half the
    classes: labels beyond that are rejected naming both 'labels' and 'ni', but a batch whose
    labels all fall below ni.size(0) / 2 cannot be told from a valid call.

    Args:
        labels (Tensor[B]): int64 class labels in [0, N).
        ni (Tensor[2N, H] or Tensor[2N, C, H, W]): the fixed random neuromodulator projection
            (``nn.make_ni``).
        check_labels (bool): False: no host read of the labels; a label outside [0, N) gives a
            zero row.

    Returns:
        Tensor[B, H] or Tensor[B, C, H, W]: NL, with ni's dtype.
    """
    return torch.ops.naca.neuromodulator(labels, ni, check_labels=bool(check_labels))


def modulation(level: Tensor, lam: float = 0.5, theta: float = 1.2) -> Tensor:
    """f(level), the piecewise-quadratic modulation curve (docs/algorithms.md §1.3).

    Args:
        level (Tensor[...]): the neuromodulator level NL, any shape.
        lam (float): lambda > 0, where the curve crosses zero (f(lam) = 0).
        theta (float): the curve's extremes are +theta at lam / 4 and -theta at 7 lam / 4.

    Returns:
        Tensor[...]: f(level), level's shape and dtype, contiguous.
    """
    return torch.ops.naca.modulation(level, lam, theta)


def plasticity_update_(
    weight: Tensor,
    bias: Optional[Tensor],
    pre: Tensor,
    preact: Tensor,
    signal: Tensor,
    activation: str,
    lr: float,
    *,
    from_output: bool = False,
) -> None:
    """weight -= lr * (signal * act'(preact))^T @ pre; bias -= lr * sum_b(signal * act'(preact)).

    Sums over the batch. With signal = f(NL) it is the NACA hidden rule; with signal = the
    output error it is the output layer's delta rule. To accumulate a pseudo-gradient for a
    torch optimizer instead, pass the ``.grad`` buffers and ``lr=-1``.

    Args:
        weight (Tensor[H, I]): updated in place.
        bias (Tensor[H], optional): updated in place; None for a layer without bias.
        pre (Tensor[B, I]): the layer's input.
        preact (Tensor[B, H]): z, the pre-activation (with ``from_output=True``, h = act(z)).
        signal (Tensor[B, H]): the per-unit modulating signal.
        activation (str): one of ``ACTIVATIONS``: 'tanh', 'sigmoid', 'relu', 'identity'.
        lr (float): learning rate.
        from_output (bool): ``preact`` holds the activation's output h = act(z) instead of z,
            and act' is computed from it (1 - h^2, h (1 - h), 1[h > 0], 1), as backprop's
            tanh/sigmoid backward does. A layer then keeps only h, which it needs anyway as the
            next layer's input (what the NACA layers do). Same for every update op below.
    """
    torch.ops.naca.plasticity_update_(weight, bias, pre, preact, signal, activation, float(lr),
                                      from_output=bool(from_output))


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
    *,
    from_output: bool = False,
    check_labels: bool = True,
) -> None:
    """The fused NACA hidden-layer update: plasticity_update_ with signal = f(E[labels] @ NI).

    NL and f(NL) are never stored.

    Args:
        weight (Tensor[H, I]): updated in place.
        bias (Tensor[H], optional): updated in place.
        pre (Tensor[B, I]): the layer's input.
        preact (Tensor[B, H]): z, or act(z) with ``from_output=True``.
        labels (Tensor[B]): int64 class labels.
        ni (Tensor[2N, H]): the neuromodulator projection (N read from it, as in ``neuromodulator``).
        activation (str): one of ``ACTIVATIONS``.
        lr (float): learning rate.
        lam (float): the modulation curve's lambda.
        theta (float): the modulation curve's theta.
        from_output (bool): as ``plasticity_update_``.
        check_labels (bool): True: labels outside [0, N) raise before anything is written (on
            CUDA this reads the labels' range on the host: one device synchronization). False,
            for labels the caller has validated: no host read, and a sample whose label is out
            of range gets a zero delta (it does not learn).
    """
    torch.ops.naca.naca_hidden_update_(
        weight, bias, pre, preact, labels, ni, activation, float(lr), float(lam), float(theta),
        from_output=bool(from_output), check_labels=bool(check_labels),
    )


def naca_output_update_(
    weight: Tensor,
    bias: Optional[Tensor],
    pre: Tensor,
    logits: Tensor,
    labels: Tensor,
    lr: float,
    sigmoid_grad: bool = True,
    *,
    check_labels: bool = True,
) -> None:
    """The NACA output layer's own-error update, fused: weight -= lr * delta^T @ pre,
    bias -= lr * sum_b delta, with delta = e * sigmoid'(logits) (sigmoid_grad=True) or e,
    e = sigmoid(logits) - onehot(labels) (MSE on sigmoid outputs, docs/algorithms.md §1.2).

    Args:
        weight (Tensor[N, I]): updated in place.
        bias (Tensor[N], optional): updated in place.
        pre (Tensor[B, I]): the layer's input.
        logits (Tensor[B, N]): pre @ weight^T + bias.
        labels (Tensor[B]): int64 class labels in [0, N).
        lr (float): learning rate.
        sigmoid_grad (bool): multiply the error by sigmoid'(logits).
        check_labels (bool): as ``naca_hidden_update_`` (False: a sample whose label is out of
            range gets a zero delta).
    """
    torch.ops.naca.naca_output_update_(weight, bias, pre, logits, labels, float(lr), bool(sigmoid_grad),
                                       check_labels=bool(check_labels))


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
    *,
    from_output: bool = False,
) -> None:
    """Conv2d plasticity: weight -= lr * dConv/dW(input, signal * act'(preact)).

    bias -= lr * the sum of signal * act'(preact) over (B, Ho, Wo).

    Args:
        weight (Tensor[C_out, C_in / groups, kh, kw]): updated in place.
        bias (Tensor[C_out], optional): updated in place.
        input (Tensor[B, C_in, H, W]): the conv's input.
        preact (Tensor[B, C_out, Ho, Wo]): the conv output before activation (and before any
            pooling; with ``from_output=True``, after the activation).
        signal (Tensor[B, C_out, Ho, Wo]): the modulating signal.
        stride (Sequence[int]): the conv's (sH, sW).
        padding (Sequence[int]): the conv's (pH, pW).
        dilation (Sequence[int]): the conv's (dH, dW).
        groups (int): the conv's groups.
        activation (str): one of ``ACTIVATIONS``.
        lr (float): learning rate.
        from_output (bool): as ``plasticity_update_``.
    """
    torch.ops.naca.conv_plasticity_update_(
        weight, bias, input, preact, signal, list(stride), list(padding), list(dilation),
        int(groups), activation, float(lr), from_output=bool(from_output),
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
    *,
    from_output: bool = False,
    check_labels: bool = True,
) -> None:
    """The fused NACA conv update: conv_plasticity_update_ with signal = f(NL), f(NL) per
    (channel, y, x).

    Args:
        weight (Tensor[C_out, C_in / groups, kh, kw]): updated in place.
        bias (Tensor[C_out], optional): updated in place.
        input (Tensor[B, C_in, H, W]): the conv's input.
        preact (Tensor[B, C_out, Ho, Wo]): z, or act(z) with ``from_output=True``.
        labels (Tensor[B]): int64 class labels.
        ni (Tensor[2N, C_out, Ho, Wo]): the neuromodulator projection.
        stride (Sequence[int]): the conv's (sH, sW).
        padding (Sequence[int]): the conv's (pH, pW).
        dilation (Sequence[int]): the conv's (dH, dW).
        groups (int): the conv's groups.
        activation (str): one of ``ACTIVATIONS``.
        lr (float): learning rate.
        lam (float): the modulation curve's lambda.
        theta (float): the modulation curve's theta.
        from_output (bool): as ``plasticity_update_``.
        check_labels (bool): as ``naca_hidden_update_``.
    """
    torch.ops.naca.naca_conv_update_(
        weight, bias, input, preact, labels, ni, list(stride), list(padding), list(dilation),
        int(groups), activation, float(lr), float(lam), float(theta), from_output=bool(from_output),
        check_labels=bool(check_labels),
    )
