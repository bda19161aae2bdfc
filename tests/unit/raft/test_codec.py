"""The Raft wire codec: every message round-trips; garbage is a ValueError, nothing else."""

from __future__ import annotations

import random

import msgpack
import pytest

from replikv.core.raft import codec
from replikv.core.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Config,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)

CFG = Config(voters=frozenset({1, 2, 3}), learners=frozenset({4}))
ENTRIES = (
    Entry(term=2, index=5, kind=EntryKind.NOOP),
    Entry(term=2, index=6, data=b"\x00payload\xff", client_id=7, seq=3),
    Entry(term=3, index=7, kind=EntryKind.CONFIG, config=CFG),
)
H = {"term": 3, "src": 1, "dst": 2}

EVERY_MESSAGE = [
    RequestVote(**H, last_log_index=9, last_log_term=2),
    RequestVote(**H, last_log_index=0, last_log_term=0, pre_vote=True, transfer=True),
    RequestVoteResponse(**H, granted=True, pre_vote=True),
    AppendEntries(**H, prev_log_index=4, prev_log_term=2, entries=ENTRIES, leader_commit=4),
    AppendEntries(**H, prev_log_index=0, prev_log_term=0),
    AppendEntriesResponse(**H, success=True, match_index=7),
    AppendEntriesResponse(**H, success=False, reject_index=6, conflict_term=1, conflict_index=3),
    Heartbeat(**H, commit=6, ctx=11),
    HeartbeatResponse(**H, ctx=11),
    InstallSnapshot(
        **H, last_included_index=100, last_included_term=2, config=CFG, offset=65536,
        data=b"chunk", done=False,
    ),
    InstallSnapshotResponse(**H, last_included_index=100, next_offset=5, done=True, match_index=100),
    TimeoutNow(**H),
    ReadIndexRequest(**H, request_id=("n2", 17), lease=True),
    ReadIndexRequest(**H, request_id=None),
    ReadIndexResponse(**H, request_id=42, index=9, ok=True),
    ReadIndexResponse(**H, request_id=b"x", ok=False),
]


@pytest.mark.parametrize("msg", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_round_trip(msg: object) -> None:
    assert codec.decode(codec.encode(msg)) == msg  # type: ignore[arg-type]


def test_every_message_type_is_covered() -> None:
    assert {type(m) for m in EVERY_MESSAGE} == set(codec._TYPES)


def test_entry_wire_form_round_trips() -> None:
    for e in ENTRIES:
        assert codec.entry_from_wire(msgpack.unpackb(msgpack.packb(codec.entry_to_wire(e)))) == e


def test_fast_normal_entry_equals_the_keyword_constructor() -> None:
    from replikv.core.raft.messages import normal_entry

    fast = normal_entry(3, 7, b"cmd", 11, 2)
    assert fast == Entry(term=3, index=7, data=b"cmd", client_id=11, seq=2)
    assert hash(fast) == hash(Entry(term=3, index=7, data=b"cmd", client_id=11, seq=2))
    with pytest.raises(AttributeError):
        fast.term = 4  # type: ignore[misc]  # still frozen


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",  # never used in msgpack
        msgpack.packb("not a list"),
        msgpack.packb([]),
        msgpack.packb([99, 1, 1, 2]),  # unknown tag
        msgpack.packb([8, 1, 1]),  # TimeoutNow with a field missing
        msgpack.packb([8, 1, 1, 2, 3]),  # one field too many
        msgpack.packb([8, -1, 1, 2]),  # negative term
        msgpack.packb([8, True, 1, 2]),  # a bool is not a term
        msgpack.packb([8, "3", 1, 2]),  # a str is not a term
        msgpack.packb([1, 3, 1, 2, 1, False]),  # granted as int
        msgpack.packb([2, 3, 1, 2, 0, 0, "entries", 0]),
        msgpack.packb([2, 3, 1, 2, 0, 0, [[1, 1, 9, b"", None, None, None]], 0]),  # bad kind
        msgpack.packb([2, 3, 1, 2, 0, 0, [[1, 1, 0, "text", None, None, None]], 0]),  # data str
        msgpack.packb([2, 3, 1, 2, 0, 0, [[1, 1, 2, b"", None, None, None]], 0]),  # config missing
        msgpack.packb([6, 3, 1, 2, 1, 1, [[1, 2], [2]], 0, b"", True]),  # voter and learner
        msgpack.packb([9, 3, 1, 2, {"a": 1}, False]),  # request id a map
        # NORMAL entries, the decoder's fast path: each field checked as on the slow one
        msgpack.packb([2, 3, 1, 2, 0, 0, [[1, 1, False, b"", None, None, None]], 0]),  # bool kind
        msgpack.packb([2, 3, 1, 2, 0, 0, [[-1, 1, 0, b"", None, None, None]], 0]),  # term < 0
        msgpack.packb([2, 3, 1, 2, 0, 0, [[1, True, 0, b"", None, None, None]], 0]),  # bool index
        msgpack.packb([2, 3, 1, 2, 0, 0, [[1, 1, 0, b"", -5, 1, None]], 0]),  # client id < 0
        msgpack.packb([2, 3, 1, 2, 0, 0, [[1, 1, 0, b"", 5, "1", None]], 0]),  # seq a str
        msgpack.packb([2, 3, 1, 2, 0, 0, [[1, 1, 0, b"", None, None, [[1], []]]], 0]),  # config
        msgpack.packb([2, 3, 1, 2, 0, 0, [[1, 1, 0, b"", None, None]], 0]),  # 6 fields
    ],
)
def test_garbage_is_a_value_error(frame: bytes) -> None:
    with pytest.raises(ValueError):
        codec.decode(frame)


