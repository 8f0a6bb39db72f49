"""The ``ops`` section: each op vs its float32 reference (``torch_plugin.reference``), vs the eager
composition of torch ops a user would write (closed-form phi', in-place addmm_), and vs the roofline
bound max(bytes / copy bandwidth, FLOPs / mm peak), both measured in this process."""
from __future__ import annotations

import torch

from .. import ops
from .. import reference as ref
from .harness import Timer, no_grad, roofline


def eager_act_grad(z: torch.Tensor, activation: str) -> torch.Tensor:
    """phi'(z) in closed form, as a user would write it (any shape)."""
    if activation == "tanh":
        return 1 - torch.tanh(z) ** 2
    if activation == "sigmoid":
        s = torch.sigmoid(z)
        return s * (1 - s)
    if activation == "relu":
        return (z > 0).to(z.dtype)
    return torch.ones_like(z)


def eager_neuromodulator(labels: torch.Tensor, ni: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """The neuromodulator level NL by indexing: labels (B,), ni (2N, ...) -> (B, ...)."""
    k = slots[labels]
    return (ni[k] + ni[k + 1]) / 2


def op_cases(device: torch.device, quick: bool) -> dict:
    """The shapes measured: linear (B, I, H), conv (B, Cin, Cout, HW), elementwise n."""
    cuda = device.type == "cuda"
    if quick:
        return {"linear": [(8, 16, 12)], "conv": [(2, 4, 8, 6)], "elementwise": [1000]}
    linear = [(256, 784, 1000), (1024, 1024, 1024)] + ([(1024, 4096, 4096), (4096, 8192, 8192)] if cuda else [])
    conv = [(32, 64, 128, 14), (256, 64, 128, 14)] if cuda else [(32, 64, 128, 14)]
    elementwise = [256 * 1000, 1 << 24] if cuda else [256 * 1000, 1 << 22]
    return {"linear": linear, "conv": conv, "elementwise": elementwise}


def run(device: torch.device, timer: Timer, quick: bool, bounds: dict) -> dict:
    """{"ops": rows}, one row per op, shape and dtype."""
    rows = []
    cases = op_cases(device, quick)
    n_cls, lam, theta, lr = 10, 0.5, 1.2, 1e-3
    slots = torch.tensor(ref.expectation_slots(n_cls), device=device)
    dtypes = [torch.float32] + ([torch.bfloat16] if device.type == "cuda" and not quick else [])

    def add(op, shape, dtype, t_op, baselines, bytes_moved, flops):
        row = {"op": op, "shape": shape, "dtype": str(dtype).split(".")[-1], "op_ms": 1e3 * t_op}
        for name, t in baselines.items():
            row[f"{name}_ms"] = 1e3 * t
            row[f"vs_{name}"] = t / t_op
        row.update(roofline(t_op, bytes_moved, flops, bounds, dtype))
        rows.append(row)

    for dtype in dtypes:
        es = torch.finfo(dtype).bits // 8
        for b, i, h in cases["linear"]:
            if dtype != torch.float32 and h < 4096:
                continue
            g = torch.Generator().manual_seed(b + i + h)
            w = (0.01 * torch.randn(h, i, generator=g)).to(device, dtype)
            bias = torch.zeros(h, device=device, dtype=dtype)
            x = torch.rand(b, i, generator=g).to(device, dtype)
            z = torch.randn(b, h, generator=g).to(device, dtype)
            y = torch.randint(0, n_cls, (b,), generator=g).to(device)
            ni = torch.rand(2 * n_cls, h, generator=g).to(device, dtype)
            sig = torch.randn(b, h, generator=g).to(device, dtype)
            shape = f"B={b} I={i} H={h}"
            flops = 2 * b * h * i
            # weight and bias read and written, x and z (and the signal) read once.
            base_bytes = es * (2 * h * i + 2 * h + b * i + b * h)

            def eager_naca():
                d = ref.modulation(eager_neuromodulator(y, ni, slots), lam, theta) * eager_act_grad(z, "tanh")
                w.addmm_(d.t(), x, alpha=-lr)
                bias.sub_(lr * d.sum(0))

            def eager_plast():
                d = sig * eager_act_grad(z, "tanh")
                w.addmm_(d.t(), x, alpha=-lr)
                bias.sub_(lr * d.sum(0))

            fns = {"eager": eager_naca}
            if dtype == torch.float32:
                fns["reference"] = no_grad(lambda: ref.naca_hidden_update(w, bias, x, z, y, ni, "tanh", lr, lam, theta))
            t_op, base = timer.against(lambda: ops.naca_hidden_update_(w, bias, x, z, y, ni, "tanh", lr, lam, theta),
                                       fns)
            add("naca_hidden_update_", shape, dtype, t_op, base, base_bytes + es * 2 * n_cls * h + 8 * b, flops)

            fns = {"eager": eager_plast}
            if dtype == torch.float32:
                fns["reference"] = no_grad(lambda: ref.plasticity_update(w, bias, x, z, sig, "tanh", lr))
            t_op, base = timer.against(lambda: ops.plasticity_update_(w, bias, x, z, sig, "tanh", lr), fns)
            add("plasticity_update_", shape, dtype, t_op, base, base_bytes + es * b * h, flops)

            # The output layer's own-error rule on this layer's output: weight (N, H), pre (B, H).
            w_o = (0.01 * torch.randn(n_cls, h, generator=g)).to(device, dtype)
            b_o = torch.zeros(n_cls, device=device, dtype=dtype)
            logits = torch.randn(b, n_cls, generator=g).to(device, dtype)
            pre_o = torch.tanh(z)

            def eager_output():
                s = torch.sigmoid(logits)
                d = (s - torch.nn.functional.one_hot(y, n_cls).to(dtype)) * s * (1 - s)
                w_o.addmm_(d.t(), pre_o, alpha=-lr)
                b_o.sub_(lr * d.sum(0))

            fns = {"eager": eager_output}
            if dtype == torch.float32:
                fns["reference"] = no_grad(lambda: ref.naca_output_update(w_o, b_o, pre_o, logits, y, lr))
            t_op, base = timer.against(lambda: ops.naca_output_update_(w_o, b_o, pre_o, logits, y, lr), fns)
            add("naca_output_update_", f"B={b} H={h} N={n_cls}", dtype, t_op, base,
                es * (2 * n_cls * h + 2 * n_cls + b * h + b * n_cls) + 8 * b, 2 * b * n_cls * h)

        if dtype != torch.float32:
            continue
        for b, cin, cout, hw in cases["conv"]:
            g = torch.Generator().manual_seed(b + cin)
            w = (0.05 * torch.randn(cout, cin, 3, 3, generator=g)).to(device)
            bias = torch.zeros(cout, device=device)
            inp = torch.rand(b, cin, hw, hw, generator=g).to(device)
            z = torch.randn(b, cout, hw, hw, generator=g).to(device)
            y = torch.randint(0, n_cls, (b,), generator=g).to(device)
            ni = torch.rand(2 * n_cls, cout, hw, hw, generator=g).to(device)
            geo = ((1, 1), (1, 1), (1, 1), 1)

            def eager_conv():
                d = ref.modulation(eager_neuromodulator(y, ni, slots), lam, theta) * eager_act_grad(z, "tanh")
                _, dw, db = torch.ops.aten.convolution_backward(
                    d, inp, w, [cout], (1, 1), (1, 1), (1, 1), False, (0, 0), 1, (False, True, True))
                w.sub_(dw, alpha=lr)
                bias.sub_(db, alpha=lr)

            t_op, base = timer.against(
                lambda: ops.naca_conv_update_(w, bias, inp, z, y, ni, *geo, "tanh", lr, lam, theta),
                {"eager": eager_conv,
                 "reference": no_grad(lambda: ref.naca_conv_update(w, bias, inp, z, y, ni, *geo, "tanh", lr, lam, theta,
                                                                im2col=False))})
            flops = 2 * b * cout * hw * hw * cin * 9
            nbytes = 4 * (2 * w.numel() + inp.numel() + z.numel() + ni.numel() + 2 * cout) + 8 * b  # + labels
            add("naca_conv_update_", f"B={b} {cin}->{cout} {hw}x{hw} k3", dtype, t_op, base, nbytes, flops)

            sig = torch.randn(b, cout, hw, hw, generator=g).to(device)

            def eager_conv_plast():
                d = sig * eager_act_grad(z, "tanh")
                _, dw, db = torch.ops.aten.convolution_backward(
                    d, inp, w, [cout], (1, 1), (1, 1), (1, 1), False, (0, 0), 1, (False, True, True))
                w.sub_(dw, alpha=lr)
                bias.sub_(db, alpha=lr)

            t_op, base = timer.against(
                lambda: ops.conv_plasticity_update_(w, bias, inp, z, sig, *geo, "tanh", lr),
                {"eager": eager_conv_plast,
                 "reference": no_grad(lambda: ref.conv_plasticity_update(w, bias, inp, z, sig, *geo, "tanh", lr,
                                                                      im2col=False))})
            nbytes = 4 * (2 * w.numel() + inp.numel() + 2 * z.numel() + 2 * cout)
            add("conv_plasticity_update_", f"B={b} {cin}->{cout} {hw}x{hw} k3", dtype, t_op, base, nbytes, flops)

        for n in cases["elementwise"]:
            g = torch.Generator().manual_seed(n)
            level = torch.rand(n, generator=g).to(device)
            t_op, base = timer.against(lambda: ops.modulation(level, lam, theta),
                                       {"reference": no_grad(lambda: ref.modulation(level, lam, theta))})
            add("modulation", f"n={n}", dtype, t_op, base, 4 * 2 * n, 0)

            b = max(1, n // 1000)
            h = n // b
            ni = torch.rand(2 * n_cls, h, generator=g).to(device)
            y = torch.randint(0, n_cls, (b,), generator=g).to(device)
            t_op, base = timer.against(lambda: ops.neuromodulator(y, ni),
                                       {"eager": lambda: eager_neuromodulator(y, ni, slots),
                                        "reference": no_grad(lambda: ref.neuromodulator(y, ni))})
            add("neuromodulator", f"B={b} H={h}", dtype, t_op, base, 4 * (b * h + 2 * n_cls * h) + 8 * b, 0)

        if hasattr(torch.ops.naca, "sbp_update_"):
            h, i, o = (32, 24, 10) if quick else (1000, 784, 10)
            g = torch.Generator().manual_seed(7)
            w_in, dw_in = torch.randn(h, i, generator=g).to(device), torch.randn(h, i, generator=g).to(device)
            w_out, dw_out = torch.randn(o, h, generator=g).to(device), torch.randn(o, h, generator=g).to(device)
            t_op, base = timer.against(lambda: ops.sbp_update_(w_in, w_out, dw_in, dw_out),
                                       {"reference": no_grad(lambda: ref.sbp_update(w_in, w_out, dw_in, dw_out))})
            add("sbp_update_", f"I={i} H={h} O={o}", dtype, t_op, base, 4 * 3 * (h * i + o * h), 0)
    return {"ops": rows}

