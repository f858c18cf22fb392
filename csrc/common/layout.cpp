#include "common/layout.h"

namespace pygan {

at::Tensor dense_for_kernels(const at::Tensor& x) { return x.contiguous(x.suggest_memory_format()); }

Layout layout_of(const at::Tensor& x) {
  const int64_t N = x.size(0), C = x.size(1);
  const int64_t S = N * C == 0 ? 0 : x.numel() / (N * C);
  // Dense and not standard-contiguous means channels_last(_3d); with S == 1 both layouts are the same memory.
  const bool channels_last = !x.is_contiguous() || S == 1;
  return Layout{channels_last, N, C, S};
}

}  // namespace pygan
