"""Where WATCH is decided: the log index at which each key last changed.

Redis aborts an EXEC when a key its client WATCHed was modified after the
WATCH (``touchWatchedKey``). replikv's writes are ordered by a log, so the
rule becomes: a client WATCHes at a position ``since`` (the log index of
the state it reads from), and its EXEC is aborted iff a watched key changed
at an index above ``since``. The index answers that question wherever the
EXEC is decided: on the leader-follower leader as it runs the block, and in
raft at apply time on every replica (so it is serializable across leader
changes, and every replica decides alike).

Invariants:

- ``changed_since(keys, since)`` is True whenever some key in ``keys``
  changed at an index > ``since`` (never a false "unchanged"); it may also
  say True for a change it no longer remembers: ``since < floor``.
- Memory is bounded: past ``LIMIT`` keys the older half is forgotten and
  ``floor`` rises to the newest index forgotten (a WATCH older than that
  aborts, which Redis's contract allows: EXEC may always fail and be retried).
- Deterministic: the same sequence of ``touch``/``touch_all`` calls gives
  the same state (raft replicas feed it the same entries, and a snapshot
  carries ``state()``).
- At rest (``rest()``, until ``arm()``) the index records nothing: a mode whose
  WATCHes and blocked commands are decided on the node that handed out their
  positions (multi-leader) puts it at rest while none of those positions may
  still be read, and arms it when it hands one out. A change made at rest is at
  or below every position handed out later, so ``changed_since`` of those never
  needed it: each write then costs no index update unless a client watches. A
  mode whose positions are read elsewhere (raft: on every replica at apply)
  never rests it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from replikv.kv.commands import COMMANDS, lookup

__all__ = ["ChangeIndex"]


LIMIT = 100_000  # keys remembered (~10 MB at most)
_spec = COMMANDS.get


class ChangeIndex:
    __slots__ = ("floor", "last", "limit", "watching")

    def __init__(self, floor: int = 0, limit: int = LIMIT, watching: bool = True) -> None:
        self.last: dict[bytes, int] = {}
        self.floor = floor
        self.limit = limit
        self.watching = watching  # False: at rest (see the module docstring)

    def arm(self) -> None:
        """Record changes from now on: a position is being handed out (WATCH, a blocked command)."""
        self.watching = True

    def rest(self) -> None:
        """Record nothing until ``arm``, and forget what was recorded: the caller knows that
        no position handed out so far may still be read (module docstring, "At rest")."""
        self.watching = False
        self.last = {}

    def touch(self, key: bytes, index: int) -> None:
        if not self.watching:
            return
        last = self.last
        last[key] = index
        if len(last) > self.limit:
            self._forget_older_half()

    def touch_keys(self, changed: dict[bytes, int]) -> None:
        """Each key of ``changed`` changed at its index (a batch of writes, each key's last):
        the state ``touch`` per key in the batch's order leaves, bar a forgetting that
        ``touch`` would have done within the batch, which happens here at its end (the
        invariants hold either way: bounded, never a false "unchanged")."""
        if not self.watching:
            return
        last = self.last
        last.update(changed)
        if len(last) > self.limit:
            self._forget_older_half()

    def touch_all(self, index: int) -> None:
        """Every key changed at ``index`` (FLUSHALL)."""
        self.last.clear()
        self.floor = max(self.floor, index)

    def touch_commands(self, cmds: Iterable[list[bytes]], index: int) -> None:
        """The logged commands of one entry changed their keys at ``index``
        (a keyless write such as FLUSHALL changed them all). On the
        leader-follower write path: one-key commands take the short way."""
        if not self.watching:
            return
        last = self.last
        for cmd in cmds:
            spec = _spec(cmd[0]) or lookup(cmd[0])
            if spec is None:  # EXPIREDUE key...: deletions decided at apply
                for key in cmd[1:]:
                    last[key] = index
            elif spec.last_key == 1 and spec.first_key == 1:
                last[cmd[1]] = index
            elif keys := spec.keys(cmd):
                for key in keys:
                    last[key] = index
            else:
                self.touch_all(index)
                last = self.last
        if len(last) > self.limit:
            self._forget_older_half()

    def changed_since(self, keys: Iterable[bytes], since: int) -> bool:
        if since < self.floor:
            return True
        get = self.last.get
        return any(get(key, 0) > since for key in keys)

    def any_changed(self, watched: Iterable[tuple[bytes, int] | list[Any]]) -> bool:
        """True if some ``(key, since)`` WATCHed pair changed after its ``since``."""
        floor, get = self.floor, self.last.get
        return any(since < floor or get(key, 0) > since for key, since in watched)

    def _forget_older_half(self) -> None:
        indexes = sorted(self.last.values())
        cutoff = indexes[len(indexes) // 2]
        self.floor = max(self.floor, cutoff)
        self.last = {k: i for k, i in self.last.items() if i > cutoff}

    # -- snapshots (raft's application snapshot carries it) -----------------------------
    def state(self) -> list[Any]:
        return [self.floor, [[k, i] for k, i in self.last.items()]]

    @classmethod
    def from_state(cls, state: list[Any]) -> "ChangeIndex":
        floor, rows = state
        index = cls(floor)
        index.last = {k: i for k, i in rows}
        return index
