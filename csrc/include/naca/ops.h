// naca::ops, one inline function per operator of the `naca` namespace
// (csrc/ops.cpp), with the names, argument order and defaults of the Python
// wrappers in torch_plugin/ops.py (their keyword-only arguments come last, in
// order). Each one calls its op through the dispatcher, so the tensors' device
// picks the kernel: CPU, CUDA (in a CUDA build) or Meta (shapes only).
//
// Shapes: B batch, I inputs, H hidden units, N classes, T time steps,
// C/H/W channels and spatial size. Ops ending in `_` update their first
// argument(s) in place and return nothing; none of them records an autograd
// graph. Every op checks its arguments first and throws c10::Error naming the
// argument ("naca::<op>: argument 'x' expected ..., got ..."), leaving every
// tensor as it was. torch::Tensor is at::Tensor.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

namespace naca::ops {
namespace detail {

// The op's handle, typed with its kernels' C++ signature (the dispatcher checks
// it). Throws when libnaca is not loaded in this process.
template <typename Signature>
c10::TypedOperatorHandle<Signature> find(const char* name) {
  const auto handle = c10::Dispatcher::singleton().findSchema({name, ""});
  TORCH_CHECK(handle.has_value(), "naca::ops: the operator ", name,
              " is not registered in this process: link TorchPluginNaca::naca (libnaca), "
              "or import torch_plugin first");
  return handle->typed<Signature>();
}

}  // namespace detail

/// E, the (N, 2N) class-expectation matrix: row c is 0.5 at columns k_c and k_c + 1.
///
/// k_c = floor(a_c / max(a) * 2(N - 1)), a_c = sqrt(2 ln(N / (c + 1))). For N = 10,
/// k = [18, 15, 13, 11, 9, 8, 7, 5, 3, 0]. Throws when two classes share a slot.
/// dtype: default float32; device: default CPU.
inline at::Tensor expectation_matrix(int64_t num_classes,
                                     std::optional<at::ScalarType> dtype = std::nullopt,
                                     std::optional<at::Device> device = std::nullopt) {
  static const auto op =
      detail::find<at::Tensor(int64_t, std::optional<at::ScalarType>, std::optional<at::Device>)>(
          "naca::expectation_matrix");
  return op.call(num_classes, dtype, device);
}

/// NL = E[labels] @ NI.
///
/// labels: (B) int64 in [0, N). ni: (2N, H) or (2N, C, H, W), the fixed random
/// neuromodulator projection. Returns (B, *ni.shape[1:]) with ni's dtype.
/// check_labels=false: no host read of the labels; a label outside [0, N) gives a zero row.
inline at::Tensor neuromodulator(const at::Tensor& labels, const at::Tensor& ni,
                                 bool check_labels = true) {
  static const auto op = detail::find<at::Tensor(const at::Tensor&, const at::Tensor&, bool)>(
      "naca::neuromodulator");
  return op.call(labels, ni, check_labels);
}

/// f(level), the piecewise-quadratic modulation curve (any shape; f(lam) = 0).
inline at::Tensor modulation(const at::Tensor& level, double lam = 0.5, double theta = 1.2) {
  static const auto op =
      detail::find<at::Tensor(const at::Tensor&, double, double)>("naca::modulation");
  return op.call(level, lam, theta);
}

/// weight -= lr * (signal * act'(preact))^T @ pre; bias -= lr * sum_b(signal * act'(preact)).
///
/// weight: (H, I), bias: (H) or none, pre: (B, I), preact and signal: (B, H).
/// activation: "tanh", "sigmoid", "relu" or "identity". from_output=true: preact
/// holds h = act(z) and act' is taken from it (1 - h^2, h (1 - h), 1[h > 0], 1).
/// To accumulate a pseudo-gradient instead, pass the .grad() buffers and lr = -1.
inline void plasticity_update_(const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                               const at::Tensor& pre, const at::Tensor& preact,
                               const at::Tensor& signal, const std::string& activation, double lr,
                               bool from_output = false) {
  static const auto op =
      detail::find<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&,
                        const at::Tensor&, const at::Tensor&, std::string, double, bool)>(
          "naca::plasticity_update_");
  op.call(weight, bias, pre, preact, signal, activation, lr, from_output);
}

