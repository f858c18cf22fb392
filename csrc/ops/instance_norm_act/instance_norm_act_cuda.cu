// CUDA passes of instance_norm_act. Two schedules:
//  - plane on chip (channels first, a plane that fits in shared memory): one block per (n, c) plane loads the plane
//    once into shared memory, reduces it and writes the result from there. Forward: one read of x and one write of
//    y (+ one read of the residual) - 2 sweeps against stock's 5 for InstanceNorm + ReLU (statistics read, normalize
//    read + write, activation read + write) and 6 for InstanceNorm + add (the add reads two tensors and writes one).
//    Backward: one read each of grad_out and the saved tensor, one write of grad_input - 3 sweeps against stock's 8
//    for ReLU + InstanceNorm (activation backward 3, norm backward reduction 2 and element pass 3); the residual,
//    when read, is read twice (+ grad_residual written).
//  - split (larger planes, channels last): every plane's reduction is split over blocks (channels last: lanes over
//    (row, channel), all 256 used even when C < 32), partials merged in a fixed order (deterministic) by a finalize
//    kernel, then an element pass in 16-byte chunks: forward 3 sweeps, backward 5.
#include "ops/instance_norm_act/instance_norm_act.h"

#include "common/accumulators.cuh"
#include "common/launch.h"
#include "common/vector_chunks.cuh"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

namespace pygan::ina {
namespace {

constexpr int kThreads = 256;              // split reductions and element passes
constexpr int kPlaneThreads = 512;         // plane-on-chip kernels
constexpr int64_t kPlaneBytes = 100 * 1024;  // shared memory a plane kernel may take (two blocks per SM on Hopper)
constexpr int64_t kDefaultShared = 48 * 1024;  // static + dynamic shared memory a launch gets without opting in
// Room left for the plane kernels' static shared memory (their block_sum scratch: 128 B, 256 B for double, as nvcc
// reports for sm_90) wherever a limit counts static and dynamic shared memory together.
constexpr int64_t kStaticReserve = 1024;
constexpr int64_t kMinPerBlock = 2048;     // values a split-reduction block should at least handle

int sm_count() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

int64_t plane_bytes_cap() {
  return std::min<int64_t>(
      kPlaneBytes, static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin) - kStaticReserve);
}

// Whether a plane kernel with `bytes` of dynamic shared memory must opt in beyond the default: the default limit
// counts its static shared memory too.
bool needs_opt_in(int64_t bytes) { return bytes + kStaticReserve > kDefaultShared; }

template <typename acc>
struct PlaneArgs {
  const acc* mean;    // [N * C]
  const acc* invstd;  // [N * C]
  const acc* gamma;   // [C]
  const acc* beta;    // [C]
  const acc* slope;   // [C]
  int64_t C;
};

template <typename acc>
PlaneArgs<acc> plane_args(const PlaneParams& p, int64_t C) {
  return {p.mean.const_data_ptr<acc>(), p.invstd.const_data_ptr<acc>(), p.gamma.const_data_ptr<acc>(),
          p.beta.const_data_ptr<acc>(), p.slope.const_data_ptr<acc>(), C};
}

// Pre-activation z and normalized input x_hat of one element of `plane` from the saved value s and residual rv.
template <Act A, bool FromOutput, typename acc>
__device__ __forceinline__ void recover(acc s, acc rv, int64_t plane, int64_t c, const PlaneArgs<acc>& p, acc& z,
                                        acc& xh) {
  if constexpr (FromOutput) {
    z = act_inverse<A>(s, p.slope[c]);
    xh = (z - p.beta[c]) / p.gamma[c];
  } else {
    xh = (s - p.mean[plane]) * p.invstd[plane];
    z = xh * p.gamma[c] + p.beta[c] + rv;
  }
}

// The sum of v over the block, returned to every thread (deterministic order). scratch: 32 values of shared memory.
template <typename T>
__device__ T block_sum(T v, T* scratch) {
  for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffff, v, off);
  __syncthreads();  // scratch may still be read from the previous call
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += scratch[w];
  return total;
}

// ---------------------------------------------------------------- plane on chip

