"""Metrics of the comparative studies (docs/algorithms.md §1.6, §2.3, §3).

Conventions:
- Accuracy is a fraction in [0, 1].
- Accuracy matrix R (T x T, list of lists): R[i][j] is the test accuracy on task j
  measured after training on task i (rows: after-task, columns: evaluated task).
  Entries with j > i (tasks not yet seen) are measured too; they are ~0 with one head.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

# ----------------------------------------------------------------------------- accuracy


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 1000, device=None, transform=None) -> Tensor:
    """argmax predictions (n,) on CPU, evaluated in eval mode in chunks. transform(xb) is
    applied to each chunk before the model (e.g. flattening)."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        if transform is not None:
            xb = transform(xb)
        out.append(model(xb).argmax(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(pred: Tensor, y: Tensor) -> float:
    """Share of correct predictions (nan for an empty set)."""
    if len(y) == 0:
        return float("nan")
    return float((pred.cpu() == y.cpu()).float().mean())


def per_class_accuracy(pred: Tensor, y: Tensor, num_classes: int) -> list[float]:
    """Accuracy on the samples of each class (nan for a class absent from y)."""
    pred, y = pred.cpu(), y.cpu()
    return [accuracy(pred[y == c], y[y == c]) for c in range(num_classes)]


def task_accuracies(pred: Tensor, y: Tensor, tasks: Sequence[Sequence[int]]) -> list[float]:
    """Accuracy on the test samples of each task's classes (one row of the accuracy matrix)."""
    pred, y = pred.cpu(), y.cpu()
    out = []
    for classes in tasks:
        mask = torch.isin(y, torch.as_tensor(list(classes), dtype=y.dtype))
        out.append(accuracy(pred[mask], y[mask]))
    return out


# ----------------------------------------------------------------------------- continual learning

def _matrix(r) -> np.ndarray:
    r = np.asarray(r, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square T x T with T >= 1, got shape {r.shape}")
    return r


def mean_accuracy_after_last(r) -> float:
    """Mean of the last row of R: the average accuracy over all tasks after the last task."""
    return float(np.mean(_matrix(r)[-1]))


def forgetting(r) -> float:
    """Average forgetting (Chaudhry et al. 2018): for every task j but the last,
    max_{i < T-1} R[i][j] - R[T-1][j] (best accuracy ever reached on j before the end
    minus the final one), averaged over j. 0 for a single task. In [-1, 1], usually >= 0.
    Apply it to a per-class matrix (rows after-task, columns classes) the same way
    with ``forgetting_columns``."""
    r = _matrix(r)
    t = r.shape[0]
    if t == 1:
        return 0.0
    return float(np.mean([r[:t - 1, j].max() - r[t - 1, j] for j in range(t - 1)]))


def forgetting_columns(rows, learned_at: Sequence[int]) -> float:
    """Forgetting over arbitrary columns (e.g. classes): rows[i][c] is the accuracy on
    column c after task i; column c was learned at task learned_at[c]. Columns learned
    in the last task are skipped; the rest give max over earlier rows (from learned_at[c]
    to T-2) minus the final value, averaged. 0 when nothing qualifies. A NaN entry (a class
    with no test sample, e.g. under a small test subset) is not a measurement: such a
    column is left out rather than read as accuracy 0."""
    a = np.asarray(rows, dtype=np.float64)
    t = a.shape[0]
    vals = [a[learned_at[c]:t - 1, c].max() - a[t - 1, c] for c in range(a.shape[1])
            if learned_at[c] < t - 1 and not np.isnan(a[learned_at[c]:, c]).any()]
    return float(np.mean(vals)) if vals else 0.0


def backward_transfer(r) -> float:
    """BWT (Lopez-Paz & Ranzato 2017): mean over j < T-1 of R[T-1][j] - R[j][j].
    Negative means forgetting. 0 for a single task. In [-1, 1]."""
    r = _matrix(r)
    t = r.shape[0]
    if t == 1:
        return 0.0
    return float(np.mean([r[t - 1, j] - r[j, j] for j in range(t - 1)]))


# ----------------------------------------------------------------------------- epochs to criterion

def criterion_thresholds(best_error: float, floor: float = 0.05, count: int = 5) -> tuple[list[float], str]:
    """The papers' five error thresholds, evenly spaced from the best error to 5 %.

    Edge case: when the best error is not below 5 % (e.g. Fashion-MNIST, ~10 % error)
    the papers' interval is empty or reversed; the thresholds are then spaced from the
    best error to best + 5 % instead ("relative" rule). Returns (thresholds, rule)."""
    if best_error < floor:
        return [float(v) for v in np.linspace(best_error, floor, count)], "paper"
    return [float(v) for v in np.linspace(best_error, best_error + floor, count)], "relative"


def epochs_to_criterion(errors: Sequence[float], best_error: Optional[float] = None, floor: float = 0.05,
                        count: int = 5) -> dict:
    """Average number of epochs a run needs to reach each of the five error thresholds.

    errors[e] is the test error after epoch e + 1. best_error: the lower end of the
    thresholds; None uses this run's own best (the papers' rule; every threshold is then
    reached). With a shared best (e.g. the best over all methods of a study), a threshold
    the run never reaches counts as len(errors) + 1 and ``censored`` is set, so the value
    is a lower bound. Returns {"value", "thresholds", "rule", "censored", "reached"}.
    Errors are compared with a 1e-12 slack so that the best error itself always counts.
    """
    errors = [float(e) for e in errors]
    if not errors or not all(math.isfinite(e) for e in errors):
        raise ValueError(f"epochs_to_criterion needs a non-empty list of finite errors, got {errors}")
    best = min(errors) if best_error is None else float(best_error)
    thresholds, rule = criterion_thresholds(best, floor, count)
    epochs, reached = [], 0
    for th in thresholds:
        hit = next((e + 1 for e, err in enumerate(errors) if err <= th + 1e-12), None)
        if hit is None:
            epochs.append(len(errors) + 1)
        else:
            reached += 1
            epochs.append(hit)
    return {"value": float(np.mean(epochs)), "thresholds": thresholds, "rule": rule,
            "censored": reached < len(thresholds), "reached": reached}


# ----------------------------------------------------------------------------- cost

def multiplies_formula(method: str, m: int, n: int, k: int) -> Optional[int]:
    """The papers' multiplies per sample for a one-hidden-layer net m-n-k (docs/algorithms.md §1.6):
    NACA max(mn, km) + max(nk, kn); BP mn + n^2 + kn + nm. None for other methods."""
    if method == "naca":
        return max(m * n, k * m) + max(n * k, k * n)
    if method == "bp":
        return m * n + n * n + k * n + n * m
    return None


_FORMULAS_REGISTERED = False


def _register_plugin_flop_formulas() -> None:
    """Teach FlopCounterMode the plugin's update ops (custom ops count 0 otherwise):
    the batch outer products they run (2 FLOPs per multiply-accumulate)."""
    global _FORMULAS_REGISTERED
    if _FORMULAS_REGISTERED:
        return
    from torch.utils.flop_counter import register_flop_formula

    import torch_plugin  # noqa: F401  (loads the ops)

    naca = torch.ops.naca

    def outer(weight_shape, bias_shape, pre_shape, *args, **kwargs):  # (..., I) x (..., H) -> (H, I)
        return 2 * int(np.prod(pre_shape[:-1])) * int(np.prod(weight_shape))

    def conv(weight_shape, bias_shape, input_shape, preact_shape, *args, **kwargs):
        # weight grad of a conv: every output position of every sample touches the whole kernel
        b = input_shape[0]
        positions = int(np.prod(preact_shape[2:]))
        return 2 * b * positions * int(np.prod(weight_shape))

    def snn(weight_shape, bias_shape, pre_shape, *args, **kwargs):  # pre (T, B, I)
        all_steps = kwargs.get("all_steps", args[6] if len(args) > 6 else True)
        t = pre_shape[0] if all_steps else 1
        return 2 * t * int(np.prod(pre_shape[1:-1])) * int(np.prod(weight_shape))

    # (naca_snn_chain_update_: pre (T, B, I), every step's (T B) rows.)
    register_flop_formula([naca.plasticity_update_, naca.naca_hidden_update_, naca.naca_output_update_,
                           naca.naca_snn_chain_update_])(outer)
    register_flop_formula([naca.conv_plasticity_update_, naca.naca_conv_update_])(conv)
    register_flop_formula(naca.naca_snn_update_)(snn)
    _FORMULAS_REGISTERED = True


def measured_macs(step_fn, batch_size: int) -> Optional[float]:
    """Multiply-accumulates per sample of one call of step_fn(), counted by
    torch.utils.flop_counter.FlopCounterMode (matmuls, convolutions and their backward,
    plus the plugin's update ops via shape formulas; element-wise ops are not counted):
    total FLOPs / 2 / batch_size. None when counting fails. step_fn really runs (it
    trains on that batch)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        _register_plugin_flop_formulas()
        counter = FlopCounterMode(display=False)
    except Exception:  # noqa: BLE001  (a counting failure must not stop a study)
        return None
    with counter:
        step_fn()  # an error of the step itself is the caller's, not a counting failure
    try:
        return counter.get_total_flops() / 2.0 / batch_size
    except Exception:  # noqa: BLE001
        return None


# ----------------------------------------------------------------------------- weight change

HIST_RANGE = (-9.0, 1.0)  # log10 |dW|: one fixed grid so runs can be summed and compared


def weight_change_stats(before: Tensor, after: Tensor, thresholds: Sequence[float] = (1e-4, 1e-3, 1e-2),
                        bins: int = 50) -> dict:
    """Distribution of |dW| per synapse: quantiles, the share below each threshold (synapses
    that barely change) and a histogram of log10 |dW| on the fixed grid HIST_RANGE (values
    outside are clipped into the end bins; dW = 0 lands in the first)."""
    d = (after.detach().double().cpu() - before.detach().double().cpu()).abs().flatten()
    rel_scale = float(before.detach().double().abs().mean())
    logd = torch.log10(d.clamp_min(1e-300)).clamp(HIST_RANGE[0], HIST_RANGE[1] - 1e-9).numpy()
    counts, edges = np.histogram(logd, bins=bins, range=HIST_RANGE)
    sample = d[torch.randperm(len(d), generator=torch.Generator().manual_seed(0))[:1_000_000]]
    q = torch.quantile(sample, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    return {
        "synapses": int(len(d)),
        "mean_abs": float(d.mean()),
        "median_abs": float(q[1]),
        "p10_abs": float(q[0]),
        "p90_abs": float(q[2]),
        "max_abs": float(d.max()),
        "init_mean_abs_weight": rel_scale,
        "fraction_below": {f"{t:g}": float((d < t).double().mean()) for t in thresholds},
        "fraction_below_1pct_of_init_scale": float((d < 0.01 * rel_scale).double().mean()),
        "hist_log10_edges": [float(e) for e in edges],
        "hist_counts": [int(c) for c in counts],
    }
