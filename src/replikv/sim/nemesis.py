"""Fault injection for the simulator, drawn from the run's seeded RNG.

During the fault phase, every `min_gap_us`..`max_gap_us` the nemesis picks
one action: a symmetric partition into two random groups, a one-way
partition, isolating the current leader, healing the network, crashing a
node (its unsynced disk writes are lost), restarting a crashed node, making
the network lossy (drops, duplicates) or clean again, or asking the leader
to transfer leadership. The heal phase undoes everything: the network is
healed and made clean, every crashed node restarts.
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
)


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
        action = rng.choice(ACTIONS)
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
        elif action == "heal":
            net.heal()
            self.log.append("heal")
        elif action == "crash":
            up = [i for i in ids if sim.nodes[i].up]
            if up:
                victim = rng.choice(up)
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
        elif action == "transfer":
            lead = sim.current_leader()
            if lead is not None:
                target = rng.choice([i for i in ids if i != lead])
                try:
                    sim.handle(lead, sim.nodes[lead].core.transfer_leadership(target))
                    self.log.append(f"transfer {lead} -> {target}")
                except RaftError as e:
                    self.log.append(f"transfer {lead} -> {target} refused: {e!r}")

    def heal_all(self, sim: Simulation) -> None:
        sim.net.heal()
        sim.net.drop_p = sim.net.dup_p = 0.0
        for i in sorted(sim.nodes):
            if not sim.nodes[i].up:
                sim.restart(i)
        self.log.append("heal all")
