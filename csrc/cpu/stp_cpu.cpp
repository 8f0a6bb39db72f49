// CPU: the fused Tsodyks-Markram scan and the stp_forward op. Each task runs
// all T steps for a range of (b, n) synapses, as one CUDA thread does for one.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../snn_ops.h"
#include "elementwise.h"

namespace naca::cpu {

constexpr int64_t kStpBlock = 1024;  // synapses per block: u, x, I of a block stay in L1

template <typename T>
struct StpParams {
  T U, tau_f, tau_d, tau_s, A;
};

// All T steps of the synapses [0, len) of a block; in and out point at the
// block's first synapse of step 0, consecutive steps are n apart. Time-outer:
// the inner loop is contiguous and vectorizes, and the block's state lives in
// `state`, 3 * kStpBlock values (the caller's, so that this inlines into the clones).
template <typename T>
inline void stp_block(const T* in, T* out, int64_t steps, int64_t n, int64_t len,
                      const StpParams<T>& p, T* state) {
  T* u = state;
  T* x = state + kStpBlock;
  T* cur = state + 2 * kStpBlock;
  std::fill_n(u, len, T(0));
  std::fill_n(x, len, T(1));
  std::fill_n(cur, len, T(0));
  for (int64_t t = 0; t < steps; ++t) {
    const T* st = in + t * n;
    T* ot = out + t * n;
    for (int64_t j = 0; j < len; ++j) {
      T uj = u[j], xj = x[j], ij = cur[j];
      stp_step(uj, xj, ij, st[j], p.U, p.tau_f, p.tau_d, p.tau_s, p.A);
      u[j] = uj;
      x[j] = xj;
      cur[j] = ij;
      ot[j] = ij;
    }
  }
}

NACA_SIMD_CLONES void stp_block_simd(const float* in, float* out, int64_t steps, int64_t n,
                                     int64_t len, const StpParams<float>& p, float* state) {
  stp_block(in, out, steps, n, len, p, state);
}

NACA_SIMD_CLONES void stp_block_simd(const double* in, double* out, int64_t steps, int64_t n,
                                     int64_t len, const StpParams<double>& p, double* state) {
  stp_block(in, out, steps, n, len, p, state);
}

at::Tensor stp_scan(const at::Tensor& spikes, double U, double tau_f, double tau_d,
                    double tau_s, double A) {
  auto out = at::empty_like(spikes);
  const int64_t steps = spikes.size(0), n = spikes.size(1) * spikes.size(2);
  AT_DISPATCH_FLOATING_TYPES(spikes.scalar_type(), "naca_stp_scan_cpu", [&] {
    const scalar_t* in = spikes.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const StpParams<scalar_t> p{static_cast<scalar_t>(U), static_cast<scalar_t>(tau_f),
                                static_cast<scalar_t>(tau_d), static_cast<scalar_t>(tau_s),
                                static_cast<scalar_t>(A)};
    at::parallel_for(0, n, kStpBlock, [&](int64_t begin, int64_t end) {
      scalar_t state[3 * kStpBlock];
      for (int64_t j0 = begin; j0 < end; j0 += kStpBlock) {
        stp_block_simd(in + j0, o + j0, steps, n, std::min(end - j0, kStpBlock), p, state);
      }
    });
  });
  return out;
}

}  // namespace naca::cpu

TORCH_LIBRARY_IMPL(naca, CPU, m) {
  m.impl("stp_forward", &naca::stp_forward<naca::cpu::stp_scan>);
}
