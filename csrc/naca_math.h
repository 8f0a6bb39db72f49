// Scalar math of the NACA and SBP rules, written once and shared by the CPU
// kernels (csrc/cpu) and the CUDA kernels (cuda/). Everything here is a pure
// function of its arguments, inline and __host__ __device__. The forms are
// branch-free (select below) so that the CPU loops built on them vectorize;
// on the device select is a plain conditional. Same formula, same rounding:
// the CPU emulation of the CUDA kernels (tests/test_cuda_emu.py) asks for
// bit-identical results wherever both backends evaluate these functions.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define NACA_HD __host__ __device__ __forceinline__
#else
#define NACA_HD inline
#endif

namespace naca {

// c ? a : b. On the host, a bit blend: with GCC's default -ftrapping-math a float
// ?: in a loop stays a branch and blocks vectorization; this does not.
// (memcpy, not C++20 std::bit_cast, which nvcc's device code lacks.)
template <typename T>
NACA_HD T select(bool c, T a, T b) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return c ? a : b;
#else
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
#endif
}

// Activation of a layer, by the name the Python side passes ("tanh", ...).
enum class Activation : int { Identity = 0, Tanh = 1, Sigmoid = 2, Relu = 3 };

// The NACA modulation curve f(x) of docs/algorithms.md §1.3. Piecewise quadratic,
// odd about lam (f(2 lam - x) = -f(x)): f(0) = 1, max theta at lam / 4,
// f(lam) = 0, min -theta at 7 lam / 4. Every piece has the form a + b d^2 / lam^2:
//   x <= lam/2:    theta - (theta - 1) (4x - lam)^2 / lam^2
//   x <= lam:      4 (x - lam)^2 / lam^2
//   x <= 3 lam/2:  -4 (lam - x)^2 / lam^2
//   else:          (theta - 1) (4 (2 lam - x) - lam)^2 / lam^2 - theta
// The piece's (a, b, d) are selected first, so an element pays one division,
// not four (divisions bound the CPU loop).
template <typename T>
NACA_HD T modulation(T x, T lam, T theta) {
  const T l2 = lam * lam;
  const T d1 = T(4) * x - lam, d2 = x - lam, d3 = lam - x;
  const T d4 = T(4) * (T(2) * lam - x) - lam;
  const bool in1 = x <= lam / T(2), in2 = x <= lam, in3 = x <= T(3) * lam / T(2);
  const T d = select(in1, d1, select(in2, d2, select(in3, d3, d4)));
  const T b = select(in1, T(1) - theta, select(in2, T(4), select(in3, T(-4), theta - T(1))));
  const T a = select(in1, theta, select(in2, T(0), select(in3, T(0), -theta)));
  return a + b * d * d / l2;
}

template <typename T>
NACA_HD T sigmoid(T z) {
  return T(1) / (T(1) + std::exp(-z));
}

// phi'(z) from the activation's output h = act(z), as backprop's tanh/sigmoid
// backward does: 1 - h^2, h (1 - h), 1[h > 0], 1. No transcendental, and the
// caller need not keep z. With act a compile-time constant (the CPU loops).
template <Activation act, typename T>
NACA_HD T activation_grad_from_output(T h) {
  if constexpr (act == Activation::Tanh) {
    return T(1) - h * h;
  } else if constexpr (act == Activation::Sigmoid) {
    return h * (T(1) - h);
  } else if constexpr (act == Activation::Relu) {
    return select(h > T(0), T(1), T(0));
  } else {
    return T(1);
  }
}

template <typename T>
NACA_HD T activation_grad_from_output(T h, Activation act) {
  switch (act) {
    case Activation::Tanh: return activation_grad_from_output<Activation::Tanh>(h);
    case Activation::Sigmoid: return activation_grad_from_output<Activation::Sigmoid>(h);
    case Activation::Relu: return activation_grad_from_output<Activation::Relu>(h);
    default: return activation_grad_from_output<Activation::Identity>(h);
  }
}

