"""ReadIndex and lease reads on the leader (Ongaro thesis §6.4 and §6.4.1).

ReadIndex (§6.4), as the leader runs it:
1. it must have committed an entry of its current term (its no-op) so that
   its commit index is at least every committed index; reads arriving
   earlier wait in `waiting_for_commit` (bounded);
2. it records read_index = commit;
3. it confirms it is still the leader: a heartbeat round numbered `ctx` goes
   to every follower; once a quorum of voters (itself included) has answered
   round ctx or a later one, every read registered at ctx or earlier is
   ready (an answer to a later round confirms earlier ones too, since it was
   sent later);
   batching (as etcd): a read is registered for the NEXT round to be sent
   (`round + 1`), never for one already sent, since only a round sent after
   the read arrived can confirm it. At most one round is in flight for reads:
   the leader starts one at the end of a call when reads wait for it and no
   round of this term is unconfirmed (`wants_round`); reads that arrive while
   a round is in flight ride the next one, started as soon as the one in
   flight is confirmed by a quorum (or by the next heartbeat tick, which is a
   round too, if it was lost). So one round confirms a whole batch of reads,
   and a read waits at most for the round in flight plus its own;
4. the read is served once the state machine has applied read_index (the
   driver waits on ReadReady).

Lease reads (§6.4.1) are an explicit opt-in and weaker: they rely on bounded
clock drift. A follower that heard from the leader ignores vote requests for
an election timeout (leader stickiness, thesis §4.2.3), so a round sent at
leader tick t that a quorum acknowledged keeps any other leader away until
t + election_timeout on the followers' clocks; the leader uses its lease only
until t + election_timeout - drift_margin on its own clock.

Bounds: `max_pending` reads at a time; round send times older than an
election timeout are forgotten (they can no longer give a lease).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from replikv.core.invariant import invariant

__all__ = ["PendingRead", "ReadTracker"]


@dataclass(frozen=True, slots=True)
class PendingRead:
    origin: int  # the node that asked (the leader itself or a follower)
    request_id: object
    index: int  # the read index: the leader's commit when the read arrived
    ctx: int  # the heartbeat round that must be acknowledged by a quorum


class ReadTracker:
    __slots__ = (
        "acked",
        "max_pending",
        "pending",
        "round",
        "round_ticks",
        "round_ticks_first",
        "term_first_round",
        "waiting_for_commit",
    )

    def __init__(self, max_pending: int) -> None:
        self.round = 0  # number of the last heartbeat round sent
        self.term_first_round = 0  # rounds up to this one were sent in an earlier term
        # leader tick each recent round was sent at: round_ticks[i] is round
        # round_ticks_first + i (rounds are consecutive; pruned from the left
        # in O(1) each: a scan per round made reads quadratic and stalled the loop)
        self.round_ticks: deque[int] = deque()
        self.round_ticks_first = 1
        self.acked: dict[int, int] = {}  # voter -> highest round it answered
        self.pending: list[PendingRead] = []  # ordered by ctx
        self.waiting_for_commit: list[tuple[int, object, bool]] = []  # (origin, rid, lease)
        self.max_pending = max_pending

    def reset(self) -> None:
        """A new term: no acknowledgement of an older term counts."""
        self.acked.clear()
        self.round_ticks.clear()
        self.round_ticks_first = self.round + 1
        self.term_first_round = self.round
        self.pending.clear()
        self.waiting_for_commit.clear()

    def full(self) -> bool:
        return len(self.pending) + len(self.waiting_for_commit) >= self.max_pending

    def new_round(self, now_tick: int, election_timeout_ticks: int) -> int:
        self.round += 1
        ticks = self.round_ticks
        if not ticks:
            self.round_ticks_first = self.round
        ticks.append(now_tick)
        limit = now_tick - election_timeout_ticks
        while ticks[0] < limit:
            ticks.popleft()
            self.round_ticks_first += 1
        return self.round

    def sent_tick(self, ctx: int) -> int | None:
        """The leader tick round ctx was sent at, if it is recent."""
        i = ctx - self.round_ticks_first
        return self.round_ticks[i] if 0 <= i < len(self.round_ticks) else None

    def next_ctx(self) -> int:
        """The round a read arriving now waits for: the next one to be sent."""
        return self.round + 1

    def add(self, read: PendingRead) -> None:
        invariant(not self.pending or self.pending[-1].ctx <= read.ctx, "reads ordered by ctx")
        invariant(read.ctx == self.round + 1, "a read waits for a round sent after it arrived")
        self.pending.append(read)

    def in_flight(self, voters: frozenset[int], self_id: int) -> bool:
        """A round of this term was sent and no quorum has answered it yet."""
        return self.round > self.term_first_round and self.quorum_round(voters, self_id) < self.round

    def wants_round(self, voters: frozenset[int], self_id: int) -> bool:
        """Reads wait for a round not sent yet, and none is in flight: send one now."""
        return (
            bool(self.pending)
            and self.pending[-1].ctx > self.round
            and not self.in_flight(voters, self_id)
        )

    def ack(self, voter: int, ctx: int) -> None:
        if ctx > self.acked.get(voter, 0):
            self.acked[voter] = ctx

    def quorum_round(self, voters: frozenset[int], self_id: int) -> int:
        """The highest round acknowledged by a quorum of voters (0 if none).
        The leader's own acknowledgement of every round is implicit."""
        if not voters:
            return 0
        rounds = sorted(
            (self.round if v == self_id else self.acked.get(v, 0) for v in voters), reverse=True
        )
        return rounds[len(voters) // 2]

    def pop_ready(self, voters: frozenset[int], self_id: int) -> list[PendingRead]:
        q = self.quorum_round(voters, self_id)
        n = 0
        while n < len(self.pending) and self.pending[n].ctx <= q:
            n += 1
        ready, self.pending = self.pending[:n], self.pending[n:]
        return ready

    def lease_valid(
        self, voters: frozenset[int], self_id: int, now_tick: int, lease_ticks: int
    ) -> bool:
        """§6.4.1: a quorum answered a round sent less than lease_ticks ago."""
        q = self.quorum_round(voters, self_id)
        sent = self.sent_tick(q)
        if q == self.round and self_id in voters and len(voters) == 1:
            return True
        return sent is not None and now_tick < sent + lease_ticks
