"""The wire form of multi-leader messages: ``msgpack([tag, field, ...])``.

``decode`` checks every field's type and range and raises ``MlCodecError``
(and nothing else) on any frame it does not understand, so a peer speaking
garbage is dropped, never obeyed. The transport adds the length prefix.

Tags: 1 ``Sync``, 6 ``Ops`` (2: ``Ops`` as nodes before the ``put`` mutation
sent them, still decoded), 3 ``State``, 4 ``StateChunk``, 5 ``StateAck``. Ops
go out under tag 6 because their payloads may hold ``put`` mutations
(``core/crdt/store.py``), which an older node cannot apply: it drops a frame of
a tag it does not know with a logged warning instead of applying half an op.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import msgpack

from replikv.core.framing import cut_runs
from replikv.core.multileader.messages import VV, MlMsg, Op, Ops, State, StateAck, StateChunk, Sync

__all__ = ["Decoder", "MlCodecError", "array_header", "decode", "encode", "encode_ops", "encode_ops_frames", "pack_op"]

_SYNC, _OPS_V1, _STATE, _CHUNK, _ACK, _OPS = 1, 2, 3, 4, 5, 6
_OPS_TAGS = (bytes((_OPS,)), bytes((_OPS_V1,)))


class MlCodecError(ValueError):
    """A frame that is not a well-formed multi-leader message."""


def _op_wire(op: Op) -> list[Any]:
    return [op.origin, op.seq, op.hlc, op.deps, op.payload]


def pack_op(op: Op) -> bytes:
    """One op in its wire form, packed: the same bytes go into a WAL record and an ``Ops`` frame."""
    out: bytes = msgpack.packb(_op_wire(op), use_bin_type=True)
    return out


def array_header(n: int) -> bytes:
    """msgpack's header of an array of ``n`` items (what precedes their packed bytes)."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def encode_ops(sender: str, packed_ops: list[bytes]) -> bytes:
    """``encode(Ops(sender, ops))`` from the ops' ``pack_op`` bytes, without packing them again."""
    head: bytes = msgpack.packb(sender, use_bin_type=True)
    return b"\x93" + bytes((_OPS,)) + head + array_header(len(packed_ops)) + b"".join(packed_ops)


def encode_ops_frames(sender: str, packed_ops: list[bytes], max_bytes: int) -> list[bytes]:
    """``encode_ops`` in as many frames of at most ``max_bytes`` as the ops need, in order (issue 9:
    the transport closes a link on a larger frame): one when they fit it together (the usual
    case), else cut where the next op would pass it (``cut_by_bytes``); an op above it on its
    own is a frame of its own (an op is bounded where it is made: ``OPEN_OP_MAX_BYTES`` of
    client arguments and its last write). An ``Ops`` frame adds to its ops at most the sender's
    packed name and 7 bytes (its fixarray, tag and array header)."""
    budget = max_bytes - 7 - len(msgpack.packb(sender, use_bin_type=True))
    if len(packed_ops) == 1 or sum(map(len, packed_ops)) <= budget:
        return [encode_ops(sender, packed_ops)]
    return [encode_ops(sender, run) for run in cut_runs(packed_ops, [len(p) for p in packed_ops], budget)]


def encode(msg: MlMsg) -> bytes:
    match msg:
        case Sync():
            body: list[Any] = [_SYNC, msg.sender, msg.vv, msg.matrix]
        case Ops():
            body = [_OPS, msg.sender, [_op_wire(op) for op in msg.ops]]
        case State():
            body = [_STATE, msg.sender, msg.vv, msg.blob]
        case StateChunk():
            body = [_CHUNK, msg.sender, msg.transfer, msg.index, msg.vv, msg.at, msg.keys, msg.last]
        case StateAck():
            body = [_ACK, msg.sender, msg.transfer, msg.count]
    out: bytes = msgpack.packb(body, use_bin_type=True)
    return out


def _str(x: object, what: str) -> str:
    if not isinstance(x, str) or not x:
        raise MlCodecError(f"{what}: expected a non-empty string")
    return x


def _int(x: object, what: str, low: int = 0) -> int:
    if not isinstance(x, int) or isinstance(x, bool) or x < low or x >= 1 << 63:
        raise MlCodecError(f"{what}: expected an integer >= {low}")
    return x


_I64 = 1 << 63
_intern = sys.intern


def _vv(x: object, what: str) -> VV:
    """A version vector; the common case (every key a non-empty str, every value an int in
    range) is checked in one pass, the slow path names what is wrong."""
    if type(x) is dict:
        for k, v in x.items():
            if type(k) is not str or not k or type(v) is not int or not 0 <= v < _I64:
                break
        else:
            return x
    if not isinstance(x, dict):
        raise MlCodecError(f"{what}: expected a map")
    return {_str(k, what): _int(v, what) for k, v in x.items()}


def _unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, use_list=False, strict_map_key=True)


