"""pygan.ops.sync_batch_norm_act: batch_norm_act with batch statistics over every rank of a process group.

Forward: each rank computes its per-channel count, mean and sum of squared deviations (M2) in the accumulation
dtype; one all_gather brings every rank's triple; all ranks merge them with Chan et al.'s pairwise formula
(mean = sum n_i mean_i / N, M2 = sum M2_i + n_i (mean_i - mean)^2), exact for unequal per-rank batch sizes and
stable where sum / sum-of-squares would cancel. The fused kernel then normalizes and activates with those
statistics (its eval path), and the running statistics get the unbiased global variance with count N.

Backward: the fused backward kernel's eval path gives, per rank, weight * invstd * dz and the per-channel sums
sum(dz) and sum(dz * x_hat); one all_reduce adds those sums over the ranks, and the input gradient is completed
with them (grad_input = weight * invstd * (dz - sum(dz) / N - x_hat * sum(dz * x_hat) / N)). Parameter gradients
stay per rank, as torch.nn.SyncBatchNorm's do: DistributedDataParallel averages them with everything else.

So: one collective per direction per layer. Double backward (gradient penalties through a synchronized layer) is
not supported: it raises.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor
from torch._prims_common import suggest_memory_format

from pygan import _ext
from pygan.ops import reference
from pygan.ops.reference import _channel_view as _view

OP = "batch_norm_act"


def merge_statistics(counts: Tensor, means: Tensor, m2s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(N, mean, biased variance) of the union of groups given per group (R,) counts and (R, C) means and M2s
    (sums of squared deviations from the group's mean). Groups with no elements count for nothing."""
    total = counts.sum()
    w = counts[:, None]
    mean = (w * means).sum(0) / total
    m2 = (m2s + w * (means - mean) ** 2).sum(0)
    return total, mean, m2 / total


class _SyncBatchNormAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias, slope, running_mean, running_var, momentum, eps, activation,
                negative_slope, group):
        C, nd = input.shape[1], input.dim()
        acc = reference.acc_dtype(input.dtype)
        dims = [0] + list(range(2, nd))
        n = input.numel() // C
        if n > 0:
            var, mean = torch.var_mean(input.to(acc), dim=dims, correction=0)
            m2 = var * n
        else:  # an empty batch on this rank: contributes nothing
            mean, m2 = input.new_zeros(C, dtype=acc), input.new_zeros(C, dtype=acc)
        mine = torch.cat([input.new_full((1,), n, dtype=acc), mean, m2])
        world = dist.get_world_size(group)
        everyone = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(everyone, mine, group=group)
        rows = torch.stack(everyone)
        total, mean, var = merge_statistics(rows[:, 0], rows[:, 1:C + 1], rows[:, C + 1:])
        count = int(total.item())
        if count < 2:
            raise ValueError(f"sync_batch_norm_act: expected more than 1 value per channel over all ranks when "
                             f"training, got input of size {tuple(input.shape)} and {count} in all")
        invstd = torch.rsqrt(var + eps)
        ops = torch.ops.pygan if _has_kernel(input) else reference
        if running_mean is not None:
            ops.batch_norm_update_stats(running_mean, running_var, mean, invstd, float(momentum), float(eps), count)
        args = (input, weight, bias, mean, var, slope, False, float(eps), activation, float(negative_slope))
        y = ops.batch_norm_act(*args)[0]
        ctx.save_for_backward(input, weight, bias, slope, mean, invstd)
        ctx.meta = (activation, float(negative_slope), group, count)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        input, weight, bias, slope, mean, invstd = ctx.saved_tensors
        activation, negative_slope, group, count = ctx.meta
        nd, acc = input.dim(), reference.acc_dtype(input.dtype)
        args = (grad_y.contiguous(memory_format=suggest_memory_format(input)), input, False, weight, bias, slope, mean,
                invstd, False, activation, negative_slope)
        ops = torch.ops.pygan if _has_kernel(input) else reference
        grad_eval, sum_dz_xhat, sum_dz, grad_s = ops.batch_norm_act_backward(*args)
        # the two per-channel sums of every rank, added in one collective
        sums = torch.cat([sum_dz.to(acc), sum_dz_xhat.to(acc)])
        dist.all_reduce(sums, group=group)
        C = input.shape[1]
        g_mean_dz, g_mean_dz_xhat = sums[:C] / count, sums[C:] / count
        scale = invstd * (weight.to(acc) if weight is not None else 1)
        x_hat = (input.to(acc) - _view(mean, nd)) * _view(invstd, nd)
        grad_x = grad_eval.to(acc) - _view(scale, nd) * (_view(g_mean_dz, nd) + x_hat * _view(g_mean_dz_xhat, nd))
        need = ctx.needs_input_grad
        return (grad_x.to(input.dtype) if need[0] else None,
                sum_dz_xhat.to(weight.dtype) if need[1] else None,
                sum_dz.to(bias.dtype) if need[2] else None,
                grad_s if need[3] else None,
                None, None, None, None, None, None, None)


def _has_kernel(t: Tensor) -> bool:
    return _ext.has_kernel(OP, t.device.type)


def sync_batch_norm_act(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    momentum: float = 0.1,
    eps: float = 1e-5,
    activation: str = "identity",
    negative_slope: float = 0.01,
    slope: Tensor | None = None,
    group=None,
) -> Tensor:
    """batch_norm_act in training mode with the batch statistics of all ranks of `group` (default: the world).

    Every rank of the group must call it (the same layers in the same order), with any per-rank batch size,
    including 0. Needs an initialized torch.distributed process group; outside one use batch_norm_act.
    """
    if activation not in reference.ACTIVATIONS:
        raise ValueError(f"sync_batch_norm_act: activation must be one of {reference.ACTIVATIONS}, got {activation!r}")
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("sync_batch_norm_act: torch.distributed is not initialized (call "
                           "torch.distributed.init_process_group, e.g. under torchrun)")
    if input.dim() < 2:
        raise ValueError(f"sync_batch_norm_act: input must have shape (N, C, *), got {tuple(input.shape)}")
    if not _has_kernel(input):
        _ext.fallback(OP, input.device.type)
    return _SyncBatchNormAct.apply(input, weight, bias, slope, running_mean, running_var, momentum, eps, activation,
                                   negative_slope, group)
