#!/usr/bin/env python3
"""Where a sharded raft cluster's CPU per SET goes, function by function, against one group;
prints figures, asserts nothing.

For each layout of ``--shards`` (default ``0,3``: the unsharded cluster, then 3 groups) a 3-node
raft cluster is started with the hooks of benchmarks/cpu_split/ (``sitecustomize``: runtime
methods wrapped, no source changed), which add each call's thread CPU time to its function's
totals; after a warm-up, SETs are sent as sharded_throughput.py sends them (``plain``: one
redis-benchmark per node, so two thirds of the writes are forwarded to their group's leader;
``cluster``: ``redis-benchmark --cluster``, or every connection at the unsharded leader). Per
SET, summed over the three nodes: the calls and the self CPU time (a function's own, without
the wrapped functions it called, less the calibrated cost of their wrappers) of each wrapped function, the nodes' user and system CPU
(/proc/<pid>/stat), and the cluster's drains and Raft messages (INFO). The last column is the
difference between the last layout and the first, largest first: what the 3-group layout
spends per SET that one group does not. ``--one-group``: each sharded layout is also measured
with plain clients whose keys share one hash tag (every write in one group, two thirds of them
forwarded to its leader, as with one group), before the usual run: the sharded runtime's own
per-SET cost, apart from what three busy groups cost.

Thread CPU clocks count only the time a thread ran, so the split holds on a loaded machine
(py-spy counts a runnable thread waiting for a core as busy: BENCHMARKS.md, session 22). A
wrapped call costs ~1-2 us, measured by each node at start-up and taken off its caller's self
time and shown as its own row; the nodes' CPU per SET less that row is near what
sharded_throughput.py measures without the hooks.

    cd benchmarks && PYTHONPATH=<tree>/src:<tree> python sharded_cpu_split.py [-n 30000] [-c 48] \\
        [--shards 0,3] [--client-kind plain|cluster] [-P 1] [--one-group]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from multileader_throughput import bench_spread, load_average, replikv_up, spread
from resp_throughput import ensure_redis_tools
from sharded_throughput import TICKS, all_groups_led, bench_direct

HERE = Path(__file__).resolve().parent
DUMP_S = 0.6  # the hooks write their totals every 0.5 s
WRAPPERS = "(the wrappers' own cost)"


def functions(directory: Path, pids: list[int]) -> dict[str, list[int]]:
    """Every node's totals so far, summed: name -> [calls, inclusive ns, self ns]."""
    time.sleep(DUMP_S)
    out: dict[str, list[int]] = {}
    for pid in pids:
        totals = json.loads((directory / f"{pid}.json").read_text())
        overhead = totals.pop("(wrapper overhead ns)")[0]
        for name, (calls, inclusive, own, made) in totals.items():
            acc = out.setdefault(name, [0, 0, 0])
            acc[0] += calls
            acc[1] += inclusive
            acc[2] += own - made * overhead  # the wrappers of the calls it made, taken off
            if not name.startswith("gc "):
                wrappers = out.setdefault(WRAPPERS, [0, 0, 0])
                wrappers[2] += calls * overhead
    return out


