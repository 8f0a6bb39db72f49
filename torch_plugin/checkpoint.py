"""Checkpoints that resume a training run bit-identically.

``save`` writes the model (parameters and buffers, so the fixed NI matrices
too), the learner (hyper-parameters, step count, its optimizer's state), a
separate optimizer if any, every random number generator the run draws from
(torch's CPU generator, every CUDA device's, numpy's global one, Python's
``random``, the seeded generators of the plugin's layers such as
``BernoulliEncoder``, and any ``torch.Generator`` you pass, e.g. the one of
your DataLoader) and your own ``extra`` (epoch, position in the epoch, the
epoch's permutation, ...). ``load`` puts all of it back and returns ``extra``.

Resuming is bit-identical on CPU when the run is deterministic (it is with the
plugin's ops, see the README's determinism notes): the interrupted-and-resumed
run and the uninterrupted one end with ``torch.equal`` weights
(tests/test_checkpoint.py). Files load with ``torch.load(weights_only=True)``:
no pickled code runs.
"""
from __future__ import annotations

import random
import warnings
from typing import Any, Mapping, Optional

import torch
from torch import nn

from .nn.spiking import BernoulliEncoder

try:
    import numpy as np
except ImportError:  # numpy is optional
    np = None

__all__ = ["save", "load", "rng_state", "set_rng_state"]

FORMAT = 1


def rng_state(generators: Optional[Mapping[str, torch.Generator]] = None) -> dict[str, Any]:
    """The state of every global RNG (torch CPU, CUDA, numpy, python) and of the named generators."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if np is not None:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state["numpy"] = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                          "has_gauss": int(has_gauss), "gauss": float(gauss)}
    state["generators"] = {name: g.get_state() for name, g in (generators or {}).items()}
    return state


def set_rng_state(state: Mapping[str, Any], generators: Optional[Mapping[str, torch.Generator]] = None) -> None:
    """Restore what ``rng_state`` returned (the named generators must be given again, by the same names)."""
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) != torch.cuda.device_count():
            raise RuntimeError(f"checkpoint: saved CUDA RNG states for {len(cuda)} devices, "
                               f"this process sees {torch.cuda.device_count()}")
        torch.cuda.set_rng_state_all(cuda)
    if "numpy" in state and np is not None:
        s = state["numpy"]
        np.random.set_state((s["kind"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))
    saved = state.get("generators", {})
    for name, g in (generators or {}).items():
        if name not in saved:
            raise KeyError(f"checkpoint: no state saved for generator {name!r} (saved: {sorted(saved)})")
        g.set_state(saved[name])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def _layer_generators(model: Optional[nn.Module]) -> dict[str, torch.Generator]:
    """The seeded per-device generators of the plugin's layers (``BernoulliEncoder.generators``)."""
    out = {}
    if model is None:
        return out
    for name, module in model.named_modules():
        for key, g in (module.generators.items() if isinstance(module, BernoulliEncoder) else ()):
            out[f"layer:{name}:{key}"] = g
    return out


def save(path, *, learner=None, model: Optional[nn.Module] = None, optimizer: Optional[torch.optim.Optimizer] = None,
         generators: Optional[Mapping[str, torch.Generator]] = None, extra: Any = None) -> None:
    """Write a checkpoint. ``model`` defaults to ``learner.model``; pass ``optimizer`` only when it is not
    the learner's own (the learner saves its optimizer)."""
    model = model if model is not None else getattr(learner, "model", None)
    gens = dict(generators or {})
    layer_gens = _layer_generators(model)
    state = {
        "format": FORMAT,
        "model": None if model is None else model.state_dict(),
        "learner": None if learner is None else learner.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "rng": rng_state({**gens, **layer_gens}),
        "layer_generators": sorted(layer_gens),
        "extra": extra,
    }
    torch.save(state, path)


def load(path, *, learner=None, model: Optional[nn.Module] = None, optimizer: Optional[torch.optim.Optimizer] = None,
         generators: Optional[Mapping[str, torch.Generator]] = None, map_location=None, restore_rng: bool = True) -> Any:
    """Restore a checkpoint written by ``save`` into the given objects; returns its ``extra``.

    The model must have the same architecture (``load_state_dict`` is strict).
    Layer generators the model lacks yet (created lazily on first use) are created here.
    """
    state = torch.load(path, map_location=map_location, weights_only=True)
    if state.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path}: unknown format {state.get('format')!r}")
    model = model if model is not None else getattr(learner, "model", None)
    for what, obj in (("model", model), ("learner", learner), ("optimizer", optimizer)):
        if obj is not None and state[what] is None:
            raise ValueError(f"checkpoint {path} holds no {what} state")
    if model is not None:
        model.load_state_dict(state["model"])
    if learner is not None:
        learner.load_state_dict(state["learner"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if restore_rng:
        gens = dict(generators or {})
        saved_layers = state.get("layer_generators", [])
        if model is not None:
            _drop_unsaved_layer_generators(model, saved_layers)
            _create_layer_generators(model, saved_layers)
            gens.update(_layer_generators(model))
        forgotten = sorted(set(state["rng"].get("generators", {})) - set(gens))
        if forgotten:
            warnings.warn(f"checkpoint {path}: saved generator states not restored (pass them in generators=): "
                          f"{forgotten}", stacklevel=2)
        set_rng_state(state["rng"], gens)
    return state["extra"]


def _drop_unsaved_layer_generators(model: nn.Module, saved: list[str]) -> None:
    """A layer generator the checkpoint has no state for had not been used when it was saved: drop it,
    so that it is re-created from its seed at first use, as it was in the saved run."""
    modules = dict(model.named_modules())
    for full in _layer_generators(model):
        if full not in saved:
            _, name, key = full.split(":", 2)
            modules[name].generators.pop(key)


def _create_layer_generators(model: nn.Module, names: list[str]) -> None:
    modules = dict(model.named_modules())
    for full in names:
        _, name, key = full.split(":", 2)
        module = modules.get(name)
        if isinstance(module, BernoulliEncoder) and key not in module.generators:
            module.generator(torch.device(key))
