#include "update.h"

#include <algorithm>
#include <utility>

#include <ATen/OpMathType.h>
#include <ATen/core/LegacyTypeDispatch.h>

#include "checks.h"
#include "expectation.h"

namespace naca {

namespace {

void check_bias(const char* op, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  if (!bias.has_value() || !bias->defined()) return;
  const auto& b = *bias;
  check_same_device(b, op, "bias", weight, "weight");
  check_same_dtype(b, op, "bias", weight, "weight");
  check_shape(b, op, "bias", {weight.size(0)});
  check_contiguous(b, op, "bias");
  check_writable(b, op, "bias");
  check_no_alias(b, "bias", weight, "weight", op);
}

void check_input(const char* op, const at::Tensor& t, const char* name, const at::Tensor& weight) {
  check_defined(t, op, name);
  check_same_device(t, op, name, weight, "weight");
  check_same_dtype(t, op, name, weight, "weight");
}

void check_outputs_not_aliased(const char* op, const at::Tensor& weight,
                               const std::optional<at::Tensor>& bias, const at::Tensor& a,
                               const char* a_name, const at::Tensor& b, const char* b_name) {
  check_no_alias(weight, "weight", a, a_name, op);
  check_no_alias(weight, "weight", b, b_name, op);
  if (bias.has_value() && bias->defined()) {
    check_no_alias(*bias, "bias", a, a_name, op);
    check_no_alias(*bias, "bias", b, b_name, op);
  }
}

// The ops are autograd-free: their in-place arithmetic runs below autograd (so a
// weight that is a leaf requiring grad may be updated, as an optimizer does), and
// the version counters are bumped by hand, as an in-place op's would be.
void bump_versions(at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  weight.unsafeGetTensorImpl()->bump_version();
  if (bias.has_value() && bias->defined()) bias->unsafeGetTensorImpl()->bump_version();
}

// The checks every update op shares: a writable float weight of `dim`
// dimensions, its optional bias, and the layer input and pre-activation on the
// weight's device and dtype, with `dim` dimensions each.
void check_weight_and_inputs(const char* op, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, const at::Tensor& input,
                             const char* input_name, const at::Tensor& preact, int64_t dim,
                             const char* preact_name = "preact") {
  check_defined(weight, op, "weight");
  check_floating(weight, op, "weight");
  check_dim(weight, op, "weight", dim);
  check_contiguous(weight, op, "weight");
  check_writable(weight, op, "weight");
  check_bias(op, weight, bias);
  check_input(op, input, input_name, weight);
  check_input(op, preact, preact_name, weight);
  check_dim(input, op, input_name, dim);
  check_dim(preact, op, preact_name, dim);
}

}  // namespace

void check_linear_update(const char* op, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias, const at::Tensor& pre,
                         const at::Tensor& preact, double lr, const char* preact_name,
                         const char* pre_name) {
  check_weight_and_inputs(op, weight, bias, pre, pre_name, preact, 2, preact_name);
  const int64_t batch = pre.size(0);
  // A weight that fits neither the inputs nor the units (a transposed one, say) is at fault,
  // not the tensors it is compared with.
  TORCH_CHECK(preact.size(0) != batch || weight.size(0) == preact.size(1) ||
                  weight.size(1) == pre.size(1),
              "naca::", op, ": argument 'weight' expected shape [", preact.size(1), ", ",
              pre.size(1), "] ([", preact_name, ".size(1), ", pre_name, ".size(1)]), got ",
              weight.sizes());
  check_shape(pre, op, pre_name, {batch, weight.size(1)}, "the batch, weight.size(1)");
  check_shape(preact, op, preact_name, {batch, weight.size(0)}, "the batch, weight.size(0)");
  check_finite_scalar(lr, op, "lr");
  check_scalar_fits(lr, weight, op, "lr");
  check_outputs_not_aliased(op, weight, bias, pre, pre_name, preact, preact_name);
}

void check_conv_update(const char* op, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, const at::Tensor& input,
                       const at::Tensor& preact, at::IntArrayRef stride, at::IntArrayRef padding,
                       at::IntArrayRef dilation, int64_t groups, double lr) {
  check_weight_and_inputs(op, weight, bias, input, "input", preact, 4);
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, "naca::", op,
              ": stride, padding and dilation expected 2 values each, got ", stride, ", ",
              padding, ", ", dilation);
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK(stride[i] >= 1 && dilation[i] >= 1 && padding[i] >= 0, "naca::", op,
                ": expected stride >= 1, dilation >= 1, padding >= 0, got stride ", stride,
                ", padding ", padding, ", dilation ", dilation);
  }
  TORCH_CHECK(groups >= 1 && weight.size(0) % groups == 0, "naca::", op,
              ": argument 'groups' expected >= 1 and dividing weight.size(0)=", weight.size(0),
              ", got ", groups);
  const int64_t batch = input.size(0);
  // A weight that fits neither the input's channels nor preact's (a transposed one) is at fault.
  TORCH_CHECK(input.size(1) == weight.size(1) * groups || preact.size(1) == weight.size(0),
              "naca::", op, ": argument 'weight' expected preact.size(1) = ", preact.size(1),
              " output channels and input.size(1) / groups = ", input.size(1) / groups,
              " input channels, got shape ", weight.sizes());
  TORCH_CHECK(input.size(1) == weight.size(1) * groups, "naca::", op,
              ": argument 'input' expected ", weight.size(1) * groups,
              " channels (weight.size(1) * groups), got shape ", input.sizes());
  int64_t out_hw[2];
  for (int i = 0; i < 2; ++i) {
    const int64_t span = dilation[i] * (weight.size(2 + i) - 1) + 1;
    out_hw[i] = (input.size(2 + i) + 2 * padding[i] - span) / stride[i] + 1;
    TORCH_CHECK(input.size(2 + i) + 2 * padding[i] >= span, "naca::", op,
                ": argument 'input' of shape ", input.sizes(),
                " is smaller than the (dilated) kernel ", weight.sizes());
  }
  check_shape(preact, op, "preact", {batch, weight.size(0), out_hw[0], out_hw[1]});
  check_finite_scalar(lr, op, "lr");
  check_scalar_fits(lr, weight, op, "lr");
  check_outputs_not_aliased(op, weight, bias, input, "input", preact, "preact");
}

