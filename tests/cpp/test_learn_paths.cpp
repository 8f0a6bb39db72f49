// GoogleTest cases for naca::learn::NACA on spiking models (every-step, last-step and
// membrane-chain rules, hidden_only, unchecked labels, skip_nonfinite) and naca::learn::SBP on
// the ANN (naca::models::sbp_ann): against direct naca::ops calls, and bad input or options (a
// c10::Error naming the argument, and no weight changed). Equivalence with the Python learners:
// tests/test_cpp_equivalence.py.
#include <naca/naca.h>
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "test_support.h"

#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace {

using naca::learn::NACA;
using naca::learn::NACAOptions;
using naca::nn::NACASpikingLinear;
using naca::nn::NACASpikingLinearImpl;
using naca::nn::NACASpikingLinearOptions;
using SpikingO = naca::models::SpikingMLPOptions;

using naca_test::expect_error;
using naca_test::snapshot;
using naca_test::unchanged;

// The BernoulliEncoder(T = 4, seed 0) -> hidden (6 -> 5) -> output (5 -> 3) -> SpikeRate network.
torch::nn::Sequential small_snn(const SpikingO& o = SpikingO()) {
  torch::manual_seed(0);
  return naca::models::spiking_mlp(6, {5}, 3, SpikingO(o).T(4).seed(0).init_gain(3.0));
}

// One NACA step of spiking_mlp(6, {5}, 3) from direct op calls on copies of its weights.
struct SnnReference {
  torch::Tensor w_h, b_h, w_o, b_o, ni;
  double lens, lr, lam, theta;
  std::string current;
  bool all_steps, chain;

  void step(const torch::Tensor& spikes_in, const torch::Tensor& y) {
    auto cur_h = at::linear(spikes_in, w_h, b_h.defined() ? std::optional<torch::Tensor>(b_h) : std::nullopt);
    if (current == "sigmoid") cur_h = torch::sigmoid(cur_h);
    const auto [s_h, v_h] = naca::ops::lif_forward(cur_h);
    auto cur_o = at::linear(s_h, w_o, b_o);
    if (current == "sigmoid") cur_o = torch::sigmoid(cur_o);
    const auto [s_o, v_o] = naca::ops::lif_forward(cur_o);
    const auto f = naca::ops::modulation(naca::ops::neuromodulator(y, ni), lam, theta);
    const auto e = s_o.mean(0) - torch::one_hot(y, 3).to(torch::kFloat);
    const std::optional<torch::Tensor> bh = b_h.defined() ? std::optional<torch::Tensor>(b_h) : std::nullopt;
    if (chain) {
      naca::ops::naca_snn_chain_update_(w_h, bh, spikes_in, v_h, s_h, f, 0.2, 0.5, lens, "hard", current, lr);
      naca::ops::naca_snn_chain_update_(w_o, b_o, s_h, v_o, s_o, e, 0.2, 0.5, lens, "hard", current, lr);
    } else {
      naca::ops::naca_snn_update_(w_h, bh, spikes_in, v_h, s_h, f, 0.5, lens, lr, all_steps);
      naca::ops::naca_snn_update_(w_o, b_o, s_h, v_o, s_o, e, 0.5, lens, lr, /*all_steps=*/true);
    }
  }
};

}  // namespace

// ---- NACA on spiking models ----------------------------------------------------------------

