"""Hinted handoff (Dynamo §4.6; Cassandra's hints): writes a stand-in holds
for a replica that was down, delivered when it is back.

Rules:
- A hint is a key state (``KeyedStore.key_blob``) kept per target node in
  that node's own ``KeyedStore``: two hints for the same key join, so the
  stand-in holds one merged state per key, never a growing list, and
  delivering it is one ``Put`` the target joins.
- A hint is removed only once the target acknowledged a state at least as
  new as the one held (``delivered`` compares the exact blob sent: a hint
  that grew while its delivery was in flight stays, and goes again).
- A delivery batch is bounded in keys and in bytes (``batch``).
- Hints are bounded: beyond ``max_keys`` per target the oldest-added keys are
  dropped and counted (``dropped``); anti-entropy repairs what they held, as
  Cassandra's max_hint_window does.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgpack

from replikv.core.crdt.keyed import KeyedStore
from replikv.core.framing import take_within

__all__ = ["Hints"]


class Hints:
    def __init__(self, conflicts: str = "lww", max_keys: int = 1_000_000) -> None:
        self.conflicts = conflicts
        self.max_keys = max_keys
        self.by_node: dict[str, KeyedStore] = {}
        self.dropped = 0

    def add(self, node: str, key: bytes, blob: bytes, now_ms: int) -> None:
        """Hold ``blob`` (a key state) for ``node``; ValueError if it is not one."""
        store = self.by_node.get(node)
        if store is None:
            store = self.by_node[node] = KeyedStore(self.conflicts)
        store.join_key(key, blob, now_ms)
        while len(store.ctx) > self.max_keys:
            store.forget(next(iter(store.ctx)))
            self.dropped += 1

    def pending(self, node: str) -> int:
        store = self.by_node.get(node)
        return 0 if store is None else len(store.ctx)

    def nodes(self) -> list[str]:
        return [n for n, s in self.by_node.items() if s.ctx]

    def batch(self, node: str, max_keys: int, max_bytes: int) -> list[tuple[bytes, bytes]]:
        """Up to ``max_keys`` hinted key states for ``node``, the oldest first, adding up to at
        most ``max_bytes`` (the first state alone may pass it): a delivery is one ``Put``, one
        message, which must fit a peer frame (issue 9: a larger frame closes the link, and the
        same batch would be sent again at every reconnect)."""
        store = self.by_node.get(node)
        if store is None:
            return []
        taken = take_within(((k, store.key_blob(k)) for k in store.ctx), max_keys, max_bytes)
        return [(k, b) for k, b in taken if b is not None]

    def delivered(self, node: str, key: bytes, blob: bytes) -> bool:
        """``node`` acknowledged ``blob`` for ``key``: drop the hint if it is
        still exactly that state. Whether it was dropped."""
        store = self.by_node.get(node)
        if store is None or store.key_blob(key) != blob:
            return False
        store.forget(key)
        if not store.ctx:
            del self.by_node[node]
        return True

    def items(self) -> Iterator[tuple[str, bytes, bytes]]:
        for node, store in self.by_node.items():
            for key in store.ctx:
                blob = store.key_blob(key)
                if blob is not None:
                    yield node, key, blob

    def snapshot(self) -> bytes:
        out: bytes = msgpack.packb(sorted([n, s.snapshot()] for n, s in self.by_node.items()),
                                   use_bin_type=True)
        return out

    @classmethod
    def restore(cls, blob: bytes, conflicts: str = "lww", max_keys: int = 1_000_000) -> Hints:
        hints = cls(conflicts, max_keys)
        for node, snap in msgpack.unpackb(blob, raw=False, use_list=True):
            hints.by_node[node] = KeyedStore.restore(snap, conflicts)
        return hints
