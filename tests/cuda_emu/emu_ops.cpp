// Ops of the emulation library itself (tests/cuda_emu): how many kernel
// launches it has emulated, so a test can tell its kernels really ran.
#include "naca_emu.h"

TORCH_LIBRARY_FRAGMENT(naca_emu, m) {
  m.def("launch_count() -> int", [] { return naca_emu::launches.load(); });
}
