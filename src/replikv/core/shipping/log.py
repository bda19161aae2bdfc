"""The in-memory tail of the replicated log, with its epoch history and its
replication backlog.

Invariants (checked where they change):
- entries hold indexes ``base_index + 1 .. last_index`` contiguously; each
  entry is ``[epoch, cmds]``; entries at or below ``base_index`` live only in
  the snapshot.
- ``base_index <= snapshot_index <= last_index``: ``snapshot_index`` is the
  newest durable snapshot's. Entries ``base_index + 1 .. snapshot_index`` are
  the replication backlog: already in the snapshot, kept only so that a
  follower that lags behind it catches up from the log instead of a full
  resync (Redis's repl-backlog; ``ShippingNode.compact`` decides how much).
  Without a backlog ``base_index == snapshot_index``, as on every follower.
- ``offsets`` is a list of ``[last_index, stream_bytes]``, one per appended
  batch still held: the bytes of the replication stream up to and including
  that batch (Redis's master_repl_offset). ``stream_bytes`` measures the
  backlog to within one batch; ``base_offset`` is the offset at
  ``base_index``.
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
    __slots__ = ("base_index", "base_epoch", "snapshot_index", "entries", "epoch_starts", "offsets",
                 "base_offset")

    def __init__(self, base_index: int = 0, base_epoch: int = 0,
                 epoch_starts: list[list[int]] | None = None) -> None:
        self.base_index = base_index
        self.base_epoch = base_epoch
        self.snapshot_index = base_index
        self.entries: list[list[Any]] = []
        self.epoch_starts: list[list[int]] = [list(s) for s in (epoch_starts or [])]
        self.offsets: list[list[int]] = []
        self.base_offset = 0

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

    def append(self, entries: list[list[Any]], size_bytes: int | None = None) -> None:
        """Append entries (already numbered ``last_index + 1 ..``); ``size_bytes``:
        their encoded size (the frame or WAL record), estimated when not given."""
        if not entries:
            return
        if size_bytes is None:
            size_bytes = estimate_bytes(entries)
        offsets = self.offsets
        offsets.append([self.last_index + len(entries),
                        (offsets[-1][1] if offsets else self.base_offset) + size_bytes])
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
        """Drop entries after ``index`` (>= snapshot_index: the state cannot go back
        past its snapshot); returns what was dropped."""
        invariant(index >= self.snapshot_index, "cannot truncate into the snapshot")
        keep = index - self.base_index
        dropped = self.entries[keep:]
        del self.entries[keep:]
        while self.epoch_starts and self.epoch_starts[-1][1] > index:
            self.epoch_starts.pop()
        offsets = self.offsets
        if index == self.base_index:
            offsets.clear()
        else:
            pos = bisect.bisect_left(offsets, index, key=lambda o: o[0])
            if pos < len(offsets):  # the batch holding ``index`` keeps its size: within one batch
                offsets[pos] = [index, offsets[pos][1]]
                del offsets[pos + 1:]
        return dropped

    def offset_at(self, index: int) -> int:
        """Stream bytes up to ``index`` (base_index <= index <= last_index), rounded
        up to the end of its batch."""
        if index <= self.base_index or not self.offsets:
            return self.base_offset
        pos = bisect.bisect_left(self.offsets, index, key=lambda o: o[0])
        return self.offsets[min(pos, len(self.offsets) - 1)][1]

    def stream_bytes(self, after: int, upto: int) -> int:
        """Bytes of the entries ``after + 1 .. upto`` (to within one batch)."""
        return max(0, self.offset_at(upto) - self.offset_at(after))

    def count_within(self, first_index: int, max_count: int, max_bytes: int) -> int:
        """How many entries from ``first_index`` (> base_index) fit in ``max_bytes``:
        whole batches by their offsets, else entries of the first batch by their
        estimated size; at least one, at most ``max_count`` (a catch-up frame of
        2048 64 KiB values would be 128 MiB, packed again on every sync). The
        offsets count only from a batch's end: from inside a batch (a frame that
        took part of it, or the base of a log compacted inside one) they would
        take that batch's rest as free, so the entries' sizes count instead (a
        frame then held two 2 MB entries for a 2 MB budget)."""
        last = self.last_index
        if first_index > last:
            return 0
        offsets = self.offsets
        before = first_index - 1
        at = bisect.bisect_left(offsets, before, key=lambda o: o[0])
        if at < len(offsets) and offsets[at][0] == before:  # from a batch's end: whole batches
            limit = offsets[at][1] + max_bytes
            pos = bisect.bisect_right(offsets, limit, key=lambda o: o[1]) - 1
            if offsets[pos][0] >= first_index:
                return min(max_count, offsets[pos][0] - first_index + 1)
        count = total = 0
        for entry in self.slice(first_index, max_count):
            total += estimate_bytes([entry])
            if count and total > max_bytes:
                break
            count += 1
        return count

    @property
    def backlog_bytes(self) -> int:
        """Bytes of the backlog: the entries held that the snapshot already covers."""
        return self.stream_bytes(self.base_index, self.snapshot_index)

    def compact(self, index: int, backlog_base: int | None = None) -> None:
        """A snapshot at ``index`` is durable: forget the entries up to
        ``backlog_base`` (``index`` when not given; never below the current base);
        those after it up to ``index`` stay as the backlog."""
        invariant(index <= self.last_index, "compact beyond the end of the log")
        self.snapshot_index = max(self.snapshot_index, index)
        drop = index if backlog_base is None else min(backlog_base, index)
        if drop <= self.base_index:
            return
        self.base_offset = self.offset_at(drop)
        self.base_epoch = self.epoch_at(drop)
        del self.entries[: drop - self.base_index]
        self.base_index = drop
        pos = bisect.bisect_right(self.offsets, drop, key=lambda o: o[0])
        del self.offsets[:pos]

    def drop_backlog(self) -> None:
        """Forget the backlog (the log restarts at the snapshot)."""
        self.compact(self.snapshot_index)

    def reset(self, index: int, epoch: int, epoch_starts: list[list[int]]) -> None:
        """Replace everything by a snapshot at ``index`` (full resync)."""
        self.base_index = self.snapshot_index = index
        self.base_epoch = epoch
        self.entries = []
        self.epoch_starts = [list(s) for s in epoch_starts if s[1] <= index]
        self.offsets = []
        self.base_offset = 0


def estimate_bytes(entries: list[list[Any]]) -> int:
    """About the msgpack size of ``entries``: their arguments plus a little framing
    per argument and entry (for entries read back without their encoded size)."""
    total = 0
    for entry in entries:
        total += 8
        for cmd in entry[1]:
            total += 2
            for arg in cmd:
                total += len(arg) + 3
    return total
