"""Snapshots: round trip, corruption detected, atomic replacement, chunked writer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from replikv.storage.errors import CorruptSnapshotError
from replikv.storage.snapshot import (
    HEADER_BYTES,
    Snapshot,
    SnapshotWriter,
    load_latest_snapshot,
    map_snapshot_file,
    release_pages,
    remove_temp_files,
    snapshot_name,
    write_snapshot,
)


def snap_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("snapshot-*"))


def test_round_trip(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    path = write_snapshot(tmp_path, 42, 7, data)
    assert path.name == snapshot_name(42) == "snapshot-00000000000000000042.snap"
    assert path.stat().st_size == HEADER_BYTES + len(data)
    assert load_latest_snapshot(tmp_path) == Snapshot(index=42, epoch=7, data=data)


def test_empty_data_and_missing_directory(tmp_path: Path) -> None:
    assert load_latest_snapshot(tmp_path / "nope") is None
    assert load_latest_snapshot(tmp_path) is None
    write_snapshot(tmp_path, 0, 0, b"")
    assert load_latest_snapshot(tmp_path) == Snapshot(0, 0, b"")


def test_snapshot_is_frozen() -> None:
    snap = Snapshot(1, 1, b"x")
    with pytest.raises(AttributeError):
        snap.index = 2  # type: ignore[misc]


def test_newer_snapshot_replaces_older_ones(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 10, 1, b"ten")
    write_snapshot(tmp_path, 20, 1, b"twenty")
    assert snap_files(tmp_path) == [snapshot_name(20)]
    assert load_latest_snapshot(tmp_path) == Snapshot(20, 1, b"twenty")
    write_snapshot(tmp_path, 20, 2, b"again")  # same index: atomic rename over it
    assert load_latest_snapshot(tmp_path) == Snapshot(20, 2, b"again")


def test_installed_snapshot_wins_over_a_newer_local_one(tmp_path: Path) -> None:
    """Full resync from a leader at a lower index than a divergent local snapshot."""
    write_snapshot(tmp_path, 900, 3, b"divergent")
    write_snapshot(tmp_path, 500, 4, b"leader's")
    assert snap_files(tmp_path) == [snapshot_name(500)]
    assert load_latest_snapshot(tmp_path) == Snapshot(500, 4, b"leader's")


@pytest.mark.parametrize("mapped", [False, True])
@pytest.mark.parametrize("where", ["magic", "crc", "index", "epoch", "length", "data", "last"])
def test_corruption_is_detected(tmp_path: Path, where: str, mapped: bool) -> None:
    path = write_snapshot(tmp_path, 5, 2, b"state machine dump " * 100)
    pos = {"magic": 0, "crc": 5, "index": 9, "epoch": 17, "length": 25, "data": 40}.get(
        where, path.stat().st_size - 1
    )
    raw = bytearray(path.read_bytes())
    raw[pos] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptSnapshotError):
        load_latest_snapshot(tmp_path, mapped=mapped)


@pytest.mark.parametrize("mapped", [False, True])
def test_truncated_snapshot_is_detected(tmp_path: Path, mapped: bool) -> None:
    path = write_snapshot(tmp_path, 5, 2, b"x" * 1000)
    raw = path.read_bytes()
    for cut in (0, 10, HEADER_BYTES, len(raw) - 1):
        path.write_bytes(raw[:cut])
        with pytest.raises(CorruptSnapshotError):
            load_latest_snapshot(tmp_path, mapped=mapped)


def test_a_mapped_snapshot_reads_the_same_and_outlives_its_file(tmp_path: Path) -> None:
    """map_snapshot_file: a view of the file, not a copy; still readable once a newer
    snapshot replaced (deleted) the file, with its pages released and read again."""
    data = os.urandom(300_000)
    write_snapshot(tmp_path, 42, 7, data)
    snap = load_latest_snapshot(tmp_path, mapped=True)
    assert snap is not None and isinstance(snap.data, memoryview) and snap.data.readonly
    assert (snap.index, snap.epoch, bytes(snap.data)) == (42, 7, data)
    write_snapshot(tmp_path, 50, 7, b"newer")
    assert snap_files(tmp_path) == [snapshot_name(50)]
    release_pages(snap.data)
    assert bytes(snap.data[1000:2000]) == data[1000:2000] and len(snap.data) == len(data)
    release_pages(b"bytes: nothing to release")


def test_corrupt_newest_does_not_fall_back_to_an_older_one(tmp_path: Path) -> None:
    old = write_snapshot(tmp_path, 5, 1, b"old")
    saved = old.read_bytes()
    new = write_snapshot(tmp_path, 9, 1, b"new")
    old.write_bytes(saved)  # as if a crash left the older one behind
    new.write_bytes(new.read_bytes()[:-1] + b"?")
    with pytest.raises(CorruptSnapshotError, match=snapshot_name(9)):
        load_latest_snapshot(tmp_path)


def test_file_renamed_to_another_index_is_detected(tmp_path: Path) -> None:
    path = write_snapshot(tmp_path, 5, 1, b"data")
    path.rename(tmp_path / snapshot_name(6))
    with pytest.raises(CorruptSnapshotError, match="does not match"):
        load_latest_snapshot(tmp_path)


def test_chunked_writer_installs_atomically(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 3, 1, b"previous")
    data = os.urandom(300_000)
    writer = SnapshotWriter(tmp_path)
    writer.begin(77, 5)
    for start in range(0, len(data), 65536):
        writer.write(data[start : start + 65536])
        # Until finish() the previous snapshot is the one that loads.
        assert load_latest_snapshot(tmp_path) == Snapshot(3, 1, b"previous")
    assert writer.bytes_written == len(data)
    path = writer.finish()
    assert not writer.active
    assert path.name == snapshot_name(77)
    assert load_latest_snapshot(tmp_path) == Snapshot(77, 5, data)
    assert snap_files(tmp_path) == [snapshot_name(77)]


def test_chunked_writer_same_bytes_as_write_snapshot(tmp_path: Path) -> None:
    data = b"abc" * 1000
    a = write_snapshot(tmp_path / "a", 8, 2, data)
    w = SnapshotWriter(tmp_path / "b")
    w.begin(8, 2)
    w.write(data[:1])
    w.write(memoryview(data)[1:])
    b = w.finish()
    assert a.read_bytes() == b.read_bytes()


def test_abort_leaves_no_trace(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 3, 1, b"previous")
    writer = SnapshotWriter(tmp_path)
    writer.begin(10, 2)
    writer.write(b"partial")
    writer.abort()
    writer.abort()  # idempotent
    assert snap_files(tmp_path) == [snapshot_name(3)]
    assert load_latest_snapshot(tmp_path) == Snapshot(3, 1, b"previous")


def test_writer_context_manager_aborts_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="connection lost"), SnapshotWriter(tmp_path) as writer:
        writer.begin(10, 2)
        writer.write(b"partial")
        raise RuntimeError("connection lost")
    assert snap_files(tmp_path) == []


def test_writer_misuse(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path)
    with pytest.raises(RuntimeError):
        writer.write(b"x")
    with pytest.raises(RuntimeError):
        writer.finish()
    writer.begin(1, 1)
    with pytest.raises(RuntimeError):
        writer.begin(2, 1)
    writer.abort()


def test_interrupted_write_leaves_tmp_that_is_ignored_and_cleaned(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 3, 1, b"previous")
    # What a process that died between begin() and finish() leaves behind:
    (tmp_path / (snapshot_name(10) + ".tmp")).write_bytes(bytes(HEADER_BYTES) + b"partial")
    assert load_latest_snapshot(tmp_path) == Snapshot(3, 1, b"previous")
    assert remove_temp_files(tmp_path) == 1
    assert snap_files(tmp_path) == [snapshot_name(3)]


def test_crash_between_fsync_and_rename_keeps_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_snapshot(tmp_path, 3, 1, b"previous")

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_snapshot(tmp_path, 4, 1, b"next")
    monkeypatch.undo()
    assert load_latest_snapshot(tmp_path) == Snapshot(3, 1, b"previous")


def test_reader_streams_the_latest_snapshot_and_checks_it(tmp_path: Path) -> None:
    from replikv.storage.snapshot import SnapshotReader

    data = bytes(range(256)) * 5000
    write_snapshot(tmp_path, 7, 2, data)
    reader = SnapshotReader.open_latest(tmp_path)
    assert reader is not None and (reader.index, reader.epoch, reader.length) == (7, 2, len(data))
    got = b"".join(reader.chunk(off, 100_000) for off in range(0, len(data), 100_000))
    assert got == data
    reader.check()
    reader.close()
    # a flipped byte is caught before the last chunk would leave
    path = next(tmp_path.glob("snapshot-*.snap"))
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 1
    path.write_bytes(bytes(raw))
    reader = SnapshotReader.open_latest(tmp_path)
    assert reader is not None
    for off in range(0, len(data), 100_000):
        reader.chunk(off, 100_000)
    with pytest.raises(CorruptSnapshotError):
        reader.check()
    reader.close()


def test_a_snapshot_just_written_is_mapped_without_reading_its_data_again(tmp_path: Path) -> None:
    """``just_written``: the header, length and name are checked, the checksum pass is skipped
    (the writer computed it); a load at start-up still verifies the data whole."""
    path = write_snapshot(tmp_path, 42, 7, b"x" * 1000)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # damage the data only
    path.write_bytes(bytes(raw))
    snap = map_snapshot_file(path, just_written=True)
    assert (snap.index, snap.epoch, len(snap.data)) == (42, 7, 1000)
    with pytest.raises(CorruptSnapshotError, match="checksum"):
        map_snapshot_file(path)
    with pytest.raises(CorruptSnapshotError, match="checksum"):
        load_latest_snapshot(tmp_path, mapped=True)
    path.write_bytes(bytes(raw[:-1]))  # a short file: caught either way
    with pytest.raises(CorruptSnapshotError, match="header says"):
        map_snapshot_file(path, just_written=True)


def test_a_snapshot_is_synced_as_it_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Synced every ``sync_every`` bytes written (Redis's rdb-save-incremental-fsync), so the kernel
    writes a large snapshot back in steps; the file reads back whole either way."""
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(os.fstat(fd).st_size), real(fd)))
    w = SnapshotWriter(tmp_path, sync_every=1000)
    w.begin(7, 2)
    for _ in range(6):
        w.write(b"x" * 450)  # 450, 900, 1350 (sync), 1800, 2250 (900 since: none), 2700 (sync)
    w.finish()
    assert synced == [HEADER_BYTES + 1350, HEADER_BYTES + 2700]
    snap = load_latest_snapshot(tmp_path)
    assert snap is not None and bytes(snap.data) == b"x" * 2700
    synced.clear()
    write_snapshot(tmp_path, 8, 2, [b"y" * 10])  # write_snapshot syncs every SYNC_EVERY_BYTES: not here
    assert synced == []
