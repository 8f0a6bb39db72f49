"""The study: every (method, seed) run, the shared criterion, results.json, results.md and plots."""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import torch

from .. import data as tpdata
from .. import metrics as M
from .checks import UsageError
from .methods import resolve_batch_size, resolve_lr
from .plots import make_plots
from .presets import PAPER
from .report import authors_criterion, markdown_table, summarize
from .store import load_run, run_path, run_settings, save_run
from .train import log, task_list, train_run

def _preset_text(preset_set: dict) -> str:
    return " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in preset_set.items())


def _one_or_all(per_method: dict):
    """One value when every method shares it, else the {method: value} dict."""
    vals = set(per_method.values())
    return next(iter(vals)) if len(vals) == 1 else per_method


def load_study_data(args) -> tpdata.Dataset:
    """The study's dataset (subsets applied), checked against the model before anything is trained or written.

    Raises:
        UsageError: the data cannot be read, or does not fit the chosen model or scenario.
    """
    try:
        ds = tpdata.load_dataset(args.dataset, args.train_subset, args.test_subset, seed=0)
    except (OSError, ValueError) as e:
        raise UsageError(f"argument --dataset: {e}") from None
    if args.model == "conv" and len(ds.sample_shape) != 3:
        raise UsageError(f"argument --model: conv needs image data (C, H, W); the samples of {ds.name} are "
                         f"{tuple(ds.sample_shape)}")
    if args.scenario == "class-incremental":
        missing = sorted(set(range(ds.num_classes)) - set(ds.y_train.tolist()))
        if missing:
            raise UsageError(f"argument --train-subset: the class-incremental tasks need training samples of "
                             f"every class, classes {missing} have none")
    return ds


def run_study(args) -> dict:
    """Train every (method, seed) run of the study and write results.json, results.md and the plots.

    Args:
        args: the options of ``cli.parse_args``.

    Returns:
        The results.json dict, plus 'table' (the results.md table).

    Raises:
        UsageError: the data do not fit the options (nothing is written then).
    """
    ds = load_study_data(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.standardize:
        mean, std = ds.x_train.float().mean(), ds.x_train.float().std()
        ds.x_train, ds.x_test = (ds.x_train - mean) / std, (ds.x_test - mean) / std
    ds.x_train, ds.y_train = ds.x_train.to(args.device), ds.y_train.to(args.device)
    ds.x_test, ds.y_test = ds.x_test.to(args.device), ds.y_test.to(args.device)
    ci = args.scenario == "class-incremental"
    test_order = "stored"
    if args.gate and bool((ds.y_test[1:] >= ds.y_test[:-1]).all()):
        # The gate reads each test batch's mean input: a test set stored sorted by class would make the
        # 'mixed batches' evaluation class-sorted (leaking the class). Evaluate it in a fixed shuffled order.
        perm = torch.randperm(len(ds.y_test), generator=torch.Generator().manual_seed(0)).to(ds.y_test.device)
        ds.x_test, ds.y_test = ds.x_test[perm], ds.y_test[perm]
        test_order = "shuffled (the stored test set is sorted by class)"
        log("--gate: the test set is stored sorted by class; mixed-batch evaluation uses a fixed shuffle", args.quiet)
    tasks = task_list(args, ds.num_classes, args.seeds[0])
    os.makedirs(args.out, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    log(f"{ds.name}: {len(ds.x_train)} train / {len(ds.x_test)} test, {ds.num_classes} classes; model {args.model}; "
         f"{args.scenario}" + (f" ({len(tasks)} tasks)" if ci else "") + f"; methods {','.join(args.methods)}; "
         f"seeds {args.seeds}; device {args.device}", args.quiet)
    runs, resumed, run_files = [], [], []
    settings = {m: run_settings(args, m, ds) for m in args.methods}
    # --resume: every saved run is read and checked before the first run trains, so a mismatch stops the study
    # at once rather than after hours of training
    saved = {(m, s): load_run(run_path(args.out, m, s), settings[m]) if args.resume else None
             for m in args.methods for s in args.seeds}
    for method in args.methods:
        for seed in args.seeds:
            path = run_path(args.out, method, seed)
            run_files.append(os.path.relpath(path, args.out))
            run = saved[(method, seed)]
            if run is not None:
                log(f"{method} seed {seed}: reusing the saved run {path}", args.quiet)
                resumed.append(f"{method}_seed{seed}")
            else:
                run = train_run(args, method, seed, ds, task_list(args, ds.num_classes, seed))
                save_run(path, settings[method], run)
            runs.append(run)
    if not ci:  # epochs to criterion against the best error of the whole study
        best = min(1 - a for r in runs for a in r["test_acc_per_epoch"])
        for r in runs:
            r["epochs_to_criterion_shared"] = M.epochs_to_criterion([1 - a for a in r["test_acc_per_epoch"]], best)
        authors_criterion(runs)
    summary = summarize(runs, args.methods)
    table = markdown_table(summary, ci, len(args.seeds))
    config = {k: v for k, v in vars(args).items() if k not in ("lr_given", "batch_size_given", "_argv")}
    config["lr"] = {m: resolve_lr(args, m, ds) for m in args.methods}
    config["batch_size"] = {m: resolve_batch_size(args, m) for m in args.methods}
    result = {
        "schema_version": 1,
        "command": " ".join(["python -m torch_plugin.compare"]
                            + (sys.argv[1:] if getattr(args, "_argv", None) is None else list(args._argv))),
        "config": config,
        "dataset": {"name": ds.name, "train_samples": len(ds.x_train), "test_samples": len(ds.x_test),
                    "num_classes": ds.num_classes, "sample_shape": list(ds.sample_shape), "test_order": test_order},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "platform": platform.platform(), "device": str(args.device),
                        "threads": torch.get_num_threads(), "started": started},
        "runs": runs, "summary": summary,
        "files": {"table": "results.md", "plots": [], "runs": run_files},
        "resumed_runs": resumed,
    }
    if not args.no_plots:
        result["files"]["plots"] = make_plots(runs, args.methods, ci, args.out)
    header = (f"Study: {ds.name}, {runs[0]['model']}, {args.scenario}"
              + (f" ({len(tasks)} tasks of {args.tasks_classes} classes, stop at {args.stop_at:.0%} "
                 + ("train acc re-evaluated after the epoch" if args.stop_metric == "eval" else "train acc")
                 + f", max {args.epochs} epochs/task)" if ci else f", {args.epochs} epochs")
              + (", best-MSE epoch restored per task" if args.restore_best else "")
              + (f", gradient clipped to norm {args.clip_grad_norm:g}" if args.clip_grad_norm > 0 else "")
              + f", {len(ds.x_train)} training samples, batch {_one_or_all(config['batch_size'])}, "
              f"optimizer {args.optimizer}, "
              f"lr {config['lr']}\n\nCommand: `{result['command']}`\n\n"
              + (f"Runs reused from runs/ (--resume): {', '.join(resumed)}\n\n" if resumed else "")
              + (f"Preset {args.preset} set: {_preset_text(args.preset_set)}\n\nBeside it, {PAPER[args.preset]}\n\n"
                 if args.preset else ""))
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(header + table)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1, allow_nan=True)
    result["table"] = table
    return result

