// CUDA passes of bias_act. Forward: one elementwise kernel (16-byte chunks per thread). Backward: one kernel that
// writes grad_input and reduces the per-channel bias (and prelu slope) gradients: a block owns one channel
// (channels-first) or up to 32 channels (channels-last) over a chunk of the data, reduces in shared memory and adds
// its partial sums to the fp32/fp64 accumulators with one atomicAdd per channel per block.
#include "ops/bias_act/bias_act.h"

#include "common/launch.h"
#include "common/vector_chunks.cuh"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAException.h>
#include <torch/library.h>

#include <algorithm>

namespace pygan::bias_act {
namespace {

template <typename acc_t>
struct ChannelView {  // see Params: both always hold C values
  const acc_t* bias;
  const acc_t* slope;
  __device__ __forceinline__ acc_t b(int64_t c) const { return bias[c]; }
  __device__ __forceinline__ acc_t s(int64_t c) const { return slope[c]; }
};

template <typename acc_t>
ChannelView<acc_t> view_of(const Params& p) {
  return ChannelView<acc_t>{p.bias.const_data_ptr<acc_t>(), p.slope.const_data_ptr<acc_t>()};
}

// Chunks of V consecutive elements per thread (common/vector_chunks.cuh).
template <Act A, typename scalar_t, typename acc_t, int V, bool Aligned>
__global__ void forward_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y, int64_t numel,
                               ChannelIndex ch, ChannelView<acc_t> cv) {
  map_chunks<V, Aligned>(x, y, numel, ch, [&](scalar_t v, int64_t c) {
    return static_cast<scalar_t>(act_forward<A>(static_cast<acc_t>(v) + cv.b(c), cv.s(c)));
  });
}

template <Act A, typename scalar_t, typename acc_t>
__device__ __forceinline__ void backward_element(const scalar_t* gy, const scalar_t* saved, scalar_t* gx, int64_t i,
                                                 bool saved_is_output, acc_t b, acc_t s, acc_t& sum_b, acc_t& sum_s) {
  const acc_t dy = static_cast<acc_t>(gy[i]);
  const acc_t z = static_cast<acc_t>(saved[i]) + (saved_is_output ? acc_t(0) : b);
  const acc_t dz = dy * act_derivative_of_saved<A>(z, s, saved_is_output);
  gx[i] = static_cast<scalar_t>(dz);
  sum_b += dz;
  sum_s += slope_grad_term(dy, z);
}

constexpr int kThreads = 256;

constexpr int64_t kMinPerBlock = 2048;  // values a backward block should at least handle

// Channels-first: block (channel blockIdx.x, split blockIdx.y) takes values [split * chunk, (split + 1) * chunk) of
// the channel's N * S values, j = n * S + s: chunks, not whole planes, so that a few channels (an image generator's
// output layer: N = 1, C = 3) still fill the GPU and small planes (4x4) do not leave most lanes idle. (n, s) step by
// the stride's own quotient and remainder: no 64-bit division per element.
template <Act A, typename scalar_t, typename acc_t>
__global__ void backward_planes_kernel(const scalar_t* __restrict__ gy, const scalar_t* __restrict__ saved,
                                       scalar_t* __restrict__ gx, int64_t N, int64_t C, int64_t S, int64_t chunk,
                                       bool saved_is_output, bool want_slope, ChannelView<acc_t> cv,
                                       acc_t* __restrict__ grad_bias, acc_t* __restrict__ grad_slope) {
  const int64_t c = blockIdx.x;
  const acc_t b = cv.b(c), s = cv.s(c);
  acc_t sum_b = 0, sum_s = 0;
  const int64_t begin = blockIdx.y * chunk, end = std::min(N * S, begin + chunk);
  const int64_t first = begin + threadIdx.x, step_n = blockDim.x / S, step_s = blockDim.x - step_n * S;
  int64_t n = first / S, i = first - n * S;
  for (int64_t j = first; j < end; j += blockDim.x) {
    backward_element<A>(gy, saved, gx, (n * C + c) * S + i, saved_is_output, b, s, sum_b, sum_s);
    n += step_n;
    i += step_s;
    if (i >= S) {
      i -= S;
      ++n;
    }
  }
  __shared__ acc_t sh_b[kThreads], sh_s[kThreads];
  sh_b[threadIdx.x] = sum_b;
  sh_s[threadIdx.x] = sum_s;
  __syncthreads();
  for (int k = kThreads / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k) {
      sh_b[threadIdx.x] += sh_b[threadIdx.x + k];
      sh_s[threadIdx.x] += sh_s[threadIdx.x + k];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    atomicAdd(grad_bias + c, sh_b[0]);
    if (want_slope) atomicAdd(grad_slope + c, sh_s[0]);
  }
}

// Channels-last: kThreads lanes map to (row lane, channel) with width = min(C, 32) channels per block, so a small C
// uses every lane (C = 3: 85 row lanes x 3 channels, not 8 x 3 of a 32 x 8 tile). Block (channel group blockIdx.x,
// blockIdx.y) takes rows blockIdx.y * lanes + row lane, stepping by gridDim.y * lanes.
template <Act A, typename scalar_t, typename acc_t>
__global__ void backward_rows_kernel(const scalar_t* __restrict__ gy, const scalar_t* __restrict__ saved,
                                     scalar_t* __restrict__ gx, int64_t rows, int64_t C, int width,
                                     bool saved_is_output, bool want_slope, ChannelView<acc_t> cv,
                                     acc_t* __restrict__ grad_bias, acc_t* __restrict__ grad_slope) {
  const int lanes = kThreads / width, lane_c = threadIdx.x % width, lane_r = threadIdx.x / width;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * width + lane_c;
  acc_t sum_b = 0, sum_s = 0;
  if (c < C && lane_r < lanes) {
    const acc_t b = cv.b(c), s = cv.s(c);
    for (int64_t r = static_cast<int64_t>(blockIdx.y) * lanes + lane_r; r < rows;
         r += static_cast<int64_t>(gridDim.y) * lanes)
      backward_element<A>(gy, saved, gx, r * C + c, saved_is_output, b, s, sum_b, sum_s);
  }
  __shared__ acc_t sh_b[kThreads], sh_s[kThreads];
  sh_b[threadIdx.x] = sum_b;
  sh_s[threadIdx.x] = sum_s;
  __syncthreads();
  if (lane_r == 0 && c < C) {
    for (int k = 1; k < lanes; ++k) {
      sum_b += sh_b[k * width + lane_c];
      sum_s += sh_s[k * width + lane_c];
    }
    atomicAdd(grad_bias + c, sum_b);
    if (want_slope) atomicAdd(grad_slope + c, sum_s);
  }
}

int blocks_for(int64_t work, int64_t per_block) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((work + per_block - 1) / per_block, sms * 8)));
}

