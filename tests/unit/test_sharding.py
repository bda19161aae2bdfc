"""Sharded raft (runtime/sharded_raft.py): placement, slot table, and the --shards option's rules."""

from __future__ import annotations

import pytest

from replikv.config import ClusterConfig, ConfigError, NodeAddress, NodeOptions
from replikv.core.slots import SLOTS
from replikv.runtime.sharded_raft import place_groups, slot_groups


def test_placement_spreads_preferred_leaders_and_replicas() -> None:
    p = place_groups([1, 2, 3, 4, 5], 10, 3)
    assert all(len(set(m)) == 3 for m in p.values())
    assert sorted(m[0] for m in p.values()) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert all(sum(n in m for m in p.values()) == 6 for n in range(1, 6))


@pytest.mark.parametrize("shards", [1, 3, 7, 100, SLOTS])
def test_slot_table_is_contiguous_and_balanced(shards: int) -> None:
    table = slot_groups(shards)
    assert len(table) == SLOTS and table == sorted(table)
    sizes = [table.count(g) for g in range(shards)]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def config(mode: str, **options: object) -> ClusterConfig:
    nodes = {f"n{i}": NodeAddress(id=f"n{i}", host="127.0.0.1", port=7000 + i, peer_port=17000 + i,
                                  data_dir=f"/tmp/x{i}") for i in (1, 2, 3)}
    return ClusterConfig(mode=mode, secret="s", initial_leader="n1", nodes=nodes,
                         options=NodeOptions(**options))  # type: ignore[arg-type]


def test_shards_only_in_raft_mode_and_within_the_slot_count() -> None:
    config("raft", shards=3).validate()
    with pytest.raises(ConfigError, match="shards is offered in raft mode"):
        config("leader-follower", shards=3).validate()
    for bad in (-1, SLOTS + 1):
        with pytest.raises(ConfigError, match="shards must be 0"):
            config("raft", shards=bad).validate()
