// CUDA: the fused NACA hidden-layer delta f(NL) * act'(preact), read straight
// from labels, NI and the pre-activation (NL and f(NL) are never stored), and
// the naca_hidden_update_ / naca_conv_update_ ops built on it.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "update_ops.h"
#include "launch.cuh"

namespace naca::cuda {

// A 2D grid: blockIdx.y walks the samples (so the NI row of a sample's class
// is found once per row, with no per-element integer division), blockIdx.x
// and the threads walk the features. A label outside [0, classes) (possible only
// when the op was told not to check them) gives its sample a zero delta; the
// test is uniform over a block (one row).
template <typename scalar_t>
__global__ void modulated_delta_kernel(const scalar_t* __restrict__ z,
                                       const int64_t* __restrict__ y,
                                       const scalar_t* __restrict__ ni,
                                       const int64_t* __restrict__ k, scalar_t* __restrict__ o,
                                       int64_t batch, int64_t features, int64_t classes,
                                       Activation act,
                                       bool from_output, at::opmath_type<scalar_t> lam,
                                       at::opmath_type<scalar_t> theta) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const int64_t c = y[b];
    const int64_t off = b * features;
    if (!label_in_range(c, classes)) {
      for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < features;
           j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        o[off + j] = scalar_t(0);
      }
      continue;
    }
    const scalar_t* lo = ni + k[c] * features;
    const scalar_t* hi = lo + features;
    for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < features;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const acc_t nl = neuromodulator_level<acc_t>(lo[j], hi[j]);
      o[off + j] = static_cast<scalar_t>(naca::modulation(nl, lam, theta) *
                                         activation_grad(static_cast<acc_t>(z[off + j]), act,
                                                         from_output));
    }
  }
}

at::Tensor modulated_delta(const at::Tensor& preact, const at::Tensor& labels,
                           const at::Tensor& ni, const at::Tensor& slots, Activation act,
                           bool from_output, double lam, double theta) {
  const c10::cuda::CUDAGuard guard(preact.device());
  auto out = at::empty_like(preact);
  const int64_t batch = preact.size(0);
  const int64_t features = batch == 0 ? 0 : preact.numel() / batch;
  if (preact.numel() == 0) return out;
  // About 32 blocks per SM in all, at least one per 256 features of a row.
  const int64_t target =
      32 * static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
  const int64_t bx = std::min<int64_t>((features + kThreads - 1) / kThreads, target);
  const int64_t by = std::clamp<int64_t>(target / bx, 1, std::min<int64_t>(batch, 65535));
  const dim3 grid(static_cast<unsigned>(bx), static_cast<unsigned>(by));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, preact.scalar_type(),
                                  "naca_modulated_delta_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    modulated_delta_kernel<scalar_t><<<grid, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            preact.const_data_ptr<scalar_t>(), labels.const_data_ptr<int64_t>(),
            ni.const_data_ptr<scalar_t>(), slots.const_data_ptr<int64_t>(),
            out.mutable_data_ptr<scalar_t>(), batch, features, slots.numel(), act, from_output,
            static_cast<acc_t>(lam),
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
