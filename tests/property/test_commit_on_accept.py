"""paxos.py, "Commit on accept": an acceptor that commits a Propose on accept ends where the
round's Commit (the same value, origin, after and noop) leaves it once the Propose raised its
promise to the ballot: the same state and the same ``ApplyCommit``, from any acceptor state the
Propose is accepted in (``acceptor_step`` applies the Commit rule to the state before the
Propose, without building that intermediate state or a Commit)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.dynamo.paxos import ApplyCommit, Persist, Send, acceptor_step
from replikv.core.dynamo.paxos_messages import AcceptorState, Ballot, Commit, Electorate, Proposal, Propose

E3 = Electorate(("a", "b", "c"), 2)
ballots = st.builds(Ballot, st.integers(1, 6), st.sampled_from(["a", "b", "c"]))
proposals = st.none() | st.builds(lambda b, v, o: Proposal(ballot=b, value=v, origin=o),
                                  ballots, st.sampled_from([b"x", None]), st.none() | ballots)


@settings(max_examples=500, deadline=None)
@given(promised=ballots, accepted=proposals, committed=proposals, ballot=ballots, value=st.sampled_from([b"v", None]),
       noop=st.booleans(), after=st.none() | ballots, origin=st.none() | ballots)
def test_a_commit_on_accept_equals_the_propose_then_the_commit(
        promised: Ballot, accepted: Proposal | None, committed: Proposal | None, ballot: Ballot,
        value: bytes | None, noop: bool, after: Ballot | None, origin: Ballot | None) -> None:
    top = max([promised] + [p.ballot for p in (accepted, committed) if p is not None])
    state = AcceptorState(promised=top, accepted=accepted, committed=committed)
    if ballot < state.promised:
        ballot = state.promised  # accepted: the ballot is at least the promise
    origin = origin or ballot
    msg = Propose(req=1, sender="a", key=b"k", ballot=ballot, value=value, electorate=E3, origin=origin,
                  commit=True, after=after, noop=noop)
    new, effects = acceptor_step("b", state, msg, None, E3)
    raised = AcceptorState(promised=ballot, accepted=state.accepted, committed=state.committed)
    then, commit_effects = acceptor_step("b", raised, Commit(
        req=1, sender="a", key=b"k", ballot=ballot, value=value, noop=noop, origin=origin, after=after, ack=False), None)
    assert new == then
    if not noop and value is not None and (committed is None or committed.ballot < ballot):
        assert new.committed == Proposal(ballot=ballot, value=value, origin=origin, after=after)
    assert [e for e in effects if isinstance(e, ApplyCommit)] == [e for e in commit_effects if isinstance(e, ApplyCommit)]
    assert [type(e) for e in effects] == ([Persist] if new != state else []) + [ApplyCommit] * (
        len(effects) - 1 - (new != state)) + [Send]
