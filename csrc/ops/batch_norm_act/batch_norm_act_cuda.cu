// CUDA passes of batch_norm_act, same structure as the CPU ones: forward = statistics (per-thread Welford,
// merged per block, then per channel across blocks with Chan's formula in a finalize kernel) + one
// normalize-and-activate pass; backward = one reduction pass (same scheme, plain sums) + one input-gradient pass.
// Every channel's reduction is split over several blocks (a grid of C blocks underfills an H100 when C is
// small), and the merge order is fixed, so results are deterministic. Element passes give each thread chunks of
// 16 bytes (16-byte vector loads when sizes and alignment allow) and find channels with a cursor, not a division
// per element (common/channel_index.h).
#include "ops/batch_norm_act/batch_norm_act.h"

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

namespace pygan::bna {
namespace {

constexpr int kThreads = 256;            // channels-first reduction and element passes
constexpr int kTileC = 32, kTileR = 8;   // channels-last reduction block: 32 channels x 8 rows
constexpr int64_t kMinPerBlock = 2048;   // elements a reduction block should at least handle

int target_blocks() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount * 4; }

// ---------------------------------------------------------------- per-channel parameters on the device

template <typename acc>
struct ChannelArgs {
  const acc* mean;
  const acc* invstd;
  const acc* gamma;  // null: 1
  const acc* beta;   // null: 0
  const acc* slope;  // null: leaky
  int64_t slope_stride;
  acc leaky;

