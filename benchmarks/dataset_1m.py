#!/usr/bin/env python3
"""A dataset of 1M keys: memory, restart and catch-up against Redis (issue 15, targets 3-5).

The same dataset (N string keys of 16 bytes with 16-byte values,
``k:%014d`` -> ``v:%014d``, loaded with MSET batches of 1,000 pipelined over
one connection) goes into a Redis master + 2 replicas and into a replikv
cluster of 3 nodes (``--fsync everysec``; leader-follower with async acks,
raft with majority writes), and the script measures, in one run:

  * target 3, memory: the RSS (/proc/<pid>/status VmRSS) of the
    master/leader and of one replica/follower once every node holds N keys
    and the RSS has settled, minus the same process's RSS when empty;
  * target 4, restart: Redis: SAVE on the master, kill -9 it, start
    redis-server on the RDB, time from exec until it answers DBSIZE == N
    (it answers -LOADING meanwhile). replikv: REPLIKV SNAPSHOT on the node,
    1% more keys written (a WAL tail past the snapshot), kill -9 the node
    (a follower, then the leader), start it again, time from exec until it
    answers DBSIZE == N + tail from its own state (read level eventual);
  * target 5, catch-up: Redis: a 4th, empty redis-server, REPLICAOF the
    master, time from exec until master_link_status is up and DBSIZE == N.
    replikv: kill -9 a follower, delete its data directory, start it again,
    time from exec until it holds every key (full resync / InstallSnapshot).

Every node is polled (no fixed sleeps). The load average is printed with each
figure: the machine has 2 cores and is shared.

    .venv/bin/python benchmarks/dataset_1m.py [--keys 1000000] [--modes leader-follower,raft]

A script, not a test: it asserts nothing about speed. Installs redis-server
with apt when missing (as root), like resp_throughput.py.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from _support import free_ports, log_tail, wait_until
from resp_throughput import ensure_redis_tools, replicas_online, stop_process

from replikv import modes
from replikv.config import ClusterConfig, NodeAddress, NodeOptions
from replikv.parent_death import child_env

BATCH = 1000  # keys per MSET
PIPELINE = 10  # MSETs per round trip
START_TIMEOUT_S = 60.0
WAIT_TIMEOUT_S = 900.0
POLL_S = 0.01
TARGETS = {"memory": 2.0, "restart": 3.0, "catch-up": 3.0}


def die_with_us() -> None:
    """In a forked redis-server before exec: SIGTERM when this script exits (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)


