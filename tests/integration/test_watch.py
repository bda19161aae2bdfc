"""WATCH / MULTI / EXEC on real processes in every mode (kv/watch.py):
an EXEC fails iff a watched key changed after the WATCH, on the leader and
on a node that forwards the block to it, and optimistic increments from
clients on every node lose no update."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from replikv import modes
from tests.integration.cluster import Cluster, RawConnection, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(mode_cluster: Cluster) -> Cluster:
    return mode_cluster



def _watched_exec(r: redis.Redis, key: str, change: Any) -> list[Any] | None:
    """WATCH key, read it, let ``change`` run, then MULTI/SET/EXEC: EXEC's reply (None if aborted)."""
    with r.pipeline() as p:
        p.watch(key)
        before = p.get(key)
        change()
        p.multi()
        p.set(key, (before or b"") + b"+")
        try:
            return p.execute()  # type: ignore[no-any-return]
        except redis.WatchError:
            return None


def single_writer_only(c: Cluster) -> None:
    if not modes.get(c.config.mode).single_writer:
        pytest.skip("every node takes writes: WATCH sees the writes its node has applied, not a concurrent "
                    "one on another node (tests/integration/test_multi_leader.py tests WATCH there)")


def test_exec_fails_iff_a_watched_key_changed(cluster: Cluster) -> None:
    c = cluster
    single_writer_only(c)
    leader = c.leader()
    nodes = [leader] + [n for n in c.procs if n != leader]
    writer = c.client(leader)
    writer.set("k", "v")
    for node in nodes:  # on the leader, then on each node that forwards to it
        r = c.client(node)
        c.wait_replicated(list(c.procs), leader)  # else a lagging node's WATCH predates the last write
        assert _watched_exec(r, "k", lambda: None) == [True], node
        assert _watched_exec(r, "k", lambda: writer.set("k", "changed by another client")) is None, node
        assert _watched_exec(r, "k", lambda: writer.set("unrelated", "x")) == [True], node
        # UNWATCH forgets; so does a DISCARDed block (one connection throughout)
        one = RawConnection(c.port(node))
        assert one.call("WATCH", "k") == "OK"
        writer.set("k", "again")
        assert one.call("UNWATCH") == "OK" and one.call("MULTI") == "OK"
        assert one.call("SET", "k", "after unwatch") == "QUEUED" and one.call("EXEC") == ["OK"]
        assert one.call("WATCH", "k") == "OK" and one.call("MULTI") == "OK" and one.call("DISCARD") == "OK"
        writer.set("k", "changed after discard")
        assert one.call("MULTI") == "OK" and one.call("SET", "k", "after discard") == "QUEUED"
        assert one.call("EXEC") == ["OK"]
        # an empty block still fails when its watched key changed
        assert one.call("WATCH", "k") == "OK"
        writer.set("k", "changed before an empty EXEC")
        c.wait_replicated(list(c.procs), leader)  # a read-only block is served where it lands
        assert one.call("MULTI") == "OK" and one.call("EXEC") is None
        one.close()
    # a watched key that expires, or is deleted, counts as changed; WATCH inside MULTI is refused
    r = c.client(leader)
    with pytest.raises(redis.ResponseError, match="WATCH inside MULTI is not allowed"):
        with r.pipeline() as p:
            p.multi()
            p.execute_command("WATCH", "k")
            p.execute()
    assert _watched_exec(r, "k", lambda: writer.delete("k")) is None


def test_optimistic_increments_from_every_node_lose_nothing(cluster: Cluster) -> None:
    """Each client does GET, then SET of value+1 under WATCH, retrying on abort (redis-py's
    ``transaction`` helper): the final value counts every increment, whichever nodes they came
    through."""
    c = cluster
    single_writer_only(c)
    leader = c.leader()
    c.client(leader).set("counter", 0)
    for node in c.procs:  # a follower that has not applied the SET yet would read no counter at all
        wait_for(lambda: c.client(node).get("counter") is not None, 20, f"the counter on {node}")
    per_client, errors = 25, []

    def work(node: str) -> None:
        r = c.client(node)

        def bump(p: Any) -> None:
            value = int(p.get("counter"))
            p.multi()
            p.set("counter", value + 1)
        try:
            for _ in range(per_client):
                r.transaction(bump, "counter")
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(node,)) for node in list(c.procs) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert int(c.client(leader).get("counter")) == per_client * len(threads)
