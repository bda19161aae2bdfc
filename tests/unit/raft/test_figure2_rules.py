"""Every bullet of Raft Figure 2 ("Rules for Servers", RequestVote and
AppendEntries receiver implementation), one test each, named after it.

Nodes here run plain Raft (pre_vote and check_quorum off) so that each rule
is seen alone; PreVote and CheckQuorum have their own tests.
"""

from __future__ import annotations

import pytest
from raft_helpers import ae, applied, elapse, elect, make, msgs, persists, resp, rv, timeout

from replikv.core.raft.effects import Apply, Persist, Send
from replikv.core.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    EntryKind,
    Heartbeat,
    RequestVote,
    RequestVoteResponse,
)
from replikv.core.raft.node import Role

# ------------------------------------------------------------ All Servers


def test_all_servers_if_commit_index_above_last_applied_apply_in_log_order() -> None:
    n = make(terms=(1, 1, 1), term=1)
    effs = n.step(ae(1, (3, 1), commit=2))
    assert [e.index for e in applied(effs)] == [1, 2]
    effs = n.step(ae(1, (3, 1), commit=3))
    assert [e.index for e in applied(effs)] == [3]
    assert n.log.applied == n.log.commit == 3


def test_all_servers_restart_applies_entries_committed_before_crash() -> None:
    n = make(terms=(1, 1), term=1, commit=2)
    assert [e.index for e in applied(n.start())] == [1, 2]


def test_all_servers_rpc_request_with_higher_term_sets_term_and_converts_to_follower() -> None:
    n = make(term=1)
    elect(n)
    assert n.role is Role.LEADER
    n.step(ae(5, (0, 0), src=3))
    assert (n.role, n.term, n.leader) == (Role.FOLLOWER, 5, 3)


def test_all_servers_rpc_response_with_higher_term_sets_term_and_converts_to_follower() -> None:
    n = make(term=1)
    n.campaign()
    assert n.role is Role.CANDIDATE and n.term == 2
    n.step(RequestVoteResponse(term=7, src=2, dst=1, granted=False))
    assert (n.role, n.term, n.vote) == (Role.FOLLOWER, 7, None)


# -------------------------------------------------------------- Followers


def test_followers_respond_to_rpcs_from_candidates_and_leaders() -> None:
    n = make(term=1)
    assert resp(n.step(rv(2, (0, 0))), RequestVoteResponse).granted
    assert resp(n.step(ae(2, (0, 0))), AppendEntriesResponse).success


def test_followers_election_timeout_without_append_entries_converts_to_candidate() -> None:
    n = make(term=1)
    effs = timeout(n)
    assert n.role is Role.CANDIDATE and n.term == 2
    assert {m.dst for m in msgs(effs, RequestVote)} == {2, 3}


def test_followers_append_entries_from_current_leader_resets_election_timer() -> None:
    n = make(term=1)
    for _ in range(3):
        elapse(n, n.election_timeout_ticks - 1)
        n.step(ae(1, (0, 0)))
    assert n.role is Role.FOLLOWER


def test_followers_granting_vote_to_candidate_resets_election_timer() -> None:
    n = make(term=1)
    elapse(n, n.randomized_timeout_ticks - 1)
    assert resp(n.step(rv(2, (0, 0))), RequestVoteResponse).granted
    elapse(n, n.randomized_timeout_ticks - 1)
    assert n.role is Role.FOLLOWER


# ------------------------------------------------------------- Candidates


def test_candidates_on_conversion_increment_term_vote_self_reset_timer_send_request_votes() -> None:
    n = make(terms=(1, 1), term=1)
    effs = n.campaign()
    assert (n.role, n.term, n.vote, n.election_elapsed) == (Role.CANDIDATE, 2, 1, 0)
    votes = msgs(effs, RequestVote)
    assert sorted(m.dst for m in votes) == [2, 3]
    assert all((m.term, m.last_log_index, m.last_log_term) == (2, 2, 1) for m in votes)
    # the vote for self is durable before the requests go out
    assert isinstance(effs[0], Persist) and effs[0].hard_state is not None
    assert effs[0].hard_state.vote == 1


def test_candidates_votes_from_majority_become_leader() -> None:
    n = make(term=1)
    n.campaign()
    n.step(RequestVoteResponse(term=2, src=2, dst=1, granted=False))
    assert n.role is Role.CANDIDATE
    n.step(RequestVoteResponse(term=2, src=3, dst=1, granted=True))
    assert n.role is Role.LEADER and n.leader == 1


