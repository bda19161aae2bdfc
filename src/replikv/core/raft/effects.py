"""Effects: what the driver must do, in list order, after each call into RaftNode.

Ordering rule (the durability rule, etcd's Ready / msgsAfterAppend): a
`Persist` comes first in every list that has one, so that the vote, the term
and the appended entries are on stable storage before any `Send` that depends
on them (Figure 2: "updated on stable storage before responding to RPCs").
`RestoreSnapshot` comes before `Apply` (the state machine is replaced, then
later entries are applied on top of it); `Apply` comes before `ReadReady` so
that a driver may serve a read as soon as its index is applied.

Asynchronous persistence (a node built with ``async_persist``; thesis
§10.2.1): the driver may carry out the effects after a ``Persist`` before its
fsync completes, except that a ``Send`` for which ``may_send_before_sync`` is
false is held until every write made before it is durable (a vote, an
acknowledgement of entries, a vote request carrying the term). When an fsync
completes, the driver reports the (index, term) of the last entry it covered
with ``RaftNode.advance(persisted=...)``; only then does a leader count its
own copy towards a commit.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from replikv.core.invariant import invariant
from replikv.core.raft.messages import (
    AppendEntries,
    Entry,
    HardState,
    Heartbeat,
    InstallSnapshot,
    RaftMsg,
    ReadIndexResponse,
    Snapshot,
    TimeoutNow,
    positional_builder,
)

__all__ = [
    "Apply",
    "Effect",
    "Persist",
    "ReadReady",
    "Reply",
    "RestoreSnapshot",
    "Send",
    "may_send_before_sync",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Persist:
    """Write to stable storage, then fsync, before carrying out the next effect.

    - `hard_state`: replace the stored term/vote/commit (None: unchanged);
    - `snapshot`: store it and drop every stored entry with index <= its
      index; when `discard_log` is true drop every stored entry (thesis §5.1:
      the follower's log conflicts with the snapshot);
    - `entries`: contiguous; drop every stored entry with index >=
      entries[0].index, then append them (Figure 2 AppendEntries rule 3).
    """

    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    discard_log: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    to: int
    msg: RaftMsg


@dataclass(frozen=True, slots=True, kw_only=True)
class Apply:
    """Apply these committed entries to the state machine, in order (State
    Machine Safety). `waiters` pairs an entry index with the request id of a
    local proposal waiting for that entry's result (reply once applied)."""

    entries: tuple[Entry, ...]
    waiters: tuple[tuple[int, object], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreSnapshot:
    """Replace the state machine with this snapshot (Raft Figure 13 rule 8)."""

    snapshot: Snapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """Answer a request with a result decided by the core itself (a typed
    error from errors.py, or None for a request that simply succeeded)."""

    request_id: object
    result: object


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadReady:
    """A read may be served once the local state machine has applied `index`
    (thesis §6.4 step 4)."""

    request_id: object
    index: int


Effect = Persist | Send | Apply | RestoreSnapshot | Reply | ReadReady


# A leader's replication traffic: it states nothing about the sender's own
# unsynced writes (the leader counts itself only once they are durable), and
# a follower's rejection of a read index depends on no stored state at all.
_EARLY = (AppendEntries, Heartbeat, InstallSnapshot, TimeoutNow, ReadIndexResponse)


def may_send_before_sync(send: Send) -> bool:
    """async_persist: may this message leave before the writes made before it
    are durable? (thesis §10.2.1; every other message waits for the fsync)."""
    return type(send.msg) in _EARLY


# built positionally on the hot path (messages.positional_builder): new_persist(hard_state,
# entries, snapshot, discard_log) and new_apply(entries, waiters)
new_persist = positional_builder(Persist)
new_apply = positional_builder(Apply)
invariant(
    [f.name for f in fields(Persist)] == ["hard_state", "entries", "snapshot", "discard_log"]
    and [f.name for f in fields(Apply)] == ["entries", "waiters"],
    "a field order changed: update the callers of new_persist / new_apply",
)
