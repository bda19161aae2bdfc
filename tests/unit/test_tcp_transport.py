"""The peer transport on real loopback sockets: authentication and its attacks.

Each test runs its own event loop; every wait is a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import pytest

from replikv.ports import free_ports
from replikv.runtime import peer_auth
from replikv.runtime.tcp_transport import PeerTransport

SECRET = "s3cret"


async def until(cond: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Node:
    def __init__(self, node_id: str, ports: dict[str, int], secret: str = SECRET, **kw: Any) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.disconnects: list[str] = []
        peers = {p: ("127.0.0.1", port) for p, port in ports.items() if p != node_id}
        self.t = PeerTransport(node_id, "127.0.0.1", ports[node_id], peers, secret,
                               on_frame=lambda peer, payload: self.frames.append((peer, payload)),
                               on_connected=lambda peer: None, on_disconnected=self.disconnects.append, **kw)


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro())


def test_two_nodes_authenticate_and_exchange_frames() -> None:
    async def main() -> None:
        p1, p2 = free_ports(2)
        ports = {"n1": p1, "n2": p2}
        a, b = Node("n1", ports), Node("n2", ports)
        await a.t.start()
        await b.t.start()
        await until(lambda: a.t.connected("n2") and b.t.connected("n1"), what="both directions")
        for i in range(50):
            assert a.t.send("n2", b"hello %d" % i)
        await until(lambda: len(b.frames) == 50, what="50 frames")
        assert b.frames == [("n1", b"hello %d" % i) for i in range(50)]
        await a.t.stop()
        await b.t.stop()
    run(main)


def test_part_of_a_large_frame_arriving_is_reported_with_its_sender_before_the_frame() -> None:
    """``on_receiving``: a frame of 16 MiB reaches the other end in many reads; each read that
    leaves part of it outstanding names the sender (the leader-follower follower counts it as
    hearing its leader, so it does not ask for the window again while the frame is on its way)."""
    async def main() -> None:
        p1, p2 = free_ports(2)
        ports = {"n1": p1, "n2": p2}
        events: list[tuple[str, str]] = []
        a = Node("n1", ports)
        b = Node("n2", ports, on_receiving=lambda peer: events.append(("part", peer)))
        b.t.on_frame = lambda peer, payload: events.append(("frame", peer))
        await a.t.start()
        await b.t.start()
        await until(lambda: a.t.connected("n2") and b.t.connected("n1"), what="both directions")
        assert a.t.send("n2", b"x" * (16 << 20))
        await until(lambda: ("frame", "n1") in events, what="the large frame")
        parts = events[:events.index(("frame", "n1"))]
        assert parts and set(parts) == {("part", "n1")}
        assert events[-1] == ("frame", "n1")  # nothing outstanding once it is whole
        await a.t.stop()
        await b.t.stop()
    run(main)


def test_losing_the_accepted_connection_we_send_on_is_a_disconnect() -> None:
    """n1 cannot dial n2 (a wrong address), so it answers n2 over n2's connection; when that
    one closes, what n1 had in flight on it is lost: n1 is told, as when its own dial drops
    (a multi-leader state transfer waiting for acks on it would otherwise wait for ever)."""
    async def main() -> None:
        p1, p2, nowhere = free_ports(3)
        a = Node("n1", {"n1": p1, "n2": nowhere})
        b = Node("n2", {"n1": p1, "n2": p2})
        await a.t.start()
        await b.t.start()
        await until(lambda: a.t.connected("n2"), what="n2's connection to n1")
        assert a.t.send("n2", b"over your connection")
        await until(lambda: b.frames == [("n1", b"over your connection")], what="the frame")
        assert a.disconnects == []
        await b.t.stop()
        await until(lambda: a.disconnects == ["n2"], what="n1 to be told")
        assert not a.t.connected("n2") and not a.t.send("n2", b"lost")
        await a.t.stop()
        assert a.disconnects == ["n2"]
    run(main)


def test_the_send_queue_is_measured_on_the_connection_frames_go_on() -> None:
    """n1 cannot dial n2, so its frames to n2 go on n2's connection: the bytes queued there are
    what ``buffered_bytes`` reports (it measured only n1's own dial: 0 while the other queue
    grew past the limit under 64 KiB writes, and the connection was closed)."""
    async def main() -> None:
        p1, p2, nowhere = free_ports(3)
        a = Node("n1", {"n1": p1, "n2": nowhere})
        b = Node("n2", {"n1": p1, "n2": p2})
        await a.t.start()
        await b.t.start()
        await until(lambda: a.t.connected("n2"), what="n2's connection to n1")
        chunk = b"x" * (1 << 20)
        for _ in range(48):  # 48 MiB at once: more than the kernel takes without n2 reading
            assert a.t.send("n2", chunk)
        assert a.t.buffered_bytes("n2") > 16 << 20
        await until(lambda: len(b.frames) == 48, timeout=30, what="48 frames")
        await until(lambda: a.t.buffered_bytes("n2") == 0, what="the queue drained")
        await a.t.stop()
        await b.t.stop()
    run(main)


def test_a_peer_added_then_removed_at_run_time() -> None:
    """add_peer: the new member is dialed and accepted; remove_peer: it is neither (leaderless membership)."""
    async def main() -> None:
        p1, p2 = free_ports(2)
        a = Node("n1", {"n1": p1})
        b = Node("n2", {"n1": p1, "n2": p2})
        await a.t.start()
        await b.t.start()
        a.t.add_peer("n2", ("127.0.0.1", p2))
        await until(lambda: a.t.connected("n2") and b.t.connected("n1"), what="n1 and n2 connected")
        assert a.t.send("n2", b"hi")
        await until(lambda: b.frames == [("n1", b"hi")], what="the frame")
        a.t.remove_peer("n2")
        assert not a.t.connected("n2") and not a.t.send("n2", b"gone")
        assert not [t for t in a.t._tasks if t.get_name() == "dial-n2"]
        await until(lambda: not b.t.connected("n1"), what="n2 to see n1 close")
        assert await handshake_reply(p1, "n2", "n1", SECRET.encode()) == ([False, peer_auth.REFUSED], True)
        assert not a.t.connected("n2")
        await a.t.stop()
        await b.t.stop()
    run(main)


async def handshake_reply(port: int, d_id: str, a_id: str, secret: bytes) -> Any:
    """Dial ``port`` as ``d_id`` by hand and return the acceptor's answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    _, _, nonce_a = msgpack.unpackb(await reader.readexactly(length))
    nonce_d = b"d" * peer_auth.NONCE_BYTES
    script = peer_auth.transcript(nonce_a, nonce_d, d_id, a_id)
    body = msgpack.packb([d_id, a_id, nonce_d, peer_auth.proof(secret, b"dial", script)])
    writer.write(struct.pack(">I", len(body)) + body)
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    answer = msgpack.unpackb(await reader.readexactly(length))
    closed = answer[0] is False and await asyncio.wait_for(reader.read(1), 5) == b""
    writer.close()
    return answer, closed


