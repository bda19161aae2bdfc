"""Opening a node's (or a Raft group's) storage for recovery, the part every mode shares.

In ``directory``: the meta file, the newest snapshot under ``snapshot_dir``
(temp files of an interrupted one removed), and the WAL in ``wal/`` opened
after it. Damage raises a ``StorageError`` (a refusal); so does a missing meta
file beside data: such a node is damaged, not new (it could vote twice in one
term, or forget the epochs it led).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replikv.storage.errors import MissingMetaError
from replikv.storage.meta import MetaStore
from replikv.storage.snapshot import Snapshot, load_latest_snapshot, remove_temp_files
from replikv.storage.wal import WriteAheadLog

__all__ = ["Opened", "open_snapshot", "open_storage", "require_meta"]


@dataclass
class Opened:
    meta_store: MetaStore
    meta: dict[str, Any]
    snapshot: Snapshot | None
    wal: WriteAheadLog
    records: Iterator[tuple[int, list[Any]]]  # the WAL's records after the snapshot, to replay in order


def open_storage(directory: Path, snapshot_dir: Path, *, fsync: str, segment_bytes: int,
                 mapped_snapshot: bool = False) -> Opened:
    meta_store = MetaStore(directory)
    meta = meta_store.load()
    snap = open_snapshot(snapshot_dir, mapped=mapped_snapshot)
    wal = WriteAheadLog(directory / "wal", fsync=fsync, segment_bytes=segment_bytes)
    records = wal.recover(after_index=snap.index if snap else 0)
    require_meta(meta, snap is not None or wal.last_index > 0, str(meta_store.path), str(directory))
    return Opened(meta_store, meta, snap, wal, records)


def open_snapshot(snapshot_dir: Path, *, mapped: bool = False) -> Snapshot | None:
    """The newest snapshot in ``snapshot_dir``, verified, once the temp files of an interrupted
    one are removed; None if there is none."""
    remove_temp_files(snapshot_dir)
    return load_latest_snapshot(snapshot_dir, mapped=mapped)


def require_meta(meta: dict[str, Any], has_data: bool, what: str, where: str) -> None:
    """Refuse (``MissingMetaError``) a node whose hard state (``what``) is missing beside data:
    it is damaged, not new."""
    if not meta and has_data:
        raise MissingMetaError(
            f"{what} is missing beside a non-empty log or snapshot in {where}; "
            "starting fresh could vote twice in one term or forget the epochs this node led")
