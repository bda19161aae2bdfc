"""The leader-follower shipping core, driven by scripted messages.

A tiny in-memory harness carries Send effects between ShippingNode objects
(messages are encoded and decoded on the way, as on the wire) and records the
other effects, so each test states a rule and checks what the core emitted.
"""

from __future__ import annotations

import msgpack
import pytest

from replikv.core.invariant import InvariantViolation
from replikv.core.shipping import messages as m
from replikv.core.shipping.effects import (
    ApplyEntries, HandOverDone, PersistEntries, PersistMeta, RoleChanged, Send, SendSnapshot, TruncateLog,
)
from replikv.core.shipping.log import ShippingLog
from replikv.core.shipping.node import FOLLOWER, LEADER, SNAPSHOT, STREAM, ShippingNode


class Net:
    """Delivers sends between nodes; partitioned nodes lose their messages."""

    def __init__(self, ids: list[str], leader: str = "n1") -> None:
        self.nodes = {i: ShippingNode(i, [p for p in ids if p != i], epoch=1, leader=leader) for i in ids}
        self.queue: list[tuple[str, bytes]] = []
        self.effects: dict[str, list] = {i: [] for i in ids}
        self.down: set[str] = set()
        self.now = 0

    def run(self, node_id: str, effects: list) -> None:
        for e in effects:
            if isinstance(e, Send):
                if node_id not in self.down and e.to not in self.down:
                    self.queue.append((e.to, m.encode(e.msg)))
            else:
                self.effects[node_id].append(e)

    def connect_all(self) -> None:
        for i, node in self.nodes.items():
            for p in node.peers:
                self.run(i, node.peer_connected(p))

    def deliver(self, limit: int = 10_000) -> None:
        steps = 0
        while self.queue and steps < limit:
            to, frame = self.queue.pop(0)
            if to in self.down:
                continue
            self.run(to, self.nodes[to].step(m.decode(frame), self.now))
            steps += 1

    def write(self, leader: str, *keys: str) -> int:
        first, effects = self.nodes[leader].propose([[[b"SET", k.encode(), b"v"]] for k in keys], self.now)
        self.run(leader, effects)
        return first

    def applied(self, node_id: str) -> list[bytes]:
        out = []
        for e in self.effects[node_id]:
            if isinstance(e, ApplyEntries):
                out += [entry[1][0][1] for entry in e.entries]
        return out


def entries_of(node: ShippingNode) -> list[tuple[int, bytes]]:
    return [(e[0], e[1][0][1]) for e in node.log.entries]


def test_leader_streams_every_write_to_followers_in_order():
    net = Net(["n1", "n2", "n3"])
    net.connect_all()
    net.deliver()
    for i in range(10):
        net.write("n1", f"k{i}")
    net.deliver()
    expected = [f"k{i}".encode() for i in range(10)]
    assert net.applied("n2") == expected and net.applied("n3") == expected
    assert net.nodes["n1"].ack_watermark(2) == 10
    assert net.nodes["n1"].ack_watermark(1) == 10


def test_leader_persists_before_sending_and_follower_persists_before_acking():
    net = Net(["n1", "n2"])
    net.connect_all()
    net.deliver()
    _, effects = net.nodes["n1"].propose([[[b"SET", b"a", b"1"]]], 0)
    kinds = [type(e) for e in effects]
    assert kinds[0] is PersistEntries and Send in kinds
    assert kinds.index(PersistEntries) < kinds.index(Send)
    append = next(e.msg for e in effects if isinstance(e, Send))
    out = net.nodes["n2"].step(append, 0)
    kinds = [type(e) for e in out]
    assert kinds == [PersistEntries, ApplyEntries, Send] and isinstance(out[-1].msg, m.Ack)
    assert out[-1].msg.durable_index == 1


def test_follower_out_of_order_append_requests_sync_instead_of_appending():
    n2 = ShippingNode("n2", ["n1"], epoch=1, leader="n1")
    packed = msgpack.packb([[1, [[b"SET", b"x", b"1"]]]])
    gap = m.Append(sender="n1", epoch=1, prev_index=5, prev_epoch=1, count=1, entries=packed, leader_last_index=6)
    out = n2.step(gap, 0)
    assert n2.log.last_index == 0
    assert [type(e.msg) for e in out if isinstance(e, Send)] == [m.SyncRequest]


