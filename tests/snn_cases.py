"""Shared by the spiking tests (tests/test_snn_ops.py, tests/test_snn.py): random input
sequences and the authors' spike function with its surrogate backward."""
import torch


def rand_seq(g, t, b, n, scale=0.6):
    return torch.randn(t, b, n, generator=g, dtype=torch.float64) * scale + 0.3


def shapes(seed):
    g = torch.Generator().manual_seed(seed)
    t = [1, 2, 7, 20][seed % 4]
    return g, t, int(torch.randint(1, 9, (1,), generator=g)), int(torch.randint(1, 40, (1,), generator=g))


class AuthorsSpike(torch.autograd.Function):
    """The authors' spike: Heaviside forward, grad * (1[V > th - lens] - s_{t-1}) backward."""

    @staticmethod
    def forward(ctx, v, s_prev, th, lens):
        ctx.save_for_backward(v, s_prev)
        ctx.th, ctx.lens = th, lens
        return (v > th).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        v, s_prev = ctx.saved_tensors
        return grad * ((v > ctx.th - ctx.lens).to(v.dtype) - s_prev), None, None, None
