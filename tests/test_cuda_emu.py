"""The CUDA kernels, tested on a machine without a GPU.

tests/cuda_emu/build.py translates cuda/*.cu into C++ whose launches run every
thread of the grid in turn on the CPU, and registers the ops, built exactly as
for CUDA but for CPU tensors, as ``torch.ops.naca_emu.*``. Here each one is
checked against the CPU kernels of ``torch.ops.naca`` (themselves checked against
tests' pure-PyTorch references elsewhere): on the samples of op_samples.py in
float32 and float64 (to rounding), in float16 and bfloat16, which only CUDA
accepts (against float32 on the same rounded inputs), and on inputs large enough
that every grid-stride loop goes round more than once. A kernel whose threads
depended on each other would give other results when the grid runs in the
opposite order or with another grid size: both must be bit-identical.
The learners, trained with every op call sent to the emulated kernels, must end
with the weights the CPU kernels give.
With NACA_EMU_SANITIZE=1 (.ci/sanitize.sh) the same tests run under
AddressSanitizer and UBSan, which stop at any out-of-bounds access.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
import torch

import torch_plugin  # noqa: F401  (loads torch.ops.naca)
from conftest import tol
from cuda_emu.build import build
from op_samples import SAMPLES

# Ops whose kernels are in cuda/: all but the composite ones (expectation_matrix,
# registered once for every backend; sbp_update_, ATen calls only).
COMPOSITE = {"expectation_matrix", "sbp_update_"}
KERNEL_OPS = sorted(set(SAMPLES) - COMPOSITE)
CASES = [pytest.param(op, i, id=f"{op}-{i}") for op in KERNEL_OPS for i in range(len(SAMPLES[op]))]
HALF = [torch.float16, torch.bfloat16]


@pytest.fixture(scope="module", autouse=True)
def emulation():
    build()  # compiles on first use (about 2 minutes on 2 cores), then cached; loads the library


@contextmanager
def emu_env(**values):
    """Set NACA_EMU_* variables (read by the emulated launches) for the block."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def clone(x):
    if isinstance(x, torch.Tensor):
        return x.clone()
    if isinstance(x, (list, tuple)):
        return type(x)(clone(v) for v in x)
    return x


def cast(x, dtype):
    """Floating tensors to dtype, the rest as they are."""
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.to(dtype)
    if isinstance(x, (list, tuple)):
        return type(x)(cast(v, dtype) for v in x)
    if isinstance(x, dict):
        return {k: cast(v, dtype) for k, v in x.items()}
    return x


def run(ns, op, args, kwargs):
    """Call ns.op on copies; return every result: outputs, then the arguments it may write."""
    args, kwargs = clone(args), dict(kwargs)
    out = getattr(ns, op)(*args, **kwargs)
    out = list(out) if isinstance(out, (list, tuple)) else ([] if out is None else [out])
    return out + [args[i] for i in written_args(op, args)]


def written_args(op, args):
    """Positions of the tensors op writes in place (declared (a!) in its schema), as given."""
    schema = getattr(torch.ops.naca, op).default._schema
    return [i for i, a in enumerate(schema.arguments)
            if a.alias_info is not None and a.alias_info.is_write and i < len(args) and args[i] is not None]


def emu(op, args, kwargs, **env):
    with emu_env(**env):
        return run(torch.ops.naca_emu, op, args, kwargs)


def cpu(op, args, kwargs):
    return run(torch.ops.naca, op, args, kwargs)


def assert_close_to_cpu(op, got, want, rtol, atol):
    assert len(got) == len(want), op
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype, (op, k)
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol, msg=lambda m: f"{op} result {k}: {m}")


def launches():
    return torch.ops.naca_emu.launch_count()


# --- every op, emulated ---------------------------------------------------------------

def test_every_kernel_op_is_emulated():
    """Each op with CUDA kernels has them in the emulation, and a call launches at least one."""
    for op in KERNEL_OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"naca_emu::{op}", "CPU"), op
        args, kwargs = SAMPLES[op][0]("cpu")
        before = launches()
        emu(op, args, kwargs)
        assert launches() > before, f"naca_emu.{op} ran no emulated kernel"


