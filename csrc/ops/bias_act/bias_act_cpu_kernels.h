// The CPU kernels of bias_act, included once per instruction set by bias_act_cpu.cpp, each time inside its own
// namespace (common/cpu_isa.h). Includes nothing itself.
//
// Forward reads x once and writes y once; backward reads grad_out and the saved tensor once, writes grad_input and
// reduces the per-channel bias (and prelu slope) gradients in the same pass.

constexpr int64_t kGrainElems = 32768;  // below this many elements a task is not worth a thread

template <typename acc_t>
struct ChannelView {  // see Params: both always hold C values
  const acc_t* bias;
  const acc_t* slope;
  acc_t b(int64_t c) const { return bias[c]; }
  acc_t s(int64_t c) const { return slope[c]; }
};

template <typename acc_t>
ChannelView<acc_t> view_of(const Params& p) {
  return ChannelView<acc_t>{p.bias.const_data_ptr<acc_t>(), p.slope.const_data_ptr<acc_t>()};
}

// The loops live in templates outside AT_DISPATCH: its macro argument cannot hold `#pragma omp simd`.
template <typename scalar_t, Act A>
void forward_loops(const at::Tensor& x, const Layout& l, const Params& p, at::Tensor& y) {
  using acc = acc_t<scalar_t>;
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* yp = y.data_ptr<scalar_t>();
  const auto cv = view_of<acc>(p);
  if (!l.channels_last) {  // planes of S values, one channel each
    at::parallel_for(0, l.N * l.C, std::max<int64_t>(1, kGrainElems / std::max<int64_t>(l.S, 1)),
                     [&](int64_t begin, int64_t end) {
      for (int64_t plane = begin; plane < end; ++plane) {
        const int64_t c = plane % l.C;
        const acc b = cv.b(c), s = cv.s(c);
        const scalar_t* xr = xp + plane * l.S;
        scalar_t* yr = yp + plane * l.S;
#pragma omp simd
        for (int64_t i = 0; i < l.S; ++i) store(yr, i, act_forward<A>(load<acc>(xr, i) + b, s));
      }
    });
  } else {  // rows of C values
    at::parallel_for(0, l.N * l.S, std::max<int64_t>(1, kGrainElems / std::max<int64_t>(l.C, 1)),
                     [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* xr = xp + r * l.C;
        scalar_t* yr = yp + r * l.C;
#pragma omp simd
        for (int64_t c = 0; c < l.C; ++c)
          store(yr, c, act_forward<A>(load<acc>(xr, c) + cv.b(c), cv.s(c)));
      }
    });
  }
}

// One element of backward: grad_x, and the pre-activation z for the channel sums.
template <Act A, typename scalar_t, typename acc>
inline acc backward_element(const scalar_t* gp, const scalar_t* sp, scalar_t* gxp, int64_t i, bool saved_is_output,
                            acc b, acc s, acc& sum_s) {
  const acc dy = load<acc>(gp, i);
  const acc z = load<acc>(sp, i) + (saved_is_output ? acc(0) : b);
  const acc dz = dy * act_derivative_of_saved<A>(z, s, saved_is_output);
  store(gxp, i, dz);
  sum_s += slope_grad_term(dy, z);  // unused (and cheap) unless prelu
  return dz;
}

