// naca::nn spiking layers (docs/algorithms.md §1.5 and §2.2), as torch_plugin.nn.spiking in
// Python: multi-step LIF neurons, a spiking linear layer NACA and SBP train, a seeded
// Bernoulli rate encoder, a spike-rate readout and Tsodyks-Markram short-term plasticity,
// plus the free functions stp_forward, homeostatic_relax and surrogate_spike.
//
// Sequences are time-major: (T, B, N). Each layer is a torch::nn module (an Impl class and
// TORCH_MODULE's holder, options in the torch::nn style). Parameters and buffers carry the
// Python names (`weight`, `bias`, `ni`; the LIF child `lif`), so a state_dict maps name for
// name between the languages. Every option is checked when the layer is built: c10::Error
// "naca::<Layer>: argument '<name>' expected ..., got ...", and nothing is built.
#pragma once

#include <naca/ops.h>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <tuple>

namespace naca::nn {

/// s = 1[v > threshold] with the sigmoid surrogate derivative
/// slope * sigmoid'(slope * (v - threshold)) when v needs a gradient (backprop through spikes).
torch::Tensor surrogate_spike(const torch::Tensor& v, double threshold = 0.5, double slope = 5.0);

/// Tsodyks-Markram short-term plasticity over a spike sequence (T, B, N) -> synaptic current
/// (T, B, N) (any (T, ...) too). Per step, in this order: u += -u/tau_f + U s (1 - u);
/// x += (1 - x)/tau_d - u x s; I += -I/tau_s + A u x s, from u = 0, x = 1, I = 0. Without a
/// gradient one fused op (naca::ops::stp_forward); when `spikes` needs a gradient, the same
/// arithmetic as a differentiable loop of elementwise torch ops over T.
torch::Tensor stp_forward(const torch::Tensor& spikes, double U = 0.45, double tau_f = 10.0,
                          double tau_d = 2.0, double tau_s = 2.0, double A = 1.0);

/// SBP's homeostatic membrane-potential relaxation of a hidden layer (docs/algorithms.md §2.2):
/// `iters` times s_h <- clamp01(s_h - eps (s_h - s_below W_below^T - s_above W_above - b_h)).
/// (post, pre) orientation as torch::nn::Linear: w_below (H, I), w_above (O, H); s_h (B, H),
/// s_below (B, I), s_above (B, O) or none (no top-down input; then w_above is not used), b_h (H)
/// or none. The drive is computed once; without a gradient the steps are one fused op
/// (naca::ops::homeostatic_relax), with one a differentiable loop. Returns (B, H).
torch::Tensor homeostatic_relax(const torch::Tensor& s_h, const torch::Tensor& s_below,
                                const torch::Tensor& w_below,
                                const std::optional<torch::Tensor>& s_above = std::nullopt,
                                const std::optional<torch::Tensor>& w_above = std::nullopt,
                                const std::optional<torch::Tensor>& b_h = std::nullopt,
                                double eps = 0.5, int64_t iters = 20);

// ---- LIF --------------------------------------------------------------------------------

/// Options of LIF. Checked when the layer is built: decay in [0, 1] (the share of the potential
/// kept per step; above 1 it grows without input), threshold finite, reset "hard" or "soft",
/// slope finite and > 0.
struct LIFOptions {
  TORCH_ARG(double, decay) = 0.2;
  TORCH_ARG(double, threshold) = 0.5;
  /// "hard": V_t = decay V_{t-1} (1 - s_{t-1}) + I_t; "soft" subtracts the threshold instead.
  TORCH_ARG(std::string, reset) = "hard";
  /// With a gradient needed: run the differentiable loop with the surrogate spike (BPTT);
  /// false: such a call throws.
  TORCH_ARG(bool, surrogate) = true;
  TORCH_ARG(double, slope) = 5.0;
};

/// Multi-step leaky integrate-and-fire neurons over a (T, B, N) current:
/// s_t = 1[V_t > threshold]. Without autograd (or under the learners) the whole sequence runs
/// in one fused op, naca::ops::lif_forward; when the current needs a gradient and `surrogate`
/// is set, the same dynamics run as a differentiable loop over T (reset path detached).
/// forward returns the spikes; run returns (spikes, voltages).
class LIFImpl : public torch::nn::Cloneable<LIFImpl> {
 public:
  explicit LIFImpl(const LIFOptions& options_ = {});
  void reset() override {}
  /// current (T, B, N); v_init, s_init (B, N) or none (zeros). Returns (spikes, voltages).
  std::tuple<torch::Tensor, torch::Tensor> run(
      const torch::Tensor& current, const std::optional<torch::Tensor>& v_init = std::nullopt,
      const std::optional<torch::Tensor>& s_init = std::nullopt);
  torch::Tensor forward(const torch::Tensor& current);
  void pretty_print(std::ostream& stream) const override;

