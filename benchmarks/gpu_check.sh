#!/usr/bin/env bash
# The GPU proof in one go, from a plain checkout on a GPU machine (see shared/GPU.md): build with CUDA, a smoke stage
# (every kernel once on each launch path against the float64 reference, benchmarks/gpu_smoke.py, then the same under
# compute-sanitizer's memcheck, racecheck, synccheck and initcheck when it is installed), run the CUDA tests,
# benchmark on the GPU (the issue's goal rows first), record the device - within a time budget, since a lent GPU
# gives one command about 10 minutes. Usage:
#   bash benchmarks/gpu_check.sh [--smoke] OUT_DIR [extra benchmark args]
# --smoke stops after the smoke stage (about a minute once built): "do the kernels run, and correctly".
# GPU_CHECK_SECONDS (default 540) bounds the whole script: every stage runs under `timeout` with what is left, and
# the benchmark JSON is rewritten after each case, so a stage cut short still leaves its results. GPU_CHECK_TESTS=all
# runs every test instead of the CUDA ones (-k cuda: the CPU ones run in CI).
# GPU_SMOKE_DEVICE (default cuda) and GPU_CHECK_SKIP_BUILD=1 (use the installed pygan) let the script's control flow
# be tested without a GPU (tests/test_gpu_smoke.py).
# Writes OUT_DIR/{device.txt,build.log,smoke.log,sanitizer-<tool>.log,tests.log,bench.log,bench.json,summary.md};
# prints the summary last.
set -uo pipefail
smoke_only=0
if [ "${1:-}" = --smoke ]; then smoke_only=1; shift; fi
out=${1:?usage: gpu_check.sh [--smoke] OUT_DIR [benchmark args]}
shift
mkdir -p "$out"
cd "$(dirname "$0")/.."
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} PYGAN_CUDA=1 PYGAN_STRICT=1 PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${GPU_CHECK_SECONDS:-540} ))
left() { local s=$(( deadline - $(date +%s) )); echo $(( s > 1 ? s : 1 )); }  # never 0: `timeout 0` waits forever
# The rows the issue sets goals for come first (BN + activation forward + backward, the DCGAN batch-128 bf16
# iteration, the GAN loss), then everything else while time lasts.
priority="bn_act fwd+bwd leaky_relu 64x256x16x16 fp32|bn_act fwd+bwd relu 64x128x32x32 fp32|dcgan 64x64 G+D iteration batch 128 bf16|gan_loss|bn_act fwd+bwd|dcgan|"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/device.txt" 2>&1
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" >> "$out/device.txt" 2>&1
git rev-parse --short HEAD >> "$out/device.txt" 2>/dev/null

build_rc=0
if [ "${GPU_CHECK_SKIP_BUILD:-0}" = 1 ]; then
  echo "build skipped (GPU_CHECK_SKIP_BUILD=1)" > "$out/build.log"
else
  timeout "$(left)" pip install --no-build-isolation --no-deps -e . > "$out/build.log" 2>&1 || build_rc=$?
fi
python -c "import pygan; print(pygan.build_info())" >> "$out/build.log" 2>&1 || { [ "$build_rc" = 0 ] && build_rc=1; }
smoke_rc=skipped tests_rc=skipped bench_rc=skipped
sanitizer=()
device=${GPU_SMOKE_DEVICE:-cuda}
if [ "$build_rc" = 0 ]; then
  timeout "$(( $(left) < 120 ? $(left) : 120 ))" python benchmarks/gpu_smoke.py --device "$device" > "$out/smoke.log" 2>&1
  smoke_rc=$?
  # The sanitizers slow every launch a hundredfold: one case per kernel family each, at most 90 s each; without the
  # caching allocator, so that memcheck sees each tensor's own bounds.
  if command -v compute-sanitizer > /dev/null; then
    for tool in memcheck racecheck synccheck initcheck; do
      PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$(( $(left) < 90 ? $(left) : 90 ))" compute-sanitizer --tool "$tool" \
        --error-exitcode 9 python benchmarks/gpu_smoke.py --device "$device" --quick > "$out/sanitizer-$tool.log" 2>&1
      sanitizer+=("$tool rc=$?")
    done
  else
    sanitizer=("not run: no compute-sanitizer on PATH")
  fi
fi
if [ "$build_rc" = 0 ] && [ "$smoke_only" = 0 ]; then
  select=(-k cuda)
  [ "${GPU_CHECK_TESTS:-cuda}" = all ] && select=()
  # about a third of what is left for the tests, the rest for the benchmarks
  timeout "$(( $(left) / 3 ))" python -m pytest tests -q -p no:cacheprovider "${select[@]}" > "$out/tests.log" 2>&1
  tests_rc=$?
  timeout "$(left)" python -m benchmarks --device cuda --budget-s "$(( $(left) - 90 ))" --filter "$priority" \
    --json "$out/bench.json" "$@" > "$out/bench.log" 2>&1
  bench_rc=$?
fi

{
  echo "## GPU check $(date -u +%F) on $(head -2 "$out/device.txt" | tail -1)"
  echo
  echo "build rc=$build_rc: $(tail -1 "$out/build.log")"
  echo "smoke (rc=$smoke_rc): $(tail -1 "$out/smoke.log" 2>/dev/null)"
  grep -E '^FAIL' "$out/smoke.log" 2>/dev/null
  echo "compute-sanitizer (9 = errors found, 124 = out of time): ${sanitizer[*]:-skipped}"
  echo "tests (rc=$tests_rc; 124 = out of time): $(tail -1 "$out/tests.log" 2>/dev/null)"
  echo "benchmarks (rc=$bench_rc):"
  grep -E '^\|' "$out/bench.log" 2>/dev/null
  grep -E '^not run' "$out/bench.log" 2>/dev/null
} > "$out/summary.md"
cat "$out/summary.md"
sanitizers_ok=1
for s in "${sanitizer[@]}"; do case "$s" in *rc=0|not\ run*) ;; *) sanitizers_ok=0 ;; esac; done
[ "$build_rc" = 0 ] && [ "$smoke_rc" = 0 ] && [ "$sanitizers_ok" = 1 ] || exit 1
[ "$smoke_only" = 1 ] || { [ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]; }
