"""The differential suite, ops: every fused op against its stock PyTorch twin and the float64 reference, with
everything a caller controls drawn independently — the memory form of the input, of the incoming gradient, of the
residual and of the parameters (tests/differential.py), N = 1, C = 1 / 3 / 33, planes of 1 x k, k x 1 and odd
sizes, every activation, affine or not, a weight with a zero, training or given statistics — forward, backward
(parameters and running statistics included) and double backward (gradient penalties differentiate through D's
layers), in float64; fp32 / bf16 / fp16 against the stock computation's own error.

The float64 reference (pygan.ops.reference, evaluated on contiguous copies, gradients by autograd) is the oracle
for both: the fused op must match it always; stock must match it too, except where stock PyTorch is known to be
wrong (STOCK_DEFECTS, each pinned by a test that fails once PyTorch is fixed). A failing example is printed with
its layouts (hypothesis shrinks it to the simplest one it can find).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import pygan
from pygan._compat import suggest_memory_format
from pygan.nn.convert import activation_module
from pygan.ops import activations, reference

from conftest import DEVICES
from differential import (DENSE_FORMS, GRAD_FORMS, ULP, arrange, bounded, close, describe, gradient, max_error,
                          shapes, within_stock)

ACTS = activations.NAMES
EPS, MOMENTUM = 1e-5, 0.3
TOL64 = 1e-9


# ------------------------------------------------------------------ the ops, each as fused / stock / reference


def _act(y, activation, negative_slope, slope):
    if activation == "prelu":
        return F.prelu(y, slope.to(y.dtype))  # as under autocast: an fp32 parameter, low-precision activations
    return activation_module(activation, negative_slope)(y)


def _view_c(v, nd):
    return v.reshape([1, -1] + [1] * (nd - 2))


class Op:
    """One op's three implementations over a dict of leaves (x, weight, bias, slope, residual) and fixed args."""

    name: str
    min_plane = 1
    spatial_dims = (0, 1, 2, 3)
    residual = False

    def fused(self, t, a):
        raise NotImplementedError

    def stock(self, t, a):
        raise NotImplementedError

    def reference(self, t, a):
        raise NotImplementedError


class BatchNormAct(Op):
    name = "batch_norm_act"

    def fused(self, t, a):
        return pygan.ops.batch_norm_act(t["x"], a["running_mean"], a["running_var"], t.get("weight"), t.get("bias"),
                                        a["training"], MOMENTUM, EPS, a["activation"], a["negative_slope"],
                                        t.get("slope"))

    def stock(self, t, a):
        y = F.batch_norm(t["x"], a["running_mean"], a["running_var"], t.get("weight"), t.get("bias"), a["training"],
                         MOMENTUM, EPS)
        return _act(y, a["activation"], a["negative_slope"], t.get("slope"))

    def reference(self, t, a):
        return reference.batch_norm_act(t["x"], t.get("weight"), t.get("bias"), a["running_mean"], a["running_var"],
                                        t.get("slope"), a["training"], EPS, a["activation"], a["negative_slope"])[0]


class InstanceNormAct(Op):
    name = "instance_norm_act"
    min_plane = 2
    spatial_dims = (1, 2, 3)

    def __init__(self, residual: bool):
        self.residual = residual
        self.name = "instance_norm_act" + (" + residual" if residual else "")

    def fused(self, t, a):
        return pygan.ops.instance_norm_act(t["x"], a["running_mean"], a["running_var"], t.get("weight"),
                                           t.get("bias"), a["training"], MOMENTUM, EPS, a["activation"],
                                           a["negative_slope"], t.get("slope"), t.get("residual"))

    def stock(self, t, a):
        y = F.instance_norm(t["x"], a["running_mean"], a["running_var"], t.get("weight"), t.get("bias"),
                            a["training"], MOMENTUM, EPS)
        if "residual" in t:
            y = y + t["residual"]
        return _act(y, a["activation"], a["negative_slope"], t.get("slope"))

    def reference(self, t, a):
        x = t["x"]
        if a["training"]:
            return reference.instance_norm_act(x, t.get("weight"), t.get("bias"), t.get("residual"), t.get("slope"),
                                               EPS, a["activation"], a["negative_slope"])[0]
        shape = x.shape[:2]
        mean = a["running_mean"].expand(shape)
        invstd = (a["running_var"] + EPS).rsqrt().expand(shape)
        return reference.instance_norm_act_apply(x, t.get("weight"), t.get("bias"), t.get("residual"), mean, invstd,
                                                 t.get("slope"), a["activation"], a["negative_slope"])


