"""Comparative studies: train the same model with backprop, NACA and SBP side by side.

    python -m torch_plugin.compare                 # short default study on Fashion-MNIST (a few minutes, 2 CPU cores)
    python -m torch_plugin.compare --scenario class-incremental --seeds 0,1,2 --stop-at 0.95 --out results
    python -m torch_plugin.compare --dataset digits --epochs 5 --quiet

Writes to --out: results.json (every number, schema in the README / ``RESULTS_SCHEMA``),
results.md (the table printed at the end: mean +- std over seeds) and PNG plots
(accuracy_curves.png, weight_change.png; class-incremental also acc_matrix.png, and with --gate
acc_matrix_class_sorted.png). Each (method, seed) run is saved to runs/<method>_seed<seed>.json as
soon as it finishes, so an interrupted study loses at most the run in progress: the same command
with --resume reuses the saved runs whose settings match.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import data as tpdata
from . import metrics as M

METHODS = ("bp", "naca", "sbp", "sbp-local", "bp-surrogate")
# sbp-local: SBP's local rule alone, without the self-backpropagated and lateral spread
# (lambda_f = 0): the papers' "without SBP" control (ALGORITHMS.md 2.3).
SBP_METHODS = ("sbp", "sbp-local")
GATED_METHODS = ("naca", "bp", "bp-surrogate")  # --gate: the runs that get the input gate (not sbp, sbp-local)
MODELS = ("mlp", "conv", "snn")

# Default learning rates, measured on digits and a Fashion-MNIST subset (examples/results/README.md).
# NACA's update sums over the batch (the reference code), BP's cross-entropy averages it,
# so their SGD learning rates live on different scales.
DEFAULT_LR = {
    ("bp", "sgd"): 0.1, ("bp", "adam"): 1e-3,
    ("naca", "sgd"): None, ("naca", "adam"): 1e-3,  # None: 2 / in_features (0.0026 at 784, 0.031 at 64)
    ("sbp", "sgd"): 3.0, ("sbp", "adam"): 3.0,      # SBP has its own step (alpha = lr * (0.1, 0.05))
    ("bp-surrogate", "sgd"): 0.1, ("bp-surrogate", "adam"): 1e-3,
}
BIAS_SUFFIX = {"all": "", "none": " no bias", "output": " output bias only"}  # --bias -> model name suffix
SNN_NACA_LR = {"sgd": 1e-3, "adam": 1e-3}
SBP_SNN_LR = 2.0

RESULTS_SCHEMA = {
    "schema_version": "int, 1",
    "command": "str, the command line",
    "config": "dict, every option after defaults were resolved (lr per method in 'lr')",
    "dataset": "dict: name, train_samples, test_samples, num_classes, sample_shape, test_order (stored, or shuffled "
               "with --gate when the stored test set is sorted by class)",
    "environment": "dict: torch, python, platform, device, threads, started (ISO time)",
    "runs": "list of run dicts, one per (method, seed), see RUN_SCHEMA",
    "summary": "dict method -> metric -> {mean, std, n} over seeds (std: sample std, 0 for one seed)",
    "files": "dict: table (results.md), plots (list of PNG names), runs (runs/<method>_seed<seed>.json)",
    "resumed_runs": "list of '<method>_seed<seed>' runs read back from runs/ (--resume) instead of trained",
}
RUN_SCHEMA = {
    "method": "bp | naca | sbp | sbp-local | bp-surrogate", "seed": "int", "model": "str, e.g. mlp 784-1000-10",
    "optimizer": "sgd | adam | sbp", "lr": "float", "parameters": "int, trainable parameters",
    "epochs": "list of {task, epoch, train_acc, test_acc, seconds, samples_per_s} in training order "
              "(task 0 in the standard scenario; test_acc on the whole test set); with --stop-metric eval or "
              "--restore-best also eval_train_acc, eval_train_mse (the task's training set after the epoch)",
    "test_acc_per_epoch": "list of float, test accuracy after each epoch (whole test set)",
    "final_test_acc": "float in [0, 1] (with --restore-best: of the restored weights)",
    "restored_epochs": "null, or (--restore-best) the epoch whose weights were restored at the end of each task",
    "grad_clip": "null, or (--clip-grad-norm) {max_norm, steps, clipped_steps: steps where the norm exceeded it}",
    "epochs_to_criterion": "standard scenario: metrics.epochs_to_criterion of the run's own test errors "
                           "{value, thresholds, rule, censored, reached}; null in class-incremental",
    "epochs_to_criterion_shared": "same with the best error over all runs of the study as the lower end",
    "multiplies_per_sample": "{formula: int|null (papers' formula, one-hidden-layer MLP only), "
                             "formula_text, measured: float|null (FlopCounterMode MACs per sample of one step)}",
    "seconds_per_epoch": "float, mean training wall time of an epoch (evaluation and the MAC count, done on a twin "
                         "model before training, excluded)",
    "samples_per_s": "float, training samples per second",
    "peak_memory": "{cpu_rss_bytes: int, cuda_bytes: int|null}",
    "weight_change": "metrics.weight_change_stats of the last hidden layer's weight over all training, plus 'layer'",
    "gate": "bool, the input gate on (naca, bp and bp-surrogate runs with --gate)",
    "gate_delta_raw": "null, or the gate's delta in the data's raw units (--gate-delta times the std of x_train)",
    "gate_by_class_eval": "null, or (with --gate) the same model evaluated "
    "on class-sorted test batches of --gate-eval-batch-size (the authors' protocol; leaks the class through the "
    "gate): {test_acc, batch_size, and class-incremental: acc_matrix, mean_acc_after_last, forgetting (per task), "
    "forgetting_per_class, bwt}",
    "nonfinite_steps": "int, training steps whose outputs held a NaN or an Inf (the epoch's task stops after such "
                       "an epoch); also per epoch in 'epochs'",
    "threads": "int, torch.get_num_threads() of the process that trained the run (timings depend on it)",
    "class_incremental": "null, or {tasks, epochs_per_task, acc_matrix (R[i][j]: task j after task i), "
                         "class_acc_matrix (rows after-task, columns classes), mean_acc_after_last "
                         "(mean per-class accuracy), mean_task_acc_after_last, forgetting (per task), "
                         "forgetting_per_class (ALGORITHMS.md 3: per class, best earlier minus final, averaged "
                         "over the classes not learned in the last task; the table's main forgetting), bwt}",
}


# ----------------------------------------------------------------------------- arguments

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torch-plugin-compare",
        description="Train the same network with backprop, NACA and SBP; report accuracy, epochs to "
                    "criterion, cost, forgetting; write results.json, results.md and plots.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--methods", default="bp,naca",
                   help="comma list of: " + ", ".join(METHODS) + " (sbp-local: SBP without the spread, "
                        "lambda_f = 0, the papers' 'without SBP' control)")
    p.add_argument("--model", default="mlp", choices=MODELS,
                   help="mlp: Flatten-NACALinear(tanh)-NACAOutput; conv: the papers' conv64-conv128-FC-FC; "
                        "snn: models.spiking_mlp (LIF, T steps)")
    p.add_argument("--hidden", default="1000", help="hidden widths, comma list (conv: the FC width)")
    p.add_argument("--channels", default="64,128", help="conv model's channels")
    p.add_argument("--conv-kernel", type=int, default=3,
                   help="conv model's kernel size (odd; padding keeps the map size): 3, or 5 as the authors' "
                        "CONV_64_5_1_2 layers")
    p.add_argument("--T", type=int, default=20, help="snn time steps")
    p.add_argument("--scenario", default="standard", choices=("standard", "class-incremental"))
    p.add_argument("--tasks-classes", type=int, default=2, choices=(1, 2),
                   help="classes per task in the class-incremental scenario")
    p.add_argument("--class-order", default="fixed", choices=("fixed", "shuffled"),
                   help="class-incremental task order: classes 0..N-1 in order, or shuffled by each seed (the "
                        "same order for every method of that seed; the authors' default)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs (standard, default 5) or the most epochs per task (class-incremental, default 10)")
    p.add_argument("--stop-at", type=float, default=None,
                   help="stop a task (standard: the training) once the epoch's training accuracy reaches this "
                        "(class-incremental default 0.95, the papers' rule; 0 disables)")
    p.add_argument("--stop-metric", default="running", choices=("running", "eval"),
                   help="the training accuracy --stop-at reads: running (counted during the epoch) or eval (the "
                        "task's training set re-evaluated after the epoch, eval mode, batches of --batch-size in "
                        "order: the authors' class-CL 'validation', a copy of the task's training set)")
    p.add_argument("--restore-best", action="store_true",
                   help="at the end of each task (standard: of training) restore the weights of the epoch with the "
                        "lowest MSE between the outputs (sigmoid of the logits; snn: the rates) and one-hot labels "
                        "on the task's training set, evaluated after each epoch (the authors' class-CL loop)")
    p.add_argument("--clip-grad-norm", type=float, default=0.0,
                   help="clip the gradient (naca: the pseudo-gradient, which then goes through the optimizer) to "
                        "this total norm before each step of bp, bp-surrogate and naca runs, as the authors' "
                        "loops (their class-CL code: 10000); 0: off. sbp runs have no gradient and do not clip")
    p.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist | digits | a folder of IDX files | an .npz file")
    p.add_argument("--train-subset", type=int, default=None,
                   help="training samples used (stratified, seeded); default 20000 for the default "
                        "fashion-mnist standard study, all otherwise")
    p.add_argument("--test-subset", type=int, default=None, help="test samples used (default all)")
    p.add_argument("--standardize", action="store_true",
                   help="standardize the inputs with the training set's scalar mean and std, as the authors' "
                        "loaders (MNIST: Normalize(0.1307, 0.3081)); mlp and conv models (the snn encodes [0, 1])")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--seeds", default="0", help="comma list of seeds")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", default="auto", choices=("auto", "sgd", "adam"),
                   help="the optimizer family shared by BP and NACA (NACA sgd: its in-place step; "
                        "adam: NACA's update as a pseudo-gradient); auto: adam for standard (the authors' "
                        "classification code), sgd for class-incremental (their class-CL code)")
    p.add_argument("--lr", default="",
                   help="per-method learning rates, e.g. bp=0.1,naca=0.003 (defaults: bp sgd 0.1 / adam 1e-3; "
                        "naca sgd 2/in_features / adam 1e-3; sbp and sbp-local 3.0 (snn 2.0); bp-surrogate adam 1e-3)")
    p.add_argument("--activation", default="tanh", choices=("tanh", "sigmoid", "relu"),
                   help="hidden activation of the mlp/conv models (sbp's ANN is always sigmoid)")
    p.add_argument("--bias", default="all", choices=tuple(BIAS_SUFFIX),
                   help="which layers have a bias (every model and method): all; none (the authors' ANNs); "
                        "output (the output layer only: the authors' class-incremental SNN)")
    p.add_argument("--output-sigmoid-grad", default="auto", choices=("auto", "on", "off"),
                   help="NACA output delta (sigmoid(z)-y)*sigmoid'(z) (on) or without sigmoid' (off); auto: on "
                        "(the authors' classification and class-CL codes both backpropagate the MSE error through "
                        "the output sigmoid; with the gate, on also forgets less: see examples/results)")
    p.add_argument("--sbp-rule", default="contrastive", choices=("contrastive", "symmetric", "differential"),
                   help="SBP's local rule (learn.SBP local_rule)")
    p.add_argument("--sbp-relax-steps", type=int, default=0,
                   help="SBP: homeostatic relaxation steps of the hidden state (0: re-run the layer)")
    p.add_argument("--sbp-fraction", type=float, default=0.2,
                   help="SBP lambda_f of the sbp runs (0: no spread; sbp-local runs always use 0)")
    p.add_argument("--sbp-percentage", type=float, default=1.0, help="SBP lambda_p")
    p.add_argument("--snn-current", default="linear", choices=("linear", "sigmoid"),
                   help="--model snn: each layer integrates W x_t + b (linear) or sigmoid(W x_t + b) (the authors' "
                        "class-incremental SNN)")
    p.add_argument("--snn-lens", type=float, default=0.5,
                   help="--model snn: NACA's eligibility window 1[V > threshold - lens] (authors: 0.5 "
                        "classification, 0.2 class-incremental)")
    p.add_argument("--snn-rule", default="all-steps", choices=("all-steps", "last-step", "chain"),
                   help="--model snn, NACA's update: f(NL) e_t x_t summed over all steps, at the last step only "
                        "(hidden layers; the output layer learns from every step: the authors' classification "
                        "code), or chain: the signal sent into the last step's spikes "
                        "and carried back through the membrane (their class-incremental code; "
                        "ops.naca_snn_chain_update_)")
    p.add_argument("--stp", action="store_true",
                   help="--model snn: short-term plasticity (STPSynapse) on the input synapses")
    p.add_argument("--gate", action="store_true",
                   help="NACA's input-derived gate (ALGORITHMS.md 1.4, class-CL code) on the hidden layers of the "
                        "naca, bp and bp-surrogate runs (sbp: not applied; --model mlp or snn); off by default "
                        "because at test time it sees the test batch's mean input, which can leak the class")
    p.add_argument("--gate-delta", type=float, default=0.2,
                   help="the gate's delta in standard deviations of the training inputs: the authors' inputs are "
                        "standardized (MNIST: Normalize(0.1307, 0.3081)), so their 0.2 is 0.2 std; the raw value "
                        "(delta * std of x_train) is recorded as gate_delta_raw")
    p.add_argument("--gate-eval-batch-size", type=int, default=16,
                   help="with --gate, the run is also evaluated the authors' way: test set sorted by class, "
                        "batches of this size (mostly one class: the gate sees the class), reported apart")
    p.add_argument("--eval-batch-size", type=int, default=1000,
                   help="test batch size (with --gate the gate sees each test batch)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--out", default="compare_results", help="output folder")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--resume", action="store_true",
                   help="reuse the runs an earlier study saved in OUT/runs/ (each finished (method, seed) run is "
                        "saved there) when its settings match this command's; train only the others. A saved run "
                        "with other settings is an error (use another --out)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    return p


def _int_list(text: str) -> list[int]:
    return [int(v) for v in str(text).split(",") if v.strip() != ""]


def _changed_flags(p: argparse.ArgumentParser, a: argparse.Namespace, *dests: str) -> list[str]:
    """The flags among dests (argparse dest names) given a value other than their default."""
    return [f"--{k.replace('_', '-')}" for k in dests if getattr(a, k) != p.get_default(k)]


def parse_args(argv=None) -> argparse.Namespace:
    p = build_parser()
    a = p.parse_args(argv)
    a.methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    bad = [m for m in a.methods if m not in METHODS]
    if bad or not a.methods:
        p.error(f"--methods: unknown {bad}; choose from {', '.join(METHODS)}")
    if "bp-surrogate" in a.methods and a.model != "snn":
        p.error("--methods bp-surrogate trains a spiking network: use it with --model snn")
    sbp = [m for m in a.methods if m in SBP_METHODS]
    if sbp and a.model == "conv":
        p.error(f"--methods {','.join(sbp)} needs a one-hidden-layer network: --model mlp or snn")
    a.seeds = _int_list(a.seeds)
    a.hidden = _int_list(a.hidden)
    a.channels = _int_list(a.channels)
    if not a.seeds or not a.hidden:
        p.error("--seeds and --hidden need at least one value")
    if sbp and len(a.hidden) != 1:
        p.error(f"--methods {','.join(sbp)} needs exactly one hidden layer (--hidden N)")
    ci = a.scenario == "class-incremental"
    if a.epochs is None:
        a.epochs = 10 if ci else 5
    if a.epochs < 1:
        p.error("--epochs must be >= 1")
    if a.optimizer == "auto":
        a.optimizer = "sgd" if ci else "adam"
    if a.stop_at is None:
        a.stop_at = 0.95 if ci else 0.0
    if not 0.0 <= a.stop_at <= 1.0:
        p.error("--stop-at must be in [0, 1]")
    if a.conv_kernel != 3 and a.model != "conv":
        p.error("--conv-kernel applies to --model conv")
    if a.conv_kernel < 1 or a.conv_kernel % 2 == 0:
        p.error(f"--conv-kernel must be odd and >= 1, got {a.conv_kernel}")
    if a.standardize and a.model == "snn":
        p.error("--standardize applies to --model mlp and conv (the spiking model's encoder reads [0, 1] intensities)")
    if a.class_order != "fixed" and not ci:
        p.error("--class-order applies to --scenario class-incremental")
    if a.stop_metric != "running" and a.stop_at == 0:
        p.error("--stop-metric eval needs --stop-at > 0")
    if a.clip_grad_norm < 0:
        p.error("--clip-grad-norm must be >= 0 (0: off)")
    if a.clip_grad_norm > 0 and not any(m not in SBP_METHODS for m in a.methods):
        p.error("--clip-grad-norm applies to bp, bp-surrogate and naca runs (sbp has no gradient)")
    if a.train_subset is None and a.dataset == "fashion-mnist" and not ci:
        a.train_subset = 20000
    lrs = {}
    for item in filter(None, (s.strip() for s in a.lr.split(","))):
        if "=" not in item:
            p.error(f"--lr expects method=value pairs, got {item!r}")
        k, v = item.split("=", 1)
        if k not in METHODS:
            p.error(f"--lr: unknown method {k!r}")
        lrs[k] = float(v)
    a.lr_given = lrs
    if a.gate and (a.model == "conv" or a.stp):
        p.error("--gate is implemented for --model mlp and snn (without --stp)")
    if a.gate and a.gate_delta < 0:
        p.error("--gate-delta must be >= 0")
    if a.stp and a.model != "snn":
        p.error("--stp applies to --model snn")
    snn_set = _changed_flags(p, a, "snn_current", "snn_lens", "snn_rule")
    if snn_set and a.model != "snn":
        p.error(f"{', '.join(snn_set)} apply to --model snn")
    sbp_set = _changed_flags(p, a, "sbp_rule", "sbp_relax_steps", "sbp_fraction", "sbp_percentage")
    if sbp_set and not sbp:
        p.error(f"{', '.join(sbp_set)} apply to --methods sbp or sbp-local")
    if "--sbp-fraction" in sbp_set and "sbp" not in a.methods:
        p.error("--sbp-fraction applies to --methods sbp (sbp-local runs always use lambda_f = 0)")
    if a.sbp_relax_steps < 0 or a.sbp_fraction < 0 or not 0.0 <= a.sbp_percentage <= 1.0:
        p.error("--sbp-relax-steps and --sbp-fraction must be >= 0, --sbp-percentage in [0, 1]")
    return a


# ----------------------------------------------------------------------------- models and learners

def _import(name: str, what: str):
    """Lazy access to parts another issue provides (spiking models, SBP)."""
    import importlib

    mod_name, attr = name.rsplit(".", 1)
    try:
        obj = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise SystemExit(f"{what} needs {name}, which this torch_plugin build does not provide ({e})") from None
    return obj


def build_model(args, method: str, ds: tpdata.Dataset, seed: int) -> tuple[nn.Module, str]:
    from . import models

    n, d = ds.num_classes, ds.in_features
    hid = "-".join(str(h) for h in args.hidden)
    bias, out_bias = args.bias == "all", args.bias != "none"
    nb = BIAS_SUFFIX[args.bias]
    if args.model == "snn":
        spiking_mlp = _import("torch_plugin.models.spiking_mlp", "--model snn")
        return (spiking_mlp(d, args.hidden, n, T=args.T, seed=seed, stp=args.stp, current=args.snn_current,
                            lens=args.snn_lens, bias=bias, output_bias=out_bias),
                f"snn {d}-{hid}-{n} T={args.T}" + (" STP" if args.stp else "")
                + (" sigmoid current" if args.snn_current == "sigmoid" else "") + nb)
    if args.model == "conv":
        if len(ds.sample_shape) != 3:
            raise SystemExit(f"--model conv needs image data (C, H, W); this dataset's samples are {ds.sample_shape}")
        ch = "-".join(f"conv{c}" for c in args.channels)
        return (models.conv_net(ds.sample_shape, n, channels=args.channels, hidden=args.hidden[0],
                                activation=args.activation, seed=seed, bias=bias, output_bias=out_bias,
                                kernel_size=args.conv_kernel),
                f"conv {ch}-FC{args.hidden[0]}-FC{n}{nb}" + (f" {args.conv_kernel}x{args.conv_kernel}"
                                                            if args.conv_kernel != 3 else ""))
    if method in SBP_METHODS:
        sbp_ann = _import("torch_plugin.models.sbp_ann", "--methods sbp")
        return (sbp_ann(d, args.hidden[0], n, seed=seed, bias=bias, output_bias=out_bias),
                f"mlp {d}-{hid}-{n} (sigmoid){nb}")
    sig = args.output_sigmoid_grad != "off"
    return (models.mlp(d, args.hidden, n, activation=args.activation, seed=seed, sigmoid_grad=sig, bias=bias,
                       output_bias=out_bias),
            f"mlp {d}-{hid}-{n}{nb}")


def resolve_lr(args, method: str, ds: tpdata.Dataset) -> float:
    if method in args.lr_given:
        return args.lr_given[method]
    if method == "naca" and args.model == "snn":
        return SNN_NACA_LR[args.optimizer]
    if method in SBP_METHODS and args.model == "snn":
        return SBP_SNN_LR
    base = "sbp" if method in SBP_METHODS else method  # sbp-local: sbp's default, the controlled comparison
    lr = DEFAULT_LR[(base, args.optimizer)]
    if lr is None:  # NACA in-place SGD: the batch-summed update scales with the fan-in
        lr = 2.0 / ds.in_features
    return float(lr)


class InputGate:
    """ALGORITHMS.md 1.4's gate on a hidden NACALinear or NACASpikingLinear: m = batch mean
    of the layer input (spiking: over time steps and batch, i.e. the input rates, which the
    Bernoulli code makes the pixel means), resampled to H entries (nearest);
    mask_j = sigmoid(1000 (m_j - (max m - delta))). It multiplies the layer's output (activity:
    h, or the spikes of every step) and, through ``scale_grads``, its update (plasticity).
    (The authors' SNN code takes m from the network's input image for every hidden layer: the
    same thing for one hidden layer, the papers' class-incremental networks.)"""

    def __init__(self, layer: nn.Module, delta: float):
        self.layer, self.delta, self.mask = layer, float(delta), None
        self.handle = layer.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        x = inputs[0].detach()
        m = x.reshape(-1, x.shape[-1]).mean(0).view(1, 1, -1)  # (B, I) or spiking (T, B, I)
        m = F.interpolate(m, size=output.shape[-1], mode="nearest").view(-1)
        self.mask = torch.sigmoid(1000.0 * (m - (m.max() - self.delta)))
        return output * self.mask

    def scale_grads(self) -> None:
        w, b = self.layer.weight, self.layer.bias
        if w.grad is not None:
            w.grad.mul_(self.mask.view(-1, 1))
        if b is not None and b.grad is not None:
            b.grad.mul_(self.mask)


def gate_delta_raw(args, ds: tpdata.Dataset) -> float:
    """--gate-delta in the data's raw units. The gate compares raw input means, and the
    authors' delta (0.2) was set on standardized inputs: on [0, 1] pixels a raw 0.2 opens
    2-4x more hidden units per class, shared between classes (measured on Fashion-MNIST:
    155-469 of 1000 units per class, mean Jaccard overlap 0.41; at 0.2 std: 32-171, 0.09)."""
    return float(args.gate_delta) * float(ds.x_train.float().std())


class GradClipper:
    """torch.nn.utils.clip_grad_norm_ to max_norm, counting the steps where it bound."""

    def __init__(self, max_norm: float):
        self.max_norm, self.steps, self.clipped = float(max_norm), 0, 0

    def __call__(self, params) -> None:
        norm = float(torch.nn.utils.clip_grad_norm_(list(params), self.max_norm))
        self.steps += 1
        self.clipped += int(norm > self.max_norm)

    def record(self) -> dict:
        return {"max_norm": self.max_norm, "steps": self.steps, "clipped_steps": self.clipped}

    @classmethod
    def for_run(cls, args, method: str) -> Optional["GradClipper"]:
        """The clipper a run of this method gets: --clip-grad-norm > 0 and a method with a gradient (not sbp)."""
        return cls(args.clip_grad_norm) if args.clip_grad_norm > 0 and method not in SBP_METHODS else None


def make_step(args, method: str, model: nn.Module, lr: float, gate_delta: Optional[float] = None,
              clip: Optional[GradClipper] = None, seed: int = 0) -> tuple[Callable[[Tensor, Tensor], Tensor], str]:
    """A function step(x, y) -> logits that trains on one batch, and the optimizer's name.
    gate_delta (raw units): put the input gate on the hidden layers (naca, bp, bp-surrogate).
    clip: clip the (pseudo-)gradient before each step (naca then steps through torch.optim.SGD).
    seed: the run's seed (SBP draws its lambda_p synapse subset from it)."""
    from .nn import NACALinear, NACASpikingLinear

    gates = []
    if gate_delta is not None and method in GATED_METHODS:
        gates = [InputGate(m, gate_delta) for m in model.modules()
                 if isinstance(m, NACALinear) or (isinstance(m, NACASpikingLinear) and not m.is_output)]
    if method == "naca":
        from .learn import NACA

        # check_labels=False: data.load_dataset checked every label once (the model has
        # ds.num_classes outputs), so the step need not read them back from the GPU.
        rule = dict(all_steps=args.snn_rule != "last-step", membrane_chain=args.snn_rule == "chain")
        if args.optimizer == "adam" or gates or clip is not None:
            opt = (torch.optim.Adam(model.parameters(), lr=lr) if args.optimizer == "adam"
                   else torch.optim.SGD(model.parameters(), lr=lr))  # SGD on the pseudo-gradient = in-place step
            learner = NACA(model, optimizer=opt, check_labels=False, **rule)

            def step(x, y):
                opt.zero_grad(set_to_none=False)
                out = learner.local_update(x, y)
                for g in gates:
                    g.scale_grads()
                if clip is not None:
                    clip(model.parameters())
                opt.step()
                return out
            return step, args.optimizer
        learner = NACA(model, lr=lr, check_labels=False, **rule)
        return learner.step, "sgd"
    if method in SBP_METHODS:
        SBP = _import("torch_plugin.learn.SBP", "--methods sbp")
        fraction = 0.0 if method == "sbp-local" else args.sbp_fraction
        learner = SBP(model, lr=lr, seed=seed, local_rule=args.sbp_rule, relax_steps=args.sbp_relax_steps,
                      fraction=fraction, percentage=args.sbp_percentage)
        return learner.step, "sbp"
    # bp (and bp-surrogate: BPTT through the spiking model's surrogate spike gradients); a gate's
    # mask multiplies the hidden activity, so autograd gates the hidden layer's gradient with it.
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if args.optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr))
    spiking = args.model == "snn"

    def step(x, y):
        model.train()
        out = model(x)
        if spiking:  # firing rates in [0, 1]: MSE to the one-hot target
            loss = F.mse_loss(out, F.one_hot(y, out.shape[1]).to(out.dtype))
        else:
            loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            clip(model.parameters())
        opt.step()
        return out.detach()
    return step, args.optimizer


