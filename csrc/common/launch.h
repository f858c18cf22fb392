#pragma once
// The one way kernels are launched: PYGAN_LAUNCH(grid, block, shared_bytes, stream, kernel)(args...).
// Under nvcc it is `kernel<<<grid, block, shared_bytes, stream>>>(args...)`; in the emulated build (the same .cu
// files compiled as host C++ for the tests, csrc/emulation/) it runs the grid on the CPU, block by block, after
// checking the launch limits a GPU enforces. The kernel comes last because a template-id such as
// `k<T, A, true>` holds commas. Dynamic shared memory: PYGAN_DYNAMIC_SHARED(T, name) in the kernel (a T* to the
// launch's shared_bytes, 16-byte aligned; in the emulated build a pointer whose accesses are bounds-checked, so
// declare offsets from it with `auto`) instead of `extern __shared__ T name[]`, which the emulated build cannot
// express. The 48 KiB a launch gets without opting in count the kernel's static __shared__ memory too: where static
// + dynamic may exceed them, PYGAN_ALLOW_DYNAMIC_SHARED(bytes, kernel) first, naming the kernel instantiation fully
// (cudaFuncSetAttribute on a GPU; the emulated launch checks against it), and launch it by the same name.

#if defined(PYGAN_CUDA_EMULATION)
#include "emulation/cuda_emu.h"
#define PYGAN_LAUNCH(grid, block, shared_bytes, stream, ...) \
  PYGAN_EMU_LAUNCH(grid, block, shared_bytes, stream, __VA_ARGS__)
#define PYGAN_DYNAMIC_SHARED(T, name) const ::pygan::emu::SharedPtr<T> name = ::pygan::emu::dynamic_shared<T>()
#define PYGAN_ALLOW_DYNAMIC_SHARED(bytes, ...) \
  ::pygan::emu::set_max_dynamic_shared(#__VA_ARGS__, ::pygan::emu::address_of<void>(__VA_ARGS__), bytes)
#else
#define PYGAN_LAUNCH(grid, block, shared_bytes, stream, ...) __VA_ARGS__<<<grid, block, shared_bytes, stream>>>
#define PYGAN_DYNAMIC_SHARED(T, name)                                      \
  extern __shared__ __align__(16) unsigned char pygan_dynamic_shared_[]; \
  T* const name = reinterpret_cast<T*>(pygan_dynamic_shared_)
#define PYGAN_ALLOW_DYNAMIC_SHARED(bytes, ...) \
  C10_CUDA_CHECK(cudaFuncSetAttribute(__VA_ARGS__, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)))
#endif
