"""NodeLog: one write-ahead log for every Raft group a sharded node hosts.

Issue 13 asks for "persistence batched across groups: one fsync per batch, not
per group". With one WAL per group, a loop iteration that persisted in k groups
wrote k files and fsynced k times; a node failure that moved hundreds of
elections onto a node saved hundreds of meta files, each written atomically
with its own fsyncs. The node log takes every group's records in one
``WriteAheadLog`` (storage/wal.py: segments, checksummed records, group commit,
fsync policy, torn-tail repair, refusal of any other damage), so an iteration
costs one write and at most one fsync, whatever the number of groups (CockroachDB
and TiKV share one engine's log among a store's ranges alike).

Layout: ``<data_dir>/wal/`` is that WAL. Its entries, at consecutive log
sequence numbers (LSNs), are *items*, each naming its group ``g``::

    [g, 0, first, packed]       ENTRIES: the group's Raft entries from index ``first``
                                (``packed`` = msgpack of their wire forms, core/raft/codec.py);
                                one with ``first`` <= the group's last index replaces the
                                suffix from ``first`` (Raft §5.3, a follower's conflicting
                                suffix is rewritten)
    [g, 1, term, vote, commit]  HARD: the group's hard state (Raft Figure 2, "persistent
                                state on all servers"); the last one counts
    [g, 2, next]                RESET: the group's log is empty and resumes at ``next`` (a
                                snapshot installed over a log it does not extend)
    [g, 3]                      DROP: forget every earlier item of the group (its replica left
                                this node, or a new replica reuses the number)
    [g, 4, index]               TRUNCATE: the group's entries after ``index`` are gone

Each group keeps its snapshots in its own directory (``groups/g<k>/snapshots``);
entries at or below the group's snapshot index are skipped on recovery.

Rules:
- One commit per loop iteration for every group: ``commit`` appends the items
  added since the last one as one WAL record, then commits the WAL (one
  ``write``, an fsync by the policy). An item that changes a group's term or
  vote, or resets its log, forces the fsync whatever the policy: a node must
  not forget a vote (Raft §5.2, at most one vote per term) and the per-group
  meta file such items replace was always fsynced.
- Reclaim (``reclaim``): the log deletes its oldest segments (whole, oldest
  first: WriteAheadLog.drop_before) up to the oldest LSN a hosted group still
  needs, once what replaces their items is fsynced. A group needs its first ENTRIES
  item holding an entry above its compaction point (``GroupLog.drop_before``,
  after a snapshot) and its last HARD item. The first LSN kept is saved
  (``save_start``, the node's meta file) before any segment goes, so a
  recovery knows where the log must begin and refuses a log that lost a
  segment at its head.
- A quiet group pins old segments (it rarely snapshots): ``pinning`` names the
  groups that hold the log to more than a given number of segments, and
  ``GroupLog.carry_forward`` logs their hard state again and copies their live
  entries forward as one ENTRIES item (on recovery it replaces the same
  suffix with the same entries); once that is fsynced the old segments go.
- Recovery (``recover``) reads the log once; ``open_group`` hands each group its
  hard state and its entries above its snapshot. Items of groups never opened
  (their replica was dropped before the DROP item was logged) pin nothing and
  go with their segments.

Not thread-safe: the node's event loop owns it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from replikv.storage.errors import CorruptLogError, StorageError
from replikv.storage.wal import WriteAheadLog

__all__ = ["DROP", "ENTRIES", "HARD", "RESET", "TRUNCATE", "GroupLog", "NodeLog"]

log = logging.getLogger(__name__)

ENTRIES, HARD, RESET, DROP, TRUNCATE = 0, 1, 2, 3, 4
_ARITY = {ENTRIES: 4, HARD: 5, RESET: 3, DROP: 2, TRUNCATE: 3}
_NEVER = 1 << 62


class _Recovered:
    """A group's items as recovery replays them: entries from ``start``, hard state, and the
    ENTRIES items (``[lsn, first, last]``) whose entries are still in the log."""

    __slots__ = ("entries", "hard", "hard_lsn", "known", "records", "start")

    def __init__(self) -> None:
        self.start = 1  # the index of entries[0] (the next index when there are none)
        self.known = False  # an ENTRIES or RESET item has said where the log is
        self.entries: list[Any] = []
        self.hard: dict[str, Any] = {}
        self.hard_lsn: int | None = None
        self.records: list[list[int]] = []

    @property
    def last(self) -> int:
        return self.start + len(self.entries) - 1

    def cut(self, index: int) -> None:
        """Keep the entries <= ``index``."""
        if index < self.start:
            self.start, self.entries, self.records = index + 1, [], []
            return
        del self.entries[index - self.start + 1:]
        self.records = [r for r in self.records if r[1] <= index]
        if self.records and self.records[-1][2] > index:
            self.records[-1][2] = index


class NodeLog:
    """The node-level log; see the module docstring for the rules."""

    def __init__(self, directory: str | Path, *, fsync: str, segment_bytes: int, start: int = 1,
                 save_start: Callable[[int], None] | None = None) -> None:
        """``start``: the first LSN the log must hold (as ``save_start`` last saved it)."""
        self.wal = WriteAheadLog(directory, fsync=fsync, segment_bytes=segment_bytes)
        self.start = start
        self.save_start = save_start
        self.groups: dict[int, GroupLog] = {}
        self.pending: list[Any] = []  # items added since the last commit
        self._force = False
        self._recovered: dict[int, _Recovered] = {}

    # -- recovery --------------------------------------------------------------------------------
    def recover(self) -> None:
        for first, items in self.wal.recover(after_index=self.start - 1):
            for i, item in enumerate(items):
                self._replay(first + i, item)

    def _replay(self, lsn: int, item: Any) -> None:
        if (type(item) is not list or len(item) < 2 or type(item[0]) is not int or type(item[1]) is not int
                or _ARITY.get(item[1]) != len(item)):
            raise CorruptLogError(str(self.wal.directory), -1,
                                  f"entry {lsn} is not a node-log item ({str(item)[:60]}): not a sharded "
                                  "node's log (an unsharded node's data directory?)")
        g, kind = item[0], item[1]
        if kind == DROP:
            self._recovered[g] = _Recovered()
            return
        rec = self._recovered.get(g)
        if rec is None:
            rec = self._recovered[g] = _Recovered()
        if kind == ENTRIES:
            first = item[2]
            entries = msgpack.unpackb(item[3])
            if not rec.known:
                rec.start, rec.known = first, True
            elif first > rec.last + 1:
                raise CorruptLogError(str(self.wal.directory), -1,
                                      f"entry {lsn}: group {g}'s entries jump from index {rec.last} to {first}")
            elif first <= rec.last:
                rec.cut(first - 1)
            rec.entries.extend(entries)
            rec.records.append([lsn, first, first + len(entries) - 1])
        elif kind == HARD:
            rec.hard = {"term": item[2], "vote": item[3], "commit": item[4]}
            rec.hard_lsn = lsn
        elif kind == RESET:
            rec.start, rec.known, rec.entries, rec.records = item[2], True, [], []
        elif rec.known:  # TRUNCATE
            rec.cut(item[2])

    def open_group(self, g: int, snapshot_index: int, fresh: bool) -> tuple[GroupLog, dict[str, Any], list[Any]]:
        """Group ``g``'s log, hard state and wire entries above ``snapshot_index``. ``fresh``: the
        group's directory did not exist, so what the log holds of ``g`` belongs to an older
        replica of that number: it is dropped (a DROP item)."""
        rec = self._recovered.pop(g, None)
        if rec is not None and fresh:
            self.add([g, DROP])
            rec = None
        if rec is None:
            rec = _Recovered()
        base = snapshot_index
        if rec.known and rec.last < base:  # the snapshot is past the log: a reset, as WAL.recover
            self.add([g, RESET, base + 1], force=True)
            rec.start, rec.entries, rec.records = base + 1, [], []
        elif not rec.known:
            rec.start = base + 1
        entries = rec.entries[base - rec.start + 1:] if rec.start <= base else rec.entries
        first = max(rec.start, base + 1)
        records = [r for r in rec.records if r[2] > base]
        glog = GroupLog(self, g, first, first + len(entries) - 1, rec.hard, rec.hard_lsn, records)
        self.groups[g] = glog
        return glog, dict(rec.hard), entries

    def adopt_legacy(self, g: int, directory: Path, segment_bytes: int) -> None:
        """Group ``g`` as a replikv before the node log wrote it: a WAL and a meta file of its own
        in ``directory``. Its hard state and entries are logged here (after a DROP, so a crash
        halfway through is undone by doing it again); the caller commits, fsyncs, and only then
        deletes the old WAL, then the old meta file (``legacy_files``)."""
        from replikv.storage.recovery import open_storage  # the old layout's reader, used once

        opened = open_storage(directory, directory / "snapshots", fsync="no", segment_bytes=segment_bytes,
                              mapped_snapshot=True)
        base = opened.snapshot.index if opened.snapshot is not None else 0
        meta = opened.meta
        items: list[list[Any]] = [[g, DROP]]
        if meta:
            items.append([g, HARD, int(meta.get("term", 0)), meta.get("vote"), int(meta.get("commit", 0))])
        items.append([g, RESET, base + 1])
        items.extend([g, ENTRIES, first, msgpack.packb(batch)] for first, batch in opened.records)
        opened.wal.close()
        for item in items:
            self._replay(self.add(item, force=True), item)

    def drop_group(self, g: int) -> None:
        """Group ``g``'s replica leaves this node: its items are forgotten (DROP, forced)."""
        self.groups.pop(g, None)
        self._recovered.pop(g, None)
        self.add([g, DROP], force=True)

    # -- writing ---------------------------------------------------------------------------------
    def add(self, item: list[Any], force: bool = False) -> int:
        """Buffer one item until ``commit``; its LSN."""
        self.pending.append(item)
        self._force = self._force or force
        return self.wal.last_index + len(self.pending)

    def commit(self) -> None:
        """The items added since the last commit as one record, written with one ``write``; one
        fsync by the policy, or whatever the policy when a forced item is among them."""
        if self.pending:
            items, self.pending = self.pending, []
            self.wal.append_entries(self.wal.last_index + 1, items)
        self.wal.commit()
        if self._force:
            self.wal.fsync_now()
            self._force = False

    # -- reclaim ---------------------------------------------------------------------------------
    def reclaim(self) -> int:
        """Delete the segments no hosted group needs (module docstring); the segments deleted."""
        needed = min((gl.needed() for gl in self.groups.values()), default=_NEVER)
        upto = min(needed - 1, self.wal.written_index)
        starts = self.wal.segment_starts
        kept = [s for s in starts if s - 1 <= upto]  # segments whose predecessors all lie <= upto
        if len(kept) < 2:
            return 0
        new_start = kept[-1]
        if new_start - 1 > self.wal.durable_index:
            self.wal.fsync_now()  # what replaces the old items (carried forward, say) is on disk first
        if self.save_start is not None:
            self.save_start(new_start)  # durable before a segment goes: a recovery starts there
        self.start = new_start
        self.wal.drop_before(new_start - 1)
        return len(kept) - 1

    def pinning(self, max_segments: int) -> tuple[int, list[int]]:
        """When the log holds more than ``max_segments`` segments: the LSN that would leave that
        many, and the groups that need items below it."""
        starts = self.wal.segment_starts
        if len(starts) <= max_segments:
            return 0, []
        boundary = starts[len(starts) - max_segments]
        return boundary, [g for g, gl in self.groups.items() if gl.needed() < boundary]

    # -- what BaseRunner's fsync loop, disk guard and INFO ask of "the WAL" ----------------------
    def fsync_now(self) -> None:
        self.wal.fsync_now()

    def sync_in_background(self) -> Any:
        return self.wal.sync_in_background()

    def collect_background_sync(self) -> None:
        self.wal.collect_background_sync()

    @property
    def delayed_fsyncs(self) -> int:
        return self.wal.delayed_fsyncs

    def retry(self) -> bool:
        return self.wal.retry()

    def close(self) -> None:
        """Write what is pending, fsync, close. A disk still refusing writes (blocked) leaves the
        records buffered in the WAL, whose own close tries them once more and says what it
        could not write."""
        if self.pending and self.wal.failed is None:
            try:
                self.commit()
            except (OSError, StorageError) as exc:
                log.error("node log %s: closing while the disk refuses writes (%s)", self.wal.directory, exc)
        self.wal.close()

    @property
    def failed(self) -> BaseException | None:
        return self.wal.failed

    @property
    def size_bytes(self) -> int:
        return self.wal.size_bytes

    @property
    def fsyncs(self) -> int:
        return self.wal.fsyncs

    @property
    def records(self) -> int:
        return self.wal.records

    @property
    def first_index(self) -> int:
        return self.wal.first_index

    @property
    def fsync_buckets(self) -> list[int]:
        return self.wal.fsync_buckets

    @property
    def fsync_seconds(self) -> float:
        return self.wal.fsync_seconds


