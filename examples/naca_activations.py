"""Which hidden activations the NACA rule can train, measured on the sklearn digits.

Part 1 (``--part 1``): a 64-100-10 MLP (``models.mlp``) trained by ``learn.NACA`` for each
hidden activation, at several in-place SGD learning rates and with Adam, 3 seeds: the test
accuracy, and per step (seed 0, in-place SGD at the compare default lr 2 / in_features) the
size of the hidden activity (RMS and max |h|), the share of hidden units whose act'(z) is
below 1 % of its maximum (saturated tanh/sigmoid, silent relu), the Frobenius norm of each
layer's weight change, the RMS of the logits and the share of saturated output sigmoids
(sigmoid(z) < 0.01 or > 0.99, where the output rule's e * sigmoid'(z) vanishes).

Part 2 (``--part 2``): stacks of 1 to 4 hidden layers of 100 units, all tanh, all sigmoid or
alternating, by in-place SGD and by Adam, 3 seeds: the test accuracy after each epoch and,
at the end, each hidden layer's share of saturated units and its weight change over the
last epoch relative to its weight norm.

    python examples/naca_activations.py > examples/results/naca_activations.txt

(about 20 minutes on one core; docs/activations.md reads the numbers).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys

import torch
import torch.nn.functional as F
from torch import nn

from torch_plugin import data, learn, ops
from torch_plugin.nn import NACALinear, NACAOutput

EPOCHS = 10
BATCH = 32
SEEDS = (0, 1, 2)
SGD_LRS = (0.003, 0.01, 2 / 64, 0.1)  # 2 / in_features = 0.031 is compare's NACA default on digits
ADAM_LRS = (1e-4, 1e-3, 1e-2)
MAX_DEPTH = 4
TRACE_STEPS = (1, 5, 20, 45, 90, 180, 450)  # 45 steps per epoch


def digits():
    xtr, ytr, xte, yte = data.load_digits()
    return xtr.flatten(1), ytr, xte.flatten(1), yte


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).double().mean().item()


def silent_share(activation: str, h: torch.Tensor) -> float:
    """Share of units whose act'(z) is below 1 % of its maximum (no plasticity left)."""
    if activation == "clipped":
        grad = ((h > 0) & (h < 1)).to(h.dtype)
    elif activation == "tanh":
        grad = 1 - h * h
    elif activation == "sigmoid":
        grad = 4 * h * (1 - h)
    elif activation == "relu":
        grad = (h > 0).to(h.dtype)
    else:
        return 0.0
    return (grad < 0.01).double().mean().item()


def stack(widths, acts, seed, sigmoid_grad: bool = True) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    width = 64
    for i, (h, a) in enumerate(zip(widths, acts)):
        layers.append(NACALinear(width, h, 10, activation=a, seed=seed + i))
        width = h
    layers.append(NACAOutput(width, 10, sigmoid_grad=sigmoid_grad))
    return nn.Sequential(*layers)


class ClippedReluNACA:
    """The NACA rule on a hidden layer h = clamp(z, 0, 1) (a relu bounded at 1), which the ops
    do not offer as an activation: act' = 1[0 < h < 1] is the relu's 1[h > 0] (plasticity_update_,
    from_output=True) times 1[h < 1] folded into the signal f(NL). Model: clipped_relu_mlp."""

    def __init__(self, model, lr: float, optimizer=None):
        self.model, self.lr, self.optimizer = model, lr, optimizer
        self.hidden, self.output = model[1], model[3]

    def step(self, x, y):
        hid, out, opt = self.hidden, self.output, self.optimizer
        if opt is not None:
            opt.zero_grad(set_to_none=False)
        with torch.no_grad():
            x = x.flatten(1)
            h = F.linear(x, hid.weight, hid.bias).clamp_(0, 1)
            logits = F.linear(h, out.weight, out.bias)
            signal = ops.modulation(ops.neuromodulator(y, hid.ni)) * (h < 1).to(h.dtype)
            lr = -1.0 if opt is not None else self.lr  # -1: add the update to .grad
            tw = (lambda p: p.grad) if opt is not None else (lambda p: p)
            ops.plasticity_update_(tw(hid.weight), tw(hid.bias), x, h, signal, "relu", lr, from_output=True)
            ops.naca_output_update_(tw(out.weight), tw(out.bias), h, logits, y, lr, out.sigmoid_grad)
        if opt is not None:
            opt.step()
        return logits


