#include "expectation.h"

#include <torch/library.h>

#include <cmath>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>

namespace naca {

std::vector<int64_t> expectation_slots(int64_t num_classes, const char* op) {
  TORCH_CHECK(num_classes >= 2, "naca::", op, ": argument 'num_classes' expected >= 2, got ",
              num_classes);
  // Slots collide from a few hundred classes on; the cap keeps an absurd count
  // from allocating before the collision check can reject it.
  TORCH_CHECK(num_classes <= (int64_t{1} << 20), "naca::", op,
              ": argument 'num_classes' expected <= 1048576, got ", num_classes);
  const int64_t n = num_classes;
  // a_i = sqrt(2 ln(N / i)), i = 1..N; a_1 is the largest, a_N = 0.
  const double a_max = std::sqrt(2.0 * std::log(static_cast<double>(n)));
  std::vector<int64_t> slots(n);
  std::set<int64_t> seen;
  for (int64_t c = 0; c < n; ++c) {
    const double a = std::sqrt(2.0 * std::log(static_cast<double>(n) / static_cast<double>(c + 1)));
    slots[c] = static_cast<int64_t>(std::floor(a / a_max * 2.0 * static_cast<double>(n - 1)));
    TORCH_CHECK(seen.insert(slots[c]).second, "naca::", op,
                ": the expectation matrix for num_classes=", n,
                " maps two classes to the same slot k=", slots[c],
                " (the Gaussian-quantile spacing is finer than one column); use fewer classes");
  }
  return slots;
}

at::Tensor expectation_slots_tensor(int64_t num_classes, at::Device device, const char* op) {
  static std::mutex mutex;
  static std::map<std::pair<int64_t, std::string>, at::Tensor> cache;
  const auto key = std::make_pair(num_classes, device.str());
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  const auto slots = expectation_slots(num_classes, op);
  auto t = at::tensor(slots, at::TensorOptions().dtype(at::kLong)).to(device);
  cache.emplace(key, t);
  return t;
}

int64_t classes_of_ni(const at::Tensor& ni, const char* op) {
  TORCH_CHECK(ni.defined(), "naca::", op, ": argument 'ni' is undefined");
  TORCH_CHECK(ni.dim() >= 2, "naca::", op,
              ": argument 'ni' expected shape [2N, H] or [2N, C, H, W], got ", ni.sizes());
  TORCH_CHECK(ni.size(0) >= 4 && ni.size(0) % 2 == 0, "naca::", op,
              ": argument 'ni' expected an even first dimension 2N >= 4 (N classes), got ",
              ni.size(0));
  return ni.size(0) / 2;
}

}  // namespace naca

namespace naca {
namespace {

at::Tensor expectation_matrix(int64_t num_classes, std::optional<at::ScalarType> dtype,
                              std::optional<at::Device> device) {
  const auto slots = expectation_slots(num_classes, "expectation_matrix");
  const auto type = dtype.value_or(at::kFloat);
  TORCH_CHECK(at::isFloatingType(type), "naca::expectation_matrix: argument 'dtype' expected a ",
              "floating-point dtype (E holds 0.5), got ", type);
  auto e = at::zeros({num_classes, 2 * num_classes}, at::TensorOptions().dtype(at::kDouble));
  auto acc = e.accessor<double, 2>();
  for (int64_t c = 0; c < num_classes; ++c) {
    acc[c][slots[c]] = 0.5;
    acc[c][slots[c] + 1] = 0.5;
  }
  return e.to(device.value_or(at::kCPU), type);
}

}  // namespace
}  // namespace naca

// E depends on the class count alone: one implementation serves every backend.
TORCH_LIBRARY_IMPL(naca, CompositeExplicitAutograd, m) {
  m.impl("expectation_matrix", &naca::expectation_matrix);
}
