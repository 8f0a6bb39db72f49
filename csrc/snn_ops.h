// The spiking-network ops (lif_forward, naca_snn_update_, naca_snn_chain_update_, stdp_update_,
// stp_forward, homeostatic_relax), written once as templates over a backend's
// sequence kernels, like update_ops.h: validate everything first, run the
// backend's fused kernel (one launch that loops over T, or over the relaxation
// steps), then, for the updates, apply the batch-and-time outer product as one
// GEMM over (T * B) rows (update.h).
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <tuple>

#include "checks.h"
#include "update.h"

namespace naca {

#define NACA_DECLARE_SNN_KERNELS(ns)                                                          \
  namespace ns {                                                                              \
  /* spikes and voltages (T, B, N) of a LIF layer driven by current (T, B, N) */              \
  std::tuple<at::Tensor, at::Tensor> lif_scan(const at::Tensor& current, const at::Tensor& v0, \
                                              const at::Tensor& s0, double decay,             \
                                              double threshold, bool soft_reset);             \
  /* signal[b,h] * (1[V_t > th - lens] - s_{t-1}) for t in [t0, T), shape (T - t0, B, H) */   \
  at::Tensor snn_delta(const at::Tensor& voltages, const at::Tensor& spikes,                  \
                       const at::Tensor& signal, int64_t t0, double threshold, double lens);  \
  /* g_t * dI_t/da_t, (T, B, H): signal carried back from the last step's spikes through */   \
  /* the membrane (lif_chain, lif_current, current_grad in naca_math.h) */                    \
  at::Tensor snn_chain_delta(const at::Tensor& voltages, const at::Tensor& spikes,            \
                             const at::Tensor& signal, double decay, double threshold,        \
                             double lens, bool soft_reset, bool sigmoid_current);             \
  /* STDP's post-side factors of post spikes (T, B, H), m (B, H) or undefined (= 1):       */ \
  /* split = false: stdp_factor(G, F, m), (T, B, H); true: [m G, m F] rows, (T, B, 2H)      */ \
  /* (G: backward trace, decay_pre; F: forward trace, decay_post; naca_math.h)            */ \
  at::Tensor stdp_factors(const at::Tensor& post, const at::Tensor& mod, double decay_pre,    \
                          double decay_post, double a_plus, double a_minus, bool split);      \
  /* weight <- stdp_weight(weight, ltp, ltd, ...), elementwise, in place */                   \
  void stdp_apply(at::Tensor& weight, const at::Tensor& ltp, const at::Tensor& ltd,           \
                  double a_plus, double a_minus, double lr, double w_min, double w_max,       \
                  Bound bound);                                                               \
  /* synaptic current (T, B, N) of Tsodyks-Markram synapses driven by spikes (T, B, N) */     \
  at::Tensor stp_scan(const at::Tensor& spikes, double U, double tau_f, double tau_d,         \
                      double tau_s, double A);                                                \
  /* relax_step applied `iters` times to each element of state (drive: same shape) */         \
  at::Tensor relax(const at::Tensor& state, const at::Tensor& drive, double eps,              \
                   int64_t iters);                                                            \
  }

NACA_DECLARE_SNN_KERNELS(cpu)
NACA_DECLARE_SNN_KERNELS(cuda)
NACA_DECLARE_SNN_KERNELS(meta)  // shapes only (csrc/meta)

#undef NACA_DECLARE_SNN_KERNELS

namespace snn_detail {

inline void check_seq(const at::Tensor& t, const char* op, const char* name) {
  check_defined(t, op, name);
  check_floating(t, op, name);
  check_dim(t, op, name, 3);
  TORCH_CHECK(t.size(0) >= 1, "naca::", op, ": argument '", name,
              "' expected at least one time step (T >= 1), got shape ", t.sizes());
}

inline void check_like(const at::Tensor& t, const char* op, const char* name,
                       const at::Tensor& ref, const char* ref_name, at::IntArrayRef shape) {
  check_defined(t, op, name);
  check_same_device(t, op, name, ref, ref_name);
  check_same_dtype(t, op, name, ref, ref_name);
  check_shape(t, op, name, shape);
}

// The LIF reset mode: true for "soft", false for "hard"; anything else is rejected.
inline bool parse_soft_reset(const std::string& reset, const char* op) {
  TORCH_CHECK(reset == "hard" || reset == "soft", "naca::", op,
              ": argument 'reset' expected 'hard' or 'soft', got '", reset, "'");
  return reset == "soft";
}

inline void bump(at::Tensor& t) { t.unsafeGetTensorImpl()->bump_version(); }

// v as a Scalar of dtype `type` accepts it: beyond the dtype's finite range, +-inf.
inline double as_dtype(double v, at::ScalarType type) {
  double out = v;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, type, "naca_as_dtype", [&] {
    const double hi = static_cast<double>(std::numeric_limits<scalar_t>::max());
    if (std::isfinite(v) && std::abs(v) > hi) out = std::copysign(INFINITY, v);
  });
  return out;
}

}  // namespace snn_detail

