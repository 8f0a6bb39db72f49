// GoogleTest cases for the C++ spiking layers, the spiking models and naca::learn::SBP: against
// direct op calls, hand-worked cases and values drawn by the Python package (quoted below with
// the Python lines that produce them), and bad input (a c10::Error naming the argument, no
// weight changed).
#include <gtest/gtest.h>
#include <naca/naca.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace {

// Expects `fn` to throw a c10::Error whose message holds every one of `parts`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    return;
  }
  ADD_FAILURE() << "no c10::Error thrown";
}

std::vector<std::string> names(const torch::OrderedDict<std::string, torch::Tensor>& d) {
  std::vector<std::string> out;
  for (const auto& item : d) out.push_back(item.key());
  return out;
}

// The state_dict of a module (parameters, then buffers, per module: Python's order).
std::vector<std::string> state_keys(const torch::nn::Module& m) {
  std::vector<std::string> out;
  for (const auto& item : m.named_modules()) {
    const std::string prefix = item.key().empty() ? "" : item.key() + ".";
    for (const auto& p : item.value()->named_parameters(false)) out.push_back(prefix + p.key());
    for (const auto& b : item.value()->named_buffers(false)) out.push_back(prefix + b.key());
  }
  return out;
}

}  // namespace

// ---- LIF -----------------------------------------------------------------------------------

TEST(SpikingApi, LifForwardIsTheFusedOp) {
  torch::manual_seed(0);
  const auto current = torch::rand({6, 3, 4}) * 1.2;
  naca::nn::LIF lif(naca::nn::LIFOptions().decay(0.3).threshold(0.4).reset("soft"));
  torch::NoGradGuard no_grad;
  const auto [s, v] = lif->run(current);
  const auto [s_ref, v_ref] = naca::ops::lif_forward(current, 0.3, 0.4, "soft");
  EXPECT_TRUE(torch::equal(s, s_ref));
  EXPECT_TRUE(torch::equal(v, v_ref));
  EXPECT_TRUE(torch::equal(lif->forward(current), s_ref));
}

TEST(SpikingApi, LifSurrogateGradientHandWorked) {
  // One step, one neuron: V = I = 0.6 > 0.5 spikes; dS/dI = slope sg (1 - sg),
  // sg = sigmoid(slope (0.6 - 0.5)) = sigmoid(0.5) at slope 5.
  auto current = torch::full({1, 1, 1}, 0.6, torch::kFloat64).requires_grad_();
  naca::nn::LIF lif;
  const auto s = lif->forward(current);
  EXPECT_EQ(s.item<double>(), 1.0);
  s.sum().backward();
  const double sg = 1.0 / (1.0 + std::exp(-0.5));
  EXPECT_NEAR(current.grad().item<double>(), 5.0 * sg * (1 - sg), 1e-12);
  // The differentiable loop has the fused op's dynamics.
  torch::manual_seed(1);
  const auto seq = (torch::rand({5, 2, 3}, torch::kFloat64) * 1.5).requires_grad_();
  const auto [s_loop, v_loop] = lif->run(seq);
  const auto [s_ref, v_ref] = naca::ops::lif_forward(seq.detach());
  EXPECT_TRUE(torch::equal(s_loop.detach(), s_ref));
  EXPECT_TRUE(torch::allclose(v_loop.detach(), v_ref, 1e-12, 1e-12));
}

TEST(SpikingApi, LifBadOptionsNameTheArgument) {
  using O = naca::nn::LIFOptions;
  expect_error([] { naca::nn::LIF(O().decay(1.5)); }, {"naca::LIF", "'decay'", "[0, 1]", "1.5"});
  expect_error([] { naca::nn::LIF(O().threshold(std::nan(""))); }, {"'threshold'", "finite"});
  expect_error([] { naca::nn::LIF(O().reset("none")); }, {"'reset'", "'hard', 'soft'", "'none'"});
  expect_error([] { naca::nn::LIF(O().slope(0)); }, {"'slope'", "> 0"});
  naca::nn::LIF lif(O().surrogate(false));
  expect_error([&] { lif->forward(torch::rand({2, 3})); }, {"'current'", "(T, B, N)"});
  expect_error([&] { lif->forward(torch::rand({2, 1, 3}).requires_grad_()); }, {"surrogate"});
}