// act(z). (The CPU kernels take tanh and sigmoid from ATen's vectorized kernels
// instead, then finish phi' with activation_grad_from_output.)
template <typename T>
NACA_HD T activation(T z, Activation act) {
  switch (act) {
    case Activation::Tanh: return std::tanh(z);
    case Activation::Sigmoid: return sigmoid(z);
    case Activation::Relu: return select(z > T(0), z, T(0));
    default: return z;
  }
}

// phi'(z) of the activation, from the pre-activation z: phi' of h = act(z).
template <typename T>
NACA_HD T activation_grad(T z, Activation act) {
  return activation_grad_from_output(activation(z, act), act);
}

// phi' from what the caller kept: z, or h = act(z) when from_output.
template <typename T>
NACA_HD T activation_grad(T u, Activation act, bool from_output) {
  return from_output ? activation_grad_from_output(u, act) : activation_grad(u, act);
}

// The NACA output layer's delta for one logit, from s = sigmoid(z): the error
// e = s - onehot (is_target: this logit is the sample's class), times
// sigmoid'(z) = s (1 - s) when sigmoid_grad (docs/algorithms.md §1.4).
template <typename T>
NACA_HD T output_delta(T s, bool is_target, bool sigmoid_grad) {
  const T e = s - select(is_target, T(1), T(0));
  return sigmoid_grad ? e * activation_grad_from_output<Activation::Sigmoid>(s) : e;
}

// A class label that indexes NI / a one-hot row: in [0, classes). The ops told not
// to check their labels (check_labels=false) give a sample outside it a zero row
// instead of reading out of bounds.
NACA_HD bool label_in_range(int64_t c, int64_t classes) { return c >= 0 && c < classes; }

// Neuromodulator level of a hidden unit for a sample of class c:
// NL = (NI[k_c] + NI[k_c + 1]) / 2, the row c of the expectation matrix E
// (0.5 at columns k_c and k_c + 1) times NI.
template <typename T>
NACA_HD T neuromodulator_level(T ni_at_k, T ni_at_k1) {
  return (ni_at_k + ni_at_k1) / T(2);
}

// ---- Spiking networks (docs/algorithms.md §1.5 and §2.2) ----

// One LIF step: V_t = decay * V_{t-1} * (1 - s_{t-1}) + I_t (hard reset) or
// V_t = decay * (V_{t-1} - threshold * s_{t-1}) + I_t (soft reset).
template <typename T>
NACA_HD T lif_voltage(T v_prev, T s_prev, T current, T decay, T threshold, bool soft_reset) {
  const T kept = soft_reset ? v_prev - threshold * s_prev : v_prev * (T(1) - s_prev);
  return decay * kept + current;
}

// The spike of a membrane potential: 1 when V > threshold (strict).
template <typename T>
NACA_HD T lif_spike(T v, T threshold) {
  return select(v > threshold, T(1), T(0));
}

// NACA-SNN simplified-STDP eligibility e_t = 1[V_t > threshold - lens] - s_{t-1}.
template <typename T>
NACA_HD T snn_eligibility(T v, T s_prev, T threshold, T lens) {
  return select(v > threshold - lens, T(1), T(0)) - s_prev;
}

// The membrane chain of the authors' class-incremental SNN code, which sends a
// gradient G into the last step's spikes and lets autograd carry it back
// through the membrane recurrence, with e_t as the spike's pseudo-derivative
// ds_t/dV_t. g_t = dL/dV_t: g_{T-1} = G e_{T-1}, g_{t-1} = g_t * lif_chain(...):
// dV_t/dV_{t-1} through both the decay and the reset by s_{t-1}.
template <typename T>
NACA_HD T lif_chain(T v_prev, T s_prev, T e_prev, T decay, T threshold, bool soft_reset) {
  return soft_reset ? decay * (T(1) - threshold * e_prev)
                    : decay * ((T(1) - s_prev) - v_prev * e_prev);
}

