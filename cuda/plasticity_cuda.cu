// CUDA: signal * act'(preact), and the plasticity_update_ / conv_plasticity_update_ ops.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "update_ops.h"
#include "launch.cuh"

namespace naca::cuda {

template <typename scalar_t>
__global__ void activation_delta_kernel(const scalar_t* __restrict__ z,
                                        const scalar_t* __restrict__ s, scalar_t* __restrict__ o,
                                        int64_t n, Activation act, bool from_output) {
  using acc_t = at::opmath_type<scalar_t>;
  NACA_GRID_STRIDE(i, n) {
    o[i] = static_cast<scalar_t>(static_cast<acc_t>(s[i]) *
                                 activation_grad(static_cast<acc_t>(z[i]), act, from_output));
  }
}

at::Tensor activation_delta(const at::Tensor& preact, const at::Tensor& signal, Activation act,
                            bool from_output) {
  const c10::cuda::CUDAGuard guard(preact.device());
  auto out = at::empty_like(preact);
  const int64_t n = preact.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, preact.scalar_type(),
                                  "naca_activation_delta_cuda", [&] {
    activation_delta_kernel<scalar_t>
        <<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            preact.const_data_ptr<scalar_t>(), signal.const_data_ptr<scalar_t>(),
            out.mutable_data_ptr<scalar_t>(), n, act, from_output);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace naca::cuda

TORCH_LIBRARY_IMPL(naca, CUDA, m) {
  m.impl("plasticity_update_", &naca::plasticity_update<naca::cuda::activation_delta>);
  m.impl("conv_plasticity_update_", &naca::conv_plasticity_update<naca::cuda::activation_delta>);
}
