"""Pipelined runs of GET / plain SET (BaseRunner.execute_batch): the leader-follower leader
runs them as a run, and everything a client can see is what running each command on its own
gives: replies and their order, the data, the log, INFO commandstats / errorstats, ACL
refusals, MULTI/WATCH, SLOWLOG.

Each test drives a real LeaderFollowerRunner in-process through ClientConnection: a read is
one ``data_received``; the event loop's ``call_soon`` callbacks (the group commit) run when
the test says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from replikv.config import ClusterConfig, NodeAddress, NodeOptions
from replikv.core.resp import ReplyParser, encode_command
from replikv.core.shipping.node import FOLLOWER
from replikv.runtime.forwarding import FORWARD, FORWARD_REPLY
from replikv.runtime.leader_follower import LeaderFollowerRunner
from replikv.runtime.metrics import parse_info
from replikv.runtime.resp_server import ClientConnection


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str) -> object:
        return None if name == "socket" else ("127.0.0.1", 5555)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class FakeLoop:
    """``call_soon`` only: the runner schedules its group commit (``_flush``) with it."""

    def __init__(self) -> None:
        self.callbacks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self.callbacks.append((fn, args))

    def run(self) -> None:
        while self.callbacks:
            callbacks, self.callbacks = self.callbacks, []
            for fn, args in callbacks:
                fn(*args)


class FakePeers:
    def __init__(self, max_frame_bytes: int) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.max_frame_bytes = max_frame_bytes  # the runtime cuts its frames to it (PeerTransport's)

    def send(self, to: str, payload: bytes) -> bool:
        self.sent.append((to, payload))
        return True

    def buffered_bytes(self, to: str) -> int:
        return 0

    def connected(self, peer: str) -> bool:
        return True


class Client:
    """One client connection to ``node``; ``send`` is one read holding every command given."""

    def __init__(self, node: LeaderFollowerRunner) -> None:
        self.node = node
        self.transport = FakeTransport()
        self.conn = ClientConnection(node)
        self.conn.connection_made(self.transport)  # type: ignore[arg-type]
        self.parser = ReplyParser()

    def send(self, *commands: list[Any]) -> list[Any]:
        """The replies to ``commands`` sent in one read, once the group commit ran."""
        self.conn.data_received(b"".join(encode_command(c) for c in commands))
        self.node.loop.run()  # type: ignore[attr-defined]
        replies = self.replies()
        assert len(replies) == len(commands), "one reply per command"
        return replies

    def replies(self) -> list[Any]:
        """What this connection has been answered since its last ``send`` or ``replies``."""
        self.parser.feed(b"".join(self.transport.written))
        self.transport.written.clear()
        return self.parser.replies()

    def one_by_one(self, *commands: list[Any]) -> list[Any]:
        """The same commands, each in a read of its own (``BaseRunner.execute`` each)."""
        return [reply for c in commands for reply in self.send(c)]


def check_watch_index_at_rest(node: Any, a: Client, b: Client, c: Client,
                              peer_write: Callable[[int, bytes, bytes], None]) -> None:
    """kv/watch.py "At rest", on a node whose WATCH and blocked commands are decided where their
    positions were handed out (multi-leader, leaderless): with no WATCH held and no command
    blocked, writes of this node and of its peers (``peer_write(i, key, value)``: the peer's
    ``i``-th write, delivered at once) leave the WATCH index empty; a WATCH or a blocked command
    arms it, so a write after it still aborts the EXEC or wakes the command; the tick puts it
    back at rest once nothing holds a position (``BaseRunner.rest_change_index``)."""
    assert a.send(["SET", "k", "1"], ["INCR", "n"]) == ["OK", 1]
    peer_write(1, b"p", b"v")
    assert a.send(["GET", "p"]) == [b"v"] and node.sm.changes.last == {}  # at rest: nothing recorded
    assert b.send(["WATCH", "k"]) == ["OK"]
    assert a.send(["SET", "k", "2"]) == ["OK"]
    node.rest_change_index()  # b holds a WATCH: stays armed
    peer_write(2, b"q", b"v")
    assert a.send(["GET", "q"]) == [b"v"] and set(node.sm.changes.last) == {b"k", b"q"}
    assert b.send(["MULTI"], ["GET", "k"], ["EXEC"]) == ["OK", "QUEUED", None]  # k written after WATCH
    node.rest_change_index()  # the EXEC dropped b's WATCH: nothing holds a position
    assert node.sm.changes.last == {} and not node.sm.changes.watching
    assert b.send(["WATCH", "q"]) == ["OK"]  # a WATCH after the rest, then a peer's write of q
    peer_write(3, b"q", b"w")
    assert b.send(["MULTI"], ["GET", "q"], ["EXEC"]) == ["OK", "QUEUED", None]
    c.conn.data_received(encode_command(["BLPOP", "l", "0"]))  # blocked: holds a position
    node.loop.run()
    node.rest_change_index()
    assert node.sm.changes.watching
    assert a.send(["RPUSH", "l", "x"]) == [1]
    assert c.replies() == [[b"l", b"x"]]
    node.rest_change_index()
    assert not node.sm.changes.watching


def offline_node(runner: Callable[[ClusterConfig, str], Any], mode: str, root: Path) -> Any:
    """Node n1 of a 3-node ``mode`` cluster under ``root``, in-process: no sockets, the loop
    and the peers faked (the group commit runs when a test says so)."""
    nodes = {f"n{i}": NodeAddress(f"n{i}", "127.0.0.1", 7000 + i, 17000 + i, str(root / f"n{i}"))
             for i in (1, 2, 3)}
    config = ClusterConfig(mode=mode, secret="s", initial_leader="n1", nodes=nodes, options=NodeOptions())
    node = runner(config, "n1")
    node.loop = FakeLoop()
    node.transport = FakePeers(config.options.max_frame_bytes)
    return node


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[[], LeaderFollowerRunner]]:
    made: list[LeaderFollowerRunner] = []

    def make() -> LeaderFollowerRunner:
        node: LeaderFollowerRunner = offline_node(LeaderFollowerRunner, "leader-follower",
                                                  tmp_path / f"cluster{len(made)}")
        made.append(node)
        return node

    yield make
    for node in made:
        node.wal.close()


def info(client: Client, section: str) -> dict[str, str]:
    (text,) = client.send(["INFO", section])
    return parse_info(text.decode())[section]


def commandstat(client: Client, name: str) -> dict[str, str]:
    row = info(client, "commandstats")[f"cmdstat_{name}"]
    return dict(part.split("=") for part in row.split(","))


MIXED = [
    ["SET", "a", "1"], ["SET", "b", "2"], ["SET", "c", "3"],      # a run of plain SETs
    ["GET", "a"], ["GET", "missing"], ["GET", "b"],              # a run of GETs
    ["INCR", "a"],                                                # not runnable
    ["get", "a"], ["GET", "a"],                                   # spellings differ: no run of 2
    ["SET", "d", "4", "EX", "100"], ["SET", "e", "5"],            # an option: only e qualifies
    ["LPUSH", "list", "x"],
    ["GET", "list"], ["GET", "a"], ["GET", "list"],               # WRONGTYPE inside a run
    ["GET", "a", "extra"], ["GET", "b"],                          # wrong arity ends the run
    ["NOSUCH", "x"],
    ["SET", "a", "10"], ["SET", "list", "y"], ["GET", "list"],    # SET over a list: it is a SET
    ["MGET", "a", "b", "c", "list"],
]


def test_a_pipeline_mixing_runs_and_other_commands_replies_and_counts_as_one_by_one(make_node) -> None:
    piped, alone = Client(make_node()), Client(make_node())
    assert piped.send(*MIXED) == alone.one_by_one(*MIXED)
    for name in ("get", "set", "incr", "lpush", "mget"):
        got, want = commandstat(piped, name), commandstat(alone, name)
        for field in ("calls", "rejected_calls", "failed_calls"):
            assert got[field] == want[field], (name, field)
    assert info(piped, "errorstats") == info(alone, "errorstats")
    # INFO itself counts one more call on each; the totals of everything before must agree
    assert info(piped, "stats")["total_commands_processed"] == info(alone, "stats")["total_commands_processed"]
    # the same data (d's TTL is absolute, from each run's clock: only which keys have one)
    assert piped.node.sm.data == alone.node.sm.data
    assert set(piped.node.sm.expires) == set(alone.node.sm.expires) == {b"d"}
    # every write is its own log entry, in order, as one by one
    assert piped.node.core.log.last_index == alone.node.core.log.last_index


def test_commandstats_count_every_command_of_a_pipelined_run(make_node) -> None:
    client = Client(make_node())
    client.send(*[["SET", f"k{i}", "v"] for i in range(40)])
    client.send(*[["GET", f"k{i}"] for i in range(50)])
    assert commandstat(client, "set")["calls"] == "40"
    assert commandstat(client, "get")["calls"] == "50"
    assert commandstat(client, "get")["failed_calls"] == "0"
    # two runs served as such: each spelling's first command runs alone (it makes the
    # spelling's dispatch entry, BaseRunner._runnable), the other 39 and 49 as one run each
    stats = info(client, "stats")
    assert (stats["replikv_command_runs"], stats["replikv_command_run_commands"]) == ("2", "88")


def test_a_wrongtype_error_in_the_middle_of_a_run_is_answered_in_place_and_counted(make_node) -> None:
    client = Client(make_node())
    client.send(["SET", "s", "v"], ["RPUSH", "l", "x"])
    replies = client.send(["GET", "s"], ["GET", "l"], ["GET", "s"], ["GET", "l"], ["GET", "nope"])
    assert replies[0] == b"v" and replies[2] == b"v" and replies[4] is None
    assert all(str(replies[i]).startswith("WRONGTYPE") for i in (1, 3))
    assert commandstat(client, "get")["failed_calls"] == "2"
    assert info(client, "errorstats")["errorstat_WRONGTYPE"] == "count=2"


def test_acl_refuses_each_denied_key_of_a_pipelined_run(make_node) -> None:
    node = make_node()
    admin = Client(node)
    assert admin.send(["ACL", "SETUSER", "app", "on", "nopass", "~allowed:*", "+@all"]) == ["OK"]
    app = Client(node)
    assert app.send(["AUTH", "app", "x"]) == ["OK"]
    replies = app.send(["SET", "allowed:1", "a"], ["SET", "secret", "b"], ["SET", "allowed:2", "c"],
                       ["GET", "allowed:1"], ["GET", "secret"], ["GET", "allowed:2"])
    assert [replies[i] for i in (0, 2, 3, 5)] == ["OK", "OK", b"a", b"c"]
    assert all(str(replies[i]).startswith("NOPERM") for i in (1, 4))
    assert node.sm.data.get(b"secret") is None
    assert commandstat(admin, "set")["rejected_calls"] == "1"
    assert commandstat(admin, "get")["rejected_calls"] == "1"
    # a user without the command at all: every command of the run refused
    admin.send(["ACL", "SETUSER", "reader", "on", "nopass", "~*", "+@all", "-set"])
    reader = Client(node)
    reader.send(["AUTH", "reader", "x"])
    replies = reader.send(["SET", "k1", "v"], ["SET", "k2", "v"], ["GET", "allowed:1"], ["GET", "k1"])
    assert all(str(r).startswith("NOPERM") for r in replies[:2]) and replies[2:] == [b"a", None]


def test_an_unauthenticated_pipeline_is_refused_command_by_command(make_node) -> None:
    node = make_node()
    node.acl.set_user("default", ["resetpass", ">pw"])
    client = Client(node)
    replies = client.send(["GET", "a"], ["GET", "b"], ["SET", "a", "1"], ["SET", "b", "2"])
    assert all(str(r).startswith("NOAUTH") for r in replies)
    assert node.sm.data == {}


def test_runs_inside_multi_are_queued_and_a_pipelined_run_aborts_a_watch(make_node) -> None:
    node = make_node()
    watcher, writer = Client(node), Client(node)
    assert watcher.send(["WATCH", "w"]) == ["OK"]
    writer.send(["SET", "x", "1"], ["SET", "w", "2"], ["SET", "y", "3"])
    replies = watcher.send(["MULTI"], ["SET", "a", "1"], ["SET", "b", "2"], ["GET", "a"], ["GET", "b"], ["EXEC"])
    assert replies[:5] == ["OK", "QUEUED", "QUEUED", "QUEUED", "QUEUED"]
    assert replies[5] is None  # w changed after the WATCH: the block did not run
    assert node.sm.data.get(b"a") is None
    replies = watcher.send(["MULTI"], ["SET", "a", "1"], ["SET", "b", "2"], ["GET", "a"], ["GET", "b"], ["EXEC"])
    assert replies[5] == ["OK", "OK", b"1", b"2"]


def test_replies_of_a_write_run_wait_for_the_commit_and_keep_their_order(make_node) -> None:
    node = make_node()
    client = Client(node)
    client.conn.data_received(b"".join(encode_command(c) for c in (
        ["GET", "k"], ["GET", "k"], ["SET", "k", "1"], ["SET", "k", "2"], ["GET", "k"], ["GET", "k"])))
    # the GETs before the writes are answered; the writes' replies and everything after wait
    # for the WAL commit of their batch
    assert b"".join(client.transport.written) == b"$-1\r\n$-1\r\n"
    node.loop.run()  # type: ignore[attr-defined]
    assert b"".join(client.transport.written) == b"$-1\r\n$-1\r\n+OK\r\n+OK\r\n$1\r\n2\r\n$1\r\n2\r\n"
    assert node.wal.written_index == node.core.log.last_index == 2


def test_slowlog_of_a_run_logs_every_command_when_the_run_reaches_the_threshold(make_node) -> None:
    client = Client(make_node())
    client.send(["CONFIG", "SET", "slowlog-log-slower-than", "0"], ["SLOWLOG", "RESET"])
    client.send(["SET", "a", "1"], ["SET", "b", "2"], ["GET", "a"], ["GET", "b"], ["GET", "c"])
    entries = client.send(["SLOWLOG", "GET", "-1"])[0]
    assert [e[3] for e in reversed(entries)] == [[b"SLOWLOG", b"RESET"], [b"SET", b"a", b"1"], [b"SET", b"b", b"2"],
                                                 [b"GET", b"a"], [b"GET", b"b"], [b"GET", b"c"]]
    client.send(["CONFIG", "SET", "slowlog-log-slower-than", "-1"], ["SLOWLOG", "RESET"])
    client.send(["GET", "a"], ["GET", "b"])
    assert client.send(["SLOWLOG", "LEN"]) == [0]


def test_a_follower_serves_a_run_of_reads_one_by_one(make_node) -> None:
    node = make_node()
    node.sm.data[b"k"] = b"v"
    node.core.role = FOLLOWER
    client = Client(node)
    assert client.send(["GET", "k"], ["GET", "k"], ["GET", "nope"]) == [b"v", b"v", None]
    assert commandstat(client, "get")["calls"] == "3"
    assert info(client, "stats")["replikv_command_runs"] == "0"


def test_forwarded_writes_arriving_together_are_one_batch(make_node: Callable[[], LeaderFollowerRunner]) -> None:
    """A follower's forwarded writes that reach the leader together are logged as one batch, as
    a local client's pipeline is: ``_on_frame`` takes a shared service's frame (forwarding,
    Pub/Sub: never a step-down) before it logs the batch being gathered. Logging it first made
    each forwarded write a batch of its own: a WAL write, an Append per follower and an Ack
    back each (session 30: a follower's clients got 3-6x fewer writes through than the
    leader's)."""
    node = make_node()
    c = Client(node)
    before = int(info(c, "persistence")["replikv_wal_records"])
    level = str(node.default_ack)
    for i in range(20):  # what one read of the follower's connection holds
        node._on_frame("n2", FORWARD + msgpack.packb(
            [i + 1, [[b"SET", b"k%d" % i, b"v%d" % i]], False, False, level, None, False, [], "eventual"]))
    node.loop.run()
    assert int(info(c, "persistence")["replikv_wal_records"]) - before == 1
    replies = [msgpack.unpackb(p[1:]) for _, p in node.transport.sent if p[:1] == FORWARD_REPLY]
    assert [(r[0], r[1]) for r in replies] == [(i + 1, b"+OK\r\n") for i in range(20)]
    assert c.send(["GET", "k19"]) == [b"v19"]
