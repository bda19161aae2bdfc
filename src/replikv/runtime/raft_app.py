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

from typing import Any

import msgpack

from replikv.core.raft.messages import Entry
from replikv.core.raft.sessions import SessionTable
from replikv.core.replies import NULL_ARRAY, Raw, RespError
from replikv.core.resp import encode_reply
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from replikv.kv.watch import ChangeIndex

__all__ = ["apply_normal", "app_snapshot", "encode_write", "restore_app"]


def encode_write(sm: StateMachine, commands: list[list[bytes]], transaction: bool,
                 now_ms: int, origin: str,
                 watch: dict[bytes, int] | None = None) -> tuple[RespError | None, bytes]:
    """The entry data for a client write, prepared on the leader; ``(error, b"")``
    when a single command is refused before it is logged. ``watch``: the
    keys an EXEC's client WATCHed, each with the position it was watched at."""
    prepare, ctx = sm.prepare, ApplyContext(now_ms, origin)
    items: list[Any] = []
    for argv in commands:
        err, cmds = prepare(argv, ctx, exact=False)
        if err is not None:
            if not transaction:
                return err, b""
            items.append(err.message)
        else:
            items.append(cmds[0] if cmds else argv)
    fields: list[Any] = [now_ms, transaction, items]
    if watch:
        fields.append([[key, since] for key, since in watch.items()])
    data: bytes = msgpack.packb(fields)
    return None, data


def apply_normal(sm: StateMachine, entry: Entry) -> Any:
    """Apply one NORMAL entry to ``sm``; the result is what its client gets."""
    now_ms, transaction, items, *watch = msgpack.unpackb(entry.data)
    changes = sm.changes
    index = entry.index
    result: Any
    if watch and changes.any_changed(watch[0]):
        result = NULL_ARRAY  # a WATCHed key changed: the EXEC is aborted on every replica
    else:
        replies: list[Any] = []
        apply = sm.apply
        ctx = ApplyContext(now_ms, "", index)  # the entry does not record its origin
        for item in items:
            if isinstance(item, str):
                replies.append(RespError(item))
            else:
                dirty = sm.dirty
                replies.extend(apply([item], ctx))
                if sm.dirty != dirty:
                    changes.touch_commands((item,), index)
        result = replies if transaction else replies[-1]
    if entry.client_id is not None:  # cached in the replicated session table
        return Raw(encode_reply(result, False))
    return result


def app_snapshot(sm: StateMachine, sessions: list[Any]) -> bytes:
    """The application part of a raft snapshot: the data set and the exactly-once table."""
    table = [(c, s, bytes(r) if isinstance(r, bytes) else encode_reply(r, False), i) for c, s, r, i in sessions]
    data: bytes = msgpack.packb([sm.snapshot(), table, sm.changes.state()])
    return data


def restore_app(app: bytes, index: int) -> tuple[StateMachine, SessionTable]:
    """The state machine and session table an :func:`app_snapshot` (taken at
    log ``index``) holds."""
    sm_data, sessions, *changes = msgpack.unpackb(app)
    sm = StateMachine()
    sm.restore(sm_data)
    sm.changes = ChangeIndex.from_state(changes[0]) if changes else ChangeIndex(index)
    return sm, SessionTable.from_state([(c, s, Raw(r), i) for c, s, r, i in sessions])
