"""Spiking layers (docs/algorithms.md §1.5 and §2.2): multi-step LIF neurons, a spiking
linear layer NACA can train, a seeded Bernoulli rate encoder, a spike-rate
readout, Tsodyks-Markram short-term plasticity and the homeostatic
membrane-potential relaxation used by SBP.

Sequences are time-major: (T, B, N).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from .common import Recording, check_choice, check_int, check_layer_args, check_real, check_seed, keep, make_ni

__all__ = [
    "LIF", "NACASpikingLinear", "BernoulliEncoder", "SpikeRate", "STPSynapse",
    "stp_forward", "homeostatic_relax", "surrogate_spike",
]


class _SurrogateSpike(torch.autograd.Function):
    """Heaviside forward, slope * sigmoid'(slope * (v - threshold)) backward."""

    @staticmethod
    def forward(ctx, v: Tensor, threshold: float, slope: float) -> Tensor:
        ctx.save_for_backward(v)
        ctx.threshold, ctx.slope = threshold, slope
        return (v > threshold).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (v,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.slope * (v - ctx.threshold))
        return grad * ctx.slope * sg * (1 - sg), None, None


def surrogate_spike(v: Tensor, threshold: float = 0.5, slope: float = 5.0) -> Tensor:
    """s = 1[v > threshold] with a sigmoid surrogate gradient (for backprop through spikes).

    Args:
        v (Tensor[...]): membrane potentials, any shape.
        threshold (float): the firing threshold.
        slope (float): the surrogate's steepness: ds/dv = slope * sigmoid'(slope * (v - threshold)).

    Returns:
        Tensor[...]: the spikes, v's shape and dtype.
    """
    return _SurrogateSpike.apply(v, threshold, slope)


