"""The differential suite must catch layout mistakes: each mutant below re-creates one (patched into pygan's Python
layer for the test's duration) and the suite's own property, run unchanged, must find a failing example.

- batch1_grad_as_saved: the reported defect's kind (what stock batch_norm's CPU backward does): at batch 1, a
  channels_last incoming gradient read as if it had the saved tensor's strides.
- residual_as_input: instance_norm_act reads the residual with the input's strides whenever both are dense.
- grad_as_output: bias_act reads any dense incoming gradient with the saved tensor's strides.
"""

from __future__ import annotations

import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import test_differential_ops as suite
from differential import bounded


def _reinterpret(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t's memory read with like's strides (both dense, same shape): the classic layout mistake."""
    return t.as_strided(like.shape, like.stride())


def _dense(t: torch.Tensor) -> bool:
    return t.is_contiguous() or (t.dim() in (4, 5) and t.is_contiguous(
        memory_format=torch.channels_last if t.dim() == 4 else torch.channels_last_3d))


def _mutate_batch1_grad(monkeypatch):
    mod = sys.modules["pygan.ops.instance_norm_act"]
    grads = mod._grads

    def mutant(ctx, grad_y):
        saved = ctx.saved_tensors[0]
        if (grad_y is not None and grad_y.shape[0] == 1 and _dense(grad_y) and _dense(saved)
                and grad_y.stride() != saved.stride()):
            grad_y = _reinterpret(grad_y, saved)
        return grads(ctx, grad_y)

    monkeypatch.setattr(mod, "_grads", mutant)


def _mutate_residual(monkeypatch):
    mod = sys.modules["pygan.ops.instance_norm_act"]
    forward = mod._instance_norm_act

    def mutant(input, weight, bias, residual, *rest):
        if residual is not None and _dense(residual) and _dense(input) and residual.stride() != input.stride():
            residual = _reinterpret(residual, input)
        return forward(input, weight, bias, residual, *rest)

    monkeypatch.setattr(mod, "_instance_norm_act", mutant)


def _mutate_bias_act_grad(monkeypatch):
    mod = sys.modules["pygan.ops.bias_act"]
    backward = mod._backward

    def mutant(ctx, grad_y):
        saved = ctx.saved_tensors[0]
        if grad_y is not None and _dense(grad_y) and _dense(saved) and grad_y.stride() != saved.stride():
            grad_y = _reinterpret(grad_y, saved)
        return backward(ctx, grad_y)

    monkeypatch.setattr(mod, "_backward", mutant)
    # the autograd.Function holds the backward it was built with: rebuild the entry point around the mutant
    monkeypatch.setattr(mod, "_bias_act", mod.differentiable(torch.ops.pygan.bias_act.default, mod._setup_context,
                                                             mutant))


MUTANTS = {
    "batch1_grad_as_saved": (_mutate_batch1_grad, suite.InstanceNormAct(residual=False)),
    "residual_as_input": (_mutate_residual, suite.InstanceNormAct(residual=True)),
    "grad_as_output": (_mutate_bias_act_grad, suite.BiasAct()),
}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_suite_catches_mutant(name, monkeypatch):
    mutate, op = MUTANTS[name]

    @bounded(200)
    @given(data=st.data())
    def prop(data):
        suite.check_float64(op, data.draw(suite.cases(op)), double_backward=False)

    prop()  # the unmutated op passes the very same search
    mutate(monkeypatch)
    with pytest.raises(BaseException) as info:  # one failure, or a group of distinct ones
        prop()
    errors = info.value.exceptions if isinstance(info.value, BaseExceptionGroup) else (info.value,)
    assert any(isinstance(e, AssertionError) and "fused vs reference" in str(e) for e in errors), errors
