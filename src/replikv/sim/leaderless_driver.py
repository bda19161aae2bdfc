"""The leaderless mode in the simulator: the real ``Replica`` core per node
(core/dynamo/replica.py: coordinator, read repair, hints, anti-entropy),
messages through the real codec, a WAL in the real record format
(sim/disk.py), and Redis writes translated by the real kv/crdt_writes.py.

Workload: the engine's ``append`` clients, read as Redis writes on four kinds
of keys (k0 counter: ``INCRBY``; k1 set: ``SADD``; k2 register: ``SET``;
k3 list: ``RPUSH``; k4 counter ...) and reads of them. A client sends each
request to an up replica of its key (a cluster-aware client; the runtime
forwards instead). Per seed: the levels (QUORUM/QUORUM, ONE/ONE, ALL/ONE,
ONE/ALL), the number of nodes' replicas N (3, or 2 on some 5-node seeds),
sloppy quorum or not. A node believes a peer alive when the network links
both ways and the peer is up (the runtime's connected peer); a belief that
flips to down is ``peer_down``. A write is never retried (an increment is
not idempotent); one without an answer has an unknown outcome. Frames are
made as the runtime makes them (``Replica.frames``: ``Puts`` / ``PutAcks``
to the peers that announced them); on every 4th seed n2 runs as a node of
the older version (no ``Hello``, single ``Put``s and acks, Paxos requests
without an electorate, deltas without ``put`` mutations), and a frame it
would drop or a delta it would refuse (a ``Puts``, a ``PutAcks``, a
``Hello`` not alone, a Paxos request naming its electorate, a quiet Paxos
commit, a Paxos message in line (``PaxosBody``), a delta with a ``put``) fails the run.

The durability rule as the runtime carries it out: ``Persist`` entries are
appended to the WAL and synced before any ``Send`` of the same batch leaves
and before a client's reply; a crash loses what was not synced (and may
tear the last write); a restart replays snapshot + WAL. Every
``compact_every`` WAL records a node snapshots (store + hints).

With ``paxos`` (issue 9's compare-and-set): the engine's ``register``
clients instead, every read, write and CAS run as one Paxos round
(core/dynamo/paxos.py) among the key's replicas, as the runtime runs
``GET`` at READ SERIAL, ``SET`` at WRITE SERIAL and ``CAS``: a read decides
the value it read, a write its value, a CAS its new value if the round read
the expected one. Outcomes: ``Chosen`` answers (a CAS succeeded if the
round read the expected value); ``Contended`` and a ``Timeout`` before
PROPOSE fail (not applied); ``Preempted`` and a later ``Timeout`` are
unknown (it may still be applied). The acceptors' promises are persisted
(WAL and snapshots) like every other entry. Checked: the history is
linearizable (check/linearizability.py, the register model), and every
key's replicas end equal on a value a client wrote.

With ``membership`` (``--membership``): the last node is a spare (up, not
a member) and at least 4 keys are used; a change (the spare's join, then on
about half the seeds a member's removal) begins mid-run on an up member
holding the newest ring of every node, down ones included, with no change
in it (an operator after ``replikv cluster wait``); each node runs the real
``Membership`` core inside its ``Replica`` with the runtime's wiring: the
``SaveRing`` state is the node's meta (kept at once, before later frames
leave) and a restart recovers it; a peer that comes back is greeted with
``peer_connected`` (ring gossip, hints); a request goes to a node that
``coordinates`` the key (a read replica in its view), writes to
``write_replicas`` with ``needed_acks`` (one more per pending owner), reads
to ``read_replicas``, Paxos rounds to ``paxos_replicas`` (the write
replicas, a quorum of the old plus one per pending owner: CASSANDRA-8346),
whose streams carry the keys' acceptor states with their data. Converged then also means: every
node holds the ring all begun changes lead to, drives and streams nothing
and has cleaned up, and a key is held by exactly its final replicas.

Checked: after heal, within the engine's ``heal_us_max``, every key's
replicas hold equal states (digests), no hint is left and nothing is in
flight. At the end: every counter equals the sum of the increments whose
coordinator made them durable, and lies between the acknowledged and the
acknowledged + unknown increments; every acknowledged SADD and RPUSH is
there and nothing no client wrote; a register ends with one value a
client wrote, on every replica. With strict quorums (R + W > N, no sloppy
quorum): a read that began after a write was acknowledged returned a state
that holds that write or one that superseded it (its key context covers the
write's dot).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from replikv.check.history import Op as HistOp
from replikv.check.linearizability import check_register_history
from replikv.config import NodeOptions
from replikv.core.crdt import Hlc
from replikv.core.crdt.keyed import KeyedStore, decode_delta
from replikv.core.dynamo import messages as dm
from replikv.core.dynamo import membership as mb
from replikv.core.dynamo.coordinator import level_count, needed_acks
from replikv.core.dynamo.hints import Hints
from replikv.core.dynamo import paxos as px
from replikv.core.dynamo import paxos_messages as pm
from replikv.core.dynamo.replica import FEATURE_PEERS, Changed, PaxosDone, Persist, Replica, ReadDone, Send, WriteDone
from replikv.core.dynamo.ring import Ring
from replikv.kv.crdt_writes import translate
from replikv.sim.clock import NodeClock
from replikv.sim.disk import GroupCommitDriver, SimWal
from replikv.sim.engine import NodeTable
from replikv.sim.workload import Client, PendingOp

if TYPE_CHECKING:
    from replikv.sim.engine import Engine

__all__ = ["LeaderlessDriver", "LeaderlessOptions"]

LEVELS = (("quorum", "quorum"), ("one", "one"), ("all", "one"), ("one", "all"))
# Membership timings in virtual time (the runtime's are RING_RESEND_MS, CLEANUP_DELAY_MS and a stream
# timeout of max(10 s, 4 ack timeouts): scaled to the simulator's 60 ms request timeout and short runs)
RING_RESEND_MS = 100
STREAM_TIMEOUT_MS = 300
CLEANUP_DELAY_MS = 200
CHANGE_RETRY_US = 100_000


@dataclass
class LeaderlessOptions:
    levels: tuple[str, str] | None = None  # (write, read); None: chosen by the seed
    replicas: int | None = None
    sloppy_quorum: bool | None = None
    conflicts: str | None = None
    timeout_us: int = 60_000
    ae_interval_ms: int = 100
    compact_every: int = 24
    slow_sync_us: int = 40_000
    paxos: bool = False  # every operation a Paxos round, register clients (see the module docstring)
    membership: bool = False  # the last node is a spare that joins mid-run; a member may leave after
    remove_p: float = 0.5  # with ``membership``: the chance a seed removes a member once the join is done


@dataclass(frozen=True)
class Envelope:
    src: int
    dst: int
    data: bytes


class LlSimNode:
    def __init__(self, nid: int, clock: NodeClock, offset_ms: int, tick_us: int) -> None:
        self.id = nid
        self.name = f"n{nid}"
        self.clock = clock
        self.offset_ms = offset_ms
        self.tick_us = tick_us
        self.wal = SimWal()
        self.snapshot: bytes | None = None
        self.meta: mb.RingState | None = None  # the ring state of the meta file (SaveRing, "fsynced" at once)
        self.replica: Replica
        self.hlc = Hlc()
        self.up = True
        self.epoch = 0
        self.slow = False
        self.syncing = False
        self.believed: set[str] = set()  # peers this node believes alive
        self.outbox: list[Send] = []
        # replies waiting for the WAL sync: (client, attempt, ok, value, (key, dot) of an acknowledged write)
        self.replies: list[tuple[Client, tuple[int, int], bool | None, str | None, Any]] = []
        self.unsynced: list[tuple[str, int]] = []  # dots of own writes not yet durable
        self.limbo: list[tuple[str, int]] = []  # unsynced at a crash: the restart tells if they survived
        self.requests: dict[int, tuple[Client, tuple[int, int], PendingOp, int]] = {}
        self.reqs = 0

    def wall_ms(self, now_us: int) -> int:
        return max(0, now_us * self.clock.period_us // self.tick_us // 1000 + self.offset_ms)

_MAX_FRAME_BYTES = NodeOptions().max_frame_bytes


def _newer_paxos_form(msg: Any) -> bool:
    """A Paxos message in a form a node of the older version drops: a request naming its
    electorate, a quiet commit (no ack asked), a Propose that commits on accept or the Accepted
    that answers one."""
    return (getattr(msg, "electorate", None) is not None or getattr(msg, "ack", True) is False
            or getattr(msg, "commit", False) is True or getattr(msg, "committed", False) is True)


class LeaderlessDriver(GroupCommitDriver, NodeTable):
    mode = "leaderless"
    workload = "append"

    def __init__(self, engine: Engine, **options: Any) -> None:
        self.engine = engine
        self.opts = LeaderlessOptions(**options)
        cfg = engine.cfg
        self.rng = random.Random(engine.rng.getrandbits(64))
        self.crash_rng = random.Random(cfg.seed ^ 0xC4A5)
        srng = random.Random(cfg.seed * 7919 + 29)
        levels: tuple[str, str] = self.opts.levels or srng.choice(LEVELS)
        self.write_level, self.read_level = levels
        self.n_replicas = self.opts.replicas or (2 if cfg.nodes >= 5 and srng.random() < 0.3 else 3)
        self.sloppy = self.opts.sloppy_quorum if self.opts.sloppy_quorum is not None else srng.random() < 0.25
        self.conflicts = self.opts.conflicts or ("siblings" if srng.random() < 0.3 else "lww")
        self.nodes = {nid: LlSimNode(nid, NodeClock(self.rng, cfg.tick_us, cfg.max_drift), srng.randint(-50, 50),
                                     cfg.tick_us)
                      for nid in range(1, cfg.nodes + 1)}
        self.ids = {n.name: n.id for n in self.nodes.values()}
        members = sorted(self.ids)
        self.spare: str | None = None
        self.planned: list[str] = []  # the changes still to begin, in order
        self.begun: list[tuple[str, str, str]] = []  # (change, node, coordinator) begun
        if self.opts.membership:
            cfg.keys = max(cfg.keys, 4)  # every kind (counter, set, register, list) crosses the changes
            self.spare = members.pop()  # present from the start, not a member until its join
            self.planned = ["add"] + (["remove"] if srng.random() < self.opts.remove_p else [])
        self.initial = mb.RingState(epoch=0, members=tuple(mb.Member(id=m, host="", port=0, peer_port=0)
                                                           for m in members))
        self.ring = Ring(members, self.n_replicas, 16)  # the initial ring (each node follows its own view)
        n = min(self.n_replicas, len(members))
        self.strict = (not self.sloppy and level_count(self.write_level, n) + level_count(self.read_level, n) > n)
        self.translate_rng = random.Random(cfg.seed ^ 0x5EED)
        self.incrs: dict[tuple[str, int], tuple[str, int]] = {}  # dot -> (key, amount), durable ones
        self.unsynced_incrs: dict[tuple[str, int], tuple[str, int]] = {}
        self.acked_dots: list[tuple[str, tuple[str, int], int]] = []  # (key, dot, acked at us)
        self.acked = 0
        self.lost_unsynced = 0
        self.stale_checked = 0
        self.paxos = self.opts.paxos
        self.workload = "register" if self.paxos else "append"
        self.replay_flags = (" --paxos" if self.paxos else "") + (" --membership" if self.opts.membership else "")
        self.paxos_chosen = 0
        # a rolling upgrade on every 4th seed: n2 runs the version before Puts (no Hello, single Puts and acks)
        self.old = {"n2"} if cfg.seed % 4 == 0 else set()

    # ------------------------------------------------------------ plumbing
    def _make(self, n: LlSimNode) -> Replica:
        """A node's replica, its ring state from its meta file (a fresh node: the initial members
        at epoch 0, as the runtime's cluster.toml; a spare is not among them)."""
        ms = mb.Membership(n.name, n.meta or self.initial, self.n_replicas, 16, resend_ms=RING_RESEND_MS,
                           stream_timeout_ms=max(STREAM_TIMEOUT_MS, 4 * self.opts.timeout_us // 1000),
                           cleanup_delay_ms=CLEANUP_DELAY_MS)
        return Replica(n.name, ms.ring, conflicts=self.conflicts, timeout_us=self.opts.timeout_us,
                       rng=random.Random(self.rng.getrandbits(64)), sloppy_quorum=self.sloppy,
                       read_repair_chance=0.1, ae_interval_ms=self.opts.ae_interval_ms, hlc=n.hlc, membership=ms,
                       deltas=sum(map(ord, n.name)) % 2 == 1,  # both write paths, mixed
                       batches=n.name not in self.old)

    def boot(self) -> None:
        for n in self.nodes.values():
            n.replica = self._make(n)
            n.believed = self._reachable(n)
            if n.replica.batches:  # as if each had announced its features when it connected (Hello)
                for _, attr in FEATURE_PEERS:
                    setattr(n.replica, attr, {p for p in n.believed if p not in self.old})
            self.engine.at(n.clock.next_tick(0), self._tick, n.id, n.epoch)
        if self.planned:
            self.engine.at(self.rng.randint(100_000, self.engine.cfg.fault_us * 3 // 5), self._change)

    # ------------------------------------------------------- membership
    def _change(self) -> None:
        """Begin the next planned change on an up member whose ring is the newest of every node's,
        up or down, with no change in it (an operator running ``replikv cluster add|remove`` once
        ``cluster wait`` said the last one is done: two changes begun at once end with one of
        them abandoned, membership.py); retried every
        ``CHANGE_RETRY_US`` until one can begin, during the fault phase only."""
        if not self.planned or self.engine.healing:
            return
        newest = max((m.replica.membership.state for m in self.nodes.values()), key=lambda st: st.order)
        ready = [m for m in self.nodes.values() if m.up and m.replica.membership.state.order == newest.order
                 and m.name in newest.ids]
        if ready and not newest.change:  # a down node's newer state (its meta) counts: it comes back with it
            coord = self.rng.choice(ready)
            st = coord.replica.membership.state
            kind = self.planned[0]
            if kind == "add":
                node = mb.Member(id=self.spare or "", host="", port=0, peer_port=0)
            else:
                node = self.rng.choice(st.members)
            now_us = self.engine.now_us
            try:
                effects = coord.replica.begin_change(kind, node, coord.wall_ms(now_us), now_us)
            except mb.MembershipError:
                effects = None
            if effects is not None:
                self.planned.pop(0)
                self.begun.append((kind, node.id, coord.name))
                self.handle(coord, effects)
                if self.rng.random() < 0.5:  # a crash aimed at the change (besides the nemesis's own)
                    victim = self.rng.choice(sorted({node.id, coord.name, *coord.replica.membership.state.ids}))
                    self.engine.at(self.engine.now_us + self.rng.randint(0, 600_000), self._change_crash,
                                   self.ids[victim])
        if self.planned:
            self.engine.at(self.engine.now_us + CHANGE_RETRY_US, self._change)

    def _change_crash(self, nid: int) -> None:
        """Crash the joining or leaving node, the change's coordinator or a member (a stream
        source), during the announce, the streams or the switch; it restarts 100-600 ms later."""
        if self.engine.healing or not self.nodes[nid].up:
            return
        self.engine.nemesis_log.append(f"{self.engine.now_us / 1e6:.3f}s crash n{nid} (membership)")
        self.crash(nid)
        self.engine.at(self.engine.now_us + self.rng.randint(100_000, 600_000), self._change_restart, nid)

    def _change_restart(self, nid: int) -> None:
        if not self.nodes[nid].up:
            self.engine.nemesis_log.append(f"{self.engine.now_us / 1e6:.3f}s restart n{nid} (membership)")
            self.restart(nid)

    def _final_members(self) -> tuple[str, ...]:
        """The members every begun change leads to."""
        members = set(self.initial.ids)
        for kind, node, _ in self.begun:
            members = members | {node} if kind == "add" else members - {node}
        return tuple(sorted(members))

    def _place(self, n: LlSimNode, key: bytes, write: bool) -> tuple[tuple[str, ...], int]:
        """A request's replicas in ``n``'s view (the runtime's ``_placement``): a write goes to the
        write replicas (pending ones last, ``pending`` of them), a read to the read ones (a Paxos
        round's participants are the replica's own: ``Membership.paxos_replicas``)."""
        ms = n.replica.membership
        return ms.write_replicas(key) if write else (ms.read_replicas(key), 0)

    def leader(self) -> int | None:
        return None

    def _reachable(self, n: LlSimNode) -> set[str]:
        cut = self.engine.net.cut
        return {m.name for m in self.nodes.values()
                if m is not n and m.up and (n.id, m.id) not in cut and (m.id, n.id) not in cut}

    def _tick(self, nid: int, epoch: int) -> None:
        n = self.nodes[nid]
        if not n.up or n.epoch != epoch:
            return
        now_us = self.engine.now_us
        now_ms = n.wall_ms(now_us)
        self._refresh_beliefs(n)
        self.handle(n, n.replica.tick(now_ms, now_us, n.believed))
        if n.replica.proposers:
            self.handle(n, n.replica.paxos_tick(now_ms))
        self.engine.at(n.clock.next_tick(now_us), self._tick, nid, epoch)

    def _refresh_beliefs(self, n: LlSimNode) -> None:
        now = self._reachable(n)
        gone, back = n.believed - now, now - n.believed
        n.believed = now
        now_us = self.engine.now_us
        for peer in sorted(gone):
            self.handle(n, n.replica.peer_down(peer, n.wall_ms(now_us), now_us))
        for peer in sorted(back):  # the runtime's connect: gossip the ring, deliver hints
            self.handle(n, n.replica.peer_connected(peer, n.wall_ms(now_us), now_us))

    def _deliver(self, env: Envelope) -> None:
        n = self.nodes[env.dst]
        src = f"n{env.src}"
        msg = dm.decode(env.data)
        now_us = self.engine.now_us
        if n.name in self.old:  # what the older version decodes: a Hello's frame is dropped, and alone
            msgs = msg.msgs if isinstance(msg, dm.Batch) else (msg,)
            if any(isinstance(m, (dm.Puts, dm.PutAcks)) for m in msgs) or (
                    isinstance(msg, dm.Batch) and any(isinstance(m, dm.Hello) for m in msgs)) or any(
                    isinstance(m, dm.PaxosBody) or isinstance(m, dm.Paxos) and _newer_paxos_form(pm.decode(m.data))
                    for m in msgs) or any(
                    isinstance(m, dm.Put) and m.delta and any(mut[0] == "put" for mut in decode_delta(m.delta)[2])
                    for m in msgs):
                self.engine.fail(f"{src} sent {n.name}, a node of the older version, a frame it drops: {msg!r}")
            if isinstance(msg, dm.Hello):
                return
        for one in msg.msgs if isinstance(msg, dm.Batch) else (msg,):
            self.handle(n, n.replica.step(src, one, n.wall_ms(now_us), now_us))

    # ------------------------------------------------------------- effects
    def handle(self, n: LlSimNode, effects: list[Any]) -> None:
        entries: list[list[Any]] = []
        for e in effects:
            if isinstance(e, Persist):
                entries.append(e.entry)
            elif isinstance(e, Send):
                n.outbox.append(e)
            elif isinstance(e, WriteDone):
                self._write_done(n, e)
            elif isinstance(e, ReadDone):
                self._read_done(n, e)
            elif isinstance(e, PaxosDone):
                self._paxos_done(n, e)
            elif isinstance(e, mb.SaveRing):
                n.meta = e.state  # the runtime's meta file, written and fsynced before any later frame
            elif not isinstance(e, (Changed, mb.RingChanged)):
                self.engine.fail(f"{n.name}: unexpected effect {e!r}")
        if entries:
            n.wal.append_entries(n.wal.last_index + 1, entries)
        self.commit(n)

    def _flush(self, n: LlSimNode) -> None:
        """One group commit, then the frames and replies that waited for it."""
        n.wal.sync()
        for dot in n.unsynced:
            amount = self.unsynced_incrs.pop(dot, None)
            if amount is not None:
                self.incrs[dot] = amount
        n.unsynced = []
        out, n.outbox = n.outbox, []
        # the runtime's framing (Puts / PutAcks to who announced), at its default frame limit
        for peer, frame in n.replica.frames(out, _MAX_FRAME_BYTES):
            dst = self.ids[peer]
            self.engine.send(n.id, dst, self._deliver, Envelope(n.id, dst, frame))
        replies, n.replies = n.replies, []
        for client, rid, ok, value, write in replies:
            if self.engine.current(client, rid):
                if write is not None:  # the client learns it is acknowledged now
                    self.acked += 1
                    self.acked_dots.append((write[0], write[1], self.engine.now_us))
                self.engine.client_done(client, ok, value)
        if n.wal.last_index - n.wal.first_index + 1 >= self.opts.compact_every:
            n.snapshot = msgpack.packb([n.replica.store.snapshot(), n.replica.hints.snapshot(),
                                        n.replica.paxos_states()], use_bin_type=True)
            n.wal.reset(n.wal.last_index + 1)

    # ------------------------------------------------------------ clients
    def submit(self, client: Client, op: PendingOp, nid: int, rid: tuple[int, int]) -> None:
        key = op.key.encode()
        write = op.op != "read" and not self.paxos
        target = self.nodes[nid]
        if not target.replica.membership.coordinates(key):  # a cluster-aware client sends to a replica
            view = target.replica.membership.read_replicas(key)
            up = [m for r in view if (m := self.nodes[self.ids[r]]).up and m.replica.membership.coordinates(key)]
            if not up:
                self.engine.client_retry(client, rid)
                return
            target = client.rng.choice(up)
        n = target
        replicas, pending = self._place(n, key, write)
        now_us = self.engine.now_us
        now_ms = n.wall_ms(now_us)
        self._refresh_beliefs(n)
        if self.paxos:
            self._paxos_submit(client, op, n, rid, now_ms)
            return
        level = self.read_level if op.op == "read" else self.write_level
        needed = needed_acks(level, len(replicas), pending)
        stand_ins = n.replica.ring.extended_preference(key, len(self.nodes))
        if needed is None or n.replica.coord.unavailable(replicas, needed, n.believed, stand_ins) is not None:
            self.engine.client_done(client, False, None)  # refused before anything was applied
            return
        n.reqs += 1
        req = n.reqs
        n.requests[req] = (client, rid, op, now_us)
        if op.op == "read":
            self.handle(n, n.replica.read(req, (key,), replicas, needed, n.believed, now_ms, now_us))
            return
        kind = _kind(op.key)
        value = (op.value or "").encode()
        if kind == "counter":
            argv = [b"INCRBY", key, str(_amount(op.value or "")).encode()]
        elif kind == "set":
            argv = [b"SADD", key, value]
        elif kind == "register":
            argv = [b"SET", key, value]
        else:
            argv = [b"RPUSH", key, value]
        muts, reply = translate(n.replica.store, argv, now_ms, self.translate_rng, "leaderless")
        if not muts:
            self.engine.fail(f"{n.name}: {argv} made no mutation (reply {reply!r})")
        hlc = n.hlc.now(now_ms)
        dot = (n.name, hlc)
        n.unsynced.append(dot)
        if kind == "counter":
            self.unsynced_incrs[dot] = (op.key, _amount(op.value or ""))
        n.requests[req] = (client, rid, op, hlc)
        self.handle(n, n.replica.write(req, muts, hlc, replicas, needed, n.believed, stand_ins, now_ms, now_us))

    def _paxos_submit(self, client: Client, op: PendingOp, n: LlSimNode, rid: tuple[int, int],
                      now_ms: int) -> None:
        """One Paxos round for ``op`` (the runtime's ``_serial_write`` and SERIAL read deciders)."""
        value = (op.value or "").encode()
        expected = (op.expected or "").encode()
        decide: Callable[[bytes | None], bytes | None]
        if op.op == "read":
            decide = lambda current: current  # noqa: E731
        elif op.op == "write":
            decide = lambda current: value  # noqa: E731
        else:
            decide = lambda current: value if current == expected else current  # noqa: E731
        n.reqs += 1
        n.requests[n.reqs] = (client, rid, op, 0)
        self.handle(n, n.replica.paxos(n.reqs, op.key.encode(), decide, now_ms))

    def _paxos_done(self, n: LlSimNode, done: PaxosDone) -> None:
        entry = n.requests.pop(done.req, None)
        if entry is None:
            return
        client, rid, op, _ = entry
        outcome = done.outcome
        ok: bool | None
        value: str | None = None
        if isinstance(outcome, px.Chosen):
            self.paxos_chosen += 1
            previous = outcome.previous
            ok = True if op.op != "cas" else previous is not None and previous == (op.expected or "").encode()
            if op.op == "read" and previous is not None:
                value = previous.decode()
        elif isinstance(outcome, px.Contended) or (isinstance(outcome, px.Timeout) and not outcome.may_be_applied):
            ok = False  # not applied
        else:
            ok = False if op.op == "read" else None  # it may still be applied by a later round
        n.replies.append((client, rid, ok, value, None))

    def _write_done(self, n: LlSimNode, done: WriteDone) -> None:
        entry = n.requests.pop(done.req, None)
        if entry is None:
            return
        client, rid, op, hlc = entry
        n.replies.append((client, rid, True if done.ok else None, None, (op.key, (n.name, hlc)) if done.ok else None))

    def _read_done(self, n: LlSimNode, done: ReadDone) -> None:
        entry = n.requests.pop(done.req, None)
        if entry is None:
            return
        client, rid, op, started_us = entry
        if not done.ok:
            n.replies.append((client, rid, None, None, None))
            return
        key = op.key.encode()
        if self.strict:
            ctx = n.replica.store.context(key)
            for k, (origin, hlc), acked_us in self.acked_dots:
                if k == op.key and acked_us < started_us and ctx.get(origin, 0) < hlc:
                    self.engine.fail(f"{n.name}: a {self.read_level} read of {op.key} begun at {started_us}us "
                                     f"missed the write {origin}:{hlc} acknowledged at {acked_us}us "
                                     f"({self.write_level} writes, N={self.n_replicas})")
            self.stale_checked += 1
        n.replies.append((client, rid, True, _show(n.replica.store.visible(key)), None))

    def may_retry(self, op: PendingOp) -> bool:
        return op.op == "read"

    # ------------------------------------------------------ crash, restart
    def crash(self, nid: int) -> None:
        n = self.nodes[nid]
        n.up = False
        n.epoch += 1
        n.wal.crash(self.crash_rng)
        n.limbo.extend(n.unsynced)  # never sent, never acknowledged; a torn tail may still hold them
        n.unsynced, n.outbox, n.replies, n.requests, n.syncing = [], [], [], {}, False

    def restart(self, nid: int) -> None:
        n = self.nodes[nid]
        n.hlc = Hlc()  # as the runtime: the clock restarts past the node's own dots (below)
        n.replica = self._make(n)
        if n.snapshot is not None:
            store_blob, hints_blob, paxos_states = msgpack.unpackb(n.snapshot, raw=False)
            n.replica.store = KeyedStore.restore(store_blob, self.conflicts)
            n.replica.hints = Hints.restore(hints_blob, self.conflicts)
            for key, state in paxos_states:  # the acceptors' promises (as the runtime's snapshot)
                n.replica.acceptor.restore(key, pm.decode_state(state))
        recovered = set()
        for entry in n.wal.recover(after_index=n.wal.first_index - 1):
            n.replica.replay(entry)
            if entry[0] == "w":
                recovered.add((n.name, entry[1]))
        for dot in n.limbo:
            amount = self.unsynced_incrs.pop(dot, None)
            if amount is None:
                continue
            if dot in recovered:  # the page cache had written it out before the power cut
                self.incrs[dot] = amount
            else:
                self.lost_unsynced += 1
        n.limbo = []
        now_ms = n.wall_ms(self.engine.now_us)
        for kctx in n.replica.store.ctx.values():  # as the runtime: never reuse an own dot
            mine = kctx.get(n.name)
            if mine:
                n.hlc.observe(mine, now_ms)
        n.up = True
        n.believed = set()
        self.engine.at(n.clock.next_tick(self.engine.now_us), self._tick, nid, n.epoch)

    def nemesis_actions(self) -> dict[str, Callable[[random.Random], str | None]]:
        return {}

    def heal_step(self) -> None:
        pass

    # ---------------------------------------------------------- the end
    def _final_ring(self) -> Ring:
        return Ring(list(self._final_members()), self.n_replicas, 16)

    def _settled(self, n: LlSimNode, members: tuple[str, ...]) -> bool:
        """``n`` holds the final ring, drives no change, streams nothing, has cleaned up."""
        ms = n.replica.membership
        return (ms.state.ids == members and not ms.state.change and ms.driving is None
                and ms.cleanup_due_ms is None and not n.replica.streams)

    def converged(self) -> bool:
        """Every node up, idle, with no hint, on the final ring (every begun change made and
        cleaned up); every key held by exactly its final replicas, with equal states."""
        nodes = list(self.nodes.values())
        if not all(n.up and not n.outbox and not n.replica.hints.nodes() and not n.replica.hint_sends
                   for n in nodes):
            return False
        members = self._final_members()
        if not all(self._settled(n, members) for n in nodes):
            return False
        ring = self._final_ring()
        keys = {k for n in nodes for k in n.replica.store.stored_keys()}
        for key in keys:
            replicas = ring.preference_list(key)
            if any(key in n.replica.store.stored_keys() for n in nodes if n.name not in replicas):
                return False
            holders = [self.nodes[self.ids[r]] for r in replicas]
            if len({n.replica.store.key_digest(key) for n in holders}) != 1:
                return False
        return True

    def final_check(self, ops: list[HistOp]) -> None:
        for n in self.nodes.values():  # converged() held: restate what it means for the ring
            if not self._settled(n, self._final_members()):
                self.engine.fail(f"{n.name}: ring {n.replica.membership.status()}, not the final "
                                 f"{self._final_members()} after {self.begun}")
        if self.paxos:
            self._paxos_final_check(ops)
            return
        writes = [op for op in ops if op.op == "append"]
        survived: dict[str, int] = {}
        for key, amount in self.incrs.values():
            survived[key] = survived.get(key, 0) + amount
        ring = self._final_ring()
        for key in sorted({op.key for op in ops}):
            holders = [self.nodes[self.ids[r]] for r in ring.preference_list(key.encode())]
            views = [n.replica.store.visible(key.encode()) for n in holders]
            vis = views[0]
            if any(v != vis for v in views):
                self.engine.fail(f"{key}: the replicas end with different values {views}")
            kind = _kind(key)
            mine = [op for op in writes if op.key == key]
            acked = [op for op in mine if op.ok]
            written = {op.value for op in mine}
            if kind == "counter":
                final = int(vis.value) if vis is not None else 0
                if final != survived.get(key, 0):
                    self.engine.fail(f"{key}: counter is {final}, the durable increments add up to "
                                     f"{survived.get(key, 0)}")
                low = sum(_amount(op.value or "") for op in acked)
                unknown = sum(_amount(op.value or "") for op in mine if op.ok is None)
                if not low <= final <= low + unknown:
                    self.engine.fail(f"{key}: counter is {final}, acknowledged increments add up to {low} "
                                     f"(+{unknown} unknown)")
            elif kind in ("set", "list"):
                members = [] if vis is None else [m.decode() for m in vis.value]
                have = set(members)
                if kind == "list" and len(members) != len(have):
                    self.engine.fail(f"{key}: an element is in the list twice: {members}")
                for op in acked:
                    if op.value not in have:
                        self.engine.fail(f"{key}: the acknowledged write of {op.value} is lost")
                if have - written:
                    self.engine.fail(f"{key}: {sorted(have - written)} there but no client wrote them")
            else:
                if acked and vis is None:
                    self.engine.fail(f"{key}: acknowledged SETs but the key is gone")
                if vis is not None and vis.value.decode() not in written:
                    self.engine.fail(f"{key}: {vis.value!r} but no client wrote it")

    def _paxos_final_check(self, ops: list[HistOp]) -> None:
        verdict = check_register_history(ops, timeout_s=self.engine.cfg.check_timeout_s)
        if verdict.linearizable is not True:
            self.engine.fail(f"Paxos history not linearizable ({verdict.linearizable}): {verdict}")
        written = {op.value for op in ops if op.op in ("write", "cas")}
        ring = self._final_ring()
        for key in sorted({op.key for op in ops}):
            holders = [self.nodes[self.ids[r]] for r in ring.preference_list(key.encode())]
            views = [n.replica.store.visible(key.encode()) for n in holders]
            if any(v != views[0] for v in views):
                self.engine.fail(f"{key}: the replicas end with different values {views}")
            if views[0] is not None and views[0].value.decode() not in written:
                self.engine.fail(f"{key}: {views[0].value!r} but no client wrote it")

    def describe(self) -> str:
        return (f"W={self.write_level} R={self.read_level} N={self.n_replicas} sloppy={self.sloppy}: " + "; ".join(
            f"{n.name}{'' if n.up else ' down'} keys={len(n.replica.store.ctx)} ring={_ring(n)} hints="
            f"{sum(n.replica.hints.pending(t) for t in n.replica.hints.nodes())} outbox={len(n.outbox)}"
            for n in self.nodes.values()))

    def stats(self) -> dict[str, int]:
        out = {"committed": len(self.incrs) + self.acked, "acked_writes": self.acked,
               "changes_begun": len(self.begun),
               "ring_epoch": max(n.replica.membership.state.epoch for n in self.nodes.values()),
               "lost_unsynced": self.lost_unsynced, "strict_reads_checked": self.stale_checked,
               "paxos_chosen": self.paxos_chosen}
        for n in self.nodes.values():
            for k, v in n.replica.stats.items():
                out[k] = out.get(k, 0) + v
        return out


_KINDS = ("counter", "set", "register", "list")


def _kind(key: str) -> str:
    return _KINDS[int(key[1:]) % 4]


def _ring(n: LlSimNode) -> str:
    ms = n.replica.membership
    st = ms.state
    return (f"{st.epoch}:{','.join(st.ids)}{f'+{st.change} {st.node.id}' if st.node else ''}"
            f"{' driving' if ms.driving else ''}{' streaming' if n.replica.streams else ''}"
            f"{'' if ms.cleanup_due_ms is None else ' cleanup'}")


def _show(vis: Any) -> str:
    if vis is None:
        return ""
    if vis.type in ("set", "list"):
        return ",".join(sorted(m.decode() for m in vis.value))
    return str(vis.value.decode())


def _amount(value: str) -> int:
    return int(value.rsplit(".", 1)[-1]) % 5 + 1