class LIF(nn.Module):
    """Multi-step leaky integrate-and-fire neurons over a (T, B, N) current.

    V_t = decay V_{t-1} (1 - s_{t-1}) + I_t (reset='hard'; 'soft' subtracts the
    threshold instead), s_t = 1[V_t > threshold]; defaults decay 0.2, threshold
    0.5 (the NACA code). Without autograd (or under NACA/SBP learners) the
    whole sequence runs in one fused op, ``ops.lif_forward``. When a gradient is
    needed and ``surrogate`` is True, the same dynamics run as a differentiable
    loop over T with a sigmoid surrogate spike derivative (``slope``; the reset
    path is detached), so the model can be trained by backprop (BPTT).
    ``forward`` returns the spikes; ``run`` returns (spikes, voltages).
    Checked when built: decay in [0, 1] (the share of the potential kept per step;
    above 1 it grows without input), threshold finite, slope finite and > 0.

    Args:
        decay (float): the share of the potential kept per step, in [0, 1].
        threshold (float): the firing threshold.
        reset (str): 'hard' (V to 0 after a spike) or 'soft' (V minus the threshold).
        surrogate (bool): allow backprop through the spikes (the differentiable loop).
        slope (float): the surrogate's steepness (``surrogate_spike``).

    Shapes: current (T, B, N) -> spikes (T, B, N).
    """

    def __init__(self, decay: float = 0.2, threshold: float = 0.5, reset: str = "hard",
                 surrogate: bool = True, slope: float = 5.0):
        super().__init__()
        self.decay, self.threshold, self.reset, self.slope = _lif_args("LIF", decay, threshold, reset, slope)
        self.surrogate = bool(surrogate)

    def run(self, current: Tensor, v_init: Optional[Tensor] = None,
            s_init: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """The whole sequence: fused (``ops.lif_forward``) without a gradient, else the surrogate loop.

        Args:
            current (Tensor[T, B, N]): the input current.
            v_init (Tensor[B, N], optional): the potential before the first step (zeros when None).
            s_init (Tensor[B, N], optional): the spikes before the first step (zeros when None).

        Returns:
            tuple[Tensor[T, B, N], Tensor[T, B, N]]: (spikes, voltages after integration, before reset).

        Raises:
            ValueError: ``current`` is not 3-D.
            RuntimeError: a gradient is needed and ``surrogate=False``.
        """
        if current.dim() != 3:
            raise ValueError(f"LIF expects a (T, B, N) current, got shape {tuple(current.shape)}")
        if torch.is_grad_enabled() and current.requires_grad:
            if not self.surrogate:
                raise RuntimeError("LIF: a gradient is required but surrogate=False; "
                                   "use surrogate=True or run under torch.no_grad()")
            return self._run_surrogate(current, v_init, s_init)
        return ops.lif_forward(current.detach(), self.decay, self.threshold, self.reset, v_init, s_init)

    def _run_surrogate(self, current, v_init, s_init):
        v = torch.zeros_like(current[0]) if v_init is None else v_init
        s = torch.zeros_like(current[0]) if s_init is None else s_init
        spikes, volts = [], []
        for i_t in current:
            sd = s.detach()
            kept = v - self.threshold * sd if self.reset == "soft" else v * (1 - sd)
            v = self.decay * kept + i_t
            s = surrogate_spike(v, self.threshold, self.slope)
            spikes.append(s)
            volts.append(v)
        return torch.stack(spikes), torch.stack(volts)

    def forward(self, current: Tensor) -> Tensor:
        """The spikes of ``run``.

        Args:
            current (Tensor[T, B, N]): the input current.

        Returns:
            Tensor[T, B, N]: the spikes.
        """
        return self.run(current)[0]

    def extra_repr(self) -> str:
        return f"decay={self.decay}, threshold={self.threshold}, reset={self.reset!r}, surrogate={self.surrogate}"


CURRENTS = ("linear", "sigmoid")


def _lif_args(who: str, decay, threshold, reset, slope) -> tuple[float, float, str, float]:
    return (check_real(who, "decay", decay, 0.0, 1.0), check_real(who, "threshold", threshold),
            check_choice(who, "reset", reset, ("hard", "soft")), check_real(who, "slope", slope, 0.0, low_open=True))


class NACASpikingLinear(Recording, nn.Linear):
    """A spiking layer: current I_t = W x_t + b (or sigmoid of it) fed to LIF neurons, (T, B, I) -> (T, B, H) spikes.

    Trained by ``learn.NACA`` with ``ops.naca_snn_update_`` (hidden layers by
    f(E[y] NI), the output layer, ``is_output=True``, by its rate error
    mean_t s_t - onehot(y)), by ``learn.SBP``, or by backprop through the
    surrogate spike of its ``LIF``. Holds the fixed NI buffer (2N, H) like
    ``NACALinear``. While ``record`` is set (by the learners) the forward keeps
    ``saved = (pre_spikes, voltages, spikes)``.

    Args:
        in_features (int): I.
        out_features (int): H (num_classes for an output layer).
        num_classes (int): N >= 2.
        bias (bool): as ``nn.Linear``.
        decay, threshold, reset: the LIF dynamics (``LIF``).
        lens (float): the eligibility window of the NACA rule (1[V > threshold - lens]), >= 0.
        is_output (bool): the output layer (trained by its rate error).
        surrogate, slope: see ``LIF``.
        ni_init (str): NI's distribution, see ``make_ni``.
        seed (int, optional): NI's own seed.
        current (str): 'linear' (I_t = W x_t + b) or 'sigmoid' (I_t = sigmoid(W x_t + b), the
            authors' class-incremental SNN: V_t = decay V_{t-1} (1 - s_{t-1}) + sigmoid(W x_t)).
        device, dtype: as ``nn.Linear``.

    Shapes: input spikes (T, B, I) -> spikes (T, B, H).
    """

    def __init__(self, in_features: int, out_features: int, num_classes: int, bias: bool = True,
                 decay: float = 0.2, threshold: float = 0.5, reset: str = "hard", lens: float = 0.5,
                 is_output: bool = False, surrogate: bool = True, slope: float = 5.0,
                 ni_init: str = "uniform", seed: Optional[int] = None, current: str = "linear",
                 device=None, dtype=None):
        who = "NACASpikingLinear"
        num_classes = check_layer_args(who, num_classes, None, ni_init, seed)
        in_features = check_int(who, "in_features", in_features, 1)
        out_features = check_int(who, "out_features", out_features, 1)
        check_choice(who, "current", current, CURRENTS)
        _lif_args(who, decay, threshold, reset, slope)
        lens = check_real(who, "lens", lens, 0.0)
        if is_output and out_features != num_classes:
            raise ValueError(f"{who}: argument 'out_features' expected num_classes ({num_classes}) for an output "
                             f"layer (is_output=True), got {out_features}")
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.current = current
        self.num_classes = num_classes
        self.lens = lens
        self.is_output = bool(is_output)
        self.lif = LIF(decay, threshold, reset, surrogate, slope)
        ni = make_ni(num_classes, (out_features,), ni_init, seed, self.weight.dtype, self.weight.device)
        self.register_buffer("ni", ni)
        self.record = False
        self.saved: Optional[tuple[Tensor, Tensor, Tensor]] = None

    @property
    def threshold(self) -> float:
        return self.lif.threshold

    def forward(self, x: Tensor) -> Tensor:
        """The LIF neurons driven by the current of ``x``; while ``record`` is set, keeps
        (pre_spikes, voltages, spikes) in ``saved``.

        Args:
            x (Tensor[T, B, I]): the input spikes.

        Returns:
            Tensor[T, B, H]: the spikes.
        """
        if x.dim() != 3:
            raise ValueError(f"NACASpikingLinear expects (T, B, in_features) spikes, got shape {tuple(x.shape)}")
        current = F.linear(x, self.weight, self.bias)
        if self.current == "sigmoid":
            current = torch.sigmoid(current)
        spikes, volts = self.lif.run(current)
        del current  # (T, B, H): not needed once the voltages exist; a learner's update may run below
        if self.record:
            keep(self, (x.detach(), volts.detach(), spikes.detach()))
        return spikes

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, num_classes={self.num_classes}, lens={self.lens}, "
                f"is_output={self.is_output}, current={self.current!r}")


