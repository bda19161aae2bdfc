"""Damaged data on disk: the node refuses to start with a message that names
the file, the offset and what to do; it never starts on a shorter log or as a
fresh node. ``replikv repair`` says what truncating discards, and does it only
with --yes (issue 11, "Storage integrity").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from replikv.storage.wal import HEADER_BYTES, SEGMENT_HEADER_BYTES
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replikv", *args], capture_output=True, text=True,
                          timeout=timeout)


def one_node_with_data(root: Path, keys: int = 50) -> Cluster:
    c = Cluster(root, 1, fsync="always")
    c.start()
    client = c.client("n1")
    for i in range(keys):
        client.set(f"k{i}", f"v{i}")
    c.stop("n1")
    return c


def record_offsets(data: bytes) -> list[int]:
    offsets, pos = [], SEGMENT_HEADER_BYTES
    while pos < len(data) and data[pos:pos + 4] == b"RKWL":
        offsets.append(pos)
        pos += HEADER_BYTES + int.from_bytes(data[pos + 8:pos + 12], "little")
    return offsets


def test_a_bad_checksum_in_the_last_record_is_refused_then_repaired(tmp_path: Path) -> None:
    c = one_node_with_data(tmp_path / "c")
    wal_dir = Path(c.config.nodes["n1"].data_dir) / "wal"
    (segment,) = sorted(wal_dir.glob("wal-*.log"))
    data = bytearray(segment.read_bytes())
    last = record_offsets(bytes(data))[-1]
    data[last + HEADER_BYTES + 2] ^= 0x20  # a complete record, fsynced and acknowledged
    segment.write_bytes(bytes(data))

    node = run_cli("node", "--config", str(c.path), "--id", "n1")
    assert node.returncode == 1, node.stdout + node.stderr
    said = node.stdout + node.stderr
    assert f"{segment.name} at byte {last}" in said
    assert "checksum mismatch in a complete record" in said
    assert f"replikv repair --config {c.path} --id n1" in said
    assert "Traceback" not in said
    assert segment.read_bytes() == bytes(data)  # nothing changed

    dry = run_cli("repair", "--config", str(c.path), "--id", "n1")
    assert dry.returncode == 1
    assert f"truncate {segment.name} at byte {last}: discards {len(data) - last} bytes" in dry.stdout
    assert segment.read_bytes() == bytes(data)

    done = run_cli("repair", "--config", str(c.path), "--id", "n1", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert segment.stat().st_size == last
    c.start("n1")
    client = c.client("n1")
    assert client.get("k0") == b"v0"
    assert client.get("k48") == b"v48"  # the records before the damaged one are all there
    assert client.get("k49") is None  # the damaged (last) record was discarded, as announced
    c.close()


def test_missing_newest_segment_and_missing_meta_are_refusals(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "c", 1, fsync="always", segment_bytes=4096)
    c.start()
    client = c.client("n1")
    for i in range(300):
        client.set(f"k{i}", "x" * 64)
    c.stop("n1")
    data_dir = Path(c.config.nodes["n1"].data_dir)
    segments = sorted((data_dir / "wal").glob("wal-*.log"))
    assert len(segments) >= 3
    newest = segments[-1]
    saved = newest.read_bytes()
    newest.unlink()
    node = run_cli("node", "--config", str(c.path), "--id", "n1")
    said = node.stdout + node.stderr
    assert node.returncode == 1 and f"continues in {newest.name}, which is missing" in said, said
    newest.write_bytes(saved)

    meta = data_dir / "meta.bin"
    meta_bytes = meta.read_bytes()
    meta.unlink()
    node = run_cli("node", "--config", str(c.path), "--id", "n1")
    said = node.stdout + node.stderr
    assert node.returncode == 1 and "meta.bin is missing beside a non-empty log" in said, said
    assert "Traceback" not in said
    meta.write_bytes(meta_bytes)
    c.start("n1")
    assert c.client("n1").get("k299") == b"x" * 64
    c.close()


def test_data_files_are_owner_only(tmp_path: Path) -> None:
    c = one_node_with_data(tmp_path / "c", keys=5)
    data_dir = Path(c.config.nodes["n1"].data_dir)
    for path in [data_dir, *data_dir.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"


def test_raft_never_lowers_a_commit_index_it_recorded(tmp_path: Path) -> None:
    """If the log ends before the commit index the node recorded, committed
    entries are missing: refuse, instead of lowering the commit index."""
    from replikv.storage.meta import MetaStore

    c = Cluster(tmp_path / "c", 1, fsync="always", election_timeout_ms=300)
    c.config.mode = "raft"
    c.config.save(c.path)
    c.start()
    client = c.client("n1")
    from tests.integration.cluster import wait_for

    wait_for(lambda: client.info("replication")["role"] == "master", 20, "n1 to lead")
    for i in range(20):
        client.set(f"k{i}", "v")
    store = MetaStore(Path(c.config.nodes["n1"].data_dir))
    # the node records its commit index about once a second, as far as its WAL holds it
    wait_for(lambda: store.load().get("commit", 0) >= 20, 10, "the commit index to be recorded")
    c.stop("n1")
    meta = store.load()
    assert meta["term"] >= 1
    store.save({**meta, "commit": 10**6})
    node = run_cli("node", "--config", str(c.path), "--id", "n1")
    said = node.stdout + node.stderr
    assert node.returncode == 1 and "records commit index 1000000" in said, said
    assert "committed entries are missing" in said and "Traceback" not in said
    store.save(meta)
    c.start("n1")
    wait_for(lambda: client.info("replication")["role"] == "master", 20, "n1 to lead again")
    assert client.get("k19") == b"v"
    c.close()
