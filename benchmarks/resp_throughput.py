#!/usr/bin/env python3
"""RESP throughput: replikv (leader + 2 followers) against Redis (master + 2 replicas).

In one run, on this machine, with the same client (redis-benchmark):

    redis-benchmark -t set,get -n 200000 -c 50 -d 16 -P 1     (and -P 16)

against
  * a Debian redis-server master with 2 replicas (loopback, --save ''), and
  * a replikv leader with 2 followers (--ack async), started by `replikv up`,

first without durability (Redis: no AOF; replikv: its default --fsync
everysec, as it always keeps a WAL), then with it (Redis: --appendonly yes
--appendfsync always on all three; replikv: --fsync always). Prints ops/s,
p50 and p99 (from redis-benchmark --csv) and the replikv/Redis ops/s ratio per
row. Everything it starts is stopped on the way out, whatever happens.

    .venv/bin/python benchmarks/resp_throughput.py            # the full run
    .venv/bin/python benchmarks/resp_throughput.py --quick    # a smoke run
    .venv/bin/python benchmarks/resp_throughput.py --markdown # also a table for BENCHMARKS.md

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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table

from _support import free_ports, log_tail, wait_until

console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
BENCH_TESTS = ("SET", "GET")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


@dataclass
class Row:
    system: str  # "redis" | "replikv"
    durability: str  # "off" | "fsync always"
    settings: str  # what that meant for this system
    test: str
    pipeline: int
    ops: float
    p50_ms: float
    p99_ms: float


# -- helpers ------------------------------------------------------------------------------

def ensure_redis_tools() -> None:
    missing = [t for t in ("redis-server", "redis-benchmark", "redis-cli") if not shutil.which(t)]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing {', '.join(missing)}; install redis-server and redis-tools "
                 "(apt-get install -y redis-server redis-tools)")
    console.print(f"installing redis-server and redis-tools (missing: {', '.join(missing)})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server", "redis-tools"],
                   check=True, env=env)


def info_replication(port: int, password: str | None = None) -> dict[str, str]:
    client = redis.Redis(port=port, password=password, socket_timeout=1.0,
                         socket_connect_timeout=1.0, decode_responses=True)
    client.set_response_callback("INFO", lambda response, **options: response)
    try:
        text = client.execute_command("INFO", "replication")
    finally:
        client.close()
    out = {}
    for line in str(text).splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and not key.startswith("#"):
            out[key] = value
    return out


def replicas_online(port: int, want: int, password: str | None = None) -> bool:
    try:
        info = info_replication(port, password)
    except (redis.RedisError, OSError):
        return False
    online = sum(1 for i in range(want) if "state=online" in info.get(f"slave{i}", ""))
    return info.get("role") == "master" and online >= want


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
                 timeout_s: float = STOP_TIMEOUT_S) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except ProcessLookupError:
        pass


# -- the systems under test -------------------------------------------------------------

@contextmanager
def redis_cluster(root: Path, durable: bool) -> Iterator[int]:
    """A redis-server master with 2 replicas; yields the master's port."""
    base = free_ports(3)[0]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(3):
            port = base + i
            data = root / f"redis-{'aof' if durable else 'mem'}-{port}"
            data.mkdir(parents=True)
            args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                    "--save", "", "--dir", str(data), "--daemonize", "no",
                    "--repl-diskless-sync-delay", "0", "--logfile", str(data / "redis.log")]
            args += (["--appendonly", "yes", "--appendfsync", "always"] if durable
                     else ["--appendonly", "no"])
            if i > 0:
                args += ["--replicaof", "127.0.0.1", str(base)]
            procs.append(subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))

        def dead() -> str | None:
            for p in procs:
                if p.poll() is not None:
                    return f"redis-server exited with code {p.returncode}"
            return None

        wait_until(lambda: replicas_online(base, 2), START_TIMEOUT_S,
                   "Redis master with 2 online replicas", dead)
        yield base
    finally:
        for p in procs:
            stop_process(p)


