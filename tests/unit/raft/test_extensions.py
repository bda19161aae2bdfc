"""Beyond Figure 2: PreVote, CheckQuorum, stickiness, pipelining, snapshots,
membership, leadership transfer, ReadIndex / lease reads, role legality."""

from __future__ import annotations

from typing import Any

import pytest
from raft_helpers import ae, elapse, elect, make, msgs, persists, resp, rv, timeout

from replikv.core.invariant import InvariantViolation
from replikv.core.raft.effects import Apply, ReadReady, Reply, RestoreSnapshot
from replikv.core.raft.errors import (
    ConfigChangeInProgress,
    InvalidConfigChange,
    LearnerNotCaughtUp,
    NotLeader,
    ProposalDropped,
)
from replikv.core.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from replikv.core.raft.node import Role
from replikv.core.raft.progress import ProgressState


def _leader(**kw: object) -> object:
    n = make(term=1, **kw)  # type: ignore[arg-type]
    elect(n)
    for v in sorted(n.log.config().voters - {1}):
        n.step(AppendEntriesResponse(term=n.term, src=v, dst=1, success=True, match_index=1))
    return n


# ----------------------------------------------------------------- PreVote


def test_prevote_timeout_does_not_increment_term() -> None:
    n = make(term=1, pre_vote=True)
    effs = timeout(n)
    assert n.role is Role.PRE_CANDIDATE and n.term == 1
    assert all(m.pre_vote and m.term == 2 for m in msgs(effs, RequestVote))


def test_prevote_receiver_does_not_change_term_or_vote() -> None:
    n = make(term=1, pre_vote=True)
    r = resp(n.step(rv(2, (0, 0), pre_vote=True)), RequestVoteResponse)
    assert r.granted and r.pre_vote and n.term == 1 and n.vote is None


def test_prevote_majority_then_real_election() -> None:
    n = make(term=1, pre_vote=True)
    timeout(n)
    effs = n.step(RequestVoteResponse(term=2, src=2, dst=1, granted=True, pre_vote=True))
    assert n.role is Role.CANDIDATE and n.term == 2
    assert all(not m.pre_vote for m in msgs(effs, RequestVote))


def test_prevote_partitioned_node_keeps_its_term_forever() -> None:
    n = make(term=1, pre_vote=True)
    for _ in range(5):
        timeout(n)
    assert n.term == 1


# ---------------------------------------------------- CheckQuorum, stickiness


def test_check_quorum_leader_without_active_majority_steps_down() -> None:
    n = make(term=1, check_quorum=True)
    elect(n)
    elapse(n, n.election_timeout_ticks)  # clears the activity marks
    assert n.role is Role.LEADER
    elapse(n, n.election_timeout_ticks)
    assert n.role is Role.FOLLOWER and n.term == 2


def test_check_quorum_leader_with_active_majority_stays() -> None:
    n = make(term=1, check_quorum=True)
    elect(n)
    for _ in range(4):
        elapse(n, n.election_timeout_ticks - 1)
        n.step(HeartbeatResponse(term=2, src=2, dst=1))
        elapse(n, 1)
    assert n.role is Role.LEADER


def test_stickiness_vote_request_ignored_while_leader_heard_recently() -> None:
    n = make(term=1, check_quorum=True)
    n.step(ae(1, (0, 0)))
    assert n.step(rv(5, (9, 9), src=3)) == []
    assert n.term == 1
    elapse(n, n.election_timeout_ticks)
    assert resp(n.step(rv(5, (9, 9), src=3)), RequestVoteResponse).granted


def test_forget_leader_ends_stickiness_at_once_without_campaigning() -> None:
    n = make(term=1, check_quorum=True)
    n.step(ae(1, (0, 0)))
    assert n.step(rv(5, (9, 9), src=3)) == []  # sticky: heard from leader 2 just now
    assert n.forget_leader() == []  # no campaign, no message
    assert n.role is Role.FOLLOWER and n.leader is None and n.term == 1
    assert resp(n.step(rv(5, (9, 9), src=3)), RequestVoteResponse).granted
    n2 = make(term=1, check_quorum=True)
    n2.step(ae(1, (0, 0)))
    n2.forget_leader()
    n2.step(ae(1, (0, 0)))  # the leader is heard again: taken back
    assert n2.leader == 2


def test_stale_leader_gets_higher_term_answer_and_steps_down() -> None:
    n = make(term=5, check_quorum=True, pre_vote=True)
    r = resp(n.step(ae(3, (0, 0))), AppendEntriesResponse)
    assert r.term == 5 and not r.success


# ----------------------------------------------------- replication pipeline


def test_replicate_state_pipelines_up_to_the_inflight_limit() -> None:
    n = make(term=1, max_inflight_msgs=2)
    elect(n)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=1))
    sent = []
    for i in range(4):
        sent += [m for m in msgs(n.propose(b"x%d" % i, i), AppendEntries) if m.dst == 2]
    assert len(sent) == 2  # window full
    effs = n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=3))
    more = [m for m in msgs(effs, AppendEntries) if m.dst == 2 and m.entries]
    assert more and more[0].entries[0].index == 4


