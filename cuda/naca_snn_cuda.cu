// CUDA: the NACA-SNN eligibility deltas (one fused kernel each) and the
// naca_snn_update_ and naca_snn_chain_update_ ops (then one GEMM over T * B rows).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "snn_ops.h"
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

// One thread per (b, h) neuron walks back over T with g = dL/dV_t in a register;
// at each step a warp reads and writes consecutive neurons (coalesced).
template <typename scalar_t>
__global__ void snn_chain_delta_kernel(const scalar_t* __restrict__ v, const scalar_t* __restrict__ s,
                                       const scalar_t* __restrict__ sig, scalar_t* __restrict__ o,
                                       int64_t steps, int64_t bh, at::opmath_type<scalar_t> decay,
                                       at::opmath_type<scalar_t> th, at::opmath_type<scalar_t> lens,
                                       bool soft_reset, bool sigmoid_current) {
  using acc_t = at::opmath_type<scalar_t>;
  NACA_GRID_STRIDE(j, bh) {
    auto at_t = [&](const scalar_t* base, int64_t t) {
      return t < 0 ? acc_t(0) : static_cast<acc_t>(base[t * bh + j]);
    };
    acc_t vt = at_t(v, steps - 1), vp = at_t(v, steps - 2);
    acc_t sp = at_t(s, steps - 2), spp = at_t(s, steps - 3);
    acc_t g = static_cast<acc_t>(sig[j]) * snn_eligibility(vt, sp, th, lens);
    for (int64_t t = steps - 1; t >= 0; --t) {
      const acc_t cur = lif_current(vt, vp, sp, decay, th, soft_reset);
      o[t * bh + j] = static_cast<scalar_t>(g * current_grad(cur, sigmoid_current));
      if (t == 0) break;
      g *= lif_chain(vp, sp, snn_eligibility(vp, spp, th, lens), decay, th, soft_reset);
      vt = vp;
      sp = spp;
      vp = at_t(v, t - 2);
      spp = at_t(s, t - 3);
    }
  }
}

at::Tensor snn_chain_delta(const at::Tensor& voltages, const at::Tensor& spikes,
                           const at::Tensor& signal, double decay, double threshold, double lens,
                           bool soft_reset, bool sigmoid_current) {
  const c10::cuda::CUDAGuard guard(voltages.device());
  const int64_t steps = voltages.size(0), bh = voltages.size(1) * voltages.size(2);
  auto out = at::empty_like(voltages);
  if (bh == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, voltages.scalar_type(),
                                  "naca_snn_chain_delta_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    snn_chain_delta_kernel<scalar_t><<<blocks_for(bh), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        voltages.const_data_ptr<scalar_t>(), spikes.const_data_ptr<scalar_t>(),
        signal.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), steps, bh,
        static_cast<acc_t>(decay), static_cast<acc_t>(threshold), static_cast<acc_t>(lens),
        soft_reset, sigmoid_current);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace naca::cuda

TORCH_LIBRARY_IMPL(naca, CUDA, m) {
  m.impl("naca_snn_update_", &naca::naca_snn_update<naca::cuda::snn_delta>);
  m.impl("naca_snn_chain_update_", &naca::naca_snn_chain_update<naca::cuda::snn_chain_delta>);
}
