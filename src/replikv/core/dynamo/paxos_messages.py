"""Messages of single-decree Paxos per key (Lamport, "Paxos Made Simple" §2;
Cassandra's lightweight transactions, CASSANDRA-5062), with their wire form.

Every message names the key, the request id ``req`` of the proposer's
operation (the driver routes a reply to the proposer that owns ``req``) and
its ``sender`` (the driver checks it against the authenticated peer). A reply
repeats the ``ballot`` of the request it answers, so a proposer drops replies
to an earlier round of its own.

- ``Prepare`` / ``Promise``: phase 1. A promise carries the acceptor's
  accepted proposal (or None), its most recent commit (or None) and the
  replica's current data for the key (``current_hlc``, ``current``), because
  plain writes may have written the key outside Paxos.
- ``Propose`` / ``Accepted``: phase 2. ``commit`` (with ``after`` and ``noop``, the fields the
  round's Commit would carry): commit on accept (paxos.py, "Commit on accept"): the sender's own
  acceptor accepted this proposal before it left and the electorate's quorum is two, so an
  acceptor that accepts it knows the value chosen and commits it at once, saying so in its
  ``Accepted`` (``committed``). Only to a peer that announced ``FEATURE_COMMIT_ON_ACCEPT``
  (messages.py; ``Replica`` sends the others the plain form, and the round goes on as before).
- ``Commit`` / ``CommitAck``: Cassandra's third round: the chosen value is
  applied to the replicas' data and the acceptors' Paxos state is reset.
  ``noop``: the round proposed the value it read (a failed CAS, a SERIAL
  read): the acceptors forget the accepted proposal and raise their promise,
  but neither record a commit nor write data (Cassandra commits an empty
  update): rewriting the value read would clobber whatever the data holds
  beside it (a counter's increments on other replicas).
  ``ack`` False (a quiet commit): the acceptor applies it but sends no
  ``CommitAck``. The proposer waits for a quorum of acks, and asks them of
  the replicas that accepted its proposal (a quorum); the others, and the
  stale replicas a round repairs, are sent it quiet: their acks were received
  and dropped. Only to a peer that announced ``FEATURE_QUIET_COMMIT``
  (messages.py; ``Replica`` sends the others the acknowledged form, whose
  ack the proposer drops as before).
- ``Electorate``: the participants of a round for its key (sorted) and the
  quorum it needs of them, as the proposer's ring says; ``Prepare`` and
  ``Propose`` carry it, and an acceptor whose own ring gives the key another
  electorate refuses them (``Nack`` with ``fenced``; see paxos.py, "a round
  fenced by its electorate"). None: sent by a node of an older version, or to
  one (``Replica`` strips it for a peer that did not announce
  ``FEATURE_ELECTORATE``): not checked.
- ``Nack``: a Prepare or a Propose refused because the acceptor promised a
  higher ballot (``promised``), or, with ``fenced``, because its electorate
  for the key differs from the request's. For a refused Propose, ``maybe_accepted`` is
  False only if the acceptor can prove it never accepted that ballot (its
  accepted and committed ballots, which only grow, are both lower): the
  proposer needs that proof from every replica before it may retry a value
  that changes the key (see paxos.py).

- Provenance: a ``Propose`` names the ballot that decided its value
  (``origin``), a ``Commit`` that and the newest commit its round saw
  (``after``); the acceptor keeps them with its accepted proposal and commit
  (``Proposal``), so a proposer holding a change that was refused after some
  replicas accepted it can tell whether it was chosen (paxos.py, "Refusals
  while proposing"). None: from or to a node of an older version (``Replica``
  strips them, ``without_provenance``, for a peer that did not announce
  ``FEATURE_PROVENANCE``).

``AcceptorState`` (what the driver persists per key) and ``Proposal`` live
here too because they travel inside messages or to disk. Values are
``bytes | None`` (None: the key is absent) and opaque to Paxos.

Wire form: ``msgpack([tag, req, sender, key, ...])``; ``decode`` checks every
field and raises ``PaxosCodecError`` (and nothing else) on a frame it does not
understand, so a peer speaking garbage is dropped, never obeyed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, NamedTuple

import msgpack

from replikv.core.builders import positional_builder
from replikv.core.invariant import invariant, violated

__all__ = [
    "ZERO_BALLOT",
    "Accepted",
    "AcceptorState",
    "Ballot",
    "Commit",
    "CommitAck",
    "Electorate",
    "Nack",
    "NackPhase",
    "PaxosCodecError",
    "PaxosMsg",
    "Prepare",
    "Promise",
    "Proposal",
    "Propose",
    "decode",
    "decode_state",
    "encode",
    "encode_state",
    "from_wire",
    "has_provenance",
    "new_accepted",
    "new_commit",
    "new_commit_ack",
    "new_nack",
    "new_prepare",
    "new_promise",
    "new_propose",
    "new_proposal",
    "new_state",
    "state_without_provenance",
    "wire",
    "without_provenance",
]

Value = bytes | None


class Ballot(NamedTuple):
    """A proposal number, totally ordered by ``(hlc, node)``: the HLC makes
    ballots track time across nodes, the node id breaks ties. A named tuple: built
    (several per message decoded) and compared (``max``, ``<``) in C, with the order and
    hash of the ``(hlc, node)`` tuple, as the frozen dataclass it replaces had."""

    hlc: int
    node: str


ZERO_BALLOT = Ballot(hlc=0, node="")  # below every real ballot


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """A proposal accepted or committed at ``ballot``. Provenance (None from a node of an older
    version): ``origin``, the ballot of the round that decided ``value`` (a round finishing an
    accepted proposal keeps that proposal's origin); for a commit, ``after``, the newest commit
    the committing round saw (ZERO_BALLOT: none), i.e. the instance it closed."""

    ballot: Ballot
    value: Value
    origin: Ballot | None = None
    after: Ballot | None = None

    @property
    def decided_at(self) -> Ballot:
        return self.origin if self.origin is not None else self.ballot


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptorState:
    """One key's acceptor state (Cassandra's PaxosState): persisted before any
    reply that depends on it leaves.

    Invariants: ``accepted.ballot <= promised``; ``committed.ballot <= promised``.
    """

    promised: Ballot = ZERO_BALLOT
    accepted: Proposal | None = None
    committed: Proposal | None = None  # the most recent commit

    def __post_init__(self) -> None:  # the checks in line: ~10 states are made per Paxos write
        if self.accepted is not None and self.accepted.ballot > self.promised:
            violated("accepted ballot above the promised one")
        if self.committed is not None and self.committed.ballot > self.promised:
            violated("committed ballot above the promised one")


@dataclass(frozen=True, slots=True)
class Electorate:
    """A round's participants for its key, sorted, and the quorum it needs of them. Two
    electorates are equal only if every quorum of one is a quorum of the other."""

    members: tuple[str, ...]
    quorum: int

    def __post_init__(self) -> None:
        invariant(list(self.members) == sorted(set(self.members)), "electorate members: sorted, no repeats")
        invariant(len(self.members) // 2 < self.quorum <= len(self.members), "electorate quorum: a majority")


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare:
    req: int
    sender: str
    key: bytes
    ballot: Ballot
    electorate: Electorate | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Promise:
    req: int
    sender: str
    key: bytes
    ballot: Ballot
    accepted: Proposal | None
    committed: Proposal | None
    current_hlc: int
    current: Value


@dataclass(frozen=True, slots=True, kw_only=True)
class Propose:
    req: int
    sender: str
    key: bytes
    ballot: Ballot
    value: Value
    electorate: Electorate | None = None
    origin: Ballot | None = None  # the round that decided value (None: this one, or an older node)
    # Commit on accept (module docstring): the sender's acceptor accepted this proposal; one that
    # accepts it commits it at once, as the Commit (``after``, ``noop``) the round would send.
    commit: bool = False
    after: Ballot | None = None  # commit only: the newest commit the round saw (Commit.after)
    noop: bool = False  # commit only: Commit.noop


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    req: int
    sender: str
    key: bytes
    ballot: Ballot
    committed: bool = False  # the answer to a Propose with ``commit``: accepted and committed


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit:
    req: int
    sender: str
    key: bytes
    ballot: Ballot
    value: Value
    noop: bool = False  # the round changed nothing (a failed CAS, a SERIAL read): no data write
    origin: Ballot | None = None  # provenance, as ``Proposal``'s (None: an older node)
    after: Ballot | None = None
    ack: bool = True  # False: a quiet commit, applied but not acknowledged (module docstring)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitAck:
    req: int
    sender: str
    key: bytes
    ballot: Ballot


class NackPhase(Enum):
    PREPARE = 1
    PROPOSE = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    req: int
    sender: str
    key: bytes
    ballot: Ballot  # the refused ballot
    phase: NackPhase
    promised: Ballot  # the higher ballot the acceptor promised
    maybe_accepted: bool = False  # PROPOSE only: see the module docstring
    fenced: bool = False  # the acceptor's electorate for the key is not the request's


PaxosMsg = Prepare | Promise | Propose | Accepted | Commit | CommitAck | Nack

# The hot path's constructors (builders.positional_builder): every field positional, in the order
# declared above, no defaults; each builds the same, equal, still frozen object as the class's
# keyword ``__init__`` (``AcceptorState``'s checks included) in half the time or less (a Promise
# 1.2 -> 0.5 us, an Accepted 0.8 -> 0.4 us): a Paxos write builds ~10 messages and ~10 states
# on its three replicas (BENCHMARKS.md, "Round 3 (helper px25c)").
new_proposal = positional_builder(Proposal)  # (ballot, value, origin, after)
new_state = positional_builder(AcceptorState)  # (promised, accepted, committed)
new_prepare = positional_builder(Prepare)  # (req, sender, key, ballot, electorate)
# (req, sender, key, ballot, accepted, committed, current_hlc, current)
new_promise = positional_builder(Promise)
# (req, sender, key, ballot, value, electorate, origin, commit, after, noop)
new_propose = positional_builder(Propose)
new_accepted = positional_builder(Accepted)  # (req, sender, key, ballot, committed)
# (req, sender, key, ballot, value, noop, origin, after, ack)
new_commit = positional_builder(Commit)
new_commit_ack = positional_builder(CommitAck)  # (req, sender, key, ballot)
# (req, sender, key, ballot, phase, promised, maybe_accepted, fenced)
new_nack = positional_builder(Nack)

_PREPARE, _PROMISE, _PROPOSE, _ACCEPTED, _COMMIT, _COMMIT_ACK, _NACK = range(1, 8)
_I64 = 1 << 63


class PaxosCodecError(ValueError):
    """A frame that is not a well-formed Paxos message or acceptor state."""


def _plain(p: Proposal | None) -> Proposal | None:
    return p if p is None or (p.origin is None and p.after is None) else replace(p, origin=None, after=None)


def without_provenance(msg: PaxosMsg) -> PaxosMsg:
    """``msg`` as a node of an older version reads it: no provenance (a proposer treats a
    proposal without it as decided at its own ballot and a commit without ``after`` as closing
    an unknown instance: never a proof about its own held proposal)."""
    match msg:
        case Propose() if msg.origin is not None or msg.commit:
            return replace(msg, origin=None, commit=False, after=None, noop=False)
        case Commit() if msg.origin is not None or msg.after is not None:
            return replace(msg, origin=None, after=None)
        case Promise() if _plain(msg.accepted) is not msg.accepted or _plain(msg.committed) is not msg.committed:
            return replace(msg, accepted=_plain(msg.accepted), committed=_plain(msg.committed))
    return msg


def has_provenance(msg: PaxosMsg) -> bool:
    """Whether ``msg`` carries provenance. A node sends it only to a peer it knows reads it, so
    it comes only from a node of a version that reads it too (its codec decodes what it encodes):
    the receiver may send that node provenance from then on, even if its ``Hello`` was lost."""
    match msg:
        case Propose() | Commit():
            return msg.origin is not None
        case Promise():
            return ((msg.accepted is not None and msg.accepted.origin is not None)
                    or (msg.committed is not None and msg.committed.origin is not None))
    return False


def state_without_provenance(state: AcceptorState) -> AcceptorState:
    """``state`` as a node of an older version reads it (``without_provenance``)."""
    return AcceptorState(promised=state.promised, accepted=_plain(state.accepted), committed=_plain(state.committed))


def _b(b: Ballot) -> list[Any]:
    return [b.hlc, b.node]


def _p(p: Proposal | None) -> list[Any] | None:
    if p is None:
        return None
    body = [p.ballot.hlc, p.ballot.node, p.value]
    if p.origin is not None or p.after is not None:  # else the form older nodes read
        body += [_ob(p.origin), _ob(p.after)]
    return body


def _ob(b: Ballot | None) -> list[Any] | None:
    return None if b is None else _b(b)


def _e(e: Electorate | None) -> list[Any]:
    """The electorate as an optional last field: absent when None (the form older nodes read)."""
    return [] if e is None else [[list(e.members), e.quorum]]


def _wire(msg: PaxosMsg) -> list[Any]:
    head = [msg.req, msg.sender, msg.key, _b(msg.ballot)]
    match msg:
        case Prepare():
            return [_PREPARE, *head, *_e(msg.electorate)]
        case Promise():
            return [_PROMISE, *head, _p(msg.accepted), _p(msg.committed), msg.current_hlc, msg.current]
        case Propose():
            if msg.commit:  # commit on accept: electorate and origin always, then after and noop
                invariant(msg.electorate is not None and msg.origin is not None,
                          "a Propose that commits on accept names its electorate and origin")
                return [_PROPOSE, *head, msg.value, *_e(msg.electorate), _ob(msg.origin), _ob(msg.after), msg.noop]
            if msg.origin is not None:
                return [_PROPOSE, *head, msg.value, *(_e(msg.electorate) or [None]), _b(msg.origin)]
            return [_PROPOSE, *head, msg.value, *_e(msg.electorate)]
        case Accepted():
            return [_ACCEPTED, *head, True] if msg.committed else [_ACCEPTED, *head]
        case Commit():
            if not msg.ack:  # the quiet form: both provenance slots, then False
                return [_COMMIT, *head, msg.value, msg.noop, _ob(msg.origin), _ob(msg.after), False]
            provenance = [] if msg.origin is None and msg.after is None else [_ob(msg.origin), _ob(msg.after)]
            return [_COMMIT, *head, msg.value, msg.noop, *provenance]
        case CommitAck():
            return [_COMMIT_ACK, *head]
        case Nack():
            return [_NACK, *head, msg.phase.value, _b(msg.promised), msg.maybe_accepted,
                    *([True] if msg.fenced else [])]


# ``msgpack.packb`` builds a Packer per call; one kept is ~0.5 µs less per encode (a Paxos write
# encodes 11 messages and states). Same bytes. The core runs on one thread (the event loop's).
_pack = msgpack.Packer(use_bin_type=True).pack


def encode(msg: PaxosMsg) -> bytes:
    out: bytes = _pack(_wire(msg))
    return out


def wire(msg: PaxosMsg) -> list[Any]:
    """``msg`` as the list ``encode`` packs: a frame that carries it in line (messages.py,
    ``PaxosBody``) packs it once with the frame's other fields; ``from_wire`` reads it back."""
    return _wire(msg)


