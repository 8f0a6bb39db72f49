// naca::nn spiking layers (csrc/include/naca/nn/spiking.h), mirroring torch_plugin/nn/spiking.py:
// the same checks, parameter names, random draws and arithmetic, op for op.
#include <naca/nn/spiking.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <torch/autograd.h>
#include <torch/nn/init.h>

#include <cmath>
#include <mutex>
#include <vector>

#include "api/nn/spiking_args.h"

namespace naca::nn {
namespace {

using naca::api::check_choice;
using naca::api::check_int;
using naca::api::check_real;

void check_lif(const char* who, double decay, double threshold, const std::string& reset,
               double slope) {
  check_real(who, "decay", decay, 0.0, 1.0);
  check_real(who, "threshold", threshold);
  check_choice(who, "reset", reset, {"hard", "soft"});
  check_real(who, "slope", slope, 0.0, std::nullopt, /*low_open=*/true);
}

// The NI draw of torch_plugin.nn.common.make_ni: float64 from the seed's own generator (or
// torch's global RNG), then the default dtype.
torch::Tensor make_ni(int64_t num_classes, int64_t width, const std::string& init,
                      std::optional<int64_t> seed) {
  std::optional<at::Generator> gen;
  if (seed) gen = at::detail::createCPUGenerator(static_cast<uint64_t>(*seed));
  const std::vector<int64_t> size{2 * num_classes, width};
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor ni;
  if (init == "zeros") {
    ni = torch::zeros(size, f64);
  } else if (init == "uniform") {
    ni = at::rand(size, gen, f64);
  } else if (init == "normal") {
    ni = (0.5 + at::randn(size, gen, f64)).clamp_(0.0, 1.0);
  } else {  // arcsine law: Beta(0.5, 0.5) = sin^2(pi U / 2)
    ni = at::pow(at::sin(at::rand(size, gen, f64) * (M_PI / 2)), 2);
  }
  return ni.to(at::get_default_dtype_as_scalartype());
}

// Heaviside forward, slope * sigmoid'(slope * (v - threshold)) backward.
struct SurrogateSpikeFunction : public torch::autograd::Function<SurrogateSpikeFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& v,
                               double threshold, double slope) {
    ctx->save_for_backward({v});
    ctx->saved_data["threshold"] = threshold;
    ctx->saved_data["slope"] = slope;
    return (v > threshold).to(v.scalar_type());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto v = ctx->get_saved_variables()[0];
    const double threshold = ctx->saved_data["threshold"].toDouble();
    const double slope = ctx->saved_data["slope"].toDouble();
    const auto sg = torch::sigmoid((v - threshold) * slope);
    return {grad[0] * slope * sg * (1 - sg), torch::Tensor(), torch::Tensor()};
  }
};

bool needs_grad(std::initializer_list<const torch::Tensor*> tensors) {
  if (!torch::GradMode::is_enabled()) return false;
  for (const auto* t : tensors) {
    if (t->defined() && t->requires_grad()) return true;
  }
  return false;
}

// Whether the fused ops take these tensors: one device, CPU or CUDA, one dtype they support.
bool fusable(std::initializer_list<const torch::Tensor*> tensors) {
  const torch::Tensor& t0 = **tensors.begin();
  const auto st = t0.scalar_type();
  const bool cuda = t0.device().is_cuda();
  const bool ok = st == torch::kFloat32 || st == torch::kFloat64 ||
                  (cuda && (st == torch::kFloat16 || st == torch::kBFloat16));
  if (!ok || !(t0.device().is_cpu() || cuda)) return false;
  for (const auto* t : tensors) {
    if (t->device() != t0.device() || t->scalar_type() != st) return false;
  }
  return true;
}

std::optional<torch::Tensor> maybe(const torch::Tensor& t) {
  return t.defined() ? std::optional<torch::Tensor>(t) : std::nullopt;
}

torch::Tensor stp_torch(const torch::Tensor& spikes, double U, double tau_f, double tau_d,
                        double tau_s, double A) {
  auto u = torch::zeros_like(spikes[0]);
  auto x = torch::ones_like(spikes[0]);
  auto i_syn = torch::zeros_like(spikes[0]);
  std::vector<torch::Tensor> out;
  out.reserve(spikes.size(0));
  for (int64_t t = 0; t < spikes.size(0); ++t) {
    const auto s = spikes[t];
    u = u - u / tau_f + U * s * (1 - u);
    x = x + (1 - x) / tau_d - u * x * s;
    i_syn = i_syn - i_syn / tau_s + A * u * x * s;
    out.push_back(i_syn);
  }
  return torch::stack(out);
}

}  // namespace

// ---- free functions --------------------------------------------------------------------------

torch::Tensor surrogate_spike(const torch::Tensor& v, double threshold, double slope) {
  return SurrogateSpikeFunction::apply(v, threshold, slope);
}

