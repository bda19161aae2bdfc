"""Peer transport: length-prefixed, authenticated frames over TCP.

Each node listens on its peer port and dials every other node; it sends on
the connection it dialed and receives on the ones it accepted (two pipes per
pair, as etcd's stream transport). Until its own dial succeeds, a node may
answer a peer over that peer's connection (both ends deliver every frame
after the handshake), so a reply is not lost to a slow reconnect. Frames are
a 4-byte big-endian length then the payload (a msgpack message, see
core/shipping/messages.py) and, after the handshake, its 16-byte MAC.

Authentication (runtime/peer_auth.py): a mutual challenge-response that
binds both nonces and both node ids, then a MAC with a sequence number on
every frame in each direction. Every refused handshake gets the same answer.

Bounds: until the handshake completes, frames are limited to 4 KiB, the
handshake must finish within ``handshake_timeout_s`` and at most
``max_unauthenticated`` accepted connections may be waiting for it (more
are closed at once). A send queue beyond ``max_buffer_bytes`` closes the
connection (the replication core resyncs on reconnect, so nothing is lost,
only re-sent); a frame above ``max_frame_bytes`` closes the connection.
Reconnects back off exponentially with jitter (50 ms to 2 s).

With ``tls_replication`` both pipes run over mutual TLS (runtime/tls.py);
the handshake and the frame MACs run inside it unchanged.

Injected latency (``peer_delay_ms``, ``peer_jitter_ms``, per-link
``link_delays``): puts nodes "in different regions" on one machine. Every
frame sent to a delayed peer leaves ``delay ± jitter`` (uniform) after it was
sent, on the connection it was sent on (a frame whose connection closed
meanwhile is dropped, as TCP drops what was in flight). Frames on one link
keep their order: a departure is never earlier than the previous frame's on
that link (jitter is clamped to it). The delay is one way, so a request and
its reply take twice it. With no delay on a link, ``send`` writes at once, as
before (no timer, no queue).

Coalescing (``coalesce=True``, the sharded raft mode's: many groups' and many forwarded
commands' frames per peer per loop iteration): ``send`` seals the frame at once (its MAC
sequence number is its place in the stream) and holds it; every frame held for a connection
leaves in one ``writelines`` (one writev) at the end of the loop iteration, in send order. A
frame is only ever written later than without coalescing, never earlier, so a caller's rule
"persist before sending" still holds; held frames count against ``max_buffer_bytes``; frames
held for a connection that closes meanwhile are dropped, as TCP drops what was in flight;
``stop`` writes what is held before closing.
"""

from __future__ import annotations

import asyncio
import time
import logging
import os
import random
import socket
import ssl
import struct
from collections import deque
from collections.abc import Callable

import msgpack

from replikv.runtime.peer_auth import (
    NONCE_BYTES, PROTOCOL_NAME, PROTOCOL_VERSION, REFUSED, TAG_BYTES, FrameOpener, FrameSealer,
    check_proof, proof, session_keys, transcript,
)

log = logging.getLogger("replikv.transport")

_LEN = struct.Struct(">I")
HANDSHAKE_MAX_FRAME = 4096
HANDSHAKE_TIMEOUT_S = 5.0
MAX_UNAUTHENTICATED = 32


def frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


