"""Single-decree Paxos per key: the roles of Cassandra's lightweight
transactions (CAS, ``SET NX|XX``, SERIAL reads) among a key's N replicas.

Sources: Lamport, "Paxos Made Simple" (2001) §2.2-2.3 for the acceptor's and
the proposer's rules; Cassandra's StorageProxy.cas / PaxosState (CASSANDRA-5062)
for running one Paxos instance after another on the same key: a third round,
COMMIT, applies the chosen value and resets the acceptors, and every round
first reads the most recent commit so that an accepted but uncommitted
proposal is finished before anything new is proposed.

Acceptor (``PaxosAcceptor`` / ``acceptor_step``), per key:
- Prepare(b): if b >= promised, promise b (equal: a duplicate of the promise
  already given, so a resent Prepare is not refused) and reply with the
  accepted proposal, the most recent commit and the replica's current data;
  otherwise Nack(promised).
- Propose(b, v): if b >= promised, accept (promised = b, accepted = (b, v));
  otherwise Nack.
- Commit(b, v): if b is newer than the most recent commit, record it, forget
  an accepted proposal at or below b, raise promised to b (a stale proposal
  below a commit is refused from now on; promising more is always safe) and
  ask the driver to write v into its data as the version of the ballot that
  decided v (``ApplyCommit``: its origin, b itself unless the round finished
  another's proposal; b for a commit without provenance). Always acknowledged.
  A no-op's Commit (the round changed nothing) records nothing and applies
  nothing; it raises the promise, and forgets an accepted proposal at or
  below b only when the acceptor holds the commit the round read from
  (``after``, below): an acceptor that missed it may hold that very commit's
  proposal, accepted, as its only trace of a chosen value (the simulator,
  seed 101167 --paxos: a lost repair, then a read's no-op commit erased the
  accepted proposal of the newest chosen value at one of the two replicas
  that had accepted it; a read from that replica and the third, neither
  holding the value, was then answered from their promises with the value
  before it). Kept, it is in progress to the next round that asks, which
  finishes it.
  Why the origin: one chosen value may be committed by several rounds (its
  own, and a rival that found it accepted and finished it while the first
  commit was on its way), each at its own ballot. Written as the version of
  each committing ballot, the copies are different versions of one value:
  replicas that applied one and then a later commit over it hold the other as
  a concurrent sibling once it arrives, which only anti-entropy evens out
  (the simulator, seed 40046 --nodes 5 --paxos: the replicas still differed
  1 s after healing). Written as the origin's version, every commit of the
  value writes the same one (the driver applies it once). The data's HLCs
  still follow the chain: a value decided after commit c was decided by a
  round whose promises showed c, so its origin's HLC is above c's ballot's
  (the proposer starts over unless its ballot is above every HLC its
  promises show, below), hence above the origin of c's value. During a rolling
  upgrade a node of an older version writes the committing ballot's version:
  copies again, as before, for anti-entropy.
- A replica that missed a commit (lost on the way, or the replica was cut
  off) still gets the value from the next commit it receives, but that commit
  writes it over the replica's own version context, which lacks the versions
  of the commits it missed: its state differs from the others' (a concurrent
  sibling, or only the context) until anti-entropy joins them. A commit names
  the commit before it (``after``, provenance); an acceptor whose most recent
  commit is older knows it missed one, and ``ApplyCommit`` says so
  (``behind``; also for a commit without provenance, which cannot tell: from
  an older node, which writes the committing ballot's version, or sent
  before the Hellos crossed; and for the commit after such a one, whose
  version may have been a second one, when the first catch-up could not
  reach the others): the driver joins the other replicas' whole states of the key
  (the versions it missed are in a quorum's: the commits they acked), as
  read repair would, instead of waiting for anti-entropy.
- The durability rule (etcd's Ready): ``Persist(key, state)`` comes before
  the ``Send`` that depends on it, and ``ApplyCommit`` before the ack, so a
  quorum of acks means a quorum of replicas holds the value. One exception,
  taken by the driver (``Replica._paxos_run``, outside a membership change):
  an acceptor's promise to a round of its own node's proposer is not logged.
  Only that proposer counts it, and the proposer lives in the same process
  and dies with it: if the node crashes before the promise reaches disk in a
  later state, the round ends with it. And it does reach disk before it can
  matter to anyone else: a Propose of the round leaves in the same flush as
  this acceptor's own answer to it, or later (the round asks its own
  acceptor first: "Commit on accept", or in the same effects as the others;
  the driver writes every ``Persist`` of a flush before that flush's frames),
  and that answer is logged: an accept (promise = the ballot), or a refusal,
  for which the driver logs the acceptor's state (its promise above the
  ballot may be another own round's, itself not logged; without this, a
  crash right after that flush let the acceptor promise a lower ballot that
  the refused round's promise quorum had excluded, while the round's
  Propose was out). A recovered acceptor that lost such a promise is one
  whose round sent no proposal, so a ballot reissued after a restart (its
  HLC was not on disk) finds nothing accepted at it. Such a round may have
  answered a no-op from its promises ("No-ops answered by the prepare",
  below); a proposal below its ballot that the recovered acceptor accepts
  then is chosen after that answer, so its operation is answered after it
  too, or was answered "may still be applied": linearized after the read,
  as in (b) there.
  Saves one state encoding and one WAL entry per write at the coordinator
  (the Paxos write's ~575 us of cluster CPU: about 2 %, BENCHMARKS.md).

Proposer (``PaxosProposer``), one per operation, four round trips (a settled no-op: one):
1. PREPARE with a ballot above every ballot and HLC it has seen. Any Nack:
   back off a random number of ticks (injected ``random.Random``) and retry.
   With resends and an ``order`` (the driver's: itself first, then the peers
   it heard from most recently), the Prepare goes to a quorum only, the
   first of that order, and a resend to every replica that has not
   promised: any quorum of promises serves the rules below (Paxos Made
   Simple §2.2, P2c needs a majority, not all), and on a 3-replica key the
   third replica's Prepare and Promise were two more of the round's remote
   messages. It gets the commit all the same; a peer that is down or slow is
   not heard from, so it goes last, and a round that asked it anyway waits
   one resend for the others.
2. On a quorum of promises:
   - if some promise reports an HLC (data, accepted or committed ballot) at or
     above our ballot's, start over at once with a higher ballot. (Not in
     Cassandra; added because ``ApplyCommit`` writes with hlc = ballot.hlc:
     two different values committed with equal HLCs, or a commit below a
     plain write, would be silently ordered wrongly by the data store's
     last-writer-wins. With this rule commits that change the value carry
     strictly increasing HLCs.)
   - if the newest accepted proposal is newer than the newest commit, finish
     it: propose its value with our ballot, commit it, then start over.
   - replicas whose most recent commit is older than the newest one get that
     commit again (repair, not waited for), with its provenance, so that the
     stale replica writes the version of the ballot that decided the value,
     as every other commit of it does (Commit, above).
   - the current value is the newest, by HLC, of the replicas' data and the
     newest commit (at the HLC of the version it writes, its origin's). (Cassandra reads the data only; the commit is included
     because a crash between ``Persist`` and ``ApplyCommit`` would otherwise
     hide a chosen value.)
   - ``Decide(current)``: the caller answers ``decided(value)``. A round whose
     value is the one it read (a failed CAS, a SERIAL read: a no-op) ends here,
     ``Chosen`` with that value, when its promises settle it (below, "No-ops
     answered by the prepare"); otherwise it proposes the current value
     unchanged (Cassandra v1 skipped that proposal without such a check,
     CASSANDRA-12126, fixed by committing an empty update). A no-op's commit
     is not recorded (nothing changed), so it does not close the instance for good: a
     proposal accepted only outside the round's quorums (a delayed Propose)
     can still be finished by a later round after the read answered. That
     is still linearizable: the proposal's ballot is below this round's, so
     its operation won its promises before this round's promise quorum
     formed (a quorum there refuses lower ballots afterwards), and it is
     unanswered or answered "may still be applied" (a proposer that may
     have left its change at an acceptor holds it until a recorded commit
     settles it, below); so it is linearized after the read.
   No-ops answered by the prepare (as Cassandra's Paxos v2, CASSANDRA-17164,
   answers a SERIAL read or a failed condition from the prepare round when its
   promises agree; the same rule as Charapko et al., "Linearizable Quorum Reads
   in Paxos", HotStorage 2019: a quorum that agrees, with nothing accepted
   above it, needs no further phase): when the quorum's promises show nothing in progress, no
   held change of this operation (``_mine``, below), and all report the same
   most recent commit and the same data, no older than that commit's version
   (``_read_settled``), a no-op is answered right after ``decided`` with no
   propose or commit. Why that is linearizable (Lamport, "Paxos Made Simple"
   §2.2, P2c: an acceptor that promised b accepts nothing numbered below b):
   (a) every value chosen before the quorum promised is in every quorum's
   promises, as an accepted proposal (then it is in progress and the round
   finishes it instead) or as a recorded commit at or above it; so the value
   read is the newest chosen one; (b) once the quorum promised b, no proposal
   below b can reach a quorum of accepts, so every value chosen afterwards is
   chosen at a ballot above b, by a round whose operation ends after this
   one's promises formed, or it completes a proposal accepted only outside
   this quorum whose operation is unanswered or answered "may still be
   applied" (a held change is settled by a recorded commit, below); either
   way it is linearized after this read. That is the same argument as for a
   no-op that proposes (its propose and unrecorded commit leave the acceptors
   as its prepare did, promised b, with nothing accepted unless an acceptor
   missed the commit the round read from, when they arrive; a delayed
   proposal outside the quorum is finished later either way).
   (c) Every member of the promise quorum holds the value in its data and the
   commit behind it, so a later QUORUM read (which meets that quorum) sees
   it, as after a proposing round's commit acks. A quorum that disagrees
   (a replica missing the newest commit, a lost ``ApplyCommit``) takes the
   full round, whose commit repair and no-op commit settle it, as before.
3. PROPOSE to the quorum whose promises the round used (with resends on;
   without them, to all); a quorum of Accepted -> 4. COMMIT to all; a quorum of
   acks -> ``Done(Chosen(...))``. Any quorum that accepts chooses the value
   (Paxos Made Simple §2.2: the proposer sends its proposal "to some set of
   acceptors"), and on a 3-replica key with the coordinator among them that
   quorum is the coordinator and the first peer to promise: the other peer's
   Propose and Accepted were two of the round's 12 remote messages. The
   commit still goes to all, so every replica's data gets the value. A
   refused Propose goes at once to the replicas not asked yet
   (``_ask_the_rest``), so the refusal rules below see every replica's answer
   as before; a lost one is resent to every replica that has not answered.
   The commit's acks are asked of the replicas that accepted (a quorum, so
   the durability rule above holds as before); the rest get it quiet
   (``ack`` False: applied, not acknowledged), as do the stale replicas a
   round repairs: their acks were received and dropped (on a 3-replica key,
   one remote message fewer). A replica that has not acked when the resend
   is due gets the commit again asking for its ack, asked before or not.
   Refusals while proposing: when the proposal is the caller's change (not a
   no-op, not a finished proposal), a plain retry would be wrong if any replica
   accepted it, since a later round may finish it and the caller would be told
   it failed. As Cassandra's ProposeCallback (``isFullyRefused``), retry at once
   (after a backoff) when every replica proved it never accepted. When some may
   have, Cassandra ends with a timeout (outcome unknown); with contending
   proposers that is the common case (the coordinator's own acceptor takes the
   change before the others, which promised the rival's ballot, refuse it), so
   here the proposer holds the change (its deciding ballot, value and the
   newest commit it was decided after) and retries after a backoff; the next
   rounds settle it from their quorum of promises (any value chosen shows in
   every quorum, as an accepted proposal or a recorded commit):
   - held change in progress (the newest accepted proposal, newer than the
     newest commit, was decided at its ballot): finish it; the caller's
     change is chosen (``Chosen``).
   - the newest commit is older than the held ballot and nothing is in
     progress: it was not chosen. Decide again; the commit that follows is
     recorded even if nothing changed (a no-op leaves no trace, and the held
     proposal, accepted at some replica, could be finished after the caller's
     answer).
   - a commit at or above the held ballot says it was decided at the held
     ballot (``origin``): a rival round finished it, or (at the held ballot
     itself) a peer committed it on accept (below) while its answer was lost:
     ``Chosen``. (Without the "at": seed 40135 --nodes 5 --paxos told a CAS
     whose value a peer had committed on accept that it failed.)
   - a newer commit says it closed the instance the held change was decided
     in (``after`` = the commit the held change was decided after) with
     another round's value: the held change was not chosen, and being below a
     recorded commit it never can be. Decide again, as a new operation.
   - otherwise (later instances, or a commit without provenance from a node
     of an older version): ``Preempted`` (the change may still be applied),
     as before; also when the rounds run out while holding it.
   Provenance: a Propose carries the ballot that decided its value (a round
   finishing an accepted proposal keeps that proposal's), and a Commit carries
   that ballot (``origin``) and the newest commit its round saw (``after``); acceptors keep both with the accepted
   proposal and the commit. Why ``after`` = the held change's is a proof: the
   committing round saw that commit as the newest and nothing newer in
   progress, so its value is the first chosen after it, or a copy (same
   origin) of that first one. A no-op or a
   finished value is retried as soon as a quorum is out of reach.
Commit on accept (a quorum of two: N = 3, or 2; ``commit_on_accept``, the driver's choice for
peers that announced it): phase 3 and the Commit's round trip to the peer of the quorum merge.
The proposer sends its Propose to its own acceptor first; once that acceptor accepted (in the
driver, before the peer's frame leaves: its ``Persist`` comes first, the durability rule) the
Propose goes to the peer that promised with ``commit`` set and what the round's Commit would
carry (``after``, ``noop``; ``origin`` it carries already). An acceptor that accepts such a
Propose, in an electorate that is its own (fenced as any Propose), whose quorum is two and
whose members include the sender and itself, records and applies the commit at once, persisted
with the accept as one state, and answers ``Accepted(committed=True)``. The proposer counts that
as the peer's commit ack: it commits at its own acceptor, sends the rest a quiet commit and is
done on its own ack: on a 3-replica key 5 remote messages and 2 round trips (Prepare, Promise,
Propose, Accepted, one quiet Commit) instead of 7 and 3, both members of the quorum having
applied the value durably before the reply, as the durability rule asks. Why it is safe:
  - Chosen (Paxos Made Simple §2.2: a value is chosen once a majority of acceptors accepted the
    same numbered proposal; §2.3's proof of P2 counts acceptances at any time, a later promise
    or a commit that forgets the proposal does not undo it): the sender's acceptor accepted
    (ballot b, v) durably before the Propose left (the flag is set only on its own Accepted for
    b; one value per ballot), this acceptor accepts (b, v) now, two distinct members of an
    electorate whose quorum is two: a quorum. So v is chosen at b, and every later round's
    promise quorum meets one of the two, which shows (b, v) accepted, or a commit at or above b.
  - The same transitions as before: the acceptor's new state is exactly that of the Propose
    followed at once by the Commit the round would send (``_commit_rules``; same value, origin,
    after, noop), which the old flow allows (the Commit could arrive just after the Accepted
    left); the third replica's quiet commit and the proposer's own are unchanged; so the rules
    above (finishing, held changes, repairs, catch-up) see only states the old flow reaches.
  - A refusal (a higher promise, or another electorate) changes nothing and is a Nack as
    before: the proposer's refusal rules run unchanged. Its own acceptor refusing: nothing was
    sent with ``commit``; the rest get the plain Propose (``_ask_the_rest``). A resend goes to
    every replica that has not answered, with ``commit`` once this node's acceptor accepted
    (any of them accepting makes a quorum of two with it).
  - A held change (``_mine``): ``noop`` is computed as the Commit's (``_noop``), so a round
    that may close a held proposal records its commit, as before.
  - Membership: the round's electorate is fixed per round and checked by both acceptors
    against their own rings (the fence), so the two accepts are a quorum of one electorate, as
    two Accepteds were; while a change is pending the quorum is above two (``paxos_quorum``)
    unless the electorate has two members, both needed: no commit on accept otherwise.
  - The proposer crashing after the peer committed, before its reply: the client's request
    fails without an answer ("may still be applied", allowed); the value is chosen and the
    peer holds the commit, so the next round of the key (its promises meet the peer or the
    proposer's accepted proposal, durable) finishes or repairs it.
  - A peer of an older version gets the plain Propose (``Replica`` strips ``commit`` for a peer
    that did not announce ``FEATURE_COMMIT_ON_ACCEPT``) and answers a plain Accepted: the round
    goes on to its Commit as before.
Time is integer ticks (``tick()``): each phase has a timeout
(``Timeout(phase, answered, needed)``), unanswered replicas are sent the
phase's message again every ``resend_ticks`` (every message is idempotent),
and the number of rounds is bounded (``Contended``).

Mixing plain writes into a key that is also written by CAS breaks
linearizability, as in Cassandra: a plain write does not go through the
acceptors.

Membership changes (``membership.py``) move a key's acceptors too:
- The participants of a round while a change is in flight (announce and
  ``reads_new`` epochs alike) are the key's natural replicas (the current
  ring's) plus its pending ones (the new owners), and a round needs a
  quorum of the natural replicas plus one answer per pending replica
  (``paxos_quorum``; Cassandra's rule for Paxos with pending ranges,
  CASSANDRA-8346). Any such quorum holds a quorum of the old replica set and
  one of the new, so rounds run by nodes on the previous epoch (old set),
  on either epoch of the change, or on the switched ring (new set) all
  intersect. With only the old set during the announce and only the new
  set once reads moved, a node still on the announce and one already
  reading from the new owners chose on disjoint quorums (the membership
  simulator, seed 30193 --nodes 4 --paxos --membership: a SERIAL read
  missed an acknowledged write).
- A round is fenced by its electorate. The proposer reads its participants
  and quorum from the ring again at the start of every round (``view``) and
  sends them with its Prepare and Propose (``Electorate``); an acceptor whose
  own ring gives the key another electorate refuses them (``Nack`` with
  ``fenced``, answered as any refusal: a backoff, then a round with the ring
  as it is then). A Commit is not fenced: its value is chosen already. So an
  acceptor promises and accepts only in rounds of the electorate it holds
  for the key, and a round's quorum is a quorum of that electorate when it
  answered. Without this a round that began before a change and outlived it
  (a partition, a paused coordinator, retries over several changes) could
  finish on the old set after the switch: its accepts at a majority of the
  old set {a, x} and a new round's at a majority of the new set {b, y}
  (x replaced by y) are disjoint, and two different values were chosen.
  With it, a key's electorates go old set -> old plus pending -> new set,
  the accepts of an old-set round all precede their acceptor's adoption of
  the announce, hence the streams (which start once every node acknowledged
  it), and the stream from the replica that leaves carries them to the new
  owner; every other pair of neighbouring electorates intersects (above).
  The same check guards a node that left (no electorate for the key at all)
  and two changes begun at once. (Cassandra's Paxos v2 verifies the
  electorate of each promise for the same reason, CEP-14.)
- The acceptor state travels with the key's data when a range is streamed
  to a new owner, and the new owner joins it into its own
  (``merge_states``): the highest promise, the newer accepted proposal and
  the most recent commit. Without it a new owner answered promises with no
  commit, and a quorum of it and a stale old replica took that replica's
  long-superseded accepted proposal for one in progress and committed it
  over chosen values (seeds 30164 and 30265 --nodes 4 --paxos --membership).
  Taking another acceptor's state is safe: a promise only grows, and an
  accepted proposal or commit so taken is one a replica of the old set
  really holds, which a later round must see anyway.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from replikv.core.builders import positional_builder
from replikv.core.crdt.hlc import Hlc
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
    PaxosMsg,
    Prepare,
    Promise,
    Proposal,
    Propose,
    new_accepted,
    new_commit,
    new_commit_ack,
    new_nack,
    new_prepare,
    new_promise,
    new_proposal,
    new_propose,
    new_state,
)
from replikv.core.invariant import invariant, violated

__all__ = [
    "ApplyCommit",
    "Chosen",
    "Contended",
    "Decide",
    "Done",
    "Effect",
    "Outcome",
    "PaxosAcceptor",
    "PaxosProposer",
    "Persist",
    "Phase",
    "Preempted",
    "Send",
    "Timeout",
    "acceptor_step",
    "electorate",
    "merge_states",
    "paxos_quorum",
]

Value = bytes | None
Current = tuple[int, Value]  # (hlc of the replica's value, value); (0, None): absent


# ----------------------------------------------------------------- effects

@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    to: str
    msg: PaxosMsg


@dataclass(frozen=True, slots=True, kw_only=True)
class Persist:
    """Store this key's acceptor state durably before the next effect."""

    key: bytes
    state: AcceptorState


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyCommit:
    """Write ``value`` (None: delete) into the data store as the version of ``ballot`` (hlc =
    ballot.hlc, origin = ballot.node): the ballot that decided the value (the module docstring,
    Commit), the same for every commit of one chosen value."""

    key: bytes
    ballot: Ballot
    value: Value
    behind: bool = False  # the replica missed a commit before this one: join the other replicas' states