def test_ack_watermark_counts_k_followers():
    net = Net(["n1", "n2", "n3"])
    net.connect_all()
    net.deliver()
    net.down.add("n3")
    net.write("n1", "a", "b")
    net.deliver()
    leader = net.nodes["n1"]
    assert leader.ack_watermark(1) == 2       # semi-sync 1: n2 has both
    assert leader.ack_watermark(2) == 0       # sync: n3 has none
    assert leader.replicas_holding(2) == 1


def test_restarted_follower_resumes_from_its_offset_partial_resync():
    net = Net(["n1", "n2"])
    net.connect_all()
    net.deliver()
    net.write("n1", "a", "b")
    net.deliver()
    net.down.add("n2")
    net.write("n1", "c", "d", "e")
    net.deliver()
    # n2 restarts with its log (2 entries) and reconnects
    old = net.nodes["n2"]
    fresh = ShippingNode("n2", ["n1"], epoch=1, leader="n1", log=old.log)
    net.nodes["n2"] = fresh
    net.effects["n2"] = []
    net.down.clear()
    net.run("n1", net.nodes["n1"].peer_disconnected("n2"))
    net.run("n2", fresh.peer_connected("n1"))
    net.deliver()
    assert [k for _, k in entries_of(fresh)] == [b"a", b"b", b"c", b"d", b"e"]
    assert net.applied("n2") == [b"c", b"d", b"e"]  # only the missing ones were shipped


def test_a_streaming_follower_the_log_was_compacted_past_gets_a_snapshot():
    """The leader compacts while a streaming follower lags inside its window; the
    follower's next ack must turn into a full resync, not a slice below the
    compacted base (an InvariantViolation that stopped the leader: found by sim/)."""
    net = Net(["n1", "n2"])
    net.nodes["n1"].window_entries = 1
    net.connect_all()
    net.deliver()
    net.write("n1", "a")
    net.write("n1", "b")  # outside the one-entry window: n2 streams from 2 once "a" is acked
    frames = net.queue
    net.queue = []
    assert net.nodes["n1"].progress["n2"].next_index == 2
    net.nodes["n1"].log.compact(2)
    net.queue = frames
    net.deliver()  # n2 acks "a": the leader would now send from index 2, compacted away
    assert net.nodes["n1"].progress["n2"].state == SNAPSHOT
    assert any(isinstance(e, SendSnapshot) and e.to == "n2" for e in net.effects["n1"])


def test_follower_behind_the_compacted_log_gets_a_snapshot():
    net = Net(["n1", "n2"])
    net.connect_all()
    net.deliver()
    net.down.add("n2")
    net.write("n1", "a", "b", "c")
    net.nodes["n1"].log.compact(3)
    net.down.clear()
    net.run("n2", net.nodes["n2"].peer_connected("n1"))
    net.deliver()
    assert any(isinstance(e, SendSnapshot) and e.to == "n2" for e in net.effects["n1"])
    # the driver streams it, the follower installs it, then streaming resumes
    net.run("n2", net.nodes["n2"].snapshot_installed(3, 1, net.nodes["n1"].log.epoch_starts))
    net.run("n1", net.nodes["n1"].snapshot_sent("n2", 3))
    net.deliver()
    net.write("n1", "d")
    net.deliver()
    assert net.nodes["n2"].log.last_index == 4 and net.applied("n2") == [b"d"]


def test_a_snapshot_the_follower_already_holds_is_not_installed():
    """A duplicate or late full resync at an index the follower holds, agreeing
    with the leader's history, would take its log back past entries it has
    acknowledged (a sync write then lost to a forced failover: found by sim/)."""
    net = Net(["n1", "n2"])
    net.connect_all()
    net.deliver()
    net.write("n1", "a", "b", "c")
    net.deliver()
    n2 = net.nodes["n2"]
    assert n2.log.last_index == 3
    install, effects = n2.offer_snapshot(2, net.nodes["n1"].log.epoch_starts)
    assert not install and any(isinstance(e, Send) and isinstance(e.msg, m.SyncRequest) for e in effects)
    # a snapshot beyond the follower's log, or of another history, is installed
    assert n2.offer_snapshot(5, net.nodes["n1"].log.epoch_starts)[0]
    assert n2.offer_snapshot(2, [[7, 1]])[0]


