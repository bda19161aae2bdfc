"""replikv cluster add + replikv rebalance on a sharded raft cluster (issue 13), on real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis

from replikv.config import ClusterConfig
from tests.integration.cluster import Cluster, free_port_with_peer_port, wait_for
from tests.integration.test_sharded_raft import all_led, groups_led, keys_per_group, retrying, settled, sharded


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replikv", *args], capture_output=True, text=True,
                          timeout=timeout)


def placement(c: Cluster, node: str) -> dict[int, tuple[str, ...]]:
    """Each group's members as ``node`` sees them (the leader's view when it leads the group)."""
    rows = c.client(node).execute_command("REPLIKV", "PLACEMENT")
    return {int(g): tuple(sorted(m.decode() for m in members)) for g, members, *_ in rows}


def hosted(c: Cluster, node: str) -> int:
    return int(c.replication(node)["replikv_groups_hosted"])


def test_cluster_add_then_rebalance_moves_groups_and_leaders_to_the_new_node(tmp_path: Path) -> None:
    shards = 4  # 4 groups over 3 nodes: after n4 joins, it is the preferred leader of one
    c = sharded(tmp_path / "c", shards=shards)
    try:
        old = ["n1", "n2", "n3"]
        wait_for(lambda: all_led(c, old, shards), 20, "every group to have a leader")
        r = c.client("n1")
        keys = keys_per_group(shards, 20)
        for ks in keys.values():
            for k in ks:
                assert retrying(lambda: r.set(k, k + "!")) is True

        port = free_port_with_peer_port()
        out = cli("cluster", "add", "--config", str(c.path), "--id", "n4", "--addr", f"127.0.0.1:{port}")
        assert out.returncode == 0, out.stdout + out.stderr
        c.config = ClusterConfig.load(c.path)
        c.start("n4")
        assert hosted(c, "n4") == 0  # joins hosting no group; serves clients by forwarding at once
        four = c.client("n4")
        for ks in keys.values():
            assert retrying(lambda: four.get(ks[0])) == (ks[0] + "!").encode()
        before = {n: placement(c, n) for n in old}
        assert all(len(set(v[g])) == 3 and "n4" not in v[g] for v in before.values() for g in v)

        acked: dict[str, str] = {}
        stop = threading.Event()

        def writer() -> None:  # writes go on during the rebalance; every acknowledged one must stay
            w = c.client("n1", timeout=5)
            i = 0
            while not stop.is_set():
                k, v = f"bg:{i}", f"v{i}"
                try:
                    if w.set(k, v) is True:
                        acked[k] = v
                except redis.RedisError:
                    pass  # not acknowledged: may or may not be applied, never checked
                i += 1

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        try:
            wait_for(lambda: len(acked) > 5, 20, "the background writer to make progress")
            started = len(acked)
            out = cli("rebalance", "--config", str(c.path), "--timeout", "240")
            assert out.returncode == 0, out.stdout + out.stderr
            assert "add learner n4" in out.stdout and "remove" in out.stdout, out.stdout
            assert len(acked) > started  # writes were acknowledged while the groups moved
        finally:
            stop.set()
            t.join(20)

        wait_for(lambda: hosted(c, "n4") >= 2, 30, "n4 to host groups")
        wait_for(lambda: groups_led(c, "n4") >= 1, 30, "n4 to lead a group")
        assert sum(hosted(c, n) for n in ["n1", "n2", "n3", "n4"]) == 3 * shards  # moved, not copied
        after = placement(c, "n4")
        assert sum("n4" in m for m in after.values()) == hosted(c, "n4")
        out = cli("status", "--config", str(c.path), "--json", timeout=60)
        statuses = {s["id"]: s for s in json.loads(out.stdout)}
        four_groups = statuses["n4"]["groups"]  # replikv status shows the new members and leaders
        assert len(four_groups) == hosted(c, "n4")
        assert all("n4" in row["members"].split("/") for row in four_groups.values())
        assert any(row["leader"] == "n4" for row in four_groups.values())
        for n in ["n1", "n4"]:
            cl = c.client(n)
            for ks in keys.values():
                for k in ks:
                    assert retrying(lambda: cl.get(k)) == (k + "!").encode()
            for k, v in acked.items():
                assert retrying(lambda: cl.get(k)) == v.encode(), k

        # every node restarted: the new placement stays (it is not recomputed from cluster.toml)
        c.close()
        c.start()
        nodes = ["n1", "n2", "n3", "n4"]
        wait_for(lambda: all_led(c, nodes, shards), 30, "every group to have a leader after the restart")
        assert hosted(c, "n4") == sum("n4" in m for m in after.values())
        wait_for(lambda: groups_led(c, "n4") >= 1, 30, "n4 to lead its group again")
        cl = c.client("n2")
        for k, v in list(acked.items())[:50]:
            assert retrying(lambda: cl.get(k)) == v.encode(), k
        for ks in keys.values():
            assert retrying(lambda: cl.get(ks[-1])) == (ks[-1] + "!").encode()
    finally:
        c.close()


def test_cluster_remove_moves_the_nodes_replicas_away_first(tmp_path: Path) -> None:
    shards = 4
    c = sharded(tmp_path / "c", n=4, shards=shards)
    try:
        nodes = ["n1", "n2", "n3", "n4"]
        wait_for(lambda: all_led(c, nodes, shards), 20, "every group to have a leader")
        assert hosted(c, "n4") == 3
        r = c.client("n1")
        keys = keys_per_group(shards, 10)
        for ks in keys.values():
            for k in ks:
                assert retrying(lambda: r.set(k, k + "!")) is True
        out = cli("cluster", "remove", "--config", str(c.path), "--id", "n4")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "n4" not in ClusterConfig.load(c.path).nodes
        wait_for(lambda: hosted(c, "n4") == 0, 20, "n4 to drop its replicas")
        assert not any((tmp_path / "c" / "n4" / "groups" / f"g{g}").exists() for g in range(shards))
        assert sum(hosted(c, n) for n in nodes[:3]) == 3 * shards
        c.stop("n4")
        wait_for(lambda: all_led(c, nodes[:3], shards), 20, "every group led by n1-n3")
        for n in nodes[:3]:
            cl = c.client(n)
            for ks in keys.values():
                for k in ks:
                    assert retrying(lambda: cl.get(k)) == (k + "!").encode()
    finally:
        c.close()


def test_a_node_removed_from_a_group_while_it_was_down_drops_its_stale_replica(tmp_path: Path) -> None:
    """n3 is removed from group 0 while stopped, so it never applies its removal: once back, it
    asks the other members (MEMBER_CHECK) and drops the stale replica; its replica of group 1,
    still a member, stays."""
    c = sharded(tmp_path / "c", shards=2)
    try:
        nodes = ["n1", "n2", "n3"]
        wait_for(lambda: all_led(c, nodes, 2), 20, "every group to have a leader")
        assert hosted(c, "n3") == 2
        r = c.client("n1")
        keys = keys_per_group(2, 5)
        for ks in keys.values():
            for k in ks:
                assert retrying(lambda: r.set(k, k)) is True
        c.stop("n3")
        wait_for(lambda: all_led(c, nodes[:2], 2), 20, "n1 and n2 to lead both groups")
        index = retrying(lambda: r.execute_command("REPLIKV", "GROUP", "0", "REMOVE", "n3"))
        assert int(index) > 0
        # committed by group 0's leader, which may be n2: n1 applies it once it hears the commit
        wait_for(lambda: placement(c, "n1")[0] == ("n1", "n2"), 20, "n1 to apply n3's removal from group 0")
        c.start("n3")
        wait_for(lambda: hosted(c, "n3") == 1, 40, "n3 to drop its stale replica of group 0")
        assert not (tmp_path / "c" / "n3" / "groups" / "g0").exists()
        assert (tmp_path / "c" / "n3" / "groups" / "g1").exists()
        assert "missed its removal" in c.log_text("n3")
        three = c.client("n3")  # still serves every key: group 0 by forwarding
        for ks in keys.values():
            for k in ks:
                assert retrying(lambda: three.get(k)) == k.encode()
        c.stop("n3")  # the drop is durable: a restart does not bring the replica back
        c.start("n3")
        wait_for(lambda: all_led(c, nodes, 2), 20, "every group to have a leader")
        assert hosted(c, "n3") == 1
    finally:
        c.close()


def test_a_second_rebalance_is_refused_while_one_holds_the_cluster_lock(tmp_path: Path) -> None:
    c = sharded(tmp_path / "c", shards=2)
    try:
        # every group led by its preferred node: no hand-back election left to come (one
        # answered the UNLOCK below with TRYAGAIN, no leader to forward to, on a loaded machine)
        wait_for(lambda: settled(c, ["n1", "n2", "n3"], 2), 30, "every group led by its preferred node")
        r = c.client("n1")
        token = retrying(lambda: r.execute_command("LOCK", "replikv:rebalance", "60000"))  # "a rebalance"
        out = cli("rebalance", "--config", str(c.path), "--timeout", "30")
        assert out.returncode != 0 and "another rebalance is running" in out.stderr, out.stdout + out.stderr
        # TRYAGAIN (an election meanwhile) means not forwarded, not applied: asking again is safe
        assert retrying(lambda: r.execute_command("UNLOCK", "replikv:rebalance", token)) == 1
        out = cli("rebalance", "--config", str(c.path), "--timeout", "30")
        assert out.returncode == 0 and "balanced already" in out.stdout, out.stdout + out.stderr
        info = retrying(lambda: r.execute_command("LOCKINFO", "replikv:rebalance"))
        assert info[1] is None and int(info[7]) > int(token)  # it took the lock, then released it
    finally:
        c.close()


def test_a_preferred_leader_is_in_the_groups_log_so_a_node_that_was_down_learns_it(tmp_path: Path) -> None:
    """REPLIKV GROUP g PREFER is replicated through g's log: with n3 down, group 0's preference
    moves to n2, its leader hands the group to n2, and n3, back, learns the preference from the log
    (it would otherwise hand the group back to its old preferred leader whenever it led it)."""
    c = sharded(tmp_path / "c", shards=2)
    try:
        nodes = ["n1", "n2", "n3"]
        wait_for(lambda: all_led(c, nodes, 2), 20, "every group to have a leader")
        first = c.client("n1").execute_command("REPLIKV", "PLACEMENT")
        preferred = {int(g): members[0].decode() for g, members, *_ in first}
        new = next(n for n in nodes if n not in (preferred[0], "n3"))
        c.stop("n3")
        r = c.client(new)
        assert retrying(lambda: r.execute_command("REPLIKV", "GROUP", "0", "PREFER", new)) == b"OK"
        wait_for(lambda: c.replication(new)["group0"]["role"] == "leader", 30, f"{new} to lead group 0")
        with pytest.raises(redis.ResponseError, match="not a member|unknown node"):
            r.execute_command("REPLIKV", "GROUP", "0", "PREFER", "n9")
        c.start("n3")

        def n3_prefers_new() -> bool:
            rows = c.client("n3").execute_command("REPLIKV", "PLACEMENT")
            return any(int(g) == 0 and members[0].decode() == new for g, members, *_ in rows)

        wait_for(n3_prefers_new, 30, "n3 to learn group 0's preferred leader from the log")
        c.close()  # every node restarted: the preference is in the groups' logs and snapshots
        c.start()
        wait_for(lambda: c.replication(new)["group0"]["role"] == "leader", 30, f"{new} to lead group 0 again")
    finally:
        c.close()
