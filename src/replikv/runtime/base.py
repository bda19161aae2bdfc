"""What every node runtime shares, whatever its replication mode.

``BaseRunner`` is the part of a node that ``ClientConnection`` and the
connection/admin handlers (``runtime/commands.py``) rely on:

- the node's identity, options, data directory and protected-mode check;
- client bookkeeping (``clients``, ``dirty_clients``, ``_flush_clients``);
- command dispatch (``execute``): arity, AUTH, MULTI queueing, then routing
  to the mode's ``_write_one`` (a data write), ``_read`` (a data read) or a
  handler of ``commands.HANDLERS``;
- the INFO skeleton (server, clients, stats, keyspace sections; the mode
  adds persistence and replication);
- the disk guard: when the WAL cannot be written (a full disk), writes are
  refused at once with ``-MISCONF`` (as Redis does), reads go on, the node
  retries once a second and resumes by itself (``_disk_failed`` /
  ``_retry_disk``; the mode freezes its core meanwhile, see below).

A mode's runner subclasses it (runtime/leader_follower.py,
runtime/raft_runner.py) and provides the rest of the contract in
``runtime/mode.py``: ``_write_one``, ``_read``, ``is_leader``,
``ack_replicas``, transactions, WAIT, failover, admin, snapshots and the INFO
sections it owns. What differs between modes and is not behaviour (levels,
defaults, claims) comes from ``self.spec`` (modes/spec.py).

Invariant (pipeline order): every command gets exactly one reply through
``conn`` (directly, or through a ``Slot`` resolved later), so replies leave in
the order the commands arrived (resp_server.py).

Invariant (disk guard): while ``disk_error`` is set, nothing that depends on
the WAL records the failed write kept buffered leaves the node: no ack or
vote to a peer, no reply acknowledging a write. The mode's core is frozen
(no ticks, no proposals, peer messages dropped), so its log cannot move past
what the WAL holds; a peer sees a silent node, which every protocol here
already survives. A write that was executed but not written gets an error
saying it may still be applied (the WAL keeps it and writes it when the disk
has room; a crash first loses it, and it was never acknowledged). On resume
the mode re-synchronises with its peers (``_on_disk_resumed``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import time
from time import perf_counter_ns
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

from replikv import __version__, modes
from replikv.config import ClusterConfig, ConfigError, NodeOptions, is_loopback
from replikv.core.invariant import InvariantViolation
from replikv.core.replies import RespError, wrong_arity
from replikv.core.resp import QUEUED_REPLY
from replikv.kv.commands import lookup, unknown_command
from replikv.kv.watch import ChangeIndex
from replikv.runtime.acl import AccessControl
from replikv.runtime.blocking import Blocking
from replikv.runtime.config_cmd import ACCEPTED
from replikv.runtime.info import CommandStats, SlowLog, cpu_section, rss_bytes
from replikv.runtime.loop_probe import LOOP_PROBE_ENV, LOOP_PROBE_STACKS_ENV, LoopProbe
from replikv.runtime.metrics import CommandLatency, MetricsServer
from replikv.runtime.memory import OOM, MemoryLimit
from replikv.runtime.forwarding import Forwarder, no_leader_error
from replikv.runtime.pubsub import SUBSCRIBED_ALLOWED, PubSub
from replikv.runtime.resp_server import ClientConnection, Slot
from replikv.runtime.snapshotter import BackgroundSnapshotter
from replikv.runtime.tcp_transport import PeerTransport
from replikv.runtime.tls import client_listener_context, peer_contexts
from replikv.storage.errors import (
    CorruptLogError, MissingMetaError, StorageError, WalBlockedError, WalFailedError,
)
from replikv.storage.files import private_dir
from replikv.storage.recovery import open_storage
from replikv.storage.snapshot import Snapshot

log = logging.getLogger("replikv.node")

_WRITE, _READ, _HANDLER, _BLOCKING = 0, 1, 2, 3
_CLASS_OF_KIND = ("write", "read", "other", "other")  # the /metrics latency class of each kind


def wall_ms() -> int:
    """This node's wall clock in ms: the time a write is stamped with where a mode decides it."""
    return time.time_ns() // 1_000_000
