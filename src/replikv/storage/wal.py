"""Write-ahead log: segment files of checksummed records, group commit, fsync policy.

The log is a sequence of entries with consecutive indexes starting at 1. Each
entry is any msgpack-able object; the WAL never looks inside one, except to
split a batch on truncation. Entries arrive in batches and one batch is one
on-disk record.

Files in the WAL directory:

- ``wal-<first_index:020d>.log``: a segment; a 24-byte segment header,
  then records holding consecutive entries starting at ``first_index``,
  then (once the log has moved on to the next segment) a seal.
- ``wal.intent``: present only while a ``truncate_after`` or ``reset`` is in
  progress (see "Crash safety" below).

Files and directories are created owner-only (0600 / 0700): they hold
client data.

Segment header (format version 1), little-endian::

    offset  size  field
    0       4     magic  b"RKWS"
    4       4     format version (1)
    8       8     first_index (equals the number in the file name)
    16      4     reserved, 0
    20      4     crc32c of bytes 0..20

A segment is created whole: header written to ``<name>.tmp``, fsynced,
renamed into place, directory fsynced; so a segment file without a valid
header is damage (an emptied file, another program's file, a newer
replikv's format), never a crash artefact. Segments of format version 0
(replikv before the header: records from byte 0) are still read; new
segments are always version 1.

Seal: when the log moves on to a new segment, the previous one gets a
24-byte record header with magic b"RKWN", length 0, count 0 and
``first_index`` = the new segment's first index, checksummed like a record,
written only after the new segment exists durably. A sealed segment with no
successor means the newest segment was lost: a refusal, not a shorter log.

Record format, all integers little-endian, a 24-byte header then the payload::

    offset  size  field
    0       4     magic  0x4C574B52 (b"RKWL" on disk)
    4       4     crc32c (Castagnoli) of bytes 8..24, continued over the payload
    8       4     length of the payload in bytes
    12      4     count  of entries in the payload (>= 1)
    16      8     first_index of the first entry
    24      ...   payload = msgpack.packb(list_of_entries)

Invariants:
- Indexes are consecutive across records and segments: a record's
  ``first_index`` is the previous record's ``first_index + count``, and a
  segment's name is the ``first_index`` of its first record (a segment may be
  empty: it then says where the next entry goes).
- ``first_index <= last_index + 1``; the log is empty when they are equal.
- Only the last segment can have a torn tail: before a new segment is
  created the previous one is fsynced, whatever the fsync policy.
- ``append`` only buffers; ``commit`` writes every buffered record with one
  ``write`` call, then fsyncs according to the policy (``always``: every
  commit; ``everysec``: never itself, the runtime's 1-second timer calls
  ``sync_in_background``; ``no``: never, the kernel decides).
- ``everysec`` fsyncs off the owner's thread (as Redis's ``appendfsync
  everysec`` hands its fsync to a background thread): ``sync_in_background``
  fsyncs a duplicate of the segment's descriptor on the WAL's sync thread,
  at most one at a time, and ``collect_background_sync`` (owner thread, once
  it is done) credits it: ``durable_index`` becomes the index written when
  it started, unless a synchronous fsync, a truncation or a reset came
  between (``_sync_epoch``), which made at least that much durable already.
  Under a disk busy with writeback one fsync took over a second, and on the
  event loop that stalled heartbeats past the election timeout (issue 15).

Recovery rules (``recover``):
- Only a genuinely torn tail is repaired: a record at the end of the last
  segment that is incomplete (its header or payload runs past the end of
  the file), or trailing zero bytes. A crash cut that write short, so it
  was never acknowledged. The file is truncated there, fsynced, and the
  number of bytes dropped is logged.
- Any other damage raises ``CorruptLogError`` naming the segment and byte
  offset: a *complete* record that fails its checksum (it may have been
  fsynced and acknowledged), a bad record in an earlier segment, an index
  gap, a missing or unknown segment header, a seal with no next segment.
  Nothing is ever silently skipped or dropped; ``repair()`` (``replikv
  repair``) truncates explicitly at the damage and says what it discards.
- Entries at or below ``after_index`` (the snapshot's index) are not
  returned: whole segments before it may have been deleted by
  ``drop_before`` while the segment holding it still has older entries,
  and segments it dropped may still be there (below).

Compaction (``drop_before``) takes the dropped segments out of the log at
once and deletes the files on a worker thread of the WAL's own, oldest first
(so the remaining segments stay contiguous after a crash), then fsyncs the
directory: under a snapshot's large write, unlinking segments of 64 KiB
values and that fsync took 24-668 ms, a stall of the node's event loop.
Nothing reads a dropped segment again, and a crash before its deletion
leaves it below ``after_index``, as a crash before ``drop_before`` would;
``reset`` and ``close`` wait for the deletions (``deletions_done``) first.

Crash safety of ``truncate_after`` and ``reset``: both first write an intent
file atomically (tmp, fsync, rename, directory fsync) describing the end
state, including the re-encoded prefix of a split record, then carry it out
(deleting whole segments newest first, truncating the split segment, writing
the prefix record, fsyncs), then delete the intent and fsync the directory.
Carrying an intent out is idempotent; ``recover`` redoes a leftover one before
reading the log. A crash therefore leaves the old log (intent not yet durable)
or the new one.

I/O errors (a full disk is the common case):
- A failed ``write`` (or a failed creation of the next segment) is rolled
  back with ``ftruncate`` to the segment's size before the write, and the
  WAL becomes *blocked*: the records stay buffered, in order, nothing is
  counted as written, and ``commit``/``write`` raise ``WalBlockedError``
  without touching the disk until ``retry()`` manages to write them. More
  records may be appended meanwhile (they queue behind). The owner decides
  what may leave the node while blocked (nothing that depends on these
  records being on disk: no ack, no reply, no vote).
- A failed fsync, or a write whose rollback failed, puts the WAL in a
  *failed* state where every later mutation raises ``WalFailedError``: after
  a failed fsync the kernel may have dropped the dirty pages, so what is on
  disk is unknown (PostgreSQL's "fsyncgate"); only a restart that recovers
  from disk is safe.

Not thread-safe: one owner calls every method (the node's event loop, or a
single writer thread); the deletion worker touches only the files it is given,
the sync thread only the duplicate descriptor it is given (it changes no state).

Failpoint (tests only: ``REPLIKV_FAILPOINTS=1`` and
``REPLIKV_FSYNC_DELAY_MS=<ms>`` in the environment): every fsync of segment
data first sleeps that long, as an fsync behind a busy disk's writeback does.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left
import re
import struct
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import msgpack
from crc32c import crc32c

from replikv.storage.errors import CorruptLogError, WalBlockedError, WalFailedError
from replikv.storage.files import atomic_write_file, fsync_directory, private_dir

log = logging.getLogger(__name__)

FSYNC_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

FSYNC_POLICIES = ("always", "everysec", "no")
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024  # config.py's default

RECORD_MAGIC = 0x4C574B52  # b"RKWL" little-endian
SEAL_MAGIC = 0x4E574B52  # b"RKWN" little-endian: "the log continues in segment first_index"
_MAGIC_BYTES = struct.pack("<I", RECORD_MAGIC)
SEGMENT_MAGIC = b"RKWS"
FORMAT_VERSION = 1
_SEGMENT_HEADER = struct.Struct("<4sIQI")  # magic, version, first_index, reserved; then crc32c
SEGMENT_HEADER_BYTES = _SEGMENT_HEADER.size + 4  # 24
_HEADER = struct.Struct("<IIIIQ")  # magic, crc, length, count, first_index
_PREFIX = struct.Struct("<II")  # magic, crc
_TAIL = struct.Struct("<IIQ")  # length, count, first_index: covered by the crc
HEADER_BYTES = _HEADER.size  # 24
MAX_PAYLOAD_BYTES = 0xFFFFFFFF



def _failpoint_fsync_delay_s() -> float:
    """The failpoint's extra seconds per fsync (module docstring), 0 when off."""
    if os.environ.get("REPLIKV_FAILPOINTS") != "1":
        return 0.0
    return int(os.environ.get("REPLIKV_FSYNC_DELAY_MS", "0") or 0) / 1000


