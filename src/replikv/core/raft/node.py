"""The Raft consensus core: a pure state machine from inputs to effects.

Implements (section numbers: Raft paper "In Search of an Understandable
Consensus Algorithm" and Ongaro's thesis "Consensus: Bridging Theory and
Practice"):
- Figure 2 Rules for Servers (All Servers, Followers, Candidates, Leaders) and
  the RequestVote / AppendEntries receiver rules; each is named where it is
  implemented (`# Fig2 ...`).
- Randomized election timeouts in [T, 2T) (Raft §5.2).
- PreVote and CheckQuorum (thesis §9.6), with leader stickiness (thesis
  §4.2.3): a node that heard from a leader within an election timeout
  ignores vote requests, so a partitioned node cannot disrupt the cluster and
  a leader that lost its majority steps down.
- Replication with batching, pipelining and flow control (progress.py) and
  fast backtracking with a conflict hint (Raft §5.3).
- Commit only by counting replicas of an entry of the current term (Raft
  §5.4.2); a no-op entry at the start of each term (Raft §8).
- Snapshots: `compact()` from the application; chunked InstallSnapshot to
  followers behind the first log index (Raft §7, Figure 13).
- Membership changes one server at a time with learners (thesis §4.1-4.3):
  a configuration takes effect when appended; a removed leader steps down
  once the change commits (thesis §4.2.2).
- Leadership transfer with TimeoutNow (thesis §3.10).
- ReadIndex reads and lease reads (thesis §6.4, §6.4.1; read_index.py).
- Optionally (``lazy_follower_rounds``), a send policy for a group of three
  voters: one follower (the "eager" one) gets each round's AppendEntries at
  once, the other (the "lazy" one) every few rounds and at every tick
  (``_send_append``, ``_flush_lazy``, ``_lazy_tick``). Raft §5.3 leaves to the
  leader what it sends each follower and when; commit still counts matches.
- Back-pressure on writers for a follower caught up too far behind
  (`lagging_follower`, the leader-follower mode's rule 10) and compaction
  that waits for one (`catch_up_floor`, `compaction_waits`); and for a log
  held in memory past a bound (`log_over`, rule 11 there).
- With ``async_persist`` (thesis §10.2.1, "the leader can write to its disk in
  parallel with replicating to followers"; etcd's AsyncStorageWrites): the
  leader counts its own log towards a commit majority only up to what the
  driver reports durable (``advance(persisted=(index, term))``), so it may
  send AppendEntries before its own fsync. The driver still holds every other
  message until the writes before it are durable (effects.py).

Purity: no I/O, no clock, no global randomness. Time is `tick()`, randomness
is the injected `random.Random`, and every public call returns the ordered
list of effects (effects.py) the driver must carry out.

Invariants (checked after every call by `_check`):
  applied <= commit <= last_index; a leader's `leader` is itself;
  role changes only through the `_become_*` methods and `_LEGAL`.
"""

from __future__ import annotations

from typing import Protocol, cast

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import Enum

from replikv.core.invariant import invariant, violated
from replikv.core.raft.effects import (
    Effect,
    ReadReady,
    Reply,
    RestoreSnapshot,
    Send,
    new_apply,
    new_persist,
)
from replikv.core.raft.errors import (
    Compacted,
    ConfigChangeInProgress,
    InvalidConfigChange,
    LearnerNotCaughtUp,
    NotLeader,
    ProposalDropped,
    QuorumUnavailable,
)
from replikv.core.raft.log import RaftLog
from replikv.core.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Config,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    RaftMsg,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    TimeoutNow,
    new_append_entries,
    new_append_response,
    new_hard_state,
    normal_entry,
)
from replikv.core.raft.progress import Progress, ProgressState
from replikv.core.raft.read_index import PendingRead, ReadTracker

__all__ = ["DurableState", "MemorySink", "RaftNode", "Role", "SnapshotSink", "Status"]


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


