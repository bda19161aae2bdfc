"""Paxos across a membership change, on the Replica core (core/dynamo/replica.py) with scripted
messages: the rule of Cassandra's Paxos with pending ranges (CASSANDRA-8346): a round's
participants are the old replicas plus the pending ones, and it needs a quorum of the old plus
one answer per pending replica; and the acceptor state travels with a key's data when its range
is streamed to a new owner. The membership simulator found both missing (seeds 30193, 30117,
30176 for the first; 30025, 30164, 30265 for the second; ``--nodes 4 --paxos --membership``)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from replikv.core.dynamo import membership as mb
from replikv.core.dynamo import messages as dm
from replikv.core.dynamo import paxos as px
from replikv.core.dynamo import paxos_messages as pm
from replikv.core.dynamo.replica import CATCH_UP_TRIES, PaxosDone, Persist, Replica, Send
from replikv.core.dynamo.ring import Ring
from replikv.core.crdt.hlc import Hlc

N3 = ["n1", "n2", "n3"]
OLD = Ring(N3, 3, 16)
NEW = Ring([*N3, "n4"], 3, 16)
# a key that n4 gains from n3 when it joins: old replicas n1 n2 n3, new ones n1 n2 n4
KEY = next(k for i in range(10_000)
           if set(OLD.preference_list(k := f"k{i}".encode())) == {"n1", "n2", "n3"}
           and set(NEW.preference_list(k)) == {"n1", "n2", "n4"})


def member(name: str) -> mb.Member:
    return mb.Member(id=name, host="127.0.0.1", port=7000 + int(name[1:]), peer_port=17000 + int(name[1:]))


def join_state(epoch: int, reads_new: bool) -> mb.RingState:
    """n4 joining n1..n3, driven by n9 (a node none of these replicas is)."""
    return mb.RingState(epoch=epoch, members=tuple(member(n) for n in N3), change="add", node=member("n4"),
                        coordinator="n9", reads_new=reads_new)


def replica(name: str, st: mb.RingState, seed: int = 1) -> Replica:
    ms = mb.Membership(name, st, replicas=3, vnodes=16)
    return Replica(name, OLD, conflicts="lww", timeout_us=10**9, rng=random.Random(seed), ae_interval_ms=0,
                   hlc=Hlc(), membership=ms)


def paxos_of(m: dm.Paxos | dm.PaxosBody) -> pm.PaxosMsg:
    """The Paxos message a frame's message carries, in either form (messages.py)."""
    return m.msg if isinstance(m, dm.PaxosBody) else pm.decode(m.data)


def paxos_sends(out: list[Any]) -> list[tuple[str, pm.PaxosMsg]]:
    return [(e.to, paxos_of(e.msg)) for e in out if isinstance(e, Send) and isinstance(e.msg, (dm.Paxos, dm.PaxosBody))]


def promise_from(node: str, prepare: pm.Prepare, state: pm.AcceptorState = pm.AcceptorState(),
                 current: tuple[int, bytes | None] = (0, None)) -> dm.Paxos:
    """``node``'s acceptor answering ``prepare`` from ``state`` with ``current`` as its data."""
    _, effects = px.acceptor_step(node, state, prepare, current)
    (reply,) = [e.msg for e in effects if isinstance(e, px.Send)]
    return dm.Paxos(data=pm.encode(reply))


# -- participants: the old replicas plus the pending ones -----------------------------------------

def test_the_quorum_is_a_majority_of_the_natural_replicas_plus_every_pending_one() -> None:
    assert px.paxos_quorum(3) == 2 and px.paxos_quorum(5) == 3
    assert px.paxos_quorum(4, 1) == 3 and px.paxos_quorum(5, 2) == 4 and px.paxos_quorum(6, 3) == 5
    for n in (3, 5):  # any such quorum holds a majority of the old set and one of the new set:
        for p in range(n + 1):  # at most p of its answers come from the pending (or the leaving) nodes
            assert px.paxos_quorum(n + p, p) - p > n // 2


