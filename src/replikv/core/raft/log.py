"""The in-memory Raft log: a snapshot base plus the entries after it.

Rules implemented here:
- Log Matching (Raft §5.3): `append_after` (AppendEntries receiver rules 2-4)
  keeps every entry that agrees with the leader, truncates from the first
  conflicting index, and appends the rest. A committed entry is never
  truncated (an `invariant`).
- Up-to-date comparison for votes (Raft §5.4.1): `is_up_to_date`.
- Conflict hint for fast backtracking (Raft §5.3, last paragraph): `conflict_hint`.
- Compaction and snapshot install (Raft §7, Figure 13 rules 6-7): `compact`,
  `restore`.
- Configuration in force = the last config entry in the log, committed or
  not, else the snapshot's (thesis §4.1); `config_history` tracks where each
  config entry is so a truncation reverts to the previous configuration.

Invariants (checked by `check()`), written beside the fields they govern:
  snapshot.index <= applied <= commit <= last_index
  entries[i].index == snapshot.index + 1 + i, terms never decrease.
  _ends[i] == _base_bytes + sum of entries[0..i].size_bytes() (for `bytes_after`).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from replikv.core.invariant import invariant, violated
from replikv.core.raft.errors import Compacted
from replikv.core.raft.messages import Config, Entry, EntryKind, Snapshot

__all__ = ["RaftLog"]


class RaftLog:
    __slots__ = ("_base_bytes", "_configs", "_ends", "applied", "commit", "entries", "snapshot")

    def __init__(self, snapshot: Snapshot | None = None, entries: Iterable[Entry] = ()) -> None:
        self.snapshot: Snapshot = snapshot or Snapshot()  # base: everything <= its index
        self.entries: list[Entry] = []  # entries[i].index == snapshot.index + 1 + i
        self.commit: int = self.snapshot.index  # applied <= commit <= last_index
        self.applied: int = self.snapshot.index  # snapshot.index <= applied <= commit
        self._configs: list[tuple[int, Config]] = []  # config entries, by index
        # running byte totals (Entry.size_bytes), one 8-byte slot per entry: _ends[i] is
        # _base_bytes plus the sizes of entries[0..i]; so bytes_after is O(1)
        self._ends = array("q")
        self._base_bytes = 0
        for e in entries:
            if e.index <= self.snapshot.index:
                continue
            self._push(e)  # a gap in the stored log breaks _push's invariant

    # -- reading -----------------------------------------------------------
    @property
    def first_index(self) -> int:
        return self.snapshot.index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot.index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot.term

    def term(self, index: int) -> int | None:
        """Term of the entry at `index`; 0 at index 0; None past the end.
        Raises Compacted for an index strictly inside the snapshot."""
        base = self.snapshot.index
        if index == base:
            return self.snapshot.term
        if index < base:
            raise Compacted(index, base + 1)
        if index > base + len(self.entries):  # past last_index
            return None
        return self.entries[index - base - 1].term

    def entry(self, index: int) -> Entry:
        invariant(self.first_index <= index <= self.last_index, f"no entry {index} in log")
        return self.entries[index - self.snapshot.index - 1]

    def matches(self, index: int, term: int) -> bool:
        """Does the log hold an entry at `index` with `term` (Figure 2 AE rule 2)?"""
        if index < self.snapshot.index:
            return False  # unknowable; the caller treats commit-covered prefixes first
        return self.term(index) == term

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries with lo <= index < hi, cut after `max_bytes` (always at least one)."""
        if lo >= hi:
            return []
        base = self.snapshot.index + 1  # first_index
        if lo < base:
            raise Compacted(lo, base)
        out = self.entries[lo - base : hi - base]
        if max_bytes is None or not out or self.size_between(lo, lo + len(out)) <= max_bytes:
            return out
        size = 0
        for i, e in enumerate(out):
            size += e.size_bytes()
            if size > max_bytes and i > 0:
                return out[:i]
        return out

    def size_between(self, lo: int, hi: int) -> int:
        """``entries_size`` of the entries with lo <= index < hi, all held by the log
        (first_index <= lo < hi <= last_index + 1), from the running totals: O(1)."""
        ends = self._ends
        i = lo - self.snapshot.index - 1
        return ends[hi - self.snapshot.index - 2] - (ends[i - 1] if i > 0 else self._base_bytes)

    def bytes_after(self, index: int) -> int:
        """Bytes (``Entry.size_bytes``) of the entries after ``index`` this log holds;
        those compacted into the snapshot are not counted. O(1)."""
        ends = self._ends
        held = index - self.snapshot.index  # entries at or below index that the log holds
        if not ends or held >= len(ends):
            return 0
        return ends[-1] - (ends[held - 1] if held > 0 else self._base_bytes)

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: the candidate's log is at least as up-to-date as ours."""
        return last_term > self.last_term or (
            last_term == self.last_term and last_index >= self.last_index
        )

    def conflict_hint(self, reject_index: int) -> tuple[int, int]:
        """(term at reject_index, first index of that term here), or (0, last+1)
        when reject_index is past our end (Raft §5.3 fast backtracking)."""
        if reject_index > self.last_index:
            return 0, self.last_index + 1
        term = self.term(reject_index)
        invariant(term is not None, "reject index inside the log has a term")
        first = reject_index
        while first - 1 >= self.first_index and self.term(first - 1) == term:
            first -= 1
        return int(term), first  # type: ignore[arg-type]

    def last_index_of_term(self, term: int, at_most: int) -> int | None:
        """The last index <= at_most whose entry has `term`, or None (leader side
        of Raft §5.3 fast backtracking)."""
        i = min(at_most, self.last_index)
        while i >= self.first_index:
            t = self.entries[i - self.snapshot.index - 1].term
            if t == term:
                return i
            if t < term:
                return None
            i -= 1
        return None

    def config(self) -> Config:
        """The configuration in force: the last config entry, committed or not
        (thesis §4.1), else the snapshot's."""
        return self._configs[-1][1] if self._configs else self.snapshot.config

    def config_at(self, index: int) -> Config:
        """The configuration in force at `index` (what a snapshot at index records)."""
        best = self.snapshot.config
        for i, c in self._configs:
            if i > index:
                break
            best = c
        return best

    def last_config_index(self) -> int:
        return self._configs[-1][0] if self._configs else self.snapshot.index

    # -- writing -----------------------------------------------------------
    def _push(self, e: Entry) -> None:
        """Append one entry. Invariants: it is at last_index + 1, its term is
        not below the last term, and it carries a config iff it is CONFIG."""
        entries = self.entries
        last = self.snapshot.index + len(entries)
        last_term = entries[-1].term if entries else self.snapshot.term
        if (
            e.index != last + 1
            or e.term < last_term
            or (e.kind is EntryKind.CONFIG) != (e.config is not None)
        ):
            violated(
                f"bad append of entry {e.index} (term {e.term}, {e.kind.value}) "
                f"after {last} (term {last_term})"
            )
        entries.append(e)
        ends = self._ends
        ends.append((ends[-1] if ends else self._base_bytes) + e.size_bytes())
        if e.config is not None:
            self._configs.append((e.index, e.config))

    def append(self, new: list[Entry]) -> None:
        """Leader append of new entries at last_index + 1 (the invariants of ``_push``)."""
        for e in new:
            self._push(e)

    def truncate_from(self, index: int) -> None:
        """Drop entries >= index. Invariant: never a committed one (Raft §5.4)."""
        invariant(index > self.commit, f"truncating committed entry {index} (commit {self.commit})")
        del self.entries[index - self.snapshot.index - 1 :]
        del self._ends[index - self.snapshot.index - 1 :]
        while self._configs and self._configs[-1][0] >= index:
            self._configs.pop()

    def append_after(self, prev_index: int, entries: Iterable[Entry]) -> int | None:
        """Figure 2 AppendEntries receiver rules 3 and 4, given rule 2 held at
        prev_index: skip entries we already hold, truncate at the first
        conflict, append the rest. Returns the first index written, or None."""
        first_written: int | None = None
        for e in entries:
            if e.index <= self.snapshot.index:
                continue
            if first_written is None and e.index <= self.last_index:
                if self.term(e.index) == e.term:
                    continue  # rule 4: already in the log
                self.truncate_from(e.index)  # rule 3: conflict
            if first_written is None:
                first_written = e.index
            self._push(e)
        return first_written

    def commit_to(self, index: int) -> bool:
        """Advance commit (never backwards). Invariant: commit <= last_index."""
        if index <= self.commit:
            return False
        if index > self.snapshot.index + len(self.entries):
            violated(f"commit {index} past last index {self.last_index}")
        self.commit = index
        return True

    def compact(self, snapshot: Snapshot) -> None:
        """Application snapshot at an applied index: drop the prefix (Raft §7)."""
        invariant(snapshot.index <= self.applied, "snapshot of an index not yet applied")
        invariant(snapshot.index >= self.snapshot.index, "snapshot older than the current one")
        self._drop_prefix(snapshot.index - self.snapshot.index)
        self._configs = [(i, c) for i, c in self._configs if i > snapshot.index]
        self.snapshot = snapshot

    def restore(self, snapshot: Snapshot) -> bool:
        """Install a leader's snapshot (Figure 13 rules 6-7). Returns True when
        the whole log was discarded, False when a matching suffix was kept."""
        invariant(snapshot.index > self.commit, "restoring a snapshot not past commit")
        keep = (
            snapshot.index <= self.last_index
            and snapshot.index >= self.snapshot.index
            and self.term(snapshot.index) == snapshot.term
        )
        if keep:
            self._drop_prefix(snapshot.index - self.snapshot.index)
            self._configs = [(i, c) for i, c in self._configs if i > snapshot.index]
        else:
            self.entries = []
            self._ends = array("q")
            self._base_bytes = 0
            self._configs = []
        self.snapshot = snapshot
        self.commit = snapshot.index
        self.applied = snapshot.index
        return not keep

    def _drop_prefix(self, count: int) -> None:
        """Drop the first ``count`` entries (compaction, or an install that keeps a suffix)."""
        if count > 0:
            del self.entries[:count]
            if count <= len(self._ends):
                self._base_bytes = self._ends[count - 1]
            del self._ends[:count]

    def check(self) -> None:
        """Verify the structural invariants (used by tests and the simulator)."""
        invariant(
            self.snapshot.index <= self.applied <= self.commit <= self.last_index,
            lambda: (
                f"snap {self.snapshot.index} applied {self.applied} commit {self.commit} "
                f"last {self.last_index}"
            ),
        )
        prev = self.snapshot.term
        for i, e in enumerate(self.entries):
            invariant(e.index == self.snapshot.index + 1 + i, "log indices are contiguous")
            invariant(e.term >= prev, "log terms never decrease")
            prev = e.term
        invariant(len(self._ends) == len(self.entries), "one running byte total per entry")
        total = self._base_bytes
        for e, end in zip(self.entries, self._ends, strict=True):
            total += e.size_bytes()
            invariant(end == total, "running byte totals match the entries")
