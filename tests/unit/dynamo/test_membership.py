"""core/dynamo/membership.py and the Replica's streams: ring epochs, pending ranges, stream plans,
and changes interleaved with QUORUM writes on a scripted network (no acknowledged write lost)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from replikv.core.dynamo import membership as mb
from replikv.core.dynamo import messages as dm
from replikv.core.dynamo.coordinator import level_count
from replikv.core.dynamo.replica import Replica, Send, WriteDone
from replikv.core.dynamo.ring import Ring, token_of
from replikv.kv.crdt_writes import translate


def member(i: int | str) -> mb.Member:
    name = i if isinstance(i, str) else f"n{i}"
    num = int(name[1:])
    return mb.Member(id=name, host="127.0.0.1", port=7000 + num, peer_port=17000 + num)


def state(ids: list[str], epoch: int = 0) -> mb.RingState:
    return mb.RingState(epoch=epoch, members=tuple(member(i) for i in sorted(ids)))


N3 = ["n1", "n2", "n3"]


# -- ring states and messages --------------------------------------------------------------------


def test_ring_state_round_trips_through_message_and_json() -> None:
    st = mb.RingState(epoch=7, members=tuple(member(i) for i in N3), change="add", node=member(4), coordinator="n2")
    msg = st.to_msg()
    assert dm.decode(dm.encode(msg)) == msg
    assert mb.RingState.from_msg(msg) == st
    assert mb.RingState.from_json(st.to_json()) == st
    assert st.next_members() == tuple(member(i) for i in range(1, 5))
    assert st.everyone() == ("n1", "n2", "n3", "n4")
    assert st.order > state(N3, 7).order  # same epoch: the coordinator id breaks the tie


def test_stream_messages_round_trip_and_garbage_is_refused() -> None:
    for msg in (dm.RingAck(epoch=3, coordinator="n1"), dm.StreamDone(epoch=3, target="n4", ranges=((5, 9),)),
                dm.StreamStart(epoch=3, target="n4", ranges=((5, 9), ((1 << 64) - 1, 0)))):
        assert dm.decode(dm.encode(msg)) == msg
    import msgpack
    for bad in ([10, 1, "x", "", [], "n1"], [12, 1, "n4", [[1, -1]]], [11, -1, "n1"], [13, 1, 5]):
        with pytest.raises(dm.DynamoCodecError):
            dm.decode(msgpack.packb(bad))


def test_begin_refuses_bad_changes() -> None:
    m = mb.Membership("n1", state(N3), replicas=3, vnodes=8)
    with pytest.raises(mb.MembershipError, match="already a member"):
        m.begin("add", member(2), 0)
    with pytest.raises(mb.MembershipError, match="not a member"):
        m.begin("remove", member(9), 0)
    with pytest.raises(mb.MembershipError, match="fewer than --replicas 3"):
        m.begin("remove", member(3), 0)
    m.begin("add", member(4), 0)
    with pytest.raises(mb.MembershipError, match="already running: add n4"):
        m.begin("add", member(5), 0)


def test_begin_saves_before_it_announces_and_placement_has_pending_ranges() -> None:
    m = mb.Membership("n1", state(N3), replicas=3, vnodes=8)
    effects = m.begin("add", member(4), 0)
    assert isinstance(effects[0], mb.SaveRing) and effects[0].state.epoch == 1
    assert {e.to for e in effects if isinstance(e, mb.Send)} == {"n2", "n3", "n4"}
    old, new = Ring(N3, 3, 8), Ring(N3 + ["n4"], 3, 8)
    seen_pending = 0
    for i in range(500):
        key = f"k{i}".encode()
        assert m.read_replicas(key) == old.preference_list(key)  # reads stay on the old owners
        replicas, pending = m.write_replicas(key)
        assert replicas[:3] == old.preference_list(key)
        assert set(replicas) == set(old.preference_list(key)) | set(new.preference_list(key))
        assert pending == len(replicas) - 3
        seen_pending += pending
    assert seen_pending > 0


def test_a_lower_state_is_answered_with_the_higher_one_and_never_adopted() -> None:
    m = mb.Membership("n2", state(N3, 5), replicas=3, vnodes=8)
    out = m.step("n1", state(N3, 4).to_msg(), 0)
    assert m.state.epoch == 5
    assert out == [mb.Send(to="n1", msg=m.state.to_msg())]
    out = m.step("n1", state(N3 + ["n4"], 6).to_msg(), 0)
    assert m.state.epoch == 6 and "n4" in m.ring
    assert isinstance(out[0], mb.SaveRing) and out[-1] == mb.Send(to="n1", msg=dm.RingAck(epoch=6, coordinator=""))


# -- stream plans ---------------------------------------------------------------------------------


@pytest.mark.parametrize("nodes,change,node", [(N3, "add", "n4"), (["n1", "n2", "n3", "n4"], "remove", "n3"),
                                               (["n1", "n2"], "add", "n3"),
                                               (["n1", "n2", "n3", "n4", "n5"], "add", "n6")])
def test_stream_plan_covers_every_key_a_node_gains(nodes: list[str], change: str, node: str) -> None:
    old = Ring(nodes, 3, 16)
    new = old.with_node(node) if change == "add" else old.without_node(node)
    plan = mb.stream_plan(old, new)
    for task in plan:
        for r in task.ranges:
            assert set(task.sources) <= set(old.preference_for_token(r.end))
            assert task.target in new.preference_for_token(r.end)
            assert task.target not in old.preference_for_token(r.end)
            lost = set(old.preference_for_token(r.end)) - set(new.preference_for_token(r.end))
            if lost:  # the source is the replica the target replaces (CASSANDRA-2434)
                assert task.sources[0] in lost
        if change == "remove":
            assert task.sources[0] == node
        else:
            assert task.target == node
    pairs = [(task.sources[0], task.target) for task in plan]
    assert len(pairs) == len(set(pairs))  # one stream per source and target
    for i in range(3000):
        key = f"key:{i}".encode()
        t = token_of(key)
        for target in set(new.preference_list(key)) - set(old.preference_list(key)):
            assert sum(1 for task in plan if task.target == target for r in task.ranges if t in r) == 1


# -- a change interleaved with writes, on a scripted network --------------------------------------


class Net:
    """Replicas joined by per-link FIFO queues; the next link to deliver is drawn from a seeded RNG."""

    def __init__(self, seed: int, members: list[str], extra: list[str], replicas: int = 3) -> None:
        self.rng = random.Random(seed)
        self.now_ms = 0
        self.links: dict[tuple[str, str], list[Any]] = {}
        self.nodes: dict[str, Replica] = {}
        self.acked: list[tuple[bytes, str, int]] = []  # (key, origin, hlc) of every acknowledged write
        self.pending: dict[int, tuple[bytes, str, int]] = {}
        self.reqs = 0
        self.switch_checks = 0
        names = members + extra
        self.slow = {(a, b) for a in names for b in names if a != b and self.rng.random() < 0.15}
        self.final: tuple[int, Ring] | None = None  # (epoch, ring): check the acked writes when a node switches
        for name in members + extra:
            ms = mb.Membership(name, state(members), replicas=replicas, vnodes=16, resend_ms=20,
                               stream_timeout_ms=5000, cleanup_delay_ms=100)
            self.nodes[name] = Replica(name, Ring(members, replicas, 16), conflicts="lww", timeout_us=10**12,
                                       rng=random.Random(seed), read_repair_chance=0.0, ae_interval_ms=0,
                                       membership=ms)

    def run(self, name: str, effects: list[Any]) -> None:
        for e in effects:
            if isinstance(e, Send):
                self.links.setdefault((name, e.to), []).append(e.msg)
            elif isinstance(e, WriteDone) and e.ok:
                self.acked.append(self.pending.pop(e.req))

    def deliver_one(self) -> bool:
        busy = [link for link, q in self.links.items() if q]
        if not busy:
            return False
        fast = [link for link in busy if link not in self.slow]
        if fast and self.rng.random() > 0.02:  # slow links deliver late: messages cross the change's steps
            busy = fast
        src, dst = self.rng.choice(busy)
        msg = self.links[(src, dst)].pop(0)
        before = self.nodes[dst].membership.state.epoch
        self.run(dst, self.nodes[dst].step(src, msg, self.now_ms, self.now_ms * 1000))
        after = self.nodes[dst].membership.state.epoch
        if self.final is not None and before < self.final[0] == after:
            # a read that starts now on this node uses the new ring: every write acknowledged so
            # far must already be on enough new replicas (nothing in flight counts)
            self.check_acked(self.final[1])
            self.switch_checks += 1
        return True

    def tick(self) -> None:
        self.now_ms += 10
        for name, r in self.nodes.items():
            self.run(name, r.membership_tick(self.now_ms, self.now_ms * 1000, self.nodes))

    def write(self, i: int) -> None:
        key = f"key:{self.rng.randrange(400)}".encode()
        name = self.rng.choice(sorted(self.nodes))
        for _ in range(3):  # a node that holds no replica forwards to one (as the runtime does)
            replicas, pending = self.nodes[name].membership.write_replicas(key)
            if name in replicas:
                break
            name = replicas[0]
        else:
            return
        r = self.nodes[name]
        needed = level_count("quorum", len(replicas) - pending) + pending
        muts, _ = translate(r.store, [b"SET", key, b"v%d" % i], self.now_ms, self.rng, "leaderless")
        hlc = r.hlc.now(self.now_ms)
        self.reqs += 1
        self.pending[self.reqs] = (key, name, hlc)
        self.run(name, r.write(self.reqs, muts, hlc, replicas, needed, self.nodes, (), self.now_ms,
                               self.now_ms * 1000))

    def change(self, driver: str, kind: str, node: str) -> None:
        r = self.nodes[driver]
        self.run(driver, r.begin_change(kind, member(node), self.now_ms, self.now_ms * 1000))

    def settle(self, want_epoch: int, writes_from: int) -> None:
        i = writes_from
        for step in range(200_000):
            if self.rng.random() < 0.2 and step < 20_000:
                self.write(i)
                i += 1
            elif not self.deliver_one():
                self.tick()
            if step % 50 == 0:
                self.tick()
            done = all(r.membership.state.epoch == want_epoch for r in self.nodes.values())
            if done and step > 20_000 and not any(self.links.values()):
                for _ in range(30):  # past the cleanup delay
                    self.tick()
                return
        raise AssertionError(f"not settled: {[(n, r.membership.status()) for n, r in self.nodes.items()]}")

    def check_acked(self, ring: Ring) -> None:
        """Every acknowledged write is held by enough of its key's new replicas that any quorum holds one."""
        q = level_count("quorum", ring.replicas)
        for key, origin, hlc in self.acked:
            holders = [n for n in ring.preference_list(key)
                       if self.nodes[n].store.context(key).get(origin, 0) >= hlc]
            assert len(holders) >= ring.replicas - q + 1, (key, origin, hlc, holders)