@pytest.mark.parametrize("op,i", CASES)
def test_matches_cpu_kernels(op, i):
    """float32/float64: the CUDA kernels compute what the CPU kernels do, to rounding."""
    args, kwargs = SAMPLES[op][i]("cpu")
    want = cpu(op, args, kwargs)
    got = emu(op, args, kwargs)
    dtype = next((t.dtype for t in want if t.is_floating_point()), torch.float32)
    rtol, atol = (1e-12, 1e-12) if dtype == torch.float64 else (2e-6, 2e-6)
    assert_close_to_cpu(op, got, want, rtol, atol)


@pytest.mark.parametrize("op,i", CASES)
def test_same_result_in_any_thread_order_and_grid(op, i):
    """Threads must not depend on each other: the grid run backwards, or with 1 SM's worth of
    blocks (grid-stride loops go round more often), gives bit-identical results."""
    args, kwargs = SAMPLES[op][i]("cpu")
    ref = emu(op, args, kwargs)
    for env in (dict(NACA_EMU_ORDER="reverse"), dict(NACA_EMU_SMS=1), dict(NACA_EMU_SMS=1, NACA_EMU_ORDER="reverse")):
        for k, (g, w) in enumerate(zip(emu(op, args, kwargs, **env), ref)):
            assert torch.equal(g, w), (op, env, k)


def weight_change_close(op, got, want, before, dtype):
    """A low-precision in-place update: the change of each written tensor, against float32's,
    within tol(dtype) of the change's scale plus one rounding of the stored value."""
    rtol, _ = tol(dtype)
    eps = torch.finfo(dtype).eps
    for k, (g, w, b) in enumerate(zip(got, want, before)):
        d_got = g.double() - b.double()
        d_want = w.double() - b.double()
        scale = d_want.abs().max().item()
        allowed = rtol * scale + eps * b.double().abs() + 1e-30
        assert scale > 0, f"{op}: the float32 update changed nothing; the sample tests nothing"
        assert ((d_got - d_want).abs() <= allowed).all(), (
            f"{op} written {k}: max |change - float32 change| {(d_got - d_want).abs().max().item():.3g}"
            f" (change scale {scale:.3g})")


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("op,i", CASES)
def test_half_precision(op, i, dtype):
    """float16/bfloat16 (CUDA only): the op on the rounded inputs, against float32 on the same values."""
    args, kwargs = SAMPLES[op][i]("cpu")
    args, kwargs = cast(args, torch.float32), cast(kwargs, torch.float32)
    low_args, low_kwargs = cast(args, dtype), cast(kwargs, dtype)
    # float32 on exactly the values the low-precision call sees.
    want = cpu(op, cast(low_args, torch.float32), cast(low_kwargs, torch.float32))
    got = emu(op, low_args, low_kwargs)
    assert all(g.dtype == dtype for g in got if g.is_floating_point()), op
    written = written_args(op, low_args)
    if written:  # in-place updates: compare the changes
        weight_change_close(op, got, want, [low_args[i] for i in written], dtype)
    else:
        rtol, atol = tol(dtype)
        for k, (g, w) in enumerate(zip(got, want)):
            torch.testing.assert_close(g.float(), w.to(dtype).float(), rtol=rtol, atol=atol,
                                       msg=lambda m: f"{op} result {k}: {m}")


# --- large inputs: every grid-stride loop goes round more than once ----------------------

def _g(seed):
    return torch.Generator().manual_seed(seed)