def test_a_full_resync_snapshot_covers_the_entries_the_follower_holds():
    """A follower that diverged below its own snapshot cannot truncate and asks
    for a full resync; the snapshot it is sent must cover the match point, or
    installing it would drop entries it held that the leader has too."""
    leader_log = ShippingLog()
    leader_log.append([[1, [[b"SET", k, b"v"]]] for k in (b"a", b"b", b"c", b"d")])
    leader_log.compact(1)
    leader = ShippingNode("n1", ["n2"], epoch=3, leader="n1", log=leader_log, led_epochs=[3])
    follower_starts = [[1, 1], [2, 4]]  # agrees up to 3, then an entry of a deposed leader
    effects = leader.step(m.SyncRequest(sender="n2", epoch=3, last_index=4, epoch_starts=follower_starts,
                                        full=True), 0)
    snaps = [e for e in effects if isinstance(e, SendSnapshot)]
    assert snaps and snaps[0].to == "n2" and snaps[0].min_index == 3  # the base snapshot (1) would not do


def test_higher_epoch_fences_old_leader_which_truncates_unreplicated_writes():
    net = Net(["n1", "n2", "n3"])
    net.connect_all()
    net.deliver()
    net.write("n1", "a", "b")
    net.deliver()
    # n1 is cut off and keeps accepting writes (async acks)
    net.down.add("n1")
    net.write("n1", "lost1", "lost2")
    # n2 is promoted by hand
    net.run("n2", net.nodes["n2"].promote())
    net.deliver()
    # n2 is the second of three nodes: its own epochs are 1, 4, 7... (rule 8)
    assert net.nodes["n2"].role == LEADER and net.nodes["n2"].epoch == 4
    assert net.nodes["n3"].leader == "n2"
    net.write("n2", "c")
    net.deliver()
    # n1 comes back: the first message it hears carries epoch 2
    net.down.clear()
    for p in ("n2", "n3"):
        net.run("n1", net.nodes["n1"].peer_connected(p))
    net.deliver()
    n1 = net.nodes["n1"]
    assert n1.role == FOLLOWER and n1.epoch == 4 and n1.leader == "n2"
    truncs = [e for e in net.effects["n1"] if isinstance(e, TruncateLog)]
    assert truncs == [TruncateLog(to_index=2, discarded=2, discarded_own=2, discarded_acked=2)]
    assert entries_of(n1) == entries_of(net.nodes["n2"]) == entries_of(net.nodes["n3"])
    assert [k for _, k in entries_of(n1)] == [b"a", b"b", b"c"]


def test_message_from_lower_epoch_is_answered_with_fenced_and_ignored():
    n2 = ShippingNode("n2", ["n1", "n3"], epoch=3, leader="n3")
    stale = m.Append(sender="n1", epoch=2, prev_index=0, prev_epoch=0, count=1,
                     entries=msgpack.packb([[2, [[b"SET", b"x", b"1"]]]]), leader_last_index=1)
    out = n2.step(stale, 0)
    assert n2.log.last_index == 0
    assert out == [Send(to="n1", msg=m.Fenced(sender="n2", epoch=3, leader="n3"))]


def test_leader_steps_down_on_fenced():
    n1 = ShippingNode("n1", ["n2"], epoch=1, leader="n1")
    out = n1.step(m.Fenced(sender="n2", epoch=2, leader="n2"), 0)
    assert n1.role == FOLLOWER and n1.leader == "n2"
    assert any(isinstance(e, RoleChanged) and e.role == FOLLOWER for e in out)
    assert any(isinstance(e, PersistMeta) and e.epoch == 2 for e in out)


