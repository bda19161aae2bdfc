"""The lock workload's clients as OS processes, so that a nemesis can SIGSTOP one holding a lock.

Issue 14: "clients take the lock, write under fencing, and are paused (SIGSTOP) past their
lease by the nemesis". Kleppmann ("How to do distributed locking", 2016) describes the fault: a
client holding a lease is stopped (a GC pause, a SIGSTOP), its lease runs out, another client
takes the lock, and the first one wakes up and writes believing it still holds it; the fencing
token is what keeps that write out. A check client thread cannot be stopped alone (a signal stops
a whole process), so each lock client here is its own process:

    python -m replikv.check.lock_client --host H --port P --worker W --clients N --locks lock0,lock1
        --ttl-ms 600 --wait-ms 1000 --origin-ns T [--unfenced] [--seed S] [--read-level L] [--gate F]

Its loop: ``LOCK name ttl WAIT ms`` (op ``acquire``, value = the token), a little work while
holding the lock (a sleep of `WORK_MS`: the window in which the client-pause nemesis stops it),
``FENCED name token RPUSH {name}log "<token>:<process>-<seq>"`` (op ``write``; a plain RPUSH with
``--unfenced``), ``UNLOCK name token`` (op ``release``, value = the token; ok=false when the token
no longer held the lock). Outcomes are classified as the thread clients classify them
(clients.py `classify_error`: ok / fail / unknown), and process ids follow Jepsen as there: after
an unknown outcome the client reconnects as process ``worker + k * clients``, holding nothing.

Every completed op is one JSON line on stdout, ``{"op": <the history line (history.op_to_json)>,
"error": null | [kind, text]}`` (`report_line` / `parse_report`), read by a thread of
`LockClientPool` in the checker and written to the history: the same ops check/locks.py judges.
Times are ``time.monotonic_ns() - origin``: the monotonic clock is system-wide on Linux, so with
the checker's origin they are on the checker's clock (and the nodes', which count leases on it).

SIGTERM asks the client to stop after the op in flight; it also stops when its parent dies
(parent_death.py) or its stdout closes.

The nemesis must stop a holder *before* it sends its write, and a report arrives only once an op
has completed: a holder whose write is in flight still looks like a holder. `WriteGate` closes
that gap (``--gate PATH``): the client records the token it is about to write for under a file
lock, and the pool stops a client only under the same lock and only when that record is not the
holder's token, so a stopped holder has provably not yet sent its write.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis

from replikv.check.history import HistoryFormatError, HistoryWriter, Op, op_from_json, op_to_json

__all__ = ["Holder", "LockClientPool", "main", "parse_report", "report_line"]

WORK_MS = (50, 250)  # how long a holder works before its write: where the nemesis stops it


# -- the report format ------------------------------------------------------------------------
def report_line(op: Op, error: tuple[str, str] | None = None) -> str:
    """One op as the client reports it (no newline): the history line and the error, if any,
    to count (kind, text)."""
    return json.dumps({"op": op_to_json(op), "error": list(error) if error else None})


def parse_report(line: str) -> tuple[Op, tuple[str, str] | None]:
    """The op and error of one `report_line`; raises HistoryFormatError saying why not."""
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise HistoryFormatError(f"lock client report is not JSON: {line[:120]!r}: {e}") from None
    if not isinstance(obj, dict) or "op" not in obj:
        raise HistoryFormatError(f"lock client report has no op: {line[:120]!r}")
    op = op_from_json(obj["op"])
    error = obj.get("error")
    if error is None:
        return op, None
    if not (isinstance(error, list) and len(error) == 2 and all(isinstance(x, str) for x in error)):
        raise HistoryFormatError(f"lock client report's error is not [kind, text]: {line[:120]!r}")
    return op, (error[0], error[1])


# -- the write gate ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WriteGate:
    """A file shared by one lock client and the pool (module docstring). Invariant: while the
    pool holds the file lock and the file does not name a token, the client has not sent the
    write of that token's hold, and cannot until the lock is released."""

    path: Path

    def _locked(self, fn: Callable[[int], Any]) -> Any:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return fn(fd)  # closing the fd releases the lock
        finally:
            os.close(fd)

    def writing(self, token: str) -> None:
        """The client: about to send the write of ``token``'s hold."""
        def mark(fd: int) -> None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, token.encode(), 0)
        self._locked(mark)

    def stop_unless_writing(self, token: int, stop: Callable[[], bool]) -> bool:
        """The pool: run ``stop`` (which SIGSTOPs the client; its result is returned) unless the
        client has already begun the write of ``token``'s hold (then False, nothing stopped)."""
        def check(fd: int) -> bool:
            return os.pread(fd, 32, 0) != str(token).encode() and stop()
        return bool(self._locked(check))


