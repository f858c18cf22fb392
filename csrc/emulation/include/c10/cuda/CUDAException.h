#pragma once
// Stand-in for c10's CUDA error checks in the emulated build (csrc/emulation/): an emulated launch raises its own
// errors (bad configuration, a kernel thread's fault) before it returns, so there is nothing left to check.
#include "emulation/cuda_emu.h"

#define C10_CUDA_KERNEL_LAUNCH_CHECK() \
  do {                                 \
  } while (0)
#define C10_CUDA_CHECK(expr) \
  do {                       \
    (void)(expr);            \
  } while (0)
