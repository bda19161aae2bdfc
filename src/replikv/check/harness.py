"""A fresh cluster of real node processes for `replikv check`, and the levers faults pull.

Each node is a ``python -m replikv node`` process on its own loopback
address (n1 on 127.0.0.11, n2 on 127.0.0.12, ...), so a fault can target one
link. As root the harness first creates a network namespace
(``ip netns add replikv-check-<pid>``) and runs every node inside it, so the
iptables rules of the partition nemesis live in that namespace only and
nothing on the host is touched; the namespace is deleted at the end.

Why the node processes run with their own group id (as root): a node dials
its peers without binding a source address, so the kernel would give every
dial the source 127.0.0.1 and a rule could not tell n1's packets from n3's.
Each node runs with gid ``40000 + last octet`` (``setpriv --regid``; uid stays
0), and one ``nat POSTROUTING`` rule per node (``-m owner --gid-owner``)
rewrites the source of its connections to its own address. A partition is
then plain ``filter INPUT -s a -d b -j DROP`` rules, which cut established
connections too.

Threads that talk to nodes must be inside the namespace: `netns()` moves
the calling thread in (``setns(2)`` is per thread) and back out; sockets
opened inside stay there.

The clock lever runs each node under libfaketime (Debian ``faketime``) with
a per-node timestamp file re-read on every call (``FAKETIME_NO_CACHE``);
writing ``+5`` to it skews that node's wall clock by five seconds while its
monotonic clock (``DONT_FAKE_MONOTONIC``) keeps running true, as an NTP
misstep would.

Invariants: every process the harness started is killed (after SIGCONT) by
`close()`; every rule it added goes away with its namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from replikv import modes
from replikv.check.convergence import Parts, check_convergence
from replikv.config import ClusterConfig, NodeAddress, NodeOptions
from replikv.parent_death import child_env
from replikv.ports import free_port

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
GID_BASE = 40000
FAKETIME_LIBS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1")


class HarnessError(RuntimeError):
    """The cluster could not be started or did not settle; the message says why."""


def is_root() -> bool:
    return os.geteuid() == 0


def can_partition() -> tuple[bool, str]:
    """(True, "") when partitions can be made; else (False, the reason)."""
    if not is_root():
        return False, "partitions need root (a network namespace and iptables rules); not root here"
    for tool in ("ip", "iptables", "setpriv"):
        if shutil.which(tool) is None:
            return False, f"partitions need '{tool}' (Debian packages iproute2, iptables, util-linux)"
    return True, ""


def faketime_lib() -> str | None:
    for pattern in FAKETIME_LIBS:
        for path in glob.glob(pattern):
            return path
    return None


def mode_available(mode: str) -> tuple[bool, str]:
    if mode in modes.names():
        return True, ""
    return False, f"mode {mode!r} is not implemented in this build (have: {', '.join(modes.names())})"


def wait_for(condition: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.05) -> T:
    """Poll ``condition`` until truthy; raise HarnessError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (redis.RedisError, OSError) as e:
            last = e
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout_s:.0f} s waiting for {what}"
                               + (f" (last error: {last})" if last else ""))
        time.sleep(interval_s)


