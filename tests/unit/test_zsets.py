"""Sorted sets in the state machine: the snapshot round trip and digest of the
new value type, and replication determinism (``kv/types/zsets.py``).

- snapshot()/restore() reproduce every member and score exactly, with a
  working order (ranks, ranges, pops);
- the digest is independent of insertion order and sees every score;
- the three write paths agree on random sorted-set workloads with TTLs
  expiring along the way (leader ``execute`` -> follower ``apply`` without a
  clock; raft ``prepare(exact=False)`` + ``apply`` at the entry's time);
- an expired SOURCE key of a multi-key write (ZUNIONSTORE, ZMPOP, ...) is
  deleted by the log before the command, so the follower does not read it;
- replicas in processes with different hash seeds (different set and dict
  iteration orders) reach the same digest and replies.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from zlib import crc32

import pytest

from replikv.core.replies import Pairs, RespError
from replikv.core.resp import encode_reply
from replikv.kv.commands import COMMANDS, command_reply
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from replikv.kv.types.zsets import ZSet

NOW = 1_700_000_000_000
LOG = ApplyContext(None)
KEYS = [b"a", b"b", b"c", b"d"]
SCORES = [b"0", b"1", b"-1", b"2.5", b"0.1", b"0.2", b"1e16", b"-inf", b"inf", b"-0", b"3"]
MEMBERS = [b"m%d" % i for i in range(8)] + [b"", b"\xff\x00"]


def _zadd(sm: StateMachine, key: bytes, *pairs: bytes) -> object:
    reply, _ = sm.execute([b"ZADD", key, *pairs], ApplyContext(NOW))
    return reply


def _full(sm: StateMachine, key: bytes) -> object:
    return sm.read([b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"], NOW)


# --- snapshot and digest ------------------------------------------------------------


def test_snapshot_round_trip_keeps_members_scores_and_order() -> None:
    sm = StateMachine()
    _zadd(sm, b"z", b"1.5", b"a", b"-inf", b"b", b"inf", b"c", b"1e-320", b"\x00bin", b"2", b"d",
          b"2", b"c2", b"0.1", b"e")
    sm.execute([b"PEXPIREAT", b"z", b"%d" % (NOW + 5000)], ApplyContext(NOW))
    big = [x for i in range(300) for x in (b"%d.25" % (i % 17), b"member-%d" % i)]
    _zadd(sm, b"big", *big)
    sm.execute([b"SADD", b"s", b"x"], ApplyContext(NOW))
    copy = StateMachine()
    copy.restore(sm.snapshot())
    assert copy.digest() == sm.digest()
    for key in (b"z", b"big"):
        assert _full(copy, key) == _full(sm, key)
        assert type(copy.data[key]) is ZSet
    assert copy.expires == sm.expires
    assert copy.read([b"TYPE", b"z"], NOW) == "zset"
    assert copy.read([b"ZRANK", b"big", b"member-150"], NOW) == sm.read(
        [b"ZRANK", b"big", b"member-150"], NOW)
    for machine in (sm, copy):
        machine.execute([b"ZPOPMAX", b"big", b"5"], ApplyContext(NOW))
        machine.execute([b"ZADD", b"z", b"7", b"a"], ApplyContext(NOW))
    assert copy.digest() == sm.digest()
    assert _full(copy, b"big") == _full(sm, b"big")


def test_digest_is_order_independent_and_sees_every_score() -> None:
    one, two, other = StateMachine(), StateMachine(), StateMachine()
    _zadd(one, b"z", b"1", b"a", b"2", b"b", b"3", b"c")
    _zadd(two, b"z", b"3", b"c")
    _zadd(two, b"z", b"9", b"a", b"2", b"b")
    _zadd(two, b"z", b"1", b"a")
    assert one.digest() == two.digest()
    _zadd(other, b"z", b"1", b"a", b"2", b"b", b"3.0000000000000004", b"c")
    assert other.digest() != one.digest()
    hashed = StateMachine()
    hashed.execute([b"HSET", b"z", b"a", b"1", b"b", b"2", b"c", b"3"], ApplyContext(NOW))
    assert hashed.digest() != one.digest()


def test_negative_zero_is_stored_as_zero() -> None:
    sm = StateMachine()
    assert _zadd(sm, b"z", b"INCR", b"-0", b"a") == -0.0
    _zadd(sm, b"z", b"-0", b"b")
    assert _full(sm, b"z") == [b"a", 0.0, b"b", 0.0]
    assert all(str(s) == "0.0" for s in sm.data[b"z"].scores.values())


# --- movable keys ---------------------------------------------------------------------


def test_movable_keys_are_found() -> None:
    union = COMMANDS[b"ZUNIONSTORE"]
    assert union.keys([b"ZUNIONSTORE", b"d", b"2", b"x", b"y", b"WEIGHTS", b"1", b"2"]) == [
        b"d", b"x", b"y"]
    assert union.keys([b"ZUNIONSTORE", b"d", b"nope", b"x"]) == [b"d"]
    assert union.keys([b"ZUNIONSTORE", b"d", b"5", b"x"]) == [b"d"]  # more keys named than given
    assert COMMANDS[b"ZMPOP"].keys([b"ZMPOP", b"2", b"x", b"y", b"MIN"]) == [b"x", b"y"]
    assert COMMANDS[b"ZINTER"].keys([b"ZINTER", b"1", b"x", b"WITHSCORES"]) == [b"x"]
    assert COMMANDS[b"ZRANGESTORE"].keys([b"ZRANGESTORE", b"d", b"s", b"0", b"1"]) == [b"d", b"s"]
    assert command_reply([b"COMMAND", b"GETKEYS", b"ZMPOP", b"2", b"x", b"y", b"MAX"]) == [
        b"x", b"y"]
    assert "movablekeys" in command_reply([b"COMMAND", b"INFO", b"zunionstore"])[0][2]


@pytest.mark.parametrize(
    "argv",
    [
        [b"ZUNIONSTORE", b"dst", b"2", b"src", b"other"],
        [b"ZINTERSTORE", b"dst", b"1", b"src"],
        [b"ZDIFFSTORE", b"dst", b"1", b"src"],
        [b"ZRANGESTORE", b"dst", b"src", b"0", b"-1"],
        [b"ZMPOP", b"2", b"src", b"other", b"MIN"],
    ],
)
def test_expired_source_key_is_deleted_in_the_log_first(argv: list[bytes]) -> None:
    """The leader reads an expired source as missing, and logs its DEL first,
    so a follower (no clock) does not read it; raft deletes it at apply."""
    machines = [StateMachine() for _ in range(3)]
    setup = [[b"ZADD", b"src", b"1", b"a", b"2", b"b"], [b"ZADD", b"other", b"5", b"o"],
             [b"PEXPIREAT", b"src", b"%d" % (NOW + 10)]]
    for sm in machines:
        sm.apply(setup, LOG)
    leader, follower, raft = machines
    later = ApplyContext(NOW + 20)
    reply, cmds = leader.execute(list(argv), later)
    assert cmds is not None and cmds[0] == [b"DEL", b"src"]
    follower.apply(cmds, LOG)
    err, raft_cmds = raft.prepare(list(argv), later, exact=False)
    assert err is None and raft_cmds == [argv]
    assert raft.apply(raft_cmds, later)[-1] == reply
    assert b"src" not in leader.data
    assert leader.digest() == follower.digest() == raft.digest()
    if argv[0] == b"ZMPOP":
        assert reply == [b"other", [[b"o", 5.0]]]


# --- random workloads on the three write paths ------------------------------------------


def _random_command(rng: random.Random) -> list[bytes]:
    k, k2, k3 = (rng.choice(KEYS) for _ in range(3))
    s, m = rng.choice(SCORES), rng.choice(MEMBERS)
    n = b"%d" % rng.randrange(-4, 6)
    flags = rng.sample([b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"], rng.randrange(0, 3))
    agg = [b"AGGREGATE", rng.choice([b"SUM", b"MIN", b"MAX"])]
    weights = [b"WEIGHTS", rng.choice(SCORES), rng.choice(SCORES)]
    choices = [
        [b"ZADD", k, s, m, rng.choice(SCORES), rng.choice(MEMBERS)],
        [b"ZADD", k, *flags, s, m],
        [b"ZINCRBY", k, s, m],
        [b"ZREM", k, m, rng.choice(MEMBERS)],
        [b"ZPOPMIN", k, n],
        [b"ZPOPMAX", k],
        [b"ZMPOP", b"2", k, k2, rng.choice([b"MIN", b"MAX"]), b"COUNT", b"2"],
        [b"ZREMRANGEBYRANK", k, n, b"%d" % rng.randrange(-3, 6)],
        [b"ZREMRANGEBYSCORE", k, rng.choice([b"(0", b"-inf", b"1"]), rng.choice(SCORES)],
        [b"ZREMRANGEBYLEX", k, rng.choice([b"-", b"[m2", b"(m1"]), rng.choice([b"+", b"[m5"])],
        [b"ZRANGESTORE", k, k2, b"0", n],
        [b"ZRANGESTORE", k, k2, b"(0", b"+inf", b"BYSCORE", b"LIMIT", b"1", b"3"],
        [b"ZUNIONSTORE", k, b"3", k, k2, k3, *weights[:1], b"1", b"1", b"0.3", *agg],
        [b"ZINTERSTORE", k, b"2", k2, k3, *weights, *agg],
        [b"ZDIFFSTORE", k, b"2", k2, k3],
        [b"SADD", k, m],
        [b"SET", k, n],
        [b"PEXPIRE", k, b"%d" % rng.randrange(1, 30)],
        [b"EXPIRE", k, b"1"],
        [b"DEL", k],
        [b"ZADD", k, b"nan", m],  # refused: not a float
        [b"ZADD", k],  # wrong arity
    ]
    return rng.choice(choices)


def _observe(sm: StateMachine, now: int) -> list[object]:
    out: list[object] = []
    for key in KEYS:
        out.append(sm.read([b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"], now))
        out.append(sm.read([b"TYPE", key], now))
    return out


@pytest.mark.parametrize("seed", range(25))
def test_three_write_paths_agree(seed: int) -> None:
    rng = random.Random(seed)
    leader, follower, raft = StateMachine(), StateMachine(), StateMachine()
    now = NOW
    for _ in range(250):
        now += rng.randrange(0, 8)
        argv = _random_command(rng)
        ctx = ApplyContext(now)
        reply, cmds = leader.execute(list(argv), ctx)
        if cmds:
            follower.apply(cmds, LOG)
        err, raft_cmds = raft.prepare(list(argv), ctx, exact=False)
        raft_reply = err if raft_cmds is None else raft.apply(raft_cmds, ctx)[-1]
        assert raft_reply == reply, argv
        assert leader.digest() == follower.digest() == raft.digest(), argv
        assert _observe(raft, now) == _observe(leader, now)
        for value in leader.data.values():
            assert len(value) > 0, "no empty sorted set is left behind"


_CHILD = """
import json, random, sys
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from tests.unit.test_zsets import _random_command
seed = int(sys.argv[1])
rng = random.Random(seed)
sm = StateMachine()
replies = []
for i in range(400):
    reply, _ = sm.execute(_random_command(rng), ApplyContext(1_700_000_000_000 + i))
    replies.append(repr(reply))
