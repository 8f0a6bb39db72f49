// GoogleTest cases for the spiking ops, against hand-worked values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

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

at::Tensor stp(const at::Tensor& spikes, double tau_f) {
  return snn_op("naca::stp_forward")
      .typed<at::Tensor(const at::Tensor&, double, double, double, double, double)>()
      .call(spikes, 0.45, tau_f, 2.0, 2.0, 1.0);
}

at::Tensor relax(const at::Tensor& state, const at::Tensor& drive, double eps, int64_t iters) {
  return snn_op("naca::homeostatic_relax")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, int64_t)>()
      .call(state, drive, eps, iters);
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

// naca_snn_chain_update_ on one neuron with one input, x = 1 at both steps, lr 1, signal 1,
// returns the new weight (from 0.5).
double chain_update(const at::Tensor& current, const std::string& reset, const std::string& cur) {
  auto [s, v] = lif(current, 0.2, 0.5, reset);
  auto w = torch::full({1, 1}, 0.5, torch::kFloat64);
  snn_op("naca::naca_snn_chain_update_")
      .typed<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                  const at::Tensor&, const at::Tensor&, double, double, double, std::string,
                  std::string, double)>()
      .call(w, std::nullopt, torch::ones({2, 1, 1}, torch::kFloat64), v, s,
            torch::ones({1, 1}, torch::kFloat64), 0.2, 0.5, 0.2, reset, cur, 1.0);
  return w.item<double>();
}

TEST(NacaSnnChain, HandWorkedTwoSteps) {
  // I = 0.7, 0.2, lens 0.2: V0 = 0.7 spikes; hard: V1 = 0.2, no spike.
  // e1 = 1[0.2 > 0.3] - s0 = -1, so g1 = -1; e0 = 1[0.7 > 0.3] - 0 = 1 and
  // g0 = g1 * 0.2 * ((1 - s0) - V0 e0) = -1 * 0.2 * (0 - 0.7) = 0.14.
  // linear current: dW = g0 + g1 = -0.86, W = 0.5 + 0.86.
  // sigmoid current: dW = 0.14 * 0.7 * 0.3 - 1 * 0.2 * 0.8 = -0.1306.
  // soft reset: V1 = 0.2 * (0.7 - 0.5) + 0.2 = 0.24, e1 = -1, g0 = -1 * 0.2 * (1 - 0.5) = -0.1:
  // dW = -1.1.
  auto current = torch::tensor({0.7, 0.2}, torch::kFloat64).view({2, 1, 1});
  EXPECT_NEAR(chain_update(current, "hard", "linear"), 1.36, 1e-12);
  EXPECT_NEAR(chain_update(current, "hard", "sigmoid"), 0.6306, 1e-12);
  EXPECT_NEAR(chain_update(current, "soft", "linear"), 1.6, 1e-12);
  EXPECT_THROW(chain_update(current, "hard", "tanh"), c10::Error);
}

TEST(Stdp, HandWorkedPairAtPlusFiveMs) {
  // Pre 5 ms before post: + A+ exp(-5 / 20) = 0.01 * 0.7788008 = 0.0077880.
  EXPECT_NEAR(stdp_pair(5), 0.01 * std::exp(-0.25), 1e-15);
}

TEST(Stdp, HandWorkedPairAtMinusFiveMs) {
  // Pre 5 ms after post: - A- exp(-5 / 20) = -0.012 * 0.7788008 = -0.0093456.
  EXPECT_NEAR(stdp_pair(-5), -0.012 * std::exp(-0.25), 1e-15);
}

// Pre spikes at t = 0 and 2, a post spike at t = 1, trace decay 0.5 (tau = 1 / ln 2):
// ltp = post_1 * xpre_1 = 0.5, ltd = ypost_0 * pre_0 + ypost_2 * pre_2 = 0 + 0.5.
// The op gets them as products of pre with the post side's backward trace
// G = (0.5, 1, 0) and forward trace F = (0, 1, 0.5) (naca_math.h, stdp_factor).
double stdp_triplet(const std::string& bound) {
  auto pre = torch::tensor({1.0, 0.0, 1.0}, torch::kFloat64).view({3, 1, 1});
  auto post = torch::tensor({0.0, 1.0, 0.0}, torch::kFloat64).view({3, 1, 1});
  auto w = torch::full({1, 1}, 0.5, torch::kFloat64);
  const double tau = 1.0 / std::log(2.0);
  snn_op("naca::stdp_update_")
      .typed<void(at::Tensor, const at::Tensor&, const at::Tensor&, double, double, double, double,
                  double, double, std::string, const std::optional<at::Tensor>&, double, double)>()
      .call(w, pre, post, tau, tau, 0.01, 0.012, 0.0, 1.0, bound, std::nullopt, 1.0, 1.0);
  return w.item<double>() - 0.5;
}