// The current I_t that drove V_t, recovered from the voltages (no need to keep it):
// I_t = V_t - lif_voltage(V_{t-1}, s_{t-1}, 0).
template <typename T>
NACA_HD T lif_current(T v, T v_prev, T s_prev, T decay, T threshold, bool soft_reset) {
  return v - lif_voltage(v_prev, s_prev, T(0), decay, threshold, soft_reset);
}

// dI/da for the input current I = a (linear) or I = sigmoid(a), from I itself.
template <typename T>
NACA_HD T current_grad(T current, bool sigmoid_current) {
  return sigmoid_current ? current * (T(1) - current) : T(1);
}

// An exponential spike trace: x_t = decay * x_{t-1} + s_t (decay = exp(-dt / tau)).
template <typename T>
NACA_HD T trace_step(T trace_prev, T spike, T decay) {
  return decay * trace_prev + spike;
}

// STDP's two sums over time and batch, ltp = sum_t (m post_t)^T xpre_t and
// ltd = sum_t (m ypost_t)^T pre_t, with the forward traces xpre_t = sum_{s<=t}
// d_pre^{t-s} pre_s and ypost_t = F_t = sum_{s<=t} d_post^{t-s} post_s. Swapping
// the order of the double sum, ltp = sum_s (m G_s)^T pre_s with G the backward
// trace of the post spikes, G_s = post_s + d_pre G_{s+1}. Both sums are then
// products with pre_t itself: no trace of the (usually wider) presynaptic side,
// and where only a_plus ltp - a_minus ltd is needed (hard or no bounds) one GEMM
// of stdp_factor(G_t, F_t) with pre_t gives it.
template <typename T>
NACA_HD T stdp_factor(T bwd, T fwd, T m, T a_plus, T a_minus) {
  return m * (a_plus * bwd - a_minus * fwd);
}

// The two factors kept apart (soft bounds weight ltp and ltd by different
// functions of w): m G_t for ltp and m F_t for ltd, in place.
template <typename T>
NACA_HD void stdp_split_factors(T& bwd, T& fwd, T m) {
  bwd = m * bwd;
  fwd = m * fwd;
}

// One Tsodyks-Markram short-term plasticity step (time in steps) for a spike s,
// in this order, each update using the values just computed (the authors' code):
// u += -u / tau_f + U s (1 - u); x += (1 - x) / tau_d - u x s; I += -I / tau_s + A u x s.
template <typename T>
NACA_HD void stp_step(T& u, T& x, T& current, T s, T U, T tau_f, T tau_d, T tau_s, T A) {
  u = u - u / tau_f + U * s * (T(1) - u);
  x = x + (T(1) - x) / tau_d - u * x * s;
  current = current - current / tau_s + A * u * x * s;
}

// v clamped to [0, 1] as torch.clamp(v, 0, 1): NaN stays NaN.
template <typename T>
NACA_HD T clamp01(T v) {
  return v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
}

// One homeostatic relaxation step of SBP: s <- clamp01(s - eps (s - drive)).
template <typename T>
NACA_HD T relax_step(T s, T drive, T eps) {
  return clamp01(s - eps * (s - drive));
}

// Weight bounds of STDP.
enum class Bound : int { None = 0, Hard = 1, Soft = 2 };

// One STDP weight step from the summed potentiation ltp = sum post * pre_trace and
// depression ltd = sum post_trace * pre:
// w + lr * (a_plus * ltp * g+(w) - a_minus * ltd * g-(w)); soft bounds scale by
// g+ = w_max - w, g- = w - w_min, hard bounds clamp to [w_min, w_max].
template <typename T>
NACA_HD T stdp_weight(T w, T ltp, T ltd, T a_plus, T a_minus, T lr, T w_min, T w_max, Bound bound) {
  const T gp = bound == Bound::Soft ? w_max - w : T(1);
  const T gm = bound == Bound::Soft ? w - w_min : T(1);
  T out = w + lr * (a_plus * ltp * gp - a_minus * ltd * gm);
  if (bound == Bound::Hard) out = out < w_min ? w_min : (out > w_max ? w_max : out);
  return out;
}

}  // namespace naca
