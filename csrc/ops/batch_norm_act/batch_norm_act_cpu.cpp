// CPU passes of batch_norm_act: one statistics pass + one normalize-and-activate pass forward, one reduction
// pass + one input-gradient pass backward. Work is split into cache-sized tasks run with at::parallel_for;
// inner loops are written so that the compiler vectorizes them (independent lanes, no branches but selects).
#include "ops/batch_norm_act/batch_norm_act.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace pygan::bna {
namespace {

// Elements per task: small enough that a chunk read twice stays in cache, large enough to amortize the task.
constexpr int64_t kTaskElems = 8192;
// Below this many elements a pass runs on one thread.
constexpr int64_t kParallelElems = 32768;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Channels-first: the data of one (n, c) plane is S contiguous values, cut into chunks of <= kTaskElems.
// f(plane, channel, offset, length) for every chunk, in parallel.
template <typename F>
void for_each_plane_chunk(const Layout& l, F f) {
  const int64_t per_plane = ceil_div(l.S, kTaskElems);
  const int64_t tasks = l.N * l.C * per_plane;
  const int64_t chunk = std::min(l.S, kTaskElems);
  const int64_t grain = std::max<int64_t>(1, kParallelElems / std::max<int64_t>(chunk, 1));
  at::parallel_for(0, tasks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t plane = t / per_plane, offset = (t % per_plane) * kTaskElems;
      f(t, plane, plane % l.C, offset, std::min(kTaskElems, l.S - offset));
    }
  });
}

// Channels-last: rows of C contiguous values, grouped in blocks of about kTaskElems values.
int64_t rows_per_block(const Layout& l) { return std::max<int64_t>(1, kTaskElems / std::max<int64_t>(l.C, 1)); }

template <typename F>
void for_each_row_block(const Layout& l, F f) {
  const int64_t rows = l.N * l.S, rb = rows_per_block(l);
  const int64_t blocks = ceil_div(rows, rb);
  const int64_t grain = std::max<int64_t>(1, kParallelElems / (rb * std::max<int64_t>(l.C, 1)));
  at::parallel_for(0, blocks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) f(b, b * rb, std::min(rows, (b + 1) * rb));
  });
}

int64_t row_blocks(const Layout& l) { return ceil_div(l.N * l.S, rows_per_block(l)); }
int64_t plane_chunks(const Layout& l) { return l.N * l.C * ceil_div(l.S, kTaskElems); }

// Count, mean and sum of squared deviations of a part of one channel; parts merge exactly (Chan et al.).
struct Moments {
  double n = 0, mean = 0, m2 = 0;
  void merge(const Moments& b) {
    if (b.n == 0) return;
    const double total = n + b.n, delta = b.mean - mean;
    mean += delta * b.n / total;
    m2 += b.m2 + delta * delta * n * b.n / total;
    n = total;
  }
};

// Sum of f(x[i]) over a contiguous range. `omp simd reduction` lets the compiler vectorize it (partial sums in
// vector lanes) without allowing reassociation anywhere else.
template <typename acc_t, typename scalar_t, typename F>
acc_t simd_sum(const scalar_t* x, int64_t n, F f) {
  acc_t total = 0;
  #pragma omp simd reduction(+ : total)
  for (int64_t i = 0; i < n; ++i) total += f(static_cast<acc_t>(x[i]));
  return total;
}

// ---------------------------------------------------------------- statistics

