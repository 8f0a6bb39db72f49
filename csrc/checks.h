// Argument validation shared by every op. Each check names the op, the
// argument, what was expected and what was given. Ops run all their checks
// before they touch any tensor, so a rejected call leaves the weights as they
// were.
#pragma once

#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "naca_math.h"

namespace naca {

inline void check_defined(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.defined(), "naca::", op, ": argument '", name, "' is undefined");
}

inline void check_dim(const at::Tensor& t, const char* op, const char* name, int64_t dim) {
  TORCH_CHECK(t.dim() == dim, "naca::", op, ": argument '", name, "' expected ", dim,
              " dimensions, got ", t.dim(), " (shape ", t.sizes(), ")");
}

inline void check_shape(const at::Tensor& t, const char* op, const char* name,
                        at::IntArrayRef expected) {
  TORCH_CHECK(t.sizes() == expected, "naca::", op, ": argument '", name, "' expected shape ",
              expected, ", got ", t.sizes());
}

// As check_shape, saying where the expected sizes come from (`from`, e.g. "the batch,
// weight.size(1)"), so that a fault in the reference tensor shows in the message too.
inline void check_shape(const at::Tensor& t, const char* op, const char* name,
                        at::IntArrayRef expected, const char* from) {
  TORCH_CHECK(t.sizes() == expected, "naca::", op, ": argument '", name, "' expected shape ",
              expected, " (", from, "), got ", t.sizes());
}

inline void check_same_device(const at::Tensor& t, const char* op, const char* name,
                              const at::Tensor& ref, const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), "naca::", op, ": argument '", name,
              "' expected on device ", ref.device(), " (the device of '", ref_name, "'), got ",
              t.device());
}

inline void check_same_dtype(const at::Tensor& t, const char* op, const char* name,
                             const at::Tensor& ref, const char* ref_name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "naca::", op, ": argument '", name,
              "' expected dtype ", ref.scalar_type(), " (the dtype of '", ref_name, "'), got ",
              t.scalar_type());
}

// Whether `t` goes to this build's CUDA kernels. The CPU emulation of those
// kernels (tests/cuda_emu) compiles them with NACA_CUDA_EMU for CPU tensors, and
// so that the host code around them takes its CUDA paths too.
inline bool uses_cuda_kernels(const at::Tensor& t) {
#ifdef NACA_CUDA_EMU
  (void)t;
  return true;
#else
  return t.is_cuda();
#endif
}

// float32/float64 everywhere; float16/bfloat16 on CUDA (fp32 accumulation), and
// on Meta, which may stand for CUDA tensors.
inline void check_floating(const at::Tensor& t, const char* op, const char* name) {
  const auto st = t.scalar_type();
  const bool cuda = uses_cuda_kernels(t) || t.is_meta();
  const bool ok = st == at::kFloat || st == at::kDouble ||
                  (cuda && (st == at::kHalf || st == at::kBFloat16));
  TORCH_CHECK(ok, "naca::", op, ": argument '", name, "' expected dtype float32 or float64",
              cuda ? " (or float16/bfloat16 on CUDA)" : "", ", got ", st, " on ", t.device());
}

inline void check_contiguous(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.is_contiguous(), "naca::", op, ": argument '", name,
              "' expected a contiguous tensor, got strides ", t.strides(), " for shape ",
              t.sizes());
}

inline void check_nonempty_batch(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.dim() >= 1 && t.size(0) > 0, "naca::", op, ": argument '", name,
              "' expected a non-empty batch (size(0) > 0), got shape ", t.sizes());
}

// The updated tensor must neither overlap itself nor share memory with an input:
// the kernels read the inputs while they write it.
inline void check_writable(const at::Tensor& out, const char* op, const char* name) {
  TORCH_CHECK(at::has_internal_overlap(out) != at::MemOverlap::Yes, "naca::", op,
              ": argument '", name,
              "' has internally overlapping memory (for example an expanded tensor) and "
              "cannot be updated in place");
}

// Whether two tensors can touch the same bytes. ATen answers TooHard as soon as
// one of them is not dense (an expanded or strided read-only input): then two
// different storages cannot overlap, and within one storage the byte ranges the
// two can reach decide (conservatively: reachable ranges that meet count).
inline bool may_share_memory(const at::Tensor& a, const at::Tensor& b) {
  const auto status = at::get_overlap_status(a, b);
  if (status != at::MemOverlapStatus::TooHard) return status != at::MemOverlapStatus::No;
  if (!a.storage().is_alias_of(b.storage())) return false;
  const auto span = [](const at::Tensor& t) {  // [first, last + 1) in bytes; ATen strides are >= 0
    int64_t last = 0;
    for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * t.stride(d);
    const auto first = reinterpret_cast<uintptr_t>(t.const_data_ptr());
    return std::pair<uintptr_t, uintptr_t>(first, first + static_cast<uintptr_t>(last + 1) * t.element_size());
  };
  const auto [a0, a1] = span(a);
  const auto [b0, b1] = span(b);
  return a0 < b1 && b0 < a1;
}

