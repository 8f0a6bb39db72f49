// naca_equiv: trains a model with the C++ API from a case written by Python, for
// tests/test_cpp_equivalence.py, which trains the same model from the same weights on the
// same batches with torch_plugin and compares.
//
//   naca_equiv <case.pt> <result.pt>
//
// case.pt (torch.save of a dict): "kind" (the builder: "mlp", "conv_net", "sequential",
// "spiking_mlp", "sbp_snn", "sbp_ann"), "args" (the builder's arguments), "init_seed"
// (torch::manual_seed before building), "learner" ("kind": "naca" (default) or "sbp"; NACA: lr,
// lam, theta, optimizer: "none" | "sgd" | "adam", opt_lr, momentum, streaming, skip_nonfinite,
// check_labels, all_steps, membrane_chain, hidden_only; SBP: lr, fraction, percentage, seed,
// beta, alpha, relax_steps, eps, local_rule, skip_nonfinite), "state" (name -> tensor, loaded
// before training), "x", "y" (the batches). result.pt (torch::pickle_save): "built" (the state as built from init_seed),
// "state" (after training), "logits" (per step), "steps", "skipped_steps".
// Each further kind of model is one more branch in build().
#include <naca/naca.h>
#include <torch/torch.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Dict = c10::Dict<c10::IValue, c10::IValue>;

const c10::IValue& field(const Dict& d, const std::string& key) {
  auto it = d.find(key);
  if (it == d.end()) throw std::runtime_error("naca_equiv: the case has no '" + key + "'");
  return it->value();
}

template <typename T>
T get(const Dict& d, const std::string& key, T fallback) {
  auto it = d.find(key);
  if (it == d.end() || it->value().isNone()) return fallback;
  if constexpr (std::is_same_v<T, double>) return it->value().toDouble();
  if constexpr (std::is_same_v<T, int64_t>) return it->value().toInt();
  if constexpr (std::is_same_v<T, bool>) return it->value().toBool();
  if constexpr (std::is_same_v<T, std::string>) return it->value().toStringRef();
}

std::optional<int64_t> opt_int(const Dict& d, const std::string& key) {
  auto it = d.find(key);
  if (it == d.end() || it->value().isNone()) return std::nullopt;
  return it->value().toInt();
}

std::optional<bool> opt_bool(const Dict& d, const std::string& key) {
  auto it = d.find(key);
  if (it == d.end() || it->value().isNone()) return std::nullopt;
  return it->value().toBool();
}

std::vector<int64_t> ints(const c10::IValue& v) {
  std::vector<int64_t> out;
  if (v.isInt()) {
    out.push_back(v.toInt());
  } else if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) out.push_back(e.toInt());
  } else {
    for (const auto& e : v.toListRef()) out.push_back(e.toInt());
  }
  return out;
}

std::vector<double> doubles(const c10::IValue& v) {
  std::vector<double> out;
  if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) out.push_back(e.toDouble());
  } else {
    for (const auto& e : v.toListRef()) out.push_back(e.toDouble());
  }
  return out;
}

naca::models::SpikingMLPOptions spiking_options(const Dict& a) {
  return naca::models::SpikingMLPOptions()
      .T(get<int64_t>(a, "T", 20))
      .seed(opt_int(a, "seed"))
      .decay(get<double>(a, "decay", 0.2))
      .threshold(get<double>(a, "threshold", 0.5))
      .lens(get<double>(a, "lens", 0.5))
      .surrogate(get<bool>(a, "surrogate", true))
      .slope(get<double>(a, "slope", 5.0))
      .init_gain(get<double>(a, "init_gain", 1.0))
      .ni_init(get<std::string>(a, "ni_init", "uniform"))
      .stp(get<bool>(a, "stp", false))
      .current(get<std::string>(a, "current", "linear"))
      .bias(get<bool>(a, "bias", true))
      .output_bias(opt_bool(a, "output_bias"));
}

