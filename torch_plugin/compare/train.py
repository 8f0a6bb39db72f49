"""One (method, seed) run: the training loop over tasks and epochs, its evaluations and its record."""
from __future__ import annotations

import gc
import math
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import data as tpdata
from .. import metrics as M
from ..timing import Stopwatch, process_peak_memory, reset_process_peak
from .methods import (GradClipper, build_model, gate_delta_raw, is_gated, last_hidden_weight, make_step,
                      resolve_batch_size, resolve_lr)
from .schema import base_method

def _progress(iterable, total, desc, quiet):
    if quiet:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5)


def log(msg: str, quiet: bool) -> None:
    if not quiet:
        from tqdm import tqdm

        tqdm.write(msg)


def task_list(args, num_classes: int, seed: int) -> list[list[int]]:
    """The run's tasks: every class at once (standard), or groups of --tasks-classes classes in order
    or (--class-order shuffled) in a permutation drawn from the seed."""
    if args.scenario != "class-incremental":
        return [list(range(num_classes))]
    order = np.random.RandomState(seed).permutation(num_classes) if args.class_order == "shuffled" else None
    return tpdata.class_incremental_tasks(num_classes, args.tasks_classes, order)


def count_step_macs(args, method: str, seed: int, ds: tpdata.Dataset, lr: float, delta_raw: Optional[float],
                    x: Tensor, y: Tensor) -> Optional[float]:
    """MACs per sample of one training step (metrics.measured_macs), counted on a twin of the run's model
    and learner, so the run's own steps are neither counted nor slowed by the counter (its timing stays
    clean); torch's and numpy's RNG states are restored, so the run trains exactly as without it."""
    device = torch.device(args.device)
    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            twin, _ = build_model(args, method, ds, seed)
            twin.to(device)
            step, _ = make_step(args, method, twin, lr, delta_raw, GradClipper.for_run(args, method), seed)
            return M.measured_macs(lambda: step(x.to(device), y.to(device)), len(x))
    finally:
        np.random.set_state(np_state)


