#!/usr/bin/env python3
"""What a leaderless replica spends on one replicated write: joining the key's whole state
(``KeyedStore.join_key``, the path before deltas) against applying the write's delta
(``KeyedStore.apply_delta``), for a string and for sets of growing size, and the bytes each ships.

    .venv/bin/python benchmarks/delta_apply.py

This is a script, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import random
import sys
import time

from replikv.core.crdt.hlc import Hlc
from replikv.core.crdt.keyed import KeyedStore, decode_delta, write_delta
from replikv.kv.crdt_writes import translate


def case(kind: str, n: int) -> tuple[KeyedStore, bytes, bytes]:
    """A replica holding ``n`` writes of the key, the writer's whole state after one more, its delta."""
    a, b = KeyedStore(), KeyedStore()
    clock, ms = Hlc(), 1_700_000_000_000
    for i in range(n + 1):
        ms += 1
        argv = [b"SADD", b"k", b"m%d" % i] if kind == "set" else [b"SET", b"k", b"v%d" % i]
        muts, _ = translate(a, argv, ms, random.Random(0))
        hlc = clock.now(ms)
        before = {b"k": dict(a.context(b"k"))}
        delta = write_delta("a", hlc, muts, before)
        if i == n:
            blob_before = a.key_blob(b"k")
            if blob_before is not None:
                b.join_key(b"k", blob_before, ms)
        a.apply_write("a", hlc, muts, ms)
    blob = a.key_blob(b"k")
    assert blob is not None
    return b, blob, delta


def main() -> int:
    print("| key | whole state, bytes | delta, bytes | join whole state, µs | apply delta, µs |")
    print("|---|--:|--:|--:|--:|")
    for kind, n in (("string", 1), ("string", 100), ("set", 10), ("set", 100), ("set", 1000)):
        b, blob, delta = case(kind, n)
        snap = b.snapshot()
        reps = 200 if n >= 1000 else 2000

        def timed(op: str, snap: bytes = snap, blob: bytes = blob, delta: bytes = delta, reps: int = reps) -> float:
            """Seconds per operation, on fresh copies of the replica (made outside the timing)."""
            best = float("inf")
            for _ in range(3):
                copies = [KeyedStore.restore(snap) for _ in range(reps)]
                t = time.perf_counter()
                if op == "join":
                    for c in copies:
                        c.join_key(b"k", blob, 0)
                else:
                    for c in copies:
                        c.apply_delta(decode_delta(delta), 0)
                best = min(best, (time.perf_counter() - t) / reps)
            return best

        tf, td = timed("join"), timed("delta")
        label = f"{kind}, {n} write{'s' if n > 1 else ''} before" if kind == "string" else f"set of {n + 1}"
        print(f"| {label} | {len(blob):,} | {len(delta):,} | {tf * 1e6:,.1f} | {td * 1e6:,.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
