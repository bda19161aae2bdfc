"""core/dynamo/replica.py: a coordinated write reaches the other replicas as a delta (``Put.delta``),
with the whole key states as the fallback where a replica lacks the delta's base (``PutNeed``)."""

from __future__ import annotations

import random
from typing import Any

from replikv.core.dynamo import messages as dm
from replikv.core.crdt.keyed import KeyedStore
from replikv.core.dynamo.replica import Persist, Replica, Send, WriteDone
from replikv.core.dynamo.ring import Ring
from replikv.kv.crdt_writes import translate

N3 = ["n1", "n2", "n3"]


def replica(name: str, deltas: bool = True) -> Replica:
    return Replica(name, Ring(N3, 3, 16), conflicts="lww", timeout_us=10**9, rng=random.Random(1), ae_interval_ms=0,
                   deltas=deltas)


def write(r: Replica, req: int, now: int, *argv: bytes) -> list[Any]:
    muts, _ = translate(r.store, list(argv), now, random.Random(0))
    return r.write(req, muts, r.hlc.now(now), N3, 3, N3, (), now, now * 1000)


def sends(out: list[Any]) -> dict[str, Any]:
    return {e.to: e.msg for e in out if isinstance(e, Send)}


def deliver(frm: str, to: Replica, msg: Any, now: int) -> list[Any]:
    return to.step(frm, dm.decode(dm.encode(msg)), now, now * 1000)  # through the wire form


def test_a_write_travels_as_a_delta_and_is_acked_by_a_replica_holding_its_base() -> None:
    n1, n2 = replica("n1"), replica("n2")
    out = write(n1, 1, 10, b"SET", b"k", b"v")
    put = sends(out)["n2"]
    assert isinstance(put, dm.Put) and put.delta and put.states == ()
    back = deliver("n1", n2, put, 11)
    assert Send(to="n1", msg=dm.PutAck(req=1, ok=True)) in back
    wal = [e.entry for e in back if isinstance(e, Persist)]
    assert wal and wal[0][0] == "wd"
    assert n2.store.key_blob(b"k") == n1.store.key_blob(b"k")
    # the WAL entry replays to the same state
    again = replica("n2")
    for entry in wal:
        again.replay(entry)
    assert again.store.key_blob(b"k") == n1.store.key_blob(b"k")


def test_a_replica_lacking_the_base_asks_for_the_whole_state_and_acks_it() -> None:
    n1, n3 = replica("n1"), replica("n3")
    write(n1, 1, 10, b"SET", b"k", b"v1")  # n3 never gets this one
    out = write(n1, 2, 20, b"SET", b"k", b"v2")
    back = deliver("n1", n3, sends(out)["n3"], 21)
    assert sends(back) == {"n1": dm.PutNeed(req=2, keys=(b"k",))}
    assert not n3.store.known(b"k")
    full = deliver("n3", n1, sends(back)["n1"], 22)
    put = sends(full)["n3"]
    assert isinstance(put, dm.Put) and put.req == 2 and not put.delta and put.states
    acked = deliver("n1", n3, put, 23)
    assert sends(acked) == {"n1": dm.PutAck(req=2, ok=True)}
    assert n3.store.key_blob(b"k") == n1.store.key_blob(b"k")
    assert not any(isinstance(e, WriteDone) for e in n1.step("n3", dm.PutAck(req=2, ok=True), 24, 24_000))
    done = n1.step("n2", dm.PutAck(req=2, ok=True), 25, 25_000)  # n3's ack counted as any replica's
    assert [e for e in done if isinstance(e, WriteDone)] == [WriteDone(req=2, ok=True, acks=3, needed=3, hinted=0)]


def test_vset_with_a_context_ships_whole_states_and_stand_ins_keep_whole_states() -> None:
    n1 = replica("n1")
    write(n1, 1, 10, b"SET", b"k", b"v1")
    # VSET ... CONTEXT removes what the client's context saw, which may be more than this replica's
    # context: as a delta it could remove more than the join would, so it travels whole
    muts = [("set", b"k", b"v2", None, dict(n1.store.context(b"k")))]
    out = n1.write(2, muts, n1.hlc.now(20), N3, 3, N3, (), 20, 20_000)
    puts = [m for m in sends(out).values() if isinstance(m, dm.Put)]
    assert len(puts) == 2 and all(not m.delta and m.states for m in puts)
    out = n1.write(3, translate(n1.store, [b"SET", b"k", b"v3"], 30, random.Random(0))[0], n1.hlc.now(30),
                   N3, 2, ["n1", "n2", "n4"], ["n4"], 30, 30_000)
    put = sends(out)["n4"]  # n3 down: the stand-in holds a hint, a whole state
    assert isinstance(put, dm.Put) and put.hint_for == "n3" and put.states and not put.delta


