"""Every CUDA kernel of every op, run on the CPU under the device emulation (tests/emulation.py, csrc/emulation/),
against the float64 reference: fp32, fp64, fp16, bf16; NCHW and channels_last; aligned (16-byte vector) and
unaligned paths; reductions split over several blocks with a partial last chunk; channel counts that are not a
multiple of the channels-last tile; grid-stride loops (a 1-SM GPU); other block and thread orders. Inputs sit in
NaN-padded buffers (a read past either end shows) and uninitialized outputs are NaN (an unwritten element shows).
The last test checks that the file ran every __global__ kernel and every launch site of csrc/."""

import math
import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import emulation
from pygan.ops import reference

ACTS = ["identity", "relu", "leaky_relu", "prelu"]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
EPS = 1e-5
NEG = 0.2  # negative_slope of leaky_relu
# Largest error allowed, relative to max(1, max |expected|): the tolerances of the CUDA tests (2e-5 for fp32),
# 2 rounding steps of the output dtype for fp16 / bf16 (inputs are exactly the reference's inputs).
TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2 * 2.0**-10, torch.bfloat16: 2 * 2.0**-7}
TOL_ACC = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-5, torch.bfloat16: 2e-5}  # fp32/fp64 sums

_RAN = []  # names of the tests of this file that ran, for the coverage test


@pytest.fixture(autouse=True)
def _emulated_gpu(emu, request):
    """Default GPU and order; uninitialized memory filled with NaN (deterministic mode, warnings only: bias_act's
    backward warns that its atomics are not deterministic); launches recorded for the coverage test."""
    emulation.configure()
    emulation.clear_launches()
    was, was_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*bias_act_backward_cuda.*")
            yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn)
        torch.utils.deterministic.fill_uninitialized_memory = fill
        emulation.configure()
        emulation.record_launches()
        _RAN.append(request.node.name)


# ---------------------------------------------------------------- inputs and checks


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple
    channels_last: bool = False
    misaligned: bool = False  # data pointer one element past a 16-byte boundary: the unaligned element path

    def __str__(self):
        return self.name


# With the default 132 SMs. cf = channels first, cl = channels last.
CASES = [
    Case("cf_splits", (2, 3, 43, 96)),  # 8256 values per channel: 4 reduction blocks per channel; aligned vectors
    Case("cf_splits_tail", (2, 3, 43, 97)),  # 4 splits, the last one partial; numel odd: a partial last chunk
    Case("cf_misaligned", (2, 5, 17, 32), misaligned=True),  # numel a multiple of 8, data pointer off by one
    Case("cl_tiles", (3, 40, 9, 37), channels_last=True),  # 40 channels: 2 tiles, the second partial; 15 splits
    Case("cl_tail", (2, 33, 5, 7), channels_last=True, misaligned=True),  # 2310 values: partial chunk and tile
    Case("nc", (37, 70)),  # BatchNorm1d on (N, C): the channels-last kernels (one value per plane)
    Case("ncl", (3, 4, 7)),  # BatchNorm1d on (N, C, L)
    Case("cl_3d", (2, 3, 3, 4, 5), channels_last=True),
]


def padded(t: torch.Tensor, misaligned: bool = False, pad: int = 64) -> torch.Tensor:
    """t's values in a view of a larger NaN-filled buffer, with t's strides: reads past either end give NaN. The
    view starts 128 bytes (aligned) or 128 bytes + one element (misaligned) into the buffer."""
    buf = torch.full((t.numel() + 2 * pad + 1,), math.nan, dtype=t.dtype)
    v = buf.as_strided(t.shape, t.stride(), pad + (1 if misaligned else 0))
    v.copy_(t)
    return v


def memory_format(case: Case, dim: int):
    if not case.channels_last:
        return torch.contiguous_format
    return torch.channels_last if dim == 4 else torch.channels_last_3d


def make_x(case: Case, dtype, scale=1.7, shift=0.4) -> torch.Tensor:
    x = torch.randn(case.shape) * scale + shift
    return padded(x.to(dtype).contiguous(memory_format=memory_format(case, x.dim())), case.misaligned)