class BiasAct(Op):
    name = "bias_act"

    def fused(self, t, a):
        return pygan.ops.bias_act(t["x"], t.get("bias"), a["activation"], a["negative_slope"], t.get("slope"))

    def stock(self, t, a):
        x = t["x"]
        # in x's dtype, as the convolution whose epilogue this is adds its bias (an fp32 bias would promote)
        y = x + _view_c(t["bias"].to(x.dtype), x.dim()) if "bias" in t else x
        return _act(y, a["activation"], a["negative_slope"], t.get("slope"))

    def reference(self, t, a):
        return reference.bias_act(t["x"], t.get("bias"), t.get("slope"), a["activation"], a["negative_slope"])


OPS = [BatchNormAct(), InstanceNormAct(residual=False), InstanceNormAct(residual=True), BiasAct()]


# ------------------------------------------------------------------ where stock PyTorch is wrong


def stock_batch_norm_grad_strides_defect(op: Op, case: dict) -> bool:
    """Stock CPU native_batch_norm_backward misreads grad_out at batch 1 when one of input / grad_out is
    channels_last-ordered with a size-1 batch stride no allocation gives (C: what `.view` gives a channels_last
    (1, C, H, W) tensor) and the other is NCHW (test_stock_defect_is_the_batch_norm_backward_strides).
    F.instance_norm reaches it from ordinary gradients: it runs batch_norm on a (1, N * C, ...) view, so any
    incoming gradient that can be viewed so without a copy and is not NCHW-contiguous — every channels_last one at
    batch 1 — (test_stock_defect_instance_norm_batch1_channels_last_gradient). Conservatively: those forms of the
    incoming gradient (an activation's backward may hand stock a fresh, contiguous one). The same happens with a
    size-1 spatial dim's stride (N > 1): for batch_norm, cases with a size-1 dim whose input and gradient strides
    differ and are not both NCHW."""
    if case["device"] != "cpu":
        return False
    g, (N, C) = case["grad"], case["shape"][:2]
    if isinstance(op, InstanceNormAct):
        try:
            return not g.view((1, N * C) + tuple(g.shape[2:])).is_contiguous()
        except RuntimeError:  # not viewable: instance_norm copies it into NCHW
            return False
    x = case["x"]
    return (isinstance(op, BatchNormAct) and 1 in x.shape and x.stride() != g.stride()
            and not (x.is_contiguous() and g.is_contiguous()))


def stock_batch_norm_strided_weight_defect(op: Op, case: dict) -> bool:
    """Stock batch_norm's backward (CPU) reads a non-contiguous weight as if it were contiguous on its
    channels-last path (a channels_last input, or one value per channel and sample: (N, C), (N, C, 1, ...)): a
    wrong or garbage grad_input (test_stock_defect_batch_norm_strided_weight). Conservatively: any input that is
    not NCHW-contiguous."""
    channels_last_path = math.prod(case["shape"][2:]) == 1 or not case["x"].is_contiguous()
    return (isinstance(op, BatchNormAct) and case["affine"] and case["param_form"] != "contiguous"
            and channels_last_path and case["device"] == "cpu")


STOCK_DEFECTS = [stock_batch_norm_grad_strides_defect, stock_batch_norm_strided_weight_defect]


