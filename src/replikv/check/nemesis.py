"""Nemeses: faults injected on a seeded schedule and recorded in the history.

The schedule is drawn from the seed before the run: fault windows of a few
seconds separated by quiet gaps, faults taken in turn from the ones asked
for (shuffled by the seed). Each window becomes one history entry
``{"process": -1, "op": "nemesis", "key": <fault>, "value": <what was done>,
"ok": true, "call": <start>, "return": <end>}``; targets (which node, which
halves) are chosen with the same seeded RNG when the window opens, since
they depend on who leads at that moment.

Faults:

- ``kill``: SIGKILL a node (the leader half of the time), restart it at the end.
- ``pause``: SIGSTOP a node (the leader half of the time), SIGCONT at the end.
- ``partition``: one of majority/minority random halves, isolated leader,
  bridge (two halves that only one node sees both of); iptables in the
  harness's namespace; needs root.
- ``clock``: skew one node's wall clock by 2-30 s with libfaketime; reset at
  the end (needs Debian ``faketime``).
- ``fsync-lie``: the cluster runs with ``--fsync no``; SIGKILL every node at
  once and restart them: what the nodes had not handed to the kernel is
  lost. A SIGKILL keeps the kernel's page cache, so this shows the cost of
  user-space buffering only; a power loss would lose more.
- ``failover`` (leader-follower): cut the leader off from its followers
  (a partition as root, else SIGSTOP), then ``FAILOVER TO <follower> FORCE``
  on a follower; heal at the end, when the old leader learns the newer epoch
  and steps down, discarding what it alone had.

Faults of sharded raft only (a setting whose cluster has ``shards``):

- ``reshard``: ``REPLIKV RESHARD <slot> <group>`` of the slot of one or two keys the
  clients use (the workload's `slot_keys`) to another group, online, while transactions run;
  nothing to undo (the slots stay where they went).
- ``coordinator-kill``: ``REPLIKV FAILPOINT txn-exit-after-prepare`` on a node the clients
  send transactions to (nodes run with ``REPLIKV_FAILPOINTS=1``): the next cross-group
  transaction it coordinates exits the process once every participant voted yes, before the
  decision (as a SIGKILL there would). The nemesis waits for the death, then polls ``REPLIKV TXN
  INTENTS`` on every live node for the transaction timeout plus two election timeouts plus a few
  seconds, and records what it saw (`observations`: every prepared transaction, its groups,
  keys and greatest age, and which were still held at the end) before the window's heal restarts
  the node. check/txnblock.py judges it: under ``--txn record`` no intent may outlive
  ``txn_timeout_ms + 2 * election_timeout_ms + 2 s``; under ``--txn classic`` the
  participants stay blocked holding their locks, and the report names them.

A fault of the lock workloads only (their clients are processes, check/lock_client.py):

- ``client-pause``: SIGSTOP a lock client that holds a lock and has not yet sent its write, for
  `CLIENT_PAUSE_MS` (longer than the lease: ``LockWorkload.TTL_MS`` plus a margin), then SIGCONT;
  again with another holder until the window ends. The lease runs out meanwhile, another client
  takes the lock, and the stopped one wakes up and writes under its old token: FENCED must refuse
  it, a plain write shows the overlap (Kleppmann, "How to do distributed locking", 2016). Each
  stop is an op ``pause`` of the holder's process on the lock's key (value = the token, from the
  SIGSTOP to the SIGCONT), and the window's nemesis op names the pid, process and token.

`heal_all` undoes everything (restart, resume, heal, clocks back): it runs
at the end of every window and before the final checks.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from replikv import modes
from replikv.check.history import NEMESIS_PROCESS
from replikv.check.harness import Harness, can_partition, faketime_lib
from replikv.check.history import Op
from replikv.check.lock_client import LockClientPool
from replikv.core.sharding.slots import key_slot

NEMESES = ("kill", "pause", "partition", "clock", "fsync-lie", "failover", "reshard", "coordinator-kill",
           "client-pause")
LOCK_WORKLOADS = ("lock", "lock-unfenced")  # their clients are processes: client-pause stops them
CLIENT_PAUSE_MS = 1500  # > LockWorkload.TTL_MS (600) + the leader's expiry tick and a WAIT's turn
HOLDER_WAIT_S = 2.0  # client-pause waits this long for a client that holds a lock
SHARDED_NEMESES = {"reshard": "RESHARD", "coordinator-kill": "FAILPOINT"}  # -> the REPLIKV command they need
OBSERVE_EXTRA_S = 2.0  # coordinator-kill watches the intents this long past the recovery bound
DEATH_WAIT_S = 10.0  # ... and waits this long for the armed node to coordinate a transaction and die


def sharded_setting(mode: str, setting: str | None) -> bool:
    """True when ``mode`` with ``setting`` (its first when None) runs hash slots over Raft groups."""
    spec = modes.get(mode)
    return bool(spec.check_options(setting or spec.settings[0], set()).get("shards"))


def recovery_bound_ms(options: object) -> int:
    """How long an intent may live under ``--txn record`` after its coordinator died: the
    transaction timeout (then any participant's leader asks the record), two election timeouts
    (the dead node may have led the record's group; an election takes one to two), two seconds of
    slack (recovery runs four times a second; a loaded 2-core box stalls loops for 100+ ms)."""
    return int(getattr(options, "txn_timeout_ms", 1000)) + 2 * int(getattr(options, "election_timeout_ms", 1000)) \
        + 2000


def nemesis_available(name: str, mode: str, setting: str | None = None,
                      workload: str | None = None) -> tuple[bool, str]:
    """(True, "") when this fault can run here for ``mode`` (with ``setting``: the sharded faults
    need a sharded one; with ``workload``: client-pause needs a lock workload); else (False, why not)."""
    if name not in NEMESES:
        return False, f"unknown nemesis {name!r}; choose from {', '.join(NEMESES)}"
    if name == "client-pause":
        if workload not in LOCK_WORKLOADS:
            return False, f"the client-pause nemesis stops lock clients: it needs workload {' or '.join(LOCK_WORKLOADS)}"
        return True, ""
    if name in SHARDED_NEMESES:
        if SHARDED_NEMESES[name] not in modes.get(mode).admin:
            having = [s.name for s in modes.specs() if SHARDED_NEMESES[name] in s.admin]
            return False, f"the {name} nemesis needs REPLIKV {SHARDED_NEMESES[name]} ({', '.join(having)} mode)"
        if not sharded_setting(mode, setting):
            return False, f"the {name} nemesis needs a sharded setting (many Raft groups), not {setting!r}"
        return True, ""
    if name == "partition":
        return can_partition()
    if name == "clock" and faketime_lib() is None:
        return False, "the clock nemesis needs libfaketime (Debian package faketime)"
    if name not in modes.get(mode).nemeses:
        having = [s.name for s in modes.specs() if name in s.nemeses]
        return False, f"the {name} nemesis does not apply to {mode} mode (it applies to {', '.join(having)})"
    return True, ""


@dataclass(frozen=True, slots=True)
class Window:
    start_s: float
    duration_s: float
    fault: str


def schedule(faults: list[str], total_s: float, seed: int) -> list[Window]:
    """Fault windows covering about half of ``total_s``; the last ends by 85% of it.

    Windows last about an eighth of the run, 8 s at most (at least 1.5 s, so a
    fault outlives the nodes' timeouts), separated by quiet gaps of similar
    length, so that the cluster recovers and serves between faults.
    """
    if not faults:
        return []
    rng = random.Random(seed)
    order = list(faults)
    rng.shuffle(order)
    unit = max(1.5, min(8.0, total_s / 8))
    t, out, i = unit * 0.5, [], 0
    while True:
        dur = unit * rng.uniform(0.8, 1.3)
        if t + dur > total_s * 0.85:
            break
        out.append(Window(round(t, 3), round(dur, 3), order[i % len(order)]))
        i += 1
        t += dur + unit * rng.uniform(0.6, 1.0)
    return out


@dataclass
class Nemesis:
    """Runs a schedule against a harness in its own thread; `ops` records every window."""

    harness: Harness
    windows: list[Window]
    seed: int
    now: Callable[[], int]
    ops: list[Op] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _failover_pauses: set[str] = field(default_factory=set)
    slot_keys: Callable[[], list[str]] | None = None  # the keys reshard moves (the workload's)
    observations: list[dict[str, object]] = field(default_factory=list)  # coordinator-kill's findings
    lock_clients: LockClientPool | None = None  # the lock workloads' client processes (client-pause)

    def start(self, t0: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(t0,), name="check-nemesis", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float = 60.0) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self, t0: float) -> None:
        rng = random.Random(self.seed ^ 0x5EED)
        for w in self.windows:
            if self.stop.wait(max(0.0, t0 + w.start_s - time.monotonic())):
                return
            call = self.now()
            try:
                what = self._begin(w.fault, rng, t0 + w.start_s + w.duration_s)
            except Exception as e:  # a fault that could not start is logged, the run goes on
                what = f"could not start: {e}"
            self.log.append(f"{call / 1e9:7.2f}s {w.fault}: {what}")
            self.stop.wait(max(0.0, t0 + w.start_s + w.duration_s - time.monotonic()))
            try:
                self.heal_all()
            except Exception as e:
                self.log.append(f"heal after {w.fault} failed: {e}")
            self.ops.append(Op(NEMESIS_PROCESS, "nemesis", w.fault, what, None, True, call, self.now()))
            if self.stop.is_set():
                return

    # -- faults -------------------------------------------------------------------------------
    def _target(self, rng: random.Random) -> str:
        leader = self.harness.leader()
        ids = self.harness.ids
        if leader is not None and rng.random() < 0.5:
            return leader
        return rng.choice(ids)

    def _begin(self, fault: str, rng: random.Random, until: float) -> str:
        h = self.harness
        if fault == "client-pause":
            return self._client_pause(rng, until)
        if fault == "kill":
            nid = self._target(rng)
            h.kill(nid)
            return f"killed {nid} (SIGKILL)"
        if fault == "pause":
            nid = self._target(rng)
            h.pause(nid)
            return f"paused {nid} (SIGSTOP)"
        if fault == "clock":
            nid = self._target(rng)
            offset = rng.choice((-1, 1)) * rng.uniform(2, 30)
            h.set_clock(nid, offset)
            return f"{nid} clock {offset:+.1f} s"
        if fault == "fsync-lie":
            for nid in h.ids:
                h.kill(nid)
            return f"killed every node at once ({', '.join(h.ids)}) running with fsync={h.config.options.fsync}"
        if fault == "partition":
            return self._partition(rng)
        if fault == "failover":
            return self._failover(rng)
        if fault == "reshard":
            return self._reshard(rng)
        if fault == "coordinator-kill":
            return self._coordinator_kill(rng)
        raise ValueError(f"unknown nemesis {fault!r}")

    def _client_pause(self, rng: random.Random, until: float) -> str:
        """Stop lock holders past their lease until the monotonic time ``until`` (at least one
        try); see the module docstring."""
        pool = self.lock_clients
        if pool is None:
            return "no lock client processes to stop"
        done: list[str] = []
        while True:
            holder = None
            give_up = time.monotonic() + HOLDER_WAIT_S
            while holder is None and time.monotonic() < give_up and not self.stop.is_set():
                holders = pool.holders()
                holder = rng.choice(holders) if holders else None
                if holder is not None and not pool.pause(holder):
                    holder = None
                if holder is None:
                    time.sleep(0.005)
            if holder is None:
                if not done:
                    done.append(f"no client held a lock for {HOLDER_WAIT_S:g} s")
                break
            stopped = self.now()
            try:
                time.sleep(CLIENT_PAUSE_MS / 1000)  # in full even when the run ends: past the lease
            finally:
                resumed = self.now()  # before the SIGCONT: every op the client sends after it comes later
                pool.resume(holder.worker)
            self.ops.append(Op(holder.process, "pause", holder.lock, str(holder.token), None, True, stopped, resumed))
            done.append(f"SIGSTOP lock client pid {holder.pid} (process {holder.process}, holding {holder.lock} "
                        f"token {holder.token}) for {(resumed - stopped) / 1e6:.0f} ms, then SIGCONT")
            if time.monotonic() >= until or self.stop.is_set():
                break
        return "; ".join(done)

    def _partition(self, rng: random.Random) -> str:
        h = self.harness
        ids = list(h.ids)
        leader = h.leader() or ids[0]
        kind = rng.choice(("halves", "isolated-leader", "bridge"))
        if kind == "isolated-leader":
            a, b = [leader], [n for n in ids if n != leader]
        else:
            rng.shuffle(ids)
            half = len(ids) // 2
            a, b = ids[:half], ids[half:]
        cut = {frozenset((x, y)) for x in a for y in b}
        desc = f"{kind}: {' '.join(sorted(a))} | {' '.join(sorted(b))}"
        if kind == "bridge" and len(b) >= 2:
            bridge = b[0]
            cut = {p for p in cut if bridge not in p}
            desc = f"bridge: {' '.join(sorted(a))} | {' '.join(sorted(b[1:]))}, {bridge} sees both"
        h.partition(cut)
        return desc

    def _failover(self, rng: random.Random) -> str:
        h = self.harness
        leader = h.leader()
        if leader is None:
            return "no leader to fail over from"
        followers = [n for n in h.ids if n != leader]
        target = rng.choice(followers)
        if h.use_netns:
            h.partition({frozenset((leader, f)) for f in followers})
            how = "cut off by a partition (clients still reach it)"
        else:
            h.pause(leader)
            how = "paused (SIGSTOP)"
        with h.netns():
            c = h.client(target, 5.0)
            try:
                reply = c.execute_command("FAILOVER", "TO", target, "FORCE")
            except redis.RedisError as e:
                reply = f"error: {e}"
            finally:
                c.close()
        return f"leader {leader} {how}; FAILOVER TO {target} FORCE -> {reply}"

    def _reshard(self, rng: random.Random) -> str:
        h = self.harness
        keys = self.slot_keys() if self.slot_keys is not None else []
        if not keys:
            return "no key to move"
        groups = int(h.config.options.shards)
        done = []
        for key in rng.sample(keys, min(2, len(keys))):
            slot = key_slot(key.encode())
            targets = list(range(groups))
            rng.shuffle(targets)
            for target in targets:
                nodes = [n for n in h.ids if h.running(n) and n not in h.paused] or list(h.ids)
                rng.shuffle(nodes)
                reply: object = None
                for node in nodes:  # a node restarting after a kill may not listen yet: ask another
                    try:
                        reply = h._ask(node, "REPLIKV", "RESHARD", str(slot), str(target), timeout_s=30.0)
                        break
                    except (redis.ConnectionError, ConnectionRefusedError) as e:
                        reply = e
                    except (redis.RedisError, OSError) as e:
                        reply = e
                        break
                if isinstance(reply, BaseException) and "already belong" in str(reply):
                    continue
                done.append(f"slot {slot} ({key}) to group {target}: {reply}")
                break
        return "; ".join(done)

    def _coordinator_kill(self, rng: random.Random) -> str:
        h = self.harness
        live = [n for n in h.ids if h.running(n) and n not in h.paused]
        if not live:
            return "no live node to arm"
        nid = rng.choice(live)
        armed_at = self.now()
        try:
            h._ask(nid, "REPLIKV", "FAILPOINT", "txn-exit-after-prepare", timeout_s=2.0)
        except (redis.RedisError, OSError) as e:
            return f"could not arm {nid}: {e}"
        deadline = time.monotonic() + DEATH_WAIT_S
        proc = h.procs.get(nid)
        while proc is not None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc is None or proc.poll() is None:
            with contextlib.suppress(redis.RedisError, OSError):
                h._ask(nid, "REPLIKV", "FAILPOINT", "off", timeout_s=2.0)
            self.observations.append({"node": nid, "armed": armed_at, "died": None})
            return f"armed txn-exit-after-prepare on {nid}; it coordinated no cross-group transaction in " \
                   f"{DEATH_WAIT_S:g} s (disarmed)"
        died = self.now()
        bound_ms = recovery_bound_ms(h.config.options)
        prefix = f"{nid}."
        seen: dict[str, dict[str, object]] = {}  # txn -> {"groups": {g: keys}, "age_ms": max}
        max_age = 0
        held: list[tuple[str, int, int, list[str]]] = []
        end = time.monotonic() + bound_ms / 1000 + OBSERVE_EXTRA_S
        while True:
            held = self.intents([n for n in h.ids if n != nid])
            for txn, group, age, keys in held:
                entry = seen.setdefault(txn, {"groups": {}, "age_ms": 0, "dead": txn.startswith(prefix)})
                entry["groups"][str(group)] = keys  # type: ignore[index]
                entry["age_ms"] = max(int(entry["age_ms"]), age)  # type: ignore[call-overload]
                max_age = max(max_age, age)
            if time.monotonic() >= end:
                break
            time.sleep(0.25)
        still = sorted({t for t, _, age, _ in held if age > bound_ms})
        self.observations.append({
            "node": nid, "armed": armed_at, "died": died, "observed_until": self.now(), "bound_ms": bound_ms,
            "max_age_ms": max_age, "intents": seen, "held_at_end": still,
            "held_keys": sorted({k for t in still for keys in seen[t]["groups"].values()  # type: ignore[attr-defined]
                                 for k in keys}),
            "txn": str(getattr(h.config.options, "txn", "")),
        })
        dead = sorted(t for t, e in seen.items() if e["dead"])
        what = (f"armed txn-exit-after-prepare on {nid}, which exited {(died - armed_at) / 1e9:.1f} s later; "
                f"over the next {(self.now() - died) / 1e9:.1f} s: {len(seen)} prepared transaction(s) seen "
                f"({len(dead)} of {nid}'s), oldest intent {max_age} ms (bound {bound_ms} ms)")
        if still:
            what += f"; still held at the end: {', '.join(still)}"
        return what

    def intents(self, nodes: list[str]) -> list[tuple[str, int, int, list[str]]]:
        """Every node's ``REPLIKV TXN INTENTS`` rows: (txn, group, age ms, keys)."""
        out = []
        for n in nodes:
            if not self.harness.running(n) or n in self.harness.paused:
                continue
            try:
                rows = self.harness._ask(n, "REPLIKV", "TXN", "INTENTS", timeout_s=1.0)
            except (redis.RedisError, OSError):
                continue
            for row in rows or []:
                txn, group, age, *keys = row
                out.append((str(txn), int(group), int(age), [str(k) for k in keys]))
        return out

    def after_heal(self) -> None:
        """After the final heal: what the coordinator-kill windows left held (for --txn classic:
        the restarted coordinator remembers nothing, so its participants still wait)."""
        if not any(o.get("died") for o in self.observations):
            return
        rows = self.intents(self.harness.ids)
        for o in self.observations:
            if o.get("died"):
                prefix = f"{o['node']}."
                o["held_after_heal"] = sorted({t for t, _, _, _ in rows if t.startswith(prefix)})

    def heal_all(self) -> None:
        heal_everything(self.harness)
        if self.lock_clients is not None:
            self.lock_clients.resume_all()


def heal_everything(h: Harness) -> None:
    """Undo every fault: heal partitions, resume, reset clocks, restart the dead."""
    if h.use_netns:
        h.heal()
    for nid in list(h.paused):
        h.resume(nid)
    if h.faketime:
        for nid in h.ids:
            h.set_clock(nid, 0)
    for nid in h.ids:
        if not h.running(nid):
            h.restart(nid)
