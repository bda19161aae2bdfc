"""What each peer's version of the peer protocol understands, learned from the peer itself, so
that during a rolling upgrade a node sends a newer wire form only to peers that take it.

The exchange (the sharded raft mode's FEATURES frame; the leaderless mode has its own, its
core's ``Hello``): when a node's connection to a peer comes up it sends ``[its features,
True]``; a node that receives one with ``True`` (``ask``) records it and answers with its own
``[features, False]``. So each side learns the other's, whichever of the two connections came
up first, and no answer is answered again. A peer's features are forgotten when its connection
drops: it may come back running another version. A peer that never announced anything (an
older node, which drops the frame as one of an unknown kind, with a warning) is sent only the
older forms; so is a peer whose announcement is still on its way (every form it is sent is
one it reads).
"""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["PeerFeatures"]

MAX_FEATURES = 64  # a peer announcing more is speaking garbage


class PeerFeatures:
    """The features this node announces (``mine``) and those each peer announced."""

    __slots__ = ("_mine", "_peers")

    def __init__(self, mine: tuple[str, ...]) -> None:
        self._mine = list(mine)
        self._peers: dict[str, frozenset[str]] = {}

    def hello(self) -> bytes:
        """The body to send when a connection to a peer came up: ours, and a request for theirs."""
        out: bytes = msgpack.packb([self._mine, True])
        return out

    def received(self, peer: str, body: bytes) -> bytes | None:
        """A peer's announcement: recorded; the body to answer with when it asked for ours.
        ``ValueError`` for a body that is not ``[[str, ...], bool]`` (nothing recorded)."""
        try:
            parts: Any = msgpack.unpackb(body)
        except Exception as e:  # noqa: BLE001 - msgpack raises several exception types on garbage
            raise ValueError(f"undecodable features frame: {type(e).__name__}") from None
        if (type(parts) is not list or len(parts) != 2 or type(parts[0]) is not list
                or len(parts[0]) > MAX_FEATURES or not all(type(f) is str for f in parts[0])
                or type(parts[1]) is not bool):
            raise ValueError("a features frame is [[feature, ...], ask]")
        self._peers[peer] = frozenset(parts[0])
        if not parts[1]:
            return None
        out: bytes = msgpack.packb([self._mine, False])
        return out

    def forget(self, peer: str) -> None:
        """The connection to ``peer`` dropped: until it announces again, it gets the older forms."""
        self._peers.pop(peer, None)

    def has(self, peer: str, feature: str) -> bool:
        features = self._peers.get(peer)
        return features is not None and feature in features
