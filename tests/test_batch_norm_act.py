"""batch_norm_act: the kernels against the float64 reference, gradients, memory, compile, errors."""

import pytest
import torch
import torch.nn.functional as F

import pygan
from pygan import _ext
from pygan.ops import activations, batch_norm_act, reference
from pygan.ops.batch_norm_act import can_recover_from_output

from conftest import DEVICES

ACTS = activations.NAMES
SHAPES = [
    (1, 3, 5, 7),  # N=1 with H*W > 1, odd sizes
    (4, 1, 9, 9),  # C=1
    (2, 3, 33, 65),
    (16, 128, 2, 2),  # large C, small HW
    (1, 2, 101, 103),  # small C, large HW
    (5, 4),  # BatchNorm1d on (N, C)
    (3, 4, 7),  # BatchNorm1d on (N, C, L)
    (2, 3, 3, 4, 5),  # BatchNorm3d
]


def layout(x, fmt):
    if fmt == "channels_last":
        return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    if fmt == "strided":  # a non-contiguous view: every other element of a wider tensor
        wide = torch.cat([x, x], dim=-1)
        return wide[..., ::2].copy_(x)
    return x


def make_inputs(shape, activation, dtype, device, fmt="contiguous", affine=True, prelu_per_channel=True):
    C = shape[1]
    x = layout((torch.randn(shape, device=device) * 1.7 + 0.4).to(dtype), fmt)
    p = dict(x=x)
    if affine:
        p["weight"] = (1 + 0.3 * torch.randn(C, device=device))
        p["bias"] = 0.2 * torch.randn(C, device=device)
    if activation == "prelu":
        p["slope"] = 0.05 + 0.3 * torch.rand(C if prelu_per_channel else 1, device=device)
    p["running_mean"] = 0.1 * torch.randn(C, device=device)
    p["running_var"] = 0.5 + torch.rand(C, device=device)
    return p


def run(fn, p, training, activation, grad_out, momentum=0.1, eps=1e-5, negative_slope=0.2, to=None):
    """Calls fn (pygan's op, or the reference) with leaves made from p (cast to `to`); returns out, grads, stats."""
    leaves = {}
    for k, v in p.items():
        t = v.detach() if to is None else v.detach().to(to)  # detach() keeps x's strides (channels_last, strided)
        if k.startswith("running"):
            t = t.clone()  # updated in place
        else:
            t.requires_grad_(True)
        leaves[k] = t
    out = fn(leaves["x"], leaves["running_mean"], leaves["running_var"], leaves.get("weight"), leaves.get("bias"),
             training, momentum, eps, activation, negative_slope, leaves.get("slope"))
    out.backward(grad_out.to(out.dtype))
    grads = {k: leaves[k].grad for k in ("x", "weight", "bias", "slope") if k in leaves}
    return out, grads, (leaves["running_mean"], leaves["running_var"])


def reference_fn(x, rm, rv, w, b, training, momentum, eps, act, ns, slope):
    y, mean, invstd = reference.batch_norm_act(x, w, b, rm, rv, slope, training, eps, act, ns)
    if training:
        reference.batch_norm_update_stats(rm, rv, mean, invstd, momentum, eps, x.numel() // x.shape[1])
    return y


def assert_close(actual, expected, tol, what):
    actual, expected = actual.double(), expected.double()
    scale = max(1.0, expected.abs().max().item())
    err = (actual - expected).abs().max().item()
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol * scale:.3g}"


def check_against_reference(p, activation, training, tol, device):
    grad_out = torch.randn(p["x"].shape, device=device, dtype=torch.float64)
    out, grads, stats = run(batch_norm_act, p, training, activation, grad_out)
    ref_out, ref_grads, ref_stats = run(reference_fn, p, training, activation, grad_out, to=torch.float64)
    assert out.dtype == p["x"].dtype and out.shape == p["x"].shape
    assert_close(out, ref_out, tol, "output")
    for k in grads:
        assert_close(grads[k], ref_grads[k], tol, f"grad {k}")
    for s, r in zip(stats, ref_stats):
        assert_close(s, r, tol, "running stats")
    return out


def fp32_cases():
    for shape in SHAPES:
        for fmt in ("contiguous", "channels_last", "strided"):
            if fmt == "channels_last" and len(shape) < 4:
                continue
            yield shape, fmt


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("shape,fmt", list(fp32_cases()), ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else v)
def test_matches_float64_reference(shape, fmt, activation, training, device):
    p = make_inputs(shape, activation, torch.float32, device, fmt)
    out = check_against_reference(p, activation, training, 2e-5, device)
    if fmt == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last if out.dim() == 4 else torch.channels_last_3d)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_without_affine_and_shared_prelu_slope(activation, training, device):
    p = make_inputs((3, 5, 6, 7), activation, torch.float32, device, affine=False, prelu_per_channel=False)
    check_against_reference(p, activation, training, 2e-5, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ["identity", "leaky_relu", "prelu"])
