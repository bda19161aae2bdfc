"""The register workload: a replicated key-value state machine and its clients.

State machine: one register per key. Commands are msgpack lists
["w", key, value] and ["c", key, expected, new]; each goes through the
session table (core/raft/sessions.py) so that a retried (client_id, seq) is
applied at most once (thesis §6.3). Reads skip the log: they go through
ReadIndex (thesis §6.4) and are served from a replica once it has applied
the read index.

Clients: each is one sequential process with its own client_id. An operation
keeps its first call time across attempts; a write or cas that times out or
is refused is retried, with the same seq, on another node (the dedup table
makes the retry safe); a read is simply asked again. An operation still
unanswered when the run ends is recorded with ok=None (unknown outcome).
Bounds: one outstanding op per client; `max_attempts` per op.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import msgpack

from replikv.check.history import Op
from replikv.core.raft.messages import Entry, EntryKind
from replikv.core.raft.sessions import SessionTable

__all__ = ["Client", "KVStateMachine", "PendingOp"]


class KVStateMachine:
    __slots__ = ("applied_index", "data", "sessions")

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.sessions = SessionTable(max_sessions=256)
        self.applied_index = 0

    def apply(self, entry: Entry) -> Any:
        self.applied_index = entry.index
        if entry.kind is not EntryKind.NORMAL:
            return None
        return self.sessions.apply(entry, self._apply_command)

    def _apply_command(self, entry: Entry) -> str:
        cmd = msgpack.unpackb(entry.data)
        if cmd[0] == "w":
            self.data[cmd[1]] = cmd[2]
            return "ok"
        if cmd[0] == "c":
            if self.data.get(cmd[1]) == cmd[2]:
                self.data[cmd[1]] = cmd[3]
                return "ok"
            return "fail"
        raise ValueError(f"unknown command {cmd!r}")

    def snapshot(self) -> bytes:
        return msgpack.packb(
            [self.applied_index, sorted(self.data.items()), self.sessions.to_state()]
        )

    def restore(self, data: bytes, index: int) -> None:
        if not data:
            self.data, self.sessions, self.applied_index = {}, SessionTable(256), index
            return
        _applied, items, sessions = msgpack.unpackb(data, strict_map_key=False)
        self.applied_index = index
        self.data = {k: v for k, v in items}
        self.sessions = SessionTable.from_state([tuple(s) for s in sessions], 256)


@dataclass
class PendingOp:
    process: int
    op: str  # read | write | cas
    key: str
    value: str | None
    expected: str | None
    call_us: int
    seq: int
    attempts: int = 0
    attempt_id: object = None
    deadline_us: int = 0
    node: int | None = None


@dataclass
class Client:
    process: int
    client_id: int
    rng: random.Random
    keys: list[str]
    seq: int = 0
    counter: int = 0
    tokens: int = 0  # attempt ids, unique over the client's life
    leader_hint: int | None = None
    pending: PendingOp | None = None
    history: list[Op] = field(default_factory=list)

    def next_op(self, now_us: int) -> PendingOp:
        r = self.rng.random()
        key = self.rng.choice(self.keys)
        self.counter += 1
        value = f"{self.process}.{self.counter}"
        if r < 0.45:
            op = PendingOp(self.process, "read", key, None, None, now_us, 0)
        elif r < 0.8:
            self.seq += 1
            op = PendingOp(self.process, "write", key, value, None, now_us, self.seq)
        else:
            self.seq += 1
            # Expect a value this client may have seen or written, or absence.
            pool = [None] + [
                f"{p}.{c}"
                for p in range(1, 4)
                for c in range(max(1, self.counter - 3), self.counter)
            ]
            op = PendingOp(self.process, "cas", key, value, self.rng.choice(pool), now_us, self.seq)
        self.pending = op
        return op

    def complete(self, ok: bool | None, value: str | None, now_us: int) -> None:
        p = self.pending
        if p is None:
            return
        v = value if p.op == "read" else p.value
        self.history.append(
            Op(
                p.process,
                p.op,
                p.key,
                v,
                p.expected,
                ok,
                p.call_us * 1000,
                now_us * 1000 if ok is not None else None,
            )
        )
        self.pending = None

    @staticmethod
    def encode(p: PendingOp) -> bytes:
        if p.op == "write":
            return msgpack.packb(["w", p.key, p.value])
        return msgpack.packb(["c", p.key, p.expected, p.value])