// ---- NACASpikingLinear ---------------------------------------------------------------------

TEST(SpikingApi, SpikingLinearNamesShapesAndPythonNi) {
  naca::nn::NACASpikingLinear layer(naca::nn::NACASpikingLinearOptions(2, 3, 2).seed(0));
  EXPECT_EQ(names(layer->named_parameters(false)), (std::vector<std::string>{"weight", "bias"}));
  EXPECT_EQ(names(layer->named_buffers(false)), (std::vector<std::string>{"ni"}));
  EXPECT_EQ(layer->weight.sizes(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(layer->ni.sizes(), (std::vector<int64_t>{4, 3}));
  // Python: torch_plugin.nn.NACASpikingLinear(2, 3, 2, seed=0).ni.flatten().tolist()
  const std::vector<double> py{0.9700530171394348, 0.7078198790550232, 0.45938295125961304,
                               0.920747697353363,  0.6450241208076477, 0.7911478877067566,
                               0.17860618233680725, 0.3511076271533966, 0.5813409090042114,
                               0.2882359027862549, 0.45286884903907776, 0.17679952085018158};
  const auto ni = layer->ni.to(torch::kFloat64).flatten();
  for (size_t i = 0; i < py.size(); ++i) EXPECT_EQ(ni[i].item<double>(), py[i]) << i;
  // As torch::nn::Linear: |w|, |b| <= 1 / sqrt(in_features).
  EXPECT_LE(layer->weight.abs().max().item<double>(), 1 / std::sqrt(2.0));
  EXPECT_LE(layer->bias.abs().max().item<double>(), 1 / std::sqrt(2.0));
  naca::nn::NACASpikingLinear no_bias(naca::nn::NACASpikingLinearOptions(2, 3, 2).bias(false));
  EXPECT_FALSE(no_bias->bias.defined());
  EXPECT_EQ(names(no_bias->named_parameters(false)), (std::vector<std::string>{"weight"}));
}

TEST(SpikingApi, SpikingLinearForwardAndRecord) {
  torch::manual_seed(2);
  for (const std::string current : {"linear", "sigmoid"}) {
    naca::nn::NACASpikingLinear layer(naca::nn::NACASpikingLinearOptions(5, 4, 3)
                                          .decay(0.25)
                                          .threshold(0.3)
                                          .current(current));
    const auto x = (torch::rand({6, 2, 5}) > 0.5).to(torch::kFloat32);
    torch::NoGradGuard no_grad;
    auto z = x.matmul(layer->weight.t()) + layer->bias;
    if (current == "sigmoid") z = torch::sigmoid(z);
    const auto [s_ref, v_ref] = naca::ops::lif_forward(z, 0.25, 0.3, "hard");
    layer->record = true;
    const auto s = layer->forward(x);
    EXPECT_TRUE(torch::allclose(s, s_ref)) << current;
    ASSERT_TRUE(layer->saved.has_value());
    EXPECT_TRUE(torch::equal(layer->saved->pre_spikes, x));
    EXPECT_TRUE(torch::allclose(layer->saved->voltages, v_ref, 1e-6, 1e-6));
    EXPECT_TRUE(torch::equal(layer->saved->spikes, s));
    // A sink takes the record instead of `saved`.
    layer->saved.reset();
    int calls = 0;
    layer->sink = [&](naca::nn::NACASpikingLinearImpl& l, naca::nn::SpikingRecord r) {
      EXPECT_EQ(&l, layer.get());
      EXPECT_TRUE(torch::equal(r.spikes, s));
      ++calls;
    };
    layer->forward(x);
    EXPECT_EQ(calls, 1);
    EXPECT_FALSE(layer->saved.has_value());
  }
}

TEST(SpikingApi, SpikingLinearBadOptionsNameTheArgument) {
  using O = naca::nn::NACASpikingLinearOptions;
  using L = naca::nn::NACASpikingLinear;
  expect_error([] { L(O(4, 3, 1)); }, {"naca::NACASpikingLinear", "'num_classes'", ">= 2", "1"});
  expect_error([] { L(O(0, 3, 2)); }, {"'in_features'", ">= 1"});
  expect_error([] { L(O(4, 0, 2)); }, {"'out_features'"});
  expect_error([] { L(O(4, 3, 2).ni_init("gauss")); }, {"'ni_init'", "'gauss'"});
  expect_error([] { L(O(4, 3, 2).current("tanh")); }, {"'current'", "'linear', 'sigmoid'"});
  expect_error([] { L(O(4, 3, 2).decay(-0.1)); }, {"'decay'"});
  expect_error([] { L(O(4, 3, 2).lens(-1)); }, {"'lens'", ">= 0"});
  expect_error([] { L(O(4, 3, 2).is_output(true)); }, {"'out_features'", "num_classes (2)", "3"});
  L layer(O(4, 3, 2));
  expect_error([&] { layer->forward(torch::rand({2, 4})); }, {"'x'", "(T, B, in_features)"});
}

// ---- BernoulliEncoder, SpikeRate -----------------------------------------------------------

TEST(SpikingApi, BernoulliEncoderMatchesPythonAndIsSeeded) {
  naca::nn::BernoulliEncoder enc(naca::nn::BernoulliEncoderOptions(3).seed(0));
  const auto x = torch::tensor({{0.5, 0.25}, {0.75, 0.9}});
  // Python: torch_plugin.nn.BernoulliEncoder(T=3, seed=0)(x).flatten().tolist()
  const auto py = torch::tensor({1., 0., 1., 1., 1., 0., 1., 1., 1., 0., 1., 1.});
  const auto s = enc->forward(x);
  EXPECT_EQ(s.sizes(), (std::vector<int64_t>{3, 2, 2}));
  EXPECT_TRUE(torch::equal(s.flatten(), py));
  // Its own generator goes on; a second encoder with the seed repeats the first train.
  const auto next = enc->forward(x);
  naca::nn::BernoulliEncoder again(naca::nn::BernoulliEncoderOptions(3).seed(0));
  EXPECT_TRUE(torch::equal(again->forward(x), s));
  EXPECT_TRUE(torch::equal(again->forward(x), next));
  // Flattened (B, ...) and clamped: 1 always fires, 0 never.
  naca::nn::BernoulliEncoder enc2(naca::nn::BernoulliEncoderOptions(7));
  const auto img = torch::stack({torch::full({2, 3}, 1.5), torch::full({2, 3}, -1.0)});
  const auto t = enc2->forward(img);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{7, 2, 6}));
  EXPECT_EQ(t.select(1, 0).min().item<float>(), 1.0f);
  EXPECT_EQ(t.select(1, 1).max().item<float>(), 0.0f);
  expect_error([] { naca::nn::BernoulliEncoder(naca::nn::BernoulliEncoderOptions(0)); },
               {"naca::BernoulliEncoder", "'T'", ">= 1", "0"});
}

