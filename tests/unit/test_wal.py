"""WriteAheadLog: replay, torn tails, corruption, truncation, compaction, reset,
fsync policies, I/O failure, and a SIGKILL crash test in a child process."""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import random
import selectors
import shutil
import signal
import subprocess
import sys
import time
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from replikv.storage.errors import CorruptLogError, WalBlockedError, WalFailedError
from replikv.storage.wal import (
    plan_repair,
    HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
    SEGMENT_MAGIC,
    INTENT_FILE,
    WriteAheadLog,
    encode_record,
    segment_name,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wal_crash_child import crash_entry

BATCHES = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]  # sum 44


def entry(index: int, epoch: int = 1) -> list[Any]:
    return [epoch, [b"SET", f"k{index}".encode(), b"v" * (index % 17)]]


def open_wal(
    directory: Path, after_index: int = 0, **kw: Any
) -> tuple[WriteAheadLog, list[tuple[int, list[Any]]]]:
    wal = WriteAheadLog(directory, **kw)
    records = list(wal.recover(after_index=after_index))
    return wal, records


def flatten(records: list[tuple[int, list[Any]]]) -> list[tuple[int, Any]]:
    out = []
    expected = None
    for first, entries in records:
        assert expected is None or first == expected, "records not consecutive"
        out.extend((first + k, e) for k, e in enumerate(entries))
        expected = first + len(entries)
    return out


def fill(wal: WriteAheadLog, batches: list[int], epoch: int = 1, commit_every: int = 1) -> None:
    for n, size in enumerate(batches, 1):
        start = wal.last_index + 1
        wal.append_entries(start, [entry(i, epoch) for i in range(start, start + size)])
        if n % commit_every == 0:
            wal.commit()
    wal.commit()


def expected(first: int, last: int, epoch: int = 1) -> list[tuple[int, Any]]:
    return [(i, entry(i, epoch)) for i in range(first, last + 1)]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("wal-*.log"))


def record_offsets(data: bytes) -> list[int]:
    """Start offsets of the records in a clean segment's bytes (header and seal skipped)."""
    offsets, pos = [], SEGMENT_HEADER_BYTES if data[:4] == SEGMENT_MAGIC else 0
    while pos < len(data) and data[pos : pos + 4] != b"RKWN":
        offsets.append(pos)
        length = int.from_bytes(data[pos + 8 : pos + 12], "little")
        pos += HEADER_BYTES + length
    return offsets


# --------------------------------------------------------------- round trips


def test_fresh_directory_is_an_empty_log(tmp_path: Path) -> None:
    wal, records = open_wal(tmp_path / "wal")
    assert records == []
    assert (wal.first_index, wal.last_index, wal.size_bytes, wal.dirty) == (1, 0, 0, 0)
    wal.close()


