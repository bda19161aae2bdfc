"""Every data family on real clusters (issue 12): a mix of each family's writes,
some sent to followers (forwarded), leaves every replica with the same data
(REPLIKV DIGEST), after a follower restarts from its WAL and after a snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

WRITES: list[list[str]] = [
    # strings and bits
    ["SET", "s", "hello"], ["APPEND", "s", " world"], ["SETRANGE", "s", "0", "J"], ["INCRBYFLOAT", "f", "1.5"],
    ["INCRBYFLOAT", "f", "0.1"], ["SET", "t", "v", "EX", "1000"], ["GETEX", "t", "PX", "500000"],
    ["MSETNX", "m1", "a", "m2", "b"], ["SETBIT", "b", "7", "1"], ["BITOP", "OR", "b2", "b", "s"],
    ["GETDEL", "m2"], ["RENAME", "m1", "m3"], ["COPY", "s", "s2"],
    # lists
    ["RPUSH", "l", "a", "b", "c", "d"], ["LSET", "l", "0", "A"], ["LINSERT", "l", "BEFORE", "c", "x"],
    ["LREM", "l", "1", "b"], ["LTRIM", "l", "0", "2"], ["LMOVE", "l", "l2", "LEFT", "RIGHT"],
    ["LMPOP", "1", "l", "RIGHT"], ["BLPOP", "l2", "0"],
    # sets, with a random pop the leader must decide for every replica
    ["SADD", "set", *[f"m{i}" for i in range(20)]], ["SPOP", "set", "3"], ["SMOVE", "set", "set2", "m1"],
    ["SINTERSTORE", "set3", "set", "set2"], ["SUNIONSTORE", "set4", "set", "set2"],
    # hashes
    ["HSET", "h", "a", "1", "b", "2"], ["HSETNX", "h", "c", "3"], ["HINCRBYFLOAT", "h", "a", "2.5"],
    ["HDEL", "h", "b"],
    # sorted sets
    ["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d"], ["ZINCRBY", "z", "10", "a"], ["ZPOPMIN", "z"],
    ["ZREMRANGEBYSCORE", "z", "3", "3"], ["ZUNIONSTORE", "z2", "2", "z", "z", "WEIGHTS", "1", "2"],
    ["ZRANGESTORE", "z3", "z", "0", "-1"], ["BZPOPMAX", "z3", "0"],
    # scripts: effects (leader-follower) or the script itself (raft) must give the same data
    ["EVAL", "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])", "2", "e", "n", "x"],
    ["EVAL", "return redis.call('SPOP', KEYS[1])", "1", "set4"],
    # keys
    ["EXPIRE", "s2", "100000"], ["PERSIST", "t"], ["DEL", "b2"], ["UNLINK", "f"],
]


@pytest.fixture(params=["leader-follower", "raft"])
def cluster(request: Any, tmp_path: Path):  # type: ignore[no-untyped-def]
    c = Cluster(tmp_path / "c", 3, election_timeout_ms=300)
    c.config.mode = request.param
    c.config.save(c.path)
    c.start()
    yield c
    c.close()


def _same_everywhere(c: Cluster, leader: str) -> bytes:
    c.wait_replicated(list(c.procs), leader)
    digest = c.digest(leader)
    for node in c.procs:
        wait_for(lambda: c.digest(node) == digest, 20, f"{node} to hold what {leader} holds")
    return digest


def test_every_family_replicates_identically(cluster: Cluster) -> None:
    c = cluster
    leader = c.leader()
    followers = [n for n in c.procs if n != leader]
    clients = {n: c.client(n) for n in c.procs}
    for i, argv in enumerate(WRITES):
        node = followers[i % 2] if i % 3 == 0 else leader  # a third of them forwarded by a follower
        clients[node].execute_command(*argv)
    with clients[leader].pipeline(transaction=True) as p:  # a MULTI block: one entry
        p.rpush("tx", "1").incr("txn").zadd("tz", {"m": 1}).hset("th", "f", "v")
        p.execute()
    digest = _same_everywhere(c, leader)
    # a follower restarted from its WAL, then everyone from a snapshot
    c.stop(followers[0])
    c.start(followers[0])
    assert _same_everywhere(c, leader) == digest
    clients[leader].execute_command("SAVE")
    clients[leader].execute_command("SET", "after-snapshot", "1")
    c.stop(leader)
    c.start(leader)
    new_leader = c.leader()
    final = _same_everywhere(c, new_leader)
    assert c.client(new_leader).get("after-snapshot") == b"1"
    assert final != digest
