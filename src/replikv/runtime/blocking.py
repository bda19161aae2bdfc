"""Blocking commands (BLPOP, BRPOP, BLMOVE, BZPOPMIN, XREAD BLOCK, ...) in every mode.

A blocking command is an ordinary data command whose one attempt does
what the non-blocking form does and answers the empty reply (the null
array, or a null bulk for BLMOVE/BRPOPLPUSH) when there is nothing to take;
that is also its reply inside MULTI, as in Redis. This service turns the
empty reply into waiting:

- An attempt runs through the node's ordinary path (``_write_one`` for a
  write, ``_read`` for XREAD), so it is logged, replicated, forwarded to the
  leader and acknowledged exactly as the same command without blocking
  would be. The client's reply position is held by a slot, so pipeline
  order is kept.
- An empty answer parks the client on its keys, remembering the log
  position ``since`` it was attempted at. The node's change index
  (``kv/watch.py``: the index of each key's last change, fed wherever this
  node applies writes) tells when a key it waits on changed after
  ``since``; then the first client parked on that key is attempted again
  (Redis serves the client blocked longest first). At most one attempt per
  client is in flight.
- At the deadline a parked client gets the empty reply. An attempt in
  flight at the deadline finishes first: what it took is never dropped.
- A client that disconnects is forgotten. A node that loses its leadership
  keeps its blocked clients: their next attempt goes to the new leader like
  any write, so a failover delays them but never leaves them hanging.

Determinism: the attempt is the data command, applied from the log like
any other, so replicas agree whatever the waiting did.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from replikv.core.replies import NULL_ARRAY, RespError
from replikv.core.resp import encode_reply
from replikv.kv.args import parse_int, parse_timeout_ms
from replikv.kv.types.streams import Stream
from replikv.runtime.resp_server import PeerReplyConnection

if TYPE_CHECKING:
    from asyncio import TimerHandle

    from replikv.kv.commands import CommandSpec
    from replikv.runtime.base import BaseRunner
    from replikv.runtime.resp_server import ClientConnection

__all__ = ["Blocking"]

_EMPTY_REPLIES = frozenset({b"*-1\r\n", b"$-1\r\n", b"_\r\n"})
# what a command answers when its time runs out: a null bulk for the two that move one element
_NULL_BULK_ON_TIMEOUT = frozenset({b"BLMOVE", b"BRPOPLPUSH"})
_TIMEOUT_FIRST = frozenset({b"BLMPOP", b"BZMPOP"})  # BLMPOP timeout numkeys key ... (timeout first)


def timeout_ms(argv: list[bytes]) -> int | None:
    """How long ``argv`` may block (0: forever), None when it does not block
    (XREAD without BLOCK); RespError for a bad timeout."""
    name = argv[0].upper()
    if name in (b"XREAD", b"XREADGROUP"):
        for i in range(1, len(argv) - 1):
            opt = argv[i].upper()
            if opt == b"STREAMS":
                return None
            if opt == b"BLOCK":
                try:
                    ms = parse_int(argv[i + 1])
                except RespError:
                    raise RespError("ERR timeout is not an integer or out of range") from None
                if ms < 0:
                    raise RespError("ERR timeout is negative")
                return ms
        return None
    return parse_timeout_ms(argv[1] if name in _TIMEOUT_FIRST else argv[-1])


class Blocked(PeerReplyConnection):
    """One blocked command: attempts run with it standing in for the client."""

    def __init__(self, service: "Blocking", conn: "ClientConnection", argv: list[bytes], keys: list[bytes],
                 write: bool) -> None:
        super().__init__(conn.resp3)
        self.service, self.conn, self.argv, self.keys, self.write = service, conn, argv, keys, write
        self.client_slot = conn.slot()
        self.authenticated = True
        self.multi = None
        self.multi_dirty = False
        self.user = conn.user
        self.read_level, self.read_bound_ms = conn.read_level, conn.read_bound_ms
        self.write_level, self.write_k = conn.write_level, conn.write_k
        self.session_index = conn.session_index
        self.since = 0
        self.in_flight = False
        self.expired = False  # the deadline passed: an empty attempt now ends it
        self.done = False  # answered, or its client is gone
        self.parked = False  # it has waited before
        self.timer: TimerHandle | None = None
        self.deadline = 0.0  # monotonic s; 0: blocks until served
        empty = None if argv[0].upper() in _NULL_BULK_ON_TIMEOUT else NULL_ARRAY
        self.empty = encode_reply(empty, conn.resp3)

    def set_write_level(self, level: Any) -> None:
        self.write_level = level

    def send_reply(self, data: bytes) -> None:
        """One attempt's reply (the node calls this once per attempt)."""
        self.in_flight = False
        self.service.attempt_done(self, data)


