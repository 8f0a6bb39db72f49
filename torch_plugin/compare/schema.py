"""The study's constants: methods, models, default learning rates, and the results.json schema."""
from __future__ import annotations

METHODS = ("bp", "naca", "sbp", "sbp-local", "bp-surrogate", "ewc", "ewc-online", "si", "lwf", "replay")
# ewc .. replay: backprop with a continual-learning penalty or buffer (continual.py); the ANN models only.
CONTINUAL_METHODS = ("ewc", "ewc-online", "si", "lwf", "replay")
# sbp-local: SBP's local rule alone, without the self-backpropagated and lateral spread
# (lambda_f = 0): the papers' "without SBP" control (docs/algorithms.md §2.3).
SBP_METHODS = ("sbp", "sbp-local")
GATED_METHODS = ("naca", "bp", "bp-surrogate") + CONTINUAL_METHODS  # can take the input gate (not sbp, sbp-local)
MODELS = ("mlp", "conv", "snn")
# --methods bp+gate: bp with the input gate, a method of its own beside ungated bp in one study (its label in
# results.md, results.json, the plots and runs/bp+gate_seed<seed>.json); any gate-capable method takes it.
GATE_SUFFIX = "+gate"
VARIANTS = tuple(m + GATE_SUFFIX for m in GATED_METHODS)


def base_method(label: str) -> str:
    """The method a --methods label trains: 'bp+gate' -> 'bp'; a plain method is its own base."""
    return label[:-len(GATE_SUFFIX)] if label in VARIANTS else label

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
    "config": "dict, every option after defaults were resolved (lr and batch_size per method in 'lr', 'batch_size')",
    "dataset": "dict: name, train_samples, test_samples, num_classes, sample_shape, test_order (stored, or shuffled "
               "with --gate when the stored test set is sorted by class)",
    "environment": "dict: torch, python, platform, device, threads, started (ISO time)",
    "runs": "list of run dicts, one per (method, seed), see RUN_SCHEMA",
    "summary": "dict method -> metric -> {mean, std, se, n} over seeds (std: sample std, 0 for one seed; se: "
               "std / sqrt(n)); epochs-to-criterion metrics also {censored, unreached, max_epochs}",
    "files": "dict: table (results.md), plots (list of PNG names), runs (runs/<method>_seed<seed>.json)",
    "resumed_runs": "list of '<method>_seed<seed>' runs read back from runs/ (--resume) instead of trained",
}
RUN_SCHEMA = {
    "method": "the --methods label: one of METHODS, or METHOD+gate (VARIANTS: that method with the input gate)",
    "base_method": "one of METHODS, the method the label trains", "seed": "int", "model": "str, e.g. mlp 784-1000-10",
    "optimizer": "sgd | adam | sbp", "lr": "float", "batch_size": "int, the training batch size", "parameters": "int, trainable parameters",
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
    "epochs_to_criterion_authors": "standard scenario: {value, thresholds, rule}: the authors' rule (docs/algorithms.md "
                                   "§1.7), thresholds from the best mean error of any method to 5 %, the last epoch "
                                   "still above each, averaged; absent in class-incremental",
    "per_class_eval": "null, or (--eval per-class) the model evaluated on each class's test set on its own in "
                      "batches of --gate-eval-batch-size, the same fields as gate_by_class_eval",
    "multiplies_per_sample": "{formula: int|null (papers' formula, one-hidden-layer MLP only), "
                             "formula_text, measured: float|null (FlopCounterMode MACs per sample of one step)}",
    "seconds_per_epoch": "float, mean training wall time of an epoch (evaluation and the MAC count, done on a twin "
                         "model before training, excluded)",
    "samples_per_s": "float, training samples per second",
    "peak_memory": "{cpu_rss_bytes: int, cuda_bytes: int|null}",
    "weight_change": "metrics.weight_change_stats of the last hidden layer's weight over all training, plus 'layer'",
    "gate": "bool, the input gate on (a METHOD+gate label, or --gate / --gate-methods)",
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
                         "forgetting_per_class (docs/algorithms.md §3: per class, best earlier minus final, averaged "
                         "over the classes not learned in the last task; the table's main forgetting), bwt}",
}