def clipped_relu_mlp(seed) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), NACALinear(64, 100, 10, activation="identity", seed=seed),
                          nn.Hardtanh(0.0, 1.0), NACAOutput(100, 10))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    return model


def kind(model) -> str:
    """The hidden activation of a one-hidden-layer model ('clipped' for clipped_relu_mlp)."""
    return "clipped" if isinstance(model[2], nn.Hardtanh) else model[1].activation


def learner_for(model, opt: str, lr: float):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr) if opt == "adam" else None
    if isinstance(model[2], nn.Hardtanh):
        return ClippedReluNACA(model, lr, optimizer)
    return learn.NACA(model, optimizer=optimizer) if optimizer is not None else learn.NACA(model, lr=lr)


def train(model, opt, lr, seed, ds, trace=None, per_epoch=None, last_epoch_start=None):
    """Train for EPOCHS epochs; returns the test accuracy. trace: per-step diagnostics at TRACE_STEPS;
    per_epoch: test accuracy after each epoch; last_epoch_start: the hidden weights before the last epoch."""
    xtr, ytr, xte, yte = ds
    learner = learner_for(model, opt, lr)
    hidden = [m for m in model if isinstance(m, NACALinear)]
    out = [m for m in model if isinstance(m, NACAOutput)][0]
    step = 0
    g = torch.Generator().manual_seed(seed)
    for epoch in range(EPOCHS):
        if last_epoch_start is not None and epoch == EPOCHS - 1:
            last_epoch_start.extend(m.weight.detach().clone() for m in hidden)
        for xb, yb in data.batches(xtr, ytr, BATCH, generator=g):
            before = [m.weight.detach().clone() for m in hidden + [out]] if trace is not None else None
            logits = learner.step(xb, yb)
            step += 1
            if trace is not None and step in TRACE_STEPS:
                with torch.no_grad():
                    model.eval()
                    h = model[:-1](xb)  # one hidden layer: everything before the output layer
                    model.train()
                    sig = torch.sigmoid(logits)
                    d = [(m.weight - b).norm().item() for m, b in zip(hidden + [out], before)]
                    trace.append(dict(step=step, h_rms=h.pow(2).mean().sqrt().item(), h_max=h.abs().max().item(),
                                      silent=silent_share(kind(model), h), dw_hidden=d[0], dw_out=d[-1],
                                      w_hidden=hidden[0].weight.norm().item(),
                                      logit_rms=logits.pow(2).mean().sqrt().item(),
                                      out_saturated=((sig < 0.01) | (sig > 0.99)).double().mean().item()))
        if per_epoch is not None:
            per_epoch.append(accuracy(model, xte, yte))
    return accuracy(model, xte, yte)


def hidden_codes(model, x) -> list[torch.Tensor]:
    """Each hidden layer's output on x."""
    codes = []
    with torch.no_grad():
        model.eval()
        for m in model:
            x = m(x)
            if isinstance(m, NACALinear):
                codes.append(x)
    return codes


def class_mean_accuracy(train_code, ytr, test_code, yte) -> float:
    """Nearest class mean (of the training codes) on the test codes: how much of the class a layer's
    output still tells, whatever the layers above do with it."""
    means = torch.stack([train_code[ytr == c].mean(0) for c in range(10)])
    return (torch.cdist(test_code, means).argmin(1) == yte).double().mean().item()


def layer_diagnostics(model, ds, start) -> str:
    """Per hidden layer: silent share and nearest-class-mean accuracy on the test set, and the
    weight change since `start` relative to the weight norm."""
    xtr, ytr, xte, yte = ds
    hidden = [m for m in model if isinstance(m, NACALinear)]
    test, train_ = hidden_codes(model, xte), hidden_codes(model, xtr)
    shares = [silent_share(m.activation, h) for m, h in zip(hidden, test)]
    ncm = [class_mean_accuracy(a, ytr, b, yte) for a, b in zip(train_, test)]
    rel = [(m.weight - w).norm().item() / max(m.weight.norm().item(), 1e-30) for m, w in zip(hidden, start)]
    return " | ".join(" / ".join(f) for f in ([f"{v:.2f}" for v in shares], [f"{v:.2f}" for v in ncm],
                                               [fmt(v) for v in rel]))


def mean_sd(v) -> str:
    return f"{statistics.mean(v):.3f}" + (f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else "")


def fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


