#pragma once
// Accumulation type: fp32 for fp16/bf16/fp32 data, fp64 for fp64 data. Statistics and reductions use it.
#include <c10/core/ScalarType.h>
#include <type_traits>

namespace pygan {

template <typename scalar_t>
using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

inline at::ScalarType acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace pygan
