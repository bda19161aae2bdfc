"""Cutting a sequence of encoded pieces into runs that each fit one peer frame.

Every peer transport closes a link on a frame above its ``max_frame_bytes``
(``runtime/tcp_transport.py``; ``max_bulk_len`` + 64 MiB), and the peer that
sent it resends the same frame after the reconnect (issue 9). So whatever
joins several messages (or several writes, or several ops) into one frame
cuts the join where it would pass the limit; a piece larger than the limit
on its own is left alone, in a run of its own: its size is bounded where it
is made (one client write, whose value is at most ``max_bulk_len``).

``cut_runs`` gives the runs themselves. Used by the leaderless replica's frames (``core/dynamo/replica.py``: its
``Puts`` and the frame's batch of messages) and the multi-leader runtime's
``Ops`` frames (``runtime/multi_leader.py``); ``take_within`` by what sends
several key states in one message (one ``Put``: a hint delivery, a stream
chunk), which no frame cut can split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar, cast

__all__ = ["cut_by_bytes", "cut_runs", "take_within"]

S = TypeVar("S", bound=Sequence[object])


def cut_by_bytes(sizes: Sequence[int], budget: int) -> list[int]:
    """Where to cut pieces of ``sizes`` (bytes each, in order) into runs of consecutive pieces
    whose sizes add up to at most ``budget``: the end index of each run, the last one
    ``len(sizes)`` (no runs for no pieces). Greedy, in order: a run ends only where its next
    piece would take it past ``budget``; a piece above ``budget`` is a run on its own.

    Invariant: the runs cover the pieces once each, in order; every run of more than one piece
    adds up to at most ``budget``."""
    ends: list[int] = []
    start = used = 0  # the run being filled: its first piece, its bytes
    for i, n in enumerate(sizes):
        if i > start and used + n > budget:
            ends.append(i)
            start, used = i, 0
        used += n
    if sizes:
        ends.append(len(sizes))
    return ends


def cut_runs(items: S, sizes: Sequence[int], budget: int) -> list[S]:
    """``items`` (a list or tuple, ``sizes`` the bytes of each) as the runs ``cut_by_bytes``
    cuts them into, each a slice of the same type, in order."""
    runs: list[S] = []
    start = 0
    for end in cut_by_bytes(sizes, budget):
        runs.append(cast(S, items[start:end]))  # a list's or tuple's slice is one again
        start = end
    return runs


def take_within(states: Iterable[tuple[bytes, bytes | None]], max_count: int,
                max_bytes: int) -> list[tuple[bytes, bytes | None]]:
    """The first of ``states`` (a key and its state, None for a key that holds none), read
    lazily (a state is encoded only if it may be taken): at most ``max_count``, their keys and
    states adding up to at most ``max_bytes``, bar the first (taken whatever its size)."""
    out: list[tuple[bytes, bytes | None]] = []
    size = 0
    for key, blob in states:
        if blob is not None:
            size += len(key) + len(blob)
            if out and size > max_bytes:
                break
        out.append((key, blob))
        if len(out) >= max_count:
            break
    return out
