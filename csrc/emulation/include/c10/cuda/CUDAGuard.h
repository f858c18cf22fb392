#pragma once
// Stand-in for c10's CUDA device guards in the emulated build (csrc/emulation/): there is one device, the CPU.
#include "emulation/cuda_emu.h"

#include <c10/core/Device.h>

#include <optional>

namespace c10::cuda {

struct CUDAGuard {
  explicit CUDAGuard(c10::Device) {}
  explicit CUDAGuard(c10::DeviceIndex) {}
};

struct OptionalCUDAGuard {
  OptionalCUDAGuard() = default;
  explicit OptionalCUDAGuard(std::optional<c10::Device>) {}
  explicit OptionalCUDAGuard(c10::Device) {}
};

}  // namespace c10::cuda
