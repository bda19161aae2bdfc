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

This is a script, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

from multileader_throughput import bench_spread, console, load_average, replikv_up, spread
from resp_throughput import ensure_redis_tools


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


def bench_cas(ports: list[int], requests: int, clients: int) -> dict[str, tuple[float, float, float]]:
    """The two CAS figures: every one failing (``CAS`` whose expected value the SET test's keys do
    not hold: a Paxos read) and nearly every one succeeding (``SET NX`` on fresh keys: a Paxos
    write)."""
    return {"CAS": spread_cmd(ports, requests, clients, 1, "CAS", "key:__rand_int__", "x", "y"),
            "SET NX": spread_cmd(ports, requests, clients, 1, "SET", "fresh:__rand_int__", "y", "NX",
                                 keyspace=FRESH_KEYSPACE)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", "-n", type=int, default=60_000)
    parser.add_argument("--clients", "-c", type=int, default=48)
    parser.add_argument("--fsync", default="everysec", choices=("always", "everysec", "no"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: 6000 requests per test")
    parser.add_argument("--pipelines", default="1,16")
    parser.add_argument("--markdown", action="store_true")
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
    try:
        with replikv_up(root, "raft", args.fsync) as ports:
            for p in pipelines:
                for test in ("SET", "GET"):
                    figures[("raft", "majority", test, p)] = bench_spread(ports, test, requests, args.clients, p)
            for test, figure in bench_cas(ports, requests // 4, args.clients).items():
                figures[("raft", "majority", test, 1)] = figure
        for level in ("quorum", "one"):
            flags = ("--write-consistency", level, "--read-consistency", level)
            with replikv_up(root, "leaderless", args.fsync, extra=flags) as ports:
                for p in pipelines:
                    for test in ("SET", "GET"):
                        figures[("leaderless", level, test, p)] = bench_spread(ports, test, requests, args.clients, p)
                if level == "quorum":
                    for test, figure in bench_cas(ports, requests // 4, args.clients).items():
                        figures[("leaderless", "serial", test, 1)] = figure
                    two = ports[:2]
                    before = bench_spread(two, "GET", requests // 2, args.clients, 1)
                    pid = int(redis.Redis(port=ports[2]).info("server")["process_id"])
                    os.kill(pid, signal.SIGSTOP)
                    try:
                        paused = bench_spread(two, "GET", requests // 2, args.clients, 1)
                    finally:
                        os.kill(pid, signal.SIGCONT)
                    figures[("leaderless", "quorum, 3 up", "GET", 1)] = before
                    figures[("leaderless", "quorum, 1 paused", "GET", 1)] = paused
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
        console.print(f"load average after: {load_average()}")
        if args.markdown:
            print("\n".join(rows))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
