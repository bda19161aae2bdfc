"""The simulator's disk: an in-memory WAL in the real record format, with crashes.

``SimFile`` is one file's bytes: what is written is volatile until synced.
``crash(rng)`` keeps the synced bytes and, as a power cut may, a prefix of
the rest (the page cache had flushed some of it), sometimes followed by
zeros where that prefix ends a write (space the file was extended into):
the last write is torn at a point the seed picks.

``SimWal`` is one log segment in that file, written and read with the
real format and rules of storage/wal.py: ``encode_segment_header`` and
``encode_record`` to write, ``read_last_segment`` to recover (a torn tail
is cut, any other damage is a ``CorruptLogError``, which the simulator
reports as a failure). ``truncate_after`` and ``reset`` are atomic and
durable, as the real WAL's intent file makes them; a truncation first
syncs what was written, as the real one writes its buffer first.
Writes are numbered (``writes``); ``sync(upto)`` makes the first ``upto``
durable, for an fsync that started when that many had been made.

Invariant: the entries in the file are consecutive from the segment's first
index, and ``last_index`` is the last one written (synced or not).
"""

from __future__ import annotations

import random
from typing import Any

import msgpack

from replikv.core.invariant import invariant
from replikv.storage.wal import encode_record, encode_segment_header, read_last_segment, segment_name

__all__ = ["SimFile", "SimWal"]


class SimFile:
    __slots__ = ("durable", "pending")

    def __init__(self, data: bytes = b"") -> None:
        self.durable = bytearray(data)  # survives a crash
        self.pending = bytearray()  # written, not yet synced

    @property
    def dirty(self) -> bool:
        return bool(self.pending)

    def write(self, data: bytes) -> None:
        self.pending += data

    def sync(self, nbytes: int | None = None) -> None:
        """Make the first ``nbytes`` pending bytes (default: all) durable."""
        n = len(self.pending) if nbytes is None else nbytes
        self.durable += self.pending[:n]
        del self.pending[:n]

    def crash(self, rng: random.Random, boundaries: tuple[int, ...] = ()) -> int:
        """A power cut: the pending bytes are lost, but for a torn prefix; returns the bytes lost.

        Zeros may follow the prefix only where it ends at one of ``boundaries``
        (the end of a write): space the file had been extended into. ext4's
        default (data=ordered) never shows zeros in place of data written before
        the size grew, which the WAL's recovery rules rely on (a complete record
        with a bad checksum is damage, not a torn write)."""
        lost = len(self.pending)
        if lost and rng.random() < 0.5:
            keep = rng.randint(0, lost - 1)
            self.durable += self.pending[:keep]
            if (keep == 0 or keep in boundaries) and rng.random() < 0.3:
                self.durable += bytes(rng.randint(1, 64))
            lost -= keep
        self.pending.clear()
        return lost

    def contents(self) -> bytes:
        return bytes(self.durable + self.pending)