class Blocking:
    """The node's blocked clients: key -> FIFO of the clients waiting on it."""

    def __init__(self, node: "BaseRunner") -> None:
        self.node = node
        self.queues: dict[bytes, deque[Blocked]] = {}
        self.blocked = 0  # clients blocked (parked or attempting)

    def parked(self) -> int:
        """Clients parked on their keys with no attempt in flight (INFO
        ``replikv_blocked_parked``): an attempt in flight is still the data command on its
        way (forwarded to a leader, say), and ends as that command does."""
        return len({id(b) for q in self.queues.values() for b in q if not b.in_flight})

    def start(self, conn: "ClientConnection", spec: "CommandSpec", argv: list[bytes]) -> bool:
        """Run blocking command ``argv`` for ``conn``; False when it does not block
        (the caller runs it as an ordinary command)."""
        try:
            ms = timeout_ms(argv)
        except RespError as err:
            conn.reply(err)
            return True
        if ms is None:
            return False
        if not self.node.blocking_offered:  # a sharded node has no one node-wide change index
            conn.reply(RespError(f"ERR {spec.name.upper()} with a timeout is not offered in a sharded cluster "
                                 "yet: poll instead (the same command without blocking)"))
            return True
        if argv[0].upper() == b"XREAD":  # "$" means the last id when the client blocks, not at each retry
            argv = Stream.pin_last_ids(self.node.sm, argv, int(time.time() * 1000))
        b = Blocked(self, conn, argv, spec.keys(argv), spec.is_write)
        if ms:
            b.deadline = time.monotonic() + ms / 1000
            b.timer = self.node.loop.call_later(ms / 1000, self._timed_out, b)
        conn.blocked.append(b)
        self.blocked += 1
        self._attempt(b)
        return True

    # -- attempts -----------------------------------------------------------------
    def _attempt(self, b: Blocked) -> None:
        node = self.node
        b.since = node.watch_position()
        b.in_flight = True
        (node._write_one if b.write else node._read)(b, b.argv)  # type: ignore[arg-type]

    def attempt_done(self, b: Blocked, data: bytes) -> None:
        if b.done:
            return  # its client disconnected while the attempt ran
        conn = b.conn
        conn.session_index = max(conn.session_index, b.session_index)
        if data in _EMPTY_REPLIES and not b.expired and not conn.closing:
            # parked behind the clients already waiting; after a retry, back at the front
            # (it was the first there, so it stays the first served)
            for key in b.keys:
                q = self.queues.setdefault(key, deque())
                q.appendleft(b) if b.parked else q.append(b)
            b.parked = True
            return
        self._finish(b, b.empty if data in _EMPTY_REPLIES else data)

    def _finish(self, b: Blocked, data: bytes) -> None:
        b.done = True
        if b.timer is not None:
            b.timer.cancel()
        self._unpark(b)
        b.conn.blocked.remove(b)
        self.blocked -= 1
        b.client_slot.resolve(data)
        self.node.dirty_clients.add(b.conn)

    def _unpark(self, b: Blocked) -> None:
        for key in b.keys:
            q = self.queues.get(key)
            if q is not None:
                try:
                    q.remove(b)
                except ValueError:
                    pass
                if not q:
                    del self.queues[key]

    def _timed_out(self, b: Blocked) -> None:
        remaining = b.deadline - time.monotonic()
        if remaining > 0:  # the loop's timers may fire a little early (its clock is cached)
            b.timer = self.node.loop.call_later(remaining, self._timed_out, b)
            return
        b.expired = True
        if not b.in_flight and not b.done:
            self._finish(b, b.empty)
            self.node._flush_clients()

    # -- waking ---------------------------------------------------------------------
    def poll(self) -> None:
        """Attempt again the first client parked on each key that changed since
        its last attempt (called whenever the node flushes its clients)."""
        changed = self.node.sm.changes.changed_since
        for key, q in list(self.queues.items()):
            if not q:  # emptied by an attempt made earlier in this pass
                continue
            b = q[0]
            if not b.in_flight and changed((key,), b.since):
                self._unpark(b)
                self._attempt(b)

    def unblock(self, conn: "ClientConnection", error: bool) -> None:
        """CLIENT UNBLOCK: answer ``conn``'s blocked commands now, with their
        timeout reply or ``-UNBLOCKED`` (an attempt in flight finishes first)."""
        reply = b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n" if error else None
        for b in list(conn.blocked):
            b.expired = True
            if reply is not None:
                b.empty = reply
            if not b.in_flight:
                self._finish(b, b.empty)
        self.node._flush_clients()

    def drop(self, conn: "ClientConnection") -> None:
        """``conn`` closed: forget its blocked commands (an attempt in flight still completes)."""
        for b in list(conn.blocked):
            b.done = True
            if b.timer is not None:
                b.timer.cancel()
            self._unpark(b)
            self.blocked -= 1
        conn.blocked.clear()
