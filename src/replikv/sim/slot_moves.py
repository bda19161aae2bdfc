"""Slot moves in the sharded raft simulator (issue 13): ``MovesSim`` is a ``ShardedSim`` whose
groups apply a tiny key/value state machine and the slot-move entries, moved by the same
pure rules as the runtime (core/sharding/moves.py: ``SlotMoves`` per replica, a
``MoveDriver`` per node), while nodes crash and restart and the network partitions.

Each replica (node, group) holds ``kv`` (key -> value, a unique int) and ``SlotMoves``; each
node holds its slot map (slot -> group), updated from the move entries its groups apply
(RELEASE: the target has them; ACTIVATE: this group has them) and from the refusals it gets
for released slots (MOVED). Entries: ``b"\\x01"[key, value]`` a write (refused at apply on a
frozen or released slot, as the runtime's ``SlotMoves.refuses``), ``b"\\x02"[key]`` a read
through the log (refused unless the group owns the slot at that index), and the move entries
of core/sharding/moves.py.

Clients: each owns a few keys and runs one operation at a time (write a fresh value or read),
sent to a random live node and routed by that node's slot map to the group's leader, which
refuses (without proposing) a command on a slot it does not serve now. A refusal is a failed
operation (not applied); no answer within ``op_timeout`` is unknown.

The mover starts moves of random slot ranges from a group's leader to another group, every
``move_every`` ticks on average; a move step to another group (IMPORT, ACTIVATE) is proposed
at the target's leader if the two nodes can talk, and its outcome reported back to the source
node's ``MoveDriver`` (a lost one as a failure after ``step_timeout``).

Checks (``check_history`` and ``check_final``, each raising ``SafetyViolation``):
- no acknowledged write lost: after heal, the owning group of each key holds its last
  acknowledged value or one written later (never a refused write's value);
- no stale read: a read returns a value at least as new as every write acknowledged before
  it began, and never a refused write's value;
- every move started completes within ``settle_bound`` ticks after heal;
- every slot is owned by exactly one group at the end, and every replica of a group agrees.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import msgpack

from replikv.core.raft.node import Role
from replikv.core.sharding.moves import SLOT_MOVE, MoveBusy, MoveDriver, MoveStep, SlotMoves, move_entry, \
    parse_move_entry
from replikv.core.sharding.slots import SLOT_COUNT, SlotMap, key_slot
from replikv.sim.engine import SafetyViolation
from replikv.sim.multiraft_cluster import ShardedSim

__all__ = ["MovesResult", "MovesSim", "run_moves"]

WRITE, READ = b"\x01", b"\x02"


@dataclass
class _Replica:
    moves: SlotMoves
    kv: dict[bytes, int] = field(default_factory=dict)
    results: dict[int, tuple[Any, ...]] = field(default_factory=dict)  # index -> apply result


@dataclass
class _Op:
    client: int
    kind: str  # "w" or "r"
    key: bytes
    value: int  # the written value (a write)
    start: int
    deadline: int
    node: int = 0
    incarnation: int = 0


@dataclass
class MovesResult:
    seed: int
    acked: int = 0
    failed: int = 0
    unknown: int = 0
    reads: int = 0
    moves_started: int = 0
    moves_done: int = 0
    settle_ticks: int = 0
    nemesis: list[str] = field(default_factory=list)


class MovesSim(ShardedSim):
    def __init__(self, nodes: int = 5, groups: int = 4, seed: int = 0, clients: int = 6, keys_per_client: int = 4,
                 election_timeout_ticks: int = 20, heartbeat_ticks: int = 3, op_timeout: int = 60,
                 step_timeout: int = 60, check_every: int = 25) -> None:
        self.initial = SlotMap.even(groups)
        self.replicas_state: dict[tuple[int, int], _Replica] = {}
        self.slot_map: dict[int, list[int]] = {}
        self.epoch: dict[int, int] = {}
        self.driver: dict[int, MoveDriver] = {}
        self.steps: dict[object, tuple[int, int, int, str, int]] = {}  # rid -> (node, inc, source, op, deadline)
        self.ops: dict[object, _Op] = {}
        self.op_timeout, self.step_timeout, self.check_every = op_timeout, step_timeout, check_every
        self.history: list[tuple[str, _Op, Any, int]] = []  # (outcome, op, read value, end tick)
        self.moves_started: list[tuple[int, int, tuple[int, ...], int]] = []
        self.moves_done: list[tuple[int, int]] = []
        self._rid = 0
        super().__init__(nodes, groups, seed=seed, election_timeout_ticks=election_timeout_ticks,
                         heartbeat_ticks=heartbeat_ticks)
        self.wrng = random.Random(seed * 7919 + 1)
        self.keys = [[f"k{c}-{i}".encode() for i in range(keys_per_client)] for c in range(clients)]
        self.busy: dict[int, object] = {}  # client -> its op in flight
        self.next_value = 0

    # -- replicas ----------------------------------------------------------------------------------
    def _start(self, n: int) -> None:
        for g, members in self.placement.items():
            if n in members:  # no snapshots in the simulator: the state is rebuilt from the log
                self.replicas_state[(n, g)] = _Replica(SlotMoves(g, self.initial))
        self.slot_map[n] = list(self.initial.groups)
        self.epoch[n] = 0
        self.driver[n] = MoveDriver()
        super()._start(n)

    def _leads(self, n: int, g: int) -> bool:
        host = self.hosts.get(n)
        return host is not None and g in host.groups and host.groups[g].role is Role.LEADER

    def _apply_entry(self, n: int, g: int, index: int, data: bytes) -> None:
        rep = self.replicas_state[(n, g)]
        head = data[:1]
        result: tuple[Any, ...] = ("ok",)
        if head == WRITE:
            key, value = msgpack.unpackb(data[1:])
            if rep.moves.refuses([key]):
                result = ("refused",)
            else:
                rep.kv[key] = value
        elif head == READ:
            key = msgpack.unpackb(data[1:])
            result = ("value", rep.kv.get(key)) if rep.moves.owns(key_slot(key)) else ("refused",)
        elif head == SLOT_MOVE:
            op, slots, target, epoch, payload = parse_move_entry(data)
            touched = rep.moves.apply(op, slots, target, epoch)
            if op == "import":  # only the keys of the slots taken (a stale IMPORT takes none)
                taken = set(touched)
                rep.kv.update({k: v for k, v in msgpack.unpackb(payload) if key_slot(k) in taken})
            elif op == "release":
                gone = set(touched)
                for k in [k for k in rep.kv if key_slot(k) in gone]:
                    del rep.kv[k]
            if op == "release":
                self._adopt(n, touched, target, epoch)
            elif op == "activate":
                self._adopt(n, touched, g, epoch)
            self._run_step(n, self.driver[n].applied(g, op, touched, target, epoch, self._leads(n, g), rep.moves,
                                                     _never))
        rep.results[index] = result

    def _adopt(self, n: int, slots: list[int] | tuple[int, ...], g: int, epoch: int) -> None:
        for s in slots:
            self.slot_map[n][s] = g
        self.epoch[n] = max(self.epoch[n], epoch)

    # -- move steps (the runtime's ShardedRaftRunner._run_step, over the simulated network) -------
    def _new_rid(self, kind: str) -> tuple[str, int]:
        self._rid += 1
        return (kind, self._rid)

    def _run_step(self, n: int, step: MoveStep | None) -> None:
        if step is None:
            return
        g, slots = step.source, list(step.slots)
        rid = self._new_rid("step")
        self.steps[rid] = (n, self.incarnation[n], g, step.op, self.now + self.step_timeout)
        if step.op in ("freeze", "release"):
            if self._leads(n, g):
                self.propose(n, g, move_entry(step.op, slots, step.target, step.epoch), rid)
            return  # not leading: the step times out, the driver hears of a failure
        payload = b""
        if step.op == "import":
            kv = self.replicas_state[(n, g)].kv
            wanted = set(slots)
            payload = msgpack.packb(sorted((k, v) for k, v in kv.items() if key_slot(k) in wanted))
        t = self.leader(step.target)
        if t is not None and (t == n or (n, t) not in self.cut and (t, n) not in self.cut):
            self.propose(t, step.target, move_entry(step.op, slots, step.target, step.epoch, payload), rid)

    def _step_done(self, rid: object, ok: bool) -> None:
        n, inc, g, op, _ = self.steps.pop(rid)
        if self.incarnation[n] != inc or not self.is_up(n):
            return  # the node that drove it crashed: its new driver resumes from the log
        driver = self.driver[n]
        if op == "import":
            self._run_step(n, driver.imported(g, ok, self._leads(n, g)))
        elif op == "activate":
            move = driver.activated(g, ok)
            if move is not None:
                self.moves_done.append((g, move.epoch))
        elif not ok:
            driver.refused(g)

    def _result(self, n: int, rid: object, result: object) -> None:
        assert isinstance(result, tuple)
        if result[0] == "applied":
            outcome = self.replicas_state[(n, result[1])].results[result[2]]
        else:
            outcome = ("error",)
        if rid in self.steps:
            self._step_done(rid, outcome[0] == "ok")
        elif rid in self.ops:
            self._op_done(rid, outcome)

    # -- the mover ---------------------------------------------------------------------------------
    def start_move(self) -> None:
        g = self.wrng.choice(sorted(self.placement))
        n = self.leader(g)
        if n is None:
            return
        mine = [s for s, owner in enumerate(self.slot_map[n]) if owner == g]
        if not mine:
            return
        first = self.wrng.choice(mine)
        want = self.wrng.randint(1, SLOT_COUNT // len(self.placement))
        slots = [s for s in range(first, min(SLOT_COUNT, first + want)) if self.slot_map[n][s] == g]
        target = self.wrng.choice([h for h in self.placement if h != g])
        rep = self.replicas_state[(n, g)]
        epoch = self.epoch[n] + 1
        try:
            step = self.driver[n].start(g, slots, target, epoch, rep.moves)
        except MoveBusy:
            return
        self.moves_started.append((g, target, (slots[0], slots[-1]), epoch))
        self.epoch[n] = epoch
        self._run_step(n, step)

    # -- clients -----------------------------------------------------------------------------------
    def start_op(self, c: int) -> None:
        key = self.wrng.choice(self.keys[c])
        live = [n for n in self.hosts if self.is_up(n)]
        if not live:
            return
        kind = "w" if self.wrng.random() < 0.6 else "r"
        value = 0
        if kind == "w":
            self.next_value += 1
            value = self.next_value
        op = _Op(c, kind, key, value, self.now, self.now + self.op_timeout)
        entry = self.wrng.choice(live)
        g = self.slot_map[entry][key_slot(key)]
        t = self.leader(g)
        if t is None or (t != entry and ((entry, t) in self.cut or (t, entry) in self.cut)):
            self.history.append(("failed", op, None, self.now))  # no leader reachable: never proposed
            return
        moves = self.replicas_state[(t, g)].moves
        if not moves.serves([key], reading=kind == "r"):
            went = moves.released.get(key_slot(key))
            if went is not None:  # MOVED: the entry node learns where the slot went
                self._adopt(entry, [key_slot(key)], went[0], went[1])
            self.history.append(("failed", op, None, self.now))
            return
        rid = self._new_rid("op")
        op.node, op.incarnation = t, self.incarnation[t]
        self.ops[rid] = op
        self.busy[c] = rid
        data = WRITE + msgpack.packb([key, value]) if kind == "w" else READ + msgpack.packb(key)
        self.propose(t, g, data, rid)

    def _op_done(self, rid: object, outcome: tuple[Any, ...]) -> None:
        op = self.ops.pop(rid)
        self.busy.pop(op.client, None)
        if outcome[0] == "ok":
            self.history.append(("ok", op, None, self.now))
        elif outcome[0] == "value":
            self.history.append(("ok", op, outcome[1], self.now))
        else:
            self.history.append(("failed", op, None, self.now))

    # -- rounds ------------------------------------------------------------------------------------
    def step_round(self) -> None:
        super().step_round()
        for rid, op in list(self.ops.items()):
            if self.now >= op.deadline or self.incarnation[op.node] != op.incarnation or not self.is_up(op.node):
                del self.ops[rid]
                self.busy.pop(op.client, None)
                self.history.append(("unknown", op, None, self.now))
        for rid, (_n, _inc, _g, _op, deadline) in list(self.steps.items()):
            if self.now >= deadline:
                self._step_done(rid, False)
        if self.now % self.check_every == 0:
            for n, host in self.hosts.items():
                if host is None:
                    continue
                for g in sorted(host.groups):
                    self._run_step(n, self.driver[n].check(g, self._leads(n, g), self.replicas_state[(n, g)].moves,
                                                           _never))

    def clients_act(self, p: float) -> None:
        for c in range(len(self.keys)):
            if c not in self.busy and self.wrng.random() < p:
                self.start_op(c)

    # -- end state ---------------------------------------------------------------------------------
    def moving(self) -> bool:
        """A move not finished: a replica still holding frozen or pending slots, or a driver busy."""
        if any(d.moves for n, d in self.driver.items() if self.is_up(n)):
            return True
        return any(r.moves.frozen or r.moves.pending for r in self.replicas_state.values())

    def converged(self) -> bool:
        for g, members in self.placement.items():
            if len({self.applied[(n, g)] for n in members}) != 1:
                return False
        return not self.steps and not self.ops


def _never(_slots: set[int]) -> bool:
    return False  # no transactions in the simulated groups: a move is never blocked


def check_history(sim: MovesSim) -> None:
    """No stale read, no refused write visible (see the module docstring)."""
    failed_values = {op.value for outcome, op, _, _ in sim.history if op.kind == "w" and outcome == "failed"}
    acked: dict[bytes, list[tuple[int, int]]] = {}  # key -> [(ack tick, value)]
    for outcome, op, _, end in sim.history:
        if outcome == "ok" and op.kind == "w":
            acked.setdefault(op.key, []).append((end, op.value))
    for outcome, op, value, _ in sim.history:
        if outcome != "ok" or op.kind != "r":
            continue
        if value is not None and value in failed_values:
            raise SafetyViolation(f"read of {op.key!r} at tick {op.start} returned {value}, a refused write")
        before = [v for t, v in acked.get(op.key, []) if t < op.start]
        if before and (value is None or value < max(before)):
            raise SafetyViolation(f"stale read of {op.key!r} begun at tick {op.start}: {value}, but {max(before)} "
                                  "was acknowledged before")


def check_final(sim: MovesSim) -> None:
    """One owner per slot, replicas agree, no acknowledged write lost."""
    for g, members in sim.placement.items():
        states = {repr((sim.replicas_state[(n, g)].moves.state(), sorted(sim.replicas_state[(n, g)].kv.items())))
                  for n in members}
        if len(states) != 1:
            raise SafetyViolation(f"group {g}: replicas disagree on slots or data after heal")
    first = {g: sim.replicas_state[(members[0], g)] for g, members in sim.placement.items()}
    for s in range(SLOT_COUNT):
        owners = [g for g, rep in first.items() if rep.moves.owns(s)]
        if len(owners) != 1:
            raise SafetyViolation(f"slot {s} owned by groups {owners} at the end")
    failed_values = {op.value for outcome, op, _, _ in sim.history if op.kind == "w" and outcome == "failed"}
    last: dict[bytes, int] = {}
    for outcome, op, _, _ in sim.history:
        if outcome == "ok" and op.kind == "w":
            last[op.key] = max(last.get(op.key, 0), op.value)
    for key, value in sorted(last.items()):
        owner = next(g for g, rep in first.items() if rep.moves.owns(key_slot(key)))
        held = first[owner].kv.get(key)
        if held is None or held < value:
            raise SafetyViolation(f"acknowledged write {key!r}={value} lost: group {owner} holds {held}")
        if held in failed_values:
            raise SafetyViolation(f"group {owner} holds {key!r}={held}, a refused write")


def run_moves(seed: int, nodes: int = 5, groups: int = 4, rounds: int = 800,
              settle_bound: int = 1000) -> MovesResult:
    """One seed: faults, client operations and moves for ``rounds`` ticks; then heal, restart
    every node, and every started move must finish within ``settle_bound`` ticks."""
    sim = MovesSim(nodes, groups, seed)
    res = MovesResult(seed)
    rng = sim.wrng
    try:
        sim.run(10 * sim.election_timeout_ticks, sim.all_led)
        for _ in range(rounds):
            if rng.random() < 0.01:
                down = [n for n in sim.hosts if not sim.is_up(n)]
                r = rng.random()
                if down and r < 0.4:
                    n = rng.choice(down)
                    sim.restart(n)
                    res.nemesis.append(f"t={sim.now} restart {n}")
                elif r < 0.6 and len(down) < 1:
                    n = rng.randint(1, nodes)
                    sim.crash(n)
                    res.nemesis.append(f"t={sim.now} crash {n}")
                elif r < 0.8:
                    side = set(rng.sample(range(1, nodes + 1), rng.randint(1, nodes // 2)))
                    sim.partition(side)
                    res.nemesis.append(f"t={sim.now} partition {sorted(side)}")
                else:
                    sim.heal()
                    res.nemesis.append(f"t={sim.now} heal")
            if rng.random() < 0.02:
                sim.start_move()
            sim.clients_act(0.3)
            sim.step_round()
        sim.heal()
        for n in list(sim.hosts):
            if not sim.is_up(n):
                sim.restart(n)
        res.nemesis.append(f"t={sim.now} heal, all up")
        healed = sim.now
        sim.run(settle_bound, lambda: sim.all_led() and not sim.moving() and sim.converged())
        res.settle_ticks = sim.now - healed
        if sim.moving() or not sim.converged():
            drivers = {n: d.moves for n, d in sim.driver.items() if d.moves}
            held = {k: (r.moves.frozen and min(r.moves.frozen), r.moves.pending and min(r.moves.pending))
                    for k, r in sim.replicas_state.items() if r.moves.frozen or r.moves.pending}
            raise SafetyViolation(f"moves not finished {settle_bound} ticks after heal (converged: "
                                  f"{sim.converged()}, drivers: {drivers}, replicas holding: {held})")
        check_history(sim)
        check_final(sim)
    except SafetyViolation as e:
        raise SafetyViolation(f"{e}\n  replay: python -m replikv.sim --moves --seed {seed} --nodes {nodes} "
                              f"--shards {groups}") from None
    res.acked = sum(1 for o, op, _, _ in sim.history if o == "ok" and op.kind == "w")
    res.reads = sum(1 for o, op, _, _ in sim.history if o == "ok" and op.kind == "r")
    res.failed = sum(1 for o, _, _, _ in sim.history if o == "failed")
    res.unknown = sum(1 for o, _, _, _ in sim.history if o == "unknown")
    res.moves_started, res.moves_done = len(sim.moves_started), len(set(sim.moves_done))
    return res
