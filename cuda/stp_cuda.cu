// CUDA: the fused Tsodyks-Markram scan and the stp_forward op. One launch for
// the whole sequence: one thread per (b, n) synapse keeps u, x and I in
// registers and loops over T; every load and store is coalesced.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "snn_ops.h"
#include "launch.cuh"

namespace naca::cuda {

constexpr int kStpSteps = 4;  // steps whose spikes one thread loads at once

template <typename scalar_t>
__global__ void stp_scan_kernel(const scalar_t* __restrict__ in, scalar_t* __restrict__ out,
                                int64_t steps, int64_t n, at::opmath_type<scalar_t> U,
                                at::opmath_type<scalar_t> tau_f, at::opmath_type<scalar_t> tau_d,
                                at::opmath_type<scalar_t> tau_s, at::opmath_type<scalar_t> A) {
  using acc_t = at::opmath_type<scalar_t>;
  NACA_GRID_STRIDE(j, n) {
    acc_t u = 0, x = 1, cur = 0;
    // kStpSteps loads in flight per thread before the dependent math: one
    // load at a time leaves HBM bandwidth unused.
    int64_t t = 0;
    for (; t + kStpSteps <= steps; t += kStpSteps) {
      acc_t s[kStpSteps];
#pragma unroll
      for (int k = 0; k < kStpSteps; ++k) s[k] = static_cast<acc_t>(in[(t + k) * n + j]);
#pragma unroll
      for (int k = 0; k < kStpSteps; ++k) {
        stp_step(u, x, cur, s[k], U, tau_f, tau_d, tau_s, A);
        out[(t + k) * n + j] = static_cast<scalar_t>(cur);
      }
    }
    for (; t < steps; ++t) {
      stp_step(u, x, cur, static_cast<acc_t>(in[t * n + j]), U, tau_f, tau_d, tau_s, A);
      out[t * n + j] = static_cast<scalar_t>(cur);
    }
  }
}

at::Tensor stp_scan(const at::Tensor& spikes, double U, double tau_f, double tau_d,
                    double tau_s, double A) {
  const c10::cuda::CUDAGuard guard(spikes.device());
  auto out = at::empty_like(spikes);
  const int64_t steps = spikes.size(0), n = spikes.size(1) * spikes.size(2);
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, spikes.scalar_type(),
                                  "naca_stp_scan_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    stp_scan_kernel<scalar_t><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        spikes.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), steps, n,
        static_cast<acc_t>(U), static_cast<acc_t>(tau_f), static_cast<acc_t>(tau_d),
        static_cast<acc_t>(tau_s), static_cast<acc_t>(A));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace naca::cuda

TORCH_LIBRARY_IMPL(naca, CUDA, m) {
  m.impl("stp_forward", &naca::stp_forward<naca::cuda::stp_scan>);
}
