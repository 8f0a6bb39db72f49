// CPU: NL = E[labels] @ NI, a gather of two NI rows per sample.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../update_ops.h"
#include "elementwise.h"

namespace naca::cpu {

at::Tensor neuromodulator(const at::Tensor& labels, const at::Tensor& ni, const at::Tensor& slots) {
  const int64_t batch = labels.size(0), features = ni.size(1), classes = slots.numel();
  auto out = at::empty({batch, features}, ni.options());
  const int64_t* y = labels.const_data_ptr<int64_t>();
  const int64_t* k = slots.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(ni.scalar_type(), "naca_neuromodulator_cpu", [&] {
    const scalar_t* w = ni.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    for_rows(batch, features, [&](int64_t b, int64_t j0, int64_t j1, int64_t off) {
      scalar_t* __restrict__ ob = o + off;
      if (!label_in_range(y[b], classes)) return std::fill(ob + j0, ob + j1, scalar_t(0));
      const scalar_t* __restrict__ lo = w + k[y[b]] * features;
      const scalar_t* __restrict__ hi = lo + features;
      for (int64_t j = j0; j < j1; ++j) ob[j] = neuromodulator_level(lo[j], hi[j]);
    });
  });
  return out;
}

}  // namespace naca::cpu

TORCH_LIBRARY_IMPL(naca, CPU, m) {
  m.impl("neuromodulator", &naca::neuromodulator_op<naca::cpu::neuromodulator>);
}
