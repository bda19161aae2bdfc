"""Snapshots: a checksummed dump of the state machine and the index it covers.

File ``snapshot-<index:020d>.snap``, all integers little-endian::

    offset  size  field
    0       4     magic  b"RKS1"
    4       4     crc32c (Castagnoli) of data, continued over bytes 8..32
    8       8     index   last log index the snapshot covers
    16      8     epoch   term / epoch of the entry at ``index``
    24      8     length  of data in bytes
    32      ...   data    (opaque to this module: the state machine's dump)

The checksum runs over the data first and the header fields second, so a
snapshot received in chunks is checksummed as it streams in and the header is
written last.

Rules:
- Install is atomic: write ``<name>.tmp``, fsync it, rename it to its final
  name, fsync the directory. A crash leaves either the previous snapshot set
  or the new one, plus perhaps a ``.tmp`` file that nothing ever reads
  (``remove_temp_files`` deletes them at start-up).
- The snapshot just installed is the only one that counts. Snapshots with a
  *higher* index are deleted (and the deletion made durable) *before* the
  rename: after a full resync from a leader, a local snapshot of a divergent
  history must never win ``load_latest_snapshot`` by having a bigger index.
  Snapshots with a lower index are deleted after the rename.
- A corrupt newest snapshot raises ``CorruptSnapshotError``; there is no
  fall-back to an older one. The log may already be compacted up to the
  newest snapshot's index (``WriteAheadLog.drop_before``), so an older
  snapshot plus the log would silently miss acknowledged writes. (Older
  snapshots are deleted right after the rename anyway; one only survives a
  crash in that window.)

The file primitives it uses (``fsync_directory``, ``atomic_write_file``,
owner-only modes) are in ``storage/files.py``.
"""

from __future__ import annotations

import logging
import os
import re
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Generator
from types import TracebackType
from typing import Self, TypeVar

from crc32c import crc32c

from replikv.storage.errors import CorruptSnapshotError
from replikv.storage.files import FILE_MODE, atomic_write_file, fsync_directory, private_dir
from replikv.storage.files import write_all as _write_all

__all__ = ["atomic_write_file", "fsync_directory"]  # re-exported for older imports

log = logging.getLogger(__name__)
T = TypeVar("T")