TEST(SpikingNaca, StepIsTheDirectOpCallsForEachRule) {
  struct Variant {
    const char* name;
    bool all_steps, chain, streaming;
    std::string current;
    double lens;
    bool bias;
  };
  for (const Variant& v : {Variant{"all steps", true, false, true, "linear", 0.5, true},
                           Variant{"last step", false, false, true, "linear", 0.5, true},
                           Variant{"last step, kept forward", false, false, false, "linear", 0.5, true},
                           Variant{"membrane chain", true, true, true, "sigmoid", 0.2, false}}) {
    auto model = small_snn(SpikingO().current(v.current).lens(v.lens).bias(v.bias).output_bias(true));
    const auto hid = model->ptr<NACASpikingLinearImpl>(1);
    const auto out = model->ptr<NACASpikingLinearImpl>(2);
    SnnReference ref{hid->weight.detach().clone(),
                     v.bias ? hid->bias.detach().clone() : torch::Tensor(),
                     out->weight.detach().clone(),
                     out->bias.detach().clone(),
                     hid->ni.clone(),
                     v.lens, 0.05, 0.5, 1.2, v.current, v.all_steps, v.chain};
    const auto w_h0 = ref.w_h.clone(), w_o0 = ref.w_o.clone();
    NACA learner(model, NACAOptions()
                            .lr(0.05)
                            .all_steps(v.all_steps)
                            .membrane_chain(v.chain)
                            .streaming(v.streaming));
    EXPECT_TRUE(learner.spiking());
    EXPECT_EQ(learner.num_classes(), 3);
    naca::nn::BernoulliEncoder enc(naca::nn::BernoulliEncoderOptions(4).seed(0));  // the model's
    torch::manual_seed(1);
    for (int i = 0; i < 3; ++i) {
      const auto x = torch::rand({5, 6});
      const auto y = torch::randint(0, 3, {5}, torch::kLong);
      torch::Tensor spikes_in;
      {
        torch::NoGradGuard no_grad;
        spikes_in = enc->forward(x);
      }
      const auto rates = learner.step(x, y);
      EXPECT_EQ(rates.sizes(), (std::vector<int64_t>{5, 3})) << v.name;
      torch::NoGradGuard no_grad;
      ref.step(spikes_in, y);
    }
    EXPECT_EQ(learner.steps(), 3);
    EXPECT_TRUE(torch::equal(hid->weight, ref.w_h)) << v.name;
    EXPECT_TRUE(torch::equal(out->weight, ref.w_o)) << v.name;
    EXPECT_TRUE(torch::equal(out->bias, ref.b_o)) << v.name;
    if (v.bias) EXPECT_TRUE(torch::equal(hid->bias, ref.b_h)) << v.name;
    EXPECT_FALSE(torch::equal(hid->weight, w_h0)) << v.name;  // the steps did learn
    EXPECT_FALSE(torch::equal(out->weight, w_o0)) << v.name;
  }
}

// A step that throws changes nothing: bad labels, a forward error, and an update that fails in
// the validating step's dry run (a replaced NI of the wrong width in the second hidden layer),
// before the first hidden layer, which would stream, learns anything.
TEST(SpikingNaca, StepThatThrowsChangesNothing) {
  torch::manual_seed(0);
  auto model = naca::models::spiking_mlp(6, {5, 4}, 3, SpikingO().T(4).seed(0).init_gain(3.0));
  auto opt = std::make_shared<torch::optim::Adam>(model->parameters());
  NACA learner(model, NACAOptions().optimizer(opt));
  const auto x = torch::rand({4, 6});
  const auto y = torch::tensor({0, 1, 2, 1});
  model->ptr<NACASpikingLinearImpl>(2)->ni = torch::rand({6, 5});  // (2N, H + 1)
  const auto before = snapshot(*model);
  expect_error([&] { learner.step(x, torch::tensor({0, 1, 3, 2})); },
               {"argument 'y'", "labels in [0, 3)", "got values in [0, 3]"});
  expect_error([&] { learner.step(x, torch::zeros({4})); }, {"argument 'y'", "int64"});
  expect_error([&] { learner.step(torch::rand({4, 7}), y); }, {});
  expect_error([&] { learner.step(x, y); }, {"in the update of layer '2'", "nothing was written"});
  EXPECT_TRUE(unchanged(*model, before));
  EXPECT_EQ(learner.steps(), 0);
  for (const auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined());
  // The layers keep nothing of the failed steps, and a good NI makes the step learn.
  for (int64_t i : {2, 3}) {
    auto l = model->ptr<NACASpikingLinearImpl>(i);
    EXPECT_FALSE(l->record);
    EXPECT_FALSE(static_cast<bool>(l->sink));
  }
  model->ptr<NACASpikingLinearImpl>(2)->ni = torch::rand({6, 4});
  learner.step(x, y);
  EXPECT_EQ(learner.steps(), 1);
  EXPECT_FALSE(unchanged(*model, before));
}

