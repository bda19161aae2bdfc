"""core/dynamo/replica.py: client writes joined into one write of the coordinator
(``Replica.begin_batch`` / ``batch_add`` / ``end_batch``; the runtime's pipelined runs): one dot,
one WAL entry, one delta per replica and one request the coordinator tracks. The outcome on the
coordinator, on a replica the delta reaches and on a replica replaying the WAL entry is one and
the same state, and its visible values are those of the writes made one by one."""

from __future__ import annotations

import random
from typing import Any

from replikv.core.crdt.keyed import KeyedStore, decode_delta, write_delta
from replikv.core.dynamo import messages as dm
from replikv.core.dynamo.replica import Changed, Persist, Replica, Send, WriteDone
from replikv.kv.crdt_writes import translate
from tests.unit.dynamo.test_batched_writes import N3, deliver, replica, write


def announce_put(*replicas: Replica) -> None:
    for r in replicas:
        for peer in N3:
            if peer != r.node:
                r.step(peer, dm.Hello(features=(dm.FEATURE_PUTS, dm.FEATURE_PUT_MUT)), 0, 0)


def batch(r: Replica, req: int, now: int, *cmds: list[bytes], needed: int = 3) -> list[Any]:
    b = r.begin_batch(r.hlc.now(now), N3, now)
    for argv in cmds:
        muts, _ = translate(r.store, argv, now, random.Random(0))
        r.batch_add(b, muts)
    return r.end_batch(b, req, needed, N3, now * 1000)


def state(r: Replica) -> dict[bytes, tuple[Any, ...]]:
    return {k: (sorted(r.store.ctx[k].items()), r.store.key_blob(k)) for k in r.store.stored_keys()}


def visible(r: Replica) -> dict[bytes, Any]:
    return {k: r.store.visible(k) for k in r.store.keys()}


CMDS = [[b"SET", b"a", b"1"], [b"SET", b"b", b"1"], [b"SET", b"a", b"2"], [b"SET", b"c", b"x"],
        [b"SET", b"a", b"3"], [b"SET", b"ctr", b"7"], [b"SET", b"s", b"plain"]]


def setup(*rs: Replica) -> list[Any]:
    """Keys with history on every replica: a counter (a SET over it is not one ``put``), a set
    (``put`` leaves the short way), a string. Returns the first replica's WAL entries."""
    n1 = rs[0]
    entries = []
    for i, argv in enumerate([[b"INCR", b"ctr"], [b"SADD", b"s", b"m"], [b"SET", b"b", b"old"]]):
        out = write(n1, 100 + i, 5 + i, *argv)
        entries += [e.entry for e in out if isinstance(e, Persist)]
        for r in rs[1:]:
            deliver(n1, r, out, 5 + i)
    return entries


def test_a_batch_is_one_write_the_same_on_the_coordinator_a_replica_and_a_replay() -> None:
    n1, n2 = replica("n1"), replica("n2")
    announce_put(n1, n2)
    history = setup(n1, n2)
    base = {k: dict(c) for k, c in n1.store.ctx.items()}
    out = batch(n1, 1, 20, *CMDS)
    [entry] = [e.entry for e in out if isinstance(e, Persist)]  # one WAL entry, every mutation in order
    assert entry[0] == "w" and entry[3] == 20 and len(entry[2]) == len(CMDS) + 2  # SET ctr: del, set, ttl
    [changed] = [e.keys for e in out if isinstance(e, Changed)]
    assert changed == (b"a", b"b", b"c", b"ctr", b"s")
    puts = [e.msg for e in out if isinstance(e, Send)]
    assert [(p.req, bool(p.delta)) for p in puts] == [(1, True), (1, True)]  # one delta to each other replica
    origin, hlc, muts, before = decode_delta(puts[0].delta)
    assert (origin, hlc) == ("n1", entry[1]) and muts == [list(m) for m in entry[2]]
    assert before == {k: base.get(k, {}) for k in changed}  # each key's context before the batch
    back = deliver(n1, n2, out, 21)
    assert [e.msg for e in back if isinstance(e, Send)] == [dm.PutAcks(ok=(1,), refused=())]  # one ack
    assert state(n2) == state(n1)
    replayed = replica("n1")
    for e in [*history, entry]:  # a restart of n1: its WAL rebuilds the batch's outcome
        replayed.replay(e)
    assert state(replayed) == state(n1)


