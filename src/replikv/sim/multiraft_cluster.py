"""A sharded raft cluster in the simulator: many nodes, each a ``GroupHost``
(core/multiraft/host.py) with a replica of many Raft groups.

Time advances in rounds of one tick: the batches due this round are
delivered (a batch takes ``delay_ticks`` rounds; partitions and down nodes
drop them), every live node's host ticks, and its ``Ready`` is carried out
in the order the host's contract states: every Persist (an in-memory disk
that is durable at once), then the other effects of each group in order,
then the batches. A crash loses nothing written (each Persist is synced
before the round's sends) and the node comes back with a new incarnation,
rebuilding every group's core from its disk.

Checked at every round: Election Safety per group (one leader per term) and
State Machine Safety per group (every replica applies the same entry at each
index). ``scale_report`` measures what issue 13 asks of the design: the
frames and Raft messages per second each node sends with every group idle
(they must grow with the number of nodes, not of groups) and the time to
re-elect every group a failed node led, in election timeouts.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from replikv.core.multiraft.host import GroupHost, Ready
from replikv.core.multiraft.messages import Batch
from replikv.core.raft.effects import Apply, Persist, ReadReady, Reply
from replikv.core.raft.messages import EntryKind
from replikv.core.raft.node import RaftNode, Role
from replikv.sim.engine import SafetyViolation
from replikv.sim.raft_driver import seeded_lazy_rounds
from replikv.sim.raft_env import MemoryDisk

__all__ = ["Placement", "ScaleReport", "ShardedSim", "round_robin_placement", "scale_report"]

Placement = dict[int, tuple[int, ...]]  # group -> member node ids, the preferred leader first


def round_robin_placement(nodes: int, groups: int, replicas: int) -> Placement:
    """Group g on nodes g, g+1, ... (mod n), led by the first: leaders and replicas spread evenly."""
    return {g: tuple((g + i) % nodes + 1 for i in range(replicas)) for g in range(groups)}


@dataclass
class ShardedSim:
    nodes: int
    groups: int
    replicas: int = 3
    seed: int = 0
    election_timeout_ticks: int = 100
    heartbeat_ticks: int = 10
    quiesce: bool = True
    lease_reads: bool = False
    # RaftNode's lazy third replica (core/raft/node.py); None: the seed decides
    # (raft_driver.seeded_lazy_rounds)
    lazy_follower_rounds: int | None = None
    delay_ticks: tuple[int, int] = (1, 1)
    placement: Placement = field(default_factory=dict)
    now: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        if not self.placement:
            self.placement = round_robin_placement(self.nodes, self.groups, self.replicas)
        self.hosts: dict[int, GroupHost | None] = {}
        self.incarnation: dict[int, int] = {}
        self.disks: dict[tuple[int, int], MemoryDisk] = {}
        self.applied: dict[tuple[int, int], int] = {}
        self.canonical: dict[int, dict[int, tuple[int, bytes]]] = {g: {} for g in self.placement}
        self.leader_of_term: dict[tuple[int, int], int] = {}
        self.results: dict[object, object] = {}
        self.cut: set[tuple[int, int]] = set()  # directed links that drop everything
        self._net: list[tuple[int, int, Batch]] = []
        self._seq = 0
        self.frames: dict[int, int] = {n: 0 for n in range(1, self.nodes + 1)}
        self.raft_msgs: dict[int, int] = {n: 0 for n in range(1, self.nodes + 1)}
        for n in range(1, self.nodes + 1):
            self.incarnation[n] = 0
            self._start(n)
        for g, members in self.placement.items():
            host = self.hosts[members[0]]
            assert host is not None
            host.call(g, host.groups[g].campaign())  # the preferred leader campaigns at once
        for n in range(1, self.nodes + 1):
            self._carry_out(n)

    # -- nodes -----------------------------------------------------------------------------------
    def _start(self, n: int) -> None:
        host = GroupHost(n, heartbeat_ticks=self.heartbeat_ticks, election_timeout_ticks=self.election_timeout_ticks,
                         incarnation=self.incarnation[n], quiesce=self.quiesce)
        self.hosts[n] = host
        for g in self._hosted(n):
            self._open(n, g, host)

    def _hosted(self, n: int) -> list[int]:
        """The groups node ``n`` has a replica of (sim/rebalance_sim.py: they change)."""
        return [g for g, members in self.placement.items() if n in members]

    def _replicas(self, g: int) -> tuple[int, ...]:
        """The nodes that may hold a replica of ``g``."""
        return self.placement[g]

    def _bootstrap_voters(self, n: int, g: int) -> tuple[int, ...]:
        """The configuration node ``n``'s replica of ``g`` starts from when its disk names none."""
        return self.placement[g]

    def _open(self, n: int, g: int, host: GroupHost) -> None:
        """Node ``n``'s replica of ``g``, rebuilt from its disk, into ``host``."""
        disk = self.disks.setdefault((n, g), MemoryDisk())
        raft = RaftNode(n, voters=self._bootstrap_voters(n, g), storage=disk.load(),
                        rng=random.Random(self.rng.random()), election_timeout_ticks=self.election_timeout_ticks,
                        heartbeat_ticks=self.heartbeat_ticks, lease_reads=self.lease_reads,
                        lazy_follower_rounds=seeded_lazy_rounds(self.seed, self.lazy_follower_rounds))
        self.applied[(n, g)] = raft.log.applied
        host.add_group(g, raft)

    def crash(self, n: int) -> None:
        self.hosts[n] = None

    def restart(self, n: int) -> None:
        self.incarnation[n] += 1
        self._start(n)
        self._carry_out(n)

    def is_up(self, n: int) -> bool:
        return self.hosts.get(n) is not None

    # -- the network -----------------------------------------------------------------------------
    def _send(self, b: Batch) -> None:
        lo, hi = self.delay_ticks
        self._seq += 1
        heapq.heappush(self._net, (self.now + self.rng.randint(lo, hi), self._seq, b))
        self.frames[b.src] += 1
        self.raft_msgs[b.src] += len(b.msgs)

    def partition(self, side: set[int]) -> None:
        others = set(range(1, self.nodes + 1)) - side
        self.cut = {(a, b) for a in side for b in others} | {(b, a) for a in side for b in others}

    def heal(self) -> None:
        self.cut = set()

    # -- rounds ----------------------------------------------------------------------------------
    def step_round(self) -> None:
        self.now += 1
        while self._net and self._net[0][0] <= self.now:
            _, _, b = heapq.heappop(self._net)
            host = self.hosts.get(b.dst)
            if host is not None and (b.src, b.dst) not in self.cut:
                self._deliver(host, b)
        for n, host in self.hosts.items():
            if host is not None:
                host.tick()
                self._carry_out(n)

    def _deliver(self, host: GroupHost, b: Batch) -> None:
        """A batch arrives at a live node (sim/rebalance_sim.py first creates replicas on demand)."""
        host.step(b)

    def run(self, rounds: int, until: Callable[[], bool] | None = None) -> int:
        """Run up to ``rounds`` rounds, or until ``until()`` holds; returns the rounds run."""
        for i in range(rounds):
            if until is not None and until():
                return i
            self.step_round()
        return rounds

    def _carry_out(self, n: int) -> None:
        host = self.hosts[n]
        assert host is not None
        ready: Ready = host.ready()
        for g, effects in ready.groups:  # every Persist of every group first (one "fsync")
            for e in effects:
                if type(e) is Persist:
                    self.disks[(n, g)].write(e)
        for g, effects in ready.groups:
            raft = host.groups[g]
            for e in effects:
                if type(e) is Apply:
                    for entry in e.entries:
                        self._check_apply(n, g, entry.index, entry.term,
                                          entry.data if entry.kind is EntryKind.NORMAL else b"")
                    for index, rid in e.waiters:
                        self._result(n, rid, ("applied", g, index))
                elif type(e) is Reply:
                    self._result(n, e.request_id, ("error", e.result))
                elif type(e) is ReadReady:
                    self._result(n, e.request_id, ("read", g, e.index))
            if raft.role is Role.LEADER:
                who = self.leader_of_term.setdefault((g, raft.term), n)
                if who != n:
                    raise SafetyViolation(f"group {g}: two leaders in term {raft.term}: {who} and {n}")
        for b in ready.batches:
            self._send(b)

    def _check_apply(self, n: int, g: int, index: int, term: int, data: bytes) -> None:
        expected = self.applied[(n, g)] + 1
        if index != expected:
            raise SafetyViolation(f"node {n} group {g} applied {index} after {expected - 1}")
        self.applied[(n, g)] = index
        seen = self.canonical[g].setdefault(index, (term, data))
        if seen != (term, data):
            raise SafetyViolation(f"group {g} index {index}: node {n} applied {(term, data)}, another {seen}")
        self._apply_entry(n, g, index, data)

    def _apply_entry(self, n: int, g: int, index: int, data: bytes) -> None:
        """A committed entry node ``n``'s replica of ``g`` applies (no state machine here: a
        subclass, sim/slot_moves.py, applies key/value and slot-move entries)."""

    def _result(self, n: int, rid: object, result: object) -> None:
        """What node ``n``'s core answered request ``rid``."""
        self.results[rid] = result

    # -- clients ---------------------------------------------------------------------------------
    def propose(self, n: int, g: int, data: bytes, rid: object) -> None:
        host = self.hosts[n]
        assert host is not None
        host.propose(g, [(data, rid, None, None)])
        self._carry_out(n)

    def read(self, n: int, g: int, rid: object, lease: bool = False) -> None:
        host = self.hosts[n]
        assert host is not None
        host.read(g, [(rid, lease)])
        self._carry_out(n)

    # -- views -----------------------------------------------------------------------------------
    def leader(self, g: int) -> int | None:
        """The live replica that leads ``g`` in the highest term, if any."""
        best: tuple[int, int] | None = None
        for n in self._replicas(g):
            host = self.hosts.get(n)
            raft = host.groups.get(g) if host is not None else None
            if raft is not None and raft.role is Role.LEADER and (best is None or raft.term > best[0]):
                best = (raft.term, n)
        return None if best is None else best[1]

    def all_led(self) -> bool:
        return all(self.leader(g) is not None for g in self.placement)

    def all_quiesced(self) -> bool:
        return all(not h.awake for h in self.hosts.values() if h is not None)


