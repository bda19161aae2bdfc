"""Multi-leader writes on one node answer as Redis does: random commands go to
redis-server and through kv/crdt_writes.py (+ the store and the view of
kv/crdt_view.py); replies and every key's contents must agree."""

from __future__ import annotations

import random

import hiredis
import pytest

from replikv.core.crdt import CrdtStore
from replikv.kv.crdt_view import materialize
from replikv.kv.crdt_writes import translate
from replikv.kv.state_machine import StateMachine
from tests.differential.oracle import RedisServer, _normal, _parsed

KEYS = [b"k1", b"k2", b"k3"]
VALS = [b"1", b"a", b"b", b"10", b"x"]


def _cmd(r: random.Random) -> list[bytes]:
    k, v = r.choice(KEYS), r.choice(VALS)
    return r.choice([
        [b"SET", k, v], [b"SET", k, v, b"NX", b"GET"], [b"SET", k, v, b"XX"], [b"SETNX", k, v],
        [b"GETSET", k, v], [b"GETDEL", k], [b"MSET", k, v, r.choice(KEYS), v], [b"MSETNX", k, v],
        [b"APPEND", k, v], [b"SETRANGE", k, b"2", v], [b"INCR", k], [b"DECRBY", k, b"3"],
        [b"INCRBY", k, b"x"], [b"DEL", k, r.choice(KEYS)], [b"UNLINK", k], [b"PERSIST", k],
        [b"SADD", k, v, r.choice(VALS)], [b"SREM", k, v], [b"SMOVE", k, r.choice(KEYS), v],
        [b"HSET", k, v, v], [b"HMSET", k, v, b"2"], [b"HSETNX", k, v, b"3"], [b"HDEL", k, v],
        [b"HINCRBY", k, v, b"5"], [b"LPUSH", k, v, b"z"], [b"RPUSH", k, v], [b"LPUSHX", k, v],
        [b"RPUSHX", k, v], [b"LPOP", k], [b"RPOP", k, b"2"], [b"LSET", k, b"0", v],
        [b"LSET", k, b"-1", v], [b"LINSERT", k, b"BEFORE", v, b"i"],
        [b"LINSERT", k, b"AFTER", v, b"j"], [b"LREM", k, b"-1", v], [b"LREM", k, b"0", v],
        [b"LTRIM", k, b"1", b"-2"], [b"LTRIM", k, b"-1", b"5"],
        [b"LMPOP", b"2", k, r.choice(KEYS), b"RIGHT", b"COUNT", b"2"],
        [b"LMOVE", k, r.choice(KEYS), b"LEFT", b"RIGHT"], [b"RPOPLPUSH", k, r.choice(KEYS)],
    ])


def _contents(read) -> list:
    out = []
    for k in KEYS:
        t = read(b"TYPE", k)
        t = t.decode() if isinstance(t, bytes) else t
        reader = {"string": [b"GET", k], "set": [b"SMEMBERS", k], "hash": [b"HGETALL", k],
                  "list": [b"LRANGE", k, b"0", b"-1"]}.get(t)
        out.append((t, None if reader is None else _normal(read(*reader), "pairs" if t == "hash" else t == "set")))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_random_writes_answer_as_redis(redis_oracle: RedisServer, seed: int) -> None:
    assert redis_oracle.call("FLUSHALL") == b"OK"
    rng = random.Random(seed)
    store, view = CrdtStore(), StateMachine()
    seq = 0
    for _ in range(80):
        argv = _cmd(rng)
        expected = _normal(redis_oracle.call(*argv), False)
        muts, reply = translate(store, argv, 10**12, rng)
        if muts:
            seq += 1
            materialize(store, view, store.apply("n1", seq, seq, dict(store.vv), muts))
        got = _normal(_parsed(reply), False)
        if isinstance(expected, tuple) and isinstance(got, tuple):
            assert got[1].split()[0] == expected[1].split()[0], argv
        else:
            assert got == expected, argv
        assert _contents(lambda *a: _parsed(view.read(list(a), 10**12))) == _contents(
            lambda *a: redis_oracle.call(*a)), argv
    assert hiredis  # the oracle's reader