@pytest.mark.parametrize("seed", range(5))
def test_add_then_remove_under_quorum_writes_loses_no_acknowledged_write(seed: int) -> None:
    net = Net(seed, N3, ["n4"])
    for i in range(300):
        net.write(i)
        while net.rng.random() < 0.7 and net.deliver_one():
            pass
    ring4 = Ring(N3 + ["n4"], 3, 16)
    net.final = (2, ring4)
    net.change("n1", "add", "n4")
    net.settle(3, 300)  # announce, reads from the new owners, switch
    assert net.switch_checks >= 3
    assert all(r.membership.state.ids == ("n1", "n2", "n3", "n4") for r in net.nodes.values())
    assert net.nodes["n1"].stats["streams_done"] + net.nodes["n2"].stats["streams_done"] + \
        net.nodes["n3"].stats["streams_done"] > 0
    assert len(net.acked) > 1000
    net.check_acked(ring4)
    # n4 holds every key it now replicates that an acknowledged write touched
    n4_keys = {k for k, _, _ in net.acked if "n4" in ring4.preference_list(k)}
    assert n4_keys and all(net.nodes["n4"].store.known(k) for k in n4_keys)
    # the cleanup: a node keeps no key it does not replicate
    for name, r in net.nodes.items():
        assert all(name in ring4.preference_list(k) for k in r.store.stored_keys()), name

    ring3 = Ring(["n1", "n2", "n4"], 3, 16)
    net.final = (4, ring3)
    net.change("n2", "remove", "n3")
    net.settle(6, 100_000)
    assert all(r.membership.state.ids == ("n1", "n2", "n4") for r in net.nodes.values())
    net.check_acked(ring3)


