"""LeaderFollowerRunner: one replikv node process in leader-follower mode.

The thin asyncio shell around the pure parts: it feeds client commands to the
state machine (``kv/``) and the replication core (``core/shipping``), carries
out the core's effects in order (WAL append, then commit = group fsync, then
sends), resolves waiting replies, and talks to peers over
``runtime/tcp_transport``.

Rules it keeps:
- Group commit: writes arriving in one loop iteration form one batch: one WAL
  record, one ``write`` (+ one fsync under ``--fsync always``), one frame per
  follower. A write's reply leaves only after its batch is in the WAL (and,
  for semi-sync/sync, after enough followers acked it durable).
- Persist before send: the WAL commit of a batch precedes every Send that the
  same effects list returned (followers ack only durable entries).
- The leader decides expiry: it logs DEL for expired keys; replicas never
  consult their clock to change data.
- A WAL that cannot be written freezes the node (runtime/base.py, "disk
  guard"): writes get MISCONF, the replies held for the failed batch get an
  error saying it may still be applied, no Send of that batch leaves, peer
  frames are dropped and the core is not ticked; on resume the node redoes
  its handshake with every peer (a follower asks for a sync from its last
  index, the leader probes each follower), so nothing is sent twice or lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Generator
from typing import Any

import msgpack

from replikv.config import AckLevel, ClusterConfig, ConfigError
from replikv.core.invariant import InvariantViolation
from replikv.core.replies import NULL_ARRAY, OK, RespError
from replikv.core.resp import OK_REPLY, encode_reply
from replikv.core.shipping import messages as m
from replikv.core.shipping.effects import (
    ApplyEntries, HandOverDone, PersistEntries, PersistMeta, RoleChanged, Send, SendSnapshot, TruncateLog,
)
from replikv.core.shipping.log import ShippingLog
from replikv.core.shipping.node import LEADER, SNAPSHOT, ShippingNode
from replikv.core.shipping.snapshot_stream import ABORT, IGNORE, chunk_action
from replikv.kv.commands import lookup
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from replikv.kv.watch import ChangeIndex
from replikv.runtime.base import LOADING, BaseRunner, wall_ms
from replikv.runtime.info import render as render_info
from replikv.runtime.memory import return_freed_memory
from replikv.runtime.pending import SessionReads
from replikv.runtime.shipping_app import app_snapshot, replay, restore_app, restore_app_steps
from replikv.runtime.resp_server import OUT_FLUSH_BYTES, ClientConnection, Slot
from replikv.storage.errors import CorruptSnapshotError, WalFailedError
from replikv.storage.snapshot import (
    SnapshotReader, SnapshotWriter, load_latest_snapshot, map_snapshot_file, releasing_pages, write_snapshot,
)

log = logging.getLogger("replikv.node")

SNAPSHOT_CHUNK = 1024 * 1024
# how every Ack frame starts (msgpack: a 4-element array, then the Ack's tag)
_ACK_HEAD = m.encode(m.Ack(sender="", epoch=0, durable_index=0))[:2]


class Waiter:
    """A reply that waits for ``k`` followers to hold ``index`` (or a deadline)."""

    __slots__ = ("index", "k", "deadline", "slot", "data", "kind")

    def __init__(self, index: int, k: int, deadline: float, slot: Slot, data: bytes, kind: str) -> None:
        self.index, self.k, self.deadline, self.slot, self.data, self.kind = index, k, deadline, slot, data, kind


def _ms() -> int:
    return time.monotonic_ns() // 1_000_000


class LeaderFollowerRunner(BaseRunner):
    def __init__(self, config: ClusterConfig, node_id: str) -> None:
        super().__init__(config, node_id)
        opts = self.options
        self.peer_ids = [p for p in config.nodes if p != node_id]
        if self.default_ack.kind == "semi-sync" and self.default_ack.replicas > len(self.peer_ids):
            raise ConfigError(f"--ack {opts.ack} needs more followers than the {len(self.peer_ids)} this cluster has")
        self.batch: list[list[list[bytes]]] = []
        self.batch_acks: list[int] | None = None  # per entry k, only once some k > 0
        self.batch_base = 0  # the log's last index when the current batch started
        self.ack_waiters: list[Waiter] = []
        self._timed_waiters = 0  # ack waiters with a deadline (WAIT n 0 has none)
        self._released_at: tuple[object, ...] = ()  # what _release_ack_waiters last saw
        self.read_waiters = SessionReads(self.options.session_timeout_ms, "this follower")  # payload: argv
        self.flush_scheduled = False
        self.snapshot_receiver: SnapshotWriter | None = None
        self.snapshot_meta: tuple[int, int, list[list[int]]] | None = None
        # a full resync's snapshot being decoded in steps (_install_step), and the peers' frames held meanwhile
        self._installing: Generator[None, None, tuple[StateMachine, list[list[int]]]] | None = None
        self._held_frames: list[tuple[str, bytes]] = []
        self.failover_waiter: tuple[Slot, float] | None = None
        self.stats.update({"role_changes": 0, "promotions_to_leader": 0,
                           "discarded_writes": 0, "discarded_acked_writes": 0, "full_resyncs_sent": 0,
                           "full_resyncs_completed": 0, "full_resync_install_slices": 0,
                           "partial_resyncs": 0})
        self._wal_bytes_after_snapshot = 0  # WAL bytes a snapshot could not drop (the open segment)
        self._resyncs: set[str] = set()  # followers a snapshot is being streamed to
        self._next_tick = 0.0
        self._write_ctx = ApplyContext(0, self.id)
        self._handover_deadline = 0.0
        self._deferred: list[Any] = []  # effects of followers' acks, carried out by the next _run
        self._deferred_scheduled = False
        self._recover()

    # -- start-up ---------------------------------------------------------
    def _recover(self) -> None:
        """Load meta, the latest snapshot and the WAL tail (BaseRunner.open_storage); rebuild the state."""
        meta, snap, records = self.open_storage()
        self.sm = StateMachine()
        epoch_starts: list[list[int]] = []
        base_index = base_epoch = 0
        if snap is not None:
            self.sm, epoch_starts = restore_app(snap.data)
            base_index, base_epoch = snap.index, snap.epoch
        self.sm.limits = self.options  # bounds a script's logged effects (kv/types/scripting.py)
        shipping_log = ShippingLog(base_index, base_epoch, epoch_starts)
        opts = self.options
        replayed = 0
        for first_index, entries in records:
            if first_index != shipping_log.last_index + 1:
                raise RuntimeError(f"WAL gap: record at {first_index} after index {shipping_log.last_index}")
            shipping_log.append(entries)
            replay(self.sm, entries)
            replayed += len(entries)
        self.sm.changes = ChangeIndex(shipping_log.last_index)  # WATCHes before a restart abort
        if not meta:  # a new node (open_storage refused one with data but no meta)
            leader = self.config.initial_leader
            meta = {"epoch": 1, "leader": leader, "led_epochs": [1] if leader == self.id else []}
            self.meta.save(meta)
        self.core = ShippingNode(self.id, self.peer_ids, epoch=int(meta["epoch"]), leader=str(meta["leader"]),
                                 log=shipping_log, led_epochs=list(meta.get("led_epochs", [])),
                                 sync_retry_ms=3 * opts.heartbeat_ms,
                                 repl_backlog_bytes=opts.repl_backlog_bytes,
                                 max_lag_bytes=opts.repl_max_lag_bytes, lag_stall_ms=opts.repl_lag_stall_ms,
                                 frame_bytes=opts.max_command_bytes)
        log.info("node %s recovered: snapshot at %d, %d WAL entries replayed, last index %d, epoch %d, role %s",
                 self.id, base_index, replayed, shipping_log.last_index, self.core.epoch, self.core.role)

    async def start(self) -> None:
        await self.start_io(self._on_peer_connected, [self._heartbeat_loop])
        log.info("node %s serving RESP on %s:%d, peers on %s:%d", self.id, self.address.host,
                 self.address.port, self.address.host, self.address.peer_port)

    async def stop(self) -> None:
        self.snapshotter.stop()
        await self.stop_io()
        if self.batch:
            self._flush()
        self._save_meta()
        self.wal.close()  # writes what is buffered and fsyncs (or, disk still full, says what it could not)

    # -- levels -------------------------------------------------------------
    def ack_replicas(self, level: AckLevel) -> int:
        if level.kind == "async":
            return 0
        if level.kind == "sync":
            return len(self.peer_ids)
        return level.replicas

    @property
    def is_leader(self) -> bool:
        return self.core.role == LEADER

    # -- what commands.py asks of every mode --------------------------------------
    def exec_transaction(self, conn: ClientConnection, queued: list[list[bytes]]) -> None:
        """EXEC: a block with a write is one log entry; a read-only block runs here."""
        if any("write" in lookup(a[0]).flags for a in queued):  # type: ignore[union-attr]
            self._write(conn, queued, transaction=True)
        elif conn.watch and self.sm.changes.any_changed(conn.watch.items()):
            conn.reply(NULL_ARRAY)
        else:
            replies, _ = self.sm.execute_transaction(queued, ApplyContext(wall_ms(), self.id))
            conn.reply(replies)

    def watch_position(self, key: bytes | None = None) -> int:
        """The index of the last write this node's state holds (a leader's
        executed batch included)."""
        return self.batch_base + len(self.batch) if self.batch else self.core.log.last_index

    def wait_replicas(self, conn: ClientConnection, numreplicas: int, timeout_ms: int) -> None:
        """WAIT: reply with the followers holding this connection's last write,
        at once when enough do, else when they do or at the deadline."""
        index = conn.session_index
        held = self.core.replicas_holding(index) if index else len(self.peer_ids)
        if held >= numreplicas or not index:
            conn.reply(held)
            return
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else 0.0
        self.ack_waiters.append(Waiter(index, numreplicas, deadline, conn.slot(), b"", "wait"))
        self._timed_waiters += bool(deadline)

    def waiting_clients(self) -> int:
        return len({id(s.conn) for s in (*(w.slot for w in self.ack_waiters), *self.read_waiters.slots())})

    def role_reply(self) -> list[Any]:
        core = self.core
        return [core.role.encode(), core.epoch, core.leader.encode(), core.log.last_index]

    def take_snapshot(self) -> int:
        return self._take_snapshot()

    # -- writes ----------------------------------------------------------------
    def _write_one(self, conn: ClientConnection, argv: list[bytes]) -> None:
        """The hot path: one write command from a client."""
        core = self.core
        if core.role != LEADER or core.handing_over_to or self.disk_error is not None:
            self._write(conn, [argv], transaction=False)
            return
        reply, cmds = self.sm.execute(argv, self._clock())
        data = OK_REPLY if reply is OK else encode_reply(reply, conn.resp3)
        if cmds is None:
            conn.reply_bytes(data)
        else:
            self._logged(conn, cmds, data)

    def _clock(self) -> ApplyContext:
        """The context of a client write run now: one per millisecond (building one per
        write would cost ~0.3 µs)."""
        now = time.time_ns() // 1_000_000
        ctx = self._write_ctx
        if ctx.now_ms != now:
            ctx = self._write_ctx = ApplyContext(now, self.id)
        return ctx

    def _write_run(self, conn: ClientConnection, spec: Any, run: list[list[bytes]]) -> int:
        """A pipelined run of one write (BaseRunner.execute_batch), run by the leader as
        ``_write_one`` runs each, for an async write (``conn.write_k == 0``; one waiting for
        replicas takes ``_write_one``): each command executed and enqueued in order (its own
        log entry, as ``_logged`` makes one), their replies held together until the WAL
        commit of the batch; a command that logs nothing (refused) is answered in its place,
        after the replies held before it. The run's commands arrived in one read: they run
        at one clock reading."""
        core = self.core
        if core.role != LEADER or core.handing_over_to or self.disk_error is not None or conn.write_k:
            return 0
        ctx = self._clock()
        execute, enqueue, resp3 = self.sm.execute, self._enqueue, conn.resp3
        held: list[bytes] = []
        index = 0
        for argv in run:
            try:
                reply, cmds = execute(argv, ctx)
            except InvariantViolation:
                raise
            except Exception as exc:  # noqa: BLE001 - a bug: this reply says so, the run goes on
                reply, cmds = self.internal_error(spec, exc), None
            data = OK_REPLY if reply is OK else encode_reply(reply, resp3)
            if cmds is None:
                if held:
                    self.hold_all_until_commit(conn, held)
                    held = []
                conn.reply_bytes(data)
            else:
                index = enqueue(cmds)
                held.append(data)
        if held:
            self.hold_all_until_commit(conn, held)
        if index:
            conn.session_index = index
            self.hold_writer(conn)  # rule 10
        return len(run)

    def _write(self, conn: ClientConnection, commands: list[list[bytes]], transaction: bool) -> None:
        if self.disk_error is not None:
            conn.reply(self.disk_refusal())
            return
        if not self.is_leader:
            self.forwarder.forward(conn, self.core.leader, commands, transaction)
            return
        if self.core.writes_paused:
            conn.reply(RespError("TRYAGAIN writes are paused while leadership is handed over"))
            return
        ctx = ApplyContext(wall_ms(), self.id)
        if transaction:
            if conn.watch and self.sm.changes.any_changed(conn.watch.items()):
                conn.reply(NULL_ARRAY)  # a WATCHed key changed since (kv/watch.py)
                return
            replies, cmds = self.sm.execute_transaction(commands, ctx)
            data = encode_reply(replies, conn.resp3)
        else:
            reply, cmds = self.sm.execute(commands[0], ctx)
            data = encode_reply(reply, conn.resp3)
        if cmds is None:
            conn.reply_bytes(data)
        else:
            self._logged(conn, cmds, data)

    def _logged(self, conn: ClientConnection, cmds: list[list[bytes]], data: bytes) -> None:
        """Log one entry for ``conn`` and hold its reply until its ack level is met.

        An async write's reply is held on the connection until the batch's
        WAL commit (``conn.held``); one that waits for replicas takes a slot.
        """
        k = conn.write_k
        index = self._enqueue(cmds, k)
        conn.session_index = index
        self.hold_writer(conn)  # rule 10
        if k == 0:
            self.hold_until_commit(conn, data)
        else:
            deadline = time.monotonic() + self.options.ack_timeout_ms / 1000
            self.ack_waiters.append(Waiter(index, k, deadline, conn.slot(), data, "write"))
            self._timed_waiters += 1

    def _enqueue(self, cmds: list[list[bytes]], k: int = 0) -> int:
        """Add one entry (waiting for ``k`` replicas) to the batch; returns its index."""
        batch = self.batch
        if not batch:
            self.batch_base = self.core.log.last_index
            self._schedule_flush()
        if k or self.batch_acks is not None:
            if self.batch_acks is None:
                self.batch_acks = [0] * len(batch)
            self.batch_acks.append(k)
        batch.append(cmds)
        index = self.batch_base + len(batch)
        self.sm.changes.touch_commands(cmds, index)
        return index

    def _flush(self) -> None:
        """Group commit: log the batch, fsync once, ship, then release replies."""
        self.flush_scheduled = False
        if self.batch:
            batch, acks, self.batch, self.batch_acks = self.batch, self.batch_acks, [], None
            _, effects = self.core.propose(batch, _ms(), acks)
            self._run(effects)
        else:
            self._commit_and_send([])

    def _run(self, effects: list[Any]) -> None:
        """Carry out effects: storage first, then (after one commit) the sends. The effects
        of followers' acks stepped since the last call (``_on_frame``) come first, in the
        order the core returned them."""
        if self._deferred:
            effects, self._deferred = self._deferred + effects, []
        sends: list[Send] = []
        for effect in effects:
            match effect:
                case PersistEntries():
                    try:  # buffers only; it raises once the WAL failed for good
                        self.wal.append(effect.first_index, effect.packed, effect.count)
                    except WalFailedError as exc:
                        self._disk_failed(exc)
                        return
                case Send():
                    sends.append(effect)
                case ApplyEntries():
                    ctx = ApplyContext(None, self.core.leader)
                    self.sm.apply_entries(effect.entries, effect.first_index, ctx)
                case PersistMeta():
                    self._save_meta(effect)
                case TruncateLog():
                    self._truncate(effect)
                case SendSnapshot():
                    self.loop.create_task(self._send_snapshot(effect.to, effect.min_index))
                case RoleChanged():
                    self._role_changed(effect)
                case HandOverDone():
                    self._handover_done(effect)
        self._commit_and_send(sends)

    def _commit_and_send(self, sends: list[Send]) -> None:
        """Commit the WAL, then release replies it made durable, then send.

        Invariant: a held reply belongs to an entry of the current batch or
        of one already committed; while a batch is still being gathered
        (``self.batch`` non-empty: its ``_flush`` is scheduled) nothing held
        is released, since its entries are not in the WAL yet. A commit that
        fails releases nothing and sends nothing (the disk guard).
        """
        if self.disk_error is not None:  # frozen: entries queue in the WAL's buffer, nothing leaves
            self._on_disk_blocked()
            return
        try:
            self.wal.commit()
        except WalFailedError as exc:
            self._disk_failed(exc)
            return
        if not self.batch:
            self.release_committed()
        transport = self.transport
        send = transport.send
        last_ack: dict[str, bytes] = {}
        lost: set[str] = set()
        window = self.core.window_bytes
        for effect in sends:
            msg = effect.msg
            if isinstance(msg, m.Ack):  # only the newest ack per peer matters
                last_ack[effect.to] = m.encode(msg)
            elif effect.to in lost:
                continue
            elif isinstance(msg, m.Append) and msg.count and transport.buffered_bytes(effect.to) > window:
                # more than the core's window still queued to it (sent before a SyncRequest reset
                # the window): not another copy behind it; the follower asks again once it has read
                # the queue (rule 5's bound on what one follower costs, held by the driver)
                lost.add(effect.to)
            elif not send(effect.to, m.encode(msg)):
                lost.add(effect.to)
        for peer in lost:  # the follower resyncs once it hears from us again
            self.core.peer_disconnected(peer)
        for peer, payload in last_ack.items():
            send(peer, payload)
        if self.ack_waiters:
            self._release_ack_waiters()
        if self.read_waiters:
            self._release_read_waiters()
        self._flush_clients()
        self.check_backpressure()
        if self.wal.size_bytes - self._wal_bytes_after_snapshot > self.options.snapshot_bytes:
            self._snapshot_in_background()

    def lagging_follower(self) -> str:
        return self.core.lagging_follower(_ms())  # rule 10

    def log_over_bound(self) -> bool:
        return self.core.log_over(self.options.max_log_bytes)  # rule 11

    def _release_ack_waiters(self) -> None:
        """Answer the waiters the followers' acks now satisfy; nothing to do (and no
        scan) unless the log or an ack moved since the last time."""
        core = self.core
        durable = self.wal.written_index  # fsynced too under --fsync always (commit fsyncs)
        progress = (durable, self.is_leader, len(self.ack_waiters),
                    *(pr.match_index for pr in core.progress.values()))
        if progress == self._released_at:
            return
        self._released_at = progress
        keep: list[Waiter] = []
        for w in self.ack_waiters:
            if w.kind == "wait":
                held = core.replicas_holding(w.index) if self.is_leader else 0
                if held >= w.k:
                    w.slot.resolve(encode_reply(held, w.slot.conn.resp3))
                else:
                    keep.append(w)
            elif w.index <= durable and self.is_leader and core.ack_watermark(w.k) >= w.index:
                w.slot.resolve(w.data)
            else:
                keep.append(w)
        self.ack_waiters = keep

    def _expire_waiters(self) -> None:
        """Answer the waiters whose deadline passed; drop those of gone clients.

        The scan of ack waiters runs only when one has a deadline or a client
        went away since the last one: 200k ``WAIT n 0`` waiters cost nothing
        while nothing happens."""
        now = time.monotonic()
        if self._timed_waiters or self.clients_gone:
            self._expire_ack_waiters(now)
        self.read_waiters.expire(now, self.core.log.last_index)
        self.forwarder.expire(now)
        self._flush_clients()

    def _expire_ack_waiters(self, now: float) -> None:
        self.clients_gone = False
        keep: list[Waiter] = []
        for w in self.ack_waiters:
            if w.slot.conn.closing:
                continue  # its client is gone (WAIT n 0 would otherwise wait forever)
            if w.deadline and now >= w.deadline:
                if w.kind == "wait":
                    held = self.core.replicas_holding(w.index) if self.is_leader else 0
                    w.slot.resolve(encode_reply(held, w.slot.conn.resp3))
                else:
                    held = self.core.replicas_holding(w.index) if self.is_leader else 0
                    w.slot.resolve(encode_reply(RespError(
                        f"NOREPLICAS write logged at index {w.index} reached {held} of {w.k} required replicas "
                        f"within {self.options.ack_timeout_ms} ms; it is applied on the leader and may still "
                        f"be applied on the replicas"), w.slot.conn.resp3))
            else:
                keep.append(w)
        self.ack_waiters = keep
        self._timed_waiters = sum(1 for w in keep if w.deadline)

    # -- forwarding (runtime/forwarding.py) ---------------------------------------
    @property
    def leader_name(self) -> str:
        return self.core.leader

    def run_forwarded(self, proxy: Any, commands: list[list[bytes]], transaction: bool,
                      client: tuple[int, int] | None) -> None:
        """Leader side: a follower's client write, run as if it were local."""
        if not self.is_leader:
            proxy.reply(RespError(f"TRYAGAIN {self.id} is no longer the leader"))
        else:
            self._write(proxy, commands, transaction)

    # -- reads ------------------------------------------------------------------
    def _read(self, conn: ClientConnection, argv: list[bytes]) -> None:
        if self.is_leader:
            conn.reply(self.sm.read(argv, wall_ms()))
            return
        if self._installing is not None:
            conn.reply(RespError(LOADING))
            return
        level = conn.read_level
        if level == "bounded":
            if self.refuse_stale(conn):
                return
        elif level == "session" and conn.session_index > self.core.log.last_index:
            self.read_waiters.add(conn.session_index, conn, argv, time.monotonic())
            return
        conn.reply(self.sm.read(argv, wall_ms()))

    def _read_run(self, conn: ClientConnection, spec: Any, run: list[list[bytes]]) -> int:
        """A pipelined run of one read (BaseRunner.execute_batch), served by the leader as
        ``_read`` serves each (``StateMachine.read``; the batch checked the arity): one clock
        reading for the run (its commands arrived in one read), the replies handed to the
        connection together, or every ``OUT_FLUSH_BYTES`` of them as ``reply_bytes`` writes
        a long pipeline of big replies as it goes. A follower serves them one by one (its
        read levels)."""
        if not self.is_leader:
            return 0
        fn, sm, now, resp3 = spec.read, self.sm, wall_ms(), conn.resp3
        replies: list[bytes] = []
        size = 0
        for done, argv in enumerate(run, 1):
            try:
                data = encode_reply(fn(sm, argv, now), resp3)
            except RespError as err:
                data = encode_reply(err, resp3)
                conn.count_error(data)
            except InvariantViolation:
                raise
            except Exception as exc:  # noqa: BLE001 - a bug: this reply says so, the run goes on
                data = encode_reply(self.internal_error(spec, exc), resp3)
                conn.count_error(data)
            replies.append(data)
            size += len(data)
            if size > OUT_FLUSH_BYTES:
                conn.reply_all(replies)
                if conn.closing:  # over its output limit: the rest of the read is not run
                    return done
                replies, size = [], 0
        conn.reply_all(replies)
        return len(run)

    def _release_read_waiters(self) -> None:
        self.read_waiters.release(self.core.log.last_index, lambda argv: self.sm.read(argv, wall_ms()))

    def _staleness_ms(self) -> int:
        """Upper bound on how far this follower's data trails the leader's."""
        now = _ms()
        core = self.core
        if core.last_heard_ms < 0:
            return 1 << 31
        silent = now - core.last_heard_ms
        lag = core.lag_ms(now)
        return max(lag, silent - 2 * self.options.heartbeat_ms) if silent > 2 * self.options.heartbeat_ms else lag

    # -- peers -------------------------------------------------------------------
    def _on_frame(self, peer: str, payload: bytes) -> None:
        """A peer's frame.

        A follower's Ack in this leader's epoch is stepped at once, and its effects are
        carried out by the next ``_run`` of this loop iteration (``_run_deferred`` at the
        latest): one commit-and-send for all the acks of an iteration, not one each. Such
        an Ack cannot make the leader step down, so the batch being gathered is not logged
        before it; every other frame first has the batch logged (below), and so does an
        Ack during a hand-over (the target must not be told it caught up while executed
        writes are still outside the log). A shared service's frame (forwarding, Pub/Sub)
        cannot make it step down either: it is taken before the batch is logged."""
        if self._installing is not None:  # stepped once the snapshot is in place (_install_step)
            self._held_frames.append((peer, payload))
            self.core.snapshot_frame(_ms())
            return
        self.frames_in += 1
        msg = None
        if payload.startswith(_ACK_HEAD) and self.disk_error is None and self.core.role == LEADER:
            msg = self.peer_message(peer, payload, m.decode)
            if msg is None:
                return
            if type(msg) is m.Ack and msg.epoch == self.core.epoch and not self.core.handing_over_to:
                self._deferred += self.core.step(msg, _ms())
                if not self._deferred_scheduled:
                    self._deferred_scheduled = True
                    self.loop.call_soon(self._run_deferred)
                return
        if msg is None and self.service_frame(peer, payload):
            # a shared service's frame (a forwarded command, its reply, Pub/Sub) never makes
            # this leader step down: a forwarded write joins the batch being gathered as a local
            # client's does (logging the batch first made every forwarded write a batch of its
            # own); refused with MISCONF while the disk guard holds
            return
        if self.batch and self.disk_error is None:
            # Log what this leader already executed before any message can make
            # it step down: its state machine holds those writes, so they must
            # be in its log too (a later truncation then rolls them back).
            self._flush()
        if msg is None:
            msg = self.peer_message(peer, payload, m.decode)
            if msg is None:
                return
        match msg:
            case _ if self.disk_error is not None:
                return  # frozen: the peer sees a silent node; we resync on resume
            case m.SnapshotBegin() | m.SnapshotChunk():
                self._on_snapshot_frame(msg)
            case _:
                self._run(self.core.step(msg, _ms()))

    def _run_deferred(self) -> None:
        """The end of a loop iteration in which acks were stepped: carry out their effects
        if no ``_run`` did meanwhile."""
        self._deferred_scheduled = False
        if self._deferred:
            self._run([])

    def _on_peer_connected(self, peer: str) -> None:
        self._run(self.core.peer_connected(peer))

    # -- the disk guard (runtime/base.py) ----------------------------------------------
    def _on_disk_blocked(self) -> None:
        """Answer what waited on the batch the WAL could not write; freeze."""
        err = encode_reply(self.disk_inflight_error(), False)
        self.fail_held(err)
        written = self.wal.written_index
        keep: list[Waiter] = []
        for w in self.ack_waiters:
            if w.kind == "write" and w.index > written:
                w.slot.resolve(err)
            else:
                keep.append(w)
        self.ack_waiters = keep
        self._flush_clients()

    def _on_disk_resumed(self) -> None:
        """Redo the handshake with every peer: what was dropped while frozen is resent from the log."""
        self._commit_and_send([])
        for peer in self.peer_ids:
            self._run(self.core.peer_disconnected(peer))
            if self.transport.connected(peer):
                self._run(self.core.peer_connected(peer))

    def peer_receiving(self, peer: str) -> None:
        """Part of a frame from ``peer`` arrived: if it is the leader, it is answering
        (core rule 4, ``ShippingNode.receiving``)."""
        self.core.receiving(peer, _ms())

    def _on_peer_disconnected(self, peer: str) -> None:
        self._run(self.core.peer_disconnected(peer))
        if peer == self.core.leader:
            self.forwarder.leader_lost()

    def _role_changed(self, effect: RoleChanged) -> None:
        log.warning("node %s is now %s in epoch %d (leader %s)", self.id, effect.role, effect.epoch,
                    effect.leader or "unknown")
        self.stats["role_changes"] += 1
        if effect.role == LEADER:
            self.stats["promotions_to_leader"] += 1  # a failover that made this node the leader
        if effect.role != LEADER:
            # Writes waiting for follower acks can no longer be confirmed by us.
            for w in self.ack_waiters:
                if w.kind == "write":
                    w.slot.resolve(encode_reply(RespError(
                        f"NOREPLICAS {self.id} lost leadership (epoch {effect.epoch}) before the write at index "
                        f"{w.index} reached its replicas; it may be discarded"), w.slot.conn.resp3))
            self.ack_waiters = [w for w in self.ack_waiters if w.kind != "write"]
            self._flush_clients()

    def _save_meta(self, effect: PersistMeta | None = None) -> None:
        core = self.core
        self.meta.save({"epoch": effect.epoch if effect else core.epoch,
                        "leader": effect.leader if effect else core.leader,
                        "led_epochs": effect.led_epochs if effect else core.led_epochs})

    def _truncate(self, effect: TruncateLog) -> None:
        """Drop a divergent suffix: WAL first, then rebuild the state from snapshot + log."""
        self.wal.truncate_after(effect.to_index)
        self.stats["discarded_writes"] += effect.discarded
        self.stats["discarded_acked_writes"] += effect.discarded_acked
        log.warning("node %s discarded %d log entries after index %d that the new leader never had; "
                    "%d were written while this node led, %d of them had been acknowledged to clients",
                    self.id, effect.discarded, effect.to_index, effect.discarded_own, effect.discarded_acked)
        self._rebuild_state()

    def _rebuild_state(self) -> None:
        snap = load_latest_snapshot(self.snapshot_dir)
        sm = restore_app(snap.data)[0] if snap is not None else StateMachine()
        start = snap.index if snap is not None else 0
        core_log = self.core.log
        if start != core_log.snapshot_index:
            raise RuntimeError(f"snapshot at {start} does not match the log's {core_log.snapshot_index}")
        replay(sm, core_log.slice(start + 1, core_log.last_index - start))
        sm.changes = ChangeIndex(core_log.last_index)  # a rolled-back state: older WATCHes abort
        sm.limits = self.options
        self.sm = sm

    # -- snapshots ------------------------------------------------------------------
    def _take_snapshot(self) -> int:
        """Snapshot the state at the last index now, on the loop (REPLIKV SNAPSHOT,
        a full resync that needs one: Redis's SAVE); compact WAL and memory log."""
        if self.snapshotter.running:
            raise RespError("ERR a background snapshot is in progress; try again when it is done")
        if self._installing is not None:
            raise RespError(LOADING)
        if self.batch:
            self._flush()
        core_log = self.core.log
        index = core_log.last_index
        self.wal.commit()
        self.wal.fsync_now()
        data = app_snapshot(core_log.epoch_starts, self.sm)
        write_snapshot(self.snapshot_dir, index, core_log.epoch_at(index), data)
        log.info("node %s took a snapshot at index %d (%d bytes)", self.id, index, len(data))
        self._compact(index)
        return index

    def background_snapshot(self) -> bool:
        """BGSAVE: a snapshot in a forked child now; False if one cannot start."""
        return self._snapshot_in_background()

    def _snapshot_in_background(self, for_resync: bool = False) -> bool:
        """The WAL grew by --snapshot-bytes (or a full resync needs a snapshot newer
        than the latest): snapshot in a forked child (Redis's BGSAVE,
        runtime/snapshotter.py) and compact when it is durable. Not while a
        follower is being resynced from the current snapshot (the core's rule 5)."""
        if (self.disk_error is not None or (self.core.full_resync_in_progress and not for_resync)
                or self.snapshot_receiver is not None or self._installing is not None):  # the leader's replaces it
            return False
        if self.batch:
            self._flush()  # the state machine holds the batch's writes: log them before the fork
        core_log = self.core.log
        index = core_log.last_index
        epoch_starts, sm = core_log.epoch_starts, self.sm  # as of the fork, in the child's copy
        return self.snapshotter.start(index, core_log.epoch_at(index),
                                      lambda: app_snapshot(epoch_starts, sm), self._compact)

    def _compact(self, index: int) -> None:
        """A snapshot covering ``index`` is durable: drop the memory log and the WAL
        segments before it, except the replication backlog (the core's rule 9):
        the entries a lagging follower still needs stay in memory and on disk."""
        if index > self.core.log.snapshot_index:
            self.wal.drop_before(self.core.compact(index))
            self._wal_bytes_after_snapshot = self.wal.size_bytes
        return_freed_memory()  # the compacted entries, a SAVE's serialized state (runtime/memory.py)

    async def _send_snapshot(self, peer: str, min_index: int) -> None:
        """Full resync: stream the latest snapshot (the log's snapshot_index) to ``peer``, or a
        new one if that does not cover ``min_index`` (SendSnapshot); one stream per
        follower, a repeated request while it runs is ignored."""
        if peer in self._resyncs:
            return
        self._resyncs.add(peer)
        try:
            await self._stream_snapshot(peer, min_index)
        except CorruptSnapshotError as e:
            log.error("node %s: full resync of %s stopped: %s", self.id, peer, e)
        finally:
            self._resyncs.discard(peer)

    async def _stream_snapshot(self, peer: str, min_index: int) -> None:
        """The snapshot file is read chunk by chunk (never whole, never on the loop
        for long) with back-pressure on the connection, and its checksum is
        verified before the last chunk leaves."""
        while True:  # the latest snapshot: the one a child writes, or a new one
            while self.snapshotter.running:
                await asyncio.sleep(0.05)
            reader = SnapshotReader.open_latest(self.snapshot_dir)
            if reader is not None and reader.index == self.core.log.snapshot_index and reader.index >= min_index:
                break
            if reader is not None:
                reader.close()
            if not self._snapshot_in_background(for_resync=True):
                self._take_snapshot()  # the child could not start (a recent failure): on the loop
        try:
            if self.core.progress[peer].state != SNAPSHOT:
                return  # the follower went away or was fenced while the snapshot was written
            self.stats["full_resyncs_sent"] += 1
            first = reader.chunk(0, SNAPSHOT_CHUNK)
            log.info("node %s: full resync of %s from snapshot at %d (%d bytes)", self.id, peer, reader.index,
                     reader.length)
            send = self.transport.send
            if not send(peer, m.encode(m.SnapshotBegin(
                    sender=self.id, epoch=self.core.epoch, index=reader.index, snapshot_epoch=reader.epoch,
                    size=reader.length, epoch_starts=_epoch_starts(first, reader)))):
                return
            offset = 0
            while True:
                chunk = first if offset == 0 else reader.chunk(offset, SNAPSHOT_CHUNK)
                last = offset + len(chunk) >= reader.length
                if last:
                    reader.check()
                if not send(peer, m.encode(m.SnapshotChunk(sender=self.id, epoch=self.core.epoch,
                                                           index=reader.index, offset=offset, data=chunk,
                                                           last=last))):
                    return
                offset += len(chunk)
                if last:
                    break
                while self.transport.buffered_bytes(peer) > 8 * SNAPSHOT_CHUNK:
                    await asyncio.sleep(0.005)
                if self.core.progress[peer].state != SNAPSHOT:
                    return
                self.core.snapshot_progress(peer, _ms(), reader.index)  # rule 10: the resync moves
                self.check_backpressure()
        finally:
            reader.close()
        self.stats["full_resyncs_completed"] += 1
        self._run(self.core.snapshot_sent(peer, reader.index))

    def _on_snapshot_frame(self, msg: m.SnapshotBegin | m.SnapshotChunk) -> None:
        if msg.epoch < self.core.epoch:
            return
        self.core.snapshot_frame(_ms())
        if isinstance(msg, m.SnapshotBegin):
            if self.snapshot_receiver is not None:
                self.snapshot_receiver.abort()
                self.snapshot_receiver = None
            install, effects = self.core.offer_snapshot(msg.index, msg.epoch_starts)
            if not install:  # this log already holds it: the chunks that follow are ignored
                self._run(effects)
                return
            # a snapshot of the state this one replaces is not wanted: a child still writing
            # one could make it, not the leader's, the newest file (seen: the install then
            # loaded the child's snapshot and failed its index check)
            self.snapshotter.stop()
            self.snapshot_receiver = SnapshotWriter(self.snapshot_dir)
            self.snapshot_receiver.begin(msg.index, msg.snapshot_epoch)
            self.snapshot_meta = (msg.index, msg.snapshot_epoch, msg.epoch_starts)
            return
        receiver = self.snapshot_receiver
        receiving = self.snapshot_meta[0] if receiver is not None and self.snapshot_meta is not None else None
        action = chunk_action(receiving, receiver.bytes_written if receiver is not None else 0, msg)
        if action == IGNORE:
            return
        assert receiver is not None
        if action == ABORT:
            log.warning("node %s: snapshot %d chunk at offset %d, expected %d: transfer dropped (the leader "
                        "resyncs this node again)", self.id, msg.index, msg.offset, receiver.bytes_written)
            receiver.abort()
            self.snapshot_receiver = None
            return
        receiver.write(msg.data)
        if not msg.last:
            return
        path = receiver.finish()
        self.snapshot_receiver = None
        index, epoch, epoch_starts = self.snapshot_meta
        # the file decoded through its mapping (no copy of it on the heap) in steps (_install_step), its
        # pages released after each, and the old data set let go first, as a Redis replica empties its
        # own before loading the master's RDB: a follower held the old data set, the file's bytes, a
        # copy of them and the new data set at once (issue 15: 2.6 GB for a 625 MB data set). No
        # reader sees the emptied state: reads get LOADING until the new one is in place.
        snap = map_snapshot_file(path, just_written=True)  # SnapshotWriter checksummed it as it wrote
        self.sm.clear()
        self._installing = releasing_pages(restore_app_steps(snap.data), snap.data)
        self.loop.call_soon(self._install_step)

    @property
    def loading(self) -> bool:
        return self._installing is not None

    def _install_step(self) -> None:
        """Decode one step of the full resync's snapshot (``LOAD_STEP_BYTES`` of the file: 64
        values of 64 KiB, or some 100,000 small keys) and release the file's pages it read (the
        mapped file then never counts in the RSS beside the data set being built), then let the
        loop run: decoded whole, 640 MB held a follower's loop for seconds (issue 15), as a raft
        follower's install did (``RaftRunner._load_step``).
        Meanwhile reads get LOADING (Redis's reply while a replica loads the master's RDB),
        no snapshot or promotion starts, and the peers' frames are held, in order, and
        stepped once the snapshot is in place; each one tells the core the leader is
        answering (``snapshot_frame``), so no SyncRequest starts another full resync."""
        steps = self._installing
        assert steps is not None and self.snapshot_meta is not None
        self.stats["full_resync_install_slices"] += 1
        try:
            next(steps)  # one step (kv/dump.py LOAD_STEP_BYTES of the file) per slice
            self.loop.call_soon(self._install_step)
            return
        except StopIteration as done:
            sm: StateMachine = done.value[0]
        except Exception:
            # the node stays LOADING (never serves a half-decoded state); a restart loads the file
            log.critical("node %s: cannot decode the snapshot at index %d from the leader", self.id,
                         self.snapshot_meta[0], exc_info=True)
            raise
        self._installing = None
        sm.limits = self.options
        self.sm = sm
        return_freed_memory()  # the old data set's pages (runtime/memory.py)
        index, epoch, epoch_starts = self.snapshot_meta
        self.sm.changes = ChangeIndex(index)  # WATCHes older than the full resync abort
        self.wal.reset(index + 1)
        log.info("node %s installed a snapshot at index %d from the leader (full resync)", self.id, index)
        self._run(self.core.snapshot_installed(index, epoch, epoch_starts))
        held, self._held_frames = self._held_frames, []
        for peer, payload in held:
            self._on_frame(peer, payload)

    # -- failover -----------------------------------------------------------------------
    def failover(self, conn: ClientConnection, target: str, force: bool) -> None:
        if target != self.id:
            conn.reply(RespError(f"ERR send FAILOVER TO {target} to node {target} itself (this is {self.id})"))
            return
        if self.is_leader:
            conn.reply(RespError(f"ERR {self.id} is already the leader (epoch {self.core.epoch})"))
            return
        if self._installing is not None:  # its data set is neither the old one nor the leader's yet
            conn.reply(RespError(LOADING))
            return
        leader = self.core.leader
        if force or not leader or not self.transport.connected(leader):
            self._run(self.core.promote())
            conn.reply(OK)
            return
        if self.failover_waiter is not None:
            conn.reply(RespError("ERR a failover is already in progress"))
            return
        self.failover_waiter = (conn.slot(), time.monotonic() + self.options.ack_timeout_ms / 1000)
        self._run(self.core.request_handover())

    def _handover_done(self, effect: HandOverDone) -> None:
        if self.failover_waiter is None:
            return
        slot, _ = self.failover_waiter
        self.failover_waiter = None
        slot.resolve(encode_reply(OK if effect.ok else RespError(f"ERR failover failed: {effect.reason}"),
                                  slot.conn.resp3))
        self._flush_clients()

    # -- timers ----------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        interval = self.options.heartbeat_ms / 1000
        next_expiry = 0.0
        while True:
            await asyncio.sleep(min(interval, 0.02) if (self._timed_waiters or self.read_waiters
                                                         or self.forwarder.pending) else interval)
            now = time.monotonic()
            self._expire_waiters()
            if self.failover_waiter is not None and now >= self.failover_waiter[1]:
                self._handover_done(HandOverDone(ok=False, reason="the leader did not hand over in time"))
                self.core.handover_target_pending = False
            if now < self._next_tick:
                continue
            self._next_tick = now + interval
            if self.is_leader and self.core.writes_paused:
                if not self._handover_deadline:
                    self._handover_deadline = now + self.options.ack_timeout_ms / 1000
                elif now > self._handover_deadline:
                    log.warning("hand-over to %s timed out; taking writes again", self.core.handing_over_to)
                    self.core.cancel_handover()
                    self._handover_deadline = 0.0
            else:
                self._handover_deadline = 0.0
            if self.disk_error is not None or self._installing is not None:
                continue  # frozen by the disk guard, or installing a full resync (_install_step)
            if self.batch:
                self._flush()  # as in _on_frame: a tick may end this node's leadership
            self._run(self.core.tick(_ms()))
            if self.is_leader and now >= next_expiry:
                next_expiry = now + 0.1
                self._expire_keys()

    def evict(self, keys: list[bytes]) -> None:
        """maxmemory (runtime/memory.py): delete ``keys`` now and log the DEL."""
        _, cmds = self.sm.execute([b"DEL", *keys], ApplyContext(wall_ms(), self.id))
        if cmds:
            self._enqueue(cmds)

    def _expire_keys(self) -> None:
        """Active expiry (leader only): log DEL for keys whose TTL has passed."""
        cmds = self.sm.expire_cycle(wall_ms(), 200)
        if cmds:
            self._enqueue(cmds)

    # -- INFO ----------------------------------------------------------------------------------
    def info(self, wanted: list[str]) -> str:
        core = self.core
        sections = self.info_sections()
        sections["persistence"] = self.persistence_info(core.log.snapshot_index)
        now = _ms()
        rep = [f"role:{'master' if self.is_leader else 'slave'}", f"replikv_node:{self.id}",
               f"replikv_epoch:{core.epoch}", f"replikv_leader:{core.leader}",
               f"master_repl_offset:{core.log.last_index}", f"replikv_applied_index:{core.log.last_index}",
               f"replikv_ack:{self.default_ack}",
               f"repl_backlog_active:{int(core.log.base_index < core.log.snapshot_index)}",
               f"repl_backlog_size:{self.options.repl_backlog_bytes}",
               f"replikv_backlog_first_index:{core.log.base_index + 1}",
               f"replikv_backlog_bytes:{core.log.backlog_bytes}",
               f"replikv_log_memory_bytes:{core.log_bytes}"]
        if self.is_leader:
            rep.append(f"connected_slaves:{sum(1 for p in self.peer_ids if self.transport.connected(p))}")
            # rule 10's follower, max-log-bytes (rule 11), or empty
            rep.append(f"replikv_writes_held_by:{self.writes_held_by}")
            for i, peer in enumerate(self.peer_ids):
                pr = core.progress[peer]
                addr = self.config.nodes[peer]
                state = "online" if self.transport.connected(peer) and pr.state == "stream" else "offline"
                lag_s = (now - pr.last_ack_ms) // 1000 if pr.last_ack_ms >= 0 else -1
                rep.append(f"slave{i}:ip={addr.host},port={addr.port},state={state},offset={pr.match_index},"
                           f"lag={lag_s},id={peer},lag_ops={core.log.last_index - pr.match_index},"
                           f"lag_ms={core.follower_lag_ms(peer, now)},inflight_bytes={pr.inflight_bytes},"
                           f"send_queue_bytes={self.transport.buffered_bytes(peer)}")
        else:
            leader = self.config.nodes.get(core.leader)
            up = bool(core.leader) and self.transport.connected(core.leader) and not core.syncing
            rep += [f"master_host:{leader.host if leader else ''}", f"master_port:{leader.port if leader else 0}",
                    f"master_link_status:{'up' if up else 'down'}", f"slave_repl_offset:{core.log.last_index}",
                    f"replikv_lag_ops:{core.lag_ops()}", f"replikv_lag_ms:{core.lag_ms(now)}"]
        sections["replication"] = rep
        sections["keyspace"] = [self.sm.keyspace_info()] if self.sm.dbsize else []
        return render_info(sections, wanted)


def _epoch_starts(first: bytes, reader: SnapshotReader) -> Any:
    """The epoch history at the head of a snapshot, without decoding the data set after it."""
    header = msgpack.Unpacker()
    header.feed(first)
    try:
        header.read_array_header()
        return header.unpack()
    except msgpack.OutOfData:  # a history longer than the first chunk: read on (rare)
        return msgpack.unpackb(first + reader.chunk(len(first), reader.length - len(first)))[0]
