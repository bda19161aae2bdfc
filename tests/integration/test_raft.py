"""Raft mode on 3 real node processes (redis-py and replikv.client).

No fixed sleeps: every wait is a condition with a deadline (cluster.wait_for).
"""

from __future__ import annotations

import threading
import time
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import redis

from replikv.client import Client
from replikv.storage.meta import MetaStore
from tests.integration.cluster import Cluster, wait_for

ELECTION_MS = 300


@pytest.fixture
def raft_cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[Cluster] = []

    def make(n: int = 3, **options: Any) -> Cluster:
        options.setdefault("election_timeout_ms", ELECTION_MS)
        options.setdefault("fsync", "always")
        cluster = Cluster(tmp_path / f"c{len(made)}", n, **options)
        cluster.config.mode = "raft"
        cluster.config.save(cluster.path)
        made.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in made:
        cluster.close()


def leader_of(c: Cluster, among: list[str] | None = None) -> str | None:
    """The node that says it leads, if exactly one of the reachable ones does."""
    leaders = []
    for n in among or list(c.procs):
        try:
            if c.replication(n)["role"] == "master":
                leaders.append(n)
        except (redis.RedisError, OSError):
            pass
    return leaders[0] if len(leaders) == 1 else None


def wait_leader(c: Cluster, among: list[str] | None = None, timeout: float = 10) -> str:
    return wait_for(lambda: leader_of(c, among), timeout, "a single leader")


def addresses(c: Cluster) -> list[str]:
    return [f"127.0.0.1:{c.port(n)}" for n in c.config.nodes]


def test_writes_on_leader_and_linearizable_reads_on_followers(raft_cluster: Callable[..., Cluster]) -> None:
    c = raft_cluster()
    leader = wait_leader(c)
    followers = [n for n in c.config.nodes if n != leader]
    lc = c.client(leader)
    fcs = [c.client(f) for f in followers]
    for f in fcs:
        assert f.execute_command("CONSISTENCY").startswith(b"read=linearizable write=majority")
    for i in range(50):
        assert lc.set("k", i)
        # linearizable: a read that starts after the write was acknowledged sees it, on any node
        for f in fcs:
            assert f.get("k") == b"%d" % i
    # writes sent to a follower are forwarded to the leader
    assert fcs[0].incr("counter") == 1
    assert lc.get("counter") == b"1"
    info = c.replication(leader)
    assert info["role"] == "master" and info["replikv_leader"] == leader
    assert info["replikv_commit_index"] >= 52 and info["replikv_applied_index"] == info["replikv_commit_index"]
    assert {info["slave0"]["id"], info["slave1"]["id"]} == set(followers)
    assert all(info[s]["match_index"] > 0 for s in ("slave0", "slave1"))
    finfo = c.replication(followers[0])
    assert finfo["role"] == "slave" and finfo["replikv_epoch"] == info["replikv_epoch"]
    # local read levels on a follower
    f = fcs[1]
    assert f.execute_command("CONSISTENCY", "READ", "eventual") == b"OK"
    wait_for(lambda: f.get("counter") == b"1", 10, "follower to apply the counter")
    assert f.execute_command("CONSISTENCY", "READ", "lease") == b"OK"
    assert f.get("counter") == b"1"
    digests = {c.digest(n) for n in c.config.nodes}
    wait_for(lambda: len({c.digest(n) for n in c.config.nodes}) == 1, 10, "equal digests")
    assert digests


def test_write_levels_other_than_majority_are_refused(raft_cluster: Callable[..., Cluster]) -> None:
    c = raft_cluster()
    leader = wait_leader(c)
    cl = c.client(leader)
    with pytest.raises(redis.ResponseError, match="not offered in raft mode"):
        cl.execute_command("CONSISTENCY", "WRITE", "async")
    with pytest.raises(redis.ResponseError, match="not offered in raft mode"):
        cl.execute_command("CONSISTENCY", "WRITE", "semi-sync", "1")
    assert cl.execute_command("CONSISTENCY", "WRITE", "majority") == b"OK"


