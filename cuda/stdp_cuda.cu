// CUDA: STDP's post-side factors (one launch, a thread per (b, h) looping over
// T twice), the soft-bounded weight step (elementwise), and the stdp_update_ op.
// A GEMM over T * B rows (snn_ops.h) does the sum over time and batch: faster
// than a per-(h, i) loop over T and B, which would re-read the spike trains
// H * I times.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "snn_ops.h"
#include "launch.cuh"

namespace naca::cuda {

// A thread per (b, h): the forward post trace F (decay_post) into its slot for
// every t, then the backward trace G (decay_pre) from t = T - 1 down, which
// finishes each t's factor(s) (naca_math.h, stdp_factor). Traces in the op-math
// type; the F slot holds F in scalar_t between the two passes.
template <typename scalar_t, bool kSplit>
__global__ void stdp_factors_kernel(const scalar_t* __restrict__ s, const scalar_t* __restrict__ m,
                                    scalar_t* __restrict__ o, int64_t steps, int64_t batch,
                                    int64_t h, at::opmath_type<scalar_t> dp,
                                    at::opmath_type<scalar_t> dq, at::opmath_type<scalar_t> ap,
                                    at::opmath_type<scalar_t> am) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = batch * h, width = kSplit ? 2 * h : h, row = batch * width;
  NACA_GRID_STRIDE(j, n) {
    const int64_t b = j / h, c = j - b * h;
    scalar_t* g_slot = o + b * width + c;
    scalar_t* f_slot = g_slot + (kSplit ? h : 0);
    acc_t f = 0;
    for (int64_t t = 0; t < steps; ++t) {
      f = trace_step(f, static_cast<acc_t>(s[t * n + j]), dq);
      f_slot[t * row] = static_cast<scalar_t>(f);
    }
    const acc_t mk = m ? static_cast<acc_t>(m[j]) : acc_t(1);
    acc_t g = 0;
    for (int64_t t = steps - 1; t >= 0; --t) {
      g = trace_step(g, static_cast<acc_t>(s[t * n + j]), dp);
      acc_t ft = static_cast<acc_t>(f_slot[t * row]);
      if constexpr (kSplit) {
        acc_t gt = g;
        stdp_split_factors(gt, ft, mk);
        g_slot[t * row] = static_cast<scalar_t>(gt);
        f_slot[t * row] = static_cast<scalar_t>(ft);
      } else {
        f_slot[t * row] = static_cast<scalar_t>(stdp_factor(g, ft, mk, ap, am));
      }
    }
  }
}

at::Tensor stdp_factors(const at::Tensor& post, const at::Tensor& mod, double decay_pre,
                        double decay_post, double a_plus, double a_minus, bool split) {
  const c10::cuda::CUDAGuard guard(post.device());
  const int64_t steps = post.size(0), batch = post.size(1), h = post.size(2);
  auto out = at::empty({steps, batch, split ? 2 * h : h}, post.options());
  const int64_t n = batch * h;
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, post.scalar_type(),
                                  "naca_stdp_factors_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* m = mod.defined() ? mod.const_data_ptr<scalar_t>() : nullptr;
    const auto launch = [&](auto kernel) {
      kernel<<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          post.const_data_ptr<scalar_t>(), m, out.mutable_data_ptr<scalar_t>(), steps, batch, h,
          static_cast<acc_t>(decay_pre), static_cast<acc_t>(decay_post),
          static_cast<acc_t>(a_plus), static_cast<acc_t>(a_minus));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    split ? launch(stdp_factors_kernel<scalar_t, true>) : launch(stdp_factors_kernel<scalar_t, false>);
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
  m.impl("stdp_update_", &naca::stdp_update<naca::cuda::stdp_factors, naca::cuda::stdp_apply>);
}
