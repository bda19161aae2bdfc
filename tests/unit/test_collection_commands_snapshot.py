"""Snapshots of states built by the list, set and hash commands of issue 12
round-trip: same digest, same answers (these families add no value type)."""

from __future__ import annotations

from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine

NOW = 1_700_000_000_000

SETUP = [
    [b"RPUSH", b"l", b"a", b"b", b"c", b"a"],
    [b"LINSERT", b"l", b"BEFORE", b"b", b"x"],
    [b"LSET", b"l", b"0", b"A"],
    [b"LREM", b"l", b"1", b"a"],
    [b"LMOVE", b"l", b"l2", b"LEFT", b"RIGHT"],
    [b"LMPOP", b"1", b"l", b"RIGHT", b"COUNT", b"1"],
    [b"SADD", b"s", *[b"m%d" % i for i in range(20)]],
    [b"SADD", b"t", b"m1", b"m2", b"zz"],
    [b"SINTERSTORE", b"i", b"s", b"t"],
    [b"SUNIONSTORE", b"u", b"s", b"t"],
    [b"SDIFFSTORE", b"d", b"s", b"t"],
    [b"SPOP", b"s", b"3", b"42"],
    [b"SMOVE", b"t", b"s", b"zz"],
    [b"HSETNX", b"h", b"f", b"1"],
    [b"HMSET", b"h", b"g", b"2", b"k", b"3"],
    [b"HINCRBYFLOAT", b"h", b"f", b"0.1"],
    [b"PEXPIREAT", b"h", b"%d" % (NOW + 1000)],
]

READS = [
    [b"LRANGE", b"l", b"0", b"-1"], [b"LRANGE", b"l2", b"0", b"-1"], [b"HGETALL", b"h"],
    [b"SINTERCARD", b"2", b"s", b"u"], [b"SMISMEMBER", b"s", b"m0", b"zz"], [b"PTTL", b"h"],
    [b"HSTRLEN", b"h", b"f"], [b"LPOS", b"l", b"c"],
]


def test_snapshot_round_trip_of_the_new_commands_state() -> None:
    sm = StateMachine()
    replies = sm.apply(SETUP, ApplyContext(None))
    assert not any(isinstance(r, Exception) for r in replies), replies
    copy = StateMachine()
    copy.restore(sm.snapshot())
    assert copy.digest() == sm.digest()
    for argv in READS:
        assert copy.read(argv, NOW) == sm.read(argv, NOW), argv
    for key in (b"s", b"u", b"i", b"d", b"t"):
        assert copy.read([b"SMEMBERS", key], NOW) == sm.read([b"SMEMBERS", key], NOW), key