def test_divergence_across_several_epochs_converges_by_repeated_truncation():
    # n3's log: epochs 1,1,3,3 ; leader n2's log: epochs 1,1,2,4 (n3 led epoch 3 alone)
    leader_log = ShippingLog()
    leader_log.append([[1, [[b"SET", b"a", b"1"]]], [1, [[b"SET", b"b", b"1"]]],
                       [2, [[b"SET", b"c", b"1"]]], [4, [[b"SET", b"d", b"1"]]]])
    n3_log = ShippingLog()
    n3_log.append([[1, [[b"SET", b"a", b"1"]]], [1, [[b"SET", b"b", b"1"]]],
                   [3, [[b"SET", b"x", b"1"]]], [3, [[b"SET", b"y", b"1"]]]])
    net = Net(["n2", "n3"], leader="n2")
    net.nodes["n2"] = ShippingNode("n2", ["n3"], epoch=4, leader="n2", log=leader_log)
    net.nodes["n3"] = ShippingNode("n3", ["n2"], epoch=4, leader="n2", log=n3_log, led_epochs=[3])
    net.connect_all()
    net.deliver()
    assert entries_of(net.nodes["n3"]) == entries_of(net.nodes["n2"])
    assert [e for e in net.effects["n3"] if isinstance(e, TruncateLog)] == [
        TruncateLog(to_index=2, discarded=2, discarded_own=2, discarded_acked=2)]


def test_handover_waits_for_target_to_catch_up_then_target_promotes():
    net = Net(["n1", "n2"])
    net.connect_all()
    net.deliver()
    net.write("n1", "a")
    net.down.add("n2")
    net.write("n1", "b")   # n2 misses it for now
    net.down.clear()
    net.run("n2", net.nodes["n2"].request_handover())
    net.deliver()
    n1, n2 = net.nodes["n1"], net.nodes["n2"]
    assert n1.writes_paused and n2.role == FOLLOWER
    # n2 reconnects and resyncs; the leader sees the ack and hands over
    net.run("n2", n2.peer_connected("n1"))
    net.deliver()
    assert n2.role == LEADER and n2.epoch == 3 and n2.log.last_index == 2  # n2's own: 1, 3, 5...
    assert n1.role == FOLLOWER and n1.leader == "n2"
    assert HandOverDone(ok=True, reason="") in net.effects["n2"]


def test_window_bounds_entries_in_flight():
    net = Net(["n1", "n2"])
    leader = ShippingNode("n1", ["n2"], epoch=1, leader="n1", window_entries=10, max_batch_entries=4)
    net.nodes["n1"] = leader
    for i in range(30):
        leader.propose([[[b"SET", b"k%d" % i, b"v"]]], 0)
    out = leader.step(m.SyncRequest(sender="n2", epoch=1, last_index=0, epoch_starts=[]), 0)
    sent = sum(e.msg.count for e in out if isinstance(e, Send) and isinstance(e.msg, m.Append))
    assert 10 <= sent <= 14  # the window (10) plus at most one batch
    assert leader.progress["n2"].state == STREAM


def test_window_bounds_bytes_in_flight_and_acks_reopen_it():
    """Large values: the live stream to a follower stays under window_bytes (one
    frame always goes), and every ack lets the next frames out (rule 5)."""
    leader = ShippingNode("n1", ["n2"], epoch=1, leader="n1", window_bytes=200_000, max_batch_entries=1)
    leader.step(m.SyncRequest(sender="n2", epoch=1, last_index=0, epoch_starts=[]), 0)
    value = b"v" * 65536
    sent: list[m.Append] = []
    for i in range(20):
        _, out = leader.propose([[[b"SET", b"k%d" % i, value]]], 0)
        sent += [e.msg for e in out if isinstance(e, Send) and isinstance(e.msg, m.Append)]
    assert 1 <= len(sent) <= 4  # 200 kB of 64 KiB entries
    assert leader.progress["n2"].inflight_bytes <= 200_000
    acked = sent[-1].prev_index + sent[-1].count
    out = leader.step(m.Ack(sender="n2", epoch=1, durable_index=acked), 0)
    more = [e.msg for e in out if isinstance(e, Send) and isinstance(e.msg, m.Append)]
    assert more and more[0].prev_index == acked  # catch-up resumes right after the ack
    assert leader.progress["n2"].inflight_bytes <= 200_000
    # while a follower is sent a snapshot, the driver must not compact past the log base
    assert not leader.full_resync_in_progress
    leader.step(m.SyncRequest(sender="n2", epoch=1, last_index=0, epoch_starts=[], full=True), 0)
    assert leader.progress["n2"].state == SNAPSHOT and leader.full_resync_in_progress
    leader.snapshot_sent("n2", 0)
    assert not leader.full_resync_in_progress