def encode_state(state: AcceptorState) -> bytes:
    """The stored form of one key's acceptor state."""
    body = [_b(state.promised), _p(state.accepted), _p(state.committed)]
    out: bytes = _pack(body)
    return out


def _int(x: object, what: str) -> int:
    if type(x) is not int or not 0 <= x < _I64:
        raise PaxosCodecError(f"{what}: expected an integer in [0, 2**63)")
    return x


def _str(x: object, what: str) -> str:
    if type(x) is not str:
        raise PaxosCodecError(f"{what}: expected a string")
    return x


def _value(x: object, what: str) -> Value:
    if x is not None and type(x) is not bytes:
        raise PaxosCodecError(f"{what}: expected bytes or nil")
    return x


def _ballot(x: object, what: str) -> Ballot:
    """``[hlc, node]``: an integer in [0, 2**63) and a string (the checks of ``_int`` and
    ``_str``, in line: several ballots a message)."""
    if type(x) is list and len(x) == 2:
        hlc, node = x
        if type(hlc) is int and 0 <= hlc < _I64 and type(node) is str:
            return Ballot(hlc, node)
    raise PaxosCodecError(f"{what}: expected [hlc, node], an integer in [0, 2**63) and a string")


def _opt_ballot(x: object, what: str) -> Ballot | None:
    return None if x is None else _ballot(x, what)


