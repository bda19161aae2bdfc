"""LeaderlessRunner: one replikv node process in leaderless mode (Dynamo,
Cassandra, Riak); the rules are in docs/leaderless.md.

No leader: each key lives on the N nodes the ring names
(``core/dynamo/ring.py``), any of them coordinates a request for it (a node
that is not one forwards the command to one), and the client's level says
how many replicas must answer. The thin asyncio shell around:

- ``core/dynamo/replica.py``: the node's replica, the requests it
  coordinates, hints and anti-entropy, as effects this module carries out;

- ``kv/crdt_writes.py``: a Redis write -> CRDT mutations + Redis's reply,
  computed from this replica's state of the key;
- ``core/crdt/keyed.py``: the replica's keys, one causal context per key;
  a write's dot is ``(this node, HLC)``; replicas exchange whole key states
  and join them;
- ``kv/crdt_view.py``: the plain state machine every read command is served
  from, rewritten for the keys that changed when it is next read (``sm``).

Rules it keeps:
- Persist before send (the replica's rule): the WAL entries of one loop
  iteration are written in one batch (one write + fsync under ``--fsync
  always``) before any frame of that iteration leaves, and a client's reply
  leaves after both its entry's commit and its level's acks. Under
  ``--fsync always`` an acknowledged write survives the power loss of every
  node but those it did not reach.
- A read is served from the view after the replica joined the replicas'
  answers into this node's state of the keys.
- The WAL holds the replica's entries in order (own writes ``w``, joined
  key states ``j``, peers' writes as deltas ``wd``, a batch of them ``wds``,
  hints held ``h`` and delivered ``hd``, collected tombstones ``gc``);
  replaying them rebuilds the same state. Snapshots hold the store and the
  hints.
- Membership (``core/dynamo/membership.py``): the ring state (epoch,
  members and their addresses, the change in flight) lives in the meta file
  (``ring``), saved (fsynced) the moment the core adopts a state, before
  any frame sent afterwards leaves; a node without one starts from
  cluster.toml at epoch 0. New members become transport peers at once;
  removed ones are dropped from the transport a while after the switch.
  Writes go to ``write_replicas`` (pending ranges included, one more ack
  per pending replica), reads to ``read_replicas``, and Paxos rounds to the
  write replicas as well, with a quorum of the old plus one per pending
  replica (``Membership.paxos_replicas``, CASSANDRA-8346: Paxos with
  pending ranges); the streams carry the keys' acceptor states.
  ``REPLIKV CLUSTER ADD <id> [host port [peer_port]] | REMOVE <id> |
  PROMOTE <id> | WAIT <id> | MEMBERS`` start, await and show a change
  (``replikv cluster add|remove``).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import msgpack

from replikv.config import PEER_PORT_OFFSET, ClusterConfig, ConfigError, NodeAddress
from replikv.core.crdt import Hlc
from replikv.core.crdt.keyed import KeyedStore
from replikv.core.dynamo import messages as dm
from replikv.core.dynamo.coordinator import done_at_once, level_count, needed_acks, stand_ins_matter
from replikv.core.dynamo import membership as mb
from replikv.core.dynamo.hints import Hints
from replikv.core.dynamo import paxos as px
from replikv.core.dynamo import paxos_messages as pm
from replikv.core.dynamo.replica import Changed, PaxosDone, Persist, Replica, ReadDone, Send, WriteBatch, WriteDone
from replikv.core.dynamo.ring import Ring
from replikv.core.replies import NULL_ARRAY, OK, RespError
from replikv.core.resp import encode_reply
from replikv.kv.commands import lookup
from replikv.kv.crdt_view import materialize
from replikv.kv.crdt_writes import translate, vget
from replikv.kv.state_machine import StateMachine
from replikv.kv.watch import ChangeIndex
from replikv.modes.leaderless import NAME, ReplicasAck
from replikv.runtime.base import BaseRunner, wall_ms
from replikv.runtime.state_snapshots import WholeStateSnapshots
from replikv.runtime.info import render as render_info
from replikv.runtime.resp_server import ClientConnection, PeerReplyConnection, Slot
from replikv.storage.errors import WalFailedError

log = logging.getLogger("replikv.node")
PAXOS_TICK_MS = 10  # the proposers' clock (timeouts, resends, backoff)
RING_RESEND_MS = 500  # a change's coordinator resends its ring state this often to who has not acked it
CLEANUP_DELAY_MS = 5_000  # after a switch, how long a node keeps keys it no longer replicates
DEPARTED_PEER_KEEP_S = 30.0  # a removed node stays a transport peer this long (it must hear of the switch)
VIEW_DUE_KEYS = 8_192  # keys the view may lag behind the store by before they are filled unasked (``sm``)


def _now_us() -> int:
    return time.monotonic_ns() // 1000


class Pending:
    """A client request waiting for its replicas: where its reply goes and how to make it."""

    __slots__ = ("conn", "slot", "data", "render", "slots")

    def __init__(self, conn: ClientConnection, data: bytes = b"",
                 render: Callable[[], Any] | None = None) -> None:
        self.conn, self.data, self.render = conn, data, render
        self.slot: Slot | None = None  # taken when the reply cannot be given at once
        # a run's batch (``_write_run``): each write's reply position and reply, taken as it ran
        self.slots: list[tuple[Slot, bytes]] | None = None


# An open batch (``LeaderlessRunner._join``) ends at this many mutations or this many bytes of
# client arguments, and a pipelined run's (``_write_run``) at this many bytes, so its delta stays
# far inside a peer frame (``max_bulk_len`` + 64 MiB): at most this plus one client write.
OPEN_BATCH_MAX_MUTS = 4096
OPEN_BATCH_MAX_BYTES = 1024 * 1024


class _OpenBatch:
    """SETs joined into one write of this node (a loop iteration's single SETs, ``_join``, or a
    pipelined run's, ``_write_run``): the replica's batch, the level's needed acks, the alive set
    and clock of its first write, the connection it is tracked on, the replies that wait for it
    (None: done at once, each reply held for the WAL commit) and its arguments' bytes (the
    bound on ``_join``'s and ``_write_run``'s batches)."""

    __slots__ = ("batch", "needed", "alive", "now_us", "conn", "waiting", "size")

    def __init__(self, batch: WriteBatch, needed: int, alive: set[str], now_us: int, conn: ClientConnection,
                 waiting: list[tuple[Slot, bytes]] | None) -> None:
        self.batch, self.needed, self.alive, self.now_us = batch, needed, alive, now_us
        self.conn, self.waiting, self.size = conn, waiting, 0


class LeaderlessRunner(WholeStateSnapshots, BaseRunner):
    def __init__(self, config: ClusterConfig, node_id: str) -> None:
        # single SETs of this loop iteration, by (replica set, pending, needed acks) (``_join``)
        self._open: dict[tuple[tuple[str, ...], int, int], _OpenBatch] | None = None
        self._view_due: dict[bytes, None] = {}  # keys changed since the view last showed them (``sm``)
        # while a run of SETs executes (``_write_run``): the keys it changed (``_on_changed``)
        self._run_changed: dict[bytes, None] | None = None
        self._run_armed = False  # the timer was armed for a write of the run
        super().__init__(config, node_id)
        opts = self.options
        self.peer_ids = [p for p in config.nodes if p != node_id]
        self.ring = Ring(list(config.nodes), opts.replicas, opts.vnodes)  # until the meta file says otherwise
        self._departed: dict[str, float] = {}  # removed node -> when to drop it from the transport
        self.hlc = Hlc()
        self.rng = random.Random()
        self._replica = Replica(node_id, self.ring, conflicts=opts.conflicts, timeout_us=opts.ack_timeout_ms * 1000,
                               rng=self.rng, sloppy_quorum=opts.sloppy_quorum, hlc=self.hlc,
                               paxos_tick_ms=PAXOS_TICK_MS,
                               read_repair_chance=opts.read_repair_pct / 100,
                               tombstone_grace_ms=opts.tombstone_grace_s * 1000,
                               ae_interval_ms=opts.anti_entropy_ms)
        self.coord = self._replica.coord
        self.sends: list[Send] = []  # messages that leave after the next WAL commit (Replica.frames)
        self.entries: list[list[Any]] = []  # WAL entries of this loop iteration
        self.pending: dict[int, Pending] = {}  # client requests waiting for replicas
        self._reqs = itertools.count(1)
        self.flush_scheduled = False
        self._wal_bytes_after_snapshot = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # loop time the timer fires at
        self._paxos_timer: asyncio.TimerHandle | None = None
        self._effects = self._effect_handlers()  # effect type -> what carries it out (``_run``)
        self.stats.update({"writes_coordinated": 0, "reads_coordinated": 0, "writes_failed": 0,
                           "reads_failed": 0, "expired_deletes": 0, "paxos_rounds": 0})
        self._recover()

    # -- start-up ---------------------------------------------------------------------
    def _recover(self) -> None:
        """Snapshot (store + hints) and the WAL entries after it; the view is rebuilt from the store."""
        meta, snap, records = self.open_storage()
        conflicts = self.options.conflicts
        replica = self.replica
        self._ring_meta = meta
        self._load_ring(meta)
        if snap is not None:
            store_blob, hints_blob, paxos_states = msgpack.unpackb(snap.data, raw=False)
            replica.store = KeyedStore.restore(store_blob, conflicts)
            replica.hints = Hints.restore(hints_blob, conflicts)
            for key, state in paxos_states:
                replica.acceptor.restore(key, pm.decode_state(state))
        self.store, self.hints = replica.store, replica.hints
        self.snapshot_index = snap.index if snap is not None else 0
        replayed = 0
        for _first, entries in records:
            for entry in entries:
                replica.replay(entry)
                replayed += 1
        for kctx in self.store.ctx.values():  # never reuse a dot: the clock starts past our own
            mine = kctx.get(self.id)
            if mine:
                self.hlc.observe(mine, 0)
        self.applied_index = self.wal.last_index
        self.sm = StateMachine()
        materialize(self.store, self.sm, list(self.store.keys()))
        self.sm.changes = ChangeIndex(self.applied_index, watching=False)  # armed by watch_position
        if not meta:
            self._ring_meta = {"mode": self.config.mode}
            self.meta.save(self._ring_meta)
        log.info("node %s recovered: snapshot at %d, %d entries replayed, %d keys, %d hints", self.id,
                 self.snapshot_index, replayed, len(self.store.ctx), sum(1 for _ in self.hints.items()))

    def _load_ring(self, meta: dict[str, Any]) -> None:
        """The ring state of the meta file, else cluster.toml's members at epoch 0."""
        opts = self.options
        if "ring" in meta:
            state = mb.RingState.from_json(meta["ring"])
        else:
            state = mb.RingState(epoch=0, members=tuple(
                mb.Member(id=a.id, host=a.host, port=a.port, peer_port=a.peer_port)
                for a in sorted(self.config.nodes.values(), key=lambda a: a.id)))
        ms = mb.Membership(self.id, state, opts.replicas, opts.vnodes, resend_ms=RING_RESEND_MS,
                           stream_timeout_ms=max(10_000, 4 * opts.ack_timeout_ms), cleanup_delay_ms=CLEANUP_DELAY_MS)
        self.replica.membership = ms
        self.replica.ring = self.ring = ms.ring
        for m in (*state.members, *((state.node,) if state.node else ())):
            self._know(m)
        if state.left is not None and state.left.id != self.id:  # restarted after removing it: tell it
            self._know(state.left)  # of the switch again (Membership resends), then let it go
            self._departed[state.left.id] = time.monotonic() + DEPARTED_PEER_KEEP_S

    def _know(self, m: mb.Member) -> None:
        """A member's address: into the config (INFO, forwarding) and, once started, the transport."""
        if m.id == self.id:
            return
        if m.id not in self.config.nodes and m.host:
            self.config.nodes[m.id] = NodeAddress(id=m.id, host=m.host, port=m.port, peer_port=m.peer_port,
                                                  data_dir="")
        if m.id in self.config.nodes and m.id not in self.peer_ids:
            self.peer_ids.append(m.id)
            if getattr(self, "transport", None) is not None:
                addr = self.config.nodes[m.id]
                self.transport.add_peer(m.id, (addr.host, addr.peer_port))
        self._departed.pop(m.id, None)

    def _ring_changed(self, e: mb.RingChanged) -> None:
        st = e.state
        self.ring = self.replica.ring
        for m in (*st.members, *((st.node,) if st.node else ())):
            self._know(m)
        gone = set(e.previous.everyone()) - set(st.everyone()) - {self.id}
        for node in gone:
            self._departed[node] = time.monotonic() + DEPARTED_PEER_KEEP_S
        log.info("node %s: ring epoch %d: members %s%s", self.id, st.epoch, ",".join(st.ids),
                 f"; {st.change} {st.node.id} (driven by {st.coordinator})" if st.node else "")

    def _save_ring(self, state: mb.RingState) -> None:
        """Persist the ring state now (the meta file is written atomically and fsynced)."""
        self._ring_meta = {**self._ring_meta, "ring": state.to_json()}
        self.meta.save(self._ring_meta)

    def _drop_departed(self) -> None:
        now = time.monotonic()
        for node, at in list(self._departed.items()):
            if now >= at and node not in self.replica.membership.state.everyone():
                del self._departed[node]
                if node in self.peer_ids:
                    self.peer_ids.remove(node)
                self.transport.remove_peer(node)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.start_io(self._on_peer_connected, [self._tick_loop])
        log.info("node %s (leaderless, N=%d) serving RESP on %s:%d, peers on %s:%d", self.id,
                 self.options.replicas, self.address.host, self.address.port, self.address.host,
                 self.address.peer_port)

    async def stop(self) -> None:
        self.snapshotter.stop()
        await self.stop_io()
        self._flush()
        self.wal.close()

    # -- levels -------------------------------------------------------------------------
    def ack_replicas(self, level: ReplicasAck) -> int:
        return 0  # the level is a count of the key's replicas, resolved per request

    @property
    def is_leader(self) -> bool:
        return True  # every node coordinates

    def _alive(self) -> set[str]:
        return {p for p in self.peer_ids if self.transport.connected(p)}

    def _placement(self, conn: ClientConnection, argv: list[bytes], keys: list[bytes],
                   write: bool = False) -> tuple[tuple[str, ...], int] | None:
        """The keys' replicas, with this node among them, and how many of them are pending (a
        change's new owners; 0 for a read); otherwise the command was forwarded to one, or
        refused (keys on different replica sets), and None. A write's replicas are the ring's and
        then the pending ones of a change in flight (``Membership.write_placement``: the first
        key hashed once for its replicas and whether this node coordinates it)."""
        ms = self._replica.membership  # only read: open batches stay open (``replica``)
        place = (lambda k: ms.write_replicas(k)[0]) if write else ms.read_replicas
        if write:
            replicas, pending, mine = ms.write_placement(keys[0])
        else:
            replicas, pending, mine = ms.read_replicas(keys[0]), 0, ms.coordinates(keys[0])
        if len(keys) > 1:
            first = set(replicas)
            if any(set(place(k)) != first for k in keys[1:]):
                conn.reply(RespError("CROSSSLOT the keys of this command live on different replica sets in "
                                     "leaderless mode; use one key per command (or {hash tags})"))
                return None
        if mine:
            return replicas, pending
        alive = self._alive()
        target = next((r for r in ms.read_replicas(keys[0]) if r in alive), "")
        self.forwarder.forward(conn, target, [argv], False)
        return None

    def _needed(self, conn: ClientConnection, level: str, replicas: tuple[str, ...], kind: str,
                stand_ins: tuple[str, ...] = (), pending: int = 0, alive: set[str] | None = None) -> int | None:
        """How many replicas must answer; ``pending`` replicas (a change's new owners) each add one."""
        needed = needed_acks(level, len(replicas), pending)
        if needed is None:
            natural = len(replicas) - pending
            conn.reply(RespError(f"ERR {kind} level {level} needs {level_count(level, natural)} replicas; "
                                 f"keys here have {natural} (--replicas)"))
            return None
        short = self.coord.unavailable(replicas, needed, self._alive() if alive is None else alive, stand_ins)
        if short is not None:
            what = "nothing was written" if kind == "write" else "nothing was read"
            conn.reply(RespError(f"UNAVAILABLE {kind} at {level} needs {needed} of {len(replicas)} replicas; "
                                 f"{short} reachable; {what}"))
            return None
        return needed

    # -- writes ---------------------------------------------------------------------------
    def _write_one(self, conn: ClientConnection, argv: list[bytes]) -> None:
        if self.disk_error is not None:
            conn.reply(self.disk_refusal())
            return
        spec = lookup(argv[0])
        keys = spec.keys(argv) if spec is not None else []
        if not keys:
            name = argv[0].decode(errors="replace").lower()
            conn.reply(RespError(f"ERR '{name}' is not offered in leaderless mode: it has no key, and keys "
                                 "live on different replica sets; write key by key"))
            return
        level = str(conn.write_level)
        serial = _serial_write(argv, level)
        placed = self._placement(conn, argv, keys, write=True)  # Paxos too: paxos_replicas
        if placed is None:
            return
        replicas, pending = placed
        alive = self._alive()
        # no replica believed down: no stand-in can matter (coordinator.py, ``stand_ins_matter``)
        stand_ins = self.ring.extended_preference(keys[0], len(self.config.nodes)) \
            if stand_ins_matter(self.id, replicas, alive) else ()
        needed = self._needed(conn, "quorum" if level == "serial" else level, replicas, "write", stand_ins,
                              pending, alive)
        if needed is None:
            return
        if serial is not None:
            self._paxos(conn, argv, *serial)
            return
        if not stand_ins and spec is not None and spec.name == "set" and self._run_changed is None:
            self._join(conn, argv, replicas, pending, needed, alive)
            return
        self._coordinate(conn, argv, replicas, needed, alive, stand_ins, wall_ms(), _now_us())

    @property
    def replica(self) -> Replica:
        """The replica core, its open batches ended first (``_end_open``): nothing steps it or
        changes its store while a batch is open (``Replica.begin_batch``'s rule), whatever the
        caller (a peer frame, a tick, a read, a Paxos round, a membership change, a run)."""
        if self._open is not None:
            self._end_open()
        return self._replica

    def _join(self, conn: ClientConnection, argv: list[bytes], replicas: tuple[str, ...], pending: int,
              needed: int, alive: set[str]) -> None:
        """A single SET (its replicas, level and stand-ins checked by ``_write_one``) joins this
        loop iteration's open batch of its replica set and level: the single SETs of every
        connection in one iteration become one write of this node (one dot, one WAL entry, one
        delta and one ack per replica, one request), as a pipelined run's do (``_write_run``)
        and as multi-leader joins an iteration's writes into one op. The SET is translated and
        applied at once (``Replica.batch_add``); its reply is held for the WAL commit when the
        batch is done at once (``done_at_once``: ONE), else placed in a slot the batch's
        ``WriteDone`` resolves. The batches end (``_end_open``: logged, shipped, tracked) at the
        flush, or first thing in anything else that touches the replica (the ``replica``
        property), reads the view (``sm``: a read, WATCH's EXEC check, expiry, INFO), commits the WAL
        (a snapshot does so first); and at ``OPEN_BATCH_MAX_MUTS`` / ``OPEN_BATCH_MAX_BYTES``. A WATCH
        needs nothing: its position is at most ``applied_index``, and the batch's keys move to
        a later one when it ends."""
        now = wall_ms()
        translated = self._translate(conn, argv, now)
        if translated is None:
            return
        muts, data = translated
        key = (tuple(sorted(replicas)), pending, needed)
        open_ = self._open
        if open_ is None:
            open_ = self._open = {}
            if not self.flush_scheduled:
                self._schedule_flush()
        ob = open_.get(key)
        if ob is None:
            ob = open_[key] = _OpenBatch(self._replica.begin_batch(self.hlc.now(now), replicas, now), needed,
                                         alive, _now_us(), conn,
                                         None if done_at_once(self.id, replicas, needed) else [])
        self._replica.batch_add(ob.batch, muts)
        self.stats["writes_coordinated"] += 1
        if ob.waiting is None:
            self.hold_until_commit(conn, data)
        else:
            ob.waiting.append((conn.slot(), data))
        ob.size += sum(map(len, argv))
        if len(ob.batch.muts) >= OPEN_BATCH_MAX_MUTS or ob.size >= OPEN_BATCH_MAX_BYTES:
            del open_[key]
            self._end_batch(ob)

    def _end_open(self) -> None:
        """End every open batch (``_join``), in the order they opened."""
        open_, self._open = self._open, None
        for ob in (open_ or {}).values():
            self._end_batch(ob)

    def _end_batch(self, ob: _OpenBatch) -> None:
        """One open batch as one write this node coordinates (``Replica.end_batch``)."""
        req = next(self._reqs)
        effects = self._replica.end_batch(ob.batch, req, ob.needed, ob.alive, ob.now_us)
        if ob.waiting is None:  # done at once: the replies are held for the WAL commit already
            self._run(effects)
        else:
            p = Pending(ob.conn)
            p.slots = ob.waiting
            self._start(ob.conn, req, p, effects)

    def _coordinate(self, conn: ClientConnection, argv: list[bytes], replicas: tuple[str, ...], needed: int,
                    alive: set[str], stand_ins: tuple[str, ...], now: int, now_us: int) -> None:
        """An ordinary write this node coordinates, its replicas and level checked: translated from
        this replica's state, applied here and sent to the others (``Replica.write``)."""
        translated = self._translate(conn, argv, now)
        if translated is None:
            return
        muts, data = translated
        req = next(self._reqs)
        self.stats["writes_coordinated"] += 1
        self._start(conn, req, Pending(conn, data), self.replica.write(
            req, muts, self.hlc.now(now), replicas, needed, alive, stand_ins, now, now_us))

    def _translate(self, conn: ClientConnection, argv: list[bytes], now: int) -> tuple[list[Any], bytes] | None:
        """A write's mutations, from this replica's state of its keys, and its reply; a command
        that makes none (a refusal, an error) is answered here and gives None."""
        muts, reply = translate(self.store, argv, now, self.rng, NAME)
        data = encode_reply(reply, conn.resp3)
        if not muts:
            conn.reply_bytes(data)
            return None
        return muts, data

    def _write_run(self, conn: ClientConnection, spec: Any, run: list[list[bytes]]) -> int:
        """A pipelined run of plain ``SET key value`` (``BaseRunner.execute_batch``), each command
        checked as ``_write_one`` checks it, with what is the same for the whole run taken once:
        the connection's level, the alive set (no peer connects or drops while the run executes:
        the transport calls back from the loop, and the run sends nothing), and one clock reading
        (the commands arrived in one read). A command that is not the common case here (a key
        this node does not coordinate: forwarded; a replica believed down: stand-ins; the disk
        guard) takes ``_write_one`` itself, in its place, so the replies keep the run's order.
        The placement checks (coordinated here, no stand-in matters, the level's count
        reachable) read only the key's placement, the level and the alive set: they run once per
        distinct placement of the run (a few: the ring's replica sets), a placement that passed
        is not checked again.

        The run's SETs of one placement that passed become one write of this node (one dot, one
        WAL entry, one delta to the other replicas, one request the coordinator tracks, one ack
        per replica: ``Replica.begin_batch`` / ``batch_add`` / ``end_batch``), as multi-leader
        joins a loop iteration's writes into one op. Each SET is translated against the store as
        the run's earlier ones left it and applied at once, so replies and data are those of the
        SETs one by one. Each SET's reply is placed as it runs: held until the WAL commit when
        the batch is done at once (``done_at_once``: ONE), else in a slot the batch's
        ``WriteDone`` resolves, so the level holds per SET (it holds for the batch, which holds
        every SET of it) and a refused or forwarded command keeps its place. A replica that does
        not ack gets a hint of every key of the batch. The batches end (are logged and shipped)
        when the run does, before anything else steps the replica (``begin_batch``'s rule), and
        one ends at once at ``OPEN_BATCH_MAX_BYTES`` of arguments, as ``_join``'s do (issue 9: a
        run of large values would otherwise become one delta of unbounded size, which no peer
        frame may exceed; the run's next SET of that placement opens a new batch). Not
        at WRITE SERIAL (Paxos: ``_write_one``) and not for another command: 0, nothing done."""
        level = str(conn.write_level)
        if spec.name != "set" or level == "serial" or self.disk_error is not None:
            return 0
        replica = self.replica
        ms, me, alive = replica.membership, self.id, self._alive()
        now, now_us = wall_ms(), _now_us()
        gathered = self._run_changed = {}
        # a placement cleared here -> its needed acks and its batch's key (the replica set, sorted: the
        # ring's orders of one set share a batch, and with it a delta and an ack per replica)
        known: dict[tuple[tuple[str, ...], int, bool], tuple[int, tuple[tuple[str, ...], int]]] = {}
        batches: dict[tuple[tuple[str, ...], int], _OpenBatch] = {}  # by their key (the replica set, pending)
        writes = 0
        try:
            for argv in run:
                placed = ms.write_placement(argv[1])
                replicas, pending, mine = placed
                cleared = known.get(placed)
                if cleared is None:  # the checks once per placement: they read only it, the level and alive
                    if not mine or stand_ins_matter(me, replicas, alive) or self.disk_error is not None:
                        self._write_one(conn, argv)
                        continue
                    needed = self._needed(conn, level, replicas, "write", (), pending, alive)
                    if needed is None:
                        continue
                    cleared = known[placed] = (needed, (tuple(sorted(replicas)), pending))
                elif self.disk_error is not None:
                    self._write_one(conn, argv)
                    continue
                translated = self._translate(conn, argv, now)
                if translated is None:
                    continue
                muts, data = translated
                ob = batches.get(cleared[1])
                if ob is None:
                    needed = cleared[0]
                    ob = batches[cleared[1]] = _OpenBatch(
                        replica.begin_batch(self.hlc.now(now), replicas, now), needed, alive, now_us, conn,
                        None if done_at_once(me, replicas, needed) else [])
                replica.batch_add(ob.batch, muts)
                writes += 1
                if ob.waiting is None:
                    self.hold_until_commit(conn, data)
                else:
                    ob.waiting.append((conn.slot(), data))
                ob.size += len(argv[1]) + len(argv[2]) + 3  # as _join counts it: the arguments, SET's 3 bytes
                if ob.size >= OPEN_BATCH_MAX_BYTES:  # the bytes bound (no mutation count: one per SET)
                    del batches[cleared[1]]
                    self._end_batch(ob)
        finally:
            self.stats["writes_coordinated"] += writes
            for ob in batches.values():
                self._end_batch(ob)
            self._run_changed, self._run_armed = None, False
            if gathered:
                self._changed(tuple(gathered))
        return len(run)

    def _start(self, conn: ClientConnection, req: int, pending: Pending, effects: list[Any]) -> None:
        """Register a request, run its first effects; a reply not given by them waits on a slot,
        and the timer is armed for its first deadline (a speculative retry or its timeout); in a
        run (``_write_run``) only for its first write that waits: the run's writes share one clock
        reading, so a later one's deadline is no earlier (``_arm_timer`` would keep the timer)."""
        self.pending[req] = pending
        self._run(effects)
        if req in self.pending:
            if pending.slots is None:  # a run's batch has its writes' slots already
                pending.slot = conn.slot()
            if not self._run_armed:
                self._run_armed = self._run_changed is not None
                first = min(self.coord.speculative_threshold_us(), self.coord.timeout_us)
                self._arm_timer(self.loop.time() + first / 1e6)

    @property
    def sm(self) -> StateMachine:
        """The view every read is served from, showing the store (``materialize``) for every key.

        Invariant: a key whose view may differ from ``store.visible(key)`` is in ``_view_due``
        (``_changed`` adds every changed key; only ``_fill_view`` removes them, after filling
        them). Every reader takes the view through here, which fills the due keys first, so
        whatever reads it (a command, WATCH, INFO, expiry, memory, eviction, a digest) sees it
        as if each write had filled it at once, as before; the writes themselves read the store
        (``translate``), never the view. A key written k times between two reads is filled once
        instead of k times (a replica's keys are written far more often than read here: it
        applies every write of the keys it replicates, most coordinated elsewhere). At most
        ``VIEW_DUE_KEYS`` keys wait: past that they are filled unasked, which bounds both the
        view's lag and the fill a read may have to do first (~1 µs a key)."""
        if self._open is not None:  # the joined writes are applied, their keys not yet due (``_join``)
            self._end_open()
        if self._view_due:
            self._fill_view()
        return self._sm

    @sm.setter
    def sm(self, view: StateMachine) -> None:
        self._sm = view
        self._view_due = {}  # a new view is filled by whoever sets it (``_recover``)

    @property
    def change_index(self) -> ChangeIndex:
        """The WATCH index without filling the view: the tick reads it (``rest_change_index``), and
        a fill there every 100 ms filled each key once per tick it was written in (7.8 % of a node's
        CPU in ONE SET -P 16, issue 9), where waiting for a read or ``VIEW_DUE_KEYS`` fills a key
        written several times once. ``_changed`` moves the index with each write, not with the fill."""
        return self._sm.changes

    def _fill_view(self) -> None:
        due, self._view_due = self._view_due, {}
        materialize(self.store, self._sm, due)

    def _on_changed(self, effect: Changed) -> None:
        """A ``Changed`` effect: ``_changed`` now, or, in a run (``_write_run``), once at its end for
        every key the run changed (nothing reads the view or the WATCH index while a run executes:
        its writes read the store, and no other client runs; the run's keys then move to a WATCH
        position at least their own write's, so no change goes unseen, ``kv/watch.py``)."""
        gathered = self._run_changed
        if gathered is None:
            self._changed(effect.keys)
        else:
            for key in effect.keys:
                gathered[key] = None

    def _changed(self, keys: tuple[bytes, ...] | list[bytes]) -> None:
        """``keys`` changed in the store: their WATCH index moves now (the entries' position), the
        view follows when next read (``sm``)."""
        if keys:
            due = self._view_due
            due.update(dict.fromkeys(keys))
            changes = self._sm.changes
            if changes.watching:  # at rest while no position may be read (``watch_position``)
                changes.touch_keys(dict.fromkeys(keys, self.applied_index + len(self.entries)))
            if len(due) > VIEW_DUE_KEYS:
                self._fill_view()

    def exec_transaction(self, conn: ClientConnection, queued: list[list[bytes]]) -> None:
        """EXEC: the block's commands run one after another, each an ordinary request at the
        connection's levels, and the replies come back as one array. No isolation and no
        atomicity across replicas (as a Cassandra unlogged batch): other clients' writes may land
        between them, and a failed command does not undo the others (docs/leaderless.md)."""
        if conn.watch and self.sm.changes.any_changed(conn.watch.items()):
            conn.reply(NULL_ARRAY)  # a WATCHed key changed here since (kv/watch.py)
            return
        _Sequence(self, conn, queued).next(conn.slot())

    def watch_position(self, key: bytes | None = None) -> int:
        """The position WATCH and a blocked command read from; the WATCH index records changes
        from here on (it rests while no such position is held: ``rest_change_index`` at each
        tick, kv/watch.py "At rest": WATCH and blocked commands are decided on this node)."""
        self.sm.changes.arm()
        return self.applied_index

    def wait_replicas(self, conn: ClientConnection, numreplicas: int, timeout_ms: int) -> None:
        conn.reply(RespError("ERR WAIT is not offered in leaderless mode: choose how many replicas a write "
                             "waits for with CONSISTENCY WRITE one|quorum|all|<n>"))

    def waiting_clients(self) -> int:
        return len(self.pending)

    def failover(self, conn: ClientConnection, target: str, force: bool) -> None:
        conn.reply(RespError("ERR leaderless mode has no leader to fail over: every node coordinates"))

    def role_reply(self) -> list[Any]:
        return [b"master", 0, self.id.encode(), self.applied_index]

    def take_snapshot(self) -> int:
        return self._take_snapshot()

    def digest_parts(self) -> list[tuple[str, tuple[str, ...], bytes]]:
        """REPLIKV DIGESTS: the keys this node stores (tombstones too) grouped by their
        preference list, each group's digest over its keys' states in key order
        (``KeyedStore.key_digest``): every node of a list holds that part with one digest once
        they converged, and a node outside it holds none of it (the simulator's
        ``converged`` asks the same per key). With as many replicas as nodes: one part."""
        store, ring = self.store, self.ring
        parts: dict[tuple[str, ...], list[bytes]] = {}
        for key in store.stored_keys():
            parts.setdefault(tuple(sorted(ring.preference_list(key))), []).append(key)
        out: list[tuple[str, tuple[str, ...], bytes]] = []
        for holders, keys in sorted(parts.items()):
            h = hashlib.blake2b(digest_size=16)
            for key in sorted(keys):
                h.update(b"%d:%b" % (len(key), key))
                h.update(store.key_digest(key) or b"")
            out.append((f"keys of {','.join(holders)}", holders, h.digest()))
        return out

    def evict(self, keys: list[bytes]) -> None:
        """maxmemory: delete ``keys`` here and send the deletes to each key's other replicas
        (level ONE, nobody waits): an eviction on one replica only would come back by read repair."""
        alive = self._alive()
        for key in keys:
            now = wall_ms()
            muts, _ = translate(self.store, [b"DEL", key], now, self.rng, NAME)
            if muts:
                replicas, pending = self.replica.membership.write_replicas(key)
                self._run(self.replica.write(next(self._reqs), muts, self.hlc.now(now), replicas,
                                             1 + pending, alive, (), now, _now_us()))

    def _delete_locally(self, keys: list[bytes]) -> int:
        """Expiry: every replica deletes an expired key on its own."""
        now = wall_ms()
        muts, reply = translate(self.store, [b"DEL", *keys], now, self.rng, NAME)
        if muts:
            self._run(self.replica.local_write(muts, self.hlc.now(now), now))
        return int(reply) if isinstance(reply, int) else 0

    # -- forwarding (runtime/forwarding.py) ---------------------------------------------------
    def run_forwarded(self, proxy: Any, commands: list[list[bytes]], transaction: bool,
                      client: tuple[int, int] | None) -> None:
        """A command a node that holds none of its keys sent on: run it as if it were local."""
        for argv in commands:
            self.execute(proxy, argv)

    # -- reads ---------------------------------------------------------------------------------
    def _read(self, conn: ClientConnection, argv: list[bytes]) -> None:
        spec = lookup(argv[0])
        keys = spec.keys(argv) if spec is not None else []
        if not keys:  # DBSIZE, SCAN, KEYS, RANDOMKEY: what this node holds
            conn.reply(self.sm.read(argv, wall_ms()))
            return
        if conn.read_level == "serial" and argv[0].upper() == b"GET" and self._register(keys[0]):
            # a Paxos round's participants (paxos_replicas): the write replicas, one more per pending one
            placed = self._placement(conn, argv, keys, write=True)  # other reads (and counters): at QUORUM
            pending = self.replica.membership.paxos_replicas(keys[0])[1]
            if placed is not None and self._needed(conn, "quorum", placed[0], "read", (), pending) is not None:
                self._paxos(conn, argv, "read", lambda current: current)
            return
        self._quorum_read(conn, argv, keys, lambda: self.sm.read(argv, wall_ms()))

    def _quorum_read(self, conn: ClientConnection, argv: list[bytes], keys: list[bytes],
                     render: Callable[[], Any]) -> None:
        placed = self._placement(conn, argv, keys)
        if placed is None:
            return
        replicas = placed[0]
        level = "quorum" if conn.read_level == "serial" else conn.read_level
        needed = self._needed(conn, level, replicas, "read")
        if needed is None:
            return
        req = next(self._reqs)
        self.stats["reads_coordinated"] += 1
        self._start(conn, req, Pending(conn, render=render), self.replica.read(
            req, tuple(dict.fromkeys(keys)), replicas, needed, self._alive(), wall_ms(), _now_us()))

    # -- Paxos (core/dynamo/paxos.py): CAS, SET NX|XX, SERIAL --------------------------------------
    def _paxos(self, conn: ClientConnection, argv: list[bytes], kind: str,
               decide: Callable[[bytes | None], bytes | None]) -> None:
        """One Paxos round on argv[1] among its participants (the replica's ``paxos_replicas``);
        the reply is made from the value it read."""
        key = argv[1]
        head = self.store.visible_head(key)
        if head is not None and head[0] != "string":
            conn.reply(RespError("WRONGTYPE Operation against a key holding the wrong kind of value"))
            return
        req = next(self._reqs)
        self.stats["paxos_rounds"] += 1
        self._start(conn, req, Pending(conn, render=lambda: (kind, argv)),
                    self.replica.paxos(req, key, decide, wall_ms()))
        if self._paxos_timer is None and self.replica.proposers:
            self._paxos_timer = self.loop.call_later(PAXOS_TICK_MS / 1000, self._on_paxos_tick)

    def _register(self, key: bytes) -> bool:
        """Whether ``key`` is, here, a plain string register (or absent): what Paxos orders. A key
        with counter increments is merged, not ordered: its SERIAL reads run at QUORUM."""
        ks = self.store.state(key)
        if ks is None:
            return True
        if ks.ctr:
            return False
        head = self.store.visible_head(key)
        return head is None or head[0] == "string"

    def _on_paxos_tick(self) -> None:
        self._paxos_timer = None
        self._run(self.replica.paxos_tick(wall_ms()))
        self._flush_clients()
        if self.replica.proposers:
            self._paxos_timer = self.loop.call_later(PAXOS_TICK_MS / 1000, self._on_paxos_tick)

    def _paxos_done(self, done: PaxosDone) -> None:
        p = self.pending.pop(done.req, None)
        if p is None:
            return
        assert p.render is not None
        kind, argv = p.render()
        self._answer(p, encode_reply(_paxos_reply(kind, argv, done.outcome, self.options.ack_timeout_ms),
                                     p.conn.resp3))

    def vget(self, conn: ClientConnection, argv: list[bytes]) -> None:
        key = argv[1]
        self._quorum_read(conn, argv, [key], lambda: vget(self.store, key))

    def vset(self, conn: ClientConnection, argv: list[bytes]) -> None:
        self._write_one(conn, argv)

    # -- effects ---------------------------------------------------------------------------------
    def _run(self, effects: list[Any]) -> None:
        """Carry out the replica's effects: WAL entries and frames wait for the flush (entries are
        committed before the frames leave), the view follows the changed keys, replies go out.
        One dict lookup per effect by its exact type (the effect classes are final dataclasses);
        any other effect is not the runtime's, as before, and passes."""
        handlers = self._effects
        for effect in effects:
            handler = handlers.get(type(effect))
            if handler is not None:
                handler(effect)

    def _effect_handlers(self) -> dict[type, Callable[[Any], None]]:
        return {
            Persist: self._persist,
            Changed: self._on_changed,
            Send: self._send,
            WriteDone: self._write_done,
            ReadDone: self._read_done,
            PaxosDone: self._paxos_done,
            mb.SaveRing: lambda e: self._save_ring(e.state),
            mb.RingChanged: self._ring_changed,
        }

    def _persist(self, effect: Persist) -> None:
        self.entries.append(effect.entry)
        if not self.flush_scheduled:
            self._schedule_flush()

    def _send(self, effect: Send) -> None:
        self.sends.append(effect)
        if not self.flush_scheduled:
            self._schedule_flush()

    def _write_done(self, done: WriteDone) -> None:
        p = self.pending.pop(done.req, None)
        if p is None:
            return
        if p.slots is not None:  # a run's batch (``_write_run``): every write of it ends as the batch did
            if done.ok:
                for slot, data in p.slots:
                    slot.resolve(data)
                return
            self.stats["writes_failed"] += len(p.slots)
            err = self._write_failed(done, p.conn)
            for slot, _ in p.slots:
                self._answer_at(p.conn, slot, err)
            return
        if not done.ok:
            self.stats["writes_failed"] += 1
            self._answer(p, self._write_failed(done, p.conn))
        elif p.slot is None:  # done at once: the reply still waits for this node's WAL commit
            self.hold_until_commit(p.conn, p.data)
        else:
            p.slot.resolve(p.data)

    def _write_failed(self, done: WriteDone, conn: ClientConnection) -> bytes:
        return encode_reply(RespError(
            f"NOREPLICAS write reached {done.acks} of {done.needed} replicas within "
            f"{self.options.ack_timeout_ms} ms ({done.hinted} hinted); it is applied on those and may "
            "still reach the others"), conn.resp3)

    def _read_done(self, done: ReadDone) -> None:
        p = self.pending.pop(done.req, None)
        if p is None:
            return
        if not done.ok:
            self.stats["reads_failed"] += 1
            data = encode_reply(RespError(
                f"NOREPLICAS read reached {done.answered} of {done.needed} replicas within "
                f"{self.options.ack_timeout_ms} ms"), p.conn.resp3)
        else:
            assert p.render is not None
            data = encode_reply(p.render(), p.conn.resp3)
        self._answer(p, data)

    def _answer(self, p: Pending, data: bytes) -> None:
        self._answer_at(p.conn, p.slot, data)

    def _answer_at(self, conn: ClientConnection, slot: Slot | None, data: bytes) -> None:
        if self.entries:  # the reply may rest on entries not yet written (a Paxos commit here): after them
            if slot is None:
                self.hold_until_commit(conn, data)
            else:
                self.flush_waiters.append((slot, data))
            self._schedule_flush()
        elif slot is None:
            conn.reply_bytes(data)
        else:
            slot.resolve(data)

    def _flush(self) -> None:
        """End the open batches (``_join``), commit this iteration's WAL entries, release the replies
        they made durable, then send."""
        self.flush_scheduled = False
        if self._open is not None:
            self._end_open()
        if self.disk_error is not None:
            self._on_disk_blocked()
            return
        try:
            self._commit_pending()
        except WalFailedError as exc:
            self._disk_failed(exc)
            return
        self.release_committed()
        sends, self.sends = self.sends, []
        if sends:  # a frame per peer (a Batch of this iteration's messages; Puts / PutAcks), cut at the limit
            send = self.transport.send
            for peer, frame in self.replica.frames(sends, self.transport.max_frame_bytes):
                send(peer, frame)
        self._flush_clients()
        self._snapshot_due()

    # -- peers ------------------------------------------------------------------------------------
    def _on_frame(self, peer: str, payload: bytes) -> None:
        self.frames_in += 1
        if self.service_frame(peer, payload):
            return
        msg = self.peer_message(peer, payload, dm.decode)
        if msg is None:
            return
        now_ms, now_us, writable = wall_ms(), _now_us(), self.disk_error is None
        for one in msg.msgs if isinstance(msg, dm.Batch) else (msg,):
            self._run(self.replica.step(peer, one, now_ms, now_us, writable=writable))
        self._flush_clients()

    def _on_peer_connected(self, peer: str) -> None:
        self._run(self.replica.peer_connected(peer, wall_ms(), _now_us()))

    def _on_peer_disconnected(self, peer: str) -> None:
        self._run(self.replica.peer_down(peer, wall_ms(), _now_us()))
        self._flush_clients()

    # -- the disk guard (runtime/base.py) ----------------------------------------------------------
    def _on_disk_blocked(self) -> None:
        self.fail_held(encode_reply(self.disk_inflight_error(), False))
        self.sends.clear()  # nothing the failed batch holds leaves the node
        self._flush_clients()

    def _on_disk_resumed(self) -> None:
        self._flush()

    # -- snapshots (runtime/state_snapshots.py) ------------------------------------------------------
    def _state_blob(self) -> bytes:
        out: bytes = msgpack.packb([self.store.snapshot(), self.hints.snapshot(), self.replica.paxos_states()],
                                   use_bin_type=True)
        return out

    def _commit_pending(self) -> None:
        """The entries of changes already applied go into the WAL and are written (no frame is sent);
        the open batches (``_join``) end first: their writes are applied already. Every snapshot
        comes after this (``state_snapshots.py``), so ``_state_blob`` never meets an open batch."""
        if self._open is not None:
            self._end_open()
        if self.entries:
            entries, self.entries = self.entries, []
            self.wal.append_entries(self.wal.last_index + 1, entries)
            self.applied_index += len(entries)
        self.wal.commit()

    # -- timers ------------------------------------------------------------------------------------
    def _arm_timer(self, at: float) -> None:
        """Wake at loop time ``at`` (or earlier, if already armed so)."""
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        """Request timeouts and speculative retries (the coordinator's deadlines)."""
        self._timer = None
        now_us = _now_us()
        self._run(self.replica.requests_due(wall_ms(), now_us))
        self._flush_clients()
        due = self.coord.next_deadline_us()
        if due is not None:
            self._arm_timer(self.loop.time() + max(0, due - now_us) / 1e6)

    async def _tick_loop(self) -> None:
        interval = self.options.heartbeat_ms / 1000
        next_expiry = 0.0
        while True:
            await asyncio.sleep(interval)
            self._run(self.replica.tick(wall_ms(), _now_us(), self._alive(), writable=self.disk_error is None))
            self._flush_clients()
            self.rest_change_index()
            if self._departed:
                self._drop_departed()
            now = time.monotonic()
            if self.disk_error is not None or now < next_expiry:
                continue
            next_expiry = now + 1.0
            due = self.sm.expired_keys(wall_ms(), 200)
            if due:
                self.stats["expired_deletes"] += self._delete_locally(due)

    # -- membership (REPLIKV CLUSTER ...) ------------------------------------------------------------
    def admin(self, conn: ClientConnection, argv: list[bytes]) -> None:
        """REPLIKV CLUSTER ADD <id> [host port [peer_port]] | REMOVE <id>: start a change driven by
        this node; PROMOTE <id>: OK once <id> is a member and no change runs (TRYAGAIN before);
        WAIT <id>: OK once no change runs and <id> is not a member; MEMBERS: the ring state."""
        usage = "ERR usage: REPLIKV CLUSTER ADD <id> [host port [peer_port]] | REMOVE <id> | PROMOTE <id> | " \
                "WAIT <id> | MEMBERS"
        if len(argv) < 3 or argv[1].upper() != b"CLUSTER":
            raise RespError(usage)
        sub = argv[2].upper()
        ms = self.replica.membership
        if sub == b"MEMBERS":
            st = ms.status()
            conn.reply([st["epoch"], [m.encode() for m in st["members"]], st["change"].encode(),
                        st["change_node"].encode(), st["coordinator"].encode(), st["streams_left"]])
            return
        if len(argv) < 4:
            raise RespError(usage)
        target = argv[3].decode(errors="replace")
        if sub in (b"PROMOTE", b"WAIT"):
            if ms.settled_with(target, present=sub == b"PROMOTE"):
                conn.reply(OK)
                return
            st = ms.status()
            what = (f"{st['change']} {st['change_node']} in flight (epoch {st['epoch']}, driven by "
                    f"{st['coordinator']}, streams left {st['streams_left']})" if st["change"] else
                    f"{target} is {'not ' if sub == b'PROMOTE' else ''}a member")
            raise RespError(f"TRYAGAIN {what}")
        if sub == b"ADD":
            member = self._new_member(target, argv[4:])
        elif sub == b"REMOVE":
            found = ms.member(target)
            if found is None or target not in ms.state.ids:
                raise RespError(f"ERR {target} is not a member (members: {', '.join(ms.state.ids)})")
            member = found
        else:
            raise RespError(usage)
        if member.id != self.id:
            self._know(member)
        try:
            effects = self.replica.begin_change(sub.decode().lower(), member, wall_ms(), _now_us())
        except mb.MembershipError as e:
            raise RespError(f"ERR {e}") from None
        self._run(effects)
        conn.reply(f"{sub.decode().lower()} {target}: epoch {ms.state.epoch}, streaming".encode())

    def _new_member(self, node: str, args: list[bytes]) -> mb.Member:
        """The joining node's address: given, or read from cluster.toml (``replikv cluster add`` wrote it)."""
        if args:
            try:
                host = args[0].decode()
                port = int(args[1])
                peer_port = int(args[2]) if len(args) > 2 else port + PEER_PORT_OFFSET
            except (IndexError, ValueError, UnicodeDecodeError):
                raise RespError("ERR usage: REPLIKV CLUSTER ADD <id> [host port [peer_port]]") from None
            if not (0 < port < 65536 and 0 < peer_port < 65536):
                raise RespError("ERR ports must be in 1..65535")
            return mb.Member(id=node, host=host, port=port, peer_port=peer_port)
        addr = self.config.nodes.get(node)
        if addr is None and self.config.source:
            try:
                addr = ClusterConfig.load(self.config.source).nodes.get(node)
            except ConfigError as e:
                raise RespError(f"ERR cannot read {self.config.source}: {e}") from None
        if addr is None:
            raise RespError(f"ERR unknown node {node}: not in cluster.toml; give its address: "
                            f"REPLIKV CLUSTER ADD {node} <host> <port>")
        return mb.Member(id=node, host=addr.host, port=addr.port, peer_port=addr.peer_port)

    # -- INFO ----------------------------------------------------------------------------------------
    def info(self, wanted: list[str]) -> str:
        sections = self.info_sections()
        sections["persistence"] = self.persistence_info(self.snapshot_index)
        opts = self.options
        alive = self._alive()
        rep = ["role:master", f"replikv_node:{self.id}", f"replikv_mode:{NAME}",
               f"replikv_replicas:{opts.replicas}", f"replikv_conflicts:{opts.conflicts}",
               f"replikv_sloppy_quorum:{int(opts.sloppy_quorum)}",
               f"replikv_keys_held:{len(self.store.ctx)}", f"replikv_tombstones:{len(self.store.dead_ms)}",
               f"replikv_hints_held:{sum(self.hints.pending(n) for n in self.hints.nodes())}",
               f"replikv_hints_dropped:{self.hints.dropped}",
               *(f"replikv_{k}:{v}" for k, v in self.replica.stats.items()),
               f"replikv_speculative_retries:{self.coord.speculative_retries}",
               f"replikv_requests_in_flight:{len(self.pending)}",
               f"replikv_applied_index:{self.applied_index}", f"master_repl_offset:{self.applied_index}",
               *(f"replikv_ring_{k}:{','.join(v) if isinstance(v, list) else v}"
                 for k, v in self.replica.membership.status().items()),
               f"connected_slaves:{len(alive)}"]
        for i, peer in enumerate(self.peer_ids):
            addr = self.config.nodes[peer]
            state = "online" if peer in alive else "offline"
            est = self.coord.peer_us.get(peer)
            rep.append(f"peer{i}:id={peer},ip={addr.host},port={addr.port},state={state},"
                       f"hints={self.hints.pending(peer)},read_us={'' if est is None else int(est)}")
        sections["replication"] = rep
        sections["keyspace"] = [self.sm.keyspace_info()] if self.sm.dbsize else []
        return render_info(sections, wanted)


