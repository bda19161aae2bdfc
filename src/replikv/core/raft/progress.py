"""Leader-side replication progress of one follower (etcd-io/raft's Progress).

States (etcd `tracker/state.go`):
- PROBE: we do not know where the follower's log matches ours; send at most
  one AppendEntries and wait for its answer (or a heartbeat answer) before the
  next (`probe_sent`). Rejections walk `next` back with the conflict hint
  (Raft §5.3).
- REPLICATE: the follower's log matches up to `match`; send optimistically
  and pipeline: `next` jumps past what was sent, bounded by `Inflights`
  (count and bytes) so that a slow follower never makes us buffer without
  bound.
- SNAPSHOT: `next` is compacted away; an InstallSnapshot is in flight
  (Raft §7), chunk by chunk; no AppendEntries until it is acknowledged.

Invariants: 0 <= match < next; in REPLICATE, every inflight index is in
(match, next).
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from replikv.core.invariant import invariant, violated

__all__ = ["Inflights", "Progress", "ProgressState"]


class ProgressState(Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """AppendEntries sent and not yet acknowledged: (last index, bytes) each.
    Full when either bound is reached; the bounds make pipelining finite."""

    __slots__ = ("_q", "bytes", "max_bytes", "max_count")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        invariant(max_count > 0 and max_bytes > 0, "inflight bounds are positive")
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._q: deque[tuple[int, int]] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._q)

    def full(self) -> bool:
        return len(self._q) >= self.max_count or self.bytes >= self.max_bytes

    def add(self, last_index: int, size_bytes: int) -> None:
        q = self._q
        if q and q[-1][0] >= last_index:
            violated("inflights are increasing")
        q.append((last_index, size_bytes))
        self.bytes += size_bytes

    def free_le(self, index: int) -> None:
        """Acknowledge everything up to and including `index`."""
        while self._q and self._q[0][0] <= index:
            self.bytes -= self._q.popleft()[1]

    def free_first_one(self) -> None:
        """Give up on the oldest message (it may be lost) so a full window can
        send again; a gap then makes the follower reject, and we probe."""
        if self._q:
            self.bytes -= self._q.popleft()[1]

    def reset(self) -> None:
        self._q.clear()
        self.bytes = 0


class Progress:
    __slots__ = (
        "inflights",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "progress_tick",
        "recent_active",
        "active_last_round",
        "snapshot_offset",
        "snapshot_seen",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int, max_inflight_bytes: int) -> None:
        self.match = 0  # highest index known replicated on the follower
        self.next = next_index  # next index to send; match < next
        self.state = ProgressState.PROBE
        self.probe_sent = False  # PROBE: one message in flight, wait for its answer
        self.recent_active = False  # heard from since the last CheckQuorum (thesis §6.2)
        self.active_last_round = False  # recent_active as the last CheckQuorum round ended
        self.progress_tick = -1  # leader tick of its last progress (match, or a snapshot chunk taken)
        self.inflights = Inflights(max_inflight, max_inflight_bytes)
        self.pending_snapshot = 0  # SNAPSHOT: index of the snapshot being sent
        self.snapshot_offset = 0  # SNAPSHOT: bytes acknowledged so far; the chunk there is in flight
        self.snapshot_seen = -1  # SNAPSHOT: snapshot_offset at the last heartbeat answer

    def __repr__(self) -> str:
        return (
            f"Progress({self.state.value} match={self.match} next={self.next}"
            f" inflight={len(self.inflights)})"
        )

    def _check(self) -> None:
        if not 0 <= self.match < self.next:
            violated(f"match < next broken: {self!r}")

    def become_probe(self) -> None:
        """Back to probing from match + 1 (etcd: after a rejection or a snapshot)."""
        if self.state is ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflights.reset()
        self._check()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()
        self._check()

    def become_snapshot(self, snapshot_index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = snapshot_index
        self.snapshot_offset = 0
        self.snapshot_seen = -1
        self.probe_sent = False
        self.inflights.reset()

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def sent_entries(self, last_index: int, size_bytes: int) -> None:
        """An AppendEntries carrying entries up to `last_index` went out."""
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflights.add(last_index, size_bytes)
        else:
            self.probe_sent = True
        self._check()

    def maybe_update(self, match: int) -> bool:
        """A success up to `match`. Returns True if it taught us something new."""
        updated = match > self.match
        if updated:
            self.match = match
            self.probe_sent = False
        self.next = max(self.next, match + 1)
        self.inflights.free_le(match)
        self._check()
        return updated

    def maybe_decrease(self, reject_index: int, next_guess: int) -> bool:
        """A rejection of the AppendEntries whose prev_log_index was
        `reject_index`; `next_guess` comes from the conflict hint. Returns
        False for a stale rejection (Raft §5.3, etcd MaybeDecrTo)."""
        if self.state is ProgressState.REPLICATE:
            if reject_index <= self.match:
                return False  # older than what we already know matches
            self.next = max(self.match + 1, min(next_guess, reject_index))
            self.become_probe_at(self.next)
            return True
        if reject_index != self.next - 1:
            return False  # not the answer to our probe
        self.next = max(self.match + 1, min(next_guess, reject_index))
        self.probe_sent = False
        self._check()
        return True

    def become_probe_at(self, next_index: int) -> None:
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflights.reset()
        self.next = next_index
        self._check()
