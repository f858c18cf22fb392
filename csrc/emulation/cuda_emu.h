#pragma once
// The CUDA language on the host, for the emulated build of the .cu files (the tests' build, tests/emulation.py):
// each .cu file is compiled as C++20 with this header included first, and its kernels run on the CPU.
//
//   - Qualifiers: __global__ / __device__ / __host__ vanish; __shared__ is `static thread_local`, so the block's
//     threads (fibers of one OS thread, see runtime.cpp) share it and each kernel instantiation has its own. The
//     emulated build rewrites each `__shared__` declaration to report itself (PYGAN_EMU_STATIC_SHARED, see
//     tests/emulation.py): its size counts against the launch's shared-memory limit, and it is filled with garbage
//     when the block first reaches it.
//   - threadIdx / blockIdx / blockDim / gridDim: per-OS-thread variables that the scheduler sets before it
//     resumes a thread; warpSize is 32.
//   - __syncthreads(): a real barrier of the block's threads. Every thread of the block must reach the same
//     __syncthreads() (same source line); one that has returned, or waits elsewhere, is an error.
//   - __shfl_*_sync / __syncwarp / __ballot_sync / __any_sync / __all_sync: warp-synchronous. The 32 lanes of the
//     warp exchange values through the scheduler once all have arrived at the same call; a mask other than
//     0xffffffff, a lane that does not arrive (returned, or waiting elsewhere) or a partial warp is an error.
//   - atomics through std::atomic_ref; the math intrinsics; the vector types; cudaStream_t, cudaDeviceProp.
//   - PYGAN_EMU_LAUNCH (PYGAN_LAUNCH of common/launch.h in this build): checks the launch limits of a GPU (grid,
//     block, threads per block, shared memory) and runs the grid block by block.
//   - The operator registrations: TORCH_LIBRARY(pygan, ...) / TORCH_LIBRARY_IMPL(pygan, CUDA, ...) register into
//     the namespace PYGAN_EMU_NAMESPACE (default pygan_emu) with the CUDA key mapped to CPU, so the emulated
//     kernels are torch.ops.pygan_emu.* taking CPU tensors, beside the real torch.ops.pygan.*.
#if defined(__CUDACC__)
#error "emulation/cuda_emu.h is for the emulated (host C++) build of the CUDA sources, not for nvcc"
#endif
#if defined(__VECTOR_TYPES_H__) || defined(__CUDA_RUNTIME_H__)
#error "emulation/cuda_emu.h must come before any CUDA runtime header (the emulated build replaces them)"
#endif

#ifndef PYGAN_CUDA_EMULATION
#define PYGAN_CUDA_EMULATION 1
#endif

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <math.h>  // the float overloads of sqrt, exp, ... in the global namespace, as CUDA device code has them

#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

// ---------------------------------------------------------------- qualifiers

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __constant__
#define __shared__ static thread_local
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __grid_constant__
// __restrict__ is a GCC keyword already. (No __noinline__: libstdc++ spells its own attribute so.)

// ---------------------------------------------------------------- built-in types and variables

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return {x, y, z}; }
};

inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
constexpr int warpSize = 32;

struct CUstream_st;
using cudaStream_t = CUstream_st*;

enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidConfiguration = 9, cudaErrorLaunchFailure = 719 };
inline const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated CUDA error"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaPeekAtLastError() { return cudaSuccess; }

// The fields of the real struct that kernels and launch code read; values of the emulated GPU (an H100 SXM unless
// the tests configure otherwise, see pygan::emu::configure).
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  size_t sharedMemPerMultiprocessor;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major, minor;
  int multiProcessorCount;
  int maxThreadsPerMultiProcessor;
  int maxBlocksPerMultiProcessor;
};

// ---------------------------------------------------------------- vector types

#define PYGAN_EMU_VEC2(name, T, A)            \
  struct alignas(A) name {                    \
    T x, y;                                   \
  };                                          \
  inline name make_##name(T x, T y) { return {x, y}; }
#define PYGAN_EMU_VEC3(name, T)                  \
  struct name {                                  \
    T x, y, z;                                   \
  };                                             \
  inline name make_##name(T x, T y, T z) { return {x, y, z}; }
#define PYGAN_EMU_VEC4(name, T, A)                    \
  struct alignas(A) name {                            \
    T x, y, z, w;                                     \
  };                                                  \
  inline name make_##name(T x, T y, T z, T w) { return {x, y, z, w}; }

