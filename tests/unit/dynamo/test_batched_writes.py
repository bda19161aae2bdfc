"""core/dynamo/replica.py: the delta writes one coordinator sends one replica in a loop iteration
travel as one ``Puts`` and are acknowledged as one ``PutAcks`` (``Replica.frames``), to peers that
announced the feature (``Hello``); older peers keep getting the single messages."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest

from replikv.config import NodeOptions
from replikv.core.dynamo import messages as dm
from replikv.core.dynamo import paxos_messages as pm
from replikv.core.dynamo.replica import ASKING_HELLO, HELLO_ASKS, Changed, Persist, Replica, Send, WriteDone
from replikv.core.dynamo.ring import Ring
from replikv.kv.crdt_writes import translate

N3 = ["n1", "n2", "n3"]
FRAME_BYTES = NodeOptions().max_frame_bytes


def replica(name: str, batches: bool = True, announced: tuple[str, ...] = ("n1", "n2", "n3")) -> Replica:
    r = Replica(name, Ring(N3, 3, 16), conflicts="lww", timeout_us=10**9, rng=random.Random(1), ae_interval_ms=0,
                batches=batches)
    for peer in announced:
        if peer != name:
            r.step(peer, dm.Hello(features=(dm.FEATURE_PUTS,)), 0, 0)
    return r


def write(r: Replica, req: int, now: int, *argv: bytes, needed: int = 3) -> list[Any]:
    muts, _ = translate(r.store, list(argv), now, random.Random(0))
    return r.write(req, muts, r.hlc.now(now), N3, needed, N3, (), now, now * 1000)


def frames_to(r: Replica, effects: list[Any], peer: str) -> list[Any]:
    """The messages of the frames ``r`` sends ``peer`` for these effects, decoded, frame by frame."""
    out = []
    for to, frame in r.frames([e for e in effects if isinstance(e, Send)], FRAME_BYTES):
        if to == peer:
            msg = dm.decode(frame)
            out.append(list(msg.msgs) if isinstance(msg, dm.Batch) else [msg])
    return out


def deliver(frm: Replica, to: Replica, effects: list[Any], now: int) -> list[Any]:
    """Carry ``frm``'s sends to ``to`` through the wire form; ``to``'s effects."""
    back: list[Any] = []
    for frame in frames_to(frm, effects, to.node):
        for msg in frame:
            back.extend(to.step(frm.node, msg, now, now * 1000))
    return back


def test_the_wire_form_of_the_batched_messages_round_trips_and_garbage_is_refused() -> None:
    for msg in (dm.Puts(writes=((1, b"d1"), (7, b"d2"))), dm.PutAcks(ok=(1, 2), refused=(3,)),
                dm.PutAcks(ok=(), refused=()), dm.Hello(features=("puts", "later")), dm.Hello(features=())):
        assert dm.decode(dm.encode(msg)) == msg
        assert dm.decode(dm.encode(dm.Batch(msgs=(msg, dm.PutAck(req=1, ok=True))))) == dm.Batch(
            msgs=(msg, dm.PutAck(req=1, ok=True)))
    for bad in ([15, [[1]]], [15, [[1, "text"]]], [15, [[-1, b"d"]]], [15, [[1, b""]]], [15, "x"],
                [16, [1], ["x"]], [16, [1]], [17, [1]], [17, "puts"]):
        with pytest.raises(dm.DynamoCodecError):
            dm.decode(msgpack.packb(bad))


def test_one_iterations_writes_to_a_peer_go_as_one_puts_applied_in_one_pass_and_acked_as_one() -> None:
    n1, n2 = replica("n1"), replica("n2")
    out = [*write(n1, 1, 10, b"SET", b"a", b"1"), *write(n1, 2, 11, b"SADD", b"s", b"x"),
           *write(n1, 3, 12, b"SET", b"a", b"2")]  # the second write of a: its base is the first
    [frame] = frames_to(n1, out, "n2")
    assert len(frame) == 1 and isinstance(frame[0], dm.Puts)
    assert [req for req, _ in frame[0].writes] == [1, 2, 3]  # in the order they were made
    back = n2.step("n1", frame[0], 13, 13_000)
    [entry] = [e.entry for e in back if isinstance(e, Persist)]  # one WAL entry for the batch
    assert entry[0] == "wds" and entry[1] == [d for _, d in frame[0].writes] and entry[2] == 13
    assert back.index(next(e for e in back if isinstance(e, Persist))) < min(
        i for i, e in enumerate(back) if isinstance(e, Send))  # logged before the acks leave
    assert [e.keys for e in back if isinstance(e, Changed)] == [(b"a", b"s")]  # one view update
    replayed = replica("n2")
    replayed.replay(entry)  # a restart: the one entry rebuilds what the three writes made
    for key in (b"a", b"s"):
        assert n2.store.key_blob(key) == n1.store.key_blob(key) == replayed.store.key_blob(key)
    [acks] = frames_to(n2, back, "n1")
    assert acks == [dm.PutAcks(ok=(1, 2, 3), refused=())]
    done = [e for e in n1.step("n2", acks[0], 14, 14_000) if isinstance(e, WriteDone)]
    assert [d.req for d in done] == []  # needed 3: n3 has not answered
    n3 = replica("n3")
    answers = deliver(n1, n3, out, 15)
    finished = []
    for msg in frames_to(n3, answers, "n1")[0]:
        finished += [e for e in n1.step("n3", msg, 16, 16_000) if isinstance(e, WriteDone)]
    assert sorted(d.req for d in finished) == [1, 2, 3] and all(d.ok and d.acks == 3 for d in finished)


def test_a_write_in_a_batch_whose_base_is_missing_falls_back_to_the_whole_state_alone() -> None:
    n1, n3 = replica("n1"), replica("n3")
    write(n1, 1, 10, b"SET", b"k", b"v1")  # n3 never gets this one
    out = [*write(n1, 2, 20, b"SET", b"k", b"v2"), *write(n1, 3, 21, b"SET", b"other", b"x")]
    [[puts]] = frames_to(n1, out, "n3")
    back = n3.step("n1", puts, 22, 22_000)
    assert not n3.store.known(b"k") and n3.store.known(b"other")
    [msgs] = frames_to(n3, back, "n1")
    assert msgs == [dm.PutNeed(req=2, keys=(b"k",)), dm.PutAcks(ok=(3,), refused=())]
    full = n1.step("n3", msgs[0], 23, 23_000)
    [[put]] = frames_to(n1, full, "n3")
    assert isinstance(put, dm.Put) and put.req == 2 and put.states and not put.delta
    acked = n3.step("n1", put, 24, 24_000)
    assert n3.store.key_blob(b"k") == n1.store.key_blob(b"k")
    assert frames_to(n3, acked, "n1") == [[dm.PutAcks(ok=(2,), refused=())]]


def test_a_peer_that_never_announced_gets_single_puts_and_acks_and_a_new_node_takes_them() -> None:
    old = replica("n2", batches=False, announced=())
    n1 = replica("n1", announced=("n3",))  # n2 never said Hello: an older version
    out = [*write(n1, 1, 10, b"SET", b"a", b"1"), *write(n1, 2, 11, b"SET", b"b", b"2")]
    [frame] = frames_to(n1, out, "n2")
    assert [type(m) for m in frame] == [dm.Put, dm.Put] and all(m.delta for m in frame)
    assert [type(m) for m in frames_to(n1, out, "n3")[0]] == [dm.Puts]  # n3 announced
    back = [e for m in frame for e in old.step("n1", m, 12, 12_000)]
    # the old node ignores a Hello (its decoder drops the frame) and answers with single acks
    assert old.step("n1", dm.Hello(features=(dm.FEATURE_PUTS,)), 12, 12_000) == [] and not old.batch_peers
    assert frames_to(old, back, "n1") == [[dm.PutAck(req=1, ok=True), dm.PutAck(req=2, ok=True)]]
    assert "n2" not in n1.batch_peers and n1.peer_connected("n2", 13, 13_000)[:1] == [
        Send(to="n2", msg=ASKING_HELLO)]
    assert [e for e in old.peer_connected("n1", 13, 13_000) if isinstance(e.msg, dm.Hello)] == []


def test_a_hello_leaves_alone_in_its_own_frame_and_a_disconnect_forgets_the_announcement() -> None:
    n1 = replica("n1")
    effects = [*write(n1, 1, 10, b"SET", b"a", b"1"), *n1.peer_connected("n2", 11, 11_000)]
    frames = [(to, dm.decode(f)) for to, f in n1.frames([e for e in effects if isinstance(e, Send)], FRAME_BYTES)]
    assert frames[0] == ("n2", ASKING_HELLO)
    n1.peer_down("n2", 12, 12_000)
    assert "n2" not in n1.batch_peers
    [frame] = frames_to(n1, write(n1, 2, 13, b"SET", b"a", b"2"), "n2")
    assert [type(m) for m in frame] == [dm.Put]  # until it announces again


def hellos(effects: list[Any], peer: str) -> list[dm.Hello]:
    return [e.msg for e in effects if isinstance(e, Send) and e.to == peer and isinstance(e.msg, dm.Hello)]


def test_an_asking_hello_is_answered_and_sent_again_every_tick_until_the_peer_announces() -> None:
    """Replica's module docstring, "The asking Hello": a peer forgets our features when its own
    connection drops, and a Hello can be lost, so the Hello sent on connect asks for an answer
    and goes again each tick until one from the peer arrives (``HELLO_ASKS`` at most)."""
    n1, n2 = replica("n1", announced=()), replica("n2", announced=())
    assert hellos(n1.peer_connected("n2", 10, 10_000), "n2") == [ASKING_HELLO]  # lost on its way
    for now in (11, 12):
        assert hellos(n1.tick(now, now * 1000, ["n2"]), "n2") == [ASKING_HELLO]
    answer = n2.step("n1", ASKING_HELLO, 13, 13_000)  # n2 learns n1's features and answers
    assert "n1" in n2.provenance_peers and hellos(answer, "n1") == [dm.Hello(features=dm.FEATURES)]
    assert n1.step("n2", hellos(answer, "n1")[0], 14, 14_000) == []  # an answer is not answered
    assert {"n2"} <= n1.batch_peers & n1.provenance_peers & n1.electorate_peers & n1.put_peers
    assert hellos(n1.tick(15, 15_000, ["n2"]), "n2") == []  # answered: no more asking
    # an older node never answers: asked HELLO_ASKS times in all, only while it is up, then left alone
    old = replica("n3", batches=False, announced=())
    assert old.step("n1", ASKING_HELLO, 16, 16_000) == [] and hellos(old.peer_connected("n1", 16, 0), "n1") == []
    sent = len(hellos(n1.peer_connected("n3", 16, 16_000), "n3"))
    assert hellos(n1.tick(17, 17_000, ["n2"]), "n3") == []  # down: not asked, the ask not spent
    for now in range(18, 18 + 2 * HELLO_ASKS):
        sent += len(hellos(n1.tick(now, now * 1000, ["n2", "n3"]), "n3"))
    assert sent == HELLO_ASKS and "n3" not in n1.batch_peers
    n1.peer_connected("n2", 40, 40_000)  # n2 reconnected: ask again; a disconnect ends the asking
    n1.peer_down("n2", 41, 41_000)
    assert hellos(n1.tick(42, 42_000, ["n2"]), "n2") == []


def test_a_paxos_message_with_provenance_proves_its_sender_reads_provenance() -> None:
    """A node sends provenance only to peers it knows read it, so a Paxos message that carries it
    comes from a node that reads it: the receiver sends it provenance from then on, even if its
    Hello never arrived. One without it proves nothing (an older node, or our Hello lost)."""
    n1 = replica("n1", announced=())
    ballot = pm.Ballot(hlc=5 << 16, node="n2")
    plain = pm.Commit(req=1, sender="n2", key=b"k", ballot=ballot, value=b"v")
    n1.step("n2", dm.Paxos(data=pm.encode(plain)), 10, 10_000)
    assert "n2" not in n1.provenance_peers
    n1.step("n2", dm.Paxos(data=pm.encode(pm.Commit(req=2, sender="n2", key=b"k", ballot=ballot, value=b"v",
                                                  origin=ballot, after=pm.ZERO_BALLOT))), 11, 11_000)
    assert "n2" in n1.provenance_peers and "n2" not in n1.batch_peers
    old = replica("n3", batches=False, announced=())  # an older node keeps sending the older forms
    old.step("n2", dm.Paxos(data=pm.encode(pm.Commit(req=3, sender="n2", key=b"k", ballot=ballot, value=b"v",
                                                   origin=ballot, after=pm.ZERO_BALLOT))), 12, 12_000)
    assert not old.provenance_peers


def test_batched_messages_take_the_place_of_the_first_they_replace() -> None:
    n1 = replica("n1")
    msgs: list[Any] = [dm.Get(req=9, keys=(b"x",)), dm.Put(req=1, states=(), delta=b"d1"),
                       dm.PutAck(req=5, ok=True), dm.Put(req=2, states=((b"k", b"s"),)),
                       dm.Put(req=3, states=(), delta=b"d3"), dm.PutAck(req=6, ok=False),
                       dm.Put(req=4, states=((b"k", b"s"),), hint_for="n3")]
    [(to, frame)] = n1.frames([Send(to="n2", msg=m) for m in msgs], FRAME_BYTES)
    assert to == "n2" and dm.decode(frame) == dm.Batch(msgs=(
        dm.Get(req=9, keys=(b"x",)), dm.Puts(writes=((1, b"d1"), (3, b"d3"))), dm.PutAcks(ok=(5,), refused=(6,)),
        dm.Put(req=2, states=((b"k", b"s"),)), dm.Put(req=4, states=((b"k", b"s"),), hint_for="n3")))


def test_a_replica_whose_disk_refuses_writes_refuses_every_write_of_a_batch() -> None:
    n1, n2 = replica("n1"), replica("n2")
    out = [*write(n1, 1, 10, b"SET", b"a", b"1"), *write(n1, 2, 11, b"SET", b"b", b"2")]
    [[puts]] = frames_to(n1, out, "n2")
    back = n2.step("n1", puts, 12, 12_000, writable=False)
    assert not n2.store.known(b"a") and not any(isinstance(e, Persist) for e in back)
    [[acks]] = frames_to(n2, back, "n1")
    assert acks == dm.PutAcks(ok=(), refused=(1, 2))
    hints = n1.step("n2", acks, 13, 13_000)
    assert not any(isinstance(e, WriteDone) for e in hints)
    assert n1.hints.pending("n2") == 2  # the coordinator keeps hints for the refusing replica


def test_a_garbled_delta_in_a_batch_is_refused_and_the_others_applied() -> None:
    n1, n2 = replica("n1"), replica("n2")
    [[puts]] = frames_to(n1, write(n1, 1, 10, b"SET", b"a", b"1"), "n2")
    back = n2.step("n1", dm.Puts(writes=((7, b"\x93junk"), *puts.writes)), 11, 11_000)
    assert frames_to(n2, back, "n1") == [[dm.PutAcks(ok=(1,), refused=(7,))]]
    assert n2.store.key_blob(b"a") == n1.store.key_blob(b"a") and n2.stats["bad_states"] == 1


def test_the_acks_of_one_iteration_leave_as_one_putacks_whatever_they_answer() -> None:
    n1, n2 = replica("n1"), replica("n2")
    [[first]] = frames_to(n1, write(n1, 1, 10, b"SET", b"a", b"1"), "n2")
    [[second]] = frames_to(n1, write(n1, 2, 11, b"SET", b"b", b"2"), "n2")  # a later iteration's frame
    hint = n2.step("n3", dm.Put(req=40, states=(), hint_for="n1"), 12, 12_000)  # to another peer
    back = [*n2.step("n1", first, 12, 12_000), *n2.step("n1", second, 12, 12_000), *hint]
    assert [type(e.msg) for e in back if isinstance(e, Send)] == [dm.PutAcks, dm.PutAcks, dm.PutAck]
    assert frames_to(n2, back, "n1") == [[dm.PutAcks(ok=(1, 2), refused=())]]
    assert n2.stats["write_batches"] == 2 and n2.stats["batched_writes"] == 2


def test_a_putacks_holding_a_hint_deliverys_ack_and_a_writes_ack_settles_both() -> None:
    """The ok list of a ``PutAcks`` is counted in one call when it can only hold writes' acks; with a
    hint delivery in flight it may hold that one's too, which must mark the hints delivered."""
    n1 = replica("n1")
    n1.hold_hints("n2", [(b"h", n1.store.key_blob(b"h") or _state_of(b"h"))], 1, [])
    [hint_send] = n1.deliver_hints("n2", 1_000, 10**9, 1)
    write(n1, 1, 10, b"SET", b"a", b"1", needed=2)
    back = n1.step("n2", dm.PutAcks(ok=(hint_send.msg.req, 1), refused=()), 11, 11_000)
    assert WriteDone(req=1, ok=True, acks=2, needed=2, hinted=0) in back
    assert n1.hints.pending("n2") == 0 and n1.stats["hints_delivered"] == 1
    assert [e.entry[0] for e in back if isinstance(e, Persist)] == ["hd"]


def _state_of(key: bytes) -> bytes:
    other = replica("n3")
    write(other, 1, 5, b"SET", key, b"v")
    blob = other.store.key_blob(key)
    assert blob is not None
    return blob
