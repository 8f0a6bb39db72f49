"""Ready-made networks of the plugin's layers, usable by NACA and by backprop alike."""
from __future__ import annotations

from typing import Optional, Sequence

from torch import nn

from .nn import NACAConv2d, NACALinear, NACAOutput
from .nn.common import check_int, check_real, check_seed


def _widths(who: str, hidden, name: str = "hidden") -> list[int]:
    """hidden as a list of layer widths (each >= 1): an int is one layer."""
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence) and not hasattr(hidden, "__index__"):
        raise TypeError(f"{who}: argument '{name}' expected an integer or a sequence of integers, got {hidden!r}")
    if not isinstance(hidden, Sequence):
        return [check_int(who, name, hidden, 1)]
    return [check_int(who, name, h, 1) for h in hidden]


def _out_bias(bias: bool, output_bias: Optional[bool]) -> bool:
    """Whether the output layer has a bias: output_bias, or as the hidden layers when None."""
    return bool(bias) if output_bias is None else bool(output_bias)


def mlp(in_features: int, hidden: Sequence[int], num_classes: int, activation: str = "tanh",
        ni_init: str = "uniform", seed: Optional[int] = None, sigmoid_grad: bool = True,
        bias: bool = True, output_bias: Optional[bool] = None) -> nn.Sequential:
    """Flatten -> NACALinear(act) x len(hidden) -> NACAOutput (logits).

    hidden: the hidden widths, a sequence (empty: the output layer alone) or an int (one layer).
    With a seed, hidden layer i draws its NI from seed + i (weights follow torch's RNG).
    bias: the hidden layers have biases; output_bias: the output layer has one (None: as bias).
    The authors' class-incremental ANN has none (bias=False); their classification code has them.
    """
    width = check_int("mlp", "in_features", in_features, 1)
    check_int("mlp", "num_classes", num_classes, 2)
    sizes = _widths("mlp", hidden)
    check_seed("mlp", seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for i, h in enumerate(sizes):
        layers.append(NACALinear(width, h, num_classes, bias=bias, activation=activation, ni_init=ni_init,
                                 seed=None if seed is None else seed + i))
        width = h
    layers.append(NACAOutput(width, num_classes, bias=_out_bias(bias, output_bias),
                             sigmoid_grad=sigmoid_grad))
    return nn.Sequential(*layers)


def conv_net(in_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (64, 128),
             hidden: int = 1000, activation: str = "tanh", seed: Optional[int] = None,
             bias: bool = True, output_bias: Optional[bool] = None, kernel_size: int = 3) -> nn.Sequential:
    """The papers' layout: [conv k x k (pad k // 2, stride 1) -> act -> avgpool 2] per channel count -> FC hidden
    -> FC out.

    in_shape: (C, H, W). Default channels (64, 128) and hidden 1000 give conv64-conv128-FC1000-FC10. The
    authors' kernels are 5 x 5 (their topology string CONV_64_5_1_2_CONV_128_5_1_2_FC_1000_FC_10):
    kernel_size=5; the default 3 is this package's smaller, faster variant (odd sizes only, so the padding
    keeps H x W). bias: the conv and hidden FC layers have biases (as the authors' classification code);
    output_bias: the output layer has one (None: as bias).
    """
    who = "conv_net"
    if check_int(who, "kernel_size", kernel_size, 1) % 2 == 0:
        raise ValueError(f"{who}: argument 'kernel_size' expected an odd integer >= 1, got {kernel_size}")
    if isinstance(in_shape, (str, bytes)) or not isinstance(in_shape, Sequence):
        raise TypeError(f"{who}: argument 'in_shape' expected a sequence (C, H, W), got {in_shape!r}")
    if len(in_shape) != 3:
        raise ValueError(f"{who}: argument 'in_shape' expected 3 values (C, H, W), got {tuple(in_shape)!r}")
    c, h, w = (check_int(who, "in_shape", d, 1) for d in in_shape)
    channels = _widths(who, channels, "channels")
    hidden = check_int(who, "hidden", hidden, 1)
    check_int(who, "num_classes", num_classes, 2)
    check_seed(who, seed)
    side = 2 ** len(channels)  # each block halves H and W (AvgPool2d(2))
    if h < side or w < side:
        raise ValueError(f"{who}: argument 'in_shape' expected H and W >= {side} (each of the {len(channels)} "
                         f"conv blocks halves them), got {tuple(in_shape)}")
    layers: list[nn.Module] = []
    for i, ch in enumerate(channels):
        layers += [NACAConv2d(c, ch, kernel_size, num_classes, (h, w), padding=kernel_size // 2, bias=bias,
                              activation=activation,
                              seed=None if seed is None else seed + i), nn.AvgPool2d(2)]
        c, h, w = ch, h // 2, w // 2
    layers += [nn.Flatten(),
               NACALinear(c * h * w, hidden, num_classes, bias=bias, activation=activation,
                          seed=None if seed is None else seed + len(channels)),
               NACAOutput(hidden, num_classes, bias=_out_bias(bias, output_bias))]
    return nn.Sequential(*layers)


def spiking_mlp(in_features: int, hidden, num_classes: int, T: int = 20, seed: Optional[int] = None,
                decay: float = 0.2, threshold: float = 0.5, lens: float = 0.5, surrogate: bool = True,
                slope: float = 5.0, init_gain: float = 1.0, ni_init: str = "uniform",
                stp: bool = False, current: str = "linear", bias: bool = True,
                output_bias: Optional[bool] = None) -> nn.Sequential:
    """A spiking MLP: BernoulliEncoder(T) -> NACASpikingLinear x len(hidden) -> output NACASpikingLinear -> SpikeRate.

    forward(x): x (B, ...) intensities in [0, 1] (flattened to in_features) ->
    output firing rates (B, num_classes) in [0, 1], usable as logits (argmax).
    hidden: an int or a sequence of ints. The same model trains with
    ``learn.NACA`` (naca_snn_update_), ``learn.SBP`` (one hidden layer) or
    backprop through time with surrogate spike gradients (``surrogate=True``,
    the default: gradients flow whenever autograd needs them; e.g. MSE between
    the rates and onehot(y), or cross-entropy on the rates).
    With a seed, the encoder draws its spikes from seed and hidden layer i its NI
    from seed + i (weights follow torch's RNG). init_gain scales the default
    nn.Linear weight init. LIF: decay 0.2, threshold 0.5, hard reset.
    stp=True puts an ``STPSynapse`` (Tsodyks-Markram, docs/algorithms.md §2.2 constants) between the
    encoder and the first layer, which then integrates the short-term-plastic synaptic current
    of the input spikes (and its learner correlates with that current).
    current='sigmoid': every layer integrates sigmoid(W x_t + b) (the authors' class-incremental
    SNN; train it as theirs with ``learn.NACA(..., membrane_chain=True)`` and lens=0.2).
    bias: the hidden layers have biases; output_bias: the output layer has one (None: as bias). The
    authors' class-incremental SNN has an output bias only (bias=False, output_bias=True).
    """
    from .nn import BernoulliEncoder, NACASpikingLinear, SpikeRate, STPSynapse

    sizes = _widths("spiking_mlp", hidden)
    width = check_int("spiking_mlp", "in_features", in_features, 1)
    check_int("spiking_mlp", "num_classes", num_classes, 2)
    init_gain = check_real("spiking_mlp", "init_gain", init_gain)
    layers: list[nn.Module] = [BernoulliEncoder(T, seed)] + ([STPSynapse()] if stp else [])
    kw = dict(decay=decay, threshold=threshold, lens=lens, surrogate=surrogate, slope=slope, ni_init=ni_init,
              current=current)
    for i, h in enumerate(sizes):
        layers.append(NACASpikingLinear(width, h, num_classes, bias=bias, seed=None if seed is None else seed + i,
                                        **kw))
        width = h
    layers.append(NACASpikingLinear(width, num_classes, num_classes, is_output=True,
                                    bias=_out_bias(bias, output_bias),
                                    seed=None if seed is None else seed + len(sizes), **kw))
    if init_gain != 1.0:
        for m in layers:
            if isinstance(m, NACASpikingLinear):
                m.weight.data.mul_(init_gain)
    layers.append(SpikeRate())
    return nn.Sequential(*layers)


def sbp_snn(in_features: int, hidden: int, num_classes: int, T: int = 20, seed: Optional[int] = None,
            **kwargs) -> nn.Sequential:
    """The three-layer SNN of the SBP paper (input - hidden - output): ``spiking_mlp`` with one hidden
    layer (``stp=True`` among the kwargs adds short-term plasticity on the input synapses). hidden: its width."""
    return spiking_mlp(in_features, [check_int("sbp_snn", "hidden", hidden, 1)], num_classes, T=T, seed=seed,
                       **kwargs)


def sbp_ann(in_features: int, hidden: int, num_classes: int, activation: str = "sigmoid",
            seed: Optional[int] = None, bias: bool = True, output_bias: Optional[bool] = None) -> nn.Sequential:
    """The two-layer ANN for ``learn.SBP``: Flatten -> NACALinear(sigmoid) -> NACAOutput (logits).

    SBP reads the output as sigmoid(logits); prediction is logits.argmax(1). hidden: its width.
    """
    return mlp(in_features, [check_int("sbp_ann", "hidden", hidden, 1)], num_classes, activation=activation,
               seed=seed, bias=bias, output_bias=output_bias)
