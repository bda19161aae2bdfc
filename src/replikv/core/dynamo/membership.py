"""Leaderless membership changes: a versioned ring, pending ranges, and range
streaming, as Cassandra bootstraps and decommissions a node.

Sources: DeCandia et al., "Dynamo" (SOSP 2007) §4.8 "Membership and Failure
Detection" and §4.9 "Adding/Removing Storage Nodes"; Apache Cassandra
documentation, "Adding, replacing, moving and removing nodes" (bootstrap,
decommission) and "Dynamo" ("Gossip", "Ring membership"); CASSANDRA-2434
("range movements can violate consistency": stream from the replica that
loses the range).

Rules implemented:

- **The ring is versioned.** A ``RingState`` is ``(epoch, members, change)``:
  the members whose ring serves reads now, and at most one change in flight
  (``add`` or ``remove`` of one node) with the node that drives it (its
  ``coordinator``). States are ordered by ``(epoch, coordinator)``; a node
  adopts any state higher than its own, never a lower one, and persists it
  (``SaveRing``) before anything it sends afterwards (the runtime saves it
  in the meta file, fsynced). A fresh node starts from the member list of
  ``cluster.toml`` at epoch 0.
- **Gossip.** On connect each side sends its state (``RingMsg``); a receiver
  adopts a higher one, answers a lower one with its own, and acknowledges
  (``RingAck``) the epoch it holds. The change's coordinator resends its
  state to every node that has not acknowledged it every ``resend_ms``,
  the node a remove took out included: the switched state names it
  (``RingState.left``, kept in the meta file, not sent), so a coordinator
  restarted after the switch still tells it.
- **A change, step by step** (one at a time; ``begin`` refuses a second, an
  unknown node, a node already a member, and a removal that would leave
  fewer nodes than ``replicas``):
  1. *Announce*: epoch E+1 = the old members plus the pending change. While
     a change is pending, reads use the old ring (``read_replicas``); writes
     go to the union of the old and the new preference list (Cassandra's
     pending ranges, ``write_replicas``) and need the level's count of the
     old replicas *plus* one per pending replica, so a write acknowledged
     at QUORUM is held by a quorum of the new replica set as well.
  2. *Stream*: once every node of the old and the new ring acknowledged
     epoch E+1 (no node coordinates with a ring that ignores the pending
     replica any more), the coordinator asks each source to stream
     (``StreamStart``). ``stream_plan`` picks, per piece of the circle, the
     old replica that leaves the piece's replica set (CASSANDRA-2434): then
     every write acknowledged by a quorum of the old set is held by a quorum
     of the new one, whether the source had it or not. The source sends the
     key states of its ranges in bounded chunks (``Put`` with an ack, the
     ordinary join path: idempotent, so a chunk sent twice does no harm),
     one chunk in flight, and reports ``StreamDone``. A source that is down
     is replaced, after ``stream_timeout_ms``, by the next old replica of
     those ranges.
  3. *Read new*: when every stream is done, epoch E+2 = the same change
     with ``reads_new``: reads go to the new owners, which hold their
     ranges already; writes still go to both. Gossiped and
     acknowledged like the first.
  4. *Switch*: once every node acknowledged E+2, epoch E+3 = the new
     members, no change: writes go to the new owners only. Switching at
     once after the streams (no E+2) let a node still holding E+1 read
     from an old owner a write that a node holding the switch had sent to
     the new owners only (an ALL write missed by a later ONE read: the
     membership simulator, seed 50021 --nodes 4 --membership); here no node
     reads from the old owners once any writes to the new ones only.
  5. *Cleanup*: ``cleanup_delay_ms`` after a node switched (or restarted
     with a switched ring), it drops the keys it no longer replicates
     (Cassandra's ``nodetool cleanup``); the delay lets nodes that still
     hold the previous ring read from it. A write sent under the previous
     ring that reaches a node after the switch, for a key it no longer
     replicates, is passed on to the key's replicas (the replica does it).
- **Paxos during a change** (``paxos_replicas``): from the announce to the
  switch, a Paxos round's participants are the old replicas plus the
  pending ones, and it needs a quorum of the old plus one answer per
  pending replica (``paxos.paxos_quorum``), in E+1 and E+2 alike
  (Cassandra's CASSANDRA-8346, Paxos with pending ranges): such a quorum
  holds a quorum of the old set and one of the new, so it meets every
  round of a node on the previous epoch, on either epoch of the change,
  or on the switched ring. The streams carry the keys' acceptor states
  with their data (``Put.paxos``).
- A coordinator that restarts with a change pending starts again from
  step 1 (streams are idempotent); one that restarts after its switch sends
  the switched state again to every member that has not acknowledged it. Two changes begun at once on two nodes
  end with the higher ``(epoch, coordinator)``; the other is abandoned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from replikv.core.dynamo import messages as dm
from replikv.core.dynamo.ring import Range, Ring, token_of
from replikv.core.invariant import invariant

__all__ = ["Member", "MembershipError", "Membership", "RingChanged", "RingState", "SaveRing", "StreamTask",
           "stream_plan"]

CHANGES = ("", "add", "remove")


class MembershipError(ValueError):
    """A change the cluster cannot make now; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    id: str
    host: str
    port: int
    peer_port: int

    def wire(self) -> tuple[str, str, int, int]:
        return (self.id, self.host, self.port, self.peer_port)


