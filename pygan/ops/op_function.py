"""differentiable(): call a pygan operator with its autograd formula through a torch.autograd.Function.

torch.library.register_autograd is what makes torch.ops.pygan.* differentiable for every caller (torch.compile,
opcheck, C++), but eagerly it costs a fixed toll per call that dwarfs a small layer's kernel: in torch 2.14 its
forward fills in schema defaults in time quadratic in the operator's arity (PyTorch PR #195110; ~30 us for
batch_norm_act's 10 arguments). Measured on a 2-core Xeon, batch_norm_act on a 4x8x4x4 input: 42 us per
differentiable call through the registered path, 21 us through this one, 8.5 us for the kernel alone. pygan's Python
entry points therefore run eager calls through a plain autograd.Function that calls the kernel below autograd and
reuses the very setup_context / backward registered for the operator - one formula, two doors - and leave
torch.compile to the registered path.
"""

from __future__ import annotations

from typing import Callable

import torch


def differentiable(op, setup_context: Callable, backward: Callable) -> Callable:
    """op(*args) with gradients by setup_context(ctx, inputs, output) / backward(ctx, *grads) (the functions given
    to torch.library.register_autograd for `op`); all arguments positional."""

    # forward(ctx, *args) rather than a setup_context staticmethod: with the latter, Function.apply binds the
    # arguments with inspect.signature on every call (~25 us). (functorch transforms need that form; the registered
    # path does not support them either in torch 2.14.)
    def forward(ctx, *args):
        with torch._C._AutoDispatchBelowAutograd():
            output = op(*args)
        setup_context(ctx, args, output)
        return output

    # named after the op, so that grad_fn reads e.g. batch_norm_act_functionBackward
    name = op.__name__.split(".")[0] + "_function"
    function = type(name, (torch.autograd.Function,), {"forward": staticmethod(forward),
                                                       "backward": staticmethod(backward)})

    def call(*args):
        if torch.compiler.is_compiling():
            return op(*args)
        if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            return function.apply(*args)
        # nothing to differentiate (inference, sampling, no_grad): the kernel alone - setup_context's work (the
        # recoverability check reads parameters, a host synchronisation on a GPU) would be wasted
        with torch._C._AutoDispatchBelowAutograd():
            return op(*args)

    return call