def _proposal(x: object, what: str) -> Proposal | None:
    if x is None:
        return None
    if type(x) is not list or len(x) not in (3, 5):
        raise PaxosCodecError(f"{what}: expected [hlc, node, value(, origin, after)] or nil")
    return new_proposal(_ballot(x[:2], what), _value(x[2], what), _opt_ballot(x[3], what) if len(x) == 5 else None,
                        _opt_ballot(x[4], what) if len(x) == 5 else None)


def _unpack(data: bytes) -> list[Any]:
    try:
        body = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as e:  # msgpack raises many kinds (ExtraData, ValueError, ...)
        raise PaxosCodecError(f"not msgpack: {type(e).__name__}") from None
    if type(body) is not list or not body:
        raise PaxosCodecError("expected a non-empty list")
    return body


_LENGTHS: dict[int, tuple[int, ...]] = {  # the optional last field: an electorate, or a Nack's fenced
    _PREPARE: (5, 6), _PROMISE: (9,), _PROPOSE: (6, 7, 8, 10), _ACCEPTED: (5, 6), _COMMIT: (7, 9, 10), _COMMIT_ACK: (5,),
    _NACK: (8, 9)}


_ELECTORATES: dict[tuple[tuple[str, ...], int], Electorate] = {}  # decoded and checked already
_ELECTORATES_MAX = 1024  # a bound: a peer cycling through electorates only costs the checks again


