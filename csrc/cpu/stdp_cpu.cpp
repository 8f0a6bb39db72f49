// CPU: spike traces, the bounded STDP weight step, and the stdp_update_ op.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../snn_ops.h"

namespace naca::cpu {

constexpr int64_t kBlock = 2048;  // neurons per block, stepped through time together

at::Tensor spike_traces(const at::Tensor& spikes, double decay) {
  auto out = at::empty_like(spikes);
  const int64_t steps = spikes.size(0), n = spikes.size(1) * spikes.size(2);
  AT_DISPATCH_FLOATING_TYPES(spikes.scalar_type(), "naca_spike_traces_cpu", [&] {
    const scalar_t* s = spikes.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const auto dec = static_cast<scalar_t>(decay);
    at::parallel_for(0, n, kBlock, [&](int64_t begin, int64_t end) {
      for (int64_t j0 = begin; j0 < end; j0 += kBlock) {
        const int64_t j1 = std::min(end, j0 + kBlock);
        for (int64_t j = j0; j < j1; ++j) o[j] = trace_step(scalar_t(0), s[j], dec);
        for (int64_t t = 1; t < steps; ++t) {
          const scalar_t* prev = o + (t - 1) * n;
          const scalar_t* st = s + t * n;
          scalar_t* ot = o + t * n;
          for (int64_t j = j0; j < j1; ++j) ot[j] = trace_step(prev[j], st[j], dec);
        }
      }
    });
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
    at::parallel_for(0, weight.numel(), 4096, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) w[k] = stdp_weight(w[k], pp[k], dd[k], ap, am, l, lo, hi, bound);
    });
  });
}

}  // namespace naca::cpu

TORCH_LIBRARY_IMPL(naca, CPU, m) {
  m.impl("stdp_update_", &naca::stdp_update<naca::cpu::spike_traces, naca::cpu::stdp_apply>);
}
