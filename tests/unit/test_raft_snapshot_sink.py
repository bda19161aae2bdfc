"""runtime/raft_group.py ``_FileSink``: a follower's InstallSnapshot chunks go straight into
the snapshot file (no copy on the heap); a disk failure goes to the runner's disk guard as a
blocked (retried) write and leaves no partial file."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from replikv.core.raft.messages import Config
from replikv.runtime.raft_app import split_stored
from replikv.runtime.raft_group import _FileSink
from replikv.storage.errors import WalBlockedError
from replikv.storage.snapshot import load_latest_snapshot

CONFIG = Config(voters=frozenset({1, 2, 3}), learners=frozenset())


def group(snapshot_dir: Path) -> SimpleNamespace:
    return SimpleNamespace(snapshot_dir=snapshot_dir, disk_errors=[], snapshot_on_disk=0)


def test_the_chunks_become_the_snapshot_file_and_the_app_part_comes_back_mapped(tmp_path: Path) -> None:
    g = group(tmp_path / "snapshots")
    sink = _FileSink(g, 42, 7, CONFIG)  # type: ignore[arg-type]
    chunks = [bytes([i]) * 100_000 for i in range(5)]
    assert all(sink.write(memoryview(c)) for c in chunks)
    app = sink.finish()
    assert app is not None and bytes(app) == b"".join(chunks)
    assert not isinstance(app.obj, (bytes, bytearray))  # a view of the mapped file, not a heap copy
    assert g.snapshot_on_disk == 42 and g.disk_errors == []
    stored = load_latest_snapshot(g.snapshot_dir)
    assert stored is not None and (stored.index, stored.epoch) == (42, 7)
    voters, learners, again = split_stored(stored.data)
    assert (voters, learners, bytes(again)) == ([1, 2, 3], [], b"".join(chunks))


def test_an_aborted_transfer_leaves_nothing_behind(tmp_path: Path) -> None:
    g = group(tmp_path / "snapshots")
    sink = _FileSink(g, 9, 1, CONFIG)  # type: ignore[arg-type]
    assert sink.write(b"partial")
    sink.abort()
    assert list(g.snapshot_dir.iterdir()) == [] and load_latest_snapshot(g.snapshot_dir) is None


def test_a_disk_that_refuses_the_file_blocks_the_node_and_drops_the_transfer(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")  # the snapshot directory cannot be created: every open fails
    g = group(not_a_dir / "snapshots")
    sink = _FileSink(g, 9, 1, CONFIG)  # type: ignore[arg-type]
    assert sink.write(b"chunk") is False and sink.finish() is None
    (err,) = g.disk_errors
    assert isinstance(err, WalBlockedError) and isinstance(err.__cause__, OSError)
    assert g.snapshot_on_disk == 0
