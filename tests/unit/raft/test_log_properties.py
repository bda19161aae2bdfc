"""Property tests (hypothesis) for the log, flow control and the session table."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.raft.errors import SessionExpired
from replikv.core.raft.log import RaftLog
from replikv.core.raft.messages import Entry, Snapshot
from replikv.core.raft.progress import Inflights
from replikv.core.raft.sessions import SessionTable


def _log_from_terms(increments: list[int]) -> list[Entry]:
    term, out = 1, []
    for i, inc in enumerate(increments):
        term += inc
        out.append(Entry(term=term, index=i + 1, data=b"%d" % i))
    return out


terms_st = st.lists(st.integers(0, 2), max_size=12)


@settings(max_examples=200, deadline=None)
@given(mine=terms_st, leaders=terms_st, prev=st.integers(0, 12))
def test_append_after_makes_the_follower_log_match_the_leader_up_to_the_last_new_entry(
    mine: list[int], leaders: list[int], prev: int
) -> None:
    """AppendEntries receiver rules 2-4 establish Log Matching (Raft §5.3)."""
    ours, theirs = _log_from_terms(mine), _log_from_terms(leaders)
    prev = min(prev, len(theirs))
    log = RaftLog(None, ours)
    prev_term = theirs[prev - 1].term if prev else 0
    if not log.matches(prev, prev_term):
        return  # rule 2 rejects; nothing changes
    before = list(log.entries)
    log.append_after(prev, theirs[prev:])
    # the prefix up to prev is vouched for by Log Matching; after it we now hold the leader's
    assert log.entries[prev : len(theirs)] == theirs[prev:]
    assert log.entries[:prev] == before[:prev]
    # entries beyond the leader's are kept only if nothing conflicted
    if len(log.entries) > len(theirs):
        assert log.entries[len(theirs) :] == before[len(theirs) :]
    log.check()


@settings(max_examples=200, deadline=None)
@given(inc=terms_st, at=st.integers(1, 12))
def test_conflict_hint_points_at_first_index_of_the_term(inc: list[int], at: int) -> None:
    entries = _log_from_terms(inc)
    log = RaftLog(None, entries)
    term, first = log.conflict_hint(at)
    if at > log.last_index:
        assert (term, first) == (0, log.last_index + 1)
    else:
        assert term == log.term(at)
        assert all(log.term(i) == term for i in range(first, at + 1))
        assert first == 1 or log.term(first - 1) != term


@settings(max_examples=100, deadline=None)
@given(inc=st.lists(st.integers(0, 2), min_size=1, max_size=12), cut=st.integers(0, 12))
def test_compaction_keeps_terms_and_suffix(inc: list[int], cut: int) -> None:
    entries = _log_from_terms(inc)
    log = RaftLog(None, entries)
    log.commit = log.applied = log.last_index
    cut = min(cut, log.last_index)
    log.compact(Snapshot(index=cut, term=int(log.term(cut) or 0), config=log.config_at(cut)))
    assert log.first_index == cut + 1 and log.last_index == len(entries)
    for e in entries[cut:]:
        assert log.term(e.index) == e.term
    log.check()


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=16),
    ops=st.lists(st.tuples(st.sampled_from(["compact", "truncate", "append", "restore"]), st.integers(0, 20)),
                 max_size=8),
    at=st.integers(0, 40),
)
def test_bytes_after_is_the_size_of_the_held_entries_past_an_index(
    sizes: list[int], ops: list[tuple[str, int]], at: int
) -> None:
    """The running byte totals (``bytes_after``, read by back-pressure) follow appends,
    truncations, compactions and snapshot installs."""
    log = RaftLog(None, [Entry(term=1, index=i + 1, data=b"x" * n) for i, n in enumerate(sizes)])
    for op, k in ops:
        last = log.last_index
        if op == "append":
            log.append([Entry(term=log.last_term, index=last + 1, data=b"y" * k)])
        elif op == "truncate" and log.commit < last:
            log.truncate_from(max(log.commit + 1, last - k % 3))
        elif op == "compact":
            log.commit = log.applied = last
            cut = max(log.snapshot.index, min(k, last))
            log.compact(Snapshot(index=cut, term=int(log.term(cut) or 0), config=log.config_at(cut)))
        elif op == "restore" and k > log.commit:
            keep = k <= last
            log.restore(Snapshot(index=k, term=int(log.term(k) or 0) if keep else log.last_term))
        log.check()
        want = sum(e.size_bytes() for e in log.entries if e.index > at)
        assert log.bytes_after(at) == want


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 50)), max_size=40))
def test_inflights_never_exceed_their_bounds(ops: list[tuple[bool, int]]) -> None:
    inf = Inflights(max_count=4, max_bytes=100)
    last = 0
    for add, size in ops:
        if add and not inf.full():
            last += 1
            inf.add(last, size)
        elif not add:
            inf.free_le(last - 1)
        assert len(inf) <= 4 and inf.bytes < 100 + 50


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 5)), max_size=40))
def test_session_table_applies_each_client_seq_at_most_once(reqs: list[tuple[int, int]]) -> None:
    """Thesis §6.3: retries of (client, seq) return the cached result."""
    table = SessionTable()
    applied: list[tuple[int, int]] = []
    last: dict[int, int] = {}
    for index, (client, seq) in enumerate(reqs, 1):
        e = Entry(term=1, index=index, data=b"x", client_id=client, seq=seq)
        result = table.apply(e, lambda e: applied.append((e.client_id, e.seq)) or ("r", e.seq))
        if seq < last.get(client, 0):
            assert isinstance(result, SessionExpired)
        else:
            assert result == ("r", seq)
            last[client] = seq
    assert len(applied) == len(set(applied))


def test_session_table_evicts_deterministically_and_round_trips() -> None:
    t = SessionTable(max_sessions=2)
    for i, c in enumerate((1, 2, 3), 1):
        t.apply(Entry(term=1, index=i, client_id=c, seq=1), lambda e: "ok")
    assert len(t) == 2 and [s[0] for s in t.to_state()] == [2, 3]
    assert SessionTable.from_state(t.to_state(), 2).to_state() == t.to_state()
