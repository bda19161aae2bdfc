"""core/dynamo/coordinator.py driven with scripted messages."""

from __future__ import annotations

import random

from replikv.core.dynamo import messages as m
import itertools

from replikv.core.dynamo.coordinator import (
    Coordinator,
    Hint,
    LateAnswer,
    ReadDone,
    Send,
    WriteDone,
    level_count,
    stand_ins_matter,
)

REPLICAS = ("a", "b", "c")
STATES = ((b"k", b"blob"),)


def coord(**kw: object) -> Coordinator:
    kw.setdefault("read_repair_chance", 0.0)
    return Coordinator("a", timeout_us=1_000_000, rng=random.Random(1), **kw)  # type: ignore[arg-type]


def sends(effects: list[object]) -> dict[str, object]:
    return {e.to: e.msg for e in effects if isinstance(e, Send)}


def test_levels() -> None:
    assert [level_count(x, 3) for x in ("one", "quorum", "all", "2")] == [1, 2, 3, 2]
    assert level_count("quorum", 5) == 3 and level_count("quorum", 4) == 3


def test_a_quorum_write_is_done_at_the_second_ack_and_later_acks_are_ignored() -> None:
    c = coord()
    out = c.write(7, STATES, REPLICAS, 2, {"b", "c"}, (), 0)
    assert sends(out) == {"b": m.Put(req=7, states=STATES), "c": m.Put(req=7, states=STATES)}
    assert not [e for e in out if isinstance(e, WriteDone)]
    done = c.step("c", m.PutAck(req=7, ok=True), 10)
    assert done == [WriteDone(req=7, ok=True, acks=2, needed=2, hinted=0)]
    assert c.step("b", m.PutAck(req=7, ok=True), 20) == []
    assert c.writes == {}


def test_a_write_at_one_is_done_at_once_by_the_coordinators_replica() -> None:
    c = coord()
    out = c.write(1, STATES, REPLICAS, 1, {"b", "c"}, (), 0)
    assert out[-1] == WriteDone(req=1, ok=True, acks=1, needed=1, hinted=0)
    assert set(sends(out)) == {"b", "c"}  # the others still get it
    assert c.step("b", m.PutAck(req=1, ok=True), 1) == []
    # c never answers: at the deadline this node keeps a hint for it
    assert c.tick(1_000_000) == [Hint(node="c", states=STATES)] and c.writes == {}


def test_a_replica_lost_with_the_write_in_flight_gets_a_hint_even_after_the_write_succeeded() -> None:
    c = coord()
    c.write(2, STATES, REPLICAS, 2, {"b", "c"}, (), 0)
    assert c.step("b", m.PutAck(req=2, ok=True), 1) == [WriteDone(req=2, ok=True, acks=2, needed=2, hinted=0)]
    assert c.peer_down("c", 2) == [Hint(node="c", states=STATES)]
    assert c.writes == {}


def test_with_no_stand_in_alive_the_coordinator_keeps_the_hint_for_a_down_replica() -> None:
    out = coord().write(3, STATES, REPLICAS, 2, {"b"}, ("d",), 0)
    assert Hint(node="c", states=STATES) in out
    assert set(sends(out)) == {"b"}


def test_a_down_replica_gets_a_hint_through_a_stand_in_that_counts_only_when_sloppy() -> None:
    for sloppy in (False, True):
        c = coord(sloppy_quorum=sloppy)
        out = c.write(3, STATES, REPLICAS, 3, {"b", "d", "e"}, ("d", "e"), 0)
        assert sends(out) == {"b": m.Put(req=3, states=STATES),
                              "d": m.Put(req=3, states=STATES, hint_for="c")}
        assert c.step("b", m.PutAck(req=3, ok=True), 5) == []
        done = c.step("d", m.PutAck(req=3, ok=True), 6)
        assert done == [WriteDone(req=3, ok=sloppy, acks=3 if sloppy else 2, needed=3,
                                  hinted=0 if sloppy else 1)]


def test_unavailable_counts_what_can_answer() -> None:
    c = coord()
    assert c.unavailable(REPLICAS, 2, {"b"}) is None
    assert c.unavailable(REPLICAS, 3, {"b"}) == 2
    assert coord(sloppy_quorum=True).unavailable(REPLICAS, 3, {"b", "d"}, ("d",)) is None


def test_a_write_times_out_with_the_counts() -> None:
    c = coord()
    c.write(4, STATES, REPLICAS, 3, {"b", "c"}, (), 0)
    c.step("b", m.PutAck(req=4, ok=True), 1)
    assert c.tick(999_999) == []
    assert c.next_deadline_us() == 1_000_000
    assert c.tick(1_000_000) == [Hint(node="c", states=STATES),
                                 WriteDone(req=4, ok=False, acks=2, needed=3, hinted=0)]