  LIFOptions options;
};
TORCH_MODULE(LIF);

// ---- NACASpikingLinear --------------------------------------------------------------------

/// Options of NACASpikingLinear, as the Python constructor's arguments. Checked when the layer
/// is built: in_features, out_features >= 1, num_classes >= 2, out_features == num_classes
/// when is_output, the LIF options as LIFOptions, lens finite and >= 0, current "linear" or
/// "sigmoid", ni_init one of "uniform", "normal", "beta", "zeros".
struct NACASpikingLinearOptions {
  NACASpikingLinearOptions(int64_t in_features, int64_t out_features, int64_t num_classes)
      : in_features_(in_features), out_features_(out_features), num_classes_(num_classes) {}
  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  TORCH_ARG(int64_t, num_classes);
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(double, decay) = 0.2;
  TORCH_ARG(double, threshold) = 0.5;
  TORCH_ARG(std::string, reset) = "hard";
  /// The eligibility window of the NACA rule, 1[V > threshold - lens].
  TORCH_ARG(double, lens) = 0.5;
  /// The output layer (trained by its rate error mean_t s_t - onehot(y)).
  TORCH_ARG(bool, is_output) = false;
  TORCH_ARG(bool, surrogate) = true;
  TORCH_ARG(double, slope) = 5.0;
  /// NI's distribution: "uniform" U(0, 1), "normal" N(0.5, 1) clamped to [0, 1], "beta"
  /// Beta(0.5, 0.5) (as sin^2(pi U / 2)), "zeros".
  TORCH_ARG(std::string, ni_init) = "uniform";
  /// NI's seed (its own generator); none: torch's global RNG, as the weights.
  TORCH_ARG(std::optional<int64_t>, seed) = std::nullopt;
  /// "linear": I_t = W x_t + b; "sigmoid": I_t = sigmoid(W x_t + b).
  TORCH_ARG(std::string, current) = "linear";
};

/// What a recording forward of NACASpikingLinear keeps for its learner.
struct SpikingRecord {
  torch::Tensor pre_spikes;  // (T, B, I), the layer's input
  torch::Tensor voltages;    // (T, B, H)
  torch::Tensor spikes;      // (T, B, H)
};

/// A spiking layer: current I_t = W x_t + b (or sigmoid of it) fed to LIF neurons,
/// (T, B, I) -> (T, B, H) spikes. weight (H, I) and bias (H) are initialised as
/// torch::nn::Linear's (torch's global RNG); the fixed NI buffer `ni` is (2N, H).
/// Trained by naca::learn::NACA (naca_snn_update_), naca::learn::SBP, or backprop through
/// the surrogate spike of its `lif`.
class NACASpikingLinearImpl : public torch::nn::Cloneable<NACASpikingLinearImpl> {
 public:
  NACASpikingLinearImpl(int64_t in_features, int64_t out_features, int64_t num_classes)
      : NACASpikingLinearImpl(NACASpikingLinearOptions(in_features, out_features, num_classes)) {}
  explicit NACASpikingLinearImpl(const NACASpikingLinearOptions& options_);
  void reset() override;
  /// x (T, B, in_features) -> spikes (T, B, out_features).
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& stream) const override;
  double threshold() const { return options.threshold(); }

