"""Typed wrappers of the spiking and SBP ``torch.ops.naca`` operators (docs/algorithms.md §1.5,
§2), re-exported by ``torch_plugin.ops``. T time steps, B batch, I presynaptic and H postsynaptic
neurons."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["lif_forward", "naca_snn_update_", "naca_snn_chain_update_", "stdp_update_", "stp_forward",
           "homeostatic_relax", "sbp_update_"]


def lif_forward(
    current: Tensor,
    decay: float = 0.2,
    threshold: float = 0.5,
    reset: str = "hard",
    v_init: Optional[Tensor] = None,
    s_init: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """Multi-step LIF over a whole sequence.

    With V_{-1} = v_init, s_{-1} = s_init:
    V_t = decay * V_{t-1} * (1 - s_{t-1}) + I_t (reset='hard'), or
    V_t = decay * (V_{t-1} - threshold * s_{t-1}) + I_t (reset='soft');
    s_t = 1[V_t > threshold]. Voltages are after integration, before reset.
    One kernel launch for all T steps on CUDA. No autograd (see
    ``torch_plugin.nn.LIF`` for the surrogate-gradient path).

    Args:
        current (Tensor[T, B, N]): the input current I_t.
        decay (float): the membrane's decay per step.
        threshold (float): the firing threshold.
        reset (str): 'hard' or 'soft'.
        v_init (Tensor[B, N], optional): V_{-1}; zeros when None.
        s_init (Tensor[B, N], optional): s_{-1}; zeros when None.

    Returns:
        tuple[Tensor[T, B, N], Tensor[T, B, N]]: (spikes, voltages).
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
    eligibility. Pass ``.grad`` buffers and lr=-1 for a pseudo-gradient.

    Args:
        weight (Tensor[H, I]): updated in place.
        bias (Tensor[H], optional): updated in place.
        pre_spikes (Tensor[T, B, I]): x, the layer's input spikes.
        voltages (Tensor[T, B, H]): V of this layer (from ``lif_forward``).
        spikes (Tensor[T, B, H]): s of this layer (from ``lif_forward``).
        signal (Tensor[B, H]): f(NL) for a hidden layer, or the rate error r - onehot(y) for the
            output layer.
        threshold (float): the LIF threshold.
        lens (float): the eligibility window below the threshold.
        lr (float): learning rate.
        all_steps (bool): True sums over every t; False uses t = T-1 only (the authors' code).
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
    same decay, threshold and reset. Pass ``.grad`` buffers and lr=-1 for a pseudo-gradient.

    Args:
        weight (Tensor[H, I]): updated in place.
        bias (Tensor[H], optional): updated in place.
        pre_spikes (Tensor[T, B, I]): x, the layer's input spikes.
        voltages (Tensor[T, B, H]): V of this layer.
        spikes (Tensor[T, B, H]): s of this layer.
        signal (Tensor[B, H]): f(NL) (times the gate) for a hidden layer, the rate error
            r - onehot(y) for the output layer.
        decay (float): the LIF decay.
        threshold (float): the LIF threshold.
        lens (float): the eligibility window below the threshold.
        reset (str): 'hard' or 'soft'.
        current (str): 'linear' or 'sigmoid'.
        lr (float): learning rate.
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

    Traces (including the current step's spike): x_t = e^{-dt/tau_pre} x_{t-1} + pre_t,
    y_t = e^{-dt/tau_post} y_{t-1} + post_t. With m the modulator:
    LTP = sum_{t,b} (m post_t)^T x_t, LTD = sum_{t,b} (m y_t)^T pre_t,
    w += lr * (a_plus * LTP * g+ - a_minus * LTD * g-), with bound 'none' (g = 1),
    'hard' (g = 1, then clamp to [w_min, w_max]) or 'soft' (g+ = w_max - w,
    g- = w - w_min). A pre spike dt_ms before a post spike adds
    lr a_plus e^{-dt_ms/tau_pre}; after it, subtracts lr a_minus e^{-dt_ms/tau_post}.

    Args:
        weight (Tensor[H, I]): (post, pre), updated in place.
        pre_spikes (Tensor[T, B, I]): presynaptic spikes.
        post_spikes (Tensor[T, B, H]): postsynaptic spikes.
        tau_pre (float): the presynaptic trace's time constant (> 0).
        tau_post (float): the postsynaptic trace's time constant (> 0).
        a_plus (float): potentiation amplitude.
        a_minus (float): depression amplitude.
        w_min (float): lower weight bound ('hard', 'soft').
        w_max (float): upper weight bound ('hard', 'soft').
        bound (str): 'none', 'hard' or 'soft'.
        modulator (Tensor[] or Tensor[H] or Tensor[B, H], optional): a scalar reward, a
            per-neuron or a per-sample third factor; None: 1.
        lr (float): learning rate.
        dt (float): the time step (> 0).
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
    """Tsodyks-Markram short-term plasticity: spikes -> synaptic current I.

    Per step t (time in steps), in this order, each update using the values
    just computed: u += -u/tau_f + U s_t (1 - u); x += (1 - x)/tau_d - u x s_t;
    I += -I/tau_s + A u x s_t; returns I after each step. Starts at u = 0,
    x = 1, I = 0. One kernel launch for all T steps on CUDA. No
    autograd (``torch_plugin.nn.stp_forward`` runs a differentiable torch loop
    when a gradient is needed).

    Args:
        spikes (Tensor[T, B, N]): presynaptic spikes (or graded input).
        U (float): utilisation increment.
        tau_f (float): facilitation time constant, in steps (> 0).
        tau_d (float): depression time constant, in steps (> 0).
        tau_s (float): synaptic current time constant, in steps (> 0).
        A (float): synaptic efficacy.

    Returns:
        Tensor[T, B, N]: the synaptic current I.
    """
    return torch.ops.naca.stp_forward(spikes, float(U), float(tau_f), float(tau_d), float(tau_s), float(A))


def homeostatic_relax(state: Tensor, drive: Tensor, eps: float = 0.5, iters: int = 20) -> Tensor:
    """SBP's homeostatic relaxation, elementwise: ``iters`` times s <- clamp(s - eps (s - drive), 0, 1).

    One pass over memory: each element runs all its steps in registers (CUDA) or in an
    L1-resident block (CPU). A step that leaves an element (on CPU, a block)
    unchanged is a fixed point, so the remaining steps are skipped (same
    result; with 0 <= eps <= 1 every element gets there). No autograd
    (``torch_plugin.nn.homeostatic_relax`` computes the drive from the layers
    and runs a differentiable torch loop when a gradient is needed).

    Args:
        state (Tensor[...]): the start s, any shape.
        drive (Tensor[...]): the fixed drive, the same shape, dtype and device as ``state``.
        eps (float): step size.
        iters (int): number of steps (>= 0).

    Returns:
        Tensor[...]: the relaxed state, a new contiguous tensor.
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
    matrices of docs/algorithms.md §2.1. fraction=0 gives w += alpha * dw (the local rule).

    Args:
        w_in (Tensor[H, I]): input weights, updated in place.
        w_out (Tensor[O, H]): output weights, updated in place.
        dw_in (Tensor[H, I]): the local change of w_in (sign: to be added).
        dw_out (Tensor[O, H]): the local change of w_out (sign: to be added).
        mask (Tensor[H, I], optional): bool or 0/1 (lambda_p): which input synapses of each
            hidden unit receive the self-backpropagated spread; None = all (the authors' code).
        fraction (float): f = lambda_f, the share of the output change spread back.
        alpha_in (float): w_in's learning rate.
        alpha_out (float): w_out's learning rate.
    """
    torch.ops.naca.sbp_update_(
        w_in, w_out, dw_in, dw_out, mask, float(fraction), float(alpha_in), float(alpha_out)
    )
