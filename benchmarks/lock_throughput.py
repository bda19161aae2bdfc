#!/usr/bin/env python3
"""Lock pairs per second: replikv's LOCK + UNLOCK against etcd 3.4's lock API, in one run.

Both are 3-node Raft clusters on loopback with every write fsynced before it is
acknowledged, driven by the same client (this script: asyncio, one connection per
client, one request in flight per connection, 50 clients by default), each
client taking and releasing its own lock name in a loop (no contention: the
figure is the service's cost per pair, not waiting):

  * replikv: `replikv up --mode raft --nodes 3 --fsync always`; per pair
    ``LOCK <name> 60000`` then ``UNLOCK <name> <token>`` on the leader (two log
    entries).
  * etcd 3.4 (Debian etcd-server): per pair, as the issue states it, on its JSON
    gateway: ``/v3/lease/grant`` (TTL 60 s), ``/v3/lock/lock`` with that lease,
    ``/v3/lock/unlock`` with the key it returned (three Raft entries).

Prints pairs/s, p50 and p99 of a pair, the ratio replikv/etcd, and the client's
own CPU seconds per pair (the client is the same for both, and is not the
bottleneck when its CPU stays well below the run's duration). The issue's target:
replikv >= 3x etcd's pairs/s. A script, not a test: it asserts nothing.

    .venv/bin/python benchmarks/lock_throughput.py                # 10 s per system
    .venv/bin/python benchmarks/lock_throughput.py --duration 5 --clients 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from raft_throughput import b64, etcd_cluster, replikv_raft_cluster, tool_version  # noqa: E402

Pair = Callable[[int, int], Awaitable[None]]  # (client, pair number) -> one lock + unlock


# -- the two clients ---------------------------------------------------------------------------

class Resp:
    """A minimal RESP client: one command at a time, integer and simple replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def call(self, *args: bytes) -> bytes:
        self.writer.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        line = await self.reader.readline()
        if line[:1] == b"-":
            raise RuntimeError(line.decode().strip())
        return line[1:-2]


class Http:
    """A minimal HTTP/1.1 keep-alive client for etcd's JSON gateway (Content-Length or chunked)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, path: str, body: dict[str, object]) -> dict[str, object]:
        data = json.dumps(body).encode()
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data))
        status = await self.reader.readline()
        length, chunked = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            parts = []
            while (size := int((await self.reader.readline()).split(b";")[0], 16)) > 0:
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            await self.reader.readline()
            payload = b"".join(parts)
        else:
            payload = await self.reader.readexactly(length)
        if b" 200 " not in status:
            raise RuntimeError(f"{path}: {status.decode().strip()} {payload[:200]!r}")
        out: dict[str, object] = json.loads(payload or b"{}")
        return out


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def drive(port: int, clients: int, duration_s: float, make: Callable[..., object],
                pair: Callable[[object, str], Awaitable[None]]) -> tuple[int, list[float], float]:
    """``clients`` connections, each running ``pair`` on its own lock name until the time is up:
    (pairs, latencies in ms, wall seconds)."""
    conns = [make(*await _connect(port)) for _ in range(clients)]
    latencies: list[float] = []
    stop = time.monotonic() + duration_s

    async def loop(i: int, conn: object) -> None:
        name = f"bench-lock-{os.getpid()}-{i}"
        while time.monotonic() < stop:
            t = time.perf_counter()
            await pair(conn, name)
            latencies.append((time.perf_counter() - t) * 1000)

    started = time.monotonic()
    await asyncio.gather(*(loop(i, c) for i, c in enumerate(conns)))
    wall = time.monotonic() - started
    for c in conns:
        c.writer.close()  # type: ignore[attr-defined]
    return len(latencies), latencies, wall


async def replikv_pair(conn: object, name: str) -> None:
    assert isinstance(conn, Resp)
    token = await conn.call(b"LOCK", name.encode(), b"60000")
    if not token.isdigit():
        raise RuntimeError(f"LOCK {name} was not granted ({token!r})")
    if await conn.call(b"UNLOCK", name.encode(), token) != b"1":
        raise RuntimeError(f"UNLOCK {name} {token!r} released nothing")


async def etcd_pair(conn: object, name: str) -> None:
    assert isinstance(conn, Http)
    lease = await conn.post("/v3/lease/grant", {"TTL": 60})
    held = await conn.post("/v3/lock/lock", {"name": b64(name), "lease": lease["ID"]})
    await conn.post("/v3/lock/unlock", {"key": held["key"]})


def measure(system: str, port: int, clients: int, duration_s: float) -> dict[str, float]:
    make, pair = (Resp, replikv_pair) if system == "replikv" else (Http, etcd_pair)
    cpu = time.process_time()
    n, lat, wall = asyncio.run(drive(port, clients, duration_s, make, pair))
    cpu = time.process_time() - cpu
    lat.sort()
    return {"pairs/s": n / wall, "p50 ms": statistics.median(lat),
            "p99 ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))], "pairs": n,
            "client cpu s": cpu, "wall s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load per system")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--systems", default="replikv,etcd")
    args = ap.parse_args()
    systems = args.systems.split(",")
    if "etcd" in systems and not shutil.which("etcd"):
        sys.exit("etcd is not installed (Debian: apt-get install etcd-server); or run --systems replikv")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="replikv-lock-bench-") as tmp:
        root = Path(tmp)
        if "replikv" in systems:
            with replikv_raft_cluster(root) as leader:
                port = leader()
                measure("replikv", port, args.clients, min(2.0, args.duration))  # warm-up
                results["replikv"] = measure("replikv", leader(), args.clients, args.duration)
        if "etcd" in systems:
            with etcd_cluster(root) as port:
                measure("etcd", port, args.clients, min(2.0, args.duration))
                results["etcd"] = measure("etcd", port, args.clients, args.duration)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {args.clients} clients, "
          f"{args.duration:.0f} s per system; etcd: {tool_version(['etcd', '--version'])}")
    print(f"{'system':<8} {'pairs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'pairs':>7} {'client cpu s':>13}")
    for system, r in results.items():
        print(f"{system:<8} {r['pairs/s']:>9.0f} {r['p50 ms']:>8.1f} {r['p99 ms']:>8.1f} {r['pairs']:>7.0f} "
              f"{r['client cpu s']:>13.1f}")
    if "replikv" in results and "etcd" in results:
        ratio = results["replikv"]["pairs/s"] / results["etcd"]["pairs/s"]
        print(f"replikv / etcd: {ratio:.2f}x pairs/s (target >= 3x)")


if __name__ == "__main__":
    main()