torch::nn::Sequential build(const std::string& kind, const Dict& a) {
  if (kind == "spiking_mlp") {
    return naca::models::spiking_mlp(get<int64_t>(a, "in_features", 0), ints(field(a, "hidden")),
                                     get<int64_t>(a, "num_classes", 0), spiking_options(a));
  }
  if (kind == "sbp_snn") {
    return naca::models::sbp_snn(get<int64_t>(a, "in_features", 0), get<int64_t>(a, "hidden", 0),
                                 get<int64_t>(a, "num_classes", 0), spiking_options(a));
  }
  if (kind == "sbp_ann") {
    return naca::models::sbp_ann(get<int64_t>(a, "in_features", 0), get<int64_t>(a, "hidden", 0),
                                 get<int64_t>(a, "num_classes", 0),
                                 naca::models::SBPANNOptions()
                                     .activation(get<std::string>(a, "activation", "sigmoid"))
                                     .seed(opt_int(a, "seed"))
                                     .bias(get<bool>(a, "bias", true))
                                     .output_bias(opt_bool(a, "output_bias")));
  }
  if (kind == "mlp") {
    return naca::models::mlp(get<int64_t>(a, "in_features", 0), ints(field(a, "hidden")),
                             get<int64_t>(a, "num_classes", 0),
                             naca::models::MLPOptions()
                                 .activation(get<std::string>(a, "activation", "tanh"))
                                 .ni_init(get<std::string>(a, "ni_init", "uniform"))
                                 .seed(opt_int(a, "seed"))
                                 .sigmoid_grad(get<bool>(a, "sigmoid_grad", true))
                                 .bias(get<bool>(a, "bias", true))
                                 .output_bias(opt_bool(a, "output_bias")));
  }
  if (kind == "conv_net") {
    naca::models::ConvNetOptions o;
    if (a.contains("channels")) o.channels(ints(field(a, "channels")));
    o.hidden(get<int64_t>(a, "hidden", 1000))
        .activation(get<std::string>(a, "activation", "tanh"))
        .seed(opt_int(a, "seed"))
        .bias(get<bool>(a, "bias", true))
        .output_bias(opt_bool(a, "output_bias"))
        .kernel_size(get<int64_t>(a, "kernel_size", 3));
    return naca::models::conv_net(ints(field(a, "in_shape")), get<int64_t>(a, "num_classes", 0), o);
  }
  if (kind == "sequential") {  // "layers": a list of {"type": ..., its options}
    const int64_t n = get<int64_t>(a, "num_classes", 0);
    torch::nn::Sequential seq;
    for (const auto& spec_v : field(a, "layers").toListRef()) {
      const Dict spec = spec_v.toGenericDict();
      const std::string type = get<std::string>(spec, "type", "");
      if (type == "flatten") {
        seq->push_back(torch::nn::Flatten());
      } else if (type == "linear") {
        seq->push_back(naca::nn::NACALinear(
            naca::nn::NACALinearOptions(get<int64_t>(spec, "in", 0), get<int64_t>(spec, "out", 0), n)
                .bias(get<bool>(spec, "bias", true))
                .activation(get<std::string>(spec, "activation", "tanh"))
                .ni_init(get<std::string>(spec, "ni_init", "uniform"))
                .seed(opt_int(spec, "seed"))));
      } else if (type == "output") {
        seq->push_back(naca::nn::NACAOutput(naca::nn::NACAOutputOptions(get<int64_t>(spec, "in", 0), n)
                                                .bias(get<bool>(spec, "bias", true))
                                                .sigmoid_grad(get<bool>(spec, "sigmoid_grad", true))));
      } else {
        throw std::runtime_error("naca_equiv: unknown layer type '" + type + "'");
      }
    }
    return seq;
  }
  throw std::runtime_error("naca_equiv: unknown kind '" + kind + "'");
}

c10::Dict<std::string, at::Tensor> state_of(const torch::nn::Module& m) {
  c10::Dict<std::string, at::Tensor> out;
  for (const auto& p : m.named_parameters()) out.insert(p.key(), p.value().detach().clone());
  for (const auto& b : m.named_buffers()) out.insert(b.key(), b.value().detach().clone());
  return out;
}

