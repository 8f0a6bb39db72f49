// The public C++ API naca::ops (csrc/include/naca/ops.h): every wrapper, called
// with its defaults, gives bit for bit what the op gives through the dispatcher's
// boxed path with the schema's defaults (so the wrapper's C++ signature, argument
// order and defaults are the op's); every registered `naca` op has a case here;
// and on Meta tensors the wrappers return the right shapes and still check their
// arguments. (tests/test_cpp_header.py checks the header against the schemas and
// torch_plugin.ops' names and defaults.)
#include <gtest/gtest.h>
#include <naca/naca.h>
#include <torch/torch.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

namespace {

using Args = std::vector<c10::IValue>;

struct Case {
  const char* op;
  // The leading arguments (those the wrapper call below passes) on `device`.
  std::function<Args(const torch::Device&)> make;
  // Calls the naca::ops wrapper with exactly those arguments; returns its outputs.
  std::function<std::vector<at::Tensor>(const Args&)> wrapper;
  // The expected output shapes (checked on Meta).
  std::vector<std::vector<int64_t>> shapes;
};

torch::TensorOptions f64(const torch::Device& d) { return torch::dtype(torch::kFloat64).device(d); }

at::Tensor randn(std::vector<int64_t> shape, const torch::Device& d) {
  return torch::randn(shape, f64(torch::kCPU)).to(d);
}
at::Tensor rand(std::vector<int64_t> shape, const torch::Device& d) {
  return torch::rand(shape, f64(torch::kCPU)).to(d);
}
at::Tensor spikes(std::vector<int64_t> shape, const torch::Device& d) {
  return (torch::rand(shape, f64(torch::kCPU)) < 0.4).to(torch::kFloat64).to(d);
}
at::Tensor labels(int64_t batch, int64_t classes, const torch::Device& d) {
  return torch::arange(batch, torch::kLong).remainder(classes).to(d);
}

const at::Tensor& T(const Args& a, size_t i) { return a[i].toTensor(); }
std::optional<at::Tensor> OT(const Args& a, size_t i) {
  return a[i].isNone() ? std::nullopt : std::optional<at::Tensor>(a[i].toTensor());
}

std::vector<Case> cases() {
  using V = std::vector<at::Tensor>;
  const int64_t B = 6, I = 5, H = 4, N = 3, TT = 4;
  return {
      {"expectation_matrix", [](const torch::Device&) { return Args{int64_t{4}}; },
       [](const Args& a) { return V{naca::ops::expectation_matrix(a[0].toInt())}; }, {{4, 8}}},
      {"neuromodulator", [=](const torch::Device& d) { return Args{labels(B, N, d), rand({2 * N, H}, d)}; },
       [](const Args& a) { return V{naca::ops::neuromodulator(T(a, 0), T(a, 1))}; }, {{B, H}}},
      {"modulation", [](const torch::Device& d) { return Args{rand({7, 3}, d) * 2}; },
       [](const Args& a) { return V{naca::ops::modulation(T(a, 0))}; }, {{7, 3}}},
      {"plasticity_update_",
       [=](const torch::Device& d) {
         return Args{randn({H, I}, d), randn({H}, d), randn({B, I}, d), randn({B, H}, d),
                     randn({B, H}, d), std::string("tanh"), 0.1};
       },
       [](const Args& a) {
         naca::ops::plasticity_update_(T(a, 0), OT(a, 1), T(a, 2), T(a, 3), T(a, 4),
                                       a[5].toStringRef(), a[6].toDouble());
         return V{};
       },
       {}},
      {"naca_hidden_update_",
       [=](const torch::Device& d) {
         return Args{randn({H, I}, d), randn({H}, d), randn({B, I}, d), randn({B, H}, d),
                     labels(B, N, d), rand({2 * N, H}, d), std::string("sigmoid"), 0.1};
       },
       [](const Args& a) {
         naca::ops::naca_hidden_update_(T(a, 0), OT(a, 1), T(a, 2), T(a, 3), T(a, 4), T(a, 5),
                                        a[6].toStringRef(), a[7].toDouble());
         return V{};
       },
       {}},
      {"naca_output_update_",
       [=](const torch::Device& d) {
         return Args{randn({N, I}, d), randn({N}, d), randn({B, I}, d), randn({B, N}, d),
                     labels(B, N, d), 0.1};
       },
       [](const Args& a) {
         naca::ops::naca_output_update_(T(a, 0), OT(a, 1), T(a, 2), T(a, 3), T(a, 4), a[5].toDouble());
         return V{};
       },
       {}},
      // The schema has no defaults for the geometry, activation and lr; torch_plugin.ops
      // and the wrapper do: (1, 1), (0, 0), (1, 1), 1, 'tanh', 1e-3.
      {"conv_plasticity_update_",
       [](const torch::Device& d) {
         return Args{randn({4, 2, 3, 3}, d), randn({4}, d), randn({2, 2, 6, 6}, d),
                     randn({2, 4, 4, 4}, d), randn({2, 4, 4, 4}, d), std::vector<int64_t>{1, 1},
                     std::vector<int64_t>{0, 0}, std::vector<int64_t>{1, 1}, int64_t{1},
                     std::string("tanh"), 1e-3};
       },
       [](const Args& a) {
         naca::ops::conv_plasticity_update_(T(a, 0), OT(a, 1), T(a, 2), T(a, 3), T(a, 4));
         return V{};
       },
       {}},
      {"naca_conv_update_",
       [=](const torch::Device& d) {
         return Args{randn({4, 2, 3, 3}, d), randn({4}, d), randn({2, 2, 6, 6}, d),
                     randn({2, 4, 4, 4}, d), labels(2, N, d), rand({2 * N, 4, 4, 4}, d),
                     std::vector<int64_t>{1, 1}, std::vector<int64_t>{0, 0},
                     std::vector<int64_t>{1, 1}, int64_t{1}, std::string("tanh"), 1e-3};
       },
       [](const Args& a) {
         naca::ops::naca_conv_update_(T(a, 0), OT(a, 1), T(a, 2), T(a, 3), T(a, 4), T(a, 5));
         return V{};
       },
       {}},
      {"lif_forward", [=](const torch::Device& d) { return Args{rand({TT, B, H}, d)}; },
       [](const Args& a) {
         auto [s, v] = naca::ops::lif_forward(T(a, 0));
         return V{s, v};
       },
       {{TT, B, H}, {TT, B, H}}},
      {"naca_snn_update_",
       [=](const torch::Device& d) {
         return Args{randn({H, I}, d), randn({H}, d), spikes({TT, B, I}, d), rand({TT, B, H}, d),
                     spikes({TT, B, H}, d), randn({B, H}, d)};
       },
       [](const Args& a) {
         naca::ops::naca_snn_update_(T(a, 0), OT(a, 1), T(a, 2), T(a, 3), T(a, 4), T(a, 5));
         return V{};
       },
       {}},
      {"naca_snn_chain_update_",
       [=](const torch::Device& d) {
         return Args{randn({H, I}, d), randn({H}, d), spikes({TT, B, I}, d), rand({TT, B, H}, d),
                     spikes({TT, B, H}, d), randn({B, H}, d)};
       },
       [](const Args& a) {
         naca::ops::naca_snn_chain_update_(T(a, 0), OT(a, 1), T(a, 2), T(a, 3), T(a, 4), T(a, 5));
         return V{};
       },
       {}},
      {"stdp_update_",
       [=](const torch::Device& d) {
         return Args{rand({H, I}, d), spikes({TT, B, I}, d), spikes({TT, B, H}, d)};
       },
       [](const Args& a) {
         naca::ops::stdp_update_(T(a, 0), T(a, 1), T(a, 2));
         return V{};
       },
       {}},
      {"stp_forward", [=](const torch::Device& d) { return Args{spikes({TT, B, H}, d)}; },
       [](const Args& a) { return V{naca::ops::stp_forward(T(a, 0))}; }, {{TT, B, H}}},
      {"homeostatic_relax", [](const torch::Device& d) { return Args{rand({3, 5}, d), rand({3, 5}, d)}; },
       [](const Args& a) { return V{naca::ops::homeostatic_relax(T(a, 0), T(a, 1))}; }, {{3, 5}}},
      {"sbp_update_",
       [=](const torch::Device& d) {
         return Args{randn({H, I}, d), randn({N, H}, d), randn({H, I}, d), randn({N, H}, d)};
       },
       [](const Args& a) {
         naca::ops::sbp_update_(T(a, 0), T(a, 1), T(a, 2), T(a, 3));
         return V{};
       },
       {}},
  };
}

c10::OperatorHandle handle(const std::string& op) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(("naca::" + op).c_str(), "");
}

