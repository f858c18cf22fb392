"""python -m benchmarks [--quick] [--filter TEXT] [--device cpu|cuda] [--json PATH] [--no-compile]"""

from __future__ import annotations

import argparse
import importlib
import sys

import torch

from benchmarks import SUITES
from benchmarks.core import STOCK_COMPILE, PYGAN_COMPILE, environment, measure, table, write_json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small shapes, few runs: checks every row runs (numbers not meaningful)")
    ap.add_argument("--filter", default="", help="only cases whose 'suite case' contains this text")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", help="write the results and the environment here")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    ap.add_argument("--rounds", type=int, default=None, help="timed runs per variant (default 30; 2 with --quick)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA GPU is visible")
    rounds = args.rounds or (2 if args.quick else 30)
    warmup = 1 if args.quick else 5

    env = environment(args.device)
    print(f"# pygan benchmarks on {env.get('gpu') or env['cpu']} ({args.device}, {env['cpu_threads']} threads), "
          f"torch {env['torch']}, commit {env['commit']}", flush=True)
    rows = []
    for suite in SUITES:
        for case in importlib.import_module(suite).cases(args.device, args.quick):
            if args.filter not in f"{case.suite} {case.name}":
                continue
            if args.no_compile:
                case.variants = {k: v for k, v in case.variants.items() if k not in (STOCK_COMPILE, PYGAN_COMPILE)}
            print(f"  {case.suite}: {case.name} ...", file=sys.stderr, flush=True)
            results = measure(case, args.device, rounds, warmup)
            rows.append({"suite": case.suite, "case": case.name, "min_bytes": case.min_bytes, "results": results})
    print(table(rows))
    if args.json:
        write_json(args.json, env, rows)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
