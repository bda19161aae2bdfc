"""Hash-slot sharding over many Raft groups, as pure functions and values (issue 13).

``slots``: CRC16 key slots, hash tags, slot range specs and the ``SlotMap``;
``placement``: which nodes hold and lead each group, and rebalancing;
``cluster_replies``: the Redis Cluster replies (CLUSTER SLOTS/SHARDS/NODES/INFO,
MOVED/ASK) built from them.
"""

from __future__ import annotations

from replikv.core.sharding.cluster_replies import (
    CLUSTERDOWN,
    CROSSSLOT,
    TRYAGAIN,
    ClusterView,
    ask_error,
    cluster_info,
    cluster_nodes,
    cluster_shards,
    cluster_slots,
    moved_error,
    node_id,
)
from replikv.core.sharding.placement import (
    LeaderChange,
    Move,
    Placement,
    PlacementError,
    Rebalance,
    Step,
    decode_placement,
    encode_placement,
    initial_placement,
    leader_counts,
    place_groups,
    rebalance,
    rebalance_steps,
    replica_counts,
)
from replikv.core.sharding.slots import (
    SLOT_COUNT,
    SlotMap,
    SlotSpecError,
    crc16,
    format_ranges,
    hash_tag,
    key_slot,
    normalise_ranges,
    parse_ranges,
    ranges_to_slots,
    slots_to_ranges,
)

__all__ = [
    "CLUSTERDOWN",
    "CROSSSLOT",
    "SLOT_COUNT",
    "TRYAGAIN",
    "ClusterView",
    "LeaderChange",
    "Move",
    "Placement",
    "PlacementError",
    "Rebalance",
    "SlotMap",
    "SlotSpecError",
    "Step",
    "ask_error",
    "cluster_info",
    "cluster_nodes",
    "cluster_shards",
    "cluster_slots",
    "crc16",
    "decode_placement",
    "encode_placement",
    "format_ranges",
    "hash_tag",
    "initial_placement",
    "key_slot",
    "leader_counts",
    "moved_error",
    "node_id",
    "normalise_ranges",
    "parse_ranges",
    "place_groups",
    "ranges_to_slots",
    "rebalance",
    "rebalance_steps",
    "replica_counts",
    "slots_to_ranges",
]
