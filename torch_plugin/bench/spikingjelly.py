"""The comparison with SpikingJelly (part of the ``snn`` section), when ``spikingjelly`` is importable."""
from __future__ import annotations

import torch

from .. import ops
from .harness import Timer


def bench_spikingjelly(device: torch.device, timer: Timer, quick: bool, notes: list) -> list:
    """lif_forward and lif_forward + stdp_update_ against SpikingJelly's multi-step LIFNode and
    STDPLearner, when ``spikingjelly`` is importable (``pip install spikingjelly``).

    Same neuron: LIFNode(tau=1.25, decay_input=False, v_reset=0, v_threshold=0.5) integrates
    V_t = (1 - 1/tau) V_{t-1} + I_t = 0.2 V_{t-1} + I_t with a hard reset, lif_forward's defaults
    (the share of differing spikes is recorded as ``spike_mismatch``; SpikingJelly fires at
    V >= threshold, lif_forward at V > threshold). The pipeline row times one unsupervised STDP
    step from input spikes: the synapse's forward (a (T B) x I x H GEMM), the LIF scan and the
    STDP weight change (tau_pre = tau_post = 20, no weight dependence), added to the weight.
    SpikingJelly's traces decay by (1 - 1/tau) per step, ours by exp(-1/tau): a timing, not a
    numerical, comparison.
    """
    try:
        import spikingjelly
        from spikingjelly.activation_based import functional, learning, neuron
    except Exception as e:  # noqa: BLE001  (ImportError, or a missing dependency of it)
        notes.append(f"SpikingJelly not importable ({type(e).__name__}: {e}): comparison skipped "
                     "(pip install spikingjelly)")
        return []
    version = getattr(spikingjelly, "__version__", None)
    if version is None:
        from importlib.metadata import version as _v
        version = _v("spikingjelly")
    notes.append(f"SpikingJelly {version}: LIFNode(step_mode='m', tau=1.25, decay_input=False, v_threshold=0.5, "
                 "v_reset=0) and STDPLearner(step_mode='m', tau_pre=tau_post=20), default backend")
    b, i, h = (4, 16, 12) if quick else ((1024, 784, 1000) if device.type == "cuda" else (64, 784, 1000))
    rows = []
    cuda = device.type == "cuda"
    # SpikingJelly's STDP materializes (B, H, I) products (seconds per call on the CPU): 3 timed
    # runs, and T = 20 only on the CPU.
    sj_repeats = None if quick else 3

    def sj_timer(fn):
        for _ in range(2):  # its kernels are compiled or selected at the first calls
            fn()
        return timer(fn, repeats=sj_repeats)

    for t in ((3,) if quick else ((20, 100) if cuda else (20,))):
        g = torch.Generator().manual_seed(100 + t)
        cur = (0.8 * torch.rand(t, b, h, generator=g)).to(device)
        pre = (torch.rand(t, b, i, generator=g) < 0.2).float().to(device)
        shape = f"T={t} B={b} I={i} H={h}"
        sn = neuron.LIFNode(tau=1.25, decay_input=False, v_threshold=0.5, v_reset=0.0, step_mode="m").to(device)

        def sj_lif():
            with torch.no_grad():
                out = sn(cur)
            functional.reset_net(sn)
            return out

        mismatch = (sj_lif() != ops.lif_forward(cur, 0.2, 0.5)[0]).float().mean().item()
        t_op, t_sj = timer(lambda: ops.lif_forward(cur, 0.2, 0.5)), sj_timer(sj_lif)
        rows.append({"op": "lif_forward vs SpikingJelly LIFNode", "shape": shape, "op_ms": 1e3 * t_op,
                     "reference_ms": 1e3 * t_sj, "vs_reference": t_sj / t_op, "spike_mismatch": mismatch})

        w = (0.05 * torch.rand(h, i, generator=g)).to(device)
        fc = torch.nn.Linear(i, h, bias=False).to(device)
        with torch.no_grad():
            fc.weight.copy_(w)
        sn2 = neuron.LIFNode(tau=1.25, decay_input=False, v_threshold=0.5, v_reset=0.0, step_mode="m").to(device)
        stdp = learning.STDPLearner(step_mode="m", synapse=fc, sn=sn2, tau_pre=20.0, tau_post=20.0)

        def sj_step():
            with torch.no_grad():
                sn2(fc(pre))
                fc.weight.add_(stdp.step(on_grad=False), alpha=1e-4)
            functional.reset_net(sn2)
            stdp.reset()

        def ours_step():
            s, _ = ops.lif_forward(torch.nn.functional.linear(pre, w), 0.2, 0.5)
            ops.stdp_update_(w, pre, s, 20.0, 20.0, 1.0, 1.0, 0.0, 1.0, "none", None, 1e-4)

        t_op, t_sj = timer(ours_step), sj_timer(sj_step)
        rows.append({"op": "linear + lif_forward + stdp_update_ vs SpikingJelly LIFNode + STDPLearner",
                     "shape": shape, "op_ms": 1e3 * t_op, "reference_ms": 1e3 * t_sj, "vs_reference": t_sj / t_op})
    return rows