def _fsync_timed(fd: int, delay_s: float) -> float:
    """fsync ``fd``; return the seconds it took. Thread-safe: touches no WAL state."""
    started = time.perf_counter()
    if delay_s:
        time.sleep(delay_s)
    os.fsync(fd)
    return time.perf_counter() - started


def _fsync_and_close(fd: int, delay_s: float) -> float:
    """The sync thread's job: fsync a duplicate descriptor, then close it."""
    try:
        return _fsync_timed(fd, delay_s)
    finally:
        os.close(fd)


@dataclass(slots=True)
class _BackgroundSync:
    """One fsync on the sync thread: what it will make durable once done."""

    future: Future[float]
    epoch: int  # the WAL's _sync_epoch when it started
    index: int  # written_index then
    dirty: int  # bytes dirty then


INTENT_FILE = "wal.intent"
_INTENT_MAGIC = b"RKWI"
_INTENT_HEADER = struct.Struct("<4sI")  # magic, crc32c of the msgpack body
_SEGMENT_RE = re.compile(r"^wal-(\d{20})\.log$")


def segment_name(first_index: int) -> str:
    return f"wal-{first_index:020d}.log"


def encode_record(first_index: int, packed_entries: bytes, count: int) -> bytes:
    """One on-disk record (header + payload) for already-packed entries."""
    tail = _TAIL.pack(len(packed_entries), count, first_index)
    crc = crc32c(packed_entries, value=crc32c(tail))
    return _PREFIX.pack(RECORD_MAGIC, crc) + tail + packed_entries


def encode_segment_header(first_index: int) -> bytes:
    head = _SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, first_index, 0)
    return head + struct.pack("<I", crc32c(head))


def encode_seal(next_first_index: int) -> bytes:
    tail = _TAIL.pack(0, 0, next_first_index)
    return _PREFIX.pack(SEAL_MAGIC, crc32c(tail)) + tail


def _segment_start(data: bytes, first_index: int, segment: str) -> int:
    """Byte offset of the first record: after a valid header (version 1), or
    0 for a version-0 segment (it starts with a record). Raises
    ``CorruptLogError`` for anything else."""
    if data[:4] == SEGMENT_MAGIC:
        if len(data) < SEGMENT_HEADER_BYTES:
            raise CorruptLogError(segment, 0, "incomplete segment header")
        magic, version, first, _ = _SEGMENT_HEADER.unpack_from(data, 0)
        (crc,) = struct.unpack_from("<I", data, _SEGMENT_HEADER.size)
        if crc32c(data[: _SEGMENT_HEADER.size]) != crc:
            raise CorruptLogError(segment, 0, "segment header checksum mismatch")
        if version != FORMAT_VERSION:
            raise CorruptLogError(
                segment, 0, f"segment format version {version}; this replikv reads {FORMAT_VERSION}"
            )
        if first != first_index:
            raise CorruptLogError(segment, 0, f"header says first index {first}, name says {first_index}")
        return SEGMENT_HEADER_BYTES
    if data[:4] == _MAGIC_BYTES:
        return 0  # format version 0: records from byte 0
    if not data:
        raise CorruptLogError(segment, 0, "empty file: a segment always has a header (emptied?)")
    raise CorruptLogError(segment, 0, "no segment header: not a replikv WAL segment, or an unknown format")


def _unpack_entries(payload: bytes | memoryview) -> list[Any]:
    entries = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    if not isinstance(entries, list):
        raise TypeError(f"payload is a {type(entries).__name__}, not a list")
    return entries


@dataclass(slots=True)
class _Segment:
    first_index: int
    path: Path
    size: int  # bytes in the file, segment header included
    sealed: bool = False  # ends with a seal naming the next segment


@dataclass(frozen=True, slots=True)
class _RecordPos:
    offset: int
    first_index: int
    count: int
    length: int  # payload bytes


@dataclass(frozen=True, slots=True)
class _BadRecord:
    offset: int
    reason: str
    torn: bool = False  # only a write cut short can look like this


