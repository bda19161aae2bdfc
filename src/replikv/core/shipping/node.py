"""Leader-follower log shipping: one node's replication state, pure.

The rules (what Redis PSYNC, MySQL semi-sync and Kafka's leader epochs do):

1. Epochs fence. Every message carries the sender's epoch. A node that sees
   a higher epoch adopts it and the leader that goes with it, and a leader
   that sees one steps down (``_observe``). A message from a lower epoch is
   answered with ``Fenced`` and otherwise ignored.
2. The leader orders every write: ``propose`` numbers entries after its last
   index, tags them with its epoch, logs them and ships them to every follower
   that streams from the right place.
3. A follower appends only in order: an ``Append`` whose ``prev_index`` /
   ``prev_epoch`` is not its last entry triggers a ``SyncRequest``, except a
   resend that starts inside its log and matches it there (``_overlap``): the
   answer to a SyncRequest that crossed frames still in flight. By log
   matching it holds that resend's first entries already; it appends the rest
   and asks nothing (each such SyncRequest had the leader send its window
   again, whose frames raised the next one: a storm seen under 64 KiB writes).
4. Sync (partial resync): the follower names its last index and epoch
   history. If the leader holds its last entry with the same epoch the logs
   match there and the leader streams from the next index. If not, the
   leader answers ``Truncate`` to the highest index where both agree; the follower
   drops its divergent suffix (counting the writes it had acknowledged as
   leader) and asks again. The leader finds the match point in one round
   from both epoch histories (``ShippingLog.match_point``). If the leader has compacted past the follower, or the
   follower cannot truncate below its own snapshot, the leader sends a
   snapshot (full resync). A SyncRequest left unanswered is sent again after
   ``sync_retry_ms``, doubled for each one in a row (up to 16x): on a live
   connection nothing is lost, and every needless one had a busy leader
   reset the follower's progress and pack and send its catch-up window
   again, which kept it busier (a queue of 700 SyncRequests, each packing
   32 MB, under 64 KiB writes at load 20: issue 15). None is sent while
   part of a frame from the leader keeps arriving (``receiving``). A dropped connection
   clears ``syncing`` (``peer_disconnected``) and starts over at once.
5. Flow control: at most ``window_entries`` unacknowledged entries and
   ``window_bytes`` unacknowledged bytes (one frame always goes, however
   big; a catch-up frame holds only what fits, at least one entry) are in
   flight per follower; acks open the window again, so catch-up
   is bounded and the transport's send queue never fills with the live
   stream (large values once filled it past its limit, which dropped the
   follower into an endless full resync). While a follower is sent a
   snapshot, no new snapshot compacts the log (``full_resync_in_progress``),
   so the entries it needs next are still there when it lands: a full
   resync that starts can finish. No Append holds more than ``frame_bytes``
   of entries unless it is one entry (which fits the peer frame limit: a
   command is at most ``max_command_bytes``): a new batch past it goes as
   catch-up frames. Before, a follower that synced after two 2 MB script
   entries (each within the limit) was sent both in one 3.95 MB frame, over
   its 3 MiB limit, and the link closed at every resend.
6. Acks: a follower acks the highest index in its WAL after the driver has
   persisted it; the leader's ``ack_watermark(k)`` is the highest index that
   k followers hold (semi-sync k; sync is k = number of followers), and never
   sends a follower again what it acked (``next_index`` > ``match_index``).
7. Hand-over (manual failover): the leader stops taking writes, waits until
   the target has acked its whole log, and tells it to take over; the target
   promotes itself with a higher epoch, which fences the old leader.
8. Epochs a node takes for itself are its own, like Paxos ballot numbers:
   of n nodes, the k-th in name order only promotes itself to epochs
   ``e`` with ``e % n == k``, so two nodes promoted at once (two concurrent
   ``FAILOVER ... FORCE``) never lead the same epoch; the higher one fences
   the other by rule 1.
9. Backlog (Redis's repl-backlog-size, a partial resync from the backlog): a
   snapshot does not compact away what a follower still needs. ``compact``
   keeps the entries after the lowest ``match_index`` of the followers that
   stream, or streamed before a disconnect (they still hold up to it), or
   after the snapshot a follower was just sent (before its first ack), as
   long as the backlog it keeps (the entries the snapshot already covers) is
   at most ``repl_backlog_bytes``; a follower further behind, or one whose
   position is unknown, is left to a full resync (rule 4). So a follower
   that lags behind the leader's snapshots catches up by entries. The
   backlog is the leader's: a node that steps down drops it, so on a
   follower the log base is its snapshot, below which it can neither
   truncate nor roll its state back. A restarted node recovers from its
   snapshot on, without a backlog (the WAL may still hold older entries).
10. Back-pressure on writers (``lagging_follower``): the leader holds new
   writes back while a follower that is making progress lacks more than
   ``max_lag_bytes`` of the stream (streaming: the bytes after what it holds;
   in a full resync: the bytes written since the snapshot it is sent). With
   ``max_lag_bytes`` below ``repl_backlog_bytes`` (the defaults: half) a
   follower that keeps up with the stream at all is never compacted past
   (rule 9 keeps up to ``repl_backlog_bytes`` behind the snapshot, and the
   follower is never more than ``max_lag_bytes`` and one round of writes
   behind the end), and the entries a full resync needs
   when it lands stay bounded: a resync that starts completes, and memory
   stays bounded by the data set plus backlog plus the lag allowed. A
   disconnected follower, or one that made no progress (an ack, or a chunk
   of its snapshot taken by the connection) for ``lag_stall_ms``, holds
   nothing back: a stopped or hung follower costs writers at most that
   long, then is left to resync (the async leader's availability over its
   followers'). One back in PROBE on a live connection still counts.
   ``max_lag_bytes`` 0: no back-pressure (Redis's behaviour).
11. A bound on the log held in memory (``log_over``): the leader also holds
   new writes back while the log it keeps in memory (the backlog and the
   entries after the latest snapshot) exceeds ``max_log_bytes``. Rules 9 and
   10 bound what the backlog and a lagging follower keep, but not what is
   written while a snapshot is being taken: a snapshot that takes long (a
   slow disk, a large data set, one postponed by a full resync, rule 5)
   would let the log grow by the write rate times its duration. Released
   once a compaction brings the log back under the bound; the driver keeps
   taking the snapshot meanwhile. ``max_log_bytes`` 0: no bound.

Time arrives as ``now_ms`` arguments; nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgpack

from replikv.core.invariant import invariant
from replikv.core.shipping.effects import (
    ApplyEntries, Effect, HandOverDone, PersistEntries, PersistMeta, RoleChanged, Send,
    SendSnapshot, TruncateLog,
)
from replikv.core.shipping.log import ShippingLog
from replikv.core.shipping.messages import (
    Ack, Append, Fenced, HandOverReady, HandOverRequest, Hello,
    ShippingMsg, SnapshotBegin, SnapshotChunk, SyncRequest, Truncate,
)

LEADER = "leader"
FOLLOWER = "follower"

PROBE = "probe"        # not streaming: waiting for the follower's SyncRequest
STREAM = "stream"      # entries next_index.. are sent as they are written
SNAPSHOT = "snapshot"  # a full resync is in progress


@dataclass(slots=True)
class FollowerProgress:
    """The leader's view of one follower.

    Invariant: ``match_index < next_index <= leader.last_index + 1`` while
    streaming; ``match_index`` only grows within an epoch.
    """

    state: str = PROBE
    match_index: int = 0
    next_index: int = 0
    last_ack_ms: int = -1
    # frames sent and not yet acked: (last index in the frame, its bytes), oldest first
    inflight: deque[tuple[int, int]] = field(default_factory=deque)
    inflight_bytes: int = 0
    # the snapshot a full resync sent it: it resumes after that once installed, before its
    # first ack raises match_index (rule 9 keeps the backlog from the higher of the two)
    snapshot_index: int = 0
    # in a full resync: the index the snapshot it is sent covers (the log's end when the resync
    # began, until the driver names the snapshot); rule 10 counts its lag from there
    resync_from: int = 0
    # rule 10: when it last made progress (an ack, a resync begun or a chunk of it taken), or
    # -1 while disconnected (it can make none: it holds no writer back)
    progress_ms: int = -1

    def reset(self, state: str, match_index: int = 0, next_index: int = 0) -> None:
        self.state, self.match_index, self.next_index = state, match_index, next_index
        self.snapshot_index = 0
        self.inflight.clear()
        self.inflight_bytes = 0

    def probe(self) -> None:
        """Stop streaming (what was in flight may be lost); ``match_index`` stays:
        the follower still holds those entries durably."""
        self.state = PROBE
        self.inflight.clear()
        self.inflight_bytes = 0

    def acked(self) -> None:
        """Forget the frames ``match_index`` covers (rule 5)."""
        while self.inflight and self.inflight[0][0] <= self.match_index:
            self.inflight_bytes -= self.inflight.popleft()[1]

    def sent(self, last_index: int, size: int) -> None:
        self.inflight.append((last_index, size))
        self.inflight_bytes += size


class ShippingNode:
    def __init__(self, node_id: str, peers: list[str], *, epoch: int = 0, leader: str = "",
                 log: ShippingLog | None = None, led_epochs: list[int] | None = None,
                 window_entries: int = 50_000, window_bytes: int = 32 * 1024 * 1024,
                 max_batch_entries: int = 2048, sync_retry_ms: int = 300,
                 repl_backlog_bytes: int = 256 * 1024 * 1024, max_lag_bytes: int = 128 * 1024 * 1024,
                 lag_stall_ms: int = 5000, frame_bytes: int = 32 * 1024 * 1024) -> None:
        invariant(node_id not in peers, "a node is not its own peer")
        self.id = node_id
        self.peers = list(peers)
        self.epoch = epoch
        self.leader = leader
        self.log = log or ShippingLog()
        self.led_epochs = list(led_epochs or ([epoch] if leader == node_id else []))
        self.window_entries = window_entries
        self.window_bytes = window_bytes
        # rule 5: the most entry bytes one Append holds, unless one entry alone is more (the
        # driver's peer frame limit less room for the message's own fields)
        self.frame_bytes = frame_bytes
        self.max_batch_entries = max_batch_entries
        self.repl_backlog_bytes = repl_backlog_bytes
        self.max_lag_bytes = max_lag_bytes  # rule 10
        self.lag_stall_ms = lag_stall_ms
        self.role = LEADER if leader == node_id else FOLLOWER
        self.progress: dict[str, FollowerProgress] = {p: FollowerProgress() for p in self.peers}
        self.syncing = False            # follower: a SyncRequest is outstanding
        self.sync_sent_ms = -1          # follower: when it was sent (retried after _sync_wait_ms)
        self.sync_retry_ms = sync_retry_ms
        self._sync_retries = 0          # follower: SyncRequests sent again while one was outstanding
        self.now_ms = 0                 # the latest time a step/tick was given
        self.handing_over_to = ""       # leader: writes paused for this target
        self.handover_target_pending = False  # follower: we asked the leader to hand over
        # follower lag: (leader_last_index, received_ms) marks not yet applied
        self._lag_marks: list[tuple[int, int]] = []
        self.last_heard_ms = -1         # follower: last message from the leader
        self.receiving_ms = -1          # follower: when part of a frame from the leader last arrived
        self._last_tick_ms = -1         # when tick was last called (a later one may follow a stall)
        # leader lag: (first_index, appended_ms) of recent batches
        self._append_marks: list[tuple[int, int]] = []
        self.peer_epochs: dict[str, int] = {}

    # -- roles (the only places role changes) -----------------------------
    def become_leader(self, epoch: int) -> list[Effect]:
        """Take over at ``epoch`` (> every epoch this node has seen)."""
        invariant(epoch > self.epoch, f"promotion to epoch {epoch} not above {self.epoch}")
        self.role, self.epoch, self.leader = LEADER, epoch, self.id
        self.led_epochs = (self.led_epochs + [epoch])[-16:]
        self.progress = {p: FollowerProgress() for p in self.peers}
        self.syncing = False
        self.handover_target_pending = False
        self._append_marks.clear()
        effects: list[Effect] = [
            PersistMeta(epoch=epoch, leader=self.id, led_epochs=list(self.led_epochs)),
            RoleChanged(role=LEADER, epoch=epoch, leader=self.id),
        ]
        effects += self._broadcast_hello()
        return effects

    def become_follower(self, epoch: int, leader: str) -> list[Effect]:
        invariant(epoch >= self.epoch, "an epoch never goes back")
        was = self.role
        self.log.drop_backlog()  # rule 9: a follower's log starts at its snapshot
        self.role, self.epoch, self.leader = FOLLOWER, epoch, leader
        self.handing_over_to = ""
        self.syncing = False
        self._lag_marks.clear()
        effects: list[Effect] = [PersistMeta(epoch=epoch, leader=leader, led_epochs=list(self.led_epochs))]
        if was != FOLLOWER or leader:
            effects.append(RoleChanged(role=FOLLOWER, epoch=epoch, leader=leader))
        effects += self._request_sync()
        return effects

    def promote(self) -> list[Effect]:
        """Become leader with an epoch above every epoch seen (manual failover),
        the lowest such epoch that is this node's own (rule 8)."""
        return self.become_leader(self.own_epoch_above(max([self.epoch, *self.peer_epochs.values()])))

    def own_epoch_above(self, epoch: int) -> int:
        """The lowest epoch > ``epoch`` that rule 8 gives this node."""
        members = sorted([self.id, *self.peers])
        n, k = len(members), members.index(self.id)
        candidate = epoch + 1
        return candidate + (k - candidate) % n

    # -- epochs (rule 1) ---------------------------------------------------
    def _observe(self, sender: str, epoch: int, leader: str) -> tuple[bool, list[Effect]]:
        """Returns (accept, effects). Adopts a higher epoch; fences a lower one."""
        self.peer_epochs[sender] = max(epoch, self.peer_epochs.get(sender, 0))
        if epoch < self.epoch:
            return False, [Send(to=sender, msg=Fenced(sender=self.id, epoch=self.epoch, leader=self.leader))]
        if epoch > self.epoch:
            return True, self.become_follower(epoch, leader)
        if not self.leader and leader and self.role == FOLLOWER:
            self.leader = leader
            return True, [RoleChanged(role=FOLLOWER, epoch=epoch, leader=leader),
                          *self._request_sync()]
        return True, []

    # -- leader: writes (rule 2) -------------------------------------------
    def propose(self, cmds_list: list[list[list[bytes]]], now_ms: int,
                acks: list[int] | None = None) -> tuple[int, list[Effect]]:
        """Log one entry per element (each a list of commands); returns first index.

        An entry is ``[epoch, cmds]``, or ``[epoch, cmds, k]`` when its client
        waits for ``k`` replicas (``acks[i]``): the WAL then tells, after any
        restart, which discarded writes can have been acknowledged.
        """
        invariant(self.role == LEADER, "only the leader proposes")
        epoch = self.epoch
        if acks is None:
            entries = [[epoch, cmds] for cmds in cmds_list]
        else:
            entries = [[epoch, cmds] if not k else [epoch, cmds, k] for cmds, k in zip(cmds_list, acks)]
        first = self.log.last_index + 1
        packed = msgpack.packb(entries)
        self.log.append(entries, len(packed))
        count = len(entries)
        effects: list[Effect] = [PersistEntries(first_index=first, count=count, packed=packed)]
        marks = self._append_marks
        marks.append((first, now_ms))
        if len(marks) > 4096:
            del marks[:2048]
        prev_epoch = self.log.epoch_at(first - 1)
        last = self.log.last_index
        if len(packed) > self.frame_bytes:  # more than one frame holds: catch-up frames (rule 5)
            for peer, pr in self.progress.items():
                if pr.state == STREAM and pr.next_index == first:
                    effects += self._send_more(peer)
            return first, effects
        for peer, pr in self.progress.items():
            if pr.state == STREAM and pr.next_index == first and self._window_open(pr, last, len(packed)):
                effects.append(Send(to=peer, msg=Append(
                    sender=self.id, epoch=epoch, prev_index=first - 1, prev_epoch=prev_epoch,
                    count=count, entries=packed, leader_last_index=last)))
                pr.next_index = last + 1
                pr.sent(last, len(packed))
        return first, effects

    def _window_open(self, pr: FollowerProgress, index: int, size: int) -> bool:
        """Rule 5: may a frame of ``size`` bytes go to this follower now? ``index``: the
        frame's last index for a new batch, its first for catch-up (which may thus
        overshoot the entry window by one batch)."""
        return index - pr.match_index <= self.window_entries and (
            not pr.inflight_bytes or pr.inflight_bytes + size <= self.window_bytes)

    def _send_more(self, peer: str) -> list[Effect]:
        """Catch a streaming follower up, within its window (rule 5)."""
        pr = self.progress[peer]
        if pr.state == STREAM and pr.next_index <= self.log.base_index:
            # compacted past a streaming follower (a snapshot while it lagged): the entries
            # it needs next are gone, only a full resync can catch it up (found by sim/)
            self._begin_resync(pr)
            return [SendSnapshot(to=peer)]
        effects: list[Effect] = []
        last = self.log.last_index
        while pr.state == STREAM and pr.next_index <= last:
            room = self.window_bytes - pr.inflight_bytes if pr.inflight_bytes else self.window_bytes
            room = min(room, self.frame_bytes)
            if room <= 0 or pr.next_index - pr.match_index > self.window_entries:
                break  # the next ack opens the window again
            count = self.log.count_within(pr.next_index, self.max_batch_entries, room)
            entries = self.log.slice(pr.next_index, count)
            packed = msgpack.packb(entries)
            end = pr.next_index + len(entries) - 1
            if not self._window_open(pr, pr.next_index, len(packed)):
                break  # the next ack opens the window again
            effects.append(Send(to=peer, msg=Append(
                sender=self.id, epoch=self.epoch, prev_index=pr.next_index - 1,
                prev_epoch=self.log.epoch_at(pr.next_index - 1), count=len(entries),
                entries=packed, leader_last_index=last)))
            pr.next_index = end + 1
            pr.sent(end, len(packed))
        return effects

    def compact(self, index: int) -> int:
        """A snapshot at ``index`` is durable: compact the log, keeping the backlog
        that rule 9 allows; returns the new log base (the driver may drop the WAL
        up to it, and no further)."""
        log = self.log
        keep_from = index
        if self.role == LEADER:
            for pr in self.progress.values():
                held = max(pr.match_index, pr.snapshot_index)
                if (pr.state == SNAPSHOT or (pr.state == PROBE and not held)
                        or not log.base_index <= held < keep_from):
                    continue  # a full resync, an unknown position, already behind the log, or no lag
                if log.stream_bytes(held, index) <= self.repl_backlog_bytes:
                    keep_from = held
        log.compact(index, keep_from)
        return log.base_index

    @property
    def full_resync_in_progress(self) -> bool:
        """A follower is being sent a snapshot: it will need the entries after the
        latest snapshot, so the driver takes no new snapshot (which would compact
        them away) until it is streaming again (rule 5)."""
        return self.role == LEADER and any(pr.state == SNAPSHOT for pr in self.progress.values())

    def ack_watermark(self, k: int) -> int:
        """Highest index held durably by at least ``k`` followers (rule 6)."""
        if k <= 0:
            return self.log.last_index
        matches = sorted((pr.match_index for pr in self.progress.values()), reverse=True)
        return matches[k - 1] if k <= len(matches) else 0

    def replicas_holding(self, index: int) -> int:
        return sum(1 for pr in self.progress.values() if pr.match_index >= index)

    def follower_lag_ms(self, peer: str, now_ms: int) -> int:
        """How long ago the oldest entry this follower lacks was written."""
        match = self.progress[peer].match_index
        if match >= self.log.last_index:
            return 0
        for first, at in self._append_marks:
            if first > match:
                return max(0, now_ms - at)
        return max(0, now_ms - self._append_marks[0][1]) if self._append_marks else 0

    # -- messages ------------------------------------------------------------
    def step(self, msg: ShippingMsg, now_ms: int) -> list[Effect]:
        self.now_ms = now_ms
        match msg:
            case Append():
                return self._on_append(msg, now_ms)
            case Ack():
                return self._on_ack(msg, now_ms)
            case Hello():
                _, effects = self._observe(msg.sender, msg.epoch, msg.leader)
                return effects
            case SyncRequest():
                return self._on_sync_request(msg)
            case Truncate():
                return self._on_truncate(msg)
            case Fenced():
                _, effects = self._observe(msg.sender, msg.epoch, msg.leader)
                return effects
            case HandOverRequest():
                return self._on_handover_request(msg)
            case HandOverReady():
                return self._on_handover_ready(msg)
            case SnapshotBegin() | SnapshotChunk():
                raise ValueError(f"{type(msg).__name__} is handled by the driver")
        raise ValueError(f"unexpected message {msg!r}")

    def _on_append(self, msg: Append, now_ms: int) -> list[Effect]:
        ok, effects = self._observe(msg.sender, msg.epoch, msg.sender)
        if not ok:
            return effects
        if self.role == LEADER:  # same epoch, two leaders: impossible by rule 1
            invariant(False, f"two leaders in epoch {msg.epoch}: {self.id} and {msg.sender}")
        if self.leader != msg.sender:
            self.leader = msg.sender
        self.last_heard_ms = now_ms
        log = self.log
        marks = self._lag_marks
        if msg.leader_last_index > log.last_index and (not marks or marks[-1][0] < msg.leader_last_index):
            marks.append((msg.leader_last_index, now_ms))
            if len(marks) > 1024:
                del marks[:512]
        packed, entries = msg.entries, None
        if msg.prev_index != log.last_index or log.epoch_at(msg.prev_index) != msg.prev_epoch:
            entries = self._overlap(msg)
            if entries is None:
                if not self.syncing or now_ms - self.sync_sent_ms >= self._sync_wait_ms():
                    effects += self._request_sync()
                return effects
            if not entries:
                return effects  # a resend of entries it holds: nothing new, nothing to ask
            packed = msgpack.packb(entries)
        self.syncing = False
        if msg.count:
            if entries is None:
                entries = msgpack.unpackb(packed)
                invariant(len(entries) == msg.count, "Append count does not match its entries")
            first = log.last_index + 1
            log.append(entries, len(packed))
            effects.append(PersistEntries(first_index=first, count=len(entries), packed=packed))
            effects.append(ApplyEntries(first_index=first, entries=entries))
            effects.append(Send(to=msg.sender, msg=Ack(sender=self.id, epoch=self.epoch,
                                                       durable_index=log.last_index)))
        while marks and marks[0][0] <= log.last_index:
            marks.pop(0)
        return effects

    def _overlap(self, msg: Append) -> list[list[Any]] | None:
        """Rule 3: for an Append that starts inside this log (``prev_index`` below its last
        entry, at or above its base) and matches it there, the entries after this log's
        last ([] when it holds them all); None for any other Append (a gap, a divergence).
        Log matching: the last entry both hold, compared by epoch, vouches for all before it."""
        log = self.log
        if (not msg.count or not log.base_index <= msg.prev_index < log.last_index
                or log.epoch_at(msg.prev_index) != msg.prev_epoch):
            return None
        entries: list[list[Any]] = msgpack.unpackb(msg.entries)
        invariant(len(entries) == msg.count, "Append count does not match its entries")
        held = min(log.last_index - msg.prev_index, len(entries))
        if log.epoch_at(msg.prev_index + held) != entries[held - 1][0]:
            return None  # it differs from this log there: the sync that follows truncates
        return entries[held:]

    def lag_ms(self, now_ms: int) -> int:
        """Follower: age of the oldest write the leader had that we lack."""
        return max(0, now_ms - self._lag_marks[0][1]) if self._lag_marks else 0

    def lag_ops(self) -> int:
        return max(0, self._lag_marks[-1][0] - self.log.last_index) if self._lag_marks else 0

    def _on_ack(self, msg: Ack, now_ms: int) -> list[Effect]:
        ok, effects = self._observe(msg.sender, msg.epoch, "")
        if not ok or self.role != LEADER or msg.sender not in self.progress:
            return effects
        pr = self.progress[msg.sender]
        pr.last_ack_ms = pr.progress_ms = now_ms
        if msg.durable_index > pr.match_index:
            pr.match_index = min(msg.durable_index, self.log.last_index)
            pr.acked()
            # rule 6: an ack for frames sent before a rewind (a SyncRequest that crossed them)
            # makes the resend of what it covers needless
            pr.next_index = max(pr.next_index, pr.match_index + 1)
        effects += self._send_more(msg.sender)
        effects += self._check_handover()
        return effects

    def _request_sync(self, full: bool = False) -> list[Effect]:
        if self.role != FOLLOWER or not self.leader or self.leader == self.id:
            return []
        self._sync_retries = self._sync_retries + 1 if self.syncing else 0
        self.syncing = True
        self.sync_sent_ms = self.now_ms
        return [Send(to=self.leader, msg=SyncRequest(
            sender=self.id, epoch=self.epoch, last_index=self.log.last_index,
            epoch_starts=self.log.epoch_starts, full=full))]

    def _sync_wait_ms(self) -> int:
        """Rule 4: how long an outstanding SyncRequest is given before it is sent again (the
        silence before a first one, when none is outstanding)."""
        return self.sync_retry_ms << min(self._sync_retries, 4) if self.syncing else self.sync_retry_ms

    def _on_sync_request(self, msg: SyncRequest) -> list[Effect]:
        ok, effects = self._observe(msg.sender, msg.epoch, "")
        if not ok or msg.sender not in self.progress:
            return effects
        if self.role != LEADER:
            # Not the leader: tell the follower who is (Fenced carries it).
            return effects + [Send(to=msg.sender, msg=Fenced(sender=self.id, epoch=self.epoch, leader=self.leader))]
        pr = self.progress[msg.sender]
        log = self.log
        if msg.full or msg.last_index < log.base_index:
            self._begin_resync(pr)
            # a follower that cannot truncate below its own snapshot still holds the entries
            # up to the match point: the snapshot it gets must not take it back past them
            held = log.match_point(msg.epoch_starts, msg.last_index) if msg.last_index >= log.base_index else 0
            return effects + [SendSnapshot(to=msg.sender, min_index=held)]
        to_index = log.match_point(msg.epoch_starts, msg.last_index)
        if to_index < msg.last_index:
            pr.probe()
            return effects + [Send(to=msg.sender, msg=Truncate(sender=self.id, epoch=self.epoch, to_index=to_index))]
        pr.reset(STREAM, msg.last_index, msg.last_index + 1)
        if msg.last_index == log.last_index:  # caught up: a heartbeat confirms the position
            effects.append(Send(to=msg.sender, msg=self._heartbeat()))
        return effects + self._send_more(msg.sender) + self._check_handover()

    def _begin_resync(self, pr: FollowerProgress) -> None:
        pr.reset(SNAPSHOT)
        pr.resync_from = self.log.last_index
        pr.progress_ms = self.now_ms  # rule 10: a resync that begins is progress

    def snapshot_progress(self, peer: str, now_ms: int, index: int) -> None:
        """The driver streams ``peer`` the snapshot at ``index`` and the connection took
        another chunk of it: progress, and its lag counts from ``index`` (rule 10)."""
        pr = self.progress.get(peer)
        if self.role == LEADER and pr is not None and pr.state == SNAPSHOT:
            pr.progress_ms = now_ms
            pr.resync_from = max(pr.resync_from, min(index, self.log.last_index))

    def lagging_follower(self, now_ms: int) -> str:
        """Rule 10: a follower that holds writers back now (the first found), or ""."""
        if self.role != LEADER or not self.max_lag_bytes:
            return ""
        log = self.log
        last = log.last_index
        for peer, pr in self.progress.items():
            if pr.progress_ms < 0 or now_ms - pr.progress_ms > self.lag_stall_ms:
                continue  # disconnected, no progress yet (its position unknown), or none for too long
            # a follower back in PROBE after a connection's hiccup still acks what it reads and
            # still holds up to match_index: it counts (writers ran free while it probed, past
            # the backlog, into a full resync)
            held = pr.resync_from if pr.state == SNAPSHOT else max(pr.match_index, pr.snapshot_index)
            if held < last and log.stream_bytes(max(held, log.base_index), last) > self.max_lag_bytes:
                return peer
        return ""

    def log_over(self, max_log_bytes: int) -> bool:
        """Rule 11: whether this leader holds more than ``max_log_bytes`` of log in memory
        (its backlog and the entries after its snapshot; to within one batch)."""
        return self.role == LEADER and max_log_bytes > 0 and self.log_bytes > max_log_bytes

    @property
    def log_bytes(self) -> int:
        """Bytes of the log held in memory: the backlog and the entries after the snapshot."""
        return self.log.stream_bytes(self.log.base_index, self.log.last_index)

    def snapshot_sent(self, peer: str, index: int) -> list[Effect]:
        """The driver finished streaming a snapshot at ``index`` to ``peer``."""
        pr = self.progress.get(peer)
        if self.role != LEADER or pr is None or pr.state != SNAPSHOT:
            return []
        pr.reset(STREAM, 0, index + 1)
        pr.snapshot_index = index
        return self._send_more(peer)

    def _on_truncate(self, msg: Truncate) -> list[Effect]:
        ok, effects = self._observe(msg.sender, msg.epoch, msg.sender)
        if not ok or self.role != FOLLOWER:
            return effects
        log = self.log
        if msg.to_index < log.snapshot_index:
            return effects + self._request_sync(full=True)
        if msg.to_index < log.last_index:
            dropped = log.truncate_after(msg.to_index)
            own = [entry for entry in dropped if entry[0] in self.led_epochs]
            acked = sum(1 for entry in own if len(entry) < 3 or entry[2] < len(self.peers))
            effects.append(TruncateLog(to_index=msg.to_index, discarded=len(dropped),
                                       discarded_own=len(own), discarded_acked=acked))
        return effects + self._request_sync()

    def offer_snapshot(self, index: int, epoch_starts: list[list[int]]) -> tuple[bool, list[Effect]]:
        """A full resync's snapshot at ``index`` (with the leader's epoch history)
        begins to arrive: ``(install it?, effects)``.

        Not when this log already holds it: ``index`` at or above the log's
        base and within it, every index up to it agreeing with the leader's
        history. Such a snapshot (a duplicate, or one sent before the follower
        caught up by streaming) would take the log back past entries it holds
        and has acknowledged; the follower asks to sync instead, and anything
        after ``index`` that differs is truncated as usual (found by sim/)."""
        log = self.log
        if log.base_index <= index <= log.last_index and log.match_point(epoch_starts, index) == index:
            return False, self._request_sync()
        return True, []

    def snapshot_frame(self, now_ms: int) -> None:
        """Follower: a frame of a full resync arrived from the leader: it is answering, so
        no SyncRequest is retried meanwhile (one sent during a transfer reached the leader
        after it, and started a second, needless, full resync)."""
        self.last_heard_ms = now_ms

    def receiving(self, peer: str, now_ms: int) -> None:
        """Follower: part of a frame from ``peer`` arrived, the rest is on its way (the
        transport's ``on_receiving``). From the leader, that is the leader answering: no
        SyncRequest is sent again meanwhile (rule 4). A catch-up frame holds up to
        ``window_bytes`` (tens of MB under 64 KiB values) and can take longer than
        ``sync_retry_ms`` to arrive on a busy machine; each SyncRequest sent meanwhile had the
        leader pack and send its window again. Staleness (``last_heard_ms``) does not move:
        a frame still arriving is not data this follower holds."""
        if peer == self.leader and self.role == FOLLOWER:
            self.receiving_ms = now_ms

    def snapshot_installed(self, index: int, epoch: int, epoch_starts: list[list[int]]) -> list[Effect]:
        """The driver installed a snapshot at ``index``: the log restarts there."""
        self.log.reset(index, epoch, epoch_starts)
        self._lag_marks.clear()
        return self._request_sync()

    # -- connectivity and time ---------------------------------------------
    def peer_connected(self, peer: str) -> list[Effect]:
        effects: list[Effect] = [Send(to=peer, msg=self._hello())]
        if self.role == FOLLOWER and peer == self.leader:
            effects += self._request_sync()
        return effects

    def peer_disconnected(self, peer: str) -> list[Effect]:
        if self.role == LEADER and peer in self.progress:
            self.progress[peer].probe()
            self.progress[peer].progress_ms = -1  # rule 10: it cannot progress until it is back
        if self.role == FOLLOWER and peer == self.leader:
            self.syncing = False
        return []

    def tick(self, now_ms: int) -> list[Effect]:
        """One heartbeat: gossip epochs; the leader also confirms positions.

        A follower that has not heard its leader (or an answer to its
        SyncRequest) for ``sync_retry_ms`` asks again: a SyncRequest or its
        answer may have been lost with a connection. Not on the first tick
        after its own loop stalled that long (a fork, a snapshot restore, a
        starved CPU): what the leader sent meanwhile is still unread, and each
        needless SyncRequest had the leader send its window again behind the
        frames still queued (a send queue of 256 MiB, the connection closed,
        a full resync: seen under 64 KiB writes).
        """
        stalled = self._last_tick_ms >= 0 and now_ms - self._last_tick_ms >= self.sync_retry_ms
        self._last_tick_ms = now_ms
        self.now_ms = now_ms
        effects = self._broadcast_hello()
        if (self.role == FOLLOWER and self.leader and self.leader != self.id and not stalled
                and now_ms - max(self.last_heard_ms, self.sync_sent_ms, self.receiving_ms) >= self._sync_wait_ms()):
            effects += self._request_sync()
        if self.role == LEADER:
            heartbeat = self._heartbeat()
            for peer, pr in self.progress.items():
                if pr.state == STREAM and pr.next_index > self.log.last_index:
                    effects.append(Send(to=peer, msg=heartbeat))
        return effects

    def _heartbeat(self) -> Append:
        last = self.log.last_index
        return Append(sender=self.id, epoch=self.epoch, prev_index=last, prev_epoch=self.log.epoch_at(last),
                      count=0, entries=b"", leader_last_index=last)

    def _hello(self) -> Hello:
        return Hello(sender=self.id, epoch=self.epoch, leader=self.leader, last_index=self.log.last_index)

    def _broadcast_hello(self) -> list[Effect]:
        hello = self._hello()
        return [Send(to=p, msg=hello) for p in self.peers]

    # -- hand-over (rule 7) ----------------------------------------------------
    def request_handover(self) -> list[Effect]:
        """Failover target: ask the current leader to hand over to us."""
        if self.role == LEADER:
            return [HandOverDone(ok=False, reason="already the leader")]
        if not self.leader:
            return [HandOverDone(ok=False, reason="no known leader to hand over; use FORCE")]
        self.handover_target_pending = True
        return [Send(to=self.leader, msg=HandOverRequest(sender=self.id, epoch=self.epoch))]

    def _on_handover_request(self, msg: HandOverRequest) -> list[Effect]:
        ok, effects = self._observe(msg.sender, msg.epoch, "")
        if not ok:
            return effects
        if self.role != LEADER or msg.sender not in self.progress:
            return effects + [Send(to=msg.sender, msg=HandOverReady(
                sender=self.id, epoch=self.epoch, last_index=0, ok=False, reason=f"{self.id} is not the leader"))]
        self.handing_over_to = msg.sender
        return effects + self._check_handover()

    def _check_handover(self) -> list[Effect]:
        target = self.handing_over_to
        if not target or self.role != LEADER:
            return []
        if self.progress[target].match_index < self.log.last_index:
            return []
        return [Send(to=target, msg=HandOverReady(sender=self.id, epoch=self.epoch,
                                                  last_index=self.log.last_index, ok=True))]

    def cancel_handover(self) -> None:
        """Leader: the hand-over timed out; take writes again."""
        self.handing_over_to = ""

    def _on_handover_ready(self, msg: HandOverReady) -> list[Effect]:
        ok, effects = self._observe(msg.sender, msg.epoch, "")
        if not ok or not self.handover_target_pending:
            return effects
        self.handover_target_pending = False
        if not msg.ok:
            return effects + [HandOverDone(ok=False, reason=msg.reason)]
        if self.log.last_index < msg.last_index:
            return effects + [HandOverDone(ok=False, reason="target is missing entries the leader has")]
        return effects + self.promote() + [HandOverDone(ok=True, reason="")]

    @property
    def writes_paused(self) -> bool:
        return bool(self.handing_over_to)

    def status(self) -> dict[str, Any]:
        return {"role": self.role, "epoch": self.epoch, "leader": self.leader,
                "last_index": self.log.last_index}
