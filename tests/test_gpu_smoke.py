"""The GPU smoke stage without a GPU: benchmarks/gpu_smoke.py with the CPU kernels standing in for CUDA, and the
control flow of `benchmarks/gpu_check.sh --smoke` (build skipped, a stand-in compute-sanitizer on PATH)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_smoke  # noqa: E402


def test_smoke_cases_pass_on_the_cpu_kernels(capsys):
    assert gpu_smoke.main(["--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(gpu_smoke.CASES) + 1 and out[-1].startswith("smoke: 0 failed")
    assert sum("48 KiB window" in line for line in out) == 5


def test_a_wrong_result_or_a_failed_launch_fails_the_smoke(monkeypatch, capsys):
    def wrong(n, dtype, device, *rest):
        got, want = gpu_smoke.gan_loss(n, dtype, device, *rest)
        return [got[0] + 1, *got[1:]], want

    def refused(*args):
        raise RuntimeError("CUDA error: invalid argument\nmore")

    monkeypatch.setattr(gpu_smoke, "CASES", [("wrong", wrong, (63, gpu_smoke.f32), True),
                                             ("refused", refused, (63, gpu_smoke.f32), True)])
    assert gpu_smoke.main(["--device", "cpu", "--quick"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  wrong [float32]: worst error" in out
    assert "FAIL  refused [float32]: RuntimeError: CUDA error: invalid argument\n" in out


def test_gpu_check_smoke_runs_the_cases_then_each_sanitizer(tmp_path):
    """The smoke cases, then each of the four sanitizers on the quick cases; a sanitizer that finds errors (here
    racecheck, exit status 9) fails the script, and --smoke stops before the tests and benchmarks."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "compute-sanitizer"
    # Records its arguments; runs the command after its options (pairs); racecheck "finds" a race.
    stub.write_text(f'#!/usr/bin/env bash\necho "$@" >> "{tmp_path}/sanitizer-calls"\n'
                    '[ "$2" = racecheck ] && exit 9\n'
                    'while [ "${1#--}" != "$1" ]; do shift 2; done\nexec "$@"\n')
    stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
               PYTHONPATH=str(ROOT), GPU_CHECK_SKIP_BUILD="1", GPU_SMOKE_DEVICE="cpu", GPU_CHECK_SECONDS="300",
               OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (out / "smoke.log").read_text().splitlines()[-1].startswith("smoke: 0 failed")
    calls = (tmp_path / "sanitizer-calls").read_text().splitlines()
    assert [c.split()[1] for c in calls] == ["memcheck", "racecheck", "synccheck", "initcheck"]
    assert all(c.endswith("benchmarks/gpu_smoke.py --device cpu --quick") for c in calls)
    assert (out / "sanitizer-initcheck.log").read_text().splitlines()[-1].startswith("smoke: 0 failed")
    summary = (out / "summary.md").read_text()
    assert "smoke (rc=0): smoke: 0 failed" in summary
    assert "memcheck rc=0 racecheck rc=9 synccheck rc=0 initcheck rc=0" in summary
    assert not (out / "tests.log").exists() and not (out / "bench.log").exists()
