"""The raft mode's replicated application: the kv state machine behind the
exactly-once session table (thesis §6.3). Pure: no I/O, no clock.

The runner (runtime/raft_runner.py) and the simulator's raft driver
(sim/raft_driver.py) both use these, so the simulator applies log entries
exactly as a node does.

Entry data (a NORMAL entry) is ``msgpack [now_ms, transaction, items]``:
``now_ms`` is the leader's time at the write (expiry is decided at apply
from it, never from the applying node's clock); ``items`` are the prepared
commands (``StateMachine.prepare``), or an error text for a command of a
MULTI block that failed to prepare. A client's result is the last reply, or
every reply for a transaction. Results of an exactly-once write are cached
in the session table as encoded RESP (``Raw``), so a retry gets the bytes
the first apply produced.

The application snapshot is ``msgpack [state machine snapshot, session table]``.
"""

from __future__ import annotations

from typing import Any

import msgpack

from replikv.core.raft.messages import Entry
from replikv.core.raft.sessions import SessionTable
from replikv.core.replies import Raw, RespError
from replikv.core.resp import encode_reply
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine

__all__ = ["apply_normal", "app_snapshot", "encode_write", "restore_app"]


def encode_write(sm: StateMachine, commands: list[list[bytes]], transaction: bool,
                 now_ms: int, origin: str) -> tuple[RespError | None, bytes]:
    """The entry data for a client write, prepared on the leader; ``(error, b"")``
    when a single command is refused before it is logged."""
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
    data: bytes = msgpack.packb([now_ms, transaction, items])
    return None, data


def apply_normal(sm: StateMachine, entry: Entry) -> Any:
    """Apply one NORMAL entry to ``sm``; the result is what its client gets."""
    now_ms, transaction, items = msgpack.unpackb(entry.data)
    replies: list[Any] = []
    apply = sm.apply
    ctx = ApplyContext(now_ms, "", entry.index)  # the entry does not record its origin
    for item in items:
        if isinstance(item, str):
            replies.append(RespError(item))
        else:
            replies.extend(apply([item], ctx))
    result = replies if transaction else replies[-1]
    if entry.client_id is not None:  # cached in the replicated session table
        return Raw(encode_reply(result, False))
    return result


def app_snapshot(sm: StateMachine, sessions: list[Any]) -> bytes:
    """The application part of a raft snapshot: the data set and the exactly-once table."""
    table = [(c, s, bytes(r) if isinstance(r, bytes) else encode_reply(r, False), i) for c, s, r, i in sessions]
    data: bytes = msgpack.packb([sm.snapshot(), table])
    return data


def restore_app(app: bytes) -> tuple[StateMachine, SessionTable]:
    """The state machine and session table an :func:`app_snapshot` holds."""
    sm_data, sessions = msgpack.unpackb(app)
    sm = StateMachine()
    sm.restore(sm_data)
    return sm, SessionTable.from_state([(c, s, Raw(r), i) for c, s, r, i in sessions])
