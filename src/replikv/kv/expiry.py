"""Expiry: when a key with a TTL stops existing, and who deletes it.

``expires[key]`` is the absolute unix time in ms at which ``key`` expires;
a key whose time is ``<= now_ms`` is logically gone. Reads hide it but never
delete it (as Redis replicas do). It is deleted only through the log, in
one of three ways, so every replica deletes it at the same point:

- lazily by the leader-follower leader: ``StateMachine.execute`` logs
  ``DEL key`` before a command that touches an expired key
  (``kv/rewrite.py``);
- actively by the leader-follower leader: :func:`expire_cycle` deletes up to
  ``limit`` due keys and returns the ``DEL`` commands to log;
- at apply time, where the entry carries its time (raft): ``apply`` calls
  :func:`delete_due` for the keys a command touches, before and after it,
  and the log-only command ``EXPIREDUE key...`` (:data:`EXPIRE_DUE`, which
  the raft leader proposes for the keys :func:`expired_keys` finds) deletes
  those of its keys that are due at the entry's time.

The heap: a min-heap of ``(when, key)`` (``StateMachine.expiry_heap``) is
built on first use, O(n) once, then maintained by ``set_expire``, so finding
due keys costs O(limit log n) however many keys exist. It is an auxiliary
index, not replicated state: entries whose key was deleted or got another
TTL are dropped when met, and it is rebuilt when stale entries pile up.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from replikv.core.replies import OK
from replikv.kv.args import NEEDS_CLOCK, NEVER

if TYPE_CHECKING:
    from replikv.kv.state_machine import StateMachine

__all__ = ["EXPIRE_DUE", "delete_due", "expire_cycle", "expire_due", "expired_keys", "track"]

EXPIRE_DUE = b"EXPIREDUE"  # log-only (never sent by a client, not in the command table)
_DEL = b"DEL"


def track(sm: StateMachine, key: bytes, when_ms: int) -> None:
    """Index a new TTL in the heap, if it is built (``set_expire`` calls this)."""
    heap = sm.expiry_heap
    if heap is not None:
        heapq.heappush(heap, (when_ms, key))
        if len(heap) > 2 * len(sm.expires) + 64:
            sm.expiry_heap = None  # too many stale entries: rebuild lazily


def expired_keys(sm: StateMachine, now_ms: int, limit: int) -> list[bytes]:
    """Up to ``limit`` keys expired at ``now_ms``, soonest first; nothing is deleted."""
    heap = sm.expiry_heap
    if heap is None:
        heap = [(when, key) for key, when in sm.expires.items()]
        heapq.heapify(heap)
        sm.expiry_heap = heap
    expires = sm.expires
    out: list[bytes] = []
    seen: set[bytes] = set()
    keep: list[tuple[int, bytes]] = []
    while heap and len(out) < limit:
        when, key = heap[0]
        if when > now_ms:
            break
        heapq.heappop(heap)
        if expires.get(key) == when and key not in seen:
            out.append(key)
            seen.add(key)
            keep.append((when, key))
        # else: stale entry (key deleted or TTL changed), dropped.
    for item in keep:  # still indexed until the DEL is applied
        heapq.heappush(heap, item)
    return out


def expire_cycle(sm: StateMachine, now_ms: int, limit: int) -> list[list[bytes]] | None:
    """Leader-follower active expiry: delete up to ``limit`` due keys.

    Returns the DEL commands to log as one entry, or None.
    """
    keys = expired_keys(sm, now_ms, limit)
    if not keys:
        return None
    for key in keys:
        sm.delete(key)
    return [[_DEL, key] for key in keys]


def delete_due(sm: StateMachine, keys: list[bytes], now_ms: int) -> None:
    """Delete those of ``keys`` that are expired at ``now_ms`` (apply with a time)."""
    expires = sm.expires
    for key in keys:
        if expires.get(key, NEVER) <= now_ms:
            sm.delete(key)


def expire_due(sm: StateMachine, argv: list[bytes], now_ms: int | None) -> Any:
    """``EXPIREDUE key...`` from a log: delete the listed keys due at the entry's time."""
    if now_ms is None:
        return NEEDS_CLOCK
    delete_due(sm, argv[1:], now_ms)
    return OK