def test_probe_state_sends_one_message_until_answered() -> None:
    n = make(term=1)
    elect(n)  # node 3 is probing, its no-op append unanswered
    effs = n.propose(b"x", 1)
    assert not [m for m in msgs(effs, AppendEntries) if m.dst == 3]


def test_messages_are_cut_at_max_msg_bytes() -> None:
    n = make(term=1, max_msg_bytes=100)
    elect(n)
    n.propose_batch([(b"y" * 60, i, None, None) for i in range(3)])
    effs = n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=1))
    assert all(len(m.entries) <= 1 for m in msgs(effs, AppendEntries))


# ------------------------------------------------------------------ snapshots


def test_follower_behind_first_index_gets_chunked_snapshot() -> None:
    n = make(term=1, snapshot_chunk_bytes=4)
    elect(n)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=1))
    n.propose(b"a", 1)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=2))
    (p,) = persists(n.compact(2, b"0123456789"))
    assert p.snapshot is not None and p.snapshot.index == 2 and n.log.first_index == 3
    # node 3 rejects the probe (prev 0) that carried the no-op: it needs entry 1, compacted
    effs = n.step(
        AppendEntriesResponse(
            term=2, src=3, dst=1, success=False, reject_index=0, conflict_term=0, conflict_index=1
        )
    )
    chunk = resp(effs, InstallSnapshot)
    assert (chunk.offset, chunk.data, chunk.done) == (0, b"0123", False)
    effs = n.step(
        InstallSnapshotResponse(term=2, src=3, dst=1, last_included_index=2, next_offset=4)
    )
    assert resp(effs, InstallSnapshot).offset == 4


def test_a_snapshot_held_as_a_view_is_sent_the_same_and_can_be_swapped_for_the_stored_copy() -> None:
    """compact() takes the driver's view of its snapshot file (a memoryview, not bytes);
    snapshot_stored() swaps the log's copy for such a view only for the same snapshot."""
    n = make(term=1, snapshot_chunk_bytes=4)
    elect(n)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=1))
    n.propose(b"a", 1)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=2))
    persists(n.compact(2, memoryview(b"0123456789")))
    effs = n.step(
        AppendEntriesResponse(
            term=2, src=3, dst=1, success=False, reject_index=0, conflict_term=0, conflict_index=1
        )
    )
    chunk = resp(effs, InstallSnapshot)
    assert (chunk.offset, bytes(chunk.data), chunk.done) == (0, b"0123", False)
    n.snapshot_stored(1, memoryview(b"other index"))  # not the snapshot it holds: ignored
    n.snapshot_stored(2, memoryview(b"short"))  # not the same length: ignored
    assert bytes(n.log.snapshot.data) == b"0123456789"
    stored = memoryview(b"0123456789")
    n.snapshot_stored(2, stored)
    assert n.log.snapshot.data is stored and n.log.snapshot.index == 2


def test_one_copy_of_a_snapshot_transfer_runs_whatever_is_retransmitted() -> None:
    """A chunk is retransmitted on a heartbeat answer only when none was acknowledged since
    the previous one; the answer to the duplicate sends nothing. Before, every heartbeat
    answer resent the chunk in flight and each copy's answer sent the next chunk: under
    load (chunks slower than heartbeats) the transfer ran in ever more copies at once and
    a 640 MB install never finished."""
    n = make(term=1, snapshot_chunk_bytes=4)
    elect(n)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=1))
    n.propose(b"a", 1)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=2))
    persists(n.compact(2, b"0123456789"))
    effs = n.step(AppendEntriesResponse(term=2, src=3, dst=1, success=False, reject_index=0,
                                        conflict_term=0, conflict_index=1))
    assert resp(effs, InstallSnapshot).offset == 0

    def chunks(effs: list[Any]) -> list[int]:
        return [m.offset for m in msgs(effs, InstallSnapshot) if m.dst == 3]

    assert chunks(n.step(HeartbeatResponse(term=2, src=3, dst=1))) == []  # chunk 0 may be on its way
    assert chunks(n.step(HeartbeatResponse(term=2, src=3, dst=1))) == [0]  # no ack since: lost
    ack = InstallSnapshotResponse(term=2, src=3, dst=1, last_included_index=2, next_offset=4)
    assert chunks(n.step(ack)) == [4]
    assert chunks(n.step(ack)) == []  # the duplicate's answer: chunk 4 is in flight already
    assert chunks(n.step(HeartbeatResponse(term=2, src=3, dst=1))) == []  # progress since the last one
    back = InstallSnapshotResponse(term=2, src=3, dst=1, last_included_index=2, next_offset=0)
    assert chunks(n.step(back)) == [0]  # the follower lacks it all (it restarted): from 0 again


