"""Back-pressure on writers (rule 10 of core/shipping/node.py): the leader holds
writes back while a follower that makes progress lacks more than
``max_lag_bytes`` of the stream, so a slow follower is never compacted past
(no full resync for it) and a full resync that starts can finish; a follower
that made no progress for ``lag_stall_ms`` holds nothing back."""

from __future__ import annotations

from replikv.core.shipping import messages as m
from replikv.core.shipping.effects import SendSnapshot
from replikv.core.shipping.node import SNAPSHOT, STREAM
from tests.unit.shipping.test_backlog import VALUE, big_write, lagging_cluster
from tests.unit.shipping.test_shipping_core import Net


def cluster(max_lag_bytes: int, backlog_bytes: int = 256 * 1024 * 1024) -> Net:
    net = Net(["n1", "n2", "n3"])
    for node in net.nodes.values():
        node.max_lag_bytes, node.repl_backlog_bytes = max_lag_bytes, backlog_bytes
    net.connect_all()
    net.deliver()
    return net


def deliver(net: Net, slow: str, slow_frames: int) -> None:
    """Deliver every frame, except that ``slow`` takes at most ``slow_frames`` of its own."""
    kept: list[tuple[str, bytes]] = []
    while net.queue:
        to, frame = net.queue.pop(0)
        if to == slow:
            if slow_frames <= 0:
                kept.append((to, frame))
                continue
            slow_frames -= 1
        net.run(to, net.nodes[to].step(m.decode(frame), net.now))
    net.queue[:0] = kept


def test_a_streaming_follower_past_the_lag_bound_holds_writers_until_it_acks():
    net = cluster(max_lag_bytes=5 * 1000)
    leader = net.nodes["n1"]
    big_write(net, "n1", "a")
    net.deliver()  # n2 and n3 acked at t=0
    assert leader.lagging_follower(net.now) == ""
    big_write(net, "n1", *"bcdefgh")  # 7 kB n2 has not taken
    deliver(net, slow="n2", slow_frames=0)
    assert leader.progress["n3"].match_index == 8
    assert leader.lagging_follower(net.now) == "n2"
    net.now = 500
    assert leader.lagging_follower(net.now) == "n2"  # within lag_stall_ms of its last ack
    net.deliver()
    assert leader.progress["n2"].match_index == 8
    assert leader.lagging_follower(net.now) == ""


def test_a_follower_that_made_no_progress_for_the_stall_bound_holds_nothing_back():
    net = cluster(max_lag_bytes=5 * 1000)
    leader = net.nodes["n1"]
    big_write(net, "n1", "a")
    net.deliver()
    big_write(net, "n1", *"bcdefgh")
    deliver(net, slow="n2", slow_frames=0)
    net.now = leader.lag_stall_ms + 1  # n2 acked last at t=0: stopped, or dead
    assert leader.lagging_follower(net.now) == ""


def test_no_back_pressure_when_the_bound_is_zero_or_the_follower_is_disconnected():
    net = cluster(max_lag_bytes=0)
    big_write(net, "n1", "a")
    net.deliver()
    big_write(net, "n1", *"bcdefgh")
    deliver(net, slow="n2", slow_frames=0)
    assert net.nodes["n1"].lagging_follower(net.now) == ""
    net = cluster(max_lag_bytes=5 * 1000)
    net.down.add("n2")
    net.run("n1", net.nodes["n1"].peer_disconnected("n2"))  # disconnected: it cannot catch up now
    big_write(net, "n1", *"abcdefgh")
    net.deliver()
    assert net.nodes["n1"].lagging_follower(net.now) == ""


def test_a_connected_follower_back_in_probe_still_holds_writers_while_it_acks():
    """The driver puts a follower back in PROBE when more than the window is still queued to
    it; it goes on reading and acking that queue, and still lags: it counts."""
    net = cluster(max_lag_bytes=5 * 1000)
    leader = net.nodes["n1"]
    big_write(net, "n1", "a")
    net.deliver()
    big_write(net, "n1", *"bcdefgh")
    deliver(net, slow="n2", slow_frames=1)  # n2 takes "b" and acks it
    leader.progress["n2"].probe()
    assert leader.progress["n2"].match_index == 2
    assert leader.lagging_follower(net.now) == "n2"


