"""The batch codec (core/multiraft/codec.py): round trips, and garbage refused with ValueError."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.multiraft import codec
from replikv.core.multiraft.messages import Batch, Quiesce
from replikv.core.raft import codec as raft_codec
from replikv.core.raft.messages import AppendEntries, Heartbeat, HeartbeatResponse, RequestVote, normal_entry


def sample() -> Batch:
    return Batch(src=1, dst=2, incarnation=3, msgs=(
        (0, Heartbeat(term=4, src=1, dst=2, commit=9, ctx=2)),
        (7, AppendEntries(term=4, src=1, dst=2, prev_log_index=3, prev_log_term=4,
                          entries=(normal_entry(4, 4, b"set k v", 5, 6),), leader_commit=3)),
        (9, RequestVote(term=5, src=1, dst=2, last_log_index=3, last_log_term=4, pre_vote=True)),
        (2, HeartbeatResponse(term=4, src=1, dst=2, ctx=1)),
    ), quiesce=(Quiesce(group=3, term=4, last_index=10, commit=10),), wake=(5, 6))


def test_round_trip() -> None:
    b = sample()
    assert codec.decode(codec.encode(b)) == b
    ping = Batch(src=4, dst=1)
    assert codec.decode(codec.encode(ping)) == ping and ping.is_ping


@pytest.mark.parametrize("frame", [
    b"", b"\xc1", msgpack.packb([1, 2, 3]), msgpack.packb([1, 2, 0, [[1, b"junk"]], [], []]),
    msgpack.packb([1, 2, 0, [[-1, b""]], [], []]), msgpack.packb([1, 2, 0, [], [[1, 2, 3]], []]),
    msgpack.packb([1, 2, 0, [], [], ["x"]]), msgpack.packb([1, -2, 0, [], [], []]),
    msgpack.packb([1, 2, 0, {}, [], []]), msgpack.packb([1, 2, 0, [], [[1 << 40, 1, 1, 1]], []]),
])
def test_garbage_is_a_value_error(frame: bytes) -> None:
    with pytest.raises(ValueError):
        codec.decode(frame)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_another_error(data: bytes) -> None:
    try:
        codec.decode(data)
    except ValueError:
        pass


def test_mutated_frames_decode_or_raise_value_error() -> None:
    good = codec.encode(sample())
    rng = random.Random(7)
    for _ in range(2000):
        b = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        try:
            codec.decode(bytes(b))
        except ValueError:
            pass


def test_messages_are_embedded_unpacked_so_a_batch_is_packed_once() -> None:
    """Each Raft message travels as its wire list inside the batch (one pack, one unpack per
    frame), not as bytes packed on their own and again in the batch."""
    b = sample()
    parts = msgpack.unpackb(codec.encode(b), raw=False)
    assert [item for item in parts[3]] == [[g, raft_codec.to_wire(m)] for g, m in b.msgs]
    assert all(type(wire) is list for _g, wire in parts[3])


def test_the_older_form_from_a_peer_not_yet_upgraded_still_decodes() -> None:
    b = sample()
    old = msgpack.packb([b.src, b.dst, b.incarnation, [[g, raft_codec.encode(m)] for g, m in b.msgs],
                         [[q.group, q.term, q.last_index, q.commit] for q in b.quiesce], list(b.wake)],
                        use_bin_type=True)
    assert codec.decode(old) == b
    assert codec.encode(b, embedded=False) == old  # what a peer that did not announce the form is sent


@pytest.mark.parametrize("item", [[1, 5], [1, None], [1, []], [1, [99, 1, 1, 2]], [1, [8, -1, 1, 2]],
                                  [True, [8, 1, 1, 2]], [1 << 31, [8, 1, 1, 2]], [1, b"junk"], [1, [8, 1, 1, 2], 3]])
def test_a_bad_embedded_message_is_a_value_error(item: list[object]) -> None:
    with pytest.raises(ValueError):
        codec.decode(msgpack.packb([1, 2, 0, [item], [], []]))
