// CPU kernel of gan_loss: chunks of logits in parallel, partial sums merged in a fixed order (deterministic).
#include "ops/gan_loss/gan_loss.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <array>
#include <vector>

namespace pygan::gan_loss {
namespace {

constexpr int64_t kChunk = 4096;

void gan_loss_cpu(const at::Tensor& logits, Term term, double target, double scale, at::Tensor& grad, at::Tensor& loss,
                  at::Tensor& scores) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "gan_loss_cpu", [&] {
    using acc = acc_t<scalar_t>;
    const scalar_t* x = logits.const_data_ptr<scalar_t>();
    scalar_t* g = grad.mutable_data_ptr<scalar_t>();
    const int64_t n = logits.numel(), chunks = (n + kChunk - 1) / kChunk;
    std::vector<std::array<double, 3>> parts(chunks);
    dispatch_term(term, [&]<Term K>() {
      at::parallel_for(0, chunks, 8, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          const int64_t begin = c * kChunk, end = std::min(n, begin + kChunk);
          acc s_value = 0, s_prob = 0, s_x = 0;
          for (int64_t i = begin; i < end; ++i) {
            const acc xi = static_cast<acc>(x[i]);
            acc value, d;
            term_at<K>(xi, static_cast<acc>(target), value, d);
            g[i] = static_cast<scalar_t>(d * static_cast<acc>(scale));
            s_value += value;
            s_prob += sigmoid(xi);
            s_x += xi;
          }
          parts[c] = {double(s_value), double(s_prob), double(s_x)};
        }
      });
    });
    std::array<double, 3> total{0, 0, 0};
    for (const auto& p : parts)
      for (int k = 0; k < 3; ++k) total[k] += p[k];
    *loss.mutable_data_ptr<acc>() = static_cast<acc>(total[0] * scale);
    scores.mutable_data_ptr<acc>()[0] = static_cast<acc>(total[1] / static_cast<double>(n));
    scores.mutable_data_ptr<acc>()[1] = static_cast<acc>(total[2] / static_cast<double>(n));
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pygan, CPU, m) { m.impl("gan_loss", &forward_op<gan_loss_cpu>); }

}  // namespace pygan::gan_loss
