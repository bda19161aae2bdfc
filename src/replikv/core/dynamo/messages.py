"""Peer messages of the leaderless replicas (Dynamo §4.5, Cassandra's
coordinator), frozen dataclasses, with their wire form (``encode``/``decode``).

A key's state travels whole: ``(key, blob)`` where ``blob`` is
``KeyedStore.key_blob(key)`` (the key's causal context and dot stores); a
receiver joins it (``KeyedStore.join_key``), which is idempotent and
commutative, so a message delivered twice or out of order does no harm.
A coordinator's write travels as a delta instead (``Put.delta``, below),
applied only where the receiver holds its base, whole states otherwise.

- ``Put``: join these key states. ``req`` > 0 asks for a ``PutAck`` (a
  write's replica or a hint delivery); 0 asks for none (read repair,
  anti-entropy). ``hint_for`` non-empty: the receiver is a stand-in and keeps
  the states as a hint for that node (hinted handoff, Dynamo §4.6).
  ``paxos``: ``(key, encoded AcceptorState)`` pairs (``paxos_messages.
  encode_state``) a range stream carries with its keys' states: the
  receiver joins them into its acceptor (``paxos.merge_states``), so a new
  owner answers Paxos rounds knowing what the old replica promised,
  accepted and committed (Cassandra's Paxos with pending ranges,
  CASSANDRA-8346). Encoded as a fifth field only when non-empty.
  ``delta``: a coordinator's write as a delta (``KeyedStore.write_delta``:
  its dot, mutations and the keys' contexts before it) instead of whole key
  states (``states`` then empty); the receiver applies it where it holds the
  base the delta needs and asks for the whole states of the other keys with
  ``PutNeed``. Encoded as a sixth field (the fifth then present, maybe
  empty) only when non-empty.
- ``PutNeed``: the answer to a delta ``Put`` whose receiver lacks the base
  of some keys: the coordinator sends their whole states in a ``Put`` with
  the same ``req``, which the receiver acknowledges as any ``Put``.
- ``PutAck``: ``ok`` False when the receiver could not make it durable
  (its disk refuses writes).
- ``Puts``: several coordinated writes, each ``(req, delta)`` as a delta
  ``Put`` carries them, that one coordinator sends one replica in one loop
  iteration (as raft's AppendEntries carries many entries): the receiver
  applies them in order in one pass and answers each as it would the
  single ``Put`` (``PutAck``, or ``PutNeed`` for a write whose base it
  lacks). ``PutAcks``: the acks one node sends another in one loop
  iteration, as one message naming the writes it covers (``ok`` and
  ``refused``: the ``req`` of each ``PutAck`` with ``ok`` True / False).
  Both are sent only to a peer that announced ``FEATURE_PUTS`` with
  ``Hello`` (a node of an older version does not decode them, and drops
  the whole frame that holds one): ``Replica.frames``.
- ``Hello``: the features this node understands (``FEATURES``; a Paxos
  Prepare or Propose keeps its electorate only to a peer that announced
  ``FEATURE_ELECTORATE``, and Paxos messages and acceptor states keep their proposals'
  provenance only to one that announced ``FEATURE_PROVENANCE``, a quiet Paxos Commit goes only
  to one that announced ``FEATURE_QUIET_COMMIT``, a Propose that commits on accept only to one
  that announced ``FEATURE_COMMIT_ON_ACCEPT``, a Paxos message in line (``PaxosBody``) only
  to one that announced ``FEATURE_PAXOS_BODY``; a delta carries a ``put`` mutation only to
  replicas that all announced ``FEATURE_PUT_MUT``), sent alone in its own
  frame whenever a peer connects (an older node drops that frame with a
  warning and nothing else; it never announces, so it keeps getting the
  single messages). The Hello sent on connect also names ``HELLO_ASK``: the
  receiver answers with its own Hello (without it), and the sender sends it
  again until a Hello from the peer arrives (a few times at most:
  ``Replica``'s "asking Hello").
- ``Get``: send back your states of these keys; ``GetReply`` carries them
  (``None``: the replica holds nothing of that key), in the order asked.
  To a peer that announced ``FEATURE_GET_PARTS`` the answer to a Get of
  several keys may come as several ``GetReply`` of one ``req``, each the
  states of the next keys in order, of at most ``PUT_STATES_MAX_BYTES``
  (``replica.py``) bar a single larger state, so that a multi-key read of
  large values fits peer frames; the asker joins the parts until it holds
  a state per key asked (``Coordinator``). An older peer gets one reply.

- ``TreeGet`` / ``TreeHashes``: anti-entropy (Dynamo §4.7): the hashes of
  some nodes of one level of the receiver's Merkle tree of the keys whose
  replicas are exactly ``group`` (``merkle.py``); ``LeafGet`` /
  ``LeafKeys``: the ``(key, digest)`` pairs of some leaves of that tree. A
  node that is not in the group answers with no hashes / no keys.
- ``Paxos``: a message of the per-key Paxos protocol (``paxos_messages.py``,
  its own wire form inside, packed: ``[9, bytes]``). ``PaxosBody``: the same message in line,
  ``[18, [tag, req, sender, key, ...]]`` (``paxos_messages.wire``), one msgpack layer less on
  each side (the sender packs it once, the receiver unpacks the frame once); sent only to a
  peer that announced ``FEATURE_PAXOS_BODY`` (an older node does not decode tag 18 and drops
  the whole frame), the others get ``Paxos``. The sender builds it with ``encoded`` (its whole
  encoding, shared by the peers it goes to: ``encode`` returns it as is); a decoded one has
  only ``msg``. A malformed body in line makes the frame undecodable, as any other kind's.
- ``RingMsg`` / ``RingAck``: a node's ring state (epoch, members with their
  addresses, the change in flight) and the acknowledgement of an epoch;
  ``StreamStart`` asks a node to stream the key states of some token ranges
  to ``target`` (in ``Put`` chunks that ask for a ``PutAck``), and
  ``StreamDone`` reports it finished, naming the same ranges (a stand-in
  source may run a second stream to the same target; ``membership.py``).
- ``Batch``: several of the above in one frame (one system call and one MAC
  per peer per loop iteration instead of one per message). ``encode_frames``
  cuts a batch into several frames where it would pass the transport's frame
  limit (issue 9: a frame above it closes the link); ``BATCH_HEAD_BYTES``,
  ``PUTS_HEAD_BYTES`` and ``PUTS_WRITE_BYTES`` bound what the encoding adds
  to the messages, and to a ``Puts``' deltas, so a cut never guesses.

``decode`` checks every field and raises ``DynamoCodecError`` (and nothing
else) on a frame it does not understand: a peer speaking garbage is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from replikv.core.builders import positional_builder
from replikv.core.dynamo import paxos_messages as pm
from replikv.core.framing import cut_runs

__all__ = ["BATCH_HEAD_BYTES", "PUTS_HEAD_BYTES", "PUTS_WRITE_BYTES", "Batch", "DynamoCodecError", "DynamoMsg", "Get", "GetReply", "LeafGet", "LeafKeys", "One", "Put",
           "FEATURES", "FEATURE_COMMIT_ON_ACCEPT", "FEATURE_ELECTORATE", "HELLO_ASK", "FEATURE_PROVENANCE", "FEATURE_PUTS", "FEATURE_PUT_MUT", "FEATURE_QUIET_COMMIT", "FEATURE_GET_PARTS", "FEATURE_PAXOS_BODY", "Hello", "Paxos", "PaxosBody", "PutAck", "PutAcks", "PutNeed", "Puts", "RingAck", "RingMsg", "StreamDone", "StreamStart", "TreeGet", "TreeHashes",
           "decode", "encode", "encode_batch", "encode_frames", "paxos_body"]

States = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Put:
    req: int
    states: States
    hint_for: str = ""
    paxos: States = ()  # acceptor states of streamed keys
    delta: bytes = b""  # a write as a delta (keyed.write_delta): states is then empty


@dataclass(frozen=True, slots=True, kw_only=True)
class PutNeed:
    req: int
    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PutAck:
    req: int
    ok: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Puts:
    writes: tuple[tuple[int, bytes], ...]  # (req, delta), in the order the coordinator made them


@dataclass(frozen=True, slots=True, kw_only=True)
class PutAcks:
    ok: tuple[int, ...]  # reqs acknowledged
    refused: tuple[int, ...] = ()  # reqs answered PutAck(ok=False)


FEATURE_PUTS = "puts"  # understands Puts and PutAcks
FEATURE_ELECTORATE = "paxos-electorate"  # reads a Paxos Prepare / Propose that names its electorate
FEATURE_PUT_MUT = "put-mutation"  # applies a delta whose mutations include ``put`` (core/crdt/store.py)
FEATURE_PROVENANCE = "paxos-provenance"  # reads Paxos proposals with their provenance (origin, after)
FEATURE_QUIET_COMMIT = "paxos-quiet-commit"  # reads a Paxos Commit that asks for no ack (paxos_messages.py)
FEATURE_GET_PARTS = "get-reply-parts"  # joins a Get's answer sent as several GetReplys (core/dynamo/coordinator.py)
# reads a Paxos Propose that commits on accept, and answers it with a committed Accepted (paxos.py)
FEATURE_COMMIT_ON_ACCEPT = "paxos-commit-on-accept"
FEATURE_PAXOS_BODY = "paxos-body"  # decodes a Paxos message in line in the frame (``PaxosBody``)
# what this version announces
FEATURES = (FEATURE_PUTS, FEATURE_ELECTORATE, FEATURE_PUT_MUT, FEATURE_PROVENANCE, FEATURE_QUIET_COMMIT,
            FEATURE_GET_PARTS, FEATURE_COMMIT_ON_ACCEPT, FEATURE_PAXOS_BODY)
# Not a feature: a Hello that names it asks the receiver to answer with its own (``Replica``'s
# "asking Hello"). An older node ignores a name it does not know, so the form stays the same.
HELLO_ASK = "answer-hello"


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    features: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Get:
    req: int
    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GetReply:
    req: int
    states: tuple[tuple[bytes, bytes | None], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeGet:
    req: int
    group: tuple[str, ...]
    level: int
    indexes: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeHashes:
    req: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class LeafGet:
    req: int
    group: tuple[str, ...]
    leaves: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class LeafKeys:
    req: int
    entries: tuple[tuple[bytes, bytes], ...]  # (key, digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class Paxos:
    data: bytes  # paxos_messages.encode(...)


@dataclass(frozen=True, slots=True, kw_only=True)
class PaxosBody:
    msg: pm.PaxosMsg
    encoded: bytes = b""  # the sender's: encode(PaxosBody(msg=msg)), made once for its peers


MemberWire = tuple[str, str, int, int]  # (id, host, RESP port, peer port)


@dataclass(frozen=True, slots=True, kw_only=True)
class RingMsg:
    epoch: int
    members: tuple[MemberWire, ...]
    change: str  # "" | "add" | "remove"
    node: MemberWire | tuple[()]  # the node joining or leaving; () with no change
    coordinator: str
    reads_new: bool = False  # the change's streams are done: reads go to the new ring (writes to both)


@dataclass(frozen=True, slots=True, kw_only=True)
class RingAck:
    epoch: int
    coordinator: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStart:
    epoch: int
    target: str
    ranges: tuple[tuple[int, int], ...]  # (start, end] token ranges


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamDone:
    epoch: int
    target: str
    ranges: tuple[tuple[int, int], ...] = ()  # the StreamStart's: a source may run two streams to one target


One = (Put | PutNeed | PutAck | Puts | PutAcks | Hello | Get | GetReply | TreeGet | TreeHashes | LeafGet | LeafKeys | Paxos | PaxosBody
       | RingMsg | RingAck | StreamStart | StreamDone)


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    msgs: tuple[One, ...]


DynamoMsg = One | Batch

_BATCH, _PUT, _PUT_ACK, _GET, _GET_REPLY, _TREE_GET, _TREE_HASHES, _LEAF_GET, _LEAF_KEYS, _PAXOS = range(10)
_RING, _RING_ACK, _STREAM_START, _STREAM_DONE, _PUT_NEED, _PUTS, _PUT_ACKS, _HELLO, _PAXOS_BODY = range(10, 19)
_I64 = 1 << 63


class DynamoCodecError(ValueError):
    """A frame that is not a well-formed leaderless message."""


_pack = msgpack.Packer(use_bin_type=True).pack  # as paxos_messages._pack: ~0.5 µs less than packb


def encode(msg: DynamoMsg) -> bytes:
    out: bytes
    if type(msg) is PaxosBody:  # the Paxos path's messages: before _wire's cases (the same bytes)
        out = msg.encoded or _pack([_PAXOS_BODY, pm.wire(msg.msg)])
        return out
    if type(msg) is Paxos:
        out = _pack([_PAXOS, msg.data])
        return out
    out = _pack(_wire(msg))
    return out


# ``PaxosBody(msg=, encoded=)`` built positionally (builders.positional_builder): one per Paxos
# message sent and one per message received, ~20 a Paxos write on its three replicas.
_new_paxos_body = positional_builder(PaxosBody)


def paxos_body(msg: pm.PaxosMsg) -> PaxosBody:
    """The sender's ``PaxosBody`` of ``msg``: encoded now, once for all the peers it goes to."""
    return _new_paxos_body(msg, _pack([_PAXOS_BODY, pm.wire(msg)]))


