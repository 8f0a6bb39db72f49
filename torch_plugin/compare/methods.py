"""Models and one-batch training steps per method (bp, naca, sbp, sbp-local, bp-surrogate and continual.py's)."""
from __future__ import annotations

import warnings
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import data as tpdata
from ..learn.gate import InputGate
from .continual import make_continual
from .schema import BIAS_SUFFIX, CONTINUAL_METHODS, DEFAULT_LR, SBP_METHODS, SBP_SNN_LR, SNN_NACA_LR, base_method

def lazy_import(name: str, what: str):
    """Import name (module.attr) when first needed; SystemExit naming `what` if this build lacks it."""
    import importlib

    mod_name, attr = name.rsplit(".", 1)
    try:
        obj = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise SystemExit(f"{what} needs {name}, which this torch_plugin build does not provide ({e})") from None
    return obj


def build_model(args, method: str, ds: tpdata.Dataset, seed: int) -> tuple[nn.Module, str]:
    """The run's model and its description; method: a --methods label (bp+gate builds bp's model)."""
    from .. import models

    method = base_method(method)

    n, d = ds.num_classes, ds.in_features
    hid = "-".join(str(h) for h in args.hidden)
    bias, out_bias = args.bias == "all", args.bias != "none"
    nb = BIAS_SUFFIX[args.bias]
    if args.model == "snn":
        spiking_mlp = lazy_import("torch_plugin.models.spiking_mlp", "--model snn")
        return (spiking_mlp(d, args.hidden, n, T=args.T, seed=seed, stp=args.stp, current=args.snn_current,
                            lens=args.snn_lens, bias=bias, output_bias=out_bias),
                f"snn {d}-{hid}-{n} T={args.T}" + (" STP" if args.stp else "")
                + (" sigmoid current" if args.snn_current == "sigmoid" else "") + nb)
    if args.model == "conv":
        if len(ds.sample_shape) != 3:
            raise SystemExit(f"--model conv needs image data (C, H, W); this dataset's samples are {ds.sample_shape}")
        ch = "-".join(f"conv{c}" for c in args.channels)
        return (models.conv_net(ds.sample_shape, n, channels=args.channels, hidden=args.hidden[0],
                                activation=args.activation, seed=seed, bias=bias, output_bias=out_bias,
                                kernel_size=args.conv_kernel),
                f"conv {ch}-FC{args.hidden[0]}-FC{n}{nb}" + (f" {args.conv_kernel}x{args.conv_kernel}"
                                                            if args.conv_kernel != 3 else ""))
    if method in SBP_METHODS:
        sbp_ann = lazy_import("torch_plugin.models.sbp_ann", "--methods sbp")
        return (sbp_ann(d, args.hidden[0], n, seed=seed, bias=bias, output_bias=out_bias),
                f"mlp {d}-{hid}-{n} (sigmoid){nb}")
    sig = args.output_sigmoid_grad != "off"
    return (models.mlp(d, args.hidden, n, activation=args.activation, seed=seed, sigmoid_grad=sig, bias=bias,
                       output_bias=out_bias),
            f"mlp {d}-{hid}-{n}{nb}")


def resolve_batch_size(args, method: str) -> int:
    """The training batch size of the label's runs: --batch-size bp+gate=N, else bp=N (the base method's), else
    the plain value (default 32)."""
    given = args.batch_size_given
    return int(given.get(method, given.get(base_method(method), args.batch_size)))


def resolve_lr(args, method: str, ds: tpdata.Dataset) -> float:
    """The label's learning rate: --lr bp+gate=V, else bp=V (the base method's), else the default of the base."""
    if method in args.lr_given:
        return args.lr_given[method]
    method = base_method(method)
    if method in args.lr_given:
        return args.lr_given[method]
    if method == "naca" and args.model == "snn":
        return SNN_NACA_LR[args.optimizer]
    if method in SBP_METHODS and args.model == "snn":
        return SBP_SNN_LR
    # sbp-local: sbp's default, the controlled comparison; the continual baselines: bp's
    base = "sbp" if method in SBP_METHODS else "bp" if method in CONTINUAL_METHODS else method
    lr = DEFAULT_LR[(base, args.optimizer)]
    if lr is None:  # NACA in-place SGD: the batch-summed update scales with the fan-in
        lr = 2.0 / ds.in_features
    return float(lr)


def gate_delta_raw(args, ds: tpdata.Dataset) -> float:
    """--gate-delta in the data's raw units. The gate compares raw input means, and the
    authors' delta (0.2) was set on standardized inputs: on [0, 1] pixels a raw 0.2 opens
    2-4x more hidden units per class, shared between classes (measured on Fashion-MNIST:
    155-469 of 1000 units per class, mean Jaccard overlap 0.41; at 0.2 std: 32-171, 0.09)."""
    return float(args.gate_delta) * float(ds.x_train.float().std())


class GradClipper:
    """torch.nn.utils.clip_grad_norm_ to max_norm, counting the steps where it bound."""

    def __init__(self, max_norm: float):
        self.max_norm, self.steps, self.clipped = float(max_norm), 0, 0

    def __call__(self, params) -> None:
        norm = float(torch.nn.utils.clip_grad_norm_(list(params), self.max_norm))
        self.steps += 1
        self.clipped += int(norm > self.max_norm)

    def record(self) -> dict:
        return {"max_norm": self.max_norm, "steps": self.steps, "clipped_steps": self.clipped}

    @classmethod
    def for_run(cls, args, method: str) -> Optional["GradClipper"]:
        """The clipper a run of this method gets: --clip-grad-norm > 0 and a method with a gradient (not sbp)."""
        return (cls(args.clip_grad_norm) if args.clip_grad_norm > 0 and base_method(method) not in SBP_METHODS
                else None)


