"""The generic key commands of issue 12 against redis-server 7.0: RENAME, RENAMENX,
COPY, FLUSHDB, FLUSHALL, RANDOMKEY, TOUCH, OBJECT, the EXPIRE family's NX/XX/GT/LT,
DEL, UNLINK, EXISTS, TYPE."""

from __future__ import annotations

import time

import pytest

from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from tests.differential.clock import unix_seconds_from_now
from tests.differential.oracle import Differential


def _fill(diff: Differential) -> None:
    diff.run("SET", "s", "v")
    diff.run("RPUSH", "l", "a", "b")
    diff.run("SADD", "set", "x", "y")
    diff.run("HSET", "h", "f", "1")


def test_rename(diff: Differential) -> None:
    _fill(diff)
    diff.run("RENAME", "s", "s2")
    diff.run("EXISTS", "s", "s2")
    diff.run("GET", "s2")
    diff.run("RENAME", "l", "s2")  # overwrites another type
    diff.run("TYPE", "s2")
    diff.run("LRANGE", "s2", "0", "-1")
    diff.run("RENAME", "s2", "s2")
    diff.run("RENAME", "missing", "x")
    diff.run("RENAME", "missing", "missing")
    diff.run("RENAME", "s2")
    diff.run("RENAME", "a", "b", "c")


def test_rename_moves_the_ttl(diff: Differential) -> None:
    diff.run("SET", "a", "1", "EX", "100")
    diff.run("SET", "b", "2", "EX", "500")
    diff.run("RENAME", "a", "c")
    diff.run("TTL", "c")
    diff.run("SET", "d", "3")
    diff.run("RENAME", "d", "b")  # the destination's TTL goes with its old value
    diff.run("TTL", "b")
    diff.run("RENAMENX", "c", "e")
    diff.run("TTL", "e")


def test_renamenx(diff: Differential) -> None:
    _fill(diff)
    diff.run("RENAMENX", "s", "l")
    diff.run("RENAMENX", "s", "s")
    diff.run("RENAMENX", "s", "t")
    diff.run("GET", "t")
    diff.run("EXISTS", "s")
    diff.run("RENAMENX", "missing", "t")
    diff.run("RENAMENX", "missing", "missing")
    diff.run("RENAMENX", "s")


def test_copy(diff: Differential) -> None:
    _fill(diff)
    diff.run("COPY", "s", "s2")
    diff.run("GET", "s2")
    diff.run("COPY", "s", "s2")
    diff.run("SET", "s", "w")
    diff.run("COPY", "s", "s2", "REPLACE")
    diff.run("GET", "s2")
    diff.run("COPY", "l", "l2")
    diff.run("RPUSH", "l2", "c")  # a copy, not a shared value
    diff.run("LRANGE", "l", "0", "-1")
    diff.run("LRANGE", "l2", "0", "-1")
    diff.run("COPY", "set", "set2")
    diff.run("SADD", "set2", "z")
    diff.run("SMEMBERS", "set", unordered=True)
    diff.run("COPY", "h", "h2", "DB", "0")
    diff.run("HSET", "h2", "g", "2")
    diff.run("HGETALL", "h", unordered="pairs")
    diff.run("COPY", "h", "s", "replace", "replace")
    diff.run("TYPE", "s")
    diff.run("COPY", "missing", "x")
    diff.run("EXISTS", "x")
    diff.run("SET", "t", "v", "EX", "100")
    diff.run("COPY", "t", "t2")
    diff.run("TTL", "t2")


def test_copy_errors(diff: Differential) -> None:
    diff.run("SET", "a", "1")
    diff.run("COPY", "a", "a")
    diff.run("COPY", "missing", "missing")
    diff.run("COPY", "a", "a", "DB", "16")
    diff.run("COPY", "a", "b", "DB", "16")
    diff.run("COPY", "a", "b", "DB", "-1")
    diff.run("COPY", "a", "b", "DB", "x")
    diff.run("COPY", "a", "b", "DB", "4294967296")
    diff.run("COPY", "a", "b", "DB")
    diff.run("COPY", "a", "b", "FOO")
    diff.run("COPY", "a", "b", "FOO", "DB", "16")
    diff.run("COPY", "a")
    diff.run("EXISTS", "b")


@pytest.mark.parametrize("name", ["FLUSHDB", "FLUSHALL"])
def test_flush(diff: Differential, name: str) -> None:
    _fill(diff)
    diff.run(name, "FOO")
    diff.run(name, "SYNC", "SYNC")
    diff.run("DBSIZE")
    diff.run(name)
    diff.run("DBSIZE")
    diff.run("SET", "a", "1")
    diff.run(name, "async")
    diff.run("SET", "a", "1")
    diff.run(name, "SYNC")
    diff.run("DBSIZE")
    diff.run(name)