# Upper bounds of what the encoding adds (msgpack): a batch to its messages' encodings (a
# fixarray(2), the tag, an array header of at most 5 bytes); a Puts to its writes (the same); a
# Puts to each write's delta (a fixarray(2), the req as at most a uint64 of 9 bytes, a bin header
# of at most 5 bytes).
BATCH_HEAD_BYTES = 7
PUTS_HEAD_BYTES = 7
PUTS_WRITE_BYTES = 15


def encode_frames(encoded: list[bytes], max_bytes: int) -> list[bytes]:
    """Already encoded messages (``encode``'s output) in frames of at most ``max_bytes`` each
    (``encode_batch``), in order, cut as ``cut_by_bytes`` cuts them; a message above
    ``max_bytes`` on its own is a frame of its own (its maker bounds it: one client write)."""
    return [encode_batch(run) for run in cut_runs(encoded, [len(e) for e in encoded], max_bytes - BATCH_HEAD_BYTES)]


def encode_batch(frames: list[bytes]) -> bytes:
    """One frame holding already encoded messages (``encode``'s output), without packing them again."""
    if len(frames) == 1:
        return frames[0]
    n = len(frames)
    head = bytes((0x90 | n,)) if n < 16 else (b"\xdc" + n.to_bytes(2, "big") if n < 1 << 16
                                               else b"\xdd" + n.to_bytes(4, "big"))
    return b"\x92\x00" + head + b"".join(frames)


