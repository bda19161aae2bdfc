"""The multi-leader mode in the simulator: a real ``Replica`` core per node
(core/multileader/replica.py), messages through the real codec, a WAL in the
real record format (sim/disk.py) and a small CRDT store behind a four-method
interface (``apply`` / ``snapshot`` / ``join`` / ``digest``, plus ``read`` for
clients) that ``replikv.core.crdt.CrdtStore`` will replace.

Workload: the engine's ``append`` clients (unique values ``<process>.<n>``), read
here as CRDT writes: a key of even index (k0, k2, ...) is a grow-only counter
(an append of ``p.n`` is ``INCRBY key (n % 5) + 1``), a key of odd index an
add-only set (``SADD key p.n``); a read returns the counter or the sorted set.
Clients write to ANY node (there is no leader: ``leader()`` is None). A write
is acknowledged once its op is synced in the local WAL (``CONSISTENCY WRITE
local``); it is never retried (an increment is not idempotent), so a write
without an answer has an unknown outcome.

Effects as the runtime will carry them out: ``Persist`` appends to the WAL;
``Deliver`` applies to the store; the WAL is synced before any ``Send`` or
``SendState`` leaves (durability rule). With a slow disk the sync waits
``slow_sync_us`` (and covers what was written by its end): sends and client
acks wait for it, and a crash meanwhile
loses the unsynced ops (and may tear the last write), which were never sent
or acknowledged. ``SendState`` starts a chunked state transfer
(core/multileader/transfer.py) as the runtime does: chunks of at most
``state_chunk_bytes`` of key states, one every ``chunk_gap_us``, each read
after a WAL sync (so the node keeps taking writes and delivering ops between
chunks, and later chunks are read from a later state), through the faulty
network (lost, duplicated, reordered chunks: the receiver joins them in any
order; a transfer that lost one never completes and the next starts over once
the replica asks again). The receiver joins chunk by chunk; after the last it
makes the result durable (a snapshot, the WAL reset) and calls ``installed``.
A client write that would be made from a key a transfer joined beyond the
node's vv is refused before it takes effect and retried (the runtime's
TRYAGAIN). Every ``compact_every`` WAL records a node
snapshots (vv + store) and resets its WAL. A restart recovers snapshot +
WAL and ``Replica.restore``s. ``retain_ops`` is small so that long
disconnections end in state transfers.

The topology (mesh, star, ring) is chosen by the seed unless given.

Checked at every delivery: causal order (deps covered by what the store has)
and exactly once (seq == applied[origin] + 1), and one op id is one payload
everywhere (no seq reused after it left its node). After heal, within the
engine's ``heal_us_max``: every node up, equal vv, equal store digests,
nothing pending. At the end: every counter equals the sum of the increments
that survived (so no acknowledged increment is lost, none counted twice), and
every set holds every acknowledged add and only values clients wrote.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from replikv.check.history import Op as HistOp
from replikv.core.crdt import CrdtStore, Hlc
from replikv.core.multileader import codec
from replikv.core.multileader.effects import Ack, Deliver, Effect, Persist, Send, SendState
from replikv.core.multileader.messages import VV, Op, Ops, State, StateChunk, Sync
from replikv.core.multileader.replica import TOPOLOGIES, Replica, covers
from replikv.core.multileader.transfer import StateExport, StateReceiver
from replikv.sim.clock import NodeClock
from replikv.sim.disk import GroupCommitDriver, SimWal
from replikv.sim.engine import NodeTable
from replikv.kv.crdt_writes import translate
from replikv.sim.workload import Client, PendingOp

if TYPE_CHECKING:
    from replikv.sim.engine import Engine

__all__ = ["MultiLeaderDriver", "MultiLeaderOptions", "run_seed"]


def _restore_store(blob: bytes | None, conflicts: str) -> CrdtStore:
    return CrdtStore.restore(blob, conflicts) if blob is not None else CrdtStore(conflicts)


@dataclass
class MultiLeaderOptions:
    topology: str | None = None  # None: chosen by the seed
    retain_ops: int = 8  # small: long disconnections end in state transfers
    sync_every: int = 5  # ticks between Syncs
    max_batch_ops: int = 16
    window_ops: int = 64
    max_pending: int = 256
    state_every_ticks: int = 10
    compact_every: int = 32  # WAL records between snapshots
    slow_sync_us: int = 40_000  # an fsync on a slow disk
    conflicts: str | None = None  # None: "lww", or "siblings" on some odd seeds
    state_chunk_bytes: int = 200  # small: a transfer takes several chunks
    chunk_gap_us: int = 3_000  # between two chunks of one transfer


@dataclass(frozen=True)
class ChunkDue:
    """The next chunk of ``export`` may leave once the WAL is synced."""

    to: str
    export: StateExport


@dataclass(frozen=True)
class Envelope:
    src: int
    dst: int
    data: bytes  # the real wire form (codec.encode)


def _op_wire(op: Op) -> list[Any]:
    return [op.origin, op.seq, op.hlc, op.deps, op.payload]


def _op_from_wire(x: list[Any]) -> Op:
    return Op(origin=x[0], seq=x[1], hlc=x[2], deps=dict(x[3]), payload=x[4])


class MlSimNode:
    def __init__(self, nid: int, clock: NodeClock, conflicts: str, offset_ms: int, tick_us: int) -> None:
        self.id = nid
        self.name = f"n{nid}"
        self.clock = clock
        self.wal = SimWal()
        self.snapshot: tuple[VV, bytes] | None = None  # durable: (vv, store blob)
        self.replica: Replica
        self.conflicts = conflicts
        self.store = CrdtStore(conflicts)
        self.offset_ms = offset_ms  # the node's wall clock: offset + drift (its tick period)
        self.tick_us = tick_us
        self.applied: VV = {}  # what the store holds, kept by the driver (exactly once, causal)
        self.up = True
        self.epoch = 0  # events scheduled before a crash are void
        self.hlc = Hlc()
        self.slow = False
        self.syncing = False
        # held until the WAL is synced: sends and client acks
        self.outbox: list[Send | Ack | SendState | ChunkDue] = []
        self.exports: dict[str, StateExport] = {}  # peer -> the transfer streaming to it
        self.receiver = StateReceiver()
        self.acks: list[tuple[Client, tuple[int, int]]] = []

    def wall_ms(self, now_us: int) -> int:
        """This node's drifting wall clock (ms)."""
        return max(0, now_us * self.clock.period_us // self.tick_us // 1000 + self.offset_ms)


class MultiLeaderDriver(GroupCommitDriver, NodeTable):
    mode = "multi-leader"
    workload = "append"

    def __init__(self, engine: Engine, **options: Any) -> None:
        self.engine = engine
        self.opts = MultiLeaderOptions(**options)
        cfg = engine.cfg
        self.rng = random.Random(engine.rng.getrandbits(64))
        self.crash_rng = random.Random(cfg.seed ^ 0xC4A5)
        self.topology = self.opts.topology or random.Random(cfg.seed * 7919 + 17).choice(TOPOLOGIES)
        crng = random.Random(cfg.seed * 104_729 + 3)
        self.conflicts = self.opts.conflicts or ("siblings" if cfg.seed % 2 and crng.random() < 0.5 else "lww")
        self.nodes = {nid: MlSimNode(nid, NodeClock(self.rng, cfg.tick_us, cfg.max_drift), self.conflicts,
                                     crng.randint(-50, 50), cfg.tick_us)
                      for nid in range(1, cfg.nodes + 1)}
        self.write_rng = random.Random(cfg.seed ^ 0x5EED)
        # op id -> (key, increment) of the client INCRBYs
        self.incrs: dict[tuple[str, int], tuple[str, int]] = {}
        # pushed value -> (its op id, the deps it was made with)
        self.pushes: dict[str, tuple[tuple[str, int], VV]] = {}
        self.ids = {n.name: n.id for n in self.nodes.values()}
        # op id -> (payload, names of the nodes that delivered it)
        self.seen: dict[tuple[str, int], tuple[Any, set[str]]] = {}
        self.acked = 0
        self.delivered = 0
        self.states_sent = 0
        self.states_installed = 0
        self.lost_unsynced = 0
        self.chunks_sent = 0
        self.writes_refused = 0  # made from a key a transfer had joined beyond the node's vv
        self.transfers = 0  # numbers every node's transfers increasingly, across restarts

    # ------------------------------------------------------------ plumbing
    def _make_replica(self, n: MlSimNode, vv: VV | None) -> Replica:
        o = self.opts
        return Replica(n.name, list(self.ids), self.topology, retain_ops=o.retain_ops, vv=vv,
                       sync_every=o.sync_every, max_batch_ops=o.max_batch_ops, window_ops=o.window_ops,
                       max_pending=o.max_pending, state_every_ticks=o.state_every_ticks)

    def boot(self) -> None:
        for n in self.nodes.values():
            n.replica = self._make_replica(n, None)
            n.applied = dict(n.replica.vv)
            self.engine.at(n.clock.next_tick(0), self._tick, n.id, n.epoch)

    def leader(self) -> int | None:
        return None  # every node takes writes

    def _tick(self, nid: int, epoch: int) -> None:
        n = self.nodes[nid]
        if not n.up or n.epoch != epoch:
            return
        self.handle(n, n.replica.tick())
        self.engine.at(n.clock.next_tick(self.engine.now_us), self._tick, nid, epoch)

    def _deliver(self, env: Envelope) -> None:
        n = self.nodes[env.dst]
        msg = codec.decode(env.data, n.replica.vv)  # its duplicate ops left undecoded, as a node does
        effects = n.replica.step(msg)
        if isinstance(msg, State) and msg.sender in n.replica.neighbours and n.replica.needs_state(msg.vv):
            n.store.join(msg.blob)
            effects += self._installed(n, msg.vv, msg.sender)
        if isinstance(msg, StateChunk) and msg.sender in n.replica.neighbours:
            _, vv = n.receiver.chunk(n.store, msg, n.replica.needs_state)
            if vv is not None:
                effects += self._installed(n, vv, msg.sender)
        self.handle(n, effects)

    def _installed(self, n: MlSimNode, vv: VV, sender: str) -> list[Effect]:
        """A state covering ``vv`` is joined: durable first, then the replica moves."""
        for o, s in vv.items():
            n.applied[o] = max(n.applied.get(o, 0), s)
        if {o: v for o, v in n.store.vv.items() if v} != {o: v for o, v in n.applied.items() if v}:
            self.engine.fail(f"{n.name} joined a state: store vv {n.store.vv} != {n.applied}")
        self.states_installed += 1
        self._take_snapshot(n)  # the joined state is durable before the replica's vv moves
        return n.replica.installed(dict(vv), sender)  # the transfer's vv: what the sender is known to have

    # ------------------------------------------------------------- effects
    def handle(self, n: MlSimNode, effects: list[Effect]) -> None:
        for e in effects:
            match e:
                case Persist():
                    n.wal.append_entries(n.wal.last_index + 1, [_op_wire(op) for op in e.ops])
                case Deliver():
                    for op in e.ops:
                        self._check_delivery(n, op)
                        if op.origin != n.name:
                            n.hlc.observe(op.hlc, n.wall_ms(self.engine.now_us))
                        n.store.apply(op.origin, op.seq, op.hlc, op.deps, op.payload)
                        n.applied[op.origin] = op.seq
                        self.delivered += 1
                case Send() | SendState() | Ack():
                    n.outbox.append(e)
                case _:
                    raise AssertionError(f"unknown effect {e!r}")
        self.commit(n)

    def _flush(self, n: MlSimNode) -> None:
        """The WAL synced (one group commit), then what waited for it leaves."""
        n.wal.sync()
        out, n.outbox = n.outbox, []
        # as the runtime's _send_peers: one Sync per peer for its Acks, built as it leaves, and
        # none behind an Ops frame that acks as much (Replica.carries_ack); a tick's always
        last = {e.to: e.msg.ops[-1] for e in out if isinstance(e, Send) and isinstance(e.msg, Ops) and e.msg.ops}
        forced = {e.to for e in out if isinstance(e, Send) and isinstance(e.msg, Sync)}
        acked: set[str] = set()
        for e in out:
            dst = self.ids[e.to]
            if isinstance(e, Ack):
                if e.to in acked or (e.to not in forced and e.to in last and n.replica.carries_ack(last[e.to])):
                    continue
                acked.add(e.to)
            if isinstance(e, Send | Ack):
                msg = e.msg if isinstance(e, Send) else n.replica.sync_for(e.to)
                self.engine.send(n.id, dst, self._deliver, Envelope(n.id, dst, codec.encode(msg)))
                continue
            if isinstance(e, SendState):  # a new transfer replaces the one streaming to that peer
                self.transfers += 1
                export = n.exports[e.to] = StateExport(n.store, n.name, self.transfers, self.opts.state_chunk_bytes)
                self.states_sent += 1
            else:
                export = e.export
                if n.exports.get(e.to) is not export:
                    continue  # replaced
            msg = export.next_chunk()  # read now: the WAL holds everything the store does
            self.chunks_sent += 1
            self.engine.send(n.id, dst, self._deliver, Envelope(n.id, dst, codec.encode(msg)))
            if export.done:
                del n.exports[e.to]
                n.replica.state_done(e.to)
            else:
                self.engine.after(self.opts.chunk_gap_us, self._chunk_due, n.id, n.epoch, e.to, export)
        acks, n.acks = n.acks, []
        for client, rid in acks:
            if self.engine.current(client, rid):
                self.acked += 1
                self.engine.client_done(client, True, None)
        if n.wal.last_index - n.wal.first_index + 1 >= self.opts.compact_every:
            self._take_snapshot(n)

    def _chunk_due(self, nid: int, epoch: int, to: str, export: StateExport) -> None:
        n = self.nodes[nid]
        if not n.up or n.epoch != epoch or n.exports.get(to) is not export:
            return
        n.outbox.append(ChunkDue(to, export))
        self.commit(n)

    def _take_snapshot(self, n: MlSimNode) -> None:
        n.wal.sync()  # the store's own vv (applied), not the replica's: after a state is joined,
        n.snapshot = (dict(n.store.vv), n.store.snapshot())  # installed() may deliver more ops first
        n.wal.reset(n.wal.last_index + 1)

    def _check_delivery(self, n: MlSimNode, op: Op) -> None:
        have = n.applied.get(op.origin, 0)
        if op.seq != have + 1:
            self.engine.fail(f"{n.name} delivers {op.origin}:{op.seq} after {have}: "
                             f"{'twice' if op.seq <= have else 'a gap'}")
        if not covers(n.applied, op.deps):
            self.engine.fail(f"{n.name} delivers {op.origin}:{op.seq} before its deps {op.deps} "
                             f"(has {n.applied})")
        key = (op.origin, op.seq)
        entry = self.seen.get(key)
        if entry is None:
            self.seen[key] = (msgpack.packb(op.payload, use_bin_type=True), {n.name})
        else:
            if entry[0] != msgpack.packb(op.payload, use_bin_type=True):
                self.engine.fail(f"op {key} delivered as two payloads: {entry[0]} and {op.payload}")
            entry[1].add(n.name)

    # ------------------------------------------------------------ clients
    def submit(self, client: Client, op: PendingOp, nid: int, rid: tuple[int, int]) -> None:
        n = self.nodes[nid]
        if op.op == "read":  # served locally (eventual)
            self.engine.client_done(client, True, _show(n.store.visible(op.key.encode())))
            return
        key, value = op.key.encode(), (op.value or "").encode()
        kind = _kind(op.key)
        if kind == "counter":
            argv = [b"INCRBY", key, str(_amount(op.value or "")).encode()]
        elif kind == "set":
            argv = [b"SADD", key, value]
        elif kind == "register":
            argv = [b"SET", key, value]
        else:
            argv = [b"RPUSH", key, value]
        now_ms = n.wall_ms(self.engine.now_us)
        muts, reply = translate(n.store, argv, now_ms, self.write_rng)
        if not muts:
            self.engine.fail(f"{n.name}: {argv} made no mutation (reply {reply!r})")
        if any(n.store.pending_context(bytes(m[1])) for m in muts):
            self.writes_refused += 1  # TRYAGAIN: the key is joined beyond the node's vv
            self.engine.client_retry(client, rid)
            return
        local, effects = n.replica.local(n.hlc.now(now_ms), muts)
        self.incrs.pop((n.name, local.seq), None)  # a seq lost in a crash and reused
        if kind == "counter":
            self.incrs[(n.name, local.seq)] = (op.key, _amount(op.value or ""))
        elif kind == "list":  # what the pushing node had seen: its order binds only later pushes that saw it
            self.pushes[op.value or ""] = ((n.name, local.seq), local.deps)
        n.acks.append((client, rid))
        self.handle(n, effects)

    def may_retry(self, op: PendingOp) -> bool:
        return op.op == "read"

    # ------------------------------------------------------ crash, restart
    def crash(self, nid: int) -> None:
        n = self.nodes[nid]
        n.up = False
        n.epoch += 1
        n.wal.crash(self.crash_rng)
        n.outbox, n.acks, n.syncing = [], [], False
        n.exports = {}
        n.receiver = StateReceiver()  # what it joined of a transfer in progress is lost with it

    def restart(self, nid: int) -> None:
        n = self.nodes[nid]
        vv0, blob = n.snapshot if n.snapshot is not None else ({}, None)
        ops = [_op_from_wire(x) for x in n.wal.recover(after_index=n.wal.first_index - 1)]
        n.store = _restore_store(blob, n.conflicts)
        n.replica = self._make_replica(n, vv0)
        n.replica.restore(vv0, ops)
        n.applied = dict(n.replica.vv)
        mine = n.replica.vv[n.name]
        for key in [k for k in self.seen if k[0] == n.name and k[1] > mine]:  # lost before its sync
            payload, holders = self.seen.pop(key)
            self.incrs.pop(key, None)  # its seq will be reused by another op
            if holders - {n.name}:
                self.engine.fail(f"{n.name} lost its op {key} in a crash, but {sorted(holders)} had it: "
                                 "it was sent before it was durable")
            self.lost_unsynced += 1
        for op in ops:
            if op.seq > vv0.get(op.origin, 0):
                n.store.apply(op.origin, op.seq, op.hlc, op.deps, op.payload)
        n.hlc = Hlc()  # as the runtime: the clock restarts from the ops it recovers
        for op in ops:
            n.hlc.observe(op.hlc, n.wall_ms(self.engine.now_us))
        n.up = True
        self.engine.at(n.clock.next_tick(self.engine.now_us), self._tick, nid, n.epoch)

    # ------------------------------------------------------------ nemesis
    def nemesis_actions(self) -> dict[str, Callable[[random.Random], str | None]]:
        return {}

    def heal_step(self) -> None:
        pass

    # ---------------------------------------------------------- the end
    def converged(self) -> bool:
        nodes = list(self.nodes.values())
        if not all(n.up and not n.outbox and not n.replica.pending for n in nodes):
            return False
        vv, digest = nodes[0].replica.vv, nodes[0].store.digest()
        return all(n.replica.vv == vv and n.applied == vv and n.store.digest() == digest for n in nodes)

    def final_check(self, ops: list[HistOp]) -> None:
        nodes = [n for n in self.nodes.values() if n.up]
        writes = [op for op in ops if op.op == "append"]
        survived: dict[str, int] = {}
        for oid in self.seen:
            if oid in self.incrs:
                k, amount = self.incrs[oid]
                survived[k] = survived.get(k, 0) + amount
        for key in sorted({op.key for op in ops}):
            kind = _kind(key)
            mine = [op for op in writes if op.key == key]
            acked = [op for op in mine if op.ok]
            written = {op.value for op in mine}
            views = [n.store.visible(key.encode()) for n in nodes]
            vis = views[0]
            if kind == "counter":
                final = int(vis.value) if vis is not None else 0
                if final != survived.get(key, 0):
                    self.engine.fail(f"{key}: counter is {final}, the ops that survived add up to "
                                     f"{survived.get(key, 0)}")
                unknown = sum(_amount(op.value or "") for op in mine if op.ok is None)
                low = sum(_amount(op.value or "") for op in acked)
                if not low <= final <= low + unknown:
                    self.engine.fail(f"{key}: counter is {final}, acknowledged increments add up to {low} "
                                     f"(+{unknown} unknown)")
            elif kind == "set":
                members = {m.decode() for m in vis.value} if vis is not None else set()
                for op in acked:
                    if op.value not in members:
                        self.engine.fail(f"{key}: the acknowledged add of {op.value} is lost")
                stray = members - written
                if stray:
                    self.engine.fail(f"{key}: {sorted(stray)} in the set but no client wrote them")
            elif kind == "register":
                values = {None if v is None else v.value for v in views}
                if len(values) != 1:
                    self.engine.fail(f"{key}: the nodes end with different values {values}")
                if acked and vis is None:
                    self.engine.fail(f"{key}: acknowledged SETs but the key is gone")
                if vis is not None and vis.value.decode() not in written:
                    self.engine.fail(f"{key}: {vis.value!r} but no client wrote it")
            else:
                lists = [[] if v is None else [x.decode() for x in v.value] for v in views]
                if any(lst != lists[0] for lst in lists):
                    self.engine.fail(f"{key}: the nodes end with lists in different orders")
                lst = lists[0]
                if len(lst) != len(set(lst)):
                    self.engine.fail(f"{key}: an element is in the list twice: {lst}")
                have = set(lst)
                for op in acked:
                    if op.value not in have:
                        self.engine.fail(f"{key}: the acknowledged push of {op.value} is lost")
                stray = have - written
                if stray:
                    self.engine.fail(f"{key}: {sorted(stray)} in the list but no client wrote them")
                # a client's push made on a node that had seen its earlier push comes after it
                # (pushes to two nodes that had not seen each other may land in either order)
                pos = {v: i for i, v in enumerate(lst)}
                for v in lst:
                    oid, deps = self.pushes[v]
                    proc, num = v.rsplit(".", 1)
                    for w in lst[pos[v] + 1:]:
                        p2, n2 = w.rsplit(".", 1)
                        if p2 == proc and int(n2) < int(num):
                            (o2, s2), _ = self.pushes[w]
                            if deps.get(o2, 0) >= s2 or (o2 == oid[0] and s2 < oid[1]):
                                self.engine.fail(f"{key}: client {proc}'s push {v} was made after {w} "
                                                 f"was seen, but the list has it before: {lst}")

    def describe(self) -> str:
        return f"{self.topology}: " + "; ".join(
            f"{n.replica.describe()} applied={n.applied} digest={n.store.digest()}"
            f"{'' if n.up else ' down'}" for n in self.nodes.values())

    def stats(self) -> dict[str, int]:
        return {"committed": len(self.seen), "acked_writes": self.acked, "delivered": self.delivered,
                "states_sent": self.states_sent, "states_installed": self.states_installed,
                "state_chunks_sent": self.chunks_sent, "writes_refused": self.writes_refused,
                "lost_unsynced": self.lost_unsynced, "topology": TOPOLOGIES.index(self.topology)}


_KINDS = ("counter", "set", "register", "list")


def _kind(key: str) -> str:
    """k0 counter (INCRBY), k1 set (SADD), k2 register (SET), k3 list (RPUSH), k4 counter..."""
    return _KINDS[int(key[1:]) % 4]


def _show(vis: Any) -> str:
    if vis is None:
        return ""
    if vis.type == "set":
        return ",".join(sorted(m.decode() for m in vis.value))
    if vis.type == "list":
        return ",".join(x.decode() for x in vis.value)
    return str(vis.value.decode())


def _amount(value: str) -> int:
    return int(value.rsplit(".", 1)[-1]) % 5 + 1


def run_seed(seed: int, nodes: int = 3, long: bool = False, **overrides: Any) -> Any:
    """One seed without the mode registry (until modes/multi_leader.py names this driver):
    as ``engine.run``, ``overrides`` set SimConfig fields, the rest go to the driver."""
    import dataclasses

    from replikv.sim.engine import Engine, SimConfig

    names = {f.name for f in dataclasses.fields(SimConfig)}
    cfg = SimConfig(seed=seed, nodes=nodes, long=long, **{k: v for k, v in overrides.items() if k in names})
    options = {k: v for k, v in overrides.items() if k not in names}
    return Engine(cfg, lambda engine: MultiLeaderDriver(engine, **options)).run()