template <typename scalar_t>
std::vector<Moments> channel_moments(const scalar_t* x, const Layout& l) {
  using acc = acc_t<scalar_t>;
  std::vector<Moments> out(l.C);
  if (!l.channels_last) {
    std::vector<Moments> parts(plane_chunks(l));
    for_each_plane_chunk(l, [&](int64_t t, int64_t plane, int64_t, int64_t offset, int64_t len) {
      const scalar_t* p = x + plane * l.S + offset;
      const acc mean = simd_sum<acc>(p, len, [](acc v) { return v; }) / static_cast<acc>(len);
      const acc m2 = simd_sum<acc>(p, len, [mean](acc v) { return (v - mean) * (v - mean); });
      parts[t] = Moments{static_cast<double>(len), static_cast<double>(mean), static_cast<double>(m2)};
    });
    const int64_t per_plane = ceil_div(l.S, kTaskElems);
    at::parallel_for(0, l.C, 16, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t n = 0; n < l.N; ++n)
          for (int64_t k = 0; k < per_plane; ++k) out[c].merge(parts[(n * l.C + c) * per_plane + k]);
    });
  } else {
    const int64_t C = l.C, blocks = row_blocks(l);
    std::vector<Moments> parts(blocks * C);
    for_each_row_block(l, [&](int64_t b, int64_t r0, int64_t r1) {
      std::vector<acc> mean(C, acc(0)), m2(C, acc(0));
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* row = x + r * C;
        #pragma omp simd
        for (int64_t c = 0; c < C; ++c) mean[c] += static_cast<acc>(row[c]);
      }
      const acc inv_rows = acc(1) / static_cast<acc>(r1 - r0);
      for (int64_t c = 0; c < C; ++c) mean[c] *= inv_rows;
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* row = x + r * C;
        #pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          const acc d = static_cast<acc>(row[c]) - mean[c];
          m2[c] += d * d;
        }
      }
      for (int64_t c = 0; c < C; ++c) parts[b * C + c] = Moments{double(r1 - r0), double(mean[c]), double(m2[c])};
    });
    at::parallel_for(0, C, 16, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t b = 0; b < blocks; ++b) out[c].merge(parts[b * C + c]);
    });
  }
  return out;
}

void batch_stats_cpu(const at::Tensor& x, const Layout& l, double eps, at::Tensor& mean, at::Tensor& invstd) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "batch_norm_act_stats", [&] {
    using acc = acc_t<scalar_t>;
    const std::vector<Moments> m = channel_moments(x.const_data_ptr<scalar_t>(), l);
    acc* mean_p = mean.mutable_data_ptr<acc>();
    acc* invstd_p = invstd.mutable_data_ptr<acc>();
    for (int64_t c = 0; c < l.C; ++c) {
      mean_p[c] = static_cast<acc>(m[c].mean);
      invstd_p[c] = static_cast<acc>(1.0 / std::sqrt(m[c].m2 / m[c].n + eps));
    }
  });
}

template <typename run_t, typename stat_t>
void update_stats_impl(run_t* rm, run_t* rv, const stat_t* mean, const stat_t* invstd, int64_t C, double momentum,
                       double eps, int64_t count) {
  const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
  for (int64_t c = 0; c < C; ++c) {
    const double is = static_cast<double>(invstd[c]);
    const double var = (1.0 / (is * is) - eps) * unbias;
    rm[c] = static_cast<run_t>((1.0 - momentum) * static_cast<double>(rm[c]) + momentum * static_cast<double>(mean[c]));
    rv[c] = static_cast<run_t>((1.0 - momentum) * static_cast<double>(rv[c]) + momentum * var);
  }
}

void update_stats_cpu(at::Tensor& running_mean, at::Tensor& running_var, const at::Tensor& mean,
                      const at::Tensor& invstd, double momentum, double eps, int64_t count) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, running_mean.scalar_type(), "batch_norm_update_stats", [&] {
    scalar_t* rm = running_mean.mutable_data_ptr<scalar_t>();
    scalar_t* rv = running_var.mutable_data_ptr<scalar_t>();
    if (mean.scalar_type() == at::kDouble)
      update_stats_impl(rm, rv, mean.const_data_ptr<double>(), invstd.const_data_ptr<double>(), mean.numel(), momentum, eps, count);
    else
      update_stats_impl(rm, rv, mean.const_data_ptr<float>(), invstd.const_data_ptr<float>(), mean.numel(), momentum, eps, count);
  });
}

// ---------------------------------------------------------------- per-channel coefficients

// What the element loops need per channel, derived once from ChannelParams.
template <typename acc>
struct Coefs {
  std::vector<acc> scale, shift;  // z = x * scale + shift
  std::vector<acc> p, q;          // x_hat = s * p + q, s = the input, or the pre-activation recovered from the output
  std::vector<acc> slope;

