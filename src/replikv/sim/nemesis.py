"""Fault injection for the simulator, drawn from the run's seeded RNG.

During the fault phase, every `min_gap_us`..`max_gap_us` the nemesis picks
one action: a symmetric partition into two random groups, a one-way
partition, isolating the current leader, healing the network, crashing a
node (its unsynced disk writes are lost), restarting a crashed node, making
the network lossy (drops, duplicates) or clean again, or asking the leader
to transfer leadership; with asynchronous persistence also slowing one
node's disk (its fsyncs then take tens of milliseconds, so a leader runs far
ahead of its own disk, the case thesis §10.2.1 must survive when it crashes).
The heal phase undoes everything: the network is healed and made clean, every
disk is fast again, every crashed node restarts.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from replikv.core.raft.errors import RaftError

if TYPE_CHECKING:
    from replikv.sim.simulator import Simulation

__all__ = ["Nemesis"]

ACTIONS = (
    "partition",
    "one_way",
    "isolate_leader",
    "heal",
    "crash",
    "restart",
    "lossy",
    "clean",
    "transfer",
    "membership",
)
SLOW_FSYNC_US = (10_000, 80_000)


class Nemesis:
    def __init__(self, rng: random.Random, min_gap_us: int = 50_000, max_gap_us: int = 300_000):
        self.rng = rng
        self.min_gap_us = min_gap_us
        self.max_gap_us = max_gap_us
        self.log: list[str] = []

    def gap_us(self) -> int:
        return self.rng.randint(self.min_gap_us, self.max_gap_us)

    def act(self, sim: Simulation) -> None:
        rng = self.rng
        ids = sorted(sim.nodes)
        action = rng.choice(ACTIONS + ("slow_disk",) if sim.async_persist else ACTIONS)
        net = sim.net
        if action == "partition":
            a = set(rng.sample(ids, rng.randint(1, len(ids) - 1)))
            net.partition([a, set(ids) - a])
            self.log.append(f"partition {sorted(a)} | {sorted(set(ids) - a)}")
        elif action == "one_way":
            a = set(rng.sample(ids, rng.randint(1, len(ids) - 1)))
            net.cut_one_way(a, set(ids) - a)
            self.log.append(f"one-way cut {sorted(a)} -> {sorted(set(ids) - a)}")
        elif action == "isolate_leader":
            lead = sim.current_leader()
            if lead is not None:
                net.partition([{lead}, set(ids) - {lead}])
                self.log.append(f"isolate leader {lead}")
        elif action == "slow_disk":
            victim = sim.current_leader() or rng.choice(ids)
            sim.nodes[victim].fsync_us = SLOW_FSYNC_US
            self.log.append(f"slow disk {victim}")
        elif action == "heal":
            net.heal()
            self.log.append("heal")
        elif action == "crash":
            up = [i for i in ids if sim.nodes[i].up]
            if up:
                victim = rng.choice(up)
                lead = sim.current_leader()
                if sim.async_persist and lead is not None and rng.random() < 0.5:
                    victim = lead  # most often the one whose unsynced writes matter
                sim.crash(victim)
                self.log.append(f"crash {victim}")
        elif action == "restart":
            down = [i for i in ids if not sim.nodes[i].up]
            if down:
                back = rng.choice(down)
                sim.restart(back)
                self.log.append(f"restart {back}")
        elif action == "lossy":
            net.drop_p, net.dup_p = rng.uniform(0.05, 0.3), rng.uniform(0.0, 0.2)
            self.log.append(f"lossy drop={net.drop_p:.2f} dup={net.dup_p:.2f}")
        elif action == "clean":
            net.drop_p = net.dup_p = 0.0
            self.log.append("clean")
        elif action == "membership":
            self._membership(sim)
        elif action == "transfer":
            lead = sim.current_leader()
            if lead is not None:
                target = rng.choice([i for i in ids if i != lead])
                try:
                    sim.handle(lead, sim.nodes[lead].core.transfer_leadership(target))
                    self.log.append(f"transfer {lead} -> {target}")
                except RaftError as e:
                    self.log.append(f"transfer {lead} -> {target} refused: {e!r}")

    def _membership(self, sim: Simulation) -> None:
        """One change at a time (thesis §4.1): remove a voter (keeping two), add a
        non-member back as a learner, or promote a learner."""
        lead = sim.current_leader()
        if lead is None:
            return
        core = sim.nodes[lead].core
        cfg = core.log.config()
        outside = [i for i in sorted(sim.nodes) if i not in cfg.members]
        choices = []
        if len(cfg.voters) > 2:
            choices.append("remove")
        if outside:
            choices.append("add")
        if cfg.learners:
            choices.append("promote")
        if not choices:
            return
        kind = self.rng.choice(choices)
        if kind == "remove":
            target = self.rng.choice(sorted(cfg.voters))
            sim.handle(lead, core.remove(target, ("m", len(self.log), 0)))
        elif kind == "add":
            target = self.rng.choice(outside)
            sim.handle(lead, core.add_learner(target, ("m", len(self.log), 0)))
        else:
            target = self.rng.choice(sorted(cfg.learners))
            sim.handle(lead, core.promote(target, ("m", len(self.log), 0)))
        self.log.append(f"{kind} {target} (leader {lead})")

    def repair_membership(self, sim: Simulation) -> None:
        """Heal phase: bring every node back as a voter, one change at a time."""
        lead = sim.current_leader()
        if lead is None:
            return
        core = sim.nodes[lead].core
        cfg = core.log.config()
        for i in sorted(sim.nodes):
            if i not in cfg.members:
                sim.handle(lead, core.add_learner(i, ("m", -1, i)))
                return
            if i in cfg.learners:
                sim.handle(lead, core.promote(i, ("m", -2, i)))
                return

    def heal_all(self, sim: Simulation) -> None:
        sim.net.heal()
        sim.net.drop_p = sim.net.dup_p = 0.0
        for i in sorted(sim.nodes):
            sim.nodes[i].fsync_us = None
            if not sim.nodes[i].up:
                sim.restart(i)
        self.log.append("heal all")
