// SBP, self-backpropagation of synaptic modifications (docs/algorithms.md §2.1), as
// one in-place op on the two weight matrices around a hidden layer. Written
// with ATen primitives (a few reductions and elementwise passes over the two
// matrices, negligible next to the GEMMs that produce the local changes), so
// the same function serves the CPU and CUDA dispatch keys.
//
// Orientation: every matrix is (post, pre), as nn.Linear stores weights:
// w_in (H, I), w_out (O, H). docs/algorithms.md writes W as (pre, post), i.e. our W^T.
#include <ATen/OpMathType.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <torch/library.h>

#include <optional>

#include "checks.h"

namespace naca {
namespace {

// N(v) = v / sum(v), unchanged where the sum is 0.
at::Tensor normalise(const at::Tensor& v) {
  const auto s = v.sum();
  return at::where(s != 0, v / s, v);
}

struct Lateral {
  at::Tensor p, d, p_pre, d_pre, d_post;
};

// LTP/LTD split of a local change q (post, pre) and its pre- and postsynaptic
// lateral spreads: P_pre = P diag_pre(1 + f N(sum_post P)), D_pre likewise
// with |sum_post D|, D_post = D diag_post(1 + f/2 N(|sum_pre D|)).
Lateral lateral(const at::Tensor& q, double f) {
  Lateral l;
  l.p = q.clamp_min(0);
  l.d = q.clamp_max(0);
  l.p_pre = l.p * (1 + f * normalise(l.p.sum(0))).unsqueeze(0);
  l.d_pre = l.d * (1 + f * normalise(l.d.sum(0).abs())).unsqueeze(0);
  l.d_post = l.d * (1 + 0.5 * f * normalise(l.d.sum(1).abs())).unsqueeze(1);
  return l;
}

void check_pair(const char* op, const at::Tensor& w, const char* wn, const at::Tensor& dw,
                const char* dn) {
  check_defined(w, op, wn);
  check_floating(w, op, wn);
  check_dim(w, op, wn, 2);
  check_contiguous(w, op, wn);
  check_writable(w, op, wn);
  check_defined(dw, op, dn);
  check_same_device(dw, op, dn, w, wn);
  check_same_dtype(dw, op, dn, w, wn);
  check_shape(dw, op, dn, w.sizes());
}

// Every check of sbp_update_ (the Meta kernel runs these alone).
void check_sbp(at::Tensor& w_in, at::Tensor& w_out, const at::Tensor& dw_in,
               const at::Tensor& dw_out, const std::optional<at::Tensor>& mask, double fraction,
               double alpha_in, double alpha_out) {
  const char* op = "sbp_update_";
  check_pair(op, w_in, "w_in", dw_in, "dw_in");
  check_pair(op, w_out, "w_out", dw_out, "dw_out");
  check_same_device(w_out, op, "w_out", w_in, "w_in");
  check_same_dtype(w_out, op, "w_out", w_in, "w_in");
  TORCH_CHECK(w_out.size(1) == w_in.size(0), "naca::", op,
              ": argument 'w_out' expected shape [O, ", w_in.size(0),
              "] (its inputs are the hidden units of w_in (H, I)), got ", w_out.sizes());
  const bool has_mask = mask.has_value() && mask->defined();
  if (has_mask) {
    check_same_device(*mask, op, "mask", w_in, "w_in");
    check_shape(*mask, op, "mask", w_in.sizes());
    TORCH_CHECK(mask->scalar_type() == at::kBool || mask->scalar_type() == w_in.scalar_type(),
                "naca::", op, ": argument 'mask' expected dtype bool or ", w_in.scalar_type(),
                ", got ", mask->scalar_type());
  }
  check_finite_scalar(fraction, op, "fraction");
  TORCH_CHECK(fraction >= 0, "naca::", op, ": argument 'fraction' expected >= 0, got ", fraction);
  check_finite_scalar(alpha_in, op, "alpha_in");
  check_finite_scalar(alpha_out, op, "alpha_out");
  check_no_alias(w_in, "w_in", w_out, "w_out", op);
  for (auto [w, wn] : {std::pair{&w_in, "w_in"}, {&w_out, "w_out"}}) {
    check_no_alias(*w, wn, dw_in, "dw_in", op);
    check_no_alias(*w, wn, dw_out, "dw_out", op);
    if (has_mask) check_no_alias(*w, wn, *mask, "mask", op);
  }
}

void sbp_update(at::Tensor w_in, at::Tensor w_out, const at::Tensor& dw_in,
                const at::Tensor& dw_out, const std::optional<at::Tensor>& mask, double fraction,
                double alpha_in, double alpha_out) {
  check_sbp(w_in, w_out, dw_in, dw_out, mask, fraction, alpha_in, alpha_out);
  const bool has_mask = mask.has_value() && mask->defined();
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const auto acc = at::toOpMathType(w_in.scalar_type());
  const auto out = lateral(dw_out.to(acc), fraction);
  const auto in = lateral(dw_in.to(acc), fraction);
  // The output matrix: P_pre + (D_pre + D_post) / 2.
  const auto out_final = out.p_pre + (out.d_pre + out.d_post) / 2;
  // Self-backpropagation onto each hidden unit's input synapses (rows of w_in):
  // the spread f N(sum over the unit's output synapses of P_pre / D_pre), on the
  // masked subset only (lambda_p); a spread of 0 leaves the local change.
  auto sp = (fraction * normalise(out.p_pre.sum(0))).unsqueeze(1);
  auto sd = (fraction * normalise(out.d_pre.sum(0))).unsqueeze(1);
  if (has_mask) {
    const auto m = mask->to(acc);
    sp = sp * m;
    sd = sd * m;
  }
  const auto p_bp = in.p * (1 + sp);
  const auto d_bp = in.d * (1 + sd);
  const auto in_final = (in.p_pre + p_bp) / 2 + (in.d_pre + in.d_post + d_bp) / 3;
  w_out.add_(out_final.to(w_out.scalar_type()), alpha_out);
  w_in.add_(in_final.to(w_in.scalar_type()), alpha_in);
  w_in.unsafeGetTensorImpl()->bump_version();
  w_out.unsafeGetTensorImpl()->bump_version();
}

// Meta: the checks, then nothing to compute (an in-place op has no output).
void sbp_update_meta(at::Tensor w_in, at::Tensor w_out, const at::Tensor& dw_in,
                     const at::Tensor& dw_out, const std::optional<at::Tensor>& mask,
                     double fraction, double alpha_in, double alpha_out) {
  check_sbp(w_in, w_out, dw_in, dw_out, mask, fraction, alpha_in, alpha_out);
}

}  // namespace
}  // namespace naca

TORCH_LIBRARY_IMPL(naca, CPU, m) { m.impl("sbp_update_", &naca::sbp_update); }
TORCH_LIBRARY_IMPL(naca, CUDA, m) { m.impl("sbp_update_", &naca::sbp_update); }
TORCH_LIBRARY_IMPL(naca, Meta, m) { m.impl("sbp_update_", &naca::sbp_update_meta); }