class _FrameProtocol(asyncio.Protocol):
    """Splits a byte stream into frames; after the handshake, seals and opens them.

    Subclasses run the handshake in ``handshake_frame`` and set ``sealer``
    and ``opener`` when it succeeds; from then on ``deliver`` gets payloads
    whose MAC checked out."""

    def __init__(self, owner: "PeerTransport") -> None:
        self.owner = owner
        self.buf = bytearray()
        self.max_frame = HANDSHAKE_MAX_FRAME
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.held: list[bytes] = []  # sealed frames (length, payload, MAC) waiting for the iteration's write
        self.held_bytes = 0
        self.sealer: FrameSealer | None = None
        self.opener: FrameOpener | None = None
        self.peer_id: str | None = None  # the node at the other end, once known (the handshake)
        self._timeout: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._timeout = asyncio.get_running_loop().call_later(
            self.owner.handshake_timeout_s, self._handshake_timed_out)

    def _handshake_timed_out(self) -> None:
        if self.opener is None and not self.closed:
            self.fail(f"no handshake within {self.owner.handshake_timeout_s:g} s")

    def authenticated(self, sealer: FrameSealer, opener: FrameOpener) -> None:
        self.sealer, self.opener = sealer, opener
        self.max_frame = self.owner.max_frame_bytes + TAG_BYTES
        if self._timeout is not None:
            self._timeout.cancel()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        n = len(buf)
        view = memoryview(buf)  # frames are checked and copied out of it once (FrameOpener.open)
        frame: memoryview | None = None
        try:
            while n - pos >= 4:
                (length,) = _LEN.unpack_from(buf, pos)
                if length > self.max_frame:
                    self.fail(f"frame of {length} bytes exceeds the limit of {self.max_frame}")
                    return
                if n - pos - 4 < length:
                    break
                frame = view[pos + 4:pos + 4 + length]
                pos += 4 + length
                if self.opener is None:
                    self.handshake_frame(bytes(frame))
                else:
                    opened = self.opener.open(frame)
                    if opened is None:
                        self.fail("a frame failed its authentication (altered, injected or replayed)")
                        return
                    self.deliver(opened)
                if self.closed:
                    return
        finally:
            if frame is not None:
                frame.release()
            view.release()  # the buffer cannot be resized while a view of it exists
            if pos:
                del buf[:pos]
        receiving = self.owner.on_receiving
        if buf and receiving is not None and self.opener is not None and not self.closed:
            receiving(self.peer_id)  # type: ignore[arg-type]

    def handshake_frame(self, payload: bytes) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def deliver(self, payload: bytes) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def send_plain(self, payload: bytes) -> None:
        """A handshake frame (no MAC yet)."""
        if self.transport is not None and not self.closed:
            self.transport.write(_LEN.pack(len(payload)) + payload)

    def send_sealed(self, payload: bytes) -> None:
        """A data frame: its length, the payload and its MAC (only after the handshake), given
        to the transport as three buffers (uvloop writes them with one writev): framing a
        64 KiB write's batch no longer copies it twice."""
        tag = self.sealer.tag(payload)  # type: ignore[union-attr]
        self.transport.writelines((_LEN.pack(len(payload) + TAG_BYTES), payload, tag))  # type: ignore[union-attr]

    def hold_sealed(self, payload: bytes) -> bool:
        """A data frame sealed now and held for ``write_held`` (coalescing); True if it is the
        first frame held since the last write."""
        tag = self.sealer.tag(payload)  # type: ignore[union-attr]
        first = not self.held
        self.held += (_LEN.pack(len(payload) + TAG_BYTES), payload, tag)
        self.held_bytes += len(payload) + 4 + TAG_BYTES
        return first

    def write_held(self) -> None:
        """Every held frame in one write, in the order they were sealed (dropped if closed)."""
        held = self.held
        if held:
            self.held, self.held_bytes = [], 0
            if not self.closed and self.transport is not None:
                self.transport.writelines(held)

    def fail(self, reason: str) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        log.warning("closing peer connection %s: %s", peer, reason)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timeout is not None:
            self._timeout.cancel()


