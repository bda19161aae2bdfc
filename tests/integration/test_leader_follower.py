"""Leader-follower mode with real node processes and real clients."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import pytest
import redis

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration


def test_ten_thousand_writes_reach_both_followers_with_equal_digests(make_cluster):
    c = make_cluster(3)
    leader = c.client("n1")
    pipe = leader.pipeline(transaction=False)
    for i in range(10_000):
        pipe.set(f"key:{i}", f"value:{i}")
        if i % 4 == 0:
            pipe.incr("counter")
        if i % 500 == 0:
            pipe.execute()
    pipe.rpush("list", *range(100))
    pipe.sadd("set", *range(50))
    pipe.hset("hash", mapping={f"f{i}": i for i in range(20)})
    pipe.execute()
    c.wait_replicated(["n2", "n3"])
    assert c.digest("n1") == c.digest("n2") == c.digest("n3")
    assert c.client("n2").get("key:9999") == b"value:9999"
    assert c.client("n3").get("counter") == b"2500"
    assert c.client("n2").dbsize() == 10_004


def test_redis_cli_set_on_leader_get_on_follower_and_wait(make_cluster):
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed (Debian redis-tools; .ci/run installs it)")
    c = make_cluster(3)
    out = subprocess.run(["redis-cli", "-p", str(c.port("n1")), "SET", "k", "v"], capture_output=True, text=True)
    assert out.stdout.strip() == "OK"
    wait_for(lambda: subprocess.run(["redis-cli", "-p", str(c.port("n2")), "GET", "k"], capture_output=True,
                                    text=True).stdout.strip() == "v", 10, "k on n2")
    r = c.client("n1")
    r.set("w", "1")
    assert r.execute_command("WAIT", 2, 1000) == 2


def test_seed_plain_text_client_over_a_raw_socket(make_cluster):
    c = make_cluster(1)
    with socket.create_connection(("127.0.0.1", c.port("n1")), timeout=5) as s:
        f = s.makefile("rb")
        s.sendall(b"write key 0\r\n")
        assert f.readline() == b"+OK\r\n"
        s.sendall(b"read key\r\n")
        assert f.readline() == b"$1\r\n" and f.readline() == b"0\r\n"


def test_follower_kill9_restart_catches_up_by_partial_resync(make_cluster):
    c = make_cluster(3, fsync="always")
    r = c.client("n1")
    for i in range(500):
        r.set(f"a{i}", i)
    c.wait_replicated(["n2", "n3"])
    c.kill("n3")
    for i in range(500):
        r.set(f"b{i}", i)
    c.start("n3")
    c.wait_replicated(["n3"])
    assert c.digest("n3") == c.digest("n1")
    assert int(c.stats("n1")["full_resyncs_sent"]) == 0
    assert "installed a snapshot" not in c.log_text("n3")


def _n3_down_while_n1_snapshots(c):
    """Kill n3, write enough on n1 for it to snapshot and compact; n1's client."""
    r = c.client("n1")
    r.set("before", "1")
    c.wait_replicated(["n2", "n3"])
    c.kill("n3")
    pipe = r.pipeline(transaction=False)
    for i in range(5000):
        pipe.set(f"k{i}", "x" * 40)
    pipe.execute()
    wait_for(lambda: int(r.info("persistence")["replikv_snapshot_index"]) > 1, 10, "a snapshot on n1")
    return r


def test_follower_behind_compaction_catches_up_from_the_backlog(make_cluster):
    """The leader's snapshots keep what a follower that is down lacks (the
    replication backlog, --repl-backlog-bytes): it comes back and catches up
    by entries, without a full resync."""
    c = make_cluster(3, snapshot_bytes=64 * 1024, segment_bytes=16 * 1024)
    r = _n3_down_while_n1_snapshots(c)
    assert int(r.info("replication")["repl_backlog_active"]) == 1
    c.start("n3")
    c.wait_replicated(["n3"])
    assert c.digest("n3") == c.digest("n1")
    assert int(c.stats("n1")["full_resyncs_sent"]) == 0
    assert "installed a snapshot" not in c.log_text("n3")


def test_follower_behind_compaction_and_the_backlog_catches_up_by_full_resync(make_cluster):
    c = make_cluster(3, snapshot_bytes=64 * 1024, segment_bytes=16 * 1024, repl_backlog_bytes=0)
    r = _n3_down_while_n1_snapshots(c)
    c.start("n3")
    c.wait_replicated(["n3"])
    assert c.digest("n3") == c.digest("n1")
    assert int(c.stats("n1")["full_resyncs_sent"]) >= 1
    assert "installed a snapshot" in c.log_text("n3")
    # and it streams normally afterwards
    r.set("after", "2")
    wait_for(lambda: c.client("n3").get("after") == b"2", 10, "streaming after full resync")


