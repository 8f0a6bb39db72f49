"""A conv layer trained by NACA."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import Recording, activate_and_record, activation_fn, check_int, check_layer_args, check_pair, make_ni


class NACAConv2d(Recording, nn.Conv2d):
    """``nn.Conv2d`` followed by an activation, with a per-(channel, y, x) NI buffer.

    NACA modulates every output position: NI has shape (2N, C_out, Ho, Wo), so the
    layer needs the input's spatial size up front (``input_size``). Pooling goes
    after the layer as a plain ``nn.AvgPool2d``: the modulation applies to the
    conv output before pooling. Only ``padding_mode='zeros'`` is supported, and
    numeric padding (an int or a pair; the update ops take explicit padding).
    The constructor checks the geometry: kernel_size, stride, dilation >= 1,
    padding >= 0, groups dividing both channel counts, input_size (an int or
    (H, W)) large enough for the dilated kernel.

    Args:
        in_channels (int): C_in.
        out_channels (int): C_out.
        kernel_size (int or tuple[int, int]): as ``nn.Conv2d``.
        num_classes (int): N >= 2 (NI has shape (2N, C_out, Ho, Wo)).
        input_size (int or tuple[int, int]): (H, W) of the input, which fixes (Ho, Wo).
        stride, padding, dilation, groups, bias: as ``nn.Conv2d`` (numeric padding only).
        activation (str): one of ``ops.ACTIVATIONS``, as ``NACALinear``.
        ni_init (str): NI's distribution, see ``make_ni``.
        seed (int, optional): NI's own seed (None: the global RNG).
        padding_mode (str): 'zeros' only.
        device, dtype: as ``nn.Conv2d``.

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
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ):
        geometry = _check_geometry(in_channels, out_channels, kernel_size, input_size, stride, padding,
                                   dilation, groups, padding_mode)
        num_classes = check_layer_args("NACAConv2d", num_classes, activation, ni_init, seed)
        in_channels, out_channels, kernel_size, input_size, stride, padding, dilation, groups = geometry
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device=device, dtype=dtype)
        self.num_classes = num_classes
        self.activation = activation
        self._act = activation_fn(activation)
        self.input_size = input_size
        self.output_size = _output_size(input_size, kernel_size, stride, padding, dilation)
        ni = make_ni(num_classes, (out_channels, *self.output_size), ni_init, seed,
                     self.weight.dtype, self.weight.device)
        self.register_buffer("ni", ni)
        self.record = False
        self.saved: Optional[tuple[Tensor, Tensor]] = None

    def forward(self, x: Tensor) -> Tensor:
        """act(conv2d(x)); while ``record`` is set, keeps (input, output) in ``saved`` for the learner.

        Args:
            x (Tensor[B, C_in, H, W]): the input, of the ``input_size`` given when built.

        Returns:
            Tensor[B, C_out, Ho, Wo]: the activation.
        """
        z = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return activate_and_record(self, x, z)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, num_classes={self.num_classes}, "
                f"input_size={self.input_size}, activation={self.activation}")


def _output_size(input_size, kernel_size, stride, padding, dilation) -> tuple[int, int]:
    return tuple((input_size[i] + 2 * padding[i] - dilation[i] * (kernel_size[i] - 1) - 1) // stride[i] + 1
                 for i in range(2))


def _check_geometry(in_channels, out_channels, kernel_size, input_size, stride, padding, dilation, groups,
                    padding_mode):
    """NACAConv2d's geometry, checked before nn.Conv2d allocates anything (its own checks name no
    argument, and it accepts a zero stride or kernel that fail only in the forward)."""
    who = "NACAConv2d"
    c_in = check_int(who, "in_channels", in_channels, 1)
    c_out = check_int(who, "out_channels", out_channels, 1)
    if isinstance(padding, str):
        raise ValueError(f"{who}: argument 'padding' expected an integer or a pair of integers (the update "
                         f"ops take explicit padding), got {padding!r}")
    if padding_mode != "zeros":
        raise ValueError(f"{who}: argument 'padding_mode' expected 'zeros' (the only padding the update ops "
                         f"model), got {padding_mode!r}")
    k = check_pair(who, "kernel_size", kernel_size, 1)
    size = check_pair(who, "input_size", input_size, 1)
    st = check_pair(who, "stride", stride, 1)
    pad = check_pair(who, "padding", padding, 0)
    dil = check_pair(who, "dilation", dilation, 1)
    g = check_int(who, "groups", groups, 1)
    if c_in % g or c_out % g:
        raise ValueError(f"{who}: argument 'groups' expected a divisor of in_channels ({c_in}) and "
                         f"out_channels ({c_out}), got {g}")
    span = tuple(dil[i] * (k[i] - 1) + 1 for i in range(2))
    if any(size[i] + 2 * pad[i] < span[i] for i in range(2)):
        raise ValueError(f"{who}: argument 'input_size' expected at least {span[0] - 2 * pad[0]} x "
                         f"{span[1] - 2 * pad[1]} (a dilated kernel of {span[0]} x {span[1]}, padding {pad}), "
                         f"got {size}")
    return c_in, c_out, k, size, st, pad, dil, g
