"""Simulated clients: sequential processes that record a history (check/history.py).

Two workloads, chosen by the mode's driver:

- ``register``: read, write and cas on a few keys (``GET``, ``SET``,
  ``CAS``), checked for linearizability.
- ``append``: append a unique value to a list (``RPUSH``) and read the
  list (``LRANGE``), checked for lost and duplicated writes.

Each client is one process with its own client_id: one outstanding
operation, which keeps its first call time across attempts. Whether an
attempt that timed out is retried is the driver's call (a retry is safe
only where the mode deduplicates it: raft's session table, with the same
seq). An operation that ends without an answer is recorded with ok=None
(unknown outcome). Values are unique per client: ``<process>.<counter>``.
Bounds: one outstanding op per client; the engine's ``max_attempts``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from replikv.check.history import Op

__all__ = ["Client", "PendingOp", "WORKLOADS"]

# op kind -> cumulative probability
WORKLOADS: dict[str, tuple[tuple[str, float], ...]] = {
    "register": (("read", 0.45), ("write", 0.8), ("cas", 1.0)),
    "append": (("read", 0.3), ("append", 1.0)),
}


@dataclass
class PendingOp:
    process: int
    op: str  # read | write | cas | append
    key: str
    value: str | None
    expected: str | None
    call_us: int
    seq: int
    attempts: int = 0
    refusals: int = 0  # attempts refused before taking effect (the engine's retry backoff)
    attempt_id: int = 0
    node: int | None = None


@dataclass
class Client:
    process: int
    client_id: int
    rng: random.Random
    keys: list[str]
    workload: str = "register"
    seq: int = 0
    counter: int = 0
    tokens: int = 0  # attempt ids, unique over the client's life
    leader_hint: int | None = None
    pending: PendingOp | None = None
    history: list[Op] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)  # values read or written (cas expectations)

    def next_op(self, now_us: int) -> PendingOp:
        r = self.rng.random()
        kind = next(k for k, p in WORKLOADS[self.workload] if r < p)
        key = self.rng.choice(self.keys)
        self.counter += 1
        value = f"{self.process}.{self.counter}"
        if kind == "read":
            op = PendingOp(self.process, "read", key, None, None, now_us, 0)
        elif kind == "cas":
            self.seq += 1
            # Expect a value this client saw lately (CAS on an absent key fails, as in replikv).
            expected = self.rng.choice(self.seen[-6:]) if self.seen else "none"
            op = PendingOp(self.process, "cas", key, value, expected, now_us, self.seq)
        else:
            self.seq += 1
            op = PendingOp(self.process, kind, key, value, None, now_us, self.seq)
            self.seen.append(value)
        self.pending = op
        return op

    def new_attempt(self) -> int:
        p = self.pending
        assert p is not None
        p.attempts += 1
        self.tokens += 1
        p.attempt_id = self.tokens  # an old attempt's answer is never taken for this one
        return self.tokens

    def complete(self, ok: bool | None, value: str | None, now_us: int) -> None:
        p = self.pending
        if p is None:
            return
        v = value if p.op == "read" else p.value
        if p.op == "read" and value is not None and self.workload == "register":
            self.seen.append(value)
        self.history.append(Op(p.process, p.op, p.key, v, p.expected, ok, p.call_us * 1000,
                               now_us * 1000 if ok is not None else None))
        self.pending = None
