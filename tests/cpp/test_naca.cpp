// GoogleTest cases for the NACA ANN layer of the library, against hand-worked values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "checks.h"
#include "expectation.h"
#include "naca_math.h"
#include "update.h"

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

TEST(OutputDelta, ErrorTimesSigmoidDerivative) {
  // s = sigmoid(z) = 0.7: target e = -0.3, other e = 0.7; sigmoid' = 0.7 * 0.3 = 0.21.
  EXPECT_NEAR(naca::output_delta(0.7, true, true), -0.3 * 0.21, 1e-15);
  EXPECT_NEAR(naca::output_delta(0.7, false, true), 0.7 * 0.21, 1e-15);
  EXPECT_NEAR(naca::output_delta(0.7, true, false), -0.3, 1e-15);
  EXPECT_NEAR(naca::output_delta(0.7, false, false), 0.7, 1e-15);
  EXPECT_EQ(naca::output_delta(1.0f, true, true), 0.0f);
}

TEST(Stdp, SplitFactorsScaleBothTracesByTheModulation) {
  double g = 2.0, f = 3.0;
  naca::stdp_split_factors(g, f, 0.5);
  EXPECT_EQ(g, 1.0);
  EXPECT_EQ(f, 1.5);
  // Kept apart they give stdp_factor's combination: a+ (m G) - a- (m F).
  EXPECT_DOUBLE_EQ(0.2 * g - 0.1 * f, naca::stdp_factor(2.0, 3.0, 0.5, 0.2, 0.1));
}

// The CPU op evaluates the curve branch-free (one division per element, SIMD
// clones); on x86-64 (no FMA contraction) it must round exactly as the branchy
// scalar math the CUDA kernels use.
template <typename T>
void expect_op_matches_scalar_math(at::ScalarType dtype) {
  auto x = torch::linspace(-0.5, 1.5, 4001, torch::kFloat64).to(dtype);
  for (const auto& [lam, theta] : {std::pair{0.5, 1.2}, std::pair{0.3, 1.5}, std::pair{0.7, 1.0}}) {
    auto y = op("naca::modulation").typed<at::Tensor(const at::Tensor&, double, double)>().call(
        x, lam, theta);
    const T* xp = x.template const_data_ptr<T>();
    const T* yp = y.template const_data_ptr<T>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const T expected = naca::modulation<T>(xp[i], static_cast<T>(lam), static_cast<T>(theta));
#if defined(__x86_64__)
      EXPECT_EQ(yp[i], expected) << "x=" << xp[i] << " lam=" << lam << " theta=" << theta;
#else
      EXPECT_NEAR(yp[i], expected, 1e-6) << "x=" << xp[i];
#endif
    }
  }
}

TEST(Modulation, OpMatchesScalarMath) {
  expect_op_matches_scalar_math<double>(torch::kFloat64);
  expect_op_matches_scalar_math<float>(torch::kFloat32);
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

// ATen's overlap test gives up (TooHard) as soon as a tensor is not dense; the
// ops must still accept a non-dense read-only input that shares no bytes with the
// weight, and still refuse one that does.
TEST(Alias, NonDenseInputsAreJudgedByTheBytesTheyReach) {
  auto buf = torch::arange(12, torch::kFloat64);
  auto w = buf.slice(0, 0, 6).view({2, 3});                 // bytes 0..5 of buf
  auto after = buf.slice(0, 6, 9).unsqueeze(0).expand({4, 3});  // expanded view of 6..8
  auto strided = buf.slice(0, 1, 12, 2);                    // 1, 3, ..., 11: reaches into w
  auto other = torch::ones({3}, torch::kFloat64).unsqueeze(0).expand({4, 3});
  ASSERT_EQ(at::get_overlap_status(w, after), at::MemOverlapStatus::TooHard);
  EXPECT_FALSE(naca::may_share_memory(w, after));
  EXPECT_FALSE(naca::may_share_memory(w, other));
  EXPECT_TRUE(naca::may_share_memory(w, strided));
  EXPECT_TRUE(naca::may_share_memory(w, w.t()));
  EXPECT_TRUE(naca::may_share_memory(w, w));

  using Fn = void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                  const at::Tensor&, std::string, double, bool);
  auto z = torch::zeros({4, 2}, torch::kFloat64);
  auto s = torch::ones({4, 2}, torch::kFloat64);
  auto dense = torch::zeros({2, 3}, torch::kFloat64);
  op("naca::plasticity_update_").typed<Fn>().call(dense, std::nullopt, after.contiguous(), z, s, "identity",
                                                   0.5, false);
  op("naca::plasticity_update_").typed<Fn>().call(w, std::nullopt, after, z, s, "identity", 0.5, false);
  EXPECT_TRUE(torch::allclose(w, dense + torch::arange(6, torch::kFloat64).view({2, 3}))) << w;
  auto before = w.clone();
  auto reaching = buf.slice(0, 3, 12, 3).unsqueeze(0).expand({4, 3});  // 3, 6, 9: byte 3 is in w
  EXPECT_THROW(op("naca::plasticity_update_").typed<Fn>().call(w, std::nullopt, reaching, z, s, "identity", 0.5,
                                                               false),
               c10::Error);
  EXPECT_TRUE(torch::equal(w, before));
}