def _electorate(body: list[Any], at: int) -> Electorate | None:
    """The optional electorate field at ``at``. A frame names one of the few electorates of the
    ring (its replica sets), so each is checked and built once and then looked up: the key is
    built only from a list of strings and an int, so it is hashable."""
    if len(body) <= at:
        return None
    x = body[at]
    if type(x) is list and len(x) == 2 and type(x[0]) is list and type(x[1]) is int:
        names = x[0]
        if all(type(m) is str for m in names):
            key = (tuple(names), x[1])
            known = _ELECTORATES.get(key)
            if known is not None:
                return known
            e = _checked_electorate(x)
            if len(_ELECTORATES) >= _ELECTORATES_MAX:
                _ELECTORATES.clear()
            _ELECTORATES[key] = e
            return e
    return _checked_electorate(x)


def _checked_electorate(x: Any) -> Electorate:
    if (type(x) is not list or len(x) != 2 or type(x[0]) is not list or not x[0]
            or not all(type(m) is str and m for m in x[0])):
        raise PaxosCodecError("electorate: expected [[node, ...], quorum]")
    members = tuple(x[0])
    quorum = _int(x[1], "electorate quorum")
    if list(members) != sorted(set(members)) or not len(members) // 2 < quorum <= len(members):
        raise PaxosCodecError("electorate: members sorted without repeats, and a majority quorum")
    return Electorate(members, quorum)


