#!/usr/bin/env python3
"""CPU per leaderless SET on the node core alone, in one process: no sockets, WAL, view or client.

Three ``core/dynamo/replica.py`` replicas (N = 3, every one a replica of every key) exchange
``Hello`` as on connect; then each in turn coordinates 16 SETs per iteration (``translate`` and
``Replica.write``, 16-byte values on 10,000 random keys, as redis-benchmark ``-r 10000 -d 16``), its
frames (``Replica.frames``) go through the wire form to the other two (``messages.decode`` and
``Replica.step``), and their acks come back the same way. It prints the process CPU time per write:
what the cores of the three nodes spend together per write, without the machine's other load
setting the figure as a cluster run's ops/s do (it still moves with cache and CPU contention).

    PYTHONPATH=src .venv/bin/python benchmarks/leaderless_core_cpu.py [--level 2] [--iterations 3000] [--batched]

``--batched``: each iteration's 16 SETs as the runtime's pipelined run makes them
(``LeaderlessRunner._write_run``: ``Replica.begin_batch``, ``batch_add`` per SET, ``end_batch``):
one write of the coordinator, one delta and one ack per replica.

A script, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from dynamo_cores import N3, deliver, three_replicas
from replikv.kv.crdt_writes import translate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--level", type=int, default=2, help="acks a write needs (2: QUORUM, 1: ONE)")
    ap.add_argument("--iterations", type=int, default=3000, help="loop iterations (16 SETs each)")
    ap.add_argument("--batched", action="store_true", help="the 16 SETs as one batch (the runtime's runs)")
    args = ap.parse_args()
    nodes = three_replicas()
    rng = random.Random(7)
    value = b"x" * 16
    req = 0
    started = time.process_time()
    for it in range(args.iterations):
        name = N3[it % 3]
        r = nodes[name]
        now = 1_000_000 + it
        effects: list[Any] = []
        if args.batched:
            batch = r.begin_batch(r.hlc.now(now), N3, now)
            for _ in range(16):
                muts, _ = translate(r.store, [b"SET", b"key:%012d" % rng.randrange(10000), value], now, rng)
                r.batch_add(batch, muts)
            req += 1
            effects.extend(r.end_batch(batch, req, args.level, N3, now * 1000))
        for _ in range(0 if args.batched else 16):
            req += 1
            muts, _ = translate(r.store, [b"SET", b"key:%012d" % rng.randrange(10000), value], now, rng)
            effects.extend(r.write(req, muts, r.hlc.now(now), N3, args.level, N3, (), now, now * 1000))
        deliver(nodes, name, effects, now)
    took = time.process_time() - started
    left = sum(len(n.coord.writes) for n in nodes.values())
    print(f"{1e6 * took / (args.iterations * 16):.1f} us CPU per write (core path, 3 replicas, level {args.level}); "
          f"writes still in flight {left}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
