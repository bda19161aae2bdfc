"""A raft follower installs a snapshot from its leader in steps (runtime/raft_group.py
``restore_steps``, runtime/raft_runner.py ``_load_step``): decoding never holds the event loop
for more than a slice (issue 15: 640 MB decoded whole held it for seconds); the old data set is
let go at once, the new one is in place only at the end, and entries committed meanwhile are
applied after it, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from replikv.config import NodeOptions
from replikv.core.raft.effects import Apply, RestoreSnapshot
from replikv.core.raft.messages import Config, Snapshot
from replikv.kv.context import ApplyContext
from replikv.kv.dump import LOAD_STEP_BYTES
from replikv.kv.state_machine import StateMachine
from replikv.runtime import raft_runner
from replikv.runtime.raft_app import app_snapshot
from replikv.runtime.raft_group import RaftGroup
from replikv.runtime.raft_runner import RaftRunner


def leader_state(keys: int, size: int) -> StateMachine:
    sm = StateMachine()
    for i in range(keys):
        sm.apply([[b"SET", b"key%d" % i, bytes([i % 256]) * size]], ApplyContext(1, "", i + 1))
    return sm


def test_a_group_restores_in_steps_and_holds_the_new_state_only_at_the_end(tmp_path: Path) -> None:
    g = RaftGroup(0, tmp_path / "node", NodeOptions(), 1, (1,), 10, 1)
    g.sm.apply([[b"SET", b"old", b"x"]], ApplyContext(1, "", 1))
    source = leader_state(40, 300_000)  # 12 MB: several steps of LOAD_STEP_BYTES
    data = app_snapshot(source, [])
    snap = Snapshot(index=500, term=3, config=Config(voters=frozenset({1})), data=data)
    steps = g.restore_steps(snap)
    count = 0
    for _ in steps:
        count += 1
        assert g.sm.dbsize == 0 and g.applied == 0  # the old data set let go; the new one not yet in place
    assert count >= len(data) // LOAD_STEP_BYTES
    assert g.sm.data == source.data and g.applied == 500


def fake_runner(steps: Any, applied: list[Any]) -> Any:
    """The parts of a RaftRunner that ``_finish`` and ``_load_step`` use."""
    fake = SimpleNamespace(_loading=None, _loading_index=0, _load_scheduled=False, _applies_waiting=[],
                           stats={"snapshots_installed": 0}, id="n2", answered=0,
                           group=SimpleNamespace(restore_steps=lambda snap: steps))
    fake._apply = applied.append
    fake._answer_clients = lambda: setattr(fake, "answered", fake.answered + 1)
    fake._load_step = lambda: RaftRunner._load_step(fake)  # type: ignore[arg-type]
    return fake


def test_the_runner_decodes_in_slices_that_let_the_loop_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(raft_runner, "LOAD_SLICE_S", 0.0)  # one step per slice
    events: list[str] = []

    def steps() -> Any:
        for i in range(3):
            events.append(f"step {i}")
            yield

    applied: list[Any] = []
    fake = fake_runner(steps(), applied)
    snap = Snapshot(index=7, term=1, config=Config(voters=frozenset({1})), data=b"")
    before, after = Apply(entries=()), Apply(entries=())

    async def main() -> None:
        loop = asyncio.get_running_loop()
        RaftRunner._finish(fake, [before, RestoreSnapshot(snapshot=snap), after])  # type: ignore[arg-type]
        assert applied == [before] and fake._applies_waiting == [after]  # after the snapshot: it waits

        def other_work(n: int) -> None:
            events.append("loop")
            if n and fake._loading is not None:
                loop.call_soon(other_work, n - 1)
        loop.call_soon(other_work, 10)
        while fake._loading is not None:
            await asyncio.sleep(0)

    asyncio.run(main())
    assert events[:6] == ["step 0", "loop", "step 1", "loop", "step 2", "loop"]  # the loop ran between steps
    assert applied == [before, after] and fake.stats["snapshots_installed"] == 1 and fake.answered == 1
