// naca::learn::NACA (naca/learn/naca.h): torch_plugin/learn/{naca,stream,nonfinite}.py in C++,
// the same op calls on the same tensors in the same order, hence the same weights.
#include <naca/learn/naca.h>
#include <naca/nn/conv.h>
#include <naca/nn/linear.h>
#include <naca/nn/spiking.h>
#include <naca/ops.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/modules/container/sequential.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace naca::learn {
namespace {

constexpr const char* kWho = "naca::learn::NACA";

void check_scalar(const char* name, double v, bool ok, const char* want) {
  TORCH_CHECK(std::isfinite(v) && ok, kWho, ": argument '", name, "' expected a finite number", want,
              ", got ", v);
}

int64_t bits(double v) {
  int64_t out;
  std::memcpy(&out, &v, sizeof out);
  return out;
}

void push_tensor_meta(std::vector<int64_t>& key, const at::Tensor& t) {
  key.push_back(t.dim());
  for (int64_t s : t.sizes()) key.push_back(s);
  for (int64_t s : t.strides()) key.push_back(s);
  key.push_back(static_cast<int64_t>(t.scalar_type()));
  key.push_back(static_cast<int64_t>(t.device().type()));
  key.push_back(t.device().index());
}

// A zero tensor with t's shape, strides, dtype and device: a dry run's write target.
at::Tensor scratch(const at::Tensor& t) {
  return at::empty_strided(t.sizes(), t.strides(), t.options()).zero_();
}

// The tensor an op updates: the parameter, or (into_grad) its .grad, created as zeros.
at::Tensor target(const at::Tensor& p, bool into_grad) {
  if (!into_grad) return p;
  if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
  return p.grad();
}

std::optional<at::Tensor> opt(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// Restores the layers' recording state however the forward ends.
struct RecordingScope {
  std::vector<nn::Recording*> layers;
  std::vector<nn::NACASpikingLinearImpl*> spiking;
  ~RecordingScope() {
    for (auto* r : layers) {
      r->record_mode = nn::RecordMode::kOff;
      r->recorder = nullptr;
      r->record_slot = -1;
    }
    for (auto* s : spiking) {
      s->record = false;
      s->sink = nullptr;
    }
  }
};

std::string joined(const std::vector<std::string>& names, bool quote) {
  std::ostringstream out;
  for (size_t i = 0; i < names.size(); ++i)
    out << (i ? ", " : "") << (quote ? "'" : "") << names[i] << (quote ? "'" : "");
  return out.str();
}

}  // namespace

struct NACA::StepState {
  at::Tensor y;
  double lr = 0.0;         // the ops' lr: -1 when the update goes to .grad
  bool into_grad = false;
  std::vector<bool> keep;  // per layer: its calls are kept, applied after the forward
  std::vector<int64_t> counts;
  std::vector<std::pair<int64_t, std::vector<at::Tensor>>> kept;  // in call order
  std::vector<int64_t> written;  // the layers updated during the forward
  at::Tensor logits;             // set when a validating forward already ran
  at::Tensor valid;  // spiking models, unchecked labels: (B, 1) bool, the labels in [0, N)
};

// The layer's own members (the registered parameters: loading a state_dict copies into them).
at::Tensor NACA::Layer::weight() const {
  if (spiking != nullptr) return spiking->weight;
  switch (kind) {
    case LayerKind::kLinear: return static_cast<nn::NACALinearImpl*>(recording)->weight;
    case LayerKind::kConv2d: return static_cast<nn::NACAConv2dImpl*>(recording)->weight;
    case LayerKind::kOutput: return static_cast<nn::NACAOutputImpl*>(recording)->weight;
    default: break;
  }
  return {};
}

at::Tensor NACA::Layer::bias() const {
  if (spiking != nullptr) return spiking->bias;
  switch (kind) {
    case LayerKind::kLinear: return static_cast<nn::NACALinearImpl*>(recording)->bias;
    case LayerKind::kConv2d: return static_cast<nn::NACAConv2dImpl*>(recording)->bias;
    case LayerKind::kOutput: return static_cast<nn::NACAOutputImpl*>(recording)->bias;
    default: break;
  }
  return {};
}

NACA::NACA(torch::nn::Sequential model, NACAOptions options)
    : model_(model.ptr()),
      forward_([seq = model.ptr()](const at::Tensor& x) { return seq->forward(x); }),
      options_(std::move(options)) {
  init();
}

NACA::NACA(std::shared_ptr<torch::nn::Module> model, std::function<at::Tensor(const at::Tensor&)> forward,
           NACAOptions options)
    : model_(std::move(model)), forward_(std::move(forward)), options_(std::move(options)) {
  TORCH_CHECK(model_ != nullptr, kWho, ": argument 'model' is empty");
  TORCH_CHECK(static_cast<bool>(forward_), kWho, ": argument 'forward' is empty");
  init();
}

void NACA::init() {
  TORCH_CHECK(model_ != nullptr, kWho, ": argument 'model' is empty");
  check_scalar("lr", options_.lr(), options_.lr() >= 0, " >= 0");
  check_scalar("lam", options_.lam(), options_.lam() > 0, " > 0");
  check_scalar("theta", options_.theta(), true, "");

  // The trained layers in module order (pre-order, each module once), the output layer last.
  std::vector<Layer> hidden, outputs, s_hidden, s_outputs;
  std::unordered_set<const torch::nn::Module*> seen;
  for (const auto& item : model_->named_modules()) {
    const auto& m = item.value();
    if (!seen.insert(m.get()).second) continue;
    const std::string name = item.key().empty() ? "(the model)" : item.key();
    if (auto* l = dynamic_cast<nn::NACALinearImpl*>(m.get())) {
      hidden.push_back({m, l, LayerKind::kLinear, name});
    } else if (auto* c = dynamic_cast<nn::NACAConv2dImpl*>(m.get())) {
      hidden.push_back({m, c, LayerKind::kConv2d, name});
    } else if (auto* o = dynamic_cast<nn::NACAOutputImpl*>(m.get())) {
      outputs.push_back({m, o, LayerKind::kOutput, name});
    } else if (auto* s = dynamic_cast<nn::NACASpikingLinearImpl*>(m.get())) {
      (s->options.is_output() ? s_outputs : s_hidden)
          .push_back({m, nullptr, s->options.is_output() ? LayerKind::kSpikingOutput : LayerKind::kSpikingHidden,
                      name, s});
    } else if (dynamic_cast<nn::Recording*>(m.get()) != nullptr) {
      // Another kind of trained layer (its rule is not one of this learner's): a further kind
      // joins LayerKind, is recognised here and gets its update in write_update.
      std::ostringstream what;
      m->pretty_print(what);
      TORCH_CHECK(false, kWho, ": the model's module '", name, "' (", what.str(),
                  ") is a layer this learner does not train; it trains NACALinear, NACAConv2d and one "
                  "NACAOutput, or NACASpikingLinear layers");
    }
  }
  spiking_ = !s_hidden.empty() || !s_outputs.empty();
  if (spiking_) {
    const size_t ann = hidden.size() + outputs.size();
    TORCH_CHECK(ann == 0, kWho, ": argument 'model' mixes spiking (NACASpikingLinear) and non-spiking NACA "
                "layers (", ann, " NACALinear / NACAConv2d / NACAOutput), which is not supported");
    hidden = std::move(s_hidden);
    outputs = std::move(s_outputs);
  } else {
    TORCH_CHECK(!options_.membrane_chain(), kWho, ": argument 'membrane_chain' expected false for a model "
                "without NACASpikingLinear layers (the membrane chain is a spiking rule), got true");
    std::vector<std::string> unbounded;
    for (const auto& l : hidden) {
      const std::string& act = l.kind == LayerKind::kLinear
                                   ? static_cast<nn::NACALinearImpl*>(l.recording)->options.activation()
                                   : static_cast<nn::NACAConv2dImpl*>(l.recording)->options.activation();
      const auto& ok = nn::naca_activations();
      if (std::find(ok.begin(), ok.end(), act) == ok.end()) unbounded.push_back(l.name + " (" + act + ")");
    }
    if (!unbounded.empty()) {
      TORCH_WARN(kWho, ": the hidden rule has no fixed point for unbounded activations, whose activity grows "
                 "without limit until the output layer saturates and stops learning: ", joined(unbounded, false),
                 ". Use 'tanh' or 'sigmoid'; see docs/activations.md");
    }
  }
  if (options_.hidden_only()) {
    TORCH_CHECK(outputs.empty() && !hidden.empty(), kWho, ": argument 'hidden_only' (true) expected a model with "
                "hidden layers and no output layer, found ", hidden.size(), " hidden and ", outputs.size(),
                " output");
  } else if (spiking_) {
    TORCH_CHECK(outputs.size() == 1, kWho, ": argument 'model' expected exactly one NACASpikingLinear with "
                "is_output=true (a spiking model's output layer), found ", outputs.size());
  } else {
    TORCH_CHECK(outputs.size() == 1, kWho, ": argument 'model' expected exactly one NACAOutput layer, found ",
                outputs.size());
  }
  const auto classes = [](const Layer& l) -> int64_t {
    if (l.spiking != nullptr) return l.spiking->options.num_classes();
    switch (l.kind) {
      case LayerKind::kLinear: return static_cast<nn::NACALinearImpl*>(l.recording)->options.num_classes();
      case LayerKind::kConv2d: return static_cast<nn::NACAConv2dImpl*>(l.recording)->options.num_classes();
      default: return static_cast<nn::NACAOutputImpl*>(l.recording)->options.num_classes();
    }
  };
  num_classes_ = classes(outputs.empty() ? hidden[0] : outputs[0]);
  for (const auto& l : hidden) {
    const int64_t n = classes(l);
    TORCH_CHECK(n == num_classes_, kWho, ": hidden layer '", l.name, "' has num_classes=", n, " but the ",
                outputs.empty() ? "first hidden" : "output", " layer has ", num_classes_);
  }
  layers_ = std::move(hidden);
  if (!outputs.empty()) layers_.push_back(outputs[0]);

  // Every trainable parameter belongs to a trained layer (none would silently never learn).
  std::unordered_set<const void*> owned;
  for (const auto& l : layers_)
    for (const auto& p : l.module->parameters(false)) owned.insert(p.unsafeGetTensorImpl());
  std::vector<std::string> stray;
  for (const auto& item : model_->named_parameters())
    if (item.value().requires_grad() && !owned.count(item.value().unsafeGetTensorImpl()))
      stray.push_back(item.key());
  if (!stray.empty()) {
    std::ostringstream names;
    for (size_t i = 0; i < stray.size(); ++i) names << (i ? ", " : "") << "'" << stray[i] << "'";
    TORCH_CHECK(false, kWho, ": these trainable parameters belong to layers the learner cannot train (use "
                "naca::nn's layers, or set requires_grad(false) to freeze them): ", names.str());
  }
  if (options_.optimizer()) {
    std::unordered_set<const void*> held;
    for (const auto& group : options_.optimizer()->param_groups())
      for (const auto& p : group.params()) held.insert(p.unsafeGetTensorImpl());
    std::vector<std::string> missing;
    for (const auto& l : layers_)
      for (const auto& item : l.module->named_parameters(false))
        if (!held.count(item.value().unsafeGetTensorImpl())) missing.push_back(l.name + "." + item.key());
    if (!missing.empty()) {
      std::ostringstream names;
      for (size_t i = 0; i < missing.size(); ++i) names << (i ? ", " : "") << "'" << missing[i] << "'";
      TORCH_CHECK(false, kWho, ": argument 'optimizer' does not hold these parameters the learner trains: ",
                  names.str(), " (give it model->parameters(); to freeze a layer, put its parameters in a "
                  "param group with lr 0)");
    }
  }
  // Tied layers (a parameter another module also holds) wait for the end of the forward.
  std::unordered_map<const void*, int> owners;
  seen.clear();
  for (const auto& m : model_->modules()) {
    if (!seen.insert(m.get()).second) continue;
    for (const auto& p : m->parameters(false)) ++owners[p.unsafeGetTensorImpl()];
  }
  defer_.assign(layers_.size(), false);
  for (size_t i = 0; i < layers_.size(); ++i)
    for (const auto& p : layers_[i].module->parameters(false))
      if (owners[p.unsafeGetTensorImpl()] > 1) defer_[i] = true;
}

void NACA::check_inputs(const at::Tensor& x, const at::Tensor& y) const {
  TORCH_CHECK(x.defined(), kWho, "::step: argument 'x' expected a batch (B, ...), got an undefined tensor");
  TORCH_CHECK(y.defined(), kWho, "::step: argument 'y' expected int64 labels (B), got an undefined tensor");
  TORCH_CHECK(y.scalar_type() == at::kLong && y.dim() == 1, kWho,
              "::step: argument 'y' expected int64 labels of shape (B), got ", y.scalar_type(), " ", y.sizes());
  if (x.dim() <= 1) {
    TORCH_CHECK(false, kWho, "::step: argument 'x' expected a batch (B, ...) of ", y.size(0),
                " sample(s), as y, got shape ", x.sizes(), " (one sample: x.unsqueeze(0))");
  }
  TORCH_CHECK(x.size(0) == y.size(0), kWho, "::step: argument 'x' expected as many samples as y (",
              y.size(0), "), got shape ", x.sizes());
  // The labels' range, read once per step before anything is written; the ops then skip theirs.
  if (options_.check_labels() && y.numel() > 0) {
    const auto [lo_t, hi_t] = at::aminmax(y);
    const int64_t lo = lo_t.item<int64_t>(), hi = hi_t.item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < num_classes_, kWho, "::step: argument 'y' expected labels in [0, ", num_classes_,
                "), got values in [", lo, ", ", hi, "]");
  }
}

