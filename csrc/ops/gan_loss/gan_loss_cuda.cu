// CUDA kernel of gan_loss. A batch of 64-256 logits is latency bound: one launch computes every gradient and one
// partial sum per block (a single block up to 256 * 8 logits); a second single-thread launch adds the block partials
// in a fixed order (deterministic, no atomics) and writes the loss and the scores.
#include "ops/gan_loss/gan_loss.h"

#include "common/launch.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace pygan::gan_loss {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kPerThread = 8;

template <typename scalar_t, Term K>
__global__ void gan_loss_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ g, int64_t n,
                                acc_t<scalar_t> target, acc_t<scalar_t> scale, acc_t<scalar_t>* __restrict__ partials) {
  using acc = acc_t<scalar_t>;
  acc s[3] = {0, 0, 0};
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const acc xi = static_cast<acc>(x[i]);
    acc value, d;
    term_at<K>(xi, target, value, d);
    g[i] = static_cast<scalar_t>(d * scale);
    s[0] += value;
    s[1] += sigmoid(xi);
    s[2] += xi;
  }
  __shared__ acc warp_sums[kThreads / 32][3];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    for (int off = 16; off > 0; off /= 2) s[k] += __shfl_down_sync(0xffffffff, s[k], off);
    if (lane == 0) warp_sums[warp][k] = s[k];
  }
  __syncthreads();
  if (threadIdx.x < 3) {
    acc total = 0;
    for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w][threadIdx.x];
    partials[blockIdx.x * 3 + threadIdx.x] = total;
  }
}

template <typename acc>
__global__ void finish_kernel(const acc* __restrict__ partials, int blocks, int64_t n, acc scale, acc* __restrict__ loss,
                              acc* __restrict__ scores) {
  acc total[3] = {0, 0, 0};
  for (int b = 0; b < blocks; ++b)
    for (int k = 0; k < 3; ++k) total[k] += partials[b * 3 + k];
  *loss = total[0] * scale;
  scores[0] = total[1] / static_cast<acc>(n);
  scores[1] = total[2] / static_cast<acc>(n);
}

void gan_loss_cuda(const at::Tensor& logits, Term term, double target, double scale, at::Tensor& grad, at::Tensor& loss,
                   at::Tensor& scores) {
  const c10::cuda::OptionalCUDAGuard guard(logits.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t n = logits.numel();
  const int blocks = static_cast<int>(std::clamp<int64_t>((n + kThreads * kPerThread - 1) / (kThreads * kPerThread), 1,
                                                          at::cuda::getCurrentDeviceProperties()->multiProcessorCount * 4));
  at::Tensor partials = at::empty({blocks * 3}, scores.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "gan_loss_cuda", [&] {
    using acc = acc_t<scalar_t>;
    dispatch_term(term, [&]<Term K>() {
      PYGAN_LAUNCH(blocks, kThreads, 0, stream, gan_loss_kernel<scalar_t, K>)(
          logits.const_data_ptr<scalar_t>(), grad.mutable_data_ptr<scalar_t>(), n, static_cast<acc>(target),
          static_cast<acc>(scale), partials.mutable_data_ptr<acc>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    PYGAN_LAUNCH(1, 1, 0, stream, finish_kernel<acc>)(partials.const_data_ptr<acc>(), blocks, n,
                                                      static_cast<acc>(scale), loss.mutable_data_ptr<acc>(),
                                                      scores.mutable_data_ptr<acc>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pygan, CUDA, m) { m.impl("gan_loss", &forward_op<gan_loss_cuda>); }

}  // namespace pygan::gan_loss
