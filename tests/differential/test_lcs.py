"""LCS against redis-server 7.0."""

from __future__ import annotations

import random

import pytest

from tests.differential.oracle import Differential

OPTIONS = [(), ("LEN",), ("IDX",), ("IDX", "WITHMATCHLEN"), ("IDX", "MINMATCHLEN", "4"),
           ("IDX", "MINMATCHLEN", "2", "WITHMATCHLEN"), ("idx", "minmatchlen", "-3"),
           ("MINMATCHLEN", "3"), ("WITHMATCHLEN",), ("LEN", "MINMATCHLEN", "2")]

PAIRS = [("ohmytext", "mynewtext"), ("", "abc"), ("abc", "abc"), ("abc", "xyz"),
         ("aaaa", "aa"), ("abcabcabc", "cbacbacba"), ("a", "a"), ("x", ""),
         ("GXTXAYB", "AGGTAB"), ("12345", "54321")]


@pytest.mark.parametrize("a, b", PAIRS)
def test_lcs(diff: Differential, a: str, b: str) -> None:
    diff.run("SET", "a", a)
    diff.run("SET", "b", b)
    for opts in OPTIONS:
        diff.run("LCS", "a", "b", *opts)
        diff.run("LCS", "b", "a", *opts)


def test_lcs_random_strings(diff: Differential) -> None:
    rng = random.Random(12)
    for _ in range(30):
        a = "".join(rng.choice("abc") for _ in range(rng.randrange(0, 25)))
        b = "".join(rng.choice("abc") for _ in range(rng.randrange(0, 25)))
        diff.run("SET", "a", a)
        diff.run("SET", "b", b)
        diff.run("LCS", "a", "b", "IDX", "WITHMATCHLEN")
        diff.run("LCS", "a", "b")


def test_lcs_long_strings(diff: Differential) -> None:
    rng = random.Random(7)
    diff.run("SET", "a", "".join(rng.choice("acgt") for _ in range(3000)))
    diff.run("SET", "b", "".join(rng.choice("acgt") for _ in range(2500)))
    diff.run("LCS", "a", "b", "LEN")
    diff.run("LCS", "a", "b")
    diff.run("LCS", "a", "b", "IDX", "MINMATCHLEN", "5", "WITHMATCHLEN")


def test_lcs_missing_keys_and_errors(diff: Differential) -> None:
    diff.run("LCS", "x", "y")
    diff.run("LCS", "x", "y", "IDX")
    diff.run("SET", "a", "hello")
    diff.run("LCS", "a", "missing", "LEN")
    diff.run("LCS", "a", "a", "IDX", "WITHMATCHLEN")
    diff.run("RPUSH", "l", "a")
    diff.run("LCS", "a", "l")
    diff.run("LCS", "l", "missing", "FOO")
    for bad in [("LEN", "IDX"), ("FOO",), ("MINMATCHLEN",), ("MINMATCHLEN", "x"),
                ("IDX", "LEN", "FOO")]:
        diff.run("LCS", "a", "a", *bad)
    diff.run("LCS", "a")
    diff.run("SET", "big", "x" * 12000)
    diff.run("LCS", "big", "big", "LEN")
