"""core/txn: the record's rules, wait-die, the coordinator's steps, and the entries' apply."""

from __future__ import annotations

import msgpack
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.txn import ABORTED, COMMITTED, PENDING, Coordinator, Prepared, TxnTable
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from replikv.runtime.txn_entries import apply_txn, txn_entry


def prepared(txn: bytes, ts: int, keys: list[bytes]) -> Prepared:
    return Prepared(txn=txn, ts=ts, deadline=ts + 1000, primary=0, groups=[0, 1], keys=keys, undo=b"", absent=[],
                    vote=["yes", []])


# -- the record ---------------------------------------------------------------------------------
def test_commit_only_before_the_deadline_and_the_first_decision_wins() -> None:
    t = TxnTable()
    assert t.decide(b"a", "commit", 100, [0, 1], now_ms=90) == COMMITTED
    assert t.decide(b"a", "abort", 100, [0, 1], now_ms=95) == COMMITTED  # never changed
    assert t.decide(b"b", "commit", 100, [0, 1], now_ms=101) == ABORTED  # too late
    t = TxnTable()
    assert t.decide(b"c", "recover", 100, [0, 1], now_ms=99) == PENDING  # not past the deadline: no record
    assert b"c" not in t.records
    assert t.decide(b"c", "commit", 100, [0, 1], now_ms=99) == COMMITTED


def test_log_time_is_monotone_so_a_forgotten_abort_stays_aborted() -> None:
    t = TxnTable()
    assert t.decide(b"a", "recover", 100, [0], now_ms=150) == ABORTED
    assert t.forget(b"a")
    # a later leader whose clock lags proposes the coordinator's late commit: the log time says no
    assert t.decide(b"a", "commit", 100, [0], now_ms=50) == ABORTED


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["commit", "abort"]),
       st.lists(st.tuples(st.sampled_from(["coordinator", "recover", "forget"]), st.integers(0, 200)), max_size=30))
def test_a_transaction_is_never_both_committed_and_aborted(want: str, requests: list[tuple[str, int]]) -> None:
    """The coordinator's one decision (retried) and recoverers' requests reach the record in any
    order, from leaders whose clocks jump back and forth; a forget may follow an abort (a
    recovery finished). Every answer agrees, and a commit is only granted up to the deadline."""
    t = TxnTable()
    answers: list[str] = []
    for who, now in requests:
        if who == "forget":
            if answers and answers[-1] == ABORTED:
                t.forget(b"x")
            continue
        status = t.decide(b"x", want if who == "coordinator" else "recover", 100, [0], now)
        if status == PENDING:
            assert who == "recover" and t.log_time <= 100
            continue
        if status == COMMITTED:
            assert want == "commit" and ABORTED not in answers
        answers.append(status)
    assert len(set(answers)) <= 1, answers


# -- wait-die -------------------------------------------------------------------------------------
def test_wait_die_older_waits_younger_dies() -> None:
    t = TxnTable()
    t.lock(prepared(b"mid", 50, [b"k"]))
    assert t.conflict(b"old", 10, [b"k"]) == ("wait", b"mid")
    assert t.conflict(b"young", 90, [b"k"]) == ("die", b"mid")
    assert t.conflict(b"mid", 50, [b"k"]) is None  # its own lock
    assert t.conflict(b"other", 10, [b"free"]) is None
    assert t.release(b"mid") is not None and t.locked([b"k"]) is None


def test_snapshot_round_trip() -> None:
    t = TxnTable()
    t.lock(prepared(b"a", 5, [b"k1", b"k2"]))
    t.decide(b"a", "commit", 100, [0, 1], now_ms=7)
    t.finished[b"z"] = 3
    back = TxnTable.from_state(msgpack.unpackb(msgpack.packb(t.to_state())))
    assert back.locks == t.locks and back.records == t.records and back.log_time == 7
    assert back.finished == {b"z": 3} and back.prepared[b"a"].keys == [b"k1", b"k2"]