  Coefs(const ChannelParams& cp, int64_t C, bool from_output)
      : scale(C), shift(C), p(C), q(C), slope(C) {
    const acc* mean = cp.mean.const_data_ptr<acc>();
    const acc* invstd = cp.invstd.const_data_ptr<acc>();
    const acc* gamma = cp.gamma.defined() ? cp.gamma.const_data_ptr<acc>() : nullptr;
    const acc* beta = cp.beta.defined() ? cp.beta.const_data_ptr<acc>() : nullptr;
    const acc* sl = cp.slope.defined() ? cp.slope.const_data_ptr<acc>() : nullptr;
    const bool shared_slope = cp.slope.defined() && cp.slope.numel() == 1;
    for (int64_t c = 0; c < C; ++c) {
      const acc g = gamma ? gamma[c] : acc(1), b = beta ? beta[c] : acc(0);
      scale[c] = g * invstd[c];
      shift[c] = b - mean[c] * scale[c];
      p[c] = from_output ? acc(1) / g : invstd[c];
      q[c] = from_output ? -b / g : -mean[c] * invstd[c];
      slope[c] = sl ? sl[shared_slope ? 0 : c] : static_cast<acc>(cp.leaky_slope);
    }
  }
};

// Pre-activation z and normalized input x_hat of one element from the saved value s.
template <Act A, bool FromOutput, typename acc>
inline void recover(acc s, acc scale, acc shift, acc p, acc q, acc slope, acc& z, acc& xh) {
  if constexpr (FromOutput) {
    z = act_inverse<A>(s, slope);
    xh = z * p + q;
  } else {
    xh = s * p + q;
    z = s * scale + shift;
  }
}

// ---------------------------------------------------------------- forward

template <typename scalar_t, Act A>
void normalize_act_impl(const scalar_t* x, scalar_t* y, const Layout& l, const Coefs<acc_t<scalar_t>>& k) {
  using acc = acc_t<scalar_t>;
  if (!l.channels_last) {
    for_each_plane_chunk(l, [&](int64_t, int64_t plane, int64_t c, int64_t offset, int64_t len) {
      const scalar_t* in = x + plane * l.S + offset;
      scalar_t* out = y + plane * l.S + offset;
      const acc scale = k.scale[c], shift = k.shift[c], slope = k.slope[c];
      #pragma omp simd
      for (int64_t i = 0; i < len; ++i)
        out[i] = static_cast<scalar_t>(act_forward<A>(static_cast<acc>(in[i]) * scale + shift, slope));
    });
  } else {
    const int64_t C = l.C;
    const acc *scale = k.scale.data(), *shift = k.shift.data(), *slope = k.slope.data();
    for_each_row_block(l, [&](int64_t, int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* in = x + r * C;
        scalar_t* out = y + r * C;
        #pragma omp simd
        for (int64_t c = 0; c < C; ++c)
          out[c] = static_cast<scalar_t>(act_forward<A>(static_cast<acc>(in[c]) * scale[c] + shift[c], slope[c]));
      }
    });
  }
}

void normalize_act_cpu(const at::Tensor& x, const Layout& l, Act act, const ChannelParams& cp, at::Tensor& y) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "batch_norm_act_forward", [&] {
    const Coefs<acc_t<scalar_t>> k(cp, l.C, /*from_output=*/false);
    dispatch_act(act, [&]<Act A>() {
      normalize_act_impl<scalar_t, A>(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), l, k);
    });
  });
}

// ---------------------------------------------------------------- backward

struct GradSums {
  double dz = 0, dz_xhat = 0, slope = 0;
};