def _scan(
    data: bytes, expected_first: int, segment: str, start: int = 0
) -> tuple[list[_RecordPos], _BadRecord | None, int | None]:
    """Walk the records of one segment's bytes from ``start``.

    Returns the valid records up to the first bad one, that bad one (or None
    if the segment is clean to its end), and the next segment's first index
    if the segment ends with a seal. ``_BadRecord.torn`` says whether the bad
    bytes can only be a write cut short (module docstring, recovery rules).
    Raises ``CorruptLogError`` for a valid record that breaks index
    continuity or anything after a seal: that is never a torn write.
    """
    records: list[_RecordPos] = []
    offset = start
    end = len(data)
    expected = expected_first
    while offset < end:
        if end - offset < HEADER_BYTES:
            return records, _BadRecord(offset, "incomplete header", torn=True), None
        magic, crc, length, count, first = _HEADER.unpack_from(data, offset)
        if magic == SEAL_MAGIC:
            if crc32c(memoryview(data)[offset + 8 : offset + HEADER_BYTES]) != crc or length or count:
                return records, _BadRecord(offset, "bad seal"), None
            if first != expected:
                raise CorruptLogError(segment, offset, f"seal names segment {first}, expected {expected}")
            if offset + HEADER_BYTES != end:
                raise CorruptLogError(segment, offset + HEADER_BYTES, "bytes after the seal")
            return records, None, first
        if magic != RECORD_MAGIC:
            if not any(memoryview(data)[offset:]):
                return records, _BadRecord(offset, "trailing zero bytes", torn=True), None
            return records, _BadRecord(offset, "bad magic"), None
        if length > end - offset - HEADER_BYTES:
            return records, _BadRecord(offset, "incomplete payload", torn=True), None
        body_start = offset + HEADER_BYTES
        payload = memoryview(data)[body_start : body_start + length]
        if crc32c(payload, value=crc32c(memoryview(data)[offset + 8 : body_start])) != crc:
            return records, _BadRecord(offset, "checksum mismatch in a complete record"), None
        if count < 1:
            raise CorruptLogError(segment, offset, "valid checksum but zero entries")
        if first != expected:
            raise CorruptLogError(
                segment, offset, f"index gap: record starts at {first}, expected {expected}"
            )
        records.append(_RecordPos(offset, first, count, length))
        expected = first + count
        offset = body_start + length
    return records, None, None


def _torn_seal(data: bytes, bad: _BadRecord, next_first: int) -> bool:
    """True when the bad bytes at the end of a full segment are the beginning of
    the seal naming ``next_first``: the write of the seal was cut short by a crash
    (it is written only after the next segment exists, see ``_roll_segment``)."""
    rest = data[bad.offset :]
    return bool(rest) and len(rest) < HEADER_BYTES and encode_seal(next_first).startswith(rest)


def _record_entries(view: memoryview, rec: _RecordPos, segment: str) -> list[Any]:
    """The entries of a checksum-valid record; ``CorruptLogError`` if its
    payload is not a msgpack list of ``count`` entries."""
    start = rec.offset + HEADER_BYTES
    try:
        entries = _unpack_entries(view[start : start + rec.length])
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CorruptLogError(segment, rec.offset, f"undecodable payload: {exc}") from exc
    if len(entries) != rec.count:
        raise CorruptLogError(
            segment, rec.offset, f"header says {rec.count} entries, payload has {len(entries)}"
        )
    return entries


def _check_torn_tail(
    data: bytes, records: list[_RecordPos], bad: _BadRecord, seg_first: int, segment: str
) -> None:
    """The recovery rule for bad bytes at the end of the last segment: return if
    they are a torn tail (a write cut short, to be cut off at ``bad.offset``),
    raise ``CorruptLogError`` for anything else (module docstring)."""
    bad_first = records[-1].first_index + records[-1].count if records else seg_first
    later = _valid_record_after(data, bad.offset + 1, bad_first + 1)
    if later is not None:
        raise CorruptLogError(
            segment, bad.offset, f"{bad.reason}, followed by a valid record at byte {later}"
        )
    if not bad.torn:
        raise CorruptLogError(segment, bad.offset, bad.reason)


def read_last_segment(
    data: bytes, first_index: int, segment: str
) -> tuple[list[tuple[int, list[Any]]], int]:
    """The bytes of a log's only (last) segment read as ``recover`` reads them:
    ``([(first_index, entries), ...], size)``, where ``size`` is where a torn
    tail is cut; ``CorruptLogError`` for damage. The simulator's in-memory
    disk (sim/disk.py) recovers with this, so it holds the real record format
    to the real recovery rules."""
    start = _segment_start(data, first_index, segment)
    records, bad, sealed = _scan(data, first_index, segment, start)
    if sealed is not None:
        raise CorruptLogError(segment, -1, f"sealed: the log continues in {segment_name(sealed)}")
    size = len(data)
    if bad is not None:
        _check_torn_tail(data, records, bad, first_index, segment)
        size = bad.offset
    view = memoryview(data)
    return [(r.first_index, _record_entries(view, r, segment)) for r in records], size


def _valid_record_after(data: bytes, start: int, min_first: int) -> int | None:
    """Offset of the first checksum-valid record at or after ``start`` whose
    first index is >= ``min_first``, if any. (The index filter keeps a record
    that merely appears inside a torn payload, e.g. a client's value, from
    counting.)"""
    pos = data.find(_MAGIC_BYTES, start)
    while pos != -1:
        if len(data) - pos >= HEADER_BYTES:
            _, crc, length, _, first = _HEADER.unpack_from(data, pos)
            body = pos + HEADER_BYTES
            if first >= min_first and length <= len(data) - body:
                view = memoryview(data)
                if crc32c(view[body : body + length], value=crc32c(view[pos + 8 : body])) == crc:
                    return pos
        pos = data.find(_MAGIC_BYTES, pos + 1)
    return None


def _delete_segments(paths: list[Path], directory: Path) -> None:
    """The WAL's deletion worker (module docstring, "Compaction"): delete ``paths`` in order,
    then fsync the directory. A failure is logged: a segment left behind lies below the
    snapshot, where recovery skips it, and a later failure shows itself on the log's own I/O."""
    try:
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        fsync_directory(directory)
    except OSError as exc:
        log.warning("WAL %s: could not delete compacted segments (%s): %s", directory,
                    ", ".join(p.name for p in paths), exc)


