// GoogleTest cases for the NACA ANN layer of the library, against hand-worked values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "expectation.h"
#include "naca_math.h"

namespace {

c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

TEST(Expectation, SlotsForTenClasses) {
  const std::vector<int64_t> expected = {18, 15, 13, 11, 9, 8, 7, 5, 3, 0};
  EXPECT_EQ(naca::expectation_slots(10, "test"), expected);
}

TEST(Expectation, MatrixOpHasHalfAtTwoSlotsPerRow) {
  auto e = op("naca::expectation_matrix")
               .typed<at::Tensor(int64_t, std::optional<at::ScalarType>, std::optional<at::Device>)>()
               .call(10, std::nullopt, std::nullopt);
  ASSERT_EQ(e.sizes(), (std::vector<int64_t>{10, 20}));
  const std::vector<int64_t> k = {18, 15, 13, 11, 9, 8, 7, 5, 3, 0};
  for (int64_t c = 0; c < 10; ++c) {
    EXPECT_FLOAT_EQ(e[c].sum().item<float>(), 1.0f);
    EXPECT_FLOAT_EQ(e[c][k[c]].item<float>(), 0.5f);
    EXPECT_FLOAT_EQ(e[c][k[c] + 1].item<float>(), 0.5f);
  }
}

TEST(Expectation, RejectsTooFewOrCollidingClasses) {
  EXPECT_THROW(naca::expectation_slots(1, "test"), c10::Error);
  EXPECT_THROW(naca::expectation_slots(300, "test"), c10::Error);
}

TEST(Modulation, CurveAtLandmarks) {
  // f(0)=1, max 1.2 at 0.125, f(0.25)=1, f(0.5)=0, f(0.75)=-1, min -1.2 at 0.875, f(1)=-1.
  const double x[] = {0.0, 0.125, 0.25, 0.5, 0.75, 0.875, 1.0};
  const double f[] = {1.0, 1.2, 1.0, 0.0, -1.0, -1.2, -1.0};
  for (int i = 0; i < 7; ++i) EXPECT_NEAR(naca::modulation(x[i], 0.5, 1.2), f[i], 1e-12) << x[i];
  // Continuous at the piece boundaries lam/2, lam, 3 lam/2.
  for (double b : {0.25, 0.5, 0.75}) {
    EXPECT_NEAR(naca::modulation(b - 1e-9, 0.5, 1.2), naca::modulation(b + 1e-9, 0.5, 1.2), 1e-6);
  }
}

TEST(Modulation, OpMatchesScalarMath) {
  auto x = torch::linspace(-0.2, 1.2, 57, torch::kFloat64);
  auto y = op("naca::modulation").typed<at::Tensor(const at::Tensor&, double, double)>().call(x, 0.5, 1.2);
  for (int64_t i = 0; i < x.numel(); ++i) {
    EXPECT_NEAR(y[i].item<double>(), naca::modulation(x[i].item<double>(), 0.5, 1.2), 1e-12);
  }
}

TEST(Plasticity, HandComputedTwoByThree) {
  // W (2x3) = 0, one sample x = (1, 2, 3), identity activation, signal = (1, -2), lr = 0.5:
  // dW = -lr * signal^T x = -0.5 * [[1, 2, 3], [-2, -4, -6]] = [[-0.5, -1, -1.5], [1, 2, 3]].
  auto w = torch::zeros({2, 3}, torch::kFloat64);
  auto b = torch::zeros({2}, torch::kFloat64);
  auto x = torch::tensor({{1.0, 2.0, 3.0}}, torch::kFloat64);
  auto z = torch::zeros({1, 2}, torch::kFloat64);
  auto s = torch::tensor({{1.0, -2.0}}, torch::kFloat64);
  op("naca::plasticity_update_")
      .typed<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                  const at::Tensor&, std::string, double, bool)>()
      .call(w, b, x, z, s, "identity", 0.5, false);
  auto expected = torch::tensor({{-0.5, -1.0, -1.5}, {1.0, 2.0, 3.0}}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(w, expected)) << w;
  EXPECT_TRUE(torch::allclose(b, torch::tensor({-0.5, 1.0}, torch::kFloat64))) << b;
}

