// Kernels that test the emulation itself (tests/test_emulation_harness.py): thread and block indices, launch
// limits, the warp collectives' results, atomics, shared memory with and without barriers, dynamic shared memory,
// static + dynamic shared memory against the limits, garbage in uninitialized shared memory, out-of-bounds shared
// memory, races between blocks, and the faults the scheduler must report. Written in CUDA as the ops' kernels are; compiled in the emulated
// build only. Registered as torch.ops.pygan_emu.harness_*.
#include "emulation/cuda_emu.h"

#include "common/launch.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>
#include <string_view>
#include <vector>

namespace pygan::emu::harness {
namespace {

dim3 dim3_of(const std::vector<int64_t>& v, std::string_view name) {
  TORCH_CHECK(v.size() == 3, "harness: ", name, " must have 3 values");
  return dim3(static_cast<unsigned>(v[0]), static_cast<unsigned>(v[1]), static_cast<unsigned>(v[2]));
}

// out[global thread, :] = blockIdx, threadIdx, blockDim, gridDim (x, y, z each); the global thread is
// linear block * threads per block + linear thread.
__global__ void indices_kernel(int64_t* out) {
  const int64_t block = blockIdx.x + gridDim.x * (blockIdx.y + static_cast<int64_t>(gridDim.y) * blockIdx.z);
  const int64_t thread = threadIdx.x + blockDim.x * (threadIdx.y + static_cast<int64_t>(blockDim.y) * threadIdx.z);
  int64_t* o = out + (block * blockDim.x * blockDim.y * blockDim.z + thread) * 12;
  const unsigned v[12] = {blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z,
                          blockDim.x, blockDim.y, blockDim.z, gridDim.x,   gridDim.y,   gridDim.z};
  for (int k = 0; k < 12; ++k) o[k] = v[k];
}

at::Tensor indices(const std::vector<int64_t>& grid, const std::vector<int64_t>& block, int64_t shared_bytes) {
  const dim3 g = dim3_of(grid, "grid"), b = dim3_of(block, "block");
  const int64_t threads = int64_t(g.x) * g.y * g.z * b.x * b.y * b.z;
  at::Tensor out = at::full({threads > 0 && threads <= (1 << 17) ? threads : 0, 12}, -1, at::kLong);
  void (*kernel)(int64_t*) = indices_kernel;  // a launch through a function pointer, as nvcc allows
  PYGAN_LAUNCH(g, b, static_cast<size_t>(shared_bytes), nullptr, kernel)(out.mutable_data_ptr<int64_t>());
  return out;
}

// Each thread: out[i] = the shuffle of x[i] (int32) over its warp.
__global__ void shuffle_kernel(const int* x, int* out, int op, int arg, int width, unsigned mask) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int v = x[i];
  int r = 0;
  if (op == 0) r = __shfl_sync(mask, v, arg, width);
  else if (op == 1) r = __shfl_up_sync(mask, v, static_cast<unsigned>(arg), width);
  else if (op == 2) r = __shfl_down_sync(mask, v, static_cast<unsigned>(arg), width);
  else r = __shfl_xor_sync(mask, v, arg, width);
  out[i] = r;
}

// The same with a 64-bit floating-point value: shuffles move any scalar of up to 8 bytes.
__global__ void shuffle_double_kernel(const double* x, double* out, int arg) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = __shfl_down_sync(0xffffffff, x[i], static_cast<unsigned>(arg));
}

at::Tensor shuffle(const at::Tensor& x, std::string_view op, int64_t arg, int64_t width, int64_t mask,
                   int64_t threads) {
  TORCH_CHECK(x.numel() % threads == 0, "harness: x must hold whole blocks");
  const unsigned blocks = static_cast<unsigned>(x.numel() / threads);
  at::Tensor out = at::empty_like(x);
  if (x.scalar_type() == at::kDouble) {
    PYGAN_LAUNCH(blocks, static_cast<unsigned>(threads), 0, nullptr, shuffle_double_kernel)(
        x.const_data_ptr<double>(), out.mutable_data_ptr<double>(), static_cast<int>(arg));
    return out;
  }
  const int code = op == "idx" ? 0 : op == "up" ? 1 : op == "down" ? 2 : op == "xor" ? 3 : -1;
  TORCH_CHECK(code >= 0, "harness: op must be idx, up, down or xor");
  PYGAN_LAUNCH(blocks, static_cast<unsigned>(threads), 0, nullptr, shuffle_kernel)(
      x.const_data_ptr<int>(), out.mutable_data_ptr<int>(), code, static_cast<int>(arg), static_cast<int>(width),
      static_cast<unsigned>(mask));
  return out;
}