using LifScanFn = std::tuple<at::Tensor, at::Tensor> (*)(const at::Tensor&, const at::Tensor&,
                                                          const at::Tensor&, double, double, bool);
using SnnDeltaFn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                  int64_t, double, double);
using SnnChainFn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                                  double, double, bool, bool);
using StdpFactorsFn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, double, double,
                                     double, double, bool);
using StdpApplyFn = void (*)(at::Tensor&, const at::Tensor&, const at::Tensor&, double, double,
                             double, double, double, Bound);
using StpScanFn = at::Tensor (*)(const at::Tensor&, double, double, double, double, double);
using RelaxFn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, double, int64_t);

template <LifScanFn scan>
std::tuple<at::Tensor, at::Tensor> lif_forward(const at::Tensor& current, double decay,
                                               double threshold, std::string reset,
                                               const std::optional<at::Tensor>& v_init,
                                               const std::optional<at::Tensor>& s_init) {
  const char* op = "lif_forward";
  snn_detail::check_seq(current, op, "current");
  check_finite_scalar(decay, op, "decay");
  check_finite_scalar(threshold, op, "threshold");
  const bool soft = snn_detail::parse_soft_reset(reset, op);
  const std::vector<int64_t> state{current.size(1), current.size(2)};
  at::Tensor v0, s0;
  if (v_init.has_value() && v_init->defined()) {
    snn_detail::check_like(*v_init, op, "v_init", current, "current", state);
    v0 = v_init->contiguous();
  } else {
    v0 = at::zeros(state, current.options());
  }
  if (s_init.has_value() && s_init->defined()) {
    snn_detail::check_like(*s_init, op, "s_init", current, "current", state);
    s0 = s_init->contiguous();
  } else {
    s0 = at::zeros(state, current.options());
  }
  return scan(current.contiguous(), v0, s0, decay, threshold, soft);
}

template <StpScanFn scan>
at::Tensor stp_forward(const at::Tensor& spikes, double U, double tau_f, double tau_d,
                       double tau_s, double A) {
  const char* op = "stp_forward";
  snn_detail::check_seq(spikes, op, "spikes");
  for (auto [v, name] : {std::pair{U, "U"}, {tau_f, "tau_f"}, {tau_d, "tau_d"}, {tau_s, "tau_s"},
                         {A, "A"}}) {
    check_finite_scalar(v, op, name);
  }
  for (auto [v, name] : {std::pair{tau_f, "tau_f"}, {tau_d, "tau_d"}, {tau_s, "tau_s"}}) {
    TORCH_CHECK(v > 0, "naca::", op, ": argument '", name, "' expected > 0, got ", v);
  }
  return scan(spikes.contiguous(), U, tau_f, tau_d, tau_s, A);
}

