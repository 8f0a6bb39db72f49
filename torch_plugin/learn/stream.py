"""Streaming NACA updates: each trained layer learns the moment its forward output exists.

A NACA update needs only the layer's own input and output and the labels (known
before the forward), and it changes only that layer's weight and bias, which no
later layer reads. So the learner hands every trained layer a *sink*
(``nn.common.keep``): the layer's forward passes (input, output) to it, the sink
applies the update at once and nothing is kept. A step then holds the tensors of
one layer at a time, whatever the depth, and its weights equal those of a step
that runs the whole forward first and updates every layer afterwards (the same op
calls on the same tensors, in another order).

Atomicity. A step writes nothing before it knows every write will succeed:

* inputs and labels (types, shapes, the labels' range) are checked before the forward;
* the first step for a new *signature* (``fingerprint``: the input's shape, dtype,
  device and strides, the labels' device, the learner's scalars, the shape, strides,
  dtype and device of every trained layer's weight) runs the whole forward keeping
  every layer's tensors, fails if a trained layer did not run, runs every update into
  scratch tensors (``scratch``: the ops check every argument before writing), and
  only then zeroes ``.grad`` (optimizer, skip_nonfinite) and applies them all. An
  error of the forward (a plain layer's shape mismatch, a BatchNorm given one sample)
  or of an update (a conv layer whose ``input_size`` does not match the data, a
  non-contiguous weight) therefore changes nothing;
* later steps with a validated signature stream. What can still stop one after some
  layers were updated (the error then names them) is what the signature does not
  fix: a forward whose layer calls or errors depend on the data's values, a change
  to the model outside the trained layers' weights after it has stepped (a plain
  module replaced, a trained layer's NI buffer replaced), running out of memory.
  ``NACA(streaming=False)`` keeps every step's whole forward until it has completed
  and checked its calls, so that only an update argument changed after the first
  step (a replaced NI buffer) and running out of memory remain (memory: the
  validating step's).

Deferred layers. A layer called more than once in a forward (weight sharing), and a
layer whose parameter another module also holds (tied weights), must not change
before the forward's last use of it: their calls are kept and applied, in call order,
after the forward (the layer learns the sum of its calls' updates, as backprop sums
their gradients). The validating step finds repeated calls; ``tied_layers`` finds
shared parameters.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from ..nn import NACAConv2d, NACALinear, NACAOutput
from .common import targets


class StepState:
    """One step's context, read by the layers' sinks during the forward.

    Args:
        y: labels (B,) int64. lr: the ops' lr (-1 when the update goes to ``.grad``).
        into_grad: the update goes to ``.grad``. op_checks: the ops check the labels.
        valid: (B, 1) bool mask of in-range labels (spiking models, unchecked labels) or None.
        keep: per trained layer, whether its calls are kept rather than applied at its forward.
    """

    def __init__(self, y: Tensor, lr: float, into_grad: bool, op_checks: bool, valid: Optional[Tensor],
                 keep: tuple):
        self.y, self.lr, self.into_grad, self.op_checks, self.valid = y, lr, into_grad, op_checks, valid
        self.keep = keep
        self.counts = [0] * len(keep)   # calls of each trained layer in this forward
        self.kept: list = []            # (layer index, saved tensors), in call order
        self.written: list = []         # indices of the layers updated during the forward
        self.logits: Optional[Tensor] = None  # set when a validating forward already ran


def fingerprint(x: Tensor, y: Tensor, weights: list, scalars: tuple) -> tuple:
    """What decides whether a step's forward and updates can fail, short of the data's values:
    the shapes, strides, dtypes and devices of x and of the trained layers' weights (``model.to``,
    ``channels_last`` and ``.data`` swaps change them, and biases and NI with them), the labels'
    device and the learner's ``scalars``. (Per step: about 0.6 us per trained layer.)"""
    return (tuple(x.shape), x.dtype, x.device, x.stride(), y.device, scalars,
            tuple((w.shape, w.stride(), w.dtype, w.device) for w in weights))


def tied_layers(model: nn.Module, layers: list) -> tuple:
    """Per trained layer: whether one of its parameters is also held by another module."""
    owners: dict[int, int] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    # (a module listed twice in the tree counts once: model.modules() yields it once)
    return tuple(any(owners[id(p)] > 1 for p in layer.parameters(recurse=False)) for layer in layers)


def scratch(t: Optional[Tensor]) -> Optional[Tensor]:
    """A zero tensor with t's shape, strides, dtype and device (a dry run's write target)."""
    if t is None:
        return None
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device).zero_()


