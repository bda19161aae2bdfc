#!/usr/bin/env python3
"""CPU seconds per simulator seed, per mode, short and long: what the simulator tests of ``make
test`` cost, seed by seed.

Each row runs ``sim.engine.run`` over a fixed range of seeds (the same ranges every time, so two
trees compare: run this script with ``PYTHONPATH=<tree>/src`` for each, alternating) and prints
the operations the clients made, how many succeeded, and the process CPU time per seed.

    PYTHONPATH=src .venv/bin/python benchmarks/sim_seed_cpu.py [--modes raft,leader-follower]

A script, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import time

from replikv.sim import engine

ROWS = (  # (mode, first seed, seeds, long)
    ("raft", 20_000, 4, True),
    ("raft", 100, 60, False),
    ("leader-follower", 20_000, 4, True),
    ("leader-follower", 100, 60, False),
    ("multi-leader", 100, 40, False),
    ("multi-leader", 20_000, 1, True),
    ("leaderless", 100, 40, False),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="", help="comma-separated modes (default: every row)")
    args = ap.parse_args()
    modes = set(args.modes.split(",")) if args.modes else None
    for mode, first, count, long in ROWS:
        if modes is not None and mode not in modes:
            continue
        started = time.process_time()
        ops = ok = 0
        for seed in range(first, first + count):
            result = engine.run(mode, seed, 3, long)
            ops += len(result.ops)
            ok += sum(1 for op in result.ops if op.ok)
        took = (time.process_time() - started) / count
        print(f"{mode:16} {'long' if long else 'short':5} seeds {first}-{first + count - 1} "
              f"ops {ops:6} ok {ok:6} CPU s/seed {took:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
