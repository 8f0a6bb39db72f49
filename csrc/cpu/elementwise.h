// Helpers the CPU elementwise kernels share to run at memory speed: the
// transcendental part of phi'(z) (tanh, sigmoid) comes from ATen's own kernels
// (SIMD-dispatched at run time for the host CPU), and the rest is a branch-free
// loop the compiler vectorizes (the scalar, branchy form costs a mispredicted
// branch per element on random data). Every loop is split over rows so no
// element pays an integer division to find its row.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../naca_math.h"

namespace naca::cpu {

// Elements per parallel task: below this, threads cost more than they save.
constexpr int64_t kGrain = 32768;

// A hot loop's function also built for AVX-512 and AVX2, the variant chosen when
// the library loads (GCC's target_clones, an ifunc): the extension itself is
// compiled for baseline x86-64 (4 floats per vector). fp-contract=off keeps the
// clones free of FMA contraction, so they round as the baseline code and ATen's
// separate elementwise kernels do. Plain functions only (not templates).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define NACA_SIMD_CLONES \
  __attribute__((target_clones("avx512f", "avx2", "default"), optimize("fp-contract=off")))
#else
#define NACA_SIMD_CLONES
#endif

// c ? a : b as a bit blend. With GCC's default -ftrapping-math a float ?: in a
// loop stays a branch and blocks vectorization; this does not.
// (memcpy, not C++20 std::bit_cast: torch may build extensions as C++17.)
template <typename T>
inline T select(bool c, T a, T b) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  static_assert(sizeof(T) == sizeof(U), "select: float or double");
  U ua, ub;
  std::memcpy(&ua, &a, sizeof(T));
  std::memcpy(&ub, &b, sizeof(T));
  const U m = c ? ~U(0) : U(0);
  const U r = (ua & m) | (ub & ~m);
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
}

// f(x) of naca_math.h's modulation, branch-free so the loop vectorizes. Every
// piece has the form a + b d^2 / lam^2; the piece's (a, b, d) are selected
// first, so each element pays one division instead of four (divisions bound
// the loop). Same result: b d d / l2 rounds as the branchy form's products
// (a negated b negates them exactly) and a + q is its x - q or q - theta.
template <typename T>
inline T modulation_select(T x, T lam, T theta) {
  const T l2 = lam * lam;
  const T d1 = T(4) * x - lam, d2 = x - lam, d3 = lam - x;
  const T d4 = T(4) * (T(2) * lam - x) - lam;
  const bool in1 = x <= lam / T(2), in2 = x <= lam, in3 = x <= T(3) * lam / T(2);
  const T d = select(in1, d1, select(in2, d2, select(in3, d3, d4)));
  const T b = select(in1, T(1) - theta, select(in2, T(4), select(in3, T(-4), theta - T(1))));
  const T a = select(in1, theta, select(in2, T(0), select(in3, T(0), -theta)));
  return a + b * d * d / l2;
}

// A new tensor holding the part of phi'(z) computed by ATen: tanh(z),
// sigmoid(z), relu(z), or nothing (identity). finish_grad turns an element of
// it into phi'(z); the kernels then write their result over it in place, so a
// delta costs one B x H allocation.
// With from_output the caller already holds act(z): the kernels read it and write
// into a fresh buffer.
inline at::Tensor grad_source(const at::Tensor& z, Activation act, bool from_output = false) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  if (from_output) return at::empty_like(z);
  if (act == Activation::Tanh) return at::tanh(z);
  if (act == Activation::Sigmoid) return at::sigmoid(z);
  if (act == Activation::Relu) return at::relu(z);
  return at::empty_like(z);
}

template <Activation act, typename T>
inline T finish_grad(T u) {
  if constexpr (act == Activation::Tanh) return T(1) - u * u;
  if constexpr (act == Activation::Sigmoid) return u * (T(1) - u);
  if constexpr (act == Activation::Relu) return select(u > T(0), T(1), T(0));
  return T(1);
}

template <Activation act>
using ActTag = std::integral_constant<Activation, act>;

// Calls fn(ActTag<act>{}), so the loop inside sees act as a compile-time
// constant (decltype(tag)::value).
template <typename Fn>
inline void dispatch_activation(Activation act, Fn&& fn) {
  switch (act) {
    case Activation::Tanh: return fn(ActTag<Activation::Tanh>{});
    case Activation::Sigmoid: return fn(ActTag<Activation::Sigmoid>{});
    case Activation::Relu: return fn(ActTag<Activation::Relu>{});
    default: return fn(ActTag<Activation::Identity>{});
  }
}

// Runs fn(row, col_begin, col_end, flat_offset) over the (rows x cols) elements,
// in parallel, each task a contiguous range of the flattened index.
template <typename Fn>
inline void for_rows(int64_t rows, int64_t cols, Fn&& fn) {
  if (rows == 0 || cols == 0) return;
  at::parallel_for(0, rows * cols, kGrain, [&](int64_t begin, int64_t end) {
    int64_t r = begin / cols, c = begin % cols;
    for (int64_t i = begin; i < end; ++r, c = 0) {
      const int64_t stop = std::min(cols, c + (end - i));
      fn(r, c, stop, i - c);
      i += stop - c;
    }
  });
}

}  // namespace naca::cpu