def test_two_leaders_in_one_epoch_is_an_invariant_violation():
    n1 = ShippingNode("n1", ["n2"], epoch=1, leader="n1")
    with pytest.raises(InvariantViolation):
        n1.step(m.Append(sender="n2", epoch=1, prev_index=0, prev_epoch=0, count=0, entries=b"",
                         leader_last_index=0), 0)


def test_follower_lag_marks_track_what_the_leader_had():
    n2 = ShippingNode("n2", ["n1"], epoch=1, leader="n1")
    n2.step(m.Append(sender="n1", epoch=1, prev_index=0, prev_epoch=0, count=0, entries=b"",
                     leader_last_index=0), 100)
    assert n2.lag_ms(150) == 0
    # leader says it has 5 entries; we have 0: lag grows from the moment we heard it
    n2.step(m.Append(sender="n1", epoch=1, prev_index=3, prev_epoch=1, count=0, entries=b"",
                     leader_last_index=5), 200)
    assert n2.lag_ms(450) == 250 and n2.lag_ops() == 5


def test_decode_rejects_garbage_frames():
    for bad in (b"", b"\xc1", msgpack.packb("hello"), msgpack.packb([99, 1]), msgpack.packb([4, "n1", 1])):
        with pytest.raises(ValueError):
            m.decode(bad)


def test_discarded_writes_that_waited_for_every_follower_were_never_acknowledged():
    net = Net(["n1", "n2", "n3"])
    net.connect_all()
    net.deliver()
    net.down.add("n1")
    first, effects = net.nodes["n1"].propose([[[b"SET", b"s", b"1"]], [[b"SET", b"h", b"1"]],
                                              [[b"SET", b"a", b"1"]]], 0, acks=[2, 1, 0])
    net.run("n1", effects)
    net.run("n2", net.nodes["n2"].promote())
    net.deliver()
    net.down.clear()
    net.run("n1", net.nodes["n1"].peer_connected("n2"))
    net.deliver()
    # sync (k=2 of 2): never acknowledged; semi-sync 1 and async: may have been
    assert [e for e in net.effects["n1"] if isinstance(e, TruncateLog)] == [
        TruncateLog(to_index=0, discarded=3, discarded_own=3, discarded_acked=2)]


def test_two_nodes_promoted_at_once_never_lead_the_same_epoch():
    """Rule 8: two concurrent FORCE failovers (n2 and n3 both promote from
    epoch 1) take different epochs; the higher fences the lower, which
    resyncs from it, instead of two leaders in one epoch."""
    net = Net(["n1", "n2", "n3"])
    net.connect_all()
    net.deliver()
    net.write("n1", "a")
    n2, n3 = net.nodes["n2"], net.nodes["n3"]
    net.run("n2", n2.promote())
    net.run("n3", n3.promote())
    assert {n2.epoch, n3.epoch} == {4, 2}  # n2 owns 1, 4, 7...; n3 owns 2, 5, 8...
    net.deliver()
    assert n2.role == LEADER and n2.epoch == 4
    assert n3.role == FOLLOWER and n3.epoch == 4 and n3.leader == "n2"
    assert net.nodes["n1"].leader == "n2"
    net.write("n2", "b")
    net.deliver()
    assert n3.log.last_index == net.nodes["n1"].log.last_index == n2.log.last_index


def test_own_epochs_are_disjoint_between_nodes():
    ids = ["a", "b", "c", "d", "e"]
    taken: dict[int, str] = {}
    for nid in ids:
        node = ShippingNode(nid, [p for p in ids if p != nid])
        e = 0
        for _ in range(20):
            e = node.own_epoch_above(e)
            assert taken.setdefault(e, nid) == nid, f"epoch {e} taken by {taken[e]} and {nid}"
    assert sorted(taken) == list(range(1, 101))