@dataclass(frozen=True, slots=True, kw_only=True)
class Decide:
    """The caller must answer ``proposer.decided(new_value)`` given ``current``
    (the same value for a failed CAS or a read)."""

    key: bytes
    current: Value


# The effects a Paxos write makes most (~20 Sends, ~6 Persists and 3 ApplyCommits on its three
# replicas), built positionally (builders.positional_builder, as paxos_messages.new_*): the same,
# equal, frozen objects in half the time.
_send = positional_builder(Send)  # (to, msg)
_persist = positional_builder(Persist)  # (key, state)
_apply_commit = positional_builder(ApplyCommit)  # (key, ballot, value, behind)


class Phase(Enum):
    INIT = "init"
    PREPARE = "prepare"
    DECIDE = "decide"
    PROPOSE = "propose"
    COMMIT = "commit"
    BACKOFF = "backoff"
    DONE = "done"


@dataclass(frozen=True, slots=True, kw_only=True)
class Chosen:
    """The round's value is chosen and committed at a quorum. ``changed``:
    the caller's decided value differs from ``previous`` (a successful CAS)."""

    key: bytes
    ballot: Ballot
    previous: Value
    value: Value

    @property
    def changed(self) -> bool:
        return self.value != self.previous


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeout:
    """A phase did not reach a quorum in time: ``answered`` replicas answered
    yes, ``needed`` were required. ``may_be_applied``: the caller's change
    reached the acceptors (PROPOSE), or was chosen already (COMMIT)."""

    phase: Phase
    answered: int
    needed: int
    may_be_applied: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Preempted:
    """A higher ballot refused the caller's change after some replicas
    (``accepted``, or ``maybe_accepted`` that could not prove otherwise)
    had accepted it: it may still be applied by a later round."""

    accepted: int
    maybe_accepted: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Contended:
    """Gave up after ``rounds`` rounds without applying the caller's change."""

    rounds: int


