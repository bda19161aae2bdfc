"""The state machine's whole state as bytes (snapshots) and as a digest.

Snapshot format, version 3 (written):
``msgpack([3, [key, value, key, value, ...], rows, locks])``: first every
string key without a TTL with its value, as one flat array (loaded with one
``dict(zip(...))`` at C speed: a node's restart is mostly this load, issue 15
target 4), then ``rows`` for every other key, ``[[key, tag, payload,
expire_ms | None], ...]``, where ``tag`` and ``payload`` are the value type's
(``kv/values.py``): 0 string (bytes), 1 list (array), 2 set (array), 3 hash
(flat array field, value, ...), 4 zset (flat array member, score (a float64),
...); then the lock table (``kv/locks.py``), ``[[name, holder | None, ttl_ms,
last_token, lease_index], ...]``.
Still loaded: version 1 ``msgpack([1, rows])`` and version 2
``msgpack([2, rows, locks])``. A change to this layout must bump
``SNAPSHOT_VERSION`` and keep loading the old ones.

Not to be confused with ``storage/snapshot.py``, which writes these bytes
to a file (with a checksum, atomically) and reads them back.
"""

from __future__ import annotations

import gc
import struct
from collections.abc import Callable, Generator
from hashlib import blake2b
from typing import Any

import msgpack

from replikv.kv.values import BY_TAG, VALUE_TYPES

__all__ = ["SNAPSHOT_VERSION", "bin_at", "digest", "dump", "load", "load_all", "load_steps"]

SNAPSHOT_VERSION = 3
_WITHOUT_LOCKS = 1  # version 1: [1, rows]
_ROWS_AND_LOCKS = 2  # version 2: [2, rows, locks]
_STRING_TAG = 0  # a string row's tag (kv/types/strings.py); its payload is the bytes themselves


def dump(data: dict[bytes, Any], expires: dict[bytes, int], locks: list[list[Any]] | None = None) -> bytes:
    """The snapshot bytes of ``data`` and ``expires`` (and the lock table's rows, if any)."""
    strings: list[bytes] = []
    rows = []
    for key, value in data.items():
        if type(value) is bytes and key not in expires:
            strings += (key, value)
            continue
        vt = VALUE_TYPES[type(value)]
        rows.append([key, vt.tag, vt.dump(value), expires.get(key)])
    packed: bytes = msgpack.packb([SNAPSHOT_VERSION, strings, rows, locks or []], use_bin_type=True)
    return packed


def load(raw: bytes | memoryview) -> tuple[dict[bytes, Any], dict[bytes, int]]:
    """``(data, expires)`` from :func:`dump`'s bytes; ValueError on an unknown version or tag."""
    data, expires, _locks = load_all(raw)
    return data, expires


