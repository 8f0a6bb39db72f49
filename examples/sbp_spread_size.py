"""How much does SBP's spread change the weight update? (examples/results/README.md, section 6)

    python examples/sbp_spread_size.py                          # Fashion-MNIST, ANN and SNN, widths 100 and 1000
    python examples/sbp_spread_size.py --dataset digits --widths 32,128 --models ann

SBP's update (docs/algorithms.md §2.1, ``ops.sbp_update_``) scales the local LTP/LTD of each synapse
by factors 1 + lambda_f N(v)_i, where N(v) = v / sum(v) normalises a per-neuron sum over the
whole layer (the authors' ``sbpnonlinear``): the n factors of a layer add up to n + lambda_f,
so on average each is 1 + lambda_f / n, and only a neuron that holds most of its layer's
change gets a factor near 1 + lambda_f. This script measures, on real batches,
the relative size of what the spread adds:

    || dW(lambda_f) - dW(0) || / || dW(0) ||      for W_in (hidden) and W_out (output),

where dW(lambda_f) is the weight change of one ``learn.SBP`` step from the same weights and
batch, and dW(0) the same step without the spread (the ``sbp-local`` method of the compare
command). Measured at initialisation and after ``--train-batches`` SBP steps (lambda_f 0.2),
averaged over ``--batches`` held batches. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import copy
import sys

import torch

from torch_plugin import data, models
from torch_plugin.learn import SBP


def update(model, x, y, fraction: float, lr: float) -> list[torch.Tensor]:
    """The weight changes (W_in, W_out) of one SBP step on a copy of model."""
    m = copy.deepcopy(model)
    learner = SBP(m, lr=lr, fraction=fraction)
    before = [learner.hidden.weight.detach().clone(), learner.output.weight.detach().clone()]
    learner.step(x, y)
    return [learner.hidden.weight.detach() - before[0], learner.output.weight.detach() - before[1]]


def spread_size(model, batches, fraction: float, lr: float) -> list[float]:
    """Mean over batches of ||dW(fraction) - dW(0)|| / ||dW(0)||, for (W_in, W_out)."""
    sums = [0.0, 0.0]
    for x, y in batches:
        with_spread, without = update(model, x, y, fraction, lr), update(model, x, y, 0.0, lr)
        for k in range(2):
            sums[k] += float((with_spread[k] - without[k]).norm() / without[k].norm().clamp_min(1e-30))
    return [s / len(batches) for s in sums]


def build(kind: str, d: int, width: int, n: int, T: int, seed: int):
    if kind == "ann":
        return models.sbp_ann(d, width, n, seed=seed), 3.0
    return models.spiking_mlp(d, [width], n, T=T, seed=seed), 2.0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist | digits | IDX folder | .npz")
    p.add_argument("--models", default="ann,snn", help="comma list of ann (models.sbp_ann), snn (models.spiking_mlp)")
    p.add_argument("--widths", default="100,1000", help="hidden widths, comma list")
    p.add_argument("--fractions", default="0.2,1.0", help="lambda_f values, comma list (the papers: 0.1 to 1)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=8, help="held batches the measure is averaged over")
    p.add_argument("--train-batches", type=int, default=300, help="SBP steps (lambda_f 0.2) between the two stages")
    p.add_argument("--T", type=int, default=20, help="snn time steps")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    if not kinds or any(k not in ("ann", "snn") for k in kinds):
        p.error(f"--models: choose from ann, snn (got {args.models!r})")
    widths = [int(w) for w in args.widths.split(",")]
    fractions = [float(f) for f in args.fractions.split(",")]
    if any(w < 1 for w in widths) or any(f <= 0 for f in fractions) or args.batches < 1 or args.train_batches < 0:
        p.error("--widths must be >= 1, --fractions > 0, --batches >= 1, --train-batches >= 0")
    try:
        ds = data.load_dataset(args.dataset)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x, y = ds.x_train.flatten(1), ds.y_train
    stream = data.batches(x, y, args.batch_size, generator=gen)
    held = [next(stream) for _ in range(args.batches)]

    print(f"{args.dataset}: ||dW(lambda_f) - dW(0)|| / ||dW(0)|| of one SBP step, mean over {args.batches} "
          f"batches of {args.batch_size}; 'trained': after {args.train_batches} SBP steps (lambda_f 0.2)\n")
    print("| model | hidden | stage | lambda_f | W_in | W_out |")
    print("|---|---|---|---|---|---|")
    for kind in kinds:
        for width in widths:
            model, lr = build(kind, ds.in_features, width, ds.num_classes, args.T, args.seed)
            name = "ANN (sigmoid)" if kind == "ann" else f"SNN (LIF, T={args.T})"
            for stage in ("init", "trained"):
                if stage == "trained":
                    learner = SBP(model, lr=lr, fraction=0.2)
                    for _ in range(args.train_batches):
                        try:
                            xb, yb = next(stream)
                        except StopIteration:
                            stream = data.batches(x, y, args.batch_size, generator=gen)
                            xb, yb = next(stream)
                        learner.step(xb, yb)
                for f in fractions:
                    w_in, w_out = spread_size(model, held, f, lr)
                    print(f"| {name} | {width} | {stage} | {f:g} | {w_in:.2e} | {w_out:.2e} |", flush=True)


if __name__ == "__main__":
    main()
