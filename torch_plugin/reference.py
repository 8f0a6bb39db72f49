"""Pure-PyTorch versions of every ``naca`` op, written straight from the equations
of docs/algorithms.md (no custom kernels). Tests compare the ops against these, and
benchmarks use them as the baseline. They return new tensors instead of
updating in place, and compute in float64 unless told otherwise.
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .nn.common import activation_fn


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


@functools.lru_cache(maxsize=16)
def _expectation_matrix_on(num_classes: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """E, built once per (N, dtype, device) and only read: the reference's cost is the product, not
    rebuilding E (a Python loop and, on CUDA, a host-to-device copy) at every call."""
    return expectation_matrix(num_classes, dtype).to(device)


def neuromodulator(labels: Tensor, ni: Tensor) -> Tensor:
    """NL = onehot(labels) @ E @ NI, computed as the matrix product it is."""
    n = ni.shape[0] // 2
    onehot = F.one_hot(labels, n).to(ni.dtype)
    e = _expectation_matrix_on(n, ni.dtype, ni.device)
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
    fn = activation_fn(activation)  # the layers' function of that name (``ops.ACTIVATIONS``)
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


def naca_output_update(weight, bias, pre, logits, labels, lr, sigmoid_grad=True):
    """New (weight, bias) of the output layer's own-error rule: e = sigmoid(z) - onehot(y),
    delta = e * sigmoid'(z) (sigmoid_grad) or e, W - lr * sum_b outer(delta_b, x_b)."""
    onehot = torch.nn.functional.one_hot(labels, logits.shape[1]).to(logits.dtype)
    with torch.enable_grad():  # also under no_grad (the benchmark times it that way)
        z = logits.detach().requires_grad_(True)
        s = torch.sigmoid(z)
        if sigmoid_grad:  # e * sigmoid'(z), the derivative through autograd
            (delta,) = torch.autograd.grad(s, z, grad_outputs=(s - onehot).detach())
        else:
            delta = (s - onehot).detach()
    new_b = None if bias is None else bias - lr * delta.sum(0)
    return weight - lr * torch.einsum("bn,bi->ni", delta, pre), new_b


