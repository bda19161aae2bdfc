"""The list family (issue 12) against redis-server 7.0: every command, its
options and its error replies."""

from __future__ import annotations

import pytest

from replikv.core.replies import NULL_ARRAY
from replikv.kv.commands import COMMANDS, command_reply
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from tests.differential.oracle import Differential

WRONG = ("lindex", "lset", "linsert", "lrem", "ltrim", "lpos", "lmove", "rpoplpush", "lpushx",
         "rpushx", "lmpop")


def _fill(diff: Differential, key: str = "l") -> None:
    diff.run("DEL", key)
    diff.run("RPUSH", key, "a", "b", "c", "a", "b", "a")


def test_lindex_lset(diff: Differential) -> None:
    _fill(diff)
    for i in ("0", "2", "-1", "-6", "-7", "6", "99", "x", "9223372036854775808"):
        diff.run("LINDEX", "l", i)
    diff.run("LINDEX", "nokey", "x")
    diff.run("LINDEX", "l")
    for i, v in (("0", "A"), ("-1", "Z"), ("3", "D"), ("6", "v"), ("-7", "v"), ("x", "v")):
        diff.run("LSET", "l", i, v)
    diff.run("LSET", "nokey", "x", "v")
    diff.run("LSET", "nokey", "0", "v")
    diff.run("LRANGE", "l", "0", "-1")
    diff.run("LSET", "l", "0")


def test_linsert(diff: Differential) -> None:
    _fill(diff)
    diff.run("LINSERT", "l", "BEFORE", "b", "x")
    diff.run("LINSERT", "l", "after", "a", "y")
    diff.run("LINSERT", "l", "AFTER", "nope", "y")
    diff.run("LINSERT", "l", "middle", "a", "y")
    diff.run("LINSERT", "nokey", "middle", "a", "y")
    diff.run("LINSERT", "nokey", "BEFORE", "a", "y")
    diff.run("EXISTS", "nokey")
    diff.run("LRANGE", "l", "0", "-1")
    diff.run("LINSERT", "l", "BEFORE", "a")


@pytest.mark.parametrize("count", ["0", "1", "2", "-1", "-2", "10", "-10"])
def test_lrem(diff: Differential, count: str) -> None:
    _fill(diff)
    diff.run("LREM", "l", count, "a")
    diff.run("LRANGE", "l", "0", "-1")
    diff.run("LREM", "l", count, "zz")


def test_lrem_edges(diff: Differential) -> None:
    diff.run("RPUSH", "l", "a", "a")
    diff.run("LREM", "l", "x", "a")
    diff.run("LREM", "l", "0", "a")
    diff.run("EXISTS", "l")
    diff.run("LREM", "nokey", "0", "a")
    diff.run("LREM", "l", "0")


@pytest.mark.parametrize(
    "start,stop",
    [("0", "-1"), ("1", "2"), ("-2", "-1"), ("2", "1"), ("10", "20"), ("-100", "100"),
     ("0", "0"), ("-1", "-100"), ("3", "100"), ("5", "5")],
)
def test_ltrim(diff: Differential, start: str, stop: str) -> None:
    _fill(diff)
    diff.run("LTRIM", "l", start, stop)
    diff.run("LRANGE", "l", "0", "-1")
    diff.run("EXISTS", "l")


def test_ltrim_errors(diff: Differential) -> None:
    _fill(diff)
    diff.run("LTRIM", "l", "x", "1")
    diff.run("LTRIM", "l", "1", "y")
    diff.run("LTRIM", "nokey", "0", "1")
    diff.run("LTRIM", "l", "0")


