"""Redis Cluster's topology replies and redirects, built from replikv's groups.

Rules implemented (Redis Cluster specification, "Redirection and resharding"
(MOVED, ASK); the command docs for CLUSTER SLOTS, CLUSTER SHARDS, CLUSTER NODES
and CLUSTER INFO on redis.io; Redis 7.0 ``cluster.c`` reply shapes):

* ``CLUSTER SLOTS``: one entry per run of slots, ``[start, end, master,
  replica, ...]``, each node ``[ip, port, id, {}]`` (the fourth element is
  Redis 7's map of extra endpoint metadata, empty here). Replicas whose node
  is failed are left out, as Redis leaves them out.
* ``CLUSTER SHARDS``: one shard per group, ``{slots: [s1, e1, s2, e2, ...],
  nodes: [{id, port, ip, endpoint, role, replication-offset, health}, ...]}``,
  the master first.
* ``CLUSTER NODES``: one line per node, every line ended by ``\\n``:
  ``<id> <ip:port@cport> <flags> <master-id|-> <ping-sent> <pong-recv>
  <config-epoch> <link-state> <slot> <slot> ...``.
* ``CLUSTER INFO``: ``field:value`` lines ended by ``\\r\\n``.
* A slot being moved shows as ``[slot->-<id>]`` on its source's line and
  ``[slot-<-<id>]`` on its destination's (CLUSTER NODES).
* ``-MOVED <slot> <ip>:<port>`` sends the client to the slot's master for good;
  ``-ASK <slot> <ip>:<port>`` for the next command only (after ``ASKING``).

How a replikv cluster is shown to clients built for Redis Cluster
-----------------------------------------------------------------
Redis Cluster assumes a node is either a master (of some slot ranges) or a
replica of one master. A replikv node hosts many Raft groups and is the leader
of some and a follower of others, which no single role expresses. We show:

* CLUSTER SLOTS: each group's slot runs with the group's *current leader*
  first and its other members after it. Clients (redis-py ``RedisCluster``,
  Jedis, go-redis) only need "slot range -> address of the node that takes
  writes", which this gives exactly; ``READONLY`` clients may also read from
  the followers listed. Caveat, measured in the tests: redis-py gives each
  node one role, the role of its *first* appearance in the reply, so a node
  first listed as a follower is typed "replica" and left out of
  ``get_primaries()`` (KEYS, SCAN, DBSIZE, FLUSHALL fan-out). Routing of keyed
  commands is unaffected (it uses the slot's node list, not the role), and
  ``followers=False`` lists leaders only, which makes every leader a primary
  in redis-py at the price of no replica reads.
* CLUSTER SHARDS: one shard per group, which is exact: a node may appear in
  several shards, as master in the ones it leads and replica in the others.
* CLUSTER NODES (used by ``redis-benchmark --cluster`` and ``redis-cli
  --cluster``): one line per node, listed as ``master`` of the slot runs of
  every group it currently leads. A node that leads no group is shown as a
  ``slave`` of the leader of the first group it belongs to (one that is shown
  as a master): redis-benchmark skips replica lines, and would warn about a
  master without slots. With no such leader it is a ``master`` without slots.
  The config epoch of every line is the slot map's epoch. Caveat:
  redis-benchmark learns the masters from CLUSTER NODES once; when a MOVED
  later sends it to a node that was not a master then, it gives up ("could
  not find node with ID"), so benchmark runs should start with every node
  leading some group.

A group whose leader is unknown (an election in progress) is shown with a
stand-in: its preferred leader (first member of the placement), or its first
member that is not failed. Clients need every slot covered (redis-py refuses a
partial map by default), and the stand-in answers with a MOVED or forwards once
a leader exists, as a Redis master that just lost its slots answers MOVED.
Its slots count as failed in CLUSTER INFO (``cluster_state:fail``), as a
Redis cluster is down while a failover is in progress.

Node ids are stable 40-hex strings: ``node_id(cluster, node)`` is the SHA-1 of
the cluster name and the node name, so every node computes the same ids
without exchanging them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from replikv.core.invariant import invariant, violated
from replikv.core.replies import RespError
from replikv.core.sharding.slots import (
    SLOT_COUNT,
    SlotMap,
    SlotRange,
    format_ranges,
    normalise_ranges,
)

__all__ = [
    "CLUSTERDOWN",
    "CROSSSLOT",
    "TRYAGAIN",
    "ClusterView",
    "ask_error",
    "cluster_info",
    "cluster_nodes",
    "cluster_shards",
    "cluster_slots",
    "moved_error",
    "node_id",
]

CROSSSLOT: Final = RespError("CROSSSLOT Keys in request don't hash to the same slot")
TRYAGAIN: Final = RespError("TRYAGAIN Multiple keys request during rehashing of slot")
CLUSTERDOWN: Final = RespError("CLUSTERDOWN The cluster is down")


def node_id(cluster: str, node: str) -> str:
    """A stable 40-hex node id: SHA-1 of ``cluster`` NUL ``node``."""
    return hashlib.sha1(f"{cluster}\0{node}".encode()).hexdigest()


def moved_error(slot: int, host: str, port: int) -> RespError:
    """``MOVED 3999 127.0.0.1:6381``: the slot lives there from now on."""
    return RespError(f"MOVED {slot} {host}:{port}")


def ask_error(slot: int, host: str, port: int) -> RespError:
    """``ASK 3999 127.0.0.1:6381``: ask there for this command only (after ASKING)."""
    return RespError(f"ASK {slot} {host}:{port}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterView:
    """What one node knows of the cluster, as the replies need it.

    ``leaders`` maps a group to its current leader (None or absent: unknown);
    ``addresses`` a node to its client (host, port); ``node_ids`` a node to its
    40-hex id (see ``node_id``); ``bus_ports`` a node to its peer port (shown
    after ``@`` in CLUSTER NODES, 0 if absent); ``failed`` the nodes this node
    believes are down; ``offsets`` a (group, node) pair to its replication
    offset (the applied index; 0 if absent); ``migrating`` a slot being moved
    to the group it is moving to (the slot map still gives its source group).
    """

    slot_map: SlotMap
    placement: Mapping[int, Sequence[str]]
    leaders: Mapping[int, str | None]
    addresses: Mapping[str, tuple[str, int]]
    node_ids: Mapping[str, str]
    myself: str
    bus_ports: Mapping[str, int] = field(default_factory=dict)
    failed: frozenset[str] = frozenset()
    offsets: Mapping[tuple[int, str], int] = field(default_factory=dict)
    migrating: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for g in self.slot_map.group_ids():
            if not self.placement.get(g):
                violated(f"group {g} owns slots but has no members")
        for members in self.placement.values():
            for m in members:
                if m not in self.addresses or m not in self.node_ids:
                    violated(f"member {m} has no address or node id")
        for g, leader in self.leaders.items():
            if leader is not None and (leader not in self.addresses or leader not in self.node_ids):
                violated(f"leader {leader} of group {g} has no address or node id")
        invariant(self.myself in self.addresses, lambda: f"myself ({self.myself}) has no address")

    def serving_node(self, group: int) -> str:
        """The node shown as the group's master: its leader, else a stand-in."""
        leader = self.leaders.get(group)
        if leader is not None:
            return leader
        members = self.placement[group]
        if members[0] not in self.failed:
            return members[0]
        return next((m for m in members if m not in self.failed), members[0])

    def slot_address(self, slot: int) -> tuple[str, int]:
        """Where a client should send a command on ``slot`` (for MOVED)."""
        return self.addresses[self.serving_node(self.slot_map.group_of(slot))]

    def moved(self, slot: int) -> RespError:
        """The MOVED redirect for ``slot`` to its group's serving node."""
        host, port = self.slot_address(slot)
        return moved_error(slot, host, port)

    def ask(self, slot: int) -> RespError:
        """The ASK redirect for a migrating ``slot``, to its destination group."""
        host, port = self.addresses[self.serving_node(self.migrating[slot])]
        return ask_error(slot, host, port)

    def followers(self, group: int) -> list[str]:
        serving = self.serving_node(group)
        return [m for m in self.placement[group] if m != serving]


