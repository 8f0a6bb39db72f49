// Fashion-MNIST with the MLP 784-1000-10 trained two ways, side by side: naca::models::mlp with
// naca::learn::NACA (no backward()), and the same architecture of torch::nn::Linear layers with
// backprop (torch::autograd, cross-entropy). Both use Adam; the defaults are those of the Python
// comparison's standard study (`python -m torch_plugin.compare`: 20000 stratified training
// samples, 5 epochs, batch 32, Adam lr 1e-3, tanh, inputs in [0, 1]), so its numbers can be set
// beside these. Prints each epoch's test accuracy and seconds, then a summary; saves the NACA
// model with torch::save.
//
//   train_fashion_mnist [--data DIR] [--epochs N] [--batch-size N] [--lr X] [--train-subset N]
//                       [--seed N] [--standardize] [--threads N] [--out PATH]
//
// The data: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), or any folder
// of the four MNIST-style IDX files, gzipped or not (zlib reads both).
#include <naca/naca.h>
#include <torch/torch.h>
#include <ATen/CPUGeneratorImpl.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr const char* kDefaultData = "/usr/share/datasets/fashion-mnist";

struct Args {
  std::string data = kDefaultData;
  int64_t epochs = 5;
  int64_t batch_size = 32;
  double lr = 1e-3;
  int64_t train_subset = 20000;  // 0: every training sample
  int64_t seed = 0;
  bool standardize = false;
  int64_t threads = 0;           // 0: torch's default
  std::string out = "naca_fashion_mnist.pt";
};

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "train_fashion_mnist: " << message << "\n"
            << "usage: train_fashion_mnist [--data DIR] [--epochs N] [--batch-size N] [--lr X] "
               "[--train-subset N (0: all)] [--seed N] [--standardize] [--threads N] [--out PATH]\n";
  std::exit(2);
}

int64_t parse_int(const std::string& flag, const std::string& text, int64_t lowest) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || v < lowest)
    usage_error("argument " + flag + " expected an integer >= " + std::to_string(lowest) + ", got '" + text + "'");
  return v;
}

double parse_lr(const std::string& flag, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(v) || v <= 0)
    usage_error("argument " + flag + " expected a finite number > 0, got '" + text + "'");
  return v;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << "train_fashion_mnist [--data DIR (" << kDefaultData << ")] [--epochs N (5)] "
                   "[--batch-size N (32)] [--lr X (0.001, Adam, both rules)] [--train-subset N (20000; 0: all)] "
                   "[--seed N (0)] [--standardize] [--threads N] [--out PATH (naca_fashion_mnist.pt)]\n";
      std::exit(0);
    }
    if (flag == "--standardize") {
      a.standardize = true;
      continue;
    }
    const bool known = flag == "--data" || flag == "--epochs" || flag == "--batch-size" || flag == "--lr" ||
                       flag == "--train-subset" || flag == "--seed" || flag == "--threads" || flag == "--out";
    if (!known) usage_error("unknown argument '" + flag + "'");
    if (i + 1 >= argc) usage_error("argument " + flag + " expected a value, got none");
    const std::string v = argv[++i];
    if (flag == "--data") a.data = v;
    else if (flag == "--epochs") a.epochs = parse_int(flag, v, 1);
    else if (flag == "--batch-size") a.batch_size = parse_int(flag, v, 1);
    else if (flag == "--lr") a.lr = parse_lr(flag, v);
    else if (flag == "--train-subset") a.train_subset = parse_int(flag, v, 0);
    else if (flag == "--seed") a.seed = parse_int(flag, v, 0);
    else if (flag == "--threads") a.threads = parse_int(flag, v, 1);
    else if (flag == "--out") {
      if (v.empty()) usage_error("argument --out expected a file path, got ''");
      a.out = v;
    }
  }
  return a;
}

// ---- IDX files ---------------------------------------------------------------------

// One IDX file of unsigned bytes (gzipped or raw: gzread passes a raw file through), as a
// uint8 tensor of the header's shape. Throws naming the file on a missing, foreign or short one.
torch::Tensor read_idx(const std::string& path, int64_t ndim) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  std::unique_ptr<gzFile_s, int (*)(gzFile)> guard(f, gzclose);
  auto read = [&](void* buf, size_t n) {
    size_t done = 0;
    while (done < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - done, 1u << 30));
      const int got = gzread(f, static_cast<char*>(buf) + done, chunk);
      if (got <= 0) return done;
      done += static_cast<size_t>(got);
    }
    return done;
  };
  unsigned char magic[4];
  if (read(magic, 4) != 4 || magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] != ndim)
    throw std::runtime_error(path + ": not an IDX file of unsigned bytes with " + std::to_string(ndim) +
                             " dimension(s)");
  std::vector<int64_t> shape;
  for (int64_t d = 0; d < ndim; ++d) {
    unsigned char b[4];
    if (read(b, 4) != 4) throw std::runtime_error(path + ": truncated IDX header");
    shape.push_back((int64_t(b[0]) << 24) | (int64_t(b[1]) << 16) | (int64_t(b[2]) << 8) | int64_t(b[3]));
  }
  auto t = torch::empty(shape, torch::kUInt8);
  const size_t want = static_cast<size_t>(t.numel());
  const size_t got = read(t.data_ptr<uint8_t>(), want);
  if (got != want)
    throw std::runtime_error(path + ": truncated IDX file (header says " + std::to_string(want) + " bytes, got " +
                             std::to_string(got) + ")");
  return t;
}

