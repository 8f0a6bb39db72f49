// naca::learn::SBP (csrc/include/naca/learn/sbp.h), step for step as torch_plugin/learn/sbp.py.
#include <naca/learn/sbp.h>

#include <naca/nn/linear.h>
#include <naca/nn/spiking.h>
#include <naca/ops.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/linear.h>

#include <cmath>
#include <sstream>
#include <unordered_set>

#include "api/nn/spiking_args.h"

namespace naca::learn {
namespace {

using naca::api::check_choice;
using naca::api::check_int;
using naca::api::check_real;

std::optional<torch::Tensor> maybe(const torch::Tensor& t) {
  return t.defined() ? std::optional<torch::Tensor>(t) : std::nullopt;
}

// Fail clearly when a parameter of the model would silently never learn.
void check_only_these_train(const torch::nn::Sequential& model,
                            const std::vector<const torch::nn::Module*>& trained) {
  std::unordered_set<const c10::TensorImpl*> owned;
  for (const auto* m : trained) {
    for (const auto& p : m->parameters(/*recurse=*/false)) owned.insert(p.unsafeGetTensorImpl());
  }
  std::ostringstream stray;
  int n = 0;
  for (const auto& item : model->named_parameters()) {
    if (item.value().requires_grad() && !owned.count(item.value().unsafeGetTensorImpl())) {
      stray << (n++ ? ", '" : "'") << item.key() << "'";
    }
  }
  TORCH_CHECK(n == 0, "naca::SBP: argument 'model' has trainable parameters in layers the learner "
              "cannot train (use the plugin's layers, or set requires_grad(false) to freeze them): [",
              stray.str(), "]");
}

}  // namespace

// The trained layers, found once when the learner is built.
struct SBP::Layers {
  // The SNN: two NACASpikingLinear layers, hidden then output.
  nn::NACASpikingLinear s_hidden{nullptr}, s_output{nullptr};
  // The ANN: one NACALinear and one NACAOutput.
  nn::NACALinear a_hidden{nullptr};
  nn::NACAOutput a_output{nullptr};
  // Their (or the ANN layers') parameters.
  torch::Tensor w_in, b_in, w_out, b_out;
};

std::optional<torch::Tensor> subset_mask(int64_t hidden, int64_t inputs, double percentage,
                                         int64_t seed) {
  percentage = check_real("subset_mask", "percentage", percentage, 0.0, 1.0);
  if (percentage == 1.0) return std::nullopt;
  // Python's round(): halves to even, as nearbyint in the default rounding mode.
  const auto k = static_cast<int64_t>(std::nearbyint(percentage * static_cast<double>(inputs)));
  auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(seed));
  const auto ranks = at::rand({hidden, inputs}, gen).argsort(int64_t{1}, false).argsort(int64_t{1}, false);
  return ranks < k;
}

