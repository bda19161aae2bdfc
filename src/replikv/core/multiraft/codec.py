"""The wire form of a ``Batch`` (messages.py) between two nodes' group hosts.

``msgpack [src, dst, incarnation, [[group, raft message], ...],
[[group, term, last_index, commit], ...], [group, ...]]``; each Raft message is
the Raft codec's wire list (``raft_codec.to_wire``), embedded as it is, so the
whole batch is packed once and unpacked once, and decodes with the same
validation as a single message (``raft_codec.from_wire``). Before session 19 a
message was packed on its own and its bytes packed again inside the batch (and
unpacked twice on the way in); ``decode`` still takes that form, ``[group,
raft message bytes]``, from a peer running the older code. ``decode`` raises
``ValueError`` for anything malformed (a peer speaking garbage loses its frame,
never the node).
"""

from __future__ import annotations

from typing import Any

import msgpack

from replikv.core.multiraft.messages import Batch, Quiesce, new_batch
from replikv.core.raft import codec as raft_codec
from replikv.core.raft.codec import from_wire, to_wire

__all__ = ["FEATURE_EMBEDDED", "decode", "encode"]

# What a node announces to its peers when it takes batches whose messages are embedded as wire
# lists (runtime/peer_features.py); a peer that did not announce it gets the older form.
FEATURE_EMBEDDED = "batch-embedded"

MAX_GROUP = 1 << 31


def encode(b: Batch, *, embedded: bool = True) -> bytes:
    """The batch as bytes; ``embedded=False``: the older form (each message packed on its own,
    as bytes), for a peer that did not announce ``FEATURE_EMBEDDED`` (a rolling upgrade:
    older nodes refuse the embedded form)."""
    pack_msg = to_wire if embedded else raft_codec.encode
    out: bytes = msgpack.packb([
        b.src, b.dst, b.incarnation,
        [[g, pack_msg(m)] for g, m in b.msgs],
        [[q.group, q.term, q.last_index, q.commit] for q in b.quiesce],
        list(b.wake),
    ], use_bin_type=True)
    return out


def _uint(v: Any, what: str, limit: int = 1 << 63) -> int:
    if type(v) is not int or not 0 <= v < limit:
        raise ValueError(f"{what} must be a non-negative integer, got {v!r:.40}")
    return v


def _bytes(v: Any) -> bytes:
    if type(v) is not bytes:
        raise ValueError("a batched message is a wire list or, from an older peer, bytes")
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
        if type(item) is not list or len(item) != 2:
            raise ValueError("a batched message is [group, message]")
        group, wire = item
        if type(group) is not int or not 0 <= group < MAX_GROUP:
            raise ValueError(f"group must be a non-negative integer, got {group!r:.40}")
        # the older form (bytes) from a peer not yet upgraded: module doc
        out_msgs.append((group, from_wire(wire) if type(wire) is list else raft_codec.decode(_bytes(wire))))
    out_q = []
    for item in _list(quiesce, "quiesce requests"):
        if type(item) is not list or len(item) != 4:
            raise ValueError("a quiesce request is [group, term, last_index, commit]")
        g, term, last, commit = (_uint(x, "quiesce field") for x in item)
        if g >= MAX_GROUP:
            raise ValueError("group out of range")
        out_q.append(Quiesce(group=g, term=term, last_index=last, commit=commit))
    wakes = tuple([_uint(g, "group", MAX_GROUP) for g in _list(wake, "wake requests")]) if wake else ()
    return new_batch(_uint(src, "src"), _uint(dst, "dst"), _uint(inc, "incarnation"), tuple(out_msgs),
                     tuple(out_q) if out_q else (), wakes)


