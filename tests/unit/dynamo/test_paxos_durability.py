"""What a replica logs of its acceptor's states (paxos.py, "the durability rule"): a promise to
a peer's round is logged before the Promise leaves; a promise to a round of its own proposer
is not (only that proposer counts it, and it dies with the process), except while a membership
change is under way; the acceptor's answer to its own round's Propose is logged before the
Propose goes to the others: an accept holds the promise, and a refusal logs the state whose
(possibly unlogged) higher promise refused it."""

from __future__ import annotations

import random
from typing import Any

from replikv.config import NodeOptions
from replikv.core.dynamo import messages as dm
from replikv.core.dynamo import paxos_messages as pm
from replikv.core.dynamo.replica import PaxosDone, Persist, Replica, Send
from replikv.core.dynamo.ring import Ring

N3 = ["n1", "n2", "n3"]


def _cluster() -> dict[str, Replica]:
    nodes = {n: Replica(n, Ring(N3, 3, 16), conflicts="lww", timeout_us=10**12, rng=random.Random(1),
                        ae_interval_ms=0) for n in N3}
    for a in N3:
        for b in N3:
            if a != b:
                nodes[a].step(b, dm.Hello(features=dm.FEATURES), 0, 0)
    return nodes


def _px_states(effects: list[Any], key: bytes) -> list[pm.AcceptorState]:
    return [pm.decode_state(e.entry[2]) for e in effects
            if isinstance(e, Persist) and e.entry[0] == "px" and e.entry[1] == key]


def _frames(nodes: dict[str, Replica], frm: str, effects: list[Any]) -> list[tuple[str, Any]]:
    sends = [e for e in effects if isinstance(e, Send)]
    out = []
    for peer, frame in nodes[frm].frames(sends, NodeOptions().max_frame_bytes) if sends else ():
        msg = dm.decode(frame)
        out.extend((peer, one) for one in (msg.msgs if isinstance(msg, dm.Batch) else (msg,)))
    return out


def _set_nx(current: bytes | None) -> bytes | None:
    return b"y" if current is None else current


def test_a_replica_logs_its_peers_promises_not_its_own_rounds_and_the_accept_holds_the_promise() -> None:
    nodes = _cluster()
    key = b"fresh:1"
    start = nodes["n1"].paxos(1, key, _set_nx, 1000)
    prepares = [(peer, m) for peer, m in _frames(nodes, "n1", start)]
    assert prepares and all(isinstance(m, dm.PaxosBody) and isinstance(m.msg, pm.Prepare) for _, m in prepares)
    ballot = prepares[0][1].msg.ballot
    assert _px_states(start, key) == []  # its own promise: not logged
    assert nodes["n1"].acceptor.state(key).promised == ballot  # but made
    peer, prepare = prepares[0]
    answer = nodes[peer].step("n1", prepare, 1000, 1000 * 1000)
    assert [s.promised for s in _px_states(answer, key)] == [ballot]  # a peer's: logged before the Promise
    (back, promise), = _frames(nodes, peer, answer)
    assert back == "n1" and isinstance(promise.msg, pm.Promise)
    proposing = nodes["n1"].step(peer, promise, 1000, 1000 * 1000)
    accepted = _px_states(proposing, key)
    assert len(accepted) == 1 and accepted[0].promised == ballot and accepted[0].accepted is not None
    assert any(isinstance(m.msg, pm.Propose) for _, m in _frames(nodes, "n1", proposing))
    # the round completes as before
    done: list[PaxosDone] = []
    work = [(peer, "n1", m) for _, m in _frames(nodes, "n1", proposing)]
    while work:
        to, frm, msg = work.pop(0)
        out = nodes[to].step(frm, msg, 1000, 1000 * 1000)
        done.extend(e for e in out if isinstance(e, PaxosDone))
        work.extend((dst, to, m) for dst, m in _frames(nodes, to, out))
    assert len(done) == 1 and {nodes[n]._current(key)[1] for n in N3} == {b"y"}


def test_its_own_rounds_promise_is_logged_while_a_range_streams() -> None:
    """While this replica streams ranges to a new owner, every acceptor state it logs is also
    forwarded to that owner: its own rounds' promises are logged then too."""
    nodes = _cluster()
    nodes["n1"].stream_ranges["n4"] = []
    start = nodes["n1"].paxos(1, b"fresh:2", _set_nx, 1000)
    assert [s.promised.node for s in _px_states(start, b"fresh:2")] == ["n1"]


def test_a_refusal_of_its_own_rounds_propose_logs_the_promise_before_the_round_asks_the_others() -> None:
    """Two rounds of n1's on one key: the second's promise (not logged) makes n1's acceptor
    refuse the first's Propose; the first then asks the other replicas. Before that Propose
    leaves, the acceptor's state, promised to the second round's ballot, is logged: a crash
    right after must not leave n1 free to promise a ballot below the first round's."""
    nodes = _cluster()
    key = b"fresh:3"
    first = nodes["n1"].paxos(1, key, _set_nx, 1000)
    second = nodes["n1"].paxos(2, key, _set_nx, 1000)
    assert _px_states(first, key) == [] and _px_states(second, key) == []
    (peer, prepare), = [(p, m) for p, m in _frames(nodes, "n1", first) if m.msg.req == 1]
    later = nodes["n1"].acceptor.state(key).promised
    assert prepare.msg.ballot < later
    (_, promise), = _frames(nodes, peer, nodes[peer].step("n1", prepare, 1000, 1000 * 1000))
    refused = nodes["n1"].step(peer, promise, 1000, 1000 * 1000)
    assert [s.promised for s in _px_states(refused, key)] == [later]
    proposes = [(p, m.msg) for p, m in _frames(nodes, "n1", refused) if isinstance(m.msg, pm.Propose)]
    assert proposes and all(m.req == 1 and m.ballot == prepare.msg.ballot for _, m in proposes)
