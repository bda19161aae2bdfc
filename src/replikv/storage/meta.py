"""Durable small state: epoch/term, role, leader, voted_for.

One file ``meta.bin`` holding a JSON object, all integers little-endian::

    offset  size  field
    0       4     magic  b"RKM1"
    4       4     crc32c (Castagnoli) of the JSON bytes
    8       4     length of the JSON bytes
    12      ...   JSON (UTF-8, keys sorted)

Rules:
- ``save`` is atomic (write tmp, fsync, rename, fsync directory): after a
  crash ``load`` returns either the previous dict or the new one, never a mix.
  Raft needs this before it answers a vote (Raft §5.2, Figure 2: "updated on
  stable storage before responding to RPCs").
- A missing file is a fresh node: ``load`` returns ``{}``.
- A file that fails its magic, length or checksum check raises
  ``CorruptMetaError``; a node must not guess its term or vote.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from crc32c import crc32c

from replikv.storage.errors import CorruptMetaError
from replikv.storage.files import atomic_write_file, private_dir

META_MAGIC = b"RKM1"
META_FILE = "meta.bin"
_HEADER = struct.Struct("<4sII")


def encode_meta(state: dict[str, Any]) -> bytes:
    """The on-disk bytes for ``state`` (keys must be str, values JSON-able)."""
    for key in state:
        if not isinstance(key, str):
            raise TypeError(f"meta keys must be str, got {key!r}")
    body = json.dumps(state, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    return _HEADER.pack(META_MAGIC, crc32c(body), len(body)) + body


def decode_meta(raw: bytes, name: str = META_FILE) -> dict[str, Any]:
    """Verify and decode bytes written by ``encode_meta``."""
    if len(raw) < _HEADER.size:
        raise CorruptMetaError(f"{name}: {len(raw)} bytes, shorter than the header")
    magic, crc, length = _HEADER.unpack_from(raw, 0)
    if magic != META_MAGIC:
        raise CorruptMetaError(f"{name}: bad magic {magic!r}")
    body = raw[_HEADER.size :]
    if len(body) != length:
        raise CorruptMetaError(f"{name}: header says {length} bytes, file holds {len(body)}")
    if crc32c(body) != crc:
        raise CorruptMetaError(f"{name}: checksum mismatch")
    try:
        state = json.loads(body)
    except ValueError as exc:  # a checksum collision or a writer bug
        raise CorruptMetaError(f"{name}: invalid JSON: {exc}") from exc
    if not isinstance(state, dict):
        raise CorruptMetaError(f"{name}: expected a JSON object, got {type(state).__name__}")
    return state


class MetaStore:
    """A dict of str -> JSON-able values, saved atomically in ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / META_FILE

    def load(self) -> dict[str, Any]:
        """The last saved dict, ``{}`` if never saved; ``CorruptMetaError`` if damaged."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        return decode_meta(raw, self.path.name)

    def save(self, state: dict[str, Any]) -> None:
        """Durably replace the saved dict with ``state`` (atomic, see module rules)."""
        data = encode_meta(state)  # encode first: a bad value must not touch the disk
        private_dir(self.directory)
        atomic_write_file(self.path, data)