# -- the coordinator --------------------------------------------------------------------------------
def coordinator(classic: bool = False, writes: bool = True) -> Coordinator:
    return Coordinator(txn=b"t", ts=0, deadline=1000, primary=0, positions={0: [0, 2], 1: [1]}, writes=writes,
                       classic=classic)


def kinds(steps: list) -> list[tuple[str, int, object]]:
    return [(s.kind, s.group, s.arg) for s in steps]


def test_coordinator_commits_through_the_record_and_merges_replies_in_order() -> None:
    c = coordinator()
    # the primary (group 0) is not prepared: it is prepared and decided by one commit entry
    assert kinds(c.start()) == [("prepare", 1, None)]
    assert kinds(c.on_vote(1, ["yes", [b":2\r\n"]], 10)) == [("commit", 0, None)]
    assert c.replies == []  # nothing is answered before the record says so
    steps = c.on_vote(0, ["committed", [b":1\r\n", b":3\r\n"]], 20)
    assert kinds(steps) == [("resolve", 1, True)]
    assert c.replies[0].kind == "commit" and c.replies[0].replies == (b":1\r\n", b":2\r\n", b":3\r\n")
    assert kinds(c.on_resolved(1, True)) == [("forget", 0, None)]


def test_a_no_vote_aborts_without_a_record() -> None:
    """Only the coordinator's commit entry records a commit; it sent none, so no record is needed."""
    c = coordinator()
    c.start()
    assert kinds(c.on_vote(1, ["die", b"older"], 10)) == [("resolve", 1, False)]
    assert c.replies[0].kind == "abort" and "wait-die" in c.replies[0].reason
    assert c.on_resolved(1, True) == [] and c.phase == "done"  # nothing to forget


def test_the_primary_refusing_its_commit_aborts_the_others() -> None:
    c = coordinator()
    c.start()
    c.on_vote(1, ["yes", [b"+OK\r\n"]], 10)
    assert kinds(c.on_vote(0, ["die", b"older"], 11)) == [("resolve", 1, False)]
    assert c.replies[0].kind == "abort"


def test_a_refusal_after_a_lost_commit_records_the_abort_first() -> None:
    """The first commit attempt's answer was lost; a retry is refused: the lost attempt may still
    land, so the record must say aborted before anyone hears it."""
    c = coordinator()
    c.start()
    c.on_vote(1, ["yes", [b"+OK\r\n"]], 10)
    assert c.on_vote(0, None, 20) == []
    assert kinds(c.due(30)) == [("commit", 0, None)]
    assert kinds(c.on_vote(0, ["die", b"older"], 31)) == [("decide", 0, "abort")]
    assert c.replies == []
    assert kinds(c.on_decided(ABORTED, 40)) == [("resolve", 1, False)] and c.replies[0].kind == "abort"


def test_a_recovery_that_aborted_first_wins_over_the_coordinator() -> None:
    c = coordinator()
    c.start()
    c.on_vote(1, ["yes", [b"+OK\r\n"]], 10)
    steps = c.on_vote(0, ["aborted"], 2000)
    assert kinds(steps) == [("resolve", 1, False)]
    assert c.replies[0].kind == "abort"


def test_a_lost_commit_answer_is_asked_again_from_the_record() -> None:
    """A paused coordinator: past the deadline it asks its commit again, never aborts on its own
    (the commit may have applied); the record answers (the case the bank/list-append check found)."""
    c = coordinator()
    c.start()
    c.on_vote(1, ["yes", [b":2\r\n"]], 10)
    assert c.on_vote(0, None, 20) == []  # no answer: try again
    assert kinds(c.due(100)) == [("commit", 0, None)]
    assert c.on_vote(0, None, 1500) == [] and c.expire(1500) == []  # past the deadline: still asking
    assert kinds(c.due(1600)) == [("commit", 0, None)]
    assert kinds(c.on_vote(0, ["committed", [b":1\r\n", b":3\r\n"]], 1602)) == [("resolve", 1, True)]
    assert c.replies[0].kind == "commit"