def test_during_a_change_paxos_runs_on_old_and_pending_replicas_on_both_epochs() -> None:
    for epoch, reads_new in ((1, False), (2, True)):
        ms = mb.Membership("n1", join_state(epoch, reads_new), replicas=3, vnodes=16)
        participants, pending = ms.paxos_replicas(KEY)
        assert set(participants) == {"n1", "n2", "n3", "n4"} and pending == 1
    ms = mb.Membership("n1", mb.RingState(epoch=3, members=tuple(member(n) for n in [*N3, "n4"]),
                                          coordinator="n9"), replicas=3, vnodes=16)
    assert set(ms.paxos_replicas(KEY)[0]) == {"n1", "n2", "n4"} and ms.paxos_replicas(KEY)[1] == 0


def run_round(r: Replica, answering: list[str], value: bytes) -> list[Any]:
    """Start a write of ``value`` on ``r`` and let exactly ``answering`` (besides ``r``, whose
    acceptor answers itself) promise; returns the effects after the last promise."""
    out = r.paxos(7, KEY, lambda current: value, 0)
    sent = paxos_sends(out)
    prepares = {to: m for to, m in sent if isinstance(m, pm.Prepare)}
    participants, pending = r.membership.paxos_replicas(KEY)  # a quorum of them is asked first
    assert set(prepares) | {r.node} <= set(participants)
    assert len(set(prepares) | {r.node}) == px.paxos_quorum(len(participants), pending)
    prepare = next(iter(prepares.values()))
    assert isinstance(prepare, pm.Prepare)
    for node in answering:
        out = r.step(node, promise_from(node, prepare), 0, 0)
    return out


def test_a_node_reading_new_needs_more_than_a_quorum_of_the_new_owners() -> None:
    """Seed 30193: n1 on the reads-new epoch chose on {n1, n4} (a quorum of the new set) while n2,
    still on the announce, read on {n2, n3} (one of the old set): disjoint. Now {n1, n4} is not
    enough; a third answer from the old set is needed."""
    r = replica("n1", join_state(2, True))
    out = run_round(r, ["n4"], b"w")
    assert not any(isinstance(m, pm.Propose) for _, m in paxos_sends(out))
    out = run_round(replica("n1", join_state(2, True)), ["n4", "n2"], b"w")
    assert {to for to, m in paxos_sends(out) if isinstance(m, pm.Propose)} == {"n2", "n4"}  # the promisers


def test_a_node_on_the_announce_needs_the_pending_owner_as_well() -> None:
    """Seed 30118: rounds of the announce epoch ran on the old set alone and committed after the
    range's chunk had left; a node reading new missed the value. Now {n2, n3} (a quorum of the
    old set) is not enough: the pending owner n4, or the third old replica, must answer too."""
    out = run_round(replica("n2", join_state(1, False)), ["n3"], b"w")
    assert not any(isinstance(m, pm.Propose) for _, m in paxos_sends(out))
    out = run_round(replica("n2", join_state(1, False)), ["n3", "n4"], b"w")
    assert any(isinstance(m, pm.Propose) for _, m in paxos_sends(out))


# -- the acceptor state travels with the stream ----------------------------------------------------

COMMIT = pm.Proposal(ballot=pm.Ballot(hlc=500, node="n1"), value=b"new")
STALE = pm.Proposal(ballot=pm.Ballot(hlc=300, node="n2"), value=b"old")


def source_with_a_commit() -> Replica:
    """n3 (an old replica of KEY) that applied the commit of b"new" at ballot 500."""
    src = replica("n3", join_state(1, False))
    src.step("n1", dm.Paxos(data=pm.encode(pm.Commit(req=1, sender="n1", key=KEY, ballot=COMMIT.ballot,
                                                       value=COMMIT.value))), 0, 0)
    assert src.acceptor.state(KEY).committed == COMMIT and src.store.known(KEY)
    return src


def stream_to_n4(src: Replica) -> tuple[Replica, list[Any]]:
    """Stream the whole circle from ``src`` to n4; deliver the chunk; n4's effects."""
    start = dm.StreamStart(epoch=1, target="n4", ranges=((0, 0),))
    (chunk,) = [e.msg for e in src.step("n9", start, 0, 0) if isinstance(e, Send) and e.to == "n4"]
    assert isinstance(chunk, dm.Put) and chunk.req
    assert dm.decode(dm.encode(chunk)) == chunk  # the acceptor states survive the wire
    target = replica("n4", join_state(1, False), seed=4)
    return target, target.step("n3", chunk, 0, 0)


