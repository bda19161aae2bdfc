"""The lock service (LOCK/RENEW/UNLOCK/LOCKINFO/FENCED, docs/design.md "Locks") on real raft processes.

No fixed sleeps: every wait is a condition with a deadline (cluster.wait_for).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from replikv.core.sharding import SlotMap, key_slot
from tests.integration.cluster import Cluster, wait_for
from tests.integration.test_raft import wait_leader
from tests.integration.test_sharded_raft import retrying, settled, sharded

pytestmark = pytest.mark.integration


@pytest.fixture
def raft3(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[Cluster] = []

    def make(**options: Any) -> Cluster:
        options.setdefault("election_timeout_ms", 500)
        options.setdefault("fsync", "always")
        c = Cluster(tmp_path / f"c{len(made)}", 3, **options)
        c.config.mode = "raft"
        c.config.save(c.path)
        made.append(c)
        return c.start()

    yield make
    for c in made:
        c.close()


def info(r: redis.Redis, name: str) -> dict[str, Any]:
    flat = r.execute_command("LOCKINFO", name)
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


def lock(r: redis.Redis, name: str, ttl_ms: int, wait_ms: int = 0) -> int | None:
    args: list[Any] = ["LOCK", name, ttl_ms] + (["WAIT", wait_ms] if wait_ms else [])
    return r.execute_command(*args)  # type: ignore[no-any-return]


def test_lock_unlock_renew_lockinfo_and_fencing(raft3: Callable[..., Cluster]) -> None:
    c = raft3()
    leader = wait_leader(c)
    follower = next(n for n in c.config.nodes if n != leader)
    lc, fc = c.client(leader), c.client(follower)  # a follower's client is forwarded to the leader
    token = lock(fc, "job", 60_000)
    assert isinstance(token, int) and token > 0
    assert lock(lc, "job", 60_000) is None
    held = info(lc, "job")
    assert held["holder"] == token and held["last-token"] == token and held["lease-ms"] == 60_000
    assert 0 < held["ttl-ms"] <= 60_000
    # locks are not keys
    assert lc.dbsize() == 0 and lc.keys("*") == [] and lc.delete("job") == 0
    assert info(lc, "job")["holder"] == token

    assert fc.execute_command("RENEW", "job", token, 90_000) == b"OK"
    with pytest.raises(redis.ResponseError, match="NOTHOLDER token"):
        fc.execute_command("RENEW", "job", token + 1, 1000)
    assert fc.execute_command("FENCED", "job", token, "SET", "balance", "10") == b"OK"
    assert fc.execute_command("UNLOCK", "job", token + 1) == 0
    assert fc.execute_command("UNLOCK", "job", token) == 1
    assert info(fc, "job")["holder"] is None

    second = lock(lc, "job", 60_000)
    assert isinstance(second, int) and second > token
    # the first holder, paused past its lease, comes back with its old token: refused on every node
    with pytest.raises(redis.ResponseError, match=f"FENCED token {token} of lock 'job' is stale: token {second}"):
        fc.execute_command("FENCED", "job", token, "SET", "balance", "stale")
    assert lc.get("balance") == b"10"
    assert lc.execute_command("FENCED", "job", second, "INCRBY", "balance", "5") == 15
    # fencing inside MULTI/EXEC: each command checked at apply
    pipe = fc.pipeline(transaction=True)
    pipe.execute_command("FENCED", "job", second, "SET", "a", "1")
    pipe.execute_command("FENCED", "job", token, "SET", "b", "1")
    ok, stale = pipe.execute(raise_on_error=False)
    assert ok == b"OK" and isinstance(stale, redis.ResponseError) and "FENCED" in str(stale)
    assert lc.get("a") == b"1" and lc.get("b") is None
    with pytest.raises(redis.ResponseError, match="LOCKEXPIRE is internal"):
        lc.execute_command("LOCKEXPIRE", "job", second, 1)
    assert info(lc, "job")["holder"] == second
    wait_for(lambda: len({c.digest(n) for n in c.config.nodes}) == 1, 20, "replicas to converge")


def test_wait_wakes_when_released_and_lease_expires(raft3: Callable[..., Cluster]) -> None:
    c = raft3()
    leader = wait_leader(c)
    follower = next(n for n in c.config.nodes if n != leader)
    holder = c.client(leader)
    token = lock(holder, "w", 60_000)
    assert token is not None
    assert lock(c.client(follower), "w", 1000, wait_ms=50) is None  # waited, not granted
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(lock(c.client(follower), "w", 60_000, wait_ms=30_000)))
    waiter.start()
    try:
        # the waiter is parked (its attempts are nil) until the release
        wait_for(lambda: c.client(follower).info("clients")["blocked_clients"] == 1, 10, "the waiter to park")
        assert info(holder, "w")["holder"] == token and not got
        assert holder.execute_command("UNLOCK", "w", token) == 1
        waiter.join(20)
        assert not waiter.is_alive()
    finally:
        waiter.join(30)
    assert isinstance(got[0], int) and got[0] > token
    assert info(holder, "w")["holder"] == got[0]

    # a lease nobody renews expires on the leader after its ttl, and then the lock is free again
    short = lock(holder, "short", 400)
    assert short is not None
    wait_for(lambda: info(holder, "short")["holder"] is None, 20, "the lease to expire")
    again = lock(holder, "short", 60_000)
    assert isinstance(again, int) and again > short


def test_leader_failover_keeps_the_lock_until_its_ttl(raft3: Callable[..., Cluster]) -> None:
    c = raft3()
    old = wait_leader(c)
    ttl = 4000
    r = c.client(old)
    token = lock(r, "f", ttl)
    assert token is not None
    others = [n for n in c.config.nodes if n != old]
    wait_for(lambda: all(info(c.client(n), "f")["holder"] == token for n in others), 10, "the grant to replicate")
    c.kill(old)
    killed_at = time.monotonic()
    new = wait_leader(c, others, timeout=20)
    nc = c.client(new)
    # the new leader restarts the countdown in full: held at least until ttl after it took over
    assert lock(nc, "f", ttl) is None
    assert info(nc, "f")["holder"] == token
    wait_for(lambda: retrying(lambda: info(nc, "f"))["holder"] is None, 30, "the lease to expire on the new leader")
    assert time.monotonic() - killed_at >= ttl / 1000  # never before a full ttl on the new leader
    nxt = retrying(lambda: lock(nc, "f", 60_000))
    assert isinstance(nxt, int) and nxt > token


def test_locks_survive_a_restart_of_every_node(raft3: Callable[..., Cluster]) -> None:
    c = raft3(snapshot_bytes=4096)
    leader = wait_leader(c)
    r = c.client(leader)
    token = lock(r, "keep", 600_000)
    assert token is not None
    for i in range(200):  # enough writes for a snapshot: the lock must be in it
        r.set(f"k{i}", "x" * 64)
    # those writes start background snapshots too (snapshot_bytes=4096): one still running
    # refuses this one ("in progress"), so it is asked again
    wait_for(lambda: r.execute_command("REPLIKV", "SNAPSHOT") is not None, 20, "a snapshot taken")
    after = lock(r, "after-snapshot", 600_000)  # in the WAL only
    assert isinstance(after, int) and after > token
    for n in list(c.config.nodes):
        c.kill(n)
    c.start()
    leader = wait_leader(c)
    r = c.client(leader)
    assert info(r, "keep")["holder"] == token
    assert info(r, "after-snapshot")["holder"] == after
    assert lock(r, "keep", 1000) is None
    assert r.execute_command("UNLOCK", "keep", token) == 1
    assert r.execute_command("UNLOCK", "after-snapshot", after) == 1


def test_other_modes_refuse_locks(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "lf", 2)
    try:
        c.start()
        r = c.client("n1")
        for cmd in (["LOCK", "l", 100], ["UNLOCK", "l", 1], ["RENEW", "l", 1, 10], ["LOCKINFO", "l"]):
            with pytest.raises(redis.ResponseError, match="offered in raft mode only"):
                r.execute_command(*cmd)
        with pytest.raises(redis.ResponseError, match="raft mode only"):
            r.execute_command("FENCED", "l", 1, "SET", "k", "v")
        assert r.get("k") is None
    finally:
        c.close()


def _names_in_two_groups(shards: int) -> tuple[str, str]:
    groups = SlotMap.even(shards).groups
    a = "lock:0"
    b = next(f"key:{i}" for i in range(1000) if groups[key_slot(f'key:{i}'.encode())]
             != groups[key_slot(a.encode())])
    return a, b


def test_sharded_locks_route_like_keys(tmp_path: Path) -> None:
    c = sharded(tmp_path / "s", shards=3)
    try:
        nodes = list(c.config.nodes)
        wait_for(lambda: settled(c, nodes, 3), 30, "every group led by its preferred leader")
        clients = [c.client(n) for n in nodes]
        tokens = {}
        for i in range(6):  # names in every group, each asked on some node (forwarded as needed)
            name = f"lock:{i}"
            tokens[name] = retrying(lambda: lock(clients[i % 3], name, 60_000))
            assert isinstance(tokens[name], int)
            assert lock(clients[(i + 1) % 3], name, 60_000) is None
        for name, token in tokens.items():
            assert retrying(lambda: info(clients[0], name))["holder"] == token
            assert retrying(lambda: clients[2].execute_command("RENEW", name, token, 30_000)) == b"OK"
            assert retrying(lambda: info(clients[1], name))["lease-ms"] == 30_000
        name, other = _names_in_two_groups(3)
        with pytest.raises(redis.ResponseError, match="hash to the same slot"):  # CROSSSLOT
            clients[0].execute_command("FENCED", name, tokens[name], "SET", other, "v")
        # a hash tag puts the lock and its key in one group
        t = retrying(lambda: lock(clients[1], "{acct}lock", 60_000))
        assert clients[2].execute_command("FENCED", "{acct}lock", t, "SET", "{acct}balance", "1") == b"OK"
        assert clients[2].execute_command("UNLOCK", "{acct}lock", t) == 1
        t2 = lock(clients[0], "{acct}lock", 60_000)
        assert isinstance(t2, int) and t2 > t
        with pytest.raises(redis.ResponseError, match="FENCED"):
            clients[1].execute_command("FENCED", "{acct}lock", t, "SET", "{acct}balance", "2")
        assert clients[0].get("{acct}balance") == b"1"
        assert sum(cl.dbsize() for cl in clients) == 1  # the locks are no keys
    finally:
        c.close()


def test_sharded_slot_move_carries_the_last_token(tmp_path: Path) -> None:
    c = sharded(tmp_path / "m", shards=2)
    try:
        nodes = list(c.config.nodes)
        wait_for(lambda: settled(c, nodes, 2), 30, "every group led by its preferred leader")
        r = c.client(nodes[0])
        name = "moving-lock"
        slot = key_slot(name.encode())
        source = SlotMap.even(2).groups[slot]
        target = 1 - source
        token = retrying(lambda: lock(r, name, 600_000))
        assert isinstance(token, int)
        assert retrying(lambda: r.execute_command("REPLIKV", "RESHARD", str(slot), str(target))) == b"OK"
        # held on the target group, with its token, and the next token is larger even if the
        # target's log is shorter
        assert retrying(lambda: info(r, name))["holder"] == token
        assert retrying(lambda: r.execute_command("UNLOCK", name, token)) == 1
        nxt = retrying(lambda: lock(r, name, 600_000))
        assert isinstance(nxt, int) and nxt > token
    finally:
        c.close()


def test_sharded_group_leader_killed_while_a_lock_is_held(tmp_path: Path) -> None:
    c = sharded(tmp_path / "k", shards=3, election_timeout_ms=500)
    try:
        nodes = list(c.config.nodes)
        wait_for(lambda: settled(c, nodes, 3), 30, "every group led by its preferred leader")
        name = "failover-lock"
        group = SlotMap.even(3).groups[key_slot(name.encode())]
        leader = nodes[group % 3]  # settled: group g is led by node g mod 3
        other = c.client(next(n for n in nodes if n != leader))
        ttl = 3000
        token = retrying(lambda: lock(c.client(leader), name, ttl))
        assert isinstance(token, int)
        wait_for(lambda: info(other, name)["holder"] == token, 10, "the grant to replicate")
        c.kill(leader)
        killed_at = time.monotonic()
        assert retrying(lambda: lock(other, name, ttl)) is None  # the group's new leader: still held
        wait_for(lambda: retrying(lambda: info(other, name))["holder"] is None, 30, "the lease to expire")
        assert time.monotonic() - killed_at >= ttl / 1000
        nxt = retrying(lambda: lock(other, name, 60_000))
        assert isinstance(nxt, int) and nxt > token
    finally:
        c.close()
