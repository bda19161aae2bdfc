"""Large values: throughput, memory, event-loop stalls and leadership under SETs of 4 KiB and 64 KiB.

Measures what issue 15 reports broken: with 64 KiB values the raft leader
stalled its loop for seconds on every snapshot and lost its leadership, and
the leader-follower leader restarted an endless full resync until the OOM
killer ended it. For each system (Redis master + 2 replicas as the
reference, replikv leader-follower, replikv raft) and value size it runs
``redis-benchmark -t set -c CLIENTS -r 10000 -d SIZE -n N`` (50 clients unless ``--clients``;
issue 15 also asks for 1,000 connections) and prints SET/s,
the ratio to Redis, the leader's peak RSS (sampled from /proc), and for
replikv the event-loop stalls (ticks more than 10 intervals late, raft),
leadership changes (raft term) and full resyncs (leader-follower: sent; raft: snapshots followers installed).

    python benchmarks/large_values.py [--requests 20000] [--sizes 4096,65536] [--systems redis,raft]
    python benchmarks/large_values.py --sizes 16 --clients 1000 --requests 200000
    python benchmarks/large_values.py --sizes 65536 --systems raft --requests 150000 --pause-follower 60,15

``--pause-follower AT,FOR`` stops one follower (SIGSTOP) AT seconds into the run for FOR seconds:
the leader compacts past it meanwhile, so it needs a full resync under load; the table then says
how many seconds after the run it had the leader's whole log ("caught up s"), or "no" if it had
not within ``CATCH_UP_TIMEOUT_S``.

Installs redis-server/redis-tools with apt when missing (as root).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import redis

from _support import Background, free_ports, log_tail, wait_until
from resp_throughput import ensure_redis_tools, redis_cluster, replicas_online, stop_process

START_TIMEOUT_S = 60.0
CATCH_UP_TIMEOUT_S = 600.0


def server_pid(port: int) -> int:
    return int(redis.Redis(port=port, socket_timeout=2).info("server")["process_id"])


class RssSampler(Background):
    """The peak VmRSS of one process, and the peak of its anonymous part (RssAnon: the heap,
    without file pages mapped and read, e.g. a snapshot file being verified or sent), sampled
    every 50 ms in a thread."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid, self.peak_kb, self.peak_anon_kb = pid, 0, 0

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            m = re.search(r"VmRSS:\s+(\d+) kB", text)
            if m:
                self.peak_kb = max(self.peak_kb, int(m.group(1)))
            m = re.search(r"RssAnon:\s+(\d+) kB", text)
            if m:
                self.peak_anon_kb = max(self.peak_anon_kb, int(m.group(1)))