# -- the client process -----------------------------------------------------------------------
class _Stop:
    requested = False


def _log_key(lock: str) -> str:
    return "{%s}log" % lock  # = workloads.LockWorkload.log_key (not imported: keeps this light)


def run_client(args: argparse.Namespace, out: IO[str], stop: Callable[[], bool]) -> None:
    """The client loop (module docstring) until ``stop()``; reports go to ``out``."""
    from replikv.check.clients import classify_error, error_kind, error_text

    rng = random.Random(args.seed * 1000 + args.worker)
    locks = args.locks.split(",")

    def now() -> int:
        return time.monotonic_ns() - args.origin_ns

    def report(op: Op, error: Exception | None = None) -> None:
        counted = None
        if error is not None and not isinstance(error, _NotHeld):
            cause = error.__cause__ if isinstance(error.__cause__, Exception) else error
            counted = (error_kind(cause), error_text(cause)[:160])
        out.write(report_line(op, counted) + "\n")
        out.flush()

    incarnation, seq = 0, 0
    client: redis.Redis | None = None

    def attempt(process: int, name: str, key: str, value: str | None, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """Run one op and report it; (True, result) on success. An unknown outcome or a broken
        connection drops the connection: the caller continues as a new process."""
        nonlocal client, incarnation
        call = now()
        try:
            result = fn()
        except Exception as e:  # every failure is reported, none is fatal
            outcome = False if isinstance(e, _NotHeld) else classify_error(name, e)
            report(Op(process, name, key, value, None, outcome, call, now() if outcome is False else None), e)
            if outcome is None or isinstance(e, (redis.ConnectionError, redis.TimeoutError, OSError)):
                _close(client)
                client = None
                incarnation += 1
            return False, None
        report(Op(process, name, key, result if name == "acquire" else value, None, True, call, now()))
        return True, result

    while not stop():
        process = args.worker + incarnation * args.clients
        if client is None:
            try:
                client = _connect(args)
            except (redis.RedisError, OSError):
                client = None
                time.sleep(0.1)  # the node is down: back off (a stop request is seen next round)
                continue
        c = client
        lock = rng.choice(locks)

        def lock_it() -> str:
            token = c.execute_command("LOCK", lock, args.ttl_ms, "WAIT", args.wait_ms)
            if token is None:
                raise _NotHeld("not granted")
            return str(token)

        ok, token = attempt(process, "acquire", lock, None, lock_it)
        if not ok:
            continue
        time.sleep(rng.uniform(*WORK_MS) / 1000)  # holding the lock: the nemesis may stop us here
        if args.gate:
            WriteGate(Path(args.gate)).writing(token)  # from here on the nemesis leaves us running
        seq += 1
        entry = f"{token}:{process}-{seq}"
        if args.unfenced:
            ok, _ = attempt(process, "write", lock, entry, lambda: c.rpush(_log_key(lock), entry))
        else:
            ok, _ = attempt(process, "write", lock, entry,
                            lambda: c.execute_command("FENCED", lock, token, "RPUSH", _log_key(lock), entry))
        if client is None:
            continue  # unknown: a new process, holding nothing (the lease expires on the service)

        def unlock() -> str:
            if c.execute_command("UNLOCK", lock, token) != 1:
                raise _NotHeld("the token no longer held the lock")  # its lease ran out
            return str(token)

        attempt(process, "release", lock, str(token), unlock)
    _close(client)


class _NotHeld(Exception):
    """LOCK WAIT answered nil, or UNLOCK found the token no longer holding: a definite failure."""


def _connect(args: argparse.Namespace) -> redis.Redis:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    c = redis.Redis(host=args.host, port=args.port, socket_timeout=args.timeout_s,
                    socket_connect_timeout=args.timeout_s, retry=Retry(NoBackoff(), 0),
                    single_connection_client=True, decode_responses=True)
    if args.read_level:
        c.execute_command("CONSISTENCY", "READ", *args.read_level.split())
    return c


def _close(client: redis.Redis | None) -> None:
    if client is not None:
        with contextlib.suppress(Exception):  # closing a broken connection may raise
            client.close()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m replikv.check.lock_client", description=__doc__.split("\n")[0])
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--worker", type=int, required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--locks", required=True, help="comma-separated lock names")
    p.add_argument("--ttl-ms", type=int, required=True)
    p.add_argument("--wait-ms", type=int, required=True)
    p.add_argument("--origin-ns", type=int, required=True, help="time.monotonic_ns() of the run's start")
    p.add_argument("--unfenced", action="store_true", help="plain RPUSH instead of FENCED ... RPUSH")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout-s", type=float, default=2.0)
    p.add_argument("--read-level", default=None)
    p.add_argument("--gate", default=None, help="the WriteGate file shared with the checker")
    return p


