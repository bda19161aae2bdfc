"""The string commands of issue 12 against redis-server 7.0: INCRBYFLOAT, GETEX,
SETRANGE, GETRANGE, SUBSTR, MSETNX, SETNX, GETSET (LCS: test_lcs.py, bits: test_bits.py)."""

from __future__ import annotations

import time

import pytest

from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from tests.differential.clock import unix_seconds_from_now
from tests.differential.oracle import Differential

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


@pytest.mark.parametrize(
    "value, incr",
    [
        (None, "0.1"), ("10.50", "0.1"), ("5.0e3", "2.0e2"), ("3", "1.5"), ("1.1", "0"),
        ("1", "1e20"), (None, "1.5e-20"), ("-1", "1"), ("0x10", "1"), ("1", "-0x1p-3"),
        ("12345678901234567", "0.1"), ("1e300", "1e300"), ("0.3", "-0.1"),
        (None, "+.5"), (None, "5."), ("1", "1E2"), (None, "-3.75e-5"),
        ("1e4900", "1"), ("1.18e4932", "1e4931"), (None, "1e-4940"), (None, "0x1.8p1"),
        ("0.1", "0.2"), ("0.1", "1e3"), ("9" * 4900, "1"), (None, "7.0000000000000001"), ("-5", "5"), (None, "1e-18"),
    ],
)
def test_incrbyfloat_matches_long_double(diff: Differential, value: str | None, incr: str) -> None:
    if value is not None:
        diff.run("SET", "f", value)
    diff.run("INCRBYFLOAT", "f", incr)
    diff.run("GET", "f")
    diff.run("INCRBYFLOAT", "f", incr)


def test_incrbyfloat_errors(diff: Differential) -> None:
    diff.run("SET", "f", "1.5")
    for bad in ["abc", "", " 1", "1 ", "1e5000", "nan", "1.5.5", "0x", "1/2", "1_0"]:
        diff.run("INCRBYFLOAT", "f", bad)
    diff.run("INCRBYFLOAT", "f", "inf")
    diff.run("INCRBYFLOAT", "f", "-infinity")
    diff.run("SET", "s", "hello")
    diff.run("INCRBYFLOAT", "s", "1")
    for with_nul in [b"\x00", b"2\x00", b"1\x001"]:
        diff.run("SET", "z", with_nul)
        diff.run("INCRBYFLOAT", "z", "1")
        diff.run("INCRBYFLOAT", "f", with_nul)
    diff.run("RPUSH", "l", "a")
    diff.run("INCRBYFLOAT", "l", "1")
    diff.run("SET", "big", "1e4900")
    diff.run("INCRBYFLOAT", "big", "1e4900")
    diff.run("INCRBYFLOAT", "f")
    diff.run("INCRBYFLOAT", "f", "1", "2")
    diff.run("GET", "f")


def test_incrbyfloat_keeps_the_ttl_and_is_logged_as_set_keepttl(diff: Differential) -> None:
    diff.run("SET", "f", "1", "EX", "100")
    assert diff.run("INCRBYFLOAT", "f", "2.5") == b"3.5"
    diff.run("TTL", "f")
    now = int(time.time() * 1000)
    _, cmds = StateMachine().execute([b"INCRBYFLOAT", b"k", b"0.1"], ApplyContext(now))
    assert cmds == [[b"SET", b"k", b"0.1", b"KEEPTTL"]]


def test_getex(diff: Differential) -> None:
    diff.run("GETEX", "k")
    diff.run("GETEX", "k", "EX", "10")
    diff.run("GETEX", "k", "EX", "abc")  # missing key: nil before the TTL is looked at
    diff.run("GETEX", "k", "EX", "-1")
    diff.run("SET", "k", "v")
    diff.run("GETEX", "k")
    diff.run("TTL", "k")
    diff.run("GETEX", "k", "EX", "100")
    diff.run("TTL", "k")
    diff.run("GETEX", "k", "PX", "200000")
    diff.run("TTL", "k")
    diff.run("GETEX", "k", "EXAT", unix_seconds_from_now(300))
    diff.run("TTL", "k")
    diff.run("GETEX", "k", "PXAT", str(int(time.time() * 1000) + 400_000))
    diff.run("TTL", "k")
    diff.run("GETEX", "k", "EX", "10", "EX", "20")
    diff.run("TTL", "k")
    diff.run("GETEX", "k", "PERSIST")
    diff.run("TTL", "k")
    diff.run("GETEX", "k", "PERSIST")
    diff.run("GETEX", "k", "persist", "persist")


def test_getex_errors(diff: Differential) -> None:
    diff.run("SET", "k", "v")
    for opts in [("EX", "abc"), ("EX", "0"), ("PX", "-5"), ("EXAT", "0"),
                 ("EX", "9223372036854775807"), ("PX", "9223372036854775807"),
                 ("EX", "9223372036854775")]:
        diff.run("GETEX", "k", *opts)
    for opts in [("NX",), ("GET",), ("KEEPTTL",), ("EX",), ("PERSIST", "EX", "10"),
                 ("EX", "10", "PERSIST"), ("EX", "10", "PX", "10"), ("FOO",)]:
        diff.run("GETEX", "k", *opts)
        diff.run("GETEX", "missing", *opts)
    diff.run("RPUSH", "l", "a")
    diff.run("GETEX", "l")
    diff.run("GETEX", "l", "EX", "abc")
    diff.run("GETEX")
    diff.run("TTL", "k")


