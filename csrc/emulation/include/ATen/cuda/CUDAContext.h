#pragma once
// Stand-in for ATen's CUDA context header in the emulated build (csrc/emulation/): the current stream and the
// properties of the emulated GPU.
#include "emulation/cuda_emu.h"

#include <c10/core/Device.h>

namespace at::cuda {

// The emulation runs kernels synchronously on the calling thread: one stream, the null stream.
struct CUDAStream {
  cudaStream_t stream() const { return nullptr; }
  operator cudaStream_t() const { return nullptr; }
};

inline CUDAStream getCurrentCUDAStream(c10::DeviceIndex = -1) { return {}; }
inline CUDAStream getDefaultCUDAStream(c10::DeviceIndex = -1) { return {}; }
inline cudaDeviceProp* getCurrentDeviceProperties() { return ::pygan::emu::device_properties(); }
inline cudaDeviceProp* getDeviceProperties(c10::DeviceIndex) { return ::pygan::emu::device_properties(); }

}  // namespace at::cuda