// One block per plane (n * C + c) of S values: statistics, then y = act(x * scale + shift + r), x read once.
template <typename scalar_t, Act A, bool Res>
__global__ void plane_forward_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ r,
                                     scalar_t* __restrict__ y, int64_t S, PlaneArgs<acc_t<scalar_t>> p,
                                     acc_t<scalar_t>* mean_out, acc_t<scalar_t>* invstd_out, acc_t<scalar_t> eps) {
  using acc = acc_t<scalar_t>;
  PYGAN_DYNAMIC_SHARED(scalar_t, cache);
  __shared__ acc scratch[32];
  const int64_t plane = blockIdx.x, c = plane % p.C, base = plane * S;
  acc sum = 0;
  for (int64_t i = threadIdx.x; i < S; i += blockDim.x) {
    const scalar_t v = x[base + i];
    cache[i] = v;
    sum += static_cast<acc>(v);
  }
  const acc mean = block_sum(sum, scratch) / static_cast<acc>(S);
  acc m2 = 0;
  for (int64_t i = threadIdx.x; i < S; i += blockDim.x) {
    const acc d = static_cast<acc>(cache[i]) - mean;
    m2 += d * d;
  }
  const acc invstd = acc(1) / sqrt(block_sum(m2, scratch) / static_cast<acc>(S) + eps);
  if (threadIdx.x == 0) {
    mean_out[plane] = mean;
    invstd_out[plane] = invstd;
  }
  const acc scale = p.gamma[c] * invstd, shift = p.beta[c] - mean * scale, sl = p.slope[c];
  for (int64_t i = threadIdx.x; i < S; i += blockDim.x) {
    acc z = static_cast<acc>(cache[i]) * scale + shift;
    if constexpr (Res) z += static_cast<acc>(r[base + i]);
    y[base + i] = static_cast<scalar_t>(act_forward<A>(z, sl));
  }
}

// One block per plane: gradient sums with grad_out and the saved tensor cached, then grad_x (and grad_r) from there.
template <typename scalar_t, Act A, bool FromOutput, bool Res>
__global__ void plane_backward_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ s,
                                      const scalar_t* __restrict__ r, scalar_t* __restrict__ dx,
                                      scalar_t* __restrict__ dr, int64_t S, PlaneArgs<acc_t<scalar_t>> p,
                                      bool training, acc_t<scalar_t>* sum_dz, acc_t<scalar_t>* sum_dzx,
                                      acc_t<scalar_t>* sum_slope) {
  using acc = acc_t<scalar_t>;
  PYGAN_DYNAMIC_SHARED(scalar_t, g_cache);
  auto s_cache = g_cache + S;
  __shared__ acc scratch[32];
  const int64_t plane = blockIdx.x, c = plane % p.C, base = plane * S;
  const acc sl = p.slope[c];
  acc a_dz = 0, a_dzx = 0, a_sl = 0;
  for (int64_t i = threadIdx.x; i < S; i += blockDim.x) {
    const scalar_t gv = dy[base + i], sv = s[base + i];
    g_cache[i] = gv;
    s_cache[i] = sv;
    acc z, xh;
    recover<A, FromOutput>(static_cast<acc>(sv), Res ? static_cast<acc>(r[base + i]) : acc(0), plane, c, p, z, xh);
    const acc dz = static_cast<acc>(gv) * act_derivative<A>(z, sl);
    a_dz += dz;
    a_dzx += dz * xh;
    if constexpr (A == Act::Leaky) a_sl += slope_grad_term(static_cast<acc>(gv), z);
  }
  const acc t_dz = block_sum(a_dz, scratch), t_dzx = block_sum(a_dzx, scratch);
  if constexpr (A == Act::Leaky) {
    const acc t_sl = block_sum(a_sl, scratch);
    if (threadIdx.x == 0 && sum_slope) sum_slope[plane] = t_sl;
  }
  if (threadIdx.x == 0) {
    sum_dz[plane] = t_dz;
    sum_dzx[plane] = t_dzx;
  }
  const acc a = p.gamma[c] * p.invstd[plane], inv_s = acc(1) / static_cast<acc>(S);
  const acc b = training ? -a * t_dz * inv_s : acc(0), cx = training ? -a * t_dzx * inv_s : acc(0);
  for (int64_t i = threadIdx.x; i < S; i += blockDim.x) {
    acc z, xh;
    recover<A, FromOutput>(static_cast<acc>(s_cache[i]), Res ? static_cast<acc>(r[base + i]) : acc(0), plane, c, p, z,
                           xh);
    const acc dz = static_cast<acc>(g_cache[i]) * act_derivative<A>(z, sl);
    dx[base + i] = static_cast<scalar_t>(a * dz + b + cx * xh);
    if constexpr (Res) dr[base + i] = static_cast<scalar_t>(dz);
  }
}

