"""Linear layers trained by NACA: a hidden layer and an output layer."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import Recording, activate_and_record, activation_fn, check_int, check_layer_args, keep, make_ni


class NACALinear(Recording, nn.Linear):
    """``nn.Linear`` followed by an activation, with the fixed NI buffer NACA needs.

    Drop-in for ``nn.Linear`` + activation: ``y = act(x W^T + b)``. Autograd sees an
    ordinary layer (so the same model can be trained by backprop); the NACA
    learner instead updates ``weight``/``bias`` from the layer's own input and
    pre-activation with ``torch.ops.naca.naca_hidden_update_``.

    Args:
        in_features (int): I, as ``nn.Linear``.
        out_features (int): H, as ``nn.Linear``.
        num_classes (int): N >= 2, the number of classes (NI has shape (2N, H)).
        bias (bool): as ``nn.Linear``.
        activation (str): one of ``ops.ACTIVATIONS``: 'tanh' (default), 'sigmoid', 'relu' or
            'identity' (the NACA learner trains 'tanh' and 'sigmoid', docs/activations.md).
        ni_init (str): NI's distribution, see ``make_ni``.
        seed (int, optional): NI's own seed (None: the global RNG).
        device, dtype: as ``nn.Linear``.

    Shapes: input (B, I) -> output (B, H).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        num_classes: int,
        bias: bool = True,
        activation: str = "tanh",
        ni_init: str = "uniform",
        seed: Optional[int] = None,
        device=None,
        dtype=None,
    ):
        num_classes = check_layer_args("NACALinear", num_classes, activation, ni_init, seed)
        in_features = check_int("NACALinear", "in_features", in_features, 1)
        out_features = check_int("NACALinear", "out_features", out_features, 1)
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.num_classes = num_classes
        self.activation = activation
        self._act = activation_fn(activation)
        ni = make_ni(num_classes, (out_features,), ni_init, seed, self.weight.dtype, self.weight.device)
        self.register_buffer("ni", ni)
        self.record = False  # set by the learner: keep (input, output) of the last forward
        self.saved: Optional[tuple[Tensor, Tensor]] = None

    def forward(self, x: Tensor) -> Tensor:
        """act(x W^T + b); while ``record`` is set, keeps (input, output) in ``saved`` for the learner.

        Args:
            x (Tensor[B, I]): the input.

        Returns:
            Tensor[B, H]: the activation.
        """
        z = F.linear(x, self.weight, self.bias)
        return activate_and_record(self, x, z)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_classes={self.num_classes}, activation={self.activation}"


class NACAOutput(Recording, nn.Linear):
    """The output layer: ``nn.Linear`` that returns logits z = x W^T + b.

    The NACA learner trains it from its own error e = sigmoid(z) - onehot(y)
    (MSE on sigmoid outputs): with ``sigmoid_grad=True`` the delta is
    e * sigmoid'(z) (the authors' classification and class-incremental codes, which
    backpropagate the MSE error through the output sigmoid), with False it is e
    alone (docs/algorithms.md §1.4's reading of the class-incremental code). Prediction is ``z.argmax(1)``; for backprop the
    logits go to any loss (cross-entropy by default in the comparisons). num_classes >= 2,
    as for the hidden layers.

    Args:
        in_features (int): I, the last hidden layer's width.
        num_classes (int): N >= 2, the number of outputs.
        bias (bool): as ``nn.Linear``.
        sigmoid_grad (bool): NACA's delta is e * sigmoid'(z) (True) or e (False).
        device, dtype: as ``nn.Linear``.

    Shapes: input (B, I) -> logits (B, N).
    """

    def __init__(self, in_features: int, num_classes: int, bias: bool = True,
                 sigmoid_grad: bool = True, device=None, dtype=None):
        num_classes = check_layer_args("NACAOutput", num_classes)
        in_features = check_int("NACAOutput", "in_features", in_features, 1)
        super().__init__(in_features, num_classes, bias, device=device, dtype=dtype)
        self.num_classes = num_classes
        self.sigmoid_grad = bool(sigmoid_grad)
        self.record = False
        self.saved: Optional[tuple[Tensor, Tensor]] = None

    def forward(self, x: Tensor) -> Tensor:
        """The logits x W^T + b; while ``record`` is set, keeps (input, logits) in ``saved``.

        Args:
            x (Tensor[B, I]): the input.

        Returns:
            Tensor[B, N]: the logits.
        """
        z = F.linear(x, self.weight, self.bias)
        if self.record:
            keep(self, (x.detach(), z.detach()))
        return z

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigmoid_grad={self.sigmoid_grad}"
