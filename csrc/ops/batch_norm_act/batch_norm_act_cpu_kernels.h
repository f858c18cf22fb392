// The CPU kernels of batch_norm_act, included once per instruction set by batch_norm_act_cpu.cpp (baseline x86-64,
// AVX2+FMA, AVX-512), each time inside its own namespace (common/cpu_isa.h). Includes nothing itself.
//
// CPU passes of batch_norm_act: statistics + normalize-and-activate forward, gradient sums + input gradient
// backward; each pass sweeps the tensor in cache-sized chunks with all threads (at::parallel_for). Inner loops are
// written so the compiler vectorizes them: `omp simd` (reductions without global reassociation) and activation math
// as selects between constants (common/activation.h).
//
// Whole-tensor sweeps, not a channel-blocked schedule: these loops are compute-bound (or the tensor stays in L3
// between passes), so saving memory sweeps does not pay (benchmarks/README.md, "Kernel design notes"). Passes take
// a View (a set of channels) so that schedule can be tried where memory is the limit.

constexpr int64_t kTaskElems = 8192;          // streaming: elements per task (a chunk read twice stays in L1/L2)
constexpr int64_t kParallelElems = 32768;     // below this many elements a pass runs on one thread

// Channels [c0, c0 + C) of a dense tensor with C_total channels. Channels-first: element (n, c, s) at
// (n * C_total + c0 + c) * S + s; channels-last: element (row, c) at row * C_total + c0 + c, N * S rows.
struct View {
  bool channels_last;
  int64_t N, C, S, c0, C_total;
  int64_t count() const { return N * S; }
};

View whole(const Layout& l) { return {l.channels_last, l.N, l.C, l.S, 0, l.C}; }

// Channels-first: f(task, c, offset, length) for chunks of <= kTaskElems of every (n, c) plane, in parallel.
template <typename F>
void for_each_plane_chunk(const View& v, F f) {
  const int64_t per_plane = ceil_div(v.S, kTaskElems);
  const int64_t tasks = v.N * v.C * per_plane;
  const int64_t grain = std::max<int64_t>(1, kParallelElems / std::max<int64_t>(std::min(v.S, kTaskElems), 1));
  at::parallel_for(0, tasks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t plane = t / per_plane, start = (t % per_plane) * kTaskElems;
      const int64_t n = plane / v.C, c = plane % v.C;
      f(t, c, (n * v.C_total + v.c0 + c) * v.S + start, std::min(kTaskElems, v.S - start));
    }
  });
}
int64_t plane_chunks(const View& v) { return v.N * v.C * ceil_div(v.S, kTaskElems); }

// Channels-last: f(block, first row, end row) for blocks of rows holding about kTaskElems of the view's values.
int64_t rows_per_block(const View& v) { return std::max<int64_t>(1, kTaskElems / std::max<int64_t>(v.C, 1)); }
int64_t row_blocks(const View& v) { return ceil_div(v.count(), rows_per_block(v)); }

template <typename F>
void for_each_row_block(const View& v, F f) {
  const int64_t rb = rows_per_block(v);
  const int64_t grain = std::max<int64_t>(1, kParallelElems / (rb * std::max<int64_t>(v.C, 1)));
  at::parallel_for(0, row_blocks(v), grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) f(b, b * rb, std::min(v.count(), (b + 1) * rb));
  });
}

// Count, mean and sum of squared deviations of a part of one channel; parts merge exactly (Chan et al.).
struct Moments {
  double n = 0, mean = 0, m2 = 0;
};

struct GradSums {
  double dz = 0, dz_xhat = 0, slope = 0;
};

// Merges per-task partials into per-channel totals in a fixed order (deterministic): channels-first partials are
// indexed by task (plane-major), channels-last ones by block * C + c. Every channel's part of one task group (a
// (n, chunk) pair; a row block) has the same count, so each group is merged into all channels at once, vectorized,
// with weights computed once: part by part, the merge would cost as much as the statistics pass with many channels.
template <typename F>
void for_each_part_group(const View& v, F merge_group) {
  if (v.C == 0) return;  // (groups read their first channel's count)
  if (!v.channels_last) {
    const int64_t per_plane = ceil_div(v.S, kTaskElems);
    for (int64_t n = 0; n < v.N; ++n)
      for (int64_t k = 0; k < per_plane; ++k) merge_group(n * v.C * per_plane + k, per_plane);  // first, stride
  } else {
    for (int64_t b = 0; b < row_blocks(v); ++b) merge_group(b * v.C, int64_t(1));
  }
}