def _wire(msg: DynamoMsg) -> list[Any]:
    body: list[Any]
    match msg:
        case Batch():
            body = [_BATCH, [_wire(m) for m in msg.msgs]]
        case Put():
            body = [_PUT, msg.req, [[k, b] for k, b in msg.states], msg.hint_for]
            if msg.paxos or msg.delta:
                body.append([[k, b] for k, b in msg.paxos])
            if msg.delta:
                body.append(msg.delta)
        case PutNeed():
            body = [_PUT_NEED, msg.req, list(msg.keys)]
        case Puts():
            body = [_PUTS, [[r, d] for r, d in msg.writes]]
        case PutAcks():
            body = [_PUT_ACKS, list(msg.ok), list(msg.refused)]
        case Hello():
            body = [_HELLO, list(msg.features)]
        case PutAck():
            body = [_PUT_ACK, msg.req, msg.ok]
        case Get():
            body = [_GET, msg.req, list(msg.keys)]
        case GetReply():
            body = [_GET_REPLY, msg.req, [[k, b] for k, b in msg.states]]
        case TreeGet():
            body = [_TREE_GET, msg.req, list(msg.group), msg.level, list(msg.indexes)]
        case TreeHashes():
            body = [_TREE_HASHES, msg.req, list(msg.hashes)]
        case LeafGet():
            body = [_LEAF_GET, msg.req, list(msg.group), list(msg.leaves)]
        case LeafKeys():
            body = [_LEAF_KEYS, msg.req, [[k, d] for k, d in msg.entries]]
        case Paxos():
            body = [_PAXOS, msg.data]
        case PaxosBody():
            body = [_PAXOS_BODY, pm.wire(msg.msg)]
        case RingMsg():
            body = [_RING, msg.epoch, [list(m) for m in msg.members], msg.change, list(msg.node), msg.coordinator,
                    msg.reads_new]
        case RingAck():
            body = [_RING_ACK, msg.epoch, msg.coordinator]
        case StreamStart():
            body = [_STREAM_START, msg.epoch, msg.target, [[a, b] for a, b in msg.ranges]]
        case StreamDone():
            body = [_STREAM_DONE, msg.epoch, msg.target, [[a, b] for a, b in msg.ranges]]
    return body