def _list_segments(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for name in os.listdir(directory):
        m = _SEGMENT_RE.match(name)
        if m:
            found.append((int(m.group(1)), directory / name))
    found.sort()
    return found


class WriteAheadLog:
    """The write-ahead log of one node; see the module docstring for the rules.

    Lifecycle: construct, ``recover()`` (mandatory, even on an empty
    directory), then ``append``/``commit`` and the maintenance calls, then
    ``close()``.
    """

    def __init__(
        self,
        directory: str | Path,
        fsync: str = "everysec",
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {FSYNC_POLICIES}, got {fsync!r}")
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be >= 1, got {segment_bytes}")
        self.directory = Path(directory)
        self.fsync_policy = fsync
        self.segment_bytes = segment_bytes
        self._segments: list[_Segment] = []  # on disk, ordered; the last one is written to
        self._fd: int | None = None  # append fd of self._segments[-1]
        self._buffer: list[bytes] = []  # headers and payloads not yet written
        self._buffer_bytes = 0
        self._buffer_first = 0  # first index in the buffer (meaningful when non-empty)
        # Invariants: first_index <= written_index + 1 <= last_index + 1,
        # durable_index <= written_index.
        self._first_index = 1
        self._last_index = 0  # including buffered records
        self._written_index = 0  # handed to the kernel
        self._durable_index = 0  # fsynced
        self._dirty = 0  # bytes written since the last fsync
        self.fsyncs = 0  # fsyncs of segment data (INFO persistence: replikv_wal_fsyncs)
        # how long those took: counts per FSYNC_BUCKETS_S upper bound (the last: above them all),
        # and their sum (the /metrics histogram replikv_wal_fsync_duration_seconds)
        self.fsync_buckets = [0] * (len(FSYNC_BUCKETS_S) + 1)
        self.fsync_seconds = 0.0
        self.delayed_fsyncs = 0  # everysec fsyncs put off because the previous one still ran
        self.records = 0  # records appended since open (one per group-committed batch)
        self._open = False
        self._failed: BaseException | None = None
        self._blocked: BaseException | None = None  # a rolled-back write; retry() clears it
        self._deleter: ThreadPoolExecutor | None = None  # drop_before's file deletions, in order
        self._deletions: list[Future[None]] = []
        self._syncer: ThreadPoolExecutor | None = None  # everysec fsyncs (sync_in_background)
        self._bg_sync: _BackgroundSync | None = None
        self._sync_epoch = 0  # bumped by every synchronous fsync, truncation and reset
        self._presynced = 0  # first index of the last segment _presync started an fsync of
        self._fsync_delay_s = _failpoint_fsync_delay_s()

    # ----------------------------------------------------------------- state

    @property
    def first_index(self) -> int:
        """First index the log still holds (snapshot index + 1 after compaction)."""
        return self._first_index

    @property
    def last_index(self) -> int:
        """Last appended index, buffered records included; 0 for a fresh log."""
        return self._last_index

    @property
    def written_index(self) -> int:
        """Last index written to the kernel by ``commit`` (may not be fsynced)."""
        return self._written_index

    @property
    def durable_index(self) -> int:
        """Last index known fsynced to disk."""
        return self._durable_index

    @property
    def size_bytes(self) -> int:
        """Bytes of all segment files on disk (buffered records excluded)."""
        return sum(seg.size for seg in self._segments)

    @property
    def dirty(self) -> int:
        """Bytes written to the kernel but not yet fsynced."""
        return self._dirty

    @property
    def buffered_bytes(self) -> int:
        return self._buffer_bytes

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def segment_starts(self) -> list[int]:
        """The first index of each segment on disk, oldest first."""
        return [seg.first_index for seg in self._segments]

    @property
    def blocked(self) -> BaseException | None:
        """The error of the rolled-back write that blocks the WAL, or None."""
        return self._blocked

    @property
    def failed(self) -> BaseException | None:
        """The error that stopped the WAL for good (restart to recover), or None."""
        return self._failed

    # -------------------------------------------------------------- recovery

    def recover(self, after_index: int = 0) -> Iterator[tuple[int, list[Any]]]:
        """Open the log and return its records with entries > ``after_index``.

        Every segment is read and checked (and a torn tail repaired) before
        this returns, so corruption raises here, not halfway through the
        replay. The returned iterator decodes records lazily, in index order,
        as ``(first_index, entries)``; consume it before mutating the log.

        Afterwards the log is ready to append at ``last_index + 1`` where
        ``last_index = max(last index on disk, after_index)``. If the whole log
        lies at or below ``after_index`` it is reset so the next append is
        ``after_index + 1``. If the log starts above ``after_index + 1`` the
        entries in between are missing: ``CorruptLogError``.
        """
        if self._open:
            raise RuntimeError("recover() called on an open WAL")
        if after_index < 0:
            raise ValueError(f"after_index must be >= 0, got {after_index}")
        private_dir(self.directory, narrow=True)
        self._redo_intent()
        for leftover in self.directory.glob("wal-*.log.tmp"):  # a segment never renamed into place
            leftover.unlink()

        plan: list[tuple[_Segment, list[_RecordPos]]] = []
        found = _list_segments(self.directory)
        expected: int | None = None
        sealed: int | None = None
        for i, (seg_first, path) in enumerate(found):
            name = path.name
            if expected is not None and seg_first != expected:
                raise CorruptLogError(
                    name, -1, f"index gap: segment starts at {seg_first}, expected {expected}"
                )
            data = path.read_bytes()
            start = _segment_start(data, seg_first, name)
            records, bad, sealed = _scan(data, seg_first, name, start)
            size = len(data)
            if bad is not None and i != len(found) - 1 and _torn_seal(data, bad, found[i + 1][0]):
                # a crash while sealing: the next segment exists, its seal was cut short
                self._truncate_torn_tail(path, bad, len(data))
                size, bad = bad.offset, None
            if bad is not None:
                if i != len(found) - 1:
                    raise CorruptLogError(name, bad.offset, f"{bad.reason} (not the last segment)")
                _check_torn_tail(data, records, bad, seg_first, name)
                self._truncate_torn_tail(path, bad, size)
                size = bad.offset
            expected = records[-1].first_index + records[-1].count if records else seg_first
            plan.append((_Segment(seg_first, path, size, sealed=sealed is not None), records))
        if sealed is not None:
            raise CorruptLogError(
                found[-1][1].name, -1,
                f"sealed: the log continues in {segment_name(sealed)}, which is missing",
            )

        self._segments = [seg for seg, _ in plan]
        self._open = True
        if expected is None:  # no segment files at all
            self._set_empty(after_index + 1)
            return iter(())
        disk_first, disk_last = self._segments[0].first_index, expected - 1
        if disk_first > after_index + 1:
            raise CorruptLogError(
                self._segments[0].path.name,
                -1,
                f"log starts at index {disk_first} but entries after {after_index} are needed",
            )
        if disk_last < after_index:
            log.info(
                "WAL %s: log ends at %d, below snapshot index %d; resetting it",
                self.directory,
                disk_last,
                after_index,
            )
            self.reset(after_index + 1)
            return iter(())
        self._first_index = after_index + 1 if after_index >= disk_first else disk_first
        self._last_index = self._written_index = self._durable_index = disk_last
        self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)
        return self._replay(plan, after_index)

    def _replay(
        self, plan: list[tuple[_Segment, list[_RecordPos]]], after_index: int
    ) -> Iterator[tuple[int, list[Any]]]:
        for seg, records in plan:
            wanted = [r for r in records if r.first_index + r.count - 1 > after_index]
            if not wanted:
                continue
            with open(seg.path, "rb") as f:
                data = f.read(seg.size)
            view = memoryview(data)
            for rec in wanted:
                entries = _record_entries(view, rec, seg.path.name)
                first = rec.first_index
                if first <= after_index:
                    entries = entries[after_index - first + 1 :]
                    first = after_index + 1
                yield first, entries

    def _truncate_torn_tail(self, path: Path, bad: _BadRecord, size: int) -> None:
        dropped = size - bad.offset
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, bad.offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        log.warning(
            "WAL %s: torn tail at byte %d (%s): dropped %d bytes",
            path.name,
            bad.offset,
            bad.reason,
            dropped,
        )

    def _set_empty(self, next_index: int) -> None:
        self._first_index = next_index
        self._last_index = self._written_index = self._durable_index = next_index - 1
        self._buffer.clear()
        self._buffer_bytes = 0
        self._dirty = 0

    # ---------------------------------------------------------------- append

    def append(self, first_index: int, packed_entries: bytes, count: int) -> None:
        """Buffer one record; no system call. ``packed_entries`` is
        ``msgpack.packb(entries)`` with ``len(entries) == count``.

        Invariant: ``first_index == last_index + 1`` (``ValueError`` otherwise).
        """
        if first_index != self._last_index + 1:
            raise ValueError(
                f"append at {first_index}, expected last_index + 1 = {self._last_index + 1}"
            )
        if not self._open or self._failed is not None:
            self._check_writable()
        if count < 1:
            raise ValueError(f"a record holds at least one entry, got count={count}")
        length = len(packed_entries)
        if length > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload of {length} bytes exceeds {MAX_PAYLOAD_BYTES}")
        tail = _TAIL.pack(length, count, first_index)
        crc = crc32c(packed_entries, value=crc32c(tail))
        if not self._buffer:
            self._buffer_first = first_index
        self._buffer.append(_PREFIX.pack(RECORD_MAGIC, crc) + tail)
        self._buffer.append(packed_entries)
        self._buffer_bytes += HEADER_BYTES + length
        self._last_index = first_index + count - 1
        self.records += 1

    def append_entries(self, first_index: int, entries: list[Any]) -> bytes:
        """Pack ``entries`` and ``append`` them; return the packed bytes for reuse."""
        packed: bytes = msgpack.packb(entries)
        self.append(first_index, packed, len(entries))
        return packed

    def commit(self) -> None:
        """Group commit: write every buffered record with one ``write``, then
        fsync as the policy says (see the module docstring). Raises
        ``WalBlockedError`` while blocked (see ``retry``)."""
        self._check_writable()
        self._check_unblocked()
        self._write_buffer()
        if self.fsync_policy == "always" and self._dirty:
            self._fsync()

    def _write_buffer(self) -> None:
        """Hand every buffered record to the kernel in one ``write`` (no fsync).

        On a failed write the buffer is kept whole (as one joined chunk) and
        the WAL is blocked (module docstring, "I/O errors")."""
        if not self._buffer:
            return
        data = b"".join(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        self._buffer = [data]
        try:
            if self._fd is None or self._segments[-1].size >= self.segment_bytes:
                self._roll_segment(self._buffer_first)
            self._write(data)
        except WalBlockedError as exc:
            self._blocked = exc.__cause__ or exc
            raise
        self._buffer.clear()
        self._buffer_bytes = 0
        self._written_index = self._last_index
        if self.fsync_policy == "everysec":
            self._presync()

    def _presync(self) -> None:
        """everysec: once the segment being written is three quarters full, fsync it on the
        sync thread, so the fsync a roll must do on the owner's thread (``_roll_segment``)
        finds little left to write: on the event loop under 64 KiB writes those took up to
        150 ms, the largest of a roll's four (issue 15). Once per segment; credited as any
        background fsync (``collect_background_sync``, called by the next one or the roll)."""
        seg = self._segments[-1]
        if (self._presynced != seg.first_index and self._bg_sync is None
                and seg.size >= self.segment_bytes - self.segment_bytes // 4):
            self._presynced = seg.first_index
            self.sync_in_background()

    def retry(self) -> bool:
        """Try to write the records a failed write left buffered, then fsync
        (whatever the policy: the owner is about to release what waited on
        them). True when the WAL is unblocked (or was not blocked); False when
        the disk still refuses (the WAL stays blocked, nothing partial left).
        Raises ``WalFailedError`` when the WAL failed for good meanwhile."""
        self._check_writable()
        if self._blocked is None:
            return True
        self._blocked = None
        try:
            self._write_buffer()
            if self._dirty:
                self._fsync()
        except WalBlockedError:
            return False
        return True

    def write(self) -> None:
        """Hand every buffered record to the kernel with one ``write``, no fsync:
        a raft leader sends its AppendEntries between this and ``fsync_now``
        (thesis §10.2.1). Raises ``WalBlockedError`` while blocked."""
        self._check_writable()
        self._check_unblocked()
        self._write_buffer()

    def sync_in_background(self) -> Future[float] | None:
        """Start an fsync of the data written so far on the sync thread (module
        docstring); None when nothing is dirty or one is still running (the next
        timer tick tries again, as Redis postpones an everysec fsync while one is
        in progress). The owner calls ``collect_background_sync`` once the
        returned future is done; until then ``durable_index`` does not move."""
        self._check_writable()
        self.collect_background_sync()  # one the WAL started itself (_presync) may be done
        if not self._dirty:
            return None
        if self._bg_sync is not None:
            self.delayed_fsyncs += 1  # INFO aof_delayed_fsync, as Redis counts them
            return None
        try:
            fd = os.dup(self._require_fd())  # the sync survives the segment's fd being closed meanwhile
        except OSError as exc:  # out of descriptors: the next timer tick tries again
            log.warning("WAL %s: everysec fsync put off (%s)", self.directory, exc)
            self.delayed_fsyncs += 1
            return None
        if self._syncer is None:
            self._syncer = ThreadPoolExecutor(1, thread_name_prefix="wal-sync")
        future = self._syncer.submit(_fsync_and_close, fd, self._fsync_delay_s)
        self._bg_sync = _BackgroundSync(future, self._sync_epoch, self._written_index, self._dirty)
        return future

    def collect_background_sync(self) -> None:
        """Credit the finished background fsync, if any (owner thread; no-op while
        it runs). A failed one fails the WAL for good, as a failed ``fsync_now``."""
        bg = self._bg_sync
        if bg is None or not bg.future.done():
            return
        self._bg_sync = None
        try:
            took = bg.future.result()
        except OSError as exc:
            self._fail(exc)
            raise WalFailedError(f"WAL fsync failed: {exc}") from exc
        self._count_fsync(took)
        if bg.epoch == self._sync_epoch:  # else a later fsync, truncation or reset covered it
            self._dirty -= bg.dirty
            self._durable_index = max(self._durable_index, bg.index)

    def _wait_background_sync(self) -> None:
        """Let a running background fsync finish (close, before the descriptors go)."""
        if self._bg_sync is not None:
            try:
                self._bg_sync.future.result()
            except OSError as exc:  # fsyncgate: a later fsync's success would not mean the data is on disk
                self._fail(exc)
            self._bg_sync = None

    def fsync_now(self) -> None:
        """Fsync written data now if any is dirty (whatever the policy)."""
        self._check_writable()
        if self._dirty:
            self._fsync()

    def _write(self, data: bytes) -> None:
        fd = self._require_fd()
        seg = self._segments[-1]
        try:
            written = os.write(fd, data)
            if written != len(data):  # short write: rare (signals, nearly full disk)
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(fd, view) :]
        except OSError as exc:
            # Roll back a partial record so later writes never land after garbage.
            try:
                os.ftruncate(fd, seg.size)
            except OSError:
                self._fail(exc)
                raise WalFailedError(
                    f"WAL write to {seg.path.name} failed and could not be rolled back: {exc}"
                ) from exc
            raise WalBlockedError(
                f"WAL write to {seg.path.name} failed ({exc.strerror or exc}); "
                "rolled back, the records are kept for a retry"
            ) from exc
        except BaseException as exc:
            try:
                os.ftruncate(fd, seg.size)
            except OSError:
                pass
            self._fail(exc)
            raise WalFailedError(f"WAL write to {seg.path.name} failed: {exc}") from exc
        seg.size += len(data)
        self._dirty += len(data)

    def _fsync(self) -> None:
        fd = self._require_fd()
        try:
            took = _fsync_timed(fd, self._fsync_delay_s)
        except OSError as exc:
            self._fail(exc)
            raise WalFailedError(f"WAL fsync failed: {exc}") from exc
        self._count_fsync(took)
        self._dirty = 0
        self._durable_index = self._written_index
        self._sync_epoch += 1

    def _count_fsync(self, took: float) -> None:
        self.fsync_seconds += took
        self.fsync_buckets[bisect_left(FSYNC_BUCKETS_S, took)] += 1
        self.fsyncs += 1

    def _roll_segment(self, first_index: int) -> None:
        """Start ``wal-<first_index>.log``: the previous segment is fsynced
        first (so only the last segment can ever have a torn tail), the new
        one is created whole (module docstring), then the previous one is
        sealed."""
        self.collect_background_sync()
        if self._fd is not None and self._dirty:
            self._fsync()
        path = self.directory / segment_name(first_index)
        try:
            atomic_write_file(path, encode_segment_header(first_index))
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:  # the next attempt starts over (a leftover .tmp is replaced)
            raise WalBlockedError(
                f"cannot create WAL segment {path.name} ({exc.strerror or exc})"
            ) from exc
        if self._fd is not None:
            self._seal(self._fd, self._segments[-1], first_index)
            os.close(self._fd)
        self._fd = fd
        self._segments.append(_Segment(first_index, path, SEGMENT_HEADER_BYTES))

    def _seal(self, fd: int, seg: _Segment, next_first: int) -> None:
        """Append the seal to a full segment; on failure it stays unsealed (still a valid log)."""
        seal = encode_seal(next_first)
        try:
            os.write(fd, seal)
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, seg.size)
            except OSError:
                pass
            log.warning("WAL %s: could not seal %s (%s)", self.directory, seg.path.name, exc)
            return
        seg.size += len(seal)
        seg.sealed = True

    # ----------------------------------------------------------- maintenance

    def truncate_after(self, index: int) -> None:
        """Durably remove every entry with an index > ``index``.

        A record straddling ``index`` is split: its payload is decoded, the
        prefix re-encoded as a new record. Crash-safe through the intent file
        (module docstring). ``index >= last_index`` is a no-op; ``index`` below
        ``first_index - 1`` would cut into compacted entries: ``ValueError``.
        Raises ``WalBlockedError`` while blocked; an I/O error on the way
        fails the WAL for good (the intent makes the restart safe).
        """
        self._check_writable()
        self._check_unblocked()
        if index >= self._last_index:
            return
        if index < self._first_index - 1:
            raise ValueError(
                f"cannot truncate after {index}: entries before {self._first_index} are compacted"
            )
        self._write_buffer()  # rare path: buffered records become ordinary on-disk ones
        with self._fatal_io_errors("truncate"):
            self._truncate_after(index)

    def _truncate_after(self, index: int) -> None:
        target = index + 1  # first index to remove
        seg_pos = max(i for i, s in enumerate(self._segments) if s.first_index <= target)
        seg = self._segments[seg_pos]
        data = seg.path.read_bytes()[: seg.size]
        start = _segment_start(data, seg.first_index, seg.path.name)
        records, bad, _ = _scan(data, seg.first_index, seg.path.name, start)
        if bad is not None:
            raise CorruptLogError(seg.path.name, bad.offset, bad.reason)
        rec = next(r for r in records if r.first_index + r.count > target)
        replacement = b""
        if rec.first_index < target:
            start = rec.offset + HEADER_BYTES
            entries = _unpack_entries(memoryview(data)[start : start + rec.length])
            keep = entries[: target - rec.first_index]
            replacement = encode_record(rec.first_index, msgpack.packb(keep), len(keep))
        intent = {
            "op": "truncate",
            "index": index,
            "segment": seg.first_index,
            "offset": rec.offset,
            "record": replacement,
        }
        self._write_intent(intent)
        self._close_fd()
        self._apply_truncate(seg.first_index, rec.offset, replacement)
        self._clear_intent()
        del self._segments[seg_pos + 1 :]
        seg.size = rec.offset + len(replacement)
        seg.sealed = False
        self._fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND)
        self._last_index = self._written_index = self._durable_index = index
        self._dirty = 0
        self._sync_epoch += 1

    def drop_before(self, index: int) -> None:
        """Compaction after a snapshot covering entries <= ``index``: delete the
        whole segments whose entries are all <= ``index``. The owner passes the
        oldest index it still needs, which may be below the snapshot's (the
        leader-follower replication backlog keeps the entries a lagging follower
        lacks, core/shipping/node.py rule 9) (oldest first, so the
        remaining segments stay contiguous after a crash). The segment being
        written is never deleted; ``recover(after_index=...)`` skips its older
        entries. Afterwards ``first_index == index + 1``."""
        self._check_writable()
        if index > self._last_index:
            raise ValueError(
                f"drop_before({index}) beyond last_index {self._last_index}; use reset()"
            )
        if index < self._first_index:
            return
        doomed = 0
        while (
            doomed < len(self._segments) - 1 and self._segments[doomed + 1].first_index - 1 <= index
        ):
            doomed += 1
        if doomed:
            paths = [seg.path for seg in self._segments[:doomed]]
            del self._segments[:doomed]
            if self._deleter is None:
                self._deleter = ThreadPoolExecutor(1, thread_name_prefix="wal-deleter")
            self._deletions = [f for f in self._deletions if not f.done()]
            self._deletions.append(self._deleter.submit(_delete_segments, paths, self.directory))
        self._first_index = index + 1

    def deletions_done(self) -> None:
        """Wait until the segments ``drop_before`` dropped are deleted (module docstring)."""
        for f in self._deletions:
            f.result()
        self._deletions.clear()

    def reset(self, next_index: int) -> None:
        """Durably delete the whole log; the next append is at ``next_index``
        (after a full resync from a snapshot at ``next_index - 1``). An empty
        segment ``wal-<next_index>.log`` records where the log resumes."""
        self._check_writable()
        if next_index < 1:
            raise ValueError(f"next_index must be >= 1, got {next_index}")
        with self._fatal_io_errors("reset"):
            self._reset(next_index)

    def _reset(self, next_index: int) -> None:
        self.deletions_done()  # _apply_reset deletes every segment it finds
        self._buffer.clear()
        self._buffer_bytes = 0
        self._blocked = None  # what was buffered is discarded with the rest of the log
        self._write_intent({"op": "reset", "next_index": next_index})
        self._close_fd()
        self._apply_reset(next_index)
        self._clear_intent()
        path = self.directory / segment_name(next_index)
        self._segments = [_Segment(next_index, path, SEGMENT_HEADER_BYTES)]
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._set_empty(next_index)
        self._sync_epoch += 1

    def close(self) -> None:
        """Write buffered records, fsync if dirty (any policy), close. Idempotent."""
        if not self._open:
            return
        self._wait_background_sync()
        try:
            if self._failed is None:
                if self._blocked is not None and not self.retry():
                    log.error("WAL %s: closing with entries %d..%d unwritten (%s)", self.directory,
                              self._written_index + 1, self._last_index, self._blocked)
                elif self._buffer:
                    self.commit()
                if self._dirty and self._failed is None:
                    self._fsync()
        finally:
            self._close_fd()
            self._open = False
            self.deletions_done()
            if self._deleter is not None:
                self._deleter.shutdown()
                self._deleter = None
            if self._syncer is not None:
                self._syncer.shutdown()
                self._syncer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --------------------------------------------------------------- intents

    def _write_intent(self, intent: dict[str, Any]) -> None:
        body: bytes = msgpack.packb(intent)
        atomic_write_file(
            self.directory / INTENT_FILE, _INTENT_HEADER.pack(_INTENT_MAGIC, crc32c(body)) + body
        )

    def _clear_intent(self) -> None:
        os.unlink(self.directory / INTENT_FILE)
        fsync_directory(self.directory)

    def _redo_intent(self) -> None:
        """Finish a ``truncate_after`` or ``reset`` that a crash interrupted."""
        tmp = self.directory / (INTENT_FILE + ".tmp")
        if tmp.exists():  # never renamed into place: the operation never started
            os.unlink(tmp)
        path = self.directory / INTENT_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return
        if len(raw) < _INTENT_HEADER.size:
            raise CorruptLogError(INTENT_FILE, 0, "incomplete intent file")
        magic, crc = _INTENT_HEADER.unpack_from(raw, 0)
        body = raw[_INTENT_HEADER.size :]
        if magic != _INTENT_MAGIC or crc32c(body) != crc:
            raise CorruptLogError(INTENT_FILE, 0, "bad intent file magic or checksum")
        intent = self._parse_intent(body)
        where = intent.get("index", intent.get("next_index"))  # never the record: client data
        log.warning("WAL %s: finishing an interrupted %s at index %s", self.directory, intent["op"], where)
        if intent["op"] == "truncate":
            self._apply_truncate(intent["segment"], intent["offset"], intent["record"])
        elif intent["op"] == "reset":
            self._apply_reset(intent["next_index"])
        else:
            raise CorruptLogError(INTENT_FILE, 0, f"unknown intent {intent['op']!r}")
        self._clear_intent()

    def _parse_intent(self, body: bytes) -> dict[str, Any]:
        """The intent in a checksum-valid ``wal.intent``, or ``CorruptLogError``
        if it is not one that ``_write_intent`` writes for this log (a truncate
        within an existing segment, or a reset): found by tests/fuzz (wal)."""
        try:
            intent = msgpack.unpackb(body, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise CorruptLogError(INTENT_FILE, 0, f"undecodable intent: {exc}") from None
        if not isinstance(intent, dict):
            raise CorruptLogError(INTENT_FILE, 0, "the intent is not a map")

        def uint(key: str) -> bool:
            return type(intent.get(key)) is int and intent[key] >= 0

        op = intent.get("op")
        if op == "truncate" and uint("index") and uint("segment") and uint("offset") and type(
            intent.get("record")
        ) is bytes:
            path = self.directory / segment_name(intent["segment"])
            if path.is_file() and intent["offset"] <= path.stat().st_size:
                return intent
            where = f"byte {intent['offset']} of {path.name}"
            raise CorruptLogError(INTENT_FILE, 0, f"truncate at {where}, which is missing or shorter")
        if op == "reset" and uint("next_index") and intent["next_index"] >= 1:
            return intent
        raise CorruptLogError(INTENT_FILE, 0, f"not an intent this replikv writes: {op!r:.40}")

    def _apply_truncate(self, segment_first: int, offset: int, replacement: bytes) -> None:
        """Idempotent: delete segments after ``segment_first`` (newest first),
        cut that segment at ``offset``, append ``replacement``, fsync."""
        later = [p for first, p in _list_segments(self.directory) if first > segment_first]
        for path in reversed(later):
            os.unlink(path)
        if later:
            fsync_directory(self.directory)
        path = self.directory / segment_name(segment_first)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, offset)
            if replacement:
                os.pwrite(fd, replacement, offset)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _apply_reset(self, next_index: int) -> None:
        """Idempotent: delete every segment (newest first), create an empty
        ``wal-<next_index>.log``, fsync the directory."""
        for _, path in reversed(_list_segments(self.directory)):
            os.unlink(path)
        atomic_write_file(self.directory / segment_name(next_index), encode_segment_header(next_index))

    # --------------------------------------------------------------- helpers

    def _require_fd(self) -> int:
        if self._fd is None:  # broken invariant: dirty or buffered data implies a segment
            raise RuntimeError("WAL has no open segment")
        return self._fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _check_writable(self) -> None:
        if self._failed is not None:
            raise WalFailedError(f"WAL stopped after an I/O error: {self._failed}")
        if not self._open:
            raise RuntimeError("WAL is not open: call recover() first")

    @contextmanager
    def _fatal_io_errors(self, what: str) -> Iterator[None]:
        """An I/O error in a multi-step change (truncate, reset) fails the WAL
        for good: its in-memory view may no longer match the files, and the
        intent file makes the recovery of a restart exact."""
        try:
            yield
        except OSError as exc:
            self._fail(exc)
            raise WalFailedError(f"WAL {what} failed: {exc}") from exc

    def _check_unblocked(self) -> None:
        if self._blocked is not None:
            raise WalBlockedError(f"WAL writes are blocked: {self._blocked}")

    def _fail(self, exc: BaseException) -> None:
        self._failed = exc
        log.error("WAL %s: I/O error, refusing further writes: %s", self.directory, exc)


