"""Pipeline schedules simulated from per-stage times: forward-only NACA against backprop's GPipe and 1F1B.

Each function takes the time one microbatch spends on each stage and the number of microbatches M,
and returns ``(seconds per batch, peak microbatches stashed per stage)``. Stages run one operation
at a time, an operation starts when its input exists and its stage is free, transfers cost nothing
(they overlap the compute of the next microbatch; add a link's latency per hop where it matters).

* ``forward_only`` (``PipelineLearner``): stage s runs forward + local update of microbatch k once
  stage s - 1 has handed it over; nothing waits for a backward. Balanced stages: (M + S - 1) t, and a
  stage holds one microbatch at a time.
* ``gpipe``: every microbatch's forward, then every backward (last stage first, microbatches in
  reverse), then one optimizer step per stage (``update``). Stage s stashes all M microbatches'
  activations between its forward and its backward.
* ``one_f_one_b`` (PipeDream-flush, not interleaved): stage s runs min(S - s - 1, M) forwards ahead,
  then alternates one forward with one backward, then drains. The same bubble as GPipe for balanced
  stages, (M + S - 1)(f + b), but stage s stashes at most min(S - s, M) microbatches.
"""
from __future__ import annotations

from typing import Sequence


def forward_only(t: Sequence[float], M: int) -> tuple[float, list[int]]:
    """t[s]: forward + local update of one microbatch on stage s."""
    S = len(t)
    end = [0.0] * S  # when stage s finished its last microbatch
    for _ in range(M):
        ready = 0.0  # when this microbatch's input exists
        for s in range(S):
            end[s] = max(end[s], ready) + t[s]
            ready = end[s]
    return end[-1], [1] * S


def _simulate(orders: list[list[tuple[str, int]]], f: Sequence[float], b: Sequence[float]) -> tuple[float, list]:
    """Run each stage's operations (('F' | 'B', microbatch)) in order; F(s, k) needs F(s-1, k), B(s, k)
    needs B(s+1, k) (the last stage: its own F(S-1, k)). Returns the end time and each stage's peak
    number of microbatches forwarded and not yet backwarded."""
    S = len(orders)
    done: dict = {}
    free, pos = [0.0] * S, [0] * S
    live, peak = [0] * S, [0] * S
    remaining = sum(len(o) for o in orders)
    while remaining:
        progressed = False
        for s in range(S):
            while pos[s] < len(orders[s]):
                kind, k = orders[s][pos[s]]
                dep = (("F", s - 1, k) if s > 0 else None) if kind == "F" else \
                    (("B", s + 1, k) if s < S - 1 else ("F", s, k))
                if dep is not None and dep not in done:
                    break
                start = max(free[s], done[dep] if dep is not None else 0.0)
                free[s] = done[(kind, s, k)] = start + (f[s] if kind == "F" else b[s])
                live[s] += 1 if kind == "F" else -1
                peak[s] = max(peak[s], live[s])
                pos[s] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise RuntimeError("schedules: the operation orders deadlock")
    return max(free), peak


def gpipe(f: Sequence[float], b: Sequence[float], M: int, update: Sequence[float] = ()) -> tuple[float, list]:
    """f[s], b[s]: one microbatch's forward and backward on stage s; update[s]: its optimizer step."""
    orders = [[("F", k) for k in range(M)] + [("B", k) for k in reversed(range(M))] for _ in f]
    end, peak = _simulate(orders, f, b)
    return end + max(update, default=0.0), peak


def one_f_one_b(f: Sequence[float], b: Sequence[float], M: int, update: Sequence[float] = ()) -> tuple[float, list]:
    """As ``gpipe``, in PipeDream-flush's order."""
    S, orders = len(f), []
    for s in range(S):
        warm = min(S - s - 1, M)
        order = [("F", k) for k in range(warm)]
        for k in range(M - warm):
            order += [("F", warm + k), ("B", k)]
        order += [("B", k) for k in range(M - warm, M)]
        orders.append(order)
    end, peak = _simulate(orders, f, b)
    return end + max(update, default=0.0), peak


def utilization(busy: Sequence[float], M: int, seconds: float) -> float:
    """The stages' busy share of the batch: M sum(busy) / (S seconds)."""
    return M * sum(busy) / (len(busy) * seconds)
