"""Comparative studies: train the same model with backprop, NACA, SBP and continual-learning baselines side by side.

    python -m torch_plugin.compare                 # default study on Fashion-MNIST (about 35 s on 2 cores)
    python -m torch_plugin.compare --scenario class-incremental --seeds 0,1,2 --stop-at 0.95 --out results
    python -m torch_plugin.compare --dataset digits --epochs 5 --quiet

Writes to --out: results.json (every number, schema in ``RESULTS_SCHEMA``, docs/studies.md),
results.md (the table printed at the end: mean +- std over seeds) and PNG plots
(accuracy_curves.png, weight_change.png; class-incremental also acc_matrix.png, mean_acc_bars.png, with
--gate acc_matrix_class_sorted.png, with --eval per-class acc_matrix_per_class.png). Each (method, seed)
run is saved to runs/<method>_seed<seed>.json as soon as it finishes, so an interrupted study loses at
most the run in progress: the same command with --resume reuses the saved runs whose settings match.

The package: ``cli`` (parser, checks, main), ``study`` (the loop over methods and seeds),
``train`` (one run), ``methods`` (models and training steps), ``report`` and ``plots``,
``store`` (``--resume``), ``schema`` (constants, results.json schema). docs/studies.md
documents the command.
"""
from ..learn.gate import InputGate
from .cli import build_parser, main, parse_args
from .methods import GradClipper, build_model, gate_delta_raw, last_hidden_weight, make_step, resolve_lr
from .report import markdown_table, summarize
from .schema import GATED_METHODS, METHODS, MODELS, RESULTS_SCHEMA, RUN_SCHEMA, SBP_METHODS
from .store import load_run, run_settings, save_run
from .study import run_study
from .train import task_list, train_run

__all__ = ["main", "parse_args", "build_parser", "run_study", "train_run", "task_list", "build_model", "make_step",
           "resolve_lr", "gate_delta_raw", "last_hidden_weight", "GradClipper", "InputGate", "summarize",
           "markdown_table", "load_run", "save_run", "run_settings", "METHODS", "MODELS", "SBP_METHODS",
           "GATED_METHODS", "RESULTS_SCHEMA", "RUN_SCHEMA"]