PLACEMENT_CACHE_KEYS = 16_384  # write placements kept per state (``Membership.write_placement``)


@dataclass(frozen=True, slots=True, kw_only=True)
class RingState:
    """The ring ``members`` (sorted by id) at ``epoch``, and the change in flight, if any."""

    epoch: int
    members: tuple[Member, ...]
    change: str = ""  # "" | "add" | "remove"
    node: Member | None = None  # the node joining or leaving
    coordinator: str = ""  # who drives the change (and who made this epoch)
    reads_new: bool = False  # the change's streams are done: reads use the new ring, writes both
    # the node the remove that made this epoch took out: its coordinator tells it of the switch
    # too, after a restart as well (kept in the meta file, not sent: to_msg leaves it out)
    left: Member | None = None

    def __post_init__(self) -> None:
        invariant(not self.reads_new or bool(self.change), "only a change in flight reads from its new ring")
        invariant(self.left is None or not self.change, "only a switched ring names the node it removed")
        invariant(self.change in CHANGES, "a ring change is add, remove or none")
        invariant((self.change == "") == (self.node is None), "a change names its node, and only a change")
        invariant(list(self.members) == sorted(self.members, key=lambda m: m.id), "members sorted by id")

    @property
    def order(self) -> tuple[int, str]:
        return (self.epoch, self.coordinator)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.members)

    def next_members(self) -> tuple[Member, ...]:
        """The members once the change is made (``members`` if none)."""
        if self.change == "add":
            assert self.node is not None
            return tuple(sorted((*self.members, self.node), key=lambda m: m.id))
        if self.change == "remove":
            assert self.node is not None
            return tuple(m for m in self.members if m.id != self.node.id)
        return self.members

    def everyone(self) -> tuple[str, ...]:
        """Every node the change concerns: old and new members."""
        ids = set(self.ids)
        if self.node is not None:
            ids.add(self.node.id)
        return tuple(sorted(ids))

    def to_msg(self) -> dm.RingMsg:
        return dm.RingMsg(epoch=self.epoch, members=tuple(m.wire() for m in self.members), change=self.change,
                          node=self.node.wire() if self.node else (), coordinator=self.coordinator,
                          reads_new=self.reads_new)

    @staticmethod
    def from_msg(msg: dm.RingMsg) -> RingState:
        members = tuple(sorted((Member(id=a, host=b, port=c, peer_port=d) for a, b, c, d in msg.members),
                               key=lambda m: m.id))
        node = Member(id=msg.node[0], host=msg.node[1], port=msg.node[2], peer_port=msg.node[3]) if msg.node else None
        if msg.change not in CHANGES or (msg.change == "") != (node is None):
            raise MembershipError("a ring message with a malformed change")
        if msg.reads_new and not msg.change:
            raise MembershipError("a ring message reading from a new ring with no change")
        return RingState(epoch=msg.epoch, members=members, change=msg.change, node=node, coordinator=msg.coordinator,
                         reads_new=msg.reads_new)

    def to_json(self) -> dict[str, Any]:
        """For the meta file."""
        return {"epoch": self.epoch, "members": [list(m.wire()) for m in self.members], "change": self.change,
                "node": list(self.node.wire()) if self.node else [], "coordinator": self.coordinator,
                "reads_new": self.reads_new, "left": list(self.left.wire()) if self.left else []}

    @staticmethod
    def from_json(d: dict[str, Any]) -> RingState:
        state = RingState.from_msg(dm.RingMsg(epoch=int(d["epoch"]), members=tuple(tuple(m) for m in d["members"]),
                                              change=str(d["change"]), node=tuple(d["node"]),
                                              coordinator=str(d["coordinator"]),
                                              reads_new=bool(d.get("reads_new", False))))
        left = d.get("left") or []  # older meta files: none
        if not left:
            return state
        if state.change or len(left) != 4:
            raise MembershipError("a stored ring state names a removed node beside a change in flight")
        return replace(state, left=Member(id=str(left[0]), host=str(left[1]), port=int(left[2]),
                                          peer_port=int(left[3])))


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamTask:
    """``sources[0]`` streams ``ranges`` to ``target``; the rest may stand in for it, in order."""

    sources: tuple[str, ...]
    target: str
    ranges: tuple[Range, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SaveRing:
    """Persist ``state`` (fsynced) before any message sent with or after this effect leaves."""

    state: RingState


@dataclass(frozen=True, slots=True, kw_only=True)
class RingChanged:
    """This node now holds ``state``: placement, peers and Merkle groups follow it."""

    previous: RingState
    state: RingState


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    to: str
    msg: dm.One


def stream_plan(old: Ring, new: Ring) -> list[StreamTask]:
    """Who streams what to whom when the ring goes from ``old`` to ``new``.

    The circle is cut at the union of both rings' tokens; for each piece and
    each node that replicates it in ``new`` but not in ``old``, the source
    is an ``old`` replica that ``new`` drops (the replica whose place the
    target takes), else the first ``old`` replica. Pieces with the same
    source and target are one task (one stream: a source runs one stream
    per target), adjacent pieces one range; the stand-ins of a task are the
    ``old`` replicas of every one of its pieces.
    """
    cuts = sorted(set(old.tokens) | set(new.tokens))
    runs: dict[tuple[str, str], list[Range]] = {}
    stand_ins: dict[tuple[str, str], list[str]] = {}
    for i, end in enumerate(cuts):
        start = cuts[i - 1]
        before = old.preference_for_token(end)
        after = new.preference_for_token(end)
        gained = [n for n in after if n not in before]
        lost = [n for n in before if n not in after]
        for j, target in enumerate(gained):
            first = lost[j] if j < len(lost) else before[0]
            others = [n for n in before if n != first]
            if (first, target) in stand_ins:
                others = [n for n in stand_ins[(first, target)] if n in others]
            stand_ins[(first, target)] = others
            ranges = runs.setdefault((first, target), [])
            if ranges and ranges[-1].end == start:
                ranges[-1] = Range(start=ranges[-1].start, end=end)
            else:
                ranges.append(Range(start=start, end=end))
    return [StreamTask(sources=(s, *stand_ins[(s, t)]), target=t, ranges=tuple(r))
            for (s, t), r in sorted(runs.items())]


def _wire(task: StreamTask) -> tuple[tuple[int, int], ...]:
    """A task's ranges as ``StreamStart`` and ``StreamDone`` name them (a StreamDone ends only the
    stream of the same ranges: a stand-in may also run its own stream to the same target)."""
    return tuple((r.start, r.end) for r in task.ranges)


@dataclass(slots=True)
class _Stream:
    task: StreamTask
    source: int = 0  # index into task.sources
    sent_ms: int = 0


@dataclass(slots=True)
class _Driving:
    """The coordinator's progress through one change."""

    acked: set[str] = field(default_factory=set)
    streams: list[_Stream] | None = None  # None: still announcing
    resent_ms: int = 0


class Membership:
    """One node's view of the ring and, on the node driving a change, the change's progress."""

    def __init__(self, node: str, state: RingState, replicas: int, vnodes: int, *, resend_ms: int = 500,
                 stream_timeout_ms: int = 10_000, cleanup_delay_ms: int = 5_000) -> None:
        self.node = node
        self.replicas, self.vnodes = replicas, vnodes
        self.resend_ms, self.stream_timeout_ms, self.cleanup_delay_ms = resend_ms, stream_timeout_ms, cleanup_delay_ms
        self.state = state
        self.ring = Ring(state.ids, replicas, vnodes)
        self.next_ring: Ring | None = None
        self.driving: _Driving | None = None
        self.cleanup_due_ms: int | None = None  # drop keys not replicated here from then on
        self._set(state)
        if state.epoch and not state.change:
            self.cleanup_due_ms = -1  # a restart after a switch: clean up once the delay has passed
        if state.change and state.coordinator == node:
            self.driving = _Driving(acked={node})  # restarted mid-change: announce again
        elif state.epoch and state.coordinator == node:
            # restarted after its switch: resend it until every member acknowledged it (a node whose
            # copy was lost, and whose gossip on reconnect was lost too, kept the reads-new epoch for
            # good: the membership simulator, seed 31202 --nodes 4 --paxos --membership)
            self.driving = _Driving(acked={node})

    def _set(self, state: RingState) -> None:
        self.state = state
        # every placement follows from the state (its rings, its change, reads_new): a new state
        # forgets them all (``write_placement``)
        self._placements: dict[bytes, tuple[tuple[str, ...], int, bool]] = {}
        if tuple(self.ring.nodes) != state.ids:
            self.ring = Ring(state.ids, self.replicas, self.vnodes)
        self.next_ring = Ring([m.id for m in state.next_members()], self.replicas, self.vnodes) if state.change else None

    # -- placement ---------------------------------------------------------------------

    @property
    def changing(self) -> bool:
        return bool(self.state.change)

    def read_replicas(self, key: bytes) -> tuple[str, ...]:
        """Reads use the current ring until the streams are done (``reads_new``), then the new one."""
        if self.state.reads_new and self.next_ring is not None:
            return self.next_ring.preference_list(key)
        return self.ring.preference_list(key)

    def write_replicas(self, key: bytes) -> tuple[tuple[str, ...], int]:
        """The replicas a write goes to (old preference list, then the pending ones) and how
        many of them are pending: the write needs that many acks beyond its level's count."""
        old = self.ring.preference_list(key)
        if self.next_ring is None:
            return old, 0
        extra = tuple(n for n in self.next_ring.preference_list(key) if n not in old)
        return old + extra, len(extra)

    def write_placement(self, key: bytes) -> tuple[tuple[str, ...], int, bool]:
        """``write_replicas(key)`` and ``coordinates(key)`` from one token: the key hashed once and
        each ring looked up once (a client write needs all three; each method alone hashes the key).
        Equal to ``(*write_replicas(key), coordinates(key))`` in every state
        (tests/unit/dynamo/test_membership.py). Kept per key until the state changes (``_set``
        forgets them; at most ``PLACEMENT_CACHE_KEYS``, all forgotten when full): a key written
        again is not hashed again (the hash and the ring lookups were ~1 µs of a write)."""
        placements = self._placements
        hit = placements.get(key)
        if hit is not None:
            return hit
        token = token_of(key)
        old = self.ring.preference_for_token(token)
        nxt = self.next_ring
        if nxt is None:
            placed = old, 0, self.node in old
        else:
            new = nxt.preference_for_token(token)
            extra = tuple(n for n in new if n not in old)
            placed = old + extra, len(extra), self.node in (new if self.state.reads_new else old)
        if len(placements) >= PLACEMENT_CACHE_KEYS:
            placements.clear()
        placements[key] = placed
        return placed

    def paxos_replicas(self, key: bytes) -> tuple[tuple[str, ...], int]:
        """A Paxos round's participants for ``key`` and how many of them are pending: the write
        replicas, for the whole change (announce and ``reads_new``); the round needs
        ``paxos.paxos_quorum(len(participants), pending)`` of them (see the module docstring).
        Reads moved to the new owners alone let a node still on the announce (old set) and one
        reading new (new set) choose on disjoint quorums (the membership simulator, seed 30193
        --nodes 4 --paxos --membership). From ``write_placement``, kept per key: every acceptor
        step of a Prepare or Propose asks for it, and so does the round's proposer."""
        placed = self.write_placement(key)
        return placed[0], placed[1]

    def coordinates(self, key: bytes) -> bool:
        """Whether this node may coordinate a request for ``key``: it is one of its read
        replicas, so it holds the key's data. A pending owner has not had its ranges streamed
        yet: a write made from its empty state would carry a context claiming its own earlier
        dots of the key (a node that replicated the key before and cleaned it up), and erase
        them where it joins (the membership simulator, seed 50191 --nodes 4 --membership: an
        acknowledged SADD lost). Such a request is sent on to a read replica."""
        return self.node in self.read_replicas(key)

    def member(self, node: str) -> Member | None:
        candidates: list[Member] = list(self.state.members)
        if self.state.node is not None:
            candidates.append(self.state.node)
        return next((m for m in candidates if m.id == node), None)

    # -- a change ------------------------------------------------------------------------

    def begin(self, change: str, node: Member, now_ms: int) -> list[Any]:
        """Start adding or removing ``node``, driven by this node (refusals: ``MembershipError``)."""
        st = self.state
        if st.change:
            assert st.node is not None
            raise MembershipError(f"a change is already running: {st.change} {st.node.id} (epoch {st.epoch}, "
                                  f"driven by {st.coordinator}); wait for it to finish")
        if change == "add":
            if node.id in st.ids:
                raise MembershipError(f"{node.id} is already a member")
        elif change == "remove":
            if node.id not in st.ids:
                raise MembershipError(f"{node.id} is not a member (members: {', '.join(st.ids)})")
            if len(st.ids) - 1 < self.replicas:
                raise MembershipError(f"removing {node.id} would leave {len(st.ids) - 1} nodes, fewer than "
                                      f"--replicas {self.replicas}")
            node = next(m for m in st.members if m.id == node.id)
        else:
            raise MembershipError(f"unknown change {change!r}: add or remove")
        new = RingState(epoch=st.epoch + 1, members=st.members, change=change, node=node, coordinator=self.node)
        self.driving = _Driving(acked={self.node}, resent_ms=now_ms)
        return self._adopt(new, now_ms, broadcast=True)

    def _adopt(self, new: RingState, now_ms: int, *, broadcast: bool = False) -> list[Any]:
        previous = self.state
        self._set(new)
        out: list[Any] = [SaveRing(state=new), RingChanged(previous=previous, state=new)]
        if not new.change and previous.ids != new.ids:
            self.cleanup_due_ms = now_ms + self.cleanup_delay_ms
        if new.coordinator != self.node:
            self.driving = None  # another node's change (or a later one) took over
        if broadcast:
            msg = new.to_msg()
            out.extend(Send(to=n, msg=msg) for n in new.everyone() if n != self.node)
        return out

    def _everyone(self) -> set[str]:
        """Whose acknowledgement the current epoch needs: old and new members, and the node the
        switch removed (``RingState.left``: a coordinator restarted after its switch still tells it)."""
        ids = set(self.state.everyone())
        if self.state.left is not None:
            ids.add(self.state.left.id)
        return ids

    # -- messages ----------------------------------------------------------------------

    def on_connect(self, peer: str) -> list[Any]:
        return [Send(to=peer, msg=self.state.to_msg())]

    def step(self, peer: str, msg: dm.One, now_ms: int) -> list[Any]:
        out: list[Any] = []
        match msg:
            case dm.RingMsg():
                try:
                    theirs = RingState.from_msg(msg)
                except MembershipError:
                    return out
                if theirs.order > self.state.order:
                    out.extend(self._adopt(theirs, now_ms))
                elif theirs.order < self.state.order:
                    out.append(Send(to=peer, msg=self.state.to_msg()))
                if theirs.order == self.state.order:
                    out.append(Send(to=peer, msg=dm.RingAck(epoch=self.state.epoch, coordinator=self.state.coordinator)))
            case dm.RingAck():
                d = self.driving
                if d is not None and (msg.epoch, msg.coordinator) == self.state.order:
                    d.acked.add(peer)
                    out.extend(self._progress(now_ms))
            case dm.StreamDone():
                d = self.driving
                if d is not None and d.streams is not None and msg.epoch == self.state.epoch:
                    d.streams = [s for s in d.streams if not (s.task.target == msg.target and
                                                              s.task.sources[s.source] == peer and
                                                              _wire(s.task) == msg.ranges)]
                    out.extend(self._progress(now_ms))
        return out

    def _progress(self, now_ms: int) -> list[Any]:
        d = self.driving
        if d is None:
            return []
        if not self.state.change:  # switched: waiting only for acknowledgements (resent on tick)
            if d.acked >= set(self._everyone()):
                self.driving = None
            return []
        if d.streams is None:
            if not d.acked >= set(self.state.everyone()):
                return []
            assert self.next_ring is not None
            d.streams = [_Stream(task=t) for t in stream_plan(self.ring, self.next_ring)]
            return [self._stream_start(s, now_ms) for s in d.streams] + self._progress(now_ms)
        if d.streams:
            return []
        st = self.state
        if not st.reads_new:  # every stream acknowledged: read from the new owners, still write to both
            d.acked, d.resent_ms = {self.node}, now_ms
            return self._adopt(RingState(epoch=st.epoch + 1, members=st.members, change=st.change, node=st.node,
                                         coordinator=self.node, reads_new=True), now_ms, broadcast=True)
        if not d.acked >= set(st.everyone()):
            return []  # a node still reading from the old owners may miss a write to the new ones only
        # every node reads from the new owners: switch
        assert st.node is not None
        final = RingState(epoch=st.epoch + 1, members=st.next_members(), coordinator=self.node,
                          left=st.node if st.change == "remove" else None)
        d.acked, d.streams, d.resent_ms = {self.node}, None, now_ms
        out = self._adopt(final, now_ms)
        msg = final.to_msg()
        out.extend(Send(to=n, msg=msg) for n in sorted(self._everyone()) if n != self.node)
        return out

    def _stream_start(self, s: _Stream, now_ms: int) -> Send:
        s.sent_ms = now_ms
        return Send(to=s.task.sources[s.source], msg=dm.StreamStart(
            epoch=self.state.epoch, target=s.task.target, ranges=_wire(s.task)))

    def tick(self, now_ms: int, alive: Iterable[str]) -> list[Any]:
        """Resend the state to nodes that have not acknowledged it; restart or move stalled streams."""
        d = self.driving
        if d is None:
            return []
        up = set(alive) | {self.node}
        out: list[Any] = []
        if d.streams is None or (self.state.reads_new and not d.streams):  # announcing E+1 or E+2
            if now_ms - d.resent_ms >= self.resend_ms:
                d.resent_ms = now_ms
                msg = self.state.to_msg()
                out.extend(Send(to=n, msg=msg) for n in sorted(self._everyone() - d.acked) if n != self.node)
            return out
        for s in d.streams:
            if now_ms - s.sent_ms >= self.stream_timeout_ms:
                if s.task.sources[s.source] not in up:
                    nxt = next((i for i in range(len(s.task.sources)) if s.task.sources[i] in up), s.source)
                    s.source = nxt
                out.append(self._stream_start(s, now_ms))
        return out

    def status(self) -> dict[str, Any]:
        d = self.driving
        st = self.state
        return {"epoch": st.epoch, "members": list(st.ids), "change": st.change,
                "change_node": st.node.id if st.node else "", "coordinator": st.coordinator,
                "streams_left": len(d.streams) if d is not None and d.streams is not None else -1}

    def settled_with(self, node: str, present: bool) -> bool:
        """Whether no change is running and ``node`` is (``present``) or is not a member."""
        return not self.state.change and (node in self.state.ids) == present
