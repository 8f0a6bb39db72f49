// CPU: signal * act'(preact), and the plasticity_update_ / conv_plasticity_update_ ops.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../update_ops.h"
#include "elementwise.h"

namespace naca::cpu {

at::Tensor activation_delta(const at::Tensor& preact, const at::Tensor& signal, Activation act,
                            bool from_output) {
  auto out = grad_source(preact, act, from_output);  // overwritten in place by the delta
  AT_DISPATCH_FLOATING_TYPES(preact.scalar_type(), "naca_activation_delta_cpu", [&] {
    const scalar_t* __restrict__ s = signal.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    // phi' comes from u = act(z): the caller's tensor, or ATen's result in `out`.
    const scalar_t* u = from_output ? preact.const_data_ptr<scalar_t>() : o;
    dispatch_activation(act, [&](auto tag) {
      constexpr Activation A = decltype(tag)::value;
      at::parallel_for(0, preact.numel(), kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) o[i] = s[i] * activation_grad_from_output<A>(u[i]);
      });
    });
  });
  return out;
}

}  // namespace naca::cpu

TORCH_LIBRARY_IMPL(naca, CPU, m) {
  m.impl("plasticity_update_", &naca::plasticity_update<naca::cpu::activation_delta>);
  m.impl("conv_plasticity_update_", &naca::conv_plasticity_update<naca::cpu::activation_delta>);
}
