"""Training data at scale: a folder of synthetic 64x64 JPEGs, written by this benchmark.

As a suite row (`python -m benchmarks --filter data_stream`): the time to hand the trainer its next real batch of
64, from the in-memory uint8 tensor and from the stream (one DataLoader worker decoding ahead), on 2,000 files
(200 with --quick).

As a program (`python -m benchmarks.data_stream [--sizes 10000,25000,50000] [--steps 40] [--json PATH]`;
`--plot JSON PNG` draws a results file): the
acceptance measurement of streamed training. The folder grows to each size in turn and, for each,
`pygan train dcgan --data DIR --size 64` (default options otherwise) runs --steps steps in a subprocess while the
peak memory of its process tree (the trainer's resident set, and the proportional set size of the trainer and its
loader workers together - forked workers share pages - sampled every 50 ms) is recorded,
with the time from the command's start to the end of its first step and the per-step data wait it logs
(`data_wait_s`: the part of the step spent waiting for real images).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from benchmarks.core import Case

BATCH = 64


def write_jpegs(folder: str, start: int, stop: int, size: int = 64, seed: int = 0) -> None:
    """Files img{start..stop-1}.jpg: smooth random colour fields with noise (JPEG-typical content), quality 90."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(start, stop):
        r = np.random.default_rng([seed, i])
        a, b, c = r.random((3, 3, 1, 1), dtype=np.float32)
        img = 255 * (a * xx + b * yy + c * np.sin(6 * xx * yy)) / 2.2
        img = img + r.normal(0, 12, img.shape)
        Image.fromarray(img.clip(0, 255).astype(np.uint8).transpose(1, 2, 0)).save(
            os.path.join(folder, f"img{i:06d}.jpg"), quality=90)


