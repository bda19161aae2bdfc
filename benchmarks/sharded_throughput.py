#!/usr/bin/env python3
"""Sharded raft (``--shards K``): throughput with 1, 3 and 9 groups on 3 nodes, and what idle
groups cost, in one run on this machine.

For each K (0 = the unsharded raft cluster, then 3 and 9 groups) and each pipeline depth: SET
from clients that know nothing of slots, one redis-benchmark per node at once (a command lands on
any node and is forwarded to its group's leader); the ratio is against the unsharded
cluster in the same run. The aggregate is the SETs over the wall time of the whole run, not the
sum of the three redis-benchmarks' own rates: with one group the leader's clients (no forwarding)
finish first, and a sum of rates measured over different spans overstated the unsharded
cluster by 4-17% (BENCHMARKS.md, session 21). Each run also reports the node processes' CPU per
SET (utime + stime from /proc) and how long each node waited for a core per second (its threads'
run-queue time, /proc/<pid>/task/*/schedstat): on a saturated 2-core machine a request that waits
is waiting for a core, not for a timer, when the nodes are runnable nearly all the time.

Every layout's cluster is up at once (an idle sharded cluster quiesces; an idle raft cluster
only heartbeats), and each run goes through the layouts back to back; ``--rounds N`` repeats
that N times, and the figures are the medians, the ratio the median of the rounds' ratios. The
unsharded cluster's -P 1 rate alone moved from 7,500 to 17,700 SET/s between runs of session 30
(its rounds per SET move with the timing), so one run's ratio says little.

With ``--clients cluster`` (or ``plain,cluster``), also cluster-aware clients:
``redis-benchmark --cluster`` (each command sent to its group's leader) against the
sharded clusters, and one redis-benchmark at the leader (no forwarding either) against the
unsharded one. Then a cluster with ``--idle-groups`` groups (default 1,000) is started,
left idle once every group has a leader, and each node's CPU is read from /proc over
``--idle-seconds``: what quiesced groups cost (issue 13's target: under 5% of a core per node).

    .venv/bin/python benchmarks/sharded_throughput.py [--quick] [--markdown]
    .venv/bin/python benchmarks/sharded_throughput.py --shards 0,3 --client-kinds plain,cluster \
        --rounds 5 --idle-groups 0       # issue 13's ratio, five rounds
    ... --clients 48,144 ...             # and with three times the connections

``--clients`` may list several counts: with 48 connections over 3 groups each leader serves 16,
a third of the unsharded leader's 48, so its rounds are a third the size (BENCHMARKS.md, session
23); the ratio against the connections shows where that stops mattering.

This is a script, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import redis

from _support import wait_until
from multileader_throughput import bench, bench_spread, load_average, replikv_up
from resp_throughput import ensure_redis_tools

TICKS = os.sysconf("SC_CLK_TCK")


def all_groups_led(shards: int):  # type: ignore[no-untyped-def]
    def ready(infos: list[dict[str, object]]) -> bool:
        if not shards:
            return sum(1 for i in infos if i.get("role") == "master") == 1
        # every group led by its preferred node (node g mod 3): no hand-back transfer left to drop writes
        return all(isinstance(infos[g % len(infos)].get(f"group{g}"), dict)
                   and infos[g % len(infos)][f"group{g}"].get("role") == "leader" for g in range(shards))
    return ready


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def run_queue_seconds(pid: int) -> float:
    """Seconds the process's threads spent runnable but not running (waiting for a core)."""
    total = 0
    for f in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(f.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass  # a thread that ended meanwhile
    return total / 1e9


class NodeUsage:
    """The node processes' CPU seconds and run-queue seconds over a run, and its wall time."""

    def __init__(self, ports: list[int]) -> None:
        self.pids = [int(redis.Redis(port=p).info("server")["process_id"]) for p in ports]

    def __enter__(self) -> "NodeUsage":
        self.cpu0 = sum(map(cpu_seconds, self.pids))
        self.waits0 = [run_queue_seconds(p) for p in self.pids]
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.monotonic() - self.t0
        self.cpu_s = sum(map(cpu_seconds, self.pids)) - self.cpu0
        self.waits = [(run_queue_seconds(p) - w) / self.wall_s for p, w in zip(self.pids, self.waits0)]


def bench_direct(ports: list[int], shards: int, requests: int, clients: int,
                 pipeline: int) -> tuple[float, float, float]:
    """Clients that send each command where it is served: ``redis-benchmark --cluster`` on a
    sharded cluster, all connections at the leader of an unsharded one."""
    if not shards:
        leader = next(p for p in ports if redis.Redis(port=p).info("replication")["role"] == "master")
        return bench(leader, "SET", requests, clients, pipeline)
    args = ["redis-benchmark", "--cluster", "-h", "127.0.0.1", "-p", str(ports[0]), "-t", "set", "-n",
            str(requests), "-c", str(clients), "-d", "16", "-r", "10000", "-P", str(pipeline), "--csv"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120 + requests / 1000)
    csv_text = done.stdout[done.stdout.find('"test"'):]  # after its list of the cluster's masters
    for record in csv.DictReader(io.StringIO(csv_text)):
        if record.get("test", "").upper() == "SET":
            return float(record["rps"]), float(record["p50_latency_ms"]), float(record["p99_latency_ms"])
    raise RuntimeError(f"redis-benchmark --cluster gave no SET result: {done.stdout} {done.stderr}")


def wal_fsyncs(ports: list[int]) -> int:
    """The WAL fsyncs of every node so far (INFO persistence; a sharded node's one node log)."""
    return sum(int(redis.Redis(port=p).info("persistence")["replikv_wal_fsyncs"]) for p in ports)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", "-n", type=int, default=150_000)
    ap.add_argument("--clients", "-c", default="48", help="connections, over all nodes; a list (48,96,192) "
                    "runs each: a group's rounds grow with the connections each leader serves")
    ap.add_argument("--client-kinds", default="plain", help="plain (any node, forwarded), cluster "
                    "(cluster-aware: straight to the leader), or both: plain,cluster")
    ap.add_argument("--fsync", default="everysec", choices=("always", "everysec", "no"))
    ap.add_argument("--shards", default="0,3,9")
    ap.add_argument("--pipelines", default="1,16")
    ap.add_argument("--idle-groups", type=int, default=1000)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=1, help="rounds of every run, each layout back to back; "
                    "the figures are the medians, the ratio the median of the rounds' ratios")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 15000 requests per test")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    requests = 15_000 if args.quick else args.requests
    ensure_redis_tools()
    print(f"machine: {platform.node()} {os.cpu_count()} cores, {platform.python_version()}; "
          f"load average {load_average()}")
    # a load: (connections, pipeline depth)
    loads = [(int(c), int(p)) for c in args.clients.split(",") for p in args.pipelines.split(",")]
    rows: list[tuple[str, int, tuple[int, int], float, float, float, float, float]] = []
    ratios: dict[tuple[str, int, tuple[int, int]], list[float]] = {}  # (kind, shards, load): each round's
    with tempfile.TemporaryDirectory(prefix="replikv-shard-bench-") as tmp, ExitStack() as clusters:
        root = Path(tmp)
        counts = [int(s) for s in args.shards.split(",")]
        up = {shards: clusters.enter_context(replikv_up(
            root, "raft", args.fsync, extra=("--shards", str(shards)) if shards else (),
            ready_when=all_groups_led(shards))) for shards in counts}
        for rnd in range(args.rounds):
            for kind in args.client_kinds.split(","):
                for load in loads:
                    clients, pipeline = load
                    this_round: dict[int, float] = {}
                    for shards in counts:  # back to back: the VM's drift hits every layout alike
                        ports = up[shards]
                        before = wal_fsyncs(ports)
                        with NodeUsage(ports) as usage:
                            if kind == "cluster":
                                rates, p50, p99 = bench_direct(ports, shards, requests, clients, pipeline)
                            else:
                                rates, p50, p99 = bench_spread(ports, "SET", requests, clients, pipeline)
                        ops = requests / usage.wall_s  # the aggregate (module doc), not ``rates``
                        per_set = (wal_fsyncs(ports) - before) / requests
                        cpu_us = usage.cpu_s / requests * 1e6
                        rows.append((kind, shards, load, ops, p50, p99, per_set, cpu_us))
                        this_round[shards] = ops
                        print(f"{'' if args.rounds == 1 else f'round {rnd + 1}: '}{kind} clients, shards "
                              f"{shards or 'none'} -c {clients} -P {pipeline}: {ops:,.0f} SET/s "
                              f"(from the clients' own reports: {rates:,.0f}) p50 {p50:.3f} ms p99 {p99:.3f} ms, "
                              f"{cpu_us:.1f} us node CPU per SET, each node waiting for a core "
                              f"{'/'.join(f'{w:.2f}' for w in usage.waits)} s per s, {per_set:.3f} fsyncs per SET "
                              f"(load {load_average()})", flush=True)
                    if 0 in this_round:  # each layout against the unsharded run of this round
                        for shards, ops in this_round.items():
                            ratios.setdefault((kind, shards, load), []).append(ops / this_round[0])
        clusters.close()  # before the idle-groups part, which reads CPU over a quiet machine
        print()
        print("| clients | connections | groups | pipeline | SET/s | p50 ms | p99 ms | vs unsharded "
              "| node CPU per SET (us) | vs unsharded | fsyncs per SET (3 nodes) |")
        print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for kind in args.client_kinds.split(","):
            for load in loads:
                for shards in counts:
                    got = [r for r in rows if r[:3] == (kind, shards, load)]
                    ops, p50, p99, per_set, cpu_us = (statistics.median(r[i] for r in got) for i in range(3, 8))
                    ref_cpu = statistics.median(r[7] for r in rows if r[:3] == (kind, 0, load)) \
                        if 0 in counts else None
                    ratio = f"{statistics.median(ratios[(kind, shards, load)]):.2f}" \
                        if (kind, shards, load) in ratios else ""
                    cpu_ratio = f"{cpu_us / ref_cpu:.2f}" if ref_cpu else ""
                    print(f"| {kind} | {load[0]} | {shards or '1 (unsharded)'} | {load[1]} | {ops:,.0f} | {p50:.3f} | "
                          f"{p99:.3f} | {ratio} | {cpu_us:.1f} | {cpu_ratio} | {per_set:.3f} |")
        if args.rounds > 1:
            print()
            for (kind, shards, (clients, pipeline)), got in ratios.items():
                if shards:
                    print(f"{kind} -c {clients} -P {pipeline}, {shards} groups / unsharded, per round: "
                          + ", ".join(f"{r:.2f}" for r in got))
        if args.idle_groups:
            extra = ("--shards", str(args.idle_groups))
            with replikv_up(root, "raft", args.fsync, extra=extra,
                            ready_when=all_groups_led(args.idle_groups)) as ports:
                clients = [redis.Redis(port=p) for p in ports]

                def quiet() -> bool:
                    infos = [c.info("replication") for c in clients]
                    return all(int(i["replikv_groups_quiesced"]) == int(i["replikv_groups_hosted"]) for i in infos)
                wait_until(quiet, 120, "every group to quiesce")
                pids = [int(c.info("server")["process_id"]) for c in clients]
                before = [cpu_seconds(pid) for pid in pids]
                t0 = time.monotonic()
                time.sleep(args.idle_seconds)
                span = time.monotonic() - t0
                used = [(cpu_seconds(pid) - b) / span * 100 for pid, b in zip(pids, before)]
                print()
                print(f"{args.idle_groups} idle groups on 3 nodes (every replica quiesced): CPU per node "
                      + ", ".join(f"{u:.2f}%" for u in used) + f" of a core over {span:.0f} s "
                      f"(load {load_average()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
