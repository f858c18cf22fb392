"""The activation spec (pygan/ops/activations.py) and its C++ mirror (csrc/common/activation.h) agree, and the
spec's math is what PyTorch computes."""

import pytest
import torch
import torch.nn.functional as F

from pygan import _ext
from pygan.nn.convert import activation_module, activation_of
from pygan.ops import activations

FIELDS = ("name", "slope", "invertible", "output_gives_derivative")


@pytest.mark.skipif(_ext._C is None, reason="pygan._C not built")
def test_cpp_mirror_matches_the_python_table():
    cpp = [tuple(row[f] for f in FIELDS) for row in _ext._C.activation_table()]
    py = [tuple(getattr(a, f) for f in FIELDS) for a in activations.ACTIVATIONS.values()]
    assert cpp == py


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"batch_norm_act: activation must be one of 'identity', 'relu', "
                                         r"'leaky_relu', 'prelu', 'tanh', 'sigmoid', got 'gelu'"):
        activations.get("gelu", "batch_norm_act")


@pytest.mark.parametrize("name", activations.NAMES)
def test_math_matches_torch(name):
    act = activations.get(name)
    z = torch.randn(1000, dtype=torch.float64)
    z[:3] = torch.tensor([0.0, -0.0, 1e-300])
    slope = act.default_slope
    stock = activation_module(name, slope)
    if act.slope == "learned":
        stock.weight.data.fill_(slope)
    y = act.forward(z, slope)
    assert torch.equal(y, stock.double()(z))
    zr = z.clone().requires_grad_(True)
    stock.double()(zr).sum().backward()
    assert torch.equal(act.derivative(z, slope), zr.grad)
    if act.inverse is not None:
        assert torch.allclose(act.inverse(y, slope), z, rtol=1e-15, atol=0)
    assert (act.inverse is None) == (act.invertible == "never")


@pytest.mark.parametrize("name", activations.NAMES)
def test_stock_module_round_trip(name):
    act = activations.get(name)
    module = activation_module(name, 0.3)
    assert isinstance(module, act.module)
    expected = None if name == "identity" else (name, 0.3 if act.slope == "fixed" else 0.0)
    assert activation_of(module) == expected


def test_rules():
    assert activations.output_suffices("relu", 0.0) and activations.output_suffices("identity", 0.0)
    assert activations.output_suffices("leaky_relu", 0.2) and not activations.output_suffices("leaky_relu", 0.0)
    assert not activations.output_suffices("prelu", 0.25)  # its slope gradient reads z
    assert activations.invertible("prelu", True) and not activations.invertible("prelu", False)
    assert not activations.invertible("relu", True) and activations.invertible("identity", False)
    assert activation_of(F.relu) == ("relu", 0.0) and activation_of(torch.tanh) == ("tanh", 0.0)
    assert activation_of(torch.exp) is None
    # tanh / sigmoid: inverting a saturated output is inexact, so ops keep their input; the output gives act'
    assert not activations.invertible("tanh", True) and activations.output_suffices("sigmoid", 0.0)


@pytest.mark.parametrize("name", activations.NAMES)
def test_output_derivative_matches_derivative(name):
    act = activations.get(name)
    z = torch.randn(1000, dtype=torch.float64)
    slope = act.default_slope or 0.2
    if act.output_gives_derivative != "never":
        expected = act.derivative(z, slope)
        assert torch.allclose(act.output_derivative(act.forward(z, slope), slope), expected, rtol=1e-12, atol=1e-15)
