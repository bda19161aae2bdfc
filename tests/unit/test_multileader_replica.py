"""The multi-leader replica core (core/multileader/replica.py): scripted messages in, effects out."""

from __future__ import annotations

import pytest

from replikv.core.invariant import InvariantViolation
from replikv.core.multileader.effects import Ack, Deliver, Effect, Persist, Send, SendState
from replikv.core.multileader.messages import Op, Ops, State, Sync
from replikv.core.multileader.replica import Replica, neighbours_of

NODES = ["a", "b", "c"]


def op(origin: str, seq: int, deps: dict[str, int] | None = None, payload: object = None) -> Op:
    d = dict(deps or {})
    d[origin] = seq - 1
    return Op(origin=origin, seq=seq, hlc=seq, deps=d, payload=payload or [origin, seq])


def sync(sender: str, vv: dict[str, int] | None = None, matrix: dict[str, dict[str, int]] | None = None) -> Sync:
    return Sync(sender=sender, vv=vv or {}, matrix=matrix or {})


def sends(effects: list[Effect], to: str | None = None) -> list[Send]:
    return [e for e in effects if isinstance(e, Send) and (to is None or e.to == to)]


def sent_ops(effects: list[Effect], to: str) -> list[tuple[str, int]]:
    return [(o.origin, o.seq) for s in sends(effects, to) if isinstance(s.msg, Ops) for o in s.msg.ops]


def delivered(effects: list[Effect]) -> list[tuple[str, int]]:
    return [(o.origin, o.seq) for e in effects if isinstance(e, Deliver) for o in e.ops]


def test_neighbours_per_topology() -> None:
    five = ["n1", "n2", "n3", "n4", "n5"]
    assert neighbours_of("n3", five, "mesh") == ["n1", "n2", "n4", "n5"]
    assert neighbours_of("n1", five, "star") == ["n2", "n3", "n4", "n5"]
    assert neighbours_of("n4", five, "star") == ["n1"]
    assert neighbours_of("n4", five, "star", hub="n4") == ["n1", "n2", "n3", "n5"]
    assert neighbours_of("n1", five, "ring") == ["n2", "n5"]
    assert neighbours_of("n5", five, "ring") == ["n1", "n4"]
    assert neighbours_of("a", ["a", "b"], "ring") == ["b"]
    with pytest.raises(ValueError):
        neighbours_of("a", NODES, "tree")


def test_local_write_persists_then_delivers_then_sends() -> None:
    r = Replica("a", NODES)
    r.step(sync("b"))
    r.step(sync("c"))
    o1, eff = r.local(100, ["x"])
    assert (o1.origin, o1.seq, o1.deps) == ("a", 1, {"a": 0, "b": 0, "c": 0})
    assert [type(e) for e in eff] == [Persist, Deliver, Send, Send]
    assert sent_ops(eff, "b") == [("a", 1)] and sent_ops(eff, "c") == [("a", 1)]
    o2, _ = r.local(101, ["y"])
    assert o2.seq == 2 and o2.deps["a"] == 1
    assert r.vv["a"] == 2


def test_nothing_is_sent_to_a_neighbour_before_its_first_sync() -> None:
    r = Replica("a", NODES)
    _, eff = r.local(1, [])
    assert sends(eff) == []
    eff = r.step(sync("b"))
    assert sent_ops(eff, "b") == [("a", 1)]


def test_ops_the_decoder_left_out_count_as_duplicates_the_sender_has() -> None:
    """An ``Ops`` whose covered ops the decoder left out (codec.decode with our vv): they count as
    duplicates, and the sender is known to have them (what it lacks is not sent to it)."""
    r = Replica("a", NODES)
    r.step(Ops(sender="b", ops=(op("b", 1), op("b", 2))))
    assert r.known["c"].get("b", 0) == 0
    eff = r.step(Ops(sender="c", ops=(), covered={"b": 2}, dropped=2))  # c relayed them to us too
    assert r.duplicates == 2 and r.known["c"]["b"] == 2 and eff == []
    assert sent_ops(r.step(sync("c")), "c") == []  # c lacks none of b's ops


