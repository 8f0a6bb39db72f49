// The weight-update ops, written once as templates over a backend's elementwise
// kernels (kernels.h): validate everything, compute the per-unit delta with the
// backend's fused kernel, then apply the batch outer product (update.h).
// csrc/cpu/*_cpu.cpp and cuda/*_cuda.cu instantiate them with their kernels.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
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

// The delta of the samples [b0, b0 + n) of a checked batch: signal * act'(preact).
template <ActivationDeltaFn delta_fn>
struct SignalDelta {
  at::Tensor preact, signal;  // contiguous
  Activation act;
  bool from_output;
  at::Tensor operator()(int64_t b0, int64_t n) const {
    if (b0 == 0 && n == preact.size(0)) return delta_fn(preact, signal, act, from_output);
    return delta_fn(preact.narrow(0, b0, n), signal.narrow(0, b0, n), act, from_output);
  }
};

// The signal's checks; then the delta of any range of samples.
template <ActivationDeltaFn delta_fn>
SignalDelta<delta_fn> signal_delta(const char* op, const at::Tensor& weight,
                                   const at::Tensor& preact, const at::Tensor& signal,
                                   const std::string& activation, bool from_output) {
  check_like_preact(op, signal, "signal", preact);
  check_no_alias(weight, "weight", signal, "signal", op);
  const auto act = parse_activation(activation, op);
  return {preact.contiguous(), signal.contiguous(), act, from_output};
}

template <ActivationDeltaFn delta_fn>
void plasticity_update(at::Tensor weight, const std::optional<at::Tensor>& bias,
                       const at::Tensor& pre, const at::Tensor& preact, const at::Tensor& signal,
                       std::string activation, double lr, bool from_output) {
  const char* op = "plasticity_update_";
  check_linear_update(op, weight, bias, pre, preact, lr);
  check_bias_no_alias(op, bias, signal, "signal");
  const auto delta_of = signal_delta<delta_fn>(op, weight, preact, signal, activation, from_output);
  const int64_t batch = preact.size(0);
  if (batch > 0) apply_linear_update(weight, bias, pre, delta_of(0, batch), lr);
}

// The fused NACA delta f(E[labels] NI) * act'(preact) of the samples [b0, b0 + n).
template <ModulatedDeltaFn delta_fn>
struct NacaDelta {
  at::Tensor preact, labels, ni, slots;  // contiguous
  Activation act;
  bool from_output;
  double lam, theta;
  at::Tensor operator()(int64_t b0, int64_t n) const {
    if (b0 == 0 && n == preact.size(0)) {  // the whole batch: no views to make (a small step's cost)
      return delta_fn(preact, labels, ni, slots, act, from_output, lam, theta);
    }
    return delta_fn(preact.narrow(0, b0, n), labels.narrow(0, b0, n), ni, slots, act,
                    from_output, lam, theta);
  }
};

// The NACA signal's checks (labels read once, before anything is written, unless
// check_labels is false: the kernels then give a zero delta to a sample whose label
// is out of range); then the delta of any range of samples.
template <ModulatedDeltaFn delta_fn>
NacaDelta<delta_fn> naca_delta(const char* op, const at::Tensor& weight, const at::Tensor& preact,
                               const at::Tensor& labels, const at::Tensor& ni,
                               const std::string& activation, double lam, double theta,
                               bool from_output, bool check_labels) {
  check_modulation_params(lam, theta, op);
  check_naca_signal(op, labels, ni, preact, check_labels);
  check_no_alias(weight, "weight", ni, "ni", op);
  const auto act = parse_activation(activation, op);
  const auto slots = expectation_slots_tensor(ni.size(0) / 2, ni.device(), op);
  return {preact.contiguous(), labels.contiguous(), ni.contiguous(), slots, act, from_output,
          lam, theta};
}

