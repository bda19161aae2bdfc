"""A follower writes a full resync's chunk only at the offset it expects of the snapshot it
receives (core/shipping/snapshot_stream.py): a late chunk of an earlier stream, arriving on
another connection after a new stream began, once joined the new file, which then failed to
load (msgpack ExtraData) and closed the connection, under sustained 64 KiB writes."""

from __future__ import annotations

from replikv.core.shipping.messages import SnapshotChunk, decode, encode
from replikv.core.shipping.snapshot_stream import ABORT, IGNORE, WRITE, chunk_action


def chunk(index: int, offset: int, data: bytes = b"x" * 10, last: bool = False) -> SnapshotChunk:
    return SnapshotChunk(sender="n1", epoch=3, index=index, offset=offset, data=data, last=last)


def test_the_next_chunk_of_the_snapshot_being_received_is_written():
    assert chunk_action(200, 0, chunk(200, 0)) == WRITE
    assert chunk_action(200, 10, chunk(200, 10, last=True)) == WRITE


def test_a_chunk_of_another_stream_or_with_no_stream_is_ignored():
    assert chunk_action(200, 10, chunk(150, 10)) == IGNORE  # the earlier stream's, same offset even
    assert chunk_action(200, 0, chunk(150, 1 << 20)) == IGNORE
    assert chunk_action(None, 0, chunk(200, 0)) == IGNORE


def test_a_gap_or_a_repeat_in_the_stream_being_received_ends_it():
    assert chunk_action(200, 10, chunk(200, 20)) == ABORT  # a chunk lost
    assert chunk_action(200, 20, chunk(200, 10)) == ABORT  # a chunk twice


def test_the_chunk_identity_survives_the_wire():
    c = chunk(7, 1 << 20, b"abc", last=True)
    assert decode(encode(c)) == c