class _Inbound(_FrameProtocol):
    """An accepted connection: authenticate the dialer, then deliver frames."""

    def __init__(self, owner: "PeerTransport") -> None:
        super().__init__(owner)
        self.nonce = os.urandom(NONCE_BYTES)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        owner = self.owner
        if owner.unauthenticated >= owner.max_unauthenticated:
            log.warning("refusing a peer connection from %s: %d connections already wait for their "
                        "handshake", transport.get_extra_info("peername"), owner.unauthenticated)
            self.close()
            return
        owner.unauthenticated += 1
        owner._inbound.add(self)
        self.send_plain(msgpack.packb([PROTOCOL_NAME, PROTOCOL_VERSION, self.nonce]))

    def handshake_frame(self, payload: bytes) -> None:
        owner = self.owner
        peer = self.transport.get_extra_info("peername") if self.transport else None
        try:
            d_id, a_id, their_nonce, given = msgpack.unpackb(payload)
            if not (isinstance(d_id, str) and isinstance(a_id, str) and isinstance(their_nonce, bytes)
                    and len(their_nonce) == NONCE_BYTES):
                raise ValueError("bad field types")
        except Exception:
            self.fail(f"peer handshake from {peer} is not a replikv handshake")
            return
        script = transcript(self.nonce, their_nonce, d_id, a_id)
        if d_id not in owner.peer_ids:
            why = f"unknown node id {d_id!r}"
        elif a_id != owner.node_id:
            why = f"it meant to reach {a_id!r}, not this node (a relay?)"
        elif not check_proof(owner.secret, b"dial", script, given):
            why = "wrong cluster secret"
        else:
            why = ""
        if why:
            log.warning("refused peer connection from %s claiming to be %r: %s", peer, d_id, why)
            self.send_plain(msgpack.packb([False, REFUSED]))
            self.close()
            return
        self.send_plain(msgpack.packb([True, proof(owner.secret, b"accept", script), owner.node_id]))
        to_acceptor, to_dialer = session_keys(owner.secret, script)
        self.authenticated(FrameSealer(to_dialer), FrameOpener(to_acceptor))
        owner.unauthenticated -= 1
        self.peer_id = d_id
        owner._inbound_by_peer[d_id] = self

    def deliver(self, payload: bytes) -> None:
        self.owner.on_frame(self.peer_id, payload)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        was_waiting = self.opener is None and self in self.owner._inbound
        super().connection_lost(exc)
        if was_waiting:
            self.owner.unauthenticated -= 1
        owner = self.owner
        owner._inbound.discard(self)
        if self.peer_id is not None and owner._inbound_by_peer.get(self.peer_id) is self:
            del owner._inbound_by_peer[self.peer_id]
        if self.peer_id is not None and owner._sending.get(self.peer_id) is self:
            # it carried our frames to the peer (our dial had not succeeded): what was in flight
            # on it is lost, as when our own connection drops; the layer above resyncs
            del owner._sending[self.peer_id]
            if not owner._stopping:
                owner.on_disconnected(self.peer_id)


