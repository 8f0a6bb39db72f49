// What every naca::nn layer trained by a learner shares: the recording hook through
// which a learner receives what a forward computed (the layer's input and output),
// the activations by name, and the fixed NI matrix (docs/algorithms.md §1.4).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace naca::nn {

/// What a recording layer keeps of its forward for its learner.
enum class RecordMode {
  kOff,     ///< nothing (plain inference, backprop)
  kOutput,  ///< (input, act(z)): the NACA updates take act' from act(z)
  kPreact,  ///< (input, z): a rule that needs the pre-activation (SBP's nudged phase)
};

/// The receiver of a recording layer's forward tensors, set by a learner for one step.
class Recorder {
 public:
  virtual ~Recorder() = default;
  /// Called by layer `slot` at the end of its forward with what it keeps
  /// (NACALinear / NACAConv2d: input, act(z) or z; NACAOutput: input, logits), detached.
  virtual void on_forward(int64_t slot, torch::nn::Module& layer, std::vector<at::Tensor> saved) = 0;
};

/// The mixin of the trained layers: while a learner records, the forward hands its
/// tensors to `recorder` (slot `record_slot`) instead of keeping them.
class Recording {
 public:
  RecordMode record_mode = RecordMode::kOff;
  Recorder* recorder = nullptr;
  int64_t record_slot = -1;
  /// What the last recorded forward kept, when no recorder was set.
  std::vector<at::Tensor> saved;

 protected:
  /// Hand `tensors` to the recorder, or store them in `saved`.
  void keep(torch::nn::Module& self, std::vector<at::Tensor> tensors);
  /// h = act(z) for a hidden layer, recording (x, h) or (x, z) as record_mode asks. With no
  /// autograd graph to keep (the learners' forward) h overwrites z in place.
  at::Tensor activate_and_record(torch::nn::Module& self, const at::Tensor& x, at::Tensor z,
                                 const std::string& activation);
};

/// The activations of the hidden layers: "tanh", "sigmoid", "relu", "identity".
const std::vector<std::string>& activations();
/// The activations the NACA hidden rule trains (bounded ones: "tanh", "sigmoid";
/// docs/activations.md).
const std::vector<std::string>& naca_activations();
/// act(z) by name (out of place).
at::Tensor activate(const at::Tensor& z, const std::string& activation);

/// The NI distributions: "uniform" U(0, 1), "normal" N(0.5, 1) clamped to [0, 1],
/// "beta" Beta(0.5, 0.5) (sin^2(pi U / 2)), "zeros".
const std::vector<std::string>& ni_inits();

/// The fixed random neuromodulator projection NI, shape (2N, *shape), values in [0, 1],
/// drawn in float64 and cast to `dtype`. With a seed the draw uses its own CPU generator
/// (the same numbers as torch_plugin.nn.make_ni with that seed); without one, torch's
/// default generator.
at::Tensor make_ni(int64_t num_classes, at::IntArrayRef shape, const std::string& init = "uniform",
                   std::optional<int64_t> seed = std::nullopt,
                   at::ScalarType dtype = at::kFloat);

}  // namespace naca::nn