def last_hidden_weight(model: nn.Module) -> tuple[str, Optional[nn.Parameter]]:
    """(name, weight) of the last hidden fully-connected layer (the 1000-unit layer of the papers)."""
    from .nn import NACALinear

    found = None
    for name, m in model.named_modules():
        is_output = getattr(m, "is_output", False)
        if isinstance(m, NACALinear) or (type(m).__name__ == "NACASpikingLinear" and not is_output):
            found = (name, m.weight)
    return found if found else ("", None)


# ----------------------------------------------------------------------------- one run

def _progress(iterable, total, desc, quiet):
    if quiet:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5)


def _log(msg: str, quiet: bool) -> None:
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
    gate = bool(args.gate and method in GATED_METHODS)
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

    def evaluate_task(x: Tensor, y: Tensor) -> tuple[float, float]:
        """(accuracy, MSE of the outputs to one-hot) on the task's training set, eval mode, in order."""
        model.eval()
        hits, sq = 0, 0.0
        with torch.no_grad():
            for i in range(0, len(x), args.batch_size):
                xb, yb = x[i:i + args.batch_size].to(device), y[i:i + args.batch_size].to(device)
                out = model(xb)
                prob = out if args.model == "snn" else torch.sigmoid(out)
                hits += int((out.argmax(1) == yb).sum())
                sq += float(((prob - F.one_hot(yb, prob.shape[1]).to(prob.dtype)) ** 2).sum())
        model.train()
        return hits / max(len(y), 1), sq / max(len(y) * ds.num_classes, 1)

    first_x, first_y = (ds.x_train, ds.y_train) if not ci else tpdata.task_subset(ds.x_train, ds.y_train, tasks[0])
    measured = count_step_macs(args, method, seed, ds, lr, delta_raw, first_x[:args.batch_size],
                               first_y[:args.batch_size])
    gc.collect()  # the twin, and any earlier run's model still held by a reference cycle (hooks)
    M.reset_peak_memory(device)
    epochs, test_curve = [], []
    acc_rows, class_rows, epochs_per_task = [], [], []
    leak_rows, leak_class_rows = [], []
    restored = []  # --restore-best: the epoch restored at the end of each task
    total_time, total_samples, nonfinite_total = 0.0, 0, 0
    for t, classes in enumerate(tasks):
        xtr, ytr = (ds.x_train, ds.y_train) if not ci else tpdata.task_subset(ds.x_train, ds.y_train, classes)
        n_task, best = 0, None  # best: (MSE, epoch, weights) for --restore-best
        for epoch in range(args.epochs):
            seen = 0
            correct = torch.zeros((), dtype=torch.int64, device=device)  # on the device: no sync per step
            nb = math.ceil(len(xtr) / args.batch_size)
            label = f"{method} s{seed}" + (f" task {t + 1}/{len(tasks)}" if ci else "") + f" ep {epoch + 1}"
            nonfinite = torch.zeros((), dtype=torch.int64, device=device)  # steps whose outputs hold NaN/Inf
            with M.Timer(device) as timer:
                for xb, yb in _progress(tpdata.batches(xtr, ytr, args.batch_size, generator=gen),
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
            _log(f"{label}: train acc {train_acc:.4f}  test acc {test_acc:.4f}  ({timer.seconds:.1f} s)"
                 + (f"  {n_bad} steps with non-finite outputs: the task stops here" if n_bad else ""), args.quiet)
            if n_bad or (args.stop_at > 0 and stop_acc >= args.stop_at):
                break
        epochs_per_task.append(n_task)
        if best is not None:
            model.load_state_dict(best[2])
            restored.append(best[1])
        if ci:
            pred = evaluate()
            acc_rows.append(M.task_accuracies(pred, yte, tasks))
            class_rows.append(M.per_class_accuracy(pred, yte, ds.num_classes))
            if gate:
                pred = evaluate_by_class()
                leak_rows.append(M.task_accuracies(pred, yte, tasks))
                leak_class_rows.append(M.per_class_accuracy(pred, yte, ds.num_classes))
    mem = M.peak_memory(device)
    # class c -> the task that taught it (per-class forgetting starts there)
    learned_at = [next(i for i, cl in enumerate(tasks) if c in cl) for c in range(ds.num_classes)] if ci else None
    leak = None
    if gate:
        pred = evaluate_by_class()
        leak = {"test_acc": M.accuracy(pred, yte), "batch_size": args.gate_eval_batch_size}
        if ci:
            leak.update({"acc_matrix": leak_rows, "mean_acc_after_last": float(np.nanmean(leak_class_rows[-1])),
                         "forgetting": M.forgetting(leak_rows),
                         "forgetting_per_class": M.forgetting_columns(leak_class_rows, learned_at),
                         "bwt": M.backward_transfer(leak_rows)})

    run: dict[str, Any] = {
        "method": method, "seed": seed, "model": desc, "optimizer": opt_name, "lr": lr, "parameters": nparams,
        "gate": gate, "gate_delta_raw": delta_raw, "gate_by_class_eval": leak,
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
        formula = M.multiplies_formula(method, m_in, args.hidden[0], ds.num_classes)
    run["multiplies_per_sample"] = {
        "formula": formula,
        "formula_text": {"naca": "max(mn,km)+max(nk,kn)", "bp": "mn+n^2+kn+nm"}.get(method) if formula else None,
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


# ----------------------------------------------------------------------------- summary, table, plots

SUMMARY_KEYS = {
    "final_test_acc": lambda r: r["final_test_acc"],
    "epochs_to_criterion": lambda r: r["epochs_to_criterion"] and r["epochs_to_criterion"]["value"],
    "epochs_to_criterion_shared":
        lambda r: r["epochs_to_criterion_shared"] and r["epochs_to_criterion_shared"]["value"],
    "epochs_trained": lambda r: len(r["epochs"]),
    "multiplies_formula": lambda r: r["multiplies_per_sample"]["formula"],
    "multiplies_measured": lambda r: r["multiplies_per_sample"]["measured"],
    "seconds_per_epoch": lambda r: r["seconds_per_epoch"],
    "samples_per_s": lambda r: r["samples_per_s"],
    "peak_rss_mib": lambda r: r["peak_memory"]["cpu_rss_bytes"] / 2**20,
    "peak_cuda_mib": lambda r: r["peak_memory"]["cuda_bytes"] and r["peak_memory"]["cuda_bytes"] / 2**20,
    "weight_frac_below_1e-3": lambda r: r["weight_change"] and r["weight_change"]["fraction_below"]["0.001"],
    "mean_acc_after_last": lambda r: r["class_incremental"] and r["class_incremental"]["mean_acc_after_last"],
    "forgetting": lambda r: r["class_incremental"] and r["class_incremental"]["forgetting"],
    "forgetting_per_class": lambda r: r["class_incremental"] and r["class_incremental"]["forgetting_per_class"],
    "bwt": lambda r: r["class_incremental"] and r["class_incremental"]["bwt"],
    "gate_by_class_test_acc": lambda r: r["gate_by_class_eval"] and r["gate_by_class_eval"]["test_acc"],
    "gate_by_class_mean_acc_after_last":
        lambda r: r["gate_by_class_eval"] and r["gate_by_class_eval"].get("mean_acc_after_last"),
    "gate_by_class_forgetting": lambda r: r["gate_by_class_eval"] and r["gate_by_class_eval"].get("forgetting"),
    "gate_by_class_forgetting_per_class":
        lambda r: r["gate_by_class_eval"] and r["gate_by_class_eval"].get("forgetting_per_class"),
}


def summarize(runs: list[dict], methods: list[str]) -> dict:
    out = {}
    for m in methods:
        rs = [r for r in runs if r["method"] == m]
        out[m] = {}
        for key, get in SUMMARY_KEYS.items():
            vals = [get(r) for r in rs]
            vals = [float(v) for v in vals if v is not None and not isinstance(v, bool)]
            if vals:
                std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
                out[m][key] = {"mean": float(np.mean(vals)), "std": std, "n": len(vals)}
    return out


def _pm(s: dict, key: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    if key not in s:
        return "-"
    v = s[key]
    if v["n"] > 1 and v["std"] > 0:
        return f"{fmt.format(v['mean'] * scale)} ± {fmt.format(v['std'] * scale)}"
    return fmt.format(v["mean"] * scale)


def markdown_table(summary: dict, ci: bool, nseeds: int) -> str:
    cols = [("method", None, 1, "")]
    if ci:
        cols += [("mean acc after last task (%)", "mean_acc_after_last", 100, "{:.2f}"),
                 ("forgetting per class (%)", "forgetting_per_class", 100, "{:.2f}"),
                 ("forgetting per task (%)", "forgetting", 100, "{:.2f}"), ("BWT (%)", "bwt", 100, "{:.2f}"),
                 ("epochs trained", "epochs_trained", 1, "{:.1f}"),
                 ("hidden |ΔW|<1e-3 (%)", "weight_frac_below_1e-3", 100, "{:.1f}")]
    else:
        cols += [("test acc (%)", "final_test_acc", 100, "{:.2f}"),
                 ("epochs to criterion", "epochs_to_criterion", 1, "{:.2f}"),
                 ("epochs to shared criterion", "epochs_to_criterion_shared", 1, "{:.2f}")]
    cols += [("mult./sample formula", "multiplies_formula", 1, "{:.3g}"),
             ("MAC/sample measured", "multiplies_measured", 1, "{:.3g}"),
             ("s/epoch", "seconds_per_epoch", 1, "{:.2f}"), ("samples/s", "samples_per_s", 1, "{:.0f}"),
             ("peak RSS (MiB)", "peak_rss_mib", 1, "{:.0f}")]
    if any("gate_by_class_test_acc" in s for s in summary.values()):
        key = "gate_by_class_mean_acc_after_last" if ci else "gate_by_class_test_acc"
        cols.insert(2, ("with gate, class-sorted test batches (%)", key, 100, "{:.2f}"))
        if ci:
            cols.insert(4, ("forgetting per class, class-sorted (%)", "gate_by_class_forgetting_per_class", 100,
                            "{:.2f}"))
    if any("peak_cuda_mib" in s for s in summary.values()):
        cols.append(("peak CUDA (MiB)", "peak_cuda_mib", 1, "{:.0f}"))
    head = "| " + " | ".join(c[0] for c in cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    lines = [head, sep]
    for m, s in summary.items():
        lines.append("| " + " | ".join([m] + [_pm(s, k, sc, f) for _, k, sc, f in cols[1:]]) + " |")
    note = f"mean ± std over {nseeds} seeds" if nseeds > 1 else "one seed"
    return "\n".join(lines) + f"\n\n({note})\n"


def _plot_acc_matrix(plt, runs: list[dict], methods: list[str], matrix, title: str, path: str) -> None:
    """Heat map per method of the accuracy matrix (after-task x evaluated task), mean over seeds."""
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.8), squeeze=False)
    for ax, m in zip(axes[0], methods):
        mats = [np.asarray(matrix(r)) for r in runs if r["method"] == m]
        mat = 100 * np.mean(mats, axis=0)
        im = ax.imshow(mat, vmin=0, vmax=100, cmap="viridis")
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                ax.text(j, i, f"{mat[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="w" if mat[i, j] < 60 else "k")
        ax.set_title(f"{m}{title}\naccuracy (%), mean of {len(mats)} seed(s)", fontsize=9)
        ax.set_xlabel("evaluated task")
        ax.set_ylabel("after training task")
        ax.set_xticks(range(mat.shape[1]))
        ax.set_yticks(range(mat.shape[0]))
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def make_plots(runs: list[dict], methods: list[str], ci: bool, out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in runs:
        curve = [100 * a for a in r["test_acc_per_epoch"]]
        ax.plot(range(1, len(curve) + 1), curve, color=colors[r["method"]], alpha=0.8, marker="o", ms=3,
                label=r["method"] if r["seed"] == min(x["seed"] for x in runs if x["method"] == r["method"]) else None)
        if ci:
            ends = np.cumsum(r["class_incremental"]["epochs_per_task"])[:-1]
            for e in ends:
                ax.axvline(e + 0.5, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("epoch" + (" (all tasks, grey lines: task boundaries of each run)" if ci else ""))
    ax.set_ylabel("test accuracy (%) on all classes")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "accuracy_curves.png"), dpi=120)
    plt.close(fig)
    files.append("accuracy_curves.png")
    if ci:
        _plot_acc_matrix(plt, runs, methods, lambda r: r["class_incremental"]["acc_matrix"],
                         "", os.path.join(out, "acc_matrix.png"))
        files.append("acc_matrix.png")
        gated = [m for m in methods if any(r["method"] == m and r["gate_by_class_eval"] for r in runs)]
        if gated:  # the gate's leak, shown apart: the same models on class-sorted test batches
            _plot_acc_matrix(plt, [r for r in runs if r["gate_by_class_eval"]], gated,
                             lambda r: r["gate_by_class_eval"]["acc_matrix"], " (gate, class-sorted batches)",
                             os.path.join(out, "acc_matrix_class_sorted.png"))
            files.append("acc_matrix_class_sorted.png")
    wc = [r for r in runs if r["weight_change"]]
    if wc:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for m in methods:
            rs = [r["weight_change"] for r in wc if r["method"] == m]
            if not rs:
                continue
            counts = np.sum([w["hist_counts"] for w in rs], axis=0)
            edges = np.asarray(rs[0]["hist_log10_edges"])
            frac = counts / counts.sum()
            label = f"{m} (hidden layer '{rs[0]['layer']}', {len(rs)} run(s))"
            ax.stairs(100 * frac, edges, color=colors[m], label=label, lw=1.5)
        ax.set_xlabel("log10 |ΔW| per synapse of the hidden layer, over all training (clipped to the axis)")
        ax.set_ylabel("synapses (%)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, "weight_change.png"), dpi=120)
        plt.close(fig)
        files.append("weight_change.png")
    return files


# ----------------------------------------------------------------------------- saved runs (--resume)

# Options that do not change what one (method, seed) run computes: which runs the study has, where and how
# it reports, and the CPU thread count (timings only). Everything else must match for a run to be reused.
_NOT_RUN_SETTINGS = ("methods", "seeds", "out", "quiet", "no_plots", "threads", "resume", "lr", "lr_given", "_argv")


def run_settings(args, method: str, ds: tpdata.Dataset) -> dict:
    """What a saved run must have been trained with to stand in for (method, seed) of this study (JSON values)."""
    s = {k: v for k, v in vars(args).items() if k not in _NOT_RUN_SETTINGS}
    s["method_lr"] = resolve_lr(args, method, ds)
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


# ----------------------------------------------------------------------------- main

def run_study(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    try:
        ds = tpdata.load_dataset(args.dataset, args.train_subset, args.test_subset, seed=0)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
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
        _log("--gate: the test set is stored sorted by class; mixed-batch evaluation uses a fixed shuffle", args.quiet)
    tasks = task_list(args, ds.num_classes, args.seeds[0])
    os.makedirs(args.out, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    _log(f"{ds.name}: {len(ds.x_train)} train / {len(ds.x_test)} test, {ds.num_classes} classes; model {args.model}; "
         f"{args.scenario}" + (f" ({len(tasks)} tasks)" if ci else "") + f"; methods {','.join(args.methods)}; "
         f"seeds {args.seeds}; device {args.device}", args.quiet)
    runs, resumed, run_files = [], [], []
    for method in args.methods:
        settings = run_settings(args, method, ds)
        for seed in args.seeds:
            path = run_path(args.out, method, seed)
            run_files.append(os.path.relpath(path, args.out))
            run = load_run(path, settings) if args.resume else None
            if run is not None:
                _log(f"{method} seed {seed}: reusing the saved run {path}", args.quiet)
                resumed.append(f"{method}_seed{seed}")
            else:
                run = train_run(args, method, seed, ds, task_list(args, ds.num_classes, seed))
                save_run(path, settings, run)
            runs.append(run)
    if not ci:  # epochs to criterion against the best error of the whole study
        best = min(1 - a for r in runs for a in r["test_acc_per_epoch"])
        for r in runs:
            r["epochs_to_criterion_shared"] = M.epochs_to_criterion([1 - a for a in r["test_acc_per_epoch"]], best)
    summary = summarize(runs, args.methods)
    table = markdown_table(summary, ci, len(args.seeds))
    config = {k: v for k, v in vars(args).items() if k not in ("lr_given", "_argv")}
    config["lr"] = {m: resolve_lr(args, m, ds) for m in args.methods}
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
              + f", {len(ds.x_train)} training samples, batch {args.batch_size}, optimizer {args.optimizer}, "
              f"lr {config['lr']}\n\nCommand: `{result['command']}`\n\n"
              + (f"Runs reused from runs/ (--resume): {', '.join(resumed)}\n\n" if resumed else ""))
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(header + table)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1, allow_nan=True)
    result["table"] = table
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    args._argv = argv
    result = run_study(args)
    print(result["table"], end="")
    if not args.quiet:
        print(f"wrote {os.path.join(args.out, 'results.json')}, results.md"
              + (", " + ", ".join(result["files"]["plots"]) if result["files"]["plots"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
