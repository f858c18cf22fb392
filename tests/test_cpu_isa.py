"""The CPU kernels are built once per instruction set (baseline x86-64, AVX2+FMA, AVX-512; common/cpu_isa.h) and
the widest the CPU runs is picked. The rest of the suite runs that one; these tests run each narrower build in a
subprocess (PYGAN_CPU_ISA caps the pick) against the float64 reference, fp16/bf16 included."""

import os
import subprocess
import sys

import pytest
import torch

import pygan
from pygan import _ext

pytestmark = pytest.mark.skipif(_ext._C is None, reason="pygan._C not built")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECKS = """
import torch, sys, itertools
sys.path.insert(0, 'tests')
import pygan, test_batch_norm_act as bna, test_bias_act as ba
for act in bna.ACTS:
    for fmt, shape in (('contiguous', (2, 3, 33, 65)), ('channels_last', (16, 40, 3, 3)), ('contiguous', (5, 4))):
        for training in (True, False):
            bna.check_against_reference(bna.make_inputs(shape, act, torch.float32, 'cpu', fmt), act, training, 2e-5, 'cpu')
    for dtype, fmt in itertools.product((torch.float16, torch.bfloat16), ('contiguous', 'channels_last')):
        bna.test_half_precision_error_at_most_twice_stock(act, dtype, fmt, 'cpu')
    for shape, fmt in itertools.product(((2, 3, 33, 65), (16, 128, 2, 2), (5, 4)), ('contiguous', 'channels_last')):
        ba.test_matches_float64_reference('cpu', act, shape, fmt)
for dtype, fmt in itertools.product((torch.float16, torch.bfloat16), ('contiguous', 'channels_last')):
    ba.test_low_precision_within_twice_stock_error('cpu', dtype, fmt)
    ba.test_cpu_half_conversions_are_exact(dtype, fmt)
print('ran', pygan.build_info()['cpu_isa'])
"""


def run_with_isa(isa: str, code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYGAN_CPU_ISA=isa)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("isa", ["baseline", "avx2"])
def test_narrower_cpu_builds_match_reference(isa):
    if pygan.build_info()["cpu_isa"] == isa:
        pytest.skip(f"{isa} is this CPU's widest build: the rest of the suite runs it")
    if isa == "avx2" and torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("this CPU has no AVX2")
    r = run_with_isa(isa, CHECKS)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().split()[-1] == isa


def test_cpu_isa_variable_is_checked():
    code = "import torch, pygan; pygan.ops.bias_act(torch.ones(2, 3), None, 'relu')"
    r = run_with_isa("sse9", code)
    assert r.returncode != 0 and "PYGAN_CPU_ISA must be one of baseline, avx2, avx512" in r.stderr
    assert "'sse9'" in r.stderr


def test_build_info_names_the_cpu_build():
    assert pygan.build_info()["cpu_isa"] in ("baseline", "avx2", "avx512")
