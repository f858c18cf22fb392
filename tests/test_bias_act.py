"""bias_act: the kernels against the float64 reference, gradients, opcheck, compile, errors."""

import pytest
import torch

from pygan import _ext
from pygan.ops import activations, bias_act, reference

from conftest import DEVICES

ACTS = activations.NAMES
SHAPES = [(1, 3, 5, 7), (4, 1, 9, 9), (2, 3, 33, 65), (16, 128, 2, 2), (5, 4), (3, 4, 7), (2, 3, 3, 4, 5)]
LOW = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}

pytestmark = pytest.mark.skipif(_ext._C is None, reason="pygan._C not built")


def layout(x, fmt):
    if fmt == "channels_last" and x.dim() in (4, 5):
        return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    if fmt == "strided":
        return torch.cat([x, x], dim=-1)[..., ::2].copy_(x)
    return x


def make(shape, activation, dtype, device, fmt="contiguous", shared_slope=False, with_bias=True):
    C = shape[1]
    x = layout((torch.randn(shape, device=device) * 1.5).to(dtype), fmt)
    b = 0.3 * torch.randn(C, device=device) if with_bias else None
    s = (0.05 + 0.3 * torch.rand(1 if shared_slope else C, device=device)) if activation == "prelu" else None
    return x, b, s


def grads(fn, x, b, s, act, g, to=None):
    leaves = [None if t is None else (t.detach().to(to) if to else t.detach()).requires_grad_() for t in (x, b, s)]
    y = fn(leaves[0], leaves[1], act, 0.2, leaves[2])
    y.backward(g.to(y.dtype))
    return y, [None if t is None else t.grad for t in leaves]


def ref(x, b, act, ns, s):
    return reference.bias_act(x, b, s, act, ns)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last", "strided"])
def test_matches_float64_reference(device, activation, shape, fmt):
    x, b, s = make(shape, activation, torch.float32, device, fmt)
    g = torch.randn(shape, device=device)
    y, gr = grads(bias_act, x, b, s, activation, g)
    y64, gr64 = grads(ref, x, b, s, activation, g, to=torch.float64)
    torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-5)
    for a, e in zip(gr, gr64):
        if e is not None:
            torch.testing.assert_close(a.double(), e, rtol=1e-4, atol=1e-4)
    if fmt == "channels_last" and x.dim() == 4:
        assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape,fmt", [((1, 3, 256, 256), "contiguous"), ((64, 8, 4, 4), "contiguous"),
                                       ((2, 3, 64, 64), "channels_last"), ((2, 40, 9, 9), "channels_last")])
def test_generator_output_layer_reductions(device, shape, fmt):
    # tanh at an image generator's output (N = 1, C = 3): channels split over many chunks; small planes; C < 32
    # channels-last lanes
    x, b, s = make(shape, "tanh", torch.float32, device, fmt)
    g = torch.randn(shape, device=device)
    y, gr = grads(bias_act, x, b, s, "tanh", g)
    y64, gr64 = grads(ref, x, b, s, "tanh", g, to=torch.float64)
    torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gr[0].double(), gr64[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gr[1].double(), gr64[1], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
def test_low_precision_within_twice_stock_error(device, dtype, fmt):
    shape = (3, 5, 9, 11)
    for act in ("leaky_relu", "prelu"):
        x, b, s = make(shape, act, dtype, device, fmt)
        g = torch.randn(shape, device=device)
        y, gr = grads(bias_act, x, b, s, act, g)
        y64, gr64 = grads(ref, x, b, s, act, g, to=torch.float64)
        # Stock: the same math in the low dtype (x + b, then the activation, both rounded).
        bl = b.to(dtype)
        zs = x + bl.view(1, -1, 1, 1)
        stock = torch.where(zs > 0, zs, zs * (s.to(dtype).view(1, -1, 1, 1) if act == "prelu" else 0.2))
        err, stock_err = (y.double() - y64).abs().max(), (stock.double() - y64).abs().max()
        assert err <= 2 * stock_err + 1e-12
        assert y.dtype == dtype
        torch.testing.assert_close(gr[0].double(), gr64[0], rtol=LOW[dtype], atol=LOW[dtype])
        torch.testing.assert_close(gr[1].double(), gr64[1], rtol=LOW[dtype], atol=LOW[dtype] * shape[0] * 99)


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
def test_gradcheck(activation, fmt):
    x, b, s = make((2, 3, 4, 5), activation, torch.float64, "cpu", fmt)
    x = x + torch.sign(x) * 0.05  # keep away from the kink at 0 (finite differences)
    args = [t.detach().double().requires_grad_() if t is not None else None for t in (x, b, s)]
    assert torch.autograd.gradcheck(lambda x, b, s: bias_act(x, b, activation, 0.2, s), args)
    assert torch.autograd.gradgradcheck(lambda x, b, s: bias_act(x, b, activation, 0.2, s), args)


@pytest.mark.parametrize("activation", ACTS)
def test_opcheck(activation):
    x, b, s = make((2, 3, 4, 5), activation, torch.float32, "cpu")
    args = [t.requires_grad_() if t is not None else None for t in (x, b, s)]
    torch.library.opcheck(torch.ops.pygan.bias_act.default, (args[0], args[1], args[2], activation, 0.2))
    cl = args[0].detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    torch.library.opcheck(torch.ops.pygan.bias_act.default, (cl, args[1], args[2], activation, 0.2))


def test_mixed_dtype_bias_and_shared_slope():
    x, _, s = make((2, 4, 3, 3), "prelu", torch.bfloat16, "cpu", shared_slope=True)
    b = torch.randn(4, dtype=torch.float32)
    y = bias_act(x, b, "prelu", slope=s)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.double(), reference.bias_act(x.double(), b.double(), s.double(), "prelu", 0.01),
                               rtol=1e-2, atol=1e-2)
    y = bias_act(x, None, "relu")
    torch.testing.assert_close(y, torch.relu(x))


