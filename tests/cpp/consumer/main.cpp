// The C++ API as a user's program sees it: #include <naca/naca.h>, link
// TorchPluginNaca::naca. Exits non-zero (with a message) on any wrong result.
#include <naca/naca.h>
#include <torch/torch.h>

#include <fstream>
#include <iostream>
#include <string>

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::cerr << "consumer: FAILED " << what << "\n";
    ++failures;
  }
}

// The file libnaca was loaded from (the package tests compare it with the one expected).
std::string loaded_libnaca() {
#ifdef __linux__
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    const auto at = line.find('/');
    if (at != std::string::npos && line.find("/libnaca.", at) != std::string::npos) return line.substr(at);
  }
#endif
  return "";
}

}  // namespace

int main() {
  torch::manual_seed(0);
  torch::Tensor E = naca::ops::expectation_matrix(10);
  expect(E.sizes() == torch::IntArrayRef({10, 20}), "expectation_matrix(10) is (10, 20)");
  expect(torch::allclose(E.sum(1), torch::ones({10})), "each row of E sums to 1");

  torch::Tensor f = naca::ops::modulation(torch::rand({4, 100}));  // lam 0.5, theta 1.2
  expect(f.sizes() == torch::IntArrayRef({4, 100}), "modulation keeps the shape");
  expect(naca::ops::modulation(torch::tensor({0.5})).item<float>() == 0.0f, "f(lam) = 0");

  auto [spikes, volts] = naca::ops::lif_forward(torch::rand({20, 4, 100}));
  expect(spikes.sizes() == volts.sizes() && spikes.size(0) == 20, "lif_forward gives (T, B, N) twice");
  expect(torch::equal(spikes, (volts > 0.5).to(spikes.dtype())), "a spike where V > threshold");

  torch::Tensor w = torch::randn({100, 64}), b = torch::zeros({100}), x = torch::rand({32, 64});
  torch::Tensor y = torch::randint(0, 10, {32}, torch::kLong), ni = torch::rand({20, 100});
  const torch::Tensor w0 = w.clone();
  naca::ops::naca_hidden_update_(w, b, x, x.mm(w.t()), y, ni, "tanh", 0.01);
  expect(!torch::equal(w, w0) && b.abs().sum().item<float>() > 0, "naca_hidden_update_ updates w and b");

  try {
    naca::ops::naca_hidden_update_(w, b, x, x.mm(w.t()), y + 10, ni, "tanh", 0.01);
    expect(false, "out-of-range labels throw");
  } catch (const c10::Error& e) {
    expect(std::string(e.what()).find("argument 'labels'") != std::string::npos,
           "the error names the argument");
  }

  // NACA_WITH_CUDA, from the package's usage requirements, says what the library holds.
  const bool cuda = c10::Dispatcher::singleton()
                        .findSchemaOrThrow("naca::modulation", "")
                        .hasKernelForDispatchKey(c10::DispatchKey::CUDA);
#ifdef NACA_WITH_CUDA
  expect(cuda, "NACA_WITH_CUDA is defined and libnaca has CUDA kernels");
#else
  expect(!cuda, "NACA_WITH_CUDA is not defined and libnaca has no CUDA kernels");
#endif

  std::cout << "libnaca: " << loaded_libnaca() << "\n";
  if (failures == 0) std::cout << "consumer: ok\n";
  return failures == 0 ? 0 : 1;
}
