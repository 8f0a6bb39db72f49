"""Train the same MLP (784-1000-10, tanh) on Fashion-MNIST with NACA and with backprop
and print their test accuracies side by side.

    python examples/mlp_naca_vs_bp.py                 # ~1-3 minutes on 2 CPU cores (20000 training samples)
    python examples/mlp_naca_vs_bp.py --train 60000 --epochs 5 --device cuda

NACA: learn.NACA, one forward and local updates, no backward(); in-place SGD with the
batch-summed update, lr 2/784. BP: the same nn.Module trained by autograd, cross-entropy,
SGD lr 0.1. Data: Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from torch_plugin import data, learn, metrics, models


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=20000, help="training samples (stratified subset; max 60000)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--hidden", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--naca-lr", type=float, default=2.0 / 784)
    p.add_argument("--bp-lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    try:
        ds = data.load_dataset("fashion-mnist", train_subset=args.train)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    xtr, ytr = ds.x_train.to(args.device), ds.y_train.to(args.device)
    xte, yte = ds.x_test.to(args.device), ds.y_test
    print(f"Fashion-MNIST: {len(xtr)} train / {len(xte)} test; MLP 784-{args.hidden}-10 (tanh), "
          f"{args.epochs} epochs, batch {args.batch}, device {args.device}")
    results = {}
    for name in ("NACA", "BP"):
        torch.manual_seed(args.seed)
        model = models.mlp(784, [args.hidden], 10, seed=args.seed).to(args.device)
        if name == "NACA":
            step = learn.NACA(model, lr=args.naca_lr).step
        else:
            opt = torch.optim.SGD(model.parameters(), lr=args.bp_lr)

            def step(x, y):
                model.train()
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        gen = torch.Generator().manual_seed(args.seed)
        start = time.perf_counter()
        for epoch in range(args.epochs):
            for x, y in data.batches(xtr, ytr, args.batch, generator=gen):
                step(x, y)
            acc = metrics.accuracy(metrics.predict(model, xte), yte)
            print(f"  {name} epoch {epoch + 1}: test accuracy {acc:.4f}", flush=True)
        results[name] = (acc, time.perf_counter() - start)
    print("\nmethod  test accuracy  time (s, incl. evaluation)")
    for name, (acc, secs) in results.items():
        print(f"{name:<7} {acc:>13.4f}  {secs:>8.1f}")


if __name__ == "__main__":
    main()
