"""Issue 12's string, bit and key commands: the long double helpers of kv/args.py,
what the leader logs, and that every replica reaches the same state (same
process or not, whatever Python's hash seed), snapshots included."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from replikv.core.replies import RespError
from replikv.kv.args import NOT_FLOAT, add_floats, format_float, parse_float
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine

NOW = 1_700_000_000_000
LOG = ApplyContext(None)


# --- long double ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, printed",
    [
        (b"0.1", b"0.1"), (b"1e20", b"100000000000000000000"), (b"1.5e-20", b"0"),
        (b"-0", b"0"), (b"-1.25", b"-1.25"), (b"0x10", b"16"), (b"0X1P-2", b"0.25"),
        (b"+.5", b"0.5"), (b"5.", b"5"), (b"1e-17", b"0.00000000000000001"),
        (b"-1e-18", b"0"),
        (b"0" * 5100 + b"1", b"1"),
    ],
)
def test_parse_and_format_float(text: bytes, printed: bytes) -> None:
    assert format_float(add_floats(parse_float(text), Fraction(0))) == printed


@pytest.mark.parametrize(
    "text",
    [b"", b" 1", b"1 ", b"\t1", b"abc", b"nan", b"-NaN", b"1e5000", b"1e-5000",
     b"1e99999999999999999999999", b"0x", b".", b"e5", b"1/2", b"1_0", b"1" * 5120,
     b"0x1p99999", b"\x00", b"2\x00", b"1\x001"],
)
def test_parse_float_refuses_what_strtold_refuses(text: bytes) -> None:
    with pytest.raises(RespError) as err:
        parse_float(text)
    assert err.value == NOT_FLOAT


def test_huge_values_print_every_digit() -> None:
    # 10**4900 is not a long double: the nearest one, printed exactly (4901 digits)
    printed = format_float(add_floats(parse_float(b"9" * 4900), Fraction(0)))
    assert len(printed) == 4901 and printed.startswith(b"10000000000000000000")


def test_long_double_rounding_is_not_double_rounding() -> None:
    # 0.1 + 0.2 in a C double prints 0.30000000000000004; Redis's long double prints 0.3
    assert format_float(add_floats(parse_float(b"0.1"), parse_float(b"0.2"))) == b"0.3"
    # 2**64 + 1 needs 65 bits: the long double rounds it (ties to even) to 2**64
    assert format_float(add_floats(parse_float(b"18446744073709551616"), Fraction(1))) == (
        b"18446744073709551616"
    )
    with pytest.raises(RespError, match="NaN or Infinity"):
        add_floats(parse_float(b"inf"), parse_float(b"-inf"))
    with pytest.raises(RespError, match="NaN or Infinity"):
        add_floats(parse_float(b"1.1e4932"), parse_float(b"1.1e4932"))


# --- what the leader logs ---------------------------------------------------------------


SCRIPT = [
    [b"SET", b"s", b"hello", b"EX", b"100"],
    [b"INCRBYFLOAT", b"f", b"0.1"],
    [b"INCRBYFLOAT", b"f", b"1e3"],
    [b"INCRBYFLOAT", b"s", b"1"],
    [b"GETEX", b"s", b"EX", b"50"],
    [b"GETEX", b"s", b"PERSIST"],
    [b"GETEX", b"s", b"PXAT", b"%d" % (NOW + 7)],
    [b"SETRANGE", b"s", b"10", b"world"],
    [b"SETBIT", b"b", b"13", b"1"],
    [b"BITOP", b"XOR", b"x", b"b", b"s"],
    [b"MSETNX", b"m1", b"1", b"m2", b"2"],
    [b"SADD", b"set", *[b"%d" % i for i in range(50)], b"a", b"b"],
    [b"HSET", b"h", *[b"f%d" % i for i in range(40)]],
    [b"COPY", b"set", b"set2"],
    [b"RENAME", b"h", b"h2"],
    [b"RENAMENX", b"set2", b"set3"],
    [b"COPY", b"s", b"x", b"REPLACE"],
    [b"RPUSH", b"l", b"a", b"b"],
    [b"COPY", b"l", b"l2"],
    [b"GETEX", b"f", b"EXAT", b"1"],
    [b"SET", b"gone", b"v"],
    [b"FLUSHDB", b"SYNC"],
]


def test_leader_log_reproduces_the_state_and_uses_redis_forms() -> None:
    leader, follower = StateMachine(), StateMachine()
    logged = []
    for i, argv in enumerate(SCRIPT[:-1]):
        _, cmds = leader.execute(list(argv), ApplyContext(NOW + i))
        if cmds:
            logged.extend(cmds)
            follower.apply(cmds, LOG)
        assert follower.digest() == leader.digest(), argv
    assert [b"SET", b"f", b"0.1", b"KEEPTTL"] in logged
    assert [b"SET", b"f", b"1000.09999999999999998", b"KEEPTTL"] in logged  # as Redis
    assert [b"GETEX", b"s", b"PXAT", b"%d" % (NOW + 4 + 50_000)] in logged
    assert [b"GETDEL", b"f"] in logged  # a due EXAT deletes, as Redis replicates it
    snapshot = StateMachine()
    snapshot.restore(leader.snapshot())
    assert snapshot.digest() == leader.digest()


_CHILD = """
import sys
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from tests.unit.test_strings_keys_replication import NOW, SCRIPT

sm = StateMachine()
for i, argv in enumerate(SCRIPT[:-1]):
    now = ApplyContext(NOW + i)
    err, cmds = sm.prepare(list(argv), now, exact=False)
    if cmds:
        sm.apply(cmds, now)
restored = StateMachine()
restored.restore(sm.snapshot())
assert restored.digest() == sm.digest()
print(sm.digest().hex())
"""


def test_raft_path_agrees_across_processes_and_hash_seeds() -> None:
    """prepare(exact=False)+apply in processes with different PYTHONHASHSEEDs (set
    iteration order differs) and a leader-follower leader here: one state."""
    root = Path(__file__).resolve().parents[2]
    digests = set()
    for seed in ("1", "2", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed,
                   PYTHONPATH=os.pathsep.join([str(root / "src"), str(root)]))
        out = subprocess.run([sys.executable, "-c", _CHILD], env=env, cwd=root, timeout=120,
                             capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    leader = StateMachine()
    for i, argv in enumerate(SCRIPT[:-1]):
        leader.execute(list(argv), ApplyContext(NOW + i))
    # the leader's state still holds keys that expired logically; the raft
    # replicas deleted them at apply: compare after removing them here
    for key in [k for k, when in leader.expires.items() if when <= NOW + len(SCRIPT)]:
        leader.execute([b"DEL", key], ApplyContext(NOW))
    assert digests == {leader.digest().hex()}


# --- LCS's bit-parallel table ------------------------------------------------------------


def test_lcs_rows_equal_the_dynamic_programming_table() -> None:
    from replikv.kv.types.strings import _lcs_at, _lcs_rows

    rng = random.Random(5)
    for _ in range(500):
        a = bytes(rng.choice(b"abc") for _ in range(rng.randrange(0, 14)))
        b = bytes(rng.choice(b"abcd") for _ in range(rng.randrange(0, 14)))
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                if a[i - 1] == b[j - 1]:
                    table[i][j] = table[i - 1][j - 1] + 1
                else:
                    table[i][j] = max(table[i - 1][j], table[i][j - 1])
        rows = _lcs_rows(a, b)
        assert all(_lcs_at(rows, i, j) == table[i][j]
                   for i in range(len(a) + 1) for j in range(len(b) + 1)), (a, b)