def test_lpos(diff: Differential) -> None:
    _fill(diff)
    cases = [
        [], ["RANK", "1"], ["RANK", "2"], ["RANK", "-1"], ["RANK", "-3"], ["RANK", "4"],
        ["RANK", "-9223372036854775808"], ["COUNT", "0"], ["COUNT", "2"], ["COUNT", "10"],
        ["RANK", "2", "COUNT", "0"], ["RANK", "-2", "COUNT", "2"], ["MAXLEN", "1"],
        ["MAXLEN", "4", "COUNT", "0"], ["RANK", "-1", "MAXLEN", "2", "COUNT", "0"],
        ["rank", "1", "rank", "-1"], ["MAXLEN", "0", "COUNT", "0"],
        ["RANK", "0"], ["RANK", "x"], ["COUNT", "-1"], ["MAXLEN", "-1"], ["COUNT", "x"],
        ["MAXLEN", "x"],
        ["FOO"], ["RANK"], ["FOO", "1"],
    ]
    for opts in cases:
        diff.run("LPOS", "l", "a", *opts)
        diff.run("LPOS", "l", "zz", *opts)
        diff.run("LPOS", "nokey", "a", *opts)
    diff.run("LPOS", "l")


@pytest.mark.parametrize("src", ["LEFT", "RIGHT", "left"])
@pytest.mark.parametrize("dst", ["LEFT", "RIGHT"])
def test_lmove(diff: Differential, src: str, dst: str) -> None:
    diff.run("RPUSH", "a", "1", "2", "3")
    diff.run("LMOVE", "a", "b", src, dst)
    diff.run("LMOVE", "a", "b", src, dst)
    diff.run("LMOVE", "a", "a", src, dst)
    diff.run("LRANGE", "a", "0", "-1")
    diff.run("LRANGE", "b", "0", "-1")
    diff.run("LMOVE", "a", "b", src, dst)
    diff.run("EXISTS", "a")
    diff.run("LMOVE", "nokey", "b", src, dst)
    diff.run("RPUSH", "one", "x")
    diff.run("LMOVE", "one", "one", src, dst)
    diff.run("LRANGE", "one", "0", "-1")


def test_lmove_errors(diff: Differential) -> None:
    diff.run("RPUSH", "a", "1")
    diff.run("SET", "s", "v")
    diff.run("LMOVE", "a", "b", "UP", "LEFT")
    diff.run("LMOVE", "a", "b", "LEFT", "DOWN")
    diff.run("LMOVE", "nokey", "b", "UP", "LEFT")
    diff.run("LMOVE", "a", "s", "LEFT", "LEFT")
    diff.run("LMOVE", "s", "a", "LEFT", "LEFT")
    diff.run("LMOVE", "nokey", "s", "LEFT", "LEFT")
    diff.run("LRANGE", "a", "0", "-1")
    diff.run("LMOVE", "a", "b", "LEFT")


def test_rpoplpush(diff: Differential) -> None:
    diff.run("RPUSH", "a", "1", "2", "3")
    diff.run("RPOPLPUSH", "a", "b")
    diff.run("RPOPLPUSH", "a", "a")
    diff.run("LRANGE", "a", "0", "-1")
    diff.run("LRANGE", "b", "0", "-1")
    diff.run("RPOPLPUSH", "nokey", "b")
    diff.run("SET", "s", "v")
    diff.run("RPOPLPUSH", "a", "s")
    diff.run("RPOPLPUSH", "s", "a")
    diff.run("RPOPLPUSH", "a")


def test_pushx(diff: Differential) -> None:
    diff.run("LPUSHX", "l", "a")
    diff.run("RPUSHX", "l", "a", "b")
    diff.run("EXISTS", "l")
    diff.run("RPUSH", "l", "x")
    diff.run("LPUSHX", "l", "a", "b")
    diff.run("RPUSHX", "l", "c", "d")
    diff.run("LRANGE", "l", "0", "-1")
    diff.run("LPUSHX", "l")
    diff.run("RPUSHX", "l")


def test_lmpop(diff: Differential) -> None:
    diff.run("RPUSH", "b", "1", "2", "3", "4")
    diff.run("RPUSH", "c", "x")
    diff.run("LMPOP", "2", "a", "b", "LEFT")
    diff.run("LMPOP", "2", "a", "b", "right", "COUNT", "2")
    diff.run("LMPOP", "3", "a", "b", "c", "LEFT", "count", "10")
    diff.run("EXISTS", "b")
    diff.run("LMPOP", "3", "a", "b", "c", "RIGHT", "COUNT", "10")
    diff.run("LMPOP", "3", "a", "b", "c", "RIGHT")
    diff.run("LMPOP", "1", "a", "LEFT", "COUNT", "3")