def main(argv: list[str] | None = None) -> int:
    from replikv.parent_death import die_with_parent

    args = _parser().parse_args(argv)
    die_with_parent()
    stop = _Stop()

    def on_term(signum: int, frame: object) -> None:
        stop.requested = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        run_client(args, sys.stdout, lambda: stop.requested)
    except BrokenPipeError:  # the checker went away
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


# -- the checker's side -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Holder:
    """A client process that reported a grant and has not yet reported its write."""

    worker: int
    pid: int
    process: int  # the history process that holds the lock
    lock: str
    token: int


@dataclass
class LockClientPool:
    """N lock client processes (module docstring), the ClientPool interface the runner uses
    (`now`, `start`, `stop`, `join`, `errors`, `ops`), and the levers of the client-pause nemesis
    (`holders`, `pause`, `resume`). Worker ``w`` talks to node ``w mod n``, as ClientPool's."""

    harness: Any  # harness.Harness (not imported at module level: the client process stays light)
    workload: Any  # workloads.LockWorkload
    clients: int
    seed: int
    start_ns: int
    read_level: str | None = None
    timeout_s: float = 2.0
    writer: HistoryWriter | None = None
    history: list[Op] = field(default_factory=list)  # ops when there is no writer
    errors: Any = None  # clients.ErrorKinds
    ops: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    malformed: list[str] = field(default_factory=list)  # report lines that did not parse
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _procs: dict[int, subprocess.Popen[str]] = field(default_factory=dict)
    _readers: list[threading.Thread] = field(default_factory=list)
    _holding: dict[int, Holder] = field(default_factory=dict)
    _stopped: set[int] = field(default_factory=set)
    _was_stopped: set[Holder] = field(default_factory=set)  # a hold is stopped once, not again on waking

    def __post_init__(self) -> None:
        if self.errors is None:
            from replikv.check.clients import ErrorKinds
            self.errors = ErrorKinds()

    def now(self) -> int:
        return time.monotonic_ns() - self.start_ns

    def command(self, w: int) -> list[str]:
        h = self.harness
        nodes = h.ids
        addr = h.config.nodes[nodes[w % len(nodes)]]
        cmd = [sys.executable, "-m", "replikv.check.lock_client", "--host", addr.host, "--port", str(addr.port),
               "--worker", str(w), "--clients", str(self.clients), "--locks", ",".join(self.workload.keys),
               "--ttl-ms", str(self.workload.TTL_MS), "--wait-ms", str(self.workload.WAIT_MS),
               "--origin-ns", str(self.start_ns), "--seed", str(self.seed), "--timeout-s", str(self.timeout_s)]
        if not self.workload.fenced:
            cmd.append("--unfenced")
        cmd += ["--gate", str(self.gate(w).path)]
        if self.read_level:
            cmd += ["--read-level", self.read_level]
        if getattr(h, "use_netns", False):
            cmd = ["ip", "netns", "exec", h.ns_name, *cmd]  # execs: the pid is the client's
        return cmd

    def start(self) -> None:
        from replikv.parent_death import child_env

        env = child_env({**os.environ, "PYTHONUNBUFFERED": "1"})
        for w in range(self.clients):
            log = open(Path(self.harness.root) / f"lock-client-{w}.log", "ab")
            try:
                proc = subprocess.Popen(self.command(w), stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                                        start_new_session=True)
            finally:
                log.close()
            self._procs[w] = proc
            t = threading.Thread(target=self._read, args=(w, proc), name=f"check-lock-client-{w}", daemon=True)
            t.start()
            self._readers.append(t)

    def _read(self, w: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.strip():
                continue
            try:
                op, error = parse_report(line)
            except HistoryFormatError as e:
                with self._lock:
                    self.malformed.append(str(e))
                continue
            with self._lock:
                if op.op == "acquire" and op.ok is True and op.value is not None:
                    self._holding[w] = Holder(w, proc.pid, op.process, op.key, int(op.value))
                else:
                    self._holding.pop(w, None)  # wrote (or tried to), released, or lost its session
                self.ops += 1
                if self.writer is None:
                    self.history.append(op)
                if error is not None:
                    kind, text = error
                    self.errors.counts[kind] = self.errors.counts.get(kind, 0) + 1
                    self.errors.examples.setdefault(kind, text)
            if self.writer is not None:
                self.writer.append(op, self.now())

    # -- the client-pause nemesis's levers ----------------------------------------------------
    def holders(self) -> list[Holder]:
        """The clients that hold a lock and have not yet sent their write (nor been stopped while
        holding it), by worker."""
        with self._lock:
            return [h for _, h in sorted(self._holding.items())
                    if h.worker not in self._stopped and h not in self._was_stopped]

    def gate(self, w: int) -> WriteGate:
        return WriteGate(Path(self.harness.root) / f"lock-client-{w}.gate")

    def pause(self, holder: Holder) -> bool:
        """SIGSTOP the holder's process before it sends its write (`WriteGate`); False when it
        has exited, let go or begun its write meanwhile (then it is not stopped)."""
        proc = self._procs.get(holder.worker)
        if proc is None or proc.poll() is not None:
            return False

        def stop() -> bool:
            with self._lock:
                if self._holding.get(holder.worker) != holder:
                    return False
                proc.send_signal(signal.SIGSTOP)
                self._stopped.add(holder.worker)
                self._was_stopped.add(holder)
            return True

        return self.gate(holder.worker).stop_unless_writing(holder.token, stop)

    def resume(self, worker: int) -> None:
        proc = self._procs.get(worker)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
        with self._lock:
            self._stopped.discard(worker)

    def resume_all(self) -> None:
        for w in list(self._stopped):
            self.resume(w)

    def join(self, timeout_s: float = 30.0) -> None:
        """Ask every client to stop after its op in flight (SIGCONT, SIGTERM), wait for them and
        their reports; a client still running at the deadline is killed."""
        self.stop.set()
        deadline = time.monotonic() + timeout_s
        for w, proc in self._procs.items():
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
            self._stopped.discard(w)
        for proc in self._procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for t in self._readers:
            t.join(max(0.1, deadline - time.monotonic()))
        for proc in self._procs.values():
            if proc.stdout is not None:
                proc.stdout.close()

    def close(self) -> None:
        """Kill every client still running (a run that aborted)."""
        for proc in self._procs.values():
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGCONT)
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
