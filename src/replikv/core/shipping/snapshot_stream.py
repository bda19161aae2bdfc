"""A follower's side of a full resync's chunk stream (leader-follower), pure.

A snapshot arrives as ``SnapshotBegin`` then ``SnapshotChunk``s, each naming
the snapshot's index and its offset in it. Frames of one connection arrive in
order, but a node may hear one peer on two connections for a moment (its
own dial and the peer's), so after a stream broke off and a new one began,
chunks of the old one may still arrive. Rule: a chunk is written only if it
belongs to the snapshot being received, at exactly the offset written so far;
a chunk of another snapshot is ignored; a gap in the right one ends the
transfer (the file could not be whole), and the leader, which goes on
streaming from the follower's SyncRequests, resyncs it again."""

from __future__ import annotations

from replikv.core.shipping.messages import SnapshotChunk

WRITE, IGNORE, ABORT = "write", "ignore", "abort"


def chunk_action(receiving: int | None, written: int, chunk: SnapshotChunk) -> str:
    """What to do with ``chunk`` while receiving the snapshot at index ``receiving`` (None:
    none) of which ``written`` bytes are written."""
    if receiving is None or chunk.index != receiving:
        return IGNORE
    return WRITE if chunk.offset == written else ABORT
