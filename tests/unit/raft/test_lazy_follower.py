"""The lazy third replica (RaftNode ``lazy_follower_rounds``, core/raft/node.py): in a group of
three voters the leader sends each round to the eager follower at once and to the lazy one every
``lazy_follower_rounds`` rounds and at every tick; an eager follower that falls behind by a tick
swaps roles with the lazy one. A send policy only (Raft §5.3): commit still counts matches."""

from __future__ import annotations

from replikv.core.raft.effects import Effect
from replikv.core.raft.messages import AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse, TimeoutNow
from replikv.core.raft.node import RaftNode, Role

from tests.unit.raft.raft_helpers import elect, make, msgs


def ack(n: RaftNode, src: int, match: int) -> list[Effect]:
    return n.step(AppendEntriesResponse(term=n.term, src=src, dst=n.id, success=True, match_index=match))


def appends_to(effects: list[Effect], dst: int) -> list[AppendEntries]:
    return [m for m in msgs(effects, AppendEntries) if m.dst == dst]


def sent_entries(effects: list[Effect], dst: int) -> list[int]:
    return [e.index for m in appends_to(effects, dst) for e in m.entries]


def leader(rounds: int = 3, voters: tuple[int, ...] = (1, 2, 3), **kw: object) -> RaftNode:
    """Node 1 leads term 2 with its no-op (index 1) acknowledged by every follower: all replicate."""
    n = make(term=1, voters=voters, lazy_follower_rounds=rounds, **kw)
    elect(n)
    for v in voters[1:]:
        ack(n, v, 1)
    return n


def test_the_eager_follower_gets_every_round_and_the_lazy_one_every_third() -> None:
    n = leader(3)
    assert (n.eager_follower, n.lazy_follower) == (2, 3)  # the voter after the leader's id is eager
    to_lazy: list[int] = []
    for i in range(6):
        effs = n.propose(b"x%d" % i, i)
        assert sent_entries(effs, 2) == [i + 2]  # at once
        to_lazy.append(len(appends_to(effs, 3)))
        assert not appends_to(ack(n, 2, i + 2), 3)  # the commit it brings waits for the batch too
    assert to_lazy == [0, 0, 1, 0, 0, 1]  # held, held, then the three rounds' entries in one batch
    assert n.lazy_rounds_held == 6


def test_a_lazy_batch_carries_every_held_entry_and_the_commit() -> None:
    n = leader(3)
    for i in range(2):
        n.propose(b"x%d" % i, i)
        ack(n, 2, i + 2)  # leader + eager: a majority of three commits without the lazy follower
    assert n.log.commit == 3
    effs = n.propose(b"x2", 2)
    [batch] = appends_to(effs, 3)
    assert [e.index for e in batch.entries] == [2, 3, 4] and batch.leader_commit == 3


def test_with_the_policy_off_every_follower_gets_every_round() -> None:
    for n in (leader(0), leader(3, voters=(1, 2, 3, 4, 5))):
        assert n.lazy_follower is None
        effs = n.propose(b"x", 1)
        assert all(sent_entries(effs, v) == [2] for v in n.log.config().voters - {1})


def test_a_tick_sends_the_lazy_follower_what_was_held() -> None:
    n = leader(8)
    n.propose(b"x", 1)
    effs = n.tick()
    assert sent_entries(effs, 3) == [2]


def test_a_silent_eager_follower_costs_at_most_two_ticks_then_swaps_roles() -> None:
    """The eager follower stops answering (paused, dead, partitioned): the next tick sends the lazy
    one the entries, whose answer commits them; the tick after swaps roles, and new rounds go to
    node 3 at once and commit with its answer alone."""
    n = leader(8)
    n.propose(b"x", 1)  # index 2: to node 2 only, which never answers from now on
    effs = n.tick()
    assert sent_entries(effs, 3) == [2]
    ack(n, 3, 2)
    assert n.log.commit == 2
    n.tick()
    assert (n.eager_follower, n.lazy_follower) == (3, 2) and n.lazy_swaps == 1
    effs = n.propose(b"y", 2)
    assert sent_entries(effs, 3) == [3] and not appends_to(effs, 2)
    ack(n, 3, 3)
    assert n.log.commit == 3 and n.role is Role.LEADER


def test_the_preferred_eager_follower_takes_the_role_back_once_it_keeps_up() -> None:
    n = leader(8)
    n.propose(b"x", 1)
    n.tick()
    ack(n, 3, 2)
    n.tick()  # node 2 silent for a tick: swapped
    assert n.eager_follower == 3
    ack(n, 2, 2)  # node 2 is back and answers what it was sent
    n.tick()
    assert (n.eager_follower, n.lazy_follower) == (2, 3) and n.lazy_swaps == 2


def test_read_index_rounds_still_ask_both_followers_at_once() -> None:
    n = leader(3, check_quorum=True)
    effs = n.read_index("r1")
    assert sorted(m.dst for m in msgs(effs, Heartbeat)) == [2, 3]


def test_a_leadership_transfer_to_the_lazy_follower_brings_it_up_to_date_at_once() -> None:
    n = leader(8)
    n.propose(b"x", 1)
    ack(n, 2, 2)
    effs = n.transfer_leadership(3)
    assert sent_entries(effs, 3) == [2]
    effs = ack(n, 3, 2)
    assert [m.dst for m in msgs(effs, TimeoutNow)] == [3]


def test_a_lazy_follower_that_lost_its_log_is_probed_at_once() -> None:
    n = leader(8)
    n.propose(b"x", 1)
    effs = n.step(HeartbeatResponse(term=n.term, src=3, dst=1, lost=True, last_index=0))
    assert sent_entries(effs, 3) == [1, 2]  # PROBE state: never held


def test_an_eager_follower_that_is_not_replicating_leaves_nothing_held() -> None:
    n = make(term=1, lazy_follower_rounds=8)
    elect(n)
    ack(n, 3, 1)  # node 2 (the eager one) still probing: its no-op unanswered
    effs = n.propose(b"x", 1)
    assert sent_entries(effs, 3) == [2]