def test_a_garbled_delta_is_refused_not_acked() -> None:
    n2 = replica("n2")
    out = n2.step("n1", dm.Put(req=5, states=(), delta=b"\x93junk"), 1, 1000)
    assert sends(out) == {"n1": dm.PutAck(req=5, ok=False)}
    assert n2.stats["bad_states"] == 1


def test_with_deltas_off_writes_ship_whole_states() -> None:
    n1 = replica("n1", deltas=False)
    for i in range(3):
        put = sends(write(n1, 1 + i, 10 + i, b"SADD", b"s", b"member-%d" % i))["n2"]
        assert not put.delta and put.states


def test_a_put_need_for_a_key_the_coordinator_no_longer_holds_gets_the_state_the_write_left() -> None:
    n1 = replica("n1")
    write(n1, 1, 10, b"SET", b"k", b"v1")
    write(n1, 2, 20, b"SET", b"k", b"v2")
    left = n1.store.key_blob(b"k")
    n1._drop([b"k"], [])  # dropped meanwhile (a cleanup after a ring switch)
    assert n1.store.key_blob(b"k") is None
    back = n1.step("n3", dm.PutNeed(req=2, keys=(b"k",)), 21, 21_000)
    assert sends(back) == {"n3": dm.Put(req=2, states=((b"k", left),))}
    n1.coord.writes.clear()  # and once the write is no longer tracked either: nothing to send
    assert sends(n1.step("n3", dm.PutNeed(req=2, keys=(b"k",)), 22, 22_000)) == {}


def test_a_write_takes_no_whole_state_until_one_is_needed() -> None:
    n1 = replica("n1")
    write(n1, 1, 10, b"SET", b"k", b"v1")
    assert n1.coord.writes[1].states is None and n1.coord.writes[1].keys == (b"k",)
    assert b"k" not in n1.store._blobs  # no dump of the key per write
    # a replica believed down at the write: its hint holds the state at once
    muts, _ = translate(n1.store, [b"SET", b"k", b"v2"], 20, random.Random(0))
    out = n1.write(2, muts, n1.hlc.now(20), N3, 2, ["n2"], (), 20, 20_000)
    assert n1.coord.writes[2].states == ((b"k", n1.store.key_blob(b"k")),)
    assert [e.entry[1:4] for e in out if isinstance(e, Persist) and e.entry[0] == "h"] == \
        [["n3", b"k", n1.store.key_blob(b"k")]]


def test_a_hint_taken_late_holds_the_write_and_descends_from_the_state_it_left() -> None:
    """The late state is held to the write-time one (the general path): joined over it, it is itself."""
    n1 = replica("n1")
    write(n1, 1, 10, b"SADD", b"s", b"a")
    left = n1.store.key_blob(b"s")  # what the write left (the eager way's hint)
    write(n1, 2, 20, b"SADD", b"s", b"b")  # a later write of the key, before the first one's deadline
    out = n1.requests_due(30, 10**9 + 11_000)  # req 1's deadline: neither n2 nor n3 acknowledged it
    hints = [(e.entry[1], ((e.entry[2], e.entry[3]),)) for e in out if isinstance(e, Persist) and e.entry[0] == "h"]
    assert sorted(node for node, _ in hints) == ["n2", "n3"]
    for _, states in hints:
        (key, late), = states
        assert key == b"s"
        twin = KeyedStore("lww")
        twin.join_key(b"s", left, 30)
        twin.join_key(b"s", late, 30)
        assert twin.key_blob(b"s") == late  # late descends from what the write left
        assert twin.visible(b"s") is not None and twin.visible(b"s").value >= {b"a"}


def test_a_tombstone_collected_while_its_delete_is_in_flight_leaves_the_write_its_state() -> None:
    n1 = Replica("n1", Ring(N3, 3, 16), conflicts="lww", timeout_us=10**9, rng=random.Random(1), ae_interval_ms=0,
                 tombstone_grace_ms=5)
    write(n1, 1, 10, b"SET", b"k", b"v1")
    write(n1, 2, 20, b"DEL", b"k")
    tomb = n1.store.key_blob(b"k")
    assert n1.coord.writes[2].states is None
    out = n1.tick(30, 30_000, N3)
    assert ["gc", b"k"] in [e.entry for e in out if isinstance(e, Persist)]
    assert n1.store.key_blob(b"k") is None
    back = n1.step("n3", dm.PutNeed(req=2, keys=(b"k",)), 31, 31_000)
    assert sends(back) == {"n3": dm.Put(req=2, states=((b"k", tomb),))}
