#!/usr/bin/env python3
"""Leaderless throughput and tail latency against raft, in one run, on this machine.

Three nodes, the same --fsync for both modes, clients spread over the three
nodes (one redis-benchmark per node at once, each with a third of the
connections; the figure is all their requests over the slowest one's span
(multileader_throughput.spread), p50 the median of theirs, p99 the worst):

  * leaderless at QUORUM (write and read levels) and at ONE: SET and GET at
    -P 1 and -P 16;
  * raft: SET and GET (linearizable, ReadIndex) the same way (followers
    forward to the leader);
  * Paxos CAS (leaderless) against raft's, two ways: ``CAS key x y`` on the
    SET test's keys, which hold 16 x's, so every one fails (a Paxos read of
    the key), and ``SET key y NX`` on fresh keys (100,000,000 of them), which
    nearly all succeed (a Paxos write). The second is the one issue 9's
    target is judged by;
  * tail latency with one node paused: QUORUM GET p99 on two nodes with the
    third running, then SIGSTOPped (speculative retry should keep p99 near).

    .venv/bin/python benchmarks/leaderless_throughput.py             # the full run
    .venv/bin/python benchmarks/leaderless_throughput.py --quick     # a smoke run
    .venv/bin/python benchmarks/leaderless_throughput.py --markdown  # also tables for BENCHMARKS.md
    .venv/bin/python benchmarks/leaderless_throughput.py --levels quorum --pipelines 1 --no-raft \
        --ratio-rounds 6   # issue 9's Paxos ratio, six more rounds back to back

This is a script, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis

from multileader_throughput import bench_spread, console, load_average, replikv_up, spread
from resp_throughput import ensure_redis_tools


T = TypeVar("T")
KEYSPACE = 10_000
FRESH_KEYSPACE = 100_000_000  # SET NX on keys drawn from this many: nearly every one is new


def bench_cmd(port: int, requests: int, clients: int, pipeline: int, *command: str,
              keyspace: int = KEYSPACE) -> tuple[float, float, float]:
    """(ops/s, p50 ms, p99 ms) of redis-benchmark running ``command`` (random keys via __rand_int__,
    ``keyspace`` of them)."""
    args = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", str(requests), "-c", str(clients),
            "-r", str(keyspace), "-P", str(pipeline), "--csv", *command]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120 + requests / 500)
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed: {done.stderr.strip()}")
    for record in csv.DictReader(io.StringIO(done.stdout)):
        return float(record["rps"]), float(record["p50_latency_ms"]), float(record["p99_latency_ms"])
    raise RuntimeError(f"no result in:\n{done.stdout}")


def spread_cmd(ports: list[int], requests: int, clients: int, pipeline: int,
               *command: str, keyspace: int = KEYSPACE) -> tuple[float, float, float]:
    return spread(ports, requests, clients,
                  lambda port, n, c: bench_cmd(port, n, c, pipeline, *command, keyspace=keyspace))


def bench_cas(ports: list[int], requests: int, clients: int, only: str | None = None,
              fresh: str = "fresh") -> dict[str, tuple[float, float, float]]:
    """The two CAS figures (or ``only`` one of them): every one failing (``CAS`` whose expected
    value the SET test's keys do not hold: a Paxos read) and nearly every one succeeding (``SET NX``
    on fresh keys: a Paxos write). A later run of ``SET NX`` takes another ``fresh`` prefix:
    redis-benchmark seeds its key generator with the time and its pid, so a later run may draw
    an earlier one's keys again (seen: one of three runs did, and its SET NXs were all Paxos
    reads, at twice the rate)."""
    commands = {"CAS": (("CAS", "key:__rand_int__", "x", "y"), KEYSPACE),
                "SET NX": (("SET", f"{fresh}:__rand_int__", "y", "NX"), FRESH_KEYSPACE)}
    return {name: spread_cmd(ports, requests, clients, 1, *command, keyspace=keyspace)
            for name, (command, keyspace) in commands.items() if only in (None, name)}


# INFO counters of the leaderless nodes whose change over a phase tells what background work ran
# in it (``--probe-ms``)
WORK_COUNTERS = ("ae_rounds", "ae_keys_repaired", "read_repairs", "states_joined", "hints_stored",
                 "hints_delivered", "speculative_retries")


def work_counters(ports: list[int]) -> dict[str, int]:
    """The sum over ``ports``' nodes of ``WORK_COUNTERS`` (INFO replication)."""
    total = dict.fromkeys(WORK_COUNTERS, 0)
    for port in ports:
        info = redis.Redis(port=port, socket_timeout=2).info("replication")
        for name in WORK_COUNTERS:
            total[name] += int(info.get(f"replikv_{name}", 0))
    return total


