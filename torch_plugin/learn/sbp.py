"""The SBP learner: local contrastive plasticity of a three-layer SNN (or a
two-layer ANN) plus self-backpropagation of the synaptic modifications
(docs/algorithms.md §2.1, ``ops.sbp_update_``). No backward()."""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from ..nn import NACALinear, NACAOutput, NACASpikingLinear
from ..nn.common import activation_fn, check_choice, check_int, check_real
from ..nn.spiking import homeostatic_relax
from . import nonfinite
from .common import check_label_range, check_only_these_train, recording


def subset_mask(hidden: int, inputs: int, percentage: float, seed: int) -> Optional[Tensor]:
    """lambda_p: a fixed, seeded boolean mask (hidden, inputs) choosing round(percentage * inputs)
    input synapses per hidden unit to receive the self-backpropagated spread (None when 1.0: all)."""
    percentage = check_real("subset_mask", "percentage", percentage, 0.0, 1.0)
    if percentage == 1.0:
        return None
    k = int(round(percentage * inputs))
    g = torch.Generator().manual_seed(int(seed))
    ranks = torch.rand(hidden, inputs, generator=g).argsort(1).argsort(1)
    return ranks < k


class SBP:
    """Trains a three-layer SNN (``models.sbp_snn`` / ``models.spiking_mlp`` with one hidden
    layer) or a two-layer ANN (``models.sbp_ann``) with SBP.

    Each ``step(x, y)``:
      1. free phase: the model's forward (no grad); rates (SNN: mean spikes over T)
         or activities (ANN: act(z_h), sigmoid(z_o)) of input r_x, hidden r_h, output r_o;
      2. nudged phase: output r_o^beta = r_o + beta (onehot(y) - r_o); the hidden layer
         re-runs with the extra top-down current (r_o^beta - r_o) @ W_out (the
         linearised symmetric feedback s_above W_above^T of docs/algorithms.md §2.2; with
         ``relax_steps > 0`` the hidden state (ANN: activities, SNN: rates) instead relaxes
         by ``homeostatic_relax`` with that top-down input);
      3. local changes (post, pre): dW_out = (r_o^beta - r_o)^T r_h / (beta B),
         dW_in = (r_h^beta - r_h)^T r_x / (beta B);
      4. ``ops.sbp_update_``: LTP/LTD split, lateral spread and self-backpropagated spread
         onto W_in (lambda_f = ``fraction``, lambda_p = ``percentage`` via a fixed mask drawn
         from ``seed``), W += lr * alpha * dW_final; biases follow their local change.

    Args:
        model: the network (exactly one hidden and one output trainable layer).
        lr: global scale of the steps (alpha_in = lr * alpha[0], alpha_out = lr * alpha[1]), >= 0.
            None (default): ``DEFAULT_LR``, 10 for the ANN and 1 for the SNN. Measured
            (``examples/sbp_lr.py``, batch 32, seeds 0-2, final test accuracy, mean):
            ANN, digits 64-200-10, 5 epochs, lr 1 / 3 / 10 / 20 / 50: 0.484 / 0.827 / 0.882 / 0.898 /
            0.929, the lowest of the last three epochs 0.344 / 0.534 / 0.834 / 0.868 / 0.845 (below
            10 it jumps between epochs); Fashion-MNIST 784-1000-10, 10000 samples, 2 epochs, lr 1 / 3 /
            5 / 10 / 20: 0.704 / 0.745 / 0.754 / 0.747 / 0.722.
            SNN (T 20), digits, lr 0.1 / 0.5 / 1 / 3 / 10 / 20: 0.799 / 0.938 / 0.955 / 0.953 / 0.913 /
            0.212; Fashion-MNIST, lr 0.1 / 0.3 / 1 / 3 / 10: 0.756 / 0.735 / 0.709 / 0.668 / 0.552
            (sd 0.01-0.08 over seeds; longer runs at lr 2: examples/results/README.md, section 5).
        fraction: lambda_f (0.2); 0 gives the local rule without any spread. The spread's
            factors 1 + lambda_f v_i / sum(v) average 1 + lambda_f / n over a layer of n
            neurons, so on wide layers it barely changes the update (Fashion-MNIST, width
            1000, lambda_f 0.2: 0.03-0.2 % of W_in's and 0.2-1.5 % of W_out's change;
            ``examples/sbp_spread_size.py``).
        percentage: lambda_p in [0, 1], share of each hidden unit's input synapses that
            receive the spread (1.0: all, the authors' code).
        seed: seed of the lambda_p mask.
        beta: nudging strength in (0, 1] (0.5; 1 moves the output onto the target).
        alpha: (alpha_in, alpha_out) = (0.1, 0.05), each >= 0.
        relax_steps, eps: homeostatic membrane-potential relaxation (docs/algorithms.md §2.2) of the
            hidden state (ANN: activities; SNN: rates): ``relax_steps`` iterations of step eps,
            the free phase from the forward's state with the bottom-up drive, the nudged phase
            from the relaxed free state with the top-down drive added (in place of re-running
            the layer); 0 (default) re-runs the layer for the nudged phase. Differences from
            the authors' MATLAB SNN (snnhomeov.m), which this simplifies: their free phase also
            takes top-down input from an output layer relaxing with it, their nudged phase runs
            5 iterations with the output relaxing under beta (s - y), and their hidden units
            squash with 2 sigmoid(x) - 1 (output: ReLU); here the state is clamped to [0, 1]
            as in their ANN code (rho = clip(s, 0, 1)), the drive is fixed, so the free phase
            converges to clamp01(W x + b) even where the forward used another activation.
            eps in (0, 1] (a step of 1 jumps to the drive).
        local_rule: the local change of step 3 (docs/algorithms.md §2.1), for each matrix with its
            (pre, post) rates of the free (0) and nudged (b) phases, divided by beta B:
            'contrastive' (default, the authors' code): (post_b - post_0)^T pre_0;
            'symmetric' (symmetric STDP): post_b^T pre_b - post_0^T pre_0;
            'differential': post_0^T (pre_b - pre_0) (zero for W_in, whose input does not
            change between phases; the spread only rescales a matrix's own LTP/LTD, so W_in
            then does not learn at all, only its bias does). The authors apply their
            symmetric and differential STDP baselines without any spread; here every rule
            goes through the spread, so use ``fraction=0`` to reproduce those baselines.
        skip_nonfinite: False (default): changes are applied as computed, so a NaN or an Inf
            in a batch (one NaN pixel) reaches every weight. True: a step whose changes hold a
            NaN or an Inf leaves every weight and bias untouched and counts in ``skipped_steps``
            (saved in ``state_dict``); the check, on the changes after any data-parallel
            reduction (``apply_changes``), costs one reduction and one host read per step.
    Every argument is checked when the learner is built (a ValueError or TypeError naming it).
    Short-term plasticity: build the SNN with ``models.sbp_snn(..., stp=True)`` (an
    ``STPSynapse`` before the hidden layer); the rule then sees the STP current as the
    hidden layer's input.
    ``step`` returns the free-phase output (SNN: rates (B, N); ANN: logits).
    """

    LOCAL_RULES = ("contrastive", "symmetric", "differential")

    # lr=None: per model kind, measured on the built-in datasets (see ``lr`` above).
    DEFAULT_LR = {"ann": 10.0, "snn": 1.0}

    def __init__(self, model: nn.Module, lr: Optional[float] = None, fraction: float = 0.2, percentage: float = 1.0,
                 seed: int = 0, beta: float = 0.5, alpha: tuple = (0.1, 0.05), relax_steps: int = 0,
                 eps: float = 0.5, local_rule: str = "contrastive", skip_nonfinite: bool = False):
        lr = None if lr is None else check_real("SBP", "lr", lr, 0.0)
        self.fraction = check_real("SBP", "fraction", fraction, 0.0, 1.0)
        self.percentage = check_real("SBP", "percentage", percentage, 0.0, 1.0)
        self.seed = check_int("SBP", "seed", seed)
        self.beta = check_real("SBP", "beta", beta, 0.0, 1.0, low_open=True)
        self.alpha = _check_alpha(alpha)
        self.relax_steps = check_int("SBP", "relax_steps", relax_steps, 0)
        self.eps = check_real("SBP", "eps", eps, 0.0, 1.0, low_open=True)
        self.local_rule = check_choice("SBP", "local_rule", local_rule, self.LOCAL_RULES)
        if not isinstance(skip_nonfinite, bool):
            raise TypeError(f"SBP: argument 'skip_nonfinite' expected a bool, got {skip_nonfinite!r}")
        self.skip_nonfinite = skip_nonfinite
        self.skipped_steps = 0
        self.model = model
        spiking = [m for m in model.modules() if isinstance(m, NACASpikingLinear)]
        if spiking:
            if len(spiking) != 2 or spiking[0].is_output or not spiking[1].is_output:
                raise ValueError("SBP: a spiking model needs exactly two NACASpikingLinear layers, "
                                 "hidden then output (is_output=True), e.g. models.sbp_snn")
            self.spiking = True
            self.hidden, self.output = spiking
        else:
            hidden = [m for m in model.modules() if isinstance(m, NACALinear)]
            outputs = [m for m in model.modules() if isinstance(m, NACAOutput)]
            if len(hidden) != 1 or len(outputs) != 1:
                raise ValueError("SBP: an ANN needs exactly one NACALinear and one NACAOutput, e.g. models.sbp_ann")
            self.spiking = False
            self.hidden, self.output = hidden[0], outputs[0]
        self.lr = self.DEFAULT_LR["snn" if self.spiking else "ann"] if lr is None else lr
        if self.output.weight.shape[1] != self.hidden.weight.shape[0]:
            raise ValueError("SBP: the output layer must read the hidden layer directly")
        check_only_these_train(model, [self.hidden, self.output], "SBP")
        h, i = self.hidden.weight.shape
        mask = subset_mask(h, i, self.percentage, self.seed)
        self.mask = None if mask is None else mask.to(self.hidden.weight.device)
        self.steps = 0

    @property
    def num_classes(self) -> int:
        return self.output.weight.shape[0]

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One SBP step on a batch: ``local_changes`` then ``apply_changes``.

        Args:
            x (Tensor[B, ...]): the model's input.
            y (Tensor[B]): int64 labels in [0, N).

        Returns:
            Tensor[B, N]: the free-phase output (spiking: the output rates), before the update.
        """
        result, sums = self.local_changes(x, y)
        self.apply_changes(sums, x.shape[0])
        self.steps += 1
        return result

    def local_changes(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Steps 1-3 without applying anything: the free-phase output and the batch sums of the local
        changes {'w_in', 'w_out', 'b_in', 'b_out'} (not yet divided by beta B). Sums over samples, so
        data-parallel ranks add theirs (``distributed.DistributedLearner``) before ``apply_changes``."""
        if y.dtype != torch.long or y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"SBP.step: y must be int64 of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}")
        check_label_range(y, self.num_classes, "SBP.step")
        self.model.train()
        hid, out = self.hidden, self.output
        with torch.no_grad(), recording([hid, out], keep="output" if self.spiking else "preact"):
            result = self.model(x)
            if hid.saved is None or out.saved is None:
                raise RuntimeError("SBP: the hidden and output layers must both run in the model's forward")
            if self.spiking:
                pre, _, s_h = hid.saved
                r_x, r_h, r_o = pre.mean(0), s_h.mean(0), out.saved[2].mean(0)
            else:
                pre, z_h = hid.saved  # (input, pre-activation): the nudged phase needs z
                r_x, r_h, r_o = pre, activation_fn(hid.activation)(z_h), torch.sigmoid(out.saved[1])
            target = F.one_hot(y, self.num_classes).to(r_o.dtype)
            top_down = self.beta * (target - r_o)  # r_o^beta - r_o
            feedback = top_down @ out.weight  # (B, H)
            if self.relax_steps > 0:
                # Both phases relax from the forward's hidden state, the free one with the bottom-up
                # drive only and the nudged one with the top-down drive too, so that their
                # difference is the nudge's effect alone.
                r_h = homeostatic_relax(r_h, r_x, hid.weight, None, None, hid.bias, self.eps, self.relax_steps)
                r_hb = homeostatic_relax(r_h, r_x, hid.weight, top_down, out.weight, hid.bias, self.eps,
                                         self.relax_steps)
            elif self.spiking:
                current = F.linear(pre, hid.weight, hid.bias) + feedback.unsqueeze(0)
                r_hb = ops.lif_forward(current, hid.lif.decay, hid.lif.threshold, hid.lif.reset)[0].mean(0)
            else:
                r_hb = activation_fn(hid.activation)(z_h + feedback)
            sums = {"w_out": self._local_change(r_h, r_hb, r_o, r_o + top_down),
                    "w_in": self._local_change(r_x, r_x, r_h, r_hb),
                    "b_out": top_down.sum(0), "b_in": (r_hb - r_h).sum(0)}
        return result, sums

    def apply_changes(self, sums: dict[str, Tensor], batch: int) -> None:
        """Step 4: the changes of ``local_changes`` (summed over ``batch`` samples, on one rank or
        all), divided by beta B, through ``ops.sbp_update_``; the biases follow their own change.
        An empty batch changes nothing. With ``skip_nonfinite``, changes holding a NaN or an Inf
        change nothing either, and count in ``skipped_steps``."""
        if batch <= 0:
            return
        hid, out = self.hidden, self.output
        scale = 1.0 / (self.beta * batch)
        a_in, a_out = self.lr * self.alpha[0], self.lr * self.alpha[1]
        with torch.no_grad():
            dw_out, dw_in = sums["w_out"] * scale, sums["w_in"] * scale
            db_out, db_in = sums["b_out"] * scale, sums["b_in"] * scale
            if self.skip_nonfinite and not nonfinite.all_finite((dw_in, dw_out, db_in, db_out)):
                self.skipped_steps += 1
                return
            ops.sbp_update_(hid.weight, out.weight, dw_in.contiguous(), dw_out.contiguous(), self.mask,
                            self.fraction, a_in, a_out)
            if out.bias is not None:
                out.bias.add_(db_out, alpha=a_out)
            if hid.bias is not None:
                hid.bias.add_(db_in, alpha=a_in)

    def _local_change(self, pre0: Tensor, preb: Tensor, post0: Tensor, postb: Tensor) -> Tensor:
        """The (post, pre) local change of one matrix from its free (0) and nudged (b) rates."""
        if self.local_rule == "contrastive":
            return (postb - post0).t() @ pre0
        if self.local_rule == "symmetric":
            return postb.t() @ preb - post0.t() @ pre0
        return post0.t() @ (preb - pre0)

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters and step count (the model saves itself; the mask is re-drawn from the seed)."""
        return {"lr": self.lr, "fraction": self.fraction, "percentage": self.percentage, "seed": self.seed,
                "beta": self.beta, "alpha": self.alpha, "relax_steps": self.relax_steps, "eps": self.eps,
                "steps": self.steps, "local_rule": self.local_rule, "skip_nonfinite": self.skip_nonfinite,
                "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr, self.fraction, self.beta = float(state["lr"]), float(state["fraction"]), float(state["beta"])
        self.alpha = tuple(float(a) for a in state["alpha"])
        self.relax_steps, self.eps, self.steps = int(state["relax_steps"]), float(state["eps"]), int(state["steps"])
        self.local_rule = state.get("local_rule", self.local_rule)
        self.skip_nonfinite = bool(state.get("skip_nonfinite", self.skip_nonfinite))
        self.skipped_steps = int(state.get("skipped_steps", 0))
        if float(state["percentage"]) != self.percentage or int(state["seed"]) != self.seed:
            self.percentage, self.seed = float(state["percentage"]), int(state["seed"])
            h, i = self.hidden.weight.shape
            mask = subset_mask(h, i, self.percentage, self.seed)
            self.mask = None if mask is None else mask.to(self.hidden.weight.device)


def _check_alpha(alpha) -> tuple[float, float]:
    """(alpha_in, alpha_out): a pair of finite numbers >= 0."""
    if isinstance(alpha, (str, bytes)) or not hasattr(alpha, "__len__") or not hasattr(alpha, "__getitem__"):
        raise TypeError(f"SBP: argument 'alpha' expected a pair (alpha_in, alpha_out), got {alpha!r}")
    if len(alpha) != 2:
        raise ValueError(f"SBP: argument 'alpha' expected a pair (alpha_in, alpha_out), got {len(alpha)} "
                         f"values: {tuple(alpha)!r}")
    return check_real("SBP", "alpha[0]", alpha[0], 0.0), check_real("SBP", "alpha[1]", alpha[1], 0.0)