F, P, C, L = Role.FOLLOWER, Role.PRE_CANDIDATE, Role.CANDIDATE, Role.LEADER
# The legal role transitions (from, to). A follower never becomes leader
# without an election; a leader never campaigns without stepping down.
_LEGAL: frozenset[tuple[Role, Role]] = frozenset(
    {(F, F), (F, P), (F, C), (P, F), (P, P), (P, C), (C, F), (C, P), (C, C), (C, L), (L, F)}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DurableState:
    """What a node finds on stable storage when it (re)starts."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()


class SnapshotSink(Protocol):
    """Where a follower puts the InstallSnapshot chunks it receives, in order (Figure 13
    rules 2-4): ``write`` each, then ``finish`` returns the whole snapshot's data (or
    ``abort`` drops it: a newer transfer began, or the snapshot is no longer needed). A
    driver's sink may stream them to a file and return the file mapped (no copy of a
    large snapshot on the heap); the core only calls these three methods. A sink that
    cannot keep the data (its disk failed) answers False / None and never raises: the
    core drops the transfer and asks for it from the start (the driver, told by its sink,
    freezes the node until its disk recovers)."""

    def write(self, data: bytes | memoryview) -> bool: ...

    def finish(self) -> bytes | memoryview | None: ...

    def abort(self) -> None: ...


class MemorySink:
    """The default sink: the chunks in one buffer on the heap (the simulator's, tests')."""

    __slots__ = ("buf",)

    def __init__(self, index: int = 0, term: int = 0, config: Config | None = None) -> None:
        self.buf = bytearray()

    def write(self, data: bytes | memoryview) -> bool:
        self.buf.extend(data)
        return True

    def finish(self) -> memoryview:
        return memoryview(self.buf).toreadonly()  # the received chunks, not a second copy

    def abort(self) -> None:
        self.buf = bytearray()


# (index, term, config) of the snapshot a transfer brings -> the sink for its chunks
SinkFactory = Callable[[int, int, Config], SnapshotSink]


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    id: int
    role: Role
    term: int
    vote: int | None
    leader: int | None
    commit: int
    applied: int
    first_index: int
    last_index: int
    config: Config
    progress: dict[int, str] = field(default_factory=dict)


class RaftNode:
    def __init__(
        self,
        id: int,
        *,
        voters: Iterable[int] = (),
        learners: Iterable[int] = (),
        storage: DurableState | None = None,
        rng: random.Random,
        election_timeout_ticks: int = 10,
        heartbeat_ticks: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        lease_reads: bool = False,
        lease_drift_margin_ticks: int = 2,
        max_msg_bytes: int = 64 * 1024,
        max_inflight_msgs: int = 64,
        max_inflight_bytes: int = 1 << 20,
        snapshot_chunk_bytes: int = 64 * 1024,
        max_pending_proposals: int = 4096,
        max_pending_reads: int = 4096,
        async_persist: bool = False,
        snapshot_sink: SinkFactory = MemorySink,
        lazy_follower_rounds: int = 0,
    ) -> None:
        invariant(
            heartbeat_ticks < election_timeout_ticks, "heartbeat must be below election timeout"
        )
        invariant(not lease_reads or check_quorum, "lease reads rely on CheckQuorum stickiness")
        invariant(0 <= lease_drift_margin_ticks < election_timeout_ticks, "drift margin < timeout")
        invariant(lazy_follower_rounds >= 0, "lazy_follower_rounds is a count of rounds")
        self.id = id
        self.rng = rng
        self.election_timeout_ticks = election_timeout_ticks
        self.heartbeat_ticks = heartbeat_ticks
        self.pre_vote = pre_vote
        self.check_quorum = check_quorum
        self.lease_reads = lease_reads
        self.lease_drift_margin_ticks = lease_drift_margin_ticks
        self.max_msg_bytes = max_msg_bytes
        self.max_inflight_msgs = max_inflight_msgs
        self.max_inflight_bytes = max_inflight_bytes
        self.snapshot_chunk_bytes = snapshot_chunk_bytes
        self.snapshot_sink = snapshot_sink
        self.max_pending_proposals = max_pending_proposals
        self.async_persist = async_persist

        st = storage or DurableState()
        snap = st.snapshot
        if snap is None or (snap.index == 0 and not snap.config.members):
            # Bootstrap: the configuration given is the one before any entry;
            # a stored configuration (snapshot or config entry) wins over it.
            snap = Snapshot(
                index=snap.index if snap else 0,
                term=snap.term if snap else 0,
                config=Config(voters=frozenset(voters), learners=frozenset(learners)),
                data=snap.data if snap else b"",
            )
        self.log = RaftLog(snap, st.entries)
        hs = st.hard_state
        self.term: int = hs.term
        self.vote: int | None = hs.vote
        self.log.commit = max(self.log.snapshot.index, min(hs.commit, self.log.last_index))
        self.role = Role.FOLLOWER
        self.leader: int | None = None  # the leader of `term` as far as we know
        self.now_ticks = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout_ticks = election_timeout_ticks
        self._reset_randomized_timeout()
        # A restarted node has forgotten which leader it heard from: with lease
        # reads on, it ignores votes for one election timeout (thesis §6.4.1).
        self._startup_guard_ticks = election_timeout_ticks if lease_reads else 0
        self.votes: dict[int, bool] = {}
        self.progress: dict[int, Progress] = {}  # leader only
        self.lead_transferee: int | None = None  # leader only (thesis §3.10)
        self.pending_conf_index = 0  # leader only: thesis §4.1, one change at a time
        # local proposals awaiting their entry: index -> (term, request id)
        self.pending_proposals: dict[int, tuple[int, object]] = {}
        self.reads = ReadTracker(max_pending_reads)
        # snapshot being received: (index, term, its sink, bytes received so far)
        self._incoming: tuple[int, int, SnapshotSink, int] | None = None
        self.follower_logs_lost = 0  # leader: followers found to have lost acknowledged entries
        # effects being assembled for the current call
        self._sends: list[Send] = []
        self._replies: list[Effect] = []
        self._unstable_from: int | None = None
        self._snap_out: Snapshot | None = None
        self._discard_log = False
        self._restore_out: Snapshot | None = None
        self._persisted_hs = hs
        self._commit_notice = False  # leader: commit advanced, followers not yet told
        # The lazy third replica (``_send_append``; 0: off, every follower gets every round).
        # Leader only, set by _sync_progress: the follower sent to at once, the one held, the
        # one that is eager while both keep up (spreads the role over nodes: the voter after
        # this one in id order), calls that held something for the lazy one since its last
        # batch, whether this call held something, and each follower's last index sent as of
        # the previous tick (``_lazy_tick``'s bound).
        self.lazy_follower_rounds = lazy_follower_rounds
        self.eager_follower: int | None = None
        self.lazy_follower: int | None = None
        self._preferred_eager: int | None = None
        self._lazy_rounds = 0
        self._lazy_held_now = False
        self._lazy_owed = False
        self._lazy_counted_to = 0
        self._lazy_open = False
        self._lazy_due: dict[int, int] = {}
        self.lazy_swaps = 0  # roles swapped because the eager follower fell behind (or back)
        self.lazy_rounds_held = 0  # rounds whose AppendEntries to the lazy follower were held

    # ------------------------------------------------------------------ API
    def step(self, msg: RaftMsg) -> list[Effect]:
        """A message arrived from a peer."""
        invariant(msg.dst == self.id, lambda: f"message for {msg.dst} stepped into {self.id}")
        self._step(msg)
        return self._flush()

    def advance(
        self,
        msgs: Iterable[RaftMsg] = (),
        proposals: Iterable[tuple[bytes, object, int | None, int | None]] = (),
        reads: Iterable[tuple[object, bool]] = (),
        persisted: tuple[int, int] | None = None,
    ) -> list[Effect]:
        """Everything a driver gathered in one event-loop iteration, in one
        call: the messages (in arrival order), then the proposals, then the
        reads; one Persist, and at most one commit notice per follower and one
        successful AppendEntries response per leader (see ``_flush``).
        ``persisted`` = (index, term) of the last entry an fsync made durable
        (``async_persist`` only)."""
        if persisted is not None:
            self._on_persisted(*persisted)
        for msg in msgs:
            if msg.dst != self.id:
                violated(f"message for {msg.dst} stepped into {self.id}")
            self._step(msg)
        proposals = list(proposals)
        if proposals:
            self._propose_many(proposals)
        for request_id, lease in reads:
            self._read_one(request_id, lease)
        return self._flush()

    def tick(self) -> list[Effect]:
        """One tick of logical time."""
        self.now_ticks += 1
        if self._startup_guard_ticks > 0:
            self._startup_guard_ticks -= 1
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()
        return self._flush()

    def start(self) -> list[Effect]:
        """Effects owed right after (re)start: Apply of entries committed
        before the crash (applied starts at the snapshot index)."""
        return self._flush()

    def campaign(self) -> list[Effect]:
        """Start an election now (as if the election timeout elapsed)."""
        if self.role is not Role.LEADER and self._promotable():
            self._campaign(transfer=False)
        return self._flush()

    def forget_leader(self) -> list[Effect]:
        """etcd raft's ForgetLeader: a follower forgets its leader and stays a
        leaderless follower of its term, without campaigning. It then grants
        (pre-)votes at once instead of ignoring them for an election timeout
        (leader stickiness, thesis §4.2.3), and takes the leader back if it
        hears from it again. For a failure detector that saw the leader's node
        silent for at least an election timeout (core/multiraft/host.py): the
        old leader's lease (thesis §6.4.1) rests on heartbeats a majority
        acknowledged within an election timeout, and a new leader needs votes
        from a majority that forgot it, so the two majorities cannot overlap
        while the lease holds."""
        if self.role is Role.FOLLOWER:
            self.leader = None
        return self._flush()

    def propose(
        self,
        command: bytes,
        request_id: object,
        *,
        client_id: int | None = None,
        seq: int | None = None,
    ) -> list[Effect]:
        """Fig2 Leaders: "If command received from client: append entry to
        local log, respond after entry applied to state machine". The answer
        comes through Apply.waiters (or a Reply with a typed error)."""
        self._propose_many([(command, request_id, client_id, seq)])
        return self._flush()

    def propose_batch(
        self, commands: Iterable[tuple[bytes, object, int | None, int | None]]
    ) -> list[Effect]:
        """Many proposals, one Persist and one AppendEntries per follower."""
        self._propose_many(list(commands))
        return self._flush()

    def read_index(self, request_id: object, *, lease: bool = False) -> list[Effect]:
        """A linearizable read (thesis §6.4): answered by ReadReady(request_id,
        index) once confirmed, or a Reply with NotLeader / QuorumUnavailable.
        With `lease` (and the node's `lease_reads` opt-in) the leader skips
        the heartbeat round while its lease holds (thesis §6.4.1)."""
        self._read_one(request_id, lease)
        return self._flush()

    def read_index_batch(self, reads: Iterable[tuple[object, bool]]) -> list[Effect]:
        """Many reads (request id, lease): on the leader one heartbeat round
        confirms them all (read_index.py, batching)."""
        for request_id, lease in reads:
            self._read_one(request_id, lease)
        return self._flush()

    def _read_one(self, request_id: object, lease: bool) -> None:
        if self.role is Role.LEADER:
            self._handle_read(self.id, request_id, lease)
        elif self.leader is not None:
            self._send(
                ReadIndexRequest(
                    term=self.term, src=self.id, dst=self.leader, request_id=request_id, lease=lease
                )
            )
        else:
            self._replies.append(Reply(request_id=request_id, result=NotLeader(None)))

    def add_learner(self, node_id: int, request_id: object) -> list[Effect]:
        """Propose adding a non-voting member (thesis §4.2.1)."""

        def change(c: Config) -> Config | InvalidConfigChange:
            if node_id in c.members:
                return InvalidConfigChange(f"{node_id} is already a member")
            return Config(voters=c.voters, learners=c.learners | {node_id})

        self._propose_config(request_id, change)
        return self._flush()

    def promote(self, node_id: int, request_id: object) -> list[Effect]:
        """Propose making a caught-up learner a voter (thesis §4.2.1): its log
        must hold everything the leader has committed."""

        def change(c: Config) -> Config | InvalidConfigChange | LearnerNotCaughtUp:
            if node_id not in c.learners:
                return InvalidConfigChange(f"{node_id} is not a learner")
            pr = self.progress.get(node_id)
            if pr is None or pr.match < self.log.commit:
                return LearnerNotCaughtUp(node_id)
            return Config(voters=c.voters | {node_id}, learners=c.learners - {node_id})

        self._propose_config(request_id, change)
        return self._flush()

    def remove(self, node_id: int, request_id: object) -> list[Effect]:
        """Propose removing a member (thesis §4.1); the leader may remove itself
        and steps down once the change commits (thesis §4.2.2)."""

        def change(c: Config) -> Config | InvalidConfigChange:
            if node_id not in c.members:
                return InvalidConfigChange(f"{node_id} is not a member")
            if c.voters == {node_id}:
                return InvalidConfigChange("cannot remove the last voter")
            return Config(voters=c.voters - {node_id}, learners=c.learners - {node_id})

        self._propose_config(request_id, change)
        return self._flush()

    def transfer_leadership(self, to: int) -> list[Effect]:
        """Thesis §3.10: stop accepting proposals, bring `to` up to date, then
        send it TimeoutNow. Aborted after an election timeout. Raises
        NotLeader / InvalidConfigChange for a request that cannot start."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if to not in self.log.config().voters:
            raise InvalidConfigChange(f"transfer target {to} is not a voter")
        if to != self.id and self.lead_transferee != to:
            self.lead_transferee = to
            self.election_elapsed = 0
            if self.progress[to].match == self.log.last_index:
                self._send_timeout_now(to)
            else:
                self._send_append(to)
        return self._flush()

    def compact(self, index: int, snapshot_bytes: bytes | memoryview) -> list[Effect]:
        """The application's snapshot of its state at applied `index`: the log
        up to it is discarded (Raft §7). Returns the Persist of the snapshot."""
        invariant(index <= self.log.applied, f"compact({index}) past applied {self.log.applied}")
        if index > self.log.snapshot.index:
            term = self.log.term(index)
            invariant(term is not None, "compacted index has a term")
            snap = Snapshot(
                index=index, term=cast(int, term), config=self.log.config_at(index), data=snapshot_bytes
            )
            self.log.compact(snap)
            self._snap_out = snap
        return self._flush()

    def catch_up_floor(self) -> int | None:
        """Leader: the lowest index a follower being caught up still has to receive
        from the log; None when no follower is (or this node does not lead).

        Raft §7 leaves to the server when it compacts. A follower installing a
        snapshot at S continues from S+1, and one replicating continues from its
        match: compacting past either sends it a (new) snapshot, and under
        sustained writes a slow follower then never catches up: each install is
        overtaken by the next compaction. So a driver postpones compacting past
        this floor, within a byte bound of its own (etcd keeps
        SnapshotCatchUpEntries behind its compaction for the same reason).
        Counted: a follower heard from in this CheckQuorum round or the one before:
        in SNAPSHOT its snapshot's index, otherwise its match (in PROBE too, as right
        after it installed a snapshot). Not one silent for a whole round, likely down,
        whatever its state: a follower that went down in SNAPSHOT never answers the
        transfer, and counting it would hold every later compaction to the byte bound.
        The round before counts too, so a live follower is not dropped in the moment
        after the round's reset, before its next heartbeat answer."""
        if self.role is not Role.LEADER:
            return None
        floors = [
            pr.pending_snapshot if pr.state is ProgressState.SNAPSHOT else pr.match
            for pid, pr in self.progress.items()
            if pid != self.id and (pr.recent_active or pr.active_last_round)
        ]
        return min(floors) if floors else None

    def compaction_waits(self, index: int, log_bytes: int, max_log_bytes: int) -> bool:
        """Whether compacting to ``index`` should wait for a follower being caught up:
        while the floor (``catch_up_floor``) is below ``index`` and the entries after
        the current snapshot (``log_bytes``, the driver's WAL since its last
        compaction) are at most ``max_log_bytes``. A follower a little behind catches
        up from the log; past the bound it gets a snapshot, and the leader's memory
        stays bounded (the driver's snapshot threshold plus its backlog)."""
        floor = self.catch_up_floor()
        return floor is not None and floor < index and log_bytes <= max_log_bytes

    def lagging_follower(self, max_lag_bytes: int, stall_ticks: int) -> int | None:
        """Leader: a follower that should hold new client writes back now, or None
        (the leader-follower mode's rule 10, core/shipping/node.py, carried to Raft).

        Raft commits with a majority and leaves a slow minority to catch up; under
        writes sustained faster than a follower applies, that follower never does:
        it falls past the compaction floor (``compaction_waits``), installs a
        snapshot, and lacks the writes made meanwhile, again and again, while the
        leader keeps two copies of the data in flight. So a driver holds writers
        back while a follower that made progress (``Progress.progress_tick``: its
        match moved, or it took a snapshot chunk) within ``stall_ticks`` lacks more
        than ``max_lag_bytes`` of the log: the entries after its match, or, while
        it installs a snapshot, those after that snapshot. A follower that made no
        progress for ``stall_ticks`` (down, paused, partitioned) holds nothing: it
        costs writers at most that long, and the majority's availability is kept.
        ``max_lag_bytes`` 0: never (plain Raft)."""
        if self.role is not Role.LEADER or not max_lag_bytes:
            return None
        now, log = self.now_ticks, self.log
        for pid, pr in self.progress.items():
            if pid == self.id or pr.progress_tick < 0 or now - pr.progress_tick > stall_ticks:
                continue
            held = pr.pending_snapshot if pr.state is ProgressState.SNAPSHOT else pr.match
            if log.bytes_after(held) > max_lag_bytes:
                return pid
        return None

    def log_over(self, max_log_bytes: int) -> bool:
        """Leader: whether the entries it holds in memory after its snapshot exceed
        ``max_log_bytes`` (the leader-follower mode's rule 11, core/shipping/node.py,
        carried to Raft): a driver holds new client writes back meanwhile, so the
        log a slow snapshot, or a compaction waiting for a follower, leaves in
        memory stays bounded whatever the write rate. ``max_log_bytes`` 0: never."""
        return self.role is Role.LEADER and max_log_bytes > 0 and self.log_bytes > max_log_bytes

    @property
    def log_bytes(self) -> int:
        """Bytes of the entries held in memory after the snapshot (``RaftLog.bytes_after``, O(1))."""
        return self.log.bytes_after(self.log.snapshot.index)

    def snapshot_stored(self, index: int, data: bytes | memoryview) -> None:
        """The driver made the snapshot at ``index`` durable and offers ``data``: the
        same bytes, read back from where it stored them (its file mapped, off the
        heap). The log keeps that instead of its copy, if it still holds that snapshot."""
        snap = self.log.snapshot
        if snap.index == index and len(snap.data) == len(data):
            self.log.snapshot = replace(snap, data=data)

    def status(self) -> Status:
        return Status(
            id=self.id,
            role=self.role,
            term=self.term,
            vote=self.vote,
            leader=self.leader,
            commit=self.log.commit,
            applied=self.log.applied,
            first_index=self.log.first_index,
            last_index=self.log.last_index,
            config=self.log.config(),
            progress={i: repr(p) for i, p in sorted(self.progress.items())},
        )

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.commit)

    # ------------------------------------------------------- role changes
    def _transition(self, to: Role) -> None:
        invariant((self.role, to) in _LEGAL, f"illegal role change {self.role} -> {to}")
        self.role = to

    def _become_follower(self, term: int, leader: int | None) -> None:
        """Fig2 All Servers: "If RPC request or response contains term T >
        currentTerm: set currentTerm = T, convert to follower"."""
        invariant(term >= self.term, "terms never go backwards")
        was_leader = self.role is Role.LEADER
        self._transition(Role.FOLLOWER)
        if term > self.term:
            self.term = term
            self.vote = None
        self.leader = leader
        self.votes = {}
        self._reset_election_timer()
        if was_leader:
            self.progress = {}
            self.lead_transferee = None
            for r in self.reads.pending:
                self._fail_read(r.origin, r.request_id)
            for origin, rid, _ in self.reads.waiting_for_commit:
                self._fail_read(origin, rid)
            self.reads.reset()

    def _become_pre_candidate(self) -> None:
        """Thesis §9.6: ask whether we could win before disturbing anyone's term."""
        self._transition(Role.PRE_CANDIDATE)
        self.leader = None
        self.votes = {self.id: True}
        self._reset_election_timer()
        if self._tally() == 1:
            self._become_candidate(transfer=False)
            return
        for v in self._other_voters():
            self._send(self._vote_request(v, self.term + 1, pre_vote=True, transfer=False))

    def _become_candidate(self, *, transfer: bool) -> None:
        """Fig2 Candidates: "On conversion to candidate, start election:
        increment currentTerm, vote for self, reset election timer, send
        RequestVote RPCs to all other servers"."""
        self._transition(Role.CANDIDATE)
        self.term += 1
        self.vote = self.id
        self.leader = None
        self.votes = {self.id: True}
        self._reset_election_timer()
        if self._tally() == 1:
            self._become_leader()
            return
        for v in self._other_voters():
            self._send(self._vote_request(v, self.term, pre_vote=False, transfer=transfer))

    def _become_leader(self) -> None:
        """Fig2 Leaders: "Upon election: send initial empty AppendEntries RPCs
        (heartbeat) to each server"; here the first AppendEntries carries the
        term's no-op entry (Raft §8), which also lets the leader commit."""
        self._transition(Role.LEADER)
        self.leader = self.id
        self.lead_transferee = None
        self.votes = {}
        self.heartbeat_elapsed = 0
        self.election_elapsed = 0
        self.reads.reset()
        self.progress = {}
        self._preferred_eager = None  # the lazy follower's state starts afresh (_pick_lazy_follower)
        self._sync_progress()
        # Conservative: a config entry of an earlier term may still be uncommitted.
        self.pending_conf_index = self.log.last_index
        self._append_local(
            [Entry(term=self.term, index=self.log.last_index + 1, kind=EntryKind.NOOP)]
        )

    # --------------------------------------------------------------- ticks
    def _tick_election(self) -> None:
        """Fig2 Followers: "If election timeout elapses without receiving
        AppendEntries RPC from current leader or granting vote to candidate:
        convert to candidate". Fig2 Candidates: "If election timeout elapses:
        start new election"."""
        self.election_elapsed += 1
        if self._promotable() and self.election_elapsed >= self.randomized_timeout_ticks:
            self.election_elapsed = 0
            self._campaign(transfer=False)

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout_ticks:
            self.election_elapsed = 0
            if self.check_quorum:
                # Thesis §6.2 / §9.6 CheckQuorum: step down without a live majority.
                if not self._quorum_active():
                    self._become_follower(self.term, None)
                    return
                for pid, pr in self.progress.items():
                    if pid != self.id:
                        pr.active_last_round = pr.recent_active
                        pr.recent_active = False
            self.lead_transferee = None  # thesis §3.10: transfer timed out
        if self.heartbeat_elapsed >= self.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat()
        if self.lazy_follower is not None:
            self._lazy_tick()

    def _campaign(self, *, transfer: bool) -> None:
        if self.pre_vote and not transfer:
            self._become_pre_candidate()
        else:
            self._become_candidate(transfer=transfer)

    # ------------------------------------------------------------ messages
    def _in_lease(self) -> bool:
        """Thesis §4.2.3: heard from a leader less than an election timeout ago."""
        if self._startup_guard_ticks > 0:
            return True
        return (
            self.check_quorum
            and self.leader is not None
            and self.election_elapsed < self.election_timeout_ticks
        )

    def _step(self, m: RaftMsg) -> None:
        if m.term == self.term:  # a replication round's messages: what the match below does for them
            cls = type(m)
            if cls is AppendEntriesResponse:
                if self.role is Role.LEADER:
                    self._on_append_response(m)  # type: ignore[arg-type]
                return
            if cls is AppendEntries:
                self._accept_leader(m.src)
                self._on_append_entries(m)  # type: ignore[arg-type]
                return
        if m.term > self.term:
            if isinstance(m, RequestVote) and not m.transfer and self._in_lease():
                return  # leader stickiness: ignore a disruptive candidate
            if isinstance(m, RequestVote) and m.pre_vote:
                pass  # a pre-vote changes nobody's term (thesis §9.6)
            elif isinstance(m, RequestVoteResponse) and m.pre_vote and m.granted:
                pass  # granted pre-votes carry the future term
            else:
                lead = m.src if isinstance(m, AppendEntries | Heartbeat | InstallSnapshot) else None
                self._become_follower(m.term, lead)
        elif m.term < self.term and not isinstance(m, ReadIndexRequest | ReadIndexResponse):
            self._answer_stale(m)
            return

        match m:
            case RequestVote():
                self._on_request_vote(m)
            case RequestVoteResponse():
                self._on_vote_response(m)
            case AppendEntries():
                self._accept_leader(m.src)
                self._on_append_entries(m)
            case Heartbeat():
                self._accept_leader(m.src)
                last = self.log.last_index
                self.log.commit_to(min(m.commit, last))
                lost = m.commit > last  # the leader caps commit at our match: we had those entries
                self._send(HeartbeatResponse(term=self.term, src=self.id, dst=m.src, ctx=m.ctx, lost=lost,
                                             last_index=last if lost else 0))
            case InstallSnapshot():
                self._accept_leader(m.src)
                self._on_install_snapshot(m)
            case AppendEntriesResponse():
                if self.role is Role.LEADER:
                    self._on_append_response(m)
            case HeartbeatResponse():
                if self.role is Role.LEADER:
                    self._on_heartbeat_response(m)
            case InstallSnapshotResponse():
                if self.role is Role.LEADER:
                    self._on_snapshot_response(m)
            case TimeoutNow():
                if self.role is not Role.LEADER and self._promotable():
                    self._campaign(transfer=True)  # thesis §3.10
            # ReadIndex messages of any term are answered, never dropped as stale: the
            # asker's read would otherwise wait for its driver's timeout. Both are safe
            # whatever the term: a leader confirms a read from the moment the request
            # arrives (thesis §6.4: its commit index then, and a quorum round sent after),
            # and an index so confirmed stays a linearizable point to read from for the
            # asker even if it moved to a later term meanwhile.
            case ReadIndexRequest():
                if self.role is Role.LEADER:
                    self._handle_read(m.src, m.request_id, m.lease)
                else:
                    self._send(
                        ReadIndexResponse(
                            term=self.term,
                            src=self.id,
                            dst=m.src,
                            request_id=m.request_id,
                            ok=False,
                        )
                    )
            case ReadIndexResponse():
                if m.ok:
                    self._replies.append(ReadReady(request_id=m.request_id, index=m.index))
                else:
                    self._replies.append(
                        Reply(request_id=m.request_id, result=NotLeader(self.leader))
                    )
            case _:
                violated(f"unknown message {m!r}")

    def _answer_stale(self, m: RaftMsg) -> None:
        """Fig2 RequestVote / AppendEntries receiver rule 1: "Reply false if
        term < currentTerm"; the stale sender learns our term and steps down.
        Stale responses are ignored."""
        if isinstance(m, AppendEntries):
            self._send(
                AppendEntriesResponse(
                    term=self.term,
                    src=self.id,
                    dst=m.src,
                    success=False,
                    reject_index=m.prev_log_index,
                )
            )
        elif isinstance(m, Heartbeat):
            self._send(HeartbeatResponse(term=self.term, src=self.id, dst=m.src, ctx=0))
        elif isinstance(m, RequestVote):
            self._send(
                RequestVoteResponse(
                    term=self.term, src=self.id, dst=m.src, granted=False, pre_vote=m.pre_vote
                )
            )
        elif isinstance(m, InstallSnapshot):
            self._send(
                InstallSnapshotResponse(
                    term=self.term,
                    src=self.id,
                    dst=m.src,
                    last_included_index=m.last_included_index,
                )
            )

    def _accept_leader(self, src: int) -> None:
        """Fig2 Candidates: "If AppendEntries RPC received from new leader:
        convert to follower". Election Safety: two leaders of one term would
        be a broken invariant."""
        invariant(
            self.role is not Role.LEADER, f"two leaders in term {self.term}: {self.id}, {src}"
        )
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, src)
        self.leader = src
        self.election_elapsed = 0

    def _on_request_vote(self, m: RequestVote) -> None:
        """Fig2 RequestVote receiver rule 2: "If votedFor is null or
        candidateId, and candidate's log is at least as up-to-date as
        receiver's log, grant vote"."""
        can_vote = (
            self.vote == m.src
            or (self.vote is None and self.leader is None)
            or (m.pre_vote and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.last_log_index, m.last_log_term):
            if not m.pre_vote:
                self.vote = m.src
                self.election_elapsed = 0  # Fig2 Followers: granting a vote resets the timer
            self._send(
                RequestVoteResponse(
                    term=m.term, src=self.id, dst=m.src, granted=True, pre_vote=m.pre_vote
                )
            )
        else:
            self._send(
                RequestVoteResponse(
                    term=self.term, src=self.id, dst=m.src, granted=False, pre_vote=m.pre_vote
                )
            )

    def _on_vote_response(self, m: RequestVoteResponse) -> None:
        """Fig2 Candidates: "If votes received from majority of servers: become leader"."""
        if m.pre_vote:
            if self.role is not Role.PRE_CANDIDATE or (m.granted and m.term != self.term + 1):
                return
        elif self.role is not Role.CANDIDATE:
            return
        if m.src not in self.log.config().voters:
            return
        self.votes[m.src] = m.granted
        result = self._tally()
        if result == 1:
            if self.role is Role.PRE_CANDIDATE:
                self._become_candidate(transfer=False)
            else:
                self._become_leader()
        elif result == -1:
            self._become_follower(self.term, None)

    def _on_append_entries(self, m: AppendEntries) -> None:
        """Fig2 AppendEntries receiver rules 2-5 (rule 1 in _answer_stale)."""
        log = self.log
        if m.prev_log_index < log.commit:
            # Already committed here: tell the leader where we are (etcd does the same).
            self._send(new_append_response(self.term, self.id, m.src, True, log.commit, 0, 0, 0))
            return
        if not log.matches(m.prev_log_index, m.prev_log_term):
            # Rule 2: "Reply false if log doesn't contain an entry at
            # prevLogIndex whose term matches prevLogTerm", with the hint.
            ct, ci = log.conflict_hint(m.prev_log_index)
            self._send(
                AppendEntriesResponse(
                    term=self.term,
                    src=self.id,
                    dst=m.src,
                    success=False,
                    reject_index=m.prev_log_index,
                    conflict_term=ct,
                    conflict_index=ci,
                )
            )
            return
        # Rules 3 and 4: truncate at the first conflict, append what is new.
        first = log.append_after(m.prev_log_index, m.entries)
        if first is not None:
            self._mark_unstable(first)
            self._drop_overwritten_proposals(first)
        last_new = m.prev_log_index + len(m.entries)
        # Rule 5: "If leaderCommit > commitIndex, set commitIndex =
        # min(leaderCommit, index of last new entry)".
        if m.leader_commit > log.commit:
            log.commit_to(min(m.leader_commit, last_new))
        self._send(new_append_response(self.term, self.id, m.src, True, last_new, 0, 0, 0))

    def _on_install_snapshot(self, m: InstallSnapshot) -> None:
        """Raft Figure 13 InstallSnapshot receiver, chunk by chunk."""
        log = self.log

        def answer(next_offset: int = 0, done: bool = False, match: int = 0) -> None:
            self._send(
                InstallSnapshotResponse(
                    term=self.term,
                    src=self.id,
                    dst=m.src,
                    last_included_index=m.last_included_index,
                    next_offset=next_offset,
                    done=done,
                    match_index=match,
                )
            )

        if m.last_included_index <= log.commit:
            self._drop_incoming()
            answer(done=True, match=log.commit)  # nothing to learn from it
            return
        key = (m.last_included_index, m.last_included_term)
        if m.offset == 0:  # rule 2: a new transfer (or this one from its start)
            self._drop_incoming()
            self._incoming = (key[0], key[1], self.snapshot_sink(key[0], key[1], m.config), 0)
        inc = self._incoming
        if inc is None or (inc[0], inc[1]) != key or inc[3] != m.offset:
            # Rule 3/4 out of order: ask for the offset we can continue from.
            same = inc is not None and (inc[0], inc[1]) == key
            answer(next_offset=inc[3] if same and inc is not None else 0)
            return
        if not inc[2].write(m.data):
            self._drop_incoming()  # the sink could not keep it: from the start, later
            answer(next_offset=0)
            return
        received = inc[3] + len(m.data)
        if not m.done:
            self._incoming = (inc[0], inc[1], inc[2], received)
            answer(next_offset=received)
            return
        self._incoming = None
        data = inc[2].finish()
        if data is None:
            answer(next_offset=0)
            return
        snap = Snapshot(index=m.last_included_index, term=m.last_included_term, config=m.config, data=data)
        self._discard_log = log.restore(snap) or self._discard_log  # rules 6-7
        self._snap_out = snap
        self._restore_out = snap  # rule 8: reset the state machine
        for idx in [i for i in self.pending_proposals if i <= snap.index]:
            _, rid = self.pending_proposals.pop(idx)
            self._replies.append(
                Reply(
                    request_id=rid, result=ProposalDropped("outcome unknown: covered by a snapshot")
                )
            )
        if self._discard_log:
            self._drop_overwritten_proposals(snap.index + 1)
        answer(done=True, match=snap.index)

    def _drop_incoming(self) -> None:
        if self._incoming is not None:
            self._incoming[2].abort()
            self._incoming = None

    # ------------------------------------------------------------- leader
    def _on_append_response(self, m: AppendEntriesResponse) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        if not m.success:
            # Fig2 Leaders: "If AppendEntries fails because of log
            # inconsistency: decrement nextIndex and retry", skipping a whole
            # conflicting term at a time with the hint (Raft §5.3).
            guess = m.conflict_index
            if m.conflict_term > 0 and m.reject_index >= self.log.first_index:
                last_of_term = self.log.last_index_of_term(m.conflict_term, m.reject_index)
                if last_of_term is not None:
                    guess = last_of_term + 1
            if pr.maybe_decrease(m.reject_index, max(guess, 1)):
                self._send_append(m.src)
            return
        # Fig2 Leaders: "If successful: update nextIndex and matchIndex for follower".
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.match_index):
            return
        pr.progress_tick = self.now_ticks
        if (
            pr.state is ProgressState.PROBE
            or pr.state is ProgressState.SNAPSHOT
            and pr.match >= pr.pending_snapshot
        ):
            pr.become_replicate()
        if self._maybe_commit():
            if self.role is not Role.LEADER:
                return  # removed leader stepped down (thesis §4.2.2)
            self._commit_notice = True  # followers learn the new commit in _flush
        if was_paused:
            self._send_append(m.src)
        while self._send_append(m.src, send_if_empty=False):
            pass  # pipelining: fill the inflight window
        if m.src == self.lead_transferee and pr.match == self.log.last_index:
            self._send_timeout_now(m.src)

    def _on_heartbeat_response(self, m: HeartbeatResponse) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        pr.probe_sent = False
        if m.lost and m.last_index < pr.match and pr.state is not ProgressState.SNAPSHOT:
            # The follower lost entries it had acknowledged: match otherwise only grows, and
            # every rejection at or below it is taken for a stale one (Raft §5.3; etcd
            # panics the follower here, "tocommit is out of range"). Probe again from what
            # it has; a snapshot if that is compacted away. The commit index stays: it may
            # have counted the lost copy, which is what the durability level allowed.
            pr.match = m.last_index
            pr.become_probe_at(m.last_index + 1)
            self.follower_logs_lost += 1
        if pr.state is ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first_one()  # messages may be lost: let one more through
        if pr.state is ProgressState.SNAPSHOT:
            # Retransmit a lost chunk: only when no chunk was acknowledged since the last
            # heartbeat answer. A chunk still on its way (a large one to a busy follower) is
            # not sent twice, so at most one copy of the transfer runs.
            if pr.snapshot_offset == pr.snapshot_seen:
                self._send_snapshot_chunk(m.src)
            pr.snapshot_seen = pr.snapshot_offset
        elif pr.match < self.log.last_index:
            self._send_append(m.src)
        if m.ctx > 0:
            self.reads.ack(m.src, m.ctx)
            for r in self.reads.pop_ready(self.log.config().voters, self.id):
                self._read_ready(r.origin, r.request_id, r.index)

    def _on_snapshot_response(self, m: InstallSnapshotResponse) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        if m.done:
            pr.progress_tick = self.now_ticks  # installed
            pr.maybe_update(m.match_index)
            if pr.state is ProgressState.SNAPSHOT:
                pr.become_probe()
            if self._maybe_commit() and self.role is not Role.LEADER:
                return
            self._send_append(m.src)
        elif (
            pr.state is ProgressState.SNAPSHOT
            and m.last_included_index == pr.pending_snapshot
            and m.next_offset != pr.snapshot_offset
        ):
            # Stop-and-wait, one chunk in flight: the answer moves the offset on (an ack)
            # or back (the follower lacks data: it restarted, a chunk was lost). An answer
            # naming the offset whose chunk is already in flight is a duplicate's (a
            # retransmitted chunk's) and sends nothing: answering it too would run a
            # second copy of the transfer, and a third after the next retransmit.
            if m.next_offset > pr.snapshot_offset:
                pr.progress_tick = self.now_ticks  # a chunk taken
            pr.snapshot_offset = m.next_offset
            self._send_snapshot_chunk(m.src)

    def _send_append(self, to: int, *, send_if_empty: bool = True) -> bool:
        """Fig2 Leaders: "If last log index >= nextIndex for a follower: send
        AppendEntries RPC with log entries starting at nextIndex". Returns
        True if a message went out."""
        pr = self.progress[to]
        log = self.log
        last = log.last_index
        if not send_if_empty and pr.next == last + 1:
            return False  # nothing new (what the checks below conclude; the pipelining loop's end)
        if to == self.lazy_follower and not self._lazy_open and self._lazy_holds(pr):
            # sent with the lazy follower's next batch: a round of entries counts towards it
            # (_flush); a commit notice alone waits for the batch or the tick (_lazy_tick)
            self._lazy_owed = True
            if pr.next <= last:
                self._lazy_held_now = True
            return False
        if pr.is_paused():
            return False
        prev = pr.next - 1
        if prev > last:
            violated(f"next {pr.next} past last {last}")
        if prev < log.snapshot.index:
            pr.become_snapshot(log.snapshot.index)  # Raft §7: the entries are gone
            self._send_snapshot_chunk(to)
            return False
        entries = log.slice(pr.next, last + 1, self.max_msg_bytes)
        if not entries and not send_if_empty:
            return False
        msg = new_append_entries(self.term, self.id, to, prev, int(log.term(prev) or 0), tuple(entries), log.commit)
        self._sends.append(Send(to=to, msg=msg))
        if entries:
            pr.sent_entries(entries[-1].index, log.size_between(pr.next, entries[-1].index + 1))
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _lazy_holds(self, lazy: Progress) -> bool:
        """Is this round's AppendEntries to the lazy follower held for its next batch? Only while
        both followers replicate (REPLICATE: the leader knows where their logs match ours and
        pipelines) and no leadership transfer runs (the target must be brought up to date at
        once, thesis §3.10). A probe, a snapshot, or an eager follower that is not replicating
        sends at once, so a follower that restarted or fell behind never waits for a batch.
        Holding a message is a delay, which Raft tolerates (§5.3: the leader decides what to
        send each follower and when); commit still needs a majority's match (§5.4.2), here the
        leader and the eager follower, or the lazy one once its batch arrives."""
        if lazy.state is not ProgressState.REPLICATE or self.lead_transferee is not None:
            return False
        eager = self.progress.get(self.eager_follower) if self.eager_follower is not None else None
        return eager is not None and eager.state is ProgressState.REPLICATE

    def _flush_lazy(self, *, notice: bool) -> None:
        """Send the lazy follower what was held for it: every entry it lacks (pipelined up to
        the inflight window) with the current commit index; with ``notice``, an empty
        AppendEntries carrying the commit index if no entry was due."""
        lazy = self.lazy_follower
        if lazy is None or lazy not in self.progress:
            return
        self._send_held(lazy, notice=notice)

    def _send_held(self, to: int, *, notice: bool) -> None:
        """Send ``to`` every entry it lacks now, unheld (pipelined up to the inflight window; with
        ``notice``, an empty AppendEntries with the commit index if no entry was due); the lazy
        follower's count of held rounds starts again."""
        self._lazy_rounds = 0
        self._lazy_owed = False
        self._lazy_open = True
        try:
            if self._send_append(to, send_if_empty=notice):
                while self._send_append(to, send_if_empty=False):
                    pass
        finally:
            self._lazy_open = False

    def _lazy_tick(self) -> None:
        """Leader, each tick: the lazy follower's time bound and the eager follower's liveness
        bound. A follower keeps up if it acknowledged every entry sent to it before the
        previous tick. If the eager one does not and the lazy one does, they swap roles (the
        new eager one is sent everything at once), so a slow, paused, dead or partitioned
        eager follower costs at most about two ticks of commit latency, never availability
        (the lazy one gets a batch at every tick meanwhile, and its match counts for commit).
        The preferred eager follower takes the role back once it keeps up. Then whatever was
        held for the lazy follower leaves."""
        eager, lazy = self.eager_follower, self.lazy_follower
        pe = self.progress.get(eager) if eager is not None else None
        pl = self.progress.get(lazy) if lazy is not None else None
        if pe is None or pl is None or eager is None or lazy is None:
            return
        due = self._lazy_due
        lazy_ok = pl.match >= due.get(lazy, 0)
        if lazy_ok and (pe.match < due.get(eager, 0) or lazy == self._preferred_eager):
            self.eager_follower, self.lazy_follower = lazy, eager
            self.lazy_swaps += 1
            self._send_held(lazy, notice=False)
        if self._lazy_owed:
            self._flush_lazy(notice=True)
        due[eager] = pe.next - 1
        due[lazy] = pl.next - 1

    def _pick_lazy_follower(self) -> None:
        """Leader, on election and on a configuration change (_sync_progress): the policy runs
        in a configuration of exactly three voters including this one (a majority is this node
        and one follower); otherwise every follower gets every round."""
        voters = self.log.config().voters
        if self.lazy_follower_rounds < 1 or len(voters) != 3 or self.id not in voters:
            if self.lazy_follower is not None:
                self._flush_lazy(notice=False)
            self.eager_follower = self.lazy_follower = self._preferred_eager = None
            return
        others = sorted(voters - {self.id})
        preferred = next((v for v in others if v > self.id), others[0])  # spreads the eager role
        if self._preferred_eager == preferred and {self.eager_follower, self.lazy_follower} == set(others):
            return  # unchanged
        self._preferred_eager = self.eager_follower = preferred
        self.lazy_follower = others[1] if others[0] == preferred else others[0]
        self._lazy_rounds = 0
        self._lazy_owed = False
        self._lazy_due = {}

    def _send_snapshot_chunk(self, to: int) -> None:
        pr = self.progress[to]
        snap = self.log.snapshot
        if pr.pending_snapshot != snap.index:
            pr.become_snapshot(snap.index)  # compacted again since: start over
        off = min(pr.snapshot_offset, len(snap.data))
        chunk = snap.data[off : off + self.snapshot_chunk_bytes]
        self._send(
            InstallSnapshot(
                term=self.term,
                src=self.id,
                dst=to,
                last_included_index=snap.index,
                last_included_term=snap.term,
                config=snap.config,
                offset=off,
                data=chunk,
                done=off + len(chunk) >= len(snap.data),
            )
        )

    def _broadcast_append(self) -> None:
        for pid in self.progress:
            if pid != self.id:
                self._send_append(pid)

    def _broadcast_heartbeat(self) -> int:
        """Fig2 Leaders: "repeat during idle periods to prevent election timeouts".
        Each broadcast is a numbered round for ReadIndex / leases."""
        ctx = self.reads.new_round(self.now_ticks, self.election_timeout_ticks)
        for pid, pr in self.progress.items():
            if pid != self.id:
                commit = min(pr.match, self.log.commit)
                self._send(Heartbeat(term=self.term, src=self.id, dst=pid, commit=commit, ctx=ctx))
        return ctx

    def _send_timeout_now(self, to: int) -> None:
        self._send(TimeoutNow(term=self.term, src=self.id, dst=to))

    def _maybe_commit(self) -> bool:
        """Fig2 Leaders: "If there exists an N such that N > commitIndex, a
        majority of matchIndex[i] >= N, and log[N].term == currentTerm: set
        commitIndex = N" (Raft §5.4.2: only current-term entries by counting)."""
        voters = self.log.config().voters
        if not voters:
            return False
        progress = self.progress
        matches = sorted([progress[v].match if v in progress else 0 for v in voters], reverse=True)
        n = matches[len(voters) // 2]
        if n <= self.log.commit or self.log.term(n) != self.term:
            return False
        self.log.commit_to(n)
        self._on_commit_advanced()
        return True

    def _on_commit_advanced(self) -> None:
        if self.reads.waiting_for_commit and self.log.term(self.log.commit) == self.term:
            waiting, self.reads.waiting_for_commit = self.reads.waiting_for_commit, []
            for origin, rid, lease in waiting:
                self._handle_read(origin, rid, lease)
        cfg = self.log.config()
        if self.id not in cfg.voters and self.log.commit >= self.log.last_config_index():
            self._become_follower(self.term, None)  # thesis §4.2.2: removed leader steps down

    def _quorum_active(self) -> bool:
        voters = self.log.config().voters
        active = sum(
            1
            for v in voters
            if v == self.id or (v in self.progress and self.progress[v].recent_active)
        )
        return active > len(voters) // 2

    def _propose_many(self, commands: list[tuple[bytes, object, int | None, int | None]]) -> None:
        if self.role is not Role.LEADER or self.lead_transferee is not None:
            for _, rid, _, _ in commands:
                err: Exception = (
                    NotLeader(self.leader)
                    if self.role is not Role.LEADER
                    else ProposalDropped("leadership transfer in progress")
                )
                self._replies.append(Reply(request_id=rid, result=err))
            return
        entries: list[Entry] = []
        term, idx = self.term, self.log.last_index
        pending = self.pending_proposals
        room = self.max_pending_proposals - len(pending)
        for command, rid, client_id, seq in commands:
            if room <= 0:
                self._replies.append(
                    Reply(request_id=rid, result=ProposalDropped("too many pending proposals"))
                )
                continue
            room -= 1
            idx += 1
            entries.append(normal_entry(term, idx, command, client_id, seq))
            pending[idx] = (term, rid)
        if entries:
            self._append_local(entries)

    def _propose_config(self, rid: object, change: object) -> None:
        err: Exception | None = None
        if self.role is not Role.LEADER:
            err = NotLeader(self.leader)
        elif self.lead_transferee is not None:
            err = ProposalDropped("leadership transfer in progress")
        elif self.pending_conf_index > self.log.commit:
            err = ConfigChangeInProgress("a membership change is not committed yet")
        elif self.log.term(self.log.commit) != self.term:
            err = ConfigChangeInProgress("the leader has not committed an entry of its term")
        if err is None:
            new = change(self.log.config())  # type: ignore[operator]
            if isinstance(new, Config):
                idx = self.log.last_index + 1
                self.pending_conf_index = idx
                self.pending_proposals[idx] = (self.term, rid)
                self._append_local(
                    [Entry(term=self.term, index=idx, kind=EntryKind.CONFIG, config=new)]
                )
                return
            err = new
        self._replies.append(Reply(request_id=rid, result=err))

    def _append_local(self, entries: list[Entry]) -> None:
        self.log.append(entries)
        self._mark_unstable(entries[0].index)
        if any(e.config is not None for e in entries):
            self._sync_progress()  # thesis §4.1: the new config is used at once
        me = self.progress.get(self.id)
        if me is not None and not self.async_persist:
            me.maybe_update(self.log.last_index)  # the driver persists before anything else
        self._maybe_commit()
        self._broadcast_append()

    def _on_persisted(self, index: int, term: int) -> None:
        """async_persist: the local log up to (index, term) is durable. The
        leader's own match advances only now (thesis §10.2.1); the term check
        ignores a report about entries that a truncation has since replaced
        (same index and term = same entry and prefix, Log Matching)."""
        if self.role is not Role.LEADER or index > self.log.last_index:
            return
        try:
            if self.log.term(index) != term:
                return
        except Compacted:
            return
        me = self.progress.get(self.id)
        if me is not None and me.maybe_update(index) and self._maybe_commit():
            self._commit_notice = self.role is Role.LEADER

    def _sync_progress(self) -> None:
        """Leader: one Progress per member of the configuration in force."""
        members = self.log.config().members
        for pid in list(self.progress):
            if pid not in members:
                del self.progress[pid]
        for pid in members:
            if pid not in self.progress:
                pr = Progress(
                    self.log.last_index + 1, self.max_inflight_msgs, self.max_inflight_bytes
                )
                if pid == self.id:
                    pr.maybe_update(self.log.last_index)
                    pr.become_replicate()
                pr.recent_active = True
                self.progress[pid] = pr
        if self.lead_transferee is not None and self.lead_transferee not in members:
            self.lead_transferee = None
        if self.lazy_follower_rounds:
            self._pick_lazy_follower()

    def _handle_read(self, origin: int, rid: object, lease: bool) -> None:
        """Thesis §6.4 steps 1-3 (step 4, waiting for apply, is the driver's)."""
        if self.reads.full():
            self._fail_read(origin, rid, QuorumUnavailable("too many pending reads"))
            return
        if self.log.term(self.log.commit) != self.term:
            self.reads.waiting_for_commit.append((origin, rid, lease))  # step 1
            return
        index = self.log.commit  # step 2
        voters = self.log.config().voters
        if voters == {self.id}:
            self._read_ready(origin, rid, index)
            return
        if (
            lease
            and self.lease_reads
            and self.lead_transferee is None
            and self.reads.lease_valid(
                voters,
                self.id,
                self.now_ticks,
                self.election_timeout_ticks - self.lease_drift_margin_ticks,
            )
        ):
            self._read_ready(origin, rid, index)  # §6.4.1: lease holds, skip the round
            return
        # Step 3, batched: wait for the next round; _flush sends it unless one
        # is in flight (then it goes out once that one is confirmed).
        self.reads.add(PendingRead(origin, rid, index, self.reads.next_ctx()))

    def _read_ready(self, origin: int, rid: object, index: int) -> None:
        if origin == self.id:
            self._replies.append(ReadReady(request_id=rid, index=index))
        else:
            self._send(
                ReadIndexResponse(
                    term=self.term, src=self.id, dst=origin, request_id=rid, index=index
                )
            )

    def _fail_read(self, origin: int, rid: object, err: Exception | None = None) -> None:
        if origin == self.id:
            self._replies.append(Reply(request_id=rid, result=err or NotLeader(self.leader)))
        else:
            self._send(
                ReadIndexResponse(term=self.term, src=self.id, dst=origin, request_id=rid, ok=False)
            )

    # ------------------------------------------------------------ helpers
    def _promotable(self) -> bool:
        return self.id in self.log.config().voters

    def _other_voters(self) -> list[int]:
        return sorted(v for v in self.log.config().voters if v != self.id)

    def _tally(self) -> int:
        """1 if a majority of voters granted, -1 if a majority refused, else 0."""
        voters = self.log.config().voters
        granted = sum(1 for v in voters if self.votes.get(v) is True)
        refused = sum(1 for v in voters if self.votes.get(v) is False)
        q = len(voters) // 2 + 1
        return 1 if granted >= q else -1 if refused >= q else 0

    def _vote_request(self, to: int, term: int, *, pre_vote: bool, transfer: bool) -> RequestVote:
        return RequestVote(
            term=term,
            src=self.id,
            dst=to,
            last_log_index=self.log.last_index,
            last_log_term=self.log.last_term,
            pre_vote=pre_vote,
            transfer=transfer,
        )

    def _reset_randomized_timeout(self) -> None:
        et = self.election_timeout_ticks
        self.randomized_timeout_ticks = et + self.rng.randrange(et)  # Raft §5.2: [T, 2T)

    def _reset_election_timer(self) -> None:
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_timeout()

    def _send(self, msg: RaftMsg) -> None:
        self._sends.append(Send(to=msg.dst, msg=msg))

    def _mark_unstable(self, index: int) -> None:
        if self._unstable_from is None or index < self._unstable_from:
            self._unstable_from = index

    def _drop_overwritten_proposals(self, from_index: int) -> None:
        """Raft §5.3: entries from from_index were replaced; proposals of ours
        there are lost unless the new entry is the same (checked at apply)."""
        for idx in [i for i in self.pending_proposals if i >= from_index]:
            term, rid = self.pending_proposals[idx]
            t = self.log.term(idx) if idx <= self.log.last_index else None
            if t != term:
                del self.pending_proposals[idx]
                self._replies.append(
                    Reply(
                        request_id=rid, result=ProposalDropped("entry replaced by another leader")
                    )
                )

    def _notify_commit(self) -> None:
        """Leader: tell each follower a commit index that advanced during this
        call, unless an AppendEntries of this call already carries it (the
        entries of a proposal batch do, so a busy leader sends no extra
        message). Deferred to here from ``_on_append_response`` so that one
        call (``advance``) sends one notice per follower, not one per ack."""
        self._commit_notice = False
        if self.role is not Role.LEADER:
            return
        commit = self.log.commit
        told = {
            s.to
            for s in self._sends
            if isinstance(s.msg, AppendEntries) and s.msg.leader_commit >= commit
        }
        for pid in self.progress:
            if pid != self.id and pid not in told:
                self._send_append(pid)

    def _coalesce_acks(self) -> None:
        """Follower: successful AppendEntries responses of one call to the same
        leader and term are merged into one carrying the highest match index,
        placed where the last of them was. Safe: each response only states
        that the log holds a prefix matching the leader's, and every one of
        them is sent after the same Persist."""
        acks = [
            (i, s.msg)
            for i, s in enumerate(self._sends)
            if isinstance(s.msg, AppendEntriesResponse) and s.msg.success
        ]
        if len(acks) < 2:
            return
        best: dict[tuple[int, int], int] = {}  # (dst, term) -> highest match index
        last: dict[tuple[int, int], int] = {}  # (dst, term) -> position of its last response
        for i, m in acks:
            key = (m.dst, m.term)
            best[key] = max(best.get(key, 0), m.match_index)
            last[key] = i
        if len(last) == len(acks):
            return  # one response per leader already
        merged = {i: m for i, m in acks}
        out: list[Send] = []
        for i, s in enumerate(self._sends):
            ack = merged.get(i)
            if ack is not None:
                key = (ack.dst, ack.term)
                if last[key] != i:
                    continue
                if ack.match_index != best[key]:
                    s = Send(to=s.to, msg=replace(ack, match_index=best[key]))
            out.append(s)
        self._sends = out

    def _flush(self) -> list[Effect]:
        """Assemble this call's effects in the durability order (effects.py)."""
        if self._commit_notice:
            self._notify_commit()
        if self._lazy_held_now:
            # one more round held for the lazy follower; its batch leaves every
            # lazy_follower_rounds rounds (and at each tick: _lazy_tick)
            self._lazy_held_now = False
            if self.role is Role.LEADER and self.log.last_index > self._lazy_counted_to:
                self._lazy_counted_to = self.log.last_index  # a round: this call added entries
                self.lazy_rounds_held += 1
                self._lazy_rounds += 1
                if self._lazy_rounds >= self.lazy_follower_rounds:
                    self._flush_lazy(notice=True)
        if len(self._sends) > 1 and self.role is not Role.LEADER:
            self._coalesce_acks()
        if (
            self.role is Role.LEADER
            and self.reads.pending
            and self.reads.wants_round(self.log.config().voters, self.id)
        ):
            self._broadcast_heartbeat()  # ReadIndex step 3 for the reads of this batch
        log = self.log
        out: list[Effect] = []
        # the HardState is built only when it changed (the fields compared, not a new object per
        # call: most calls of a busy follower or leader change neither term, vote nor commit)
        old = self._persisted_hs
        hs: HardState | None = None
        if old.commit != log.commit or old.term != self.term or old.vote != self.vote:
            hs = new_hard_state(self.term, self.vote, log.commit)
        entries: tuple[Entry, ...] = ()
        if self._unstable_from is not None:
            lo = max(self._unstable_from, log.first_index)
            last = log.last_index
            if lo <= last:
                entries = tuple(log.slice(lo, last + 1))
        if hs is not None or entries or self._snap_out is not None:
            out.append(new_persist(hs, entries, self._snap_out, self._discard_log))
            if hs is not None:
                self._persisted_hs = hs
        if self._restore_out is not None:
            out.append(RestoreSnapshot(snapshot=self._restore_out))
        if log.commit > log.applied:
            applied = log.slice(log.applied + 1, log.commit + 1)
            waiters: list[tuple[int, object]] = []
            pending = self.pending_proposals
            for e in applied if pending else ():  # a follower has no proposals waiting
                p = pending.pop(e.index, None)
                if p is None:
                    continue
                if p[0] == e.term:
                    waiters.append((e.index, p[1]))
                else:
                    self._replies.append(
                        Reply(
                            request_id=p[1],
                            result=ProposalDropped("entry replaced by another leader"),
                        )
                    )
            log.applied = log.commit
            out.append(new_apply(tuple(applied), tuple(waiters)))
        out.extend(self._sends)
        out.extend(self._replies)
        self._sends = []
        self._replies = []
        self._unstable_from = None
        self._snap_out = None
        self._discard_log = False
        self._restore_out = None
        self._check()
        return out

    def _check(self) -> None:
        log = self.log
        if not log.snapshot.index <= log.applied <= log.commit <= log.last_index:
            violated(
                f"node {self.id}: snap {log.snapshot.index} applied {log.applied} "
                f"commit {log.commit} last {log.last_index}"
            )
        if self.role is Role.LEADER and self.leader != self.id:
            violated("a leader knows it leads")