std::vector<Moments> merge_parts(const View& v, const std::vector<Moments>& parts) {
  std::vector<double> mean(v.C, 0.0), m2(v.C, 0.0);
  double n = 0;
  for_each_part_group(v, [&](int64_t first, int64_t stride) {
    const Moments* part = parts.data() + first;
    const double nb = part[0].n, total = n + nb;
    if (nb == 0) return;
    const double w_mean = nb / total, w_m2 = n * nb / total;
    #pragma omp simd
    for (int64_t c = 0; c < v.C; ++c) {
      const double delta = part[c * stride].mean - mean[c];
      mean[c] += delta * w_mean;
      m2[c] += part[c * stride].m2 + delta * delta * w_m2;
    }
    n = total;
  });
  std::vector<Moments> out(v.C);
  for (int64_t c = 0; c < v.C; ++c) out[c] = Moments{n, mean[c], m2[c]};
  return out;
}

std::vector<GradSums> merge_parts(const View& v, const std::vector<GradSums>& parts) {
  std::vector<GradSums> out(v.C);
  for_each_part_group(v, [&](int64_t first, int64_t stride) {
    const GradSums* part = parts.data() + first;
    #pragma omp simd
    for (int64_t c = 0; c < v.C; ++c) {
      out[c].dz += part[c * stride].dz;
      out[c].dz_xhat += part[c * stride].dz_xhat;
      out[c].slope += part[c * stride].slope;
    }
  });
  return out;
}

// Sum of f(x[i]) over a contiguous range; `omp simd reduction` vectorizes it without reassociating anything else.
template <typename acc_t, typename scalar_t, typename F>
acc_t simd_sum(const scalar_t* x, int64_t n, F f) {
  acc_t total = 0;
  #pragma omp simd reduction(+ : total)
  for (int64_t i = 0; i < n; ++i) total += f(load<acc_t>(x, i));
  return total;
}

// The same in runs of kSumRun values, each run's sum added in double: a float32 sum of a whole chunk rounds well
// above float32's own precision, a run's does not. The channels-last loops add kRunRows rows the same way.
constexpr int64_t kSumRun = 1024, kRunRows = 64;

template <typename acc_t, typename scalar_t, typename F>
double run_sum(const scalar_t* x, int64_t n, F f) {
  double total = 0;
  for (int64_t i = 0; i < n; i += kSumRun) total += simd_sum<acc_t>(x + i, std::min(kSumRun, n - i), f);
  return total;
}

// ---------------------------------------------------------------- statistics
//
// Shifted sums: every part of channel c first sums x - K_c, K_c the channel's first value (element (0, c, 0)):
// d = mean(x - K_c), the part's mean K_c + d exactly in double. Summing x itself in float32 lost the digits below
// the mean's ulp, where the variance of a channel with a large mean and a small spread lives; x - K_c is exact for
// values within a factor 2 of K_c and of the data's spread otherwise. The second pass sums (x - m)^2 about
// m = float(K_c + d) in float32 runs added in double, and shifted_m2 takes off what m's rounding adds. So the
// float32 sums hold the spread only and the variance comes within float32's rounding, as stock's float64 sums, for
// one subtraction per element in the first pass (numbers: benchmarks/README.md, "Kernel design notes").

// M2 of n values about their exact mean k + d (in double), from m2f = sum((x - m)^2) about m = float(k + d):
// m2f - n * (k + d - m)^2, clamped at 0 against rounding.
template <typename acc>
inline double shifted_m2(double n, acc k, acc d, acc m, double m2f) {
  const double delta = (double(k) + double(d)) - double(m);
  return std::max(0.0, m2f - n * delta * delta);
}

