#!/usr/bin/env python3
"""Memory per key of the multi-leader CRDT store: the RSS a ``CrdtStore`` grows by when it
holds N plain string keys (one remote ``put`` each, what a SET leaves) or N counter keys
(one ``incr`` each). The key names are made before the first reading, so only the store's
own objects count.

    cd benchmarks && PYTHONPATH=<tree>/src python crdt_key_memory.py 1000000 set|incr

A script, not a test: it asserts nothing.
"""

from __future__ import annotations

import gc
import sys

from replikv.core.crdt.store import CrdtStore


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main() -> None:
    n, kind = int(sys.argv[1]), sys.argv[2]
    keys = [b"key:%012d" % i for i in range(n)]
    gc.collect()
    before = rss_kb()
    s = CrdtStore()
    for i, k in enumerate(keys):
        mut = ("put", k, b"xxx", None) if kind == "set" else ("incr", k, 1)
        s.apply("n1", i + 1, 1000 + i, {}, [mut])
    gc.collect()
    after = rss_kb()
    print(f"{kind} {n} keys: store {(after - before) / 1024:.1f} MB, {(after - before) * 1024 / n:.0f} B/key, "
          f"process RSS {after / 1024:.1f} MB")


if __name__ == "__main__":
    main()