// ---------------------------------------------------------------- split reductions

// Channels first: block (plane, split) reduces values [split * chunk, ...) of the plane.
template <typename Acc, typename Load>
__global__ void reduce_cf_kernel(Load load, int64_t S, int64_t chunk, int64_t planes, Acc* partials) {
  const int64_t plane = blockIdx.x, split = blockIdx.y;
  const int64_t begin = split * chunk, end = std::min(S, begin + chunk);
  Acc a{};
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) a.add(load(plane * S + j, plane));
  __shared__ Acc part[kThreads];
  part[threadIdx.x] = a;
  __syncthreads();
  if (threadIdx.x == 0) {
    Acc total = part[0];
    for (int t = 1; t < kThreads; ++t) total.merge(part[t]);
    partials[split * planes + plane] = total;
  }
}

// Channels last: the lanes of a block map to (row lane, channel) with `width` = min(C, 32) channels per block, so a
// small C still uses every lane (C = 3: 85 row lanes x 3 channels). Block (n * tiles + tile, split) reduces rows
// [split * chunk, ...) of sample n.
template <typename Acc, typename Load>
__global__ void reduce_cl_kernel(Load load, int64_t S, int64_t C, int width, int64_t tiles, int64_t chunk,
                                 int64_t planes, Acc* partials) {
  const int64_t n = blockIdx.x / tiles, tile = blockIdx.x % tiles, split = blockIdx.y;
  const int lanes = kThreads / width;
  const int lane_c = threadIdx.x % width, lane_r = threadIdx.x / width;
  const int64_t c = tile * width + lane_c;
  const int64_t begin = split * chunk, end = std::min(S, begin + chunk);
  Acc a{};
  if (lane_r < lanes && c < C)
    for (int64_t row = begin + lane_r; row < end; row += lanes) a.add(load((n * S + row) * C + c, n * C + c));
  __shared__ Acc part[kThreads];
  part[threadIdx.x] = a;
  __syncthreads();
  if (lane_r == 0 && c < C) {
    Acc total = part[lane_c];
    for (int k = 1; k < lanes; ++k) total.merge(part[k * width + lane_c]);
    partials[split * planes + n * C + c] = total;
  }
}

template <typename Acc, typename Done>
__global__ void finalize_kernel(const Acc* partials, int64_t splits, int64_t planes, Done done) {
  const int64_t plane = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (plane >= planes) return;
  Acc total = partials[plane];
  for (int64_t k = 1; k < splits; ++k) total.merge(partials[k * planes + plane]);
  done(plane, total);
}

// load(i, plane) -> Acc element over every plane, then done(plane, total).
template <typename Acc, typename Load, typename Done>
void reduce_planes(const Layout& l, const at::Tensor& like, Load load, Done done) {
  auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t planes = l.N * l.C;
  const int width = static_cast<int>(std::min<int64_t>(l.C, 32));
  const int64_t tiles = ceil_div(l.C, width);
  const int64_t blocks_x = l.channels_last ? l.N * tiles : planes;
  int64_t splits = std::clamp<int64_t>(ceil_div(sm_count() * 4, blocks_x), 1,
                                       std::max<int64_t>(1, l.S * (l.channels_last ? width : 1) / kMinPerBlock));
  splits = std::min<int64_t>(splits, 65535);
  const int64_t chunk = ceil_div(l.S, splits);
  splits = ceil_div(l.S, chunk);
  at::Tensor ws = at::empty({static_cast<int64_t>(splits * planes * sizeof(Acc))}, like.options().dtype(at::kByte));
  Acc* partials = reinterpret_cast<Acc*>(ws.mutable_data_ptr());
  TORCH_CHECK(blocks_x < (int64_t(1) << 31), "instance_norm_act: too many planes for one launch");
  const dim3 grid(static_cast<unsigned>(blocks_x), static_cast<unsigned>(splits));
  if (!l.channels_last) PYGAN_LAUNCH(grid, kThreads, 0, stream, reduce_cf_kernel<Acc>)(load, l.S, chunk, planes, partials);
  else PYGAN_LAUNCH(grid, kThreads, 0, stream, reduce_cl_kernel<Acc>)(load, l.S, l.C, width, tiles, chunk, planes, partials);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  PYGAN_LAUNCH(static_cast<unsigned>(ceil_div(planes, 128)), 128, 0, stream, finalize_kernel<Acc>)(partials, splits, planes, done);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
struct LoadValue {
  const scalar_t* x;
  __device__ __forceinline__ acc_t<scalar_t> operator()(int64_t i, int64_t) const {
    return static_cast<acc_t<scalar_t>>(x[i]);
  }
};

template <typename acc>
struct WriteStats {
  acc* mean;
  acc* invstd;
  acc eps;
  __device__ void operator()(int64_t plane, const Welford<acc>& w) const {
    mean[plane] = w.mean;
    invstd[plane] = acc(1) / sqrt(w.m2 / w.n + eps);
  }
};

template <typename scalar_t, Act A, bool FromOutput, bool Res>
struct LoadGrad {
  const scalar_t* dy;
  const scalar_t* s;
  const scalar_t* r;
  PlaneArgs<acc_t<scalar_t>> p;
  __device__ __forceinline__ GradSums<acc_t<scalar_t>> operator()(int64_t i, int64_t plane) const {
    using acc = acc_t<scalar_t>;
    const int64_t c = plane % p.C;
    acc z, xh;
    recover<A, FromOutput>(static_cast<acc>(s[i]), Res ? static_cast<acc>(r[i]) : acc(0), plane, c, p, z, xh);
    const acc g = static_cast<acc>(dy[i]);
    const acc dz = g * act_derivative<A>(z, p.slope[c]);
    return {dz, dz * xh, A == Act::Leaky ? slope_grad_term(g, z) : acc(0)};
  }
};

// ---------------------------------------------------------------- element passes
// grid (x, samples): blockIdx.y walks the samples, each a run of C * S elements whose channels a cursor follows.

unsigned element_blocks(int64_t chunks, int64_t samples) {
  const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(sm_count()) * 32 / std::max<int64_t>(samples, 1));
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(ceil_div(chunks, kThreads), cap)));
}

