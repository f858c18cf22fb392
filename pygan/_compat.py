"""Every private PyTorch API pygan relies on, and every stock behaviour pygan mirrors that differs between the torch
releases it supports (docs/build.md, "Supported torch versions"), in one place: when a torch release moves one, this
is the file to fix.

The private APIs are used for speed, for reading real data past a tracing mode, or to share stock modules' own
code (the normalization base classes, a convolution's forward); none changes what is computed.
tests/test_private_torch_api.py fails on a private torch API named anywhere else in pygan.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch._prims_common import suggest_memory_format  # noqa: F401  (re-exported: the layout an op's output keeps)
from torch._subclasses.fake_tensor import is_fake
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase
from torch.nn.modules.instancenorm import _InstanceNorm

__all__ = ["suggest_memory_format", "below_autograd", "dispatch_mode_active", "outside_dispatch_modes",
           "tracing", "has_kernel_for", "batch_norm_eps_error", "NormBase", "BatchNormBase", "InstanceNormBase",
           "conv_forward", "conv_transpose_output_padding", "cpu_has_native_bf16"]

# The stock normalization base classes. NormBase: every BatchNorm (its parameters, running statistics and their
# state_dict handling), the base of pygan's BatchNormAct; BatchNormBase: nn.BatchNorm{1,2,3}d (and
# nn.SyncBatchNorm); InstanceNormBase: nn.InstanceNorm{1,2,3}d, the base of pygan's InstanceNormAct.
NormBase = _NormBase
BatchNormBase = _BatchNorm
InstanceNormBase = _InstanceNorm


def conv_forward(conv: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """`conv` (an nn.Conv{1,2,3}d) applied to x with the given weight and bias, padding mode included."""
    return conv._conv_forward(x, weight, bias)


def conv_transpose_output_padding(conv: nn.Module, x: Tensor, output_size=None, num_spatial_dims: int = 2):
    """The output_padding `conv` (an nn.ConvTranspose{1,2,3}d) uses for input x (and output_size, if given)."""
    return conv._output_padding(x, output_size, conv.stride, conv.padding, conv.kernel_size, num_spatial_dims,
                                conv.dilation)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX) that oneDNN uses; False where this torch cannot
    tell."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((probe and probe()) or (amx and amx()))


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
