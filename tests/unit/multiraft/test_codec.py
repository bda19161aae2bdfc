"""The batch codec (core/multiraft/codec.py): round trips, and garbage refused with ValueError."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.multiraft import codec
from replikv.core.multiraft.messages import Batch, Quiesce
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
