"""Snapshots of a mode whose snapshot is its whole state (multi-leader, leaderless).

A runner mixes this in beside ``BaseRunner`` and provides ``_state_blob()``
(the whole state, deterministic bytes) and ``_commit_pending()`` (every
change applied so far is in the WAL and written: the snapshot taken right
after covers exactly the WAL up to its last index).

Rules:
- A snapshot is taken at the WAL's last index, after ``_commit_pending``: a
  change applied to the state but not yet in the WAL would otherwise be in
  the snapshot and replayed again from the WAL after it (an increment
  counted twice).
- ``SAVE`` / ``REPLIKV SNAPSHOT`` write it on the loop; ``BGSAVE`` and the
  automatic snapshot (once the WAL grew by ``--snapshot-bytes``) serialize
  it in a forked child (``runtime/snapshotter.py``): the loop never stalls.
- Once a snapshot covering ``index`` is durable the WAL before it is
  dropped (``_compact``).
"""

from __future__ import annotations

import time
from typing import Any

from replikv.core.replies import RespError
from replikv.runtime.memory import return_freed_memory
from replikv.storage.snapshot import write_snapshot

__all__ = ["WholeStateSnapshots"]


class WholeStateSnapshots:
    snapshot_index: int
    _wal_bytes_after_snapshot: int
    wal: Any
    snapshotter: Any
    snapshot_dir: Any
    disk_error: str | None
    lastsave: int
    options: Any

    def _state_blob(self) -> bytes:  # pragma: no cover - provided by the runner
        raise NotImplementedError

    def _commit_pending(self) -> None:  # pragma: no cover - provided by the runner
        raise NotImplementedError

    def _take_snapshot(self) -> int:
        """Snapshot the state at the WAL's last index now, on the loop; drop the WAL before it."""
        if self.snapshotter.running:
            raise RespError("ERR a background snapshot is in progress; try again when it is done")
        self._commit_pending()
        self.wal.fsync_now()
        index: int = self.wal.last_index
        write_snapshot(self.snapshot_dir, index, 0, self._state_blob())
        self._compact(index)
        return index

    def background_snapshot(self) -> bool:
        """BGSAVE, and the automatic snapshot: the state serialized in a forked child."""
        if self.disk_error is not None:
            return False
        self._commit_pending()
        started: bool = self.snapshotter.start(self.wal.last_index, 0, self._state_blob, self._compact)
        return started

    def _snapshot_due(self) -> None:
        """The automatic snapshot, once the WAL grew by --snapshot-bytes since the last one."""
        if self.wal.size_bytes - self._wal_bytes_after_snapshot > self.options.snapshot_bytes:
            self.background_snapshot()

    def _compact(self, index: int) -> None:
        """A snapshot covering ``index`` is durable: drop the WAL before it."""
        self.snapshot_index = max(self.snapshot_index, index)
        self.lastsave = int(time.time())
        if index >= self.wal.first_index:
            self.wal.drop_before(index)
        self._wal_bytes_after_snapshot = self.wal.size_bytes
        return_freed_memory()  # a SAVE's serialized copy of the state (runtime/memory.py)
