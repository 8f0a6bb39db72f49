// CUDA: the fused homeostatic relaxation and the homeostatic_relax op. One
// thread per element runs all the steps in registers: one read of state and
// drive, one write.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "snn_ops.h"
#include "launch.cuh"

namespace naca::cuda {

template <typename scalar_t>
__global__ void relax_kernel(const scalar_t* __restrict__ state, const scalar_t* __restrict__ drive,
                             scalar_t* __restrict__ out, int64_t n, at::opmath_type<scalar_t> eps,
                             int64_t iters) {
  using acc_t = at::opmath_type<scalar_t>;
  NACA_GRID_STRIDE(j, n) {
    acc_t s = static_cast<acc_t>(state[j]);
    const acc_t d = static_cast<acc_t>(drive[j]);
    for (int64_t k = 0; k < iters; ++k) {
      const acc_t next = relax_step(s, d, eps);
      // A fixed point (or NaN) stays so for every later step: exact, and it
      // bounds huge `iters`.
      const bool done = next == s || next != next;
      s = next;
      if (done) break;
    }
    out[j] = static_cast<scalar_t>(s);
  }
}

at::Tensor relax(const at::Tensor& state, const at::Tensor& drive, double eps, int64_t iters) {
  const c10::cuda::CUDAGuard guard(state.device());
  auto out = at::empty_like(state, at::MemoryFormat::Contiguous);
  const int64_t n = state.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, state.scalar_type(),
                                  "naca_relax_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    relax_kernel<scalar_t><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        state.const_data_ptr<scalar_t>(), drive.const_data_ptr<scalar_t>(),
        out.mutable_data_ptr<scalar_t>(), n, static_cast<acc_t>(eps), iters);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace naca::cuda

TORCH_LIBRARY_IMPL(naca, CUDA, m) {
  m.impl("homeostatic_relax", &naca::homeostatic_relax<naca::cuda::relax>);
}
