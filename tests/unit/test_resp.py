"""Unit tests for the sans-I/O RESP codec (replikv.core.resp)."""

from __future__ import annotations

import ast
import math
from itertools import pairwise
from pathlib import Path

import pytest

from replikv.core import resp
from replikv.core.replies import NULL_ARRAY, Raw, RespError
from replikv.core.resp import (
    NULL_BULK,
    OK_REPLY,
    PONG_REPLY,
    QUEUED_REPLY,
    ProtocolError,
    ReplyParser,
    RequestParser,
    encode_bulk,
    encode_command,
    encode_int,
    encode_reply,
    split_inline,
)

Outcome = tuple[list[list[bytes]], str | None]


def parse_whole(data: bytes, **limits: int) -> Outcome:
    """Feed everything at once: (commands, error message or None)."""
    parser = RequestParser(**limits)
    parser.feed(data)
    try:
        return parser.commands(), None
    except ProtocolError as err:
        return err.commands, str(err)


def parse_split(data: bytes, cuts: list[int], **limits: int) -> Outcome:
    """Feed data cut at the given offsets, calling commands() after every feed."""
    parser = RequestParser(**limits)
    got: list[list[bytes]] = []
    bounds = [0, *sorted(cuts), len(data)]
    try:
        for a, b in pairwise(bounds):
            parser.feed(data[a:b])
            got += parser.commands()
    except ProtocolError as err:
        return got + err.commands, str(err)
    return got, None


def parse_bytewise(data: bytes, **limits: int) -> Outcome:
    return parse_split(data, list(range(1, len(data))), **limits)


def assert_chunk_independent(data: bytes, **limits: int) -> Outcome:
    """The outcome is the same fed whole, byte by byte, and cut at every point."""
    whole = parse_whole(data, **limits)
    assert parse_bytewise(data, **limits) == whole
    for cut in range(1, len(data)):
        assert parse_split(data, [cut], **limits) == whole, cut
    return whole


# --------------------------------------------------------------------------- #
# arrays
# --------------------------------------------------------------------------- #


def test_redis_cli_array_with_space_in_value() -> None:
    # What redis-cli sends for: SET k "hello world"
    wire = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$11\r\nhello world\r\n"
    assert assert_chunk_independent(wire) == ([[b"SET", b"k", b"hello world"]], None)


def test_redis_benchmark_style_pipeline() -> None:
    one = b"*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n"
    parser = RequestParser()
    parser.feed(one * 16)
    assert parser.commands() == [[b"SET", b"key:__rand_int__", b"xxx"]] * 16
    assert parser.pending == 0


def test_binary_safe_values() -> None:
    value = bytes(range(256)) + b"\r\n*1\r\n$4\r\nPING\r\n"
    wire = encode_command([b"SET", b"k", value])
    assert assert_chunk_independent(wire) == ([[b"SET", b"k", value]], None)