void forward_cuda(const at::Tensor& x, const Layout& l, Act act, const Params& p, at::Tensor& y) {
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act_cuda", [&] {
    using acc = acc_t<scalar_t>;
    const auto cv = view_of<acc>(p);
    const int64_t numel = x.numel();
    const scalar_t* in = x.const_data_ptr<scalar_t>();
    scalar_t* out = y.data_ptr<scalar_t>();
    const ChannelIndex ch = ChannelIndex::of(l.C, l.S, l.channels_last);
    constexpr int V = vec_width<scalar_t>();
    const bool aligned = can_vectorize(V, numel, {in, out}, sizeof(scalar_t));
    const int blocks = blocks_for((numel + V - 1) / V, kThreads * 4);
    dispatch_act(act, [&]<Act A>() {
      if (aligned)
        PYGAN_LAUNCH(blocks, kThreads, 0, stream, forward_kernel<A, scalar_t, acc, V, true>)(in, out, numel, ch, cv);
      else
        PYGAN_LAUNCH(blocks, kThreads, 0, stream, forward_kernel<A, scalar_t, acc, V, false>)(in, out, numel, ch, cv);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void backward_cuda(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const Layout& l, Act act,
                   const Params& p, bool want_slope, at::Tensor& grad_x, at::Tensor& grad_bias,
                   at::Tensor& grad_slope) {
  // grad_bias / grad_slope are summed with float atomicAdds from several blocks per channel, in an order that
  // varies run to run: under torch.use_deterministic_algorithms(True) this must raise (or warn, warn_only=True)
  // as PyTorch's own atomic-reduction kernels do, not silently return non-reproducible gradients.
  at::globalContext().alertNotDeterministic("bias_act_backward_cuda");
  const c10::cuda::OptionalCUDAGuard guard(saved.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, saved.scalar_type(), "bias_act_backward_cuda", [&] {
    using acc = acc_t<scalar_t>;
    const auto cv = view_of<acc>(p);
    const scalar_t* gy = grad_y.const_data_ptr<scalar_t>();
    const scalar_t* sv = saved.const_data_ptr<scalar_t>();
    scalar_t* gx = grad_x.data_ptr<scalar_t>();
    acc* gb = grad_bias.data_ptr<acc>();
    acc* gs = want_slope ? grad_slope.data_ptr<acc>() : nullptr;
    dispatch_act(act, [&]<Act A>() {
      const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
      if (!l.channels_last) {
        // Enough blocks to fill the GPU: each channel's N * S values in chunks of at least kMinPerBlock.
        const int64_t per_channel = l.N * l.S;
        int64_t splits = std::clamp<int64_t>((sms * 8 + l.C - 1) / l.C, 1, std::max<int64_t>(1, per_channel / kMinPerBlock));
        splits = std::min<int64_t>(splits, 65535);
        const int64_t chunk = (per_channel + splits - 1) / splits;
        splits = (per_channel + chunk - 1) / chunk;
        const dim3 grid(static_cast<unsigned>(l.C), static_cast<unsigned>(splits));
        PYGAN_LAUNCH(grid, kThreads, 0, stream, backward_planes_kernel<A, scalar_t, acc>)(
            gy, sv, gx, l.N, l.C, l.S, chunk, saved_is_output, want_slope, cv, gb, gs);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      } else {
        const int width = static_cast<int>(std::min<int64_t>(l.C, 32));
        const int64_t rows = l.N * l.S, groups = (l.C + width - 1) / width, lanes = kThreads / width;
        const int64_t row_blocks = std::max<int64_t>(
            1, std::min<int64_t>((rows + lanes * 8 - 1) / (lanes * 8), (sms * 8 + groups - 1) / groups));
        const dim3 grid(static_cast<unsigned>(groups), static_cast<unsigned>(std::min<int64_t>(row_blocks, 65535)));
        PYGAN_LAUNCH(grid, kThreads, 0, stream, backward_rows_kernel<A, scalar_t, acc>)(
            gy, sv, gx, rows, l.C, width, saved_is_output, want_slope, cv, gb, gs);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  });
}

constexpr Backend kCuda{&forward_cuda, &backward_cuda};

}  // namespace

TORCH_LIBRARY_IMPL(pygan, CUDA, m) {
  m.impl("bias_act", &forward_op<kCuda>);
  m.impl("bias_act_backward", &backward_op<kCuda>);
}

}  // namespace pygan::bias_act