template <typename scalar_t, Act A, bool Res, int V, bool Aligned>
__global__ void apply_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ r, scalar_t* __restrict__ y,
                             int64_t N, int64_t per_sample, ChannelIndex ch, PlaneArgs<acc_t<scalar_t>> p) {
  using acc = acc_t<scalar_t>;
  const int64_t chunks = (per_sample + V - 1) / V;
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const int64_t off = n * per_sample;
    for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < chunks;
         k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const Vec<scalar_t, V> in = load_chunk<scalar_t, V, Aligned>(x + off, k, per_sample);
      Vec<scalar_t, V> res{};
      if constexpr (Res) res = load_chunk<scalar_t, V, Aligned>(r + off, k, per_sample);
      Vec<scalar_t, V> out;
      ChannelIndex::Cursor cur = ch.at(k * V);
#pragma unroll
      for (int e = 0; e < V; ++e, cur.next()) {
        const int64_t c = cur.c, plane = n * p.C + c;
        const acc scale = p.gamma[c] * p.invstd[plane];
        acc z = static_cast<acc>(in.v[e]) * scale + (p.beta[c] - p.mean[plane] * scale);
        if constexpr (Res) z += static_cast<acc>(res.v[e]);
        out.v[e] = static_cast<scalar_t>(act_forward<A>(z, p.slope[c]));
      }
      store_chunk<scalar_t, V, Aligned>(y + off, k, per_sample, out);
    }
  }
}

template <typename scalar_t, Act A, bool FromOutput, bool Res, int V, bool Aligned>
__global__ void grad_input_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ s,
                                  const scalar_t* __restrict__ r, scalar_t* __restrict__ dx, scalar_t* __restrict__ dr,
                                  int64_t N, int64_t per_sample, ChannelIndex ch, PlaneArgs<acc_t<scalar_t>> p,
                                  const acc_t<scalar_t>* __restrict__ sum_dz, const acc_t<scalar_t>* __restrict__ sum_dzx,
                                  acc_t<scalar_t> inv_s, bool training) {
  using acc = acc_t<scalar_t>;
  const int64_t chunks = (per_sample + V - 1) / V;
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const int64_t off = n * per_sample;
    for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < chunks;
         k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const Vec<scalar_t, V> g = load_chunk<scalar_t, V, Aligned>(dy + off, k, per_sample);
      const Vec<scalar_t, V> v = load_chunk<scalar_t, V, Aligned>(s + off, k, per_sample);
      Vec<scalar_t, V> res{};
      if constexpr (Res) res = load_chunk<scalar_t, V, Aligned>(r + off, k, per_sample);
      Vec<scalar_t, V> out, out_r;
      ChannelIndex::Cursor cur = ch.at(k * V);
#pragma unroll
      for (int e = 0; e < V; ++e, cur.next()) {
        const int64_t c = cur.c, plane = n * p.C + c;
        acc z, xh;
        recover<A, FromOutput>(static_cast<acc>(v.v[e]), Res ? static_cast<acc>(res.v[e]) : acc(0), plane, c, p, z, xh);
        const acc a = p.gamma[c] * p.invstd[plane];
        const acc dz = static_cast<acc>(g.v[e]) * act_derivative<A>(z, p.slope[c]);
        const acc val = training ? a * (dz - sum_dz[plane] * inv_s - xh * sum_dzx[plane] * inv_s) : a * dz;
        out.v[e] = static_cast<scalar_t>(val);
        out_r.v[e] = static_cast<scalar_t>(dz);
      }
      store_chunk<scalar_t, V, Aligned>(dx + off, k, per_sample, out);
      if constexpr (Res) store_chunk<scalar_t, V, Aligned>(dr + off, k, per_sample, out_r);
    }
  }
}