def test_randomkey(diff: Differential) -> None:
    diff.run("RANDOMKEY")
    _fill(diff)
    for _ in range(10):
        assert diff.run_replikv("RANDOMKEY") in {b"s", b"l", b"set", b"h"}
    diff.run("RANDOMKEY", "x")
    now = int(time.time() * 1000)
    sm = StateMachine()
    sm.execute([b"SET", b"live", b"1"], ApplyContext(now))
    for i in range(20):
        sm.execute([b"SET", b"dead%d" % i, b"1", b"PXAT", b"%d" % (now + 5)], ApplyContext(now))
    for _ in range(10):
        assert sm.read([b"RANDOMKEY"], now + 10) == b"live"
    sm.execute([b"DEL", b"live"], ApplyContext(now))
    assert sm.read([b"RANDOMKEY"], now + 10) is None
    many = StateMachine()
    for i in range(1000):
        many.execute([b"SET", b"k%d" % i, b"v"], ApplyContext(now))
    drawn = {many.read([b"RANDOMKEY"], now) for _ in range(200)}
    assert len(drawn) > 100 and drawn <= set(many.data)


def test_touch_exists_type_del_unlink(diff: Differential) -> None:
    _fill(diff)
    diff.run("TOUCH", "s", "l", "missing", "s")
    diff.run("EXISTS", "s", "l", "missing", "s")
    for key in ["s", "l", "set", "h", "missing"]:
        diff.run("TYPE", key)
    diff.run("DEL", "s", "missing", "s")
    diff.run("UNLINK", "l", "set", "missing")
    diff.run("DEL", "missing")
    diff.run("EXISTS", "s", "l", "set", "h")
    diff.run("TOUCH")
    diff.run("EXISTS")
    diff.run("DEL")
    diff.run("UNLINK")
    diff.run("TYPE")
    diff.run("TYPE", "a", "b")


def test_object(diff: Differential) -> None:
    values = {"i": "123", "neg": "-5", "big": "9223372036854775807", "huge": "9223372036854775808",
              "zero": "0", "lead": "0123", "mz": "-0", "plus": "+1", "sp": " 1", "e": "",
              "s": "hello", "s44": "x" * 44, "s45": "x" * 45, "f": "1.5", "shared": "9999",
              "unshared": "10000"}
    for key, value in values.items():
        diff.run("SET", key, value)
        for sub in ["ENCODING", "REFCOUNT", "FREQ"]:
            diff.run("OBJECT", sub, key)
        # Redis's LRU clock ticks by the second: a fresh key may already be idle for 1; a shared
        # integer (0..9999) is one object for the whole server, idle since any earlier test used it
        if key not in ("i", "zero", "shared"):
            assert diff.redis.call("OBJECT", "IDLETIME", key) in (0, 1)
        assert diff.run_replikv("OBJECT", "IDLETIME", key) == 0
    diff.run("RPUSH", "l", "a")
    diff.run("SADD", "is", "1", "2", "-3")
    diff.run("SADD", "hs", "1", "a")
    diff.run("SADD", "bigis", *range(600))
    diff.run("HSET", "h", "f", "v")
    diff.run("HSET", "longh", "f", "v" * 65)
    diff.run("HSET", "manyh", *[str(i) for i in range(1024)])
    diff.run("HSET", "manyh", "x", "y")
    diff.run("RPUSH", "bigl", *["x" * 100] * 200)
    for key in ["l", "is", "hs", "bigis", "h", "longh", "manyh", "bigl"]:
        diff.run("OBJECT", "ENCODING", key)
        diff.run("OBJECT", "REFCOUNT", key)


def test_object_errors(diff: Differential) -> None:
    diff.run("OBJECT", "HELP")
    diff.run("OBJECT", "help")
    diff.run("OBJECT", "HELP", "x")
    diff.run("OBJECT")
    diff.run("OBJECT", "foo")
    diff.run("OBJECT", "foo", "k")
    for sub in ["ENCODING", "REFCOUNT", "IDLETIME", "FREQ", "encoding"]:
        diff.run("OBJECT", sub)
        diff.run("OBJECT", sub, "missing")
        diff.run("OBJECT", sub, "a", "b")


def test_expire_options(diff: Differential) -> None:
    diff.run("SET", "k", "v")
    for name, t in [("EXPIRE", "100"), ("PEXPIRE", "100000"),
                    ("EXPIREAT", str(unix_seconds_from_now(100))),
                    ("PEXPIREAT", str(int(time.time() * 1000) + 100_000))]:
        diff.run("PERSIST", "k")
        diff.run(name, "k", t, "XX")
        diff.run(name, "k", t, "GT")
        diff.run(name, "k", t, "LT")
        diff.run("TTL", "k")
        diff.run("PERSIST", "k")
        diff.run(name, "k", t, "NX")
        diff.run(name, "k", t, "NX")
        diff.run(name, "k", t, "XX")
        diff.run("TTL", "k")
        diff.run(name, "missing", t, "NX")
        for bad in [("NX", "XX"), ("GT", "LT"), ("NX", "GT"), ("FOO",), ("xx", "lt", "foo")]:
            diff.run(name, "k", t, *bad)
    diff.run("EXPIRE", "k", "200", "GT")
    diff.run("TTL", "k")
    diff.run("EXPIRE", "k", "50", "GT")
    diff.run("EXPIRE", "k", "50", "LT")
    diff.run("EXPIRE", "k", "150", "LT")
    diff.run("TTL", "k")
    diff.run("EXPIRE", "k", "300", "XX", "GT")
    diff.run("TTL", "k")
    diff.run("EXPIRE", "k", "-1", "LT")
    diff.run("EXISTS", "k")
