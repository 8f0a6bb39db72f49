// CPU: the modulation curve f, elementwise.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../update_ops.h"
#include "elementwise.h"

namespace naca::cpu {

template <typename T>
inline void modulation_block(const T* __restrict__ x, T* __restrict__ o, int64_t n, T lam,
                             T theta) {
  for (int64_t i = 0; i < n; ++i) o[i] = naca::modulation(x[i], lam, theta);
}

// The curve is ~30 vector instructions per element group, so it is bound by
// the vector width: AVX-512 / AVX2 clones (NACA_SIMD_CLONES).
NACA_SIMD_CLONES void modulation_simd(const float* x, float* o, int64_t n, float lam,
                                      float theta) {
  modulation_block(x, o, n, lam, theta);
}

NACA_SIMD_CLONES void modulation_simd(const double* x, double* o, int64_t n, double lam,
                                      double theta) {
  modulation_block(x, o, n, lam, theta);
}

at::Tensor modulation(const at::Tensor& level, double lam, double theta) {
  auto out = at::empty_like(level);
  AT_DISPATCH_FLOATING_TYPES(level.scalar_type(), "naca_modulation_cpu", [&] {
    const scalar_t* x = level.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const auto l = static_cast<scalar_t>(lam);
    const auto th = static_cast<scalar_t>(theta);
    at::parallel_for(0, level.numel(), kGrain, [&](int64_t begin, int64_t end) {
      modulation_simd(x + begin, o + begin, end - begin, l, th);
    });
  });
  return out;
}

}  // namespace naca::cpu

TORCH_LIBRARY_IMPL(naca, CPU, m) {
  m.impl("modulation", &naca::modulation_op<naca::cpu::modulation>);
}
