#!/usr/bin/env python3
"""Multi-leader throughput: clients spread over 3 nodes that all take writes,
against the leader-follower leader, in one run, on this machine.

For each pipeline depth (-P 1 and -P 16) and each test (SET, INCR):

  * multi-leader: three redis-benchmark processes at once, one per node,
    each with a third of the connections; the figure is all their requests
    over the slowest one's span (``spread``; p50: the median of theirs, p99:
    the worst);
  * leader-follower: one redis-benchmark with all the connections at the
    leader (async acks: what the leader alone can take).

Both clusters use the same --fsync and are up at once; each test runs on the
leader-follower cluster, then at once on the multi-leader one (the idle
cluster's ticks cost both alike), and ``--rounds N`` repeats that N times:
the figures are the medians and the ratio the median of the N rounds' ratios
(this VM's speed drifts by ~20 % within minutes, and a -P 16 run of 150,000
requests lasts about a second). Replication lag under that load is measured
in a second pass of the same multi-leader runs (``--lag-requests`` each): a
probe writes a fresh key on n1 every 20 ms and times how long n2 takes to
show it, polling every 0.1 ms, p50/p99. The throughput figures come from the
first pass, with no probe: the probe's client and the GETs it sends take a
share of the 2 cores the leader-follower runs do not pay for (until session
30 it ran beside the throughput runs, and spun on GETs). Then the same
multi-leader cluster is started with 50 ms injected between every pair of
nodes (``--peer-delay-ms 50``, "regions" on one machine) and a raft cluster
with the same delay, and the latency of single writes (redis-benchmark -c 1
-P 1) is compared: a multi-leader write answers from the local log, a raft
write waits for a majority's round trip; the multi-leader cluster then takes
the spread load again, with the lag probe beside it (writes do not wait for
the delay; the lag is the delay plus the send interval).

    .venv/bin/python benchmarks/multileader_throughput.py            # the full run
    .venv/bin/python benchmarks/multileader_throughput.py --rounds 5 # issue 10's ratios, five rounds
    .venv/bin/python benchmarks/multileader_throughput.py --quick    # a smoke run
    .venv/bin/python benchmarks/multileader_throughput.py --markdown # also tables for BENCHMARKS.md

This is a script, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from rich.console import Console

from _support import Background, free_ports, log_tail, wait_until
from resp_throughput import ensure_redis_tools, stop_process

console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
TESTS = ("SET", "INCR")
START_TIMEOUT_S = 60.0


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextmanager
def replikv_up(root: Path, mode: str, fsync: str, delay_ms: int = 0,
               extra: tuple[str, ...] = (),
               ready_when: Callable[[list[dict[str, object]]], bool] | None = None) -> Iterator[list[int]]:
    """`replikv up` with 3 nodes of ``mode`` (``extra``: more flags); yields the client ports once
    every node serves (``ready_when``: a condition on the nodes' INFO replication instead of the
    mode's usual one)."""
    base, peer_base = free_ports(3)[0], free_ports(3)[0]
    data = root / f"{mode}-{fsync}-{delay_ms}-{len(extra)}-{base}"
    out_path = root / f"{data.name}-up.log"
    args = [sys.executable, "-m", "replikv", "up", "--mode", mode, "--nodes", "3", "--port", str(base),
            "--peer-port", str(peer_base), "--data-dir", str(data), "--fsync", fsync,
            "--log-level", "warning", "--quiet"]
    if mode == "leader-follower":
        args += ["--ack", "async"]
    if delay_ms:
        args += ["--peer-delay-ms", str(delay_ms)]
    args += list(extra)
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    ports = [base, base + 1, base + 2]
    try:
        def dead() -> str | None:
            if proc.poll() is not None:
                return f"`replikv up` exited with code {proc.returncode}:\n{log_tail(out_path)}"
            return None

        def ready() -> bool:
            try:
                roles = [redis.Redis(port=p, socket_timeout=1).info("replication") for p in ports]
            except (redis.RedisError, OSError):
                return False
            if ready_when is not None:
                return ready_when(roles)
            if mode in ("multi-leader", "leaderless"):  # every node takes writes: all peers connected
                return all(int(r.get("connected_slaves", 0)) >= 2 for r in roles)
            return sum(1 for r in roles if r.get("role") == "master") == 1 and all(
                r.get("role") == "master" or r.get("master_link_status") == "up" for r in roles)
        wait_until(ready, START_TIMEOUT_S, f"a 3-node {mode} cluster", dead)
        yield ports
    finally:
        stop_process(proc)


def leader_port(ports: list[int]) -> int:
    for p in ports:
        if redis.Redis(port=p).info("replication").get("role") == "master":
            return p
    raise RuntimeError("no leader")


def bench(port: int, test: str, requests: int, clients: int, pipeline: int) -> tuple[float, float, float]:
    """(ops/s, p50 ms, p99 ms) of one redis-benchmark test."""
    args = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", test.lower(), "-n", str(requests),
            "-c", str(clients), "-d", "16", "-r", "10000", "-P", str(pipeline), "--csv"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120 + requests / 1000)
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed: {done.stderr.strip()}")
    for record in csv.DictReader(io.StringIO(done.stdout)):
        if record.get("test", "").upper() == test:
            return float(record["rps"]), float(record["p50_latency_ms"]), float(record["p99_latency_ms"])
    raise RuntimeError(f"no {test} result in:\n{done.stdout}")