def load_all(raw: bytes | memoryview) -> tuple[dict[bytes, Any], dict[bytes, int], list[list[Any]]]:
    """``(data, expires, lock rows)`` from :func:`dump`'s bytes (no rows before version 2).

    The cyclic GC is paused while the rows are unpacked and stored: every
    row is a fresh list, and a million of them set off collections that
    re-scan everything still alive (40% of loading 1M string keys; a node's
    restart is mostly this function, benchmarks/dataset_1m.py). Nothing is
    lost: a cycle made meanwhile is collected once the GC runs again. A
    string's payload is its value as it is (no call through its type).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        version, *fields = msgpack.unpackb(raw, raw=False, use_list=True)
        if version == SNAPSHOT_VERSION and len(fields) == 3:
            strings, rows, locks = fields
            it = iter(strings)
            data: dict[bytes, Any] = dict(zip(it, it))
        elif (version, len(fields)) in ((_WITHOUT_LOCKS, 1), (_ROWS_AND_LOCKS, 2)):
            rows, locks, data = fields[0], fields[1] if len(fields) > 1 else [], {}
        else:
            raise ValueError(f"unknown snapshot version {version!r}")
        expires: dict[bytes, int] = {}
        for row in rows:
            _load_row(row, data, expires)
        return data, expires, locks
    finally:
        if enabled:
            gc.enable()


def _load_row(row: list[Any], data: dict[bytes, Any], expires: dict[bytes, int]) -> None:
    """Store one ``[key, tag, payload, expire_ms | None]`` row (a string's payload as it is)."""
    key, tag, payload, when = row
    if tag == _STRING_TAG and type(payload) is bytes:
        data[key] = payload
    else:
        vt = BY_TAG.get(tag)
        if vt is None:
            raise ValueError(f"unknown value type {tag!r} in snapshot")
        data[key] = vt.load(payload)
    if when is not None:
        expires[key] = when


LOAD_STEP_BYTES = 4 * 1024 * 1024

Loaded = tuple[dict[bytes, Any], dict[bytes, int], list[list[Any]]]


def load_steps(raw: bytes | memoryview, step_bytes: int = LOAD_STEP_BYTES) -> Generator[None, None, Loaded]:
    """:func:`load_all` in steps: a generator that decodes about ``step_bytes`` of ``raw``
    per step (yielding between steps) and returns ``(data, expires, lock rows)``.

    For a node that must go on serving while it loads a large snapshot (a raft follower
    installing one from its leader: decoded whole, 640 MB held its event loop for
    seconds, issue 15). The input is fed to a streaming unpacker ``step_bytes`` at a
    time, so a step's work is bounded by that (plus one value larger than it) and
    ``raw`` is read once, in order (the caller may release a mapped file's pages
    between steps). Keys and rows are decoded one at a time; the version-1/2 layouts,
    only in old snapshots, are decoded in one step. ValueError as ``load_all``."""
    view = memoryview(raw)
    if not _is_current(view):
        return load_all(view)
    unpacker = msgpack.Unpacker(raw=False, use_list=True, max_buffer_size=0)
    fed = 0

    def take(read: Callable[[], Any]) -> Generator[None, None, Any]:
        nonlocal fed
        while True:
            try:
                return read()
            except msgpack.OutOfData:
                if fed >= len(view):
                    raise ValueError("snapshot dump cut short") from None
                unpacker.feed(view[fed:fed + step_bytes])
                fed += step_bytes
                yield

    yield from take(unpacker.read_array_header)
    yield from take(unpacker.unpack)  # the version, checked by _is_current
    data: dict[bytes, Any] = {}
    expires: dict[bytes, int] = {}
    count = yield from take(unpacker.read_array_header)
    if count % 2:
        raise ValueError("snapshot dump: a key without its value")
    for _ in range(count // 2):
        key = yield from take(unpacker.unpack)
        data[key] = yield from take(unpacker.unpack)
    for _ in range((yield from take(unpacker.read_array_header))):
        _load_row((yield from take(unpacker.unpack)), data, expires)
    locks = yield from take(unpacker.unpack)
    if fed < len(view) or unpacker.tell() != len(view):
        raise ValueError("snapshot dump: bytes after its end")
    return data, expires, locks


_BIN_HEADERS = {0xC4: (2, ">B"), 0xC5: (3, ">H"), 0xC6: (5, ">I")}  # msgpack bin 8/16/32


def bin_at(view: memoryview, pos: int) -> tuple[int, int]:
    """(start, end) of the msgpack bin whose header is at ``pos`` in ``view``; ValueError if none.
    For a snapshot's readers: the dump inside an app snapshot taken as a view, not a copy."""
    head = _BIN_HEADERS.get(view[pos]) if pos < len(view) else None
    if head is None:
        raise ValueError("expected msgpack bytes")
    width, fmt = head
    (size,) = struct.unpack(fmt, view[pos + 1:pos + width])
    if pos + width + size > len(view):
        raise ValueError("msgpack bytes cut short")
    return pos + width, pos + width + size


def _is_current(view: memoryview) -> bool:
    """Does ``view`` start as a version-``SNAPSHOT_VERSION`` dump (a 4-array, the version first)?"""
    return len(view) >= 2 and view[0] == 0x94 and view[1] == SNAPSHOT_VERSION


def digest(data: dict[bytes, Any], expires: dict[bytes, int], locks_sum: int = 0) -> bytes:
    """Order-independent 32-byte hash of keys, types, values and TTLs.

    The sum (mod 2**256) of one blake2b per key (its length-prefixed name,
    its value as its type hashes it, its TTL), so equal states give equal
    digests whatever the insertion order; ``locks_sum`` (the lock table's
    own sum, ``LockTable.digest``; 0 without locks) is added in.
    """
    mask = (1 << 256) - 1
    total = locks_sum & mask
    for key, value in data.items():
        h = blake2b(digest_size=32)
        h.update(b"%d:" % len(key))
        h.update(key)
        VALUE_TYPES[type(value)].digest(h, value)
        when = expires.get(key)
        h.update(b"n" if when is None else b"e%d" % when)
        total = (total + int.from_bytes(h.digest(), "little")) & mask
    return total.to_bytes(32, "little")