def test_lmpop_errors(diff: Differential) -> None:
    diff.run("RPUSH", "l", "a", "b")
    diff.run("SET", "s", "v")
    for args in (
        ["0", "l", "LEFT"], ["-1", "l", "LEFT"], ["x", "l", "LEFT"], ["3", "l", "LEFT"],
        ["2", "l", "LEFT"], ["1", "l", "UP"], ["1", "l", "LEFT", "COUNT", "0"],
        ["1", "l", "LEFT", "COUNT", "-1"], ["1", "l", "LEFT", "COUNT", "x"],
        ["1", "l", "LEFT", "FOO", "1"], ["1", "l", "LEFT", "COUNT", "1", "COUNT", "2"],
        ["1", "l", "LEFT", "COUNT"], ["1", "l", "LEFT", "extra"],
        ["2", "nokey", "s", "LEFT"], ["2", "l", "s", "LEFT"], ["1", "s", "RIGHT", "COUNT", "2"],
        ["9223372036854775807", "l", "LEFT"], ["1", "l"],
    ):
        diff.run("LMPOP", *args)
    diff.run("LRANGE", "l", "0", "-1")


@pytest.mark.parametrize("name", WRONG)
def test_wrong_type(diff: Differential, name: str) -> None:
    diff.run("SET", "k", "v")
    args = {
        "lindex": ["k", "0"], "lset": ["k", "0", "v"], "linsert": ["k", "BEFORE", "a", "b"],
        "lrem": ["k", "0", "a"], "ltrim": ["k", "0", "1"], "lpos": ["k", "a"],
        "lmove": ["k", "d", "LEFT", "LEFT"], "rpoplpush": ["k", "d"], "lpushx": ["k", "a"],
        "rpushx": ["k", "a"], "lmpop": ["1", "k", "LEFT"],
    }[name]
    diff.run(name.upper(), *args)
    diff.run("GET", "k")
    diff.run(name.upper())


def test_lmpop_skips_expired_keys_on_every_path() -> None:
    """LMPOP's keys are movable but known (find_keys): a list expired at the
    write's time is DEL'd in the leader's log and deleted at the entry's time by
    raft, so LMPOP pops from the next live list on every path."""
    t = 1_700_000_000_000
    leader, follower, raft = StateMachine(), StateMachine(), StateMachine()
    setup = [[b"RPUSH", b"a", b"old"], [b"PEXPIREAT", b"a", b"%d" % (t + 5)],
             [b"RPUSH", b"b", b"1", b"2"]]
    for sm in (leader, follower, raft):
        sm.apply(setup, ApplyContext(None))
    ctx = ApplyContext(t + 10)
    argv = [b"LMPOP", b"2", b"a", b"b", b"LEFT"]
    reply, cmds = leader.execute(list(argv), ctx)
    assert reply == [b"b", [b"1"]]
    assert cmds == [[b"DEL", b"a"], argv]
    follower.apply(cmds, ApplyContext(None))
    err, raft_cmds = raft.prepare(list(argv), ctx, exact=False)
    assert err is None and raft_cmds == [argv]
    assert raft.apply(raft_cmds, ctx) == [[b"b", [b"1"]]]
    assert leader.digest() == follower.digest() == raft.digest()
    assert b"a" not in raft.data
    assert leader.execute([b"LMPOP", b"1", b"a", b"LEFT"], ctx) == (NULL_ARRAY, None)


def test_lmpop_keys_are_found() -> None:
    spec = COMMANDS[b"LMPOP"]
    assert (spec.first_key, spec.last_key, spec.key_step) == (0, 0, 0)
    assert spec.keys([b"LMPOP", b"2", b"a", b"b", b"LEFT", b"COUNT", b"2"]) == [b"a", b"b"]
    for bad in (b"0", b"-1", b"x", b"3", b""):
        assert spec.keys([b"LMPOP", bad, b"a", b"LEFT"]) == []
    assert command_reply([b"COMMAND", b"GETKEYS", b"LMPOP", b"1", b"k", b"LEFT"]) == [b"k"]