Args clone(const Args& args) {
  Args out;
  for (const auto& v : args) out.push_back(v.isTensor() ? c10::IValue(v.toTensor().clone()) : v);
  return out;
}

// Positions of the leading arguments the op writes in place ((a!) in its schema).
std::vector<size_t> written_args(const std::string& op, const Args& leading) {
  const auto& schema = handle(op).schema();
  std::vector<size_t> out;
  for (size_t i = 0; i < leading.size(); ++i) {
    const auto* alias = schema.arguments()[i].alias_info();
    if (alias && alias->isWrite() && leading[i].isTensor()) out.push_back(i);
  }
  return out;
}

// The op through the boxed path: the leading arguments, then the schema's defaults.
// Returns its outputs, then every argument it writes.
std::vector<at::Tensor> boxed(const std::string& op, const Args& leading) {
  const auto h = handle(op);
  const auto& schema = h.schema();
  torch::jit::Stack stack(leading.begin(), leading.end());
  for (size_t i = leading.size(); i < schema.arguments().size(); ++i) {
    const auto& def = schema.arguments()[i].default_value();
    EXPECT_TRUE(def.has_value()) << op << ": argument " << schema.arguments()[i].name()
                                 << " has no default in the schema";
    stack.push_back(def.value_or(c10::IValue()));
  }
  h.callBoxed(stack);
  std::vector<at::Tensor> out;
  for (const auto& v : stack) out.push_back(v.toTensor());
  for (size_t i : written_args(op, leading)) out.push_back(leading[i].toTensor());
  return out;
}

