"""Rebalancing in the sharded raft simulator (issue 13): ``RebalanceSim`` is a ``ShardedSim``
whose groups change members as ``replikv rebalance`` changes them, while clients write, nodes
crash and restart and the network partitions.

The plan is the runtime's: core/sharding/placement.py ``rebalance`` after a node joins (it
hosts nothing at first) or before one leaves, carried out by ``rebalance_steps``: add a learner,
promote it once caught up, move the leadership to the group's preferred leader, remove the old
member. As in the runtime (runtime/sharded_raft.py): a node creates a replica of a group it does
not host when a leader's AppendEntries or InstallSnapshot for it arrives (empty, with no voters
of its own: the leader's log tells it the configuration), unless the message predates the
node's removal from that group (its tombstone); a removed node drops its replica, and the
replica's disk, once it is up (REPLIKV GROUP DROP, or a member's GONE, in the runtime).

The driver runs each group's steps in order, ``parallel`` groups at once (``--parallel``); a
step is issued at the group's current leader and is done when that leader's committed
configuration (its leadership, for a transfer) shows it; one not done ``STEP_RETRY_TICKS``
after its last attempt is issued again (a lost proposal, a leader change, a learner not yet
caught up).

Checks, each raising ``SafetyViolation``: the base's Election Safety and State Machine Safety
per group at every round; after the heal, within ``settle_bound`` ticks, every step done,
every group's committed configuration the plan's members (all voters) with one leader, no
replica left on a node that is not a member, and every acknowledged write applied at its index
by every member.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from replikv.core.multiraft.host import GroupHost, creates_replica
from replikv.core.multiraft.messages import Batch
from replikv.core.raft.errors import RaftError
from replikv.core.sharding.placement import rebalance, rebalance_steps
from replikv.sim.engine import SafetyViolation
from replikv.sim.multiraft_cluster import ShardedSim, round_robin_placement

__all__ = ["RebalanceResult", "RebalanceSim", "run_rebalance"]

STEP_RETRY_TICKS = 60


@dataclass
class RebalanceResult:
    seed: int
    kind: str = ""  # "join" (the last node joins) or "leave" (node 1 leaves)
    steps: int = 0
    acked: int = 0
    settled_in: int = 0
    nemesis: list[str] = field(default_factory=list)


class RebalanceSim(ShardedSim):
    """A ``ShardedSim`` with replicas created on demand and dropped after their removal."""

    parallel: int = 2

    def __post_init__(self) -> None:
        if not self.placement:
            self.placement = round_robin_placement(self.nodes, self.groups, self.replicas)
        everyone = range(1, self.nodes + 1)
        self.hosted: dict[int, set[int]] = {n: {g for g, m in self.placement.items() if n in m} for n in everyone}
        self.founding = {(n, g) for g, m in self.placement.items() for n in m}  # bootstrap voters
        self.tombstones: dict[int, dict[int, int]] = {n: {} for n in everyone}
        self.doomed: dict[tuple[int, int], int] = {}  # (node, group) removed at index: dropped once up
        self.chains: dict[int, list[tuple[str, int]]] = {}
        self.target: dict[int, tuple[int, ...]] = {}
        self.attempts: dict[tuple[int, str, int], int] = {}
        self.steps_done = 0
        self.writes: dict[object, tuple[int, bytes]] = {}
        self.acked: list[tuple[int, int, bytes]] = []
        super().__post_init__()

    # -- replicas ----------------------------------------------------------------------------------
    def _hosted(self, n: int) -> list[int]:
        return sorted(self.hosted[n])

    def _replicas(self, g: int) -> tuple[int, ...]:
        return tuple(n for n in range(1, self.nodes + 1) if g in self.hosted[n])

    def _bootstrap_voters(self, n: int, g: int) -> tuple[int, ...]:
        """A founding replica starts from the placement; one created on demand from nothing
        (the leader's log tells it the configuration)."""
        return self.placement[g] if (n, g) in self.founding else ()

    def _deliver(self, host: GroupHost, b: Batch) -> None:
        """A leader's message for a group not hosted here creates the replica, by the runtime's
        rule (core/multiraft/host.py ``creates_replica``)."""
        n = host.node
        for g, msg in b.msgs:
            if g in host.groups or not creates_replica(msg, self.tombstones[n].get(g, 0)):
                continue
            self.hosted[n].add(g)
            self._open(n, g, host)
        host.step(b)

    def _drop(self, n: int, g: int, index: int) -> None:
        """Node ``n``'s replica of ``g`` goes, its data with it (runtime's ``_drop_group``)."""
        self.tombstones[n][g] = max(index, self.tombstones[n].get(g, 0))
        self.hosted[n].discard(g)
        self.founding.discard((n, g))
        self.disks.pop((n, g), None)
        self.applied.pop((n, g), None)
        host = self.hosts.get(n)
        if host is not None:
            host.remove_group(g)

    # -- the rebalance ---------------------------------------------------------------------------------
    def plan(self, nodes_after: list[int]) -> None:
        names = {g: tuple(str(n) for n in m) for g, m in self.placement.items()}
        plan = rebalance(names, [str(n) for n in nodes_after])
        self.target = {g: tuple(int(x) for x in m) for g, m in plan.placement.items()}
        for step in rebalance_steps(plan):
            self.chains.setdefault(step.group, []).append((step.op, int(step.node)))

    def _done(self, lead: int, g: int, op: str, node: int) -> bool:
        host = self.hosts[lead]
        assert host is not None
        log = host.groups[g].log
        cfg, committed = log.config(), log.commit >= log.last_config_index()
        if op == "transfer":
            return lead == node
        if not committed:
            return False
        if op == "add_learner":
            return node in cfg.members
        if op == "promote":
            return node in cfg.voters
        return node not in cfg.members  # remove

    def drive(self) -> None:
        """One round of the driver: each active group's next step, done or (re)issued; removed
        nodes that are up drop their replicas."""
        for (n, g), index in list(self.doomed.items()):
            if self.is_up(n):
                del self.doomed[(n, g)]
                self._drop(n, g, index)
        for g in [g for g in sorted(self.chains) if self.chains[g]][: self.parallel]:
            op, node = self.chains[g][0]
            lead = self.leader(g)
            if lead is None:
                continue
            if self._done(lead, g, op, node):
                self.chains[g].pop(0)
                self.steps_done += 1
                if op == "remove":
                    host = self.hosts[lead]
                    assert host is not None
                    self.doomed[(node, g)] = host.groups[g].log.last_config_index()
                continue
            if self.now - self.attempts.get((g, op, node), -STEP_RETRY_TICKS) < STEP_RETRY_TICKS:
                continue
            self.attempts[(g, op, node)] = self.now
            host = self.hosts[lead]
            assert host is not None
            raft = host.groups[g]
            rid = ("step", g, op, node, self.now)
            try:
                if op == "add_learner":
                    effects = raft.add_learner(node, rid)
                elif op == "promote":
                    effects = raft.promote(node, rid)
                elif op == "transfer":
                    effects = raft.transfer_leadership(node)
                else:
                    effects = raft.remove(node, rid)
            except RaftError:
                continue  # not the leader after all, or a change in progress: next attempt
            host.call(g, effects)
            self._carry_out(lead)

    # -- clients -----------------------------------------------------------------------------------
    def write(self, g: int, seq: int) -> None:
        lead = self.leader(g)
        if lead is None:
            return
        rid = ("w", g, seq)
        data = b"w%d" % seq
        self.writes[rid] = (g, data)
        self.propose(lead, g, data, rid)

    def _result(self, n: int, rid: object, result: object) -> None:
        super()._result(n, rid, result)
        if rid in self.writes and isinstance(result, tuple) and result[0] == "applied":
            g, data = self.writes.pop(rid)
            self.acked.append((g, result[2], data))

    # -- checks ----------------------------------------------------------------------------------
    def settled(self) -> bool:
        if any(self.chains.values()) or self.doomed:
            return False
        for g, members in self.target.items():
            lead = self.leader(g)
            if lead is None:
                return False
            host = self.hosts[lead]
            assert host is not None
            log = host.groups[g].log
            if log.config().voters != set(members) or log.config().learners or log.commit < log.last_config_index():
                return False
            if any(self.applied.get((n, g), -1) < log.commit for n in members):
                return False
        return True

    def check_final(self) -> None:
        for g, members in self.target.items():
            for n in range(1, self.nodes + 1):
                if (g in self.hosted[n]) != (n in members):
                    raise SafetyViolation(f"group {g}: node {n} {'hosts' if g in self.hosted[n] else 'lacks'} "
                                          f"a replica; the members are {members}")
        for g, index, data in self.acked:
            if self.canonical[g].get(index, (0, b""))[1] != data:
                raise SafetyViolation(f"group {g}: the write acknowledged at index {index} is not there")
            for n in self.target[g]:
                if self.applied.get((n, g), 0) < index:
                    raise SafetyViolation(f"group {g}: member {n} never applied acknowledged index {index}")


def run_rebalance(seed: int, nodes: int = 5, groups: int = 6, rounds: int = 1500,
                  settle_bound: int = 3000, parallel: int = 2) -> RebalanceResult:
    """One seeded run: the last node joins (even seeds) or node 1 leaves (odd seeds) and the
    groups rebalance under writes, crashes, restarts and partitions, healed at 60% of
    ``rounds``; then everything must settle within ``settle_bound`` ticks."""
    try:
        return _run(seed, nodes, groups, rounds, settle_bound, parallel)
    except SafetyViolation as e:
        raise SafetyViolation(f"{e} (replay: python -m replikv.sim --rebalance --seed {seed} --nodes {nodes} "
                              f"--shards {groups})") from e


def _run(seed: int, nodes: int, groups: int, rounds: int, settle_bound: int, parallel: int) -> RebalanceResult:
    rng = random.Random(seed)
    kind = "join" if seed % 2 == 0 else "leave"
    placed = nodes - 1 if kind == "join" else nodes
    sim = RebalanceSim(nodes=nodes, groups=groups, seed=seed, election_timeout_ticks=40, heartbeat_ticks=4,
                       delay_ticks=(1, 3), placement=round_robin_placement(placed, groups, 3))
    sim.parallel = parallel
    result = RebalanceResult(seed=seed, kind=kind)
    sim.run(200, sim.all_led)
    sim.plan(list(range(1, nodes + 1)) if kind == "join" else list(range(2, nodes + 1)))
    heal_at = int(rounds * 0.6)
    down: int | None = None
    seq = 0
    for _ in range(rounds):
        if sim.now < heal_at:
            roll = rng.random()
            if down is None and roll < 0.004:
                down = rng.randint(1, nodes)
                sim.crash(down)
                result.nemesis.append(f"{sim.now}: crash {down}")
            elif down is not None and roll < 0.02:
                sim.restart(down)
                result.nemesis.append(f"{sim.now}: restart {down}")
                down = None
            elif roll > 0.997:
                side = {rng.randint(1, nodes)}
                sim.partition(side)
                result.nemesis.append(f"{sim.now}: partition {side}")
            elif roll > 0.99:
                sim.heal()
        elif sim.now == heal_at:
            sim.heal()
            if down is not None:
                sim.restart(down)
                down = None
            result.nemesis.append(f"{sim.now}: heal")
        if rng.random() < 0.3:
            seq += 1
            sim.write(rng.randrange(groups), seq)
        sim.drive()
        sim.step_round()
    if down is not None:
        sim.restart(down)
    sim.heal()
    start = sim.now

    def settled() -> bool:
        sim.drive()
        return sim.settled()

    sim.run(settle_bound, settled)
    if not sim.settled():
        pending = {g: c for g, c in sim.chains.items() if c}
        raise SafetyViolation(f"seed {seed}: not settled {settle_bound} ticks after the heal; steps left {pending}, "
                              f"doomed {sim.doomed}")
    sim.check_final()
    result.steps, result.acked, result.settled_in = sim.steps_done, len(sim.acked), sim.now - start
    return result
