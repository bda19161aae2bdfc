"""The positional builders of Paxos's messages and acceptor states (paxos_messages.new_*,
builders.positional_builder) build exactly what the keyword constructors build: the same
type, equal, hashed alike, still frozen, the same wire form; ``new_state`` keeps
``AcceptorState``'s checks."""

from __future__ import annotations

import dataclasses

import pytest

import replikv.core.dynamo.messages as dm
import replikv.core.dynamo.paxos as px
import replikv.core.dynamo.paxos_messages as pm
from replikv.core.invariant import InvariantViolation

B1, B2, B3, B4 = pm.Ballot(7, "n1"), pm.Ballot(8, "n2"), pm.Ballot(9, "n3"), pm.Ballot(10, "n1")
E = pm.Electorate(("n1", "n2", "n3"), 2)
P1 = pm.Proposal(ballot=B1, value=b"a", origin=B2, after=B3)
P2 = pm.Proposal(ballot=B2, value=None)


def _pairs() -> list[tuple[object, object]]:
    # every field given a value distinct from its neighbours' and from its default, so a field
    # set in the wrong slot makes the pair unequal
    return [
        (pm.new_proposal(B1, b"a", B2, B3), pm.Proposal(ballot=B1, value=b"a", origin=B2, after=B3)),
        (pm.new_state(B4, P2, P1), pm.AcceptorState(promised=B4, accepted=P2, committed=P1)),
        (pm.new_prepare(3, "n1", b"k", B1, E), pm.Prepare(req=3, sender="n1", key=b"k", ballot=B1, electorate=E)),
        (pm.new_promise(3, "n2", b"k", B1, P2, P1, 42, b"v"),
         pm.Promise(req=3, sender="n2", key=b"k", ballot=B1, accepted=P2, committed=P1, current_hlc=42,
                    current=b"v")),
        (pm.new_propose(3, "n1", b"k", B4, b"v", E, B2, True, B3, True),
         pm.Propose(req=3, sender="n1", key=b"k", ballot=B4, value=b"v", electorate=E, origin=B2, commit=True,
                    after=B3, noop=True)),
        (pm.new_accepted(3, "n3", b"k", B1, True),
         pm.Accepted(req=3, sender="n3", key=b"k", ballot=B1, committed=True)),
        (pm.new_commit(3, "n1", b"k", B4, b"v", True, B2, B3, False),
         pm.Commit(req=3, sender="n1", key=b"k", ballot=B4, value=b"v", noop=True, origin=B2, after=B3, ack=False)),
        (pm.new_commit_ack(3, "n2", b"k", B1), pm.CommitAck(req=3, sender="n2", key=b"k", ballot=B1)),
        (pm.new_nack(3, "n2", b"k", B1, pm.NackPhase.PROPOSE, B4, True, True),
         pm.Nack(req=3, sender="n2", key=b"k", ballot=B1, phase=pm.NackPhase.PROPOSE, promised=B4,
                 maybe_accepted=True, fenced=True)),
        # the effects (paxos.py's private builders)
        (px._send("n2", pm.new_commit_ack(3, "n2", b"k", B1)),
         px.Send(to="n2", msg=pm.CommitAck(req=3, sender="n2", key=b"k", ballot=B1))),
        (px._persist(b"k", pm.new_state(B4, P2, P1)),
         px.Persist(key=b"k", state=pm.AcceptorState(promised=B4, accepted=P2, committed=P1))),
        (px._apply_commit(b"k", B2, b"v", True), px.ApplyCommit(key=b"k", ballot=B2, value=b"v", behind=True)),
        (dm._new_paxos_body(pm.new_commit_ack(3, "n2", b"k", B1), b"x"),
         dm.PaxosBody(msg=pm.CommitAck(req=3, sender="n2", key=b"k", ballot=B1), encoded=b"x")),
    ]


def test_builders_make_the_objects_the_constructors_make() -> None:
    for built, ref in _pairs():
        assert type(built) is type(ref)
        assert built == ref and hash(built) == hash(ref)
        assert dataclasses.astuple(built) == dataclasses.astuple(ref)  # type: ignore[call-overload]
        if isinstance(ref, pm.AcceptorState):
            assert pm.encode_state(built) == pm.encode_state(ref)  # type: ignore[arg-type]
        elif not isinstance(ref, (pm.Proposal, px.Send, px.Persist, px.ApplyCommit, dm.PaxosBody)):
            assert pm.encode(built) == pm.encode(ref)  # type: ignore[arg-type]
            assert pm.decode(pm.encode(built)) == ref  # type: ignore[arg-type]
        for obj in (built, ref):  # still frozen: assigning a field fails alike for both (TypeError:
            # 3.11's frozen __setattr__ on a slotted class fails before raising FrozenInstanceError)
            with pytest.raises((AttributeError, TypeError)):
                setattr(obj, dataclasses.fields(ref)[0].name, None)  # type: ignore[arg-type]


def test_messages_of_different_kinds_with_the_same_fields_are_unequal() -> None:
    ack = pm.new_commit_ack(3, "n2", b"k", B1)
    assert ack != pm.new_accepted(3, "n2", b"k", B1, False)
    assert ack == pm.CommitAck(req=3, sender="n2", key=b"k", ballot=B1)


def test_new_state_keeps_the_acceptor_state_checks() -> None:
    with pytest.raises(InvariantViolation):
        pm.new_state(B1, pm.Proposal(ballot=B2, value=b"x"), None)  # accepted above the promise
    with pytest.raises(InvariantViolation):
        pm.new_state(B1, None, pm.Proposal(ballot=B2, value=b"x"))  # committed above the promise
