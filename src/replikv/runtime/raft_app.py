"""The raft mode's replicated application: the kv state machine behind the
exactly-once session table (thesis §6.3). Pure: no I/O, no clock.

The runner (runtime/raft_runner.py) and the simulator's raft driver
(sim/raft_driver.py) both use these, so the simulator applies log entries
exactly as a node does.

Entry data (a NORMAL entry) is ``msgpack [now_ms, transaction, items]``
or ``msgpack [now_ms, transaction, items, [[key, since], ...]]``:
``now_ms`` is the leader's time at the write (expiry is decided at apply
from it, never from the applying node's clock); ``items`` are the prepared
commands (``StateMachine.prepare``), or an error text for a command of a
MULTI block that failed to prepare. A client's result is the last reply, or
every reply for a transaction. Results of an exactly-once write are cached
in the session table as encoded RESP (``Raw``), so a retry gets the bytes
the first apply produced.

WATCH (``kv/watch.py``): an EXEC whose client WATCHed each ``key`` at log
position ``since`` carries the ``[key, since]`` pairs; every replica aborts
it at apply (the client gets the null array, nothing is applied) iff one of
the keys changed at an index above its ``since``, so the decision is the same on
every replica and holds across leader changes. Every applied item that
changed the data records its keys at the entry's index (``sm.changes``).

The application snapshot is ``msgpack [state machine snapshot, session
table, change index]`` (a snapshot written before WATCH has no change
index: it loads with the change index's floor at the snapshot's index).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import struct

import msgpack

from replikv.core.raft.messages import Entry
from replikv.core.raft.sessions import SessionTable
from replikv.core.replies import NULL_ARRAY, Raw, RespError
from replikv.core.resp import encode_reply
from replikv.kv.context import ApplyContext
from replikv.kv.dump import Loaded, bin_at, load_all, load_steps
from replikv.kv.state_machine import StateMachine
from replikv.kv.watch import ChangeIndex

__all__ = ["app_snapshot", "apply_items", "apply_normal", "encode_write", "prepare_items", "restore_app",
           "restore_app_steps", "stored_pieces", "unpack_app"]


def encode_write(sm: StateMachine, commands: list[list[bytes]], transaction: bool,
                 now_ms: int, origin: str,
                 watch: dict[bytes, int] | None = None) -> tuple[RespError | None, bytes]:
    """The entry data for a client write, prepared on the leader; ``(error, b"")``
    when a single command is refused before it is logged. ``watch``: the
    keys an EXEC's client WATCHed, each with the position it was watched at."""
    items = prepare_items(sm, commands, now_ms, origin)
    if not transaction and isinstance(items[0], str):
        return RespError(items[0]), b""
    fields: list[Any] = [now_ms, transaction, items]
    if watch:
        fields.append([[key, since] for key, since in watch.items()])
    data: bytes = msgpack.packb(fields)
    return None, data


def prepare_items(sm: StateMachine, commands: list[list[bytes]], now_ms: int, origin: str) -> list[Any]:
    """Each command's deterministic form (``StateMachine.prepare``), or the text of the error
    that refused it (a MULTI block keeps going, as Redis's EXEC does)."""
    prepare, ctx = sm.prepare, ApplyContext(now_ms, origin)
    items: list[Any] = []
    for argv in commands:
        err, cmds = prepare(argv, ctx, exact=False)
        items.append(err.message if err is not None else cmds[0] if cmds else argv)
    return items


def apply_items(sm: StateMachine, items: list[Any], ctx: ApplyContext) -> list[Any]:
    """Apply prepared items (an error text stands for its reply); every item that changed the
    data records its keys at ``ctx.log_index`` (WATCH)."""
    replies: list[Any] = []
    apply, changes, index = sm.apply, sm.changes, ctx.log_index
    for item in items:
        if isinstance(item, str):
            replies.append(RespError(item))
        else:
            dirty = sm.dirty
            replies.extend(apply([item], ctx))
            if sm.dirty != dirty:
                changes.touch_commands((item,), index)
    return replies


def apply_normal(sm: StateMachine, entry: Entry) -> Any:
    """Apply one NORMAL entry to ``sm``; the result is what its client gets."""
    now_ms, transaction, items, *watch = msgpack.unpackb(entry.data)
    result: Any
    if watch and sm.changes.any_changed(watch[0]):
        result = NULL_ARRAY  # a WATCHed key changed: the EXEC is aborted on every replica
    else:
        replies = apply_items(sm, items, ApplyContext(now_ms, "", entry.index))  # no origin in the entry
        result = replies if transaction else replies[-1]
    if entry.client_id is not None:  # cached in the replicated session table
        return Raw(encode_reply(result, False))
    return result


def app_snapshot(sm: StateMachine, sessions: list[Any]) -> bytes:
    """The application part of a raft snapshot: the data set and the exactly-once table."""
    return b"".join(app_snapshot_pieces(sm, sessions))


def app_snapshot_pieces(sm: StateMachine, sessions: list[Any]) -> list[bytes]:
    """:func:`app_snapshot` in pieces whose concatenation it is: ``msgpack [dump, table,
    change index]`` with the state machine's dump (most of it) a piece of its own, not
    copied into the array. A snapshot child writes the pieces as they are: packed whole,
    then packed again inside the stored ``[voters, learners, app]``, a 640 MB data set was
    copied twice more, half of the child's 30-40 s under load (issue 15)."""
    table = [(c, s, bytes(r) if isinstance(r, bytes) else encode_reply(r, False), i) for c, s, r, i in sessions]
    dump = sm.snapshot()
    return [b"\x93" + _bin_header(len(dump)), dump, msgpack.packb(table), msgpack.packb(sm.changes.state())]


