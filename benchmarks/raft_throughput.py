#!/usr/bin/env python3
"""Raft throughput: replikv --mode raft against etcd 3.4 and PySyncObj, in one run.

All three are 3-node Raft clusters on loopback, measured on this machine:

  * replikv: `replikv up --mode raft --nodes 3 --fsync always`; the leader is found
    with INFO replication (role:master) and loaded with
        redis-benchmark -t set,get -n 100000 -c 50 -d 16 -P 1   (and -P 16)
    GET runs at the raft mode's default read level (linearizable; redis-benchmark
    cannot send CONSISTENCY on its connections, so the default is what counts).
  * etcd 3.4 (Debian etcd-server): 3 members, data dirs under a temp dir, loaded
    with wrk (50 connections, --latency) POSTing to the JSON gateway of the leader
    (found with /v3/maintenance/status): /v3/kv/put with base64 keys that vary
    per request (a Lua script), then /v3/kv/range (linearizable by default).
    etcd always fsyncs its WAL before it acknowledges a write (3.4 cannot turn
    that off), so it runs at the same durability as replikv --fsync always.
  * PySyncObj (PyPI pysyncobj, installed into its own venv under the temp dir,
    never into the project's): 3 processes, each a SyncObj with one ReplDict;
    the leader's process drives 50 concurrent writers (the callback API, 50
    writes in flight; and 50 threads on the sync API) and measures writes/s,
    p50 and p99. Its SyncObjConf has appendEntriesUseBatch=False (PySyncObj's
    setting for latency; its default batch mode sends AppendEntries only every
    100 ms and makes 50 writers ~6x slower here; --pysyncobj-conf changes it).
    Durability: SyncObjConf(journalFile=...), the only persistence
    PySyncObj offers for its log. Its journal is an mmap that is never fsynced
    per write (PySyncObj has no fsync option), so it is *weaker* than
    fsync always: the comparison favours PySyncObj. PySyncObj reads are local
    dict lookups with no linearizable mode, so it has no read row.

Prints one table (system, workload, concurrency, ops/s, p50 ms, p99 ms, and the
ratios replikv/etcd and replikv/PySyncObj for writes and reads), the machine
(nproc, CPU model), versions, durations and the issue's targets. Everything it
starts runs in its own process group and is stopped on the way out.

    .venv/bin/python benchmarks/raft_throughput.py                  # the full run
    .venv/bin/python benchmarks/raft_throughput.py --quick          # a smoke run
    .venv/bin/python benchmarks/raft_throughput.py --systems etcd,pysyncobj --duration 10
    .venv/bin/python benchmarks/raft_throughput.py --markdown       # also a table for BENCHMARKS.md

Missing references are installed on the way (as root): Debian etcd-server, wrk and
redis-tools with apt-get, pysyncobj with pip into a venv in the temp dir.
This is a script, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import platform
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table

from _support import free_ports, log_tail, wait_until

console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
SYSTEMS = ("replikv", "etcd", "pysyncobj")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
VALUE_SIZE = 16
KEYSPACE = 100_000
# PySyncObj's default (appendEntriesUseBatch=True) sends AppendEntries only every
# appendEntriesPeriod (100 ms), which caps 50 writers at ~480 writes/s with p50 ~100 ms
# here; without batching each command wakes the leader at once: ~3k writes/s here, its
# best of the settings tried (appendEntriesPeriod 0.002-0.01, autoTickPeriod 0.005).
PYSYNCOBJ_CONF: dict[str, object] = {"appendEntriesUseBatch": False}
PYSYNCOBJ_VENV = Path(tempfile.gettempdir()) / "replikv-bench-pysyncobj-venv"


@dataclass
class Row:
    system: str  # "replikv" | "etcd" | "pysyncobj"
    workload: str  # "write" | "read"
    detail: str  # what exactly ran
    concurrency: str  # e.g. "50", "50 x P16"
    in_flight: int  # requests outstanding at once
    ops: float | None  # None: not measured (see note)
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""


@dataclass
class Run:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)


# -- helpers --------------------------------------------------------------------------------

def apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0:
        raise RuntimeError(f"missing {' '.join(packages)}; install them with "
                           f"apt-get install -y {' '.join(packages)}")
    console.print(f"installing {' '.join(packages)} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def ensure_tools(systems: list[str]) -> None:
    wanted = {"redis-benchmark": "redis-tools"} if "replikv" in systems else {}
    if "etcd" in systems:
        wanted.update({"etcd": "etcd-server", "wrk": "wrk"})
    missing = sorted({pkg for tool, pkg in wanted.items() if not shutil.which(tool)})
    if missing:
        apt_install(missing)


def ensure_pysyncobj() -> Path:
    """The python of a venv (outside the project's) that has pysyncobj."""
    python = PYSYNCOBJ_VENV / "bin" / "python"
    probe = [str(python), "-c", "import pysyncobj"]
    if python.exists() and subprocess.run(probe, check=False, capture_output=True).returncode == 0:
        return python
    console.print(f"installing pysyncobj into {PYSYNCOBJ_VENV} (pip)")
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", "--clear", str(PYSYNCOBJ_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "pysyncobj"], check=True)
    return python


def spawn(args: list[str], log: Path, stdin: int = subprocess.DEVNULL,
          stdout: int | None = None) -> subprocess.Popen[bytes]:
    """A process in its own process group (so its children are stopped with it)."""
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdin=stdin, stdout=out if stdout is None else stdout,
                                stderr=out, start_new_session=True)


