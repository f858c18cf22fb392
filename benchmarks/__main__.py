"""python -m benchmarks [--quick] [--filter TEXT[|TEXT...]] [--device cpu|cuda] [--json PATH] [--no-compile]
[--rounds N] [--budget-s SECONDS] [--autotune]"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

import torch

from benchmarks import SUITES
from benchmarks.core import (OPTIONS, PYGAN_COMPILE, STOCK_COMPILE, annotate, environment, keep_freed_memory,
                             kernels_problem, measure, table, write_json)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small shapes, few runs: checks every row runs (numbers not meaningful)")
    ap.add_argument("--filter", default="",
                    help="only cases whose 'suite case' contains this text; several texts separated by '|' select "
                         "the cases matching any, run in that order (an empty last text: then all the others)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", help="write the results and the environment here (rewritten after every case)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    ap.add_argument("--rounds", type=int, default=None, help="timed runs per variant (default 30; 2 with --quick)")
    ap.add_argument("--autotune", action="store_true",
                    help="on a GPU, also stock torch.compile(mode='max-autotune') for the bn_act and dcgan rows")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="start no new case after this many seconds (the results so far are kept)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA GPU is visible")
    problem = kernels_problem(args.device)  # --quick too: CI builds the kernels, so their absence is a failure there
    if problem:
        ap.error(problem)
    rounds = args.rounds or (2 if args.quick else 30)
    warmup = 1 if args.quick else 5
    start = time.monotonic()

    OPTIONS["autotune"] = args.autotune and not args.no_compile  # read while the cases are built
    cases = [case for suite in SUITES for case in importlib.import_module(suite).cases(args.device, args.quick)]
    chosen = select(cases, args.filter)
    if not chosen:
        ap.error(f"--filter {args.filter!r} selects no case (cases are named 'suite case', e.g. "
                 f"{cases[0].suite + ' ' + cases[0].name!r})")

    env = environment(args.device)
    if args.device == "cpu":
        env["malloc"] = keep_freed_memory()
    print(f"# pygan benchmarks on {env.get('gpu') or env['cpu']} ({args.device}, {env['cpu_threads']} threads), "
          f"torch {env['torch']}, commit {env['commit']}", flush=True)
    rows, skipped = [], []
    for case in chosen:
        if args.budget_s is not None and time.monotonic() - start > args.budget_s:
            skipped.append(f"{case.suite}: {case.name}")
            continue
        if args.no_compile:
            case.variants = {k: v for k, v in case.variants.items() if k not in (STOCK_COMPILE, PYGAN_COMPILE)}
        print(f"  {case.suite}: {case.name} ...", file=sys.stderr, flush=True)
        rows.append(annotate({"suite": case.suite, "case": case.name, "min_bytes": case.min_bytes,
                              "results": measure(case, args.device, rounds, warmup)}, env))
        if args.json:
            write_json(args.json, env, rows)
    print(table(rows))
    if skipped:
        print(f"\nnot run (--budget-s {args.budget_s:g} s spent): " + "; ".join(skipped))
    if args.json:
        write_json(args.json, env, rows)
        print(f"wrote {args.json}")
    return 0


def select(cases: list, filter_: str) -> list:
    """The cases matching any of the '|'-separated texts of filter_, in the order of the first text they match."""
    texts = filter_.split("|")
    ranked = []
    for i, case in enumerate(cases):
        rank = next((r for r, t in enumerate(texts) if t in f"{case.suite} {case.name}"), None)
        if rank is not None:
            ranked.append((rank, i, case))
    return [case for _, _, case in sorted(ranked, key=lambda t: t[:2])]


if __name__ == "__main__":
    sys.exit(main())