PYGAN_EMU_VEC2(float2, float, 8)
PYGAN_EMU_VEC3(float3, float)
PYGAN_EMU_VEC4(float4, float, 16)
PYGAN_EMU_VEC2(double2, double, 16)
PYGAN_EMU_VEC2(int2, int, 8)
PYGAN_EMU_VEC4(int4, int, 16)
PYGAN_EMU_VEC2(uint2, unsigned int, 8)
PYGAN_EMU_VEC4(uint4, unsigned int, 16)
PYGAN_EMU_VEC2(short2, short, 4)
PYGAN_EMU_VEC2(ushort2, unsigned short, 4)
PYGAN_EMU_VEC4(short4, short, 8)
PYGAN_EMU_VEC4(ushort4, unsigned short, 8)
PYGAN_EMU_VEC2(longlong2, long long, 16)
PYGAN_EMU_VEC2(ulonglong2, unsigned long long, 16)
inline uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) { return {x, y, z}; }
#undef PYGAN_EMU_VEC2
#undef PYGAN_EMU_VEC3
#undef PYGAN_EMU_VEC4

// ---------------------------------------------------------------- the runtime (csrc/emulation/runtime.cpp)

namespace pygan::emu {

// Collective operations of a warp.
enum class WarpOp : int { Idx, Up, Down, Xor, Sync, Ballot, Any, All };

// Called by a thread of a running block: waits until every thread of the block reaches this barrier; returns the
// number of threads whose `predicate` was non-zero.
int sync_block(int predicate, const std::source_location& where);

// Called by a lane: waits until the 32 lanes of its warp arrive at this call, then returns the `size` bytes of the
// value of the lane `op` and `arg` select (Idx/Up/Down/Xor) into `out`, or the ballot of the lanes' `predicate`
// (Ballot/Any/All: the 32-bit mask, written to out as unsigned). `mask` must be 0xffffffff.
void warp_collective(WarpOp op, unsigned mask, const void* in, void* out, int size, int arg, int width, int predicate,
                     const char* what, const std::source_location& where);

// Lanes of the calling thread's warp that have not returned.
unsigned active_mask();

// The dynamic shared memory of the running block (the launch's shared_bytes, 16-byte aligned; filled with
// pseudo-random garbage when each block starts, so a read before any write shows); its size in bytes.
void* dynamic_shared_bytes(size_t* bytes);

// A read or write of dynamic shared memory outside the launch's shared_bytes: an error of the calling thread.
[[noreturn]] void shared_out_of_bounds(int64_t index, size_t elem_size, size_t bytes, const char* type);

// Dynamic shared memory as a kernel sees it (PYGAN_DYNAMIC_SHARED in this build): a pointer whose element accesses
// are checked against the launch's shared_bytes, so an undersized allocation is an error, not a write past it.
// Offsetting is unchecked (as pointer arithmetic); the access through the result is checked.
template <typename T>
class SharedPtr {
 public:
  SharedPtr(T* base, size_t bytes, int64_t offset = 0) : base_(base), bytes_(bytes), offset_(offset) {}
  template <typename I, typename = std::enable_if_t<std::is_integral_v<I>>>
  T& operator[](I i) const {
    const int64_t k = offset_ + static_cast<int64_t>(i);
    if (k < 0 || static_cast<uint64_t>(k + 1) * sizeof(T) > bytes_)
      shared_out_of_bounds(k, sizeof(T), bytes_, typeid(T).name());
    return base_[k];
  }
  T& operator*() const { return (*this)[0]; }
  template <typename I, typename = std::enable_if_t<std::is_integral_v<I>>>
  SharedPtr operator+(I i) const {
    return SharedPtr(base_, bytes_, offset_ + static_cast<int64_t>(i));
  }
  template <typename I, typename = std::enable_if_t<std::is_integral_v<I>>>
  SharedPtr operator-(I i) const {
    return SharedPtr(base_, bytes_, offset_ - static_cast<int64_t>(i));
  }
  // As a plain pointer (for a call that takes one): accesses through it are not checked.
  operator T*() const { return base_ + offset_; }