def test_candidates_majority_of_refusals_go_back_to_follower() -> None:
    n = make(term=1)
    n.campaign()
    n.step(RequestVoteResponse(term=2, src=2, dst=1, granted=False))
    n.step(RequestVoteResponse(term=2, src=3, dst=1, granted=False))
    assert n.role is Role.FOLLOWER and n.term == 2


def test_candidates_append_entries_from_new_leader_convert_to_follower() -> None:
    n = make(term=1)
    n.campaign()
    n.step(ae(2, (0, 0), src=3))
    assert (n.role, n.term, n.leader) == (Role.FOLLOWER, 2, 3)


def test_candidates_election_timeout_elapses_start_new_election() -> None:
    n = make(term=1)
    n.campaign()
    effs = timeout(n)
    assert n.role is Role.CANDIDATE and n.term == 3
    assert all(m.term == 3 for m in msgs(effs, RequestVote))


# ---------------------------------------------------------------- Leaders


def test_leaders_upon_election_send_initial_append_entries_to_each_server() -> None:
    n = make(terms=(1,), term=1)
    effs = elect(n)
    first = msgs(effs, AppendEntries)
    assert sorted(m.dst for m in first) == [2, 3]
    # the first AppendEntries carries the term's no-op (Raft §8)
    assert all(m.entries and m.entries[0].kind is EntryKind.NOOP for m in first)


def test_leaders_repeat_heartbeats_during_idle_periods() -> None:
    n = make(term=1)
    elect(n)
    for _ in range(3):
        effs = elapse(n, n.heartbeat_ticks)
        assert sorted(m.dst for m in msgs(effs, Heartbeat)) == [2, 3]


def test_leaders_command_from_client_append_to_log_respond_after_applied() -> None:
    n = make(term=1)
    elect(n)
    for v in (2, 3):
        n.step(AppendEntriesResponse(term=2, src=v, dst=1, success=True, match_index=1))
    effs = n.propose(b"cmd", "req-1")
    assert n.log.last_index == 2 and n.log.entry(2).data == b"cmd"
    assert not any(isinstance(e, Apply) for e in effs)  # not committed yet: no answer
    effs = n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=2))
    (apply,) = [e for e in effs if isinstance(e, Apply)]
    assert [x.data for x in apply.entries] == [b"cmd"] and apply.waiters == ((2, "req-1"),)


def test_leaders_last_log_index_at_least_next_index_send_entries_from_next_index() -> None:
    n = make(term=1)
    elect(n)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=1))
    effs = n.propose(b"x", 1)
    (m,) = [m for m in msgs(effs, AppendEntries) if m.dst == 2]
    assert (m.prev_log_index, [e.index for e in m.entries]) == (1, [2])


def test_leaders_successful_append_updates_next_index_and_match_index() -> None:
    n = make(term=1)
    elect(n)
    n.propose(b"x", 1)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=2))
    assert (n.progress[2].match, n.progress[2].next) == (2, 3)


def test_leaders_append_fails_on_log_inconsistency_decrement_next_index_and_retry() -> None:
    n = make(terms=(1, 1, 1, 1), term=1)
    elect(n)  # term 2, no-op at 5; next for 3 is 6
    effs = n.step(
        AppendEntriesResponse(
            term=2, src=3, dst=1, success=False, reject_index=4, conflict_term=0, conflict_index=3
        )
    )
    (m,) = msgs(effs, AppendEntries)
    assert m.dst == 3 and m.prev_log_index == 2 and next(e.index for e in m.entries) == 3


def test_leaders_commit_index_set_to_n_replicated_on_majority_of_current_term() -> None:
    n = make(term=1)
    elect(n)
    n.propose(b"a", 1)
    n.step(AppendEntriesResponse(term=2, src=3, dst=1, success=True, match_index=2))
    assert n.log.commit == 2


def test_leaders_never_commit_previous_term_entries_by_counting_replicas() -> None:
    """Raft §5.4.2 / Figure 8: an old-term entry on a majority is not committed
    until an entry of the current term is."""
    n = make(terms=(1, 2), term=3)
    elect(n)  # term 4, no-op at 3
    n.step(
        AppendEntriesResponse(
            term=4, src=2, dst=1, success=False, reject_index=2, conflict_term=0, conflict_index=2
        )
    )
    n.step(AppendEntriesResponse(term=4, src=2, dst=1, success=True, match_index=2))
    assert n.log.commit == 0  # entry 2 (term 2) is on a majority but not committable
    n.step(AppendEntriesResponse(term=4, src=2, dst=1, success=True, match_index=3))
    assert n.log.commit == 3


