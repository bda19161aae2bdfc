"""Replay or explore simulator seeds.

`python -m replikv.sim --mode raft --seed N [--nodes 5]` replays one seed;
`--seeds 100000` runs that many consecutive seeds (from --seed, default 0).
"""

from __future__ import annotations

import argparse
import sys
import time

from replikv import modes
from replikv.sim.simulator import SafetyViolation


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replikv.sim", description=__doc__)
    simulated = [spec.name for spec in modes.specs() if spec.sim is not None]
    ap.add_argument("--mode", choices=simulated, default=simulated[0],
                    help="a mode whose ModeSpec names a simulator")
    ap.add_argument("--seed", type=int, default=0, help="first seed to run")
    ap.add_argument("--count", "--seeds", dest="count", type=int, default=1,
                    help="number of consecutive seeds")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("-v", "--verbose", action="store_true", help="print the nemesis log")
    args = ap.parse_args(argv)
    run = modes.get(args.mode).sim()  # type: ignore[misc]
    failed = 0
    for seed in range(args.seed, args.seed + args.count):
        t0 = time.perf_counter()
        try:
            r = run(seed, args.nodes)  # the mode's simulator (ModeSpec.sim)
        except SafetyViolation as e:
            failed += 1
            print(f"FAIL {e}", file=sys.stderr)
            continue
        dt = time.perf_counter() - t0
        print(
            f"seed {seed} nodes {args.nodes}: ok, {len(r.ops)} ops, {r.committed} entries committed,"
            f" {len(r.leaders)} terms with a leader, {r.messages} messages,"
            f" converged at {r.converged_at_us / 1e6:.2f}s virtual, {dt * 1000:.0f} ms"
        )
        if args.verbose:
            for line in r.nemesis:
                print("  nemesis:", line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
