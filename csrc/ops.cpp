// Every schema of the `naca` operator namespace, in one place. Kernels live in
// csrc/cpu/<op>_cpu.cpp and cuda/<op>_cuda.cu; fake (meta) kernels for
// torch.compile and opcheck are registered from Python (torch_plugin/ops.py).
// Ops ending in `_` update their (a!)/(b!) arguments in place and return nothing.
#include <torch/library.h>

TORCH_LIBRARY(naca, m) {
  // E, the N x 2N class-expectation matrix (0.5 at columns k_c, k_c + 1 of row c).
  m.def("expectation_matrix(int num_classes, *, ScalarType? dtype=None, Device? device=None) -> Tensor");
  // NL = E[labels] @ NI: the neuromodulator level, shape (B, *ni.shape[1:]).
  m.def("neuromodulator(Tensor labels, Tensor ni) -> Tensor");
  // f(level): the nonlinear modulation curve, elementwise.
  m.def("modulation(Tensor level, float lam=0.5, float theta=1.2) -> Tensor");
  // weight -= lr * (signal * act'(preact))^T @ pre; bias -= lr * sum_b(signal * act'(preact)).
  m.def(
      "plasticity_update_(Tensor(a!) weight, Tensor(b!)? bias, Tensor pre, Tensor preact, "
      "Tensor signal, str activation, float lr) -> ()");
  // plasticity_update_ with signal = f(neuromodulator(labels, ni)), fused.
  m.def(
      "naca_hidden_update_(Tensor(a!) weight, Tensor(b!)? bias, Tensor pre, Tensor preact, "
      "Tensor labels, Tensor ni, str activation, float lr, float lam=0.5, float theta=1.2) -> ()");
  // Conv2d form of plasticity_update_: weight -= lr * conv_weight_grad(input, signal * act'(preact)).
  m.def(
      "conv_plasticity_update_(Tensor(a!) weight, Tensor(b!)? bias, Tensor input, Tensor preact, "
      "Tensor signal, int[2] stride, int[2] padding, int[2] dilation, int groups, "
      "str activation, float lr) -> ()");
  // conv_plasticity_update_ with signal = f(neuromodulator(labels, ni)) per (channel, y, x), fused.
  m.def(
      "naca_conv_update_(Tensor(a!) weight, Tensor(b!)? bias, Tensor input, Tensor preact, "
      "Tensor labels, Tensor ni, int[2] stride, int[2] padding, int[2] dilation, int groups, "
      "str activation, float lr, float lam=0.5, float theta=1.2) -> ()");
}