Outcome = Chosen | Timeout | Preempted | Contended


@dataclass(frozen=True, slots=True, kw_only=True)
class Done:
    outcome: Outcome


Effect = Send | Persist | ApplyCommit | Decide | Done


# ---------------------------------------------------------------- acceptor

def paxos_quorum(participants: int, pending: int = 0) -> int:
    """How many of a round's ``participants`` must answer when ``pending`` of them are a
    membership change's new owners: a majority of the natural replicas plus every pending one
    (CASSANDRA-8346: Paxos with pending ranges; see the module docstring). With no change: a
    majority."""
    natural = participants - pending
    invariant(natural > 0 and 0 <= pending <= natural,
              lambda: f"{pending} pending of {participants} participants")
    return natural // 2 + 1 + pending


def merge_states(mine: AcceptorState, theirs: AcceptorState) -> AcceptorState:
    """Join another replica's acceptor state of the same key into this one (a range streamed to a
    new owner): the most recent commit, the newer accepted proposal unless a commit at or above it
    is known, and the highest promise (at least both ballots). Commutative and idempotent."""
    commits = [c for c in (mine.committed, theirs.committed) if c is not None]
    committed = max(commits, key=lambda c: c.ballot) if commits else None
    proposals = [a for a in (mine.accepted, theirs.accepted) if a is not None]
    accepted = max(proposals, key=lambda a: a.ballot) if proposals else None
    if accepted is not None and committed is not None and accepted.ballot <= committed.ballot:
        accepted = None
    promised = max(mine.promised, theirs.promised,
                   accepted.ballot if accepted else ZERO_BALLOT, committed.ballot if committed else ZERO_BALLOT)
    return new_state(promised, accepted, committed)