void naca_hidden(at::Tensor w, const std::optional<at::Tensor>& b, const at::Tensor& x,
                 const at::Tensor& u, const at::Tensor& y, const at::Tensor& ni,
                 const std::string& act, bool from_output, bool check_labels = true) {
  op("naca::naca_hidden_update_")
      .typed<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                  const at::Tensor&, const at::Tensor&, std::string, double, double, double, bool,
                  bool)>()
      .call(w, b, x, u, y, ni, act, 1.0, 0.5, 1.2, from_output, check_labels);
}

// N = 2 classes: k = [2, 0]. Class 0 reads NI rows 2, 3 (NL = 0.75, f = -1);
// class 1 rows 0, 1 (NL = 0.25, f = 1). H = 1.
at::Tensor two_class_ni() { return torch::tensor({{0.0}, {0.5}, {1.0}, {0.5}}, torch::kFloat64); }

TEST(NacaHidden, FusedEqualsHandComputedSignal) {
  auto ni = two_class_ni();
  auto w = torch::zeros({1, 1}, torch::kFloat64);
  auto x = torch::ones({2, 1}, torch::kFloat64);
  auto z = torch::zeros({2, 1}, torch::kFloat64);
  auto y = torch::tensor({0, 1}, torch::kLong);
  naca_hidden(w, std::nullopt, x, z, y, ni, "identity", false);
  EXPECT_NEAR(w.item<double>(), 0.0, 1e-12);  // f = -1 and f = 1 cancel
  auto w2 = torch::zeros({1, 1}, torch::kFloat64);
  naca_hidden(w2, std::nullopt, x.slice(0, 0, 1), z.slice(0, 0, 1), y.slice(0, 0, 1), ni, "identity",
              false);
  EXPECT_NEAR(w2.item<double>(), 1.0, 1e-12);  // W -= 1 * (-1) * 1
}

TEST(NacaHidden, BatchLargerThanClassCountHandTrace) {
  // 5 samples of 2 classes: the CPU kernel evaluates f(NL) once per class and
  // reuses it per sample.
  auto ni = two_class_ni();
  auto w = torch::zeros({1, 1}, torch::kFloat64);
  auto b = torch::zeros({1}, torch::kFloat64);
  auto x = torch::tensor({{1.0}, {2.0}, {3.0}, {4.0}, {5.0}}, torch::kFloat64);
  auto h = torch::tensor({{0.0}, {0.5}, {0.0}, {0.5}, {0.0}}, torch::kFloat64);  // tanh outputs
  auto y = torch::tensor({0, 1, 1, 0, 0}, torch::kLong);
  naca_hidden(w, b, x, h, y, ni, "tanh", true);
  // phi' = 1 - h^2 = {1, .75, 1, .75, 1}; delta = f phi' = {-1, .75, 1, -.75, -1}.
  // W -= sum delta x = -(-1 + 1.5 + 3 - 3 - 5); b -= sum delta = -(-1).
  EXPECT_NEAR(w.item<double>(), 4.5, 1e-12);
  EXPECT_NEAR(b.item<double>(), 1.0, 1e-12);
}