# ----------------------------------------------------------------- repair


@dataclass(frozen=True, slots=True)
class RepairPlan:
    """What ``apply_repair`` would do to a damaged log, and what it discards.

    ``cut``: (segment path, byte offset, file size) truncated at offset;
    ``unseal``: (segment path, seal offset) whose seal names a segment that
    is gone; ``delete``: (segment path, size) removed whole, newest last.
    The entries kept are exactly those before the first damage."""

    damage: str
    last_index_kept: int
    cut: tuple[Path, int, int] | None
    unseal: tuple[Path, int] | None
    delete: tuple[tuple[Path, int], ...]

    def describe(self) -> list[str]:
        lines = [f"damage: {self.damage}", f"the log keeps entries up to index {self.last_index_kept}"]
        if self.cut is not None:
            path, offset, size = self.cut
            lines.append(f"truncate {path.name} at byte {offset}: discards {size - offset} bytes")
        if self.unseal is not None:
            lines.append(f"remove the seal at the end of {self.unseal[0].name} (its next segment is gone)")
        lines += [f"delete {path.name}: discards {size} bytes" for path, size in self.delete]
        return lines


def plan_repair(directory: str | Path) -> RepairPlan | None:
    """Find the first damage in the log at ``directory`` (the same rules as
    ``recover``) and plan the explicit truncation there; None if the log is
    sound. Never changes anything. A segment of a newer format is not
    damage this version may cut: ``CorruptLogError``."""
    directory = Path(directory)
    found = _list_segments(directory)
    expected: int | None = None
    last_kept = 0
    prev_seal: tuple[Path, int] | None = None

    def plan(damage: str, i: int, cut_at: int | None) -> RepairPlan:
        path = found[i][1]
        if cut_at == 0:  # a headerless (format 0) segment bad from its first record: an empty
            cut_at = None  # file would be refused, so it goes whole (found by tests/fuzz (wal))
        later = found[i + 1 :] if cut_at is not None else found[i:]
        cut = (path, cut_at, path.stat().st_size) if cut_at is not None else None
        return RepairPlan(
            damage=damage, last_index_kept=last_kept, cut=cut,
            unseal=prev_seal if cut_at is None else None,
            delete=tuple((p, p.stat().st_size) for _, p in later),
        )

    for i, (seg_first, path) in enumerate(found):
        if expected is not None and seg_first != expected:
            return plan(f"{path.name}: index gap: segment starts at {seg_first}, expected {expected}", i, None)
        data = path.read_bytes()
        try:
            start = _segment_start(data, seg_first, path.name)
        except CorruptLogError as exc:
            if data[:4] == SEGMENT_MAGIC and len(data) >= SEGMENT_HEADER_BYTES and "format version" in exc.reason:
                raise
            return plan(str(exc), i, None)
        damage: tuple[str, int] | None = None
        try:
            records, bad, sealed = _scan(data, seg_first, path.name, start)
            if bad is not None and i != len(found) - 1 and _torn_seal(data, bad, found[i + 1][0]):
                bad = None  # a seal cut short by a crash: recover() removes it, nothing is damaged
            if bad is not None:
                damage = (f"{path.name} at byte {bad.offset}: {bad.reason}", bad.offset)
        except CorruptLogError as exc:
            # the records before the damage stay (found by tests/fuzz (wal): they were not
            # counted); a seal before it goes, as the segments after this one do (it would name one)
            records, _, sealed = _scan(data[: exc.offset], seg_first, path.name, start)
            damage = (str(exc), exc.offset - (HEADER_BYTES if sealed is not None else 0))
        # a payload recover() cannot decode is damage too (found by tests/fuzz (wal))
        for k, rec in enumerate(records):
            try:
                _record_entries(memoryview(data), rec, path.name)
            except CorruptLogError as exc:
                records, damage = records[:k], (str(exc), exc.offset)
                break
        if records:
            last_kept = records[-1].first_index + records[-1].count - 1
        if damage is not None:
            return plan(damage[0], i, damage[1])
        expected = last_kept + 1 if records else seg_first
        prev_seal = (path, len(data) - HEADER_BYTES) if sealed is not None else None
        if sealed is not None and i == len(found) - 1:
            return RepairPlan(
                damage=f"{path.name}: sealed, but {segment_name(sealed)} is missing",
                last_index_kept=last_kept, cut=None, unseal=prev_seal, delete=(),
            )
    return None


def apply_repair(directory: str | Path, plan: RepairPlan) -> None:
    """Carry out ``plan``: delete (newest first), truncate, unseal, fsync."""
    directory = Path(directory)
    for path, _ in reversed(plan.delete):
        os.unlink(path)
    for target in (plan.cut, plan.unseal):
        if target is None:
            continue
        path, offset = target[0], target[1]
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, offset)
            os.fsync(fd)
        finally:
            os.close(fd)
    fsync_directory(directory)