# ------------------------------------------------------------------ drawing a case


@st.composite
def cases(draw, op: Op, dtype=torch.float64, device="cpu"):
    shape = draw(shapes(min_plane=op.min_plane, spatial_dims=op.spatial_dims))
    N, C = shape[:2]
    count = N * math.prod(shape[2:])
    training = draw(st.booleans())
    if isinstance(op, BatchNormAct) and training and count < 2:
        training = False  # stock and fused refuse one value per channel in training (tested elsewhere)
    activation = draw(st.sampled_from(ACTS))
    case = dict(shape=shape, dtype=dtype, device=device, training=training, activation=activation,
                negative_slope=draw(st.sampled_from([0.2, 0.0, -0.5])),
                x_form=draw(st.sampled_from(DENSE_FORMS)), grad_form=draw(st.sampled_from(GRAD_FORMS)),
                param_form=draw(st.sampled_from(["contiguous", "sliced"])),
                residual_form=draw(st.sampled_from(DENSE_FORMS)) if op.residual else None,
                affine=isinstance(op, BiasAct) or draw(st.booleans()),
                weight_kind=draw(st.sampled_from(["random", "has_zero", "negative"])),
                slope_count=draw(st.sampled_from([1, C])), track=draw(st.booleans()),
                seed=draw(st.integers(0, 2**31 - 1)))
    if not training:
        case["track"] = True  # given statistics come from the running buffers
    return case


def build(op: Op, case: dict):
    """(leaves, args) of a case: leaves in their drawn forms, float64 values drawn from the case's seed."""
    g = torch.Generator().manual_seed(case["seed"])
    shape, C, dt, dev = case["shape"], case["shape"][1], case["dtype"], case["device"]
    # values drawn on the CPU from the seed, moved, then laid out on the device (a move would drop the layout)
    rnd = lambda *s: torch.randn(s, generator=g, dtype=torch.float64).to(dev)  # noqa: E731
    t = {"x": arrange((rnd(*shape) * 1.7 + 0.4).to(dt), case["x_form"])}
    if case["affine"]:
        w = 1 + 0.4 * rnd(C)
        if case["weight_kind"] == "has_zero":
            w[0] = 0.0
        elif case["weight_kind"] == "negative":
            w = -w
        t["weight"], t["bias"] = w, 0.3 * rnd(C)
    if case["activation"] == "prelu":
        t["slope"] = 0.05 + 0.3 * torch.rand(case["slope_count"], generator=g, dtype=torch.float64).to(dev)
    if op.residual:
        t["residual"] = arrange(rnd(*shape).to(dt), case["residual_form"])
    for k in ("weight", "bias", "slope"):
        if k in t:
            t[k] = arrange(t[k].to(torch.float32 if dt != torch.float64 else dt), case["param_form"])
    acc = torch.float64 if dt == torch.float64 else torch.float32
    a = dict(training=case["training"], activation=case["activation"], negative_slope=case["negative_slope"],
             running_mean=None, running_var=None)
    if case["track"]:
        a["running_mean"] = (0.3 * rnd(C)).to(acc)
        a["running_var"] = (0.5 + torch.rand(C, generator=g, dtype=torch.float64)).to(acc).to(dev)
    case["grad"] = gradient(shape, dt, case["grad_form"], g, dev)
    case["x"] = t["x"]
    case["second"] = {k: rnd(*v.shape) for k, v in t.items()}  # double backward's weights
    return t, a


