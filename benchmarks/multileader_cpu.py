#!/usr/bin/env python3
"""CPU per write of a 3-node cluster: what a write costs the nodes, whatever else runs.

``multileader_throughput.py`` measures ops/s, which on a shared 2-core machine moves with the
load of everything else by a factor of 2-4. This script counts CPU instead: it starts a 3-node
cluster (``--fsync everysec``), runs redis-benchmark (``-n`` requests per node, at every node
at once for multi-leader, 3 x ``-n`` at the leader for leader-follower, async acks), waits
until the nodes are idle (replication done), and divides the CPU seconds the three node
processes spent (user + system, /proc) by the writes. It also prints, per multi-leader node,
the ops it received twice (INFO ``replikv_ops_received_twice``), and each node's share
(leader-follower: the leader first). ``--mode leaderless`` (its
write and read consistency set to ``--level``) and ``--mode raft`` spread the clients over every
node as multi-leader does (issue 9's setting).

    .venv/bin/python benchmarks/multileader_cpu.py [--test set] [--pipeline 16] [-n 100000]
        [--mode multi-leader|leader-follower|leaderless|raft] [--level quorum|one|all|serial]
        [--command 'CAS key:__rand_int__ x y'] [--keyspace 10000]

A script, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from multileader_throughput import replikv_up


def node_pids(root: Path) -> list[int]:
    """The ``replikv node`` processes whose command line names a path under ``root``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b" node " in cmd and str(root).encode() in cmd:
            pids.append(int(entry))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_each(pids))


def cpu_each(pids: list[int]) -> list[float]:
    """CPU seconds (user + system) of each process."""
    out = []
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out.append((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))  # utime, stime
    return out


