"""maxmemory on real processes in every mode (runtime/memory.py): the leader
evicts by its policy and logs the DELs, so every replica holds the same keys;
noeviction refuses writes with OOM and serves reads and deletes."""

from __future__ import annotations


import pytest
import redis

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(mode_cluster: Cluster) -> Cluster:
    return mode_cluster



def _limit(r: redis.Redis, extra: int, policy: str) -> int:
    startup = int(r.info("memory")["used_memory_startup"])
    r.config_set("maxmemory", startup + extra)
    r.config_set("maxmemory-policy", policy)
    r.config_set("maxmemory-samples", 10)
    return startup + extra


def test_allkeys_lru_keeps_the_data_set_under_the_limit_and_the_hot_keys(cluster: Cluster) -> None:
    c = cluster
    leader = c.leader()
    r = c.client(leader)
    limit = _limit(r, 400_000, "allkeys-lru")
    hot = [f"hot:{i}" for i in range(5)]
    for key in hot:
        r.set(key, "h" * 100)
    value = "v" * 1000
    for i in range(2000):  # ~2.3 MB of keys into a 400 kB budget
        r.set(f"cold:{i}", value)
        if i % 20 == 0:
            for key in hot:
                assert r.get(key) is not None, key  # read often: the most recently used
    info = r.info()
    assert int(info["evicted_keys"]) > 1000
    # the data set itself, key by key (MEMORY USAGE is exact for strings; INFO's used_memory is a
    # sampled estimate whose error on a few hundred keys can exceed the slack on its own)
    exact = sum(r.memory_usage(k) or 0 for k in r.scan_iter(count=1000))
    assert int(info["used_memory_startup"]) + exact <= limit + 20_000
    assert r.dbsize() < 2000
    assert all(r.exists(k) for k in hot)
    assert r.get("cold:1999") == value.encode()  # the newest write survives
    # every replica holds exactly what the leader holds: evictions are logged DELs
    others = [n for n in c.procs if n != leader]
    if others:
        digest = c.digest(leader)
        for node in others:
            wait_for(lambda: c.digest(node) == digest, 20, f"{node} to match the leader")
            assert int(c.client(node).info()["evicted_keys"]) == 0  # followers never evict


def test_noeviction_refuses_writes_but_serves_reads_and_deletes(cluster: Cluster) -> None:
    c = cluster
    r = c.client(c.leader())
    r.set("kept", "x")
    _limit(r, 100_000, "noeviction")
    with pytest.raises(redis.exceptions.OutOfMemoryError, match="command not allowed when used memory"):
        for i in range(1000):
            r.set(f"k:{i}", "v" * 1000)
    assert r.get("kept") == b"x"
    assert r.delete("kept") == 1  # DEL is no denyoom command
    assert int(r.info()["evicted_keys"]) == 0
    r.config_set("maxmemory", 0)  # no limit: writes again
    assert r.set("after", "x") is True


def test_volatile_ttl_evicts_only_keys_with_a_ttl(cluster: Cluster) -> None:
    c = cluster
    r = c.client(c.leader())
    _limit(r, 300_000, "volatile-ttl")
    for i in range(100):
        r.set(f"perm:{i}", "p" * 1000)
    r.config_set("maxmemory", 0)
    for i in range(400):
        r.set(f"temp:{i}", "t" * 1000, ex=1000 + i)
    _limit(r, 300_000, "volatile-ttl")
    for i in range(200):
        r.set(f"temp:new:{i}", "n" * 1000, ex=5000)
    assert all(r.exists(f"perm:{i}") for i in range(100))
    assert not r.exists("temp:0")  # the soonest to expire went first
    # with no key left that has a TTL, nothing can be evicted: OOM
    r.config_set("maxmemory-policy", "volatile-lru")
    for key in r.scan_iter("temp:*"):
        r.persist(key)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for i in range(1000):
            r.set(f"more:{i}", "m" * 1000)
