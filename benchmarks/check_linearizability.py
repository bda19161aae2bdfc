"""Time the register linearizability checker on the shared histories.

Usage: python benchmarks/check_linearizability.py [DIR] [--repeat N]

DIR defaults to <repo>/../shared/testdata/histories. For each file it prints
the op count, the load time, the best-of-N check time and the verdict. It
asserts nothing: figures go to BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from replikv.check.history import load_history
from replikv.check.linearizability import check_register_history

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "histories"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--repeat", type=int, default=3, help="check each file N times, keep the best")
    args = ap.parse_args()
    files = sorted(p for p in args.dir.glob("*.jsonl*") if p.is_file())
    if not files:
        print(f"no histories found in {args.dir}", file=sys.stderr)
        return 1
    print(f"{'file':<22} {'ops':>7} {'keys':>5} {'load s':>8} {'check s':>8}  verdict")
    for path in files:
        t0 = time.perf_counter()
        ops = load_history(path)
        load_s = time.perf_counter() - t0
        best = float("inf")
        verdict = None
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            verdict = check_register_history(ops, timeout_s=None)
            best = min(best, time.perf_counter() - t0)
        assert verdict is not None
        label = {
            True: "linearizable",
            False: f"NOT linearizable (key {verdict.bad_key})",
            None: "undecided",
        }[verdict.linearizable]
        print(
            f"{path.name:<22} {len(ops):>7} {len(verdict.per_key):>5} "
            f"{load_s:>8.3f} {best:>8.3f}  {label}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