def replikv_available() -> str | None:
    """None if the replikv node runtime can be imported, else why not."""
    probe = subprocess.run([sys.executable, "-c", "import replikv.runtime.leader_follower"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"the node runtime does not import ({last})"
    return None


@contextmanager
def replikv_cluster(root: Path, durable: bool) -> Iterator[int]:
    """`replikv up` with a leader and 2 followers, async acks; yields the leader's port."""
    base = free_ports(3)[0]
    peer_base = free_ports(3)[0]
    data = root / f"replikv-{'always' if durable else 'everysec'}"
    out_path = root / f"{data.name}-up.log"
    args = [sys.executable, "-m", "replikv", "up", "--mode", "leader-follower", "--nodes", "3",
            "--port", str(base), "--peer-port", str(peer_base), "--data-dir", str(data),
            "--ack", "async", "--fsync", "always" if durable else "everysec",
            "--log-level", "warning", "--quiet"]
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        def dead() -> str | None:
            if proc.poll() is not None:
                return f"`replikv up` exited with code {proc.returncode}:\n{log_tail(out_path)}"
            return None

        wait_until(lambda: replicas_online(base, 2), START_TIMEOUT_S,
                   "replikv leader with 2 online followers", dead)
        yield base
    finally:
        stop_process(proc)


# -- running redis-benchmark ----------------------------------------------------------

def run_benchmark(port: int, requests: int, clients: int, pipeline: int) -> dict[str, tuple[float, float, float]]:
    """{test: (ops/s, p50 ms, p99 ms)} from redis-benchmark --csv."""
    args = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
            "-n", str(requests), "-c", str(clients), "-d", "16", "-P", str(pipeline), "--csv"]
    # generous, but a hung server must not hang the run
    timeout_s = 120 + requests / 1000
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed ({done.returncode}): {done.stderr.strip()}")
    results: dict[str, tuple[float, float, float]] = {}
    for record in csv.DictReader(io.StringIO(done.stdout)):
        test = record.get("test", "").upper()
        if test in BENCH_TESTS:
            results[test] = (float(record["rps"]), float(record["p50_latency_ms"]),
                             float(record["p99_latency_ms"]))
    missing = [t for t in BENCH_TESTS if t not in results]
    if missing:
        raise RuntimeError(f"redis-benchmark printed no result for {', '.join(missing)}:\n"
                           f"{done.stdout}\n{done.stderr}")
    return results


# -- reporting ------------------------------------------------------------------------------

def ratio_for(rows: list[Row], row: Row) -> float | None:
    if row.system != "replikv":
        return None
    for other in rows:
        if (other.system, other.durability, other.test, other.pipeline) == (
                "redis", row.durability, row.test, row.pipeline) and other.ops > 0:
            return row.ops / other.ops
    return None


def sort_key(row: Row) -> tuple[int, int, int, int]:
    return (0 if row.durability == "off" else 1, row.pipeline, BENCH_TESTS.index(row.test),
            0 if row.system == "redis" else 1)


def print_table(rows: list[Row], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for name, justify in (("system", "left"), ("durability", "left"), ("test", "left"),
                          ("pipeline", "right"), ("ops/s", "right"), ("p50 ms", "right"),
                          ("p99 ms", "right"), ("replikv/Redis", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in sorted(rows, key=sort_key):
        ratio = ratio_for(rows, row)
        shown = "" if ratio is None else f"[{'green' if ratio >= 1.0 else 'red'}]{ratio:.2f}[/]"
        table.add_row(row.system, row.settings, row.test, f"-P {row.pipeline}", f"{row.ops:,.0f}",
                      f"{row.p50_ms:.3f}", f"{row.p99_ms:.3f}", shown)
    console.print(table)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| system | durability | test | pipeline | ops/s | p50 ms | p99 ms | replikv/Redis |",
             "|---|---|---|--:|--:|--:|--:|--:|"]
    for row in sorted(rows, key=sort_key):
        ratio = ratio_for(rows, row)
        lines.append(f"| {row.system} | {row.settings} | {row.test} | {row.pipeline} | "
                     f"{row.ops:,.0f} | {row.p50_ms:.3f} | {row.p99_ms:.3f} | "
                     f"{'' if ratio is None else f'{ratio:.2f}'} |")
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------

SETTINGS = {
    ("redis", False): "off (no AOF)",
    ("redis", True): "appendfsync always",
    ("replikv", False): "fsync everysec",
    ("replikv", True): "fsync always",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", "-n", type=int, default=200_000,
                        help="requests per redis-benchmark test (default 200000)")
    parser.add_argument("--clients", "-c", type=int, default=50,
                        help="parallel connections (default 50)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 20000 requests per test")
    parser.add_argument("--systems", default="redis,replikv",
                        help="comma-separated subset of redis,replikv (default both)")
    parser.add_argument("--durability", default="off,always",
                        help="comma-separated subset of off,always (default both)")
    parser.add_argument("--pipelines", default="1,16", help="pipeline depths (default 1,16)")
    parser.add_argument("--markdown", action="store_true",
                        help="also print the results as a Markdown table")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary data directory (its path is printed)")
    args = parser.parse_args(argv)
    requests = 20_000 if args.quick and args.requests == 200_000 else args.requests
    if requests < 1 or args.clients < 1:
        parser.error("--requests and --clients must be positive")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    durabilities = [d.strip() for d in args.durability.split(",") if d.strip()]
    pipelines = [int(p) for p in args.pipelines.split(",") if p.strip()]
    if set(systems) - {"redis", "replikv"} or set(durabilities) - {"off", "always"}:
        parser.error("--systems takes redis,replikv; --durability takes off,always")

    ensure_redis_tools()
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                   text=True).stdout.strip()
    console.print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
                  f"{platform.python_version()}; {redis_version}")
    console.print(f"command: redis-benchmark -t set,get -n {requests} -c {args.clients} -d 16 "
                  f"-P {{{','.join(map(str, pipelines))}}} --csv")

    notes: list[str] = []
    if "replikv" in systems:
        why = replikv_available()
        if why:
            notes.append(f"replikv skipped: {why}")
            systems.remove("replikv")

    root = Path(tempfile.mkdtemp(prefix="replikv-bench-"))
    rows: list[Row] = []
    started = time.monotonic()
    try:
        for durability in durabilities:
            durable = durability == "always"
            for system in systems:
                cluster = redis_cluster if system == "redis" else replikv_cluster
                label = f"{system}, durability {durability}"
                console.print(f"[bold]{label}[/]: starting 3 processes ...")
                try:
                    with cluster(root, durable) as port:
                        for pipeline in pipelines:
                            results = run_benchmark(port, requests, args.clients, pipeline)
                            for test, (ops, p50, p99) in results.items():
                                rows.append(Row(system, "off" if not durable else "fsync always",
                                                SETTINGS[(system, durable)], test, pipeline,
                                                ops, p50, p99))
                                console.print(f"  {test:<3} -P {pipeline:<2} {ops:>12,.0f} ops/s  "
                                              f"p50 {p50:.3f} ms  p99 {p99:.3f} ms")
                except (RuntimeError, subprocess.TimeoutExpired, redis.RedisError) as e:
                    notes.append(f"{label} failed: {e}")
                    console.print(f"[red]{label} failed:[/] {e}")
    except KeyboardInterrupt:
        notes.append("interrupted")
    finally:
        if args.keep:
            console.print(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    console.print()
    if rows:
        print_table(rows, f"RESP throughput ({requests} requests, {args.clients} clients, "
                          f"16-byte values; {time.monotonic() - started:.0f}s)")
        if args.markdown:
            print(markdown_table(rows))
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    return 0 if rows and not any("failed" in n for n in notes) else 1


if __name__ == "__main__":
    sys.exit(main())
