"""Pieces shared by the NACA layers: activations by name, the fixed NI matrix and the
argument checks of the constructors."""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from ..ops import ACTIVATIONS


def _identity(t: Tensor) -> Tensor:
    return t


# The functions of the activation names the ops take (``ops.ACTIVATIONS``, the one list): torch's
# function of that name, identity aside.
ACTIVATION_FNS: dict[str, Callable[[Tensor], Tensor]] = {
    name: _identity if name == "identity" else getattr(torch, name) for name in ACTIVATIONS}

# In-place forms, for a forward that records for a learner (no autograd): z's
# buffer becomes h, so the layer keeps one B x H tensor instead of two.
ACTIVATION_FNS_INPLACE: dict[str, Callable[[Tensor], Tensor]] = {
    name: _identity if name == "identity" else getattr(torch, name + "_") for name in ACTIVATIONS}

NI_INITS = ("uniform", "normal", "beta", "zeros")

# The hidden activations the NACA rule trains. Its hidden update -lr f(NL) act'(z) x has no
# error term: for a given class it keeps pushing a unit the same way, and stops only where
# act'(z) vanishes, i.e. where a bounded activation saturates. relu (act' = 1 for z > 0) and
# identity never stop: their activity grows by about the same step every step, and unless
# that step is small (Adam at lr 1e-3) the output sigmoids saturate and the output layer
# stops learning (docs/activations.md, examples/naca_activations.py).
NACA_ACTIVATIONS = ("tanh", "sigmoid")


# --- argument checks: "<who>: argument '<name>' expected <what>, got <value>" ---------------
# TypeError for a value of the wrong kind, ValueError for one out of range; run before
# anything is allocated, so a rejected constructor call builds nothing.

def check_int(who: str, name: str, value: Any, low: Optional[int] = None) -> int:
    """``value`` as an int (any integer type, not bool or float), >= ``low`` when given."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{who}: argument '{name}' expected an integer, got {value!r}")
    v = int(value.__index__())
    if low is not None and v < low:
        raise ValueError(f"{who}: argument '{name}' expected an integer >= {low}, got {v}")
    return v


def check_seed(who: str, value: Any, name: str = "seed") -> Optional[int]:
    return None if value is None else check_int(who, name, value)


def check_real(who: str, name: str, value: Any, low: Optional[float] = None, high: Optional[float] = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in [low, high] (an open end with low_open / high_open)."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise TypeError(f"{who}: argument '{name}' expected a real number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{who}: argument '{name}' expected a real number, got {value!r}") from None
    if low is not None and high is not None:
        what = f"a finite number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        what = f"a finite number {'>' if low_open else '>='} {low}"
    elif high is not None:
        what = f"a finite number {'<' if high_open else '<='} {high}"
    else:
        what = "a finite number"
    if not math.isfinite(v) or (low is not None and (v <= low if low_open else v < low)) or \
            (high is not None and (v >= high if high_open else v > high)):
        raise ValueError(f"{who}: argument '{name}' expected {what}, got {value!r}")
    return v


def check_choice(who: str, name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{who}: argument '{name}' expected one of {tuple(choices)} (a name), got {value!r}")
    if value not in choices:
        raise ValueError(f"{who}: argument '{name}' expected one of {tuple(choices)}, got {value!r}")
    return value


def check_pair(who: str, name: str, value: Any, low: int) -> tuple[int, int]:
    """An int or a sequence of two ints, each >= low, as a pair."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) and not hasattr(value, "__index__"):
        raise TypeError(f"{who}: argument '{name}' expected an integer or a pair of integers, got {value!r}")
    if not isinstance(value, Sequence):
        v = check_int(who, name, value, low)
        return v, v
    if len(value) != 2:
        raise ValueError(f"{who}: argument '{name}' expected an integer or a pair of integers (H, W), "
                         f"got {len(value)} values: {tuple(value)!r}")
    return check_int(who, name, value[0], low), check_int(who, name, value[1], low)


def check_layer_args(who: str, num_classes: Any, activation: Optional[str] = None, ni_init: Optional[str] = None,
                     seed: Any = None) -> int:
    """The arguments every NACA layer shares; returns num_classes as an int."""
    n = check_int(who, "num_classes", num_classes, 2)
    if activation is not None:
        check_choice(who, "activation", activation, ACTIVATIONS)
    if ni_init is not None:
        check_choice(who, "ni_init", ni_init, NI_INITS)
    check_seed(who, seed)
    return n


