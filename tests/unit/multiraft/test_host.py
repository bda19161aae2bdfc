"""GroupHost (core/multiraft/host.py) on the sharded simulator (sim/multiraft_cluster.py):
batching, quiescence, node liveness and re-election, restarts and partitions. The simulator
checks Election Safety and State Machine Safety per group at every round."""

from __future__ import annotations

import random

import pytest

from replikv.core.multiraft.host import GroupHost
from replikv.core.multiraft.messages import Batch, Quiesce
from replikv.core.raft.messages import AppendEntries
from replikv.core.raft.node import RaftNode, Role
from replikv.sim.multiraft_cluster import ShardedSim, round_robin_placement, scale_report

T = 20  # election timeout ticks in these tests
HB = 4


def settled(sim: ShardedSim) -> ShardedSim:
    sim.run(50 * T, lambda: sim.all_led() and sim.all_quiesced())
    assert sim.all_led() and sim.all_quiesced()
    return sim


def make(nodes: int = 5, groups: int = 20, seed: int = 1, **kw: object) -> ShardedSim:
    return settled(ShardedSim(nodes, groups, 3, seed, election_timeout_ticks=T, heartbeat_ticks=HB, **kw))  # type: ignore[arg-type]


def last_applied(sim: ShardedSim, g: int) -> set[int]:
    return {sim.applied[(n, g)] for n in sim.placement[g] if sim.is_up(n)}


def test_placement_spreads_leaders_and_replicas() -> None:
    p = round_robin_placement(5, 20, 3)
    assert all(len(set(m)) == 3 for m in p.values())
    leads = [sum(1 for m in p.values() if m[0] == n) for n in range(1, 6)]
    hosts = [sum(1 for m in p.values() if n in m) for n in range(1, 6)]
    assert leads == [4] * 5 and hosts == [12] * 5