// out[i] = ballot / any / all of pred over the warp, and __syncthreads_count of pred over the block.
__global__ void vote_kernel(const int* pred, int64_t* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int p = pred[i];
  out[i * 4 + 0] = __ballot_sync(0xffffffff, p);
  out[i * 4 + 1] = __any_sync(0xffffffff, p);
  out[i * 4 + 2] = __all_sync(0xffffffff, p);
  out[i * 4 + 3] = __syncthreads_count(p);
}

at::Tensor vote(const at::Tensor& pred, int64_t threads) {
  at::Tensor out = at::empty({pred.numel(), 4}, at::kLong);
  PYGAN_LAUNCH(static_cast<unsigned>(pred.numel() / threads), static_cast<unsigned>(threads), 0, nullptr,
               vote_kernel)(pred.const_data_ptr<int>(), out.mutable_data_ptr<int64_t>());
  return out;
}

// Every thread adds 1 to counters of four types.
__global__ void atomics_kernel(float* f, double* d, int* i, unsigned long long* u) {
  atomicAdd(f, 1.0f);
  atomicAdd(d, 1.0);
  atomicAdd(i, 1);
  atomicAdd(u, 1ull);
  atomicMax(i + 1, static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x));
}

at::Tensor atomics(int64_t blocks, int64_t threads) {
  float f = 0;
  double d = 0;
  int i[2] = {0, -1};
  unsigned long long u = 0;
  PYGAN_LAUNCH(static_cast<unsigned>(blocks), static_cast<unsigned>(threads), 0, nullptr, atomics_kernel)(
      &f, &d, i, &u);
  return at::tensor({static_cast<double>(f), d, static_cast<double>(i[0]), static_cast<double>(u),
                     static_cast<double>(i[1])}, at::kDouble);
}

