#pragma once
// How the kernels see a tensor of shape (N, C, *): dense, either [N, C, S] ("channels first") or [N*S, C]
// ("channels last", also used whenever S == 1).
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace pygan {

struct Layout {
  bool channels_last;
  int64_t N, C, S;
  int64_t count() const { return N * S; }  // values per channel
};

at::Tensor dense_for_kernels(const at::Tensor& x);  // x itself when already dense in its suggested memory format
Layout layout_of(const at::Tensor& dense);

}  // namespace pygan
