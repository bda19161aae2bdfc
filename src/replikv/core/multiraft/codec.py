"""The wire form of a ``Batch`` (messages.py) between two nodes' group hosts.

``msgpack [src, dst, incarnation, [[group, raft message bytes], ...],
[[group, term, last_index, commit], ...], [group, ...]]``; each Raft message is
in the Raft codec's own form (core/raft/codec.py), so a batch decodes with the
same validation as a single message. ``decode`` raises ``ValueError`` for
anything malformed (a peer speaking garbage loses its frame, never the node).
"""

from __future__ import annotations

from typing import Any

import msgpack

from replikv.core.multiraft.messages import Batch, Quiesce
from replikv.core.raft import codec as raft_codec

__all__ = ["decode", "encode"]

MAX_GROUP = 1 << 31


def encode(b: Batch) -> bytes:
    out: bytes = msgpack.packb([
        b.src, b.dst, b.incarnation,
        [[g, raft_codec.encode(m)] for g, m in b.msgs],
        [[q.group, q.term, q.last_index, q.commit] for q in b.quiesce],
        list(b.wake),
    ], use_bin_type=True)
    return out


def _uint(v: Any, what: str, limit: int = 1 << 63) -> int:
    if type(v) is not int or not 0 <= v < limit:
        raise ValueError(f"{what} must be a non-negative integer, got {v!r:.40}")
    return v


def _list(v: Any, what: str) -> list[Any]:
    if type(v) is not list:
        raise ValueError(f"{what} must be a list")
    return v


def decode(frame: bytes) -> Batch:
    try:
        parts = msgpack.unpackb(frame, use_list=True, raw=False)
    except Exception as e:  # noqa: BLE001 - msgpack raises several exception types on garbage
        raise ValueError(f"undecodable batch frame: {type(e).__name__}") from None
    if type(parts) is not list or len(parts) != 6:
        raise ValueError("a batch frame is a list of 6 fields")
    src, dst, inc, msgs, quiesce, wake = parts
    out_msgs = []
    for item in _list(msgs, "batch messages"):
        if type(item) is not list or len(item) != 2 or type(item[1]) is not bytes:
            raise ValueError("a batched message is [group, bytes]")
        out_msgs.append((_uint(item[0], "group", MAX_GROUP), raft_codec.decode(item[1])))
    out_q = []
    for item in _list(quiesce, "quiesce requests"):
        if type(item) is not list or len(item) != 4:
            raise ValueError("a quiesce request is [group, term, last_index, commit]")
        g, term, last, commit = (_uint(x, "quiesce field") for x in item)
        if g >= MAX_GROUP:
            raise ValueError("group out of range")
        out_q.append(Quiesce(group=g, term=term, last_index=last, commit=commit))
    return Batch(src=_uint(src, "src"), dst=_uint(dst, "dst"), incarnation=_uint(inc, "incarnation"),
                 msgs=tuple(out_msgs), quiesce=tuple(out_q),
                 wake=tuple(_uint(g, "group", MAX_GROUP) for g in _list(wake, "wake requests")))