def test_duplicates_are_dropped_and_out_of_order_ops_wait_for_their_deps() -> None:
    r = Replica("a", NODES)
    b1, b2 = op("b", 1), op("b", 2)
    c1 = op("c", 1, {"b": 2})  # c wrote after seeing b's two ops
    eff = r.step(Ops(sender="c", ops=(c1,)))
    assert eff == [] and list(r.pending) == [("c", 1)]
    eff = r.step(Ops(sender="b", ops=(b2,)))
    assert eff == []
    eff = r.step(Ops(sender="b", ops=(b1,)))
    assert delivered(eff) == [("b", 1), ("b", 2), ("c", 1)]
    kinds = [type(e) for e in eff]
    assert kinds.index(Persist) < kinds.index(Deliver)
    assert r.vv == {"a": 0, "b": 2, "c": 1} and not r.pending
    assert r.step(Ops(sender="b", ops=(b1, b2))) == []  # exactly once


def test_received_ops_are_acked_by_a_sync_built_when_it_leaves() -> None:
    """Rule 3's ack is ``Ack(sender)``, not a Sync built per received frame: the driver builds
    one (``sync_for``) when it sends, and that one covers every frame received before."""
    r = Replica("a", NODES)
    r.step(sync("b"))
    r.step(sync("c"))
    acks = [e for e in r.step(Ops(sender="b", ops=(op("b", 1),))) if not isinstance(e, Persist | Deliver)]
    assert acks == [Ack(to="b")]
    assert [e for e in r.step(Ops(sender="b", ops=(op("b", 2),))) if isinstance(e, Ack | Send)] == [Ack(to="b")]
    assert r.step(Ops(sender="b", ops=(op("b", 2),))) == []  # a duplicate delivers nothing: no ack
    r.local(7, ["x"])
    s = r.sync_for("b")  # built as it leaves: both frames and the later local op
    assert s.sender == "a" and s.vv == {"a": 1, "b": 2, "c": 0}
    assert s.matrix["b"] == {"b": 2}  # what we got from b (rule 8)
    s.vv["b"] = 0
    assert r.vv["b"] == 2  # the Sync holds copies


def test_ops_are_relayed_to_neighbours_that_lack_them_and_never_back() -> None:
    ring = ["a", "b", "c", "d"]  # b's neighbours: a and c
    r = Replica("b", ring, "ring")
    r.step(sync("a"))
    r.step(sync("c"))
    eff = r.step(Ops(sender="a", ops=(op("a", 1),)))
    assert sent_ops(eff, "c") == [("a", 1)] and sent_ops(eff, "a") == []
    eff = r.step(Ops(sender="c", ops=(op("d", 1),)))  # d's op came round via c
    assert sent_ops(eff, "a") == [("d", 1)] and sent_ops(eff, "c") == []
    # a Sync from c saying it has everything: nothing to resend
    assert sends(r.step(sync("c", {"a": 1, "d": 1}))) == []


def test_star_leaves_relay_nothing_but_to_the_hub() -> None:
    r = Replica("c", NODES, "star")  # hub: a
    assert r.neighbours == ["a"]
    assert r.step(sync("b")) == []  # not a link of this topology
    r.step(sync("a"))
    _, eff = r.local(1, [])
    assert [s.to for s in sends(eff)] == ["a"]


def test_the_pending_buffer_is_bounded() -> None:
    r = Replica("a", NODES, max_pending=2)
    for s in range(2, 6):
        r.step(Ops(sender="b", ops=(op("b", s),)))
    assert len(r.pending) == 2 and r.dropped_pending == 2
    eff = r.step(Ops(sender="b", ops=(op("b", 1),)))
    assert delivered(eff) == [("b", 1), ("b", 2), ("b", 3)]
    eff = r.step(Ops(sender="b", ops=(op("b", 4), op("b", 5))))  # the resent ones
    assert delivered(eff) == [("b", 4), ("b", 5)]


