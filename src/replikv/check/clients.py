"""Concurrent clients that drive a workload and record every op as Jepsen does.

Worker ``w`` of ``N`` talks to node ``w mod n`` over one redis-py connection
with a socket timeout and no automatic retry. Each op is recorded with its
invoke and completion times (ns since the run's start, monotonic clock) and
its outcome:

- ``ok=True``: the node answered success;
- ``ok=False``: the op definitely did not take effect: any failed read, a
  cas that did not swap, a write refused before it was logged
  (``MOVED``, ``TRYAGAIN no reachable leader``, ``TRYAGAIN writes are paused``, wrong type);
- ``ok=None`` (``return`` null): unknown: a timeout, a lost connection, or
  a write error that says the write may still be applied (``NOREPLICAS``
  ack timeout, leadership lost mid-write). Unknown is always the safe
  choice: a checker never counts an unknown write as acknowledged.

Ops go to a `HistoryWriter` (history.jsonl) as they complete, so a run of
any length holds no history in memory; errors are counted by kind (the RESP
error code, or the exception class) with one example message each.

Process ids follow Jepsen: after an unknown outcome the worker's connection
is dropped and it continues as a new process (``w + k*N``), so one process
id is one connection's session and never has two ops in flight. Each new
connection first sets ``CONSISTENCY READ <read_level>`` (and the write
level when given) so session guarantees hold per process.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from replikv.check.harness import Harness
from replikv.check.history import HistoryWriter, Op
from replikv.check.workloads import CasFailed, Declined, Invocation, Workload

# Write errors that prove the write was never logged (matched against `error_text`).
# A cross-group EXEC answered "transaction aborted" applied nothing anywhere; EXECABORT discarded the
# whole block; a request parked on a transaction's locks until its deadline was never proposed; a
# sharded group refuses a write to a moving slot before logging it, or at apply (runtime/raft_group.py),
# and one whose key a transaction locked at apply; CROSSSLOT is a routing refusal.
_DEFINITE_WRITE_ERRORS = ("CLUSTERDOWN", "MOVED", "TRYAGAIN WRITES ARE PAUSED", "TRYAGAIN NO REACHABLE LEADER",
                          "WRONGTYPE", "NOAUTH", "NOPERM", "ERR UNKNOWN COMMAND", "ERR WRONG NUMBER",
                          "TRYAGAIN TRANSACTION ABORTED", "EXECABORT", "TRYAGAIN A KEY STAYED LOCKED",
                          "TRYAGAIN THE KEY'S SLOT IS MOVING", "TRYAGAIN A KEY IS LOCKED BY TRANSACTION",
                          "CROSSSLOT")
# ... and errors whose message ends by saying so
_DEFINITE_ENDINGS = ("NOTHING WAS WRITTEN", "IT WAS NOT APPLIED")
_CODE = re.compile(r"[A-Z][A-Z0-9_-]*")
# redis-py strips these codes from the message and raises a class instead (older versions
# keep no `status_code`): the class names the code back.
_CODE_OF_CLASS: dict[type, str] = {
    redis.exceptions.TryAgainError: "TRYAGAIN", redis.exceptions.MovedError: "MOVED",
    redis.exceptions.AskError: "ASK", redis.exceptions.ClusterDownError: "CLUSTERDOWN",
    redis.exceptions.ReadOnlyError: "READONLY", redis.exceptions.NoPermissionError: "NOPERM",
    redis.exceptions.ExecAbortError: "EXECABORT", redis.exceptions.BusyLoadingError: "LOADING",
    redis.exceptions.AuthenticationError: "NOAUTH", redis.exceptions.ClusterCrossSlotError: "CROSSSLOT",
}


def error_kind(error: Exception) -> str:
    """What kind of error: the RESP error code of a server error (``TRYAGAIN``, ``MOVED``,
    ``NOREPLICAS``, ``ERR`` ...), else the exception's class (``TimeoutError``, ``ConnectionError``)."""
    if not isinstance(error, redis.ResponseError):
        return type(error).__name__
    code = getattr(error, "status_code", None)
    if code:
        return str(code)
    first = str(error).split(" ", 1)[0]
    if _CODE.fullmatch(first):
        return first
    return next((c for cls, c in _CODE_OF_CLASS.items() if isinstance(error, cls)), "ERR")


def error_text(error: Exception) -> str:
    """A server error as the server sent it (code, then message: redis-py strips the code);
    any other error's message."""
    if not isinstance(error, redis.ResponseError):
        return str(error) or type(error).__name__
    kind, message = error_kind(error), str(error)
    return message if message.split(" ", 1)[0] == kind else f"{kind} {message}".strip()


