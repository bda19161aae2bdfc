"""The state machine: Redis semantics, deterministic rewriting, expiry, SCAN.

Expected replies and error texts were checked against redis-server 7.0.
Every write goes through ``W``, which also applies the logged commands to a
follower and checks the two states stay equal.
"""

from __future__ import annotations

import random

import pytest

from replikv.core.replies import NOT_INTEGER, NULL_ARRAY, SYNTAX_ERROR, WRONGTYPE, RespError
from replikv.kv.context import ApplyContext
from replikv.kv.scan_index import ScanIndex
from replikv.kv.state_machine import StateMachine

NOW = 1_700_000_000_000
LOG = ApplyContext(None)  # a follower applying a leader-follower log: no clock


def _argv(args: tuple[object, ...]) -> list[bytes]:
    return [a if isinstance(a, bytes) else str(a).encode() for a in args]


class Pair:
    """A leader and a follower fed with what the leader logs."""

    def __init__(self) -> None:
        self.leader = StateMachine()
        self.follower = StateMachine()
        self.log: list[list[list[bytes]]] = []

    def w(self, *args: object, now: int = NOW) -> object:
        reply, cmds = self.leader.execute(_argv(args), ApplyContext(now))
        if cmds is not None:
            self.log.append(cmds)
            self.follower.apply(cmds, LOG)
        assert self.leader.digest() == self.follower.digest()
        return reply

    def r(self, *args: object, now: int = NOW) -> object:
        reply = self.leader.read(_argv(args), now)
        assert _same(reply, self.follower.read(_argv(args), now))
        return reply

    def logged(self, *args: object, now: int = NOW) -> list[list[bytes]] | None:
        """Run a write and return what it logged."""
        before = len(self.log)
        self.w(*args, now=now)
        return self.log[-1] if len(self.log) > before else None


def _same(a: object, b: object) -> bool:
    if isinstance(a, list) and isinstance(b, list) and len(a) == 2 and isinstance(a[1], list):
        return a[0] == b[0] and sorted(a[1]) == sorted(b[1])  # SCAN order may differ
    return a == b


@pytest.fixture
def p() -> Pair:
    return Pair()


def err(text: str) -> RespError:
    return RespError(text)


# --- strings -------------------------------------------------------------------


def test_set_get(p: Pair) -> None:
    assert p.w("SET", "k", "v") == "OK"
    assert p.r("GET", "k") == b"v"
    assert p.r("GET", "missing") is None
    assert p.w("set", "k", "v2") == "OK"  # any case
    assert p.r("get", "k") == b"v2"


def test_plain_set_logs_the_argv_itself(p: Pair) -> None:
    argv = [b"SET", b"k", b"v"]
    reply, cmds = p.leader.execute(argv, ApplyContext(NOW))
    assert reply == "OK" and cmds is not None and len(cmds) == 1 and cmds[0] is argv


def test_set_nx_xx_get(p: Pair) -> None:
    assert p.w("SET", "k", "1", "NX") == "OK"
    assert p.w("SET", "k", "2", "NX") is None
    assert p.r("GET", "k") == b"1"
    assert p.w("SET", "other", "1", "XX") is None
    assert p.r("EXISTS", "other") == 0
    assert p.w("SET", "k", "3", "XX", "GET") == b"1"
    assert p.w("SET", "new", "x", "GET") is None
    assert p.w("SET", "k", "4", "NX", "GET") == b"3"  # Redis 7 allows NX with GET
    assert p.r("GET", "k") == b"3"


def test_set_option_errors(p: Pair) -> None:
    assert p.w("SET", "k", "v", "NX", "XX") == SYNTAX_ERROR
    assert p.w("SET", "k", "v", "EX", "10", "PX", "20") == SYNTAX_ERROR
    assert p.w("SET", "k", "v", "KEEPTTL", "EX", "1") == SYNTAX_ERROR
    assert p.w("SET", "k", "v", "EX", "1", "KEEPTTL") == SYNTAX_ERROR
    assert p.w("SET", "k", "v", "EX") == SYNTAX_ERROR
    assert p.w("SET", "k", "v", "BOGUS") == SYNTAX_ERROR
    assert p.w("SET", "k", "v", "EX", "abc") == NOT_INTEGER
    invalid = err("ERR invalid expire time in 'set' command")
    assert p.w("SET", "k", "v", "EX", "0") == invalid
    assert p.w("SET", "k", "v", "PX", "-1") == invalid
    assert p.w("SET", "k", "v", "EX", "9223372036854775807") == invalid
    assert p.w("SET", "k", "v", "PX", "9223372036854775807") == invalid  # now + px overflows
    assert p.w("SET", "k") == err("ERR wrong number of arguments for 'set' command")
    assert p.log == []  # nothing was logged for any of them


def test_set_same_expire_option_twice_last_wins(p: Pair) -> None:
    assert p.w("SET", "k", "v", "EX", "10", "EX", "20") == "OK"
    assert p.r("TTL", "k") == 20


def test_set_with_get_on_wrong_type(p: Pair) -> None:
    p.w("LPUSH", "l", "a")
    assert p.w("SET", "l", "v", "GET") == WRONGTYPE
    assert p.r("TYPE", "l") == "list"
    assert p.w("SET", "l", "v") == "OK"  # plain SET overwrites any type
    assert p.r("TYPE", "l") == "string"


