"""Deterministic simulation of a Raft cluster: real RaftNode cores on virtual time.

One seed decides everything (network delays and faults, clock drift, client
choices, crashes), so a failing run replays exactly with
`python -m replikv.sim --mode raft --seed N [--nodes 5]` (TigerBeetle's VOPR
and FoundationDB's simulator work the same way).

The driver here is the reference for the effect contract (core/raft/effects.py):
effects are carried out in order; a Persist is written to the simulated disk
and synced before the next Send / Apply / Reply / ReadReady / RestoreSnapshot
(the durability rule). A crash loses what is not synced. Odd seeds run the
cores with ``async_persist``, as the real node does under ``--fsync always``
(thesis §10.2.1): a leader's replication messages leave before its fsync,
every other message waits for the fsync covering the writes before it, and
the fsync's completion is reported to the core. Here an fsync also takes
virtual time while the node goes on (the real node blocks on it), the harder
case: more happens between a write and its fsync.

Each run has a fault phase (nemesis.py) then a heal phase that must converge
within a bound: one leader of the highest term, every log equal to the
leader's and fully committed and applied, every state machine equal, every
client operation answered. Checked during the run: Election Safety (one
leader per term), State Machine Safety (every node applies the same entry at
each index, in order), Leader Completeness (a new leader holds every entry
applied anywhere so far). Checked after: Log Matching, and the client
history is linearizable (check/linearizability.py). Raft paper Figure 3.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from replikv.check.history import Op
from replikv.check.linearizability import check_register_history
from replikv.core.raft.effects import (
    Apply,
    Effect,
    Persist,
    ReadReady,
    Reply,
    RestoreSnapshot,
    Send,
    may_send_before_sync,
)
from replikv.core.raft.errors import NotLeader, RaftError
from replikv.core.raft.messages import Entry, RaftMsg
from replikv.core.raft.node import RaftNode, Role
from replikv.sim.clock import NodeClock, VirtualClock
from replikv.sim.disk import SimDisk
from replikv.sim.nemesis import Nemesis
from replikv.sim.network import SimNetwork
from replikv.sim.workload import Client, KVStateMachine

__all__ = ["SafetyViolation", "SimConfig", "SimResult", "Simulation", "replay_command", "run"]

_TICK, _MSG, _CLIENT, _TIMEOUT, _NEMESIS, _SYNCED = range(6)


class SafetyViolation(AssertionError):
    """A Raft safety property or the linearizability check failed for a seed."""


def replay_command(seed: int, nodes: int) -> str:
    extra = f" --nodes {nodes}" if nodes != 3 else ""
    return f"python -m replikv.sim --mode raft --seed {seed}{extra}"


@dataclass
class SimConfig:
    seed: int
    nodes: int = 3
    fault_us: int = 2_000_000
    heal_us_max: int = 4_000_000
    clients: int = 3
    keys: int = 2
    tick_us: int = 10_000
    max_drift: float = 0.01
    election_timeout_ticks: int = 10
    heartbeat_ticks: int = 2
    lease_reads: bool | None = None  # None: on for one seed in four
    async_persist: bool | None = None  # None: on for odd seeds
    fsync_us: tuple[int, int] = (100, 3_000)  # async_persist: how long one fsync takes
    compact_every: int = 12
    snapshot_chunk_bytes: int = 48
    client_timeout_us: int = 150_000
    think_us_max: int = 30_000
    max_attempts: int = 40
    check_timeout_s: float = 20.0


@dataclass
class SimResult:
    seed: int
    nodes: int
    ops: list[Op]
    committed: int
    converged_at_us: int
    nemesis: list[str]
    messages: int
    leaders: dict[int, int] = field(default_factory=dict)


class SimNode:
    def __init__(self, nid: int, core: RaftNode, clock: NodeClock) -> None:
        self.id = nid
        self.core = core
        self.disk = SimDisk()
        self.sm = KVStateMachine()
        self.clock = clock
        self.up = True
        self.epoch = 0  # ticks scheduled in an older epoch (before a crash) are void
        self.reads: list[tuple[object, int, Client]] = []  # (rid, read index, client)
        self.seen_leader_terms: set[int] = set()
        self.held: list[tuple[int, Send]] = []  # async_persist: (writes it waits for, message)
        self.syncing = False  # async_persist: an fsync is in flight
        self.fsync_us: tuple[int, int] | None = None  # a slow disk (nemesis), else the config's


class Simulation:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.clock = VirtualClock()
        self.net = SimNetwork(random.Random(self.rng.getrandbits(64)))
        self.nemesis = Nemesis(random.Random(self.rng.getrandbits(64)))
        self.lease = cfg.lease_reads if cfg.lease_reads is not None else cfg.seed % 4 == 0
        self.async_persist = (
            cfg.async_persist if cfg.async_persist is not None else cfg.seed % 2 == 1
        )
        self.fsync_rng = random.Random(cfg.seed ^ 0x5EED)  # apart from self.rng: seeds keep their runs
        self.voters = list(range(1, cfg.nodes + 1))
        self.nodes: dict[int, SimNode] = {}
        for nid in self.voters:
            clock = NodeClock(self.rng, cfg.tick_us, cfg.max_drift)
            self.nodes[nid] = SimNode(nid, self._make_core(nid, None), clock)
        self.clients = [
            Client(
                p,
                1000 + p,
                random.Random(self.rng.getrandbits(64)),
                [f"k{i}" for i in range(cfg.keys)],
            )
            for p in range(1, cfg.clients + 1)
        ]
        self.events: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        self.leaders: dict[int, int] = {}  # term -> leader (Election Safety)
        self.committed: dict[int, Entry] = {}  # index -> entry applied somewhere
        self.healing = False

    # ----------------------------------------------------------- plumbing
    def _make_core(self, nid: int, disk: SimDisk | None) -> RaftNode:
        cfg = self.cfg
        return RaftNode(
            nid,
            voters=self.voters,
            storage=disk.load() if disk is not None else None,
            rng=random.Random(self.rng.getrandbits(64)),
            election_timeout_ticks=cfg.election_timeout_ticks,
            heartbeat_ticks=cfg.heartbeat_ticks,
            pre_vote=True,
            check_quorum=True,
            lease_reads=self.lease,
            snapshot_chunk_bytes=cfg.snapshot_chunk_bytes,
            max_msg_bytes=256,
            max_inflight_msgs=4,
            async_persist=self.async_persist,
        )

    def _at(self, t_us: int, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self.events, (t_us, self._seq, kind, payload))

    def _fail(self, what: str) -> None:
        raise SafetyViolation(
            f"seed {self.cfg.seed}: {what}\nreplay: {replay_command(self.cfg.seed, self.cfg.nodes)}"
        )

    def current_leader(self) -> int | None:
        best: tuple[int, int] | None = None
        for n in self.nodes.values():
            if n.up and n.core.role is Role.LEADER and (best is None or n.core.term > best[0]):
                best = (n.core.term, n.id)
        return best[1] if best else None

    # ------------------------------------------------------------- driver
    def handle(self, nid: int, effects: list[Effect]) -> None:
        """Carry out one call's effects in order (the effect contract)."""
        n = self.nodes[nid]
        for e in effects:
            if isinstance(e, Persist):
                n.disk.write(e)
                continue
            if not self.async_persist:
                if n.disk.dirty:
                    n.disk.sync()  # the durability rule: Persist before what depends on it
            elif isinstance(e, Send) and n.disk.dirty and not may_send_before_sync(e):
                n.held.append((n.disk.writes, e))  # waits for the fsync covering those writes
                continue
            if isinstance(e, Send):
                self._send(nid, e)
            elif isinstance(e, Apply):
                waiters = dict(e.waiters)
                for entry in e.entries:
                    self._check_apply(n, entry)
                    result = n.sm.apply(entry)
                    rid = waiters.get(entry.index)
                    if rid is not None:
                        self._client_result(rid, result)
                self._serve_reads(n)
            elif isinstance(e, RestoreSnapshot):
                n.sm.restore(e.snapshot.data, e.snapshot.index)
            elif isinstance(e, Reply):
                self._client_result(e.request_id, e.result)
            elif isinstance(e, ReadReady):
                client = self._client_of(e.request_id)
                if client is not None:
                    n.reads.append((e.request_id, e.index, client))
                    self._serve_reads(n)
        # Compaction (Raft §7): the application snapshots every few entries.
        core = n.core
        if n.up and core.log.applied - core.log.snapshot.index >= self.cfg.compact_every:
            self.handle(nid, core.compact(core.log.applied, n.sm.snapshot()))
        if self.async_persist and n.up and n.disk.dirty and not n.syncing:
            self._start_sync(n)
        self._observe(n)

    def _send(self, nid: int, e: Send) -> None:
        now = self.clock.now_us
        for d in self.net.delays(nid, e.to):
            self._at(now + d, _MSG, e.msg)

    def _start_sync(self, n: SimNode) -> None:
        """async_persist: an fsync of every write so far starts now; writes
        made while it runs wait for the next one."""
        n.syncing = True
        log = n.core.log
        done = self.clock.now_us + self.fsync_rng.randint(*(n.fsync_us or self.cfg.fsync_us))
        self._at(done, _SYNCED, (n.id, n.epoch, n.disk.writes, log.last_index, log.last_term))

    def _synced(self, nid: int, upto: int, index: int, term: int) -> None:
        """async_persist: the fsync started at `upto` writes completed."""
        n = self.nodes[nid]
        n.syncing = False
        n.disk.sync(upto)
        ready = [s for w, s in n.held if w <= upto]
        n.held = [(w, s) for w, s in n.held if w > upto]
        for s in ready:
            self._send(nid, s)
        self.handle(nid, n.core.advance(persisted=(index, term)))

    def _check_apply(self, n: SimNode, entry: Entry) -> None:
        """State Machine Safety: the same entry at each index everywhere, in order."""
        if entry.index != n.sm.applied_index + 1:
            self._fail(f"node {n.id} applied {entry.index} after {n.sm.applied_index}")
        prev = self.committed.get(entry.index)
        if prev is None:
            self.committed[entry.index] = entry
        elif prev != entry:
            self._fail(f"State Machine Safety: index {entry.index}: {prev} vs {entry} on {n.id}")

    def _observe(self, n: SimNode) -> None:
        core = n.core
        if core.role is not Role.LEADER or core.term in n.seen_leader_terms:
            return
        n.seen_leader_terms.add(core.term)
        other = self.leaders.setdefault(core.term, n.id)
        if other != n.id:
            self._fail(f"Election Safety: term {core.term} has leaders {other} and {n.id}")
        # Leader Completeness: every entry applied anywhere is in the new leader's log.
        log = core.log
        for idx, entry in self.committed.items():
            if idx <= log.snapshot.index:
                continue
            if idx > log.last_index or log.term(idx) != entry.term:
                self._fail(f"Leader Completeness: leader {n.id} term {core.term} lacks {entry}")

    def _serve_reads(self, n: SimNode) -> None:
        """Thesis §6.4 step 4: serve once the state machine has applied the read index."""
        if not n.reads:
            return
        keep = []
        for rid, index, client in n.reads:
            if n.sm.applied_index >= index:
                p = client.pending
                if p is not None and rid == (client.process, p.attempt_id) and p.op == "read":
                    client.complete(True, n.sm.data.get(p.key), self.clock.now_us)
                    self._schedule_client(client)
            else:
                keep.append((rid, index, client))
        n.reads = keep

    def crash(self, nid: int) -> None:
        n = self.nodes[nid]
        n.up = False
        n.epoch += 1
        n.disk.crash()
        n.reads = []
        n.held = []
        n.syncing = False

    def restart(self, nid: int) -> None:
        n = self.nodes[nid]
        n.core = self._make_core(nid, n.disk)
        n.sm = KVStateMachine()
        snap = n.disk.snapshot
        if snap is not None:
            n.sm.restore(snap.data, snap.index)
        n.up = True
        n.seen_leader_terms = set()
        self._at(n.clock.next_tick(self.clock.now_us), _TICK, (nid, n.epoch))
        self.handle(nid, n.core.start())

    # ------------------------------------------------------------- clients
    def _client_of(self, rid: object) -> Client | None:
        if isinstance(rid, tuple) and len(rid) == 2:
            return self.clients[rid[0] - 1]
        return None

    def _schedule_client(self, c: Client) -> None:
        self._at(self.clock.now_us + c.rng.randint(0, self.cfg.think_us_max), _CLIENT, c.process)

    def _client_start(self, c: Client) -> None:
        if self.healing or c.pending is not None:
            return
        c.next_op(self.clock.now_us)
        self._client_attempt(c)

    def _client_attempt(self, c: Client) -> None:
        p = c.pending
        if p is None:
            return
        now = self.clock.now_us
        if p.attempts >= self.cfg.max_attempts:
            c.complete(None, None, now)
            self._schedule_client(c)
            return
        p.attempts += 1
        c.tokens += 1
        p.attempt_id = (
            c.tokens
        )  # unique per attempt: an old attempt's answer is never taken for this one
        rid = (c.process, p.attempt_id)
        self._at(now + self.cfg.client_timeout_us, _TIMEOUT, rid)
        up = [i for i in sorted(self.nodes) if self.nodes[i].up]
        if not up:
            return
        target = c.leader_hint if c.leader_hint in up and c.rng.random() < 0.8 else c.rng.choice(up)
        p.node = target
        core = self.nodes[target].core
        if p.op == "read":
            lease = self.lease and c.rng.random() < 0.5
            self.handle(target, core.read_index(rid, lease=lease))
        else:
            self.handle(
                target, core.propose(Client.encode(p), rid, client_id=c.client_id, seq=p.seq)
            )

    def _client_result(self, rid: object, result: object) -> None:
        c = self._client_of(rid)
        if c is None or c.pending is None or rid != (c.process, c.pending.attempt_id):
            return  # an answer to an abandoned attempt
        p = c.pending
        now = self.clock.now_us
        if isinstance(result, RaftError):
            if isinstance(result, NotLeader):
                c.leader_hint = result.hint
            # Retry soon with the same (client_id, seq): the dedup table makes it safe.
            self._at(now + 2_000, _TIMEOUT, rid)
            return
        if p.op == "read":
            return  # reads complete in _serve_reads
        if result == "ok":
            c.complete(True, None, now)
        elif result == "fail":
            c.complete(False, None, now)
        else:
            self._fail(f"unexpected result {result!r} for {p}")
        self._schedule_client(c)

    # ----------------------------------------------------------------- run
    def converged(self) -> bool:
        if not all(n.up for n in self.nodes.values()):
            return False
        lead = self.current_leader()
        if lead is None:
            return False
        lc = self.nodes[lead].core
        if max(n.core.term for n in self.nodes.values()) != lc.term:
            return False
        if lc.log.config().voters != set(self.nodes):
            return False
        if lc.log.commit != lc.log.last_index:
            return False
        for n in self.nodes.values():
            log = n.core.log
            if log.last_index != lc.log.last_index or log.applied != lc.log.commit:
                return False
            if n.sm.data != self.nodes[lead].sm.data:
                return False
        return all(c.pending is None for c in self.clients)

    def run(self) -> SimResult:
        cfg = self.cfg
        for n in self.nodes.values():
            self._at(n.clock.next_tick(0), _TICK, (n.id, n.epoch))
        for c in self.clients:
            self._schedule_client(c)
        self._at(self.nemesis.gap_us(), _NEMESIS, None)
        heal_at = cfg.fault_us
        deadline = cfg.fault_us + cfg.heal_us_max
        next_check = heal_at
        while self.events:
            if not self.healing and self.events[0][0] >= heal_at:
                self.clock.advance_to(heal_at)
                self.healing = True
                self.nemesis.heal_all(self)
                continue
            t, _, kind, payload = heapq.heappop(self.events)
            if t > deadline:
                break
            self.clock.advance_to(t)
            if kind == _TICK:
                nid, epoch = payload
                n = self.nodes[nid]
                if n.up and n.epoch == epoch:
                    self.handle(nid, n.core.tick())
                    self._at(n.clock.next_tick(t), _TICK, (nid, epoch))
            elif kind == _MSG:
                m: RaftMsg = payload
                if self.net.arrives(m.src, m.dst) and self.nodes[m.dst].up:
                    self.handle(m.dst, self.nodes[m.dst].core.step(m))
            elif kind == _CLIENT:
                self._client_start(self.clients[payload - 1])
            elif kind == _TIMEOUT:
                c = self._client_of(payload)
                if (
                    c is not None
                    and c.pending is not None
                    and payload == (c.process, c.pending.attempt_id)
                ):
                    self._client_attempt(c)
            elif kind == _SYNCED:
                nid, epoch, upto, index, term = payload
                if self.nodes[nid].up and self.nodes[nid].epoch == epoch:
                    self._synced(nid, upto, index, term)
            elif kind == _NEMESIS and not self.healing:
                self.nemesis.act(self)
                self._at(t + self.nemesis.gap_us(), _NEMESIS, None)
            if self.healing and t >= next_check:
                next_check = t + cfg.tick_us
                self.nemesis.repair_membership(self)
                if self.converged():
                    break
        if not self.converged():
            self._fail(
                f"no convergence within {cfg.heal_us_max}us of healing: "
                + "; ".join(
                    f"{n.id}:{n.core.role.value}/t{n.core.term} c{n.core.log.commit} "
                    f"a{n.core.log.applied} l{n.core.log.last_index}"
                    for n in self.nodes.values()
                )
                + f"; pending clients {[c.pending for c in self.clients if c.pending]}"
            )
        self._check_log_matching()
        ops = [op for c in self.clients for op in c.history]
        verdict = check_register_history(ops, timeout_s=cfg.check_timeout_s)
        if verdict.linearizable is not True:
            self._fail(f"history not linearizable ({verdict.linearizable}): {verdict}")
        return SimResult(
            seed=cfg.seed,
            nodes=cfg.nodes,
            ops=ops,
            committed=max(self.committed, default=0),
            converged_at_us=self.clock.now_us,
            nemesis=self.nemesis.log,
            messages=self.net.sent,
            leaders=dict(self.leaders),
        )

    def _check_log_matching(self) -> None:
        """Log Matching (Raft §5.3): two logs with an entry of the same index
        and term are identical up to that index (compared where both hold it)."""
        nodes = list(self.nodes.values())
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                la, lb = a.core.log, b.core.log
                lo = max(la.first_index, lb.first_index)
                hi = min(la.last_index, lb.last_index)
                agree = None
                for idx in range(hi, lo - 1, -1):
                    if la.term(idx) == lb.term(idx):
                        agree = idx
                        break
                if agree is None:
                    continue
                for idx in range(lo, agree + 1):
                    if la.entry(idx) != lb.entry(idx):
                        self._fail(
                            f"Log Matching: nodes {a.id},{b.id} differ at {idx} below {agree}"
                        )


def run(seed: int, nodes: int = 3, **overrides: Any) -> SimResult:
    return Simulation(SimConfig(seed=seed, nodes=nodes, **overrides)).run()
