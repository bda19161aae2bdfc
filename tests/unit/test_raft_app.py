"""runtime/raft_app.py: a stored raft snapshot, ``[voters, learners, app]`` or
``[voters, learners]`` followed by the app part (one received from the leader, written as it
streamed in: runtime/raft_group.py ``_FileSink``), is split without copying ``app`` (a view
into the stored bytes, which may be a mapped file)."""

from __future__ import annotations

import msgpack
import pytest

from replikv.core.raft.messages import Config
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from replikv.runtime.raft_app import (app_snapshot, app_snapshot_pieces, restore_app, split_stored, stored_head,
                                      stored_pieces, unpack_app)


@pytest.mark.parametrize("size", [0, 10, 255, 256, 70_000])  # bin 8, bin 16 and bin 32 headers
def test_split_stored_returns_the_app_as_a_view(size: int) -> None:
    app = bytes(range(256)) * (size // 256) + bytes(size % 256)
    stored = msgpack.packb([[1, 2, 3], [4], app])
    voters, learners, view = split_stored(stored)
    assert (voters, learners, bytes(view)) == ([1, 2, 3], [4], app)
    assert isinstance(view, memoryview) and view.obj is stored  # no copy


@pytest.mark.parametrize("size", [0, 10, 70_000])
def test_a_snapshot_stored_as_it_streamed_in_is_its_head_then_the_app(size: int) -> None:
    app = bytes(range(256)) * (size // 256) + bytes(size % 256)
    stored = stored_head(Config(voters=frozenset({3, 1, 2}), learners=frozenset({4}))) + app
    voters, learners, view = split_stored(stored)
    assert (voters, learners, bytes(view)) == ([1, 2, 3], [4], app)
    assert isinstance(view, memoryview) and view.obj is stored  # no copy


@pytest.mark.parametrize("bad", [
    msgpack.packb([[1], [2], [3], b"x"]),  # four fields
    msgpack.packb([[1], 2]) + b"app",  # learners not a list
    msgpack.packb([[1], [2], "text"]),  # app not bytes
    msgpack.packb([[1], [2], b"abc"])[:-1],  # app cut short
    msgpack.packb([1, [2], b"abc"]),  # voters not a list
    b"\x93",  # an array header and nothing else
])
def test_split_stored_refuses_other_shapes(bad: bytes) -> None:
    with pytest.raises(ValueError):
        split_stored(bad)


@pytest.mark.parametrize("extra", [0, 1, 3])  # the unsharded app, and a sharded group's longer one
@pytest.mark.parametrize("size", [0, 10, 70_000])
def test_unpack_app_gives_the_dump_as_a_view_and_the_rest_unpacked(size: int, extra: int) -> None:
    dump = bytes(range(256)) * (size // 256) + bytes(size % 256)
    fields = [dump, [[1, 2, b"r", 3]], [7, [[b"k", 5]]], *[[i] for i in range(extra)]]
    app = msgpack.packb(fields)
    got = unpack_app(app)
    assert [bytes(got[0]), *got[1:]] == fields == [msgpack.unpackb(app)[0], *msgpack.unpackb(app)[1:]]
    assert isinstance(got[0], memoryview) and got[0].obj is app  # the dump is not copied


def test_unpack_app_over_sixteen_fields_uses_the_array16_header() -> None:
    fields = [b"dump", *range(20)]
    got = unpack_app(msgpack.packb(fields))
    assert [bytes(got[0]), *got[1:]] == fields


def test_restore_app_from_unpacked_fields_is_the_state_it_was_taken_from() -> None:
    sm = StateMachine()
    sm.apply([[b"SET", b"k", b"v" * 70_000]], ApplyContext(1, "", 1))
    restored, _sessions = restore_app(unpack_app(app_snapshot(sm, [])), 1)
    assert restored.data == sm.data


@pytest.mark.parametrize("bad", [
    msgpack.packb({"a": 1}),  # not an array
    msgpack.packb([]),  # no dump
    msgpack.packb(["text", 1]),  # dump not bytes
    msgpack.packb([b"abc", 1])[:-2],  # dump cut short
])
def test_unpack_app_refuses_other_shapes(bad: bytes) -> None:
    with pytest.raises(ValueError):
        unpack_app(bad)


@pytest.mark.parametrize("size", [0, 10, 255, 256, 70_000])  # bin 8, bin 16 and bin 32 headers
def test_the_app_in_pieces_is_the_app_packed_whole(size: int) -> None:
    sm = StateMachine()
    if size:
        sm.apply([[b"SET", b"k", b"v" * size]], ApplyContext(1, "", 1))
    sessions = [(7, 3, b"+OK\r\n", 1)]
    dump = sm.snapshot()
    whole = msgpack.packb([dump, [(7, 3, b"+OK\r\n", 1)], sm.changes.state()])
    pieces = app_snapshot_pieces(sm, sessions)
    assert b"".join(pieces) == whole == app_snapshot(sm, sessions)
    assert dump in pieces  # the dump is written as it is, not copied into a packed array


def test_a_snapshot_stored_in_pieces_splits_into_its_members_and_app() -> None:
    sm = StateMachine()
    sm.apply([[b"SET", b"k", b"v" * 1000]], ApplyContext(1, "", 1))
    config = Config(voters=frozenset({2, 1}), learners=frozenset({5}))
    voters, learners, app = split_stored(b"".join(stored_pieces(config, sm, [])))
    assert (voters, learners, bytes(app)) == ([1, 2], [5], app_snapshot(sm, []))
    restored, _ = restore_app(unpack_app(app), 1)
    assert restored.data == sm.data