def like(x: torch.Tensor, t: torch.Tensor, case: Case) -> torch.Tensor:
    """t (x's shape) in x's dtype, memory format and alignment."""
    return padded(t.to(x.dtype).contiguous(memory_format=memory_format(case, x.dim())), case.misaligned)


def d64(t):
    return None if t is None else t.detach().double()


def check(actual, expected, tol, what):
    a, e = actual.double(), expected.double()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)}, expected {tuple(e.shape)}"
    scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
    err = (a - e).abs().max().item() if e.numel() else 0.0
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol * scale:.3g}"  # NaN fails too


def params(C, dtype, activation, affine=True, shared_slope=False):
    pdt = torch.float64 if dtype == torch.float64 else torch.float32
    p = dict(weight=(1 + 0.3 * torch.randn(C)).to(pdt) if affine else None,
             bias=(0.2 * torch.randn(C)).to(pdt) if affine else None,
             slope=(0.05 + 0.3 * torch.rand(1 if shared_slope else C)).to(pdt) if activation == "prelu" else None)
    return p


# ---------------------------------------------------------------- batch_norm_act


def check_batch_norm_act(ops, case: Case, dtype, activation, affine=True, shared_slope=False):
    """Training forward, running-stat update, apply, backward (saved input; saved output when invertible), eval
    forward and backward: every pass of batch_norm_act's CUDA backend against the float64 reference."""
    x = make_x(case, dtype)
    C = x.shape[1]
    p = params(C, dtype, activation, affine, shared_slope)
    w, b, s = p["weight"], p["bias"], p["slope"]
    rdt = torch.float64 if dtype == torch.float64 else torch.float32
    rm, rv = (0.1 * torch.randn(C)).to(rdt), (0.5 + torch.rand(C)).to(rdt)
    tol, tol_acc = TOL[dtype], TOL_ACC[dtype]
    args64 = (d64(w), d64(b))

    y, mean, invstd = ops.batch_norm_act(x, w, b, rm, rv, s, True, EPS, activation, NEG)
    ry, rmean, rinvstd = reference.batch_norm_act(d64(x), *args64, d64(rm), d64(rv), d64(s), True, EPS, activation, NEG)
    check(mean, rmean, tol_acc, "mean")
    check(invstd, rinvstd, tol_acc, "invstd")
    check(y, ry, tol, "output")
    assert y.dtype == dtype and y.stride() == x.stride()

    count = x.numel() // C
    rm2, rv2, rm64, rv64 = rm.clone(), rv.clone(), d64(rm), d64(rv)
    ops.batch_norm_update_stats(rm2, rv2, mean, invstd, 0.1, EPS, count)
    reference.batch_norm_update_stats(rm64, rv64, d64(mean), d64(invstd), 0.1, EPS, count)
    check(rm2, rm64, tol_acc, "running_mean")
    check(rv2, rv64, tol_acc, "running_var")
    if dtype in (torch.float16, torch.bfloat16):  # a model in half precision keeps its running stats in it
        rm3, rv3 = rm.to(dtype), rv.to(dtype)
        ops.batch_norm_update_stats(rm3, rv3, mean, invstd, 0.1, EPS, count)
        check(rm3, rm64, tol, "running_mean (half precision)")
        check(rv3, rv64, tol, "running_var (half precision)")

    again = ops.batch_norm_act_apply(x, w, b, mean, invstd, s, activation, NEG)
    assert torch.equal(again, y), "batch_norm_act_apply must recompute the training output bitwise"

    g = like(x, torch.randn(x.shape), case)
    savings = [(x, False)] + ([(y, True)] if activation != "relu" else [])
    for training in (True, False):
        for saved, is_output in savings:
            got = ops.batch_norm_act_backward(g, saved, is_output, w, b, s, mean, invstd, training, activation, NEG)
            want = reference.batch_norm_act_backward(d64(g), d64(saved), is_output, *args64, d64(s), d64(mean),
                                                     d64(invstd), training, activation, NEG)
            what = f"backward ({'training' if training else 'eval'}, saved {'output' if is_output else 'input'})"
            # Recovering the input from a rounded output multiplies its rounding error (by up to 2 for fp16/bf16,
            # see recoverable_from_output): allow that much more.
            t = tol * (3 if is_output and dtype in (torch.float16, torch.bfloat16) else 1)
            check(got[0], want[0], t, f"{what}: grad input")
            for k, name in ((1, "weight"), (2, "bias"), (3, "slope")):
                if want[k].numel():
                    check(got[k], want[k], tol_acc if not is_output else max(tol_acc, t), f"{what}: grad {name}")

    ye, _, _ = ops.batch_norm_act(x, w, b, rm, rv, s, False, EPS, activation, NEG)
    rye, _, _ = reference.batch_norm_act(d64(x), *args64, d64(rm), d64(rv), d64(s), False, EPS, activation, NEG)
    check(ye, rye, tol, "eval output")


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_batch_norm_act(emu, case, dtype, activation):
    check_batch_norm_act(emu, case, dtype, activation)


