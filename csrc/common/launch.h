#pragma once
// The one way kernels are launched: PYGAN_LAUNCH(grid, block, shared_bytes, stream, kernel)(args...).
// Under nvcc it is `kernel<<<grid, block, shared_bytes, stream>>>(args...)`; in the emulated build (the same .cu
// files compiled as host C++ for the tests, csrc/emulation/) it runs the grid on the CPU, block by block, after
// checking the launch limits a GPU enforces. The kernel comes last because a template-id such as
// `k<T, A, true>` holds commas. Dynamic shared memory: PYGAN_DYNAMIC_SHARED(T, name) in the kernel (a T* to the
// launch's shared_bytes, 16-byte aligned) instead of `extern __shared__ T name[]`, which the emulated build
// cannot express. More than 48 KiB of it: PYGAN_ALLOW_DYNAMIC_SHARED(bytes, kernel) first, naming the kernel as the
// launch does (cudaFuncSetAttribute on a GPU; the emulated launch checks against it).

#if defined(PYGAN_CUDA_EMULATION)
#include "emulation/cuda_emu.h"
#define PYGAN_LAUNCH(grid, block, shared_bytes, stream, ...) \
  PYGAN_EMU_LAUNCH(grid, block, shared_bytes, stream, __VA_ARGS__)
#define PYGAN_DYNAMIC_SHARED(T, name) T* const name = ::pygan::emu::dynamic_shared<T>()
#define PYGAN_ALLOW_DYNAMIC_SHARED(bytes, ...) ::pygan::emu::set_max_dynamic_shared(#__VA_ARGS__, bytes)
#else
#define PYGAN_LAUNCH(grid, block, shared_bytes, stream, ...) __VA_ARGS__<<<grid, block, shared_bytes, stream>>>
#define PYGAN_DYNAMIC_SHARED(T, name)                                      \
  extern __shared__ __align__(16) unsigned char pygan_dynamic_shared_[]; \
  T* const name = reinterpret_cast<T*>(pygan_dynamic_shared_)
#define PYGAN_ALLOW_DYNAMIC_SHARED(bytes, ...) \
  C10_CUDA_CHECK(cudaFuncSetAttribute(__VA_ARGS__, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)))
#endif
