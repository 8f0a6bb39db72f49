// The CPU emulation of this project's CUDA kernels (tests/cuda_emu/build.py).
// Every translated cuda/*.cu file starts by including this header. It makes
// the CUDA dialect those files use plain C++: __global__ and the index
// variables, and launch(), which runs every block and thread of a grid one
// after another on the calling thread. That is exact for kernels that share
// nothing between threads (no __shared__, __syncthreads, warp shuffles or
// atomics, which build.py refuses), as all of ours are: each thread's result
// cannot depend on the others', so the test runs the grid in both orders and
// with different grid sizes and asks for bit-identical results.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};

// The built-in variables, set by launch() before each thread runs.
inline thread_local dim3 gridDim, blockDim;
inline thread_local uint3 blockIdx, threadIdx;

namespace naca_emu {

// Kernel launches so far (tests check that an op really ran emulated kernels).
inline std::atomic<int64_t> launches{0};

inline int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

// NACA_EMU_ORDER=reverse runs the blocks, and the threads in each block, last first.
inline bool reverse_order() {
  const char* v = std::getenv("NACA_EMU_ORDER");
  return v && std::strcmp(v, "reverse") == 0;
}

template <typename Kernel, typename... Args>
void launch(dim3 grid, dim3 block, Kernel kernel, Args... args) {
  // The limits a real launch would reject ("invalid configuration argument").
  TORCH_CHECK(grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.y <= 65535 && grid.z <= 65535 &&
                  grid.x <= 2147483647u,
              "naca_emu: invalid grid (", grid.x, ", ", grid.y, ", ", grid.z, ")");
  TORCH_CHECK(block.x >= 1 && block.y >= 1 && block.z >= 1 && block.z <= 64 &&
                  uint64_t{block.x} * block.y * block.z <= 1024,
              "naca_emu: invalid block (", block.x, ", ", block.y, ", ", block.z, ")");
  ++launches;
  gridDim = grid;
  blockDim = block;
  const uint64_t blocks = uint64_t{grid.x} * grid.y * grid.z;
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  const bool rev = reverse_order();
  for (uint64_t bi = 0; bi < blocks; ++bi) {
    const uint64_t b = rev ? blocks - 1 - bi : bi;
    blockIdx = {static_cast<unsigned>(b % grid.x), static_cast<unsigned>(b / grid.x % grid.y),
                static_cast<unsigned>(b / (uint64_t{grid.x} * grid.y))};
    for (uint64_t ti = 0; ti < threads; ++ti) {
      const uint64_t t = rev ? threads - 1 - ti : ti;
      threadIdx = {static_cast<unsigned>(t % block.x), static_cast<unsigned>(t / block.x % block.y),
                   static_cast<unsigned>(t / (uint64_t{block.x} * block.y))};
      kernel(args...);
    }
  }
}

}  // namespace naca_emu

// From here on the C++ namespace `cuda` is `cuda_emu`: naca::cuda (the kernels),
// at::cuda and c10::cuda (the shims in shim/), so no symbol of this library can
// meet one of the real CUDA build's.
#define cuda cuda_emu