void check_like_preact(const char* op, const at::Tensor& other, const char* name,
                       const at::Tensor& preact) {
  check_defined(other, op, name);
  check_same_device(other, op, name, preact, "preact");
  check_same_dtype(other, op, name, preact, "preact");
  check_shape(other, op, name, preact.sizes());
}

void check_naca_signal(const char* op, const at::Tensor& labels, const at::Tensor& ni,
                       const at::Tensor& preact, bool check_labels) {
  const int64_t n = classes_of_ni(ni, op);
  check_same_device(ni, op, "ni", preact, "preact");
  check_same_dtype(ni, op, "ni", preact, "preact");
  std::vector<int64_t> expected(preact.sizes().begin(), preact.sizes().end());
  expected[0] = 2 * n;
  check_shape(ni, op, "ni", expected);
  check_same_device(labels, op, "labels", preact, "preact");
  // Values in range unless the caller vouches for them (check_labels=false).
  naca::check_labels(labels, op, n, preact.size(0), /*read_values=*/check_labels, ni.size(0));
  expectation_slots(n, op);  // fails clearly if the class count has colliding slots
}

void apply_linear_update(at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         const at::Tensor& pre, const at::Tensor& delta, double lr) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  // One GEMM: the batch sum of outer products (B x H)^T (B x I); cuBLAS/MKL
  // accumulate in fp32 (or fp64) whatever the storage dtype.
  weight.addmm_(delta.t(), pre, /*beta=*/1, /*alpha=*/-lr);
  if (bias.has_value() && bias->defined()) {
    if (uses_cuda_kernels(delta)) {
      // bias -= lr * delta^T 1 as one cuBLAS gemv (fp32 accumulation, one rounding into
      // the bias dtype). Not delta.sum(0): for B >= ~1024 torch's column reduction stages
      // partial sums in a global buffer of 2 B H fp32 values, which on an H200 would be the
      // largest allocation of a NACA step at batch 1024 (7.8 MiB; .ci/gpu_memtrace.py shows it).
      bias->addmv_(delta.t(), at::ones({delta.size(0)}, delta.options()), /*beta=*/1, /*alpha=*/-lr);
    } else {
      // Summed in the op-math type; sub_ computes bias - lr * db in it too, then
      // rounds once into the bias dtype (two kernels in all).
      const auto db = delta.sum(0, /*keepdim=*/false, at::toOpMathType(delta.scalar_type()));
      bias->sub_(db, lr);
    }
  }
  bump_versions(weight, bias);
}

ConvGrads conv_grads(const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                     const at::Tensor& input, const at::Tensor& delta, at::IntArrayRef stride,
                     at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const bool has_bias = bias.has_value() && bias->defined();
  if (weight.is_meta()) {  // ATen's C++ has no Meta convolution_backward; the shapes are the parameters'
    return {at::empty_like(weight), has_bias ? at::empty_like(*bias) : at::Tensor()};
  }
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  auto grads = at::convolution_backward(delta, input, weight, std::nullopt, stride, padding,
                                        dilation, /*transposed=*/false, /*output_padding=*/{0, 0},
                                        groups, {false, true, has_bias});
  return {std::get<1>(grads), has_bias ? std::get<2>(grads) : at::Tensor()};
}

void add_conv_grads(ConvGrads& sum, ConvGrads part) {
  if (!sum.weight.defined()) {  // one chunk (always on CUDA): used as it is
    sum = std::move(part);
    return;
  }
  // From the second chunk on, the running sum in the op-math type (a no-op for
  // float and double, the CPU kernels' types).
  const auto acc = at::toOpMathType(part.weight.scalar_type());
  if (sum.weight.scalar_type() != acc) {
    sum.weight = sum.weight.to(acc);
    if (sum.bias.defined()) sum.bias = sum.bias.to(acc);
  }
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  sum.weight.add_(part.weight);
  if (part.bias.defined()) sum.bias.add_(part.bias);
}

void apply_conv_grads(at::Tensor& weight, const std::optional<at::Tensor>& bias,
                      const ConvGrads& grads, double lr) {
  if (!grads.weight.defined()) return;
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  weight.sub_(grads.weight, lr);
  if (bias.has_value() && bias->defined()) bias->sub_(grads.bias, lr);
  bump_versions(weight, bias);
}

int64_t conv_chunk_samples(const at::Tensor& weight, const at::Tensor& preact) {
  const int64_t batch = preact.size(0);
  if (uses_cuda_kernels(weight) || batch == 0) return std::max<int64_t>(batch, 1);
  const int64_t per_sample = std::max<int64_t>(preact.numel() / batch * preact.element_size(), 1);
  return std::clamp<int64_t>(kConvChunkBytes / per_sample, 1, batch);
}

}  // namespace naca
