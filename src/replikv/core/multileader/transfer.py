"""Chunked state transfer: a node that lacks ops no neighbour retains gets the
store in bounded chunks, joined chunk by chunk (issue 10; Almeida et al.,
"Delta state replicated data types", 2018, §4 and §6 on causal contexts).

Why chunks: one frame with the whole store stalls both event loops for as long
as it takes to serialize and join it, and a store bigger than the transport's
largest frame can never be sent at all. ``StateExport`` reads the store a few
keys at a time (``max_chunk_bytes`` of key states per chunk) while the sender
goes on serving; ``StateReceiver`` joins each chunk as it arrives.

Rules (the store's side is ``CrdtStore.dump_keys`` / ``join_keys`` /
``join_absent`` / ``cover``, see "Key contexts" in core/crdt/store.py):

1. Start: the export notes the sender's version vector ``vv`` (``StateChunk.vv``,
   the same in every chunk) and its key list. The sender's store is durable up to
   ``vv`` (the driver commits its WAL first) and every op ``vv`` covers is in every
   key state read afterwards: state-based join is monotone, and the sender's
   store only grows along its vv.
2. Each chunk holds the states of the next keys as they are when it is read,
   with ``at``, the sender's vv at that moment (``at`` covers ``vv``), and a key's
   own context when the sender holds one beyond its vv. The driver commits its
   WAL before reading a chunk, so ``at`` is durable at the sender too. A key
   gone by then is left out.
3. A state read at ``at`` holds ops beyond ``vv``. Joining it, the receiver
   records the key's context (``kctx``): an op it delivers later that the key's
   context covers is skipped for that key (an increment would count twice),
   and no local write is made from that key until the receiver's vv covers its
   context (``CrdtStore.pending_context``; the runtime refuses it with TRYAGAIN:
   its counter totals or list element ids would name ops its deps do not, and a
   node applying it before those ops would diverge).
4. The receiver joins chunks as they arrive, in any order (each is a valid
   state with its context; joins commute), but advances nothing else: its
   store's vv and its replica's vv move only once ALL chunks of the transfer
   are joined (``done``): then every key the sender did not send was absent
   there at ``vv``, so each such key here is joined with an empty state under
   ``vv`` (``join_absent``), the store's vv joins ``vv`` (``cover``), and the
   driver makes the store durable (a snapshot) BEFORE it calls
   ``Replica.installed(vv, sender)``.
5. A transfer cut off (a disconnect, a crash of either side) never completes:
   the receiver keeps what it joined (each joined key carries its context: the
   ops it holds are skipped when they arrive, so it is harmless) and its vv
   does not move; after a crash it has lost those joins, which is harmless
   too. The next connect starts a new transfer from the start. A chunk of a
   transfer with a greater id than the one in progress from that sender
   replaces it; chunks of an older one are ignored (the sender numbers its
   transfers increasingly; restarting one to a peer cancels the old).
6. A transfer whose start ``vv`` the receiver already covers brings nothing:
   its chunks are ignored. ``needed`` is asked when each chunk arrives and by
   ``drop_covered`` (the driver's heartbeat), so a transfer the receiver caught
   up with meanwhile (another sender's transfer, ops delivered) ends at once;
   the sender stops streaming it when a Sync shows the receiver covers its
   ``vv`` (``StateExport.unneeded``).
7. Flow control: the receiver acknowledges the chunks it has taken in
   (``StateAck``, joined or dropped); the sender keeps at most ``window``
   chunks unacknowledged (``StateExport.may_send``), so the receiver's queue of
   chunks not yet joined stays bounded however slow its joins are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from replikv.core.crdt import CrdtStore
from replikv.core.invariant import invariant
from replikv.core.multileader.messages import VV, StateChunk

__all__ = ["DEFAULT_CHUNK_BYTES", "Incoming", "StateExport", "StateReceiver"]

DEFAULT_CHUNK_BYTES = 1 << 20


class StateExport:
    """The sending side of one transfer (rules 1 and 2)."""

    def __init__(self, store: CrdtStore, sender: str, transfer: int,
                 max_chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        invariant(max_chunk_bytes >= 1, "a chunk holds at least one byte")
        self.store = store
        self.sender = sender
        self.transfer = transfer
        self.max_chunk_bytes = max_chunk_bytes
        self.vv: VV = dict(store.vv)
        self._keys = list(store.data)
        self._pos = 0
        self.index = 0  # of the next chunk
        self.done = False
        self.bytes_sent = 0
        self.acked = 0  # chunks the receiver has taken in (StateAck)

    def unneeded(self, receiver_vv: VV) -> bool:
        """Does the receiver (as its Syncs show it) cover this transfer's ``vv`` already?
        Then the rest would bring nothing (rule 6): stop streaming it."""
        return all(receiver_vv.get(o, 0) >= s for o, s in self.vv.items())

    def on_ack(self, count: int) -> None:
        self.acked = max(self.acked, min(count, self.index))

    def may_send(self, window: int) -> bool:
        """Fewer than ``window`` chunks sent and not yet acknowledged (rule 7)?"""
        return self.index - self.acked < window

    @property
    def keys_total(self) -> int:
        return len(self._keys)

    def next_chunk(self) -> StateChunk:
        """The next chunk, read now (the caller's WAL holds everything the store does)."""
        invariant(not self.done, "no chunk after the last")
        blob, self._pos = self.store.dump_keys(self._keys, self._pos, self.max_chunk_bytes)
        self.done = self._pos >= len(self._keys)
        chunk = StateChunk(sender=self.sender, transfer=self.transfer, index=self.index, vv=self.vv,
                           at=dict(self.store.vv), keys=blob, last=self.done)
        self.index += 1
        self.bytes_sent += len(blob)
        return chunk


@dataclass
class Incoming:
    """One transfer being received."""

    transfer: int
    vv: VV
    ignored: bool  # it brings nothing this node lacks (rule 6), or it is complete
    have: set[int] = field(default_factory=set)  # chunk indexes joined
    total: int | None = None  # known once the last chunk arrived
    present: set[bytes] = field(default_factory=set)  # keys the sender sent


class StateReceiver:
    """The receiving side: at most one transfer in progress per sender (rules 3-6)."""

    def __init__(self) -> None:
        self.incoming: dict[str, Incoming] = {}

    def chunk(self, store: CrdtStore, msg: StateChunk, needed: Callable[[VV], bool]) -> tuple[list[bytes], VV | None]:
        """Join ``msg`` into ``store``; returns the keys changed and, when this chunk
        completed its transfer, the transfer's vv (the store's vv covers it now:
        make the store durable, then ``Replica.installed(store.vv, sender)``)."""
        inc = self.incoming.get(msg.sender)
        if inc is None or msg.transfer > inc.transfer:
            inc = self.incoming[msg.sender] = Incoming(transfer=msg.transfer, vv=dict(msg.vv),
                                                       ignored=not needed(msg.vv))
        elif msg.transfer < inc.transfer:
            return [], None  # a straggler of a transfer that was replaced
        elif not inc.ignored and not needed(inc.vv):
            self._ignore(inc)  # caught up with meanwhile (rule 6)
        if inc.ignored or msg.index in inc.have or (inc.total is not None and msg.index >= inc.total):
            return [], None
        changed, keys = store.join_keys(msg.keys, msg.at)
        inc.present.update(keys)
        inc.have.add(msg.index)
        if msg.last:
            inc.total = msg.index + 1
        if inc.total is None or len(inc.have) < inc.total:
            return changed, None
        inc.ignored = True  # complete: its late duplicates are ignored
        changed += store.join_absent(inc.present, inc.vv)
        inc.present = set()
        store.cover(inc.vv)
        for other in self.incoming.values():  # another sender's transfer this one covers brings nothing
            if not other.ignored and all(store.vv.get(o, 0) >= s for o, s in other.vv.items()):
                self._ignore(other)
        return changed, inc.vv

    def drop_covered(self, needed: Callable[[VV], bool]) -> None:
        """End every transfer in progress that brings nothing any more (rule 6): the receiver
        caught up with its ``vv`` by another way since it started."""
        for inc in self.incoming.values():
            if not inc.ignored and not needed(inc.vv):
                self._ignore(inc)

    @staticmethod
    def _ignore(inc: Incoming) -> None:
        inc.ignored = True
        inc.present = set()

    def cancel(self, sender: str) -> None:
        """The link to ``sender`` dropped: its transfer will start over (rule 5)."""
        self.incoming.pop(sender, None)

    def in_progress(self) -> int:
        return sum(1 for inc in self.incoming.values() if not inc.ignored)
