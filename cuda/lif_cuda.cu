// CUDA: the fused multi-step LIF scan and the lif_forward op. One launch for
// the whole sequence: one thread per (b, n) neuron keeps V and s in registers
// and loops over T; at each step the threads of a warp touch consecutive
// neurons, so every load and store is coalesced.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "snn_ops.h"
#include "launch.cuh"

namespace naca::cuda {

template <typename scalar_t>
__global__ void lif_scan_kernel(const scalar_t* __restrict__ in, const scalar_t* __restrict__ vi,
                                const scalar_t* __restrict__ si, scalar_t* __restrict__ so,
                                scalar_t* __restrict__ vo, int64_t steps, int64_t n,
                                at::opmath_type<scalar_t> decay, at::opmath_type<scalar_t> th,
                                bool soft_reset) {
  using acc_t = at::opmath_type<scalar_t>;
  NACA_GRID_STRIDE(j, n) {
    acc_t v = static_cast<acc_t>(vi[j]), s = static_cast<acc_t>(si[j]);
    for (int64_t t = 0; t < steps; ++t) {
      v = lif_voltage(v, s, static_cast<acc_t>(in[t * n + j]), decay, th, soft_reset);
      s = lif_spike(v, th);
      vo[t * n + j] = static_cast<scalar_t>(v);
      so[t * n + j] = static_cast<scalar_t>(s);
    }
  }
}

std::tuple<at::Tensor, at::Tensor> lif_scan(const at::Tensor& current, const at::Tensor& v0,
                                            const at::Tensor& s0, double decay, double threshold,
                                            bool soft_reset) {
  const c10::cuda::CUDAGuard guard(current.device());
  auto spikes = at::empty_like(current);
  auto volts = at::empty_like(current);
  const int64_t steps = current.size(0), n = current.size(1) * current.size(2);
  if (n == 0) return {spikes, volts};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, current.scalar_type(),
                                  "naca_lif_scan_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    lif_scan_kernel<scalar_t><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        current.const_data_ptr<scalar_t>(), v0.const_data_ptr<scalar_t>(),
        s0.const_data_ptr<scalar_t>(), spikes.mutable_data_ptr<scalar_t>(),
        volts.mutable_data_ptr<scalar_t>(), steps, n, static_cast<acc_t>(decay),
        static_cast<acc_t>(threshold), soft_reset);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {spikes, volts};
}

}  // namespace naca::cuda

TORCH_LIBRARY_IMPL(naca, CUDA, m) {
  m.impl("lif_forward", &naca::lif_forward<naca::cuda::lif_scan>);
}
