"""The simulator's engine: one seed, virtual time, the network, faults and clients.

A mode plugs in through a ``Driver`` (sim/raft_driver.py,
sim/shipping_driver.py): its nodes, its effects, its own nemesis actions,
its safety checks and its convergence condition. The engine knows nothing
of any mode. One seed decides everything (network delays and faults,
clock drift, client choices, crashes and where a crash tears the last
write), so a failing run replays exactly with the command
``replay_command`` prints (TigerBeetle's VOPR and FoundationDB's simulator
work the same way).

A run is ``rounds`` rounds of a fault phase (``fault_us`` of virtual time
with the nemesis acting every 50..300 ms while clients run) and a heal
phase (every fault undone, clients finish what they started, and the
cluster must converge within ``heal_us_max``: the driver's ``converged``).
Short seeds are one round of 2 s; long seeds (``long=True``) several rounds
over tens of seconds with thousands of operations. After the last round
the driver's ``final_check`` judges the whole client history.

Generic nemesis actions (the driver may add its own): a symmetric
partition into two random groups, a one-way partition, isolating the
leader, healing the network, a lossy network (drops, duplicates) or a clean
one, crashing a node (it loses what it had not synced, and its last write
may be torn), restarting a crashed node, and a slow disk.

Bounds: events are processed in (time, sequence) order; virtual time never
goes back; a client has one operation outstanding.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from replikv.check.history import Op
from replikv.core.invariant import InvariantViolation
from replikv.sim.clock import VirtualClock
from replikv.sim.network import SimNetwork
from replikv.sim.workload import Client, PendingOp

__all__ = ["Driver", "Engine", "NodeTable", "SafetyViolation", "SimConfig", "SimResult", "replay_command", "run"]


RETRY_FIRST_US = 2_000  # a refused attempt's first retry (Engine.client_retry)
RETRY_MAX_US = 16_000  # the backoff's bound


class SafetyViolation(AssertionError):
    """A safety property, the convergence bound or the history check failed for a seed."""


def replay_command(mode: str, seed: int, nodes: int, long: bool = False) -> str:
    extra = (f" --nodes {nodes}" if nodes != 3 else "") + (" --long" if long else "")
    return f"python -m replikv.sim --mode {mode} --seed {seed}{extra}"


@dataclass
class SimConfig:
    seed: int
    nodes: int = 3
    long: bool = False
    rounds: int = 1
    fault_us: int = 2_000_000
    heal_us_max: int = 4_000_000
    clients: int = 3
    keys: int = 2
    tick_us: int = 10_000
    max_drift: float = 0.01
    client_timeout_us: int = 150_000
    think_us_max: int = 30_000
    max_attempts: int = 40
    check_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.long and self.rounds == 1:
            self.rounds, self.clients, self.keys = 10, 5, 6  # ~25 s virtual, thousands of ops


@dataclass
class SimResult:
    mode: str
    seed: int
    nodes: int
    ops: list[Op]
    committed: int
    converged_at_us: int
    nemesis: list[str]
    messages: int
    stats: dict[str, int] = field(default_factory=dict)


class Driver(Protocol):
    """What the engine needs from a mode (the narrow cluster interface)."""

    mode: str
    workload: str  # sim/workload.py: register | append

    def boot(self) -> None:
        """Create the nodes and schedule their first ticks."""

    def node_ids(self) -> list[int]: ...

    def is_up(self, nid: int) -> bool: ...

    def leader(self) -> int | None:
        """The node that leads now, if the mode has one (for the nemesis)."""

    def crash(self, nid: int) -> None: ...

    def restart(self, nid: int) -> None: ...

    def set_slow_disk(self, nid: int, slow: bool) -> None: ...

    def submit(self, client: Client, op: PendingOp, nid: int, rid: tuple[int, int]) -> None:
        """Start one attempt of ``op`` at node ``nid``; answer with Engine.client_done / client_retry."""

    def may_retry(self, op: PendingOp) -> bool:
        """May an attempt that got no answer be retried (is a repeat safe)?"""

    def nemesis_actions(self) -> dict[str, Callable[[random.Random], str | None]]:
        """The mode's own faults: name -> action returning a log line (None: nothing done)."""

    def heal_step(self) -> None:
        """Called every tick of a heal phase: undo the mode's own faults."""

    def converged(self) -> bool: ...

    def final_check(self, ops: list[Op]) -> None:
        """Judge the history and the final state; Engine.fail on a violation."""

    def describe(self) -> str:
        """One line per node for a failure message."""

    def stats(self) -> dict[str, int]: ...