def test_replay_returns_exactly_what_was_appended_across_rollovers_and_reopen(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    batches = [rng.randint(1, 30) for _ in range(120)]
    wal, _ = open_wal(tmp_path, fsync="no", segment_bytes=2048)
    fill(wal, batches, commit_every=3)
    total = sum(batches)
    assert wal.last_index == total
    assert len(segments(tmp_path)) > 5
    assert wal.size_bytes == sum(p.stat().st_size for p in segments(tmp_path))
    wal.close()

    wal, records = open_wal(tmp_path, segment_bytes=2048)
    assert [len(e) for _, e in records] == batches  # one record per batch
    assert flatten(records) == expected(1, total)
    fill(wal, [4, 4])
    wal.close()
    _, records = open_wal(tmp_path)
    assert flatten(records) == expected(1, total + 8)


def test_segment_names_are_first_indexes(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=1)  # every commit after the first rolls over
    fill(wal, [2, 3, 4])
    wal.close()
    assert [p.name for p in segments(tmp_path)] == [segment_name(i) for i in (1, 3, 6)]


def test_append_rejects_wrong_index_and_empty_record(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    with pytest.raises(ValueError):
        wal.append(2, msgpack.packb([entry(2)]), 1)
    with pytest.raises(ValueError):
        wal.append(1, msgpack.packb([]), 0)
    wal.append(1, msgpack.packb([entry(1)]), 1)
    with pytest.raises(ValueError):
        wal.append(1, msgpack.packb([entry(1)]), 1)
    assert wal.last_index == 1 and wal.written_index == 0
    wal.close()


def test_append_before_recover_is_refused(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    with pytest.raises(RuntimeError):
        wal.append(1, msgpack.packb([1]), 1)


def test_append_makes_no_system_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = open_wal(tmp_path)
    for name in ("write", "fsync", "open", "pwrite"):
        monkeypatch.setattr(os, name, _forbidden(name))
    wal.append_entries(1, [entry(1), entry(2)])
    assert wal.buffered_bytes > HEADER_BYTES
    monkeypatch.undo()
    wal.close()


def _forbidden(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"os.{name} called")

    return call


def test_bad_fsync_policy_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        WriteAheadLog(tmp_path, fsync="sometimes")


# ----------------------------------------------------------------- torn tails


def _log_with_big_last_record(directory: Path) -> tuple[bytes, int]:
    """A one-segment log of 5 records whose last record is ~250 bytes;
    returns the file bytes and the offset of the last record."""
    wal, _ = open_wal(directory, fsync="no")
    fill(wal, [2, 3, 1, 4])
    wal.append_entries(11, [entry(i) for i in range(11, 23)])
    wal.commit()
    wal.close()
    (seg,) = segments(directory)
    data = seg.read_bytes()
    return data, record_offsets(data)[-1]


def test_torn_tail_at_every_byte_of_the_last_record_keeps_all_complete_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, last = _log_with_big_last_record(tmp_path / "src")
    assert len(data) - last > 200
    for cut in range(last, len(data)):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / segment_name(1)).write_bytes(data[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="replikv.storage.wal"):
            wal, records = open_wal(d)
        assert flatten(records) == expected(1, 10), cut
        assert wal.last_index == 10
        assert (d / segment_name(1)).stat().st_size == last
        if cut > last:
            assert f"dropped {cut - last} bytes" in caplog.text
        # The repaired log takes appends at the right place and stays clean.
        fill(wal, [2])
        wal.close()
        _, records = open_wal(d)
        assert flatten(records) == expected(1, 12)
        shutil.rmtree(d)


def test_bad_checksum_in_a_complete_last_record_is_refused_not_truncated(tmp_path: Path) -> None:
    """A complete record that fails its checksum may have been fsynced and
    acknowledged: refused with the file and offset, and the file left alone
    (issue 11: only a genuinely torn record is ever truncated)."""
    data, last = _log_with_big_last_record(tmp_path)
    for pos in (last + 4, last + 12, last + 20, last + HEADER_BYTES + 5, len(data) - 1):
        broken = bytearray(data)
        broken[pos] ^= 0x40
        (tmp_path / segment_name(1)).write_bytes(bytes(broken))
        with pytest.raises(CorruptLogError, match="checksum mismatch in a complete record") as info:
            open_wal(tmp_path)
        assert (info.value.segment, info.value.offset) == (segment_name(1), last), pos
        assert (tmp_path / segment_name(1)).read_bytes() == bytes(broken)


def test_trailing_zeros_after_a_crash_are_truncated(tmp_path: Path) -> None:
    data, _ = _log_with_big_last_record(tmp_path)
    for zeros in (1, HEADER_BYTES - 1, HEADER_BYTES, 4096):
        (tmp_path / segment_name(1)).write_bytes(data + bytes(zeros))
        wal, records = open_wal(tmp_path)
        assert flatten(records) == expected(1, 22)
        assert (tmp_path / segment_name(1)).stat().st_size == len(data)
        wal.close()


def test_torn_first_record_of_a_new_segment(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=1)
    fill(wal, [3, 4])
    wal.close()
    last_seg = segments(tmp_path)[-1]
    assert last_seg.name == segment_name(4)
    last_seg.write_bytes(last_seg.read_bytes()[: SEGMENT_HEADER_BYTES + 10])
    wal, records = open_wal(tmp_path)
    assert flatten(records) == expected(1, 3)
    assert last_seg.stat().st_size == SEGMENT_HEADER_BYTES
    fill(wal, [2])  # goes into the now-empty wal-4
    wal.close()
    _, records = open_wal(tmp_path)
    assert flatten(records) == expected(1, 5)


# ----------------------------------------------------------------- corruption


def test_flipped_byte_in_an_earlier_record_raises_with_segment_and_offset(
    tmp_path: Path,
) -> None:
    data, _ = _log_with_big_last_record(tmp_path)
    offsets = record_offsets(data)
    for rec_start, rec_end in itertools.pairwise(offsets):
        for pos in (rec_start + 1, rec_start + 9, rec_start + 17, rec_end - 1):
            broken = bytearray(data)
            broken[pos] ^= 0x01
            (tmp_path / segment_name(1)).write_bytes(bytes(broken))
            with pytest.raises(CorruptLogError) as info:
                open_wal(tmp_path)
            assert info.value.segment == segment_name(1)
            assert info.value.offset == rec_start
            assert segment_name(1) in str(info.value)
    # The corrupt file was left alone.
    assert (tmp_path / segment_name(1)).stat().st_size == len(data)


def test_damage_in_an_earlier_segment_raises(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=300)
    fill(wal, BATCHES)
    wal.close()
    segs = segments(tmp_path)
    assert len(segs) >= 3
    original = segs[0].read_bytes()
    # A flipped byte in the last record of a non-last segment is not a torn tail.
    last = record_offsets(original)[-1]
    broken = bytearray(original)
    broken[last + HEADER_BYTES] ^= 0xFF
    segs[0].write_bytes(bytes(broken))
    with pytest.raises(CorruptLogError) as info:
        open_wal(tmp_path)
    assert info.value.segment == segs[0].name and info.value.offset == last
    # A non-last segment cut short into its records is not a torn tail either (a cut
    # within its seal is: a crash while sealing, see test_a_seal_cut_short_by_a_crash...).
    segs[0].write_bytes(original[: -(HEADER_BYTES + 3)])
    with pytest.raises(CorruptLogError):
        open_wal(tmp_path)


def test_missing_middle_segment_is_a_gap(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=300)
    fill(wal, BATCHES)
    wal.close()
    segs = segments(tmp_path)
    segs[1].unlink()
    with pytest.raises(CorruptLogError, match="gap"):
        open_wal(tmp_path)


def test_valid_record_with_wrong_index_is_corruption_even_at_the_tail(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    fill(wal, [2, 2])
    wal.close()
    seg = tmp_path / segment_name(1)
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(encode_record(7, msgpack.packb([entry(7)]), 1))
    with pytest.raises(CorruptLogError, match="gap") as info:
        open_wal(tmp_path)
    assert info.value.offset == size


def test_bad_record_followed_by_valid_record_in_last_segment_raises(tmp_path: Path) -> None:
    data, _ = _log_with_big_last_record(tmp_path)
    offsets = record_offsets(data)
    broken = bytearray(data)
    broken[offsets[-2] : offsets[-2] + 8] = bytes(8)  # wipe the header of record 4
    (tmp_path / segment_name(1)).write_bytes(bytes(broken))
    with pytest.raises(CorruptLogError, match="followed by a valid record"):
        open_wal(tmp_path)


def test_count_mismatch_with_valid_checksum_raises(tmp_path: Path) -> None:
    (tmp_path / segment_name(1)).write_bytes(encode_record(1, msgpack.packb([1, 2]), 3))
    wal = WriteAheadLog(tmp_path)
    with pytest.raises(CorruptLogError, match="3 entries"):
        list(wal.recover())


# ------------------------------------------------------------------ truncation


@pytest.mark.parametrize("buffered", [False, True])
def test_truncate_after_every_index_then_append_continues(tmp_path: Path, buffered: bool) -> None:
    total = sum(BATCHES)
    for index in range(total + 1):
        d = tmp_path / f"t{index}"
        wal, _ = open_wal(d, fsync="no", segment_bytes=500)
        fill(wal, BATCHES[:-2])
        if buffered:  # the last batches are still in the buffer
            for size in BATCHES[-2:]:
                start = wal.last_index + 1
                wal.append_entries(start, [entry(i) for i in range(start, start + size)])
        else:
            fill(wal, BATCHES[-2:])
        assert wal.last_index == total
        wal.truncate_after(index)
        assert wal.last_index == index
        assert not (d / INTENT_FILE).exists()
        fill(wal, [3], epoch=2)
        wal.close()
        _, records = open_wal(d)
        assert flatten(records) == expected(1, index) + expected(index + 1, index + 3, epoch=2)
        shutil.rmtree(d)


def test_truncate_after_at_or_beyond_last_index_is_a_noop(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    fill(wal, [3])
    wal.truncate_after(3)
    wal.truncate_after(10)
    assert wal.last_index == 3
    wal.close()


def test_truncate_into_compacted_entries_is_refused(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=300)
    fill(wal, BATCHES)
    wal.drop_before(20)
    assert wal.first_index == 21
    with pytest.raises(ValueError):
        wal.truncate_after(19)
    wal.truncate_after(20)  # removes everything still wanted; next append is 21
    assert wal.last_index == 20
    fill(wal, [2], epoch=3)
    wal.close()
    _, records = open_wal(tmp_path, after_index=20)
    assert flatten(records) == expected(21, 22, epoch=3)


class Crash(BaseException):
    """Simulated power cut: raised from inside an os call, never caught."""


@contextlib.contextmanager
def crash_at(call_number: int) -> Iterator[list[int]]:
    """Raise ``Crash`` at the ``call_number``-th mutating os call (0-based);
    yields a one-item list holding how many calls were made."""
    names = ("write", "pwrite", "fsync", "ftruncate", "unlink", "replace", "rename")
    originals = {name: getattr(os, name) for name in names}
    seen = [0]

    def wrap(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if seen[0] == call_number:
                raise Crash(name)
            seen[0] += 1
            return originals[name](*args, **kwargs)

        return call

    for name in names:
        setattr(os, name, wrap(name))
    try:
        yield seen
    finally:
        for name, fn in originals.items():
            setattr(os, name, fn)


@pytest.mark.parametrize("index", [0, 5, 8, 20, 43])
def test_truncate_after_crash_at_any_step_leaves_old_or_new_log(tmp_path: Path, index: int) -> None:
    total = sum(BATCHES)
    old, new = expected(1, total), expected(1, index)
    outcomes = set()
    step = 0
    while True:
        d = tmp_path / f"s{step}"
        wal, _ = open_wal(d, fsync="always", segment_bytes=400)
        fill(wal, BATCHES)
        crashed = True
        with crash_at(step):
            try:
                wal.truncate_after(index)
                crashed = False
            except Crash:
                pass
        _, records = open_wal(d)
        got = flatten(records)
        assert got in (old, new), step
        outcomes.add("old" if got == old else "new")
        if not crashed:
            break
        step += 1
    assert outcomes == {"old", "new"} and step > 5  # interrupted before and after the commit point


def test_reset_crash_at_any_step_leaves_old_or_new_log(tmp_path: Path) -> None:
    total = sum(BATCHES)
    outcomes = set()
    step = 0
    while True:
        d = tmp_path / f"s{step}"
        wal, _ = open_wal(d, fsync="always", segment_bytes=400)
        fill(wal, BATCHES)
        crashed = True
        with crash_at(step):
            try:
                wal.reset(100)
                crashed = False
            except Crash:
                pass
        try:
            records = list(WriteAheadLog(d).recover())
        except CorruptLogError:  # the new log starts at 100 (this recover finished the reset)
            assert [p.name for p in segments(d)] == [segment_name(100)], step
            wal2 = WriteAheadLog(d)
            assert list(wal2.recover(after_index=99)) == [] and wal2.last_index == 99
            outcomes.add("new")
        else:
            assert flatten(records) == expected(1, total), step
            outcomes.add("old")
        if not crashed:
            break
        step += 1
    assert outcomes == {"old", "new"} and step > 3


def test_corrupt_intent_file_raises(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    fill(wal, [2])
    wal.close()
    (tmp_path / INTENT_FILE).write_bytes(b"RKWI\0\0\0\0garbage")
    with pytest.raises(CorruptLogError, match="intent"):
        open_wal(tmp_path)


# ------------------------------------------------------- compaction and reset


def test_drop_before_deletes_whole_segments_and_recover_skips_older_entries(
    tmp_path: Path,
) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=400)
    fill(wal, BATCHES)
    total = wal.last_index
    before = [p.name for p in segments(tmp_path)]
    size_before = wal.size_bytes
    firsts = [int(p.name[4:24]) for p in segments(tmp_path)]
    snap = firsts[2] + 1  # inside the third segment
    wal.drop_before(snap)
    assert wal.first_index == snap + 1
    wal.deletions_done()  # the files go on the WAL's deletion worker
    after = [p.name for p in segments(tmp_path)]
    assert after == before[2:]
    assert wal.size_bytes == sum(p.stat().st_size for p in segments(tmp_path)) < size_before
    wal.close()

    wal, records = open_wal(tmp_path, after_index=snap)
    assert records[0][0] == snap + 1  # the straddling record was trimmed
    assert flatten(records) == expected(snap + 1, total)
    assert wal.first_index == snap + 1
    fill(wal, [2])
    wal.close()
    # Without the snapshot's index the log has a hole at its start.
    with pytest.raises(CorruptLogError, match="needed"):
        open_wal(tmp_path)


def test_drop_before_never_deletes_the_current_segment(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=400)
    fill(wal, BATCHES)
    total = wal.last_index
    wal.drop_before(total)
    wal.deletions_done()
    assert len(segments(tmp_path)) == 1
    assert wal.first_index == total + 1
    with pytest.raises(ValueError):
        wal.drop_before(total + 1)
    fill(wal, [1])
    wal.close()
    _, records = open_wal(tmp_path, after_index=total)
    assert flatten(records) == expected(total + 1, total + 1)


def test_recover_past_the_end_of_the_log_resets_it(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    fill(wal, [5])
    wal.close()
    wal, records = open_wal(tmp_path, after_index=50)
    assert records == [] and (wal.first_index, wal.last_index) == (51, 50)
    fill(wal, [2])
    wal.close()
    _, records = open_wal(tmp_path, after_index=50)
    assert flatten(records) == expected(51, 52)


def test_recover_into_empty_directory_with_snapshot_index(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, after_index=30)
    assert (wal.first_index, wal.last_index) == (31, 30)
    fill(wal, [1])
    wal.close()
    assert [p.name for p in segments(tmp_path)] == [segment_name(31)]


def test_reset_is_durable_and_appends_resume_at_next_index(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=300)
    fill(wal, BATCHES)
    wal.append_entries(wal.last_index + 1, [entry(0)])  # buffered, discarded by reset
    wal.reset(1000)
    assert (wal.first_index, wal.last_index, wal.size_bytes) == (1000, 999, SEGMENT_HEADER_BYTES)
    assert [p.name for p in segments(tmp_path)] == [segment_name(1000)]
    wal.close()
    # The empty segment remembers where the log resumes, even with no append.
    wal, records = open_wal(tmp_path, after_index=999)
    assert records == [] and wal.last_index == 999
    fill(wal, [3])
    wal.close()
    _, records = open_wal(tmp_path, after_index=999)
    assert flatten(records) == expected(1000, 1002)


def test_reset_backwards(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    fill(wal, BATCHES)
    wal.reset(5)
    fill(wal, [2], epoch=9)
    wal.close()
    _, records = open_wal(tmp_path, after_index=4)
    assert flatten(records) == expected(5, 6, epoch=9)


# ---------------------------------------------------------------- fsync policy


class FsyncCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = os.fsync

        def counting(fd: int) -> None:
            self.calls += 1
            real(fd)

        monkeypatch.setattr(os, "fsync", counting)


def test_always_fsyncs_once_per_commit_whatever_the_number_of_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal, _ = open_wal(tmp_path, fsync="always")
    counter = FsyncCounter(monkeypatch)
    for commit_no, records in enumerate([1, 7, 30, 2], 1):
        for _ in range(records):
            wal.append_entries(wal.last_index + 1, [entry(0)] * 3)
        if commit_no > 1:  # the first commit also creates wal-1 and fsyncs the directory
            before = counter.calls
        wal.commit()
        if commit_no > 1:
            assert counter.calls == before + 1
        assert wal.dirty == 0 and wal.durable_index == wal.last_index
    before = counter.calls
    wal.commit()  # nothing buffered, nothing dirty: no fsync
    assert counter.calls == before
    wal.close()


def test_no_never_fsyncs_on_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = open_wal(tmp_path, fsync="no")
    wal.append_entries(1, [entry(1)])
    wal.commit()  # creates the first segment (directory fsync)
    counter = FsyncCounter(monkeypatch)
    for _ in range(50):
        wal.append_entries(wal.last_index + 1, [entry(0)] * 4)
        wal.commit()
    assert counter.calls == 0
    assert wal.dirty > 0 and wal.durable_index == 0 and wal.written_index == wal.last_index
    wal.fsync_now()
    assert counter.calls == 1 and wal.dirty == 0 and wal.durable_index == wal.last_index
    wal.close()


def test_rollover_fsyncs_the_previous_segment_even_with_policy_no(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal, _ = open_wal(tmp_path, fsync="no", segment_bytes=200)
    fill(wal, [1])
    counter = FsyncCounter(monkeypatch)
    fill(wal, [10])  # still in wal-1: no fsync
    assert counter.calls == 0
    # wal-1 is over 200 bytes: fsync it; create wal-12 whole (fsync its header,
    # then the directory); seal wal-1 (fsync)
    fill(wal, [1])
    assert counter.calls == 4
    assert wal.durable_index == 11
    wal.close()


class GatedFsync:
    """os.fsync held until ``gate`` is set when called off the test's thread (the WAL's sync
    thread), so a test sees a background fsync while it runs; counts every call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls = 0
        self.background = 0  # calls off the test's thread
        self.error: OSError | None = None
        real, owner = os.fsync, threading.get_ident()

        def gated(fd: int) -> None:
            self.calls += 1
            if threading.get_ident() != owner:
                self.background += 1
                self.started.set()
                assert self.gate.wait(10)
                if self.error is not None:
                    raise self.error
            real(fd)

        monkeypatch.setattr(os, "fsync", gated)


def test_everysec_commit_never_fsyncs_the_timer_syncs_in_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """everysec: commit only writes; sync_in_background fsyncs on the sync thread and
    durable_index moves only when the owner collects it, to what was written when it
    started (the records written meanwhile stay dirty)."""
    wal, _ = open_wal(tmp_path, fsync="everysec")
    fill(wal, [1])  # creates wal-1
    fsyncs = GatedFsync(monkeypatch)
    fill(wal, [2, 3])
    assert fsyncs.calls == 0 and wal.dirty > 0 and wal.durable_index == 0
    future = wal.sync_in_background()
    assert future is not None and fsyncs.started.wait(10)
    fill(wal, [4])  # written while the fsync runs: not covered by it
    dirty_after = wal.dirty
    assert wal.sync_in_background() is None and wal.delayed_fsyncs == 1  # one at a time
    wal.collect_background_sync()  # still running: nothing credited
    assert wal.durable_index == 0
    fsyncs.gate.set()
    future.result(10)
    wal.collect_background_sync()
    assert wal.durable_index == 6 and wal.written_index == 10 and wal.fsyncs == 1
    assert 0 < wal.dirty < dirty_after  # the 4 entries written meanwhile
    future = wal.sync_in_background()
    assert future is not None
    future.result(10)
    wal.collect_background_sync()
    assert wal.durable_index == 10 and wal.dirty == 0
    assert wal.sync_in_background() is None and wal.delayed_fsyncs == 1  # nothing dirty
    wal.close()


def test_everysec_fsyncs_a_nearly_full_segment_in_background_once_before_its_roll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """_presync: at three quarters of segment_bytes the segment is fsynced on the sync
    thread (once), so the roll's own fsync of it on the owner's thread finds little to do."""
    wal, _ = open_wal(tmp_path, fsync="everysec", segment_bytes=4000)
    fill(wal, [1])
    fsyncs = GatedFsync(monkeypatch)
    while not fsyncs.started.is_set():
        assert wal.segment_count == 1, "rolled before any background fsync"
        fill(wal, [1])
    assert wal.segment_starts == [1] and wal.size_bytes >= 3000
    mark = wal.written_index
    fsyncs.gate.set()
    deadline = time.monotonic() + 10
    while wal.durable_index < mark:
        assert time.monotonic() < deadline
        wal.collect_background_sync()
    assert wal.durable_index == mark
    while wal.segment_count == 1:
        fill(wal, [1])
    assert fsyncs.background == 1  # once for the segment
    assert wal.durable_index == wal.segment_starts[1] - 1  # the roll fsynced the rest
    wal.close()


@pytest.mark.parametrize("between", ["fsync_now", "truncate_after", "reset"])
def test_a_background_fsync_overtaken_credits_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, between: str
) -> None:
    """A synchronous fsync, a truncation or a reset between the start and the collection
    of a background fsync made (at least) as much durable; crediting the old mark after
    them would count entries written since as durable, or entries that were cut."""
    wal, _ = open_wal(tmp_path, fsync="everysec")
    fill(wal, [1])
    fsyncs = GatedFsync(monkeypatch)
    fill(wal, [5])
    future = wal.sync_in_background()
    assert future is not None and fsyncs.started.wait(10)
    if between == "fsync_now":
        wal.fsync_now()
        expected = 6
    elif between == "truncate_after":
        wal.truncate_after(3)
        expected = 3
    else:
        wal.reset(20)
        expected = 19
    fill(wal, [2])  # written after: not durable
    fsyncs.gate.set()
    future.result(10)
    wal.collect_background_sync()
    assert wal.durable_index == expected and wal.dirty > 0
    wal.close()


def test_a_failed_background_fsync_fails_the_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fsyncgate: after a failed fsync what is on disk is unknown, off the loop or on it."""
    wal, _ = open_wal(tmp_path, fsync="everysec")
    fill(wal, [1])
    fsyncs = GatedFsync(monkeypatch)
    fill(wal, [1])
    fsyncs.error = OSError(errno.EIO, "Input/output error")
    future = wal.sync_in_background()
    assert future is not None
    fsyncs.gate.set()
    with pytest.raises(OSError):
        future.result(10)
    with pytest.raises(WalFailedError, match="fsync failed"):
        wal.collect_background_sync()
    assert wal.failed is not None and wal.durable_index == 0
    with pytest.raises(WalFailedError):
        wal.append_entries(wal.last_index + 1, [entry(0)])
    wal.close()


def test_close_after_a_failed_background_fsync_does_not_fsync_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A background fsync that failed and was never collected still fails the WAL at close:
    after a failed fsync the kernel may have dropped the pages, so a second fsync's success
    would say nothing (fsyncgate)."""
    wal, _ = open_wal(tmp_path, fsync="everysec")
    fill(wal, [1])
    fsyncs = GatedFsync(monkeypatch)
    fill(wal, [1])
    fsyncs.error = OSError(errno.EIO, "Input/output error")
    assert wal.sync_in_background() is not None and fsyncs.started.wait(10)
    calls = fsyncs.calls
    fsyncs.gate.set()
    wal.close()
    assert wal.failed is not None and fsyncs.calls == calls  # no fsync after the failed one


def test_close_waits_for_a_background_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = open_wal(tmp_path, fsync="everysec")
    fill(wal, [3])
    fsyncs = GatedFsync(monkeypatch)
    fill(wal, [2])
    assert wal.sync_in_background() is not None and fsyncs.started.wait(10)
    threading.Timer(0.05, fsyncs.gate.set).start()
    wal.close()  # waits, then fsyncs itself
    assert fsyncs.gate.is_set()
    reopened, _ = open_wal(tmp_path, fsync="everysec")
    assert reopened.last_index == 5
    reopened.close()


# ------------------------------------------------------------------ I/O errors


def test_failed_write_is_rolled_back_and_kept_until_retry_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk: the half-written record is cut off, the records stay
    buffered (more may queue behind them), commit refuses without I/O while
    blocked, and retry() writes all of them in order once the disk has room."""
    wal, _ = open_wal(tmp_path, fsync="always")
    fill(wal, [3])
    size_before = wal.size_bytes
    real_write = os.write
    calls = [0]

    def half_then_enospc(fd: int, data: Any) -> int:
        calls[0] += 1
        if len(data) > 10:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_enospc)
    wal.append_entries(4, [entry(4), entry(5)])
    with pytest.raises(WalBlockedError, match="No space left on device"):
        wal.commit()
    assert isinstance(wal.blocked, OSError) and wal.blocked.errno == errno.ENOSPC
    assert wal.failed is None
    assert (wal.written_index, wal.durable_index, wal.last_index) == (3, 3, 5)
    wal.append_entries(6, [entry(6)])  # queues behind the blocked records
    tried = calls[0]
    with pytest.raises(WalBlockedError):
        wal.commit()
    with pytest.raises(WalBlockedError):
        wal.write()
    assert calls[0] == tried  # refused without touching the disk
    assert not wal.retry()  # the disk is still full
    assert wal.blocked is not None and wal.written_index == 3
    # the half-written record was cut off: the files hold exactly entries 1..3
    assert sum(p.stat().st_size for p in segments(tmp_path)) == size_before == wal.size_bytes
    monkeypatch.undo()
    assert wal.retry()
    assert wal.blocked is None
    assert (wal.written_index, wal.durable_index, wal.last_index) == (6, 6, 6)
    wal.append_entries(7, [entry(7)])
    wal.commit()
    wal.close()
    _, records = open_wal(tmp_path)
    assert flatten(records) == expected(1, 7)


def blocked_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: int) -> WriteAheadLog:
    """A WAL holding entries 1..written on disk and the next one blocked by a full disk."""
    wal, _ = open_wal(tmp_path, fsync="always")
    fill(wal, [written])

    def enospc(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", enospc)
    wal.append_entries(written + 1, [entry(written + 1)])
    with pytest.raises(WalBlockedError):
        wal.commit()
    return wal


def test_a_crash_while_blocked_keeps_exactly_the_written_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked_wal(tmp_path, monkeypatch, 2)
    # no close(): the process dies with the records still buffered
    _, records = open_wal(tmp_path)
    assert flatten(records) == expected(1, 2)


def test_failed_segment_creation_blocks_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal, _ = open_wal(tmp_path, fsync="always", segment_bytes=1)
    fill(wal, [1])
    real_open = os.open

    def no_new_files(path: Any, flags: int, *args: Any) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_new_files)
    wal.append_entries(2, [entry(2)])
    with pytest.raises(WalBlockedError, match="cannot create WAL segment"):
        wal.commit()
    assert not wal.retry()
    monkeypatch.undo()
    assert wal.retry()
    wal.close()
    _, records = open_wal(tmp_path)
    assert flatten(records) == expected(1, 2)


def test_close_while_blocked_does_not_raise_and_keeps_the_written_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = blocked_wal(tmp_path, monkeypatch, 2)
    wal.close()
    monkeypatch.undo()
    _, records = open_wal(tmp_path)
    assert flatten(records) == expected(1, 2)


def test_truncate_refused_while_blocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal = blocked_wal(tmp_path, monkeypatch, 3)
    with pytest.raises(WalBlockedError):
        wal.truncate_after(2)
    monkeypatch.undo()
    assert wal.retry()
    wal.truncate_after(2)
    wal.close()
    _, records = open_wal(tmp_path)
    assert flatten(records) == expected(1, 2)


def test_failed_fsync_stops_the_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = open_wal(tmp_path, fsync="always")
    fill(wal, [1])

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", eio)
    wal.append_entries(2, [entry(2)])
    with pytest.raises(WalFailedError):
        wal.commit()
    assert wal.durable_index == 1
    monkeypatch.undo()
    with pytest.raises(WalFailedError):
        wal.fsync_now()
    wal.close()


# ------------------------------------------------------------------ crash test

CHILD = Path(__file__).resolve().parent / "wal_crash_child.py"


def _read_lines_until(proc: subprocess.Popen[bytes], want: int, deadline: float) -> list[int]:
    """Committed indexes printed by the child, read until ``want`` lines or the deadline."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    lines: list[int] = []
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while len(lines) < want:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"child printed only {len(lines)} lines before the deadline")
            if not sel.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"child exited early with {proc.wait()}")
            buf += chunk
            *done, buf = buf.split(b"\n")
            lines.extend(int(x) for x in done)
    return lines


@pytest.mark.integration  # kills a child process
@pytest.mark.parametrize("seed", range(6))
def test_sigkill_at_a_random_moment_loses_no_committed_index(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    directory = tmp_path / "wal"
    printed: list[int] = []
    for round_no in range(2):  # the second round starts from the recovered log
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(directory), str(seed * 10 + round_no)],
            stdout=subprocess.PIPE,
        )
        try:
            printed += _read_lines_until(proc, rng.randint(5, 300), time.monotonic() + 60)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.stdout is not None
        rest = proc.stdout.read()
        proc.stdout.close()
        printed += [int(x) for x in rest.split()]  # printed before the kill, so committed

        wal, records = open_wal(directory)
        got = flatten(records)
        assert printed and wal.last_index >= max(printed)
        assert got == [(i, crash_entry(i)) for i in range(1, wal.last_index + 1)]
        wal.close()


# ------------------------------------------------- segment headers and seals


def segmented_log(tmp_path: Path) -> list[Path]:
    """A closed log of BATCHES over at least three segments; their paths."""
    wal, _ = open_wal(tmp_path, segment_bytes=300)
    fill(wal, BATCHES)
    wal.close()
    segs = segments(tmp_path)
    assert len(segs) >= 3
    return segs


def test_segments_start_with_a_versioned_header_and_full_ones_are_sealed(tmp_path: Path) -> None:
    segs = segmented_log(tmp_path)
    assert len(segs) >= 3
    for i, seg in enumerate(segs):
        data = seg.read_bytes()
        assert data[:4] == SEGMENT_MAGIC and int.from_bytes(data[4:8], "little") == 1
        assert int.from_bytes(data[8:16], "little") == int(seg.name[4:24])
        sealed = data[-HEADER_BYTES:][:4] == b"RKWN"
        assert sealed == (i < len(segs) - 1), seg.name
        assert seg.stat().st_mode & 0o777 == 0o600
    assert tmp_path.stat().st_mode & 0o777 == 0o700


def test_missing_newest_segment_is_refused_not_a_shorter_log(tmp_path: Path) -> None:
    segs = segmented_log(tmp_path)
    segs[-1].unlink()
    with pytest.raises(CorruptLogError, match=f"continues in {segs[-1].name}, which is missing"):
        open_wal(tmp_path)


@pytest.mark.parametrize("content", [b"", b"RKWS\x01", b"x" * 100, b"RKWS" + bytes(20)])
def test_emptied_or_foreign_newest_segment_is_refused(tmp_path: Path, content: bytes) -> None:
    newest = segmented_log(tmp_path)[-1]
    newest.write_bytes(content)
    with pytest.raises(CorruptLogError) as info:
        open_wal(tmp_path)
    assert info.value.segment == newest.name and info.value.offset == 0
    assert newest.read_bytes() == content  # left alone


def test_a_newer_format_version_is_refused(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    fill(wal, [3])
    wal.close()
    (seg,) = segments(tmp_path)
    data = bytearray(seg.read_bytes())
    data[4:8] = (2).to_bytes(4, "little")
    head = bytes(data[:20])
    from crc32c import crc32c

    data[20:24] = crc32c(head).to_bytes(4, "little")
    seg.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError, match="format version 2"):
        open_wal(tmp_path)


def test_version_0_segments_without_a_header_are_still_read(tmp_path: Path) -> None:
    """Logs written before the segment header (records from byte 0) load; new
    segments get the header."""
    records = [encode_record(1, msgpack.packb([entry(1), entry(2)]), 2),
               encode_record(3, msgpack.packb([entry(3)]), 1)]
    (tmp_path / segment_name(1)).write_bytes(b"".join(records))
    wal, got = open_wal(tmp_path, segment_bytes=1)
    assert flatten(got) == expected(1, 3)
    fill(wal, [2])
    wal.close()
    _, got = open_wal(tmp_path)
    assert flatten(got) == expected(1, 5)
    assert segments(tmp_path)[-1].read_bytes()[:4] == SEGMENT_MAGIC


def test_finishing_an_interrupted_truncate_logs_no_client_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11: recovery logs printed the intent, whose re-encoded record is client data."""
    secret = b"card-4111111111111111"
    wal, _ = open_wal(tmp_path, fsync="always")
    wal.append_entries(1, [[1, [[b"SET", b"k", secret]]], [1, [[b"SET", b"k2", secret]]]])
    wal.commit()
    # a truncate that split the record, interrupted after its intent was written
    record = encode_record(1, msgpack.packb([[1, [[b"SET", b"k", secret]]]]), 1)
    wal._write_intent({"op": "truncate", "index": 1, "segment": 1, "offset": SEGMENT_HEADER_BYTES,
                       "record": record})
    wal._close_fd()
    with caplog.at_level(logging.INFO, logger="replikv.storage.wal"):
        _, records = open_wal(tmp_path)
    assert "finishing an interrupted truncate at index 1" in caplog.text
    assert secret.decode() not in caplog.text
    assert flatten(records) == [(1, [1, [[b"SET", b"k", secret]]])]


@pytest.mark.parametrize("kept", [1, 10, HEADER_BYTES - 1])
def test_a_seal_cut_short_by_a_crash_is_a_torn_tail(tmp_path: Path, kept: int) -> None:
    """The seal is written after the next segment exists; a crash in that write
    leaves a partial seal in a segment that is no longer the last."""
    segs = segmented_log(tmp_path)
    data = segs[0].read_bytes()
    assert data[-HEADER_BYTES:][:4] == b"RKWN"
    segs[0].write_bytes(data[: len(data) - HEADER_BYTES + kept])
    wal, records = open_wal(tmp_path)
    assert flatten(records) == expected(1, sum(BATCHES))
    assert segs[0].stat().st_size == len(data) - HEADER_BYTES  # the partial seal was cut off
    wal.close()
    segs[0].write_bytes(data[: len(data) - HEADER_BYTES + kept])
    assert plan_repair(tmp_path) is None  # nothing for `replikv repair` to discard
    # anything else at the end of a full segment is still damage
    segs[0].write_bytes(data[: len(data) - HEADER_BYTES] + b"garbage")
    with pytest.raises(CorruptLogError, match="not the last segment"):
        open_wal(tmp_path)


def test_drop_before_deletes_on_a_worker_and_reset_waits_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The event loop does not wait for compacted segments to be deleted; ``reset``, which
    deletes every segment it finds, waits for those deletions first, and so does ``close``."""
    import threading

    from replikv.storage import wal as wal_module

    wal, _ = open_wal(tmp_path, segment_bytes=400)
    fill(wal, BATCHES)
    gate, deleting, deleted = threading.Event(), threading.Event(), threading.Event()
    real_delete, real_reset = wal_module._delete_segments, wal_module.WriteAheadLog._apply_reset
    seen: list[bool] = []

    def slow(paths: list[Path], directory: Path) -> None:
        deleting.set()
        assert gate.wait(10)
        real_delete(paths, directory)
        deleted.set()

    def reset_files(self: WriteAheadLog, next_index: int) -> None:
        seen.append(deleted.is_set())
        real_reset(self, next_index)

    monkeypatch.setattr(wal_module, "_delete_segments", slow)
    monkeypatch.setattr(wal_module.WriteAheadLog, "_apply_reset", reset_files)
    before = len(segments(tmp_path))
    wal.drop_before(wal.last_index)  # returns while the worker is held
    assert deleting.wait(10) and len(segments(tmp_path)) == before
    assert wal.first_index == wal.last_index + 1
    threading.Timer(0.05, gate.set).start()  # let the worker go once reset is waiting
    wal.reset(wal.last_index + 1)
    assert seen == [True]  # reset deleted the log's files only after the worker was done
    assert [p.name for p in segments(tmp_path)] == [wal_module.segment_name(wal.last_index + 1)]
    wal.close()
