// The device-independent half of the weight-update ops: argument checks and the
// batch outer product (a GEMM, or the conv weight gradient), shared by the CPU
// and CUDA registrations. The device-specific half, the elementwise "delta"
// kernels, is declared in kernels.h.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace naca {

// Checks weight (H, I), bias (H) or none, pre (B, I), preact (B, H).
void check_linear_update(const char* op, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias, const at::Tensor& pre,
                         const at::Tensor& preact, double lr);

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
void check_naca_signal(const char* op, const at::Tensor& labels, const at::Tensor& ni,
                       const at::Tensor& preact);

// weight -= lr * delta^T @ pre, bias -= lr * sum_b delta (delta: B x H).
void apply_linear_update(at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         const at::Tensor& pre, const at::Tensor& delta, double lr);

// weight -= lr * dConv/dW(input, delta), bias -= lr * sum_{b,y,x} delta.
void apply_conv_update(at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       const at::Tensor& input, const at::Tensor& delta, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                       double lr);

}  // namespace naca
