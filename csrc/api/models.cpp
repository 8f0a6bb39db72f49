// naca::models (naca/models.h): the same layers, arguments and checks as torch_plugin/models.py.
#include <naca/models.h>
#include <naca/nn/conv.h>
#include <naca/nn/linear.h>

#include <c10/util/Exception.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

namespace naca::models {
namespace {

void check_min(const char* who, const char* name, int64_t value, int64_t low) {
  TORCH_CHECK(value >= low, "naca::models::", who, ": argument '", name, "' expected an integer >= ", low,
              ", got ", value);
}

std::optional<int64_t> offset(const std::optional<int64_t>& seed, int64_t i) {
  return seed ? std::optional<int64_t>(*seed + i) : std::nullopt;
}

}  // namespace

torch::nn::Sequential mlp(int64_t in_features, const std::vector<int64_t>& hidden, int64_t num_classes,
                          const MLPOptions& options) {
  check_min("mlp", "in_features", in_features, 1);
  check_min("mlp", "num_classes", num_classes, 2);
  for (int64_t h : hidden) check_min("mlp", "hidden", h, 1);
  torch::nn::Sequential seq;
  seq->push_back(torch::nn::Flatten());
  int64_t width = in_features;
  for (size_t i = 0; i < hidden.size(); ++i) {
    seq->push_back(nn::NACALinear(nn::NACALinearOptions(width, hidden[i], num_classes)
                                      .bias(options.bias())
                                      .activation(options.activation())
                                      .ni_init(options.ni_init())
                                      .seed(offset(options.seed(), static_cast<int64_t>(i)))));
    width = hidden[i];
  }
  seq->push_back(nn::NACAOutput(nn::NACAOutputOptions(width, num_classes)
                                    .bias(options.output_bias().value_or(options.bias()))
                                    .sigmoid_grad(options.sigmoid_grad())));
  return seq;
}

torch::nn::Sequential sbp_ann(int64_t in_features, int64_t hidden, int64_t num_classes,
                              const SBPANNOptions& options) {
  check_min("sbp_ann", "hidden", hidden, 1);
  return mlp(in_features, {hidden}, num_classes,
             MLPOptions()
                 .activation(options.activation())
                 .seed(options.seed())
                 .bias(options.bias())
                 .output_bias(options.output_bias()));
}

torch::nn::Sequential conv_net(const std::vector<int64_t>& in_shape, int64_t num_classes,
                               const ConvNetOptions& options) {
  const char* who = "conv_net";
  const int64_t k = options.kernel_size();
  check_min(who, "kernel_size", k, 1);
  TORCH_CHECK(k % 2 == 1, "naca::models::conv_net: argument 'kernel_size' expected an odd integer >= 1, got ", k);
  TORCH_CHECK(in_shape.size() == 3, "naca::models::conv_net: argument 'in_shape' expected 3 values (C, H, W), got ",
              c10::IntArrayRef(in_shape));
  for (int64_t d : in_shape) check_min(who, "in_shape", d, 1);
  const auto& channels = options.channels();
  for (int64_t ch : channels) check_min(who, "channels", ch, 1);
  check_min(who, "hidden", options.hidden(), 1);
  check_min(who, "num_classes", num_classes, 2);
  int64_t c = in_shape[0], h = in_shape[1], w = in_shape[2];
  const int64_t side = int64_t{1} << channels.size();  // each block halves H and W (AvgPool2d(2))
  TORCH_CHECK(h >= side && w >= side, "naca::models::conv_net: argument 'in_shape' expected H and W >= ", side,
              " (each of the ", channels.size(), " conv blocks halves them), got ", c10::IntArrayRef(in_shape));
  torch::nn::Sequential seq;
  for (size_t i = 0; i < channels.size(); ++i) {
    seq->push_back(nn::NACAConv2d(nn::NACAConv2dOptions(c, channels[i], k, num_classes, {h, w})
                                      .padding(k / 2)
                                      .bias(options.bias())
                                      .activation(options.activation())
                                      .seed(offset(options.seed(), static_cast<int64_t>(i)))));
    seq->push_back(torch::nn::AvgPool2d(2));
    c = channels[i];
    h /= 2;
    w /= 2;
  }
  seq->push_back(torch::nn::Flatten());
  seq->push_back(nn::NACALinear(nn::NACALinearOptions(c * h * w, options.hidden(), num_classes)
                                    .bias(options.bias())
                                    .activation(options.activation())
                                    .seed(offset(options.seed(), static_cast<int64_t>(channels.size())))));
  seq->push_back(nn::NACAOutput(nn::NACAOutputOptions(options.hidden(), num_classes)
                                    .bias(options.output_bias().value_or(options.bias()))));
  return seq;
}

}  // namespace naca::models
