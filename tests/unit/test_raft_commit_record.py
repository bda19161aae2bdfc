"""The commit index record (runtime/raft_group.py ``record_commit``), which the unsharded raft
runner writes on a thread of its own once a second (issue 15: the atomic meta write's fsyncs held
the event loop): under the meta lock, it always carries the newest saved term and vote, and a term
and vote saved on the loop meanwhile are never overwritten by an older record."""

from __future__ import annotations

import threading
from pathlib import Path

from replikv.config import NodeOptions
from replikv.core.raft.messages import HardState
from replikv.runtime.raft_group import RaftGroup
from replikv.storage.meta import MetaStore


def group(tmp_path: Path) -> RaftGroup:
    return RaftGroup(0, tmp_path / "node", NodeOptions(), 1, (1,), 10, 1)


def saved(g: RaftGroup) -> dict[str, object]:
    return MetaStore(g.meta.path.parent).load()


def test_a_record_carries_the_newest_term_and_vote_and_never_goes_back(tmp_path: Path) -> None:
    g = group(tmp_path)
    g.save_hard_state(HardState(term=9, vote=1, commit=0))
    g.record_commit(3)
    assert saved(g) == {"term": 9, "vote": 1, "commit": 3}
    g.record_commit(2)  # no further than the saved one: not written
    assert saved(g)["commit"] == 3 and g.saved_commit == 3


def test_a_term_saved_while_a_record_is_written_on_its_thread_lands_after_it(tmp_path: Path) -> None:
    g = group(tmp_path)
    g.save_hard_state(HardState(term=2, vote=1, commit=0))
    writing, release = threading.Event(), threading.Event()
    real_save = g.meta.save

    def slow_save(state: dict[str, object]) -> None:  # the record's fsync, slow behind a big write
        if threading.current_thread().name == "record":
            writing.set()
            assert release.wait(10)
        real_save(state)

    g.meta.save = slow_save  # type: ignore[method-assign]
    record = threading.Thread(target=g.record_commit, args=(5,), name="record")
    record.start()
    assert writing.wait(10)
    assert g._meta_lock.locked()  # the record holds the meta lock while it writes
    vote = threading.Thread(target=g.save_hard_state, args=(HardState(term=3, vote=2, commit=0),))
    vote.start()  # a new term and vote on the loop: waits for the record's write
    release.set()
    record.join(10)
    vote.join(10)
    assert not record.is_alive() and not vote.is_alive()
    assert saved(g) == {"term": 3, "vote": 2, "commit": 5}
    assert g.saved_tv == (3, 2) and g.saved_commit == 5