def train_run(args, method: str, seed: int, ds: tpdata.Dataset, tasks: list[list[int]]) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model, desc = build_model(args, method, ds, seed)
    model.to(device)
    lr = resolve_lr(args, method, ds)
    bs = resolve_batch_size(args, method)
    gate = is_gated(args, method)
    delta_raw = gate_delta_raw(args, ds) if gate else None
    clip = GradClipper.for_run(args, method)
    step, opt_name = make_step(args, method, model, lr, delta_raw, clip, seed)
    layer_name, w_hidden = last_hidden_weight(model)
    w0 = w_hidden.detach().clone() if w_hidden is not None else None
    gen = torch.Generator().manual_seed(seed)
    ci = args.scenario == "class-incremental"
    nparams = sum(p.numel() for p in model.parameters() if p.requires_grad)

    xte, yte = ds.x_test, ds.y_test
    eval_bs = args.eval_batch_size

    def evaluate() -> Tensor:
        return M.predict(model, xte, eval_bs, device)

    by_class_order = torch.argsort(yte.cpu(), stable=True)

    def evaluate_by_class() -> Tensor:  # the authors' protocol: one-class test batches (the gate's leak)
        pred = M.predict(model, xte[by_class_order.to(xte.device)], args.gate_eval_batch_size, device)
        out = torch.empty_like(pred)
        out[by_class_order] = pred
        return out

    def evaluate_per_class() -> Tensor:  # --eval per-class: each class's test set on its own (the authors' way)
        out = torch.empty_like(yte)
        for c in range(ds.num_classes):
            idx = (yte == c).nonzero().flatten()
            if len(idx):
                out[idx] = M.predict(model, xte[idx], args.gate_eval_batch_size, device).to(out.device)
        return out

    # the evaluation views besides mixed batches, each reported apart: name -> (predict, task rows, class rows)
    views = {}
    if gate:
        views["gate_by_class_eval"] = (evaluate_by_class, [], [])
    if args.eval == "per-class":
        views["per_class_eval"] = (evaluate_per_class, [], [])

    def evaluate_task(x: Tensor, y: Tensor) -> tuple[float, float]:
        """(accuracy, MSE of the outputs to one-hot) on the task's training set, eval mode, in order."""
        model.eval()
        hits, sq = 0, 0.0
        with torch.no_grad():
            for i in range(0, len(x), bs):
                xb, yb = x[i:i + bs].to(device), y[i:i + bs].to(device)
                out = model(xb)
                prob = out if args.model == "snn" else torch.sigmoid(out)
                hits += int((out.argmax(1) == yb).sum())
                sq += float(((prob - F.one_hot(yb, prob.shape[1]).to(prob.dtype)) ** 2).sum())
        model.train()
        return hits / max(len(y), 1), sq / max(len(y) * ds.num_classes, 1)

    first_x, first_y = (ds.x_train, ds.y_train) if not ci else tpdata.task_subset(ds.x_train, ds.y_train, tasks[0])
    measured = count_step_macs(args, method, seed, ds, lr, delta_raw, first_x[:bs],
                               first_y[:bs])
    gc.collect()  # the twin, and any earlier run's model still held by a reference cycle (hooks)
    reset_process_peak(device)
    epochs, test_curve = [], []
    acc_rows, class_rows, epochs_per_task = [], [], []
    restored = []  # --restore-best: the epoch restored at the end of each task
    total_time, total_samples, nonfinite_total = 0.0, 0, 0
    for t, classes in enumerate(tasks):
        xtr, ytr = (ds.x_train, ds.y_train) if not ci else tpdata.task_subset(ds.x_train, ds.y_train, classes)
        n_task, best = 0, None  # best: (MSE, epoch, weights) for --restore-best
        for epoch in range(args.epochs):
            seen = 0
            correct = torch.zeros((), dtype=torch.int64, device=device)  # on the device: no sync per step
            nb = math.ceil(len(xtr) / bs)
            label = f"{method} s{seed}" + (f" task {t + 1}/{len(tasks)}" if ci else "") + f" ep {epoch + 1}"
            nonfinite = torch.zeros((), dtype=torch.int64, device=device)  # steps whose outputs hold NaN/Inf
            with Stopwatch(device) as timer:
                for xb, yb in _progress(tpdata.batches(xtr, ytr, bs, generator=gen),
                                        nb, label, args.quiet):
                    xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                    out = step(xb, yb)
                    nonfinite += (~torch.isfinite(out)).any()
                    correct += (out.argmax(1) == yb).sum()
                    seen += len(yb)
            train_acc = int(correct) / max(seen, 1)
            n_bad = int(nonfinite)
            nonfinite_total += n_bad
            total_time += timer.seconds
            total_samples += seen
            pred = evaluate()
            test_acc = M.accuracy(pred, yte)
            test_curve.append(test_acc)
            epochs.append({"task": t, "epoch": epoch + 1, "train_acc": train_acc, "test_acc": test_acc,
                           "seconds": timer.seconds, "samples_per_s": seen / max(timer.seconds, 1e-12),
                           "nonfinite_steps": n_bad})
            n_task += 1
            stop_acc = train_acc
            if args.stop_metric == "eval" or args.restore_best:
                eval_acc, eval_mse = evaluate_task(xtr, ytr)
                epochs[-1].update(eval_train_acc=eval_acc, eval_train_mse=eval_mse)
                if args.stop_metric == "eval":
                    stop_acc = eval_acc
                if args.restore_best and (best is None or eval_mse < best[0]):
                    best = (eval_mse, epoch + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})
            log(f"{label}: train acc {train_acc:.4f}  test acc {test_acc:.4f}  ({timer.seconds:.1f} s)"
                 + (f"  {n_bad} steps with non-finite outputs: the task stops here" if n_bad else ""), args.quiet)
            if n_bad or (args.stop_at > 0 and stop_acc >= args.stop_at):
                break
        epochs_per_task.append(n_task)
        if best is not None:
            model.load_state_dict(best[2])
            restored.append(best[1])
        if t < len(tasks) - 1 and hasattr(step, "end_task"):  # EWC's Fisher, SI's Omega, LwF's copy, replay's buffer
            step.end_task(xtr, ytr, classes)
        if ci:
            pred = evaluate()
            acc_rows.append(M.task_accuracies(pred, yte, tasks))
            class_rows.append(M.per_class_accuracy(pred, yte, ds.num_classes))
            for fn, rows, crows in views.values():
                pred = fn()
                rows.append(M.task_accuracies(pred, yte, tasks))
                crows.append(M.per_class_accuracy(pred, yte, ds.num_classes))
    mem = process_peak_memory(device)
    # class c -> the task that taught it (per-class forgetting starts there)
    learned_at = [next(i for i, cl in enumerate(tasks) if c in cl) for c in range(ds.num_classes)] if ci else None
    view_records = {"gate_by_class_eval": None, "per_class_eval": None}
    for name, (fn, rows, crows) in views.items():
        rec = {"test_acc": M.accuracy(fn(), yte), "batch_size": args.gate_eval_batch_size}
        if ci:
            rec.update({"acc_matrix": rows, "mean_acc_after_last": float(np.nanmean(crows[-1])),
                        "forgetting": M.forgetting(rows),
                        "forgetting_per_class": M.forgetting_columns(crows, learned_at),
                        "bwt": M.backward_transfer(rows)})
        view_records[name] = rec

    run: dict[str, Any] = {
        "method": method, "base_method": base_method(method), "seed": seed, "model": desc, "optimizer": opt_name, "lr": lr, "batch_size": bs,
        "parameters": nparams,
        "gate": gate, "gate_delta_raw": delta_raw, **view_records,
        "restored_epochs": restored if args.restore_best else None,
        "grad_clip": clip.record() if clip is not None else None,
        "epochs": epochs, "test_acc_per_epoch": test_curve,
        "final_test_acc": M.accuracy(evaluate(), yte) if restored else test_curve[-1],
        "epochs_to_criterion": None if ci else M.epochs_to_criterion([1 - a for a in test_curve]),
        "epochs_to_criterion_shared": None,
        "nonfinite_steps": nonfinite_total,
        "threads": torch.get_num_threads(),
        "seconds_per_epoch": total_time / len(epochs),
        "samples_per_s": total_samples / max(total_time, 1e-12),
        "peak_memory": mem,
        "weight_change": None,
        "class_incremental": None,
    }
    m_in = ds.in_features
    formula = None
    if args.model == "mlp" and len(args.hidden) == 1:
        formula = M.multiplies_formula(base_method(method), m_in, args.hidden[0], ds.num_classes)
    run["multiplies_per_sample"] = {
        "formula": formula,
        "formula_text": {"naca": "max(mn,km)+max(nk,kn)", "bp": "mn+n^2+kn+nm"}.get(base_method(method))
        if formula else None,
        "measured": measured,
    }
    if w0 is not None:
        run["weight_change"] = dict(M.weight_change_stats(w0, w_hidden), layer=layer_name)
    if ci:
        run["class_incremental"] = {
            "tasks": tasks, "epochs_per_task": epochs_per_task, "acc_matrix": acc_rows,
            "class_acc_matrix": class_rows,
            "mean_acc_after_last": float(np.nanmean(class_rows[-1])),
            "mean_task_acc_after_last": M.mean_accuracy_after_last(acc_rows),
            "forgetting": M.forgetting(acc_rows),
            "forgetting_per_class": M.forgetting_columns(class_rows, learned_at),
            "bwt": M.backward_transfer(acc_rows),
        }
    return run

