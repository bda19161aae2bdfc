"""The positional builders of the replication round's objects (messages.positional_builder) and
the log's O(1) byte count (RaftLog.size_between) agree with what they replace."""

from __future__ import annotations

import random

import pytest

from replikv.core.raft.effects import Apply, Persist, new_apply, new_persist
from replikv.core.raft.log import RaftLog
from replikv.core.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    HardState,
    Snapshot,
    entries_size,
    new_append_entries,
    new_append_response,
    new_hard_state,
    normal_entry,
    positional_builder,
)


def test_builders_make_equal_frozen_objects() -> None:
    e = normal_entry(2, 7, b"x", 1, 3)
    pairs = [
        (new_append_entries(2, 1, 3, 6, 2, (e,), 5),
         AppendEntries(term=2, src=1, dst=3, prev_log_index=6, prev_log_term=2, entries=(e,), leader_commit=5)),
        (new_append_response(2, 3, 1, True, 7, 0, 0, 0),
         AppendEntriesResponse(term=2, src=3, dst=1, success=True, match_index=7)),
        (new_hard_state(2, 1, 5), HardState(term=2, vote=1, commit=5)),
        (new_persist(None, (e,), None, False), Persist(entries=(e,))),
        (new_apply((e,), ((7, "r"),)), Apply(entries=(e,), waiters=((7, "r"),))),
    ]
    for built, ref in pairs:
        assert type(built) is type(ref)
        assert built == ref
        assert hash(built) == hash(ref)
        for obj in (built, ref):  # still frozen: assigning a field fails alike for both
            with pytest.raises((AttributeError, TypeError)):
                obj.entries = ()  # type: ignore[misc,union-attr]


def test_a_class_that_checks_its_fields_has_them_checked_by_its_builder() -> None:
    from dataclasses import dataclass

    from replikv.core.invariant import InvariantViolation, invariant

    @dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            invariant(self.a >= 0, "a >= 0")

    build = positional_builder(Checked)
    assert build(3) == Checked(3) and type(build(3)) is Checked
    with pytest.raises(InvariantViolation):
        build(-1)


def test_size_between_is_entries_size_of_the_slice_after_compactions() -> None:
    rng = random.Random(7)
    log = RaftLog()
    index = 0
    for _ in range(40):
        batch = []
        for _ in range(rng.randrange(1, 6)):
            index += 1
            batch.append(normal_entry(1, index, b"v" * rng.randrange(0, 50), None, None))
        log.append(batch)
        if rng.random() < 0.2 and log.last_index > log.first_index:
            at = rng.randrange(log.first_index, log.last_index)
            log.commit_to(at)
            log.applied = at
            log.compact(Snapshot(index=at, term=1))
        for _ in range(5):
            lo = rng.randrange(log.first_index, log.last_index + 1)
            hi = rng.randrange(lo + 1, log.last_index + 2)
            assert log.size_between(lo, hi) == entries_size(log.slice(lo, hi))


def test_slice_cuts_at_max_bytes_as_before() -> None:
    log = RaftLog()
    log.append([normal_entry(1, i, b"x" * 100, None, None) for i in range(1, 11)])
    one = Entry(term=1, index=1, data=b"x" * 100).size_bytes()
    assert len(log.slice(1, 11, 3 * one)) == 3
    assert len(log.slice(1, 11, 3 * one - 1)) == 2
    assert len(log.slice(1, 11, 1)) == 1  # always at least one
    assert len(log.slice(4, 11, None)) == 7