std::vector<int64_t> NACA::signature(const at::Tensor& x, const at::Tensor& y, bool into_grad) const {
  std::vector<int64_t> key;
  key.reserve(16 + 12 * layers_.size());
  push_tensor_meta(key, x);
  key.push_back(static_cast<int64_t>(y.device().type()));
  key.push_back(y.device().index());
  key.push_back(bits(options_.lr()));
  key.push_back(into_grad);
  key.push_back(bits(options_.lam()));
  key.push_back(bits(options_.theta()));
  key.push_back(options_.all_steps());
  key.push_back(options_.membrane_chain());
  for (const auto& l : layers_) push_tensor_meta(key, l.weight());
  return key;
}

at::Tensor NACA::step(const at::Tensor& x, const at::Tensor& y) {
  check_inputs(x, y);
  const bool guard = options_.skip_nonfinite();
  const auto& optimizer = options_.optimizer();
  StepState st;
  st.y = y;
  st.into_grad = optimizer != nullptr || guard;
  st.lr = st.into_grad ? -1.0 : options_.lr();
  prepare(st, x, y);
  const std::vector<at::Tensor> params = (optimizer || guard) ? trained_params() : std::vector<at::Tensor>{};
  if (optimizer) {
    optimizer->zero_grad(/*set_to_none=*/false);
  } else if (guard) {
    for (auto& p : params) {
      if (p.grad().defined()) {
        p.mutable_grad().zero_();
      } else {
        p.mutable_grad() = at::zeros_like(p);
      }
    }
  }
  at::Tensor logits = run(st, x);
  bool finite = true;
  if (guard) {
    std::vector<at::Tensor> flags;
    for (const auto& p : params) flags.push_back(at::isfinite(p.grad()).all());
    finite = flags.empty() || at::stack(flags).all().item<bool>();
  }
  if (!finite) {
    ++skipped_steps_;
  } else if (optimizer) {
    optimizer->step();
  } else if (guard) {
    at::NoGradGuard no_grad;
    for (auto& p : params) p.sub_(p.grad(), options_.lr());
  }
  ++steps_;
  return logits;
}

