// naca::models: ready-made networks of naca::nn's layers, as torch_plugin.models, returned as
// torch::nn::Sequential (trainable by naca::learn and by backprop alike). Each builder checks
// its arguments first (c10::Error naming the argument) and builds nothing on a bad one.
#pragma once

#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace naca::models {

/// mlp's options: the hidden layers' activation and ni_init, seed (hidden layer i draws its
/// NI from seed + i; weights follow torch's default generator), sigmoid_grad of the output
/// layer, bias (the hidden layers), output_bias (the output layer; none: as bias).
struct MLPOptions {
  TORCH_ARG(std::string, activation) = "tanh";
  TORCH_ARG(std::string, ni_init) = "uniform";
  TORCH_ARG(std::optional<int64_t>, seed) = std::nullopt;
  TORCH_ARG(bool, sigmoid_grad) = true;
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(std::optional<bool>, output_bias) = std::nullopt;
};

/// Flatten -> NACALinear(activation) per hidden width -> NACAOutput (logits).
/// hidden: the hidden widths (empty: the output layer alone).
torch::nn::Sequential mlp(int64_t in_features, const std::vector<int64_t>& hidden, int64_t num_classes,
                          const MLPOptions& options = {});

/// sbp_ann's options (the Python builder's): the hidden layer's activation ("sigmoid"), seed
/// (its NI's seed; weights follow torch's default generator), bias (the hidden layer),
/// output_bias (the output layer; none: as bias).
struct SBPANNOptions {
  TORCH_ARG(std::string, activation) = "sigmoid";
  TORCH_ARG(std::optional<int64_t>, seed) = std::nullopt;
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(std::optional<bool>, output_bias) = std::nullopt;
};

/// The two-layer ANN for naca::learn::SBP: Flatten -> NACALinear(activation) of width
/// `hidden` (>= 1) -> NACAOutput (logits); mlp with one hidden layer. SBP reads the output as
/// sigmoid(logits); prediction is logits.argmax(1).
torch::nn::Sequential sbp_ann(int64_t in_features, int64_t hidden, int64_t num_classes,
                              const SBPANNOptions& options = {});

/// conv_net's options: channels per conv block ({64, 128}), the hidden FC width (1000),
/// activation, seed (conv block i draws its NI from seed + i, the FC layer from
/// seed + channels.size()), bias, output_bias (none: as bias), kernel_size (odd, 3; the
/// authors' is 5).
struct ConvNetOptions {
  TORCH_ARG(std::vector<int64_t>, channels) = std::vector<int64_t>{64, 128};
  TORCH_ARG(int64_t, hidden) = 1000;
  TORCH_ARG(std::string, activation) = "tanh";
  TORCH_ARG(std::optional<int64_t>, seed) = std::nullopt;
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(std::optional<bool>, output_bias) = std::nullopt;
  TORCH_ARG(int64_t, kernel_size) = 3;
};

/// [NACAConv2d k x k (padding k / 2) -> AvgPool2d(2)] per channel count -> Flatten ->
/// NACALinear(hidden) -> NACAOutput. in_shape: (C, H, W), H and W >= 2^channels.size().
torch::nn::Sequential conv_net(const std::vector<int64_t>& in_shape, int64_t num_classes,
                               const ConvNetOptions& options = {});

}  // namespace naca::models
