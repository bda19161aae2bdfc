"""One Raft group's part in cross-group transactions: its intents and its transaction records.

The design (docs/design.md, "Transactions across groups") is two-phase commit whose decision
is not in the coordinator's memory but in a *transaction record* replicated in the log of one
participant group, the primary (the shape of Percolator's primary lock and CockroachDB's
transaction record). Every rule here is applied by every replica of the group at the same log
position (deterministic: the only time is the one each entry carries, the proposing leader's
wall clock, folded into a monotone *log time*).

Participant (prepare = phase one):
- A prepare locks every key its commands name (reads too: exclusive locks, strict two-phase
  locking, hence serializable) and applies the commands in place, keeping an *undo* (the keys'
  previous values) to roll back. While a key holds an intent no other write or read of it is
  served (the runner parks them), so nobody sees an uncommitted value.
- A key locked by another transaction: wait-die (Rosenkrantz, Stearns & Lewis 1978): an older
  requester (smaller timestamp) waits, a younger one dies (aborts, the client retries). A
  transaction waits only for a *younger* holder, so timestamps strictly increase along the
  waits-for graph's edges and no cycle (deadlock) can form.
- A prepare of a transaction already prepared here answers its first vote again (retries are
  idempotent). Resolve (phase two) commits (drops the undo) or aborts (restores it), then
  releases the locks; resolving an unknown transaction is a no-op.

Record (the decision, in the primary group):
- ``commit`` is recorded only if no record exists and the log time has not passed the
  transaction's deadline; ``abort`` by the coordinator always wins over no record; ``recover``
  (anyone who met an intent past its deadline) records ``abort`` only once the log time passed
  the deadline, else answers ``pending``. An existing record is never changed: the first
  decision in the log wins and every later request reads it.
- The log time is monotone, so once an abort was recorded past the deadline no commit can
  ever be recorded for that transaction, even after its record is forgotten.
- A record is forgotten only by an explicit ``forget``, sent once every participant resolved.

Safety rests on: a participant applies a commit only when the record says committed, an abort
only when it says aborted or when its coordinator never reached the decision (classic mode's
operator abort excepted). Liveness of the default mode: an intent past its deadline is resolved
by whoever meets it, without its coordinator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ABORTED", "COMMITTED", "PENDING", "Prepared", "TxnTable", "older"]

COMMITTED = "committed"
ABORTED = "aborted"
PENDING = "pending"


def older(a: tuple[int, bytes], b: tuple[int, bytes]) -> bool:
    """Wait-die's order: a transaction's (timestamp, id); ids break ties."""
    return a < b


@dataclass(slots=True, kw_only=True)
class Prepared:
    """A transaction prepared in this group: its locks, its vote and how to undo it."""

    txn: bytes
    ts: int
    deadline: int  # wall ms (the coordinator's clock) after which anyone may resolve it
    primary: int  # the group holding its record
    groups: list[int]  # every participant group
    keys: list[bytes]  # the keys it locks here
    undo: bytes  # the previous values of the keys that existed (StateMachine.export_keys)
    absent: list[bytes]  # the keys that did not exist
    vote: list[Any]  # the vote as first given (a retried prepare gets it again)
    classic: bool = False  # textbook 2PC: only its coordinator resolves it
    index: int = 0  # log index of the prepare

    def to_state(self) -> list[Any]:
        return [self.txn, self.ts, self.deadline, self.primary, self.groups, self.keys, self.undo, self.absent,
                self.vote, self.classic, self.index]

    @classmethod
    def from_state(cls, s: list[Any]) -> "Prepared":
        txn, ts, deadline, primary, groups, keys, undo, absent, vote, classic, index = s
        return cls(txn=txn, ts=ts, deadline=deadline, primary=primary, groups=list(groups), keys=list(keys),
                   undo=undo, absent=list(absent), vote=list(vote), classic=classic, index=index)


@dataclass(slots=True)
class TxnTable:
    """The group's intents (``locks``: key -> transaction), prepared transactions and records."""

    locks: dict[bytes, bytes] = field(default_factory=dict)
    prepared: dict[bytes, Prepared] = field(default_factory=dict)
    # txn -> [status, deadline, groups, the primary's replies (a commit entry's, for its retries)]
    records: dict[bytes, list[Any]] = field(default_factory=dict)
    finished: dict[bytes, int] = field(default_factory=dict)  # txn resolved here -> log time then
    log_time: int = 0

    def __bool__(self) -> bool:
        return bool(self.prepared or self.records)

    def tick(self, now_ms: int) -> int:
        """Fold an entry's time into the monotone log time; returns it."""
        if now_ms > self.log_time:
            self.log_time = now_ms
        return self.log_time

    # -- participant ------------------------------------------------------------------------
    def holder(self, key: bytes) -> bytes | None:
        return self.locks.get(key)

    def locked(self, keys: list[bytes] | tuple[bytes, ...]) -> bytes | None:
        """The transaction holding one of ``keys``, if any (the runner parks what it blocks)."""
        locks = self.locks
        if not locks:
            return None
        for k in keys:
            t = locks.get(k)
            if t is not None:
                return t
        return None

    def conflict(self, txn: bytes, ts: int, keys: list[bytes]) -> tuple[str, bytes] | None:
        """Wait-die for a prepare of ``txn`` (timestamp ``ts``) over ``keys``: None when free,
        ("wait", holder) when the requester is older than every holder it meets, else
        ("die", holder)."""
        verdict: tuple[str, bytes] | None = None
        for k in keys:
            h = self.locks.get(k)
            if h is None or h == txn:
                continue
            held = self.prepared[h]
            if not older((ts, txn), (held.ts, h)):
                return ("die", h)
            verdict = ("wait", h)
        return verdict

    def lock(self, p: Prepared) -> None:
        self.prepared[p.txn] = p
        for k in p.keys:
            self.locks[k] = p.txn

    def release(self, txn: bytes) -> Prepared | None:
        """Drop a prepared transaction's locks (its resolve); None if it is not prepared here."""
        p = self.prepared.pop(txn, None)
        if p is not None:
            for k in p.keys:
                if self.locks.get(k) == txn:
                    del self.locks[k]
        return p

    # -- record -----------------------------------------------------------------------------
    def decide(self, txn: bytes, want: str, deadline: int, groups: list[int], now_ms: int) -> str:
        """The record's rule (module docstring): ``want`` is commit, abort or recover."""
        t = self.tick(now_ms)
        rec = self.records.get(txn)
        if rec is not None:
            return str(rec[0])
        if want == "commit":
            status = COMMITTED if t <= deadline else ABORTED
        elif want == "abort":
            status = ABORTED
        elif want == "recover":
            if t <= deadline:
                return PENDING
            status = ABORTED
        else:
            raise ValueError(f"unknown decision {want!r}")
        self.records[txn] = [status, deadline, list(groups), []]
        return status

    def forget(self, txn: bytes) -> bool:
        return self.records.pop(txn, None) is not None

    # -- snapshot ---------------------------------------------------------------------------
    def to_state(self) -> list[Any]:
        return [[p.to_state() for p in self.prepared.values()],
                [[t, *rec] for t, rec in self.records.items()], self.log_time,
                [[t, when] for t, when in self.finished.items()]]

    @classmethod
    def from_state(cls, s: list[Any] | None) -> "TxnTable":
        table = cls()
        if s:
            prepared, records, table.log_time, finished = s
            table.finished = {t: when for t, when in finished}
            for ps in prepared:
                table.lock(Prepared.from_state(ps))
            table.records = {t: [status, deadline, list(groups), list(replies)]
                             for t, status, deadline, groups, replies in records}
        return table