def test_a_refused_ack_and_a_lost_peer_end_a_write_that_cannot_succeed() -> None:
    c = coord()
    c.write(5, STATES, REPLICAS, 3, {"b", "c"}, (), 0)
    assert c.step("b", m.PutAck(req=5, ok=False), 1) == [Hint(node="b", states=STATES)]
    assert c.peer_down("c", 2) == [Hint(node="c", states=STATES),
                                   WriteDone(req=5, ok=False, acks=1, needed=3, hinted=0)]


def test_a_quorum_read_asks_the_fastest_replica_and_reports_late_answers() -> None:
    c = coord()
    c.peer_us.update({"b": 900.0, "c": 100.0})
    out = c.read(9, (b"k",), REPLICAS, 2, {"b", "c"}, 0)
    assert sends(out) == {"c": m.Get(req=9, keys=(b"k",))}
    done = c.step("c", m.GetReply(req=9, states=((b"k", b"x"),)), 50)
    assert done == [ReadDone(req=9, ok=True, answered=2, needed=2, answers={"c": ((b"k", b"x"),)})]
    assert c.reads == {}


def test_a_slow_replica_past_the_percentile_makes_the_read_ask_another() -> None:
    c = coord()
    for _ in range(32):
        c._record(100)  # recent reads took 100 us
    c.peer_us.update({"b": 50.0, "c": 80.0})
    c.read(2, (b"k",), REPLICAS, 2, {"b", "c"}, 0)
    assert c.tick(400) == []
    assert c.next_deadline_us() == 500  # the threshold's floor
    out = c.tick(500)
    assert sends(out) == {"c": m.Get(req=2, keys=(b"k",))} and c.speculative_retries == 1
    assert c.peer_us["b"] >= 500  # b kept the read waiting: the next read asks c first
    done = c.step("c", m.GetReply(req=2, states=((b"k", None),)), 600)
    assert isinstance(done[0], ReadDone) and done[0].ok
    late = c.step("b", m.GetReply(req=2, states=((b"k", b"v"),)), 900)
    assert late == [LateAnswer(req=2, peer="b", states=((b"k", b"v"),))]
    assert c.reads == {}


def test_read_repair_chance_asks_every_replica() -> None:
    c = Coordinator("a", timeout_us=10, rng=random.Random(0), read_repair_chance=1.0)
    out = c.read(1, (b"k",), REPLICAS, 1, {"b", "c"}, 0)
    assert set(sends(out)) == {"b", "c"}
    assert isinstance(out[-1], ReadDone)  # ONE: answered by this replica at once
    assert c.tick(10) == [] and c.reads == {}


def test_a_read_whose_replicas_are_gone_fails_with_the_counts() -> None:
    c = coord()
    c.read(6, (b"k",), REPLICAS, 3, {"b", "c"}, 0)
    c.step("b", m.GetReply(req=6, states=((b"k", None),)), 1)
    assert c.peer_down("c", 2) == [ReadDone(req=6, ok=False, answered=2, needed=3, answers={"b": ((b"k", None),)})]


def test_an_answer_in_parts_counts_once_it_holds_a_state_per_key_asked() -> None:
    """A replica that joins parts (``FEATURE_GET_PARTS``) may answer a read of several keys in
    several ``GetReply``s: none alone is its answer (a key it lacks would read as "holds
    nothing"); the parts joined in order are, and a later answer in parts is a late answer."""
    c = coord()
    keys = (b"x", b"y", b"z")
    c.read(7, keys, REPLICAS, 3, {"b", "c"}, 0)
    assert c.step("b", m.GetReply(req=7, states=((b"x", b"1"),)), 1) == []
    assert c.step("c", m.GetReply(req=7, states=((b"x", b"1"), (b"y", None), (b"z", b"3"))), 2) == []
    done = c.step("b", m.GetReply(req=7, states=((b"y", None), (b"z", b"3"))), 3)
    assert done == [ReadDone(req=7, ok=True, answered=3, needed=3, answers={
        "b": ((b"x", b"1"), (b"y", None), (b"z", b"3")), "c": ((b"x", b"1"), (b"y", None), (b"z", b"3"))})]
    assert c.reads == {}
    c = coord(read_repair_chance=1.0)  # every replica asked; the read completes at the first answer
    whole = ((b"x", b"1"), (b"y", None), (b"z", b"3"))
    c.read(8, keys, REPLICAS, 2, {"b", "c"}, 10)
    assert [e.ok for e in c.step("b", m.GetReply(req=8, states=whole), 11)] == [True]  # type: ignore[attr-defined]
    assert c.step("c", m.GetReply(req=8, states=whole[:2]), 12) == []
    assert c.step("c", m.GetReply(req=8, states=whole[2:]), 13) == [LateAnswer(req=8, peer="c", states=whole)]
    assert c.reads == {}


