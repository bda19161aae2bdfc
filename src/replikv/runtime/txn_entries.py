"""The log entries of cross-group transactions, and how a group replica applies them.

Entry data: ``TXN_ENTRY`` (one byte no client entry starts with: those are msgpack arrays)
followed by ``msgpack [op, now_ms, ...]``:

- ``["prepare", now_ms, txn, ts, deadline, primary, groups, items, keys, watch, resp3, classic]``:
  phase one in a participant (core/txn/table.py); the result is the vote, msgpack bytes:
  ``["yes", [reply as RESP, ...]]``, ``["wait", holder]``, ``["die", holder]``, ``["watch"]`` or
  ``["no", why]``.
- ``["commit", now_ms, txn, ts, deadline, groups, items, keys, watch, resp3]``: the primary's
  prepare and the record in one (the coordinator's last agent): the commands apply and the
  record says committed, or nothing applies; the result is ``["committed", [reply, ...]]``,
  ``["aborted"]`` (the record says so, or the deadline passed) or a vote that kept it from
  preparing (wait, die, watch, no). A retry answers from the record.
- ``["decide", now_ms, txn, want, deadline, groups]``: the record, in the primary group; the
  result is its status (committed, aborted or pending). The primary is a participant too: a
  decided status resolves its own intent in the same entry.
- ``["resolve", now_ms, txn, commit]``: phase two in a participant; the result is OK.
- ``["forget", now_ms, [txn, ...]]``: these records are no longer needed (batched); OK.

Apply is deterministic (the time is the entry's), as every raft entry's: every replica of the
group reaches the same locks, data and answers. A prepare applies the transaction's commands in
place under its locks and keeps the undo (the keys' previous values and TTLs); an abort puts
them back. A prepare of a transaction this group already finished is refused (a late duplicate
must not lock again).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from replikv.core.replies import OK
from replikv.core.resp import encode_reply
from replikv.core.txn import ABORTED, COMMITTED, PENDING, Prepared, TxnTable
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from replikv.runtime.raft_app import apply_items

__all__ = ["TXN_ENTRY", "apply_txn", "txn_entry"]

TXN_ENTRY = b"\x01"
FINISHED_KEEP_MS = 60_000  # a finished transaction's id is remembered this long (of log time)


def txn_entry(op: str, now_ms: int, *fields: Any) -> bytes:
    return TXN_ENTRY + msgpack.packb([op, now_ms, *fields])


def apply_txn(table: TxnTable, sm: StateMachine, data: bytes, index: int,
              moving: Callable[[list[bytes]], bool], proposing: dict[bytes, tuple[bytes, int]]) -> Any:
    """Apply one transaction entry at log ``index``; ``moving(keys)``: a key's slot is frozen
    or gone (the prepare is refused); ``proposing``: the leader's keys of prepares not yet
    applied (this one's are dropped). Returns the entry's result (module docstring)."""
    op, now_ms, *f = msgpack.unpackb(data[1:])
    log_time = table.tick(now_ms)
    if op == "prepare":
        for k in f[6]:
            if proposing.get(k, (b"",))[0] == f[0]:
                del proposing[k]
        return msgpack.packb(_prepare(table, sm, index, now_ms, f, moving))
    if op == "commit":
        return msgpack.packb(_commit(table, sm, index, now_ms, log_time, f, moving))
    if op == "decide":
        txn, want, deadline, groups = f
        status = table.decide(txn, want, deadline, groups, now_ms)
        if status != PENDING and txn in table.prepared:  # the primary is a participant: resolved at once
            _resolve(table, sm, txn, status == COMMITTED, index, log_time)
        return status.encode()
    if op == "resolve":
        _resolve(table, sm, f[0], f[1], index, log_time)
        return OK
    if op == "forget":
        for txn in f[0]:
            table.forget(txn)
        return OK
    raise ValueError(f"unknown transaction entry {op!r}")


def _prepare(table: TxnTable, sm: StateMachine, index: int, now_ms: int, f: list[Any],
             moving: Callable[[list[bytes]], bool]) -> list[Any]:
    txn, ts, deadline, primary, groups, items, keys, watch, resp3, classic = f
    done = table.prepared.get(txn)
    if done is not None:
        return done.vote  # a retried prepare: the first vote again
    if txn in table.finished:
        return ["no", "the transaction already finished in this group"]
    if moving(keys):
        return ["no", "a key's slot is moving to another group"]
    conflict = table.conflict(txn, ts, keys)
    if conflict is not None:
        return [conflict[0], conflict[1]]
    if watch and sm.changes.any_changed(watch):
        return ["watch"]
    present = [k for k in keys if k in sm.data]
    undo = sm.export_keys(present) if present else b""
    replies = apply_items(sm, items, ApplyContext(now_ms, "", index))
    vote = ["yes", [encode_reply(r, resp3) for r in replies]]
    table.lock(Prepared(txn=txn, ts=ts, deadline=deadline, primary=primary, groups=list(groups), keys=list(keys),
                        undo=undo, absent=[k for k in keys if k not in present], vote=vote, classic=classic,
                        index=index))
    return vote


def _commit(table: TxnTable, sm: StateMachine, index: int, now_ms: int, log_time: int, f: list[Any],
            moving: Callable[[list[bytes]], bool]) -> list[Any]:
    """The primary's prepare and the record in one entry (the coordinator's "last agent"): its
    commands apply and the record says committed, or nothing applies."""
    txn, ts, deadline, groups, items, keys, watch, resp3 = f
    rec = table.records.get(txn)
    if rec is not None:  # decided already (a retry, or a recovery's abort)
        return ["committed", rec[3]] if rec[0] == COMMITTED else ["aborted"]
    if log_time > deadline:
        table.records[txn] = [ABORTED, deadline, list(groups), []]
        return ["aborted"]
    if txn in table.finished or moving(keys):
        return ["no", "a key's slot is moving to another group" if moving(keys) else "already finished here"]
    conflict = table.conflict(txn, ts, keys)
    if conflict is not None:
        return [conflict[0], conflict[1]]
    if watch and sm.changes.any_changed(watch):
        return ["watch"]
    replies = [encode_reply(r, resp3) for r in apply_items(sm, items, ApplyContext(now_ms, "", index))]
    table.records[txn] = [COMMITTED, deadline, list(groups), replies]
    table.finished[txn] = log_time
    return ["committed", replies]


def _resolve(table: TxnTable, sm: StateMachine, txn: bytes, commit: bool, index: int, log_time: int) -> None:
    p = table.release(txn)
    if p is not None and not commit:
        sm.drop_keys(p.keys, index)
        if p.undo:
            sm.import_keys(p.undo, index)
    table.finished[txn] = log_time
    _forget_old(table, log_time)


def _forget_old(table: TxnTable, log_time: int) -> None:
    """Drop the finished ids older than FINISHED_KEEP_MS: the dict is in log order, and log
    time never decreases, so the oldest are first."""
    finished, cutoff = table.finished, log_time - FINISHED_KEEP_MS
    while finished:
        txn, when = next(iter(finished.items()))
        if when >= cutoff:
            break
        del finished[txn]