@pytest.mark.parametrize("activation", ["identity", "prelu"])
def test_batch_norm_act_without_affine_and_shared_slope(emu, activation):
    check_batch_norm_act(emu, CASES[1], torch.float32, activation, affine=False, shared_slope=True)


# ---------------------------------------------------------------- bias_act


def check_bias_act(ops, case: Case, dtype, activation, shared_slope=False):
    x = make_x(case, dtype, shift=0.0)
    p = params(x.shape[1], dtype, activation, shared_slope=shared_slope)
    b, s = p["bias"], p["slope"]
    tol, tol_acc = (TOL[dtype] / 2 if dtype == torch.float32 else TOL[dtype]), TOL_ACC[dtype] * 5  # 1e-5, 1e-4
    y = ops.bias_act(x, b, s, activation, NEG)
    check(y, reference.bias_act(d64(x), d64(b), d64(s), activation, NEG), tol, "output")
    assert y.stride() == x.stride()
    g = like(x, torch.randn(x.shape), case)
    savings = [(x, False)] + ([(y, True)] if activation != "prelu" else [])
    for saved, is_output in savings:
        got = ops.bias_act_backward(g, saved, is_output, b, s, activation, NEG)
        want = reference.bias_act_backward(d64(g), d64(saved), is_output, d64(b), d64(s), activation, NEG)
        what = f"backward (saved {'output' if is_output else 'input'})"
        check(got[0], want[0], tol, f"{what}: grad input")
        check(got[1], want[1], tol_acc, f"{what}: grad bias")
        if want[2].numel():
            check(got[2], want[2], tol_acc, f"{what}: grad slope")


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_bias_act(emu, case, dtype, activation):
    check_bias_act(emu, case, dtype, activation)


def test_bias_act_shared_slope(emu):
    check_bias_act(emu, CASES[0], torch.float32, "prelu", shared_slope=True)


# ---------------------------------------------------------------- instance_norm_act


def check_instance_norm_act(ops, case: Case, dtype, activation, affine=True, residual=False):
    """Forward, apply with the forward's statistics, backward (saved input; saved output where the op would keep
    it) in training and with given statistics: every pass of instance_norm_act's CUDA backend against the float64
    reference."""
    x = make_x(case, dtype)
    C = x.shape[1]
    p = params(C, dtype, activation, affine)
    w, b, s = p["weight"], p["bias"], p["slope"]
    r = like(x, torch.randn(x.shape), case) if residual else None
    tol, tol_acc = TOL[dtype], TOL_ACC[dtype]
    args64 = (d64(w), d64(b))

    y, mean, invstd = ops.instance_norm_act(x, w, b, r, s, EPS, activation, NEG)
    ry, rmean, rinvstd = reference.instance_norm_act(d64(x), *args64, d64(r), d64(s), EPS, activation, NEG)
    check(mean, rmean, tol_acc, "mean")
    check(invstd, rinvstd, tol_acc, "invstd")
    check(y, ry, tol, "output")
    assert y.dtype == dtype and y.stride() == x.stride()

    again = ops.instance_norm_act_apply(x, w, b, r, mean, invstd, s, activation, NEG)
    check(again, reference.instance_norm_act_apply(d64(x), *args64, d64(r), d64(mean), d64(invstd), d64(s),
                                                   activation, NEG), tol, "apply")

    g = like(x, torch.randn(x.shape), case)
    invertible = activation in ("identity", "leaky_relu", "prelu") and not residual
    savings = [(x, False)] + ([(y, True)] if invertible else [])
    for training in (True, False):
        for saved, is_output in savings:
            got = ops.instance_norm_act_backward(g, saved, is_output, r, w, b, s, mean, invstd, training, activation,
                                                 NEG)
            want = reference.instance_norm_act_backward(d64(g), d64(saved), is_output, d64(r), *args64, d64(s),
                                                        d64(mean), d64(invstd), training, activation, NEG)
            what = f"backward ({'training' if training else 'eval'}, saved {'output' if is_output else 'input'})"
            t = tol * (3 if is_output and dtype in (torch.float16, torch.bfloat16) else 1)
            check(got[0], want[0], t, f"{what}: grad input")
            for k, name in ((1, "weight"), (2, "bias"), (3, "slope"), (4, "residual")):
                if want[k].numel():
                    check(got[k], want[k], tol_acc if not is_output and k < 4 else max(tol_acc, t), f"{what}: grad {name}")