# ------------------------------------------------------ RequestVote receiver


def test_request_vote_rule1_reply_false_if_term_below_current_term() -> None:
    n = make(term=5)
    r = resp(n.step(rv(4, (9, 4))), RequestVoteResponse)
    assert not r.granted and r.term == 5 and n.vote is None


def test_request_vote_rule2_grant_if_not_voted_and_candidate_log_up_to_date() -> None:
    n = make(terms=(1, 2), term=2)
    effs = n.step(rv(3, (2, 2)))
    assert resp(effs, RequestVoteResponse).granted and n.vote == 2
    # the vote is persisted before the response (Figure 2 persistent state)
    assert isinstance(effs[0], Persist) and isinstance(effs[1], Send)


def test_request_vote_rule2_deny_if_already_voted_for_another_candidate() -> None:
    n = make(term=3, vote=3)
    assert not resp(n.step(rv(3, (0, 0))), RequestVoteResponse).granted


def test_request_vote_rule2_grant_again_to_the_same_candidate() -> None:
    n = make(term=3, vote=2)
    assert resp(n.step(rv(3, (0, 0))), RequestVoteResponse).granted


@pytest.mark.parametrize(
    "last, granted",
    [((5, 1), False), ((1, 2), False), ((2, 2), True), ((1, 3), True)],
    ids=["older-last-term", "same-term-shorter", "same-term-equal", "newer-last-term"],
)
def test_request_vote_rule2_candidate_log_at_least_as_up_to_date(
    last: tuple[int, int], granted: bool
) -> None:
    n = make(terms=(1, 2), term=2)
    assert resp(n.step(rv(3, last)), RequestVoteResponse).granted is granted


# ---------------------------------------------------- AppendEntries receiver


def test_append_entries_rule1_reply_false_if_term_below_current_term() -> None:
    n = make(terms=(1,), term=3)
    r = resp(n.step(ae(2, (1, 1), ((2, 2),))), AppendEntriesResponse)
    assert not r.success and r.term == 3 and n.log.last_index == 1


def test_append_entries_rule2_reply_false_if_no_entry_at_prev_log_index_with_prev_log_term() -> (
    None
):
    n = make(terms=(1, 1, 2), term=2)
    r = resp(n.step(ae(3, (3, 3), ((4, 3),))), AppendEntriesResponse)
    assert not r.success and r.reject_index == 3
    assert (r.conflict_term, r.conflict_index) == (2, 3)  # Raft §5.3 hint
    r = resp(n.step(ae(3, (7, 3))), AppendEntriesResponse)
    assert not r.success and (r.conflict_term, r.conflict_index) == (0, 4)  # log too short


def test_append_entries_rule3_conflicting_entry_deleted_with_all_that_follow() -> None:
    n = make(terms=(1, 1, 1, 1), term=1)
    effs = n.step(ae(2, (2, 1), ((3, 2),)))
    assert [e.term for e in n.log.entries] == [1, 1, 2]
    (p,) = persists(effs)
    assert [e.index for e in p.entries] == [3]  # the store truncates from index 3 too


def test_append_entries_rule4_append_new_entries_not_already_in_log() -> None:
    n = make(terms=(1, 1), term=1)
    n.step(ae(1, (1, 1), ((2, 1), (3, 1))))
    assert n.log.last_index == 3
    # a stale, shorter copy neither truncates nor rewrites anything
    effs = n.step(ae(1, (1, 1), ((2, 1),)))
    assert n.log.last_index == 3 and not any(p.entries for p in persists(effs))
    assert resp(effs, AppendEntriesResponse).match_index == 2


def test_append_entries_rule5_commit_index_min_of_leader_commit_and_last_new_entry() -> None:
    n = make(terms=(1, 1, 1, 1), term=1)
    n.step(ae(1, (1, 1), ((2, 1),), commit=4))
    assert n.log.commit == 2  # index of last new entry
    n.step(ae(1, (4, 1), commit=3))
    assert n.log.commit == 3  # leader's commit
