#!/usr/bin/env python3
"""Anti-entropy's event-loop cost after a burst of writes, in-process (3 Replica cores, N=3):
issue 9's QUORUM GET p99 spikes (BENCHMARKS.md, session 24, helper tl24).

10,000 keys in the trees, then 15,000 fresh keys written on n1 and joined into n2 and n3 (as a
replicated SET NX phase leaves them: equal states, not yet in any tree); then 40 s of virtual time,
every node ticking every 100 ms (anti-entropy every 10 s), messages delivered at once. Prints
the CPU time of every tick/step call over 5 ms: count, max, total, and the worst per kind
(each call is one event-loop callback on a node: what a client's request may wait behind).

    PYTHONPATH=src .venv/bin/python benchmarks/leaderless_ae_steps.py [fresh keys, 15000] [--rate W]

The GC is frozen once a virtual second, as a node freezes it once a second (``BaseRunner._fsync_loop``).

``--rate W``: also W writes a second over the 10,000 keys all along (n1 coordinates, n2 and n3
join them at once), as a sustained write phase (ONE SET -P 16) keeps every node's backlog of
undigested keys full while the rounds run (session 25, helper ll25).

A script, not a test: it asserts nothing."""
from __future__ import annotations

import argparse
import gc
import random
import time
from typing import Any

from replikv.core.dynamo import messages as dm
from replikv.core.dynamo.replica import Replica, Send
from replikv.core.dynamo.ring import Ring
from replikv.kv.crdt_writes import translate

N3 = ["n1", "n2", "n3"]
parser = argparse.ArgumentParser()
parser.add_argument("keys", type=int, nargs="?", default=15000)
parser.add_argument("--rate", type=int, default=0, help="writes a second over the 10,000 keys, all along")
args = parser.parse_args()
KEYS = args.keys
nodes = {n: Replica(n, Ring(N3, 3, 16), conflicts="lww", timeout_us=10**9, rng=random.Random(i + 7),
                    ae_interval_ms=10_000) for i, n in enumerate(N3)}
now = 1000
r1 = nodes["n1"]


def write(key: bytes) -> None:
    muts, _ = translate(r1.store, [b"SET", key, b"y"], now, random.Random(0))
    r1.local_write(muts, r1.hlc.now(now), now)
    blob = r1.store.key_blob(key)
    for other in ("n2", "n3"):
        nodes[other].store.join_key(key, blob, now)
        nodes[other].dirty[key] = None


for i in range(10_000):  # the SET phases' keys, already in the trees
    write(b"key:%012d" % i)
for n in nodes.values():
    while n.dirty or not n.trees:
        n._update_trees()
for i in range(KEYS):  # the SET NX phase's fresh keys
    write(b"fresh:%012d" % i)


costs: list[float] = []
worst: dict[str, float] = {}
spent: dict[str, float] = {}
def timed(fn: Any, *a: Any, **k: Any) -> Any:
    t = time.thread_time()
    out = fn(*a, **k)
    ms = (time.thread_time() - t) * 1000
    costs.append(ms)
    kind = type(a[1]).__name__ if fn.__name__ == "step" else "tick"
    worst[kind] = max(worst.get(kind, 0.0), ms)
    spent[kind] = spent.get(kind, 0.0) + ms
    return out


wrng = random.Random(5)
for step in range(400):
    now += 100
    if step % 10 == 0:  # as a node does once a second (BaseRunner._fsync_loop): else the cyclic GC's
        gc.collect(1)   # full collections over the 25,000 keys' states land in whichever call is
        gc.freeze()     # running (50-100 ms: seen as one "LeafGet" or "Put" of 95 ms before this)
    for _ in range(args.rate // 10):
        write(b"key:%012d" % wrng.randrange(10_000))
    queue: list[tuple[str, Any]] = []
    for name, r in nodes.items():
        queue.extend((name, e) for e in timed(r.tick, now, now * 1000, N3))
    while queue:
        frm, e = queue.pop(0)
        if isinstance(e, Send):
            msg = dm.decode(dm.encode(e.msg))
            for one in msg.msgs if isinstance(msg, dm.Batch) else (msg,):
                queue.extend((e.to, x) for x in timed(nodes[e.to].step, frm, one, now, now * 1000))
big = [c for c in costs if c > 5]
print(f"keys {KEYS}, rate {args.rate}/s: calls over 5 ms {len(big)}, over 10 ms {sum(c > 10 for c in costs)}, max {max(costs):.1f} ms, "
      f"total {sum(costs):.0f} ms CPU; rounds {sum(n.stats['ae_rounds'] for n in nodes.values())}, "
      f"keys repaired {sum(n.stats['ae_keys_repaired'] for n in nodes.values())}, "
      f"dirty left {[len(n.dirty) for n in nodes.values()]}")
print("worst per call kind (ms CPU):", {k: round(v, 1) for k, v in sorted(worst.items(), key=lambda kv: -kv[1]) if v > 1})
print("CPU per call kind (ms):", {k: round(v) for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v >= 1})
