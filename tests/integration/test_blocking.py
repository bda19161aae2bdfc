"""Blocking commands on real processes in every mode (runtime/blocking.py):
served when data arrives, on any node, first blocked first served, the
empty reply at the deadline, and nothing lost when a client gives up."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
import redis

from replikv import modes
from tests.integration.cluster import Cluster, RawConnection, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(mode_cluster: Cluster) -> Cluster:
    return mode_cluster


def offered(c: Cluster, node: str, *argv: str) -> bool:
    """Whether ``node`` runs ``argv`` (False: its mode refuses the command's type, as multi-leader
    mode refuses sorted sets and streams, which have no convergent form there)."""
    try:
        c.client(node).execute_command(*argv)
    except redis.ResponseError as e:
        if "not offered in" in str(e):
            return False
        raise
    return True



class _Call(threading.Thread):
    """One blocking command on its own connection, its reply kept."""

    def __init__(self, port: int, *argv: str) -> None:
        super().__init__(daemon=True)
        self.conn = RawConnection(port, timeout=30)
        self.argv, self.reply, self.done_at = argv, None, 0.0
        self.start()

    def run(self) -> None:
        try:
            self.reply = self.conn.call(*self.argv)
        except OSError as e:  # the test hung up on purpose
            self.reply = e
        self.done_at = time.monotonic()


def _blocked(c: Cluster, node: str, count: int) -> None:
    wait_for(lambda: int(c.client(node).info("clients")["blocked_clients"]) == count, 10,
             f"{count} blocked clients on {node}")


def test_a_push_on_the_leader_serves_clients_blocked_on_every_node(cluster: Cluster) -> None:
    c = cluster
    leader = c.leader()
    pusher = c.client(leader)
    for node in c.procs:
        waiter = _Call(c.port(node), "BLPOP", "q", "other", "0")
        _blocked(c, node, 1)
        assert waiter.is_alive()
        assert pusher.rpush("q", "job-" + node) == 1
        waiter.join(20)
        assert waiter.reply == [b"q", b"job-" + node.encode()], node
        if modes.get(c.config.mode).single_writer:
            assert pusher.llen("q") == 0  # the pop ran on the leader
        else:  # the pop ran on the waiter's node and reaches every other (the next node's BLPOP
            # would otherwise find this job there, pushed but not yet popped, and not block)
            for other in c.procs:
                wait_for(lambda: c.client(other).llen("q") == 0, 20, f"{node}'s pop at {other}")
        assert int(c.client(node).info("clients")["blocked_clients"]) == 0


def test_first_blocked_first_served_and_the_deadline(cluster: Cluster) -> None:
    c = cluster
    leader = c.leader()
    port = c.port(leader)
    first = _Call(port, "BRPOP", "q", "0")
    _blocked(c, leader, 1)
    second = _Call(port, "BRPOP", "q", "0")
    _blocked(c, leader, 2)
    c.client(leader).lpush("q", "a", "b")  # q = [b, a]: BRPOP takes a, then b
    first.join(20)
    second.join(20)
    assert (first.reply, second.reply) == ([b"q", b"a"], [b"q", b"b"])
    # nothing arrives: the null array at the deadline, not before
    started = time.monotonic()
    late = _Call(port, "BLPOP", "empty", "0.3")
    late.join(20)
    assert late.reply is None and late.done_at - started >= 0.3
    # the moving forms wait the same way and move what arrives
    zsets = offered(c, leader, "ZADD", "zprobe", "1", "m")
    mover = _Call(port, "BLMOVE", "src", "dst", "LEFT", "RIGHT", "0")
    multi = _Call(port, "BLMPOP", "0", "2", "src2", "src3", "LEFT", "COUNT", "2")
    calls = [mover, multi]
    if zsets:
        calls.append(_Call(port, "BZPOPMIN", "z", "0"))
    _blocked(c, leader, len(calls))
    c.client(leader).rpush("src", "m")
    c.client(leader).rpush("src3", "x", "y", "z")
    if zsets:
        c.client(leader).zadd("z", {"two": 2, "one": 1})
    for call in calls:
        call.join(20)
    assert mover.reply == b"m" and c.client(leader).lrange("dst", 0, -1) == [b"m"]
    assert multi.reply == [b"src3", [b"x", b"y"]]
    if zsets:
        assert calls[2].reply == [b"z", b"one", b"1"] and c.client(leader).zcard("z") == 1
    # inside MULTI a blocking command does not block
    r = RawConnection(port)
    assert r.call("MULTI") == "OK" and r.call("BLPOP", "empty", "0") == "QUEUED"
    assert r.call("EXEC") == [None]
    # a client that disconnects while blocked is forgotten; the element goes to the next one
    gone = _Call(port, "BLPOP", "q2", "0")
    _blocked(c, leader, 1)
    gone.conn.sock.shutdown(socket.SHUT_RDWR)  # (a close() alone waits for the thread's recv)
    _blocked(c, leader, 0)
    c.client(leader).rpush("q2", "kept")
    assert c.client(leader).lpop("q2") == b"kept"


def test_client_unblock_and_kill(make_cluster: Any) -> None:
    c = make_cluster(1)
    port = c.port("n1")
    admin = RawConnection(port)
    waiting = _Call(port, "BLPOP", "q", "0")
    _blocked(c, "n1", 1)
    assert admin.call("CLIENT", "UNBLOCK", str(_client_id(admin, "blpop"))) == 1
    waiting.join(20)
    assert waiting.reply is None  # TIMEOUT: the reply its deadline would have given
    waiting = _Call(port, "BRPOP", "q", "0")
    _blocked(c, "n1", 1)
    assert admin.call("CLIENT", "UNBLOCK", str(_client_id(admin, "brpop")), "ERROR") == 1
    waiting.join(20)
    assert str(waiting.reply).startswith("UNBLOCKED")
    assert admin.call("CLIENT", "UNBLOCK", str(_client_id(admin, "brpop"))) == 0  # no longer blocked
    victim = RawConnection(port)
    assert victim.call("CLIENT", "SETNAME", "victim") == "OK"
    assert admin.call("CLIENT", "KILL", "ID", str(_client_id(admin, "client", name="victim"))) == 1
    with pytest.raises((ConnectionError, OSError)):
        victim.call("PING")


def _client_id(admin: RawConnection, cmd: str, name: str = "") -> int:
    """The id of the connection whose last command was ``cmd`` (and named ``name``)."""
    for line in admin.call("CLIENT", "LIST").decode().splitlines():
        fields = dict(f.split("=", 1) for f in line.split())
        if fields["cmd"].split("|")[0] == cmd and (not name or fields["name"] == name):
            return int(fields["id"])
    raise AssertionError(f"no client ran {cmd}")


def test_xread_and_xreadgroup_block_until_an_entry_arrives(cluster: Cluster) -> None:
    c = cluster
    leader = c.leader()
    r = c.client(leader)
    if not offered(c, leader, "XADD", "s", "1-1", "f", "old"):
        pytest.skip(f"{c.config.mode} mode has no streams")
    r.xgroup_create("s", "g", id="$")
    for node in c.procs:
        # "$" is the newest entry the node has: it must have every entry so far, or a lagging
        # follower would resolve it to an older one and hand out entries added before the XREAD
        want = r.xlen("s")
        wait_for(lambda: c.client(node).xlen("s") == want, 20, f"{node} to hold the stream's {want} entries")
        reader = _Call(c.port(node), "XREAD", "BLOCK", "0", "STREAMS", "s", "$")  # only what comes next
        worker = _Call(c.port(node), "XREADGROUP", "GROUP", "g", "w-" + node, "BLOCK", "0", "COUNT", "1",
                       "STREAMS", "s", ">")
        _blocked(c, node, 2)
        new_id = r.xadd("s", {"f": "new-" + node})
        reader.join(20)
        worker.join(20)
        assert reader.reply == [[b"s", [[new_id, [b"f", b"new-" + node.encode()]]]]]
        assert worker.reply == [[b"s", [[new_id, [b"f", b"new-" + node.encode()]]]]]
        assert r.xack("s", "g", new_id) == 1
    # a deadline in milliseconds, the null array at it
    started = time.monotonic()
    timed = _Call(c.port(leader), "XREAD", "BLOCK", "200", "STREAMS", "s", "$")
    timed.join(20)
    assert timed.reply is None and timed.done_at - started >= 0.2


def test_a_client_blocked_on_a_follower_is_served_after_the_leader_fails(make_cluster: Any) -> None:
    """Raft: a client blocked on a follower keeps waiting through a failover (its next attempt goes
    to whichever node leads) and gets the element pushed through the new leader."""
    c = make_cluster(3, start=False, election_timeout_ms=300)
    c.config.mode = "raft"
    c.config.save(c.path)
    c.start()
    leader = c.leader()
    follower = next(n for n in c.procs if n != leader)
    waiting = _Call(c.port(follower), "BLPOP", "jobs", "0")
    # parked, its first attempt answered: an attempt still on its way to the leader when the
    # leader dies ends as that forwarded LPOP does ("may or may not be applied"), not waiting
    wait_for(lambda: int(c.client(follower).info("clients")["replikv_blocked_parked"]) == 1, 10,
             f"the BLPOP parked on {follower}")
    c.kill(leader)
    new_leader = wait_for(lambda: (n := c.leader()) != leader and n, 30, "a new leader")
    assert waiting.is_alive()  # still blocked, not failed
    c.client(new_leader).rpush("jobs", "after-failover")
    waiting.join(30)
    assert waiting.reply == [b"jobs", b"after-failover"]
