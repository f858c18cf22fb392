#pragma once
// What host and device code share: the inline qualifier of functions both compile, and small integer helpers.

#include <cstdint>

#if defined(__CUDACC__)
#define PYGAN_HD __host__ __device__ __forceinline__
#else
#define PYGAN_HD inline
#endif

namespace pygan {

// a / b rounded up, for a >= 0 and b > 0: how many blocks / tasks / chunks of b cover a.
PYGAN_HD constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace pygan