def big_cases():
    """(op, args, kwargs) with more elements than a 1-SM grid has threads (16 blocks x 256)."""
    g = _g(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    u = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    lab = lambda b, n: torch.randint(0, n, (b,), generator=g)  # noqa: E731
    spikes = lambda *s: (torch.rand(*s, generator=g) < 0.3).float()  # noqa: E731
    b, f, n, i = 70, 600, 10, 90  # naca_hidden_update_'s 2D grid: 3 x 10 blocks, so blocks stride over rows
    labels_unchecked = lab(b, n)
    labels_unchecked[::7] = n + 3
    t, bs, h = 4, 20, 300  # 6000 neurons
    return [
        ("modulation", (u(70000) * 2,), dict(lam=0.4, theta=1.1)),
        ("neuromodulator", (lab(b, n), u(2 * n, f)), {}),
        ("neuromodulator", (labels_unchecked, u(2 * n, f)), dict(check_labels=False)),
        ("plasticity_update_", (r(f, i), r(f), r(b, i), torch.tanh(r(b, f)), r(b, f), "tanh", 0.01),
         dict(from_output=True)),
        ("naca_hidden_update_", (r(f, i), r(f), r(b, i), torch.sigmoid(r(b, f)), lab(b, n), u(2 * n, f),
                                 "sigmoid", 0.01), dict(from_output=True)),
        ("naca_hidden_update_", (r(f, i), None, r(b, i), r(b, f), labels_unchecked, u(2 * n, f), "relu", 0.01),
         dict(check_labels=False)),
        ("naca_output_update_", (r(n, i), r(n), r(5000, i), r(5000, n), lab(5000, n), 0.01), {}),
        ("conv_plasticity_update_", (r(8, 3, 3, 3), r(8), r(6, 3, 20, 20), torch.tanh(r(6, 8, 18, 18)),
                                     r(6, 8, 18, 18), [1, 1], [0, 0], [1, 1], 1, "tanh", 0.01),
         dict(from_output=True)),
        ("naca_conv_update_", (r(8, 3, 3, 3), r(8), r(6, 3, 20, 20), torch.tanh(r(6, 8, 18, 18)), lab(6, n),
                               u(2 * n, 8, 18, 18), [1, 1], [0, 0], [1, 1], 1, "tanh", 0.01),
         dict(from_output=True)),
        ("lif_forward", (u(t, bs, h),), dict(decay=0.3, threshold=0.4, reset="soft")),
        ("naca_snn_update_", (r(h, i), r(h), spikes(t, bs, i), u(t, bs, h), spikes(t, bs, h), r(bs, h)),
         dict(threshold=0.5, lens=0.3, lr=0.01, all_steps=True)),
        ("naca_snn_chain_update_", (r(h, i), r(h), spikes(t, bs, i), u(t, bs, h), spikes(t, bs, h), r(bs, h)),
         dict(decay=0.2, threshold=0.5, lens=0.3, reset="hard", current="sigmoid", lr=0.01)),
        ("stdp_update_", (u(h, i), spikes(t, bs, i), spikes(t, bs, h)), dict(bound="soft", modulator=r(bs, h))),
        ("stp_forward", (spikes(t, bs, h),), {}),
        ("homeostatic_relax", (u(70000), u(70000)), dict(eps=0.3, iters=5)),
    ]


BIG = [pytest.param(*c, id=f"{c[0]}-{k}") for k, c in enumerate(big_cases())]


@pytest.mark.parametrize("op,args,kwargs", BIG)
def test_large_inputs(op, args, kwargs):
    """Elements > threads of the grid: the emulated kernels still match the CPU kernels, and any grid
    size and thread order gives bit-identical results."""
    want = cpu(op, args, kwargs)
    got = emu(op, args, kwargs, NACA_EMU_SMS=1)
    assert_close_to_cpu(op, got, want, 2e-5, 2e-5)
    for env in (dict(), dict(NACA_EMU_SMS=3, NACA_EMU_ORDER="reverse")):
        for k, (g, w) in enumerate(zip(emu(op, args, kwargs, **env), got)):
            assert torch.equal(g, w), (op, env, k)


# --- one formula, one result: bit for bit where both backends share naca_math.h ----------

# Ops whose CPU and CUDA kernels evaluate the same naca_math.h functions elementwise (no ATen
# transcendental, no reduction in between): their outputs must be identical, not close.
SHARED_OUTPUTS = ["modulation", "neuromodulator", "lif_forward", "stp_forward", "homeostatic_relax"]


@pytest.mark.parametrize("op,i", [pytest.param(op, i, id=f"{op}-{i}") for op in SHARED_OUTPUTS
                                  for i in range(len(SAMPLES[op]))])
def test_shared_formulas_give_identical_outputs(op, i):
    args, kwargs = SAMPLES[op][i]("cpu")
    want, got = cpu(op, args, kwargs), emu(op, args, kwargs)
    for k, (g, w) in enumerate(zip(got, want)):
        assert torch.equal(g, w), f"{op} result {k}: max |diff| {(g.double() - w.double()).abs().max().item():.3g}"


def _delta_probes():
    """Update ops whose per-unit delta is a shared formula, called so that the weight becomes the
    delta itself: weight 0, lr -1, and the presynaptic input one-hot per row (an identity), so each
    weight entry is one delta times 1 plus exact zeros, whatever the GEMM's order."""
    g = _g(5)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    u = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    b, h, n, t = 24, 40, 10, 3
    lab = torch.randint(0, n, (b,), generator=g)
    lab_few = lab[:6]
    spikes = lambda *s: (torch.rand(*s, generator=g) < 0.4).float()  # noqa: E731
    probes = []
    for act in ("tanh", "sigmoid", "relu", "identity"):  # from h: 1 - h^2, h (1 - h), 1[h > 0], 1
        probes.append(("plasticity_update_", (torch.zeros(h, b), None, torch.eye(b), u(b, h), r(b, h), act, -1.0),
                       dict(from_output=True), act))
        for lab_b in (lab, lab_few):  # batch > classes: the CPU's table of f; batch < classes: per element
            nb = lab_b.shape[0]
            probes.append(("naca_hidden_update_", (torch.zeros(h, nb), None, torch.eye(nb), u(nb, h), lab_b,
                                                   u(2 * n, h) * 1.5, act, -1.0), dict(from_output=True), act))
    for act in ("relu", "identity"):  # from z: no transcendental
        probes.append(("plasticity_update_", (torch.zeros(h, b), None, torch.eye(b), r(b, h), r(b, h), act, -1.0),
                       {}, act))
    rows = t * 4
    pre = torch.eye(rows).reshape(t, 4, rows)
    v, s = u(t, 4, h), spikes(t, 4, h)
    probes.append(("naca_snn_update_", (torch.zeros(h, rows), None, pre, v, s, r(4, h)),
                   dict(threshold=0.5, lens=0.3, lr=-1.0), "all steps"))
    for current in ("linear", "sigmoid"):
        probes.append(("naca_snn_chain_update_", (torch.zeros(h, rows), None, pre, v, s, r(4, h)),
                       dict(decay=0.3, threshold=0.5, lens=0.3, reset="soft", current=current, lr=-1.0), current))
    return probes


@pytest.mark.parametrize("op,args,kwargs,what", [pytest.param(*p, id=f"{p[0]}-{p[3]}-{k}")
                                                 for k, p in enumerate(_delta_probes())])
def test_shared_formulas_give_identical_deltas(op, args, kwargs, what):
    want, got = cpu(op, args, kwargs), emu(op, args, kwargs)
    assert want[0].abs().sum() > 0, "the probe learned nothing: it tests nothing"
    assert torch.equal(got[0], want[0]), f"{op} ({what}): max |diff| {(got[0] - want[0]).abs().max().item():.3g}"


# --- the emulation's own checks ---------------------------------------------------------

def test_emulated_launch_limits():
    """A grid CUDA would refuse is refused: blockIdx.y above 65535 from a huge batch would be a
    launch failure on the device; the kernel clamps it (by <= 65535), so the op runs."""
    g = _g(1)
    b, f, n = 70000, 1, 2
    args = (torch.randn(f, 3, generator=g), None, torch.randn(b, 3, generator=g), torch.rand(b, f, generator=g),
            torch.randint(0, n, (b,), generator=g), torch.rand(2 * n, f, generator=g), "sigmoid", 0.01)
    got = emu("naca_hidden_update_", args, dict(from_output=True), NACA_EMU_SMS=4096)
    want = cpu("naca_hidden_update_", args, dict(from_output=True))
    assert_close_to_cpu("naca_hidden_update_", got, want, 1e-5, 1e-5)


def test_rejects_what_cuda_rejects():
    """The emulated op keeps the real op's argument checks (same message, weights untouched)."""
    w = torch.randn(4, 3)
    before = w.clone()
    with pytest.raises(RuntimeError, match="argument 'pre' expected shape"):
        torch.ops.naca_emu.plasticity_update_(w, None, torch.randn(2, 5), torch.randn(2, 4), torch.randn(2, 4),
                                              "tanh", 0.1)
    assert torch.equal(w, before)


# --- the learners, end to end, on the emulated kernels -------------------------------------

def _learner_cases():
    from torch_plugin import learn, models

    def ann():
        m = models.mlp(20, [30, 16], 5, activation="tanh", seed=1)
        return m, learn.NACA(m, lr=0.05), torch.rand(12, 20)

    def ann_unchecked_adam():
        m = models.mlp(20, [30], 5, activation="sigmoid", seed=2)
        return m, learn.NACA(m, optimizer=torch.optim.Adam(m.parameters(), lr=1e-2), check_labels=False), \
            torch.rand(12, 20)

    def conv():
        m = models.conv_net((1, 12, 12), 5, channels=(4, 6), hidden=20, seed=3)
        return m, learn.NACA(m, lr=0.05), torch.rand(12, 1, 12, 12)

    def snn(model=None, **rule):
        def make():
            m = models.spiking_mlp(20, [30], 5, T=6, seed=4, init_gain=3.0, **(model or {}))
            return m, learn.NACA(m, lr=0.1, **rule), torch.rand(12, 20)
        return make

    return [("mlp", ann), ("mlp-adam-unchecked", ann_unchecked_adam), ("conv", conv),
            ("snn-all-steps", snn()), ("snn-last-step", snn(all_steps=False)),
            ("snn-chain", snn(membrane_chain=True, model=dict(current="sigmoid", lens=0.2)))]


@pytest.mark.parametrize("name,make", [pytest.param(n, f, id=n) for n, f in _learner_cases()])
def test_learners_on_emulated_kernels(name, make, monkeypatch):
    """Three NACA steps with every torch.ops.naca call sent to the emulated CUDA kernels end with
    the weights the CPU kernels give (the learners' own argument choices: from_output, unchecked
    labels, the spiking rules)."""
    def train(ops_ns):
        torch.manual_seed(0)
        model, learner, x = make()
        y = torch.arange(x.shape[0]) % 5
        with monkeypatch.context() as mp:
            mp.setattr(torch.ops, "naca", ops_ns)
            before = launches()
            for _ in range(3):
                learner.step(x, y)
            ran = launches() - before
        return {k: v.clone() for k, v in model.state_dict().items()}, ran

    want, _ = train(torch.ops.naca)
    got, ran = train(torch.ops.naca_emu)
    assert ran > 0, "the learner never reached the emulated kernels"
    changed = False
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=lambda m: f"{name} {k}: {m}")
    for k, v in want.items():
        torch.manual_seed(0)
        changed |= not torch.equal(v, make()[0].state_dict()[k])
    assert changed, f"{name}: training changed no weight"


def test_translator(tmp_path):
    """Launches are rewritten whatever their layout; device features a serial emulation cannot honour
    are refused rather than emulated wrongly."""
    from cuda_emu.build import translate, translate_launches

    src = "k<scalar_t, true>\n    <<<grid, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(\n  a, f(b, c));"
    assert translate_launches(src) == ("::naca_emu::launch(grid, kThreads, k<scalar_t, true>, a, f(b, c));", 1)
    for bad in ("__shared__ float s[32];", "__syncthreads();", "atomicAdd(p, 1.f);"):
        f = tmp_path / "bad.cu"
        f.write_text(f"__global__ void k(float* p) {{ {bad} }}\nvoid run() {{ k<<<1, 32>>>(nullptr); }}\n")
        with pytest.raises(ValueError, match="not emulated"):
            translate(f)
    f = tmp_path / "shmem.cu"
    f.write_text("__global__ void k() {}\nvoid run() { k<<<1, 32, 128>>>(); }\n")
    with pytest.raises(ValueError, match="dynamic shared memory"):
        translate(f)
