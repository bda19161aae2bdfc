"""A Paxos message in line in the frame (messages.py, ``PaxosBody``, ``FEATURE_PAXOS_BODY``):
its wire form, and a mixed exchange where one replica did not announce it and gets (and sends)
only the packed ``Paxos`` form."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest

from replikv.config import NodeOptions
from replikv.core.dynamo import messages as dm
from replikv.core.dynamo import paxos_messages as pm
from replikv.core.dynamo.replica import PaxosDone, Replica, Send
from replikv.core.dynamo.ring import Ring

N3 = ["n1", "n2", "n3"]
B = pm.Ballot(hlc=5 << 16, node="n1")
E = pm.Electorate(("n1", "n2", "n3"), 2)
SAMPLES: list[pm.PaxosMsg] = [
    pm.Prepare(req=1, sender="n1", key=b"k", ballot=B, electorate=E),
    pm.Promise(req=1, sender="n2", key=b"k", ballot=B, accepted=pm.Proposal(ballot=B, value=b"v"),
               committed=None, current_hlc=3, current=b"old"),
    pm.Propose(req=1, sender="n1", key=b"k", ballot=B, value=b"v", electorate=E, origin=B, commit=True, after=None),
    pm.Accepted(req=1, sender="n2", key=b"k", ballot=B, committed=True),
    pm.Commit(req=1, sender="n1", key=b"k", ballot=B, value=None, noop=False, origin=B, after=None, ack=False),
    pm.CommitAck(req=1, sender="n3", key=b"k", ballot=B),
    pm.Nack(req=1, sender="n3", key=b"k", ballot=B, phase=pm.NackPhase.PROPOSE, promised=B, maybe_accepted=False),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_a_paxos_body_round_trips_one_msgpack_layer_shorter_than_the_packed_form(msg: pm.PaxosMsg) -> None:
    body = dm.paxos_body(msg)
    assert body.encoded == dm.encode(dm.PaxosBody(msg=msg))  # made once by the sender; the same bytes
    assert dm.encode(body) is body.encoded
    assert dm.decode(body.encoded) == dm.PaxosBody(msg=msg)
    packed = dm.encode(dm.Paxos(data=pm.encode(msg)))
    assert len(body.encoded) < len(packed)  # the inner bin header is gone
    batch = dm.decode(dm.encode_batch([body.encoded, packed]))
    assert batch == dm.Batch(msgs=(dm.PaxosBody(msg=msg), dm.Paxos(data=pm.encode(msg))))


def test_a_malformed_paxos_body_makes_the_frame_undecodable() -> None:
    wire = pm.wire(SAMPLES[0])
    for bad in ([*wire[:3], "not bytes", *wire[4:]], [99, *wire[1:]], wire[:3], "x", []):
        with pytest.raises(dm.DynamoCodecError):
            dm.decode(msgpack.packb([18, bad], use_bin_type=True))
    with pytest.raises(dm.DynamoCodecError):
        dm.decode(msgpack.packb([18, wire, 1], use_bin_type=True))


def test_a_round_mixes_forms_by_what_each_peer_announced_and_every_write_commits() -> None:
    """n1 and n2 announced ``FEATURE_PAXOS_BODY`` to each other: their Paxos messages go in line.
    n3 did not (an older node), and heard no such announcement from them: every Paxos message
    to or from n3 is the packed ``Paxos`` form. Writes started at each node all commit, and
    the three replicas end holding every value."""
    old = tuple(f for f in dm.FEATURES if f != dm.FEATURE_PAXOS_BODY)
    nodes = {n: Replica(n, Ring(N3, 3, 16), conflicts="lww", timeout_us=10**12, rng=random.Random(1),
                        ae_interval_ms=0) for n in N3}
    for a in N3:
        for b in N3:
            if a != b:
                nodes[a].step(b, dm.Hello(features=old if "n3" in (a, b) else dm.FEATURES), 0, 0)
    assert nodes["n1"].paxos_body_peers == {"n2"} and nodes["n3"].paxos_body_peers == set()
    kinds: dict[tuple[str, str], set[type]] = {}
    done: list[PaxosDone] = []

    def deliver(frm: str, effects: list[Any], now: int) -> None:
        sends = [e for e in effects if isinstance(e, Send)]
        done.extend(e for e in effects if isinstance(e, PaxosDone))
        for peer, frame in nodes[frm].frames(sends, NodeOptions().max_frame_bytes) if sends else ():
            msg = dm.decode(frame)
            out: list[Any] = []
            for one in msg.msgs if isinstance(msg, dm.Batch) else (msg,):
                kinds.setdefault((frm, peer), set()).add(type(one))
                out.extend(nodes[peer].step(frm, one, now, now * 1000))
            deliver(peer, out, now)

    keys = []
    for i in range(12):
        name = N3[i % 3]
        key = b"fresh:%d" % i
        keys.append(key)
        deliver(name, nodes[name].paxos(i + 1, key, lambda current: b"y" if current is None else current, 1000 + i),
                1000 + i)
    assert len(done) == 12
    for pair, seen in kinds.items():
        if "n3" in pair:
            assert dm.PaxosBody not in seen and dm.Paxos in seen, pair
        else:
            assert dm.Paxos not in seen and dm.PaxosBody in seen, pair
    for key in keys:
        assert {nodes[n]._current(key)[1] for n in N3} == {b"y"}