def test_a_full_resync_counts_its_lag_from_the_snapshot_it_is_sent():
    net = lagging_cluster(backlog_bytes=5 * 1000)
    leader = net.nodes["n1"]
    leader.max_lag_bytes = 3 * 1000
    leader.compact(10)
    net.down.discard("n2")
    net.run("n2", net.nodes["n2"].peer_connected("n1"))
    net.deliver()
    pr = leader.progress["n2"]
    assert pr.state == SNAPSHOT and pr.resync_from == 10 and pr.progress_ms == net.now
    assert leader.lagging_follower(net.now) == ""
    big_write(net, "n1", *"klmn")  # 4 kB written since the resync began: over the bound
    net.deliver()
    assert leader.lagging_follower(net.now) == "n2"
    net.now = 400
    leader.snapshot_progress("n2", net.now, 12)  # the driver streams a newer snapshot, at 12
    assert pr.resync_from == 12 and pr.progress_ms == 400
    assert leader.lagging_follower(net.now) == ""  # 2 kB after 12
    net.run("n2", net.nodes["n2"].snapshot_installed(12, 1, leader.log.epoch_starts))
    net.run("n1", leader.snapshot_sent("n2", 12))
    net.deliver()
    assert pr.state == STREAM and pr.match_index == 14
    assert leader.lagging_follower(net.now) == ""


def run_slow_follower(max_lag_bytes: int) -> tuple[int, int, int]:
    """n2 takes one frame every third round (a 2 kB window: frames of one or two entries) while a
    writer writes a 1 kB entry every round it is not held back and the leader snapshots
    every 20 rounds, keeping a 20 kB backlog. Returns (entries written, full resyncs sent
    to n2, most bytes n2 lagged)."""
    net = cluster(max_lag_bytes=max_lag_bytes, backlog_bytes=20 * 1000)
    leader = net.nodes["n1"]
    leader.window_bytes = 2 * len(VALUE) + 100
    written = most_lag = 0
    for rnd in range(1, 601):
        net.now = rnd * 10
        if not leader.lagging_follower(net.now):
            big_write(net, "n1", f"k{rnd}")
            written += 1
        deliver(net, slow="n2", slow_frames=1 if rnd % 3 == 0 else 0)
        pr = leader.progress["n2"]
        if pr.state == STREAM:
            most_lag = max(most_lag, leader.log.stream_bytes(max(pr.match_index, leader.log.base_index),
                                                             leader.log.last_index))
        if rnd % 20 == 0:
            leader.compact(leader.log.last_index)
    resyncs = sum(1 for e in net.effects["n1"] if isinstance(e, SendSnapshot) and e.to == "n2")
    return written, resyncs, most_lag


def test_a_follower_slower_than_the_writers_is_never_compacted_past_with_back_pressure():
    written, resyncs, most_lag = run_slow_follower(max_lag_bytes=8 * 1000)
    assert resyncs == 0
    assert most_lag <= 8 * 1000 + 2 * len(VALUE) + 200  # the bound, plus the round that crossed it
    assert 180 <= written < 300  # throttled to n2's pace (one entry every third round), not stopped
    # the same run without back-pressure: n2 falls out of the backlog and is sent snapshots
    written, resyncs, _ = run_slow_follower(max_lag_bytes=0)
    assert written == 600 and resyncs >= 1


def test_rule_11_the_log_a_leader_keeps_in_memory_is_bounded_until_a_compaction():
    """Rule 11: the leader holds writers while its backlog and the entries after its snapshot
    exceed ``max_log_bytes``; a compaction that drops entries lets them go; only a leader."""
    net = cluster(max_lag_bytes=0)  # rule 10 off: nothing else holds writers
    leader, follower = net.nodes["n1"], net.nodes["n2"]
    big_write(net, "n1", *"abcdefghij")  # ten entries of ~1 kB
    net.deliver()
    held = leader.log_bytes
    assert 10 * 1000 <= held < 11 * 1000
    assert leader.log_over(held - 1) and not leader.log_over(held) and not leader.log_over(0)
    assert follower.log_bytes >= 10 * 1000 and not follower.log_over(1)  # a follower holds no writers
    assert leader.compact(8) == 8  # every follower holds all ten: no backlog kept
    assert leader.log_bytes < 3 * 1000 and not leader.log_over(held - 1)