def test_exact_when_weight_is_zero_or_tiny(activation, device):
    p = make_inputs((4, 3, 5, 5), activation, torch.float32, device)
    p["weight"][0] = 0.0
    p["weight"][1] = 1e-30
    assert not can_recover_from_output(activation, 0.2, p["weight"], p["bias"], p.get("slope"), torch.float32)
    check_against_reference(p, activation, True, 2e-5, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("activation", ACTS)
def test_half_precision_error_at_most_twice_stock(activation, dtype, fmt, device):
    """Error against float64 is at most 2x that of the stock modules computing in the same precision."""
    shape = (8, 16, 12, 10)
    p = make_inputs(shape, activation, dtype, device, fmt)
    grad_out = torch.randn(shape, device=device, dtype=torch.float64)

    def stock(x, rm, rv, w, b, training, momentum, eps, act, ns, slope):
        z = F.batch_norm(x, rm, rv, w, b, training, momentum, eps)
        return reference.activation_forward(z, act, slope.to(z.dtype).view(1, -1, 1, 1) if slope is not None else None, ns)

    ref = run(reference_fn, p, True, activation, grad_out, to=torch.float64)
    ours = run(batch_norm_act, p, True, activation, grad_out)
    theirs = run(stock, p, True, activation, grad_out)
    floor = torch.finfo(dtype).eps

    def err(a, b):
        return (a.double() - b.double()).abs().max().item() / max(1.0, b.abs().max().item())

    pairs = [("output", ours[0], theirs[0], ref[0])] + [(f"grad {k}", ours[1][k], theirs[1][k], ref[1][k]) for k in ours[1]]
    for what, a, s, r in pairs:
        assert err(a, r) <= 2 * err(s, r) + floor, f"{what}: pygan error {err(a, r):.3g}, stock {err(s, r):.3g}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("weights", ["regular", "with_zero"], ids=["from_output", "from_input"])
def test_gradcheck_and_gradgradcheck(activation, training, weights, device):
    C = 3
    x = torch.randn(2, C, 3, 2, dtype=torch.float64, device=device, requires_grad=True)
    w = (1 + 0.3 * torch.randn(C, dtype=torch.float64, device=device)).requires_grad_()
    if weights == "with_zero":
        w.data[1] = 0.0
    b = (0.2 * torch.randn(C, dtype=torch.float64, device=device)).requires_grad_()
    slope = (0.1 + 0.3 * torch.rand(C, dtype=torch.float64, device=device)).requires_grad_() if activation == "prelu" else None
    rm = torch.randn(C, dtype=torch.float64, device=device)
    rv = 0.5 + torch.rand(C, dtype=torch.float64, device=device)
    # Inputs away from the activation's kink, so finite differences do not straddle it.
    with torch.no_grad():
        z = reference.batch_norm_act(x, w, b, None, None, None, training, 1e-5, "identity", 0.0)[0] if training else None
        if z is not None:
            x.add_(torch.where(z.abs() < 0.05, 0.2 * torch.sign(z + 1e-3), torch.zeros_like(z)))

    def fn(x, w, b, *slope_arg):
        s = slope_arg[0] if slope_arg else None
        return batch_norm_act(x, rm.clone(), rv.clone(), w, b, training, 0.1, 1e-5, activation, 0.2, s)

    args = (x, w, b) + ((slope,) if slope is not None else ())
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-5)
    assert torch.autograd.gradgradcheck(fn, args, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ACTS)