TEST(Stdp, HandWorkedTripletBothBounds) {
  // hard: 0.01 * 0.5 - 0.012 * 0.5; soft (w = 0.5): 0.01 * 0.5 * (1 - 0.5) - 0.012 * 0.5 * 0.5.
  EXPECT_NEAR(stdp_triplet("hard"), -0.001, 1e-15);
  EXPECT_NEAR(stdp_triplet("soft"), -0.0005, 1e-15);
  // t = 0: G 0.5, F 0 -> 0.005 * pre_0; t = 2: G 0, F 0.5 -> -0.006 * pre_2; sum -0.001.
  EXPECT_DOUBLE_EQ(naca::stdp_factor(0.5, 0.0, 1.0, 0.01, 0.012) + naca::stdp_factor(0.0, 0.5, 1.0, 0.01, 0.012),
                   0.005 - 0.006);
  EXPECT_DOUBLE_EQ(naca::stdp_factor(1.0, 1.0, -2.0, 0.01, 0.012), -2.0 * (0.01 - 0.012));
}

TEST(Stdp, SoftBoundScalesByDistanceToTheBound) {
  EXPECT_DOUBLE_EQ(naca::stdp_weight(0.9, 1.0, 0.0, 0.01, 0.012, 1.0, 0.0, 1.0, naca::Bound::Soft),
                   0.9 + 0.01 * (1.0 - 0.9));
  EXPECT_DOUBLE_EQ(naca::stdp_weight(0.995, 1.0, 0.0, 0.01, 0.012, 1.0, 0.0, 1.0, naca::Bound::Hard), 1.0);
}

TEST(Stp, HandWorkedTwoStepTrace) {
  // U 0.45, tau_f 10, tau_d 2, tau_s 2, A 1, spikes 1, 1, from u = 0, x = 1, I = 0:
  // t0: u = 0.45 (1 - 0) = 0.45; x = 1 + 0 / 2 - 0.45 * 1 = 0.55; I = 0.45 * 0.55 = 0.2475.
  // t1: u = 0.45 - 0.045 + 0.45 (1 - 0.45) = 0.6525; x = 0.55 + 0.45 / 2 - 0.6525 * 0.55 = 0.416125;
  //     I = 0.2475 - 0.12375 + 0.6525 * 0.416125 = 0.3952715625.
  auto out = stp(torch::ones({2, 1, 1}, torch::kFloat64), 10.0);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, 1, 1}));
  EXPECT_NEAR(out[0].item<double>(), 0.2475, 1e-15);
  EXPECT_NEAR(out[1].item<double>(), 0.3952715625, 1e-15);
  double u = 0, x = 1, i = 0;
  naca::stp_step(u, x, i, 1.0, 0.45, 10.0, 2.0, 2.0, 1.0);
  naca::stp_step(u, x, i, 1.0, 0.45, 10.0, 2.0, 2.0, 1.0);
  EXPECT_NEAR(u, 0.6525, 1e-15);
  EXPECT_NEAR(x, 0.416125, 1e-15);
  EXPECT_THROW(stp(torch::ones({2, 1, 1}), 0.0), c10::Error);  // tau_f must be > 0
}

TEST(Relax, HandWorkedTwoIterations) {
  // eps 0.5, s <- clamp01(s - 0.5 (s - drive)):
  // s 0.2, drive 0.9: 0.2 + 0.35 = 0.55, then 0.55 + 0.175 = 0.725;
  // s 0.8, drive 1.6: 1.2 -> 1, then 1.3 -> 1; s 0.3, drive -0.5: -0.1 -> 0, then -0.25 -> 0.
  auto state = torch::tensor({0.2, 0.8, 0.3}, torch::kFloat64);
  auto drive = torch::tensor({0.9, 1.6, -0.5}, torch::kFloat64);
  auto out = relax(state, drive, 0.5, 2);
  EXPECT_NEAR(out[0].item<double>(), 0.725, 1e-15);
  EXPECT_EQ(out[1].item<double>(), 1.0);
  EXPECT_EQ(out[2].item<double>(), 0.0);
  EXPECT_NEAR(relax(state, drive, 0.5, 1)[0].item<double>(), 0.55, 1e-15);
  EXPECT_DOUBLE_EQ(naca::relax_step(0.55, 0.9, 0.5), 0.725);
  EXPECT_EQ(state[0].item<double>(), 0.2);  // the input is not touched
  EXPECT_THROW(relax(state, drive, 0.5, -1), c10::Error);
  EXPECT_THROW(relax(state, drive.narrow(0, 0, 2), 0.5, 2), c10::Error);
}

}  // namespace
