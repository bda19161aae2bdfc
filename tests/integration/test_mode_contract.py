"""The same behaviour from every registered mode (modes/), on real processes.

A mode gets these tests by registering its ModeSpec: strings, TTLs,
MULTI/EXEC, a write sent to a node that does not lead (forwarded to the
leader; in a mode where every node takes writes, applied there and
replicated), a restart with its data intact, CONSISTENCY refusing a level the
mode does not offer (naming the modes that do), and REPLIKV ROLE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from replikv import modes
from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration


def nodes_of(spec: modes.ModeSpec) -> int:
    return min(3, spec.max_nodes or 3)


@pytest.fixture(params=modes.names())
def cluster(request: Any, tmp_path: Path):  # type: ignore[no-untyped-def]
    spec = modes.get(request.param)
    c = Cluster(tmp_path / "c", nodes_of(spec), fsync="always", election_timeout_ms=300)
    c.config.mode = spec.name
    c.config.save(c.path)
    c.start()
    yield c, spec
    c.close()


def leader_of(c: Cluster) -> str:
    """The leader, or in a mode where every node takes writes, the first node."""
    return c.leader()


def test_strings_ttl_and_transactions(cluster) -> None:  # type: ignore[no-untyped-def]
    c, _ = cluster
    r = c.client(leader_of(c))
    assert r.set("s", "v") is True and r.get("s") == b"v"
    assert r.incrby("n", 5) == 5 and r.append("s", "w") == 2
    assert r.set("t", "x", px=60_000) is True
    assert 0 < r.pttl("t") <= 60_000
    assert r.set("gone", "x", px=1) is True
    wait_for(lambda: r.get("gone") is None, 10, "the 1 ms key to expire")
    pipe = r.pipeline(transaction=True)
    pipe.set("a", "1").incr("a").get("a")
    assert pipe.execute() == [True, 2, b"2"]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.lpush("s", "x")


def test_a_write_to_any_node_reaches_the_leader(cluster) -> None:  # type: ignore[no-untyped-def]
    c, _ = cluster
    leader = leader_of(c)
    for node in c.config.nodes:
        assert c.client(node).set(f"via-{node}", node) is True  # forwarded when node is not the leader
    for node in c.config.nodes:
        wait_for(lambda: c.client(leader).get(f"via-{node}") == node.encode(), 20, f"the write via {node}")


def test_restart_keeps_the_data(cluster) -> None:  # type: ignore[no-untyped-def]
    c, _ = cluster
    r = c.client(leader_of(c))
    for i in range(100):
        r.set(f"k{i}", i)
    digest = c.digest(leader_of(c))
    for node in list(c.config.nodes):
        c.kill(node)
    c.start()
    leader = leader_of(c)
    wait_for(lambda: c.client(leader).get("k99") == b"99", 20, "the data after the restart")
    wait_for(lambda: c.digest(leader) == digest, 20, "the same digest as before")


def test_levels_the_mode_does_not_offer_are_refused(cluster) -> None:  # type: ignore[no-untyped-def]
    c, spec = cluster
    r = c.client(leader_of(c), single_connection_client=True)
    for level in modes.READ_LEVELS:
        args = [level, "100"] if level == "bounded" else [level]
        if level in spec.read_levels:
            assert r.execute_command("CONSISTENCY", "READ", *args) == b"OK"
        else:
            others = [m for m in modes.offering("read", level)]
            with pytest.raises(redis.ResponseError, match=f"not offered in {spec.name} mode") as e:
                r.execute_command("CONSISTENCY", "READ", *args)
            assert all(f"--mode {m}" in str(e.value) for m in others)
    for other in modes.specs():
        for level in other.write_levels:
            if level not in spec.write_levels:
                with pytest.raises(redis.ResponseError, match="not offered"):
                    r.execute_command("CONSISTENCY", "WRITE", *(level, "1") if level == "semi-sync" else (level,))
    assert r.execute_command("CONSISTENCY", "WRITE", spec.write_levels[0],
                             *(["1"] if spec.write_levels[0] == "semi-sync" else [])) == b"OK"
    with pytest.raises(redis.ResponseError, match="unknown read level"):
        r.execute_command("CONSISTENCY", "READ", "psychic")


def test_role_and_info_name_the_mode(cluster) -> None:  # type: ignore[no-untyped-def]
    c, spec = cluster
    leader = leader_of(c)
    role = c.client(leader).execute_command("REPLIKV", "ROLE")
    assert role[0] in (b"leader", b"master")
    assert c.client(leader).info("server")["replikv_mode"] == spec.name
    if not spec.single_writer:  # every node takes writes: each is a master, none a replica
        assert all(c.client(n).execute_command("ROLE")[0] == b"master" for n in c.procs)
        return
    # Redis's ROLE: the leader lists its replicas, a follower names its leader
    def redis_role_settled() -> bool:
        master = c.client(leader).execute_command("ROLE")
        followers = [c.client(n).execute_command("ROLE") for n in c.procs if n != leader]
        return (master[0] == b"master" and len(master[2]) == len(followers)
                and all(f[0] == b"slave" and f[2] == c.port(leader) and f[3] == b"connected"
                        for f in followers))
    wait_for(redis_role_settled, 20, "ROLE to show the leader and its replicas")


def test_save_bgsave_lastsave(cluster) -> None:  # type: ignore[no-untyped-def]
    c, _ = cluster
    leader = leader_of(c)
    r = c.client(leader)
    started = r.lastsave()
    r.set("k", "v")
    assert r.execute_command("SAVE") in (True, b"OK")
    saved = r.lastsave()
    assert saved >= started
    assert int(r.info("persistence")["replikv_snapshot_index"]) >= 1
    r.set("k2", "v2")
    assert r.execute_command("BGSAVE") is True  # redis-py: "Background saving started"
    wait_for(lambda: int(r.info("persistence")["rdb_bgsave_in_progress"]) == 0, 20, "the child to finish")
    assert r.info("persistence")["rdb_last_bgsave_status"] == "ok"
    assert r.lastsave() >= saved
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("BGSAVE", "NOW")
