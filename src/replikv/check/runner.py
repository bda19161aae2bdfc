"""One `replikv check` run, and the claims each mode and setting make.

A run: start a fresh cluster (harness.py), drive it with N clients
(clients.py) while the nemesis injects faults on a seeded schedule
(nemesis.py), stop the faults and heal, stop the clients, wait for
quiescence (one leader streaming to every follower, equal state digests),
read the final state on the leader, run the checkers (checkers.py) and
judge them against the claims below. It writes ``history.jsonl`` (client
ops as they complete, then nemesis windows and final reads), each node's
log and ``report.html``. Memory stays flat however long the run: the
history goes to disk as it happens, the checkers read it back one key at a
time (history.HistoryFile), and the report keeps bounded summaries.

Verdict and exit code: 0 when every claim marked *required* held; 1 when
one was refuted; 2 when one could not be decided (a checker timeout, no
final read, a cluster that did not settle). Observations a setting does not
claim (stale reads under eventual reads, writes lost by async acks on
failover) are shown and counted, and never change the exit code: "async may
lose acknowledged writes" is the claim, and the report shows how many.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from replikv import modes
from replikv.check import checkers as ck
from replikv.check.clients import ClientPool, run_final_reads
from replikv.check.convergence import Parts
from replikv.check.harness import Harness, HarnessError, mode_available
from replikv.check.history import NEMESIS_PROCESS, HistoryFile, HistoryWriter, Op, by_key, dump_history
from replikv.check.txnblock import BLOCKED_LOCKS, check_blocked_locks
from replikv.check.report import Summary, write_report
from replikv.check.result import run_key_checkers
from replikv.check.lock_client import LockClientPool
from replikv.check.nemesis import (LOCK_WORKLOADS, SHARDED_NEMESES, Nemesis, heal_everything, nemesis_available,
                                   schedule)
from replikv.check.workloads import Workload, make_workload, pipeline_refusal, probe_cas
from replikv.modes import Claim

TXN_WORKLOADS = ("bank",)  # workloads whose point is transactions across groups: a sharded setting by default
SETUP_S = 30.0  # a workload's setup (bank: the initial balances) retries this long


def claims_for(mode: str, setting: str, workload: str, txn: str | None = None,
               nemeses: Sequence[str] = ()) -> list[Claim]:
    """What ``mode`` with ``setting`` promises for ``workload`` (its ModeSpec; docs/consistency.md),
    and under the ``coordinator-kill`` nemesis what the transaction setting ``txn`` promises."""
    out = list(modes.get(mode).claims(setting, workload))
    if "coordinator-kill" in nemeses:
        if txn == "classic":
            out.append(Claim(BLOCKED_LOCKS, False, "textbook 2PC (--txn classic) blocks: participants that voted yes "
                                                   "wait for a dead coordinator holding their locks (measured)"))
        else:
            out.append(Claim(BLOCKED_LOCKS, True, "a coordinator killed between the phases blocks nothing: its "
                                                  "participants finish every transaction from the transaction record "
                                                  "within the timeout plus an election (check/txnblock.py)"))
    return out


def default_setting(mode: str, workload: str, nemeses: Sequence[str], txn: str | None) -> str:
    """The mode's first setting, or its first sharded one for a transaction workload, a sharded
    nemesis or a ``--txn`` choice (which only sharded clusters have)."""
    spec = modes.get(mode)
    if workload in TXN_WORKLOADS or txn or any(n in SHARDED_NEMESES for n in nemeses):
        for setting in spec.settings:
            if spec.check_options(setting, set()).get("shards"):
                return setting
    return spec.settings[0]


def held_after_heal(nem: Nemesis) -> list[str]:
    """A note naming the prepared transactions still holding locks once the cluster healed and
    converged (the clients have stopped: nothing should be in flight), or none."""
    rows = nem.intents(nem.harness.ids)
    if not rows:
        return []
    shown = "; ".join(f"{txn} (group {g}, {age} ms: {' '.join(keys)})" for txn, g, age, keys in rows[:10])
    return [f"{len(rows)} prepared transaction(s) still held their locks after the heal: {shown}"]


def run_setup(harness: Harness, wl: Workload, now: Callable[[], int], timeout_s: float = SETUP_S) -> Op | None:
    """The workload's setup (`Workload.setup`), retried until it succeeds (a group may still be
    electing): the ``init`` op to record first, or None when the workload has none."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    with harness.netns():
        while True:
            node = harness.leader() or harness.ids[0]
            call = now()
            try:
                c = harness.client(node, 5.0)
                try:
                    value = wl.setup(c)
                finally:
                    c.close()
                if value is None:
                    return None
                return Op(0, "init", wl.keys[0], value, None, True, call, now())
            except (redis.RedisError, OSError) as e:
                last = e
            if time.monotonic() > deadline:
                raise HarnessError(f"the {wl.name} workload's setup failed for {timeout_s:.0f} s: {last}")
            time.sleep(0.2)