class _Outbound(_FrameProtocol):
    """A dialed connection: prove ourselves, check the acceptor, then send."""

    peer_id: str  # known before dialing

    def __init__(self, owner: "PeerTransport", peer_id: str) -> None:
        super().__init__(owner)
        self.peer_id = peer_id
        self.nonce = os.urandom(NONCE_BYTES)
        self.script = b""
        self.ready = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def handshake_frame(self, payload: bytes) -> None:
        owner = self.owner
        try:
            msg = msgpack.unpackb(payload)
        except Exception:
            self.fail(f"peer {self.peer_id} sent an undecodable handshake frame")
            return
        if not self.script and isinstance(msg, list) and len(msg) == 3 and msg[0] == PROTOCOL_NAME:
            if msg[1] != PROTOCOL_VERSION or not isinstance(msg[2], bytes) or len(msg[2]) != NONCE_BYTES:
                self.fail(f"peer {self.peer_id} speaks protocol version {msg[1]!r}, not {PROTOCOL_VERSION}")
                return
            self.script = transcript(msg[2], self.nonce, owner.node_id, self.peer_id)
            self.send_plain(msgpack.packb([owner.node_id, self.peer_id, self.nonce,
                                           proof(owner.secret, b"dial", self.script)]))
            return
        if self.script and isinstance(msg, list) and msg and msg[0] is False:
            log.warning("peer %s refused our connection (check the cluster secret and node ids)",
                        self.peer_id)
            self.close()
            return
        if self.script and isinstance(msg, list) and len(msg) == 3 and msg[0] is True:
            if msg[2] != self.peer_id or not check_proof(owner.secret, b"accept", self.script, msg[1]):
                log.warning("the node at %s's address failed to prove the cluster secret", self.peer_id)
                self.close()
                return
            to_acceptor, to_dialer = session_keys(owner.secret, self.script)
            self.authenticated(FrameSealer(to_acceptor), FrameOpener(to_dialer))
            self.ready = True
            owner._outbound_ready(self)
            return
        self.fail(f"unexpected handshake frame from peer {self.peer_id}")

    def deliver(self, payload: bytes) -> None:
        self.owner.on_frame(self.peer_id, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.done.done():
            self.done.set_result(None)


class _DelayedLink:
    """Frames to one peer waiting for their departure time, in send order."""

    __slots__ = ("delay_s", "jitter_s", "queue", "queued_bytes", "timer", "last_due")

    def __init__(self, delay_s: float, jitter_s: float) -> None:
        self.delay_s, self.jitter_s = delay_s, jitter_s
        self.queue: deque[tuple[float, _FrameProtocol, bytes]] = deque()
        self.queued_bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.last_due = 0.0  # departure time of the latest frame queued (FIFO clamp)


class PeerTransport:
    """Sends frames to peers by id and delivers received frames to a callback.

    Callbacks run on the event loop: ``on_frame(peer_id, payload)``,
    ``on_connected(peer_id)`` (an outbound connection is authenticated),
    ``on_receiving(peer_id)`` if given (part of a frame from the peer arrived and
    the rest has not yet: a large frame on its way, the sender still talking),
    ``on_disconnected(peer_id)`` (our outbound connection closed, or the accepted
    one we were sending on: frames in flight to the peer may be lost; it may be
    called twice for one outage).
    """

    def __init__(self, node_id: str, host: str, port: int, peers: dict[str, tuple[str, int]], secret: str, *,
                 on_frame: Callable[[str, bytes], None], on_connected: Callable[[str], None],
                 on_disconnected: Callable[[str], None], on_receiving: Callable[[str], None] | None = None,
                 max_frame_bytes: int = 600 * 1024 * 1024,
                 max_buffer_bytes: int = 256 * 1024 * 1024, handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
                 max_unauthenticated: int = MAX_UNAUTHENTICATED, ssl_server: ssl.SSLContext | None = None,
                 ssl_client: ssl.SSLContext | None = None, peer_delay_ms: int = 0, peer_jitter_ms: int = 0,
                 link_delays: dict[str, int] | None = None, coalesce: bool = False) -> None:
        self.node_id = node_id
        self.host, self.port = host, port
        self.peers = peers
        self.peer_ids = set(peers)
        self.secret = secret.encode()
        self.on_frame = on_frame
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.on_receiving = on_receiving
        self.max_frame_bytes = max_frame_bytes
        self.max_buffer_bytes = max_buffer_bytes
        self.handshake_timeout_s = handshake_timeout_s
        self.max_unauthenticated = max_unauthenticated
        self.unauthenticated = 0  # accepted connections still in their handshake
        self.ssl_server, self.ssl_client = ssl_server, ssl_client  # mutual TLS (tls_replication)
        self._out: dict[str, _Outbound] = {}
        self._inbound: set[_Inbound] = set()
        self._inbound_by_peer: dict[str, _Inbound] = {}  # authenticated, newest per peer
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.AbstractServer | None = None
        self._stopping = False
        # injected latency: peer id -> its link, only for peers with a delay or jitter
        self.peer_delay_ms, self.peer_jitter_ms = peer_delay_ms, peer_jitter_ms
        self.link_delays = dict(link_delays or {})
        self._delayed: dict[str, _DelayedLink] = {}
        self._sending: dict[str, _FrameProtocol] = {}  # peer -> the connection its frames go on
        self.coalesce = coalesce  # module doc: frames held and written once per loop iteration
        self._holding: list[_FrameProtocol] = []  # connections with held frames, a write scheduled
        self.stats = {"frames_sent": 0, "frame_writes": 0}
        for peer_id in peers:
            self._set_link_delay(peer_id)

    def _set_link_delay(self, peer_id: str) -> None:
        delay_ms = self.link_delays.get(peer_id, self.peer_delay_ms)
        if delay_ms > 0 or self.peer_jitter_ms > 0:
            self._delayed[peer_id] = _DelayedLink(delay_ms / 1000, self.peer_jitter_ms / 1000)

    _loop: asyncio.AbstractEventLoop  # start's (a frame is only sent once connected, after it)

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Inbound(self), self.host, self.port, reuse_address=True,
                                                ssl=self.ssl_server,
                                                ssl_handshake_timeout=self.handshake_timeout_s if self.ssl_server else None)
        for peer_id in self.peers:
            self._tasks.append(asyncio.create_task(self._dial_forever(peer_id), name=f"dial-{peer_id}"))

    async def _dial_forever(self, peer_id: str) -> None:
        host, port = self.peers[peer_id]
        loop = asyncio.get_running_loop()
        backoff = 0.05
        while not self._stopping:
            proto: _Outbound | None = None
            try:
                _, proto = await loop.create_connection(lambda: _Outbound(self, peer_id), host, port,
                                                        ssl=self.ssl_client)
                await proto.done
            except OSError:
                pass
            finally:
                if proto is not None and self._out.get(peer_id) is proto:
                    del self._out[peer_id]
                    self.on_disconnected(peer_id)
            if self._stopping:
                return
            if proto is not None and proto.ready:
                backoff = 0.05
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 2.0)

    def add_peer(self, peer_id: str, address: tuple[str, int]) -> None:
        """A new member (raft membership change): accept it and dial it from now on."""
        if peer_id in self.peers or peer_id == self.node_id:
            return
        self.peers[peer_id] = address
        self.peer_ids.add(peer_id)
        self._set_link_delay(peer_id)
        if not self._stopping:
            self._tasks.append(asyncio.create_task(self._dial_forever(peer_id), name=f"dial-{peer_id}"))

    def remove_peer(self, peer_id: str) -> None:
        """A member that left (leaderless decommission): stop dialing it, close its connections,
        and refuse its handshakes from now on."""
        if peer_id not in self.peers:
            return
        del self.peers[peer_id]
        self.peer_ids.discard(peer_id)
        self._delayed.pop(peer_id, None)
        self._sending.pop(peer_id, None)
        for task in [t for t in self._tasks if t.get_name() == f"dial-{peer_id}"]:
            task.cancel()
            self._tasks.remove(task)
        out = self._out.pop(peer_id, None)
        if out is not None:
            out.close()
        inbound = self._inbound_by_peer.pop(peer_id, None)
        if inbound is not None:
            inbound.close()

    def _outbound_ready(self, proto: _Outbound) -> None:
        self._out[proto.peer_id] = proto
        self.on_connected(proto.peer_id)

    def connected(self, peer_id: str) -> bool:
        return peer_id in self._out or peer_id in self._inbound_by_peer

    def send(self, peer_id: str, payload: bytes) -> bool:
        """Queue a frame; False if not connected (the caller resyncs later)."""
        proto = self._sending.get(peer_id)
        if proto is None or proto.closed or proto.sealer is None:
            # the first connection up carries every frame until it closes: a switch to the other
            # direction's connection mid-stream could overtake frames still on the first (FIFO)
            proto = self._out.get(peer_id) or self._inbound_by_peer.get(peer_id)
            if proto is None or proto.closed or proto.sealer is None:
                return False
            self._sending[peer_id] = proto
        transport = proto.transport
        if transport is None:
            return False
        if transport.get_write_buffer_size() + proto.held_bytes > self.max_buffer_bytes:
            proto.fail(f"send queue to {peer_id} above {self.max_buffer_bytes} bytes")
            return False
        if self._delayed:
            link = self._delayed.get(peer_id)
            if link is not None:
                return self._send_later(peer_id, link, proto, payload)
        self.stats["frames_sent"] += 1
        if self.coalesce:
            if proto.hold_sealed(payload):
                if not self._holding:
                    self._loop.call_soon(self.write_held)
                self._holding.append(proto)
            return True
        self.stats["frame_writes"] += 1
        proto.send_sealed(payload)
        return True

    def write_held(self) -> None:
        """The end of a loop iteration (coalescing): each connection's held frames in one write."""
        holding, self._holding = self._holding, []
        for proto in holding:
            if proto.held:
                self.stats["frame_writes"] += 1
                proto.write_held()

    def _send_later(self, peer_id: str, link: _DelayedLink, proto: _FrameProtocol, payload: bytes) -> bool:
        """Queue a frame on a delayed link; it leaves at now + delay ± jitter, never before an earlier one."""
        if link.queued_bytes + len(payload) > self.max_buffer_bytes:
            proto.fail(f"delayed send queue to {peer_id} above {self.max_buffer_bytes} bytes")
            return False
        # the real clock, not loop.time(): uvloop's is the loop iteration's cached, millisecond
        # time, which can lag the send by a few ms and let a frame leave before its delay
        due = time.monotonic() + link.delay_s
        if link.jitter_s:
            due += random.uniform(-link.jitter_s, link.jitter_s)
        if due < link.last_due:
            due = link.last_due
        link.last_due = due
        link.queue.append((due, proto, payload))
        link.queued_bytes += len(payload)
        if link.timer is None:
            link.timer = asyncio.get_running_loop().call_later(due - time.monotonic(), self._depart, link)
        return True

    def _depart(self, link: _DelayedLink) -> None:
        """Send every queued frame whose time has come, in order; re-arm for the next."""
        link.timer = None
        now = time.monotonic()  # a timer may fire up to a millisecond early: what is not due waits
        queue = link.queue
        while queue and queue[0][0] <= now:
            _, proto, payload = queue.popleft()
            link.queued_bytes -= len(payload)
            if not proto.closed and proto.transport is not None and proto.sealer is not None:
                proto.send_sealed(payload)
        if queue and not self._stopping:
            link.timer = asyncio.get_running_loop().call_later(max(0.0, queue[0][0] - now), self._depart, link)

    def buffered_bytes(self, peer_id: str) -> int:
        """Bytes queued to ``peer_id`` on the connection its frames go on (``send``'s: it may be
        the peer's own, inbound, connection; measuring only the outbound one let a resync and
        the live stream queue past ``max_buffer_bytes`` on the other, which closed it)."""
        proto = self._sending.get(peer_id)
        if proto is None or proto.closed:
            proto = self._out.get(peer_id) or self._inbound_by_peer.get(peer_id)
        buffered = proto.transport.get_write_buffer_size() + proto.held_bytes if proto and proto.transport else 0
        if self._delayed:
            link = self._delayed.get(peer_id)
            if link is not None:
                buffered += link.queued_bytes
        return buffered

    async def stop(self) -> None:
        self._stopping = True
        self.write_held()  # what was sent before the stop leaves, as it would have without coalescing
        for task in self._tasks:
            task.cancel()
        for link in self._delayed.values():
            if link.timer is not None:
                link.timer.cancel()
                link.timer = None
            link.queue.clear()
            link.queued_bytes = 0
        for proto in list(self._out.values()):
            proto.close()
        for inbound in list(self._inbound):
            inbound.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