def warn_unsupported_naca_activations(layers) -> None:
    """A UserWarning naming the layers whose activation the NACA hidden rule cannot train
    (any but ``NACA_ACTIVATIONS``: 'relu', 'identity'); for the NACA learner to call on its
    hidden layers when it is built. Backprop and SBP train these layers as usual."""
    bad = [f"{type(m).__name__}(activation={m.activation!r})" for m in layers
           if getattr(m, "activation", None) is not None and m.activation not in NACA_ACTIVATIONS]
    if bad:
        warnings.warn(
            f"NACA: the hidden rule has no fixed point for unbounded activations, whose activity grows "
            f"without limit until the output layer saturates and stops learning (near chance on the digits "
            f"with in-place SGD at every lr tried): {', '.join(bad)}. Use one of {NACA_ACTIVATIONS}; see "
            f"docs/activations.md", UserWarning, stacklevel=4)  # the NACA(...) call


def activation_fn(name: str) -> Callable[[Tensor], Tensor]:
    try:
        return ACTIVATION_FNS[name]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}") from None


class Recording:
    """Mixin of the trained layers: ``record`` (set by the learners), ``saved``
    (what the forward kept) and ``sink`` are plain attributes, set without
    ``nn.Module.__setattr__``'s parameter/buffer/module bookkeeping, which costs more
    than the rest of a small step's Python (they are set a few times per layer per step).

    ``sink``: None (the class default), or a callable ``sink(layer, saved)`` that a
    learner sets while it records: the forward then hands what it would keep to the
    sink instead of storing it in ``saved`` (the NACA learner updates the layer right
    there and keeps nothing; see ``learn.naca``).
    """

    _PLAIN = frozenset(("record", "saved", "sink"))
    sink = None

    def __setattr__(self, name, value):
        if name in Recording._PLAIN:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


def keep(layer, saved: tuple) -> None:
    """Hand what the forward recorded to the layer's sink, or store it in ``layer.saved``."""
    sink = layer.sink
    if sink is None:
        layer.saved = saved
    else:
        sink(layer, saved)


def activate_and_record(layer, x: Tensor, z: Tensor) -> Tensor:
    """h = act(z); when the layer records for a learner, keep (x, h) (``keep``: in
    ``layer.saved``, or handed to ``layer.sink``). x: (B, ...) input, z: pre-activation.

    The NACA learner takes act' from h (the update ops' ``from_output=True``), so z
    is not kept; without autograd (the learners' forward) h overwrites z in place.
    ``layer.record == "preact"`` keeps (x, z) instead (see learn.common.recording).
    """
    if not layer.record:
        return layer._act(z)
    if layer.record == "preact":  # the learner asked for z (SBP)
        keep(layer, (x.detach(), z.detach()))
        return layer._act(z)
    if torch.is_grad_enabled() and (z.requires_grad or x.requires_grad):
        h = layer._act(z)
    else:
        h = ACTIVATION_FNS_INPLACE[layer.activation](z)
    keep(layer, (x.detach(), h.detach()))
    return h


def make_ni(
    num_classes: int,
    shape: Sequence[int],
    init: str = "uniform",
    seed: Optional[int] = None,
    dtype: Optional[torch.dtype] = None,
    device=None,
) -> Tensor:
    """The fixed random neuromodulator projection NI, shape (2N, *shape), values in [0, 1].

    init: 'uniform' U(0,1) (the default), 'normal' N(0.5, 1) clamped to [0, 1],
    'beta' Beta(0.5, 0.5) (drawn as sin^2(pi U / 2)), or 'zeros'. With a seed the
    draw uses its own generator; without one, torch's global RNG (so
    torch.manual_seed fixes it, as it fixes weight initialisation).
    """
    num_classes = check_int("make_ni", "num_classes", num_classes, 2)
    check_choice("make_ni", "init", init, NI_INITS)
    seed = check_seed("make_ni", seed)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        raise TypeError(f"make_ni: argument 'shape' expected a sequence of sizes, got {shape!r}")
    size = (2 * num_classes, *(check_int("make_ni", "shape", d, 1) for d in shape))
    gen = None
    if seed is not None:
        gen = torch.Generator().manual_seed(int(seed))
    if init == "zeros":
        ni = torch.zeros(size, dtype=torch.float64)
    elif init == "uniform":
        ni = torch.rand(size, generator=gen, dtype=torch.float64)
    elif init == "normal":
        ni = (0.5 + torch.randn(size, generator=gen, dtype=torch.float64)).clamp_(0.0, 1.0)
    else:  # arcsine law: Beta(0.5, 0.5) = sin^2(pi U / 2)
        ni = torch.sin(math.pi / 2 * torch.rand(size, generator=gen, dtype=torch.float64)) ** 2
    return ni.to(dtype=dtype or torch.get_default_dtype(), device=device)