class Phases:
    """The wall-clock span of every benchmark phase, to line up the nodes' loop stalls with
    (``--probe-ms``: the nodes log each stall with its wall time; runtime/loop_probe.py ``LoopProbe``),
    and (``counted``: the nodes to ask) the change of the nodes' ``WORK_COUNTERS`` over it."""

    def __init__(self, counted: list[int] | None = None) -> None:
        self.spans: list[tuple[str, float, float]] = []
        self.work: dict[str, dict[str, int]] = {}
        self.counted = counted

    def run(self, name: str, fn: Callable[..., T], *args: Any, counted: list[int] | None = None) -> T:
        """``fn(*args)``, its span recorded as phase ``name`` (``counted``: the nodes to count the
        work of, if not ``self.counted``)."""
        ports = counted if counted is not None else self.counted
        before = work_counters(ports) if ports else {}
        start = time.time()
        try:
            return fn(*args)
        finally:
            self.spans.append((name, start, time.time()))
            if ports:
                after = work_counters(ports)
                self.work[name] = {k: after[k] - before[k] for k in WORK_COUNTERS if after[k] != before[k]}

    def of(self, at: float) -> str:
        """The phase running at wall time ``at``, or the gap it fell in."""
        before = "start-up"
        for name, start, end in self.spans:
            if start <= at <= end:
                return name
            if at > end:
                before = f"after {name}"
        return before


STALL = re.compile(r"(n\d+).*loop stall (\d+) ms ending at ([\d.]+)")


