// The C++ API's ANN layers, learner and models (naca::nn, naca::learn::NACA, naca::models):
// against direct naca::ops calls and plain-torch hand-worked cases, and bad input (a c10::Error
// naming the argument, and nothing changed). Equivalence with the Python package:
// tests/test_cpp_equivalence.py.
#include <naca/naca.h>
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "test_support.h"

#include <functional>
#include <string>
#include <vector>

namespace {

using naca::learn::NACA;
using naca::learn::NACAOptions;
using naca::nn::NACAConv2d;
using naca::nn::NACAConv2dOptions;
using naca::nn::NACALinear;
using naca::nn::NACALinearOptions;
using naca::nn::NACAOutput;
using naca::nn::NACAOutputOptions;

using naca_test::expect_error;
using naca_test::snapshot;
using naca_test::unchanged;

torch::nn::Sequential small_mlp(int64_t seed = 0) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(NACALinear(NACALinearOptions(6, 5, 3).seed(1)),
                               NACAOutput(NACAOutputOptions(5, 3)));
}

TEST(NNApi, LinearForwardNamesAndNI) {
  torch::manual_seed(0);
  NACALinear layer(NACALinearOptions(4, 7, 3).activation("sigmoid").seed(5));
  const auto x = torch::randn({2, 4});
  EXPECT_TRUE(torch::allclose(layer(x), torch::sigmoid(x.mm(layer->weight.t()) + layer->bias)));
  const auto params = layer->named_parameters();
  EXPECT_TRUE(params.contains("weight") && params.contains("bias") && params.size() == 2);
  ASSERT_TRUE(layer->named_buffers().contains("ni"));
  EXPECT_EQ(layer->ni.sizes(), torch::IntArrayRef({6, 7}));
  EXPECT_GE(layer->ni.min().item<float>(), 0.0f);
  EXPECT_LE(layer->ni.max().item<float>(), 1.0f);
  // NI from a seed is the seed's, whatever the default generator did in between.
  torch::manual_seed(123);
  NACALinear again(NACALinearOptions(4, 7, 3).activation("sigmoid").seed(5));
  EXPECT_TRUE(torch::equal(layer->ni, again->ni));
  EXPECT_FALSE(torch::equal(layer->weight, again->weight));
  NACALinear other(NACALinearOptions(4, 7, 3).seed(6));
  EXPECT_FALSE(torch::equal(layer->ni, other->ni));
  NACALinear no_bias(NACALinearOptions(4, 7, 3).bias(false).ni_init("zeros"));
  EXPECT_EQ(no_bias->named_parameters().size(), 1u);
  EXPECT_EQ(no_bias->ni.abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(torch::allclose(no_bias(x), torch::tanh(x.mm(no_bias->weight.t()))));
}

TEST(NNApi, MakeNiDistributions) {
  // beta = sin^2(pi U / 2) of the uniform draw from the same seed; normal clamps to [0, 1].
  const auto u = naca::nn::make_ni(3, {50}, "uniform", 9, torch::kDouble);
  const auto b = naca::nn::make_ni(3, {50}, "beta", 9, torch::kDouble);
  EXPECT_TRUE(torch::allclose(b, torch::sin(u * (M_PI / 2)).pow(2)));
  const auto n = naca::nn::make_ni(3, {500}, "normal", 9);
  EXPECT_EQ(n.scalar_type(), torch::kFloat);
  EXPECT_GT((n == 0).sum().item<int64_t>(), 0);
  EXPECT_GT((n == 1).sum().item<int64_t>(), 0);
  expect_error([] { naca::nn::make_ni(3, {5}, "gauss"); }, {"argument 'init'", "gauss"});
}

TEST(NNApi, ConvAndOutputForward) {
  torch::manual_seed(0);
  NACAConv2d conv(NACAConv2dOptions(2, 4, 3, 5, {9, 7}).stride(2).padding(1));
  EXPECT_EQ(conv->ni.sizes(), torch::IntArrayRef({10, 4, 5, 4}));
  const auto x = torch::randn({3, 2, 9, 7});
  const auto ref = torch::tanh(torch::conv2d(x, conv->weight, conv->bias, 2, 1));
  EXPECT_TRUE(torch::allclose(conv(x), ref));
  NACAOutput out(NACAOutputOptions(4, 3).bias(false));
  const auto h = torch::randn({2, 4});
  EXPECT_TRUE(torch::equal(out(h), h.mm(out->weight.t())));
}

TEST(NNApi, BadLayerOptionsNameTheArgument) {
  expect_error([] { NACALinear(NACALinearOptions(0, 5, 3)); }, {"NACALinear", "argument 'in_features'", "got 0"});
  expect_error([] { NACALinear(NACALinearOptions(4, 0, 3)); }, {"argument 'out_features'"});
  expect_error([] { NACALinear(NACALinearOptions(4, 5, 1)); }, {"argument 'num_classes'", ">= 2", "got 1"});
  expect_error([] { NACALinear(NACALinearOptions(4, 5, 3).activation("gelu")); }, {"argument 'activation'", "gelu"});
  expect_error([] { NACALinear(NACALinearOptions(4, 5, 3).ni_init("flat")); }, {"argument 'ni_init'", "flat"});
  expect_error([] { NACAOutput(NACAOutputOptions(4, 1)); }, {"NACAOutput", "argument 'num_classes'"});
  expect_error([] { NACAConv2d(NACAConv2dOptions(3, 4, 3, 5, 8).groups(2)); },
               {"NACAConv2d", "argument 'groups'", "got 2"});
  expect_error([] { NACAConv2d(NACAConv2dOptions(3, 4, 3, 5, 8).stride(0)); }, {"argument 'stride'"});
  expect_error([] { NACAConv2d(NACAConv2dOptions(3, 4, 3, 5, 8).padding(-1)); }, {"argument 'padding'"});
  expect_error([] { NACAConv2d(NACAConv2dOptions(3, 4, 5, 5, 3)); }, {"argument 'input_size'", "at least 5 x 5"});
  expect_error([] { NACAConv2d(NACAConv2dOptions(3, 4, {0, 3}, 5, 8)); }, {"argument 'kernel_size'"});
}

// One step of the learner is the forward, then each layer's op on its own input and output.
TEST(NNApi, LearnerStepIsTheDirectOpCalls) {
  for (const bool streaming : {true, false}) {
    auto model = small_mlp();
    auto* l1 = model[0]->as<NACALinear>();
    auto* l2 = model[1]->as<NACAOutput>();
    auto w1 = l1->weight.detach().clone(), b1 = l1->bias.detach().clone();
    auto w2 = l2->weight.detach().clone(), b2 = l2->bias.detach().clone();
    NACA learner(model, NACAOptions().lr(0.05).lam(0.4).theta(1.1).streaming(streaming));
    torch::manual_seed(1);
    for (int step = 0; step < 3; ++step) {
      const auto x = torch::rand({8, 6});
      const auto y = torch::randint(0, 3, {8}, torch::kLong);
      const auto h = torch::tanh(torch::addmm(b1, x, w1.t()));
      const auto z = torch::addmm(b2, h, w2.t());
      naca::ops::naca_hidden_update_(w1, b1, x, h, y, l1->ni, "tanh", 0.05, 0.4, 1.1, /*from_output=*/true);
      naca::ops::naca_output_update_(w2, b2, h, z, y, 0.05, true);
      const auto logits = learner.step(x, y);
      EXPECT_TRUE(torch::equal(logits, z)) << "step " << step;
      EXPECT_TRUE(torch::equal(l1->weight, w1) && torch::equal(l1->bias, b1)) << "step " << step;
      EXPECT_TRUE(torch::equal(l2->weight, w2) && torch::equal(l2->bias, b2)) << "step " << step;
    }
    EXPECT_EQ(learner.steps(), 3);
  }
}

// The output layer by hand: delta = (sigmoid(z) - onehot(y)) sigmoid'(z), W -= lr delta^T x.
TEST(NNApi, OutputLayerHandWorked) {
  torch::manual_seed(0);
  torch::nn::Sequential model(NACAOutput(NACAOutputOptions(3, 2)));
  auto* out = model[0]->as<NACAOutput>();
  torch::NoGradGuard no_grad;
  out->weight.copy_(torch::tensor({{0.5, -1.0, 0.25}, {0.0, 2.0, -0.5}}));
  out->bias.copy_(torch::tensor({0.1, -0.2}));
  const auto x = torch::tensor({{1.0f, 2.0f, -1.0f}});
  const auto y = torch::tensor({1}, torch::kLong);
  const auto z = torch::tensor({{0.5f - 2.0f - 0.25f + 0.1f, 4.0f + 0.5f - 0.2f}});
  const auto s = torch::sigmoid(z);
  const auto delta = (s - torch::tensor({{0.0f, 1.0f}})) * s * (1 - s);
  const auto w_ref = out->weight.clone() - 0.5 * delta.t().mm(x);
  const auto b_ref = out->bias.clone() - 0.5 * delta.sum(0);
  NACA learner(model, NACAOptions().lr(0.5));
  EXPECT_TRUE(torch::allclose(learner.step(x, y), z));
  EXPECT_TRUE(torch::allclose(out->weight, w_ref, 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(out->bias, b_ref, 1e-6, 1e-7));
}

TEST(NNApi, OptimizerGetsTheUpdateAsPseudoGradient) {
  auto a = small_mlp(), b = small_mlp();
  auto opt = std::make_shared<torch::optim::SGD>(b->parameters(), torch::optim::SGDOptions(0.05));
  NACA plain(a, NACAOptions().lr(0.05));
  NACA with_opt(b, NACAOptions().optimizer(opt));
  torch::manual_seed(2);
  for (int i = 0; i < 3; ++i) {
    const auto x = torch::rand({8, 6});
    const auto y = torch::randint(0, 3, {8}, torch::kLong);
    plain.step(x, y);
    with_opt.step(x, y);
  }
  const auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::allclose(pa[i], pb[i], 1e-5, 1e-6));
  EXPECT_TRUE(pb[0].grad().defined() && pb[0].grad().abs().sum().item<float>() > 0);
}

TEST(NNApi, BadStepInputChangesNothing) {
  auto model = small_mlp();
  auto opt = std::make_shared<torch::optim::Adam>(model->parameters());
  NACA learner(model, NACAOptions().optimizer(opt));
  const auto before = snapshot(*model);
  const auto x = torch::rand({4, 6});
  expect_error([&] { learner.step(x, torch::zeros({4})); }, {"argument 'y'", "int64"});
  expect_error([&] { learner.step(x, torch::zeros({4, 1}, torch::kLong)); }, {"argument 'y'"});
  expect_error([&] { learner.step(torch::rand({5, 6}), torch::zeros({4}, torch::kLong)); }, {"argument 'x'", "4"});
  expect_error([&] { learner.step(torch::rand({6}), torch::zeros({1}, torch::kLong)); },
               {"argument 'x'", "unsqueeze(0)"});
  expect_error([&] { learner.step(x, torch::tensor({0, 1, 3, 2})); },
               {"argument 'y'", "labels in [0, 3)", "got values in [0, 3]"});
  expect_error([&] { learner.step(x, torch::tensor({0, -1, 2, 2})); }, {"got values in [-1, 2]"});
  // A forward error (wrong feature count) in the validating step.
  expect_error([&] { learner.step(torch::rand({4, 7}), torch::zeros({4}, torch::kLong)); }, {});
  EXPECT_TRUE(unchanged(*model, before));
  EXPECT_EQ(learner.steps(), 0);
  for (const auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined());
  learner.step(x, torch::zeros({4}, torch::kLong));
  EXPECT_FALSE(unchanged(*model, before));
}

// A conv layer whose input_size does not match the data: its update fails in the dry run of
// the first step, before the layers that would have streamed learn anything.
TEST(NNApi, FailingUpdateInTheValidatingStepWritesNothing) {
  torch::manual_seed(0);
  torch::nn::Sequential model(NACALinear(NACALinearOptions(4, 4, 3)), torch::nn::Unflatten(1, std::vector<int64_t>{1, 2, 2}),
                              NACAConv2d(NACAConv2dOptions(1, 2, 1, 3, {3, 3})), torch::nn::Flatten(),
                              NACAOutput(NACAOutputOptions(8, 3)));
  NACA learner(model);
  const auto before = snapshot(*model);
  expect_error([&] { learner.step(torch::rand({2, 4}), torch::tensor({0, 1})); },
               {"naca_conv_update_", "in the update of layer '2'", "nothing was written"});
  EXPECT_TRUE(unchanged(*model, before));
}

TEST(NNApi, SkipNonfinite) {
  auto model = small_mlp();
  NACA learner(model, NACAOptions().lr(0.1).skip_nonfinite(true));
  const auto before = snapshot(*model);
  auto x = torch::rand({4, 6});
  x[0][0] = std::numeric_limits<float>::quiet_NaN();
  learner.step(x, torch::tensor({0, 1, 2, 0}));
  EXPECT_EQ(learner.skipped_steps(), 1);
  EXPECT_EQ(learner.steps(), 1);
  EXPECT_TRUE(unchanged(*model, before));
  learner.step(torch::rand({4, 6}), torch::tensor({0, 1, 2, 0}));
  EXPECT_EQ(learner.skipped_steps(), 1);
  EXPECT_FALSE(unchanged(*model, before));
}

TEST(NNApi, UncheckedOutOfRangeLabelLearnsNothing) {
  auto model = small_mlp();
  NACA learner(model, NACAOptions().lr(0.1).check_labels(false));
  const auto before = snapshot(*model);
  learner.step(torch::rand({2, 6}), torch::tensor({3, -1}));
  EXPECT_TRUE(unchanged(*model, before));
}

struct OtherRecordingImpl : torch::nn::Cloneable<OtherRecordingImpl>, naca::nn::Recording {
  OtherRecordingImpl() { reset(); }
  void reset() override {}
  torch::Tensor forward(const torch::Tensor& x) { return x; }
};
TORCH_MODULE(OtherRecording);

TEST(NNApi, BadLearnerArguments) {
  expect_error([] { NACA(small_mlp(), NACAOptions().lr(-1)); }, {"naca::learn::NACA", "argument 'lr'", ">= 0"});
  expect_error([] { NACA(small_mlp(), NACAOptions().lam(0)); }, {"argument 'lam'", "> 0"});
  expect_error([] { NACA(small_mlp(), NACAOptions().theta(INFINITY)); }, {"argument 'theta'"});
  expect_error([] { NACA(torch::nn::Sequential(NACALinear(NACALinearOptions(4, 4, 3)))); },
               {"argument 'model'", "exactly one NACAOutput", "found 0"});
  expect_error([] {
    NACA(torch::nn::Sequential(NACALinear(NACALinearOptions(4, 4, 5)), NACAOutput(NACAOutputOptions(4, 3))));
  }, {"hidden layer '0' has num_classes=5", "output layer has 3"});
  expect_error([] {
    NACA(torch::nn::Sequential(torch::nn::Linear(4, 4), NACAOutput(NACAOutputOptions(4, 3))));
  }, {"cannot train", "'0.weight'", "'0.bias'"});
  expect_error([] { NACA(torch::nn::Sequential(OtherRecording(), NACAOutput(NACAOutputOptions(4, 3)))); },
               {"module '0'", "a layer this learner does not train"});
  auto model = small_mlp();
  auto opt = std::make_shared<torch::optim::SGD>(std::vector<torch::Tensor>{model[0]->as<NACALinear>()->weight},
                                                 torch::optim::SGDOptions(0.1));
  expect_error([&] { NACA(model, NACAOptions().optimizer(opt)); }, {"argument 'optimizer'", "'0.bias'", "'1.weight'"});
  // A frozen plain layer is fine.
  torch::nn::Linear frozen(6, 6);
  for (auto& p : frozen->parameters()) p.requires_grad_(false);
  NACA ok(torch::nn::Sequential(frozen, NACALinear(NACALinearOptions(6, 4, 3)), NACAOutput(NACAOutputOptions(4, 3))));
  EXPECT_EQ(ok.num_classes(), 3);
}

TEST(NNApi, Models) {
  auto m = naca::models::mlp(12, {8, 6}, 4, naca::models::MLPOptions().seed(3).output_bias(false));
  std::vector<std::string> names;
  for (const auto& item : m->named_parameters()) names.push_back(item.key());
  EXPECT_EQ(names, (std::vector<std::string>{"1.weight", "1.bias", "2.weight", "2.bias", "3.weight"}));
  EXPECT_TRUE(torch::equal(m[1]->as<NACALinear>()->ni, naca::nn::make_ni(4, {8}, "uniform", 3)));
  EXPECT_TRUE(torch::equal(m[2]->as<NACALinear>()->ni, naca::nn::make_ni(4, {6}, "uniform", 4)));
  EXPECT_EQ(m->forward(torch::rand({5, 3, 4})).sizes(), torch::IntArrayRef({5, 4}));
  auto c = naca::models::conv_net({1, 8, 8}, 3, naca::models::ConvNetOptions().channels({2, 3}).hidden(10));
  EXPECT_EQ(c->size(), 7u);
  EXPECT_EQ(c[2]->as<NACAConv2d>()->ni.sizes(), torch::IntArrayRef({6, 3, 4, 4}));
  NACA learner(c, NACAOptions().lr(0.01));
  EXPECT_EQ(learner.step(torch::rand({2, 1, 8, 8}), torch::tensor({0, 2})).sizes(), torch::IntArrayRef({2, 3}));
  expect_error([] { naca::models::mlp(0, {4}, 3); }, {"naca::models::mlp", "argument 'in_features'"});
  expect_error([] { naca::models::mlp(4, {4, 0}, 3); }, {"argument 'hidden'"});
  expect_error([] { naca::models::conv_net({1, 8, 8}, 3, naca::models::ConvNetOptions().kernel_size(4)); },
               {"argument 'kernel_size'", "odd"});
  expect_error([] { naca::models::conv_net({1, 3, 8}, 3); }, {"argument 'in_shape'", ">= 4"});
  expect_error([] { naca::models::conv_net({1, 8}, 3); }, {"argument 'in_shape'", "3 values"});
}

}  // namespace
