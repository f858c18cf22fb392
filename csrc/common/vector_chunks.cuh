#pragma once
// Chunks of V consecutive elements for CUDA element passes: each thread handles a chunk at a time, with one
// 16-byte load / store per tensor when the tensors allow it (Aligned) and V element accesses otherwise, the last
// chunk's tail masked. Use with common/channel_index.h for the chunk's channels.
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

}  // namespace pygan
