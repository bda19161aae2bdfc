"""The leader's replication backlog (rule 9 of core/shipping/node.py): a snapshot
keeps the entries a lagging follower still needs, up to ``repl_backlog_bytes``,
so it catches up by entries; a follower further behind gets a full resync."""

from __future__ import annotations

from replikv.core.shipping import messages as m
from replikv.core.shipping.effects import ApplyEntries, Send, SendSnapshot
from replikv.core.shipping.log import ShippingLog
from replikv.core.shipping.node import PROBE, SNAPSHOT, STREAM, ShippingNode
from tests.unit.shipping.test_shipping_core import Net

VALUE = b"v" * 1000  # ~1 kB per entry: byte bounds below are counted in entries


def big_write(net: Net, leader: str, *keys: str) -> None:
    for k in keys:
        _, effects = net.nodes[leader].propose([[[b"SET", k.encode(), VALUE]]], net.now)
        net.run(leader, effects)


def snapshots_to(net: Net, node: str, peer: str) -> list[SendSnapshot]:
    return [e for e in net.effects[node] if isinstance(e, SendSnapshot) and e.to == peer]


def keys_applied(net: Net, node: str) -> list[bytes]:
    return [entry[1][0][1] for e in net.effects[node] if isinstance(e, ApplyEntries) for entry in e.entries]


def lagging_cluster(backlog_bytes: int) -> Net:
    """n1 leads n2 and n3; n2 holds "a".."c" and is cut off; n1 and n3 go on to "j"."""
    net = Net(["n1", "n2", "n3"])
    for node in net.nodes.values():
        node.repl_backlog_bytes = backlog_bytes
    net.connect_all()
    net.deliver()
    big_write(net, "n1", "a", "b", "c")
    net.deliver()
    net.down.add("n2")
    net.run("n1", net.nodes["n1"].peer_disconnected("n2"))
    big_write(net, "n1", *"defghij")
    net.deliver()
    assert net.nodes["n1"].progress["n2"].match_index == 3
    assert net.nodes["n1"].progress["n3"].match_index == 10
    return net


def reconnect(net: Net, peer: str) -> None:
    net.down.discard(peer)
    net.effects[peer] = []
    net.run(peer, net.nodes[peer].peer_connected("n1"))
    net.deliver()


def test_a_snapshot_keeps_the_entries_a_disconnected_follower_lacks_and_it_catches_up_by_entries():
    net = lagging_cluster(backlog_bytes=64 * 1024)
    leader = net.nodes["n1"]
    assert leader.compact(10) == 3  # the snapshot covers 1..10; 4..10 stay for n2
    assert leader.log.snapshot_index == 10 and leader.log.base_index == 3
    assert 7 * 1000 <= leader.log.backlog_bytes <= 8 * 1200
    reconnect(net, "n2")
    assert not snapshots_to(net, "n1", "n2")  # a partial resync, from the backlog
    assert keys_applied(net, "n2") == [k.encode() for k in "defghij"]
    assert leader.progress["n2"].state == STREAM and leader.progress["n2"].match_index == 10
    # the next snapshot no longer needs the backlog: nobody lags
    big_write(net, "n1", "k")
    net.deliver()
    assert leader.compact(11) == 11 and leader.log.backlog_bytes == 0


def test_a_follower_behind_the_backlog_bound_gets_a_full_resync():
    net = lagging_cluster(backlog_bytes=5 * 1000)  # n2 lacks 7 kB of what the snapshot covers
    leader = net.nodes["n1"]
    assert leader.compact(10) == 10  # nothing kept: n2 cannot be served from 5 kB
    reconnect(net, "n2")
    assert len(snapshots_to(net, "n1", "n2")) == 1
    assert leader.progress["n2"].state == SNAPSHOT
    # the driver streams the snapshot at 10; n2 installs it and streams from 11
    net.run("n2", net.nodes["n2"].snapshot_installed(10, 1, leader.log.epoch_starts))
    net.run("n1", leader.snapshot_sent("n2", 10))
    net.deliver()
    big_write(net, "n1", "k")
    net.deliver()
    assert net.nodes["n2"].log.last_index == 11 and keys_applied(net, "n2") == [b"k"]


def test_the_bound_keeps_what_the_nearer_follower_needs_and_leaves_the_farther_one_to_a_full_resync():
    net = lagging_cluster(backlog_bytes=5 * 1200)
    leader = net.nodes["n1"]
    net.down.add("n3")  # n3 is cut off at 10, n2 at 3; 5 more entries
    net.run("n1", leader.peer_disconnected("n3"))
    big_write(net, "n1", *"klmno")
    assert leader.compact(15) == 10  # n3's 5 kB fit the bound, n2's 12 kB do not
    reconnect(net, "n3")
    assert not snapshots_to(net, "n1", "n3")
    assert keys_applied(net, "n3") == [k.encode() for k in "klmno"]
    reconnect(net, "n2")
    assert snapshots_to(net, "n1", "n2")


