"""The leaderless node's view is filled when it is read (LeaderlessRunner.sm): a key written
several times between two reads is filled once, at most VIEW_DUE_KEYS keys wait, and whatever
reads the view (commands, WATCH, INFO, expiry, a peer's writes applied here) sees every write.

A real LeaderlessRunner in-process (test_pipelined_runs.offline_node: no sockets, the loop and
the peers faked), its levels at ONE so that its own replica's ack completes a write.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from replikv.core.crdt.keyed import KeyedStore, write_delta
from replikv.core.dynamo import messages as dm
from replikv.kv.crdt_view import materialize
from replikv.kv.crdt_writes import translate
from replikv.kv.state_machine import StateMachine
from replikv.runtime import leaderless
from replikv.runtime.leaderless import LeaderlessRunner
from tests.unit.test_pipelined_runs import Client, check_watch_index_at_rest, offline_node


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[[], Client]]:
    made: list[LeaderlessRunner] = []

    def make() -> Client:
        node: LeaderlessRunner = offline_node(LeaderlessRunner, "leaderless", tmp_path / f"c{len(made)}")
        made.append(node)
        client = Client(node)
        assert client.send(["CONSISTENCY", "WRITE", "one"], ["CONSISTENCY", "READ", "one"]) == ["OK", "OK"]
        return client

    yield make
    for node in made:
        node.wal.close()


@pytest.fixture
def filled(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every key the runner fills in its view, in order."""
    keys: list[bytes] = []

    def counting(store: Any, view: Any, ks: Any) -> None:
        keys.extend(ks)
        materialize(store, view, ks)

    monkeypatch.setattr(leaderless, "materialize", counting)
    return keys


def whole_view(node: LeaderlessRunner) -> StateMachine:
    """The view built afresh from the store: what the node's view must equal."""
    view = StateMachine()
    materialize(node.store, view, list(node.store.keys()))
    return view


def test_a_key_written_often_between_reads_is_filled_once_and_read_as_written(make_client, filled) -> None:
    client = make_client()
    node = client.node
    assert client.send(["SET", "a", "1"], ["SET", "a", "2"], ["SET", "b", "x"], ["SET", "a", "3"],
                       ["DEL", "b"], ["SET", "c", "y", "EX", "100"]) == ["OK", "OK", "OK", "OK", 1, "OK"]
    assert filled == []  # nothing has read the view yet
    assert client.send(["GET", "a"], ["MGET", "a", "b", "c"], ["EXISTS", "b"], ["DBSIZE"]) == \
        [b"3", [b"3", None, b"y"], 0, 2]
    assert sorted(filled) == [b"a", b"b", b"c"]  # once each (one per write before: 6)
    assert client.send(["TTL", "c"]) == [100]
    view = whole_view(node)
    assert node.sm.data == view.data and node.sm.expires == view.expires
    assert len(filled) == 3


def test_watch_info_and_expiry_see_writes_not_yet_filled(make_client) -> None:
    client = make_client()
    node = client.node
    assert client.send(["WATCH", "w"]) == ["OK"]
    assert client.send(["SET", "w", "1"], ["SET", "t", "v", "PX", "50"]) == ["OK", "OK"]
    assert node._view_due  # the view lags the store here
    # the WATCH index moved with the write, not with the fill
    assert client.send(["MULTI"], ["GET", "w"], ["EXEC"]) == ["OK", "QUEUED", None]
    client.send(["SET", "u", "2"])
    assert node._view_due
    (text,) = client.send(["INFO", "keyspace"])
    assert b"keys=3" in text and not node._view_due
    client.send(["SET", "t2", "v", "PX", "50"])
    assert node._view_due
    deadline = node.store.data[b"t2"].deadline()
    assert deadline is not None
    assert node.sm.expired_keys(deadline + 1, 200) == [b"t", b"t2"]  # the expiry tick's read


def test_past_the_bound_the_view_is_filled_unasked(make_client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leaderless, "VIEW_DUE_KEYS", 2)
    client = make_client()
    node = client.node
    client.send(["SET", "a", "1"], ["SET", "b", "1"])
    assert len(node._view_due) == 2 and node._sm.data == {}
    client.send(["SET", "c", "1"])  # a third key waiting: all are filled
    assert not node._view_due and node._sm.data == {b"a": b"1", b"b": b"1", b"c": b"1"}


def test_a_peers_writes_applied_here_are_read_as_written(make_client, filled) -> None:
    client = make_client()
    node = client.node
    peer, rng = KeyedStore(), random.Random(3)
    blobs = []
    for i, (key, value) in enumerate([(b"p", b"1"), (b"q", b"2"), (b"p", b"3")]):
        muts, _ = translate(peer, [b"SET", key, value], 1_000, rng)
        hlc = 10**12 + i
        blobs.append((i + 1, write_delta("n2", hlc, muts, {key: peer.ctx.get(key, {})})))
        peer.apply_write("n2", hlc, muts, 1_000)
    node._run(node.replica.step("n2", dm.Puts(writes=tuple(blobs)), 1_000, 1_000))
    assert filled == []
    assert client.send(["MGET", "p", "q"]) == [[b"3", b"2"]]
    assert sorted(filled) == [b"p", b"q"]
    assert node.sm.data == whole_view(node).data


def test_the_watch_index_records_changes_only_while_a_position_may_be_read(make_client) -> None:
    """kv/watch.py "At rest" in leaderless mode (``check_watch_index_at_rest``), the peer's writes
    arriving as ``Puts``."""
    a = make_client()
    node = a.node
    b, c = Client(node), Client(node)
    for other in (b, c):
        assert other.send(["CONSISTENCY", "WRITE", "one"], ["CONSISTENCY", "READ", "one"]) == ["OK", "OK"]
    peer, rng = KeyedStore(), random.Random(3)

    def peer_write(i: int, key: bytes, value: bytes) -> None:
        muts, _ = translate(peer, [b"SET", key, value], 1_000, rng)
        hlc = 10**12 + i
        blob = write_delta("n2", hlc, muts, {key: peer.ctx.get(key, {})})
        peer.apply_write("n2", hlc, muts, 1_000)
        node._run(node.replica.step("n2", dm.Puts(writes=((i, blob),)), 1_000, 1_000))

    check_watch_index_at_rest(node, a, b, c, peer_write)


def test_the_ticks_watch_index_check_leaves_the_view_to_be_filled_when_read(make_client, filled) -> None:
    """``rest_change_index`` runs at every tick: it reads the WATCH index alone
    (``LeaderlessRunner.change_index``), so a key written in several ticks is still filled once."""
    client = make_client()
    node = client.node
    assert client.send(["WATCH", "a"]) == ["OK"]
    assert client.send(["SET", "a", "1"], ["SET", "b", "1"], ["UNWATCH"]) == ["OK", "OK", "OK"]
    node.rest_change_index()  # no WATCH held: the index goes to rest
    assert not node.change_index.watching
    client.send(["SET", "a", "2"])
    node.rest_change_index()
    assert filled == [] and set(node._view_due) == {b"a", b"b"}
    assert client.send(["MGET", "a", "b"]) == [[b"2", b"1"]]
    assert sorted(filled) == [b"a", b"b"]
