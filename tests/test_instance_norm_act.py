"""instance_norm_act: the kernels against the float64 reference and stock InstanceNorm + activation (+ add),
gradients, opcheck, compile, modules, errors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pygan
from pygan.nn.convert import activation_module
from pygan.ops import activations, instance_norm_act, reference

from conftest import DEVICES
from test_batch_norm_act import saved_storages

ACTS = activations.NAMES
SHAPES = [
    (1, 1, 1, 2),  # N=1, C=1, a 1x2 plane
    (2, 3, 5, 7),  # odd plane
    (1, 3, 17),  # 1-d
    (3, 4, 2, 3, 5),  # 3-d
    (2, 40, 3, 3),  # more channels than a SIMD vector, small planes
]


def layout(x, fmt):
    if fmt == "channels_last":
        return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    if fmt == "strided":
        return torch.cat([x, x], dim=-1)[..., ::2].copy_(x)
    return x


def make(shape, activation, device="cpu", dtype=torch.float32, fmt="contiguous", affine=True, residual=False):
    C = shape[1]
    p = dict(x=layout((torch.randn(shape, device=device) * 1.7 + 0.4).to(dtype), fmt))
    if affine:
        p["weight"] = 1 + 0.3 * torch.randn(C, device=device)
        p["bias"] = 0.2 * torch.randn(C, device=device)
    if activation == "prelu":
        p["slope"] = 0.05 + 0.3 * torch.rand(C, device=device)
    if residual:
        p["residual"] = layout(torch.randn(shape, device=device).to(dtype), fmt)
    return p


def run(fn, p, grad_out, to=None, **kw):
    """fn(x, weight=..., ...) with leaves made from p (cast to `to`); returns out and the gradients of p's tensors."""
    leaves = {k: (v.detach() if to is None else v.detach().to(to)).requires_grad_(True) for k, v in p.items()}
    out = fn(leaves["x"], weight=leaves.get("weight"), bias=leaves.get("bias"), slope=leaves.get("slope"),
             residual=leaves.get("residual"), **kw)
    out.backward(grad_out.to(out.dtype))
    return out, {k: v.grad for k, v in leaves.items()}


def fused(x, **kw):
    return instance_norm_act(x, **kw)


def oracle(x, weight=None, bias=None, slope=None, residual=None, activation="identity", negative_slope=0.01):
    return reference.instance_norm_act(x, weight, bias, residual, slope, 1e-5, activation, negative_slope)[0]


def stock(x, weight=None, bias=None, slope=None, residual=None, activation="identity", negative_slope=0.01):
    y = F.instance_norm(x, weight=weight, bias=bias, eps=1e-5)
    if residual is not None:
        y = y + residual
    act = activation_module(activation, negative_slope, None if slope is None else nn.Parameter(slope))
    return act(y) if slope is None else F.prelu(y, slope)


def close(a, b, tol):
    assert a.shape == b.shape
    torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last", "strided"])
def test_matches_float64_reference(device, activation, shape, fmt):
    if fmt == "channels_last" and len(shape) < 4:
        fmt = "contiguous"
    for affine, residual in ((True, False), (False, True)):
        p = make(shape, activation, device, fmt=fmt, affine=affine, residual=residual)
        g = torch.randn(shape, device=device)
        kw = dict(activation=activation, negative_slope=0.2)
        y, grads = run(fused, p, g, **kw)
        y64, grads64 = run(oracle, p, g, to=torch.float64, **kw)
        close(y, y64, 1e-5)
        if fmt == "channels_last":
            assert y.is_contiguous(memory_format=torch.channels_last if y.dim() == 4 else torch.channels_last_3d)
        for k in grads64:
            close(grads[k], grads64[k], 2e-4)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "identity", "tanh", "prelu"])
def test_matches_stock_instance_norm_act_and_add(activation):
    for shape, residual in (((1, 3, 6, 5), False), ((2, 4, 7, 9), True), ((1, 1, 1, 2), True)):
        p = make(shape, activation, residual=residual)
        g = torch.randn(shape)
        kw = dict(activation=activation, negative_slope=0.2)
        y, grads = run(fused, p, g, to=torch.float64, **kw)
        ys, grads_s = run(stock, p, g, to=torch.float64, **kw)
        close(y, ys, 1e-12)
        for k in grads_s:
            close(grads[k], grads_s[k], 1e-10)