def loop_schedstat(pid: int) -> tuple[int, int]:
    """The server's main (event-loop) thread: ns it ran on a CPU and ns it waited on a run
    queue, ready to run (/proc/<pid>/task/<pid>/schedstat); (0, 0) if unreadable."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            ran, waited, _ = f.read().split()
        return int(ran), int(waited)
    except (OSError, ValueError):
        return 0, 0


class PingProbe(Background):
    """A client's view of event-loop stalls: PING every 20 ms on a connection of its own;
    the slowest answer and how many took over 100 ms (issue 15's bound on a stall).

    With the server's ``pid``, each PING over 100 ms is split by what its event-loop thread
    did meanwhile (schedstat, read before and after every PING): ran on a CPU (work on the
    loop), waited for a CPU while ready (the machine's load: 2 cores shared by the nodes, the
    benchmark and any snapshot child), or neither (blocked in a system call on the loop, a
    page fault, or the GIL held by another thread); ``stall_ms`` sums each over those PINGs."""

    def __init__(self, port: int, pid: int = 0) -> None:
        super().__init__()
        self.port, self.pid, self.worst_ms, self.over_100ms = port, pid, 0.0, 0
        self.stall_ms = {"ran": 0.0, "ready": 0.0, "blocked": 0.0}
        # where the loop thread was, sampled every 5 ms while a PING has waited over 100 ms:
        # "<state> <wchan>" (/proc/<pid>/task/<pid>/stat and wchan: D = uninterruptible, a disk
        # wait; S = sleeping, e.g. futex_wait for the GIL; R = running or ready) -> samples
        self.where: dict[str, int] = {}
        self._sent = 0.0  # when the PING in flight was sent (0: none)
        self._watch = threading.Thread(target=self._watch_loop, daemon=True)

    def __enter__(self) -> "PingProbe":
        if self.pid:
            self._watch.start()
        super().__enter__()
        return self

    def _watch_loop(self) -> None:
        task = f"/proc/{self.pid}/task/{self.pid}"
        while not self._stop.wait(0.005):
            sent = self._sent
            if not sent or time.monotonic() - sent < 0.1:
                continue
            try:
                with open(f"{task}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                with open(f"{task}/wchan") as f:
                    wchan = f.read().strip() or "-"
            except OSError:
                return
            key = f"{state} {wchan}"
            self.where[key] = self.where.get(key, 0) + 1

    def _run(self) -> None:
        client = redis.Redis(port=self.port, socket_timeout=30)
        while not self._stop.wait(0.02):
            before = loop_schedstat(self.pid) if self.pid else (0, 0)
            t0 = self._sent = time.monotonic()
            try:
                client.ping()
            except (redis.RedisError, OSError):
                return
            self._sent = 0.0
            ms = (time.monotonic() - t0) * 1000
            self.worst_ms = max(self.worst_ms, ms)
            if ms > 100:
                self.over_100ms += 1
                if self.pid:
                    after = loop_schedstat(self.pid)
                    ran, ready = (after[0] - before[0]) / 1e6, (after[1] - before[1]) / 1e6
                    self.stall_ms["ran"] += ran
                    self.stall_ms["ready"] += ready
                    self.stall_ms["blocked"] += max(0.0, ms - ran - ready)


def follower_ports(leader_port: int) -> list[int]:
    """The client ports of the leader's followers (from INFO replication)."""
    rep = redis.Redis(port=leader_port, socket_timeout=5).info("replication")
    return [int(value["port"]) for key, value in rep.items() if key.startswith("slave") and isinstance(value, dict)]


def installed(ports: list[int]) -> int:
    """Snapshots the raft followers installed from the leader so far (INFO stats)."""
    return sum(int(redis.Redis(port=p, socket_timeout=5).info("stats").get("snapshots_installed", 0)) for p in ports)


@contextmanager
def replikv_cluster(root: Path, mode: str) -> Iterator[int]:
    """`replikv up` (3 nodes, async acks or majority, fsync everysec); yields the leader's port."""
    base, peer_base = free_ports(3)[0], free_ports(3)[0]
    data = root / f"replikv-{mode}"
    root.mkdir(parents=True, exist_ok=True)
    out_path = root / f"{data.name}-up.log"
    args = [sys.executable, "-m", "replikv", "up", "--mode", mode, "--nodes", "3", "--port", str(base),
            "--peer-port", str(peer_base), "--data-dir", str(data), "--fsync", "everysec",
            "--log-level", "info", "--quiet"]
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        def dead() -> str | None:
            return f"`replikv up` exited: {log_tail(out_path)}" if proc.poll() is not None else None

        def leader() -> int | None:
            for port in range(base, base + 3):
                try:
                    if redis.Redis(port=port, socket_timeout=1).info("replication")["role"] == "master":
                        return port
                except (redis.RedisError, OSError):
                    pass
            return None
        wait_until(lambda: leader() is not None and (mode != "leader-follower" or replicas_online(base, 2)),
                   START_TIMEOUT_S, f"a replikv {mode} leader", dead)
        port = leader()
        assert port is not None
        yield port
    finally:
        stop_process(proc)


def keep_logs(directory: Path) -> Path:
    """Copy the node logs of a failed run out of the temporary directory; returns where."""
    kept = Path(tempfile.mkdtemp(prefix="replikv-large-failed-"))
    for log in directory.rglob("*.log"):
        if log.name.startswith("wal-"):
            continue  # a WAL segment, not a log
        name = "-".join(log.relative_to(directory).parts)  # n1-node.log, n2-node.log, ...: one per node
        shutil.copy(log, kept / name)
    return kept


def run_set(port: int, size: int, requests: int, clients: int) -> float:
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "set", "-c", str(clients), "-r", "10000",
                          "-d", str(size), "-n", str(requests), "-q"],
                         capture_output=True, text=True, timeout=max(900, requests // 100))
    m = re.search(r"SET: ([\d.]+) requests per second", out.stdout)
    if not m:
        raise RuntimeError(f"redis-benchmark said: {out.stdout[-500:]} {out.stderr[-500:]}")
    return float(m.group(1))


class FollowerPause(Background):
    """SIGSTOP one follower ``at`` seconds into the run for ``length`` seconds, then SIGCONT."""

    def __init__(self, pid: int, at: float, length: float) -> None:
        super().__init__()
        self.pid, self.at, self.length = pid, at, length

    def _run(self) -> None:
        if self._stop.wait(self.at):
            return
        os.kill(self.pid, signal.SIGSTOP)
        try:
            self._stop.wait(self.length)
        finally:
            os.kill(self.pid, signal.SIGCONT)


def repl_offset(port: int, field: str) -> int:
    return int(redis.Redis(port=port, socket_timeout=5).info("replication").get(field, 0))


def catch_up_seconds(leader: int, follower: int) -> str:
    """Seconds until ``follower`` holds everything ``leader`` had logged when asked, or 'no'."""
    target, t0 = repl_offset(leader, "master_repl_offset"), time.monotonic()
    while time.monotonic() - t0 < CATCH_UP_TIMEOUT_S:
        try:
            if repl_offset(follower, "slave_repl_offset") >= target:
                return f"{time.monotonic() - t0:.1f}"
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.5)
    return "no"