_libc: Any = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class Harness:
    """Start, fault and inspect one cluster; see the module docstring."""

    def __init__(self, root: Path, mode: str | None = None, n: int = 3, *,
                 use_netns: bool | None = None, clock: bool = False, env: dict[str, str] | None = None,
                 **options: Any) -> None:
        mode = mode or modes.names()[0]
        ok, why = mode_available(mode)
        if not ok:
            raise HarnessError(why)
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.use_netns = can_partition()[0] if use_netns is None else use_netns
        self.ns_name = f"replikv-check-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        self.ns_fd: int | None = None
        self.faketime = faketime_lib() if clock else None
        self.env = dict(env or {})  # added to every node's environment (e.g. REPLIKV_FAILPOINTS=1)
        ids = [f"n{i + 1}" for i in range(n)]
        self.hosts = {nid: f"127.0.0.{11 + i}" for i, nid in enumerate(ids)}
        if self.use_netns:
            ports = {nid: (7001 + i, 17001 + i) for i, nid in enumerate(ids)}
        else:
            ports = {nid: (free_port(self.hosts[nid]), free_port(self.hosts[nid])) for nid in ids}
        nodes = {nid: NodeAddress(id=nid, host=self.hosts[nid], port=ports[nid][0], peer_port=ports[nid][1],
                                  data_dir=str(self.root / nid)) for nid in ids}
        options.setdefault("log_level", "info")
        self.config = ClusterConfig(mode=mode, secret="check-secret", initial_leader=ids[0], nodes=nodes,
                                    options=NodeOptions(**options))
        self.config.validate()
        self.config_path = self.root / "cluster.toml"
        self.config.save(self.config_path)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # Nodes are forked by this one thread, which lives as long as the harness:
        # the kernel stops them if we die (parent_death.py), whichever thread
        # (a nemesis restarting a node) asked for the start.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replikv-check-spawn")
        self.paused: set[str] = set()
        self.cut: set[frozenset[str]] = set()
        self.events: list[str] = []  # what the harness did, for the report

    @property
    def ids(self) -> list[str]:
        return list(self.config.nodes)

    # -- namespace --------------------------------------------------------------------------
    def _create_netns(self) -> None:
        def sh(*args: str) -> None:
            subprocess.run(args, check=True, capture_output=True)
        sh("ip", "netns", "add", self.ns_name)
        try:
            self.ns_fd = os.open(f"/var/run/netns/{self.ns_name}", os.O_RDONLY)
            sh("ip", "netns", "exec", self.ns_name, "ip", "link", "set", "lo", "up")
            for nid, host in self.hosts.items():
                sh(*self._iptables("-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-m", "owner",
                                   "--gid-owner", str(self._gid(nid)), "-j", "SNAT", "--to-source", host))
        except (subprocess.CalledProcessError, OSError) as e:
            self._delete_netns()
            detail = e.stderr.decode(errors="replace").strip() if isinstance(e, subprocess.CalledProcessError) else e
            raise HarnessError(f"could not set up network namespace {self.ns_name}: {detail}") from None

    def _delete_netns(self) -> None:
        if self.ns_fd is not None:
            os.close(self.ns_fd)
            self.ns_fd = None
        subprocess.run(["ip", "netns", "del", self.ns_name], capture_output=True)

    def _iptables(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns_name, "iptables", "-w", *args]

    def _gid(self, nid: str) -> int:
        return GID_BASE + int(self.hosts[nid].rsplit(".", 1)[1])

    @contextlib.contextmanager
    def netns(self) -> Iterator[None]:
        """Run the body with the calling thread inside the cluster's namespace (if any)."""
        if self.ns_fd is None:
            yield
            return
        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _setns(self.ns_fd)
            try:
                yield
            finally:
                _setns(here)
        finally:
            os.close(here)

    # -- processes -------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> "Harness":
        if self.use_netns:
            self._create_netns()
        try:
            for nid in self.ids:
                if self.faketime:
                    self.clock_file(nid).write_text("+0\n")
                self._spawn(nid)
            for nid in self.ids:
                self.wait_up(nid, timeout_s)
            self.wait_stable(timeout_s)
        except BaseException:
            self.close()
            raise
        return self

    def _spawn(self, nid: str) -> None:
        cmd = [sys.executable, "-m", "replikv", "node", "--config", str(self.config_path), "--id", nid]
        if self.use_netns:
            cmd = ["ip", "netns", "exec", self.ns_name, "setpriv", "--regid", str(self._gid(nid)),
                   "--clear-groups", *cmd]
        env = child_env({**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        if self.faketime:
            env.update(LD_PRELOAD=self.faketime, FAKETIME_TIMESTAMP_FILE=str(self.clock_file(nid)),
                       FAKETIME_NO_CACHE="1", DONT_FAKE_MONOTONIC="1")
        def popen() -> subprocess.Popen[bytes]:
            with open(self.log_path(nid), "ab") as log:
                return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)

        self.procs[nid] = self._spawner.submit(popen).result()

    def log_path(self, nid: str) -> Path:
        return self.root / f"{nid}.log"

    def clock_file(self, nid: str) -> Path:
        return self.root / f"{nid}.faketime"

    def running(self, nid: str) -> bool:
        proc = self.procs.get(nid)
        return proc is not None and proc.poll() is None

    def kill(self, nid: str) -> None:
        proc = self.procs.pop(nid, None)
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        self.paused.discard(nid)

    def restart(self, nid: str, wait: bool = False) -> None:
        if self.running(nid):
            return
        self._spawn(nid)
        if wait:
            self.wait_up(nid, 30)

    def pause(self, nid: str) -> None:
        if self.running(nid):
            self.procs[nid].send_signal(signal.SIGSTOP)
            self.paused.add(nid)

    def resume(self, nid: str) -> None:
        if self.running(nid):
            self.procs[nid].send_signal(signal.SIGCONT)
        self.paused.discard(nid)

    def set_clock(self, nid: str, offset_s: float) -> None:
        if self.faketime:
            self.clock_file(nid).write_text(f"{offset_s:+.3f}\n")

    def close(self) -> None:
        for nid, proc in list(self.procs.items()):
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.procs.clear()
        self._spawner.shutdown(wait=True)
        if self.use_netns:
            self._delete_netns()

    # -- partitions ---------------------------------------------------------------------------
    def partition(self, cut: set[frozenset[str]]) -> None:
        """Drop every packet between each pair of nodes in ``cut`` (both directions)."""
        if not self.use_netns:
            raise HarnessError(can_partition()[1] or "partitions need the harness's network namespace")
        self.heal()
        for pair in cut:
            a, b = sorted(pair)
            for src, dst in ((a, b), (b, a)):
                subprocess.run(self._iptables("-A", "INPUT", "-s", self.hosts[src], "-d", self.hosts[dst],
                                              "-j", "DROP"), check=True, capture_output=True)
        self.cut = set(cut)

    def heal(self) -> None:
        if self.use_netns and self.ns_fd is not None:
            subprocess.run(self._iptables("-F", "INPUT"), check=True, capture_output=True)
        self.cut = set()

    # -- talking to nodes --------------------------------------------------------------------
    def client(self, nid: str, timeout_s: float = 2.0) -> redis.Redis:
        """A redis-py client of one connection that never retries on its own (open it inside `netns`)."""
        addr = self.config.nodes[nid]
        return redis.Redis(host=addr.host, port=addr.port, socket_timeout=timeout_s,
                           socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0),
                           single_connection_client=True, decode_responses=True)

    def _ask(self, nid: str, *cmd: str, timeout_s: float = 1.0) -> Any:
        with self.netns():
            c = self.client(nid, timeout_s)
            try:
                return c.execute_command(*cmd)
            finally:
                c.close()

    def ping(self, nid: str) -> bool:
        try:
            return bool(self._ask(nid, "PING", timeout_s=0.5))
        except (redis.RedisError, OSError):
            return False

    def wait_up(self, nid: str, timeout_s: float) -> None:
        def up() -> bool:
            if not self.running(nid):
                raise HarnessError(f"{nid} exited; see {self.log_path(nid)}")
            return self.ping(nid)
        wait_for(up, timeout_s, f"{nid} to answer PING")

    def replication(self, nid: str) -> dict[str, Any]:
        with self.netns():
            c = self.client(nid, 1.0)
            try:
                return dict(c.info("replication"))
            finally:
                c.close()

    def leader(self) -> str | None:
        """The node that says it leads with the highest epoch (None if none answers)."""
        best: tuple[int, str] | None = None
        for nid in self.ids:
            if nid in self.paused or not self.running(nid):
                continue
            try:
                info = self.replication(nid)
            except (redis.RedisError, OSError):
                continue
            if info.get("role") == "master":
                epoch = int(info.get("replikv_epoch", 0))
                if best is None or epoch > best[0]:
                    best = (epoch, nid)
        return best[1] if best else None

    def wait_stable(self, timeout_s: float) -> str:
        """Wait for one leader that streams to every follower; returns its id. In a mode where
        every node takes writes: for every node to be connected to every other; returns the first."""
        if not modes.get(self.config.mode).single_writer:
            def meshed() -> str | None:
                want = len(self.ids) - 1
                return self.ids[0] if all(int(self.replication(n).get("connected_slaves", 0)) >= want
                                          for n in self.ids) else None
            return wait_for(meshed, timeout_s, "every node connected to every other")

        def stable() -> str | None:
            infos = {n: self.replication(n) for n in self.ids}
            shards = int(infos[self.ids[0]].get("replikv_shards", 0))
            if shards:  # sharded raft: every group led, no node seen dead by another
                led = sum(int(i.get("replikv_groups_led", 0)) for i in infos.values())
                alive = all(not i.get("replikv_peers_dead") for i in infos.values())
                return self.ids[0] if led == shards and alive else None
            leader = self.leader()
            if leader is None:
                return None
            leaders = [n for n in self.ids if self.replication(n).get("role") == "master"]
            if leaders != [leader]:
                return None
            info = self.replication(leader)
            online = sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                         and v.get("state") == "online")
            return leader if online >= len(self.ids) - 1 else None
        return wait_for(stable, timeout_s, "one leader streaming to every follower")

    def info_totals(self, *fields: str) -> dict[str, int]:
        """``INFO`` counters summed over the nodes that answer (a restarted node's count from its
        restart); a field no node reports is 0."""
        out = dict.fromkeys(fields, 0)
        for nid in self.ids:
            try:
                info = self._ask(nid, "INFO", "stats", timeout_s=2.0)
            except (redis.RedisError, OSError):
                continue
            for f in fields:
                out[f] += int(info.get(f, 0))
        return out

    def digests(self) -> dict[str, Parts | None]:
        """Each node's ``REPLIKV DIGESTS`` (its data in parts, each with the nodes that must hold
        it: check/convergence.py); None for a node that did not answer or answered garbage."""
        out: dict[str, Parts | None] = {}
        for nid in self.ids:
            try:
                parts = self._ask(nid, "REPLIKV", "DIGESTS", timeout_s=2.0)
                out[nid] = [(str(label), tuple(map(str, holders)), str(d)) for label, holders, d in parts]
            except (redis.RedisError, OSError, TypeError, ValueError):
                out[nid] = None
        return out

    def wait_converged(self, timeout_s: float) -> dict[str, Parts | None]:
        """Wait until every node answers and every part of the data is equal on the nodes that
        hold it (``check_convergence`` passes); returns the last digests seen."""
        last: dict[str, Parts | None] = {}

        def same() -> bool:
            nonlocal last
            last = self.digests()
            return check_convergence(last).status == "pass"
        with contextlib.suppress(HarnessError):
            wait_for(same, timeout_s, "replicas to converge", interval_s=0.2)
        return last
