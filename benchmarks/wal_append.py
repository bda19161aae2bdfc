"""WAL append throughput: entries/s for fsync no/always and batch sizes 1, 16, 256.

Usage: python benchmarks/wal_append.py [--dir DIR] [--seconds S] [--batches 1,16,50,256]

One batch = one record = one commit (append + commit per batch), the way the
node writes: the caller packs the entries once (the bytes are reused for the
network frames), so the main figure excludes packing; the "+pack" column
includes ``msgpack.packb`` of the batch. Each entry looks like a logged write,
``[epoch, b"*3\\r\\n$3\\r\\nSET\\r\\n$8\\r\\nkey:NNNN\\r\\n$16\\r\\n<16 bytes>\\r\\n"]``.

The reference column is a bare ``os.write`` of the same record bytes (plus
``os.fsync`` for fsync=always) in the same run, so the ratio shows the WAL's
own overhead independent of the machine. It asserts nothing: figures go to
BENCHMARKS.md by hand. Use --dir to put the files on the disk you care about
(the default is a temporary directory, which may be tmpfs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import msgpack

from replikv.storage.wal import WriteAheadLog, encode_record


def make_batch(first: int, size: int) -> list[list[object]]:
    return [
        [3, b"*3\r\n$3\r\nSET\r\n$8\r\nkey:%04d\r\n$16\r\n%s\r\n" % (i % 10000, b"v" * 16)]
        for i in range(first, first + size)
    ]


def run_wal(directory: Path, policy: str, batch: int, seconds: float, pack: bool) -> float:
    """Entries/s through append + commit for ``seconds``."""
    shutil.rmtree(directory, ignore_errors=True)
    wal = WriteAheadLog(directory, fsync=policy)
    list(wal.recover())
    entries = make_batch(1, batch)
    packed = msgpack.packb(entries)
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(64 if policy == "no" else 4):
            if pack:
                packed = msgpack.packb(entries)
            wal.append(n + 1, packed, batch)
            wal.commit()
            n += batch
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    wal.close()
    return n / elapsed


def run_reference(directory: Path, policy: str, batch: int, seconds: float) -> float:
    """Entries/s of bare os.write (+ os.fsync) of precomputed records."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    fd = os.open(directory / "ref.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    record = encode_record(1, msgpack.packb(make_batch(1, batch)), batch)
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(64 if policy == "no" else 4):
            os.write(fd, record)
            if policy == "always":
                os.fsync(fd)
            n += batch
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    os.close(fd)
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a tmp dir)")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per configuration")
    ap.add_argument("--batches", default="1,16,256", help="comma-separated batch sizes")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="wal-bench-", dir=args.dir))
    batches = [int(b) for b in args.batches.split(",")]
    print(f"directory: {base}  ({args.seconds:.1f} s per configuration)")
    print(
        f"{'fsync':>6} {'batch':>6} {'entries/s':>12} {'+pack':>12} "
        f"{'commits/s':>10} {'bare write':>12} {'ratio':>6}"
    )
    try:
        for policy in ("no", "always"):
            for batch in batches:
                rate = run_wal(base / "wal", policy, batch, args.seconds, pack=False)
                packed_rate = run_wal(base / "wal", policy, batch, args.seconds, pack=True)
                ref = run_reference(base / "ref", policy, batch, args.seconds)
                print(
                    f"{policy:>6} {batch:>6} {rate:>12,.0f} {packed_rate:>12,.0f} "
                    f"{rate / batch:>10,.0f} {ref:>12,.0f} {rate / ref:>6.2f}"
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
