// Meta: the shape-only backend. Every op is the same template as on CPU and CUDA
// (update_ops.h, snn_ops.h), instantiated with kernels that allocate their
// result and compute nothing, so a call on meta tensors runs all the op's
// argument checks (except those that read values: the labels' range) and
// returns outputs of the right shape, dtype and device. This is what C++
// programs see (naca::ops:: on meta tensors, shape inference); a Python process
// replaces these registrations with the fake kernels of torch_plugin/ops.py,
// which also handle symbolic shapes for torch.compile.
#include <torch/library.h>

#include "snn_ops.h"
#include "update_ops.h"

namespace naca::meta {

at::Tensor activation_delta(const at::Tensor& preact, const at::Tensor&, Activation, bool) {
  return at::empty_like(preact);
}

at::Tensor modulated_delta(const at::Tensor& preact, const at::Tensor&, const at::Tensor&,
                           const at::Tensor&, Activation, bool, double, double) {
  return at::empty_like(preact);
}

at::Tensor output_delta(const at::Tensor& logits, const at::Tensor&, bool) {
  return at::empty_like(logits);
}

at::Tensor neuromodulator(const at::Tensor& labels, const at::Tensor& ni, const at::Tensor&) {
  return at::empty({labels.size(0), ni.size(1)}, ni.options());
}

at::Tensor modulation(const at::Tensor& level, double, double) { return at::empty_like(level); }

std::tuple<at::Tensor, at::Tensor> lif_scan(const at::Tensor& current, const at::Tensor&,
                                            const at::Tensor&, double, double, bool) {
  return {at::empty_like(current), at::empty_like(current)};
}

at::Tensor snn_delta(const at::Tensor& voltages, const at::Tensor&, const at::Tensor&, int64_t t0,
                     double, double) {
  return at::empty({voltages.size(0) - t0, voltages.size(1), voltages.size(2)},
                   voltages.options());
}

at::Tensor snn_chain_delta(const at::Tensor& voltages, const at::Tensor&, const at::Tensor&,
                           double, double, double, bool, bool) {
  return at::empty_like(voltages);
}

at::Tensor stdp_factors(const at::Tensor& post, const at::Tensor&, double, double, double,
                        double, bool split) {
  return at::empty({post.size(0), post.size(1), (split ? 2 : 1) * post.size(2)}, post.options());
}

void stdp_apply(at::Tensor&, const at::Tensor&, const at::Tensor&, double, double, double, double,
                double, Bound) {}

at::Tensor stp_scan(const at::Tensor& spikes, double, double, double, double, double) {
  return at::empty_like(spikes);
}

at::Tensor relax(const at::Tensor& state, const at::Tensor&, double, int64_t) {
  return at::empty_like(state);
}

}  // namespace naca::meta

// expectation_matrix is CompositeExplicitAutograd (csrc/expectation.cpp), so
// it serves Meta already; sbp_update_'s Meta kernel (its checks alone) is in
// csrc/sbp.cpp.
TORCH_LIBRARY_IMPL(naca, Meta, m) {
  using namespace naca;
  m.impl("neuromodulator", &neuromodulator_op<meta::neuromodulator>);
  m.impl("modulation", &modulation_op<meta::modulation>);
  m.impl("plasticity_update_", &plasticity_update<meta::activation_delta>);
  m.impl("conv_plasticity_update_", &conv_plasticity_update<meta::activation_delta>);
  m.impl("naca_hidden_update_", &naca_hidden_update<meta::modulated_delta>);
  m.impl("naca_conv_update_", &naca_conv_update<meta::modulated_delta>);
  m.impl("naca_output_update_", &naca_output_update<meta::output_delta>);
  m.impl("lif_forward", &lif_forward<meta::lif_scan>);
  m.impl("naca_snn_update_", &naca_snn_update<meta::snn_delta>);
  m.impl("naca_snn_chain_update_", &naca_snn_chain_update<meta::snn_chain_delta>);
  m.impl("stdp_update_", &stdp_update<meta::stdp_factors, meta::stdp_apply>);
  m.impl("stp_forward", &stp_forward<meta::stp_scan>);
  m.impl("homeostatic_relax", &homeostatic_relax<meta::relax>);
}