def electorate(participants: Iterable[str], pending: int = 0) -> Electorate:
    """The electorate of a round among ``participants``, ``pending`` of them a change's new
    owners (``paxos_quorum``). Every acceptor step of a Prepare or Propose and every round asks
    for it: the few distinct ones (a ring's replica sets) are built once (``_electorate_of``)."""
    return _electorate_of(participants if type(participants) is tuple else tuple(participants), pending)


@functools.lru_cache(maxsize=4096)
def _electorate_of(participants: tuple[str, ...], pending: int) -> Electorate:
    members = tuple(sorted(participants))
    return Electorate(members, paxos_quorum(len(members), pending))


@functools.lru_cache(maxsize=4096)
def _electorate_quorum(members: tuple[str, ...], quorum: int) -> Electorate:
    """``Electorate(members, quorum)``, built (and checked) once per distinct pair: a proposer
    is made per operation, over one of the ring's few replica sets. Electorates are immutable."""
    return Electorate(members, quorum)


def _fenced(msg: Prepare | Propose, mine: Electorate | None) -> bool:
    """The request names an electorate for the key other than this acceptor's (see the module
    docstring); either side unknown (a node of an older version): not fenced."""
    return msg.electorate is not None and mine is not None and msg.electorate != mine


def acceptor_step(node: str, state: AcceptorState, msg: PaxosMsg, current: Current | None = None,
                  mine: Electorate | None = None) -> tuple[AcceptorState, list[Effect]]:
    """One acceptor rule for one key (see the module docstring): the new state
    and the effects, ``Persist`` first whenever the state changed. ``mine``: the key's
    electorate as this acceptor's ring gives it; a Prepare or Propose naming another is refused
    unchanged."""
    reply_to = msg.sender
    match msg:
        case Prepare():
            if _fenced(msg, mine):
                return state, [_send(reply_to, new_nack(
                    msg.req, node, msg.key, msg.ballot, NackPhase.PREPARE, state.promised, False, True))]
            if msg.ballot < state.promised:
                return state, [_send(reply_to, new_nack(
                    msg.req, node, msg.key, msg.ballot, NackPhase.PREPARE, state.promised, False, False))]
            if current is None:
                violated("a Prepare is stepped with the replica's current data")
            new = state
            if msg.ballot > state.promised:
                new = new_state(msg.ballot, state.accepted, state.committed)
            promise = new_promise(msg.req, node, msg.key, msg.ballot, new.accepted, new.committed,
                                  current[0], current[1])
            return new, _persisted(msg.key, state, new, [_send(reply_to, promise)])
        case Propose():
            fenced = _fenced(msg, mine)
            if fenced or msg.ballot < state.promised:
                highest = max(state.accepted.ballot if state.accepted else ZERO_BALLOT,
                              state.committed.ballot if state.committed else ZERO_BALLOT)
                return state, [_send(reply_to, new_nack(
                    msg.req, node, msg.key, msg.ballot, NackPhase.PROPOSE, state.promised, highest >= msg.ballot,
                    fenced))]
            if msg.commit and _commits_on_accept(node, msg, mine):
                # Accepted by the sender's acceptor and now by this one: a quorum of two, the value
                # is chosen. Exactly a Propose followed at once by the round's Commit (module
                # docstring, "Commit on accept"), persisted as one state: the Commit rule on the
                # state before the Propose, which raises the promise to the ballot as the Propose
                # would (``msg.ballot >= state.promised``, checked above), and leaves it unchanged
                # only when the promise is the ballot already.
                new, applied = _commit_rules(state, msg.key, msg.ballot, msg.value, msg.noop, msg.origin, msg.after)
                ack = new_accepted(msg.req, node, msg.key, msg.ballot, True)
                return new, _persisted(msg.key, state, new, [*applied, _send(reply_to, ack)])
            new = new_state(msg.ballot, new_proposal(msg.ballot, msg.value, msg.origin, None), state.committed)
            ack = new_accepted(msg.req, node, msg.key, msg.ballot, False)
            return new, _persisted(msg.key, state, new, [_send(reply_to, ack)])
        case Commit():
            ack_c: list[Effect] = [_send(reply_to, new_commit_ack(msg.req, node, msg.key, msg.ballot))
                                   ] if msg.ack else []
            new, applied = _commit_rules(state, msg.key, msg.ballot, msg.value, msg.noop, msg.origin, msg.after)
            return new, _persisted(msg.key, state, new, [*applied, *ack_c])
        case _:
            violated(f"an acceptor was stepped with a reply: {type(msg).__name__}")