def test_a_restarted_coordinator_announces_its_change_again() -> None:
    st = mb.RingState(epoch=1, members=tuple(member(i) for i in N3), change="add", node=member(4), coordinator="n1")
    m = mb.Membership("n1", mb.RingState.from_json(st.to_json()), replicas=3, vnodes=8, resend_ms=10)
    out = m.tick(10, ["n2", "n3", "n4"])
    assert {e.to for e in out if isinstance(e, mb.Send)} == {"n2", "n3", "n4"}
    for peer in ("n2", "n3", "n4"):
        out = m.step(peer, dm.RingAck(epoch=1, coordinator="n1"), 20)
    starts = [e for e in out if isinstance(e, mb.Send) and isinstance(e.msg, dm.StreamStart)]
    assert starts and all(e.msg.target == "n4" for e in starts)


def test_a_coordinator_restarted_after_its_switch_sends_it_again_until_every_member_acknowledged() -> None:
    """Seed 31202 --nodes 4 --paxos --membership: the switch to n1 was lost, the coordinator
    crashed before resending it, and both gossips on reconnect were lost: n1 kept epoch 2."""
    final = mb.RingState(epoch=3, members=tuple(member(i) for i in [*N3, "n4"]), coordinator="n3")
    m = mb.Membership("n3", mb.RingState.from_json(final.to_json()), replicas=3, vnodes=8, resend_ms=10)
    out = m.tick(10, ["n1", "n2", "n4"])
    assert {e.to for e in out if isinstance(e, mb.Send) and e.msg == final.to_msg()} == {"n1", "n2", "n4"}
    for peer in ("n2", "n4"):
        m.step(peer, dm.RingAck(epoch=3, coordinator="n3"), 15)
    out = m.tick(30, ["n1", "n2", "n4"])
    assert {e.to for e in out if isinstance(e, mb.Send)} == {"n1"}
    m.step("n1", dm.RingAck(epoch=3, coordinator="n3"), 35)
    assert m.driving is None and m.tick(100, ["n1", "n2", "n4"]) == []
    other = mb.Membership("n2", final, replicas=3, vnodes=8, resend_ms=10)  # not its change: nothing to send
    assert other.driving is None and other.tick(100, ["n1", "n3", "n4"]) == []


