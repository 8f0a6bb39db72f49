"""Fake kernels of the ``torch.ops.naca`` operators: shapes only, for torch.compile / FakeTensor /
opcheck. Imported by ``torch_plugin.ops``."""
from __future__ import annotations

import torch


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