std::vector<at::Tensor> NACA::trained_params() const {
  std::vector<at::Tensor> out;
  std::unordered_set<const void*> seen;
  for (const auto& l : layers_) {
    for (const at::Tensor& p : {l.weight(), l.bias()})
      if (p.defined() && seen.insert(p.unsafeGetTensorImpl()).second) out.push_back(p);
  }
  return out;
}

void NACA::prepare(StepState& st, const at::Tensor& x, const at::Tensor& y) {
  if (!model_->is_training()) model_->train();
  // Unchecked labels on a spiking model: a sample whose label is out of range gets a zero
  // signal in every layer (f(NL) of its zero NL row is not zero, hence the mask).
  if (spiking_ && !options_.check_labels()) st.valid = ((y >= 0) & (y < num_classes_)).unsqueeze(1);
  const size_t n = layers_.size();
  st.counts.assign(n, 0);
  auto key = signature(x, y, st.into_grad);
  const auto found = signatures_.find(key);
  if (found != signatures_.end() && options_.streaming()) {
    st.keep.resize(n);
    for (size_t i = 0; i < n; ++i) st.keep[i] = defer_[i] || found->second[i] > 1;
    return;
  }
  st.keep.assign(n, true);
  st.logits = forward(st, x);
  check_calls(st);
  if (found == signatures_.end()) {
    // Every kept update into scratch tensors: the ops check all their arguments, nothing is written.
    for (const auto& [i, saved] : st.kept) {
      try {
        write_update(layers_[i], saved, st, /*dry=*/true);
      } catch (c10::Error& e) {
        e.add_context(std::string(kWho) + ": in the update of layer '" + layers_[i].name +
                      "'; nothing was written");
        throw;
      }
    }
    if (signatures_.size() >= 64) {  // shapes that keep changing: forget the oldest
      signatures_.erase(signature_order_.front());
      signature_order_.pop_front();
    }
    signatures_.emplace(key, st.counts);
    signature_order_.push_back(std::move(key));
    for (size_t i = 0; i < n; ++i) defer_[i] = defer_[i] || st.counts[i] > 1;
  }
}

