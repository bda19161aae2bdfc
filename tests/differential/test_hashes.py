"""The hash family (issue 12) against redis-server 7.0: every command, its
options and its error replies; HINCRBYFLOAT's long double arithmetic and its
leader-follower log form."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from replikv.core.replies import RespError
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from tests.differential.oracle import Differential

T0 = 1_700_000_000_000


def test_hsetnx_hmset(diff: Differential) -> None:
    diff.run("HSETNX", "h", "f", "1")
    diff.run("HSETNX", "h", "f", "2")
    diff.run("HSETNX", "h", "g", "3")
    diff.run("HMSET", "h", "f", "x", "new", "y")
    diff.run("HMSET", "h2", "a", "1")
    diff.run("HGETALL", "h", unordered="pairs")
    diff.run("HMSET", "h", "a")
    diff.run("HMSET", "h", "a", "1", "b")
    diff.run("HSETNX", "h", "f")
    diff.run("SET", "s", "v")
    diff.run("HSETNX", "s", "f", "1")
    diff.run("HMSET", "s", "f", "1")


INCREMENTS = [
    "0.1", "0.2", "10.5", "-5", "1e20", "1e-20", "5.0e3", "0x10", "-0", "1.5e300", "+1", ".5",
    "5.", "0x1p-2", "0X1P3", "-.5e-3", "3.0000000000000000001", "123456789.123456789123",
    "-1e-17", "1e-18", "0.000003814697265625", "0.000003814697265635", "1e-4940", "1e4932",
    "17", "-17.25", "1" + "0" * 5000 + "e-5000", "1e4000"
]
BAD_INCREMENTS = [
    "abc", "1e", "1.5 ", " 1", "", "1e-4951", "9e-4952", "1e5000", "1e-5000", "nan", "0x",
    "1_0", "1,5", "inf", "-inf", "Infinity", "1" * 5120, "\x00", "2\x00junk", "0x1p99999",
]


def test_hincrbyfloat(diff: Differential) -> None:
    diff.run("HSET", "h", "f", "10.50")
    for incr in INCREMENTS:
        diff.run("HINCRBYFLOAT", "h", "f", incr)
        diff.run("HINCRBYFLOAT", "h", "new" + incr[:20], incr)
        diff.run("HINCRBYFLOAT", "h", "small", incr)
    diff.run("HGETALL", "h", unordered="pairs")


@pytest.mark.parametrize("incr", BAD_INCREMENTS)
def test_hincrbyfloat_bad_increment(diff: Differential, incr: str) -> None:
    diff.run("HSET", "h", "f", "1")
    diff.run("HINCRBYFLOAT", "h", "f", incr)
    diff.run("HINCRBYFLOAT", "nokey", "f", incr)
    diff.run("SET", "s", "v")
    diff.run("HINCRBYFLOAT", "s", "f", incr)
    diff.run("HGET", "h", "f")


@pytest.mark.parametrize("stored", ["abc", " 2", "inf", "-inf", "1e4932", "nan", "", "1e5000"])
def test_hincrbyfloat_bad_stored_value(diff: Differential, stored: str) -> None:
    diff.run("HSET", "h", "f", stored)
    diff.run("HINCRBYFLOAT", "h", "f", "1")
    diff.run("HINCRBYFLOAT", "h", "f", "1e4932")
    diff.run("HGET", "h", "f")


def test_hincrbyfloat_errors(diff: Differential) -> None:
    diff.run("HSET", "h", "f", "1")
    diff.run("HINCRBYFLOAT", "h", "f", "1e4932")
    diff.run("HINCRBYFLOAT", "h", "f", "1e4932")
    diff.run("HINCRBYFLOAT", "h", "f", "1e4932")
    diff.run("SET", "s", "v")
    diff.run("HINCRBYFLOAT", "s", "f", "1")
    diff.run("HINCRBYFLOAT", "h", "f")
    diff.run("HINCRBYFLOAT", "h", "f", "1", "2")


def test_hincrbyfloat_is_logged_as_hset() -> None:
    leader, follower = StateMachine(), StateMachine()
    ctx = ApplyContext(T0)
    reply, cmds = leader.execute([b"HINCRBYFLOAT", b"h", b"f", b"0.1"], ctx)
    assert reply == b"0.1" and cmds == [[b"HSET", b"h", b"f", b"0.1"]]
    follower.apply(cmds, ApplyContext(None))
    reply, cmds = leader.execute([b"HINCRBYFLOAT", b"h", b"f", b"0.2"], ctx)
    assert reply == b"0.3" and cmds == [[b"HSET", b"h", b"f", b"0.3"]]
    follower.apply(cmds, ApplyContext(None))
    assert leader.digest() == follower.digest()
    # an error is logged nowhere; a client cannot send the rewrite's "=<result>" form
    assert leader.execute([b"HINCRBYFLOAT", b"h", b"f", b"x"], ctx)[1] is None
    err = leader.execute([b"HINCRBYFLOAT", b"h", b"f", b"=99"], ctx)
    assert err == (RespError("ERR value is not a valid float"), None)
    assert leader.prepare([b"HINCRBYFLOAT", b"h", b"f", b"=99"], ctx, exact=False)[0] == err[0]
    # prepare (exact) + apply without a clock == execute
    _, cmds = leader.prepare([b"HINCRBYFLOAT", b"h", b"f", b"1"], ctx)
    assert cmds == [[b"HINCRBYFLOAT", b"h", b"f", b"=1.3"]]
    assert follower.apply(cmds, ApplyContext(None)) == [b"1.3"]


def test_hincrbyfloat_on_an_expired_hash() -> None:
    leader, follower = StateMachine(), StateMachine()
    setup = [[b"HSET", b"h", b"f", b"5"], [b"PEXPIREAT", b"h", b"%d" % (T0 + 1)]]
    for sm in (leader, follower):
        sm.apply(setup, ApplyContext(None))
    reply, cmds = leader.execute([b"HINCRBYFLOAT", b"h", b"f", b"1.5"], ApplyContext(T0 + 2))
    assert reply == b"1.5"
    assert cmds == [[b"DEL", b"h"], [b"HSET", b"h", b"f", b"1.5"]]
    follower.apply(cmds, ApplyContext(None))
    assert leader.digest() == follower.digest()


def test_hkeys_hvals_hstrlen(diff: Differential) -> None:
    diff.run("HSET", "h", "a", "1", "b", "", "c", "three")
    diff.run("HKEYS", "h", unordered=True)
    diff.run("HVALS", "h", unordered=True)
    diff.run("HKEYS", "nokey")
    diff.run("HVALS", "nokey")
    for f in ("a", "b", "c", "zz"):
        diff.run("HSTRLEN", "h", f)
    diff.run("HSTRLEN", "nokey", "a")
    diff.run("SET", "s", "v")
    for name in ("HKEYS", "HVALS"):
        diff.run(name, "s")
        diff.run(name, "h", "x")
    diff.run("HSTRLEN", "s", "a")
    diff.run("HSTRLEN", "h")


def test_hrandfield_shapes(diff: Differential) -> None:
    diff.run("HSET", "h", "a", "1", "b", "2", "c", "3")
    fields = {b"a": b"1", b"b": b"2", b"c": b"3"}
    for _ in range(20):
        assert diff.run_replikv("HRANDFIELD", "h") in fields
    for count in (0, 1, 2, 3, 4, 100):
        got = diff.run_replikv("HRANDFIELD", "h", count)
        assert len(got) == min(count, 3) and len(set(got)) == len(got) <= 3
        assert set(got) <= set(fields)
        flat = diff.run_replikv("HRANDFIELD", "h", count, "WITHVALUES")
        pairs = list(zip(flat[::2], flat[1::2], strict=True))
        assert len(pairs) == min(count, 3) and all(fields[f] == v for f, v in pairs)
    seen: Counter[bytes] = Counter()
    for count in (-1, -5, -50):
        got = diff.run_replikv("HRANDFIELD", "h", count)
        assert len(got) == -count and set(got) <= set(fields)
        seen.update(got)
        flat = diff.run_replikv("HRANDFIELD", "h", count, "withvalues")
        assert len(flat) == -2 * count
        assert all(fields[f] == v for f, v in zip(flat[::2], flat[1::2], strict=True))
    assert len(seen) == 3  # 56 draws with repetition cover all 3 fields


def test_hrandfield_errors(diff: Differential) -> None:
    diff.run("HSET", "h", "a", "1")
    diff.run("SET", "s", "v")
    diff.run("HRANDFIELD", "h", "x")
    diff.run("HRANDFIELD", "h", "-9223372036854775808")
    diff.run("HRANDFIELD", "h", "5", "foo")
    diff.run("HRANDFIELD", "h", "5", "WITHVALUES", "x")
    diff.run("HRANDFIELD", "nokey", "5", "foo")
    diff.run("HRANDFIELD", "nokey", "x")
    diff.run("HRANDFIELD", "nokey")
    diff.run("HRANDFIELD", "nokey", "1")
    diff.run("HRANDFIELD", "nokey", "-3", "WITHVALUES")
    diff.run("HRANDFIELD", "s")
    diff.run("HRANDFIELD", "s", "1")
    diff.run("HRANDFIELD", "h", "0")
    diff.run("HRANDFIELD")


def test_hscan_small(diff: Differential) -> None:
    diff.run("HSET", "h", *[x for i in range(50) for x in (f"f{i}", str(i))])
    diff.run("HSCAN", "h", "0")
    for opts in (["COUNT", "1"], ["MATCH", "f1*"], ["MATCH", "f1*", "COUNT", "3"], ["MATCH", "*"],
                 ["match", "nothing"], ["COUNT", "1000"], ["MATCH", "f[12]", "MATCH", "f3?"]):
        got = diff.run("HSCAN", "h", "0", *opts)
        assert got[0] == b"0"
    diff.run("HSCAN", "h", "123")
    diff.run("HSCAN", "h", "-1")


def test_hscan_errors(diff: Differential) -> None:
    diff.run("HSET", "h", "a", "1")
    diff.run("SET", "s", "v")
    for args in (["nokey", "0", "COUNT", "0"], ["nokey", "x"], ["s", "0", "COUNT", "0"],
                 ["h", "0", "COUNT", "0"], ["h", "0", "COUNT", "x"], ["h", "0", "TYPE", "string"],
                 ["h", "0", "MATCH"], ["h", "18446744073709551616"], ["h", "x"],
                 ["h", "18446744073709551615"], ["h", "0", "FOO", "1"], ["h"]):
        diff.run("HSCAN", *args)


def test_hscan_large_covers_every_field(diff: Differential) -> None:
    """A hash past the compact size is scanned in steps; every field comes back."""
    fields = {b"f%d" % i: b"%d" % i for i in range(1000)}
    diff.run("HSET", "h", *[x for f, v in fields.items() for x in (f, v)])
    seen: dict[bytes, bytes] = {}
    cursor, calls = b"0", 0
    while True:
        cursor, flat = diff.run_replikv("HSCAN", "h", cursor, "COUNT", "20")
        seen.update(zip(flat[::2], flat[1::2], strict=True))
        calls += 1
        if cursor == b"0":
            break
    assert seen == fields and calls > 10
    cursor, flat = diff.run_replikv("HSCAN", "h", "0", "MATCH", "f99*", "COUNT", "5000")
    expected = [b"f99"] + [b"f99%d" % i for i in range(10)]
    assert cursor == b"0" and sorted(flat[::2]) == sorted(expected)


def _random_float_text(rng: random.Random) -> str:
    sign = rng.choice(["", "-", "+"])
    kind = rng.randrange(4)
    if kind == 0:  # decimal with a fraction and maybe an exponent
        whole, frac = (rng.randrange(10 ** rng.randrange(1, 25)) for _ in range(2))
        text = f"{whole}.{frac}"
        if rng.random() < 0.5:
            text += f"e{rng.randrange(-4960, 4940)}"
    elif kind == 1:  # a double's shortest repr
        text = repr(rng.uniform(-1e6, 1e6) * 10 ** rng.randrange(-30, 30))
    elif kind == 2:  # hexadecimal
        whole, frac = rng.randrange(1 << 70), rng.randrange(1 << 20)
        text = f"0x{whole:x}.{frac:x}p{rng.randrange(-16500, 16400)}"
    else:  # near the rounding edges of 17 decimals
        text = f"0.{rng.randrange(10**20):020d}"
    return sign + text


@pytest.mark.parametrize("seed", range(4))
def test_hincrbyfloat_random_values(diff: Differential, seed: int) -> None:
    """Random decimal, hexadecimal and extreme values, parsed, added and printed
    as Redis's long double arithmetic does."""
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    for i in range(400):
        field = f"f{i % 7}"
        reply = diff.run("HINCRBYFLOAT", "h", field, _random_float_text(rng))
        outcomes[type(reply).__name__] += 1
        if i % 50 == 0:
            diff.run("HDEL", "h", field)
    assert outcomes["bytes"] > 100 and outcomes["ReplyError"] > 10, outcomes
