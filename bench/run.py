"""Run the benchmarks: `python -m bench.run --quick` (scaled down, < 3 min) or `--full`.
Prints each figure beside its kernel floor and goal, then the table, and writes
bench/results/<date>-<name>.json."""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import traceback

from bench.env import BenchEnv
from bench.report import Report
from bench.scenarios import FULL, QUICK, Ctx, Scale, STEPS
from bench.sweep import b9_sweep

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def main() -> int:
    ap = argparse.ArgumentParser()
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--full", action="store_true")
    ap.add_argument("--only", default="", help="comma list of B1..B9 (B1 always runs if any of B2-B8 do)")
    ap.add_argument("--backend", default="legacy", choices=("legacy", "nft"))
    ap.add_argument("--name", default="")
    args = ap.parse_args()
    scale: Scale = FULL if args.full else QUICK
    name = args.name or ("full" if args.full else "quick")
    report = Report(name)
    report.note(f"scale: {scale.local} local endpoints, {scale.remote} remote, "
                f"{scale.policies} policies, tag of {scale.big_tag}, idle {scale.idle_secs:.0f} s, "
                f"sweep {list(scale.sweep_rules)} rules on {list(scale.sweep_backends)}; "
                f"backend {args.backend}" + (" (quick: scaled down)" if not args.full else ""))
    only = {x.strip().upper() for x in args.only.split(",") if x.strip()}
    t0 = time.monotonic()
    try:
        wanted = [(n, f) for n, f in STEPS if not only or n in only or n == "B1"]
        if not only or only - {"B9"}:
            with BenchEnv(args.backend) as env:
                ctx = Ctx(env, report, scale, random.Random(1))
                try:
                    for n, step in wanted:
                        print(f"== {n}", flush=True)
                        try:
                            step(ctx)
                        except Exception as e:  # one failed scenario must not lose the rest
                            traceback.print_exc()
                            report.note(f"{n} failed: {e!r}")
                            if n == "B1":
                                break
                finally:
                    if ctx.floor_ns is not None:
                        ctx.floor_ns.close()
        if not only or "B9" in only:
            print("== B9", flush=True)
            b9_sweep(report, scale)
    finally:
        report.extra["wall_secs"] = time.monotonic() - t0
        print("\n" + report.table())
        print(f"\nwall time {report.extra['wall_secs']:.0f} s")
        print("results:", report.save(RESULTS, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