def run(impl, op: Op, t: dict, a: dict, grad: torch.Tensor, second: dict | None = None, contiguous: bool = False):
    """Forward and backward of one implementation on fresh leaves (copies of t, re-laid-out contiguously when
    asked); returns (out, {leaf: grad}, {running buffer: value after}, second-order grads or None)."""
    leaves = {k: (v.detach().contiguous() if contiguous else _same_form(v.detach())).requires_grad_(True)
              for k, v in t.items()}
    args = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in a.items()}
    out = impl(leaves, args)
    g = grad.contiguous() if contiguous else grad
    grads = torch.autograd.grad(out, list(leaves.values()), g, create_graph=second is not None, allow_unused=True)
    first = {k: v for k, v in zip(leaves, grads)}
    running = {k: args[k] for k in ("running_mean", "running_var") if args[k] is not None}
    if second is None:
        return out.detach(), first, running, None
    total = sum((v * second[k]).sum() for k, v in first.items() if v is not None and v.requires_grad)
    if not torch.is_tensor(total):
        return out.detach(), first, running, {}
    seconds = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
    return out.detach(), first, running, {k: v for k, v in zip(leaves, seconds) if v is not None}


def _same_form(v: torch.Tensor) -> torch.Tensor:
    """A copy of v with v's exact strides (clone() would make a sliced view dense)."""
    return torch.empty_strided(v.shape, v.stride(), dtype=v.dtype, device=v.device).copy_(v)


# ------------------------------------------------------------------ the properties


def check_float64(op: Op, case: dict, double_backward: bool) -> None:
    t, a = build(op, case)
    grad, grad_before = case["grad"], case["grad"].clone()
    second = case["second"] if double_backward else None
    fused = run(op.fused, op, t, a, grad, second)
    assert torch.equal(grad, grad_before), "the fused backward wrote into the incoming gradient"
    truth = run(op.reference, op, t, a, grad, second, contiguous=True)
    what = f"{op.name} {case['activation']} x {describe(t['x'])} grad {describe(grad)} training={case['training']}"
    compare(fused, truth, what + " [fused vs reference]")
    x = t["x"]
    fmt = suggest_memory_format(x)
    if x.is_contiguous(memory_format=fmt) and x.dim() >= 4:
        assert fused[0].is_contiguous(memory_format=fmt), f"{what}: the output left the input's memory format"
    if double_backward:
        return
    stock = run(op.stock, op, t, a, grad)
    for k, v in stock[2].items():  # running statistics: the reference leaves them to the caller; stock's are exact
        close(fused[2][k], v, TOL64, f"{what} {k}")
    try:
        compare(stock, truth, what + " [stock vs reference]")
    except AssertionError:
        if not any(known(op, case) for known in STOCK_DEFECTS):
            raise


