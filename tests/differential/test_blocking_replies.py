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
