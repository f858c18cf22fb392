"""Cases, timing and reporting shared by every benchmark suite."""

from __future__ import annotations

import ctypes
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

import pygan
from pygan.losses import discriminator_loss, generator_loss
from pygan.ops import recompute

# Every row compiles its own closures of the same few functions: dynamo's per-code-object cache (8 by default) would
# otherwise fill up part-way through a suite and silently run the later rows' "compile" variants eagerly.
torch._dynamo.config.recompile_limit = 1024

STOCK_EAGER, STOCK_COMPILE, PYGAN, PYGAN_COMPILE = "stock eager", "stock compile", "pygan", "pygan compile"
STOCK_AUTOTUNE = "stock compile max-autotune"
OPTIONS = {"autotune": False}  # set by `python -m benchmarks --autotune` before the cases are built
# The suites compile with dynamic=False: each row is one static shape, and torch 2.14's inductor fails the backward
# of a dynamic-shape ConvTranspose2d + BatchNorm2d graph ("Cannot convert expression to float") once a second shape
# arrives.


@dataclass
class Case:
    """One row of the table: the same work done by several variants (e.g. stock eager, stock compile, pygan)."""

    suite: str
    name: str
    variants: dict[str, Callable[[], object]]
    min_bytes: int | None = None  # minimal memory traffic of the work (for achieved bandwidth on a GPU)
    saved_bytes: dict[str, int] = field(default_factory=dict)  # bytes autograd keeps for backward, per variant


def max_autotune(device: str, make: Callable[[Callable], Callable[[], object]]) -> dict:
    """The row's 'stock compile max-autotune' variant, on a GPU when --autotune asks for it (max-autotune compiles
    take minutes per graph): make(compile) builds the row's closure with torch.compile(mode='max-autotune')."""
    if device != "cuda" or not OPTIONS["autotune"]:
        return {}
    return {STOCK_AUTOTUNE: make(lambda m: torch.compile(m, mode="max-autotune", dynamic=False))}


# The ops whose compiled kernel pygan.ops checks for before each call (without it the call runs the PyTorch reference).
KERNEL_OPS = ("batch_norm_act", "batch_norm_act_apply", "bias_act", "gan_loss", "instance_norm_act")
_BUILD = "pip install --no-build-isolation -e ."


def kernels_problem(device: str) -> str | None:
    """Why pygan's compiled kernels cannot run on `device` here, or None. Without them pygan's ops fall back to their
    PyTorch reference (with a one-time warning), and the 'pygan' variants would time that instead of the kernels."""
    from pygan import _ext

    where = os.path.dirname(os.path.abspath(pygan.__file__))
    then = "the benchmarks would time the PyTorch reference instead"
    if _ext._C is None:
        if importlib.util.find_spec("pygan._C") is None:
            return (f"pygan's compiled kernels are not loaded (pygan._C not found next to {where}, the pygan "
                    f"imported here; kernels a non-editable install put elsewhere are not used): {then}. Build them "
                    f"in this checkout: {_BUILD}")
        return f"pygan's compiled kernels are not loaded: {_ext.LOAD_ERROR}; {then}"
    built = os.path.dirname(_ext._C.__file__) if getattr(_ext._C, "__file__", None) else where
    if device == "cuda" and not pygan.build_info()["cuda"]:
        return (f"pygan's compiled kernels in {built} were built without CUDA: on --device cuda (the default where a "
                f"GPU is visible) {then}. Build the CUDA kernels in this checkout (needs nvcc): PYGAN_CUDA=1 {_BUILD}; "
                "or measure the CPU kernels with --device cpu")
    missing = [op for op in KERNEL_OPS if not _ext.has_kernel(op, device)]
    if missing:
        return (f"pygan's compiled kernels in {built} have no {device} kernel for {', '.join(missing)} (a build older "
                f"than this checkout?): {then}. Rebuild them in this checkout: {_BUILD}")
    return None


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time_once(fn, device: str) -> float:
    """Seconds for one call: CUDA events on a GPU, perf_counter on the CPU."""
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(case: Case, device: str, rounds: int, warmup: int) -> dict:
    """Interleaves the variants round by round (so drifts hit all alike); returns per-variant median and spread."""
    times: dict[str, list[float]] = {k: [] for k in case.variants}
    peak: dict[str, int] = {}
    for name, fn in case.variants.items():  # warm-up (and compilation) first, outside the timing
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for _ in range(warmup):
            fn()
        _sync(device)
        if device == "cuda":
            peak[name] = torch.cuda.max_memory_allocated()
    names = list(case.variants)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(_time_once(case.variants[name], device))
    out = {}
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=4) if len(ts) >= 4 else [min(ts), 0, max(ts)]
        out[name] = {"median_s": statistics.median(ts), "iqr_s": q[2] - q[0], "runs": len(ts)}
        if name in peak:
            out[name]["peak_bytes"] = peak[name]
        if name in case.saved_bytes:
            out[name]["saved_bytes"] = case.saved_bytes[name]
    return out