def test_leader_kill_under_load_elects_quickly_and_loses_no_acked_write(
        raft_cluster: Callable[..., Cluster]) -> None:
    c = raft_cluster()
    leader = wait_leader(c)
    acked: list[list[tuple[str, int]]] = [[] for _ in range(10)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        client = Client(addresses(c), retry_timeout_s=30)
        try:
            j = 0
            while not stop.is_set():
                key = f"w{i}:{j}"
                client.set(key, j)
                acked[i].append((key, j))
                j += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(10)]
    for t in threads:
        t.start()
    wait_for(lambda: sum(map(len, acked)) >= 300, 30, "300 acknowledged writes")
    survivors = [n for n in c.config.nodes if n != leader]
    term = int(c.replication(leader)["replikv_epoch"])
    killed_at = time.monotonic()
    c.kill(leader)
    new_leader = wait_for(lambda: leader_of(c, survivors), 10, "a new leader", interval=0.005)
    elected_s = time.monotonic() - killed_at
    # one election round ends within its randomized timeout, [T, 2T) after the last heartbeat
    # (Raft §5.2), plus half of that for the vote: 3T for a first-round win; a split vote
    # (both survivors timed out together, the term moved more than once) is one round more each
    rounds = int(c.replication(new_leader)["replikv_epoch"]) - term
    assert elected_s < (rounds + 0.5) * 2 * ELECTION_MS / 1000, \
        f"new leader after {elected_s:.3f}s, {rounds} election rounds"
    before = sum(map(len, acked))
    wait_for(lambda: sum(map(len, acked)) >= before + 300, 30, "writes to continue on the new leader")
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    c.start(leader)  # the old leader comes back as a follower
    cl = c.client(new_leader)
    for writes in acked:
        for key, value in writes:
            assert cl.get(key) == b"%d" % value, key
    wait_for(lambda: len({c.digest(n) for n in c.config.nodes}) == 1, 30, "every node to converge")


def test_leadership_transfer_via_failover(raft_cluster: Callable[..., Cluster]) -> None:
    c = raft_cluster()
    leader = wait_leader(c)
    target = next(n for n in c.config.nodes if n != leader)
    c.client(leader).set("before", "1")
    # sent to the target itself (a follower): forwarded to the leader, which transfers
    assert c.client(target).execute_command("FAILOVER", "TO", target) == b"OK"
    assert wait_leader(c) == target
    info = c.replication(target)
    assert info["replikv_leader"] == target
    assert c.client(target).get("before") == b"1"
    # and back, sent to the leader this time
    assert c.client(target).execute_command("FAILOVER", "TO", leader) == b"OK"
    assert wait_leader(c) == leader


def test_retried_incr_applies_once(raft_cluster: Callable[..., Cluster]) -> None:
    c = raft_cluster()
    leader = wait_leader(c)
    client = Client(addresses(c))
    assert client.incr("c") == 1
    assert client.incr("c") == 2
    # a retry of seq 2 (same client id, same seq) after a leader change: applied once
    others = [n for n in c.config.nodes if n != leader]
    assert c.client(others[0]).execute_command("FAILOVER", "TO", others[0]) == b"OK"
    new_leader = wait_leader(c)
    assert new_leader == others[0]
    retry = c.client(others[1]).execute_command("REPLIKV", "EXEC", client.client_id, client.seq, "INCR", "c")
    assert retry == 2  # the cached reply of the first attempt
    assert c.client(new_leader).get("c") == b"2"
    assert client.incr("c") == 3
    stats = c.stats(new_leader)
    assert stats["exactly_once_hits"] >= 1