def test_every_refusal_gets_the_same_answer() -> None:
    async def main() -> None:
        (p1,) = free_ports(1)
        a = Node("n1", {"n1": p1, "n2": free_ports(1)[0]})
        await a.t.start()
        wrong_secret = await handshake_reply(p1, "n2", "n1", b"not the secret")
        unknown_id = await handshake_reply(p1, "n9", "n1", SECRET.encode())
        other_target = await handshake_reply(p1, "n2", "n3", SECRET.encode())
        good = await handshake_reply(p1, "n2", "n1", SECRET.encode())
        assert wrong_secret == unknown_id == other_target == ([False, peer_auth.REFUSED], True)
        assert good[0][0] is True
        await a.t.stop()
    run(main)


def test_a_relay_cannot_log_in_as_another_node() -> None:
    """n1 dials a relay it takes for n3; the relay shows n1 the challenge of
    n2 and forwards n1's proof to n2. The proof names n3, so n2 refuses."""
    async def main() -> None:
        p1, p2, p_relay = free_ports(3)
        n2 = Node("n2", {"n1": p1, "n2": p2})
        await n2.t.start()
        answers: list[Any] = []

        async def relay(r1: asyncio.StreamReader, w1: asyncio.StreamWriter) -> None:
            r2, w2 = await asyncio.open_connection("127.0.0.1", p2)
            # n2's challenge to n1, n1's proof to n2, n2's answer back
            for src, dst in ((r2, w1), (r1, w2), (r2, w1)):
                head = await src.readexactly(4)
                body = await src.readexactly(struct.unpack(">I", head)[0])
                if src is r2 and len(answers) < 2:
                    answers.append(msgpack.unpackb(body))
                dst.write(head + body)
            w1.close()
            w2.close()

        server = await asyncio.start_server(relay, "127.0.0.1", p_relay)
        n1 = Node("n1", {"n1": p1, "n3": p_relay})  # n1 believes n3 lives at the relay
        await n1.t.start()
        await until(lambda: len(answers) == 2, what="the relay to carry the handshake")
        assert answers[1] == [False, peer_auth.REFUSED]
        assert not n2.t.connected("n1") and not n1.t.connected("n3")
        server.close()
        await n1.t.stop()
        await n2.t.stop()
    run(main)