def test_opcheck(activation, device):
    for fmt, shape in (("contiguous", (2, 3, 4, 5)), ("channels_last", (2, 3, 4, 5)), ("contiguous", (6, 3))):
        p = make_inputs(shape, activation, torch.float32, device, fmt)
        x = p["x"].requires_grad_()
        w, b = p["weight"].requires_grad_(), p["bias"].requires_grad_()
        slope = p.get("slope")
        for training in (True, False):
            args = (x, w, b, p["running_mean"], p["running_var"], slope, training, 1e-5, activation, 0.2)
            torch.library.opcheck(torch.ops.pygan.batch_norm_act.default, args)
        y, mean, invstd = torch.ops.pygan.batch_norm_act(x.detach(), w, b, None, None, slope, True, 1e-5, activation, 0.2)
        uargs = (p["running_mean"].clone(), p["running_var"].clone(), mean, invstd, 0.1, 1e-5, y.numel() // y.shape[1])
        torch.library.opcheck(torch.ops.pygan.batch_norm_update_stats.default, uargs)
        saved, from_output = ((x.detach(), False) if activations.get(activation).invertible == "never"
                              else (y.detach(), True))
        # The backward op itself is not differentiable (double backward goes through the reference): plain inputs.
        bargs = (torch.randn_like(y), saved, from_output, w.detach(), b.detach(),
                 None if slope is None else slope.detach(), mean.detach(), invstd.detach(),
                 True, activation, 0.2)
        torch.library.opcheck(torch.ops.pygan.batch_norm_act_backward.default, bargs)


def saved_storages(fn):
    """Data pointers of the tensors autograd saves while running fn()."""
    ptrs = []

    def pack(t):
        ptrs.append(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, set(ptrs)


@pytest.mark.parametrize("activation", ACTS)
def test_saves_output_not_input_when_invertible(activation):
    m = pygan.nn.BatchNormAct2d(8, activation=activation, negative_slope=0.2)
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    y, saved = saved_storages(lambda: m(x))
    x_ptr, y_ptr = x.untyped_storage().data_ptr(), y.untyped_storage().data_ptr()
    if activations.get(activation).invertible == "never":
        assert x_ptr in saved and y_ptr not in saved
    else:
        assert y_ptr in saved and x_ptr not in saved
    y.sum().backward()


def test_does_not_write_grad_output():
    p = make_inputs((3, 4, 5, 5), "leaky_relu", torch.float32, "cpu")
    y, mean, invstd = torch.ops.pygan.batch_norm_act(p["x"], p["weight"], p["bias"], None, None, None, True, 1e-5, "leaky_relu", 0.2)
    g = torch.randn_like(y)
    g0 = g.clone()
    torch.ops.pygan.batch_norm_act_backward(g, y, True, p["weight"], p["bias"], None, mean, invstd, True, "leaky_relu", 0.2)
    assert torch.equal(g, g0)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "prelu"])
def test_torch_compile_fullgraph(activation):
    torch._dynamo.reset()
    m = pygan.nn.BatchNormAct2d(6, activation=activation, negative_slope=0.2)
    ref = pygan.nn.BatchNormAct2d(6, activation=activation, negative_slope=0.2)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(3, 6, 5, 5)

    def loss(mod, x):
        y = mod(x)
        return y, (y * y).sum()

    y1, l1 = torch.compile(loss, fullgraph=True)(m, x.clone().requires_grad_())
    y2, l2 = loss(ref, x.clone().requires_grad_())
    l1.backward()
    l2.backward()
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(m.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(m.running_var, ref.running_var)


# ---------------------------------------------------------------- bad input


def call(x, w=None, b=None, rm=None, rv=None, training=True, activation="identity", slope=None):
    return batch_norm_act(x, rm, rv, w, b, training, 0.1, 1e-5, activation, 0.01, slope)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: call(torch.randn(4)), "input must have at least 2 dimensions"),
        (lambda: call(torch.randn(2, 3, 4), w=torch.ones(4)), "weight must be a 1-D tensor with 3 elements"),
        (lambda: call(torch.randn(2, 3, 4), b=torch.ones(2)), "bias must be a 1-D tensor with 3 elements"),
        (lambda: call(torch.randn(2, 3, 4), rm=torch.zeros(4), rv=torch.ones(4)), "running_mean must be a 1-D tensor with 3"),
        (lambda: call(torch.ones(2, 3, 4, dtype=torch.int64)), "input must be a floating-point tensor"),
        (lambda: call(torch.randn(1, 3)), "Expected more than 1 value per channel when training"),
        (lambda: call(torch.randn(2, 3), activation="gelu"), "activation must be one of"),
        (lambda: call(torch.randn(2, 3), activation="prelu"), "needs slope"),
        (lambda: call(torch.randn(2, 3), activation="prelu", slope=torch.ones(2)), "slope must be a 1-D tensor with 3 elements or a single"),
        (lambda: call(torch.randn(2, 3), training=False), "running_mean and running_var must be given in evaluation mode"),
        (lambda: call(torch.randn(2, 3), w=torch.ones(3, device="meta")), "weight must be on the same device as input"),
    ],
)
def test_bad_input_names_the_argument(make, match):
    with pytest.raises((RuntimeError, ValueError), match=match):
        make()


# ---------------------------------------------------------------- extension loading policy


def test_build_info_reports_kernels():
    info = pygan.build_info()
    assert info["loaded"] and info["cpu"] and info["torch_built"] == torch.__version__
    assert info["error"] is None


def test_mismatched_build_gives_one_actionable_message():
    mod, msg = _ext._load(record={"torch": "1.0.0"})
    assert mod is None and "built for torch 1.0.0" in msg and "pip install" in msg


