"""Back-pressure on writers in leader-follower mode (core/shipping/node.py rule
10, issue 15): while a follower that is still making progress lacks more than
``--repl-max-lag-bytes`` of the stream, the leader stops reading its writers'
connections, so the follower never falls out of the replication backlog (no
full resync) however fast clients write; readers are served meanwhile; a
follower that made no progress for ``--repl-lag-stall-ms`` holds nothing back.
Raft mode holds writers by the same rule (RaftNode.lagging_follower). Both hold
writers while the log the leader keeps in memory exceeds ``--max-log-bytes``
(rule 11, RaftNode.log_over), as it would behind a snapshot stuck on its disk."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import redis

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

VALUE = b"x" * 16384
MIB = 1024 * 1024
# the stall-bound tests: a hold needs the writer to pass LAG (16 values) within STALL_MS of the stopped
# follower's last progress; 300 ms and 1 MiB (64 sequential SETs) lost that race on a loaded machine
LAG, STALL_MS = MIB // 4, 1500


class Writer:
    """A client writing 16 KiB values to a node (n1) as fast as it is answered."""

    def __init__(self, c: Cluster, node: str = "n1") -> None:
        self.client = redis.Redis(port=c.port(node), socket_timeout=60)
        self.written = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.client.set(f"k{self.written % 300}", VALUE)
            self.written += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)


def with_n3_stopped(tmp_path: Path, during: Callable[[Cluster, Writer], None], **options: Any) -> dict[str, Any]:
    """Start a cluster with a 2 MiB backlog and small snapshots, write 16 KiB values, stop
    n3 (SIGSTOP), run ``during``, resume n3; returns n1's INFO stats once all three are equal."""
    c = Cluster(tmp_path / "c", 3, snapshot_bytes=512 * 1024, segment_bytes=128 * 1024,
                repl_backlog_bytes=2 * MIB, **options)
    c.start()
    try:
        c.wait_streaming()
        w = Writer(c)
        try:
            wait_for(lambda: w.written > 50, 30, "writes under way")
            c.pause("n3")
            try:
                during(c, w)
            finally:
                c.resume("n3")
            target = w.written + 100
            wait_for(lambda: w.written > target, 60, "writes after n3 resumed")
        finally:
            w.close()
        c.wait_replicated(["n2", "n3"], timeout=60)
        wait_for(lambda: len({c.digest(n) for n in ("n1", "n2", "n3")}) == 1, 30, "equal digests")
        return c.stats("n1")
    finally:
        c.close()


def test_a_stopped_follower_holds_writers_back_and_catches_up_without_a_full_resync(tmp_path: Path) -> None:
    def held(c: Cluster, w: Writer) -> None:
        wait_for(lambda: c.replication("n1")["replikv_writes_held_by"] == "n3", 30, "writers held for n3")
        rep = c.replication("n1")
        n3 = rep["slave1"]
        assert n3["id"] == "n3"
        # n3 lacks the 1 MiB bound (64 values) plus what the writer had sent when it was held
        assert int(rep["master_repl_offset"]) - int(n3["offset"]) <= 64 + 8
        reader = c.client("n1")
        t0 = time.monotonic()
        assert reader.get("k0") == VALUE  # readers are served while writers are held
        assert time.monotonic() - t0 < 2.0
        assert c.client("n2").set("forwarded", b"1")  # a write n2 forwards is taken, not held
        at = w.written
        # still held once a snapshot covers more than n3 holds (a compaction came and went)
        wait_for(lambda: int(c.client("n1", timeout=2).info("persistence")["replikv_snapshot_index"]) > int(n3["offset"]), 30,
                 "a snapshot past n3's position")
        assert c.replication("n1")["replikv_writes_held_by"] == "n3"
        assert w.written <= at + 1

    stats = with_n3_stopped(tmp_path, held, repl_max_lag_bytes=MIB, repl_lag_stall_ms=60_000)
    assert int(stats["backpressure_holds"]) >= 1 and int(stats["backpressure_ms"]) > 0
    # the snapshots taken meanwhile kept what n3 lacked in the backlog (1 MiB < 2 MiB)
    assert int(stats["full_resyncs_sent"]) == 0


def test_without_back_pressure_the_stopped_follower_falls_out_of_the_backlog(tmp_path: Path) -> None:
    def run_on(c: Cluster, w: Writer) -> None:
        # past the 32 MiB the leader keeps in flight to n3 (the core's window) and three backlogs
        target = w.written + (32 + 3 * 2) * MIB // len(VALUE)
        wait_for(lambda: w.written > target, 120, "writes past the window and backlog while n3 is stopped")
        assert c.replication("n1")["replikv_writes_held_by"] == ""

    stats = with_n3_stopped(tmp_path, run_on, repl_max_lag_bytes=0)
    assert int(stats["backpressure_holds"]) == 0
    assert int(stats["full_resyncs_sent"]) >= 1  # what the test above shows back-pressure prevents


