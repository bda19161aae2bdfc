"""Typed errors of the Raft core: expected conditions, never bugs.

They are returned as the `result` of a `Reply(request_id, result)` effect
when a request carries a request id, and raised by the synchronous calls
(`transfer_leadership`, `compact`, `campaign`) otherwise. A broken invariant
is not one of these: it raises `InvariantViolation` (core/invariant.py).
"""

from __future__ import annotations

__all__ = [
    "Compacted",
    "ConfigChangeInProgress",
    "InvalidConfigChange",
    "LearnerNotCaughtUp",
    "NotLeader",
    "ProposalDropped",
    "QuorumUnavailable",
    "RaftError",
    "SessionExpired",
]


class RaftError(Exception):
    """Base of the expected failures of the Raft core."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.args == self.args

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.args))


class NotLeader(RaftError):
    """This node is not the leader; `hint` is the leader it knows of, or None."""

    def __init__(self, hint: int | None) -> None:
        super().__init__(hint)
        self.hint = hint


class ProposalDropped(RaftError):
    """The proposal was not (or will never be) committed: say why in `reason`.

    Raised when a leader is transferring leadership, when its queue of pending
    proposals is full, or when the entry at the proposal's index was replaced
    by another leader's entry (Raft §5.3: an uncommitted entry may be lost).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class QuorumUnavailable(RaftError):
    """A read could not be confirmed by a quorum (leader stepped down, queue full)."""


class Compacted(RaftError):
    """The log index asked for is covered by a snapshot and is no longer in the log."""

    def __init__(self, index: int, first_index: int) -> None:
        super().__init__(index, first_index)
        self.index = index
        self.first_index = first_index


class ConfigChangeInProgress(RaftError):
    """Another membership change is not committed yet (thesis §4.1: one at a time),
    or the leader has not yet committed an entry of its term (thesis §4.1 bug fix)."""


class InvalidConfigChange(RaftError):
    """The membership change makes no sense (unknown node, already a member, last voter)."""


class LearnerNotCaughtUp(RaftError):
    """A learner may be promoted only once its log is close to the leader's (thesis §4.2.1)."""


class SessionExpired(RaftError):
    """A client session's sequence number is older than the cached one (thesis §6.3)."""