def classify_error(op: str, error: Exception) -> bool | None:
    """The recorded outcome for an op that raised: False (did not happen) or None (unknown)."""
    if isinstance(error, CasFailed):
        return False
    if op == "read":
        return False
    if isinstance(error, redis.ResponseError):
        text = error_text(error).upper()
        if any(text.startswith(p) for p in _DEFINITE_WRITE_ERRORS):
            return False
        if text.endswith(_DEFINITE_ENDINGS):  # the node says so (leaderless: UNAVAILABLE, a Paxos prepare)
            return False
    return None


@dataclass
class ErrorKinds:
    """Client errors counted by kind (`error_kind`), with the first message of each kind."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, error: Exception) -> None:
        kind = error_kind(error)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.examples.setdefault(kind, error_text(error)[:160])

    def summary(self) -> str:
        """One line, most frequent kind first: ``TRYAGAIN x716 (e.g. "TRYAGAIN n4 is not the leader ...")``."""
        return ", ".join(f"{k} x{n} (e.g. {self.examples[k]!r})"
                         for k, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class ClientPool:
    """N worker threads; `run` until `stop` is set, then `history` holds every op.

    With ``pipeline`` P > 1 a worker sends P invocations at a time on its connection, in one
    pipeline (those the workload cannot send as one plain command run alone, after it). Each
    of the P slots is its own history process, so every process stays sequential (one op in
    flight), as the checkers require: worker ``w``'s slot ``s`` in its ``i``-th connection is
    process ``w + clients * (i * P + s)``, still ``w`` modulo ``clients`` (the worker's node,
    runner.py's ``node_of``). A pipeline's ops share their call and return times; when its
    connection fails, every op of it is judged by that error.
    """

    harness: Harness
    workload: Workload
    clients: int
    seed: int
    start_ns: int
    read_level: str | None = None
    write_level: str | None = None
    timeout_s: float = 2.0
    pipeline: int = 1
    writer: HistoryWriter | None = None  # ops go to the file as they complete (bounded memory)
    history: list[Op] = field(default_factory=list)  # ...or here, when there is no writer
    errors: ErrorKinds = field(default_factory=ErrorKinds)
    ops: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def now(self) -> int:
        return time.monotonic_ns() - self.start_ns

    def start(self) -> None:
        for w in range(self.clients):
            t = threading.Thread(target=self._worker, args=(w,), name=f"check-client-{w}", daemon=True)
            t.start()
            self._threads.append(t)

    def join(self, timeout_s: float = 30.0) -> None:
        self.stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def _record(self, op: Op, error: Exception | None = None) -> None:
        if self.writer is not None:
            self.writer.append(op, self.now())
        with self._lock:
            self.ops += 1
            if self.writer is None:
                self.history.append(op)
            if error is not None and type(error) is not CasFailed and not isinstance(error, Declined):
                self.errors.add(error.__cause__ if isinstance(error.__cause__, Exception) else error)

    def _connect(self, node: str) -> redis.Redis:
        c = self.harness.client(node, self.timeout_s)
        if self.read_level:
            c.execute_command("CONSISTENCY", "READ", *self.read_level.split())
        if self.write_level:
            c.execute_command("CONSISTENCY", "WRITE", *self.write_level.split())
        return c

    def _worker(self, w: int) -> None:
        rng = random.Random(self.seed * 1000 + w)
        nodes = self.harness.ids
        node = nodes[w % len(nodes)]
        incarnation, seq = 0, 0
        client: redis.Redis | None = None
        last_read: dict[str, str | None] = {}
        with self.harness.netns():
            while not self.stop.is_set():
                if client is None:
                    try:
                        client = self._connect(node)
                    except (redis.RedisError, OSError):
                        client = None
                        self.stop.wait(0.1)  # back off while the node is down (bounded by stop)
                        continue
                batch = []
                for slot in range(self.pipeline):
                    process = w + self.clients * (incarnation * self.pipeline + slot)
                    seq += 1
                    inv = self.workload.next(rng, process, seq)
                    if inv.op == "cas":
                        if last_read.get(inv.key) is None:
                            inv = Invocation("write", inv.key, inv.value)
                        else:
                            inv = Invocation("cas", inv.key, inv.value, last_read[inv.key])
                    batch.append((process, inv))
                piped: list[tuple[int, Invocation, tuple[str, ...]]] = []
                alone = batch
                if self.pipeline > 1:
                    alone = []
                    for p, inv in batch:
                        cmd = self.workload.command(inv)
                        if cmd is None:
                            alone.append((p, inv))
                        else:
                            piped.append((p, inv, cmd))
                broken = self._run_pipeline(client, piped, last_read) if piped else False
                for process, inv in alone:
                    if broken:
                        break
                    broken = self._run_one(client, process, inv, last_read)
                if broken:
                    _close(client)
                    client = None
                    incarnation += 1
        if client is not None:
            _close(client)

    def _outcome(self, process: int, inv: Invocation, call: int, e: Exception) -> bool:
        """Record ``inv``'s failure with ``e``; True when the connection is no longer usable."""
        outcome = classify_error(inv.op, e)
        ret = self.now() if outcome is False else None
        self._record(Op(process, inv.op, inv.key, None if inv.op == "read" else inv.value,
                        inv.expected, outcome, call, ret), e)
        return outcome is None or isinstance(e, (redis.ConnectionError, redis.TimeoutError, OSError))

    def _done(self, process: int, inv: Invocation, value: str | None, call: int, ret: int,
              last_read: dict[str, str | None]) -> None:
        if inv.op == "read":
            last_read[inv.key] = value
        self._record(Op(process, inv.op, inv.key, value, inv.expected, True, call, ret))

    def _run_one(self, client: redis.Redis, process: int, inv: Invocation,
                 last_read: dict[str, str | None]) -> bool:
        """Run ``inv`` alone; True when the connection broke (or its outcome is unknown)."""
        call = self.now()
        try:
            value = self.workload.execute(client, inv)
        except Exception as e:  # every failure is recorded, none is fatal
            return self._outcome(process, inv, call, e)
        self._done(process, inv, value, call, self.now(), last_read)
        return False

    def _run_pipeline(self, client: redis.Redis, piped: list[tuple[int, Invocation, tuple[str, ...]]],
                      last_read: dict[str, str | None]) -> bool:
        """Send ``piped`` in one pipeline (no MULTI); True when the connection broke."""
        call = self.now()
        pipe = client.pipeline(transaction=False)
        for _, _, cmd in piped:
            pipe.execute_command(*cmd)
        try:
            replies = pipe.execute(raise_on_error=False)
        except Exception as e:  # the connection failed: each op is judged by that error
            for process, inv, _ in piped:
                self._outcome(process, inv, call, e)
            return True
        ret = self.now()
        broken = False
        for (process, inv, _), reply in zip(piped, replies):
            if isinstance(reply, Exception):
                broken = self._outcome(process, inv, call, reply) or broken
                continue
            try:
                value = self.workload.reply_value(inv, reply)
            except Exception as e:
                broken = self._outcome(process, inv, call, e) or broken
                continue
            self._done(process, inv, value, call, ret, last_read)
        return broken


def _close(client: redis.Redis) -> None:
    try:
        client.close()
    except Exception:  # closing a broken connection may raise; nothing to do
        pass


FINAL_READ_RETRY_S = 10.0
_NO_READ = object()


def run_final_reads(harness: Harness, node: str, workload: Workload, now: Callable[[], int],
                    errors: list[str] | None = None) -> list[Op]:
    """One ``final`` op per key, read on ``node`` (the leader after heal), value JSON-encoded; a key
    whose read failed has none, and ``errors`` (when given) gets why."""
    import json

    from replikv.check.history import FINAL_PROCESS

    ops: list[Op] = []
    with harness.netns():
        c = harness.client(node, 5.0)
        try:
            for key in workload.keys:
                call = now()
                deadline = time.monotonic() + FINAL_READ_RETRY_S
                while True:
                    try:
                        value = workload.final(c, key)
                        break
                    except (redis.exceptions.TryAgainError, redis.ConnectionError, redis.TimeoutError) as e:
                        # a leader change after heal (a sharded group handed back to its preferred
                        # leader): a read has no effect, so ask again until the deadline
                        if time.monotonic() > deadline:
                            value = _NO_READ
                            if errors is not None:
                                errors.append(f"final read of {key} failed for {FINAL_READ_RETRY_S:g} s: "
                                              f"{error_text(e)}")
                            break
                        time.sleep(0.05)
                    except (redis.RedisError, OSError) as e:
                        value = _NO_READ
                        if errors is not None:
                            errors.append(f"final read of {key} failed: {error_text(e)}")
                        break
                if value is _NO_READ:
                    continue
                ops.append(Op(FINAL_PROCESS, "final", key, json.dumps(value), None, True, call, now()))
        finally:
            _close(c)
    return ops