def test_removed_then_readded_node_catches_up_by_snapshot(raft_cluster: Callable[..., Cluster]) -> None:
    c = raft_cluster(snapshot_bytes=64 * 1024, segment_bytes=16 * 1024)
    leader = wait_leader(c)
    gone = next(n for n in c.config.nodes if n != leader)
    lc = c.client(leader)
    # a leader just elected refuses a change (TRYAGAIN) until an entry of its term commits: retried
    wait_for(lambda: lc.execute_command("REPLIKV", "CLUSTER", "REMOVE", gone) == b"OK", 20, f"{gone} removed")
    c.stop(gone)
    pipe_value = b"x" * 200
    for i in range(0, 2000, 100):
        pipe = lc.pipeline(transaction=False)
        for j in range(i, i + 100):
            pipe.set(f"key{j}", pipe_value)
        pipe.execute()
    assert c.stats(leader)["snapshots_taken"] >= 1
    wait_for(lambda: lc.execute_command("REPLIKV", "CLUSTER", "ADD", gone) == b"OK", 20, f"{gone} added")
    c.start(gone)
    target = c.last_index(leader)
    wait_for(lambda: c.replication(gone)["replikv_applied_index"] >= target, 30, f"{gone} to catch up")
    assert c.stats(gone)["snapshots_installed"] >= 1
    wait_for(lambda: lc.execute_command("REPLIKV", "CLUSTER", "PROMOTE", gone) == b"OK", 20,
             f"{gone} to be promoted")
    voters = c.replication(leader)["replikv_voters"]
    assert gone in voters
    wait_for(lambda: c.digest(gone) == c.digest(leader), 20, "equal digests")
    # the snapshot it received was written as it streamed in: a restart recovers from that file
    c.kill(gone)
    c.start(gone)
    wait_for(lambda: c.digest(gone) == c.digest(leader), 20, "equal digests after a restart")


def test_a_follower_whose_data_directory_was_wiped_gets_the_log_again(raft_cluster: Callable[..., Cluster]) -> None:
    """A follower restarted with an empty data directory (a lost disk) lost entries it had
    acknowledged: the leader sees it (its heartbeat commit is beyond the follower's log)
    and sends everything again, by snapshot once the log is compacted; before, the
    leader kept the old match index and the follower stayed empty for ever."""
    c = raft_cluster(snapshot_bytes=64 * 1024, segment_bytes=16 * 1024)
    leader = wait_leader(c)
    gone = next(n for n in c.config.nodes if n != leader)
    lc = c.client(leader)
    for i in range(0, 1500, 100):
        pipe = lc.pipeline(transaction=False)
        for j in range(i, i + 100):
            pipe.set(f"key{j}", b"v" * 200)
        pipe.execute()
    wait_for(lambda: c.stats(leader)["snapshots_taken"] >= 1, 20, "a snapshot on the leader")
    c.stop(gone)
    shutil.rmtree(c.config.nodes[gone].data_dir)
    lc.set("after", "wipe")
    c.start(gone)
    wait_for(lambda: c.digest(gone) == c.digest(leader), 30, f"{gone} to get the whole log again")
    assert c.client(gone).execute_command("CONSISTENCY", "READ", "eventual") == b"OK"
    assert c.client(gone).get("after") == b"wipe" and c.client(gone).dbsize() == 1501
    info = c.replication(wait_leader(c))
    assert info["replikv_follower_logs_lost"] >= 1


def test_a_node_restarted_alone_after_the_writes_stopped_serves_them_all(raft_cluster: Callable[..., Cluster]) -> None:
    """Each node records its commit index once writes stop (the first tick without a new
    commit), so a node restarted with no leader to be had applies its whole committed log
    at once and serves it at read level eventual."""
    c = raft_cluster()
    leader = wait_leader(c)
    lc = c.client(leader)
    for i in range(200):
        lc.set(f"k{i}", i)
    target = c.last_index(leader)

    def recorded(n: str) -> int:
        return int(MetaStore(Path(c.config.nodes[n].data_dir)).load().get("commit", 0))

    for n in c.config.nodes:
        wait_for(lambda: recorded(n) >= target, 10, f"{n} to record commit index {target}")
    for n in c.config.nodes:
        c.kill(n)
    alone = next(n for n in c.config.nodes if n != leader)
    c.start(alone)
    r = c.client(alone)
    assert r.execute_command("CONSISTENCY", "READ", "eventual") == b"OK"
    wait_for(lambda: r.dbsize() == 200, 10, f"{alone} to apply its committed log")
    assert r.get("k199") == b"199" and c.replication(alone)["replikv_leader"] in ("", None)


