"""The simulator's disk (sim/disk.py): the real WAL record format and
recovery rules over an in-memory file that loses unsynced writes."""

from __future__ import annotations

import random

import pytest

from replikv.sim.disk import SimFile, SimWal
from replikv.storage.errors import CorruptLogError
from replikv.storage.wal import WriteAheadLog, segment_name


def _wal_with(entries: list[list[object]], synced: int) -> SimWal:
    wal = SimWal()
    for i, e in enumerate(entries):
        wal.append_entries(wal.last_index + 1, [e])
        if i + 1 == synced:
            wal.sync()
    return wal


def test_a_crash_loses_what_was_not_synced() -> None:
    wal = _wal_with([["a"], ["b"], ["c"]], synced=2)
    assert wal.durable_index == 2 and wal.last_index == 3
    wal.file.pending.clear()  # the crash without any torn prefix
    wal._marks.clear()
    assert wal.recover() == [["a"], ["b"]]
    assert wal.last_index == 2


def test_a_torn_last_write_is_cut_off_at_recovery() -> None:
    wal = _wal_with([["a"], ["b"], ["c"]], synced=2)
    wal.file.durable += wal.file.pending[:-3]  # the last record reached the disk but for 3 bytes
    wal.file.pending.clear()
    wal._marks.clear()
    size = len(wal.file.durable)
    assert wal.recover() == [["a"], ["b"]]
    assert len(wal.file.durable) < size  # cut, as storage/wal.py cuts a torn tail


def test_a_complete_record_with_a_bad_checksum_is_damage_not_a_torn_write() -> None:
    wal = _wal_with([["a"], ["b"]], synced=2)
    wal.file.durable[-1] ^= 0xFF
    with pytest.raises(CorruptLogError, match="checksum mismatch in a complete record"):
        wal.recover()


def test_the_bytes_are_the_real_wal_format(tmp_path: object) -> None:
    """A file the simulator wrote is read by the real WAL."""
    from pathlib import Path

    wal = _wal_with([["a", 1], ["b", 2], ["c", 3]], synced=3)
    wal.truncate_after(2)
    wal.append_entries(3, [["d", 4]])
    wal.sync()
    d = Path(str(tmp_path))
    (d / segment_name(1)).write_bytes(bytes(wal.file.durable))
    real = WriteAheadLog(d)
    assert [e for _, batch in real.recover() for e in batch] == [["a", 1], ["b", 2], ["d", 4]]
    real.close()


def test_sync_upto_makes_only_the_first_writes_durable() -> None:
    wal = _wal_with([["a"], ["b"], ["c"]], synced=0)
    wal.sync(2)
    assert wal.synced == 2 and wal.durable_index == 2 and wal.dirty
    wal.crash(random.Random(1))
    assert wal.recover() in ([["a"], ["b"]], [["a"], ["b"], ["c"]])  # "c" only if its bytes survived


def test_reset_and_recover_after_a_snapshot() -> None:
    wal = _wal_with([["a"], ["b"]], synced=2)
    wal.reset(10)
    wal.append_entries(10, [["j"]])
    wal.sync()
    assert wal.recover(after_index=9) == [["j"]]
    assert wal.recover(after_index=10) == [] and wal.last_index == 10
    assert wal.recover(after_index=12) == [] and wal.first_index == 13  # all below the snapshot: reset


def test_crash_tears_only_within_the_unsynced_bytes() -> None:
    rng = random.Random(0)
    for _ in range(200):
        f = SimFile(b"durable")
        f.write(b"0123456789")
        f.crash(rng, boundaries=(4, 10))
        data = bytes(f.durable)
        assert data.startswith(b"durable")
        rest = data[len(b"durable"):]
        kept = rest.rstrip(b"\0")
        assert b"0123456789".startswith(kept)
        assert rest == kept or len(kept) in (0, 4)  # zeros only after the end of a write