class _Sequence(PeerReplyConnection):
    """Runs an EXEC block's commands one at a time through the node's own paths (each reply,
    once ready, starts the next) and answers the client with the array of replies."""

    def __init__(self, node: LeaderlessRunner, conn: ClientConnection, queued: list[list[bytes]]) -> None:
        super().__init__(conn.resp3)
        self.node, self.conn, self.todo = node, conn, list(queued)
        self.replies: list[bytes] = []
        self.authenticated = True
        self.multi = None
        self.multi_dirty = False
        self.read_level, self.read_bound_ms = conn.read_level, 0
        self.write_level = conn.write_level
        self.write_k = 0
        self.closing = False
        self.done: Slot | None = None

    def set_write_level(self, level: Any) -> None:
        self.write_level = level

    def next(self, done: Slot | None = None) -> None:
        if done is not None:
            self.done = done
        if not self.todo:
            body = b"".join(self.replies)
            head = b"*%d\r\n" % len(self.replies)
            assert self.done is not None
            self.done.resolve(head + body)
            self.node._flush_clients()
            return
        argv = self.todo.pop(0)
        spec = lookup(argv[0])
        if spec is not None and "blocking" in spec.flags:  # in a transaction it does not block (Redis)
            (self.node._write_one if spec.is_write else self.node._read)(self, argv)  # type: ignore[arg-type]
            return
        self.node.execute(self, argv)  # type: ignore[arg-type]

    def send_reply(self, data: bytes) -> None:
        self.replies.append(data)
        self.node.loop.call_soon(self.next)  # never recurse: a long block would overflow the stack


