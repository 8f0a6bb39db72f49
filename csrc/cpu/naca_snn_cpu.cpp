// CPU: the NACA-SNN eligibility deltas and the naca_snn_update_ and
// naca_snn_chain_update_ ops.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../snn_ops.h"
#include "elementwise.h"

#include <algorithm>
#include <vector>

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
      const scalar_t* vt = v + t * bh;
      scalar_t* ot = o + off;
      if (t == 0) {  // s_{-1} = 0
        for (int64_t j = j0; j < j1; ++j) ot[j] = sig[j] * snn_eligibility(vt[j], scalar_t(0), th, ln);
        return;
      }
      const scalar_t* sp = s + (t - 1) * bh;
      for (int64_t j = j0; j < j1; ++j) ot[j] = sig[j] * snn_eligibility(vt[j], sp[j], th, ln);
    });
  });
  return out;
}

constexpr int64_t kChainBlock = 2048;  // neurons per block: g and a zero row fit in L1/L2

at::Tensor snn_chain_delta(const at::Tensor& voltages, const at::Tensor& spikes,
                           const at::Tensor& signal, double decay, double threshold, double lens,
                           bool soft_reset, bool sigmoid_current) {
  const int64_t steps = voltages.size(0), bh = voltages.size(1) * voltages.size(2);
  auto out = at::empty_like(voltages);
  AT_DISPATCH_FLOATING_TYPES(voltages.scalar_type(), "naca_snn_chain_delta_cpu", [&] {
    const scalar_t* v = voltages.const_data_ptr<scalar_t>();
    const scalar_t* s = spikes.const_data_ptr<scalar_t>();
    const scalar_t* sig = signal.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const auto dec = static_cast<scalar_t>(decay);
    const auto th = static_cast<scalar_t>(threshold);
    const auto ln = static_cast<scalar_t>(lens);
    // Reverse time over a block of neurons: g (dL/dV_t) stays in a small buffer
    // and steps t, t - 1, t - 2 of the block are in cache together.
    at::parallel_for(0, bh, kChainBlock, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> g(static_cast<size_t>(std::min(kChainBlock, end - begin)));
      const std::vector<scalar_t> zero(g.size(), scalar_t(0));  // V_{-1}, s_{-1}, s_{-2}
      for (int64_t j0 = begin; j0 < end; j0 += kChainBlock) {
        const int64_t n = std::min(end, j0 + kChainBlock) - j0;
        scalar_t* gb = g.data();
        auto row = [&](const scalar_t* base, int64_t t) { return t < 0 ? zero.data() : base + t * bh + j0; };
        {
          const scalar_t* vt = row(v, steps - 1);
          const scalar_t* sp = row(s, steps - 2);
          const scalar_t* gs = sig + j0;
          for (int64_t j = 0; j < n; ++j) gb[j] = gs[j] * snn_eligibility(vt[j], sp[j], th, ln);
        }
        for (int64_t t = steps - 1; t >= 0; --t) {
          const scalar_t* vt = row(v, t);
          const scalar_t* vp = row(v, t - 1);
          const scalar_t* sp = row(s, t - 1);
          const scalar_t* spp = row(s, t - 2);
          scalar_t* ot = o + t * bh + j0;
          for (int64_t j = 0; j < n; ++j) {
            const scalar_t cur = lif_current(vt[j], vp[j], sp[j], dec, th, soft_reset);
            ot[j] = gb[j] * current_grad(cur, sigmoid_current);
          }
          if (t == 0) break;
          for (int64_t j = 0; j < n; ++j) {
            gb[j] *= lif_chain(vp[j], sp[j], snn_eligibility(vp[j], spp[j], th, ln), dec, th, soft_reset);
          }
        }
      }
    });
  });
  return out;
}

}  // namespace naca::cpu

TORCH_LIBRARY_IMPL(naca, CPU, m) {
  m.impl("naca_snn_update_", &naca::naca_snn_update<naca::cpu::snn_delta>);
  m.impl("naca_snn_chain_update_", &naca::naca_snn_chain_update<naca::cpu::snn_chain_delta>);
}