def measure(port: int, size: int, requests: int, clients: int,
            pause: tuple[float, float] | None = None) -> dict[str, object]:
    client = redis.Redis(port=port, socket_timeout=5)
    before = client.info()
    ports = follower_ports(port)
    installed_before = installed(ports)
    followers = [RssSampler(server_pid(p)) for p in ports]
    for f in followers:
        f.__enter__()
    pauser = FollowerPause(server_pid(ports[0]), *pause) if pause and ports else None
    try:
        pid = int(before["process_id"])
        with RssSampler(pid) as rss, PingProbe(port, pid) as ping, pauser or nullcontext():
            ops = run_set(port, size, requests, clients)
    finally:
        for f in followers:
            f.__exit__()
    caught_up = catch_up_seconds(port, ports[0]) if pauser else ""
    after = redis.Redis(port=port, socket_timeout=5).info()
    keys = after.get("db0", {}).get("keys", 0) if isinstance(after.get("db0"), dict) else 0
    dataset_mb = int(keys) * size / 2**20  # the values alone: what RSS is held to (2x plus a constant)
    return {
        "ops": ops, "rss_mb": rss.peak_kb / 1024, "dataset_mb": dataset_mb,
        "follower_rss_mb": max((f.peak_kb for f in followers), default=0) / 1024,
        "anon_mb": rss.peak_anon_kb / 1024,
        "follower_anon_mb": max((f.peak_anon_kb for f in followers), default=0) / 1024,
        "ping_worst_ms": ping.worst_ms, "pings_over_100ms": ping.over_100ms,
        "stall_where": ", ".join(f"{k} {v}" for k, v in sorted(ping.where.items(), key=lambda kv: -kv[1])[:8]),
        "stall_split": "/".join(f"{ping.stall_ms[k] / 1000:.1f}" for k in ("ran", "ready", "blocked")),
        "holds": int(after.get("backpressure_holds", 0)) - int(before.get("backpressure_holds", 0)),
        "log_holds": int(after.get("backpressure_log_holds", 0)) - int(before.get("backpressure_log_holds", 0)),
        "held_s": (int(after.get("backpressure_ms", 0)) - int(before.get("backpressure_ms", 0))) / 1000,
        "stalls": int(after.get("tick_stalls", 0)) - int(before.get("tick_stalls", 0)),
        "term_changes": int(after.get("replikv_epoch", 0)) - int(before.get("replikv_epoch", 0))
        if "replikv_raft_role" in before else "",
        # leader-follower: full resyncs the leader sent; raft: snapshots its followers installed
        "full_resyncs": int(after.get("full_resyncs_sent", 0)) - int(before.get("full_resyncs_sent", 0))
        + installed(ports) - installed_before,
        "compactions_held": int(after.get("compactions_held", 0)) - int(before.get("compactions_held", 0)),
        "caught_up": caught_up,
        "still_leader": after.get("role") == "master",
        "bg_snapshots": int(after.get("replikv_snapshots_in_background", 0))
        - int(before.get("replikv_snapshots_in_background", 0)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--sizes", default="4096,65536")
    ap.add_argument("--clients", type=int, default=50, help="redis-benchmark connections (-c)")
    ap.add_argument("--systems", default="redis,leader-follower,raft",
                    help="which of redis, leader-follower, raft to run")
    ap.add_argument("--pause-follower", default="", metavar="AT,FOR",
                    help="SIGSTOP a follower AT s into the run for FOR s, then time its catch-up")
    args = ap.parse_args(argv)
    pause = None
    if args.pause_follower:
        at, length = (float(x) for x in args.pause_follower.split(","))
        pause = (at, length)
    ensure_redis_tools()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[tuple[str, int, dict[str, object]]] = []
    with tempfile.TemporaryDirectory(prefix="replikv-large-") as tmp:
        root = Path(tmp)
        systems = args.systems.split(",")
        for size in sizes:
            if "redis" in systems:
                with redis_cluster(root / f"redis-{size}", durable=False) as port:
                    rows.append(("redis master + 2 replicas", size,
                                 measure(port, size, args.requests, args.clients, pause)))
            for mode in (m for m in ("leader-follower", "raft") if m in systems):
                try:
                    with replikv_cluster(root / f"{mode}-{size}", mode) as port:
                        rows.append((f"replikv {mode}", size,
                                     measure(port, size, args.requests, args.clients, pause)))
                except Exception:
                    kept = keep_logs(root / f"{mode}-{size}")
                    print(f"# the {mode} run failed; its nodes' logs are kept in {kept}", file=sys.stderr)
                    raise
    print(f"# {platform.node()}: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
          f"redis-benchmark -t set -c {args.clients} -r 10000 -n {args.requests}")
    ref = {size: m["ops"] for name, size, m in rows if name.startswith("redis")}
    head = ("| system | value | SET/s | vs Redis | data set MB | leader peak RSS MB | follower peak RSS MB | "
            "leader peak anon MB | follower peak anon MB | "
            "worst PING ms | PINGs > 100 ms | their loop thread ran / ready / blocked s | loop stalls | term changes | full resyncs | background snapshots | "
            "writer holds | of which by --max-log-bytes | held s | compactions held | caught up s |")
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for name, size, m in rows:
        ratio = float(m["ops"]) / float(ref[size]) if ref.get(size) else 0.0
        shown = f"{size // 1024} KiB" if size >= 1024 else f"{size} B"
        print(f"| {name} | {shown} | {float(m['ops']):,.0f} | {ratio:.2f} | {float(m['dataset_mb']):.0f} | "
              f"{float(m['rss_mb']):.0f} | {float(m['follower_rss_mb']):.0f} | {float(m['anon_mb']):.0f} | "
              f"{float(m['follower_anon_mb']):.0f} | {float(m['ping_worst_ms']):.0f} | "
              f"{m['pings_over_100ms']} | {m['stall_split']} | {m['stalls']} | {m['term_changes']} | {m['full_resyncs']} | "
              f"{m['bg_snapshots']} | {m['holds']} | {m['log_holds']} | {float(m['held_s']):.1f} | {m['compactions_held']} | "
              f"{m['caught_up']} |")
    for name, size, m in rows:
        if m.get("stall_where"):
            print(f"- {name}, {size // 1024} KiB: where the loop thread was during PINGs over 100 ms "
                  f"(state wchan samples, every 5 ms): {m['stall_where']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
