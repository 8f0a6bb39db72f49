// CUDA: the NACA output layer's delta (sigmoid(z) - onehot(y)) * sigmoid'(z), and the
// naca_output_update_ op built on it.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "update_ops.h"
#include "launch.cuh"

namespace naca::cuda {

// One thread per logit (B x N is small: N classes); a row whose label is outside
// [0, N) (possible only unchecked) is zero.
template <typename scalar_t>
__global__ void output_delta_kernel(const scalar_t* __restrict__ z, const int64_t* __restrict__ y,
                                    scalar_t* __restrict__ o, int64_t n, int64_t classes,
                                    bool sigmoid_grad) {
  using acc_t = at::opmath_type<scalar_t>;
  NACA_GRID_STRIDE(i, n) {
    const int64_t b = i / classes, j = i - b * classes;
    const int64_t c = y[b];
    if (!label_in_range(c, classes)) {
      o[i] = scalar_t(0);
      continue;
    }
    const acc_t s = naca::sigmoid(static_cast<acc_t>(z[i]));
    o[i] = static_cast<scalar_t>(naca::output_delta(s, j == c, sigmoid_grad));
  }
}

at::Tensor output_delta(const at::Tensor& logits, const at::Tensor& labels, bool sigmoid_grad) {
  const c10::cuda::CUDAGuard guard(logits.device());
  auto out = at::empty_like(logits);
  const int64_t n = logits.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(),
                                  "naca_output_delta_cuda", [&] {
    output_delta_kernel<scalar_t><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        logits.const_data_ptr<scalar_t>(), labels.const_data_ptr<int64_t>(),
        out.mutable_data_ptr<scalar_t>(), n, logits.size(1), sigmoid_grad);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace naca::cuda

TORCH_LIBRARY_IMPL(naca, CUDA, m) {
  m.impl("naca_output_update_", &naca::naca_output_update<naca::cuda::output_delta>);
}