def test_catch_up_floor_is_the_lowest_index_a_caught_up_follower_still_needs() -> None:
    """The driver postpones compaction past catch_up_floor(): a follower heard from in this
    CheckQuorum round or the one before counts its match, one installing a snapshot that
    snapshot's index, one silent for a whole round nothing."""
    n = make(term=1, snapshot_chunk_bytes=4, check_quorum=True)
    assert n.catch_up_floor() is None  # a follower catches nobody up
    elect(n)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=1))
    for i in range(3):
        n.propose(b"x%d" % i, i)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=4))
    n.step(HeartbeatResponse(term=2, src=3, dst=1))
    assert n.catch_up_floor() == 0  # node 3 answered but matched nothing yet
    elapse(n, n.election_timeout_ticks)  # a CheckQuorum round: both marked silent
    assert n.catch_up_floor() == 0  # but heard from in the round before: still waited for
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=4))
    elapse(n, n.election_timeout_ticks)  # node 3 silent for this whole round
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=4))
    assert n.catch_up_floor() == 4  # node 3 silent since: not waited for
    persists(n.compact(4, b"0123456789"))
    # node 3 rejects the probe: it needs entry 1, compacted; it gets the snapshot at 4
    n.step(AppendEntriesResponse(term=2, src=3, dst=1, success=False, reject_index=0, conflict_term=0,
                                 conflict_index=1))
    n.propose(b"y", 9)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=5))
    assert n.catch_up_floor() == 4  # node 3 continues from the snapshot's index once installed
    # compacting to 5 waits for it while the log after the snapshot is within the bound;
    # not past it, and never to an index it has anyway
    assert n.compaction_waits(5, log_bytes=100, max_log_bytes=100)
    assert not n.compaction_waits(5, log_bytes=101, max_log_bytes=100)
    assert not n.compaction_waits(4, log_bytes=100, max_log_bytes=100)
    n.step(InstallSnapshotResponse(term=2, src=3, dst=1, last_included_index=4, done=True, match_index=4))
    assert n.catch_up_floor() == 4  # in PROBE from 5 now: entry 5 must still be there for it
    n.step(AppendEntriesResponse(term=2, src=3, dst=1, success=True, match_index=5))
    assert n.catch_up_floor() == 5
    assert not n.compaction_waits(5, log_bytes=100, max_log_bytes=100)


def test_a_follower_silent_for_a_round_while_in_snapshot_holds_no_compaction() -> None:
    """A follower that went down after the leader moved it to SNAPSHOT never answers the
    transfer: once silent for a whole CheckQuorum round it no longer sets the catch-up
    floor, so later compactions do not wait for it up to the byte bound (CI flake of
    test_raft_a_snapshot_received_on_a_full_disk_waits_for_space_then_installs)."""
    n = make(term=1, snapshot_chunk_bytes=4, check_quorum=True)
    elect(n)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=1))
    for i in range(3):
        n.propose(b"x%d" % i, i)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=4))
    persists(n.compact(4, b"0123456789"))
    # node 3 (down from now on) rejects the probe: it needs entry 1, compacted; it gets the snapshot at 4
    n.step(AppendEntriesResponse(term=2, src=3, dst=1, success=False, reject_index=0, conflict_term=0,
                                 conflict_index=1))
    assert n.progress[3].state is ProgressState.SNAPSHOT
    n.propose(b"y", 9)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=5))
    assert n.compaction_waits(5, log_bytes=100, max_log_bytes=100)  # it answered lately: waited for
    for _ in range(2):  # node 2 answers in every round, node 3 in none
        elapse(n, n.election_timeout_ticks)
        n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=5))
    assert n.progress[3].state is ProgressState.SNAPSHOT
    assert n.catch_up_floor() == 5
    assert not n.compaction_waits(5, log_bytes=100, max_log_bytes=100)


def test_lagging_follower_holds_writers_while_it_makes_progress_behind_the_bound() -> None:
    """Back-pressure: a follower lacking more than max_lag_bytes that moved within stall_ticks
    holds writers; one caught up within the bound, or silent for stall_ticks, does not."""
    n = make(term=1, snapshot_chunk_bytes=4)
    assert n.lagging_follower(100, 10) is None  # only a leader holds writers
    elect(n)
    for v in (2, 3):
        n.step(AppendEntriesResponse(term=2, src=v, dst=1, success=True, match_index=1))
    for i in range(5):
        n.propose(b"v" * 36, i)  # 36 + 24 bytes of header estimate: 60 bytes per entry
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=6))
    n.step(AppendEntriesResponse(term=2, src=3, dst=1, success=True, match_index=2))
    assert n.log.bytes_after(2) == 4 * 60
    assert n.lagging_follower(0, 10) is None  # 0: no back-pressure
    assert n.lagging_follower(240, 10) is None  # node 3 lacks exactly the bound
    assert n.lagging_follower(239, 10) == 3
    elapse(n, 10)
    assert n.lagging_follower(239, 10) == 3  # its last progress was 10 ticks ago: still counts
    elapse(n, 1)
    assert n.lagging_follower(239, 10) is None  # stalled for longer: it holds nothing back
    n.step(AppendEntriesResponse(term=2, src=3, dst=1, success=True, match_index=3))
    assert n.lagging_follower(179, 10) == 3  # moving again, and lacking 180 bytes
    n.step(AppendEntriesResponse(term=2, src=3, dst=1, success=True, match_index=6))
    assert n.lagging_follower(1, 10) is None  # caught up
    # installing a snapshot: what it lacks is what was written after that snapshot
    n = make(term=1, snapshot_chunk_bytes=4)
    elect(n)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=1))
    for i in range(5):
        n.propose(b"v" * 36, i)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=6))
    persists(n.compact(6, b"0123456789"))
    n.propose(b"w" * 36, 9)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=7))
    n.step(AppendEntriesResponse(term=2, src=3, dst=1, success=False, reject_index=0, conflict_term=0,
                                 conflict_index=1))  # node 3 needs entry 1, compacted: the snapshot at 6
    assert n.progress[3].state.value == "snapshot"
    assert n.lagging_follower(59, 10) is None  # no progress of node 3 seen yet
    n.step(InstallSnapshotResponse(term=2, src=3, dst=1, last_included_index=6, next_offset=4))
    assert n.lagging_follower(59, 10) == 3  # a chunk taken: it moves, and lacks entry 7 (60 bytes)
    assert n.lagging_follower(60, 10) is None


