"""Property tests for the RESP codec: round trips, chunking, garbage."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import hiredis
from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.replies import NULL_ARRAY, RespError
from replikv.core.resp import (
    ProtocolError,
    ReplyParser,
    RequestParser,
    encode_command,
    encode_reply,
)

FAST = settings(max_examples=150, deadline=None)


def feed_in_chunks(parser: RequestParser, data: bytes, cuts: list[int]) -> list[list[bytes]]:
    """Feed data cut at cuts (offsets), collecting commands; errors propagate."""
    got: list[list[bytes]] = []
    bounds = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    for a, b in pairwise(bounds):
        parser.feed(data[a:b])
        got += parser.commands()
    return got


def outcome(data: bytes, cuts: list[int], **limits: int) -> tuple[list[list[bytes]], str | None]:
    parser = RequestParser(**limits)
    got: list[list[bytes]] = []
    bounds = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    try:
        for a, b in pairwise(bounds):
            parser.feed(data[a:b])
            got += parser.commands()
    except ProtocolError as err:
        return got + err.commands, str(err)
    return got, None


commands_st = st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=6), max_size=12)
cuts_st = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


@FAST
@given(commands_st, cuts_st)
def test_encode_command_round_trip(commands: list[list[bytes]], cuts: list[int]) -> None:
    wire = b"".join(encode_command(c) for c in commands)
    assert feed_in_chunks(RequestParser(), wire, cuts) == commands


# Inline-safe tokens: what the seed's plain-text client sends.
token_st = st.binary(min_size=1, max_size=10).filter(
    lambda b: not any(c in b for c in b" \t\n\r\v\f\0\"'")
)


@FAST
@given(
    st.lists(
        st.tuples(st.booleans(), st.lists(token_st, min_size=1, max_size=4)),
        max_size=10,
    ),
    cuts_st,
)
def test_mixed_inline_and_array_round_trip(
    commands: list[tuple[bool, list[bytes]]], cuts: list[int]
) -> None:
    parts = []
    for inline, args in commands:
        if inline and args[0][:1] != b"*":
            parts.append(b" ".join(args) + b"\r\n")
        else:
            parts.append(encode_command(args))
    wire = b"".join(parts)
    assert feed_in_chunks(RequestParser(), wire, cuts) == [args for _, args in commands]


# Bytes that exercise the parser's branches far more often than uniform noise.
protocol_alphabet = st.sampled_from(
    [
        b"*",
        b"$",
        b"\r\n",
        b"\r",
        b"\n",
        b"0",
        b"1",
        b"2",
        b"3",
        b"-",
        b"+",
        b":",
        b" ",
        b'"',
        b"'",
        b"\\",
        b"x",
        b"a",
        b"\0",
        b"*1\r\n",
        b"$1\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    ]
)
protocolish_st = st.lists(protocol_alphabet, max_size=40).map(b"".join)
limits_st = st.fixed_dictionaries(
    {
        "max_bulk_len": st.integers(1, 64),
        "max_args": st.integers(1, 8),
        "max_inline_len": st.integers(1, 64),
    }
)


@FAST
@given(st.one_of(st.binary(max_size=200), protocolish_st), cuts_st, limits_st)
def test_garbage_raises_only_protocol_error_and_split_does_not_matter(
    data: bytes, cuts: list[int], limits: dict[str, int]
) -> None:
    whole = outcome(data, [], **limits)  # any other exception fails the test
    assert outcome(data, cuts, **limits) == whole
    assert outcome(data, list(range(len(data))), **limits) == whole


@FAST
@given(st.one_of(st.binary(max_size=300), protocolish_st), cuts_st)
def test_garbage_with_default_limits(data: bytes, cuts: list[int]) -> None:
    assert outcome(data, cuts) == outcome(data, [])


# --------------------------------------------------------------------------- #
# encode_reply -> ReplyParser
# --------------------------------------------------------------------------- #

scalar_st = st.one_of(
    st.binary(max_size=20),
    st.text(max_size=10).filter(lambda s: "\r" not in s and "\n" not in s),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=True),
    st.none(),
    st.builds(RespError, st.text(max_size=10)),
    st.just(NULL_ARRAY),
)
hashable_st = st.one_of(st.binary(max_size=8), st.integers(-1000, 1000))
reply_st = st.recursive(
    scalar_st,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(hashable_st, children, max_size=3),
        st.sets(hashable_st, max_size=4),
    ),
    max_leaves=20,
)


def expected_decode(value: Any, resp3: bool) -> Any:
    """What ReplyParser gives back for encode_reply(value, resp3)."""
    if value is NULL_ARRAY:
        return None
    if isinstance(value, bool):
        return value if resp3 else int(value)
    if isinstance(value, int):
        return value if resp3 or -(2**63) <= value < 2**63 else str(value).encode()
    if isinstance(value, float):
        return value if resp3 else b"%.17g" % value
    if isinstance(value, RespError):
        message = value.message.removeprefix("-")
        return RespError(message or "ERR")
    if isinstance(value, (list, tuple)):
        return [expected_decode(v, resp3) for v in value]
    if isinstance(value, dict):
        if resp3:
            return {expected_decode(k, resp3): expected_decode(v, resp3) for k, v in value.items()}
        flat: list[Any] = []
        for k, v in value.items():
            flat += [expected_decode(k, resp3), expected_decode(v, resp3)]
        return flat
    if isinstance(value, (set, frozenset)):
        items = [expected_decode(v, resp3) for v in value]
        return set(items) if resp3 else items
    return value


def same(a: Any, b: Any) -> bool:
    """Equality where nan equals nan and float/int kinds must match."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@FAST
@given(reply_st, st.booleans(), cuts_st)
def test_encode_reply_round_trip(value: Any, resp3: bool, cuts: list[int]) -> None:
    wire = encode_reply(value, resp3=resp3)
    parser = ReplyParser()
    got = []
    bounds = [0, *sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]
    for a, b in pairwise(bounds):
        parser.feed(wire[a:b])
        got += parser.replies()
    assert len(got) == 1
    assert same(got[0], expected_decode(value, resp3)), (got[0], value)
    # hiredis, an independent reader, accepts the same bytes as one reply
    # (a sentinel for "no reply yet": hiredis returns False for RESP3 #f too).
    incomplete = object()
    reader = hiredis.Reader(notEnoughData=incomplete)
    reader.feed(wire)
    assert reader.gets() is not incomplete
    assert reader.gets() is incomplete