template <typename scalar_t, Act A, bool FromOutput>
void grad_sums_impl(const scalar_t* dy, const scalar_t* s, const Layout& l, const Coefs<acc_t<scalar_t>>& k,
                    std::vector<GradSums>& out) {
  using acc = acc_t<scalar_t>;
  if (!l.channels_last) {
    std::vector<GradSums> parts(plane_chunks(l));
    for_each_plane_chunk(l, [&](int64_t t, int64_t plane, int64_t c, int64_t offset, int64_t len) {
      const scalar_t* g = dy + plane * l.S + offset;
      const scalar_t* v = s + plane * l.S + offset;
      const acc scale = k.scale[c], shift = k.shift[c], p = k.p[c], q = k.q[c], slope = k.slope[c];
      acc s_dz = 0, s_dzx = 0, s_sl = 0;
      #pragma omp simd reduction(+ : s_dz, s_dzx, s_sl)
      for (int64_t i = 0; i < len; ++i) {
        acc z, xh;
        recover<A, FromOutput>(static_cast<acc>(v[i]), scale, shift, p, q, slope, z, xh);
        const acc gy = static_cast<acc>(g[i]);
        const acc dz = gy * act_derivative<A>(z, slope);
        s_dz += dz;
        s_dzx += dz * xh;
        if constexpr (A == Act::Leaky) s_sl += slope_grad_term(gy, z);
      }
      const GradSums r{double(s_dz), double(s_dzx), double(s_sl)};
      parts[t] = r;
    });
    const int64_t per_plane = ceil_div(l.S, kTaskElems);
    for (int64_t c = 0; c < l.C; ++c)
      for (int64_t n = 0; n < l.N; ++n)
        for (int64_t kk = 0; kk < per_plane; ++kk) {
          const GradSums& r = parts[(n * l.C + c) * per_plane + kk];
          out[c].dz += r.dz, out[c].dz_xhat += r.dz_xhat, out[c].slope += r.slope;
        }
  } else {
    const int64_t C = l.C, blocks = row_blocks(l);
    std::vector<GradSums> parts(blocks * C);
    const acc *scale = k.scale.data(), *shift = k.shift.data(), *p = k.p.data(), *q = k.q.data(), *slope = k.slope.data();
    for_each_row_block(l, [&](int64_t b, int64_t r0, int64_t r1) {
      std::vector<acc> a_dz(C, acc(0)), a_dzx(C, acc(0)), a_sl(C, acc(0));
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* g = dy + r * C;
        const scalar_t* v = s + r * C;
        #pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          acc z, xh;
          recover<A, FromOutput>(static_cast<acc>(v[c]), scale[c], shift[c], p[c], q[c], slope[c], z, xh);
          const acc gy = static_cast<acc>(g[c]);
          const acc dz = gy * act_derivative<A>(z, slope[c]);
          a_dz[c] += dz;
          a_dzx[c] += dz * xh;
          if constexpr (A == Act::Leaky) a_sl[c] += slope_grad_term(gy, z);
        }
      }
      for (int64_t c = 0; c < C; ++c) parts[b * C + c] = GradSums{double(a_dz[c]), double(a_dzx[c]), double(a_sl[c])};
    });
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t c = 0; c < C; ++c) {
        const GradSums& r = parts[b * C + c];
        out[c].dz += r.dz, out[c].dz_xhat += r.dz_xhat, out[c].slope += r.slope;
      }
  }
}

void grad_sums_cpu(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const Layout& l,
                   Act act, const ChannelParams& cp, at::Tensor& sum_dz, at::Tensor& sum_dz_xhat,
                   at::Tensor& sum_slope) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, saved.scalar_type(), "batch_norm_act_grad_sums", [&] {
    using acc = acc_t<scalar_t>;
    const Coefs<acc> k(cp, l.C, saved_is_output);
    std::vector<GradSums> sums(l.C);
    const scalar_t* dy = grad_y.const_data_ptr<scalar_t>();
    const scalar_t* s = saved.const_data_ptr<scalar_t>();
    dispatch_act(act, [&]<Act A>() {
      if (saved_is_output) grad_sums_impl<scalar_t, A, true>(dy, s, l, k, sums);
      else grad_sums_impl<scalar_t, A, false>(dy, s, l, k, sums);
    });
    acc *o_dz = sum_dz.mutable_data_ptr<acc>(), *o_dzx = sum_dz_xhat.mutable_data_ptr<acc>();
    acc* o_sl = sum_slope.numel() > 0 ? sum_slope.mutable_data_ptr<acc>() : nullptr;
    for (int64_t c = 0; c < l.C; ++c) {
      o_dz[c] = static_cast<acc>(sums[c].dz);
      o_dzx[c] = static_cast<acc>(sums[c].dz_xhat);
      if (o_sl) o_sl[c] = static_cast<acc>(sums[c].slope);
    }
  });
}

