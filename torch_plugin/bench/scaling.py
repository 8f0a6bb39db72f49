"""The ``scaling`` section: time per NACA and BP step of the MLP 784-hidden-10 as the width and
the batch grow."""
from __future__ import annotations

import torch

from .. import models
from .harness import Timer
from .step import compare_steps


def scaling_grid(device: torch.device, quick: bool) -> list:
    """[(hidden widths, batch)] measured."""
    if quick:
        return [([16], 4), ([32], 8)]
    cuda = device.type == "cuda"
    widths = (256, 1024, 4096, 8192)
    batches = (32, 256, 1024)
    grid = [([w], bt) for w in widths for bt in batches]
    deep = widths if cuda else (256, 1024, 4096)
    grid += [([w, w], bt) for w in deep for bt in ((256, 1024) if cuda else (256,))]
    return grid


def run(device: torch.device, timer: Timer, quick: bool, bounds: dict) -> dict:
    """{"scaling": rows}, one row per (hidden, batch)."""
    rows = []
    for hidden, batch in scaling_grid(device, quick):
        torch.manual_seed(0)
        model = models.mlp(784, hidden, 10, seed=0)
        row = compare_steps(model, (784,), batch, device, timer)
        row.pop("naca_peak_bytes"), row.pop("bp_peak_bytes"), row.pop("memory_ratio", None)
        rows.append({"hidden": "-".join(map(str, hidden)), **row})
    return {"scaling": rows}