def test_getex_with_a_due_time_deletes_the_key(diff: Differential) -> None:
    diff.run("SET", "k", "v")
    assert diff.run("GETEX", "k", "EXAT", "1") == b"v"
    diff.run("EXISTS", "k")
    diff.run("SET", "k", "v")
    diff.run("GETEX", "k", "PXAT", str(int(time.time() * 1000) - 5))
    diff.run("EXISTS", "k")
    now = int(time.time() * 1000)
    sm = StateMachine()
    sm.execute([b"SET", b"k", b"v"], ApplyContext(now))
    reply, cmds = sm.execute([b"GETEX", b"k", b"PXAT", b"1"], ApplyContext(now))
    assert reply == b"v" and cmds == [[b"GETDEL", b"k"]]


def test_getex_relative_ttl_is_logged_absolute() -> None:
    now = 1_700_000_000_000
    sm = StateMachine()
    sm.execute([b"SET", b"k", b"v"], ApplyContext(now))
    _, cmds = sm.execute([b"GETEX", b"k", b"EX", b"10"], ApplyContext(now))
    assert cmds == [[b"GETEX", b"k", b"PXAT", b"%d" % (now + 10_000)]]
    err, cmds = StateMachine().prepare([b"GETEX", b"k", b"PX", b"5"], ApplyContext(now),
                                       exact=False)
    assert err is None and cmds == [[b"GETEX", b"k", b"PXAT", b"%d" % (now + 5)]]


def test_setrange(diff: Differential) -> None:
    diff.run("SETRANGE", "k", "0", "")
    diff.run("EXISTS", "k")
    diff.run("SETRANGE", "k", "5", "hello")
    diff.run("GET", "k")
    diff.run("SETRANGE", "k", "0", "HE")
    diff.run("SETRANGE", "k", "8", "LLO world")
    diff.run("GET", "k")
    diff.run("SETRANGE", "k", "3", "")
    diff.run("SETRANGE", "k", "20", "x")
    diff.run("GET", "k")
    diff.run("SET", "n", "12345")
    diff.run("SETRANGE", "n", "1", "9")
    diff.run("GET", "n")
    diff.run("SET", "t", "v", "EX", "100")
    diff.run("SETRANGE", "t", "1", "x")
    diff.run("TTL", "t")


def test_setrange_errors(diff: Differential) -> None:
    diff.run("SETRANGE", "k", "-1", "x")
    diff.run("SETRANGE", "k", "abc", "x")
    diff.run("SETRANGE", "k", "536870912", "x")
    diff.run("SETRANGE", "k", "536870911", "xy")
    diff.run("SETRANGE", "k", "9223372036854775807", "x")
    diff.run("SET", "k", "v")
    diff.run("SETRANGE", "k", "536870912", "")
    diff.run("SETRANGE", "k", "536870912", "x")
    diff.run("RPUSH", "l", "a")
    diff.run("SETRANGE", "l", "0", "x")
    diff.run("SETRANGE", "l", "0", "")
    diff.run("SETRANGE", "k", "0")
    diff.run("GET", "k")


@pytest.mark.parametrize("name", ["GETRANGE", "SUBSTR"])
def test_getrange(diff: Differential, name: str) -> None:
    diff.run(name, "k", "0", "-1")
    diff.run("SET", "k", "This is a string")
    for start, end in [(0, 3), (-3, -1), (0, -1), (10, 100), (-100, 3), (5, 2), (-1, -5),
                       (-5, -1), (100, 200), (-100, -50), (0, 0), (16, 16), (15, 15)]:
        diff.run(name, "k", start, end)
    diff.run("SET", "n", "123")
    diff.run(name, "n", "1", "1")
    diff.run("SET", "e", "")
    diff.run(name, "e", "0", "-1")
    diff.run(name, "k", "a", "1")
    diff.run(name, "k", "1", "b")
    diff.run(name, "missing", "a", "1")
    diff.run("RPUSH", "l", "a")
    diff.run(name, "l", "0", "1")
    diff.run(name, "k", "0")


def test_msetnx(diff: Differential) -> None:
    diff.run("MSETNX", "a", "1", "b", "2")
    diff.run("MGET", "a", "b")
    diff.run("MSETNX", "b", "3", "c", "4")
    diff.run("EXISTS", "c")
    diff.run("MSETNX", "c", "1", "c", "2")
    diff.run("GET", "c")
    diff.run("MSETNX", "a", "1", "b")
    diff.run("MSETNX", "a")
    diff.run("RPUSH", "l", "x")
    diff.run("MSETNX", "l", "1", "z", "2")
    diff.run("EXISTS", "z")


def test_setnx_and_getset(diff: Differential) -> None:
    diff.run("SETNX", "k", "1")
    diff.run("SETNX", "k", "2")
    diff.run("GET", "k")
    diff.run("SET", "t", "v", "EX", "100")
    diff.run("GETSET", "t", "w")
    diff.run("TTL", "t")
    diff.run("GETSET", "missing", "x")
    diff.run("RPUSH", "l", "a")
    diff.run("GETSET", "l", "x")
    diff.run("SETNX", "l", "x")
    diff.run("SETNX", "k")
    diff.run("GETSET", "k")
