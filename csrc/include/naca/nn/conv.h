// naca::nn::NACAConv2d, a conv layer trained by naca::learn::NACA, as
// torch_plugin.nn.NACAConv2d: parameters `weight` (and `bias`), the NI buffer `ni`.
#pragma once

#include <naca/nn/common.h>

#include <torch/arg.h>
#include <torch/expanding_array.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <optional>
#include <string>

namespace naca::nn {

/// NACAConv2d's options: in_channels, out_channels, kernel_size, num_classes (N >= 2),
/// input_size (H, W) of the input (NI modulates every output position), then stride (1),
/// padding (0, zeros), dilation (1), groups (1), bias (true), activation, ni_init, seed
/// (as NACALinearOptions).
struct NACAConv2dOptions {
  NACAConv2dOptions(int64_t in_channels, int64_t out_channels, torch::ExpandingArray<2> kernel_size,
                    int64_t num_classes, torch::ExpandingArray<2> input_size)
      : in_channels_(in_channels),
        out_channels_(out_channels),
        kernel_size_(kernel_size),
        num_classes_(num_classes),
        input_size_(input_size) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, out_channels);
  TORCH_ARG(torch::ExpandingArray<2>, kernel_size);
  TORCH_ARG(int64_t, num_classes);
  TORCH_ARG(torch::ExpandingArray<2>, input_size);
  TORCH_ARG(torch::ExpandingArray<2>, stride) = 1;
  TORCH_ARG(torch::ExpandingArray<2>, padding) = 0;
  TORCH_ARG(torch::ExpandingArray<2>, dilation) = 1;
  TORCH_ARG(int64_t, groups) = 1;
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(std::string, activation) = "tanh";
  TORCH_ARG(std::string, ni_init) = "uniform";
  TORCH_ARG(std::optional<int64_t>, seed) = std::nullopt;
};

/// y = act(conv2d(x, W, b)), with the NI buffer (2N, C_out, Ho, Wo). The constructor
/// checks the geometry: kernel_size, stride, dilation >= 1, padding >= 0, groups dividing
/// both channel counts, input_size large enough for the dilated kernel. Weights are
/// initialised as torch::nn::Conv2d's. Shapes: (B, C_in, H, W) -> (B, C_out, Ho, Wo).
class NACAConv2dImpl : public torch::nn::Cloneable<NACAConv2dImpl>, public Recording {
 public:
  explicit NACAConv2dImpl(const NACAConv2dOptions& options);

  void reset() override;
  void reset_parameters();
  void pretty_print(std::ostream& stream) const override;
  at::Tensor forward(const at::Tensor& x);

  NACAConv2dOptions options;
  int64_t output_size[2] = {0, 0};  ///< (Ho, Wo)
  at::Tensor weight;  ///< (C_out, C_in / groups, kh, kw)
  at::Tensor bias;    ///< (C_out), undefined without bias
  at::Tensor ni;      ///< (2N, C_out, Ho, Wo), a buffer
};
TORCH_MODULE(NACAConv2d);

}  // namespace naca::nn