def decode(data: bytes) -> PaxosMsg:
    return from_wire(_unpack(data))


def from_wire(body: Any) -> PaxosMsg:
    """The message ``wire`` gave, unpacked (by ``decode``, or in line in a frame): every field
    checked as ``decode`` checks it; ``PaxosCodecError`` otherwise."""
    if type(body) is not list or not body:
        raise PaxosCodecError("expected a non-empty list")
    tag = body[0]
    if type(tag) is not int or len(body) not in _LENGTHS.get(tag, ()):
        raise PaxosCodecError(f"unknown message tag {tag!r} or wrong length {len(body)}")
    req, sender = body[1], body[2]  # ``_int`` and ``_str``'s checks in line (5 decodes a Paxos write)
    if type(req) is not int or not 0 <= req < _I64:
        raise PaxosCodecError("req: expected an integer in [0, 2**63)")
    if type(sender) is not str or not sender:
        raise PaxosCodecError("sender: expected a non-empty string")
    key = body[3]
    if type(key) is not bytes:
        raise PaxosCodecError("key: expected bytes")
    ballot = _ballot(body[4], "ballot")
    if tag == _PREPARE:
        return new_prepare(req, sender, key, ballot, _electorate(body, 5))
    if tag == _PROMISE:
        return new_promise(req, sender, key, ballot, _proposal(body[5], "accepted"), _proposal(body[6], "committed"),
                           _int(body[7], "current hlc"), _value(body[8], "current"))
    if tag == _PROPOSE and len(body) == 10:  # commit on accept
        if type(body[9]) is not bool:
            raise PaxosCodecError("propose noop: expected a boolean")
        e = _electorate(body, 6)
        if e is None:
            raise PaxosCodecError("propose: a commit on accept names its electorate")
        return new_propose(req, sender, key, ballot, _value(body[5], "value"), e, _ballot(body[7], "origin"), True,
                           _opt_ballot(body[8], "after"), body[9])
    if tag == _PROPOSE:
        return new_propose(req, sender, key, ballot, _value(body[5], "value"),
                           None if len(body) == 8 and body[6] is None else _electorate(body, 6),
                           _ballot(body[7], "origin") if len(body) == 8 else None, False, None, False)
    if tag == _ACCEPTED:
        if len(body) == 6 and body[5] is not True:
            raise PaxosCodecError("accepted committed: expected true when present")
        return new_accepted(req, sender, key, ballot, len(body) == 6)
    if tag == _COMMIT:
        if type(body[6]) is not bool:
            raise PaxosCodecError("commit noop: expected a boolean")
        if len(body) == 10 and body[9] is not False:
            raise PaxosCodecError("commit ack: expected false when present")
        return new_commit(req, sender, key, ballot, _value(body[5], "value"), body[6],
                          _opt_ballot(body[7], "origin") if len(body) >= 9 else None,
                          _opt_ballot(body[8], "after") if len(body) >= 9 else None, len(body) != 10)
    if tag == _COMMIT_ACK:
        return new_commit_ack(req, sender, key, ballot)
    # _NACK
    if body[5] not in (NackPhase.PREPARE.value, NackPhase.PROPOSE.value) or type(body[5]) is not int:
        raise PaxosCodecError("nack phase: expected 1 or 2")
    if type(body[7]) is not bool:
        raise PaxosCodecError("nack maybe_accepted: expected a boolean")
    if len(body) == 9 and body[8] is not True:
        raise PaxosCodecError("nack fenced: expected true when present")
    return new_nack(req, sender, key, ballot, NackPhase(body[5]), _ballot(body[6], "promised"), body[7],
                    len(body) == 9)


def decode_state(data: bytes) -> AcceptorState:
    body = _unpack(data)
    if len(body) != 3:
        raise PaxosCodecError("acceptor state: expected [promised, accepted, committed]")
    promised = _ballot(body[0], "promised")
    accepted = _proposal(body[1], "accepted")
    committed = _proposal(body[2], "committed")
    if (accepted is not None and accepted.ballot > promised) or (
            committed is not None and committed.ballot > promised):
        raise PaxosCodecError("acceptor state: a ballot above the promised one")
    return new_state(promised, accepted, committed)
