"""Short-term plasticity (Tsodyks-Markram) and the homeostatic relaxation of
SBP (ALGORITHMS.md 2.2): the torch compositions against the references and
hand-worked values."""
import pytest
import torch

from torch_plugin import reference as ref
from torch_plugin.nn import STPSynapse, homeostatic_relax, stp_forward


def test_stp_hand_worked():
    s = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64).view(3, 1, 1)
    out = stp_forward(s).flatten()
    # t0: u = 0.45, x = 0.55, I = 0.2475; t1: u = 0.405, x = 0.775, I = 0.12375
    assert out[0].item() == pytest.approx(0.2475)
    assert out[1].item() == pytest.approx(0.12375)
    u2 = 0.405 - 0.0405 + 0.45 * (1 - 0.405)  # 0.63225
    x2 = 0.775 + 0.225 / 2 - u2 * 0.775
    assert out[2].item() == pytest.approx(0.12375 / 2 + u2 * x2)


@pytest.mark.parametrize("seed", range(3))
def test_stp_matches_reference(seed):
    g = torch.Generator().manual_seed(seed)
    t = [1, 5, 20][seed]
    s = (torch.rand(t, 3, 4, generator=g) < 0.4).double()
    params = [dict(), dict(U=0.2, tau_f=50.0, tau_d=5.0, tau_s=3.0, A=2.0), dict(U=0.8)][seed]
    torch.testing.assert_close(STPSynapse(**params)(s), ref.stp(s, **params))


def test_stp_facilitates_or_depresses_under_a_burst():
    burst = torch.ones(10, 1, 1, dtype=torch.float64)
    out = stp_forward(burst).flatten()  # defaults (fast recovery tau_d = 2): facilitation
    assert (out[1:] - out[:-1] / 2)[-1] > (out[1:] - out[:-1] / 2)[0]  # the increment A u x of each spike
    out = stp_forward(burst, U=0.8, tau_d=20.0, tau_s=2.0).flatten()  # slow recovery: depression
    assert (out[1:] - out[:-1] / 2)[-1] < (out[1:] - out[:-1] / 2)[0]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("top_down", [False, True])
def test_homeostatic_relax_matches_reference(seed, top_down):
    g = torch.Generator().manual_seed(seed)
    b, i, h, o = 4, 7, 5, 3
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64) * 0.5
    s_h, s_below, w_in, b_h = torch.rand(b, h, generator=g, dtype=torch.float64), torch.rand(b, i, generator=g, dtype=torch.float64), mk(h, i), mk(h)
    s_above, w_out = (torch.rand(b, o, generator=g, dtype=torch.float64), mk(o, h)) if top_down else (None, None)
    got = homeostatic_relax(s_h, s_below, w_in, s_above, w_out, b_h, eps=0.5, iters=[1, 3, 20][seed])
    want = ref.homeostatic_relax(s_h, s_below, w_in, s_above, w_out, b_h, eps=0.5, iters=[1, 3, 20][seed])
    torch.testing.assert_close(got, want)


def test_homeostatic_relax_converges_to_clamped_drive():
    g = torch.Generator().manual_seed(0)
    s_below, w = torch.rand(2, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    got = homeostatic_relax(torch.zeros(2, 4, dtype=torch.float64), s_below, w, iters=60)
    torch.testing.assert_close(got, (s_below @ w.t()).clamp(0, 1), atol=1e-12, rtol=0)
