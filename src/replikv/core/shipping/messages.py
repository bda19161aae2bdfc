"""Peer messages of leader-follower log shipping, and their one wire encoding.

Every message carries the sender's epoch: a receiver that knows a higher
epoch answers ``Fenced`` and ignores the message; a receiver that sees a
higher epoch adopts it before anything else (the epoch is the fencing token
of this mode, as Kafka's leader epoch and Redis's replication id).

Wire form: ``msgpack([tag, field1, field2, ...])`` in field order; the
transport adds the length prefix. ``decode`` raises ``ValueError`` on any
frame it does not understand, so a peer speaking garbage is dropped, never
obeyed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import msgpack


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """Gossip, every heartbeat, to every peer: who I am and what I believe."""

    sender: str
    epoch: int
    leader: str  # "" when unknown
    last_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncRequest:
    """Follower → leader: stream to me after my last entry (Redis PSYNC).

    ``full`` asks for a snapshot (the follower cannot truncate below its own
    snapshot, or has nothing).
    """

    sender: str
    epoch: int
    last_index: int
    epoch_starts: list[list[int]]  # the follower's epoch history, to find the match point
    full: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Truncate:
    """Leader → follower: our logs agree up to ``to_index``; drop the rest."""

    sender: str
    epoch: int
    to_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Append:
    """Leader → follower: entries ``first_index ..`` packed as one msgpack list.

    ``prev_index``/``prev_epoch`` name the entry just before them; a follower
    appends only when its log ends exactly there (Log Matching, as Raft §5.3).
    ``count == 0`` is a heartbeat. ``leader_last_index`` lets a follower
    measure its lag.
    """

    sender: str
    epoch: int
    prev_index: int
    prev_epoch: int
    count: int
    entries: bytes
    leader_last_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """Follower → leader: every entry up to ``durable_index`` is in my WAL."""

    sender: str
    epoch: int
    durable_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Fenced:
    """Answer to a message from a lower epoch: this is the epoch and leader."""

    sender: str
    epoch: int
    leader: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotBegin:
    """Leader → follower: a full resync starts; state as of ``index``."""

    sender: str
    epoch: int
    index: int
    snapshot_epoch: int
    size: int
    epoch_starts: list[list[int]]  # [[epoch, first_index], ...] up to index (the leader's log's)


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotChunk:
    """Leader → follower: ``data`` at ``offset`` of the snapshot at ``index``. A follower
    writes a chunk only at the offset it expects of the snapshot it receives: chunks of an
    earlier stream, still arriving on another connection after a new one began, are ignored
    (they once joined the new stream's file, which then failed to load)."""

    sender: str
    epoch: int
    index: int
    offset: int
    data: bytes
    last: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class HandOverRequest:
    """Failover target → leader: stop taking writes and let me catch up."""

    sender: str
    epoch: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HandOverReady:
    """Leader → target: you hold every entry up to ``last_index``; take over."""

    sender: str
    epoch: int
    last_index: int
    ok: bool
    reason: str = ""


ShippingMsg = (
    Hello | SyncRequest | Truncate | Append | Ack | Fenced | SnapshotBegin | SnapshotChunk
    | HandOverRequest | HandOverReady
)

_TYPES: tuple[type, ...] = (
    Hello, SyncRequest, Truncate, Append, Ack, Fenced, SnapshotBegin, SnapshotChunk,
    HandOverRequest, HandOverReady,
)
_TAG = {cls: tag for tag, cls in enumerate(_TYPES)}
_FIELDS = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in _TYPES}
_SCALARS: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "bool": bool, "bytes": bytes}
# Per class, the (name, type) of every scalar field, checked on decode so a
# malformed frame is refused at the border instead of failing deep inside.
_CHECKS = {
    cls: tuple((f.name, _SCALARS[str(f.type)]) for f in dataclasses.fields(cls) if str(f.type) in _SCALARS)
    for cls in _TYPES
}


def _epoch_starts(value: Any) -> bool:
    """``[[epoch, first_index], ...]``, as ``ShippingLog.epoch_starts``."""
    return isinstance(value, list) and all(
        isinstance(s, list) and len(s) == 2 and all(type(x) is int for x in s) for s in value
    )


# The nested fields, checked on decode like the scalars (found by tests/fuzz (shipping):
# a SyncRequest with epoch_starts = 5 or [[]] decoded, then failed inside the core after it
# had adopted the sender's epoch).
_NESTED = {"epoch_starts": _epoch_starts}


def encode(msg: ShippingMsg) -> bytes:
    cls = type(msg)
    data: bytes = msgpack.packb([_TAG[cls], *(getattr(msg, name) for name in _FIELDS[cls])])
    return data


def decode(frame: bytes) -> ShippingMsg:
    """Decode one frame; ``ValueError`` for anything malformed."""
    try:
        parts = msgpack.unpackb(frame, use_list=True)
    except Exception as e:  # msgpack raises several types for bad input
        raise ValueError(f"undecodable peer frame: {e}") from None
    if not isinstance(parts, list) or not parts or not isinstance(parts[0], int):
        raise ValueError("peer frame is not a tagged message")
    tag = parts[0]
    if not 0 <= tag < len(_TYPES):
        raise ValueError(f"unknown peer message tag {tag}")
    cls = _TYPES[tag]
    names = _FIELDS[cls]
    if len(parts) - 1 != len(names):
        raise ValueError(f"{cls.__name__} frame has {len(parts) - 1} fields, expected {len(names)}")
    values = dict(zip(names, parts[1:]))
    for name, kind in _CHECKS[cls]:
        if not isinstance(values[name], kind):
            raise ValueError(f"bad {cls.__name__} frame: field {name} is {type(values[name]).__name__}")
    for name, valid in _NESTED.items():
        if name in values and not valid(values[name]):
            raise ValueError(f"bad {cls.__name__} frame: malformed {name}")
    msg: ShippingMsg = cls(**values)
    return msg

