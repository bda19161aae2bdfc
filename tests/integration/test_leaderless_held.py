"""Leaderless held sends on real processes (issue 9; runtime/leaderless.py ``_ship``): the sends of
writes at ONE are held for the send interval and still reach every replica; a write whose reply
waits for replicas (QUORUM) is not held, and takes the held ONE writes with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.cluster import Cluster, wait_for
from tests.integration.test_leaderless import ll_cluster

pytestmark = pytest.mark.integration


def local_get(c: Cluster, node: str, key: str) -> Any:
    """``key`` as ``node``'s own replica holds it (a read at ONE: every node is a replica with N=3)."""
    r = c.client(node)
    try:
        r.execute_command("CONSISTENCY", "READ", "one")
        return r.get(key)
    finally:
        r.close()


def all_linked(c: Cluster) -> None:
    for node in c.config.nodes:
        wait_for(lambda: c.replication(node).get("connected_slaves") == 2, 20, f"{node}'s peer links")


def test_writes_at_one_reach_every_replica_and_info_shows_the_send_interval(tmp_path: Path) -> None:
    c = ll_cluster(tmp_path, read_repair_pct=0, anti_entropy_ms=0)  # only the writes' own sends carry them
    try:
        all_linked(c)
        r = c.client("n1")
        r.execute_command("CONSISTENCY", "WRITE", "one")
        for i in range(50):  # single writes, most within the interval of the one before: held
            assert r.set(f"s{i}", f"v{i}")
        pipe = r.pipeline(transaction=False)
        for i in range(200):
            pipe.set(f"p{i}", f"w{i}")
        assert all(pipe.execute())
        for node in ("n2", "n3"):
            wait_for(lambda: local_get(c, node, "s49") == b"v49" and local_get(c, node, "p199") == b"w199",
                     20, f"the ONE writes on {node}")
            assert [local_get(c, node, f"s{i}") for i in range(50)] == [f"v{i}".encode() for i in range(50)]
        interval = c.replication("n1")["replikv_peer_send_interval_ms"]
        assert 2 <= float(interval) <= 5  # the send interval's bounds (runtime/send_interval.py)
    finally:
        c.close()


def test_a_quorum_write_is_not_held_and_takes_the_held_one_writes_along(tmp_path: Path, monkeypatch) -> None:
    """With a send interval of ten minutes, the second ONE write stays on n1 (no read repair, no
    anti-entropy, an ack timeout far away: nothing else carries it); a QUORUM write then is
    answered at once (its sends are not held) and the held write reaches the replicas with it."""
    monkeypatch.setenv("REPLIKV_LL_SEND_EVERY_MS", "600000")
    monkeypatch.setenv("REPLIKV_LL_SEND_MAX_MS", "600000")
    c = ll_cluster(tmp_path, read_repair_pct=0, anti_entropy_ms=0, ack_timeout_ms=600_000)
    try:
        all_linked(c)
        one = c.client("n1")
        one.execute_command("CONSISTENCY", "WRITE", "one")
        assert one.set("a", "1")  # the first after a quiet spell: at once
        for node in ("n2", "n3"):
            wait_for(lambda: local_get(c, node, "a") == b"1", 20, f"a on {node}")
        assert one.set("b", "2")  # answered at n1's WAL commit, its sends held
        assert c.replication("n1")["replikv_peer_send_interval_ms"] == 600000
        assert local_get(c, "n2", "b") is None and local_get(c, "n3", "b") is None  # held on n1
        quorum = c.client("n1", timeout=10)
        quorum.execute_command("CONSISTENCY", "WRITE", "quorum")
        assert quorum.set("q", "3")  # a replica's ack within the client's timeout: not held
        for node in ("n2", "n3"):
            wait_for(lambda: local_get(c, node, "b") == b"2" and local_get(c, node, "q") == b"3", 20,
                     f"b went along with q to {node}")
    except redis.TimeoutError:
        pytest.fail("the QUORUM write was held behind the ONE writes")
    finally:
        c.close()
