"""Leader-follower: protocol details a Redis user relies on, on real processes."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import redis

from replikv.config import ClusterConfig, NodeAddress, NodeOptions
from tests.integration.cluster import free_ports, wait_for

pytestmark = pytest.mark.integration


def test_hello_3_switches_to_resp3_and_replies_stay_correct(make_cluster):
    c = make_cluster(1)
    r = redis.Redis(port=c.port("n1"), protocol=3, socket_timeout=5)
    assert r.set("k", "v") is True
    assert r.hset("h", mapping={"a": 1, "b": 2}) == 2
    assert r.hgetall("h") == {b"a": b"1", b"b": b"2"}
    assert r.sadd("s", "x", "y") == 2 and r.smembers("s") == {b"x", b"y"}
    hello = r.execute_command("HELLO", 3)
    assert hello[b"proto"] == 3 and hello[b"role"] == b"master"


def test_multi_exec_is_one_log_entry_applied_on_followers(make_cluster):
    c = make_cluster(2)
    c.wait_streaming()
    r = c.client("n1")
    before = c.last_index("n1")
    tx = r.pipeline(transaction=True)
    tx.set("a", "1").incr("b").rpush("l", "x", "y")
    assert tx.execute() == [True, 1, 2]
    assert c.last_index("n1") == before + 1
    c.wait_replicated(["n2"])
    f = c.client("n2")
    assert (f.get("a"), f.get("b"), f.lrange("l", 0, -1)) == (b"1", b"1", [b"x", b"y"])


def test_info_sections_in_redis_format(make_cluster):
    c = make_cluster(2)
    r = c.client("n1")
    r.set("k", "v", ex=100)
    info = r.info("all")
    assert info["role"] == "master" and info["connected_slaves"] >= 0
    assert info["db0"] == {"keys": 1, "expires": 1, "avg_ttl": 0}
    assert "redis_version" in info and "total_commands_processed" in info
    assert r.config_get("append*") == {"appendonly": "yes", "appendfsync": "everysec"}
    raw = r.execute_command("INFO", "replication")
    assert raw.startswith(b"# Replication\r\nrole:master") if isinstance(raw, bytes) else raw["role"] == "master"


def test_session_token_gives_read_your_writes_across_connections(make_cluster):
    c = make_cluster(3)
    c.wait_streaming()
    w = c.client("n1")
    w.set("s", "1")
    token = w.execute_command("SESSION")
    r2 = c.client("n2")
    r2.execute_command("SESSION", token)
    assert r2.get("s") == b"1"  # n2 waits (if need be) until it has applied the token's index
    c.pause("n3")
    try:
        w.set("s", "2")       # n3 cannot have this one yet
        token2 = w.execute_command("SESSION")
        reader = c.client("n3", timeout=10)
    finally:
        c.resume("n3")
    reader.execute_command("SESSION", token2)
    assert reader.get("s") == b"2"


def test_session_read_times_out_with_an_error_when_the_follower_lags(make_cluster):
    c = make_cluster(3, session_timeout_ms=300)
    c.wait_streaming()
    w = c.client("n1")
    w.set("x", "0")
    c.wait_replicated(["n3"])
    c.kill("n1")  # nothing new will ever reach n3
    r3 = c.client("n3")
    r3.execute_command("SESSION", str(c.last_index("n3") + 5))
    start = time.monotonic()
    with pytest.raises(redis.ResponseError, match="STALE session position"):
        r3.get("x")
    assert time.monotonic() - start >= 0.25


def test_bounded_reads_are_refused_when_the_follower_may_be_too_stale(make_cluster):
    c = make_cluster(2, heartbeat_ms=50)
    c.wait_streaming()
    c.client("n1").set("b", "1")
    c.wait_replicated(["n2"])
    f = c.client("n2")
    f.execute_command("CONSISTENCY", "READ", "bounded", "2000")
    assert f.get("b") == b"1"
    assert f.execute_command("CONSISTENCY") == b"read=bounded:2000 write=async"
    c.kill("n1")  # the follower stops hearing from its leader
    f.execute_command("CONSISTENCY", "READ", "bounded", "300")
    wait_for(lambda: _refused(f), 10, "the follower to refuse a bounded read")
    f.execute_command("CONSISTENCY", "READ", "eventual")
    assert f.get("b") == b"1"  # eventual reads still served


def _refused(client: redis.Redis) -> bool:
    try:
        client.get("b")
    except redis.ResponseError as e:
        assert "STALE" in str(e)
        return True
    return False


def test_protected_mode_refuses_a_non_loopback_address_without_password_and_secret(tmp_path):
    port, peer = free_ports(2)
    config = ClusterConfig(mode="leader-follower", secret="", initial_leader="n1",
                           nodes={"n1": NodeAddress("n1", "0.0.0.0", port, peer, str(tmp_path / "n1"))},
                           options=NodeOptions())
    path = tmp_path / "cluster.toml"
    config.save(path)
    out = subprocess.run([sys.executable, "-m", "replikv", "node", "--config", str(path), "--id", "n1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "protected mode" in (out.stdout + out.stderr)