// The file of `stem` in `dir`: stem.gz, else the uncompressed stem.
std::string find_idx(const std::string& dir, const std::string& stem) {
  namespace fs = std::filesystem;
  for (const std::string& name : {stem + ".gz", stem})
    if (fs::exists(fs::path(dir) / name)) return (fs::path(dir) / name).string();
  throw std::runtime_error("missing data file: " + (fs::path(dir) / (stem + ".gz")).string() +
                           " (or the uncompressed " + stem + ")");
}

struct Split {
  torch::Tensor x;  // (n, 1, 28, 28) float32
  torch::Tensor y;  // (n) int64
};

Split load_split(const std::string& dir, const std::string& prefix) {
  auto x = read_idx(find_idx(dir, prefix + "-images-idx3-ubyte"), 3);
  auto y = read_idx(find_idx(dir, prefix + "-labels-idx1-ubyte"), 1).to(torch::kLong);
  if (x.size(0) != y.size(0))
    throw std::runtime_error(dir + ": " + prefix + " has " + std::to_string(x.size(0)) + " images but " +
                             std::to_string(y.size(0)) + " labels");
  return {x.to(torch::kFloat32).div_(255.0).unsqueeze(1), y};
}

// A seeded, stratified subset of n samples, drawn as torch_plugin.data.subset draws it (the
// classes keep their proportions by largest-remainder rounding; then shuffled).
Split stratified_subset(const Split& s, int64_t n, int64_t seed) {
  if (n <= 0 || n >= s.x.size(0)) return s;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
  const auto perm = torch::randperm(s.x.size(0), gen, torch::kLong);
  const auto ys = s.y.index_select(0, perm);
  auto [classes, inverse, counts_t] = torch::_unique2(ys, /*sorted=*/true, false, /*return_counts=*/true);
  const int64_t k = classes.numel(), total = ys.numel();
  std::vector<int64_t> counts(k), quota(k), rem(k);
  for (int64_t c = 0; c < k; ++c) {
    counts[c] = counts_t[c].item<int64_t>();
    quota[c] = counts[c] * n / total;
    rem[c] = counts[c] * n % total;
  }
  int64_t rest = n;
  for (auto q : quota) rest -= q;
  std::vector<int64_t> order(k);
  for (int64_t c = 0; c < k; ++c) order[c] = c;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return rem[a] > rem[b]; });
  for (int64_t i = 0; i < rest; ++i) ++quota[order[i]];
  if (n >= k) {
    for (int64_t c = 0; c < k; ++c) {
      if (quota[c] != 0) continue;
      int64_t donor = 0;
      for (int64_t j = 1; j < k; ++j)
        if (quota[j] > quota[donor]) donor = j;
      --quota[donor];
      ++quota[c];
    }
  }
  std::vector<torch::Tensor> parts;
  for (int64_t c = 0; c < k; ++c)
    parts.push_back(perm.masked_select(ys == classes[c]).slice(0, 0, quota[c]));
  auto idx = torch::cat(parts);
  idx = idx.index_select(0, torch::randperm(idx.numel(), gen, torch::kLong));
  return {s.x.index_select(0, idx), s.y.index_select(0, idx)};
}