def _ranges(body: list[Any]) -> tuple[tuple[int, int], ...]:
    ranges = []
    for r in body:
        if (type(r) is not list or len(r) != 2 or any(type(t) is not int or not 0 <= t < 1 << 64 for t in r)):
            raise DynamoCodecError("stream ranges: expected [start, end] token pairs")
        ranges.append((r[0], r[1]))
    return tuple(ranges)


def _req(x: object) -> int:
    if type(x) is not int or not 0 <= x < _I64:
        raise DynamoCodecError("req: expected an integer >= 0")
    return x


def _states(x: object, allow_none: bool) -> tuple[tuple[bytes, Any], ...]:
    if type(x) is not list:
        raise DynamoCodecError("states: expected a list")
    out = []
    for item in x:
        if type(item) is not list or len(item) != 2 or type(item[0]) is not bytes:
            raise DynamoCodecError("states: expected [key, state] pairs")
        if not (type(item[1]) is bytes or (allow_none and item[1] is None)):
            raise DynamoCodecError("states: a state must be bytes")
        out.append((item[0], item[1]))
    return tuple(out)


def decode(data: bytes) -> DynamoMsg:
    try:
        body = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as e:  # msgpack raises many kinds (ExtraData, ValueError, ...)
        raise DynamoCodecError(f"not msgpack: {type(e).__name__}") from None
    if type(body) is not list or not body:
        raise DynamoCodecError("expected a non-empty list")
    if body[0] == _BATCH and len(body) == 2 and type(body[1]) is list:
        msgs = tuple(_message(b) for b in body[1])
        return Batch(msgs=msgs)
    return _message(body)