TEST(SpikingNaca, BadOptionsAndModelsNameTheArgument) {
  expect_error([] { NACA(small_snn(), NACAOptions().lam(-1)); }, {"naca::learn::NACA", "argument 'lam'", "> 0"});
  expect_error([] { NACA(naca::models::mlp(4, {3}, 2), NACAOptions().membrane_chain(true)); },
               {"argument 'membrane_chain'", "NACASpikingLinear", "got true"});
  expect_error([] { NACA(small_snn(), NACAOptions().hidden_only(true)); },
               {"argument 'hidden_only'", "found 1 hidden and 1 output"});
  expect_error([] { NACA(naca::models::mlp(4, {3}, 2), NACAOptions().hidden_only(true)); },
               {"argument 'hidden_only'", "found 1 hidden and 1 output"});
  const naca::nn::BernoulliEncoderOptions enc(3);
  torch::nn::Sequential no_output(naca::nn::BernoulliEncoder(enc),
                                  NACASpikingLinear(NACASpikingLinearOptions(4, 3, 2)));
  expect_error([&] { NACA{no_output}; }, {"argument 'model'", "is_output=true", "found 0"});
  torch::nn::Sequential mixed(naca::nn::BernoulliEncoder(enc), NACASpikingLinear(NACASpikingLinearOptions(4, 3, 2)),
                              naca::nn::SpikeRate(), naca::nn::NACAOutput(naca::nn::NACAOutputOptions(3, 2)));
  expect_error([&] { NACA{mixed}; }, {"argument 'model'", "mixes spiking", "not supported"});
  torch::nn::Sequential classes(naca::nn::BernoulliEncoder(enc), NACASpikingLinear(NACASpikingLinearOptions(4, 3, 5)),
                                NACASpikingLinear(NACASpikingLinearOptions(3, 2, 2).is_output(true)));
  expect_error([&] { NACA{classes}; }, {"hidden layer '1' has num_classes=5", "output layer has 2"});
  auto extra = small_snn();
  extra->push_back(torch::nn::Linear(3, 3));
  expect_error([&] { NACA{extra}; }, {"cannot train", "'4.weight'"});
}

TEST(SpikingNaca, HiddenOnlyTrainsTheHiddenLayersOnTheLabels) {
  torch::manual_seed(0);
  torch::nn::Sequential stage(naca::nn::BernoulliEncoder(naca::nn::BernoulliEncoderOptions(4).seed(0)),
                              NACASpikingLinear(NACASpikingLinearOptions(6, 5, 3).seed(1)));
  const auto hid = stage->ptr<NACASpikingLinearImpl>(1);
  {
    torch::NoGradGuard no_grad;
    hid->weight.mul_(3.0);
  }
  auto w = hid->weight.detach().clone(), b = hid->bias.detach().clone();
  const auto w0 = w.clone();
  NACA learner(stage, NACAOptions().lr(0.1).hidden_only(true).all_steps(false));
  EXPECT_EQ(learner.num_classes(), 3);
  naca::nn::BernoulliEncoder enc(naca::nn::BernoulliEncoderOptions(4).seed(0));
  const auto x = torch::rand({5, 6});
  const auto y = torch::tensor({0, 1, 2, 2, 0});
  const auto spikes = learner.step(x, y);
  EXPECT_EQ(spikes.sizes(), (std::vector<int64_t>{4, 5, 5}));  // the stage's output spikes
  torch::NoGradGuard no_grad;
  const auto s_in = enc->forward(x);
  const auto [s_h, v_h] = naca::ops::lif_forward(at::linear(s_in, w, b));
  EXPECT_TRUE(torch::equal(spikes, s_h));
  const auto f = naca::ops::modulation(naca::ops::neuromodulator(y, hid->ni));
  naca::ops::naca_snn_update_(w, b, s_in, v_h, s_h, f, 0.5, 0.5, 0.1, false);
  EXPECT_TRUE(torch::equal(hid->weight, w));
  EXPECT_TRUE(torch::equal(hid->bias, b));
  EXPECT_FALSE(torch::equal(hid->weight, w0));
}