def proc_cpu(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of the processes so far."""
    user = system = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11])
        system += int(fields[12])
    return user / TICKS, system / TICKS


def counters(ports: list[int]) -> dict[str, float]:
    wanted = ("drains", "messages_sent", "batches_sent", "peer_frames_in")
    out: dict[str, float] = {}
    for port in ports:
        for k, v in redis.Redis(port=port).info("stats").items():
            if isinstance(v, (int, float)) and any(w in k for w in wanted):
                out[k] = out.get(k, 0) + v
    return out


def bench_one_group(port: int, requests: int, clients: int, pipeline: int) -> tuple[float, float, float]:
    """redis-benchmark's SET with keys that share the hash tag ``{t}``: every key in one slot,
    so one group (``--one-group``); (SET/s over its own run, and no latencies: not used here)."""
    t0 = time.monotonic()
    subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", str(requests), "-c", str(clients),
                    "-r", "10000", "-P", str(pipeline), "--csv", "SET", "{t}key:__rand_int__", "v" * 16],
                   capture_output=True, check=True, timeout=120 + requests / 1000)
    return requests / (time.monotonic() - t0), 0.0, 0.0


def measure(root: Path, shards: int, requests: int, clients: int, kind: str, pipeline: int,
            one_group: bool = False) -> dict[str, object]:
    directory = root / f"split-{shards}-{int(one_group)}"
    directory.mkdir()
    os.environ["REPLIKV_CPU_SPLIT"] = str(directory)  # the nodes inherit it, and the hooks' path
    extra = ("--shards", str(shards)) if shards else ()
    with replikv_up(root, "raft", "everysec", extra=extra, ready_when=all_groups_led(shards)) as ports:
        if one_group:
            run = lambda n: spread(ports, n, clients, lambda p, k, c: bench_one_group(p, k, c, pipeline))  # noqa: E731
        elif kind == "cluster":
            run = lambda n: bench_direct(ports, shards, n, clients, pipeline)  # noqa: E731
        else:
            run = lambda n: bench_spread(ports, "SET", n, clients, pipeline)  # noqa: E731
        run(max(3000, requests // 10))  # warm-up: connections, caches, the groups' first rounds
        pids = [int(redis.Redis(port=p).info("server")["process_id"]) for p in ports]
        f0, c0, s0 = functions(directory, pids), proc_cpu(pids), counters(ports)
        t0 = time.monotonic()
        run(requests)
        wall = time.monotonic() - t0
        f1, c1, s1 = functions(directory, pids), proc_cpu(pids), counters(ports)
    per_set = {name: ((v[0] - f0.get(name, [0, 0, 0])[0]) / requests, (v[2] - f0.get(name, [0, 0, 0])[2]) / requests / 1e3)
               for name, v in f1.items()}
    return {"functions": per_set, "user_us": (c1[0] - c0[0]) / requests * 1e6,
            "system_us": (c1[1] - c0[1]) / requests * 1e6, "sets_per_s": requests / wall,
            "counters": {k: (v - s0.get(k, 0)) / requests for k, v in s1.items()}, "load": load_average()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", "-n", type=int, default=30_000)
    ap.add_argument("--clients", "-c", type=int, default=48)
    ap.add_argument("--shards", default="0,3")
    ap.add_argument("--client-kind", choices=("plain", "cluster"), default="plain")
    ap.add_argument("--pipeline", "-P", type=int, default=1)
    ap.add_argument("--one-group", action="store_true", help="plain clients whose keys all share one hash "
                    "tag: every write in one group, two thirds forwarded to its leader, as with one group; "
                    "the sharded layouts are measured both ways")
    args = ap.parse_args()
    ensure_redis_tools()
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE / "cpu_split"), os.environ.get("PYTHONPATH", "")])
    shards_list = [int(s) for s in args.shards.split(",")]
    # a layout: (shards, every key in one group); with --one-group each sharded layout twice
    layouts = [(s, one) for s in shards_list for one in ((True, False) if args.one_group and s else (False,))]
    results = {}
    with tempfile.TemporaryDirectory(prefix="replikv-cpu-split-") as tmp:
        for shards, one in layouts:
            results[(shards, one)] = measure(Path(tmp), shards, args.requests, args.clients, args.client_kind,
                                             args.pipeline, one)
    names = ["unsharded" if s == 0 else f"{s} groups{', one busy' if one else ''}" for s, one in layouts]
    print(f"{args.client_kind} clients, -P {args.pipeline}, {args.clients} connections, {args.requests} SETs; "
          "per SET, summed over the 3 nodes")
    for s, name in zip(layouts, names):
        r = results[s]
        counts = ", ".join(f"{k.replace('replikv_', '')} {v:.3f}" for k, v in sorted(r["counters"].items()))  # type: ignore[attr-defined]
        cpu = r["user_us"] + r["system_us"]  # type: ignore[operator]
        wrappers = r["functions"].get(WRAPPERS, (0.0, 0.0))[1]  # type: ignore[attr-defined]
        print(f"  {name}: {r['sets_per_s']:,.0f} SET/s, CPU {cpu:.1f} us (user {r['user_us']:.1f}, system "
              f"{r['system_us']:.1f}), {cpu - wrappers:.1f} us without the wrappers' cost; {counts}; load {r['load']}")
    print()
    print("| function | " + " | ".join(f"{n} calls | {n} self us" for n in names) + " | difference (us) |")
    print("|---|" + "--:|--:|" * len(names) + "--:|")
    every = sorted({n for s in layouts for n in results[s]["functions"]})  # type: ignore[attr-defined]
    rows = []
    for fn in every:
        cells = [results[s]["functions"].get(fn, (0.0, 0.0)) for s in layouts]  # type: ignore[attr-defined]
        diff = cells[-1][1] - cells[0][1] if len(cells) > 1 else 0.0
        rows.append((diff, fn, cells))
    rows.sort(key=lambda r: (-abs(r[0]), r[1]))
    totals = [0.0] * len(layouts)
    for diff, fn, cells in rows:
        if all(c[0] == 0 and c[1] == 0 for c in cells):
            continue
        for i, c in enumerate(cells):
            totals[i] += c[1]
        print(f"| {fn} | " + " | ".join(f"{c[0]:.2f} | {c[1]:.2f}" for c in cells) + f" | {diff:+.2f} |")
    print("| **wrapped, total** | " + " | ".join(f" | {t:.1f}" for t in totals)
          + (f" | {totals[-1] - totals[0]:+.1f} |" if len(totals) > 1 else " | |"))


if __name__ == "__main__":
    main()
