// Scalar math of the NACA and SBP rules, written once and shared by the CPU
// kernels (csrc/cpu) and the CUDA kernels (cuda/). Everything here is a pure
// function of its arguments, inline and __host__ __device__.
#pragma once

#include <cmath>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define NACA_HD __host__ __device__ __forceinline__
#else
#define NACA_HD inline
#endif

namespace naca {

// Activation of a layer, by the name the Python side passes ("tanh", ...).
enum class Activation : int { Identity = 0, Tanh = 1, Sigmoid = 2, Relu = 3 };

// The NACA modulation curve f(x) of ALGORITHMS.md 1.3. Piecewise quadratic,
// odd about lam (f(2 lam - x) = -f(x)): f(0) = 1, max theta at lam / 4,
// f(lam) = 0, min -theta at 7 lam / 4.
template <typename T>
NACA_HD T modulation(T x, T lam, T theta) {
  const T l2 = lam * lam;
  if (x <= lam / T(2)) {
    const T d = T(4) * x - lam;
    return theta - (theta - T(1)) * d * d / l2;
  }
  if (x <= lam) {
    const T d = x - lam;
    return T(4) * d * d / l2;
  }
  if (x <= T(3) * lam / T(2)) {
    const T d = lam - x;
    return -T(4) * d * d / l2;
  }
  const T d = T(4) * (T(2) * lam - x) - lam;
  return (theta - T(1)) * d * d / l2 - theta;
}

template <typename T>
NACA_HD T sigmoid(T z) {
  return T(1) / (T(1) + std::exp(-z));
}

// phi'(z) of the activation, from the pre-activation z.
template <typename T>
NACA_HD T activation_grad(T z, Activation act) {
  switch (act) {
    case Activation::Tanh: {
      const T t = std::tanh(z);
      return T(1) - t * t;
    }
    case Activation::Sigmoid: {
      const T s = sigmoid(z);
      return s * (T(1) - s);
    }
    case Activation::Relu:
      return z > T(0) ? T(1) : T(0);
    default:
      return T(1);
  }
}

// Neuromodulator level of a hidden unit for a sample of class c:
// NL = (NI[k_c] + NI[k_c + 1]) / 2, the row c of the expectation matrix E
// (0.5 at columns k_c and k_c + 1) times NI.
template <typename T>
NACA_HD T neuromodulator_level(T ni_at_k, T ni_at_k1) {
  return (ni_at_k + ni_at_k1) / T(2);
}

}  // namespace naca