TEST(SpikingNaca, UncheckedOutOfRangeLabelsLearnNothing) {
  auto model = small_snn();
  NACA learner(model, NACAOptions().lr(0.1).check_labels(false));
  const auto before = snapshot(*model);
  learner.step(torch::rand({2, 6}), torch::tensor({3, -1}));
  EXPECT_TRUE(unchanged(*model, before));
  EXPECT_EQ(learner.steps(), 1);
  learner.step(torch::rand({2, 6}), torch::tensor({0, 2}));
  EXPECT_FALSE(unchanged(*model, before));
}

TEST(SpikingNaca, SkipNonfiniteKeepsEveryLayer) {
  auto model = small_snn();
  NACA learner(model, NACAOptions().lr(0.1).skip_nonfinite(true));
  auto hid = model->ptr<NACASpikingLinearImpl>(1);
  const auto ni = hid->ni.clone();
  hid->ni.fill_(std::numeric_limits<float>::quiet_NaN());  // a NaN hidden update; the output's is finite
  const auto before = snapshot(*model);
  learner.step(torch::rand({4, 6}), torch::tensor({0, 1, 2, 0}));
  EXPECT_EQ(learner.skipped_steps(), 1);
  EXPECT_EQ(learner.steps(), 1);
  EXPECT_TRUE(torch::equal(model->ptr<NACASpikingLinearImpl>(2)->weight, before[2]));
  hid->ni.copy_(ni);
  learner.step(torch::rand({4, 6}), torch::tensor({0, 1, 2, 0}));
  EXPECT_EQ(learner.skipped_steps(), 1);
  EXPECT_FALSE(torch::equal(hid->weight, before[0]));
}

// ---- SBP on the ANN ------------------------------------------------------------------------

TEST(SbpAnn, BuilderIsMlpWithOneSigmoidLayer) {
  torch::manual_seed(3);
  auto a = naca::models::sbp_ann(8, 6, 3, naca::models::SBPANNOptions().seed(2).output_bias(false));
  torch::manual_seed(3);
  auto b = naca::models::mlp(8, {6}, 3, naca::models::MLPOptions().activation("sigmoid").seed(2).output_bias(false));
  std::vector<std::string> names;
  for (const auto& item : a->named_parameters()) names.push_back(item.key());
  EXPECT_EQ(names, (std::vector<std::string>{"1.weight", "1.bias", "2.weight"}));
  const auto sa = snapshot(*a), sb = snapshot(*b);
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(torch::equal(sa[i], sb[i])) << i;
  EXPECT_EQ(a[1]->as<naca::nn::NACALinear>()->options.activation(), "sigmoid");
  expect_error([] { naca::models::sbp_ann(8, 0, 3); }, {"naca::models::sbp_ann", "argument 'hidden'", ">= 1"});
  expect_error([] { naca::models::sbp_ann(0, 4, 3); }, {"argument 'in_features'"});
  expect_error([] { naca::models::sbp_ann(8, 4, 3, naca::models::SBPANNOptions().activation("gelu")); },
               {"argument 'activation'", "'gelu'"});
}

