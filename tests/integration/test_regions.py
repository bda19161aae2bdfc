"""Regions on one machine (issue 10): real node processes with injected peer latency.

With ``peer_delay_ms = 50`` every frame between nodes takes at least 50 ms one
way. A raft write is acknowledged only once a majority has it, so the client
waits at least the leader's round trip to a follower (2 x 50 ms); a local
write on a leader-follower async leader does not wait for any peer. Only
lower bounds are asserted; the measured latencies are printed (``-s``).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

DELAY_MS = 50


def _leader(c: Cluster) -> str:
    def find() -> str | None:
        roles = {}
        for n in c.procs:
            try:
                roles[n] = c.replication(n)["role"]
            except (redis.RedisError, OSError):
                pass
        leaders = [n for n, r in roles.items() if r == "master"]
        return leaders[0] if len(leaders) == 1 else None
    leader: str = wait_for(find, 30, "a single leader")  # type: ignore[assignment]
    return leader


def _set_latencies(client: redis.Redis, n: int, prefix: str) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        assert client.set(f"{prefix}{i}", "v")
        out.append(time.perf_counter() - t0)
    return out


def _summary(name: str, lat: list[float]) -> str:
    ms = sorted(x * 1000 for x in lat)
    return (f"{name}: n={len(ms)} min={ms[0]:.1f} ms p50={statistics.median(ms):.1f} ms "
            f"max={ms[-1]:.1f} ms")


def _make(tmp_path: Path, mode: str, **options: Any) -> Cluster:
    options.setdefault("fsync", "everysec")
    c = Cluster(tmp_path / mode, 3, **options)
    c.config.mode = mode
    c.config.save(c.path)
    return c


@pytest.mark.parametrize("jitter_ms", [0, 20])
def test_raft_writes_wait_for_the_round_trip(tmp_path: Path, jitter_ms: int) -> None:
    c = _make(tmp_path, "raft", peer_delay_ms=DELAY_MS, peer_jitter_ms=jitter_ms, election_timeout_ms=1000)
    try:
        c.start()
        leader = _leader(c)
        client = c.client(leader)
        assert client.set("warm", "up")  # the first write may also wait for the leader's no-op
        lat = _set_latencies(client, 20, "k")
        print("\n" + _summary(f"raft SET on the leader, {DELAY_MS} ± {jitter_ms} ms between nodes", lat))
        # a majority (leader + 1 follower) must have it: append entries out, ack back
        assert min(lat) >= 2 * (DELAY_MS - jitter_ms) / 1000
        # the write is everywhere after the injected delay, never before the round trip
        assert c.client(leader).get("k19") == b"v"
    finally:
        c.close()


def test_raft_writes_wait_when_the_delay_is_given_on_the_node_command(tmp_path: Path) -> None:
    """The same, with the delay given as ``replikv node --peer-delay-ms`` (cluster.toml has none)."""
    c = _make(tmp_path, "raft", election_timeout_ms=1000)
    try:
        for node_id in c.config.nodes:
            log = open(c.log_path(node_id), "ab")
            c.procs[node_id] = subprocess.Popen(
                [sys.executable, "-m", "replikv", "node", "--config", str(c.path), "--id", node_id,
                 "--peer-delay-ms", str(DELAY_MS)], stdout=log, stderr=subprocess.STDOUT)
            log.close()
        for node_id in c.config.nodes:
            wait_for(lambda: c.client(node_id, timeout=0.5).ping(), 20, f"{node_id} to answer PING")
        client = c.client(_leader(c))
        assert client.set("warm", "up")
        lat = _set_latencies(client, 10, "k")
        print("\n" + _summary(f"raft SET, --peer-delay-ms {DELAY_MS} on replikv node", lat))
        assert min(lat) >= 2 * DELAY_MS / 1000
    finally:
        c.close()


@pytest.mark.parametrize("mode", ["leader-follower", "multi-leader"])
def test_a_local_write_does_not_wait_for_the_delay(tmp_path: Path, mode: str) -> None:
    """Leader-follower async, and multi-leader on EVERY node: a write is acknowledged
    after the local log, so the injected 50 ms never shows in its latency (measured,
    not asserted: no upper bounds on time in tests); the other nodes still get the
    writes, no earlier than the delay after they were sent."""
    c = _make(tmp_path, mode, peer_delay_ms=DELAY_MS, ack="async")
    try:
        c.start()
        writers = ["n1"] if mode == "leader-follower" else list(c.config.nodes)
        for node in writers:
            client = c.client(node)
            assert client.set("warm", "up")
            lat = _set_latencies(client, 200, f"{node}-k")
            print("\n" + _summary(f"{mode} SET on {node}, {DELAY_MS} ms between nodes", lat))
            other = next(n for n in c.config.nodes if n != node)
            t0 = time.perf_counter()
            client.set(f"{node}-last", "v")
            wait_for(lambda: c.client(other).get(f"{node}-last") == b"v", 20, f"{other} to have the last write")
            seen_ms = (time.perf_counter() - t0) * 1000
            print(f"replication to {other} seen after {seen_ms:.1f} ms")
            assert seen_ms >= DELAY_MS  # it crossed the injected link
    finally:
        c.close()
