"""Value checks of the command line: argparse ``type=`` converters and the checks run once all flags are read.

Every bad value ends as an argparse usage error (exit status 2, the flag named, no traceback)
before any data is loaded, any model is trained or any file is written.
"""
from __future__ import annotations

import argparse
import math
import os
import warnings
from typing import Callable, Optional

import torch

from .schema import METHODS, VARIANTS

class UsageError(ValueError):
    """A value the command line accepted but the data refuse (e.g. --model conv on flat samples); the command
    reports it as a usage error of the flag it names."""


_SEED_MAX = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32 - 1]


def _int(text: str, low: int, what: str) -> int:
    try:
        v = int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
    return v


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int(text, 1, "an integer >= 1")


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int(text, 0, "an integer >= 0")


def real(low: Optional[float] = None, high: Optional[float] = None, low_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite float in [low, high] (``low_open``: (low, high])."""
    lo_s = "-inf" if low is None else f"{low:g}"
    hi_s = "inf" if high is None else f"{high:g}"
    what = f"a finite number in {'(' if low_open else '['}{lo_s}, {hi_s}{']' if high is not None else ')'}"

    def conv(text: str) -> float:
        try:
            v = float(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (not math.isfinite(v) or (low is not None and (v < low or (low_open and v == low)))
                or (high is not None and v > high)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v
    conv.__name__ = "number"  # argparse's "invalid number value" wording
    return conv


def int_list(low: int, what: str) -> Callable[[str], list[int]]:
    """argparse type: a comma list of integers >= low, at least one."""
    def conv(text: str) -> list[int]:
        items = [v for v in str(text).split(",") if v.strip() != ""]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma list of {what}, got {text!r}")
        try:
            return [_int(v, low, what) for v in items]
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"{e}" + (f" (in {text!r})" if len(items) > 1 else "")) from None
    conv.__name__ = "list"
    return conv


def seed_list(text: str) -> list[int]:
    """argparse type: distinct seeds in [0, 2**32 - 1]."""
    seeds = int_list(0, "integers >= 0")(text)
    if max(seeds) > _SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected seeds <= {_SEED_MAX}, got {max(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds, got {text!r}")
    return seeds


def per_method(p: argparse.ArgumentParser, flag: str, text: str, conv: Callable[[str], float],
               methods: list[str], allow_default: bool) -> tuple[Optional[float], dict]:
    """Parse 'VALUE' / 'm=VALUE,m2=VALUE' (with allow_default: also 'VALUE,m=VALUE'): (default or None, {m: v}).

    Unknown method names, methods not in the study, repeated names and bad values are usage errors."""
    default, out = None, {}
    for item in (s.strip() for s in str(text).split(",")):
        if not item:
            continue
        key, _, val = item.rpartition("=")
        if "=" not in item:
            if not allow_default:
                p.error(f"argument {flag}: expected method=value pairs, got {item!r}")
            if default is not None:
                p.error(f"argument {flag}: more than one value without a method name in {text!r}")
            key = None
        elif key not in METHODS and key not in VARIANTS:
            p.error(f"argument {flag}: unknown method {key!r}; choose from {', '.join(METHODS)} (or METHOD+gate)")
        elif key not in methods:
            p.error(f"argument {flag}: method {key!r} is not in --methods ({','.join(methods)})")
        elif key in out:
            p.error(f"argument {flag}: method {key!r} given twice")
        try:
            v = conv(val)
        except argparse.ArgumentTypeError as e:
            p.error(f"argument {flag}: {'' if key is None else key + ': '}{e}")
        if key is None:
            default = v
        else:
            out[key] = v
    return default, out


def check_device(p: argparse.ArgumentParser, text: str) -> str:
    """--device: cpu, cuda or cuda:N, and the CUDA device must exist."""
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        p.error(f"argument --device: expected cpu, cuda or cuda:N, got {text!r}")
    if dev.type not in ("cpu", "cuda"):
        p.error(f"argument --device: expected cpu, cuda or cuda:N, got {text!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            p.error(f"argument --device: {text!r} asked for, but no CUDA device is available "
                    f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            p.error(f"argument --device: {text!r} asked for, but this machine has "
                    f"{torch.cuda.device_count()} CUDA device(s)")
    return text


def check_dataset(p: argparse.ArgumentParser, name: str) -> None:
    """--dataset: a built-in name, an existing file or an existing folder (its files are read when the study starts)."""
    if name in ("fashion-mnist", "digits") or os.path.isfile(name) or os.path.isdir(name):
        return
    p.error(f"argument --dataset: expected fashion-mnist, digits, an IDX folder or an .npz file, got {name!r} "
            f"(no such file or folder)")


def check_out(p: argparse.ArgumentParser, out: str) -> None:
    """--out: a folder, or a path where one can be made (not an existing file)."""
    if os.path.exists(out) and not os.path.isdir(out):
        p.error(f"argument --out: expected a folder, got {out!r}, an existing file")
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        p.error(f"argument --out: cannot create {out!r} ({parent!r} is not a writable folder)")


def warn_activation(activation: str, model: str, methods: list[str]) -> None:
    """The NACA learner's warning for an activation its hidden rule cannot train (docs/activations.md),
    given when the command is read rather than once training has started."""
    if "naca" not in methods or model == "snn":
        return
    from .. import models
    from ..learn import NACA

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        NACA(models.mlp(4, [2], 2, activation=activation, seed=0), lr=0.1)
    for w in caught:
        if issubclass(w.category, UserWarning):
            warnings.warn(f"--activation {activation}: {w.message}", UserWarning, stacklevel=3)