# An HTTP request a browser was tricked into sending (Redis's guard): never executed
_CROSS_PROTOCOL = frozenset({b"POST", b"HOST:"})
# INFO replikv_writes_held_by when the log kept in memory, not a follower, holds writers back
LOG_HOLD = "max-log-bytes"
DISK_RETRY_S = 1.0  # as Redis retries a failed AOF write once a second
# a follower installing its leader's snapshot decodes it in slices and answers reads with LOADING
# meanwhile (Redis's reply while a replica loads the master's RDB; clients retry it)
LOADING = "LOADING replikv is loading the dataset in memory (a snapshot from the leader)"
_BEFORE_AUTH = frozenset({"AUTH", "HELLO", "QUIT"})
# What a pipelined read may run as one run (``BaseRunner.execute_batch``): the command's name
# and the one argument count that qualifies (GET key; SET key value, with no option).
_RUN_ARGC = {"get": 2, "set": 3}
_MULTI_CONTROL = frozenset({"EXEC", "DISCARD", "MULTI", "QUIT", "WATCH", "UNWATCH", "RESET"})
class BaseRunner:
    # what ``execute_batch`` may hand to ``_read_run`` / ``_write_run`` as one run: a command
    # name and the one argument count that qualifies (a mode may take more kinds of run)
    run_argc: dict[str, int] = _RUN_ARGC

    def __init__(self, config: ClusterConfig, node_id: str) -> None:
        from replikv.runtime.commands import HANDLERS  # the connection/admin commands

        config.validate()
        self._handlers: dict[str, Any] = HANDLERS
        self.config = config
        self.address = config.node(node_id)
        self.id = node_id
        self.options: NodeOptions = config.options
        self.spec = modes.get(config.mode)
        opts = self.options
        self.default_ack = self.spec.default_write(opts)
        if not is_loopback(self.address.host) and (not opts.requirepass or not config.secret):
            raise ConfigError(
                f"protected mode: node {node_id} would listen on non-loopback address {self.address.host} "
                "without --requirepass and a cluster secret; set both, or bind to 127.0.0.1")
        self.acl = AccessControl(opts.requirepass, opts.aclfile)
        self.data_dir = private_dir(self.address.data_dir)
        self.snapshot_dir = private_dir(self.data_dir / "snapshots", narrow=True)
        self.snapshotter = BackgroundSnapshotter(node_id, self.snapshot_dir)  # automatic snapshots
        self.clients: dict[int, ClientConnection] = {}
        self.clients_gone = False  # a client disconnected since the runner last dropped dead waiters
        self.dirty_clients: set[ClientConnection] = set()
        self._dispatch: dict[bytes, tuple[Any, int, Any, list[int]]] = {}
        # spellings of the ``run_argc`` commands seen: (their dispatch entry, the argument count)
        self._runnable: dict[bytes, tuple[tuple[Any, int, Any, list[int]], int]] = {}
        self.commands_processed = 0
        self.frames_in = 0
        self.stats: dict[str, int] = {"total_connections_received": 0, "rejected_calls": 0,
                                      "disk_write_errors": 0, "backpressure_holds": 0, "backpressure_ms": 0,
                                      "backpressure_log_holds": 0,
                                      # pipelined runs served as one (execute_batch), and their commands
                                      "replikv_command_runs": 0, "replikv_command_run_commands": 0}
        # back-pressure on writers (check_backpressure): the follower that holds writes back
        # now, or LOG_HOLD ("" while nothing does), since when, and the writers not read meanwhile
        self.writes_held_by = ""
        self._writes_held_since = 0.0
        self._held_writers: set[ClientConnection] = set()
        self.started = time.time()
        self.forwarder = Forwarder(self)  # writes sent on to the leader (runtime/forwarding.py)
        self.pubsub = PubSub(self)  # messages to subscribers of every node (runtime/pubsub.py)
        self.blocking = Blocking(self)  # BLPOP & co waiting for data (runtime/blocking.py)
        self.cmdstats = CommandStats()  # INFO commandstats / errorstats (runtime/info.py)
        # /metrics (runtime/metrics.py): latency histograms only kept when a metrics port is set
        self.latency: CommandLatency | None = CommandLatency() if self.address.metrics_port else None
        self.metrics: MetricsServer | None = None
        self.slowlog = SlowLog()
        self.peak_rss = 0
        self.memory = MemoryLimit(self)  # maxmemory and eviction (runtime/memory.py)
        self.lastsave = int(time.time())  # LASTSAVE (as Redis: the start until a snapshot)
        self.evicting: set[bytes] = set()  # keys whose eviction is proposed, not yet applied
        self.accepted_config = dict(ACCEPTED)  # CONFIG tunables without effect (runtime/config_cmd.py)
        self.loglevel = {"debug": "debug", "warning": "warning"}.get(config.options.log_level, "notice")
        # replies of writes held until the WAL commit of their batch (hold_until_commit)
        self.held_conns: list[ClientConnection] = []  # connections with replies held on them
        self.flush_waiters: list[tuple[Slot, bytes]] = []  # replies queued behind a slot
        self.disk_error: str | None = None  # why the WAL cannot be written (see the disk guard)
        self.disk_error_fatal = False
        self._disk_error_since = 0.0

    # -- process life ---------------------------------------------------------------
    async def start_io(self, on_peer_connected: Callable[[str], None],
                       loops: list[Callable[[], Coroutine[Any, Any, None]]]) -> None:
        """Listen for peers and clients; run the mode's timer loops and ``_fsync_loop``."""
        loop = asyncio.get_running_loop()
        self.loop = loop
        peers = {p: (self.config.nodes[p].host, self.config.nodes[p].peer_port) for p in self.peer_ids}
        opts = self.options
        peer_tls = peer_contexts(opts) if opts.tls_replication else (None, None)
        self.transport = PeerTransport(
            self.id, self.address.host, self.address.peer_port, peers, self.config.secret,
            on_frame=self._on_frame, on_connected=on_peer_connected,
            on_disconnected=self._on_peer_disconnected, on_receiving=self.peer_receiving,
            max_frame_bytes=opts.max_frame_bytes,
            ssl_server=peer_tls[0], ssl_client=peer_tls[1], peer_delay_ms=opts.peer_delay_ms,
            peer_jitter_ms=opts.peer_jitter_ms, link_delays=opts.link_delays(self.id),
            coalesce=self.coalesce_peer_frames)
        await self.transport.start()
        self.server = await loop.create_server(lambda: ClientConnection(self), self.address.host,
                                               self.address.port, reuse_address=True)
        self.tls_server = None
        if self.address.tls_port:
            self.tls_server = await loop.create_server(
                lambda: ClientConnection(self), self.address.host, self.address.tls_port,
                reuse_address=True, ssl=client_listener_context(opts))
        if self.address.metrics_port:
            self.metrics = MetricsServer(self)
            await self.metrics.start(self.address.host, self.address.metrics_port)
        probe_ms = os.environ.get(LOOP_PROBE_ENV)
        if probe_ms:
            probe = LoopProbe(self.id, self.stats, float(probe_ms) / 1000,
                              stacks=os.environ.get(LOOP_PROBE_STACKS_ENV) == "1")
            loops = [*loops, probe.run]
        self._tasks = [asyncio.create_task(self._guarded(fn)) for fn in (*loops, self._fsync_loop)]

    async def _guarded(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a timer loop for the node's lifetime.

        A failed loop would leave a node that answers clients but never ticks
        (no heartbeats, no resync, no expiry): an ordinary exception is logged
        and the loop restarted; a broken invariant stops the process (fail-stop,
        the supervisor reports it).
        """
        while True:
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except InvariantViolation:
                log.critical("invariant violated in %s; stopping node %s", fn.__name__, self.id, exc_info=True)
                os._exit(70)
            except Exception:
                log.exception("%s failed; restarting it", fn.__name__)
                await asyncio.sleep(0.01)

    async def stop_io(self) -> None:
        """Stop timers, clients and peers; the mode then closes its storage."""
        for task in self._tasks:
            task.cancel()
        self.server.close()
        if self.tls_server is not None:
            self.tls_server.close()
        if self.metrics is not None:
            self.metrics.close()
        for client in list(self.clients.values()):
            if client.transport is not None:
                client.transport.close()
        await self.transport.stop()

    def _sync_wal(self) -> None:
        """Start the everysec fsync off the event loop (storage/wal.py ``sync_in_background``)
        and credit it on the loop when it is done. On the loop, an fsync behind a disk busy
        with a snapshot's writeback blocked heartbeats past the election timeout (issue 15)."""
        try:
            future = self.wal.sync_in_background()
        except WalFailedError as exc:
            self._disk_failed(exc)
            return
        if future is not None:
            loop = asyncio.get_running_loop()

            def done(_f: object) -> None:  # on the sync thread
                try:
                    loop.call_soon_threadsafe(self._wal_synced)
                except RuntimeError:
                    pass  # the loop is closed: the WAL's close waited for this fsync

            future.add_done_callback(done)

    def _wal_synced(self) -> None:
        try:
            self.wal.collect_background_sync()
        except WalFailedError as exc:
            self._disk_failed(exc)

    async def _fsync_loop(self) -> None:
        """Once a second: fsync under ``everysec``, on the WAL's sync thread
        (``_sync_wal``); move survivors out of the GC's sight.

        The log and the data set are millions of long-lived containers that
        never form cycles; letting the cyclic GC re-scan them made full
        collections cost tens of milliseconds on every busy second (seen as
        p99 spikes and as most of a follower's CPU). ``gc.freeze`` parks what
        survived a young collection in the permanent generation; reference
        counting still frees it. The price: a garbage cycle alive at the
        moment of a freeze is never collected.
        """
        while True:
            await asyncio.sleep(1.0)
            if self.options.fsync == "everysec" and self.disk_error is None:
                self._sync_wal()
            gc.collect(1)
            gc.freeze()
            if self.options.timeout:
                self._close_idle_clients(time.monotonic() - self.options.timeout)
            if self.disk_error is None:
                self._every_second()

    async def ticks(self, interval_s: float) -> AsyncIterator[float]:
        """A mode's timer loop clock: the monotonic time of each tick, every ``interval_s``. After a
        long pause it does not replay a burst of ticks; a tick more than ten intervals late is a
        stall (INFO ``tick_stalls``, logged)."""
        next_tick = time.monotonic()
        while True:
            next_tick += interval_s
            delay = next_tick - time.monotonic()
            if delay < -5 * interval_s:  # fell far behind (a pause): do not replay a burst of ticks
                next_tick = time.monotonic() + interval_s
                delay = interval_s
            await asyncio.sleep(max(0.0, delay))
            now = time.monotonic()
            if now - next_tick > 10 * interval_s:
                self.stats["tick_stalls"] = self.stats.get("tick_stalls", 0) + 1
                log.warning("node %s: tick %.0f ms late (event loop stalled)", self.id, (now - next_tick) * 1000)
            yield now

    _drain_scheduled = False
    # the peer transport holds the frames sent in a loop iteration and writes each peer's in one
    # write at its end (runtime/tcp_transport.py, coalescing): the sharded raft mode's many groups
    coalesce_peer_frames = False
    # called when part of a peer's frame arrived and the rest is on its way (the transport's
    # on_receiving); None: the mode does not need to know
    peer_receiving: Callable[[str], None] | None = None

    def _schedule(self) -> None:
        """Run the mode's ``_drain`` once at the end of this loop iteration (raft: one core call
        and one WAL commit for everything that arrived in it)."""
        if not self._drain_scheduled and hasattr(self, "loop"):
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)  # type: ignore[attr-defined]

    def _every_second(self) -> None:
        """A mode's once-a-second bookkeeping (raft records its commit index)."""

    def _close_idle_clients(self, before: float) -> None:
        """Redis's ``timeout``: close clients silent since ``before`` (not one waiting on a reply)."""
        for conn in [c for c in self.clients.values() if c.last_active < before and not c.queue]:
            if conn.transport is not None:
                conn.transport.close()

    # -- the disk guard ------------------------------------------------------------
    def _disk_failed(self, exc: BaseException, fatal: bool = False) -> None:
        """The WAL refused a write (blocked: retried) or failed for good (fatal).

        One log line per state change; the mode's ``_on_disk_blocked`` answers
        what was waiting on the failed write and the core stays frozen until
        ``_retry_disk`` succeeds. ``fatal``: the caller knows a retry cannot
        make the log and the WAL agree again (only a restart's recovery can)."""
        fatal = fatal or not isinstance(exc, WalBlockedError) or self.wal.failed is not None
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        reason = (cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause))
        self.stats["disk_write_errors"] += 1
        if self.disk_error is None:
            self._disk_error_since = time.monotonic()
            if fatal:
                log.error("node %s: the WAL failed (%s); writes are refused and the node must be "
                          "restarted to recover its log; reads are still served", self.id, exc)
            else:
                log.warning("node %s: cannot write the WAL (%s); refusing writes and retrying every %.0f s; "
                            "reads are still served", self.id, exc, DISK_RETRY_S)
                self.loop.create_task(self._retry_disk())
        elif fatal and not self.disk_error_fatal:
            log.error("node %s: the WAL failed (%s); the node must be restarted", self.id, exc)
        self.disk_error = reason
        self.disk_error_fatal = self.disk_error_fatal or fatal
        self._on_disk_blocked()

    async def _retry_disk(self) -> None:
        """Once a second, write what the WAL kept; resume the node when it succeeds."""
        while self.disk_error is not None and not self.disk_error_fatal:
            await asyncio.sleep(DISK_RETRY_S)
            try:
                if not self.wal.retry() or not self._retry_mode_storage():
                    continue
            except (WalFailedError, OSError) as exc:
                self._disk_failed(exc)
                return
            if self.disk_error_fatal:
                return
            log.warning("node %s: the WAL accepts writes again after %.1f s (%s); resuming", self.id,
                        time.monotonic() - self._disk_error_since, self.disk_error)
            self.disk_error = None
            self._on_disk_resumed()

    def _retry_mode_storage(self) -> bool:
        """Retry what the mode writes beside the WAL (raft: its hard state); True when done."""
        return True

    def _on_disk_blocked(self) -> None:  # pragma: no cover - a mode provides it
        raise NotImplementedError

    def _on_disk_resumed(self) -> None:  # pragma: no cover - a mode provides it
        raise NotImplementedError

    # -- replies held until the WAL commit -------------------------------------------
    def hold_until_commit(self, conn: ClientConnection, data: bytes) -> None:
        """Keep a write's reply ``data`` until the WAL commit of its batch (``release_committed``):
        on the connection itself when nothing waits before it (the common case: no slot), else
        behind a slot in pipeline order."""
        self.hold_all_until_commit(conn, [data])

    def hold_all_until_commit(self, conn: ClientConnection, replies: list[bytes]) -> None:
        """``hold_until_commit`` for the replies of consecutive writes of ``conn``, in order."""
        if conn.queue:
            self.flush_waiters += [(conn.slot(), data) for data in replies]
        else:
            if not conn.held:
                self.held_conns.append(conn)
            conn.held += replies

    # -- nodes added ---------------------------------------------------------------------------
    def _learn_addresses(self) -> None:
        """Nodes added since this one started: ``replikv cluster add`` wrote their addresses into
        cluster.toml. Each becomes a transport peer; ``_address_learned`` tells the mode."""
        if not self.config.source:
            return
        try:
            fresh = ClusterConfig.load(self.config.source)
        except ConfigError as e:
            log.warning("node %s cannot reload %s: %s", self.id, self.config.source, e)
            return
        for name, addr in fresh.nodes.items():
            if name in self.config.nodes:
                continue
            self.config.nodes[name] = addr
            if name != self.id:
                self.peer_ids.append(name)
                if hasattr(self, "transport"):
                    self.transport.add_peer(name, (addr.host, addr.peer_port))
            self._address_learned(name)
            log.info("node %s learned the address of node %s (%s:%d)", self.id, name, addr.host, addr.peer_port)

    def _address_learned(self, name: str) -> None:
        """A node learned from cluster.toml (raft modes: its raft id's name)."""

    # -- back-pressure on writers -----------------------------------------------------------
    def lagging_follower(self) -> str:
        """The follower that should hold new writes back now, or "" (a mode whose core has
        the rule provides it: core/shipping/node.py rule 10, RaftNode.lagging_follower)."""
        return ""

    def log_over_bound(self) -> bool:
        """Whether the log this leader keeps in memory exceeds --max-log-bytes (a mode whose
        core has the rule provides it: core/shipping/node.py rule 11, RaftNode.log_over)."""
        return False

    def hold_writer(self, conn: ClientConnection) -> None:
        """A write was just taken from ``conn``: while writes are held back, what the writer
        already sent runs, and its connection is not read again until they are released."""
        if self.writes_held_by:
            conn.hold_writes(True)
            self._held_writers.add(conn)

    def check_backpressure(self) -> None:
        """Hold writers back while a follower lags too far (``lagging_follower``) or the log
        kept in memory is over its bound (``log_over_bound``: ``writes_held_by`` is then
        LOG_HOLD), release them when neither is so; the mode calls it after every commit,
        ack and tick."""
        peer = self.lagging_follower() or (LOG_HOLD if self.log_over_bound() else "")
        if peer == self.writes_held_by:
            return
        if peer and not self.writes_held_by:
            self.stats["backpressure_holds"] += 1
            self.stats["backpressure_log_holds"] += peer == LOG_HOLD
            self._writes_held_since = time.monotonic()
            log.debug("node %s: writes held back by %s", self.id, peer)
        elif not peer:
            self.stats["backpressure_ms"] += int((time.monotonic() - self._writes_held_since) * 1000)
            writers, self._held_writers = self._held_writers, set()
            for conn in writers:
                conn.hold_writes(False)
        self.writes_held_by = peer

    def release_committed(self) -> None:
        """The WAL commit holding every held reply's write is done: let them go."""
        if self.held_conns:
            held, self.held_conns = self.held_conns, []
            for conn in held:
                conn.release_held()
        if self.flush_waiters:
            waiters, self.flush_waiters = self.flush_waiters, []
            for slot, data in waiters:
                slot.resolve(data)

    def fail_held(self, err: bytes) -> None:
        """The disk guard: every held reply becomes ``err`` (the write may still be applied)."""
        held, self.held_conns = self.held_conns, []
        for conn in held:
            conn.held[:] = [err] * len(conn.held)
            conn.release_held()
        waiters, self.flush_waiters = self.flush_waiters, []
        for slot, _ in waiters:
            slot.resolve(err)

    def disk_refusal(self) -> RespError:
        """The error a write gets while the WAL cannot be written (Redis's MISCONF)."""
        if self.disk_error_fatal:
            return RespError(f"MISCONF {self.id} cannot write its write-ahead log ({self.disk_error}); "
                             "writes are refused until the node is restarted; reads are still served")
        return RespError(f"MISCONF {self.id} cannot write its write-ahead log ({self.disk_error}); "
                         "writes are refused until it can (retried every second); reads are still served")

    def disk_inflight_error(self) -> RespError:
        """The error of a write executed but not yet written when the WAL failed."""
        return RespError(f"MISCONF {self.id} could not write its write-ahead log ({self.disk_error}); "
                         "this write was not acknowledged and may still be applied if the disk recovers")

    def open_storage(self) -> tuple[dict[str, Any], Snapshot | None, Iterator[tuple[int, list[Any]]]]:
        """Recovery, the part every mode shares (storage/recovery.py): sets ``meta`` and ``wal``;
        returns (meta, snapshot or None, the WAL's records after the snapshot, to replay in order)."""
        opts = self.options
        opened = open_storage(self.data_dir, self.snapshot_dir, fsync=opts.fsync, segment_bytes=opts.segment_bytes)
        self.meta, self.wal = opened.meta_store, opened.wal
        return opened.meta, opened.snapshot, opened.records

    def cluster_command(self, conn: ClientConnection, argv: list[bytes]) -> None:
        """CLUSTER ...: only a sharded cluster speaks Redis Cluster (runtime/sharded_raft.py)."""
        raise RespError("ERR This instance has cluster support disabled")

    maxmemory_offered = True  # CONFIG SET maxmemory: eviction from the node's one data set (runtime/memory.py)
    blocking_offered = True  # BLPOP & co (runtime/blocking.py); a mode without one change index says no
    lock_service: Any = None  # LOCK & co (runtime/locks.py): a mode that offers locks sets its LockService

    def digest(self) -> bytes:
        """REPLIKV DIGEST: a hash of the data this node holds (equal on converged replicas)."""
        digest: bytes = self.sm.digest()  # type: ignore[attr-defined]
        return digest

    def digest_parts(self) -> list[tuple[str, tuple[str, ...], bytes]]:
        """REPLIKV DIGESTS: the data this node holds in parts, each with the nodes that must
        hold it: ``(label, holders, digest)``, converged when every holder of a part has it
        with one digest (check/convergence.py). ``holders`` empty: every node, as here, where
        each node holds all the data; a mode whose nodes hold different shares (leaderless
        with fewer replicas than nodes, sharded raft) names each share's nodes."""
        return [("all", (), self.digest())]

    def default_read_level(self) -> tuple[str, int]:
        return self.spec.default_read(self.options), 0

    def session_token(self, conn: ClientConnection) -> bytes:
        """SESSION: the log index of this connection's last write (or the token it named)."""
        return str(conn.session_index).encode()

    def set_session(self, conn: ClientConnection, token: bytes) -> None:
        """SESSION token: reads on this connection wait until this node has applied ``token``."""
        if not token.isdigit() or len(token) > 19:
            raise RespError("ERR usage: SESSION [token] where token is what SESSION returned")
        conn.session_index = int(token)
        conn.read_level = "session" if not self.is_leader else conn.read_level

    def vget(self, conn: ClientConnection, argv: list[bytes]) -> None:
        """VGET: only modes that keep concurrent versions have it."""
        conn.reply(self._no_versions("VGET"))

    def vset(self, conn: ClientConnection, argv: list[bytes]) -> None:
        conn.reply(self._no_versions("VSET"))

    def _no_versions(self, name: str) -> RespError:
        return RespError(f"ERR {name} is not offered in {self.spec.name} mode: it keeps one version per key, "
                         "ordered by its log (--mode multi-leader keeps concurrent versions)")

    def admin(self, conn: ClientConnection, argv: list[bytes]) -> None:
        """REPLIKV subcommands of the mode (``spec.admin``); a mode with some overrides this."""
        raise RespError(f"ERR REPLIKV {argv[1].decode(errors='replace')} is not offered in {self.spec.name} mode")

    # -- what a mode provides -------------------------------------------------
    @property
    def is_leader(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _write_one(self, conn: ClientConnection, argv: list[bytes]) -> None:  # pragma: no cover
        raise NotImplementedError

    def _read(self, conn: ClientConnection, argv: list[bytes]) -> None:  # pragma: no cover
        raise NotImplementedError

    # -- command dispatch -------------------------------------------------------
    def _resolve(self, name: bytes) -> tuple[Any, int, Any, list[int]] | None:
        """(spec, kind, handler, its INFO commandstats row) for a command name as
        sent, cached per spelling."""
        spec = lookup(name)
        if spec is None:
            return None
        upper = spec.name.upper()
        handler = self._handlers.get(upper)
        kind = (_HANDLER if handler is not None else _BLOCKING if "blocking" in spec.flags
                else _WRITE if "write" in spec.flags else _READ)
        entry = (spec, kind, handler, self.cmdstats.row(spec.name))
        if len(self._dispatch) < 4096:
            self._dispatch[name] = entry
            argc = self.run_argc.get(spec.name)
            if argc is not None and kind in (_READ, _WRITE):
                self._runnable[name] = (entry, argc)
        return entry

    def _read_run(self, conn: ClientConnection, spec: Any, run: list[list[bytes]]) -> int:
        """Serve ``run`` (reads of ``spec``, each of its qualifying argument count) as
        ``_read`` would one by one, replies in order; returns how many it ran: all of them,
        or fewer when the connection closed on the way (its unread replies over the limit),
        or 0 (nothing done) where the mode has no such path now, and ``execute_batch`` runs
        them one by one."""
        return 0

    def _write_run(self, conn: ClientConnection, spec: Any, run: list[list[bytes]]) -> int:
        """``_read_run`` for writes: as ``_write_one`` would run each command of ``run``."""
        return 0

    def internal_error(self, spec: Any, exc: Exception) -> RespError:
        """The reply to a command that raised (a bug: logged; the connection and the node go on)."""
        log.error("command %r failed", spec.name, exc_info=exc)
        return RespError(f"ERR internal error running '{spec.name.lower()}': {type(exc).__name__}")

    def execute_batch(self, conn: ClientConnection, commands: list[list[bytes]]) -> None:
        """Run the commands of one read of ``conn`` in order (replies in pipeline order).

        A run of two or more consecutive commands with the same spelling of a ``run_argc``
        name and its argument count (a pipeline of GETs, of plain SETs) goes to the mode's
        ``_read_run`` / ``_write_run`` when ``_execute_run``'s checks clear it as a whole;
        everything else goes through ``execute`` one by one. Either way the replies, the
        data and the counters (INFO commandstats calls / usec / failed_calls,
        total_commands_processed) are those of running each command with ``execute``.
        """
        execute = self.execute
        runnable = self._runnable
        n = len(commands)
        i = 0
        while i < n and not conn.closing:
            argv = commands[i]
            fast = runnable.get(argv[0])
            if fast is None or len(argv) != fast[1]:
                execute(conn, argv)
                i += 1
                continue
            name, argc = argv[0], fast[1]
            j = i + 1
            while j < n and len(commands[j]) == argc and commands[j][0] == name:
                j += 1
            if j - i > 1 and self._execute_run(conn, fast[0], commands[i:j]):
                i = j
                continue
            for argv in commands[i:j]:
                if conn.closing:
                    return
                execute(conn, argv)
            i = j

    def _execute_run(self, conn: ClientConnection, entry: tuple[Any, int, Any, list[int]],
                     run: list[list[bytes]]) -> bool:
        """``execute`` for a run of one command (see ``execute_batch``); False, with nothing
        done, unless every check ``execute`` makes passes for the whole run at once.

        - The arity and the name were checked by ``execute_batch`` (one qualifying count).
        - Not for a connection that must authenticate, queues a MULTI block or is subscribed
          (RESP2), nor under maxmemory (its admission and LRU/LFU touch are per command):
          those take ``execute``, one by one.
        - ACL: once for the run, when the user may run the command on every key
          (``User.allows_everywhere``); a user limited to some keys takes ``execute``,
          which checks each command's keys.
        - Counters: each command counts one call; the run is timed once and its time is the
          sum of the commands' (INFO commandstats usec). ``/metrics`` latency observes each
          command at the run's mean.
        - SLOWLOG (decided here, for runs only): a command's own time is not measured, only
          the run's. When the run took at least ``slowlog-log-slower-than``, every command
          of it is logged with the run's time, an upper bound of its own: no command that was
          slow is left out; a command of a slow run may be logged that alone was not. A run
          faster than the threshold cannot hold a command slower than it: none is logged.
        """
        spec, kind, _, stats = entry
        if (not conn.authenticated or conn.multi is not None or conn.channels or conn.patterns
                or self.memory.maxmemory or not conn.user.allows_everywhere(spec)):
            return False
        started, errors = perf_counter_ns(), conn.errors
        count = (self._write_run if kind == _WRITE else self._read_run)(conn, spec, run)
        if not count:
            return False
        ns = perf_counter_ns() - started
        self.commands_processed += count
        self.stats["replikv_command_runs"] += 1
        self.stats["replikv_command_run_commands"] += count
        conn.last_cmd = spec.name
        stats[0] += count
        stats[1] += ns
        stats[3] += conn.errors - errors  # answered with an error at once (one reply per command)
        if self.latency is not None:
            self.latency.observe_run(_CLASS_OF_KIND[kind], ns, count)
        if ns >= self.slowlog.threshold_ns:
            for argv in run[:count]:
                self.slowlog.maybe_add(ns, argv, conn.addr, conn.name)
        return True

    def execute(self, conn: ClientConnection, argv: list[bytes]) -> None:
        """Run one parsed command for ``conn`` (replies in pipeline order)."""
        if not argv:
            return
        self.commands_processed += 1
        entry = self._dispatch.get(argv[0]) or self._resolve(argv[0])
        if entry is None:
            if argv[0].upper() in _CROSS_PROTOCOL:
                self._cross_protocol_attack(conn)
                return
            self.stats["rejected_calls"] += 1
            self.cmdstats.error("ERR")
            conn.reply(unknown_command(argv))
            if conn.multi is not None:
                conn.multi_dirty = True
            return
        spec, kind, handler, stats = entry
        arity = spec.arity
        if (len(argv) != arity) if arity > 0 else (len(argv) < -arity):
            self.stats["rejected_calls"] += 1
            self.cmdstats.rejected(spec.name, "ERR")
            conn.reply(wrong_arity(spec.name))
            if conn.multi is not None:
                conn.multi_dirty = True
            return
        if not conn.authenticated and spec.name.upper() not in _BEFORE_AUTH:
            conn.reply(RespError("NOAUTH Authentication required."))
            return
        if not conn.user.unrestricted:
            denied = conn.user.denial(spec, argv)
            if denied is not None:
                self.stats["rejected_calls"] += 1
                self.cmdstats.rejected(spec.name, denied.message)
                conn.reply(denied)
                if conn.multi is not None:
                    conn.multi_dirty = True
                return
        if (conn.channels or conn.patterns) and not conn.resp3 and spec.name.upper().encode() not in SUBSCRIBED_ALLOWED:
            conn.reply(RespError(f"ERR Can't execute '{spec.name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / "
                                 "PING / QUIT / RESET are allowed in this context"))
            return
        memory = self.memory
        if memory.maxmemory:  # a cache: refuse or evict before a write that may grow memory
            if "denyoom" in spec.flags and self.is_leader and not memory.admit(argv):
                self.cmdstats.rejected(spec.name, "OOM")
                conn.reply(OOM)
                if conn.multi is not None:
                    conn.multi_dirty = True
                return
            if memory.tracking and kind != _HANDLER:
                memory.touch(spec.keys(argv))
        if conn.multi is not None and spec.name.upper() not in _MULTI_CONTROL:
            if kind == _HANDLER:
                conn.reply(RespError("ERR Command not allowed inside a transaction"))
                conn.multi_dirty = True
                return
            conn.multi.append(argv)
            conn.reply_bytes(QUEUED_REPLY)
            return
        conn.last_cmd = spec.name
        started, errors = perf_counter_ns(), conn.errors
        try:
            if kind == _WRITE:
                self._write_one(conn, argv)
            elif kind == _READ:
                self._read(conn, argv)
            elif kind == _BLOCKING:
                if not self.blocking.start(conn, spec, argv):  # XREAD without BLOCK
                    (self._write_one if spec.is_write else self._read)(conn, argv)
            else:
                handler(self, conn, argv)
        except InvariantViolation:
            raise
        except Exception as e:  # a bug must not take the connection (or the node) down
            conn.reply(self.internal_error(spec, e))
        ns = perf_counter_ns() - started
        stats[0] += 1
        stats[1] += ns
        if self.latency is not None:
            self.latency.observe(_CLASS_OF_KIND[kind], ns)
        if conn.errors != errors:  # answered with an error at once (later errors count in errorstats)
            stats[3] += 1
        if ns >= self.slowlog.threshold_ns:
            self.slowlog.maybe_add(ns, argv, conn.addr, conn.name)

    def _cross_protocol_attack(self, conn: ClientConnection) -> None:
        """As Redis: a ``POST`` or ``Host:`` line is a browser's HTTP request smuggled
        to the RESP port; log it (not the request) and close without executing anything."""
        self.stats["cross_protocol_attacks"] = self.stats.get("cross_protocol_attacks", 0) + 1
        log.warning("possible SECURITY ATTACK: %s sent POST or Host: (an HTTP request) to the RESP port; "
                    "connection closed", conn.addr)
        conn.multi = None
        conn.closing = True
        conn.out.clear()
        conn.queue.clear()
        if conn.transport is not None:
            conn.transport.abort()

    # -- helpers both modes use ---------------------------------------------------------
    def service_frame(self, peer: str, payload: bytes) -> bool:
        """Take a peer frame of a shared service (forwarding, Pub/Sub); False for
        a frame of the mode's own protocol. Their kinds are told apart by the
        first byte, which no mode's codec uses."""
        return self.forwarder.handle(peer, payload) or self.pubsub.handle(peer, payload)

    def peer_message(self, peer: str, payload: bytes, decode: Callable[[bytes], Any]) -> Any:
        """A mode's peer frame decoded with its codec, or None (logged) for one that does not
        decode or is signed by another node than the connection's (a peer speaking garbage is
        dropped, never obeyed). A protocol whose messages carry no sender (leaderless) takes the
        authenticated connection's peer as the sender."""
        try:
            msg = decode(payload)
        except ValueError as e:
            log.warning("dropping a bad frame from peer %s: %s", peer, e)
            return None
        if getattr(msg, "sender", peer) != peer:
            log.warning("peer %s sent a message signed as %s; dropped", peer, msg.sender)
            return None
        return msg

    def redirect_error(self, leader: str) -> RespError:
        """``--redirect``: the MOVED error naming the leader's client address."""
        addr = self.config.nodes.get(leader) if leader else None
        if addr is None:
            return no_leader_error(leader)
        return RespError(f"MOVED 0 {addr.host}:{addr.port}")

    def refuse_stale(self, conn: ClientConnection) -> bool:
        """For a ``bounded <ms>`` read on a follower: reply STALE and return True
        when this node may trail the leader by more than the bound."""
        staleness = self._staleness_ms()
        if staleness <= conn.read_bound_ms:
            return False
        conn.reply(RespError(f"STALE follower {self.id} may be {staleness} ms behind the leader, "
                             f"above the bound of {conn.read_bound_ms} ms"))
        return True

    flush_scheduled = False  # the mode's group commit is due at the next loop turn (``_schedule_flush``)

    def _schedule_flush(self) -> None:
        """The mode's group commit (its ``_flush``, which clears ``flush_scheduled``) once at the
        start of the next loop iteration, however many writes of this one ask for it."""
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)  # type: ignore[attr-defined]

    _flush_scheduled = False

    def flush_clients_soon(self) -> None:
        """``_flush_clients`` once at the end of this loop iteration: replies resolved one by one
        as peer frames arrive (forwarded commands' replies) leave in one write per client."""
        if not hasattr(self, "loop"):
            self._flush_clients()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush_clients()

    def _flush_clients(self) -> None:
        if self.blocking.queues:
            self.blocking.poll()  # writes were applied: a blocked client may go on
        if self.dirty_clients:
            dirty, self.dirty_clients = self.dirty_clients, set()
            for conn in dirty:
                conn.flush()

    # -- INFO ----------------------------------------------------------------------
    def info_sections(self) -> dict[str, list[str]]:
        """The sections every mode has; a mode adds persistence and replication."""
        locks_waiting = self.lock_service.waiting_clients if self.lock_service is not None else 0
        return {
            "server": [
                "redis_version:7.0.0", f"replikv_version:{__version__}", "redis_mode:standalone",
                f"replikv_mode:{self.config.mode}", f"process_id:{os.getpid()}", f"run_id:{self.id}",
                f"tcp_port:{self.address.port}", f"uptime_in_seconds:{int(time.time() - self.started)}",
            ],
            "clients": [f"connected_clients:{len(self.clients)}",
                        f"blocked_clients:{self.blocking.blocked + self.waiting_clients() + locks_waiting}",
                        f"replikv_blocked_parked:{self.blocking.parked()}"],
            "stats": [f"total_commands_processed:{self.commands_processed}",
                      f"pubsub_channels:{len(self.pubsub.channels)}",
                      f"pubsub_patterns:{len(self.pubsub.patterns)}",
                      f"replikv_pubsub_messages_delivered:{self.pubsub.messages_delivered}",
                      f"replikv_peer_frames_in:{self.frames_in}",
                      # the peers a PUBLISH (and a forwarded write) can reach now
                      f"replikv_peers_connected:{sum(map(self.transport.connected, self.peer_ids))}"]
            + [f"{k}:{v}" for k, v in self.stats.items()] + self.cmdstats.totals()
            + [f"evicted_keys:{self.memory.evicted_keys}"] + self._lock_counts(),
            "memory": self.memory_info(),
            "cpu": cpu_section(),
            "commandstats": self.cmdstats.commandstats(),
            "errorstats": self.cmdstats.errorstats(),
        }

    def lock_tables(self) -> list[Any]:
        """The lock tables of the data this node holds (sharded raft: one per group)."""
        sm = getattr(self, "sm", None)
        return [sm.locks] if sm is not None and hasattr(sm, "locks") else []

    def _lock_counts(self) -> list[str]:
        """INFO stats: locks granted, released and expired as applied here (modes with locks)."""
        if self.lock_service is None:
            return []
        totals = [sum(t.counts[i] for t in self.lock_tables()) for i in range(3)]
        return [f"locks_granted:{totals[0]}", f"locks_released:{totals[1]}", f"locks_expired:{totals[2]}"]

    def memory_info(self) -> list[str]:
        """INFO memory (runtime/memory.py): used_memory is the start-up footprint plus the
        data set's estimate; the RSS and its peak are measured."""
        self.peak_rss = max(self.peak_rss, rss_bytes())
        return [*self.memory.info(), f"used_memory_peak:{self.peak_rss}"]

    def evict(self, keys: list[bytes]) -> None:  # pragma: no cover - each mode provides it
        """Delete ``keys`` for maxmemory through the log (the leader only)."""
        raise NotImplementedError

    def reset_stats(self) -> None:
        """CONFIG RESETSTAT."""
        self.cmdstats.reset()
        self.commands_processed = 0
        self.memory.evicted_keys = 0
        for name in self.stats:
            self.stats[name] = 0

    @property
    def change_index(self) -> ChangeIndex:
        """The WATCH index (``kv/watch.py``) by itself: a mode whose view is filled when it is read
        (leaderless, ``LeaderlessRunner.sm``) gives it without filling the view."""
        return self.sm.changes

    def rest_change_index(self) -> None:
        """Put the WATCH index at rest (``kv/watch.py``, "At rest") when no position it answers
        for may still be read here: no client holds a WATCH and no command is blocked (the
        only holders of ``watch_position``'s positions). For a mode that decides WATCH and
        blocked commands on this node alone and arms the index in ``watch_position``."""
        changes = self.change_index
        if changes.watching and not self.blocking.blocked and not any(c.watch for c in self.clients.values()):
            changes.rest()

    def waiting_clients(self) -> int:
        """Clients whose reply waits on the mode (WAIT, acks), besides blocking commands;
        INFO counts both as blocked, as Redis counts WAIT."""
        return 0

    @property
    def loading(self) -> bool:
        """A follower decoding its leader's snapshot in steps, answering reads with LOADING."""
        return False

    def persistence_info(self, snapshot_index: int) -> list[str]:
        """INFO persistence: the WAL every mode keeps, its snapshot index, whether it can be written."""
        wal = self.wal
        return [
            f"loading:{int(self.loading)}",  # Redis's name
            "aof_enabled:1", f"replikv_fsync:{self.options.fsync}", f"replikv_wal_bytes:{wal.size_bytes}",
            f"replikv_wal_fsyncs:{wal.fsyncs}", f"aof_delayed_fsync:{wal.delayed_fsyncs}",  # Redis's name
            f"replikv_wal_records:{wal.records}",
            f"replikv_wal_first_index:{wal.first_index}", f"replikv_snapshot_index:{snapshot_index}",
            *self.snapshotter.info(),
            f"aof_last_write_status:{'err' if self.disk_error else 'ok'}",  # Redis's name
            f"replikv_disk_error:{self.disk_error or ''}",
        ]



