"""The CUDA emulation itself (csrc/emulation/): indices, launch limits, warp shuffles and votes, atomics, shared
memory (its limits, garbage and bounds), races between blocks, and the faults it must report — through the small
kernels of csrc/emulation/harness_kernels.cpp. (That broken copies of the real kernels fail the op tests: test_emulation_ops.py::test_broken_kernels_fail_these_tests.)"""

import math

import pytest
import torch

import emulation


@pytest.fixture(autouse=True)
def _default_gpu(emu):
    emulation.configure()
    yield
    emulation.configure()


def test_indices_and_dimensions(emu):
    grid, block = (3, 2, 2), (4, 3, 2)
    out = emu.harness_indices(list(grid), list(block), 0)
    rows = {tuple(r) for r in out.tolist()}
    want = {(bx, by, bz, tx, ty, tz, *block, *grid)
            for bz in range(2) for by in range(2) for bx in range(3)
            for tz in range(2) for ty in range(3) for tx in range(4)}
    assert rows == want and out.shape[0] == len(want)


@pytest.mark.parametrize("grid,block,shared,match", [
    ((0, 1, 1), (32, 1, 1), 0, r"gridDim \(0, 1, 1\) has a zero dimension"),
    ((1, 65536, 1), (32, 1, 1), 0, "dimension y exceeds 65535"),
    ((1, 1, 65536), (1, 1, 1), 0, "dimension z exceeds 65535"),
    ((1, 1, 1), (1025, 1, 1), 0, "dimension x exceeds 1024"),
    ((1, 1, 1), (1, 1, 65), 0, "dimension z exceeds 64"),
    ((1, 1, 1), (64, 32, 1), 0, "2048 threads, more than 1024 per block"),
    ((1, 1, 1), (32, 1, 1), 48 * 1024 + 1, "49153 bytes of dynamic shared memory"),
    ((2**31 - 1, 1, 1), (1024, 1, 1), 0, "too many to emulate"),
])
def test_launch_limits_of_a_gpu(emu, grid, block, shared, match):
    with pytest.raises(RuntimeError, match=match):
        emu.harness_indices(list(grid), list(block), shared)


def test_largest_valid_launches(emu):
    assert emu.harness_indices([1, 65535, 1], [1, 1, 1], 0).shape == (65535, 12)
    assert emu.harness_indices([1, 1, 1], [1024, 1, 1], 48 * 1024).shape == (1024, 12)
    assert emu.harness_indices([1, 1, 1], [2, 8, 64], 0).shape == (1024, 12)


def expected_shuffle(x, op, arg, width):
    out = []
    for i, _ in enumerate(x):
        lane, base = i % 32, i - i % 32
        seg = lane - lane % width
        if op == "idx":
            src = seg + arg % width
        elif op == "up":
            src = lane - arg if lane % width >= arg else lane
        elif op == "down":
            src = lane + arg if lane % width + arg < width else lane
        else:
            src = lane ^ arg
            src = src if src // width <= lane // width else lane
        out.append(x[base + src])
    return out


@pytest.mark.parametrize("op,arg", [("idx", 0), ("idx", 7), ("idx", 35), ("up", 1), ("up", 5), ("down", 1),
                                    ("down", 16), ("xor", 1), ("xor", 16), ("xor", 31)])
@pytest.mark.parametrize("width", [32, 16, 8, 1])
def test_shuffles(emu, op, arg, width):
    x = torch.randint(-1000, 1000, (2 * 64,), dtype=torch.int32)
    got = emu.harness_shuffle(x, op, arg, width, 0xFFFFFFFF, 64)
    assert got.tolist() == expected_shuffle(x.tolist(), op, arg, width)


def test_shuffle_of_a_double(emu):
    x = torch.randn(96, dtype=torch.float64)
    got = emu.harness_shuffle(x, "down", 3, 32, 0xFFFFFFFF, 96)
    assert torch.equal(got, torch.tensor(expected_shuffle(x.tolist(), "down", 3, 32), dtype=torch.float64))


def test_votes_and_syncthreads_count(emu):
    pred = (torch.rand(2 * 96) < 0.5).int()
    pred[96:128] = 1  # a warp where all agree
    pred[128:160] = 0  # and one where none
    out = emu.harness_vote(pred, 96).tolist()
    p = pred.tolist()
    for i in range(len(p)):
        base = i - i % 32
        ballot = sum(p[base + k] << k for k in range(32))
        block = i - i % 96
        assert out[i] == [ballot, int(ballot != 0), int(ballot == 2**32 - 1),
                          sum(p[block:block + 96])]


def test_atomics(emu):
    f, d, i, u, mx = emu.harness_atomics(7, 96).tolist()
    assert (f, d, i, u, mx) == (7 * 96, 7 * 96, 7 * 96, 7 * 96, 7 * 96 - 1)


