#!/usr/bin/env python3
"""CPU of the Paxos core alone per operation: one proposer and three acceptors in one process.

The cluster figures (``multileader_cpu.py --command 'CAS ...'``) add the runtime, the transport
and whatever else the shared machine runs, which on two cores moves them by tens of percent. This
drives ``core/dynamo/paxos.py`` directly: node a proposes on a fresh key each time, the messages
to and from b and c go through the wire codec (``paxos_messages.encode`` / ``decode``), every
``Persist`` is encoded (``encode_state``), and ``ApplyCommit`` writes a dict. It prints the
process CPU per operation for a change (a successful CAS: prepare, propose, commit) and for a
no-op (a failed CAS or a SERIAL read on the key just written).

    PYTHONPATH=src .venv/bin/python benchmarks/paxos_core_cpu.py [-n 20000]

A script, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from replikv.core.crdt.hlc import Hlc
from replikv.core.dynamo import paxos as px
from replikv.core.dynamo import paxos_messages as pm

NODES = ("a", "b", "c")
Value = bytes | None


class Cluster:
    def __init__(self) -> None:
        self.acceptors = {n: px.PaxosAcceptor(n) for n in NODES}
        self.data: dict[tuple[str, bytes], tuple[int, Value]] = {}
        self.hlc = Hlc()
        self.reqs = 0

    def run(self, key: bytes, decide: Callable[[Value], Value]) -> px.Outcome | None:
        """One operation coordinated by a, to the end (no loss, FIFO)."""
        self.reqs += 1
        mine = px.electorate(NODES)
        p = px.PaxosProposer(node="a", key=key, replicas=NODES, quorum=2, rng=random.Random(self.reqs),
                             hlc=self.hlc, req=self.reqs, view=lambda: mine)
        queue = list(p.start(int(time.time() * 1000)))
        while queue:
            e = queue.pop(0)
            if isinstance(e, px.Send):
                msg = e.msg
                if e.to != "a" or msg.sender != "a":  # a remote message: through the codec
                    msg = pm.decode(pm.encode(msg))
                if isinstance(msg, (pm.Prepare, pm.Propose, pm.Commit)):
                    current = self.data.get((e.to, key), (0, None)) if isinstance(msg, pm.Prepare) else None
                    for f in self.acceptors[e.to].step(msg, current, mine):
                        if isinstance(f, px.Send):
                            queue.append(f)
                        elif isinstance(f, px.Persist):
                            pm.encode_state(f.state)
                        elif isinstance(f, px.ApplyCommit):
                            self.data[(e.to, key)] = (f.ballot.hlc, f.value)
                else:
                    queue.extend(p.step(msg))
            elif isinstance(e, px.Decide):
                queue.extend(p.decided(decide(e.current)))
        return p.outcome


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20_000, help="operations of each kind")
    n = ap.parse_args().n
    cluster = Cluster()
    t0 = time.process_time()
    for i in range(n):
        out = cluster.run(b"k%d" % i, lambda _: b"v")
        assert isinstance(out, px.Chosen) and out.changed
    t1 = time.process_time()
    for i in range(n):
        out = cluster.run(b"k%d" % i, lambda current: current)
        assert isinstance(out, px.Chosen) and not out.changed
    t2 = time.process_time()
    print(f"change {1e6 * (t1 - t0) / n:.1f} us CPU per operation, no-op {1e6 * (t2 - t1) / n:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
