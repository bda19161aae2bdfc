"""SETBIT, GETBIT, BITCOUNT, BITPOS and BITOP against redis-server 7.0."""

from __future__ import annotations

import itertools

import pytest

from tests.differential.oracle import Differential


def test_setbit_getbit(diff: Differential) -> None:
    diff.run("SETBIT", "k", "7", "1")
    diff.run("GET", "k")
    diff.run("SETBIT", "k", "7", "1")
    diff.run("SETBIT", "k", "0", "1")
    diff.run("SETBIT", "k", "100", "0")
    diff.run("GET", "k")
    diff.run("SETBIT", "k", "7", "0")
    diff.run("SETBIT", "new", "3", "0")
    diff.run("GET", "new")
    for offset in [0, 1, 7, 8, 100, 101, 1000]:
        diff.run("GETBIT", "k", offset)
    diff.run("GETBIT", "missing", "5")
    diff.run("SET", "t", "abc", "EX", "100")
    diff.run("SETBIT", "t", "30", "1")
    diff.run("TTL", "t")
    diff.run("GET", "t")
    diff.run("SET", "n", "123")
    diff.run("SETBIT", "n", "0", "1")
    diff.run("GET", "n")


def test_setbit_getbit_errors(diff: Differential) -> None:
    diff.run("SET", "k", "v")
    for offset in ["-1", "x", "4294967296", "+1", "01", "9223372036854775808"]:
        diff.run("SETBIT", "k", offset, "1")
        diff.run("GETBIT", "k", offset)
    diff.run("GETBIT", "k", "4294967295")
    for bit in ["2", "-1", "x", ""]:
        diff.run("SETBIT", "k", "1", bit)
    diff.run("SETBIT", "k", "x", "2")
    diff.run("RPUSH", "l", "a")
    diff.run("SETBIT", "l", "1", "1")
    diff.run("GETBIT", "l", "1")
    diff.run("GETBIT", "l", "x")
    diff.run("SETBIT", "k", "1")
    diff.run("GETBIT", "k")
    diff.run("GET", "k")


RANGES = [(0, -1), (1, 1), (0, 0), (-2, -1), (-1, -2), (-100, -200), (2, 100), (5, 2),
          (-100, 0), (7, 9), (9, 22), (3, 3), (1000, 2000), (-3, 1)]


def test_bitcount(diff: Differential) -> None:
    diff.run("SET", "k", "foobar")
    diff.run("BITCOUNT", "k")
    for start, end in RANGES:
        diff.run("BITCOUNT", "k", start, end)
        diff.run("BITCOUNT", "k", start, end, "BYTE")
        diff.run("BITCOUNT", "k", start, end, "bit")
    diff.run("SET", "e", "")
    diff.run("BITCOUNT", "e")
    diff.run("BITCOUNT", "e", "0", "-1", "BIT")
    diff.run("BITCOUNT", "missing", "x", "y", "z")
    diff.run("BITCOUNT", "missing", "1")
    for bad in [("1",), ("a", "1"), ("1", "b"), ("0", "1", "BITS"), ("0", "1", "BIT", "x"),
                ("-1", "-5", "foo"), ("0", "a", "foo"), ("1", "5", "foo")]:
        diff.run("BITCOUNT", "k", *bad)
    diff.run("RPUSH", "l", "a")
    diff.run("BITCOUNT", "l")
    diff.run("BITCOUNT")


@pytest.mark.parametrize("value", ["\xff\xf0\x00", "\x00\x00\x00", "\xff\xff\xff", "\x00\x0f\x80",
                                   "a"])
def test_bitpos(diff: Differential, value: str) -> None:
    diff.run("SET", "k", value.encode("latin-1"))
    for bit in (0, 1):
        diff.run("BITPOS", "k", bit)
        for start in (0, 1, 2, -1, -2, 3, -100):
            diff.run("BITPOS", "k", bit, start)
        for start, end in RANGES:
            diff.run("BITPOS", "k", bit, start, end)
            diff.run("BITPOS", "k", bit, start, end, "BYTE")
            diff.run("BITPOS", "k", bit, start, end, "BIT")


def test_bitpos_bit_ranges_exhaustively(diff: Differential) -> None:
    diff.run("SET", "k", b"\xf0\x0f")
    for bit, start, end in itertools.product((0, 1), range(-17, 17, 3), range(-17, 17, 2)):
        diff.run("BITPOS", "k", bit, start, end, "BIT")


def test_bitpos_errors(diff: Differential) -> None:
    diff.run("BITPOS", "missing", "1")
    diff.run("BITPOS", "missing", "0")
    diff.run("BITPOS", "missing", "1", "x", "y", "z", "w")
    diff.run("SET", "e", "")
    diff.run("BITPOS", "e", "0")
    diff.run("BITPOS", "e", "1")
    diff.run("SET", "k", "abc")
    for bad in [("2",), ("x",), ("1", "a"), ("1", "0", "a"), ("1", "0", "-1", "foo"),
                ("1", "0", "a", "foo"), ("1", "0", "-1", "BIT", "x"), ("-1",)]:
        diff.run("BITPOS", "k", *bad)
        diff.run("BITPOS", "missing", *bad)
    diff.run("RPUSH", "l", "a")
    diff.run("BITPOS", "l", "1")
    diff.run("BITPOS", "k")


def test_bitop(diff: Differential) -> None:
    diff.run("SET", "a", "foobar")
    diff.run("SET", "b", "abcdef")
    diff.run("SET", "c", "xy")
    for op in ["AND", "or", "XOR"]:
        diff.run("BITOP", op, "d", "a", "b", "c")
        diff.run("GET", "d")
        diff.run("BITOP", op, "d", "c", "missing")
        diff.run("GET", "d")
    diff.run("BITOP", "NOT", "d", "c")
    diff.run("GET", "d")
    diff.run("BITOP", "NOT", "a", "a")
    diff.run("GET", "a")
    diff.run("SET", "t", "x", "EX", "100")
    diff.run("BITOP", "AND", "t", "b")
    diff.run("TTL", "t")
    diff.run("RPUSH", "l", "x")
    diff.run("BITOP", "OR", "l", "b")
    diff.run("TYPE", "l")
    diff.run("BITOP", "OR", "d", "missing", "missing2")
    diff.run("EXISTS", "d")
    diff.run("SET", "e", "")
    diff.run("BITOP", "OR", "e", "e")
    diff.run("EXISTS", "e")


def test_bitop_errors(diff: Differential) -> None:
    diff.run("SET", "a", "x")
    diff.run("RPUSH", "l", "x")
    diff.run("BITOP", "NAND", "d", "a")
    diff.run("BITOP", "NOT", "d", "a", "a")
    diff.run("BITOP", "AND", "d", "a", "l")
    diff.run("BITOP", "NOT", "d", "l")
    diff.run("EXISTS", "d")
    diff.run("BITOP", "AND", "d")
    diff.run("BITOP", "NOT")
