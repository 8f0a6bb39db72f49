"""Presets of the comparison command: a named set of flags, each overridable by the same flag given beside it."""
from __future__ import annotations

import argparse
from typing import Optional

from .schema import base_method

# The NACA authors' class-incremental loop (docs/algorithms.md §1.7), their evaluation (each class's test set
# on its own, 5 seeds): NACA with and without the gate, and the controls: BP with and without the gate (the
# gate's share of NACA's result), EWC, SI, LwF, replay.
PRESETS = {
    "naca-class-il": {
        "scenario": "class-incremental", "tasks_classes": "1", "model": "mlp", "hidden": "1000",
        "seeds": "0,1,2,3,4", "methods": "naca+gate,naca,bp+gate,bp,ewc,si,lwf,replay",
        "activation": "sigmoid", "batch_size": "256", "bias": "none", "standardize": True,
        "stop_metric": "eval", "stop_at": "0.95", "restore_best": True, "clip_grad_norm": "10000",
        "class_order": "shuffled", "eval": "per-class", "gate_eval_batch_size": "256", "lr": "naca=0.0005",
        "epochs": "100", "optimizer": "sgd",
    },
}

# The paper's numbers to print beside a preset's (docs/algorithms.md §1.6, §1.7: mean accuracy after the last
# task, ± a standard error)
PAPER = {
    "naca-class-il": "the paper (MNIST, one class per task, docs/algorithms.md §1.6): NACA 79.2 ± 3.8 (SE), "
                     "SGD 10.0, EWC 10.0 (mean accuracy over classes after the last task, %)",
}


def expand(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], Optional[str], dict]:
    """argv with the preset's flags put first for every option the user did not give (so a given flag wins).

    Returns:
        (the arguments to parse, the preset's name or None, {dest: value} of what the preset set).
    """
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--preset", default=None)
    known, _ = probe.parse_known_args(argv)
    if known.preset is None:
        return argv, None, {}
    if known.preset not in PRESETS:
        parser.error(f"argument --preset: unknown {known.preset!r}; choose from {', '.join(PRESETS)}")
    given = _given_dests(parser, argv)
    preset = {k: v for k, v in PRESETS[known.preset].items() if k not in given}
    methods = given.get("methods", PRESETS[known.preset]["methods"])
    if "lr" in preset and "naca" not in [base_method(m.strip()) for m in str(methods).split(",")]:
        preset.pop("lr")  # the preset's lr is NACA's (naca and naca+gate): dropped with them
    flags = []
    actions = {a.dest: a for a in parser._actions}
    for dest, value in preset.items():
        flag = actions[dest].option_strings[0]
        if value is True:
            flags.append(flag)
        elif value != "":
            flags += [flag, value]
    return flags + list(argv), known.preset, preset


def _given_dests(parser: argparse.ArgumentParser, argv: list[str]) -> dict:
    """The options the user gave in argv (dest -> raw value), found by parsing with every default suppressed."""
    import copy

    quiet = copy.deepcopy(parser)
    for a in quiet._actions:
        a.default = argparse.SUPPRESS
        a.type, a.choices = None, None  # the raw strings: bad values are reported by the real parse
    return vars(quiet.parse_args(argv))