def test_large_plane_and_batch():
    # one 256x256 plane per channel (C = 3, N = 1) and a batch of 4
    for shape in ((1, 3, 256, 256), (4, 8, 64, 64)):
        p = make(shape, "relu", affine=False, residual=shape[0] == 4)
        g = torch.randn(shape)
        y, grads = run(fused, p, g, activation="relu")
        y64, grads64 = run(oracle, p, g, to=torch.float64, activation="relu")
        close(y, y64, 1e-5)
        for k in grads64:
            close(grads[k], grads64[k], 1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
def test_low_precision_within_twice_stock_error(device, dtype, fmt):
    p = make((2, 5, 9, 11), "leaky_relu", device, dtype=dtype, fmt=fmt, residual=True)
    g = torch.randn(2, 5, 9, 11, device=device).to(dtype)
    kw = dict(activation="leaky_relu", negative_slope=0.2)
    y, grads = run(fused, p, g, **kw)
    ys, grads_s = run(stock, p, g, to=dtype, **kw)
    y64, grads64 = run(oracle, p, g, to=torch.float64, **kw)
    err = lambda a, b: (a.double() - b.double()).abs().max().item()  # noqa: E731
    tiny = 1e-3 if dtype == torch.float16 else 1e-2
    assert y.dtype == dtype and err(y, y64) <= 2 * err(ys, y64) + tiny
    for k in ("x", "residual"):
        assert err(grads[k], grads64[k]) <= 2 * err(grads_s[k], grads64[k]) + tiny


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "prelu", "sigmoid"])
def test_gradcheck(activation):
    for fmt, residual in (("contiguous", False), ("channels_last", True)):
        p = make((2, 3, 3, 4), activation, dtype=torch.float64, fmt=fmt, residual=residual)
        args = {k: v.double().requires_grad_(True) for k, v in p.items()}

        def f(x, weight, bias, *rest):
            extra = dict(zip([k for k in ("slope", "residual") if k in args], rest))
            return instance_norm_act(x, weight=weight, bias=bias, activation=activation, negative_slope=0.2, **extra)

        inputs = [args["x"], args["weight"], args["bias"]] + [args[k] for k in ("slope", "residual") if k in args]
        assert torch.autograd.gradcheck(f, inputs)
        assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("activation", ["identity", "relu", "leaky_relu", "prelu", "tanh"])
def test_opcheck(activation):
    for fmt, residual in (("contiguous", False), ("channels_last", True)):
        p = make((2, 3, 4, 5), activation, fmt=fmt, residual=residual)
        x = p["x"].requires_grad_()
        w, b = p["weight"].requires_grad_(), p["bias"].requires_grad_()
        r, slope = p.get("residual"), p.get("slope")
        args = (x, w, b, r, slope, 1e-5, activation, 0.2)
        torch.library.opcheck(torch.ops.pygan.instance_norm_act.default, args)
        y, mean, invstd = torch.ops.pygan.instance_norm_act(*(a.detach() if torch.is_tensor(a) else a for a in args))
        torch.library.opcheck(torch.ops.pygan.instance_norm_act_apply.default,
                              (x, w, b, r, mean, invstd, slope, activation, 0.2))
        from_output = r is None and activations.get(activation).invertible != "never"
        bargs = (torch.randn_like(y), y if from_output else x.detach(), from_output,
                 r if activation != "identity" else None, w.detach(), b.detach(),
                 None if slope is None else slope.detach(), mean, invstd, True, activation, 0.2)
        torch.library.opcheck(torch.ops.pygan.instance_norm_act_backward.default, bargs)


def test_compile_fullgraph():
    m = pygan.nn.InstanceNormAct2d(3, affine=True, activation="leaky_relu", negative_slope=0.2)
    x, r = torch.randn(2, 3, 8, 8, requires_grad=True), torch.randn(2, 3, 8, 8)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    y = compiled(x, r)
    y.sum().backward()
    gx = x.grad.clone()
    x.grad = None
    m(x, r).sum().backward()
    close(y, m(x, r), 1e-6)
    close(gx, x.grad, 1e-5)


def test_saves_the_output_where_the_activation_is_invertible():
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    y, ptrs = saved_storages(lambda: instance_norm_act(x, activation="leaky_relu", negative_slope=0.2))
    assert y.untyped_storage().data_ptr() in ptrs and x.untyped_storage().data_ptr() not in ptrs
    y, ptrs = saved_storages(lambda: instance_norm_act(x, activation="relu"))
    assert x.untyped_storage().data_ptr() in ptrs
    r = torch.randn(2, 3, 5, 5, requires_grad=True)  # identity + residual: the residual is not kept
    y, ptrs = saved_storages(lambda: instance_norm_act(x, residual=r))
    assert r.untyped_storage().data_ptr() not in ptrs