def version_vector(port: int) -> dict[str, int]:
    """A multi-leader node's version vector (INFO replication), {} for another mode."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # redis-py parses the value
        sock.sendall(b"INFO replication\r\n")
        text = b""
        while not text.endswith(b"\r\n\r\n") and not (text.count(b"\r\n") > 1 and text.endswith(b"\r\n")
                                                         and len(text) >= int(text[1:text.index(b"\r\n")]) + 4):
            text += sock.recv(65536)
    for line in text.split(b"\r\n"):
        if line.startswith(b"replikv_version_vector:"):
            return {o: int(n) for o, n in (x.split(":") for x in line.split(b":", 1)[1].decode().split(","))}
    return {}


def machine_busy() -> float:
    """CPU seconds every core of the machine spent not idle (/proc/stat), for every process."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def watch(runs: list[subprocess.Popen[str]], pids: list[int], sample: bool,
          ports: list[int]) -> tuple[list[str], str]:
    """The clients' outputs; with ``sample``, a summary of how the 2 cores were used while
    they ran: every 50 ms the CPU of each node and each redis-benchmark (/proc), and when each
    client finished. Printed: the cores busy (CPU seconds of nodes + clients per wall second)
    over the whole span and after the first client finished (the tail, when only the slower
    nodes' clients still send), and each node's share of the nodes' CPU in both parts; for
    multi-leader also, when the first client finished, how many of each node's own operations
    the slowest other node had applied (from the nodes' version vectors), and the commands
    each had served per operation of its own (the clients' writes an op held)."""
    if not sample:
        return [r.communicate()[0] for r in runs], ""
    procs = pids + [r.pid for r in runs]
    start = time.monotonic()
    samples: list[tuple[float, list[float]]] = []
    done: list[float] = [0.0] * len(runs)
    vvs: list[dict[str, int]] = []
    served: list[int] = []
    while True:
        now = time.monotonic() - start
        each = []
        for pid in procs:
            try:
                each.append(cpu_each([pid])[0])
            except (OSError, IndexError):
                each.append(samples[-1][1][len(each)] if samples else 0.0)  # exited: its last figure
        each.append(machine_busy())
        samples.append((now, each))
        for i, r in enumerate(runs):
            if not done[i] and r.poll() is not None:
                done[i] = now
                if not vvs and len(runs) > 1:
                    vvs = [version_vector(p) for p in ports]
                    served = [redis.Redis(port=p).info("stats")["total_commands_processed"] for p in ports]
        if all(done):
            break
        time.sleep(0.05)
    outs = [r.communicate()[0] for r in runs]
    first = min(done)

    def part(t0: float, t1: float) -> str:
        a = min(samples, key=lambda s: abs(s[0] - t0))[1]
        b = min(samples, key=lambda s: abs(s[0] - t1))[1]
        d = [y - x for x, y in zip(a, b, strict=True)]
        machine, d = d[-1], d[:-1]
        nodes = sum(d[:len(pids)])
        share = " / ".join(f"{100 * x / nodes:.0f}" for x in d[:len(pids)]) if nodes else "-"
        return (f"{t1 - t0:.2f} s: cores busy {sum(d) / (t1 - t0):.2f} (nodes {nodes / (t1 - t0):.2f}, "
                f"clients {sum(d[len(pids):]) / (t1 - t0):.2f}; the machine {machine / (t1 - t0):.2f}), node shares % {share}")
    span = max(done)
    tail = part(first, span) if span - first > 0.1 else "none"
    behind = ""
    if vvs and all(vvs):
        parsed = vvs
        own = [(o, v[o]) for v, o in zip(parsed, sorted(parsed[0]), strict=True)]  # nodes in port order
        behind = "\n  at the first finish, each node's own ops / applied by the slowest other: " + " / ".join(
            f"{n} / {min(v.get(o, 0) for v in parsed)}" for o, n in own) + \
            "\n  commands served per own op by then: " + " / ".join(f"{c / max(1, n):.0f}" for c, (_, n) in zip(served, own))
    return outs, (f"  clients done at {' / '.join(f'{t:.2f}' for t in done)} s\n  whole {part(0.0, span)}\n"
                  f"  tail {tail}{behind}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", default="multi-leader", choices=["multi-leader", "leader-follower", "leaderless", "raft"])
    ap.add_argument("--level", default="quorum", help="leaderless: the write and read consistency")
    ap.add_argument("--test", default="set")
    ap.add_argument("--command", default="", help="a command line for redis-benchmark instead of --test, e.g. "
                    "'CAS key:__rand_int__ x y' (counted as the writes)")
    ap.add_argument("--keyspace", type=int, default=10_000, help="redis-benchmark -r: __rand_int__'s range "
                    "(e.g. 100000000 with 'SET fresh:__rand_int__ y NX', so that each NX meets an absent key)")
    ap.add_argument("--pipeline", type=int, default=16)
    ap.add_argument("-n", type=int, default=100_000, help="requests per node (leader-follower: 3x at the leader)")
    ap.add_argument("--clients", type=int, default=48)
    ap.add_argument("--timeline", action="store_true",
                    help="also sample every process's CPU while the clients run (``watch``)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="replikv-mlcpu-"))
    try:
        extra = ("--write-consistency", args.level, "--read-consistency", args.level) \
            if args.mode == "leaderless" else ()
        with replikv_up(root, args.mode, "everysec", extra=extra) as ports:
            pids = [int(redis.Redis(port=p).info("server")["process_id"]) for p in ports]  # in port order
            assert sorted(pids) == sorted(node_pids(root)), pids
            if args.mode != "leader-follower":  # every node takes clients
                targets, per = ports, args.n
            else:
                targets = [p for p in ports if redis.Redis(port=p).info("replication").get("role") == "master"]
                per = 3 * args.n
            if args.mode == "leader-follower":  # the leader first
                leader = [pid for pid, p in zip(pids, ports, strict=True) if p in targets]
                pids = leader + [pid for pid in pids if pid not in leader]
            first = cpu_each(pids)
            before = sum(first)
            what = ["-e", *args.command.split()] if args.command else ["-t", args.test]  # -e: go on past errors
            runs = [subprocess.Popen(["redis-benchmark", "-p", str(p), "-n", str(per),
                                      "-c", str(args.clients // len(targets)), "-d", "16", "-r", str(args.keyspace),
                                      "-P", str(args.pipeline), "-q", *what],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                    for p in targets]
            outs, timeline = watch(runs, pids, args.timeline, ports)
            last = cpu_seconds(pids)
            while True:  # until the nodes are idle: every write applied everywhere
                time.sleep(0.5)
                now = cpu_seconds(pids)
                if now - last < 0.05:
                    break
                last = now
            writes = 3 * args.n
            rates = [float(m) for o in outs for m in re.findall(r"([\d.]+) requests per second", o)]
            rps = writes / max(per / r for r in rates)  # over the slowest client's span (spread's doc)
            twice = ""
            if args.mode == "multi-leader":
                twice = ", ops received twice per node " + " / ".join(
                    str(redis.Redis(port=p).info("replication").get("replikv_ops_received_twice")) for p in ports)
            level = f" {args.level.upper()}" if args.mode == "leaderless" else ""
            each = " / ".join(f"{1e6 * (b - a) / writes:.1f}" for a, b in zip(first, cpu_each(pids)))
            name = args.command or args.test.upper()
            print(f"{args.mode}{level} {name} -P {args.pipeline}: {1e6 * (now - before) / writes:.1f} us CPU "
                  f"per write (3 nodes: {each}), clients {rps:,.0f} ops/s{twice}; load average "
                  f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
            if timeline:
                print(timeline)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
