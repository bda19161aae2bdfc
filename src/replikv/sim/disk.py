"""A simulated disk for Raft's stable storage: writes are volatile until synced.

The driver hands every `Persist` effect to `write()`; `sync()` makes all
writes so far durable (fsync, in order), `sync(upto)` the first `upto` writes
ever made (an fsync that started when that many had been written, while
later writes went on); `crash()` throws away the writes not yet synced, as a
power loss loses the page cache. `load()` is what the node
finds at restart (a `DurableState`). Applying a Persist follows its
documented semantics (core/raft/effects.py): snapshot first (dropping the
covered prefix, or the whole log with discard_log), then entries replace the
stored suffix from their first index, then the hard state.

Invariant: stored entries are contiguous after the stored snapshot's index.
"""

from __future__ import annotations

from replikv.core.invariant import invariant
from replikv.core.raft.effects import Persist
from replikv.core.raft.messages import Entry, HardState, Snapshot
from replikv.core.raft.node import DurableState

__all__ = ["SimDisk"]


class SimDisk:
    __slots__ = ("_unsynced", "entries", "hard_state", "snapshot", "synced", "syncs", "writes")

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []  # durable, contiguous after snapshot.index
        self._unsynced: list[Persist] = []
        self.writes = 0  # writes ever made (numbered 1..writes)
        self.synced = 0  # writes 1..synced are durable or lost; _unsynced holds the rest
        self.syncs = 0

    @property
    def dirty(self) -> bool:
        return bool(self._unsynced)

    def write(self, p: Persist) -> None:
        self._unsynced.append(p)
        self.writes += 1

    def sync(self, upto: int | None = None) -> None:
        """Make writes numbered <= `upto` (default: all) durable, in order."""
        upto = self.writes if upto is None else upto
        count = max(0, upto - self.synced)
        for p in self._unsynced[:count]:
            self._apply(p)
        if count:
            self.syncs += 1
            del self._unsynced[:count]
            self.synced = upto

    def crash(self) -> int:
        """Lose unsynced writes; returns how many were lost."""
        lost = len(self._unsynced)
        self._unsynced.clear()
        self.synced = self.writes
        return lost

    def load(self) -> DurableState:
        return DurableState(
            hard_state=self.hard_state, snapshot=self.snapshot, entries=tuple(self.entries)
        )

    def _apply(self, p: Persist) -> None:
        if p.snapshot is not None:
            s = p.snapshot
            if p.discard_log:
                self.entries = []
            else:
                self.entries = [e for e in self.entries if e.index > s.index]
            if self.entries and self.entries[0].index != s.index + 1:
                self.entries = []
            self.snapshot = s
        if p.entries:
            first = p.entries[0].index
            self.entries = [e for e in self.entries if e.index < first]
            base = self.snapshot.index if self.snapshot else 0
            expected = (self.entries[-1].index if self.entries else base) + 1
            invariant(first <= expected, f"disk write at {first} leaves a gap after {expected - 1}")
            self.entries.extend(p.entries)
        if p.hard_state is not None:
            self.hard_state = p.hard_state
