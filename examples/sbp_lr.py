"""SBP's step size: test accuracy of ``learn.SBP`` at several ``lr`` on the built-in datasets,
the measurements behind the learner's default.

ANN: ``models.sbp_ann`` (sigmoid hidden layer); SNN: ``models.sbp_snn`` (T = 20). Digits:
64-200-10, 5 epochs; Fashion-MNIST: 784-1000-10 on a stratified 10000-sample training subset,
2 epochs, 2000 test samples. Batch 32, every other argument at its default, seeds 0-2. Per lr:
the final test accuracy (mean ± sd over seeds) and, for how steady it is, the lowest test
accuracy of the last three epochs (of both on Fashion-MNIST; mean over seeds).

    python examples/sbp_lr.py > examples/results/sbp_lr.txt
    python examples/sbp_lr.py --datasets digits --models ann --lrs 1,3 --seeds 0   # a quick look

(about 25 minutes on one core; Fashion-MNIST is skipped when its files are not installed).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from torch_plugin import data, learn, models

SETTINGS = {  # dataset -> (hidden width, epochs, train subset, test subset)
    "digits": (200, 5, None, None),
    "fashion-mnist": (1000, 2, 10000, 2000),
}


def run(dataset, kind, lr, seed, ds, hidden, epochs):
    torch.manual_seed(seed)
    n_in = ds.x_train[0].numel()
    model = (models.sbp_ann(n_in, hidden, ds.num_classes, seed=seed) if kind == "ann"
             else models.sbp_snn(n_in, hidden, ds.num_classes, T=20, seed=seed))
    learner = learn.SBP(model, lr=lr)
    g = torch.Generator().manual_seed(seed)
    accs = []
    for _ in range(epochs):
        for xb, yb in data.batches(ds.x_train, ds.y_train, 32, generator=g):
            learner.step(xb, yb)
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(ds.x_test[i:i + 1000]).argmax(1) for i in range(0, len(ds.x_test), 1000)])
        accs.append((pred == ds.y_test).double().mean().item())
    return accs


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="digits,fashion-mnist")
    p.add_argument("--models", default="ann,snn")
    p.add_argument("--lrs", default="0.3,1,2,3,5,10,20")
    p.add_argument("--seeds", default="0,1,2")
    a = p.parse_args()
    torch.set_num_threads(1)
    lrs = [float(v) for v in a.lrs.split(",")]
    seeds = [int(v) for v in a.seeds.split(",")]
    print(f"# learn.SBP lr on the built-in datasets, torch {torch.__version__}, 1 thread\n")
    print("Command: python examples/sbp_lr.py " + " ".join(sys.argv[1:]) + "\n")
    for name in a.datasets.split(","):
        hidden, epochs, n_train, n_test = SETTINGS[name]
        if name == "fashion-mnist" and not os.path.isdir(data.FASHION_MNIST_DIR):
            print(f"({name}: not installed, skipped)\n")
            continue
        ds = data.load_dataset(name, train_subset=n_train, test_subset=n_test, seed=0)
        for kind in a.models.split(","):
            print(f"## {name}, {kind.upper()} {ds.x_train[0].numel()}-{hidden}-{ds.num_classes}, {epochs} epochs, "
                  f"{len(ds.x_train)} train / {len(ds.x_test)} test, seeds {seeds}\n")
            print(f"| lr | final test acc. (mean ± sd) | lowest of the last {min(3, epochs)} epochs (mean) | per seed "
                  f"| s/run |")
            print("|---|---|---|---|---|")
            for lr in lrs:
                t0 = time.perf_counter()
                curves = [run(name, kind, lr, s, ds, hidden, epochs) for s in seeds]
                dt = (time.perf_counter() - t0) / len(seeds)
                final = [c[-1] for c in curves]
                low = [min(c[-3:]) for c in curves]
                sd = f" ± {statistics.stdev(final):.3f}" if len(final) > 1 else ""
                print(f"| {lr:g} | {statistics.mean(final):.3f}{sd} | {statistics.mean(low):.3f} | "
                      + ", ".join(f"{v:.3f}" for v in final) + f" | {dt:.1f} |", flush=True)
            print()


if __name__ == "__main__":
    main()
