"""One client connection: bytes in, commands to the node, replies out in order.

An ``asyncio.Protocol`` (never streams: this is the hot path). Each
``data_received`` parses every complete command, runs it, and writes all the
replies that are ready with one ``transport.write``.

Pipeline order (invariant): replies leave in the order the commands
arrived. A command whose reply must wait (a write until its batch is in the
WAL and has the ack level's replicas; a session read until the follower has
applied a position; a forwarded write until the leader answers) takes a
``Slot`` in ``self.queue``; every later reply queues behind it. When the
queue is empty, replies go straight to ``self.out``.
"""

from __future__ import annotations

import asyncio
import time
import itertools
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from replikv.core.resp import ProtocolError, RequestParser, command_bytes, encode_reply
from replikv.config import is_loopback
from replikv.core.replies import RespError
from replikv.runtime.acl import User

if TYPE_CHECKING:
    from replikv.config import AckLevel
    from replikv.runtime.mode import Mode

PROTECTED_MODE_ERROR = (b"-DENIED replikv is running in protected mode: the default user has no password, so "
                        b"only loopback clients are served. Set one (--requirepass, or ACL SETUSER default "
                        b">password) to accept this connection.\r\n")
OUT_FLUSH_BYTES = 1 << 20  # replies gathered in one read are written out past this
UNAUTH_MAX_ARGS = 10  # Redis's limits for a client that has not authenticated yet
UNAUTH_MAX_BULK_LEN = 16 * 1024

log = logging.getLogger("replikv.clients")
_ids = itertools.count(1)


class Slot:
    """A reply position in a connection's pipeline; ``data`` set when ready."""

    __slots__ = ("data", "conn")

    def __init__(self, conn: "ClientConnection") -> None:
        self.data: bytes | None = None
        self.conn = conn

    def resolve(self, data: bytes) -> None:
        if self.data is None:
            if data[:1] == b"-" and isinstance(self.conn, ClientConnection):
                self.conn.node.cmdstats.error_reply(data)
            self.data = data
            self.conn.slot_ready()


