"""Pub/Sub replies byte for byte against redis-server (a real replikv node)."""

from __future__ import annotations

from tests.differential.oracle import RawPair


def test_subscribed_context(raw_pair: RawPair) -> None:
    # (UNSUBSCRIBE with no names answers in Redis's hash-table order: one channel left, then)
    raw_pair.same(["SUBSCRIBE", "a", "b"], ["GET", "k"], ["PING"], ["PING", "x"], ["PSUBSCRIBE", "x*"],
                  ["UNSUBSCRIBE", "b"], ["UNSUBSCRIBE"], ["PUNSUBSCRIBE"], ["UNSUBSCRIBE"],
                  ["PUNSUBSCRIBE", "y"], ["PING"], replies=11)


def test_pubsub_introspection_and_errors(raw_pair: RawPair) -> None:
    raw_pair.same(["PUBSUB", "NUMPAT"], ["PUBSUB", "NUMSUB", "a", "b"], ["PUBSUB", "CHANNELS"],
                  ["PUBSUB", "FOO"], ["PUBSUB", "CHANNELS", "a", "b"], ["PUBSUB", "NUMPAT", "x"],
                  ["PUBLISH", "c"], ["PUBLISH", "c", "m"], ["SUBSCRIBE"], ["RESET"])


def test_resp3_pushes(raw_pair: RawPair) -> None:
    raw_pair.same(["HELLO", "3"], ["SUBSCRIBE", "c"], ["SET", "k", "v"], ["PUBLISH", "c", "m"],
                  ["PING"], ["UNSUBSCRIBE", "c"], ["RESET"], replies=8, skip=1)