def _node_entry(view: ClusterView, node: str) -> list[object]:
    host, port = view.addresses[node]
    return [host.encode(), port, view.node_ids[node].encode(), {}]


def cluster_slots(view: ClusterView, *, followers: bool = True) -> list[list[object]]:
    """The CLUSTER SLOTS reply (see the module docstring for ``followers``)."""
    out: list[list[object]] = []
    for start, end, group in view.slot_map.ranges():
        entry: list[object] = [start, end, _node_entry(view, view.serving_node(group))]
        if followers:
            entry.extend(
                _node_entry(view, m) for m in view.followers(group) if m not in view.failed
            )
        out.append(entry)
    return out


def cluster_shards(view: ClusterView) -> list[dict[bytes, object]]:
    """The CLUSTER SHARDS reply: one shard per group, in group id order."""
    by_group = view.slot_map.ranges_by_group()
    out: list[dict[bytes, object]] = []
    for group in sorted(view.placement):
        slots: list[object] = []
        for start, end in by_group.get(group, []):
            slots.extend((start, end))
        serving = view.serving_node(group)
        nodes: list[object] = []
        for m in [serving, *view.followers(group)]:
            host, port = view.addresses[m]
            nodes.append(
                {
                    b"id": view.node_ids[m].encode(),
                    b"port": port,
                    b"ip": host.encode(),
                    b"endpoint": host.encode(),
                    b"role": b"master" if m == serving else b"replica",
                    b"replication-offset": view.offsets.get((group, m), 0),
                    b"health": b"failed" if m in view.failed else b"online",
                }
            )
        out.append({b"slots": slots, b"nodes": nodes})
    return out