def _decode_ops(data: bytes, have: Mapping[str, int], up: msgpack.Unpacker | None = None) -> Ops:
    """An ``Ops`` frame (``data[:2]`` is its header and tag), read op by op (each one
    ``unpack`` call): an op whose seq ``have`` covers is only counted (the replica would drop
    it as a duplicate), the others are checked field by field and come with their bytes
    (``Ops.packed``: ``pack_op``'s form, what the receiver's WAL holds). Arrays come out as
    tuples (an op's fields, its payload's mutations and what they hold): cheaper to build than
    lists, and the cyclic GC stops tracking a tuple of atoms after one look, where it scans a
    list on every young collection while the op is held. A payload's readers only index and
    unpack it. ``up``: an unpacker whose buffer holds nothing unread (``Decoder``'s), fed the
    frame here; by default a new one."""
    if up is None:
        up = _unpacker()
    at = up.tell()  # bytes it read before this frame (its offsets count from its first feed)
    up.feed(data)
    try:
        up.read_array_header()
        up.skip()  # the tag
        sender = _str(up.unpack(), "sender")
        unpack, tell = up.unpack, up.tell
        ops: list[Op] = []
        packed: list[bytes] = []
        covered: dict[str, int] = {}
        dropped = 0
        count = up.read_array_header()
        end = tell() - at
        for _ in range(count):
            start = end
            wire = unpack()  # one call per op (C): a duplicate is built too, then dropped
            end = tell() - at
            if type(wire) is not tuple or len(wire) != 5:
                raise MlCodecError("op: expected [origin, seq, hlc, deps, payload]")
            origin, seq, hlc, deps, payload = wire
            if type(origin) is not str or not origin:
                raise MlCodecError("op origin: expected a non-empty string")
            if type(seq) is not int or not 1 <= seq < _I64:
                raise MlCodecError("op seq: expected an integer in range (seq >= 1)")
            # one str object per node id, as msgpack makes of map keys (the deps' keys): the
            # store's entry ids hold it, and comparing them with deps is an identity check
            origin = _intern(origin)
            if seq <= have.get(origin, 0):
                dropped += 1
                if seq > covered.get(origin, 0):
                    covered[origin] = seq
                continue
            if type(hlc) is not int or not 0 <= hlc < _I64:
                raise MlCodecError("op hlc: expected an integer in range")
            deps = _vv(deps, "op deps")
            if deps.get(origin, 0) != seq - 1:
                raise MlCodecError(f"op {origin}:{seq}: deps[{origin}] must be {seq - 1}")
            ops.append(Op(origin, seq, hlc, deps, payload))
            packed.append(data[start:end])
        if up.tell() - at != len(data):
            raise MlCodecError("trailing bytes after the ops")
    except MlCodecError:
        raise
    except Exception as e:  # msgpack raises many kinds (OutOfData, ValueError, StackError, ...)
        raise MlCodecError(f"ops: not a well-formed frame: {type(e).__name__}") from None
    return Ops(sender=sender, ops=tuple(ops), covered=covered, dropped=dropped, packed=tuple(packed))


class Decoder:
    """``decode`` for one receiver's frames, one at a time, with one msgpack ``Unpacker`` kept
    for the ``Ops`` frames of all its calls: a new one per frame (``decode``) costs ~3 µs, its
    buffer's allocation and free, a fifth of a one-op frame's decode. Invariant: between calls
    the unpacker's buffer holds nothing unread (a frame decoded is read to its end, checked);
    after a frame it could not decode, what that frame left unread goes with the unpacker, and
    the next call gets a new one."""

    __slots__ = ("_up",)

    def __init__(self) -> None:
        self._up = _unpacker()

    def decode(self, data: bytes, have: Mapping[str, int] | None = None) -> MlMsg:
        """``codec.decode(data, have)``."""
        if data[:1] == b"\x93" and data[1:2] in _OPS_TAGS:
            try:
                return _decode_ops(data, have or {}, self._up)
            except MlCodecError:
                self._up = _unpacker()
                raise
        return decode(data, have)


def decode(data: bytes, have: Mapping[str, int] | None = None) -> MlMsg:
    """The message ``data`` holds, or ``MlCodecError``. ``have`` (the receiver's version
    vector): the ops of an ``Ops`` frame it covers are left out of ``Ops.ops`` undecoded,
    and only counted (``Ops.dropped``, ``Ops.covered``)."""
    if data[:1] == b"\x93" and data[1:2] in _OPS_TAGS:  # msgpack's header of every 3-item frame
        return _decode_ops(data, have or {})
    try:
        body = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as e:  # msgpack raises many kinds (ExtraData, ValueError, ...)
        raise MlCodecError(f"not msgpack: {type(e).__name__}") from None
    if not isinstance(body, list) or not body:
        raise MlCodecError("expected a non-empty list")
    tag = body[0]
    if tag == _SYNC and len(body) == 4:
        if not isinstance(body[3], dict):
            raise MlCodecError("sync matrix: expected a map")
        matrix = {_str(k, "sync matrix"): _vv(v, "sync matrix") for k, v in body[3].items()}
        return Sync(sender=_str(body[1], "sender"), vv=_vv(body[2], "sync vv"), matrix=matrix)
    if tag == _STATE and len(body) == 4:
        if not isinstance(body[3], bytes):
            raise MlCodecError("state blob: expected bytes")
        return State(sender=_str(body[1], "sender"), vv=_vv(body[2], "state vv"), blob=body[3])
    if tag == _CHUNK and len(body) == 8:
        vv, at = _vv(body[4], "chunk vv"), _vv(body[5], "chunk at")
        if any(at.get(o, 0) < s for o, s in vv.items()):
            raise MlCodecError("chunk at: must cover the transfer's vv")
        if not isinstance(body[6], bytes) or not isinstance(body[7], bool):
            raise MlCodecError("chunk keys, last: expected bytes and a boolean")
        return StateChunk(sender=_str(body[1], "sender"), transfer=_int(body[2], "chunk transfer"),
                          index=_int(body[3], "chunk index"), vv=vv, at=at, keys=body[6], last=body[7])
    if tag == _ACK and len(body) == 4:
        return StateAck(sender=_str(body[1], "sender"), transfer=_int(body[2], "ack transfer"),
                        count=_int(body[3], "ack count"))
    raise MlCodecError(f"unknown message tag {tag!r} or wrong length {len(body)}")