def stop_group(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the process group, SIGKILL after timeout_s; reaps the process."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None and proc.poll() is None:
        try:
            os.killpg(pgid, signal.SIGTERM)
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            pass
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGKILL)  # whatever of the group is left
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass


def tool_version(args: list[str]) -> str:
    try:
        done = subprocess.run(args, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


# -- replikv --------------------------------------------------------------------------------

def info_replication(port: int) -> dict[str, str]:
    client = redis.Redis(port=port, socket_timeout=1.0, socket_connect_timeout=1.0,
                         decode_responses=True)
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


def replikv_leader(ports: list[int]) -> int | None:
    """The port of the one node that says role:master and takes a write, else None."""
    masters = []
    for port in ports:
        try:
            if info_replication(port).get("role") == "master":
                masters.append(port)
        except (redis.RedisError, OSError):
            continue
    if len(masters) != 1:
        return None
    client = redis.Redis(port=masters[0], socket_timeout=5.0, socket_connect_timeout=1.0)
    try:
        return masters[0] if client.set("replikv-bench:probe", "1") else None
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def replikv_python() -> str:
    """The interpreter that has replikv: the project venv's, else this one."""
    venv = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@contextmanager
def replikv_raft_cluster(root: Path, mode: str = "raft") -> Iterator[Callable[[], int]]:
    """`replikv up --mode raft --nodes 3 --fsync always`; yields a function that
    waits for the current leader and returns its port (asked before every run, as
    the leader may change under load).

    Raises NotAvailable when this replikv has no raft mode (yet)."""
    ports = free_ports(3)
    peers = free_ports(3)
    data = root / "replikv-raft"
    log = root / "replikv-raft-up.log"
    args = [replikv_python(), "-m", "replikv", "up", "--mode", mode, "--nodes", "3",
            "--port", str(ports[0]), "--peer-port", str(peers[0]), "--data-dir", str(data),
            "--fsync", "always", "--log-level", "warning", "--quiet"]
    proc = spawn(args, log)
    try:
        def dead() -> str | None:
            if proc.poll() is None:
                return None
            tail = log_tail(log)
            if proc.returncode == 2 and "mode" in tail and mode in tail:
                raise NotAvailable(tail.splitlines()[-1] if tail else "--mode raft rejected")
            return f"`replikv up` exited with code {proc.returncode}:\n{tail}"

        def current_leader() -> int:
            leader: list[int] = []

            def found() -> bool:
                port = replikv_leader(ports)
                if port is not None:
                    leader.append(port)
                return bool(leader)

            wait_until(found, START_TIMEOUT_S, f"a replikv {mode} leader that takes a write",
                       dead, interval_s=0.2)
            return leader[0]

        current_leader()
        yield current_leader
    finally:
        stop_group(proc)


class NotAvailable(RuntimeError):
    pass


def redis_benchmark(port: int, requests: int, clients: int,
                    pipeline: int) -> dict[str, tuple[float, float, float]]:
    """{"SET"|"GET": (ops/s, p50 ms, p99 ms)} from redis-benchmark --csv."""
    args = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
            "-n", str(requests), "-c", str(clients), "-d", str(VALUE_SIZE),
            "-P", str(pipeline), "--csv"]
    done = subprocess.run(args, check=False, capture_output=True, text=True,
                          timeout=180 + requests / 500)
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed ({done.returncode}): {done.stderr.strip()}")
    results: dict[str, tuple[float, float, float]] = {}
    for record in csv.DictReader(io.StringIO(done.stdout)):
        test = record.get("test", "").upper()
        if test in ("SET", "GET"):
            results[test] = (float(record["rps"]), float(record["p50_latency_ms"]),
                             float(record["p99_latency_ms"]))
    if set(results) != {"SET", "GET"}:
        raise RuntimeError(f"redis-benchmark printed no result for SET/GET:\n"
                           f"{done.stdout}\n{done.stderr}")
    return results


