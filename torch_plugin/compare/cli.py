"""The command line: parser, the checks that turn bad values into usage errors, and main()."""
from __future__ import annotations

import argparse
import os
import sys

from ..nn.common import NACA_ACTIVATIONS
from ..ops import ACTIVATIONS
from .checks import (UsageError, check_dataset, check_device, check_out, int_list, nonneg_int, per_method,
                     positive_int, real, seed_list, warn_activation)
from .presets import PRESETS, expand
from .schema import (BIAS_SUFFIX, CONTINUAL_METHODS, GATE_SUFFIX, GATED_METHODS, METHODS, MODELS, SBP_METHODS,
                     VARIANTS, base_method)
from .study import run_study


def build_parser() -> argparse.ArgumentParser:
    """The command's parser (docs/studies.md documents every flag)."""
    p = argparse.ArgumentParser(
        prog="torch-plugin-compare",
        description="Train the same network with backprop, NACA, SBP and continual-learning baselines; report "
                    "accuracy, epochs to criterion, cost, forgetting; write results.json, results.md and plots.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default=None, choices=tuple(PRESETS),
                   help="a named set of flags, each overridden by the same flag given beside it: naca-class-il, "
                        "the NACA authors' class-incremental loop with per-class evaluation, 5 seeds, NACA with "
                        "and without the gate and the controls (bp with and without the gate; ewc, si, lwf; "
                        "replay); docs/studies.md lists its flags")
    p.add_argument("--methods", default="bp,naca",
                   help="comma list of: " + ", ".join(METHODS) + " (sbp-local: SBP without the spread, "
                        "lambda_f = 0, the papers' 'without SBP' control); METHOD" + GATE_SUFFIX + " (e.g. bp"
                        + GATE_SUFFIX + "): that method with the input gate, beside the ungated one in one study "
                        "(any of " + ", ".join(GATED_METHODS) + ")")
    p.add_argument("--model", default="mlp", choices=MODELS,
                   help="mlp: Flatten-NACALinear(tanh)-NACAOutput; conv: the papers' conv64-conv128-FC-FC; "
                        "snn: models.spiking_mlp (LIF, T steps)")
    p.add_argument("--hidden", default="1000", type=int_list(1, "integers >= 1"),
                   help="hidden widths, comma list (conv: the FC width)")
    p.add_argument("--channels", default="64,128", type=int_list(1, "integers >= 1"), help="conv model's channels")
    p.add_argument("--conv-kernel", type=positive_int, default=3,
                   help="conv model's kernel size (odd; padding keeps the map size): 3, or 5 as the authors' "
                        "CONV_64_5_1_2 layers")
    p.add_argument("--T", type=positive_int, default=20, help="snn time steps")
    p.add_argument("--scenario", default="standard", choices=("standard", "class-incremental"))
    p.add_argument("--tasks-classes", type=int, default=2, choices=(1, 2),
                   help="classes per task in the class-incremental scenario")
    p.add_argument("--class-order", default="fixed", choices=("fixed", "shuffled"),
                   help="class-incremental task order: classes 0..N-1 in order, or shuffled by each seed (the "
                        "same order for every method of that seed; the authors' default)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="epochs (standard, default 5) or the most epochs per task (class-incremental, default 10)")
    p.add_argument("--stop-at", type=real(0.0, 1.0), default=None,
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
    p.add_argument("--clip-grad-norm", type=real(0.0), default=0.0,
                   help="clip the gradient (naca: the pseudo-gradient, which then goes through the optimizer) to "
                        "this total norm before each step of bp, bp-surrogate and naca runs, as the authors' "
                        "loops (their class-CL code: 10000); 0: off. sbp runs have no gradient and do not clip")
    p.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist | digits | a folder of IDX files | an .npz file")
    p.add_argument("--train-subset", type=positive_int, default=None,
                   help="training samples used (stratified, seeded); default 20000 for the default "
                        "fashion-mnist standard study, all otherwise")
    p.add_argument("--test-subset", type=positive_int, default=None, help="test samples used (default all)")
    p.add_argument("--standardize", action="store_true",
                   help="standardize the inputs with the training set's scalar mean and std, as the authors' "
                        "loaders (MNIST: Normalize(0.1307, 0.3081)); mlp and conv models (the snn encodes [0, 1])")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (the device must exist)")
    p.add_argument("--seeds", default="0", type=seed_list, help="comma list of seeds")
    p.add_argument("--batch-size", default="32",
                   help="training batch size: N for every method, or per method as --lr takes them, "
                        "e.g. naca=32,bp=256 or 64,bp=256 (the plain value for the methods not named)")
    p.add_argument("--optimizer", default="auto", choices=("auto", "sgd", "adam"),
                   help="the optimizer family shared by BP and NACA (NACA sgd: its in-place step; "
                        "adam: NACA's update as a pseudo-gradient); auto: adam for standard (the authors' "
                        "classification code), sgd for class-incremental (their class-CL code)")
    p.add_argument("--lr", default="",
                   help="per-method learning rates, e.g. bp=0.1,naca=0.003 (defaults: bp sgd 0.1 / adam 1e-3; "
                        "naca sgd 2/in_features / adam 1e-3; sbp and sbp-local 3.0 (snn 2.0); bp-surrogate adam 1e-3)")
    p.add_argument("--bp-loss", default="ce", choices=("ce", "mse"),
                   help="loss of bp and the continual baselines on mlp/conv: cross-entropy of the logits, or MSE of "
                        "sigmoid(logits) to one-hot (the authors' SGD baseline); snn runs use MSE of the rates")
    g = p.add_argument_group("continual-learning baselines (--methods ewc, ewc-online, si, lwf, replay)")
    g.add_argument("--ewc-lambda", type=real(0.0), default=5e4,
                   help="EWC's lambda (the authors' EWC baseline: 5e4, docs/algorithms.md §1.7)")
    g.add_argument("--ewc-gamma", type=real(0.0, 1.0), default=1.0, help="ewc-online: decay of the summed Fisher")
    g.add_argument("--si-c", type=real(0.0), default=1.0, help="SI's penalty strength c")
    g.add_argument("--si-xi", type=real(0.0, low_open=True), default=1e-3, help="SI's damping xi")
    g.add_argument("--lwf-alpha", type=real(0.0), default=1.0, help="LwF's distillation weight")
    g.add_argument("--lwf-temperature", type=real(0.0, low_open=True), default=2.0, help="LwF's temperature T")
    g.add_argument("--replay-size", type=nonneg_int, default=500,
                   help="replay: capacity of the class-balanced buffer of earlier tasks' training samples")
    p.add_argument("--activation", default="tanh", choices=ACTIVATIONS,
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
    p.add_argument("--sbp-relax-steps", type=nonneg_int, default=0,
                   help="SBP: homeostatic relaxation steps of the hidden state (0: re-run the layer)")
    p.add_argument("--sbp-fraction", type=real(0.0, 1.0), default=0.2,
                   help="SBP lambda_f of the sbp runs (0: no spread; sbp-local runs always use 0)")
    p.add_argument("--sbp-percentage", type=real(0.0, 1.0), default=1.0, help="SBP lambda_p")
    p.add_argument("--snn-current", default="linear", choices=("linear", "sigmoid"),
                   help="--model snn: each layer integrates W x_t + b (linear) or sigmoid(W x_t + b) (the authors' "
                        "class-incremental SNN)")
    p.add_argument("--snn-lens", type=real(0.0), default=0.5,
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
                   help="NACA's input-derived gate (docs/algorithms.md §1.4, class-CL code) on the hidden layers of "
                        "every run but sbp and sbp-local (--model mlp or snn); off by default because at test time "
                        "it sees the test batch's mean input, which can leak the class")
    p.add_argument("--gate-methods", default="",
                   help="comma list: only these methods' runs get the gate (implies --gate), e.g. naca,bp to hold "
                        "gated NACA and BP beside ungated ewc, si (a method both gated and ungated: METHOD+gate "
                        "in --methods)")
    p.add_argument("--gate-delta", type=real(0.0), default=0.2,
                   help="the gate's delta in standard deviations of the training inputs: the authors' inputs are "
                        "standardized (MNIST: Normalize(0.1307, 0.3081)), so their 0.2 is 0.2 std; the raw value "
                        "(delta * std of x_train) is recorded as gate_delta_raw")
    p.add_argument("--gate-eval-batch-size", type=positive_int, default=16,
                   help="batch size of the class-sorted view (gated runs: the test set sorted by class, mostly one "
                        "class per batch, so the gate sees the class) and of the --eval per-class view, each "
                        "reported apart")
    p.add_argument("--eval", default="mixed", choices=("mixed", "per-class"),
                   help="per-class: also evaluate each class's test set on its own in batches of "
                        "--gate-eval-batch-size (the authors' way, docs/algorithms.md §1.7), reported apart from "
                        "the mixed test batches (the main number)")
    p.add_argument("--eval-batch-size", type=positive_int, default=1000,
                   help="test batch size (with --gate the gate sees each test batch)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--out", default="compare_results", help="output folder")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--resume", action="store_true",
                   help="reuse the runs an earlier study saved in OUT/runs/ (each finished (method, seed) run is "
                        "saved there) when its settings match this command's; train only the others. A saved run "
                        "with other settings is an error (use another --out)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    return p


def _changed_flags(p: argparse.ArgumentParser, a: argparse.Namespace, *dests: str) -> list[str]:
    """The flags among dests (argparse dest names) given a value other than their default."""
    return [f"--{k.replace('_', '-')}" for k in dests if getattr(a, k) != p.get_default(k)]


def parse_args(argv=None) -> argparse.Namespace:
    """Read and check the command line; every bad value is a usage error (SystemExit 2) naming its flag.

    Args:
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        The options, defaults resolved: ``methods``, ``seeds``, ``hidden``, ``channels`` as lists,
        ``lr_given`` and ``batch_size_given`` as {method: value}, ``batch_size`` the plain default.
    """
    p = build_parser()
    argv, preset, preset_set = expand(p, sys.argv[1:] if argv is None else list(argv))
    if preset_set:  # a refused value may come from the preset: say which flags it set
        error = p.error
        p.error = lambda msg: error(f"{msg} (--preset {preset} set "
                                    f"{', '.join('--' + k.replace('_', '-') for k in preset_set)}; a flag given "
                                    f"beside it overrides it)")
    a = p.parse_args(argv)
    a.preset_set = preset_set
    a.methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    for m in a.methods:
        if m.endswith(GATE_SUFFIX) and m not in VARIANTS:
            p.error(f"argument --methods: unknown variant {m!r}; {GATE_SUFFIX} (the input gate) applies to "
                    f"{', '.join(GATED_METHODS)}")
    bad = [m for m in a.methods if m not in METHODS and m not in VARIANTS]
    if bad or not a.methods:
        p.error(f"argument --methods: unknown {bad}; choose from {', '.join(METHODS)}, or METHOD{GATE_SUFFIX} "
                f"(e.g. bp{GATE_SUFFIX})")
    if len(set(a.methods)) != len(a.methods):
        p.error(f"argument --methods: each method once, got {','.join(a.methods)}")
    bases = [base_method(m) for m in a.methods]  # what each label trains: the checks below read these
    if "bp-surrogate" in bases and a.model != "snn":
        p.error("argument --methods: bp-surrogate trains a spiking network: use it with --model snn")
    sbp = [m for m in bases if m in SBP_METHODS]
    if sbp and a.model == "conv":
        p.error(f"argument --methods: {','.join(sbp)} needs a one-hidden-layer network: --model mlp or snn")
    if sbp and len(a.hidden) != 1:
        p.error(f"argument --hidden: --methods {','.join(sbp)} needs exactly one hidden layer (--hidden N)")
    if a.model == "conv" and len(a.hidden) != 1:
        p.error(f"argument --hidden: --model conv takes one FC width, got {a.hidden}")
    check_device(p, a.device)
    check_dataset(p, a.dataset)
    check_out(p, a.out)
    ci = a.scenario == "class-incremental"
    if a.epochs is None:
        a.epochs = 10 if ci else 5
    if a.optimizer == "auto":
        a.optimizer = "sgd" if ci else "adam"
    if a.stop_at is None:
        a.stop_at = 0.95 if ci else 0.0
    if a.conv_kernel != 3 and a.model != "conv":
        p.error("argument --conv-kernel: applies to --model conv")
    if a.conv_kernel % 2 == 0:
        p.error(f"argument --conv-kernel: expected an odd size, got {a.conv_kernel}")
    if a.channels != [64, 128] and a.model != "conv":
        p.error("argument --channels: applies to --model conv")
    if a.T != p.get_default("T") and a.model != "snn":
        p.error("argument --T: applies to --model snn")
    if a.standardize and a.model == "snn":
        p.error("argument --standardize: applies to --model mlp and conv (the spiking model's encoder reads "
                "[0, 1] intensities)")
    if a.class_order != "fixed" and not ci:
        p.error("argument --class-order: applies to --scenario class-incremental")
    if a.stop_metric != "running" and a.stop_at == 0:
        p.error("argument --stop-metric: eval needs --stop-at > 0")
    if a.clip_grad_norm > 0 and not any(m not in SBP_METHODS for m in bases):
        p.error("argument --clip-grad-norm: applies to bp, bp-surrogate and naca runs (sbp has no gradient)")
    if a.train_subset is None and a.dataset == "fashion-mnist" and not ci:
        a.train_subset = 20000
    named = a.methods + [b for b in dict.fromkeys(bases) if b not in a.methods]  # bp=... also sets bp+gate's
    _, a.lr_given = per_method(p, "--lr", a.lr, real(0.0), named, allow_default=False)
    default_bs, a.batch_size_given = per_method(p, "--batch-size", a.batch_size, positive_int, named,
                                                allow_default=True)
    a.batch_size = 32 if default_bs is None else int(default_bs)
    cont = [m for m in bases if m in CONTINUAL_METHODS]
    if cont and a.model == "snn":
        p.error(f"argument --methods: {','.join(cont)} train the ANN models (--model mlp or conv); for the "
                f"spiking model use bp-surrogate")
    if "replay" in bases and a.replay_size < 1:
        p.error(f"argument --replay-size: --methods replay needs a buffer of >= 1 sample, got {a.replay_size}")
    for dests, meths in ((("ewc_lambda",), ("ewc", "ewc-online")), (("ewc_gamma",), ("ewc-online",)),
                         (("si_c", "si_xi"), ("si",)), (("lwf_alpha", "lwf_temperature"), ("lwf",)),
                         (("replay_size",), ("replay",))):
        given = _changed_flags(p, a, *dests)
        if given and not any(m in bases for m in meths):
            p.error(f"argument {given[0]}: applies to --methods {' or '.join(meths)}")
    if a.bp_loss != "ce" and (a.model == "snn" or not any(m == "bp" or m in CONTINUAL_METHODS for m in bases)):
        p.error("argument --bp-loss: applies to bp and the continual baselines on --model mlp or conv")
    gm = [m.strip() for m in a.gate_methods.split(",") if m.strip()]
    for m in gm:
        if m not in a.methods:
            p.error(f"argument --gate-methods: {m!r} is not in --methods ({','.join(a.methods)})")
        if base_method(m) not in GATED_METHODS:
            p.error(f"argument --gate-methods: {m} runs cannot take the gate (it gates: {', '.join(GATED_METHODS)})")
    flag = "--gate-methods" if gm else "--gate"
    gated = gm if gm else [m for m in a.methods if base_method(m) in GATED_METHODS] if a.gate else []
    a.gate_methods = gated + [m for m in a.methods if m in VARIANTS and m not in gated]
    a.gate = bool(a.gate_methods)
    for m in a.methods:  # bp gated by the flag beside bp+gate: two labels, the same runs
        if m in VARIANTS and base_method(m) in a.gate_methods:
            p.error(f"argument {flag}: gates {base_method(m)}, which then trains the same runs as {m} beside it; "
                    f"leave {base_method(m)} ungated (e.g. --gate-methods without it)")
    if a.gate and (a.model == "conv" or a.stp):
        p.error("argument --gate: implemented for --model mlp and snn (without --stp)")
    if a.stp and a.model != "snn":
        p.error("argument --stp: applies to --model snn")
    snn_set = _changed_flags(p, a, "snn_current", "snn_lens", "snn_rule")
    if snn_set and a.model != "snn":
        p.error(f"argument {snn_set[0]}: {', '.join(snn_set)} apply to --model snn")
    sbp_set = _changed_flags(p, a, "sbp_rule", "sbp_relax_steps", "sbp_fraction", "sbp_percentage")
    if sbp_set and not sbp:
        p.error(f"argument {sbp_set[0]}: {', '.join(sbp_set)} apply to --methods sbp or sbp-local")
    if "--sbp-fraction" in sbp_set and "sbp" not in a.methods:
        p.error("argument --sbp-fraction: applies to --methods sbp (sbp-local runs always use lambda_f = 0)")
    if a.activation not in NACA_ACTIVATIONS:
        warn_activation(a.activation, a.model, bases)
    return a


def main(argv=None) -> int:
    """Run the study the command line describes, print its table; 0 on success (usage errors exit 2)."""
    args = parse_args(argv)
    args._argv = argv
    try:
        result = run_study(args)
    except UsageError as e:
        build_parser().error(str(e))
    print(result["table"], end="")
    if not args.quiet:
        print(f"wrote {os.path.join(args.out, 'results.json')}, results.md"
              + (", " + ", ".join(result["files"]["plots"]) if result["files"]["plots"] else ""))
    return 0