// The conv weight update, over the batch in chunks on CPU (conv_chunk_samples,
// update.h); the chunks' gradients are summed before the one write.
template <typename DeltaOf>
void apply_conv_update_in_chunks(at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                 const at::Tensor& input, const at::Tensor& preact,
                                 const DeltaOf& delta_of, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups, double lr) {
  const int64_t batch = preact.size(0);
  if (batch == 0) return;
  const int64_t chunk = conv_chunk_samples(weight, preact);
  ConvGrads sum;
  for (int64_t b0 = 0; b0 < batch; b0 += chunk) {
    const int64_t n = std::min(chunk, batch - b0);
    add_conv_grads(sum, conv_grads(weight, bias, input.narrow(0, b0, n), delta_of(b0, n), stride,
                                   padding, dilation, groups));
  }
  apply_conv_grads(weight, bias, sum, lr);
}

template <ModulatedDeltaFn delta_fn>
void naca_hidden_update(at::Tensor weight, const std::optional<at::Tensor>& bias,
                        const at::Tensor& pre, const at::Tensor& preact, const at::Tensor& labels,
                        const at::Tensor& ni, std::string activation, double lr, double lam,
                        double theta, bool from_output, bool check_labels) {
  const char* op = "naca_hidden_update_";
  check_linear_update(op, weight, bias, pre, preact, lr);
  check_bias_no_alias(op, bias, ni, "ni");
  const auto delta_of = naca_delta<delta_fn>(op, weight, preact, labels, ni, activation, lam, theta,
                                             from_output, check_labels);
  const int64_t batch = preact.size(0);
  if (batch > 0) apply_linear_update(weight, bias, pre, delta_of(0, batch), lr);
}

using OutputDeltaFn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, bool);

template <OutputDeltaFn delta_fn>
void naca_output_update(at::Tensor weight, const std::optional<at::Tensor>& bias,
                        const at::Tensor& pre, const at::Tensor& logits, const at::Tensor& labels,
                        double lr, bool sigmoid_grad, bool check_labels) {
  const char* op = "naca_output_update_";
  check_linear_update(op, weight, bias, pre, logits, lr, "logits");
  check_same_device(labels, op, "labels", logits, "logits");
  naca::check_labels(labels, op, weight.size(0), logits.size(0), /*read_values=*/check_labels);
  const int64_t batch = logits.size(0);
  if (batch == 0) return;
  apply_linear_update(weight, bias, pre, delta_fn(logits.contiguous(), labels.contiguous(), sigmoid_grad),
                      lr);
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
  const auto delta_of = signal_delta<delta_fn>(op, weight, preact, signal, activation, from_output);
  apply_conv_update_in_chunks(weight, bias, input, preact, delta_of, stride, padding, dilation,
                              groups, lr);
}

template <ModulatedDeltaFn delta_fn>
void naca_conv_update(at::Tensor weight, const std::optional<at::Tensor>& bias,
                      const at::Tensor& input, const at::Tensor& preact, const at::Tensor& labels,
                      const at::Tensor& ni, at::IntArrayRef stride, at::IntArrayRef padding,
                      at::IntArrayRef dilation, int64_t groups, std::string activation, double lr,
                      double lam, double theta, bool from_output, bool check_labels) {
  const char* op = "naca_conv_update_";
  check_conv_update(op, weight, bias, input, preact, stride, padding, dilation, groups, lr);
  check_bias_no_alias(op, bias, ni, "ni");
  const auto delta_of = naca_delta<delta_fn>(op, weight, preact, labels, ni, activation, lam, theta,
                                             from_output, check_labels);
  apply_conv_update_in_chunks(weight, bias, input, preact, delta_of, stride, padding, dilation,
                              groups, lr);
}

// The read-only ops: validation here, the gather/curve in the backend kernel.
template <at::Tensor (*kernel)(const at::Tensor&, const at::Tensor&, const at::Tensor&)>
at::Tensor neuromodulator_op(const at::Tensor& labels, const at::Tensor& ni, bool check_labels) {
  const char* op = "neuromodulator";
  const int64_t n = classes_of_ni(ni, op);
  check_floating(ni, op, "ni");
  check_same_device(labels, op, "labels", ni, "ni");
  naca::check_labels(labels, op, n, -1, /*read_values=*/check_labels, ni.size(0));
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
