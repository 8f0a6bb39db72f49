// naca::nn's ANN layers (naca/nn/common.h, linear.h, conv.h): the same checks, initialisation,
// NI and forward as torch_plugin/nn/{common,linear,conv}.py.
#include <naca/nn/common.h>
#include <naca/nn/conv.h>
#include <naca/nn/linear.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <cmath>
#include <ostream>
#include <sstream>

namespace naca::nn {
namespace {

std::string quoted(const std::vector<std::string>& names) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < names.size(); ++i) out << (i ? ", '" : "'") << names[i] << "'";
  out << ")";
  return out.str();
}

void check_choice(const char* who, const char* name, const std::string& value,
                  const std::vector<std::string>& choices) {
  TORCH_CHECK(std::find(choices.begin(), choices.end(), value) != choices.end(), "naca::nn::", who,
              ": argument '", name, "' expected one of ", quoted(choices), ", got '", value, "'");
}

void check_min(const char* who, const char* name, int64_t value, int64_t low) {
  TORCH_CHECK(value >= low, "naca::nn::", who, ": argument '", name, "' expected an integer >= ",
              low, ", got ", value);
}

void check_layer_args(const char* who, int64_t num_classes, const std::string* activation,
                      const std::string* ni_init) {
  check_min(who, "num_classes", num_classes, 2);
  if (activation) check_choice(who, "activation", *activation, activations());
  if (ni_init) check_choice(who, "ni_init", *ni_init, ni_inits());
}

at::Tensor activate_inplace(at::Tensor& z, const std::string& activation) {
  if (activation == "tanh") return z.tanh_();
  if (activation == "sigmoid") return z.sigmoid_();
  if (activation == "relu") return z.relu_();
  return z;
}

std::optional<at::Tensor> opt(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// torch.nn.Linear's and Conv2d's reset_parameters: kaiming_uniform_(a = sqrt(5)) for the
// weight, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias, in this order.
void reset_like_torch(at::Tensor& weight, at::Tensor& bias) {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const int64_t fan_in = weight.size(1) * (weight.dim() > 2 ? weight[0][0].numel() : 1);
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

}  // namespace

const std::vector<std::string>& activations() {
  static const std::vector<std::string> names{"tanh", "sigmoid", "relu", "identity"};
  return names;
}

const std::vector<std::string>& naca_activations() {
  static const std::vector<std::string> names{"tanh", "sigmoid"};
  return names;
}

const std::vector<std::string>& ni_inits() {
  static const std::vector<std::string> names{"uniform", "normal", "beta", "zeros"};
  return names;
}

at::Tensor activate(const at::Tensor& z, const std::string& activation) {
  if (activation == "tanh") return z.tanh();
  if (activation == "sigmoid") return z.sigmoid();
  if (activation == "relu") return z.relu();
  TORCH_CHECK(activation == "identity", "naca::nn::activate: argument 'activation' expected one of ",
              quoted(activations()), ", got '", activation, "'");
  return z;
}

at::Tensor make_ni(int64_t num_classes, at::IntArrayRef shape, const std::string& init,
                   std::optional<int64_t> seed, at::ScalarType dtype) {
  TORCH_CHECK(num_classes >= 2, "naca::nn::make_ni: argument 'num_classes' expected an integer >= 2, got ",
              num_classes);
  TORCH_CHECK(std::find(ni_inits().begin(), ni_inits().end(), init) != ni_inits().end(),
              "naca::nn::make_ni: argument 'init' expected one of ", quoted(ni_inits()), ", got '", init, "'");
  std::vector<int64_t> size{2 * num_classes};
  for (int64_t d : shape) {
    TORCH_CHECK(d >= 1, "naca::nn::make_ni: argument 'shape' expected sizes >= 1, got ", shape);
    size.push_back(d);
  }
  // The same draws as torch_plugin's make_ni: a fresh CPU generator seeded with `seed`
  // (torch.Generator().manual_seed(seed)), float64, then the cast.
  std::optional<at::Generator> gen;
  if (seed) gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(*seed));
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor ni;
  if (init == "zeros") {
    ni = at::zeros(size, f64);
  } else if (init == "uniform") {
    ni = at::rand(size, gen, f64);
  } else if (init == "normal") {
    ni = at::randn(size, gen, f64).add(0.5).clamp_(0.0, 1.0);
  } else {  // arcsine law: Beta(0.5, 0.5) = sin^2(pi U / 2)
    ni = at::sin(at::rand(size, gen, f64).mul(M_PI / 2)).pow(2);
  }
  return ni.to(dtype);
}

