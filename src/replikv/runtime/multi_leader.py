"""MultiLeaderRunner: one replikv node process in multi-leader mode.

Every node takes writes. The thin asyncio shell around three pure parts:
``kv/crdt_writes.py`` turns a client's write into CRDT mutations and its
reply, ``core/multileader`` (the replica) stamps them as one operation
(origin, seq, HLC, deps) and moves operations between nodes in causal
order, and ``core/crdt`` (the store) merges them. The state machine every
read command is served from (``self.sm``) is a *view* of the store:
``kv/crdt_view.py`` rewrites the keys an operation changed, through the
state machine's one apply path, so every Redis read command, SCAN, TYPE and
TTL work unchanged.

Rules it keeps:
- Group commit: operations made or received in one loop iteration are one
  WAL record batch, one ``write`` (+ one fsync under ``--fsync always``);
  a local write's reply leaves after its operation is in the WAL (``local``)
  or once ``n`` other nodes are known to hold it (``CONSISTENCY WRITE n``).
- One operation per loop iteration for async writes: the ``local`` writes of
  every connection in one iteration join one open operation (``_OpenOp``),
  sealed (stamped by the replica, persisted, sent) at the iteration's flush
  or before anything that must see it stamped (``_seal`` lists them).
- Peer sends batched in time: after a send to the peers, the next leaves no sooner than the
  send interval later (the first after a quiet spell at once), so under load a frame holds the
  ops of several loop iterations (``_send_peers``). The interval grows with load, from
  ``PEER_SEND_EVERY_S`` (idle, light load) to at most ``PEER_SEND_MAX_S``. Replies never wait
  for it.
- Persist before send: an operation leaves the node only after the WAL
  commit that holds it, so a restarted node never reuses a sequence number
  it already sent (the replica's rule; with ``--fsync always`` this holds
  across power loss, otherwise across process crashes).
- The WAL is the node's delivery order: each entry is one operation (own or
  received); replaying it through the store rebuilds the same state, and the
  replica resumes exchange from the version vector it reaches.
- Expiry: a key whose deadline passed is hidden by reads on every node
  (``StateMachine.read``); each node's expiry loop then deletes it with an
  ordinary delete operation (observed-remove: a write concurrent with it
  survives), so all replicas end in the same state.
- Snapshots hold the store (with its version vector); the view is rebuilt
  from it at start.
- State transfer (core/multileader/transfer.py has the rules): a peer that
  lacks operations this node no longer retains gets the store in chunks of at
  most ``STATE_CHUNK_BYTES`` of key states, read a few per loop iteration
  (within ``STATE_TURN_S``) after a WAL commit, while the link's send queue
  holds less than ``STATE_QUEUE_CHUNKS`` chunks (back-pressure: the transport
  closes a link whose queue outgrows its bound) and the receiver has taken in
  all but ``STATE_WINDOW_CHUNKS`` of those sent (``StateAck``). One transfer
  per peer; a new one (after a reconnect) replaces it. The receiver queues the
  chunks (at most a window per sender) and joins one per loop iteration,
  acknowledging each, so both nodes keep serving clients; once all are
  joined it snapshots, then lets the replica's vv move. A write that would be
  made from a key a transfer joined beyond this node's vv is refused with
  ``TRYAGAIN`` (its mutations would name ops its deps do not); so is a
  MULTI/EXEC with writes while any key holds such a context. A transfer cut
  off by a disconnect is dropped on both sides and starts over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from replikv.config import ClusterConfig, ConfigError
from replikv.core.crdt import CrdtStore, Hlc
from replikv.core.crdt.vv import parse_vv_text, vv_text
from replikv.core.invariant import InvariantViolation, invariant
from replikv.core.multileader import codec
from replikv.core.multileader.effects import Ack, Deliver, Persist, Send, SendState
from replikv.core.multileader.messages import Op, Ops, State, StateAck, StateChunk
from replikv.core.multileader.replica import Replica
from replikv.core.multileader.transfer import StateExport, StateReceiver
from replikv.core.replies import NULL_ARRAY, RespError
from replikv.core.resp import encode_reply
from replikv.kv.commands import lookup
from replikv.kv.crdt_view import deliver_ops, materialize, show_applied
from replikv.kv.crdt_writes import translate, vget
from replikv.kv.state_machine import StateMachine
from replikv.kv.watch import ChangeIndex
from replikv.modes.multi_leader import NodesAck
from replikv.runtime.base import BaseRunner, wall_ms
from replikv.runtime.state_snapshots import WholeStateSnapshots
from replikv.runtime.info import render as render_info
from replikv.runtime.resp_server import ClientConnection, Slot
from replikv.storage.errors import WalFailedError

log = logging.getLogger("replikv.node")
# Ops that arrived before an op they depend on (another origin's, still on its way over another
# connection): under load the links drift apart by thousands of ops; beyond this they are dropped
# and resent.
MAX_PENDING_OPS = 65536
# State transfer: bytes of key states per chunk (REPLIKV_STATE_CHUNK_BYTES overrides it, for tests),
# the time a turn of the sender may spend reading chunks, and how many chunks' worth the link's
# send queue may hold before the sender waits for it to drain.
STATE_CHUNK_BYTES = int(os.environ.get("REPLIKV_STATE_CHUNK_BYTES", 64 * 1024))
STATE_TURN_S = 0.01
STATE_QUEUE_CHUNKS = 4
STATE_WINDOW_CHUNKS = 16  # chunks sent that the receiver has not yet taken in (StateAck)
# Peer sends: at most one batch per send interval (``MultiLeaderRunner._send_peers`` has the
# rule): this long when idle or lightly loaded (REPLIKV_ML_SEND_EVERY_MS overrides it, 0 sends
# at every flush), growing under load (at least PEER_SEND_BUSY_OPS ops per PEER_SEND_EVERY_S in a
# peer's frame) to at most PEER_SEND_MAX_S (REPLIKV_ML_SEND_MAX_MS).
PEER_SEND_EVERY_S = float(os.environ.get("REPLIKV_ML_SEND_EVERY_MS", 2)) / 1000
# 5 ms, not 10: as little CPU per write in the cluster (BENCHMARKS.md, session 25, ml25b), half
# the replication lag under load.
PEER_SEND_MAX_S = float(os.environ.get("REPLIKV_ML_SEND_MAX_MS", 5)) / 1000
PEER_SEND_BUSY_OPS = 2


def entry_op(entry: list[Any]) -> Op:
    """An operation from its WAL entry (``codec.pack_op``'s wire form)."""
    origin, seq, hlc, deps, payload = entry
    return Op(origin=origin, seq=seq, hlc=hlc, deps=dict(deps), payload=payload)


class AckWaiter:
    """A local write's reply that waits until ``k`` other nodes hold (origin, seq), or a deadline."""

    __slots__ = ("seq", "k", "deadline", "slot", "data")

    def __init__(self, seq: int, k: int, deadline: float, slot: Slot, data: bytes) -> None:
        self.seq, self.k, self.deadline, self.slot, self.data = seq, k, deadline, slot, data


class SessionRead:
    """A read that waits until this node has applied a session token's version vector."""

    __slots__ = ("vv", "slot", "argv", "deadline")

    def __init__(self, vv: dict[str, int], slot: Slot, argv: list[bytes], deadline: float) -> None:
        self.vv, self.slot, self.argv, self.deadline = vv, slot, argv, deadline


# An open operation is sealed at this many mutations or this many bytes of client arguments
# (a loop iteration's writes are usually far fewer). The bytes bound keeps what the replica
# sends a lagging neighbour at once (``window_ops``, 256 ops) well inside the transport's send
# queue bound (256 MiB), as one-write ops of small values did.
OPEN_OP_MAX_MUTS = 4096
OPEN_OP_MAX_BYTES = 256 * 1024


class _OpenOp:
    """This node's next operation while async client writes join it (``MultiLeaderRunner._join``).

    Invariants, kept by sealing it before anything else touches the replica or moves the
    store's vv (``MultiLeaderRunner._seal``): ``seq`` and ``deps`` are what ``Replica.local``
    will stamp it with (this node's next seq; the replica's vv, unchanged since it opened);
    every mutation of ``payload`` is applied to the store already under its id
    ``(me, seq, i)`` (``CrdtStore.apply_muts``) and the keys it changed are shown in the view
    at WATCH index ``applied_index + 1``, the position the op takes when sealed; the replies
    of its writes are held until the WAL commit after the seal (``BaseRunner.release_committed``
    runs only in ``_flush``, which seals first)."""

    __slots__ = ("seq", "deps", "hlc", "observed", "payload", "size")

    def __init__(self, seq: int, deps: dict[str, int], hlc: int, me: str) -> None:
        self.seq, self.deps, self.hlc = seq, deps, hlc
        self.observed = {**deps, me: seq}  # what each of its mutations observes (CrdtStore.apply_muts)
        self.payload: list[Any] = []
        self.size = 0  # bytes of the client arguments joined (OPEN_OP_MAX_BYTES)


class MultiLeaderRunner(WholeStateSnapshots, BaseRunner):
    # pipelined SETs and INCRs: a run joins the open op at once (_write_run)
    run_argc = {**BaseRunner.run_argc, "incr": 2}

    def __init__(self, config: ClusterConfig, node_id: str) -> None:
        super().__init__(config, node_id)
        opts = self.options
        self.peer_ids = [p for p in config.nodes if p != node_id]
        if opts.topology == "star" and opts.hub and opts.hub not in config.nodes:
            raise ConfigError(f"hub {opts.hub!r} is not one of the nodes")
        self.hlc = Hlc()
        self.rng = random.Random()
        self.sends: list[Send | Ack] = []
        self.ack_waiters: list[AckWaiter] = []
        self.session_reads: list[SessionRead] = []
        self.flush_scheduled = False
        self._sent_at = 0.0  # when _send_peers last sent (the send interval)
        self._send_every = PEER_SEND_EVERY_S  # the send interval: grows with load (_send_peers)
        self._now = time.monotonic  # the send interval's clock (a test's own)
        self._send_timer: asyncio.TimerHandle | None = None  # the held sends' flush
        self._committed: list[Send | Ack] = []  # sends whose ops the WAL holds, held (_send_peers)
        self._held_acks: set[str] = set()  # peers whose ack waits a batch for our ops to carry it (_send_peers)
        self._open: _OpenOp | None = None  # async client writes of this loop iteration (_join)
        self._packed: dict[tuple[str, int], bytes] = {}  # (origin, seq) -> the op packed, Persist to flush
        self._wal_bytes_after_snapshot = 0
        self._exports: dict[str, StateExport] = {}  # peer -> the transfer streaming to it
        self.receiver = StateReceiver()
        self._decoder = codec.Decoder()  # peer frames, one unpacker for all (_decode)
        self._chunks_in: deque[StateChunk] = deque()  # received, to be joined one per loop turn
        self._joining = False
        self._prune_at = 0.0
        self.stats.update({"ops_local": 0, "ops_received": 0, "conflicts_merged": 0, "state_transfers_sent": 0,
                           "state_transfers_received": 0, "state_chunks_sent": 0, "state_chunks_received": 0,
                           "state_transfer_refused_writes": 0, "expired_deletes": 0, "peer_acks_in_ops": 0})
        self._recover()

    # -- start-up ---------------------------------------------------------------------
    def _recover(self) -> None:
        """Snapshot (the store) + WAL operations after it; the view is rebuilt from the store."""
        meta, snap, records = self.open_storage()
        conflicts = self.options.conflicts
        self.store = CrdtStore.restore(snap.data, conflicts) if snap is not None else CrdtStore(conflicts)
        self.snapshot_index = snap.index if snap is not None else 0
        snapshot_vv = dict(self.store.vv)
        retained: list[Op] = []
        for _first, entries in records:
            for entry in entries:
                op = entry_op(entry)
                self.store.apply(op.origin, op.seq, op.hlc, op.deps, op.payload)
                self.hlc.observe(op.hlc, 0)
                retained.append(op)
        self.applied_index = self.wal.last_index
        self.sm = StateMachine()
        materialize(self.store, self.sm, list(self.store.keys()))
        self.sm.changes = ChangeIndex(self.applied_index, watching=False)  # armed by watch_position
        if not meta:
            self.meta.save({"mode": self.config.mode})
        opts = self.options
        self.core = Replica(self.id, list(self.config.nodes), topology=opts.topology, hub=opts.hub or None,
                            retain_ops=opts.oplog_retain_ops, vv=snapshot_vv, max_pending=MAX_PENDING_OPS)
        self.core.restore(snapshot_vv, retained)
        log.info("node %s recovered: snapshot at %d, %d operations replayed, version vector %s",
                 self.id, self.snapshot_index, len(retained), vv_text(self.store.vv).decode())

    async def start(self) -> None:
        await self.start_io(self._on_peer_connected, [self._tick_loop])
        log.info("node %s (multi-leader, %s) serving RESP on %s:%d, peers on %s:%d", self.id,
                 self.options.topology, self.address.host, self.address.port, self.address.host,
                 self.address.peer_port)

    async def stop(self) -> None:
        self.snapshotter.stop()
        await self.stop_io()
        self._flush(True)
        if self._send_timer is not None:  # the disk failed: held sends stay unsent
            self._send_timer.cancel()
        self.wal.close()

    # -- levels -------------------------------------------------------------------------
    def ack_replicas(self, level: NodesAck) -> int:
        return level.n

    @property
    def is_leader(self) -> bool:
        return True  # every node takes writes

    # -- writes ---------------------------------------------------------------------------
    def _write_one(self, conn: ClientConnection, argv: list[bytes]) -> None:
        if self.disk_error is not None:
            conn.reply(self.disk_refusal())
            return
        now = wall_ms()
        muts, reply = translate(self.store, argv, now, self.rng)  # a refusal or error: no muts
        if muts and self.store.kctx:
            busy = self._transfer_key(muts)
            if busy is not None:
                conn.reply(self._transfer_refusal(busy))
                return
        data = encode_reply(reply, conn.resp3)
        if not muts:
            conn.reply_bytes(data)
            return
        if conn.write_k or self.store.kctx:
            op = self._local(muts, now)
            self._hold(conn, op.seq, data)
            return
        seq, changed = self._join(muts, now, sum(map(len, argv)))
        self._show_joined(changed)
        conn.session_index = seq
        self.hold_until_commit(conn, data)

    def _write_run(self, conn: ClientConnection, spec: Any, run: list[list[bytes]]) -> int:
        """A pipelined run of plain SETs or INCRs (``BaseRunner.execute_batch``; ``run_argc``):
        each command is translated against the store as the earlier writes left it and joins
        the open operation (``_join``), as ``_write_one`` would make it, and the view shows the
        run's keys once at its end (nothing reads the view in between). A run's writes so land
        in one op with the other writes of this loop iteration: they arrive elsewhere together
        (atomically, never apart). Replies as ``_write_one`` makes them, held until the op's
        WAL commit; a refused command (no mutation) is answered in its place, after the
        replies held before it. Only for an async write (``write_k == 0``) on a node with no
        key context pending (``kctx``: ``_write_one`` checks each key) and a working disk;
        else 0, nothing done, and ``execute_batch`` runs each command by ``_write_one``.
        Returns how many ran."""
        store = self.store
        if self.disk_error is not None or conn.write_k or store.kctx:
            return 0
        now = wall_ms()
        changed: dict[bytes, bool] = {}
        held: list[bytes] = []
        resp3, rng, join = conn.resp3, self.rng, self._join
        seq = 0
        for argv in run:
            try:
                muts, reply = translate(store, argv, now, rng)
            except InvariantViolation:
                raise
            except Exception as exc:  # noqa: BLE001 - a bug: this reply says so, the run goes on
                muts, reply = [], self.internal_error(spec, exc)
            data = encode_reply(reply, resp3)
            if not muts:
                if held:
                    self.hold_all_until_commit(conn, held)
                    held = []
                conn.reply_bytes(data)
                continue
            seq, keys = join(muts, now, len(argv[1]) + len(argv[-1]))
            changed.update(keys)  # a key keeps its first place
            held.append(data)
            if self._open is None:  # this write sealed the op (its bounds): show what the op held
                self._show_joined(changed)
                changed = {}
        if changed:
            self._show_joined(changed)
        if seq:
            conn.session_index = seq
        if held:
            self.hold_all_until_commit(conn, held)
        return len(run)

    def _join(self, muts: list[Any], now: int, size: int) -> tuple[int, dict[bytes, bool]]:
        """Apply ``muts`` (one async client write, translated against the store as it is) as
        the next mutations of the open operation, opening one if none is (``_OpenOp`` has the
        invariants); the caller shows the keys changed (returned with the op's seq) in the view
        (``_show_joined``) before the op is sealed by anything but this write. Every
        node applies the same mutations under the same ids in the same order, so the state is
        what the writes as ops of their own would leave, except that they share one dot and
        HLC (LWW orders them by their index: the later write wins, as it would with a later
        HLC). The op is sealed at the loop iteration's flush (scheduled here), or at once when
        it reaches ``OPEN_OP_MAX_MUTS`` mutations or ``OPEN_OP_MAX_BYTES``."""
        o = self._open
        if o is None:
            core = self.core
            o = self._open = _OpenOp(core.vv[self.id] + 1, dict(core.vv), self.hlc.now(now), self.id)
            self._schedule_flush()
        changed = self.store.apply_muts(self.id, o.seq, o.hlc, o.deps, muts, len(o.payload), o.observed)
        o.payload += muts
        o.size += size
        if len(o.payload) >= OPEN_OP_MAX_MUTS or o.size >= OPEN_OP_MAX_BYTES:
            self._seal()
        return o.seq, changed

    def _show_joined(self, keys: Iterable[bytes]) -> None:
        """Show in the view ``keys``, which writes joined to the open op changed, at the view
        position of their op: ``applied_index + 1`` while it is open, ``applied_index`` once
        sealed (``_OpenOp``)."""
        show_applied(self.store, self.sm, keys, self.applied_index + (self._open is not None))

    def _seal(self) -> None:
        """Stamp the open operation (if any) as this node's next op and carry out its effects:
        the WAL buffer, the view position it was shown at, the sends. Called before anything
        that steps the replica, stamps another op, moves the store's vv or reads it as this
        node's state: the flush, a peer frame, another local op (``_local``), the tick, WATCH,
        SESSION, VGET, INFO, ROLE, a snapshot, a state transfer's export or join."""
        o = self._open
        if o is None:
            return
        self._open = None
        op, effects = self.core.local(o.hlc, o.payload)
        invariant(op.seq == o.seq and op.deps == o.deps, "the open op is the one its mutations were applied as")
        self.store.advance(self.id, o.seq)
        self.stats["ops_local"] += 1
        self._run(effects, shown=True)

    def _transfer_key(self, muts: list[Any]) -> bytes | None:
        """A key ``muts`` would write whose state a transfer joined beyond our vv, or None."""
        pending = self.store.pending_context
        for m in muts:
            if pending(bytes(m[1])):
                return bytes(m[1])
        return None

    def _transfer_refusal(self, key: bytes | None) -> RespError:
        self.stats["state_transfer_refused_writes"] += 1
        what = f"key '{key.decode(errors='replace')}' holds" if key is not None else "keys hold"
        return RespError(f"TRYAGAIN {what} state joined from a state transfer that this node has not "
                         "caught up with yet; retry shortly")

    def _local(self, muts: list[Any], now: int) -> Op:
        """Stamp ``muts`` as this node's next operation (after the open one) and carry out its effects."""
        self._seal()
        op, effects = self.core.local(self.hlc.now(now), muts)
        self.stats["ops_local"] += 1
        self._run(effects)
        return op

    def _hold(self, conn: ClientConnection, seq: int, data: bytes) -> None:
        """Hold a local write's reply until its WAL commit (and ``conn.write_k`` other nodes)."""
        conn.session_index = seq
        k = conn.write_k
        if k == 0:
            self.hold_until_commit(conn, data)
        else:
            deadline = time.monotonic() + self.options.ack_timeout_ms / 1000
            self.ack_waiters.append(AckWaiter(seq, k, deadline, conn.slot(), data))

    def exec_transaction(self, conn: ClientConnection, queued: list[list[bytes]]) -> None:
        """EXEC: the block's commands run here one after another with nothing in between;
        each write is its own operation, applied in the same order on every node (other
        nodes' concurrent writes may land between them there: no isolation across nodes)."""
        if conn.watch and self.sm.changes.any_changed(conn.watch.items()):
            conn.reply(NULL_ARRAY)  # a WATCHed key changed since (kv/watch.py)
            return
        if self.disk_error is not None and any(_is_write(a) for a in queued):
            conn.reply(self.disk_refusal())
            return
        if self.store.kctx and any(_is_write(a) for a in queued):
            self.store.prune_contexts()
            if self.store.kctx:  # the block's writes cannot be checked one by one before it runs
                conn.reply(self._transfer_refusal(None))
                return
        now = wall_ms()
        replies: list[Any] = []
        last_seq = 0
        for argv in queued:
            if not _is_write(argv):
                replies.append(self.sm.read(argv, now))
                continue
            muts, reply = translate(self.store, argv, now, self.rng)
            if muts:
                last_seq = self._local(muts, now).seq
            replies.append(reply)
        data = encode_reply(replies, conn.resp3)
        if last_seq:
            self._hold(conn, last_seq, data)
        else:
            conn.reply_bytes(data)

    def watch_position(self, key: bytes | None = None) -> int:
        """The view position WATCH and a blocked command read from; the WATCH index records
        changes from here on (it rests while no such position is held: ``rest_change_index``
        at each tick)."""
        self._seal()  # a write of the open op after WATCH must take a later position than this
        self.sm.changes.arm()
        return self.applied_index

    def wait_replicas(self, conn: ClientConnection, numreplicas: int, timeout_ms: int) -> None:
        """WAIT: how many other nodes hold this connection's last write."""
        seq = conn.session_index
        held = self.core.acked(self.id, seq) if seq else len(self.peer_ids)
        if held >= numreplicas or not seq:
            conn.reply(held)
            return
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else float("inf")
        self.ack_waiters.append(AckWaiter(seq, numreplicas, deadline, conn.slot(), b""))

    def waiting_clients(self) -> int:
        return len(self.ack_waiters) + len(self.session_reads)

    def failover(self, conn: ClientConnection, target: str, force: bool) -> None:
        conn.reply(RespError("ERR multi-leader mode has no leader to fail over: every node takes writes"))

    def role_reply(self) -> list[Any]:
        self._seal()  # the applied index shown covers every write made
        return [b"master", 0, self.id.encode(), self.applied_index]

    def take_snapshot(self) -> int:
        return self._take_snapshot()

    def evict(self, keys: list[bytes]) -> None:
        """maxmemory (runtime/memory.py): delete ``keys`` with an ordinary delete operation."""
        self._delete_keys(keys)

    def _delete_keys(self, keys: list[bytes]) -> int:
        if self.store.kctx:  # expiry and eviction wait for a key a transfer joined (TRYAGAIN)
            keys = [k for k in keys if not self.store.pending_context(k)]
            if not keys:
                return 0
        muts, reply = translate(self.store, [b"DEL", *keys], wall_ms(), self.rng)
        if muts:
            self._local(muts, wall_ms())
        return int(reply) if isinstance(reply, int) else 0

    # -- VGET / VSET / SESSION ---------------------------------------------------------------
    def vget(self, conn: ClientConnection, argv: list[bytes]) -> None:
        self._seal()  # the context covers the open op's writes
        conn.reply(vget(self.store, argv[1]))

    def vset(self, conn: ClientConnection, argv: list[bytes]) -> None:
        self._write_one(conn, argv)

    def session_token(self, conn: ClientConnection) -> bytes:
        """SESSION: this node's version vector (covers every write this client saw here)."""
        self._seal()
        return vv_text(self.store.vv)

    def set_session(self, conn: ClientConnection, token: bytes) -> None:
        try:
            conn.session_vv = parse_vv_text(token)
        except ValueError:
            raise RespError("ERR usage: SESSION [token] where token is what SESSION returned "
                            "(a version vector such as n1:3,n2:5)") from None

    # -- reads ---------------------------------------------------------------------------------
    def _read(self, conn: ClientConnection, argv: list[bytes]) -> None:
        wanted = getattr(conn, "session_vv", None)
        if wanted and conn.read_level == "session" and not self._has_seen(wanted):
            deadline = time.monotonic() + self.options.session_timeout_ms / 1000
            self.session_reads.append(SessionRead(wanted, conn.slot(), argv, deadline))
            return
        conn.reply(self.sm.read(argv, wall_ms()))

    def _has_seen(self, vv: dict[str, int]) -> bool:
        mine = self.store.vv
        return all(mine.get(o, 0) >= s for o, s in vv.items())

    def _release_session_reads(self, now: float) -> None:
        keep: list[SessionRead] = []
        for r in self.session_reads:
            if self._has_seen(r.vv):
                r.slot.resolve(encode_reply(self.sm.read(r.argv, wall_ms()), r.slot.conn.resp3))
            elif now >= r.deadline or r.slot.conn.closing:
                missing = {o: s for o, s in r.vv.items() if self.store.vv.get(o, 0) < s}
                r.slot.resolve(encode_reply(RespError(
                    f"STALE {self.id} has not yet applied the session's writes ({vv_text(missing).decode()}) "
                    f"within {self.options.session_timeout_ms} ms"), r.slot.conn.resp3))
            else:
                keep.append(r)
        self.session_reads = keep

    # -- effects ---------------------------------------------------------------------------------
    def _run(self, effects: list[Any], shown: bool = False) -> None:
        """Storage first (WAL buffer), apply, and the sends once the batch is committed (``_flush``).
        ``shown``: the effects are those of the open op (``_seal``), which the store and the view
        hold already: its Deliver only takes the view position it was shown at."""
        for effect in effects:
            match effect:
                case Persist():  # each op packed once: these bytes also go to the peers (_flush)
                    cache = self._packed  # a received op's bytes are there already (_on_frame)
                    packed = []
                    for op in effect.ops:
                        data = cache.get((op.origin, op.seq))
                        if data is None:
                            data = cache[(op.origin, op.seq)] = codec.pack_op(op)
                        packed.append(data)
                    try:
                        self.wal.append(self.wal.last_index + 1, codec.array_header(len(packed)) + b"".join(packed),
                                        len(packed))
                    except WalFailedError as exc:
                        self._disk_failed(exc)
                        return
                case Deliver():
                    if shown:
                        self.applied_index += 1
                    else:
                        self._deliver(effect.ops)
                case Send() | Ack():
                    self.sends.append(effect)
                case SendState():
                    self.loop.create_task(self._send_state(effect.to))
        self._schedule_flush()

    def _deliver(self, ops: list[Op]) -> None:
        """Apply ``ops`` to the store in order, then bring the view's keys they changed to
        the store's visible state at once (nothing reads the view in between: no await);
        each key's WATCH index is the op that changed it last."""
        self.applied_index, received, newest, conflicts = deliver_ops(self.store, self.sm, ops, self.id,
                                                                      self.applied_index)
        if received:
            self.hlc.observe(newest, wall_ms())
            self.stats["ops_received"] += received
            self.stats["conflicts_merged"] += conflicts

    def _flush(self, send_now: bool = False) -> None:
        """Seal the open op, commit the WAL, release the replies it made durable, then send
        (``_send_peers``; held for at most the send interval after the previous send, unless
        ``send_now``)."""
        self.flush_scheduled = False
        self._seal()
        if self.disk_error is not None:
            self._on_disk_blocked()
            return
        try:
            self.wal.commit()
        except WalFailedError as exc:
            self._disk_failed(exc)
            return
        self.release_committed()
        if self.sends:  # their ops are in the WAL now
            self._committed += self.sends
            self.sends = []
        if self._committed:
            wait = self._sent_at + self._send_every - self._now()
            if wait <= 0 or send_now:
                self._send_peers(held=send_now or self._send_timer is not None)
            elif self._send_timer is None:
                self._send_timer = self.loop.call_later(wait, self._send_due)
        if not self._committed:  # nothing held that may use them (at most one send interval)
            self._packed.clear()
        if self.ack_waiters:
            self._release_ack_waiters(time.monotonic())
        if self.session_reads:
            self._release_session_reads(time.monotonic())
        self._flush_clients()
        self._snapshot_due()

    def _send_due(self) -> None:
        """The held sends' timer (``_send_peers``): flush and send them."""
        self._send_timer = None
        self._flush(True)

    def _send_peers(self, held: bool) -> None:
        """Send ``self._committed`` (the sends whose ops a WAL commit holds: persist before send): one
        ``Ops`` frame with every op due to a peer (several, in order, where one would pass the
        transport's ``max_frame_bytes``: ``codec.encode_ops_frames``) and at most one Sync per peer,
        built now (``Replica.sync_for``; the replica asks for one per received frame, ``Ack``):
        the newest, whatever number of frames and ticks asked for one. A peer due a Sync only
        for ``Ack``s gets none when its ``Ops`` frame ends with our newest op made after
        everything we delivered (``Replica.carries_ack``): the frame acks it all already. When
        its frame does not, the ack waits for the next batch (once: at most one send
        interval more, a timer set here), whose ops, made after, usually do; it
        leaves as a Sync then if they do not. A peer this batch sends no ops to (it writes,
        we do not) gets its Sync at once, and a tick's or a connect's Sync always leaves.
        Under load every Sync frame is a wake-up and a loop iteration at the peer: with sends
        every 10 ms instead of 2 a node spent ~25 % less CPU per write (BENCHMARKS.md, session
        25).

        Batching rule: after a send, the next waits until the send interval has passed
        (``_flush`` holds the sends and sets a timer that flushes again then), so under load a
        frame carries the ops of every loop iteration in that time instead of one frame per
        peer per iteration; the first send after a quiet spell leaves at once. It delays only
        what goes to peers: a local write is answered at its WAL commit as before; replication
        and the acks of ``CONSISTENCY WRITE n`` / WAIT wait at most one interval longer, never
        more than ``PEER_SEND_MAX_S``.

        Interval rule (set at each send, for the next): a send that nothing held (``held``
        false: the first after a quiet spell of at least one interval) sets it to
        ``PEER_SEND_EVERY_S``; otherwise it doubles, to at most ``PEER_SEND_MAX_S``, when the
        largest frame sent carried at least ``PEER_SEND_BUSY_OPS`` ops per ``PEER_SEND_EVERY_S``
        since the previous send (this node made ops that fast: one per loop iteration with
        writes), and halves, to no less than ``PEER_SEND_EVERY_S``, when it carried fewer. An
        idle or lightly loaded node (under ``PEER_SEND_BUSY_OPS`` ops per ``PEER_SEND_EVERY_S``)
        so keeps the minimum interval and its lag; a busy one sends less often, which saves
        each node the wake-ups, loop iterations and Syncs of the sends it leaves out (a fixed
        2 -> 5 ms: SET -P 1 ~20 % less CPU per write; this rule -P 1 up to ~10 % less, under
        load a replication lag p50 of ~4 ms instead of ~3; BENCHMARKS.md, session 25)."""
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        now = self._now()
        since, self._sent_at = now - self._sent_at, now
        sends, self._committed = self._committed, []
        batched: dict[str, list[Op]] = {}
        syncs: dict[str, bool] = {}  # the peers due a Sync, in the order first asked: whether a tick's or a connect's
        send = self.transport.send
        for effect in sends:  # one Ops frame and at most one Sync (the newest) per peer per flush
            if isinstance(effect, Ack):
                syncs.setdefault(effect.to, False)
            elif isinstance(effect.msg, Ops):
                batched.setdefault(effect.to, []).extend(effect.msg.ops)
            else:  # a Sync: the one built now (Replica.sync_for) says the most
                syncs[effect.to] = True
        core, held_acks = self.core, self._held_acks
        cache, pack, limit = self._packed, codec.pack_op, self.transport.max_frame_bytes
        most = 0  # the ops in the largest frame: how fast this node made them (the interval rule)
        for peer, ops in batched.items():  # several frames where one would pass the limit (issue 9)
            for frame in codec.encode_ops_frames(self.id, [cache.get((op.origin, op.seq)) or pack(op) for op in ops],
                                                 limit):
                send(peer, frame)
            most = max(most, len(ops))
            if syncs.get(peer) is False:  # acks only
                if core.carries_ack(ops[-1]):  # the frame says as much
                    del syncs[peer]
                    held_acks.discard(peer)
                    self.stats["peer_acks_in_ops"] += 1
                elif peer not in held_acks:  # the next batch's ops, made after, may say it
                    del syncs[peer]
                    held_acks.add(peer)
                    self._committed.append(Ack(to=peer))
        cache.clear()
        sync_for = core.sync_for
        for peer in syncs:
            held_acks.discard(peer)
            send(peer, codec.encode(sync_for(peer)))
        if not held:
            self._send_every = PEER_SEND_EVERY_S
        elif most * PEER_SEND_EVERY_S >= PEER_SEND_BUSY_OPS * since:
            self._send_every = min(max(PEER_SEND_MAX_S, PEER_SEND_EVERY_S), 2 * self._send_every)
        else:
            self._send_every = max(PEER_SEND_EVERY_S, self._send_every / 2)
        if self._committed:  # held acks: the next batch leaves at the latest one interval from now
            self._send_timer = self.loop.call_later(self._send_every, self._send_due)

    def _release_ack_waiters(self, now: float) -> None:
        keep: list[AckWaiter] = []
        for w in self.ack_waiters:
            held = self.core.acked(self.id, w.seq)
            if held >= w.k:
                w.slot.resolve(w.data or encode_reply(held, w.slot.conn.resp3))
            elif now >= w.deadline or w.slot.conn.closing:
                if not w.data:  # WAIT: the count at the deadline
                    w.slot.resolve(encode_reply(held, w.slot.conn.resp3))
                else:
                    w.slot.resolve(encode_reply(RespError(
                        f"NOREPLICAS write reached {held} of {w.k} other nodes within "
                        f"{self.options.ack_timeout_ms} ms; it is applied here and will still reach them"),
                        w.slot.conn.resp3))
            else:
                keep.append(w)
        self.ack_waiters = keep

    # -- peers ------------------------------------------------------------------------------------
    def _on_frame(self, peer: str, payload: bytes) -> None:
        self.frames_in += 1
        if self.service_frame(peer, payload):
            return
        self._seal()  # this node's writes so far come before what the frame delivers
        if self.disk_error is not None:
            return  # frozen: the peer sees a silent node; exchange resumes from the version vectors
        msg = self.peer_message(peer, payload, self._decode)
        if msg is None:
            return
        if isinstance(msg, State):
            self._install_state(msg)
            return
        if isinstance(msg, StateAck):
            export = self._exports.get(peer)
            if export is not None and export.transfer == msg.transfer:
                export.on_ack(msg.count)
            return
        if isinstance(msg, Ops) and msg.packed:  # their bytes as received: the WAL need not pack them
            cache = self._packed
            for op, data in zip(msg.ops, msg.packed):
                cache.setdefault((op.origin, op.seq), data)
        if isinstance(msg, StateChunk):
            self._run(self.core.step(msg))  # records what the sender has
            self.stats["state_chunks_received"] += 1
            self._chunks_in.append(msg)
            if not self._joining:
                self._joining = True
                self.loop.create_task(self._join_chunks())
            return
        self._run(self.core.step(msg))

    def _decode(self, payload: bytes) -> Any:
        """A peer frame; the ops of an ``Ops`` frame this node has are left undecoded
        (duplicates: the replica would drop them)."""
        return self._decoder.decode(payload, self.core.vv)

    def _on_peer_connected(self, peer: str) -> None:
        self._run(self.core.connected(peer))  # a Sync: the exchange resumes from the version vectors

    def _on_peer_disconnected(self, peer: str) -> None:
        self._exports.pop(peer, None)  # its task stops; after the reconnect a new transfer starts over
        self._held_acks.discard(peer)
        self.receiver.cancel(peer)
        self.core.disconnected(peer)
        # what was held for it went with the link: after the reconnect its Sync says what it lacks
        self._committed = [effect for effect in self._committed if effect.to != peer]

    async def _send_state(self, peer: str) -> None:
        """A chunked state transfer to a peer that lacks operations we no longer retain
        (core/multileader/transfer.py; the module docstring has the pacing rules)."""
        self._seal()  # the export's vv covers every write the store holds
        export = StateExport(self.store, self.id, time.time_ns(), STATE_CHUNK_BYTES)
        self._exports[peer] = export  # a transfer still streaming to it stops at its next turn
        self.stats["state_transfers_sent"] += 1
        log.info("node %s: state transfer %d to %s (%d keys, version vector %s)", self.id, export.transfer, peer,
                 export.keys_total, vv_text(export.vv).decode())
        send, limit = self.transport.send, STATE_QUEUE_CHUNKS * STATE_CHUNK_BYTES
        try:
            while not export.done:
                turn_end = time.monotonic() + STATE_TURN_S
                while not export.done and time.monotonic() < turn_end and export.may_send(STATE_WINDOW_CHUNKS):
                    if self._exports.get(peer) is not export or self.disk_error is not None:
                        return
                    if export.unneeded(self.core.known[peer]):
                        log.info("node %s: state transfer %d to %s stopped: it has caught up by another way",
                                 self.id, export.transfer, peer)
                        return
                    self._flush(True)  # the WAL holds everything the store does, the link the ops before the chunk
                    if not send(peer, codec.encode(export.next_chunk())):
                        return  # not connected: the next connect starts over
                    self.stats["state_chunks_sent"] += 1
                await asyncio.sleep(0)  # clients and peers get the loop between turns
                while self._exports.get(peer) is export and (self.transport.buffered_bytes(peer) > limit
                                                             or not export.may_send(STATE_WINDOW_CHUNKS)):
                    await asyncio.sleep(0.005)
            log.info("node %s: state transfer %d to %s sent (%d chunks, %d bytes)", self.id, export.transfer,
                     peer, export.index, export.bytes_sent)
        finally:
            if self._exports.get(peer) is export:
                del self._exports[peer]
                self.core.state_done(peer)

    async def _join_chunks(self) -> None:
        """Join the received chunks, one per loop turn; after a transfer's last one, make the
        store durable, then move the replica's vv (transfer.py rule 4)."""
        try:
            while self._chunks_in:
                msg = self._chunks_in.popleft()
                self.transport.send(msg.sender, codec.encode(StateAck(sender=self.id, transfer=msg.transfer,
                                                                      count=msg.index + 1)))
                if self.disk_error is not None:
                    self.receiver.cancel(msg.sender)  # frozen: it starts over once the disk is back
                    continue
                self._seal()  # the join moves the store past this node's writes so far
                try:
                    changed, vv = self.receiver.chunk(self.store, msg, self.core.needs_state)
                except (ValueError, TypeError, IndexError, KeyError) as e:  # a malformed chunk
                    log.warning("dropping state transfer %d from %s: bad chunk %d (%s)", msg.transfer, msg.sender,
                                msg.index, e)
                    self.receiver.cancel(msg.sender)
                    continue
                if changed:
                    self.applied_index += 1
                    materialize(self.store, self.sm, changed)
                    for key in changed:
                        self.sm.changes.touch(key, self.applied_index)
                if vv is not None:
                    self.stats["state_transfers_received"] += 1
                    self.snapshotter.stop()  # a child snapshotting the state before the join would cover less
                    try:
                        self._take_snapshot()  # the joined state is durable before the replica moves its vv
                    except Exception:
                        # the replica's vv stays: the store covers vv already (it ignores those ops if
                        # they are delivered), and the next transfer (the peer sees us behind) installs it
                        log.exception("node %s: the snapshot after state transfer %d failed", self.id,
                                      msg.transfer)
                        continue
                    log.info("node %s joined state transfer %d from %s; version vector now %s", self.id,
                             msg.transfer, msg.sender, vv_text(self.store.vv).decode())
                    self._run(self.core.installed(dict(vv), msg.sender))
                await asyncio.sleep(0)
        finally:
            self._joining = False

    def _install_state(self, msg: State) -> None:
        """Join a peer's whole store into ours; make it durable with a snapshot; resume delivery."""
        changed = self.store.join(msg.blob)
        self.stats["state_transfers_received"] += 1
        self.applied_index += 1
        if changed:
            materialize(self.store, self.sm, changed)
            for key in changed:
                self.sm.changes.touch(key, self.applied_index)
        self.snapshotter.stop()  # a child snapshotting the state before the join would cover less
        self._take_snapshot()  # the joined state is durable before the replica moves its vv
        log.info("node %s joined a state transfer from %s; version vector now %s", self.id, msg.sender,
                 vv_text(self.store.vv).decode())
        self._run(self.core.installed(dict(msg.vv), msg.sender))  # the sender has msg.vv, not all we have

    # -- the disk guard (runtime/base.py) ----------------------------------------------------------
    def _on_disk_blocked(self) -> None:
        self.fail_held(encode_reply(self.disk_inflight_error(), False))
        self.sends.clear()  # nothing the failed batch holds leaves the node (``_committed``: once it resumes)
        self._packed.clear()
        self._flush_clients()

    def _on_disk_resumed(self) -> None:
        self._flush()
        self._run(self.core.tick())

    # -- snapshots (runtime/state_snapshots.py) ------------------------------------------------------
    def _state_blob(self) -> bytes:
        self._seal()  # the snapshot's vv covers every write the store holds
        self.store.prune_contexts()
        return self.store.snapshot()

    def _commit_pending(self) -> None:
        self._seal()
        self.wal.commit()  # every op is in the WAL's buffer as soon as it is applied (Persist first)

    # -- timers ------------------------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        interval = self.options.heartbeat_ms / 1000
        next_expiry = 0.0
        while True:
            await asyncio.sleep(min(interval, 0.02) if (self.ack_waiters or self.session_reads) else interval)
            now = time.monotonic()
            if self.ack_waiters:
                self._release_ack_waiters(now)
            if self.session_reads:
                self._release_session_reads(now)
            self._flush_clients()
            self.rest_change_index()
            if self.disk_error is not None:
                continue
            self._seal()  # the tick may resend ops: this node's are stamped first
            self._run(self.core.tick())
            if self.receiver.incoming:
                self.receiver.drop_covered(self.core.needs_state)  # caught up by another way (transfer.py 6)
            if self.store.kctx and now >= self._prune_at and not self._chunks_in:
                self._prune_at = now + 1.0  # key contexts the vv now covers (a transfer's late keys)
                self.store.prune_contexts()
            if now >= next_expiry:
                next_expiry = now + 0.1
                due = self.sm.expired_keys(wall_ms(), 200)
                if due:
                    self.stats["expired_deletes"] += self._delete_keys(due)

    # -- INFO ----------------------------------------------------------------------------------------
    def info(self, wanted: list[str]) -> str:
        self._seal()  # the version vector and applied index shown cover every write made
        sections = self.info_sections()
        sections["persistence"] = self.persistence_info(self.snapshot_index)
        core, vv = self.core, self.store.vv
        rep = ["role:master", f"replikv_node:{self.id}", "replikv_mode:multi-leader",
               f"replikv_topology:{self.options.topology}", f"replikv_conflicts:{self.options.conflicts}",
               f"replikv_version_vector:{vv_text(vv).decode()}", f"replikv_applied_index:{self.applied_index}",
               f"master_repl_offset:{self.applied_index}", f"replikv_ops_received_twice:{core.duplicates}",
               f"replikv_ops_waiting_for_deps:{len(core.pending)}",
               f"replikv_state_transfers_out:{len(self._exports)}",
               f"replikv_state_transfers_in:{self.receiver.in_progress()}",
               f"replikv_state_chunks_queued:{len(self._chunks_in)}",
               f"replikv_keys_awaiting_ops:{len(self.store.kctx)}",
               f"replikv_peer_send_interval_ms:{self._send_every * 1000:g}",  # grows with load (_send_peers)
               f"connected_slaves:{sum(1 for p in self.peer_ids if self.transport.connected(p))}"]
        for i, peer in enumerate(self.peer_ids):
            known = core.known.get(peer, {})
            lag = sum(max(0, s - known.get(o, 0)) for o, s in vv.items())
            addr = self.config.nodes[peer]
            state = "online" if self.transport.connected(peer) else "offline"
            rep.append(f"peer{i}:id={peer},ip={addr.host},port={addr.port},state={state},lag_ops={lag},"
                       f"vv={vv_text(known).decode().replace(',', ';')}")
        sections["replication"] = rep
        sections["keyspace"] = [self.sm.keyspace_info()] if self.sm.dbsize else []
        return render_info(sections, wanted)


def _is_write(argv: list[bytes]) -> bool:
    spec = lookup(argv[0])
    return spec is not None and "write" in spec.flags

