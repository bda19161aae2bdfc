"""How long `replikv check` takes to check a real run, phase by phase.

Usage: python benchmarks/check_run.py [--time 90] [--clients 12] [--nodes 5]
       [--nemesis partition,kill,pause,clock] [--workload register] [--seed 7]

Runs one check of a raft cluster of real processes (as `replikv check`
does), prints each phase as `run_check` reports it, the verdicts, the
number of ops in the history and the seconds from the start of the
checking phase to the end (the checkers and the report). The reference is
the run's own duration: issue 17's target is checking in at most 10% of it.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from replikv.check.runner import run_check


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time", type=float, default=90.0)
    ap.add_argument("--clients", type=int, default=12)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--nemesis", default="partition,kill,pause,clock")
    ap.add_argument("--workload", default="register")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--store", type=Path, default=None, help="where the run directory goes (default: a temp dir)")
    args = ap.parse_args()
    marks: list[tuple[str, float]] = []

    def progress(phase: str, end: float | None) -> None:
        marks.append((phase, time.monotonic()))
        print(f"{time.strftime('%H:%M:%S')} {phase}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        res = run_check(mode="raft", workload=args.workload, nemeses=args.nemesis.split(","), time_s=args.time,
                        clients=args.clients, nodes=args.nodes, seed=args.seed, setting=None,
                        store=args.store or Path(tmp), progress=progress)
        end = time.monotonic()
        ops = sum(1 for _ in res.history)
    checking = end - next(t for p, t in marks if p.startswith("checking"))
    print(f"verdict: {res.verdict} (exit {res.exit_code})")
    for r in res.results:
        print(f"  {r.name}: {r.status}: {r.summary[:150]}")
    print(f"ops in the history: {ops}; whole run {end - t0:.0f} s; checking {checking:.1f} s "
          f"({checking / args.time * 100:.1f}% of the workload's {args.time:g} s), report included")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")
    return res.exit_code


if __name__ == "__main__":
    sys.exit(main())