@dataclass
class RunResult:
    exit_code: int
    verdict: str  # "held" | "refuted" | "undecided"
    directory: Path
    results: list[ck.CheckResult] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    history: Sequence[Op] = field(default_factory=list)  # a run's: the HistoryFile it wrote
    notes: list[str] = field(default_factory=list)
    params: dict[str, object] = field(default_factory=dict)
    summary: Summary | None = None  # the report's view of the history, built while checking

    def result(self, name: str) -> ck.CheckResult | None:
        return next((r for r in self.results if r.name == name), None)


def judge(claims: list[Claim], results: list[ck.CheckResult]) -> tuple[int, str]:
    by_name = {r.name: r for r in results}
    refuted = undecided = False
    for c in claims:
        r = by_name.get(c.checker)
        if not c.required:
            continue
        if r is None or r.status == "unknown":
            undecided = True
        elif r.status == "fail":
            refuted = True
    if refuted:
        return 1, "refuted"
    if undecided:
        return 2, "undecided"
    return 0, "held"


def run_checkers(history: Sequence[Op], workload: str, digests: Mapping[str, Parts | str | None],
                 timeout_s: float = 60.0, summary: Summary | None = None,
                 claims: Sequence[Claim] = (), node_of: Callable[[int], int] | None = None
                 ) -> list[ck.CheckResult]:
    """Convergence, then every per-key checker of `workload` in one pass over the keys
    (which also fills `summary`, the report's view of the history, when given); an optional
    checker (checkers.OPTIONAL_KEY_CHECKERS, e.g. "lww overwrites") runs when a claim names it."""
    groups = by_key(history)
    if summary is not None:
        nemesis = history.nemesis_ops() if isinstance(history, HistoryFile) else \
            [op for op in history if op.process == NEMESIS_PROCESS]
        for op in nemesis:
            summary.add(-1, op)
        groups = summary.feed(groups)
    checkers = ck.key_checkers(workload, timeout_s, extra=[c.checker for c in claims], node_of=node_of)
    return [ck.check_convergence(digests)] + run_key_checkers(groups, checkers)


