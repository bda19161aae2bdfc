"""Placement of Raft groups on nodes: who holds a replica, who should lead.

Rules implemented:

* ``place_groups(nodes, K, r)`` gives each of the K groups ``r`` distinct
  members; the first member is the group's preferred leader. Every node holds
  ``floor(K*r/n)`` or ``ceil(K*r/n)`` replicas and is the preferred leader of
  ``floor(K/n)`` or ``ceil(K/n)`` groups: leaders spread over the nodes as
  ``redis-cli --cluster create`` spreads masters, and as CockroachDB's and
  TiKV's allocators balance replica and lease counts per store.
  The layout is a rotation (group g on nodes g, g+1, ..., g+r-1 mod n), the
  last incomplete round spreading its starting nodes evenly; a balancing pass
  then evens out what the rotation leaves uneven.
* ``rebalance(placement, nodes)`` after nodes are added or removed moves as few
  replicas as it can: replicas on removed nodes must move (each to the least
  loaded node not already in the group); then, while the most loaded node holds
  two more replicas than the least loaded one, one replica moves from the
  former to the latter, in a group that holds the first but not the second
  (one always exists: the first is in more groups). A replica that already
  moved in this rebalance is moved again in preference, so that a chain
  A -> X -> Y costs one move (A -> Y), never two. Leaders are evened out
  afterwards by leadership transfers along a path of groups (x leads g, y is
  a member of g, ...), which cost no data movement; a current leader keeps its
  group whenever balance allows.

``Move`` is one replica copied to ``target`` and dropped from ``source`` (Raft:
add ``target`` as a learner, promote it, then remove ``source``).

``rebalance_steps(plan)`` orders a rebalance as Raft membership changes, one
server at a time (thesis §4.1-4.3), group by group: every target is added as a
learner and promoted once caught up, then leadership moves to the group's new
preferred leader (a voter by then), and only then are the sources removed, so
a group never removes the member leading it and always keeps a majority of
caught-up voters.

``initial_placement(record, founders, K, r)``: where a node's groups come
from at start. A stored record (the node-level placement kept in the node's
meta file, updated by every membership change it applies) wins; without one,
the placement is computed over the founding nodes (cluster.toml's
``bootstrap``, or all its nodes when it has none). Nodes added later with
``replikv cluster add`` are not founders: they start hosting no group and
receive replicas only from ``replikv rebalance``. So adding a node to
cluster.toml never changes what existing nodes think a group's members are.
``encode_placement``/``decode_placement`` are that record's JSON form.

Invariants: every group has distinct members, all of them in ``nodes``; a
group keeps its size across a rebalance.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgpack

from replikv.core.invariant import violated

__all__ = [
    "PREFER_ENTRY",
    "LeaderChange",
    "parse_prefer_entry",
    "prefer_entry",
    "Step",
    "decode_placement",
    "encode_placement",
    "initial_placement",
    "rebalance_steps",
    "Move",
    "Placement",
    "PlacementError",
    "Rebalance",
    "leader_counts",
    "place_groups",
    "rebalance",
    "replica_counts",
]

Placement = dict[int, tuple[str, ...]]
"""group id -> members, the first one the preferred leader."""

# A group's preferred leader is part of its replicated state: ``REPLIKV GROUP g PREFER node``
# is an entry of g's log (this byte, then the node's raft id as msgpack), applied alike by every
# replica; so every replica hands leadership back to the same node, and one that was down when
# the preference changed learns it from the log (no two nodes each handing the group to the
# other). No client entry starts with this byte: those are msgpack arrays.
PREFER_ENTRY = b"\x02"


def prefer_entry(raft_id: int) -> bytes:
    packed: bytes = msgpack.packb(raft_id)
    return PREFER_ENTRY + packed


def parse_prefer_entry(data: bytes) -> int:
    """The raft id a PREFER entry names; ValueError if it is not one."""
    value = msgpack.unpackb(data[1:]) if data[:1] == PREFER_ENTRY else None
    if type(value) is not int or value < 0:
        raise ValueError(f"not a preferred-leader entry: {data[:20]!r}")
    return value


class PlacementError(ValueError):
    """The requested placement is impossible (more replicas than nodes, no
    nodes, duplicate node names): an expected condition, told to the operator."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Move:
    """One replica of ``group`` goes from ``source`` to ``target``."""

    group: int
    source: str
    target: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderChange:
    """The preferred leader of ``group`` changes (a leadership transfer)."""

    group: int
    source: str | None  # None when the old preferred leader is no longer a node
    target: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rebalance:
    placement: Placement
    moves: tuple[Move, ...]
    leader_changes: tuple[LeaderChange, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One membership change of ``group``: ``op`` is ``add_learner``, ``promote``,
    ``transfer`` (leadership to ``node``) or ``remove``."""

    op: str
    group: int
    node: str


def rebalance_steps(plan: Rebalance) -> tuple[Step, ...]:
    """The Raft membership changes carrying out ``plan``, in order (module docstring)."""
    moves: dict[int, list[Move]] = {}
    for m in plan.moves:
        moves.setdefault(m.group, []).append(m)
    leaders = {c.group: c.target for c in plan.leader_changes}
    steps: list[Step] = []
    for g in sorted(set(moves) | set(leaders)):
        for m in moves.get(g, ()):
            steps.append(Step(op="add_learner", group=g, node=m.target))
            steps.append(Step(op="promote", group=g, node=m.target))
        if g in leaders:
            steps.append(Step(op="transfer", group=g, node=leaders[g]))
        steps.extend(Step(op="remove", group=g, node=m.source) for m in moves.get(g, ()))
    return tuple(steps)


def encode_placement(placement: Mapping[int, Sequence[str]]) -> dict[str, list[str]]:
    """The JSON form of a placement (JSON object keys are strings)."""
    return {str(g): list(m) for g, m in sorted(placement.items())}


def decode_placement(record: object) -> Placement:
    """A placement from ``encode_placement``'s form; PlacementError when it is not one."""
    if not isinstance(record, dict):
        raise PlacementError(f"a placement record is an object, not {type(record).__name__}")
    out: Placement = {}
    for g, m in record.items():
        if not (isinstance(g, str) and g.isdigit() and isinstance(m, list)
                and all(isinstance(x, str) for x in m) and m and len(set(m)) == len(m)):
            raise PlacementError(f"bad placement record entry {g!r}: {m!r}")
        out[int(g)] = tuple(m)
    return out


def initial_placement(record: object, founders: Sequence[str], shards: int, replicas: int) -> Placement:
    """A node's placement at start: its stored ``record`` when it has one, else the
    founders' computed placement (module docstring)."""
    if record is not None:
        placement = decode_placement(record)
        if sorted(placement) != list(range(shards)):
            raise PlacementError(f"the stored placement has groups {sorted(placement)}, the cluster "
                                 f"{shards} shards: the shard count cannot change")
        return placement
    return place_groups(founders, shards, min(replicas, len(founders)))


def replica_counts(placement: Mapping[int, Sequence[str]], nodes: Sequence[str]) -> dict[str, int]:
    """How many replicas each of ``nodes`` holds (members outside ``nodes`` are ignored)."""
    counts = dict.fromkeys(nodes, 0)
    for members in placement.values():
        for m in members:
            if m in counts:
                counts[m] += 1
    return counts


def leader_counts(placement: Mapping[int, Sequence[str]], nodes: Sequence[str]) -> dict[str, int]:
    """How many groups each of ``nodes`` is the preferred leader of."""
    counts = dict.fromkeys(nodes, 0)
    for members in placement.values():
        if members and members[0] in counts:
            counts[members[0]] += 1
    return counts


def _check_nodes(nodes: Sequence[str]) -> None:
    if not nodes:
        raise PlacementError("there are no nodes to place groups on")
    if len(set(nodes)) != len(nodes):
        raise PlacementError(f"duplicate node names in {list(nodes)}")


def place_groups(nodes: Sequence[str], shards: int, replicas: int) -> Placement:
    """K = ``shards`` groups (ids 0..K-1) with ``replicas`` members each, spread evenly."""
    _check_nodes(nodes)
    n = len(nodes)
    if shards < 1:
        raise PlacementError(f"shards must be at least 1, not {shards}")
    if not 1 <= replicas <= n:
        raise PlacementError(
            f"replicas must be between 1 and the number of nodes ({n}), not {replicas}"
        )
    full_rounds, rest = divmod(shards, n)
    members: dict[int, list[str]] = {}
    for g in range(shards):
        if g < full_rounds * n:
            start = g % n
        else:  # the last, incomplete round: spread its starting nodes evenly
            start = (g - full_rounds * n) * n // rest
        members[g] = [nodes[(start + j) % n] for j in range(replicas)]
    old = {g: tuple(m) for g, m in members.items()}
    _balance_replicas(members, old, nodes)
    _balance_leaders(members, nodes)
    return {g: tuple(m) for g, m in members.items()}


def rebalance(placement: Mapping[int, Sequence[str]], nodes: Sequence[str]) -> Rebalance:
    """A balanced placement over ``nodes`` that moves as few replicas as it can.

    Members not in ``nodes`` (removed nodes) are replaced; nodes that hold no
    replica yet (added nodes) receive some. Each group keeps its size, which
    must not exceed ``len(nodes)``.
    """
    _check_nodes(nodes)
    alive = set(nodes)
    order = {x: i for i, x in enumerate(nodes)}
    old: dict[int, tuple[str, ...]] = {g: tuple(m) for g, m in placement.items()}
    for g, m in old.items():
        if len(set(m)) != len(m) or not m:
            raise PlacementError(f"group {g} has members {list(m)}: empty or not distinct")
        if len(m) > len(nodes):
            raise PlacementError(
                f"group {g} has {len(m)} replicas but there are only {len(nodes)} nodes"
            )
    members = {g: [x for x in m if x in alive] for g, m in old.items()}
    counts = replica_counts(members, nodes)
    for g in sorted(old):
        for _gone in (x for x in old[g] if x not in alive):
            target = min(
                (x for x in nodes if x not in members[g]), key=lambda x: (counts[x], order[x])
            )
            members[g].append(target)
            counts[target] += 1
    _balance_replicas(members, old, nodes)
    # A group whose preferred leader left goes to its least-leading member.
    leads = leader_counts({g: m for g, m in members.items() if m[0] == old[g][0]}, nodes)
    for g in sorted(members):
        group_members = members[g]
        if group_members[0] != old[g][0]:
            y = min(group_members, key=lambda x: (leads[x], order[x]))
            group_members.remove(y)
            group_members.insert(0, y)
            leads[y] += 1
    _balance_leaders(members, nodes, old)
    new = {g: tuple(m) for g, m in members.items()}
    moves: list[Move] = []
    changes: list[LeaderChange] = []
    for g in sorted(new):
        gone = [x for x in old[g] if x not in new[g]]
        came = [x for x in new[g] if x not in old[g]]
        if len(gone) != len(came):
            violated(f"group {g} changed size: {old[g]} -> {new[g]}")
        moves.extend(Move(group=g, source=s, target=t) for s, t in zip(gone, came, strict=True))
        if new[g][0] != old[g][0]:
            changes.append(
                LeaderChange(
                    group=g, source=old[g][0] if old[g][0] in alive else None, target=new[g][0]
                )
            )
    return Rebalance(placement=new, moves=tuple(moves), leader_changes=tuple(changes))


def _balance_replicas(
    members: dict[int, list[str]], old: Mapping[int, Sequence[str]], nodes: Sequence[str]
) -> None:
    """Move replicas from the most to the least loaded node until they differ by at most one."""
    counts = replica_counts(members, nodes)
    holders: dict[str, set[int]] = {x: set() for x in nodes}
    moved_in: dict[str, set[int]] = {x: set() for x in nodes}  # replicas that moved already
    for g, m in members.items():
        for x in m:
            holders[x].add(g)
            if x not in old[g]:
                moved_in[x].add(g)
    while True:
        high = max(counts.values())
        low = min(counts.values())
        if high - low <= 1:
            return
        srcs = [x for x in nodes if counts[x] == high]
        dsts = [x for x in nodes if counts[x] == low]
        g, src, dst = _pick_move(members, holders, moved_in, srcs, dsts)
        m = members[g]
        m[m.index(src)] = dst
        holders[src].discard(g)
        holders[dst].add(g)
        moved_in[src].discard(g)
        if dst not in old[g]:
            moved_in[dst].add(g)
        counts[src] -= 1
        counts[dst] += 1


def _pick_move(
    members: Mapping[int, Sequence[str]],
    holders: Mapping[str, set[int]],
    moved_in: Mapping[str, set[int]],
    srcs: Sequence[str],
    dsts: Sequence[str],
) -> tuple[int, str, str]:
    """The replica to move from one of ``srcs`` to one of ``dsts``: one that
    already moved in this rebalance (moving it again costs nothing) before
    one that did not, one the source does not lead before one it leads, then
    in node and group order (deterministic)."""
    for already_moved in (True, False):
        for leading in (False, True):
            for src in srcs:
                pool = moved_in[src] if already_moved else holders[src] - moved_in[src]
                for g in sorted(pool):
                    if (members[g][0] == src) != leading:
                        continue
                    for dst in dsts:
                        if g not in holders[dst]:
                            return g, src, dst
    violated("a node with more replicas always holds a group that one with fewer does not")


def _balance_leaders(
    members: dict[int, list[str]],
    nodes: Sequence[str],
    old: Mapping[int, Sequence[str]] | None = None,
) -> None:
    """Even out preferred leaders (first members) by leadership transfers.

    While some node leads two groups more than another, find a shortest path
    x0 -g1-> x1 -g2-> ... -> xk where x(i-1) leads g(i) and x(i) is a member of
    g(i), from a most-leading node to one leading at least two fewer, and shift
    each g(i) to x(i): x0 loses one, xk gains one, the rest are unchanged.
    Without such a path the leaders stay as they are (cannot happen when
    replicas are balanced, by Hall's theorem; the property tests check it).
    """
    order = {x: i for i, x in enumerate(nodes)}
    leads = leader_counts(members, nodes)
    led: dict[str, list[int]] = {x: [] for x in nodes}
    for g in sorted(members):
        led[members[g][0]].append(g)
    while True:
        high = max(leads.values())
        if high - min(leads.values()) <= 1:
            return
        # Breadth-first from every most-leading node at once.
        parent: dict[str, tuple[str, int] | None] = {}
        queue: deque[str] = deque()
        for x in nodes:
            if leads[x] == high:
                parent[x] = None
                queue.append(x)
        end: str | None = None
        while queue and end is None:
            x = queue.popleft()
            for g in led[x]:
                # Transfer to members in node order; a group's old leader first
                # (undoing an earlier change is free).
                cands = sorted(
                    members[g][1:], key=lambda y: (old is None or y != old[g][0], order[y])
                )
                for y in cands:
                    if y in parent:
                        continue
                    parent[y] = (x, g)
                    if leads[y] <= high - 2:
                        end = y
                        break
                    queue.append(y)
                if end is not None:
                    break
        if end is None:
            return
        y = end
        step = parent[y]
        leads[y] += 1
        while step is not None:
            x, g = step
            m = members[g]
            m.remove(y)
            m.insert(0, y)
            led[x].remove(g)
            led[y].append(g)
            y = x
            step = parent[x]
        leads[y] -= 1