template <typename scalar_t>
std::vector<Moments> channel_moments(const scalar_t* x, const View& v) {
  using acc = acc_t<scalar_t>;
  const int64_t C = v.C;
  // K_c, read once here: read per task, the channel's first value is a cache miss next to a small plane
  std::vector<acc> shift(C);
  for (int64_t c = 0; c < C; ++c) shift[c] = load<acc>(x, v.channels_last ? v.c0 + c : (v.c0 + c) * v.S);
  if (!v.channels_last) {
    std::vector<Moments> parts(plane_chunks(v));
    for_each_plane_chunk(v, [&](int64_t t, int64_t c, int64_t base, int64_t len) {
      const scalar_t* p = x + base;
      const acc k = shift[c];
      const acc d = simd_sum<acc>(p, len, [k](acc a) { return a - k; }) / static_cast<acc>(len);
      const acc m = k + d;
      const double m2 = run_sum<acc>(p, len, [m](acc a) { return (a - m) * (a - m); });
      parts[t] = Moments{double(len), double(k) + double(d), shifted_m2(double(len), k, d, m, m2)};
    });
    return merge_parts(v, parts);
  }
  std::vector<Moments> parts(row_blocks(v) * C);
  for_each_row_block(v, [&](int64_t b, int64_t r0, int64_t r1) {
    // Per channel: d, m and a run's float32 M2; the total M2 and the corrected moments in double. Two allocations,
    // and the corrections vectorized: with many channels a block has few rows, and per-channel scalar work shows.
    std::vector<acc> fs(3 * C, acc(0));
    std::vector<double> ds(3 * C, 0.0);
    const acc* k = shift.data();
    acc *d = fs.data(), *m = d + C, *m2 = m + C;
    double *m2_total = ds.data(), *mean = m2_total + C, *m2_exact = mean + C;
    for (int64_t r = r0; r < r1; ++r) {
      const scalar_t* row = x + r * v.C_total + v.c0;
      #pragma omp simd
      for (int64_t c = 0; c < C; ++c) d[c] += load<acc>(row, c) - k[c];
    }
    const acc inv_rows = acc(1) / static_cast<acc>(r1 - r0);
    #pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      d[c] *= inv_rows;
      m[c] = k[c] + d[c];
    }
    for (int64_t q0 = r0; q0 < r1; q0 += kRunRows) {  // as run_sum: float32 sums of short runs, added in double
      std::fill(m2, m2 + C, acc(0));
      for (int64_t r = q0; r < std::min(r1, q0 + kRunRows); ++r) {
        const scalar_t* row = x + r * v.C_total + v.c0;
        #pragma omp simd
        for (int64_t c = 0; c < C; ++c) m2[c] += (load<acc>(row, c) - m[c]) * (load<acc>(row, c) - m[c]);
      }
      #pragma omp simd
      for (int64_t c = 0; c < C; ++c) m2_total[c] += m2[c];
    }
    const double n = double(r1 - r0);
    #pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      mean[c] = double(k[c]) + double(d[c]);
      m2_exact[c] = shifted_m2(n, k[c], d[c], m[c], m2_total[c]);
    }
    for (int64_t c = 0; c < C; ++c) parts[b * C + c] = Moments{n, mean[c], m2_exact[c]};
  });
  return merge_parts(v, parts);
}

// Batch statistics of the view's channels into mean / invstd (indexed by absolute channel).
template <typename scalar_t>
void stats_of(const scalar_t* x, const View& v, double eps, acc_t<scalar_t>* mean, acc_t<scalar_t>* invstd) {
  const std::vector<Moments> m = channel_moments(x, v);
  for (int64_t c = 0; c < v.C; ++c) {
    mean[v.c0 + c] = static_cast<acc_t<scalar_t>>(m[c].mean);
    invstd[v.c0 + c] = static_cast<acc_t<scalar_t>>(1.0 / std::sqrt(m[c].m2 / m[c].n + eps));
  }
}

// ---------------------------------------------------------------- per-channel coefficients

// What the element loops need for the view's channels (local index), derived from ChannelParams.
template <typename acc>
struct Coefs {
  std::vector<acc> scale, shift;  // z = x * scale + shift
  std::vector<acc> p, q;          // x_hat = s * p + q, s = the input, or the pre-activation recovered from the output
  std::vector<acc> slope, inv_slope;

