"""THE activation spec: every activation the fused ops offer, and what each one allows.

One table, read by argument validation (at the public entry of each op and module), the reference, the fake
checks and the rules for what backward may save. Its C++ mirror is csrc/common/activation.h
(`pygan._C.activation_table()`); tests/test_activations.py asserts the two agree. Adding an activation touches
this table, that header and the tests — nothing else.

Fields of an entry:
  forward(z, slope), derivative(z, slope)  the math (slope: the negative slope as a number or a broadcastable
                                           tensor; ignored when `slope` is "none"); at z == 0 the derivative takes
                                           the negative branch's value, as PyTorch's kernels do
  inverse(y, slope)                        z from y = act(z), where `invertible` allows it; else None
  output_derivative(y, slope)              act'(z) from y = act(z), where `output_gives_derivative` allows it
  slope                                    "none"; "fixed" (a float `negative_slope` argument); "learned" (a slope
                                           tensor of 1 or C values, a parameter of the module)
  invertible                               "always" | "never" | "positive_slope": z is recoverable from y
  output_gives_derivative                  "always" | "never" | "positive_slope": act'(z) follows from y alone
                                           (its sign is z's)
  default_slope                            the module default of negative_slope / the initial learned slope
  module, functions                        the stock torch.nn module class and functions computing it (pygan.fuse
                                           recognises them; pygan.nn.convert builds the module back)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable
    derivative: Callable
    inverse: Callable | None
    output_derivative: Callable | None
    slope: str
    invertible: str
    output_gives_derivative: str
    module: type
    functions: tuple = ()
    default_slope: float = 0.0

    @property
    def learned_slope(self) -> bool:
        """The slope is a tensor of 1 or C values, a parameter of the module (not a float argument)."""
        return self.slope == "learned"


def _sloped_derivative(z: Tensor, slope) -> Tensor:
    return torch.where(z > 0, torch.ones_like(z), torch.zeros_like(z) + slope)


def _sloped_inverse(y: Tensor, slope) -> Tensor:
    return torch.where(y > 0, y, y / slope)


def _tanh_d(y: Tensor, slope=None) -> Tensor:
    """1 - y^2 from y = tanh(z), computed as PyTorch's tanh backward (bitwise) and differentiable."""
    return torch.ops.aten.tanh_backward(torch.ones_like(y), y)


def _sigmoid_d(y: Tensor, slope=None) -> Tensor:
    """(1 - y) * y from y = sigmoid(z), as PyTorch's sigmoid backward."""
    return torch.ops.aten.sigmoid_backward(torch.ones_like(y), y)


_TABLE = (
    Activation("identity", lambda z, s: z, lambda z, s: torch.ones_like(z), lambda y, s: y,
               lambda y, s: torch.ones_like(y), slope="none", invertible="always", output_gives_derivative="always", module=nn.Identity),
    Activation("relu", lambda z, s: torch.relu(z), lambda z, s: (z > 0).to(z.dtype), None,
               lambda y, s: (y > 0).to(y.dtype), slope="none", invertible="never", output_gives_derivative="always", module=nn.ReLU,
               functions=(torch.relu, F.relu)),
    Activation("leaky_relu", lambda z, s: F.leaky_relu(z, s), _sloped_derivative, _sloped_inverse,
               _sloped_derivative, slope="fixed", invertible="positive_slope", output_gives_derivative="positive_slope",
               module=nn.LeakyReLU, default_slope=0.01),
    Activation("prelu", lambda z, s: torch.where(z > 0, z, z * s), _sloped_derivative, _sloped_inverse,
               _sloped_derivative, slope="learned", invertible="positive_slope",
               output_gives_derivative="positive_slope", module=nn.PReLU, default_slope=0.25),
    # Invertible in exact arithmetic, but z recovered from a saturated output is inexact: "never", so ops keep
    # their input; the derivative follows from the output alone (as PyTorch's own backward computes it).
    Activation("tanh", lambda z, s: torch.tanh(z), lambda z, s: _tanh_d(torch.tanh(z)), None,
               _tanh_d, slope="none", invertible="never", output_gives_derivative="always",
               module=nn.Tanh, functions=(torch.tanh, F.tanh)),
    Activation("sigmoid", lambda z, s: torch.sigmoid(z), lambda z, s: _sigmoid_d(torch.sigmoid(z)), None,
               _sigmoid_d, slope="none", invertible="never", output_gives_derivative="always",
               module=nn.Sigmoid, functions=(torch.sigmoid, F.sigmoid)),
)

ACTIVATIONS: dict[str, Activation] = {a.name: a for a in _TABLE}
NAMES: tuple[str, ...] = tuple(ACTIVATIONS)


def learned_slope_names() -> str:
    """The quoted names of the entries with a learned slope, joined by " or " (as the C++ messages list them)."""
    return " or ".join(f"'{a.name}'" for a in _TABLE if a.learned_slope)


def get(name: str, where: str = "activation") -> Activation:
    """The entry for `name`; a ValueError naming `where` and the choices otherwise."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"{where}: activation must be one of {', '.join(map(repr, NAMES))}, got {name!r}") from None


def _holds(rule: str, positive_slope: bool) -> bool:
    return rule == "always" or (rule == "positive_slope" and positive_slope)


def invertible(name: str, positive_slope: bool) -> bool:
    """Whether z can be recovered from y = act(z) (positive_slope: every slope in use is > 0)."""
    return _holds(ACTIVATIONS[name].invertible, positive_slope)


def output_suffices(name: str, negative_slope: float) -> bool:
    """Whether backward needs only the output y (not the input): act'(z) follows from y and no learned slope needs
    z's value (a learned slope's gradient reads z itself)."""
    act = ACTIVATIONS[name]
    return not act.learned_slope and _holds(act.output_gives_derivative, negative_slope > 0)