def compare(got, truth, what):
    out, grads, _, seconds = got
    t_out, t_grads, _, t_seconds = truth
    close(out, t_out, TOL64, what + " output")
    for k, v in t_grads.items():
        if v is None:
            assert grads[k] is None or grads[k].abs().max() == 0, f"{what}: grad {k} should be None or zero"
            continue
        close(grads[k], v, TOL64, f"{what} grad {k}")
    if t_seconds is not None:
        for k, v in t_seconds.items():
            close(seconds.get(k, torch.zeros_like(v)), v, TOL64, f"{what} second-order grad {k}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
@bounded(120)
@given(data=st.data())
def test_float64_forward_backward(op, device, data):
    check_float64(op, data.draw(cases(op, device=device)), double_backward=False)


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
@bounded(40)
@given(data=st.data())
def test_float64_double_backward(op, data):
    check_float64(op, data.draw(cases(op)), double_backward=True)


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
@bounded(40)
@given(data=st.data(), dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
def test_low_precision_within_twice_stock_error(op, data, dtype):
    case = data.draw(cases(op, dtype=dtype))
    t, a = build(op, case)
    grad = case["grad"]
    fused = run(op.fused, op, t, a, grad)
    stock = run(op.stock, op, t, a, grad)
    # the truth: the reference in float64 on the same (rounded) inputs and gradient
    t64 = {k: v.double() for k, v in t.items()}
    a64 = {k: (v.double() if torch.is_tensor(v) else v) for k, v in a.items()}
    truth = run(op.reference, op, t64, a64, grad.double(), contiguous=True)
    what = f"{op.name} {case['activation']} {dtype} x {describe(t['x'])} grad {describe(grad)}"
    stock_wrong = any(known(op, case) for known in STOCK_DEFECTS)
    pairs = [("output", fused[0], stock[0], truth[0])]
    pairs += [(f"grad {k}", fused[1][k], stock[1][k], v) for k, v in truth[1].items() if v is not None]
    # A normalization's input gradient is rounding noise times invstd where the exact one nearly cancels (a plane
    # of two values: exactly 0): any float computation of it errs by ulps of invstd * |grad|, stock included.
    invstd = 1.0
    if not isinstance(op, BiasAct) and case["training"]:
        dims = [0] + list(range(2, t64["x"].dim())) if isinstance(op, BatchNormAct) else list(range(2, t64["x"].dim()))
        invstd = (t64["x"].var(dims, unbiased=False) + EPS).rsqrt().max().item()
    for name, f, s, e in pairs:
        scale = e.abs().max().item() if e.numel() else 0.0
        if name == "grad x":
            scale = max(scale, invstd * grad.abs().max().item())
        elif name != "output":  # a parameter's gradient sums over the batch: rounding grows with sqrt(terms)
            scale = max(scale, math.sqrt(case["x"].numel()))
        if stock_wrong and name != "output":
            # stock is no yardstick here: a few rounding steps per sqrt(values summed)
            tol = 16 * ULP[dtype] * math.sqrt(max(1, case["x"].numel())) * max(1.0, scale)
            assert max_error(f, e) <= tol, f"{what} {name}: error {max_error(f, e):.3g} > {tol:.3g}"
            continue
        within_stock(max_error(f, e), max_error(s, e), dtype, scale, f"{what} {name}")


# ------------------------------------------------------------------ gan_loss


@st.composite
def loss_cases(draw):
    shape = draw(st.sampled_from([(1,), (1, 1), (5, 1), (1, 1, 3, 3), (2, 1, 7, 5), (3, 33)]))
    return dict(shape=shape, term=draw(st.sampled_from(reference.GAN_LOSS_TERMS)),
                target=draw(st.sampled_from([0.0, 1.0, 0.9, -1.0])), mean=draw(st.booleans()),
                form=draw(st.sampled_from(DENSE_FORMS)), grad_form=draw(st.sampled_from(["random", "scalar"])),
                scale=draw(st.sampled_from([1.0, 30.0])), seed=draw(st.integers(0, 2**31 - 1)))


@bounded(150)
@given(case=loss_cases())
def test_gan_loss_float64(case):
    g = torch.Generator().manual_seed(case["seed"])
    logits = arrange(torch.randn(case["shape"], generator=g, dtype=torch.float64) * case["scale"], case["form"])
    upstream = torch.randn((), generator=g, dtype=torch.float64) if case["grad_form"] == "random" else None
    red = "mean" if case["mean"] else "sum"

    def fused(x):
        return pygan.ops.gan_loss(x, case["term"], case["target"], red)[0]

    def stock(x):
        v = reference.gan_loss_term(x, case["term"], case["target"])
        return v.mean() if case["mean"] else v.sum()

    results = {}
    for name, fn, contiguous in (("fused", fused, False), ("stock", stock, False), ("truth", stock, True)):
        x = (logits.detach().contiguous() if contiguous else _same_form(logits)).requires_grad_(True)
        loss = fn(x)
        (gx,) = torch.autograd.grad(loss, x, upstream, create_graph=True)
        # a gradient that does not depend on the logits (the linear term) has no graph: a zero second derivative
        ggx = torch.autograd.grad((gx * gx).sum(), x, allow_unused=True)[0] if gx.requires_grad else None
        results[name] = (loss.detach(), gx.detach(), ggx)
    what = f"gan_loss {case} logits {describe(logits)}"
    for name in ("fused", "stock"):
        loss, gx, ggx = results[name]
        close(loss, results["truth"][0], TOL64, f"{what} [{name}] loss")
        close(gx, results["truth"][1], TOL64, f"{what} [{name}] grad")
        zero = torch.zeros_like(logits)
        close(zero if ggx is None else ggx, zero if results["truth"][2] is None else results["truth"][2], 1e-7,
              f"{what} [{name}] double backward")


# ------------------------------------------------------------------ the stock defect, pinned


@pytest.mark.xfail(strict=True, reason="stock PyTorch: CPU native_batch_norm_backward misreads a channels_last "
                   "grad_out whose batch-1 stride is C next to an NCHW input (reached by F.instance_norm at batch 1); "
                   "when this passes, PyTorch is fixed: drop stock_batch_norm_grad_strides_defect")
def test_stock_defect_instance_norm_batch1_channels_last_gradient():
    x = (torch.randn(1, 3, 7, 5, dtype=torch.float64) * 3 + 1).requires_grad_()
    g = torch.randn(1, 3, 7, 5, dtype=torch.float64)
    (right,) = torch.autograd.grad(F.instance_norm(x), x, g)
    (wrong,) = torch.autograd.grad(F.instance_norm(x), x, g.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(wrong, right)


def test_stock_defect_is_the_batch_norm_backward_strides():
    """The root cause, without instance_norm: the same gradient values, only a size-1 stride differs."""
    x = torch.randn(1, 3, 7, 5, dtype=torch.float64) * 3 + 1
    g = torch.randn(1, 3, 7, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    _, mean, invstd = torch.native_batch_norm(x, None, None, None, None, True, 0.1, EPS)
    grads = [torch.ops.aten.native_batch_norm_backward(gg, x, None, None, None, mean, invstd, True, EPS,
                                                      [True, False, False])[0]
             for gg in (g, g.as_strided(g.shape, (3, 1, 15, 3)))]
    torch.testing.assert_close(grads[0], reference.batch_norm_act_backward(
        g, x, False, None, None, None, mean, invstd, True, "identity", 0.0)[0])
    assert (grads[1] - grads[0]).abs().max() > 0.1  # the second call is wrong: the defect is still there


@pytest.mark.xfail(strict=True, reason="stock PyTorch: CPU batch_norm backward reads a strided weight as contiguous "
                   "when each channel has one value per sample; when this passes, drop "
                   "stock_batch_norm_strided_weight_defect")
def test_stock_defect_batch_norm_strided_weight():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([1.5, 0.0, -0.7, 0.0, 2.0], dtype=torch.float64)[::2].requires_grad_()
    g = torch.randn(4, 3, dtype=torch.float64)
    (strided,) = torch.autograd.grad(F.batch_norm(x, None, None, w, None, True), x, g)
    (dense,) = torch.autograd.grad(F.batch_norm(x, None, None, w.detach().contiguous(), None, True), x, g)
    torch.testing.assert_close(strided, dense)


def test_fused_instance_norm_matches_the_issue_reproduction():
    """The reported case: pygan against the float64 reference (stock is the wrong one there) and against stock
    given the same gradient values in NCHW."""
    x = (torch.randn(1, 3, 7, 5, dtype=torch.float64) * 3 + 1).requires_grad_()
    g = torch.randn(1, 3, 7, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    for act in ("identity", "tanh", "sigmoid"):
        (fused,) = torch.autograd.grad(pygan.ops.instance_norm_act(x, activation=act), x, g)
        (stock,) = torch.autograd.grad(activation_module(act)(F.instance_norm(x)), x, g.contiguous())
        xr = x.detach().requires_grad_()
        (ref,) = torch.autograd.grad(reference.instance_norm_act(xr, None, None, None, None, EPS, act, 0.0)[0], xr, g)
        torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(fused, stock, rtol=1e-12, atol=1e-12)