  Coefs(const ChannelParams& cp, const View& v, bool from_output)
      : scale(v.C), shift(v.C), p(v.C), q(v.C), slope(v.C), inv_slope(v.C) {
    const acc* mean = cp.mean.const_data_ptr<acc>() + v.c0;
    const acc* invstd = cp.invstd.const_data_ptr<acc>() + v.c0;
    const acc* gamma = cp.gamma.defined() ? cp.gamma.const_data_ptr<acc>() + v.c0 : nullptr;
    const acc* beta = cp.beta.defined() ? cp.beta.const_data_ptr<acc>() + v.c0 : nullptr;
    const bool shared_slope = cp.slope.defined() && cp.slope.numel() == 1;
    const acc* sl = cp.slope.defined() ? cp.slope.const_data_ptr<acc>() + (shared_slope ? 0 : v.c0) : nullptr;
    for (int64_t c = 0; c < v.C; ++c) {
      const acc g = gamma ? gamma[c] : acc(1), b = beta ? beta[c] : acc(0);
      scale[c] = g * invstd[c];
      shift[c] = b - mean[c] * scale[c];
      p[c] = from_output ? acc(1) / g : invstd[c];
      q[c] = from_output ? -b / g : -mean[c] * invstd[c];
      slope[c] = sl ? sl[shared_slope ? 0 : c] : static_cast<acc>(cp.leaky_slope);
      inv_slope[c] = acc(1) / slope[c];
    }
  }
};

// Pre-activation z and normalized input x_hat of one element from the saved value s. From the output, z is
// y * (1 or 1/slope): a multiply by the reciprocal (within an ulp of y / slope) instead of a division per element.
template <Act A, bool FromOutput, typename acc>
inline void recover(acc s, acc scale, acc shift, acc p, acc q, acc inv_slope, acc& z, acc& xh) {
  if constexpr (FromOutput) {
    z = A == Act::Leaky ? s * act_derivative<A>(s, inv_slope) : s;
    xh = z * p + q;
  } else {
    xh = s * p + q;
    z = s * scale + shift;
  }
}

// ---------------------------------------------------------------- the passes over a view

template <typename scalar_t, Act A>
void normalize_act_view(const scalar_t* x, scalar_t* y, const View& v, const Coefs<acc_t<scalar_t>>& k) {
  using acc = acc_t<scalar_t>;
  if (!v.channels_last) {
    for_each_plane_chunk(v, [&](int64_t, int64_t c, int64_t base, int64_t len) {
      const scalar_t* in = x + base;
      scalar_t* out = y + base;
      const acc scale = k.scale[c], shift = k.shift[c], slope = k.slope[c];
      #pragma omp simd
      for (int64_t i = 0; i < len; ++i)
        store(out, i, act_forward<A>(load<acc>(in, i) * scale + shift, slope));
    });
    return;
  }
  const acc *scale = k.scale.data(), *shift = k.shift.data(), *slope = k.slope.data();
  for_each_row_block(v, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const scalar_t* in = x + r * v.C_total + v.c0;
      scalar_t* out = y + r * v.C_total + v.c0;
      #pragma omp simd
      for (int64_t c = 0; c < v.C; ++c)
        store(out, c, act_forward<A>(load<acc>(in, c) * scale[c] + shift[c], slope[c]));
    }
  });
}

