"""Forwarding a client's command from a node that does not lead to the one that does.

Every mode with a leader uses this one service (a follower forwards writes
by default, as etcd does; with ``--redirect`` it answers ``-MOVED`` instead).

Wire: two peer frames beside the mode's own protocol messages, told apart by
their first byte (a mode's codec never starts a frame with these)::

    FORWARD       b"F" + msgpack [rid, commands, transaction, resp3, write_level, client, admin, watch,
                              read_level]
    FORWARD_REPLY b"G" + msgpack [rid, reply, index]

``write_level`` and ``read_level`` are the client's ``CONSISTENCY`` levels as
text (the read level matters to the leaderless mode, which forwards reads
too);
``client`` is ``[client_id, seq]`` for an exactly-once write or nil;
``admin`` marks an admin command run as is on the leader (raft's FAILOVER
and membership changes); ``watch`` is the ``[[key, since], ...]`` an EXEC's
client WATCHed on the follower (``since`` in the log's index space, so the
leader decides with its own change index, ``kv/watch.py``); ``index`` is
the log index of the write, which becomes the client's session position.

Rules:
- One forwarded request gets exactly one reply: the leader's, or TRYAGAIN
  when its deadline passes or the connection to the leader drops; both say
  the write may or may not be applied, since the leader may have logged it.
- A command is never forwarded twice (a leader that lost its leadership
  answers TRYAGAIN), so a forward cannot loop.
- EVALSHA is forwarded as EVAL with the body when this node has the
  script (``kv/lua.py with_body``): the script cache is per node, and the
  leader may never have seen the SCRIPT LOAD this node answered.
- "No leader right now" is one error everywhere: ``no_leader_error``, a
  ``TRYAGAIN`` (retry after the election or failover), as Redis Cluster says
  TRYAGAIN for "try again later". ``-MOVED`` names the leader with
  ``--redirect``.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

import msgpack

from replikv.core.replies import RespError
from replikv.kv.lua import with_bodies
from replikv.runtime.pending import PendingReplies
from replikv.runtime.resp_server import PeerReplyConnection

if TYPE_CHECKING:
    from replikv.runtime.base import BaseRunner

log = logging.getLogger(__name__)

FORWARD = b"F"
FORWARD_REPLY = b"G"
KINDS = (FORWARD, FORWARD_REPLY)


def no_leader_error(leader: str) -> RespError:
    return RespError(f"TRYAGAIN no reachable leader to forward to (leader: {leader or 'unknown'}); "
                     "retry after the election or failover")


class ForwardedCommand(PeerReplyConnection):
    """A command forwarded by a peer, run on the leader; one reply goes back."""

    cluster_aware = False  # never redirected: a forwarded command is answered where it landed
    readonly = False

    def __init__(self, node: "BaseRunner", peer: str, rid: int, resp3: bool) -> None:
        super().__init__(resp3)
        self.node, self.peer, self.rid = node, peer, rid
        self.authenticated = True
        self.multi = None
        self.multi_dirty = False
        self.read_level, self.read_bound_ms = "linearizable", 0
        self.sent = False
        self.watch: dict[bytes, int] = {}
        self.set_write_level(node.default_ack)

    def set_write_level(self, level: Any) -> None:
        self.write_level = level
        self.write_k = self.node.ack_replicas(level)

    def send_reply(self, data: bytes) -> None:
        if not self.sent:
            self.sent = True
            self.node.transport.send(self.peer, FORWARD_REPLY + msgpack.packb([self.rid, data, self.session_index]))


class Forwarder:
    """The follower's table of forwarded requests (runtime/pending.py), and the
    leader's side of running them."""

    def __init__(self, node: "BaseRunner") -> None:
        self.node = node
        self.pending = PendingReplies()
        self._rids = itertools.count(1)

    def forward(self, conn: Any, leader: str, commands: list[list[bytes]], transaction: bool, *,
                client: tuple[int, int] | None = None, admin: bool = False) -> None:
        """Send ``commands`` to ``leader`` for ``conn`` (or answer why not)."""
        node = self.node
        if isinstance(conn, ForwardedCommand):  # never forward twice
            conn.reply(RespError(f"TRYAGAIN {node.id} is no longer the leader"))
            return
        if node.options.redirect and not admin:
            conn.reply(node.redirect_error(leader))
            return
        if not leader or not node.transport.connected(leader):
            conn.reply(no_leader_error(leader))
            return
        commands = with_bodies(node.sm, commands)
        rid = next(self._rids)
        deadline = time.monotonic() + (node.options.ack_timeout_ms + 2000) / 1000
        self.pending.add(rid, conn, deadline, "TRYAGAIN the leader did not answer the forwarded command in "
                                              "time; it may or may not be applied")
        watch = [[k, since] for k, since in conn.watch.items()] if transaction else []
        node.transport.send(leader, FORWARD + msgpack.packb(
            [rid, commands, transaction, conn.resp3, str(conn.write_level), list(client) if client else None,
             admin, watch, conn.read_level]))

    def on_forward(self, peer: str, body: bytes) -> None:
        """Leader side: run a peer's forwarded command through the local paths."""
        rid, commands, transaction, resp3, level, client, admin, watch, read_level = _decode_forward(body)
        node = self.node
        proxy = ForwardedCommand(node, peer, rid, resp3)
        proxy.watch = {key: since for key, since in watch}
        parse_read = node.spec.parse_read
        if parse_read is not None:
            try:
                proxy.read_level = parse_read(read_level.split())
            except RespError:
                proxy.read_level = node.default_read_level()[0]
        if admin:
            node.execute(proxy, commands[0])  # type: ignore[arg-type]
            return
        try:
            proxy.set_write_level(node.spec.parse_write(str(level).split(), len(node.peer_ids)))
        except RespError:
            pass  # a level this node cannot parse: the cluster default
        node.run_forwarded(proxy, commands, transaction, tuple(client) if client else None)

    def on_reply(self, body: bytes) -> None:
        rid, data, index = _decode_reply(body)
        entry = self.pending.pop(rid)
        if entry is None:
            return  # answered already (deadline, lost connection)
        if index:
            entry.conn.session_index = max(entry.conn.session_index, index)
        entry.slot.resolve(data)
        self.node.flush_clients_soon()  # a frame's replies for one client leave in one write

    def expire(self, now: float) -> bool:
        """Answer the requests whose deadline passed; True if any was."""
        return self.pending.expire(now)

    def leader_lost(self) -> None:
        """The connection to the leader dropped: answer every pending request."""
        if self.pending.fail_all(RespError(
                "TRYAGAIN the connection to the leader was lost; the write may or may not be applied")):
            self.node._flush_clients()

    def handle(self, peer: str, payload: bytes) -> bool:
        """Take a FORWARD / FORWARD_REPLY frame; False for a frame of the mode's own protocol."""
        kind = payload[:1]
        try:
            if kind == FORWARD:
                self.on_forward(peer, payload[1:])
            elif kind == FORWARD_REPLY:
                self.on_reply(payload[1:])
            else:
                return False
        except ValueError as e:
            log.warning("dropping a bad forwarding frame from peer %s: %s", peer, e)
        return True