class JsonLogFormatter(logging.Formatter):
    """``--log-format json``: one JSON object per line for log collectors: ``time`` (RFC 3339,
    UTC, milliseconds), ``level``, ``node``, ``logger``, ``message``, and ``exception`` (the
    traceback) when there is one."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out = {"time": f"{when}.{int(record.msecs):03d}Z", "level": record.levelname.lower(),
               "node": self.node_id, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def run_node(config: ClusterConfig, node_id: str) -> int:
    """Run one node of the cluster's mode (its ``ModeSpec`` names the runner) until SIGTERM/SIGINT."""
    return serve(modes.get(config.mode).runner(), config, node_id)


def serve(runner_cls: Callable[[ClusterConfig, str], BaseRunner], config: ClusterConfig, node_id: str) -> int:
    """Run one node of ``runner_cls`` until SIGTERM/SIGINT; returns the exit code."""
    level = getattr(logging, config.options.log_level.upper(), logging.INFO)
    if config.options.log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonLogFormatter(node_id))
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(level=level, format=f"%(asctime)s {node_id} %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass

    async def main() -> None:
        try:
            node = runner_cls(config, node_id)
        except StorageError as e:
            raise _Refused(storage_refusal(config, node_id, e)) from None
        gc.collect()
        gc.freeze()  # what recovery loaded is long-lived (see BaseRunner._fsync_loop)
        await node.start()  # type: ignore[attr-defined]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("node %s stopping", node_id)
        await node.stop()  # type: ignore[attr-defined]

    try:
        asyncio.run(main())
    except _Refused as refusal:
        log.critical("%s", refusal)
        return 1
    return 0


class _Refused(Exception):
    """Start-up refused with a message for the operator (no traceback)."""


def storage_refusal(config: ClusterConfig, node_id: str, error: Exception) -> str:
    """What an operator reads when recovery refuses the node's data: the file,
    the offset, and what to do (nothing was changed)."""
    where = f"--config {config.source} " if config.source else "--config <cluster.toml> "
    text = f"node {node_id} cannot start: {error}. Nothing was changed."
    if isinstance(error, MissingMetaError):
        return (f"{text} Restore the file from a backup, or wipe this node's data directory "
                "so that it resynchronises from the cluster.")
    if isinstance(error, CorruptLogError):
        return (f"{text} To see what truncating the log at the damage would discard, run "
                f"`replikv repair {where}--id {node_id}` (add --yes to do it), or wipe this node's "
                "data directory so that it resynchronises from the cluster.")
    return f"{text} Restore the file from a backup, or wipe this node's data directory to resynchronise it."