 private:
  T* base_;
  size_t bytes_;
  int64_t offset_;
};

template <typename T>
SharedPtr<T> dynamic_shared() {
  size_t bytes = 0;
  void* p = dynamic_shared_bytes(&bytes);
  return SharedPtr<T>(static_cast<T*>(p), bytes);
}

// A __shared__ variable of `bytes` at `address`, reached by a thread of the running block (the rewritten
// declaration calls it): the first time in a launch its size is added to the launch's static shared memory and the
// total checked against the limit (an error as a failed launch would give); the first time in a block it is filled
// with garbage.
void static_shared(void* address, size_t bytes, const char* name);

// The kernel call of one thread, type-erased.
struct KernelBody {
  void (*run)(const void* ctx);
  const void* ctx;
};

struct LaunchSite {
  const char* kernel;  // the kernel as written at the launch, e.g. "normalize_act_kernel<scalar_t, A, V, true>"
  const char* file;
  int line;
};

// PYGAN_ALLOW_DYNAMIC_SHARED(bytes, kernel) of common/launch.h in this build: launches of this kernel
// instantiation (`address`, the function as cudaFuncSetAttribute takes it) may use up to `bytes` of dynamic shared
// memory; the device's sharedMemPerBlockOptin bounds it together with the kernel's static shared memory.
void set_max_dynamic_shared(const char* kernel, const void* address, int64_t bytes);

// The function a kernel expression names, when it names one: a fully specified template-id, a function or a
// function pointer (a template-id whose last arguments are deduced at the call has none). Tag makes a call
// dependent, so that `requires` can ask whether it is valid.
template <typename Tag, typename F>
const void* address_of(F* f) {
  static_assert(std::is_function_v<F>, "a kernel is a function");
  return reinterpret_cast<const void*>(f);
}

// Checks the configuration against the emulated GPU's limits (an error as a failed launch would give), records the
// launch, then runs every block: its threads as fibers, to completion. Errors of the kernel's threads (a barrier
// or warp collective not reached by all, a bad mask) are raised here, naming the block, thread and source line.
// `kernel_address`: the kernel instantiation launched (nullptr when the launch expression does not name one), for
// its shared-memory opt-in.
void run_grid(const LaunchSite& site, const void* kernel_address, dim3 grid, dim3 block, size_t shared_bytes,
              KernelBody body);

// Whether the test's mutant `name` is switched on (the deliberately broken copies of tests/emulation.py: MUTANTS).
bool mutant_on(const char* name);

// The emulated GPU's properties (at::cuda::getCurrentDeviceProperties() in this build).
cudaDeviceProp* device_properties();

// What the launch's lambda (PYGAN_EMU_LAUNCH) is asked for: the kernel's address, or to run a thread.
struct AddressOfKernel {
  static constexpr bool address = true;
};
struct RunKernel {
  static constexpr bool address = false;
};

template <typename F>
struct Launch {
  LaunchSite site;
  dim3 grid, block;
  size_t shared_bytes;
  F kernel;

  // As a kernel launch: the arguments are copied once here, and each thread's call copies them into the kernel's
  // by-value parameters.
  template <typename... Args>
  void operator()(Args&&... args) const {
    using Params = std::tuple<std::decay_t<Args>...>;
    const Params params(std::forward<Args>(args)...);
    struct Ctx {
      const F* kernel;
      const Params* params;
    } ctx{&kernel, &params};
    const KernelBody body{[](const void* c) {
                            const Ctx* x = static_cast<const Ctx*>(c);
                            std::apply([&](const auto&... a) { (*x->kernel)(RunKernel{}, a...); }, *x->params);
                          },
                          &ctx};
    const void* address = std::apply([&](const auto&... a) { return kernel(AddressOfKernel{}, a...); }, params);
    run_grid(site, address, grid, block, shared_bytes, body);
  }
};

template <typename F>
Launch<F> make_launch(const char* kernel, const char* file, int line, dim3 grid, dim3 block, size_t shared_bytes,
                      cudaStream_t /*stream: the emulation runs synchronously*/, F f) {
  return Launch<F>{{kernel, file, line}, grid, block, shared_bytes, f};
}

template <typename T>
T shfl(WarpOp op, unsigned mask, T var, int arg, int width, const char* what, const std::source_location& where) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 16, "warp shuffles exchange scalars");
  T out;
  warp_collective(op, mask, &var, &out, static_cast<int>(sizeof(T)), arg, width, 0, what, where);
  return out;
}

}  // namespace pygan::emu