def test_decide_abort_finding_a_commit_fetches_the_replies() -> None:
    c = coordinator()
    c.start()
    c.on_vote(1, ["yes", [b":2\r\n"]], 10)
    c.on_vote(0, None, 20)
    c.due(40)
    assert kinds(c.on_vote(0, ["no", "slot moving"], 41)) == [("decide", 0, "abort")]
    assert kinds(c.on_decided(COMMITTED, 50)) == [("commit", 0, None)]
    assert kinds(c.on_vote(0, ["committed", [b":1\r\n", b":3\r\n"]], 60)) == [("resolve", 1, True)]


def test_coordinator_waits_then_retries_a_prepare_and_gives_up_at_the_deadline() -> None:
    c = coordinator()
    c.start()
    assert c.on_vote(1, ["wait", b"younger"], 10) == []
    assert c.due(12) == [] and kinds(c.due(20)) == [("prepare", 1, None)]
    assert c.on_vote(1, ["wait", b"younger"], 999) == []
    assert kinds(c.on_vote(1, ["wait", b"younger"], 1000)) == [("resolve", 1, False)]
    assert c.replies[0].kind == "abort"


def test_a_missing_vote_at_the_deadline_is_a_no() -> None:
    c = coordinator()
    c.start()
    assert c.expire(999) == []
    assert kinds(c.expire(1000)) == [("resolve", 1, False)] and c.replies[0].kind == "abort"


def test_unknown_outcome_when_the_record_cannot_be_reached() -> None:
    c = coordinator()
    c.start()
    c.on_vote(1, ["yes", [b":2\r\n"]], 10)
    c.on_vote(0, None, 20)
    assert c.expire(4999) == [] and c.replies == []
    assert c.due(5000) == [] and c.expire(5000) == []  # give-up: 4 timeouts past the deadline
    assert c.replies[0].kind == "unknown" and c.phase == "done"


def test_classic_and_read_only_need_no_record() -> None:
    c = coordinator(classic=True)
    c.start()
    c.on_vote(0, ["yes", [b"+OK\r\n", b"+OK\r\n"]], 10)
    assert kinds(c.on_vote(1, ["yes", [b"+OK\r\n"]], 10)) == [("resolve", 0, True), ("resolve", 1, True)]
    assert c.replies == []  # classic answers once every participant applied
    c.on_resolved(0, True)
    assert c.on_resolved(1, True) == [] and c.replies[0].kind == "commit" and c.phase == "done"
    r = coordinator(writes=False)
    r.start()
    r.on_vote(0, ["yes", [b"$1\r\na\r\n", b"$1\r\nb\r\n"]], 10)
    assert kinds(r.on_vote(1, ["yes", [b"$-1\r\n"]], 10)) == [("resolve", 0, True), ("resolve", 1, True)]
    assert r.replies[0].kind == "commit"  # its locks held together are its serialization point


def test_watch_vote_answers_the_null_array() -> None:
    c = coordinator()
    c.start()
    assert kinds(c.on_vote(1, ["watch"], 5)) == [("resolve", 1, False)]
    assert c.replies[0].kind == "watch"


# -- the entries, applied to a state machine ------------------------------------------------------------
def apply(t: TxnTable, sm: StateMachine, index: int, op: str, *fields: object) -> object:
    return apply_txn(t, sm, txn_entry(op, 10, *fields), index, lambda keys: False, {})


