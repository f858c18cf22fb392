"""python -m benchmarks.report RESULTS.json [...]: the README's performance table, from committed results.

One row per case: medians of stock eager / stock compile / pygan / pygan compile, pygan's speed-up over each stock
variant, and the bytes kept for backward (pygan / stock). Each table names the machine it was measured on.
"""

from __future__ import annotations

import json
import sys

from benchmarks.core import PYGAN, PYGAN_COMPILE, STOCK_AUTOTUNE, STOCK_COMPILE, STOCK_EAGER, _fmt, bandwidth_cell


def summary(path: str) -> str:
    with open(path) as f:
        data = json.load(f)
    env = data["environment"]
    isa = f", pygan CPU kernels {env['cpu_isa']}" if env.get("cpu_isa") else ""
    heap = ", freed memory kept in the process (benchmarks/core.py: keep_freed_memory)" if env.get("malloc") else ""
    where = env.get("gpu") or f"{env['cpu']}, {env['cpu_threads']} threads{isa}{heap}"
    gpu = bool(env.get("copy_bandwidth_Bps"))
    tuned = any(STOCK_AUTOTUNE in row["results"] for row in data["rows"])
    lines = [f"Measured on {where} ({env['device']}), torch {env['torch']}, {env['date'][:10]}, commit {env['commit']}"
             + (f", copy bandwidth {env['copy_bandwidth_Bps'] / 1e12:.2f} TB/s" if gpu else "") + f" — `{path}`", "",
             "| case | stock eager | stock compile | pygan | pygan compile | pygan × eager | pygan × compile | saved for backward |"
             + (" stock max-autotune | pygan × max-autotune |" if tuned else "") + (" pygan of copy bandwidth |" if gpu else ""),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: | ---: |" if tuned else "")
             + (" ---: |" if gpu else "")]
    for row in data["rows"]:
        r = row["results"]
        med = {k: r[k]["median_s"] for k in r}
        cell = lambda k: _fmt(med[k]) if k in med else "–"  # noqa: E731
        ratio = lambda k: f"{med[k] / med[PYGAN]:.2f}" if k in med and PYGAN in med else "–"  # noqa: E731
        saved = "–"
        if "saved_bytes" in r.get(PYGAN, {}) and "saved_bytes" in r.get(STOCK_EAGER, {}):
            saved = f"{r[PYGAN]['saved_bytes'] / r[STOCK_EAGER]['saved_bytes']:.0%} of stock"
        lines.append(f"| {row['suite']}: {row['case']} | {cell(STOCK_EAGER)} | {cell(STOCK_COMPILE)} | {cell(PYGAN)} | "
                     f"{cell(PYGAN_COMPILE)} | {ratio(STOCK_EAGER)} | {ratio(STOCK_COMPILE)} | {saved} |"
                     + (f" {cell(STOCK_AUTOTUNE)} | {ratio(STOCK_AUTOTUNE)} |" if tuned else "")
                     + (f" {bandwidth_cell(row, PYGAN)} |" if gpu else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n\n".join(summary(p) for p in sys.argv[1:]))