def test_missing_kernel_falls_back_with_one_warning_or_fails_when_strict(monkeypatch):
    monkeypatch.setitem(_ext._kernel_cache, ("batch_norm_act", "cpu"), False)
    monkeypatch.setattr(_ext, "_warned", set())
    x = torch.randn(4, 3, 2, 2)
    monkeypatch.setenv("PYGAN_STRICT", "1")
    with pytest.raises(RuntimeError, match="PYGAN_STRICT"):
        call(x)
    monkeypatch.setenv("PYGAN_STRICT", "0")
    with pytest.warns(RuntimeWarning, match="using the PyTorch reference"):
        y = call(x)
    torch.testing.assert_close(y, F.batch_norm(x, None, None, training=True))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("activation", ACTS)
def test_apply_recomputes_the_training_output_bitwise(activation, dtype, device):
    p = make_inputs((3, 5, 7, 4), activation, dtype, device, "channels_last")
    args = (p["weight"], p["bias"])
    y, mean, invstd = torch.ops.pygan.batch_norm_act(p["x"], *args, None, None, p.get("slope"), True, 1e-5,
                                                     activation, 0.2)
    again = torch.ops.pygan.batch_norm_act_apply(p["x"], *args, mean, invstd, p.get("slope"), activation, 0.2)
    assert torch.equal(again, y) and again.is_contiguous(memory_format=torch.channels_last)
    ref = reference.batch_norm_act_apply(p["x"].double(), *(a.double() if a is not None else None for a in args),
                                         mean.double(), invstd.double(),
                                         p["slope"].double() if "slope" in p else None, activation, 0.2)
    torch.testing.assert_close(again.double(), ref, **({} if dtype == torch.float64 else dict(atol=2e-2, rtol=2e-2)))
    torch.library.opcheck(torch.ops.pygan.batch_norm_act_apply.default,
                          (p["x"].detach(), *(a.detach() for a in args), mean, invstd,
                           p["slope"].detach() if "slope" in p else None, activation, 0.2))
    with pytest.raises(RuntimeError, match="save_mean and save_invstd must be 1-D"):
        torch.ops.pygan.batch_norm_act_apply(p["x"], *args, mean[:-1], invstd, p.get("slope"), activation, 0.2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_backward_takes_a_float32_gradient_for_half_precision(dtype, device):
    p = make_inputs((3, 4, 5, 5), "leaky_relu", dtype, device)
    w, b = p["weight"], p["bias"]
    y, mean, invstd = torch.ops.pygan.batch_norm_act(p["x"], w, b, None, None, None, True, 1e-5, "leaky_relu", 0.2)
    g = torch.randn(y.shape, device=device)
    for saved, from_output in ((y, True), (p["x"], False)):
        args = (saved, from_output, w, b, None, mean, invstd, True, "leaky_relu", 0.2)
        got = torch.ops.pygan.batch_norm_act_backward(g, *args)  # converted to the saved dtype first, as bias_act
        want = torch.ops.pygan.batch_norm_act_backward(g.to(dtype), *args)
        for a, e in zip(got, want):
            assert torch.equal(a, e)


@pytest.mark.parametrize("device", DEVICES)
def test_prelu_slope_gradient_ignores_infinite_gradients_where_z_is_positive(device):
    # the slope's gradient term is dy * z where z <= 0 and 0 elsewhere, whatever dy (inf * 0 would give NaN)
    p = make_inputs((4, 3, 5, 5), "prelu", torch.float32, device)
    y, mean, invstd = torch.ops.pygan.batch_norm_act(p["x"], p["weight"], p["bias"], None, None, p["slope"], True,
                                                     1e-5, "prelu", 0.0)
    g = torch.where(y > 0, torch.full_like(y, float("inf")), torch.randn_like(y))
    for saved, from_output in ((y, True), (p["x"], False)):
        grads = torch.ops.pygan.batch_norm_act_backward(g, saved, from_output, p["weight"], p["bias"], p["slope"],
                                                        mean, invstd, True, "prelu", 0.0)
        ref = reference.batch_norm_act_backward(g.double(), saved.double(), from_output, p["weight"].double(),
                                                p["bias"].double(), p["slope"].double(), mean.double(),
                                                invstd.double(), True, "prelu", 0.0)
        assert torch.isfinite(grads[3]).all()
        torch.testing.assert_close(grads[3].double(), ref[3], rtol=1e-4, atol=1e-4)
    z = torch.randn(4, 3, 5, 5, device=device)
    g = torch.where(z > 0, torch.full_like(z, float("inf")), torch.randn_like(z))
    _, _, grad_slope = torch.ops.pygan.bias_act_backward(g, z, False, None, p["slope"], "prelu", 0.0)
    _, _, ref_slope = reference.bias_act_backward(g, z, False, None, p["slope"], "prelu", 0.0)
    assert torch.isfinite(grad_slope).all()
    torch.testing.assert_close(grad_slope, ref_slope, rtol=1e-4, atol=1e-4)