def test_a_batch_shows_the_values_of_its_writes_made_one_by_one() -> None:
    n1, alone = replica("n1"), replica("n1")
    announce_put(n1, alone)
    setup(n1)
    setup(alone)
    batch(n1, 1, 20, *CMDS)
    for i, argv in enumerate(CMDS):
        write(alone, 10 + i, 20, *argv)
    assert visible(n1) == visible(alone)
    assert n1.store.visible(b"a").value == b"3" and n1.store.visible(b"ctr").value == b"7"


def test_a_batchs_ack_counts_once_and_a_replica_that_does_not_ack_gets_a_hint_of_every_key() -> None:
    n1, n2 = replica("n1"), replica("n2")
    announce_put(n1, n2)
    out = batch(n1, 1, 20, [b"SET", b"a", b"1"], [b"SET", b"b", b"2"], needed=2)
    assert not [e for e in out if isinstance(e, WriteDone)]  # QUORUM: waits for one more replica
    acks = [e for e in deliver(n1, n2, out, 21) if isinstance(e, Send)]
    done = []
    for e in acks:
        done += [x for x in n1.step("n2", e.msg, 22, 22_000) if isinstance(x, WriteDone)]
    assert done == [WriteDone(req=1, ok=True, acks=2, needed=2, hinted=0)]
    late = n1.requests_due(30, 10**12)  # n3 never acked: at the deadline n1 keeps its hint
    assert n1.hints.pending("n3") == 2 and not [e for e in late if isinstance(e, WriteDone)]


def test_a_batch_expands_put_for_a_replica_that_does_not_know_it() -> None:
    n1, n2 = replica("n1"), replica("n2")  # FEATURE_PUT_MUT not announced
    out = batch(n1, 1, 20, [b"SET", b"a", b"1"], [b"SET", b"a", b"2"])
    [entry] = [e.entry for e in out if isinstance(e, Persist)]
    assert [m[0] for m in entry[2]] == ["del", "set", "ttl"] * 2
    deliver(n1, n2, out, 21)
    assert state(n2) == state(n1) and n2.store.visible(b"a").value == b"2"


def test_a_delta_of_several_puts_observes_exactly_its_base_and_its_own_entries() -> None:
    """``apply_delta``'s short way for the puts of a several-mutation delta observes the vv
    ``{**base, origin: hlc}``; a replica holding an entry of the origin newer than the delta's base
    (the origin lost it: a crash under ``--fsync everysec``) must keep it as the exact rule does,
    not take it as observed."""
    coord, rep = KeyedStore(), KeyedStore()
    rep.apply_write("n1", 50, [("put", b"k", b"lost", None)], 1)  # n1 no longer holds dot 50
    before: dict[bytes, dict[str, int]] = {}
    muts = [("put", b"k", b"x", None), ("put", b"k", b"y", None)]
    coord.write_more("n1", 80, muts, 0, before, 2)
    changed, missing = rep.apply_delta(decode_delta(write_delta("n1", 80, muts, before)), 3)
    assert changed == [b"k"] and missing == []
    kept = sorted((eid, v) for eid, (_, v) in rep.state(b"k").reg.items())
    assert kept == [(("n1", 50, 0), b"lost"), (("n1", 80, 1), b"y")]  # the newer own entry stays
    # the coordinator's own outcome, from the state it held (nothing of dot 50)
    assert [v for _, (_, v) in coord.state(b"k").reg.items()] == [b"y"]