TEST(Plasticity, TanhDerivativeScalesTheSignal) {
  // z = 0.5 for both units: tanh'(0.5) = 1 - tanh(0.5)^2.
  auto w = torch::zeros({2, 3}, torch::kFloat64);
  auto x = torch::tensor({{1.0, 0.0, -1.0}}, torch::kFloat64);
  auto z = torch::full({1, 2}, 0.5, torch::kFloat64);
  auto s = torch::tensor({{1.0, 1.0}}, torch::kFloat64);
  op("naca::plasticity_update_")
      .typed<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                  const at::Tensor&, std::string, double, bool)>()
      .call(w, std::nullopt, x, z, s, "tanh", 1.0, false);
  const double g = 1.0 - std::tanh(0.5) * std::tanh(0.5);
  EXPECT_NEAR(w[0][0].item<double>(), -g, 1e-12);
  EXPECT_NEAR(w[1][2].item<double>(), g, 1e-12);
  EXPECT_NEAR(w[0][1].item<double>(), 0.0, 1e-12);
}

TEST(Plasticity, FromOutputTakesTheDerivativeFromH) {
  // h = tanh(0.5) given with from_output = true: the same update as z = 0.5; sigmoid from
  // h = 0.25: sigmoid' = h (1 - h) = 0.1875.
  using Fn = void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                  const at::Tensor&, std::string, double, bool);
  auto x = torch::tensor({{1.0, 0.0, -1.0}}, torch::kFloat64);
  auto s = torch::tensor({{1.0, 1.0}}, torch::kFloat64);
  auto w = torch::zeros({2, 3}, torch::kFloat64);
  op("naca::plasticity_update_").typed<Fn>().call(
      w, std::nullopt, x, torch::full({1, 2}, std::tanh(0.5), torch::kFloat64), s, "tanh", 1.0, true);
  const double g = 1.0 - std::tanh(0.5) * std::tanh(0.5);
  EXPECT_NEAR(w[0][0].item<double>(), -g, 1e-12);
  EXPECT_NEAR(w[1][2].item<double>(), g, 1e-12);
  auto w2 = torch::zeros({2, 3}, torch::kFloat64);
  op("naca::plasticity_update_").typed<Fn>().call(
      w2, std::nullopt, x, torch::full({1, 2}, 0.25, torch::kFloat64), s, "sigmoid", 1.0, true);
  EXPECT_NEAR(w2[0][0].item<double>(), -0.1875, 1e-12);
  EXPECT_NEAR(w2[1][2].item<double>(), 0.1875, 1e-12);
}

TEST(Plasticity, BadShapeThrowsAndLeavesWeight) {
  auto w = torch::ones({2, 3}, torch::kFloat64);
  auto x = torch::ones({1, 4}, torch::kFloat64);
  auto z = torch::zeros({1, 2}, torch::kFloat64);
  EXPECT_THROW(op("naca::plasticity_update_")
                   .typed<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&,
                               const at::Tensor&, const at::Tensor&, std::string, double, bool)>()
                   .call(w, std::nullopt, x, z, z, "identity", 0.5, false),
               c10::Error);
  EXPECT_TRUE(torch::equal(w, torch::ones({2, 3}, torch::kFloat64)));
}

TEST(NacaHidden, FusedEqualsHandComputedSignal) {
  // N = 2 classes: k = [2, 0]. Class 0 reads NI rows 2, 3; class 1 rows 0, 1.
  auto ni = torch::tensor({{0.0}, {0.5}, {1.0}, {0.5}}, torch::kFloat64);  // 2N x H, H = 1
  auto w = torch::zeros({1, 1}, torch::kFloat64);
  auto x = torch::ones({2, 1}, torch::kFloat64);
  auto z = torch::zeros({2, 1}, torch::kFloat64);
  auto y = torch::tensor({0, 1}, torch::kLong);
  op("naca::naca_hidden_update_")
      .typed<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                  const at::Tensor&, const at::Tensor&, std::string, double, double, double, bool)>()
      .call(w, std::nullopt, x, z, y, ni, "identity", 1.0, 0.5, 1.2, false);
  // NL(class 0) = 0.75 -> f = -1; NL(class 1) = 0.25 -> f = 1: the two cancel.
  EXPECT_NEAR(w.item<double>(), 0.0, 1e-12);
  auto w2 = torch::zeros({1, 1}, torch::kFloat64);
  op("naca::naca_hidden_update_")
      .typed<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                  const at::Tensor&, const at::Tensor&, std::string, double, double, double, bool)>()
      .call(w2, std::nullopt, x.slice(0, 0, 1), z.slice(0, 0, 1), y.slice(0, 0, 1), ni, "identity", 1.0, 0.5, 1.2, false);
  EXPECT_NEAR(w2.item<double>(), 1.0, 1e-12);  // W -= 1 * (-1) * 1
}

}  // namespace