def seconds(samples: list[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in samples) + " s"


def load_average() -> float:
    return os.getloadavg()[0]


def key(i: int) -> bytes:
    return b"k:%014d" % i


def value(i: int) -> bytes:
    return b"v:%014d" % i


def rss_kb(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmRSS:\s+(\d+) kB", text)
    if not m:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return int(m.group(1))


def settled_rss_kb(pid: int, timeout_s: float = 30.0) -> int:
    """The RSS once it stops moving: three samples 0.5 s apart within 0.5% of each other
    (a node may still be freeing a batch, or a snapshot child may just have exited)."""
    samples: list[int] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        samples.append(rss_kb(pid))
        last = samples[-3:]
        if len(last) == 3 and max(last) - min(last) <= 0.005 * max(last):
            return last[-1]
        time.sleep(0.5)
    return samples[-1]


def load_keys(port: int, start: int, stop: int) -> float:
    """MSET keys start..stop-1 in batches of BATCH, PIPELINE batches per round trip; seconds taken."""
    client = redis.Redis(port=port, socket_timeout=120)
    t0 = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    queued = 0
    for lo in range(start, stop, BATCH):
        args: list[bytes] = []
        for i in range(lo, min(lo + BATCH, stop)):
            args += (key(i), value(i))
        pipe.execute_command("MSET", *args)
        queued += 1
        if queued == PIPELINE:
            pipe.execute()
            queued = 0
    if queued:
        pipe.execute()
    client.close()
    return time.perf_counter() - t0


def dbsize(port: int, local: bool) -> int | None:
    """DBSIZE on the node at ``port`` (from its own state with ``local``); None while it
    does not answer or is still loading."""
    try:
        # no retries: redis-py 8 retries a refused connection with a backoff of up to seconds,
        # which made a restart look ~0.5-1 s slower whenever a poll came before the node listened
        # (replikv listens once its data is loaded; Redis listens first and answers -LOADING)
        client = redis.Redis(port=port, socket_timeout=5, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
        try:
            if local:
                client.execute_command("CONSISTENCY", "READ", "eventual")
            return int(client.dbsize())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return None


def timed_until(t0: float, predicate: Callable[[], bool], what: str,
                alive: Callable[[], str | None] = lambda: None) -> float:
    wait_until(predicate, WAIT_TIMEOUT_S, what, alive, POLL_S)
    return time.perf_counter() - t0


# -- results ----------------------------------------------------------------------------------

@dataclass
class Figures:
    system: str
    mem_leader_mb: float = 0.0
    mem_follower_mb: float = 0.0
    used_leader_mb: float = 0.0  # the same, after INFO, one SCAN step and a snapshot on the node
    used_follower_mb: float = 0.0
    restart_s: dict[str, list[float]] = field(default_factory=dict)  # role -> seconds, each repeat
    catchup_s: list[float] = field(default_factory=list)
    load_s: float = 0.0
    loads: dict[str, float] = field(default_factory=dict)  # figure -> load average when measured
    notes: list[str] = field(default_factory=list)


# -- Redis ------------------------------------------------------------------------------------

class RedisServers:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, port: int, replicaof: int | None = None) -> subprocess.Popen[bytes]:
        data = self.root / f"redis-{port}"
        data.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(data), "--daemonize", "no",
                "--repl-diskless-sync-delay", "0", "--logfile", str(data / "redis.log")]
        if replicaof is not None:
            args += ["--replicaof", "127.0.0.1", str(replicaof)]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT, preexec_fn=die_with_us)
        self.procs[port] = proc
        return proc

    def dead(self) -> str | None:
        for port, p in self.procs.items():
            if p.poll() is not None:
                return f"redis-server on {port} exited with code {p.returncode}: " \
                       f"{log_tail(self.root / f'redis-{port}' / 'redis.log')}"
        return None

    def kill9(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait()

    def close(self) -> None:
        for p in self.procs.values():
            stop_process(p)
        self.procs.clear()


def run_redis(root: Path, keys: int, repeat: int) -> Figures:
    fig = Figures("Redis " + subprocess.run(["redis-server", "--version"], capture_output=True,
                                            text=True).stdout.split()[2].removeprefix("v="))
    servers = RedisServers(root)
    base = free_ports(4)[0]
    master, replica, newcomer = base, base + 1, base + 3
    try:
        servers.start(master)
        servers.start(replica, replicaof=master)
        servers.start(base + 2, replicaof=master)
        wait_until(lambda: replicas_online(master, 2), START_TIMEOUT_S, "Redis master with 2 online replicas",
                   servers.dead, 0.1)
        pids = {role: servers.procs[p].pid for role, p in (("leader", master), ("follower", replica))}
        empty = {role: settled_rss_kb(pid) for role, pid in pids.items()}
        fig.load_s = load_keys(master, 0, keys)
        for p in (master, replica, base + 2):
            wait_until(lambda: dbsize(p, False) == keys, WAIT_TIMEOUT_S, f"Redis {p} to hold {keys} keys",
                       servers.dead, 0.1)
        full = {role: settled_rss_kb(pid) for role, pid in pids.items()}
        fig.mem_leader_mb = (full["leader"] - empty["leader"]) / 1024
        fig.mem_follower_mb = (full["follower"] - empty["follower"]) / 1024
        fig.loads["memory"] = load_average()
        for p in (master, replica):
            client = redis.Redis(port=p, socket_timeout=300)
            client.info()
            client.scan(0, count=10)
            client.save()
        used = {role: settled_rss_kb(pid) for role, pid in pids.items()}
        fig.used_leader_mb = (used["leader"] - empty["leader"]) / 1024
        fig.used_follower_mb = (used["follower"] - empty["follower"]) / 1024
        fig.loads["memory used"] = load_average()

        # target 5: a 4th, empty server joins (full sync); again with its directory emptied
        def in_sync() -> bool:
            try:
                info = redis.Redis(port=newcomer, socket_timeout=5).info("replication")
            except (redis.RedisError, OSError):
                return False
            return info.get("master_link_status") == "up" and dbsize(newcomer, False) == keys
        for _ in range(repeat):
            if newcomer in servers.procs:
                servers.kill9(newcomer)
                shutil.rmtree(root / f"redis-{newcomer}")
            t0 = time.perf_counter()
            servers.start(newcomer)
            wait_until(lambda: dbsize(newcomer, False) is not None, WAIT_TIMEOUT_S,
                       "the 4th redis-server to answer", servers.dead, 0.002)
            redis.Redis(port=newcomer).execute_command("REPLICAOF", "127.0.0.1", str(master))
            fig.catchup_s.append(timed_until(t0, in_sync, "the 4th redis-server in sync", servers.dead))
        fig.loads["catch-up"] = load_average()

        # target 4: restart the master from its RDB
        redis.Redis(port=master, socket_timeout=300).save()
        for _ in range(repeat):
            servers.kill9(master)
            t0 = time.perf_counter()
            servers.start(master)
            fig.restart_s.setdefault("leader", []).append(timed_until(
                t0, lambda: dbsize(master, False) == keys, "the restarted Redis master to hold every key",
                servers.dead))
        fig.loads["restart leader"] = load_average()
        rdb = root / f"redis-{master}" / "dump.rdb"
        fig.notes.append(f"RDB {rdb.stat().st_size / 1e6:.1f} MB")
    finally:
        servers.close()
    return fig


# -- replikv ----------------------------------------------------------------------------------

def node_env(root: Path) -> dict[str, str]:
    """A node's environment: it exits with this script, and it caches its bytecode (under
    ``root``, as an installed package has its .pyc files) even where PYTHONDONTWRITEBYTECODE
    is set, so a restart is not timed compiling every module again."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return child_env({**env, "PYTHONUNBUFFERED": "1", "PYTHONPYCACHEPREFIX": str(root.parent / "pycache")})


class ReplikvNodes:
    """Three `python -m replikv node` processes of one cluster, each one restartable."""

    def __init__(self, root: Path, mode: str) -> None:
        ports = free_ports(6)
        self.root = root
        nodes = {f"n{i + 1}": NodeAddress(id=f"n{i + 1}", host="127.0.0.1", port=ports[2 * i],
                                          peer_port=ports[2 * i + 1], data_dir=str(root / f"n{i + 1}"))
                 for i in range(3)}
        options = NodeOptions(fsync="everysec", log_level=os.environ.get("DATASET_LOG_LEVEL", "warning"))
        self.config = ClusterConfig(mode=mode, secret="dataset-benchmark", initial_leader="n1",
                                    nodes=nodes, options=options)
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / "cluster.toml"
        self.config.save(self.path)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def port(self, node_id: str) -> int:
        return self.config.nodes[node_id].port

    def start(self, node_id: str) -> subprocess.Popen[bytes]:
        with open(self.root / f"{node_id}.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "replikv", "node", "--config", str(self.path),
                                     "--id", node_id], stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT,
                                    env=node_env(self.root))
        self.procs[node_id] = proc
        return proc

    def dead(self) -> str | None:
        for node_id, p in self.procs.items():
            if p.poll() is not None:
                return f"{node_id} exited with code {p.returncode}: {log_tail(self.root / f'{node_id}.log')}"
        return None

    def kill9(self, node_id: str) -> None:
        proc = self.procs.pop(node_id)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def close(self) -> None:
        for p in self.procs.values():
            stop_process(p)
        self.procs.clear()

    def replication(self, node_id: str) -> dict[str, object] | None:
        try:
            return redis.Redis(port=self.port(node_id), socket_timeout=2).info("replication")
        except (redis.RedisError, OSError):
            return None

    def leader(self) -> str | None:
        """The one node that says it is master, once every other node's link to it is up."""
        infos = {n: self.replication(n) for n in self.procs}
        if any(i is None for i in infos.values()):
            return None
        masters = [n for n, i in infos.items() if i and i.get("role") == "master"]
        if len(masters) != 1:
            return None
        if not all(i and (i.get("role") == "master" or i.get("master_link_status") == "up")
                   for i in infos.values()):
            return None
        return masters[0]

    def wait_leader(self) -> str:
        found: list[str] = []

        def ready() -> bool:
            leader = self.leader()
            if leader:
                found.append(leader)
            return leader is not None
        wait_until(ready, START_TIMEOUT_S, f"a {self.config.mode} leader with 2 followers", self.dead, 0.1)
        return found[-1]

    def wait_holds(self, node_id: str, n: int) -> None:
        wait_until(lambda: dbsize(self.port(node_id), True) == n, WAIT_TIMEOUT_S, f"{node_id} to hold {n} keys",
                   self.dead, 0.05)

    def restart_timed(self, node_id: str, n: int, wipe: bool = False) -> tuple[float, float]:
        """kill -9 ``node_id`` (deleting its data with ``wipe``), start it again; (seconds from exec
        until it answers anything, seconds from exec until it holds ``n`` keys)."""
        self.kill9(node_id)
        if wipe:
            shutil.rmtree(self.config.nodes[node_id].data_dir)
        port = self.port(node_id)
        t0 = time.perf_counter()
        self.start(node_id)
        up = timed_until(t0, lambda: dbsize(port, True) is not None, f"{node_id} to answer", self.dead)
        total = timed_until(t0, lambda: dbsize(port, True) == n, f"{node_id} to hold {n} keys", self.dead)
        return up, total


    def add_member(self, leader: str) -> str:
        """A 4th node in cluster.toml, added to the membership as a learner; its id."""
        new_id = f"n{len(self.config.nodes) + 1}"
        port, peer_port = free_ports(2)
        if not self.config.bootstrap:
            self.config.bootstrap = list(self.config.nodes)
        self.config.nodes[new_id] = NodeAddress(id=new_id, host="127.0.0.1", port=port, peer_port=peer_port,
                                                data_dir=str(self.root / new_id))
        self.config.save(self.path)
        redis.Redis(port=self.port(leader), socket_timeout=30).execute_command("REPLIKV", "CLUSTER", "ADD", new_id)
        return new_id


def wal_bytes(data_dir: str) -> tuple[int, int]:
    """(bytes of snapshot files, bytes of everything else) under a node's data directory."""
    snap = other = 0
    for p in Path(data_dir).rglob("*"):
        if p.is_file():
            if "snap" in p.name:
                snap += p.stat().st_size
            else:
                other += p.stat().st_size
    return snap, other


def run_replikv(root: Path, mode: str, keys: int, roles: list[str], repeat: int) -> Figures:
    fig = Figures(f"replikv {mode}")
    nodes = ReplikvNodes(root, mode)
    tail = max(1, keys // 100)
    try:
        for node_id in nodes.config.nodes:
            nodes.start(node_id)
        leader = nodes.wait_leader()
        follower = next(n for n in nodes.config.nodes if n != leader)
        pids = {"leader": nodes.procs[leader].pid, "follower": nodes.procs[follower].pid}
        empty = {role: settled_rss_kb(pid) for role, pid in pids.items()}
        fig.load_s = load_keys(nodes.port(leader), 0, keys)
        for node_id in nodes.config.nodes:
            nodes.wait_holds(node_id, keys)
        full = {role: settled_rss_kb(pid) for role, pid in pids.items()}
        fig.mem_leader_mb = (full["leader"] - empty["leader"]) / 1024
        fig.mem_follower_mb = (full["follower"] - empty["follower"]) / 1024
        fig.loads["memory"] = load_average()
        for node_id in (leader, follower):
            client = redis.Redis(port=nodes.port(node_id), socket_timeout=300)
            client.info()
            client.scan(0, count=10)
            client.execute_command("REPLIKV", "SNAPSHOT")
        used = {role: settled_rss_kb(pid) for role, pid in pids.items()}
        fig.used_leader_mb = (used["leader"] - empty["leader"]) / 1024
        fig.used_follower_mb = (used["follower"] - empty["follower"]) / 1024
        fig.loads["memory used"] = load_average()

        # target 4: snapshot, a WAL tail of 1% more keys, kill -9, restart
        total = keys
        for role in roles:
            for _ in range(repeat):
                victim = leader if role == "leader" else follower
                redis.Redis(port=nodes.port(victim), socket_timeout=300).execute_command("REPLIKV", "SNAPSHOT")
                load_keys(nodes.port(leader), total, total + tail)
                total += tail
                for node_id in nodes.config.nodes:
                    nodes.wait_holds(node_id, total)
                snap, rest = wal_bytes(nodes.config.nodes[victim].data_dir)
                up, seconds = nodes.restart_timed(victim, total)
                fig.restart_s.setdefault(role, []).append(seconds)
                fig.notes.append(f"restart {role} {victim}: answers after {up:.2f}s, {total} keys; its data dir "
                                 f"held {snap / 1e6:.1f} MB of snapshot, {rest / 1e6:.1f} MB of other files (WAL)")
                leader = nodes.wait_leader()
                follower = next(n for n in nodes.config.nodes if n != leader)
            fig.loads[f"restart {role}"] = load_average()

        # target 5: a new follower joins with no data
        for _ in range(repeat):
            if "CLUSTER" in modes.get(mode).admin:
                # raft: a voter that lost its disk must not come back under its old id (its vote and
                # its log are gone: Raft's model, thesis §4); a new node joins as a learner instead
                newcomer = nodes.add_member(leader)
                t0 = time.perf_counter()
                nodes.start(newcomer)
                port = nodes.port(newcomer)
                up = timed_until(t0, lambda: dbsize(port, True) is not None, f"{newcomer} to answer", nodes.dead)
                seconds = timed_until(t0, lambda: dbsize(port, True) == total,
                                      f"{newcomer} to hold {total} keys", nodes.dead)
                how = f"a new node {newcomer} added as a learner (REPLIKV CLUSTER ADD)"
            else:
                up, seconds = nodes.restart_timed(follower, total, wipe=True)
                how = f"follower {follower} restarted with its data directory deleted"
            fig.catchup_s.append(seconds)
            fig.notes.append(f"catch-up: {how}; answers after {up:.2f}s; {total} keys")
        fig.loads["catch-up"] = load_average()
    except Exception:
        for node_id in nodes.config.nodes:
            print(f"--- {node_id}.log\n{log_tail(root / f'{node_id}.log', 30)}", file=sys.stderr)
        raise
    finally:
        nodes.close()
    return fig


# -- report -----------------------------------------------------------------------------------

def table(ref: Figures, fig: Figures) -> list[str]:
    out = [f"**{fig.system}** against {ref.system} (MSET load of the dataset: {fig.load_s:.1f}s, "
           f"Redis {ref.load_s:.1f}s)",
           "",
           "| target | Redis | replikv | ratio | target ratio | met? | load avg |",
           "|---|--:|--:|--:|--:|---|--:|"]

    def row(name: str, r: float, v: float, unit: str, target: float, load: float) -> None:
        ratio = v / r if r else float("inf")
        out.append(f"| {name} | {r:.2f} {unit} | {v:.2f} {unit} | {ratio:.2f} | ≤ {target:g} | "
                   f"{'yes' if ratio <= target else 'no'} | {load:.2f} |")

    row("3. memory, leader (RSS full - empty)", ref.mem_leader_mb, fig.mem_leader_mb, "MB",
        TARGETS["memory"], fig.loads["memory"])
    row("3. memory, follower (RSS full - empty)", ref.mem_follower_mb, fig.mem_follower_mb, "MB",
        TARGETS["memory"], fig.loads["memory"])
    row("3. memory, leader, after INFO, SCAN 0 and SAVE / REPLIKV SNAPSHOT", ref.used_leader_mb,
        fig.used_leader_mb, "MB", TARGETS["memory"], fig.loads["memory used"])
    row("3. memory, follower, after the same", ref.used_follower_mb, fig.used_follower_mb, "MB",
        TARGETS["memory"], fig.loads["memory used"])
    for role, seconds in fig.restart_s.items():
        row(f"4. restart, {role} (exec -> DBSIZE == all; median of {len(seconds)})",
            statistics.median(ref.restart_s["leader"]), statistics.median(seconds), "s",
            TARGETS["restart"], fig.loads[f"restart {role}"])
    row(f"5. catch-up, empty follower (exec -> all keys; median of {len(fig.catchup_s)})",
        statistics.median(ref.catchup_s), statistics.median(fig.catchup_s), "s",
        TARGETS["catch-up"], fig.loads["catch-up"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--modes", default="leader-follower,raft")
    ap.add_argument("--restart", default="follower,leader", help="which roles to kill -9 and restart")
    ap.add_argument("--repeat", type=int, default=3, help="restarts and catch-ups per role (the median counts)")
    args = ap.parse_args(argv)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")  # the finally blocks stop every process
    signal.signal(signal.SIGTERM, stop)
    ensure_redis_tools()
    mode_names = [m for m in args.modes.split(",") if m]
    roles = [r for r in args.restart.split(",") if r]
    command = "benchmarks/dataset_1m.py " + " ".join(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="replikv-dataset-") as tmp:
        root = Path(tmp)
        ref = run_redis(root / "redis", args.keys, args.repeat)
        print(f"{ref.system}: load {ref.load_s:.2f}s, memory {ref.mem_leader_mb:.1f}/{ref.mem_follower_mb:.1f} MB, "
              f"restarts {seconds(ref.restart_s['leader'])}, catch-ups {seconds(ref.catchup_s)}; "
              f"{'; '.join(ref.notes)}", flush=True)
        figs = []
        for mode in mode_names:
            fig = run_replikv(root / mode, mode, args.keys, roles, args.repeat)
            print(f"{fig.system}: load {fig.load_s:.2f}s; restarts "
                  f"{'; '.join(f'{r} {seconds(v)}' for r, v in fig.restart_s.items())}; "
                  f"catch-ups {seconds(fig.catchup_s)}", flush=True)
            figs.append(fig)
    print()
    print(f"# {platform.node()}: {os.cpu_count()} cores, {platform.platform()}, Python "
          f"{platform.python_version()}; load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"# command: {command}; {args.keys:,} keys of 16 bytes, 16-byte values, MSET x {BATCH}")
    for fig in figs:
        print()
        print("\n".join(table(ref, fig)))
        print(f"- every sample: Redis restarts {seconds(ref.restart_s['leader'])}, catch-ups "
              f"{seconds(ref.catchup_s)}; replikv restarts "
              f"{'; '.join(f'{r} {seconds(v)}' for r, v in fig.restart_s.items())}, catch-ups {seconds(fig.catchup_s)}")
        for note in fig.notes:
            print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