torch::Tensor stp_forward(const torch::Tensor& spikes, double U, double tau_f, double tau_d,
                          double tau_s, double A) {
  if (needs_grad({&spikes}) || !fusable({&spikes}) || spikes.dim() == 0 || spikes.size(0) == 0) {
    return stp_torch(spikes, U, tau_f, tau_d, tau_s, A);
  }
  // The op takes (T, B, N); any (T, ...) runs as (T, 1, prod(...)).
  const auto seq = spikes.dim() == 3 ? spikes : spikes.reshape({spikes.size(0), 1, -1});
  return naca::ops::stp_forward(seq.detach(), U, tau_f, tau_d, tau_s, A).view(spikes.sizes());
}

torch::Tensor homeostatic_relax(const torch::Tensor& s_h, const torch::Tensor& s_below,
                                const torch::Tensor& w_below,
                                const std::optional<torch::Tensor>& s_above,
                                const std::optional<torch::Tensor>& w_above,
                                const std::optional<torch::Tensor>& b_h, double eps,
                                int64_t iters) {
  auto drive = at::linear(s_below, w_below, b_h);
  if (s_above && s_above->defined()) {
    TORCH_CHECK(w_above && w_above->defined(), "naca::homeostatic_relax: argument 'w_above' "
                "expected a (O, H) tensor with s_above, got none");
    drive = drive + s_above->matmul(*w_above);
  }
  if (!needs_grad({&s_h, &drive}) && fusable({&s_h, &drive})) {
    const auto both = torch::broadcast_tensors({s_h.detach(), drive.detach()});
    return naca::ops::homeostatic_relax(both[0], both[1], eps, iters);
  }
  auto s = s_h;
  for (int64_t i = 0; i < iters; ++i) s = (s - eps * (s - drive)).clamp(0, 1);
  return s;
}

// ---- LIF -----------------------------------------------------------------------------------

LIFImpl::LIFImpl(const LIFOptions& options_) : options(options_) {
  check_lif("LIF", options.decay(), options.threshold(), options.reset(), options.slope());
}

std::tuple<torch::Tensor, torch::Tensor> LIFImpl::run(const torch::Tensor& current,
                                                      const std::optional<torch::Tensor>& v_init,
                                                      const std::optional<torch::Tensor>& s_init) {
  TORCH_CHECK(current.dim() == 3, "naca::LIF: argument 'current' expected a (T, B, N) tensor, got "
              "shape ", current.sizes());
  if (needs_grad({&current})) {
    TORCH_CHECK(options.surrogate(), "naca::LIF: a gradient is required but surrogate=false; use "
                "surrogate(true) or run under torch::NoGradGuard");
    auto v = v_init ? *v_init : torch::zeros_like(current[0]);
    auto s = s_init ? *s_init : torch::zeros_like(current[0]);
    std::vector<torch::Tensor> spikes, volts;
    for (int64_t t = 0; t < current.size(0); ++t) {
      const auto sd = s.detach();
      const auto kept = options.reset() == "soft" ? v - options.threshold() * sd : v * (1 - sd);
      v = options.decay() * kept + current[t];
      s = surrogate_spike(v, options.threshold(), options.slope());
      spikes.push_back(s);
      volts.push_back(v);
    }
    return {torch::stack(spikes), torch::stack(volts)};
  }
  return naca::ops::lif_forward(current.detach(), options.decay(), options.threshold(),
                                options.reset(), v_init, s_init);
}

torch::Tensor LIFImpl::forward(const torch::Tensor& current) { return std::get<0>(run(current)); }

void LIFImpl::pretty_print(std::ostream& stream) const {
  stream << "naca::nn::LIF(decay=" << options.decay() << ", threshold=" << options.threshold()
         << ", reset='" << options.reset() << "', surrogate=" << std::boolalpha
         << options.surrogate() << ")";
}

// ---- NACASpikingLinear --------------------------------------------------------------------

NACASpikingLinearImpl::NACASpikingLinearImpl(const NACASpikingLinearOptions& options_)
    : options(options_) {
  const char* who = "NACASpikingLinear";
  const auto& o = options;
  check_int(who, "num_classes", o.num_classes(), 2);
  check_choice(who, "ni_init", o.ni_init(), {"uniform", "normal", "beta", "zeros"});
  check_int(who, "in_features", o.in_features(), 1);
  check_int(who, "out_features", o.out_features(), 1);
  check_choice(who, "current", o.current(), {"linear", "sigmoid"});
  check_lif(who, o.decay(), o.threshold(), o.reset(), o.slope());
  check_real(who, "lens", o.lens(), 0.0);
  TORCH_CHECK(!o.is_output() || o.out_features() == o.num_classes(), "naca::", who,
              ": argument 'out_features' expected num_classes (", o.num_classes(),
              ") for an output layer (is_output=true), got ", o.out_features());
  reset();
}