def test_batches_are_bounded_and_a_window_per_trigger() -> None:
    r = Replica("a", NODES, max_batch_ops=3, window_ops=7)
    for i in range(10):
        r.local(i, [])
    eff = r.step(sync("b"))
    batches = [len(s.msg.ops) for s in sends(eff, "b") if isinstance(s.msg, Ops)]
    assert batches == [3, 3, 1]
    assert sent_ops(eff, "b") == [("a", s) for s in range(1, 8)]


def test_tick_sends_sync_and_resends_what_was_lost() -> None:
    r = Replica("a", NODES, sync_every=2)
    r.step(sync("b", {}))
    r.step(sync("c", {"a": 0}))
    r.local(1, [])  # sent to b and c: say both copies are lost
    assert r.tick() == []
    eff = r.tick()
    syncs = [s for s in sends(eff) if isinstance(s.msg, Sync)]
    assert [s.to for s in syncs] == ["b", "c"] and syncs[0].msg.vv == {"a": 1, "b": 0, "c": 0}
    assert sent_ops(eff, "b") == []  # sent in this period: may still be in flight
    assert syncs[0].msg.matrix["b"] == syncs[1].msg.matrix["c"] == {}  # what each sent us: no op yet
    r.step(sync("b", {"a": 0}, {"a": {"a": 1}}))  # b lacks it, though it got our Sync that came after it
    r.tick()
    eff = r.tick()
    assert sent_ops(eff, "b") == [("a", 1)]
    assert sent_ops(eff, "c") == []  # nothing says c has read that far: it may be working through a backlog
    r.step(sync("c", {"a": 0}, {"a": {"a": 1}}))
    r.tick()
    eff = r.tick()
    assert sent_ops(eff, "c") == [("a", 1)]


def test_a_neighbour_still_reading_what_we_sent_is_not_sent_it_twice() -> None:
    """Rule 7: no progress over a period is a loss only once the neighbour has received that
    much from us (its Syncs' matrix entry for us); a node busy with a backlog has not."""
    r = Replica("a", ["a", "b"], sync_every=1)
    r.step(sync("b", {}))
    for i in range(3):
        r.local(i, [])
    for _ in range(5):  # b is slow: its Syncs show it has read none of it yet
        r.step(sync("b", {"a": 0}, {"a": {"a": 0}}))
        assert sent_ops(r.tick(), "b") == []
    r.step(Ops(sender="b", ops=(op("b", 1, {"a": 1}),)))  # b read a:1 and wrote; a:2 and a:3 went missing
    r.step(sync("b", {"a": 1, "b": 1}, {"a": {"a": 3}}))
    r.tick()
    r.step(sync("b", {"a": 1, "b": 1}, {"a": {"a": 3}}))
    assert sent_ops(r.tick(), "b") == [("a", 2), ("a", 3)]


def test_matrix_clock_counts_acks() -> None:
    r = Replica("a", NODES, topology="star")  # a is the hub
    r.local(1, [])
    r.local(2, [])
    assert r.acked("a", 1) == 0
    r.step(sync("b", {"a": 2}))
    assert r.acked("a", 1) == 1 and r.acked("a", 2) == 1
    r2 = Replica("b", NODES, topology="star")  # b learns of c only through the hub's matrix
    r2.step(sync("a", {"a": 5, "b": 0}, {"c": {"a": 5}}))
    assert r2.acked("a", 5) == 2  # a itself (its vv) and c (the matrix)
    assert r2.known["c"] == {"a": 5}


def test_ops_every_node_has_are_trimmed_and_the_log_is_bounded_per_origin() -> None:
    r = Replica("a", NODES, retain_ops=3, sync_every=1)
    for i in range(5):
        r.local(i, [])
    r.tick()
    assert [o.seq for o in r.retained()] == [3, 4, 5] and r.base["a"] == 2
    r.step(sync("b", {"a": 4}))
    r.step(sync("c", {"a": 4}))
    assert [o.seq for o in r.retained()] == [5]


