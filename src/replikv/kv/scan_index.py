"""The SCAN cursor scheme: keys bucketed by a stable hash.

Every key has a fixed 32-bit position ``crc32(key)`` (stable across
processes and nodes, unlike Python's salted ``hash``). The index holds
``2**bits`` buckets; bucket ``b`` holds the keys whose position has ``b`` as
its top ``bits`` bits, i.e. the positions ``[b << shift, (b + 1) << shift)``
with ``shift = 32 - bits``. The bucket count grows and shrinks with the key
count (at most ~16 keys per bucket on average).

A bucket is a tuple (``None`` when empty), not a set: a set of a few keys
costs 216-728 bytes, a tuple 40 + 8 per key, and a bucket is only ever
scanned whole; adding or removing a key copies its bucket's few references.
For 1M keys the index is ~65k tuples, about 14 MB instead of ~107 MB with
sets (issue 15's memory target: an index built by the first SCAN is kept).

A SCAN cursor is a position ``P`` in ``[0, 2**32)``: every position below
``P`` has been covered. One call visits whole buckets starting with the one
holding ``P`` and returns the next uncovered position, or 0 once the whole
space ``[0, 2**32)`` is covered.

Guarantees (Redis's SCAN contract):

- A key present for the whole scan is returned at least once: its position
  never changes, the calls cover ``[0, 2**32)`` contiguously, and the call
  covering the key's position returns its bucket whole. If the bucket count
  shrank between calls, the bucket holding ``P`` also holds positions below
  ``P``; those keys may come back again (duplicates are allowed).
- A scan terminates: each call covers at least one bucket, so the cursor
  strictly increases until it wraps to 0.

Invariant: the buckets together hold each key of the data set exactly once,
in the bucket its position names.

SSCAN and HSCAN (:func:`scan_collection`) use the same cursors over a set's
members or a hash's fields: a collection of at most ``SMALL_COLLECTION``
elements is returned whole with cursor 0 whatever the cursor (as Redis does
for its compact encodings), a larger one through a ``ScanIndex`` built for
the call (O(n) per call; no index is kept per collection), with the same
guarantees as above for elements present during the whole scan.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from zlib import crc32

__all__ = ["SMALL_COLLECTION", "SPACE", "ScanIndex", "scan_collection"]

SPACE = 1 << 32  # cursor positions are in [0, SPACE)
_MIN_BITS = 4
_MAX_BITS = 24
_KEYS_PER_BUCKET_MAX = 16
SMALL_COLLECTION = 128  # Redis's hash-max-listpack-entries


class ScanIndex:
    """Keys bucketed by ``crc32`` top bits; see the module docstring."""

    __slots__ = ("_bits", "_buckets", "_count", "_shift")

    def __init__(self, keys: Iterable[bytes] = ()) -> None:
        keys = list(keys)
        self._build(keys, self._bits_for(len(keys)))

    @staticmethod
    def _bits_for(count: int) -> int:
        bits = _MIN_BITS
        while bits < _MAX_BITS and count > (_KEYS_PER_BUCKET_MAX << bits) // 2:
            bits += 1
        return bits

    def _build(self, keys: Iterable[bytes], bits: int) -> None:
        self._bits = bits
        self._shift = 32 - bits
        shift = self._shift
        lists: dict[int, list[bytes]] = {}
        count = 0
        for key in keys:
            lists.setdefault(crc32(key) >> shift, []).append(key)
            count += 1
        self._buckets: list[tuple[bytes, ...] | None] = [None] * (1 << bits)
        for i, found in lists.items():
            self._buckets[i] = tuple(found)
        self._count = count

    def __len__(self) -> int:
        return self._count

    def _all_keys(self) -> list[bytes]:
        return [k for b in self._buckets if b for k in b]

    def add(self, key: bytes) -> None:
        """Index a key that was not in the data set before (one already indexed stays once)."""
        i = crc32(key) >> self._shift
        bucket = self._buckets[i]
        if bucket is not None and key in bucket:
            return
        self._buckets[i] = (key,) if bucket is None else bucket + (key,)
        self._count += 1
        if self._count > _KEYS_PER_BUCKET_MAX << self._bits and self._bits < _MAX_BITS:
            self._build(self._all_keys(), self._bits + 1)

    def discard(self, key: bytes) -> None:
        """Forget a key that left the data set."""
        i = crc32(key) >> self._shift
        bucket = self._buckets[i]
        if bucket is None or key not in bucket:
            return
        rest = tuple(k for k in bucket if k != key)
        self._buckets[i] = rest or None
        self._count -= 1
        if self._bits > _MIN_BITS and self._count < (1 << self._bits) // 2:
            self._build(self._all_keys(), self._bits_for(self._count))

    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """Keys of the buckets from position ``cursor`` on, and the next cursor.

        Visits buckets until at least ``count`` keys are collected or
        ``10 * count`` buckets were visited (as Redis bounds empty visits);
        the next cursor is 0 when the end of the space was reached.
        """
        if not 0 <= cursor < SPACE:
            return 0, []
        buckets = self._buckets
        nbuckets = len(buckets)
        i = cursor >> self._shift
        out: list[bytes] = []
        budget = max(count, 1) * 10
        while i < nbuckets:
            bucket = buckets[i]
            i += 1
            if bucket:
                out.extend(bucket)
            budget -= 1
            if len(out) >= count or budget <= 0:
                break
        nxt = i << self._shift
        return (0 if nxt >= SPACE else nxt), out


def scan_collection(items: Collection[bytes], cursor: int, count: int) -> tuple[int, list[bytes]]:
    """One SSCAN/HSCAN step over ``items`` (members or fields): ``(next cursor,
    elements)``; see the module docstring."""
    if len(items) <= SMALL_COLLECTION:
        return 0, list(items)
    return ScanIndex(items).scan(cursor, count)
