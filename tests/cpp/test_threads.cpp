// GoogleTest cases for the CPU kernels' parallel loops (at::parallel_for): sizes
// that span several tasks, with tasks that start in the middle of a row, run on 1
// and on 2 intra-op threads. The elementwise ops must give the same bits (each
// thread writes its own elements); the updates, whose GEMM may round differently
// on another thread count, must agree closely and match a loop of torch ops. Under
// .ci/sanitize.sh (ASan + UBSan) these are also the threaded paths' memory checks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace {

c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

// Restores the thread count after each test.
class Threads : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = at::get_num_threads(); }
  void TearDown() override { at::set_num_threads(saved_); }

  // fn's outputs on 1 thread and on 2 threads.
  static std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> one_and_two(
      const std::function<std::vector<at::Tensor>()>& fn) {
    at::set_num_threads(1);
    auto one = fn();
    at::set_num_threads(2);
    auto two = fn();
    return {one, two};
  }

 private:
  int saved_ = 1;
};

constexpr int64_t kAboveOneTask = 3 * 32768 + 13;  // csrc/cpu/elementwise.h kGrain = 32768

TEST_F(Threads, ElementwiseOpsGiveTheSameBits) {
  torch::manual_seed(0);
  const auto level = torch::rand({kAboveOneTask});
  const auto labels = torch::randint(0, 10, {67}, torch::kLong);
  const auto ni = torch::rand({20, 1501});  // 67 x 1501 outputs: tasks start mid-row
  const auto current = 0.8 * torch::rand({3, 41, 1601});
  const auto spikes = (torch::rand({3, 41, 1601}) < 0.3).to(torch::kFloat);
  const auto state = torch::rand({41, 1601}), drive = torch::rand({41, 1601});
  const std::vector<std::pair<std::string, std::function<std::vector<at::Tensor>()>>> calls = {
      {"modulation",
       [&] {
         return std::vector<at::Tensor>{op("naca::modulation")
                                            .typed<at::Tensor(const at::Tensor&, double, double)>()
                                            .call(level, 0.5, 1.2)};
       }},
      {"neuromodulator",
       [&] {
         return std::vector<at::Tensor>{op("naca::neuromodulator")
                                            .typed<at::Tensor(const at::Tensor&, const at::Tensor&, bool)>()
                                            .call(labels, ni, true)};
       }},
      {"lif_forward",
       [&] {
         auto [s, v] = op("naca::lif_forward")
                           .typed<std::tuple<at::Tensor, at::Tensor>(
                               const at::Tensor&, double, double, std::string,
                               const std::optional<at::Tensor>&, const std::optional<at::Tensor>&)>()
                           .call(current, 0.2, 0.5, "hard", std::nullopt, std::nullopt);
         return std::vector<at::Tensor>{s, v};
       }},
      {"stp_forward",
       [&] {
         return std::vector<at::Tensor>{
             op("naca::stp_forward")
                 .typed<at::Tensor(const at::Tensor&, double, double, double, double, double)>()
                 .call(spikes, 0.45, 10.0, 2.0, 2.0, 1.0)};
       }},
      {"homeostatic_relax",
       [&] {
         return std::vector<at::Tensor>{
             op("naca::homeostatic_relax")
                 .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, int64_t)>()
                 .call(state, drive, 0.5, 7)};
       }},
  };
  for (const auto& [name, call] : calls) {
    auto [one, two] = one_and_two(call);
    ASSERT_EQ(one.size(), two.size());
    for (size_t k = 0; k < one.size(); ++k) EXPECT_TRUE(torch::equal(one[k], two[k])) << name;
  }
}

TEST_F(Threads, NacaHiddenUpdateAgreesAcrossThreadCounts) {
  torch::manual_seed(1);
  const auto w0 = 0.1 * torch::randn({300, 50}, torch::kFloat64);
  const auto b0 = torch::zeros({300}, torch::kFloat64);
  const auto pre = torch::rand({257, 50}, torch::kFloat64);
  const auto h = torch::tanh(torch::randn({257, 300}, torch::kFloat64));  // 77100 deltas
  const auto labels = torch::randint(0, 10, {257}, torch::kLong);
  const auto ni = torch::rand({20, 300}, torch::kFloat64);
  auto [one, two] = one_and_two([&] {
    auto w = w0.clone(), b = b0.clone();
    op("naca::naca_hidden_update_")
        .typed<void(at::Tensor, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                    const at::Tensor&, const at::Tensor&, std::string, double, double, double, bool,
                    bool)>()
        .call(w, b, pre, h, labels, ni, "tanh", 0.01, 0.5, 1.2, true, true);
    return std::vector<at::Tensor>{w, b};
  });
  EXPECT_FALSE(torch::equal(one[0], w0));  // it learned something
  EXPECT_TRUE(torch::allclose(one[0], two[0], 1e-12, 1e-14));
  EXPECT_TRUE(torch::allclose(one[1], two[1], 1e-12, 1e-14));
}

// STDP's trace sums as the step-by-step loop: x, y the pre and post traces.
at::Tensor stdp_by_loop(const at::Tensor& w, const at::Tensor& pre, const at::Tensor& post,
                        const at::Tensor& m, double dp, double dq, const std::string& bound) {
  auto x = torch::zeros_like(pre[0]), y = torch::zeros_like(post[0]);
  auto ltp = torch::zeros_like(w), ltd = torch::zeros_like(w);
  for (int64_t t = 0; t < pre.size(0); ++t) {
    x = dp * x + pre[t];
    y = dq * y + post[t];
    ltp += (m * post[t]).t().mm(x);
    ltd += (m * y).t().mm(pre[t]);
  }
  if (bound == "soft") return w + 0.01 * ltp * (1.0 - w) - 0.012 * ltd * w;
  return torch::clamp(w + 0.01 * ltp - 0.012 * ltd, 0.0, 1.0);
}

TEST_F(Threads, StdpWideLayerMatchesTheTraceLoop) {
  torch::manual_seed(2);
  const int64_t t = 4, b = 5, i = 3, h = 7001;  // b * h = 35005: the second task starts mid-row
  const auto w0 = torch::rand({h, i}, torch::kFloat64);
  const auto pre = (torch::rand({t, b, i}) < 0.3).to(torch::kFloat64);
  const auto post = (torch::rand({t, b, h}) < 0.3).to(torch::kFloat64);
  const auto m = torch::randn({b, h}, torch::kFloat64);
  const double tau_pre = 7.0, tau_post = 3.0;
  for (const std::string bound : {"hard", "soft"}) {
    auto [one, two] = one_and_two([&] {
      auto w = w0.clone();
      op("naca::stdp_update_")
          .typed<void(at::Tensor, const at::Tensor&, const at::Tensor&, double, double, double, double,
                      double, double, std::string, const std::optional<at::Tensor>&, double, double)>()
          .call(w, pre, post, tau_pre, tau_post, 0.01, 0.012, 0.0, 1.0, bound, m, 1.0, 1.0);
      return std::vector<at::Tensor>{w};
    });
    const auto expected =
        stdp_by_loop(w0, pre, post, m, std::exp(-1.0 / tau_pre), std::exp(-1.0 / tau_post), bound);
    EXPECT_TRUE(torch::allclose(one[0], expected, 1e-12, 1e-12)) << bound;
    EXPECT_TRUE(torch::allclose(two[0], expected, 1e-12, 1e-12)) << bound;
  }
}

}  // namespace