// ---- training -------------------------------------------------------------------------

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Test accuracy: eval mode, no autograd, batches of 1000 (the comparison's --eval-batch-size).
double accuracy(torch::nn::Module& module, const std::function<torch::Tensor(const torch::Tensor&)>& forward,
                const Split& test) {
  torch::NoGradGuard no_grad;
  module.eval();
  int64_t hits = 0;
  for (int64_t i = 0; i < test.x.size(0); i += 1000) {
    const auto xb = test.x.slice(0, i, i + 1000);
    hits += forward(xb).argmax(1).eq(test.y.slice(0, i, i + 1000)).sum().item<int64_t>();
  }
  module.train();
  return double(hits) / double(test.x.size(0));
}

struct Run {
  std::string name;
  std::vector<double> test_acc, seconds;
};

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  if (args.threads > 0) torch::set_num_threads(static_cast<int>(args.threads));
  Split train, test;
  try {
    train = load_split(args.data, "train");
    test = load_split(args.data, "t10k");
  } catch (const std::exception& e) {
    std::cerr << "train_fashion_mnist: argument --data: " << e.what() << "\n";
    return 2;
  }
  for (const Split* s : {&train, &test}) {
    const int64_t hi = s->y.max().item<int64_t>(), lo = s->y.min().item<int64_t>();
    if (lo < 0 || hi > 9) {
      std::cerr << "train_fashion_mnist: argument --data: expected labels in [0, 10), got [" << lo << ", " << hi
                << "]\n";
      return 2;
    }
  }
  // The subset is drawn with seed 0 whatever --seed is, as the comparison draws its data
  // once for every seed; --seed sets the weights, NI and the batch order.
  train = stratified_subset(train, args.train_subset, 0);
  if (args.standardize) {
    const auto mean = train.x.mean(), std = train.x.std();
    train.x = (train.x - mean) / std;
    test.x = (test.x - mean) / std;
  }
  const int64_t n = train.x.size(0);
  std::cout << "Fashion-MNIST (" << args.data << "): " << n << " train / " << test.x.size(0) << " test; MLP 784-1000-10 "
            << "tanh; Adam lr " << args.lr << ", batch " << args.batch_size << ", " << args.epochs
            << " epochs, seed " << args.seed << (args.standardize ? ", standardized" : "") << "; "
            << torch::get_num_threads() << " threads\n";

  torch::manual_seed(args.seed);
  auto naca_model = naca::models::mlp(784, {1000}, 10, naca::models::MLPOptions().seed(args.seed));
  auto naca_opt = std::make_shared<torch::optim::Adam>(naca_model->parameters(), torch::optim::AdamOptions(args.lr));
  // The labels were checked above: the step need not read them again (as the comparison).
  naca::learn::NACA learner(naca_model, naca::learn::NACAOptions().optimizer(naca_opt).check_labels(false));

  torch::nn::Sequential bp_model(torch::nn::Flatten(), torch::nn::Linear(784, 1000), torch::nn::Tanh(),
                                 torch::nn::Linear(1000, 10));
  {
    // BP starts from the NACA model's weights (NACALinear and NACAOutput draw theirs as
    // torch::nn::Linear does, so the same seed gives them anyway; copied, it holds by
    // construction). Both hold [hidden weight, hidden bias, output weight, output bias].
    torch::NoGradGuard no_grad;
    const auto from = naca_model->parameters(), to = bp_model->parameters();
    TORCH_CHECK(from.size() == to.size(), "train_fashion_mnist: the two models differ in parameters");
    for (size_t i = 0; i < from.size(); ++i) {
      TORCH_CHECK(from[i].sizes() == to[i].sizes(), "train_fashion_mnist: parameter ", i, " is ", from[i].sizes(),
                  " in the NACA model but ", to[i].sizes(), " in the BP model");
      to[i].copy_(from[i]);
    }
  }
  torch::optim::Adam bp_opt(bp_model->parameters(), torch::optim::AdamOptions(args.lr));

  // One batch order per rule, drawn from the seed each epoch (torch_plugin.data.batches).
  auto naca_gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(args.seed));
  auto bp_gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(args.seed));
  auto epoch = [&](at::Generator& gen, const std::function<void(const torch::Tensor&, const torch::Tensor&)>& step) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto order = torch::randperm(n, gen, torch::kLong);
    for (int64_t i = 0; i < n; i += args.batch_size) {
      const auto idx = order.slice(0, i, i + args.batch_size);
      step(train.x.index_select(0, idx), train.y.index_select(0, idx));
    }
    return seconds_since(t0);
  };
  auto naca_step = [&](const torch::Tensor& x, const torch::Tensor& y) { learner.step(x, y); };
  auto bp_step = [&](const torch::Tensor& x, const torch::Tensor& y) {
    bp_opt.zero_grad();
    torch::nn::functional::cross_entropy(bp_model->forward(x), y).backward();
    bp_opt.step();
  };
  auto naca_forward = [&](const torch::Tensor& x) { return naca_model->forward(x); };
  auto bp_forward = [&](const torch::Tensor& x) { return bp_model->forward(x); };

  // The rules alternate epoch by epoch, so a change in the machine's load hits both.
  Run naca{"NACA"}, bp{"BP"};
  for (int64_t e = 1; e <= args.epochs; ++e) {
    naca.seconds.push_back(epoch(naca_gen, naca_step));
    naca.test_acc.push_back(accuracy(*naca_model, naca_forward, test));
    bp.seconds.push_back(epoch(bp_gen, bp_step));
    bp.test_acc.push_back(accuracy(*bp_model, bp_forward, test));
    std::cout << std::fixed << std::setprecision(4) << "epoch " << e << "  NACA test acc " << naca.test_acc.back()
              << std::setprecision(2) << " (" << naca.seconds.back() << " s)" << std::setprecision(4)
              << "  BP test acc " << bp.test_acc.back() << std::setprecision(2) << " (" << bp.seconds.back()
              << " s)\n";
    std::cout.flush();
  }
  for (const Run* r : {&naca, &bp}) {
    double total = 0;
    for (double s : r->seconds) total += s;
    std::cout << std::fixed << r->name << ": test accuracy " << std::setprecision(4) << r->test_acc.back()
              << ", " << std::setprecision(2) << total / double(r->seconds.size()) << " s/epoch\n";
  }
  try {
    torch::save(naca_model, args.out);
  } catch (const std::exception& e) {
    std::cerr << "train_fashion_mnist: argument --out: cannot write '" << args.out << "': " << e.what() << "\n";
    return 2;
  }
  std::cout << "saved the NACA model to " << args.out << "\n";
  return 0;
}
