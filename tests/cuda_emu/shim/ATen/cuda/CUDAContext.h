// Shim for the CPU emulation of the CUDA kernels (tests/cuda_emu): the two
// calls cuda/launch.cuh makes. NACA_EMU_SMS sets the multiprocessor count
// (default 132, an H100's), which sets the grid sizes the kernels choose.
#pragma once

#include "../../../naca_emu.h"

namespace at::cuda {

struct EmuDeviceProp {
  int multiProcessorCount;
};

inline const EmuDeviceProp* getCurrentDeviceProperties() {
  static thread_local EmuDeviceProp prop;
  prop.multiProcessorCount = naca_emu::env_int("NACA_EMU_SMS", 132);
  return &prop;
}

inline int getCurrentCUDAStream() { return 0; }

}  // namespace at::cuda