def test_a_follower_stopped_past_the_stall_bound_holds_nothing_back(tmp_path: Path) -> None:
    def released(c: Cluster, w: Writer) -> None:
        target = w.written + 3 * LAG // len(VALUE)  # three times the lag bound
        wait_for(lambda: w.written > target, 60, "writes going on past the lag bound")

    stats = with_n3_stopped(tmp_path, released, repl_max_lag_bytes=LAG, repl_lag_stall_ms=STALL_MS)
    assert int(stats["backpressure_holds"]) >= 1  # held until STALL_MS after n3's last ack, then let go


def raft_with_a_follower_stopped(tmp_path: Path, during: Callable[[Cluster, Writer, str, str], None],
                                 **options: Any) -> dict[str, Any]:
    """A raft cluster writing 16 KiB values on the leader; one follower stopped (SIGSTOP) while
    ``during(cluster, writer, leader, stopped)`` runs; returns the leader's INFO stats once all
    three hold the same data."""
    options = {"snapshot_bytes": 512 * 1024, **options}
    c = Cluster(tmp_path / "c", 3, segment_bytes=128 * 1024, repl_backlog_bytes=2 * MIB, election_timeout_ms=1000,
                **options)
    c.config.mode = "raft"
    c.config.save(c.path)
    c.start()
    try:
        leader = c.leader()
        stopped = [n for n in c.config.nodes if n != leader][-1]
        w = Writer(c, leader)
        try:
            wait_for(lambda: w.written > 50, 30, "writes under way")
            c.pause(stopped)
            try:
                during(c, w, leader, stopped)
            finally:
                c.resume(stopped)
            target = w.written + 100
            wait_for(lambda: w.written > target, 60, "writes after the follower resumed")
        finally:
            w.close()
        wait_for(lambda: len({c.digest(n) for n in c.config.nodes}) == 1, 60, "equal digests")
        return c.stats(leader)
    finally:
        c.close()


def test_raft_a_follower_lagging_behind_the_bound_holds_writers_back(tmp_path: Path) -> None:
    def held(c: Cluster, w: Writer, leader: str, stopped: str) -> None:
        wait_for(lambda: c.replication(leader)["replikv_writes_held_by"] == stopped, 30,
                 f"writers held for {stopped}")
        rep = c.replication(leader)
        (lagging,) = [v for k, v in rep.items() if k.startswith("slave") and v["id"] == stopped]
        # it lacks the 1 MiB bound (64 entries of a 16 KiB value) plus what the writer had sent, after
        # what it holds: its match, or, while it is sent a snapshot, that snapshot (the rule's measure)
        held = int(lagging["snapshot_index"]) if lagging["progress"] == "snapshot" else int(lagging["offset"])
        assert int(rep["master_repl_offset"]) - held <= 64 + 8, lagging
        reader = c.client(leader)
        assert reader.get("k0") == VALUE  # linearizable reads are served while writers are held
        other = next(n for n in c.config.nodes if n not in (leader, stopped))
        assert c.client(other).set("forwarded", b"1")  # a write the other follower forwards is taken
        at = w.written
        wait_for(lambda: int(c.stats(leader)["backpressure_holds"]) >= 1, 10, "the hold counted")
        rep = c.replication(leader)
        assert rep["replikv_writes_held_by"] == stopped, rep
        assert w.written <= at + 1, rep

    # no snapshot while writers are held: one would be compacted past the stopped follower once it is
    # silent for a CheckQuorum round (catch_up_floor), and the lag after it is below the bound, so the
    # hold would rightly end (the follower needs that snapshot anyway) before this test has looked
    stats = raft_with_a_follower_stopped(tmp_path, held, repl_max_lag_bytes=MIB, repl_lag_stall_ms=60_000,
                                         snapshot_bytes=16 * MIB)
    assert int(stats["backpressure_holds"]) >= 1 and int(stats["backpressure_ms"]) > 0


