"""Glue shared by the learners: finding layers, applying an update either in
place (plain SGD) or as a pseudo-gradient for any torch optimizer."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn


def targets(params: Iterable[Optional[Tensor]], optimizer) -> list[Optional[Tensor]]:
    """The tensors an op should update, and the lr sign convention for them.

    Without an optimizer the op updates the parameters themselves. With one, it
    accumulates into ``.grad`` (created as zeros when missing): the ops compute
    ``t -= lr * update``, so the learner passes ``lr=-1`` to add the update.
    """
    out = []
    for p in params:
        if p is None or optimizer is None:
            out.append(p)
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        out.append(p.grad)
    return out


@contextmanager
def recording(layers: Iterable[nn.Module], keep: str = "output",
              sinks: Optional[Sequence[Callable]] = None) -> Iterator[None]:
    """Make the layers keep what their learner needs of the forward inside the block.

    keep="output": (input, act(z)) for NACALinear/NACAConv2d (the NACA update takes act'
    from it); keep="preact": (input, z) (SBP's nudged phase needs z). The output and
    spiking layers keep their own tuple either way. ``sinks`` (one callable per layer,
    ``sink(layer, saved)``): the forward hands each layer's tuple to its sink instead of
    storing it in ``layer.saved`` (see ``nn.common.keep``).
    """
    layers = list(layers)
    record = "preact" if keep == "preact" else True
    if sinks is None:
        for layer in layers:
            layer.record = record
            layer.saved = None
    else:  # (set on the instance directly: a deep model's step sets these for every layer)
        for layer, sink in zip(layers, sinks):
            object.__setattr__(layer, "record", record)
            object.__setattr__(layer, "sink", sink)
    try:
        yield
    finally:
        for layer in layers:
            object.__setattr__(layer, "record", False)
            if sinks is not None:
                object.__setattr__(layer, "sink", None)


def check_only_these_train(model: nn.Module, trained: Iterable[nn.Module], learner: str) -> None:
    """Fail clearly when a parameter of the model would silently never learn."""
    owned = {id(p) for m in trained for p in m.parameters(recurse=False)}
    stray = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in owned]
    if stray:
        raise ValueError(
            f"{learner}: these trainable parameters belong to layers the learner cannot train "
            f"(use the plugin's layers, or set requires_grad=False to freeze them): {stray}"
        )


def check_label_range(y: Tensor, num_classes: int, who: str) -> None:
    """ValueError unless every label is in [0, num_classes). One reduction and one host
    read (on CUDA, one synchronization); skipped while torch.compile traces (a host read
    would break the graph) and for an empty batch. Run before anything is written: on
    CUDA ``F.one_hot`` and the index kernels do not check, an out-of-range label there
    is a device-side assert that ends the process's CUDA context."""
    if torch.compiler.is_compiling() or y.numel() == 0:
        return
    lo, hi = torch.stack(torch.aminmax(y)).tolist()
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{who}: labels must be in [0, {num_classes}), got values in [{lo}, {hi}]")