def test_a_streamed_key_carries_its_acceptor_state_persisted_before_the_ack() -> None:
    src = source_with_a_commit()
    target, out = stream_to_n4(src)
    assert target.store.key_blob(KEY) == src.store.key_blob(KEY)
    assert target.acceptor.state(KEY).committed == COMMIT
    kinds = [("px" if isinstance(e, Persist) and e.entry[0] == "px" else
              "ack" if isinstance(e, Send) and isinstance(e.msg, dm.PutAck) else "") for e in out]
    assert "px" in kinds and "ack" in kinds and kinds.index("px") < kinds.index("ack")
    restarted = replica("n4", join_state(1, False))  # and a restart recovers it from the WAL
    for e in out:
        if isinstance(e, Persist):
            restarted.replay(e.entry)
    assert restarted.acceptor.state(KEY) == target.acceptor.state(KEY)


def test_a_new_owner_and_a_stale_replica_do_not_finish_a_superseded_proposal() -> None:
    """Seeds 30164 and 30265: after the switch, a round's quorum was the new owner n4 (the data
    streamed, no acceptor state) and n2, stale, holding a proposal accepted at ballot 300 and
    never chosen; b"new" was committed at 500 on n1 and n3. The round took ballot 300 for one
    in progress and committed b"old" over b"new". With the commit streamed to n4 it is not."""
    target, _ = stream_to_n4(source_with_a_commit())
    final = mb.RingState(epoch=3, members=tuple(member(n) for n in [*N3, "n4"]), coordinator="n9")
    prop = Replica("n4", NEW, conflicts="lww", timeout_us=10**9, rng=random.Random(5), ae_interval_ms=0,
                   hlc=Hlc(), membership=mb.Membership("n4", final, replicas=3, vnodes=16))
    prop.store, prop.acceptor = target.store, target.acceptor  # n4 after the switch, same disk
    read: list[bytes | None] = []

    def decide(current: bytes | None) -> bytes | None:
        read.append(current)
        return current

    out = prop.paxos(8, KEY, decide, 10_000)  # a ballot above the commit's
    (prepare,) = {m for to, m in paxos_sends(out) if isinstance(m, pm.Prepare)}
    assert isinstance(prepare, pm.Prepare)
    stale = pm.AcceptorState(promised=STALE.ballot, accepted=STALE)
    out = prop.step("n2", promise_from("n2", prepare, stale, (100, b"older")), 0, 0)
    assert read == [b"new"]  # decided on the committed value: nothing re-proposed b"old"
    assert not any(isinstance(m, pm.Propose) and m.value == b"old" for _, m in paxos_sends(out))
    assert not any(isinstance(e, PaxosDone) for e in out)


def test_a_paxos_change_on_a_source_after_its_chunk_left_is_forwarded_to_the_target() -> None:
    src = source_with_a_commit()
    start = dm.StreamStart(epoch=1, target="n4", ranges=((0, 0),))
    src.step("n9", start, 0, 0)  # the chunk is in flight
    later = pm.Ballot(hlc=900, node="n2")
    out = src.step("n2", dm.Paxos(data=pm.encode(pm.Commit(req=2, sender="n2", key=KEY, ballot=later,
                                                             value=b"newer"))), 0, 0)
    fwd = [e.msg for e in out if isinstance(e, Send) and e.to == "n4" and isinstance(e.msg, dm.Put)]
    assert any(dict(m.paxos).get(KEY) == pm.encode_state(src.acceptor.state(KEY)) for m in fwd)
    assert any(KEY in dict(m.states) for m in fwd)  # and the commit's data


def test_merging_acceptor_states_keeps_the_highest_of_each_part() -> None:
    a = pm.AcceptorState(promised=pm.Ballot(hlc=700, node="n1"), accepted=None, committed=COMMIT)
    b = pm.AcceptorState(promised=STALE.ballot, accepted=STALE, committed=None)
    c = pm.AcceptorState(promised=pm.Ballot(hlc=800, node="n3"), accepted=pm.Proposal(
        ballot=pm.Ballot(hlc=800, node="n3"), value=b"x"), committed=None)
    for x in (a, b, c):
        assert px.merge_states(x, x) == x and px.merge_states(x, pm.AcceptorState()) == x
        for y in (a, b, c):
            assert px.merge_states(x, y) == px.merge_states(y, x)
    assert px.merge_states(a, b) == a  # the stale proposal is below the commit: dropped
    abc = px.merge_states(px.merge_states(a, b), c)
    assert abc.committed == COMMIT and abc.accepted == c.accepted and abc.promised == c.promised