def test_leader_kill9_with_fsync_always_loses_no_acknowledged_write(make_cluster):
    c = make_cluster(3, fsync="always")
    acked: list[int] = []
    stop = threading.Event()

    def writer(worker: int) -> None:
        r = c.client("n1", timeout=2)
        i = 0
        while not stop.is_set():
            try:
                r.set(f"w{worker}:{i}", i)
                acked.append((worker, i))
            except (redis.ConnectionError, redis.TimeoutError):
                return
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) > 2000, 30, "2000 acknowledged writes")
    c.kill("n1")
    stop.set()
    for t in threads:
        t.join(10)
    c.start("n1")
    r = c.client("n1")
    pipe = r.pipeline(transaction=False)
    for worker, i in acked:
        pipe.get(f"w{worker}:{i}")
    values = pipe.execute()
    missing = [key for key, v in zip(acked, values) if v is None]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"


def test_sync_acks_block_and_time_out_while_a_follower_is_stopped_async_keeps_going(make_cluster):
    c = make_cluster(3, ack_timeout_ms=500)
    c.wait_streaming()
    r = c.client("n1")
    r.execute_command("CONSISTENCY", "WRITE", "sync")
    r.set("s1", "1")  # both followers up: fine
    c.pause("n3")
    try:
        start = time.monotonic()
        with pytest.raises(redis.ResponseError, match="NOREPLICAS.*may still be applied"):
            r.set("s2", "2")
        assert time.monotonic() - start >= 0.45
        semi = c.client("n1")
        semi.execute_command("CONSISTENCY", "WRITE", "semi-sync", "1")
        assert semi.set("s3", "3") is True          # n2 alone suffices
        a = c.client("n1")                            # async: not held back at all
        for i in range(100):
            assert a.set(f"a{i}", i) is True
    finally:
        c.resume("n3")
    c.wait_replicated(["n3"])
    assert c.client("n3").get("s2") == b"2"  # the timed-out write did reach it later


def test_failover_fences_old_leader_which_discards_unreplicated_writes(make_cluster):
    c = make_cluster(3)
    c.wait_streaming()
    r1 = c.client("n1")
    r1.set("x", "1")
    c.wait_replicated(["n2", "n3"])
    # n1 is cut off (its followers are down; a SIGSTOP would not do: the
    # kernel still accepts the frame and the follower applies it on SIGCONT)
    c.kill("n2"), c.kill("n3")
    r1.set("lost", "1")   # async ack: acknowledged, but only n1 has it
    c.kill("n1")
    c.start("n2", "n3")
    assert c.client("n2").execute_command("FAILOVER", "TO", "n2", "FORCE") == b"OK"
    wait_for(lambda: c.replication("n2")["role"] == "master", 10, "n2 leader")
    r2 = c.client("n2")
    r2.set("y", "2")
    c.start("n1")
    wait_for(lambda: c.replication("n1")["role"] == "slave" and c.replication("n1")["replikv_leader"] == "n2",
             15, "n1 to follow n2")
    wait_for(lambda: c.digest("n1") == c.digest("n2"), 15, "n1 to converge on n2's state")
    assert c.client("n1").get("lost") is None
    assert c.client("n1").get("y") == b"2"
    assert int(c.replication("n1")["replikv_epoch"]) == 4  # n2's first own epoch above 1
    assert int(c.stats("n1")["discarded_acked_writes"]) == 1
    assert "1 of them had been acknowledged" in c.log_text("n1")
    assert c.digest("n1") == c.digest("n2") == c.digest("n3")


def test_failover_with_sync_acks_discards_no_acknowledged_write(make_cluster):
    c = make_cluster(3, ack="sync", ack_timeout_ms=300)
    c.wait_streaming()
    r1 = c.client("n1")
    r1.set("x", "1")
    c.kill("n2"), c.kill("n3")
    with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
        r1.set("unacked", "1")
    c.kill("n1")
    c.start("n2", "n3")
    assert c.client("n2").execute_command("FAILOVER", "TO", "n2", "FORCE") == b"OK"
    c.start("n1")
    wait_for(lambda: c.replication("n1")["replikv_leader"] == "n2", 15, "n1 to follow n2")
    wait_for(lambda: c.digest("n1") == c.digest("n2"), 15, "n1 to converge on n2's state")
    assert c.client("n1").get("unacked") is None
    assert int(c.stats("n1")["discarded_writes"]) == 1
    assert int(c.stats("n1")["discarded_acked_writes"]) == 0
    assert c.client("n1").get("x") == b"1"


def test_graceful_failover_hands_over_without_loss(make_cluster):
    c = make_cluster(3)
    c.wait_streaming()
    r1 = c.client("n1")
    for i in range(200):
        r1.set(f"k{i}", i)
    assert c.client("n2").execute_command("FAILOVER", "TO", "n2") == b"OK"
    wait_for(lambda: c.replication("n1")["replikv_leader"] == "n2", 10, "n1 to follow n2")
    assert c.replication("n2")["role"] == "master"
    c.client("n2").set("after", "1")
    c.wait_replicated(["n1", "n3"], leader="n2")
    assert c.digest("n1") == c.digest("n2") == c.digest("n3")
    assert int(c.stats("n1")["discarded_writes"]) == 0


