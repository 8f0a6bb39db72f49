// naca::learn::SBP, as torch_plugin.learn.SBP in Python: local contrastive plasticity of a
// three-layer SNN (or a two-layer ANN) plus self-backpropagation of the synaptic
// modifications (docs/algorithms.md §2.1, naca::ops::sbp_update_). No backward().
#pragma once

#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace naca::learn {

/// Options of SBP, as the Python learner's arguments; every one is checked when the learner
/// is built (c10::Error "naca::SBP: argument '<name>' expected ..., got ...").
struct SBPOptions {
  /// Global scale of the steps (alpha_in = lr alpha[0], alpha_out = lr alpha[1]), finite, >= 0.
  /// None: 10 for the ANN, 1 for the SNN (the Python learner's DEFAULT_LR).
  TORCH_ARG(std::optional<double>, lr) = std::nullopt;
  /// lambda_f in [0, 1]: the lateral and self-backpropagated spread; 0: the local rule alone.
  TORCH_ARG(double, fraction) = 0.2;
  /// lambda_p in [0, 1]: share of each hidden unit's input synapses receiving the spread.
  TORCH_ARG(double, percentage) = 1.0;
  /// Seed of the lambda_p mask (drawn as the Python learner's, bit for bit).
  TORCH_ARG(int64_t, seed) = 0;
  /// Nudging strength in (0, 1].
  TORCH_ARG(double, beta) = 0.5;
  /// (alpha_in, alpha_out), each finite and >= 0.
  TORCH_ARG(std::vector<double>, alpha) = std::vector<double>{0.1, 0.05};
  /// Homeostatic relaxation steps of the hidden state (0: the nudged phase re-runs the layer).
  TORCH_ARG(int64_t, relax_steps) = 0;
  /// Relaxation step in (0, 1].
  TORCH_ARG(double, eps) = 0.5;
  /// "contrastive", "symmetric" or "differential" (docs/algorithms.md §2.1).
  TORCH_ARG(std::string, local_rule) = "contrastive";
  /// A step whose changes hold a NaN or an Inf changes no weight and counts in skipped_steps().
  TORCH_ARG(bool, skip_nonfinite) = false;
};

/// The batch sums of the local changes (post, pre), not yet divided by beta B.
struct SBPChanges {
  torch::Tensor w_in;   // (H, I)
  torch::Tensor w_out;  // (N, H)
  torch::Tensor b_in;   // (H)
  torch::Tensor b_out;  // (N)
};

/// Trains models::sbp_snn / models::spiking_mlp with one hidden layer (two NACASpikingLinear
/// layers, hidden then output) or models::sbp_ann (one NACALinear and one NACAOutput) with SBP,
/// step for step as the Python learner: the same free and nudged phases, local changes and
/// sbp_update_ call (torch_plugin/learn/sbp.py has the algorithm's description).
///
/// step(x, y) returns the free-phase output (SNN: rates (B, N); ANN: logits (B, N)). A step
/// that throws (labels of the wrong dtype, shape or range; an input the layers reject) changes
/// no weight.
class SBP {
 public:
  SBP(torch::nn::Sequential model, SBPOptions options = {});

  /// One SBP step: x (B, ...), y (B) int64 labels in [0, N).
  torch::Tensor step(const torch::Tensor& x, const torch::Tensor& y);
  /// The forward and the local changes, nothing applied: (free-phase output, batch sums).
  std::pair<torch::Tensor, SBPChanges> local_changes(const torch::Tensor& x,
                                                     const torch::Tensor& y);
  /// The changes of local_changes, summed over `batch` samples, divided by beta B, through
  /// naca::ops::sbp_update_; the biases follow their own change. batch <= 0 changes nothing.
  void apply_changes(const SBPChanges& sums, int64_t batch);

  const SBPOptions& options() const { return options_; }
  double lr() const { return lr_; }
  bool spiking() const { return spiking_; }
  int64_t num_classes() const;
  int64_t steps() const { return steps_; }
  int64_t skipped_steps() const { return skipped_steps_; }
  /// lambda_p's (H, I) bool mask, none when percentage is 1.
  const std::optional<torch::Tensor>& mask() const { return mask_; }
  torch::nn::Sequential model() const { return model_; }

 private:
  struct Layers;
  torch::Tensor local_change(const torch::Tensor& pre0, const torch::Tensor& preb,
                             const torch::Tensor& post0, const torch::Tensor& postb) const;

  torch::nn::Sequential model_;
  SBPOptions options_;
  std::shared_ptr<Layers> layers_;
  double lr_ = 0.0;
  bool spiking_ = false;
  std::optional<torch::Tensor> mask_;
  int64_t steps_ = 0;
  int64_t skipped_steps_ = 0;
};

/// lambda_p: a fixed, seeded (H, I) bool mask choosing round(percentage I) input synapses per
/// hidden unit (none when percentage is 1), as torch_plugin.learn.sbp.subset_mask.
std::optional<torch::Tensor> subset_mask(int64_t hidden, int64_t inputs, double percentage,
                                         int64_t seed);

}  // namespace naca::learn