// ---------------------------------------------------------------- backend functions

template <typename scalar_t>
bool plane_fits(const Layout& l, int arrays) {
  return !l.channels_last && l.S * static_cast<int64_t>(sizeof(scalar_t)) * arrays <= plane_bytes_cap() &&
         l.N * l.C < (int64_t(1) << 31);
}

template <typename scalar_t, Act A, bool Res>
void launch_apply(const at::Tensor& x, const at::Tensor& r, const Layout& l, const PlaneArgs<acc_t<scalar_t>>& pa,
                  at::Tensor& y) {
  auto stream = at::cuda::getCurrentCUDAStream();
  const scalar_t* in = x.const_data_ptr<scalar_t>();
  const scalar_t* res = Res ? r.const_data_ptr<scalar_t>() : nullptr;
  scalar_t* out = y.mutable_data_ptr<scalar_t>();
  const int64_t per_sample = l.C * l.S;
  const ChannelIndex ch = ChannelIndex::of(l.C, l.S, l.channels_last);
  constexpr int V = vec_width<scalar_t>();
  const bool vec = can_vectorize(V, per_sample, {in, res ? res : in, out}, sizeof(scalar_t));
  const dim3 grid(element_blocks(ceil_div(per_sample, V), l.N), static_cast<unsigned>(std::min<int64_t>(l.N, 65535)));
  if (vec) PYGAN_LAUNCH(grid, kThreads, 0, stream, apply_kernel<scalar_t, A, Res, V, true>)(in, res, out, l.N, per_sample, ch, pa);
  else PYGAN_LAUNCH(grid, kThreads, 0, stream, apply_kernel<scalar_t, A, Res, V, false>)(in, res, out, l.N, per_sample, ch, pa);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void forward_cuda(const at::Tensor& x, const at::Tensor& r, const Layout& l, Act act, double eps, PlaneParams& p,
                  at::Tensor& y) {
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "instance_norm_act_forward_cuda", [&] {
    using acc = acc_t<scalar_t>;
    acc* mean = p.mean.mutable_data_ptr<acc>();
    acc* invstd = p.invstd.mutable_data_ptr<acc>();
    const auto pa = plane_args<acc>(p, l.C);
    dispatch_act(act, [&]<Act A>() {
      auto run = [&]<bool Res>() {
        if (plane_fits<scalar_t>(l, 1)) {
          const int64_t bytes = l.S * static_cast<int64_t>(sizeof(scalar_t));
          if (needs_opt_in(bytes)) PYGAN_ALLOW_DYNAMIC_SHARED(bytes, plane_forward_kernel<scalar_t, A, Res>);
          PYGAN_LAUNCH(static_cast<unsigned>(l.N * l.C), kPlaneThreads, bytes, stream,
                       plane_forward_kernel<scalar_t, A, Res>)(
              x.const_data_ptr<scalar_t>(), Res ? r.const_data_ptr<scalar_t>() : nullptr,
              y.mutable_data_ptr<scalar_t>(), l.S, pa, mean, invstd, static_cast<acc>(eps));
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        } else {
          reduce_planes<Welford<acc>>(l, x, LoadValue<scalar_t>{x.const_data_ptr<scalar_t>()},
                                      WriteStats<acc>{mean, invstd, static_cast<acc>(eps)});
          launch_apply<scalar_t, A, Res>(x, r, l, pa, y);
        }
      };
      if (r.defined()) run.template operator()<true>();
      else run.template operator()<false>();
    });
  });
}