def test_idle_groups_send_only_pings_and_traffic_does_not_grow_with_groups() -> None:
    per_node: list[float] = []
    for groups in (10, 200):
        sim = make(5, groups)
        msgs0, frames0 = sum(sim.raft_msgs.values()), sum(sim.frames.values())
        sim.run(10 * T)
        assert sum(sim.raft_msgs.values()) == msgs0  # quiesced: not one Raft message
        per_node.append((sum(sim.frames.values()) - frames0) / 5)
        assert sim.all_quiesced()
    assert per_node[0] == per_node[1]
    # one ping per peer per heartbeat interval: round robin placement gives each node 4 peers
    assert per_node[0] == pytest.approx(4 * 10 * T / HB, rel=0.05)
    awake = ShardedSim(5, 200, 3, 1, election_timeout_ticks=T, heartbeat_ticks=HB, quiesce=False)
    awake.run(50 * T, awake.all_led)
    msgs0 = sum(awake.raft_msgs.values())
    awake.run(10 * T)
    assert sum(awake.raft_msgs.values()) - msgs0 > 200 * 2 * (10 * T // HB) * 0.9  # heartbeats per group


def test_a_proposal_wakes_a_quiesced_group_commits_everywhere_and_it_quiesces_again() -> None:
    sim = make()
    g = 7
    leader = sim.leader(g)
    assert leader is not None
    before = sim.hosts[leader].stats["woken"]  # type: ignore[union-attr]
    sim.propose(leader, g, b"set x 1", "w1")
    assert not sim.all_quiesced()
    sim.run(10 * T, lambda: sim.results.get("w1") is not None and sim.all_quiesced())
    assert sim.results["w1"][0] == "applied"
    index = sim.results["w1"][2]
    assert last_applied(sim, g) == {index}
    assert sim.canonical[g][index][1] == b"set x 1"
    assert sim.all_quiesced()
    assert sim.hosts[leader].stats["woken"] == before + 1  # type: ignore[union-attr]


def test_a_rounds_acks_and_proposals_reach_the_core_in_one_call_one_append_entries_per_follower() -> None:
    """Both followers' acknowledgements (two batches) and a new proposal in one round: each
    follower gets ONE AppendEntries carrying the new entry and the commit index the acks
    advanced, not a commit notice per ack batch followed by the entries (module doc)."""
    sim = make(3, 1)
    g, lh, x_index, followers = _committed_without_a_new_proposal(sim)  # two ack batches, one round
    assert followers == sorted(n for n in sim.placement[g] if n != sim.leader(g))
    lh.propose(g, [(b"set y 2", "y", None, None)])
    sent = {b.dst: [m for grp, m in b.msgs if grp == g] for b in lh.ready().batches}
    assert sorted(sent) == followers
    for msgs in sent.values():
        assert len(msgs) == 1 and isinstance(msgs[0], AppendEntries)
        assert [e.data for e in msgs[0].entries] == [b"set y 2"]
        assert msgs[0].leader_commit == x_index
    assert lh.groups[g].log.commit == x_index


def _committed_without_a_new_proposal(sim: ShardedSim) -> tuple[int, GroupHost, int, list[int]]:
    """One group on 3 nodes: an entry replicated and both acks stepped into the leader, no new
    proposal: its next ``ready`` advances the commit with nothing new to send (a notice is due)."""
    g = next(iter(sim.placement))
    leader = sim.leader(g)
    assert leader is not None
    lh = sim.hosts[leader]
    assert lh is not None
    lh.propose(g, [(b"set x 1", "x", None, None)])
    acks = []
    for b in lh.ready().batches:
        fh = sim.hosts[b.dst]
        assert fh is not None
        fh.step(b)
        acks += fh.ready().batches
    for b in acks:
        lh.step(b)
    return g, lh, lh.groups[g].log.last_index, sorted(b.src for b in acks)


def test_commit_notices_are_held_and_dropped_when_the_groups_next_append_entries_carries_the_commit() -> None:
    """module doc: the empty AppendEntries a commit sends each follower waits; the group's next
    AppendEntries to the follower carries the commit index, so the notice never leaves."""
    sim = make(3, 1)
    g, lh, x_index, followers = _committed_without_a_new_proposal(sim)
    held, dropped = lh.stats["notices_held"], lh.stats["notices_dropped"]
    assert all(not any(grp == g for grp, _m in b.msgs) for b in lh.ready().batches)  # held, not sent
    assert lh.groups[g].log.commit == x_index
    assert lh.stats["notices_held"] == held + 2
    lh.propose(g, [(b"set y 2", "y", None, None)])
    sent = {b.dst: [m for grp, m in b.msgs if grp == g] for b in lh.ready().batches}
    assert sorted(sent) == followers
    for msgs in sent.values():
        assert len(msgs) == 1 and isinstance(msgs[0], AppendEntries)
        assert [e.data for e in msgs[0].entries] == [b"set y 2"] and msgs[0].leader_commit == x_index
    assert lh.stats["notices_dropped"] == dropped + 2


def test_commit_notices_leave_at_the_next_tick_and_the_followers_apply() -> None:
    sim = make(3, 1)
    g, lh, x_index, followers = _committed_without_a_new_proposal(sim)
    assert all(not b.msgs for b in lh.ready().batches)
    lh.tick()
    batches = [b for b in lh.ready().batches if b.msgs]
    assert sorted(b.dst for b in batches) == followers
    for b in batches:
        notice = b.msgs[0][1]
        assert isinstance(notice, AppendEntries) and not notice.entries and notice.leader_commit == x_index
        fh = sim.hosts[b.dst]
        assert fh is not None
        fh.step(b)
        fh.ready()
        assert fh.groups[g].log.commit == fh.groups[g].log.applied == x_index


def test_commit_notices_go_before_a_later_message_of_their_group() -> None:
    """A ReadIndex round's heartbeat to a follower holding a notice: the notice leaves first, in
    the same batch (per group and follower, the order the core sent in)."""
    sim = make(3, 1)
    g, lh, x_index, followers = _committed_without_a_new_proposal(sim)
    assert all(not b.msgs for b in lh.ready().batches)  # the acks: the commit, its notices held
    lh.read(g, [("r", False)])
    sent = {b.dst: [m for grp, m in b.msgs if grp == g] for b in lh.ready().batches}
    for d in followers:
        kinds = [type(m).__name__ for m in sent[d]]
        assert kinds == ["AppendEntries", "Heartbeat"], kinds
        assert sent[d][0].leader_commit == x_index  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", range(1, 9))
def test_the_groups_of_a_dead_node_get_new_leaders_within_two_election_timeouts(seed: int) -> None:
    sim = make(6, 60, seed)
    led: dict[int, list[int]] = {}
    for g in sim.placement:
        led.setdefault(sim.leader(g), []).append(g)  # type: ignore[arg-type]
    victim = random.Random(seed).choice(sorted(led))
    sim.crash(victim)
    took = sim.run(10 * T, lambda: all(sim.leader(g) is not None for g in led[victim]))
    assert all(sim.leader(g) is not None for g in led[victim])
    assert took <= 2 * T, took
    # the new leaders are spread over the survivors, not piled on one node
    assert len({sim.leader(g) for g in led[victim]}) > 1
    # and the groups still take writes
    for g in led[victim]:
        sim.propose(sim.leader(g), g, f"after {g}".encode(), ("w", g))  # type: ignore[arg-type]
    sim.run(10 * T, lambda: all(("w", g) in sim.results for g in led[victim]))
    assert all(sim.results[("w", g)][0] == "applied" for g in led[victim])


def test_a_restarted_node_catches_up_on_what_it_missed() -> None:
    sim = make()
    sim.crash(3)
    sim.run(2 * T)
    mine = [g for g, m in sim.placement.items() if 3 in m]
    for i, g in enumerate(mine):
        who = sim.leader(g)
        if who is None:
            sim.run(3 * T, lambda g=g: sim.leader(g) is not None)  # type: ignore[misc]
            who = sim.leader(g)
        assert who is not None and who != 3
        sim.propose(who, g, f"v{i}".encode(), ("r", g))
    sim.run(10 * T, lambda: all(("r", g) in sim.results for g in mine))
    sim.restart(3)
    sim.run(20 * T, lambda: all(len(last_applied(sim, g)) == 1 for g in mine) and sim.all_quiesced())
    for g in mine:
        assert sim.applied[(3, g)] == sim.results[("r", g)][2]
    assert sim.all_quiesced()
    assert sim.hosts[3].incarnation == 1  # type: ignore[union-attr]


def test_a_partitioned_follower_is_left_out_of_quiescence_then_caught_up_after_heal() -> None:
    sim = make(5, 10)
    g = 0
    members = sim.placement[g]
    leader = sim.leader(g)
    follower = next(m for m in members if m != leader)
    sim.partition({follower})
    for i in range(5):
        sim.propose(leader, g, f"p{i}".encode(), ("p", i))  # type: ignore[arg-type]
    sim.run(5 * T, lambda: all(("p", i) in sim.results for i in range(5)))
    assert all(sim.results[("p", i)][0] == "applied" for i in range(5))
    sim.run(3 * T)
    host = sim.hosts[leader]  # type: ignore[index]
    assert host is not None and follower in host.dead
    sim.run(5 * T, lambda: sim.leader(g) == leader and g not in host.awake)
    assert g not in host.awake  # quiesced without the dead follower
    sim.heal()
    top = sim.results[("p", 4)][2]
    sim.run(10 * T, lambda: sim.applied[(follower, g)] >= top and sim.all_quiesced())
    assert sim.applied[(follower, g)] >= top
    assert sim.all_quiesced()


def test_an_isolated_leader_node_loses_its_groups_and_nothing_diverges() -> None:
    sim = make(5, 20, 3)
    led = [g for g in sim.placement if sim.leader(g) == 1]
    assert led
    sim.partition({1})
    sim.run(3 * T, lambda: all(sim.leader(g) not in (None, 1) for g in led))
    assert all(sim.leader(g) not in (None, 1) for g in led)
    for g in led:
        sim.propose(sim.leader(g), g, b"majority side", ("m", g))  # type: ignore[arg-type]
    sim.run(5 * T, lambda: all(("m", g) in sim.results for g in led))
    sim.heal()
    sim.run(20 * T, lambda: all(len(last_applied(sim, g)) == 1 for g in sim.placement) and sim.all_quiesced())
    for g in led:
        assert sim.applied[(1, g)] >= sim.results[("m", g)][2]


def test_a_lease_read_right_after_waking_takes_the_read_index_round() -> None:
    sim = make(3, 3, lease_reads=True)
    g = 1
    leader = sim.leader(g)
    assert leader is not None
    sim.read(leader, g, "r1", lease=True)
    assert "r1" not in sim.results  # woken this tick: no lease, a heartbeat round first
    sim.run(5, lambda: "r1" in sim.results)
    assert sim.results["r1"][0] == "read"
    sim.propose(leader, g, b"keep awake", "k")
    for i in range(T + 2):  # keep the group awake past an election timeout
        sim.read(leader, g, ("warm", i))
        sim.step_round()
    sim.read(leader, g, "r2", lease=True)
    assert sim.results["r2"][0] == "read"  # awake long enough: served from the lease at once


def test_a_follower_that_differs_answers_a_quiesce_with_a_wake() -> None:
    host = GroupHost(2, heartbeat_ticks=HB, election_timeout_ticks=T)
    host.add_group(5, RaftNode(2, voters=(1, 2, 3), rng=random.Random(1), election_timeout_ticks=T,
                               heartbeat_ticks=HB))
    host.ready()
    host.step(Batch(src=1, dst=2, quiesce=(Quiesce(group=5, term=3, last_index=9, commit=9),)))
    out = host.ready()
    assert [(b.dst, b.wake) for b in out.batches] == [(1, (5,))]
    assert not host.is_quiesced(5)
    assert host.groups[5].role is Role.FOLLOWER


@pytest.mark.parametrize("seed", range(20))
def test_random_faults_keep_every_group_safe_and_it_converges(seed: int) -> None:
    rng = random.Random(seed)
    sim = ShardedSim(5, 12, 3, seed, election_timeout_ticks=T, heartbeat_ticks=HB, delay_ticks=(1, 3))
    written = 0
    for _ in range(40):
        action = rng.random()
        if action < 0.15:
            up = [n for n in range(1, 6) if sim.is_up(n)]
            if len(up) > 3:
                sim.crash(rng.choice(up))
        elif action < 0.3:
            down = [n for n in range(1, 6) if not sim.is_up(n)]
            if down:
                sim.restart(rng.choice(down))
        elif action < 0.4:
            sim.partition(set(rng.sample(range(1, 6), rng.randint(1, 2))))
        elif action < 0.5:
            sim.heal()
        else:
            g = rng.randrange(12)
            who = sim.leader(g)
            if who is not None:
                written += 1
                sim.propose(who, g, f"w{written}".encode(), ("w", written))
        sim.run(rng.randint(1, 2 * T))
    sim.heal()
    for n in range(1, 6):
        if not sim.is_up(n):
            sim.restart(n)
    sim.run(60 * T, lambda: sim.all_led() and sim.all_quiesced()
            and all(len(last_applied(sim, g)) == 1 for g in sim.placement))
    assert sim.all_led() and sim.all_quiesced()
    assert all(len(last_applied(sim, g)) == 1 for g in sim.placement)
    for (kind, i), result in list(sim.results.items()):  # type: ignore[misc]
        if kind == "w" and result[0] == "applied":
            g, index = result[1], result[2]
            assert sim.canonical[g][index][1] == f"w{i}".encode()  # an acknowledged write is in the log


def test_scale_report_at_small_scale() -> None:
    r = scale_report(nodes=6, groups=120, seed=2, election_timeout_ticks=T, heartbeat_ticks=HB, idle_s=2)
    assert r.idle_raft_msgs_per_node_s == 0
    assert r.reelect_rounds <= 2 * T
    assert r.groups_led_by_victim == 20
    assert "re-elected" in "\n".join(r.lines())


def test_which_messages_create_a_replica_on_demand() -> None:
    """core/multiraft/host.py ``creates_replica``: a leader's AppendEntries, InstallSnapshot or
    Heartbeat at or past the tombstone (the index of this node's removal); nothing else."""
    from replikv.core.multiraft.host import creates_replica
    from replikv.core.raft.messages import (AppendEntries, Config, Heartbeat, InstallSnapshot, RequestVote,
                                            HeartbeatResponse)

    ae = AppendEntries(term=2, src=1, dst=4, prev_log_index=10, prev_log_term=2)
    snap = InstallSnapshot(term=2, src=1, dst=4, last_included_index=10, last_included_term=2,
                           config=Config(voters=frozenset({1, 2, 3})), offset=0, data=b"", done=False)
    beat = Heartbeat(term=2, src=1, dst=4, commit=0)  # a new learner's: commit capped at its match 0
    for msg in (ae, snap):
        assert creates_replica(msg, 0) and creates_replica(msg, 10) and not creates_replica(msg, 11)
    assert creates_replica(beat, 0) and not creates_replica(beat, 1)
    assert not creates_replica(RequestVote(term=3, src=2, dst=4, last_log_index=10, last_log_term=2), 0)
    assert not creates_replica(HeartbeatResponse(term=2, src=1, dst=4), 0)