def _commits_on_accept(node: str, msg: Propose, mine: Electorate | None) -> bool:
    """Whether this acceptor, accepting ``msg`` (a Propose with ``commit``: its sender's acceptor
    accepted it), may conclude that the value is chosen: the round's electorate is this
    acceptor's own (checked, so never when either is unknown), its quorum is two, and the sender
    and this node are two distinct members of it (module docstring, "Commit on accept")."""
    return (mine is not None and msg.electorate == mine and mine.quorum == 2 and msg.sender != node
            and msg.sender in mine.members and node in mine.members)


def _commit_rules(state: AcceptorState, key: bytes, ballot: Ballot, value: Value, noop: bool,
                  origin: Ballot | None, after: Ballot | None) -> tuple[AcceptorState, list[Effect]]:
    """The acceptor's Commit rule (module docstring) without the ack, for a Commit of these
    fields (a Commit's, or a Propose's that commits on accept: no message built for it): the
    new state and the ``ApplyCommit`` to carry out (none for a duplicate, an older commit or a
    no-op)."""
    if state.committed is not None and ballot <= state.committed.ballot:
        return state, []  # a duplicate, or older than what was applied
    # Missed the commit this one follows (``after``, newer than ours): catch up (docstring).
    # Without provenance (an older node's commit, or one sent before the Hellos crossed)
    # it cannot tell, and the version it writes may be a second one: it catches up now,
    # and at the next commit too (its most recent commit has no origin).
    behind = after is None or (after != ZERO_BALLOT and (
        state.committed is None or state.committed.ballot < after
        or state.committed.origin is None))
    accepted = state.accepted
    # forgotten at or below the commit, but a no-op's keeps the proposal when this acceptor
    # missed the commit the round read from: it may be that commit's (docstring, Commit)
    if accepted is not None and accepted.ballot <= ballot and not (noop and behind):
        accepted = None
    if noop:  # nothing changed: no commit to record or apply
        return new_state(max(state.promised, ballot), accepted, state.committed), []
    new = new_state(max(state.promised, ballot), accepted, new_proposal(ballot, value, origin, after))
    return new, [_apply_commit(key, origin if origin is not None else ballot, value, behind)]


def _persisted(key: bytes, old: AcceptorState, new: AcceptorState, then: list[Effect]) -> list[Effect]:
    return then if new is old or new == old else [_persist(key, new), *then]


_NEW_KEY = AcceptorState()  # a key never seen (states are immutable: one shared)


class PaxosAcceptor:
    """The acceptor of one node for every key: ``acceptor_step`` over a map of
    per-key states. After a restart the driver gives back what it persisted
    with ``restore``; a key never seen starts from ``AcceptorState()``."""

    __slots__ = ("_states", "node")

    def __init__(self, node: str) -> None:
        self.node = node
        self._states: dict[bytes, AcceptorState] = {}

    def state(self, key: bytes) -> AcceptorState:
        return self._states.get(key) or _NEW_KEY

    def restore(self, key: bytes, state: AcceptorState) -> None:
        self._states[key] = state

    def states(self) -> list[tuple[bytes, AcceptorState]]:
        """Every key's state held in memory (for a snapshot)."""
        return sorted(self._states.items())

    def merge(self, key: bytes, theirs: AcceptorState) -> list[Effect]:
        """Join another replica's state of ``key`` (``merge_states``); ``Persist`` if it changed."""
        old = self.state(key)
        new = merge_states(old, theirs)
        self._states[key] = new
        return _persisted(key, old, new, [])

    def forget(self, key: bytes) -> None:
        """Drop a key's state from memory (the driver keeps the persisted copy)."""
        self._states.pop(key, None)

    def step(self, msg: PaxosMsg, current: Current | None = None, mine: Electorate | None = None) -> list[Effect]:
        """A request arrived; ``current`` (the replica's data for the key) is
        required for a ``Prepare``; ``mine``: the key's electorate in this node's ring."""
        new, effects = acceptor_step(self.node, self.state(msg.key), msg, current, mine)
        self._states[msg.key] = new
        return effects