at::Tensor NACA::forward(StepState& st, const at::Tensor& x) {
  RecordingScope scope;
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (nn::NACASpikingLinearImpl* s = layers_[i].spiking) {
      scope.spiking.push_back(s);
      s->record = true;
      s->sink = [this, slot = static_cast<int64_t>(i)](nn::NACASpikingLinearImpl& layer, nn::SpikingRecord r) {
        on_forward(slot, layer, {std::move(r.pre_spikes), std::move(r.voltages), std::move(r.spikes)});
      };
      continue;
    }
    nn::Recording* r = layers_[i].recording;
    scope.layers.push_back(r);
    r->record_mode = nn::RecordMode::kOutput;
    r->recorder = this;
    r->record_slot = static_cast<int64_t>(i);
  }
  st_ = &st;
  struct Reset {
    StepState*& p;
    ~Reset() { p = nullptr; }
  } reset{st_};
  at::NoGradGuard no_grad;
  return forward_(x);
}

void NACA::on_forward(int64_t slot, torch::nn::Module& /*layer*/, std::vector<at::Tensor> saved) {
  StepState& st = *st_;
  st.counts[slot] += 1;
  if (st.keep[slot]) {
    st.kept.emplace_back(slot, std::move(saved));
    return;
  }
  TORCH_CHECK(st.counts[slot] == 1, kWho, ": layer '", layers_[slot].name,
              "' ran twice in this forward but once in the first step with this input signature");
  write_update(layers_[slot], saved, st, /*dry=*/false);
  st.written.push_back(slot);
}

