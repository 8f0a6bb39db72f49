"""Streaming NACA steps (each layer learns as its forward ends) give the bits of the plain algorithm:
the whole forward first, keeping every layer's input and output, then every layer's update with the
ops. The plain algorithm (tests/naca_plain.py) is written out independently of the learner (its own
forward from the layers' weights, its own op calls); the learner must match it with torch.equal,
step after step."""
import copy

import pytest
import torch
from torch import nn

from naca_plain import LAM, LR, THETA, plain_forward, plain_step, plain_update
from torch_plugin import learn, models
from torch_plugin.learn import NACA, stream
from torch_plugin.nn import NACAConv2d, NACALinear, NACAOutput
from torch_plugin.timing import cpu_peak_bytes

def deep_mlp():
    return nn.Sequential(
        nn.Flatten(), NACALinear(12, 16, 4, activation="tanh"), NACALinear(16, 9, 4, bias=False, activation="relu"),
        nn.Dropout(0.25), NACALinear(9, 11, 4, activation="sigmoid"),
        NACALinear(11, 8, 4, bias=False, activation="identity"), NACALinear(8, 10, 4, activation="tanh"),
        nn.LayerNorm(10, elementwise_affine=False), NACAOutput(10, 4, sigmoid_grad=False))


def conv_mixed():
    return nn.Sequential(
        NACAConv2d(2, 4, 3, 4, input_size=9, stride=2, padding=1, groups=2, activation="relu"),
        NACAConv2d(4, 4, 3, 4, input_size=5, padding=2, dilation=2, bias=False, activation="sigmoid"),
        nn.AvgPool2d(2), nn.Flatten(), NACALinear(16, 7, 4), NACAOutput(7, 4, bias=False))


def spiking(current="linear", bias=True, output_bias=None, seed=1):
    return models.spiking_mlp(12, [10, 9], 4, T=6, seed=seed, current=current,
                              lens=0.2 if current == "sigmoid" else 0.5, bias=bias, output_bias=output_bias,
                              init_gain=2.0)


CASES = {
    "mlp": (deep_mlp, (12,), {}),
    "conv_net": (lambda: models.conv_net((1, 8, 8), 4, channels=(3, 5), hidden=10, seed=1), (1, 8, 8), {}),
    "conv_mixed": (conv_mixed, (2, 9, 9), {}),
    "snn_all_steps": (spiking, (12,), {}),
    "snn_last_step": (lambda: spiking(bias=False), (12,), {"all_steps": False}),
    "snn_chain": (lambda: spiking("sigmoid", bias=False, output_bias=True), (12,), {"membrane_chain": True}),
}


def batches(shape, n=3, batch=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, *shape, generator=g), torch.randint(0, 4, (batch,), generator=g)) for _ in range(n)]


def twins(build, mode, seed=3):
    torch.manual_seed(seed)
    model = build()
    ref = copy.deepcopy(model)
    adam = lambda m: torch.optim.Adam(m.parameters(), lr=1e-2) if mode == "adam" else None  # noqa: E731
    return model, ref, adam(model), adam(ref)


def assert_same(model, ref, opt=None, ref_opt=None):
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), name
    if opt is not None:
        for s, t in zip(opt.state.values(), ref_opt.state.values()):
            assert all(torch.equal(s[k], t[k]) for k in s)


@pytest.mark.parametrize("mode", ["sgd", "adam", "guard"])
@pytest.mark.parametrize("case", list(CASES))
def test_streamed_steps_equal_the_plain_algorithm_bit_for_bit(case, mode):
    build, shape, kw = CASES[case]
    model, ref, opt, ref_opt = twins(build, mode)
    learner = NACA(model, lr=LR, lam=LAM, theta=THETA, optimizer=opt, skip_nonfinite=mode == "guard", **kw)
    moved = False
    for step, (x, y) in enumerate(batches(shape)):
        torch.manual_seed(10 + step)  # the same dropout mask in both
        logits = learner.step(x, y)
        torch.manual_seed(10 + step)
        expected = plain_step(ref, ref_opt, x, y, mode, kw.get("all_steps", True), kw.get("membrane_chain", False))
        assert torch.equal(logits, expected)
        assert_same(model, ref, opt, ref_opt)
        moved = moved or not torch.equal(logits, torch.zeros_like(logits))
    assert learner.steps == 3 and len(learner._signatures) == 1  # steps 2 and 3 streamed
    assert all(m.saved is None and m.sink is None and not m.record for m in learner.layers)  # nothing kept
    first = next(p for p in copy.deepcopy(build)().parameters())
    assert not torch.equal(first, next(model.parameters()))  # it learned


@pytest.mark.parametrize("case", ["mlp", "conv_mixed", "snn_chain"])
def test_streaming_false_gives_the_same_bits(case):
    build, shape, kw = CASES[case]
    a, b, _, _ = twins(build, "sgd")
    la, lb = NACA(a, lr=LR, **kw), NACA(b, lr=LR, streaming=False, **kw)
    for step, (x, y) in enumerate(batches(shape)):
        torch.manual_seed(step)
        la.step(x, y)
        torch.manual_seed(step)
        lb.step(x, y)
    assert_same(a, b)


