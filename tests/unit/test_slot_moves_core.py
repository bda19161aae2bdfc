"""The pure slot-move rules (core/sharding/moves.py): what a group's log decides it serves, and
the source leader's next step. The simulator (tests/sim/test_slot_moves_sim.py) runs them under
faults; these pin the rules one by one."""

from __future__ import annotations

from replikv.core.sharding.moves import MoveDriver, MoveStep, SlotMoves, move_entry, parse_move_entry
from replikv.core.sharding.slots import SlotMap


def _never(_slots: set[int]) -> bool:
    return False


def test_a_move_entry_round_trips() -> None:
    assert parse_move_entry(move_entry("import", [1, 2], 3, 4, b"keys")) == ("import", [1, 2], 3, 4, b"keys")


def test_freeze_takes_only_owned_slots_and_release_only_the_frozen_ones() -> None:
    src = SlotMoves(0, SlotMap.even(2))  # group 0 owns 0..8191
    assert src.apply("freeze", [8190, 8191, 8192], 1, 5) == [8190, 8191]
    assert not src.writable(8190) and src.owns(8190)
    assert src.apply("release", [8190, 8191, 8192], 1, 6) == []  # another move's epoch: nothing
    assert src.apply("release", [8190, 8191, 8192], 1, 5) == [8190, 8191]
    assert not src.owns(8190) and src.released[8190] == (1, 5)
    assert src.apply("freeze", [8190], 1, 7) == []  # released: a stale map cannot move it again


def test_activate_serves_only_the_import_of_the_same_epoch() -> None:
    dst = SlotMoves(1, SlotMap.even(2))
    dst.apply("import", [10, 11], 1, 5)
    assert not dst.owns(10)
    assert dst.apply("activate", [10, 11], 1, 4) == []  # a stale ACTIVATE
    assert dst.apply("activate", [10, 11], 1, 5) == [10, 11]
    assert dst.owns(10) and dst.apply("activate", [10, 11], 1, 5) == []  # a repeat changes nothing


def test_state_round_trips_and_reads_the_old_pending_format() -> None:
    m = SlotMoves(1, SlotMap.even(2))
    m.apply("import", [3], 1, 9)
    m.apply("freeze", [9000], 0, 9)
    copy = SlotMoves(1, SlotMap.even(2))
    copy.load(m.state())
    assert copy.state() == m.state()
    old = SlotMoves(1, SlotMap.even(2))
    old.load([[], [], [3], []])  # pending without epochs (before core/sharding/moves.py)
    assert old.apply("activate", [3], 1, 9) == [3]
    m.apply("activate", [3], 1, 9)
    assert m.owners() == ({3: (1, 9)}, 9)  # gained at the move's epoch (a restart compares them)
    copy.load(m.state())
    assert copy.owners() == m.owners()
    older = SlotMoves(1, SlotMap.even(2))
    older.load([[], [], [], [3]])  # gained slots without their epoch (before session 13)
    assert older.owners() == ({3: (1, 0)}, 0) and older.owns(3)


def test_the_driver_walks_freeze_import_release_activate() -> None:
    d, state = MoveDriver(), SlotMoves(0, SlotMap.even(2))
    assert d.start(0, [1, 2], 1, 3, state) == MoveStep("freeze", 0, (1, 2), 1, 3)
    touched = state.apply("freeze", [1, 2], 1, 3)
    assert d.applied(0, "freeze", touched, 1, 3, True, state, _never) == MoveStep("import", 0, (1, 2), 1, 3)
    assert d.imported(0, False, True) is None and d.moves[0].stage == "retry"
    assert d.check(0, True, state, _never) == MoveStep("import", 0, (1, 2), 1, 3)  # retried
    assert d.imported(0, True, True) == MoveStep("release", 0, (1, 2), 1, 3)
    touched = state.apply("release", [1, 2], 1, 3)
    assert d.applied(0, "release", touched, 1, 3, True, state, _never) == MoveStep("activate", 0, (1, 2), 1, 3)
    assert d.activated(0, False) is None
    assert d.check(0, True, state, _never) == MoveStep("activate", 0, (1, 2), 1, 3)
    done = d.activated(0, True)
    assert done is not None and done.epoch == 3 and not d.moves
    assert d.check(0, True, state, _never) is None


