"""Pure-PyTorch versions of every ``naca`` op, written straight from the equations
of ALGORITHMS.md (no custom kernels). Tests compare the ops against these, and
benchmarks use them as the baseline. They return new tensors instead of
updating in place, and compute in float64 unless told otherwise.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def expectation_slots(num_classes: int) -> list[int]:
    """k_c = floor(a_c / max(a) * 2 (N - 1)), a_c = sqrt(2 ln(N / (c + 1)))."""
    n = num_classes
    if n < 2:
        raise ValueError(f"num_classes must be >= 2, got {n}")
    a = [math.sqrt(2.0 * math.log(n / i)) for i in range(1, n + 1)]
    top = max(a)
    k = [math.floor(v / top * 2 * (n - 1)) for v in a]
    if len(set(k)) != n:
        raise ValueError(f"expectation matrix for num_classes={n} has colliding slots")
    return k


def expectation_matrix(num_classes: int, dtype=torch.float32) -> Tensor:
    e = torch.zeros(num_classes, 2 * num_classes, dtype=dtype)
    for c, k in enumerate(expectation_slots(num_classes)):
        e[c, k] = 0.5
        e[c, k + 1] = 0.5
    return e


def neuromodulator(labels: Tensor, ni: Tensor) -> Tensor:
    """NL = onehot(labels) @ E @ NI, computed as the matrix product it is."""
    n = ni.shape[0] // 2
    onehot = F.one_hot(labels, n).to(ni.dtype)
    e = expectation_matrix(n, ni.dtype).to(ni.device)
    return (onehot @ e @ ni.reshape(2 * n, -1)).reshape(labels.shape[0], *ni.shape[1:])


def modulation(x: Tensor, lam: float = 0.5, theta: float = 1.2) -> Tensor:
    """The four quadratic pieces of f, selected with torch.where."""
    l2 = lam * lam
    p1 = theta - (theta - 1) * (4 * x - lam) ** 2 / l2
    p2 = 4 * (x - lam) ** 2 / l2
    p3 = -4 * (lam - x) ** 2 / l2
    p4 = (theta - 1) * (4 * (2 * lam - x) - lam) ** 2 / l2 - theta
    return torch.where(
        x <= lam / 2, p1, torch.where(x <= lam, p2, torch.where(x <= 1.5 * lam, p3, p4))
    )


def activation_grad(z: Tensor, activation: str) -> Tensor:
    """phi'(z) through autograd of the activation itself (an independent route)."""
    fn = {
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "relu": torch.relu,
        "identity": lambda t: t,
    }[activation]
    with torch.enable_grad():
        zz = z.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(zz).sum(), zz)
    return g


def plasticity_update(
    weight: Tensor, bias: Optional[Tensor], pre: Tensor, preact: Tensor, signal: Tensor,
    activation: str, lr: float,
) -> Tuple[Tensor, Optional[Tensor]]:
    """New (weight, bias): W - lr * sum_b outer(signal_b * phi'(z_b), x_b)."""
    delta = signal * activation_grad(preact, activation)
    dw = torch.einsum("bh,bi->hi", delta, pre)
    new_b = None if bias is None else bias - lr * delta.sum(0)
    return weight - lr * dw, new_b


def naca_hidden_update(
    weight, bias, pre, preact, labels, ni, activation, lr, lam=0.5, theta=1.2
):
    signal = modulation(neuromodulator(labels, ni), lam, theta)
    return plasticity_update(weight, bias, pre, preact, signal, activation, lr)


def conv_plasticity_update(
    weight, bias, input, preact, signal, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
    groups=1, activation="tanh", lr=1e-3,
):
    """The conv weight change as the gradient of <conv(input, W), delta> w.r.t. W."""
    delta = signal * activation_grad(preact, activation)
    with torch.enable_grad():
        w = weight.detach().clone().requires_grad_(True)
        out = F.conv2d(input, w, None, stride, padding, dilation, groups)
        (dw,) = torch.autograd.grad((out * delta).sum(), w)
    new_b = None if bias is None else bias - lr * delta.sum((0, 2, 3))
    return weight - lr * dw, new_b


def naca_conv_update(
    weight, bias, input, preact, labels, ni, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
    groups=1, activation="tanh", lr=1e-3, lam=0.5, theta=1.2,
):
    signal = modulation(neuromodulator(labels, ni), lam, theta)
    return conv_plasticity_update(
        weight, bias, input, preact, signal, stride, padding, dilation, groups, activation, lr
    )
