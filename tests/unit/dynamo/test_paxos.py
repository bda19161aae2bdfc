"""Single-decree Paxos per key (core/dynamo/paxos.py): scripted messages, no
network; then a seeded simulation with loss, duplication, reordering and
acceptor crashes whose committed history must form one chain."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack
import pytest

from replikv.core.crdt.hlc import Hlc
from replikv.core.dynamo.paxos import (
    ApplyCommit,
    Chosen,
    Contended,
    Decide,
    Done,
    Effect,
    Outcome,
    PaxosAcceptor,
    PaxosProposer,
    Persist,
    Phase,
    Preempted,
    Send,
    Timeout,
    acceptor_step,
    electorate,
)
from replikv.core.dynamo.paxos_messages import (
    ZERO_BALLOT,
    Accepted,
    AcceptorState,
    Ballot,
    Commit,
    CommitAck,
    Electorate,
    Nack,
    NackPhase,
    PaxosCodecError,
    PaxosMsg,
    Prepare,
    Promise,
    Proposal,
    Propose,
    decode,
    decode_state,
    encode,
    encode_state,
    state_without_provenance,
    without_provenance,
)
from replikv.core.invariant import InvariantViolation

K = b"k"
ABC = ("a", "b", "c")
REQUESTS = (Prepare, Propose, Commit)


def make_proposer(node: str = "a", *, req: int = 1, seed: int = 0, replicas: tuple[str, ...] = ABC,
                  **kw: int) -> PaxosProposer:
    return PaxosProposer(node=node, key=K, replicas=replicas, quorum=len(replicas) // 2 + 1,
                         rng=random.Random(seed), hlc=Hlc(), req=req, **kw)


def sends(effects: list[Effect]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


@dataclass
class Replica:
    """A node's acceptor, its data store (LWW by HLC) and its disk."""

    node: str
    acceptor: PaxosAcceptor = field(init=False)
    data: tuple[int, bytes | None] = (0, None)
    disk: dict[bytes, AcceptorState] = field(default_factory=dict)
    applied: list[tuple[Ballot, bytes | None]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    mine: Electorate | None = None  # the key's electorate as this acceptor checks it (None: unchecked)

    def __post_init__(self) -> None:
        self.acceptor = PaxosAcceptor(self.node)

    def carry(self, effects: list[Effect], crash_after_persist: bool = False) -> list[Send]:
        out: list[Send] = []
        for e in effects:
            match e:
                case Persist():
                    self.disk[e.key] = e.state
                    if crash_after_persist:  # the process dies after the fsync
                        self.restart()
                        return []
                case ApplyCommit():
                    self.applied.append((e.ballot, e.value))
                    hlc, value = self.data
                    if e.ballot.hlc == hlc and e.value != value:
                        self.conflicts.append(f"{self.node}: {value!r} and {e.value!r} at hlc {hlc}")
                    if e.ballot.hlc > hlc:
                        self.data = (e.ballot.hlc, e.value)
                case Send():
                    out.append(e)
                case _:
                    raise AssertionError(f"an acceptor emitted {e}")
        return out

    def handle(self, msg: PaxosMsg, crash_after_persist: bool = False) -> list[Send]:
        current = self.data if isinstance(msg, Prepare) else None
        return self.carry(self.acceptor.step(msg, current, self.mine), crash_after_persist)

    def restart(self) -> None:
        self.acceptor = PaxosAcceptor(self.node)
        for key, state in self.disk.items():
            self.acceptor.restore(key, decode_state(encode_state(state)))


class Net:
    """An in-memory network: FIFO unless told otherwise; ``down`` nodes drop
    what is sent to them."""

    def __init__(self, nodes: tuple[str, ...] = ABC) -> None:
        self.replicas = {n: Replica(n) for n in nodes}
        self.proposers: dict[tuple[str, int], PaxosProposer] = {}
        self.deciders: dict[tuple[str, int], Callable[[bytes | None], bytes | None]] = {}
        self.queue: list[tuple[str, PaxosMsg]] = []
        self.down: set[str] = set()
        self.log: list[tuple[str, PaxosMsg]] = []

    def add(self, p: PaxosProposer, decide: Callable[[bytes | None], bytes | None]) -> PaxosProposer:
        self.proposers[(p.node, p.req)] = p
        self.deciders[(p.node, p.req)] = decide
        return p

    def carry(self, p: PaxosProposer, effects: list[Effect]) -> None:
        for e in effects:
            match e:
                case Send():
                    self.queue.append((e.to, e.msg))
                case Decide():
                    self.carry(p, p.decided(self.deciders[(p.node, p.req)](e.current)))
                case Done():
                    assert p.outcome is e.outcome
                case _:
                    raise AssertionError(f"a proposer emitted {e}")

    def deliver(self, to: str, msg: PaxosMsg) -> None:
        self.log.append((to, msg))
        if to in self.down:
            return
        if isinstance(msg, REQUESTS):
            self.queue.extend((s.to, s.msg) for s in self.replicas[to].handle(msg))
        elif (to, msg.req) in self.proposers:
            p = self.proposers[(to, msg.req)]
            self.carry(p, p.step(msg))

    def flush(self) -> None:
        while self.queue:
            self.deliver(*self.queue.pop(0))

    def run(self, max_ticks: int = 2000) -> None:
        """Deliver and tick until every proposer is done."""
        for _ in range(max_ticks):
            self.flush()
            live = [p for p in self.proposers.values() if p.outcome is None]
            if not live:
                return
            for p in live:
                self.carry(p, p.tick())
        raise AssertionError("proposers did not finish")

    def applied(self) -> dict[Ballot, bytes | None]:
        chosen: dict[Ballot, bytes | None] = {}
        for r in self.replicas.values():
            for ballot, value in r.applied:
                assert chosen.setdefault(ballot, value) == value, f"two values at ballot {ballot}"
        return chosen


def append(suffix: bytes) -> Callable[[bytes | None], bytes | None]:
    return lambda cur: (cur or b"") + suffix


# ------------------------------------------------------------------ happy path

def test_happy_path_four_phases_effects_in_order() -> None:
    acceptors = {n: PaxosAcceptor(n) for n in ABC}
    p = make_proposer()
    out = p.start(physical_ms=1)
    assert [s.to for s in sends(out)] == list(ABC) and len(out) == 3
    prepare = out[0].msg
    assert isinstance(prepare, Prepare) and prepare.ballot.node == "a" and prepare.ballot.hlc == 1 << 16

    promises = []
    for n in ABC:
        eff = acceptors[n].step(prepare, (0, None))
        assert [type(e) for e in eff] == [Persist, Send]  # the promise is durable before it leaves
        assert eff[0] == Persist(key=K, state=AcceptorState(promised=prepare.ballot))
        promises.append(eff[1])
    assert p.step(promises[0].msg) == []
    assert p.step(promises[1].msg) == [Decide(key=K, current=None)]
    assert p.phase is Phase.DECIDE
    assert p.step(promises[2].msg) == []  # late promise: ignored

    out = p.decided(b"v")
    assert [(s.to, type(s.msg)) for s in sends(out)] == [(n, Propose) for n in ABC] and len(out) == 3
    propose = out[0].msg
    accepts = []
    for n in ABC:
        eff = acceptors[n].step(propose)
        assert [type(e) for e in eff] == [Persist, Send]
        assert isinstance(eff[1], Send) and isinstance(eff[1].msg, Accepted)
        accepts.append(eff[1].msg)
    assert p.step(accepts[0]) == []
    out = p.step(accepts[1])
    assert [(s.to, type(s.msg)) for s in sends(out)] == [(n, Commit) for n in ABC] and len(out) == 3
    commit = out[0].msg
    assert isinstance(commit, Commit) and commit.value == b"v" and commit.ballot == prepare.ballot

    acks = []
    for n in ABC:
        eff = acceptors[n].step(commit)
        assert [type(e) for e in eff] == [Persist, ApplyCommit, Send]
        assert eff[1] == ApplyCommit(key=K, ballot=prepare.ballot, value=b"v")
        assert acceptors[n].state(K) == AcceptorState(
            promised=prepare.ballot, accepted=None,
            committed=Proposal(ballot=prepare.ballot, value=b"v", origin=prepare.ballot, after=ZERO_BALLOT))
        acks.append(eff[2])
    assert p.step(acks[0].msg) == []
    out = p.step(acks[1].msg)
    chosen = Chosen(key=K, ballot=prepare.ballot, previous=None, value=b"v")
    assert out == [Done(outcome=chosen)] and p.outcome == chosen and chosen.changed
    assert p.step(acks[2].msg) == [] and p.tick() == []  # done: inert


def test_duplicate_requests_are_idempotent() -> None:
    r = PaxosAcceptor("a")
    b = Ballot(hlc=5, node="x")
    assert len(r.step(Prepare(req=1, sender="x", key=K, ballot=b), (0, None))) == 2
    again = r.step(Prepare(req=1, sender="x", key=K, ballot=b), (0, None))
    assert len(again) == 1 and isinstance(again[0].msg, Promise)  # nothing new to persist
    prop = Propose(req=1, sender="x", key=K, ballot=b, value=b"v")
    assert len(r.step(prop)) == 2
    again = r.step(prop)
    assert len(again) == 1 and isinstance(again[0].msg, Accepted)
    com = Commit(req=1, sender="x", key=K, ballot=b, value=b"v")
    assert len(r.step(com)) == 3
    again = r.step(com)
    assert len(again) == 1 and isinstance(again[0].msg, CommitAck)  # applied once


def test_network_happy_path_and_failed_cas_on_a_settled_quorum_is_answered_by_the_prepare() -> None:
    net = Net()
    p1 = net.add(make_proposer("a", req=1), lambda cur: b"x")
    net.carry(p1, p1.start(1))
    net.run()
    assert isinstance(p1.outcome, Chosen) and p1.outcome.value == b"x"

    # CAS expecting "nope" fails; every promise shows the same commit and data and nothing in
    # progress: answered after the prepare (Paxos v2), no propose, no commit.
    net.log.clear()
    p2 = net.add(make_proposer("b", req=1), lambda cur: b"y" if cur == b"nope" else cur)
    net.carry(p2, p2.start(2))
    net.run()
    assert p2.outcome == Chosen(key=K, ballot=p2.ballot, previous=b"x", value=b"x")
    assert not p2.outcome.changed and p2.rounds == 1
    assert {type(m) for _, m in net.log} == {Prepare, Promise}
    assert all(r.data == (p1.ballot.hlc, b"x") for r in net.replicas.values())  # p1's write stands
    promised = [r.acceptor.state(K).promised for r in net.replicas.values()]
    assert sum(b == p2.ballot for b in promised) >= 2  # a quorum promised: nothing below p2 is chosen later

    # A value chosen before the read is in every quorum: p3's change reaches a and b only (c down),
    # and a read on the quorum {b, c} (they disagree: a full round) must still return it.
    net.down.add("c")
    p3 = net.add(make_proposer("a", req=3), lambda cur: b"z")
    net.carry(p3, p3.start(3))
    net.run()
    net.down = {"a"}
    read = net.add(make_proposer("c", req=4), lambda cur: cur)
    net.carry(read, read.start(4))
    net.run()
    assert read.outcome == Chosen(key=K, ballot=read.ballot, previous=b"z", value=b"z")


def test_failed_cas_on_a_quorum_that_disagrees_proposes_the_current_value() -> None:
    net = Net()
    net.down.add("c")  # c misses the commit of x
    p1 = net.add(make_proposer("a", req=1), lambda cur: b"x")
    net.carry(p1, p1.start(1))
    net.run()
    net.down.clear()

    net.down.add("a")  # the quorum is {b, c}: b holds x's commit, c does not
    net.log.clear()
    p2 = net.add(make_proposer("b", req=1), lambda cur: b"y" if cur == b"nope" else cur)
    net.carry(p2, p2.start(2))
    net.run()
    assert p2.outcome == Chosen(key=K, ballot=p2.ballot, previous=b"x", value=b"x")
    proposals = [m for _, m in net.log if isinstance(m, Propose)]
    commits = [m for _, m in net.log if isinstance(m, Commit)]
    assert proposals and {m.value for m in proposals} == {b"x"}  # the full round, as CASSANDRA-12126's fix
    assert any(not m.noop and m.ballot == p1.ballot and m.value == b"x" for m in commits)  # c repaired
    assert any(m.noop and m.ballot == p2.ballot for m in commits)  # nothing changed: no data write
    assert net.replicas["c"].data == (p1.ballot.hlc, b"x")
    assert all(r.acceptor.state(K).accepted is None for r in net.replicas.values())


# ----------------------------------------------------------- competing rounds

def test_dueling_proposers_one_value_per_ballot_and_consistent_outcomes() -> None:
    net = Net()
    pa = net.add(make_proposer("a", req=1, seed=1), append(b"A"))
    pb = net.add(make_proposer("b", req=1, seed=2), append(b"B"))
    net.carry(pa, pa.start(1))
    net.carry(pb, pb.start(2))  # b's ballot is higher; its Prepare reaches every acceptor before a proposes
    net.flush()
    assert pa.phase is Phase.BACKOFF  # every acceptor refused a's proposal and none had accepted it
    assert isinstance(pb.outcome, Chosen)
    net.run()
    assert pb.outcome == Chosen(key=K, ballot=pb.ballot, previous=None, value=b"B")
    assert isinstance(pa.outcome, Chosen) and pa.rounds == 2
    assert (pa.outcome.previous, pa.outcome.value) == (b"B", b"BA")
    assert pa.outcome.ballot > pb.outcome.ballot
    assert sorted(net.applied().items()) == [(pb.ballot, b"B"), (pa.ballot, b"BA")]
    nacks = [m for _, m in net.log if isinstance(m, Nack)]
    assert nacks and all(not m.maybe_accepted and m.promised == pb.outcome.ballot for m in nacks)


def test_prepare_nack_backs_off_randomly_then_retries_higher() -> None:
    p = make_proposer("a", seed=7, backoff_ticks_max=8)
    first = sends(p.start(1))[0].msg
    high = Ballot(hlc=99 << 16, node="z")
    nack = Nack(req=1, sender="b", key=K, ballot=first.ballot, phase=NackPhase.PREPARE, promised=high)
    assert p.step(nack) == [] and p.phase is Phase.BACKOFF
    ticks = 0
    while True:
        ticks += 1
        out = p.tick()
        if out:
            break
    assert 1 <= ticks <= 8
    assert all(isinstance(s.msg, Prepare) and s.msg.ballot > high for s in sends(out)) and len(out) == 3


def test_accepted_but_uncommitted_proposal_is_completed_first() -> None:
    net = Net()
    old = Ballot(hlc=3 << 16, node="c")
    for n in ("a", "b"):  # c's proposal reached two acceptors, then c died
        net.replicas[n].handle(Prepare(req=9, sender="c", key=K, ballot=old))
        net.replicas[n].handle(Propose(req=9, sender="c", key=K, ballot=old, value=b"X"))
    net.down.add("c")
    decided: list[bytes | None] = []
    p = net.add(make_proposer("b", req=1),
                lambda cur: decided.append(cur) or (cur or b"") + b"+1")
    net.carry(p, p.start(5))
    net.run()
    proposals = [m for _, m in net.log if isinstance(m, Propose) and m.sender == "b"]
    assert [m.value for m in proposals[:2]] == [b"X", b"X"]  # X re-proposed with b's ballot first
    assert decided == [b"X"]  # only then the caller decides, on top of X
    assert isinstance(p.outcome, Chosen) and (p.outcome.previous, p.outcome.value) == (b"X", b"X+1")
    assert p.rounds == 2
    chain = [v for _, v in sorted(net.applied().items())]
    assert chain == [b"X", b"X+1"]


def test_every_commit_of_a_chosen_value_writes_the_version_of_the_ballot_that_decided_it() -> None:
    # c's X is accepted by b and c and committed at c only (c then dies); a's round finds it in
    # progress at b and finishes it with its own ballot. Every replica's data holds X as one
    # version, the one of c's ballot, not one per commit: two versions of one value would be
    # concurrent siblings that anti-entropy has to spread.
    net = Net()
    old = Ballot(hlc=3 << 16, node="c")
    for n in ("b", "c"):
        net.replicas[n].handle(Prepare(req=9, sender="c", key=K, ballot=old))
        net.replicas[n].handle(Propose(req=9, sender="c", key=K, ballot=old, value=b"X", origin=old))
    net.replicas["c"].handle(Commit(req=9, sender="c", key=K, ballot=old, value=b"X", origin=old,
                                    after=ZERO_BALLOT))
    net.down.add("c")
    p = net.add(make_proposer("a", req=1), lambda cur: cur)
    net.carry(p, p.start(5))
    net.run()
    finish = [m for _, m in net.log if isinstance(m, Commit) and m.value == b"X"]
    assert finish and all(m.ballot > old and m.origin == old for m in finish)  # a's ballot finished it
    assert p.outcome == Chosen(key=K, ballot=p.ballot, previous=b"X", value=b"X")
    net.down.clear()
    net.deliver("c", finish[0])
    for r in net.replicas.values():
        assert set(r.applied) == {(old, b"X")} and r.data == (old.hlc, b"X"), r.node


def test_older_commit_is_repaired_and_newest_commit_wins_over_stale_data() -> None:
    p = make_proposer("a")
    ballot = sends(p.start(100))[0].msg.ballot
    new = Proposal(ballot=Ballot(hlc=50 << 16, node="b"), value=b"new")
    old = Proposal(ballot=Ballot(hlc=20 << 16, node="b"), value=b"old")
    # a has the commit persisted but its ApplyCommit was lost (crash): data still "old".
    pa = Promise(req=1, sender="a", key=K, ballot=ballot, accepted=None, committed=new,
                 current_hlc=old.ballot.hlc, current=b"old")
    pc = Promise(req=1, sender="c", key=K, ballot=ballot, accepted=None, committed=old,
                 current_hlc=old.ballot.hlc, current=b"old")
    assert p.step(pa) == []
    out = p.step(pc)
    assert out == [Send(to="c", msg=Commit(req=1, sender="a", key=K, ballot=new.ballot, value=b"new", ack=False)),
                   Decide(key=K, current=b"new")]  # a repair is not waited for: quiet


def test_a_commit_repair_carries_the_provenance_so_the_stale_replica_writes_the_version_that_decided_it() -> None:
    """A repaired replica writes the chosen value as the version of the ballot that decided it,
    as every other commit of that value does: without ``origin`` it wrote a second version (at
    the commit's ballot), which the other replicas held as a concurrent sibling until
    anti-entropy (the simulator, seed 40006 --nodes 5 --paxos, with the thrifty Propose)."""
    p = make_proposer("a")
    ballot = sends(p.start(100))[0].msg.ballot
    origin = Ballot(hlc=40 << 16, node="c")  # decided by c's round; finished and committed by b's
    new = Proposal(ballot=Ballot(hlc=50 << 16, node="b"), value=b"new", origin=origin,
                   after=Ballot(hlc=20 << 16, node="b"))
    old = Proposal(ballot=Ballot(hlc=20 << 16, node="b"), value=b"old", origin=Ballot(hlc=20 << 16, node="b"),
                   after=ZERO_BALLOT)
    p.step(_promise("a", ballot, committed=new, current_hlc=origin.hlc, current=b"new"))
    [repair] = sends(p.step(_promise("c", ballot, committed=old, current_hlc=old.ballot.hlc, current=b"old")))
    assert repair.to == "c" and isinstance(repair.msg, Commit)
    assert (repair.msg.ballot, repair.msg.origin, repair.msg.after) == (new.ballot, origin, new.after)
    _, effects = acceptor_step("c", AcceptorState(promised=ballot, committed=old), repair.msg)
    assert [e for e in effects if isinstance(e, ApplyCommit)] == [ApplyCommit(key=K, ballot=origin, value=b"new")]


def test_data_hlc_at_or_above_the_ballot_starts_a_higher_round() -> None:
    p = make_proposer("a")
    ballot = sends(p.start(1))[0].msg.ballot
    plain = ballot.hlc + 1000  # a plain write from a node whose clock runs ahead
    for n in ("a", "b"):
        out = p.step(Promise(req=1, sender=n, key=K, ballot=ballot, accepted=None, committed=None,
                             current_hlc=plain, current=b"w"))
    assert [type(s.msg) for s in sends(out)] == [Prepare] * 3 and len(out) == 3
    assert out[0].msg.ballot.hlc > plain and p.rounds == 2


def test_commit_at_the_same_hlc_from_another_node_starts_a_higher_round() -> None:
    # Two nodes drew the same HLC; a's value was committed with it. Committing b's value
    # with that HLC too would leave the data store's last-writer-wins to a coin toss.
    p = make_proposer("b")
    ballot = sends(p.start(1))[0].msg.ballot
    theirs = Proposal(ballot=Ballot(hlc=ballot.hlc, node="a"), value=b"X")
    for n in ("a", "c"):
        out = p.step(Promise(req=1, sender=n, key=K, ballot=ballot, accepted=None, committed=theirs,
                             current_hlc=ballot.hlc, current=b"X"))
    assert not any(isinstance(e, Decide) for e in out)
    assert [type(s.msg) for s in sends(out)] == [Prepare] * 3 and out[0].msg.ballot.hlc > ballot.hlc


# ----------------------------------------------------------- refused proposals

def _to_propose(p: PaxosProposer, value: bytes | None, b_committed: Proposal | None = None) -> Ballot:
    """Bring ``p`` to propose ``value`` on an empty key; ``b_committed``: a commit b's promise shows
    and a's lacks (a no-op then takes the full round: the promises do not settle it)."""
    ballot = sends(p.start(1))[0].msg.ballot
    for n in ("a", "b"):
        p.step(Promise(req=1, sender=n, key=K, ballot=ballot, accepted=None,
                       committed=b_committed if n == "b" else None, current_hlc=0, current=None))
    assert p.phase is Phase.DECIDE
    p.decided(value)
    return ballot


def _preempted_after(p: PaxosProposer, accepted: tuple[str, ...]) -> tuple[Ballot, Ballot]:
    """Bring ``p`` to propose b"v" on an empty key, then have a higher ballot refuse it at every
    replica but ``accepted``: it backs off holding the proposal. Returns (its ballot, the higher)."""
    b = _to_propose(p, b"v")
    high = Ballot(hlc=b.hlc + 1, node="z")
    for n in ABC:
        reply: PaxosMsg = (Accepted(req=1, sender=n, key=K, ballot=b) if n in accepted else
                           Nack(req=1, sender=n, key=K, ballot=b, phase=NackPhase.PROPOSE, promised=high))
        assert p.step(reply) == []
    assert p.phase is Phase.BACKOFF and p.outcome is None  # not "may still be applied" at once
    return b, high


def _promises_showing(p: PaxosProposer, ballot: Ballot, commit: Proposal) -> list[Any]:
    """A quorum's promises (b and c) for ``ballot`` showing ``commit`` as the newest, its value
    the key's current one: what the proposer does with them."""
    p.step(_promise("b", ballot, committed=commit, current_hlc=commit.ballot.hlc, current=commit.value))
    return p.step(_promise("c", ballot, committed=commit, current_hlc=commit.ballot.hlc, current=commit.value))


def _next_prepare(p: PaxosProposer) -> Ballot:
    for _ in range(100):
        out = p.tick()
        if out:
            assert [type(s.msg) for s in sends(out)] == [Prepare] * 3
            return sends(out)[0].msg.ballot
    raise AssertionError("no new round")


def _promise(sender: str, ballot: Ballot, accepted: Proposal | None = None, committed: Proposal | None = None,
             current_hlc: int = 0, current: bytes | None = None) -> Promise:
    return Promise(req=1, sender=sender, key=K, ballot=ballot, accepted=accepted, committed=committed,
                   current_hlc=current_hlc, current=current)


def test_change_refused_after_one_acceptance_is_finished_by_its_next_round() -> None:
    # The race of test_paxos_cas_set_nx_and_serial_reads: the coordinator's own acceptor took
    # the change, the others had promised a rival's higher ballot. It used to end in Preempted
    # ("it may still be applied") at once; now the next round finds it in progress, finishes it,
    # and the caller is told it succeeded.
    p = make_proposer()
    b, _ = _preempted_after(p, accepted=("a",))
    b2 = _next_prepare(p)
    assert p.step(_promise("a", b2, accepted=Proposal(ballot=b, value=b"v", origin=b))) == []
    out = p.step(_promise("b", b2))
    assert [(type(s.msg), s.msg.ballot, getattr(s.msg, "value", None)) for s in sends(out)] == [(Propose, b2, b"v")] * 3
    assert not any(isinstance(e, Decide) for e in out)  # ours is finished, not decided again
    p.step(Accepted(req=1, sender="a", key=K, ballot=b2))
    out = p.step(Accepted(req=1, sender="b", key=K, ballot=b2))
    assert {replace(s.msg, ack=True) for s in sends(out)} == {  # decided at b: its provenance
        Commit(req=1, sender="a", key=K, ballot=b2, value=b"v", origin=b, after=ZERO_BALLOT)}
    p.step(CommitAck(req=1, sender="a", key=K, ballot=b2))
    out = p.step(CommitAck(req=1, sender="b", key=K, ballot=b2))
    assert out == [Done(outcome=Chosen(key=K, ballot=b2, previous=None, value=b"v"))]


@pytest.mark.parametrize("after", [None, Ballot(hlc=5, node="y")], ids=["an older node's", "a later instance's"])
def test_held_change_behind_a_newer_commit_is_preempted(after: Ballot | None) -> None:
    # The newest commit does not say it closed the instance ours was decided in (no provenance,
    # or it closed a later one): ours may have been chosen before it, or not; no replica can
    # tell any more, so the outcome stays unknown.
    p = make_proposer()
    b, high = _preempted_after(p, accepted=("a",))
    b2 = _next_prepare(p)
    theirs = Proposal(ballot=high, value=b"w", origin=None if after is None else high, after=after)
    out = _promises_showing(p, b2, theirs)
    assert out == [Done(outcome=Preempted(accepted=1, maybe_accepted=0))]


def test_held_change_finished_by_a_rival_round_is_reported_chosen() -> None:
    # The rival's round found ours in progress and finished it under its own ballot; its commit
    # says the value was decided at ours (origin): the caller's change was applied, once.
    p = make_proposer()
    b, high = _preempted_after(p, accepted=("a",))
    b2 = _next_prepare(p)
    theirs = Proposal(ballot=high, value=b"v", origin=b, after=ZERO_BALLOT)
    out = _promises_showing(p, b2, theirs)
    assert out == [Done(outcome=Chosen(key=K, ballot=high, previous=None, value=b"v"))]


def test_held_change_a_peer_committed_on_accept_is_reported_chosen() -> None:
    # Commit on accept: a peer committed ours at our own ballot, its committed Accepted was lost
    # and our resend was refused (a higher promise), so we hold the change. The next round's
    # promises show that commit, at the held ballot itself: the change was applied (seed 40135
    # --nodes 5 --paxos answered the CAS "failed": only a commit above the held ballot counted).
    p = make_proposer()
    b, _ = _preempted_after(p, accepted=("a",))
    b2 = _next_prepare(p)
    ours = Proposal(ballot=b, value=b"v", origin=b, after=ZERO_BALLOT)
    out = _promises_showing(p, b2, ours)
    assert out == [Done(outcome=Chosen(key=K, ballot=b, previous=None, value=b"v"))]


def test_held_change_whose_instance_was_closed_with_another_value_is_decided_again() -> None:
    # The rival's commit closed the instance ours was decided in (after: the same commit, none
    # here) with its own value: ours was not chosen, and is below a recorded commit for good. The
    # caller decides again on the rival's value (the CAS of the flaky test then fails cleanly).
    p = make_proposer()
    b, high = _preempted_after(p, accepted=("a",))
    b2 = _next_prepare(p)
    theirs = Proposal(ballot=high, value=b"w", origin=high, after=ZERO_BALLOT)
    out = _promises_showing(p, b2, theirs)
    assert out == [Decide(key=K, current=b"w")]
    # A failed CAS: now an ordinary no-op (the held proposal is dead), and the quorum agrees on
    # the rival's commit and data: answered by the prepare.
    out = p.decided(b"w")
    assert out == [Done(outcome=Chosen(key=K, ballot=b2, previous=b"w", value=b"w"))]


def test_held_change_nowhere_in_a_quorum_is_decided_again_and_closed_by_a_recorded_commit() -> None:
    # Nothing at or above our ballot in a quorum: ours was not chosen. The caller decides again;
    # even a no-op is committed as a recorded commit, so the held proposal can never be finished
    # after the caller's answer.
    p = make_proposer()
    _preempted_after(p, accepted=("a",))
    b2 = _next_prepare(p)
    p.step(_promise("b", b2))
    out = p.step(_promise("c", b2))
    assert out == [Decide(key=K, current=None)]
    p.decided(None)  # e.g. a SET XX on an absent key: nothing to change
    for n in ("b", "c"):
        out = p.step(Accepted(req=1, sender=n, key=K, ballot=b2))
    assert {replace(s.msg, ack=True) for s in sends(out)} == {
        Commit(req=1, sender="a", key=K, ballot=b2, value=None, noop=False, origin=b2, after=ZERO_BALLOT)}
    for n in ("b", "c"):
        out = p.step(CommitAck(req=1, sender=n, key=K, ballot=b2))
    assert out == [Done(outcome=Chosen(key=K, ballot=b2, previous=None, value=None))]


def test_held_change_that_runs_out_of_rounds_or_time_may_still_be_applied() -> None:
    p = make_proposer(max_rounds=2)
    _preempted_after(p, accepted=("a",))
    b2 = _next_prepare(p)
    p.step(Nack(req=1, sender="b", key=K, ballot=b2, phase=NackPhase.PREPARE,
                promised=Ballot(hlc=b2.hlc + 1, node="z")))
    out: list[Effect] = []
    while not out:
        out = p.tick()
    assert out == [Done(outcome=Preempted(accepted=1, maybe_accepted=0))]
    p = make_proposer(timeout_ticks=5)
    _preempted_after(p, accepted=("a",))
    _next_prepare(p)
    out = []
    while not out:
        out = p.tick()
    assert out == [Done(outcome=Timeout(phase=Phase.PREPARE, answered=0, needed=2, may_be_applied=True))]


def test_change_refused_by_all_without_acceptance_is_retried() -> None:
    p = make_proposer()
    b = _to_propose(p, b"v")
    high = Ballot(hlc=b.hlc + 1, node="z")
    for n in ABC:
        p.step(Nack(req=1, sender=n, key=K, ballot=b, phase=NackPhase.PROPOSE, promised=high))
    assert p.phase is Phase.BACKOFF and p.outcome is None


def test_change_refused_by_acceptor_that_may_have_accepted_is_held_and_retried() -> None:
    p = make_proposer()
    b = _to_propose(p, b"v")
    high = Ballot(hlc=b.hlc + 1, node="z")
    p.step(Nack(req=1, sender="a", key=K, ballot=b, phase=NackPhase.PROPOSE, promised=high,
                maybe_accepted=True))  # e.g. a duplicate Propose after the acceptor moved on
    p.step(Nack(req=1, sender="b", key=K, ballot=b, phase=NackPhase.PROPOSE, promised=high))
    assert p.outcome is None  # c has not answered: it may have accepted
    assert p.step(Nack(req=1, sender="c", key=K, ballot=b, phase=NackPhase.PROPOSE, promised=high)) == []
    assert p.phase is Phase.BACKOFF and p.outcome is None  # the next rounds settle it


def test_acceptor_says_maybe_accepted_only_when_it_cannot_prove_otherwise() -> None:
    b1, b2 = Ballot(hlc=1, node="a"), Ballot(hlc=2, node="b")
    s = AcceptorState(promised=b1, accepted=Proposal(ballot=b1, value=b"v"))
    s, _ = acceptor_step("r", s, Prepare(req=1, sender="b", key=K, ballot=b2), (0, None))
    _, out = acceptor_step("r", s, Propose(req=1, sender="a", key=K, ballot=b1, value=b"v"))
    assert isinstance(out[0], Send) and isinstance(out[0].msg, Nack) and out[0].msg.maybe_accepted
    fresh, _ = acceptor_step("r", AcceptorState(), Prepare(req=1, sender="b", key=K, ballot=b2), (0, None))
    _, out = acceptor_step("r", fresh, Propose(req=1, sender="a", key=K, ballot=b1, value=b"v"))
    assert isinstance(out[0], Send) and isinstance(out[0].msg, Nack) and not out[0].msg.maybe_accepted


def test_noop_refused_by_a_quorum_is_retried() -> None:
    p = make_proposer()
    b = _to_propose(p, None, b_committed=Proposal(ballot=Ballot(hlc=1, node="z"), value=None))  # a read
    high = Ballot(hlc=b.hlc + 1, node="z")
    p.step(Accepted(req=1, sender="a", key=K, ballot=b))
    p.step(Nack(req=1, sender="b", key=K, ballot=b, phase=NackPhase.PROPOSE, promised=high))
    assert p.phase is Phase.PROPOSE
    p.step(Nack(req=1, sender="c", key=K, ballot=b, phase=NackPhase.PROPOSE, promised=high))
    assert p.phase is Phase.BACKOFF


def test_rounds_are_bounded() -> None:
    p = make_proposer(max_rounds=2, backoff_ticks_max=1)
    for _ in range(2):
        b = sends(p.start(1) if p.phase is Phase.INIT else p.tick())[0].msg.ballot
        p.step(Nack(req=1, sender="b", key=K, ballot=b, phase=NackPhase.PREPARE,
                    promised=Ballot(hlc=b.hlc + 1, node="z")))
    assert p.tick() == [Done(outcome=Contended(rounds=2))]


# --------------------------------------------------------- faults and timeouts

def test_minority_dropping_messages_still_succeeds() -> None:
    net = Net()
    net.down.add("c")
    p = net.add(make_proposer("a", timeout_ticks=5), lambda cur: b"v")
    net.carry(p, p.start(1))
    net.run()
    assert isinstance(p.outcome, Chosen) and p.outcome.value == b"v"
    assert net.replicas["c"].data == (0, None)


def test_majority_down_times_out_with_counts() -> None:
    net = Net()
    net.down.update({"b", "c"})
    p = net.add(make_proposer("a", timeout_ticks=5, resend_ticks=2), lambda cur: b"v")
    net.carry(p, p.start(1))
    net.run()
    assert p.outcome == Timeout(phase=Phase.PREPARE, answered=1, needed=2, may_be_applied=False)
    resent = [to for to, m in net.log if isinstance(m, Prepare) and to != "a"]
    assert resent.count("b") > 1  # unanswered replicas were asked again


def test_a_proposal_goes_to_the_quorum_that_promised_and_the_commit_to_every_replica() -> None:
    net = Net()
    p = net.add(make_proposer("a", timeout_ticks=20, resend_ticks=2), lambda cur: b"v")
    net.carry(p, p.start(1))
    net.run()
    assert isinstance(p.outcome, Chosen) and p.outcome.value == b"v"
    assert sorted(to for to, m in net.log if isinstance(m, Propose)) == ["a", "b"]  # a and b promised first
    assert sorted(to for to, m in net.log if isinstance(m, Commit)) == ["a", "b", "c"]
    c = net.replicas["c"]
    assert c.data == (p.ballot.hlc, b"v")  # the commit wrote the value at c as well
    assert c.acceptor.state(K) == AcceptorState(promised=p.ballot, committed=Proposal(
        ballot=p.ballot, value=b"v", origin=p.ballot, after=ZERO_BALLOT))


def test_the_commit_asks_its_acks_of_the_replicas_that_accepted_and_is_quiet_to_the_rest() -> None:
    """A quorum of acks is still waited for (a QUORUM read after the reply meets the value), but
    only from the replicas that accepted: the third replica applies a quiet commit and sends no
    ack, which the proposer dropped (one remote message fewer on a 3-replica key)."""
    net = Net()
    p = net.add(make_proposer("a", timeout_ticks=20, resend_ticks=2), lambda cur: b"v")
    net.carry(p, p.start(1))
    net.run()
    assert isinstance(p.outcome, Chosen) and p.outcome.value == b"v"
    assert sorted((to, m.ack) for to, m in net.log if isinstance(m, Commit)) == [
        ("a", True), ("b", True), ("c", False)]
    assert sorted(m.sender for _, m in net.log if isinstance(m, CommitAck)) == ["a", "b"]
    assert net.replicas["c"].data == (p.ballot.hlc, b"v")  # applied all the same
    state = AcceptorState(promised=p.ballot)
    quiet = next(m for to, m in net.log if to == "c" and isinstance(m, Commit))
    for msg in (quiet, replace(quiet, noop=True)):  # a quiet commit, a no-op or a duplicate, is never acked
        new, effects = acceptor_step("c", state, msg)
        assert not any(isinstance(e, Send) for e in effects)
        assert acceptor_step("c", new, msg) == (new, [])


def test_a_commit_ack_lost_is_asked_again_of_every_replica_that_has_not_acked() -> None:
    """The acks of a quorum: when an accepting replica's ack does not come, the resend asks every
    replica that has not acked, the quiet one among them, and the round ends on their acks."""
    net = Net()
    p = net.add(make_proposer("a", timeout_ticks=20, resend_ticks=2), lambda cur: b"v")
    net.carry(p, p.start(1))
    while p.phase is not Phase.COMMIT:
        net.deliver(*net.queue.pop(0))
    net.down.add("b")  # b accepted; its commit and ack are lost from now on
    net.run()
    assert isinstance(p.outcome, Chosen)
    assert [(to, m.ack) for to, m in net.log if isinstance(m, Commit) and to == "c"] == [("c", False), ("c", True)]


def test_a_prepare_goes_to_the_first_quorum_of_the_order_and_a_resend_to_every_replica_that_has_not_promised() -> None:
    """Module docstring, 1.: with an ``order`` and resends the Prepare asks a quorum (any quorum's
    promises serve); c, last in the order, is asked only when the resend is due and b has not
    promised, and the round then ends on c's promise."""
    p = PaxosProposer(node="a", key=K, replicas=ABC, quorum=2, rng=random.Random(0), hlc=Hlc(), req=1,
                      timeout_ticks=20, resend_ticks=3, order=lambda ps: ["a", "b", "c"])
    assert [s.to for s in sends(p.start(1))] == ["a", "b"]
    acceptor = PaxosAcceptor("a")
    (promise,) = sends(acceptor.step(Prepare(req=1, sender="a", key=K, ballot=p.ballot), (0, None)))
    p.step(promise.msg)
    resent = [s.to for _ in range(3) for s in sends(p.tick())]
    assert resent == ["b", "c"]  # b lost it, c was never asked
    out = p.step(Promise(req=1, sender="c", key=K, ballot=p.ballot, accepted=None, committed=None,
                         current_hlc=0, current=None))
    assert [type(e) for e in out] == [Decide]
    unordered = make_proposer("a", timeout_ticks=20, resend_ticks=3)  # no order: every replica
    assert [s.to for s in sends(unordered.start(1))] == list(ABC)


def test_a_refused_proposal_goes_at_once_to_the_replicas_not_asked_yet() -> None:
    acceptors = {n: PaxosAcceptor(n) for n in ABC}
    p = make_proposer("a", timeout_ticks=20, resend_ticks=5)
    (prepare, *_) = [s.msg for s in sends(p.start(1))]
    out: list[Effect] = []
    for n in ("a", "b"):
        (reply,) = sends(acceptors[n].step(prepare, (0, None)))
        out = p.step(reply.msg)
    (decide,) = out
    assert isinstance(decide, Decide)
    proposes = sends(p.decided(b"v"))
    assert [s.to for s in proposes] == ["a", "b"]
    higher = Ballot(hlc=prepare.ballot.hlc + 1, node="z")
    out = p.step(Nack(req=p.req, sender="b", key=K, ballot=p.ballot, phase=NackPhase.PROPOSE, promised=higher))
    assert [(s.to, s.msg) for s in sends(out)] == [("c", proposes[0].msg)]  # before any tick
    p.step(Accepted(req=p.req, sender="a", key=K, ballot=p.ballot))
    commits = sends(p.step(Accepted(req=p.req, sender="c", key=K, ballot=p.ballot)))
    assert [s.to for s in commits] == list(ABC) and all(isinstance(s.msg, Commit) for s in commits)


def test_a_proposal_lost_on_its_way_to_the_quorum_is_resent_to_every_replica_that_has_not_answered() -> None:
    net = Net()
    p = net.add(make_proposer("a", timeout_ticks=20, resend_ticks=2), lambda cur: net.down.add("b") or b"v")
    net.carry(p, p.start(1))
    net.run()
    assert isinstance(p.outcome, Chosen) and p.outcome.value == b"v"
    proposed = [to for to, m in net.log if isinstance(m, Propose)]
    assert proposed[:2] == ["a", "b"] and sorted(proposed[2:]) == ["b", "c"]  # the resend
    assert net.replicas["c"].data == (p.ballot.hlc, b"v")


def test_majority_lost_while_proposing_times_out_and_may_be_applied() -> None:
    net = Net()
    p = net.add(make_proposer("a", timeout_ticks=5), lambda cur: net.down.update({"b", "c"}) or b"v")
    net.carry(p, p.start(1))
    net.run()
    assert p.outcome == Timeout(phase=Phase.PROPOSE, answered=1, needed=2, may_be_applied=True)


def test_quorum_must_be_a_majority() -> None:
    with pytest.raises(InvariantViolation):
        PaxosProposer(node="a", key=K, replicas=ABC, quorum=1, rng=random.Random(0), hlc=Hlc(), req=1)


# ------------------------------------------------------------------ acceptor

def test_acceptor_never_promises_or_accepts_below_its_promise() -> None:
    rng = random.Random(42)
    r = PaxosAcceptor("r")
    for _ in range(3000):
        before = r.state(K)
        b = Ballot(hlc=rng.randrange(20), node=rng.choice("xyz"))
        kind = rng.randrange(3)
        msg: PaxosMsg
        if kind == 0:
            msg = Prepare(req=1, sender="x", key=K, ballot=b)
        elif kind == 1:
            msg = Propose(req=1, sender="x", key=K, ballot=b, value=rng.choice([None, b"1", b"2"]))
        else:
            msg = Commit(req=1, sender="x", key=K, ballot=b, value=b"c")
        out = r.step(msg, (0, None))
        after = r.state(K)
        assert after.promised >= before.promised
        reply = out[-1]
        assert isinstance(reply, Send) and reply.to == "x"
        if isinstance(msg, (Prepare, Propose)):
            assert isinstance(reply.msg, Nack) == (b < before.promised)
            if b < before.promised:
                assert after == before and len(out) == 1
            else:
                assert after.promised == b
        if isinstance(msg, Propose) and b >= before.promised:
            assert after.accepted == Proposal(ballot=b, value=msg.value)
        persists = [i for i, e in enumerate(out) if isinstance(e, Persist)]
        assert (after != before) == bool(persists)
        assert all(i < len(out) - 1 for i in persists)  # persisted before the reply leaves


def test_acceptor_rejects_replies_and_prepare_without_current() -> None:
    r = PaxosAcceptor("r")
    b = Ballot(hlc=1, node="x")
    with pytest.raises(InvariantViolation):
        r.step(Accepted(req=1, sender="x", key=K, ballot=b))
    with pytest.raises(InvariantViolation):
        r.step(Prepare(req=1, sender="x", key=K, ballot=b))


def test_proposer_ignores_foreign_and_stale_replies() -> None:
    p = make_proposer()
    b = sends(p.start(1))[0].msg.ballot
    stale = Ballot(hlc=b.hlc - 1, node="a")
    for msg in (Promise(req=2, sender="b", key=K, ballot=b, accepted=None, committed=None,
                        current_hlc=0, current=None),
                Promise(req=1, sender="zz", key=K, ballot=b, accepted=None, committed=None,
                        current_hlc=0, current=None),
                Promise(req=1, sender="b", key=b"other", ballot=b, accepted=None, committed=None,
                        current_hlc=0, current=None),
                Promise(req=1, sender="b", key=K, ballot=stale, accepted=None, committed=None,
                        current_hlc=0, current=None)):
        assert p.step(msg) == []
    assert p.phase is Phase.PREPARE
    one = Promise(req=1, sender="b", key=K, ballot=b, accepted=None, committed=None, current_hlc=0,
                  current=None)
    assert p.step(one) == [] and p.step(one) == []  # a duplicate counts once


# ------------------------------------------------------------------ codec

B1 = Ballot(hlc=7, node="n1")
MESSAGES: list[PaxosMsg] = [
    Prepare(req=1, sender="a", key=b"k", ballot=B1),
    Promise(req=2, sender="b", key=b"", ballot=B1, accepted=Proposal(ballot=B1, value=None),
            committed=Proposal(ballot=B1, value=b"\x00v"), current_hlc=3, current=b"c"),
    Promise(req=2, sender="b", key=b"k", ballot=B1, accepted=None, committed=None, current_hlc=0,
            current=None),
    Propose(req=3, sender="c", key=b"k", ballot=B1, value=b"v"),
    Propose(req=3, sender="c", key=b"k", ballot=B1, value=None),
    Accepted(req=4, sender="a", key=b"k", ballot=B1),
    Commit(req=5, sender="a", key=b"k", ballot=B1, value=b"v"),
    CommitAck(req=6, sender="a", key=b"k", ballot=B1),
    Nack(req=7, sender="a", key=b"k", ballot=B1, phase=NackPhase.PROPOSE, promised=Ballot(hlc=9, node="z"),
         maybe_accepted=True),
    Nack(req=7, sender="a", key=b"k", ballot=B1, phase=NackPhase.PREPARE, promised=Ballot(hlc=9, node="z")),
    Prepare(req=1, sender="a", key=b"k", ballot=B1, electorate=Electorate(("a", "b", "c"), 2)),
    Propose(req=3, sender="c", key=b"k", ballot=B1, value=None, electorate=Electorate(("a", "b", "c", "d"), 3)),
    Nack(req=7, sender="a", key=b"k", ballot=B1, phase=NackPhase.PREPARE, promised=Ballot(hlc=0, node=""),
         fenced=True),
    # provenance (absent from an older node's messages, above)
    Propose(req=3, sender="c", key=b"k", ballot=B1, value=b"v", origin=Ballot(hlc=1, node="a")),
    Propose(req=3, sender="c", key=b"k", ballot=B1, value=b"v", origin=B1, electorate=Electorate(("a", "b", "c"), 2)),
    Commit(req=5, sender="a", key=b"k", ballot=B1, value=b"v", origin=B1, after=ZERO_BALLOT),
    Commit(req=5, sender="a", key=b"k", ballot=B1, value=None, noop=True, origin=B1, after=None),
    # a quiet commit (no ack asked), with or without provenance
    Commit(req=5, sender="a", key=b"k", ballot=B1, value=b"v", origin=B1, after=ZERO_BALLOT, ack=False),
    Commit(req=5, sender="a", key=b"k", ballot=B1, value=b"v", ack=False),
    Promise(req=2, sender="b", key=b"k", ballot=B1, accepted=Proposal(ballot=B1, value=b"v", origin=ZERO_BALLOT),
            committed=Proposal(ballot=B1, value=b"w", origin=B1, after=Ballot(hlc=1, node="z")),
            current_hlc=3, current=b"c"),
    # commit on accept: the Propose that asks for it, and the Accepted that says it was done
    Propose(req=3, sender="c", key=b"k", ballot=B1, value=b"v", origin=B1, electorate=Electorate(("a", "b", "c"), 2),
            commit=True, after=ZERO_BALLOT),
    Propose(req=3, sender="c", key=b"k", ballot=B1, value=None, origin=B1, electorate=Electorate(("a", "b", "c"), 2),
            commit=True, after=None, noop=True),
    Accepted(req=4, sender="a", key=b"k", ballot=B1, committed=True),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_codec_round_trip(msg: PaxosMsg) -> None:
    assert decode(encode(msg)) == msg


def test_state_codec_round_trip() -> None:
    for state in (AcceptorState(), AcceptorState(promised=B1, accepted=Proposal(ballot=B1, value=b"x"),
                                                 committed=Proposal(ballot=B1, value=None)),
                  AcceptorState(promised=B1, accepted=Proposal(ballot=B1, value=b"x", origin=Ballot(hlc=1, node="a")),
                                committed=Proposal(ballot=B1, value=None, origin=B1, after=ZERO_BALLOT))):
        assert decode_state(encode_state(state)) == state


def _pack(body: object) -> bytes:
    out: bytes = msgpack.packb(body, use_bin_type=True)
    return out


@pytest.mark.parametrize("frame", [
    b"", b"\xc1", b"\x93\x01", _pack([]), _pack({"a": 1}), _pack([99, 1, "a", b"k", [1, "n"]]),
    _pack([1, 1, "a", b"k"]),  # too short
    _pack([1, -1, "a", b"k", [1, "n"]]),  # negative req
    _pack([1, True, "a", b"k", [1, "n"]]),  # a bool is not an int
    _pack([1, 1, "", b"k", [1, "n"]]),  # empty sender
    _pack([1, 1, "a", "k", [1, "n"]]),  # key must be bytes
    _pack([1, 1, "a", b"k", [1]]),  # malformed ballot
    _pack([1, 1, "a", b"k", [1 << 63, "n"]]),  # hlc out of range
    _pack([3, 1, "a", b"k", [1, "n"], "v"]),  # value must be bytes or nil
    _pack([2, 1, "a", b"k", [1, "n"], [1, "n"], None, 0, None]),  # proposal without a value
    _pack([7, 1, "a", b"k", [1, "n"], 3, [2, "n"], False]),  # unknown nack phase
    _pack([7, 1, "a", b"k", [1, "n"], 2, [2, "n"], 1]),  # maybe_accepted not a bool
    _pack([7, 1, "a", b"k", [1, "n"], 2, [2, "n"], False, False]),  # fenced: true when present
    _pack([1, 1, "a", b"k", [1, "n"], [["b", "a"], 2]]),  # electorate members not sorted
    _pack([1, 1, "a", b"k", [1, "n"], [["a", "b", "c"], 1]]),  # electorate quorum not a majority
    _pack([1, 1, "a", b"k", [1, "n"], [[], 0]]),  # an empty electorate
    _pack([3, 1, "a", b"k", [1, "n"], b"v", [["a", 1], 2]]),  # a member not a string
    _pack([1, 1, "a", b"k", [1, "n"], [["a"], 1], 0]),  # too long
    _pack([5, 1, "a", b"k", [1, "n"], b"v", False, None, None, True]),  # a commit's ack: false when present
    _pack([4, 1, "a", b"k", [1, "n"], False]),  # an Accepted's committed: true when present
    _pack([3, 1, "a", b"k", [1, "n"], b"v", [["a", "b", "c"], 2], [1, "n"], None, 1]),  # noop not a bool
    _pack([3, 1, "a", b"k", [1, "n"], b"v", None, [1, "n"], None, False]),  # commit on accept: no electorate
    _pack([3, 1, "a", b"k", [1, "n"], b"v", [["a", "b", "c"], 2], None, None, False]),  # nor origin
])
def test_decode_rejects_garbage_with_a_typed_error(frame: bytes) -> None:
    with pytest.raises(PaxosCodecError):
        decode(frame)


def test_a_decoded_electorate_is_built_once_and_a_bad_one_is_refused_every_time() -> None:
    good = _pack([1, 1, "a", b"k", [1, "n"], [["a", "b", "c"], 2]])
    first, second = decode(good), decode(good)
    assert isinstance(first, Prepare) and isinstance(second, Prepare)
    assert first.electorate == Electorate(("a", "b", "c"), 2) and first.electorate is second.electorate
    for _ in range(2):  # the checks run on every frame that names an electorate not seen valid
        with pytest.raises(PaxosCodecError):
            decode(_pack([1, 1, "a", b"k", [1, "n"], [["a", "b", "c"], 1]]))
    assert electorate(("b", "c", "a")) is electorate(("b", "c", "a")) == electorate(["c", "a", "b"])
    assert electorate(("b", "c", "a")) == Electorate(("a", "b", "c"), 2)


def test_decode_rejects_random_bytes_only_with_a_typed_error() -> None:
    rng = random.Random(5)
    good = [encode(m) for m in MESSAGES]
    for _ in range(3000):
        frame = bytearray(rng.choice(good))
        for _ in range(rng.randrange(1, 4)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        try:
            decode(bytes(frame))
        except PaxosCodecError:
            pass
    with pytest.raises(PaxosCodecError):
        decode_state(_pack([[5, "a"], [6, "a", b"v"], None]))  # accepted above promised


# ------------------------------------------------------------------ simulation

@dataclass
class Client:
    node: str
    left: int = 4
    seen: bytes | None = None
    next_at: int = 0


@dataclass
class SimOp:
    client: int
    kind: str  # "cas" | "read"
    start: int
    expected: bytes | None
    new: bytes
    proposer: PaxosProposer
    end: int | None = None


def simulate(seed: int, commit_on_accept: bool = False) -> tuple[list[SimOp], list[bytes | None], dict[str, int]]:
    """Clients on random nodes run CAS (expecting the last value they saw) and
    SERIAL reads on one key over a network that drops, duplicates, delays
    and reorders; acceptors crash right after persisting now and then.
    Returns the ops, the committed chain and some counters."""
    rng = random.Random(seed)
    nodes = ("a", "b", "c") if rng.random() < 0.7 else ("a", "b", "c", "d", "e")
    quorum = len(nodes) // 2 + 1
    replicas = {n: Replica(n) for n in nodes}
    clocks = {n: Hlc() for n in nodes}
    skew = {n: rng.randrange(4) for n in nodes}
    coarse = rng.choice([1, 16])  # a coarse wall clock: equal HLCs on different nodes are common
    drop, dup, crash = rng.uniform(0, 0.25), rng.uniform(0, 0.1), rng.uniform(0, 0.03)
    in_flight: list[tuple[int, int, str, PaxosMsg]] = []  # (due tick, order, to, msg)
    proposers: dict[tuple[str, int], tuple[PaxosProposer, SimOp]] = {}
    ops: list[SimOp] = []
    clients = [Client(node=rng.choice(nodes), next_at=rng.randrange(3)) for _ in range(3)]
    next_req = 0
    now = 0
    counters = {"crashes": 0, "rounds": 0, "committed_on_accept": 0}
    if commit_on_accept:  # the acceptors check the electorate, which commit on accept needs
        for r in replicas.values():
            r.mine = electorate(nodes)

    def send(s: Send) -> None:
        counters["committed_on_accept"] += isinstance(s.msg, Accepted) and s.msg.committed
        if rng.random() < drop:
            return
        for _ in range(2 if rng.random() < dup else 1):
            in_flight.append((now + rng.randrange(1, 5), rng.randrange(1 << 30), s.to, s.msg))

    def carry(p: PaxosProposer, op: SimOp, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Send):
                send(e)
            elif isinstance(e, Decide):
                value = e.current if op.kind == "read" or e.current != op.expected else op.new
                carry(p, op, p.decided(value))
            elif isinstance(e, Done):
                op.end = now
                counters["rounds"] += p.rounds
                c = clients[op.client]
                if isinstance(e.outcome, Chosen):
                    c.seen = e.outcome.value
                c.left -= 1
                c.next_at = now + rng.randrange(3)

    for _ in range(4000):
        now += 1
        due = sorted(m for m in in_flight if m[0] <= now)
        in_flight[:] = [m for m in in_flight if m[0] > now]
        for _, _, to, msg in due:
            if isinstance(msg, REQUESTS):
                crashed = rng.random() < crash
                counters["crashes"] += crashed
                for s in replicas[to].handle(msg, crash_after_persist=crashed):
                    send(s)
            elif (to, msg.req) in proposers:
                p, op = proposers[(to, msg.req)]
                carry(p, op, p.step(msg))
        for i, c in enumerate(clients):
            busy = any(op.client == i and op.end is None for op in ops)
            if not busy and c.left > 0 and now >= c.next_at:
                node = c.node
                next_req += 1
                p = PaxosProposer(node=node, key=K, replicas=nodes, quorum=quorum,
                                  rng=random.Random(rng.random()), hlc=clocks[node], req=next_req, timeout_ticks=40, resend_ticks=4,
                                  backoff_ticks_max=8, max_rounds=12, commit_on_accept=commit_on_accept)
                kind = "cas" if rng.random() < 0.7 else "read"
                op = SimOp(client=i, kind=kind, start=now, expected=c.seen,
                           new=f"{i}.{c.left}@{seed}".encode(), proposer=p)
                ops.append(op)
                proposers[(node, next_req)] = (p, op)
                carry(p, op, p.start((now + skew[node]) // coarse))
        for p, op in list(proposers.values()):
            if p.outcome is None:
                carry(p, op, p.tick((now + skew[p.node]) // coarse))
        if all(c.left == 0 for c in clients) and all(op.end is not None for op in ops):
            break
    else:
        raise AssertionError(f"seed {seed}: clients did not finish")

    # The committed history: one value per ballot, in ballot order, consecutive repeats
    # (no-ops, completions) collapsed; different values never share an HLC.
    by_ballot: dict[Ballot, bytes | None] = {}
    for r in replicas.values():
        assert not r.conflicts, f"seed {seed}: {r.conflicts}"
        for ballot, value in r.applied:
            assert by_ballot.setdefault(ballot, value) == value, f"seed {seed}: two values at {ballot}"
    chain: list[bytes | None] = [None]
    last_hlc = -1
    for ballot, value in sorted(by_ballot.items()):
        if value != chain[-1]:
            assert ballot.hlc > last_hlc, f"seed {seed}: a change committed at a non-increasing HLC"
            assert value not in chain, f"seed {seed}: {value!r} committed twice"
            chain.append(value)
        last_hlc = ballot.hlc
    return ops, chain, counters


def check_linearizable(seed: int, ops: list[SimOp], chain: list[bytes | None]) -> dict[str, int]:
    expected_of = {op.new: op.expected for op in ops if op.kind == "cas"}
    for i, value in enumerate(chain[1:], start=1):
        # every committed change was a CAS that expected exactly the previous committed value
        assert value in expected_of and expected_of[value] == chain[i - 1], f"seed {seed}: chain broken at {i}"
    pos: dict[int, tuple[int, bool]] = {}  # op index -> (chain position, is a write)
    kinds = {"write": 0, "noop": 0, "uncertain": 0, "failed": 0}
    for idx, op in enumerate(ops):
        out: Outcome | None = op.proposer.outcome
        if isinstance(out, Chosen):
            assert out.value in chain, f"seed {seed}: a chosen value is not in the history"
            if out.changed:
                assert op.kind == "cas" and out.value == op.new and out.previous == op.expected
                pos[idx] = (chain.index(out.value), True)
                kinds["write"] += 1
            else:
                assert out.previous in chain
                pos[idx] = (chain.index(out.previous), False)
                kinds["noop"] += 1
        elif isinstance(out, Preempted) or (isinstance(out, Timeout) and out.may_be_applied):
            kinds["uncertain"] += 1
        else:
            assert isinstance(out, (Contended, Timeout))
            assert op.new not in chain, f"seed {seed}: a failed CAS was applied"
            kinds["failed"] += 1
    # Real-time order: an op that ended before another began is not placed after it.
    for i, (pi, _) in pos.items():
        for j, (pj, wj) in pos.items():
            a, b = ops[i], ops[j]
            assert a.end is not None
            if a.end < b.start:
                assert pi < pj if wj else pi <= pj, f"seed {seed}: op {i} ended before op {j} began"
    return kinds


def test_simulation_committed_history_is_one_linearizable_chain() -> None:
    totals = {"write": 0, "noop": 0, "uncertain": 0, "failed": 0, "crashes": 0, "retried": 0}
    for seed in range(300):
        ops, chain, counters = simulate(seed)
        for k, v in check_linearizable(seed, ops, chain).items():
            totals[k] += v
        totals["crashes"] += counters["crashes"]
        totals["retried"] += sum(op.proposer.rounds > 1 for op in ops)
    # the faults were real: contention, crashes and refused CASes all happened
    assert totals["write"] > 300 and totals["noop"] > 300, totals
    assert totals["retried"] > 50 and totals["crashes"] > 10, totals


# ------------------------------------------------------- a round fenced by its electorate

S_OLD = electorate(("a", "b", "x"))  # the key's replicas before a change that replaces x by y
S_NEW = electorate(("a", "b", "y"))


def test_electorate_is_sorted_with_the_quorum_of_its_pending_replicas() -> None:
    assert electorate(("x", "a", "b")) == Electorate(("a", "b", "x"), 2)
    assert electorate(("a", "b", "x", "y"), pending=1) == Electorate(("a", "b", "x", "y"), 3)
    with pytest.raises(InvariantViolation):
        Electorate(("b", "a"), 2)


def test_an_acceptor_refuses_a_prepare_or_propose_of_another_electorate_unchanged() -> None:
    promised = AcceptorState(promised=Ballot(hlc=5, node="a"))
    b = Ballot(hlc=9, node="a")
    for msg in (Prepare(req=1, sender="a", key=K, ballot=b, electorate=S_OLD),
                Propose(req=1, sender="a", key=K, ballot=b, value=b"v", electorate=S_OLD)):
        state, out = acceptor_step("b", promised, msg, (0, None), S_NEW)
        assert state == promised, "a fenced request changes nothing"
        [reply] = sends(out)
        assert isinstance(reply.msg, Nack) and reply.msg.fenced and reply.msg.promised == promised.promised
        # the same request where the electorates agree, or where either is unknown, is obeyed
        for mine, named in ((S_OLD, S_OLD), (None, S_OLD), (S_NEW, None)):
            state, _ = acceptor_step("b", promised, replace(msg, electorate=named), (0, None), mine)
            assert state.promised == b


def test_a_fenced_propose_says_whether_the_acceptor_may_have_accepted_that_ballot() -> None:
    b = Ballot(hlc=9, node="a")
    accepted = AcceptorState(promised=b, accepted=Proposal(ballot=b, value=b"v"))
    _, out = acceptor_step("b", accepted, Propose(req=1, sender="a", key=K, ballot=b, value=b"v",
                                                  electorate=S_OLD), None, S_NEW)
    [reply] = sends(out)
    assert isinstance(reply.msg, Nack) and reply.msg.fenced and reply.msg.maybe_accepted


def test_a_commit_is_not_fenced_its_value_is_chosen_already() -> None:
    b = Ballot(hlc=9, node="a")
    state, out = acceptor_step("b", AcceptorState(), Commit(req=1, sender="a", key=K, ballot=b, value=b"v"),
                               None, S_NEW)
    assert state.committed == Proposal(ballot=b, value=b"v")
    assert any(isinstance(e, ApplyCommit) for e in out)


class Ring:
    """Four nodes' acceptors, each with its own view of the key's electorate, and the messages in
    flight, delivered only when the test says so."""

    def __init__(self) -> None:
        self.nodes = {n: Replica(n) for n in ("a", "b", "x", "y")}
        self.view = {n: S_OLD for n in self.nodes}
        self.held: list[tuple[str, PaxosMsg]] = []
        self.proposers: dict[str, PaxosProposer] = {}

    def proposer(self, node: str, new: bytes, fenced: bool) -> PaxosProposer:
        e = self.view[node]
        p = PaxosProposer(node=node, key=K, replicas=e.members, quorum=e.quorum, rng=random.Random(1),
                          hlc=Hlc(), req=len(self.proposers) + 1,
                          view=(lambda: self.view[node]) if fenced else None)
        self.proposers[node] = p
        self.carry(p, p.start(physical_ms=10 * len(self.proposers)), new)
        return p

    def carry(self, p: PaxosProposer, effects: list[Effect], new: bytes) -> None:
        for e in effects:
            if isinstance(e, Send):
                self.held.append((e.to, e.msg))
            elif isinstance(e, Decide):  # SET NX: write only if absent
                self.carry(p, p.decided(new if e.current is None else e.current), new)

    def deliver(self, to: set[str], kinds: tuple[type, ...], fenced: bool, new: dict[str, bytes],
                of: PaxosProposer | None = None) -> None:
        """Deliver the held messages of ``kinds`` addressed to ``to`` (and the replies they cause),
        only those of proposer ``of`` if given."""
        def picked(m: tuple[str, PaxosMsg]) -> bool:
            return m[0] in to and isinstance(m[1], kinds) and (of is None or m[1].req == of.req)

        work = [m for m in self.held if picked(m)]
        self.held = [m for m in self.held if m not in work]
        while work:
            dst, msg = work.pop(0)
            if isinstance(msg, REQUESTS):
                r = self.nodes[dst]
                current = r.data if isinstance(msg, Prepare) else None
                view = self.view[dst] if fenced and not isinstance(msg, Commit) else None
                work.extend((s.to, s.msg) for s in r.carry(r.acceptor.step(msg, current, view)))
            else:
                p = self.proposers[dst]
                before = len(self.held)
                self.carry(p, p.step(msg), new[dst])
                work.extend(m for m in self.held[before:] if picked(m))
                self.held = self.held[:before] + [m for m in self.held[before:] if m not in work]

    def settle(self, fenced: bool, new: dict[str, bytes]) -> None:
        for _ in range(500):
            self.deliver(set(self.nodes), (Prepare, Propose, Commit, Promise, Accepted, CommitAck, Nack),
                         fenced, new)
            live = [(n, p) for n, p in self.proposers.items() if p.outcome is None]
            if not live:
                return
            for n, p in live:
                self.carry(p, p.tick(), new[n])
        raise AssertionError("proposers did not finish")


@pytest.mark.parametrize("fenced", [True, False], ids=["fenced", "unfenced (a node of an older version)"])
def test_a_round_that_outlives_a_change_cannot_choose_on_the_old_replicas(fenced: bool) -> None:
    """Two SET NX on one key. a's round prepares at a majority of the old replicas {a, x} and
    decides, and its Propose is held up (a paused coordinator, a partition) across a change that
    replaces x by y: x's state streams to y, every node switches. b's round then chooses on a
    majority of the new replicas {b, y}. When a's Propose arrives, a and x, on the new ring, refuse
    it (fenced) and a's next round, on the new replicas, reads b's value: one NX wins. Unfenced, a
    and x accept it and both NX succeed: two values chosen."""
    ring = Ring()
    new = {"a": b"from-a", "b": b"from-b"}
    pa = ring.proposer("a", new["a"], fenced)
    ring.deliver({"a", "x"}, (Prepare, Promise), fenced, new)  # a decides; its Propose waits
    assert pa.phase is Phase.PROPOSE
    x, y = ring.nodes["x"], ring.nodes["y"]
    for key, state in x.acceptor.states():  # the change: x's range streams to y, the ring switches
        y.carry(y.acceptor.merge(key, state))
    ring.view = {n: S_NEW for n in ring.nodes}
    pb = ring.proposer("b", new["b"], fenced)
    ring.deliver({"b", "y"}, (Prepare, Promise, Propose, Accepted, Commit, CommitAck), fenced, new, of=pb)
    assert isinstance(pb.outcome, Chosen) and pb.outcome.changed
    ring.deliver({"a", "x"}, (Propose, Accepted, Nack), fenced, new)  # a's round resumes
    ring.settle(fenced, new)
    assert isinstance(pa.outcome, Chosen | Preempted | Contended | Timeout)
    a_won = isinstance(pa.outcome, Chosen) and pa.outcome.changed
    if fenced:
        # a and x refused it: nobody accepted a's value. b could not prove it never accepted a's
        # ballot (it committed a higher one), so a holds its value and retries; its next round
        # reads b's commit, which closed the instance a decided in with b's value (its provenance):
        # a's NX was not applied, and a decides again on b's value (a failed NX).
        assert isinstance(pa.outcome, Chosen) and not pa.outcome.changed, pa.outcome
        assert pa.outcome.previous == new["b"]
        assert all(r.acceptor.state(K).accepted is None for r in ring.nodes.values())
        assert all(value != b"from-a" for r in ring.nodes.values() for _, value in r.applied)
        assert {ring.nodes[n].data[1] for n in S_NEW.members} == {b"from-b"}
    else:
        assert a_won, "the hole the fence closes: both SET NX succeeded"


def test_a_fenced_round_runs_again_on_the_electorate_the_ring_gives_then() -> None:
    ring = Ring()
    pa = ring.proposer("a", b"v", fenced=True)  # its Prepare names the old replicas
    ring.view = {n: S_NEW for n in ring.nodes}  # the ring switched before any of them arrived
    ring.settle(True, {"a": b"v"})
    assert isinstance(pa.outcome, Chosen) and pa.outcome.changed
    assert pa.rounds == 2 and pa.electorate == S_NEW and pa.replicas == S_NEW.members
    assert ring.nodes["x"].applied == [] and {ring.nodes[n].data[1] for n in S_NEW.members} == {b"v"}


def test_provenance_is_stripped_to_the_form_an_older_node_decodes() -> None:
    """A node of an older version drops a frame it cannot decode: to it (``Replica``:
    ``FEATURE_PROVENANCE`` not announced) Paxos messages and states go without provenance, in
    the wire form it reads (the lengths before provenance)."""
    prov = Proposal(ballot=B1, value=b"v", origin=ZERO_BALLOT, after=ZERO_BALLOT)
    msgs: list[PaxosMsg] = [
        Propose(req=3, sender="c", key=K, ballot=B1, value=b"v", origin=B1),
        Commit(req=5, sender="a", key=K, ballot=B1, value=b"v", origin=B1, after=ZERO_BALLOT),
        Promise(req=2, sender="b", key=K, ballot=B1, accepted=prov, committed=prov, current_hlc=0, current=None)]
    old_lengths = {Propose: 6, Commit: 7, Promise: 9}
    for msg in msgs:
        plain = without_provenance(msg)
        body = msgpack.unpackb(encode(plain), raw=False)
        assert len(body) == old_lengths[type(msg)]
        if isinstance(plain, Promise):
            assert len(body[5]) == len(body[6]) == 3
        assert decode(encode(plain)) == plain
    state = AcceptorState(promised=B1, accepted=prov, committed=prov)
    assert [len(p) for p in msgpack.unpackb(encode_state(state_without_provenance(state)))[1:]] == [3, 3]
    plain_msg = Propose(req=3, sender="c", key=K, ballot=B1, value=b"v")
    assert without_provenance(plain_msg) is plain_msg
    committing = Propose(req=3, sender="c", key=K, ballot=B1, value=b"v", origin=B1, electorate=E3, commit=True,
                         after=ZERO_BALLOT)
    assert without_provenance(committing) == replace(plain_msg, electorate=E3)  # commit on accept needs provenance


def test_finishing_a_proposal_without_provenance_commits_no_proof() -> None:
    # A proposal accepted from a node of an older version (no origin) may be a copy of anyone's
    # held change: the commit that finishes it must not claim to close an instance (after=None),
    # or a holder would conclude its change was not chosen when it was.
    p = make_proposer()
    ballot = sends(p.start(1))[0].msg.ballot
    old = Proposal(ballot=Ballot(hlc=3, node="c"), value=b"x")
    p.step(_promise("a", ballot, accepted=old))
    out = p.step(_promise("b", ballot))
    assert {(type(s.msg), getattr(s.msg, "origin", None)) for s in sends(out)} == {(Propose, old.ballot)}
    p.step(Accepted(req=1, sender="a", key=K, ballot=ballot))
    out = p.step(Accepted(req=1, sender="b", key=K, ballot=ballot))
    assert {replace(s.msg, ack=True) for s in sends(out)} == {
        Commit(req=1, sender="a", key=K, ballot=ballot, value=b"x", origin=old.ballot, after=None)}


# ------------------------------------------------------- commit on accept (a quorum of two)

E3 = electorate(ABC)


def committing_round(**kw: Any) -> tuple[PaxosProposer, dict[str, PaxosAcceptor], Ballot]:
    """A proposer at a that commits on accept, its Prepare answered by a and b (b's acceptor
    committed v0 before: the round's ``after``), and the caller's change decided: the Propose
    is out."""
    acceptors = {n: PaxosAcceptor(n) for n in ABC}
    b0 = Ballot(hlc=1, node="c")
    acceptors["b"].restore(K, AcceptorState(promised=b0, committed=Proposal(ballot=b0, value=b"v0", origin=b0,
                                                                             after=ZERO_BALLOT)))
    p = PaxosProposer(node="a", key=K, replicas=ABC, quorum=2, rng=random.Random(0), hlc=Hlc(), req=1,
                      timeout_ticks=20, resend_ticks=3, order=lambda ps: ["a", "b", "c"], commit_on_accept=True,
                      **kw)
    (prepare, _) = sends(p.start(1 << 20))
    for n in ("a", "b"):
        (promise,) = [s for s in sends(acceptors[n].step(prepare.msg, (0, None), E3))]
        out = p.step(promise.msg)
    assert [type(e) for e in out] == [Send, Decide]  # a's repair commit (v0), then the decision
    return p, acceptors, prepare.msg.ballot


def test_commit_on_accept_takes_five_remote_messages_and_both_members_apply_before_the_reply() -> None:
    """Module docstring, "Commit on accept": the Propose goes to this node's acceptor first and,
    once it accepted, to the peer that promised with ``commit``; the peer records and applies the
    commit with its accept and says so; the proposer then commits at its own acceptor, sends c a
    quiet commit and is done on its own ack: no Commit to b and no CommitAck from it."""
    p, acceptors, ballot = committing_round()
    out = p.decided(b"v")
    assert [(s.to, s.msg.commit) for s in sends(out) if isinstance(s.msg, Propose)] == [("a", False)]
    (accepted_a,) = sends(acceptors["a"].step(sends(out)[0].msg, None, E3))
    (to_b,) = sends(p.step(accepted_a.msg))
    assert to_b.to == "b" and isinstance(to_b.msg, Propose)
    assert to_b.msg == Propose(req=1, sender="a", key=K, ballot=ballot, value=b"v", electorate=E3, origin=ballot,
                               commit=True, after=Ballot(hlc=1, node="c"), noop=False)
    eff = acceptors["b"].step(to_b.msg, None, E3)
    assert [type(e) for e in eff] == [Persist, ApplyCommit, Send]  # durable and applied before the answer
    assert eff[1] == ApplyCommit(key=K, ballot=ballot, value=b"v")
    committed = Proposal(ballot=ballot, value=b"v", origin=ballot, after=Ballot(hlc=1, node="c"))
    assert acceptors["b"].state(K) == AcceptorState(promised=ballot, committed=committed)
    assert eff[2].msg == Accepted(req=1, sender="b", key=K, ballot=ballot, committed=True)
    out = p.step(eff[2].msg)
    assert sorted((s.to, s.msg.ack) for s in sends(out)) == [("a", True), ("c", False)]  # none to b
    commit_a = next(s.msg for s in sends(out) if s.to == "a")
    assert commit_a == Commit(req=1, sender="a", key=K, ballot=ballot, value=b"v", origin=ballot,
                              after=Ballot(hlc=1, node="c"))
    (ack_a,) = sends(acceptors["a"].step(commit_a))
    assert p.step(ack_a.msg) == [Done(outcome=Chosen(key=K, ballot=ballot, previous=b"v0", value=b"v"))]
    assert acceptors["a"].state(K).committed == committed  # the same commit at both members


def test_a_peer_that_answers_a_plain_accepted_gets_the_commit_as_before() -> None:
    """A peer that did not commit (an older version got the plain Propose, or could not check the
    electorate) answers a plain Accepted: the round sends it the Commit and waits for its ack."""
    p, acceptors, ballot = committing_round()
    out = p.decided(b"v")
    (accepted_a,) = sends(acceptors["a"].step(sends(out)[0].msg, None, E3))
    (to_b,) = sends(p.step(accepted_a.msg))
    (plain,) = sends(acceptors["b"].step(replace(to_b.msg, commit=False, after=None), None, E3))
    assert plain.msg == Accepted(req=1, sender="b", key=K, ballot=ballot)
    assert acceptors["b"].state(K).accepted is not None  # accepted, not committed
    out = p.step(plain.msg)
    assert sorted((s.to, s.msg.ack) for s in sends(out)) == [("a", True), ("b", True), ("c", False)]
    (ack_a,) = sends(acceptors["a"].step(next(s.msg for s in sends(out) if s.to == "a")))
    assert p.step(ack_a.msg) == []  # b's ack is needed: only it and a applied the value
    (ack_b,) = sends(acceptors["b"].step(next(s.msg for s in sends(out) if s.to == "b")))
    assert isinstance(p.step(ack_b.msg)[0], Done)


def test_an_own_acceptor_that_refuses_sends_the_rest_the_plain_proposal() -> None:
    """Nothing is sent with ``commit`` unless this node's acceptor accepted: on its refusal the
    replicas not asked yet get the plain Propose at once, and the round goes on as before."""
    p, acceptors, ballot = committing_round()
    out = p.decided(b"v")
    higher = Ballot(hlc=ballot.hlc + 1, node="z")
    acceptors["a"].step(Prepare(req=9, sender="z", key=K, ballot=higher), (0, None), E3)
    (nack,) = sends(acceptors["a"].step(sends(out)[0].msg, None, E3))
    assert isinstance(nack.msg, Nack)
    out = p.step(nack.msg)
    assert [(s.to, s.msg.commit) for s in sends(out)] == [("b", False), ("c", False)]
    ticks = [s for _ in range(3) for s in sends(p.tick())]
    assert ticks and not any(isinstance(s.msg, Propose) and s.msg.commit for s in ticks)


def test_a_resend_after_the_own_accept_asks_every_replica_that_has_not_answered_to_commit_on_accept() -> None:
    """b's answer is lost: the resend goes to b and c with ``commit`` (a and either of them are a
    quorum of two); c commits on accept, and the round ends without b."""
    p, acceptors, ballot = committing_round()
    out = p.decided(b"v")
    (accepted_a,) = sends(acceptors["a"].step(sends(out)[0].msg, None, E3))
    p.step(accepted_a.msg)  # b's Propose is lost
    resent = [s for _ in range(3) for s in sends(p.tick())]
    assert sorted((s.to, s.msg.commit) for s in resent) == [("b", True), ("c", True)]
    (from_c,) = sends(acceptors["c"].step(next(s.msg for s in resent if s.to == "c"), None, E3))
    assert from_c.msg.committed and acceptors["c"].state(K).committed is not None
    out = p.step(from_c.msg)
    assert sorted((s.to, s.msg.ack) for s in sends(out)) == [("a", True), ("b", False)]


@pytest.mark.parametrize("case", ["own", "quorum3", "unknown", "outsider", "self"])
def test_an_acceptor_commits_on_accept_only_in_its_own_electorate_of_quorum_two(case: str) -> None:
    """``_commits_on_accept``: two distinct members of the acceptor's own electorate, quorum two.
    Otherwise the Propose is only accepted (a plain Accepted), never committed."""
    ballot = Ballot(hlc=5, node="a")
    e = {"quorum3": electorate(("a", "b", "c", "d"), pending=1), "unknown": None}.get(case, E3)
    sender = {"outsider": "z", "self": "b"}.get(case, "a")
    msg = Propose(req=1, sender=sender, key=K, ballot=ballot, value=b"v", origin=ballot, commit=True,
                  after=ZERO_BALLOT, electorate=e)
    new, eff = acceptor_step("b", AcceptorState(promised=ballot), msg, None, e)
    (reply,) = sends(eff)
    assert reply.msg.committed is (case == "own")
    assert (new.committed is not None) is (case == "own") and (new.accepted is None) is (case == "own")


def test_a_commit_on_accept_refused_or_repeated_changes_nothing() -> None:
    """A higher promise refuses it as any Propose (a Nack, the state unchanged: nothing committed);
    a duplicate is answered ``committed`` again without a second write; a no-op forgets the
    accepted proposal and records no commit, as the round's no-op Commit does."""
    ballot = Ballot(hlc=5, node="a")
    msg = Propose(req=1, sender="a", key=K, ballot=ballot, value=b"v", origin=ballot, commit=True,
                  after=ZERO_BALLOT, electorate=E3)
    higher = AcceptorState(promised=Ballot(hlc=6, node="c"))
    assert acceptor_step("b", higher, msg, None, E3) == (higher, [Send(to="a", msg=Nack(
        req=1, sender="b", key=K, ballot=ballot, phase=NackPhase.PROPOSE, promised=higher.promised))])
    once, _ = acceptor_step("b", AcceptorState(promised=ballot), msg, None, E3)
    again, eff = acceptor_step("b", once, msg, None, E3)
    assert again == once and [type(e) for e in eff] == [Send] and eff[0].msg.committed  # type: ignore[union-attr]
    old = Proposal(ballot=Ballot(hlc=4, node="c"), value=b"x", origin=Ballot(hlc=4, node="c"))
    new, eff = acceptor_step("b", AcceptorState(promised=ballot, accepted=old), replace(msg, noop=True), None, E3)
    assert new == AcceptorState(promised=ballot) and [type(e) for e in eff] == [Persist, Send]


def test_a_noop_commit_keeps_the_accepted_proposal_of_a_commit_the_acceptor_missed() -> None:
    """An acceptor that accepted the proposal of the commit a no-op round read from (``after``)
    but missed that commit keeps the proposal when the no-op's Commit, or its commit on accept,
    arrives: it may be the only trace there of the newest chosen value (seed 101167 --paxos). One
    that holds that commit forgets a proposal at or below the no-op's ballot, as before."""
    older = Proposal(ballot=Ballot(hlc=3, node="a"), value=b"w", origin=Ballot(hlc=3, node="a"))
    chosen = Ballot(hlc=4, node="a")
    accepted = Proposal(ballot=chosen, value=b"x", origin=chosen)
    missed = AcceptorState(promised=chosen, accepted=accepted, committed=older)
    noop = Ballot(hlc=5, node="b")
    commit = Commit(req=2, sender="b", key=K, ballot=noop, value=b"x", noop=True, origin=noop, after=chosen)
    on_accept = Propose(req=2, sender="b", key=K, ballot=noop, value=b"x", origin=noop, commit=True,
                        after=chosen, noop=True, electorate=E3)
    for msg in (commit, on_accept):
        new, eff = acceptor_step("a", missed, msg, None, E3)
        assert new == AcceptorState(promised=noop, accepted=accepted, committed=older)
        assert not [e for e in eff if isinstance(e, ApplyCommit)]
    held = AcceptorState(promised=chosen, accepted=accepted, committed=Proposal(
        ballot=chosen, value=b"x", origin=chosen, after=older.ballot))
    new, _ = acceptor_step("a", held, commit, None, E3)
    assert new == AcceptorState(promised=noop, committed=held.committed)


def test_simulation_with_commit_on_accept_is_one_linearizable_chain() -> None:
    """The seeded simulation above (loss, duplicates, reordering, acceptor crashes right after a
    persist, the proposers' own messages on the same lossy network) with commit on accept on
    the 3-node runs: still one linearizable chain, and peers did commit on accept."""
    totals = {"write": 0, "noop": 0, "uncertain": 0, "failed": 0, "committed_on_accept": 0}
    for seed in range(300):
        ops, chain, counters = simulate(seed, commit_on_accept=True)
        for k, v in check_linearizable(seed, ops, chain).items():
            totals[k] += v
        totals["committed_on_accept"] += counters["committed_on_accept"]
    assert totals["write"] > 300 and totals["committed_on_accept"] > 300, totals