def part1(ds):
    print(f"## Part 1: one hidden layer of 100 units, {EPOCHS} epochs, batch {BATCH}, test accuracy "
          f"(mean ± sd over seeds {SEEDS})\n")
    acts = ("tanh", "sigmoid", "relu", "identity")
    variants = {a: (lambda s, a=a: stack([100], [a], s)) for a in acts}
    variants["relu, sigmoid_grad=False"] = lambda s: stack([100], ["relu"], s, sigmoid_grad=False)
    variants["relu clipped to [0, 1]"] = clipped_relu_mlp
    configs = [("sgd", lr) for lr in SGD_LRS] + [("adam", lr) for lr in ADAM_LRS]
    print("| optimizer, lr | " + " | ".join(variants) + " |")
    print("|---|" + "---|" * len(variants))
    for opt, lr in configs:
        cells = []
        for make in variants.values():
            accs = [train(make(s), opt, lr, s, ds) for s in SEEDS]
            cells.append(mean_sd(accs))
        print(f"| {opt} {lr:.3g} | " + " | ".join(cells) + " |")
    print("\n('relu clipped to [0, 1]': h = clamp(z, 0, 1) with act' = 1[0 < h < 1], the same rule through "
          "ops.plasticity_update_; the ops have no such activation, see ClippedReluNACA.)")
    print("\nPer step, seed 0, in-place SGD lr 2/64 = 0.031 (h: hidden activity of the step's batch after the "
          "step; silent: share of hidden units with act' < 1 % of its maximum; dW: Frobenius norm of the step's "
          "weight change; out sat.: share of output sigmoids < 0.01 or > 0.99)\n")
    traced = [(act, make, "sgd", 2 / 64) for act, make in variants.items()] + [("relu", variants["relu"], "adam", 1e-3)]
    for act, make, opt, lr in traced:
        trace: list[dict] = []
        acc = train(make(0), opt, lr, 0, ds, trace=trace)
        print(f"{act}, {opt} lr {lr:.3g} (final test accuracy {acc:.3f}):\n")
        print("| step | RMS h | max abs h | silent | dW hidden | dW out | norm W hidden | RMS logits | out sat. |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in trace:
            print(f"| {r['step']} | {fmt(r['h_rms'])} | {fmt(r['h_max'])} | {r['silent']:.2f} | "
                  f"{fmt(r['dw_hidden'])} | {fmt(r['dw_out'])} | {fmt(r['w_hidden'])} | {fmt(r['logit_rms'])} | "
                  f"{r['out_saturated']:.2f} |")
        print()


def part1_long(ds, epochs: int = 100):
    """relu with Adam 1e-3, the one setting of part 1 where it learns, trained longer."""
    shown = [e for e in (1, 5, 10, 20, 30, 50, 100) if e <= epochs]
    print(f"relu and tanh, Adam 1e-3, {epochs} epochs, mean over seeds {SEEDS}: test accuracy and the RMS of "
          f"the hidden activity on the test set after epochs {shown}\n")
    print("| activation | " + " | ".join(f"epoch {e}" for e in shown) + " |")
    print("|---|" + "---|" * len(shown))
    xtr, ytr, xte, yte = ds
    for act in ("relu", "tanh"):
        acc = {e: [] for e in shown}
        rms = {e: [] for e in shown}
        for s in SEEDS:
            model = stack([100], [act], s)
            learner = learner_for(model, "adam", 1e-3)
            g = torch.Generator().manual_seed(s)
            for epoch in range(1, epochs + 1):
                for xb, yb in data.batches(xtr, ytr, BATCH, generator=g):
                    learner.step(xb, yb)
                if epoch in acc:
                    acc[epoch].append(accuracy(model, xte, yte))
                    rms[epoch].append(hidden_codes(model, xte)[0].pow(2).mean().sqrt().item())
        print(f"| {act} | " + " | ".join(f"{statistics.mean(acc[e]):.3f} (RMS h {fmt(statistics.mean(rms[e]))})"
                                         for e in shown) + " |")
    print()


def part2_timeline(ds, steps=(1, 2, 5, 10, 45, 90, 225, 450)):
    """A 4-layer tanh stack, seed 0, at the two in-place SGD lrs: per layer, the silent share and the
    nearest-class-mean accuracy of its code on the test set after each of `steps`."""
    xtr, ytr, xte, yte = ds
    print("Timeline of a 4-layer tanh stack (seed 0, in-place SGD): after each step, per layer, silent share and "
          "class-mean accuracy of the layer's code on the test set; last column: the model's test accuracy\n")
    for lr in (0.01, 2 / 64):
        print(f"lr {lr:.3g}:\n")
        print("| step | silent share per layer | class-mean acc. per layer | test acc. |")
        print("|---|---|---|---|")
        model = stack([100] * 4, ["tanh"] * 4, 0)
        learner = learner_for(model, "sgd", lr)
        hidden = [m for m in model if isinstance(m, NACALinear)]
        g = torch.Generator().manual_seed(0)
        step = 0
        while step < max(steps):
            for xb, yb in data.batches(xtr, ytr, BATCH, generator=g):
                learner.step(xb, yb)
                step += 1
                if step in steps:
                    test, train_ = hidden_codes(model, xte), hidden_codes(model, xtr)
                    shares = [silent_share(m.activation, h) for m, h in zip(hidden, test)]
                    ncm = [class_mean_accuracy(a, ytr, b, yte) for a, b in zip(train_, test)]
                    print(f"| {step} | " + " / ".join(f"{v:.2f}" for v in shares) + " | "
                          + " / ".join(f"{v:.2f}" for v in ncm) + f" | {accuracy(model, xte, yte):.3f} |")
                if step >= max(steps):
                    break
        print()


def part2(ds):
    print(f"## Part 2: depth, 100 units per hidden layer, {EPOCHS} epochs, batch {BATCH}, seeds {SEEDS}\n")
    kinds = {"tanh": ("tanh",), "sigmoid": ("sigmoid",), "tanh/sigmoid": ("tanh", "sigmoid"),
             "sigmoid/tanh": ("sigmoid", "tanh")}
    print("Per layer, seed 0, after the last epoch, on the test set: silent share (as in part 1), the accuracy of "
          "the nearest class mean of the layer's training outputs (how much of the class the layer's code still "
          "holds), and the weight change over the last epoch relative to the weight norm.\n")
    for opt, lr in (("sgd", 0.01), ("sgd", 2 / 64), ("adam", 1e-3), ("adam", 1e-2)):
        print(f"### {opt} lr {lr:.3g}\n")
        shown = ", ".join(str(e + 1) for e in sorted({0, 1, 4, EPOCHS - 1}) if e < EPOCHS)
        print(f"| stack | depth | test acc. (mean ± sd) | acc. after epochs {shown} (mean) | "
              "silent share per layer | class-mean acc. per layer | last-epoch change / norm per layer |")
        print("|---|---|---|---|---|---|---|")
        for name, cycle in kinds.items():
            for depth in range(1, MAX_DEPTH + 1):
                acts = [cycle[i % len(cycle)] for i in range(depth)]
                finals, curves = [], []
                diag = ""
                for s in SEEDS:
                    model = stack([100] * depth, acts, s)
                    curve: list[float] = []
                    start: list[torch.Tensor] = []
                    finals.append(train(model, opt, lr, s, ds, per_epoch=curve, last_epoch_start=start))
                    curves.append(curve)
                    if s == SEEDS[0]:
                        diag = layer_diagnostics(model, ds, start)
                mean_curve = [statistics.mean(c[e] for c in curves) for e in sorted({0, 1, 4, EPOCHS - 1})
                              if e < EPOCHS]
                print(f"| {name} | {depth} | {mean_sd(finals)} | "
                      + ", ".join(f"{v:.3f}" for v in mean_curve) + f" | {diag} |")
        print()


def main():
    global EPOCHS, SEEDS, MAX_DEPTH
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", type=int, choices=(0, 1, 2), default=0, help="1, 2 or 0 (both)")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma list")
    p.add_argument("--max-depth", type=int, default=4, help="part 2: deepest stack")
    a = p.parse_args()
    EPOCHS, SEEDS, MAX_DEPTH = a.epochs, tuple(int(v) for v in a.seeds.split(",")), a.max_depth
    torch.set_num_threads(1)
    ds = digits()
    print(f"# NACA hidden activations on the sklearn digits ({len(ds[0])} train / {len(ds[2])} test), "
          f"torch {torch.__version__}, 1 thread\n")
    print("Command: python examples/naca_activations.py " + " ".join(sys.argv[1:]) + "\n")
    if a.part in (0, 1):
        part1(ds)
        part1_long(ds, 10 * a.epochs)
    if a.part in (0, 2):
        part2(ds)
        part2_timeline(ds)


if __name__ == "__main__":
    main()