class BernoulliEncoder(nn.Module):
    """Rate code: intensities x (B, ...) in [0, 1] -> spikes (T, B, prod(...)), x_t = 1[x > U(0, 1)].

    With a seed the draws come from the encoder's own generator (one per device,
    seeded identically), so two encoders with the same seed emit the same
    spike trains; without one, from torch's global RNG. Values outside [0, 1]
    are clamped.

    Args:
        T (int): time steps, >= 1.
        seed (int, optional): the encoder's own seed (None: torch's global RNG).
    """

    def __init__(self, T: int = 20, seed: Optional[int] = None):
        super().__init__()
        self.T = check_int("BernoulliEncoder", "T", T, 1)
        self.seed = check_seed("BernoulliEncoder", seed)
        # The per-device generators made so far, by str(device); a checkpoint saves and restores them.
        self.generators: dict[str, torch.Generator] = {}

    def generator(self, device: torch.device) -> Optional[torch.Generator]:
        """The generator the draws on ``device`` come from, made from the seed at first use (None
        without a seed: torch's global RNG)."""
        if self.seed is None:
            return None
        key = str(device)
        if key not in self.generators:
            self.generators[key] = torch.Generator(device=device).manual_seed(int(self.seed))
        return self.generators[key]

    def reseed(self, seed: Optional[int]) -> None:
        """A new seed; the generators are made again from it at their next use."""
        self.seed = check_seed("BernoulliEncoder", seed)
        self.generators.clear()

    def forward(self, x: Tensor) -> Tensor:
        """Draws the spikes.

        Args:
            x (Tensor[B, ...]): intensities, flattened per sample.

        Returns:
            Tensor[T, B, prod(...)]: spikes, x's dtype.
        """
        x = x.reshape(x.shape[0], math.prod(x.shape[1:])).clamp(0, 1)  # (not -1: B may be 0)
        u = torch.rand((self.T, *x.shape), generator=self.generator(x.device), device=x.device, dtype=x.dtype)
        return (x.unsqueeze(0) > u).to(x.dtype)

    def extra_repr(self) -> str:
        return f"T={self.T}, seed={self.seed}"


class SpikeRate(nn.Module):
    """Firing rate readout: spikes (T, B, N) -> mean over T, (B, N)."""

    def forward(self, spikes: Tensor) -> Tensor:
        """The mean over time.

        Args:
            spikes (Tensor[T, B, N]): spikes.

        Returns:
            Tensor[B, N]: the rates.
        """
        return spikes.mean(0)