  __device__ __forceinline__ acc g(int64_t c) const { return gamma ? gamma[c] : acc(1); }
  __device__ __forceinline__ acc b(int64_t c) const { return beta ? beta[c] : acc(0); }
  __device__ __forceinline__ acc sl(int64_t c) const { return slope ? slope[c * slope_stride] : leaky; }
};

template <typename acc>
ChannelArgs<acc> channel_args(const ChannelParams& p) {
  auto ptr = [](const at::Tensor& t) { return t.defined() ? t.const_data_ptr<acc>() : nullptr; };
  const int64_t stride = p.slope.defined() && p.slope.numel() > 1 ? 1 : 0;
  return {ptr(p.mean), ptr(p.invstd), ptr(p.gamma), ptr(p.beta), ptr(p.slope), stride, static_cast<acc>(p.leaky_slope)};
}

// ---------------------------------------------------------------- reductions per channel

// Channels first: block (c, split) reduces elements [split*chunk, (split+1)*chunk) of channel c's N*S values.
template <typename Acc, typename Load>
__global__ void reduce_cf_kernel(Load load, int64_t N, int64_t C, int64_t S, int64_t chunk, Acc* partials) {
  const int64_t c = blockIdx.x, split = blockIdx.y;
  const int64_t begin = split * chunk, end = std::min(N * S, begin + chunk);
  Acc acc{};
  // j = n * S + s walks the channel's values by blockDim.x: (n, s) advance by the step's own quotient and
  // remainder, so there is no 64-bit division per element.
  const int64_t first = begin + threadIdx.x, step_n = blockDim.x / S, step_s = blockDim.x - step_n * S;
  int64_t n = first / S, s = first - n * S;
  for (int64_t j = first; j < end; j += blockDim.x) {
    acc.add(load((n * C + c) * S + s, c));
    n += step_n;
    s += step_s;
    if (s >= S) {
      s -= S;
      ++n;
    }
  }
  // warp, then block
  for (int off = 16; off > 0; off /= 2) acc.merge(acc.shfl_down(off));
  __shared__ Acc warp_acc[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_acc[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    Acc total = warp_acc[0];
    for (int w = 1; w < kThreads / 32; ++w) total.merge(warp_acc[w]);
    partials[split * C + c] = total;
  }
}

// Channels last: block (tile, split) reduces rows [split*chunk, (split+1)*chunk) of 32 channels.
template <typename Acc, typename Load>
__global__ void reduce_cl_kernel(Load load, int64_t rows, int64_t C, int64_t chunk, Acc* partials) {
  const int64_t c = blockIdx.x * kTileC + threadIdx.x, split = blockIdx.y;
  const int64_t begin = split * chunk, end = std::min(rows, begin + chunk);
  Acc acc{};
  if (c < C)
    for (int64_t r = begin + threadIdx.y; r < end; r += kTileR) acc.add(load(r * C + c, c));
  __shared__ Acc rows_acc[kTileR][kTileC];
  rows_acc[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    Acc total = rows_acc[0][threadIdx.x];
    for (int y = 1; y < kTileR; ++y) total.merge(rows_acc[y][threadIdx.x]);
    partials[split * C + c] = total;
  }
}

// Merges each channel's partials in a fixed order and hands the total to `done(c, total)`.
template <typename Acc, typename Done>
__global__ void finalize_kernel(const Acc* partials, int64_t splits, int64_t C, Done done) {
  const int64_t c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  Acc total = partials[c];
  for (int64_t s = 1; s < splits; ++s) total.merge(partials[s * C + c]);
  done(c, total);
}

// Runs load(i, c) -> element through Acc per channel and calls done(c, total) once per channel.
template <typename Acc, typename Load, typename Done>
void reduce_per_channel(const Layout& l, const at::Tensor& like, Load load, Done done) {
  auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t per_channel = l.N * l.S;
  int64_t splits, chunk;
  if (!l.channels_last) {
    splits = std::clamp<int64_t>(ceil_div(target_blocks(), l.C), 1, std::max<int64_t>(1, per_channel / kMinPerBlock));
    splits = std::min<int64_t>(splits, 65535);
    chunk = ceil_div(per_channel, splits);
    splits = ceil_div(per_channel, chunk);
  } else {
    const int64_t tiles = ceil_div(l.C, kTileC);
    splits = std::clamp<int64_t>(ceil_div(target_blocks(), tiles), 1, std::max<int64_t>(1, per_channel / 64));
    splits = std::min<int64_t>(splits, 65535);
    chunk = ceil_div(per_channel, splits);
    splits = ceil_div(per_channel, chunk);
  }
  at::Tensor ws = at::empty({static_cast<int64_t>(splits * l.C * sizeof(Acc))}, like.options().dtype(at::kByte));
  Acc* partials = reinterpret_cast<Acc*>(ws.mutable_data_ptr());
  if (!l.channels_last) {
    dim3 grid(static_cast<unsigned>(l.C), static_cast<unsigned>(splits));
    PYGAN_LAUNCH(grid, kThreads, 0, stream, reduce_cf_kernel<Acc>)(load, l.N, l.C, l.S, chunk, partials);
  } else {
    dim3 grid(static_cast<unsigned>(ceil_div(l.C, kTileC)), static_cast<unsigned>(splits));
    PYGAN_LAUNCH(grid, dim3(kTileC, kTileR), 0, stream, reduce_cl_kernel<Acc>)(load, per_channel, l.C, chunk, partials);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  PYGAN_LAUNCH(static_cast<unsigned>(ceil_div(l.C, 128)), 128, 0, stream, finalize_kernel<Acc>)(
      partials, splits, l.C, done);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// ---------------------------------------------------------------- element passes
// Each thread takes chunks of V consecutive elements (common/vector_chunks.cuh), their channels from one cursor.

unsigned element_blocks(int64_t chunks) {
  const int64_t cap = static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount) * 32;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(ceil_div(chunks, kThreads), cap)));
}

// y = act(x * scale + shift), scale = gamma * invstd, shift = beta - mean * scale
template <typename scalar_t, Act A, int V, bool Aligned>
__global__ void normalize_act_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y, int64_t numel,
                                     ChannelIndex ch, ChannelArgs<acc_t<scalar_t>> p) {
  using acc = acc_t<scalar_t>;
  map_chunks<V, Aligned>(x, y, numel, ch, [&](scalar_t v, int64_t c) {
    const acc scale = p.g(c) * p.invstd[c];
    const acc shift = p.b(c) - p.mean[c] * scale;
    return static_cast<scalar_t>(act_forward<A>(static_cast<acc>(v) * scale + shift, p.sl(c)));
  });
}

