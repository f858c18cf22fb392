"""Build of pygan._C: one extension from csrc/**, against the torch that is installed.

Knobs (environment):
  PYGAN_CUDA=auto|0|1     auto (default): build the CUDA kernels whenever torch is a CUDA build and nvcc is found,
                          whether or not a GPU is visible; 0: CPU kernels only; 1: CUDA required, fail early if impossible.
  TORCH_CUDA_ARCH_LIST    standard torch knob; when unset and no GPU is visible, the cuda_arch entries of
                          csrc/build_flags.txt (8.0;8.6;8.9;9.0+PTX: Ampere, Ada, Hopper, PTX for newer GPUs).
  MAX_JOBS                standard torch knob: parallel compile jobs.
  CUDA_HOME               where the CUDA toolkit lives; found from nvcc on PATH or /usr/local/cuda otherwise.
"""

import glob
import json
import os
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
FLAGS_FILE = ROOT / "csrc" / "build_flags.txt"  # compiler flags shared with CMakeLists.txt


def _say(msg: str) -> None:
    print(f"[pygan build] {msg}", file=sys.stderr, flush=True)


def _find_cuda_home() -> str | None:
    # torch.utils.cpp_extension guesses CUDA_HOME at import time, from nvcc's location; where nvcc on PATH is a
    # wrapper script (/usr/local/bin/nvcc here) that guess is /usr/local, without CUDA headers. Settle it here first:
    # the first candidate that looks like a toolkit (bin/nvcc and include/cuda_runtime.h).
    nvcc = shutil.which("nvcc")
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                  str(Path(nvcc).resolve().parent.parent) if nvcc else None, "/usr/local/cuda"]
    for c in filter(None, candidates):
        if (Path(c) / "bin" / "nvcc").exists() and (Path(c) / "include" / "cuda_runtime.h").exists():
            return c
    return None


def _decide_cuda() -> tuple[bool, str]:
    mode = os.environ.get("PYGAN_CUDA", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        sys.exit(f"[pygan build] PYGAN_CUDA must be auto, 0 or 1, got {mode!r}")
    cuda_home = _find_cuda_home()
    if cuda_home is not None:
        os.environ["CUDA_HOME"] = cuda_home
    if mode == "0":
        return False, "PYGAN_CUDA=0"
    import torch

    reasons = []
    if torch.version.cuda is None:
        reasons.append(f"torch {torch.__version__} is not a CUDA build")
    if cuda_home is None:
        reasons.append("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    if reasons:
        if mode == "1":
            sys.exit("[pygan build] PYGAN_CUDA=1 but the CUDA kernels cannot be built: " + "; ".join(reasons))
        return False, "; ".join(reasons)
    return True, f"torch CUDA {torch.version.cuda}, CUDA_HOME={cuda_home}"


def _build_flags() -> dict[str, list[str]]:
    """csrc/build_flags.txt as {key: [values in file order]}: "<key> <value>" lines, '#' comment lines."""
    flags: dict[str, list[str]] = {}
    for n, line in enumerate(FLAGS_FILE.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if not value.strip():
            sys.exit(f"[pygan build] {FLAGS_FILE}:{n}: expected '<key> <value>', got {line!r}")
        flags.setdefault(key, []).append(value.strip())
    return flags


def _companion_cuda_includes() -> list[str]:
    # pip's CUDA torch wheels ship the cuBLAS/cuSPARSE/... headers that ATen's CUDA headers include in
    # site-packages/nvidia/<cuXX>/include; a bare toolkit may lack them.
    found = []
    for site in sys.path:
        found += sorted(glob.glob(os.path.join(site, "nvidia", "cu*", "include")))
    return list(dict.fromkeys(found))


def _extensions():
    with_cuda, why = _decide_cuda()
    # Import only now: CUDA_HOME must be settled before torch.utils.cpp_extension reads it.
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    # csrc/emulation/ is the tests' CUDA emulation (tests/emulation.py builds it), not part of the extension.
    def sources(pattern: str) -> list[str]:
        found = (p.relative_to(ROOT) for p in (ROOT / "csrc").rglob(pattern))
        return sorted(str(p) for p in found if p.parts[1] != "emulation")

    cpp, cu = sources("*.cpp"), sources("*.cu")
    flags = _build_flags()
    # -fopenmp: at::parallel_for is OpenMP-inline in torch's CPU build. The rest: csrc/build_flags.txt.
    cxx_flags = ["-std=c++20", "-fopenmp"] + flags.get("cxx", [])
    macros = [("PYGAN_TORCH_VERSION", f'"{torch.__version__}"')]
    info = {"torch": torch.__version__, "cuda": None, "cuda_arch_list": None, "cpu": True}

    if with_cuda:
        if os.environ.get("TORCH_CUDA_ARCH_LIST"):
            arch_source = "from TORCH_CUDA_ARCH_LIST"
        elif not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(flags.get("cuda_arch", []))
            arch_source = "default of csrc/build_flags.txt: TORCH_CUDA_ARCH_LIST unset, no GPU visible"
        else:
            arch_source = "torch's choice"
        archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "visible GPUs")
        info.update(cuda=torch.version.cuda, cuda_arch_list=archs)
        macros += [("PYGAN_WITH_CUDA", None), ("PYGAN_CUDA_VERSION", f'"{torch.version.cuda}"'), ("PYGAN_CUDA_ARCHS", f'"{archs}"')]
        ext = CUDAExtension(
            "pygan._C",
            sources=cpp + cu,
            include_dirs=[str(ROOT / "csrc")] + _companion_cuda_includes(),
            define_macros=macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-std=c++20"] + flags.get("nvcc", [])},
            extra_link_args=["-fopenmp"],
        )
        _say(f"CUDA kernels: yes ({why}); arch list {archs} ({arch_source})")
    else:
        ext = CppExtension(
            "pygan._C",
            sources=cpp,
            include_dirs=[str(ROOT / "csrc")],
            define_macros=macros,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=["-fopenmp"],
        )
        _say(f"CUDA kernels: no ({why}); CPU kernels only")
    _say(f"torch {torch.__version__}; {len(cpp)} C++ and {len(cu) if with_cuda else 0} CUDA sources")

    class BuildWithInfo(BuildExtension):
        """Writes pygan/_C_build.json beside the extension: what was built, for which torch (read before import)."""

        def run(self):
            super().run()
            targets = [Path(self.build_lib) / "pygan"]
            if self.inplace:
                targets = [ROOT / "pygan"]
            for t in targets:
                t.mkdir(parents=True, exist_ok=True)
                tmp = t / "_C_build.json.tmp"
                tmp.write_text(json.dumps(info, indent=1) + "\n")
                os.replace(tmp, t / "_C_build.json")

    return [ext], {"build_ext": BuildWithInfo.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