def test_an_altered_frame_closes_the_connection_and_is_not_delivered() -> None:
    """A man in the middle relays the handshake faithfully, then flips a bit
    of the first data frame: the receiver must drop it and close."""
    async def main() -> None:
        p1, p2, p_mitm = free_ports(3)
        n2 = Node("n2", {"n1": p1, "n2": p2})
        await n2.t.start()

        async def mitm(r1: asyncio.StreamReader, w1: asyncio.StreamWriter) -> None:
            r2, w2 = await asyncio.open_connection("127.0.0.1", p2)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, tamper: bool) -> None:
                frames = 0
                try:
                    while True:
                        head = await src.readexactly(4)
                        body = bytearray(await src.readexactly(struct.unpack(">I", head)[0]))
                        frames += 1
                        if tamper and frames == 2:  # frame 1 is the proof, frame 2 the first data frame
                            body[0] ^= 0x01
                        dst.write(head + bytes(body))
                except (asyncio.IncompleteReadError, ConnectionError):
                    dst.close()

            await asyncio.gather(pipe(r1, w2, True), pipe(r2, w1, False))

        server = await asyncio.start_server(mitm, "127.0.0.1", p_mitm)
        n1 = Node("n1", {"n1": p1, "n2": p_mitm})
        await n1.t.start()
        await until(lambda: n1.t.connected("n2"), what="n1's handshake through the relay")
        assert n1.t.send("n2", b"SET k v")
        await until(lambda: not n2.t._inbound_by_peer, what="n2 to close the tampered connection")
        assert n2.frames == []
        server.close()
        await n1.t.stop()
        await n2.t.stop()
    run(main)


def test_a_replayed_frame_is_refused() -> None:
    opener = peer_auth.FrameOpener(b"k" * 32)
    sealer = peer_auth.FrameSealer(b"k" * 32)
    first, second = b"one" + sealer.tag(b"one"), b"two" + sealer.tag(b"two")
    assert opener.open(first) == b"one"
    assert opener.open(first) is None  # replayed
    assert opener.open(second) == b"two"
    assert peer_auth.FrameOpener(b"k" * 32).open(second) is None  # out of order


def test_silent_connections_time_out_and_are_capped() -> None:
    async def main() -> None:
        (p1,) = free_ports(1)
        a = Node("n1", {"n1": p1, "n2": free_ports(1)[0]}, handshake_timeout_s=0.3,
                 max_unauthenticated=3)
        await a.t.start()
        conns = [await asyncio.open_connection("127.0.0.1", p1) for _ in range(4)]
        # the fourth is closed at once, without a challenge
        assert await asyncio.wait_for(conns[3][0].read(), 5) == b""
        # the others get a challenge, then are closed when their handshake does not come
        for reader, _ in conns[:3]:
            data = await asyncio.wait_for(reader.read(), 5)
            assert data and msgpack.unpackb(data[4:])[0] == peer_auth.PROTOCOL_NAME
        await until(lambda: a.t.unauthenticated == 0, what="the silent connections to be dropped")
        for _, writer in conns:
            writer.close()
        await a.t.stop()
    run(main)


@pytest.mark.parametrize("size", [0, 1, 100_000])
def test_seal_and_open_round_trip(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    sealed = payload + peer_auth.FrameSealer(b"a" * 32).tag(payload)
    assert len(sealed) == size + peer_auth.TAG_BYTES
    assert peer_auth.FrameOpener(b"a" * 32).open(sealed) == payload
    assert peer_auth.FrameOpener(b"b" * 32).open(sealed) is None


def test_coalescing_writes_an_iterations_frames_to_a_peer_at_once_in_order() -> None:
    """With ``coalesce``, the frames sent to a peer in one loop iteration leave in one write at
    its end, sealed in send order (the receiver checks every MAC and its sequence number); held
    frames count in ``buffered_bytes``; ``stop`` writes what is still held."""
    async def main() -> None:
        p1, p2 = free_ports(2)
        ports = {"n1": p1, "n2": p2}
        a, b = Node("n1", ports, coalesce=True), Node("n2", ports)
        await a.t.start()
        await b.t.start()
        await until(lambda: a.t.connected("n2") and b.t.connected("n1"), what="both directions")
        for i in range(50):
            assert a.t.send("n2", b"frame %d" % i)
        assert a.t.stats == {"frames_sent": 50, "frame_writes": 0}  # held until the iteration ends
        assert a.t.buffered_bytes("n2") >= sum(len(b"frame %d" % i) for i in range(50))
        await until(lambda: len(b.frames) == 50, what="50 frames")
        assert b.frames == [("n1", b"frame %d" % i) for i in range(50)]
        assert a.t.stats == {"frames_sent": 50, "frame_writes": 1}
        assert a.t.send("n2", b"sent just before the stop")
        await a.t.stop()
        await until(lambda: len(b.frames) == 51, what="the frame held at the stop")
        assert b.frames[-1] == ("n1", b"sent just before the stop")
        await b.t.stop()
    run(main)
