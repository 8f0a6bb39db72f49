// CUDA: NL = E[labels] @ NI, a gather of two NI rows per sample.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "update_ops.h"
#include "launch.cuh"

namespace naca::cuda {

template <typename scalar_t>
__global__ void neuromodulator_kernel(const int64_t* __restrict__ y,
                                      const scalar_t* __restrict__ ni,
                                      const int64_t* __restrict__ k, scalar_t* __restrict__ o,
                                      int64_t batch, int64_t features, int64_t classes) {
  using acc_t = at::opmath_type<scalar_t>;
  NACA_GRID_STRIDE(i, batch * features) {
    const int64_t b = i / features, j = i % features;
    const int64_t c = y[b];
    if (!label_in_range(c, classes)) {
      o[i] = scalar_t(0);
      continue;
    }
    const scalar_t* row = ni + k[c] * features;
    o[i] = static_cast<scalar_t>(neuromodulator_level<acc_t>(row[j], row[features + j]));
  }
}

at::Tensor neuromodulator(const at::Tensor& labels, const at::Tensor& ni, const at::Tensor& slots) {
  const c10::cuda::CUDAGuard guard(ni.device());
  const int64_t batch = labels.size(0), features = ni.size(1);
  auto out = at::empty({batch, features}, ni.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, ni.scalar_type(),
                                  "naca_neuromodulator_cuda", [&] {
    neuromodulator_kernel<scalar_t>
        <<<blocks_for(batch * features), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            labels.const_data_ptr<int64_t>(), ni.const_data_ptr<scalar_t>(),
            slots.const_data_ptr<int64_t>(), out.mutable_data_ptr<scalar_t>(), batch, features,
            slots.numel());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace naca::cuda

TORCH_LIBRARY_IMPL(naca, CUDA, m) {
  m.impl("neuromodulator", &naca::neuromodulator_op<naca::cuda::neuromodulator>);
}
