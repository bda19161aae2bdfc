"""The in-memory tail of the replicated log, with its epoch history.

Invariants (checked where they change):
- entries hold indexes ``base_index + 1 .. last_index`` contiguously; each
  entry is ``[epoch, cmds]``; entries at or below ``base_index`` live only in
  the snapshot.
- ``epoch_starts`` is a list of ``[epoch, first_index]`` with strictly
  increasing epochs and non-decreasing first indexes: the entries of epoch
  ``e`` are those from its start up to the next start - 1. It covers the
  compacted prefix too, so ``epoch_at`` answers for any index ever written
  (Kafka's leader-epoch cache; Redis keeps the same knowledge as replid2 +
  second_repl_offset).
- Log matching: two logs holding an entry with the same index and epoch hold
  the same entries up to it, because one epoch has one leader, and a leader
  streams only to followers whose log matched its own (checked on SyncRequest
  and on every Append's prev_index/prev_epoch, as Raft §5.3).
"""

from __future__ import annotations

import bisect
from typing import Any

from replikv.core.invariant import invariant


class ShippingLog:
    __slots__ = ("base_index", "base_epoch", "entries", "epoch_starts")

    def __init__(self, base_index: int = 0, base_epoch: int = 0,
                 epoch_starts: list[list[int]] | None = None) -> None:
        self.base_index = base_index
        self.base_epoch = base_epoch
        self.entries: list[list[Any]] = []
        self.epoch_starts: list[list[int]] = [list(s) for s in (epoch_starts or [])]

    @property
    def last_index(self) -> int:
        return self.base_index + len(self.entries)

    @property
    def last_epoch(self) -> int:
        return self.entries[-1][0] if self.entries else self.base_epoch

    def epoch_at(self, index: int) -> int:
        """Epoch of the entry at ``index`` (0 for index 0 or an unknown prefix)."""
        if index > self.base_index:
            return int(self.entries[index - self.base_index - 1][0])
        if index == self.base_index:
            return self.base_epoch
        pos = bisect.bisect_right(self.epoch_starts, index, key=lambda s: s[1]) - 1
        return self.epoch_starts[pos][0] if pos >= 0 else 0

    def match_point(self, other_starts: list[list[int]], other_last: int) -> int:
        """Highest index where this log and another agree, from epoch histories.

        Both logs are step functions index -> epoch; they agree up to index i
        iff their entries at i have the same epoch (log matching). The
        highest such i is min(last indexes) or just before a step of either
        history, so only those candidates are tried, from the top.
        """
        top = min(self.last_index, other_last)

        def other_epoch_at(index: int) -> int:
            pos = bisect.bisect_right(other_starts, index, key=lambda s: s[1]) - 1
            return other_starts[pos][0] if pos >= 0 and index > 0 else 0

        candidates = {top}
        candidates.update(s[1] - 1 for s in self.epoch_starts if s[1] - 1 <= top)
        candidates.update(s[1] - 1 for s in other_starts if s[1] - 1 <= top)
        for index in sorted(candidates, reverse=True):
            if index <= 0 or self.epoch_at(index) == other_epoch_at(index):
                return max(index, 0)
        return 0

    def append(self, entries: list[list[Any]]) -> None:
        """Append entries (already numbered ``last_index + 1 ..``)."""
        index = self.last_index + 1
        for entry in entries:
            epoch = entry[0]
            if not self.epoch_starts or self.epoch_starts[-1][0] != epoch:
                invariant(not self.epoch_starts or self.epoch_starts[-1][0] < epoch,
                          f"entry epoch {epoch} older than the log's last epoch")
                self.epoch_starts.append([epoch, index])
            index += 1
        self.entries.extend(entries)

    def slice(self, first_index: int, max_count: int) -> list[list[Any]]:
        """Entries from ``first_index`` (must be > base_index), at most max_count."""
        invariant(first_index > self.base_index, "slice below the compacted base")
        start = first_index - self.base_index - 1
        return self.entries[start:start + max_count]

    def truncate_after(self, index: int) -> list[list[Any]]:
        """Drop entries after ``index`` (> = base_index); returns what was dropped."""
        invariant(index >= self.base_index, "cannot truncate into the snapshot")
        keep = index - self.base_index
        dropped = self.entries[keep:]
        del self.entries[keep:]
        while self.epoch_starts and self.epoch_starts[-1][1] > index:
            self.epoch_starts.pop()
        return dropped

    def compact(self, index: int) -> None:
        """Forget entries up to ``index`` (they are in a snapshot now)."""
        if index <= self.base_index:
            return
        invariant(index <= self.last_index, "compact beyond the end of the log")
        self.base_epoch = self.epoch_at(index)
        del self.entries[: index - self.base_index]
        self.base_index = index

    def reset(self, index: int, epoch: int, epoch_starts: list[list[int]]) -> None:
        """Replace everything by a snapshot at ``index`` (full resync)."""
        self.base_index = index
        self.base_epoch = epoch
        self.entries = []
        self.epoch_starts = [list(s) for s in epoch_starts if s[1] <= index]
