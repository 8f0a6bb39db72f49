"""Ready-made networks of the plugin's layers, usable by NACA and by backprop alike."""
from __future__ import annotations

from typing import Optional, Sequence

from torch import nn

from .nn import NACAConv2d, NACALinear, NACAOutput


def mlp(in_features: int, hidden: Sequence[int], num_classes: int, activation: str = "tanh",
        ni_init: str = "uniform", seed: Optional[int] = None, sigmoid_grad: bool = True) -> nn.Sequential:
    """Flatten -> NACALinear(act) x len(hidden) -> NACAOutput (logits).

    With a seed, hidden layer i draws its NI from seed + i (weights follow torch's RNG).
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for i, h in enumerate(hidden):
        layers.append(NACALinear(width, h, num_classes, activation=activation, ni_init=ni_init,
                                 seed=None if seed is None else seed + i))
        width = h
    layers.append(NACAOutput(width, num_classes, sigmoid_grad=sigmoid_grad))
    return nn.Sequential(*layers)


def conv_net(in_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (64, 128),
             hidden: int = 1000, activation: str = "tanh", seed: Optional[int] = None) -> nn.Sequential:
    """The papers' net: [conv3x3(pad 1) -> act -> avgpool 2] per channel count -> FC hidden -> FC out.

    in_shape: (C, H, W). Default channels (64, 128) and hidden 1000 give conv64-conv128-FC1000-FC10.
    """
    c, h, w = in_shape
    layers: list[nn.Module] = []
    for i, ch in enumerate(channels):
        layers += [NACAConv2d(c, ch, 3, num_classes, (h, w), padding=1, activation=activation,
                              seed=None if seed is None else seed + i), nn.AvgPool2d(2)]
        c, h, w = ch, h // 2, w // 2
    layers += [nn.Flatten(),
               NACALinear(c * h * w, hidden, num_classes, activation=activation,
                          seed=None if seed is None else seed + len(channels)),
               NACAOutput(hidden, num_classes)]
    return nn.Sequential(*layers)
