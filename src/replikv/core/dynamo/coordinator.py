"""The leaderless coordinator: the requests one node coordinates, in flight
(Dynamo §4.5-4.6; Cassandra's coordinator, consistency levels and
speculative retry).

The runtime applies a write to its own replica of the key first (it is
always one of the key's replicas: a node that is not forwards the command
to one) and then hands the coordinator the key states to replicate. Rules:

- **Levels.** A request at level ``n`` (ONE = 1, QUORUM = N // 2 + 1,
  ALL = N, or a number) succeeds once ``n`` of the key's N replicas hold the
  write / answered the read, the coordinator's own replica included. With
  R + W > N a read's replicas overlap every acknowledged write's.
- **Fail fast.** Before anything is applied, ``unavailable`` says whether
  the level can be reached with the replicas believed alive (plus stand-ins
  under a sloppy quorum); if not the request is refused at once, as
  Cassandra's UnavailableException, and nothing is written.
- **Hinted handoff.** A replica believed down gets its write through a
  stand-in (the next alive node on the ring after the N): ``Put`` with
  ``hint_for``. The stand-in's ack counts toward W only with
  ``sloppy_quorum`` (Dynamo's sloppy quorum: a weaker guarantee, R + W > N
  no longer implies overlap). A replica that was believed alive but does
  not acknowledge (it died with the write in flight, or it is too slow)
  gets a hint kept by the coordinator itself (``Hint``), as Cassandra's
  coordinator writes hints for replicas that time out: a write the level
  acknowledged still reaches every replica that comes back.
- **Whole states, taken late.** A write sent as a delta to replicas all
  believed alive needs its keys' whole states only if one of them asks
  (``PutNeed``) or does not acknowledge (a hint): the coordinator keeps the
  keys and takes their states from its replica (``blobs``) when first
  needed, rather than the ones the write left. That is sound because the
  replica's state of a key only grows (writes and joins; its context
  covers the write's dot from then on), so the state taken later holds the
  write's outcome or what supersedes it, and a join of it gives the hinted
  replica at least the write; the two ways a key's state leaves a replica
  (a cleanup's drop, a tombstone's collection) first call ``pin``, which
  takes the states of the writes still tracked for those keys (the ones
  the write left, or later). A write whose delta cannot go to every
  replica (a stand-in, a hint at once, no delta) takes them at once.
- **Timeouts.** A request that has not reached its level by its deadline
  ends with ``ok=False`` and the counts (for a write: it may still be
  applied: the coordinator's replica has it and replicas may still join it).
- **Reads** go to the R replicas that answered fastest lately (the
  coordinator's own replica first: it answers without a message). If an
  answer is late past the ``speculative_pct`` percentile of recent read
  latency, one more replica is asked (speculative retry), so one slow node
  does not set the p99; the late replica's estimate becomes at least the
  time it kept the read waiting, so the next reads ask it last (it recovers
  once it answers again). With probability ``read_repair_chance`` every
  replica is asked, so replicas no client read from are repaired too.
  Answers after a read completed come out as ``LateAnswer`` (the runtime
  repairs those replicas in the background). A replica's answer is a state
  per key asked, in order; one that announced ``FEATURE_GET_PARTS`` may
  send it as several ``GetReply`` parts (``messages.py``): the parts are
  joined in order, and the replica has answered once they hold a state per
  key (no part alone is an answer: a key missing from it would read as
  "holds nothing").

Time arrives as integer microseconds (``now_us``); randomness from the
injected ``random.Random``; no I/O.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from replikv.core.dynamo.messages import Get, GetReply, One, Put, PutAck, States

__all__ = ["Coordinator", "Hint", "LateAnswer", "ReadDone", "Send", "WriteDone", "done_at_once", "level_count",
           "stand_ins_matter"]

Answer = tuple[tuple[bytes, bytes | None], ...]


def level_count(level: str, n: int) -> int:
    """How many of a key's ``n`` replicas a level needs: ``one``, ``quorum``,
    ``all`` or a number (more than ``n`` is more than can ever answer)."""
    if level == "one":
        return 1
    if level == "quorum":
        return n // 2 + 1
    if level == "all":
        return n
    return int(level)


def stand_ins_matter(node: str, replicas: Iterable[str], alive: Container[str]) -> bool:
    """Whether a write's stand-ins can change anything ``Coordinator.unavailable`` and
    ``Coordinator.write`` do: only a replica believed down (not ``node``, not in ``alive``) is
    stood in for, so when none is, passing no stand-ins gives the same effects (the runtime then
    skips the ring walk that finds them; ``tests/unit/dynamo/test_coordinator.py`` holds the two
    to each other)."""
    return any(r != node and r not in alive for r in replicas)


def done_at_once(node: str, replicas: Iterable[str], needed: int) -> bool:
    """Whether a write ``node`` coordinates is done as soon as it is applied here: its own
    replica's ack (it counts itself when it is one of ``replicas``) reaches ``needed``
    (``Coordinator.write`` then gives ``WriteDone`` with its first effects)."""
    return (1 if node in replicas else 0) >= needed


def _as_set(alive: Iterable[str]) -> Container[str]:
    """``alive`` as something ``in`` is cheap on: the runtime passes a set already (one per write)."""
    return alive if isinstance(alive, (set, frozenset)) else set(alive)


def needed_acks(level: str, replicas: int, pending: int = 0) -> int | None:
    """How many answers a request to ``replicas`` nodes needs, ``pending`` of them a membership
    change's new owners (membership.py, "Announce"): the level's count of the others plus one
    per pending replica; None when the level needs more replicas than the key has."""
    natural = replicas - pending
    needed = level_count(level, natural)
    return None if needed > natural else needed + pending


@dataclass(slots=True, kw_only=True)
class Send:
    """Send ``msg`` to ``to``. ``Send`` and ``WriteDone`` (and replica.py's ``Persist`` and
    ``Changed``) are not frozen, unlike the wire messages: a write makes them on the hot path, and
    a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (about twice
    the cost). The drivers only read an effect; nothing changes one after it is returned."""

    to: str
    msg: One


@dataclass(slots=True, kw_only=True)  # not frozen: see Send
class WriteDone:
    """``acks`` replicas (this one included) hold the write; ``needed`` were asked for."""

    req: int
    ok: bool
    acks: int
    needed: int
    hinted: int  # stand-ins holding it for a down replica


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadDone:
    """``answers``: each remote replica's states (the runtime adds its own)."""

    req: int
    ok: bool
    answered: int
    needed: int
    answers: dict[str, Answer]


