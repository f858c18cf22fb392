#pragma once
// Argument checks shared by every op. Each names the argument and says what was expected, so a user sees
// "batch_norm_act: weight must have 3 elements (one per channel of input), got 4" and not an index error.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>
#include <string_view>

namespace pygan {

inline void check_floating(const at::Tensor& t, std::string_view op, std::string_view name) {
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": ", name,
              " must be a floating-point tensor (float32, float64, float16 or bfloat16), got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& t, const at::Tensor& ref, std::string_view op, std::string_view name,
                              std::string_view ref_name) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " must be on the same device as ", ref_name, " (",
              ref.device(), "), got ", t.device());
}

// An optional per-channel vector: 1-D with `channels` elements (or `allow_one` == a single shared value).
inline void check_per_channel(const std::optional<at::Tensor>& t, const at::Tensor& input, int64_t channels,
                              std::string_view op, std::string_view name, bool allow_one = false) {
  if (!t.has_value() || !t->defined()) return;
  check_same_device(*t, input, op, name, "input");
  check_floating(*t, op, name);
  const bool ok = t->dim() == 1 && (t->numel() == channels || (allow_one && t->numel() == 1));
  TORCH_CHECK(ok, op, ": ", name, " must be a 1-D tensor with ", channels, allow_one ? " elements or a single element" : " elements",
              " (one per channel of input, dim 1), got shape ", t->sizes());
}

}  // namespace pygan