def sync_requests(effects: list) -> int:
    return sum(1 for e in effects if isinstance(e, Send) and isinstance(e.msg, m.SyncRequest))


def test_a_follower_asks_again_after_silence_but_not_on_the_first_tick_after_its_own_stall():
    net = Net(["n1", "n2"])
    net.connect_all()
    net.deliver()
    follower = net.nodes["n2"]
    follower.step(net.nodes["n1"]._heartbeat(), 100)  # heard at t=100
    assert sync_requests(follower.tick(100)) == 0
    assert sync_requests(follower.tick(200)) == 0
    # its loop was blocked 800 ms: the leader's frames of that time are unread yet
    assert sync_requests(follower.tick(1000)) == 0
    assert sync_requests(follower.tick(1100)) == 1  # the next tick, still nothing heard: ask again
    # ticking on time, silence past sync_retry_ms is enough
    follower.step(net.nodes["n1"]._heartbeat(), 1150)
    assert sync_requests(follower.tick(1200)) == 0
    assert sync_requests(follower.tick(1300)) == 0
    assert sync_requests(follower.tick(1400)) == 0
    assert sync_requests(follower.tick(1500)) == 1


def test_an_unanswered_sync_request_is_sent_again_after_a_doubling_wait_reset_once_the_leader_answers():
    """Rule 4: 300 ms, then 600, 1,200, 2,400 and at most 4,800 ms between SyncRequests nobody
    answers (each one a busy leader would answer by packing its window again); a leader heard
    again starts the count over."""
    net = Net(["n1", "n2"])
    net.connect_all()
    net.deliver()
    follower = net.nodes["n2"]
    follower.step(net.nodes["n1"]._heartbeat(), 100)  # heard at t=100
    sent = [t for t in range(200, 15_000, 100) if sync_requests(follower.tick(t))]
    assert sent == [400, 700, 1300, 2500, 4900, 9700, 14500]
    follower.step(net.nodes["n1"]._heartbeat(), 14_550)  # the leader answers: in sync again
    assert not follower.syncing
    sent = [t for t in range(14_600, 16_000, 100) if sync_requests(follower.tick(t))]
    assert sent == [14_900, 15_200, 15_800]


def test_a_follower_receiving_a_full_resync_does_not_ask_again_meanwhile():
    net = Net(["n1", "n2"])
    net.connect_all()
    net.deliver()
    follower = net.nodes["n2"]
    follower.step(net.nodes["n1"]._heartbeat(), 100)
    for t in range(200, 2000, 100):  # chunks keep arriving: the leader is answering
        follower.snapshot_frame(t - 50)
        assert sync_requests(follower.tick(t)) == 0
    assert sync_requests(follower.tick(2000)) == 0
    assert sync_requests(follower.tick(2100)) == 0
    assert sync_requests(follower.tick(2200)) == 1  # 350 ms of silence again: ask


def test_a_follower_receiving_part_of_a_frame_from_its_leader_does_not_ask_again_meanwhile():
    """Rule 4: a catch-up frame of tens of MB takes longer than sync_retry_ms to arrive on a busy
    machine; while its bytes keep coming the leader is answering, and a SyncRequest sent then had
    it pack and send its window again. Bytes from another peer say nothing about the leader."""
    net = Net(["n1", "n2", "n3"])
    net.connect_all()
    net.deliver()
    follower = net.nodes["n2"]
    follower.step(net.nodes["n1"]._heartbeat(), 100)
    for t in range(200, 2000, 100):  # a large frame from the leader, arriving bit by bit
        follower.receiving("n1", t - 50)
        follower.receiving("n3", t - 50)
        assert sync_requests(follower.tick(t)) == 0
    assert follower.last_heard_ms == 100  # staleness still counts from the last whole message
    assert sync_requests(follower.tick(2000)) == 0
    assert sync_requests(follower.tick(2100)) == 0
    assert sync_requests(follower.tick(2200)) == 1  # 350 ms without a byte from the leader: ask
    asked = []
    for t in range(2300, 4000, 100):  # only another peer keeps sending: that is no answer
        follower.receiving("n3", t - 50)
        asked += [t] * sync_requests(follower.tick(t))
    assert asked == [2500, 3100]  # an unanswered SyncRequest's waits: 300, then 600 ms


