"""Raft messages and log records (Raft paper Figure 2; Ongaro thesis ch. 3-6, 9.6).

Every message is a frozen, slotted, keyword-only dataclass carrying the
sender's `term`, its `src` and its `dst`; `RaftMsg` is the union the node
dispatches on with `match`. Log records (`Entry`, `Snapshot`, `HardState`,
`Config`) live here too because they travel inside messages.

Differences from the paper's two RPCs, each after etcd-io/raft:
- heartbeats are their own message (`Heartbeat`) carrying the commit index the
  follower may use (min(match, commit)) and a round number `ctx` that the
  ReadIndex and lease machinery count acknowledgements of (thesis §6.4);
- a rejected AppendEntries carries a conflict hint (term and first index of
  that term in the follower's log, Raft §5.3 "fast backtracking");
- RequestVote has a `pre_vote` flag (thesis §9.6) and a `transfer` flag
  (thesis §3.10: a vote caused by TimeoutNow bypasses leader stickiness).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum

from replikv.core.builders import positional_builder
from replikv.core.invariant import invariant

__all__ = [
    "AppendEntries",
    "AppendEntriesResponse",
    "Config",
    "Entry",
    "EntryKind",
    "HardState",
    "Heartbeat",
    "HeartbeatResponse",
    "InstallSnapshot",
    "InstallSnapshotResponse",
    "RaftMsg",
    "ReadIndexRequest",
    "ReadIndexResponse",
    "RequestVote",
    "RequestVoteResponse",
    "Snapshot",
    "TimeoutNow",
    "entries_size",
    "normal_entry",
    "positional_builder",
]

NodeId = int


class EntryKind(Enum):
    NORMAL = "normal"  # an application command
    NOOP = "noop"  # appended by each new leader (Raft §5.4.2 / §8)
    CONFIG = "config"  # a full membership configuration (thesis §4.1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A membership configuration: voters count in quorums, learners only replicate.

    Invariant: no node is both a voter and a learner.
    """

    voters: frozenset[NodeId]
    learners: frozenset[NodeId] = frozenset()

    def __post_init__(self) -> None:
        if self.voters & self.learners:
            raise ValueError(f"nodes {sorted(self.voters & self.learners)} are voters and learners")

    @property
    def members(self) -> frozenset[NodeId]:
        return self.voters | self.learners

    def describe(self) -> str:
        v = " ".join(str(n) for n in sorted(self.voters))
        learners = " ".join(str(n) for n in sorted(self.learners))
        return f"voters=({v})" + (f" learners=({learners})" if learners else "")