def test_writes_to_a_follower_are_forwarded(make_cluster):
    c = make_cluster(3)
    c.wait_streaming()
    f = c.client("n2")
    assert f.set("fwd", "1") is True
    assert f.incr("n") == 1 and f.incr("n") == 2
    assert c.client("n1").get("fwd") == b"1"
    # read-your-writes on the follower with session reads
    f.execute_command("CONSISTENCY", "READ", "session")
    f.set("ryw", "mine")
    assert f.get("ryw") == b"mine"
    tx = f.pipeline(transaction=True)
    tx.set("t1", "a").incr("t2").get("t1")
    assert tx.execute() == [True, 1, b"a"]


def test_redirect_mode_answers_moved_to_the_leader(make_cluster):
    c = make_cluster(3, redirect=True)
    c.wait_streaming()
    with socket.create_connection(("127.0.0.1", c.port("n2")), timeout=5) as s:
        s.sendall(b"SET k v\r\n")
        assert s.recv(4096) == f"-MOVED 0 127.0.0.1:{c.port('n1')}\r\n".encode()
    with pytest.raises(redis.ResponseError, match=f"127.0.0.1:{c.port('n1')}"):
        c.client("n2").set("k", "v")
    assert c.client("n2").get("k") is None  # reads are still served locally


def test_requirepass_auth(make_cluster):
    c = make_cluster(2, requirepass="s3cret")
    anon = redis.Redis(port=c.port("n1"), socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anon.get("k")
    wrong = redis.Redis(port=c.port("n1"), password="nope", socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    good = c.client("n1")
    assert good.set("k", "v") is True
    wait_for(lambda: c.client("n2").get("k") == b"v", 10, "replication with auth on")


def test_peer_with_wrong_cluster_secret_is_refused(make_cluster, tmp_path):
    c = make_cluster(2)
    c.stop("n2")
    bad = Cluster.__new__(Cluster)
    bad.__dict__.update(c.__dict__)
    bad.config = c.config
    wrong = c.root / "wrong.toml"
    text = c.path.read_text().replace('secret = "test-secret"', 'secret = "wrong"')
    wrong.write_text(text)
    c.start("n2", config_path=wrong)
    wait_for(lambda: "wrong cluster secret" in c.log_text("n1"), 10, "n1 to log the refusal")
    c.client("n1").set("k", "v")
    # n1 refused n2 again after the write: n2 cannot have received it (no window of wall-clock time:
    # the refusals are the events that prove no authenticated connection carried it)
    refusals = c.log_text("n1").count("wrong cluster secret")
    wait_for(lambda: c.log_text("n1").count("wrong cluster secret") > refusals, 10, "another refusal")
    assert c.client("n2").get("k") is None
    assert c.replication("n2")["master_link_status"] == "down"
    assert c.replication("n1")["connected_slaves"] == 0


def test_expiry_is_decided_by_the_leader_and_replicated_as_delete(make_cluster):
    c = make_cluster(2)
    r = c.client("n1")
    r.set("t", "v", px=3000)
    r.set("keep", "v")
    # the follower holds the leader's absolute expiry time, not a TTL of its own
    wait_for(lambda: 0 < c.client("n2").pttl("t") <= 3000, 10, "n2 to hold t with its TTL")
    wait_for(lambda: c.client("n2").dbsize() == 1 and c.client("n1").dbsize() == 1, 10, "expired key deleted")
    assert c.digest("n1") == c.digest("n2")


def test_bad_input_gets_errors_and_loses_nothing(make_cluster):
    c = make_cluster(1, max_bulk_len=1024)
    r = c.client("n1")
    r.set("safe", "1")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        r.execute_command("GET")
    with pytest.raises(redis.ResponseError, match="unknown command"):
        r.execute_command("NOSUCHCMD", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.lpush("safe", "x")
    for garbage in (b"*1\r\n$99999999999\r\n", b"*2\r\n:5\r\n", b"*abc\r\n", b"\x00\xff\r\nset \"a\r\n"):
        with socket.create_connection(("127.0.0.1", c.port("n1")), timeout=5) as s:
            s.sendall(garbage)
            reply = s.recv(4096)
            assert reply.startswith(b"-ERR Protocol error"), (garbage, reply)
            assert s.recv(4096) == b""  # closed
    assert r.get("safe") == b"1"
    assert r.ping() is True


def test_linearizable_reads_are_refused_in_this_mode(make_cluster):
    c = make_cluster(2)
    with pytest.raises(redis.ResponseError, match="--mode raft"):
        c.client("n2").execute_command("CONSISTENCY", "READ", "linearizable")
