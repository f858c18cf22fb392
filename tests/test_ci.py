"""CI's script (.ci/run) run in a stand-in checkout: a README whose install command makes a stand-in virtual
environment (with a stand-in pygan that reports a build) and whose test command ends the run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

README = """\
<!-- ci:install (.ci/run runs the command below exactly) -->
```bash
bash make_venv.sh
```

<!-- ci:test (.ci/run runs the command below exactly) -->
```bash
echo TESTS-RAN; exit 7
```
"""


def test_ci_prints_the_build_info_after_the_install(tmp_path):
    shutil.copytree(ROOT / ".ci", tmp_path / ".ci")
    (tmp_path / "README.md").write_text(README)
    info = {"loaded": True, "cuda": "13.0", "cuda_arch_list": "9.0", "cpu_isa": "avx2"}
    site = tmp_path / "site" / "pygan"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text(f"def build_info():\n    return {info!r}\n")
    (tmp_path / "make_venv.sh").write_text(
        "mkdir -p .venv/bin\n"
        f"printf '#!/bin/sh\\nexec {sys.executable} \"$@\"\\n' > .venv/bin/python && chmod +x .venv/bin/python\n"
        f"echo 'export PATH=\"{tmp_path}/.venv/bin:$PATH\" PYTHONPATH=\"{tmp_path}/site\"' > .venv/bin/activate\n"
        "echo INSTALLED\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=120)
    out = run.stdout
    assert run.returncode == 7, run.stdout + run.stderr  # the stand-in test command ends the run
    assert out.index("INSTALLED") < out.index("== build info") < out.index("TESTS-RAN")
    printed = out[out.index("\n", out.index("== build info")) + 1: out.index("== tests")]
    assert json.loads(printed) == info and printed.startswith('{\n "loaded": true')  # indent=1
