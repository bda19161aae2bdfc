"""The follower's side of forwarding: the replies of a frame batch leave in one write per client."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack

from replikv.runtime.base import BaseRunner
from replikv.runtime.forwarding import FORWARD_REPLY, Forwarder
from replikv.runtime.resp_server import Slot


class _Client:
    """A pipelined client: its ready replies leave, in order, when the node flushes it."""

    def __init__(self, node: "_Node") -> None:
        self.node, self.resp3, self.session_index = node, False, 0
        self.queue: list[Slot] = []
        self.writes: list[bytes] = []

    def slot(self) -> Slot:
        slot = Slot(self)  # type: ignore[arg-type]
        self.queue.append(slot)
        return slot

    def slot_ready(self) -> None:
        self.node.dirty_clients.add(self)

    def flush(self) -> None:
        ready = []
        while self.queue and self.queue[0].data is not None:
            ready.append(self.queue.pop(0).data)
        if ready:
            self.writes.append(b"".join(ready))  # type: ignore[arg-type]


class _Node:
    flush_clients_soon = BaseRunner.flush_clients_soon
    _scheduled_flush = BaseRunner._scheduled_flush
    _flush_scheduled = False

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty_clients: set[Any] = set()

    def _flush_clients(self) -> None:
        dirty, self.dirty_clients = self.dirty_clients, set()
        for conn in dirty:
            conn.flush()


def test_a_frame_batchs_forwarded_replies_leave_in_one_write_per_client() -> None:
    """16 pipelined commands forwarded, their 16 replies arriving in one read: one write to the
    client, at the end of the loop iteration, in pipeline order (one write per reply before)."""
    async def main() -> None:
        node = _Node(asyncio.get_running_loop())
        fwd = Forwarder(node)  # type: ignore[arg-type]
        client = _Client(node)
        for rid in range(1, 17):
            fwd.pending.add(rid, client, 1e12, "expired")
        for rid in range(1, 17):
            assert fwd.handle("n1", FORWARD_REPLY + msgpack.packb([rid, b":%d\r\n" % rid, rid]))
        assert client.writes == []  # nothing written while the frames are being handled
        await asyncio.sleep(0)
        assert client.writes == [b"".join(b":%d\r\n" % rid for rid in range(1, 17))]
        assert client.session_index == 16
    asyncio.run(main())
