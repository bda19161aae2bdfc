"""The --shards option's rules (placement and slots: tests/unit/test_placement.py, test_slots.py)."""

from __future__ import annotations

import pytest

from replikv.config import ClusterConfig, ConfigError, NodeAddress, NodeOptions
from replikv.core.sharding import SLOT_COUNT


def config(mode: str, **options: object) -> ClusterConfig:
    nodes = {f"n{i}": NodeAddress(id=f"n{i}", host="127.0.0.1", port=7000 + i, peer_port=17000 + i,
                                  data_dir=f"/tmp/x{i}") for i in (1, 2, 3)}
    return ClusterConfig(mode=mode, secret="s", initial_leader="n1", nodes=nodes,
                         options=NodeOptions(**options))  # type: ignore[arg-type]


def test_shards_only_in_raft_mode_and_within_the_slot_count() -> None:
    config("raft", shards=3).validate()
    with pytest.raises(ConfigError, match="shards is offered in raft mode"):
        config("leader-follower", shards=3).validate()
    for bad in (-1, SLOT_COUNT + 1):
        with pytest.raises(ConfigError, match="shards must be 0"):
            config("raft", shards=bad).validate()