// The wrapper: its outputs, then every argument it writes.
std::vector<at::Tensor> via_wrapper(const Case& c, const Args& leading) {
  auto out = c.wrapper(leading);
  for (size_t i : written_args(c.op, leading)) out.push_back(leading[i].toTensor());
  return out;
}

TEST(OpsApi, EveryRegisteredOpHasACase) {
  std::set<std::string> registered, covered;
  for (const auto& name : c10::Dispatcher::singleton().getAllOpNames()) {
    if (name.name.rfind("naca::", 0) == 0) registered.insert(name.name.substr(6));
  }
  for (const auto& c : cases()) covered.insert(c.op);
  EXPECT_EQ(registered, covered);
}

TEST(OpsApi, WrappersWithTheirDefaultsMatchTheBoxedOpWithTheSchemaDefaults) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.op);
    torch::manual_seed(0);
    const auto args = c.make(torch::kCPU);
    const auto want = boxed(c.op, clone(args));
    const auto got = via_wrapper(c, clone(args));
    ASSERT_EQ(got.size(), want.size());
    ASSERT_FALSE(got.empty());
    for (size_t k = 0; k < got.size(); ++k) EXPECT_TRUE(torch::equal(got[k], want[k])) << "result " << k;
    // The in-place ops changed what they write (the comparison above is not vacuous).
    const auto written = written_args(c.op, args);
    const size_t first = got.size() - written.size();
    for (size_t k = 0; k < written.size(); ++k) {
      EXPECT_FALSE(torch::equal(got[first + k], args[written[k]].toTensor())) << "argument " << written[k];
    }
  }
}

