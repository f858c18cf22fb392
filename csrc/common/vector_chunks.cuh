#pragma once
// Chunks of V consecutive elements for CUDA element passes: each thread handles a chunk at a time, with one
// 16-byte load / store per tensor when the tensors allow it (Aligned) and V element accesses otherwise, the last
// chunk's tail masked; each chunk's channels come from one ChannelIndex cursor.
#include "common/channel_index.h"

#include <c10/macros/Macros.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace pygan {

template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

// Elements per 16-byte vector.
template <typename scalar_t>
constexpr int vec_width() { return static_cast<int>(16 / sizeof(scalar_t)); }

// Whether every pointer is aligned for `width`-element vectors and numel is a multiple of width (then no chunk
// has a tail): the Aligned case.
inline bool can_vectorize(int width, int64_t numel, std::initializer_list<const void*> ptrs, size_t elem) {
  if (numel % width != 0) return false;
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % (elem * width) != 0) return false;
  return true;
}

// Chunk k: elements [k * V, k * V + V) of p; past numel (not Aligned only) zero.
template <typename scalar_t, int V, bool Aligned>
__device__ __forceinline__ Vec<scalar_t, V> load_chunk(const scalar_t* __restrict__ p, int64_t k, int64_t numel) {
  if constexpr (Aligned) {
    return reinterpret_cast<const Vec<scalar_t, V>*>(p)[k];
  } else {
    Vec<scalar_t, V> r;
#pragma unroll
    for (int e = 0; e < V; ++e) r.v[e] = k * V + e < numel ? p[k * V + e] : scalar_t(0);
    return r;
  }
}

template <typename scalar_t, int V, bool Aligned>
__device__ __forceinline__ void store_chunk(scalar_t* __restrict__ p, int64_t k, int64_t numel,
                                            const Vec<scalar_t, V>& r) {
  if constexpr (Aligned) {
    reinterpret_cast<Vec<scalar_t, V>*>(p)[k] = r;
  } else {
#pragma unroll
    for (int e = 0; e < V; ++e)
      if (k * V + e < numel) p[k * V + e] = r.v[e];
  }
}

// y[i] = f(x[i], channel of i) over all numel elements, in chunks, grid-stride: the one-input element passes.
template <int V, bool Aligned, typename scalar_t, typename F>
__device__ __forceinline__ void map_chunks(const scalar_t* __restrict__ x, scalar_t* __restrict__ y, int64_t numel,
                                           ChannelIndex ch, F f) {
  const int64_t chunks = (numel + V - 1) / V;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < chunks;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Vec<scalar_t, V> in = load_chunk<scalar_t, V, Aligned>(x, k, numel);
    Vec<scalar_t, V> out;
    ChannelIndex::Cursor cur = ch.at(k * V);
#pragma unroll
    for (int e = 0; e < V; ++e, cur.next()) out.v[e] = f(in.v[e], cur.c);
    store_chunk<scalar_t, V, Aligned>(y, k, numel, out);
  }
}

}  // namespace pygan
