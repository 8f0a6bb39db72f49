// naca::nn::NACALinear (a hidden layer) and naca::nn::NACAOutput (the output layer),
// torch::nn modules trained by naca::learn::NACA, as torch_plugin.nn's layers of the
// same names: parameters `weight` (and `bias`), the NI buffer `ni`, so a state_dict maps
// name for name between the languages.
#pragma once

#include <naca/nn/common.h>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <optional>
#include <string>

namespace naca::nn {

/// NACALinear's options: in_features, out_features, num_classes (N >= 2), then
/// bias (true), activation ("tanh", "sigmoid", "relu", "identity"), ni_init
/// ("uniform", "normal", "beta", "zeros") and seed (NI's own seed; none: torch's
/// default generator).
struct NACALinearOptions {
  NACALinearOptions(int64_t in_features, int64_t out_features, int64_t num_classes)
      : in_features_(in_features), out_features_(out_features), num_classes_(num_classes) {}
  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  TORCH_ARG(int64_t, num_classes);
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(std::string, activation) = "tanh";
  TORCH_ARG(std::string, ni_init) = "uniform";
  TORCH_ARG(std::optional<int64_t>, seed) = std::nullopt;
};

/// y = act(x W^T + b), with the fixed NI buffer (2N, out_features) that NACA modulates by.
/// Weights are initialised as torch::nn::Linear's (from torch's default generator),
/// then NI is drawn. The options are checked at construction (c10::Error naming the
/// argument). Shapes: input (B, in_features) -> output (B, out_features).
class NACALinearImpl : public torch::nn::Cloneable<NACALinearImpl>, public Recording {
 public:
  NACALinearImpl(int64_t in_features, int64_t out_features, int64_t num_classes)
      : NACALinearImpl(NACALinearOptions(in_features, out_features, num_classes)) {}
  explicit NACALinearImpl(const NACALinearOptions& options);

  void reset() override;
  void reset_parameters();
  void pretty_print(std::ostream& stream) const override;
  at::Tensor forward(const at::Tensor& x);

  NACALinearOptions options;
  at::Tensor weight;  ///< (out_features, in_features)
  at::Tensor bias;    ///< (out_features), undefined without bias
  at::Tensor ni;      ///< (2N, out_features), a buffer
};
TORCH_MODULE(NACALinear);

/// NACAOutput's options: in_features, num_classes (N >= 2), then bias (true) and
/// sigmoid_grad (true: the output delta is e * sigmoid'(z); false: e, with
/// e = sigmoid(z) - onehot(y)).
struct NACAOutputOptions {
  NACAOutputOptions(int64_t in_features, int64_t num_classes)
      : in_features_(in_features), num_classes_(num_classes) {}
  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, num_classes);
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(bool, sigmoid_grad) = true;
};

/// The output layer: logits z = x W^T + b, trained by its own error. Prediction is
/// z.argmax(1). Shapes: input (B, in_features) -> logits (B, num_classes).
class NACAOutputImpl : public torch::nn::Cloneable<NACAOutputImpl>, public Recording {
 public:
  NACAOutputImpl(int64_t in_features, int64_t num_classes)
      : NACAOutputImpl(NACAOutputOptions(in_features, num_classes)) {}
  explicit NACAOutputImpl(const NACAOutputOptions& options);

  void reset() override;
  void reset_parameters();
  void pretty_print(std::ostream& stream) const override;
  at::Tensor forward(const at::Tensor& x);

  NACAOutputOptions options;
  at::Tensor weight;  ///< (num_classes, in_features)
  at::Tensor bias;    ///< (num_classes), undefined without bias
};
TORCH_MODULE(NACAOutput);

}  // namespace naca::nn
