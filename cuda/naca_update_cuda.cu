// CUDA: the fused NACA hidden-layer delta f(NL) * act'(preact), read straight
// from labels, NI and the pre-activation (NL and f(NL) are never stored), and
// the naca_hidden_update_ / naca_conv_update_ ops built on it.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "../csrc/update_ops.h"
#include "launch.cuh"

namespace naca::cuda {

template <typename scalar_t>
__global__ void modulated_delta_kernel(const scalar_t* __restrict__ z,
                                       const int64_t* __restrict__ y,
                                       const scalar_t* __restrict__ ni,
                                       const int64_t* __restrict__ k, scalar_t* __restrict__ o,
                                       int64_t batch, int64_t features, Activation act,
                                       at::opmath_type<scalar_t> lam,
                                       at::opmath_type<scalar_t> theta) {
  using acc_t = at::opmath_type<scalar_t>;
  NACA_GRID_STRIDE(i, batch * features) {
    const int64_t b = i / features, j = i % features;
    const scalar_t* row = ni + k[y[b]] * features;
    const acc_t nl = neuromodulator_level<acc_t>(row[j], row[features + j]);
    o[i] = static_cast<scalar_t>(naca::modulation(nl, lam, theta) *
                                 activation_grad(static_cast<acc_t>(z[i]), act));
  }
}

at::Tensor modulated_delta(const at::Tensor& preact, const at::Tensor& labels,
                           const at::Tensor& ni, const at::Tensor& slots, Activation act,
                           double lam, double theta) {
  const c10::cuda::CUDAGuard guard(preact.device());
  auto out = at::empty_like(preact);
  const int64_t batch = preact.size(0);
  const int64_t features = batch == 0 ? 0 : preact.numel() / batch;
  if (preact.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, preact.scalar_type(),
                                  "naca_modulated_delta_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    modulated_delta_kernel<scalar_t>
        <<<blocks_for(batch * features), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            preact.const_data_ptr<scalar_t>(), labels.const_data_ptr<int64_t>(),
            ni.const_data_ptr<scalar_t>(), slots.const_data_ptr<int64_t>(),
            out.mutable_data_ptr<scalar_t>(), batch, features, act, static_cast<acc_t>(lam),
            static_cast<acc_t>(theta));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace naca::cuda

TORCH_LIBRARY_IMPL(naca, CUDA, m) {
  m.impl("naca_hidden_update_", &naca::naca_hidden_update<naca::cuda::modulated_delta>);
  m.impl("naca_conv_update_", &naca::naca_conv_update<naca::cuda::modulated_delta>);
}
