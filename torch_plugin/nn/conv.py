"""A conv layer trained by NACA."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from ._common import Recording, activate_and_record, activation_fn, make_ni


class NACAConv2d(Recording, nn.Conv2d):
    """``nn.Conv2d`` followed by an activation, with a per-(channel, y, x) NI buffer.

    NACA modulates every output position: NI has shape (2N, C_out, Ho, Wo), so the
    layer needs the input's spatial size up front (``input_size``). Pooling goes
    after the layer as a plain ``nn.AvgPool2d``: the modulation applies to the
    conv output before pooling. Only ``padding_mode='zeros'`` is supported.
    Shapes: input (B, C_in, H, W) -> output (B, C_out, Ho, Wo).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Union[int, Sequence[int]],
        num_classes: int,
        input_size: Union[int, Sequence[int]],
        stride: Union[int, Sequence[int]] = 1,
        padding: Union[int, Sequence[int]] = 0,
        dilation: Union[int, Sequence[int]] = 1,
        groups: int = 1,
        bias: bool = True,
        activation: str = "tanh",
        ni_init: str = "uniform",
        seed: Optional[int] = None,
        device=None,
        dtype=None,
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, device=device, dtype=dtype)
        if isinstance(self.padding, str):
            raise ValueError("NACAConv2d needs numeric padding, got " + repr(self.padding))
        self.num_classes = int(num_classes)
        self.activation = activation
        self._act = activation_fn(activation)
        self.input_size = _pair(input_size)
        self.output_size = tuple(
            (self.input_size[i] + 2 * self.padding[i] - self.dilation[i] * (self.kernel_size[i] - 1) - 1)
            // self.stride[i] + 1
            for i in range(2)
        )
        if min(self.output_size) < 1:
            raise ValueError(f"input_size {self.input_size} is too small for kernel {self.kernel_size}")
        ni = make_ni(num_classes, (out_channels, *self.output_size), ni_init, seed,
                     self.weight.dtype, self.weight.device)
        self.register_buffer("ni", ni)
        self.record = False
        self.saved: Optional[tuple[Tensor, Tensor]] = None

    def forward(self, x: Tensor) -> Tensor:
        z = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return activate_and_record(self, x, z)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, num_classes={self.num_classes}, "
                f"input_size={self.input_size}, activation={self.activation}")