template <RelaxFn kernel>
at::Tensor homeostatic_relax(const at::Tensor& state, const at::Tensor& drive, double eps,
                             int64_t iters) {
  const char* op = "homeostatic_relax";
  check_defined(state, op, "state");
  check_floating(state, op, "state");
  snn_detail::check_like(drive, op, "drive", state, "state", state.sizes());
  check_finite_scalar(eps, op, "eps");
  TORCH_CHECK(iters >= 0, "naca::", op, ": argument 'iters' expected >= 0, got ", iters);
  return kernel(state.contiguous(), drive.contiguous(), eps, iters);
}

// Checks weight (H, I), bias (H) or none, pre_spikes (T, B, I), voltages and
// spikes (T, B, H), signal (B, H), all on the weight's device and dtype.
inline void check_naca_snn(const char* op, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, const at::Tensor& pre_spikes,
                           const at::Tensor& voltages, const at::Tensor& spikes,
                           const at::Tensor& signal, double threshold, double lens, double lr) {
  check_defined(weight, op, "weight");
  check_floating(weight, op, "weight");
  check_dim(weight, op, "weight", 2);
  snn_detail::check_seq(pre_spikes, op, "pre_spikes");
  const int64_t t = pre_spikes.size(0), b = pre_spikes.size(1);
  // A weight that fits neither the input nor this layer's neurons (a transposed one) is at fault.
  check_defined(voltages, op, "voltages");
  TORCH_CHECK(voltages.dim() != 3 || voltages.size(0) != t || voltages.size(1) != b ||
                  weight.size(0) == voltages.size(2) || weight.size(1) == pre_spikes.size(2),
              "naca::", op, ": argument 'weight' expected shape [", voltages.size(2), ", ",
              pre_spikes.size(2), "] ([voltages.size(2), pre_spikes.size(2)]), got ",
              weight.sizes());
  const std::vector<int64_t> seq{t, b, weight.size(0)};
  snn_detail::check_like(voltages, op, "voltages", weight, "weight", seq);
  snn_detail::check_like(spikes, op, "spikes", weight, "weight", seq);
  snn_detail::check_like(signal, op, "signal", weight, "weight", {b, weight.size(0)});
  check_same_device(pre_spikes, op, "pre_spikes", weight, "weight");
  check_same_dtype(pre_spikes, op, "pre_spikes", weight, "weight");
  check_shape(pre_spikes, op, "pre_spikes", {t, b, weight.size(1)});
  // weight, bias and pre_spikes as the (T*B)-row linear update sees them.
  check_linear_update(op, weight, bias, pre_spikes.reshape({t * b, pre_spikes.size(2)}),
                      voltages.reshape({t * b, weight.size(0)}), lr, "voltages", "pre_spikes");
  check_finite_scalar(threshold, op, "threshold");
  check_finite_scalar(lens, op, "lens");
  check_no_alias(weight, "weight", pre_spikes, "pre_spikes", op);
  check_no_alias(weight, "weight", voltages, "voltages", op);
  check_no_alias(weight, "weight", spikes, "spikes", op);
  check_no_alias(weight, "weight", signal, "signal", op);
  if (bias.has_value() && bias->defined()) {
    check_no_alias(*bias, "bias", spikes, "spikes", op);
    check_no_alias(*bias, "bias", signal, "signal", op);
  }
}

template <SnnDeltaFn delta_fn>
void naca_snn_update(at::Tensor weight, const std::optional<at::Tensor>& bias,
                     const at::Tensor& pre_spikes, const at::Tensor& voltages,
                     const at::Tensor& spikes, const at::Tensor& signal, double threshold,
                     double lens, double lr, bool all_steps) {
  const char* op = "naca_snn_update_";
  check_naca_snn(op, weight, bias, pre_spikes, voltages, spikes, signal, threshold, lens, lr);
  const int64_t t = pre_spikes.size(0), b = pre_spikes.size(1);
  if (b == 0) return;  // an empty batch: nothing to learn
  const int64_t t0 = all_steps ? 0 : t - 1;
  auto delta = delta_fn(voltages.contiguous(), spikes.contiguous(), signal.contiguous(), t0,
                        threshold, lens);
  const int64_t rows = (t - t0) * b;
  auto pre = pre_spikes.contiguous().narrow(0, t0, t - t0).reshape({rows, pre_spikes.size(2)});
  apply_linear_update(weight, bias, pre, delta.view({rows, weight.size(0)}), lr);
}

