"""core/dynamo/replica.py: a leaderless SET is one ``put`` mutation when every replica of the
write announced ``FEATURE_PUT_MUT`` (``Hello``); otherwise the coordinator expands it
(``without_put``) before applying it, so every replica, the older one included, applies the
same mutations and holds the same entries."""

from __future__ import annotations

import random
from typing import Any

from replikv.core.crdt.keyed import decode_delta
from replikv.core.dynamo import messages as dm
from replikv.core.dynamo.replica import Persist, Replica, Send
from replikv.core.dynamo.ring import Ring
from replikv.kv.crdt_writes import translate

N3 = ["n1", "n2", "n3"]


def replica(name: str, old: tuple[str, ...] = ()) -> Replica:
    """A node of this version; the peers in ``old`` are of the version before ``put`` deltas
    (they announce the batches only)."""
    r = Replica(name, Ring(N3, 3, 16), conflicts="lww", timeout_us=10**9, rng=random.Random(1), ae_interval_ms=0)
    for peer in N3:
        if peer != name:
            feats = (dm.FEATURE_PUTS,) if peer in old else dm.FEATURES
            r.step(peer, dm.Hello(features=feats), 0, 0)
    return r


def set_on(r: Replica, req: int, now: int, key: bytes, value: bytes) -> list[Any]:
    muts, _ = translate(r.store, [b"SET", key, value], now, random.Random(0), "leaderless")
    return r.write(req, muts, r.hlc.now(now), N3, 3, N3, (), now, now * 1000)


def deltas_to(effects: list[Any], peer: str) -> list[bytes]:
    out = []
    for e in effects:
        if isinstance(e, Send) and e.to == peer:
            if isinstance(e.msg, dm.Put) and e.msg.delta:
                out.append(e.msg.delta)
            elif isinstance(e.msg, dm.Puts):
                out.extend(d for _, d in e.msg.writes)
    return out


def kinds(delta: bytes) -> list[str]:
    return [m[0] for m in decode_delta(delta)[2]]


def run(old: tuple[str, ...]) -> tuple[list[Replica], list[list[str]]]:
    """n1 sets ``k`` twice; every delta goes to n2 and n3; the replicas and the deltas' kinds."""
    nodes = [replica(n, old) for n in N3]
    seen = []
    for req, (now, value) in enumerate(((10, b"v1"), (20, b"v2")), 1):
        out = set_on(nodes[0], req, now, b"k", value)
        for peer in nodes[1:]:
            for delta in deltas_to(out, peer.node):
                seen.append(kinds(delta))
                peer.step("n1", dm.Puts(writes=((req, delta),)), now, now * 1000)
    return nodes, seen


def test_a_set_is_one_put_when_every_replica_announced_it_and_replicas_end_equal() -> None:
    nodes, seen = run(old=())
    assert seen == [["put"]] * 4
    assert len({n.store.key_blob(b"k") for n in nodes}) == 1
    assert nodes[2].store.visible(b"k").value == b"v2"


def test_a_set_is_expanded_for_every_replica_when_one_is_older_and_replicas_end_equal() -> None:
    nodes, seen = run(old=("n3",))
    assert seen == [["del", "set", "ttl"]] * 4  # n2 knows put, but gets what n3 gets: the same ids
    assert len({n.store.key_blob(b"k") for n in nodes}) == 1
    assert nodes[1].store.visible(b"k").value == b"v2"


def test_the_coordinators_wal_holds_the_mutations_it_applied() -> None:
    n1 = replica("n1", old=("n2",))
    [entry] = [e.entry for e in set_on(n1, 1, 10, b"k", b"v") if isinstance(e, Persist)]
    assert entry[0] == "w" and [m[0] for m in entry[2]] == ["del", "set", "ttl"]


def test_a_disconnect_forgets_the_announcement() -> None:
    n1 = replica("n1")
    assert kinds(deltas_to(set_on(n1, 1, 10, b"k", b"a"), "n2")[0]) == ["put"]
    n1.peer_down("n2", 11, 11_000)
    n1.step("n2", dm.Hello(features=(dm.FEATURE_PUTS,)), 12, 12_000)  # back as the older version
    assert kinds(deltas_to(set_on(n1, 2, 13, b"k", b"b"), "n3")[0]) == ["del", "set", "ttl"]