def _unpack(body: bytes, size: int, what: str) -> list[Any]:
    try:
        parts = msgpack.unpackb(body, use_list=True)
    except Exception as e:  # msgpack raises several types for bad input
        raise ValueError(f"undecodable {what} frame: {e}") from None
    if not isinstance(parts, list) or len(parts) != size:
        raise ValueError(f"a {what} frame is a list of {size} fields")
    return parts


def _decode_forward(body: bytes) -> list[Any]:
    """A FORWARD body, its fields checked (a peer speaking garbage is refused, not obeyed)."""
    parts = _unpack(body, 9, "FORWARD")
    rid, commands, transaction, resp3, level, client, admin, watch, read_level = parts
    if not (type(rid) is int and isinstance(commands, list) and commands
            and all(isinstance(c, list) and c and all(isinstance(a, bytes) for a in c) for c in commands)
            and isinstance(transaction, bool) and isinstance(resp3, bool) and isinstance(level, str)
            and isinstance(read_level, str)
            and isinstance(admin, bool)
            and isinstance(watch, list) and all(isinstance(w, list) and len(w) == 2 and isinstance(w[0], bytes)
                                                and type(w[1]) is int for w in watch)
            and (client is None or (isinstance(client, list) and len(client) == 2
                                    and all(type(x) is int for x in client)))):
        raise ValueError("malformed FORWARD frame")
    return parts


def _decode_reply(body: bytes) -> list[Any]:
    parts = _unpack(body, 3, "FORWARD_REPLY")
    rid, data, index = parts
    if not (type(rid) is int and isinstance(data, bytes) and type(index) is int):
        raise ValueError("malformed FORWARD_REPLY frame")
    return parts