def conv_plasticity_update(
    weight, bias, input, preact, signal, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
    groups=1, activation="tanh", lr=1e-3, im2col=True,
):
    """The conv weight change: the gradient of <conv(input, W), delta> w.r.t. W.

    im2col (the tests): the sum over samples and output positions of delta times the input patch
    (F.unfold, then einsum), independent of convolution_backward, the kernel the op itself calls.
    im2col=False (the benchmark's baseline): through autograd, the fastest plain-PyTorch form."""
    delta = signal * activation_grad(preact, activation)
    if not im2col:
        with torch.enable_grad():
            w = weight.detach().clone().requires_grad_(True)
            out = F.conv2d(input, w, None, stride, padding, dilation, groups)
            (dw,) = torch.autograd.grad((out * delta).sum(), w)
        new_b = None if bias is None else bias - lr * delta.sum((0, 2, 3))
        return weight - lr * dw, new_b
    out_ch, in_per_group, kh, kw = weight.shape
    cols = F.unfold(input, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # (B, C*kh*kw, L), C major
    b, _, positions = cols.shape
    cols = cols.reshape(b, groups, in_per_group * kh * kw, positions)
    d = delta.reshape(b, groups, out_ch // groups, positions)
    dw = torch.einsum("bgol,bgkl->gok", d, cols).reshape(weight.shape)
    new_b = None if bias is None else bias - lr * delta.sum((0, 2, 3))
    return weight - lr * dw, new_b


def naca_conv_update(
    weight, bias, input, preact, labels, ni, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
    groups=1, activation="tanh", lr=1e-3, lam=0.5, theta=1.2, im2col=True,
):
    signal = modulation(neuromodulator(labels, ni), lam, theta)
    return conv_plasticity_update(
        weight, bias, input, preact, signal, stride, padding, dilation, groups, activation, lr, im2col
    )


# ---------------------------------------------------------------------------
# Spiking networks and SBP (docs/algorithms.md §1.5 and §2), step by step.
# ---------------------------------------------------------------------------

def lif_forward(current: Tensor, decay: float = 0.2, threshold: float = 0.5, reset: str = "hard",
                v_init: Optional[Tensor] = None, s_init: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """A Python loop over t of V_t = decay V_{t-1}(1 - s_{t-1}) + I_t (or soft reset), s_t = 1[V_t > th]."""
    v = torch.zeros_like(current[0]) if v_init is None else v_init.clone()
    s = torch.zeros_like(current[0]) if s_init is None else s_init.clone()
    vs, ss = [], []
    for i_t in current:
        kept = v - threshold * s if reset == "soft" else v * (1 - s)
        v = decay * kept + i_t
        s = (v > threshold).to(current.dtype)
        vs.append(v)
        ss.append(s)
    return torch.stack(ss), torch.stack(vs)


def naca_snn_update(weight, bias, pre_spikes, voltages, spikes, signal, threshold=0.5, lens=0.5,
                    lr=1e-3, all_steps=True):
    """New (weight, bias): W - lr sum_t sum_b outer(signal_b e_{t,b}, x_{t,b}), e_t = 1[V_t > th - lens] - s_{t-1}."""
    steps = pre_spikes.shape[0]
    dw = torch.zeros_like(weight)
    db = None if bias is None else torch.zeros_like(bias)
    for t in (range(steps) if all_steps else [steps - 1]):
        s_prev = spikes[t - 1] if t > 0 else torch.zeros_like(spikes[0])
        e = (voltages[t] > threshold - lens).to(weight.dtype) - s_prev
        delta = signal * e
        dw += torch.einsum("bh,bi->hi", delta, pre_spikes[t])
        if db is not None:
            db += delta.sum(0)
    return weight - lr * dw, None if bias is None else bias - lr * db


class _EligibilitySpike(torch.autograd.Function):
    """Forward: the given spikes s_t; backward: grad * e_t (the eligibility as ds/dV)."""

    @staticmethod
    def forward(ctx, v, spikes, elig):
        ctx.save_for_backward(elig)
        return spikes.clone()

    @staticmethod
    def backward(ctx, grad):
        (elig,) = ctx.saved_tensors
        return grad * elig, None, None


def naca_snn_chain_update(weight, bias, pre_spikes, voltages, spikes, signal, decay=0.2, threshold=0.5,
                          lens=0.5, reset="hard", current="linear", lr=1e-3):
    """New (weight, bias) of the authors' class-incremental rule, by autograd: the membrane
    recurrence is re-run on the currents I_t recovered from the voltages, with the given
    spikes whose backward is e_t = 1[V_t > th - lens] - s_{t-1}; signal is sent into the
    last step's spikes, and dL/dI_t (times sigmoid'(a_t) = I_t (1 - I_t) for a 'sigmoid'
    current) is correlated with the inputs x_t."""
    steps = voltages.shape[0]
    zeros = torch.zeros_like(voltages[0])
    v_prev = torch.cat([zeros[None], voltages[:-1]])
    s_prev = torch.cat([zeros[None], spikes[:-1]])
    kept = v_prev - threshold * s_prev if reset == "soft" else v_prev * (1 - s_prev)
    cur = (voltages - decay * kept).detach().requires_grad_(True)
    elig = (voltages > threshold - lens).to(voltages.dtype) - s_prev
    with torch.enable_grad():
        v, s = zeros, zeros
        for t in range(steps):
            kept_t = v - threshold * s if reset == "soft" else v * (1 - s)
            v = decay * kept_t + cur[t]
            s = _EligibilitySpike.apply(v, spikes[t], elig[t])
        (g_cur,) = torch.autograd.grad(s, cur, grad_outputs=signal)
    delta = g_cur * (cur.detach() * (1 - cur.detach()) if current == "sigmoid" else 1)
    dw = torch.einsum("tbh,tbi->hi", delta, pre_spikes)
    return weight - lr * dw, None if bias is None else bias - lr * delta.sum((0, 1))


def stdp_update(weight, pre_spikes, post_spikes, tau_pre=20.0, tau_post=20.0, a_plus=0.01,
                a_minus=0.012, w_min=0.0, w_max=1.0, bound="hard", modulator=None, lr=1.0, dt=1.0):
    """Traces stepped in a loop; LTP at post spikes (pre trace), LTD at pre spikes (post trace)."""
    steps, b, _ = pre_spikes.shape
    h = post_spikes.shape[2]
    m = torch.ones(b, h, dtype=weight.dtype, device=weight.device) if modulator is None else modulator.expand(b, h)
    x = torch.zeros_like(pre_spikes[0])
    y = torch.zeros_like(post_spikes[0])
    ltp = torch.zeros_like(weight)
    ltd = torch.zeros_like(weight)
    for t in range(steps):
        x = math.exp(-dt / tau_pre) * x + pre_spikes[t]
        y = math.exp(-dt / tau_post) * y + post_spikes[t]
        ltp += torch.einsum("bh,bi->hi", m * post_spikes[t], x)
        ltd += torch.einsum("bh,bi->hi", m * y, pre_spikes[t])
    gp = (w_max - weight) if bound == "soft" else 1.0
    gm = (weight - w_min) if bound == "soft" else 1.0
    w = weight + lr * (a_plus * ltp * gp - a_minus * ltd * gm)
    return w.clamp(w_min, w_max) if bound == "hard" else w


def _norm(v: Tensor) -> Tensor:
    s = v.sum()
    return v / s if s != 0 else v


def sbp_update(w_in, w_out, dw_in, dw_out, mask=None, fraction=0.2, alpha_in=0.1, alpha_out=0.05):
    """New (w_in, w_out). Written in docs/algorithms.md §2.1's (pre, post) orientation on the transposes."""
    f = fraction

    def lateral(dw):  # dw: (pre, post)
        p, d = dw.clamp(min=0), dw.clamp(max=0)
        a = 1 + f * _norm(p.sum(1))
        b = 1 + f * _norm(d.sum(1).abs())
        c = 1 + 0.5 * f * _norm(d.sum(0).abs())
        return p, d, torch.diag(a) @ p, torch.diag(b) @ d, d @ torch.diag(c)

    p, d, p_pre, d_pre, d_post = lateral(dw_out.t())
    out_final = p_pre + (d_pre + d_post) / 2
    gp = f * _norm(p_pre.sum(1))  # spread per hidden unit j
    gm = f * _norm(d_pre.sum(1))
    pi, di, pi_pre, di_pre, di_post = lateral(dw_in.t())  # (I, H)
    m = torch.ones_like(pi) if mask is None else mask.t().to(pi.dtype)
    p_bp = pi * (1 + m * gp.unsqueeze(0))
    d_bp = di * (1 + m * gm.unsqueeze(0))
    in_final = (pi_pre + p_bp) / 2 + (di_pre + di_post + d_bp) / 3
    return w_in + alpha_in * in_final.t(), w_out + alpha_out * out_final.t()


def stp(spikes: Tensor, U=0.45, tau_f=10.0, tau_d=2.0, tau_s=2.0, A=1.0) -> Tensor:
    """Tsodyks-Markram per element with Python floats (u first, then x, then I, each from the new values)."""
    flat = spikes.reshape(spikes.shape[0], -1)
    out = torch.zeros_like(flat)
    for j in range(flat.shape[1]):
        u, x, i_syn = 0.0, 1.0, 0.0
        for t in range(flat.shape[0]):
            s = float(flat[t, j])
            u = u - u / tau_f + U * s * (1 - u)
            x = x + (1 - x) / tau_d - u * x * s
            i_syn = i_syn - i_syn / tau_s + A * u * x * s
            out[t, j] = i_syn
    return out.reshape(spikes.shape)


def homeostatic_relax(s_h, s_below, w_below, s_above=None, w_above=None, b_h=None, eps=0.5, iters=20):
    """s_h <- clamp01(s_h - eps (s_h - s_below W_below - s_above W_above^T - b_h)), recomputed each
    iteration; the (pre, post) matrices of docs/algorithms.md §2.1 are W_below = w_below.t(), W_above = w_above.t()."""
    for _ in range(iters):
        big_w_below, big_w_above = w_below.t(), None if w_above is None else w_above.t()
        drive = s_below @ big_w_below
        if s_above is not None:
            drive = drive + s_above @ big_w_above.t()
        if b_h is not None:
            drive = drive + b_h
        s_h = (s_h - eps * (s_h - drive)).clamp(0, 1)
    return s_h
