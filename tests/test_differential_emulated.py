"""The differential suite through the CUDA kernels: the ops' forward and backward kernels, run on the CPU under the
device emulation (tests/emulation.py), with the layouts of the input, the incoming gradient and the residual drawn
independently as in tests/test_differential_ops.py, must equal the CPU kernels (which that file holds to the
float64 reference) in float64 — so the CUDA kernels' layout branches answer to the same rule."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from differential import DENSE_FORMS, GRAD_FORMS, arrange, bounded, close, describe, gradient, shapes
from pygan.ops import activations
from pygan.ops.batch_norm_act import can_recover_from_output

EPS = 1e-5


@st.composite
def cases(draw, op: str):
    instance = op.startswith("instance")
    return dict(op=op, shape=draw(shapes(min_plane=2 if instance else 1, spatial_dims=(1, 2) if instance else (0, 1, 2))),
                activation=draw(st.sampled_from(activations.NAMES)), negative_slope=draw(st.sampled_from([0.2, 0.0])),
                affine=draw(st.booleans()), training=draw(st.booleans()), saved_is_output=draw(st.booleans()),
                x_form=draw(st.sampled_from(DENSE_FORMS)), grad_form=draw(st.sampled_from(GRAD_FORMS)),
                residual_form=draw(st.sampled_from(DENSE_FORMS)), seed=draw(st.integers(0, 2**31 - 1)))


def _args(case):
    g = torch.Generator().manual_seed(case["seed"])
    shape, C = case["shape"], case["shape"][1]
    rnd = lambda *s: torch.randn(s, generator=g, dtype=torch.float64)  # noqa: E731
    x = arrange(rnd(*shape) * 1.5 + 0.3, case["x_form"])
    w = (1 + 0.3 * rnd(C)) if case["affine"] else None
    b = 0.2 * rnd(C) if case["affine"] else None
    slope = 0.05 + 0.3 * torch.rand(C, generator=g, dtype=torch.float64) if case["activation"] == "prelu" else None
    r = arrange(rnd(*shape), case["residual_form"]) if case["op"] == "instance_norm_act+residual" else None
    grad = gradient(shape, torch.float64, case["grad_form"], g)
    return x, w, b, slope, r, grad


def _saved_is_output(case, w, b, slope) -> bool:
    """The output-saving backward where drawn and where the ops would take it themselves."""
    return case["saved_is_output"] and can_recover_from_output(case["activation"], case["negative_slope"], w, b,
                                                               slope, torch.float64)


def run_op(ops, case):
    x, w, b, slope, r, grad = _args(case)
    act, neg = case["activation"], case["negative_slope"]
    if case["op"] == "bias_act":
        y = ops.bias_act(x, b, slope, act, neg)
        s_out = _saved_is_output(case, None, None, slope)
        return [y, *ops.bias_act_backward(grad, y if s_out else x, s_out, b, slope, act, neg)]
    if case["op"] == "batch_norm_act":
        C = x.shape[1]
        training = case["training"] and x.numel() // C > 1
        rm, rv = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64) * 1.5
        y, mean, invstd = ops.batch_norm_act(x, w, b, rm, rv, slope, training, EPS, act, neg)
        s_out = _saved_is_output(case, w, b, slope)
        return [y, mean, invstd, *ops.batch_norm_act_backward(grad, y if s_out else x, s_out, w, b, slope, mean,
                                                              invstd, training, act, neg)]
    y, mean, invstd = ops.instance_norm_act(x, w, b, r, slope, EPS, act, neg)
    s_out = r is None and _saved_is_output(case, w, b, slope)
    return [y, mean, invstd, *ops.instance_norm_act_backward(grad, y if s_out else x, s_out, r, w, b, slope, mean,
                                                             invstd, case["training"], act, neg)]


OPS = ["bias_act", "batch_norm_act", "instance_norm_act", "instance_norm_act+residual"]


def test_emulated_kernels_equal_cpu_kernels_in_any_layout(emu):
    for op in OPS:
        @bounded(25)
        @given(case=cases(op))
        def prop(case):
            cpu, gpu = run_op(torch.ops.pygan, case), run_op(emu, case)
            x, *_, grad = _args(case)
            what = f"{op} {case['activation']} x {describe(x)} grad {describe(grad)}"
            for i, (a, e) in enumerate(zip(gpu, cpu)):
                close(a, e, 1e-10, f"{what} [emulated CUDA vs CPU] output {i}")

        prop()