def test_a_coordinator_restarted_after_removing_a_node_still_tells_it_of_the_switch() -> None:
    """The removed node is kept in the switched state (``left``, stored in the meta file, not
    sent): before, a restart forgot it, and a removed node whose copy of the switch was lost
    kept the old ring, still serving as a member of it."""
    m = mb.Membership("n1", state([*N3, "n4"]), replicas=3, vnodes=8, resend_ms=10)
    m.begin("remove", member(4), 0)
    for epoch in (1, 2):  # every node acknowledges the change, then the reads-new epoch
        out: list[Any] = []
        for peer in ("n2", "n3", "n4"):
            out = m.step(peer, dm.RingAck(epoch=epoch, coordinator="n1"), 1)
        while m.driving is not None and m.driving.streams:
            for s in list(m.driving.streams):
                src = s.task.sources[s.source]
                out = m.step(src, dm.StreamDone(epoch=epoch, target=s.task.target, ranges=mb._wire(s.task)), 2)
    final = m.state
    assert final.ids == ("n1", "n2", "n3") and final.left == member(4) and not final.change
    assert final.to_msg() == mb.RingState(epoch=final.epoch, members=final.members, coordinator="n1").to_msg()
    stored = mb.RingState.from_json(final.to_json())
    assert stored == final  # the meta file keeps it
    restarted = mb.Membership("n1", stored, replicas=3, vnodes=8, resend_ms=10)
    out = restarted.tick(10, ["n2", "n3", "n4"])
    assert {e.to for e in out if isinstance(e, mb.Send) and e.msg == final.to_msg()} == {"n2", "n3", "n4"}
    for peer in ("n2", "n3", "n4"):
        restarted.step(peer, dm.RingAck(epoch=final.epoch, coordinator="n1"), 20)
    assert restarted.driving is None
    with pytest.raises(mb.MembershipError):  # a removed node beside a change in flight: refused
        mb.RingState.from_json({**final.to_json(), "change": "add", "node": list(member(5).wire())})
    older = {k: v for k, v in final.to_json().items() if k != "left"}  # a meta file from before
    assert mb.RingState.from_json(older).left is None


