"""The benchmark runner's bookkeeping (no timing asserted): case selection and order, the GPU bandwidth columns."""

import pytest

from benchmarks.__main__ import select
from benchmarks.core import Case, annotate, bandwidth_cell, table


def _case(suite, name, min_bytes=None):
    return Case(suite, name, {"stock eager": lambda: None, "pygan": lambda: None}, min_bytes=min_bytes)


def test_filter_alternatives_select_and_order_cases():
    cases = [_case("bn_act", "fwd relu"), _case("dcgan", "iteration batch 128 bf16"), _case("gan_loss", "D step"),
             _case("bn_act", "fwd+bwd leaky_relu")]
    names = lambda cs: [c.name for c in cs]  # noqa: E731
    assert names(select(cases, "")) == names(cases)
    assert names(select(cases, "bn_act")) == ["fwd relu", "fwd+bwd leaky_relu"]
    assert names(select(cases, "dcgan|fwd+bwd")) == ["iteration batch 128 bf16", "fwd+bwd leaky_relu"]
    assert names(select(cases, "gan_loss|")) == ["D step", "fwd relu", "iteration batch 128 bf16", "fwd+bwd leaky_relu"]


def test_bandwidth_fraction_and_l2_marking():
    env = {"copy_bandwidth_Bps": 4e12, "l2_bytes": 60 << 20}
    results = {"stock eager": {"median_s": 1e-3, "iqr_s": 0.0}, "pygan": {"median_s": 5e-4, "iqr_s": 0.0}}
    big = annotate({"suite": "bn_act", "case": "big", "min_bytes": int(1.6e9), "results": results}, env)
    assert abs(big["results"]["pygan"]["bandwidth_fraction"] - 0.8) < 1e-12 and not big["l2_resident"]
    assert bandwidth_cell(big, "pygan") == "80%" and bandwidth_cell(big, "stock eager") == "40%"
    small = annotate({"suite": "bn_act", "case": "small", "min_bytes": 1 << 20,
                      "results": {"pygan": {"median_s": 1e-6, "iqr_s": 0.0}}}, env)
    assert small["l2_resident"] and bandwidth_cell(small, "pygan").endswith("(L2-resident)")
    assert "80%" in table([big])
    cpu = annotate({"suite": "x", "case": "y", "min_bytes": 10, "results": {"pygan": {"median_s": 1.0}}}, {})
    assert "bandwidth_fraction" not in cpu["results"]["pygan"] and bandwidth_cell(cpu, "pygan") == "–"


def test_max_autotune_variant_only_on_a_gpu_when_asked(monkeypatch):
    from benchmarks import core

    made = lambda compile_: ("closure", compile_)  # noqa: E731
    assert core.max_autotune("cuda", made) == {}
    monkeypatch.setitem(core.OPTIONS, "autotune", True)
    assert core.max_autotune("cpu", made) == {}
    (name, (tag, compile_)), = core.max_autotune("cuda", made).items()
    assert name == core.STOCK_AUTOTUNE and tag == "closure" and callable(compile_)


def test_report_adds_gpu_columns(tmp_path):
    import json

    from benchmarks.report import summary

    res = {"stock eager": {"median_s": 2e-3}, "stock compile": {"median_s": 1e-3},
           "stock compile max-autotune": {"median_s": 8e-4}, "pygan": {"median_s": 5e-4, "bandwidth_fraction": 0.8}}
    env = {"date": "2026-12-02T00:00:00", "torch": "x", "device": "cuda", "commit": "abc", "gpu": "NVIDIA H200",
           "cpu": "x", "cpu_threads": 16, "copy_bandwidth_Bps": 4.3e12, "l2_bytes": 60 << 20}
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"environment": env, "rows": [{"suite": "bn_act", "case": "c", "min_bytes": 1,
                                                              "results": res}]}))
    text = summary(str(path))
    assert "NVIDIA H200" in text and "4.30 TB/s" in text and "max-autotune" in text
    assert text.splitlines()[-1].endswith("| 0.800 ms | 1.60 | 80% |")


def test_a_filter_that_selects_nothing_is_an_error_and_writes_nothing(tmp_path, capsys):
    import pytest

    from benchmarks.__main__ import main

    out = tmp_path / "r.json"
    with pytest.raises(SystemExit):
        main(["--filter", "bn_act:", "--device", "cpu", "--json", str(out)])
    assert "selects no case" in capsys.readouterr().err and not out.exists()


def test_report_names_the_cpu_build_and_the_heap_setting(tmp_path):
    import json

    from benchmarks.report import summary

    env = {"date": "2026-12-02T00:00:00", "torch": "x", "device": "cpu", "commit": "abc", "cpu": "Xeon",
           "cpu_threads": 2, "cpu_isa": "avx512", "malloc": "glibc: no mmap allocations"}
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"environment": env, "rows": [{"suite": "bn_act", "case": "c", "min_bytes": None,
                                                              "results": {"stock eager": {"median_s": 1e-3}}}]}))
    first = summary(str(path)).splitlines()[0]
    assert "pygan CPU kernels avx512" in first and "freed memory kept" in first