class ClientConnection(asyncio.Protocol):
    def __init__(self, node: "Mode") -> None:
        self.node = node
        opts = node.options
        self.parser = RequestParser(max_bulk_len=opts.max_bulk_len, max_args=opts.max_args)
        self.id = next(_ids)
        self.name: bytes | None = None
        self.lib_name = b""
        self.lib_ver = b""
        self.resp3 = False
        self.user = node.acl.default  # runtime/acl.py: who this connection acts as
        self.authenticated = node.acl.default.enabled and node.acl.default.nopass
        if not self.authenticated:  # as Redis: far smaller requests until AUTH succeeds
            self.parser.set_limits(UNAUTH_MAX_BULK_LEN, UNAUTH_MAX_ARGS)
        self.last_active = time.monotonic()  # for the idle `timeout`
        self.multi: list[list[bytes]] | None = None
        self.multi_dirty = False
        self.watch: dict[bytes, int] = {}  # WATCHed key -> the log position it was watched at
        self.blocked: list[Any] = []  # its blocking commands waiting (runtime/blocking.py)
        self.errors = 0  # error replies sent (INFO counts a command's failures by it)
        self.channels: set[bytes] = set()  # Pub/Sub subscriptions (runtime/pubsub.py)
        self.patterns: set[bytes] = set()
        self.read_level, self.read_bound_ms = node.default_read_level()
        self.write_level = node.default_ack
        self.write_k = node.ack_replicas(node.default_ack)  # replicas a write waits for
        self.session_index = 0  # highest log index this connection wrote or named
        self.session_vv: dict[str, int] | None = None  # multi-leader: the version vector SESSION named
        # Redis Cluster: the client follows -MOVED (it asked CLUSTER SLOTS/SHARDS/NODES or sent
        # READONLY/ASKING), and READONLY lets replicas serve its reads (runtime/sharded_raft.py)
        self.cluster_aware = False
        self.readonly = False
        self.queue: deque[Slot] = deque()
        self.held: list[bytes] = []  # replies released by the next WAL commit, before ``queue``
        self.out: list[bytes] = []
        self.out_bytes = 0  # bytes in ``out``
        # why its requests are not read now: its replies are unread (pause_writing), or it
        # writes while the leader holds writers back (hold_writes); read again when neither
        self.output_paused = False
        self.writes_held = False
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.addr = ""
        self.laddr = ""
        self.fd = -1
        self.created = time.monotonic()
        self.last_cmd = "NULL"  # the last command's name (CLIENT LIST's cmd=)

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.addr = f"{peer[0]}:{peer[1]}" if peer else "?"
        local = transport.get_extra_info("sockname")
        self.laddr = f"{local[0]}:{local[1]}" if local else "?"
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1
        opts = self.node.options
        default = self.node.acl.default
        if default.enabled and default.nopass and peer and not is_loopback(str(peer[0])):
            # Redis's protected mode, per connection: without a password only loopback
            # clients are served (the node refuses to start so exposed; ACL SETUSER can
            # still make the default user passwordless at run time)
            transport.write(PROTECTED_MODE_ERROR)
            transport.close()
            self.closing = True
            return
        if len(self.node.clients) >= opts.maxclients:
            transport.write(b"-ERR max number of clients reached\r\n")
            transport.close()
            self.closing = True
            return
        self.node.clients[self.id] = self
        # replies the client does not read: stop reading its requests above the
        # high-water mark (pause_writing), disconnect it past the hard limit (flush)
        transport.set_write_buffer_limits(high=min(opts.client_output_buffer_limit, 1 << 20))  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        self.output_paused = True
        self._reading()

    def resume_writing(self) -> None:
        self.output_paused = False
        self._reading()

    def hold_writes(self, held: bool) -> None:
        """Back-pressure on writers (core/shipping/node.py rule 10): stop reading this
        writer's requests while the leader holds writes back; what it already sent runs."""
        self.writes_held = held
        self._reading()

    def _reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.output_paused or self.writes_held:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def authenticated_now(self) -> None:
        """AUTH / HELLO AUTH succeeded: the full request limits apply."""
        opts = self.node.options
        self.parser.set_limits(opts.max_bulk_len, opts.max_args)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.node.clients.pop(self.id, None)
        if self.channels or self.patterns:
            self.node.pubsub.drop(self)
        if self.blocked:
            self.node.blocking.drop(self)
        self.node.clients_gone = True  # waiters of this client are dropped at the next sweep

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        parser = self.parser
        parser.feed(data)
        self.last_active = time.monotonic()
        opts = self.node.options
        if parser.pending > opts.client_query_buffer_limit:
            self.reply_error_and_close(f"Protocol error: query buffer of {parser.pending} bytes is over "
                                       "client-query-buffer-limit")
            return
        # a command above max_command_bytes (> max_bulk_len) completes only in a read of that many bytes
        large = parser.pending > opts.max_bulk_len and parser.pending > opts.max_command_bytes
        error: ProtocolError | None = None
        try:
            commands = parser.commands()
        except ProtocolError as e:
            # As Redis: the complete commands before the bad bytes run, then
            # the client gets the error and the connection closes.
            commands, error = e.commands, e
        if large:
            self._execute_within_limit(commands)
        elif len(commands) == 1:
            self.node.execute(self, commands[0])
        elif commands:
            self.node.execute_batch(self, commands)
        if error is not None:
            self.reply_error_and_close(str(error))
            return
        self.flush()

    def _execute_within_limit(self, commands: list[list[bytes]]) -> None:
        """``commands``, in order, each one above ``max_command_bytes`` refused with an error
        instead (what a node replicates of it would not fit a peer frame; in a MULTI block the
        EXEC then aborts, as after any command refused while queueing)."""
        limit = self.node.options.max_command_bytes
        start = 0
        for i, argv in enumerate(commands):
            size = command_bytes(argv)
            if size > limit:
                if i > start:
                    self.node.execute_batch(self, commands[start:i])
                self.reply(RespError(f"ERR command of {size} bytes is above the largest a node replicates "
                                     f"({limit} bytes: proto-max-bulk-len and room for the peer message)"))
                if self.multi is not None:
                    self.multi_dirty = True
                start = i + 1
        if start < len(commands):
            self.node.execute_batch(self, commands[start:])

    # -- replies --------------------------------------------------------------
    def reply(self, value: Any) -> None:
        self.reply_bytes(encode_reply(value, self.resp3))

    def reply_bytes(self, data: bytes) -> None:
        if data[0] == 45:  # b"-": an error reply (replies are never empty)
            self.count_error(data)
        if self.queue:
            slot = Slot(self)
            slot.data = data
            self.queue.append(slot)
        elif self.held:
            self.held.append(data)
        else:
            self.out.append(data)
            self.out_bytes += len(data)
            if self.out_bytes > OUT_FLUSH_BYTES:  # a long pipeline of big replies: write as we go,
                self.flush()  # so the output limit is checked before the replies pile up here

    def count_error(self, data: bytes) -> None:
        """An error reply ``data`` (``-CODE ...``) is sent: INFO counts it."""
        self.errors += 1
        self.node.cmdstats.error_reply(data)

    def reply_all(self, replies: list[bytes]) -> None:
        """``reply_bytes`` for consecutive replies, in order; the caller has counted the
        errors among them (``count_error``)."""
        if self.queue:
            for data in replies:
                slot = Slot(self)
                slot.data = data
                self.queue.append(slot)
        elif self.held:
            self.held += replies
        else:
            self.out += replies
            self.out_bytes += sum(map(len, replies))
            if self.out_bytes > OUT_FLUSH_BYTES:
                self.flush()

    def release_held(self) -> None:
        """The batch holding our async writes is in the WAL: send their replies."""
        self.out += self.held
        self.held.clear()
        self.flush()

    def set_write_level(self, level: "AckLevel") -> None:
        self.write_level = level
        self.write_k = self.node.ack_replicas(level)

    def slot(self) -> Slot:
        """A reply position that waits; everything after it queues behind."""
        slot = Slot(self)
        self.queue.append(slot)
        return slot

    def slot_ready(self) -> None:
        self.node.dirty_clients.add(self)

    def flush(self) -> None:
        """Write every reply that is ready, in pipeline order."""
        queue = self.queue
        out = self.out
        while queue and queue[0].data is not None:
            out.append(queue.popleft().data)  # type: ignore[arg-type]
        transport = self.transport
        if transport is None or transport.is_closing():
            out.clear()  # the client is gone: its replies have nowhere to go
            self.out_bytes = 0
            return
        if out:
            transport.write(b"".join(out) if len(out) > 1 else out[0])
            out.clear()
            self.out_bytes = 0
            limit = self.node.options.client_output_buffer_limit
            if limit and transport.get_write_buffer_size() > limit:
                log.warning("client %s: %d bytes of replies unread, over client-output-buffer-limit; "
                            "closing the connection", self.addr, transport.get_write_buffer_size())
                self.closing = True
                queue.clear()
                transport.abort()
                return
        if self.closing and not queue:
            transport.close()

    def reply_error_and_close(self, message: str) -> None:
        log.info("client %s: %s; closing the connection", self.addr, message)
        self.reply_bytes(b"-ERR " + message.encode() + b"\r\n")
        self.closing = True
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def close_after_replies(self) -> None:
        self.closing = True