def run_check(*, mode: str, workload: str, nemeses: list[str], time_s: float, clients: int, seed: int | None,
              setting: str | None = None, store: Path = Path("store"), nodes: int = 3,
              checker_timeout_s: float = 60.0, settle_s: float = 30.0, txn: str | None = None,
              progress: Callable[[str, float | None], None] | None = None, pipeline: int = 1) -> RunResult:
    """Run one check end to end (see the module docstring); never raises for a cluster fault.

    ``progress(phase, expected_end)`` is told each phase as it begins, with the
    monotonic time it should end by (None when it cannot be known). ``txn`` (``record`` or
    ``classic``): how a sharded cluster commits MULTI/EXEC across groups (node option ``txn``).
    ``pipeline``: each client sends that many ops at a time (``ClientPool``; workloads.PIPELINED_WORKLOADS)."""
    if refusal := pipeline_refusal(workload, pipeline):
        raise ValueError(refusal)
    say = progress or (lambda phase, end: None)
    seed = random.randrange(1 << 30) if seed is None else seed
    ok, why = mode_available(mode)
    if not ok:
        directory = store / f"{time.strftime('%Y%m%d-%H%M%S')}-{mode}-{workload}-{seed}"
        directory.mkdir(parents=True, exist_ok=True)
        return _finish(RunResult(2, "undecided", directory, [], [], [], [why], {"mode": mode, "seed": seed}))
    spec = modes.get(mode)
    setting = setting or default_setting(mode, workload, nemeses, txn)
    clamped = spec.max_nodes is not None and nodes > spec.max_nodes
    nodes = min(nodes, spec.max_nodes) if spec.max_nodes is not None else nodes
    stamp = time.strftime("%Y%m%d-%H%M%S")
    directory = store / f"{stamp}-{mode}-{workload}-{setting.replace(' ', '')}{'-' + txn if txn else ''}-{seed}"
    directory.mkdir(parents=True, exist_ok=True)
    params: dict[str, object] = {"mode": mode, "setting": setting, "workload": workload, "nemesis": nemeses,
                                 "time_s": time_s, "clients": clients, "seed": seed, "nodes": nodes}
    if txn:
        params["txn"] = txn
    if pipeline > 1:
        params["pipeline"] = pipeline
    notes: list[str] = [f"{mode} mode runs {nodes} node(s)"] if clamped else []
    active = []
    for n in nemeses:
        ok, why = nemesis_available(n, mode, setting, workload)
        if ok:
            active.append(n)
        else:
            notes.append(f"nemesis {n} skipped: {why}")
    options: dict[str, object] = {"ack_timeout_ms": 1000, "session_timeout_ms": 1000,
                                  **spec.check_options(setting, set(active))}
    shards = int(spec.check_options(setting, set(active)).get("shards") or 0)  # Raft groups (0: unsharded)
    if txn:
        options["txn"] = txn
    claims = claims_for(mode, setting, workload, txn, active)
    cluster_dir = directory / "cluster"
    env = {"REPLIKV_FAILPOINTS": "1"} if "coordinator-kill" in active else None
    harness = Harness(cluster_dir, mode, nodes, clock="clock" in active, env=env, **options)
    history_path = directory / "history.jsonl"
    writer = HistoryWriter(history_path)
    digests: dict[str, Parts | None] = {}
    lock_pool: LockClientPool | None = None
    try:
        say(f"starting {nodes} {mode} node(s)", None)
        harness.start()
        start_ns = time.monotonic_ns()
        t0 = time.monotonic()
        with harness.netns():
            probe = harness.client(harness.leader() or harness.ids[0], 2.0)
            cas = probe_cas(probe)
            probe.close()
        if workload == "register" and not cas:
            notes.append(f"{mode} has no CAS command: the register workload issues reads and writes only")
        wl = make_workload(workload, cas=cas, groups=max(shards, 1))
        pool: ClientPool | LockClientPool
        if workload in LOCK_WORKLOADS:  # clients are processes, so client-pause can SIGSTOP one
            pool = lock_pool = LockClientPool(harness, wl, clients, seed, start_ns,
                                              read_level=spec.check_read_level, writer=writer)
        else:
            pool = ClientPool(harness, wl, clients, seed, start_ns, read_level=spec.check_read_level,
                              writer=writer, pipeline=pipeline)
        init = run_setup(harness, wl, pool.now)
        if init is not None:
            writer.append(init)
        nem = Nemesis(harness, schedule(active, time_s, seed), seed, pool.now, slot_keys=wl.slot_keys,
                      lock_clients=lock_pool)
        pool.start()
        nem.start(t0)
        say(f"{workload} workload, {clients} clients, faults: {', '.join(active) or 'none'}", t0 + time_s)
        pool.stop.wait(time_s)
        nem.join()
        say("healing: faults undone, clients finishing", time.monotonic() + settle_s)
        heal_everything(harness)
        pool.join()
        notes += nem.log
        for op in nem.ops:
            writer.append(op)
        if pool.errors.counts:
            notes.append("client errors by kind: " + pool.errors.summary())
        if lock_pool is not None and lock_pool.malformed:
            notes.append(f"{len(lock_pool.malformed)} lock client report(s) did not parse, first: "
                         f"{lock_pool.malformed[0]}")
        try:
            leader = harness.wait_stable(settle_s)
        except HarnessError as e:
            notes.append(f"cluster did not settle after heal: {e}")
            leader = harness.leader() or harness.ids[0]
        say("waiting for every replica to converge", time.monotonic() + settle_s)
        digests = harness.wait_converged(settle_s)
        nem.after_heal()
        if shards > 1:
            notes += held_after_heal(nem)
        final_errors: list[str] = []
        for op in run_final_reads(harness, leader, wl, pool.now, final_errors):
            writer.append(op)
        notes += final_errors
        if pipeline > 1:
            runs = harness.info_totals("replikv_command_runs", "replikv_command_run_commands")
            notes.append(f"clients pipelined {pipeline} ops at a time: the nodes served "
                         f"{runs['replikv_command_runs']} pipelined run(s) of "
                         f"{runs['replikv_command_run_commands']} command(s) as one (INFO stats, since each "
                         "node's last start)")
    except HarnessError as e:
        notes.append(f"run aborted: {e}")
        if lock_pool is not None:
            lock_pool.close()
        harness.close()
        writer.close()
        _collect_logs(harness, directory)
        return _finish(RunResult(2, "undecided", directory, [], claims, HistoryFile(history_path), notes,
                                 params))
    finally:
        if lock_pool is not None:
            lock_pool.close()
        harness.close()
        writer.close()
    if writer.dropped:
        notes.append(f"{writer.dropped} client op(s) completed after the history was closed (a client "
                     "stuck past the end of the run) and are not in it")
    _collect_logs(harness, directory)
    notes += _discarded_from_logs(directory, harness.ids)
    history = HistoryFile(history_path)
    summary = Summary(clients, origin=0)  # op times count from the run's start
    say("checking the history", time.monotonic() + checker_timeout_s)
    # every node takes writes: session claims are judged on each client's own node
    # (clients.py: process p is worker p mod clients, on node worker mod nodes)
    node_of = None if spec.single_writer else (lambda p: (p % clients) % nodes)
    results = run_checkers(history, workload, digests, checker_timeout_s, summary, claims, node_of=node_of)
    if "coordinator-kill" in active:
        results.append(check_blocked_locks(nem.observations, history))
        (directory / "coordinator-kill.json").write_text(json.dumps(nem.observations, indent=2))
    code, verdict = judge(claims, results)
    return _finish(RunResult(code, verdict, directory, results, claims, history, notes, params, summary))


def _collect_logs(harness: Harness, directory: Path) -> None:
    for nid in harness.ids:
        src = harness.log_path(nid)
        if src.exists():
            shutil.copyfile(src, directory / f"{nid}.log")


def _discarded_from_logs(directory: Path, ids: list[str]) -> list[str]:
    out = []
    for nid in ids:
        path = directory / f"{nid}.log"
        if not path.exists():
            continue
        with open(path, errors="replace") as f:
            for line in f:
                if "discarded" in line and "acknowledged" in line:
                    out.append(f"{nid} log: {line.split(' node ', 1)[-1].strip()}")
    return out


def _finish(result: RunResult) -> RunResult:
    if not isinstance(result.history, HistoryFile):  # a run's history is already on disk
        dump_history(result.history, result.directory / "history.jsonl")
    summary = {
        "params": result.params, "verdict": result.verdict, "exit_code": result.exit_code,
        "notes": result.notes,
        "claims": [dataclasses.asdict(c) for c in result.claims],
        "results": [{"name": r.name, "status": r.status, "summary": r.summary, "count": r.count,
                     "stats": r.stats} for r in result.results],
    }
    (result.directory / "summary.json").write_text(json.dumps(summary, indent=2))
    write_report(result, result.directory / "report.html")
    return result