SBP::SBP(torch::nn::Sequential model, SBPOptions options)
    : model_(std::move(model)), options_(std::move(options)), layers_(std::make_shared<Layers>()) {
  const char* who = "SBP";
  auto& o = options_;
  if (o.lr()) check_real(who, "lr", *o.lr(), 0.0);
  check_real(who, "fraction", o.fraction(), 0.0, 1.0);
  check_real(who, "percentage", o.percentage(), 0.0, 1.0);
  check_real(who, "beta", o.beta(), 0.0, 1.0, /*low_open=*/true);
  TORCH_CHECK(o.alpha().size() == 2, "naca::SBP: argument 'alpha' expected a pair (alpha_in, "
              "alpha_out), got ", o.alpha().size(), " values");
  check_real(who, "alpha[0]", o.alpha()[0], 0.0);
  check_real(who, "alpha[1]", o.alpha()[1], 0.0);
  check_int(who, "relax_steps", o.relax_steps(), 0);
  check_real(who, "eps", o.eps(), 0.0, 1.0, /*low_open=*/true);
  check_choice(who, "local_rule", o.local_rule(), {"contrastive", "symmetric", "differential"});
  TORCH_CHECK(!model_.is_empty(), "naca::SBP: argument 'model' expected a model, got an empty "
              "holder");

  std::vector<nn::NACASpikingLinear> spiking;
  std::vector<nn::NACALinear> linear;
  std::vector<nn::NACAOutput> outputs;
  for (const auto& m : model_->modules(/*include_self=*/false)) {
    if (auto s = std::dynamic_pointer_cast<nn::NACASpikingLinearImpl>(m)) {
      spiking.emplace_back(s);
    } else if (auto l = std::dynamic_pointer_cast<nn::NACALinearImpl>(m)) {
      linear.emplace_back(l);
    } else if (auto o = std::dynamic_pointer_cast<nn::NACAOutputImpl>(m)) {
      outputs.emplace_back(o);
    }
  }
  auto& L = *layers_;
  std::vector<const torch::nn::Module*> trained;
  if (!spiking.empty()) {
    TORCH_CHECK(spiking.size() == 2 && !spiking[0]->options.is_output() &&
                    spiking[1]->options.is_output(),
                "naca::SBP: argument 'model' expected exactly two NACASpikingLinear layers, hidden "
                "then output (is_output=true), e.g. naca::models::sbp_snn; got ", spiking.size(),
                " NACASpikingLinear layers");
    spiking_ = true;
    L.s_hidden = spiking[0];
    L.s_output = spiking[1];
    L.w_in = L.s_hidden->weight;
    L.b_in = L.s_hidden->bias;
    L.w_out = L.s_output->weight;
    L.b_out = L.s_output->bias;
    trained = {L.s_hidden.get(), L.s_output.get()};
  } else {
    TORCH_CHECK(linear.size() == 1 && outputs.size() == 1, "naca::SBP: argument 'model' expected an ANN "
                "with exactly one NACALinear and one NACAOutput (e.g. naca::models::sbp_ann) or an SNN with "
                "two NACASpikingLinear layers (naca::models::sbp_snn); got ", linear.size(), " NACALinear and ",
                outputs.size(), " NACAOutput layers");
    L.a_hidden = linear[0];
    L.a_output = outputs[0];
    L.w_in = L.a_hidden->weight;
    L.b_in = L.a_hidden->bias;
    L.w_out = L.a_output->weight;
    L.b_out = L.a_output->bias;
    trained = {L.a_hidden.get(), L.a_output.get()};
  }
  lr_ = o.lr() ? *o.lr() : (spiking_ ? 1.0 : 10.0);
  TORCH_CHECK(L.w_out.size(1) == L.w_in.size(0), "naca::SBP: argument 'model' expected the output "
              "layer to read the hidden layer directly (output in_features ", L.w_out.size(1),
              " == hidden out_features ", L.w_in.size(0), ")");
  check_only_these_train(model_, trained);
  mask_ = subset_mask(L.w_in.size(0), L.w_in.size(1), o.percentage(), o.seed());
  if (mask_) mask_ = mask_->to(L.w_in.device());
}

int64_t SBP::num_classes() const { return layers_->w_out.size(0); }

torch::Tensor SBP::step(const torch::Tensor& x, const torch::Tensor& y) {
  auto [result, sums] = local_changes(x, y);
  apply_changes(sums, x.size(0));
  ++steps_;
  return result;
}