def _serial_write(argv: list[bytes], level: str) -> tuple[str, Callable[[bytes | None], bytes | None]] | None:
    """How a write runs through Paxos, or None for an ordinary write: CAS always; SET with NX or
    XX always (a condition on the current value needs one order); a plain SET at WRITE SERIAL."""
    name = argv[0].upper()
    if name == b"CAS":
        expected, new = argv[2], argv[3]
        return "cas", lambda current: new if current == expected else current
    if name == b"SET":
        opts = {a.upper() for a in argv[3:]}
        value = argv[2]
        if b"NX" in opts:
            return "nx", lambda current: value if current is None else current
        if b"XX" in opts:
            return "xx", lambda current: value if current is not None else current
        if level == "serial":
            return "set", lambda current: value
    return None


def _paxos_reply(kind: str, argv: list[bytes], outcome: px.Outcome, timeout_ms: int) -> Any:
    """Redis's reply to a command run through Paxos, from the value the round read."""
    if isinstance(outcome, px.Chosen):
        previous = outcome.previous
        if kind == "read":
            return previous
        if kind == "cas":
            return 1 if previous is not None and previous == argv[2] else 0
        if kind == "nx":
            return OK if previous is None else None
        if kind == "xx":
            return OK if previous is not None else None
        return OK
    if isinstance(outcome, px.Timeout):
        maybe = "it may still be applied" if outcome.may_be_applied else "it was not applied"
        return RespError(f"NOREPLICAS paxos {outcome.phase.value} reached {outcome.answered} of {outcome.needed} "
                         f"replicas within {timeout_ms} ms; {maybe}")
    if isinstance(outcome, px.Preempted):
        return RespError(f"TRYAGAIN a concurrent Paxos round preempted this one after {outcome.accepted} "
                         "replicas accepted it; it may still be applied")
    return RespError(f"TRYAGAIN gave up after {outcome.rounds} contended Paxos rounds; it was not applied")