def test_a_streaming_follower_that_lags_inside_its_window_is_served_from_the_backlog():
    """The leader snapshots while frames to a streaming follower are in flight; its
    next ack continues from the backlog instead of a full resync (before the
    backlog: rule 4's full resync, test_shipping_core's compacted-past test)."""
    net = Net(["n1", "n2"])
    leader = net.nodes["n1"]
    leader.window_entries = 1
    net.connect_all()
    net.deliver()
    net.write("n1", "a")
    net.write("n1", "b")  # outside the one-entry window: n2 streams from 2 once "a" is acked
    frames, net.queue = net.queue, []
    assert leader.compact(2) == 0  # n2 streams from the start: the whole log stays
    net.queue = frames
    net.deliver()
    assert leader.progress["n2"].state == STREAM and leader.progress["n2"].match_index == 2
    assert not snapshots_to(net, "n1", "n2") and net.applied("n2") == [b"a", b"b"]


def test_a_follower_whose_position_is_unknown_keeps_no_backlog():
    """A new leader's followers are in PROBE at 0 until they sync: a snapshot then
    keeps nothing for them (they may be anywhere, or need a full resync anyway)."""
    log = ShippingLog()
    log.append([[1, [[b"SET", b"k", VALUE]]] for _ in range(5)])
    leader = ShippingNode("n1", ["n2"], epoch=1, leader="n1", log=log)
    assert leader.progress["n2"].state == PROBE and leader.progress["n2"].match_index == 0
    assert leader.compact(5) == 5


def test_no_backlog_with_a_zero_bound():
    net = lagging_cluster(backlog_bytes=0)
    assert net.nodes["n1"].compact(10) == 10
    reconnect(net, "n2")
    assert snapshots_to(net, "n1", "n2")


def test_a_leader_that_steps_down_drops_its_backlog_and_cannot_truncate_below_its_snapshot():
    """On a follower the log starts at its snapshot: a divergent suffix that reaches
    below it cannot be rolled back by truncation, only by a full resync."""
    net = lagging_cluster(backlog_bytes=64 * 1024)
    old = net.nodes["n1"]
    assert old.compact(8) == 3
    effects = old.step(m.Fenced(sender="n3", epoch=5, leader="n3"), 0)
    assert old.role == "follower" and old.log.base_index == old.log.snapshot_index == 8
    assert old.log.last_index == 10
    out = old.step(m.Truncate(sender="n3", epoch=5, to_index=6), 0)
    syncs = [e.msg for e in effects + out if isinstance(e, Send) and isinstance(e.msg, m.SyncRequest)]
    assert syncs[-1].full and old.log.last_index == 10  # nothing truncated: it asks for a full resync


def test_a_follower_compacts_to_its_snapshot():
    net = lagging_cluster(backlog_bytes=64 * 1024)
    n3 = net.nodes["n3"]
    assert n3.compact(9) == 9 and n3.log.backlog_bytes == 0


def test_stream_bytes_follow_appends_compaction_and_truncation():
    log = ShippingLog()
    log.append([[1, [[b"SET", b"a", b"x"]]], [1, [[b"SET", b"b", b"x"]]]], 100)  # 1..2
    log.append([[1, [[b"SET", b"c", b"x"]]]], 50)  # 3
    log.append([[2, [[b"SET", b"d", b"x"]]], [2, [[b"SET", b"e", b"x"]]]], 200)  # 4..5
    assert log.stream_bytes(0, 5) == 350 and log.stream_bytes(2, 3) == 50
    assert log.stream_bytes(3, 4) == 200  # to within one batch: 4 ends with 5
    log.compact(3, 2)  # a snapshot at 3, entries 3.. kept
    assert (log.base_index, log.snapshot_index, log.last_index) == (2, 3, 5)
    assert log.backlog_bytes == 50 and log.stream_bytes(2, 5) == 250
    assert log.slice(3, 10)[0][1][0][1] == b"c"
    log.truncate_after(4)
    assert log.last_index == 4 and log.stream_bytes(3, 4) == 200  # the cut batch keeps its size
    log.append([[3, [[b"SET", b"f", b"x"]]]], 10)
    assert log.stream_bytes(4, 5) == 10 and log.stream_bytes(2, 5) == 260
    log.compact(5)
    assert (log.base_index, log.snapshot_index, log.backlog_bytes) == (5, 5, 0)
    log.append([[3, [[b"SET", b"g", b"x"]]]])  # no size given: estimated from the arguments
    assert 8 < log.stream_bytes(5, 6) < 40


