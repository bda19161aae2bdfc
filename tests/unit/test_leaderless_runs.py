"""Pipelined runs of plain SETs on a leaderless node (LeaderlessRunner._write_run): each SET as
``_write_one`` runs it, with the level, the alive set and the clock taken once per run, and a SET
that is not the common case (a replica believed down, a level that cannot be met) through
``_write_one`` in its place: the replies, their order, the data and the hints are those of the
same commands sent one by one.

A real LeaderlessRunner in-process (test_pipelined_runs.offline_node: no sockets, the loop and
the peers faked).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from replikv.core.dynamo import messages as dm
from replikv.core.dynamo.replica import Replica
from replikv.core.dynamo.ring import Ring
from replikv.core.resp import encode_command
from replikv.runtime.leaderless import LeaderlessRunner
from tests.unit.test_pipelined_runs import Client, offline_node

RUN = [["SET", f"k{i % 5}", f"v{i}"] for i in range(12)]


class Handle:
    def cancel(self) -> None:
        pass


class Down:
    """FakePeers with some peers not connected."""

    def __init__(self, peers: Any, down: set[str]) -> None:
        self.peers, self.down = peers, down

    def __getattr__(self, name: str) -> Any:
        return getattr(self.peers, name)

    def connected(self, peer: str) -> bool:
        return peer not in self.down


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., Client]]:
    made: list[LeaderlessRunner] = []

    def make(level: str = "one", down: frozenset[str] = frozenset()) -> Client:
        node: LeaderlessRunner = offline_node(LeaderlessRunner, "leaderless", tmp_path / f"c{len(made)}")
        made.append(node)
        node.transport = Down(node.transport, set(down))  # type: ignore[assignment]
        node.loop.time = lambda: 100.0  # a write that waits for replicas arms the request timer
        node.loop.call_at = lambda at, fn: Handle()
        client = Client(node)
        assert client.send(["CONSISTENCY", "WRITE", level], ["CONSISTENCY", "READ", "one"]) == ["OK", "OK"]
        client.send(["SET", "w", "0"])  # execute_batch knows a spelling for runs once it ran it
        return client

    yield make
    for node in made:
        node.wal.close()


def alive_calls(node: LeaderlessRunner) -> list[int]:
    calls = [0]
    alive = node._alive

    def counted() -> set[str]:
        calls[0] += 1
        return alive()

    node._alive = counted  # type: ignore[method-assign]
    return calls


def test_a_run_of_sets_is_taken_once_and_replies_as_one_by_one(make_client) -> None:
    piped, alone = make_client(), make_client()
    piped_alive, alone_alive = alive_calls(piped.node), alive_calls(alone.node)
    assert piped.send(*RUN) == alone.one_by_one(*RUN) == ["OK"] * len(RUN)
    assert piped_alive[0] == 1 and alone_alive[0] == len(RUN)  # the run's alive set, once
    reads = [["MGET", *[f"k{i}" for i in range(5)]]]
    assert piped.send(*reads) == alone.send(*reads) == [[b"v10", b"v11", b"v7", b"v8", b"v9"]]
    assert piped.node.sm.data == alone.node.sm.data
    assert piped.node.stats["writes_coordinated"] == alone.node.stats["writes_coordinated"] == len(RUN) + 1
    # each SET went to both other replicas (frames: one per peer and loop iteration)
    assert {to for to, _ in piped.node.transport.sent} == {"n2", "n3"}


def test_a_set_with_a_replica_down_takes_the_general_path_in_its_place(make_client) -> None:
    piped, alone = make_client(down=frozenset({"n3"})), make_client(down=frozenset({"n3"}))
    assert piped.send(*RUN) == alone.one_by_one(*RUN) == ["OK"] * len(RUN)
    held = [sum(c.node.hints.pending(n) for n in c.node.hints.nodes()) for c in (piped, alone)]
    assert held[0] == held[1] == 6  # n3's hints: the last state of each key (w and the run's 5)


def test_refusals_in_a_run_come_in_their_place(make_client) -> None:
    piped, alone = make_client(level="4"), make_client(level="4")
    replies = piped.send(*RUN[:3])
    assert replies == alone.one_by_one(*RUN[:3])
    assert all(isinstance(r, Exception) and "needs 4 replicas" in str(r) for r in replies)
    assert piped.node.stats["writes_coordinated"] == 0 and piped.node.store.data == {}
    (refused,) = piped.send(["SET", "w", "0"])  # the warm-up SET was refused the same way
    assert "needs 4 replicas" in str(refused)


def counted(node: LeaderlessRunner, name: str) -> list[list[Any]]:
    """Record the arguments of each call of ``node.<name>`` (still carried out)."""
    calls: list[list[Any]] = []
    real = getattr(node, name)

    def record(*args: Any) -> Any:
        calls.append(list(args))
        return real(*args)

    setattr(node, name, record)
    return calls


def test_a_runs_changed_keys_move_the_view_and_watch_index_once_at_its_end(make_client) -> None:
    piped, alone = make_client(), make_client()
    piped.node.watch_position()  # a WATCH taken now (it arms the index: kv/watch.py "At rest") ...
    before = piped.node.applied_index + len(piped.node.entries)  # ... is at most this position
    piped_changed, alone_changed = counted(piped.node, "_changed"), counted(alone.node, "_changed")
    assert piped.send(*RUN) == alone.one_by_one(*RUN)
    assert [sorted(keys) for (keys,) in piped_changed] == [[f"k{i}".encode() for i in range(5)]]  # once
    assert len(alone_changed) == len(RUN)
    last = piped.node.sm.changes.last
    assert all(last[f"k{i}".encode()] > before for i in range(5))  # a WATCH before the run aborts its EXEC
    assert piped.node.sm.data == alone.node.sm.data  # the view as one by one


def test_a_run_that_waits_for_replicas_arms_the_timer_once(make_client) -> None:
    piped = make_client()
    assert piped.send(["CONSISTENCY", "WRITE", "quorum"]) == ["OK"]  # the fake peers never answer: writes wait
    node = piped.node
    waiting = len(node.pending)  # the warm-up SET's, at ONE, still waits for its acks (hints)
    arms = counted(node, "_arm_timer")
    piped.conn.data_received(b"".join(encode_command(["SET", f"k{i}", "v"]) for i in range(8)))
    node.loop.run()  # type: ignore[attr-defined]
    # the eight SETs (one replica set) are one write: one request waits, holding the eight replies
    assert len(node.pending) == waiting + 1 and len(arms) == 1  # one arming (the first's)
    (batch,) = [p for p in node.pending.values() if p.slots is not None]
    assert len(batch.slots) == 8 and [data for _, data in batch.slots] == [b"+OK\r\n"] * 8
    first = min(node.coord.speculative_threshold_us(), node.coord.timeout_us)
    assert arms == [[100.0 + first / 1e6]]


def test_a_runs_placement_checks_run_once_per_distinct_placement(make_client) -> None:
    piped, alone = make_client(), make_client()
    piped_needed = counted(piped.node, "_needed")
    ms = piped.node.replica.membership
    placements = {ms.write_placement(argv[1].encode()) for argv in RUN}
    assert piped.send(*RUN) == alone.one_by_one(*RUN)
    assert len(piped_needed) == len(placements) < len(RUN)  # once per placement, not per SET
    assert piped.node.sm.data == alone.node.sm.data
    assert piped.node.stats["writes_coordinated"] == alone.node.stats["writes_coordinated"]


def test_a_runs_sets_are_one_write_to_each_replica_and_their_replies_wait_for_its_level(make_client) -> None:
    """One dot for the run's SETs of one replica set: one WAL entry, one delta to each other replica
    (every mutation, in order), one request; at QUORUM the twelve replies wait for one replica's
    ack of it, then leave in order; a replica that applies the delta holds what this node does."""
    piped = make_client()
    assert piped.send(["CONSISTENCY", "WRITE", "quorum"]) == ["OK"]
    node = piped.node
    sent, logged = len(node.transport.sent), node.wal.last_index
    piped.conn.data_received(b"".join(encode_command(c) for c in RUN))
    node.loop.run()  # type: ignore[attr-defined]
    assert piped.transport.written == []  # every reply waits for the level
    assert node.wal.last_index == logged + 1  # one WAL entry
    puts = {to: dm.decode(frame) for to, frame in node.transport.sent[sent:]}
    assert sorted(puts) == ["n2", "n3"] and puts["n2"] == puts["n3"]
    put = puts["n2"]
    assert isinstance(put, dm.Put) and put.delta and len(node.pending) == 1
    n2 = Replica("n2", Ring(["n1", "n2", "n3"], 3, node.options.vnodes), conflicts="lww", timeout_us=10**9,
                 rng=random.Random(1), ae_interval_ms=0)
    n2.step("n1", dm.Hello(features=(dm.FEATURE_PUT_MUT,)), 0, 0)
    n2.step("n1", put, 1, 1000)
    assert {k: n2.store.key_blob(k) for k in n2.store.stored_keys()} == {
        k: node.store.key_blob(k) for k in n2.store.stored_keys()} and len(n2.store.ctx) == 5
    node._on_frame("n2", dm.encode(dm.PutAck(req=put.req, ok=True)))
    assert piped.replies() == ["OK"] * len(RUN)
    assert not node.pending or all(p.slots is None for p in node.pending.values())


# -- single SETs of one loop iteration, across connections (LeaderlessRunner._join) ----------------

def clients_at(make_client: Callable[..., Client], level: str, n: int) -> list[Client]:
    """``n`` connections to one node, each writing at ``level``."""
    first = make_client()
    clients = [first] + [Client(first.node) for _ in range(n - 1)]
    for c in clients:
        assert c.send(["CONSISTENCY", "WRITE", level], ["CONSISTENCY", "READ", "one"]) == ["OK", "OK"]
    return clients


def test_single_sets_of_several_connections_in_one_iteration_are_one_write(make_client) -> None:
    """Three connections' single SETs read in one loop iteration: one WAL entry, one delta to each
    other replica holding all three, one request; at QUORUM each reply waits for one replica's ack
    of it; a replica that applies the delta holds what this node does."""
    clients = clients_at(make_client, "quorum", 3)
    node = clients[0].node
    sent, logged, waiting = len(node.transport.sent), node.wal.last_index, len(node.pending)
    for i, c in enumerate(clients):
        c.conn.data_received(encode_command(["SET", f"j{i}", f"v{i}"]))
    node.loop.run()  # type: ignore[attr-defined]
    assert all(c.transport.written == [] for c in clients)  # the replies wait for the level
    assert node.wal.last_index == logged + 1 and len(node.pending) == waiting + 1
    puts = {to: dm.decode(frame) for to, frame in node.transport.sent[sent:]}
    assert sorted(puts) == ["n2", "n3"] and puts["n2"] == puts["n3"]
    put = puts["n2"]
    assert isinstance(put, dm.Put) and put.delta
    n2 = Replica("n2", Ring(["n1", "n2", "n3"], 3, node.options.vnodes), conflicts="lww", timeout_us=10**9,
                 rng=random.Random(1), ae_interval_ms=0)
    n2.step("n1", dm.Hello(features=(dm.FEATURE_PUT_MUT,)), 0, 0)
    n2.step("n1", put, 1, 1000)
    keys = [f"j{i}".encode() for i in range(3)]
    assert [n2.store.key_blob(k) for k in keys] == [node.store.key_blob(k) for k in keys]
    node._on_frame("n2", dm.encode(dm.PutAck(req=put.req, ok=True)))
    assert [c.replies() for c in clients] == [["OK"]] * 3
    assert [clients[0].send(["GET", f"j{i}"]) for i in range(3)] == [[f"v{i}".encode()] for i in range(3)]


def test_single_sets_at_one_are_one_write_answered_at_the_wal_commit(make_client) -> None:
    clients = clients_at(make_client, "one", 3)
    node = clients[0].node
    logged = node.wal.last_index
    for i, c in enumerate(clients):
        c.conn.data_received(encode_command(["SET", f"j{i}", f"v{i}"]))
    assert all(c.transport.written == [] for c in clients)  # held for the WAL commit
    node.loop.run()  # type: ignore[attr-defined]
    assert node.wal.last_index == logged + 1
    assert [c.replies() for c in clients] == [["OK"]] * 3


def test_anything_that_touches_the_replica_or_the_view_ends_the_open_batch_first(make_client) -> None:
    """A peer frame between two connections' SETs ends the first's batch before the replica steps
    (``Replica.begin_batch``'s rule): two writes. A read of the view (another connection's GET in
    the same iteration) and a WATCH see the joined write."""
    a, b = clients_at(make_client, "one", 2)
    node = a.node
    logged = node.wal.last_index
    a.conn.data_received(encode_command(["SET", "k", "1"]))
    assert node._open is not None
    node._on_frame("n2", dm.encode(dm.PutAck(req=10**6, ok=True)))  # an ack for nothing: still a step
    assert node._open is None and len(node.entries) == 1
    b.conn.data_received(encode_command(["SET", "k", "2"]))
    node.loop.run()  # type: ignore[attr-defined]
    assert node.wal.last_index == logged + 2
    position = node.watch_position(b"k")  # a WATCH taken before the next SET
    a.conn.data_received(encode_command(["SET", "k", "3"]))
    b.conn.data_received(encode_command(["GET", "k"]))  # the view shows the joined SET
    node.loop.run()  # type: ignore[attr-defined]
    assert b.replies()[-1] == b"3"
    assert node.sm.changes.last[b"k"] > position  # its EXEC sees the SET


def test_an_open_batch_ends_at_its_bound(make_client, monkeypatch) -> None:
    import replikv.runtime.leaderless as leaderless

    clients = clients_at(make_client, "one", 3)
    node = clients[0].node
    logged = node.wal.last_index
    clients[0].conn.data_received(encode_command(["SET", "j0", "v"]))
    (first,) = node._open.values()
    monkeypatch.setattr(leaderless, "OPEN_BATCH_MAX_MUTS", 2 * len(first.batch.muts))  # two SETs' worth
    clients[1].conn.data_received(encode_command(["SET", "j1", "v"]))
    assert node._open == {} and len(node.entries) == 1  # ended at the bound
    clients[2].conn.data_received(encode_command(["SET", "j2", "v"]))
    node.loop.run()  # type: ignore[attr-defined]
    assert node.wal.last_index == logged + 2
    assert [c.replies() for c in clients] == [["OK"]] * 3


def test_a_run_of_large_values_ends_its_batch_at_the_bytes_bound(make_client) -> None:
    """Issue 9: eight SETs of 300 KB in one run, at QUORUM, are two writes of four SETs (a batch
    ends once its arguments reach OPEN_BATCH_MAX_BYTES), not one delta of 2.4 MB; under a frame
    limit of 1.5 MB each leaves in a frame of its own. A replica that applies both holds what
    this node does, and its acks release the eight replies in order."""
    import replikv.runtime.leaderless as leaderless

    piped = make_client()
    assert piped.send(["CONSISTENCY", "WRITE", "quorum"]) == ["OK"]
    node = piped.node
    node.transport.max_frame_bytes = 1_500_000
    value = 300_000
    run = [["SET", f"k{i}", chr(65 + i) * value] for i in range(8)]
    sent, logged = len(node.transport.sent), node.wal.last_index
    piped.conn.data_received(b"".join(encode_command(c) for c in run))
    node.loop.run()  # type: ignore[attr-defined]
    assert piped.transport.written == [] and node.wal.last_index == logged + 2  # two writes
    frames = node.transport.sent[sent:]
    assert all(len(f) <= node.transport.max_frame_bytes for _, f in frames)
    puts = [dm.decode(f) for to, f in frames if to == "n2"]
    assert [type(p) for p in puts] == [dm.Put, dm.Put]  # the fake peers never announced Puts
    assert all(len(p.delta) < leaderless.OPEN_BATCH_MAX_BYTES + value for p in puts)
    n2 = Replica("n2", Ring(["n1", "n2", "n3"], 3, node.options.vnodes), conflicts="lww", timeout_us=10**9,
                 rng=random.Random(1), ae_interval_ms=0)
    n2.step("n1", dm.Hello(features=(dm.FEATURE_PUT_MUT,)), 0, 0)
    for p in puts:
        n2.step("n1", p, 1, 1000)
    keys = [f"k{i}".encode() for i in range(8)]
    assert [n2.store.key_blob(k) for k in keys] == [node.store.key_blob(k) for k in keys]
    node._on_frame("n2", dm.encode(dm.PutAck(req=puts[1].req, ok=True)))
    assert piped.replies() == []  # the later batch's replies wait for the earlier's
    node._on_frame("n2", dm.encode(dm.PutAck(req=puts[0].req, ok=True)))
    assert piped.replies() == ["OK"] * 8
    assert piped.send(["GET", "k7"]) == [b"H" * value]
