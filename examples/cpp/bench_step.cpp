// The time of one training step of the MLP 784-1000-10 on CPU: naca::learn::NACA (in-place
// SGD) and backprop through torch::autograd (cross-entropy, torch::optim::SGD), at batch 32 and
// 256. Prints one line per (rule, batch): the median of --steps timed steps after 5 warm-up steps.
// --threads N: torch::set_num_threads(N) first (default: torch's).
#include <naca/naca.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

namespace {

double median_ms(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

template <typename F>
double time_steps(int steps, F&& step) {
  for (int i = 0; i < 5; ++i) step();
  std::vector<double> t;
  for (int i = 0; i < steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return median_ms(t);
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 50;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--steps") steps = std::max(1, std::atoi(argv[i + 1]));
    if (std::string(argv[i]) == "--threads") torch::set_num_threads(std::max(1, std::atoi(argv[i + 1])));
  }
  std::cout << "threads " << torch::get_num_threads() << "\n";
  for (const int64_t batch : {32, 256}) {
    torch::manual_seed(0);
    const auto x = torch::rand({batch, 784});
    const auto y = torch::randint(0, 10, {batch}, torch::kLong);
    auto naca_model = naca::models::mlp(784, {1000}, 10, naca::models::MLPOptions().seed(0));
    naca::learn::NACA learner(naca_model, naca::learn::NACAOptions().lr(1e-3));
    const double t_naca = time_steps(steps, [&] { learner.step(x, y); });
    auto bp_model = naca::models::mlp(784, {1000}, 10, naca::models::MLPOptions().seed(0));
    torch::optim::SGD opt(bp_model->parameters(), torch::optim::SGDOptions(1e-3));
    const double t_bp = time_steps(steps, [&] {
      opt.zero_grad();
      torch::nn::functional::cross_entropy(bp_model->forward(x), y).backward();
      opt.step();
    });
    std::cout << "batch " << batch << "  C++ NACA step " << t_naca << " ms  C++ BP step " << t_bp << " ms\n";
  }
}
