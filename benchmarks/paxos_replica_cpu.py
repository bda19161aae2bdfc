#!/usr/bin/env python3
"""CPU per Paxos write on the replica core alone, in one process: no sockets, WAL, view or client.

``paxos_core_cpu.py`` drives ``core/dynamo/paxos.py`` by itself; this drives three
``core/dynamo/replica.py`` replicas (N = 3, every one a replica of every key) as the leaderless
runtime does: they exchange ``Hello`` as on connect (so every peer takes the newest Paxos forms:
thrifty phases, commit on accept, quiet commits), then each in turn starts ``--per`` Paxos writes
per iteration (``Replica.paxos`` with SET NX's decider, on fresh random keys out of 10^8, as
``multileader_cpu.py --command 'SET fresh:__rand_int__ y NX' --keyspace 100000000``), and their
frames (``Replica.frames``) go through the wire form (``messages.decode``, ``Replica.step``) to the
other two, whose answers come back the same way, until every round is done. It prints the process
CPU time per write: what the three replicas' cores spend together, without the cluster run's
sockets, WAL and event loop, nor the machine's other load setting the figure through the client
rate (it still moves with cache and CPU contention: alternate trees when comparing).

    PYTHONPATH=src .venv/bin/python benchmarks/paxos_replica_cpu.py [-n 6000] [--per 4] [--profile]

A script, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from dynamo_cores import N3, deliver, three_replicas
from replikv.core.dynamo.replica import PaxosDone


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=6000, help="Paxos writes")
    ap.add_argument("--per", type=int, default=4, help="writes a replica starts per iteration")
    ap.add_argument("--profile", action="store_true", help="cProfile the run instead (top 35 by own time)")
    args = ap.parse_args()
    nodes = three_replicas()
    done = [0]

    def count(e: Any) -> None:
        if isinstance(e, PaxosDone):
            done[0] += 1

    rng = random.Random(7)

    def decide(current: bytes | None) -> bytes | None:
        return b"y" if current is None else current  # SET NX

    def run() -> None:
        req = 0
        for it in range(args.n // args.per):
            name = N3[it % 3]
            now = 1_000_000 + it
            effects: list[Any] = []
            for _ in range(args.per):
                req += 1
                effects.extend(nodes[name].paxos(req, b"fresh:%012d" % rng.randrange(10**8), decide, now))
            deliver(nodes, name, effects, now, count)

    if args.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.runcall(run)
        pstats.Stats(prof).sort_stats("tottime").print_stats(35)
        return 0
    started = time.process_time()
    run()
    took = time.process_time() - started
    writes = args.n // args.per * args.per
    print(f"{1e6 * took / writes:.1f} us CPU per Paxos write (replica core, 3 replicas); "
          f"rounds done {done[0]} of {writes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
