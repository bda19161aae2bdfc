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

Process ids follow Jepsen: after an unknown outcome the worker's connection
is dropped and it continues as a new process (``w + k*N``), so one process
id is one connection's session and never has two ops in flight. Each new
connection first sets ``CONSISTENCY READ <read_level>`` (and the write
level when given) so session guarantees hold per process.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from replikv.check.harness import Harness
from replikv.check.history import Op
from replikv.check.workloads import CasFailed, Invocation, Workload

# Write errors that prove the write was never logged.
_DEFINITE_WRITE_ERRORS = ("CLUSTERDOWN", "MOVED", "TRYAGAIN WRITES ARE PAUSED", "TRYAGAIN NO REACHABLE LEADER",
                          "WRONGTYPE", "NOAUTH", "NOPERM", "ERR UNKNOWN COMMAND", "ERR WRONG NUMBER")


def classify_error(op: str, error: Exception) -> bool | None:
    """The recorded outcome for an op that raised: False (did not happen) or None (unknown)."""
    if isinstance(error, CasFailed):
        return False
    if op == "read":
        return False
    if isinstance(error, redis.ResponseError):
        text = str(error).upper()
        if any(text.startswith(p) for p in _DEFINITE_WRITE_ERRORS):
            return False
    return None


@dataclass
class ClientPool:
    """N worker threads; `run` until `stop` is set, then `history` holds every op."""

    harness: Harness
    workload: Workload
    clients: int
    seed: int
    start_ns: int
    read_level: str | None = None
    write_level: str | None = None
    timeout_s: float = 2.0
    history: list[Op] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
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
        with self._lock:
            self.history.append(op)
            if error is not None:
                name = type(error).__name__ if not isinstance(error, redis.ResponseError) else \
                    str(error).split(" ", 1)[0]
                self.errors[name] = self.errors.get(name, 0) + 1

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
                process = w + incarnation * self.clients
                if client is None:
                    try:
                        client = self._connect(node)
                    except (redis.RedisError, OSError):
                        client = None
                        self.stop.wait(0.1)  # back off while the node is down (bounded by stop)
                        continue
                seq += 1
                inv = self.workload.next(rng, process, seq)
                if inv.op == "cas":
                    if last_read.get(inv.key) is None:
                        inv = Invocation("write", inv.key, inv.value)
                    else:
                        inv = Invocation("cas", inv.key, inv.value, last_read[inv.key])
                call = self.now()
                try:
                    value = self.workload.execute(client, inv)
                except Exception as e:  # every failure is recorded, none is fatal
                    outcome = classify_error(inv.op, e)
                    ret = self.now() if outcome is False else None
                    self._record(Op(process, inv.op, inv.key, None if inv.op == "read" else inv.value,
                                    inv.expected, outcome, call, ret), e)
                    if outcome is None or isinstance(e, (redis.ConnectionError, redis.TimeoutError, OSError)):
                        _close(client)
                        client = None
                        incarnation += 1
                    continue
                ret = self.now()
                if inv.op == "read":
                    last_read[inv.key] = value
                self._record(Op(process, inv.op, inv.key, value, inv.expected, True, call, ret))
        if client is not None:
            _close(client)


def _close(client: redis.Redis) -> None:
    try:
        client.close()
    except Exception:  # closing a broken connection may raise; nothing to do
        pass


def run_final_reads(harness: Harness, node: str, workload: Workload, now: Callable[[], int]) -> list[Op]:
    """One ``final`` op per key, read on ``node`` (the leader after heal), value JSON-encoded."""
    import json

    from replikv.check.history import FINAL_PROCESS

    ops: list[Op] = []
    with harness.netns():
        c = harness.client(node, 5.0)
        try:
            for key in workload.keys:
                call = now()
                try:
                    value = workload.final(c, key)
                except (redis.RedisError, OSError):
                    continue
                ops.append(Op(FINAL_PROCESS, "final", key, json.dumps(value), None, True, call, now()))
        finally:
            _close(c)
    return ops
