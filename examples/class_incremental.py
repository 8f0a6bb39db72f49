"""A short class-incremental demo: Fashion-MNIST (or --dataset digits) split into 5 tasks
of 2 classes, one shared 10-way head, trained task after task with NACA and with BP;
prints the accuracy matrix R[i][j] (task j after training task i), the mean accuracy
after the last task, forgetting and backward transfer.

    python examples/class_incremental.py                       # ~1 minute on 2 CPU cores
    python examples/class_incremental.py --dataset digits      # seconds

For the full study with plots and several seeds use the command this wraps:
    python -m torch_plugin.compare --scenario class-incremental --seeds 0,1,2 --out results
and, for the authors' protocol with the input gate (applied to both methods),
    python -m torch_plugin.compare --scenario class-incremental --tasks-classes 1 --methods bp,naca --gate \
        --activation sigmoid --batch-size 256 --out results_gate
(examples/results/README.md, section 2: the gate, not NACA, is what keeps old classes), and for the
authors' spiking network (sigmoid current, lens 0.2, their membrane-chain update; BPTT gets the same
current and gate)
    python -m torch_plugin.compare --model snn --scenario class-incremental --tasks-classes 1 \
        --methods naca,bp-surrogate --gate --snn-current sigmoid --snn-lens 0.2 --snn-rule chain \
        --train-subset 10000 --out results_snn
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from torch_plugin import data, learn, metrics, models


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--train", type=int, default=20000, help="training samples (stratified subset)")
    p.add_argument("--hidden", type=int, default=1000)
    p.add_argument("--max-epochs", type=int, default=5, help="per task; a task stops at 95 %% train accuracy")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        ds = data.load_dataset(args.dataset, train_subset=args.train)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    tasks = data.class_incremental_tasks(ds.num_classes, 2)
    for name in ("NACA", "BP"):
        torch.manual_seed(args.seed)
        # NACA's output delta (sigmoid(z) - onehot(y)) * sigmoid'(z), as the authors' codes
        model = models.mlp(ds.in_features, [args.hidden], ds.num_classes, seed=args.seed)
        if name == "NACA":
            step = learn.NACA(model, lr=2.0 / ds.in_features).step
        else:
            opt = torch.optim.SGD(model.parameters(), lr=0.1)

            def step(x, y):
                model.train()
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                return logits.detach()
        gen = torch.Generator().manual_seed(args.seed)
        rows = []
        for classes in tasks:
            xt, yt = data.task_subset(ds.x_train, ds.y_train, classes)
            for epoch in range(args.max_epochs):
                correct = 0
                for x, y in data.batches(xt, yt, 32, generator=gen):
                    correct += int((step(x, y).argmax(1) == y).sum())
                if correct / len(yt) >= 0.95:
                    break
            rows.append(metrics.task_accuracies(metrics.predict(model, ds.x_test), ds.y_test, tasks))
        print(f"\n{name}: accuracy matrix (%), row i: after task i; column j: task j of {tasks}")
        for i, row in enumerate(rows):
            print(f"  after task {i}: " + " ".join(f"{100 * v:5.1f}" for v in row))
        print(f"  mean accuracy after the last task {100 * metrics.mean_accuracy_after_last(rows):.1f} %, "
              f"forgetting {100 * metrics.forgetting(rows):.1f} %, BWT {100 * metrics.backward_transfer(rows):.1f} %")


if __name__ == "__main__":
    main()