def test_the_wire_form_round_trips_and_garbage_is_refused() -> None:
    for msg in (m.Put(req=1, states=STATES, hint_for="c"), m.PutAck(req=2, ok=False),
                m.Get(req=3, keys=(b"a", b"b")), m.GetReply(req=4, states=((b"a", None), (b"b", b"x")))):
        assert m.decode(m.encode(msg)) == msg
    two = [m.Get(req=1, keys=(b"a",)), m.PutAck(req=2, ok=True)]
    assert m.decode(m.encode_batch([m.encode(x) for x in two])) == m.Batch(msgs=tuple(two))
    assert m.decode(m.encode(m.Batch(msgs=tuple(two)))) == m.Batch(msgs=tuple(two))
    many = [m.PutAck(req=i, ok=True) for i in range(20)]
    assert m.decode(m.encode_batch([m.encode(x) for x in many])).msgs == tuple(many)
    for junk in (b"\x92\x00\x91\x92\x00\x90", b"", b"\x91\x07", b"\x94\x01\x01\x90\x01", b"\x93\x03\x01\x91\x01", b"\xc1"):
        try:
            m.decode(junk)
        except m.DynamoCodecError:
            continue
        raise AssertionError(junk)


def test_stand_ins_change_nothing_unless_a_replica_is_believed_down() -> None:
    """The runtime's short way (no ring walk for stand-ins when ``stand_ins_matter`` is False) held
    to the general path: the same ``unavailable`` and ``write`` effects with and without them; and
    when a replica is down they do matter."""
    stand_ins = ("d", "e")
    nodes = ("a", "b", "c", "d", "e")
    for sloppy, needed, delta in itertools.product((False, True), (1, 2, 3), (b"", b"d")):
        for n in range(len(nodes) + 1):
            for alive in itertools.combinations(nodes[1:], n):
                up = set(alive)
                if stand_ins_matter("a", REPLICAS, up):
                    continue
                with_, without = coord(sloppy_quorum=sloppy), coord(sloppy_quorum=sloppy)
                assert with_.unavailable(REPLICAS, needed, up, stand_ins) == without.unavailable(REPLICAS, needed, up, ())
                assert with_.write(1, STATES, REPLICAS, needed, up, stand_ins, 0, delta) == \
                    without.write(1, STATES, REPLICAS, needed, up, (), 0, delta)
                assert with_.writes == without.writes
    assert stand_ins_matter("a", REPLICAS, {"b", "d"})
    c = coord(sloppy_quorum=True)
    assert c.unavailable(REPLICAS, 3, {"b", "d"}, stand_ins) is None and c.unavailable(REPLICAS, 3, {"b", "d"}, ()) == 2


def test_acked_ok_gives_what_one_acked_per_req_gives() -> None:
    """``Coordinator.acked_ok`` (a ``PutAcks``' ok list in one call) against ``acked(peer, req, True)``
    per req on a twin: the same effects in the same order and the same writes left in flight, over
    levels, stand-ins (sloppy and not), duplicate and unknown reqs, and acks from peers not asked."""
    rng = random.Random(5)
    for sloppy in (False, True):
        for trial in range(200):
            twins = coord(sloppy_quorum=sloppy), coord(sloppy_quorum=sloppy)
            for req in range(1, 7):
                alive = set(rng.sample(["b", "c", "d", "e"], rng.randint(1, 4)))
                needed = rng.randint(1, 3)
                for c in twins:
                    c.write(req, STATES, REPLICAS, needed, alive, ("d", "e"), 0)
            for peer in ("b", "c", "d", "e", "b"):
                reqs = [rng.randint(0, 8) for _ in range(rng.randint(0, 6))]
                one: list[object] = []
                for req in reqs:
                    one.extend(twins[0].acked(peer, req, True))
                batch: list[object] = []
                twins[1].acked_ok(peer, reqs, batch)  # type: ignore[arg-type]
                assert batch == one, (sloppy, trial, peer, reqs)
                assert twins[1].writes == twins[0].writes


def test_a_write_to_replicas_all_alive_sends_each_the_same_delta_and_takes_no_state() -> None:
    taken: list[bytes] = []
    c = Coordinator("a", timeout_us=1_000_000, rng=random.Random(1), read_repair_chance=0.0,
                    blobs=lambda k: taken.append(k) or b"state")
    out = c.write(8, None, REPLICAS, 2, ["b", "c"], (), 0, delta=b"d", keys=(b"k",))  # alive as a list too
    assert sends(out) == {"b": m.Put(req=8, states=(), delta=b"d"), "c": m.Put(req=8, states=(), delta=b"d")}
    assert taken == [] and c.writes[8].states is None
    out = c.write(9, None, REPLICAS, 2, {"b", "d"}, ("d",), 0, delta=b"d", keys=(b"k",))  # c down: stand-in d
    assert sends(out) == {"b": m.Put(req=9, states=(), delta=b"d"),
                          "d": m.Put(req=9, states=((b"k", b"state"),), hint_for="c")}
    assert taken == [b"k"]