#: A NACALinear output of at least this many bytes is updated in CHUNKS slices of its batch.
CHUNK_MIN_BYTES = 1 << 20
CHUNKS = 8


def batch_chunks(h: Tensor) -> list:
    """The batch slices one NACALinear update is applied in.

    The hidden update op allocates its delta f(NL) * act'(z), one more tensor of the
    layer's output size, while the step already holds the layer's input and output:
    a third of a streamed step's peak. For a large output (at least ``CHUNK_MIN_BYTES``)
    the update is applied in ``CHUNKS`` consecutive slices of the batch, each op call
    adding its slice's batch sum to the weight in place, so the delta is an eighth of
    the output. The sum is the same update; its rounding differs from one call by the
    order of the additions. Smaller outputs keep one call (no extra op calls where the
    memory is small).

    Args:
        h: Tensor[B, H], the layer's output.

    Returns:
        A list of slices of the batch dimension.
    """
    batch = h.shape[0]
    if batch < 2 * CHUNKS or h.numel() * h.element_size() < CHUNK_MIN_BYTES:
        return [slice(None)]
    rows = -(-batch // CHUNKS)
    return [slice(b0, min(b0 + rows, batch)) for b0 in range(0, batch, rows)]


def write_update(learner, layer: nn.Module, saved: tuple, st: StepState, dry: bool = False) -> None:
    """Apply one call's NACA update of ``layer`` from its ``saved`` forward tensors.

    saved: NACALinear (input (B, I), h = act(z) (B, H)); NACAConv2d (input (B, C, H, W),
    h (B, C_out, Ho, Wo)); NACAOutput (input (B, I), logits (B, N)); NACASpikingLinear
    (input spikes (T, B, I), voltages (T, B, H), spikes (T, B, H)). ``dry``: write into
    scratch tensors instead (the ops' argument checks, nothing of the model changes).
    """
    params = [layer.weight, layer.bias]
    w, b = [scratch(p) for p in params] if dry else targets(params, st.into_grad or None)
    y, lr, checks = st.y, st.lr, st.op_checks
    if isinstance(layer, NACAOutput):
        pre, z = saved
        # e = sigmoid(z) - onehot(y), times sigmoid'(z) or not, in one kernel
        ops.naca_output_update_(w, b, pre, z, y, lr, layer.sigmoid_grad, check_labels=checks)
    elif isinstance(layer, NACAConv2d):
        pre, h = saved  # the layer keeps h = act(z); act' is taken from h
        ops.naca_conv_update_(w, b, pre, h, y, layer.ni, layer.stride, layer.padding, layer.dilation,
                              layer.groups, layer.activation, lr, learner.lam, learner.theta, from_output=True,
                              check_labels=checks)
    elif isinstance(layer, NACALinear):
        pre, h = saved
        for s in batch_chunks(h):
            ops.naca_hidden_update_(w, b, pre[s], h[s], y[s], layer.ni, layer.activation, lr, learner.lam,
                                    learner.theta, from_output=True, check_labels=checks)
    else:
        _spiking_update(learner, layer, saved, st, w, b)


def _spiking_update(learner, layer: nn.Module, saved: tuple, st: StepState, w: Tensor, b: Optional[Tensor]) -> None:
    pre, volts, spikes = saved
    valid, y = st.valid, st.y
    if layer.is_output:  # its rate error, from every step (see the NACA docstring)
        n = layer.num_classes
        if valid is None:
            signal = spikes.mean(0) - F.one_hot(y, n).to(spikes.dtype)
        else:  # no one_hot (a device assert on CUDA for a bad label)
            target = y.unsqueeze(1) == torch.arange(n, device=y.device)
            signal = (spikes.mean(0) - target.to(spikes.dtype)) * valid
        all_steps = True
    else:
        # Unchecked labels: a sample whose label is out of range gets a zero signal in every
        # layer (f(NL) of its zero NL row is not zero, hence the mask).
        signal = ops.modulation(ops.neuromodulator(y, layer.ni, check_labels=st.op_checks),
                                learner.lam, learner.theta)
        if valid is not None:
            signal = signal * valid
        all_steps = learner.all_steps
    if learner.membrane_chain:
        lif = layer.lif
        ops.naca_snn_chain_update_(w, b, pre, volts, spikes, signal, lif.decay, lif.threshold, layer.lens,
                                   lif.reset, layer.current, st.lr)
    else:
        ops.naca_snn_update_(w, b, pre, volts, spikes, signal, layer.threshold, layer.lens, st.lr, all_steps)