def _needs_grad(*tensors: Optional[Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _fusable(*tensors: Tensor) -> bool:
    """Whether the fused ops take these tensors: one device, CPU or CUDA, one dtype they support."""
    t0 = tensors[0]
    ok = t0.dtype in (torch.float32, torch.float64) or (
        t0.device.type == "cuda" and t0.dtype in (torch.float16, torch.bfloat16))
    return (ok and t0.device.type in ("cpu", "cuda")
            and all(t.device == t0.device and t.dtype == t0.dtype for t in tensors))


def stp_forward(spikes: Tensor, U: float = 0.45, tau_f: float = 10.0, tau_d: float = 2.0,
                tau_s: float = 2.0, A: float = 1.0) -> Tensor:
    """Tsodyks-Markram short-term plasticity over a spike sequence (T, B, N) -> synaptic current (T, B, N).

    Per step (time in steps; the three updates in this order, each using the
    values just computed, as in the authors' code): u += -u/tau_f + U s (1 - u);
    x += (1 - x)/tau_d - u x s; I += -I/tau_s + A u x s. Starts at u = 0, x = 1,
    I = 0. Without a gradient, one fused op (``ops.stp_forward``: one pass,
    one launch on CUDA); when ``spikes`` needs a gradient, the same arithmetic
    as a differentiable loop of elementwise torch ops over T (``stp_forward_torch``).

    Args:
        spikes (Tensor[T, ...]): presynaptic spikes (or graded input), time first; (T, B, N) as
            the op, any other (T, ...) runs as (T, 1, prod(...)).
        U (float): utilisation increment.
        tau_f (float): facilitation time constant, in steps.
        tau_d (float): depression time constant, in steps.
        tau_s (float): synaptic current time constant, in steps.
        A (float): synaptic efficacy.

    Returns:
        Tensor[T, ...]: the synaptic current, spikes' shape.
    """
    if _needs_grad(spikes) or not _fusable(spikes) or spikes.dim() == 0 or spikes.shape[0] == 0:
        return stp_forward_torch(spikes, U, tau_f, tau_d, tau_s, A)
    # The op takes (T, B, N); any (T, ...) runs as (T, 1, prod(...)).
    seq = spikes if spikes.dim() == 3 else spikes.reshape(spikes.shape[0], 1, -1)
    return ops.stp_forward(seq.detach(), U, tau_f, tau_d, tau_s, A).view(spikes.shape)


def stp_forward_torch(spikes: Tensor, U: float = 0.45, tau_f: float = 10.0, tau_d: float = 2.0,
                      tau_s: float = 2.0, A: float = 1.0) -> Tensor:
    """``stp_forward`` as elementwise torch ops in a loop over T: differentiable, any device and dtype.

    What ``stp_forward`` runs when ``spikes`` needs a gradient, and the loop the fused op is
    measured against (``python -m torch_plugin.bench --sections snn``).

    Args:
        spikes (Tensor[T, ...]): presynaptic spikes (or graded input), time first.
        U (float): utilisation increment.
        tau_f (float): facilitation time constant, in steps.
        tau_d (float): depression (recovery) time constant, in steps.
        tau_s (float): synaptic current time constant, in steps.
        A (float): synaptic efficacy.

    Returns:
        Tensor[T, ...]: the synaptic current, same shape, dtype and device as ``spikes``.
    """
    u = torch.zeros_like(spikes[0])
    x = torch.ones_like(spikes[0])
    i_syn = torch.zeros_like(spikes[0])
    out = []
    for s in spikes:
        u = u - u / tau_f + U * s * (1 - u)
        x = x + (1 - x) / tau_d - u * x * s
        i_syn = i_syn - i_syn / tau_s + A * u * x * s
        out.append(i_syn)
    return torch.stack(out)


class STPSynapse(nn.Module):
    """Module form of ``stp_forward``: spikes (T, B, N) -> STP-filtered current (T, B, N).

    Put it between a spike source and a spiking layer to give the layer
    depressing/facilitating synapses (U 0.45, tau_f 10, tau_d 2, tau_s 2, as
    docs/algorithms.md §2.2). Each sequence starts from u = 0, x = 1, I = 0 and the
    filter acts on the presynaptic spikes, before W; the authors' MATLAB code
    (snntrain.m, snn_lif.m) starts from u = 0.1, x = 1, I = 0.1, keeps the state
    across batches and filters each postsynaptic neuron's input current, after W.
    Checked when built: U in [0, 1] (a utilisation fraction), A finite, and the time
    constants, in steps, >= 1: between spikes each step scales u, 1 - x and I by
    (1 - 1/tau), which for tau < 1 is negative (they flip sign every step) and for
    tau < 0.5 below -1 (they grow without bound).

    Args:
        U (float): utilisation increment, in [0, 1].
        tau_f, tau_d, tau_s (float): facilitation, depression and current time constants, in
            steps, >= 1.
        A (float): synaptic efficacy, finite.

    Shapes: spikes (T, B, N) -> current (T, B, N).
    """

    def __init__(self, U: float = 0.45, tau_f: float = 10.0, tau_d: float = 2.0, tau_s: float = 2.0, A: float = 1.0):
        super().__init__()
        who = "STPSynapse"
        self.U = check_real(who, "U", U, 0.0, 1.0)
        self.tau_f, self.tau_d, self.tau_s = (check_real(who, n, v, 1.0) for n, v in
                                              (("tau_f", tau_f), ("tau_d", tau_d), ("tau_s", tau_s)))
        self.A = check_real(who, "A", A)

    def forward(self, spikes: Tensor) -> Tensor:
        """``stp_forward`` with this synapse's parameters.

        Args:
            spikes (Tensor[T, B, N]): presynaptic spikes.

        Returns:
            Tensor[T, B, N]: the synaptic current.
        """
        return stp_forward(spikes, self.U, self.tau_f, self.tau_d, self.tau_s, self.A)

    def extra_repr(self) -> str:
        return f"U={self.U}, tau_f={self.tau_f}, tau_d={self.tau_d}, tau_s={self.tau_s}, A={self.A}"


def homeostatic_relax(s_h: Tensor, s_below: Tensor, w_below: Tensor, s_above: Optional[Tensor] = None,
                      w_above: Optional[Tensor] = None, b_h: Optional[Tensor] = None, eps: float = 0.5,
                      iters: int = 20) -> Tensor:
    """Homeostatic membrane-potential relaxation of a hidden layer (docs/algorithms.md §2.2).

    Repeats ``iters`` times s_h <- rho(s_h - eps (s_h - s_below W_below - s_above W_above^T - b_h)),
    rho = clamp to [0, 1]. Orientation (post, pre) as nn.Linear: w_below (H, I),
    w_above (O, H), so the bottom-up drive is F.linear(s_below, w_below, b_h)
    and the top-down one s_above @ w_above. s_h: (B, H) start state; s_below
    (B, I); s_above (B, O) or None (free phase without top-down input). The
    drive is computed once (one GEMM each); then, without a gradient, the
    ``iters`` elementwise steps run as one fused op (``ops.homeostatic_relax``),
    and when a gradient is needed as a differentiable loop of torch ops
    (``homeostatic_relax_torch``).

    Args:
        s_h (Tensor[B, H]): the start state.
        s_below (Tensor[B, I]): the layer below's state.
        w_below (Tensor[H, I]): the weights from below.
        s_above (Tensor[B, O], optional): the layer above's state (None: no top-down input).
        w_above (Tensor[O, H], optional): the weights to the layer above.
        b_h (Tensor[H], optional): the layer's bias.
        eps (float): step size.
        iters (int): number of steps.

    Returns:
        Tensor[B, H]: the relaxed state.
    """
    drive = F.linear(s_below, w_below, b_h)
    if s_above is not None:
        drive = drive + s_above @ w_above
    if not _needs_grad(s_h, drive) and _fusable(s_h, drive):
        state, drive = torch.broadcast_tensors(s_h.detach(), drive.detach())
        return ops.homeostatic_relax(state, drive, eps, iters)
    return homeostatic_relax_torch(s_h, drive, eps, iters)


def homeostatic_relax_torch(s_h: Tensor, drive: Tensor, eps: float = 0.5, iters: int = 20) -> Tensor:
    """The elementwise steps of ``homeostatic_relax`` as torch ops: differentiable, any device and dtype.

    ``iters`` times s_h <- clamp(s_h - eps (s_h - drive), 0, 1), with no early stop: what
    ``homeostatic_relax`` runs when a gradient is needed, and the loop the fused
    ``ops.homeostatic_relax`` is measured against (``python -m torch_plugin.bench --sections snn``).

    Args:
        s_h (Tensor[B, H]): the start state.
        drive (Tensor[B, H]): the fixed input (bottom-up plus top-down, computed once); broadcasts with ``s_h``.
        eps (float): step size.
        iters (int): number of steps.

    Returns:
        Tensor[B, H]: the relaxed state.
    """
    for _ in range(int(iters)):
        s_h = (s_h - eps * (s_h - drive)).clamp(0, 1)
    return s_h
