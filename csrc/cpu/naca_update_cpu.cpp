// CPU: the fused NACA hidden-layer delta f(NL) * act'(preact), and the
// naca_hidden_update_ / naca_conv_update_ ops built on it.
#include <ATen/Parallel.h>

#include <torch/library.h>

#include <c10/core/CPUAllocator.h>

#include <algorithm>

#include "../update_ops.h"
#include "elementwise.h"

namespace naca::cpu {

// f(NL) depends only on the sample's class and the unit, so when the batch has
// more samples than there are classes the curve is evaluated once per (class,
// unit) into a small table and the per-element work is one multiply (the
// curve's four pieces and divisions cost ~3x the rest of the delta).
// Bit-identical to evaluating it per element: the same products of the same
// two values.
// (Raw memory from torch's CPU allocator, not a tensor, which a small step cannot
// afford; unlike a plain new[], the allocator reports it to the memory profiler, so
// measured peaks include it.)
template <typename scalar_t>
c10::DataPtr modulation_table(const at::Tensor& ni, const int64_t* k, int64_t classes,
                              int64_t features, scalar_t lam, scalar_t theta) {
  c10::DataPtr table = c10::GetCPUAllocator()->allocate(classes * features * sizeof(scalar_t));
  const scalar_t* w = ni.const_data_ptr<scalar_t>();
  scalar_t* t = static_cast<scalar_t*>(table.get());
  for_rows(classes, features, [&](int64_t c, int64_t j0, int64_t j1, int64_t off) {
    const scalar_t* __restrict__ lo = w + k[c] * features;
    const scalar_t* __restrict__ hi = lo + features;
    scalar_t* __restrict__ tc = t + off;
    for (int64_t j = j0; j < j1; ++j) {
      tc[j] = naca::modulation(neuromodulator_level(lo[j], hi[j]), lam, theta);
    }
  });
  return table;
}

// A label outside [0, classes) (only possible when the op was told not to check
// them) gives its sample a zero delta.
at::Tensor modulated_delta(const at::Tensor& preact, const at::Tensor& labels,
                           const at::Tensor& ni, const at::Tensor& slots, Activation act,
                           bool from_output, double lam, double theta) {
  const int64_t batch = preact.size(0);
  const int64_t features = batch == 0 ? 0 : preact.numel() / batch;
  const int64_t classes = slots.numel();
  auto out = grad_source(preact, act, from_output);  // overwritten in place by the delta
  const int64_t* y = labels.const_data_ptr<int64_t>();
  const int64_t* k = slots.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(preact.scalar_type(), "naca_modulated_delta_cpu", [&] {
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    // phi' comes from u = act(z): the caller's tensor, or ATen's result in `out`.
    const scalar_t* u = from_output ? preact.const_data_ptr<scalar_t>() : o;
    const auto l = static_cast<scalar_t>(lam);
    const auto th = static_cast<scalar_t>(theta);
    dispatch_activation(act, [&](auto tag) {
      constexpr Activation A = decltype(tag)::value;
      if (batch > classes) {
        const auto table = modulation_table<scalar_t>(ni, k, classes, features, l, th);
        const scalar_t* f = static_cast<const scalar_t*>(table.get());
        for_rows(batch, features, [&](int64_t b, int64_t j0, int64_t j1, int64_t off) {
          scalar_t* ob = o + off;
          if (!label_in_range(y[b], classes)) return std::fill(ob + j0, ob + j1, scalar_t(0));
          const scalar_t* __restrict__ fb = f + y[b] * features;
          const scalar_t* ub = u + off;
          for (int64_t j = j0; j < j1; ++j) ob[j] = fb[j] * activation_grad_from_output<A>(ub[j]);
        });
        return;
      }
      const scalar_t* w = ni.const_data_ptr<scalar_t>();
      for_rows(batch, features, [&](int64_t b, int64_t j0, int64_t j1, int64_t off) {
        scalar_t* ob = o + off;
        if (!label_in_range(y[b], classes)) return std::fill(ob + j0, ob + j1, scalar_t(0));
        const scalar_t* __restrict__ lo = w + k[y[b]] * features;
        const scalar_t* __restrict__ hi = lo + features;
        const scalar_t* ub = u + off;
        for (int64_t j = j0; j < j1; ++j) {
          const scalar_t nl = neuromodulator_level(lo[j], hi[j]);
          ob[j] = naca::modulation(nl, l, th) * activation_grad_from_output<A>(ub[j]);
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