// Per block: the sum of its 256 values by a tree reduction in shared memory, with a barrier after each step, or
// (sync=false) without: a missing __syncthreads().
constexpr int kSumThreads = 256;
__global__ void block_sum_kernel(const float* x, float* out, bool sync) {
  __shared__ __align__(16) float sh[kSumThreads];
  sh[threadIdx.x] = x[blockIdx.x * kSumThreads + threadIdx.x];
  __syncthreads();
  for (int k = kSumThreads / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
    if (sync) __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = sh[0];
}

at::Tensor block_sum(const at::Tensor& x, bool sync) {
  const int64_t blocks = x.numel() / kSumThreads;
  at::Tensor out = at::empty({blocks}, at::kFloat);
  PYGAN_LAUNCH(static_cast<unsigned>(blocks), kSumThreads, 0, nullptr, block_sum_kernel)(
      x.const_data_ptr<float>(), out.mutable_data_ptr<float>(), sync);
  return out;
}

// Dynamic shared memory: out[i, 0] = the value before any write (the poison), out[i, 1] = the next thread's
// value after a barrier.
__global__ void dynamic_shared_kernel(float* out) {
  PYGAN_DYNAMIC_SHARED(float, buf);
  const unsigned t = threadIdx.x;
  const float before = buf[t];
  __syncthreads();
  buf[t] = static_cast<float>(blockIdx.x * 1000 + t);
  __syncthreads();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + t;
  out[i * 2] = before;
  out[i * 2 + 1] = buf[(t + 1) % blockDim.x];
}

at::Tensor dynamic_shared(int64_t blocks, int64_t threads) {
  at::Tensor out = at::empty({blocks * threads, 2}, at::kFloat);
  PYGAN_LAUNCH(static_cast<unsigned>(blocks), static_cast<unsigned>(threads), threads * sizeof(float), nullptr,
               dynamic_shared_kernel)(out.mutable_data_ptr<float>());
  return out;
}

// More than 48 KiB of dynamic shared memory: allowed only after an opt-in (allow > 0: PYGAN_ALLOW_DYNAMIC_SHARED
// with that many bytes first). Returns the last float of the memory, written by thread 0 and read back by the last.
__global__ void large_shared_kernel(float* out, int64_t floats) {
  PYGAN_DYNAMIC_SHARED(float, buf);
  if (threadIdx.x == 0) buf[floats - 1] = 7.0f;
  __syncthreads();
  if (threadIdx.x == blockDim.x - 1) out[0] = buf[floats - 1];
}

at::Tensor large_shared(int64_t bytes, int64_t allow) {
  if (allow > 0) PYGAN_ALLOW_DYNAMIC_SHARED(allow, large_shared_kernel);
  at::Tensor out = at::empty({1}, at::kFloat);
  PYGAN_LAUNCH(1, 32, static_cast<size_t>(bytes), nullptr, large_shared_kernel)(out.mutable_data_ptr<float>(),
                                                                                 bytes / int64_t(sizeof(float)));
  return out;
}

// Static and dynamic shared memory together: a 1 KiB __shared__ tile and `bytes` of dynamic shared memory, after an
// opt-in to `allow` bytes (allow > 0). Returns the tile's last value, written by thread 0 and read by the last.
__global__ void static_and_dynamic_kernel(float* out) {
  __shared__ float tile[256];
  PYGAN_DYNAMIC_SHARED(float, buf);
  if (threadIdx.x == 0) tile[255] = buf[0] = 3.0f;
  __syncthreads();
  if (threadIdx.x == blockDim.x - 1) out[0] = tile[255] + buf[0];
}

at::Tensor static_and_dynamic(int64_t bytes, int64_t allow) {
  if (allow > 0) PYGAN_ALLOW_DYNAMIC_SHARED(allow, static_and_dynamic_kernel);
  at::Tensor out = at::empty({1}, at::kFloat);
  PYGAN_LAUNCH(1, 32, static_cast<size_t>(bytes), nullptr, static_and_dynamic_kernel)(out.mutable_data_ptr<float>());
  return out;
}

// One source kernel, two instantiations: the opt-in of one does not let the other launch with more than 48 KiB.
template <typename T>
__global__ void typed_shared_kernel(T* out, int64_t n) {
  PYGAN_DYNAMIC_SHARED(T, buf);
  if (threadIdx.x == 0) buf[n - 1] = T(5);
  __syncthreads();
  if (threadIdx.x == 0) out[0] = buf[n - 1];
}

double opt_in_per_instantiation(int64_t bytes, bool opt_in_float, bool launch_double) {
  if (opt_in_float) PYGAN_ALLOW_DYNAMIC_SHARED(bytes, typed_shared_kernel<float>);
  if (launch_double) {
    double out = 0;
    PYGAN_LAUNCH(1, 32, static_cast<size_t>(bytes), nullptr, typed_shared_kernel<double>)(
        &out, bytes / int64_t(sizeof(double)));
    return out;
  }
  float out = 0;
  PYGAN_LAUNCH(1, 32, static_cast<size_t>(bytes), nullptr, typed_shared_kernel<float>)(
      &out, bytes / int64_t(sizeof(float)));
  return out;
}

// What uninitialized shared memory holds: per block, the bits of a static __shared__ value and of a dynamic one
// read before any write.
__global__ void uninitialized_shared_kernel(int* out) {
  __shared__ int word[32];
  PYGAN_DYNAMIC_SHARED(int, buf);
  if (threadIdx.x == 0) {
    out[blockIdx.x * 2] = word[5];
    out[blockIdx.x * 2 + 1] = buf[5];
  }
  __syncthreads();
  word[threadIdx.x] = 0;  // a block that leaves zeros behind: the next block must not see them
  buf[threadIdx.x] = 0;
}

at::Tensor uninitialized_shared(int64_t blocks) {
  at::Tensor out = at::empty({blocks, 2}, at::kInt);
  PYGAN_LAUNCH(static_cast<unsigned>(blocks), 32, 32 * sizeof(int), nullptr, uninitialized_shared_kernel)(
      out.mutable_data_ptr<int>());
  return out;
}

// Thread 0 writes element `index` of the dynamic shared memory (`bytes` of it): out of bounds when index * 4 >= bytes.
__global__ void shared_index_kernel(int64_t index) {
  PYGAN_DYNAMIC_SHARED(float, buf);
  auto tail = buf + index;  // an offset pointer as kernels compute them: the access through it is checked
  if (threadIdx.x == 0) tail[0] = 1.0f;
}

void shared_index(int64_t bytes, int64_t index) {
  PYGAN_LAUNCH(2, 32, static_cast<size_t>(bytes), nullptr, shared_index_kernel)(index);
}

// Each block sums its 64 values and thread 0 adds the sum to out[0]: with atomicAdd, or with a plain `+=` (a lost
// update on a GPU when two blocks add at once).
__global__ void sum_into_kernel(const float* x, float* out, bool atomic) {
  const float v = x[blockIdx.x * blockDim.x + threadIdx.x];
  float s = v;
  for (int off = 16; off > 0; off /= 2) s += __shfl_down_sync(0xffffffff, s, off);
  __shared__ float warp_sums[2];
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    const float block_sum = warp_sums[0] + warp_sums[1];
    if (atomic) atomicAdd(out, block_sum);
    else *out += block_sum;
  }
}