// The authors' class-incremental SNN rule: signal = dL/ds at the last step,
// carried back through the membrane recurrence to every step (snn_chain_delta),
// then weight -= lr * sum_{t,b} delta_t^T pre_t as one GEMM over (T * B) rows.
// The voltages and spikes must come from lif_forward started at V = 0, s = 0.
template <SnnChainFn delta_fn>
void naca_snn_chain_update(at::Tensor weight, const std::optional<at::Tensor>& bias,
                           const at::Tensor& pre_spikes, const at::Tensor& voltages,
                           const at::Tensor& spikes, const at::Tensor& signal, double decay,
                           double threshold, double lens, std::string reset, std::string current,
                           double lr) {
  const char* op = "naca_snn_chain_update_";
  check_naca_snn(op, weight, bias, pre_spikes, voltages, spikes, signal, threshold, lens, lr);
  check_finite_scalar(decay, op, "decay");
  const bool soft = snn_detail::parse_soft_reset(reset, op);
  TORCH_CHECK(current == "linear" || current == "sigmoid", "naca::", op,
              ": argument 'current' expected 'linear' or 'sigmoid', got '", current, "'");
  const int64_t t = pre_spikes.size(0), b = pre_spikes.size(1);
  if (b == 0) return;  // an empty batch: nothing to learn
  auto delta = delta_fn(voltages.contiguous(), spikes.contiguous(), signal.contiguous(), decay,
                        threshold, lens, soft, current == "sigmoid");
  auto pre = pre_spikes.contiguous().reshape({t * b, pre_spikes.size(2)});
  apply_linear_update(weight, bias, pre, delta.view({t * b, weight.size(0)}), lr);
}

inline Bound parse_bound(const std::string& name, const char* op) {
  if (name == "hard") return Bound::Hard;
  if (name == "soft") return Bound::Soft;
  if (name == "none") return Bound::None;
  TORCH_CHECK(false, "naca::", op, ": argument 'bound' expected 'hard', 'soft' or 'none', got '",
              name, "'");
}

