// The CPU kernels of instance_norm_act, included once per instruction set by instance_norm_act_cpu.cpp (baseline
// x86-64, AVX2+FMA, AVX-512), each time inside its own namespace (common/cpu_isa.h). Includes nothing itself.
//
// Channels first, every (n, c) plane is contiguous: a task owns whole planes and runs all of a direction's passes
// on one plane before the next, so a plane that fits in L2 is read from memory once per direction (forward: the
// statistics and the normalize-and-activate pass; backward: the gradient sums and the input-gradient pass). Within
// a plane, chunks of kChunk values are summed in the accumulation type and merged in double. Channels last, a
// sample is [S, C]: each pass sweeps blocks of rows with all threads and partial sums merge in a fixed order
// (deterministic), so a direction reads the tensor twice unless it stays in cache.

constexpr int64_t kChunk = 8192;            // values summed in the accumulation type before merging in double
constexpr int64_t kParallelElems = 32768;   // below this many elements a task is not worth a thread

// Count, mean and sum of squared deviations; parts merge exactly (Chan et al.).
struct Moments {
  double n = 0, mean = 0, m2 = 0;
  void merge(double nb, double mb, double m2b) {
    if (nb == 0) return;
    const double total = n + nb, delta = mb - mean;
    mean += delta * (nb / total);
    m2 += m2b + delta * delta * (n * nb / total);
    n = total;
  }
};

struct GradSums {
  double dz = 0, dz_xhat = 0, slope = 0;
};

// Per-plane coefficients (plane = n * C + c): z = x * scale + shift (+ r); x_hat = s * p + q where s is the input,
// or the pre-activation recovered from the output.
template <typename acc>
struct PlaneCoefs {
  std::vector<acc> scale, shift, p, q, slope, inv_slope;
  PlaneCoefs(const PlaneParams& pp, const Layout& l, bool from_output)
      : scale(l.N * l.C), shift(l.N * l.C), p(l.N * l.C), q(l.N * l.C), slope(l.N * l.C), inv_slope(l.N * l.C) {
    const acc* mean = pp.mean.const_data_ptr<acc>();
    const acc* invstd = pp.invstd.const_data_ptr<acc>();
    const acc* g = pp.gamma.const_data_ptr<acc>();
    const acc* b = pp.beta.const_data_ptr<acc>();
    const acc* sl = pp.slope.const_data_ptr<acc>();
    for (int64_t i = 0; i < l.N * l.C; ++i) {
      const int64_t c = i % l.C;
      scale[i] = g[c] * invstd[i];
      shift[i] = b[c] - mean[i] * scale[i];
      p[i] = from_output ? acc(1) / g[c] : invstd[i];
      q[i] = from_output ? -b[c] / g[c] : -mean[i] * invstd[i];
      slope[i] = sl[c];
      inv_slope[i] = acc(1) / sl[c];
    }
  }
};

// Pre-activation z and normalized input x_hat from the saved value s (and the residual value rv).
template <Act A, bool FromOutput, typename acc>
inline void recover(acc s, acc rv, acc scale, acc shift, acc p, acc q, acc inv_slope, acc& z, acc& xh) {
  if constexpr (FromOutput) {
    z = A == Act::Leaky ? s * act_derivative<A>(s, inv_slope) : s;
    xh = z * p + q;
  } else {
    xh = s * p + q;
    z = s * scale + shift + rv;
  }
}

template <typename F>
void for_each_plane(const Layout& l, F f) {
  at::parallel_for(0, l.N * l.C, std::max<int64_t>(1, kParallelElems / std::max<int64_t>(l.S, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t plane = begin; plane < end; ++plane) f(plane);
                   });
}

// Channels last: f(n, block, first row, end row) for blocks of a sample's rows holding about kChunk values.
int64_t rows_per_block(const Layout& l) { return std::max<int64_t>(1, kChunk / std::max<int64_t>(l.C, 1)); }
int64_t row_blocks(const Layout& l) { return ceil_div(l.S, rows_per_block(l)); }

template <typename F>
void for_each_row_block(const Layout& l, F f) {
  const int64_t rb = rows_per_block(l), blocks = row_blocks(l);
  const int64_t grain = std::max<int64_t>(1, kParallelElems / (rb * std::max<int64_t>(l.C, 1)));
  at::parallel_for(0, l.N * blocks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / blocks, b = t % blocks;
      f(n, b, b * rb, std::min(l.S, (b + 1) * rb));
    }
  });
}