  NACASpikingLinearOptions options;
  torch::Tensor weight;  // (out_features, in_features)
  torch::Tensor bias;    // (out_features), undefined without a bias
  torch::Tensor ni;      // (2 num_classes, out_features)
  LIF lif{nullptr};

  /// Set by a learner around its forward: the forward then hands its SpikingRecord to `sink`
  /// when one is set, else keeps it in `saved`.
  bool record = false;
  std::optional<SpikingRecord> saved;
  std::function<void(NACASpikingLinearImpl&, SpikingRecord)> sink;
};
TORCH_MODULE(NACASpikingLinear);

// ---- BernoulliEncoder -----------------------------------------------------------------------

/// Options of BernoulliEncoder: T >= 1 time steps; seed: the encoder's own generator (none:
/// torch's global RNG).
struct BernoulliEncoderOptions {
  /* implicit */ BernoulliEncoderOptions(int64_t T = 20) : T_(T) {}
  TORCH_ARG(int64_t, T);
  TORCH_ARG(std::optional<int64_t>, seed) = std::nullopt;
};

/// Rate code: intensities x (B, ...) in [0, 1] -> spikes (T, B, prod(...)), x_t = 1[x > U(0, 1)].
/// With a seed the draws come from the encoder's own generator (one per device, seeded
/// identically, as Python's torch.Generator(device).manual_seed(seed)), so two encoders with
/// the same seed emit the same spike trains as each other and as the Python encoder; without
/// one, from torch's global RNG. Values outside [0, 1] are clamped.
class BernoulliEncoderImpl : public torch::nn::Cloneable<BernoulliEncoderImpl> {
 public:
  explicit BernoulliEncoderImpl(const BernoulliEncoderOptions& options_ = {});
  /// Restarts the encoder's generators from the seed.
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& stream) const override;

  BernoulliEncoderOptions options;

 private:
  std::map<std::string, at::Generator> generators_;
};
TORCH_MODULE(BernoulliEncoder);

// ---- SpikeRate ------------------------------------------------------------------------------

/// Firing-rate readout: spikes (T, B, N) -> mean over T, (B, N).
class SpikeRateImpl : public torch::nn::Cloneable<SpikeRateImpl> {
 public:
  SpikeRateImpl() = default;
  void reset() override {}
  torch::Tensor forward(const torch::Tensor& spikes);
  void pretty_print(std::ostream& stream) const override;
};
TORCH_MODULE(SpikeRate);

// ---- STPSynapse -----------------------------------------------------------------------------

/// Options of STPSynapse (docs/algorithms.md §2.2 constants). Checked when built: U in [0, 1]
/// (a utilisation fraction), A finite, and the time constants, in steps, >= 1 (between spikes
/// each step scales u, 1 - x and I by 1 - 1/tau, negative for tau < 1).
struct STPSynapseOptions {
  TORCH_ARG(double, U) = 0.45;
  TORCH_ARG(double, tau_f) = 10.0;
  TORCH_ARG(double, tau_d) = 2.0;
  TORCH_ARG(double, tau_s) = 2.0;
  TORCH_ARG(double, A) = 1.0;
};

/// Module form of stp_forward: spikes (T, B, N) -> STP-filtered current (T, B, N); each
/// sequence starts from u = 0, x = 1, I = 0, and the filter acts on the presynaptic spikes.
class STPSynapseImpl : public torch::nn::Cloneable<STPSynapseImpl> {
 public:
  explicit STPSynapseImpl(const STPSynapseOptions& options_ = {});
  void reset() override {}
  torch::Tensor forward(const torch::Tensor& spikes);
  void pretty_print(std::ostream& stream) const override;

  STPSynapseOptions options;
};
TORCH_MODULE(STPSynapse);

}  // namespace naca::nn
