"""The plain NACA algorithm, written independently of the learner, for the tests to compare it with:
the whole forward of an ``nn.Sequential`` first (a module listed twice runs twice), keeping every
trained layer's input and output, then every layer's update with the ops, in call order."""
import torch
import torch.nn.functional as F

from torch_plugin import ops
from torch_plugin.nn import NACAConv2d, NACALinear, NACAOutput, NACASpikingLinear

ACT = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "identity": lambda t: t}
LR, LAM, THETA = 0.05, 0.4, 1.3


def plain_forward(model, x):
    """The model's forward under no_grad, keeping (layer, its tensors) of every trained layer."""
    kept, a = [], x
    with torch.no_grad():
        for m in model:
            if isinstance(m, NACAConv2d):
                a_next = ACT[m.activation](F.conv2d(a, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups))
                kept.append((m, (a, a_next)))
            elif isinstance(m, NACALinear):
                a_next = ACT[m.activation](F.linear(a, m.weight, m.bias))
                kept.append((m, (a, a_next)))
            elif isinstance(m, NACAOutput):
                a_next = F.linear(a, m.weight, m.bias)
                kept.append((m, (a, a_next)))
            elif isinstance(m, NACASpikingLinear):
                cur = F.linear(a, m.weight, m.bias)
                cur = torch.sigmoid(cur) if m.current == "sigmoid" else cur
                s, v = ops.lif_forward(cur, m.lif.decay, m.lif.threshold, m.lif.reset)
                kept.append((m, (a, v, s)))
                a_next = s
            else:
                a_next = m(a)
            a = a_next
    return a, kept


def plain_update(m, saved, y, w, b, lr, all_steps, chain):
    """One layer's NACA update with the ops, into (w, b)."""
    if isinstance(m, NACAOutput):
        ops.naca_output_update_(w, b, saved[0], saved[1], y, lr, m.sigmoid_grad)
    elif isinstance(m, NACAConv2d):
        ops.naca_conv_update_(w, b, saved[0], saved[1], y, m.ni, m.stride, m.padding, m.dilation, m.groups,
                              m.activation, lr, LAM, THETA, from_output=True)
    elif isinstance(m, NACALinear):
        ops.naca_hidden_update_(w, b, saved[0], saved[1], y, m.ni, m.activation, lr, LAM, THETA, from_output=True)
    else:
        pre, v, s = saved
        if m.is_output:
            signal, all_steps = s.mean(0) - F.one_hot(y, m.num_classes).to(s.dtype), True
        else:
            signal = ops.modulation(ops.neuromodulator(y, m.ni), LAM, THETA)
        if chain:
            ops.naca_snn_chain_update_(w, b, pre, v, s, signal, m.lif.decay, m.lif.threshold, m.lens, m.lif.reset,
                                       m.current, lr)
        else:
            ops.naca_snn_update_(w, b, pre, v, s, signal, m.threshold, m.lens, lr, all_steps)


def plain_step(model, opt, x, y, mode, all_steps=True, chain=False):
    """Forward everything, then update every layer; mode 'sgd' (in place), 'adam', 'guard' (skip_nonfinite
    with SGD: .grad, then w -= lr * grad when finite)."""
    logits, kept = plain_forward(model, x)
    with torch.no_grad():
        if mode == "sgd":
            for m, saved in kept:
                plain_update(m, saved, y, m.weight, m.bias, LR, all_steps, chain)
            return logits
        params = list({id(p): p for m, _ in kept for p in (m.weight, m.bias) if p is not None}.values())
        for p in params:
            p.grad = torch.zeros_like(p)
        for m, saved in kept:
            plain_update(m, saved, y, m.weight.grad, None if m.bias is None else m.bias.grad, -1.0, all_steps, chain)
        if mode == "adam":
            opt.step()
        elif all(torch.isfinite(p.grad).all() for p in params):
            for p in params:
                p.sub_(p.grad, alpha=LR)
    return logits