def bench_spread(ports: list[int], test: str, requests: int, clients: int,
                 pipeline: int) -> tuple[float, float, float]:
    """One redis-benchmark per node at once; (aggregate ops/s, median p50, worst p99) (``spread``)."""
    return spread(ports, requests, clients, lambda port, n, c: bench(port, test, n, c, pipeline))


def spread(ports: list[int], requests: int, clients: int,
           one: Callable[[int, int, int], tuple[float, float, float]]) -> tuple[float, float, float]:
    """``one(port, requests, clients)`` on every node at once, each with its share of the
    requests and connections; (aggregate ops/s, median p50, worst p99).

    The aggregate is every request over the span of the slowest client, all started together:
    not the sum of their own rates, each over its own span. When one finishes first (its node
    got more of the machine), the others run on with more of it, and a sum of rates measured
    over different spans overstated the spread layout against a single client (by 9-30 % in
    session 21's multi-leader -P 1 runs, whose three rates differed by up to 1.9x)."""
    results: list[tuple[float, float, float]] = []
    errors: list[Exception] = []

    def run(port: int) -> None:
        try:
            results.append(one(port, requests // len(ports), max(1, clients // len(ports))))
        except Exception as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(p,)) for p in ports]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(str(errors[0]))
    each = requests // len(ports)
    span_s = max(each / r[0] for r in results)
    return (each * len(ports) / span_s, statistics.median(r[1] for r in results), max(r[2] for r in results))


POLL_S = 0.0001  # between the probe's GETs: a busy loop of GETs would take a core's share from the nodes


class LagProbe(Background):
    """Every 20 ms: SET a fresh key on one node, time until another node shows it."""

    def __init__(self, src: int, dst: int) -> None:
        super().__init__()
        self.src, self.dst = redis.Redis(port=src), redis.Redis(port=dst)
        self.samples_ms: list[float] = []

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            key = f"probe:{i}"
            i += 1
            self.src.set(key, "x")
            start = time.perf_counter()
            while self.dst.get(key) is None:
                if time.perf_counter() - start > 10:
                    break
                time.sleep(POLL_S)
            self.samples_ms.append((time.perf_counter() - start) * 1000)
            self._stop.wait(0.02)

    def summary(self) -> str:
        if not self.samples_ms:
            return "no samples"
        s = sorted(self.samples_ms)
        return (f"replication lag n1->n2 p50 {s[len(s) // 2]:.2f} ms, p99 {s[int(len(s) * 0.99)]:.2f} ms "
                f"({len(s)} probes)")


