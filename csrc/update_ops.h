// The weight-update ops, written once as templates over a backend's elementwise
// kernels (kernels.h): validate everything, compute the per-unit delta with the
// backend's fused kernel, then apply the batch outer product (update.h).
// csrc/cpu/*_cpu.cpp and cuda/*_cuda.cu instantiate them with their kernels.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>

#include "checks.h"
#include "expectation.h"
#include "kernels.h"
#include "update.h"

namespace naca {

using ActivationDeltaFn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, Activation, bool);
using ModulatedDeltaFn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        const at::Tensor&, Activation, bool, double, double);

// The bias, like the weight, must not share memory with a read-only input.
inline void check_bias_no_alias(const char* op, const std::optional<at::Tensor>& bias,
                                const at::Tensor& in, const char* in_name) {
  if (bias.has_value() && bias->defined()) check_no_alias(*bias, "bias", in, in_name, op);
}

// The signal's checks and the delta signal * act'(preact); undefined for an
// empty batch (nothing to learn, by design).
template <ActivationDeltaFn delta_fn>
at::Tensor signal_delta(const char* op, const at::Tensor& weight, const at::Tensor& preact,
                        const at::Tensor& signal, const std::string& activation,
                        bool from_output) {
  check_like_preact(op, signal, "signal", preact);
  check_no_alias(weight, "weight", signal, "signal", op);
  const auto act = parse_activation(activation, op);
  if (preact.size(0) == 0) return at::Tensor();
  return delta_fn(preact.contiguous(), signal.contiguous(), act, from_output);
}

template <ActivationDeltaFn delta_fn>
void plasticity_update(at::Tensor weight, const std::optional<at::Tensor>& bias,
                       const at::Tensor& pre, const at::Tensor& preact, const at::Tensor& signal,
                       std::string activation, double lr, bool from_output) {
  const char* op = "plasticity_update_";
  check_linear_update(op, weight, bias, pre, preact, lr);
  check_bias_no_alias(op, bias, signal, "signal");
  const auto delta = signal_delta<delta_fn>(op, weight, preact, signal, activation, from_output);
  if (delta.defined()) apply_linear_update(weight, bias, pre, delta, lr);
}

// The NACA signal's checks and its fused delta f(E[labels] NI) * act'(preact);
// undefined for an empty batch (nothing to learn, by design).
template <ModulatedDeltaFn delta_fn>
at::Tensor naca_delta(const char* op, const at::Tensor& weight, const at::Tensor& preact,
                      const at::Tensor& labels, const at::Tensor& ni, const std::string& activation,
                      double lam, double theta, bool from_output) {
  check_modulation_params(lam, theta, op);
  check_naca_signal(op, labels, ni, preact);
  check_no_alias(weight, "weight", ni, "ni", op);
  const auto act = parse_activation(activation, op);
  if (preact.size(0) == 0) return at::Tensor();
  const auto slots = expectation_slots_tensor(ni.size(0) / 2, ni.device(), op);
  return delta_fn(preact.contiguous(), labels.contiguous(), ni.contiguous(), slots, act,
                  from_output, lam, theta);
}

template <ModulatedDeltaFn delta_fn>
void naca_hidden_update(at::Tensor weight, const std::optional<at::Tensor>& bias,
                        const at::Tensor& pre, const at::Tensor& preact, const at::Tensor& labels,
                        const at::Tensor& ni, std::string activation, double lr, double lam,
                        double theta, bool from_output) {
  const char* op = "naca_hidden_update_";
  check_linear_update(op, weight, bias, pre, preact, lr);
  check_bias_no_alias(op, bias, ni, "ni");
  const auto delta = naca_delta<delta_fn>(op, weight, preact, labels, ni, activation, lam, theta,
                                          from_output);
  if (delta.defined()) apply_linear_update(weight, bias, pre, delta, lr);
}

template <ActivationDeltaFn delta_fn>
void conv_plasticity_update(at::Tensor weight, const std::optional<at::Tensor>& bias,
                            const at::Tensor& input, const at::Tensor& preact,
                            const at::Tensor& signal, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                            std::string activation, double lr, bool from_output) {
  const char* op = "conv_plasticity_update_";
  check_conv_update(op, weight, bias, input, preact, stride, padding, dilation, groups, lr);
  check_bias_no_alias(op, bias, signal, "signal");
  const auto delta = signal_delta<delta_fn>(op, weight, preact, signal, activation, from_output);
  if (delta.defined()) {
    apply_conv_update(weight, bias, input, delta, stride, padding, dilation, groups, lr);
  }
}

template <ModulatedDeltaFn delta_fn>
void naca_conv_update(at::Tensor weight, const std::optional<at::Tensor>& bias,
                      const at::Tensor& input, const at::Tensor& preact, const at::Tensor& labels,
                      const at::Tensor& ni, at::IntArrayRef stride, at::IntArrayRef padding,
                      at::IntArrayRef dilation, int64_t groups, std::string activation, double lr,
                      double lam, double theta, bool from_output) {
  const char* op = "naca_conv_update_";
  check_conv_update(op, weight, bias, input, preact, stride, padding, dilation, groups, lr);
  check_bias_no_alias(op, bias, ni, "ni");
  const auto delta = naca_delta<delta_fn>(op, weight, preact, labels, ni, activation, lam, theta,
                                          from_output);
  if (delta.defined()) {
    apply_conv_update(weight, bias, input, delta, stride, padding, dilation, groups, lr);
  }
}

// The read-only ops: validation here, the gather/curve in the backend kernel.
template <at::Tensor (*kernel)(const at::Tensor&, const at::Tensor&, const at::Tensor&)>
at::Tensor neuromodulator_op(const at::Tensor& labels, const at::Tensor& ni) {
  const char* op = "neuromodulator";
  const int64_t n = classes_of_ni(ni, op);
  check_floating(ni, op, "ni");
  check_same_device(labels, op, "labels", ni, "ni");
  check_labels(labels, op, n, -1);
  const auto slots = expectation_slots_tensor(n, ni.device(), op);
  auto out = kernel(labels.contiguous(), ni.contiguous().view({ni.size(0), -1}), slots);
  std::vector<int64_t> shape(ni.sizes().begin(), ni.sizes().end());
  shape[0] = labels.size(0);
  return out.view(shape);
}

template <at::Tensor (*kernel)(const at::Tensor&, double, double)>
at::Tensor modulation_op(const at::Tensor& level, double lam, double theta) {
  const char* op = "modulation";
  check_defined(level, op, "level");
  check_floating(level, op, "level");
  check_modulation_params(lam, theta, op);
  return kernel(level.contiguous(), lam, theta);
}

}  // namespace naca
