"""The leader-follower mode in the simulator: real ShippingNode cores, the
real kv state machine through the runner's apply paths (runtime/shipping_app.py
for snapshots and replay), and a disk that
keeps the real WAL record format (sim/disk.py).

The driver does what runtime/leader_follower.py does with the effects,
with ``--fsync always`` and ``sync`` acks (the setting whose claim is
checked here): the leader runs a write on its state machine
(``StateMachine.execute``), proposes the entry, and answers the client once
``ack_watermark(every follower)`` covers it; ``PersistEntries`` go to the
WAL, which is synced before any ``Send`` leaves (the durability rule);
followers apply with ``StateMachine.apply`` and no time (the log states
every deletion); ``PersistMeta`` is saved at once (an atomic file); a
``TruncateLog`` truncates the WAL and rebuilds the state from snapshot and
log; a full resync sends the snapshot of the log's base in one message
(taking one first if the base has none) and the follower installs it and
resets its WAL. Every few entries a node snapshots and compacts, as
``--snapshot-bytes`` makes it, except while a follower is being resynced;
the leader keeps a small replication backlog (``repl_backlog_bytes``,
the core's rule 9), so some lagging followers catch up from the log and
others, further behind, get a full resync.
A crash loses what the WAL had not synced and may tear its last write; a
restart recovers snapshot + WAL + meta as the runner does. Clients are
redirected to the leader (``--redirect``) and a write that got no answer is
not retried: it has no deduplication, so its outcome stays unknown.

The mode's own faults: a graceful failover (``FAILOVER TO`` a follower:
the leader hands over once the target holds its whole log, or gives up
after the ack timeout) and a forced one (``FAILOVER ... FORCE``: the
target promotes itself at once, with whatever log it has).

Checked during the run: one leader per epoch (rule 8); an entry shipped
at an (index, epoch) is the same entry wherever it goes; a follower that
appends holds a prefix of its leader's log (the epochs of every index up to
its end agree). At the end: every node equal to the leader (log end and
state digest), and on the append workload: every acknowledged write is in
the final list exactly once, in the order the acknowledgements imply; a
write of unknown outcome at most once; nothing no client wrote.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from replikv.check.history import Op
from replikv.core.shipping import messages as m
from replikv.core.shipping.effects import (
    ApplyEntries,
    Effect,
    HandOverDone,
    PersistEntries,
    PersistMeta,
    RoleChanged,
    Send,
    SendSnapshot,
    TruncateLog,
)
from replikv.core.shipping.log import ShippingLog
from replikv.core.shipping.node import LEADER, SNAPSHOT, ShippingNode
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from replikv.runtime.shipping_app import app_snapshot, replay, restore_app
from replikv.sim.clock import NodeClock
from replikv.sim.disk import SimWal
from replikv.sim.workload import Client, PendingOp

from replikv.sim.engine import NodeTable

if TYPE_CHECKING:
    from replikv.sim.engine import Engine

__all__ = ["ShippingDriver", "ShippingOptions"]



@dataclass
class ShippingOptions:
    heartbeat_ticks: int = 5
    sync_retry_ms: int = 150
    ack_timeout_ms: int = 500  # a hand-over gives up after this
    compact_every: int = 16
    window_entries: int = 8
    window_bytes: int = 4096
    max_batch_entries: int = 4
    repl_backlog_bytes: int = 1024  # about two snapshots' worth of entries: some lags fit, some do not


@dataclass(frozen=True)
class SnapshotMsg:
    """A full resync in one message (the runner streams it as SnapshotBegin + chunks)."""

    src: int
    dst: int
    epoch: int
    index: int
    snapshot_epoch: int
    epoch_starts: list[list[int]]
    data: bytes


@dataclass(frozen=True)
class ShippingEnvelope:
    src: int
    dst: int
    msg: m.ShippingMsg


class ShippingSimNode:
    def __init__(self, nid: int, clock: NodeClock) -> None:
        self.id = nid
        self.name = f"n{nid}"
        self.clock = clock
        self.wal = SimWal()
        self.meta: dict[str, Any] = {}  # durable when written (an atomic file)
        self.snapshot: tuple[int, int, bytes] | None = None  # (index, epoch, data), durable
        self.core: ShippingNode
        self.sm = StateMachine()
        self.up = True
        self.epoch = 0  # events scheduled before a crash are void
        self.ticks = 0
        # sync writes waiting for every follower: (index, client, rid, epoch proposed in)
        self.waiters: list[tuple[int, Client, tuple[int, int], int]] = []
        self.handover_until = -1


class ShippingDriver(NodeTable):
    mode = "leader-follower"
    workload = "append"

    def __init__(self, engine: Engine, **options: Any) -> None:
        self.engine = engine
        self.opts = ShippingOptions(**options)
        cfg = engine.cfg
        self.rng = random.Random(engine.rng.getrandbits(64))
        self.crash_rng = random.Random(cfg.seed ^ 0xC4A5)
        self.nodes = {nid: ShippingSimNode(nid, NodeClock(self.rng, cfg.tick_us, cfg.max_drift))
                      for nid in range(1, cfg.nodes + 1)}
        self.ids = {n.name: n.id for n in self.nodes.values()}
        self.leaders: dict[int, str] = {}  # epoch -> its leader (rule 8)
        self.shipped: dict[tuple[int, int], Any] = {}  # (index, epoch) -> the entry's commands
        self.acked = 0

    # ------------------------------------------------------------ plumbing
    def _now_ms(self) -> int:
        return self.engine.now_us // 1000

    def _make_core(self, n: ShippingSimNode, log: ShippingLog | None) -> ShippingNode:
        meta = n.meta
        o = self.opts
        peers = [p.name for p in self.nodes.values() if p.id != n.id]
        return ShippingNode(n.name, peers, epoch=int(meta["epoch"]), leader=str(meta["leader"]), log=log,
                            led_epochs=list(meta.get("led_epochs", [])), window_entries=o.window_entries,
                            window_bytes=o.window_bytes, max_batch_entries=o.max_batch_entries,
                            sync_retry_ms=o.sync_retry_ms, repl_backlog_bytes=o.repl_backlog_bytes)

    def boot(self) -> None:
        for n in self.nodes.values():  # a new cluster: n1 leads epoch 1 (the runner's initial_leader)
            n.meta = {"epoch": 1, "leader": "n1", "led_epochs": [1] if n.id == 1 else []}
            n.core = self._make_core(n, None)
            if n.id == 1:
                self.leaders[1] = "n1"
            self.engine.at(n.clock.next_tick(0), self._tick, n.id, n.epoch)

    def leader(self) -> int | None:
        return self.highest(lambda n: n.core.role == LEADER, lambda n: n.core.epoch)

    def _tick(self, nid: int, epoch: int) -> None:
        n = self.nodes[nid]
        if not n.up or n.epoch != epoch:
            return
        n.ticks += 1
        if n.ticks % self.opts.heartbeat_ticks == 0:
            self.handle(n, n.core.tick(self._now_ms()))
        if n.core.handing_over_to and n.handover_until < 0:
            n.handover_until = self.engine.now_us + self.opts.ack_timeout_ms * 1000
        elif n.handover_until >= 0 and (not n.core.handing_over_to or self.engine.now_us > n.handover_until):
            n.core.cancel_handover()  # the runner's hand-over deadline
            n.handover_until = -1
        self.engine.at(n.clock.next_tick(self.engine.now_us), self._tick, nid, epoch)

    def _deliver(self, env: ShippingEnvelope | SnapshotMsg) -> None:
        n = self.nodes[env.dst]
        if isinstance(env, SnapshotMsg):
            self._install_snapshot(n, env)
            return
        msg = m.decode(m.encode(env.msg))  # the real wire form, both ways
        before = n.core.log.last_index
        self.handle(n, n.core.step(msg, self._now_ms()))
        if isinstance(msg, m.Append) and n.core.log.last_index > before:
            self._check_prefix(n, msg)

    # ------------------------------------------------------------- effects
    def handle(self, n: ShippingSimNode, effects: list[Effect]) -> None:
        """As LeaderFollowerRunner._run with --fsync always: storage first, sync, then sends."""
        sends: list[Send] = []
        for e in effects:
            match e:
                case PersistEntries():
                    n.wal.append(e.first_index, e.packed, e.count)
                case ApplyEntries():
                    ctx = ApplyContext(None, n.core.leader)
                    for entry in e.entries:
                        n.sm.apply(entry[1], ctx)
                case PersistMeta():
                    n.meta = {"epoch": e.epoch, "leader": e.leader, "led_epochs": list(e.led_epochs)}
                case TruncateLog():
                    n.wal.truncate_after(e.to_index)
                    self._rebuild_state(n)
                case Send():
                    sends.append(e)
                case SendSnapshot():
                    self._send_snapshot(n, e.to, e.min_index)
                case RoleChanged():
                    if e.role == LEADER:
                        other = self.leaders.setdefault(e.epoch, e.leader)
                        if other != e.leader:
                            self.engine.fail(f"two leaders in epoch {e.epoch}: {other} and {e.leader}")
                case HandOverDone():
                    self.engine.nemesis_log.append(
                        f"{self.engine.now_us / 1e6:.3f}s hand-over to {n.name}: "
                        f"{'done' if e.ok else 'failed: ' + e.reason}")
        if n.wal.dirty:
            n.wal.sync()  # --fsync always: one commit before anything leaves
        for s in sends:
            if isinstance(s.msg, m.Append) and s.msg.count:
                self._record_shipped(s.msg)
            self.engine.send(n.id, self.ids[s.to], self._deliver, ShippingEnvelope(n.id, self.ids[s.to], s.msg))
        self._release_waiters(n)
        self._maybe_compact(n)

    def _rebuild_state(self, n: ShippingSimNode) -> None:
        """As the runner's _rebuild_state: the snapshot, then the log after it."""
        sm = restore_app(n.snapshot[2])[0] if n.snapshot is not None else StateMachine()
        base = n.snapshot[0] if n.snapshot else 0
        log = n.core.log
        if base != log.snapshot_index or base != log.base_index:  # a follower's log has no backlog (rule 9)
            self.engine.fail(f"{n.name}: snapshot at {base} does not match the log's {log.snapshot_index} "
                             f"(base {log.base_index})")
        replay(sm, log.entries)
        n.sm = sm

    def _take_snapshot(self, n: ShippingSimNode) -> None:
        core_log = n.core.log
        index = core_log.last_index
        n.wal.sync()
        n.snapshot = (index, core_log.epoch_at(index), app_snapshot(core_log.epoch_starts, n.sm))
        n.core.compact(index)  # keeps the backlog; the WAL keeps its bytes (drop_before drops whole segments only)

    def _maybe_compact(self, n: ShippingSimNode) -> None:
        log = n.core.log
        if n.up and log.last_index - log.snapshot_index >= self.opts.compact_every \
                and not n.core.full_resync_in_progress:
            self._take_snapshot(n)

    def _send_snapshot(self, n: ShippingSimNode, peer: str, min_index: int) -> None:
        """The latest snapshot if it covers ``min_index``, else a new one (as the runner)."""
        if n.snapshot is None or n.snapshot[0] != n.core.log.snapshot_index or n.snapshot[0] < min_index:
            self._take_snapshot(n)
        assert n.snapshot is not None
        index, epoch, data = n.snapshot
        epoch_starts = msgpack.unpackb(data)[0]
        dst = self.ids[peer]
        self.engine.send(n.id, dst, self._deliver,
                         SnapshotMsg(n.id, dst, n.core.epoch, index, epoch, epoch_starts, data))
        self.handle(n, n.core.snapshot_sent(peer, index))

    def _install_snapshot(self, n: ShippingSimNode, msg: SnapshotMsg) -> None:
        if msg.epoch < n.core.epoch:
            return
        install, effects = n.core.offer_snapshot(msg.index, msg.epoch_starts)
        if not install:
            self.handle(n, effects)
            return
        n.snapshot = (msg.index, msg.snapshot_epoch, msg.data)
        n.sm = restore_app(msg.data)[0]
        n.wal.reset(msg.index + 1)
        self.handle(n, n.core.snapshot_installed(msg.index, msg.snapshot_epoch, msg.epoch_starts))

    # -------------------------------------------------------------- checks
    def _record_shipped(self, msg: m.Append) -> None:
        """An (index, epoch) names one entry wherever it is shipped (rules 1, 2, 8)."""
        for i, entry in enumerate(msgpack.unpackb(msg.entries)):
            key = (msg.prev_index + 1 + i, entry[0])
            cmds = entry[1]
            prev = self.shipped.setdefault(key, cmds)
            if prev != cmds:
                self.engine.fail(f"index {key[0]} epoch {key[1]} shipped as two entries: {prev} and {cmds}")

    def _check_prefix(self, n: ShippingSimNode, msg: m.Append) -> None:
        """A follower holds a prefix of its leader's log: the epoch of every index up to its end agrees."""
        leader = self.nodes[self.ids[msg.sender]]
        if not leader.up or leader.core.role != LEADER or leader.core.epoch != msg.epoch:
            return
        last = n.core.log.last_index
        mine = [s for s in n.core.log.epoch_starts if s[1] <= last]
        theirs = [s for s in leader.core.log.epoch_starts if s[1] <= last]
        if mine != theirs or leader.core.log.last_index < last:
            self.engine.fail(f"{n.name} (up to {last}, epochs {mine}) is not a prefix of leader "
                             f"{leader.name}'s log (up to {leader.core.log.last_index}, epochs {theirs})")

    # ------------------------------------------------------------ clients
    def submit(self, client: Client, op: PendingOp, nid: int, rid: tuple[int, int]) -> None:
        n = self.nodes[nid]
        key = op.key.encode()
        if op.op == "read":  # served by the node that receives it (eventual)
            values = n.sm.read([b"LRANGE", key, b"0", b"-1"], self._now_ms())
            assert isinstance(values, list)
            self.engine.client_done(client, True, ",".join(v.decode() for v in values))
            return
        core = n.core
        if core.role != LEADER or core.writes_paused:  # -MOVED / TRYAGAIN: not applied, safe to retry
            hint = self.ids.get(core.leader) if core.role != LEADER else None
            self.engine.client_retry(client, rid, hint)
            return
        now = self._now_ms()
        reply, cmds = n.sm.execute([b"RPUSH", key, (op.value or "").encode()], ApplyContext(now, n.name))
        if cmds is None or not isinstance(reply, int):
            self.engine.fail(f"RPUSH was not logged: {reply!r}")
        k = len(core.peers)  # sync: every follower
        first, effects = core.propose([cmds], now, [k])
        n.waiters.append((first, client, rid, core.epoch))
        self.handle(n, effects)

    def _release_waiters(self, n: ShippingSimNode) -> None:
        if not n.waiters:
            return
        core = n.core
        keep = []
        held = core.ack_watermark(len(core.peers)) if core.role == LEADER else 0
        for w in n.waiters:
            index, client, rid, epoch = w
            if not self.engine.current(client, rid):
                continue  # the client gave up (the runner's ack timeout answers it)
            if core.role != LEADER or core.epoch != epoch:
                if self.engine.current(client, rid):  # NOREPLICAS ... may be discarded: unknown
                    self.engine.client_done(client, None, None)
            elif held >= index:
                if self.engine.current(client, rid):
                    self.acked += 1
                    self.engine.client_done(client, True, None)
            else:
                keep.append(w)
        n.waiters = keep

    def may_retry(self, op: PendingOp) -> bool:
        return op.op == "read"  # a write without an answer may be applied: never repeated

    # ------------------------------------------------------ crash, restart
    def crash(self, nid: int) -> None:
        n = self.nodes[nid]
        n.up = False
        n.epoch += 1
        n.wal.crash(self.crash_rng)
        n.waiters = []
        n.handover_until = -1

    def restart(self, nid: int) -> None:
        """As the runner's _recover: snapshot, WAL after it (replayed), meta."""
        n = self.nodes[nid]
        sm = StateMachine()
        epoch_starts: list[list[int]] = []
        base_index = base_epoch = 0
        if n.snapshot is not None:
            base_index, base_epoch, data = n.snapshot
            sm, epoch_starts = restore_app(data)
        log = ShippingLog(base_index, base_epoch, epoch_starts)
        entries = n.wal.recover(after_index=base_index)
        if entries:
            log.append(entries)
            replay(sm, entries)
        n.sm = sm
        n.core = self._make_core(n, log)
        n.up = True
        n.ticks = 0
        self.engine.at(n.clock.next_tick(self.engine.now_us), self._tick, nid, n.epoch)

    def set_slow_disk(self, nid: int, slow: bool) -> None:
        pass  # --fsync always blocks the node on its fsync: a slow disk only slows it down

    # ------------------------------------------------------------ nemesis
    def nemesis_actions(self) -> dict[str, Callable[[random.Random], str | None]]:
        return {"failover": self._failover, "force_failover": self._force_failover}

    def _target(self, rng: random.Random) -> ShippingSimNode | None:
        up = [n for n in self.nodes.values() if n.up and n.core.role != LEADER]
        return rng.choice(up) if up else None

    def _failover(self, rng: random.Random) -> str | None:
        n = self._target(rng)
        if n is None:
            return None
        self.handle(n, n.core.request_handover())
        return f"failover to {n.name}"

    def _force_failover(self, rng: random.Random) -> str | None:
        n = self._target(rng)
        if n is None:
            return None
        self.handle(n, n.core.promote())
        return f"failover to {n.name} force (epoch {n.core.epoch})"

    def heal_step(self) -> None:
        pass  # no mode fault outlives the heal: hand-overs time out, epochs settle by gossip

    # ---------------------------------------------------------- the end
    def converged(self) -> bool:
        if not all(n.up for n in self.nodes.values()):
            return False
        lead = self.leader()
        if lead is None:
            return False
        lc = self.nodes[lead].core
        digest = self.nodes[lead].sm.digest()
        for n in self.nodes.values():
            c = n.core
            if c.epoch != lc.epoch or c.leader != lc.id or c.log.last_index != lc.log.last_index:
                return False
            if c.log.epoch_at(c.log.last_index) != lc.log.epoch_at(lc.log.last_index):
                return False
            if n.sm.digest() != digest:
                return False
        return not any(pr.state == SNAPSHOT for pr in lc.progress.values())

    def final_check(self, ops: list[Op]) -> None:
        lead = self.leader()
        assert lead is not None
        sm = self.nodes[lead].sm
        now = self._now_ms()
        appends = [op for op in ops if op.op == "append"]
        written = {op.value for op in appends}
        for key in sorted({op.key for op in ops}):
            values = sm.read([b"LRANGE", key.encode(), b"0", b"-1"], now)
            assert isinstance(values, list)
            final = [v.decode() for v in values]
            pos: dict[str, int] = {}
            for i, v in enumerate(final):
                if v in pos:
                    self.engine.fail(f"{key}: {v} is in the final list twice")
                if v not in written:
                    self.engine.fail(f"{key}: {v} is in the final list but no client wrote it")
                pos[v] = i
            acked = sorted((op for op in appends if op.key == key and op.ok), key=lambda op: op.call)
            for op in acked:
                if op.value not in pos:
                    self.engine.fail(f"{key}: the acknowledged write of {op.value} (process {op.process}) "
                                     f"is lost: the final list is {final}")
            for a in acked:  # acknowledged before b began: before b in the list
                for b in acked:
                    if a.ret is not None and a.ret < b.call and pos[str(a.value)] > pos[str(b.value)]:
                        self.engine.fail(f"{key}: {a.value} was acknowledged before {b.value} was written, "
                                         "but comes after it")

    def describe(self) -> str:
        return "; ".join(f"{n.name}:{n.core.role}/e{n.core.epoch} leader={n.core.leader or '-'} "
                         f"last={n.core.log.last_index}{'' if n.up else ' down'}" for n in self.nodes.values())

    def stats(self) -> dict[str, int]:
        lead = self.leader()
        return {"committed": self.nodes[lead].core.log.last_index if lead else 0,
                "epochs_with_leader": len(self.leaders), "acked_writes": self.acked}
