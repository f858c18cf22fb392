// batch_norm_act through the dispatcher, without Python: against ATen's batch_norm + activation (float64),
// forward and backward, both memory formats, and an argument error.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include "check.h"

using OptT = std::optional<at::Tensor>;

static auto forward_op() {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow("pygan::batch_norm_act", "")
      .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const OptT&, const OptT&, const OptT&,
                                                            const OptT&, const OptT&, bool, double, c10::string_view,
                                                            double)>();
}

static auto backward_op() {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow("pygan::batch_norm_act_backward", "")
      .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
          const at::Tensor&, const at::Tensor&, bool, const OptT&, const OptT&, const OptT&, const at::Tensor&,
          const at::Tensor&, bool, c10::string_view, double)>();
}

static bool close(const at::Tensor& a, const at::Tensor& b, double tol = 1e-10) {
  return a.sizes() == b.sizes() && (a - b).abs().max().item<double>() <= tol;
}

static void check_against_aten(at::MemoryFormat fmt) {
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  at::Tensor x = (at::randn({2, 3, 5, 7}, opts) * 2 + 0.5).contiguous(fmt);
  at::Tensor w = 1 + 0.2 * at::randn({3}, opts), b = 0.1 * at::randn({3}, opts);

  auto [y, mean, invstd] = forward_op().call(x, w, b, std::nullopt, std::nullopt, std::nullopt, true, 1e-5, "leaky_relu", 0.2);

  at::Tensor xr = x.clone().requires_grad_(true), wr = w.clone().requires_grad_(true), br = b.clone().requires_grad_(true);
  at::Tensor ref = at::leaky_relu(at::batch_norm(xr, wr, br, {}, {}, true, 0.1, 1e-5, false), 0.2);
  CHECK(close(y, ref.detach()));
  CHECK(y.is_contiguous(fmt));

  at::Tensor g = at::randn_like(ref);
  ref.backward(g);
  for (bool from_output : {true, false}) {
    auto [gx, gw, gb, gs] = backward_op().call(g, from_output ? y : x, from_output, w, b, std::nullopt, mean, invstd,
                                               true, "leaky_relu", 0.2);
    CHECK(close(gx, xr.grad(), 1e-9));
    CHECK(close(gw, wr.grad(), 1e-9));
    CHECK(close(gb, br.grad(), 1e-9));
    CHECK(gs.numel() == 0);
  }
}

int main() {
  at::manual_seed(0);
  check_against_aten(at::MemoryFormat::Contiguous);
  check_against_aten(at::MemoryFormat::ChannelsLast);
  check_throws([] { forward_op().call(at::randn({2, 3}), std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt, true, 1e-5, "gelu", 0.0); },
               "activation must be one of");
  check_throws([] { forward_op().call(at::randn({2, 3}), at::ones({4}), std::nullopt, std::nullopt, std::nullopt, std::nullopt, true, 1e-5, "relu", 0.0); },
               "weight must be a 1-D tensor with 3 elements");
  std::cout << (failures() ? "FAILED" : "OK") << " (" << failures() << " failures)\n";
  return failures() == 0 ? 0 : 1;
}
