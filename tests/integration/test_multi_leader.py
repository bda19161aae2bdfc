"""Multi-leader mode on real processes: every node takes writes, replicas converge.

What a user of Redis Active-Active or CouchDB expects: concurrent increments on
different nodes add up, concurrent adds to one set all survive, concurrent
writes of one string end in the same value everywhere (or, with
``--conflicts siblings``, in siblings that VGET shows and VSET resolves), a
node that was down catches up (from the others' logs, or by a state
transfer once they no longer hold what it missed), star and ring topologies
relay every write to every node, SESSION carries read-your-writes to
another node, and ``CONSISTENCY WRITE <n>`` waits for n other nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.cluster import Cluster, limit_peer_frames, wait_for

pytestmark = pytest.mark.integration

NODES = ("n1", "n2", "n3")


def ml_cluster(root: Path, n: int = 3, **options: Any) -> Cluster:
    options.setdefault("fsync", "always")
    c = Cluster(root, n, **options)
    c.config.mode = "multi-leader"
    c.config.save(c.path)
    return c.start()


@pytest.fixture
def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = ml_cluster(tmp_path / "c")
    yield c
    c.close()


def converged(c: Cluster, ids: tuple[str, ...] = NODES) -> bytes:
    """Wait until every node in ``ids`` shows one digest; return it."""
    def same() -> bytes | None:
        digests = {c.digest(n) for n in ids}
        return digests.pop() if len(digests) == 1 else None
    return wait_for(same, 30, "the replicas to converge")


def test_every_node_takes_writes_and_types_merge(cluster: Cluster) -> None:
    c = cluster
    clients = {n: c.client(n) for n in NODES}
    for i in range(20):  # interleaved: concurrent with the other nodes' writes
        for n, r in clients.items():
            assert r.incr("hits") >= 1
            assert r.sadd("members", f"{n}-{i}") == 1
            r.hset("profile", f"{n}", i)
            r.rpush("events", f"{n}-{i}")
            r.set("last", f"{n}-{i}")
    converged(c)
    for n, r in clients.items():
        assert r.get("hits") == b"60", n  # no increment lost
        assert r.scard("members") == 60
        assert r.hgetall("profile") == {b"n1": b"19", b"n2": b"19", b"n3": b"19"}
        assert r.llen("events") == 60
        assert r.type("last") == b"string"
    lists = {tuple(r.lrange("events", 0, -1)) for r in clients.values()}
    assert len(lists) == 1  # one interleaving, the same on every node
    values = {r.get("last") for r in clients.values()}
    assert len(values) == 1 and values.pop().endswith(b"-19")
    # each node's own pushes keep their order
    events = [e.decode() for e in lists.pop()]
    for n in NODES:
        mine = [e for e in events if e.startswith(n)]
        assert mine == [f"{n}-{i}" for i in range(20)]


def test_commands_without_a_convergent_type_are_refused(cluster: Cluster) -> None:
    r = cluster.client("n1")
    for argv in (("ZADD", "z", "1", "a"), ("XADD", "s", "*", "f", "v"), ("INCRBYFLOAT", "f", "1.5"),
                 ("RENAME", "a", "b")):
        with pytest.raises(redis.ResponseError, match="not offered in multi-leader mode: "):
            r.execute_command(*argv)
    assert r.execute_command("ZCARD", "z") == 0  # reads of every type are served
    with pytest.raises(redis.ResponseError, match="no leader to fail over"):
        r.execute_command("FAILOVER", "TO", "n2")


def test_a_node_that_was_down_catches_up_from_the_others_logs(cluster: Cluster) -> None:
    c = cluster
    c.kill("n3")
    for i in range(50):
        c.client("n1" if i % 2 else "n2").incr("c")
        c.client("n1").sadd("s", i)
    c.start("n3")
    converged(c)
    assert c.client("n3").get("c") == b"50"
    assert c.client("n3").scard("s") == 50
    assert int(c.client("n3").info("stats")["state_transfers_received"]) == 0


def test_state_transfer_once_the_log_it_missed_is_gone(cluster: Cluster) -> None:
    c = cluster
    c.stop("n3")
    for i in range(30):
        c.client("n1").rpush("l", i)
        c.client("n2").incr("c")
    converged(c, ("n1", "n2"))
    for n in ("n1", "n2"):  # a snapshot, then a restart: neither retains the operations n3 missed
        assert c.client(n).execute_command("SAVE") in (True, b"OK")
        c.stop(n)
    c.start("n1", "n2", "n3")
    converged(c)
    r3 = c.client("n3")
    assert r3.lrange("l", 0, -1) == [str(i).encode() for i in range(30)]
    assert r3.get("c") == b"30"
    assert int(r3.info("stats")["state_transfers_received"]) >= 1
    # and it goes on taking writes that reach the others
    r3.incr("c")
    wait_for(lambda: c.client("n1").get("c") == b"31", 20, "n3's write at n1")


def test_restart_keeps_local_writes_and_resumes_exchange(cluster: Cluster) -> None:
    c = cluster
    for i in range(30):
        c.client("n2").incr("k")
    c.kill("n2")  # kill -9: every acknowledged write (fsync always) must survive
    c.start("n2")
    assert c.client("n2").get("k") == b"30"
    c.client("n2").incr("k")
    converged(c)
    assert c.client("n1").get("k") == b"31"


@pytest.mark.parametrize("topology", ["star", "ring"])
def test_star_and_ring_relay_every_write(tmp_path: Path, topology: str) -> None:
    c = ml_cluster(tmp_path / "c", 4, topology=topology)
    try:
        ids = tuple(c.config.nodes)
        for n in ids:
            for i in range(10):
                c.client(n).sadd("all", f"{n}-{i}")
                c.client(n).incr("total")
        converged(c, ids)
        for n in ids:
            assert c.client(n).scard("all") == 40
            assert c.client(n).get("total") == b"40"
        assert c.client("n1").info("replication")["replikv_topology"] == topology
    finally:
        c.close()


def test_siblings_vget_and_vset(tmp_path: Path) -> None:
    c = ml_cluster(tmp_path / "c", 2, conflicts="siblings")
    try:
        c.stop("n2")
        c.client("n1").set("k", "from-n1")
        c.stop("n1")
        c.start("n2")
        c.client("n2").set("k", "from-n2")
        c.start("n1")
        converged(c, ("n1", "n2"))
        ctx, values = c.client("n1").execute_command("VGET", "k")
        assert sorted(values) == [b"from-n1", b"from-n2"]
        assert c.client("n1").get("k") in (b"from-n1", b"from-n2")  # plain GET: the LWW winner
        assert c.client("n2").get("k") == c.client("n1").get("k")
        assert c.client("n2").execute_command("VSET", "k", "merged", "CONTEXT", ctx) == b"OK"
        wait_for(lambda: c.client("n1").execute_command("VGET", "k")[1] == [b"merged"], 20, "one sibling")
        with pytest.raises(redis.ResponseError, match="VSET key value CONTEXT"):
            c.client("n1").execute_command("VSET", "k", "v", "CTX", ctx)
    finally:
        c.close()


def test_session_token_carries_read_your_writes_to_another_node(cluster: Cluster) -> None:
    c = cluster
    w = c.client("n1", single_connection_client=True)
    w.set("mine", "v1")
    token = w.execute_command("SESSION")
    assert b"n1:" in token
    r = c.client("n2", single_connection_client=True)
    assert r.execute_command("SESSION", token) == b"OK"
    assert r.get("mine") == b"v1"  # waits (bounded) until n2 has applied what the token names
    with pytest.raises(redis.ResponseError, match="usage: SESSION"):
        r.execute_command("SESSION", "not-a-vector")


def test_write_level_n_waits_for_other_nodes(cluster: Cluster) -> None:
    c = cluster
    r = c.client("n1", single_connection_client=True)
    assert r.execute_command("CONSISTENCY", "WRITE", "2") == b"OK"
    assert r.set("k", "v") is True
    # acknowledged at level 2: both other nodes hold it now
    assert c.client("n2").get("k") == b"v" and c.client("n3").get("k") == b"v"
    assert r.execute_command("WAIT", 2, 1000) == 2
    c.kill("n3")
    with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
        r.set("k2", "v")
    assert r.get("k2") == b"v"  # applied here, as the error says
    with pytest.raises(redis.ResponseError, match="needs 3 other nodes"):
        r.execute_command("CONSISTENCY", "WRITE", "3")


def test_expiry_is_decided_the_same_everywhere(cluster: Cluster) -> None:
    c = cluster
    r = c.client("n1")
    r.set("t", "v", px=200)
    r.set("keep", "v", px=60_000)
    converged(c)
    for n in NODES:
        wait_for(lambda: c.client(n).exists("t") == 0, 10, f"t to expire on {n}")
    converged(c)
    for n in NODES:
        assert 0 < c.client(n).pttl("keep") <= 60_000


def test_watch_sees_local_writes_and_writes_that_arrived(cluster: Cluster) -> None:
    c = cluster
    r1, r2 = c.client("n1"), c.client("n2")

    def watched_exec(change: Any) -> list[Any] | None:
        with r1.pipeline() as p:
            p.watch("k")
            change()
            p.multi()
            p.set("k", "mine")
            try:
                return p.execute()  # type: ignore[no-any-return]
            except redis.WatchError:
                return None
    assert watched_exec(lambda: None) == [True]
    assert watched_exec(lambda: r1.set("k", "local")) is None  # a local write aborts

    def remote() -> None:
        r2.set("k", "remote")
        wait_for(lambda: r1.get("k") == b"remote", 20, "n2's write at n1")
    assert watched_exec(remote) is None  # so does another node's, once it arrived
    assert watched_exec(lambda: r2.set("other", "x")) == [True]


def test_a_pipeline_of_large_values_replicates_without_a_link_drop(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9: the ops held for one peer send (``PEER_SEND_EVERY_S``) leave in frames of at
    most the peer frame limit (3 MiB here: ``max_bulk_len`` 1 MiB and
    ``REPLIKV_PEER_FRAME_SLACK_BYTES`` 2 MiB), not in one frame of every op due, which closed the
    link: a pipeline of 40 values of about 1 MiB reaches every node, and no link dropped."""
    bulk = limit_peer_frames(monkeypatch)
    c = ml_cluster(tmp_path / "c", max_bulk_len=bulk)
    try:
        values = {f"m{i}": bytes([65 + i % 26]) * (bulk - i) for i in range(40)}
        p = c.client("n1", timeout=60).pipeline(transaction=False)
        for k, v in values.items():
            p.set(k, v)
        assert p.execute() == [True] * len(values)
        for n in NODES:
            r = c.client(n, timeout=60)
            wait_for(lambda: all(r.get(k) == v for k, v in values.items()), 60, f"{n} to hold every value")
        c.assert_no_peer_link_closed()
    finally:
        c.close()
