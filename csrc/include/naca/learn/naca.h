// naca::learn::NACA: trains a model of naca::nn layers with NACA, local updates and no
// backward(), as torch_plugin.learn.NACA (docs/algorithms.md §1.4): the same checks, the same
// streaming order and atomicity, and (on CPU, from the same weights and batches) the same
// weights.
#pragma once

#include <naca/nn/common.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace naca::nn {
class NACASpikingLinearImpl;
}  // namespace naca::nn

namespace naca::learn {

/// NACA's options. lr: the in-place SGD step (used without an optimizer), finite and >= 0;
/// the updates sum over the batch. optimizer: any torch::optim optimizer holding every
/// parameter the learner trains (checked at construction; freeze a layer with a param group
/// of lr 0): the update is written to `.grad` as a pseudo-gradient and optimizer->step()
/// applies it. lam (> 0), theta: the modulation curve's parameters. check_labels: labels
/// outside [0, N) throw before anything is written (false: such a sample learns nothing).
/// skip_nonfinite: a step whose update holds a NaN or an Inf changes no weight and no
/// optimizer state and is counted in skipped_steps(). streaming: each hidden layer learns as
/// soon as its forward output exists (true), or every step keeps its whole forward first;
/// the weights are the same bits either way.
///
/// Spiking models (NACASpikingLinear layers, docs/algorithms.md §1.5): all_steps sums the
/// hidden layers' eligibility over every time step (true) or uses t = T only (the authors'
/// classification code); the output layer always learns from every step. membrane_chain:
/// the authors' class-incremental rule (naca::ops::naca_snn_chain_update_, the signal carried
/// back through the membrane recurrence; all_steps is then not used); it needs a spiking model.
/// hidden_only: the model holds hidden layers and no output layer (a pipeline stage before
/// the last): step trains them on the labels and returns the model's output.
struct NACAOptions {
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(std::shared_ptr<torch::optim::Optimizer>, optimizer) = nullptr;
  TORCH_ARG(double, lam) = 0.5;
  TORCH_ARG(double, theta) = 1.2;
  TORCH_ARG(bool, check_labels) = true;
  TORCH_ARG(bool, skip_nonfinite) = false;
  TORCH_ARG(bool, streaming) = true;
  TORCH_ARG(bool, all_steps) = true;
  TORCH_ARG(bool, membrane_chain) = false;
  TORCH_ARG(bool, hidden_only) = false;
};

/// The kinds of trained layer the learner updates, each with its own rule.
enum class LayerKind {
  kLinear,  ///< naca::nn::NACALinear: ops::naca_hidden_update_, modulated by f(E[y] NI)
  kConv2d,  ///< naca::nn::NACAConv2d: ops::naca_conv_update_
  kOutput,  ///< naca::nn::NACAOutput: ops::naca_output_update_, its own error
  kSpikingHidden,  ///< naca::nn::NACASpikingLinear: ops::naca_snn_update_ (or the membrane
                   ///< chain), modulated by f(E[y] NI)
  kSpikingOutput,  ///< NACASpikingLinear with is_output: its rate error mean_t s_t - onehot(y)
};

/// Trains `model` with NACA. Its trained layers are NACALinear / NACAConv2d (hidden) and
/// exactly one NACAOutput, or (a spiking model, e.g. naca::models::spiking_mlp)
/// NACASpikingLinear layers, exactly one of them with is_output; with hidden_only, hidden
/// layers alone. Parameter-free modules (Flatten, pooling, dropout, the encoder, SpikeRate)
/// just run forward. Any other module holding a trainable parameter, any recording layer of
/// a kind this learner does not train, and a model mixing spiking and non-spiking NACA
/// layers are refused at construction, naming them.
///
/// step(x, y): x (B, ...), y (B) int64 labels; runs the forward without autograd, updates
/// the weights in place (each hidden layer when its forward ends, the output layer last) and
/// returns the model's output (B, N): the logits, or a spiking model's output firing rates,
/// computed before the update. A step that throws changes
/// nothing (no weight, bias, .grad, optimizer state or count): the inputs and labels are
/// checked first, and the first step for each input signature (shapes, strides, dtypes,
/// devices of x and the trained weights, the learner's scalars) runs the whole forward and
/// checks every update on scratch tensors before writing any.
class NACA : private nn::Recorder {
 public:
  NACA(torch::nn::Sequential model, NACAOptions options = {});
  /// Any module, with the function that runs its forward (x -> logits).
  NACA(std::shared_ptr<torch::nn::Module> model, std::function<at::Tensor(const at::Tensor&)> forward,
       NACAOptions options = {});
  NACA(const NACA&) = delete;
  NACA& operator=(const NACA&) = delete;

  /// One training step on a batch: x (B, ...), y (B) int64. Returns the logits (B, N).
  at::Tensor step(const at::Tensor& x, const at::Tensor& y);

  const NACAOptions& options() const { return options_; }
  int64_t num_classes() const { return num_classes_; }
  int64_t steps() const { return steps_; }
  int64_t skipped_steps() const { return skipped_steps_; }
  /// Whether the model is a spiking one (NACASpikingLinear layers).
  bool spiking() const { return spiking_; }

 private:
  struct Layer {
    std::shared_ptr<torch::nn::Module> module;
    nn::Recording* recording;  // the ANN layers; null for a spiking one
    LayerKind kind;
    std::string name;
    nn::NACASpikingLinearImpl* spiking = nullptr;  // the spiking layers
    at::Tensor weight() const;
    at::Tensor bias() const;
  };
  struct StepState;

  void init();
  void check_inputs(const at::Tensor& x, const at::Tensor& y) const;
  std::vector<int64_t> signature(const at::Tensor& x, const at::Tensor& y, bool into_grad) const;
  void prepare(StepState& st, const at::Tensor& x, const at::Tensor& y);
  at::Tensor forward(StepState& st, const at::Tensor& x);
  at::Tensor run(StepState& st, const at::Tensor& x);
  void check_calls(const StepState& st) const;
  void write_update(const Layer& layer, const std::vector<at::Tensor>& saved, const StepState& st,
                    bool dry) const;
  void write_spiking_update(const nn::NACASpikingLinearImpl& layer, bool is_output,
                            const std::vector<at::Tensor>& saved, const StepState& st, const at::Tensor& w,
                            const std::optional<at::Tensor>& b) const;
  std::string partial(const StepState& st, const std::string& message) const;
  std::vector<at::Tensor> trained_params() const;
  void on_forward(int64_t slot, torch::nn::Module& layer, std::vector<at::Tensor> saved) override;

  std::shared_ptr<torch::nn::Module> model_;
  std::function<at::Tensor(const at::Tensor&)> forward_;
  NACAOptions options_;
  std::vector<Layer> layers_;  // the hidden layers in module order, then the output layer
  int64_t num_classes_ = 0;
  bool spiking_ = false;
  std::vector<bool> defer_;    // per layer: its updates wait for the end of the forward
  std::map<std::vector<int64_t>, std::vector<int64_t>> signatures_;  // -> call count per layer
  std::deque<std::vector<int64_t>> signature_order_;
  StepState* st_ = nullptr;
  int64_t steps_ = 0;
  int64_t skipped_steps_ = 0;
};

}  // namespace naca::learn
