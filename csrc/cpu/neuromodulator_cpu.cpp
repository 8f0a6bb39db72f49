// CPU: NL = E[labels] @ NI, a gather of two NI rows per sample.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../update_ops.h"

namespace naca::cpu {

at::Tensor neuromodulator(const at::Tensor& labels, const at::Tensor& ni, const at::Tensor& slots) {
  const int64_t batch = labels.size(0), features = ni.size(1);
  auto out = at::empty({batch, features}, ni.options());
  const int64_t* y = labels.const_data_ptr<int64_t>();
  const int64_t* k = slots.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(ni.scalar_type(), "naca_neuromodulator_cpu", [&] {
    const scalar_t* w = ni.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, batch * features, 2048, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t b = i / features, j = i % features;
        const scalar_t* row = w + k[y[b]] * features;
        o[i] = neuromodulator_level(row[j], row[features + j]);
      }
    });
  });
  return out;
}

}  // namespace naca::cpu

TORCH_LIBRARY_IMPL(naca, CPU, m) {
  m.impl("neuromodulator", &naca::neuromodulator_op<naca::cpu::neuromodulator>);
}
