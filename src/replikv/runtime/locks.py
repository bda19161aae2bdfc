"""The lock service's runtime side: lease expiry by the leader, and LOCK ... WAIT.

The lock table and its commands are pure and replicated (``kv/locks.py``,
``kv/types/locks.py``); this module is what needs a clock or a client:

- Lease expiry (docs/design.md, "Locks"). Every tick, for each group the node
  hosts, the table's ``LeaseClock`` is fed this node's MONOTONIC clock, the
  group's term and whether this node leads it. A countdown starts at full ttl
  when the grant or renewal applies here, and every countdown restarts in full
  when the term changes (a new leader never shortens a lease: etcd's lessor
  ``Promote``). The leader proposes ``LOCKEXPIRE name token lease-index`` for
  each lease whose countdown ran out; apply frees the lock iff that very grant
  or renewal still holds it. A follower's countdown only serves LOCKINFO.
- ``LOCK name ttl-ms WAIT ms``: the client is parked on the node it is
  connected to, as BLPOP is (``runtime/blocking.py``). An attempt is the
  plain ``LOCK name ttl-ms``, run through the node's ordinary write path (so
  it is logged, forwarded to the leader, and answered exactly as without
  WAIT). A nil answer parks the client; it is attempted again when the lock
  is freed in a group this node hosts (the first client parked on the name
  first), at the latest every ``RETRY_S`` (a group hosted elsewhere, or a
  release that raced the attempt), and answered nil at its deadline. An
  attempt in flight at the deadline finishes first: a granted token is never
  dropped. A client that disconnects is forgotten before its next attempt.
- Handlers refuse the lock commands in modes without a lock service, and
  LOCKEXPIRE from clients. FENCED has no handler: it is an ordinary write
  (so it can be queued in MULTI), refused at apply outside raft mode.

A runner offers locks by setting ``lock_service`` and providing
``lock_groups()`` (``(group, state machine, term, leading)`` for each hosted
group whose lock table holds or changed a lock: an idle group is skipped, and
a term change matters only to held locks) and ``propose_internal(group, cmds,
rid)``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from replikv.core.replies import RespError
from replikv.core.resp import encode_reply
from replikv.kv.locks import lock_wait_ms
from replikv.runtime.commands import handler
from replikv.runtime.resp_server import PeerReplyConnection

if TYPE_CHECKING:
    from asyncio import TimerHandle

    from replikv.runtime.mode import Mode
    from replikv.runtime.resp_server import ClientConnection

__all__ = ["LockService"]

RETRY_S = 0.5  # a parked LOCK is attempted again at least this often
# How often lease clocks are fed: a countdown is seen to end up to this late (later is the safe
# side), and a node with 1,000 idle groups walks them 20 times a second, not 100.
TICK_S = 0.05
_NIL = frozenset({b"$-1\r\n", b"_\r\n"})


class LockWaiter(PeerReplyConnection):
    """One ``LOCK ... WAIT``: attempts run with it standing in for the client."""

    def __init__(self, service: LockService, conn: ClientConnection, name: bytes, ttl: bytes) -> None:
        super().__init__(conn.resp3)
        self.service, self.conn, self.name = service, conn, name
        self.argv = [b"LOCK", name, ttl]
        self.client_slot = conn.slot()
        self.authenticated = True
        self.multi = None
        self.multi_dirty = False
        self.user = conn.user
        self.cluster_aware, self.readonly = conn.cluster_aware, conn.readonly
        self.read_level, self.read_bound_ms = conn.read_level, conn.read_bound_ms
        self.write_level, self.write_k = conn.write_level, conn.write_k
        self.session_index = conn.session_index
        self.in_flight = False
        self.woken = False  # the lock was freed while an attempt was in flight: try again at once
        self.expired = False
        self.done = False
        self.last_attempt = 0.0
        self.timer: TimerHandle | None = None

    def set_write_level(self, level: Any) -> None:
        self.write_level = level

    def send_reply(self, data: bytes) -> None:
        self.in_flight = False
        self.service.attempt_done(self, data)


class LockService:
    """This node's lease clocks driver and its parked LOCK ... WAIT clients."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.waiting: dict[bytes, deque[LockWaiter]] = {}
        self.expiries_proposed = 0
        self.next_tick = 0.0

    # -- leases ----------------------------------------------------------------------------------
    def tick(self) -> None:
        """Every ``TICK_S`` (called every node tick): feed the lease clock of each hosted group
        that holds or changed a lock; the leader proposes the expiries it finds due. Clients
        parked on a lock freed here are attempted again."""
        now = time.monotonic()
        if now < self.next_tick:
            return
        self.next_tick = now + TICK_S
        node = self.node
        now_ms = int(now * 1000)
        for g, sm, term, leading in node.lock_groups():
            table = sm.locks
            clock = table.clock
            if self.waiting and table.changed:
                for name in list(table.changed):
                    st = table.get(name)
                    if st is None or st.holder is None:
                        self._wake(name)
            expire = clock.observe(table, now_ms, term, leading)
            if expire:
                self.expiries_proposed += len(expire)
                node.propose_internal(g, expire, ("lockexpire", g))
        if self.waiting:
            self._retry_stale(time.monotonic())

    # -- LOCK ... WAIT ---------------------------------------------------------------------------
    def start(self, conn: ClientConnection, argv: list[bytes], wait_ms: int) -> None:
        w = LockWaiter(self, conn, argv[1], argv[2])
        w.timer = self.node.loop.call_later(wait_ms / 1000, self._timed_out, w)
        self.waiting.setdefault(w.name, deque()).append(w)  # parked from the start: a release wakes it
        self._attempt(w)

    def _attempt(self, w: LockWaiter) -> None:
        if w.conn.closing:
            self._finish(w, None)
            return
        w.in_flight, w.woken = True, False
        w.last_attempt = time.monotonic()
        self.node._write_one(w, w.argv)

    def attempt_done(self, w: LockWaiter, data: bytes) -> None:
        w.conn.session_index = max(w.conn.session_index, w.session_index)
        if w.done:
            return
        if data not in _NIL or w.expired or w.conn.closing:
            self._finish(w, data)
            return
        if w.woken:  # freed while this attempt was on its way: it may have been decided before
            self._attempt(w)

    def _wake(self, name: bytes) -> None:
        q = self.waiting.get(name)
        if not q:
            return
        waiters = list(q)  # an attempt may be answered at once (no leader): it leaves the queue
        for w in waiters:  # those with an attempt in flight that the release overtook try again
            if w.in_flight:
                w.woken = True
        if not waiters[0].in_flight:
            self._attempt(waiters[0])  # the first parked is served first

    def _retry_stale(self, now: float) -> None:
        for q in list(self.waiting.values()):
            for w in list(q):
                if not w.in_flight and not w.done and now - w.last_attempt >= RETRY_S:
                    self._attempt(w)

    def _timed_out(self, w: LockWaiter) -> None:
        w.expired = True
        if not w.in_flight and not w.done:
            self._finish(w, encode_reply(None, w.resp3))
            self.node._flush_clients()

    def _finish(self, w: LockWaiter, data: bytes | None) -> None:
        """Answer the client (``data`` None: it is gone) and forget the waiter."""
        w.done = True
        if w.timer is not None:
            w.timer.cancel()
        q = self.waiting.get(w.name)
        if q is not None:
            try:
                q.remove(w)
            except ValueError:
                pass
            if not q:
                del self.waiting[w.name]
        if data is not None:
            w.client_slot.resolve(data)
            self.node.dirty_clients.add(w.conn)
        else:
            w.client_slot.resolve(b"")

    @property
    def waiting_clients(self) -> int:
        """Clients in ``LOCK ... WAIT`` (INFO counts them in blocked_clients)."""
        return sum(len(q) for q in self.waiting.values())


