"""Random sequences of the string, bit and key commands against redis-server 7.0:
every reply equal to Redis's, the three replikv replicas equal after each command."""

from __future__ import annotations

import random

import pytest

from tests.differential.oracle import Differential

KEYS = [b"a", b"b", b"c", b"d"]


def _value(rng: random.Random) -> bytes:
    return rng.choice([
        b"", b"0", b"7", b"-12", b"3.5", b"1e3", b"0x10", b"abc", b"foobar",
        bytes(rng.randrange(256) for _ in range(rng.randrange(0, 6))),
    ])


def _int(rng: random.Random) -> bytes:
    return b"%d" % rng.choice([0, 1, 2, 3, 5, 7, 8, 13, 40, -1, -2, -5, -100])


def _command(rng: random.Random) -> list[bytes]:
    k, k2 = rng.choice(KEYS), rng.choice(KEYS)
    choices = [
        lambda: [b"SET", k, _value(rng)],
        lambda: [b"INCRBYFLOAT", k, rng.choice([b"1.5", b"-0.25", b"1e2", b"0.1", b"x"])],
        lambda: [b"GETEX", k, *rng.choice([[], [b"PERSIST"], [b"EX", b"1000"], [b"EXAT", b"1"]])],
        lambda: [b"SETRANGE", k, b"%d" % rng.randrange(0, 10), _value(rng)],
        lambda: [b"GETRANGE", k, _int(rng), _int(rng)],
        lambda: [b"SETBIT", k, b"%d" % rng.randrange(0, 40), rng.choice([b"0", b"1"])],
        lambda: [b"GETBIT", k, b"%d" % rng.randrange(0, 40)],
        lambda: [b"BITCOUNT", k, *rng.choice([[], [_int(rng), _int(rng)],
                                               [_int(rng), _int(rng), b"BIT"]])],
        lambda: [b"BITPOS", k, rng.choice([b"0", b"1"]),
                 *rng.choice([[], [_int(rng)], [_int(rng), _int(rng)],
                              [_int(rng), _int(rng), b"BIT"]])],
        lambda: [b"BITOP", rng.choice([b"AND", b"OR", b"XOR"]), k, k2, rng.choice(KEYS)],
        lambda: [b"BITOP", b"NOT", k, k2],
        lambda: [b"MSETNX", k, _value(rng), k2, _value(rng)],
        lambda: [b"RENAME", k, k2],
        lambda: [b"RENAMENX", k, k2],
        lambda: [b"COPY", k, k2, *rng.choice([[], [b"REPLACE"]])],
        lambda: [b"LCS", k, k2, *rng.choice([[], [b"LEN"], [b"IDX", b"WITHMATCHLEN"]])],
        lambda: [b"OBJECT", b"ENCODING", k],
        lambda: [b"APPEND", k, _value(rng)],
        lambda: [b"RPUSH", k, _value(rng)],
        lambda: [b"SADD", k, _value(rng)],
        lambda: [b"GET", k],
        lambda: [b"STRLEN", k],
        lambda: [b"TYPE", k],
        lambda: [b"EXISTS", k, k2],
        lambda: [b"DEL", k],
    ]
    return rng.choice(choices)()


@pytest.mark.parametrize("seed", range(6))
def test_random_sequences(diff: Differential, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        argv = _command(rng)
        if argv[:2] == [b"OBJECT", b"ENCODING"] and diff.redis.call(b"TYPE", argv[2]) == b"string":
            continue  # Redis's string encoding depends on the history (module docstring)
        diff.run(*argv)
