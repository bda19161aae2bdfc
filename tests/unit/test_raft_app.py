"""runtime/raft_app.py: a stored raft snapshot, ``[voters, learners, app]`` or
``[voters, learners]`` followed by the app part (one received from the leader, written as it
streamed in: runtime/raft_group.py ``_FileSink``), is split without copying ``app`` (a view
into the stored bytes, which may be a mapped file)."""

from __future__ import annotations

import msgpack
import pytest

from replikv.core.raft.messages import Config
from replikv.runtime.raft_app import split_stored, stored_head


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
