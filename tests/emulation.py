"""The emulated build of pygan's CUDA kernels, for the tests: every .cu file under csrc/ compiled as host C++ with
csrc/emulation/cuda_emu.h, so its kernels run on the CPU (see csrc/emulation/). The ops register as
torch.ops.pygan_emu.* (CPU tensors), beside the real torch.ops.pygan.*; torch.ops.pygan_emu.emu_* control the
emulated GPU.

`load()` builds the libraries once per checkout and torch into build/emulation/ (ninja: only what changed is
recompiled) and loads them. The kernels' library: every .cu file, and every .cpp file but the Python module and the
CPU kernels (names with "cpu"), through generated files that include the emulation header first; and
harness_kernels.cpp (kernels that test the emulation itself). The .cu files (and the harness) are compiled from
copies in which each `__shared__` declaration is followed by its report to the emulated GPU
(PYGAN_EMU_STATIC_SHARED: its size counts against the launch's shared-memory limit), with `#line` so that errors
and launch records name the original file and line. The MUTANTS (deliberately broken copies of real kernels) are
compiled in too, each under its own op namespace, so the tests can show that the harness catches them. The
kernels' library is instrumented with -fsanitize=thread, whose hooks csrc/emulation/runtime.cpp implements (races
between blocks); the runtime is a library of its own, built without that instrumentation.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
EMU = CSRC / "emulation"


@dataclass(frozen=True)
class Mutant:
    """A real kernel file with one deliberate bug: `old` (which must occur exactly once, and overlap no other
    mutant's) replaced by `new`, in which MUTANT stands for "this mutant is switched on". All mutants of a file share
    one copy of it, compiled once, whose ops register as torch.ops.<namespace>.*; `switched_on(name)` selects the
    bug at run time (none by default: the copy then behaves as the real file)."""

    name: str
    file: str  # relative to csrc/
    old: str
    new: str
    what: str
    expect: str  # how the op tests fail on it (a regular expression of the error)

    @property
    def namespace(self) -> str:
        return f"pygan_emu_mutants_{Path(self.file).parent.name}"


_BN, _BIAS, _GAN, _IN = (f"ops/{op}/{op}_cuda.cu" for op in ("batch_norm_act", "bias_act", "gan_loss",
                                                              "instance_norm_act"))
MUTANTS = (
    # batch_norm_act
    Mutant("chunk_bound", _BN,
           "const int64_t chunks = (numel + V - 1) / V;", "const int64_t chunks = MUTANT ? numel / V : (numel + V - 1) / V;",
           "off-by-one in a chunk bound: grad_input_kernel skips the partial last chunk",
           "grad input: max error nan"),
    Mutant("bn_grid_stride", _BN,
           "       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {\n    const Vec<scalar_t, V> g",
           "       k += static_cast<int64_t>(gridDim.x) * blockDim.x * (MUTANT ? 2 : 1)) {\n    const Vec<scalar_t, V> g",
           "wrong grid-stride step: grad_input_kernel strides twice the grid, skipping chunks when the grid is capped",
           "grad input: max error nan"),
    # bias_act
    Mutant("missing_sync", _BIAS,
           "      sh_s[threadIdx.x] += sh_s[threadIdx.x + k];\n    }\n    __syncthreads();",
           "      sh_s[threadIdx.x] += sh_s[threadIdx.x + k];\n    }\n    if (!MUTANT) __syncthreads();",
           "missing __syncthreads(): the tree reduction of backward_planes_kernel without its barrier",
           "grad bias: max error"),
    Mutant("misaligned_vector", _BIAS,
           "const bool aligned = can_vectorize(V, numel, {in, out}, sizeof(scalar_t));",
           "const bool aligned = MUTANT ? numel % V == 0 : can_vectorize(V, numel, {in, out}, sizeof(scalar_t));",
           "16-byte vector loads without the alignment check: a misaligned address on a GPU",
           "misaligned address: .* not aligned to the 16 bytes .*Vec. needs, at common/vector_chunks.cuh"),
    Mutant("lost_atomic", _BIAS,
           "    atomicAdd(grad_bias + c, sum_b);",
           "    if (MUTANT) grad_bias[c] += sum_b;\n    else atomicAdd(grad_bias + c, sum_b);",
           "a plain += where an atomicAdd is needed: backward_rows_kernel's blocks of one channel lose updates",
           "data race between blocks: a load of 4 bytes"),
    # gan_loss
    Mutant("shuffle_offset", _GAN,
           "for (int off = 16; off > 0; off /= 2) s[k] += __shfl_down_sync(0xffffffff, s[k], off);",
           "for (int off = MUTANT ? 8 : 16; off > 0; off /= 2) s[k] += __shfl_down_sync(0xffffffff, s[k], off);",
           "wrong shuffle offset: gan_loss_kernel's warp sum starts at offset 8, adding half of each warp",
           "loss: max error"),
    Mutant("gan_grid_stride", _GAN,
           "       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {",
           "       i += MUTANT ? blockDim.x : static_cast<int64_t>(gridDim.x) * blockDim.x) {",
           "wrong grid-stride step: gan_loss_kernel strides one block, so blocks redo each other's elements",
           "data race between blocks: a store"),
    # instance_norm_act
    Mutant("in_missing_sync", _IN,
           "  __syncthreads();  // scratch may still be read from the previous call",
           "  if (!MUTANT) __syncthreads();  // scratch may still be read from the previous call",
           "missing __syncthreads(): block_sum overwrites its scratch while other warps still read the last sum",
           "max error"),
    Mutant("in_shuffle_offset", _IN,
           "  for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffff, v, off);",
           "  for (int off = MUTANT ? 8 : 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffff, v, off);",
           "wrong shuffle offset: block_sum's warp sums start at offset 8",
           "max error"),
    Mutant("in_grid_stride", _IN,
           "         k += static_cast<int64_t>(gridDim.x) * blockDim.x) {\n      const Vec<scalar_t, V> g = load_chunk",
           "         k += MUTANT ? blockDim.x : static_cast<int64_t>(gridDim.x) * blockDim.x) {\n"
           "      const Vec<scalar_t, V> g = load_chunk",
           "wrong grid-stride step: grad_input_kernel strides one block, so blocks write each other's elements",
           "data race between blocks: a store"),
    Mutant("in_split_bound", _IN,
           "  const int64_t c = tile * width + lane_c;\n  const int64_t begin = split * chunk, end = std::min(S, begin + chunk);",
           "  const int64_t c = tile * width + lane_c;\n"
           "  const int64_t begin = split * chunk, end = MUTANT ? begin + chunk : std::min(S, begin + chunk);",
           "wrong split bound: reduce_cl_kernel's last split reads rows past the sample",
           "max error"),
    Mutant("in_missing_opt_in", _IN,
           "          if (needs_opt_in(bytes))\n            PYGAN_ALLOW_DYNAMIC_SHARED(bytes, plane_backward_kernel",
           "          if (!MUTANT && needs_opt_in(bytes))\n            PYGAN_ALLOW_DYNAMIC_SHARED(bytes, plane_backward_kernel",
           "missing opt-in: plane_backward_kernel launched with more than 48 KiB without cudaFuncSetAttribute",
           "more than the 49152 a launch may use without opting in"),
    Mutant("in_shared_size", _IN,
           "          const int64_t bytes = 2 * l.S * static_cast<int64_t>(sizeof(scalar_t));",
           "          const int64_t bytes = (MUTANT ? 1 : 2) * l.S * static_cast<int64_t>(sizeof(scalar_t));",
           "undersized shared memory: plane_backward_kernel gets room for one of its two cached arrays",
           "dynamic shared memory out of bounds"),
    Mutant("in_sample_loop", _IN,
           "  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {\n    const int64_t off = n * per_sample;\n"
           "    for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < chunks;\n"
           "         k += static_cast<int64_t>(gridDim.x) * blockDim.x) {\n      const Vec<scalar_t, V> in",
           "  for (int64_t n = blockIdx.y; n < N; n += MUTANT ? N : gridDim.y) {\n    const int64_t off = n * per_sample;\n"
           "    for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < chunks;\n"
           "         k += static_cast<int64_t>(gridDim.x) * blockDim.x) {\n      const Vec<scalar_t, V> in",
           "missing sample loop: apply_kernel handles only the first 65,535 samples (the grid's y limit)",
           "apply: max error nan"),
    Mutant("in_old_launch", _IN,
           "bool needs_opt_in(int64_t bytes) { return bytes + kStaticReserve > kDefaultShared; }",
           "bool needs_opt_in(int64_t bytes) {\n"
           "  return MUTANT ? bytes > kDefaultShared : bytes + kStaticReserve > kDefaultShared;\n}",
           "the launch before its fix: the plane kernels opt in only when their dynamic shared memory alone exceeds "
           "48 KiB, forgetting their static shared memory",
           r"static shared memory \(__shared__ scratch reached last\) \+ 49152 bytes of dynamic shared memory, more "
           r"than the 49152"),
)

# The dtypes the mutants' copies are built for (the mutant tests' dtypes): float32 alone is a quarter of the compile
# time; the launch-bug mutant needs the half and double plane kernels too.
_MUTANT_DTYPES = {_IN: "AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) AT_DISPATCH_CASE(at::kDouble, __VA_ARGS__) "
                       "AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)"}


@contextlib.contextmanager
def switched_on(mutant: Mutant):
    """Runs the mutants' copies with `mutant`'s bug."""
    ops().emu_mutant(mutant.name)
    try:
        yield getattr(torch.ops, mutant.namespace)
    finally:
        ops().emu_mutant("")


def kernel_sources() -> list[Path]:
    """The sources of the emulated library that come from the real build: every .cu, and every .cpp but the
    Python module and the CPU kernels."""
    cu = sorted(p for p in CSRC.rglob("*.cu") if EMU not in p.parents)
    cpp = sorted(p for p in CSRC.rglob("*.cpp")
                 if EMU not in p.parents and p.name != "python_module.cpp" and "cpu" not in p.name)
    return cpp + cu


def build_dir() -> Path:
    tag = f"torch{torch.__version__}-py{sys.version_info.major}{sys.version_info.minor}"
    return ROOT / "build" / "emulation" / re.sub(r"[^\w.+-]", "_", tag)


def _write_if_changed(path: Path, text: str) -> None:
    # ninja rebuilds by timestamp: rewrite a generated file only when its text changes.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _generated(what: str, lines: list[str]) -> str:
    return "\n".join([f"// Generated by tests/emulation.py: {what}, compiled as host C++ under the CUDA emulation",
                      "// (csrc/emulation/cuda_emu.h).", '#include "emulation/cuda_emu.h"', *lines]) + "\n"


def _dtypes(cases: str) -> list[str]:
    return ["#include <ATen/Dispatch.h>", "#undef AT_DISPATCH_FLOATING_TYPES_AND2",
            "#define AT_DISPATCH_FLOATING_TYPES_AND2(t1, t2, TYPE, NAME, ...) \\",
            f"  AT_DISPATCH_SWITCH(TYPE, NAME, {cases})"]


# What the emulated build cannot compile, and what to write instead (a clear message rather than a compiler's).
_UNSUPPORTED = ((re.compile(r"<<<"), "a <<<...>>> launch: launch with PYGAN_LAUNCH (csrc/common/launch.h)"),
                (re.compile(r"extern\s+__shared__"),
                 "extern __shared__: declare dynamic shared memory with PYGAN_DYNAMIC_SHARED (csrc/common/launch.h)"))


_SHARED = re.compile(r"\b__shared__\b([^;]*);")


def _top_level_split(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "<([{"
        depth -= ch in ">)]}"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def rewrite_shared(text: str, origin: str) -> str:
    """`text` with each `__shared__ T a[N], b[M];` followed (on its line) by `PYGAN_EMU_STATIC_SHARED(a);
    PYGAN_EMU_STATIC_SHARED(b);`, and a #line directive naming `origin`: line numbers are kept."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        code, sep, comment = line.partition("//")
        m = _SHARED.search(code)
        if m and not re.search(r"\bextern\s+__shared__", code):
            names = []
            for k, decl in enumerate(_top_level_split(m.group(1))):
                decl = re.sub(r"(\[[^\]]*\]\s*)+$", "", decl.strip())  # drop the array bounds
                name = re.search(r"(\w+)$", decl)
                if not name or (k == 0 and name.start() == 0) or "=" in decl:
                    raise RuntimeError(f"{origin}:{n}: the CUDA emulation cannot read this __shared__ declaration "
                                       "(write `__shared__ T name[N];`, without an initializer)")
                names.append(name.group(1))
            reports = " ".join(f"PYGAN_EMU_STATIC_SHARED({x});" for x in names)
            code = code[:m.end()] + " " + reports + code[m.end():]
        out.append(code + sep + comment)
    return f'#line 1 "{origin}"\n' + "\n".join(out) + "\n"


def _check_emulatable(sources: list[Path]) -> None:
    problems = [f"{p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}:{n}: {why}"
                for p in sources if p.suffix in (".cu", ".cuh")
                for n, line in enumerate(p.read_text().splitlines(), 1)
                for pattern, why in _UNSUPPORTED if pattern.search(line.split("//")[0])]
    if problems:
        raise RuntimeError("the CUDA emulation cannot build these kernels:\n  " + "\n  ".join(problems))


def _generated_sources(gen: Path) -> list[Path]:
    """The translation units: one for all .cpp files (small; each alone would parse ATen's headers again), one
    per .cu file, and the mutants (those of different files share one)."""
    gen.mkdir(parents=True, exist_ok=True)
    sources = kernel_sources()
    _check_emulatable(sources + sorted(p for p in CSRC.rglob("*.cuh") if EMU not in p.parents))
    units = {"support.cpp": _generated("every .cpp of csrc/ but the Python module and the CPU kernels",
                                       [f'#include "{p}"' for p in sources if p.suffix == ".cpp"])}
    (gen / "src").mkdir(exist_ok=True)
    for p in sources + [EMU / "harness_kernels.cpp"]:
        if p.suffix == ".cu" or p.parent == EMU:
            name = "__".join(p.relative_to(CSRC).parts)
            copy = gen / "src" / name
            _write_if_changed(copy, rewrite_shared(p.read_text(), str(p)))
            units[name + ".cpp" if p.suffix == ".cu" else name] = _generated(str(p.relative_to(ROOT)),
                                                                             [f'#include "{copy}"'])
    (gen / "mutants").mkdir(exist_ok=True)
    for file in dict.fromkeys(m.file for m in MUTANTS):
        text = (CSRC / file).read_text()
        for m in (m for m in MUTANTS if m.file == file):
            if text.count(m.old) != 1 or "MUTANT" not in m.new:
                raise RuntimeError(f"mutant {m.name}: the text to break occurs {text.count(m.old)} times in "
                                   f"csrc/{file} (expected once, and MUTANT in its replacement); update MUTANTS in "
                                   "tests/emulation.py to the kernel's new code")
            text = text.replace(m.old, m.new.replace("MUTANT", f'::pygan::emu::mutant_on("{m.name}")'))
        copy = gen / "mutants" / Path(file).name
        _write_if_changed(copy, rewrite_shared(text, str(copy)))
        namespace = next(m.namespace for m in MUTANTS if m.file == file)
        # Its own op namespace, with every schema of csrc/pygan.cpp.
        units[f"mutants__{Path(file).parent.name}.cpp"] = _generated(
            "deliberately broken copies of kernels (MUTANTS)",
            _dtypes(_MUTANT_DTYPES.get(file, "AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)"))
            + ["#undef PYGAN_EMU_NAMESPACE", f"#define PYGAN_EMU_NAMESPACE {namespace}",
               f'#include "{CSRC / "pygan.cpp"}"', f'#include "{copy}"'])
    for name, text in units.items():
        _write_if_changed(gen / name, text)
    return [gen / name for name in units]


_LOADED: Path | None = None
_ERROR: BaseException | None = None


def load() -> Path:
    """Builds (if needed) and loads the emulated library; returns its path. A build error is raised again on every
    later call (one compile per test session)."""
    global _LOADED, _ERROR
    if _LOADED is not None:
        return _LOADED
    if _ERROR is not None:
        raise _ERROR
    from torch.utils import cpp_extension

    bdir = build_dir()
    (bdir / "runtime").mkdir(parents=True, exist_ok=True)
    sources = [str(p) for p in _generated_sources(bdir / "gen")]
    common = ["-std=c++20", "-O1", "-fno-strict-aliasing", "-DPYGAN_CUDA_EMULATION=1", "-Wno-unused-variable",
              "-Wno-unused-function"]
    # The kernels: -fsanitize=alignment,bounds (misaligned accesses and indices past fixed-size arrays) and
    # -fsanitize=thread (every memory access, for races between blocks) call hooks that the runtime implements as
    # the emulated GPU's fault checks; the sanitizers' libraries are not linked.
    flags = common + ["-fsanitize=alignment,bounds", "-fsanitize=thread",
                      "--param=tsan-instrument-func-entry-exit=0"]
    # ninja's default runs more compilers than there are cores; MAX_JOBS (as for setup.py) decides, else one per core.
    jobs_given = "MAX_JOBS" in os.environ
    os.environ.setdefault("MAX_JOBS", str(len(os.sched_getaffinity(0))))
    verbose = os.environ.get("PYGAN_EMU_VERBOSE") == "1"
    includes = [str(EMU / "include"), str(CSRC)]
    try:
        runtime = Path(cpp_extension.load(
            name="pygan_emu_runtime", sources=[str(EMU / "runtime.cpp")], extra_cflags=common,
            extra_include_paths=includes, build_directory=str(bdir / "runtime"), is_python_module=False,
            with_cuda=False, verbose=verbose) or bdir / "runtime" / "pygan_emu_runtime.so")
        path = cpp_extension.load(
            name="pygan_emu", sources=sources, extra_cflags=flags, extra_ldflags=[str(runtime)],
            extra_include_paths=includes, build_directory=str(bdir),
            is_python_module=False, with_cuda=False, verbose=verbose)
    except BaseException as e:  # noqa: BLE001 - kept for the session's later tests
        _ERROR = RuntimeError(f"the emulated build of the CUDA kernels failed: {e}")
        raise _ERROR from e
    finally:
        if not jobs_given:
            del os.environ["MAX_JOBS"]
    _LOADED = Path(path) if path else bdir
    return _LOADED


def ops(namespace: str = "pygan_emu"):
    load()
    return getattr(torch.ops, namespace)


@contextlib.contextmanager
def single_threaded():
    """One intra-op thread for the tests' own (small) PyTorch computations: the emulation runs on one thread, and
    on a busy 2-core machine the threads of an intra-op pool mostly wait for each other (100x slower seen)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def configure(sm_count: int = 132, order: str = "forward", seed: int = 0, execute: bool = True) -> None:
    """The emulated GPU: its SM count (the kernels size their grids by it), the order of blocks and threads
    ("forward", "reverse", "shuffle" with a seed); execute=False only checks and records launches."""
    ops().emu_configure(sm_count, order, seed, execute)


def launches() -> list[tuple[str, int, str, tuple[int, ...], tuple[int, ...]]]:
    """The launches since the last clear: (file relative to csrc/ or as compiled, line, kernel, grid, block)."""
    out = []
    for rec in ops().emu_launches():
        where, kernel, grid, block = rec.split("|")
        file, line = where.rsplit(":", 1)
        file = file.split("/csrc/", 1)[1] if "/csrc/" in file else file
        out.append((file, int(line), kernel, tuple(map(int, grid.split(","))), tuple(map(int, block.split(",")))))
    return out


def clear_launches() -> None:
    ops().emu_clear_launches()


RECORDED: set[tuple[str, int, str]] = set()  # (file, line, kernel) of every launch recorded in this session


def record_launches() -> None:
    """Adds the launches since the last clear to RECORDED, and clears."""
    RECORDED.update((f, line, k) for f, line, k, _, _ in launches())
    clear_launches()