# -- handlers: the lock commands need a node with a lock service ------------------------------------


def _service(node: Mode, name: str) -> LockService:
    service: LockService | None = getattr(node, "lock_service", None)
    if service is None:
        raise RespError(f"ERR {name} is offered in raft mode only (--mode raft, with or without --shards): "
                        "locks need leases granted by a leader through a consensus log")
    return service


@handler("LOCK")
def lock_command(node: Mode, conn: ClientConnection, argv: list[bytes]) -> None:
    """LOCK name ttl-ms [WAIT ms]."""
    service = _service(node, "LOCK")
    wait = lock_wait_ms(argv)
    if wait:
        service.start(conn, argv, wait)
    else:
        node._write_one(conn, argv if len(argv) == 3 else argv[:3])  # type: ignore[attr-defined]


@handler("RENEW")
def renew_command(node: Mode, conn: ClientConnection, argv: list[bytes]) -> None:
    _service(node, "RENEW")
    node._write_one(conn, argv)  # type: ignore[attr-defined]


@handler("UNLOCK")
def unlock_command(node: Mode, conn: ClientConnection, argv: list[bytes]) -> None:
    _service(node, "UNLOCK")
    node._write_one(conn, argv)  # type: ignore[attr-defined]


@handler("LOCKINFO")
def lockinfo_command(node: Mode, conn: ClientConnection, argv: list[bytes]) -> None:
    _service(node, "LOCKINFO")
    node._read(conn, argv)  # type: ignore[attr-defined]


@handler("LOCKEXPIRE")
def lockexpire_command(node: Mode, conn: ClientConnection, argv: list[bytes]) -> None:
    raise RespError("ERR LOCKEXPIRE is internal: the leader of the lock's group proposes it when a lease runs "
                    "out (use UNLOCK to release a lock you hold)")