def test_follower_installs_snapshot_and_discards_conflicting_log() -> None:
    n = make(terms=(1, 1, 1), term=1, commit=1)
    cfg = n.log.config()
    out = []
    for off, data, done in ((0, b"ab", False), (2, b"cd", True)):
        out += n.step(
            InstallSnapshot(
                term=2,
                src=2,
                dst=1,
                last_included_index=5,
                last_included_term=2,
                config=cfg,
                offset=off,
                data=data,
                done=done,
            )
        )
    (restore,) = [e for e in out if isinstance(e, RestoreSnapshot)]
    assert restore.snapshot.data == b"abcd"
    assert n.log.first_index == 6 and n.log.commit == 5 and n.log.entries == []
    assert any(p.discard_log for p in persists(out))


def test_out_of_order_snapshot_chunk_asks_for_expected_offset() -> None:
    n = make(term=1)
    cfg = n.log.config()
    n.step(
        InstallSnapshot(
            term=1,
            src=2,
            dst=1,
            last_included_index=5,
            last_included_term=1,
            config=cfg,
            offset=0,
            data=b"ab",
            done=False,
        )
    )
    effs = n.step(
        InstallSnapshot(
            term=1,
            src=2,
            dst=1,
            last_included_index=5,
            last_included_term=1,
            config=cfg,
            offset=4,
            data=b"ef",
            done=True,
        )
    )
    assert resp(effs, InstallSnapshotResponse).next_offset == 2


class RecordingSink:
    """A snapshot sink that records what the core asks of it; ``fail_at``: the write that
    fails (its disk is full), ``fail_finish``: finishing fails."""

    def __init__(self, log: list[tuple[Any, ...]], fail_at: int = -1, fail_finish: bool = False) -> None:
        self.log, self.fail_at, self.fail_finish, self.data = log, fail_at, fail_finish, b""

    def write(self, data: bytes | memoryview) -> bool:
        self.log.append(("write", bytes(data)))
        if len(self.log) - 1 == self.fail_at:
            return False
        self.data += bytes(data)
        return True

    def finish(self) -> bytes | None:
        self.log.append(("finish",))
        return None if self.fail_finish else self.data

    def abort(self) -> None:
        self.log.append(("abort",))


def _chunk(cfg: Any, offset: int, data: bytes, done: bool, index: int = 5) -> InstallSnapshot:
    return InstallSnapshot(term=1, src=2, dst=1, last_included_index=index, last_included_term=1, config=cfg,
                           offset=offset, data=data, done=done)


def test_snapshot_chunks_go_to_the_drivers_sink_and_a_new_transfer_aborts_the_old_one() -> None:
    calls: list[tuple[Any, ...]] = []
    opened: list[tuple[int, int]] = []

    def sink(index: int, term: int, config: Any) -> RecordingSink:
        opened.append((index, term))
        return RecordingSink(calls)

    n = make(term=1, snapshot_sink=sink)
    cfg = n.log.config()
    n.step(_chunk(cfg, 0, b"ab", False))
    n.step(_chunk(cfg, 0, b"ab", False, index=6))  # the leader starts a newer snapshot over
    assert opened == [(5, 1), (6, 1)] and calls == [("write", b"ab"), ("abort",), ("write", b"ab")]
    effs = n.step(_chunk(cfg, 2, b"cd", True, index=6))
    (restore,) = [e for e in effs if isinstance(e, RestoreSnapshot)]
    assert bytes(restore.snapshot.data) == b"abcd" and calls[-1] == ("finish",)
    assert resp(effs, InstallSnapshotResponse).done


@pytest.mark.parametrize("fail_at, fail_finish", [(1, False), (-1, True)])
def test_a_sink_that_cannot_keep_the_snapshot_drops_the_transfer_and_asks_for_it_again(
        fail_at: int, fail_finish: bool) -> None:
    calls: list[tuple[Any, ...]] = []
    n = make(term=1, snapshot_sink=lambda i, t, c: RecordingSink(calls, fail_at, fail_finish))
    cfg = n.log.config()
    n.step(_chunk(cfg, 0, b"ab", False))
    effs = n.step(_chunk(cfg, 2, b"cd", True))
    assert not [e for e in effs if isinstance(e, RestoreSnapshot)] and n.log.commit == 0
    answer = resp(effs, InstallSnapshotResponse)
    assert (answer.next_offset, answer.done) == (0, False)  # from the start, once it can
    effs = n.step(_chunk(cfg, 2, b"cd", True))  # a chunk of the dropped transfer: not taken
    assert resp(effs, InstallSnapshotResponse).next_offset == 0


