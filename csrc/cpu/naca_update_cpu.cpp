// CPU: the fused NACA hidden-layer delta f(NL) * act'(preact), and the
// naca_hidden_update_ / naca_conv_update_ ops built on it.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../update_ops.h"
#include "elementwise.h"

namespace naca::cpu {

at::Tensor modulated_delta(const at::Tensor& preact, const at::Tensor& labels,
                           const at::Tensor& ni, const at::Tensor& slots, Activation act,
                           bool from_output, double lam, double theta) {
  const int64_t batch = preact.size(0);
  const int64_t features = batch == 0 ? 0 : preact.numel() / batch;
  auto out = grad_source(preact, act, from_output);  // overwritten in place by the delta
  const int64_t* y = labels.const_data_ptr<int64_t>();
  const int64_t* k = slots.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(preact.scalar_type(), "naca_modulated_delta_cpu", [&] {
    const scalar_t* w = ni.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    // phi' comes from u = act(z): the caller's tensor, or ATen's result in `out`.
    const scalar_t* u = from_output ? preact.const_data_ptr<scalar_t>() : o;
    const auto l = static_cast<scalar_t>(lam);
    const auto th = static_cast<scalar_t>(theta);
    dispatch_activation(act, [&](auto tag) {
      constexpr Activation A = decltype(tag)::value;
      for_rows(batch, features, [&](int64_t b, int64_t j0, int64_t j1, int64_t off) {
        const scalar_t* __restrict__ lo = w + k[y[b]] * features;
        const scalar_t* __restrict__ hi = lo + features;
        scalar_t* ob = o + off;
        const scalar_t* ub = u + off;
        for (int64_t j = j0; j < j1; ++j) {
          const scalar_t nl = neuromodulator_level(lo[j], hi[j]);
          ob[j] = modulation_select(nl, l, th) * finish_grad<A>(ub[j]);
        }
      });
    });
  });
  return out;
}

}  // namespace naca::cpu

TORCH_LIBRARY_IMPL(naca, CPU, m) {
  m.impl("naca_hidden_update_", &naca::naca_hidden_update<naca::cpu::modulated_delta>);
  m.impl("naca_conv_update_", &naca::naca_conv_update<naca::cpu::modulated_delta>);
}