def test_raft_a_follower_stopped_past_the_stall_bound_holds_nothing_back(tmp_path: Path) -> None:
    def released(c: Cluster, w: Writer, leader: str, stopped: str) -> None:
        target = w.written + 3 * LAG // len(VALUE)  # three times the lag bound
        wait_for(lambda: w.written > target, 60, "writes going on past the lag bound")

    stats = raft_with_a_follower_stopped(tmp_path, released, repl_max_lag_bytes=LAG, repl_lag_stall_ms=STALL_MS)
    assert int(stats["backpressure_holds"]) >= 1  # held until STALL_MS after its last progress, then let go


def with_snapshots_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str,
                           during: Callable[[Cluster, Writer, str], None], **options: Any) -> dict[str, Any]:
    """A ``mode`` cluster whose snapshot children all stop before they write (the snapshotter's
    failpoint: a snapshot stuck on a slow disk), 16 KiB values written to the leader while
    ``during(cluster, writer, leader)`` runs, follower back-pressure off; returns the leader's
    INFO stats once all three hold the same data."""
    monkeypatch.setenv("REPLIKV_FAILPOINTS", "1")
    monkeypatch.setenv("REPLIKV_SNAPSHOT_CHILD_STOP", "1")
    c = Cluster(tmp_path / "c", 3, snapshot_bytes=512 * 1024, segment_bytes=128 * 1024, repl_backlog_bytes=MIB,
                repl_max_lag_bytes=0, election_timeout_ms=1000, **options)
    c.config.mode = mode
    c.config.save(c.path)
    c.start()
    try:
        leader = c.leader()
        w = Writer(c, leader)
        try:
            during(c, w, leader)
        finally:
            w.close()
        for node in c.config.nodes:  # let every stopped child finish, so the nodes compact and converge
            pid = int(c.client(node, timeout=2).info("persistence")["replikv_snapshot_child_pid"])
            if pid:
                os.kill(pid, signal.SIGCONT)
        wait_for(lambda: len({c.digest(n) for n in c.config.nodes}) == 1, 60, "equal digests")
        return c.stats(leader)
    finally:
        c.close()


@pytest.mark.parametrize("mode", ["leader-follower", "raft"])
def test_the_log_kept_in_memory_past_max_log_bytes_holds_writers_until_the_snapshot_lands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Rule 11 (core/shipping/node.py; RaftNode.log_over): while the leader's snapshot child is
    stuck, the log it keeps in memory grows with every write; past --max-log-bytes writers are
    held (readers served), and the compaction after the snapshot lands lets them go."""
    bound = 3 * MIB

    def held(c: Cluster, w: Writer, leader: str) -> None:
        wait_for(lambda: c.replication(leader)["replikv_writes_held_by"] == "max-log-bytes", 30,
                 "writers held by the log's bound")
        child = int(c.client(leader, timeout=2).info("persistence")["replikv_snapshot_child_pid"])
        assert child, "the leader's snapshot child is stopped, so its log grew"
        logged = int(c.replication(leader)["replikv_log_memory_bytes"])
        assert bound < logged <= bound + 4 * len(VALUE)  # over the bound by what was in flight, no more
        at = w.written
        assert c.client(leader).get("k0") == VALUE  # readers are served while writers are held
        wait_for(lambda: int(c.stats(leader)["backpressure_holds"]) >= 1, 10, "the hold counted")
        assert w.written <= at + 1
        assert int(c.replication(leader)["replikv_log_memory_bytes"]) == logged  # nothing more was taken
        os.kill(child, signal.SIGCONT)  # the snapshot lands; the compaction after it frees the log
        # (the log keeps what was written after the snapshot's index, and the next child stops too:
        # a few writes are taken before the bound holds them again)
        wait_for(lambda: w.written > at + 5, 30, "writes taken again after the compaction")

    stats = with_snapshots_stopped(tmp_path, monkeypatch, mode, held, max_log_bytes=bound)
    assert int(stats["backpressure_log_holds"]) >= 1 and int(stats["backpressure_ms"]) > 0


@pytest.mark.parametrize("mode", ["leader-follower", "raft"])
def test_without_max_log_bytes_a_stuck_snapshot_lets_the_log_grow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """The same stuck snapshot with --max-log-bytes 0: writers are never held, and the log kept in
    memory grows past twice the bound the test above holds it to."""
    def grows(c: Cluster, w: Writer, leader: str) -> None:
        wait_for(lambda: int(c.replication(leader)["replikv_log_memory_bytes"]) > 6 * MIB, 60,
                 "the log past twice the other test's bound")
        assert c.replication(leader)["replikv_writes_held_by"] == ""

    stats = with_snapshots_stopped(tmp_path, monkeypatch, mode, grows, max_log_bytes=0)
    assert int(stats["backpressure_holds"]) == 0 and int(stats["backpressure_log_holds"]) == 0