template <typename acc_type, typename scalar_t, typename F>
acc_type simd_sum(const scalar_t* x, int64_t n, F f) {
  acc_type total = 0;
  #pragma omp simd reduction(+ : total)
  for (int64_t i = 0; i < n; ++i) total += f(load<acc_type>(x, i));
  return total;
}

// Moments of S contiguous values, chunk by chunk.
template <typename scalar_t>
Moments plane_moments(const scalar_t* x, int64_t S) {
  using acc = acc_t<scalar_t>;
  Moments m;
  for (int64_t start = 0; start < S; start += kChunk) {
    const int64_t len = std::min(kChunk, S - start);
    const scalar_t* p = x + start;
    const acc mean = simd_sum<acc>(p, len, [](acc a) { return a; }) / static_cast<acc>(len);
    const acc m2 = simd_sum<acc>(p, len, [mean](acc a) { return (a - mean) * (a - mean); });
    m.merge(double(len), double(mean), double(m2));
  }
  return m;
}

// y = act(x * scale + shift + r) over len contiguous values of one plane (r may be null).
template <typename scalar_t, Act A>
void normalize_run(const scalar_t* x, const scalar_t* r, scalar_t* y, int64_t len, acc_t<scalar_t> scale,
                   acc_t<scalar_t> shift, acc_t<scalar_t> slope) {
  using acc = acc_t<scalar_t>;
  if (r) {
    #pragma omp simd
    for (int64_t i = 0; i < len; ++i) store(y, i, act_forward<A>(load<acc>(x, i) * scale + shift + load<acc>(r, i), slope));
  } else {
    #pragma omp simd
    for (int64_t i = 0; i < len; ++i) store(y, i, act_forward<A>(load<acc>(x, i) * scale + shift, slope));
  }
}

// Channels last: y = act(...) over the rows [r0, r1) of sample n, with that sample's coefficient rows.
template <typename scalar_t, Act A>
void normalize_rows(const scalar_t* x, const scalar_t* r, scalar_t* y, const Layout& l, int64_t n, int64_t r0,
                    int64_t r1, const PlaneCoefs<acc_t<scalar_t>>& k) {
  using acc = acc_t<scalar_t>;
  const acc* scale = k.scale.data() + n * l.C;
  const acc* shift = k.shift.data() + n * l.C;
  const acc* slope = k.slope.data() + n * l.C;
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t base = (n * l.S + row) * l.C;
    const scalar_t* in = x + base;
    scalar_t* out = y + base;
    if (r) {
      const scalar_t* res = r + base;
      #pragma omp simd
      for (int64_t c = 0; c < l.C; ++c)
        store(out, c, act_forward<A>(load<acc>(in, c) * scale[c] + shift[c] + load<acc>(res, c), slope[c]));
    } else {
      #pragma omp simd
      for (int64_t c = 0; c < l.C; ++c) store(out, c, act_forward<A>(load<acc>(in, c) * scale[c] + shift[c], slope[c]));
    }
  }
}

// Channels-last moments of every plane into mean / invstd.
template <typename scalar_t>
void rows_stats(const scalar_t* x, const Layout& l, double eps, acc_t<scalar_t>* mean, acc_t<scalar_t>* invstd) {
  using acc = acc_t<scalar_t>;
  const int64_t C = l.C, blocks = row_blocks(l);
  std::vector<double> parts(l.N * blocks * C * 3);  // (n, block, c) -> count, mean, m2
  for_each_row_block(l, [&](int64_t n, int64_t b, int64_t r0, int64_t r1) {
    std::vector<acc> mu(C, acc(0)), m2(C, acc(0));
    for (int64_t row = r0; row < r1; ++row) {
      const scalar_t* in = x + (n * l.S + row) * C;
      #pragma omp simd
      for (int64_t c = 0; c < C; ++c) mu[c] += load<acc>(in, c);
    }
    for (int64_t c = 0; c < C; ++c) mu[c] /= static_cast<acc>(r1 - r0);
    for (int64_t row = r0; row < r1; ++row) {
      const scalar_t* in = x + (n * l.S + row) * C;
      #pragma omp simd
      for (int64_t c = 0; c < C; ++c) m2[c] += (load<acc>(in, c) - mu[c]) * (load<acc>(in, c) - mu[c]);
    }
    double* out = parts.data() + (n * blocks + b) * C * 3;
    for (int64_t c = 0; c < C; ++c) {
      out[3 * c] = double(r1 - r0);
      out[3 * c + 1] = double(mu[c]);
      out[3 * c + 2] = double(m2[c]);
    }
  });
  for (int64_t n = 0; n < l.N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      Moments m;
      for (int64_t b = 0; b < blocks; ++b) {
        const double* part = parts.data() + ((n * blocks + b) * C + c) * 3;
        m.merge(part[0], part[1], part[2]);
      }
      mean[n * C + c] = static_cast<acc>(m.mean);
      invstd[n * C + c] = static_cast<acc>(1.0 / std::sqrt(m.m2 / m.n + eps));
    }
}

