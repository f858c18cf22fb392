"""Module modes for a stretch of code, restored however it ends."""

from __future__ import annotations

import contextlib

from torch import nn


@contextlib.contextmanager
def frozen(*modules: nn.Module):
    """The modules' parameters need no gradient inside (e.g. D while G steps: G's loss needs D's input gradient
    only); `requires_grad` is True again afterwards."""
    for m in modules:
        m.requires_grad_(False)
    try:
        yield
    finally:
        for m in modules:
            m.requires_grad_(True)


@contextlib.contextmanager
def eval_mode(*modules: nn.Module):
    """The modules in eval mode inside; each back in the mode it had afterwards."""
    was = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, t in zip(modules, was):
            m.train(t)