inline void check_no_alias(const at::Tensor& out, const char* out_name, const at::Tensor& in,
                           const char* in_name, const char* op) {
  if (!out.defined() || !in.defined()) return;
  TORCH_CHECK(!may_share_memory(out, in), "naca::", op,
              ": argument '", out_name, "' shares memory with argument '", in_name,
              "'; the updated tensor must not alias an input");
}

inline void check_finite_scalar(double v, const char* op, const char* name) {
  TORCH_CHECK(std::isfinite(v), "naca::", op, ": argument '", name,
              "' expected a finite number, got ", v);
}

// A scale applied to `like` as an ATen alpha must fit its compute type (float
// for float32/float16/bfloat16): 1e300 on float32 weights is rejected here, by name.
inline void check_scalar_fits(double v, const at::Tensor& like, const char* op, const char* name) {
  const bool fits = like.scalar_type() == at::kDouble ||
                    std::abs(v) <= static_cast<double>(std::numeric_limits<float>::max());
  TORCH_CHECK(fits, "naca::", op, ": argument '", name, "' expected a value representable in ",
              like.scalar_type(), " (|", name, "| <= 3.4e38), got ", v);
}

// Class labels: int64, 1-D, every value in [0, num_classes). On CUDA the range
// check reads two scalars back to the host (one synchronisation); read_values=false
// checks the dtype and shape only, as on Meta, which has no values. ni_rows > 0:
// num_classes was read from an NI of that many rows (2N); labels that would fit an NI
// of N rows read as N classes then name 'ni' too, since an NI built with one row per
// class reads as half the classes.
inline void check_labels(const at::Tensor& labels, const char* op, int64_t num_classes,
                         int64_t batch, bool read_values = true, int64_t ni_rows = 0) {
  check_defined(labels, op, "labels");
  TORCH_CHECK(labels.scalar_type() == at::kLong, "naca::", op,
              ": argument 'labels' expected dtype int64, got ", labels.scalar_type());
  check_dim(labels, op, "labels", 1);
  TORCH_CHECK(batch < 0 || labels.size(0) == batch, "naca::", op,
              ": argument 'labels' expected shape [", batch, "] (the batch), got ",
              labels.sizes());
  if (labels.numel() == 0 || !read_values || labels.is_meta()) return;
  // One reduction and one device-to-host copy (on CUDA, one synchronization).
  const auto [lo, hi] = at::aminmax(labels);
  const auto range = at::stack({lo, hi}).cpu();
  const int64_t mn = range.const_data_ptr<int64_t>()[0];
  const int64_t mx = range.const_data_ptr<int64_t>()[1];
  if (mn >= 0 && mx < num_classes) return;
  TORCH_CHECK(!(mn >= 0 && mx < ni_rows), "naca::", op,
              ": argument 'labels' expected values in [0, ", num_classes, "), got values in [",
              mn, ", ", mx, "], or argument 'ni' expected 2N rows for N classes (", 2 * (mx + 1),
              " rows for ", mx + 1, " classes), got ", ni_rows, " rows (read as N = ",
              num_classes, ")");
  TORCH_CHECK(false, "naca::", op, ": argument 'labels' expected values in [0, ", num_classes,
              "), got values in [", mn, ", ", mx, "]");
}

inline Activation parse_activation(const std::string& name, const char* op) {
  if (name == "identity" || name == "linear" || name == "none") return Activation::Identity;
  if (name == "tanh") return Activation::Tanh;
  if (name == "sigmoid") return Activation::Sigmoid;
  if (name == "relu") return Activation::Relu;
  TORCH_CHECK(false, "naca::", op, ": argument 'activation' expected one of 'tanh', 'sigmoid', ",
              "'relu', 'identity', got '", name, "'");
}

inline void check_modulation_params(double lam, double theta, const char* op) {
  check_finite_scalar(lam, op, "lam");
  check_finite_scalar(theta, op, "theta");
  TORCH_CHECK(lam > 0, "naca::", op, ": argument 'lam' expected > 0, got ", lam);
}

}  // namespace naca