def _folder(n: int) -> str:
    folder = tempfile.mkdtemp(prefix="pygan-data-stream-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    write_jpegs(folder, 0, n)
    return folder


def cases(device: str, quick: bool) -> list[Case]:
    n = 200 if quick else 2000
    made: dict = {}  # the folder and the sources are made on first use (the warm-up): listing cases writes nothing

    def variant(mode: str, workers: int):
        def run():
            if mode not in made:
                from pygan.data import SourceOptions, batch_source

                if "folder" not in made:
                    made["folder"] = _folder(n)
                    os.environ.setdefault("PYGAN_FOLDER_CACHE", os.path.join(made["folder"], ".cache"))
                made[mode] = batch_source(made["folder"], 64, 3, SourceOptions(mode=mode, workers=workers),
                                          gen=torch.Generator(device).manual_seed(0), batch_size=BATCH,
                                          device=device)
            return made[mode].next()
        return run

    return [Case("data_stream", f"next real batch of {BATCH} ({n} 64x64 JPEGs)",
                 {"in memory (uint8)": variant("memory", 0), "streamed (1 worker)": variant("stream", 1)})]


# ---------------------------------------------------------------- the acceptance measurement
def _tree(pid: int) -> list[int]:
    """pid and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _memory(pid: int, field: str) -> int:
    """Bytes of `field` ('Rss:' or 'Pss:') in /proc/pid/smaps_rollup; 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def train_once(folder: str, steps: int, out: str, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "pygan.cli", "train", "dcgan", "--data", folder, "--size", "64", "--steps",
           str(steps), "--out", out, "--log-every", "1", "--sample-every", str(10 ** 6), "--checkpoint-every",
           str(10 ** 6), "--no-progress", *extra]
    log = os.path.join(out, "log.jsonl")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_tree = peak_main = peak_rss_sum = 0
    first = None
    while p.poll() is None:
        pids = _tree(p.pid)
        # forked workers share most of their pages with the trainer: the tree's memory is the sum of the
        # proportional set sizes (each shared page split between its sharers); RSS summed would count them twice
        peak_tree = max(peak_tree, sum(_memory(q, "Pss:") for q in pids))
        peak_rss_sum = max(peak_rss_sum, sum(_memory(q, "Rss:") for q in pids))
        peak_main = max(peak_main, _memory(pids[0], "Rss:"))
        if first is None and os.path.isfile(log) and os.path.getsize(log) > 0:
            first = time.perf_counter() - t0
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    err = p.stderr.read()
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err}")
    recs = [r for r in map(json.loads, open(log)) if "loss_d" in r]
    waits = [r["data_wait_s"] for r in recs[1:]]
    secs = [r["sec_per_step"] for r in recs[1:]]
    return {"images": None, "steps": len(recs), "peak_pss_tree_mib": peak_tree / 2**20,
            "peak_rss_main_mib": peak_main / 2**20, "peak_rss_sum_tree_mib": peak_rss_sum / 2**20,
            "time_to_first_step_s": first, "wall_s": wall,
            "first_step_data_wait_s": recs[0]["data_wait_s"], "first_step_s": recs[0]["sec_per_step"],
            "data_wait_median_s": float(np.median(waits)), "data_wait_mean_s": float(np.mean(waits)),
            "sec_per_step_median": float(np.median(secs)),
            "stderr_first_line": err.strip().splitlines()[0] if err.strip() else ""}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.data_stream", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,25000,50000", help="folder sizes, growing (default 10000,25000,50000)")
    ap.add_argument("--steps", type=int, default=40, help="training steps per size (default 40)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--mode", default="auto", choices=("auto", "memory", "stream"),
                    help="the trainer's --data-mode (default auto: streams at these sizes)")
    ap.add_argument("--quick", action="store_true", help="sizes 200,400 and 5 steps: checks that it runs")
    ap.add_argument("--plot", nargs=2, metavar=("JSON", "PNG"), help="only draw the figure of a results JSON")
    args = ap.parse_args(argv)
    if args.plot:
        plot(*args.plot)
        return 0
    sizes = [200, 400] if args.quick else [int(s) for s in args.sizes.split(",")]
    steps = 5 if args.quick else args.steps
    if sizes != sorted(sizes):
        ap.error("--sizes must grow")
    work = tempfile.mkdtemp(prefix="pygan-data-stream-")
    env_cache = os.environ.get("PYGAN_FOLDER_CACHE")
    os.environ["PYGAN_FOLDER_CACHE"] = os.path.join(work, "cache")  # the runs' folder-scan cache, removed with it
    rows = []
    try:
        folder, have = os.path.join(work, "images"), 0
        for n in sizes:
            t = time.perf_counter()
            write_jpegs(folder, have, n)
            gen_s = time.perf_counter() - t
            have = n
            mode = "stream" if args.quick else args.mode
            r = train_once(folder, steps, os.path.join(work, f"run{n}"), ["--data-mode", mode])
            r.update(images=n, mode=mode, generate_s=gen_s, load=os.getloadavg())
            rows.append(r)
            print(f"{n:>6} images: peak memory {r['peak_pss_tree_mib']:.0f} MiB PSS with workers (trainer RSS "
                  f"{r['peak_rss_main_mib']:.0f}), "
                  f"first step after {r['time_to_first_step_s']:.1f} s, data wait {r['data_wait_median_s'] * 1e3:.1f} "
                  f"ms of {r['sec_per_step_median'] * 1e3:.0f} ms per step (median), load {r['load'][0]:.2f}",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if env_cache is None:
            os.environ.pop("PYGAN_FOLDER_CACHE", None)
    env = {"machine": platform.processor() or platform.machine(), "cpu": _cpu_name(), "cpus": os.cpu_count(),
           "torch": torch.__version__, "python": platform.python_version(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "steps": steps, "rows": rows}, f, indent=1)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


def plot(results: str, png: str) -> None:
    """Peak memory and time to the first step against the folder's size, and the per-step data wait."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = json.load(open(results))
    rows = d["rows"]
    n = [r["images"] / 1000 for r in rows]
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.2))
    ax[0].plot(n, [r["peak_rss_main_mib"] for r in rows], "o-", label="trainer (RSS)")
    ax[0].plot(n, [r["peak_pss_tree_mib"] for r in rows], "s-", label="trainer + workers (PSS)")
    ax[0].set(title="peak memory", xlabel="images (thousands)", ylabel="MiB", ylim=(0, None))
    ax[0].legend(fontsize=8)
    ax[1].plot(n, [r["time_to_first_step_s"] for r in rows], "o-")
    ax[1].axhline(10, color="grey", ls="--", lw=1)
    ax[1].set(title="command start to end of first step", xlabel="images (thousands)", ylabel="s", ylim=(0, 12))
    ax[2].bar([f"{int(x)}k" for x in n], [r["sec_per_step_median"] * 1e3 for r in rows], color="lightgrey",
              label="step (median)")
    ax[2].bar([f"{int(x)}k" for x in n], [r["data_wait_median_s"] * 1e3 for r in rows], color="C3",
              label="of which data wait")
    ax[2].set(title="per step", ylabel="ms")
    ax[2].legend(fontsize=8)
    env = d["environment"]
    fig.suptitle(f"pygan train dcgan --data DIR --size 64: 64x64 JPEGs, {env['cpu']} ({env['cpus']} cores, shared), "
                 f"OMP_NUM_THREADS={env['omp_num_threads']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=90)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
