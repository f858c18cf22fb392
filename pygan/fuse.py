"""pygan.fuse(model): stock BatchNorm + activation pairs run through the fused op; pygan.fold_bn(model): BatchNorm
folded into the preceding convolutions for inference.

fuse keeps every state_dict key and value: a BatchNorm{1,2,3}d followed by an activation of the table
(pygan/ops/activations.py: its stock module, or one of its functions) becomes the matching pygan.nn.BatchNormAct
(same parameters and buffers, same name) and the activation an nn.Identity (when it has no parameters). A learned
slope (PReLU's) must keep its key (`<prelu>.weight`): in a Sequential the PReLU becomes a SlopeOwner, an identity
that still owns that parameter, and the fused module reads its slope from there; in a
traced model the PReLU stays, uncalled, as the owner. It rewrites nn.Sequential containers in place of their
children (module types elsewhere are kept), then, for pairs it could not reach that way, models whose forward
torch.fx can trace (the result is then an fx.GraphModule).

InstanceNorm{1,2,3}d followed by an activation (not one with a learned slope) becomes pygan.nn.InstanceNormAct the
same way; in a traced model, an InstanceNorm whose output is added to another tensor (`norm(x) + r`, a ResNet
block's second half), optionally followed by an activation, becomes one fused call with the residual.
"""

from __future__ import annotations

import copy
import operator

import torch
from torch import fx, nn

from pygan.ops import activations
from pygan.nn.batch_norm_act import BatchNormAct2d, SlopeOwner, _BatchNormAct
from pygan.nn.conv_bn_act import _ConvBNAct, fold_into_conv
from pygan.nn.instance_norm_act import _InstanceNormAct
from pygan.nn.convert import (FUSED_FOR, FUSED_INSTANCE_FOR, activation_module, activation_of, fused_batch_norm,
                              fused_instance_norm)


def _learned_slope(spec) -> bool:
    """Whether the activation of (activation, negative_slope) has a learned slope (its module owns the parameter)."""
    return activations.get(spec[0]).learned_slope


def _slope_fits(act, bn) -> bool:
    """A PReLU's slope count must be 1 or the BatchNorm's features (else the stock model fails: leave it alone)."""
    return not isinstance(act, nn.PReLU) or act.weight.numel() in (1, bn.num_features)


def _fuse_sequentials(model: nn.Module, prefix: str, done: list[str]) -> None:
    for name, child in model.named_children():
        _fuse_sequentials(child, f"{prefix}{name}.", done)
    if not isinstance(model, nn.Sequential):
        return
    keys = list(model._modules)
    for a, b in zip(keys, keys[1:]):
        bn, act = model._modules[a], model._modules[b]
        spec = activation_of(act)
        if type(bn) in FUSED_FOR and spec is not None and _slope_fits(act, bn):
            owner = SlopeOwner(act.weight) if _learned_slope(spec) else None
            model._modules[a] = fused_batch_norm(bn, *spec, slope_owner=owner)
            model._modules[b] = owner if owner is not None else nn.Identity()
            done.append(f"{prefix}{a} + {prefix}{b} -> {type(model._modules[a]).__name__}({spec[0]})")
        elif type(bn) in FUSED_INSTANCE_FOR and spec is not None and not _learned_slope(spec):
            model._modules[a] = fused_instance_norm(bn, *spec)
            model._modules[b] = nn.Identity()
            done.append(f"{prefix}{a} + {prefix}{b} -> {type(model._modules[a]).__name__}({spec[0]})")


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with pygan's fused modules as leaves (their forward checks the input's rank in Python)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (_BatchNormAct, _InstanceNormAct)) or super().is_leaf_module(m, qualname)


def _fuse_traced(model: nn.Module, done: list[str]) -> nn.Module:
    gm = fx.GraphModule(model, _Tracer().trace(model), type(model).__name__)
    modules = dict(gm.named_modules())
    changed = _fuse_instance_norms(gm, modules, done)
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or type(modules.get(node.target)) not in FUSED_FOR or len(node.users) != 1:
            continue
        user = next(iter(node.users))
        act = modules.get(user.target) if user.op == "call_module" else user.target if user.op == "call_function" else None
        spec = activation_of(act) if act is not None else None
        if (spec is None or (user.op == "call_function" and (len(user.args) != 1 or user.kwargs))
                or not _slope_fits(act, modules[node.target])):
            continue
        parent, _, leaf = node.target.rpartition(".")
        # A fused PReLU stays in the model, no longer called, as the owner of the slope under its key.
        fused = fused_batch_norm(modules[node.target], *spec, slope_owner=act if _learned_slope(spec) else None)
        setattr(gm.get_submodule(parent) if parent else gm, leaf, fused)
        user.replace_all_uses_with(node)
        gm.graph.erase_node(user)
        done.append(f"{node.target} + {user.target if user.op == 'call_module' else user.target.__name__} -> "
                    f"{type(fused).__name__}({spec[0]})")
        changed = True
    if changed:
        gm.graph.lint()
        gm.recompile()
    return gm if changed else model


