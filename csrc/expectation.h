// The class-dependent expectation matrix E of NACA (docs/algorithms.md §1.1).
// Host code, shared by every backend: E is a function of the class count only.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace naca {

// k_c for c = 0..N-1: row c of E is 0.5 at columns k_c and k_c + 1.
// Throws when N < 2 or when two classes would share a slot.
std::vector<int64_t> expectation_slots(int64_t num_classes, const char* op);

// k_c as an int64 tensor on `device`, cached per (N, device): the fused kernels
// read it on every call.
at::Tensor expectation_slots_tensor(int64_t num_classes, at::Device device, const char* op);

// N = ni.size(0) / 2, checking that NI has an even, >= 4 first dimension.
int64_t classes_of_ni(const at::Tensor& ni, const char* op);

}  // namespace naca