class GroupLog:
    """One group's share of the node log, with the calls a ``RaftGroup`` makes of its WAL
    (runtime/raft_group.py ``persist``) and of its meta store (``save``: the hard state).
    Indexes here are the group's Raft indexes; ``records`` holds ``[lsn, first, last]`` of
    the ENTRIES items still holding live entries (above ``first_index - 1``), oldest first."""

    def __init__(self, node: NodeLog, g: int, first: int, last: int, hard: dict[str, Any],
                 hard_lsn: int | None, records: list[list[int]]) -> None:
        self.node, self.g = node, g
        self.first_index, self.last_index = first, last
        self.hard = dict(hard)
        self.hard_lsn = hard_lsn
        self.records: deque[list[int]] = deque(records)
        self.size_bytes = 0  # bytes of entries logged since open (RaftGroup.snapshot_due's measure)
        self._durable = last  # what recovery read is on disk
        self._unsynced: deque[list[int]] = deque()  # [lsn, last index] of ENTRIES not known fsynced
        self.path = f"{node.wal.directory} (group {g})"

    @property
    def durable_index(self) -> int:
        """The last of the group's entries known fsynced (with all before it)."""
        done, pending = self.node.wal.durable_index, self._unsynced
        while pending and pending[0][0] <= done:
            self._durable = max(self._durable, pending.popleft()[1])
        return self._durable

    def append_entries(self, first: int, entries: list[Any]) -> bytes:
        if first > self.last_index + 1 or not entries:
            raise ValueError(f"group {self.g}: append at {first}, last index {self.last_index}")
        if first <= self.last_index:
            self._cut(first - 1)  # the ENTRIES item itself says so on recovery
        packed: bytes = msgpack.packb(entries)
        lsn = self.node.add([self.g, ENTRIES, first, packed])
        last = first + len(entries) - 1
        self.records.append([lsn, first, last])
        self._unsynced.append([lsn, last])
        self.last_index = last
        self.size_bytes += len(packed)
        return packed

    def truncate_after(self, index: int) -> None:
        if index < self.last_index:
            self._cut(index)
            self.node.add([self.g, TRUNCATE, index])

    def _cut(self, index: int) -> None:
        self.last_index = index
        self._durable = min(self._durable, index)
        records = self.records
        while records and records[-1][1] > index:
            records.pop()
        if records and records[-1][2] > index:
            records[-1][2] = index
        for u in self._unsynced:
            u[1] = min(u[1], index)

    def reset(self, next_index: int) -> None:
        """The log is empty and resumes at ``next_index`` (a snapshot at ``next_index - 1`` is
        already on disk)."""
        self.node.add([self.g, RESET, next_index], force=True)
        self.first_index, self.last_index = next_index, next_index - 1
        self.records.clear()
        self._unsynced.clear()
        self._durable = next_index - 1

    def drop_before(self, index: int) -> None:
        """Compaction after a durable snapshot covering ``index``: those entries are not needed."""
        if index > self.last_index:
            raise ValueError(f"group {self.g}: drop_before({index}) beyond last index {self.last_index}")
        if index < self.first_index:
            return
        self.first_index = index + 1
        records = self.records
        while records and records[0][2] <= index:
            records.popleft()

    def save(self, state: dict[str, Any]) -> None:
        """The hard state (a MetaStore's call): forced to disk at the next commit when the term
        or the vote changed (module docstring)."""
        force = (state["term"], state["vote"]) != (self.hard.get("term"), self.hard.get("vote"))
        self.hard_lsn = self.node.add([self.g, HARD, state["term"], state["vote"], state["commit"]], force)
        self.hard = dict(state)

    def needed(self) -> int:
        """The oldest LSN holding something of this group a recovery needs."""
        first = self.records[0][0] if self.records else _NEVER
        return min(first, self.hard_lsn if self.hard_lsn is not None else _NEVER)

    def carry_forward(self, boundary: int, live: Callable[[int, int], list[Any]]) -> None:
        """What this group needs below LSN ``boundary`` logged again above it: the hard state,
        and the live entries (``live(first, last)``: their wire forms, from the core's log)."""
        if self.hard_lsn is not None and self.hard_lsn < boundary:
            self.hard_lsn = self.node.add([self.g, HARD, self.hard["term"], self.hard["vote"],
                                           self.hard["commit"]])
        if self.records and self.records[0][0] < boundary:
            first, last = self.first_index, self.last_index
            lsn = self.node.add([self.g, ENTRIES, first, msgpack.packb(live(first, last))])
            self.records = deque([[lsn, first, last]])

    def close(self) -> None:
        """Nothing of its own: the node log is closed by its owner."""