// ---------------------------------------------------------------- forward

template <typename scalar_t, Act A>
void forward_loops(const at::Tensor& x, const at::Tensor& r, const Layout& l, double eps, const PlaneParams& pp,
                   at::Tensor& y, bool with_stats) {
  using acc = acc_t<scalar_t>;
  const scalar_t* in = x.const_data_ptr<scalar_t>();
  const scalar_t* res = r.defined() ? r.const_data_ptr<scalar_t>() : nullptr;
  scalar_t* out = y.mutable_data_ptr<scalar_t>();
  acc* mean = pp.mean.mutable_data_ptr<acc>();
  acc* invstd = pp.invstd.mutable_data_ptr<acc>();
  const acc* gamma = pp.gamma.const_data_ptr<acc>();
  const acc* beta = pp.beta.const_data_ptr<acc>();
  const acc* slope = pp.slope.const_data_ptr<acc>();
  if (!l.channels_last) {
    for_each_plane(l, [&](int64_t plane) {
      const int64_t c = plane % l.C, base = plane * l.S;
      if (with_stats) {
        const Moments m = plane_moments(in + base, l.S);
        mean[plane] = static_cast<acc>(m.mean);
        invstd[plane] = static_cast<acc>(1.0 / std::sqrt(m.m2 / m.n + eps));
      }
      const acc scale = gamma[c] * invstd[plane], shift = beta[c] - mean[plane] * scale;
      normalize_run<scalar_t, A>(in + base, res ? res + base : nullptr, out + base, l.S, scale, shift, slope[c]);
    });
    return;
  }
  if (with_stats) rows_stats(in, l, eps, mean, invstd);
  const PlaneCoefs<acc> k(pp, l, false);
  for_each_row_block(l, [&](int64_t n, int64_t, int64_t r0, int64_t r1) {
    normalize_rows<scalar_t, A>(in, res, out, l, n, r0, r1, k);
  });
}

// ---------------------------------------------------------------- backward

template <typename scalar_t, Act A, bool FromOutput, bool Res>
GradSums grad_sums_run(const scalar_t* g, const scalar_t* sv, const scalar_t* rv, int64_t len,
                       const PlaneCoefs<acc_t<scalar_t>>& k, int64_t i) {
  using acc = acc_t<scalar_t>;
  const acc scale = k.scale[i], shift = k.shift[i], p = k.p[i], q = k.q[i], slope = k.slope[i], inv = k.inv_slope[i];
  GradSums out;
  for (int64_t start = 0; start < len; start += kChunk) {
    const int64_t n = std::min(kChunk, len - start);
    acc s_dz = 0, s_dzx = 0, s_sl = 0;
    #pragma omp simd reduction(+ : s_dz, s_dzx, s_sl)
    for (int64_t j = start; j < start + n; ++j) {
      acc z, xh;
      recover<A, FromOutput>(load<acc>(sv, j), Res ? load<acc>(rv, j) : acc(0), scale, shift, p, q, inv, z, xh);
      const acc gy = load<acc>(g, j);
      const acc dz = gy * act_derivative<A>(z, slope);
      s_dz += dz;
      s_dzx += dz * xh;
      if constexpr (A == Act::Leaky) s_sl += slope_grad_term(gy, z);
    }
    out.dz += s_dz;
    out.dz_xhat += s_dzx;
    out.slope += s_sl;
  }
  return out;
}

// dx = a * dz + b + cx * x_hat (a = gamma * invstd, b = -a * mean(dz), cx = -a * mean(dz * x_hat) in training);
// dr = dz when wanted.
template <typename scalar_t, Act A, bool FromOutput, bool Res>
void grad_input_run(const scalar_t* g, const scalar_t* sv, const scalar_t* rv, scalar_t* dx, scalar_t* dr,
                    int64_t len, const PlaneCoefs<acc_t<scalar_t>>& k, int64_t i, acc_t<scalar_t> a,
                    acc_t<scalar_t> b, acc_t<scalar_t> cx) {
  using acc = acc_t<scalar_t>;
  const acc scale = k.scale[i], shift = k.shift[i], p = k.p[i], q = k.q[i], slope = k.slope[i], inv = k.inv_slope[i];
  #pragma omp simd
  for (int64_t j = 0; j < len; ++j) {
    acc z, xh;
    recover<A, FromOutput>(load<acc>(sv, j), Res ? load<acc>(rv, j) : acc(0), scale, shift, p, q, inv, z, xh);
    const acc dz = load<acc>(g, j) * act_derivative<A>(z, slope);
    store(dx, j, a * dz + b + cx * xh);
    if constexpr (Res) store(dr, j, dz);
  }
}

