"""The wire form of multi-leader messages: ``msgpack([tag, field, ...])``.

``decode`` checks every field's type and range and raises ``MlCodecError``
(and nothing else) on any frame it does not understand, so a peer speaking
garbage is dropped, never obeyed. The transport adds the length prefix.
"""

from __future__ import annotations

from typing import Any

import msgpack

from replikv.core.multileader.messages import VV, MlMsg, Op, Ops, State, Sync

__all__ = ["MlCodecError", "decode", "encode"]

_SYNC, _OPS, _STATE = 1, 2, 3


class MlCodecError(ValueError):
    """A frame that is not a well-formed multi-leader message."""


def _op_wire(op: Op) -> list[Any]:
    return [op.origin, op.seq, op.hlc, op.deps, op.payload]


def encode(msg: MlMsg) -> bytes:
    match msg:
        case Sync():
            body: list[Any] = [_SYNC, msg.sender, msg.vv, msg.matrix]
        case Ops():
            body = [_OPS, msg.sender, [_op_wire(op) for op in msg.ops]]
        case State():
            body = [_STATE, msg.sender, msg.vv, msg.blob]
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


def _vv(x: object, what: str) -> VV:
    if not isinstance(x, dict):
        raise MlCodecError(f"{what}: expected a map")
    return {_str(k, what): _int(v, what) for k, v in x.items()}


def _op(x: object) -> Op:
    if not isinstance(x, list) or len(x) != 5:
        raise MlCodecError("op: expected [origin, seq, hlc, deps, payload]")
    origin = _str(x[0], "op origin")
    seq = _int(x[1], "op seq", 1)
    deps = _vv(x[3], "op deps")
    if deps.get(origin, 0) != seq - 1:
        raise MlCodecError(f"op {origin}:{seq}: deps[{origin}] must be {seq - 1}")
    return Op(origin=origin, seq=seq, hlc=_int(x[2], "op hlc"), deps=deps, payload=x[4])


def decode(data: bytes) -> MlMsg:
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
    if tag == _OPS and len(body) == 3:
        if not isinstance(body[2], list):
            raise MlCodecError("ops: expected a list")
        return Ops(sender=_str(body[1], "sender"), ops=tuple(_op(x) for x in body[2]))
    if tag == _STATE and len(body) == 4:
        if not isinstance(body[3], bytes):
            raise MlCodecError("state blob: expected bytes")
        return State(sender=_str(body[1], "sender"), vv=_vv(body[2], "state vv"), blob=body[3])
    raise MlCodecError(f"unknown message tag {tag!r} or wrong length {len(body)}")