TEST(NacaHidden, UncheckedOutOfRangeLabelsDoNotLearn) {
  auto ni = two_class_ni();
  auto x = torch::tensor({{1.0}, {2.0}, {3.0}, {4.0}}, torch::kFloat64);
  auto z = torch::zeros({4, 1}, torch::kFloat64);
  auto y = torch::tensor({1, 7, -2, 0}, torch::kLong);
  for (int64_t b : {2, 4}) {  // per element (b <= N) and per-class table (b > N)
    SCOPED_TRACE(b);
    auto w = torch::zeros({1, 1}, torch::kFloat64);
    auto xs = x.slice(0, 0, b), zs = z.slice(0, 0, b), ys = y.slice(0, 0, b);
    EXPECT_THROW(naca_hidden(w, std::nullopt, x, z, y, ni, "identity", false), c10::Error);
    EXPECT_EQ(w.item<double>(), 0.0);
    naca_hidden(w, std::nullopt, xs, zs, ys, ni, "identity", false, /*check_labels=*/false);
    // Labels 7 and -2 add nothing: W -= 1 * 1 (+ 4 * (-1) for b = 4).
    EXPECT_NEAR(w.item<double>(), b == 2 ? -1.0 : 3.0, 1e-12);
  }
}

TEST(ConvUpdate, ChunksOnCpuSumToTheWholeBatchUpdate) {
  // 16 x 180 x 180 float64 maps are 4.1 MB per sample: the 8 MiB chunks hold 2 of 6.
  auto preact = torch::randn({6, 16, 180, 180}, torch::kFloat64);
  auto weight = torch::randn({16, 2, 3, 3}, torch::kFloat64);
  ASSERT_EQ(naca::conv_chunk_samples(weight, preact), 2);
  auto input = torch::randn({6, 2, 180, 180}, torch::kFloat64);
  auto signal = torch::randn({6, 16, 180, 180}, torch::kFloat64);
  auto bias = torch::randn({16}, torch::kFloat64);
  // Expected: the whole-batch conv weight gradient of delta = signal (identity act').
  auto grads = at::convolution_backward(signal, input, weight, std::nullopt, {1, 1}, {1, 1}, {1, 1},
                                        false, {0, 0}, 1, {false, true, true});
  auto w_expected = weight - 0.01 * std::get<1>(grads);
  auto b_expected = bias - 0.01 * std::get<2>(grads);
  op("naca::conv_plasticity_update_")
      .typed<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                  const at::Tensor&, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t,
                  std::string, double, bool)>()
      .call(weight, bias, input, preact, signal, {1, 1}, {1, 1}, {1, 1}, 1, "identity", 0.01, false);
  EXPECT_TRUE(torch::allclose(weight, w_expected, 1e-12, 1e-10));
  EXPECT_TRUE(torch::allclose(bias, b_expected, 1e-12, 1e-10));
}

TEST(NacaOutput, HandComputedOwnErrorRule) {
  // z = 0: sigmoid = 0.5 for both classes; y = 1: e = (0.5, -0.5); sigmoid' = 0.25.
  for (bool sigmoid_grad : {true, false}) {
    SCOPED_TRACE(sigmoid_grad);
    auto w = torch::zeros({2, 1}, torch::kFloat64);
    auto b = torch::zeros({2}, torch::kFloat64);
    op("naca::naca_output_update_")
        .typed<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                    const at::Tensor&, double, bool, bool)>()
        .call(w, b, torch::ones({1, 1}, torch::kFloat64), torch::zeros({1, 2}, torch::kFloat64),
              torch::tensor({1}, torch::kLong), 1.0, sigmoid_grad, true);
    const double d = sigmoid_grad ? 0.125 : 0.5;  // delta = e * 0.25, or e
    EXPECT_NEAR(w[0][0].item<double>(), -d, 1e-12);
    EXPECT_NEAR(w[1][0].item<double>(), d, 1e-12);
    EXPECT_NEAR(b[0].item<double>(), -d, 1e-12);
    EXPECT_NEAR(b[1].item<double>(), d, 1e-12);
  }
}

}  // namespace