def test_cli_cluster_add_and_remove(raft_cluster: Callable[..., Cluster]) -> None:
    import subprocess
    import sys

    from replikv.config import ClusterConfig
    from tests.integration.cluster import free_port_with_peer_port

    c = raft_cluster()
    leader = wait_leader(c)
    c.client(leader).set("k", "v")
    port = free_port_with_peer_port()  # `cluster add` puts the peer port at port + 10000
    add = subprocess.Popen(
        [sys.executable, "-m", "replikv", "cluster", "add", "--config", str(c.path), "--id", "n4",
         "--addr", f"127.0.0.1:{port}", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "n4" in ClusterConfig.load(c.path).nodes, 20, "n4 in cluster.toml")
        c.config = ClusterConfig.load(c.path)
        c.start("n4")
        out, _ = add.communicate(timeout=90)
    finally:
        if add.poll() is None:
            add.kill()
    assert add.returncode == 0, out.decode()
    assert "n4" in c.replication(wait_leader(c))["replikv_voters"]
    assert c.client("n4").get("k") == b"v"  # linearizable read on the new voter
    gone = next(n for n in ("n1", "n2", "n3") if n != wait_leader(c))
    done = subprocess.run(
        [sys.executable, "-m", "replikv", "cluster", "remove", "--config", str(c.path), "--id", gone],
        capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert gone not in ClusterConfig.load(c.path).nodes
    c.stop(gone)
    leader = wait_leader(c)
    assert gone not in c.replication(leader)["replikv_voters"]
    assert c.client(leader).set("after", "1")  # 3 voters left: still a majority


def test_a_leader_whose_fsyncs_outlast_the_election_timeout_keeps_its_leadership(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15 (6f): under ``--fsync everysec`` the leader's fsyncs take 3 s each (the WAL's
    failpoint: a disk busy with writeback), three times the election timeout, while its
    followers' disks are fast. The fsync runs on the WAL's sync thread (storage/wal.py
    ``sync_in_background``), so the leader's event loop keeps sending heartbeats: leader and
    term never change while writes go on and several slow fsyncs complete. With the fsync on
    the event loop, each one silenced the leader for 3 s and the followers elected another."""
    c = Cluster(tmp_path / "c", 3, fsync="everysec", election_timeout_ms=1000)
    c.config.mode = "raft"
    c.config.save(c.path)
    try:
        monkeypatch.setenv("REPLIKV_FAILPOINTS", "1")
        monkeypatch.setenv("REPLIKV_FSYNC_DELAY_MS", "3000")
        c.start("n1")  # the slow disk
        monkeypatch.delenv("REPLIKV_FSYNC_DELAY_MS")
        c.start("n2", "n3")
        leader = wait_leader(c)
        if leader != "n1":
            assert c.client(leader).execute_command("FAILOVER", "TO", "n1") == b"OK"
            wait_for(lambda: leader_of(c) == "n1", 20, "n1 to lead")
        terms = {n: c.replication(n)["replikv_epoch"] for n in c.config.nodes}
        lc = c.client("n1", timeout=30)
        written = 0

        def slow_fsyncs_done() -> bool:
            nonlocal written
            for _ in range(20):
                assert lc.set(f"k{written % 50}", written)
                written += 1
            info = c.client("n1").info("persistence")
            # two 3 s fsyncs completed, and one was put off while the previous still ran
            return info["replikv_wal_fsyncs"] >= 2 and info["aof_delayed_fsync"] >= 1

        wait_for(slow_fsyncs_done, 60, "two slow fsyncs on the leader", interval=0.0)
        assert {n: c.replication(n)["replikv_epoch"] for n in c.config.nodes} == terms
        assert leader_of(c) == "n1"
        assert int(lc.get(f"k{(written - 1) % 50}")) == written - 1
    finally:
        c.close()