def test_a_stalled_source_is_replaced_by_the_next_old_replica() -> None:
    m = mb.Membership("n1", state(N3), replicas=3, vnodes=8, stream_timeout_ms=100)
    m.begin("add", member(4), 0)
    out: list[Any] = []
    for peer in ("n2", "n3", "n4"):
        out = m.step(peer, dm.RingAck(epoch=1, coordinator="n1"), 0)
    first = {e.to for e in out if isinstance(e, mb.Send)}
    down = sorted(first - {"n1"})[0]
    again = m.tick(200, [n for n in ("n2", "n3", "n4") if n != down])
    assert again and down not in {e.to for e in again if isinstance(e, mb.Send)}


def test_a_late_write_after_the_switch_is_passed_on_and_cleaned_up_again() -> None:
    final = state(N3 + ["n4"], 2)
    ms = mb.Membership("n3", final, replicas=3, vnodes=16, cleanup_delay_ms=100)
    r = Replica("n3", Ring(N3, 3, 16), conflicts="lww", timeout_us=10**9, rng=random.Random(1),
                ae_interval_ms=0, membership=ms)
    ring4 = Ring(N3 + ["n4"], 3, 16)
    key = next(k for i in range(1000) if "n3" not in ring4.preference_list(k := f"k{i}".encode()))
    other = Replica("n1", Ring(N3, 3, 16), conflicts="lww", timeout_us=10**9, rng=random.Random(2))
    muts, _ = translate(other.store, [b"SET", key, b"late"], 5, random.Random(3), "leaderless")
    other.local_write(muts, 77, 5)
    blob = other.store.key_blob(key)
    assert blob is not None
    assert ms.cleanup_due_ms == -1  # started with a switched ring: a cleanup is due after the delay
    out = r.step("n1", dm.Put(req=9, states=((key, blob),)), 10, 10_000)
    sent = {e.to for e in out if isinstance(e, Send) and isinstance(e.msg, dm.Put) and e.msg.req == 0}
    assert sent == set(ring4.preference_list(key))
    assert Send(to="n1", msg=dm.PutAck(req=9, ok=False)) in out  # not counted: n3 drops the key
    r.membership_tick(20, 20_000, ["n1", "n2", "n4"])  # the delay starts now
    assert r.store.known(key)
    out = r.membership_tick(200, 200_000, ["n1", "n2", "n4"])
    assert not r.store.known(key) and ["drop", key] in [getattr(e, "entry", None) for e in out]
    r2 = Replica("n3", Ring(N3, 3, 16), conflicts="lww", timeout_us=10**9, rng=random.Random(1),
                 membership=mb.Membership("n3", final, replicas=3, vnodes=16))
    r2.store.join_key(key, blob, 0)
    r2.replay(["drop", key])
    assert not r2.store.known(key)