def test_a_new_leader_resumes_from_the_log() -> None:
    state = SlotMoves(0, SlotMap.even(2))
    state.apply("freeze", [1, 2], 1, 3)
    d = MoveDriver()  # a new leader: nothing in memory
    assert d.check(0, False, state, _never) is None  # a follower does not drive
    assert d.check(0, True, state, lambda slots: True) is None  # blocked by a transaction's lock
    assert d.check(0, True, state, _never) == MoveStep("import", 0, (1, 2), 1, 3)
    state.apply("release", [1, 2], 1, 3)
    d2 = MoveDriver()  # released before it led: its ACTIVATE may have been lost
    assert d2.check(0, True, state, _never) == MoveStep("activate", 0, (1, 2), 1, 3)


def test_a_move_is_forgotten_when_leadership_is_lost_or_its_freeze_froze_nothing() -> None:
    d, state = MoveDriver(), SlotMoves(0, SlotMap.even(2))
    d.start(0, [9000], 1, 3, state, client="c1")  # group 0 does not own slot 9000
    assert d.applied(0, "freeze", state.apply("freeze", [9000], 1, 3), 1, 3, True, state, _never) is None
    assert not d.moves
    d.start(0, [1], 1, 4, state, client="c2")
    d.check(0, False, state, _never)
    assert not d.moves  # a new RESHARD on this node is not refused forever
    # the clients that asked get their answer, not silence
    assert [(c, why.split()[0]) for c, why in d.unanswered] == [("c1", "ERR"), ("c2", "TRYAGAIN")]
    assert "nothing was moved" in d.unanswered[0][1] and "no longer leads group 0" in d.unanswered[1][1]


def test_a_move_replaced_by_an_earlier_leaders_frozen_move_answers_its_client() -> None:
    state, d = SlotMoves(0, SlotMap.even(2)), MoveDriver()
    d.start(0, [9], 1, 7, state, client="mine")
    state.apply("freeze", [3], 1, 3)  # an older leader's move froze first; this one never applied
    assert d.resume(0, state, _never) == MoveStep("import", 0, (3,), 1, 3)
    (answer,) = d.unanswered
    assert answer[0] == "mine" and answer[1].startswith("TRYAGAIN") and "earlier leader" in answer[1]
    d.moves[0].stage = "retry"
    state.frozen.clear()
    d.check(0, True, state, _never)  # a move resumed from the log has no client: nothing more to answer
    assert len(d.unanswered) == 1 and not d.moves


def test_a_stale_import_after_the_move_finished_takes_nothing() -> None:
    """Found by the simulator (seed 100884): a lagging new source leader re-sent an IMPORT after
    ACTIVATE, and its old keys overwrote acknowledged writes."""
    dst = SlotMoves(1, SlotMap.even(2))
    assert dst.apply("import", [10], 0, 5) == [10]
    assert dst.apply("import", [10], 0, 5) == [10]  # a repeat while pending: idempotent
    dst.apply("activate", [10], 0, 5)
    assert dst.apply("import", [10], 0, 5) == []  # served here now
    dst.apply("freeze", [10], 0, 8)
    dst.apply("release", [10], 0, 8)
    assert dst.apply("import", [10], 0, 5) == []  # gone on at a later epoch
    assert dst.apply("import", [10], 0, 9) == [10]  # a new move back


def test_two_freezes_in_the_log_move_one_at_a_time_each_whole() -> None:
    """Found by the simulator (seed 100083): with two moves frozen, the driver imported one and
    released the other."""
    state, d = SlotMoves(0, SlotMap.even(2)), MoveDriver()
    d.start(0, [1, 2], 1, 6, state)  # this node's move, epoch 6
    state.apply("freeze", [3], 1, 3)  # an older leader's move, applied first
    state.apply("freeze", [1, 2], 1, 6)
    step = d.applied(0, "freeze", [1, 2], 1, 6, True, state, _never)
    assert step == MoveStep("import", 0, (1, 2), 1, 6)
    assert d.imported(0, True, True) == MoveStep("release", 0, (1, 2), 1, 6)
    d.moves.clear()
    state2, d2 = SlotMoves(0, SlotMap.even(2)), MoveDriver()
    d2.start(0, [9], 1, 7, state2)
    state2.apply("freeze", [3], 1, 3)  # only the other move froze (this one's FREEZE not applied yet)
    assert d2.resume(0, state2, _never) == MoveStep("import", 0, (3,), 1, 3)
    assert d2.imported(0, True, True) == MoveStep("release", 0, (3,), 1, 3)  # the same move's RELEASE
