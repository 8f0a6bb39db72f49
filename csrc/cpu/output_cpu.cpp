// CPU: the NACA output layer's delta (sigmoid(z) - onehot(y)) * sigmoid'(z), and the
// naca_output_update_ op built on it.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../update_ops.h"
#include "elementwise.h"

namespace naca::cpu {

// sigmoid from ATen (as the unfused torch.sigmoid(z) - one_hot(y) form had it), then
// the error and its derivative in place; a row whose label is outside [0, N)
// (possible only unchecked) is zero.
at::Tensor output_delta(const at::Tensor& logits, const at::Tensor& labels, bool sigmoid_grad) {
  const int64_t batch = logits.size(0);
  const int64_t classes = logits.size(1);
  auto out = grad_source(logits, Activation::Sigmoid);  // sigmoid(z), overwritten by the delta
  const int64_t* y = labels.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "naca_output_delta_cpu", [&] {
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    for_rows(batch, classes, [&](int64_t b, int64_t j0, int64_t j1, int64_t off) {
      scalar_t* ob = o + off;
      if (!label_in_range(y[b], classes)) return std::fill(ob + j0, ob + j1, scalar_t(0));
      for (int64_t j = j0; j < j1; ++j) ob[j] = naca::output_delta(ob[j], j == y[b], sigmoid_grad);
    });
  });
  return out;
}

}  // namespace naca::cpu

TORCH_LIBRARY_IMPL(naca, CPU, m) {
  m.impl("naca_output_update_", &naca::naca_output_update<naca::cpu::output_delta>);
}