/// The fused NACA hidden-layer update: plasticity_update_ with signal = f(E[labels] @ NI).
///
/// weight: (H, I), bias: (H) or none, pre: (B, I), preact: (B, H) (z, or act(z) with
/// from_output=true), labels: (B) int64, ni: (2N, H). check_labels=true: labels
/// outside [0, N) throw before anything is written (on CUDA: one device
/// synchronization); false: no host read, and such a sample gets a zero delta.
inline void naca_hidden_update_(const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                const at::Tensor& pre, const at::Tensor& preact,
                                const at::Tensor& labels, const at::Tensor& ni,
                                const std::string& activation, double lr, double lam = 0.5,
                                double theta = 1.2, bool from_output = false,
                                bool check_labels = true) {
  static const auto op =
      detail::find<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&,
                        const at::Tensor&, const at::Tensor&, const at::Tensor&, std::string,
                        double, double, double, bool, bool)>("naca::naca_hidden_update_");
  op.call(weight, bias, pre, preact, labels, ni, activation, lr, lam, theta, from_output,
          check_labels);
}

/// The NACA output layer's own-error update: weight -= lr * delta^T @ pre,
/// bias -= lr * sum_b delta, delta = e * sigmoid'(logits) (sigmoid_grad) or e,
/// e = sigmoid(logits) - onehot(labels).
///
/// weight: (N, I), bias: (N) or none, pre: (B, I), logits: (B, N), labels: (B) int64.
/// check_labels: as naca_hidden_update_.
inline void naca_output_update_(const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                const at::Tensor& pre, const at::Tensor& logits,
                                const at::Tensor& labels, double lr, bool sigmoid_grad = true,
                                bool check_labels = true) {
  static const auto op =
      detail::find<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&,
                        const at::Tensor&, const at::Tensor&, double, bool, bool)>(
          "naca::naca_output_update_");
  op.call(weight, bias, pre, logits, labels, lr, sigmoid_grad, check_labels);
}

/// Conv2d plasticity: weight -= lr * dConv/dW(input, signal * act'(preact)).
///
/// weight: (C_out, C_in / groups, kh, kw), bias: (C_out) or none, input: (B, C_in, H, W),
/// preact and signal: (B, C_out, Ho, Wo), the conv output before activation (after it
/// with from_output=true). bias -= lr * the sum over (B, Ho, Wo).
inline void conv_plasticity_update_(const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias,
                                    const at::Tensor& input, const at::Tensor& preact,
                                    const at::Tensor& signal, at::IntArrayRef stride = {1, 1},
                                    at::IntArrayRef padding = {0, 0},
                                    at::IntArrayRef dilation = {1, 1}, int64_t groups = 1,
                                    const std::string& activation = "tanh", double lr = 1e-3,
                                    bool from_output = false) {
  static const auto op =
      detail::find<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&,
                        const at::Tensor&, const at::Tensor&, at::IntArrayRef, at::IntArrayRef,
                        at::IntArrayRef, int64_t, std::string, double, bool)>(
          "naca::conv_plasticity_update_");
  op.call(weight, bias, input, preact, signal, stride, padding, dilation, groups, activation, lr,
          from_output);
}