PEER_USER = User("(peer)")
for _rule in ("on", "nopass", "~*", "+@all"):
    PEER_USER.apply(_rule)


class PeerReplyConnection:
    """Stands in for a client connection when a command came from a peer.

    A follower forwards a client's write to the leader; the leader runs it
    through the same paths as a local client's and every reply, once ready
    (after the WAL commit, the replicas' acks, the commit...), goes back to
    that peer with ``send_reply``. One forwarded request gets one reply.
    """

    # the node the command came from checked the client's ACL before forwarding it
    user = PEER_USER
    errors = 0
    watch: dict[bytes, int] = {}  # a forwarded EXEC sets its own (runtime/forwarding.py)
    channels: frozenset[bytes] = frozenset()  # never subscribed: SUBSCRIBE is not forwarded
    patterns: frozenset[bytes] = frozenset()

    def __init__(self, resp3: bool) -> None:
        self.resp3 = resp3
        self.session_index = 0  # the log index of the write, returned with the reply
        self.queue: list[Slot] = []
        self.held: list[bytes] = []

    def send_reply(self, data: bytes) -> None:  # pragma: no cover - provided by each mode
        raise NotImplementedError

    def hold_writes(self, held: bool) -> None:
        """No connection of its own to stop reading: a write forwarded by a follower, a woken
        blocked client's, is not held back (core/shipping/node.py rule 10 holds local writers)."""

    def reply(self, value: Any) -> None:
        self.send_reply(encode_reply(value, self.resp3))

    def reply_bytes(self, data: bytes) -> None:
        self.send_reply(data)

    def slot(self) -> Slot:
        slot = Slot(self)  # type: ignore[arg-type]
        self.queue.append(slot)
        return slot

    def slot_ready(self) -> None:
        ready = [s for s in self.queue if s.data is not None]
        self.queue = [s for s in self.queue if s.data is None]
        for slot in ready:
            self.send_reply(slot.data)  # type: ignore[arg-type]

    def release_held(self) -> None:
        held, self.held = self.held, []
        for data in held:
            self.send_reply(data)

    def flush(self) -> None:
        """Replies leave as they become ready; nothing is buffered here."""
