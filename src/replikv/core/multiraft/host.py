"""Many Raft groups on one node: message batching, quiescence and node liveness.

A sharded cluster (``--shards K``) runs K Raft groups, each on ``--replicas``
of the nodes; one node process hosts a replica of many groups. The Raft core
(core/raft/node.py) is the one every mode runs (the host only adds etcd's
``forget_leader`` call to it): ``GroupHost`` owns one ``RaftNode`` per
hosted group (every replica of every group on this node has the node's raft
id) and adds what CockroachDB's Store adds around etcd/raft:

- **One batch per peer per round** (messages.py). Every message a group sends
  leaves in the ``Batch`` for its destination node built by ``ready()``; an
  empty batch is the liveness ping, sent when nothing else went to that peer
  for ``heartbeat_ticks``.
- **Quiescence** (CockroachDB's "quiesced ranges"): a leader whose group has
  nothing in flight (every entry committed and applied, no proposal, read,
  membership change or leadership transfer pending, every live follower's
  match at the last index) stops ticking the group and sends ``Quiesce`` to
  its followers, who stop ticking it too if they hold exactly the leader's
  log and commit index, and otherwise answer with a wake request. An idle
  group therefore costs no message and no work; any message for a group
  (except late acknowledgements that leave a quiesced leader nothing to
  do), any proposal and any read wakes it.
- **Node liveness**: a peer not heard from (any batch) for
  ``liveness_timeout_ticks`` (default: the election timeout) is dead. Every
  quiesced group with a replica on a dead node wakes; a follower whose
  leader was on it forgets that leader (``RaftNode.forget_leader``, etcd's
  ForgetLeader, as CockroachDB does on node liveness), so it grants votes at
  once instead of ignoring them for an election timeout (leader stickiness,
  thesis §4.2.3), and one live member, picked by the group's number so new
  leaders spread, campaigns ``heartbeat_ticks`` later (by then the other
  members, whose last ping from the dead node came at most about one ping
  interval apart, have forgotten it too). A group therefore has a new leader
  about one liveness timeout plus one election round after its leader's node
  died; if the picked member's log is behind, the others campaign on their
  own timers, as in plain Raft. A peer heard from again, or
  seen with a new incarnation (it restarted), wakes the groups this node
  leads with a replica there, so the leader catches it up.

Why this is safe (the core's rules still decide everything; the host only
chooses when to tick and what to wake):
- Ticking less never breaks Raft safety, only liveness; the liveness rules
  above restore progress.
- Forgetting a leader whose node was silent for an election timeout keeps
  its lease safe (the argument is in ``RaftNode.forget_leader``).
- A quiesced leader's ticks stop, so its lease clock stops too: the lease
  must not be trusted across a quiescence. A read on a group awake for less
  than an election timeout is therefore never served from the lease
  (``read``): it takes the ReadIndex round, which asks a majority.

**One core call per group per round** (as the unsharded runner's one ``advance`` per loop
iteration): ``step``, ``propose`` and ``read`` only gather a group's inputs; the next ``ready``
(or ``tick``, or a batch carrying quiesce or wake requests, or one from a peer taken for dead or
restarted, whose handling acts on the groups) hands each group everything gathered, in arrival
order (messages, then proposals, then reads), in ONE ``RaftNode.advance``.
A leader whose acknowledgements arrive in two peers' batches and whose proposals arrive in the
same round thus sends each follower one AppendEntries carrying both the new entries and the
new commit index (the core's ``_notify_commit`` sees the entries' message), not a commit
notice per batch and then the entries; a follower answers it with one acknowledgement. Before
this, a round of a busy 3-group node cost each follower up to two AppendEntries and two
acknowledgements per group where the unsharded node's cost one (BENCHMARKS.md, session 18). The core sees the same
inputs in the same order, only in fewer calls, so its rules are untouched; effects still
reach ``Ready`` in the order the core produced them.

**Commit notices held to the next tick or the group's next message.** A leader whose commit
index advanced without new entries to send tells each follower in an empty AppendEntries
(``RaftNode._notify_commit``). The unsharded leader rarely sends one: its next proposals come in
the same loop iteration as the acknowledgements. A 3-group node's leader carries a third of
the writes, so a third of its AppendEntries were such notices (0.12 of 0.51 Raft messages
per SET with cluster clients, session 19), each costing a message, a follower step, an
acknowledgement and its step. The host holds a notice (an empty AppendEntries to a follower
whose progress is in REPLICATE, the leader's pipelining state, where nothing waits for its
answer) at most one per group and follower, the newest, and:
- drops it when the group's next AppendEntries to that follower leaves first: it carries
  the leader's commit index, which only grows in a term (a notice of an older term is stale);
- sends it just before any other later message of its group to that follower (a
  ReadIndex answer, a heartbeat), so per group and follower messages keep their order;
- sends every held notice at the next ``tick``, before the groups tick (before a quiesce
  request, which the follower only takes holding the leader's commit).
Holding a message is a delay and dropping it a loss, both of which Raft tolerates; a
follower in REPLICATE sees its commit index at most one tick late (what it applies and
serves to follower reads of no strong level), and no leader waits on a notice's answer.
A probe (PROBE state) or a snapshot never waits. Test:
``tests/unit/multiraft/test_host.py::test_commit_notices_*``.

Ordering contract of ``Ready`` (the durability rule of core/raft/effects.py,
carried over many groups): the driver first carries out every ``Persist`` of
every group (one WAL write and ONE fsync for all of them: persistence batched
across groups), then every other effect of each group in list order
(RestoreSnapshot, Apply, Reply, ReadReady), and only then sends the batches,
which may carry votes and acknowledgements that depend on what was persisted.
The groups are built without ``async_persist``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from replikv.core.invariant import invariant
from replikv.core.multiraft.messages import Batch, Quiesce, new_batch
from replikv.core.raft.effects import Effect, Send
from replikv.core.raft.messages import (AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse,
                                        InstallSnapshot, RaftMsg)
from replikv.core.raft.node import RaftNode, Role
from replikv.core.raft.progress import ProgressState

__all__ = ["GroupHost", "Ready", "creates_replica"]


def creates_replica(msg: RaftMsg, tombstone: int) -> bool:
    """Does ``msg``, for a group this node does not host, make the node create its replica (empty,
    with no voters of its own: the leader's log tells it the configuration), as CockroachDB
    creates replicas on demand? A leader's AppendEntries, InstallSnapshot or Heartbeat does,
    unless it predates this node's removal from the group at index ``tombstone`` (the index the
    message is at: the entry before its entries, the snapshot's, the commit a heartbeat carries).
    A heartbeat counts too: a leader whose first AppendEntries to a new learner was lost (the
    node was down or not yet connected) probes it with heartbeats only, and resends entries
    when one is answered (Raft §5.3); ignoring them left the learner never created."""
    if isinstance(msg, AppendEntries):
        index = msg.prev_log_index
    elif isinstance(msg, InstallSnapshot):
        index = msg.last_included_index
    elif isinstance(msg, Heartbeat):
        index = msg.commit
    else:
        return False
    return index >= tombstone

_ACKS = (AppendEntriesResponse, HeartbeatResponse)


@dataclass(slots=True)
class Ready:
    """What one round of a host asks of its driver (see the module's ordering contract)."""

    groups: list[tuple[int, list[Effect]]] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)


class GroupHost:
    """The Raft groups one node hosts. Invariants: every hosted RaftNode's id is
    ``node``; ``awake`` holds exactly the groups that are ticked; a group in
    ``awake`` has ``woke_at[group]`` <= ``now_ticks``."""

    def __init__(
        self,
        node: int,
        *,
        heartbeat_ticks: int,
        election_timeout_ticks: int,
        liveness_timeout_ticks: int | None = None,
        incarnation: int = 0,
        quiesce: bool = True,
    ) -> None:
        invariant(0 < heartbeat_ticks < election_timeout_ticks, "heartbeat below election timeout")
        self.node = node
        self.heartbeat_ticks = heartbeat_ticks
        self.election_timeout_ticks = election_timeout_ticks
        self.liveness_timeout_ticks = liveness_timeout_ticks or election_timeout_ticks
        self.incarnation = incarnation
        self.quiesce_enabled = quiesce
        self.now_ticks = 0
        self.groups: dict[int, RaftNode] = {}
        self.awake: set[int] = set()
        self.woke_at: dict[int, int] = {}
        self.peers: set[int] = set()  # nodes with a replica of one of our groups
        self.heard: dict[int, int] = {}  # peer -> tick last heard from (any batch)
        self.incarnations: dict[int, int] = {}
        self.dead: set[int] = set()
        self.sent_at: dict[int, int] = {}  # peer -> tick a batch last went to it
        self.stats = {"batches_sent": 0, "messages_sent": 0, "pings_sent": 0, "quiesced": 0,
                      "woken": 0, "peers_died": 0, "leaders_forgotten": 0,
                      "notices_held": 0, "notices_dropped": 0}
        self._msgs: dict[int, list[tuple[int, RaftMsg]]] = {}
        self._quiesce: dict[int, list[Quiesce]] = {}
        self._wake: dict[int, list[int]] = {}
        self._effects: list[tuple[int, list[Effect]]] = []
        self._notices: dict[tuple[int, int], AppendEntries] = {}  # (group, follower) -> held (module doc)
        # a round's inputs per group, handed to its core in one advance by _settle (module doc)
        self._inbox: dict[int, list[RaftMsg]] = {}
        self._proposals: dict[int, list[tuple[bytes, object, int | None, int | None]]] = {}
        self._reads: dict[int, list[tuple[object, bool]]] = {}
        self._peers_tick = -1
        self._campaign_at: dict[int, tuple[int, int]] = {}  # group -> (tick, term when its leader died)

    # -- groups ----------------------------------------------------------------------------------
    def add_group(self, group: int, raft: RaftNode) -> None:
        invariant(raft.id == self.node, "a hosted replica carries the node's raft id")
        invariant(group not in self.groups, lambda: f"group {group} hosted twice")
        self.groups[group] = raft
        self._wake_group(group)
        self._run(group, raft.start())
        self._refresh_peers()

    def remove_group(self, group: int) -> None:
        self.groups.pop(group, None)
        self._inbox.pop(group, None)  # what it was sent after it went: dropped, as if lost
        self._proposals.pop(group, None)
        self._reads.pop(group, None)
        for key in [k for k in self._notices if k[0] == group]:
            del self._notices[key]
        self.awake.discard(group)
        self.woke_at.pop(group, None)
        self._refresh_peers()

    def is_quiesced(self, group: int) -> bool:
        return group in self.groups and group not in self.awake

    # -- inputs ----------------------------------------------------------------------------------
    def tick(self) -> None:
        """One tick: the inputs gathered so far (``_settle``), then liveness, then every awake
        group's tick, then quiescence and pings."""
        self._settle()
        if self._notices:  # the held commit notices leave with this tick's batches, first (module doc)
            for (group, dst), notice in self._notices.items():
                self._msgs.setdefault(dst, []).append((group, notice))
            self._notices.clear()
        self.now_ticks += 1
        now = self.now_ticks
        if now - self._peers_tick >= self.election_timeout_ticks:
            self._refresh_peers()  # membership changes arrive through the groups' logs (rarely)
        for peer in self.peers:
            if peer not in self.dead and now - self.heard.get(peer, 0) >= self.liveness_timeout_ticks:
                self._peer_died(peer)
        for group, (due, term) in list(self._campaign_at.items()):
            if due <= now:
                del self._campaign_at[group]
                raft = self.groups.get(group)
                if raft is not None and raft.role is Role.FOLLOWER and raft.term == term:
                    self._run(group, raft.campaign())  # no election started since the leader died
        for group in sorted(self.awake):
            raft = self.groups[group]
            self._run(group, raft.tick())
            if self.quiesce_enabled and self._quiescable(raft):
                self._quiesce_leader(group, raft)
        for peer in self.peers:
            if (now - self.sent_at.get(peer, -self.heartbeat_ticks) >= self.heartbeat_ticks
                    and peer not in self._msgs and peer not in self._quiesce and peer not in self._wake):
                self._msgs[peer] = []  # the liveness ping (an empty batch)

    def step(self, batch: Batch) -> None:
        """A batch from a peer: liveness at once; each hosted group's messages gathered for the
        round's one ``advance`` (``_settle``). Quiesce and wake requests are answered after the
        messages that came before them (a batch carrying any settles the round first)."""
        invariant(batch.dst == self.node, lambda: f"batch for {batch.dst} stepped into {self.node}")
        src = batch.src
        if src in self.dead or self.incarnations.get(src, batch.incarnation) != batch.incarnation:
            self._settle()  # its revival or restart acts on the groups: after what came before
        self._heard_from(src, batch.incarnation)
        inbox = self._inbox
        groups = self.groups
        for group, msg in batch.msgs:
            if group in groups:
                msgs = inbox.get(group)
                if msgs is None:
                    inbox[group] = [msg]
                else:
                    msgs.append(msg)
        if batch.quiesce or batch.wake:
            self._settle()
        for q in batch.quiesce:
            self._quiesce_follower(batch.src, q)
        for group in batch.wake:
            if group in self.groups:
                self._wake_group(group)

    def propose(self, group: int, commands: Iterable[tuple[bytes, object, int | None, int | None]]) -> None:
        """Proposals (command, request id, client id, seq) for one group; wakes it. Handed to
        the core with the round's other inputs (``_settle``)."""
        invariant(group in self.groups, lambda: f"proposal for group {group}, not hosted")
        self._wake_group(group)
        self._proposals.setdefault(group, []).extend(commands)

    def read(self, group: int, reads: Iterable[tuple[object, bool]]) -> None:
        """ReadIndex reads (request id, lease) for one group; wakes it. A lease read on a
        group awake for less than an election timeout takes the ReadIndex round (module doc)."""
        invariant(group in self.groups, lambda: f"read for group {group}, not hosted")
        self._wake_group(group)
        lease_ok = self.now_ticks - self.woke_at[group] >= self.election_timeout_ticks
        self._reads.setdefault(group, []).extend((rid, lease and lease_ok) for rid, lease in reads)

    def call(self, group: int, effects: list[Effect]) -> None:
        """Carry the effects of a direct call into a group's core (campaign, compact,
        membership changes, transfer) through the host; wakes the group. The call ran before
        the round's gathered inputs reach the core, so its effects go first, as it ran."""
        self._wake_group(group)
        self._run(group, effects)

    def ready(self) -> Ready:
        """Everything produced since the last call (the gathered inputs handed to the cores
        first, ``_settle``): per-group effects and one batch per peer."""
        self._settle()
        out = Ready(groups=self._effects)
        self._effects = []
        msgs, quiesce, wake = self._msgs, self._quiesce, self._wake
        if not (msgs or quiesce or wake):
            return out
        # a round of a busy node: only messages (no quiesce or wake request), one batch per peer
        dsts = sorted(msgs) if not (quiesce or wake) else sorted(set(msgs) | set(quiesce) | set(wake))
        node, incarnation, now, sent_at = self.node, self.incarnation, self.now_ticks, self.sent_at
        batches = out.batches
        sent = pings = 0
        for dst in dsts:
            m = msgs.get(dst)
            b = new_batch(node, dst, incarnation, tuple(m) if m else (),
                          tuple(quiesce[dst]) if dst in quiesce else (), tuple(wake[dst]) if dst in wake else ())
            batches.append(b)
            sent_at[dst] = now
            if m:
                sent += len(m)
            elif b.is_ping:
                pings += 1
        stats = self.stats
        stats["batches_sent"] += len(dsts)
        stats["messages_sent"] += sent
        if pings:
            stats["pings_sent"] += pings
        msgs.clear()
        quiesce.clear()
        wake.clear()
        return out

    # -- internals -------------------------------------------------------------------------------
    def _settle(self) -> None:
        """Each group's gathered inputs in one ``RaftNode.advance``: messages in arrival order,
        then proposals, then reads (module doc). A quiesced leader hearing only late
        acknowledgements (of the heartbeats sent before it quiesced) stays quiesced unless
        they leave it something to do; any other input wakes the group."""
        inbox, proposals, reads = self._inbox, self._proposals, self._reads
        if not (inbox or proposals or reads):
            return
        self._inbox, self._proposals, self._reads = {}, {}, {}
        # a follower-only round has messages alone: its groups in arrival order, no merged list
        order = inbox if not (proposals or reads) else dict.fromkeys([*inbox, *proposals, *reads])
        for group in order:
            raft = self.groups.get(group)
            if raft is None:
                continue
            msgs = inbox.get(group, ())
            props = proposals.get(group, ())
            rs = reads.get(group, ())
            if props or rs or group in self.awake or not all(type(m) in _ACKS for m in msgs):
                self._wake_group(group)
                self._run(group, raft.advance(msgs=msgs, proposals=props, reads=rs))
                continue
            effects = raft.advance(msgs=msgs)
            if any(type(e) is Send for e in effects) or not self._quiescable(raft):
                self._wake_group(group)
            self._run(group, effects)

    def _run(self, group: int, effects: list[Effect]) -> None:
        rest: list[Effect] = []
        notices = self._notices
        for e in effects:
            if type(e) is Send:
                msg, dst = e.msg, e.to
                if type(msg) is AppendEntries:
                    if not msg.entries and self._replicating(group, dst):
                        if notices.pop((group, dst), None) is not None:
                            self.stats["notices_dropped"] += 1
                        notices[(group, dst)] = msg  # held: the newest per group and follower
                        self.stats["notices_held"] += 1
                        continue
                    if notices and notices.pop((group, dst), None) is not None:
                        self.stats["notices_dropped"] += 1  # this one carries the commit index
                elif notices:
                    held = notices.pop((group, dst), None)
                    if held is not None:  # per group and follower, messages keep their order
                        self._msgs.setdefault(dst, []).append((group, held))
                self._msgs.setdefault(dst, []).append((group, msg))
            else:
                rest.append(e)
        if rest:
            self._effects.append((group, rest))

    def _replicating(self, group: int, follower: int) -> bool:
        """Is ``follower`` in the REPLICATE state of ``group``'s leader here, so an empty
        AppendEntries to it is only a commit notice, which may wait (module doc)?"""
        raft = self.groups.get(group)
        if raft is None or raft.role is not Role.LEADER:
            return False
        pr = raft.progress.get(follower)
        return pr is not None and pr.state is ProgressState.REPLICATE

    def _wake_group(self, group: int) -> None:
        if group not in self.awake:
            self.awake.add(group)
            self.woke_at[group] = self.now_ticks
            self.stats["woken"] += 1

    def _refresh_peers(self) -> None:
        peers: set[int] = set()
        for raft in self.groups.values():
            peers |= raft.log.config().members
        peers.discard(self.node)
        for p in peers - self.peers:
            self.heard.setdefault(p, self.now_ticks)  # a new peer gets a full timeout to speak
        self.peers = peers
        self._peers_tick = self.now_ticks

    def _quiescable(self, raft: RaftNode) -> bool:
        """CockroachDB's shouldReplicaQuiesce, on the leader: nothing in flight, every live
        follower caught up to the last index."""
        if raft.role is not Role.LEADER or raft.lead_transferee is not None:
            return False
        log = raft.log
        last = log.last_index
        if not (log.applied == log.commit == last) or raft.pending_conf_index > log.commit:
            return False
        if raft.pending_proposals or raft.reads.pending or raft.reads.waiting_for_commit:
            return False
        progress = raft.progress
        for member in log.config().members:
            if member == self.node or member in self.dead:
                continue
            pr = progress.get(member)
            if pr is None or pr.match != last:
                return False
        return True

    def _quiesce_leader(self, group: int, raft: RaftNode) -> None:
        q = Quiesce(group=group, term=raft.term, last_index=raft.log.last_index, commit=raft.log.commit)
        for member in raft.log.config().members:
            if member != self.node and member not in self.dead:
                self._quiesce.setdefault(member, []).append(q)
        self.awake.discard(group)
        self.woke_at.pop(group, None)
        self.stats["quiesced"] += 1

    def _quiesce_follower(self, leader: int, q: Quiesce) -> None:
        raft = self.groups.get(q.group)
        if raft is None:
            return
        log = raft.log
        if (raft.role is Role.FOLLOWER and raft.term == q.term and raft.leader == leader
                and log.last_index == q.last_index and log.commit == q.commit == log.applied):
            if q.group in self.awake:
                self.awake.discard(q.group)
                self.woke_at.pop(q.group, None)
                self.stats["quiesced"] += 1
        else:
            self._wake.setdefault(leader, []).append(q.group)  # we differ: the leader stays awake

    def _heard_from(self, peer: int, incarnation: int) -> None:
        self.heard[peer] = self.now_ticks
        known = self.incarnations.get(peer)
        self.incarnations[peer] = incarnation
        if peer in self.dead:
            self.dead.discard(peer)
            self._peer_revived(peer)
        elif known is not None and known != incarnation:
            self._peer_died(peer)  # it restarted within the timeout: it forgot what it knew
            self.dead.discard(peer)
            self._peer_revived(peer)

    def _peer_died(self, peer: int) -> None:
        self.dead.add(peer)
        self.stats["peers_died"] += 1
        for group, raft in self.groups.items():
            if peer not in raft.log.config().members:
                continue
            self._wake_group(group)
            if raft.role is not Role.LEADER and raft.leader == peer:
                # one live member, chosen by the group's number so new leaders spread, campaigns
                # at once; the others only stop ignoring votes (module doc: liveness)
                live = sorted(m for m in raft.log.config().voters if m != peer and m not in self.dead)
                if live and live[(group * 0x9E3779B1 >> 7) % len(live)] == self.node:  # Fibonacci hash
                    self._campaign_at[group] = (self.now_ticks + self.heartbeat_ticks, raft.term)
                self.stats["leaders_forgotten"] += 1
                self._run(group, raft.forget_leader())

    def _peer_revived(self, peer: int) -> None:
        for group, raft in self.groups.items():
            if raft.role is Role.LEADER and peer in raft.log.config().members:
                self._wake_group(group)
