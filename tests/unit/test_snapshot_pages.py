"""A snapshot file mapped (storage/snapshot.py ``map_snapshot_file``) costs the process's
RSS only for the pages read through the mapping: verifying its checksum reads the file with
``pread`` instead, and a raft leader releases the pages of each InstallSnapshot chunk once
it is encoded (runtime/raft_runner.py ``raft_frame``). Issue 15: a raft leader's VmRSS
counted ~800 MB of a 640 MB snapshot's file pages. Measured from ``/proc/self/smaps``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from replikv.core.raft import codec
from replikv.core.raft.messages import Config, InstallSnapshot
from replikv.storage import snapshot as snapshot_module
from replikv.storage.errors import CorruptSnapshotError
from replikv.storage.snapshot import map_snapshot_file, release_pages, write_snapshot
from replikv.runtime.raft_runner import RAFT_MSG, raft_frame

SIZE = 4 * 1024 * 1024
HEADER_FAULT_KB = 64  # reading the header faults its page in, and Linux maps 64 kB around it


def mapped_rss_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path``."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5:  # a mapping's first line
            inside = len(fields) >= 6 and fields[5] == str(path)
        elif inside and fields[:1] == ["Rss:"]:
            total += int(fields[1])
    return total


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot_module, "_CRC_CHUNK_BYTES", 256 * 1024)  # several chunks per file


def test_verifying_a_mapped_snapshot_reads_no_page_through_the_mapping(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_chunks: None) -> None:
    data = os.urandom(SIZE)
    path = write_snapshot(tmp_path, 42, 7, data)
    monkeypatch.setattr(snapshot_module, "release_pages", lambda view: None)  # only the pass's own reads count
    snap = map_snapshot_file(path)  # checksum verified
    assert mapped_rss_kb(path) <= HEADER_FAULT_KB  # the header read, not the data
    assert bytes(snap.data) == data  # read through the mapping now: resident
    assert mapped_rss_kb(path) >= SIZE // 1024
    release_pages(snap.data)
    assert mapped_rss_kb(path) == 0


@pytest.mark.parametrize("where", [0, 256 * 1024 - 1, 256 * 1024, SIZE - 1])  # chunk edges and the ends
def test_the_chunked_checksum_pass_finds_damage_anywhere(tmp_path: Path, small_chunks: None, where: int) -> None:
    path = write_snapshot(tmp_path, 42, 7, os.urandom(SIZE))
    raw = bytearray(path.read_bytes())
    raw[snapshot_module.HEADER_BYTES + where] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptSnapshotError, match="checksum"):
        map_snapshot_file(path)


def test_a_snapshot_chunk_sent_leaves_no_page_of_the_file_resident(tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    path = write_snapshot(tmp_path, 42, 7, data)
    snap = map_snapshot_file(path, just_written=True)
    config = Config(voters=frozenset({1, 2, 3}))
    for off in range(0, SIZE, SIZE // 4):
        chunk = snap.data[off:off + SIZE // 4]
        msg = InstallSnapshot(term=3, src=1, dst=2, last_included_index=42, last_included_term=7, config=config,
                              offset=off, data=chunk, done=off + len(chunk) >= SIZE)
        frame = raft_frame(msg)
        assert mapped_rss_kb(path) == 0
        got = codec.decode(frame[len(RAFT_MSG):])
        assert isinstance(got, InstallSnapshot) and bytes(got.data) == data[off:off + SIZE // 4]
