// CUDA: spike traces (one launch, a thread per (b, n) looping over T), the
// bounded STDP weight step (elementwise), and the stdp_update_ op. Between
// them, two GEMMs over T * B rows (snn_ops.h) do the sum over time and batch:
// faster than a per-(h, i) loop over T and B, which would re-read the spike
// trains H * I times.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "../csrc/snn_ops.h"
#include "launch.cuh"

namespace naca::cuda {

template <typename scalar_t>
__global__ void traces_kernel(const scalar_t* __restrict__ s, scalar_t* __restrict__ o,
                              int64_t steps, int64_t n, at::opmath_type<scalar_t> decay) {
  using acc_t = at::opmath_type<scalar_t>;
  NACA_GRID_STRIDE(j, n) {
    acc_t x = 0;
    for (int64_t t = 0; t < steps; ++t) {
      x = trace_step(x, static_cast<acc_t>(s[t * n + j]), decay);
      o[t * n + j] = static_cast<scalar_t>(x);
    }
  }
}

at::Tensor spike_traces(const at::Tensor& spikes, double decay) {
  const c10::cuda::CUDAGuard guard(spikes.device());
  auto out = at::empty_like(spikes);
  const int64_t steps = spikes.size(0), n = spikes.size(1) * spikes.size(2);
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, spikes.scalar_type(),
                                  "naca_spike_traces_cuda", [&] {
    traces_kernel<scalar_t><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        spikes.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), steps, n,
        static_cast<at::opmath_type<scalar_t>>(decay));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

template <typename scalar_t>
__global__ void stdp_apply_kernel(scalar_t* __restrict__ w, const scalar_t* __restrict__ p,
                                  const scalar_t* __restrict__ d, int64_t n,
                                  at::opmath_type<scalar_t> ap, at::opmath_type<scalar_t> am,
                                  at::opmath_type<scalar_t> lr, at::opmath_type<scalar_t> lo,
                                  at::opmath_type<scalar_t> hi, Bound bound) {
  using acc_t = at::opmath_type<scalar_t>;
  NACA_GRID_STRIDE(k, n) {
    w[k] = static_cast<scalar_t>(stdp_weight(static_cast<acc_t>(w[k]), static_cast<acc_t>(p[k]),
                                             static_cast<acc_t>(d[k]), ap, am, lr, lo, hi, bound));
  }
}

void stdp_apply(at::Tensor& weight, const at::Tensor& ltp, const at::Tensor& ltd, double a_plus,
                double a_minus, double lr, double w_min, double w_max, Bound bound) {
  const c10::cuda::CUDAGuard guard(weight.device());
  const auto p = ltp.contiguous(), d = ltd.contiguous();
  const int64_t n = weight.numel();
  if (n == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weight.scalar_type(),
                                  "naca_stdp_apply_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    stdp_apply_kernel<scalar_t><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        weight.mutable_data_ptr<scalar_t>(), p.const_data_ptr<scalar_t>(),
        d.const_data_ptr<scalar_t>(), n, static_cast<acc_t>(a_plus), static_cast<acc_t>(a_minus),
        static_cast<acc_t>(lr), static_cast<acc_t>(w_min), static_cast<acc_t>(w_max), bound);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace naca::cuda

TORCH_LIBRARY_IMPL(naca, CUDA, m) {
  m.impl("stdp_update_", &naca::stdp_update<naca::cuda::spike_traces, naca::cuda::stdp_apply>);
}