# ----------------------------------------------------------------- membership


def test_config_change_takes_effect_when_appended() -> None:
    n = _leader()
    n.add_learner(4, "r")
    assert 4 in n.log.config().learners and 4 in n.progress
    assert n.log.commit < n.log.last_index


def test_one_config_change_at_a_time() -> None:
    n = _leader()
    n.add_learner(4, "a")
    (r,) = [e for e in n.add_learner(5, "b") if isinstance(e, Reply)]
    assert isinstance(r.result, ConfigChangeInProgress)


def test_promote_requires_caught_up_learner() -> None:
    n = _leader()
    n.add_learner(4, "a")
    for v in (2, 3):
        n.step(AppendEntriesResponse(term=2, src=v, dst=1, success=True, match_index=2))
    (r,) = [e for e in n.promote(4, "p") if isinstance(e, Reply)]
    assert r.result == LearnerNotCaughtUp(4)
    n.step(AppendEntriesResponse(term=2, src=4, dst=1, success=True, match_index=2))
    n.promote(4, "p")
    assert 4 in n.log.config().voters


def test_cannot_remove_last_voter() -> None:
    n = make(voters=(1,), term=1)
    n.campaign()
    assert n.role is Role.LEADER
    (r,) = [e for e in n.remove(1, "x") if isinstance(e, Reply)]
    assert isinstance(r.result, InvalidConfigChange)


def test_follower_config_reverts_when_config_entry_truncated() -> None:
    n = make(terms=(1,), term=1)
    from replikv.core.raft.messages import Config, Entry, EntryKind

    cfg = Config(voters=frozenset({1, 2, 3}), learners=frozenset({4}))
    n.step(
        AppendEntries(
            term=1,
            src=2,
            dst=1,
            prev_log_index=1,
            prev_log_term=1,
            entries=(Entry(term=1, index=2, kind=EntryKind.CONFIG, config=cfg),),
        )
    )
    assert n.log.config() == cfg
    n.step(ae(2, (1, 1), ((2, 2),), src=3))
    assert n.log.config().learners == frozenset()


def test_learner_never_campaigns() -> None:
    n = make(nid=4, voters=(1, 2, 3))
    elapse(n, 100)
    assert n.role is Role.FOLLOWER and n.term == 0


# --------------------------------------------------------- leadership transfer


def test_transfer_sends_timeout_now_when_target_caught_up() -> None:
    n = _leader()
    effs = n.transfer_leadership(2)
    assert resp(effs, TimeoutNow).dst == 2
    (r,) = [e for e in n.propose(b"x", "p") if isinstance(e, Reply)]
    assert isinstance(r.result, ProposalDropped)


def test_transfer_aborted_after_election_timeout() -> None:
    n = _leader()
    n.transfer_leadership(2)
    elapse(n, n.election_timeout_ticks)
    assert n.lead_transferee is None


def test_timeout_now_starts_election_that_bypasses_stickiness() -> None:
    n = make(nid=2, term=1, check_quorum=True, pre_vote=True)
    effs = n.step(TimeoutNow(term=1, src=1, dst=2))
    assert n.role is Role.CANDIDATE and n.term == 2
    assert all(m.transfer for m in msgs(effs, RequestVote))
    voter = make(nid=3, term=1, check_quorum=True)
    voter.step(ae(1, (0, 0), src=1, dst=3))
    assert resp(voter.step(rv(2, (0, 0), src=2, dst=3, transfer=True)), RequestVoteResponse).granted


def test_transfer_by_non_leader_raises_not_leader() -> None:
    with pytest.raises(NotLeader):
        make().transfer_leadership(2)


# ------------------------------------------------------------------ reads


def test_read_index_waits_for_quorum_heartbeat_round() -> None:
    n = _leader()
    effs = n.read_index("r")
    ctx = msgs(effs, Heartbeat)[0].ctx
    assert not any(isinstance(e, ReadReady) for e in effs)
    effs = n.step(HeartbeatResponse(term=2, src=3, dst=1, ctx=ctx))
    assert next(e for e in effs if isinstance(e, ReadReady)).index == n.log.commit


def test_read_index_waits_for_commit_of_leader_term() -> None:
    n = make(term=1)
    elect(n)
    assert not [e for e in n.read_index("r") if isinstance(e, ReadReady)]
    effs = n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=1))
    ctx = msgs(effs, Heartbeat)[0].ctx
    (ready,) = [
        e
        for e in n.step(HeartbeatResponse(term=2, src=2, dst=1, ctx=ctx))
        if isinstance(e, ReadReady)
    ]
    assert ready.index == 1


def test_follower_read_index_asks_leader() -> None:
    n = make(nid=2, term=1)
    n.step(ae(1, (0, 0), src=1, dst=2))
    assert resp(n.read_index("r"), ReadIndexRequest).dst == 1
    (ready,) = n.step(ReadIndexResponse(term=1, src=1, dst=2, request_id="r", index=7))
    assert ready == ReadReady(request_id="r", index=7)