// Pre-activation z and normalized input x_hat of one element from the saved value s (input or output).
template <Act A, bool FromOutput, typename acc>
__device__ __forceinline__ void recover(acc s, int64_t c, const ChannelArgs<acc>& p, acc& z, acc& xh) {
  const acc g = p.g(c), b = p.b(c);
  if constexpr (FromOutput) {
    z = act_inverse<A>(s, p.sl(c));
    xh = (z - b) / g;
  } else {
    xh = (s - p.mean[c]) * p.invstd[c];
    z = xh * g + b;
  }
}

// dx = a * dz + bb + cx * x_hat, a = gamma * invstd, bb = -a * sum_dz / M, cx = -a * sum_dz_xhat / M (training)
template <typename scalar_t, Act A, bool FromOutput, int V, bool Aligned>
__global__ void grad_input_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ s,
                                  scalar_t* __restrict__ dx, int64_t numel, ChannelIndex ch,
                                  ChannelArgs<acc_t<scalar_t>> p, const acc_t<scalar_t>* __restrict__ sum_dz,
                                  const acc_t<scalar_t>* __restrict__ sum_dzx, acc_t<scalar_t> inv_m, bool training) {
  using acc = acc_t<scalar_t>;
  const int64_t chunks = (numel + V - 1) / V;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < chunks;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Vec<scalar_t, V> g = load_chunk<scalar_t, V, Aligned>(dy, k, numel);
    const Vec<scalar_t, V> v = load_chunk<scalar_t, V, Aligned>(s, k, numel);
    Vec<scalar_t, V> out;
    ChannelIndex::Cursor cur = ch.at(k * V);
#pragma unroll
    for (int e = 0; e < V; ++e, cur.next()) {
      const int64_t c = cur.c;
      acc z, xh;
      recover<A, FromOutput>(static_cast<acc>(v.v[e]), c, p, z, xh);
      const acc a = p.g(c) * p.invstd[c];
      const acc dz = static_cast<acc>(g.v[e]) * act_derivative<A>(z, p.sl(c));
      const acc r = training ? a * (dz - sum_dz[c] * inv_m - xh * sum_dzx[c] * inv_m) : a * dz;
      out.v[e] = static_cast<scalar_t>(r);
    }
    store_chunk<scalar_t, V, Aligned>(dx, k, numel, out);
  }
}

// ---------------------------------------------------------------- loaders and finalizers (device functors)

// The statistics run on x - K_c, K_c the channel's first value (element (0, c, 0), at c * k_stride), as the CPU
// kernels do: Welford in float on x itself loses the digits below the mean's ulp when the mean is large next to
// the spread; shifted, the float accumulators hold the spread only.
template <typename scalar_t>
struct LoadShifted {
  const scalar_t* x;
  int64_t k_stride;
  __device__ __forceinline__ acc_t<scalar_t> operator()(int64_t i, int64_t c) const {
    using acc = acc_t<scalar_t>;
    return static_cast<acc>(x[i]) - static_cast<acc>(x[c * k_stride]);
  }
};

template <typename scalar_t>
struct WriteStats {
  using acc = acc_t<scalar_t>;
  const scalar_t* x;
  int64_t k_stride;
  acc* mean;
  acc* invstd;
  acc eps;
  __device__ void operator()(int64_t c, const Welford<acc>& w) const {
    mean[c] = static_cast<acc>(x[c * k_stride]) + w.mean;
    invstd[c] = acc(1) / sqrt(w.m2 / w.n + eps);
  }
};

template <typename scalar_t, Act A, bool FromOutput>
struct LoadGrad {
  const scalar_t* dy;
  const scalar_t* s;
  ChannelArgs<acc_t<scalar_t>> p;
  __device__ __forceinline__ GradSums<acc_t<scalar_t>> operator()(int64_t i, int64_t c) const {
    using acc = acc_t<scalar_t>;
    acc z, xh;
    recover<A, FromOutput>(static_cast<acc>(s[i]), c, p, z, xh);
    const acc g = static_cast<acc>(dy[i]);
    const acc dz = g * act_derivative<A>(z, p.sl(c));
    return {dz, dz * xh, A == Act::Leaky ? slope_grad_term(g, z) : acc(0)};
  }
};

