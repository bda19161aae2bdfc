"""StateMachine.prepare: the one rewrite path.

- prepare (exact) then apply without a time == execute: same reply, same state;
- prepare(exact=False) then apply at the same timestamp == execute
  (the raft path), and applying the entry on a replica gives the same state;
- prepare never changes the state;
- a prepared raft entry stays correct when other entries apply before it
  (the reason exact=False exists).
"""

from __future__ import annotations

import random

import pytest

from replikv.core.replies import RespError
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import EXPIRE_DUE, StateMachine

NOW = 1_700_000_000_000
LOG = ApplyContext(None)  # a follower applying a leader-follower log: no clock

KEYS = [b"a", b"b", b"c"]


def _random_command(rng: random.Random) -> list[bytes]:
    k = rng.choice(KEYS)
    n = b"%d" % rng.randrange(-3, 30)
    choices = [
        [b"SET", k, n],
        [b"SET", k, n, b"PX", b"%d" % rng.randrange(1, 50)],
        [b"SET", k, n, rng.choice([b"NX", b"XX"]), b"EX", b"1"],
        [b"SET", k, n, b"GET", b"PX", b"20"],
        [b"SET", k, n, b"KEEPTTL"],
        [b"SETEX", k, b"2", n],
        [b"PSETEX", k, n, n],
        [b"INCR", k],
        [b"INCRBY", k, n],
        [b"DECR", k],
        [b"APPEND", k, b"x"],
        [b"DEL", k, rng.choice(KEYS)],
        [b"MSET", k, n, rng.choice(KEYS), n],
        [b"EXPIRE", k, n],
        [b"PEXPIRE", k, n, rng.choice([b"NX", b"XX", b"GT", b"LT"])],
        [b"PEXPIREAT", k, b"%d" % (NOW + rng.randrange(-10, 100))],
        [b"PERSIST", k],
        [b"LPUSH", k, n],
        [b"RPOP", k],
        [b"SADD", k, n],
        [b"HSET", k, b"f", n],
        [b"HINCRBY", k, b"f", n],
        [b"GETDEL", k],
        [b"INCRBYFLOAT", k, rng.choice([b"1.5", b"-0.1", b"x", b"1e3"])],
        [b"GETEX", k, b"PX", b"%d" % rng.randrange(1, 50)],
        [b"GETEX", k, b"PXAT", b"%d" % (NOW + rng.randrange(-10, 100))],
        [b"GETEX", k, rng.choice([b"PERSIST", b"EX"]), b"abc"],
        [b"SETRANGE", k, b"2", b"xy"],
        [b"MSETNX", k, n, rng.choice(KEYS), n],
        [b"SETBIT", k, b"%d" % rng.randrange(0, 20), rng.choice([b"0", b"1"])],
        [b"BITOP", rng.choice([b"OR", b"NOT"]), k, rng.choice(KEYS)],
        [rng.choice([b"RENAME", b"RENAMENX"]), k, rng.choice(KEYS)],
        [b"COPY", k, rng.choice(KEYS), b"REPLACE"],
        [b"SET", k],  # wrong arity
        [b"SET", k, n, b"EX", b"0"],  # invalid expire time
        # issue 12: the rest of the list, set and hash families
        [b"RPUSH", k, n, b"x"],
        [b"LSET", k, n, b"y"],
        [b"LINSERT", k, rng.choice([b"BEFORE", b"AFTER"]), b"x", n],
        [b"LREM", k, n, b"x"],
        [b"LTRIM", k, b"1", n],
        [b"LMOVE", k, rng.choice(KEYS), b"LEFT", b"RIGHT"],
        [b"LMPOP", b"2", k, rng.choice(KEYS), b"LEFT", b"COUNT", b"2"],
        [b"LPUSHX", k, n],
        [b"SADD", k, n, b"x", b"y"],
        [b"SPOP", k],
        [b"SPOP", k, n],
        [b"SMOVE", k, rng.choice(KEYS), n],
        [b"SINTERSTORE", k, rng.choice(KEYS), rng.choice(KEYS)],
        [b"SUNIONSTORE", k, rng.choice(KEYS), rng.choice(KEYS)],
        [b"SDIFFSTORE", k, rng.choice(KEYS), rng.choice(KEYS)],
        [b"HSETNX", k, n, n],
        [b"HMSET", k, b"f", n],
        [b"HINCRBYFLOAT", k, b"f", rng.choice([b"0.1", b"1e3", n, b"x"])],
    ]
    return rng.choice(choices)