def test_catch_up_frames_stay_within_the_byte_window():
    """A follower catching up from the log gets frames of at most window_bytes (one
    entry always goes), not max_batch_entries large values in one frame."""
    leader = ShippingNode("n1", ["n2"], epoch=1, leader="n1", window_bytes=10_000, max_batch_entries=2048)
    for i in range(40):  # one entry per batch, ~1 kB each
        leader.propose([[[b"SET", b"k%d" % i, VALUE]]], 0)
    for j in range(5):  # and five batches of 10
        leader.propose([[[b"SET", b"b%d.%d" % (j, i), VALUE]] for i in range(10)], 0)
    out = leader.step(m.SyncRequest(sender="n2", epoch=1, last_index=0, epoch_starts=[]), 0)
    frames = [e.msg for e in out if isinstance(e, Send) and isinstance(e.msg, m.Append)]
    assert frames and sum(len(f.entries) for f in frames) <= 10_000
    assert 8 <= sum(f.count for f in frames) <= 10
    acked = frames[-1].prev_index + frames[-1].count
    while acked < leader.log.last_index:  # every ack lets out the next window, never more
        out = leader.step(m.Ack(sender="n2", epoch=1, durable_index=acked), 0)
        frames = [e.msg for e in out if isinstance(e, Send) and isinstance(e.msg, m.Append)]
        assert frames and frames[0].prev_index == acked
        assert sum(len(f.entries) for f in frames) <= 10_000
        acked = frames[-1].prev_index + frames[-1].count
    assert acked == 90


def test_no_append_holds_more_than_frame_bytes_of_entries_unless_it_is_one_entry():
    """Two entries, each within ``frame_bytes`` (the peer frame limit's share), together past
    it: a follower syncing after both gets them in two frames, and a new batch of such entries
    goes to a streaming follower as catch-up frames, not as one frame (the link closes on a
    frame over its limit; the full suite saw a follower sent two 2 MB script entries in one
    3.95 MB frame over a 3 MiB limit, at every resend). One entry alone always goes."""
    big = b"x" * 6_000
    leader = ShippingNode("n1", ["n2"], epoch=1, leader="n1", frame_bytes=10_000)
    leader.propose([[[b"SET", b"e1", big], [b"SET", b"e2", big[:3000]]]], 0)  # one entry, ~9 kB
    leader.propose([[[b"SET", b"a1", big]]], 0)
    out = leader.step(m.SyncRequest(sender="n2", epoch=1, last_index=0, epoch_starts=[]), 0)
    frames = [e.msg for e in out if isinstance(e, Send) and isinstance(e.msg, m.Append)]
    assert [f.count for f in frames] == [1, 1]
    assert all(len(f.entries) <= 10_000 for f in frames)
    leader.step(m.Ack(sender="n2", epoch=1, durable_index=2), 0)
    # a batch of three entries, ~18 kB: three frames, in order, from the follower's next index
    _, out = leader.propose([[[b"SET", b"b%d" % i, big]] for i in range(3)], 0)
    frames = [e.msg for e in out if isinstance(e, Send) and isinstance(e.msg, m.Append)]
    assert [(f.prev_index, f.count) for f in frames] == [(2, 1), (3, 1), (4, 1)]
    assert all(len(f.entries) <= 10_000 for f in frames)
    # one entry over frame_bytes goes alone (a command fits the frame limit by itself)
    _, out = leader.propose([[[b"SET", b"c", big * 2]]], 0)
    frames = [e.msg for e in out if isinstance(e, Send) and isinstance(e.msg, m.Append)]
    assert [(f.prev_index, f.count) for f in frames] == [(5, 1)]


def test_count_within_takes_whole_batches_by_offset_and_single_entries_by_size():
    log = ShippingLog()
    log.append([[1, [[b"SET", b"a", VALUE]]] for _ in range(10)], 10_000)  # 1..10, one batch
    log.append([[1, [[b"SET", b"b", VALUE]]]], 1_000)  # 11
    assert log.count_within(1, 2048, 20_000) == 11
    assert log.count_within(1, 5, 20_000) == 5
    assert 4 <= log.count_within(1, 2048, 5_000) <= 5  # inside the first batch: by estimate
    assert log.count_within(1, 2048, 10) == 1  # one entry always goes
    assert log.count_within(11, 2048, 1_000) == 1 and log.count_within(12, 2048, 1_000) == 0


def test_a_follower_just_sent_a_snapshot_keeps_the_backlog_after_it_before_its_first_ack():
    """After a full resync the follower streams from the snapshot on with match_index 0
    until it acks: a snapshot taken meanwhile must keep what comes after the one it
    was sent, or it needs a second full resync at once."""
    net = lagging_cluster(backlog_bytes=64 * 1024)
    leader = net.nodes["n1"]
    assert leader.compact(3) == 3
    leader.step(m.SyncRequest(sender="n2", epoch=1, last_index=0, epoch_starts=[], full=True), 0)
    assert leader.progress["n2"].state == SNAPSHOT
    leader.snapshot_sent("n2", 3)
    pr = leader.progress["n2"]
    assert pr.state == STREAM and pr.match_index == 0
    assert leader.compact(10) == 3