def test_dcgan_diagnostic_reads_each_verdict_once_and_restores_the_check(monkeypatch):
    import importlib

    import torch

    from benchmarks import dcgan

    bna = importlib.import_module("pygan.ops.batch_norm_act")

    calls = []
    real = bna.can_recover_from_output
    monkeypatch.setattr(bna, "can_recover_from_output", lambda *a: calls.append(1) or real(*a))
    patched = bna.can_recover_from_output
    D = dcgan.DCGANDiscriminator(16, 3, 8)
    x = torch.randn(4, 3, 16, 16)
    with dcgan._verdicts_read_once():
        for _ in range(3):
            D(x).sum().backward()
    fused = sum(1 for m in D.modules() if type(m).__name__ == "BatchNormAct2d")
    assert fused > 0 and len(calls) == fused
    assert bna.can_recover_from_output is patched


def test_autotune_option_is_set_before_the_cases_are_built(monkeypatch, tmp_path):
    import sys
    import types

    import benchmarks.__main__ as runner
    from benchmarks.core import OPTIONS

    seen = []

    def cases(device, quick):
        seen.append(OPTIONS["autotune"])
        return [_case("fake", "row")]

    monkeypatch.setitem(sys.modules, "fake_suite", types.SimpleNamespace(cases=cases))
    monkeypatch.setattr(runner, "SUITES", ["fake_suite"])
    monkeypatch.setitem(OPTIONS, "autotune", False)
    monkeypatch.setattr(runner, "keep_freed_memory", lambda: None)  # leave this process's allocator alone
    runner.main(["--autotune", "--device", "cpu", "--rounds", "1", "--quick", "--json", str(tmp_path / "r.json")])
    assert seen == [True]


def _runner_with_a_fake_suite(monkeypatch):
    """benchmarks.__main__ with one fake suite; returns (runner, list of the devices its cases were built for)."""
    import sys
    import types

    import benchmarks.__main__ as runner

    built = []

    def cases(device, quick):
        built.append(device)
        return [_case("fake", "row")]

    monkeypatch.setitem(sys.modules, "fake_suite", types.SimpleNamespace(cases=cases))
    monkeypatch.setattr(runner, "SUITES", ["fake_suite"])
    monkeypatch.setattr(runner, "keep_freed_memory", lambda: None)  # leave this process's allocator alone
    monkeypatch.setattr(runner, "measure", lambda *a: pytest.fail("measured without the kernels"))
    return runner, built


def _no_kernels_built(monkeypatch):
    """As in a checkout whose pygan/ holds no pygan._C (e.g. after a non-editable install elsewhere)."""
    import importlib.util

    from pygan import _ext

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pygan._C" else real(name, *a))
    monkeypatch.setattr(_ext, "_C", None)
    monkeypatch.setattr(_ext, "LOAD_ERROR", "pygan's kernels (pygan._C) are not built in /x/pygan")


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
def test_runner_refuses_to_measure_without_the_kernels(monkeypatch, tmp_path, capsys, quick):
    import os

    import pygan

    runner, built = _runner_with_a_fake_suite(monkeypatch)
    _no_kernels_built(monkeypatch)
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as e:
        runner.main(["--device", "cpu", "--rounds", "1", "--json", str(out)] + (["--quick"] if quick else []))
    err = capsys.readouterr().err
    assert e.value.code != 0 and built == [] and not out.exists()
    where = os.path.dirname(os.path.abspath(pygan.__file__))
    assert f"pygan._C not found next to {where}" in err and "time the PyTorch reference" in err
    assert "pip install --no-build-isolation -e ." in err


def test_runner_names_the_load_error_of_kernels_that_exist_but_do_not_load(monkeypatch):
    from benchmarks.core import kernels_problem
    from pygan import _ext

    monkeypatch.setattr(_ext, "_C", None)
    monkeypatch.setattr(_ext, "LOAD_ERROR", "pygan's kernels were built for torch 0.0 but torch 9.9 is running; "
                                            "rebuild it against this torch")
    problem = kernels_problem("cpu")
    assert "built for torch 0.0" in problem and "PyTorch reference" in problem


def test_runner_refuses_a_gpu_run_with_kernels_built_without_cuda(monkeypatch, capsys):
    import pygan
    from benchmarks.core import kernels_problem
    from pygan import _ext

    if _ext._C is None:
        pytest.skip("pygan's kernels are not built here")
    runner, built = _runner_with_a_fake_suite(monkeypatch)
    monkeypatch.setattr(runner.torch.cuda, "is_available", lambda: True)  # a GPU is visible...
    monkeypatch.setattr(pygan, "build_info", lambda: {**_ext.build_info(), "cuda": None})  # ...the kernels lack CUDA
    with pytest.raises(SystemExit):
        runner.main(["--quick", "--device", "cuda", "--rounds", "1"])
    err = capsys.readouterr().err
    assert "built without CUDA" in err and "PYGAN_CUDA=1 pip install --no-build-isolation -e ." in err
    assert built == []
    assert kernels_problem("cpu") is None  # the CPU kernels are there


def test_runner_refuses_a_build_that_lacks_an_op(monkeypatch):
    from benchmarks.core import kernels_problem
    from pygan import _ext

    if _ext._C is None:
        pytest.skip("pygan's kernels are not built here")
    real = _ext.has_kernel
    monkeypatch.setattr(_ext, "has_kernel", lambda op, device: op != "gan_loss" and real(op, device))
    problem = kernels_problem("cpu")
    assert "no cpu kernel for gan_loss" in problem and "Rebuild" in problem