def test_retention_counts_the_mutations_an_op_holds_and_keeps_the_newest_op() -> None:
    """Rule 9: an op holding a loop iteration's writes counts as its mutations, so the memory
    kept for a lagging peer is bounded by writes, not by ops of any size."""
    r = Replica("a", NODES, retain_ops=10, sync_every=1)
    for n in (4, 4, 4, 1):
        r.local(0, [("put", b"k", b"v", None)] * n)
    r.tick()  # 13 mutations: the first op (4) goes, the other three (9) fit
    assert [o.seq for o in r.retained()] == [2, 3, 4] and r.base["a"] == 1
    r.local(0, [("put", b"k", b"v", None)] * 3)
    r.tick()  # 4 + 4 + 1 + 3 = 12 > 10: op 2 goes
    assert [o.seq for o in r.retained()] == [3, 4, 5]
    r.local(0, [("put", b"k", b"v", None)] * 25)
    r.tick()  # alone beyond the bound: the newest op is kept, everything before it goes
    assert [o.seq for o in r.retained()] == [6] and r.base["a"] == 5
    b = Replica("b", NODES, retain_ops=10, sync_every=1)  # received ops count the same way
    for seq in range(1, 5):
        b.step(Ops(sender="a", ops=(Op("a", seq, 0, {"a": seq - 1}, [("put", b"k", b"v", None)] * 4),)))
    b.tick()
    assert [o.seq for o in b.retained()] == [3, 4] and b.base["a"] == 2


def test_ops_every_node_has_trimmed_leave_the_bound_to_ops_a_peer_lacks_once_past_retain_ops() -> None:
    """Rule 9 over a long run: once an origin has made more than ``retain_ops`` mutations, a
    peer a few ops behind (far within the bound) is still sent ops, never a state transfer. The
    count must remember what trimming ops every node has already dropped: forgetting it made
    each trim drop the oldest op a peer still lacked (session 30: after ~500,000 writes per
    node, the default bound, a loaded 3-node cluster fell into state transfers and its
    clients got TRYAGAIN)."""
    r = Replica("a", NODES, retain_ops=10, sync_every=1)
    for seq in range(1, 41):
        _, eff = r.local(0, [("put", b"k", b"v", None)])
        for peer in ("b", "c"):  # each peer lacks the newest three ops
            eff += r.step(sync(peer, {"a": max(0, seq - 3)}))
        eff += r.tick()
        assert not any(isinstance(e, SendState) for e in eff), f"op {seq}: a state transfer"
        assert r.base["a"] == max(0, seq - 3), f"op {seq}: base {r.base['a']} beyond what the peers have"
        assert [o.seq for o in r.retained()] == list(range(max(1, seq - 2), seq + 1))


def test_a_laggard_gets_a_state_transfer_rate_limited_and_installed_releases_pending() -> None:
    r = Replica("a", NODES, retain_ops=2, state_every_ticks=10)
    for i in range(5):
        r.local(i, [])
    r.tick()
    eff = r.step(sync("b", {"a": 1}))
    assert eff == [SendState(to="b")]
    for _ in range(20):
        r.tick()
    assert r.step(sync("b", {"a": 1})) == []  # one transfer at a time: that one still streams
    r.state_done("b")
    assert r.step(sync("b", {"a": 1})) == []  # rate-limited from the end of the last one
    for _ in range(10):
        r.tick()
    assert SendState(to="b") in r.step(sync("b", {"a": 1}))
    r.disconnected("b")  # the driver drops that transfer; after the reconnect a new one may start
    r.connected("b")
    for _ in range(10):
        r.tick()
    assert SendState(to="b") in r.step(sync("b", {"a": 1}))

    lag = Replica("b", NODES)
    eff = lag.step(Ops(sender="a", ops=(op("a", 5, {"a": 4}),)))
    assert eff == [] and ("a", 5) in lag.pending
    assert lag.step(State(sender="a", vv={"a": 4, "b": 0, "c": 0}, blob=b"")) == []
    assert lag.needs_state({"a": 4}) and not lag.needs_state({"a": 0})
    eff = lag.installed({"a": 4, "b": 0, "c": 0}, "a")
    assert delivered(eff) == [("a", 5)] and lag.vv["a"] == 5
    assert isinstance(eff[-1], Send) and eff[-1].to == "a" and eff[-1].msg.vv["a"] == 5  # at once
    assert lag.base["a"] == 4  # ops below the state are not retained


