#pragma once
// A per-channel argument as the kernels read it: C = x.size(1) contiguous values in x's accumulation dtype (a single
// value expanded), `fill` everywhere when absent.
#include "common/accumulate.h"

#include <ATen/ATen.h>

#include <optional>

namespace pygan {

inline at::Tensor channel_vector(const std::optional<at::Tensor>& t, const at::Tensor& x, double fill) {
  const auto opts = x.options().dtype(acc_dtype(x.scalar_type()));
  const int64_t C = x.size(1);
  if (!t.has_value() || !t->defined()) return at::full({C}, fill, opts);
  return t->to(opts.dtype()).expand({C}).contiguous();
}

}  // namespace pygan
