#pragma once
// The accumulators of the CUDA statistics and gradient-sum reductions (batch_norm_act, instance_norm_act): add one
// element, merge another accumulator (the fixed merge order of the split reductions relies on merge alone), and
// shfl_down for warp reductions; and the write of gradient-sum totals.
namespace pygan {

// Accumulators are aggregates without initializers (so they can live in __shared__ arrays); `Acc a{}` is zero.
template <typename acc>
struct Welford {
  acc n, mean, m2;
  __device__ __forceinline__ void add(acc x) {
    n += acc(1);
    const acc d = x - mean;
    mean += d / n;
    m2 += d * (x - mean);
  }
  __device__ __forceinline__ void merge(const Welford& o) {
    if (o.n == acc(0)) return;
    if (n == acc(0)) { *this = o; return; }
    const acc total = n + o.n, d = o.mean - mean;
    mean += d * (o.n / total);
    m2 += o.m2 + d * d * (n * o.n / total);
    n = total;
  }
  __device__ __forceinline__ Welford shfl_down(int offset) const {
    return {__shfl_down_sync(0xffffffff, n, offset), __shfl_down_sync(0xffffffff, mean, offset),
            __shfl_down_sync(0xffffffff, m2, offset)};
  }
};

template <typename acc>
struct GradSums {
  acc dz, dz_xhat, slope;
  __device__ __forceinline__ void add(const GradSums& e) { merge(e); }
  __device__ __forceinline__ void merge(const GradSums& o) {
    dz += o.dz;
    dz_xhat += o.dz_xhat;
    slope += o.slope;
  }
  __device__ __forceinline__ GradSums shfl_down(int offset) const {
    return {__shfl_down_sync(0xffffffff, dz, offset), __shfl_down_sync(0xffffffff, dz_xhat, offset),
            __shfl_down_sync(0xffffffff, slope, offset)};
  }
};

// The finishing step of a GradSums reduction: the totals of reduction i (a channel, or an instance's plane) to
// three arrays; slope is null unless the activation has a learned slope.
template <typename acc>
struct WriteGradSums {
  acc* dz;
  acc* dz_xhat;
  acc* slope;
  __device__ void operator()(int64_t i, const GradSums<acc>& t) const {
    dz[i] = t.dz;
    dz_xhat[i] = t.dz_xhat;
    if (slope) slope[i] = t.slope;
  }
};

}  // namespace pygan