// Per channel (local index): sum(dz), sum(dz * x_hat), sum(dy * z * [z <= 0]), dz = dy * act'(z).
template <typename scalar_t, Act A, bool FromOutput>
std::vector<GradSums> grad_sums_view(const scalar_t* dy, const scalar_t* s, const View& v, const Coefs<acc_t<scalar_t>>& k) {
  using acc = acc_t<scalar_t>;
  if (!v.channels_last) {
    std::vector<GradSums> parts(plane_chunks(v));
    for_each_plane_chunk(v, [&](int64_t t, int64_t c, int64_t base, int64_t len) {
      const scalar_t* g = dy + base;
      const scalar_t* sv = s + base;
      const acc scale = k.scale[c], shift = k.shift[c], p = k.p[c], q = k.q[c], slope = k.slope[c], inv = k.inv_slope[c];
      acc s_dz = 0, s_dzx = 0, s_sl = 0;
      #pragma omp simd reduction(+ : s_dz, s_dzx, s_sl)
      for (int64_t i = 0; i < len; ++i) {
        acc z, xh;
        recover<A, FromOutput>(load<acc>(sv, i), scale, shift, p, q, inv, z, xh);
        const acc gy = load<acc>(g, i);
        const acc dz = gy * act_derivative<A>(z, slope);
        s_dz += dz;
        s_dzx += dz * xh;
        if constexpr (A == Act::Leaky) s_sl += slope_grad_term(gy, z);
      }
      parts[t] = GradSums{double(s_dz), double(s_dzx), double(s_sl)};
    });
    return merge_parts(v, parts);
  }
  const int64_t C = v.C;
  std::vector<GradSums> parts(row_blocks(v) * C);
  const acc *scale = k.scale.data(), *shift = k.shift.data(), *p = k.p.data(), *q = k.q.data();
  const acc *slope = k.slope.data(), *inv = k.inv_slope.data();
  for_each_row_block(v, [&](int64_t b, int64_t r0, int64_t r1) {
    std::vector<acc> a_dz(C, acc(0)), a_dzx(C, acc(0)), a_sl(C, acc(0));
    for (int64_t r = r0; r < r1; ++r) {
      const scalar_t* g = dy + r * v.C_total + v.c0;
      const scalar_t* sv = s + r * v.C_total + v.c0;
      #pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        acc z, xh;
        recover<A, FromOutput>(load<acc>(sv, c), scale[c], shift[c], p[c], q[c], inv[c], z, xh);
        const acc gy = load<acc>(g, c);
        const acc dz = gy * act_derivative<A>(z, slope[c]);
        a_dz[c] += dz;
        a_dzx[c] += dz * xh;
        if constexpr (A == Act::Leaky) a_sl[c] += slope_grad_term(gy, z);
      }
    }
    for (int64_t c = 0; c < C; ++c) parts[b * C + c] = GradSums{double(a_dz[c]), double(a_dzx[c]), double(a_sl[c])};
  });
  return merge_parts(v, parts);
}

// dx = a * dz + b + cx * x_hat with a = gamma * invstd, b = -a * mean(dz), cx = -a * mean(dz * x_hat) (training).
template <typename acc>
struct InputGradCoefs {
  std::vector<acc> a, b, cx;
  InputGradCoefs(const ChannelParams& cp, const View& v, bool training, const std::vector<GradSums>& sums)
      : a(v.C), b(v.C), cx(v.C) {
    const acc* invstd = cp.invstd.const_data_ptr<acc>() + v.c0;
    const acc* gamma = cp.gamma.defined() ? cp.gamma.const_data_ptr<acc>() + v.c0 : nullptr;
    const double inv_m = 1.0 / static_cast<double>(v.count());
    for (int64_t c = 0; c < v.C; ++c) {
      a[c] = (gamma ? gamma[c] : acc(1)) * invstd[c];
      b[c] = training ? static_cast<acc>(-a[c] * sums[c].dz * inv_m) : acc(0);
      cx[c] = training ? static_cast<acc>(-a[c] * sums[c].dz_xhat * inv_m) : acc(0);
    }
  }
};

template <typename scalar_t, Act A, bool FromOutput>
void grad_input_view(const scalar_t* dy, const scalar_t* s, scalar_t* dx, const View& v, const Coefs<acc_t<scalar_t>>& k,
                     const InputGradCoefs<acc_t<scalar_t>>& ig) {
  using acc = acc_t<scalar_t>;
  auto elem = [](acc sv, acc gv, acc scale, acc shift, acc p, acc q, acc slope, acc inv, acc a, acc b, acc cx) {
    acc z, xh;
    recover<A, FromOutput>(sv, scale, shift, p, q, inv, z, xh);
    return a * (gv * act_derivative<A>(z, slope)) + b + cx * xh;
  };
  if (!v.channels_last) {
    for_each_plane_chunk(v, [&](int64_t, int64_t c, int64_t base, int64_t len) {
      const acc scale = k.scale[c], shift = k.shift[c], p = k.p[c], q = k.q[c], slope = k.slope[c], inv = k.inv_slope[c];
      const acc a = ig.a[c], b = ig.b[c], cx = ig.cx[c];
      #pragma omp simd
      for (int64_t i = 0; i < len; ++i)
        store(dx, base + i, elem(load<acc>(s, base + i), load<acc>(dy, base + i), scale, shift, p, q, slope, inv, a, b, cx));
    });
    return;
  }
  for_each_row_block(v, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t base = r * v.C_total + v.c0;
      #pragma omp simd
      for (int64_t c = 0; c < v.C; ++c)
        store(dx, base + c, elem(load<acc>(s, base + c), load<acc>(dy, base + c), k.scale[c], k.shift[c], k.p[c], k.q[c],
                                 k.slope[c], k.inv_slope[c], ig.a[c], ig.b[c], ig.cx[c]));
    }
  });
}