// The lambda either runs the kernel or names the instantiation the launch runs: the kernel expression's function
// if it names one, else the instantiation whose parameters are exactly the arguments' types, else none.
#define PYGAN_EMU_LAUNCH(grid, block, shared_bytes, stream, ...)                                                  \
  ::pygan::emu::make_launch(                                                                                      \
      #__VA_ARGS__, __FILE__, __LINE__, grid, block, shared_bytes, stream,                                        \
      [&](auto pygan_emu_mode, const auto&... pygan_emu_args) -> const void* {                                    \
        using PyganEmuMode = decltype(pygan_emu_mode);                                                            \
        if constexpr (!PyganEmuMode::address) {                                                                   \
          __VA_ARGS__(pygan_emu_args...);                                                                         \
          return nullptr;                                                                                         \
        } else if constexpr (requires { ::pygan::emu::address_of<PyganEmuMode>(__VA_ARGS__); }) {                 \
          return ::pygan::emu::address_of<PyganEmuMode>(__VA_ARGS__);                                             \
        } else if constexpr (requires {                                                                           \
                               static_cast<void (*)(std::decay_t<decltype(pygan_emu_args)>...)>(__VA_ARGS__);     \
                             }) {                                                                                 \
          return reinterpret_cast<const void*>(                                                                   \
              static_cast<void (*)(std::decay_t<decltype(pygan_emu_args)>...)>(__VA_ARGS__));                     \
        } else {                                                                                                  \
          return nullptr;                                                                                         \
        }                                                                                                         \
      })

// A __shared__ declaration as the emulated build rewrites it (tests/emulation.py): the declaration, then its report.
#define PYGAN_EMU_STATIC_SHARED(name) ::pygan::emu::static_shared(&(name), sizeof(name), #name)

// ---------------------------------------------------------------- synchronization and warp intrinsics

inline void __syncthreads(std::source_location where = std::source_location::current()) {
  ::pygan::emu::sync_block(0, where);
}
inline int __syncthreads_count(int p, std::source_location where = std::source_location::current()) {
  return ::pygan::emu::sync_block(p != 0, where);
}
inline int __syncthreads_and(int p, std::source_location where = std::source_location::current()) {
  return ::pygan::emu::sync_block(p != 0, where) == static_cast<int>(blockDim.x * blockDim.y * blockDim.z);
}
inline int __syncthreads_or(int p, std::source_location where = std::source_location::current()) {
  return ::pygan::emu::sync_block(p != 0, where) > 0;
}

inline void __syncwarp(unsigned mask = 0xffffffffu, std::source_location where = std::source_location::current()) {
  unsigned out;
  ::pygan::emu::warp_collective(::pygan::emu::WarpOp::Sync, mask, nullptr, &out, 0, 0, warpSize, 0, "__syncwarp",
                                where);
}

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,
              std::source_location where = std::source_location::current()) {
  return ::pygan::emu::shfl(::pygan::emu::WarpOp::Idx, mask, var, src_lane, width, "__shfl_sync", where);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                 std::source_location where = std::source_location::current()) {
  return ::pygan::emu::shfl(::pygan::emu::WarpOp::Up, mask, var, static_cast<int>(delta), width, "__shfl_up_sync",
                            where);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                   std::source_location where = std::source_location::current()) {
  return ::pygan::emu::shfl(::pygan::emu::WarpOp::Down, mask, var, static_cast<int>(delta), width, "__shfl_down_sync",
                            where);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                  std::source_location where = std::source_location::current()) {
  return ::pygan::emu::shfl(::pygan::emu::WarpOp::Xor, mask, var, lane_mask, width, "__shfl_xor_sync", where);
}

inline unsigned pygan_emu_vote(::pygan::emu::WarpOp op, unsigned mask, int predicate, const char* what,
                               const std::source_location& where) {
  unsigned out;
  ::pygan::emu::warp_collective(op, mask, nullptr, &out, 0, 0, warpSize, predicate != 0, what, where);
  return out;
}
inline unsigned __ballot_sync(unsigned mask, int p, std::source_location where = std::source_location::current()) {
  return pygan_emu_vote(::pygan::emu::WarpOp::Ballot, mask, p, "__ballot_sync", where);
}
inline int __any_sync(unsigned mask, int p, std::source_location where = std::source_location::current()) {
  return static_cast<int>(pygan_emu_vote(::pygan::emu::WarpOp::Any, mask, p, "__any_sync", where));
}
inline int __all_sync(unsigned mask, int p, std::source_location where = std::source_location::current()) {
  return static_cast<int>(pygan_emu_vote(::pygan::emu::WarpOp::All, mask, p, "__all_sync", where));
}
inline unsigned __activemask() { return ::pygan::emu::active_mask(); }

