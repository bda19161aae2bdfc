"""Child process for the WAL crash test (not a test module).

Usage: ``python wal_crash_child.py <directory> <seed>``. Appends batches of
``crash_entry(i)`` forever with fsync=always and small segments, and prints
each committed last index on its own line *after* ``commit()`` returned. The
parent SIGKILLs it at a random moment; every index printed must survive.
"""

from __future__ import annotations

import random
import sys

from replikv.storage.wal import WriteAheadLog


def crash_entry(index: int) -> list[object]:
    """The entry at ``index``: reproducible by the parent from the index alone."""
    return [index // 100, f"set key{index % 13} value-{index}".encode() * (1 + index % 4)]


def main() -> None:
    directory, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    wal = WriteAheadLog(directory, fsync="always", segment_bytes=8192)
    for _ in wal.recover():
        pass
    while True:
        first = wal.last_index + 1
        for _ in range(rng.randint(1, 4)):  # several records per group commit
            n = rng.randint(1, 40)
            start = wal.last_index + 1
            wal.append_entries(start, [crash_entry(i) for i in range(start, start + n)])
        wal.commit()
        assert wal.durable_index == wal.last_index >= first
        sys.stdout.write(f"{wal.last_index}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