TEST(SpikingApi, SpikeRateIsTheMeanOverTime) {
  const auto s = torch::tensor({1., 0., 1., 1., 0., 0.}).view({3, 1, 2});
  naca::nn::SpikeRate rate;
  EXPECT_TRUE(torch::allclose(rate->forward(s), torch::tensor({2. / 3, 1. / 3}).view({1, 2})));
}

// ---- STPSynapse, homeostatic_relax ---------------------------------------------------------

TEST(SpikingApi, StpSynapseIsTheFusedOpAndItsLoop) {
  torch::manual_seed(3);
  const auto spikes = (torch::rand({8, 2, 3}, torch::kFloat64) > 0.4).to(torch::kFloat64);
  naca::nn::STPSynapse stp(naca::nn::STPSynapseOptions().U(0.3).tau_f(5).A(2));
  torch::Tensor fused;
  {
    torch::NoGradGuard no_grad;
    fused = stp->forward(spikes);
    EXPECT_TRUE(torch::equal(fused, naca::ops::stp_forward(spikes, 0.3, 5, 2, 2, 2)));
  }
  const auto loop = stp->forward(spikes.clone().requires_grad_());  // the differentiable loop
  EXPECT_TRUE(loop.requires_grad());
  EXPECT_TRUE(torch::allclose(loop.detach(), fused, 1e-12, 1e-12));
  // Hand-worked first step: u = U s = 0.3, x = 1 - u = 0.7, I = A u x = 0.42 (s = 1).
  const auto one = stp->forward(torch::ones({1, 1, 1}, torch::kFloat64));
  EXPECT_NEAR(one.item<double>(), 2 * 0.3 * 0.7, 1e-12);
  using O = naca::nn::STPSynapseOptions;
  expect_error([] { naca::nn::STPSynapse(O().tau_f(0.5)); }, {"naca::STPSynapse", "'tau_f'", ">= 1"});
  expect_error([] { naca::nn::STPSynapse(O().U(1.2)); }, {"'U'", "[0, 1]"});
  expect_error([] { naca::nn::STPSynapse(O().A(INFINITY)); }, {"'A'", "finite"});
}