TEST(OpsApi, MetaTensorsGiveShapesOnly) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.op);
    torch::manual_seed(0);
    const auto args = c.make(torch::kMeta);
    std::vector<at::Tensor> out;
    if (std::string(c.op) == "expectation_matrix") {
      out = {naca::ops::expectation_matrix(4, torch::kFloat64, torch::Device(torch::kMeta))};
    } else {
      ASSERT_NO_THROW(out = c.wrapper(args));
    }
    ASSERT_EQ(out.size(), c.shapes.size());
    for (size_t k = 0; k < out.size(); ++k) {
      EXPECT_TRUE(out[k].is_meta()) << "result " << k;
      EXPECT_EQ(out[k].sizes().vec(), c.shapes[k]) << "result " << k;
      EXPECT_EQ(out[k].scalar_type(), torch::kFloat64) << "result " << k;
    }
  }
}

TEST(OpsApi, MetaCallsStillCheckTheirArguments) {
  const auto m = torch::TensorOptions().device(torch::kMeta);
  const auto w = torch::empty({4, 3}, m);
  try {
    naca::ops::plasticity_update_(w, std::nullopt, torch::empty({2, 5}, m), torch::empty({2, 4}, m),
                                  torch::empty({2, 4}, m), "tanh", 0.1);
    FAIL() << "a wrong shape on Meta was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("naca::plasticity_update_: argument 'pre' expected shape"),
              std::string::npos)
        << e.what();
  }
  // Labels are not read on Meta (it has no values), their dtype is.
  EXPECT_THROW(naca::ops::neuromodulator(torch::empty({2}, m.dtype(torch::kInt)), torch::empty({6, 4}, m)),
               c10::Error);
  EXPECT_EQ(naca::ops::neuromodulator(torch::empty({2}, m.dtype(torch::kLong)), torch::empty({6, 4}, m))
                .sizes()
                .vec(),
            (std::vector<int64_t>{2, 4}));
}

TEST(OpsApi, PassesEveryArgumentThrough) {
  // Non-default values reach the op: the wrapper's result is the boxed call's, and not the
  // defaults' result.
  torch::manual_seed(0);
  const auto x = torch::rand({50}, torch::kFloat64) * 2;
  const auto got = naca::ops::modulation(x, 0.4, 1.5);
  auto stack = torch::jit::Stack{x, 0.4, 1.5};
  handle("modulation").callBoxed(stack);
  EXPECT_TRUE(torch::equal(got, stack[0].toTensor()));
  EXPECT_FALSE(torch::equal(got, naca::ops::modulation(x)));

  const auto w = torch::randn({4, 5}, torch::kFloat64), b = torch::randn({4}, torch::kFloat64);
  const auto pre = torch::randn({6, 5}, torch::kFloat64), z = torch::randn({6, 4}, torch::kFloat64);
  const auto y = torch::arange(6).remainder(3), ni = torch::rand({6, 4}, torch::kFloat64);
  auto w1 = w.clone(), b1 = b.clone(), w2 = w.clone(), b2 = b.clone();
  naca::ops::naca_hidden_update_(w1, b1, pre, z, y, ni, "relu", 0.3, 0.7, 1.4, true, false);
  auto s2 = torch::jit::Stack{w2, b2, pre, z, y, ni, std::string("relu"), 0.3, 0.7, 1.4, true, false};
  handle("naca_hidden_update_").callBoxed(s2);
  EXPECT_TRUE(torch::equal(w1, w2));
  EXPECT_TRUE(torch::equal(b1, b2));
  EXPECT_FALSE(torch::equal(w1, w));
}

TEST(OpsApi, BadInputThrowsNamingTheArgumentAndChangesNothing) {
  const auto w = torch::randn({4, 5}), b = torch::randn({4});
  const auto w0 = w.clone(), b0 = b.clone();
  try {
    naca::ops::naca_hidden_update_(w, b, torch::randn({6, 5}), torch::randn({6, 4}),
                                   torch::tensor({0, 1, 2, 3, 4, 9}), torch::rand({6, 4}), "tanh", 0.1);
    FAIL() << "out-of-range labels were accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("argument 'labels' expected values in [0, 3)"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(torch::equal(w, w0));
  EXPECT_TRUE(torch::equal(b, b0));
}

}  // namespace
