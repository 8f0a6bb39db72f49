// GoogleTest cases for the spiking ops, against hand-worked values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <tuple>

#include "naca_math.h"

namespace {

c10::OperatorHandle snn_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

std::tuple<at::Tensor, at::Tensor> lif(const at::Tensor& current, double decay, double threshold,
                                       const std::string& reset) {
  return snn_op("naca::lif_forward")
      .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, double, double, std::string,
                                                const std::optional<at::Tensor>&,
                                                const std::optional<at::Tensor>&)>()
      .call(current, decay, threshold, reset, std::nullopt, std::nullopt);
}

// One pre and one post spike, post - pre = dt_ms (1 ms steps); returns the weight change.
double stdp_pair(int dt_ms) {
  const int64_t steps = 12, t_pre = dt_ms > 0 ? 1 : 1 - dt_ms;
  auto pre = torch::zeros({steps, 1, 1}, torch::kFloat64);
  auto post = torch::zeros({steps, 1, 1}, torch::kFloat64);
  pre[t_pre] = 1;
  post[t_pre + dt_ms] = 1;
  auto w = torch::full({1, 1}, 0.5, torch::kFloat64);
  snn_op("naca::stdp_update_")
      .typed<void(at::Tensor, const at::Tensor&, const at::Tensor&, double, double, double, double,
                  double, double, std::string, const std::optional<at::Tensor>&, double, double)>()
      .call(w, pre, post, 20.0, 20.0, 0.01, 0.012, 0.0, 1.0, "hard", std::nullopt, 1.0, 1.0);
  return w.item<double>() - 0.5;
}

TEST(Lif, HandWorkedThreeStepTrace) {
  // decay 0.2, threshold 0.5, I = 0.4, 0.3, 0.6:
  // V0 = 0.4 (no spike); V1 = 0.2 * 0.4 + 0.3 = 0.38; V2 = 0.2 * 0.38 + 0.6 = 0.676 (spike).
  auto current = torch::tensor({0.4, 0.3, 0.6}, torch::kFloat64).view({3, 1, 1});
  auto [s, v] = lif(current, 0.2, 0.5, "hard");
  EXPECT_NEAR(v[0].item<double>(), 0.4, 1e-12);
  EXPECT_NEAR(v[1].item<double>(), 0.38, 1e-12);
  EXPECT_NEAR(v[2].item<double>(), 0.676, 1e-12);
  EXPECT_EQ(s[0].item<double>(), 0.0);
  EXPECT_EQ(s[1].item<double>(), 0.0);
  EXPECT_EQ(s[2].item<double>(), 1.0);
}

TEST(Lif, HardAndSoftResetAfterASpike) {
  // I = 0.8, 0.1: V0 = 0.8 spikes; hard: V1 = 0.1; soft: V1 = 0.2 * (0.8 - 0.5) + 0.1 = 0.16.
  auto current = torch::tensor({0.8, 0.1}, torch::kFloat64).view({2, 1, 1});
  EXPECT_NEAR(std::get<1>(lif(current, 0.2, 0.5, "hard"))[1].item<double>(), 0.1, 1e-12);
  EXPECT_NEAR(std::get<1>(lif(current, 0.2, 0.5, "soft"))[1].item<double>(), 0.16, 1e-12);
  EXPECT_THROW(lif(current, 0.2, 0.5, "none"), c10::Error);
}

TEST(Lif, ScalarMath) {
  EXPECT_DOUBLE_EQ(naca::lif_voltage(0.4, 0.0, 0.3, 0.2, 0.5, false), 0.38);
  EXPECT_DOUBLE_EQ(naca::lif_spike(0.5, 0.5), 0.0);  // strict threshold
  EXPECT_DOUBLE_EQ(naca::snn_eligibility(0.1, 1.0, 0.5, 0.5), 0.0);  // 1[0.1 > 0] - 1
  EXPECT_DOUBLE_EQ(naca::snn_eligibility(-0.1, 0.0, 0.5, 0.5), 0.0);
}

TEST(Stdp, HandWorkedPairAtPlusFiveMs) {
  // Pre 5 ms before post: + A+ exp(-5 / 20) = 0.01 * 0.7788008 = 0.0077880.
  EXPECT_NEAR(stdp_pair(5), 0.01 * std::exp(-0.25), 1e-15);
}

TEST(Stdp, HandWorkedPairAtMinusFiveMs) {
  // Pre 5 ms after post: - A- exp(-5 / 20) = -0.012 * 0.7788008 = -0.0093456.
  EXPECT_NEAR(stdp_pair(-5), -0.012 * std::exp(-0.25), 1e-15);
}

TEST(Stdp, SoftBoundScalesByDistanceToTheBound) {
  EXPECT_DOUBLE_EQ(naca::stdp_weight(0.9, 1.0, 0.0, 0.01, 0.012, 1.0, 0.0, 1.0, naca::Bound::Soft),
                   0.9 + 0.01 * (1.0 - 0.9));
  EXPECT_DOUBLE_EQ(naca::stdp_weight(0.995, 1.0, 0.0, 0.01, 0.012, 1.0, 0.0, 1.0, naca::Bound::Hard), 1.0);
}

}  // namespace
