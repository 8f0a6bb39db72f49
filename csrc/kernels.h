// Elementwise kernels, one set per backend (csrc/cpu, cuda/, csrc/meta). They read
// contiguous inputs and return a new contiguous tensor.
#pragma once

#include <ATen/ATen.h>

#include "naca_math.h"

namespace naca {

#define NACA_DECLARE_KERNELS(ns)                                                           \
  namespace ns {                                                                           \
  /* signal * act'(preact), preact's shape and dtype; from_output: preact holds */        \
  /* act(z), not z */                                                                      \
  at::Tensor activation_delta(const at::Tensor& preact, const at::Tensor& signal,          \
                              Activation act, bool from_output);                           \
  /* f((ni[k_y] + ni[k_y + 1]) / 2) * act'(preact), preact (B, F), ni (2N, F) */           \
  at::Tensor modulated_delta(const at::Tensor& preact, const at::Tensor& labels,           \
                             const at::Tensor& ni, const at::Tensor& slots, Activation act, \
                             bool from_output, double lam, double theta);                  \
  /* (sigmoid(z) - onehot(y)) * (sigmoid'(z) or 1), z (B, N); rows of labels outside */    \
  /* [0, N) are zero */                                                                    \
  at::Tensor output_delta(const at::Tensor& logits, const at::Tensor& labels,              \
                          bool sigmoid_grad);                                              \
  /* (ni[k_y] + ni[k_y + 1]) / 2, shape (B, F); 0 for a label outside [0, N) */            \
  at::Tensor neuromodulator(const at::Tensor& labels, const at::Tensor& ni,                \
                            const at::Tensor& slots);                                      \
  /* f(level), elementwise */                                                              \
  at::Tensor modulation(const at::Tensor& level, double lam, double theta);                \
  }

NACA_DECLARE_KERNELS(cpu)
NACA_DECLARE_KERNELS(cuda)
NACA_DECLARE_KERNELS(meta)  // shapes only (csrc/meta)

#undef NACA_DECLARE_KERNELS

}  // namespace naca