def test_prepare_applies_in_place_and_abort_restores_the_previous_values() -> None:
    t, sm = TxnTable(), StateMachine()
    sm.apply([[b"SET", b"a", b"1"]], ApplyContext(0))
    vote = msgpack.unpackb(apply(t, sm, 5, "prepare", b"t1", 1, 1000, 0, [0, 1],
                                 [[b"INCRBY", b"a", b"5"], [b"SET", b"new", b"v"]], [b"a", b"new"], [], False,
                                 False))
    assert vote == ["yes", [b":6\r\n", b"+OK\r\n"]]
    assert sm.data[b"a"] == b"6" and t.locked([b"new"]) == b"t1"
    again = msgpack.unpackb(apply(t, sm, 6, "prepare", b"t1", 1, 1000, 0, [0, 1],
                                  [[b"INCRBY", b"a", b"5"]], [b"a"], [], False, False))
    assert again == vote and sm.data[b"a"] == b"6"  # a retried prepare is answered, not applied again
    other = msgpack.unpackb(apply(t, sm, 7, "prepare", b"t2", 2, 1000, 0, [0], [[b"GET", b"a"]], [b"a"], [],
                                  False, False))
    assert other == ["die", b"t1"]
    assert apply(t, sm, 8, "decide", b"t1", "abort", 1000, [0, 1]) == b"aborted"  # the primary resolves too
    assert sm.data == {b"a": b"1"} and not t.locks and b"t1" in t.records
    apply(t, sm, 9, "forget", [b"t1"])
    assert not t.records
    late = msgpack.unpackb(apply(t, sm, 10, "prepare", b"t1", 1, 1000, 0, [0], [[b"SET", b"a", b"x"]], [b"a"], [],
                                 False, False))
    assert late[0] == "no" and sm.data[b"a"] == b"1"  # a late duplicate does not lock again


def test_commit_entry_prepares_and_decides_the_primary_in_one() -> None:
    t, sm = TxnTable(), StateMachine()
    out = msgpack.unpackb(apply(t, sm, 3, "commit", b"t1", 1, 1000, [0, 1], [[b"SET", b"k", b"v"]], [b"k"], [],
                                False))
    assert out == ["committed", [b"+OK\r\n"]] and sm.data[b"k"] == b"v" and not t.locks
    again = msgpack.unpackb(apply(t, sm, 4, "commit", b"t1", 1, 1000, [0, 1], [[b"SET", b"k", b"v"]], [b"k"], [],
                                  False))
    assert again == out and t.records[b"t1"][0] == COMMITTED
    assert apply(t, sm, 5, "decide", b"t1", "abort", 1000, [0, 1]) == b"committed"  # never changed
    t.lock(prepared(b"holder", 50, [b"x"]))
    assert msgpack.unpackb(apply(t, sm, 6, "commit", b"young", 90, 1000, [0, 1], [[b"SET", b"x", b"1"]], [b"x"],
                                 [], False)) == ["die", b"holder"]
    late = TxnTable(log_time=2000)
    assert msgpack.unpackb(apply(late, sm, 7, "commit", b"t2", 1, 1000, [0, 1], [[b"SET", b"y", b"1"]], [b"y"],
                                 [], False)) == ["aborted"]
    assert b"y" not in sm.data and late.records[b"t2"][0] == ABORTED


def test_a_malformed_entry_is_refused_alike_by_every_replica(tmp_path: Path) -> None:
    from replikv.config import NodeOptions
    from replikv.core.raft.effects import Apply
    from replikv.core.raft.messages import Entry, EntryKind
    from replikv.runtime.raft_group import RaftGroup

    grp = RaftGroup(0, tmp_path / "g0", NodeOptions(), 1, (1,), 10, 2)
    bad = txn_entry("prepare", 10, b"t", 1)  # too few fields
    entry = Entry(index=1, term=1, kind=EntryKind.NORMAL, data=bad)
    out = grp.apply(Apply(entries=(entry,), waiters=((1, "rid"),)))
    assert [(rid, str(result).startswith("ERR malformed transaction entry")) for rid, result, _ in out] == [
        ("rid", True)]
    assert grp.applied == 1 and not grp.sm.data and not grp.txns.locks