@pytest.mark.parametrize("cls,stock_cls,shape", [
    (pygan.nn.InstanceNormAct1d, nn.InstanceNorm1d, (2, 4, 9)),
    (pygan.nn.InstanceNormAct2d, nn.InstanceNorm2d, (2, 4, 5, 6)),
    (pygan.nn.InstanceNormAct3d, nn.InstanceNorm3d, (2, 4, 3, 4, 5)),
])
@pytest.mark.parametrize("affine,track", [(False, False), (True, True)])
def test_module_as_stock(cls, stock_cls, shape, affine, track):
    m = cls(4, affine=affine, track_running_stats=track, activation="relu", momentum=0.3)
    s = stock_cls(4, affine=affine, track_running_stats=track, momentum=0.3)
    assert list(m.state_dict()) == list(s.state_dict())
    if affine:
        with torch.no_grad():
            s.weight.normal_()
            s.bias.normal_()
    m.load_state_dict(s.state_dict())
    x = torch.randn(shape) * 2 + 1
    for _ in range(2):
        close(m(x), torch.relu(s(x)), 1e-5)
    for k, v in s.state_dict().items():
        close(m.state_dict()[k], v, 1e-6)
    m.eval(), s.eval()
    close(m(x), torch.relu(s(x)), 1e-5)
    close(m(x[0]), torch.relu(s(x[0])), 1e-5)  # unbatched input
    s.load_state_dict(m.state_dict())


def test_module_prelu_and_residual():
    m = pygan.nn.InstanceNormAct2d(3, affine=True, activation="prelu", prelu_parameters=3)
    assert m.slope.shape == (3,) and "slope" in m.state_dict()
    x, r = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    expected = F.prelu(F.instance_norm(x, weight=m.weight, bias=m.bias) + r, m.slope)
    close(m(x, r), expected, 1e-5)
    assert "activation=prelu" in repr(m)


def test_bad_input():
    with pytest.raises(ValueError, match="Expected more than 1 spatial element when training"):
        instance_norm_act(torch.randn(2, 3, 1, 1))
    with pytest.raises(ValueError, match="Expected more than 1 spatial element when training"):
        pygan.nn.InstanceNormAct2d(3)(torch.randn(2, 3, 1, 1))
    with pytest.raises(RuntimeError, match="instance_norm_act: Expected more than 1 spatial element"):
        torch.ops.pygan.instance_norm_act(torch.randn(2, 3, 1), None, None, None, None, 1e-5, "relu", 0.0)
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(RuntimeError, match="weight must be a 1-D tensor with 3 elements"):
        instance_norm_act(x, weight=torch.ones(4))
    with pytest.raises(RuntimeError, match=r"residual must have input's shape \[2, 3, 4, 4\]"):
        torch.ops.pygan.instance_norm_act(x, None, None, torch.randn(2, 3, 4), None, 1e-5, "relu", 0.0)
    with pytest.raises(ValueError, match="activation must be one of"):
        instance_norm_act(x, activation="gelu")
    with pytest.raises(ValueError, match="expected 4D or 3D input|expected 3D or 4D input"):
        pygan.nn.InstanceNormAct2d(3)(torch.randn(2, 3))
    with pytest.raises(RuntimeError, match="activation='prelu' needs slope"):
        instance_norm_act(x, activation="prelu")


class _ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.InstanceNorm2d(c), nn.ReLU(True),
                                  nn.Conv2d(c, c, 3, padding=1))
        self.norm = nn.InstanceNorm2d(c, affine=True)

    def forward(self, x):
        return x + self.norm(self.body(x))


def test_fuse_instance_norm_activation_and_residual():
    model = nn.Sequential(_ResBlock(4), nn.Conv2d(4, 4, 1), nn.InstanceNorm2d(4), nn.LeakyReLU(0.2)).eval().train()
    x = torch.randn(2, 4, 8, 8)
    fused_model, done = pygan.fuse(model, report=True)
    assert any("InstanceNormAct2d(relu)" in d for d in done)
    assert any("InstanceNormAct2d(leaky_relu)" in d for d in done)
    assert any("add" in d and "InstanceNormAct2d(identity)" in d for d in done)
    assert fused_model.state_dict().keys() == model.state_dict().keys()
    close(fused_model(x), model(x), 1e-5)