void Recording::keep(torch::nn::Module& self, std::vector<at::Tensor> tensors) {
  if (recorder != nullptr) {
    recorder->on_forward(record_slot, self, std::move(tensors));
  } else {
    saved = std::move(tensors);
  }
}

at::Tensor Recording::activate_and_record(torch::nn::Module& self, const at::Tensor& x, at::Tensor z,
                                          const std::string& activation) {
  if (record_mode == RecordMode::kOff) return activate(z, activation);
  if (record_mode == RecordMode::kPreact) {
    keep(self, {x.detach(), z.detach()});
    return activate(z, activation);
  }
  at::Tensor h;
  if (at::GradMode::is_enabled() && (z.requires_grad() || x.requires_grad())) {
    h = activate(z, activation);
  } else {  // z's buffer becomes h: one (B, H) tensor instead of two
    h = activate_inplace(z, activation);
  }
  keep(self, {x.detach(), h.detach()});
  return h;
}

// ---- NACALinear ------------------------------------------------------------------

NACALinearImpl::NACALinearImpl(const NACALinearOptions& options_) : options(options_) {
  check_layer_args("NACALinear", options.num_classes(), &options.activation(), &options.ni_init());
  check_min("NACALinear", "in_features", options.in_features(), 1);
  check_min("NACALinear", "out_features", options.out_features(), 1);
  reset();
}

void NACALinearImpl::reset() {
  weight = register_parameter("weight", at::empty({options.out_features(), options.in_features()}));
  if (options.bias()) {
    bias = register_parameter("bias", at::empty({options.out_features()}));
  } else {
    bias = register_parameter("bias", at::Tensor(), /*requires_grad=*/false);
  }
  reset_parameters();
  ni = register_buffer("ni", make_ni(options.num_classes(), {options.out_features()}, options.ni_init(),
                                     options.seed(), weight.scalar_type()));
}

void NACALinearImpl::reset_parameters() { reset_like_torch(weight, bias); }

void NACALinearImpl::pretty_print(std::ostream& stream) const {
  stream << "naca::nn::NACALinear(in_features=" << options.in_features()
         << ", out_features=" << options.out_features() << ", bias=" << (options.bias() ? "true" : "false")
         << ", num_classes=" << options.num_classes() << ", activation=" << options.activation() << ")";
}

at::Tensor NACALinearImpl::forward(const at::Tensor& x) {
  return activate_and_record(*this, x, at::linear(x, weight, opt(bias)), options.activation());
}

// ---- NACAOutput ------------------------------------------------------------------

NACAOutputImpl::NACAOutputImpl(const NACAOutputOptions& options_) : options(options_) {
  check_layer_args("NACAOutput", options.num_classes(), nullptr, nullptr);
  check_min("NACAOutput", "in_features", options.in_features(), 1);
  reset();
}

void NACAOutputImpl::reset() {
  weight = register_parameter("weight", at::empty({options.num_classes(), options.in_features()}));
  if (options.bias()) {
    bias = register_parameter("bias", at::empty({options.num_classes()}));
  } else {
    bias = register_parameter("bias", at::Tensor(), /*requires_grad=*/false);
  }
  reset_parameters();
}

void NACAOutputImpl::reset_parameters() { reset_like_torch(weight, bias); }

void NACAOutputImpl::pretty_print(std::ostream& stream) const {
  stream << "naca::nn::NACAOutput(in_features=" << options.in_features()
         << ", num_classes=" << options.num_classes() << ", bias=" << (options.bias() ? "true" : "false")
         << ", sigmoid_grad=" << (options.sigmoid_grad() ? "true" : "false") << ")";
}

