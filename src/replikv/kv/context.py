"""ApplyContext: what the state machine knows about the write it applies.

Every entry point that changes the data (``StateMachine.apply``,
``execute``, ``prepare``) takes one, and every write operation receives it,
so a mode that must merge concurrent writes finds what it needs at the
place the data changes:

- ``now_ms``: the time of the write (unix ms, the wall clock of the node
  that accepted it), or None. With a time, ``apply`` treats every key a
  command touches that is expired at ``now_ms`` as gone, before and after
  the command (raft: the entry carries its leader's time and expiry is
  decided at apply, identically on every replica). Without one, ``apply``
  never deletes a key because of time: the log already states every
  deletion (the leader-follower leader logs ``DEL`` for it), so a
  follower's state only changes through the log.
- ``origin``: the id of the node that accepted the write from its client,
  where the mode knows it (``""`` otherwise: a raft entry and a replayed
  leader-follower log do not record it).
- ``log_index``: the log index of the entry, where the mode fills it (raft,
  which builds a context per entry anyway); 0 otherwise (a leader-follower
  write is executed before it has an index, and its followers apply a
  batch of entries in log order under one context).
- ``version`` / ``hlc``: the write's version (a dotted version vector) and
  hybrid logical clock timestamp, for the leaderless and multi-leader modes;
  None in the single-writer modes, which order writes by log index.

Today no operation reads more than ``now_ms``; the rest is plumbing that
reaches every write operation (``tests/unit/test_state_machine.py`` checks
it), so a merging mode adds its rule where the data changes.

It is an immutable ``NamedTuple`` rather than a frozen dataclass because
the leader builds them on its write path: here a frozen dataclass costs
~0.9 µs to construct (``object.__setattr__`` per field), a NamedTuple
~0.2-0.3 µs, and the leader-follower leader still reuses one per
millisecond.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["ApplyContext"]


class ApplyContext(NamedTuple):
    now_ms: int | None
    origin: str = ""
    log_index: int = 0
    version: Any = None
    hlc: int | None = None
