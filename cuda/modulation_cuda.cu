// CUDA: the modulation curve f, elementwise.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "update_ops.h"
#include "launch.cuh"

namespace naca::cuda {

template <typename scalar_t>
__global__ void modulation_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ o,
                                  int64_t n, at::opmath_type<scalar_t> lam,
                                  at::opmath_type<scalar_t> theta) {
  using acc_t = at::opmath_type<scalar_t>;
  NACA_GRID_STRIDE(i, n) {
    o[i] = static_cast<scalar_t>(naca::modulation(static_cast<acc_t>(x[i]), lam, theta));
  }
}

at::Tensor modulation(const at::Tensor& level, double lam, double theta) {
  const c10::cuda::CUDAGuard guard(level.device());
  auto out = at::empty_like(level);
  const int64_t n = level.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, level.scalar_type(),
                                  "naca_modulation_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    modulation_kernel<scalar_t><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        level.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n,
        static_cast<acc_t>(lam), static_cast<acc_t>(theta));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace naca::cuda

TORCH_LIBRARY_IMPL(naca, CUDA, m) {
  m.impl("modulation", &naca::modulation_op<naca::cuda::modulation>);
}
