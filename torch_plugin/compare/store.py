"""Saved runs (--resume): each finished (method, seed) run as runs/<method>_seed<seed>.json."""
from __future__ import annotations

import json
import os
from typing import Optional

from .. import data as tpdata
from .methods import is_gated, resolve_batch_size, resolve_lr
from .schema import base_method

# Options that do not change what one (method, seed) run computes: which runs the study has, where and how
# it reports, and the CPU thread count (timings only). Everything else must match for a run to be reused.
_NOT_RUN_SETTINGS = ("methods", "seeds", "out", "quiet", "no_plots", "threads", "resume", "lr", "lr_given",
                     "batch_size", "batch_size_given", "preset", "preset_set", "gate_methods", "_argv")
# Options only some methods read: left out of the other methods' settings, so that e.g. another --ewc-lambda
# trains the ewc runs again and reuses the saved bp runs.
_METHOD_SETTINGS = {"ewc_lambda": ("ewc", "ewc-online"), "ewc_gamma": ("ewc-online",), "si_c": ("si",),
                    "si_xi": ("si",), "lwf_alpha": ("lwf",), "lwf_temperature": ("lwf",), "replay_size": ("replay",)}


def run_settings(args, method: str, ds: tpdata.Dataset) -> dict:
    """What a saved run must have been trained with to stand in for (method, seed) of this study (JSON values);
    method: a --methods label (bp+gate reads bp's options, its gate is in 'gate')."""
    base = base_method(method)
    s = {k: v for k, v in vars(args).items()
         if k not in _NOT_RUN_SETTINGS and base in _METHOD_SETTINGS.get(k, (base,))}
    s["gate"] = is_gated(args, method)
    s["method_lr"] = resolve_lr(args, method, ds)
    s["method_batch_size"] = resolve_batch_size(args, method)
    s["dataset_sizes"] = [len(ds.x_train), len(ds.x_test)]
    return json.loads(json.dumps(s))


def run_path(out: str, method: str, seed: int) -> str:
    return os.path.join(out, "runs", f"{method}_seed{seed}.json")


def save_run(path: str, settings: dict, run: dict) -> None:
    """Write atomically (a study killed mid-write leaves the previous file or none, never half of one)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"schema_version": 1, "settings": settings, "run": run}, f, indent=1, allow_nan=True)
    os.replace(tmp, path)


def load_run(path: str, settings: dict) -> Optional[dict]:
    """The saved run at path if its settings equal these; None if there is none; SystemExit if they differ."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            saved = json.load(f)
        old, run = saved["settings"], saved["run"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"--resume: cannot read the saved run {path} ({e}); delete it to train that run again")
    if old != settings:
        diff = ", ".join(f"{k}: saved {old.get(k)!r}, now {settings.get(k)!r}"
                         for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k))
        raise SystemExit(f"--resume: {path} was trained with other settings ({diff}); "
                         f"use another --out, or drop --resume to train every run again")
    return run

