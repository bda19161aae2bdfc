#!/usr/bin/env python3
"""Where a forwarded write waits in a sharded raft cluster: each stage of its life, timed on
real node processes; prints figures, asserts nothing.

A 3-node ``--shards K`` cluster (default 3) is started with the stage hooks of
benchmarks/stage_trace/ (``sitecustomize``: methods wrapped, no source changed), then SETs from
clients that know nothing of slots (one redis-benchmark per node, -P 1, so two thirds of the
writes are forwarded to their group's leader). Every node records ``time.monotonic_ns()``, one
clock for all processes on the machine, at each stage; the events of the last two thirds of the
run are joined per forwarded write (the forwarding node A, its group's leader L, the group's
followers F):

    A forwards -> A's frame written -> L takes it -> L's drain proposes -> L persists ->
    L's drain ends (AppendEntries written) -> an F takes the AppendEntries -> F's drain ends
    (its acknowledgement written) -> L takes the first acknowledgement that covers the entry ->
    L applies it -> L sends FORWARD_REPLY -> L writes it -> A takes it -> A writes the
    client's reply

and each stage's p50 / p90 is printed, with every frame's time from its write to its delivery
(how long a frame waits to be read) and each node's CPU and run-queue wait per second over the
run (/proc/<pid>/stat, /proc/<pid>/task/*/schedstat: on a saturated machine a frame that waits
is waiting for its reader to get a core). The hooks cost a few microseconds per event: read
the stages, not the throughput, of a traced run.

    cd benchmarks && PYTHONPATH=<tree>/src:<tree> python sharded_stages.py [-c 144] [-n 30000] [--shards 3]
"""

from __future__ import annotations

import argparse
import bisect
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

import redis

from _support import wait_until
from multileader_throughput import bench_spread, load_average, replikv_up
from sharded_throughput import NodeUsage, all_groups_led

HERE = Path(__file__).resolve().parent
Event = list[str]


def load(directory: Path, nodes: list[str]) -> dict[str, dict[str, list[Event]]]:
    """node -> kind -> events (``[ns, kind, fields...]``, in time order)."""
    out: dict[str, dict[str, list[Event]]] = {}
    for n in nodes:
        kinds: dict[str, list[Event]] = collections.defaultdict(list)
        path = directory / f"{n}.ev"
        for line in path.read_text().splitlines() if path.exists() else []:
            ev = line.split()
            kinds[ev[1]].append(ev)
        out[n] = kinds
    return out


def first_after(times: list[int], t: int) -> int | None:
    i = bisect.bisect_left(times, t)
    return times[i] if i < len(times) else None


STAGES = (
    ("A: forwarded -> frame written", "fs", "tw"),
    ("A's frame written -> L takes it", "tw", "lr"),
    ("L: taken -> its drain starts (proposes)", "lr", "prop"),
    ("L: drain start -> entry persisted", "prop", "lp"),
    ("L: persisted -> drain end (AppendEntries written)", "lp", "sent"),
    ("L's AppendEntries written -> first F takes it", "sent", "ae"),
    ("F: AppendEntries taken -> its drain ends (ack written)", "ae", "acked"),
    ("F's ack written -> L takes the first covering ack", "acked", "ak"),
    ("L: ack taken -> entry applied", "ak", "la"),
    ("L: applied -> FORWARD_REPLY sent", "la", "lrs"),
    ("L: reply sent -> written", "lrs", "tw2"),
    ("L's reply written -> A takes it", "tw2", "fr"),
    ("A: reply taken -> client reply written", "fr", "fw"),
)


