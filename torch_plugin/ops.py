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

ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity")


def expectation_matrix(
    num_classes: int, *, dtype: Optional[torch.dtype] = None, device: Optional[torch.device] = None
) -> Tensor:
    """E, the (N, 2N) class-expectation matrix: row c is 0.5 at columns k_c and k_c+1.

    k_c = floor(a_c / max(a) * 2(N-1)), a_c = sqrt(2 ln(N / (c+1))). For N = 10,
    k = [18, 15, 13, 11, 9, 8, 7, 5, 3, 0]. Raises when two classes share a slot, and for
    a dtype that is not floating point (E holds 0.5).
    """
    return torch.ops.naca.expectation_matrix(num_classes, dtype=dtype, device=device)


def neuromodulator(labels: Tensor, ni: Tensor, *, check_labels: bool = True) -> Tensor:
    """NL = E[labels] @ NI.

    labels: (B,) int64 in [0, N). ni: (2N, H) or (2N, C, H, W), the fixed random
    neuromodulator projection (``nn.make_ni``). Returns (B, *ni.shape[1:]) with ni's dtype.
    check_labels=False: no host read of the labels; a label outside [0, N) gives a zero row.

    N is read from NI: N = ni.size(0) / 2. An NI with one row per class reads as half the
    classes: labels beyond that are rejected naming both 'labels' and 'ni', but a batch whose
    labels all fall below ni.size(0) / 2 cannot be told from a valid call.
    """
    return torch.ops.naca.neuromodulator(labels, ni, check_labels=bool(check_labels))


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
    *,
    from_output: bool = False,
) -> None:
    """weight -= lr * (signal * act'(preact))^T @ pre; bias -= lr * sum_b(signal * act'(preact)).

    weight: (H, I), bias: (H,) or None, pre: (B, I), preact and signal: (B, H).
    activation: 'tanh', 'sigmoid', 'relu' or 'identity'. Sums over the batch.
    With signal = f(NL) it is the NACA hidden rule; with signal = the output
    error it is the output layer's delta rule. To accumulate a pseudo-gradient
    for a torch optimizer instead, pass the ``.grad`` buffers and ``lr=-1``.

    from_output=True: ``preact`` holds the activation's output h = act(z)
    instead of z, and act' is computed from it (1 - h^2, h (1 - h), 1[h > 0],
    1), as backprop's tanh/sigmoid backward does. A layer then keeps only h,
    which it needs anyway as the next layer's input (what the NACA layers do).
    Same for every update op below.
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

    weight: (H, I), bias: (H,) or None, pre: (B, I), preact: (B, H) (z, or act(z)
    with from_output=True), labels: (B,) int64, ni: (2N, H) (N read from it, as in
    ``neuromodulator``). NL and f(NL) are never stored.

    check_labels=True (default): labels outside [0, N) raise before anything is
    written (on CUDA this reads the labels' range on the host: one device
    synchronization). False, for labels the caller has validated: no host read,
    and a sample whose label is out of range gets a zero delta (it does not learn).
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

    weight: (N, I), bias: (N,) or None, pre: (B, I), logits: (B, N) = pre @ weight^T + bias,
    labels: (B,) int64. check_labels: as naca_hidden_update_ (False: a sample whose label
    is out of range gets a zero delta).
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

    weight: (C_out, C_in/groups, kh, kw), input: (B, C_in, H, W),
    preact and signal: (B, C_out, Ho, Wo), the conv output before activation
    (and before any pooling; with from_output=True, after the activation).
    bias -= lr * sum over (B, Ho, Wo).
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
    """The fused NACA conv update: f(NL) per (channel, y, x), ni: (2N, C_out, Ho, Wo);
    preact is z, or act(z) with from_output=True. check_labels: as naca_hidden_update_."""
    torch.ops.naca.naca_conv_update_(
        weight, bias, input, preact, labels, ni, list(stride), list(padding), list(dilation),
        int(groups), activation, float(lr), float(lam), float(theta), from_output=bool(from_output),
        check_labels=bool(check_labels),
    )


# ---------------------------------------------------------------------------
# Fake kernels: shapes only, for torch.compile / FakeTensor / opcheck.
# ---------------------------------------------------------------------------

@torch.library.register_fake("naca::expectation_matrix")
def _expectation_matrix_fake(num_classes, *, dtype=None, device=None):
    torch._check(dtype is None or dtype.is_floating_point,
                 lambda: f"naca::expectation_matrix: argument 'dtype' expected a floating-point dtype "
                         f"(E holds 0.5), got {dtype}")
    return torch.empty(
        (num_classes, 2 * num_classes), dtype=dtype or torch.float32, device=device or "cpu"
    )


@torch.library.register_fake("naca::neuromodulator")
def _neuromodulator_fake(labels, ni, *, check_labels=True):
    torch._check(labels.dim() == 1, lambda: "naca::neuromodulator: 'labels' must be 1-D")
    _one_device("neuromodulator", labels, ni)
    return ni.new_empty((labels.shape[0], *ni.shape[1:]))


@torch.library.register_fake("naca::modulation")
def _modulation_fake(level, lam=0.5, theta=1.2):
    # The kernel returns a contiguous tensor whatever the input's strides.
    return level.new_empty(level.shape)


def _one_device(name, *tensors):
    devices = sorted({str(t.device) for t in tensors if isinstance(t, torch.Tensor)})
    torch._check(len(devices) <= 1,
                 lambda: f"naca::{name}: every tensor argument expected on one device, got {devices}")


def _no_output(name):
    """Fake kernel of an in-place op: no output; all tensors on one device, as the kernels check
    (without it a meta tensor among CPU ones would silently dispatch here and do nothing)."""
    def fake(*args, **kwargs):
        _one_device(name, *args, *kwargs.values())
        return None
    return fake


for _name in ("plasticity_update_", "naca_hidden_update_", "naca_output_update_", "conv_plasticity_update_",
              "naca_conv_update_"):
    torch.library.register_fake(f"naca::{_name}")(_no_output(_name))


# ---------------------------------------------------------------------------
# Spiking networks and SBP (docs/algorithms.md §1.5, §2). T time steps, B batch,
# I presynaptic and H postsynaptic neurons.
# ---------------------------------------------------------------------------

def lif_forward(
    current: Tensor,
    decay: float = 0.2,
    threshold: float = 0.5,
    reset: str = "hard",
    v_init: Optional[Tensor] = None,
    s_init: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """Multi-step LIF over a whole sequence; returns (spikes, voltages), each (T, B, N).

    current: (T, B, N) input current I_t. With V_{-1} = v_init, s_{-1} = s_init
    (each (B, N), zeros when None):
    V_t = decay * V_{t-1} * (1 - s_{t-1}) + I_t  (reset='hard'), or
    V_t = decay * (V_{t-1} - threshold * s_{t-1}) + I_t  (reset='soft');
    s_t = 1[V_t > threshold]. Voltages are after integration, before reset.
    One kernel launch for all T steps on CUDA. No autograd (see
    ``torch_plugin.nn.LIF`` for the surrogate-gradient path).
    """
    return torch.ops.naca.lif_forward(current, float(decay), float(threshold), reset, v_init, s_init)


def naca_snn_update_(
    weight: Tensor,
    bias: Optional[Tensor],
    pre_spikes: Tensor,
    voltages: Tensor,
    spikes: Tensor,
    signal: Tensor,
    threshold: float = 0.5,
    lens: float = 0.5,
    lr: float = 1e-3,
    all_steps: bool = True,
) -> None:
    """NACA-SNN update: weight -= lr * sum_{b,t} (signal_b * e_{t,b})^T x_{t,b}; bias likewise.

    e_t = 1[V_t > threshold - lens] - s_{t-1} (s_{-1} = 0), the simplified STDP
    eligibility. weight: (H, I), bias: (H,) or None, pre_spikes x: (T, B, I),
    voltages V and spikes s: (T, B, H) of this layer (from ``lif_forward``),
    signal: (B, H), f(NL) for a hidden layer or the rate error r - onehot(y) for
    the output layer. all_steps=True sums over every t; False uses t = T-1 only
    (the authors' code). Pass ``.grad`` buffers and lr=-1 for a pseudo-gradient.
    """
    torch.ops.naca.naca_snn_update_(
        weight, bias, pre_spikes, voltages, spikes, signal, float(threshold), float(lens),
        float(lr), bool(all_steps),
    )


def naca_snn_chain_update_(
    weight: Tensor,
    bias: Optional[Tensor],
    pre_spikes: Tensor,
    voltages: Tensor,
    spikes: Tensor,
    signal: Tensor,
    decay: float = 0.2,
    threshold: float = 0.5,
    lens: float = 0.5,
    reset: str = "hard",
    current: str = "linear",
    lr: float = 1e-3,
) -> None:
    """The authors' class-incremental NACA-SNN rule: the signal sent into the last step's
    spikes and carried back through the membrane to every step; weight -= lr * sum_{t,b}
    delta_t^T x_t, bias -= lr * sum_{t,b} delta_t.

    What their code gets from ``spike_T.backward(signal)`` when the membrane is
    not detached between steps and the spike's backward is the eligibility
    e_t = 1[V_t > threshold - lens] - s_{t-1}: with g_t = dL/dV_t,
    g_{T-1} = signal * e_{T-1}, g_{t-1} = g_t * decay * ((1 - s_{t-1}) - V_{t-1} e_{t-1})
    (hard reset; soft: g_t * decay * (1 - threshold e_{t-1})), and
    delta_t = g_t * dI_t/da_t with the current I_t = a_t = W x_t + b ('linear') or
    sigmoid(a_t) ('sigmoid', their V_t = decay V_{t-1} (1 - s_{t-1}) + sigmoid(W x_t)).
    I_t is recovered from the voltages (I_t = V_t - decay V_{t-1} (1 - s_{t-1})), so
    voltages and spikes must be those of ``lif_forward`` started at V = s = 0 with the
    same decay, threshold and reset.

    weight: (H, I), bias: (H,) or None, pre_spikes x: (T, B, I), voltages, spikes:
    (T, B, H), signal: (B, H): f(NL) (times the gate) for a hidden layer, the rate
    error r - onehot(y) for the output layer. Pass ``.grad`` buffers and lr=-1 for a
    pseudo-gradient.
    """
    torch.ops.naca.naca_snn_chain_update_(
        weight, bias, pre_spikes, voltages, spikes, signal, float(decay), float(threshold),
        float(lens), reset, current, float(lr),
    )


def stdp_update_(
    weight: Tensor,
    pre_spikes: Tensor,
    post_spikes: Tensor,
    tau_pre: float = 20.0,
    tau_post: float = 20.0,
    a_plus: float = 0.01,
    a_minus: float = 0.012,
    w_min: float = 0.0,
    w_max: float = 1.0,
    bound: str = "hard",
    modulator: Optional[Tensor] = None,
    lr: float = 1.0,
    dt: float = 1.0,
) -> None:
    """Pair-based STDP with exponential traces, optionally reward/neuromodulated (in place).

    weight: (H, I) (post, pre); pre_spikes: (T, B, I); post_spikes: (T, B, H).
    Traces (including the current step's spike): x_t = e^{-dt/tau_pre} x_{t-1} + pre_t,
    y_t = e^{-dt/tau_post} y_{t-1} + post_t. With m the modulator (None: 1; a
    scalar reward, a per-neuron (H,) or per-sample (B, H) third factor):
    LTP = sum_{t,b} (m post_t)^T x_t, LTD = sum_{t,b} (m y_t)^T pre_t,
    w += lr * (a_plus * LTP * g+ - a_minus * LTD * g-), with bound 'none' (g = 1),
    'hard' (g = 1, then clamp to [w_min, w_max]) or 'soft' (g+ = w_max - w,
    g- = w - w_min). A pre spike dt_ms before a post spike adds
    lr a_plus e^{-dt_ms/tau_pre}; after it, subtracts lr a_minus e^{-dt_ms/tau_post}.
    """
    torch.ops.naca.stdp_update_(
        weight, pre_spikes, post_spikes, float(tau_pre), float(tau_post), float(a_plus),
        float(a_minus), float(w_min), float(w_max), bound, modulator, float(lr), float(dt),
    )


def stp_forward(
    spikes: Tensor,
    U: float = 0.45,
    tau_f: float = 10.0,
    tau_d: float = 2.0,
    tau_s: float = 2.0,
    A: float = 1.0,
) -> Tensor:
    """Tsodyks-Markram short-term plasticity: spikes (T, B, N) -> synaptic current I (T, B, N).

    Per step t (time in steps), in this order, each update using the values
    just computed: u += -u/tau_f + U s_t (1 - u); x += (1 - x)/tau_d - u x s_t;
    I += -I/tau_s + A u x s_t; returns I after each step. Starts at u = 0,
    x = 1, I = 0; tau_* > 0. One kernel launch for all T steps on CUDA. No
    autograd (``torch_plugin.nn.stp_forward`` runs a differentiable torch loop
    when a gradient is needed).
    """
    return torch.ops.naca.stp_forward(spikes, float(U), float(tau_f), float(tau_d), float(tau_s), float(A))


def homeostatic_relax(state: Tensor, drive: Tensor, eps: float = 0.5, iters: int = 20) -> Tensor:
    """SBP's homeostatic relaxation, elementwise: ``iters`` times s <- clamp(s - eps (s - drive), 0, 1).

    state (the start s) and drive: any shape, the same for both (same dtype and
    device). Returns the relaxed state, a new contiguous tensor. One pass over
    memory: each element runs all its steps in registers (CUDA) or in an
    L1-resident block (CPU). A step that leaves an element (on CPU, a block)
    unchanged is a fixed point, so the remaining steps are skipped (same
    result; with 0 <= eps <= 1 every element gets there). No autograd
    (``torch_plugin.nn.homeostatic_relax`` computes the drive from the layers
    and runs a differentiable torch loop when a gradient is needed).
    """
    return torch.ops.naca.homeostatic_relax(state, drive, float(eps), int(iters))


def sbp_update_(
    w_in: Tensor,
    w_out: Tensor,
    dw_in: Tensor,
    dw_out: Tensor,
    mask: Optional[Tensor] = None,
    fraction: float = 0.2,
    alpha_in: float = 0.1,
    alpha_out: float = 0.05,
) -> None:
    """SBP (docs/algorithms.md §2.1): w_in += alpha_in * dW_in_final, w_out += alpha_out * dW_out_final.

    Orientation: (post, pre) like nn.Linear, i.e. the transpose of the (pre, post)
    matrices of docs/algorithms.md §2.1. w_in, dw_in: (H, I); w_out, dw_out: (O, H); dw_*
    are the local changes (sign: to be added). mask: (H, I) bool/0-1 (lambda_p:
    which input synapses of each hidden unit receive the self-backpropagated
    spread; None = all, the authors' code). fraction: f = lambda_f. fraction=0
    gives w += alpha * dw (the local rule).
    """
    torch.ops.naca.sbp_update_(
        w_in, w_out, dw_in, dw_out, mask, float(fraction), float(alpha_in), float(alpha_out)
    )


@torch.library.register_fake("naca::lif_forward")
def _lif_forward_fake(current, decay=0.2, threshold=0.5, reset="hard", v_init=None, s_init=None):
    torch._check(current.dim() == 3, lambda: "naca::lif_forward: 'current' must be (T, B, N)")
    _one_device("lif_forward", current, v_init, s_init)
    # Contiguous outputs whatever the input's strides, as the kernels return.
    return current.new_empty(current.shape), current.new_empty(current.shape)


@torch.library.register_fake("naca::stp_forward")
def _stp_forward_fake(spikes, U=0.45, tau_f=10.0, tau_d=2.0, tau_s=2.0, A=1.0):
    torch._check(spikes.dim() == 3, lambda: "naca::stp_forward: 'spikes' must be (T, B, N)")
    return spikes.new_empty(spikes.shape)


@torch.library.register_fake("naca::homeostatic_relax")
def _homeostatic_relax_fake(state, drive, eps=0.5, iters=20):
    _one_device("homeostatic_relax", state, drive)
    torch._check(state.shape == drive.shape,
                 lambda: f"naca::homeostatic_relax: 'drive' expected shape {tuple(state.shape)}, "
                         f"got {tuple(drive.shape)}")
    return state.new_empty(state.shape)


for _name in ("naca_snn_update_", "naca_snn_chain_update_", "stdp_update_", "sbp_update_"):
    torch.library.register_fake(f"naca::{_name}")(_no_output(_name))
