"""How checking time grows with the history: every checker on synthetic histories of 10^4 to 10^6 ops.

Usage: python benchmarks/check_scale.py [--sizes 10000,100000,1000000] [--huge] [--keys 10]
       [--clients 12] [--dir DIR]

For each size it generates two register histories with synth.py (a correct
store: several keys, concurrent clients, 1% unknown-outcome and 2% failed
ops; and the same with injected stale reads and lost writes), writes each to
a JSON-lines file as a run would, then times, from that file:
- `index`: HistoryFile's pass over the file;
- each checker alone over the keys (each key's ops decoded beforehand, not timed);
- `all, from file`: the runner's path, every register checker in one pass
  over the keys, decoding each key's ops as it goes.
and prints the time per op and the ratio to the previous size: with n log n
growth the time per op grows by a small constant per decade, with n^2 it
grows tenfold. `--huge` adds 10^7 ops (about 1.3 GB of history and a few GB
of memory). The reference is the first size, measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from replikv.check.checkers import key_checkers
from replikv.check.elle import check_list_append
from replikv.check.history import HistoryFile, HistoryWriter
from replikv.check.result import run_key_checkers
from replikv.check.synth import iter_register_history, list_append_history


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write(path: Path, n: int, keys: int, clients: int, anomalies: bool) -> int:
    w = HistoryWriter(path, flush_every_s=3600)
    kw = {"stale": 5, "lost": 5} if anomalies else {}
    for op in iter_register_history(n, keys=keys, clients=clients, seed=n, **kw):
        w.append(op)
    w.close()
    return w.count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--huge", action="store_true", help="add 10^7 ops")
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--clients", type=int, default=12)
    ap.add_argument("--dir", type=Path, default=None, help="where the history files go (default: a temp dir)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] + ([10_000_000] if args.huge else [])
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}")
    print(f"histories: register workload, {args.keys} keys, {args.clients} clients, 1% unknown, "
          "2% failed; 'bad' adds 5 stale reads and 5 lost writes")
    names = [c.name for c in key_checkers("register")]
    header = f"{'ops':>9} {'variant':<5} {'step':<18} {'seconds':>8} {'us/op':>7} {'x prev size':>11}  verdict"
    print(header)
    prev: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in sizes:
            for variant in ("ok", "bad"):
                path = Path(tmp) / f"{n}.{variant}.jsonl"
                count = write(path, n, args.keys, args.clients, variant == "bad")
                rows: list[tuple[str, float, str]] = []
                t0 = time.perf_counter()
                hf = HistoryFile(path)
                rows.append(("index", time.perf_counter() - t0, f"{path.stat().st_size / 1e6:.0f} MB"))
                groups = list(hf.by_key())
                for i, name in enumerate(names):
                    for g in groups:
                        g.memo.clear()  # each checker pays for what it derives
                    checker = key_checkers("register", timeout_s=600)[i]
                    gc.collect()
                    t0 = time.perf_counter()
                    res = run_key_checkers(groups, [checker])[0]
                    rows.append((name, time.perf_counter() - t0, f"{res.status} ({res.count})"))
                del groups
                gc.collect()
                t0 = time.perf_counter()
                results = run_key_checkers(hf.by_key(), key_checkers("register", timeout_s=600))
                rows.append(("all, from file", time.perf_counter() - t0,
                             " ".join(r.status for r in results)))
                hf.close()
                path.unlink()
                for step, secs, verdict in rows:
                    per_op = secs / count * 1e6
                    before = prev.get((variant, step))
                    ratio = f"{secs / before:.1f}" if before else "-"
                    prev[(variant, step)] = secs
                    print(f"{count:>9} {variant:<5} {step:<18} {secs:>8.2f} {per_op:>7.2f} {ratio:>11}  {verdict}",
                          flush=True)
    print("list-append (check/elle.py): serializable histories of n transactions, 20 keys rotating "
          "every 200 transactions, 12 clients")
    prev_secs = 0.0
    for n in sizes[:3]:  # 10^7 transactions would not fit in memory as a list of Ops
        ops = list_append_history(n)
        gc.collect()
        t0 = time.perf_counter()
        res = check_list_append(ops)
        secs = time.perf_counter() - t0
        ratio = f"{secs / prev_secs:.1f}" if prev_secs else "-"
        prev_secs = secs
        print(f"{n:>9} {'ok':<5} {'list-append':<18} {secs:>8.2f} {secs / n * 1e6:>7.2f} {ratio:>11}  "
              f"{res.status} ({res.stats['edges']:.0f} edges)", flush=True)
        del ops
    print(f"peak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