template <typename scalar_t, Act A, bool FromOutput>
void grad_input_impl(const scalar_t* dy, const scalar_t* s, scalar_t* dx, const Layout& l,
                     const Coefs<acc_t<scalar_t>>& k, const std::vector<acc_t<scalar_t>>& a,
                     const std::vector<acc_t<scalar_t>>& b, const std::vector<acc_t<scalar_t>>& cx) {
  using acc = acc_t<scalar_t>;
  // dx = a * dz + b + cx * x_hat
  auto elem = [](acc sv, acc gv, acc scale, acc shift, acc p, acc q, acc slope, acc a, acc b, acc cx) {
    acc z, xh;
    recover<A, FromOutput>(sv, scale, shift, p, q, slope, z, xh);
    return a * (gv * act_derivative<A>(z, slope)) + b + cx * xh;
  };
  if (!l.channels_last) {
    for_each_plane_chunk(l, [&](int64_t, int64_t plane, int64_t c, int64_t offset, int64_t len) {
      const int64_t base = plane * l.S + offset;
      #pragma omp simd
      for (int64_t i = 0; i < len; ++i)
        dx[base + i] = static_cast<scalar_t>(elem(static_cast<acc>(s[base + i]), static_cast<acc>(dy[base + i]),
                                                  k.scale[c], k.shift[c], k.p[c], k.q[c], k.slope[c], a[c], b[c], cx[c]));
    });
  } else {
    const int64_t C = l.C;
    for_each_row_block(l, [&](int64_t, int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t base = r * C;
        #pragma omp simd
        for (int64_t c = 0; c < C; ++c)
          dx[base + c] = static_cast<scalar_t>(elem(static_cast<acc>(s[base + c]), static_cast<acc>(dy[base + c]),
                                                    k.scale[c], k.shift[c], k.p[c], k.q[c], k.slope[c], a[c], b[c], cx[c]));
      }
    });
  }
}

void grad_input_cpu(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const Layout& l,
                    Act act, const ChannelParams& cp, bool training, const at::Tensor& sum_dz,
                    const at::Tensor& sum_dz_xhat, at::Tensor& grad_x) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, saved.scalar_type(), "batch_norm_act_grad_input", [&] {
    using acc = acc_t<scalar_t>;
    const Coefs<acc> k(cp, l.C, saved_is_output);
    std::vector<acc> a(l.C), b(l.C), cx(l.C);
    const acc* invstd = cp.invstd.const_data_ptr<acc>();
    const acc* gamma = cp.gamma.defined() ? cp.gamma.const_data_ptr<acc>() : nullptr;
    const acc *sdz = sum_dz.const_data_ptr<acc>(), *sdzx = sum_dz_xhat.const_data_ptr<acc>();
    const acc inv_m = acc(1) / static_cast<acc>(l.count());
    for (int64_t c = 0; c < l.C; ++c) {
      a[c] = (gamma ? gamma[c] : acc(1)) * invstd[c];
      b[c] = training ? -a[c] * sdz[c] * inv_m : acc(0);
      cx[c] = training ? -a[c] * sdzx[c] * inv_m : acc(0);
    }
    const scalar_t* dy = grad_y.const_data_ptr<scalar_t>();
    const scalar_t* s = saved.const_data_ptr<scalar_t>();
    scalar_t* dx = grad_x.mutable_data_ptr<scalar_t>();
    dispatch_act(act, [&]<Act A>() {
      if (saved_is_output) grad_input_impl<scalar_t, A, true>(dy, s, dx, l, k, a, b, cx);
      else grad_input_impl<scalar_t, A, false>(dy, s, dx, l, k, a, b, cx);
    });
  });
}

const Backend kCpu{batch_stats_cpu, update_stats_cpu, normalize_act_cpu, grad_sums_cpu, grad_input_cpu};

}  // namespace

TORCH_LIBRARY_IMPL(pygan, CPU, m) {
  m.impl("batch_norm_act", &forward_op<kCpu>);
  m.impl("batch_norm_update_stats", &update_stats_op<kCpu>);
  m.impl("batch_norm_act_backward", &backward_op<kCpu>);
}

}  // namespace pygan::bna