// Fibers of one OS thread need no fence; blocks never run concurrently.
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// ---------------------------------------------------------------- atomics

template <typename T>
T atomicAdd(T* address, T v) {
  if constexpr (std::is_arithmetic_v<T>) {
    return std::atomic_ref<T>(*address).fetch_add(v);
  } else {  // c10::Half, c10::BFloat16: compare-and-swap on the value
    std::atomic_ref<T> ref(*address);
    T old = ref.load();
    while (!ref.compare_exchange_weak(old, static_cast<T>(static_cast<float>(old) + static_cast<float>(v)))) {
    }
    return old;
  }
}

// Read-modify-write operations that std::atomic_ref has as members.
#define PYGAN_EMU_ATOMIC(name, member)           \
  template <typename T>                          \
  T name(T* address, T v) {                      \
    return std::atomic_ref<T>(*address).member(v); \
  }
PYGAN_EMU_ATOMIC(atomicSub, fetch_sub)
PYGAN_EMU_ATOMIC(atomicExch, exchange)
PYGAN_EMU_ATOMIC(atomicAnd, fetch_and)
PYGAN_EMU_ATOMIC(atomicOr, fetch_or)
PYGAN_EMU_ATOMIC(atomicXor, fetch_xor)
#undef PYGAN_EMU_ATOMIC

template <typename T>
T atomicCAS(T* address, T compare, T v) {
  std::atomic_ref<T>(*address).compare_exchange_strong(compare, v);
  return compare;
}

namespace pygan::emu {
// Stores v where replaces(old, v), atomically; returns the old value.
template <typename T, typename Replaces>
T atomic_replace_if(T* address, T v, Replaces replaces) {
  std::atomic_ref<T> ref(*address);
  T old = ref.load();
  while (replaces(old, v) && !ref.compare_exchange_weak(old, v)) {
  }
  return old;
}
}  // namespace pygan::emu

template <typename T>
T atomicMax(T* address, T v) {
  return ::pygan::emu::atomic_replace_if(address, v, [](T old, T x) { return old < x; });
}
template <typename T>
T atomicMin(T* address, T v) {
  return ::pygan::emu::atomic_replace_if(address, v, [](T old, T x) { return x < old; });
}

// ---------------------------------------------------------------- loads and math intrinsics

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
inline int __float2int_rn(float x) { return static_cast<int>(nearbyintf(x)); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
  return (x >> 16) | (x << 16);
}

// CUDA's min / max of device code, for the same-type calls (mixed types are ambiguous here: cast at the call).
#define PYGAN_EMU_MINMAX(T)                          \
  inline T min(T a, T b) { return b < a ? b : a; }   \
  inline T max(T a, T b) { return a < b ? b : a; }
PYGAN_EMU_MINMAX(int)
PYGAN_EMU_MINMAX(unsigned int)
PYGAN_EMU_MINMAX(long)
PYGAN_EMU_MINMAX(unsigned long)
PYGAN_EMU_MINMAX(long long)
PYGAN_EMU_MINMAX(unsigned long long)
#undef PYGAN_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ---------------------------------------------------------------- operator registration

#ifndef PYGAN_EMU_NAMESPACE
#define PYGAN_EMU_NAMESPACE pygan_emu
#endif
#define PYGAN_EMU_EXPAND_(macro, ...) macro(__VA_ARGS__)
// Dispatch keys as the emulated build registers them: the CUDA kernels take CPU tensors; keys that are not
// backends stay. (A CPU registration has no place in this build: PYGAN_EMU_KEY_CPU is undefined on purpose.)
#define PYGAN_EMU_KEY_CUDA CPU
#define PYGAN_EMU_KEY_CompositeExplicitAutograd CompositeExplicitAutograd
#define PYGAN_EMU_KEY_CompositeImplicitAutograd CompositeImplicitAutograd
#define PYGAN_EMU_KEY_Meta Meta
#undef TORCH_LIBRARY
#undef TORCH_LIBRARY_IMPL
#define TORCH_LIBRARY(ns, m) PYGAN_EMU_EXPAND_(_TORCH_LIBRARY_FRAGMENT, PYGAN_EMU_NAMESPACE, m, C10_UID)
#define TORCH_LIBRARY_IMPL(ns, k, m) \
  PYGAN_EMU_EXPAND_(_TORCH_LIBRARY_IMPL, PYGAN_EMU_NAMESPACE, PYGAN_EMU_KEY_##k, m, C10_UID)