@dataclass(frozen=True, slots=True, kw_only=True)
class LateAnswer:
    req: int
    peer: str
    states: Answer


@dataclass(frozen=True, slots=True, kw_only=True)
class Hint:
    """Keep ``states`` for ``node`` (a replica that did not acknowledge them) and deliver them later."""

    node: str
    states: States


Effect = Send | WriteDone | ReadDone | LateAnswer | Hint


@dataclass(slots=True)
class _Write:
    needed: int
    deadline_us: int
    acks: int
    pending: dict[str, str]  # node -> the replica it holds the write for (itself, or a down one)
    states: States | None  # None: not taken yet ("Whole states, taken late"), from ``keys``
    keys: tuple[bytes, ...] = ()
    hinted: int = 0
    done: bool = False  # WriteDone given; kept until every replica answered (or the deadline) for hints


@dataclass(slots=True)
class _Read:
    keys: tuple[bytes, ...]
    needed: int
    started_us: int
    deadline_us: int
    local: int  # 1 if the coordinator's replica answered
    asked: dict[str, int]  # node -> when asked (us)
    spare: list[str]  # replicas not asked yet, fastest first
    answers: dict[str, Answer] = field(default_factory=dict)
    done: bool = False
    parts: dict[str, list[tuple[bytes, bytes | None]]] | None = None  # node -> the parts of its answer so far


