// CPU: the NACA-SNN eligibility delta and the naca_snn_update_ op.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../snn_ops.h"
#include "elementwise.h"

namespace naca::cpu {

at::Tensor snn_delta(const at::Tensor& voltages, const at::Tensor& spikes, const at::Tensor& signal,
                     int64_t t0, double threshold, double lens) {
  const int64_t steps = voltages.size(0), bh = voltages.size(1) * voltages.size(2);
  auto out = at::empty({steps - t0, voltages.size(1), voltages.size(2)}, voltages.options());
  AT_DISPATCH_FLOATING_TYPES(voltages.scalar_type(), "naca_snn_delta_cpu", [&] {
    const scalar_t* v = voltages.const_data_ptr<scalar_t>();
    const scalar_t* s = spikes.const_data_ptr<scalar_t>();
    const scalar_t* sig = signal.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const auto th = static_cast<scalar_t>(threshold);
    const auto ln = static_cast<scalar_t>(lens);
    for_rows(steps - t0, bh, [&](int64_t r, int64_t j0, int64_t j1, int64_t off) {
      const int64_t t = t0 + r;
      // snn_eligibility, written with select so the loop vectorizes.
      const scalar_t* vt = v + t * bh;
      scalar_t* ot = o + off;
      if (t == 0) {
        for (int64_t j = j0; j < j1; ++j) ot[j] = sig[j] * select(vt[j] > th - ln, scalar_t(1), scalar_t(0));
        return;
      }
      const scalar_t* sp = s + (t - 1) * bh;
      for (int64_t j = j0; j < j1; ++j) ot[j] = sig[j] * (select(vt[j] > th - ln, scalar_t(1), scalar_t(0)) - sp[j]);
    });
  });
  return out;
}

}  // namespace naca::cpu

TORCH_LIBRARY_IMPL(naca, CPU, m) {
  m.impl("naca_snn_update_", &naca::naca_snn_update<naca::cpu::snn_delta>);
}
