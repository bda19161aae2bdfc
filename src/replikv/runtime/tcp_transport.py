"""Peer transport: length-prefixed frames over TCP, authenticated by HMAC.

Each node listens on its peer port and dials every other node; it sends on
the connection it dialed and receives on the ones it accepted (two pipes per
pair, as etcd's stream transport). Until its own dial succeeds, a node may
answer a peer over that peer's connection (both ends deliver every frame
after the handshake), so a reply is not lost to a slow reconnect. Frames are a 4-byte big-endian
length then the payload (a msgpack message, see core/shipping/messages.py).

Handshake (challenge-response, mutual): the acceptor sends a random nonce;
the dialer answers with its id, its own nonce and HMAC-SHA256(secret,
"dial" | nonce_a | id); the acceptor checks it and proves itself with
HMAC(secret, "accept" | nonce_d | its id). A peer with the wrong secret is
refused and the refusal logged; so is one that speaks garbage. Until the
handshake completes, frames are limited to 4 KiB.

Bounds: a send queue beyond ``max_buffer_bytes`` closes the connection (the
replication core resyncs on reconnect, so nothing is lost, only re-sent);
a frame above ``max_frame_bytes`` closes the connection. Reconnects back off
exponentially with jitter (50 ms to 2 s).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
import struct
from collections.abc import Callable

import msgpack

log = logging.getLogger("replikv.transport")

_LEN = struct.Struct(">I")
HANDSHAKE_MAX_FRAME = 4096
PROTOCOL_NAME = "replikv-peer"
PROTOCOL_VERSION = 1


def _proof(secret: bytes, label: bytes, nonce: bytes, node_id: str) -> bytes:
    return hmac.new(secret, label + nonce + node_id.encode(), hashlib.sha256).digest()


def frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


class _FrameProtocol(asyncio.Protocol):
    """Splits a byte stream into frames; subclasses handle them."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.buf = bytearray()
        self.max_frame = HANDSHAKE_MAX_FRAME
        self.max_frame_after_handshake = max_frame_bytes
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                import socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        n = len(buf)
        try:
            while n - pos >= 4:
                (length,) = _LEN.unpack_from(buf, pos)
                if length > self.max_frame:
                    self.fail(f"frame of {length} bytes exceeds the limit of {self.max_frame}")
                    return
                if n - pos - 4 < length:
                    break
                payload = bytes(buf[pos + 4:pos + 4 + length])
                pos += 4 + length
                self.frame_received(payload)
                if self.closed:
                    return
        finally:
            if pos:
                del buf[:pos]

    def frame_received(self, payload: bytes) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def send(self, payload: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(_LEN.pack(len(payload)) + payload)

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


class _Inbound(_FrameProtocol):
    """An accepted connection: authenticate the dialer, then deliver frames."""

    def __init__(self, owner: "PeerTransport") -> None:
        super().__init__(owner.max_frame_bytes)
        self.owner = owner
        self.nonce = os.urandom(16)
        self.peer_id: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.owner._inbound.add(self)
        self.send(msgpack.packb([PROTOCOL_NAME, PROTOCOL_VERSION, self.nonce]))

    def frame_received(self, payload: bytes) -> None:
        if self.peer_id is not None:
            self.owner.on_frame(self.peer_id, payload)
            return
        peer = self.transport.get_extra_info("peername") if self.transport else None
        try:
            node_id, their_nonce, proof = msgpack.unpackb(payload)
            if not isinstance(node_id, str) or not isinstance(their_nonce, bytes) or not isinstance(proof, bytes):
                raise ValueError("bad field types")
        except Exception:
            self.fail(f"peer handshake from {peer} is not a replikv handshake")
            return
        if node_id not in self.owner.peer_ids:
            log.warning("refused peer connection from %s: unknown node id %r", peer, node_id)
            self.send(msgpack.packb([False, f"unknown node id {node_id!r}"]))
            self.close()
            return
        expected = _proof(self.owner.secret, b"dial", self.nonce, node_id)
        if not hmac.compare_digest(expected, proof):
            log.warning("refused peer connection from %s claiming to be %s: wrong cluster secret", peer, node_id)
            self.send(msgpack.packb([False, "wrong cluster secret"]))
            self.close()
            return
        self.peer_id = node_id
        self.max_frame = self.max_frame_after_handshake
        self.owner._inbound_by_peer[node_id] = self
        self.send(msgpack.packb([True, _proof(self.owner.secret, b"accept", their_nonce, self.owner.node_id),
                                 self.owner.node_id]))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.owner._inbound.discard(self)
        if self.peer_id is not None and self.owner._inbound_by_peer.get(self.peer_id) is self:
            del self.owner._inbound_by_peer[self.peer_id]


class _Outbound(_FrameProtocol):
    """A dialed connection: prove ourselves, check the acceptor, then send."""

    def __init__(self, owner: "PeerTransport", peer_id: str) -> None:
        super().__init__(owner.max_frame_bytes)
        self.owner = owner
        self.peer_id = peer_id
        self.nonce = os.urandom(16)
        self.ready = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def frame_received(self, payload: bytes) -> None:
        if self.ready:
            self.owner.on_frame(self.peer_id, payload)
            return
        try:
            msg = msgpack.unpackb(payload)
        except Exception:
            self.fail(f"peer {self.peer_id} sent an undecodable handshake frame")
            return
        if not self.ready and isinstance(msg, list) and len(msg) == 3 and msg[0] == PROTOCOL_NAME:
            if msg[1] != PROTOCOL_VERSION or not isinstance(msg[2], bytes):
                self.fail(f"peer {self.peer_id} speaks protocol version {msg[1]!r}")
                return
            self.send(msgpack.packb([self.owner.node_id, self.nonce,
                                     _proof(self.owner.secret, b"dial", msg[2], self.owner.node_id)]))
            return
        if not self.ready and isinstance(msg, list) and msg and msg[0] is False:
            log.warning("peer %s refused our connection: %s", self.peer_id, msg[1] if len(msg) > 1 else "")
            self.close()
            return
        if not self.ready and isinstance(msg, list) and len(msg) == 3 and msg[0] is True:
            if msg[2] != self.peer_id or not isinstance(msg[1], bytes) or not hmac.compare_digest(
                    msg[1], _proof(self.owner.secret, b"accept", self.nonce, self.peer_id)):
                log.warning("peer at %s's address failed to prove the cluster secret", self.peer_id)
                self.close()
                return
            self.ready = True
            self.max_frame = self.max_frame_after_handshake
            self.owner._outbound_ready(self)
            return
        self.fail(f"unexpected frame from peer {self.peer_id} on an outbound connection")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.done.done():
            self.done.set_result(None)


class PeerTransport:
    """Sends frames to peers by id and delivers received frames to a callback.

    Callbacks run on the event loop: ``on_frame(peer_id, payload)``,
    ``on_connected(peer_id)`` (an outbound connection is authenticated),
    ``on_disconnected(peer_id)``.
    """

    def __init__(self, node_id: str, host: str, port: int, peers: dict[str, tuple[str, int]], secret: str, *,
                 on_frame: Callable[[str, bytes], None], on_connected: Callable[[str], None],
                 on_disconnected: Callable[[str], None], max_frame_bytes: int = 600 * 1024 * 1024,
                 max_buffer_bytes: int = 256 * 1024 * 1024) -> None:
        self.node_id = node_id
        self.host, self.port = host, port
        self.peers = peers
        self.peer_ids = set(peers)
        self.secret = secret.encode()
        self.on_frame = on_frame
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.max_frame_bytes = max_frame_bytes
        self.max_buffer_bytes = max_buffer_bytes
        self._out: dict[str, _Outbound] = {}
        self._inbound: set[_Inbound] = set()
        self._inbound_by_peer: dict[str, _Inbound] = {}  # authenticated, newest per peer
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.AbstractServer | None = None
        self._stopping = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Inbound(self), self.host, self.port, reuse_address=True)
        for peer_id in self.peers:
            self._tasks.append(asyncio.create_task(self._dial_forever(peer_id)))

    async def _dial_forever(self, peer_id: str) -> None:
        host, port = self.peers[peer_id]
        loop = asyncio.get_running_loop()
        backoff = 0.05
        while not self._stopping:
            proto: _Outbound | None = None
            try:
                _, proto = await loop.create_connection(lambda: _Outbound(self, peer_id), host, port)
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
        if not self._stopping:
            self._tasks.append(asyncio.create_task(self._dial_forever(peer_id)))

    def _outbound_ready(self, proto: _Outbound) -> None:
        self._out[proto.peer_id] = proto
        self.on_connected(proto.peer_id)

    def connected(self, peer_id: str) -> bool:
        return peer_id in self._out or peer_id in self._inbound_by_peer

    def send(self, peer_id: str, payload: bytes) -> bool:
        """Queue a frame; False if not connected (the caller resyncs later)."""
        proto: _FrameProtocol | None = self._out.get(peer_id) or self._inbound_by_peer.get(peer_id)
        if proto is None or proto.closed:
            return False
        transport = proto.transport
        if transport is None:
            return False
        if transport.get_write_buffer_size() > self.max_buffer_bytes:
            proto.fail(f"send queue to {peer_id} above {self.max_buffer_bytes} bytes")
            return False
        transport.write(_LEN.pack(len(payload)) + payload)
        return True

    def buffered_bytes(self, peer_id: str) -> int:
        proto = self._out.get(peer_id)
        return proto.transport.get_write_buffer_size() if proto and proto.transport else 0

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for proto in list(self._out.values()):
            proto.close()
        for inbound in list(self._inbound):
            inbound.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