// STDP with traces: ltp = sum_{t,b} (m * post_t)^T pre_trace_t and
// ltd = sum_{t,b} (m * post_trace_t)^T pre_t, each rewritten as a product with
// pre_t (naca_math.h, stdp_factor). Hard or no bounds: one GEMM of the combined
// factor with pre, added to the weight in place, then the clamp. Soft bounds scale
// ltp and ltd by different functions of w: both sums from one GEMM of the stacked
// factors, then one elementwise kernel. m, the optional third factor, is a scalar,
// a per-neuron (H) or a per-sample-and-neuron (B, H) modulator.
template <StdpFactorsFn factors_fn, StdpApplyFn apply_fn>
void stdp_update(at::Tensor weight, const at::Tensor& pre_spikes, const at::Tensor& post_spikes,
                 double tau_pre, double tau_post, double a_plus, double a_minus, double w_min,
                 double w_max, std::string bound, const std::optional<at::Tensor>& modulator,
                 double lr, double dt) {
  const char* op = "stdp_update_";
  check_defined(weight, op, "weight");
  check_floating(weight, op, "weight");
  check_dim(weight, op, "weight", 2);
  check_contiguous(weight, op, "weight");
  check_writable(weight, op, "weight");
  snn_detail::check_seq(pre_spikes, op, "pre_spikes");
  check_same_device(pre_spikes, op, "pre_spikes", weight, "weight");
  check_same_dtype(pre_spikes, op, "pre_spikes", weight, "weight");
  const int64_t t = pre_spikes.size(0), b = pre_spikes.size(1);
  const int64_t h = weight.size(0), i = weight.size(1);
  check_shape(pre_spikes, op, "pre_spikes", {t, b, i});
  snn_detail::check_like(post_spikes, op, "post_spikes", weight, "weight", {t, b, h});
  for (auto [v, name] : {std::pair{tau_pre, "tau_pre"}, {tau_post, "tau_post"},
                         {a_plus, "a_plus"}, {a_minus, "a_minus"}, {w_min, "w_min"},
                         {w_max, "w_max"}, {lr, "lr"}, {dt, "dt"}}) {
    check_finite_scalar(v, op, name);
  }
  TORCH_CHECK(tau_pre > 0 && tau_post > 0, "naca::", op,
              ": arguments 'tau_pre' and 'tau_post' expected > 0, got ", tau_pre, " and ",
              tau_post);
  TORCH_CHECK(dt > 0, "naca::", op, ": argument 'dt' expected > 0, got ", dt);
  const auto bnd = parse_bound(bound, op);
  TORCH_CHECK(bnd == Bound::None || w_min <= w_max, "naca::", op,
              ": arguments 'w_min' <= 'w_max' expected, got ", w_min, " and ", w_max);
  at::Tensor mod;
  if (modulator.has_value() && modulator->defined()) {
    const auto& m = *modulator;
    check_same_device(m, op, "modulator", weight, "weight");
    check_same_dtype(m, op, "modulator", weight, "weight");
    const bool scalar = m.numel() == 1 && m.dim() <= 1;
    const bool per_neuron = m.dim() == 1 && m.size(0) == h;
    const bool per_sample = m.dim() == 2 && m.size(0) == b && m.size(1) == h;
    TORCH_CHECK(scalar || per_neuron || per_sample, "naca::", op,
                ": argument 'modulator' expected a scalar, shape [", h, "] or shape [", b, ", ",
                h, "], got shape ", m.sizes());
    mod = scalar ? m.reshape({}) : m;
  }
  check_no_alias(weight, "weight", pre_spikes, "pre_spikes", op);
  check_no_alias(weight, "weight", post_spikes, "post_spikes", op);
  if (mod.defined()) check_no_alias(weight, "weight", mod, "modulator", op);
  if (b == 0) return;

  const auto pre = pre_spikes.contiguous();
  const auto post = post_spikes.contiguous();
  const auto mod_bh = mod.defined() ? mod.expand({b, h}).contiguous() : at::Tensor();
  const double decay_pre = std::exp(-dt / tau_pre), decay_post = std::exp(-dt / tau_post);
  const int64_t rows = t * b;
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  if (bnd == Bound::Soft) {
    const auto q = factors_fn(post, mod_bh, decay_pre, decay_post, a_plus, a_minus, true);
    const auto sums = at::mm(q.view({rows, 2 * h}).t(), pre.view({rows, i}));  // [ltp; ltd]
    apply_fn(weight, sums.narrow(0, 0, h), sums.narrow(0, h, h), a_plus, a_minus, lr, w_min,
             w_max, bnd);
  } else {
    // lr is the GEMM's alpha, not folded into the factors: lr * a_plus * G can be far
    // below half precision's normal range. lr and the bounds are first rounded to the
    // types addmm_ / clamp_ convert them to: a Scalar out of range (an absurd lr or
    // bound) would raise an unclear error where the kernels' casts give inf, as the
    // soft path's kernel does.
    const auto q = factors_fn(post, mod_bh, decay_pre, decay_post, a_plus, a_minus, false);
    const auto opmath = weight.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    weight.addmm_(q.view({rows, h}).t(), pre.view({rows, i}), /*beta=*/1,
                  /*alpha=*/snn_detail::as_dtype(lr, opmath));
    if (bnd == Bound::Hard) {
      weight.clamp_(snn_detail::as_dtype(w_min, weight.scalar_type()),
                    snn_detail::as_dtype(w_max, weight.scalar_type()));
    }
  }
  snn_detail::bump(weight);
}

}  // namespace naca
