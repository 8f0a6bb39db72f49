"""Train an MLP with forward-only NACA on a pipeline of processes (``distributed.PipelineLearner``).

    torchrun --standalone --nproc-per-node=2 examples/pipeline_mlp.py                       # digits, 2 stages
    torchrun --standalone --nproc-per-node=3 examples/pipeline_mlp.py --hidden 256,256,256  # 3 stages
    torchrun --standalone --nproc-per-node=4 examples/pipeline_mlp.py --data-parallel 2     # 2 replicas x 2 stages
    torchrun --standalone --nproc-per-node=4 examples/pipeline_mlp.py --dataset fashion-mnist \\
        --hidden 1000,1000,1000 --device cuda                                               # one GPU per rank

Every rank builds the same model (the same seed) and walks the same batches in the same order; stage 0
reads the images, every stage the labels. Each stage trains its layers on each microbatch as soon as its
forward is done and hands its output to the next stage; no stage waits for a backward pass. The last
stage of replica 0 prints the accuracies; with --save, rank 0 writes the whole model's state_dict.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist

from torch_plugin import data, metrics, models
from torch_plugin.distributed import PipelineLearner


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", help="digits (sklearn), fashion-mnist, an IDX folder or .npz")
    p.add_argument("--train", type=int, default=None, help="training samples (stratified subset; default all)")
    p.add_argument("--hidden", default="256,256", help="hidden widths, comma separated")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64, help="batch per replica")
    p.add_argument("--microbatches", type=int, default=4)
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"))
    p.add_argument("--lr", type=float, default=None, help="default: sgd 0.01, adam 3e-3 (the digits' best of a few)")
    p.add_argument("--data-parallel", type=int, default=1, help="pipeline replicas (world = replicas x stages)")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (rank r on GPU LOCAL_RANK)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a rank waits for another")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on each rank")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, help="write the trained model's state_dict here (rank 0)")
    args = p.parse_args(argv)
    try:
        args.hidden = [int(h) for h in args.hidden.split(",")]
    except ValueError:
        p.error(f"--hidden expects comma-separated ints, got {args.hidden!r}")
    if "RANK" not in os.environ:
        p.error("run it with torchrun, e.g. torchrun --standalone --nproc-per-node=2 examples/pipeline_mlp.py")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if args.threads:
        torch.set_num_threads(args.threads)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        return train(args, torch.device("cuda") if cuda else torch.device("cpu"))
    finally:
        dist.destroy_process_group()


def train(args, device) -> int:
    ds = data.load_dataset(args.dataset, train_subset=args.train, seed=args.seed)
    features = ds.x_train[0].numel()
    torch.manual_seed(args.seed)  # the same model on every rank
    model = models.mlp(features, args.hidden, ds.num_classes, seed=args.seed).to(device)
    lr = args.lr if args.lr is not None else (0.01 if args.optimizer == "sgd" else 3e-3)
    factory = (lambda params: torch.optim.Adam(params, lr=lr)) if args.optimizer == "adam" else None
    learner = PipelineLearner(model, lr=lr, optimizer=factory, microbatches=args.microbatches,
                              data_parallel=args.data_parallel, timeout=args.timeout)
    del model  # this rank keeps its stage (learner.module)
    speaker = learner.is_last_stage and learner.replica == 0
    D, r = learner.data_parallel, learner.replica
    if speaker:
        print(f"{ds.name}: {len(ds.x_train)} train / {len(ds.x_test)} test; MLP {features}-"
              f"{'-'.join(map(str, args.hidden))}-{ds.num_classes}; {learner.num_stages} stages (children per "
              f"stage {list(learner.split)}) x {D} replicas, {args.microbatches} microbatches, {args.optimizer} "
              f"lr {lr:g}, device {device}", flush=True)
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        start, correct, seen = time.perf_counter(), 0, 0
        # every rank draws the same order; replica r takes every D-th sample of each batch
        for x, y in data.batches(ds.x_train, ds.y_train, args.batch * D, generator=gen, drop_last=True):
            x, y = x[r::D].to(device), y[r::D].to(device)
            logits = learner.step(x if learner.stage == 0 else None, y)
            if logits is not None:
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
        seconds = time.perf_counter() - start
        accuracy = evaluate(learner, ds.x_test.to(device), ds.y_test.to(device), args.batch)
        if speaker:
            print(f"epoch {epoch + 1}: train accuracy {correct / max(seen, 1):.4f} (logits before each update), "
                  f"test accuracy {accuracy:.4f}, {seconds:.2f} s", flush=True)
    state = learner.full_state_dict()
    if state is not None and args.save:
        torch.save(state, args.save)
        print(f"saved the whole model's state_dict to {args.save}", flush=True)
    return 0


def evaluate(learner: PipelineLearner, x, y, batch: int):
    """Test accuracy through the pipeline (every replica predicts the whole test set; the last stages score)."""
    bounds = list(range(0, len(x), batch)) + [len(x)]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < learner.microbatches:
        del bounds[-2]  # (a last chunk smaller than the microbatch count joins the one before)
    predictions = []
    for a, b in zip(bounds, bounds[1:]):
        out = learner.predict(x[a:b] if learner.stage == 0 else None)
        if out is not None:
            predictions.append(out.argmax(1))
    return metrics.accuracy(torch.cat(predictions), y) if predictions else None


if __name__ == "__main__":
    sys.exit(main())