# ---------------------------------------------------------------- proposer

def _read_settled(promises: list[Promise], newest: Proposal | None) -> bool:
    """Whether a quorum's promises, with nothing in progress among them, settle a round that
    proposes the value it read (a failed CAS, a SERIAL read) without its propose and commit
    phases (module docstring, "No-ops answered by the prepare"): every promise reports the same
    most recent commit and the same data, and that data is at least as new as the commit (its
    ``ApplyCommit`` was not lost), so the value read is the one every member of the quorum holds."""
    first = promises[0]
    commit = newest.ballot if newest is not None else None
    if newest is not None and newest.decided_at.hlc > first.current_hlc:
        return False
    return all((p.committed.ballot if p.committed is not None else None) == commit
               and p.current_hlc == first.current_hlc and p.current == first.current for p in promises)


class PaxosProposer:
    """One Paxos operation on one key, coordinated by ``node`` (see the module
    docstring). ``req`` is the request id the driver routes replies by;
    ``hlc`` is the node's clock (ballots are drawn from it and it observes
    every ballot and data timestamp seen). ``outcome`` is set once ``Done`` is
    emitted; afterwards every input returns ``[]``. ``view``: the key's electorate as the
    node's ring gives it now, read again at the start of every round after the first (a round
    fenced by its electorate, see the module docstring); without it the round keeps
    ``replicas`` and ``quorum``. ``order``: the participants, those likeliest to answer first
    first; with it (and resends) a round's Prepare goes to the first quorum of them (module
    docstring, 1.)."""

    def __init__(
        self,
        *,
        node: str,
        key: bytes,
        replicas: Iterable[str],
        quorum: int,
        rng: random.Random,
        hlc: Hlc,
        req: int,
        timeout_ticks: int = 50,
        resend_ticks: int = 0,
        backoff_ticks_max: int = 16,
        max_rounds: int = 50,
        view: Callable[[], Electorate] | None = None,
        order: Callable[[tuple[str, ...]], list[str]] | None = None,
        commit_on_accept: bool = False,
    ) -> None:
        self.node = node
        self.key = key
        self.replicas = tuple(replicas)
        n = len(self.replicas)
        invariant(len(set(self.replicas)) == n and n > 0, "replicas: a non-empty list without repeats")
        # Two quorums must intersect (Paxos Made Simple §2.2): quorum > N/2 (Electorate checks it).
        self.electorate = _electorate_quorum(tuple(sorted(self.replicas)), quorum)
        invariant(timeout_ticks > 0 and resend_ticks >= 0 and backoff_ticks_max > 0 and max_rounds > 0,
                  "tick counts and max_rounds must be positive")
        self._view = view
        self._order = order
        self._commit_on_accept = commit_on_accept
        self.quorum = quorum
        self.req = req
        self.timeout_ticks = timeout_ticks
        self.resend_ticks = resend_ticks
        self.backoff_ticks_max = backoff_ticks_max
        self.max_rounds = max_rounds
        self._rng = rng
        self._hlc = hlc
        self._physical_ms = 0
        self.phase = Phase.INIT
        self.ballot = ZERO_BALLOT
        self.rounds = 0
        self.outcome: Outcome | None = None
        self._now = 0  # ticks
        self._deadline = 0
        self._last_send = 0
        self._backoff_left = 0
        self._nacked_rounds = 0
        self._promises: dict[str, Promise] = {}
        self._yes: set[str] = set()  # Accepted / CommitAck senders of this phase
        self._refused: dict[str, bool] = {}  # PROPOSE Nack sender -> maybe_accepted
        self._message: PaxosMsg | None = None  # this phase's request, for resends
        self._unasked: tuple[str, ...] = ()  # replicas this round's Propose has not gone to (yet)
        self._held: tuple[str, ...] = ()  # commit on accept: peers asked once this node's acceptor accepted
        self._applied: set[str] = set()  # peers that committed this round's proposal on accepting it
        self._finishing = False  # proposing an accepted value found in progress
        self._own_change = False  # proposing the caller's change
        self._proposing_mine = False  # this round proposes a value of this operation's
        # This operation's proposals that a replica may hold after a refusal: the ballot that
        # decided each (its origin) -> (previous, value, the newest commit when it was decided);
        # while any is held, rounds settle it (see _recover).
        self._mine: dict[Ballot, tuple[Value, Value, Ballot | None]] = {}
        self._after: Ballot | None = ZERO_BALLOT  # the newest commit this round's promises showed
        self._origin = ZERO_BALLOT  # the ballot that decided the value this round proposes
        self._preempted: Preempted | None = None  # the first refusal that left one held
        self._settled = False  # this round's promises settle a no-op without proposing (_read_settled)
        self._previous: Value = None
        self._value: Value = None

    # -- inputs

    def start(self, physical_ms: int = 0) -> list[Effect]:
        """Begin the first round; ``physical_ms`` is the node's wall clock,
        which only feeds the HLC ballots are drawn from."""
        invariant(self.phase is Phase.INIT, "start() is called once")
        self._physical_ms = physical_ms
        return self._new_round()

    def tick(self, physical_ms: int | None = None) -> list[Effect]:
        """One tick of logical time: timeouts, resends, the end of a backoff.
        No timeout runs while the caller decides (``Phase.DECIDE``)."""
        if physical_ms is not None:
            self._physical_ms = max(self._physical_ms, physical_ms)
        self._now += 1
        if self.phase is Phase.BACKOFF:
            self._backoff_left -= 1
            return self._new_round() if self._backoff_left <= 0 else []
        if self.phase not in (Phase.PREPARE, Phase.PROPOSE, Phase.COMMIT):
            return []
        if self._now >= self._deadline:
            answered = len(self._promises) if self.phase is Phase.PREPARE else len(self._yes)
            return self._done(Timeout(phase=self.phase, answered=answered, needed=self.quorum,
                                      may_be_applied=self._own_change or bool(self._mine)))
        if self.resend_ticks and self._now - self._last_send >= self.resend_ticks:
            answered_set = (self._promises.keys() if self.phase is Phase.PREPARE
                            else self._yes | self._refused.keys())
            self._unasked = self._held = ()  # a resend goes to every replica that has not answered
            return self._send_phase([r for r in self.replicas if r not in answered_set])
        return []

    def decided(self, value: Value) -> list[Effect]:
        """The caller's answer to ``Decide``: the value to propose (the
        current one for a failed CAS or a read)."""
        invariant(self.phase is Phase.DECIDE, lambda: f"decided() in phase {self.phase.value}")
        self._value = value
        self._own_change = value != self._previous
        self._proposing_mine = True
        if self._settled and not self._own_change:  # a failed CAS or a read: answered by the prepare
            return self._done(Chosen(key=self.key, ballot=self.ballot, previous=value, value=value))
        return self._propose(value, self.ballot)

    def step(self, msg: PaxosMsg) -> list[Effect]:
        if msg.req != self.req or msg.key != self.key or msg.sender not in self.replicas:
            return []
        if self.phase is Phase.DONE:
            return []
        match msg:
            case Promise():
                self._observe(msg.current_hlc, msg.accepted, msg.committed)
                if self.phase is not Phase.PREPARE or msg.ballot != self.ballot:
                    return []
                self._promises.setdefault(msg.sender, msg)
                if len(self._promises) >= self.quorum:
                    return self._on_promises()
                return []
            case Nack():
                self._hlc.observe(msg.promised.hlc, self._physical_ms)
                if msg.ballot != self.ballot:
                    return []
                if self.phase is Phase.PREPARE and msg.phase is NackPhase.PREPARE:
                    return self._backoff()
                if self.phase is Phase.PROPOSE and msg.phase is NackPhase.PROPOSE:
                    self._refused.setdefault(msg.sender, msg.maybe_accepted)
                    return self._ask_the_rest() + self._on_refusal()
                return []
            case Accepted():
                if self.phase is not Phase.PROPOSE or msg.ballot != self.ballot:
                    return []
                self._yes.add(msg.sender)
                if msg.committed:
                    self._applied.add(msg.sender)
                if len(self._yes) >= self.quorum:
                    return self._commit()
                if msg.sender == self.node and self._held:
                    return self._commit_on_accept_sends()
                return self._on_refusal() if self._refused else []
            case CommitAck():
                if self.phase is not Phase.COMMIT or msg.ballot != self.ballot:
                    return []
                self._yes.add(msg.sender)
                return self._committed() if len(self._yes) >= self.quorum else []
            case _:
                return []  # a request sent to a proposer: not ours to answer

    # -- the round

    def _observe(self, data_hlc: int, *proposals: Proposal | None) -> None:
        top = max([data_hlc, *(p.ballot.hlc for p in proposals if p is not None)])
        self._hlc.observe(top, self._physical_ms)

    def _new_round(self) -> list[Effect]:
        if self.rounds >= self.max_rounds:
            return self._done(self._preempted or Contended(rounds=self.rounds))
        if self.rounds and self._view is not None:  # the ring may have changed: this round's electorate
            self.electorate = self._view()
            self.replicas, self.quorum = self.electorate.members, self.electorate.quorum
        self.rounds += 1
        # The clock has observed every ballot and data HLC seen, so this is above them all.
        self.ballot = Ballot(hlc=self._hlc.now(self._physical_ms), node=self.node)
        self.phase = Phase.PREPARE
        self._promises = {}
        self._finishing = False
        self._own_change = False
        self._proposing_mine = False
        self._settled = False
        self._previous = self._value = None
        self._deadline = self._now + self.timeout_ticks
        self._message = new_prepare(self.req, self.node, self.key, self.ballot, self.electorate)
        if self._order is None or not self.resend_ticks:  # no resends to fall back on: to all
            return self._send_phase(self.replicas)
        # To a quorum, the likeliest to answer first (3.: any quorum will do); a resend goes to
        # every replica that has not promised.
        return self._send_phase(self._order(self.replicas)[:self.quorum])

    def _send_phase(self, targets: Iterable[str]) -> list[Effect]:
        self._last_send = self._now
        msg = self._message
        if msg is None:
            violated("a phase has a message")
        return [_send(r, msg) for r in targets]

    def _on_promises(self) -> list[Effect]:
        promises = list(self._promises.values())
        seen_hlc = max(max(p.current_hlc,
                           p.accepted.ballot.hlc if p.accepted else 0,
                           p.committed.ballot.hlc if p.committed else 0) for p in promises)
        if seen_hlc >= self.ballot.hlc:
            return self._new_round()  # the clock observed seen_hlc: the next ballot is above it
        commits = [p.committed for p in promises if p.committed is not None]
        newest = max(commits, key=lambda c: c.ballot) if commits else None
        effects: list[Effect] = []
        self._after = newest.ballot if newest is not None else ZERO_BALLOT
        if newest is not None:
            # With its provenance: without ``origin`` the stale replica would write the value as
            # a second version, at the commit's ballot (acceptor_step, Commit).
            # Quiet: a repair is not waited for (its ack was received and dropped).
            repair = Commit(req=self.req, sender=self.node, key=self.key, ballot=newest.ballot,
                            value=newest.value, origin=newest.origin, after=newest.after, ack=False)
            effects = [_send(p.sender, repair) for p in promises
                       if p.committed is None or p.committed.ballot < newest.ballot]
        accepted = [p.accepted for p in promises if p.accepted is not None]
        in_progress = max(accepted, key=lambda a: a.ballot) if accepted else None
        if in_progress is not None and (newest is None or in_progress.ballot > newest.ballot):
            self._finishing = True
            if in_progress.origin is None:  # an older node's proposal: of unknown provenance, so
                self._after = None  # its commit proves nothing about the instance it closes
            origin = in_progress.decided_at
            if origin in self._mine:  # ours: finishing it chooses the caller's change
                self._previous, self._value, _ = self._mine[origin]
                self._proposing_mine = True
            return effects + self._propose(in_progress.value, origin)
        if self._mine and newest is not None and newest.ballot >= min(self._mine):
            held = self._mine.get(newest.decided_at)
            if held is not None:  # ours was chosen, and finished by some round
                return effects + self._done(Chosen(key=self.key, ballot=newest.ballot, previous=held[0],
                                                   value=held[1]))
            if newest.after is None or any(after != newest.after for *_, after in self._mine.values()):
                preempted = self._preempted
                if preempted is None:
                    violated("a held proposal was recorded with its refusal")
                return effects + self._done(preempted)  # later instances hide whether ours was chosen
            # The instance ours was decided in was closed, by a recorded commit, with another
            # round's value: ours was not chosen and never can be. Decide afresh.
            self._mine.clear()
            self._preempted = None
        # The newest known value: the replicas' data, or the newest commit if its
        # ApplyCommit was lost; ties broken deterministically.
        candidates: list[tuple[int, int, bytes]] = [
            (p.current_hlc, p.current is not None, p.current or b"") for p in promises]
        if newest is not None:
            candidates.append((newest.decided_at.hlc, newest.value is not None, newest.value or b""))
        _, present, data = max(candidates)
        self._previous = data if present else None
        self._settled = not self._mine and _read_settled(promises, newest)
        self.phase = Phase.DECIDE
        return [*effects, Decide(key=self.key, current=self._previous)]

    def _propose(self, value: Value, origin: Ballot) -> list[Effect]:
        self.phase = Phase.PROPOSE
        self._origin = origin
        self._yes = set()
        self._applied = set()
        self._refused = {}
        self._held = ()
        self._deadline = self._now + self.timeout_ticks
        self._message = new_propose(self.req, self.node, self.key, self.ballot, value, self.electorate, origin,
                                    False, None, False)
        if not self.resend_ticks:  # no resends to fall back on: every replica at once
            return self._send_phase(self.replicas)
        # To the quorum that promised (Paxos Made Simple §2.2: "to some set of acceptors"; any
        # quorum that accepts chooses the value): the rest get it on a refusal or a resend.
        self._unasked = tuple(r for r in self.replicas if r not in self._promises)
        if self._commit_on_accept and self.quorum == 2 and self.node in self._promises:
            # Commit on accept (module docstring): this node's acceptor first; the peer that
            # promised gets the Propose once it accepted (``_commit_on_accept_sends``).
            self._held = tuple(r for r in self._promises if r != self.node)
            self._unasked = self._held + self._unasked
            return self._send_phase([self.node])
        return self._send_phase(self._promises)

    def _commit_on_accept_sends(self) -> list[Effect]:
        """This node's acceptor accepted the round's proposal: from now on the Propose says so
        (``commit``, with what the round's Commit would carry), and the peers held back get it."""
        proposal = self._message
        if not isinstance(proposal, Propose):
            violated("commit on accept follows a proposal")
        self._message = new_propose(proposal.req, proposal.sender, proposal.key, proposal.ballot, proposal.value,
                                    proposal.electorate, proposal.origin, True, self._after,
                                    self._noop())  # ``replace`` is ~4x slower
        held, self._held = self._held, ()
        self._unasked = tuple(r for r in self._unasked if r not in held)
        return [_send(r, self._message) for r in held]

    def _noop(self) -> bool:
        """The round's commit changes nothing (a failed CAS, a read): not recorded. A held
        proposal of ours is superseded only by a recorded commit (a no-op leaves none)."""
        return not self._own_change and not self._finishing and not self._mine

    def _ask_the_rest(self) -> list[Effect]:
        """A Propose refused: the replicas it has not gone to get it now, so that the round
        goes on exactly as if it had gone to every replica (``_on_refusal`` counts them all)."""
        rest, self._unasked, self._held = self._unasked, (), ()
        return [_send(r, self._message) for r in rest if self._message is not None]

    def _on_refusal(self) -> list[Effect]:
        n = len(self.replicas)
        if n - len(self._refused.keys() - self._yes) >= self.quorum:
            return []  # a quorum may still accept
        if not self._own_change and not (self._mine and self._proposing_mine):
            return self._backoff()  # a no-op, or another round's value: nothing of the caller's at stake
        if len(self._yes | self._refused.keys()) < n:
            return []  # wait: an unanswered replica may have accepted
        maybe = sum(1 for r, m in self._refused.items() if m and r not in self._yes)
        if not self._yes and not maybe:
            return self._backoff()  # fully refused: nobody holds this ballot's value
        return self._recover(Preempted(accepted=len(self._yes), maybe_accepted=maybe))

    def _recover(self, preempted: Preempted) -> list[Effect]:
        """Some replicas may hold this round's value (the caller's) after a higher ballot refused
        it: remember it and retry after a backoff instead of answering "unknown" at once. The next
        rounds' promises settle it (``_on_promises``; module docstring, "Refused proposals")."""
        self._mine.setdefault(self._origin, (self._previous, self._value, self._after))
        if self._preempted is None:
            self._preempted = preempted
        return self._backoff()

    def _commit(self) -> list[Effect]:
        self.phase = Phase.COMMIT
        self._deadline = self._now + self.timeout_ticks
        proposal = self._message
        if not isinstance(proposal, Propose):
            violated("a commit follows a proposal")
        commit = self._message = new_commit(self.req, self.node, self.key, self.ballot, proposal.value,
                                            self._noop(), self._origin, self._after, True)
        # The acks come from the replicas that accepted (a quorum); the rest get it quiet, their
        # acks unneeded (module docstring, 3.); a resend asks every replica that has not acked.
        # A peer that committed on accept acked already: its Accepted said it applied the commit.
        accepted, self._yes = self._yes, set(self._applied)
        self._last_send = self._now
        quiet = None
        effects: list[Effect] = []
        for r in self.replicas:
            if r in self._applied:
                continue
            if r in accepted:
                effects.append(_send(r, commit))
            else:
                if quiet is None:  # ``commit`` with ack=False (``replace`` is ~4x slower)
                    quiet = new_commit(commit.req, commit.sender, commit.key, commit.ballot, commit.value,
                                       commit.noop, commit.origin, commit.after, False)
                effects.append(_send(r, quiet))
        return effects + self._committed() if len(self._yes) >= self.quorum else effects

    def _committed(self) -> list[Effect]:
        """A quorum acknowledged the commit (the durability rule): done, or, when the round
        finished another's proposal, the caller's operation starts over."""
        if self._finishing and not self._proposing_mine:
            return self._new_round()
        return self._done(Chosen(key=self.key, ballot=self.ballot, previous=self._previous, value=self._value))

    def _backoff(self) -> list[Effect]:
        self._nacked_rounds += 1
        self.phase = Phase.BACKOFF
        cap = min(self.backoff_ticks_max, 1 << min(self._nacked_rounds, 16))
        self._backoff_left = self._rng.randint(1, cap)
        return []

    def _done(self, outcome: Outcome) -> list[Effect]:
        self.phase = Phase.DONE
        self.outcome = outcome
        return [Done(outcome=outcome)]