def test_shared_memory_is_per_block_and_a_barrier_orders_it(emu):
    x = torch.randint(-50, 50, (5 * 256,)).float()  # integers: every order of the sum is exact
    want = x.view(5, 256).sum(1)
    for order, seed in [("forward", 0), ("reverse", 0), ("shuffle", 3)]:
        emulation.configure(order=order, seed=seed)
        assert torch.equal(emu.harness_block_sum(x, True), want)


def test_a_missing_barrier_gives_wrong_results_in_some_order(emu):
    """Without __syncthreads() the tree reduction reads values before they are written; which orders show it
    depends on the kernel, hence the op tests run forward (the default), reverse and shuffled orders."""
    x = torch.randint(1, 50, (5 * 256,)).float()
    want = x.view(5, 256).sum(1)
    wrong = {}
    for order, seed in [("forward", 0), ("reverse", 0), ("shuffle", 3)]:
        emulation.configure(order=order, seed=seed)
        wrong[order] = not torch.equal(emu.harness_block_sum(x, False), want)
    assert wrong["forward"] and wrong["shuffle"]
    assert not wrong["reverse"]  # this kernel is correct by luck when the last thread runs first


def test_dynamic_shared_memory_is_garbage_then_shared(emu):
    out = emu.harness_dynamic_shared(3, 64)
    before = out[:, 0]  # read before any write: garbage, different in every thread and block
    assert before.unique().numel() == before.numel() and not (before == 0).any()
    t = torch.arange(64)
    want = torch.cat([b * 1000 + (t + 1) % 64 for b in range(3)]).float()
    assert torch.equal(out[:, 1], want)


def test_shared_memory_beyond_48_kib_needs_an_opt_in(emu):
    """As on a GPU: over 48 KiB of dynamic shared memory fails unless the kernel opted in
    (PYGAN_ALLOW_DYNAMIC_SHARED, cudaFuncSetAttribute under nvcc), and never beyond the device's opt-in maximum."""
    kib = 1024
    with pytest.raises(RuntimeError, match=r"65536 bytes of dynamic shared memory, more than the 49152 a launch may "
                                           r"use without opting in"):
        emu.harness_large_shared(64 * kib, 0)
    assert emu.harness_large_shared(64 * kib, 100 * kib).item() == 7.0
    with pytest.raises(RuntimeError, match=r"more than the 102400 this kernel instantiation opted in to"):
        emu.harness_large_shared(100 * kib + 4, 0)
    with pytest.raises(RuntimeError, match=r"invalid argument \(at most 232448 bytes\)"):
        emu.harness_large_shared(64 * kib, 228 * kib)


def test_static_shared_memory_counts_against_the_limits(emu):
    """As a GPU counts them: a kernel's static __shared__ memory (a 1 KiB tile here) and its dynamic shared memory
    together within the 48 KiB of a launch that did not opt in, and static + the opt-in within the device's
    maximum."""
    kib = 1024
    assert emu.harness_static_and_dynamic(47 * kib, 0).item() == 6.0
    with pytest.raises(RuntimeError, match=r"launch of static_and_dynamic_kernel .* failed: invalid argument: 1024 "
                                           r"bytes of static shared memory \(__shared__ tile reached last\) \+ 48129 "
                                           r"bytes of dynamic shared memory, more than the 49152"):
        emu.harness_static_and_dynamic(47 * kib + 1, 0)
    assert emu.harness_static_and_dynamic(60 * kib, 60 * kib).item() == 6.0
    with pytest.raises(RuntimeError, match=r"opt-in to 231425 bytes .* \+ 1024 bytes of static shared memory .* "
                                           r"exceed the device's 232448"):
        emu.harness_static_and_dynamic(60 * kib, 227 * kib - 1023)


def test_the_opt_in_is_per_kernel_instantiation(emu):
    """cudaFuncSetAttribute sets one instantiation's limit: typed_shared_kernel<float>'s opt-in does not let
    typed_shared_kernel<double> launch with more than 48 KiB."""
    assert emu.harness_opt_in_per_instantiation(64 * 1024, True, False) == 5.0
    with pytest.raises(RuntimeError, match=r"typed_shared_kernel<double> .* 65536 bytes of dynamic shared memory, "
                                           r"more than the 49152 a launch may use without opting in"):
        emu.harness_opt_in_per_instantiation(64 * 1024, False, True)


def test_uninitialized_shared_memory_is_garbage_in_every_block(emu):
    """Static and dynamic shared memory read before any write: garbage, not zero, and not what the previous block
    left (each block writes zeros after reading)."""
    for order in ("forward", "shuffle"):
        emulation.configure(order=order, seed=4)
        out = emu.harness_uninitialized_shared(6)
        assert (out != 0).all() and out[:, 0].unique().numel() == 6 and out[:, 1].unique().numel() == 6


@pytest.mark.parametrize("index", [16, -1, 1000])
def test_dynamic_shared_memory_is_bounds_checked(emu, index):
    emu.harness_shared_index(64, 15)  # the last float of 64 bytes
    with pytest.raises(RuntimeError, match=rf"block \(0, 0, 0\).*thread \(0, 0, 0\).*dynamic shared memory out of "
                                           rf"bounds: element {index} of 4 bytes .* outside the launch's 64 bytes"):
        emu.harness_shared_index(64, index)
    assert emu.harness_indices([1, 1, 1], [32, 1, 1], 0).shape == (32, 12)  # the runtime recovers