def test_empty_bulk_argument() -> None:
    assert parse_whole(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n") == ([[b"GET", b""]], None)


def test_empty_and_null_arrays_are_skipped() -> None:
    wire = b"*0\r\n*-1\r\n*-7\r\n*1\r\n$4\r\nPING\r\n*0\r\n"
    assert assert_chunk_independent(wire) == ([[b"PING"]], None)


def test_incomplete_command_waits() -> None:
    parser = RequestParser()
    parser.feed(b"*2\r\n$3\r\nGET\r\n$1\r\n")
    assert parser.commands() == []
    parser.feed(b"k")
    assert parser.commands() == []
    parser.feed(b"\r\n")
    assert parser.commands() == [[b"GET", b"k"]]
    assert parser.commands() == []


def test_large_value_in_many_chunks() -> None:
    value = b"v" * 300_000
    wire = encode_command([b"SET", b"big", value]) + encode_command([b"GET", b"big"])
    parser = RequestParser()
    got: list[list[bytes]] = []
    for i in range(0, len(wire), 4096):
        parser.feed(wire[i : i + 4096])
        got += parser.commands()
    assert got == [[b"SET", b"big", value], [b"GET", b"big"]]


def test_a_buffer_the_caller_keeps_is_copied_and_a_read_left_over_is_kept() -> None:
    """``feed`` keeps a ``bytes`` read as it is (immutable) while nothing is pending, but
    never a buffer its caller may change; what a read leaves over stays until completed."""
    parser = RequestParser()
    data = bytearray(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
    parser.feed(data)
    data[-3:] = b"X\r\n"
    assert parser.commands() == [[b"GET", b"k"]]
    parser.feed(b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$2\r\nb")  # a read ends mid-command
    assert parser.commands() == [[b"GET", b"a"]]
    parser.feed(b"c\r\n")
    assert parser.commands() == [[b"GET", b"bc"]]
    assert parser.pending == 0


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"*1\r\n:5\r\n", "Protocol error: expected '$', got ':'"),
        (b"*1\r\n+PING\r\n", "Protocol error: expected '$', got '+'"),
        (b"*1\r\n-ERR x\r\n", "Protocol error: expected '$', got '-'"),
        (b"*1\r\n*1\r\n$1\r\na\r\n", "Protocol error: expected '$', got '*'"),
        (b"*1\r\n=7\r\ntxt:abc\r\n", "Protocol error: expected '$', got '='"),
        (b"*1\r\n(12345\r\n", "Protocol error: expected '$', got '('"),
        (b"*1\r\n,1.5\r\n", "Protocol error: expected '$', got ','"),
        (b"*1\r\n_\r\n", "Protocol error: expected '$', got '_'"),
        (b"*2\r\n$1\r\na\r\n%1\r\n$1\r\na\r\n$1\r\nb\r\n", "Protocol error: expected '$', got '%'"),
        (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$03\r\nabc\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$+3\r\nabc\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$3 \r\nabc\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$3\rXabc\r\n", "Protocol error: invalid bulk length"),
        (b"*x\r\n", "Protocol error: invalid multibulk length"),
        (b"*01\r\n$1\r\na\r\n", "Protocol error: invalid multibulk length"),
        (b"*+1\r\n$1\r\na\r\n", "Protocol error: invalid multibulk length"),
        (b"*\r\n", "Protocol error: invalid multibulk length"),
        (b"*-0\r\n", "Protocol error: invalid multibulk length"),
        (b"*99999999999999999999\r\n", "Protocol error: invalid multibulk length"),
        (b"*1\r\n$3\r\nabcXY", "Protocol error: expected '\\r\\n' after bulk data"),
    ],
)
def test_malformed_arrays(wire: bytes, message: str) -> None:
    assert assert_chunk_independent(wire) == ([], message)


def test_good_commands_before_an_error_are_kept() -> None:
    wire = encode_command([b"SET", b"a", b"1"]) + b"*1\r\n:5\r\n" + encode_command([b"GET", b"a"])
    commands, error = assert_chunk_independent(wire)
    assert commands == [[b"SET", b"a", b"1"]]
    assert error == "Protocol error: expected '$', got ':'"


def test_parser_is_dead_after_an_error() -> None:
    parser = RequestParser()
    parser.feed(b"*1\r\n:5\r\n")
    with pytest.raises(ProtocolError):
        parser.commands()
    parser.feed(encode_command([b"PING"]))
    with pytest.raises(ProtocolError, match="expected"):
        parser.commands()
    assert parser.pending == 0


def test_canonical_arrays_take_the_hiredis_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # The exact parser is the slow reference; well-formed pipelines must not need it.
    def refuse(*args: object) -> None:
        raise AssertionError("exact parser used for a canonical array")

    monkeypatch.setattr(RequestParser, "_exact_array", refuse)
    wire = b"".join(encode_command([b"SET", b"key:%d" % i, b"v" * i]) for i in range(300))
    parser = RequestParser()
    got: list[list[bytes]] = []
    for i in range(0, len(wire), 1000):
        parser.feed(wire[i : i + 1000])
        got += parser.commands()
    assert got == [[b"SET", b"key:%d" % i, b"v" * i] for i in range(300)]


def test_top_level_bulk_after_array_is_inline_like_redis() -> None:
    # Redis only looks at the first byte: '$3' is an inline command.
    wire = encode_command([b"PING"]) + b"$3\r\nabc\r\n"
    assert assert_chunk_independent(wire) == ([[b"PING"], [b"$3"], [b"abc"]], None)


# --------------------------------------------------------------------------- #
# inline commands
# --------------------------------------------------------------------------- #


def test_seed_plain_text_client() -> None:
    wire = b"write key 0\r\nread key\n"
    assert assert_chunk_independent(wire) == ([[b"write", b"key", b"0"], [b"read", b"key"]], None)


def test_empty_inline_lines_are_skipped() -> None:
    wire = b"\r\n\n   \r\n\t\nPING\r\n\r\n"
    assert assert_chunk_independent(wire) == ([[b"PING"]], None)


def test_mixed_inline_and_arrays() -> None:
    wire = (
        b"PING\r\n"
        + encode_command([b"SET", b"k", b"v"])
        + b"get k\n"
        + encode_command([b"DEL", b"k"])
        + encode_command([b"GET", b"k"])
        + b'echo "a b"\r\n'
    )
    expected = [[b"PING"], [b"SET", b"k", b"v"], [b"get", b"k"], [b"DEL", b"k"], [b"GET", b"k"]]
    assert assert_chunk_independent(wire) == ([*expected, [b"echo", b"a b"]], None)


def test_incomplete_inline_waits() -> None:
    parser = RequestParser()
    parser.feed(b"SET k ")
    assert parser.commands() == []
    parser.feed(b"v\r")
    assert parser.commands() == []
    parser.feed(b"\nGET")
    assert parser.commands() == [[b"SET", b"k", b"v"]]
    parser.feed(b" k\n")
    assert parser.commands() == [[b"GET", b"k"]]


@pytest.mark.parametrize(
    ("line", "args"),
    [
        (b"set a b", [b"set", b"a", b"b"]),
        (b"  set   a\tb  ", [b"set", b"a", b"b"]),
        (b'set "a b" c', [b"set", b"a b", b"c"]),
        (b"set 'a b' c", [b"set", b"a b", b"c"]),
        (b'"\\n\\r\\t\\b\\a\\\\\\""', [b'\n\r\t\b\a\\"']),
        (b'"\\x41\\x7a\\xff"', [b"Az\xff"]),
        (b'"\\x4"', [b"x4"]),  # not two hex digits: \x is just x
        (b'"\\q"', [b"q"]),
        (b"'it\\'s'", [b"it's"]),
        (b"'a\\nb'", [b"a\\nb"]),  # single quotes keep backslashes
        (b'""', [b""]),
        (b"''", [b""]),
        (b'foo"bar"', [b"foobar"]),  # a quote may start inside a token
        (b"a\vb", [b"a\vb"]),  # \v ends no token ...
        (b"\va", [b"a"]),  # ... but is skipped between tokens
        (b"a\0b c", [b"a"]),  # NUL ends the C string
        (b"a\rb", [b"a", b"b"]),
        (b"", []),
    ],
)
def test_split_inline(line: bytes, args: list[bytes]) -> None:
    assert split_inline(line) == args


@pytest.mark.parametrize(
    "line",
    [b'"abc', b"'abc", b'"a"b', b"'a'b", b'"abc\\"', b'set "a b', b'"\\'],
)
def test_split_inline_unbalanced(line: bytes) -> None:
    with pytest.raises(ProtocolError, match="Protocol error: unbalanced quotes in request"):
        split_inline(line)


def test_unbalanced_quotes_in_stream() -> None:
    assert assert_chunk_independent(b'PING\r\nset "k v\r\n') == (
        [[b"PING"]],
        "Protocol error: unbalanced quotes in request",
    )


# --------------------------------------------------------------------------- #
# limits
# --------------------------------------------------------------------------- #


def test_huge_declared_bulk_raises_at_once() -> None:
    parser = RequestParser()
    parser.feed(b"*1\r\n$100000000000\r\n")
    with pytest.raises(ProtocolError, match="^Protocol error: invalid bulk length$"):
        parser.commands()


def test_huge_declared_bulk_after_complete_commands() -> None:
    parser = RequestParser()
    parser.feed(encode_command([b"PING"]) * 3 + b"*2\r\n$3\r\nSET\r\n$600000000\r\n")
    with pytest.raises(ProtocolError, match="invalid bulk length") as info:
        parser.commands()
    assert info.value.commands == [[b"PING"]] * 3


def test_huge_multibulk_count_raises_at_once() -> None:
    for count in (b"1048577", b"4000000000", b"100000000"):
        parser = RequestParser()
        parser.feed(b"*" + count + b"\r\n")
        with pytest.raises(ProtocolError, match="^Protocol error: invalid multibulk length$"):
            parser.commands()


def test_limits_apply_to_complete_commands_too() -> None:
    limits = {"max_bulk_len": 8, "max_args": 3}
    assert parse_whole(encode_command([b"x" * 8]), **limits) == ([[b"x" * 8]], None)
    assert assert_chunk_independent(encode_command([b"x" * 9]), **limits) == (
        [],
        "Protocol error: invalid bulk length",
    )
    assert assert_chunk_independent(encode_command([b"a", b"b", b"c", b"d"]), **limits) == (
        [],
        "Protocol error: invalid multibulk length",
    )


def test_inline_line_too_long() -> None:
    limits = {"max_inline_len": 16}
    assert parse_whole(b"x" * 16 + b"\r\n", **limits) == ([[b"x" * 16]], None)
    assert assert_chunk_independent(b"x" * 17, **limits) == (
        [],
        "Protocol error: too big inline request",
    )
    assert assert_chunk_independent(b"x" * 17 + b"\r\n", **limits) == (
        [],
        "Protocol error: too big inline request",
    )


def test_inline_too_big_with_default_limit() -> None:
    parser = RequestParser()
    parser.feed(b"a" * (64 * 1024 + 1))
    with pytest.raises(ProtocolError, match="^Protocol error: too big inline request$"):
        parser.commands()


def test_header_line_too_long() -> None:
    limits = {"max_inline_len": 16}
    assert assert_chunk_independent(b"*" + b"1" * 20, **limits) == (
        [],
        "Protocol error: too big mbulk count string",
    )
    assert assert_chunk_independent(b"*1\r\n$" + b"1" * 20, **limits) == (
        [],
        "Protocol error: too big bulk count string",
    )


def test_complete_header_longer_than_the_line_limit_is_refused_on_every_path() -> None:
    """Found by Hypothesis in CI: a whole ``*0\r\n`` passed the hiredis fast
    path while the same bytes fed one at a time hit the line limit. Both
    paths now refuse a header line longer than ``max_inline_len``."""
    limits = {"max_bulk_len": 1, "max_args": 1, "max_inline_len": 1}
    assert assert_chunk_independent(b"*0\r\n", **limits) == (
        [],
        "Protocol error: too big mbulk count string",
    )
    assert assert_chunk_independent(b"*1\r\n$1\r\na\r\n", **{**limits, "max_inline_len": 2}) == (
        [[b"a"]],
        None,
    )
    assert assert_chunk_independent(
        b"*1\r\n$10\r\n0123456789\r\n", max_bulk_len=10, max_inline_len=2
    ) == ([], "Protocol error: too big bulk count string")


def test_pending_bytes_stay_bounded_on_slow_feed() -> None:
    parser = RequestParser(max_inline_len=1024)
    with pytest.raises(ProtocolError, match="too big inline request"):
        for _ in range(2000):
            parser.feed(b"a")
            parser.commands()
    assert parser.pending == 0


# --------------------------------------------------------------------------- #
# encoder
# --------------------------------------------------------------------------- #


def test_hot_path_helpers() -> None:
    assert OK_REPLY == b"+OK\r\n"
    assert NULL_BULK == b"$-1\r\n"
    assert PONG_REPLY == b"+PONG\r\n"
    assert QUEUED_REPLY == b"+QUEUED\r\n"
    assert encode_bulk(b"abc") == b"$3\r\nabc\r\n"
    assert encode_bulk(b"") == b"$0\r\n\r\n"
    assert encode_int(-42) == b":-42\r\n"


@pytest.mark.parametrize(
    ("value", "resp2", "resp3"),
    [
        (b"hi", b"$2\r\nhi\r\n", b"$2\r\nhi\r\n"),
        ("OK", b"+OK\r\n", b"+OK\r\n"),
        ("caf\u00e9", b"+caf\xc3\xa9\r\n", b"+caf\xc3\xa9\r\n"),
        ("a\r\nb", b"$4\r\na\r\nb\r\n", b"$4\r\na\r\nb\r\n"),
        (7, b":7\r\n", b":7\r\n"),
        (2**63 - 1, b":9223372036854775807\r\n", b":9223372036854775807\r\n"),
        (2**64, b"$20\r\n18446744073709551616\r\n", b"(18446744073709551616\r\n"),
        (None, b"$-1\r\n", b"_\r\n"),
        (True, b":1\r\n", b"#t\r\n"),
        (False, b":0\r\n", b"#f\r\n"),
        (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
        (0.1, b"$19\r\n0.10000000000000001\r\n", b",0.10000000000000001\r\n"),
        (3.0, b"$1\r\n3\r\n", b",3\r\n"),
        (math.inf, b"$3\r\ninf\r\n", b",inf\r\n"),
        (-math.inf, b"$4\r\n-inf\r\n", b",-inf\r\n"),
        (math.nan, b"$3\r\nnan\r\n", b",nan\r\n"),
        (RespError("WRONGTYPE bad"), b"-WRONGTYPE bad\r\n", b"-WRONGTYPE bad\r\n"),
        (NULL_ARRAY, b"*-1\r\n", b"_\r\n"),
        (Raw(b"+ALREADY\r\n"), b"+ALREADY\r\n", b"+ALREADY\r\n"),
        ([], b"*0\r\n", b"*0\r\n"),
        ([b"a", None, 1], b"*3\r\n$1\r\na\r\n$-1\r\n:1\r\n", b"*3\r\n$1\r\na\r\n_\r\n:1\r\n"),
        ((b"a", [b"b", []]), b"*2\r\n$1\r\na\r\n*2\r\n$1\r\nb\r\n*0\r\n", None),
        ({b"k": 1}, b"*2\r\n$1\r\nk\r\n:1\r\n", b"%1\r\n$1\r\nk\r\n:1\r\n"),
        ({b"m"}, b"*1\r\n$1\r\nm\r\n", b"~1\r\n$1\r\nm\r\n"),
        ([RespError("ERR x"), "QUEUED"], b"*2\r\n-ERR x\r\n+QUEUED\r\n", None),
    ],
)
def test_encode_reply(value: object, resp2: bytes, resp3: bytes | None) -> None:
    assert encode_reply(value) == resp2
    assert encode_reply(value, resp3=True) == (resp2 if resp3 is None else resp3)


def test_encode_reply_rejects_unknown_types() -> None:
    with pytest.raises(TypeError):
        encode_reply(object())
    with pytest.raises(TypeError):
        encode_reply([b"ok", object()])


def test_encode_command() -> None:
    assert encode_command([b"SET", "k\u00e9", 5]) == (
        b"*3\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$1\r\n5\r\n"
    )
    assert encode_command([]) == b"*0\r\n"
    with pytest.raises(TypeError):
        encode_command([True])
    assert encode_command([b"x", 1.5]) == b"*2\r\n$1\r\nx\r\n$3\r\n1.5\r\n"


# --------------------------------------------------------------------------- #
# reply parser
# --------------------------------------------------------------------------- #


def test_reply_parser_types() -> None:
    wire = (
        b"+OK\r\n$3\r\nabc\r\n:-5\r\n-ERR nope\r\n$-1\r\n*-1\r\n"
        b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n_\r\n#t\r\n,2.5\r\n%1\r\n+k\r\n:1\r\n"
        b"~1\r\n$1\r\nx\r\n(123456789012345678901234567890\r\n=7\r\ntxt:abc\r\n"
        b"!5\r\nERR x\r\n>2\r\n+a\r\n+b\r\n|1\r\n+ttl\r\n:3\r\n+after-attr\r\n"
    )
    expected = [
        "OK",
        b"abc",
        -5,
        RespError("ERR nope"),
        None,
        None,
        [b"a", [1]],
        None,
        True,
        2.5,
        {"k": 1},
        {b"x"},
        123456789012345678901234567890,
        b"abc",
        RespError("ERR x"),
        ["a", "b"],
        "after-attr",
    ]
    parser = ReplyParser()
    parser.feed(wire)
    assert parser.replies() == expected
    parser = ReplyParser()
    got = []
    for i in range(len(wire)):
        parser.feed(wire[i : i + 1])
        got += parser.replies()
    assert got == expected


def test_reply_parser_rejects_garbage() -> None:
    parser = ReplyParser()
    parser.feed(b"?what\r\n")
    with pytest.raises(ProtocolError):
        parser.replies()


# --------------------------------------------------------------------------- #
# purity
# --------------------------------------------------------------------------- #


def test_resp_module_imports_no_io() -> None:
    tree = ast.parse(Path(resp.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "time", "random", "os"}
