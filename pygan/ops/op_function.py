"""differentiable(): call a pygan operator with its autograd formula through a torch.autograd.Function.

torch.library.register_autograd makes torch.ops.pygan.* differentiable for every caller (torch.compile, opcheck,
C++), but eagerly its per-call toll dwarfs a small layer's kernel (numbers in benchmarks/README.md). pygan's Python
entry points therefore run eager calls through a plain autograd.Function that calls the kernel below autograd and
reuses the very setup_context / backward registered for the operator - one formula, two doors - and leave
torch.compile to the registered path.
"""

from __future__ import annotations

from typing import Callable

import torch

from pygan._compat import below_autograd


def differentiable(op, setup_context: Callable, backward: Callable) -> Callable:
    """op(*args) with gradients by setup_context(ctx, inputs, output) / backward(ctx, *grads) (the functions given
    to torch.library.register_autograd for `op`); all arguments positional."""

    # forward(ctx, *args) rather than a setup_context staticmethod, which makes Function.apply bind the arguments
    # with inspect.signature on every call (functorch transforms need that form; the registered path does not
    # support them either in torch 2.14).
    def forward(ctx, *args):
        with below_autograd():
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
        with below_autograd():
            return op(*args)

    return call