EMPTY_CONFIG = Config(voters=frozenset())


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One log entry. `client_id`/`seq` identify a client command for
    exactly-once application (thesis §6.3); `config` is set iff kind is CONFIG
    and holds the whole new configuration, so a node that appends it knows the
    membership without earlier entries."""

    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""
    client_id: int | None = None
    seq: int | None = None
    config: Config | None = None

    def size_bytes(self) -> int:
        """The size flow control counts (payload plus a fixed header estimate)."""
        return len(self.data) + ENTRY_OVERHEAD_BYTES


ENTRY_OVERHEAD_BYTES = 24  # the header estimate of Entry.size_bytes

_new_object = object.__new__
_ENTRY_FIELDS = ("term", "index", "kind", "data", "client_id", "seq", "config")
invariant(tuple(f.name for f in fields(Entry)) == _ENTRY_FIELDS, "update normal_entry()")
_ENTRY_SLOTS = tuple(Entry.__dict__[name].__set__ for name in _ENTRY_FIELDS)


def normal_entry(term: int, index: int, data: bytes, client_id: int | None, seq: int | None) -> Entry:
    """``Entry(term=, index=, data=, client_id=, seq=)`` (kind NORMAL, no config),
    built about 3x faster than the frozen dataclass's keyword ``__init__``
    (which sets each field through ``object.__setattr__``): the hot path of
    proposing and of decoding AppendEntries. The result is an ordinary,
    equal, still frozen Entry."""
    e = _new_object(Entry)
    set_term, set_index, set_kind, set_data, set_client, set_seq, set_config = _ENTRY_SLOTS
    set_term(e, term)
    set_index(e, index)
    set_kind(e, EntryKind.NORMAL)
    set_data(e, data)
    set_client(e, client_id)
    set_seq(e, seq)
    set_config(e, None)
    return e


def entries_size(entries: list[Entry] | tuple[Entry, ...]) -> int:
    """``sum(e.size_bytes() for e in entries)``, without a call per entry."""
    return sum([len(e.data) for e in entries]) + ENTRY_OVERHEAD_BYTES * len(entries)


@dataclass(frozen=True, slots=True, kw_only=True)
class HardState:
    """What must be on stable storage before any message depending on it is
    sent (Figure 2 "Persistent state on all servers"; commit is kept too, as
    etcd does, so a restarted node re-applies without waiting for a leader)."""

    term: int = 0
    vote: NodeId | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Application state up to and including `index` (Raft §7), with the term
    of that entry and the configuration in force at that index."""

    index: int = 0
    term: int = 0
    config: Config = EMPTY_CONFIG
    # a memoryview: the driver's snapshot file, mapped (not on the heap), or the chunks a follower received
    data: bytes | memoryview = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Msg:
    term: int
    src: NodeId
    dst: NodeId


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVote(_Msg):
    """Figure 2 RequestVote; with pre_vote, `term` is the term the sender
    would campaign in and no receiver changes its own term (thesis §9.6)."""

    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVoteResponse(_Msg):
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntries(_Msg):
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...] = ()
    leader_commit: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntriesResponse(_Msg):
    """On success `match_index` is the last index known to match the leader.
    On rejection `reject_index` is the prev_log_index that did not match and
    (`conflict_term`, `conflict_index`) is the hint: the term of the
    follower's entry at reject_index and the first index it holds of that
    term, or (0, last_index + 1) when its log is too short (Raft §5.3)."""

    success: bool
    match_index: int = 0
    reject_index: int = 0
    conflict_term: int = 0
    conflict_index: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat(_Msg):
    commit: int
    ctx: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatResponse(_Msg):
    """``lost``: the heartbeat's commit (the leader caps it at this follower's match)
    is beyond the follower's log, which ends at ``last_index``: it lost entries it
    had acknowledged (a wiped or lost disk, or a tail not yet synced under
    ``--fsync everysec|no``), and the leader must send them again."""

    ctx: int = 0
    lost: bool = False
    last_index: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshot(_Msg):
    """One chunk of a snapshot (Raft Figure 13): bytes [offset, offset+len(data))."""

    last_included_index: int
    last_included_term: int
    config: Config
    offset: int
    data: bytes | memoryview
    done: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshotResponse(_Msg):
    """`next_offset` asks for the next chunk; when `done`, `match_index` is
    the follower's commit after installing (or ignoring) the snapshot."""

    last_included_index: int
    next_offset: int = 0
    done: bool = False
    match_index: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutNow(_Msg):
    """Leadership transfer: start an election now (thesis §3.10)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIndexRequest(_Msg):
    """A follower asks the leader for a read index (thesis §6.4)."""

    request_id: object
    lease: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIndexResponse(_Msg):
    request_id: object
    index: int = 0
    ok: bool = True


RaftMsg = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | Heartbeat
    | HeartbeatResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
    | ReadIndexRequest
    | ReadIndexResponse
)


# the hot messages and record of a replication round, built positionally (positional_builder):
# new_append_entries(term, src, dst, prev_log_index, prev_log_term, entries, leader_commit)
new_append_entries = positional_builder(AppendEntries)
# new_append_response(term, src, dst, success, match_index, reject_index, conflict_term, conflict_index)
new_append_response = positional_builder(AppendEntriesResponse)
# new_hard_state(term, vote, commit)
new_hard_state = positional_builder(HardState)
_BUILT_FIELDS = {
    AppendEntries: ("term", "src", "dst", "prev_log_index", "prev_log_term", "entries", "leader_commit"),
    AppendEntriesResponse: ("term", "src", "dst", "success", "match_index", "reject_index", "conflict_term",
                            "conflict_index"),
    HardState: ("term", "vote", "commit"),
}
invariant(all(tuple(f.name for f in fields(c)) == n for c, n in _BUILT_FIELDS.items()),
          "a field order changed: update the callers of new_append_entries / new_append_response / new_hard_state")