void load_state(torch::nn::Module& m, const Dict& state) {
  torch::NoGradGuard no_grad;
  int64_t loaded = 0;
  auto copy = [&](const std::string& name, at::Tensor& t) {
    auto it = state.find(name);
    if (it == state.end()) throw std::runtime_error("naca_equiv: the case's state has no '" + name + "'");
    t.copy_(it->value().toTensor());
    ++loaded;
  };
  for (auto& p : m.named_parameters()) copy(p.key(), p.value());
  for (auto& b : m.named_buffers()) copy(b.key(), b.value());
  if (loaded != static_cast<int64_t>(state.size()))
    throw std::runtime_error("naca_equiv: the case's state has entries the C++ model lacks");
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 3) {
    std::cerr << "usage: naca_equiv <case.pt> <result.pt>\n";
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) throw std::runtime_error(std::string("naca_equiv: cannot read ") + argv[1]);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const Dict c = torch::pickle_load(bytes).toGenericDict();

  torch::manual_seed(get<int64_t>(c, "init_seed", 0));
  torch::nn::Sequential model = build(get<std::string>(c, "kind", ""), field(c, "args").toGenericDict());
  const auto built = state_of(*model);
  load_state(*model, field(c, "state").toGenericDict());

  const Dict l = field(c, "learner").toGenericDict();
  const auto xs = field(c, "x").toListRef();
  const auto ys = field(c, "y").toListRef();
  c10::List<at::Tensor> logits;
  int64_t steps = 0, skipped = 0;
  if (get<std::string>(l, "kind", "naca") == "sbp") {
    naca::learn::SBPOptions o;
    auto lr = l.find("lr");
    if (lr != l.end() && !lr->value().isNone()) o.lr(lr->value().toDouble());
    if (l.contains("alpha")) o.alpha(doubles(field(l, "alpha")));
    o.fraction(get<double>(l, "fraction", 0.2))
        .percentage(get<double>(l, "percentage", 1.0))
        .seed(get<int64_t>(l, "seed", 0))
        .beta(get<double>(l, "beta", 0.5))
        .relax_steps(get<int64_t>(l, "relax_steps", 0))
        .eps(get<double>(l, "eps", 0.5))
        .local_rule(get<std::string>(l, "local_rule", "contrastive"))
        .skip_nonfinite(get<bool>(l, "skip_nonfinite", false));
    naca::learn::SBP learner(model, o);
    for (size_t i = 0; i < xs.size(); ++i) logits.push_back(learner.step(xs[i].toTensor(), ys[i].toTensor()));
    steps = learner.steps();
    skipped = learner.skipped_steps();
  } else {
    const std::string opt = get<std::string>(l, "optimizer", "none");
    std::shared_ptr<torch::optim::Optimizer> optimizer;
    if (opt == "adam") {
      optimizer = std::make_shared<torch::optim::Adam>(model->parameters(),
                                                        torch::optim::AdamOptions(get<double>(l, "opt_lr", 1e-3)));
    } else if (opt == "sgd") {
      optimizer = std::make_shared<torch::optim::SGD>(
          model->parameters(),
          torch::optim::SGDOptions(get<double>(l, "opt_lr", 1e-3)).momentum(get<double>(l, "momentum", 0.0)));
    } else if (opt != "none") {
      throw std::runtime_error("naca_equiv: unknown optimizer '" + opt + "'");
    }
    naca::learn::NACA learner(model, naca::learn::NACAOptions()
                                         .lr(get<double>(l, "lr", 1e-3))
                                         .lam(get<double>(l, "lam", 0.5))
                                         .theta(get<double>(l, "theta", 1.2))
                                         .optimizer(optimizer)
                                         .streaming(get<bool>(l, "streaming", true))
                                         .skip_nonfinite(get<bool>(l, "skip_nonfinite", false))
                                         .check_labels(get<bool>(l, "check_labels", true))
                                         .all_steps(get<bool>(l, "all_steps", true))
                                         .membrane_chain(get<bool>(l, "membrane_chain", false))
                                         .hidden_only(get<bool>(l, "hidden_only", false)));
    for (size_t i = 0; i < xs.size(); ++i) logits.push_back(learner.step(xs[i].toTensor(), ys[i].toTensor()));
    steps = learner.steps();
    skipped = learner.skipped_steps();
  }

  c10::impl::GenericDict out(c10::StringType::get(), c10::AnyType::get());
  out.insert("built", built);
  out.insert("state", state_of(*model));
  out.insert("logits", logits);
  out.insert("steps", steps);
  out.insert("skipped_steps", skipped);
  const std::vector<char> data = torch::pickle_save(out);
  std::ofstream(argv[2], std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
  return 0;
} catch (const std::exception& e) {
  std::cerr << e.what() << "\n";
  return 1;
}
