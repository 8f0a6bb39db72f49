// CPU: the fused multi-step LIF scan and the lif_forward op. One task per
// (b, n) neuron runs all T steps, as one CUDA thread does.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../snn_ops.h"

namespace naca::cpu {

std::tuple<at::Tensor, at::Tensor> lif_scan(const at::Tensor& current, const at::Tensor& v0,
                                            const at::Tensor& s0, double decay, double threshold,
                                            bool soft_reset) {
  auto spikes = at::empty_like(current);
  auto volts = at::empty_like(current);
  const int64_t steps = current.size(0), n = current.size(1) * current.size(2);
  AT_DISPATCH_FLOATING_TYPES(current.scalar_type(), "naca_lif_scan_cpu", [&] {
    const scalar_t* in = current.const_data_ptr<scalar_t>();
    const scalar_t* vi = v0.const_data_ptr<scalar_t>();
    const scalar_t* si = s0.const_data_ptr<scalar_t>();
    scalar_t* so = spikes.mutable_data_ptr<scalar_t>();
    scalar_t* vo = volts.mutable_data_ptr<scalar_t>();
    const auto dec = static_cast<scalar_t>(decay);
    const auto th = static_cast<scalar_t>(threshold);
    at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        scalar_t v = vi[j], s = si[j];
        for (int64_t t = 0; t < steps; ++t) {
          v = lif_voltage(v, s, in[t * n + j], dec, th, soft_reset);
          s = lif_spike(v, th);
          vo[t * n + j] = v;
          so[t * n + j] = s;
        }
      }
    });
  });
  return {spikes, volts};
}

}  // namespace naca::cpu

TORCH_LIBRARY_IMPL(naca, CPU, m) {
  m.impl("lif_forward", &naca::lif_forward<naca::cpu::lif_scan>);
}
