"""The suite as pytest-benchmark tests: `pytest benchmarks --benchmark-only` (quick shapes with --quick-bench)."""

import importlib

import pytest
import torch

from benchmarks import SUITES

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _params():
    for suite in SUITES:
        for case in importlib.import_module(suite).cases(DEVICE, quick=True):
            for variant, fn in case.variants.items():
                yield pytest.param(fn, id=f"{case.suite}:{case.name}:{variant}")


@pytest.mark.parametrize("fn", list(_params()))
def test_benchmark(benchmark, fn):
    fn()  # warm-up (and compilation) outside the timing
    benchmark(fn)