def test_hints_for_keys_their_node_no_longer_replicates_go_to_the_replicas() -> None:
    ring = Ring(["n1", "n2", "n3", "n4"], 3, 16)
    final = state(["n1", "n2", "n3", "n4"], 2)
    r = Replica("n1", ring, conflicts="lww", timeout_us=10**9, rng=random.Random(1), ae_interval_ms=0,
                membership=mb.Membership("n1", final, replicas=3, vnodes=16))
    src = Replica("n2", ring, conflicts="lww", timeout_us=10**9, rng=random.Random(2))
    keys = [f"h{i}".encode() for i in range(40)]
    for i, key in enumerate(keys):
        muts, _ = translate(src.store, [b"SET", key, b"v"], 5, random.Random(3), "leaderless")
        src.local_write(muts, 100 + i, 5)
        blob = src.store.key_blob(key)
        assert blob is not None
        r.hints.add("n3", key, blob, 5)  # held for n3 (under an older ring, for some keys)
        r.hints.add("n9", key, blob, 5)  # a node that has left
    out = r.deliver_hints("n3", 0, 1000, now_ms=10)
    theirs = [k for k in keys if "n3" in ring.preference_list(k)]
    to_n3 = [e.msg for e in out if isinstance(e, Send) and e.to == "n3"]
    assert len(to_n3) == 1 and {k for k, _ in to_n3[0].states} == set(theirs)
    assert r.hints.pending("n3") == len(theirs)  # the rest counted as delivered (sent to their replicas)
    out = r.tick(20, 20_000, ["n2", "n3", "n4"])
    assert r.hints.pending("n9") == 0
    passed = {k for e in out if isinstance(e, Send) and isinstance(e.msg, dm.Put) and e.msg.req == 0
              for k, _ in e.msg.states}
    assert passed == {k for k in keys if ring.preference_list(k) != ("n1",)}


def test_a_stream_done_ends_only_the_stream_of_its_ranges() -> None:
    """A stand-in that took over a down source's stream to a target it also streams to itself
    runs two streams to that target: the StreamDone of one must not end the other (the
    membership simulator switched a ring before a moved stream ran: a stale read)."""
    ms = mb.Membership("n1", state(N3), 3, 8)
    out = ms.begin("add", member(4), 0)
    for peer in ("n2", "n3", "n4"):
        out += ms.step(peer, dm.RingAck(epoch=1, coordinator="n1"), 0)
    d = ms.driving
    assert d is not None and d.streams is not None
    to_n4 = [s for s in d.streams if s.task.target == "n4"]
    first = to_n4[0]
    other = next(s for s in to_n4[1:] if first.task.sources[first.source] in s.task.sources)
    other.source = other.task.sources.index(first.task.sources[first.source])  # moved to the stand-in
    src = first.task.sources[first.source]
    ms.step(src, dm.StreamDone(epoch=1, target="n4", ranges=tuple((r.start, r.end) for r in first.task.ranges)), 0)
    assert other in d.streams and first not in d.streams and ms.state.change == "add"
    done = dm.StreamDone(epoch=1, target="n4", ranges=tuple((r.start, r.end) for r in other.task.ranges))
    assert dm.decode(dm.encode(done)) == done


