// naca::models::spiking_mlp and sbp_snn (csrc/include/naca/models/spiking.h), as
// torch_plugin/models.py.
#include <naca/models/spiking.h>

#include <torch/nn/modules/container/any.h>

#include "api/nn/spiking_args.h"

namespace naca::models {

torch::nn::Sequential spiking_mlp(int64_t in_features, const std::vector<int64_t>& hidden,
                                  int64_t num_classes, const SpikingMLPOptions& o) {
  const char* who = "spiking_mlp";
  for (const int64_t h : hidden) naca::api::check_int(who, "hidden", h, 1);
  int64_t width = naca::api::check_int(who, "in_features", in_features, 1);
  naca::api::check_int(who, "num_classes", num_classes, 2);
  naca::api::check_real(who, "init_gain", o.init_gain());
  torch::nn::Sequential model;
  model->push_back(nn::BernoulliEncoder(nn::BernoulliEncoderOptions(o.T()).seed(o.seed())));
  if (o.stp()) model->push_back(nn::STPSynapse());
  const auto layer = [&](int64_t in, int64_t out, bool bias, bool is_output, size_t i) {
    return nn::NACASpikingLinear(nn::NACASpikingLinearOptions(in, out, num_classes)
                                     .bias(bias)
                                     .decay(o.decay())
                                     .threshold(o.threshold())
                                     .lens(o.lens())
                                     .is_output(is_output)
                                     .surrogate(o.surrogate())
                                     .slope(o.slope())
                                     .ni_init(o.ni_init())
                                     .seed(o.seed() ? std::optional<int64_t>(*o.seed() +
                                                                             static_cast<int64_t>(i))
                                                    : std::nullopt)
                                     .current(o.current()));
  };
  std::vector<nn::NACASpikingLinear> layers;
  for (size_t i = 0; i < hidden.size(); ++i) {
    layers.push_back(layer(width, hidden[i], o.bias(), false, i));
    width = hidden[i];
  }
  layers.push_back(layer(width, num_classes, o.output_bias().value_or(o.bias()), true,
                         hidden.size()));
  for (auto& l : layers) {
    if (o.init_gain() != 1.0) {
      torch::NoGradGuard no_grad;
      l->weight.mul_(o.init_gain());
    }
    model->push_back(l);
  }
  model->push_back(nn::SpikeRate());
  return model;
}

torch::nn::Sequential sbp_snn(int64_t in_features, int64_t hidden, int64_t num_classes,
                              const SpikingMLPOptions& options) {
  return spiking_mlp(in_features, {naca::api::check_int("sbp_snn", "hidden", hidden, 1)},
                     num_classes, options);
}

}  // namespace naca::models
