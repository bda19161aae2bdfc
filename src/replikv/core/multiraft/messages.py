"""What one node's group host sends another: one ``Batch`` per peer per round.

A node hosting many Raft groups (host.py) never sends a group's message on its
own: everything its groups address to one peer node in one round (one event
loop iteration, one simulator step) travels in one ``Batch``, and a batch with
nothing in it is the node-level liveness ping. This is CockroachDB's
coalescing (its "coalesced heartbeats" and node liveness): the number of
frames between two nodes grows with the number of nodes, not of groups.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from replikv.core.invariant import invariant

from replikv.core.raft.messages import RaftMsg

__all__ = ["Batch", "Quiesce", "new_batch"]


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


_BATCH_FIELDS = ("src", "dst", "incarnation", "msgs", "quiesce", "wake")
invariant(tuple(f.name for f in fields(Batch)) == _BATCH_FIELDS and not hasattr(Batch, "__post_init__"),
          "update new_batch()")
_set_src, _set_dst, _set_incarnation, _set_msgs, _set_quiesce, _set_wake = (
    getattr(Batch, name).__set__ for name in _BATCH_FIELDS)
_new_object = object.__new__


def new_batch(src: int, dst: int, incarnation: int, msgs: tuple[tuple[int, RaftMsg], ...],
              quiesce: tuple[Quiesce, ...], wake: tuple[int, ...]) -> Batch:
    """``Batch(src=, dst=, ...)`` from fields the caller checked, set straight into its slots (as
    ``normal_entry`` builds an entry): the frozen dataclass's keyword ``__init__`` sets each
    field through ``object.__setattr__``, a third of a small batch's decode. Used by the
    host for every batch it sends and by the codec for every one it decodes, so the six
    setters are called one by one (a loop over ``zip`` of setters and values cost as much
    again as the sets: 0.8 -> 0.4 us per batch, BENCHMARKS.md session 20)."""
    b: Batch = _new_object(Batch)
    _set_src(b, src)
    _set_dst(b, dst)
    _set_incarnation(b, incarnation)
    _set_msgs(b, msgs)
    _set_quiesce(b, quiesce)
    _set_wake(b, wake)
    return b