def test_read_index_request_of_an_earlier_term_is_still_answered() -> None:
    # a follower that has not heard of the leader's new term yet asks it: dropping the request as
    # stale (Fig2 rule 1 is for AppendEntries and votes) left its client waiting for a timeout
    n = _leader()  # term 2
    effs = n.step(ReadIndexRequest(term=1, src=3, dst=1, request_id="r"))
    ctx = msgs(effs, Heartbeat)[0].ctx
    effs = n.step(HeartbeatResponse(term=2, src=2, dst=1, ctx=ctx))
    answer = resp(effs, ReadIndexResponse)
    assert (answer.dst, answer.request_id, answer.ok, answer.index, answer.term) == (3, "r", True, n.log.commit, 2)
    follower = make(nid=2, term=3)
    refusal = resp(follower.step(ReadIndexRequest(term=1, src=3, dst=2, request_id="q")), ReadIndexResponse)
    assert (refusal.ok, refusal.term) == (False, 3)  # not the leader: refused at once, with its term


def test_read_index_response_of_an_earlier_term_still_reaches_the_read() -> None:
    n = make(nid=2, term=1)
    n.step(ae(1, (0, 0), src=1, dst=2))
    n.read_index("r")
    n.read_index("q")
    n.step(ae(2, (0, 0), src=3, dst=2))  # a new leader's term before the old one's answers arrive
    assert n.step(ReadIndexResponse(term=1, src=1, dst=2, request_id="r", index=7)) == [
        ReadReady(request_id="r", index=7)]  # confirmed by the leader of term 1: still a valid point
    assert n.step(ReadIndexResponse(term=1, src=1, dst=2, request_id="q", ok=False)) == [
        Reply(request_id="q", result=NotLeader(3))]


def test_read_without_known_leader_is_refused() -> None:
    (r,) = make().read_index("r")
    assert r == Reply(request_id="r", result=NotLeader(None))


def test_leader_stepping_down_fails_pending_reads() -> None:
    n = _leader()
    n.read_index("r")
    effs = n.step(ae(9, (0, 0), src=3))
    assert Reply(request_id="r", result=NotLeader(3)) in effs


def test_lease_read_served_without_round_then_expires() -> None:
    n = make(term=1, check_quorum=True, lease_reads=True)
    elapse(n, n.election_timeout_ticks)
    elect(n)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=1))
    ctx = msgs(elapse(n, n.heartbeat_ticks), Heartbeat)[0].ctx
    n.step(HeartbeatResponse(term=2, src=2, dst=1, ctx=ctx))
    assert any(isinstance(e, ReadReady) for e in n.read_index("a", lease=True))
    elapse(n, n.election_timeout_ticks - n.lease_drift_margin_ticks)
    effs = n.read_index("b", lease=True)
    # The lease expired: "b" needs a round. The heartbeat rounds of the ticks
    # went unanswered (one is in flight), so "b" rides the next one.
    assert not any(isinstance(e, ReadReady) for e in effs) and not msgs(effs, Heartbeat)
    ctx = msgs(elapse(n, n.heartbeat_ticks), Heartbeat)[0].ctx
    effs = n.step(HeartbeatResponse(term=2, src=2, dst=1, ctx=ctx))
    assert [e.request_id for e in effs if isinstance(e, ReadReady)] == ["b"]


# ReadIndex batching (read_index.py): one round confirms every read that
# arrived before it was sent; at most one round in flight for reads.


def _ready(effs: list[Any]) -> list[object]:
    return [e.request_id for e in effs if isinstance(e, ReadReady)]


def test_read_batch_rule_reads_of_one_call_share_one_round() -> None:
    n = _leader()
    effs = n.read_index_batch([("a", False), ("b", False), ("c", False)])
    hbs = msgs(effs, Heartbeat)
    assert len(hbs) == 2 and len({h.ctx for h in hbs}) == 1  # one round, to both followers
    assert _ready(n.step(HeartbeatResponse(term=2, src=2, dst=1, ctx=hbs[0].ctx))) == ["a", "b", "c"]


def test_read_batch_rule_no_round_while_one_is_in_flight() -> None:
    n = _leader()
    first = msgs(n.read_index("a"), Heartbeat)[0].ctx
    # Reads arriving while round `first` is unconfirmed send nothing ...
    assert not msgs(n.read_index("b"), Heartbeat)
    assert not msgs(n.read_index("c"), Heartbeat)
    # ... and a quorum answer to `first` serves "a" only (b and c arrived after
    # it was sent) and sends the next round at once, for b and c together.
    effs = n.step(HeartbeatResponse(term=2, src=2, dst=1, ctx=first))
    assert _ready(effs) == ["a"]
    nxt = msgs(effs, Heartbeat)
    assert len(nxt) == 2 and {h.ctx for h in nxt} == {first + 1}
    assert _ready(n.step(HeartbeatResponse(term=2, src=3, dst=1, ctx=first + 1))) == ["b", "c"]


def test_read_batch_rule_answer_to_a_round_before_the_read_does_not_serve_it() -> None:
    n = _leader()
    sent = msgs(elapse(n, n.heartbeat_ticks), Heartbeat)[0].ctx  # a tick round, in flight
    assert not msgs(n.read_index("r"), Heartbeat)
    effs = n.step(HeartbeatResponse(term=2, src=2, dst=1, ctx=sent))
    assert _ready(effs) == []  # that round left before "r" arrived
    assert {h.ctx for h in msgs(effs, Heartbeat)} == {sent + 1}
    assert _ready(n.step(HeartbeatResponse(term=2, src=3, dst=1, ctx=sent + 1))) == ["r"]