template <typename scalar_t, Act A>
void backward_loops(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const Layout& l,
                    const Params& p, bool want_slope, at::Tensor& grad_x, at::Tensor& grad_bias, at::Tensor& grad_slope) {
  using acc = acc_t<scalar_t>;
  const scalar_t* gp = grad_y.const_data_ptr<scalar_t>();
  const scalar_t* sp = saved.const_data_ptr<scalar_t>();
  scalar_t* gxp = grad_x.data_ptr<scalar_t>();
  const auto cv = view_of<acc>(p);
  acc* gb = grad_bias.data_ptr<acc>();
  acc* gs = want_slope ? grad_slope.data_ptr<acc>() : nullptr;
  if (!l.channels_last) {
    // Planes in memory order, one partial sum per plane, then summed over n per channel (fixed order:
    // deterministic). Memory order keeps the hardware prefetcher streaming; one channel's planes (stride C*S) are
    // too short a stream each.
    at::Tensor partial = at::empty({2, l.N * l.C}, grad_bias.options());
    acc* pb = partial.data_ptr<acc>();
    acc* ps = pb + l.N * l.C;
    at::parallel_for(0, l.N * l.C, std::max<int64_t>(1, kGrainElems / std::max<int64_t>(l.S, 1)),
                     [&](int64_t begin, int64_t end) {
      for (int64_t plane = begin; plane < end; ++plane) {
        const int64_t c = plane % l.C, base = plane * l.S;
        const acc b = cv.b(c), s = cv.s(c);
        acc sum_b = 0, sum_s = 0;
        // Local pointers: through the lambda's captured references the compiler must assume the grad_x stores
        // may change the pointers themselves, reloads them every element and does not vectorize.
        // backward_element's math written out: calling it, with sum_s passed by reference, makes this loop much
        // slower.
        const scalar_t* g = gp + base;
        const scalar_t* sv = sp + base;
        scalar_t* gx = gxp + base;
        const acc shift = saved_is_output ? acc(0) : b;
#pragma omp simd reduction(+ : sum_b, sum_s)
        for (int64_t i = 0; i < l.S; ++i) {
          const acc dy = load<acc>(g, i);
          const acc z = load<acc>(sv, i) + shift;
          const acc dz = dy * act_derivative_of_saved<A>(z, s, saved_is_output);
          store(gx, i, dz);
          sum_b += dz;
          sum_s += slope_grad_term(dy, z);
        }
        pb[plane] = sum_b;
        ps[plane] = sum_s;
      }
    });
    for (int64_t c = 0; c < l.C; ++c) {
      acc sum_b = 0, sum_s = 0;
      for (int64_t n = 0; n < l.N; ++n) {
        sum_b += pb[n * l.C + c];
        sum_s += ps[n * l.C + c];
      }
      gb[c] = sum_b;
      if (want_slope) gs[c] = sum_s;
    }
  } else {  // row blocks with their own per-channel partial sums, merged in block order (deterministic)
    const int64_t rows = l.N * l.S;
    const int64_t blocks = std::min<int64_t>(rows, std::max<int64_t>(1, (rows * l.C) / kGrainElems));
    at::Tensor partial = at::zeros({blocks, 2, l.C}, grad_bias.options());
    acc* pp = partial.data_ptr<acc>();
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t blk = begin; blk < end; ++blk) {
        acc* pb = pp + blk * 2 * l.C;
        acc* ps = pb + l.C;
        for (int64_t r = rows * blk / blocks; r < rows * (blk + 1) / blocks; ++r) {
#pragma omp simd
          for (int64_t c = 0; c < l.C; ++c)
            pb[c] += backward_element<A>(gp, sp, gxp, r * l.C + c, saved_is_output, cv.b(c), cv.s(c), ps[c]);
        }
      }
    });
    for (int64_t blk = 0; blk < blocks; ++blk)
      for (int64_t c = 0; c < l.C; ++c) {
        gb[c] += pp[blk * 2 * l.C + c];
        if (want_slope) gs[c] += pp[(blk * 2 + 1) * l.C + c];
      }
  }
}

void forward_cpu(const at::Tensor& x, const Layout& l, Act act, const Params& p, at::Tensor& y) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act_cpu", [&] {
    dispatch_act(act, [&]<Act A>() { forward_loops<scalar_t, A>(x, l, p, y); });
  });
}

void backward_cpu(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const Layout& l, Act act,
                  const Params& p, bool want_slope, at::Tensor& grad_x, at::Tensor& grad_bias, at::Tensor& grad_slope) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, saved.scalar_type(), "bias_act_backward_cpu", [&] {
    dispatch_act(act, [&]<Act A>() {
      backward_loops<scalar_t, A>(grad_y, saved, saved_is_output, l, p, want_slope, grad_x, grad_bias, grad_slope);
    });
  });
}