_ADDS = (operator.add, torch.add)


def _activation_user(node, modules):
    """(user node, (activation, negative_slope)) when `node`'s only user is an activation applied to it alone."""
    if len(node.users) != 1:
        return None
    user = next(iter(node.users))
    act = modules.get(user.target) if user.op == "call_module" else user.target if user.op == "call_function" else None
    spec = activation_of(act) if act is not None else None
    if spec is None or _learned_slope(spec) or (user.op == "call_function" and (len(user.args) != 1 or user.kwargs)):
        return None
    return user, spec


def _fuse_instance_norms(gm, modules, done: list[str]) -> bool:
    """InstanceNorm [+ residual add] [+ activation] in a traced graph -> one InstanceNormAct call."""
    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or type(modules.get(node.target)) not in FUSED_INSTANCE_FOR or len(node.users) != 1:
            continue
        parts, last, residual = [node.target], node, None
        add = next(iter(node.users))
        if (add.op == "call_function" and add.target in _ADDS and len(add.args) == 2 and not add.kwargs
                and isinstance(add.args[1 - add.args.index(node)], fx.Node) and add.args[0] is not add.args[1]):
            residual, last = add.args[1 - add.args.index(node)], add
            parts.append("add")
        found = _activation_user(last, modules)
        spec = found[1] if found else ("identity", 0.0)
        if found:
            parts.append(found[0].target if found[0].op == "call_module" else found[0].target.__name__)
        if len(parts) == 1:
            continue
        fused = fused_instance_norm(modules[node.target], *spec)
        parent, _, leaf = node.target.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, leaf, fused)
        end = found[0] if found else last
        with gm.graph.inserting_before(end):
            call = gm.graph.call_module(node.target, (node.args[0], residual) if residual is not None else node.args,
                                        node.kwargs)
        end.replace_all_uses_with(call)
        for dead in ([found[0]] if found else []) + ([add] if residual is not None else []) + [node]:
            gm.graph.erase_node(dead)
        done.append(f"{' + '.join(map(str, parts))} -> {type(fused).__name__}({spec[0]})")
        changed = True
    return changed


def fuse(model: nn.Module, report: bool = False):
    """A copy of `model` in which every BatchNorm followed by an activation of the spec (pygan/ops/activations.py)
    and every InstanceNorm followed by one (without a learned slope) or by a residual add runs through pygan's fused
    ops, with the same state_dict keys and values (checkpoints load both ways). With report=True, returns (model,
    list of what was fused)."""
    model = copy.deepcopy(model)
    done: list[str] = []
    _fuse_sequentials(model, "", done)
    remaining = [m for m in model.modules() if type(m) in FUSED_FOR or type(m) in FUSED_INSTANCE_FOR]
    if remaining:
        try:
            model = _fuse_traced(model, done)
        except Exception:  # noqa: BLE001 - forward not traceable by torch.fx: keep what the Sequential pass did
            pass
    return (model, done) if report else model


def fold_bn(model: nn.Module) -> nn.Module:
    """An inference copy (eval mode) of `model` with BatchNorm folded into the convolution before it: in
    nn.Sequential containers (Conv/ConvTranspose followed by BatchNorm or BatchNormAct) and pygan's conv blocks.
    The folded BatchNorm becomes its activation (or nn.Identity)."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        _fold(model)
    return model


def _activation_module(bn) -> nn.Module:
    if isinstance(bn, _BatchNormAct):
        return activation_module(bn.activation, bn.negative_slope, bn.slope)
    return nn.Identity()


def _folded_conv(conv: nn.Module, bn) -> nn.Module:
    weight, bias = fold_into_conv(conv, bn)
    out = copy.deepcopy(conv)
    out.weight = nn.Parameter(weight.detach().clone())
    out.bias = nn.Parameter(bias.detach().clone())
    return out


def _fold(model: nn.Module) -> None:
    for name, child in list(model.named_children()):
        if isinstance(child, _ConvBNAct) and child.bn.running_mean is not None:
            model._modules[name] = nn.Sequential(_folded_conv(child.conv, child.bn), _activation_module(child.bn))
        else:
            _fold(child)
    if isinstance(model, nn.Sequential):
        keys = list(model._modules)
        for a, b in zip(keys, keys[1:]):
            conv, bn = model._modules[a], model._modules[b]
            if (isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, (nn.BatchNorm2d, BatchNormAct2d))
                    and bn.running_mean is not None and conv.out_channels == bn.num_features):
                model._modules[a] = _folded_conv(conv, bn)
                model._modules[b] = _activation_module(bn)