def test_a_phase_is_encoded_once_per_wire_form_and_its_frame_shared_by_the_peers_of_that_form() -> None:
    """A Prepare goes to n2, n3 and n4 (as a resend does); n4 did not announce
    ``FEATURE_ELECTORATE``, so it gets the form without the electorate, and n2 and n3 share one
    frame (one encode for the phase)."""
    r = replica("n1", join_state(1, False))
    r.electorate_peers = {"n2", "n3"}
    r.provenance_peers = {"n2", "n3", "n4"}
    prepare = pm.Prepare(req=7, sender="n1", key=KEY, ballot=pm.Ballot(hlc=9 << 16, node="n1"),
                         electorate=r._electorate(KEY))
    out: list[Any] = []
    assert r._paxos_effects([px.Send(to=n, msg=prepare) for n in ("n2", "n3", "n4")], 7, 0, out) == []
    frames = {e.to: e.msg for e in out if isinstance(e, Send) and isinstance(e.msg, dm.Paxos)}
    assert set(frames) == {"n2", "n3", "n4"}
    assert frames["n2"] is frames["n3"] and frames["n4"] is not frames["n2"]
    shared, old = pm.decode(frames["n2"].data), pm.decode(frames["n4"].data)
    assert isinstance(shared, pm.Prepare) and isinstance(old, pm.Prepare)
    assert shared.electorate == r._electorate(KEY) and old.electorate is None
    assert old.ballot == shared.ballot


def test_stream_chunks_are_bounded_in_bytes_and_carry_every_key_once(monkeypatch) -> None:
    """Issue 9: a streaming chunk is one ``Put``, which must fit a peer frame: it ends before the
    key state that would take it past ``PUT_STATES_MAX_BYTES`` (its first alone may pass it); the
    chunks, each sent once the previous is acknowledged, carry every key once, in order, then
    the stream is reported done."""
    import replikv.core.dynamo.replica as replica_mod
    from replikv.core.crdt.store import overwrite_muts

    monkeypatch.setattr(replica_mod, "PUT_STATES_MAX_BYTES", 2500)
    src = replica("n3", join_state(1, False))
    keys = [b"s%02d" % i for i in range(9)]
    for i, k in enumerate(keys):
        src.store.apply_write("n1", 100 + i, overwrite_muts(src.store, k, b"v" * (3000 if i == 4 else 1000)), 0)
    out = src.step("n9", dm.StreamStart(epoch=1, target="n4", ranges=((0, 0),)), 0, 0)
    chunks: list[list[bytes]] = []
    while True:
        puts = [e.msg for e in out if isinstance(e, Send) and e.to == "n4" and isinstance(e.msg, dm.Put)]
        if not puts:
            break
        (chunk,) = puts
        assert len(chunk.states) == 1 or sum(len(k) + len(b) for k, b in chunk.states) <= 2500
        chunks.append([k for k, _ in chunk.states])
        out = src.step("n4", dm.PutAck(req=chunk.req, ok=True), 0, 0)
    assert [k for c in chunks for k in c] == sorted(keys) and len(chunks) > 3 and [keys[4]] in chunks
    assert src.stats["keys_streamed"] == len(keys)
    assert any(isinstance(e, Send) and isinstance(e.msg, dm.StreamDone) for e in out)