/// The fused NACA conv update: f(NL) per (channel, y, x), ni: (2N, C_out, Ho, Wo);
/// preact is z, or act(z) with from_output=true. check_labels: as naca_hidden_update_.
inline void naca_conv_update_(const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                              const at::Tensor& input, const at::Tensor& preact,
                              const at::Tensor& labels, const at::Tensor& ni,
                              at::IntArrayRef stride = {1, 1}, at::IntArrayRef padding = {0, 0},
                              at::IntArrayRef dilation = {1, 1}, int64_t groups = 1,
                              const std::string& activation = "tanh", double lr = 1e-3,
                              double lam = 0.5, double theta = 1.2, bool from_output = false,
                              bool check_labels = true) {
  static const auto op =
      detail::find<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&,
                        const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef,
                        at::IntArrayRef, at::IntArrayRef, int64_t, std::string, double, double,
                        double, bool, bool)>("naca::naca_conv_update_");
  op.call(weight, bias, input, preact, labels, ni, stride, padding, dilation, groups, activation,
          lr, lam, theta, from_output, check_labels);
}

/// Multi-step LIF over a whole sequence; returns (spikes, voltages), each (T, B, N).
///
/// current: (T, B, N). With V_{-1} = v_init, s_{-1} = s_init (each (B, N), zeros when none):
/// V_t = decay V_{t-1} (1 - s_{t-1}) + I_t (reset "hard") or
/// V_t = decay (V_{t-1} - threshold s_{t-1}) + I_t ("soft"); s_t = 1[V_t > threshold].
/// Voltages are after integration, before reset.
inline std::tuple<at::Tensor, at::Tensor> lif_forward(
    const at::Tensor& current, double decay = 0.2, double threshold = 0.5,
    const std::string& reset = "hard", const std::optional<at::Tensor>& v_init = std::nullopt,
    const std::optional<at::Tensor>& s_init = std::nullopt) {
  static const auto op =
      detail::find<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, double, double,
                                                      std::string,
                                                      const std::optional<at::Tensor>&,
                                                      const std::optional<at::Tensor>&)>(
          "naca::lif_forward");
  return op.call(current, decay, threshold, reset, v_init, s_init);
}

/// NACA-SNN update: weight -= lr * sum_{b,t} (signal_b * e_{t,b})^T x_{t,b}; bias likewise.
///
/// e_t = 1[V_t > threshold - lens] - s_{t-1} (s_{-1} = 0). weight: (H, I), bias: (H) or
/// none, pre_spikes x: (T, B, I), voltages V and spikes s: (T, B, H) of this layer (from
/// lif_forward), signal: (B, H). all_steps=false uses t = T - 1 only.
inline void naca_snn_update_(const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                             const at::Tensor& pre_spikes, const at::Tensor& voltages,
                             const at::Tensor& spikes, const at::Tensor& signal,
                             double threshold = 0.5, double lens = 0.5, double lr = 1e-3,
                             bool all_steps = true) {
  static const auto op =
      detail::find<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&,
                        const at::Tensor&, const at::Tensor&, const at::Tensor&, double, double,
                        double, bool)>("naca::naca_snn_update_");
  op.call(weight, bias, pre_spikes, voltages, spikes, signal, threshold, lens, lr, all_steps);
}

/// The authors' class-incremental NACA-SNN rule: the signal sent into the last step's
/// spikes and carried back through the membrane to every step (see
/// torch_plugin.ops.naca_snn_chain_update_). voltages and spikes must come from
/// lif_forward started at V = s = 0 with the same decay, threshold and reset.
/// current: "linear" (I = W x + b) or "sigmoid" (I = sigmoid(W x)).
inline void naca_snn_chain_update_(const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias,
                                   const at::Tensor& pre_spikes, const at::Tensor& voltages,
                                   const at::Tensor& spikes, const at::Tensor& signal,
                                   double decay = 0.2, double threshold = 0.5, double lens = 0.5,
                                   const std::string& reset = "hard",
                                   const std::string& current = "linear", double lr = 1e-3) {
  static const auto op =
      detail::find<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&,
                        const at::Tensor&, const at::Tensor&, const at::Tensor&, double, double,
                        double, std::string, std::string, double)>("naca::naca_snn_chain_update_");
  op.call(weight, bias, pre_spikes, voltages, spikes, signal, decay, threshold, lens, reset,
          current, lr);
}