@pytest.mark.parametrize("order,seed", [("forward", 0), ("reverse", 0), ("shuffle", 7)])
def test_a_plain_add_where_an_atomic_is_needed_is_a_race_in_every_order(emu, order, seed):
    """Blocks run one after another here, so a plain `+=` from every block gives the right sum in every order; on a
    GPU concurrent blocks lose updates. The emulation sees every load and store of global memory (the kernels'
    -fsanitize=thread hooks) and reports the second block's access to what the first stored in the same launch."""
    emulation.configure(order=order, seed=seed)
    x = torch.randint(-50, 50, (9 * 64,)).float()
    assert emu.harness_sum_into(x, True).item() == x.sum().item()
    with pytest.raises(RuntimeError, match=r"emulated CUDA kernel sum_into_kernel .* thread \(0, 0, 0\).*data race "
                                           r"between blocks: a load of 4 bytes at 0x[0-9a-f]+, which block "
                                           r"\(\d, 0, 0\) of this launch stored to without an atomic"):
        emu.harness_sum_into(x, False)
    assert emu.harness_sum_into(x, True).item() == x.sum().item()  # a new launch: a fresh record


@pytest.mark.parametrize("kind,match", [
    ("exit_before_barrier", r"thread \(5, 0, 0\).*returned before reaching the __syncthreads\(\) at "
                            r"emulation/harness_kernels.cpp:\d+"),
    ("divergent_barrier", r"must meet at one barrier"),
    ("lane_exits_before_shuffle", r"thread \(3, 0, 0\) \(warp 0, lane 3\): returned without reaching "
                                  r"__shfl_down_sync at emulation/harness_kernels.cpp:\d+"),
    ("divergent_shuffle", r"__shfl_xor_sync at .*while lane 0 of its warp is at __shfl_down_sync"),
    ("partial_mask", r"__shfl_down_sync at .* with mask 65535: .*full mask"),
    ("bad_width", r"width 12: the width must be a power of 2"),
    ("shuffle_and_barrier", r"__syncthreads\(\) at .*while other lanes of its warp wait at __shfl_down_sync"),
    ("partial_warp", r"warp 1, which has 16 threads only \(a block of 48 threads\)"),
    ("misaligned_vector_load", r"thread \(2, 0, 0\).*misaligned address: member access within address "
                               r"0x[0-9a-f]+, which is not aligned to the 16 bytes '[\w ]*float4' needs, at "
                               r"emulation/harness_kernels.cpp"),
    ("shared_out_of_bounds", r"thread \(63, 0, 0\).*index 64 out of bounds for type 'float \[64\]' at "
                             r"emulation/harness_kernels.cpp:\d+"),
])
def test_faults_are_reported_with_block_thread_and_line(emu, kind, match):
    with pytest.raises(RuntimeError, match=match) as e:
        emu.harness_fault(kind)
    assert "emulated CUDA kernel fault_kernel" in str(e.value) and "block (0, 0, 0)" in str(e.value)
    # the runtime recovers: the next launch works
    assert emu.harness_indices([1, 1, 1], [32, 1, 1], 0).shape == (32, 12)


def test_kernels_it_cannot_build_get_a_clear_message(tmp_path):
    source = tmp_path / "x_cuda.cu"
    source.write_text("// k<<<1, 2>>>(x) in a comment is fine\nk<<<1, 32>>>(x);\n  extern __shared__ float s[];\n")
    with pytest.raises(RuntimeError) as e:
        emulation._check_emulatable([source])
    assert str(e.value).splitlines()[1:] == [
        f"  {source}:2: a <<<...>>> launch: launch with PYGAN_LAUNCH (csrc/common/launch.h)",
        f"  {source}:3: extern __shared__: declare dynamic shared memory with PYGAN_DYNAMIC_SHARED "
        "(csrc/common/launch.h)"]
    emulation._check_emulatable(emulation.kernel_sources())  # pygan's own kernels pass


def test_configure_rejects_bad_values(emu):
    with pytest.raises(RuntimeError, match="order must be"):
        emulation.configure(order="sideways")
    with pytest.raises(RuntimeError, match="sm_count must be positive"):
        emulation.configure(sm_count=0)


def test_nan_padding_catches_reads_past_the_end():
    """The op tests' inputs: a read one element past either end of the tensor gives NaN."""
    from test_emulation_ops import padded

    t = padded(torch.ones(3, 4), misaligned=True)
    base = t.storage_offset()
    flat = torch.as_strided(t, (t.numel() + 2,), (1,), base - 1)
    assert math.isnan(flat[0].item()) and math.isnan(flat[-1].item()) and flat[1:-1].eq(1).all()
    assert t.data_ptr() % 16 != 0
