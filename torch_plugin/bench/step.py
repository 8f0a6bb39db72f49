"""The ``step`` section: one training step, same model (deep copies of one init), same batch:
NACA (``learn.NACA``, in-place SGD) vs BP (autograd, cross-entropy, SGD); time and peak memory of
the step (model and data resident, not counted); on CUDA also NACA(check_labels=False), whose step
reads nothing back to the host."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .. import learn, models
from .harness import Timer


def step_pair(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 1e-3,
              check_labels: bool = True):
    """The two learners on deep copies of one model.

    Args:
        model (nn.Module): copied twice; not trained itself.
        x (Tensor[B, ...]): the batch's inputs.
        y (Tensor[B]): its labels (int64).
        lr (float): both learners' learning rate.
        check_labels (bool): passed to ``learn.NACA``.

    Returns:
        tuple: (naca_step, bp_step, bp_before), functions of no argument; ``bp_before`` sets BP's
        grads to None (what ``bp_step`` starts with), for the peak-memory measurement.
    """
    m_naca, m_bp = copy.deepcopy(model), copy.deepcopy(model)
    learner = learn.NACA(m_naca, lr=lr, check_labels=check_labels)
    opt = torch.optim.SGD(m_bp.parameters(), lr=lr)

    def naca_step():
        learner.step(x, y)

    def bp_step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m_bp(x), y).backward()
        opt.step()

    def bp_before():  # the step starts without grads (set_to_none), as bp_step does
        opt.zero_grad(set_to_none=True)

    return naca_step, bp_step, bp_before


def step_models(quick: bool) -> dict:
    """{name: (make, input shape)} of the models the section measures."""
    if quick:
        return {"mlp 784-32-10": (lambda: models.mlp(784, [32], 10, seed=0), (784,)),
                "conv 4-8-FC32": (lambda: models.conv_net((1, 8, 8), 10, channels=(4, 8), hidden=32, seed=0),
                                  (1, 8, 8))}
    return {"mlp 784-1000-10": (lambda: models.mlp(784, [1000], 10, seed=0), (784,)),
            "conv64-conv128-FC1000 (28x28)": (lambda: models.conv_net((1, 28, 28), 10, seed=0), (1, 28, 28))}


def compare_steps(model: torch.nn.Module, in_shape: tuple, batch: int, device: torch.device, timer: Timer) -> dict:
    """One row: NACA and BP step times (their samples in turn) and peak bytes on a random batch."""
    g = torch.Generator().manual_seed(batch)
    x = torch.rand(batch, *in_shape, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    naca_step, bp_step, bp_before = step_pair(model.to(device), x, y)
    steps = [naca_step, bp_step]
    if timer.cuda:  # NACA(check_labels=False): no host read of the labels, the step never waits for the GPU
        steps.append(step_pair(model, x, y, check_labels=False)[0])
    t_naca, t_bp, *t_unchecked = timer.interleaved(steps)
    mem_naca = timer.peak_memory(naca_step)
    mem_bp = timer.peak_memory(bp_step, before=bp_before)
    row = {"batch": batch, "naca_ms": 1e3 * t_naca, "bp_ms": 1e3 * t_bp, "speedup": t_bp / t_naca,
           "naca_peak_bytes": mem_naca, "bp_peak_bytes": mem_bp}
    if t_unchecked:
        row.update(naca_unchecked_ms=1e3 * t_unchecked[0], speedup_unchecked=t_bp / t_unchecked[0])
    if mem_naca and mem_bp:
        row["memory_ratio"] = mem_bp / mem_naca
    return row


def run(device: torch.device, timer: Timer, quick: bool, bounds: dict) -> dict:
    """{"step": rows}, one row per model and batch."""
    rows = []
    batches = (4, 8) if quick else (32, 256, 1024)
    for name, (make, in_shape) in step_models(quick).items():
        torch.manual_seed(0)
        model = make()
        for batch in batches:
            row = compare_steps(model, in_shape, batch, device, timer)
            rows.append({"model": name, **row})
    return {"step": rows}
