"""Replies that wait, each with a deadline: the one place a runner keeps them.

``PendingReplies``: requests keyed by an id that something else will answer
(the leader, for a forwarded command; the log, for a proposal; a quorum,
for a read index; a membership change). Each entry holds the client's
reply slot, a payload for whoever answers, its deadline (monotonic
seconds) and the error text its client gets if the deadline passes first.

``SessionReads``: reads waiting until this node has applied a client's
session position (``CONSISTENCY READ session``); served when it has, or
answered ``STALE`` at their deadline.

Rules (every runner, every mode):
- One reply per request: ``pop`` hands an entry to exactly one answerer;
  ``expire`` and ``fail_all`` answer what is left. An id popped twice is
  answered once.
- An expiry error says whether the request may still take effect (a write
  that reached the log may; a read or an unsent command may not).
- A client that went away still gets its slot resolved (its connection
  drops the bytes), so nothing waits forever on a closed connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from replikv.core.replies import RespError
from replikv.core.resp import encode_reply
from replikv.runtime.resp_server import Slot

__all__ = ["Pending", "PendingReplies", "SessionReads"]


class Pending(NamedTuple):
    slot: Slot
    conn: Any
    payload: Any
    deadline: float
    on_expiry: str  # the error its client gets at the deadline


class PendingReplies:
    """id -> Pending; see the module docstring."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[Any, Pending] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __contains__(self, rid: object) -> bool:
        return rid in self._entries

    def values(self) -> Iterator[Pending]:
        return iter(list(self._entries.values()))

    def add(self, rid: Any, conn: Any, deadline: float, on_expiry: str, payload: Any = None) -> None:
        self._entries[rid] = Pending(conn.slot(), conn, payload, deadline, on_expiry)

    def pop(self, rid: Any) -> Pending | None:
        return self._entries.pop(rid, None)

    def expire(self, now: float) -> bool:
        """Answer every entry whose deadline passed with its error; True if any was."""
        overdue = [rid for rid, p in self._entries.items() if now >= p.deadline]
        for rid in overdue:
            p = self._entries.pop(rid)
            p.slot.resolve(encode_reply(RespError(p.on_expiry), p.slot.conn.resp3))
        return bool(overdue)

    def fail_all(self, error: RespError | Callable[[Any, Pending], RespError]) -> bool:
        """Answer every entry now (a lost leader, a frozen disk); True if any was.
        ``error`` may depend on the entry: ``error(rid, entry)``."""
        entries, self._entries = self._entries, {}
        for rid, p in entries.items():
            err = error(rid, p) if callable(error) else error
            p.slot.resolve(encode_reply(err, p.slot.conn.resp3))
        return bool(entries)


class SessionReads:
    """Reads waiting for this node to apply a session position (index order not assumed)."""

    __slots__ = ("_waiting", "timeout_ms", "what")

    def __init__(self, timeout_ms: int, what: str) -> None:
        self._waiting: list[tuple[int, Slot, Any, float]] = []  # (index, slot, payload, deadline)
        self.timeout_ms = timeout_ms
        self.what = what  # "this node", "this follower": named in the STALE error

    def __len__(self) -> int:
        return len(self._waiting)

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def slots(self) -> Iterator[Slot]:
        return (w[1] for w in self._waiting)

    def add(self, index: int, conn: Any, payload: Any, now: float) -> None:
        self._waiting.append((index, conn.slot(), payload, now + self.timeout_ms / 1000))

    def release(self, applied: int, serve: Callable[[Any], Any]) -> None:
        """Serve the reads whose position ``applied`` reached: ``serve(payload)`` is the reply."""
        keep = []
        for w in self._waiting:
            if w[0] <= applied:
                w[1].resolve(encode_reply(serve(w[2]), w[1].conn.resp3))
            else:
                keep.append(w)
        self._waiting = keep

    def expire(self, now: float, applied: int) -> bool:
        """Answer STALE to the reads whose deadline passed; True if any was."""
        keep = []
        for w in self._waiting:
            if now >= w[3]:
                w[1].resolve(encode_reply(RespError(
                    f"STALE session position {w[0]} not reached within {self.timeout_ms} ms "
                    f"({self.what} has applied {applied})"), w[1].conn.resp3))
            else:
                keep.append(w)
        expired = len(keep) != len(self._waiting)
        self._waiting = keep
        return expired