at::Tensor NACAOutputImpl::forward(const at::Tensor& x) {
  at::Tensor z = at::linear(x, weight, opt(bias));
  if (record_mode != RecordMode::kOff) keep(*this, {x.detach(), z.detach()});
  return z;
}

// ---- NACAConv2d ------------------------------------------------------------------

NACAConv2dImpl::NACAConv2dImpl(const NACAConv2dOptions& options_) : options(options_) {
  const char* who = "NACAConv2d";
  check_min(who, "in_channels", options.in_channels(), 1);
  check_min(who, "out_channels", options.out_channels(), 1);
  const auto& k = *options.kernel_size();
  const auto& size = *options.input_size();
  const auto& st = *options.stride();
  const auto& pad = *options.padding();
  const auto& dil = *options.dilation();
  for (int i = 0; i < 2; ++i) check_min(who, "kernel_size", k[i], 1);
  for (int i = 0; i < 2; ++i) check_min(who, "input_size", size[i], 1);
  for (int i = 0; i < 2; ++i) check_min(who, "stride", st[i], 1);
  for (int i = 0; i < 2; ++i) check_min(who, "padding", pad[i], 0);
  for (int i = 0; i < 2; ++i) check_min(who, "dilation", dil[i], 1);
  const int64_t g = options.groups();
  check_min(who, "groups", g, 1);
  TORCH_CHECK(options.in_channels() % g == 0 && options.out_channels() % g == 0, "naca::nn::", who,
              ": argument 'groups' expected a divisor of in_channels (", options.in_channels(),
              ") and out_channels (", options.out_channels(), "), got ", g);
  int64_t span[2];
  for (int i = 0; i < 2; ++i) span[i] = dil[i] * (k[i] - 1) + 1;
  TORCH_CHECK(size[0] + 2 * pad[0] >= span[0] && size[1] + 2 * pad[1] >= span[1], "naca::nn::", who,
              ": argument 'input_size' expected at least ", span[0] - 2 * pad[0], " x ", span[1] - 2 * pad[1],
              " (a dilated kernel of ", span[0], " x ", span[1], ", padding ", options.padding(), "), got ",
              options.input_size());
  check_layer_args(who, options.num_classes(), &options.activation(), &options.ni_init());
  for (int i = 0; i < 2; ++i) output_size[i] = (size[i] + 2 * pad[i] - dil[i] * (k[i] - 1) - 1) / st[i] + 1;
  reset();
}

void NACAConv2dImpl::reset() {
  const auto& k = *options.kernel_size();
  weight = register_parameter(
      "weight", at::empty({options.out_channels(), options.in_channels() / options.groups(), k[0], k[1]}));
  if (options.bias()) {
    bias = register_parameter("bias", at::empty({options.out_channels()}));
  } else {
    bias = register_parameter("bias", at::Tensor(), /*requires_grad=*/false);
  }
  reset_parameters();
  ni = register_buffer("ni", make_ni(options.num_classes(), {options.out_channels(), output_size[0], output_size[1]},
                                     options.ni_init(), options.seed(), weight.scalar_type()));
}

void NACAConv2dImpl::reset_parameters() { reset_like_torch(weight, bias); }

void NACAConv2dImpl::pretty_print(std::ostream& stream) const {
  stream << "naca::nn::NACAConv2d(" << options.in_channels() << ", " << options.out_channels()
         << ", kernel_size=" << options.kernel_size() << ", stride=" << options.stride()
         << ", padding=" << options.padding() << ", num_classes=" << options.num_classes()
         << ", input_size=" << options.input_size() << ", activation=" << options.activation() << ")";
}

at::Tensor NACAConv2dImpl::forward(const at::Tensor& x) {
  at::Tensor z = at::conv2d(x, weight, opt(bias), *options.stride(), *options.padding(), *options.dilation(),
                            options.groups());
  return activate_and_record(*this, x, z, options.activation());
}

}  // namespace naca::nn