def test_set_ex_is_logged_as_pxat(p: Pair) -> None:
    assert p.logged("SET", "k", "v", "EX", "10") == [
        [b"SET", b"k", b"v", b"PXAT", b"%d" % (NOW + 10_000)]
    ]
    assert p.logged("SET", "k", "v", "PX", "5", "NX") is None  # NX failed: nothing
    assert p.logged("SET", "k", "v", "XX", "PX", "5") == [
        [b"SET", b"k", b"v", b"PXAT", b"%d" % (NOW + 5)]
    ]
    assert p.follower.expires[b"k"] == NOW + 5


def test_set_absolute_ttl_logged_as_is(p: Pair) -> None:
    argv = [b"SET", b"k", b"v", b"EXAT", b"%d" % (NOW // 1000 + 100)]
    _, cmds = p.leader.execute(argv, ApplyContext(NOW))
    assert cmds is not None and cmds[0] is argv
    p.follower.apply(cmds, LOG)
    assert p.follower.expires[b"k"] == (NOW // 1000 + 100) * 1000


def test_set_clears_ttl_unless_keepttl(p: Pair) -> None:
    p.w("SET", "k", "v", "EX", "100")
    p.w("SET", "k", "v2", "KEEPTTL")
    assert p.r("TTL", "k") == 100
    p.w("SET", "k", "v3")
    assert p.r("TTL", "k") == -1


def test_setex_psetex(p: Pair) -> None:
    assert p.logged("SETEX", "k", "10", "v") == [
        [b"SET", b"k", b"v", b"PXAT", b"%d" % (NOW + 10_000)]
    ]
    assert p.r("PTTL", "k") == 10_000
    assert p.logged("PSETEX", "k", "1500", "v") == [
        [b"SET", b"k", b"v", b"PXAT", b"%d" % (NOW + 1500)]
    ]
    assert p.w("SETEX", "k", "0", "v") == err("ERR invalid expire time in 'setex' command")
    assert p.w("PSETEX", "k", "-1", "v") == err("ERR invalid expire time in 'psetex' command")
    assert p.w("SETEX", "k", "a", "v") == NOT_INTEGER


def test_setnx_getset_getdel(p: Pair) -> None:
    assert p.w("SETNX", "k", "1") == 1
    assert p.w("SETNX", "k", "2") == 0
    assert p.w("GETSET", "k", "3") == b"1"
    assert p.w("GETSET", "n", "3") is None
    assert p.w("GETDEL", "k") == b"3"
    assert p.w("GETDEL", "k") is None
    p.w("SADD", "s", "a")
    assert p.w("GETDEL", "s") == WRONGTYPE
    assert p.w("GETSET", "s", "x") == WRONGTYPE


def test_mset_mget(p: Pair) -> None:
    assert p.w("MSET", "a", "1", "b", "2") == "OK"
    p.w("SADD", "s", "x")
    assert p.r("MGET", "a", "b", "s", "nope") == [b"1", b"2", None, None]
    assert p.w("MSET", "a") == err("ERR wrong number of arguments for 'mset' command")
    assert p.w("MSET", "a", "1", "b") == err("ERR wrong number of arguments for 'mset' command")


def test_incr_family(p: Pair) -> None:
    assert p.w("INCR", "n") == 1
    assert p.w("INCRBY", "n", "10") == 11
    assert p.w("DECR", "n") == 10
    assert p.w("DECRBY", "n", "-5") == 15
    assert p.r("GET", "n") == b"15"
    assert p.w("INCRBY", "n", "1.5") == NOT_INTEGER
    for bad in ("abc", "-0", "007", "+5", " 5", "1e3", ""):
        p.w("SET", "x", bad)
        assert p.w("INCR", "x") == NOT_INTEGER, bad
    p.w("SET", "x", "9223372036854775807")
    overflow = err("ERR increment or decrement would overflow")
    assert p.w("INCR", "x") == overflow
    assert p.w("DECRBY", "x", "-1") == overflow
    p.w("SET", "x", "-9223372036854775808")
    assert p.w("DECR", "x") == overflow
    assert p.w("DECRBY", "x", "-9223372036854775808") == err("ERR decrement would overflow")
    assert p.w("INCRBY", "x", "9223372036854775808") == NOT_INTEGER
    p.w("LPUSH", "l", "a")
    assert p.w("INCR", "l") == WRONGTYPE


def test_incr_keeps_ttl(p: Pair) -> None:
    p.w("SET", "n", "1", "EX", "100")
    p.w("INCR", "n")
    assert p.r("TTL", "n") == 100


def test_append_strlen(p: Pair) -> None:
    assert p.w("APPEND", "s", "ab") == 2
    assert p.w("APPEND", "s", "cd") == 4
    assert p.r("STRLEN", "s") == 4
    assert p.r("STRLEN", "nope") == 0
    p.w("HSET", "h", "f", "v")
    assert p.w("APPEND", "h", "x") == WRONGTYPE
    assert p.r("STRLEN", "h") == WRONGTYPE


def test_write_read_aliases(p: Pair) -> None:
    assert p.w("write", "key", "0") == "OK"
    assert p.r("read", "key") == b"0"
    assert p.r("READ", "key") == b"0"
    assert p.follower.read([b"read", b"key"], NOW) == b"0"


# --- keyspace ------------------------------------------------------------------


def test_del_exists_type(p: Pair) -> None:
    p.w("MSET", "a", "1", "b", "2")
    p.w("RPUSH", "l", "x")
    p.w("SADD", "s", "x")
    p.w("HSET", "h", "f", "v")
    assert [p.r("TYPE", k) for k in "ablshz"] == ["string", "string", "list", "set", "hash", "none"]
    assert p.r("EXISTS", "a", "a", "z") == 2
    assert p.w("DEL", "a", "z", "l") == 2
    assert p.r("EXISTS", "a", "l") == 0
    assert p.logged("DEL", "nothing") is None


def test_unknown_and_arity_errors(p: Pair) -> None:
    assert p.w("NOPE", "x") == err("ERR unknown command 'NOPE', with args beginning with: 'x' ")
    assert p.w("GET") == err("ERR wrong number of arguments for 'get' command")
    assert p.r("GET", "a", "b") == err("ERR wrong number of arguments for 'get' command")
    assert p.w("LPOP", "l", "1", "2") == err("ERR wrong number of arguments for 'lpop' command")
    assert p.r("PING") == err("ERR 'ping' is not a read-only data command")


def test_expire_is_logged_as_pexpireat(p: Pair) -> None:
    p.w("SET", "k", "v")
    assert p.logged("EXPIRE", "k", "10") == [[b"PEXPIREAT", b"k", b"%d" % (NOW + 10_000)]]
    assert p.logged("PEXPIRE", "k", "10") == [[b"PEXPIREAT", b"k", b"%d" % (NOW + 10)]]
    assert p.r("PTTL", "k") == 10
    assert p.follower.expires[b"k"] == NOW + 10


def test_expire_non_positive_becomes_del(p: Pair) -> None:
    p.w("SET", "k", "v")
    assert p.logged("EXPIRE", "k", "-5") == [[b"DEL", b"k"]]
    assert p.r("EXISTS", "k") == 0
    p.w("SET", "k", "v")
    assert p.logged("EXPIRE", "k", "0") == [[b"DEL", b"k"]]
    p.w("SET", "k", "v")
    assert p.logged("PEXPIREAT", "k", "1") == [[b"DEL", b"k"]]
    assert p.w("EXPIRE", "missing", "10") == 0
    assert p.logged("EXPIRE", "missing", "10") is None


def test_expireat_future_logged_as_is(p: Pair) -> None:
    p.w("SET", "k", "v")
    when = NOW // 1000 + 50
    argv = [b"EXPIREAT", b"k", b"%d" % when]
    reply, cmds = p.leader.execute(argv, ApplyContext(NOW))
    assert reply == 1 and cmds is not None and cmds[0] is argv
    p.follower.apply(cmds, LOG)
    assert p.follower.expires[b"k"] == when * 1000 == p.leader.expires[b"k"]


def test_expire_options(p: Pair) -> None:
    p.w("SET", "k", "v")
    assert p.w("EXPIRE", "k", "100", "XX") == 0
    assert p.w("EXPIRE", "k", "100", "GT") == 0  # no TTL counts as infinite
    assert p.w("EXPIRE", "k", "100", "NX") == 1
    assert p.w("EXPIRE", "k", "200", "NX") == 0
    assert p.w("EXPIRE", "k", "50", "GT") == 0
    assert p.w("EXPIRE", "k", "200", "GT") == 1
    assert p.w("EXPIRE", "k", "300", "LT") == 0
    assert p.w("EXPIRE", "k", "150", "LT") == 1
    assert p.r("TTL", "k") == 150
    p.w("SET", "n", "v")
    assert p.w("EXPIRE", "n", "10", "lt") == 1  # LT on no TTL succeeds


def test_expire_errors(p: Pair) -> None:
    p.w("SET", "k", "v")
    assert p.w("EXPIRE", "k", "abc") == NOT_INTEGER
    assert p.w("EXPIRE", "k", "10", "foo") == err("ERR Unsupported option foo")
    assert p.w("EXPIRE", "k", "abc", "foo") == err("ERR Unsupported option foo")
    assert p.w("EXPIRE", "k", "10", "NX", "XX") == err(
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    )
    assert p.w("EXPIRE", "k", "10", "GT", "LT") == err(
        "ERR GT and LT options at the same time are not compatible"
    )
    assert p.w("EXPIRE", "k", "9223372036854775807") == err(
        "ERR invalid expire time in 'expire' command"
    )
    assert p.w("PEXPIRE", "k", "9223372036854775807") == err(
        "ERR invalid expire time in 'pexpire' command"
    )


def test_ttl_pttl_persist(p: Pair) -> None:
    assert p.r("TTL", "nope") == -2
    p.w("SET", "k", "v")
    assert p.r("TTL", "k") == -1
    p.w("PEXPIRE", "k", "10499")
    assert p.r("TTL", "k") == 10  # rounded as Redis: (ms + 500) / 1000
    p.w("PEXPIRE", "k", "10500")
    assert p.r("TTL", "k") == 11
    assert p.r("PTTL", "k") == 10500
    assert p.r("PEXPIRETIME", "k") == NOW + 10500
    assert p.r("EXPIRETIME", "k") == (NOW + 10500) // 1000
    assert p.w("PERSIST", "k") == 1
    assert p.w("PERSIST", "k") == 0
    assert p.r("TTL", "k") == -1


def test_flushall_dbsize_keys(p: Pair) -> None:
    p.w("MSET", "user:1", "a", "user:2", "b", "other", "c")
    assert p.r("DBSIZE") == 3
    assert sorted(p.r("KEYS", "user:*")) == [b"user:1", b"user:2"]
    assert sorted(p.r("KEYS", "*")) == [b"other", b"user:1", b"user:2"]
    assert p.w("FLUSHALL", "nope") == SYNTAX_ERROR
    assert p.w("FLUSHALL", "ASYNC") == "OK"
    assert p.r("DBSIZE") == 0
    assert p.logged("FLUSHALL") is None  # already empty


# --- lists, sets, hashes -------------------------------------------------------


def test_lists(p: Pair) -> None:
    assert p.w("LPUSH", "l", "a", "b", "c") == 3
    assert p.w("RPUSH", "l", "d") == 4
    assert p.r("LRANGE", "l", "0", "-1") == [b"c", b"b", b"a", b"d"]
    assert p.r("LRANGE", "l", "1", "2") == [b"b", b"a"]
    assert p.r("LRANGE", "l", "-2", "100") == [b"a", b"d"]
    assert p.r("LRANGE", "l", "3", "1") == []
    assert p.r("LRANGE", "l", "10", "20") == []
    assert p.r("LRANGE", "l", "-100", "0") == [b"c"]
    assert p.r("LRANGE", "l", "a", "b") == NOT_INTEGER
    assert p.r("LLEN", "l") == 4
    assert p.w("LPOP", "l") == b"c"
    assert p.w("RPOP", "l") == b"d"
    assert p.w("LPOP", "l", "0") == []
    assert p.w("LPOP", "l", "5") == [b"b", b"a"]
    assert p.r("EXISTS", "l") == 0  # empty list deleted
    assert p.w("LPOP", "l") is None
    assert p.w("LPOP", "l", "1") is NULL_ARRAY
    assert p.w("LPOP", "l", "0") is NULL_ARRAY
    positive = err("ERR value is out of range, must be positive")
    assert p.w("LPOP", "l", "-1") == positive
    assert p.w("RPOP", "l", "abc") == positive
    p.w("SET", "s", "x")
    assert p.w("LPUSH", "s", "a") == WRONGTYPE
    assert p.w("LPOP", "s") == WRONGTYPE
    assert p.r("LRANGE", "s", "0", "-1") == WRONGTYPE
    assert p.r("LLEN", "nope") == 0


def test_sets(p: Pair) -> None:
    assert p.w("SADD", "s", "a", "b", "a") == 2
    assert p.logged("SADD", "s", "a") is None  # nothing added, nothing logged
    assert p.r("SMEMBERS", "s") == {b"a", b"b"}
    assert p.r("SISMEMBER", "s", "a") == 1
    assert p.r("SISMEMBER", "s", "z") == 0
    assert p.r("SCARD", "s") == 2
    assert p.w("SREM", "s", "a", "z") == 1
    assert p.w("SREM", "s", "b") == 1
    assert p.r("EXISTS", "s") == 0
    assert p.r("SMEMBERS", "s") == set()
    assert p.w("SREM", "s", "b") == 0
    p.w("SET", "str", "x")
    assert p.w("SADD", "str", "a") == WRONGTYPE
    assert p.r("SMEMBERS", "str") == WRONGTYPE


def test_hashes(p: Pair) -> None:
    assert p.w("HSET", "h", "f1", "1", "f2", "2") == 2
    assert p.w("HSET", "h", "f1", "x") == 0
    assert p.r("HGET", "h", "f1") == b"x"
    assert p.r("HGET", "h", "nope") is None
    assert p.r("HGETALL", "h") == {b"f1": b"x", b"f2": b"2"}
    assert p.r("HLEN", "h") == 2
    assert p.r("HMGET", "h", "f2", "z") == [b"2", None]
    assert p.r("HEXISTS", "h", "f2") == 1
    assert p.w("HINCRBY", "h", "f2", "5") == 7
    assert p.w("HINCRBY", "h", "new", "-3") == -3
    assert p.w("HINCRBY", "h", "f1", "1") == err("ERR hash value is not an integer")
    assert p.w("HINCRBY", "h", "f2", "x") == NOT_INTEGER
    p.w("HSET", "h", "big", "9223372036854775807")
    assert p.w("HINCRBY", "h", "big", "1") == err("ERR increment or decrement would overflow")
    assert p.w("HDEL", "h", "f1", "f2", "nope") == 2
    assert p.w("HDEL", "h", "new", "big") == 2
    assert p.r("EXISTS", "h") == 0
    assert p.r("HGETALL", "h") == {}
    assert p.w("HSET", "h", "f") == err("ERR wrong number of arguments for 'hset' command")
    assert p.w("HSET", "h", "f", "v", "g") == err(
        "ERR wrong number of arguments for 'hset' command"
    )
    p.w("SET", "str", "x")
    assert p.w("HSET", "str", "f", "v") == WRONGTYPE
    assert p.w("HINCRBY", "str", "f", "1") == WRONGTYPE
    assert p.r("HGET", "str", "f") == WRONGTYPE


# --- expiry and determinism ------------------------------------------------------


def test_expired_key_is_deleted_first_and_del_logged(p: Pair) -> None:
    p.w("SET", "k", "v", "PX", "100")
    later = NOW + 100
    assert p.r("GET", "k", now=later) is None  # invisible to reads...
    assert b"k" in p.leader.data  # ...but reads never delete
    argv = [b"INCR", b"k"]
    reply, cmds = p.leader.execute(argv, ApplyContext(later))
    assert reply == 1  # counts from 0: the expired string is gone
    assert cmds == [[b"DEL", b"k"], argv] and cmds[1] is argv
    p.follower.apply(cmds, LOG)
    assert p.follower.digest() == p.leader.digest()


def test_expired_key_del_logged_even_when_command_is_a_noop(p: Pair) -> None:
    p.w("SADD", "s", "a")
    p.w("PEXPIRE", "s", "10")
    assert p.logged("SREM", "s", "a", now=NOW + 10) == [[b"DEL", b"s"]]
    p.w("SET", "k", "v", "PX", "10")
    assert p.logged("DEL", "k", now=NOW + 10) == [[b"DEL", b"k"]]


def test_expired_key_of_other_type_does_not_cause_wrongtype(p: Pair) -> None:
    p.w("LPUSH", "k", "a")
    p.w("PEXPIRE", "k", "5")
    assert p.w("SET", "k", "v", now=NOW + 5) == "OK"
    assert p.w("SADD", "k", "x", now=NOW + 5) == WRONGTYPE
    p.w("PEXPIRE", "k", "5", now=NOW + 5)
    assert p.w("SADD", "k", "x", now=NOW + 10) == 1


def test_multi_key_commands_delete_every_expired_key(p: Pair) -> None:
    p.w("MSET", "a", "1", "b", "2")
    p.w("PEXPIRE", "a", "1")
    p.w("PEXPIRE", "b", "1")
    cmds = p.logged("MSET", "a", "3", "b", "4", now=NOW + 1)
    assert cmds == [[b"DEL", b"a"], [b"DEL", b"b"], [b"MSET", b"a", b"3", b"b", b"4"]]


def test_apply_never_reads_a_clock() -> None:
    follower = StateMachine()
    follower.apply([[b"SET", b"k", b"v", b"PXAT", b"1"]], LOG)  # long past
    assert follower.data[b"k"] == b"v" and follower.expires[b"k"] == 1
    follower.apply([[b"PEXPIREAT", b"k", b"2"]], LOG)
    assert follower.expires[b"k"] == 2  # a past TTL is stored, never acted on


def test_apply_refuses_commands_that_need_a_clock() -> None:
    sm = StateMachine()
    replies = sm.apply(
        [[b"SET", b"k", b"v", b"EX", b"10"], [b"EXPIRE", b"k", b"1"], [b"SETEX", b"k", b"1", b"v"]],
        LOG,
    )
    assert all(isinstance(r, RespError) for r in replies)
    assert sm.data == {}


def test_reads_at_the_same_time_agree_on_expiry(p: Pair) -> None:
    p.w("SET", "k", "v", "PX", "1000")
    assert p.follower.read([b"GET", b"k"], NOW + 999) == b"v"
    assert p.follower.read([b"GET", b"k"], NOW + 1000) is None
    assert p.follower.read([b"TTL", b"k"], NOW + 1000) == -2
    assert p.follower.read([b"EXISTS", b"k"], NOW + 1000) == 0
    assert p.follower.read([b"KEYS", b"*"], NOW + 1000) == []


def test_expired_keys_and_expire_cycle(p: Pair) -> None:
    for i in range(10):
        p.w("SET", f"k{i}", "v", "PX", str(10 + i))
    p.w("SET", "forever", "v")
    sm = p.leader
    assert sm.expired_keys(NOW + 9, 100) == []
    assert sm.expired_keys(NOW + 12, 100) == [b"k0", b"k1", b"k2"]
    assert sm.expired_keys(NOW + 12, 2) == [b"k0", b"k1"]
    assert sm.expired_keys(NOW + 12, 100) == [b"k0", b"k1", b"k2"]  # not consumed
    p.w("PERSIST", "k0")
    p.w("PEXPIRE", "k1", "1000")
    p.w("DEL", "k2")
    assert sm.expired_keys(NOW + 12, 100) == []  # stale heap entries skipped
    cmds = sm.expire_cycle(NOW + 15, 2)
    assert cmds == [[b"DEL", b"k3"], [b"DEL", b"k4"]]
    p.follower.apply(cmds, LOG)
    assert p.follower.digest() == sm.digest()
    assert sm.expire_cycle(NOW + 16, 100) == [[b"DEL", b"k5"], [b"DEL", b"k6"]]
    assert sm.expire_cycle(NOW + 16, 100) is None


def test_expired_keys_heap_stays_bounded() -> None:
    sm = StateMachine()
    sm.execute([b"SET", b"k", b"v", b"PX", b"10"], ApplyContext(NOW))
    sm.expired_keys(NOW, 1)  # builds the heap
    for i in range(1000):
        sm.execute([b"PEXPIRE", b"k", b"%d" % (10 + i)], ApplyContext(NOW))
    assert sm.expiry_heap is None or len(sm.expiry_heap) <= 2 * len(sm.expires) + 65
    assert sm.expired_keys(NOW + 2000, 10) == [b"k"]


# --- MULTI/EXEC ------------------------------------------------------------------


def test_transaction_is_one_entry_and_errors_do_not_stop_it(p: Pair) -> None:
    p.w("SET", "s", "text")
    queued = [
        _argv(("INCR", "n")),
        _argv(("INCR", "s")),  # fails at run time
        _argv(("GET", "n")),  # reads see earlier writes
        _argv(("SET", "k", "v", "EX", "5")),
        _argv(("SADD", "x", "a")),
        _argv(("SADD", "x", "a")),  # no-op, not logged
    ]
    replies, entry = p.leader.execute_transaction(queued, ApplyContext(NOW))
    assert replies == [1, NOT_INTEGER, b"1", "OK", 1, 0]
    assert entry == [
        [b"INCR", b"n"],
        [b"SET", b"k", b"v", b"PXAT", b"%d" % (NOW + 5000)],
        [b"SADD", b"x", b"a"],
    ]
    p.follower.apply(entry, LOG)
    assert p.follower.digest() == p.leader.digest()


def test_transaction_without_changes_logs_nothing(p: Pair) -> None:
    queued = [_argv(("GET", "a")), _argv(("DEL", "a"))]
    replies, entry = p.leader.execute_transaction(queued, ApplyContext(NOW))
    assert replies == [None, 0] and entry is None


# --- snapshot, digest ------------------------------------------------------------


def _populate(p: Pair) -> None:
    p.w("SET", "s", "v", "EX", "100")
    p.w("RPUSH", "l", "a", "b", "c")
    p.w("SADD", "set", "x", "y")
    p.w("HSET", "h", "f", "1", "g", "2")
    p.w("INCR", "n")


def test_snapshot_restore_round_trip(p: Pair) -> None:
    _populate(p)
    copy = StateMachine()
    copy.restore(p.leader.snapshot())
    assert copy.digest() == p.leader.digest()
    assert copy.data == p.leader.data and copy.expires == p.leader.expires
    assert copy.read([b"LRANGE", b"l", b"0", b"-1"], NOW) == [b"a", b"b", b"c"]
    # the restored machine keeps working as a follower
    _reply, cmds = p.leader.execute([b"LPUSH", b"l", b"z"], ApplyContext(NOW))
    copy.apply(cmds, LOG)
    assert copy.digest() == p.leader.digest()


def test_snapshot_of_empty_state() -> None:
    sm = StateMachine()
    other = StateMachine()
    other.restore(sm.snapshot())
    assert other.data == {} and other.digest() == sm.digest()


def test_restore_rejects_unknown_version() -> None:
    import msgpack

    with pytest.raises(ValueError):
        StateMachine().restore(msgpack.packb([99, []]))


def test_snapshot_format_version_1_is_kept() -> None:
    """Snapshots on disk stay loadable (versions 1 and 2; 3 is written): version 1 rows are [key, tag, payload,
    expire_ms|None] with tags 0 string, 1 list, 2 set, 3 hash (flat field, value)."""
    from collections import deque

    import msgpack

    rows = [
        [b"s", 0, b"v", None],
        [b"l", 1, [b"a", b"b"], 1_900_000_000_000],
        [b"t", 2, [b"m"], None],
        [b"h", 3, [b"f", b"1", b"g", b"2"], None],
    ]
    raw = msgpack.packb([1, rows], use_bin_type=True)
    sm = StateMachine()
    sm.restore(raw)
    hash_ = {b"f": b"1", b"g": b"2"}
    assert sm.data == {b"s": b"v", b"l": deque([b"a", b"b"]), b"t": {b"m"}, b"h": hash_}
    assert sm.expires == {b"l": 1_900_000_000_000}
    # written as version 3: string keys without a TTL as one flat array, the other rows, locks
    version, strings, rest, locks = msgpack.unpackb(sm.snapshot())
    assert (version, strings, locks) == (3, [b"s", b"v"], [])
    assert sorted(rest) == sorted(rows[1:])
    again = StateMachine()
    again.restore(sm.snapshot())
    assert (again.data, again.expires, again.digest()) == (sm.data, sm.expires, sm.digest())
    v2 = StateMachine()
    v2.restore(msgpack.packb([2, rows, []], use_bin_type=True))  # version 2: rows and locks
    assert v2.digest() == sm.digest()
    with pytest.raises(ValueError, match="unknown snapshot version"):
        StateMachine().restore(msgpack.packb([3, rows], use_bin_type=True))
    with pytest.raises(ValueError, match="unknown value type 9"):
        StateMachine().restore(msgpack.packb([1, [[b"x", 9, b"", None]]], use_bin_type=True))


def test_digest_is_order_independent_and_sensitive() -> None:
    a, b = StateMachine(), StateMachine()
    a.apply(
        [
            [b"SADD", b"s", b"1", b"2", b"3"],
            [b"SET", b"k", b"v"],
            [b"HSET", b"h", b"a", b"1", b"b", b"2"],
        ],
        LOG,
    )
    b.apply(
        [
            [b"HSET", b"h", b"b", b"2", b"a", b"1"],
            [b"SET", b"k", b"v"],
            [b"SADD", b"s", b"3", b"2", b"1"],
        ],
        LOG,
    )
    assert a.digest() == b.digest()
    b.apply([[b"PEXPIREAT", b"k", b"5"]], LOG)
    assert a.digest() != b.digest()
    c = StateMachine()
    c.apply([[b"RPUSH", b"l", b"a", b"b"]], LOG)
    d = StateMachine()
    d.apply([[b"RPUSH", b"l", b"b", b"a"]], LOG)
    assert c.digest() != d.digest()  # list order matters
    e, f = StateMachine(), StateMachine()
    e.apply([[b"SET", b"k", b"ab"]], LOG)
    f.apply([[b"SADD", b"k", b"ab"]], LOG)
    assert e.digest() != f.digest()  # the type matters


def test_info_helpers(p: Pair) -> None:
    _populate(p)
    sm = p.leader
    assert sm.dbsize == 5 and sm.expires_count == 1
    assert sm.keyspace_info() == "db0:keys=5,expires=1,avg_ttl=0"


# --- SCAN ------------------------------------------------------------------------


def _full_scan(sm: StateMachine, *opts: object, now: int = NOW) -> list[bytes]:
    cursor = b"0"
    out: list[bytes] = []
    for _ in range(100_000):
        cursor, keys = sm.read([b"SCAN", cursor, *_argv(opts)], now)
        out.extend(keys)
        if cursor == b"0":
            return out
    raise AssertionError("scan did not terminate")


def test_scan_returns_every_key(p: Pair) -> None:
    for i in range(500):
        p.w("SET", f"key:{i}", "v")
    keys = _full_scan(p.leader, "COUNT", "7")
    assert set(keys) == {b"key:%d" % i for i in range(500)}


def test_scan_match_type_and_expired(p: Pair) -> None:
    p.w("MSET", "a:1", "x", "a:2", "x", "b:1", "x")
    p.w("SADD", "a:set", "m")
    p.w("SET", "a:gone", "x", "PX", "1")
    assert sorted(_full_scan(p.leader, "MATCH", "a:*", now=NOW + 1)) == [b"a:1", b"a:2", b"a:set"]
    assert _full_scan(p.leader, "TYPE", "set") == [b"a:set"]
    assert sorted(_full_scan(p.leader, "MATCH", "a:?", "COUNT", "1")) == [b"a:1", b"a:2"]


def test_scan_errors(p: Pair) -> None:
    assert p.r("SCAN", "abc") == err("ERR invalid cursor")
    assert p.r("SCAN", "18446744073709551616") == err("ERR invalid cursor")
    assert p.r("SCAN", "0", "COUNT", "0") == SYNTAX_ERROR
    assert p.r("SCAN", "0", "COUNT") == SYNTAX_ERROR
    assert p.r("SCAN", "0", "FOO", "1") == SYNTAX_ERROR
    assert p.r("SCAN", "0", "COUNT", "x") == NOT_INTEGER
    assert p.r("SCAN", "18446744073709551615") == [b"0", []]


def test_scan_guarantee_under_concurrent_inserts_and_deletes() -> None:
    rng = random.Random(5)
    sm = StateMachine()
    stable = {b"stable:%d" % i for i in range(300)}
    for key in stable:
        sm.apply([[b"SET", key, b"v"]], LOG)
    churn = [b"churn:%d" % i for i in range(3000)]
    seen: list[bytes] = []
    cursor = b"0"
    steps = 0
    while True:
        cursor, keys = sm.read([b"SCAN", cursor, b"COUNT", b"5"], NOW)
        seen.extend(keys)
        # between calls: insert many (the index grows), delete many (it shrinks)
        for _ in range(rng.randint(0, 60)):
            sm.apply([[b"SET", rng.choice(churn), b"v"]], LOG)
        for _ in range(rng.randint(0, 60)):
            sm.apply([[b"DEL", rng.choice(churn)]], LOG)
        steps += 1
        assert steps < 100_000
        if cursor == b"0":
            break
    assert stable <= set(seen)


def test_scan_index_tracks_every_key_change() -> None:
    sm = StateMachine()
    sm.read([b"SCAN", b"0"], NOW)  # builds the index
    sm.execute([b"SET", b"a", b"1"], ApplyContext(NOW))
    sm.execute([b"INCR", b"n"], ApplyContext(NOW))
    sm.execute([b"APPEND", b"ap", b"x"], ApplyContext(NOW))
    sm.execute([b"RPUSH", b"l", b"x"], ApplyContext(NOW))
    sm.execute([b"SADD", b"s", b"x"], ApplyContext(NOW))
    sm.execute([b"HSET", b"h", b"f", b"v"], ApplyContext(NOW))
    sm.execute([b"HINCRBY", b"h2", b"f", b"1"], ApplyContext(NOW))
    sm.execute([b"MSET", b"m1", b"1", b"m2", b"2"], ApplyContext(NOW))
    sm.execute([b"SET", b"x", b"1", b"NX", b"PX", b"5"], ApplyContext(NOW))
    sm.execute([b"SETEX", b"y", b"5", b"v"], ApplyContext(NOW))
    assert set(_full_scan(sm)) == set(sm.data)
    sm.execute([b"LPOP", b"l"], ApplyContext(NOW))
    sm.execute([b"SREM", b"s", b"x"], ApplyContext(NOW))
    sm.execute([b"HDEL", b"h", b"f"], ApplyContext(NOW))
    sm.execute([b"GETDEL", b"a"], ApplyContext(NOW))
    sm.execute([b"INCR", b"x"], ApplyContext(NOW + 5))  # x expired: DEL then a new key
    assert set(_full_scan(sm, now=NOW + 5)) == set(sm.data)
    assert sm.scan_index is not None and sorted(sm.scan_index._all_keys()) == sorted(sm.data)
    sm.execute([b"FLUSHALL"], ApplyContext(NOW))
    assert _full_scan(sm) == []


def test_scan_index_grows_and_shrinks() -> None:
    index = ScanIndex()
    keys = [b"k%d" % i for i in range(5000)]
    for key in keys:
        index.add(key)
    index.add(keys[0])  # already there: indexed once
    assert len(index) == 5000
    cursor, seen = 0, []
    while True:
        cursor, batch = index.scan(cursor, 100)
        seen.extend(batch)
        if cursor == 0:
            break
    assert sorted(seen) == sorted(keys)
    index.discard(b"not indexed")
    for key in keys[:4990]:
        index.discard(key)
        index.discard(key)  # twice: the second finds nothing
    assert len(index) == 10 and sorted(index._all_keys()) == sorted(keys[4990:])
    assert sorted(ScanIndex(keys).scan(0, 10**6)[1]) == sorted(keys)  # built at once: the same keys


def test_cas_swaps_only_when_the_value_matches_and_replicates_deterministically():
    from replikv.core.replies import WRONGTYPE
    from replikv.kv.state_machine import StateMachine

    leader, follower = StateMachine(), StateMachine()
    log = []
    for argv in ([b"SET", b"k", b"a"], [b"CAS", b"k", b"b", b"c"], [b"CAS", b"k", b"a", b"b"],
                 [b"CAS", b"missing", b"a", b"b"], [b"LPUSH", b"l", b"x"]):
        _, cmds = leader.execute(argv, ApplyContext(1_000))
        if cmds:
            log.append(cmds)
    assert leader.read([b"GET", b"k"], 1_000) == b"b"
    assert leader.execute([b"CAS", b"k", b"a", b"z"], ApplyContext(1_000))[0] == 0
    assert leader.execute([b"CAS", b"l", b"x", b"y"], ApplyContext(1_000))[0] == WRONGTYPE
    for cmds in log:
        follower.apply(cmds, LOG)
    assert follower.digest() == leader.digest()


# --- the apply context and the one table ------------------------------------------


def test_the_apply_context_reaches_the_operation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write entry point dispatches through kv.commands.COMMANDS and hands
    the operation the caller's ApplyContext (origin, log index, version, HLC),
    which is where a merging mode will need them."""
    from replikv.kv.commands import COMMANDS, CommandSpec

    seen: list[ApplyContext] = []

    def probe(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> object:
        seen.append(ctx)
        sm.data[argv[1]] = b"%s@%d" % (ctx.origin.encode(), ctx.log_index)
        sm.dirty += 1
        return 1

    spec = CommandSpec("probe", 2, frozenset({"write"}), 1, 1, 1, apply=probe)
    monkeypatch.setitem(COMMANDS, b"PROBE", spec)
    follower = StateMachine()
    ctx = ApplyContext(None, origin="n2", log_index=7, version=(("n2", 3),), hlc=42)
    assert follower.apply([[b"PROBE", b"k"]], ctx) == [1]
    assert seen == [ctx] and seen[0] is ctx
    assert follower.data[b"k"] == b"n2@7"
    raft = ApplyContext(NOW, origin="n1", log_index=9)
    assert follower.apply([[b"probe", b"k"]], raft) == [1] and seen[-1] is raft
    leader = StateMachine()
    here = ApplyContext(NOW, origin="n1")
    reply, cmds = leader.execute([b"PROBE", b"k"], here)
    assert reply == 1 and cmds == [[b"PROBE", b"k"]] and seen[-1] is here
    arity = RespError("ERR wrong number of arguments for 'probe' command")
    assert leader.prepare([b"PROBE"], here) == (arity, None)
    assert follower.apply([[b"PROBE"]], ctx) == [arity]


def test_apply_without_a_time_refuses_what_needs_one() -> None:
    """EXPIREDUE and a read need the entry's time; without one they are refused."""
    from replikv.kv.state_machine import EXPIRE_DUE

    sm = StateMachine()
    sm.apply([[b"SET", b"k", b"v", b"PXAT", b"5"]], LOG)
    needs_clock = RespError("ERR command needs a clock and cannot be applied from the log")
    assert sm.apply([[EXPIRE_DUE, b"k"], [b"GET", b"k"]], LOG) == [needs_clock, needs_clock]
    assert b"k" in sm.data
    assert sm.apply([[b"NOSUCH", b"k"]], LOG) == [
        RespError("ERR unknown command 'NOSUCH', with args beginning with: 'k' ")
    ]
    assert sm.apply([[EXPIRE_DUE, b"k"], [b"GET", b"k"]], ApplyContext(10)) == ["OK", None]
    assert b"k" not in sm.data


def test_apply_entries_is_apply_then_touch_commands_per_entry() -> None:
    """A follower's one pass over a frame's entries (``apply_entries``) leaves the data and
    the WATCH change index as applying then touching each entry does."""
    entries = [
        [1, [[b"SET", b"a", b"1"]]],
        [1, [[b"set", b"b", b"2"]]],                            # the client's spelling, logged as sent
        [1, [[b"SET", b"c", b"3", b"PXAT", b"99999999999999"]]],
        [1, [[b"MSET", b"d", b"4", b"e", b"5"]]],               # several keys: not the one-key way
        [1, [[b"LPUSH", b"l", b"x"], [b"SET", b"a", b"6"]]],    # a block: one entry, two commands
        [1, [[b"INCR", b"l"]]],                                 # WRONGTYPE: nothing changes, key touched
        [1, [[b"DEL", b"b", b"d"]]],
        [1, [[b"EXPIREDUE", b"c"]]],                            # log-only, not in the command table
        [2, [[b"SET", b"f", b"7"]], 1],                          # an entry that waited for a replica
        [2, [[b"FLUSHALL"]]],
        [2, [[b"SET", b"g", b"8"]]],
    ]
    for upto in (len(entries) - 2, len(entries)):  # before and after the FLUSHALL
        one_pass, reference = StateMachine(), StateMachine()
        one_pass.apply_entries(entries[:upto], 5, LOG)
        for index, entry in enumerate(entries[:upto], 5):
            reference.apply(entry[1], LOG)
            reference.changes.touch_commands(entry[1], index)
        assert one_pass.digest() == reference.digest()
        assert one_pass.changes.state() == reference.changes.state()
    assert one_pass.changes.last == {b"g": 15} and one_pass.changes.floor == 14
