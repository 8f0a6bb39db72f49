// CPU: the modulation curve f, elementwise.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../update_ops.h"
#include "elementwise.h"

namespace naca::cpu {

at::Tensor modulation(const at::Tensor& level, double lam, double theta) {
  auto out = at::empty_like(level);
  AT_DISPATCH_FLOATING_TYPES(level.scalar_type(), "naca_modulation_cpu", [&] {
    const scalar_t* x = level.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const auto l = static_cast<scalar_t>(lam);
    const auto th = static_cast<scalar_t>(theta);
    at::parallel_for(0, level.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) o[i] = modulation_select(x[i], l, th);
    });
  });
  return out;
}

}  // namespace naca::cpu

TORCH_LIBRARY_IMPL(naca, CPU, m) {
  m.impl("modulation", &naca::modulation_op<naca::cpu::modulation>);
}