def stored_pieces(config: Any, sm: StateMachine, sessions: list[Any]) -> list[bytes]:
    """A raft snapshot file's data in pieces (``write_snapshot``): ``stored_head`` then the
    app part (``app_snapshot_pieces``), the shape ``split_stored`` reads."""
    return [stored_head(config), *app_snapshot_pieces(sm, sessions)]


def _bin_header(size: int) -> bytes:
    """The msgpack bin 8/16/32 header of ``size`` bytes (as ``msgpack.packb`` writes one)."""
    if size < 1 << 8:
        return struct.pack(">BB", 0xC4, size)
    if size < 1 << 16:
        return struct.pack(">BH", 0xC5, size)
    return struct.pack(">BI", 0xC6, size)


def restore_app(app: bytes | memoryview | list[Any], index: int) -> tuple[StateMachine, SessionTable]:
    """The state machine and session table an :func:`app_snapshot` (taken at
    log ``index``) holds (``app`` as bytes, or its fields already unpacked)."""
    fields = app if isinstance(app, list) else msgpack.unpackb(app)
    return _app_from(fields, load_all(fields[0]), index)


def restore_app_steps(fields: list[Any], index: int) -> Generator[None, None, tuple[StateMachine, SessionTable]]:
    """:func:`restore_app` of an app's fields (``unpack_app``) in steps (``kv/dump.py``
    ``load_steps``): a generator that yields between steps of decoding the dump."""
    loaded = yield from load_steps(fields[0])
    return _app_from(fields, loaded, index)


def _app_from(fields: list[Any], loaded: Loaded, index: int) -> tuple[StateMachine, SessionTable]:
    _sm_data, sessions, *changes = fields
    sm = StateMachine()
    sm.restore_loaded(loaded)
    sm.changes = ChangeIndex.from_state(changes[0]) if changes else ChangeIndex(index)
    return sm, SessionTable.from_state([(c, s, Raw(r), i) for c, s, r, i in sessions])


_ARRAY_HEADERS = {0xDC: (3, ">H"), 0xDD: (5, ">I")}  # msgpack array 16/32 (fixarray: 0x90-0x9f)


def unpack_app(app: bytes | memoryview) -> list[Any]:
    """The fields of an :func:`app_snapshot` (or a sharded group's longer one), as
    ``msgpack.unpackb`` gives them, except the first, the state machine's dump: a view
    into ``app``, not a copy. Unpacked whole, that dump (most of a snapshot) was copied
    out of the file before being decoded: a follower installing a 640 MB snapshot held
    the file's pages, that copy and the new data set at once (issue 15)."""
    view = memoryview(app)
    if len(view) and 0x90 <= view[0] <= 0x9F:
        count, pos = view[0] & 0x0F, 1
    elif len(view) and view[0] in _ARRAY_HEADERS:
        width, fmt = _ARRAY_HEADERS[view[0]]
        (count,), pos = struct.unpack(fmt, view[1:width]), width
    else:
        raise ValueError("a raft app snapshot is a msgpack array")
    if count < 1:
        raise ValueError("a raft app snapshot holds at least the state machine's dump")
    start, end = bin_at(view, pos)
    unpacker = msgpack.Unpacker()
    unpacker.feed(view[end:])
    rest = [unpacker.unpack() for _ in range(count - 1)]
    return [view[start:end], *rest]


def stored_head(config: Any) -> bytes:
    """The start of a raft snapshot stored as it streams in (``RaftGroup``'s snapshot sink):
    ``[voters, learners]``, the app part following as the rest of the file."""
    return msgpack.packb([sorted(config.voters), sorted(config.learners)])


def split_stored(data: bytes | memoryview) -> tuple[list[Any], list[Any], memoryview]:
    """A stored raft snapshot: ``[voters, learners, app]`` as ``RaftGroup.persist`` and the
    background snapshot write it, or ``[voters, learners]`` followed by the app part (a
    snapshot received from the leader, written as its chunks arrived: ``stored_head``).
    Returns the two member lists, and ``app`` as a view into ``data``, not a copy (``data``
    may be the snapshot file mapped: storage/snapshot.py ``map_snapshot_file``). ValueError
    if it is neither shape."""
    view = memoryview(data)
    unpacker = msgpack.Unpacker()
    unpacker.feed(bytes(view[:1 << 16]))  # the member lists are small; app is the rest
    try:
        fields = unpacker.read_array_header()
        if fields not in (2, 3):
            raise ValueError("a raft snapshot is [voters, learners, app] or [voters, learners] + app")
        voters, learners = unpacker.unpack(), unpacker.unpack()
    except msgpack.OutOfData as e:
        raise ValueError("a raft snapshot's member lists are cut short") from e
    pos = unpacker.tell()
    if fields == 2:
        if not isinstance(voters, list) or not isinstance(learners, list):
            raise ValueError("a raft snapshot's member lists are not lists")
        return voters, learners, view[pos:]
    if not isinstance(voters, list) or not isinstance(learners, list):
        raise ValueError("a raft snapshot's app part is not bytes")
    try:
        start, end = bin_at(view, pos)
    except ValueError as e:
        raise ValueError(f"a raft snapshot's app part is not bytes: {e}") from None
    if end != len(view):
        raise ValueError(f"a raft snapshot's app part holds {len(view) - start} bytes, not {end - start}")
    return voters, learners, view[start:]
