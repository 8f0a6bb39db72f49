// CUDA: the NACA-SNN eligibility delta (one fused elementwise kernel) and the
// naca_snn_update_ op (then one GEMM over T * B rows).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "../csrc/snn_ops.h"
#include "launch.cuh"

namespace naca::cuda {

template <typename scalar_t>
__global__ void snn_delta_kernel(const scalar_t* __restrict__ v, const scalar_t* __restrict__ s,
                                 const scalar_t* __restrict__ sig, scalar_t* __restrict__ o,
                                 int64_t t0, int64_t bh, int64_t n,
                                 at::opmath_type<scalar_t> th, at::opmath_type<scalar_t> lens) {
  using acc_t = at::opmath_type<scalar_t>;
  NACA_GRID_STRIDE(k, n) {
    const int64_t t = t0 + k / bh, j = k % bh;
    const acc_t s_prev = t > 0 ? static_cast<acc_t>(s[(t - 1) * bh + j]) : acc_t(0);
    o[k] = static_cast<scalar_t>(static_cast<acc_t>(sig[j]) *
                                 snn_eligibility(static_cast<acc_t>(v[t * bh + j]), s_prev, th, lens));
  }
}

at::Tensor snn_delta(const at::Tensor& voltages, const at::Tensor& spikes, const at::Tensor& signal,
                     int64_t t0, double threshold, double lens) {
  const c10::cuda::CUDAGuard guard(voltages.device());
  const int64_t steps = voltages.size(0), bh = voltages.size(1) * voltages.size(2);
  auto out = at::empty({steps - t0, voltages.size(1), voltages.size(2)}, voltages.options());
  const int64_t n = out.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, voltages.scalar_type(),
                                  "naca_snn_delta_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    snn_delta_kernel<scalar_t><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        voltages.const_data_ptr<scalar_t>(), spikes.const_data_ptr<scalar_t>(),
        signal.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), t0, bh, n,
        static_cast<acc_t>(threshold), static_cast<acc_t>(lens));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace naca::cuda

TORCH_LIBRARY_IMPL(naca, CUDA, m) {
  m.impl("naca_snn_update_", &naca::naca_snn_update<naca::cuda::snn_delta>);
}
