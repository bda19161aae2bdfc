#!/usr/bin/env python3
"""Cross-group MULTI/EXEC vs single-group MULTI/EXEC on a sharded raft cluster, in one run.

A 3-node cluster with 3 Raft groups (`replikv up --mode raft --shards 3`); ``--clients``
connections spread over the nodes (plain clients: a command lands on any node, which forwards
or coordinates). Each transaction is MULTI; INCRBY a 1; INCRBY b -1; EXEC over two accounts
picked at random from a pool of ``--accounts`` per group: for "single", both in one group (a
hash tag: today's one-entry path); for "cross", in two different groups (two-phase commit with a
transaction record, runtime/txn_service.py). Reports transactions per second, p50 and p99 of the
EXEC's latency, aborts (wait-die conflicts, retried by the client and counted), and the ratio
cross/single (issue 14's target: at least 0.3).

    .venv/bin/python benchmarks/txn_throughput.py [--seconds 20] [--clients 50] [--kinds single,cross]

This is a script, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import hiredis

from multileader_throughput import load_average, replikv_up
from sharded_throughput import all_groups_led

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from replikv.core.sharding import SlotMap, key_slot  # noqa: E402


def pools(shards: int, per_group: int) -> dict[int, list[bytes]]:
    table = SlotMap.even(shards).groups
    out: dict[int, list[bytes]] = {g: [] for g in range(shards)}
    i = 0
    while any(len(v) < per_group for v in out.values()):
        k = f"acct:{i}".encode()
        g = table[key_slot(k)]
        if len(out[g]) < per_group:
            out[g].append(k)
        i += 1
    return out


def command(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


async def client(port: int, kind: str, accounts: dict[int, list[bytes]], until: float, rng: random.Random,
                 lat: list[float], counts: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    parser = hiredis.Reader()
    groups = sorted(accounts)
    while time.monotonic() < until:
        if kind == "single":
            tag = rng.randrange(10**6)
            a, b = b"{%d}a" % tag, b"{%d}b" % tag
        else:
            g1, g2 = rng.sample(groups, 2)
            a, b = rng.choice(accounts[g1]), rng.choice(accounts[g2])
        t0 = time.perf_counter()
        writer.write(command(b"MULTI") + command(b"INCRBY", a, b"1") + command(b"INCRBY", b, b"-1")
                     + command(b"EXEC"))
        replies: list[object] = []
        while len(replies) < 4:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the node closed the connection")
            parser.feed(data)
            while (r := parser.gets()) is not False:
                replies.append(r)
        if isinstance(replies[3], hiredis.ReplyError):
            counts["aborted" if b"aborted" in str(replies[3]).encode() else "errors"] += 1
            continue
        lat.append(time.perf_counter() - t0)
        counts["done"] += 1
    writer.close()


async def run(ports: list[int], kind: str, clients: int, seconds: float,
              accounts: dict[int, list[bytes]]) -> tuple[float, float, float, dict[str, int]]:
    lat: list[float] = []
    counts = {"done": 0, "aborted": 0, "errors": 0}
    t0 = time.monotonic()
    until = t0 + seconds
    await asyncio.gather(*(client(ports[i % len(ports)], kind, accounts, until, random.Random(i), lat, counts)
                           for i in range(clients)))
    span = time.monotonic() - t0
    lat.sort()
    p50 = lat[len(lat) // 2] * 1000 if lat else 0.0
    p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else 0.0
    return counts["done"] / span, p50, p99, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", "-c", type=int, default=50)
    ap.add_argument("--accounts", type=int, default=10_000, help="accounts per group (cross)")
    ap.add_argument("--fsync", default="everysec", choices=("always", "everysec", "no"))
    ap.add_argument("--kinds", default="single,cross", help="which runs, of single and cross")
    args = ap.parse_args(argv)
    print(f"machine: {platform.node()} {os.cpu_count()} cores, {platform.python_version()}; "
          f"load average {load_average()}")
    accounts = pools(3, args.accounts)
    rows = []
    with tempfile.TemporaryDirectory(prefix="replikv-txn-bench-") as tmp:
        with replikv_up(Path(tmp), "raft", args.fsync, extra=("--shards", "3"), ready_when=all_groups_led(3)) as ports:
            for kind in args.kinds.split(","):
                asyncio.run(run(ports, kind, args.clients, 2.0, accounts))  # warm up
                tps, p50, p99, counts = asyncio.run(run(ports, kind, args.clients, args.seconds, accounts))
                rows.append((kind, tps, p50, p99, counts))
                print(f"{kind}: {tps:,.0f} txn/s p50 {p50:.2f} ms p99 {p99:.2f} ms {counts} (load {load_average()})",
                      flush=True)
    base = next((tps for kind, tps, *_ in rows if kind == "single"), 0.0)
    print()
    print(f"| MULTI/EXEC of 2 INCRBY, {args.clients} clients, fsync {args.fsync} | txn/s | p50 ms | p99 ms | "
          "aborted (retried) | vs single-group |")
    print("|---|--:|--:|--:|--:|--:|")
    for kind, tps, p50, p99, counts in rows:
        label = "single group (hash tag)" if kind == "single" else "two groups (2PC + record)"
        print(f"| {label} | {tps:,.0f} | {p50:.2f} | {p99:.2f} | {counts['aborted']} | {tps / base if base else 0:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
