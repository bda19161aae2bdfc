"""Blocking commands' replies against redis-server: what one attempt does
(in-process, on all three replikv paths) and the timeout (a real node)."""

from __future__ import annotations

from tests.differential.oracle import Differential, RawPair


def test_an_attempt_with_data(diff: Differential) -> None:
    diff.run("RPUSH", "a", "1", "2")
    diff.run("RPUSH", "b", "3")
    diff.run("BLPOP", "empty", "a", "b", "0")
    diff.run("BRPOP", "a", "b", "1.5")
    diff.run("BRPOP", "a", "b", "0")
    diff.run("EXISTS", "a", "b")
    diff.run("SET", "s", "x")
    diff.run("RPUSH", "c", "4")
    diff.run("BLPOP", "s", "c", "0")  # a key of another type before a list: WRONGTYPE
    diff.run("BLPOP", "c", "s", "0")  # ... after one with data: served
    for bad in ("-1", "x", "nan", "inf", " 1", "1e20"):
        diff.run("RPUSH", "d", "5")
        diff.run("BLPOP", "d", bad)
    diff.run("BLPOP", "d")


def test_the_deadline_and_multi(raw_pair: RawPair) -> None:
    raw_pair.same(["BLPOP", "q", "0.05"], ["BRPOP", "q", "r", "0.01"], ["MULTI"], ["BLPOP", "q", "0"],
                  ["BRPOP", "q", "-1"], ["EXEC"], ["MULTI"], ["BLPOP", "q", "0"], ["EXEC"])


def test_the_moving_and_multi_pop_forms(diff: Differential) -> None:
    diff.run("RPUSH", "a", "1", "2", "3")
    diff.run("BLMOVE", "a", "b", "LEFT", "RIGHT", "0")
    diff.run("BLMOVE", "a", "a", "RIGHT", "LEFT", "0.5")
    diff.run("BLMOVE", "a", "b", "UP", "RIGHT", "0")
    diff.run("BLMOVE", "a", "b", "LEFT", "RIGHT", "-1")
    diff.run("BRPOPLPUSH", "a", "b", "0")
    diff.run("LRANGE", "b", "0", "-1")
    diff.run("BLMPOP", "0", "2", "none", "b", "LEFT", "COUNT", "5")
    diff.run("RPUSH", "c", "x", "y")
    diff.run("BLMPOP", "0.1", "1", "c", "RIGHT")
    diff.run("BLMPOP", "x", "1", "c", "RIGHT")
    diff.run("BLMPOP", "0", "0", "c", "RIGHT")
    diff.run("BLMPOP", "0", "1", "c", "MIDDLE")
    diff.run("BLMPOP", "0", "1", "c", "LEFT", "COUNT", "0")
    diff.run("SET", "s", "v")
    diff.run("BLMOVE", "c", "s", "LEFT", "LEFT", "0")


def test_the_moving_forms_time_out(raw_pair: RawPair) -> None:
    raw_pair.same(["BLMOVE", "q", "d", "LEFT", "LEFT", "0.01"], ["BRPOPLPUSH", "q", "d", "0.01"],
                  ["BLMPOP", "0.01", "1", "q", "LEFT"], ["COMMAND", "GETKEYS", "BLMPOP", "0", "2", "k1", "k2", "LEFT"],
                  ["COMMAND", "GETKEYS", "BLMOVE", "s", "d", "LEFT", "LEFT", "0"])


def test_the_sorted_set_forms(diff: Differential) -> None:
    diff.run("ZADD", "z", "1", "a", "2", "b", "3", "c")
    diff.run("BZPOPMIN", "none", "z", "0")
    diff.run("BZPOPMAX", "z", "0.5")
    diff.run("BZPOPMIN", "z", "-1")
    diff.run("BZMPOP", "0", "2", "none", "z", "MAX", "COUNT", "3")
    diff.run("EXISTS", "z")
    diff.run("SET", "s", "v")
    diff.run("ZADD", "y", "1", "m")
    diff.run("BZPOPMIN", "s", "y", "0")
    diff.run("BZMPOP", "0", "1", "y", "SIDEWAYS")


def test_the_sorted_set_forms_time_out(raw_pair: RawPair) -> None:
    raw_pair.same(["BZPOPMIN", "q", "0.01"], ["BZPOPMAX", "q", "r", "0.01"], ["BZMPOP", "0.01", "1", "q", "MIN"])
    raw_pair.same(["HELLO", "3"], ["ZADD", "z", "1.5", "m"], ["BZPOPMIN", "z", "0"], ["BZPOPMAX", "q", "0.01"],
                  skip=1)  # RESP3: the score is a double


def test_the_stream_forms(raw_pair: RawPair) -> None:
    raw_pair.same(["XADD", "s", "1-1", "f", "v"], ["XGROUP", "CREATE", "s", "g", "$"],
                  ["XREAD", "BLOCK", "10", "STREAMS", "s", "$"], ["XREAD", "BLOCK", "-1", "STREAMS", "s", "$"],
                  ["XREAD", "BLOCK", "x", "STREAMS", "s", "$"], ["XREAD", "BLOCK", "10", "STREAMS", "s", "0"],
                  ["XREADGROUP", "GROUP", "g", "c", "BLOCK", "10", "STREAMS", "s", ">"],
                  ["XREADGROUP", "GROUP", "g", "c", "BLOCK", "-5", "STREAMS", "s", ">"],
                  ["MULTI"], ["XREAD", "BLOCK", "0", "STREAMS", "s", "$"], ["EXEC"])