@pytest.mark.parametrize("mode", ["sgd", "adam", "guard"])
@pytest.mark.parametrize("case", ["mlp", "conv_mixed", "snn_unseeded"])
def test_compiled_streamed_steps_equal_the_plain_algorithm(case, mode):
    """compile_step with the aot_eager backend runs the ATen ops eagerly inside the graph: bit for bit.
    (inductor's own kernels round differently: tests/test_compile.py compares those with allclose.)"""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    # (a seeded encoder's generator is not traceable: the spiking model's encoder draws from the global RNG)
    build, shape, kw = CASES[case] if case in CASES else (lambda: spiking(seed=None), (12,), {})
    model, ref, opt, ref_opt = twins(build, mode)
    learner = NACA(model, lr=LR, lam=LAM, theta=THETA, optimizer=opt, skip_nonfinite=mode == "guard", **kw)
    counter = CompileCounterWithBackend("aot_eager")
    step = learn.compile_step(learner, backend=counter)
    for i, (x, y) in enumerate(batches(shape)):
        torch.manual_seed(10 + i)  # dropout, the encoder
        logits = step(x, y)
        torch.manual_seed(10 + i)
        assert torch.equal(logits, plain_step(ref, ref_opt, x, y, mode))
        assert_same(model, ref, opt, ref_opt)
    assert counter.frame_count >= 1 and learner.steps == 3
    torch._dynamo.reset()


def test_local_update_into_grad_equals_the_plain_pseudo_gradient():
    """local_update(into_grad=True), as DistributedLearner calls it: .grad += the plain update, weights unchanged."""
    model, ref, _, _ = twins(lambda: models.mlp(12, [16, 9], 4, seed=1), "sgd")
    learner = NACA(model, lr=LR, lam=LAM, theta=THETA)
    for x, y in batches((12,)):
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        before = [p.detach().clone() for p in model.parameters()]
        learner.local_update(x, y, into_grad=True)
        _, kept = plain_forward(ref, x)
        for m, saved in kept:
            m.weight.grad, m.bias.grad = torch.ones_like(m.weight), torch.ones_like(m.bias)
            plain_update(m, saved, y, m.weight.grad, m.bias.grad, -1.0, True, False)
        for p, q, w in zip(model.parameters(), ref.parameters(), before):
            assert torch.equal(p.grad, q.grad) and torch.equal(p, w)


def step_peak(depth, streaming, width=64, batch=64):
    torch.manual_seed(0)
    model = models.mlp(width, [width] * depth, 4, seed=0)
    learner = NACA(model, lr=1e-3, streaming=streaming)
    x, y = torch.rand(batch, width), torch.randint(0, 4, (batch,))
    learner.step(x, y)  # the first step of a signature validates (whole forward kept)
    return cpu_peak_bytes(lambda: learner.step(x, y))


def test_step_memory_does_not_grow_with_depth():
    """Allocator bytes of one step (profiler memory events, deterministic): streamed, 12 hidden layers
    cost what 2 cost; keeping the whole forward (streaming=False) costs about one (B, H) per layer more."""
    peaks = {(d, s): step_peak(d, s) for d in (2, 12) for s in (True, False)}
    if None in peaks.values():
        pytest.skip("the profiler's memory events are unavailable")
    assert peaks[12, True] <= 1.1 * peaks[2, True], peaks
    assert peaks[12, False] - peaks[2, False] >= 10 * 64 * 64 * 4, peaks  # 10 more layers' outputs kept


def test_batch_chunks_cover_the_batch_once():
    small = torch.zeros(1024, 16)  # 64 KiB: one call
    assert stream.batch_chunks(small) == [slice(None)]
    big = torch.zeros(1000, 512)   # 2 MB: CHUNKS slices
    chunks = stream.batch_chunks(big)
    assert len(chunks) == stream.CHUNKS
    covered = torch.cat([torch.arange(1000)[s] for s in chunks])
    assert torch.equal(covered, torch.arange(1000))


@pytest.mark.parametrize("mode", ["sgd", "adam"])
def test_large_outputs_update_in_chunks_as_one_update(mode):
    """A hidden output of at least CHUNK_MIN_BYTES is updated in batch slices: the same update as the
    plain algorithm's one op call per layer, up to the order of the additions."""
    model, ref, opt, ref_opt = twins(lambda: models.mlp(64, [512, 512], 4, seed=1), mode)
    learner = NACA(model, lr=LR, lam=LAM, theta=THETA, optimizer=opt)
    for x, y in batches((64,), n=2, batch=1024):
        learner.step(x, y)
        plain_step(ref, ref_opt, x, y, mode)
    if mode == "sgd":  # the chunked path ran: its rounding differs from one call's
        assert not torch.equal(model[1].weight, ref[1].weight)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6 * q.abs().max().item(), msg=name)  # rounding only


def test_chunked_updates_lower_the_step_peak(monkeypatch):
    """The delta of a chunked update is an eighth of the layer's output: the streamed step's peak
    (input, output, delta) drops from three outputs' bytes to about 2 1/8."""
    peak = step_peak(4, True, width=512, batch=1024)
    monkeypatch.setattr(stream, "CHUNKS", 1)
    unchunked = step_peak(4, True, width=512, batch=1024)
    if peak is None or unchunked is None:
        pytest.skip("the profiler's memory events are unavailable")
    out = 1024 * 512 * 4
    assert unchunked >= 2.9 * out and peak <= 2.3 * out, (peak, unchunked)