def _ints(x: object, what: str) -> tuple[int, ...]:
    if type(x) is not list or any(type(i) is not int or not 0 <= i < _I64 for i in x):
        raise DynamoCodecError(f"{what}: expected a list of integers >= 0")
    return tuple(x)


def _group(x: object) -> tuple[str, ...]:
    if type(x) is not list or not x or any(type(n) is not str or not n for n in x):
        raise DynamoCodecError("group: expected a non-empty list of node ids")
    return tuple(x)


def _message(body: Any) -> One:
    if type(body) is not list or not body:
        raise DynamoCodecError("expected a non-empty list")
    tag = body[0]
    if tag == _PAXOS_BODY and len(body) == 2:  # the Paxos path's: first
        try:
            return _new_paxos_body(pm.from_wire(body[1]), b"")
        except pm.PaxosCodecError as e:
            raise DynamoCodecError(f"paxos body: {e}") from None
    if tag == _PAXOS and len(body) == 2 and type(body[1]) is bytes:
        return Paxos(data=body[1])
    if tag == _PUT and len(body) in (4, 5, 6):
        if type(body[3]) is not str:
            raise DynamoCodecError("hint_for: expected a string")
        paxos = _states(body[4], False) if len(body) >= 5 else ()
        delta = body[5] if len(body) == 6 else b""
        if type(delta) is not bytes:
            raise DynamoCodecError("delta: expected bytes")
        return Put(req=_req(body[1]), states=_states(body[2], False), hint_for=body[3], paxos=paxos, delta=delta)
    if tag == _PUT_NEED and len(body) == 3:
        keys = body[2]
        if type(keys) is not list or any(type(k) is not bytes for k in keys):
            raise DynamoCodecError("put-need keys: expected a list of bytes")
        return PutNeed(req=_req(body[1]), keys=tuple(keys))
    if tag == _PUTS and len(body) == 2 and type(body[1]) is list:
        writes = []
        for item in body[1]:
            if type(item) is not list or len(item) != 2 or type(item[1]) is not bytes or not item[1]:
                raise DynamoCodecError("puts: expected [req, delta] pairs")
            writes.append((_req(item[0]), item[1]))
        return Puts(writes=tuple(writes))
    if tag == _PUT_ACKS and len(body) == 3:
        return PutAcks(ok=_ints(body[1], "acked reqs"), refused=_ints(body[2], "refused reqs"))
    if tag == _HELLO and len(body) == 2 and type(body[1]) is list and all(type(f) is str for f in body[1]):
        return Hello(features=tuple(body[1]))
    if tag == _PUT_ACK and len(body) == 3 and type(body[2]) is bool:
        return PutAck(req=_req(body[1]), ok=body[2])
    if tag == _GET and len(body) == 3:
        keys = body[2]
        if type(keys) is not list or any(type(k) is not bytes for k in keys):
            raise DynamoCodecError("get keys: expected a list of bytes")
        return Get(req=_req(body[1]), keys=tuple(keys))
    if tag == _GET_REPLY and len(body) == 3:
        return GetReply(req=_req(body[1]), states=_states(body[2], True))
    if tag == _TREE_GET and len(body) == 5 and type(body[3]) is int:
        return TreeGet(req=_req(body[1]), group=_group(body[2]), level=body[3], indexes=_ints(body[4], "tree indexes"))
    if tag == _TREE_HASHES and len(body) == 3:
        if type(body[2]) is not list or any(type(h) is not bytes for h in body[2]):
            raise DynamoCodecError("tree hashes: expected a list of bytes")
        return TreeHashes(req=_req(body[1]), hashes=tuple(body[2]))
    if tag == _LEAF_GET and len(body) == 4:
        return LeafGet(req=_req(body[1]), group=_group(body[2]), leaves=_ints(body[3], "leaves"))
    if tag == _LEAF_KEYS and len(body) == 3:
        return LeafKeys(req=_req(body[1]), entries=_states(body[2], False))
    if tag == _RING and len(body) == 7 and type(body[3]) is str and type(body[5]) is str and type(body[6]) is bool:
        members = body[2]
        if type(members) is not list:
            raise DynamoCodecError("ring members: expected a list")
        node = body[4]
        return RingMsg(epoch=_req(body[1]), members=tuple(_member(m) for m in members), change=body[3],
                       node=_member(node) if node != [] else (), coordinator=body[5], reads_new=body[6])
    if tag == _RING_ACK and len(body) == 3 and type(body[2]) is str:
        return RingAck(epoch=_req(body[1]), coordinator=body[2])
    if tag == _STREAM_START and len(body) == 4 and type(body[2]) is str and type(body[3]) is list:
        return StreamStart(epoch=_req(body[1]), target=body[2], ranges=_ranges(body[3]))
    if tag == _STREAM_DONE and len(body) == 4 and type(body[2]) is str and type(body[3]) is list:
        return StreamDone(epoch=_req(body[1]), target=body[2], ranges=_ranges(body[3]))
    raise DynamoCodecError(f"unknown message tag {tag!r} or wrong length {len(body)}")


def _member(x: object) -> MemberWire:
    if (type(x) is not list or len(x) != 4 or type(x[0]) is not str or not x[0] or type(x[1]) is not str
            or any(type(p) is not int or not 0 <= p < 65536 for p in x[2:])):
        raise DynamoCodecError("ring member: expected [id, host, port, peer_port]")
    return (x[0], x[1], x[2], x[3])