void apply_cuda(const at::Tensor& x, const at::Tensor& r, const Layout& l, Act act, const PlaneParams& p, at::Tensor& y) {
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "instance_norm_act_apply_cuda", [&] {
    const auto pa = plane_args<acc_t<scalar_t>>(p, l.C);
    dispatch_act(act, [&]<Act A>() {
      if (r.defined()) launch_apply<scalar_t, A, true>(x, r, l, pa, y);
      else launch_apply<scalar_t, A, false>(x, r, l, pa, y);
    });
  });
}

void backward_cuda(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const at::Tensor& r,
                   const Layout& l, Act act, const PlaneParams& p, bool training, at::Tensor& sum_dz,
                   at::Tensor& sum_dz_xhat, at::Tensor& sum_slope, at::Tensor& grad_x, at::Tensor& grad_r) {
  const c10::cuda::OptionalCUDAGuard guard(saved.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, saved.scalar_type(), "instance_norm_act_backward_cuda", [&] {
    using acc = acc_t<scalar_t>;
    const auto pa = plane_args<acc>(p, l.C);
    const scalar_t* dy = grad_y.const_data_ptr<scalar_t>();
    const scalar_t* s = saved.const_data_ptr<scalar_t>();
    scalar_t* dx = grad_x.mutable_data_ptr<scalar_t>();
    acc* o_dz = sum_dz.mutable_data_ptr<acc>();
    acc* o_dzx = sum_dz_xhat.mutable_data_ptr<acc>();
    acc* o_sl = sum_slope.numel() > 0 ? sum_slope.mutable_data_ptr<acc>() : nullptr;
    dispatch_act(act, [&]<Act A>() {
      auto run = [&]<bool FromOutput, bool Res>() {
        const scalar_t* rv = Res ? r.const_data_ptr<scalar_t>() : nullptr;
        scalar_t* dr = Res ? grad_r.mutable_data_ptr<scalar_t>() : nullptr;
        if (plane_fits<scalar_t>(l, 2)) {
          const int64_t bytes = 2 * l.S * static_cast<int64_t>(sizeof(scalar_t));
          if (needs_opt_in(bytes))
            PYGAN_ALLOW_DYNAMIC_SHARED(bytes, plane_backward_kernel<scalar_t, A, FromOutput, Res>);
          PYGAN_LAUNCH(static_cast<unsigned>(l.N * l.C), kPlaneThreads, bytes, stream,
                       plane_backward_kernel<scalar_t, A, FromOutput, Res>)(dy, s, rv, dx, dr, l.S, pa, training, o_dz,
                                                                            o_dzx, o_sl);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          return;
        }
        reduce_planes<GradSums<acc>>(l, saved, LoadGrad<scalar_t, A, FromOutput, Res>{dy, s, rv, pa},
                                     WriteGradSums<acc>{o_dz, o_dzx, o_sl});
        const int64_t per_sample = l.C * l.S;
        const ChannelIndex ch = ChannelIndex::of(l.C, l.S, l.channels_last);
        constexpr int V = vec_width<scalar_t>();
        const bool vec = can_vectorize(V, per_sample, {dy, s, dx, rv ? rv : s, dr ? dr : dx}, sizeof(scalar_t));
        const dim3 grid(element_blocks(ceil_div(per_sample, V), l.N), static_cast<unsigned>(std::min<int64_t>(l.N, 65535)));
        const acc inv_s = acc(1) / static_cast<acc>(l.S);
        if (vec)
          PYGAN_LAUNCH(grid, kThreads, 0, stream, grad_input_kernel<scalar_t, A, FromOutput, Res, V, true>)(
              dy, s, rv, dx, dr, l.N, per_sample, ch, pa, o_dz, o_dzx, inv_s, training);
        else
          PYGAN_LAUNCH(grid, kThreads, 0, stream, grad_input_kernel<scalar_t, A, FromOutput, Res, V, false>)(
              dy, s, rv, dx, dr, l.N, per_sample, ch, pa, o_dz, o_dzx, inv_s, training);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      if (saved_is_output) run.template operator()<true, false>();
      else if (r.defined()) run.template operator()<false, true>();
      else run.template operator()<false, false>();
    });
  });
}

const Backend kCuda{forward_cuda, apply_cuda, backward_cuda};

}  // namespace

TORCH_LIBRARY_IMPL(pygan, CUDA, m) { register_kernels<kCuda>(m); }

}  // namespace pygan::ina