// What a backward pass reads and writes, for both layouts: grad_out, the saved tensor, the residual (Res), the
// gradients, the per-plane sums (sum_slope's only when it has N * C elements) and the plane coefficients.
template <typename scalar_t>
struct BackwardData {
  using acc = acc_t<scalar_t>;
  const scalar_t *dy, *s, *rv;
  scalar_t *dx, *dr;
  acc *o_dz, *o_dzx, *o_sl;
  const acc *gamma, *invstd;
  const PlaneCoefs<acc>& k;
  double inv_s;  // 1 / S
  bool training;

  // The input-gradient coefficients of plane i from its sums: dx = a * dz + b + cx * x_hat.
  void input_coefs(int64_t i, int64_t C, acc& a, acc& b, acc& cx) const {
    a = gamma[i % C] * invstd[i];
    b = training ? static_cast<acc>(-a * double(o_dz[i]) * inv_s) : acc(0);
    cx = training ? static_cast<acc>(-a * double(o_dzx[i]) * inv_s) : acc(0);
  }
};

// Channels first: a task owns whole planes, the sums then the input-gradient pass of each.
template <typename scalar_t, Act A, bool FromOutput, bool Res>
void backward_planes(const BackwardData<scalar_t>& d, const Layout& l) {
  using acc = acc_t<scalar_t>;
  for_each_plane(l, [&](int64_t i) {
    const int64_t base = i * l.S;
    const GradSums t = grad_sums_run<scalar_t, A, FromOutput, Res>(d.dy + base, d.s + base,
                                                                    Res ? d.rv + base : nullptr, l.S, d.k, i);
    d.o_dz[i] = static_cast<acc>(t.dz);
    d.o_dzx[i] = static_cast<acc>(t.dz_xhat);
    if (d.o_sl) d.o_sl[i] = static_cast<acc>(t.slope);
    acc a, b, cx;
    d.input_coefs(i, l.C, a, b, cx);
    grad_input_run<scalar_t, A, FromOutput, Res>(d.dy + base, d.s + base, Res ? d.rv + base : nullptr, d.dx + base,
                                                 Res ? d.dr + base : nullptr, l.S, d.k, i, a, b, cx);
  });
}

// Channels last: per (n, row block) partial sums, merged in block order, then the input-gradient pass.
template <typename scalar_t, Act A, bool FromOutput, bool Res>
void backward_rows(const BackwardData<scalar_t>& d, const Layout& l) {
  using acc = acc_t<scalar_t>;
  const scalar_t *dy = d.dy, *s = d.s, *rv = d.rv;
  scalar_t *dx = d.dx, *dr = d.dr;
  const PlaneCoefs<acc>& k = d.k;
  // element(): z, x_hat and grad_out of element idx of plane i; returns dz.
  auto element = [&](int64_t i, int64_t idx, acc& z, acc& xh, acc& gy) {
    recover<A, FromOutput>(load<acc>(s, idx), Res ? load<acc>(rv, idx) : acc(0), k.scale[i], k.shift[i], k.p[i],
                           k.q[i], k.inv_slope[i], z, xh);
    gy = load<acc>(dy, idx);
    return gy * act_derivative<A>(z, k.slope[i]);
  };
  const int64_t C = l.C, blocks = row_blocks(l);
  std::vector<GradSums> parts(l.N * blocks * C);
  for_each_row_block(l, [&](int64_t n, int64_t blk, int64_t r0, int64_t r1) {
    std::vector<acc> a_dz(C, acc(0)), a_dzx(C, acc(0)), a_sl(C, acc(0));
    const int64_t pi = n * C;
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t base = (n * l.S + row) * C;
      #pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        acc z, xh, gy;
        const acc dz = element(pi + c, base + c, z, xh, gy);
        a_dz[c] += dz;
        a_dzx[c] += dz * xh;
        if constexpr (A == Act::Leaky) a_sl[c] += slope_grad_term(gy, z);
      }
    }
    for (int64_t c = 0; c < C; ++c) parts[(n * blocks + blk) * C + c] = GradSums{a_dz[c], a_dzx[c], a_sl[c]};
  });
  for (int64_t n = 0; n < l.N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      GradSums t;
      for (int64_t b = 0; b < blocks; ++b) {
        const GradSums& part = parts[(n * blocks + b) * C + c];
        t.dz += part.dz;
        t.dz_xhat += part.dz_xhat;
        t.slope += part.slope;
      }
      d.o_dz[n * C + c] = static_cast<acc>(t.dz);
      d.o_dzx[n * C + c] = static_cast<acc>(t.dz_xhat);
      if (d.o_sl) d.o_sl[n * C + c] = static_cast<acc>(t.slope);
    }
  std::vector<acc> ca(l.N * C), cb(l.N * C), ccx(l.N * C);
  for (int64_t i = 0; i < l.N * C; ++i) d.input_coefs(i, C, ca[i], cb[i], ccx[i]);
  for_each_row_block(l, [&](int64_t n, int64_t, int64_t r0, int64_t r1) {
    const int64_t pi = n * C;
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t base = (n * l.S + row) * C;
      #pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        acc z, xh, gy;
        const acc dz = element(pi + c, base + c, z, xh, gy);
        store(dx, base + c, ca[pi + c] * dz + cb[pi + c] + ccx[pi + c] * xh);
        if constexpr (Res) store(dr, base + c, dz);
      }
    }
  });
}

