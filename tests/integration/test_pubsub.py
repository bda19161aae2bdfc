"""Pub/Sub on real processes in every mode: a message published on any node
reaches the subscribers of every node (runtime/pubsub.py), and the
subscribed context and RESP3 pushes behave as Redis 7.0's."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.integration.cluster import Cluster, RawConnection, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(mode_cluster: Cluster) -> Cluster:
    return mode_cluster


def _next_message(p: Any, timeout: float = 10.0) -> dict[str, Any]:
    return wait_for(lambda: p.get_message(ignore_subscribe_messages=True, timeout=0.05), timeout, "a message")


def _all_peers_connected(c: Cluster) -> None:
    """A PUBLISH reaches the peers connected at that moment (at most once, as Redis)."""
    want = len(c.config.nodes) - 1
    wait_for(lambda: all(int(c.client(n).info("stats").get("replikv_peers_connected", want)) >= want
                         for n in c.procs), 20, "every node to be connected to its peers")


def test_a_message_published_on_one_node_reaches_every_node(cluster: Cluster) -> None:
    c = cluster
    _all_peers_connected(c)
    subs = {}
    for node in c.procs:
        p = c.client(node).pubsub()
        p.subscribe("news")
        p.psubscribe("n*")
        assert p.get_message(timeout=5)["type"] == "subscribe"
        assert p.get_message(timeout=5)["type"] == "psubscribe"
        subs[node] = p
    publisher = c.client("n1")
    # n1 counts its own two receivers (one channel, one pattern subscription), as Redis Cluster does
    assert publisher.publish("news", "hello") == 2
    for node, p in subs.items():
        got = sorted((m["type"], m["channel"], m["data"]) for m in (_next_message(p), _next_message(p)))
        assert got == [("message", b"news", b"hello"), ("pmessage", b"news", b"hello")], node
    # a message published on the last node reaches the first
    last = list(c.procs)[-1]
    assert c.client(last).publish("other", "x") == 0
    assert c.client(last).publish("news", "from " + last) == 2
    assert _next_message(subs["n1"])["data"] == ("from " + last).encode()
    assert c.client("n1").pubsub_numsub("news") == [(b"news", 1)]
    assert c.client("n1").pubsub_numpat() == 1
    assert b"news" in c.client("n1").pubsub_channels()
    for p in subs.values():
        p.close()
    wait_for(lambda: c.client("n1").pubsub_numsub("news") == [(b"news", 0)], 10, "n1 to forget its subscriber")


def test_subscribed_context_and_resp3_push(make_cluster: Any) -> None:
    c = make_cluster(1)
    s = RawConnection(c.port("n1"))
    try:
        assert s.call("SUBSCRIBE", "a", "b", replies=2) == [[b"subscribe", b"a", 1],
                                                                      [b"subscribe", b"b", 2]]
        err = s.call("GET", "k")
        assert "only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed" in str(err)
        assert s.call("PING") == [b"pong", b""]
        assert s.call("UNSUBSCRIBE", replies=2) == [[b"unsubscribe", b"a", 1],
                                                             [b"unsubscribe", b"b", 0]]
        assert s.call("UNSUBSCRIBE") == [b"unsubscribe", None, 0]
        assert s.call("PING") == "PONG"
    finally:
        s.close()
    # RESP3: subscriptions and messages are push frames, and other commands still run
    r3 = redis.Redis(port=c.port("n1"), protocol=3)
    p = r3.pubsub()
    p.subscribe("c")
    assert p.get_message(timeout=5)["type"] == "subscribe"
    assert r3.publish("c", "m") == 1
    assert _next_message(p)["data"] == b"m"
    s = RawConnection(c.port("n1"))
    try:
        s.call("HELLO", "3")
        s.call("SUBSCRIBE", "c")
        assert s.call("SET", "k", "v") == "OK"  # RESP3 mixes pushes and replies
        assert s.call("RESET") == "RESET"
        assert c.client("n1").pubsub_numsub("c") == [(b"c", 1)]  # only redis-py's subscriber is left
    finally:
        s.close()
        p.close()