def join(ev: dict[str, dict[str, list[Event]]]) -> list[dict[str, int]]:
    """One dict of stage times per forwarded write whose every stage was recorded."""
    nodes = list(ev)
    t = lambda n, kind: [int(e[0]) for e in ev[n][kind]]  # noqa: E731
    d0 = {n: t(n, "d0") for n in nodes}
    d1 = {n: t(n, "d1") for n in nodes}
    fw: dict[tuple[str, str], list[int]] = collections.defaultdict(list)  # (node, connection) -> writes
    for n in nodes:
        for e in ev[n]["fw"]:
            fw[(n, e[2])].append(int(e[0]))
    tw = {n: {p: [int(e[0]) for e in ev[n]["tw"] if e[2] == p] for p in nodes} for n in nodes}
    taken = {(e[2], int(e[3])): (n, int(e[0]), int(e[4])) for n in nodes for e in ev[n]["lr"]}
    applied = {(n, int(e[4])): (int(e[0]), int(e[2]), int(e[3])) for n in nodes for e in ev[n]["la"]}
    replied = {(n, e[2], int(e[3])): int(e[0]) for n in nodes for e in ev[n]["lrs"]}
    reply_taken = {(n, int(e[2])): (int(e[0]), e[3]) for n in nodes for e in ev[n]["fr"]}
    persists: dict[tuple[str, int], list[tuple[int, int, int]]] = collections.defaultdict(list)
    appends: dict[tuple[str, int], list[tuple[int, int]]] = collections.defaultdict(list)
    acks: dict[tuple[str, int], list[tuple[int, int]]] = collections.defaultdict(list)
    for n in nodes:
        for e in ev[n]["lp"]:
            persists[(n, int(e[2]))].append((int(e[0]), int(e[3]), int(e[4])))
        for e in ev[n]["ae"]:
            appends[(n, int(e[2]))].append((int(e[0]), int(e[4])))
        for e in ev[n]["ak"]:
            acks[(n, int(e[2]))].append((int(e[0]), int(e[4])))
    forwards = sorted(((int(e[0]), n, int(e[2])) for n in nodes for e in ev[n]["fs"]))
    out = []
    for t_fs, a, rid in forwards[len(forwards) // 3:]:  # the first third: warm-up
        if (a, rid) not in taken or (a, rid) not in reply_taken:
            continue
        leader, t_lr, lrid = taken[(a, rid)]
        if (leader, lrid) not in applied:
            continue
        t_la, g, index = applied[(leader, lrid)]
        p = next((x for x in persists[(leader, g)] if x[1] <= index <= x[2] and x[0] >= t_lr), None)
        got = [next((x[0] for x in appends[(f, g)] if x[1] >= index and p and x[0] >= p[0]), None)
               for f in nodes if f != leader]
        followers = [(f, x) for f, x in zip([f for f in nodes if f != leader], got) if x is not None]
        ack = next((x[0] for x in acks[(leader, g)] if x[1] >= index and p and x[0] >= p[0]), None)
        t_lrs = replied.get((leader, a, rid))
        if p is None or not followers or ack is None or t_lrs is None:
            continue
        first_f, t_ae = min(followers, key=lambda fx: fx[1])
        s = {"fs": t_fs, "tw": first_after(tw[a][leader], t_fs), "lr": t_lr, "prop": first_after(d0[leader], t_lr),
             "lp": p[0], "sent": first_after(d1[leader], p[0]), "ae": t_ae, "acked": first_after(d1[first_f], t_ae),
             "ak": ack, "la": t_la, "lrs": t_lrs, "tw2": first_after(tw[leader][a], t_lrs),
             "fr": reply_taken[(a, rid)][0], "fw": first_after(fw[(a, reply_taken[(a, rid)][1])],
                                                               reply_taken[(a, rid)][0])}
        if all(v is not None for v in s.values()):
            out.append(s)  # type: ignore[arg-type]
    return out


def pct(values: list[int], q: float) -> float:
    values = sorted(values)
    return values[int(q * (len(values) - 1))] / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--clients", "-c", type=int, default=144)
    ap.add_argument("--requests", "-n", type=int, default=30_000)
    ap.add_argument("--fsync", default="everysec", choices=("always", "everysec", "no"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="replikv-stages-") as tmp:
        root = Path(tmp)
        trace = root / "trace"
        trace.mkdir()
        os.environ["REPLIKV_STAGE_TRACE"] = str(trace)  # the nodes inherit it, and the hooks' path
        os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE / "stage_trace"), os.environ.get("PYTHONPATH", "")])
        with replikv_up(root, "raft", args.fsync, extra=("--shards", str(args.shards)),
                        ready_when=all_groups_led(args.shards)) as ports:
            names = [str(redis.Redis(port=p).info("server")["run_id"]) for p in ports]
            with NodeUsage(ports) as usage:
                ops, p50, p99 = bench_spread(ports, "SET", args.requests, args.clients, 1)
            wanted = len(names)
            wait_until(lambda: sum(1 for n in names if (trace / f"{n}.ev").exists()) == wanted and time.monotonic()
                       > usage.t0 + usage.wall_s + 2.5, 30, "the nodes' last events on disk")
            ev = load(trace, names)
    print(f"--shards {args.shards}, plain clients, {args.clients} connections, -P 1, {args.requests} SETs: "
          f"{args.requests / usage.wall_s:,.0f} SET/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms (traced); node CPU "
          f"{usage.cpu_s / usage.wall_s:.2f} s per s, waiting for a core "
          f"{'/'.join(f'{w:.2f}' for w in usage.waits)} s per s per node; load {load_average()}")
    writes = join(ev)
    print(f"{len(writes)} forwarded writes joined\n")
    print("| stage | p50 ms | p90 ms |")
    print("|---|--:|--:|")
    for label, a, b in STAGES:
        values = [w[b] - w[a] for w in writes]
        print(f"| {label} | {pct(values, .5):.2f} | {pct(values, .9):.2f} |")
    total = [w["fw"] - w["fs"] for w in writes]
    print(f"| **forwarded -> client reply written** | {pct(total, .5):.2f} | {pct(total, .9):.2f} |")
    transit = []
    for x in names:
        for y in names:
            if x != y:
                rx = [int(e[0]) for e in ev[y]["rx"] if e[2] == x]
                writes_xy = [int(e[0]) for e in ev[x]["tw"] if e[2] == y]
                for t in writes_xy[len(writes_xy) // 3:]:
                    r = first_after(rx, t)
                    if r is not None:
                        transit.append(r - t)
    if transit:
        print(f"\nevery frame, written -> delivered: p50 {pct(transit, .5):.2f} ms, p90 {pct(transit, .9):.2f} ms "
              f"({len(transit)} writes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