@pytest.mark.parametrize("me", ["n1", "n2", "n4"])
def test_write_placement_equals_write_replicas_and_coordinates_in_every_state(me: str) -> None:
    """``write_placement`` (one token per key) gives what ``write_replicas`` and ``coordinates``
    give: no change, a change announced (writes to old + pending, reads old), its streams done
    (``reads_new``), for adds and removes, for the coordinator and for other members."""
    states = [state(N3, 1),
              mb.RingState(epoch=2, members=tuple(member(i) for i in N3), change="add", node=member(4),
                           coordinator="n1"),
              mb.RingState(epoch=3, members=tuple(member(i) for i in N3), change="add", node=member(4),
                           coordinator="n1", reads_new=True),
              mb.RingState(epoch=4, members=tuple(member(i) for i in ["n1", "n2", "n3", "n4"]), change="remove",
                           node=member(2), coordinator="n1", reads_new=True),
              mb.RingState(epoch=5, members=tuple(member(i) for i in ["n1", "n2", "n3", "n4"]), change="remove",
                           node=member(2), coordinator="n1")]
    seen_pending = seen_not_mine = 0
    for st in states:
        m = mb.Membership(me, st, replicas=2, vnodes=8)
        for i in range(300):
            key = b"key:%d" % i
            got = m.write_placement(key)
            assert got == (*m.write_replicas(key), m.coordinates(key))
            seen_pending += got[1] > 0
            seen_not_mine += not got[2]
    assert seen_pending and seen_not_mine  # pending owners and keys this node does not coordinate occurred


@pytest.mark.parametrize("me", ["n1", "n2", "n4"])
def test_write_placement_kept_per_key_follows_every_state_a_membership_adopts(me: str) -> None:
    """``write_placement`` keeps each key's placement until the state changes: one ``Membership``
    taken through an add (announced, ``reads_new``, switched) and then a remove, adopting each state
    from a ring message, answers every key as ``write_replicas`` and ``coordinates`` do after each
    adoption, for keys it was asked about before it (a placement kept across a state fails it);
    ``paxos_replicas``, which reads the kept placements, as ``write_replicas`` does."""
    later = [mb.RingState(epoch=2, members=tuple(member(i) for i in N3), change="add", node=member(4),
                          coordinator="n1"),
             mb.RingState(epoch=3, members=tuple(member(i) for i in N3), change="add", node=member(4),
                          coordinator="n1", reads_new=True),
             mb.RingState(epoch=4, members=tuple(member(i) for i in ["n1", "n2", "n3", "n4"]), coordinator="n1"),
             mb.RingState(epoch=5, members=tuple(member(i) for i in ["n1", "n2", "n3", "n4"]), change="remove",
                          node=member(2), coordinator="n1"),
             mb.RingState(epoch=6, members=tuple(member(i) for i in ["n1", "n3", "n4"]), coordinator="n1")]
    m = mb.Membership(me, state(N3, 1), replicas=2, vnodes=8)
    keys = [b"key:%d" % i for i in range(300)]
    changed = 0
    for st in [None, *later]:
        if st is not None:
            before = [m.write_placement(k) for k in keys]
            m.step("n1" if me != "n1" else "n2", st.to_msg(), 0)
            assert m.state.epoch == st.epoch  # adopted
        for key in keys:
            assert m.write_placement(key) == (*m.write_replicas(key), m.coordinates(key))
            assert m.paxos_replicas(key) == m.write_replicas(key)  # read from the kept placements
        if st is not None:
            changed += sum(a != b for a, b in zip(before, (m.write_placement(k) for k in keys)))
    assert changed  # the states moved some keys' placements


def test_write_placements_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mb, "PLACEMENT_CACHE_KEYS", 8)
    m = mb.Membership("n1", state(N3, 1), replicas=2, vnodes=8)
    for i in range(50):
        key = b"key:%d" % i
        assert m.write_placement(key) == (*m.write_replicas(key), m.coordinates(key))
        assert len(m._placements) <= 8
