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

from collections.abc import Iterable
from typing import Any

import msgpack

from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine

__all__ = ["REPLAY", "app_snapshot", "replay", "restore_app"]

REPLAY = ApplyContext(None)  # the log states every deletion and does not record origins


def app_snapshot(epoch_starts: list[list[int]], sm: StateMachine) -> bytes:
    data: bytes = msgpack.packb([epoch_starts, sm.snapshot()])
    return data


def restore_app(data: bytes | memoryview) -> tuple[StateMachine, list[list[int]]]:
    """The state machine and the epoch history an :func:`app_snapshot` holds."""
    epoch_starts, sm_data = msgpack.unpackb(data)
    sm = StateMachine()
    sm.restore(sm_data)
    return sm, epoch_starts


def replay(sm: StateMachine, entries: Iterable[list[Any]]) -> None:
    """Apply log entries to ``sm`` as a replica does (followers, restart, rollback)."""
    apply = sm.apply
    for entry in entries:
        apply(entry[1], REPLAY)