def stall_report(data: Path, phases: Phases, keep: Path | None) -> None:
    """Per phase: the nodes' loop stalls (count, worst ms, per node) from their logs."""
    per: dict[str, list[tuple[str, int]]] = {}
    for log in sorted(data.glob("**/node.log")):
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, keep / f"{data.name}-{log.parent.name}.log")
        for line in log.read_text(errors="replace").splitlines():
            m = STALL.search(line)
            if m:
                per.setdefault(phases.of(float(m.group(3))), []).append((m.group(1), int(m.group(2))))
    for name, start, end in phases.spans:
        for label in (name, f"after {name}"):
            got = per.get(label, [])
            if got or label == name:
                nodes = {n: sum(1 for m, _ in got if m == n) for n in sorted({m for m, _ in got})}
                console.print(f"  {label:<40} {end - start if label == name else 0:6.1f} s  stalls {len(got):3d}"
                              f"  worst {max((ms for _, ms in got), default=0):4d} ms  {nodes}")
                if label == name and phases.work.get(name):
                    console.print(f"    {'':<38} work: {phases.work[name]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", "-n", type=int, default=60_000)
    parser.add_argument("--clients", "-c", type=int, default=48)
    parser.add_argument("--fsync", default="everysec", choices=("always", "everysec", "no"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: 6000 requests per test")
    parser.add_argument("--pipelines", default="1,16")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--levels", default="quorum,one",
                        help="the leaderless levels to run (a diagnostic run: --levels quorum --no-raft)")
    parser.add_argument("--no-raft", action="store_true", help="skip the raft cluster (no ratios)")
    parser.add_argument("--ratio-rounds", type=int, default=0,
                        help="then this many more rounds of QUORUM SET -P 1 and the Paxos write, "
                             "back to back, each round's ratio printed (on a VM whose speed drifts "
                             "the ratio of one round varies more than the figures' own noise)")
    parser.add_argument("--probe-ms", type=int, default=0,
                        help="start the nodes with REPLIKV_LOOP_PROBE_MS (log event-loop stalls over "
                             "this many ms) and report the stalls of each leaderless phase")
    parser.add_argument("--probe-stacks", action="store_true",
                        help="with --probe-ms: the nodes also log the main thread's stack in a stall "
                             "(REPLIKV_LOOP_PROBE_STACKS=1; a watchdog thread that itself costs some latency)")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the node logs here")
    args = parser.parse_args(argv)
    requests = 6_000 if args.quick else args.requests
    pipelines = [int(p) for p in args.pipelines.split(",")]
    ensure_redis_tools()
    console.print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
                  f"load average {load_average()}")
    console.print(f"command: redis-benchmark -t set,get -n {requests} -c {args.clients} -d 16 -r 10000 "
                  f"-P {{{args.pipelines}}}, split over the 3 nodes; --fsync {args.fsync}")
    root = Path(tempfile.mkdtemp(prefix="replikv-llbench-"))
    rows = ["| system | level | test | pipeline | ops/s | p50 ms | p99 ms | vs raft |",
            "|---|---|---|--:|--:|--:|--:|--:|"]
    figures: dict[tuple[str, str, str, int], tuple[float, float, float]] = {}
    ratios: list[float] = []  # --ratio-rounds
    try:
        for _ in range(0 if args.no_raft else 1):
            with replikv_up(root, "raft", args.fsync) as ports:
                for p in pipelines:
                    for test in ("SET", "GET"):
                        figures[("raft", "majority", test, p)] = bench_spread(ports, test, requests, args.clients, p)
                for test, figure in bench_cas(ports, requests // 4, args.clients).items():
                    figures[("raft", "majority", test, 1)] = figure
        if args.probe_ms:  # the leaderless nodes only (the phases below are the ones reported)
            os.environ["REPLIKV_LOOP_PROBE_MS"] = str(args.probe_ms)
            if args.probe_stacks:
                os.environ["REPLIKV_LOOP_PROBE_STACKS"] = "1"
        for level in args.levels.split(","):
            flags = ("--write-consistency", level, "--read-consistency", level)
            with replikv_up(root, "leaderless", args.fsync, extra=flags) as ports:
                phases = Phases(ports if args.probe_ms else None)
                for p in pipelines:
                    for test in ("SET", "GET"):
                        figures[("leaderless", level, test, p)] = phases.run(
                            f"{level} {test} -P {p}", bench_spread, ports, test, requests, args.clients, p)
                if level == "quorum":
                    for test, figure in phases.run(
                            "CAS and SET NX", bench_cas, ports, requests // 4, args.clients).items():
                        figures[("leaderless", "serial", test, 1)] = figure
                    for rnd in range(args.ratio_rounds):
                        qs = bench_spread(ports, "SET", requests, args.clients, 1)[0]
                        px = bench_cas(ports, requests // 4, args.clients, only="SET NX",
                                       fresh=f"fresh{rnd + 1}")["SET NX"][0]
                        ratios.append(px / qs)
                        console.print(f"round {rnd + 1}: QUORUM SET {qs:,.0f} ops/s, Paxos write {px:,.0f} "
                                      f"ops/s, ratio {px / qs:.4f}")
                    two = ports[:2]
                    before = phases.run("GET 3 up", bench_spread, two, "GET", requests // 2, args.clients, 1)
                    pid = int(redis.Redis(port=ports[2]).info("server")["process_id"])
                    os.kill(pid, signal.SIGSTOP)
                    try:
                        paused = phases.run("GET 1 paused", bench_spread, two, "GET", requests // 2, args.clients, 1,
                                            counted=two if args.probe_ms else None)
                    finally:
                        os.kill(pid, signal.SIGCONT)
                    figures[("leaderless", "quorum, 3 up", "GET", 1)] = before
                    figures[("leaderless", "quorum, 1 paused", "GET", 1)] = paused
            if args.probe_ms or args.keep_logs:
                console.print(f"loop stalls over {args.probe_ms} ms, leaderless {level}:")
                stall_report(root / f"leaderless-{args.fsync}-0-{len(flags)}-{ports[0]}", phases, args.keep_logs)
        for key, (ops, p50, p99) in figures.items():
            system, level, test, p = key
            ref = figures.get(("raft", "majority", test, p))
            ratio = f"{ops / ref[0]:.2f}" if ref and system != "raft" else ""
            rows.append(f"| {system} | {level} | {test} | {p} | {ops:,.0f} | {p50:.3f} | {p99:.3f} | {ratio} |")
            console.print(f"{system:<10} {level:<17} {test:<6} -P {p:<2} {ops:>10,.0f} ops/s  p50 {p50:.3f} ms  "
                          f"p99 {p99:.3f} ms  {ratio}")
        quorum_set = figures.get(("leaderless", "quorum", "SET", 1))
        for test, what in (("SET NX", "succeeding (SET NX on fresh keys)"), ("CAS", "failing (CAS x y)")):
            paxos = figures.get(("leaderless", "serial", test, 1))
            if quorum_set and paxos:
                console.print(f"Paxos {what} / QUORUM SET at -P 1: {paxos[0] / quorum_set[0]:.2f}")
        if ratios:
            console.print(f"Paxos write / QUORUM SET at -P 1 over {len(ratios)} more rounds: median "
                          f"{statistics.median(ratios):.4f}, lowest {min(ratios):.4f}, highest {max(ratios):.4f}")
        console.print(f"load average after: {load_average()}")
        if args.markdown:
            print("\n".join(rows))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
