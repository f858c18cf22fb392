"""pygan.ops.sync_batch_norm_act: batch_norm_act with batch statistics over every rank of a process group.

Forward: each rank computes its per-channel count, mean and sum of squared deviations (M2) in the accumulation
dtype; one all_gather brings every rank's triple; all ranks merge them with Chan et al.'s pairwise formula
(mean = sum n_i mean_i / N, M2 = sum M2_i + n_i (mean_i - mean)^2), exact for unequal per-rank batch sizes and
stable where sum / sum-of-squares would cancel. The fused kernel then normalizes and activates with those
statistics (batch_norm_act_apply), and the running statistics get the unbiased global variance with count N.

Backward: the fused backward kernel's eval path gives, per rank, weight * invstd * dz and the per-channel sums
sum(dz) and sum(dz * x_hat); one all_reduce adds those sums over the ranks (with the gradients reaching the
global statistics, zero but in a double backward), and the input gradient is completed with them
(grad_input = weight * invstd * (dz - sum(dz) / N - x_hat * sum(dz * x_hat) / N)). Parameter gradients stay per
rank, as torch.nn.SyncBatchNorm's do: DistributedDataParallel averages them with everything else. So: one
collective per direction per layer.

Activation-only saving as in batch_norm_act: when x_hat can be recovered from the output (an invertible activation
of the table, well-conditioned weight and bias), only the output is kept for backward.

Double backward (gradient penalties such as R1 through synchronized layers): a backward that builds a graph
(create_graph=True) computes the same formula with differentiable operations and a differentiable all_reduce,
and the global mean and invstd are outputs of the autograd function, so gradients reaching them (the statistics
depend on every rank's input) are summed over the ranks and passed on: higher derivatives are those of one
process on the concatenated batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from pygan import _ext
from pygan._compat import suggest_memory_format
from pygan.ops import activations, reference
from pygan.ops.batch_norm_act import can_recover_from_output
from pygan.ops.fake_checks import check_batch_norm_args
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


class _AllReduceSum(torch.autograd.Function):
    """all_reduce(SUM) as a differentiable function: the sum over ranks is its own adjoint. (The same thing as
    torch.distributed.nn.functional.all_reduce, which is deprecated.)"""

    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        tensor = tensor.clone()
        dist.all_reduce(tensor, group=group)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        return _AllReduceSum.apply(grad.contiguous(), ctx.group), None


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
        if count == 1:
            raise ValueError(f"sync_batch_norm_act: expected more than 1 value per channel over all ranks when "
                             f"training, got input of size {tuple(input.shape)} and {count} in all")
        if count == 0:  # every rank's batch is empty: statistics as batch_norm_act's for an empty batch
            mean, var = torch.zeros_like(mean), torch.zeros_like(var)
        invstd = torch.rsqrt(var + eps)
        kernels = _has_kernel(input)
        ops = torch.ops.pygan if kernels else reference
        if running_mean is not None and count > 0:
            ops.batch_norm_update_stats(running_mean, running_var, mean, invstd, float(momentum), float(eps), count)
        y = ops.batch_norm_act_apply(input, weight, bias, mean, invstd, slope, activation, float(negative_slope))
        # The output is kept where x_hat can be recovered from it; no check where nothing needs a gradient (it
        # reads parameters: a host synchronisation on a GPU). relu keeps its input and is not offered to
        # recompute_relu_outputs, which would recompute a differentiable batch norm with this rank's statistics.
        from_output = (kernels and any(ctx.needs_input_grad)
                       and can_recover_from_output(activation, negative_slope, weight, bias, slope, input.dtype))
        ctx.save_for_backward(y if from_output else input, weight, bias, slope, mean, invstd)
        ctx.meta = (from_output, activation, float(negative_slope), group, count, kernels)
        ctx.set_materialize_grads(False)
        return y, mean, invstd

    @staticmethod
    def backward(ctx, grad_y, grad_mean, grad_invstd):
        saved, weight, bias, slope, mean, invstd = ctx.saved_tensors
        from_output, activation, negative_slope, group, count, kernels = ctx.meta
        nd, acc, C = saved.dim(), reference.acc_dtype(saved.dtype), saved.shape[1]
        # create_graph=True: everything below is built from differentiable operations (reference formulas, the
        # differentiable all_reduce); otherwise the fused kernel and a plain in-place all_reduce
        graph = torch.is_grad_enabled()
        if grad_y is None:
            grad_y = torch.zeros_like(saved)
        args = (grad_y.contiguous(memory_format=suggest_memory_format(saved)), saved, from_output, weight, bias, slope,
                mean, invstd, False, activation, negative_slope)
        ops = torch.ops.pygan if kernels and not graph else reference
        grad_eval, sum_dz_xhat, sum_dz, grad_s = ops.batch_norm_act_backward(*args)
        # the per-channel sums of every rank, added in one collective: sum(dz), sum(dz * x_hat), and the gradients
        # reaching the global statistics (none unless a double backward differentiates through them)
        pad = lambda g: g.to(acc) if g is not None else sum_dz.new_zeros(C, dtype=acc)  # noqa: E731
        local = torch.cat([sum_dz.to(acc), sum_dz_xhat.to(acc), pad(grad_mean), pad(grad_invstd)])
        if graph:
            total = _AllReduceSum.apply(local, group)
        else:
            total = local
            dist.all_reduce(total, group=group)
        a, b, g_mean, g_invstd = (total / max(count, 1)).split(C)
        # grad_input = grad_eval - scale * (a + b * x_hat) + g_mean - g_invstd * invstd^2 * x_hat, and x_hat is
        # per channel affine in a tensor u at hand: x_hat = (u - m) * k - u the input, m its mean, k invstd; or,
        # saved output, u = act^-1(y), m the bias, k 1 / weight. So grad_input = grad_eval + c0 + c1 * u.
        scale = invstd * weight.to(acc) if weight is not None else invstd
        if from_output:
            sl = reference._slope_view(activation, slope, negative_slope, nd, acc)
            u = reference.activation_inverse(saved.to(acc), activation, sl)
            m = bias.to(acc) if bias is not None else torch.zeros_like(scale)
            k = 1 / weight.to(acc) if weight is not None else torch.ones_like(scale)
        else:
            u, m, k = saved.to(acc), mean, invstd
        q = (scale * b + g_invstd * invstd * invstd) * k
        c0, c1 = g_mean - scale * a + q * m, -q
        grad_x = torch.addcmul(grad_eval.to(acc) + _view(c0, nd), _view(c1, nd), u)
        need = ctx.needs_input_grad
        return (grad_x.to(saved.dtype) if need[0] else None,
                sum_dz_xhat.to(weight.dtype) if need[1] else None,
                sum_dz.to(bias.dtype) if need[2] else None,
                grad_s if need[3] else None,
                None, None, None, None, None, None, None)


def _has_kernel(t: Tensor) -> bool:
    return all(_ext.has_kernel(op, t.device.type) for op in (OP, "batch_norm_act_apply"))


# torch.compile runs it eagerly between compiled graphs (a graph break per layer): the collectives and the host
# read of the global count (for the running variance's unbiasing) are not traceable as written.
@torch.compiler.disable
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
    activations.get(activation, "sync_batch_norm_act")
    if input.dim() < 2:
        raise ValueError(f"sync_batch_norm_act: input must have shape (N, C, *), got {tuple(input.shape)}")
    # eps; the count is checked over all ranks
    check_batch_norm_args(input.shape, True, eps, batch=False, as_stock=True)
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("sync_batch_norm_act: torch.distributed is not initialized (call "
                           "torch.distributed.init_process_group, e.g. under torchrun)")
    if not _has_kernel(input):
        _ext.fallback(OP, input.device.type)
    return _SyncBatchNormAct.apply(input, weight, bias, slope, running_mean, running_var, momentum, eps, activation,
                                   negative_slope, group)[0]
