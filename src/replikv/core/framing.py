"""Cutting a sequence of encoded pieces into runs that each fit one peer frame.

Every peer transport closes a link on a frame above its ``max_frame_bytes``
(``runtime/tcp_transport.py``; ``max_bulk_len`` + 64 MiB), and the peer that
sent it resends the same frame after the reconnect (issue 9). So whatever
joins several messages (or several writes, or several ops) into one frame
cuts the join where it would pass the limit; a piece larger than the limit
on its own is left alone, in a run of its own: its size is bounded where it
is made (one client write, whose value is at most ``max_bulk_len``).

Used by the leaderless replica's frames (``core/dynamo/replica.py``: its
``Puts`` and the frame's batch of messages) and the multi-leader runtime's
``Ops`` frames (``runtime/multi_leader.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["cut_by_bytes"]


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
