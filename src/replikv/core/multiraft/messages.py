"""What one node's group host sends another: one ``Batch`` per peer per round.

A node hosting many Raft groups (host.py) never sends a group's message on its
own: everything its groups address to one peer node in one round (one event
loop iteration, one simulator step) travels in one ``Batch``, and a batch with
nothing in it is the node-level liveness ping. This is CockroachDB's
coalescing (its "coalesced heartbeats" and node liveness): the number of
frames between two nodes grows with the number of nodes, not of groups.
"""

from __future__ import annotations

from dataclasses import dataclass

from replikv.core.raft.messages import RaftMsg

__all__ = ["Batch", "Quiesce"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Quiesce:
    """The leader of ``group`` stops ticking it and asks the follower to do the
    same: the follower quiesces only if it holds exactly what the leader holds
    (same term and leader, ``last_index`` and ``commit``), else it asks the
    leader to wake (``Batch.wake``)."""

    group: int
    term: int
    last_index: int
    commit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """Node ``src`` to node ``dst``: its groups' Raft messages in the order the
    groups produced them, then the quiesce requests, then the groups it wants
    awake. ``incarnation`` grows each time ``src`` restarts, so a peer that
    restarted within the liveness timeout is still noticed."""

    src: int
    dst: int
    incarnation: int = 0
    msgs: tuple[tuple[int, RaftMsg], ...] = ()
    quiesce: tuple[Quiesce, ...] = ()
    wake: tuple[int, ...] = ()

    @property
    def is_ping(self) -> bool:
        return not (self.msgs or self.quiesce or self.wake)