def test_compile_fullgraph():
    x, b, _ = make((2, 3, 6, 6), "leaky_relu", torch.float32, "cpu")
    xg = x.clone().requires_grad_()
    f = torch.compile(lambda x, b: bias_act(x, b, "leaky_relu", 0.2) * 2, fullgraph=True, backend="aot_eager")
    y = f(xg, b)
    y.sum().backward()
    torch.testing.assert_close(y, bias_act(x, b, "leaky_relu", 0.2) * 2)
    assert xg.grad is not None


def test_bad_input():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="activation must be one of"):
        bias_act(x, torch.zeros(3), "gelu")
    with pytest.raises(RuntimeError, match="bias must be a 1-D tensor with 3 elements"):
        bias_act(x, torch.zeros(4), "relu")
    with pytest.raises(RuntimeError, match="needs slope"):
        bias_act(x, torch.zeros(3), "prelu")
    with pytest.raises(RuntimeError, match="slope is only used with activation='prelu'"):
        bias_act(x, torch.zeros(3), "relu", slope=torch.ones(1))
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        bias_act(torch.randn(3), None, "relu")
    with pytest.raises(RuntimeError, match="floating-point"):
        bias_act(torch.ones(2, 3, dtype=torch.int64), None, "relu")


@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_half_conversions_are_exact(dtype, fmt):
    """The CPU kernels' own 16-bit loads and stores (csrc/common/element.h): every bit pattern survives
    load + store (NaNs stay NaN; x + 0 turns -0 into +0, as in IEEE), and storing a float rounds exactly as
    torch's conversion does, over random and special values and random bit patterns."""
    memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    patterns = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    x = patterns.view(dtype).reshape(1, 1, 256, 256).contiguous(memory_format=memory_format)
    y = bias_act(x, None, "identity")
    same = (y.view(torch.int16) == x.view(torch.int16)) | (y.isnan() & x.isnan()) | ((x == 0) & (y == 0))
    assert same.all()
    g = torch.Generator().manual_seed(0)
    values = torch.cat([torch.randn(1 << 14, generator=g) * s for s in (1e-9, 3e-8, 6e-5, 1e-3, 1, 1e3, 6e4, 1e38)]
                       + [torch.tensor([float("inf"), -float("inf"), float("nan"), 65504.0, 65519.99, 65520.0,
                                        2.0 ** -25, 1.5 * 2.0 ** -24, 3.3895314e38])]
                       + [torch.randint(-2 ** 31, 2 ** 31 - 1, (1 << 16,), generator=g).to(torch.int32).view(torch.float32)])
    zeros = torch.zeros(1, values.numel(), 1, 1, dtype=dtype).contiguous(memory_format=memory_format)
    ours, theirs = bias_act(zeros, values, "identity").flatten(), values.to(dtype)
    assert ((ours.view(torch.int16) == theirs.view(torch.int16)) | (ours.isnan() & theirs.isnan())).all()


@pytest.mark.parametrize("device", DEVICES)
def test_backward_honours_deterministic_mode(device):
    """The CUDA backward sums grad_bias with atomics (order varies): deterministic mode must refuse it; the CPU one
    merges in a fixed order and runs."""
    x, b, _ = make((4, 3, 5, 5), "leaky_relu", torch.float32, device)
    g = torch.randn(x.shape, device=device)
    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        call = lambda: torch.ops.pygan.bias_act_backward(g, x, False, b, None, "leaky_relu", 0.2)  # noqa: E731
        if device == "cuda":
            with pytest.raises(RuntimeError, match="bias_act_backward_cuda"):
                call()
        else:
            call()
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)