SNAPSHOT_MAGIC = b"RKS1"
_HEADER = struct.Struct("<4sIQQQ")
_FIELDS = struct.Struct("<QQQ")  # index, epoch, length: the checksummed header part
HEADER_BYTES = _HEADER.size  # 32
_NAME_RE = re.compile(r"^snapshot-(\d{20})\.snap$")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A verified snapshot: state-machine ``data`` covering log ``index``."""

    index: int
    epoch: int
    data: bytes | memoryview  # a memoryview: the file mapped (``map_snapshot_file``)


def snapshot_name(index: int) -> str:
    return f"snapshot-{index:020d}.snap"


def _list_snapshots(directory: Path) -> list[tuple[int, Path]]:
    """Installed snapshot files in ``directory``, sorted by index."""
    found = []
    for name in os.listdir(directory):
        m = _NAME_RE.match(name)
        if m:
            found.append((int(m.group(1)), directory / name))
    found.sort()
    return found


def _checksum(data_crc: int, index: int, epoch: int, length: int) -> int:
    return crc32c(_FIELDS.pack(index, epoch, length), value=data_crc)


class SnapshotWriter:
    """Receives a snapshot in chunks and installs it atomically.

    Usage: ``begin(index, epoch)``, any number of ``write(chunk)``, then
    ``finish()`` (installs and returns the final path) or ``abort()``
    (removes the partial file). Used for a full resync from a leader. As a
    context manager it aborts if the block raises before ``finish()``.

    Invariant: between ``begin`` and ``finish``/``abort`` the data lives only
    in ``snapshot-<index>.snap.tmp``, which ``load_latest_snapshot`` ignores.
    """

    def __init__(self, directory: str | Path, sync_every: int = 0) -> None:
        self.directory = Path(directory)
        self.sync_every = sync_every  # fdatasync each time this many more bytes were written (0: never)
        self._synced = 0  # bytes written when the last of those ran
        self._fd: int | None = None
        self._tmp: Path | None = None
        self._index = 0
        self._epoch = 0
        self._length = 0
        self._crc = 0

    @property
    def active(self) -> bool:
        return self._fd is not None

    @property
    def bytes_written(self) -> int:
        return self._length

    def begin(self, index: int, epoch: int) -> None:
        if self._fd is not None:
            raise RuntimeError("SnapshotWriter.begin() called twice without finish/abort")
        if index < 0 or epoch < 0:
            raise ValueError(f"index and epoch must be >= 0, got {index}, {epoch}")
        private_dir(self.directory)
        self._tmp = self.directory / (snapshot_name(index) + ".tmp")
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        self._index, self._epoch, self._length, self._crc, self._synced = index, epoch, 0, 0, 0
        # Placeholder header; the real one is written by finish() once the
        # length and checksum are known.
        _write_all(self._fd, bytes(HEADER_BYTES))

    def write(self, chunk: bytes | memoryview) -> None:
        if self._fd is None:
            raise RuntimeError("SnapshotWriter.write() before begin()")
        _write_all(self._fd, chunk)
        self._crc = crc32c(chunk, value=self._crc)
        self._length += len(chunk)
        if self.sync_every and self._length - self._synced >= self.sync_every:
            os.fdatasync(self._fd)
            self._synced = self._length

    def finish(self) -> Path:
        """Write the header, fsync, rename into place; return the final path."""
        if self._fd is None or self._tmp is None:
            raise RuntimeError("SnapshotWriter.finish() before begin()")
        fd, tmp = self._fd, self._tmp
        try:
            crc = _checksum(self._crc, self._index, self._epoch, self._length)
            header = _HEADER.pack(SNAPSHOT_MAGIC, crc, self._index, self._epoch, self._length)
            os.pwrite(fd, header, 0)
            os.fsync(fd)
        except BaseException:
            self.abort()
            raise
        os.close(fd)
        self._fd = None
        self._tmp = None
        return _install(self.directory, tmp, self._index)

    def abort(self) -> None:
        """Drop the partial snapshot; a no-op when nothing was begun."""
        fd, tmp = self._fd, self._tmp
        self._fd = None
        self._tmp = None
        if fd is not None:
            os.close(fd)
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            self.abort()


def _install(directory: Path, tmp: Path, index: int) -> Path:
    """Rename a fsynced ``tmp`` snapshot into place; see the module rules."""
    final = directory / snapshot_name(index)
    newer = [p for i, p in _list_snapshots(directory) if i > index]
    for path in reversed(newer):
        os.unlink(path)
    if newer:
        log.warning(
            "snapshot %d installed over %d newer snapshot(s) (full resync); deleted %s",
            index,
            len(newer),
            ", ".join(p.name for p in newer),
        )
        fsync_directory(directory)
    os.replace(tmp, final)
    fsync_directory(directory)
    older = [p for i, p in _list_snapshots(directory) if i < index]
    for path in older:
        os.unlink(path)
    if older:
        fsync_directory(directory)
    return final


# A snapshot being written is synced each time this much more was written (Redis's
# rdb-save-incremental-fsync, 32 MB): the kernel writes it back in steps instead of one burst of
# hundreds of MB at the end, which throttled the node's own WAL writes and fsyncs meanwhile (the
# loop thread waiting in rq_qos_wait, folio_wait_bit, submit_bio_wait: BENCHMARKS.md, session 17)
SYNC_EVERY_BYTES = 32 * 1024 * 1024


def write_snapshot(directory: str | Path, index: int, epoch: int, data: bytes | list[bytes]) -> Path:
    """Atomically install a snapshot of ``data`` covering ``index``; return its path.
    ``data`` may be a list of pieces, written in order (their concatenation is the
    snapshot's data), so a caller need not join them into one copy. Synced every
    ``SYNC_EVERY_BYTES`` as it is written, and once more at the end."""
    writer = SnapshotWriter(directory, sync_every=SYNC_EVERY_BYTES)
    writer.begin(index, epoch)
    try:
        for piece in [data] if isinstance(data, bytes) else data:
            writer.write(piece)
    except BaseException:
        writer.abort()
        raise
    return writer.finish()


def read_snapshot_file(path: str | Path) -> Snapshot:
    """Read and verify one snapshot file; raise ``CorruptSnapshotError`` if bad."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    snap = _verified(path, raw)
    return Snapshot(index=snap.index, epoch=snap.epoch, data=bytes(snap.data))


def map_snapshot_file(path: str | Path, *, just_written: bool = False) -> Snapshot:
    """Map and verify one snapshot file: ``data`` is a read-only view of the
    file's pages, not a copy on the heap (a Raft leader keeps its snapshot to
    send InstallSnapshot chunks from it: issue 15 measured ~42 MB of RSS per 1M
    keys for the copy). The pages read to verify it are released again
    (``release_pages``); the view stays valid after the file is deleted (Linux
    keeps a mapped file's inode). Raises ``CorruptSnapshotError`` if bad.
    ``just_written``: this process wrote and fsynced the file a moment ago and
    computed its checksum as it wrote it; the header, length and name are
    checked but the data is not read again (a pass over a 600 MB snapshot held
    the event loop for a few hundred ms; a restart verifies it whole). The
    checksum pass reads the file with ``pread`` in chunks, not through the
    mapping: mapped pages once read count in the process's RSS until released,
    and during the pass they were the whole file (issue 15's raft leader)."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < HEADER_BYTES:
            raise CorruptSnapshotError(f"{path.name}: {size} bytes, shorter than the header")
        data_crc = None if just_written else _file_crc(f.fileno(), HEADER_BYTES, size)
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    snap = _verified(path, mapped, checksum=not just_written, data_crc=data_crc)
    release_pages(snap.data)
    return snap


_CRC_CHUNK_BYTES = 8 * 1024 * 1024


def _file_crc(fd: int, start: int, end: int) -> int:
    """crc32c of the file's bytes ``start..end``, read with ``pread`` in chunks (page
    cache, never mapped into the process)."""
    crc, pos = 0, start
    while pos < end:
        chunk = os.pread(fd, min(_CRC_CHUNK_BYTES, end - pos), pos)
        if not chunk:
            break  # the file shrank: the length check fails on it
        crc = crc32c(chunk, value=crc)
        pos += len(chunk)
    return crc


def _verified(path: Path, raw: bytes | mmap.mmap, checksum: bool = True, data_crc: int | None = None) -> Snapshot:
    """The snapshot in ``raw`` (a file's whole content) with ``data`` a view of it,
    once its header, length, checksum and name agree; CorruptSnapshotError if not.
    ``data_crc``: the data's crc32c computed already (``_file_crc``), else computed here."""
    if len(raw) < HEADER_BYTES:
        raise CorruptSnapshotError(f"{path.name}: {len(raw)} bytes, shorter than the header")
    magic, crc, index, epoch, length = _HEADER.unpack_from(raw, 0)
    if magic != SNAPSHOT_MAGIC:
        raise CorruptSnapshotError(f"{path.name}: bad magic {magic!r}")
    if length != len(raw) - HEADER_BYTES:
        raise CorruptSnapshotError(
            f"{path.name}: header says {length} data bytes, file holds {len(raw) - HEADER_BYTES}"
        )
    data = memoryview(raw)[HEADER_BYTES:]
    if checksum and _checksum(crc32c(data) if data_crc is None else data_crc, index, epoch, length) != crc:
        raise CorruptSnapshotError(f"{path.name}: checksum mismatch")
    m = _NAME_RE.match(path.name)
    if m and int(m.group(1)) != index:
        raise CorruptSnapshotError(f"{path.name}: header index {index} does not match the name")
    return Snapshot(index=index, epoch=epoch, data=data)


def release_pages(view: bytes | memoryview) -> None:
    """Unmap the pages of a mapped snapshot this process has touched (they stay
    in the page cache and fault in again when read): what was read of it no
    longer counts in the process's RSS. A no-op for bytes."""
    base = view.obj if isinstance(view, memoryview) else None
    if isinstance(base, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        base.madvise(mmap.MADV_DONTNEED)


def releasing_pages(steps: Generator[None, None, T], data: bytes | memoryview) -> Generator[None, None, T]:
    """``steps`` (a decode of ``data`` in steps, kv/dump.py ``load_steps``) with the pages of
    ``data`` each step read released before the next step and at the end (``release_pages``):
    a mapped snapshot file, read once in order, never counts whole in the RSS beside the data
    set being built from it. Returns what ``steps`` returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            release_pages(data)
            result: T = done.value
            return result
        release_pages(data)
        yield


def load_latest_snapshot(directory: str | Path, *, mapped: bool = False) -> Snapshot | None:
    """The newest installed snapshot, verified; None if there is none. With
    ``mapped``, its data is the file mapped (``map_snapshot_file``).

    Raises ``CorruptSnapshotError`` if the newest one is corrupt (no fall-back,
    see the module docstring).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = _list_snapshots(directory)
    if not found:
        return None
    return (map_snapshot_file if mapped else read_snapshot_file)(found[-1][1])


def remove_temp_files(directory: str | Path) -> int:
    """Delete ``*.snap.tmp`` leftovers of interrupted writes; return how many.

    Call at start-up only, while no ``SnapshotWriter`` is active.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    removed = 0
    for name in os.listdir(directory):
        if name.startswith("snapshot-") and name.endswith(".snap.tmp"):
            os.unlink(directory / name)
            removed += 1
    if removed:
        log.info("removed %d interrupted snapshot file(s) in %s", removed, directory)
        fsync_directory(directory)
    return removed


class SnapshotReader:
    """Reads the newest snapshot in chunks, for streaming it to a follower
    without holding it in memory (or reading it whole on an event loop).

    ``open_latest(directory)`` reads only the header; ``chunk(offset, size)``
    reads data with ``pread``; ``verify`` is fed every chunk in order and
    ``check()`` raises ``CorruptSnapshotError`` if the data read does not
    match the header's checksum: a sender calls it before the last chunk
    leaves, so a follower never installs a damaged snapshot.
    """

    def __init__(self, path: Path, index: int, epoch: int, length: int, crc: int) -> None:
        self.path, self.index, self.epoch, self.length = path, index, epoch, length
        self._crc, self._seen, self._running = crc, 0, 0
        self._fd = os.open(path, os.O_RDONLY)

    @staticmethod
    def open_latest(directory: str | Path) -> "SnapshotReader | None":
        directory = Path(directory)
        found = _list_snapshots(directory) if directory.is_dir() else []
        if not found:
            return None
        path = found[-1][1]
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
        if len(head) < HEADER_BYTES:
            raise CorruptSnapshotError(f"{path.name}: shorter than the header")
        magic, crc, index, epoch, length = _HEADER.unpack_from(head, 0)
        if magic != SNAPSHOT_MAGIC:
            raise CorruptSnapshotError(f"{path.name}: bad magic {magic!r}")
        return SnapshotReader(path, index, epoch, length, crc)

    def chunk(self, offset: int, size: int) -> bytes:
        data = os.pread(self._fd, min(size, self.length - offset), HEADER_BYTES + offset)
        if offset == self._seen:  # chunks read in order feed the running checksum
            self._running = crc32c(data, value=self._running)
            self._seen += len(data)
        return data

    def check(self) -> None:
        """All data was read in order: it must match the header's checksum."""
        if self._seen != self.length or _checksum(self._running, self.index, self.epoch, self.length) != self._crc:
            raise CorruptSnapshotError(f"{self.path.name}: checksum mismatch while streaming it")

    def close(self) -> None:
        os.close(self._fd)