def bench_replikv(root: Path, run: Run, requests: int, clients: int,
                  pipelines: list[int], mode: str = "raft") -> None:
    run.versions["replikv"] = tool_version([replikv_python(), "-m", "replikv", "version"])
    run.versions["redis-benchmark"] = tool_version(["redis-benchmark", "--version"])
    try:
        with replikv_raft_cluster(root, mode) as current_leader:
            previous = None
            for pipeline in pipelines:
                port = current_leader()
                if port != previous:
                    if previous is not None:
                        run.notes.append(f"replikv: the leader moved from port {previous} "
                                         f"to {port} before the -P {pipeline} run")
                    console.print(f"  leader on port {port}")
                    previous = port
                try:
                    results = redis_benchmark(port, requests, clients, pipeline)
                except RuntimeError as e:  # e.g. a leader change mid-run: go on with the next
                    run.notes.append(f"replikv -P {pipeline} failed: {e}")
                    console.print(f"  [red]-P {pipeline} failed:[/] {e}")
                    continue
                for test, workload, what in (("SET", "write", "SET"),
                                             ("GET", "read", "GET, linearizable (default)"
                                              if mode == "raft" else "GET, leader's own read")):
                    ops, p50, p99 = results[test]
                    conc = f"{clients}" if pipeline == 1 else f"{clients} x P{pipeline}"
                    run.rows.append(Row("replikv", workload,
                                        f"{what}, -P {pipeline}, fsync always"
                                        + ("" if mode == "raft" else f", --mode {mode}"), conc,
                                        clients * pipeline, ops, p50, p99))
                    console.print(f"  {test} -P {pipeline:<2} {ops:>10,.0f} ops/s  "
                                  f"p50 {p50:.3f} ms  p99 {p99:.3f} ms")
    except NotAvailable as e:
        msg = f"replikv raft mode not available yet ({e})"
        console.print(f"  [yellow]{msg}[/]")
        for workload in ("write", "read"):
            run.rows.append(Row("replikv", workload, "--mode raft", str(clients), clients, None,
                                note="replikv raft mode not available yet"))
        run.notes.append(msg)


# -- etcd -------------------------------------------------------------------------------------

def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def etcd_post(port: int, path: str, body: dict[str, object], timeout_s: float = 3.0) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read() or b"{}")


def etcd_leader(ports: list[int]) -> int | None:
    """The client port of the member whose /v3/maintenance/status says it leads."""
    for port in ports:
        try:
            status = etcd_post(port, "/v3/maintenance/status", {})
        except (OSError, ValueError, urllib.error.URLError):
            continue
        if status.get("leader") and status.get("header", {}).get("member_id") == status["leader"]:
            return port
    return None


@contextmanager
def etcd_cluster(root: Path) -> Iterator[int]:
    """3 etcd members on loopback; yields the leader's client port."""
    clients = free_ports(3)
    peers = free_ports(3)
    names = [f"m{i + 1}" for i in range(3)]
    initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(names, peers))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, client, peer in zip(names, clients, peers):
            data = root / f"etcd-{name}"
            args = ["etcd", "--name", name, "--data-dir", str(data),
                    "--listen-client-urls", f"http://127.0.0.1:{client}",
                    "--advertise-client-urls", f"http://127.0.0.1:{client}",
                    "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                    "--initial-cluster", initial, "--initial-cluster-state", "new",
                    "--initial-cluster-token", f"replikv-bench-{os.getpid()}",
                    "--logger", "zap", "--log-level", "warn"]
            procs.append(spawn(args, root / f"etcd-{name}.log"))

        def dead() -> str | None:
            for name, p in zip(names, procs):
                if p.poll() is not None:
                    return (f"etcd {name} exited with code {p.returncode}:\n"
                            f"{log_tail(root / f'etcd-{name}.log')}")
            return None

        leader: list[int] = []

        def ready() -> bool:
            port = etcd_leader(clients)
            if port is None:
                return False
            try:  # a write commits: the quorum is there
                etcd_post(port, "/v3/kv/put", {"key": b64("bench:probe"), "value": b64("1")})
            except (OSError, urllib.error.URLError):
                return False
            leader.append(port)
            return True

        wait_until(ready, START_TIMEOUT_S, "an etcd leader that takes a put", dead, interval_s=0.2)
        yield leader[0]
    finally:
        for p in procs:
            stop_group(p)


