"""``torch.compile`` for the learners' training step."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from . import nonfinite


def compile_step(learner, *, fullgraph: bool = True, compile_optimizer: bool = False,
                 **compile_kwargs) -> Callable[[Tensor, Tensor], Tensor]:
    """A compiled equivalent of ``learner.step``: ``step = compile_step(learner); step(x, y)``.

    Without an optimizer (NACA with in-place SGD, SBP) the whole ``learner.step``
    (forward, every local update, the step count) is one graph (NACA: after the eager
    input checks). With an
    optimizer, NACA's forward and pseudo-gradient (``learner.local_update``) are
    one graph; ``zero_grad`` (dynamo does not trace it) runs eagerly as in-place
    zeroing, and ``optimizer.step()`` runs eagerly, or through
    ``torch.compile`` (not fullgraph, PyTorch's own optimizer compilation) when
    ``compile_optimizer=True``. ``compile_kwargs`` go to ``torch.compile``
    (backend, mode, dynamic, ...). With ``skip_nonfinite`` the update is
    compiled the same way and the finiteness check and the apply step run
    eagerly after it (a data-dependent branch). The weights match the eager step up to
    floating-point reassociation by the compiler (allclose, not bitwise).

    NACA: the first step for each new input signature (shape, dtype, device, strides;
    ``learn.stream``) runs eagerly as ``learner.step``, which checks every update before
    writing any, so a step that raises changes nothing; the compiled graph runs from
    the next step on that signature, the labels' range checked eagerly before it.
    A new batch size recompiles once (dynamic shapes after that). Spiking
    models: a seeded ``BernoulliEncoder`` draws from its own ``torch.Generator``,
    which dynamo cannot trace; encode the input eagerly outside the compiled
    step, or use the encoder without a seed (global RNG; inductor then draws
    its own random numbers unless ``torch._inductor.config.fallback_random``).
    """
    opt = getattr(learner, "optimizer", None)
    guard = getattr(learner, "skip_nonfinite", False)
    naca = hasattr(learner, "_validated")
    if not naca:  # SBP: the whole step is one graph
        return torch.compile(learner.step, fullgraph=fullgraph, **compile_kwargs)
    into_grad = opt is not None or guard

    def validated(x: Tensor, y: Tensor, op_checks: bool) -> bool:
        # Eager: a new input signature's first step runs as learner.step, which checks every
        # update before writing any; the compiled graph streams (learn.stream).
        return learner._validated(x, y, into_grad, op_checks)

    if not into_grad:
        whole = torch.compile(lambda x, y, op_checks: learner._step(x, y, op_checks), fullgraph=fullgraph,
                              **compile_kwargs)

        def sgd_step(x: Tensor, y: Tensor) -> Tensor:
            op_checks = learner._check_inputs(x, y)  # eager: the labels' range, before anything is written
            if not validated(x, y, op_checks):
                return learner.step(x, y)
            return whole(x, y, op_checks)

        return sgd_step

    update = torch.compile(lambda x, y, op_checks: learner._local_update(x, y, True, op_checks),
                           fullgraph=fullgraph, **compile_kwargs)
    opt_step = None
    if opt is not None:
        opt_step = torch.compile(opt.step, **compile_kwargs) if compile_optimizer else opt.step
        params = [p for group in opt.param_groups for p in group["params"]]
    else:
        params = nonfinite.trained_params(learner)

    def step(x: Tensor, y: Tensor) -> Tensor:
        op_checks = learner._check_inputs(x, y)
        if not validated(x, y, op_checks):
            return learner.step(x, y)
        nonfinite.zero_grads(params)
        logits = update(x, y, op_checks)
        if guard and not nonfinite.all_finite(p.grad for p in params):  # eager: a data-dependent branch
            learner.skipped_steps += 1
        elif opt_step is not None:
            opt_step()
        else:
            nonfinite.sgd_from_grads(params, learner.lr)
        learner.steps += 1
        return logits

    return step