def test_random_bytes_raise_only_value_error() -> None:
    rng = random.Random(1234)
    valid = [codec.encode(m) for m in EVERY_MESSAGE]  # type: ignore[arg-type]
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(3000):
        if rng.random() < 0.5:
            frame = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        else:  # a valid frame with a few bytes flipped or cut
            b = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            frame = bytes(b[: rng.randrange(1, len(b) + 1)])
        try:
            msg = codec.decode(frame)
        except ValueError:  # the only error a bad frame may raise
            outcomes["refused"] += 1
            continue
        outcomes["decoded"] += 1
        # whatever decodes is a well-formed message: it survives a round trip unchanged
        assert codec.decode(codec.encode(msg)) == msg
    assert outcomes["refused"] > 1000 and outcomes["decoded"] > 10, outcomes


@pytest.mark.parametrize("msg", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_wire_list_round_trips_and_is_what_encode_packs(msg: object) -> None:
    """``to_wire`` / ``from_wire``: the unpacked form a container (the multi-group batch) embeds;
    ``encode`` is exactly its packing, so both forms are one format."""
    wire = codec.to_wire(msg)  # type: ignore[arg-type]
    assert msgpack.packb(wire, use_bin_type=True) == codec.encode(msg)  # type: ignore[arg-type]
    assert codec.from_wire(msgpack.unpackb(msgpack.packb(wire), raw=False)) == msg


def test_from_wire_refuses_what_decode_refuses() -> None:
    for frame in [msgpack.packb([8, -1, 1, 2]), msgpack.packb([1, 3, 1, 2, 1, False]), msgpack.packb([])]:
        with pytest.raises(ValueError):
            codec.from_wire(msgpack.unpackb(frame))
    for parts in ["x", None, [None], {"a": 1}]:
        with pytest.raises(ValueError):
            codec.from_wire(parts)


def test_the_spelled_out_append_paths_decode_and_refuse_as_the_field_loop() -> None:
    """from_wire's own paths for AppendEntries and its response give what the general field
    loop gives, or the same ValueError, for well-formed and mutated wire lists."""
    import random as _random

    from replikv.core.raft.codec import _TYPES, _from_wire_fields, from_wire, to_wire
    from replikv.core.raft.messages import AppendEntries, AppendEntriesResponse, Entry

    rng = _random.Random(13)
    msgs = [
        AppendEntries(term=3, src=1, dst=2, prev_log_index=9, prev_log_term=2,
                      entries=(Entry(term=3, index=10, data=b"a", client_id=4, seq=1),), leader_commit=8),
        AppendEntries(term=0, src=0, dst=0, prev_log_index=0, prev_log_term=0),
        AppendEntriesResponse(term=3, src=2, dst=1, success=True, match_index=10),
        AppendEntriesResponse(term=3, src=2, dst=1, success=False, reject_index=9, conflict_term=2,
                              conflict_index=5),
    ]
    odd = [-1, 1.5, True, False, None, "x", b"x", [], [[1]], 2**64]
    checked = 0
    for m in msgs:
        wire = to_wire(m)
        assert from_wire(list(wire)) == m
        for _ in range(300):
            parts = list(wire)
            i = rng.randrange(1, len(parts))
            parts[i] = rng.choice(odd)
            if rng.random() < 0.1:
                parts.append(0)
            try:
                expected: object = _from_wire_fields(_TYPES[parts[0]], parts)
            except ValueError as e:
                expected = ("ValueError", str(e))
            try:
                got: object = from_wire(parts)
            except ValueError as e:
                got = ("ValueError", str(e))
            assert got == expected, (parts, got, expected)
            checked += 1
    assert checked == 1200