def test_a_replica_that_missed_a_commit_joins_the_committers_state_of_the_key() -> None:
    """paxos.py, "A replica that missed a commit": n3 missed the commit of v1 (decided at n1's
    ballot b1) and gets the next one, v2 (decided at n2's b2, after b1). Its data gets v2, but
    written over its own context, which lacks b1's version, so it differed from n1's until
    anti-entropy; the commit's ``after`` tells it that it is behind, and it joins the other
    replicas' states (n1's holds b1's version)."""
    st = mb.RingState(epoch=0, members=tuple(member(n) for n in N3))
    r1, r3 = replica("n1", st), replica("n3", st)
    r1.provenance_peers = r3.provenance_peers = {"n1", "n2", "n3"}
    b1, b2 = pm.Ballot(hlc=10 << 16, node="n1"), pm.Ballot(hlc=20 << 16, node="n2")
    c1 = pm.Commit(req=1, sender="n1", key=KEY, ballot=b1, value=b"v1", origin=b1, after=pm.ZERO_BALLOT)
    c2 = pm.Commit(req=2, sender="n1", key=KEY, ballot=b2, value=b"v2", origin=b2, after=b1)
    for c in (c1, c2):
        r1.step("n1", dm.Paxos(data=pm.encode(c)), 5, 5_000)  # as its own acceptor gets them
    assert [e for e in r1.step("n1", dm.Paxos(data=pm.encode(c2)), 6, 6_000)  # a duplicate: no catch-up
            if isinstance(e, Send) and isinstance(e.msg, dm.Get)] == []
    out = r3.step("n1", dm.Paxos(data=pm.encode(c2)), 7, 7_000)
    assert r3.store.visible(KEY) == r1.store.visible(KEY) and r3.store.key_digest(KEY) != r1.store.key_digest(KEY)
    gets = {e.to: e.msg for e in out if isinstance(e, Send) and isinstance(e.msg, dm.Get)}
    assert set(gets) == {"n1", "n2"} and gets["n1"].keys == (KEY,) and r3.stats["paxos_catch_ups"] == 1
    (reply,) = [e.msg for e in r1.step("n3", gets["n1"], 8, 8_000) if isinstance(e, Send)]
    joined = r3.step("n1", reply, 9, 9_000)
    assert r3.store.key_digest(KEY) == r1.store.key_digest(KEY) and len(r3.catch_ups) == 1  # n2's is due
    assert any(isinstance(e, Persist) and e.entry[0] == "j" for e in joined)  # durable, as any join
    # a replica that holds the commit before (after == its own) is not behind
    r2 = replica("n2", st)
    for c in (c1, c2):
        assert [e for e in r2.step("n1", dm.Paxos(data=pm.encode(c)), 10, 10_000)
                if isinstance(e, Send) and isinstance(e.msg, dm.Get)] == []
    # a commit without provenance cannot tell (an older node's, or sent before the Hellos crossed)
    c3 = pm.Commit(req=3, sender="n1", key=KEY, ballot=pm.Ballot(hlc=30 << 16, node="n1"), value=b"v3")
    assert {e.to for e in r2.step("n1", dm.Paxos(data=pm.encode(c3)), 11, 11_000)
            if isinstance(e, Send) and isinstance(e.msg, dm.Get)} == {"n1", "n3"}
    # an unanswered Get is asked again at its deadline, a few times at most, while the peer is up
    asks = 0
    for now in range(12, 12 + 10 * (1 + 10**9 // 1000), 10**9 // 1000):
        asks += sum(1 for e in r2.tick(now, now * 1000, ["n1", "n3"])
                    if isinstance(e, Send) and isinstance(e.msg, dm.Get) and e.to == "n1")
    assert asks == CATCH_UP_TRIES - 1 and not r2.catch_ups
    # nor can the commit after it (the version c3 wrote may be a second one): it catches up again
    b4 = pm.Ballot(hlc=40 << 16, node="n1")
    c4 = pm.Commit(req=4, sender="n1", key=KEY, ballot=b4, value=b"v4", origin=b4, after=c3.ballot)
    assert {e.to for e in r2.step("n1", dm.Paxos(data=pm.encode(c4)), 10**8, 10**11)
            if isinstance(e, Send) and isinstance(e.msg, dm.Get)} == {"n1", "n3"}


def _answer(node: str, frame: dm.Paxos | dm.PaxosBody) -> dm.Paxos:
    """``node``'s fresh acceptor answering the request in ``frame`` (data absent)."""
    msg = paxos_of(frame)
    _, effects = px.acceptor_step(node, pm.AcceptorState(promised=msg.ballot), msg, (0, None))
    (reply,) = [e.msg for e in effects if isinstance(e, px.Send)]
    return dm.Paxos(data=pm.encode(reply))


@pytest.mark.parametrize("quiet_peer", [True, False])
def test_a_quiet_commit_goes_quiet_only_to_a_peer_that_announced_it(quiet_peer: bool) -> None:
    """The commit's ack is asked of the replicas that accepted (n1 itself and n2); n3 gets it quiet
    if it announced ``FEATURE_QUIET_COMMIT``, else the acknowledged form it decodes (its ack is
    then dropped, as before)."""
    st = mb.RingState(epoch=0, members=tuple(member(n) for n in N3))
    r = replica("n1", st)
    r.electorate_peers = r.provenance_peers = {"n2", "n3"}
    r.quiet_commit_peers = {"n2", "n3"} if quiet_peer else {"n2"}
    out = r.paxos(7, KEY, lambda current: b"v", 0)
    prepares = {e.to: e.msg for e in out if isinstance(e, Send) and isinstance(e.msg, (dm.Paxos, dm.PaxosBody))}
    out = r.step("n2", _answer("n2", prepares["n2"]), 1, 1_000)
    (propose,) = [(to, m) for to, m in paxos_sends(out) if isinstance(m, pm.Propose)]
    assert propose[0] == "n2"  # the quorum that promised: n1 and n2
    out = r.step("n2", dm.Paxos(data=pm.encode(pm.Accepted(req=7, sender="n2", key=KEY, ballot=propose[1].ballot))),
                 2, 2_000)
    commits = {to: m for to, m in paxos_sends(out) if isinstance(m, pm.Commit)}
    assert set(commits) == {"n2", "n3"} and commits["n2"].ack and commits["n3"].ack is not quiet_peer
    assert commits["n3"].value == b"v" and commits["n3"].origin == commits["n2"].origin


def test_a_round_asks_this_node_first_then_the_peers_heard_from_most_recently() -> None:
    """paxos.py, 1.: the Prepare asks a quorum, this node and the peer that sent a Paxos message
    last; a peer that went down is forgotten, so a live one is asked instead."""
    st = mb.RingState(epoch=0, members=tuple(member(n) for n in N3))
    r = replica("n1", st)
    for peer, now in (("n3", 5), ("n2", 6)):
        r.step(peer, dm.Paxos(data=pm.encode(pm.CommitAck(req=99, sender=peer, key=KEY,
                                                           ballot=pm.Ballot(hlc=1, node="n1")))), now, now * 1000)
    assert r._paxos_order(("n3", "n2", "n1")) == ["n1", "n2", "n3"]
    prepares = [to for to, m in paxos_sends(r.paxos(7, KEY, lambda current: b"v", 7)) if isinstance(m, pm.Prepare)]
    assert prepares == ["n2"]
    r.peer_down("n2", 8, 8_000)
    prepares = [to for to, m in paxos_sends(r.paxos(8, KEY, lambda current: b"v", 9)) if isinstance(m, pm.Prepare)]
    assert prepares == ["n3"]


def test_a_catch_up_answer_is_joined_only_while_this_node_replicates_the_key() -> None:
    """A node that left the key's replicas meanwhile (and cleans it up, or did already) does not
    join the answer (seed 30148 --nodes 4 --paxos --membership: a removed node held a key again);
    while both replicate it, what the peer lacks goes back to it, as read repair does."""
    st = mb.RingState(epoch=0, members=tuple(member(n) for n in N3))
    r1, r3 = replica("n1", st), replica("n3", st)
    b1 = pm.Ballot(hlc=10 << 16, node="n2")  # decided by n2's round: a version n3 missed
    c1 = pm.Commit(req=1, sender="n1", key=KEY, ballot=b1, value=b"v1", origin=b1, after=pm.ZERO_BALLOT)
    r1.step("n1", dm.Paxos(data=pm.encode(c1)), 5, 5_000)
    for r in (r1, r3):  # n3 gets a commit without provenance: it catches up
        out = r.step("n1", dm.Paxos(data=pm.encode(pm.Commit(req=2, sender="n1", key=KEY, ballot=pm.Ballot(
            hlc=20 << 16, node="n1"), value=b"v2"))), 6, 6_000)
    gets = {e.to: e.msg for e in out if isinstance(e, Send) and isinstance(e.msg, dm.Get)}
    (reply,) = [e.msg for e in r1.step("n3", gets["n1"], 7, 7_000) if isinstance(e, Send)]
    assert r3.store.key_digest(KEY) != r1.store.key_digest(KEY)
    # n3 left: n4 took its place, and the answer comes after the switch
    r3.membership = mb.Membership("n3", mb.RingState(epoch=3, members=tuple(member(n) for n in ("n1", "n2", "n4"))),
                                  replicas=3, vnodes=16)
    before = r3.store.key_blob(KEY)
    assert r3.step("n1", reply, 8, 8_000) == [] and r3.store.key_blob(KEY) == before


@pytest.mark.parametrize("announced", [True, False])
def test_a_round_commits_on_accept_only_with_a_peer_that_announced_it_after_its_own_accept_is_persisted(
        announced: bool) -> None:
    """paxos.py, "Commit on accept", in the replica: n1's own acceptor steps the Propose first and
    its ``Persist`` comes before the Propose to n2 (the durability rule: n2's commit rests on that
    accept); n2, if it announced ``FEATURE_COMMIT_ON_ACCEPT`` (``Hello``), gets ``commit``,
    persists and applies the value before its committed Accepted, and n1 then answers with a quiet
    commit to n3 and none to n2. A peer that did not announce it gets the plain Propose and the
    round's Commit, as before."""
    st = mb.RingState(epoch=0, members=tuple(member(n) for n in N3))
    r1, r2 = replica("n1", st), replica("n2", st)
    r1.step("n3", dm.Hello(features=dm.FEATURES), 0, 0)
    r1.step("n2", dm.Hello(features=dm.FEATURES if announced else tuple(
        f for f in dm.FEATURES if f != dm.FEATURE_COMMIT_ON_ACCEPT)), 0, 0)
    assert r1.commit_accept_peers == ({"n2", "n3"} if announced else {"n3"})
    r2.step("n1", dm.Hello(features=dm.FEATURES), 0, 0)
    out = r1.paxos(7, KEY, lambda current: b"v", 1)
    (prepare,) = [e.msg for e in out if isinstance(e, Send) and e.to == "n2"]
    promise = [e.msg for e in r2.step("n1", prepare, 2, 2_000) if isinstance(e, Send)]
    out = r1.step("n2", promise[0], 3, 3_000)
    (propose,) = [(i, m) for i, (to, m) in enumerate(
        (e.to, paxos_of(e.msg)) if isinstance(e, Send) else ("", None) for e in out) if to == "n2"]
    assert isinstance(propose[1], pm.Propose) and propose[1].commit is announced
    own_accept = [i for i, e in enumerate(out) if isinstance(e, Persist) and e.entry[0] == "px"
                  and pm.decode_state(e.entry[2]).accepted is not None]
    assert own_accept and own_accept[0] < propose[0]  # durable before the peer's Propose leaves
    out2 = r2.step("n1", next(e.msg for e in out if isinstance(e, Send) and e.to == "n2"), 4, 4_000)
    (accepted,) = paxos_sends(out2)
    assert isinstance(accepted[1], pm.Accepted) and accepted[1].committed is announced
    assert r2.stats["paxos_commits_on_accept"] == int(announced)  # INFO replikv_paxos_commits_on_accept
    if announced:  # persisted and applied before the answer leaves
        assert [e.entry[0] for e in out2 if isinstance(e, Persist)] == ["px", "w"]
        assert r2.store.state(KEY) is not None and r2._current(KEY)[1] == b"v"
    out = r1.step("n2", next(e.msg for e in out2 if isinstance(e, Send)), 5, 5_000)
    commits = {to: m for to, m in paxos_sends(out) if isinstance(m, pm.Commit)}
    if announced:
        assert set(commits) == {"n3"} and not commits["n3"].ack
        (done,) = [e for e in out if isinstance(e, PaxosDone)]
        assert isinstance(done.outcome, px.Chosen) and done.outcome.value == b"v"
        assert r1._current(KEY)[1] == b"v"
    else:
        assert set(commits) == {"n2", "n3"} and commits["n2"].ack
        assert not any(isinstance(e, PaxosDone) for e in out)  # n2's ack is waited for
    r1.peer_down("n2", 6, 6_000)  # it may come back as another version: it announces again
    assert "n2" not in r1.commit_accept_peers
