"""Every private PyTorch API pygan relies on, and every stock behaviour pygan mirrors that differs between the torch
releases it supports (docs/build.md, "Supported torch versions"), in one place: when a torch release moves one, this
is the file to fix.

The private APIs are used for speed or for reading real data past a tracing mode; none changes what is computed.
"""

from __future__ import annotations

import torch
from torch._prims_common import suggest_memory_format  # noqa: F401  (re-exported: the layout an op's output keeps)
from torch._subclasses.fake_tensor import is_fake

__all__ = ["suggest_memory_format", "below_autograd", "dispatch_mode_active", "outside_dispatch_modes",
           "tracing", "has_kernel_for", "batch_norm_eps_error"]


def below_autograd():
    """A context that calls operators' kernels directly, skipping their autograd formulas (the caller provides
    the gradient through its own autograd.Function)."""
    return torch._C._AutoDispatchBelowAutograd()


def dispatch_mode_active() -> bool:
    """Whether any TorchDispatchMode (fake tensors, opcheck's cross-check, proxy tracing) is on the stack."""
    return torch._C._len_torch_dispatch_stack() != 0


def outside_dispatch_modes():
    """A context in which real tensors are read as they are, past any active dispatch mode."""
    return torch.utils._python_dispatch._disable_current_modes()


def _maybe_fake(t: torch.Tensor) -> bool:
    if type(t) is torch.Tensor or type(t) is torch.nn.Parameter:  # plain tensors (fake ones are a subclass)
        return t.device.type == "meta"
    return is_fake(t) or t.device.type == "meta"


def tracing(*tensors) -> bool:
    """True under torch.compile, fake-tensor or proxy (make_fx) tracing, or for fake/meta tensors: no data to read."""
    modes = (torch._C._TorchDispatchModeKey.FAKE, torch._C._TorchDispatchModeKey.PROXY)
    return (torch.compiler.is_compiling() or any(torch._C._get_dispatch_mode(k) is not None for k in modes)
            or any(_maybe_fake(t) for t in tensors if t is not None))


def has_kernel_for(qualified_op: str, dispatch_key: str) -> bool:
    """Whether the operator (e.g. 'pygan::bias_act') has a kernel registered for the dispatch key ('CPU', 'CUDA')."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(qualified_op, dispatch_key)


def _stock_batch_norm_allows_eps_zero_in_eval() -> bool:
    # Probed rather than keyed on a version number: the rule changed between torch 2.11 and 2.13.
    try:
        torch.nn.functional.batch_norm(torch.ones(2, 1), torch.zeros(1), torch.ones(1), training=False, eps=0.0)
    except ValueError:
        return False
    return True


_EPS_ZERO_IN_EVAL = _stock_batch_norm_allows_eps_zero_in_eval()


def batch_norm_eps_error(eps: float, training: bool) -> str | None:
    """The message of the ValueError that the installed torch's torch.nn.functional.batch_norm raises for this eps,
    or None where it accepts it. torch >= 2.13: eps > 0 in training, eps >= 0 in evaluation; torch 2.11: eps > 0
    in both modes, one message for both."""
    if not _EPS_ZERO_IN_EVAL:
        return None if eps > 0 else f"batch_norm eps must be positive, but got {eps}"
    if training and eps <= 0:
        return f"batch_norm eps must be positive during training, but got {eps}"
    if not training and eps < 0:
        return f"batch_norm eps must be non-negative, but got {eps}"
    return None
