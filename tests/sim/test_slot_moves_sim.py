"""Slot moves in the sharded raft simulator (sim/slot_moves.py, issue 13) over a few hundred
seeds: groups apply a tiny key/value state machine and the move entries, a mover moves random
slot ranges between groups through the same pure core as the runtime
(core/sharding/moves.py), clients write and read keys of many slots routed by a node's slot
map, while nodes crash and restart and the network partitions. Checked per seed: no
acknowledged write lost, no stale read, every move finished within the stated bound after
heal, every slot owned by exactly one group (all replicas agreeing). A failure prints its
replay command (``python -m replikv.sim --moves --seed N --nodes 5 --shards 4``). Mutation
tests show each check catches a broken mover.
"""

from __future__ import annotations

import pytest

from replikv.core.sharding.moves import MoveDriver, MoveStep, SlotMove, SlotMoves
from replikv.sim.engine import SafetyViolation
from replikv.sim import slot_moves
from replikv.sim.slot_moves import run_moves
from tests.sim.seeds import assert_seeds_pass, chunk_id, split

CHUNK = 25
# (groups, nodes, first seed, seeds, long): 225 seeds of 600 ticks of faults, ~0.2 s each; `make soak`
# runs thousands more (python -m replikv.sim --moves)
PLAN = [(4, 5, 0, 150, False), (6, 7, 10_000, 75, False)]
CHUNKS = split(PLAN, CHUNK, CHUNK)
# The stated bound: every move started is finished, and every group converged, within 1,000 ticks
# (50 election timeouts) of the heal (measured over 300 seeds: max ~110 ticks).
SETTLE_BOUND = 1000
ROUNDS = 600


@pytest.mark.parametrize("chunk", CHUNKS, ids=lambda c: chunk_id(c, "moves"))
def test_seeds(chunk: tuple[int, int, int, int, bool]) -> None:
    groups, nodes, start, count, _long = chunk
    assert_seeds_pass(lambda seed: run_moves(seed, nodes, groups, rounds=ROUNDS, settle_bound=SETTLE_BOUND), start, count)


def test_same_seed_same_run() -> None:
    a, b = run_moves(3), run_moves(3)
    assert (a.acked, a.reads, a.failed, a.unknown, a.nemesis) == (b.acked, b.reads, b.failed, b.unknown, b.nemesis)


def test_runs_move_slots_under_load_and_faults() -> None:
    """Guard against a vacuous pass: moves finish, writes are acknowledged and reads served."""
    runs = [run_moves(seed) for seed in range(10)]
    assert sum(r.moves_done for r in runs) >= 100
    assert all(r.acked > 100 and r.reads > 100 for r in runs)
    assert sum(1 for r in runs for line in r.nemesis if "crash" in line) >= 4


def _caught(check: str, seeds: range = range(6)) -> int:
    """Seeds whose run fails the check whose message contains ``check``."""
    caught = 0
    for seed in seeds:
        try:
            run_moves(seed, rounds=ROUNDS)
        except SafetyViolation as e:
            caught += check in str(e)
    return caught


def test_a_mover_that_releases_before_the_import_commits_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def release_at_once(self: MoveDriver, g: int, state: SlotMoves, blocked: object) -> MoveStep | None:
        if not state.frozen:
            return None
        target, epoch = next(iter(state.frozen.values()))
        slots = sorted(s for s, te in state.frozen.items() if te == (target, epoch))
        self.moves.setdefault(g, _move(slots, target, epoch)).stage = "release"
        return MoveStep("release", g, tuple(slots), target, epoch)

    monkeypatch.setattr(MoveDriver, "resume", release_at_once)
    assert _caught("owned by groups []") >= 3  # the target activates only what it imported


def test_a_mover_that_activates_before_the_release_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def activate_now(self: MoveDriver, g: int, ok: bool, leading: bool) -> MoveStep | None:
        move = self.moves.get(g)
        if move is None or not leading or not ok:
            return None
        move.stage = "activate"
        return MoveStep("activate", g, tuple(move.slots), move.target, move.epoch)

    monkeypatch.setattr(MoveDriver, "imported", activate_now)
    assert _caught("moves not finished") >= 3  # never released: the frozen slots stay


def test_a_source_that_serves_reads_after_release_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = SlotMoves.owns
    monkeypatch.setattr(SlotMoves, "owns", lambda self, slot: slot in self.released or real(self, slot))
    assert _caught("stale read") >= 3


def test_writes_applied_on_a_frozen_slot_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SlotMoves, "refuses", lambda self, keys: False)
    monkeypatch.setattr(SlotMoves, "serves", lambda self, keys, reading=False: True)
    assert _caught("stale read") >= 3


def test_a_write_lost_in_a_move_is_caught_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same broken source, with the history check off: the final check finds the loss."""
    monkeypatch.setattr(SlotMoves, "refuses", lambda self, keys: False)
    monkeypatch.setattr(SlotMoves, "serves", lambda self, keys, reading=False: True)
    monkeypatch.setattr(slot_moves, "check_history", lambda sim: None)
    assert _caught("lost") >= 3


def _move(slots: list[int], target: int, epoch: int) -> SlotMove:
    return SlotMove(slots, target, epoch)


def test_the_replay_command_runs_a_seed(capsys: pytest.CaptureFixture[str]) -> None:
    from replikv.sim.__main__ import main as sim_main
    assert sim_main(["--moves", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "moves seed 3 nodes 5 groups 4: ok" in out and "moves finished" in out
