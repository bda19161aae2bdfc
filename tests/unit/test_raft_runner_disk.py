"""The unsharded raft runner's disk guard (runtime/base.py, runtime/raft_runner.py) when the write
that meets a full disk is the commit index's record, not a WAL write."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path
from typing import Any

import pytest

from replikv.config import ClusterConfig, NodeAddress, NodeOptions
from replikv.runtime.raft_runner import RaftRunner


def _runner(directory: Path) -> RaftRunner:
    node = NodeAddress(id="n1", host="127.0.0.1", port=1, peer_port=2, data_dir=str(directory))
    cfg = ClusterConfig(mode="raft", secret="s", initial_leader="n1", nodes={"n1": node},
                        options=NodeOptions(fsync="always"))
    return RaftRunner(cfg, "n1")


def _full(*_args: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_commit_record_meeting_a_full_disk_blocks_writes_until_it_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record is written whole or not at all (tmp file, rename), so its failure is the disk
    guard's "blocked": writes refused, retried once a second, resumed once the record (and the WAL)
    can be written. Taken as fatal, it stopped the node's writes until a restart whenever it met
    the full disk before a WAL write did (session 31: test_full_disk.py in a loaded clean clone)."""
    r = _runner(tmp_path / "n1")

    async def scenario() -> None:
        r.loop = asyncio.get_running_loop()
        monkeypatch.setattr("replikv.runtime.base.DISK_RETRY_S", 3600)  # the test retries by hand
        failed: asyncio.Future[None] = r.loop.create_future()
        failed.set_exception(OSError(errno.ENOSPC, "No space left on device"))
        r._recording = failed
        r._commit_recorded(failed)
        assert r.disk_error == "No space left on device"
        assert r.disk_error_fatal is False
        assert r._recording is None
        monkeypatch.setattr(r.group, "record_commit", _full)  # the disk still full: still blocked
        assert r._retry_mode_storage() is False
        monkeypatch.undo()
        assert r._retry_mode_storage() is True  # space again: the record is written, writes resume
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()
    try:
        asyncio.run(scenario())
    finally:
        r.wal.close()
