// CPU: the fused multi-step LIF scan and the lif_forward op. Each task runs
// all T steps for a range of (b, n) neurons, as one CUDA thread does for one.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../snn_ops.h"
#include "elementwise.h"

namespace naca::cpu {

constexpr int64_t kLifBlock = 2048;  // neurons per block: a few arrays of them fit in L1/L2

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
    // Time-outer over blocks of neurons: the inner loop is contiguous and
    // vectorizes, and step t - 1 of the block is still in cache at step t.
    at::parallel_for(0, n, kLifBlock, [&](int64_t begin, int64_t end) {
      for (int64_t j0 = begin; j0 < end; j0 += kLifBlock) {
        const int64_t j1 = std::min(end, j0 + kLifBlock);
        for (int64_t t = 0; t < steps; ++t) {
          const scalar_t* vp = t == 0 ? vi : vo + (t - 1) * n;
          const scalar_t* sp = t == 0 ? si : so + (t - 1) * n;
          const scalar_t* it = in + t * n;
          scalar_t* vt = vo + t * n;
          scalar_t* st = so + t * n;
          for (int64_t j = j0; j < j1; ++j) {
            const scalar_t v = lif_voltage(vp[j], sp[j], it[j], dec, th, soft_reset);
            vt[j] = v;
            st[j] = lif_spike(v, th);
          }
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