def test_restore_resumes_from_snapshot_and_wal() -> None:
    r = Replica("a", NODES, vv={"a": 3, "b": 2})
    r.restore({"a": 3, "b": 2}, [op("a", 3, {"b": 2}), op("b", 3, {"a": 3}), op("a", 4, {"b": 3})])
    assert r.vv == {"a": 4, "b": 3, "c": 0}
    assert [(o.origin, o.seq) for o in r.retained()] == [("b", 3), ("a", 4)]
    o5, _ = r.local(9, [])
    assert o5.seq == 5  # never reuses a seq it persisted
    with pytest.raises(InvariantViolation):
        Replica("a", NODES).restore({}, [op("b", 2)])  # a gap: not causal


def test_a_neighbour_that_has_an_op_of_ours_we_lost_is_an_invariant_violation() -> None:
    r = Replica("a", NODES)
    with pytest.raises(InvariantViolation):
        r.step(sync("b", {"a": 1}))


def test_a_dropped_link_resends_what_was_in_flight_once_the_peer_says_where_it_stands() -> None:
    r = Replica("a", NODES)
    r.step(sync("b"))
    r.step(sync("c"))
    for i in range(3):
        r.local(100 + i, [i])  # sent to b, never acked: the connection drops with them in flight
    r.disconnected("b")
    assert sent_ops(r.local(200, ["while down"])[1], "b") == []  # nothing to a peer we have not heard from
    assert [type(e.msg) for e in sends(r.connected("b"))] == [Sync]  # reconnected: where we stand
    assert sent_ops(r.step(sync("b", {"a": 1})), "b") == [("a", 2), ("a", 3), ("a", 4)]
    assert r.connected("zz") == [] and sent_ops(r.local(300, ["next"])[1], "b") == [("a", 5)]


def test_mesh_relays_another_origins_op_only_after_a_sync_period() -> None:
    r = Replica("a", NODES, sync_every=1)
    r.step(sync("b"))
    r.step(sync("c"))
    eff = r.step(Ops(sender="b", ops=(op("b", 1),)))
    assert delivered(eff) == [("b", 1)] and sent_ops(eff, "c") == []  # c gets it from b itself
    assert sent_ops(r.tick(), "c") == []  # held less than a period: still on its way from b
    assert sent_ops(r.tick(), "c") == [("b", 1)]  # c still lacks it a period later: relayed


def test_an_ops_frame_carries_the_ack_only_when_it_ends_with_our_newest_op_made_after_all_delivered() -> None:
    """``carries_ack``: the receiver takes an op's seq and deps as what its sender has, so a
    frame ending with our newest op, made after everything we delivered, says our vv."""
    r = Replica("a", NODES)
    r.step(sync("b"))
    r.step(sync("c"))
    o1, _ = r.local(1, ["x"])
    assert r.carries_ack(o1)
    r.step(Ops(sender="b", ops=(op("b", 1),)))
    assert not r.carries_ack(o1)  # b's op came after it: o1's deps do not ack it
    o2, _ = r.local(2, ["y"])
    assert r.carries_ack(o2) and not r.carries_ack(o1)  # only our newest
    assert not r.carries_ack(op("b", 1))  # another origin's op says what b had, not us
