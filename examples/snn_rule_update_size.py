"""How large is each spiking NACA rule's weight update? (examples/results/README.md, the SNN ablation)

    python examples/snn_rule_update_size.py                     # Fashion-MNIST, the authors' SNN (784-1000-10)
    python examples/snn_rule_update_size.py --dataset digits --hidden 64 --train-batches 20

The ablation of the class-incremental SNN found that the rules differ most in the output
layer's update. This script measures it. From the same weights and the same forward pass
(one class-sorted batch, as in class-incremental training), it applies each rule's update of
one layer to a copy of its weights and reports the Frobenius norm of the change:

- ``chain``: ``naca_snn_chain_update_`` (the authors' class-incremental rule: the signal enters
  the last step and is carried back through the membrane),
- ``all steps``: ``naca_snn_update_(all_steps=True)`` (the eligibility of every step, summed),
- ``last step``: ``naca_snn_update_(all_steps=False)`` (t = T only),

for the hidden layer (signal f(E[y] NI)) and the output layer (signal rate - onehot(y)), at
initialisation and after ``--train-batches`` chain-rule steps on the first ``--tasks`` classes
in turn (class-sorted batches, as in the study). Each norm is averaged over ``--batches`` held
batches: of class 0 at initialisation, then of the last trained class ('trained') and of the
next, unseen class ('next class': the first batches of a new task). Ratios are to the
last-step update ('-' where that is zero: no neuron of the layer is in its eligibility window
at the last step). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import copy
import sys

import torch

from torch_plugin import data, learn, models, ops
from torch_plugin.learn.common import recording

RULES = ("chain", "all steps", "last step")


def rule_changes(model, learner, x, y) -> dict[tuple[str, str], float]:
    """{(layer, rule): ||dW||} of one step's update of each layer under each rule (same forward)."""
    m = copy.deepcopy(model)
    hidden, output = m[1], m[2]
    with torch.no_grad(), recording([hidden, output]):
        m(x)
        saved = {"hidden": hidden.saved, "output": output.saved}
    signals = {
        "hidden": ops.modulation(ops.neuromodulator(y, hidden.ni), learner.lam, learner.theta),
        "output": saved["output"][2].mean(0) - torch.nn.functional.one_hot(y, output.num_classes).to(x.dtype),
    }
    out = {}
    for name, layer in (("hidden", hidden), ("output", output)):
        pre, volts, spikes = saved[name]
        for rule in RULES:
            w = layer.weight.detach().clone()
            if rule == "chain":
                ops.naca_snn_chain_update_(w, None, pre, volts, spikes, signals[name], layer.lif.decay,
                                           layer.lif.threshold, layer.lens, layer.lif.reset, layer.current,
                                           learner.lr)
            else:
                ops.naca_snn_update_(w, None, pre, volts, spikes, signals[name], layer.threshold, layer.lens,
                                     learner.lr, rule == "all steps")
            out[(name, rule)] = float((w - layer.weight.detach()).norm())
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist | digits | IDX folder | .npz")
    p.add_argument("--hidden", type=int, default=1000)
    p.add_argument("--T", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3, help="the compare command's NACA default")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=8, help="held batches the norms are averaged over")
    p.add_argument("--train-batches", type=int, default=100, help="chain-rule steps per class before 'trained'")
    p.add_argument("--tasks", type=int, default=3, help="classes trained in turn before 'trained'")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.hidden, args.T, args.batch_size, args.batches, args.tasks) < 1 or args.train_batches < 0:
        p.error("--hidden, --T, --batch-size, --batches, --tasks must be >= 1, --train-batches >= 0")
    try:
        ds = data.load_dataset(args.dataset)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    if args.tasks >= ds.num_classes:
        p.error(f"--tasks must be below the number of classes ({ds.num_classes}): one class is kept unseen")
    torch.manual_seed(args.seed)
    x_all, y_all = ds.x_train.flatten(1), ds.y_train
    # The authors' class-incremental network: sigmoid current, lens 0.2, the chain rule.
    model = models.spiking_mlp(ds.in_features, [args.hidden], ds.num_classes, T=args.T, seed=args.seed,
                               current="sigmoid", lens=0.2)
    learner = learn.NACA(model, lr=args.lr, membrane_chain=True)
    gen = torch.Generator().manual_seed(args.seed)

    def class_batches(c):
        idx = (y_all == c).nonzero().flatten()
        while True:
            perm = idx[torch.randperm(len(idx), generator=gen)]
            for k in range(0, len(perm) - args.batch_size + 1, args.batch_size):
                yield x_all[perm[k:k + args.batch_size]], y_all[perm[k:k + args.batch_size]]

    print(f"{args.dataset}, spiking MLP {ds.in_features}-{args.hidden}-{ds.num_classes}, T={args.T}, sigmoid "
          f"current, lens 0.2, lr {args.lr:g}: ||dW|| of one update from the same weights and forward pass, "
          f"mean over {args.batches} class-sorted batches of {args.batch_size}; 'trained': after "
          f"{args.train_batches} chain-rule steps on each of classes 0..{args.tasks - 1}, measured on class "
          f"{args.tasks - 1}; 'next class': the same weights, on class {args.tasks}\n")
    print("| stage | layer | chain | all steps | last step | chain / last | all steps / last |")
    print("|---|---|---|---|---|---|---|")
    for stage, c in (("init", 0), ("trained", args.tasks - 1), ("next class", args.tasks)):
        if stage == "trained":
            for k in range(args.tasks):
                stream = class_batches(k)
                for _ in range(args.train_batches):
                    learner.step(*next(stream))
        stream = class_batches(c)
        held = [next(stream) for _ in range(args.batches)]
        sums: dict[tuple[str, str], float] = {}
        for xb, yb in held:
            for k, v in rule_changes(model, learner, xb, yb).items():
                sums[k] = sums.get(k, 0.0) + v / len(held)
        for layer in ("hidden", "output"):
            n = {r: sums[(layer, r)] for r in RULES}
            last = n["last step"]
            ratios = [f"{n[r] / last:.2f}" if last > 0 else "-" for r in ("chain", "all steps")]
            print(f"| {stage} | {layer} | {n['chain']:.3e} | {n['all steps']:.3e} | {last:.3e} | "
                  f"{ratios[0]} | {ratios[1]} |", flush=True)


if __name__ == "__main__":
    main()
