"""The ``snn`` section: the fused multi-step LIF and the NACA-SNN / STDP updates (T = 20, 100) vs the
reference's loop over T; the fused STP scan and homeostatic relaxation (T or iters = 20, 100) vs their
loops of elementwise torch ops (``nn.stp_forward_torch``, ``nn.homeostatic_relax_torch``); and, when
SpikingJelly is importable, its LIF and STDP (``bench.spikingjelly``)."""
from __future__ import annotations

import torch

from .. import ops
from .. import reference as ref
from ..nn import homeostatic_relax_torch, stp_forward_torch
from .harness import Timer, no_grad, roofline
from .spikingjelly import bench_spikingjelly


def bench_snn(device: torch.device, timer: Timer, quick: bool) -> tuple[list, list]:
    """(rows, notes): one row per op and T; notes say what was skipped and how SpikingJelly ran."""
    notes = []
    have = {name: hasattr(torch.ops.naca, name)
            for name in ("lif_forward", "naca_snn_update_", "naca_snn_chain_update_", "stdp_update_", "stp_forward",
                         "homeostatic_relax")}
    if not all(have.values()):
        notes.append("skipped ops not built: " + ", ".join(k for k, v in have.items() if not v))
    if not have["lif_forward"]:
        return [], notes
    rows = bench_spikingjelly(device, timer, quick, notes) if have["stdp_update_"] else []
    b, i, h = (4, 16, 12) if quick else ((1024, 784, 1000) if device.type == "cuda" else (64, 784, 1000))
    steps = (3,) if quick else (20, 100)
    decay, th, lens, lr = 0.2, 0.5, 0.5, 1e-3
    for t in steps:
        g = torch.Generator().manual_seed(t)
        cur = (0.8 * torch.rand(t, b, h, generator=g)).to(device)
        pre = (torch.rand(t, b, i, generator=g) < 0.2).float().to(device)
        w = (0.1 * torch.rand(h, i, generator=g)).to(device)
        bias = torch.zeros(h, device=device)
        sig = torch.randn(b, h, generator=g).to(device)
        shape = f"T={t} B={b} I={i} H={h}"
        lif = lambda: ops.lif_forward(cur, decay, th)
        lif_ref = no_grad(lambda: ref.lif_forward(cur, decay, th))
        t_op, t_ref = timer.interleaved([lif, lif_ref])
        rows.append({"op": "lif_forward", "shape": shape, "op_ms": 1e3 * t_op, "reference_ms": 1e3 * t_ref,
                     "vs_reference": t_ref / t_op, "bytes": 3 * 4 * t * b * h})
        spikes, volts = lif()
        if have["naca_snn_update_"]:
            def fused():
                s, v = ops.lif_forward(cur, decay, th)
                ops.naca_snn_update_(w, bias, pre, v, s, sig, th, lens, lr, True)

            def unfused():
                with torch.no_grad():
                    s, v = ref.lif_forward(cur, decay, th)
                    return ref.naca_snn_update(w, bias, pre, v, s, sig, th, lens, lr, True)

            t_upd, t_upd_ref = timer.interleaved([
                lambda: ops.naca_snn_update_(w, bias, pre, volts, spikes, sig, th, lens, lr, True),
                no_grad(lambda: ref.naca_snn_update(w, bias, pre, volts, spikes, sig, th, lens, lr, True))])
            rows.append({"op": "naca_snn_update_", "shape": shape, "op_ms": 1e3 * t_upd,
                         "reference_ms": 1e3 * t_upd_ref, "vs_reference": t_upd_ref / t_upd,
                         "flops": 2 * t * b * h * i})
            t_f, t_u = timer.interleaved([fused, unfused])
            rows.append({"op": "lif_forward + naca_snn_update_", "shape": shape, "op_ms": 1e3 * t_f,
                         "reference_ms": 1e3 * t_u, "vs_reference": t_u / t_f})
        if have["naca_snn_chain_update_"]:  # the authors' class-CL rule; the reference runs autograd
            def chain():
                ops.naca_snn_chain_update_(w, bias, pre, volts, spikes, sig, decay, th, lens, "hard", "sigmoid", lr)

            t_upd, t_upd_ref = timer.interleaved([chain, no_grad(lambda: ref.naca_snn_chain_update(
                w, bias, pre, volts, spikes, sig, decay, th, lens, "hard", "sigmoid", lr))])
            rows.append({"op": "naca_snn_chain_update_", "shape": shape, "op_ms": 1e3 * t_upd,
                         "reference_ms": 1e3 * t_upd_ref, "vs_reference": t_upd_ref / t_upd,
                         "flops": 2 * t * b * h * i})
        if have["stdp_update_"]:
            ones = torch.ones((), device=device)
            ws = (0.5 * torch.ones(h, i)).to(device)

            def fused_stdp():
                s, _ = ops.lif_forward(cur, decay, th)
                ops.stdp_update_(ws, pre, s)

            def unfused_stdp():
                with torch.no_grad():
                    s, _ = ref.lif_forward(cur, decay, th)
                    return ref.stdp_update(ws, pre, s, modulator=ones)

            t_upd, t_upd_ref = timer.interleaved([lambda: ops.stdp_update_(ws, pre, spikes),
                                                  no_grad(lambda: ref.stdp_update(ws, pre, spikes, modulator=ones))])
            # Hard bounds need only a_plus ltp - a_minus ltd: one (T B)-row GEMM; soft bounds
            # both sums: one GEMM with twice the rows of the weight.
            rows.append({"op": "stdp_update_", "shape": shape, "op_ms": 1e3 * t_upd, "reference_ms": 1e3 * t_upd_ref,
                         "vs_reference": t_upd_ref / t_upd, "flops": 2 * t * b * h * i})
            t_soft, t_soft_ref = timer.interleaved([
                lambda: ops.stdp_update_(ws, pre, spikes, bound="soft"),
                no_grad(lambda: ref.stdp_update(ws, pre, spikes, modulator=ones, bound="soft"))])
            rows.append({"op": "stdp_update_ (soft bounds)", "shape": shape, "op_ms": 1e3 * t_soft,
                         "reference_ms": 1e3 * t_soft_ref, "vs_reference": t_soft_ref / t_soft,
                         "flops": 4 * t * b * h * i})
            t_f, t_u = timer.interleaved([fused_stdp, unfused_stdp])
            rows.append({"op": "lif_forward + stdp_update_", "shape": shape, "op_ms": 1e3 * t_f,
                         "reference_ms": 1e3 * t_u, "vs_reference": t_u / t_f})
        if have["stp_forward"]:  # vs stp_forward_torch, the loop nn.stp_forward runs when a gradient is needed
            spk = (torch.rand(t, b, h, generator=g) < 0.2).float().to(device)
            t_op, t_ref = timer.interleaved([lambda: ops.stp_forward(spk),
                                             no_grad(lambda: stp_forward_torch(spk))])
            rows.append({"op": "stp_forward", "shape": f"T={t} B={b} N={h}", "op_ms": 1e3 * t_op,
                         "reference_ms": 1e3 * t_ref, "vs_reference": t_ref / t_op, "bytes": 2 * 4 * t * b * h})
        if have["homeostatic_relax"]:  # iters = T steps on a (B, H) state, vs the elementwise torch loop
            state = torch.rand(b, h, generator=g).to(device)
            drive = torch.rand(b, h, generator=g).to(device)
            # The op stops where an element reaches its fixed point (exact; CPU: checked every 4 steps),
            # the torch loop never: at eps 0.5 these states settle after ~40 steps, so the iters=100 row
            # is mostly that early stop; at eps 0.01 nothing settles within 100 steps.
            for eps, what in ((0.5, "eps 0.5"), (0.01, "eps 0.01, no early stop")):
                t_op, t_ref = timer.interleaved([lambda: ops.homeostatic_relax(state, drive, eps, t),
                                                 no_grad(lambda: homeostatic_relax_torch(state, drive, eps, t))])
                rows.append({"op": f"homeostatic_relax ({what})", "shape": f"iters={t} B={b} H={h}",
                             "op_ms": 1e3 * t_op, "reference_ms": 1e3 * t_ref, "vs_reference": t_ref / t_op,
                             "bytes": 3 * 4 * b * h})
    return rows, notes



def add_snn_roofline(rows: list, bounds: dict) -> None:
    """Adds the roofline figures to the rows that count their bytes or FLOPs."""
    for row in rows:
        if "bytes" in row or "flops" in row:
            row.update(roofline(row["op_ms"] / 1e3, row.get("bytes", 0), row.get("flops", 0), bounds))


def run(device: torch.device, timer: Timer, quick: bool, bounds: dict) -> dict:
    """{"snn": rows, "snn_notes": notes}."""
    rows, notes = bench_snn(device, timer, quick)
    add_snn_roofline(rows, bounds)
    return {"snn": rows, "snn_notes": notes}
