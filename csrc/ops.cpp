// Every schema of the `naca` operator namespace, in one place. Kernels live in
// csrc/cpu/<op>_cpu.cpp and cuda/<op>_cuda.cu; fake (meta) kernels for
// torch.compile and opcheck are registered from Python (torch_plugin/ops.py).
// Ops ending in `_` update their (a!)/(b!) arguments in place and return nothing.
#include <torch/library.h>

TORCH_LIBRARY(naca, m) {
  // E, the N x 2N class-expectation matrix (0.5 at columns k_c, k_c + 1 of row c).
  m.def("expectation_matrix(int num_classes, *, ScalarType? dtype=None, Device? device=None) -> Tensor");
  // NL = E[labels] @ NI: the neuromodulator level, shape (B, *ni.shape[1:]).
  // check_labels=False: the labels are not read on the host; an out-of-range label's row is 0.
  m.def("neuromodulator(Tensor labels, Tensor ni, *, bool check_labels=True) -> Tensor");
  // f(level): the nonlinear modulation curve, elementwise.
  m.def("modulation(Tensor level, float lam=0.5, float theta=1.2) -> Tensor");
  // weight -= lr * (signal * act'(preact))^T @ pre; bias -= lr * sum_b(signal * act'(preact)).
  // from_output=True (every update op): preact holds the activation's output h = act(z)
  // and act' is taken from it (1 - h^2, h (1 - h), 1[h > 0], 1), so z need not be kept.
  m.def(
      "plasticity_update_(Tensor(a!) weight, Tensor(b!)? bias, Tensor pre, Tensor preact, "
      "Tensor signal, str activation, float lr, *, bool from_output=False) -> ()");
  // plasticity_update_ with signal = f(neuromodulator(labels, ni)), fused.
  // check_labels=False (both fused NACA ops): the labels' range is not read on the host
  // (no device synchronization); a sample whose label is out of range gets a zero delta.
  m.def(
      "naca_hidden_update_(Tensor(a!) weight, Tensor(b!)? bias, Tensor pre, Tensor preact, "
      "Tensor labels, Tensor ni, str activation, float lr, float lam=0.5, float theta=1.2, *, "
      "bool from_output=False, bool check_labels=True) -> ()");
  // The NACA output layer's own-error rule, fused: delta = e * sigmoid'(logits) (sigmoid_grad)
  // or e, with e = sigmoid(logits) - onehot(labels); weight (N, I), pre (B, I), logits (B, N).
  m.def(
      "naca_output_update_(Tensor(a!) weight, Tensor(b!)? bias, Tensor pre, Tensor logits, "
      "Tensor labels, float lr, bool sigmoid_grad=True, *, bool check_labels=True) -> ()");
  // Conv2d form of plasticity_update_: weight -= lr * conv_weight_grad(input, signal * act'(preact)).
  m.def(
      "conv_plasticity_update_(Tensor(a!) weight, Tensor(b!)? bias, Tensor input, Tensor preact, "
      "Tensor signal, int[2] stride, int[2] padding, int[2] dilation, int groups, "
      "str activation, float lr, *, bool from_output=False) -> ()");
  // conv_plasticity_update_ with signal = f(neuromodulator(labels, ni)) per (channel, y, x), fused.
  m.def(
      "naca_conv_update_(Tensor(a!) weight, Tensor(b!)? bias, Tensor input, Tensor preact, "
      "Tensor labels, Tensor ni, int[2] stride, int[2] padding, int[2] dilation, int groups, "
      "str activation, float lr, float lam=0.5, float theta=1.2, *, bool from_output=False, "
      "bool check_labels=True) -> ()");
  // Spiking networks (docs/algorithms.md §1.5, §2.2). current (T, B, N) -> spikes, voltages (T, B, N):
  // V_t = decay V_{t-1} (1 - s_{t-1}) + I_t (hard) or decay (V_{t-1} - threshold s_{t-1}) + I_t (soft).
  m.def(
      "lif_forward(Tensor current, float decay=0.2, float threshold=0.5, str reset=\"hard\", "
      "Tensor? v_init=None, Tensor? s_init=None) -> (Tensor spikes, Tensor voltages)");
  // weight -= lr * sum_{t,b} (signal * (1[V_t > threshold - lens] - s_{t-1}))^T pre_t (all t, or t = T-1).
  m.def(
      "naca_snn_update_(Tensor(a!) weight, Tensor(b!)? bias, Tensor pre_spikes, Tensor voltages, "
      "Tensor spikes, Tensor signal, float threshold=0.5, float lens=0.5, float lr=1e-3, "
      "bool all_steps=True) -> ()");
  // The authors' class-incremental SNN rule: signal = dL/ds at the last step T-1, carried back
  // through the membrane (e_t as ds_t/dV_t, the reset by s_{t-1} included) to every step;
  // weight -= lr * sum_{t,b} (g_t * dI_t/da_t)^T pre_t with current I = a ('linear') or
  // sigmoid(a) ('sigmoid'), I_t recovered from the voltages (lif_forward from V = s = 0).
  m.def(
      "naca_snn_chain_update_(Tensor(a!) weight, Tensor(b!)? bias, Tensor pre_spikes, "
      "Tensor voltages, Tensor spikes, Tensor signal, float decay=0.2, float threshold=0.5, "
      "float lens=0.5, str reset=\"hard\", str current=\"linear\", float lr=1e-3) -> ()");
  // Pair-based STDP with exponential traces and an optional third factor (scalar, (H) or (B, H)).
  m.def(
      "stdp_update_(Tensor(a!) weight, Tensor pre_spikes, Tensor post_spikes, float tau_pre=20., "
      "float tau_post=20., float a_plus=0.01, float a_minus=0.012, float w_min=0., float w_max=1., "
      "str bound=\"hard\", Tensor? modulator=None, float lr=1., float dt=1.) -> ()");
  // Tsodyks-Markram short-term plasticity, spikes (T, B, N) -> synaptic current (T, B, N), from u = 0, x = 1, I = 0.
  m.def(
      "stp_forward(Tensor spikes, float U=0.45, float tau_f=10., float tau_d=2., float tau_s=2., "
      "float A=1.) -> Tensor");
  // SBP's homeostatic relaxation, elementwise: `iters` times state <- clamp(state - eps (state - drive), 0, 1).
  m.def("homeostatic_relax(Tensor state, Tensor drive, float eps=0.5, int iters=20) -> Tensor");
  // SBP (docs/algorithms.md §2.1) on w_in (H, I) and w_out (O, H), both (post, pre): lateral spread of the
  // local changes dw_*, self-backpropagated spread onto w_in (on `mask`, lambda_p), w += alpha * dW_final.
  m.def(
      "sbp_update_(Tensor(a!) w_in, Tensor(b!) w_out, Tensor dw_in, Tensor dw_out, Tensor? mask=None, "
      "float fraction=0.2, float alpha_in=0.1, float alpha_out=0.05) -> ()");
}
