"""Wire encoding of Raft messages and log entries: msgpack, one place, one tag table.

Wire form of a message: ``msgpack([tag, term, src, dst, field...])`` with the
fields of the message class in declaration order, each converted by the
field's kind (below). Entries travel as ``[term, index, kind, data,
client_id, seq, config]``; a configuration as ``[voters, learners]`` (sorted
lists); a request id (ReadIndex) may be None, an int, a str, bytes or a
(nested) tuple of those, and decodes to the same value (lists become tuples).

Rules:
- Tags are the positions in ``_TYPES`` and never change meaning: a new
  message type is appended at the end.
- ``decode`` raises ``ValueError`` for anything that is not exactly a
  message this module encodes: undecodable bytes, an unknown tag, a wrong
  field count, or a field of the wrong type (an int where bytes belong, a
  bool for an int, a negative term or index...). Garbage is refused at the
  border instead of failing deep inside the core.
- ``decode(encode(m)) == m`` for every message (tests/unit/raft/test_codec.py).

The same entry encoding is what the runtime stores in its WAL
(``entry_to_wire`` / ``entry_from_wire``), so an entry is packed once.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import msgpack

from replikv.core.invariant import invariant
from replikv.core.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Config,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    RaftMsg,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
    new_append_entries,
    new_append_response,
    normal_entry,
)

__all__ = ["decode", "encode", "entry_from_wire", "entry_to_wire", "from_wire", "to_wire"]

_TYPES: tuple[type, ...] = (
    RequestVote,
    RequestVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    TimeoutNow,
    ReadIndexRequest,
    ReadIndexResponse,
)
_TAG: dict[type, int] = {cls: i for i, cls in enumerate(_TYPES)}

_KINDS = (EntryKind.NORMAL, EntryKind.NOOP, EntryKind.CONFIG)
_KIND_CODE = {k: i for i, k in enumerate(_KINDS)}

# field name -> kind, from the annotations as written in messages.py
_KIND_OF_ANNOTATION = {
    "int": "uint",
    "NodeId": "uint",
    "bool": "bool",
    "bytes": "bytes",
    "bytes | memoryview": "bytes",  # sent from a view (a mapped snapshot), received as bytes
    "tuple[Entry, ...]": "entries",
    "Config": "config",
    "object": "rid",
}
_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {
    cls: tuple((f.name, _KIND_OF_ANNOTATION[str(f.type)]) for f in fields(cls)) for cls in _TYPES
}
# (name, kind, "Class.name" for error messages) per field, for decode
_DECODE: dict[type, tuple[tuple[str, str, str], ...]] = {
    cls: tuple((name, kind, f"{cls.__name__}.{name}") for name, kind in spec)
    for cls, spec in _FIELDS.items()
}
_MAX_RID_DEPTH = 4


# ----------------------------------------------------------------- encoding
def _config_out(c: Config) -> list[list[int]]:
    return [sorted(c.voters), sorted(c.learners)]


_NORMAL = EntryKind.NORMAL


def entry_to_wire(e: Entry) -> list[Any]:
    if e.kind is _NORMAL:  # the common case: no Enum hash, no config
        return [e.term, e.index, 0, e.data, e.client_id, e.seq, None]
    return [
        e.term,
        e.index,
        _KIND_CODE[e.kind],
        e.data,
        e.client_id,
        e.seq,
        None if e.config is None else _config_out(e.config),
    ]


def _out(kind: str, value: Any) -> Any:
    if kind == "entries":
        return [entry_to_wire(e) for e in value]
    if kind == "config":
        return _config_out(value)
    return value


_APPEND_TAG = _TAG[AppendEntries]
_APPEND_ORDER = ("term", "src", "dst", "prev_log_index", "prev_log_term", "entries", "leader_commit")
invariant(tuple(n for n, _ in _FIELDS[AppendEntries]) == _APPEND_ORDER, "update encode()")


def to_wire(msg: RaftMsg) -> list[Any]:
    """One message as its wire list, not yet packed: what ``encode`` packs, and what a
    container (the multi-group batch, core/multiraft/codec.py) embeds in its own frame so the
    message is packed once, with the frame."""
    cls = type(msg)
    if cls is AppendEntries:  # the hot message, spelled out (same form as the loop below)
        m: AppendEntries = msg  # type: ignore[assignment]
        return [_APPEND_TAG, m.term, m.src, m.dst, m.prev_log_index, m.prev_log_term,
                [entry_to_wire(e) for e in m.entries], m.leader_commit]
    out: list[Any] = [_TAG[cls]]
    for name, kind in _FIELDS[cls]:
        out.append(_out(kind, getattr(msg, name)))
    return out


def encode(msg: RaftMsg) -> bytes:
    """One message as bytes (see the module docstring for the form)."""
    packed: bytes = msgpack.packb(to_wire(msg), use_bin_type=True)
    return packed


# ----------------------------------------------------------------- decoding
def _uint(v: Any, what: str) -> int:
    if type(v) is not int or v < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {v!r:.40}")
    return v


def _opt_uint(v: Any, what: str) -> int | None:
    return None if v is None else _uint(v, what)


def _config_in(v: Any) -> Config:
    if not isinstance(v, list) or len(v) != 2 or not all(isinstance(x, list) for x in v):
        raise ValueError("a configuration must be [voters, learners]")
    voters = frozenset(_uint(x, "voter id") for x in v[0])
    learners = frozenset(_uint(x, "learner id") for x in v[1])
    return Config(voters=voters, learners=learners)  # raises ValueError on overlap


def entry_from_wire(v: Any) -> Entry:
    """An entry from its wire (and WAL) form; ValueError if malformed."""
    if type(v) is list and len(v) == 7:
        term, index, kind, data, client_id, seq, config = v
        if (  # the common case, checked field by field as below, without the messages
            kind == 0
            and type(kind) is int
            and config is None
            and type(term) is int
            and term >= 0
            and type(index) is int
            and index >= 0
            and type(data) is bytes
            and (client_id is None or (type(client_id) is int and client_id >= 0))
            and (seq is None or (type(seq) is int and seq >= 0))
        ):
            return normal_entry(term, index, data, client_id, seq)
    return _entry_from_wire_checked(v)


def _entry_from_wire_checked(v: Any) -> Entry:
    if not isinstance(v, list) or len(v) != 7:
        raise ValueError("an entry must be a list of 7 fields")
    term, index, kind, data, client_id, seq, config = v
    if type(kind) is not int or not 0 <= kind < len(_KINDS):
        raise ValueError(f"unknown entry kind {kind!r:.20}")
    if not isinstance(data, bytes):
        raise ValueError("entry data must be bytes")  # noqa: TRY004 - the codec's one error type
    entry_kind = _KINDS[kind]
    cfg = None if config is None else _config_in(config)
    if (cfg is not None) != (entry_kind is EntryKind.CONFIG):
        raise ValueError("an entry carries a configuration iff it is a CONFIG entry")
    return Entry(
        term=_uint(term, "entry term"),
        index=_uint(index, "entry index"),
        kind=entry_kind,
        data=data,
        client_id=_opt_uint(client_id, "client id"),
        seq=_opt_uint(seq, "seq"),
        config=cfg,
    )


def _rid_in(v: Any, depth: int = 0) -> object:
    if v is None or type(v) in (int, str, bytes):
        return v
    if isinstance(v, list) and depth < _MAX_RID_DEPTH:
        return tuple(_rid_in(x, depth + 1) for x in v)
    raise ValueError("a request id must be None, int, str, bytes or a tuple of those")


def _in(kind: str, v: Any, what: str) -> Any:
    if kind == "uint":
        return _uint(v, what)
    if kind == "bool":
        if type(v) is not bool:
            raise ValueError(f"{what} must be a boolean")
        return v
    if kind == "bytes":
        if not isinstance(v, bytes):
            raise ValueError(f"{what} must be bytes")
        return v
    if kind == "entries":
        if not isinstance(v, list):
            raise ValueError(f"{what} must be a list of entries")
        return tuple([entry_from_wire(e) for e in v])
    if kind == "config":
        return _config_in(v)
    return _rid_in(v)


def decode(frame: bytes) -> RaftMsg:
    """One message from bytes; ``ValueError`` for anything malformed."""
    try:
        parts = msgpack.unpackb(frame, use_list=True, raw=False)
    except Exception as e:  # noqa: BLE001 - msgpack raises several exception types on garbage
        raise ValueError(f"undecodable raft frame: {type(e).__name__}") from None
    return from_wire(parts)


def from_wire(parts: Any) -> RaftMsg:
    """One message from its unpacked wire list (``to_wire``'s form); ``ValueError`` for
    anything malformed, exactly as ``decode``. Fields are checked in one pass (integers and
    booleans inline, the rest through ``_in``) and set straight into the slots, as
    ``normal_entry`` builds an entry: messages have no ``__post_init__``, so this is the
    keyword constructor without its per-field ``object.__setattr__``."""
    if type(parts) is not list or not parts or type(parts[0]) is not int:
        raise ValueError("raft frame is not a tagged message")
    tag = parts[0]
    if tag == _APPEND_TAG and len(parts) == 8:
        # the hot message, every field checked as the loop below checks it (all well-formed:
        # built positionally; anything else goes through the loop, which names the bad field)
        _, term, src, dst, prev, prev_term, entries, commit = parts
        if (type(term) is int and term >= 0 and type(src) is int and src >= 0 and type(dst) is int
                and dst >= 0 and type(prev) is int and prev >= 0 and type(prev_term) is int
                and prev_term >= 0 and type(commit) is int and commit >= 0 and type(entries) is list):
            return new_append_entries(term, src, dst, prev, prev_term,
                                      tuple([entry_from_wire(e) for e in entries]), commit)
    elif tag == _RESPONSE_TAG and len(parts) == 9:
        _, term, src, dst, success, match, reject, c_term, c_index = parts
        if (type(term) is int and term >= 0 and type(src) is int and src >= 0 and type(dst) is int
                and dst >= 0 and type(success) is bool and type(match) is int and match >= 0
                and type(reject) is int and reject >= 0 and type(c_term) is int and c_term >= 0
                and type(c_index) is int and c_index >= 0):
            return new_append_response(term, src, dst, success, match, reject, c_term, c_index)
    if not 0 <= tag < len(_TYPES):
        raise ValueError(f"unknown raft message tag {tag}")
    return _from_wire_fields(_TYPES[tag], parts)


def _from_wire_fields(cls: type, parts: list[Any]) -> RaftMsg:
    """``from_wire``'s general case: the fields of a ``cls`` message checked one by one."""
    spec = _SETTERS[cls]
    if len(parts) - 1 != len(spec):
        raise ValueError(f"{cls.__name__} frame has {len(parts) - 1} fields, expected {len(spec)}")
    msg: RaftMsg = _new_object(cls)
    for (kind, what, setter), v in zip(spec, parts[1:]):  # noqa: B905 - lengths checked above
        if kind == "uint":
            if type(v) is not int or v < 0:
                raise ValueError(f"{what} must be a non-negative integer, got {v!r:.40}")
        elif kind == "bool":
            if type(v) is not bool:
                raise ValueError(f"{what} must be a boolean")
        else:
            v = _in(kind, v, what)
        setter(msg, v)
    return msg


_new_object = object.__new__
# (kind, "Class.name", slot setter) per field, in wire order: from_wire's one pass
_SETTERS: dict[type, tuple[tuple[str, str, Any], ...]] = {
    cls: tuple((kind, what, getattr(cls, name).__set__) for name, kind, what in spec)
    for cls, spec in _DECODE.items()
}
invariant(all(not hasattr(cls, "__post_init__") for cls in _TYPES), "from_wire skips __init__: no checks there")
_RESPONSE_TAG = _TAG[AppendEntriesResponse]
invariant(
    [k for _, k in _FIELDS[AppendEntries]] == ["uint"] * 5 + ["entries", "uint"]
    and [k for _, k in _FIELDS[AppendEntriesResponse]] == ["uint"] * 3 + ["bool"] + ["uint"] * 4,
    "update from_wire's spelled-out AppendEntries and AppendEntriesResponse",
)
