"""The raft mode in the simulator: real RaftNode cores, the real kv state
machine behind the real session table (runtime/raft_app.py), and a disk
that keeps the real WAL record format (sim/disk.py).

This driver is the reference for the effect contract (core/raft/effects.py):
effects are carried out in order; a Persist is written and synced before
the next Send / Apply / Reply / ReadReady / RestoreSnapshot (the durability
rule). Persistence follows the runner (RaftRunner._persist): a term or vote
change is saved at once, atomically (the meta file); entries go to the WAL
(a rewrite of the suffix first truncates it, atomically); a snapshot is
saved atomically and resets the WAL when it covers it; the commit index is
recorded as far as the WAL holds it durably. A crash loses what the WAL had
not synced, and may tear its last write. Odd seeds run the cores with
``async_persist``, as the real node does under ``--fsync always`` (thesis
§10.2.1): a leader's replication messages leave before its fsync, every
other message waits for the fsync covering the writes before it, and the
fsync's completion is reported to the core; here an fsync also takes
virtual time while the node goes on, the harder case.

Checked during the run: Election Safety (one leader per term), State
Machine Safety (every node applies the same entry at each index, in order),
Leader Completeness (a new leader holds every entry applied anywhere so
far), and that a restart finds every entry its recorded commit index
covers. Checked at the end: Log Matching, equal state machines (digest),
and a linearizable client history (check/linearizability.py). Raft paper
Figure 3. Convergence: one leader of the highest term, every node a voter,
every log equal to the leader's, fully committed and applied.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from replikv.check.history import Op
from replikv.check.linearizability import check_register_history
from replikv.core.raft import codec
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
from replikv.core.raft.messages import Entry, EntryKind, HardState, RaftMsg, Snapshot
from replikv.core.raft.node import DurableState, RaftNode, Role
from replikv.core.raft.sessions import SessionTable
from replikv.core.replies import Raw
from replikv.kv.state_machine import StateMachine
from replikv.runtime.raft_app import app_snapshot, apply_normal, encode_write, restore_app
from replikv.sim.clock import NodeClock
from replikv.sim.disk import SimWal
from replikv.sim.workload import Client, PendingOp

from replikv.sim.engine import NodeTable

if TYPE_CHECKING:
    from replikv.sim.engine import Engine

__all__ = ["RaftDriver", "RaftOptions", "seeded_lazy_rounds"]

SLOW_FSYNC_US = (10_000, 80_000)


def seeded_lazy_rounds(seed: int, given: int | None) -> int:
    """The Raft cores' ``lazy_follower_rounds`` (core/raft/node.py) in a simulator run: ``given``,
    else 3 for seeds 2, 5, 8... (one in three, independent of the other seed-chosen options,
    which go by two and four), so the simulators check the lazy third replica under their
    faults. The raft driver and the sharded simulator (multiraft_cluster.py) both take it."""
    if given is not None:
        return given
    return 3 if seed % 3 == 2 else 0


@dataclass
class RaftOptions:
    election_timeout_ticks: int = 10
    heartbeat_ticks: int = 2
    lease_reads: bool | None = None  # None: on for one seed in four
    async_persist: bool | None = None  # None: on for odd seeds
    # the core's lazy third replica (core/raft/node.py), with 3 voters; None: the seed decides
    # (seeded_lazy_rounds: one seed in three)
    lazy_follower_rounds: int | None = None
    fsync_us: tuple[int, int] = (100, 3_000)  # async_persist: how long one fsync takes
    compact_every: int = 12
    snapshot_chunk_bytes: int = 48


class RaftSimNode:
    def __init__(self, nid: int, clock: NodeClock) -> None:
        self.id = nid
        self.clock = clock
        self.wal = SimWal()
        self.meta: dict[str, Any] = {}  # term, vote, commit: durable when written (atomic file)
        self.snapshot: Snapshot | None = None  # durable when written
        self.core: RaftNode
        self.sm = StateMachine()
        self.sessions = SessionTable()
        self.applied = 0
        self.up = True
        self.epoch = 0  # events scheduled before a crash are void
        self.reads: list[tuple[object, int, Client]] = []
        self.seen_leader_terms: set[int] = set()
        self.held: list[tuple[int, Send]] = []  # async_persist: (writes it waits for, message)
        self.syncing = False
        self.slow = False
        self.commit_wanted = 0  # the core's commit index, recorded once the WAL holds it


class RaftDriver(NodeTable):
    mode = "raft"
    workload = "register"

    def __init__(self, engine: Engine, **options: Any) -> None:
        self.engine = engine
        self.opts = RaftOptions(**options)
        cfg = engine.cfg
        seed = cfg.seed
        self.lease = self.opts.lease_reads if self.opts.lease_reads is not None else seed % 4 == 0
        self.lazy_rounds = seeded_lazy_rounds(seed, self.opts.lazy_follower_rounds)
        self.lazy_held = self.lazy_swaps = 0  # of cores replaced at restarts (_count_lazy)
        self.async_persist = (self.opts.async_persist if self.opts.async_persist is not None
                              else seed % 2 == 1)
        self.rng = random.Random(engine.rng.getrandbits(64))
        self.fsync_rng = random.Random(seed ^ 0x5EED)
        self.crash_rng = random.Random(seed ^ 0xC4A5)
        self.voters = list(range(1, cfg.nodes + 1))
        self.nodes = {nid: RaftSimNode(nid, NodeClock(self.rng, cfg.tick_us, cfg.max_drift))
                      for nid in self.voters}
        self.leaders: dict[int, int] = {}  # term -> leader (Election Safety)
        self.committed: dict[int, Entry] = {}  # index -> entry applied somewhere

    # ------------------------------------------------------------ plumbing
    def _make_core(self, n: RaftSimNode, storage: DurableState | None) -> RaftNode:
        o = self.opts
        return RaftNode(
            n.id, voters=self.voters, storage=storage, rng=random.Random(self.rng.getrandbits(64)),
            election_timeout_ticks=o.election_timeout_ticks, heartbeat_ticks=o.heartbeat_ticks,
            pre_vote=True, check_quorum=True, lease_reads=self.lease,
            snapshot_chunk_bytes=o.snapshot_chunk_bytes, max_msg_bytes=256, max_inflight_msgs=4,
            async_persist=self.async_persist, lazy_follower_rounds=self.lazy_rounds)

    def boot(self) -> None:
        for n in self.nodes.values():
            n.core = self._make_core(n, None)
            self.engine.at(n.clock.next_tick(0), self._tick, n.id, n.epoch)

    def leader(self) -> int | None:
        return self.highest(lambda n: n.core.role is Role.LEADER, lambda n: n.core.term)

    def _tick(self, nid: int, epoch: int) -> None:
        n = self.nodes[nid]
        if n.up and n.epoch == epoch:
            self.handle(nid, n.core.tick())
            self.engine.at(n.clock.next_tick(self.engine.now_us), self._tick, nid, epoch)

    def _deliver(self, m: RaftMsg) -> None:
        self.handle(m.dst, self.nodes[m.dst].core.step(m))

    # ------------------------------------------------------------- storage
    def _persist(self, n: RaftSimNode, p: Persist) -> None:
        """As RaftRunner._persist: hard state, snapshot, entries."""
        hs = p.hard_state
        if hs is not None:
            if (hs.term, hs.vote) != (n.meta.get("term", 0), n.meta.get("vote")):
                n.meta = {**n.meta, "term": hs.term, "vote": hs.vote}
            n.commit_wanted = hs.commit
        wal = n.wal
        if p.snapshot is not None:
            snap = p.snapshot
            n.snapshot = snap
            if p.discard_log or snap.index > wal.last_index:
                wal.reset(snap.index + 1)
            self._record_commit(n)
        if p.entries:
            first = p.entries[0].index
            if first <= wal.last_index:
                wal.truncate_after(first - 1)
                self._record_commit(n)
            wal.append_entries(first, [codec.entry_to_wire(e) for e in p.entries])

    def _sync(self, n: RaftSimNode, upto: int | None = None) -> None:
        n.wal.sync(upto)
        self._record_commit(n)

    def _record_commit(self, n: RaftSimNode) -> None:
        """The commit index, as far as the WAL holds it durably (RaftRunner._save_hard_state)."""
        commit = min(n.commit_wanted, n.wal.durable_index)
        if commit > n.meta.get("commit", 0):
            n.meta = {**n.meta, "commit": commit}

    def _load(self, n: RaftSimNode) -> DurableState:
        """Restart: what the runner's recovery finds (snapshot, WAL after it, meta)."""
        snap = n.snapshot
        base = snap.index if snap else 0
        entries = tuple(codec.entry_from_wire(e) for e in n.wal.recover(after_index=base))
        last = entries[-1].index if entries else base
        commit = int(n.meta.get("commit", 0))
        if commit > last:
            self.engine.fail(f"node {n.id} restarts with commit index {commit} past its log's end {last}: "
                             "committed entries were lost")
        hs = HardState(term=int(n.meta.get("term", 0)), vote=n.meta.get("vote"), commit=commit)
        return DurableState(hard_state=hs, snapshot=snap, entries=entries)

    # ------------------------------------------------------------- effects
    def handle(self, nid: int, effects: list[Effect]) -> None:
        """Carry out one call's effects in order (the effect contract)."""
        n = self.nodes[nid]
        for e in effects:
            if isinstance(e, Persist):
                self._persist(n, e)
                continue
            if not self.async_persist:
                if n.wal.dirty:
                    self._sync(n)  # the durability rule: Persist before what depends on it
            elif isinstance(e, Send) and n.wal.dirty and not may_send_before_sync(e):
                n.held.append((n.wal.writes, e))  # waits for the fsync covering those writes
                continue
            if isinstance(e, Send):
                self.engine.send(nid, e.to, self._deliver, e.msg)
            elif isinstance(e, Apply):
                waiters = dict(e.waiters)
                for entry in e.entries:
                    self._check_apply(n, entry)
                    result = self._apply(n, entry)
                    rid = waiters.get(entry.index)
                    if rid is not None:
                        self._client_result(rid, result)
                self._serve_reads(n)
            elif isinstance(e, RestoreSnapshot):
                if e.snapshot.data:
                    n.sm, n.sessions = restore_app(e.snapshot.data, e.snapshot.index)
                else:
                    n.sm, n.sessions = StateMachine(), SessionTable()
                n.applied = e.snapshot.index
            elif isinstance(e, Reply):
                self._client_result(e.request_id, e.result)
            elif isinstance(e, ReadReady):
                client = self._client_of(e.request_id)
                if client is not None:
                    n.reads.append((e.request_id, e.index, client))
                    self._serve_reads(n)
        # Compaction (Raft §7): the application snapshots every few entries.
        core = n.core
        if n.up and core.log.applied - core.log.snapshot.index >= self.opts.compact_every \
                and n.applied == core.log.applied:
            self.handle(nid, core.compact(n.applied, app_snapshot(n.sm, n.sessions.to_state())))
        if self.async_persist and n.up and n.wal.dirty and not n.syncing:
            self._start_sync(n)
        self._observe(n)

    def _apply(self, n: RaftSimNode, entry: Entry) -> Any:
        n.applied = entry.index
        if entry.kind is EntryKind.NORMAL and entry.data:
            return n.sessions.apply(entry, lambda e: apply_normal(n.sm, e))
        return None

    def _start_sync(self, n: RaftSimNode) -> None:
        """async_persist: an fsync of every write so far starts now."""
        n.syncing = True
        log = n.core.log
        took = self.fsync_rng.randint(*(SLOW_FSYNC_US if n.slow else self.opts.fsync_us))
        self.engine.after(took, self._synced, n.id, n.epoch, n.wal.writes, log.last_index, log.last_term)

    def _synced(self, nid: int, epoch: int, upto: int, index: int, term: int) -> None:
        n = self.nodes[nid]
        if not n.up or n.epoch != epoch:
            return
        n.syncing = False
        self._sync(n, upto)
        ready = [s for w, s in n.held if w <= upto]
        n.held = [(w, s) for w, s in n.held if w > upto]
        for s in ready:
            self.engine.send(nid, s.to, self._deliver, s.msg)
        self.handle(nid, n.core.advance(persisted=(index, term)))

    def set_slow_disk(self, nid: int, slow: bool) -> None:
        self.nodes[nid].slow = slow and self.async_persist

    # -------------------------------------------------------------- checks
    def _check_apply(self, n: RaftSimNode, entry: Entry) -> None:
        """State Machine Safety: the same entry at each index everywhere, in order."""
        if entry.index != n.applied + 1:
            self.engine.fail(f"node {n.id} applied {entry.index} after {n.applied}")
        prev = self.committed.get(entry.index)
        if prev is None:
            self.committed[entry.index] = entry
        elif prev != entry:
            self.engine.fail(f"State Machine Safety: index {entry.index}: {prev} vs {entry} on {n.id}")

    def _observe(self, n: RaftSimNode) -> None:
        core = n.core
        if core.role is not Role.LEADER or core.term in n.seen_leader_terms:
            return
        n.seen_leader_terms.add(core.term)
        other = self.leaders.setdefault(core.term, n.id)
        if other != n.id:
            self.engine.fail(f"Election Safety: term {core.term} has leaders {other} and {n.id}")
        log = core.log  # Leader Completeness: every entry applied anywhere is in the new leader's log
        for idx, entry in self.committed.items():
            if idx <= log.snapshot.index:
                continue
            if idx > log.last_index or log.term(idx) != entry.term:
                self.engine.fail(f"Leader Completeness: leader {n.id} term {core.term} lacks {entry}")

    # ------------------------------------------------------------ clients
    def _client_of(self, rid: object) -> Client | None:
        if isinstance(rid, tuple) and len(rid) == 2 and isinstance(rid[0], int):
            return self.engine.clients[rid[0] - 1]
        return None

    def submit(self, client: Client, op: PendingOp, nid: int, rid: tuple[int, int]) -> None:
        core = self.nodes[nid].core
        if op.op == "read":
            lease = self.lease and client.rng.random() < 0.5
            self.handle(nid, core.read_index(rid, lease=lease))
            return
        argv = ([b"SET", op.key.encode(), (op.value or "").encode()] if op.op == "write" else
                [b"CAS", op.key.encode(), (op.expected or "").encode(), (op.value or "").encode()])
        n = self.nodes[nid]
        err, data = encode_write(n.sm, [argv], False, self.engine.now_us // 1000, str(nid))
        if err is not None:
            self.engine.fail(f"the state machine refused {argv!r}: {err}")
        self.handle(nid, core.propose(data, rid, client_id=client.client_id, seq=op.seq))

    def may_retry(self, op: PendingOp) -> bool:
        return True  # a write is retried with the same (client_id, seq): the session table dedups it

    def _serve_reads(self, n: RaftSimNode) -> None:
        """Thesis §6.4 step 4: serve once the state machine has applied the read index."""
        if not n.reads:
            return
        keep = []
        for rid, index, client in n.reads:
            if n.applied >= index:
                p = client.pending
                if p is not None and self.engine.current(client, rid) and p.op == "read":  # type: ignore[arg-type]
                    value = n.sm.read([b"GET", p.key.encode()], self.engine.now_us // 1000)
                    self.engine.client_done(client, True, value.decode() if isinstance(value, bytes) else None)
            else:
                keep.append((rid, index, client))
        n.reads = keep

    def _client_result(self, rid: object, result: object) -> None:
        c = self._client_of(rid)
        if c is None or not self.engine.current(c, rid):  # type: ignore[arg-type]
            return  # an answer to an abandoned attempt
        p = c.pending
        assert p is not None
        if isinstance(result, RaftError):
            # Retry soon with the same (client_id, seq): the dedup table makes it safe.
            self.engine.client_retry(c, rid, result.hint if isinstance(result, NotLeader) else None)  # type: ignore[arg-type]
            return
        if p.op == "read":
            return  # reads complete in _serve_reads
        reply = bytes(result) if isinstance(result, Raw) else result
        if reply in (b"+OK\r\n", b":1\r\n"):
            self.engine.client_done(c, True, None)
        elif reply == b":0\r\n" and p.op == "cas":
            self.engine.client_done(c, False, None)
        else:
            self.engine.fail(f"unexpected result {result!r} for {p}")

    # ------------------------------------------------------ crash, restart
    def crash(self, nid: int) -> None:
        n = self.nodes[nid]
        n.up = False
        n.epoch += 1
        n.wal.crash(self.crash_rng)
        n.reads, n.held, n.syncing = [], [], False

    def restart(self, nid: int) -> None:
        n = self.nodes[nid]
        self._count_lazy(n.core)
        n.core = self._make_core(n, self._load(n))
        snap = n.snapshot
        if snap is not None and snap.data:
            n.sm, n.sessions = restore_app(snap.data, snap.index)
        else:
            n.sm, n.sessions = StateMachine(), SessionTable()
        n.applied = snap.index if snap else 0
        n.up = True
        n.seen_leader_terms = set()
        self.engine.at(n.clock.next_tick(self.engine.now_us), self._tick, nid, n.epoch)
        self.handle(nid, n.core.start())

    # ------------------------------------------------------------ nemesis
    def nemesis_actions(self) -> dict[str, Callable[[random.Random], str | None]]:
        return {"transfer": self._transfer, "membership": self._membership}

    def _transfer(self, rng: random.Random) -> str | None:
        lead = self.leader()
        if lead is None:
            return None
        target = rng.choice([i for i in self.nodes if i != lead])
        try:
            self.handle(lead, self.nodes[lead].core.transfer_leadership(target))
            return f"transfer {lead} -> {target}"
        except RaftError as e:
            return f"transfer {lead} -> {target} refused: {e!r}"

    def _membership(self, rng: random.Random) -> str | None:
        """One change at a time (thesis §4.1): remove a voter (keeping two), add a
        non-member back as a learner, or promote a learner."""
        lead = self.leader()
        if lead is None:
            return None
        core = self.nodes[lead].core
        cfg = core.log.config()
        outside = [i for i in sorted(self.nodes) if i not in cfg.members]
        choices = (["remove"] if len(cfg.voters) > 2 else []) + (["add"] if outside else []) + \
            (["promote"] if cfg.learners else [])
        if not choices:
            return None
        kind = rng.choice(choices)
        token = ("m", len(self.engine.nemesis_log), 0)
        if kind == "remove":
            target = rng.choice(sorted(cfg.voters))
            self.handle(lead, core.remove(target, token))
        elif kind == "add":
            target = rng.choice(outside)
            self.handle(lead, core.add_learner(target, token))
        else:
            target = rng.choice(sorted(cfg.learners))
            self.handle(lead, core.promote(target, token))
        return f"{kind} {target} (leader {lead})"

    def heal_step(self) -> None:
        """Bring every node back as a voter, one change at a time."""
        lead = self.leader()
        if lead is None:
            return
        core = self.nodes[lead].core
        cfg = core.log.config()
        for i in sorted(self.nodes):
            if i not in cfg.members:
                self.handle(lead, core.add_learner(i, ("m", -1, i)))
                return
            if i in cfg.learners:
                self.handle(lead, core.promote(i, ("m", -2, i)))
                return

    # ---------------------------------------------------------- the end
    def converged(self) -> bool:
        if not all(n.up for n in self.nodes.values()):
            return False
        lead = self.leader()
        if lead is None:
            return False
        ln = self.nodes[lead]
        lc = ln.core
        if max(n.core.term for n in self.nodes.values()) != lc.term:
            return False
        if lc.log.config().voters != set(self.nodes) or lc.log.commit != lc.log.last_index:
            return False
        digest = ln.sm.digest()
        for n in self.nodes.values():
            log = n.core.log
            if log.last_index != lc.log.last_index or log.applied != lc.log.commit:
                return False
            if n.applied != log.applied or n.sm.digest() != digest:
                return False
        return True

    def final_check(self, ops: list[Op]) -> None:
        self._check_log_matching()
        verdict = check_register_history(ops, timeout_s=self.engine.cfg.check_timeout_s)
        if verdict.linearizable is not True:
            self.engine.fail(f"history not linearizable ({verdict.linearizable}): {verdict}")

    def _check_log_matching(self) -> None:
        """Log Matching (Raft §5.3): two logs with an entry of the same index
        and term are identical up to that index (compared where both hold it)."""
        nodes = list(self.nodes.values())
        for i, a in enumerate(nodes):
            for b in nodes[i + 1:]:
                la, lb = a.core.log, b.core.log
                lo, hi = max(la.first_index, lb.first_index), min(la.last_index, lb.last_index)
                agree = next((idx for idx in range(hi, lo - 1, -1) if la.term(idx) == lb.term(idx)), None)
                if agree is None:
                    continue
                for idx in range(lo, agree + 1):
                    if la.entry(idx) != lb.entry(idx):
                        self.engine.fail(f"Log Matching: nodes {a.id},{b.id} differ at {idx} below {agree}")

    def describe(self) -> str:
        return "; ".join(f"{n.id}:{n.core.role.value}/t{n.core.term} c{n.core.log.commit} "
                         f"a{n.core.log.applied} l{n.core.log.last_index}{'' if n.up else ' down'}"
                         for n in self.nodes.values())

    def _count_lazy(self, core: RaftNode) -> None:
        """Keep a core's lazy-follower counters across its restart (a new core starts at 0)."""
        self.lazy_held += core.lazy_rounds_held
        self.lazy_swaps += core.lazy_swaps

    def stats(self) -> dict[str, int]:
        out = {"committed": max(self.committed, default=0), "terms_with_leader": len(self.leaders)}
        if self.lazy_rounds:
            cores = [n.core for n in self.nodes.values()]
            out["lazy_rounds_held"] = self.lazy_held + sum(c.lazy_rounds_held for c in cores)
            out["lazy_swaps"] = self.lazy_swaps + sum(c.lazy_swaps for c in cores)
        return out