at::Tensor NACA::run(StepState& st, const at::Tensor& x) {
  at::Tensor logits = st.logits;
  if (!logits.defined()) {
    try {
      logits = forward(st, x);
    } catch (c10::Error& e) {
      if (!st.written.empty()) e.add_context(partial(st, std::string(kWho) + ": the error came during a streamed step"));
      throw;
    }
    check_calls(st);
  }
  for (const auto& [i, saved] : st.kept) write_update(layers_[i], saved, st, /*dry=*/false);
  return logits;
}

void NACA::check_calls(const StepState& st) const {
  for (size_t i = 0; i < st.counts.size(); ++i) {
    TORCH_CHECK(st.counts[i] > 0, partial(st, std::string(kWho) + ": layer '" + layers_[i].name +
                                                  "' was not used in the model's forward"));
  }
}

std::string NACA::partial(const StepState& st, const std::string& message) const {
  if (st.written.empty()) return message + "; nothing was written";
  std::vector<std::string> done;
  for (int64_t i : st.written) done.push_back(layers_[i].name);
  std::sort(done.begin(), done.end());
  done.erase(std::unique(done.begin(), done.end()), done.end());
  std::ostringstream out;
  out << message << "; the layers [";
  for (size_t i = 0; i < done.size(); ++i) out << (i ? ", " : "") << "'" << done[i] << "'";
  out << "] were already updated by this step (a forward whose layer calls or errors depend on the data: "
         "NACAOptions().streaming(false) keeps each step's whole forward before writing)";
  return out.str();
}

