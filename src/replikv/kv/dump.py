"""The state machine's whole state as bytes (snapshots) and as a digest.

Snapshot format (unchanged since version 1; existing data dirs load):
``msgpack([SNAPSHOT_VERSION, [[key, tag, payload, expire_ms | None], ...]])``
where ``tag`` and ``payload`` are the value type's (``kv/values.py``):
0 string (bytes), 1 list (array), 2 set (array), 3 hash (flat array
field, value, ...), 4 zset (flat array member, score (a float64), ...). A change to this layout must bump ``SNAPSHOT_VERSION``
and keep loading the old one.

Not to be confused with ``storage/snapshot.py``, which writes these bytes
to a file (with a checksum, atomically) and reads them back.
"""

from __future__ import annotations

import gc
from hashlib import blake2b
from typing import Any

import msgpack

from replikv.kv.values import BY_TAG, VALUE_TYPES

__all__ = ["SNAPSHOT_VERSION", "digest", "dump", "load"]

SNAPSHOT_VERSION = 1
_STRING_TAG = 0  # a string row's tag (kv/types/strings.py); its payload is the bytes themselves


def dump(data: dict[bytes, Any], expires: dict[bytes, int]) -> bytes:
    """The snapshot bytes of ``data`` and ``expires``."""
    rows = []
    for key, value in data.items():
        vt = VALUE_TYPES[type(value)]
        rows.append([key, vt.tag, vt.dump(value), expires.get(key)])
    packed: bytes = msgpack.packb([SNAPSHOT_VERSION, rows], use_bin_type=True)
    return packed


def load(raw: bytes) -> tuple[dict[bytes, Any], dict[bytes, int]]:
    """``(data, expires)`` from :func:`dump`'s bytes; ValueError on an unknown version or tag.

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
        version, rows = msgpack.unpackb(raw, raw=False, use_list=True)
        if version != SNAPSHOT_VERSION:
            raise ValueError(f"unknown snapshot version {version!r}")
        data: dict[bytes, Any] = {}
        expires: dict[bytes, int] = {}
        for key, tag, payload, when in rows:
            if tag == _STRING_TAG and type(payload) is bytes:
                data[key] = payload
            else:
                vt = BY_TAG.get(tag)
                if vt is None:
                    raise ValueError(f"unknown value type {tag!r} in snapshot")
                data[key] = vt.load(payload)
            if when is not None:
                expires[key] = when
        return data, expires
    finally:
        if enabled:
            gc.enable()


def digest(data: dict[bytes, Any], expires: dict[bytes, int]) -> bytes:
    """Order-independent 32-byte hash of keys, types, values and TTLs.

    The sum (mod 2**256) of one blake2b per key (its length-prefixed name,
    its value as its type hashes it, its TTL), so equal states give equal
    digests whatever the insertion order.
    """
    mask = (1 << 256) - 1
    total = 0
    for key, value in data.items():
        h = blake2b(digest_size=32)
        h.update(b"%d:" % len(key))
        h.update(key)
        VALUE_TYPES[type(value)].digest(h, value)
        when = expires.get(key)
        h.update(b"n" if when is None else b"e%d" % when)
        total = (total + int.from_bytes(h.digest(), "little")) & mask
    return total.to_bytes(32, "little")