at::Tensor sum_into(const at::Tensor& x, bool atomic) {
  at::Tensor out = at::zeros({1}, at::kFloat);
  PYGAN_LAUNCH(static_cast<unsigned>(x.numel() / 64), 64, 0, nullptr, sum_into_kernel)(
      x.const_data_ptr<float>(), out.mutable_data_ptr<float>(), atomic);
  return out;
}

// Faults the scheduler must report, by name.
__global__ void fault_kernel(int kind, float* out) {
  const unsigned t = threadIdx.x;
  float v = static_cast<float>(t);
  switch (kind) {
    case 0:  // a thread returns before a barrier the others reach
      if (t == 5) return;
      __syncthreads();
      break;
    case 1:  // two barriers in divergent code
      if (t % 2) __syncthreads();
      else __syncthreads();
      break;
    case 2:  // a lane returns before a shuffle its warp reaches
      if (t == 3) return;
      v = __shfl_down_sync(0xffffffff, v, 1);
      break;
    case 3:  // the lanes of a warp at two different shuffles
      if (t < 16) v = __shfl_down_sync(0xffffffff, v, 1);
      else v = __shfl_xor_sync(0xffffffff, v, 1);
      break;
    case 4:  // a partial mask
      v = __shfl_down_sync(0x0000ffff, v, 1);
      break;
    case 5:  // a width that is not a power of 2
      v = __shfl_down_sync(0xffffffff, v, 1, 12);
      break;
    case 6:  // half a warp at a shuffle, the other half at a barrier
      if (t < 16) v = __shfl_down_sync(0xffffffff, v, 1);
      else __syncthreads();
      break;
    case 7:  // a shuffle in a block whose last warp is partial (48 threads)
      v = __shfl_xor_sync(0xffffffff, v, 1);
      break;
    case 8:  // a 16-byte vector load from an address that is 4 bytes past a 16-byte boundary
      if (t == 2) v = reinterpret_cast<const float4*>(out + 1)->y;
      break;
    case 9: {  // a __shared__ tile read one element past its end
      __shared__ float tile[64];
      tile[t] = v;
      __syncthreads();
      v = tile[t + 1];
      break;
    }
  }
  out[blockIdx.x * blockDim.x + t] = v;
}

void fault(std::string_view kind) {
  static const char* const kinds[] = {"exit_before_barrier", "divergent_barrier", "lane_exits_before_shuffle",
                                      "divergent_shuffle", "partial_mask", "bad_width", "shuffle_and_barrier",
                                      "partial_warp", "misaligned_vector_load", "shared_out_of_bounds"};
  int k = -1;
  for (int i = 0; i < 10; ++i)
    if (kind == kinds[i]) k = i;
  TORCH_CHECK(k >= 0, "harness: unknown fault ", kind);
  const unsigned threads = k == 7 ? 48 : 64;
  std::vector<float> out(threads * 2);
  PYGAN_LAUNCH(2, threads, 0, nullptr, fault_kernel)(k, out.data());
}

}  // namespace
}  // namespace pygan::emu::harness

TORCH_LIBRARY_FRAGMENT(pygan_emu, m) {
  using namespace pygan::emu::harness;
  m.def("harness_indices(int[] grid, int[] block, int shared_bytes) -> Tensor", &indices);
  m.def("harness_shuffle(Tensor x, str op, int arg, int width, int mask, int threads) -> Tensor", &shuffle);
  m.def("harness_vote(Tensor pred, int threads) -> Tensor", &vote);
  m.def("harness_atomics(int blocks, int threads) -> Tensor", &atomics);
  m.def("harness_block_sum(Tensor x, bool sync) -> Tensor", &block_sum);
  m.def("harness_dynamic_shared(int blocks, int threads) -> Tensor", &dynamic_shared);
  m.def("harness_large_shared(int bytes, int allow) -> Tensor", &large_shared);
  m.def("harness_fault(str kind) -> ()", &fault);
  m.def("harness_static_and_dynamic(int bytes, int allow) -> Tensor", &static_and_dynamic);
  m.def("harness_opt_in_per_instantiation(int bytes, bool opt_in_float, bool launch_double) -> float",
        &opt_in_per_instantiation);
  m.def("harness_uninitialized_shared(int blocks) -> Tensor", &uninitialized_shared);
  m.def("harness_shared_index(int bytes, int index) -> ()", &shared_index);
  m.def("harness_sum_into(Tensor x, bool atomic) -> Tensor", &sum_into);
}