# Planes: channels first and small enough are one block per plane in shared memory (IN_PLANE); a 13,225-value fp32
# plane needs more than the 48 KiB a launch gets without opting in (forward), and its backward's two cached arrays
# exceed the plane cap (split reductions); channels last always splits.
IN_CASES = [
    Case("in_plane", (2, 3, 7, 9)),
    Case("in_plane_misaligned", (3, 2, 5, 8), misaligned=True),
    Case("in_opt_in", (1, 2, 115, 115)),
    Case("in_cl", (2, 40, 9, 13), channels_last=True),
    Case("in_cl_tail", (2, 33, 5, 7), channels_last=True, misaligned=True),
    Case("in_1d", (2, 3, 50)),
    Case("in_3d_cl", (2, 3, 3, 4, 5), channels_last=True),
]
IN_ACTS = ACTS + ["tanh"]


@pytest.mark.parametrize("activation", IN_ACTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", IN_CASES, ids=str)
def test_instance_norm_act(emu, case, dtype, activation):
    if case.name == "in_opt_in" and (dtype != torch.float32 or activation not in ("identity", "prelu")):
        pytest.skip("the large plane once per path is enough (emulation time)")
    check_instance_norm_act(emu, case, dtype, activation)


@pytest.mark.parametrize("activation", ["identity", "relu", "leaky_relu"])
@pytest.mark.parametrize("case", [IN_CASES[0], IN_CASES[3]], ids=str)
def test_instance_norm_act_residual_and_no_affine(emu, case, activation):
    check_instance_norm_act(emu, case, torch.float32, activation, residual=True)
    check_instance_norm_act(emu, case, torch.float32, activation, affine=False, residual=True)


# Channels last with 4,087 rows of 3 channels: 5 reduction blocks per sample, the last one partial.
IN_CL_SPLITS = Case("in_cl_splits", (1, 3, 61, 67), channels_last=True)


@pytest.mark.parametrize("activation", ["identity", "leaky_relu"])
def test_instance_norm_act_channels_last_split_reduction(emu, activation):
    check_instance_norm_act(emu, IN_CL_SPLITS, torch.float32, activation)
    grids = {k.split("<")[0]: g for _, _, k, g, _ in emulation.launches()}
    assert grids["reduce_cl_kernel"] == (1, 5, 1) and grids["finalize_kernel"] == (1, 1, 1)


# The plane kernels whose static + dynamic shared memory crosses 48 KiB while their dynamic shared memory alone does
# not (49,152 bytes of it): the launches that failed on a GPU before the plane kernels counted their static shared
# memory; and a backward plane well past 48 KiB.
WINDOW = [(torch.float32, (96, 128)), (torch.float32, (64, 96)), (torch.float32, (48, 128)),
          (torch.float16, (96, 128)), (torch.float64, (48, 64))]


@pytest.mark.parametrize("dtype,plane", WINDOW + [(torch.float32, (100, 100))], ids=str)
def test_instance_norm_act_plane_kernels_opt_in_at_the_48_kib_window(emu, dtype, plane):
    check_instance_norm_act(emu, Case("in_window", (1, 1, *plane)), dtype, "leaky_relu")
    kernels = {k.split("<")[0] for _, _, k, _, _ in emulation.launches()}
    assert {"plane_forward_kernel", "plane_backward_kernel"} <= kernels


def check_instance_norm_act_apply_many_samples(ops):
    """70,000 samples of one 2-value plane: more than the grid's 65,535 in y, so apply_kernel's sample loop takes
    blockIdx.y + gridDim.y. (The plane kernels would run one block of 512 threads per sample: minutes here.)"""
    x = padded(torch.randn(70_000, 1, 2))
    mean, invstd = 0.1 * torch.randn(70_000, 1), 0.5 + torch.rand(70_000, 1)
    w, b = 1 + 0.3 * torch.randn(1), 0.2 * torch.randn(1)
    y = ops.instance_norm_act_apply(x, w, b, None, mean, invstd, None, "relu", NEG)
    check(y, reference.instance_norm_act_apply(d64(x), d64(w), d64(b), None, d64(mean), d64(invstd), None, "relu", NEG),
          TOL[torch.float32], "apply")


def test_instance_norm_act_beyond_the_grid_y_limit(emu):
    check_instance_norm_act_apply_many_samples(emu)
    assert [g for _, _, k, g, _ in emulation.launches() if k.startswith("apply_kernel")] == [(1, 65535, 1)]


def test_instance_norm_act_large_planes_split(emu):
    """The split path of channels-first planes (too large for shared memory in both directions) and the opt-in
    launch of the forward's plane kernel."""
    emulation.configure(sm_count=4)
    check_instance_norm_act(emu, Case("in_big", (1, 1, 180, 180)), torch.float32, "leaky_relu")
    big = {(k.split("<")[0], g) for _, _, k, g, _ in emulation.launches()}
    assert not any(k.startswith("plane_") for k, _ in big)
    assert any(k == "reduce_cf_kernel" and g[1] > 1 for k, g in big)
    emulation.record_launches()
    # 52,900 bytes of plane: launched only because the kernel opted in (else the emulated launch fails)
    check_instance_norm_act(emu, IN_CASES[2], torch.float32, "relu")
    kernels = {k.split("<")[0] for _, _, k, _, _ in emulation.launches()}
    assert {"plane_forward_kernel", "reduce_cf_kernel", "grad_input_kernel"} <= kernels
    assert "plane_backward_kernel" not in kernels


# ---------------------------------------------------------------- gan_loss

TERMS = [("bce", 0.9), ("neg_softplus", 0.0), ("neg_half_exp", 0.0), ("linear", -1.0), ("hinge", 1.0),
         ("squared", 1.0)]
GAN_TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


def check_gan_loss(ops, n, dtype, term, target, mean=True, misaligned=False):
    x = padded((torch.randn(n) * 3).to(dtype), misaligned)
    loss, grad, scores = ops.gan_loss(x, term, target, mean)
    rloss, rgrad, rscores = reference.gan_loss(d64(x), term, target, mean)
    tol = GAN_TOL[dtype]
    check(loss, rloss, tol, "loss")
    check(grad, rgrad, tol, "grad")
    check(scores, rscores, tol, "scores")


@pytest.mark.parametrize("term,target", TERMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [1, 63, 300, 5000])  # 5000: 3 blocks, the last partial
def test_gan_loss(emu, n, dtype, term, target):
    check_gan_loss(emu, n, dtype, term, target, mean=n != 63, misaligned=n == 300)


# ---------------------------------------------------------------- other GPUs and orders


def test_one_sm_gpu_runs_grid_stride_loops(emu):
    """With 1 SM the grids are capped small: element passes loop over several chunks per thread, reductions use
    fewer splits, gan_loss loops within its 4 blocks."""
    emulation.configure(sm_count=1)
    big = Case("cf_big", (2, 3, 100, 100))
    check_batch_norm_act(emu, big, torch.float32, "leaky_relu")
    check_batch_norm_act(emu, Case("cl_big", (2, 40, 30, 40), channels_last=True), torch.float32, "prelu")
    check_bias_act(emu, big, torch.float32, "prelu")
    check_bias_act(emu, Case("cl_big", (4, 40, 30, 40), channels_last=True), torch.float32, "relu")
    check_gan_loss(emu, 20000, torch.float32, "bce", 0.9)
    grids = {(k, g) for _, _, k, g, _ in emulation.launches()}
    assert any(k.startswith("normalize_act_kernel") and g[0] * 256 * 4 < 60000 for k, g in grids)
    assert any(k.startswith("gan_loss_kernel") and g == (4, 1, 1) for k, g in grids)
    # instance_norm_act's element passes: 48,000 values per sample in 12,000 chunks, at most 16 blocks of 256 per
    # sample: both passes loop over chunks (grid x) within each sample (grid y)
    emulation.record_launches()
    check_instance_norm_act(emu, Case("in_cl_big", (2, 40, 30, 40), channels_last=True), torch.float32, "prelu")
    grids = {k.split("<")[0]: g for _, _, k, g, _ in emulation.launches()}
    for kernel in ("apply_kernel", "grad_input_kernel"):
        assert grids[kernel][1] == 2 and grids[kernel][0] * 256 * 4 < 48000, (kernel, grids[kernel])


@pytest.mark.parametrize("order,seed", [("reverse", 0), ("shuffle", 1), ("shuffle", 2)])
def test_other_block_and_thread_orders(emu, order, seed):
    emulation.configure(order=order, seed=seed)
    for case in (CASES[1], CASES[3]):
        check_batch_norm_act(emu, case, torch.float32, "prelu")
        check_bias_act(emu, case, torch.float32, "prelu")
    check_gan_loss(emu, 5000, torch.float32, "bce", 0.9)
    for case in (IN_CASES[0], IN_CL_SPLITS, IN_CASES[3]):  # plane on chip; split reductions, channels last
        check_instance_norm_act(emu, case, torch.float32, "prelu")


def test_random_shapes_gpus_and_orders(emu):
    """Seeded random configurations beyond the fixed cases: 2-D to 5-D, 1 to 130 channels, either layout and
    alignment, any dtype and activation, GPUs of 1 to 1000 SMs, any order."""
    rng = random.Random(2026)
    for i in range(40):
        nd = rng.choice([2, 3, 4, 4, 5])
        shape = (rng.choice([1, 2, 3, 5]), rng.choice([1, 2, 3, 31, 32, 33, 65, 130]),
                 *(rng.choice([1, 2, 3, 7, 16, 33]) for _ in range(nd - 2)))
        if math.prod(shape) // shape[1] < 2:
            continue
        case = Case(f"random{i}", shape, channels_last=nd >= 4 and rng.random() < 0.5, misaligned=rng.random() < 0.3)
        dtype, activation = rng.choice(DTYPES), rng.choice(ACTS)
        emulation.configure(sm_count=rng.choice([1, 3, 132, 1000]), order=rng.choice(["forward", "reverse", "shuffle"]),
                            seed=i)
        check_batch_norm_act(emu, case, dtype, activation, affine=rng.random() < 0.8, shared_slope=rng.random() < 0.3)
        check_bias_act(emu, case, dtype, activation, shared_slope=rng.random() < 0.3)
        check_gan_loss(emu, rng.choice([2, 31, 2047, 2048, 2049, 9000]), dtype, "bce", 0.9, mean=rng.random() < 0.5,
                       misaligned=case.misaligned)


def test_fixed_merge_order_gives_the_same_bits_in_any_order(emu):
    """batch_norm_act's statistics and gradient sums and gan_loss's sums merge their blocks' partial results in a
    fixed order: bitwise the same results whatever order the blocks and threads run in. (bias_act's grad_bias
    adds with atomics: not bitwise reproducible, as its docs say.)"""
    x, g, logits = make_x(CASES[1], torch.float32), torch.randn(CASES[1].shape), torch.randn(5000)
    p = params(3, torch.float32, "prelu")

    def run():
        y, mean, invstd = emu.batch_norm_act(x, p["weight"], p["bias"], None, None, p["slope"], True, EPS, "prelu", NEG)
        grads = emu.batch_norm_act_backward(g, x, False, p["weight"], p["bias"], p["slope"], mean, invstd, True,
                                            "prelu", NEG)
        return [y, mean, invstd, *grads, *emu.gan_loss(logits, "bce", 0.9, True)]

    first = run()
    for order, seed in [("reverse", 0), ("shuffle", 5), ("shuffle", 6)]:
        emulation.configure(order=order, seed=seed)
        assert all(torch.equal(a, b) for a, b in zip(run(), first)), f"{order} {seed}"


def test_grids_stay_within_the_gpu_limits_for_large_inputs(emu):
    """Inputs that ask for more than 65,535 blocks in grid dimension y, on a GPU with many SMs: the launches are
    checked and recorded but not run (too large to emulate); the kernels cap their grids and loop."""
    emulation.configure(sm_count=100_000, execute=False)
    planes = torch.randn(70_000, 1, 2)
    emu.bias_act_backward(planes, planes, False, torch.zeros(1), None, "relu", 0.0)
    big = torch.randn(4_200_000, 1)
    emu.bias_act_backward(big, big, False, torch.zeros(1), None, "relu", 0.0)
    emu.batch_norm_act(big, None, None, None, None, None, True, EPS, "identity", 0.0)
    grids = {k.split("<")[0]: g for _, _, k, g, _ in emulation.launches()}
    # bias_act's backward gives each block at least 2,048 values: 140,000 values per channel take 68 blocks, 4.2M
    # rows of one channel 2,051 (8 rows per thread); its 65,535 caps need over 134M values: not tried
    assert grids["backward_planes_kernel"] == (1, 68, 1)
    assert grids["backward_rows_kernel"] == (1, 2051, 1)
    # 65,535 splits asked for, then the chunk of rows rounded up: 64,616 blocks
    assert 60_000 < grids["reduce_cl_kernel"][1] <= 65535


def test_reductions_are_split_as_intended(emu):
    """The shapes above do what their comments say: several reduction blocks per channel, partial tiles."""
    check_batch_norm_act(emu, CASES[0], torch.float32, "identity")
    check_batch_norm_act(emu, CASES[3], torch.float32, "identity")
    grids = {(k.split("<")[0], g, b) for _, _, k, g, b in emulation.launches()}
    assert ("reduce_cf_kernel", (3, 4, 1), (256, 1, 1)) in grids
    assert ("reduce_cl_kernel", (2, 15, 1), (32, 8, 1)) in grids
    assert ("finalize_kernel", (1, 1, 1), (128, 1, 1)) in grids


# ---------------------------------------------------------------- the harness bites: broken kernels fail


def _one_sm(check):
    def run(o):
        emulation.configure(sm_count=1)
        check(o)
    return run


# How each mutant is shown to fail: the op checks above on inputs that reach its bug.
MUTANT_RUNS = {
    "chunk_bound": lambda o: check_batch_norm_act(o, CASES[1], torch.float32, "leaky_relu"),
    "bn_grid_stride": _one_sm(lambda o: check_batch_norm_act(o, Case("cf_big", (2, 3, 100, 100)), torch.float32,
                                                             "leaky_relu")),
    "missing_sync": lambda o: check_bias_act(o, CASES[0], torch.float32, "prelu"),
    "misaligned_vector": lambda o: check_bias_act(o, CASES[2], torch.float32, "relu"),
    "lost_atomic": lambda o: check_bias_act(o, Case("cl_big", (4, 40, 30, 40), channels_last=True), torch.float32,
                                            "relu"),
    "shuffle_offset": lambda o: check_gan_loss(o, 5000, torch.float32, "bce", 0.9),
    "gan_grid_stride": lambda o: check_gan_loss(o, 5000, torch.float32, "bce", 0.9),
    "in_missing_sync": lambda o: check_instance_norm_act(o, IN_CASES[0], torch.float32, "relu"),
    "in_shuffle_offset": lambda o: check_instance_norm_act(o, IN_CASES[0], torch.float32, "relu"),
    "in_grid_stride": lambda o: check_instance_norm_act(o, IN_CASES[3], torch.float32, "relu"),
    "in_split_bound": lambda o: check_instance_norm_act(o, IN_CL_SPLITS, torch.float32, "relu"),
    "in_missing_opt_in": lambda o: check_instance_norm_act(o, Case("in_window", (1, 1, 64, 96)), torch.float32,
                                                           "identity"),
    "in_shared_size": lambda o: check_instance_norm_act(o, IN_CASES[0], torch.float32, "relu"),
    "in_sample_loop": check_instance_norm_act_apply_many_samples,
    "in_old_launch": lambda o: check_instance_norm_act(o, Case("in_window", (1, 1, 96, 128)), torch.float32,
                                                       "leaky_relu"),
}


@pytest.mark.parametrize("mutant", emulation.MUTANTS, ids=lambda m: m.name)
def test_broken_kernels_fail_these_tests(emu, mutant):
    """Each mutant is a real kernel with one deliberate bug (tests/emulation.py: MUTANTS), switched on in the
    mutants' copy of its file (its own op namespace). The checks above must fail on it (a wrong value, or a fault
    the emulated GPU reports), and pass on the real kernel with the same data."""
    run = MUTANT_RUNS[mutant.name]
    state = torch.get_rng_state()
    run(emu)
    torch.set_rng_state(state)
    emulation.configure()
    with emulation.switched_on(mutant) as ops, pytest.raises((AssertionError, RuntimeError), match=mutant.expect):
        run(ops)


@pytest.mark.parametrize("dtype,plane", WINDOW, ids=str)
def test_the_launch_before_its_fix_fails_at_the_48_kib_window(emu, dtype, plane):
    """The plane kernels' launch before the fix (in_old_launch: an opt-in only past 48 KiB of dynamic shared memory)
    fails at every shape of the window, as it did on a GPU; the fixed launch passes there
    (test_instance_norm_act_plane_kernels_opt_in_at_the_48_kib_window)."""
    mutant = next(m for m in emulation.MUTANTS if m.name == "in_old_launch")
    with emulation.switched_on(mutant) as ops, pytest.raises(RuntimeError, match=mutant.expect):
        check_instance_norm_act(ops, Case("in_window", (1, 1, *plane)), dtype, "leaky_relu")


# ---------------------------------------------------------------- coverage: every kernel and launch site ran

CSRC = Path(__file__).resolve().parents[1] / "csrc"


def kernels_and_launch_sites():
    """(every __global__ function as (file, name), every PYGAN_LAUNCH as (file, line)) of csrc/, emulation aside."""
    kernels, sites = set(), set()
    for path in sorted(list(CSRC.rglob("*.cu")) + list(CSRC.rglob("*.cuh"))):
        rel = path.relative_to(CSRC).as_posix()
        if rel.startswith("emulation/"):
            continue
        text = path.read_text()
        for m in re.finditer(r"__global__\s+(?:[\w:<>,\s]+?\s)?(\w+)\s*\(", text):
            kernels.add((rel, m.group(1)))
        for n, line in enumerate(text.splitlines(), 1):
            if "PYGAN_LAUNCH(" in line:
                sites.add((rel, n))
    return kernels, sites


def test_every_kernel_and_launch_site_ran(request):
    """Every __global__ kernel of csrc/ was executed by the tests of this file, from every launch site, and
    every launch goes through PYGAN_LAUNCH (a plain <<<>>> launch cannot be emulated)."""
    plain = [p.relative_to(CSRC).as_posix() for p in CSRC.rglob("*.cu") if "<<<" in p.read_text()]
    assert not plain, f"launch kernels with PYGAN_LAUNCH (common/launch.h), not <<<>>>: {plain}"
    others = [item for item in request.session.items
              if item.module is request.module and item.name != request.node.name]
    if not set(_RAN) >= {item.name for item in others} or not others:
        pytest.skip("needs every test of this file to run first in the session")
    kernels, sites = kernels_and_launch_sites()
    assert kernels and sites
    ran_sites = {(f, line) for f, line, _ in emulation.RECORDED}
    ran_kernels = {(f, k.split("<")[0].strip()) for f, _, k in emulation.RECORDED}
    missing_kernels = sorted(kernels - ran_kernels)
    missing_sites = sorted(sites - ran_sites)
    assert not missing_kernels, f"CUDA kernels never run under emulation: {missing_kernels}"
    assert not missing_sites, f"launch sites never run under emulation: {missing_sites}"