class SimWal:
    __slots__ = ("_marks", "durable_index", "file", "first_index", "last_index", "synced", "writes")

    def __init__(self, first_index: int = 1) -> None:
        self.file = SimFile(encode_segment_header(first_index))
        self.first_index = first_index
        self.last_index = first_index - 1
        self.durable_index = self.last_index  # the last entry a sync made durable
        self.writes = 0  # appends ever made
        self.synced = 0  # appends 1..synced are durable (or were lost in a crash)
        # unsynced appends: (write number, pending bytes after it, last index after it)
        self._marks: list[tuple[int, int, int]] = []

    @property
    def dirty(self) -> bool:
        return self.file.dirty

    def append(self, first_index: int, packed: bytes, count: int) -> None:
        invariant(first_index == self.last_index + 1, f"WAL append at {first_index} after {self.last_index}")
        self.file.write(encode_record(first_index, packed, count))
        self.last_index += count
        self.writes += 1
        self._marks.append((self.writes, len(self.file.pending), self.last_index))

    def append_entries(self, first_index: int, entries: list[Any]) -> bytes:
        packed: bytes = msgpack.packb(entries)
        self.append(first_index, packed, len(entries))
        return packed

    def sync(self, upto: int | None = None) -> None:
        """fsync: the first ``upto`` appends (default: all) become durable."""
        upto = self.writes if upto is None else upto
        done = [m for m in self._marks if m[0] <= upto]
        if not done:
            return
        _, nbytes, self.durable_index = done[-1]
        self.file.sync(nbytes)
        self._marks = [(w, size - nbytes, last) for w, size, last in self._marks if w > upto]
        self.synced = max(self.synced, upto)

    def crash(self, rng: random.Random) -> None:
        self.file.crash(rng, tuple(size for _, size, _ in self._marks))
        self._marks.clear()
        self.synced = self.writes

    def recover(self, after_index: int = 0) -> list[Any]:
        """Restart: read the durable bytes as storage/wal.py recovers a segment
        (a torn tail is cut off), return the entries after ``after_index``."""
        invariant(not self.file.dirty, "recover reads a crashed (or synced) file")
        batches, size = read_last_segment(bytes(self.file.durable), self.first_index,
                                          segment_name(self.first_index))
        del self.file.durable[size:]
        entries = [e for _, batch in batches for e in batch]
        self.last_index = self.durable_index = self.first_index + len(entries) - 1
        if self.last_index < after_index:  # the whole log is covered by the snapshot
            self.reset(after_index + 1)
            return []
        invariant(self.first_index <= after_index + 1, f"log starts at {self.first_index}, "
                                                       f"entries after {after_index} are needed")
        return entries[after_index + 1 - self.first_index:]

    def entries(self) -> list[Any]:
        """Every entry written (synced or not), in order."""
        batches, size = read_last_segment(self.file.contents(), self.first_index, segment_name(self.first_index))
        invariant(size == len(self.file.contents()), "the live log has no torn tail")
        return [e for _, batch in batches for e in batch]

    def truncate_after(self, index: int) -> None:
        """Durably drop every entry after ``index`` (atomic, as the real WAL's intent)."""
        if index >= self.last_index:
            return
        invariant(index >= self.first_index - 1, f"truncate after {index} below {self.first_index}")
        kept = self.entries()[: index + 1 - self.first_index]
        self.sync()
        data = encode_segment_header(self.first_index)
        if kept:
            data += encode_record(self.first_index, msgpack.packb(kept), len(kept))
        self.file = SimFile(data)
        self.last_index = self.durable_index = index

    def reset(self, next_index: int) -> None:
        """Durably replace the log with an empty one whose next entry is ``next_index``."""
        self.sync()
        self.file = SimFile(encode_segment_header(next_index))
        self.first_index = next_index
        self.last_index = self.durable_index = next_index - 1


class GroupCommitDriver:
    """The group commit of a simulator driver whose node syncs its WAL once per batch of effects,
    then lets out what waited for it (``_flush``): the multi-leader and leaderless drivers.

    A node on a slow disk (``set_slow_disk``) takes ``opts.slow_sync_us`` to sync: what the
    batches made meanwhile waits for that sync to complete (one sync covers them all), and a
    crash meanwhile (a new ``epoch``) voids it. The driver provides ``engine``, ``nodes`` (each
    with ``wal``, ``slow``, ``syncing``, ``up``, ``epoch``, ``id``), ``opts.slow_sync_us`` and
    ``_flush(node)``.
    """

    engine: Any
    nodes: dict[int, Any]
    opts: Any

    def _flush(self, n: Any) -> None:  # pragma: no cover - provided by the driver
        raise NotImplementedError

    def commit(self, n: Any) -> None:
        """After a batch of effects: sync now, or once the slow sync under way (or started) ends."""
        if n.syncing:
            return  # the slow sync under way carries out what waits, when it completes
        if n.slow and n.wal.dirty:
            n.syncing = True
            self.engine.after(self.opts.slow_sync_us, self._slow_synced, n.id, n.epoch)
            return
        self._flush(n)

    def _slow_synced(self, nid: int, epoch: int) -> None:
        n = self.nodes[nid]
        if not n.up or n.epoch != epoch:
            return
        n.syncing = False
        self._flush(n)

    def set_slow_disk(self, nid: int, slow: bool) -> None:
        n = self.nodes[nid]
        n.slow = slow
        if not slow and n.up and not n.syncing:
            self._flush(n)
