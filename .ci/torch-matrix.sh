#!/usr/bin/env bash
# Checks pygan against one torch release, as docs/build.md's "Supported torch versions" table was filled: a virtual
# environment with that torch (and the torchvision pip pairs with it), pygan built into this checkout (editable),
# every test file, then the benchmarks' quick mode. Not run by CI (each torch is a multi-GB download). Usage:
#   bash .ci/torch-matrix.sh TORCH_VERSION [VENV_DIR]      e.g.  bash .ci/torch-matrix.sh 2.11.0 /tmp/venv-torch211
# VENV_DIR (default ${TMPDIR:-/tmp}/pygan-venv-torch<VERSION>) is created when missing and reused otherwise.
# PYGAN_CUDA (default 0: C++ API drift shows in the CPU build, which is much quicker) and MAX_JOBS pass through to
# the build. pip's configuration applies: a constraints file that caps torch must be lifted for this
# command (PIP_CONSTRAINT=/dev/null).
# The editable build puts pygan/_C*.so into this checkout, for that torch: afterwards, rebuild from your own
# environment (pip install --no-build-isolation -e .) before using it there.
# Each test file runs on its own (-x: stops at its first failure, the other files still run); the summary line of
# each, and the benchmarks' result, are printed at the end. Exit status 0 only if everything passed.
set -uo pipefail
version=${1:?usage: torch-matrix.sh TORCH_VERSION [VENV_DIR]}
cd "$(dirname "$0")/.."
venv=${2:-${TMPDIR:-/tmp}/pygan-venv-torch$version}
export PYGAN_CUDA=${PYGAN_CUDA:-0} MAX_JOBS=${MAX_JOBS:-2} PYGAN_STRICT=1 PYTHONUNBUFFERED=1

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || exit 1
fi
py="$venv/bin/python"
# torchvision unpinned: pip picks the release that declares support for this torch.
"$py" -m pip install -q "setuptools>=77" wheel "torch==$version" torchvision pybind11 ninja numpy || exit 1
# Rebuild unless this checkout's pygan/_C was built for this very torch after the last change under csrc/ (a build
# takes minutes; the extension has the same name for every torch, so another torch's build is always replaced).
if ! "$py" - 2>/dev/null <<'PY'; then
import pathlib, sys, torch, pygan
so = max(pathlib.Path("pygan").glob("_C*.so"), key=lambda p: p.stat().st_mtime)
newest = max(p.stat().st_mtime for p in pathlib.Path("csrc").rglob("*") if p.is_file() and "emulation" not in p.parts)
info = pygan.build_info()
sys.exit(not (info["loaded"] and info["torch_built"] == torch.__version__ and so.stat().st_mtime > newest))
PY
  "$py" -m pip install -q --no-build-isolation -e ".[test]" || exit 1
fi
"$py" -c "import torch, torchvision, pygan, json; print('torch', torch.__version__, '| torchvision', torchvision.__version__,
'| pygan build', json.dumps(pygan.build_info()))" || exit 1

failed=0
summary=()
for f in tests/test_*.py; do
  line=$("$py" -m pytest "$f" -x -q -p no:cacheprovider 2>&1 | tee "/tmp/torch-matrix-$version-$(basename "$f" .py).log" | tail -1)
  rc=$?  # pytest's (pipefail)
  [ "$rc" = 0 ] || failed=1
  summary+=("$f: $line")
done
blog=/tmp/torch-matrix-$version-benchmarks.log
"$py" -m benchmarks --quick > "$blog" 2>&1
bench_rc=$?
[ "$bench_rc" = 0 ] || failed=1
echo "== torch $version (logs: /tmp/torch-matrix-$version-*.log)"
printf '%s\n' "${summary[@]}"
echo "== benchmarks --quick (rc $bench_rc): $(grep -c '^|' "$blog") table lines; last: $(tail -1 "$blog")"
[ "$failed" = 0 ]
