"""Leaderless membership changes on real processes: `replikv cluster add` and `replikv cluster remove`
while a client keeps writing and reading at QUORUM (core/dynamo/membership.py, docs/leaderless.md)."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis

from replikv.config import ClusterConfig
from replikv.core.dynamo.ring import Ring
from tests.integration.cluster import Cluster, free_port_with_peer_port, wait_for
from tests.integration.test_leaderless import level, ll_cluster

pytestmark = pytest.mark.integration
KEYS = 2000


def replikv(*args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replikv", *args], capture_output=True, text=True,
                          timeout=timeout_s)


class Load:
    """A client that writes new keys at QUORUM and reads back ones it wrote, on the given nodes, until stopped."""

    def __init__(self, c: Cluster, nodes: list[str], prefix: str) -> None:
        self.clients = [level(c.client(n), read="quorum", write="quorum") for n in nodes]
        self.prefix = prefix
        self.acked: dict[str, str] = {}
        self.errors: list[str] = []
        self.reads = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        rng = random.Random(7)
        i = 0
        while not self.stop.is_set():
            r = rng.choice(self.clients)
            key, value = f"{self.prefix}:{i}", f"v{i}"
            i += 1
            try:
                if r.set(key, value):
                    self.acked[key] = value
                if self.acked:
                    k = rng.choice(list(self.acked))
                    got = rng.choice(self.clients).get(k)
                    self.reads += 1
                    if got != self.acked[k].encode():
                        self.errors.append(f"read {k}: {got!r}, acknowledged {self.acked[k]!r}")
            except redis.RedisError as e:
                self.errors.append(f"{type(e).__name__}: {e}")

    def finish(self) -> dict[str, str]:
        self.stop.set()
        self.thread.join(30)
        for r in self.clients:
            r.close()
        return dict(self.acked)


def check_everywhere(c: Cluster, nodes: list[str], acked: dict[str, str]) -> None:
    """Every acknowledged key reads back at QUORUM from every node."""
    keys = list(acked)
    for n in nodes:
        r = level(c.client(n), read="quorum")
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            pipe = r.pipeline(transaction=False)
            for k in chunk:
                pipe.get(k)
            got = pipe.execute()
            bad = [(k, g) for k, g in zip(chunk, got) if g != acked[k].encode()]
            assert not bad, f"{n}: {len(bad)} acknowledged keys read wrong at QUORUM, e.g. {bad[:3]}"
        r.close()


def check_owner_holds(c: Cluster, node: str, ring: Ring, acked: dict[str, str]) -> int:
    """Reads at ONE from ``node`` of the keys it replicates: its own replica answers them."""
    mine = [k for k in acked if node in ring.preference_list(k.encode())]
    r = level(c.client(node), read="one")
    pipe = r.pipeline(transaction=False)
    for k in mine:
        pipe.get(k)
    got = pipe.execute()
    missing = [k for k, g in zip(mine, got) if g != acked[k].encode()]
    assert not missing, f"{node} lacks {len(missing)} of its {len(mine)} keys, e.g. {missing[:3]}"
    r.close()
    return len(mine)


def members(c: Cluster, node: str) -> list[object]:
    reply: list[object] = c.client(node).execute_command("REPLIKV", "CLUSTER", "MEMBERS")
    return reply


def test_cluster_add_then_remove_streams_ranges_and_loses_no_acknowledged_write(tmp_path: Path) -> None:
    c = ll_cluster(tmp_path / "c", requirepass="pw-members")
    try:
        base = level(c.client("n1"), write="quorum")
        acked: dict[str, str] = {}
        pipe = base.pipeline(transaction=False)
        for i in range(KEYS):
            pipe.set(f"key:{i}", f"value:{i}")
            acked[f"key:{i}"] = f"value:{i}"
        assert all(pipe.execute())
        base.close()

        # -- add n4 while a client writes and reads -------------------------------------------------
        load = Load(c, ["n1", "n2", "n3"], "during-add")
        wait_for(lambda: load.reads > 50, 30, "the client to get going")
        port = free_port_with_peer_port()
        add = subprocess.Popen([sys.executable, "-m", "replikv", "cluster", "add", "--config", str(c.path),
                                "--id", "n4", "--port", str(port), "--timeout", "120"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: "n4" in ClusterConfig.load(c.path).nodes, 30, "cluster add to write n4 into cluster.toml")
        c.config = ClusterConfig.load(c.path)
        c.start("n4")
        out, _ = add.communicate(timeout=180)
        assert add.returncode == 0, out
        assert "n4 is a full member" in out
        assert members(c, "n1")[:3] == [3, [b"n1", b"n2", b"n3", b"n4"], b""]  # the CLI waited for the switch
        ring4 = Ring(["n1", "n2", "n3", "n4"], c.config.options.replicas, c.config.options.vnodes)
        for n in ("n1", "n2", "n3", "n4"):
            wait_for(lambda n=n: members(c, n)[0] == 3 and members(c, n)[2] == b"", 30, f"{n} to switch")
            assert members(c, n)[1] == [b"n1", b"n2", b"n3", b"n4"]
        during = load.finish()
        assert not load.errors, load.errors[:5]
        assert len(during) > 50 and load.reads > 50
        acked.update(during)
        check_everywhere(c, ["n1", "n2", "n3", "n4"], acked)
        assert check_owner_holds(c, "n4", ring4, acked) > len(acked) // 4
        info = c.client("n4").info("replication")
        assert info["replikv_ring_epoch"] == 3  # announce, reads from the new owners, switch

        # -- refusals --------------------------------------------------------------------------------
        unknown = replikv("cluster", "remove", "--config", str(c.path), "--id", "n9")
        assert unknown.returncode != 0 and "no node 'n9'" in unknown.stdout + unknown.stderr

        # -- remove n3 while the client goes on ----------------------------------------------------
        load = Load(c, ["n1", "n2", "n4"], "during-remove")
        wait_for(lambda: load.reads > 50, 30, "the client to get going")
        done = replikv("cluster", "remove", "--config", str(c.path), "--id", "n3")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "n3" not in ClusterConfig.load(c.path).nodes
        assert members(c, "n1")[:3] == [6, [b"n1", b"n2", b"n4"], b""]  # the CLI waited for the switch
        ring3 = Ring(["n1", "n2", "n4"], c.config.options.replicas, c.config.options.vnodes)
        for n in ("n1", "n2", "n4"):
            wait_for(lambda n=n: members(c, n)[0] == 6 and members(c, n)[2] == b"", 30, f"{n} to switch")
            assert members(c, n)[1] == [b"n1", b"n2", b"n4"]
        during = load.finish()
        assert not load.errors, load.errors[:5]
        acked.update(during)
        c.kill("n3")  # what n3 held must be elsewhere now
        check_everywhere(c, ["n1", "n2", "n4"], acked)
        for n in ("n1", "n2", "n4"):
            check_owner_holds(c, n, ring3, acked)

        # below --replicas nodes: refused, and the ring stays as it is
        low = replikv("cluster", "remove", "--config", str(c.path), "--id", "n2")
        assert low.returncode != 0 and "fewer than --replicas 3" in low.stdout + low.stderr
        assert members(c, "n1")[0] == 6
    finally:
        c.close()


def test_a_change_survives_a_restart_and_a_second_change_is_refused(tmp_path: Path) -> None:
    c = ll_cluster(tmp_path / "c")
    try:
        r = c.client("n1")
        port = free_port_with_peer_port()
        # n4 is not started: the change stays pending (it waits for n4 to acknowledge the epoch)
        assert r.execute_command("REPLIKV", "CLUSTER", "ADD", "n4", "127.0.0.1", str(port)).startswith(b"add n4")
        with pytest.raises(redis.ResponseError, match="already running: add n4"):
            r.execute_command("REPLIKV", "CLUSTER", "ADD", "n5", "127.0.0.1", str(port + 1))
        wait_for(lambda: members(c, "n2")[0] == 1, 20, "n2 to learn the pending epoch")
        with pytest.raises(redis.ResponseError, match="already running: add n4"):
            c.client("n2").execute_command("REPLIKV", "CLUSTER", "REMOVE", "n3")
        with pytest.raises(redis.exceptions.TryAgainError, match="add n4 in flight"):
            r.execute_command("REPLIKV", "CLUSTER", "PROMOTE", "n4")
        wait_for(lambda: members(c, "n3")[0] == 1, 20, "n3 to learn the pending epoch")
        level(r, write="quorum").set("during", "pending")  # 3 of the 4 replicas (n4 down) acknowledge it
        c.stop("n2")
        c.start("n2")
        assert members(c, "n2")[:4] == [1, [b"n1", b"n2", b"n3"], b"add", b"n4"]  # kept across the restart
    finally:
        c.close()