print(json.dumps([sm.digest().hex(), replies]))
"""


def test_replicas_with_different_hash_seeds_agree() -> None:
    """Set and dict iteration orders differ between processes; no outcome may depend on them."""
    root = Path(__file__).resolve().parents[2]
    outputs = []
    for hash_seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed,
               "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
        done = subprocess.run([sys.executable, "-c", _CHILD, "7"], env=env, cwd=root,
                              capture_output=True, text=True, timeout=120, check=True)
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1] == outputs[2]
    assert any("RespError" in r for r in outputs[0][1]) and len(set(outputs[0][1])) > 20


def test_errors_leave_nothing_behind() -> None:
    sm = StateMachine()
    _zadd(sm, b"z", b"inf", b"a")
    before = sm.digest()
    for argv in ([b"ZADD", b"z", b"1", b"b", b"x", b"c"], [b"ZADD", b"z", b"INCR", b"-inf", b"a"],
                 [b"ZINCRBY", b"z", b"-inf", b"a"],
                 [b"ZUNIONSTORE", b"z", b"2", b"z", b"nokey", b"WEIGHTS", b"1", b"x"],
                 [b"ZMPOP", b"1", b"z", b"MIN", b"COUNT", b"0"]):
        reply, cmds = sm.execute(list(argv), ApplyContext(NOW))
        assert isinstance(reply, RespError) and cmds is None, argv
        assert sm.digest() == before, argv


def test_pairs_are_flat_in_resp2_and_nested_in_resp3() -> None:
    pairs = Pairs([b"a", 1.5, b"b", math.inf])
    assert encode_reply(pairs) == b"*4\r\n$1\r\na\r\n$3\r\n1.5\r\n$1\r\nb\r\n$3\r\ninf\r\n"
    assert encode_reply(pairs, resp3=True) == (
        b"*2\r\n*2\r\n$1\r\na\r\n,1.5\r\n*2\r\n$1\r\nb\r\n,inf\r\n")
    assert encode_reply([Pairs()], resp3=True) == b"*1\r\n*0\r\n"


def test_zscan_of_a_large_set_returns_every_member_present_throughout() -> None:
    """Redis's SCAN contract under writes between the calls; the position
    index stays exact through adds, removes, pops and range removals."""
    rng = random.Random(3)
    sm = StateMachine()
    ctx = ApplyContext(NOW)
    stable = [b"s%d" % i for i in range(600)]
    sm.execute([b"ZADD", b"z", *[x for m in stable for x in (b"%d" % rng.randrange(50), m)]], ctx)
    churn = 0
    seen: set[bytes] = set()
    cursor, calls = b"0", 0
    while True:
        cursor, flat = sm.read([b"ZSCAN", b"z", cursor, b"COUNT", b"7"], NOW)
        seen.update(flat[::2])
        calls += 1
        for _ in range(3):
            sm.execute([b"ZADD", b"z", b"%d" % rng.randrange(-5, 60), b"c%d" % churn], ctx)
            churn += 1
        sm.execute([b"ZREM", b"z", b"c%d" % rng.randrange(churn)], ctx)
        sm.execute([b"ZPOPMIN", b"z", b"1"], ctx)
        sm.execute([b"ZREMRANGEBYSCORE", b"z", b"-5", b"(-4"], ctx)
        if cursor == b"0":
            break
        assert calls < 1000
    present = set(stable) & set(sm.data[b"z"].scores)
    assert present and present <= seen
    zset = sm.data[b"z"]
    assert list(zset.positions()) == sorted((crc32(m), m) for m in zset.scores)
    assert calls > 50  # walked in steps, not at once