// The spiking layers' rules (torch_plugin/learn/stream.py, _spiking_update): saved is (input
// spikes (T, B, I), voltages (T, B, H), spikes (T, B, H)).
void NACA::write_spiking_update(const nn::NACASpikingLinearImpl& layer, bool is_output,
                                const std::vector<at::Tensor>& saved, const StepState& st, const at::Tensor& w,
                                const std::optional<at::Tensor>& b) const {
  const at::Tensor& pre = saved.at(0);
  const at::Tensor& volts = saved.at(1);
  const at::Tensor& spikes = saved.at(2);
  at::Tensor signal;
  bool all_steps = true;
  if (is_output) {  // its rate error, from every step
    const int64_t n = layer.options.num_classes();
    if (!st.valid.defined()) {
      signal = spikes.mean(0) - at::one_hot(st.y, n).to(spikes.scalar_type());
    } else {  // no one_hot (a device assert on CUDA for a bad label)
      const at::Tensor target = st.y.unsqueeze(1) == at::arange(n, st.y.options());
      signal = (spikes.mean(0) - target.to(spikes.scalar_type())) * st.valid;
    }
  } else {
    signal = ops::modulation(ops::neuromodulator(st.y, layer.ni, /*check_labels=*/false), options_.lam(),
                             options_.theta());
    if (st.valid.defined()) signal = signal * st.valid;
    all_steps = options_.all_steps();
  }
  if (options_.membrane_chain()) {
    const auto& lif = layer.lif->options;
    ops::naca_snn_chain_update_(w, b, pre, volts, spikes, signal, lif.decay(), lif.threshold(), layer.options.lens(),
                                lif.reset(), layer.options.current(), st.lr);
  } else {
    ops::naca_snn_update_(w, b, pre, volts, spikes, signal, layer.threshold(), layer.options.lens(), st.lr,
                          all_steps);
  }
}

void NACA::write_update(const Layer& layer, const std::vector<at::Tensor>& saved, const StepState& st,
                        bool dry) const {
  at::NoGradGuard no_grad;
  const at::Tensor weight = layer.weight(), bias = layer.bias();
  const at::Tensor w = dry ? scratch(weight) : target(weight, st.into_grad);
  const std::optional<at::Tensor> b =
      !bias.defined() ? std::nullopt : std::optional<at::Tensor>(dry ? scratch(bias) : target(bias, st.into_grad));
  const at::Tensor& pre = saved.at(0);
  const at::Tensor& out = saved.at(1);  // act(z) (act' is taken from it), or the logits
  const double lam = options_.lam(), theta = options_.theta();
  // The learner checked the labels' range already (check_labels), or they go unchecked.
  constexpr bool op_checks = false;
  switch (layer.kind) {
    case LayerKind::kSpikingHidden:
    case LayerKind::kSpikingOutput: {
      write_spiking_update(*layer.spiking, layer.kind == LayerKind::kSpikingOutput, saved, st, w, b);
      break;
    }
    case LayerKind::kOutput: {
      const auto& o = static_cast<const nn::NACAOutputImpl&>(*layer.recording);
      ops::naca_output_update_(w, b, pre, out, st.y, st.lr, o.options.sigmoid_grad(), op_checks);
      break;
    }
    case LayerKind::kConv2d: {
      const auto& c = static_cast<const nn::NACAConv2dImpl&>(*layer.recording);
      ops::naca_conv_update_(w, b, pre, out, st.y, c.ni, *c.options.stride(), *c.options.padding(),
                             *c.options.dilation(), c.options.groups(), c.options.activation(), st.lr, lam, theta,
                             /*from_output=*/true, op_checks);
      break;
    }
    case LayerKind::kLinear: {
      const auto& l = static_cast<const nn::NACALinearImpl&>(*layer.recording);
      // A large output (>= 1 MiB, batch >= 16) is updated in 8 consecutive batch slices, so the
      // op's delta (one more tensor of the output's size) is an eighth of it; the same slices as
      // torch_plugin.learn.stream.batch_chunks, hence the same rounding.
      constexpr int64_t kChunks = 8, kChunkMinBytes = int64_t{1} << 20;
      const int64_t batch = out.size(0);
      if (batch < 2 * kChunks || out.numel() * static_cast<int64_t>(out.element_size()) < kChunkMinBytes) {
        ops::naca_hidden_update_(w, b, pre, out, st.y, l.ni, l.options.activation(), st.lr, lam, theta,
                                 /*from_output=*/true, op_checks);
      } else {
        const int64_t rows = (batch + kChunks - 1) / kChunks;
        for (int64_t b0 = 0; b0 < batch; b0 += rows) {
          const int64_t b1 = std::min(b0 + rows, batch);
          ops::naca_hidden_update_(w, b, pre.slice(0, b0, b1), out.slice(0, b0, b1), st.y.slice(0, b0, b1), l.ni,
                                   l.options.activation(), st.lr, lam, theta, /*from_output=*/true, op_checks);
        }
      }
      break;
    }
  }
}

}  // namespace naca::learn