/// Pair-based STDP with exponential traces, optionally neuromodulated (in place).
///
/// weight: (H, I); pre_spikes: (T, B, I); post_spikes: (T, B, H); modulator: none,
/// a scalar, (H) or (B, H). w += lr * (a_plus LTP g+ - a_minus LTD g-) with bound
/// "none", "hard" (clamp to [w_min, w_max]) or "soft" (g+ = w_max - w, g- = w - w_min).
inline void stdp_update_(const at::Tensor& weight, const at::Tensor& pre_spikes,
                         const at::Tensor& post_spikes, double tau_pre = 20.0,
                         double tau_post = 20.0, double a_plus = 0.01, double a_minus = 0.012,
                         double w_min = 0.0, double w_max = 1.0, const std::string& bound = "hard",
                         const std::optional<at::Tensor>& modulator = std::nullopt,
                         double lr = 1.0, double dt = 1.0) {
  static const auto op =
      detail::find<void(at::Tensor, const at::Tensor&, const at::Tensor&, double, double, double,
                        double, double, double, std::string, const std::optional<at::Tensor>&,
                        double, double)>("naca::stdp_update_");
  op.call(weight, pre_spikes, post_spikes, tau_pre, tau_post, a_plus, a_minus, w_min, w_max, bound,
          modulator, lr, dt);
}

/// Tsodyks-Markram short-term plasticity: spikes (T, B, N) -> synaptic current (T, B, N).
///
/// Per step, in this order: u += -u / tau_f + U s (1 - u); x += (1 - x) / tau_d - u x s;
/// I += -I / tau_s + A u x s. Starts at u = 0, x = 1, I = 0; tau_* > 0.
inline at::Tensor stp_forward(const at::Tensor& spikes, double U = 0.45, double tau_f = 10.0,
                              double tau_d = 2.0, double tau_s = 2.0, double A = 1.0) {
  static const auto op =
      detail::find<at::Tensor(const at::Tensor&, double, double, double, double, double)>(
          "naca::stp_forward");
  return op.call(spikes, U, tau_f, tau_d, tau_s, A);
}

/// SBP's homeostatic relaxation, elementwise: `iters` times
/// s <- clamp(s - eps (s - drive), 0, 1). state and drive: any shape, the same for both.
inline at::Tensor homeostatic_relax(const at::Tensor& state, const at::Tensor& drive,
                                    double eps = 0.5, int64_t iters = 20) {
  static const auto op =
      detail::find<at::Tensor(const at::Tensor&, const at::Tensor&, double, int64_t)>(
          "naca::homeostatic_relax");
  return op.call(state, drive, eps, iters);
}

/// SBP: w_in += alpha_in * dW_in_final, w_out += alpha_out * dW_out_final.
///
/// (post, pre) orientation: w_in, dw_in: (H, I); w_out, dw_out: (O, H); dw_* are the
/// local changes (to be added). mask: (H, I) bool or 0/1, the input synapses that
/// receive the self-backpropagated spread (none: all). fraction = lambda_f; 0 gives
/// w += alpha * dw.
inline void sbp_update_(const at::Tensor& w_in, const at::Tensor& w_out, const at::Tensor& dw_in,
                        const at::Tensor& dw_out,
                        const std::optional<at::Tensor>& mask = std::nullopt,
                        double fraction = 0.2, double alpha_in = 0.1, double alpha_out = 0.05) {
  static const auto op =
      detail::find<void(at::Tensor, at::Tensor, const at::Tensor&, const at::Tensor&,
                        const std::optional<at::Tensor>&, double, double, double)>(
          "naca::sbp_update_");
  op.call(w_in, w_out, dw_in, dw_out, mask, fraction, alpha_in, alpha_out);
}

}  // namespace naca::ops
