#!/usr/bin/env bash
# The GPU proof in one go, from a plain checkout on a GPU machine (see shared/GPU.md): build with CUDA, run every
# test (CUDA ones included), run the benchmark suite on the GPU, record the device. Usage:
#   bash benchmarks/gpu_check.sh OUT_DIR [extra benchmark args]
# Writes OUT_DIR/{build.log,tests.log,bench.log,bench.json,device.txt,summary.md}; prints the summary last.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR [benchmark args]}
shift
mkdir -p "$out"
cd "$(dirname "$0")/.."
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} PYGAN_CUDA=1 PYGAN_STRICT=1 PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/device.txt" 2>&1
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" >> "$out/device.txt" 2>&1
git rev-parse --short HEAD >> "$out/device.txt" 2>/dev/null

if ! pip install --no-build-isolation --no-deps -e . > "$out/build.log" 2>&1; then
  echo "BUILD FAILED"; tail -40 "$out/build.log"; exit 1
fi
python -c "import pygan; print(pygan.build_info())" >> "$out/build.log" 2>&1

python -m pytest tests -q -p no:cacheprovider > "$out/tests.log" 2>&1
tests_rc=$?
python -m benchmarks --device cuda --json "$out/bench.json" "$@" > "$out/bench.log" 2>&1
bench_rc=$?

{
  echo "## GPU check $(date -u +%F) on $(head -2 "$out/device.txt" | tail -1)"
  echo
  echo "tests (rc=$tests_rc): $(tail -1 "$out/tests.log")"
  echo "benchmarks (rc=$bench_rc):"
  grep '^|' "$out/bench.log"
} > "$out/summary.md"
cat "$out/summary.md"
[ $tests_rc -eq 0 ] && [ $bench_rc -eq 0 ]
