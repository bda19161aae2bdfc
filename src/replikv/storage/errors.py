"""Typed errors of the storage layer.

Rule: damage that the storage layer can prove harmless (a torn tail left by a
crash in the middle of an unacknowledged write) is repaired and logged; any
other damage raises one of these errors and is never silently skipped,
because skipping a record could lose a write that was acknowledged.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every storage error."""


class CorruptLogError(StorageError):
    """The write-ahead log is damaged somewhere other than its torn tail.

    ``segment`` is the file name and ``offset`` the byte offset of the first
    bad record (or -1 when the problem concerns the segment as a whole, such
    as a gap between two segment files).
    """

    def __init__(self, segment: str, offset: int, reason: str) -> None:
        self.segment = segment
        self.offset = offset
        self.reason = reason
        where = f"{segment} at byte {offset}" if offset >= 0 else segment
        super().__init__(f"corrupt write-ahead log: {where}: {reason}")


class CorruptSnapshotError(StorageError):
    """A snapshot file fails its header or checksum check."""


class CorruptMetaError(StorageError):
    """The metadata file fails its header or checksum check."""


class WalFailedError(StorageError):
    """The WAL hit an I/O error (a failed write or fsync) and stopped.

    After a failed fsync the kernel may have dropped the dirty pages, so what
    is on disk is unknown (PostgreSQL's "fsyncgate"); the only safe reaction
    is to stop writing and recover from disk in a new process.
    """


class WalBlockedError(WalFailedError):
    """A WAL write failed (a full disk, a quota, EIO) and was rolled back.

    Unlike a failed fsync, the on-disk state is known: the segment was cut
    back to its size before the write, so nothing partial is left behind.
    The records stay buffered in memory, in order; ``WriteAheadLog.retry()``
    writes them once the disk accepts writes again. Until then ``commit`` and
    ``write`` raise this error without touching the disk.
    """


class MissingMetaError(StorageError):
    """The node's metadata (epoch / term and vote) is missing beside data.

    Starting fresh would be unsafe: a raft node could vote twice in one
    term, a leader-follower node would forget the epochs it led. The data
    must be restored, or the node wiped and resynchronised from the cluster.
    """
