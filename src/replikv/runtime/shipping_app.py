"""The leader-follower mode's replicated application: how the kv state machine
is snapshotted, restored and rebuilt from the log. Pure: no I/O, no clock.

The runner (runtime/leader_follower.py) and the simulator's leader-follower
driver (sim/shipping_driver.py) both use these, as both raft sides use
runtime/raft_app.py.

The application snapshot is ``msgpack [epoch_starts, state machine snapshot]``:
the log's epoch history up to the snapshot (the follower that installs it
needs it to find match points) and the data set. A log entry is
``[epoch, cmds]`` or ``[epoch, cmds, k]``; replaying one applies its commands
with no time, since the log states every deletion (``REPLAY``).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

import msgpack

from replikv.kv.context import ApplyContext
from replikv.kv.dump import bin_at, load_steps
from replikv.kv.state_machine import StateMachine

__all__ = ["REPLAY", "app_snapshot", "replay", "restore_app", "restore_app_steps", "unpack_app"]

REPLAY = ApplyContext(None)  # the log states every deletion and does not record origins


def app_snapshot(epoch_starts: list[list[int]], sm: StateMachine) -> bytes:
    data: bytes = msgpack.packb([epoch_starts, sm.snapshot()])
    return data


def unpack_app(data: bytes | memoryview) -> tuple[list[list[int]], memoryview]:
    """The epoch history and the state machine's dump an :func:`app_snapshot` holds, the
    dump a view into ``data``, not a copy: unpacked whole, it (most of the snapshot) was
    copied out of the file before being decoded, a third copy of the data set on a
    follower installing a full resync's 640 MB (issue 15)."""
    view = memoryview(data)
    if not len(view) or view[0] != 0x92:  # fixarray of two
        raise ValueError("a leader-follower app snapshot is a msgpack array of two")
    unpacker = msgpack.Unpacker(use_list=True)
    fed = 1
    while True:  # the epoch history is small: feed it a few KiB at a time, never the dump
        if fed >= len(view):
            raise ValueError("a leader-follower app snapshot cut short")
        unpacker.feed(view[fed:fed + _HEAD_FEED])
        fed += _HEAD_FEED
        try:
            epoch_starts = unpacker.unpack()
            break
        except msgpack.OutOfData:
            continue
    start, end = bin_at(view, 1 + unpacker.tell())
    return epoch_starts, view[start:end]


_HEAD_FEED = 4096


def restore_app(data: bytes | memoryview) -> tuple[StateMachine, list[list[int]]]:
    """The state machine and the epoch history an :func:`app_snapshot` holds."""
    epoch_starts, dump = unpack_app(data)
    sm = StateMachine()
    sm.restore(dump)
    return sm, epoch_starts


def restore_app_steps(data: bytes | memoryview) -> Generator[None, None, tuple[StateMachine, list[list[int]]]]:
    """:func:`restore_app` in steps (``kv/dump.py`` ``load_steps``): a generator that yields
    between steps of decoding the dump, for a follower that goes on answering while it
    installs a full resync. ``data`` is read once, in order."""
    epoch_starts, dump = unpack_app(data)
    loaded = yield from load_steps(dump)
    sm = StateMachine()
    sm.restore_loaded(loaded)
    return sm, epoch_starts


def replay(sm: StateMachine, entries: Iterable[list[Any]]) -> None:
    """Apply log entries to ``sm`` as a replica does (followers, restart, rollback)."""
    apply = sm.apply
    for entry in entries:
        apply(entry[1], REPLAY)
