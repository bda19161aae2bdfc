"""Exactly-once client commands: the state-machine side session table (thesis §6.3).

A client tags each command with (client_id, seq), seq increasing by one per
new command and kept the same across retries. The table remembers, per
client, the last seq applied and its result:
- seq > last: a new command, apply it and cache its result;
- seq == last: a retry of a command already applied: return the cached
  result, do not apply twice;
- seq < last: an older command whose result is gone: SessionExpired.

The table is part of the replicated state (every replica applies the same
entries in the same order and so holds the same table) and of the snapshot.
It is bounded: past `max_sessions` clients, the one whose last command has
the lowest log index is evicted - a deterministic choice, the same on every
replica (thesis §6.3.2 expires sessions deterministically too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replikv.core.raft.errors import SessionExpired
from replikv.core.raft.messages import Entry

__all__ = ["SessionTable"]


class SessionTable:
    __slots__ = ("_sessions", "max_sessions")

    def __init__(self, max_sessions: int = 1024) -> None:
        self.max_sessions = max_sessions
        # client_id -> (last seq, its result, index of the entry that applied it)
        self._sessions: dict[int, tuple[int, Any, int]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def apply(self, entry: Entry, apply_fn: Callable[[Entry], Any]) -> Any:
        """Apply `entry` through `apply_fn` at most once per (client_id, seq)."""
        if entry.client_id is None or entry.seq is None:
            return apply_fn(entry)
        cached = self._sessions.get(entry.client_id)
        if cached is not None:
            last_seq, result, _ = cached
            if entry.seq == last_seq:
                return result
            if entry.seq < last_seq:
                return SessionExpired(entry.client_id, entry.seq, last_seq)
        result = apply_fn(entry)
        self._sessions[entry.client_id] = (entry.seq, result, entry.index)
        if len(self._sessions) > self.max_sessions:
            oldest = min(self._sessions, key=lambda c: (self._sessions[c][2], c))
            del self._sessions[oldest]
        return result

    def to_state(self) -> list[tuple[int, int, Any, int]]:
        """A plain, sorted list for snapshots (client_id, seq, result, index)."""
        return sorted((c, s, r, i) for c, (s, r, i) in self._sessions.items())

    @classmethod
    def from_state(cls, state: list[Any], max_sessions: int = 1024) -> SessionTable:
        t = cls(max_sessions)
        for c, s, r, i in state:
            t._sessions[c] = (s, r, i)
        return t