def test_read_batch_rule_lost_round_is_replaced_by_the_next_tick() -> None:
    n = _leader()
    lost = msgs(n.read_index("a"), Heartbeat)[0].ctx
    n.read_index("b")
    hbs = msgs(elapse(n, n.heartbeat_ticks), Heartbeat)  # the tick's round covers both
    assert {h.ctx for h in hbs} == {lost + 1}
    assert _ready(n.step(HeartbeatResponse(term=2, src=3, dst=1, ctx=lost + 1))) == ["a", "b"]


def test_read_batch_rule_minority_answers_do_not_confirm() -> None:
    n = make(voters=(1, 2, 3, 4, 5), term=1)
    elect(n)
    for v in (2, 3):
        n.step(AppendEntriesResponse(term=2, src=v, dst=1, success=True, match_index=1))
    ctx = msgs(n.read_index("r"), Heartbeat)[0].ctx
    assert _ready(n.step(HeartbeatResponse(term=2, src=2, dst=1, ctx=ctx))) == []
    assert not msgs(n.read_index("s"), Heartbeat)  # still in flight: 2 of 5
    effs = n.step(HeartbeatResponse(term=2, src=4, dst=1, ctx=ctx))
    assert _ready(effs) == ["r"] and {h.ctx for h in msgs(effs, Heartbeat)} == {ctx + 1}


def test_read_batch_rule_new_term_does_not_inherit_an_unconfirmed_round() -> None:
    n = _leader()
    msgs(elapse(n, n.heartbeat_ticks), Heartbeat)  # unanswered round of term 2
    n.step(ae(3, (0, 0), src=2))  # steps down
    elect(n)  # term 4
    n.step(AppendEntriesResponse(term=n.term, src=2, dst=1, success=True, match_index=n.log.last_index))
    hbs = msgs(n.read_index("r"), Heartbeat)  # no round of term 4 in flight: sent now
    assert hbs
    assert _ready(n.step(HeartbeatResponse(term=n.term, src=3, dst=1, ctx=hbs[0].ctx))) == ["r"]


# ---------------------------------------------------------- core discipline


def test_illegal_role_change_is_an_invariant_violation() -> None:
    n = make()
    with pytest.raises(InvariantViolation):
        n._become_leader()


def test_two_leaders_in_one_term_is_an_invariant_violation() -> None:
    n = make(term=1)
    elect(n)
    with pytest.raises(InvariantViolation):
        n.step(ae(2, (0, 0), src=3))


def test_truncating_committed_entry_is_an_invariant_violation() -> None:
    n = make(terms=(1, 1), term=1, commit=2)
    with pytest.raises(InvariantViolation):
        n.log.truncate_from(2)


def test_proposal_on_follower_is_refused_with_leader_hint() -> None:
    n = make(term=1)
    n.step(ae(1, (0, 0), src=3))
    assert n.propose(b"x", "p") == [Reply(request_id="p", result=NotLeader(3))]


def test_overwritten_proposal_is_reported_dropped() -> None:
    n = make(term=1)
    elect(n)
    n.propose(b"mine", "p")
    effs = n.step(ae(3, (1, 2), ((2, 3),), commit=2, src=2))
    assert Reply(request_id="p", result=ProposalDropped("entry replaced by another leader")) in effs
    assert any(isinstance(e, Apply) for e in effs)


def test_read_round_send_ticks_are_pruned_in_order_and_found() -> None:
    from replikv.core.raft.read_index import ReadTracker

    t = ReadTracker(16)
    for tick in range(30):
        t.new_round(tick, 10)  # round tick + 1 sent at `tick`
    assert t.sent_tick(30) == 29 and t.sent_tick(20) == 19
    assert t.sent_tick(19) is None and t.sent_tick(31) is None  # older than a timeout / unsent
    assert len(t.round_ticks) == 11
    t.reset()
    assert t.sent_tick(30) is None
    t.new_round(40, 10)
    assert t.sent_tick(31) == 40


# ------------------------------------------------------- advance() batching


def _caught_up_leader() -> Any:
    n = _leader()
    n.propose(b"x", "x")
    last = n.log.last_index
    for v in (2, 3):
        n.step(AppendEntriesResponse(term=n.term, src=v, dst=1, success=True, match_index=last))
    return n


def test_advance_acks_and_proposals_send_one_append_per_follower_with_the_new_commit() -> None:
    n = _caught_up_leader()
    effs = n.propose_batch([(b"a", "a", None, None)])  # index last+1, in flight
    idx = n.log.last_index
    acks = [AppendEntriesResponse(term=n.term, src=v, dst=1, success=True, match_index=idx) for v in (2, 3)]
    effs = n.advance(acks, [(b"b", "b", None, None)], [])
    appends = msgs(effs, AppendEntries)
    assert sorted(m.dst for m in appends) == [2, 3]  # no separate commit notice
    assert all(m.leader_commit == idx and [e.data for e in m.entries] == [b"b"] for m in appends)