@dataclass
class ScaleReport:
    nodes: int
    groups: int
    replicas: int
    quiesce: bool
    boot_rounds: int
    idle_frames_per_node_s: float
    idle_raft_msgs_per_node_s: float
    groups_led_by_victim: int
    reelect_rounds: int
    election_timeout_ticks: int
    tick_ms: int

    @property
    def reelect_timeouts(self) -> float:
        return self.reelect_rounds / self.election_timeout_ticks

    def lines(self) -> list[str]:
        return [
            f"{self.nodes} nodes, {self.groups} groups x {self.replicas} replicas, quiescence "
            f"{'on' if self.quiesce else 'off'}; tick {self.tick_ms} ms, election timeout "
            f"{self.election_timeout_ticks} ticks",
            f"  boot: every group led{' and quiesced' if self.quiesce else ''} after {self.boot_rounds} ticks",
            f"  idle: {self.idle_frames_per_node_s:.1f} frames/s and {self.idle_raft_msgs_per_node_s:.1f} Raft "
            f"messages/s sent per node",
            f"  node failure: its {self.groups_led_by_victim} groups re-elected in {self.reelect_rounds} ticks "
            f"= {self.reelect_timeouts:.2f} election timeouts",
        ]


def scale_report(nodes: int = 30, groups: int = 3000, replicas: int = 3, seed: int = 1, quiesce: bool = True,
                 tick_ms: int = 10, election_timeout_ticks: int = 100, heartbeat_ticks: int = 10,
                 idle_s: float = 10.0) -> ScaleReport:
    """Boot, measure idle traffic over ``idle_s`` of virtual time, then crash the node that
    leads the most groups and count the ticks until each of its groups has a new leader."""
    sim = ShardedSim(nodes, groups, replicas, seed, election_timeout_ticks=election_timeout_ticks,
                     heartbeat_ticks=heartbeat_ticks, quiesce=quiesce)
    limit = 50 * election_timeout_ticks

    def settled() -> bool:
        return sim.all_led() and (sim.all_quiesced() or not quiesce)

    boot = sim.run(limit, settled)
    if not settled():
        raise SafetyViolation(f"the cluster did not settle in {limit} ticks")
    frames0, msgs0 = dict(sim.frames), dict(sim.raft_msgs)
    idle_ticks = max(1, round(idle_s * 1000 / tick_ms))
    sim.run(idle_ticks)
    seconds = idle_ticks * tick_ms / 1000
    frames = sum(sim.frames[n] - frames0[n] for n in sim.frames) / nodes / seconds
    msgs = sum(sim.raft_msgs[n] - msgs0[n] for n in sim.raft_msgs) / nodes / seconds
    led: dict[int, list[int]] = {}
    for g in sim.placement:
        who = sim.leader(g)
        assert who is not None
        led.setdefault(who, []).append(g)
    victim = max(led, key=lambda n: (len(led[n]), -n))
    sim.crash(victim)
    mine = led[victim]
    reelect = sim.run(limit, lambda: all(sim.leader(g) is not None for g in mine))
    if not all(sim.leader(g) is not None for g in mine):
        raise SafetyViolation(f"groups of node {victim} still leaderless after {limit} ticks")
    return ScaleReport(nodes=nodes, groups=groups, replicas=replicas, quiesce=quiesce, boot_rounds=boot,
                       idle_frames_per_node_s=frames, idle_raft_msgs_per_node_s=msgs,
                       groups_led_by_victim=len(mine), reelect_rounds=reelect,
                       election_timeout_ticks=election_timeout_ticks, tick_ms=tick_ms)