class NodeTable:
    """What every driver answers the same way from its table of nodes (``self.nodes``:
    id -> a node with ``up``); a driver subclasses it beside its own methods."""

    nodes: dict[int, Any]

    def node_ids(self) -> list[int]:
        return sorted(self.nodes)

    def is_up(self, nid: int) -> bool:
        return bool(self.nodes[nid].up)

    def highest(self, leads: Callable[[Any], bool], rank: Callable[[Any], int]) -> int | None:
        """The up node that leads with the highest ``rank`` (term, epoch), if any."""
        best: tuple[int, int] | None = None
        for n in self.nodes.values():
            if n.up and leads(n) and (best is None or rank(n) > best[0]):
                best = (rank(n), n.id)
        return best[1] if best else None


_SLOW_DISK_FOR_US = (200_000, 800_000)


class Engine:
    def __init__(self, cfg: SimConfig, make_driver: Callable[[Engine], Driver]) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.clock = VirtualClock()
        self.net = SimNetwork(random.Random(self.rng.getrandbits(64)))
        self.nemesis_rng = random.Random(self.rng.getrandbits(64))
        self.events: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.healing = False
        self.round = 0
        self.nemesis_log: list[str] = []
        self.driver = make_driver(self)
        workload = self.driver.workload
        self.clients = [
            Client(p, 1000 + p, random.Random(self.rng.getrandbits(64)),
                   [f"k{i}" for i in range(cfg.keys)], workload)
            for p in range(1, cfg.clients + 1)
        ]

    # ------------------------------------------------------------ services
    @property
    def now_us(self) -> int:
        return self.clock.now_us

    def at(self, t_us: int, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self.events, (t_us, self._seq, fn, args))

    def after(self, delay_us: int, fn: Callable[..., None], *args: Any) -> None:
        self.at(self.clock.now_us + delay_us, fn, *args)

    def send(self, src: int, dst: int, deliver: Callable[[Any], None], msg: Any) -> None:
        """Put ``msg`` on the network; ``deliver(msg)`` runs at dst for each copy that arrives."""
        for d in self.net.delays(src, dst):
            self.after(d, self._arrive, src, dst, deliver, msg)

    def _arrive(self, src: int, dst: int, deliver: Callable[[Any], None], msg: Any) -> None:
        if self.net.arrives(src, dst) and self.driver.is_up(dst):
            deliver(msg)

    def fail(self, what: str) -> NoReturn:
        cfg = self.cfg
        raise SafetyViolation(f"{self.driver.mode} seed {cfg.seed}: {what}\n"
                              f"replay: {replay_command(self.driver.mode, cfg.seed, cfg.nodes, cfg.long)}"
                              f"{getattr(self.driver, 'replay_flags', '')}")

    # ------------------------------------------------------------- clients
    def _schedule_client(self, c: Client) -> None:
        self.after(c.rng.randint(0, self.cfg.think_us_max), self._client_start, c)

    def _client_start(self, c: Client) -> None:
        if self.healing or c.pending is not None:
            return
        c.next_op(self.clock.now_us)
        self._client_attempt(c)

    def _client_attempt(self, c: Client) -> None:
        p = c.pending
        if p is None:
            return
        if p.attempts >= self.cfg.max_attempts:
            self.client_done(c, None, None)
            return
        rid = (c.process, c.new_attempt())
        self.after(self.cfg.client_timeout_us, self._client_timeout, c, rid)
        driver = self.driver
        up = [i for i in driver.node_ids() if driver.is_up(i)]
        if not up:
            return
        target = c.leader_hint if c.leader_hint in up and c.rng.random() < 0.8 else c.rng.choice(up)
        p.node = target
        driver.submit(c, p, target, rid)

    def _client_timeout(self, c: Client, rid: tuple[int, int]) -> None:
        p = c.pending
        if p is None or rid != (c.process, p.attempt_id):
            return
        if self.driver.may_retry(p):
            self._client_attempt(c)
        else:
            self.client_done(c, None, None)

    def current(self, c: Client, rid: tuple[int, int]) -> bool:
        """Is ``rid`` the client's current attempt (not an abandoned one)?"""
        return c.pending is not None and rid == (c.process, c.pending.attempt_id)

    def client_done(self, c: Client, ok: bool | None, value: str | None) -> None:
        c.complete(ok, value, self.clock.now_us)
        self._schedule_client(c)

    def client_retry(self, c: Client, rid: tuple[int, int], hint: int | None = None) -> None:
        """The attempt was refused before it could take effect: try again soon, after
        ``RETRY_FIRST_US`` doubled at each refusal of the same operation, at most ``RETRY_MAX_US``
        (exponential backoff, as a Redis client's retry policy does). With a fixed 2 ms a client
        spent its ``max_attempts`` in 80 ms of an election: 85 % of a raft seed's attempts were
        refusals, and backing off takes 28 % off its simulation time (session 27)."""
        if hint is not None:
            c.leader_hint = hint
        p = c.pending
        refusals = 0
        if p is not None:
            refusals = p.refusals
            p.refusals += 1
        self.after(min(RETRY_FIRST_US << refusals, RETRY_MAX_US), self._client_timeout_retry, c, rid)

    def _client_timeout_retry(self, c: Client, rid: tuple[int, int]) -> None:
        if self.current(c, rid):
            self._client_attempt(c)

    # ------------------------------------------------------------- nemesis
    def _nemesis(self, rnd: int) -> None:
        if self.healing or rnd != self.round:
            return
        rng, driver = self.nemesis_rng, self.driver
        actions: dict[str, Callable[[random.Random], str | None]] = {
            "partition": self._partition, "one_way": self._one_way, "isolate_leader": self._isolate_leader,
            "heal": self._heal_net, "lossy": self._lossy, "clean": self._clean, "crash": self._crash,
            "restart": self._restart, "slow_disk": self._slow_disk,
        }
        actions.update(driver.nemesis_actions())
        name = rng.choice(sorted(actions))
        line = actions[name](rng)
        if line:
            self.nemesis_log.append(f"{self.now_us / 1e6:.3f}s {line}")
        self.after(rng.randint(50_000, 300_000), self._nemesis, rnd)

    def _groups(self, rng: random.Random) -> tuple[set[int], set[int]]:
        ids = self.driver.node_ids()
        a = set(rng.sample(ids, rng.randint(1, len(ids) - 1)))
        return a, set(ids) - a

    def _partition(self, rng: random.Random) -> str:
        a, b = self._groups(rng)
        self.net.partition([a, b])
        return f"partition {sorted(a)} | {sorted(b)}"

    def _one_way(self, rng: random.Random) -> str:
        a, b = self._groups(rng)
        self.net.cut_one_way(a, b)
        return f"one-way cut {sorted(a)} -> {sorted(b)}"

    def _isolate_leader(self, rng: random.Random) -> str | None:
        lead = self.driver.leader()
        if lead is None:
            return None
        self.net.partition([{lead}, set(self.driver.node_ids()) - {lead}])
        return f"isolate leader {lead}"

    def _heal_net(self, rng: random.Random) -> str:
        self.net.heal()
        return "heal"

    def _lossy(self, rng: random.Random) -> str:
        net = self.net
        net.drop_p, net.dup_p = rng.uniform(0.05, 0.3), rng.uniform(0.0, 0.2)
        return f"lossy drop={net.drop_p:.2f} dup={net.dup_p:.2f}"

    def _clean(self, rng: random.Random) -> str:
        self.net.drop_p = self.net.dup_p = 0.0
        return "clean"

    def _crash(self, rng: random.Random) -> str | None:
        driver = self.driver
        up = [i for i in driver.node_ids() if driver.is_up(i)]
        if not up:
            return None
        victim = rng.choice(up)
        lead = driver.leader()
        if lead is not None and rng.random() < 0.4:
            victim = lead  # most often the one whose unsynced writes matter
        driver.crash(victim)
        return f"crash {victim}"

    def _restart(self, rng: random.Random) -> str | None:
        down = [i for i in self.driver.node_ids() if not self.driver.is_up(i)]
        if not down:
            return None
        back = rng.choice(down)
        self.driver.restart(back)
        return f"restart {back}"

    def _slow_disk(self, rng: random.Random) -> str:
        victim = self.driver.leader() or rng.choice(self.driver.node_ids())
        self.driver.set_slow_disk(victim, True)
        self.after(rng.randint(*_SLOW_DISK_FOR_US), self.driver.set_slow_disk, victim, False)
        return f"slow disk {victim}"

    def _heal_all(self) -> None:
        self.net.heal()
        self.net.drop_p = self.net.dup_p = 0.0
        driver = self.driver
        for i in driver.node_ids():
            driver.set_slow_disk(i, False)
            if not driver.is_up(i):
                driver.restart(i)
        self.nemesis_log.append(f"{self.now_us / 1e6:.3f}s heal all")

    # ----------------------------------------------------------------- run
    def converged(self) -> bool:
        return all(c.pending is None for c in self.clients) and self.driver.converged()

    def run(self) -> SimResult:
        cfg, driver = self.cfg, self.driver
        driver.boot()
        for c in self.clients:
            self._schedule_client(c)
        self.after(self.nemesis_rng.randint(50_000, 300_000), self._nemesis, 0)
        heal_at = cfg.fault_us
        for rnd in range(cfg.rounds):
            self.round = rnd
            deadline = heal_at + cfg.heal_us_max
            self._run_until(heal_at)
            self.healing = True
            self._heal_all()
            next_check = heal_at
            while True:
                if not self.events or self.events[0][0] > deadline:
                    break
                t = self.events[0][0]
                self._step()
                if t >= next_check:
                    next_check = t + cfg.tick_us
                    driver.heal_step()
                    if self.converged():
                        break
            if not self.converged():
                pending = [c.pending for c in self.clients if c.pending]
                self.fail(f"round {rnd + 1}: no convergence within {cfg.heal_us_max}us of healing: "
                          f"{driver.describe()}; pending clients {pending}")
            if rnd + 1 < cfg.rounds:  # the next fault phase: clients and the nemesis resume
                self.healing = False
                heal_at = self.clock.now_us + cfg.fault_us
                for c in self.clients:
                    self._schedule_client(c)
                self.after(self.nemesis_rng.randint(50_000, 300_000), self._nemesis, rnd + 1)
        ops = [op for c in self.clients for op in c.history]
        driver.final_check(ops)
        stats = driver.stats()
        return SimResult(mode=driver.mode, seed=cfg.seed, nodes=cfg.nodes, ops=ops,
                         committed=stats.get("committed", 0), converged_at_us=self.clock.now_us,
                         nemesis=self.nemesis_log, messages=self.net.sent, stats=stats)

    def _run_until(self, t_end: int) -> None:
        while self.events and self.events[0][0] < t_end:
            self._step()
        self.clock.advance_to(max(self.clock.now_us, t_end))

    def _step(self) -> None:
        t, _, fn, args = heapq.heappop(self.events)
        self.clock.advance_to(t)
        try:
            fn(*args)
        except InvariantViolation as e:  # a core caught itself breaking a rule
            self.fail(f"invariant violated: {e}")


def run(mode: str, seed: int, nodes: int = 3, long: bool = False, **overrides: Any) -> SimResult:
    """Run one seed of ``mode``'s simulator (its ModeSpec names the driver).
    ``overrides`` set SimConfig fields, the rest go to the driver's options."""
    from replikv import modes

    spec = modes.get(mode)
    if spec.sim is None:
        raise ValueError(f"{mode} mode has no simulator driver")
    driver_cls = spec.sim()
    names = {f.name for f in dataclasses.fields(SimConfig)}
    cfg = SimConfig(seed=seed, nodes=nodes, long=long, **{k: v for k, v in overrides.items() if k in names})
    options = {k: v for k, v in overrides.items() if k not in names}
    return Engine(cfg, lambda engine: driver_cls(engine, **options)).run()
