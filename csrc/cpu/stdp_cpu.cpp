// CPU: STDP's post-side factors, the soft-bounded weight step, and the stdp_update_ op.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>

#include "../snn_ops.h"
#include "elementwise.h"

namespace naca::cpu {

constexpr int64_t kBlock = 1024;  // neurons per block, stepped through time together

// Per (b, h): the forward trace F of the post spikes (decay_post), written to its
// slot for every t, then the backward trace G (decay_pre), stepped from t = T - 1
// down, which finishes each t's factor(s) (naca_math.h, stdp_factor).
template <typename scalar_t, bool kSplit, bool kMod>
void stdp_factors_rows(const scalar_t* __restrict__ s, const scalar_t* __restrict__ m,
                       scalar_t* __restrict__ o, int64_t steps, int64_t batch, int64_t h,
                       scalar_t dp, scalar_t dq, scalar_t ap, scalar_t am) {
  const int64_t n = batch * h, width = kSplit ? 2 * h : h;
  for_rows(batch, h, [&](int64_t b, int64_t c0, int64_t c1, int64_t off) {
    for (int64_t k0 = c0; k0 < c1; k0 += kBlock) {
      const int64_t len = std::min(c1, k0 + kBlock) - k0;
      const scalar_t* __restrict__ sb = s + off + k0;              // post_t at t = 0
      const scalar_t* __restrict__ mb = kMod ? m + off + k0 : nullptr;
      scalar_t* __restrict__ gb = o + b * width + k0;              // m G (split) slot
      scalar_t* __restrict__ fb = gb + (kSplit ? h : 0);           // F slot
      for (int64_t k = 0; k < len; ++k) fb[k] = trace_step(scalar_t(0), sb[k], dq);
      for (int64_t t = 1; t < steps; ++t) {
        const scalar_t* __restrict__ st = sb + t * n;
        const scalar_t* __restrict__ fp = fb + (t - 1) * width * batch;
        scalar_t* __restrict__ ft = fb + t * width * batch;
        for (int64_t k = 0; k < len; ++k) ft[k] = trace_step(fp[k], st[k], dq);
      }
      scalar_t g[kBlock] = {};
      for (int64_t t = steps - 1; t >= 0; --t) {
        const scalar_t* __restrict__ st = sb + t * n;
        scalar_t* __restrict__ ft = fb + t * width * batch;
        scalar_t* __restrict__ gt = gb + t * width * batch;
        for (int64_t k = 0; k < len; ++k) {
          g[k] = trace_step(g[k], st[k], dp);
          const scalar_t mk = kMod ? mb[k] : scalar_t(1);
          if constexpr (kSplit) {
            gt[k] = g[k];
            stdp_split_factors(gt[k], ft[k], mk);
          } else {
            ft[k] = stdp_factor(g[k], ft[k], mk, ap, am);
          }
        }
      }
    }
  });
}

at::Tensor stdp_factors(const at::Tensor& post, const at::Tensor& mod, double decay_pre,
                        double decay_post, double a_plus, double a_minus, bool split) {
  const int64_t steps = post.size(0), batch = post.size(1), h = post.size(2);
  auto out = at::empty({steps, batch, split ? 2 * h : h}, post.options());
  AT_DISPATCH_FLOATING_TYPES(post.scalar_type(), "naca_stdp_factors_cpu", [&] {
    const scalar_t* s = post.const_data_ptr<scalar_t>();
    const scalar_t* m = mod.defined() ? mod.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const auto dp = static_cast<scalar_t>(decay_pre), dq = static_cast<scalar_t>(decay_post);
    const auto ap = static_cast<scalar_t>(a_plus), am = static_cast<scalar_t>(a_minus);
    auto run = [&](auto split_c, auto mod_c) {
      stdp_factors_rows<scalar_t, decltype(split_c)::value, decltype(mod_c)::value>(
          s, m, o, steps, batch, h, dp, dq, ap, am);
    };
    using T = std::true_type;
    using F = std::false_type;
    if (split) {
      m ? run(T{}, T{}) : run(T{}, F{});
    } else {
      m ? run(F{}, T{}) : run(F{}, F{});
    }
  });
  return out;
}

void stdp_apply(at::Tensor& weight, const at::Tensor& ltp, const at::Tensor& ltd, double a_plus,
                double a_minus, double lr, double w_min, double w_max, Bound bound) {
  const auto p = ltp.contiguous(), d = ltd.contiguous();
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "naca_stdp_apply_cpu", [&] {
    scalar_t* w = weight.mutable_data_ptr<scalar_t>();
    const scalar_t* pp = p.const_data_ptr<scalar_t>();
    const scalar_t* dd = d.const_data_ptr<scalar_t>();
    const auto ap = static_cast<scalar_t>(a_plus), am = static_cast<scalar_t>(a_minus);
    const auto l = static_cast<scalar_t>(lr);
    const auto lo = static_cast<scalar_t>(w_min), hi = static_cast<scalar_t>(w_max);
    at::parallel_for(0, weight.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) w[k] = stdp_weight(w[k], pp[k], dd[k], ap, am, l, lo, hi, bound);
    });
  });
}

}  // namespace naca::cpu

TORCH_LIBRARY_IMPL(naca, CPU, m) {
  m.impl("stdp_update_", &naca::stdp_update<naca::cpu::stdp_factors, naca::cpu::stdp_apply>);
}
