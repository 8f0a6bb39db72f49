// naca::models spiking networks, as torch_plugin.models.spiking_mlp / sbp_snn in Python:
// torch::nn::Sequential holders whose children are numbered as nn.Sequential's ("0", "1", ...),
// so the state_dict keys are Python's ("2.weight", "2.ni", ...).
#pragma once

#include <naca/nn/spiking.h>

#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace naca::models {

/// Options of spiking_mlp and sbp_snn (the Python functions' keyword arguments).
struct SpikingMLPOptions {
  /// Time steps of the BernoulliEncoder, >= 1.
  TORCH_ARG(int64_t, T) = 20;
  /// With a seed the encoder draws its spikes from seed and layer i its NI from seed + i
  /// (weights follow torch's global RNG).
  TORCH_ARG(std::optional<int64_t>, seed) = std::nullopt;
  TORCH_ARG(double, decay) = 0.2;
  TORCH_ARG(double, threshold) = 0.5;
  TORCH_ARG(double, lens) = 0.5;
  TORCH_ARG(bool, surrogate) = true;
  TORCH_ARG(double, slope) = 5.0;
  /// Scales the default torch::nn::Linear weight init (finite).
  TORCH_ARG(double, init_gain) = 1.0;
  TORCH_ARG(std::string, ni_init) = "uniform";
  /// An STPSynapse between the encoder and the first layer.
  TORCH_ARG(bool, stp) = false;
  /// "linear" (I_t = W x_t + b) or "sigmoid" (I_t = sigmoid(W x_t + b)) in every layer.
  TORCH_ARG(std::string, current) = "linear";
  /// The hidden layers have biases.
  TORCH_ARG(bool, bias) = true;
  /// The output layer has one (none: as bias).
  TORCH_ARG(std::optional<bool>, output_bias) = std::nullopt;
};

/// BernoulliEncoder(T) -> [STPSynapse] -> NACASpikingLinear x hidden.size() -> output
/// NACASpikingLinear (is_output) -> SpikeRate. forward: x (B, ...) intensities in [0, 1]
/// (flattened to in_features) -> output firing rates (B, num_classes). hidden: the widths,
/// each >= 1 (empty: the output layer alone). Trains with naca::learn::NACA, naca::learn::SBP
/// (one hidden layer) or backprop through time with the surrogate spike.
torch::nn::Sequential spiking_mlp(int64_t in_features, const std::vector<int64_t>& hidden,
                                  int64_t num_classes, const SpikingMLPOptions& options = {});

/// The three-layer SNN of the SBP paper: spiking_mlp with one hidden layer of width `hidden`.
torch::nn::Sequential sbp_snn(int64_t in_features, int64_t hidden, int64_t num_classes,
                              const SpikingMLPOptions& options = {});

}  // namespace naca::models