void NACASpikingLinearImpl::reset() {
  const auto& o = options;
  // As torch.nn.Linear: weight, then bias, from torch's global RNG; then NI.
  weight = register_parameter("weight", torch::empty({o.out_features(), o.in_features()}));
  if (o.bias()) {
    bias = register_parameter("bias", torch::empty({o.out_features()}));
  } else {
    bias = torch::Tensor();
  }
  {
    torch::NoGradGuard no_grad;
    torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
    if (bias.defined()) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(o.in_features()));
      torch::nn::init::uniform_(bias, -bound, bound);
    }
  }
  ni = register_buffer("ni", make_ni(o.num_classes(), o.out_features(), o.ni_init(), o.seed()));
  lif = register_module("lif", LIF(LIFOptions()
                                       .decay(o.decay())
                                       .threshold(o.threshold())
                                       .reset(o.reset())
                                       .surrogate(o.surrogate())
                                       .slope(o.slope())));
}

torch::Tensor NACASpikingLinearImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 3, "naca::NACASpikingLinear: argument 'x' expected (T, B, in_features) "
              "spikes, got shape ", x.sizes());
  auto current = at::linear(x, weight, maybe(bias));
  if (options.current() == "sigmoid") current = torch::sigmoid(current);
  auto [spikes, volts] = lif->run(current);
  current = torch::Tensor();  // (T, B, H): not needed once the voltages exist
  if (record) {
    SpikingRecord kept{x.detach(), volts.detach(), spikes.detach()};
    if (sink) {
      sink(*this, std::move(kept));
    } else {
      saved = std::move(kept);
    }
  }
  return spikes;
}

void NACASpikingLinearImpl::pretty_print(std::ostream& stream) const {
  const auto& o = options;
  stream << "naca::nn::NACASpikingLinear(in_features=" << o.in_features()
         << ", out_features=" << o.out_features() << ", bias=" << std::boolalpha << o.bias()
         << ", num_classes=" << o.num_classes() << ", lens=" << o.lens()
         << ", is_output=" << o.is_output() << ", current='" << o.current() << "')";
}

// ---- BernoulliEncoder -----------------------------------------------------------------------

BernoulliEncoderImpl::BernoulliEncoderImpl(const BernoulliEncoderOptions& options_)
    : options(options_) {
  check_int("BernoulliEncoder", "T", options.T(), 1);
}

void BernoulliEncoderImpl::reset() { generators_.clear(); }

torch::Tensor BernoulliEncoderImpl::forward(const torch::Tensor& input) {
  TORCH_CHECK(input.dim() >= 1, "naca::BernoulliEncoder: argument 'x' expected a batch (B, ...), "
              "got a 0-dimensional tensor");
  int64_t features = 1;
  for (int64_t d = 1; d < input.dim(); ++d) features *= input.size(d);
  const auto x = input.reshape({input.size(0), features}).clamp(0, 1);  // (not -1: B may be 0)
  std::optional<at::Generator> gen;
  if (options.seed()) {
    const std::string key = x.device().str();
    auto it = generators_.find(key);
    if (it == generators_.end()) {
      at::Generator g;
      if (x.device().is_cpu()) {
        g = at::detail::createCPUGenerator(static_cast<uint64_t>(*options.seed()));
      } else {  // a fresh generator of that device, seeded as torch.Generator(device).manual_seed
        auto def = at::globalContext().defaultGenerator(x.device());
        {
          std::lock_guard<std::mutex> lock(def.mutex());
          g = def.clone();
        }
        g.set_current_seed(static_cast<uint64_t>(*options.seed()));
      }
      it = generators_.emplace(key, std::move(g)).first;
    }
    gen = it->second;
  }
  const auto u = at::rand({options.T(), x.size(0), x.size(1)}, gen, x.options());
  return (x.unsqueeze(0) > u).to(x.scalar_type());
}

void BernoulliEncoderImpl::pretty_print(std::ostream& stream) const {
  stream << "naca::nn::BernoulliEncoder(T=" << options.T() << ", seed=";
  if (options.seed()) {
    stream << *options.seed();
  } else {
    stream << "None";
  }
  stream << ")";
}

// ---- SpikeRate ------------------------------------------------------------------------------

torch::Tensor SpikeRateImpl::forward(const torch::Tensor& spikes) { return spikes.mean(0); }

void SpikeRateImpl::pretty_print(std::ostream& stream) const { stream << "naca::nn::SpikeRate()"; }

// ---- STPSynapse -----------------------------------------------------------------------------

STPSynapseImpl::STPSynapseImpl(const STPSynapseOptions& options_) : options(options_) {
  const char* who = "STPSynapse";
  check_real(who, "U", options.U(), 0.0, 1.0);
  check_real(who, "tau_f", options.tau_f(), 1.0);
  check_real(who, "tau_d", options.tau_d(), 1.0);
  check_real(who, "tau_s", options.tau_s(), 1.0);
  check_real(who, "A", options.A());
}

torch::Tensor STPSynapseImpl::forward(const torch::Tensor& spikes) {
  return stp_forward(spikes, options.U(), options.tau_f(), options.tau_d(), options.tau_s(),
                     options.A());
}

void STPSynapseImpl::pretty_print(std::ostream& stream) const {
  stream << "naca::nn::STPSynapse(U=" << options.U() << ", tau_f=" << options.tau_f()
         << ", tau_d=" << options.tau_d() << ", tau_s=" << options.tau_s()
         << ", A=" << options.A() << ")";
}

}  // namespace naca::nn