WRK_LUA = r"""
-- generated by benchmarks/raft_throughput.py: POST JSON to etcd's gateway, keys vary
local path, field, keyspace, value = "%(path)s", "%(field)s", %(keyspace)d, "%(value)s"
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(data)
  local out, bytes = {}, {data:byte(1, -1)}
  for i = 1, #bytes, 3 do
    local a, b, c = bytes[i], bytes[i + 1], bytes[i + 2]
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local k = math.floor(n / 262144) %% 64 + 1
    local l = math.floor(n / 4096) %% 64 + 1
    local m = math.floor(n / 64) %% 64 + 1
    local o = n %% 64 + 1
    out[#out + 1] = alphabet:sub(k, k) .. alphabet:sub(l, l)
      .. (b and alphabet:sub(m, m) or "=") .. (c and alphabet:sub(o, o) or "=")
  end
  return table.concat(out)
end

local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

local counter = 0
local cache = {}
function request()
  counter = counter + 1
  local n = (tid * 7919 + counter * 13) %% keyspace
  local body = cache[n]
  if body == nil then
    local key = b64(string.format("key:%%012d", n))
    if field == "put" then
      body = '{"key":"' .. key .. '","value":"' .. value .. '"}'
    else
      body = '{"key":"' .. key .. '"}'
    end
    cache[n] = body
  end
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
"""


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(text: str) -> tuple[float, float, float, int, int]:
    """(requests/s, p50 ms, p99 ms, requests, errors) from `wrk --latency` output."""
    def latency(pct: str) -> float:
        match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
        if not match:
            raise RuntimeError(f"no {pct}% latency in wrk output:\n{text}")
        return float(match.group(1)) * _UNIT_MS[match.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", text, re.MULTILINE)
    if not rps or not total:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{text}")
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    return float(rps.group(1)), latency("50"), latency("99"), int(total.group(1)), errors


def run_wrk(root: Path, port: int, field_: str, clients: int,
            duration_s: int) -> tuple[float, float, float, int, int]:
    path = {"put": "/v3/kv/put", "range": "/v3/kv/range"}[field_]
    script = root / f"wrk-{field_}.lua"
    script.write_text(WRK_LUA % {"path": path, "field": field_, "keyspace": KEYSPACE,
                                 "value": b64("v" * VALUE_SIZE)})
    threads = max(1, min(os.cpu_count() or 1, clients))
    args = ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{duration_s}s",
            "--timeout", "10s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}"]
    done = subprocess.run(args, check=False, capture_output=True, text=True,
                          timeout=duration_s + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse_wrk(done.stdout)


def bench_etcd(root: Path, run: Run, clients: int, duration_s: int) -> None:
    run.versions["etcd"] = tool_version(["etcd", "--version"])
    run.versions["wrk"] = tool_version(["wrk", "--version"]).split(" [")[0]
    with etcd_cluster(root) as port:
        console.print(f"  leader on client port {port}")
        for field_, workload, what in (("put", "write", "/v3/kv/put"),
                                       ("range", "read", "/v3/kv/range, linearizable")):
            ops, p50, p99, total, errors = run_wrk(root, port, field_, clients, duration_s)
            note = f"{errors} errors of {total}" if errors else ""
            if field_ == "put":
                count = etcd_post(port, "/v3/kv/range", {"key": b64("key:"),
                                                         "range_end": b64("key;"),
                                                         "count_only": True}, timeout_s=30)
                note = "; ".join(filter(None, [note, f"{count.get('count', 0)} distinct keys"]))
            run.rows.append(Row("etcd", workload, f"{what}, wrk {duration_s}s, WAL fsync",
                                str(clients), clients, ops, p50, p99, note))
            console.print(f"  {field_:<5} {ops:>10,.0f} ops/s  p50 {p50:.3f} ms  "
                          f"p99 {p99:.3f} ms  ({total} requests{', ' + note if note else ''})")
            if errors > total / 100:
                raise RuntimeError(f"wrk {field_}: {errors} of {total} requests failed")


# -- PySyncObj --------------------------------------------------------------------------------

PYSYNCOBJ_NODE = r'''
# generated by benchmarks/raft_throughput.py: one PySyncObj node with a ReplDict;
# commands as JSON lines on stdin, answers as "@@ " + JSON lines on stdout.
import json, sys, threading, time
from pysyncobj import SyncObj, SyncObjConf, FAIL_REASON
from pysyncobj.batteries import ReplDict

self_addr, partners, journal = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
conf = SyncObjConf(journalFile=journal or None,
                   fullDumpFile=(journal + ".dump") if journal else None,
                   **json.loads(sys.argv[6]))
d = ReplDict()
obj = SyncObj(self_addr, partners, conf=conf, consumers=[d])
VALUE = "v" * int(sys.argv[4])
KEYSPACE = int(sys.argv[5])

def say(**kw):
    sys.stdout.write("@@ " + json.dumps(kw) + "\n")
    sys.stdout.flush()

def summary(lat, errors, elapsed):
    lat = sorted(lat)
    def pct(q):
        if not lat:
            return -1
        return lat[min(len(lat) - 1, max(0, round(q * len(lat) + 0.5) - 1))] * 1000
    return dict(ops=len(lat) / elapsed if elapsed > 0 else 0, p50=pct(0.50), p99=pct(0.99),
                done=len(lat), errors=errors, seconds=elapsed)

def load_callback(n, conc):
    lat, errs = [], [0]
    lock, finished = threading.Lock(), threading.Event()
    state = {"issued": 0, "done": 0}
    def issue(i):
        t0 = time.perf_counter()
        def cb(res, err):
            with lock:
                if err == FAIL_REASON.SUCCESS:
                    lat.append(time.perf_counter() - t0)
                else:
                    errs[0] += 1
                state["done"] += 1
                nxt = state["issued"]
                if nxt < n:
                    state["issued"] += 1
                all_done = state["done"] >= n
            if nxt < n:
                issue(nxt)
            elif all_done:
                finished.set()
        d.set("key:%012d" % (i % KEYSPACE), VALUE, callback=cb)
    start = time.perf_counter()
    with lock:
        first = min(conc, n)
        state["issued"] = first
    for i in range(first):
        issue(i)
    finished.wait(600)
    return lat, errs[0], time.perf_counter() - start

def load_threads(n, conc):
    lat, errs = [], [0]
    lock = threading.Lock()
    counter = iter(range(n))
    def worker():
        mine = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.perf_counter()
            try:
                d.set("key:%012d" % (i % KEYSPACE), VALUE, sync=True, timeout=30)
                mine.append(time.perf_counter() - t0)
            except Exception:
                with lock:
                    errs[0] += 1
        with lock:
            lat.extend(mine)
    threads = [threading.Thread(target=worker) for _ in range(conc)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errs[0], time.perf_counter() - start

say(started=self_addr)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "status":
        st = obj.getStatus()
        say(state=st["state"], leader=str(st["leader"]) if st["leader"] else None,
            quorum=bool(st["has_quorum"]), ready=obj.isReady(), commit=st["commit_idx"])
    elif cmd["op"] == "load":
        fn = load_callback if cmd["api"] == "callback" else load_threads
        if cmd.get("warmup"):
            fn(cmd["warmup"], cmd["conc"])
        lat, errors, elapsed = fn(cmd["n"], cmd["conc"])
        say(**summary(lat, errors, elapsed))
    elif cmd["op"] == "len":
        say(len=len(d))
    elif cmd["op"] == "quit":
        break
obj.destroy()
say(stopped=self_addr)
'''


class PsoNode:
    def __init__(self, python: Path, script: Path, addr: str, partners: list[str],
                 journal: str, conf: dict[str, object], log: Path) -> None:
        self.addr = addr
        self.log = log
        self.proc = spawn([str(python), str(script), addr, ",".join(partners), journal,
                           str(VALUE_SIZE), str(KEYSPACE), json.dumps(conf)], log,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lines: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            if line.startswith("@@ "):
                self.lines.put(json.loads(line[3:]))

    def ask(self, timeout_s: float = 5.0, **cmd: object) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        try:
            return self.lines.get(timeout=timeout_s)
        except queue.Empty:
            raise RuntimeError(f"PySyncObj node {self.addr} did not answer {cmd['op']} in "
                               f"{timeout_s:g}s; its log:\n{log_tail(self.log)}") from None

    def quit(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write(b'{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        stop_group(self.proc)


@contextmanager
def pysyncobj_cluster(root: Path, python: Path, journal: bool,
                      conf: dict[str, object]) -> Iterator[PsoNode]:
    """3 PySyncObj processes with a ReplDict each; yields the leader's node."""
    script = root / "pysyncobj_node.py"
    script.write_text(PYSYNCOBJ_NODE)
    addrs = [f"127.0.0.1:{p}" for p in free_ports(3)]
    nodes: list[PsoNode] = []
    try:
        for i, addr in enumerate(addrs):
            data = root / f"pysyncobj-{i + 1}"
            data.mkdir(parents=True, exist_ok=True)
            nodes.append(PsoNode(python, script, addr, [a for a in addrs if a != addr],
                                 str(data / "journal") if journal else "", conf,
                                 root / f"pysyncobj-{i + 1}.log"))
        for node in nodes:
            node.lines.get(timeout=START_TIMEOUT_S)  # "started"

        leader: list[PsoNode] = []

        def ready() -> bool:
            statuses = [node.ask(op="status") for node in nodes]
            leaders = {s["leader"] for s in statuses}
            if len(leaders) != 1 or None in leaders:
                return False
            if not all(s["quorum"] and s["ready"] for s in statuses):
                return False
            name = leaders.pop()
            leader[:] = [n for n in nodes if n.addr == name]
            return bool(leader)

        def dead() -> str | None:
            for node in nodes:
                if node.proc.poll() is not None:
                    return (f"PySyncObj node {node.addr} exited with code {node.proc.returncode}:"
                            f"\n{log_tail(node.log)}")
            return None

        wait_until(ready, START_TIMEOUT_S, "a PySyncObj leader", dead, interval_s=0.2)
        yield leader[0]
    finally:
        for node in nodes:
            node.quit()


def bench_pysyncobj(root: Path, run: Run, writes: int, clients: int, apis: list[str],
                    journal: bool, conf: dict[str, object]) -> None:
    python = ensure_pysyncobj()
    run.versions["pysyncobj"] = "pysyncobj " + tool_version(
        [str(python), "-c", "import pysyncobj.version as v; print(v.VERSION)"])
    durability = "journalFile (mmap, no fsync)" if journal else "in memory"
    with pysyncobj_cluster(root, python, journal, conf) as leader:
        console.print(f"  leader {leader.addr}")
        for api in apis:
            result = leader.ask(timeout_s=900, op="load", api=api, n=writes, conc=clients,
                                warmup=min(2000, max(writes // 20, 1)))
            note = f"{result['errors']} errors" if result["errors"] else ""
            what = ("ReplDict.set, callback API (in flight)" if api == "callback"
                    else "ReplDict.set, sync API (threads)")
            run.rows.append(Row("pysyncobj", "write", f"{what}, {durability}", str(clients),
                                clients, result["ops"], result["p50"], result["p99"], note))
            console.print(f"  {api:<8} {result['ops']:>10,.0f} writes/s  p50 {result['p50']:.3f} ms"
                          f"  p99 {result['p99']:.3f} ms  ({result['done']} writes in "
                          f"{result['seconds']:.1f}s{', ' + note if note else ''})")
            if result["errors"] > writes / 100:
                raise RuntimeError(f"PySyncObj {api}: {result['errors']} of {writes} writes failed")


# -- reporting ----------------------------------------------------------------------------------

def best(rows: list[Row], system: str, workload: str, in_flight: int | None = None) -> Row | None:
    """The fastest measured row of system/workload (at in_flight outstanding, if given)."""
    found = [r for r in rows if r.system == system and r.workload == workload and r.ops
             and (in_flight is None or r.in_flight == in_flight)]
    return max(found, key=lambda r: r.ops or 0.0) if found else None


def ratio(row: Row, other: Row | None) -> str:
    if row.system != "replikv" or not row.ops or other is None or not other.ops:
        return ""
    return f"{row.ops / other.ops:.2f}"


def table_rows(run: Run) -> list[list[str]]:
    order = {s: i for i, s in enumerate(SYSTEMS)}
    out = []
    for row in sorted(run.rows, key=lambda r: (r.workload != "write", order[r.system],
                                               r.in_flight)):
        etcd = best(run.rows, "etcd", row.workload)
        pso = best(run.rows, "pysyncobj", row.workload)
        out.append([row.system, row.workload, row.detail, row.concurrency,
                    "-" if row.ops is None else f"{row.ops:,.0f}",
                    "-" if row.p50_ms is None else f"{row.p50_ms:.2f}",
                    "-" if row.p99_ms is None else f"{row.p99_ms:.2f}",
                    ratio(row, etcd), ratio(row, pso), row.note])
    return out


HEADERS = ["system", "workload", "what", "concurrency", "ops/s", "p50 ms", "p99 ms",
           "replikv/etcd", "replikv/PySyncObj", "note"]


def print_table(run: Run, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for name in HEADERS:
        table.add_column(name, justify="right" if name in ("ops/s", "p50 ms", "p99 ms",
                                                           "replikv/etcd",
                                                           "replikv/PySyncObj") else "left")
    for cells in table_rows(run):
        table.add_row(*cells)
    console.print(table)


def markdown_table(run: Run) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |",
             "|---|---|---|---|--:|--:|--:|--:|--:|---|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(run)]
    return "\n".join(lines)


def targets(run: Run, clients: int) -> list[str]:
    """The issue's targets, checked on the rows at the same concurrency (-P 1)."""
    out = []
    w, r = best(run.rows, "replikv", "write", clients), best(run.rows, "replikv", "read", clients)
    ew, er = best(run.rows, "etcd", "write"), best(run.rows, "etcd", "read")
    pw = best(run.rows, "pysyncobj", "write")

    def check(label: str, ok: bool, detail: str) -> None:
        out.append(f"{'[green]met[/]' if ok else '[red]not met[/]'}: {label} ({detail})")

    if w and w.ops and ew and ew.ops:
        check("raft writes/s >= 3x etcd's", w.ops >= 3 * ew.ops, f"{w.ops / ew.ops:.2f}x")
        if w.p99_ms is not None and ew.p99_ms is not None:
            check("raft write p99 <= etcd's", w.p99_ms <= ew.p99_ms,
                  f"{w.p99_ms:.2f} ms vs {ew.p99_ms:.2f} ms")
    if w and w.ops and pw and pw.ops:
        check("raft writes/s >= 3x PySyncObj's", w.ops >= 3 * pw.ops, f"{w.ops / pw.ops:.2f}x")
    if r and r.ops and er and er.ops:
        check("linearizable reads/s >= 3x etcd's ranges", r.ops >= 3 * er.ops,
              f"{r.ops / er.ops:.2f}x")
    return out


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = tool_version(["nproc"])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.machine()}, nproc {nproc}, {model}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}; load average {load} (anything else "
            "running on the machine skews every number)")


# -- main -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    global VALUE_SIZE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 20000 requests/writes, wrk for 5s")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {','.join(SYSTEMS)} (default all)")
    parser.add_argument("--requests", "-n", type=int, default=None,
                        help="redis-benchmark requests per test and PySyncObj writes per API "
                             "(default 100000; 20000 with --quick)")
    parser.add_argument("--clients", "-c", type=int, default=50,
                        help="connections / concurrent writers for every system (default 50)")
    parser.add_argument("--duration", type=int, default=None,
                        help="seconds per wrk run against etcd (default 30; 5 with --quick)")
    parser.add_argument("--pipelines", default="1,16",
                        help="redis-benchmark pipeline depths for replikv (default 1,16)")
    parser.add_argument("--pysyncobj-api", default="callback,threads",
                        help="PySyncObj drivers: callback (50 writes in flight on the callback "
                             "API), threads (50 threads on the sync API); default both")
    parser.add_argument("--pysyncobj-no-journal", action="store_true",
                        help="run PySyncObj in memory (no journalFile)")
    parser.add_argument("--pysyncobj-conf", default=json.dumps(PYSYNCOBJ_CONF),
                        help="extra SyncObjConf keyword arguments as JSON "
                             f"(default {json.dumps(PYSYNCOBJ_CONF)})")
    parser.add_argument("--replikv-mode", default="raft",
                        help="replikv's --mode (default raft; leader-follower only checks this "
                             "harness: its GETs are not linearizable)")
    parser.add_argument("--value-size", type=int, default=VALUE_SIZE,
                        help=f"bytes per value, for every system (default {VALUE_SIZE}; issue 15 "
                             "target 6 compares raft and etcd with 4096)")
    parser.add_argument("--markdown", action="store_true",
                        help="also print the results as a Markdown table")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (data, logs; its path is printed)")
    args = parser.parse_args(argv)
    VALUE_SIZE = args.value_size  # read by every system's driver below
    requests = args.requests or (20_000 if args.quick else 100_000)
    duration = args.duration or (5 if args.quick else 30)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    pipelines = [int(p) for p in args.pipelines.split(",") if p.strip()]
    apis = [a.strip() for a in args.pysyncobj_api.split(",") if a.strip()]
    if set(systems) - set(SYSTEMS) or not systems:
        parser.error(f"--systems takes a subset of {','.join(SYSTEMS)}")
    if set(apis) - {"callback", "threads"} or not apis:
        parser.error("--pysyncobj-api takes callback,threads")
    if requests < 1 or args.clients < 1 or duration < 1 or not pipelines or VALUE_SIZE < 1:
        parser.error("--requests, --clients, --duration, --pipelines and --value-size must be positive")

    ensure_tools(systems)
    run = Run()
    console.print(f"machine: {machine()}")
    root = Path(tempfile.mkdtemp(prefix="replikv-raft-bench-"))
    started = time.monotonic()
    benches: dict[str, Callable[[], None]] = {
        "replikv": lambda: bench_replikv(root, run, requests, args.clients, pipelines,
                                         args.replikv_mode),
        "etcd": lambda: bench_etcd(root, run, args.clients, duration),
        "pysyncobj": lambda: bench_pysyncobj(root, run, requests, args.clients, apis,
                                             not args.pysyncobj_no_journal,
                                             json.loads(args.pysyncobj_conf)),
    }
    try:
        for system in SYSTEMS:
            if system not in systems:
                continue
            console.print(f"[bold]{system}[/]: starting 3 nodes on loopback ...")
            t0 = time.monotonic()
            try:
                benches[system]()
            except Exception as e:  # noqa: BLE001 -- a failure must not lose the other rows
                run.notes.append(f"{system} failed: {e}")
                console.print(f"  [red]{system} failed:[/] {e}")
            run.durations[system] = time.monotonic() - t0
    except KeyboardInterrupt:
        run.notes.append("interrupted")
    finally:
        if args.keep:
            console.print(f"data and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    total = time.monotonic() - started
    console.print()
    print_table(run, f"Raft throughput, 3 nodes on loopback, {args.clients} clients, "
                     f"{VALUE_SIZE}-byte values ({total:.0f}s)")
    if args.markdown:
        print(markdown_table(run))
    console.print(f"machine: {machine()}")
    console.print("versions: " + "; ".join(run.versions.values()))
    console.print("durations: " + ", ".join(f"{k} {v:.0f}s" for k, v in run.durations.items())
                  + f"; total {total:.0f}s")
    console.print(f"commands: redis-benchmark -t set,get -n {requests} -c {args.clients} "
                  f"-d {VALUE_SIZE} -P {{{','.join(map(str, pipelines))}}} --csv; "
                  f"wrk -t{max(1, min(os.cpu_count() or 1, args.clients))} -c{args.clients} "
                  f"-d{duration}s --latency (POST /v3/kv/put, /v3/kv/range); "
                  f"PySyncObj {requests} writes per driver")
    console.print("ratios: each replikv row against the best etcd / PySyncObj row of the same "
                  "workload; only the -P 1 rows are at the same concurrency")
    for line in targets(run, args.clients):
        console.print(f"target {line}")
    for note in run.notes:
        console.print(f"[yellow]note:[/] {note}")
    failed = any("failed" in n or n == "interrupted" for n in run.notes)
    return 0 if any(r.ops for r in run.rows) and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