TEST(SpikingApi, HomeostaticRelaxHandLoop) {
  torch::manual_seed(4);
  const auto s_h = torch::rand({3, 4}, torch::kFloat64), s_below = torch::rand({3, 5}, torch::kFloat64);
  const auto w_below = torch::randn({4, 5}, torch::kFloat64), b = torch::randn({4}, torch::kFloat64);
  const auto s_above = torch::rand({3, 2}, torch::kFloat64), w_above = torch::randn({2, 4}, torch::kFloat64);
  torch::NoGradGuard no_grad;
  const auto got = naca::nn::homeostatic_relax(s_h, s_below, w_below, s_above, w_above, b, 0.3, 7);
  const auto drive = s_below.matmul(w_below.t()) + b + s_above.matmul(w_above);
  auto s = s_h.clone();
  for (int i = 0; i < 7; ++i) s = (s - 0.3 * (s - drive)).clamp(0, 1);
  EXPECT_TRUE(torch::allclose(got, s, 1e-12, 1e-12));
}

// ---- models --------------------------------------------------------------------------------

TEST(SpikingApi, SpikingMlpLayoutIsPythons) {
  using O = naca::models::SpikingMLPOptions;
  auto m = naca::models::spiking_mlp(6, {5, 4}, 3, O().T(4).seed(1).stp(true).output_bias(false));
  // Python: models.spiking_mlp(6, [5, 4], 3, T=4, seed=1, stp=True, output_bias=False).state_dict().keys()
  EXPECT_EQ(state_keys(*m), (std::vector<std::string>{"2.weight", "2.bias", "2.ni", "3.weight",
                                                      "3.bias", "3.ni", "4.weight", "4.ni"}));
  EXPECT_EQ(m->size(), 6u);
  const auto out = m->ptr<naca::nn::NACASpikingLinearImpl>(4);
  EXPECT_TRUE(out->options.is_output());
  EXPECT_EQ(*out->options.seed(), 3);  // seed + its index among the layers
  torch::NoGradGuard no_grad;
  const auto rates = m->forward(torch::rand({2, 6}));
  EXPECT_EQ(rates.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_GE(rates.min().item<float>(), 0.0f);
  EXPECT_LE(rates.max().item<float>(), 1.0f);
  // init_gain scales the default init: the same global draw, times the gain.
  torch::manual_seed(5);
  const auto a = naca::models::sbp_snn(6, 5, 3);
  torch::manual_seed(5);
  const auto b = naca::models::sbp_snn(6, 5, 3, O().init_gain(2.5));
  EXPECT_TRUE(torch::allclose(b->ptr<naca::nn::NACASpikingLinearImpl>(1)->weight,
                              2.5 * a->ptr<naca::nn::NACASpikingLinearImpl>(1)->weight));
  expect_error([] { naca::models::spiking_mlp(6, {5, 0}, 3); }, {"naca::spiking_mlp", "'hidden'"});
  expect_error([] { naca::models::spiking_mlp(6, {5}, 1); }, {"'num_classes'"});
  expect_error([] { naca::models::sbp_snn(6, 5, 3, O().init_gain(NAN)); }, {"'init_gain'"});
  expect_error([] { naca::models::sbp_snn(6, 0, 3); }, {"naca::sbp_snn", "'hidden'"});
}

// ---- SBP -----------------------------------------------------------------------------------

namespace {

// One SBP step of the SNN (contrastive rule, no relaxation) from direct op calls, on copies of
// the weights: the reference of torch_plugin/learn/sbp.py's algorithm.
struct SbpReference {
  torch::Tensor w_in, b_in, w_out, b_out;
  void step(const torch::Tensor& spikes_in, const torch::Tensor& y, double lr, double beta,
            double fraction, const std::optional<torch::Tensor>& mask) {
    const auto [s_h, v_h] = naca::ops::lif_forward(at::linear(spikes_in, w_in, b_in));
    const auto [s_o, v_o] = naca::ops::lif_forward(at::linear(s_h, w_out, b_out));
    const auto r_x = spikes_in.mean(0), r_h = s_h.mean(0), r_o = s_o.mean(0);
    const auto top = beta * (torch::one_hot(y, w_out.size(0)).to(r_o.scalar_type()) - r_o);
    const auto nudged = at::linear(spikes_in, w_in, b_in) + top.matmul(w_out).unsqueeze(0);
    const auto r_hb = std::get<0>(naca::ops::lif_forward(nudged)).mean(0);
    const double scale = 1.0 / (beta * y.size(0));
    const auto dw_out = top.t().matmul(r_h) * scale, dw_in = (r_hb - r_h).t().matmul(r_x) * scale;
    naca::ops::sbp_update_(w_in, w_out, dw_in, dw_out, mask, fraction, lr * 0.1, lr * 0.05);
    b_out.add_(top.sum(0) * scale, lr * 0.05);
    b_in.add_((r_hb - r_h).sum(0) * scale, lr * 0.1);
  }
};

}  // namespace

TEST(SpikingApi, SbpSnnStepIsTheDirectOps) {
  torch::manual_seed(6);
  using O = naca::models::SpikingMLPOptions;
  auto model = naca::models::sbp_snn(8, 6, 3, O().T(5).seed(0).init_gain(3.0));
  const auto hid = model->ptr<naca::nn::NACASpikingLinearImpl>(1);
  const auto out = model->ptr<naca::nn::NACASpikingLinearImpl>(2);
  SbpReference ref{hid->weight.detach().clone(), hid->bias.detach().clone(),
                   out->weight.detach().clone(), out->bias.detach().clone()};
  const auto w_in0 = ref.w_in.clone(), w_out0 = ref.w_out.clone();
  naca::learn::SBP sbp(model, naca::learn::SBPOptions().percentage(0.5).seed(3));
  EXPECT_TRUE(sbp.spiking());
  EXPECT_EQ(sbp.lr(), 1.0);  // the SNN's default
  ASSERT_TRUE(sbp.mask().has_value());
  naca::nn::BernoulliEncoder enc(naca::nn::BernoulliEncoderOptions(5).seed(0));  // the model's
  for (int i = 0; i < 3; ++i) {
    const auto x = torch::rand({4, 8});
    const auto y = torch::randint(0, 3, {4}, torch::kLong);
    torch::Tensor spikes_in;
    {
      torch::NoGradGuard no_grad;
      spikes_in = enc->forward(x);
    }
    const auto rates = sbp.step(x, y);
    EXPECT_EQ(rates.sizes(), (std::vector<int64_t>{4, 3}));
    torch::NoGradGuard no_grad;
    ref.step(spikes_in, y, 1.0, 0.5, 0.2, sbp.mask());
  }
  EXPECT_EQ(sbp.steps(), 3);
  EXPECT_TRUE(torch::allclose(hid->weight, ref.w_in, 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(out->weight, ref.w_out, 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(hid->bias, ref.b_in, 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(out->bias, ref.b_out, 1e-6, 1e-7));
  EXPECT_FALSE(torch::equal(hid->weight, w_in0));  // the steps did learn
  EXPECT_FALSE(torch::equal(out->weight, w_out0));
}

TEST(SpikingApi, SbpBadOptionsAndModels) {
  auto model = naca::models::sbp_snn(4, 3, 2);
  using S = naca::learn::SBPOptions;
  expect_error([&] { naca::learn::SBP(model, S().lr(-1)); }, {"naca::SBP", "'lr'", ">= 0", "-1"});
  expect_error([&] { naca::learn::SBP(model, S().fraction(1.5)); }, {"'fraction'", "[0, 1]"});
  expect_error([&] { naca::learn::SBP(model, S().percentage(-0.1)); }, {"'percentage'"});
  expect_error([&] { naca::learn::SBP(model, S().beta(0)); }, {"'beta'", "(0, 1]"});
  expect_error([&] { naca::learn::SBP(model, S().alpha({0.1, 0.2, 0.3})); }, {"'alpha'", "pair", "3"});
  expect_error([&] { naca::learn::SBP(model, S().alpha({0.1, -1})); }, {"'alpha[1]'", ">= 0"});
  expect_error([&] { naca::learn::SBP(model, S().relax_steps(-1)); }, {"'relax_steps'"});
  expect_error([&] { naca::learn::SBP(model, S().eps(1.5)); }, {"'eps'", "(0, 1]"});
  expect_error([&] { naca::learn::SBP(model, S().local_rule("hebb")); },
               {"'local_rule'", "'contrastive', 'symmetric', 'differential'", "'hebb'"});
  expect_error([] { naca::learn::SBP(naca::models::spiking_mlp(4, {3, 3}, 2)); },
               {"'model'", "exactly two NACASpikingLinear", "got 3"});
  auto extra = naca::models::sbp_snn(4, 3, 2);
  extra->push_back(torch::nn::Linear(2, 2));
  expect_error([&] { naca::learn::SBP{extra}; }, {"'model'", "trainable", "'4.weight'", "'4.bias'"});
  EXPECT_EQ(naca::learn::SBP(model, S().lr(0.25)).lr(), 0.25);
}

TEST(SpikingApi, SbpBadLabelsChangeNothing) {
  auto model = naca::models::sbp_snn(4, 3, 2);
  naca::learn::SBP sbp(model);
  std::vector<torch::Tensor> before;
  for (const auto& p : model->parameters()) before.push_back(p.detach().clone());
  const auto x = torch::rand({3, 4});
  expect_error([&] { sbp.step(x, torch::tensor({0, 1, 2}, torch::kLong)); },
               {"naca::SBP::step", "'y'", "[0, 2)", "[0, 2]"});
  expect_error([&] { sbp.step(x, torch::tensor({0, 1, 1}, torch::kInt)); }, {"'y'", "int64", "Int"});
  expect_error([&] { sbp.step(x, torch::tensor({0, 1}, torch::kLong)); }, {"'y'", "(3)"});
  const auto params = model->parameters();
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(torch::equal(params[i], before[i]));
  EXPECT_EQ(sbp.steps(), 0);
}

TEST(SpikingApi, SbpSkipNonfiniteKeepsWeights) {
  auto model = naca::models::sbp_snn(4, 3, 2);
  naca::learn::SBP sbp(model, naca::learn::SBPOptions().skip_nonfinite(true));
  auto [rates, sums] = sbp.local_changes(torch::rand({2, 4}), torch::tensor({0, 1}, torch::kLong));
  std::vector<torch::Tensor> before;
  for (const auto& p : model->parameters()) before.push_back(p.detach().clone());
  sums.w_in[0][0] = std::numeric_limits<float>::quiet_NaN();
  sbp.apply_changes(sums, 2);
  EXPECT_EQ(sbp.skipped_steps(), 1);
  const auto params = model->parameters();
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(torch::equal(params[i], before[i]));
  sums.w_in[0][0] = 0.5;  // finite again: applied
  sbp.apply_changes(sums, 2);
  EXPECT_EQ(sbp.skipped_steps(), 1);
  EXPECT_FALSE(torch::equal(model->parameters()[0], before[0]));
}

TEST(SpikingApi, SubsetMaskRoundsAsPython) {
  // Python: torch_plugin.learn.sbp.subset_mask(3, 5, 0.5, 0).int().tolist(); round(2.5) == 2.
  const auto m = naca::learn::subset_mask(3, 5, 0.5, 0);
  ASSERT_TRUE(m.has_value());
  const auto py = torch::tensor({0, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 1, 0}).view({3, 5});
  EXPECT_TRUE(torch::equal(m->to(torch::kLong), py.to(torch::kLong)));
  EXPECT_FALSE(naca::learn::subset_mask(3, 5, 1.0, 0).has_value());
  expect_error([] { naca::learn::subset_mask(3, 5, 2.0, 0); }, {"'percentage'"});
}