def test_advance_commit_without_proposals_sends_one_notice_per_follower() -> None:
    n = _caught_up_leader()
    n.propose(b"a", "a")
    idx = n.log.last_index
    acks = [AppendEntriesResponse(term=n.term, src=v, dst=1, success=True, match_index=idx) for v in (2, 3)]
    effs = n.advance(acks)
    appends = msgs(effs, AppendEntries)
    assert sorted(m.dst for m in appends) == [2, 3]
    assert all(m.leader_commit == idx and not m.entries for m in appends)
    # a single step that advances commit still tells every follower (same as before batching)
    n.propose(b"c", "c")
    idx = n.log.last_index
    effs = n.step(AppendEntriesResponse(term=n.term, src=2, dst=1, success=True, match_index=idx))
    assert n.log.commit == idx
    assert sorted((m.dst, m.leader_commit) for m in msgs(effs, AppendEntries)) == [(2, idx), (3, idx)]


def test_advance_follower_answers_several_appends_with_one_ack_of_the_highest_match() -> None:
    n = make(term=1)
    batch = [ae(1, (0, 0), ((1, 1),)), ae(1, (1, 1), ((2, 1),)), ae(1, (2, 1), ((3, 1), (4, 1)))]
    effs = n.advance(batch)
    acks = msgs(effs, AppendEntriesResponse)
    assert len(acks) == 1 and acks[0].success and acks[0].match_index == 4 and acks[0].dst == 2
    assert len(persists(effs)) == 1 and [e.index for e in persists(effs)[0].entries] == [1, 2, 3, 4]


def test_advance_follower_keeps_rejections_and_acks_per_term() -> None:
    n = make(term=1)
    batch = [ae(1, (0, 0), ((1, 1),)), ae(1, (5, 1)), ae(1, (1, 1), ((2, 1),))]
    acks = msgs(n.advance(batch), AppendEntriesResponse)
    assert [(a.success, a.match_index if a.success else a.reject_index) for a in acks] == [(False, 5), (True, 2)]


def test_a_follower_that_lost_acknowledged_entries_says_so_and_gets_them_again() -> None:
    """A follower whose log ends below the commit a heartbeat carries (capped at its match)
    lost entries it had acknowledged; the leader probes it again from what it has
    instead of taking every rejection for a stale one (it stayed empty for ever)."""
    n = make(term=1)
    elect(n)  # term 2, no-op at 1
    n.propose(b"a", 1)
    n.propose(b"b", 2)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=3))
    n.step(AppendEntriesResponse(term=2, src=3, dst=1, success=True, match_index=3))
    assert n.log.commit == 3 and n.progress[3].match == 3
    # the follower's side: a wiped node (empty log) hears the leader's heartbeat
    f = make(nid=3)
    (answer,) = msgs(f.step(Heartbeat(term=2, src=1, dst=3, commit=3, ctx=0)), HeartbeatResponse)
    assert (answer.lost, answer.last_index) == (True, 0) and f.log.commit == 0
    (fine,) = msgs(make(nid=3, terms=(2, 2, 2)).step(Heartbeat(term=2, src=1, dst=3, commit=3)), HeartbeatResponse)
    assert not fine.lost
    # the leader's side: a stale rejection is still ignored ...
    assert not msgs(n.step(AppendEntriesResponse(term=2, src=3, dst=1, success=False, reject_index=0,
                                                 conflict_index=1)), AppendEntries)
    assert n.progress[3].match == 3
    # ... but the lost answer makes it send the whole log again, from index 1
    effs = n.step(answer)
    (ae_,) = msgs(effs, AppendEntries)
    assert (ae_.dst, ae_.prev_log_index, [e.index for e in ae_.entries]) == (3, 0, [1, 2, 3])
    assert n.progress[3].match == 0 and n.follower_logs_lost == 1 and n.log.commit == 3
    n.step(AppendEntriesResponse(term=2, src=3, dst=1, success=True, match_index=3))
    assert n.progress[3].match == 3


def test_log_over_bounds_the_entries_a_leader_keeps_in_memory_after_its_snapshot() -> None:
    """--max-log-bytes (RaftNode.log_over): a leader whose entries after its snapshot exceed the
    bound holds writers; a compaction brings it back under; only a leader, and 0 is no bound."""
    n = make(term=1)
    assert not n.log_over(1)  # only a leader holds writers
    elect(n)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=1))
    for i in range(5):
        n.propose(b"v" * 36, i)  # 60 bytes per entry (Entry.size_bytes)
    n.step(AppendEntriesResponse(term=2, src=2, dst=1, success=True, match_index=6))  # all committed
    held = n.log.bytes_after(n.log.snapshot.index)
    assert held >= 5 * 60
    assert not n.log_over(0)  # 0: no bound
    assert not n.log_over(held)  # at the bound: not over it
    assert n.log_over(held - 1)
    persists(n.compact(4, b"0123456789"))
    assert n.log.bytes_after(n.log.snapshot.index) == 2 * 60  # entries 5 and 6 stay
    assert not n.log_over(held - 1) and n.log_over(2 * 60 - 1)
