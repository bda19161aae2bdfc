"""MULTI/EXEC/WATCH replies byte for byte against redis-server (a real replikv node)."""

from __future__ import annotations

from tests.differential.oracle import RawPair


def test_watch_replies(raw_pair: RawPair) -> None:
    raw_pair.same(["WATCH", "k", "j"], ["MULTI"], ["WATCH", "k"], ["SET", "k", "1"], ["EXEC"], ["UNWATCH"],
                  ["WATCH"], ["UNWATCH", "x"], ["EXEC"], ["DISCARD"], ["MULTI"], ["MULTI"], ["DISCARD"])


def test_an_empty_exec_and_a_read_only_one(raw_pair: RawPair) -> None:
    raw_pair.same(["SET", "k", "v"], ["WATCH", "k"], ["MULTI"], ["EXEC"], ["MULTI"], ["GET", "k"],
                  ["EXEC"], ["MULTI"], ["NOSUCHCOMMAND"], ["EXEC"])