def appended(n: ShippingNode, first: int, keys: list[str], epoch: int = 1) -> m.Append:
    """An Append of ``keys`` numbered from ``first``, as the leader of ``epoch`` sends it."""
    packed = msgpack.packb([[epoch, [[b"SET", k.encode(), b"v"]]] for k in keys])
    return m.Append(sender="n1", epoch=1, prev_index=first - 1, prev_epoch=n.log.epoch_at(first - 1) if first > 1
                    else 0, count=len(keys), entries=packed, leader_last_index=first + len(keys) - 1)


def test_a_resend_that_overlaps_the_log_appends_only_what_is_new_and_asks_nothing():
    """Rule 3: the answer to a SyncRequest that crossed frames in flight starts inside the
    follower's log; it keeps the new part instead of asking again (a storm under 64 KiB writes)."""
    n2 = ShippingNode("n2", ["n1"], epoch=1, leader="n1")
    n2.step(appended(n2, 1, ["a", "b", "c", "d", "e"]), 0)
    out = n2.step(appended(n2, 3, ["c", "d", "e", "f", "g"]), 0)
    assert sync_requests(out) == 0
    assert [k for _, k in entries_of(n2)] == [b"a", b"b", b"c", b"d", b"e", b"f", b"g"]
    persist = next(e for e in out if isinstance(e, PersistEntries))
    assert (persist.first_index, persist.count) == (6, 2)
    assert [x[1][0][1] for x in msgpack.unpackb(persist.packed)] == [b"f", b"g"]  # the WAL gets only those
    assert [e.msg.durable_index for e in out if isinstance(e, Send)] == [7]
    assert n2.step(appended(n2, 2, ["b", "c"]), 0) == []  # all held already: nothing to do, nothing asked


def test_a_resend_that_differs_from_the_log_still_asks_for_a_sync():
    n2 = ShippingNode("n2", ["n1"], epoch=1, leader="n1")
    n2.step(appended(n2, 1, ["a", "b", "c"]), 0)
    other = msgpack.packb([[1, [[b"SET", b"b", b"v"]]], [2, [[b"SET", b"x", b"v"]]], [2, [[b"SET", b"y", b"v"]]]])
    diverged = m.Append(sender="n1", epoch=1, prev_index=1, prev_epoch=1, count=3, entries=other,
                        leader_last_index=4)
    out = n2.step(diverged, 0)  # index 3 has epoch 2 there, 1 here: log matching says nothing
    assert sync_requests(out) == 1 and n2.log.last_index == 3


def test_an_ack_past_a_rewind_is_not_sent_again():
    """Rule 6: after a SyncRequest rewound the follower's position, acks for the frames that
    were in flight move the next index past what they cover: no resend of acked entries."""
    leader = ShippingNode("n1", ["n2"], epoch=1, leader="n1", window_entries=2, max_batch_entries=1)
    leader.step(m.SyncRequest(sender="n2", epoch=1, last_index=0, epoch_starts=[]), 0)
    for i in range(10):
        leader.propose([[[b"SET", b"k%d" % i, b"v"]]], 0)
        leader.step(m.Ack(sender="n2", epoch=1, durable_index=i + 1), 0)
    out = leader.step(m.SyncRequest(sender="n2", epoch=1, last_index=4, epoch_starts=[[1, 1]]), 0)  # crossed 5..10
    resent = [e.msg for e in out if isinstance(e, Send) and isinstance(e.msg, m.Append)]
    assert resent and resent[-1].prev_index + resent[-1].count < 10  # the window stopped the resend short
    out = leader.step(m.Ack(sender="n2", epoch=1, durable_index=10), 0)
    assert not [e for e in out if isinstance(e, Send) and isinstance(e.msg, m.Append)]
    assert leader.progress["n2"].next_index == 11
    _, out = leader.propose([[[b"SET", b"k10", b"v"]]], 0)
    (append,) = [e.msg for e in out if isinstance(e, Send) and isinstance(e.msg, m.Append)]
    assert append.prev_index == 10  # the stream goes on from the ack