def probed_spread(ports: list[int], requests: int, clients: int,
                  pipelines: list[int]) -> tuple[list[tuple[str, int, tuple[float, float, float]]], str]:
    """Every test's spread run with the lag probe (n1 -> n2) beside it: each run's (test,
    pipeline, figures), and the replication lag under that load."""
    with LagProbe(ports[0], ports[1]) as probe:
        got = [(test, p, bench_spread(ports, test, requests, clients, p)) for p in pipelines for test in TESTS]
    return got, probe.summary()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", "-n", type=int, default=150_000)
    parser.add_argument("--clients", "-c", type=int, default=48)
    parser.add_argument("--fsync", default="everysec", choices=("always", "everysec", "no"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: 15000 requests per test")
    parser.add_argument("--pipelines", default="1,16")
    parser.add_argument("--no-regions", action="store_true", help="skip the 50 ms injected-latency part")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of every test, each a leader-follower run then a multi-leader one; "
                             "the figures are the medians, the ratio the median of the rounds' ratios")
    parser.add_argument("--lag-requests", type=int, default=None,
                        help="requests per multi-leader run of the lag pass (default: a third of --requests)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    requests = 15_000 if args.quick else args.requests
    pipelines = [int(p) for p in args.pipelines.split(",")]
    ensure_redis_tools()
    console.print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
                  f"load average {load_average()}")
    console.print(f"command: redis-benchmark -t set,incr -n {requests} -c {args.clients} -d 16 -r 10000 "
                  f"-P {{{args.pipelines}}} (multi-leader: split over the 3 nodes); --fsync {args.fsync}")
    root = Path(tempfile.mkdtemp(prefix="replikv-mlbench-"))
    rows: list[str] = ["| system | test | pipeline | ops/s | p50 ms | p99 ms | ML / LF |",
                       "|---|---|--:|--:|--:|--:|--:|"]
    try:
        runs: dict[tuple[str, str, int], list[tuple[float, float, float]]] = {}
        ratios: dict[tuple[str, int], list[float]] = {}
        with replikv_up(root, "leader-follower", args.fsync) as lf_ports, \
                replikv_up(root, "multi-leader", args.fsync) as ports:
            leader = leader_port(lf_ports)
            for rnd in range(args.rounds):
                for p in pipelines:
                    for test in TESTS:  # each pair back to back: the VM's drift hits both alike
                        lf = bench(leader, test, requests, args.clients, p)
                        ml = bench_spread(ports, test, requests, args.clients, p)
                        runs.setdefault(("leader-follower", test, p), []).append(lf)
                        runs.setdefault(("multi-leader", test, p), []).append(ml)
                        ratios.setdefault((test, p), []).append(ml[0] / lf[0])
                        if args.rounds > 1:
                            console.print(f"round {rnd + 1}: {test:<4} -P {p:<2} ML / LF {ml[0]:,.0f} / "
                                          f"{lf[0]:,.0f} = {ml[0] / lf[0]:.2f}")
            # the lag pass: the same runs, shorter
            _, lag = probed_spread(ports, args.lag_requests or max(15_000, requests // 3), args.clients, pipelines)
        for p in pipelines:
            for test in TESTS:
                ratio = statistics.median(ratios[(test, p)])
                for system in ("leader-follower", "multi-leader"):
                    got = runs[(system, test, p)]
                    ops, p50, p99 = (statistics.median(r[i] for r in got) for i in range(3))
                    shown = f"{ratio:.2f}" if system == "multi-leader" else ""
                    rows.append(f"| {system} | {test} | {p} | {ops:,.0f} | {p50:.3f} | {p99:.3f} | {shown} |")
                    console.print(f"{system:<16} {test:<4} -P {p:<2} {ops:>10,.0f} ops/s  p50 {p50:.3f} ms  "
                                  f"p99 {p99:.3f} ms  {shown}")
        console.print(lag)
        if not args.no_regions:
            region_rows = ["| system (50 ms between nodes) | SET p50 ms | SET p99 ms | ops/s (1 client) |",
                           "|---|--:|--:|--:|"]
            n = max(200, requests // 100)
            for mode in ("multi-leader", "raft"):
                with replikv_up(root, mode, args.fsync, delay_ms=50) as ports:
                    port = ports[0] if mode == "multi-leader" else leader_port(ports)
                    # a raft write waits ~100 ms (a majority's round trip): 300 of them take 30 s
                    ops, p50, p99 = bench(port, "SET", n if mode == "multi-leader" else min(n, 300), 1, 1)
                    if mode == "multi-leader":  # the spread load too, and the lag under it
                        runs_50, lag_50 = probed_spread(ports, requests, args.clients, pipelines)
                        for test, p, got in runs_50:
                            console.print(f"50 ms between nodes: multi-leader {test:<4} -P {p:<2} "
                                          f"{got[0]:>10,.0f} ops/s  p50 {got[1]:.3f} ms  p99 {got[2]:.3f} ms")
                        console.print(f"50 ms between nodes, under that load: {lag_50}")
                region_rows.append(f"| {mode} | {p50:.3f} | {p99:.3f} | {ops:,.0f} |")
                console.print(f"50 ms between nodes: {mode:<13} SET p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
                              f"{ops:,.0f} ops/s (one client)")
            rows += ["", *region_rows]
        console.print(f"load average after: {load_average()}")
        if args.markdown:
            print("\n".join(rows))
            print(f"\n{lag}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
