"""Streams (``kv/types/streams.py``) against redis-server 7.0.

Replies that hold a time (idle times, delivery and seen times, ids chosen
by ``*``) cannot match Redis's to the millisecond: :func:`run_shaped`
compares them with those fields masked (and checks that replikv's are
plausible), everything else is compared exactly by ``diff.run``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import hiredis
import pytest

from replikv.core.resp import encode_reply
from tests.differential.oracle import Differential

ID = re.compile(rb"^\d+-\d+$")
TIME = "<time>"


def _hiredis(value: Any) -> Any:
    reader = hiredis.Reader()
    reader.feed(encode_reply(value))
    return reader.gets()


def _mask_after(names: set[bytes]) -> Callable[[Any], Any]:
    """Mask the value that follows any of ``names`` in a flat field/value list, anywhere."""

    def mask(reply: Any) -> Any:
        if not isinstance(reply, list):
            return reply
        out = [mask(x) for x in reply]
        for i in range(len(out) - 1):
            if isinstance(reply[i], bytes) and reply[i] in names:
                assert isinstance(reply[i + 1], int) and reply[i + 1] >= 0, reply
                out[i + 1] = TIME
        return out

    return mask


def _mask_column(col: int) -> Callable[[Any], Any]:
    """Mask column ``col`` of every row of an array of arrays (XPENDING's idle)."""

    def mask(reply: Any) -> Any:
        out = []
        for row in reply:
            assert isinstance(row[col], int) and row[col] >= 0, row
            out.append([*row[:col], TIME, *row[col + 1 :]])
        return out

    return mask


def run_shaped(diff: Differential, mask: Callable[[Any], Any], *argv: Any) -> Any:
    """Run on Redis and replikv; compare the replies with ``mask`` applied to both."""
    args = [a if isinstance(a, bytes) else str(a).encode() for a in argv]
    expected = diff.redis.call(*args)
    got = _hiredis(diff.run_replikv(*args))
    assert not isinstance(expected, hiredis.ReplyError), expected
    assert mask(got) == mask(expected), f"{args!r}: replikv {got!r}, redis {expected!r}"
    return got


def _fill(diff: Differential, key: str, n: int, start: int = 1) -> None:
    for i in range(start, start + n):
        diff.run("XADD", key, f"{i}-0", "f", str(i))


# --- XADD / XLEN / XRANGE -----------------------------------------------------------


def test_xadd_explicit_and_partial_ids(diff: Differential) -> None:
    diff.run("XADD", "s", "0-0", "f", "v")
    diff.run("XADD", "s", "0-*", "f", "v")
    diff.run("XADD", "s", "0-*", "f", "v")
    diff.run("XADD", "s", "5-*", "a", "1", "b", "2")
    diff.run("XADD", "s", "3-*", "f", "v")
    diff.run("XADD", "s", "5", "f", "v")
    diff.run("XADD", "s", "5-0", "f", "v")
    diff.run("XADD", "s", "6", "f", "v")
    diff.run("XADD", "s", "abc", "f", "v")
    diff.run("XADD", "s", "1-2-3", "f", "v")
    diff.run("XADD", "s", "-1", "f", "v")
    diff.run("XADD", "s", "7-1", "f")
    diff.run("XADD", "s", "7-1", "f", "v", "g")
    diff.run("XADD", "s", "NOMKSTREAM", "x", "f")
    diff.run("XADD", "s", "18446744073709551616-0", "f", "v")
    diff.run("XADD", "s", "18446744073709551615-18446744073709551615", "f", "v")
    diff.run("XADD", "s", "*", "f", "v")
    diff.run("XADD", "s", "18446744073709551615-*", "f", "v")
    diff.run("XADD", "s2", "18446744073709551615-*", "f", "v")
    diff.run("XADD", "missing", "NOMKSTREAM", "*", "f", "v")
    diff.run("EXISTS", "missing")
    diff.run("XADD", "missing", "NOMKSTREAM", "1-1", "f", "v")
    diff.run("XLEN", "s")
    diff.run("XLEN", "nothing")
    diff.run("SET", "str", "x")
    diff.run("XADD", "str", "1-1", "f", "v")
    diff.run("XADD", "str", "*", "f", "v")
    diff.run("XLEN", "str")
    diff.run("XADD", "s")
    diff.run("XLEN", "s", "x")
    diff.run("TYPE", "s")


def test_xadd_auto_id(diff: Differential) -> None:
    before = int(time.time() * 1000)
    got = diff.run_replikv("XADD", "s", "*", "f", "v")
    ms, seq = map(int, got.split(b"-"))
    assert before <= ms <= int(time.time() * 1000) + 1 and seq == 0
    # a last id in the future: * increments it (Redis's max(now, last))
    diff.run("XADD", "f", "99999999999999-5", "f", "v")
    assert diff.run_replikv("XADD", "f", "*", "f", "v") == b"99999999999999-6"
    assert diff.redis.call("XADD", "f", "*", "f", "v") == b"99999999999999-6"
    diff.run("XADD", "f", "MAXLEN", "1", "*", "g", "w")
    diff.run("XRANGE", "f", "-", "+")
    diff.run("XADD", "m", "18446744073709551615-18446744073709551614", "f", "v")
    diff.run("XADD", "m", "*", "f", "v")
    diff.run("XADD", "m", "*", "f", "v")


def test_xadd_trimming(diff: Differential) -> None:
    _fill(diff, "s", 5)
    diff.run("XADD", "s", "MAXLEN", "3", "6-0", "f", "v")
    diff.run("XRANGE", "s", "-", "+")
    diff.run("XADD", "s", "MAXLEN", "=", "2", "7-0", "f", "v")
    diff.run("XADD", "s", "MINID", "7", "8-0", "f", "v")
    diff.run("XRANGE", "s", "-", "+")
    diff.run("XADD", "s", "maxlen", "~", "1", "9-0", "f", "v")
    diff.run("XLEN", "s")
    diff.run("XADD", "s", "MAXLEN", "~", "1", "LIMIT", "10", "10-0", "f", "v")
    diff.run("XADD", "s", "MAXLEN", "-1", "11-0", "f", "v")
    diff.run("XADD", "s", "MAXLEN", "x", "11-0", "f", "v")
    diff.run("XADD", "s", "LIMIT", "5", "MAXLEN", "1", "11-0", "f", "v")
    diff.run("XADD", "s", "LIMIT", "5", "11-0", "f", "v")
    diff.run("XADD", "s", "LIMIT", "0", "11-0", "f", "v")
    diff.run("XADD", "s", "MAXLEN", "~", "1", "LIMIT", "-1", "12-0", "f", "v")
    diff.run("XADD", "s", "MAXLEN", "1", "MINID", "4", "12-0", "f", "v")
    diff.run("XADD", "s", "MINID", "x", "12-0", "f", "v")
    diff.run("XADD", "s", "MINID", "-", "12-0", "f", "v")
    diff.run("XADD", "z", "MAXLEN", "0", "1-1", "f", "v")
    diff.run("EXISTS", "z")
    diff.run("XLEN", "z")
    diff.run("XINFO", "STREAM", "z")


def test_approximate_trimming_follows_redis_nodes(diff: Differential) -> None:
    _fill(diff, "s", 250)
    diff.run("XTRIM", "s", "MAXLEN", "~", "200")
    diff.run("XTRIM", "s", "MAXLEN", "~", "120")
    diff.run("XLEN", "s")
    diff.run("XTRIM", "s", "MINID", "~", "230")
    diff.run("XTRIM", "s", "MAXLEN", "~", "0", "LIMIT", "30")
    diff.run("XTRIM", "s", "MINID", "~", "240", "LIMIT", "0")
    diff.run("XLEN", "s")
    _fill(diff, "t", 300)
    diff.run("XDEL", "t", *[f"{i}-0" for i in range(101, 201)])
    diff.run("XTRIM", "t", "MAXLEN", "~", "150")
    diff.run("XTRIM", "t", "MAXLEN", "~", "99")
    diff.run("XTRIM", "t", "MAXLEN", "150")
    diff.run("XRANGE", "t", "-", "+", "COUNT", "3")
    diff.run("XTRIM", "t", "MAXLEN", "=", "10")
    diff.run("XRANGE", "t", "-", "+")
    _fill(diff, "t", 120, start=1000)
    diff.run("XTRIM", "t", "MINID", "~", "1105")
    diff.run("XTRIM", "t", "MINID", "1105")
    diff.run("XRANGE", "t", "-", "+", "COUNT", "2")


@pytest.mark.parametrize("shape", ["same-fields", "mixed-fields", "numbers", "big"])
def test_approximate_trimming_with_nodes_cut_by_bytes(diff: Differential, shape: str) -> None:
    """Large entries fill Redis's 4096-byte nodes before 100 entries: the
    model must cut them where Redis does for ``~`` to trim the same entries."""
    for i in range(1, 301):
        if shape == "same-fields":
            fields = ["payload", "x" * 50, "n", str(i)]
        elif shape == "mixed-fields":
            fields = [f"f{i % 3}", "y" * (i % 70), "g", "-" * 5]
        elif shape == "numbers":
            fields = ["a", str(i * 1000003), "b", str(-i * 70000), "c", "9" * 19]
        else:
            fields = ["blob", "z" * (100 + 37 * (i % 90))]
        diff.run("XADD", "s", f"{i * 1000}-{i % 7}", *fields)
    for maxlen in (290, 250, 200, 120, 60):
        diff.run("XTRIM", "s", "MAXLEN", "~", str(maxlen))
    diff.run("XLEN", "s")
    diff.run("XTRIM", "s", "MINID", "~", "280000")
    diff.run("XRANGE", "s", "-", "+", "COUNT", "1")
    diff.run("XADD", "s", "MAXLEN", "~", "5", "400000-0", "f", "v")
    diff.run("XLEN", "s")


def test_exact_minid_trim_can_leave_an_empty_node(diff: Differential) -> None:
    """The first node's last entry is deleted: MINID trims all its live entries
    one by one and Redis keeps the emptied node (radix-tree-keys shows it)."""
    _fill(diff, "s", 150)
    diff.run("XDEL", "s", "100-0")
    diff.run("XTRIM", "s", "MINID", "100")
    diff.run("XINFO", "STREAM", "s")
    diff.run("XTRIM", "s", "MAXLEN", "~", "40")
    diff.run("XINFO", "STREAM", "s")
    diff.run("XTRIM", "s", "MAXLEN", "~", "10")
    diff.run("XINFO", "STREAM", "s")


def test_xtrim_errors(diff: Differential) -> None:
    _fill(diff, "s", 3)
    diff.run("XTRIM", "s", "MAXLEN")
    diff.run("XTRIM", "s", "FOO", "1")
    diff.run("XTRIM", "s", "LIMIT", "1", "MAXLEN", "1")
    diff.run("XTRIM", "s", "MAXLEN", "1", "NOMKSTREAM")
    diff.run("XTRIM", "s", "LIMIT", "0", "x")
    diff.run("XTRIM", "s", "MAXLEN", "~", "1", "LIMIT", "x")
    diff.run("XTRIM", "nokey", "MAXLEN", "1")
    diff.run("SET", "str", "x")
    diff.run("XTRIM", "str", "MAXLEN", "1")
    diff.run("XTRIM", "s", "MINID", "(2")
    diff.run("XTRIM", "s", "MINID", "2")
    diff.run("XTRIM", "s", "MAXLEN", "0")
    diff.run("EXISTS", "s")
    diff.run("XINFO", "STREAM", "s")


def test_xrange_and_xrevrange(diff: Differential) -> None:
    _fill(diff, "s", 6)
    diff.run("XADD", "s", "6-1", "x", "y")
    diff.run("XRANGE", "s", "-", "+")
    diff.run("XRANGE", "s", "2", "4")
    diff.run("XRANGE", "s", "(2", "(4-0")
    diff.run("XRANGE", "s", "(2-0", "+", "COUNT", "2")
    diff.run("XRANGE", "s", "-", "+", "COUNT", "0")
    diff.run("XRANGE", "s", "-", "+", "COUNT", "-3")
    diff.run("XRANGE", "s", "-", "+", "count", "1", "COUNT", "2")
    diff.run("XRANGE", "s", "6", "6")
    diff.run("XRANGE", "s", "5", "3")
    diff.run("XRANGE", "s", "(-", "+")
    diff.run("XRANGE", "s", "-", "(+")
    diff.run("XRANGE", "s", "(18446744073709551615-18446744073709551615", "+")
    diff.run("XRANGE", "s", "-", "(0-0")
    diff.run("XRANGE", "s", "(", "+")
    diff.run("XRANGE", "s", "x", "+")
    diff.run("XRANGE", "s", "-", "+", "COUNT")
    diff.run("XRANGE", "s", "-", "+", "COUNT", "x")
    diff.run("XRANGE", "s", "-", "+", "LIMIT", "1")
    diff.run("XRANGE", "s", "-")
    diff.run("XRANGE", "nokey", "-", "+")
    diff.run("XREVRANGE", "s", "+", "-")
    diff.run("XREVRANGE", "s", "4", "2")
    diff.run("XREVRANGE", "s", "(6-1", "(1", "COUNT", "2")
    diff.run("XREVRANGE", "s", "2", "4")
    diff.run("XREVRANGE", "s", "+", "-", "COUNT", "1")
    diff.run("XREVRANGE", "nokey", "+", "-")
    diff.run("XREVRANGE", "s", "+")
    diff.run("XREVRANGE", "s", "+", "-", "COUNT")
    diff.run("XREVRANGE", "s", "x", "-")
    diff.run("SET", "str", "x")
    diff.run("XRANGE", "str", "-", "+")
    diff.run("XREVRANGE", "str", "+", "-")
    diff.run("XRANGE", "s", "   1", "+0002")


def test_xdel(diff: Differential) -> None:
    _fill(diff, "s", 4)
    diff.run("XDEL", "s", "2-0", "3", "9-9")
    diff.run("XDEL", "s", "2-0")
    diff.run("XDEL", "s", "x")
    diff.run("XDEL", "s", "1-0", "x")
    diff.run("XLEN", "s")
    diff.run("XDEL", "nokey", "1-0")
    diff.run("XDEL", "s")
    diff.run("XINFO", "STREAM", "s")
    diff.run("XDEL", "s", "1-0", "4-0")
    diff.run("XINFO", "STREAM", "s")
    diff.run("EXISTS", "s")
    diff.run("SET", "str", "x")
    diff.run("XDEL", "str", "1-0")


# --- XREAD ------------------------------------------------------------------------


def test_xread(diff: Differential) -> None:
    _fill(diff, "a", 3)
    _fill(diff, "b", 2, start=10)
    diff.run("XREAD", "STREAMS", "a", "b", "0", "0")
    diff.run("XREAD", "COUNT", "2", "STREAMS", "a", "b", "1", "10-0")
    diff.run("XREAD", "STREAMS", "a", "b", "$", "$")
    diff.run("XREAD", "STREAMS", "a", "nokey", "2", "$")
    diff.run("XREAD", "COUNT", "0", "STREAMS", "a", "0")
    diff.run("XREAD", "COUNT", "-1", "STREAMS", "a", "0")
    diff.run("XREAD", "BLOCK", "0", "STREAMS", "a", "0")
    diff.run("XREAD", "BLOCK", "-1", "STREAMS", "a", "0")
    diff.run("XREAD", "BLOCK", "x", "STREAMS", "a", "0")
    diff.run("XREAD", "COUNT", "x", "STREAMS", "a", "0")
    diff.run("XREAD", "STREAMS", "a", "b", "0")
    diff.run("XREAD", "STREAMS", "a", ">")
    diff.run("XREAD", "STREAMS", "a", "x")
    diff.run("XREAD", "STREAMS", "a", "+")
    diff.run("XREAD", "STREAMS", "a", "-")
    diff.run("XREAD", "FOO", "STREAMS", "a", "0")
    diff.run("XREAD", "COUNT", "1", "a", "0")
    diff.run("XREAD", "GROUP", "g", "c", "STREAMS", "a", "0")
    diff.run("XREAD", "NOACK", "STREAMS", "a", "0")
    diff.run("XREAD", "STREAMS")
    diff.run("SET", "str", "x")
    diff.run("XREAD", "STREAMS", "str", "0")
    diff.run("XREAD", "STREAMS", "a", "str", "0", "0")


def test_entries_after_serves_a_woken_reader() -> None:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine
    from replikv.kv.types.streams import Stream

    sm = StateMachine()
    for i in range(1, 5):
        sm.execute([b"XADD", b"s", b"%d-0" % i, b"f", b"%d" % i], ApplyContext(1))
    stream = sm.data[b"s"]
    assert isinstance(stream, Stream)
    assert [sid for sid, _ in stream.entries_after((2, 0))] == [(3, 0), (4, 0)]
    assert stream.entries_after((2, 0), 1) == [((3, 0), [b"f", b"3"])]
    assert stream.entries_after((4, 0)) == []


# --- consumer groups ----------------------------------------------------------------


def test_xgroup_create_destroy_setid(diff: Differential) -> None:
    diff.run("XGROUP", "CREATE", "s", "g", "0")
    diff.run("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    diff.run("EXISTS", "s")
    diff.run("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    _fill(diff, "s", 3)
    diff.run("XGROUP", "CREATE", "s", "g2", "$")
    diff.run("XGROUP", "CREATE", "s", "g3", "1-0", "ENTRIESREAD", "1")
    diff.run("XGROUP", "CREATE", "s", "g4", "0", "ENTRIESREAD", "-2")
    diff.run("XGROUP", "CREATE", "s", "g4", "0", "ENTRIESREAD", "x")
    diff.run("XGROUP", "CREATE", "s", "g4", "0", "ENTRIESREAD")
    diff.run("XGROUP", "CREATE", "s", "g4", "0", "FOO")
    diff.run("XGROUP", "CREATE", "s", "g4", "x")
    diff.run("XGROUP", "CREATE", "s", "g4", "+")
    diff.run("XGROUP", "CREATE", "s", "g5", "-")
    diff.run("XINFO", "GROUPS", "s")
    diff.run("XGROUP", "SETID", "s", "g", "2-0")
    diff.run("XGROUP", "SETID", "s", "g", "$", "ENTRIESREAD", "3")
    diff.run("XGROUP", "SETID", "s", "g2", "0", "MKSTREAM")
    diff.run("XGROUP", "SETID", "s", "nog", "0")
    diff.run("XGROUP", "SETID", "nokey", "g", "0")
    diff.run("XGROUP", "SETID", "s", "g", "x")
    diff.run("XINFO", "GROUPS", "s")
    diff.run("XGROUP", "DESTROY", "s", "g2")
    diff.run("XGROUP", "DESTROY", "s", "g2")
    diff.run("XGROUP", "DESTROY", "nokey", "g2")
    diff.run("XGROUP", "DESTROY", "s", "g2", "x")
    diff.run("XGROUP", "CREATE", "s")
    diff.run("XGROUP", "FOO", "s", "g")
    diff.run("XGROUP")
    diff.run("XGROUP", "HELP")
    diff.run("XGROUP", "help", "x")
    diff.run("SET", "str", "x")
    diff.run("XGROUP", "CREATE", "str", "g", "0")
    diff.run("XGROUP", "CREATE", "str", "g", "0", "MKSTREAM")
    diff.run("XGROUP", "DESTROY", "str", "g")
    diff.run("XINFO", "GROUPS", "s")


def test_xgroup_consumers(diff: Differential) -> None:
    _fill(diff, "s", 3)
    diff.run("XGROUP", "CREATE", "s", "g", "0")
    diff.run("XGROUP", "CREATECONSUMER", "s", "g", "alice")
    diff.run("XGROUP", "CREATECONSUMER", "s", "g", "alice")
    diff.run("XGROUP", "CREATECONSUMER", "s", "nog", "alice")
    diff.run("XGROUP", "CREATECONSUMER", "nokey", "g", "alice")
    diff.run("XGROUP", "CREATECONSUMER", "s", "g")
    diff.run("XREADGROUP", "GROUP", "g", "bob", "COUNT", "2", "STREAMS", "s", ">")
    run_shaped(diff, _mask_after({b"idle"}), "XINFO", "CONSUMERS", "s", "g")
    diff.run("XGROUP", "DELCONSUMER", "s", "g", "bob")
    diff.run("XGROUP", "DELCONSUMER", "s", "g", "bob")
    diff.run("XGROUP", "DELCONSUMER", "s", "nog", "bob")
    diff.run("XPENDING", "s", "g")
    run_shaped(diff, _mask_after({b"idle"}), "XINFO", "CONSUMERS", "s", "g")
    diff.run("XINFO", "GROUPS", "s")


def test_xreadgroup(diff: Differential) -> None:
    _fill(diff, "s", 4)
    diff.run("XGROUP", "CREATE", "s", "g", "0")
    diff.run("XREADGROUP", "GROUP", "g", "c1", "COUNT", "1", "STREAMS", "s", ">")
    diff.run("XREADGROUP", "GROUP", "g", "c2", "COUNT", "2", "STREAMS", "s", ">")
    diff.run("XREADGROUP", "GROUP", "g", "c1", "NOACK", "STREAMS", "s", ">")
    diff.run("XREADGROUP", "GROUP", "g", "c1", "STREAMS", "s", ">")
    diff.run("XREADGROUP", "GROUP", "g", "c2", "STREAMS", "s", "0")
    diff.run("XREADGROUP", "GROUP", "g", "c2", "COUNT", "1", "STREAMS", "s", "2")
    diff.run("XREADGROUP", "GROUP", "g", "c3", "STREAMS", "s", "0")
    diff.run("XPENDING", "s", "g")
    diff.run("XINFO", "GROUPS", "s")
    diff.run("XDEL", "s", "2-0")
    diff.run("XREADGROUP", "GROUP", "g", "c2", "STREAMS", "s", "0-0")
    diff.run("XADD", "s", "5-0", "f", "5")
    diff.run("XDEL", "s", "5-0")
    diff.run("XREADGROUP", "GROUP", "g", "c2", "STREAMS", "s", ">")
    diff.run("XINFO", "GROUPS", "s")
    # SETID back: entries delivered again move to the new reader
    diff.run("XGROUP", "SETID", "s", "g", "0")
    diff.run("XREADGROUP", "GROUP", "g", "c3", "COUNT", "2", "STREAMS", "s", ">")
    diff.run("XPENDING", "s", "g")
    diff.run("XINFO", "GROUPS", "s")
    diff.run("XREADGROUP", "GROUP", "g", "c3", "BLOCK", "10", "STREAMS", "s", "0")


def test_xreadgroup_errors(diff: Differential) -> None:
    _fill(diff, "s", 2)
    _fill(diff, "t", 2)
    diff.run("XGROUP", "CREATE", "s", "g", "0")
    diff.run("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "$")
    diff.run("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "x")
    diff.run("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "t", ">", ">")
    diff.run("XREADGROUP", "GROUP", "g", "c", "STREAMS", "nokey", ">")
    diff.run("XREADGROUP", "GROUP", "nog", "c", "STREAMS", "s", ">")
    diff.run("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "t", ">")
    diff.run("XREADGROUP", "COUNT", "1", "STREAMS", "s", ">", "x", "y")
    diff.run("XREADGROUP", "GROUP", "g", "c", "COUNT", "x", "STREAMS", "s", ">")
    diff.run("XREADGROUP", "GROUP", "g", "c", "FOO", "STREAMS", "s", ">")
    diff.run("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s")
    diff.run("XREADGROUP", "GROUP", "g", "STREAMS", "s", ">")
    diff.run("SET", "str", "x")
    diff.run("XREADGROUP", "GROUP", "g", "c", "STREAMS", "str", ">")
    diff.run("XINFO", "GROUPS", "s")


def test_consumers_are_created_when_served_or_claiming(diff: Differential) -> None:
    _fill(diff, "s", 2)
    _fill(diff, "t", 1)
    diff.run("XGROUP", "CREATE", "s", "g", "$")
    diff.run("XGROUP", "CREATE", "t", "g", "0")
    diff.run("XREADGROUP", "GROUP", "g", "idle", "STREAMS", "s", ">")
    diff.run("XREADGROUP", "GROUP", "g", "hist", "STREAMS", "s", "0")
    diff.run("XREADGROUP", "GROUP", "g", "both", "STREAMS", "s", "t", ">", ">")
    diff.run("XGROUP", "SETID", "s", "g", "0")
    diff.run("XREADGROUP", "GROUP", "g", "r", "COUNT", "1", "STREAMS", "s", ">")
    diff.run("XAUTOCLAIM", "s", "g", "auto", "100000", "0")
    diff.run("XCLAIM", "s", "g", "claim", "100000", "1-0")
    diff.run("XDEL", "s", "1-0")
    diff.run("XAUTOCLAIM", "s", "g", "cleaner", "0", "0")
    diff.run("XAUTOCLAIM", "t", "g", "auto", "0", "0")
    names = _mask_after({b"idle"})
    run_shaped(diff, names, "XINFO", "CONSUMERS", "s", "g")
    run_shaped(diff, names, "XINFO", "CONSUMERS", "t", "g")


def test_argument_checks_come_in_redis_order(diff: Differential) -> None:
    """Which error wins, or whether a missing key answers before ids are
    parsed, follows Redis 7.0 command by command (found by a random
    differential run)."""
    _fill(diff, "s", 3)
    diff.run("XGROUP", "CREATE", "s", "g", "0")
    diff.run("XDEL", "nokey", "x")
    diff.run("XACK", "nokey", "g", "x")
    diff.run("XACK", "s", "nog", "x")
    diff.run("XAUTOCLAIM", "nokey", "g", "c", "0", "x")
    diff.run("XAUTOCLAIM", "nokey", "g", "c", "x", "0")
    diff.run("XAUTOCLAIM", "nokey", "g", "c", "0", "0", "COUNT", "0")
    diff.run("XRANGE", "nokey", "-", "+", "COUNT", "0")
    diff.run("XRANGE", "s", "-", "+", "COUNT", "-1")
    diff.run("XGROUP", "SETID", "s", "g", "+")
    diff.run("XGROUP", "SETID", "s", "g", "-", "ENTRIESREAD", "0")
    diff.run("XINFO", "GROUPS", "s")
    diff.run("XGROUP", "SETID", "s", "g", "2-0", "ENTRIESREAD", "2")
    diff.run("XINFO", "GROUPS", "s")
    diff.run("XGROUP", "SETID", "s", "g", "2-0")  # without ENTRIESREAD it is unknown again
    diff.run("XINFO", "GROUPS", "s")
    # Redis reads ">" as the max id, so the max id reads new entries too
    top = "18446744073709551615-18446744073709551615"
    diff.run("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", top)
    diff.run("XREADGROUP", "GROUP", "g", "d", "STREAMS", "s", top)
    diff.run("XINFO", "GROUPS", "s")


def test_xack(diff: Differential) -> None:
    _fill(diff, "s", 3)
    diff.run("XGROUP", "CREATE", "s", "g", "0")
    diff.run("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">")
    diff.run("XACK", "s", "g", "1-0", "2", "9-9")
    diff.run("XACK", "s", "g", "1-0")
    diff.run("XACK", "s", "g", "x")
    diff.run("XACK", "s", "g", "3-0", "x")
    diff.run("XACK", "s", "nog", "3-0")
    diff.run("XACK", "nokey", "g", "3-0")
    diff.run("XACK", "s", "g")
    diff.run("XPENDING", "s", "g")
    diff.run("SET", "str", "x")
    diff.run("XACK", "str", "g", "1-0")


def test_xpending(diff: Differential) -> None:
    _fill(diff, "s", 5)
    diff.run("XGROUP", "CREATE", "s", "g", "0")
    diff.run("XPENDING", "s", "g")
    diff.run("XPENDING", "s", "g", "-", "+", "10")
    diff.run("XREADGROUP", "GROUP", "g", "b", "COUNT", "2", "STREAMS", "s", ">")
    diff.run("XREADGROUP", "GROUP", "g", "a", "COUNT", "2", "STREAMS", "s", ">")
    diff.run("XPENDING", "s", "g")
    idle = _mask_column(2)
    run_shaped(diff, idle, "XPENDING", "s", "g", "-", "+", "10")
    run_shaped(diff, idle, "XPENDING", "s", "g", "(1", "(4", "10")
    run_shaped(diff, idle, "XPENDING", "s", "g", "-", "+", "1")
    run_shaped(diff, idle, "XPENDING", "s", "g", "-", "+", "10", "a")
    run_shaped(diff, idle, "XPENDING", "s", "g", "IDLE", "0", "-", "+", "10", "b")
    diff.run("XPENDING", "s", "g", "IDLE", "100000", "-", "+", "10")
    diff.run("XPENDING", "s", "g", "-", "+", "0")
    diff.run("XPENDING", "s", "g", "-", "+", "-1")
    diff.run("XPENDING", "s", "g", "+", "-", "10")
    diff.run("XPENDING", "s", "g", "-", "+", "10", "nobody")
    diff.run("XPENDING", "s", "g", "-", "+")
    diff.run("XPENDING", "s", "g", "-")
    diff.run("XPENDING", "s", "g", "IDLE", "5", "-", "+")
    diff.run("XPENDING", "s", "g", "IDLE", "x", "-", "+", "10")
    diff.run("XPENDING", "s", "g", "x", "+", "10")
    diff.run("XPENDING", "s", "g", "-", "+", "x")
    run_shaped(diff, idle, "XPENDING", "s", "g", "-", "+", "10", "a", "b")  # extra args ignored
    run_shaped(diff, idle, "XPENDING", "s", "g", "-", "+", "10", "a", "b", "c")
    diff.run("XPENDING", "s", "g", "-", "+", "10", "a", "b", "c", "d")
    diff.run("XPENDING", "s", "g", "IDLE", "0", "-", "+", "10", "a", "b")
    diff.run("XPENDING", "s", "nog")
    diff.run("XPENDING", "nokey", "g")
    diff.run("XPENDING", "s")
    diff.run("SET", "str", "x")
    diff.run("XPENDING", "str", "g")


def test_xclaim(diff: Differential) -> None:
    _fill(diff, "s", 5)
    diff.run("XGROUP", "CREATE", "s", "g", "0")
    diff.run("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">")
    diff.run("XCLAIM", "s", "g", "b", "0", "1-0", "2-0")
    diff.run("XCLAIM", "s", "g", "b", "100000", "3-0")
    diff.run("XCLAIM", "s", "g", "c", "0", "3-0", "JUSTID")
    diff.run("XCLAIM", "s", "g", "c", "0", "4-0", "RETRYCOUNT", "7", "IDLE", "50000")
    run_shaped(diff, _mask_column(2), "XPENDING", "s", "g", "-", "+", "10")
    diff.run("XCLAIM", "s", "g", "c", "40000", "4-0")
    diff.run("XCLAIM", "s", "g", "c", "0", "5-0", "TIME", "1", "JUSTID")
    diff.run("XCLAIM", "s", "g", "c", "100000", "5-0", "JUSTID")
    diff.run("XACK", "s", "g", "5-0")
    diff.run("XCLAIM", "s", "g", "d", "0", "5-0")
    diff.run("XCLAIM", "s", "g", "d", "0", "5-0", "FORCE", "JUSTID")
    diff.run("XCLAIM", "s", "g", "d", "0", "9-0", "FORCE")
    diff.run("XCLAIM", "s", "g", "f", "100000", "5-0", "FORCE", "JUSTID")  # pending: too recent
    diff.run("XACK", "s", "g", "3-0")
    diff.run("XCLAIM", "s", "g", "f", "100000", "3-0", "FORCE", "JUSTID")  # new: no idle test
    diff.run("XACK", "s", "g", "3-0")
    diff.run("XCLAIM", "s", "g", "f", "0", "3-0", "FORCE")
    run_shaped(diff, _mask_column(2), "XPENDING", "s", "g", "-", "+", "10")
    diff.run("XDEL", "s", "4-0")
    diff.run("XCLAIM", "s", "g", "d", "100000", "4-0")  # deleted: leaves the PEL, idle or not
    diff.run("XDEL", "s", "1-0")
    diff.run("XCLAIM", "s", "g", "d", "0", "1-0")
    diff.run("XCLAIM", "s", "g", "e", "0", "2-0", "LASTID", "4-0")
    diff.run("XINFO", "GROUPS", "s")
    diff.run("XCLAIM", "s", "g", "e", "0", "2-0", "LASTID", "9-0", "JUSTID")
    diff.run("XINFO", "GROUPS", "s")
    diff.run("XPENDING", "s", "g")
    run_shaped(diff, _mask_after({b"idle"}), "XINFO", "CONSUMERS", "s", "g")
    diff.run("XCLAIM", "s", "g", "e", "0", "3-0", "FOO")
    diff.run("XCLAIM", "s", "g", "e", "x", "3-0")
    diff.run("XCLAIM", "s", "g", "e", "-5", "9-9")
    diff.run("XCLAIM", "s", "g", "e", "0", "3-0", "IDLE", "x")
    diff.run("XCLAIM", "s", "g", "e", "0", "3-0", "TIME", "x")
    diff.run("XCLAIM", "s", "g", "e", "0", "3-0", "RETRYCOUNT", "x")
    diff.run("XCLAIM", "s", "g", "e", "0", "3-0", "LASTID", "x")
    diff.run("XCLAIM", "s", "g", "e", "0", "3-0", "IDLE")
    diff.run("XCLAIM", "s", "g", "e", "0", "x")
    diff.run("XCLAIM", "s", "nog", "e", "x", "3-0")
    diff.run("XCLAIM", "nokey", "g", "e", "0", "3-0")
    diff.run("XCLAIM", "s", "g", "e", "0")
    diff.run("SET", "str", "x")
    diff.run("XCLAIM", "str", "g", "e", "0", "3-0")
    diff.run("XPENDING", "s", "g")


def test_xautoclaim(diff: Differential) -> None:
    _fill(diff, "s", 6)
    diff.run("XGROUP", "CREATE", "s", "g", "0")
    diff.run("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">")
    diff.run("XDEL", "s", "2-0", "5-0")
    diff.run("XAUTOCLAIM", "s", "g", "b", "0", "0", "COUNT", "2")
    diff.run("XAUTOCLAIM", "s", "g", "b", "0", "3-0", "COUNT", "1", "JUSTID")
    diff.run("XAUTOCLAIM", "s", "g", "b", "100000", "0")
    diff.run("XAUTOCLAIM", "s", "g", "c", "0", "(3-0")
    diff.run("XAUTOCLAIM", "s", "g", "c", "0", "-")
    diff.run("XPENDING", "s", "g")
    run_shaped(diff, _mask_column(2), "XPENDING", "s", "g", "-", "+", "10")
    run_shaped(diff, _mask_after({b"idle"}), "XINFO", "CONSUMERS", "s", "g")
    diff.run("XAUTOCLAIM", "s", "g", "c", "0", "0", "COUNT", "0")
    diff.run("XAUTOCLAIM", "s", "g", "c", "0", "0", "COUNT", "x")
    diff.run("XAUTOCLAIM", "s", "g", "c", "0", "0", "COUNT")
    diff.run("XAUTOCLAIM", "s", "g", "c", "0", "0", "FOO")
    diff.run("XAUTOCLAIM", "s", "g", "c", "x", "0")
    diff.run("XAUTOCLAIM", "s", "g", "c", "0", "x")
    diff.run("XAUTOCLAIM", "s", "g", "c", "0", "(18446744073709551615-18446744073709551615")
    diff.run("XAUTOCLAIM", "s", "nog", "c", "0", "0")
    diff.run("XAUTOCLAIM", "nokey", "g", "c", "0", "0")
    diff.run("XAUTOCLAIM", "s", "g", "c", "0")
    diff.run("SET", "str", "x")
    diff.run("XAUTOCLAIM", "str", "g", "c", "0", "0")


def test_xautoclaim_cursor_over_many(diff: Differential) -> None:
    _fill(diff, "s", 30)
    diff.run("XGROUP", "CREATE", "s", "g", "0")
    diff.run("XREADGROUP", "GROUP", "g", "a", "COUNT", "25", "STREAMS", "s", ">")
    diff.run("XAUTOCLAIM", "s", "g", "b", "0", "0", "COUNT", "10", "JUSTID")
    diff.run("XAUTOCLAIM", "s", "g", "b", "0", "11-0", "COUNT", "10", "JUSTID")
    diff.run("XAUTOCLAIM", "s", "g", "b", "0", "21-0", "COUNT", "10", "JUSTID")
    # min-idle skips still use up attempts (10 per COUNT)
    diff.run("XAUTOCLAIM", "s", "g", "c", "100000", "0", "COUNT", "1")


def test_xsetid(diff: Differential) -> None:
    _fill(diff, "s", 3)
    diff.run("XSETID", "s", "2-0")
    diff.run("XSETID", "s", "10-0")
    diff.run("XADD", "s", "9-0", "f", "v")
    diff.run("XSETID", "s", "10-0", "ENTRIESADDED", "2")
    diff.run("XSETID", "s", "10-0", "ENTRIESADDED", "5", "MAXDELETEDID", "3-0")
    diff.run("XINFO", "STREAM", "s")
    diff.run("XSETID", "s", "10-0", "MAXDELETEDID", "0-0")  # keeps 3-0
    diff.run("XINFO", "STREAM", "s")
    diff.run("XSETID", "s", "10-0", "MAXDELETEDID", "11-0")
    diff.run("XSETID", "s", "10-0", "ENTRIESADDED", "-1")
    diff.run("XSETID", "s", "10-0", "ENTRIESADDED", "x")
    diff.run("XSETID", "s", "10-0", "MAXDELETEDID", "x")
    diff.run("XSETID", "s", "10-0", "ENTRIESADDED")
    diff.run("XSETID", "s", "10-0", "FOO", "1")
    diff.run("XSETID", "s", "x")
    diff.run("XSETID", "s", "-")
    diff.run("XSETID", "nokey", "1-0")
    diff.run("XSETID", "s")
    diff.run("XDEL", "s", "1-0", "2-0", "3-0")
    diff.run("XSETID", "s", "0-1")
    diff.run("XINFO", "STREAM", "s")
    diff.run("SET", "str", "x")
    diff.run("XSETID", "str", "1-0")


# --- XINFO --------------------------------------------------------------------------

def test_xinfo_stream(diff: Differential) -> None:
    _fill(diff, "s", 12)
    diff.run("XDEL", "s", "1-0", "5-0")
    diff.run("XINFO", "STREAM", "s")
    diff.run("XGROUP", "CREATE", "s", "g", "0")
    diff.run("XGROUP", "CREATE", "s", "a", "$")
    diff.run("XREADGROUP", "GROUP", "g", "c", "COUNT", "3", "STREAMS", "s", ">")
    diff.run("XINFO", "STREAM", "s")
    full = _mask_after({b"seen-time"})

    def full_mask(reply: Any) -> Any:
        out = full(reply)
        groups = out[out.index(b"groups") + 1]
        for g in groups:
            pending = g[g.index(b"pending") + 1]
            g[g.index(b"pending") + 1] = [[p[0], p[1], TIME, p[3]] for p in pending]
            for c in g[g.index(b"consumers") + 1]:
                cpending = c[c.index(b"pending") + 1]
                c[c.index(b"pending") + 1] = [[p[0], TIME, p[2]] for p in cpending]
        return out

    run_shaped(diff, full_mask, "XINFO", "STREAM", "s", "FULL")
    run_shaped(diff, full_mask, "XINFO", "STREAM", "s", "FULL", "COUNT", "2")
    run_shaped(diff, full_mask, "XINFO", "STREAM", "s", "full", "count", "0")
    diff.run("XINFO", "STREAM", "s", "FULL", "COUNT", "x")
    diff.run("XINFO", "STREAM", "s", "FULL", "COUNT")
    diff.run("XINFO", "STREAM", "s", "FOO")
    diff.run("XINFO", "STREAM", "nokey")
    diff.run("XINFO", "STREAM")
    diff.run("XINFO", "FOO", "s")
    diff.run("XINFO", "HELP")
    diff.run("XINFO")
    diff.run("SET", "str", "x")
    diff.run("XINFO", "STREAM", "str")
    diff.run("XINFO", "GROUPS", "str")
    diff.run("XINFO", "CONSUMERS", "str", "g")
    diff.run("XINFO", "GROUPS")
    diff.run("XINFO", "CONSUMERS", "s", "g", "x")
    diff.run("XINFO", "HELP", "x")
    diff.run("XGROUP", "CREATE", "e", "g", "$", "MKSTREAM")
    diff.run("XINFO", "STREAM", "e")


def test_radix_tree_nodes_follow_redis(diff: Differential) -> None:
    """XINFO's radix-tree-nodes: the compressed radix tree of the nodes' first
    ids, as nodes come and go (appends, XDEL emptying a node, trimming)."""
    base = 1_700_000_000_000
    ms = base
    for i in range(1400):
        ms += (0, 1, 7, 300, 70000)[i % 5] * (i % 3)
        diff.run("XADD", "s", f"{ms}-{i}", "f", "x" * (i % 40))
        if i % 200 == 199:
            diff.run("XINFO", "STREAM", "s")
    first_ids = [e[0] for e in diff.run("XRANGE", "s", "-", "+")]
    diff.run("XDEL", "s", *[i.decode() for i in first_ids[300:560]])
    diff.run("XINFO", "STREAM", "s")
    diff.run("XTRIM", "s", "MAXLEN", "~", "700")
    diff.run("XINFO", "STREAM", "s")
    diff.run("XTRIM", "s", "MINID", first_ids[1200].decode())
    diff.run("XINFO", "STREAM", "s")
    diff.run("XADD", "s", "18446744073709551615-0", "f", "v")
    diff.run("XINFO", "STREAM", "s")


def test_xinfo_groups_and_lag(diff: Differential) -> None:
    _fill(diff, "s", 5)
    diff.run("XGROUP", "CREATE", "s", "z", "0")
    diff.run("XGROUP", "CREATE", "s", "b", "3-0")
    diff.run("XGROUP", "CREATE", "s", "m", "$")
    diff.run("XGROUP", "CREATE", "s", "x", "0", "ENTRIESREAD", "2")
    diff.run("XINFO", "GROUPS", "s")
    diff.run("XREADGROUP", "GROUP", "z", "c", "COUNT", "2", "STREAMS", "s", ">")
    diff.run("XINFO", "GROUPS", "s")
    diff.run("XDEL", "s", "4-0")
    diff.run("XINFO", "GROUPS", "s")
    diff.run("XREADGROUP", "GROUP", "z", "c", "STREAMS", "s", ">")
    diff.run("XREADGROUP", "GROUP", "b", "c", "STREAMS", "s", ">")
    diff.run("XINFO", "GROUPS", "s")
    diff.run("XDEL", "s", "1-0")
    diff.run("XGROUP", "CREATE", "s", "n", "0")
    diff.run("XINFO", "GROUPS", "s")
    diff.run("XTRIM", "s", "MAXLEN", "0")
    diff.run("XINFO", "GROUPS", "s")
    diff.run("XINFO", "GROUPS", "nokey")
    diff.run("XINFO", "GROUPS", "s", "x")
    diff.run("XINFO", "CONSUMERS", "s", "nog")
    diff.run("XINFO", "CONSUMERS", "nokey", "g")
    diff.run("XINFO", "CONSUMERS", "s")


@pytest.mark.parametrize(
    "argv",
    [
        ["XREAD", "COUNT", "1", "STREAMS", "a", "b", "0", "0"],
        ["XREAD", "STREAMS", "a", "b", "0"],
        ["XREAD", "COUNT", "streams", "STREAMS", "a", "0"],
        ["XREADGROUP", "GROUP", "streams", "c", "NOACK", "STREAMS", "a", "0"],
        ["XADD", "s", "*", "f", "v"],
        ["XGROUP", "CREATE", "s", "g", "$"],
        ["XINFO", "STREAM", "s"],
        ["XCLAIM", "s", "g", "c", "0", "1-1"],
    ],
)
def test_command_getkeys(diff: Differential, argv: list[str]) -> None:
    """XREAD/XREADGROUP's keys move (they follow STREAMS): COMMAND GETKEYS,
    ACL key checks and expiry use what Redis's key specs find."""
    from replikv.kv.commands import command_reply

    args = [a.encode() for a in argv]
    expected = diff.redis.call(b"COMMAND", b"GETKEYS", *args)
    assert _hiredis(command_reply([b"COMMAND", b"GETKEYS", *args])) == expected


def test_xreadgroup_on_an_expired_stream(diff: Differential) -> None:
    _fill(diff, "s", 2)
    diff.run("XGROUP", "CREATE", "s", "g", "0")
    diff.run("PEXPIREAT", "s", "1")
    diff.run("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">")
    diff.run("EXISTS", "s")
    for sm in (diff.leader, diff.follower, diff.raft):
        assert b"s" not in sm.data  # deleted before the read, on every path


@pytest.mark.parametrize("cmd", ["XLEN", "XRANGE", "XINFO"])
def test_expired_stream_is_gone(diff: Differential, cmd: str) -> None:
    _fill(diff, "s", 2)
    diff.run("PEXPIREAT", "s", "1")
    args = {"XLEN": ["XLEN", "s"], "XRANGE": ["XRANGE", "s", "-", "+"],
            "XINFO": ["XINFO", "STREAM", "s"]}[cmd]
    diff.run(*args)
    diff.run("XADD", "s", "1-0", "f", "v")
    diff.run("XLEN", "s")


class _Resp3:
    """A RESP3 (HELLO 3) connection to the oracle's redis-server."""

    def __init__(self, port: int) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = hiredis.Reader()
        assert self.call(b"HELLO", b"3")[b"proto"] == 3

    def call(self, *argv: bytes) -> Any:
        from replikv.core.resp import encode_command

        self.sock.sendall(encode_command(argv))
        while (reply := self.reader.gets()) is False:
            self.reader.feed(self.sock.recv(1 << 16))
        return reply


def _skeleton(reply: Any) -> Any:
    """The reply with every integer replaced by its type (the times in it)."""
    if isinstance(reply, dict):
        return {k: _skeleton(v) for k, v in reply.items()}
    if isinstance(reply, list):
        return [_skeleton(v) for v in reply]
    return "int" if isinstance(reply, int) else reply


def test_xinfo_answers_maps_to_resp3_clients(diff: Differential) -> None:
    _fill(diff, "s", 4)
    diff.run("XGROUP", "CREATE", "s", "g", "0")
    diff.run("XREADGROUP", "GROUP", "g", "c", "COUNT", "2", "STREAMS", "s", ">")
    resp3 = _Resp3(diff.redis.port)
    try:
        for argv in ([b"XINFO", b"STREAM", b"s"], [b"XINFO", b"GROUPS", b"s"],
                     [b"XINFO", b"CONSUMERS", b"s", b"g"], [b"XINFO", b"STREAM", b"s", b"FULL"]):
            got = _hiredis_resp3(diff.leader.read(argv, int(time.time() * 1000)))
            expected = resp3.call(*argv)
            assert _skeleton(got) == _skeleton(expected), argv
            if argv[1] == b"GROUPS":
                assert got == expected
    finally:
        resp3.sock.close()


def test_xread_answers_a_map_to_resp3_clients(diff: Differential) -> None:
    """RESP2: ``[[key, entries], ...]``; RESP3: a map key -> entries."""
    _fill(diff, "a", 3)
    _fill(diff, "b", 2)
    diff.run("XGROUP", "CREATE", "a", "g", "0")
    diff.run("XGROUP", "CREATE", "b", "g", "0")
    resp3 = _Resp3(diff.redis.port)
    try:
        for argv in ([b"XREAD", b"STREAMS", b"a", b"b", b"0", b"1"],
                     [b"XREAD", b"COUNT", b"1", b"STREAMS", b"b", b"a", b"0", b"0"],
                     [b"XREAD", b"STREAMS", b"a", b"$"]):
            got = _hiredis_resp3(diff.leader.read(argv, int(time.time() * 1000)))
            assert got == resp3.call(*argv), argv
        argv = [b"XREADGROUP", b"GROUP", b"g", b"c", b"STREAMS", b"a", b"b", b">", b">"]
        assert _hiredis_resp3(diff.run_replikv(*argv)) == resp3.call(*argv)
        argv = [b"XREADGROUP", b"GROUP", b"g", b"c", b"STREAMS", b"a", b"b", b"0", b"1"]
        assert _hiredis_resp3(diff.run_replikv(*argv)) == resp3.call(*argv)
    finally:
        resp3.sock.close()
    diff.run("XREAD", "STREAMS", "a", "b", "0", "1")
    diff.run("XREAD", "STREAMS", "a", "a", "0", "1")  # a key twice: both answers


def _hiredis_resp3(value: Any) -> Any:
    reader = hiredis.Reader()
    reader.feed(encode_reply(value, resp3=True))
    return reader.gets()