def keep_freed_memory() -> str | None:
    """On glibc, keep freed memory in the process instead of returning it to the OS; returns what was set, or None.

    By default glibc maps every allocation over 32 MiB (and, depending on what was freed before, smaller ones) afresh
    and unmaps it when freed, so each new tensor of that size is paid again in page faults. On the build machines (a
    2-core VM) that cost varied from run to run by up to 30x for the same call — a stock BatchNorm + activation
    forward on a 32 MiB tensor took 3 ms or 11 ms depending on the allocator's history — which drowned the kernels'
    differences. Applied once at start, the same for every variant (the tensors pygan does not allocate then save
    nothing in page faults, so this is the conservative choice for pygan).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        if libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1) == 1:
            return "glibc: no mmap allocations, no trimming (freed memory stays in the process)"
    except (OSError, AttributeError):
        pass
    return None


def environment(device: str) -> dict:
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_isa": pygan.build_info()["cpu_isa"],  # which build of pygan's CPU kernels ran
        "device": device,
    }
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                       cwd=os.path.dirname(__file__)).stdout.strip() or None
    except OSError:
        env["commit"] = None
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
        env["l2_bytes"] = torch.cuda.get_device_properties(0).L2_cache_size
        env["copy_bandwidth_Bps"] = copy_bandwidth(env["l2_bytes"])
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True).stdout.strip()
        except OSError:
            env["driver"] = None
    else:
        try:
            with open("/proc/cpuinfo") as f:
                env["cpu"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), env["cpu"])
        except OSError:
            pass
    return env


def copy_bandwidth(l2_bytes: int) -> float:
    """The GPU's device-to-device copy rate in bytes (read + written) per second: the median of 20 copies of a
    buffer 16x the L2 cache (so it streams from DRAM), timed with CUDA events - the yardstick for memory-bound ops."""
    n = max(16 * l2_bytes, 1 << 28)
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = [_time_once(lambda: dst.copy_(src), "cuda") for _ in range(20)]
    return 2 * n / statistics.median(times)


def annotate(row: dict, env: dict) -> dict:
    """On a GPU, for a row with a minimal byte count: each variant's achieved fraction of the copy bandwidth
    (min_bytes / median time / copy rate), and whether the row's bytes fit in L2 (then repeated runs may be served
    from L2: the inputs are not rotated, so such a figure is marked L2-resident)."""
    bw, l2, need = env.get("copy_bandwidth_Bps"), env.get("l2_bytes"), row.get("min_bytes")
    if bw and need:
        for r in row["results"].values():
            r["bandwidth_fraction"] = need / r["median_s"] / bw
        row["l2_resident"] = need <= l2
    return row


def bandwidth_cell(row: dict, variant: str) -> str:
    fraction = row["results"].get(variant, {}).get("bandwidth_fraction")
    if fraction is None:
        return "–"
    return f"{fraction:.0%}" + (" (L2-resident)" if row.get("l2_resident") else "")


def gan_losses(kind: str, stock: bool) -> tuple[Callable, Callable]:
    """(G's adversarial loss of fake logits, D's loss of real and fake logits) for 'non_saturating' (binary
    cross-entropy) or 'least_squares' (squared error; each side's mean, unhalved: the work, not pygan's scale), from
    stock torch.nn.functional or pygan.losses: the whole-step rows compare them as users would write them."""
    if not stock:
        return (lambda fake: generator_loss(fake, kind).loss,
                lambda real, fake: discriminator_loss(real, fake, kind).loss)
    loss = {"non_saturating": F.binary_cross_entropy_with_logits, "least_squares": F.mse_loss}[kind]
    return (lambda fake: loss(fake, torch.ones_like(fake)),
            lambda real, fake: loss(real, torch.ones_like(real)) + loss(fake, torch.zeros_like(fake)))


def saved_tensor_bytes(fn: Callable[[], object]) -> int:
    """Bytes autograd saves for backward while running fn(), each storage counted once, parameters excluded.

    Only the innermost saved-tensor hooks apply, so these chain pygan.recompute_relu_outputs()'s own: a tensor it
    turns into a recipe costs nothing beyond what the recipe references (counted where autograd saves it)."""
    seen: dict[int, int] = {}

    def pack(t):
        kept = recompute.pack(t)
        if kept is t and not isinstance(t, torch.nn.Parameter):
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
        return kept

    with torch.autograd.graph.saved_tensors_hooks(pack, recompute.unpack):
        fn()
    return sum(seen.values())


def table(rows: list[dict]) -> str:
    """Markdown: per case, each variant's median (± IQR) and its speed-up over stock eager and stock compile."""
    lines = ["| suite | case | variant | median | ± IQR | × stock eager | × stock compile | saved for backward "
             "| of copy bandwidth |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        res = row["results"]
        eager = res.get(STOCK_EAGER, {}).get("median_s")
        comp = res.get(STOCK_COMPILE, {}).get("median_s")
        for name, r in res.items():
            m = r["median_s"]
            sp_e = f"{eager / m:.2f}" if eager else "–"
            sp_c = f"{comp / m:.2f}" if comp else "–"
            saved = f"{r['saved_bytes'] / 2**20:.1f} MiB" if "saved_bytes" in r else "–"
            lines.append(f"| {row['suite']} | {row['case']} | {name} | {_fmt(m)} | {_fmt(r['iqr_s'])} | {sp_e} | {sp_c} "
                         f"| {saved} | {bandwidth_cell(row, name)} |")
    return "\n".join(lines)


def _fmt(s: float) -> str:
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.2f} s"


def write_json(path: str, env: dict, rows: list[dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"environment": env, "rows": rows}, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)  # never a half-written file
