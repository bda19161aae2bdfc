"""The multi-leader replica: every node takes writes; every op reaches every node
exactly once, in causal order, over a mesh, star or ring, across lost messages,
disconnections and restarts. Pure (sans-I/O): messages and ticks in, effects out.

Rules (issue 10; the brief of the multileader core):
1. Neighbours: ``mesh`` = every other node; ``star`` = the hub (default: the first
   of the sorted nodes) talks to all, the others only to the hub; ``ring`` = the
   previous and the next node in sorted order (undirected). A message from a node
   that is not a neighbour is ignored. Ops of ANY origin are relayed to the
   neighbours that lack them, so every topology reaches every node.
2. ``local(hlc, payload)``: seq = vv[self] + 1, deps = a copy of vv; effects in this
   order: ``Persist([op])``, ``Deliver([op])``, then ``Send``s. An op is never sent
   before it is persisted (the driver syncs before it sends): a restarted node
   never reuses a seq another node has seen.
3. ``step(Ops)``: an op already covered by vv is dropped (exactly once); one whose
   deps are not covered waits in the pending buffer, bounded by ``max_pending``
   (beyond it the op is dropped: it will be resent; an op deliverable at once
   never waits, so a full buffer cannot block the op it waits for); every op that becomes
   deliverable (seq == vv[origin] + 1 and deps <= vv) is persisted, then
   delivered, in causal order, then relayed, and the sender gets a Sync at once
   (an ack: a write waiting for n other nodes need not wait for a heartbeat), asked for
   as ``Ack(sender)``: the driver builds it (``sync_for``) when it leaves, once per peer
   per batch of sends however many frames that peer's batch acks.
   Receiving an op from a neighbour tells us it has that op and its deps (a
   node sends only ops it has delivered).
4. Nothing loops: a neighbour is sent only ops its known vv lacks, past what was
   already sent to it (``cursor``), in delivery order (causal; a scan position per
   neighbour keeps a relay from rereading the whole retained log), at most
   ``window_ops`` per trigger in batches of at most ``max_batch_ops``. Ops go to a
   neighbour only once a Sync from it told us where it stands.
5. ``step(Sync)``: record the sender's vv and merge its matrix clock; send the
   sender what it lacks; if it lacks ops we no longer retain (its vv[o] < base[o],
   the seq before our first retained op of o) emit ``SendState(to)`` instead: one
   transfer per neighbour at a time (until the driver reports ``state_done(to)``
   or the link drops), and the next no sooner than ``state_every_ticks`` after
   the previous one ended (a chunked transfer of a big store lasts longer than
   that; the receiver reports its new vv in a Sync once it has installed it).
6. ``step(State)`` and ``step(StateChunk)`` only record what the sender has (the
   transfer's start vv). The driver joins the state into its store (chunk by
   chunk, transfer.py; only if it brings anything: ``needs_state``), makes that
   durable (a snapshot of what the store holds: the joined vv, not ``replica.vv``
   after ``installed``, which may deliver pending ops the store has not applied
   yet), then calls ``installed(vv, sender)``: vv becomes the pointwise max,
   retained ops of an origin that jumped are dropped (no longer contiguous),
   pending ops may become deliverable, and the sender gets a Sync at once.
7. ``tick()``: every ``sync_every`` ticks send a Sync to each neighbour (heartbeat
   and ack), and resend what a neighbour still lacks of what we had sent it a
   whole sync period ago when it made no progress on that origin over the
   period AND its Syncs say it has received that much from us (``reached``:
   the op itself, or a later Sync of ours covering it; a link is FIFO, so it
   got the op and dropped it: a full pending buffer, a frozen disk, a message
   lost). A neighbour that has not yet read that far (a busy node working
   through a backlog) is not sent it twice: under load the copies would only
   deepen the backlog. Duplicates are dropped by vv.
8. Matrix clock: ``known[node]`` = the vv that node is known to have (from its
   Syncs, the matrices relayed in Syncs, and the ops it sent us). ``acked(origin,
   seq)`` = how many OTHER nodes are known to have that op (CONSISTENCY WRITE <n>).
   A Sync's matrix entry for its recipient (which has no use for what others
   know of it) is instead what the sender has received from it: per origin, the
   highest seq of the ops it sent and of the vvs of its Syncs (``got``; rule 7).
9. Retention: an op is kept until every node is known to have it, but at most the
   newest ops of each origin holding ``retain_ops`` mutations (an op's payload counts as
   its length: an op may hold many writes; the newest op is kept whatever it holds); a
   neighbour that needs a trimmed op gets a state transfer.
10. Restart: ``Replica(..., vv=snapshot_vv)`` then ``restore(vv, wal_ops)`` (the
   ops persisted after the snapshot, in the order persisted); exchange resumes
   from the Syncs of the neighbours.
Invariants (core/invariant.py): vv only grows; an op delivered has its deps
covered by vv at delivery and seq == vv[origin] + 1; no neighbour has an op of
ours we do not have (we would reuse its seq).
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable

from replikv.core.invariant import invariant
from replikv.core.multileader.effects import Ack, Deliver, Effect, Persist, Send, SendState
from replikv.core.multileader.messages import VV, MlMsg, Op, Ops, State, StateAck, StateChunk, Sync

__all__ = ["TOPOLOGIES", "Replica", "covers", "neighbours_of"]

TOPOLOGIES = ("mesh", "star", "ring")


def covers(vv: VV, deps: VV) -> bool:
    """Does ``vv`` include every op ``deps`` names? (A loop, not ``all()`` over a generator:
    twice per op delivered.)"""
    for o, s in deps.items():
        if vv.get(o, 0) < s:
            return False
    return True


def _merge(into: VV, other: VV) -> None:
    for o, s in other.items():
        if s > into.get(o, 0):
            into[o] = s


def neighbours_of(node_id: str, nodes: Iterable[str], topology: str, hub: str | None = None) -> list[str]:
    ordered = sorted(set(nodes))
    invariant(node_id in ordered, f"{node_id} is not one of {ordered}")
    others = [n for n in ordered if n != node_id]
    if topology == "mesh":
        return others
    if topology == "star":
        centre = hub if hub is not None else ordered[0]
        invariant(centre in ordered, f"hub {centre} is not one of {ordered}")
        return others if node_id == centre else [centre]
    if topology == "ring":
        i = ordered.index(node_id)
        ring = {ordered[i - 1], ordered[(i + 1) % len(ordered)]} - {node_id}
        return sorted(ring)
    raise ValueError(f"unknown topology {topology!r}; choose from {', '.join(TOPOLOGIES)}")


class Replica:
    def __init__(self, node_id: str, nodes: Iterable[str], topology: str = "mesh", hub: str | None = None,
                 retain_ops: int = 10_000, vv: VV | None = None, *, sync_every: int = 5,
                 max_batch_ops: int = 64, window_ops: int = 256, max_pending: int = 1024,
                 state_every_ticks: int = 20) -> None:
        invariant(retain_ops >= 1 and sync_every >= 1 and max_batch_ops >= 1 and window_ops >= 1
                  and max_pending >= 1, "bounds are positive")
        self.id = sys.intern(node_id)  # the str the decoder makes of it (codec.py): ids compare by identity
        self.nodes = sorted({sys.intern(n) for n in nodes})
        self.topology = topology
        self.neighbours = neighbours_of(node_id, self.nodes, topology, hub)
        self.retain_ops = retain_ops
        self.sync_every = sync_every
        self.max_batch_ops = max_batch_ops
        self.window_ops = window_ops
        self.max_pending = max_pending
        self.state_every_ticks = state_every_ticks
        self.vv: VV = {n: 0 for n in self.nodes}
        _merge(self.vv, vv or {})
        self.base: VV = dict(self.vv)  # ops of o up to base[o] are not retained
        # retained ops in delivery order, each with its position (counts every op ever
        # delivered here): base[o] < seq <= vv[o]
        self.log: list[tuple[int, Op]] = []
        self._next_pos = 0
        # rule 9's count, per origin: mutations delivered, and (seq, that count BEFORE the op)
        # for the delivered ops not yet below base: the first entry's count is then what the
        # ops at or below base held, which trimming dropped from the deque but not from the sum
        self._muts: dict[str, int] = {}
        self._muts_at: dict[str, deque[tuple[int, int]]] = {}
        self.known: dict[str, VV] = {n: {} for n in self.nodes if n != node_id}
        self.heard: set[str] = set()  # neighbours whose Sync told us where they stand
        self.cursor: dict[str, VV] = {n: {} for n in self.neighbours}  # highest seq sent, per origin
        self._cursor_prev: dict[str, VV] = {n: {} for n in self.neighbours}
        self._scan: dict[str, int] = {n: 0 for n in self.neighbours}  # log position to look from next
        self.pending: dict[tuple[str, int], Op] = {}
        self._pending_origins: dict[str, int] = {}  # origin -> how many of its ops are in pending
        self.ticks = 0
        self._state_sent_at: dict[str, int] = {}  # when the last transfer to a neighbour ended
        self.sending_state: set[str] = set()  # neighbours a transfer is streaming to now
        self.dropped_pending = 0  # ops dropped because the buffer was full
        self._trims = 0
        self._known_prev: dict[str, VV] = {}  # known[nb] at the last sync tick (loss detection)
        self._vv_prev: VV = {}  # our vv at the last sync tick (mesh: what may be relayed)
        self.duplicates = 0  # ops received again (a resend after a presumed loss, a relay)
        # rule 7: per neighbour, the highest seq per origin it sent us (ops, Sync vvs), and what
        # its Syncs say it got from us
        self.got: dict[str, VV] = {n: {} for n in self.neighbours}
        self.reached: dict[str, VV] = {n: {} for n in self.neighbours}
        self._acks = {n: Ack(to=n) for n in self.neighbours}  # never changed: one per neighbour

    # ------------------------------------------------------------ restart
    def restore(self, vv: VV, ops: Iterable[Op]) -> None:
        """A restart: the snapshot's ``vv``, then the WAL's ops after it, in order.
        The driver replays the same ops into its store."""
        self.vv = {n: 0 for n in self.nodes}
        _merge(self.vv, vv)
        self.base = dict(self.vv)
        self.log = []
        self._next_pos = 0
        self._muts.clear()
        self._muts_at.clear()
        self._scan = {n: 0 for n in self.neighbours}
        self.pending.clear()
        self._pending_origins.clear()
        for op in ops:
            if op.seq <= self.vv.get(op.origin, 0):
                continue  # the snapshot covers it
            self._advance(op)

    # ------------------------------------------------------------- writes
    def local(self, hlc: int, payload: object) -> tuple[Op, list[Effect]]:
        seq = self.vv[self.id] + 1
        op = Op(self.id, seq, hlc, dict(self.vv), payload)  # origin, seq, hlc, deps, payload
        self.vv[self.id] = seq  # _advance without its checks: deps is vv itself, seq the next one
        self.log.append((self._next_pos, op))
        self._next_pos += 1
        self._count(op)
        ops = (op,)
        effects: list[Effect] = [Persist(ops=ops), Deliver(ops=ops)]
        if self.topology != "mesh":
            effects += self._relay()
            return op, effects
        msg: Ops | None = None
        for nb in self.neighbours:  # mesh: the new op goes straight to every neighbour (rule 4)
            cur = self.cursor[nb]
            if nb in self.heard and cur.get(self.id, 0) == seq - 1 and not self._behind_base(nb):
                cur[self.id] = seq
                msg = msg or Ops(sender=self.id, ops=ops)
                effects.append(Send(to=nb, msg=msg))
            else:
                effects += self._send_lacking(nb)
        return op, effects

    # ----------------------------------------------------------- messages
    def step(self, msg: MlMsg) -> list[Effect]:
        if msg.sender not in self.neighbours:
            return []  # not a link of this topology
        match msg:
            case Sync():
                return self._on_sync(msg)
            case Ops():
                return self._on_ops(msg)
            case State() | StateChunk():
                _merge(self.known[msg.sender], msg.vv)
                return []
            case StateAck():
                return []  # flow control of the driver's transfer (transfer.py)

    def _on_sync(self, msg: Sync) -> list[Effect]:
        s = msg.sender
        invariant(msg.vv.get(self.id, 0) <= self.vv[self.id],
                  lambda: f"{s} has {self.id}'s op {msg.vv.get(self.id)} beyond {self.id}'s "
                          f"own {self.vv[self.id]}: a seq was reused or a persisted op lost")
        self.heard.add(s)
        _merge(self.known[s], msg.vv)
        _merge(self.got[s], msg.vv)
        for n, v in msg.matrix.items():
            if n == self.id:
                _merge(self.reached[s], v)  # what s has received from us (rule 8)
            elif n in self.known:
                _merge(self.known[n], v)
        self._trim()
        return self._send_lacking(s)

    def _on_ops(self, msg: Ops) -> list[Effect]:
        kn, got = self.known[msg.sender], self.got[msg.sender]
        if msg.dropped:  # duplicates the decoder left out (codec.decode with our vv)
            self.duplicates += msg.dropped
            _merge(kn, msg.covered)
            _merge(got, msg.covered)
        out: list[Op] = []
        vv, pending = self.vv, self.pending
        prev: Op | None = None
        for op in msg.ops:
            o, s = op.origin, op.seq
            # the sender had op's deps: merged once per run of one origin's consecutive ops, whose
            # deps only grow along the run (each is the origin's vv when it made the op)
            if prev is not None and (prev.origin != o or prev.seq + 1 != s):
                _merge(kn, prev.deps)
            prev = op
            if s > kn.get(o, 0):
                kn[o] = s
            if s > got.get(o, 0):
                got[o] = s
            if s <= vv.get(o, 0):
                self.duplicates += 1
                continue  # a duplicate: delivered already
            key = (o, s)
            if self._deliverable(op):  # never waits, so the bound never holds it back
                if pending and key in pending:  # an earlier copy waited: it must not outlive this one
                    self._unpend(key)
                self._append(op)
                out.append(op)
                continue
            if key not in pending:
                if len(pending) >= self.max_pending:
                    self.dropped_pending += 1
                    continue  # it will be resent
                pending[key] = op
                self._pending_origins[o] = self._pending_origins.get(o, 0) + 1
        if prev is not None:
            _merge(kn, prev.deps)
        if pending:
            out += self._drain()
        effects = self._delivered(out)
        if effects:  # an ack: the sender learns at once what we hold (CONSISTENCY WRITE <n>, WAIT)
            effects.append(self._acks[msg.sender])  # its Sync built when it leaves (sync_for)
        return effects

    def connected(self, nb: str) -> list[Effect]:
        """The link to ``nb`` is up (again): tell it where we stand, so it sends what we lack."""
        return [Send(to=nb, msg=self.sync_for(nb))] if nb in self.neighbours else []

    def disconnected(self, nb: str) -> None:
        """The link to ``nb`` dropped, and what was in flight on it with it: once a Sync says
        where it stands again, it is sent everything it lacks from there (rule 4)."""
        if nb in self.neighbours:
            self.heard.discard(nb)
            self.cursor[nb] = {}
            self._scan[nb] = 0
            self.sending_state.discard(nb)  # the driver stops that transfer; a new one starts over

    def state_done(self, nb: str) -> None:
        """The driver finished (or gave up) streaming a state transfer to ``nb``: the
        next may start ``state_every_ticks`` from now, if ``nb`` still lacks ops."""
        if nb in self.sending_state:
            self.sending_state.discard(nb)
            self._state_sent_at[nb] = self.ticks

    def sync_for(self, to: str) -> Sync:
        """A Sync for neighbour ``to``: its matrix entry is what we got from it (rule 8). The
        driver calls it for an ``Ack(to)`` as the Sync leaves (after the WAL commit that holds
        what our vv covers: persist before send)."""
        matrix = {n: dict(v) for n, v in self.known.items()}
        matrix[to] = dict(self.got[to])
        return Sync(sender=self.id, vv=dict(self.vv), matrix=matrix)

    def carries_ack(self, op: Op) -> bool:
        """Does an ``Ops`` frame ending with ``op`` tell its receiver all that an ack's Sync
        would of our vv (rule 3)? Yes when ``op`` is our newest and its deps are our vv: the
        receiver takes an op's seq and deps as what its sender has (``_on_ops``; rule 8), so it
        learns our vv from the frame. Not the Sync's matrix (rule 8), which the tick's Syncs
        carry: a driver may leave out an ``Ack``'s Sync behind such a frame, never a tick's or
        a connect's."""
        me, vv = self.id, self.vv
        if op.origin != me or op.seq != vv[me]:
            return False
        deps = op.deps
        for o, s in vv.items():  # a loop, not all() over a generator: once per peer per send
            if deps.get(o, 0) < s and o != me:
                return False
        return True

    def needs_state(self, vv: VV) -> bool:
        """Would a state covering ``vv`` bring anything this replica lacks?"""
        return not covers(self.vv, vv)

    def installed(self, vv: VV, sender: str | None = None) -> list[Effect]:
        """The driver joined a state covering ``vv`` into its store (and made it durable).
        ``vv`` is the transfer's (``sender`` is known to have it), not the store's joined
        vector: that one also covers ops of ours the sender may lack."""
        for o, s in vv.items():
            if s > self.vv.get(o, 0):
                self.vv[o] = s
                self.base[o] = s  # retained ops of o are no longer contiguous up to vv[o]
        jumped = {o for o, s in vv.items() if self.base.get(o, 0) == s}
        self.log = [(p, op) for p, op in self.log if op.origin not in jumped or op.seq > self.base[op.origin]]
        if sender is not None and sender in self.known:
            _merge(self.known[sender], vv)
        self._forget_stale_pending()
        effects = self._delivered(self._drain())
        if sender in self.neighbours:  # it need not wait for a heartbeat to send what follows
            effects.append(Send(to=sender, msg=self.sync_for(sender)))
        return effects

    def _deliverable(self, op: Op) -> bool:
        return op.seq == self.vv.get(op.origin, 0) + 1 and covers(self.vv, op.deps)

    def _drain(self) -> list[Op]:
        """Deliver what the pending buffer can, in causal order: per origin, the next seq while
        its deps are covered, until a pass delivers nothing (O(delivered x origins), not a sort
        of the buffer per message: under load the buffer holds thousands of ops)."""
        out: list[Op] = []
        pending, by_origin, vv = self.pending, self._pending_origins, self.vv
        progress = True
        while progress and pending:
            progress = False
            for o in list(by_origin):
                while True:
                    key = (o, vv.get(o, 0) + 1)
                    op = pending.get(key)
                    if op is None or not covers(vv, op.deps):
                        break
                    self._unpend(key)
                    self._append(op)  # deliverable: the checks above are _advance's
                    out.append(op)
                    progress = True
        return out

    def _unpend(self, key: tuple[str, int]) -> None:
        del self.pending[key]
        by_origin = self._pending_origins
        by_origin[key[0]] -= 1
        if not by_origin[key[0]]:
            del by_origin[key[0]]

    def _forget_stale_pending(self) -> None:
        """Drop buffered ops the version vector already covers (after a state transfer)."""
        vv = self.vv
        self.pending = {k: op for k, op in self.pending.items() if k[1] > vv.get(k[0], 0)}
        self._pending_origins = {}
        for o, _ in self.pending:
            self._pending_origins[o] = self._pending_origins.get(o, 0) + 1

    def _delivered(self, out: list[Op]) -> list[Effect]:
        if not out:
            return []
        ops = tuple(out)
        effects: list[Effect] = [Persist(ops=ops), Deliver(ops=ops)]
        if self.topology != "mesh":  # mesh: every origin sends to every node itself (rule 4)
            effects += self._relay()
        return effects

    def _advance(self, op: Op) -> None:
        have = self.vv.get(op.origin, 0)
        invariant(op.seq == have + 1, lambda: f"{self.id} delivers {op.origin}:{op.seq} after {have}")
        invariant(covers(self.vv, op.deps),
                  lambda: f"{self.id} delivers {op.origin}:{op.seq} with deps {op.deps} beyond vv {self.vv}")
        self._append(op)

    def _append(self, op: Op) -> None:
        """Deliver ``op``, which the caller found deliverable (``_advance``'s checks hold)."""
        self.vv[op.origin] = op.seq
        self.log.append((self._next_pos, op))
        self._next_pos += 1
        self._count(op)

    def _count(self, op: Op) -> None:
        """Rule 9's count of a delivered op's mutations (a payload that is no list counts one)."""
        n = len(op.payload) if isinstance(op.payload, (list, tuple)) else 1
        before = self._muts.get(op.origin, 0)
        self._muts[op.origin] = before + max(1, n)
        at = self._muts_at.get(op.origin)
        if at is None:
            at = self._muts_at[op.origin] = deque()
        at.append((op.seq, before))

    def _size_floor(self, origin: str, have: int) -> int:
        """The lowest base for ``origin`` that leaves at most ``retain_ops`` of its mutations
        retained, the newest op kept whatever it holds (rule 9); 0 when all fit.

        Kept from op ``s`` on, the retained mutations are the total less the count before
        ``s``: an op whose count before it is below ``total - retain_ops`` must go. The ops
        already below base count too (the first entry's count holds them): a floor computed
        from the retained ops alone would drop one more op a neighbour lacks at every trim."""
        at = self._muts_at.get(origin)
        if not at:
            return 0
        least = self._muts[origin] - self.retain_ops
        if at[0][1] >= least:
            return 0  # what is retained fits
        while len(at) > 1 and at[0][1] < least:
            at.popleft()
        return min(at[0][0] - 1, have - 1)

    # ------------------------------------------------------------- sending
    def _relay(self) -> list[Effect]:
        effects: list[Effect] = []
        for nb in self.neighbours:
            effects += self._send_lacking(nb)
        return effects

    def _behind_base(self, nb: str) -> bool:
        """Does neighbour ``nb`` lack ops we no longer retain (it needs a state transfer)?"""
        kn = self.known[nb]
        for o, b in self.base.items():  # a loop, not any() over a generator: twice per local write
            if kn.get(o, 0) < b:
                return True
        return False

    def _send_lacking(self, nb: str) -> list[Effect]:
        if nb not in self.heard:
            return []
        kn, cur = self.known[nb], self.cursor[nb]
        if self._behind_base(nb):
            last = self._state_sent_at.get(nb)
            if nb not in self.sending_state and (last is None or self.ticks - last >= self.state_every_ticks):
                self._state_sent_at[nb] = self.ticks
                self.sending_state.add(nb)
                _merge(cur, self.vv)  # the state covers our vv
                self._scan[nb] = self._next_pos
                return [SendState(to=nb)]
            return []  # ops beyond the gap would only wait in its buffer
        todo: list[Op] = []
        log = self.log
        nxt = self._next_pos
        # mesh: another origin's op is relayed only once we have held it a whole sync period
        # (the neighbour gets it from its origin; one still lacking then has lost that link)
        upto = self._vv_prev if self.topology == "mesh" else None
        held_back = -1
        me = self.id
        for j in range(bisect_left(log, self._scan[nb], key=lambda e: e[0]), len(log)):
            pos, op = log[j]
            if op.seq > kn.get(op.origin, 0) and op.seq > cur.get(op.origin, 0):
                if upto is not None and op.origin != me and op.seq > upto.get(op.origin, 0):
                    if held_back < 0:
                        held_back = pos
                    continue
                todo.append(op)
                if len(todo) >= self.window_ops:
                    nxt = pos + 1
                    break
        # nothing before it is lacking, short of a resend (tick) or an op held back
        self._scan[nb] = nxt if held_back < 0 else min(nxt, held_back)
        for op in todo:
            cur[op.origin] = op.seq
        b = self.max_batch_ops
        return [Send(to=nb, msg=Ops(sender=self.id, ops=tuple(todo[i:i + b])))
                for i in range(0, len(todo), b)]

    # ---------------------------------------------------------------- time
    def tick(self) -> list[Effect]:
        self.ticks += 1
        if self.ticks % self.sync_every:
            return []
        self._trim()
        effects: list[Effect] = []
        for nb in self.neighbours:
            effects.append(Send(to=nb, msg=self.sync_for(nb)))
            kn, cur, prev = self.known[nb], self.cursor[nb], self._cursor_prev[nb]
            was, reached = self._known_prev.get(nb, {}), self.reached[nb]
            for o, s in prev.items():
                have = kn.get(o, 0)
                # sent a whole period ago, still lacking, no progress since, and it has read that far
                # from us: it dropped them (rule 7)
                if have < s and have == was.get(o, 0) and reached.get(o, 0) >= s:
                    cur[o] = have
                    self._scan[nb] = 0
            self._cursor_prev[nb] = dict(cur)
            self._known_prev[nb] = dict(kn)
            effects += self._send_lacking(nb)
        self._vv_prev = dict(self.vv)
        return effects

    # ---------------------------------------------------- matrix, retention
    def acked(self, origin: str, seq: int) -> int:
        """How many OTHER nodes are known to have op ``origin:seq``."""
        return sum(1 for v in self.known.values() if v.get(origin, 0) >= seq)

    def _trim(self) -> None:
        """Raise ``base`` (rule 9) and drop what it no longer retains. The log is in delivery
        order, so the droppable ops are mostly at its front: a slice drops those; the few left
        behind a retained op are skipped by every scan (``_send_lacking`` compares seqs) and
        swept by a full pass once they could be a quarter of the log."""
        changed = False
        for o, have in self.vv.items():
            everywhere = min((v.get(o, 0) for v in self.known.values()), default=have)
            nb = max(self.base.get(o, 0), min(everywhere, have), self._size_floor(o, have))
            if nb > self.base.get(o, 0):
                self.base[o] = nb
                changed = True
        if not changed:
            return
        log, base = self.log, self.base
        for o, at in self._muts_at.items():  # what is below base needs no count
            b = base.get(o, 0)
            while at and at[0][0] <= b:
                at.popleft()
        k = 0
        while k < len(log) and log[k][1].seq <= base[log[k][1].origin]:
            k += 1
        if k:
            del log[:k]
        self._trims += 1
        if self._trims % 64 == 0:
            self.log = [(p, op) for p, op in log if op.seq > base[op.origin]]

    def retained(self) -> list[Op]:
        """The ops retained for neighbours that may lack them, in delivery order."""
        return [op for _, op in self.log if op.seq > self.base[op.origin]]

    def describe(self) -> str:
        return f"{self.id} vv={self.vv} base={self.base} log={len(self.log)} pending={len(self.pending)}"
