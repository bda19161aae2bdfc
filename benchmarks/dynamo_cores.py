"""Three leaderless replica cores in one process, wired through the wire form: what the
in-process leaderless benchmarks (``leaderless_core_cpu.py``, ``paxos_replica_cpu.py``) drive.

``three_replicas()`` makes ``core/dynamo/replica.py`` replicas n1, n2, n3 (N = 3: every one a
replica of every key) and has them exchange ``Hello`` as on connect, so every peer takes the
newest forms. ``deliver(nodes, frm, effects, now)`` sends ``frm``'s ``Send`` effects as the
runtime does (``Replica.frames`` -> ``messages.decode`` -> ``Replica.step`` on the peer) and
delivers the answers the same way, until none is left; ``seen`` gets every other effect.
No sockets, WAL, view or client: a script's CPU figure is the three cores' alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from replikv.config import NodeOptions
from replikv.core.dynamo import messages as dm
from replikv.core.dynamo.replica import Replica, Send
from replikv.core.dynamo.ring import Ring

N3 = ["n1", "n2", "n3"]
FRAME_BYTES = NodeOptions().max_frame_bytes  # the runtime's default


def deliver(nodes: dict[str, Replica], frm: str, effects: list[Any], now: int,
            seen: Callable[[Any], None] | None = None) -> None:
    sends = []
    for e in effects:
        if isinstance(e, Send):
            sends.append(e)
        elif seen is not None:
            seen(e)
    if not sends:
        return
    for peer, frame in nodes[frm].frames(sends, FRAME_BYTES):
        msg = dm.decode(frame)
        out: list[Any] = []
        for one in msg.msgs if isinstance(msg, dm.Batch) else (msg,):
            out.extend(nodes[peer].step(frm, one, now, now * 1000))
        deliver(nodes, peer, out, now, seen)


def three_replicas() -> dict[str, Replica]:
    nodes = {n: Replica(n, Ring(N3, 3, 16), conflicts="lww", timeout_us=10**12, rng=random.Random(1),
                        ae_interval_ms=0) for n in N3}
    for a in N3:
        for b in N3:
            if a != b:
                deliver(nodes, a, nodes[a].peer_connected(b, 0, 0), 0)
    return nodes
