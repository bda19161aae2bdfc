"""Peer messages of the multi-leader replica (frozen dataclasses, DESIGN.md; ``Ops`` is not frozen).

- ``Op``: one write made at ``origin``: its ``seq`` (the origin's own counter,
  1, 2, ...), its HLC timestamp, ``deps`` (the origin's version vector when it
  made the op, excluding the op: ``deps[origin] == seq - 1``) and an opaque,
  msgpack-able ``payload`` (CRDT mutations, applied by the store).
- ``Sync``: heartbeat and ack: the sender's version vector and its matrix
  clock (for every node, the version vector the sender knows it has).
- ``Ops``: a batch of ops, in an order that respects causality.
- ``State``: a full-state transfer in one frame: the sender's version vector
  and an opaque blob (the store's state covering exactly that vector). Still
  understood; nodes now send ``StateChunk``s.
- ``StateChunk``: one chunk of a chunked state transfer (transfer.py): the
  transfer's id, the chunk's index, ``vv`` (the sender's version vector when
  the transfer STARTED, the same in every chunk), ``at`` (the sender's vector
  when it read this chunk's key states, ``at >= vv``), the key states
  (``CrdtStore.dump_keys``) and whether it is the last.
- ``StateAck``: the receiver has taken in (joined or dropped) the chunks of a
  transfer up to ``count`` (flow control: the sender keeps at most a window of
  chunks unacknowledged, so the receiver's queue of chunks is bounded).

A version vector maps origin -> the highest seq of that origin applied; all
lower seqs of that origin are applied too (delivery is contiguous per origin).
The wire form is in codec.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["MlMsg", "Ops", "Op", "State", "StateAck", "StateChunk", "Sync", "VV"]

VV = dict[str, int]  # origin -> highest contiguous seq applied


class Op(NamedTuple):
    """One write (see the module docstring). A NamedTuple rather than a frozen dataclass, as
    kv/context.py's ApplyContext: every node builds one per write of the cluster (made here,
    decoded there), and a frozen dataclass costs ~0.9 us to construct against ~0.3 us."""

    origin: str
    seq: int
    hlc: int
    deps: VV
    payload: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Sync:
    sender: str
    vv: VV
    matrix: dict[str, VV]  # node -> the vv the sender knows that node has


@dataclass(slots=True, kw_only=True)
class Ops:
    """Not frozen, as the effects (effects.py): one is built per local write; never changed
    once built."""

    sender: str
    ops: tuple[Op, ...]
    # Not sent: filled in by the receiver's decoder (codec.decode), which leaves out the ops its
    # version vector already covers: how many (``dropped``) and, per origin, the highest seq
    # among them (``covered``: the sender has those ops).
    covered: VV = field(default_factory=dict)
    dropped: int = 0
    # Not sent either: each op's bytes in the frame (``codec.pack_op``'s form), for the WAL
    packed: tuple[bytes, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class State:
    sender: str
    vv: VV
    blob: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChunk:
    sender: str
    transfer: int  # the sender's id of this transfer: a greater one replaces it at the receiver
    index: int  # 0, 1, 2, ... (the receiver joins them in any order)
    vv: VV  # the sender's version vector when the transfer started
    at: VV  # the sender's version vector when it read these key states (covers vv)
    keys: bytes  # CrdtStore.dump_keys
    last: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class StateAck:
    sender: str
    transfer: int
    count: int  # chunks 0 .. count - 1 taken in


MlMsg = Sync | Ops | State | StateChunk | StateAck
