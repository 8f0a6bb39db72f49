// Helpers the CPU elementwise kernels share to run at memory speed: the
// transcendental part of phi'(z) (tanh, sigmoid) comes from ATen's own kernels
// (SIMD-dispatched at run time for the host CPU), and the rest is naca_math.h's
// branch-free scalar math in a loop the compiler vectorizes (a branchy form
// would cost a mispredicted branch per element on random data). Every loop is
// split over rows so no element pays an integer division to find its row.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>

#include <algorithm>
#include <cstdint>
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

// A new tensor holding the part of phi'(z) computed by ATen: tanh(z),
// sigmoid(z), relu(z), or nothing (identity). activation_grad_from_output
// (naca_math.h) turns an element of it into phi'(z); the kernels then write
// their result over it in place, so a delta costs one B x H allocation.
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