std::pair<torch::Tensor, SBPChanges> SBP::local_changes(const torch::Tensor& x,
                                                        const torch::Tensor& y) {
  TORCH_CHECK(x.defined() && x.dim() >= 1, "naca::SBP::step: argument 'x' expected a batch "
              "(B, ...), got ", x.defined() ? "a 0-dimensional tensor" : "an undefined tensor");
  TORCH_CHECK(y.defined() && y.scalar_type() == torch::kLong && y.dim() == 1 &&
                  y.size(0) == x.size(0),
              "naca::SBP::step: argument 'y' expected int64 labels of shape (", x.size(0),
              "), got ", y.defined() ? c10::toString(y.scalar_type()) : "undefined", " ",
              y.defined() ? y.sizes() : at::IntArrayRef{});
  const int64_t n = num_classes();
  if (y.numel() > 0) {
    const auto [lo_t, hi_t] = torch::aminmax(y);
    const int64_t lo = lo_t.item<int64_t>(), hi = hi_t.item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < n, "naca::SBP::step: argument 'y' expected labels in [0, ", n,
                "), got values in [", lo, ", ", hi, "]");
  }
  model_->train();
  auto& L = *layers_;
  const double beta = options_.beta();
  torch::NoGradGuard no_grad;
  torch::Tensor result, r_x, r_h, r_o, pre, z_h;
  if (spiking_) {
    auto hid = L.s_hidden, out = L.s_output;
    struct Recording {  // record during the forward only, and free what was kept after it
      nn::NACASpikingLinearImpl *h, *o;
      ~Recording() {
        h->record = o->record = false;
        h->saved.reset();
        o->saved.reset();
      }
    } recording{hid.get(), out.get()};
    hid->record = out->record = true;
    hid->saved.reset();
    out->saved.reset();
    result = model_->forward(x);
    TORCH_CHECK(hid->saved && out->saved, "naca::SBP: the hidden and output layers must both run "
                "in the model's forward");
    pre = hid->saved->pre_spikes;
    r_x = pre.mean(0);
    r_h = hid->saved->spikes.mean(0);
    r_o = out->saved->spikes.mean(0);
  } else {
    auto hid = L.a_hidden;
    auto out = L.a_output;
    struct Recording {  // (input, z) during the forward only, and free what was kept after it
      std::vector<nn::Recording*> layers;
      ~Recording() {
        for (auto* r : layers) {
          r->record_mode = nn::RecordMode::kOff;
          r->saved.clear();
        }
      }
    } recording{{hid.get(), out.get()}};
    for (auto* r : recording.layers) {
      r->record_mode = nn::RecordMode::kPreact;  // the nudged phase needs z
      r->recorder = nullptr;
      r->saved.clear();
    }
    result = model_->forward(x);
    TORCH_CHECK(!hid->saved.empty() && !out->saved.empty(), "naca::SBP: the hidden and output layers must "
                "both run in the model's forward");
    pre = hid->saved[0];
    z_h = hid->saved[1];
    r_x = pre;
    r_h = nn::activate(z_h, hid->options.activation());
    r_o = torch::sigmoid(out->saved[1]);
  }
  const auto target = torch::one_hot(y, n).to(r_o.scalar_type());
  const auto top_down = beta * (target - r_o);  // r_o^beta - r_o
  const auto feedback = top_down.matmul(L.w_out);  // (B, H)
  torch::Tensor r_hb;
  if (options_.relax_steps() > 0) {
    // Both phases relax from the forward's hidden state, the free one with the bottom-up drive
    // only and the nudged one with the top-down drive too, so that their difference is the
    // nudge's effect alone.
    r_h = nn::homeostatic_relax(r_h, r_x, L.w_in, std::nullopt, std::nullopt, maybe(L.b_in),
                                options_.eps(), options_.relax_steps());
    r_hb = nn::homeostatic_relax(r_h, r_x, L.w_in, top_down, L.w_out, maybe(L.b_in),
                                 options_.eps(), options_.relax_steps());
  } else if (spiking_) {
    const auto& lif = L.s_hidden->lif->options;
    const auto current = at::linear(pre, L.w_in, maybe(L.b_in)) + feedback.unsqueeze(0);
    r_hb = std::get<0>(naca::ops::lif_forward(current, lif.decay(), lif.threshold(), lif.reset()))
               .mean(0);
  } else {
    r_hb = nn::activate(z_h + feedback, L.a_hidden->options.activation());
  }
  SBPChanges sums;
  sums.w_out = local_change(r_h, r_hb, r_o, r_o + top_down);
  sums.w_in = local_change(r_x, r_x, r_h, r_hb);
  sums.b_out = top_down.sum(0);
  sums.b_in = (r_hb - r_h).sum(0);
  return {result, sums};
}

void SBP::apply_changes(const SBPChanges& sums, int64_t batch) {
  if (batch <= 0) return;
  auto& L = *layers_;
  const double scale = 1.0 / (options_.beta() * static_cast<double>(batch));
  const double a_in = lr_ * options_.alpha()[0], a_out = lr_ * options_.alpha()[1];
  torch::NoGradGuard no_grad;
  const auto dw_out = sums.w_out * scale, dw_in = sums.w_in * scale;
  const auto db_out = sums.b_out * scale, db_in = sums.b_in * scale;
  if (options_.skip_nonfinite()) {
    const auto finite = torch::stack({torch::isfinite(dw_in).all(), torch::isfinite(dw_out).all(),
                                      torch::isfinite(db_in).all(), torch::isfinite(db_out).all()})
                            .all()
                            .item<bool>();
    if (!finite) {
      ++skipped_steps_;
      return;
    }
  }
  naca::ops::sbp_update_(L.w_in, L.w_out, dw_in.contiguous(), dw_out.contiguous(), mask_,
                         options_.fraction(), a_in, a_out);
  if (L.b_out.defined()) L.b_out.add_(db_out, a_out);
  if (L.b_in.defined()) L.b_in.add_(db_in, a_in);
}

torch::Tensor SBP::local_change(const torch::Tensor& pre0, const torch::Tensor& preb,
                                const torch::Tensor& post0, const torch::Tensor& postb) const {
  const auto& rule = options_.local_rule();
  if (rule == "contrastive") return (postb - post0).t().matmul(pre0);
  if (rule == "symmetric") return postb.t().matmul(preb) - post0.t().matmul(pre0);
  return post0.t().matmul(preb - pre0);
}

}  // namespace naca::learn