// ---------------------------------------------------------------- backend functions

void batch_stats_cuda(const at::Tensor& x, const Layout& l, double eps, at::Tensor& mean, at::Tensor& invstd) {
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "batch_norm_act_stats_cuda", [&] {
    using acc = acc_t<scalar_t>;
    const scalar_t* in = x.const_data_ptr<scalar_t>();
    const int64_t k_stride = l.channels_last ? 1 : l.S;  // element (0, c, 0)
    reduce_per_channel<Welford<acc>>(l, x, LoadShifted<scalar_t>{in, k_stride},
                                     WriteStats<scalar_t>{in, k_stride, mean.mutable_data_ptr<acc>(),
                                                          invstd.mutable_data_ptr<acc>(), static_cast<acc>(eps)});
  });
}

template <typename run_t, typename stat_t>
__global__ void update_stats_kernel(run_t* rm, run_t* rv, const stat_t* mean, const stat_t* invstd, int64_t C,
                                    double momentum, double eps, double unbias) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c < C) update_running(rm[c], rv[c], mean[c], invstd[c], momentum, eps, unbias);
}

void update_stats_cuda(at::Tensor& running_mean, at::Tensor& running_var, const at::Tensor& mean,
                       const at::Tensor& invstd, double momentum, double eps, int64_t count) {
  const c10::cuda::OptionalCUDAGuard guard(running_mean.device());
  const int64_t C = mean.numel();
  if (C == 0) return;
  const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
  auto stream = at::cuda::getCurrentCUDAStream();
  const unsigned blocks = static_cast<unsigned>(ceil_div(C, 256));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, running_mean.scalar_type(), "batch_norm_update_stats_cuda", [&] {
    scalar_t* rm = running_mean.mutable_data_ptr<scalar_t>();
    scalar_t* rv = running_var.mutable_data_ptr<scalar_t>();
    if (mean.scalar_type() == at::kDouble)
      PYGAN_LAUNCH(blocks, 256, 0, stream, update_stats_kernel)(
          rm, rv, mean.const_data_ptr<double>(), invstd.const_data_ptr<double>(), C, momentum, eps, unbias);
    else
      PYGAN_LAUNCH(blocks, 256, 0, stream, update_stats_kernel)(
          rm, rv, mean.const_data_ptr<float>(), invstd.const_data_ptr<float>(), C, momentum, eps, unbias);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void normalize_act_cuda(const at::Tensor& x, const Layout& l, Act act, const ChannelParams& cp, at::Tensor& y) {
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  const ChannelIndex ch = ChannelIndex::of(l.C, l.S, l.channels_last);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "batch_norm_act_forward_cuda", [&] {
    using acc = acc_t<scalar_t>;
    const auto p = channel_args<acc>(cp);
    const scalar_t* in = x.const_data_ptr<scalar_t>();
    scalar_t* out = y.mutable_data_ptr<scalar_t>();
    const int64_t n = x.numel();
    constexpr int V = vec_width<scalar_t>();
    const bool vec = can_vectorize(V, n, {in, out}, sizeof(scalar_t));
    const unsigned blocks = element_blocks(ceil_div(n, V));
    dispatch_act(act, [&]<Act A>() {
      if (vec) PYGAN_LAUNCH(blocks, kThreads, 0, stream, normalize_act_kernel<scalar_t, A, V, true>)(in, out, n, ch, p);
      else PYGAN_LAUNCH(blocks, kThreads, 0, stream, normalize_act_kernel<scalar_t, A, V, false>)(in, out, n, ch, p);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void grad_sums_cuda(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const Layout& l, Act act,
                    const ChannelParams& cp, at::Tensor& sum_dz, at::Tensor& sum_dz_xhat, at::Tensor& sum_slope) {
  const c10::cuda::OptionalCUDAGuard guard(saved.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, saved.scalar_type(), "batch_norm_act_grad_sums_cuda", [&] {
    using acc = acc_t<scalar_t>;
    const auto p = channel_args<acc>(cp);
    const scalar_t* dy = grad_y.const_data_ptr<scalar_t>();
    const scalar_t* s = saved.const_data_ptr<scalar_t>();
    const WriteGradSums<acc> done{sum_dz.mutable_data_ptr<acc>(), sum_dz_xhat.mutable_data_ptr<acc>(),
                                  sum_slope.numel() > 0 ? sum_slope.mutable_data_ptr<acc>() : nullptr};
    dispatch_act(act, [&]<Act A>() {
      if (saved_is_output) reduce_per_channel<GradSums<acc>>(l, saved, LoadGrad<scalar_t, A, true>{dy, s, p}, done);
      else reduce_per_channel<GradSums<acc>>(l, saved, LoadGrad<scalar_t, A, false>{dy, s, p}, done);
    });
  });
}

void grad_input_cuda(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const Layout& l, Act act,
                     const ChannelParams& cp, bool training, const at::Tensor& sum_dz, const at::Tensor& sum_dz_xhat,
                     at::Tensor& grad_x) {
  const c10::cuda::OptionalCUDAGuard guard(saved.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  const ChannelIndex ch = ChannelIndex::of(l.C, l.S, l.channels_last);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, saved.scalar_type(), "batch_norm_act_grad_input_cuda", [&] {
    using acc = acc_t<scalar_t>;
    const auto p = channel_args<acc>(cp);
    const scalar_t* dy = grad_y.const_data_ptr<scalar_t>();
    const scalar_t* s = saved.const_data_ptr<scalar_t>();
    scalar_t* dx = grad_x.mutable_data_ptr<scalar_t>();
    const acc* sdz = sum_dz.const_data_ptr<acc>();
    const acc* sdzx = sum_dz_xhat.const_data_ptr<acc>();
    const acc inv_m = acc(1) / static_cast<acc>(l.count());
    const int64_t n = saved.numel();
    constexpr int V = vec_width<scalar_t>();
    const bool vec = can_vectorize(V, n, {dy, s, dx}, sizeof(scalar_t));
    const unsigned blocks = element_blocks(ceil_div(n, V));
    dispatch_act(act, [&]<Act A>() {
      auto launch = [&]<bool FromOutput>() {
        if (vec)
          PYGAN_LAUNCH(blocks, kThreads, 0, stream, grad_input_kernel<scalar_t, A, FromOutput, V, true>)(
              dy, s, dx, n, ch, p, sdz, sdzx, inv_m, training);
        else
          PYGAN_LAUNCH(blocks, kThreads, 0, stream, grad_input_kernel<scalar_t, A, FromOutput, V, false>)(
              dy, s, dx, n, ch, p, sdz, sdzx, inv_m, training);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      if (saved_is_output) launch.template operator()<true>();
      else launch.template operator()<false>();
    });
  });
}

void forward_training_cuda(const at::Tensor& x, const Layout& l, Act act, double eps, ChannelParams& p, at::Tensor& y) {
  batch_stats_cuda(x, l, eps, p.mean, p.invstd);
  normalize_act_cuda(x, l, act, p, y);
}

void backward_cuda(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const Layout& l, Act act,
                   const ChannelParams& p, bool training, at::Tensor& sum_dz, at::Tensor& sum_dz_xhat,
                   at::Tensor& sum_slope, at::Tensor& grad_x) {
  grad_sums_cuda(grad_y, saved, saved_is_output, l, act, p, sum_dz, sum_dz_xhat, sum_slope);
  grad_input_cuda(grad_y, saved, saved_is_output, l, act, p, training, sum_dz, sum_dz_xhat, grad_x);
}

const Backend kCuda{forward_training_cuda, update_stats_cuda, normalize_act_cuda, backward_cuda};

}  // namespace

TORCH_LIBRARY_IMPL(pygan, CUDA, m) { register_kernels<kCuda>(m); }

}  // namespace pygan::bna
