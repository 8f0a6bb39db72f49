"""Train the same spiking MLP on Fashion-MNIST three ways and print test accuracy:
NACA (learn.NACA, neuromodulated eligibility, no backward), SBP (learn.SBP, one
hidden layer) and backprop through time with surrogate spike gradients.

    python examples/snn_fashion_mnist.py                      # a few minutes on 2 CPU cores
    python examples/snn_fashion_mnist.py --train 60000 --test 10000 --epochs 5 --device cuda

Data: the IDX .gz files of Fashion-MNIST in --data (default
/usr/share/datasets/fashion-mnist): train-images-idx3-ubyte.gz,
train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz.
"""
from __future__ import annotations

import argparse
import gzip
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from torch_plugin import learn, models

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(root: str, split: str, limit: int):
    """(x (n, 784) float32 intensities in [0, 1], y (n,) int64), the first `limit` samples."""
    try:  # the project's loader, when present
        from torch_plugin import data as tp_data  # type: ignore
        if hasattr(tp_data, "load_fashion_mnist"):
            x, y = tp_data.load_fashion_mnist(root, split)
            return torch.as_tensor(x[:limit]).float().reshape(-1, 784) / (255.0 if x.max() > 1 else 1.0), torch.as_tensor(y[:limit]).long()
    except ImportError:
        pass
    images, labels = (os.path.join(root, f) for f in FILES[split])
    for p in (images, labels):
        if not os.path.exists(p):
            sys.exit(f"Fashion-MNIST file missing: {p}\nDownload the four IDX .gz files "
                     f"(https://github.com/zalandoresearch/fashion-mnist) into {root} or pass --data DIR.")
    x = torch.from_numpy(read_idx(images)[:limit].astype(np.float32) / 255.0).reshape(-1, 784)
    y = torch.from_numpy(read_idx(labels)[:limit].astype(np.int64))
    return x, y


def batches(n: int, size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, size):
        yield perm[i:i + size]


@torch.no_grad()
def accuracy(model, x, y, device, size=500) -> float:
    model.eval()
    correct = sum((model(x[i:i + size].to(device)).argmax(1).cpu() == y[i:i + size]).sum().item()
                  for i in range(0, len(x), size))
    return correct / len(x)


def train(name: str, args, xtr, ytr, xte, yte) -> tuple[float, float]:
    torch.manual_seed(args.seed)
    model = models.spiking_mlp(784, [args.hidden], 10, T=args.T, seed=args.seed).to(args.device)
    gen = torch.Generator().manual_seed(args.seed)
    if name == "NACA":
        learner = learn.NACA(model, optimizer=torch.optim.Adam(model.parameters(), lr=args.naca_lr))
    elif name == "SBP":
        learner = learn.SBP(model, lr=args.sbp_lr, fraction=args.fraction, percentage=args.percentage, seed=args.seed)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=args.bp_lr)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        for idx in batches(len(xtr), args.batch, gen):
            x, y = xtr[idx].to(args.device), ytr[idx].to(args.device)
            if name == "BP":
                model.train()
                loss = F.mse_loss(model(x), F.one_hot(y, 10).float())
                opt.zero_grad()
                loss.backward()
                opt.step()
            else:
                learner.step(x, y)
        print(f"  {name} epoch {epoch + 1}: test accuracy {accuracy(model, xte, yte, args.device):.4f}", flush=True)
    return accuracy(model, xte, yte, args.device), time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--train", type=int, default=10000, help="training samples used (max 60000)")
    p.add_argument("--test", type=int, default=2000, help="test samples used (max 10000)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--T", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--naca-lr", type=float, default=1e-3, help="Adam lr of the NACA pseudo-gradient")
    p.add_argument("--sbp-lr", type=float, default=2.0, help="SBP step scale (alpha = lr * (0.1, 0.05))")
    p.add_argument("--fraction", type=float, default=0.2, help="SBP lambda_f")
    p.add_argument("--percentage", type=float, default=1.0, help="SBP lambda_p")
    p.add_argument("--bp-lr", type=float, default=1e-3, help="Adam lr of surrogate-gradient BPTT")
    p.add_argument("--learners", default="NACA,SBP,BP")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    xtr, ytr = load(args.data, "train", args.train)
    xte, yte = load(args.data, "test", args.test)
    print(f"Fashion-MNIST: {len(xtr)} train / {len(xte)} test samples; spiking MLP 784-{args.hidden}-10, "
          f"T={args.T}, {args.epochs} epochs, batch {args.batch}, device {args.device}")
    results = {}
    for name in args.learners.split(","):
        results[name] = train(name.strip(), args, xtr, ytr, xte, yte)
    print("\nlearner  test accuracy  train time (s)")
    for name, (acc, secs) in results.items():
        print(f"{name:<8} {acc:>13.4f}  {secs:>14.1f}")


if __name__ == "__main__":
    main()
