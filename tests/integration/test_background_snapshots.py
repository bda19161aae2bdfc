"""Automatic snapshots run in a forked child (Redis's BGSAVE): the node keeps
serving while the child writes, compacts when it is durable, and a restart
from that snapshot (plus the WAL after it) restores the data exactly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from replikv import modes
from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", modes.names())
def test_snapshots_in_a_child_then_restart_from_them(tmp_path: Path, mode: str) -> None:
    spec = modes.get(mode)
    n = min(3, spec.max_nodes or 3)
    c = Cluster(tmp_path / "c", n, fsync="always", snapshot_bytes=64 * 1024, segment_bytes=16 * 1024,
                election_timeout_ms=500)
    c.config.mode = mode
    c.config.save(c.path)
    c.start()
    try:
        def leader() -> str | None:
            if not spec.single_writer:
                return "n1"  # every node takes writes
            found = [x for x in c.procs if c.replication(x)["role"] == "master"]
            return found[0] if len(found) == 1 else None
        lead = wait_for(leader, 20, "a leader")
        r = c.client(lead)
        info0 = c.client(lead).info("replication")
        pipe = r.pipeline(transaction=False)
        for i in range(3000):
            pipe.set(f"k{i}", b"x" * 100)
            if i % 200 == 199:
                pipe.execute()
        pipe.execute()

        def background_snapshots(node: str) -> int:
            return int(c.client(node).info("persistence")["replikv_snapshots_in_background"])
        wait_for(lambda: background_snapshots(lead) >= 2, 30, "two background snapshots on the leader")
        persistence: dict[str, Any] = c.client(lead).info("persistence")
        assert persistence["rdb_last_bgsave_status"] == "ok"
        assert int(persistence["replikv_snapshot_index"]) > 0  # the WAL was compacted
        pid = c.procs[lead].pid
        children = {int(p) for p in re.findall(r"written by child (\d+)", c.log_text(lead))}
        assert children and pid not in children  # written by other processes than the node
        if mode == "raft":  # the leader's own work never cost it its leadership
            assert leader() == lead
            assert c.client(lead).info("replication")["replikv_epoch"] == info0["replikv_epoch"]  # the term
        digest = c.digest(lead)
        for node in list(c.procs):
            c.kill(node)
        c.start()
        lead = wait_for(leader, 20, "a leader after the restart")
        wait_for(lambda: c.digest(lead) == digest, 20, "the same data after the restart")
        assert c.client(lead).get("k2999") == b"x" * 100
    finally:
        c.close()