TEST(SbpAnn, StepIsTheDirectOps) {
  torch::manual_seed(6);
  auto model = naca::models::sbp_ann(8, 6, 3, naca::models::SBPANNOptions().seed(0));
  const auto hid = model->ptr<naca::nn::NACALinearImpl>(1);
  const auto out = model->ptr<naca::nn::NACAOutputImpl>(2);
  auto w_in = hid->weight.detach().clone(), b_in = hid->bias.detach().clone();
  auto w_out = out->weight.detach().clone(), b_out = out->bias.detach().clone();
  const auto w_in0 = w_in.clone();
  naca::learn::SBP sbp(model, naca::learn::SBPOptions().percentage(0.5).seed(3));
  EXPECT_FALSE(sbp.spiking());
  EXPECT_EQ(sbp.lr(), 10.0);  // the ANN's default
  const double lr = 10.0, beta = 0.5;
  for (int i = 0; i < 3; ++i) {
    const auto x = torch::rand({4, 8});
    const auto y = torch::randint(0, 3, {4}, torch::kLong);
    const auto logits = sbp.step(x, y);
    torch::NoGradGuard no_grad;
    const auto z_h = at::linear(x, w_in, b_in);
    const auto r_h = torch::sigmoid(z_h);
    const auto z_o = at::linear(r_h, w_out, b_out);
    EXPECT_TRUE(torch::equal(logits, z_o));
    const auto r_o = torch::sigmoid(z_o);
    const auto top = beta * (torch::one_hot(y, 3).to(torch::kFloat) - r_o);
    const auto r_hb = torch::sigmoid(z_h + top.matmul(w_out));
    const double scale = 1.0 / (beta * 4);
    // (the contrastive change of W_out: (r_o^beta - r_o)^T r_h, with r_o^beta = r_o + top)
    const auto dw_out = ((r_o + top) - r_o).t().matmul(r_h) * scale;
    const auto dw_in = (r_hb - r_h).t().matmul(x) * scale;
    naca::ops::sbp_update_(w_in, w_out, dw_in, dw_out, sbp.mask(), 0.2, lr * 0.1, lr * 0.05);
    b_out.add_(top.sum(0) * scale, lr * 0.05);
    b_in.add_((r_hb - r_h).sum(0) * scale, lr * 0.1);
  }
  EXPECT_EQ(sbp.steps(), 3);
  EXPECT_TRUE(torch::equal(hid->weight, w_in));
  EXPECT_TRUE(torch::equal(out->weight, w_out));
  EXPECT_TRUE(torch::equal(hid->bias, b_in));
  EXPECT_TRUE(torch::equal(out->bias, b_out));
  EXPECT_FALSE(torch::equal(hid->weight, w_in0));
  // The layers keep nothing after the step.
  EXPECT_TRUE(hid->saved.empty());
  EXPECT_EQ(hid->record_mode, naca::nn::RecordMode::kOff);
}

TEST(SbpAnn, StepThatThrowsChangesNothingAndBadModelsNameTheArgument) {
  auto model = naca::models::sbp_ann(4, 3, 2);
  naca::learn::SBP sbp(model, naca::learn::SBPOptions().relax_steps(2));
  const auto before = snapshot(*model);
  const auto x = torch::rand({3, 4});
  expect_error([&] { sbp.step(x, torch::tensor({0, 1, 2}, torch::kLong)); },
               {"naca::SBP::step", "'y'", "[0, 2)", "[0, 2]"});
  expect_error([&] { sbp.step(x, torch::tensor({0, 1}, torch::kLong)); }, {"'y'", "(3)"});
  expect_error([&] { sbp.step(torch::rand({3, 5}), torch::tensor({0, 1, 1}, torch::kLong)); }, {});
  EXPECT_TRUE(unchanged(*model, before));
  EXPECT_EQ(sbp.steps(), 0);
  EXPECT_TRUE(model->ptr<naca::nn::NACALinearImpl>(1)->saved.empty());
  sbp.step(x, torch::tensor({0, 1, 1}, torch::kLong));
  EXPECT_FALSE(unchanged(*model, before));

  expect_error([] { naca::learn::SBP(naca::models::mlp(4, {3, 3}, 2)); },
               {"naca::SBP", "argument 'model'", "exactly one NACALinear", "got 2 NACALinear and 1 NACAOutput"});
  expect_error([] { naca::learn::SBP(naca::models::mlp(4, {}, 2)); }, {"argument 'model'", "got 0 NACALinear"});
  auto extra = naca::models::sbp_ann(4, 3, 2);
  extra->push_back(torch::nn::Linear(2, 2));
  expect_error([&] { naca::learn::SBP{extra}; }, {"'model'", "trainable", "'3.weight'"});
  expect_error([&] { naca::learn::SBP(model, naca::learn::SBPOptions().beta(2)); }, {"'beta'", "(0, 1]"});
}
