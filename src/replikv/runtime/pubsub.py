"""Pub/Sub: SUBSCRIBE, PSUBSCRIBE, their UNSUBSCRIBEs, PUBLISH and PUBSUB, as Redis 7.0.

Every mode has the same service: messages are not data (never logged,
never persisted, as in Redis) and a message published on any node reaches
the subscribers of every node, as Redis Cluster propagates PUBLISH.

Rules:

- A node delivers a message to each local subscriber of the channel, and
  once per matching pattern to each pattern subscriber (Redis sends a
  client subscribed to two matching patterns two ``pmessage``). PUBLISH
  answers the number of LOCAL receivers, as Redis Cluster does.
- A message a client publishes goes to every connected peer in one
  ``PUBLISH`` frame (``b"P" + msgpack [channel, message]``); a peer
  delivers it locally and never sends it on, so a message cannot loop. A
  peer that is disconnected at that moment misses it: Pub/Sub is
  at-most-once in Redis too.
- Subscription replies and messages are ``Push`` values: RESP3 push frames,
  RESP2 arrays. A RESP2 connection with any subscription accepts only
  (P)SUBSCRIBE, (P)UNSUBSCRIBE, PING, QUIT and RESET (Redis's "subscribed
  context", ``SUBSCRIBED_ALLOWED``); RESP3 connections may mix.
- Delivery is batched: a message is queued on each receiver's connection
  and the receivers are flushed once at the end of the loop iteration
  (one write per receiver per iteration, however many messages).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

import msgpack

from replikv.core.replies import Push, RespError
from replikv.kv import glob

if TYPE_CHECKING:
    from replikv.runtime.base import BaseRunner

log = logging.getLogger(__name__)

PUBLISH_FRAME = b"P"
SUBSCRIBED_ALLOWED = frozenset({b"SUBSCRIBE", b"PSUBSCRIBE", b"UNSUBSCRIBE", b"PUNSUBSCRIBE",
                                b"PING", b"QUIT", b"RESET"})


class Subscriber(Protocol):
    """What the service needs of a client connection."""

    id: int
    resp3: bool
    channels: set[bytes]
    patterns: set[bytes]

    def reply(self, value: Any) -> None: ...
    def flush(self) -> None: ...


class PubSub:
    """The node's subscriptions: channel or pattern -> {connection id: connection}."""

    def __init__(self, node: "BaseRunner") -> None:
        self.node = node
        self.channels: dict[bytes, dict[int, Subscriber]] = {}
        self.patterns: dict[bytes, dict[int, Subscriber]] = {}
        self._to_flush: dict[int, Subscriber] = {}
        self._scheduled = False
        self.messages_delivered = 0

    # -- subscriptions ---------------------------------------------------------
    def subscribe(self, conn: Subscriber, names: list[bytes], pattern: bool) -> None:
        table, mine = (self.patterns, conn.patterns) if pattern else (self.channels, conn.channels)
        kind = b"psubscribe" if pattern else b"subscribe"
        for name in names:
            if name not in mine:
                mine.add(name)
                table.setdefault(name, {})[conn.id] = conn
            conn.reply(Push([kind, name, len(conn.channels) + len(conn.patterns)]))

    def unsubscribe(self, conn: Subscriber, names: list[bytes], pattern: bool) -> None:
        """UNSUBSCRIBE / PUNSUBSCRIBE: the names given, or all of them when none is."""
        table, mine = (self.patterns, conn.patterns) if pattern else (self.channels, conn.channels)
        kind = b"punsubscribe" if pattern else b"unsubscribe"
        if not names:
            names = sorted(mine)
            if not names:
                conn.reply(Push([kind, None, len(conn.channels) + len(conn.patterns)]))
                return
        for name in names:
            if name in mine:
                mine.discard(name)
                self._forget(table, name, conn)
            conn.reply(Push([kind, name, len(conn.channels) + len(conn.patterns)]))

    def drop(self, conn: Subscriber) -> None:
        """A connection closed (or RESET): forget its subscriptions, no replies."""
        for name in conn.channels:
            self._forget(self.channels, name, conn)
        for name in conn.patterns:
            self._forget(self.patterns, name, conn)
        conn.channels.clear()
        conn.patterns.clear()
        self._to_flush.pop(conn.id, None)

    @staticmethod
    def _forget(table: dict[bytes, dict[int, Subscriber]], name: bytes, conn: Subscriber) -> None:
        subs = table.get(name)
        if subs is not None:
            subs.pop(conn.id, None)
            if not subs:
                del table[name]

    # -- messages ----------------------------------------------------------------
    def publish(self, channel: bytes, message: bytes) -> int:
        """A client's PUBLISH: deliver here, send to every connected peer; local receivers."""
        node = self.node
        frame = PUBLISH_FRAME + msgpack.packb([channel, message])
        for peer in node.peer_ids:
            if node.transport.connected(peer):
                node.transport.send(peer, frame)
        return self.deliver(channel, message)

    def deliver(self, channel: bytes, message: bytes) -> int:
        """Queue ``message`` to this node's subscribers of ``channel``; how many received it."""
        count = 0
        to_flush = self._to_flush
        subs = self.channels.get(channel)
        if subs:
            push = Push([b"message", channel, message])
            for conn in subs.values():
                conn.reply(push)
                to_flush[conn.id] = conn
            count += len(subs)
        for pattern, subs in self.patterns.items():
            if glob.match(pattern, channel):
                push = Push([b"pmessage", pattern, channel, message])
                for conn in subs.values():
                    conn.reply(push)
                    to_flush[conn.id] = conn
                count += len(subs)
        if count:
            self.messages_delivered += count
            if not self._scheduled:
                self._scheduled = True
                self.node.loop.call_soon(self._flush)
        return count

    def _flush(self) -> None:
        self._scheduled = False
        conns, self._to_flush = self._to_flush, {}
        for conn in conns.values():
            conn.flush()

    def handle(self, peer: str, payload: bytes) -> bool:
        """Take a peer's PUBLISH frame (deliver locally, never send on); False for any other frame."""
        if payload[:1] != PUBLISH_FRAME:
            return False
        try:
            parts = msgpack.unpackb(payload[1:], use_list=True)
        except Exception as e:  # msgpack raises several types for bad input
            log.warning("dropping an undecodable PUBLISH frame from peer %s: %s", peer, e)
            return True
        if not (isinstance(parts, list) and len(parts) == 2 and all(isinstance(p, bytes) for p in parts)):
            log.warning("dropping a malformed PUBLISH frame from peer %s", peer)
            return True
        self.deliver(parts[0], parts[1])
        return True

    # -- PUBSUB ------------------------------------------------------------------
    def introspect(self, argv: list[bytes]) -> Any:
        """PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT | HELP (this node's view)."""
        sub = argv[1].upper()
        rest = argv[2:]
        if sub == b"CHANNELS" and len(rest) <= 1:
            names = list(self.channels)
            return names if not rest else [n for n in names if glob.match(rest[0], n)]
        if sub == b"NUMSUB":
            out: list[Any] = []
            for name in rest:
                out += [name, len(self.channels.get(name, ()))]
            return out
        if sub == b"NUMPAT" and not rest:
            return len(self.patterns)  # unique patterns, as Redis 7.0 counts them
        if sub == b"HELP" and not rest:
            return _HELP
        name = argv[1].decode(errors="replace")
        if sub in (b"NUMPAT", b"HELP"):  # fixed arity: Redis's generic subcommand arity error
            return RespError(f"ERR wrong number of arguments for 'pubsub|{name.lower()}' command")
        if sub == b"CHANNELS":  # variadic in the table, checked by the command itself
            return RespError(f"ERR unknown subcommand or wrong number of arguments for '{name}'. "
                             "Try PUBSUB HELP.")
        return RespError(f"ERR unknown subcommand '{name}'. Try PUBSUB HELP.")


_HELP = [
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "HELP",
    "    Prints this help.",
]