template <typename scalar_t, Act A, bool FromOutput, bool Res>
void backward_loops(const at::Tensor& grad_y, const at::Tensor& saved, const at::Tensor& r, const Layout& l,
                    const PlaneParams& pp, bool training, at::Tensor& sum_dz, at::Tensor& sum_dz_xhat,
                    at::Tensor& sum_slope, at::Tensor& grad_x, at::Tensor& grad_r) {
  using acc = acc_t<scalar_t>;
  const PlaneCoefs<acc> k(pp, l, FromOutput);
  const BackwardData<scalar_t> d{grad_y.const_data_ptr<scalar_t>(),
                                 saved.const_data_ptr<scalar_t>(),
                                 Res ? r.const_data_ptr<scalar_t>() : nullptr,
                                 grad_x.mutable_data_ptr<scalar_t>(),
                                 Res ? grad_r.mutable_data_ptr<scalar_t>() : nullptr,
                                 sum_dz.mutable_data_ptr<acc>(),
                                 sum_dz_xhat.mutable_data_ptr<acc>(),
                                 sum_slope.numel() > 0 ? sum_slope.mutable_data_ptr<acc>() : nullptr,
                                 pp.gamma.const_data_ptr<acc>(),
                                 pp.invstd.const_data_ptr<acc>(),
                                 k,
                                 1.0 / static_cast<double>(l.S),
                                 training};
  if (l.channels_last) backward_rows<scalar_t, A, FromOutput, Res>(d, l);
  else backward_planes<scalar_t, A, FromOutput, Res>(d, l);
}

// ---------------------------------------------------------------- Backend entries

void forward_cpu(const at::Tensor& x, const at::Tensor& r, const Layout& l, Act act, double eps, PlaneParams& p,
                 at::Tensor& y) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "instance_norm_act_forward", [&] {
    dispatch_act(act, [&]<Act A>() { forward_loops<scalar_t, A>(x, r, l, eps, p, y, true); });
  });
}

void apply_cpu(const at::Tensor& x, const at::Tensor& r, const Layout& l, Act act, const PlaneParams& p, at::Tensor& y) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "instance_norm_act_apply", [&] {
    dispatch_act(act, [&]<Act A>() {
      forward_loops<scalar_t, A>(x, r, l, 0.0, p, y, false);  // the statistics are only read
    });
  });
}

void backward_cpu(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const at::Tensor& r,
                  const Layout& l, Act act, const PlaneParams& p, bool training, at::Tensor& sum_dz,
                  at::Tensor& sum_dz_xhat, at::Tensor& sum_slope, at::Tensor& grad_x, at::Tensor& grad_r) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, saved.scalar_type(), "instance_norm_act_backward", [&] {
    dispatch_act(act, [&]<Act A>() {
      auto run = [&]<bool FromOutput, bool Res>() {
        backward_loops<scalar_t, A, FromOutput, Res>(grad_y, saved, r, l, p, training, sum_dz, sum_dz_xhat, sum_slope,
                                                     grad_x, grad_r);
      };
      if (saved_is_output) run.template operator()<true, false>();
      else if (r.defined()) run.template operator()<false, true>();
      else run.template operator()<false, false>();
    });
  });
}