class Coordinator:
    """One node's in-flight leaderless requests; see the module docstring."""

    def __init__(
        self,
        node: str,
        *,
        timeout_us: int,
        rng: random.Random,
        sloppy_quorum: bool = False,
        read_repair_chance: float = 0.1,
        speculative_pct: float = 99.0,
        latency_window: int = 256,
        blobs: Callable[[bytes], bytes | None] | None = None,
    ) -> None:
        self.node = node
        self.blobs = blobs  # key -> this node's replica's whole state of it (None: not held)
        self.timeout_us = timeout_us
        self.rng = rng
        self.sloppy_quorum = sloppy_quorum
        self.read_repair_chance = read_repair_chance
        self.speculative_pct = speculative_pct
        self.writes: dict[int, _Write] = {}
        self.reads: dict[int, _Read] = {}
        self.recent_us: deque[int] = deque(maxlen=latency_window)  # read round trips, all replicas
        self.peer_us: dict[str, float] = {}  # node -> smoothed read round trip
        self.speculative_retries = 0
        self._threshold_us = timeout_us // 4  # speculative_threshold_us, recomputed every 32 samples
        self._samples = 0

    # ------------------------------------------------------------ levels

    def unavailable(
        self, replicas: Sequence[str], needed: int, alive: Iterable[str], stand_ins: Sequence[str] = ()
    ) -> int | None:
        """None if ``needed`` replicas can be reached; else how many can."""
        up = _as_set(alive)
        node = self.node
        reachable = 0
        for r in replicas:
            if r == node or r in up:
                reachable += 1
        if self.sloppy_quorum:
            down = len(replicas) - reachable
            reachable += min(down, sum(1 for s in stand_ins if s in up and s not in replicas))
        return None if reachable >= needed else reachable

    # ------------------------------------------------------------ writes

    def write(
        self,
        req: int,
        states: States | None,
        replicas: Sequence[str],
        needed: int,
        alive: Iterable[str],
        stand_ins: Sequence[str],
        now_us: int,
        delta: bytes = b"",
        keys: tuple[bytes, ...] = (),
    ) -> list[Effect]:
        """Replicate ``states`` (already applied here if this node is a replica). ``delta``: the
        write as a delta (``Put.delta``), sent to the replicas instead of the states; stand-ins
        and hints keep the whole states. ``states`` None: the states of ``keys``, taken from
        ``blobs`` when first needed ("Whole states, taken late")."""
        up = _as_set(alive)
        node = self.node
        everyone = True  # every replica believed alive (the common case: no stand-in, no hint at once)
        for r in replicas:
            if r != node and r not in up:
                everyone = False
                break
        spare = [s for s in stand_ins if s in up and s not in replicas and s != node] if not everyone else []
        if states is None and not (delta and everyone):
            states = self._take(keys)
        acks = 1 if node in replicas else 0  # its own replica's ack: ``done_at_once`` is this count >= needed
        pending: dict[str, str] = {}
        out: list[Effect] = []
        # one message for every replica (frozen, so shared): the same write to each
        put = Put(req=req, states=(), delta=delta) if delta else Put(req=req, states=states or ())
        for r in replicas:
            if r == node:
                continue
            if r in up:
                pending[r] = r
                out.append(Send(to=r, msg=put))
            elif spare:
                assert states is not None  # taken above: a replica is down
                s = spare.pop(0)
                pending[s] = r
                out.append(Send(to=s, msg=Put(req=req, states=states, hint_for=r)))
            else:
                assert states is not None
                out.append(Hint(node=r, states=states))  # no stand-in: this node holds the hint
        w = _Write(needed, now_us + self.timeout_us, acks, pending, states, keys)
        if acks >= needed:
            w.done = True
            out.append(WriteDone(req=req, ok=True, acks=acks, needed=needed, hinted=0))
        if pending:
            self.writes[req] = w
        return out

    def _take(self, keys: Iterable[bytes]) -> States:
        blobs = self.blobs
        assert blobs is not None, "states taken late need the replica's blobs"
        return tuple((k, b) for k in keys if (b := blobs(k)) is not None)

    def states_of(self, req: int) -> States:
        """The whole states the write ``req`` replicates (taken now if not yet); () if it is not
        tracked any more."""
        w = self.writes.get(req)
        if w is None:
            return ()
        if w.states is None:
            w.states = self._take(w.keys)
        return w.states

    def pin(self, keys: Container[bytes]) -> None:
        """``keys``' states are about to leave this node's replica: the writes still tracked for
        them take their states now ("Whole states, taken late")."""
        for w in self.writes.values():
            if w.states is None and any(k in keys for k in w.keys):
                w.states = self._take(w.keys)

    # ------------------------------------------------------------- reads

    def read(
        self,
        req: int,
        keys: tuple[bytes, ...],
        replicas: Sequence[str],
        needed: int,
        alive: Iterable[str],
        now_us: int,
    ) -> list[Effect]:
        """Ask the fastest replicas for ``keys``; this node's own answer (if it
        is a replica) is the runtime's and counts at once."""
        up = set(alive)
        local = 1 if self.node in replicas else 0
        others = sorted((r for r in replicas if r != self.node and r in up), key=self._estimate)
        want = max(0, needed - local)
        if self.read_repair_chance and self.rng.random() < self.read_repair_chance:
            want = len(others)
        asked, spare = others[:want], others[want:]
        rd = _Read(keys, needed, now_us, now_us + self.timeout_us, local, {}, spare)
        out: list[Effect] = []
        for r in asked:
            rd.asked[r] = now_us
            out.append(Send(to=r, msg=Get(req=req, keys=keys)))
        if local >= needed:
            rd.done = True
            out.append(ReadDone(req=req, ok=True, answered=local, needed=needed, answers={}))
            if not asked:
                return out
        self.reads[req] = rd
        return out

    def _estimate(self, peer: str) -> float:
        return self.peer_us.get(peer, 0.0)

    def speculative_threshold_us(self) -> int:
        """How long a read waits for an answer before asking one more replica:
        the ``speculative_pct`` percentile of recent round trips (at least
        0.5 ms; a quarter of the timeout until 20 were seen)."""
        return self._threshold_us

    def _record(self, took_us: int) -> None:
        self.recent_us.append(took_us)
        self._samples += 1
        if self._samples % 32 == 0 or self._samples == 20:
            ordered = sorted(self.recent_us)
            at = min(len(ordered) - 1, int(len(ordered) * self.speculative_pct / 100))
            self._threshold_us = max(500, ordered[at])

    # ------------------------------------------------------------- steps

    def step(self, peer: str, msg: PutAck | GetReply, now_us: int) -> list[Effect]:
        if isinstance(msg, PutAck):
            return self.acked(peer, msg.req, msg.ok)
        return self._get_reply(peer, msg, now_us)

    def acked(self, peer: str, req: int, ok: bool) -> list[Effect]:
        """``peer`` answered the write ``req`` (a ``PutAck``, alone or in a ``PutAcks``)."""
        out: list[Effect] = []
        if ok:
            self.acked_ok(peer, (req,), out)
            return out
        w = self.writes.get(req)
        if w is None or peer not in w.pending:
            return out
        target = w.pending.pop(peer)
        # whoever did not take it: this node keeps the hint for the replica
        out.append(Hint(node=target, states=self.states_of(req)))
        self._counted(req, w, out)
        return out

    def acked_ok(self, peer: str, reqs: Iterable[int], out: list[Effect]) -> None:
        """``peer`` took the writes ``reqs`` (the ok list of a ``PutAcks``): the effects of one
        ``acked(peer, req, True)`` per req, in order, appended to ``out``. An ok ack never makes a
        hint, so the only effects are ``WriteDone``s."""
        writes = self.writes
        sloppy = self.sloppy_quorum
        for req in reqs:
            w = writes.get(req)
            if w is None:
                continue
            target = w.pending.pop(peer, None)
            if target is None:
                continue
            if target == peer or sloppy:
                w.acks += 1
            else:
                w.hinted += 1
            self._counted(req, w, out)

    def _counted(self, req: int, w: _Write, out: list[Effect]) -> None:
        """After an answer: the write is done once its level is reached or no replica is left to
        answer; it is forgotten once every replica asked answered."""
        if not w.done and (w.acks >= w.needed or not w.pending):
            w.done = True
            out.append(WriteDone(req=req, ok=w.acks >= w.needed, acks=w.acks, needed=w.needed,
                                 hinted=w.hinted))
        if not w.pending:
            del self.writes[req]

    def _expire_write(self, req: int, w: _Write) -> list[Effect]:
        """The deadline: replicas that did not answer get hints; the write fails if not done."""
        states = self.states_of(req) if w.pending else ()
        del self.writes[req]
        out: list[Effect] = [Hint(node=target, states=states) for target in w.pending.values()]
        if not w.done:
            out.append(WriteDone(req=req, ok=False, acks=w.acks, needed=w.needed, hinted=w.hinted))
        return out

    def _get_reply(self, peer: str, msg: GetReply, now_us: int) -> list[Effect]:
        rd = self.reads.get(msg.req)
        if rd is None or peer not in rd.asked or peer in rd.answers:
            return []
        states = msg.states
        if len(states) < len(rd.keys):  # one part of its answer: the answer once they cover every key
            if rd.parts is None:
                rd.parts = {}
            got = rd.parts.setdefault(peer, [])
            got.extend(states)
            if len(got) < len(rd.keys):
                return []
            states = tuple(got)
            del rd.parts[peer]
        took = max(0, now_us - rd.asked[peer])
        self._record(took)
        old = self.peer_us.get(peer)
        self.peer_us[peer] = float(took) if old is None else 0.8 * old + 0.2 * took
        rd.answers[peer] = states
        out: list[Effect] = []
        if rd.done:
            out.append(LateAnswer(req=msg.req, peer=peer, states=states))
        elif rd.local + len(rd.answers) >= rd.needed:
            rd.done = True
            out.append(ReadDone(req=msg.req, ok=True, answered=rd.local + len(rd.answers), needed=rd.needed,
                                answers=dict(rd.answers)))
        if rd.done and len(rd.answers) == len(rd.asked):
            del self.reads[msg.req]
        return out

    def peer_down(self, peer: str, now_us: int) -> list[Effect]:
        """``peer`` is gone: reads waiting on it ask a spare replica now; the
        peer's pending write acks will not come (a write may fail early)."""
        out: list[Effect] = []
        for req, w in list(self.writes.items()):
            if peer in w.pending:
                out.extend(self.acked(peer, req, False))
        for req, rd in list(self.reads.items()):
            if peer in rd.asked and peer not in rd.answers:
                del rd.asked[peer]
                if rd.done:
                    if len(rd.answers) == len(rd.asked):
                        del self.reads[req]
                elif rd.spare:
                    out.extend(self._ask_spare(req, rd, now_us))
                elif not rd.asked or rd.local + len(rd.answers) + sum(
                        1 for p in rd.asked if p not in rd.answers) < rd.needed:
                    del self.reads[req]
                    out.append(self._read_failed(req, rd))
        return out

    def _ask_spare(self, req: int, rd: _Read, now_us: int) -> list[Effect]:
        peer = rd.spare.pop(0)
        rd.asked[peer] = now_us
        return [Send(to=peer, msg=Get(req=req, keys=rd.keys))]

    def _read_failed(self, req: int, rd: _Read) -> ReadDone:
        return ReadDone(req=req, ok=False, answered=rd.local + len(rd.answers), needed=rd.needed,
                        answers=dict(rd.answers))

    def tick(self, now_us: int) -> list[Effect]:
        """Deadlines and speculative retries."""
        out: list[Effect] = []
        for req, w in list(self.writes.items()):
            if now_us >= w.deadline_us:
                out.extend(self._expire_write(req, w))
        threshold = self.speculative_threshold_us()
        for req, rd in list(self.reads.items()):
            if now_us >= rd.deadline_us:
                del self.reads[req]
                if not rd.done:
                    out.append(self._read_failed(req, rd))
            elif not rd.done and rd.spare and now_us - rd.started_us >= threshold * (
                    1 + len(rd.asked) - max(0, rd.needed - rd.local)):
                self.speculative_retries += 1
                for peer, asked in rd.asked.items():  # the slow ones look slow now: asked last next time
                    if peer not in rd.answers:
                        self.peer_us[peer] = max(self.peer_us.get(peer, 0.0), float(now_us - asked))
                out.extend(self._ask_spare(req, rd, now_us))
        return out

    def next_deadline_us(self) -> int | None:
        """The earliest time ``tick`` has something to do, or None."""
        times = [w.deadline_us for w in self.writes.values()]
        threshold = self.speculative_threshold_us()
        for rd in self.reads.values():
            times.append(rd.deadline_us)
            if not rd.done and rd.spare:
                times.append(rd.started_us + threshold * (1 + len(rd.asked) - max(0, rd.needed - rd.local)))
        return min(times) if times else None

    def in_flight(self) -> dict[str, Any]:
        return {"writes": len(self.writes), "reads": len(self.reads)}