def cluster_nodes(view: ClusterView) -> bytes:
    """The CLUSTER NODES text, one ``\\n``-ended line per node of ``addresses``."""
    led: dict[str, list[SlotRange]] = {}
    for start, end, group in view.slot_map.ranges():
        led.setdefault(view.serving_node(group), []).append((start, end))
    # Slots in flight, as Redis writes them after the slot ranges:
    # "[slot->-<destination id>]" on the source, "[slot-<-<source id>]" on the destination.
    moving: dict[str, list[str]] = {}
    for slot in sorted(view.migrating):
        source = view.serving_node(view.slot_map.group_of(slot))
        destination = view.serving_node(view.migrating[slot])
        moving.setdefault(source, []).append(f"[{slot}->-{view.node_ids[destination]}]")
        moving.setdefault(destination, []).append(f"[{slot}-<-{view.node_ids[source]}]")
    lines: list[str] = []
    for node in view.addresses:
        host, port = view.addresses[node]
        flags = ["myself"] if node == view.myself else []
        master = "-"
        ranges = normalise_ranges(led.get(node, []))
        if ranges:
            flags.append("master")
        else:
            # A replica of the first group it belongs to whose leader is shown as a master.
            leader = next(
                (
                    leader
                    for g in sorted(view.placement)
                    if node in view.placement[g]
                    and (leader := view.leaders.get(g)) is not None
                    and leader in led
                ),
                None,
            )
            if leader is not None:
                flags.append("slave")
                master = view.node_ids[leader]
            else:
                flags.append("master")
        if node in view.failed:
            flags.append("fail")
        link = "disconnected" if node in view.failed else "connected"
        line = (
            f"{view.node_ids[node]} {host}:{port}@{view.bus_ports.get(node, 0)} {','.join(flags)} "
            f"{master} 0 0 {view.slot_map.epoch} {link}"
        )
        if ranges:
            line += " " + format_ranges(ranges, sep=" ")
        if node in moving:
            line += " " + " ".join(moving[node])
        lines.append(line + "\n")
    return "".join(lines).encode()


def cluster_info(view: ClusterView) -> bytes:
    """The CLUSTER INFO text. Slots whose group has no known leader count as
    failed and make ``cluster_state:fail``."""
    counts = view.slot_map.counts()
    failed_slots = sum(n for g, n in counts.items() if view.leaders.get(g) is None)
    masters = {view.serving_node(g) for g in counts}
    fields: list[tuple[str, object]] = [
        ("cluster_enabled", 1),
        ("cluster_state", "ok" if failed_slots == 0 else "fail"),
        ("cluster_slots_assigned", SLOT_COUNT),
        ("cluster_slots_ok", SLOT_COUNT - failed_slots),
        ("cluster_slots_pfail", 0),
        ("cluster_slots_fail", failed_slots),
        ("cluster_known_nodes", len(view.addresses)),
        ("cluster_size", len(masters)),
        ("cluster_current_epoch", view.slot_map.epoch),
        ("cluster_my_epoch", view.slot_map.epoch),
        ("cluster_groups", len(view.placement)),
    ]
    return "".join(f"{k}:{v}\r\n" for k, v in fields).encode()
