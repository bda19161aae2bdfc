"""How many fsyncs one loop iteration of a sharded raft node costs (issue 13: "persistence batched
across groups: one fsync per batch, not per group").

A one-node cluster with 3 groups, built in process (no sockets): one ``_drain`` that persists a
write in every group. Today each group has its own WAL, so that iteration fsyncs 3 times; the
issue's target is one node-level log and one fsync per iteration, whatever the number of groups.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from replikv.config import ClusterConfig, NodeAddress, NodeOptions
from replikv.core.raft.node import Role
from replikv.runtime.sharded_raft import ShardedRaftRunner


class _NoTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, name: str, frame: bytes) -> None:
        self.sent.append((name, frame))


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[ShardedRaftRunner]:
    node = NodeAddress(id="n1", host="127.0.0.1", port=1, peer_port=2, data_dir=str(tmp_path / "n1"))
    cfg = ClusterConfig(mode="raft", secret="s", initial_leader="n1", nodes={"n1": node},
                        options=NodeOptions(shards=3, fsync="always"))
    r = ShardedRaftRunner(cfg, "n1")
    r.transport = _NoTransport()
    for g, grp in r.groups.items():
        r.host.call(g, grp.core.campaign())
    r._drain()  # a single voter: every group elects itself at once
    assert [grp.core.role for grp in r.groups.values()] == [Role.LEADER] * 3
    yield r
    for grp in r.groups.values():
        grp.wal.close()


def _propose_everywhere(r: ShardedRaftRunner) -> None:
    entry: Any = msgpack.packb([0, False, [[b"SET", b"k", b"v"]]])
    for g in r.groups:
        r.pending.setdefault(g, []).append((entry, None, None, None))


def test_a_drain_persisting_in_three_groups_makes_every_group_durable(runner: ShardedRaftRunner) -> None:
    _propose_everywhere(runner)
    runner._drain()
    for grp in runner.groups.values():
        assert grp.wal.durable_index == grp.wal.last_index >= 2  # the election's entry, then the write


@pytest.mark.xfail(strict=True, reason="issue 13: one WAL per group, so one fsync per group; "
                                       "the node-level log shared by the groups is not built yet")
def test_a_drain_persisting_in_three_groups_fsyncs_once(runner: ShardedRaftRunner) -> None:
    before = runner.wal.fsyncs
    _propose_everywhere(runner)
    runner._drain()
    assert runner.wal.fsyncs - before == 1
