"""RaftRunner: one replikv node process in raft mode.

The asyncio shell around the pure Raft core (``core/raft/node.py``): it feeds
the core peer messages, ticks and client proposals, carries out the effects
the core returns, and answers clients. It shares command dispatch, client
bookkeeping and INFO with leader-follower mode (``runtime/base.py``), the
WAL, snapshots and MetaStore (``storage/``), the RESP server and the peer
transport (``runtime/resp_server.py``, ``runtime/tcp_transport.py``).

Rules it keeps (Raft Figure 2 "Persistent state"; etcd's Ready contract):
- One core call per event-loop iteration: the peer messages, client
  proposals and reads that arrived in it go to ``RaftNode.advance`` together
  from ``_drain`` (one Persist, one AppendEntries per follower, one ack per
  leader, one heartbeat round for all the reads).
- Persist before send: effects returned by the core during one event-loop
  iteration are carried out together by ``_drain``: every ``Persist`` first
  (term/vote to MetaStore, entries and snapshots to the WAL), then ONE WAL
  commit (group commit: one fsync per batch under ``--fsync always``), and
  only then the sends, which may carry votes or acks that depend on it.
  Except (thesis §10.2.1, the core's ``async_persist``, on under ``--fsync
  always``): a leader's AppendEntries leave between the WAL write and the
  fsync, so followers write in parallel with it; the leader counts its own
  copy towards a commit only once the fsync is done (``advance(persisted)``).
- Apply in order: committed entries are applied to the StateMachine in
  index order, each exactly once per (client id, seq) through the
  replicated SessionTable (thesis §6.3); a client waiting on an entry gets
  the reply when it applies, never before.
- Determinism: a write is rewritten by ``StateMachine.prepare(exact=False)``
  on the leader; the entry carries the leader's wall-clock ms, and every
  replica applies it with ``StateMachine.apply(cmds, ApplyContext(now_ms,
  log_index=index))``, which decides expiry at that time.
- Reads: ``linearizable`` goes through ReadIndex (thesis §6.4) on any node (a
  follower asks the leader) and is served once the local state machine has
  applied the read index (the reads of one loop iteration go to the core in
  one call, and the leader confirms a whole batch with one heartbeat round,
  core/raft/read_index.py); ``lease`` skips the heartbeat round while the
  leader's lease holds (unsafe if clocks drift faster than the margin);
  ``bounded``/``session``/``prefix``/``eventual`` are served locally.
- Hard state (term, vote) is saved only when it changes; the commit index is
  not forced to disk (a restarted node re-learns it from the leader; its
  snapshot index is a safe lower bound).

Entry payload (``Entry.data``): ``msgpack([now_ms, transaction, items(, watch)])``,
``items[i]`` a prepared command (list of bytes) or an error string decided at
prepare time (inside MULTI). Node ids: a node named ``n<k>`` is raft id k.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Generator
from typing import Any

import msgpack

from replikv.config import ClusterConfig, ConfigError
from replikv.core.raft import codec
from replikv.core.raft.effects import (
    Apply,
    Persist,
    ReadReady,
    Reply,
    RestoreSnapshot,
    Send,
    may_send_before_sync,
)
from replikv.core.raft.errors import NotLeader, RaftError
from replikv.core.raft.messages import Entry, InstallSnapshot
from replikv.core.raft.node import Role
from replikv.core.replies import NULL_ARRAY, OK, RespError
from replikv.core.resp import encode_reply
from replikv.kv.commands import lookup
from replikv.kv.state_machine import EXPIRE_DUE, StateMachine
from replikv.runtime.base import LOADING, BaseRunner, wall_ms
from replikv.runtime.info import render as render_info
from replikv.runtime.locks import LockService
from replikv.runtime.memory import return_freed_memory
from replikv.runtime.pending import PendingReplies, SessionReads
from replikv.runtime.raft_app import encode_write, split_stored, stored_pieces
from replikv.runtime.raft_group import RaftGroup, core_reply_error
from replikv.runtime.resp_server import ClientConnection, Slot
from replikv.runtime.snapshotter import SNAPSHOT_RUNNING, read_back
from replikv.storage.errors import WalBlockedError, WalFailedError
from replikv.storage.snapshot import release_pages

log = logging.getLogger("replikv.raft")

_WRITE_EXPIRED = ("TRYAGAIN the write was not committed in time (leader cut off from its majority?); it may or "
                  "may not be applied: retry it with the same REPLIKV EXEC client id and seq")

def _is_eviction(rid: object) -> bool:
    """The request id of a maxmemory DEL proposal (``evict``)."""
    return type(rid) is tuple and rid[0] == "evict"


def _is_expiry(rid: object) -> bool:
    """The request id of an EXPIREDUE proposal (``_expire_keys``)."""
    return type(rid) is tuple and rid[0] == "expiry"



RAFT_MSG = b"R"  # first byte of a raft message frame (runtime/forwarding.py has its own)


def raft_frame(msg: Any) -> bytes:
    """The peer frame of a raft message. An InstallSnapshot chunk is a view of the
    snapshot file mapped (``map_snapshot_file``): once encoded (a copy), the pages it
    read are released, so a transfer does not leave the whole file counted in the
    leader's RSS (issue 15: up to the snapshot's size, ~640 MB, per transfer)."""
    frame = RAFT_MSG + codec.encode(msg)
    if type(msg) is InstallSnapshot:
        release_pages(msg.data)
    return frame


def raft_id(name: str) -> int:
    """``n3`` -> 3: raft ids are the number in the node's name (stable across
    membership changes, unlike a position in cluster.toml)."""
    m = re.fullmatch(r"[A-Za-z_-]*(\d+)", name)
    if m is None or int(m.group(1)) == 0:
        raise ConfigError(f"raft mode needs node names ending in a number >= 1 (n1, n2, ...), got {name!r}")
    return int(m.group(1))


LOAD_SLICE_S = 0.01  # how long a snapshot from the leader is decoded before the loop runs again (_load_step)


class RaftRunner(BaseRunner):
    def __init__(self, config: ClusterConfig, node_id: str) -> None:
        super().__init__(config, node_id)
        opts = self.options
        self.raft_id = raft_id(node_id)
        self.names: dict[int, str] = {}
        for name in config.nodes:
            self.names[raft_id(name)] = name
        if len(self.names) != len(config.nodes):
            raise ConfigError("two nodes of this cluster map to the same raft id")
        self.peer_ids = [p for p in config.nodes if p != node_id]
        self.tick_s = opts.tick_ms / 1000
        self.election_ticks = max(2, opts.election_timeout_ms // opts.tick_ms)
        self._rids = itertools.count(1)
        self._effects: list[Any] = []
        self.inbox: list[Any] = []  # raft messages of this loop iteration, stepped in _drain
        self.pending: list[tuple[bytes, object, int | None, int | None]] = []
        # linearizable/lease reads of this loop iteration: (request id, lease), one core call per drain
        self.pending_reads: list[tuple[object, bool]] = []
        # proposals, read-index rounds and membership changes waiting for the core (runtime/pending.py)
        self.writes = PendingReplies()
        self.reads = PendingReplies()  # payload: (argv, transaction, watch)
        self.ready_reads: list[tuple[int, Slot, list[bytes]]] = []  # (index, slot, argv)
        self.session_reads = SessionReads(opts.session_timeout_ms, "this node")  # payload: (argv, transaction, watch)
        self.config_changes = PendingReplies()
        self.failover_waiter: tuple[Slot, float, int] | None = None
        self.last_leader_contact = 0.0
        self._expiry_inflight = 0
        # --fsync always: the leader replicates between its WAL write and its fsync
        self.async_persist = opts.fsync == "always"
        self._commit_last_tick = 0
        # (last index of a batch the leader appended, when): INFO's lag in seconds per follower
        self._appended_at: deque[tuple[int, float]] = deque(maxlen=4096)
        self.stats.update({"term_changes": 0, "elections_won": 0, "leaderships_lost": 0,
                           "snapshots_taken": 0, "snapshots_installed": 0, "compactions_held": 0,
                           "exactly_once_hits": 0, "tick_stalls": 0})
        self.lock_service = LockService(self)  # leases and LOCK ... WAIT (runtime/locks.py)
        self._applies_waiting = []
        self._meta_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meta")  # _every_second
        self._recover()

    # -- start-up ------------------------------------------------------------------
    def _recover(self) -> None:
        """The node's storage is the one group of an unsharded cluster (runtime/raft_group.py:
        snapshot, then the WAL after it, then the hard state, in the data directory)."""
        opts = self.options
        bootstrap = self.config.bootstrap or list(self.config.nodes)
        self.group = RaftGroup(
            0, self.data_dir, opts, self.raft_id, tuple(raft_id(n) for n in bootstrap), self.election_ticks,
            max(1, min(self.election_ticks // 5, opts.heartbeat_ms // opts.tick_ms)),
            async_persist=self.async_persist, on_config=self._config_applied)
        self.core, self.wal, self.meta = self.group.core, self.group.wal, self.group.meta
        hs = self.core.hard_state()
        log.info("node %s (raft id %d) recovered: snapshot at %d, %d WAL entries, term %d",
                 self.id, self.raft_id, self.group.applied, self.group.recovered_entries, hs.term)
        self._queue(self.core.start())

    @property
    def sm(self) -> StateMachine:  # type: ignore[override]
        return self.group.sm

    @property
    def applied(self) -> int:
        return self.group.applied

    async def start(self) -> None:
        await self.start_io(lambda peer: None, [self._tick_loop])
        if self._effects:
            self._schedule()
        log.info("node %s serving RESP on %s:%d (raft, election timeout %d ticks of %d ms)", self.id,
                 self.address.host, self.address.port, self.election_ticks, self.options.tick_ms)

    async def stop(self) -> None:
        self.snapshotter.stop()
        await self.stop_io()
        self._meta_writer.shutdown(wait=True)  # a commit record being written completes
        self.wal.close()  # writes what is buffered and fsyncs (or, disk still full, says what it could not)

    # -- levels (what ClientConnection and commands.py ask) ---------------------------
    def ack_replicas(self, level: Any) -> int:
        return 0

    @property
    def is_leader(self) -> bool:
        return self.core.role is Role.LEADER

    @property
    def leader_name(self) -> str:
        leader = self.core.leader
        return self.names.get(leader, "") if leader is not None else ""

    # -- effects ---------------------------------------------------------------------
    def _queue(self, effects: list[Any]) -> None:
        if effects:
            self._effects.extend(effects)
            self._schedule()

    def _drain(self) -> None:
        """Carry out the effects gathered this iteration: persist, ONE commit, then the rest."""
        self._drain_scheduled = False
        if self.inbox or self.pending or self.pending_reads:
            # One core call for the iteration: one Persist, one commit notice per
            # follower, one ack per leader; one heartbeat round confirms all the
            # reads (ReadIndex batching).
            msgs, self.inbox = self.inbox, []
            batch, self.pending = self.pending, []
            reads, self.pending_reads = self.pending_reads, []
            self._effects.extend(self.core.advance(msgs, batch, reads))
        effects, self._effects = self._effects, []
        while effects:
            persisted = self._carry_out(effects)
            # async_persist: the leader counts its own copy now that it is durable
            effects = self.core.advance(persisted=persisted) if persisted else []
        self._answer_clients()
        self.check_backpressure()
        if self.group.snapshot_due(self.options.snapshot_bytes):
            self._snapshot_in_background()
        if self._effects:
            self._schedule()

    def _carry_out(self, effects: list[Any]) -> tuple[int, int] | None:
        """Persist, one WAL write and (``always``) one fsync, then the rest.

        Under ``--fsync always`` (the core's ``async_persist``) the leader's
        replication messages leave between the write and the fsync, so the
        followers write in parallel with it (thesis §10.2.1), and so do the
        replies to entries committed before it: a committed entry is on the
        disks of a majority already (the leader counts itself only once
        durable), whatever this fsync holds. Every other message leaves after
        the fsync. Returns the (index, term) now durable for a leader to count
        itself, or None.

        The disk guard (runtime/base.py): when the WAL or the hard state
        cannot be written, the effects that concern committed entries (apply,
        replies, reads) are still carried out, since a majority holds those
        entries, but no Send of the batch leaves (no ack, vote or
        AppendEntries that the failed write backs) and the core stays frozen
        until the disk recovers; the entries wait in the WAL's buffer."""
        node = self.core
        if node.term != self._seen_term or node.role is not self._seen_role:
            self._role_changed()
        early: list[Send] = []
        sends: list[Send] = []
        rest: list[Any] = []
        persists: list[Persist] = []
        split = self.async_persist
        for e in effects:
            if isinstance(e, Persist):
                persists.append(e)
            elif isinstance(e, Send):
                (early if split and may_send_before_sync(e) else sends).append(e)
            else:
                rest.append(e)
        if self.group.disk_errors:  # a snapshot being received could not be written (raft_group.py):
            self._disk_failed(self.group.disk_errors.pop())  # blocked, as a refused WAL write, never fatal
        wal = self.wal
        frozen = self.disk_error is not None
        try:
            for p in persists:
                self._persist(p)  # while frozen: entries only queue in the WAL's buffer
            if not frozen:
                wal.write() if split else wal.commit()
        except (WalFailedError, OSError) as exc:
            # frozen already: a persist that needs the disk now means log and WAL may differ
            self._disk_failed(exc, fatal=frozen)
        if self.disk_error is not None:
            self._finish(rest)
            self._answer_clients()
            return None
        persisted = None
        if split:
            self._send_all(early)
            self._finish(rest)
            self._answer_clients()
            if wal.dirty:
                try:
                    wal.fsync_now()  # group commit: one fsync for the batch
                except WalFailedError as exc:
                    self._disk_failed(exc)
                    return None
                if node.role is Role.LEADER:
                    persisted = (wal.durable_index, int(node.log.term(wal.durable_index) or 0))
        else:
            self._finish(rest)
        self._send_all(sends)
        return persisted

    def _finish(self, rest: list[Any]) -> None:
        """Apply, install, and answer: the effects after Persist and Send. A snapshot from
        the leader is decoded in steps (``_load_step``); the entries committed meanwhile
        are applied once it is in place, in order."""
        for e in rest:
            if isinstance(e, Apply):
                if self._loading is None:
                    self._apply(e)
                else:
                    self._applies_waiting.append(e)
            elif isinstance(e, RestoreSnapshot):
                self._loading = self.group.restore_steps(e.snapshot)
                self._loading_index = e.snapshot.index
                if not self._load_scheduled:
                    self._load_scheduled = True
                    asyncio.get_running_loop().call_soon(self._load_step)
            elif isinstance(e, ReadReady):
                self._read_ready(e.request_id, e.index)
            elif isinstance(e, Reply):
                self._on_reply(e.request_id, e.result)

    def _answer_clients(self) -> None:
        """Serve the reads whose index is applied (none while a snapshot loads); send every
        reply that is ready."""
        if self._loading is None:
            if self.ready_reads:
                self._serve_ready_reads()
            if self.session_reads:
                self._serve_session_reads()
        self._flush_clients()

    # -- a snapshot from the leader, decoded in steps ---------------------------------
    _loading: Generator[None, None, None] | None = None  # RaftGroup.restore_steps, while it runs
    _loading_index = 0
    _load_scheduled = False
    _applies_waiting: list[Apply]

    def _load_step(self) -> None:
        """Decode the snapshot being installed for up to ``LOAD_SLICE_S``, then let the loop
        run (issue 15: decoded whole, 640 MB held a follower's loop for seconds). Meanwhile
        the node answers local reads and a leader's writes with LOADING (its data set is
        neither the old one nor the new one yet), and keeps committed entries and reads by
        index waiting; once the snapshot is in place they go on, in order."""
        self._load_scheduled = False
        steps = self._loading
        if steps is None:
            return
        deadline = time.monotonic() + LOAD_SLICE_S
        try:
            next(steps)  # at least one step per slice
            while time.monotonic() < deadline:
                next(steps)
        except StopIteration:
            pass
        except Exception:
            # the node stays LOADING (never serves a half-decoded state); a restart loads the file
            log.critical("node %s: cannot decode the snapshot at index %d from the leader", self.id,
                         self._loading_index, exc_info=True)
            raise
        else:
            self._load_scheduled = True
            asyncio.get_running_loop().call_soon(self._load_step)
            return
        self._loading = None
        self.stats["snapshots_installed"] += 1
        log.info("node %s installed a snapshot at index %d from the leader", self.id, self._loading_index)
        waiting, self._applies_waiting = self._applies_waiting, []
        for e in waiting:
            self._apply(e)  # entries the snapshot covers are skipped (RaftGroup.apply)
        self._answer_clients()

    @property
    def loading(self) -> bool:
        return self._loading is not None

    def _refuse_loading(self, conn: Any) -> bool:
        """While a snapshot loads: answer LOADING (Redis's reply while a replica loads its data
        set; clients retry it) and return True."""
        if self._loading is None:
            return False
        conn.reply(RespError(LOADING))
        return True

    def _send_all(self, sends: list[Send]) -> None:
        for s in sends:
            name = self.names.get(s.to)
            if name is None:
                self._learn_addresses()
                name = self.names.get(s.to)
            if name is not None:
                self.transport.send(name, raft_frame(s.msg))

    _seen_term = 0
    _seen_role = Role.FOLLOWER

    def _role_changed(self) -> None:
        """Log term and role changes (a leader losing its leadership at warning level)."""
        node = self.core
        was_leader = self._seen_role is Role.LEADER
        if node.term != self._seen_term:
            self.stats["term_changes"] += 1
        if node.role is Role.LEADER and not was_leader:
            self.stats["elections_won"] += 1
        elif was_leader and node.role is not Role.LEADER:
            self.stats["leaderships_lost"] += 1
        self._seen_term, self._seen_role = node.term, node.role
        if was_leader and node.role is not Role.LEADER:
            log.warning("node %s is no longer the leader: %s at term %d (leader now %s)", self.id,
                        node.role.value, node.term, self.leader_name or "unknown")
        else:
            log.info("node %s is %s at term %d (leader %s)", self.id, node.role.value, node.term,
                     self.leader_name or "unknown")

    def _persist(self, p: Persist) -> None:
        """Hard state first, then a snapshot, then entries (RaftGroup.persist)."""
        self.group.persist(p)
        if p.entries and self.core.role is Role.LEADER:  # when each index was appended: followers' lag
            self._appended_at.append((p.entries[-1].index, time.monotonic()))

    def _lag_s(self, match: int) -> float:
        """How long ago the leader appended the first entry a follower whose log matches up to
        ``match`` lacks (0 when it lacks none); at least the oldest time remembered."""
        if match >= self.core.log.last_index:
            return 0.0
        since = next((t for i, t in self._appended_at if i > match), None)
        return 0.0 if since is None else time.monotonic() - since

    # -- apply ------------------------------------------------------------------------
    def _apply(self, effect: Apply) -> None:
        for rid, result, index in self.group.apply(effect):
            self._resolve_write(rid, result, index)
        self.stats["exactly_once_hits"] = self.group.exactly_once_hits

    def _resolve_write(self, rid: object, result: Any, index: int) -> None:
        if _is_expiry(rid):  # this leader's EXPIREDUE applied: the next may go
            self._expiry_inflight = 0
            return
        if _is_eviction(rid):
            self.evicting.difference_update(rid[1])  # type: ignore[index]
            return
        waiting = self.writes.pop(rid)
        if waiting is not None:
            conn = waiting.conn
            conn.session_index = max(conn.session_index, index)
            waiting.slot.resolve(encode_reply(result, conn.resp3))
            return
        admin = self.config_changes.pop(rid)
        if admin is not None:
            admin.slot.resolve(encode_reply(OK, admin.conn.resp3))

    def _on_reply(self, rid: object, result: object) -> None:
        """A request the core answered itself: an error (or None = done)."""
        hint = result.hint if isinstance(result, NotLeader) else None
        leader = self.names.get(hint, "unknown") if hint is not None else "unknown"
        err = core_reply_error(result, f"{self.id} is not the leader (leader: {leader})")
        if _is_expiry(rid):  # refused (no longer the leader): the next leader proposes its own
            self._expiry_inflight = 0
            return
        if _is_eviction(rid):
            self.evicting.difference_update(rid[1])  # type: ignore[index]
            return
        target = self.writes.pop(rid) or self.reads.pop(rid) or self.config_changes.pop(rid)
        if target is not None:
            target.slot.resolve(encode_reply(err or OK, target.conn.resp3))

    def _config_applied(self, entry: Entry) -> None:
        assert entry.config is not None
        log.info("node %s: membership is now %s (index %d)", self.id, entry.config.describe(), entry.index)
        if any(i not in self.names for i in entry.config.members):
            self._learn_addresses()

    def _address_learned(self, name: str) -> None:
        self.names[raft_id(name)] = name

    # -- writes -------------------------------------------------------------------------
    def _write_one(self, conn: ClientConnection, argv: list[bytes]) -> None:
        self.write(conn, [argv], transaction=False)

    def write(self, conn: Any, commands: list[list[bytes]], transaction: bool,
              client: tuple[int, int] | None = None) -> None:
        """Propose a write (or a MULTI block as ONE entry); reply when it applies."""
        if self.disk_error is not None:
            conn.reply(self.disk_refusal())
            return
        if not self.is_leader:
            self.forwarder.forward(conn, self.leader_name, commands, transaction, client=client)
            return
        if self._refuse_loading(conn):  # elected while loading: a write is prepared against the data set
            return
        err, data = encode_write(self.sm, commands, transaction, wall_ms(), self.id,
                                 conn.watch if transaction else None)
        if err is not None:
            conn.reply(err)
            return
        rid = next(self._rids)
        # a bound on the wait: a leader cut off from its majority may never learn the outcome
        self.writes.add(rid, conn, time.monotonic() + 2 * self.options.ack_timeout_ms / 1000, _WRITE_EXPIRED)
        cid, seq = client if client else (None, None)
        self.pending.append((data, rid, cid, seq))
        self.hold_writer(conn)  # back-pressure (RaftNode.lagging_follower)
        self._schedule()

    def exec_transaction(self, conn: Any, queued: list[list[bytes]]) -> None:
        """EXEC: a block with a write is one log entry; a read-only block is a read."""
        if any("write" in lookup(a[0]).flags for a in queued):  # type: ignore[union-attr]
            self.write(conn, queued, transaction=True)  # the entry carries conn.watch (raft_app.py)
        else:
            self._read(conn, queued, transaction=True)

    def watch_position(self, key: bytes | None = None) -> int:
        """The index this node has applied: the state its reads are served from."""
        return self.applied

    def admin(self, conn: Any, argv: list[bytes]) -> None:
        """REPLIKV EXEC <client-id> <seq> <command...> (exactly-once write, thesis §6.3),
        REPLIKV CLUSTER ADD|PROMOTE|REMOVE <node-id> and REPLIKV CLUSTER MEMBERS."""
        sub = argv[1].upper()
        if sub == b"EXEC":
            if len(argv) < 5 or not all(a.isdigit() and len(a) <= 19 for a in argv[2:4]):
                raise RespError("ERR usage: REPLIKV EXEC <client-id> <seq> <command> [arg ...]")
            self.exec_once(conn, int(argv[2]), int(argv[3]), argv[4:])
        elif len(argv) == 4 and argv[2].upper() in (b"ADD", b"PROMOTE", b"REMOVE"):
            self.change_membership(conn, argv[2].upper().decode(), argv[3].decode(errors="replace"))
        elif len(argv) == 3 and argv[2].upper() == b"MEMBERS":
            conn.reply(self.membership())
        elif sub in (b"RESHARD", b"IMPORT", b"ACTIVATE", b"TXN", b"FAILPOINT", b"GROUP", b"PLACEMENT"):
            raise RespError(f"ERR REPLIKV {sub.decode()} is offered by a sharded raft cluster (--shards); this "
                            "one is a single Raft group")
        else:
            raise RespError("ERR usage: REPLIKV CLUSTER ADD|PROMOTE|REMOVE <node-id> | REPLIKV CLUSTER MEMBERS")

    def exec_once(self, conn: Any, client_id: int, seq: int, argv: list[bytes]) -> None:
        """REPLIKV EXEC <client-id> <seq> <command...>: at most once per (client id, seq)."""
        spec = lookup(argv[0])
        if spec is None or "write" not in spec.flags:
            raise RespError("ERR REPLIKV EXEC wraps a data write command (SET, INCR, ...)")
        if not spec.arity_ok(len(argv)):
            raise RespError(f"ERR wrong number of arguments for '{spec.name}' command")
        self.write(conn, [argv], transaction=False, client=(client_id, seq))

    # -- forwarding (runtime/forwarding.py) ------------------------------------------------------
    def run_forwarded(self, proxy: Any, commands: list[list[bytes]], transaction: bool,
                      client: tuple[int, int] | None) -> None:
        """Leader side: a follower's client write, proposed as if it were local."""
        if not self.is_leader:
            proxy.reply(RespError(f"TRYAGAIN {self.id} is no longer the leader"))
        else:
            self.write(proxy, commands, transaction, client)

    def forward_admin(self, conn: Any, argv: list[bytes]) -> bool:
        """Run an admin command on the leader; False when this node is the leader."""
        if self.is_leader:
            return False
        self.forwarder.forward(conn, self.leader_name, [argv], False, admin=True)
        return True

    # -- reads ---------------------------------------------------------------------------------
    def _read(self, conn: Any, argv: Any, transaction: bool = False) -> None:
        level = conn.read_level
        what = (argv, transaction, conn.watch if transaction else None)
        if level in ("linearizable", "lease"):
            if self.disk_error is not None:  # frozen: this node cannot confirm a read index
                conn.reply(RespError(f"{self.disk_refusal().message}; {level} reads need a node that "
                                     "takes part in the cluster: read another node, or CONSISTENCY READ eventual"))
                return
            rid = next(self._rids)
            deadline = time.monotonic() + self.options.ack_timeout_ms / 1000
            self.reads.add(rid, conn, deadline, "TRYAGAIN the read index was not confirmed in time (no leader "
                                                "or no quorum)", what)
            self.pending_reads.append((rid, level == "lease"))
            self._schedule()
            return
        if self._refuse_loading(conn):
            return
        if level == "bounded" and not self.is_leader and self.refuse_stale(conn):
            return
        if level == "session" and conn.session_index > self.applied:
            self.session_reads.add(conn.session_index, conn, what, time.monotonic())
            return
        conn.reply(self._serve(*what))

    def _serve(self, argv: Any, transaction: bool, watch: dict[bytes, int] | None = None) -> Any:
        now = wall_ms()
        if watch and self.sm.changes.any_changed(watch.items()):
            return NULL_ARRAY  # a read-only EXEC whose WATCHed key changed
        if transaction:
            return [self.sm.read(a, now) for a in argv]
        return self.sm.read(argv, now)

    def _read_ready(self, rid: object, index: int) -> None:
        entry = self.reads.pop(rid)
        if entry is None:
            return
        self.ready_reads.append((index, entry.slot, entry.payload))

    def _serve_ready_reads(self) -> None:
        keep = []
        for index, slot, what in self.ready_reads:
            if index <= self.applied:
                slot.resolve(encode_reply(self._serve(*what), slot.conn.resp3))  # type: ignore[misc]
            else:
                keep.append((index, slot, what))
        self.ready_reads = keep

    def _serve_session_reads(self) -> None:
        self.session_reads.release(self.applied, lambda what: self._serve(*what))

    def _staleness_ms(self) -> int:
        if self.is_leader:
            return 0
        if not self.last_leader_contact:
            return 1 << 31
        return int((time.monotonic() - self.last_leader_contact) * 1000)

    # -- peers ------------------------------------------------------------------------------------
    def _on_frame(self, peer: str, payload: bytes) -> None:
        self.frames_in += 1
        kind, body = payload[:1], payload[1:]
        try:
            if self.service_frame(peer, payload):
                return
            if kind == RAFT_MSG:
                if self.disk_error is not None:
                    return  # frozen by the disk guard: a silent node to the cluster
                msg = codec.decode(body)
                if self.names.get(msg.src) != peer or msg.dst != self.raft_id:
                    log.warning("peer %s sent a message from %d to %d; dropped", peer, msg.src, msg.dst)
                    return
                if msg.src == self.core.leader or msg.term > self.core.term:
                    self.last_leader_contact = time.monotonic()
                self.inbox.append(msg)
                self._schedule()
            else:
                raise ValueError(f"unknown frame kind {kind!r}")
        except (ValueError, TypeError) as e:
            log.warning("dropping a bad frame from peer %s: %s", peer, e)

    def _on_peer_disconnected(self, peer: str) -> None:
        if peer == self.leader_name:
            self.forwarder.leader_lost()

    _recording: asyncio.Future[None] | None = None  # a commit record being written (_every_second)

    def _every_second(self) -> None:
        """Record the commit index (at most what this node's WAL has on disk) once a
        second, so a restart can tell a log that lost committed entries from one
        that did not (recovery refuses the former) while costing one small
        atomic file write a second, not one per commit. Also at the first tick
        without a new commit (``_tick_loop``): a node restarted after writes
        stopped applies its whole log at once instead of waiting for a leader
        to tell it the commit index (an election, if it was the leader).

        The write (tmp file, fsync, rename, directory fsync) runs on a thread, one at a
        time: on the loop it was 8% of a leader's samples under sustained 64 KiB writes,
        and an fsync behind a snapshot child's 640 MB can take hundreds of ms (issue 15's
        stalls). ``RaftGroup.record_commit`` takes the meta lock, so a term and vote saved
        on the loop meanwhile are neither lost nor overwritten by an older record."""
        commit = self.group.commit_to_record()
        if commit is None or self._recording is not None:
            return
        loop = asyncio.get_running_loop()
        self._recording = fut = loop.run_in_executor(self._meta_writer, self.group.record_commit, commit)
        fut.add_done_callback(self._commit_recorded)

    def _commit_recorded(self, fut: asyncio.Future[None]) -> None:
        self._recording = None
        exc = None if fut.cancelled() else fut.exception()
        if isinstance(exc, OSError):
            # the record is written whole or not at all (tmp file, rename: the one before stays), so
            # a full disk here is the disk guard's "blocked", retried, as a refused WAL write is;
            # taken as fatal it stopped the node's writes for good whenever this write, once a
            # second, met the full disk before a WAL write did (session 31, test_full_disk.py)
            blocked = WalBlockedError(f"the commit index could not be recorded: {exc}")
            blocked.__cause__ = exc  # the disk guard reports the OS error's reason
            self._disk_failed(blocked)
        elif exc is not None:
            log.error("node %s: recording the commit index failed", self.id, exc_info=exc)

    # -- the disk guard (runtime/base.py) ------------------------------------------------------------
    def _on_disk_blocked(self) -> None:
        """Fail the writes waiting on this node: none can be acknowledged while frozen.

        A proposal may already be on a follower's disk and commit without us,
        so its error says it may still be applied; writes not yet proposed
        were not applied at all."""
        refused, inflight = self.disk_refusal(), self.disk_inflight_error()
        queued, self.pending = self.pending, []
        not_proposed = {rid for _data, rid, _cid, _seq in queued}
        self.writes.fail_all(lambda rid, _: refused if rid in not_proposed else inflight)
        self.reads.fail_all(refused)
        self.pending_reads = []
        self._expiry_inflight = 0
        self._flush_clients()

    def _retry_mode_storage(self) -> bool:
        """Save the hard state (term, vote) if the failed batch carried one, and the commit index
        if a record of it is due (``_record_commit``'s write may be what met the full disk)."""
        hs = self.core.hard_state()
        try:
            if (hs.term, hs.vote) != self.group.saved_tv:
                self.group.save_hard_state(hs)
            if self._recording is None:
                self.group.record_commit()
        except OSError:
            return False
        return True

    def _on_disk_resumed(self) -> None:
        """The kept entries are durable now: a leader counts itself; the core runs again."""
        node = self.core
        if self.async_persist and node.role is Role.LEADER:
            durable = self.wal.durable_index
            self._queue(node.advance(persisted=(durable, int(node.log.term(durable) or 0))))
        self._schedule()

    # -- snapshots -----------------------------------------------------------------------------------
    def take_snapshot(self) -> int:
        """Snapshot the applied state now, on the loop (REPLIKV SNAPSHOT: Redis's SAVE);
        the core compacts its log, the WAL drops segments."""
        if self.snapshotter.running:
            raise RespError(SNAPSHOT_RUNNING)
        if self._loading is not None:
            raise RespError(LOADING)
        if self._effects or self.inbox or self.pending or self.pending_reads:
            self._drain()
        for e in self.group.take_snapshot():
            if isinstance(e, Persist):
                self._persist(e)
        self.wal.commit()
        self.stats["snapshots_taken"] += 1
        return_freed_memory()  # the state's serialized copy and the compacted entries (runtime/memory.py)
        log.info("node %s took a snapshot at index %d", self.id, self.applied)
        return self.applied

    def background_snapshot(self) -> bool:
        """BGSAVE: a snapshot in a forked child now; False if one cannot start
        (one running, nothing applied since the last, the disk refusing)."""
        running = self.snapshotter.running
        self._snapshot_in_background()
        return not running and self.snapshotter.running

    def _snapshot_in_background(self) -> None:
        """The WAL grew by --snapshot-bytes: write a snapshot of the applied state in a
        forked child (runtime/snapshotter.py), then hand it to the core to compact."""
        core_log = self.core.log
        index = self.applied
        if (self.disk_error is not None or index <= core_log.snapshot.index or self._reading_back is not None
                or self._held_compaction is not None or self._loading is not None):
            return
        term, config = int(core_log.term(index) or 0), core_log.config_at(index)
        sm, sessions = self.sm, self.group.sessions.to_state()  # as of the fork, in the child's copy
        self.snapshotter.start(index, term, lambda: stored_pieces(config, sm, sessions), self._snapshot_written)

    def _snapshot_written(self, index: int) -> None:
        """The child's snapshot is durable: read it back off the loop (no snapshot starts while
        that runs), then compact."""
        self._reading_back = read_back(self.snapshot_dir, index, lambda stored: self._install_written(index, stored))

    _reading_back: threading.Thread | None = None

    def _install_written(self, index: int, stored: Any) -> None:
        self._reading_back = None
        if stored is None or index <= self.core.log.snapshot.index:
            return  # a newer snapshot (from the leader) superseded it, or the disk refused it
        _voters, _learners, app = split_stored(stored.data)
        self.group.snapshot_on_disk = index
        self.stats["snapshots_taken"] += 1
        self._held_compaction = (index, app)
        self._compact_when_caught_up()

    def lagging_follower(self) -> str:
        """Back-pressure on writers: a follower catching up too far behind (RaftNode.lagging_follower,
        bounded by --repl-max-lag-bytes; one without progress for --repl-lag-stall-ms holds nothing)."""
        opts = self.options
        pid = self.core.lagging_follower(opts.repl_max_lag_bytes, max(1, opts.repl_lag_stall_ms // opts.tick_ms))
        return "" if pid is None else self.names.get(pid, str(pid))

    def log_over_bound(self) -> bool:
        """The entries kept in memory after the snapshot exceed --max-log-bytes (RaftNode.log_over)."""
        return self.core.log_over(self.options.max_log_bytes)

    _held_compaction: tuple[int, memoryview] | None = None

    def _compact_when_caught_up(self) -> None:
        """Compact the log to the snapshot written last once no follower being caught
        up still needs its entries, or once the WAL since the last compaction passed
        ``snapshot_bytes + repl_backlog_bytes`` (``RaftNode.compaction_waits``): the
        backlog a follower installing a snapshot, or replicating a little behind,
        continues from, at a memory cost bounded by the backlog; never while the log is over
        --max-log-bytes (the compaction is what lets the writers held go). Runs when the snapshot
        is read back and on every tick while one waits; no other snapshot starts meanwhile."""
        held = self._held_compaction
        if held is None or self.disk_error is not None:
            return  # frozen by the disk guard: the compaction waits for the disk (run on every tick)
        index, app = held
        if index > self.core.log.snapshot.index:
            log_bytes = self.wal.size_bytes - self.group.wal_after_snapshot
            bound = self.options.snapshot_bytes + self.options.repl_backlog_bytes
            # never while the log is over its own bound (--max-log-bytes): this compaction is what
            # brings it back under and lets the writers it holds go
            if not self.log_over_bound() and self.core.compaction_waits(index, log_bytes, bound):
                if self._held_since != index:  # counted once per snapshot held
                    self._held_since = index
                    self.stats["compactions_held"] += 1
                return
            try:
                for e in self.core.compact(index, app):
                    if isinstance(e, Persist):
                        self._persist(e)
                self.wal.commit()
            except (WalFailedError, OSError) as exc:  # the WAL keeps what it could not write
                self._disk_failed(exc)
        self._held_compaction = None
        return_freed_memory()  # the compacted entries' pages (runtime/memory.py)

    _held_since = 0

    # -- failover and membership --------------------------------------------------------------------------
    def failover(self, conn: Any, target: str, force: bool) -> None:
        """FAILOVER TO <id>: leadership transfer (thesis §3.10), run on the leader."""
        if target not in self.config.nodes:
            conn.reply(RespError(f"ERR no node {target} in this cluster"))
            return
        if self.forward_admin(conn, [b"FAILOVER", b"TO", target.encode()]):
            return
        tid = raft_id(target)
        if tid == self.raft_id:
            conn.reply(RespError(f"ERR {self.id} is already the leader (term {self.core.term})"))
            return
        if self.failover_waiter is not None:
            conn.reply(RespError("ERR a leadership transfer is already in progress"))
            return
        try:
            effects = self.core.transfer_leadership(tid)
        except RaftError as e:
            conn.reply(RespError(f"ERR leadership transfer to {target} refused: {type(e).__name__} {e}"))
            return
        deadline = time.monotonic() + max(self.options.ack_timeout_ms, 4 * self.options.election_timeout_ms) / 1000
        self.failover_waiter = (conn.slot(), deadline, tid)
        self._queue(effects)

    def _check_failover(self) -> None:
        if self.failover_waiter is None:
            return
        slot, deadline, tid = self.failover_waiter
        if self.core.leader == tid and self.core.role is not Role.LEADER:
            self.failover_waiter = None
            slot.resolve(encode_reply(OK, slot.conn.resp3))
        elif time.monotonic() > deadline:
            self.failover_waiter = None
            slot.resolve(encode_reply(RespError(
                f"ERR leadership transfer to {self.names.get(tid)} did not finish in time"), slot.conn.resp3))

    def change_membership(self, conn: Any, action: str, target: str) -> None:
        """REPLIKV CLUSTER ADD|PROMOTE|REMOVE <id>: one server at a time (thesis §4.1)."""
        if self.forward_admin(conn, [b"REPLIKV", b"CLUSTER", action.encode(), target.encode()]):
            return
        try:
            tid = raft_id(target)
        except ConfigError as e:
            raise RespError(f"ERR {e}") from None
        if tid not in self.names:
            self._learn_addresses()
        rid = next(self._rids)
        self.config_changes.add(rid, conn, time.monotonic() + self.options.ack_timeout_ms / 1000,
                                "TRYAGAIN the membership change did not commit in time")
        if action == "ADD":
            self._queue(self.core.add_learner(tid, rid))
        elif action == "PROMOTE":
            self._queue(self.core.promote(tid, rid))
        else:
            self._queue(self.core.remove(tid, rid))

    def membership(self) -> list[Any]:
        """[voters, learners, per-member match index (leader only)]."""
        c = self.core.log.config()
        progress = {self.names.get(i, str(i)): p.match for i, p in self.core.progress.items()}
        return [[self.names.get(i, str(i)).encode() for i in sorted(c.voters)],
                [self.names.get(i, str(i)).encode() for i in sorted(c.learners)],
                [[k.encode(), v] for k, v in sorted(progress.items())], self.core.log.commit]

    def wait_replicas(self, conn: Any, numreplicas: int, timeout_ms: int) -> None:
        """WAIT: followers whose log holds this connection's last write (no waiting:
        a raft write is answered only once a majority holds it)."""
        index = conn.session_index
        held = sum(1 for i, p in self.core.progress.items() if i != self.raft_id and p.match >= index)
        conn.reply(held if self.is_leader else 0)

    def role_reply(self) -> list[Any]:
        role = b"leader" if self.is_leader else b"follower"
        return [role, self.core.term, self.leader_name.encode(), self.core.log.last_index]

    # -- timers -------------------------------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        next_expiry = 0.0
        async for now in self.ticks(self.tick_s):
            self._expire_waiters(now)
            if self.disk_error is not None:
                continue  # frozen by the disk guard
            self._queue(self.core.tick())
            self.check_backpressure()  # a follower that stopped making progress no longer holds writers
            self._compact_when_caught_up()
            self.lock_service.tick()
            self._check_failover()
            commit = self.core.log.commit
            if commit == self._commit_last_tick and commit > self.group.saved_commit:
                self._every_second()  # no commit since the last tick: record it now, not a second later
            self._commit_last_tick = commit
            if self.is_leader and now >= next_expiry:
                next_expiry = now + 0.1
                self._expire_keys()

    def lock_groups(self) -> list[tuple[int, StateMachine, int, bool]]:
        """The lock service's view (runtime/locks.py): the node's one group, if it holds or changed a lock."""
        table = self.sm.locks
        if not (table.changed or table.clock.deadlines):
            return []
        return [(0, self.sm, self.core.term, self.is_leader)]

    def propose_internal(self, g: int, cmds: list[list[bytes]], rid: object) -> None:
        """Propose the leader's own commands (LOCKEXPIRE) as one entry; ``rid`` a tuple nobody waits on."""
        self.pending.append((msgpack.packb([wall_ms(), False, cmds]), rid, None, None))
        self._schedule()

    def evict(self, keys: list[bytes]) -> None:
        """maxmemory (runtime/memory.py): propose the DEL of ``keys``; until it
        applies they are not chosen again (``evicting``)."""
        now = wall_ms()
        self.evicting.update(keys)
        self.pending.append((msgpack.packb([now, False, [[b"DEL", *keys]]]), ("evict", keys), None, None))
        self._schedule()

    def _expire_keys(self) -> None:
        """Active expiry (leader): propose EXPIREDUE for due keys; applied at the entry's time."""
        if self._expiry_inflight:
            return
        now = wall_ms()
        keys = self.sm.expired_keys(now, 200)
        if keys:
            self._expiry_inflight = 1
            data = msgpack.packb([now, False, [[EXPIRE_DUE, *keys]]])
            self.pending.append((data, ("expiry", now), None, None))
            self._schedule()

    def _expire_waiters(self, now: float) -> None:
        expired = self.reads.expire(now)
        expired = self.writes.expire(now) or expired
        expired = self.forwarder.expire(now) or expired
        expired = self.config_changes.expire(now) or expired
        expired = self.session_reads.expire(now, self.applied) or expired
        if expired:
            self._flush_clients()
        if self._expiry_inflight and not self.is_leader:
            self._expiry_inflight = 0

    # -- INFO -------------------------------------------------------------------------------------------------
    def info(self, wanted: list[str]) -> str:
        node = self.core
        sections = self.info_sections()
        sections["persistence"] = self.persistence_info(node.log.snapshot.index)
        c = node.log.config()
        rep = [f"role:{'master' if self.is_leader else 'slave'}", f"replikv_node:{self.id}",
               f"replikv_raft_role:{node.role.value}", f"replikv_epoch:{node.term}",
               f"replikv_leader:{self.leader_name}", f"master_repl_offset:{node.log.last_index}",
               f"replikv_commit_index:{node.log.commit}", f"replikv_applied_index:{self.applied}",
               f"replikv_voters:{','.join(self.names.get(i, str(i)) for i in sorted(c.voters))}",
               f"replikv_learners:{','.join(self.names.get(i, str(i)) for i in sorted(c.learners))}",
               f"replikv_ack:{self.default_ack}",
               f"replikv_follower_logs_lost:{node.follower_logs_lost}",  # as leader (raft messages.py)
               f"replikv_log_memory_bytes:{node.log_bytes}"]
        if self.is_leader:
            followers = [i for i in sorted(node.progress) if i != self.raft_id]
            rep.append(f"connected_slaves:{sum(1 for i in followers if self.transport.connected(self.names.get(i, '')))}")
            # back-pressure's follower, max-log-bytes (the log's own bound), or empty
            rep.append(f"replikv_writes_held_by:{self.writes_held_by}")
            for n, i in enumerate(followers):
                pr = node.progress[i]
                name = self.names.get(i, str(i))
                addr = self.config.nodes.get(name)
                state = "online" if self.transport.connected(name) and pr.match > 0 else "offline"
                lag_s = self._lag_s(pr.match)
                rep.append(f"slave{n}:ip={addr.host if addr else ''},port={addr.port if addr else 0},state={state},"
                           f"offset={pr.match},lag={int(lag_s)},id={name},lag_ops={node.log.last_index - pr.match},"
                           f"lag_ms={int(lag_s * 1000)},"
                           f"match_index={pr.match},progress={pr.state.value},snapshot_index={pr.pending_snapshot}")
        else:
            leader = self.config.nodes.get(self.leader_name)
            up = bool(self.leader_name) and self.transport.connected(self.leader_name)
            rep += [f"master_host:{leader.host if leader else ''}", f"master_port:{leader.port if leader else 0}",
                    f"master_link_status:{'up' if up else 'down'}", f"slave_repl_offset:{self.applied}",
                    f"replikv_lag_ms:{self._staleness_ms() if up else -1}"]
        sections["replication"] = rep
        sections["keyspace"] = [self.sm.keyspace_info()] if self.sm.dbsize else []
        return render_info(sections, wanted)


__all__ = ["RaftRunner", "raft_frame", "raft_id"]