// ---------------------------------------------------------------- both directions

template <typename scalar_t, Act A>
void forward_training(const at::Tensor& x, const Layout& l, double eps, ChannelParams& cp, at::Tensor& y) {
  using acc = acc_t<scalar_t>;
  const scalar_t* in = x.const_data_ptr<scalar_t>();
  scalar_t* out = y.mutable_data_ptr<scalar_t>();
  acc* mean = cp.mean.mutable_data_ptr<acc>();
  acc* invstd = cp.invstd.mutable_data_ptr<acc>();
  stats_of(in, whole(l), eps, mean, invstd);
  normalize_act_view<scalar_t, A>(in, out, whole(l), Coefs<acc>(cp, whole(l), false));
}

template <typename scalar_t, Act A, bool FromOutput>
void backward_passes(const at::Tensor& grad_y, const at::Tensor& saved, const Layout& l, const ChannelParams& cp,
                     bool training, at::Tensor& sum_dz, at::Tensor& sum_dz_xhat, at::Tensor& sum_slope,
                     at::Tensor& grad_x) {
  using acc = acc_t<scalar_t>;
  const scalar_t* dy = grad_y.const_data_ptr<scalar_t>();
  const scalar_t* s = saved.const_data_ptr<scalar_t>();
  scalar_t* dx = grad_x.mutable_data_ptr<scalar_t>();
  acc *o_dz = sum_dz.mutable_data_ptr<acc>(), *o_dzx = sum_dz_xhat.mutable_data_ptr<acc>();
  acc* o_sl = sum_slope.numel() > 0 ? sum_slope.mutable_data_ptr<acc>() : nullptr;
  const View v = whole(l);
  const Coefs<acc> k(cp, v, FromOutput);
  const std::vector<GradSums> sums = grad_sums_view<scalar_t, A, FromOutput>(dy, s, v, k);
  for (int64_t c = 0; c < v.C; ++c) {
    o_dz[v.c0 + c] = static_cast<acc>(sums[c].dz);
    o_dzx[v.c0 + c] = static_cast<acc>(sums[c].dz_xhat);
    if (o_sl) o_sl[v.c0 + c] = static_cast<acc>(sums[c].slope);
  }
  grad_input_view<scalar_t, A, FromOutput>(dy, s, dx, v, k, InputGradCoefs<acc>(cp, v, training, sums));
}

// ---------------------------------------------------------------- Backend entries

void forward_cpu(const at::Tensor& x, const Layout& l, Act act, double eps, ChannelParams& p, at::Tensor& y) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "batch_norm_act_forward", [&] {
    dispatch_act(act, [&]<Act A>() { forward_training<scalar_t, A>(x, l, eps, p, y); });
  });
}

void normalize_act_cpu(const at::Tensor& x, const Layout& l, Act act, const ChannelParams& cp, at::Tensor& y) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "batch_norm_act_normalize", [&] {
    const Coefs<acc_t<scalar_t>> k(cp, whole(l), false);
    dispatch_act(act, [&]<Act A>() {
      normalize_act_view<scalar_t, A>(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), whole(l), k);
    });
  });
}

void backward_cpu(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const Layout& l, Act act,
                  const ChannelParams& cp, bool training, at::Tensor& sum_dz, at::Tensor& sum_dz_xhat,
                  at::Tensor& sum_slope, at::Tensor& grad_x) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, saved.scalar_type(), "batch_norm_act_backward", [&] {
    dispatch_act(act, [&]<Act A>() {
      if (saved_is_output)
        backward_passes<scalar_t, A, true>(grad_y, saved, l, cp, training, sum_dz, sum_dz_xhat, sum_slope, grad_x);
      else
        backward_passes<scalar_t, A, false>(grad_y, saved, l, cp, training, sum_dz, sum_dz_xhat, sum_slope, grad_x);
    });
  });
}
