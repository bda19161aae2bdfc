"""The families replikv had before issue 12, against redis-server 7.0."""

from __future__ import annotations

from tests.differential.oracle import Differential


def test_strings(diff: Differential) -> None:
    diff.run("SET", "k", "v")
    diff.run("GET", "k")
    diff.run("APPEND", "k", "xyz")
    diff.run("INCR", "k")
    diff.run("SET", "n", "41")
    diff.run("INCRBY", "n", "-3")
    diff.run("INCRBY", "n", "x")
    diff.run("SET", "k", "w", "NX")
    diff.run("SET", "k", "w", "XX", "GET")
    diff.run("MSET", "a", "1", "b", "2")
    diff.run("MGET", "a", "b", "nope")
    diff.run("GETDEL", "a")
    diff.run("STRLEN", "b")
    diff.run("SET", "k")


def test_lists_sets_hashes(diff: Differential) -> None:
    diff.run("RPUSH", "l", "a", "b", "c")
    diff.run("LPUSH", "l", "z")
    diff.run("LRANGE", "l", "0", "-1")
    diff.run("LPOP", "l", "2")
    diff.run("RPOP", "l")
    diff.run("LLEN", "l")
    diff.run("SADD", "s", "a", "b", "c")
    diff.run("SMEMBERS", "s", unordered=True)
    diff.run("SREM", "s", "a", "x")
    diff.run("SCARD", "s")
    diff.run("SISMEMBER", "s", "b")
    diff.run("HSET", "h", "f", "1", "g", "2")
    diff.run("HGETALL", "h", unordered="pairs")
    diff.run("HINCRBY", "h", "f", "5")
    diff.run("HDEL", "h", "g", "zz")
    diff.run("HMGET", "h", "f", "g")
    diff.run("LPUSH", "s", "x")
    diff.run("GET", "h")
