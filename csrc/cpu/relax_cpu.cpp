// CPU: the fused homeostatic relaxation and the homeostatic_relax op. Each
// block of elements runs all its steps while it is in L1.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../snn_ops.h"
#include "elementwise.h"

namespace naca::cpu {

constexpr int64_t kRelaxBlock = 1024;  // elements per block: state and drive stay in L1
constexpr int64_t kCheckEvery = 4;     // steps per fixed-point check

// Runs up to `iters` steps on o[0, len). Every kCheckEvery-th step also asks
// whether it changed any element: one that changed none is a fixed point of
// every later step (NaN stays NaN), so the block is done. Exact, and it bounds
// a huge `iters`. (<, > rather than != so that NaN counts as settled; a T flag
// so that the loop vectorizes for float and double alike.)
template <typename T>
inline void relax_block(T* o, const T* d, T eps, int64_t len, int64_t iters) {
  for (int64_t k = 0; k < iters;) {
    const int64_t unchecked = std::min(kCheckEvery - 1, iters - k - 1);
    for (int64_t i = 0; i < unchecked; ++i) {
      for (int64_t j = 0; j < len; ++j) o[j] = relax_step(o[j], d[j], eps);
    }
    T moved = 0;
    for (int64_t j = 0; j < len; ++j) {
      const T s = o[j];
      const T next = relax_step(s, d[j], eps);
      moved = next < s || next > s ? T(1) : moved;
      o[j] = next;
    }
    k += unchecked + 1;
    if (moved == 0) break;
  }
}

NACA_SIMD_CLONES void relax_block_simd(float* o, const float* d, float eps, int64_t len,
                                       int64_t iters) {
  relax_block(o, d, eps, len, iters);
}

NACA_SIMD_CLONES void relax_block_simd(double* o, const double* d, double eps, int64_t len,
                                       int64_t iters) {
  relax_block(o, d, eps, len, iters);
}

at::Tensor relax(const at::Tensor& state, const at::Tensor& drive, double eps, int64_t iters) {
  auto out = state.clone(at::MemoryFormat::Contiguous);
  const int64_t n = state.numel();
  // A task should hold about kGrain element-steps, whatever the number of steps.
  const int64_t grain = std::max<int64_t>(kRelaxBlock / 4, kGrain / std::max<int64_t>(iters, 1));
  AT_DISPATCH_FLOATING_TYPES(state.scalar_type(), "naca_relax_cpu", [&] {
    const scalar_t* d = drive.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const auto e = static_cast<scalar_t>(eps);
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
      for (int64_t j0 = begin; j0 < end; j0 += kRelaxBlock) {
        relax_block_simd(o + j0, d + j0, e, std::min(end - j0, kRelaxBlock), iters);
      }
    });
  });
  return out;
}

}  // namespace naca::cpu

TORCH_LIBRARY_IMPL(naca, CPU, m) {
  m.impl("homeostatic_relax", &naca::homeostatic_relax<naca::cpu::relax>);
}