@pytest.mark.parametrize("seed", range(40))
def test_prepare_then_apply_equals_execute(seed: int) -> None:
    rng = random.Random(seed)
    ref, sm = StateMachine(), StateMachine()
    now = NOW
    for _ in range(300):
        now += rng.randrange(0, 15)
        argv = _random_command(rng)
        want_reply, want_cmds = ref.execute(list(argv), ApplyContext(now))
        before = sm.digest()
        err, cmds = sm.prepare(list(argv), ApplyContext(now))
        assert sm.digest() == before, "prepare must not change the state"
        if err is not None:
            assert err == want_reply and want_cmds is None
            continue
        assert cmds is not None
        replies = sm.apply(cmds, LOG)
        assert replies[-1] == want_reply, argv
        assert sm.digest() == ref.digest(), argv


@pytest.mark.parametrize("seed", range(40))
def test_raft_path_equals_execute(seed: int) -> None:
    """prepare(exact=False) + apply at the entry time on the leader and a replica."""
    rng = random.Random(1000 + seed)
    ref, leader, replica = StateMachine(), StateMachine(), StateMachine()
    now = NOW
    for _ in range(300):
        now += rng.randrange(0, 15)
        argv = _random_command(rng)
        want_reply, _ = ref.execute(list(argv), ApplyContext(now))
        err, cmds = leader.prepare(list(argv), ApplyContext(now), exact=False)
        if err is not None:
            assert err == want_reply
            continue
        assert cmds is not None and len(cmds) == 1
        assert leader.apply(cmds, ApplyContext(now))[-1] == want_reply, argv
        replica.apply(cmds, ApplyContext(now))
        assert leader.digest() == ref.digest() == replica.digest(), argv


def test_deterministic_command_is_prepared_as_sent() -> None:
    sm = StateMachine()
    argv = [b"INCR", b"n"]
    err, cmds = sm.prepare(argv, ApplyContext(NOW))
    assert err is None and cmds is not None and cmds[0] is argv


def test_prepare_of_a_read_is_none_and_errors_are_early() -> None:
    sm = StateMachine()
    assert sm.prepare([b"GET", b"k"], ApplyContext(NOW)) == (None, None)
    err, cmds = sm.prepare([b"SET", b"k", b"v", b"NX", b"XX"], ApplyContext(NOW))
    assert isinstance(err, RespError) and cmds is None
    err, cmds = sm.prepare([b"EXPIRE", b"k", b"x"], ApplyContext(NOW))
    assert isinstance(err, RespError) and cmds is None


def test_relative_ttl_is_absolute_and_keeps_conditions() -> None:
    sm = StateMachine()
    argv = [b"SET", b"k", b"v", b"NX", b"GET", b"EX", b"10"]
    _, cmds = sm.prepare(argv, ApplyContext(NOW), exact=False)
    assert cmds == [[b"SET", b"k", b"v", b"NX", b"GET", b"PXAT", b"%d" % (NOW + 10_000)]]
    _, cmds = sm.prepare([b"EXPIRE", b"k", b"5", b"GT"], ApplyContext(NOW), exact=False)
    assert cmds == [[b"PEXPIREAT", b"k", b"%d" % (NOW + 5000), b"GT"]]


def test_raft_entry_prepared_before_an_intervening_write_stays_correct() -> None:
    """k is expired at prepare time; an earlier entry re-sets it before INCR applies.
    exact=False leaves expiry to apply time, so the INCR sees the new value."""
    sm = StateMachine()
    sm.apply([[b"SET", b"k", b"5", b"PXAT", b"%d" % (NOW - 1)]], ApplyContext(NOW - 10))
    _, first = sm.prepare([b"SET", b"k", b"41"], ApplyContext(NOW), exact=False)
    _, second = sm.prepare([b"INCR", b"k"], ApplyContext(NOW), exact=False)
    assert first is not None and second is not None
    sm.apply(first, ApplyContext(NOW))
    assert sm.apply(second, ApplyContext(NOW)) == [42]


def test_due_expire_deletes_at_apply_and_expire_due_entry() -> None:
    sm = StateMachine()
    entry = [[b"SET", b"k", b"v"], [b"SET", b"t", b"v", b"PXAT", b"%d" % (NOW + 5)]]
    sm.apply(entry, ApplyContext(NOW))
    _, cmds = sm.prepare([b"EXPIRE", b"k", b"-1"], ApplyContext(NOW), exact=False)
    assert cmds is not None
    assert sm.apply(cmds, ApplyContext(NOW)) == [1]
    assert b"k" not in sm.data
    sm.apply([[EXPIRE_DUE, b"t"]], ApplyContext(NOW + 1))
    assert b"t" in sm.data  # not due yet at that entry's time
    sm.apply([[EXPIRE_DUE, b"t"]], ApplyContext(NOW + 5))
    assert b"t" not in sm.data


def test_reads_inside_a_raft_entry_are_served_at_the_entry_time() -> None:
    sm = StateMachine()
    replies = sm.apply([[b"SET", b"k", b"1"], [b"GET", b"k"], [b"INCR", b"k"]], ApplyContext(NOW))
    assert replies == ["OK", b"1", 2] or replies[1:] == [b"1", 2]
