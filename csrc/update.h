// The device-independent half of the weight-update ops: argument checks and the
// batch outer product (a GEMM, or the conv weight gradient), shared by the CPU
// and CUDA registrations. The device-specific half, the elementwise "delta"
// kernels, is declared in kernels.h.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace naca {

// Checks weight (H, I), bias (H) or none, pre (B, I), preact (B, H) (named
// pre_name and preact_name in the errors).
void check_linear_update(const char* op, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias, const at::Tensor& pre,
                         const at::Tensor& preact, double lr, const char* preact_name = "preact",
                         const char* pre_name = "pre");

// Checks weight (C_out, C_in / groups, kh, kw), bias (C_out) or none, input (B, C_in, H, W),
// preact (B, C_out, Ho, Wo) consistent with the conv geometry.
void check_conv_update(const char* op, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, const at::Tensor& input,
                       const at::Tensor& preact, at::IntArrayRef stride, at::IntArrayRef padding,
                       at::IntArrayRef dilation, int64_t groups, double lr);

// Checks `other` (signal) has preact's shape, dtype and device.
void check_like_preact(const char* op, const at::Tensor& other, const char* name,
                       const at::Tensor& preact);

// Checks labels (B) and NI (2N, *preact.shape[1:]) for a fused NACA update.
// check_labels=false: the labels' values are not read (shape and dtype are checked).
void check_naca_signal(const char* op, const at::Tensor& labels, const at::Tensor& ni,
                       const at::Tensor& preact, bool check_labels = true);

// weight -= lr * delta^T @ pre, bias -= lr * sum_b delta (delta: B x H).
void apply_linear_update(at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         const at::Tensor& pre, const at::Tensor& delta, double lr);

// The conv weight and bias gradients of a batch (or a chunk of one), summed over
// chunks (in the op-math type) by add_conv_grads and written once by apply_conv_grads.
struct ConvGrads {
  at::Tensor weight, bias;  // bias undefined without a bias
};

ConvGrads conv_grads(const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                     const at::Tensor& input, const at::Tensor& delta, at::IntArrayRef stride,
                     at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

void add_conv_grads(ConvGrads& sum, ConvGrads part);

// weight -= lr * grads.weight, bias -= lr * grads.bias.
void apply_conv_grads(at::Tensor& weight, const std::optional<at::Tensor>& bias,
                      const ConvGrads& grads, double lr);

// Samples per chunk of a conv update: the whole batch on CUDA; on CPU about
// kConvChunkBytes of delta. A whole-batch delta of a large conv layer (51 MB for
// 64 x 28 x 28 maps at batch 256) is above glibc's largest mmap threshold
// (32 MiB), so it, and oneDNN's reordered copy of it, would be fresh mappings
// that page-fault on every call (about half of the op's time); chunks reuse
// heap memory that stays mapped and warm.
constexpr int64_t kConvChunkBytes = int64_t{8} << 20;
int64_t conv_chunk_samples(const at::Tensor& weight, const at::Tensor& preact);

}  // namespace naca