def make_step(args, method: str, model: nn.Module, lr: float, gate_delta: Optional[float] = None,
              clip: Optional[GradClipper] = None, seed: int = 0) -> tuple[Callable[[Tensor, Tensor], Tensor], str]:
    """A function step(x, y) -> logits that trains on one batch, and the optimizer's name.
    gate_delta (raw units): put the input gate on the hidden layers (naca, bp, bp-surrogate).
    clip: clip the (pseudo-)gradient before each step (naca then steps through torch.optim.SGD).
    seed: the run's seed (SBP draws its lambda_p synapse subset from it).
    method: a --methods label (bp+gate trains as bp, gated when it is)."""
    from ..nn import NACALinear, NACASpikingLinear

    gates = []
    if gate_delta is not None and is_gated(args, method):
        gates = [InputGate(m, gate_delta) for m in model.modules()
                 if isinstance(m, NACALinear) or (isinstance(m, NACASpikingLinear) and not m.is_output)]
    method = base_method(method)
    if method == "naca":
        from ..learn import NACA as _NACA

        def NACA(*a, **kw):  # cli.parse_args gave the learner's activation warning once, for the whole study
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="NACA: the hidden rule has no fixed point",
                                        category=UserWarning)
                return _NACA(*a, **kw)

        # check_labels=False: data.load_dataset checked every label once (the model has
        # ds.num_classes outputs), so the step need not read them back from the GPU.
        rule = dict(all_steps=args.snn_rule != "last-step", membrane_chain=args.snn_rule == "chain")
        if args.optimizer == "adam" or gates or clip is not None:
            opt = (torch.optim.Adam(model.parameters(), lr=lr) if args.optimizer == "adam"
                   else torch.optim.SGD(model.parameters(), lr=lr))  # SGD on the pseudo-gradient = in-place step
            learner = NACA(model, optimizer=opt, check_labels=False, **rule)

            def step(x, y):
                opt.zero_grad(set_to_none=False)
                out = learner.local_update(x, y)
                for g in gates:
                    g.scale_grads()
                if clip is not None:
                    clip(model.parameters())
                opt.step()
                return out
            return step, args.optimizer
        learner = NACA(model, lr=lr, check_labels=False, **rule)
        return learner.step, "sgd"
    if method in SBP_METHODS:
        SBP = lazy_import("torch_plugin.learn.SBP", "--methods sbp")
        fraction = 0.0 if method == "sbp-local" else args.sbp_fraction
        learner = SBP(model, lr=lr, seed=seed, local_rule=args.sbp_rule, relax_steps=args.sbp_relax_steps,
                      fraction=fraction, percentage=args.sbp_percentage)
        return learner.step, "sbp"
    # bp, bp-surrogate (BPTT through the spiking model's surrogate spike gradients) and the continual
    # baselines (continual.py: bp plus a penalty or a replay buffer); a gate's mask multiplies the hidden
    # activity, so autograd gates the hidden layer's gradient with it.
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if args.optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr))
    loss_fn = training_loss(args)
    cont = make_continual(args, method, model, loss_fn, seed)

    def step(x, y):
        model.train()
        n = len(y)
        x, y = cont.mix(x, y)
        out = model(x)
        loss = loss_fn(out, y)
        pen = cont.penalty(x, out)
        if pen is not None:
            loss = loss + pen
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            clip(model.parameters())
        opt.step()
        cont.after_step()
        return out[:n].detach()
    step.end_task = cont.end_task
    return step, args.optimizer


def training_loss(args) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss of the backprop-family runs: out ``Tensor[B, N]``, y ``Tensor[B]`` -> ``Tensor[]``.

    snn: MSE of the firing rates to one-hot; otherwise --bp-loss: cross-entropy of the logits, or MSE of
    sigmoid(logits) to one-hot (the authors' SGD baseline, docs/algorithms.md §1.7)."""
    if args.model == "snn":
        return lambda out, y: F.mse_loss(out, F.one_hot(y, out.shape[1]).to(out.dtype))
    if args.bp_loss == "mse":
        return lambda out, y: F.mse_loss(torch.sigmoid(out), F.one_hot(y, out.shape[1]).to(out.dtype))
    return F.cross_entropy


def is_gated(args, method: str) -> bool:
    """Whether the label's runs get the input gate (a METHOD+gate label, --gate, --gate-methods)."""
    return method in args.gate_methods


def last_hidden_weight(model: nn.Module) -> tuple[str, Optional[nn.Parameter]]:
    """(name, weight) of the last hidden fully-connected layer (the 1000-unit layer of the papers)."""
    from ..nn import NACALinear

    found = None
    for name, m in model.named_modules():
        is_output = getattr(m, "is_output", False)
        if isinstance(m, NACALinear) or (type(m).__name__ == "NACASpikingLinear" and not is_output):
            found = (name, m.weight)
    return found if found else ("", None)

