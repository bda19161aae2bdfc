"""core/dynamo/replica.py: the Merkle trees take the digests of at most ``AE_DIGESTS_PER_UPDATE``
changed keys per update, the longest waiting first, and anti-entropy still converges replicas
whose backlog of changed keys is larger than that."""

from __future__ import annotations

import random
from typing import Any

from replikv.core.dynamo import messages as dm
from replikv.core.dynamo import replica as rp
from replikv.core.dynamo.merkle import MerkleTree
from replikv.core.dynamo.replica import Replica, Send
from replikv.core.dynamo.ring import Ring, token_of
from replikv.kv.crdt_writes import translate

N3 = ["n1", "n2", "n3"]


def replica(name: str, ae_ms: int = 0) -> Replica:
    return Replica(name, Ring(N3, 3, 16), conflicts="lww", timeout_us=10**9, rng=random.Random(1),
                   ae_interval_ms=ae_ms)


def local_set(r: Replica, key: bytes, value: bytes, now: int) -> None:
    """A write on ``r`` alone (as if its deltas to the others were lost)."""
    muts, _ = translate(r.store, [b"SET", key, value], now, random.Random(0))
    r.local_write(muts, r.hlc.now(now), now)


def exact_root(r: Replica) -> bytes:
    """The root of a tree built from scratch from ``r``'s stored keys."""
    (group,) = r.trees
    tree = MerkleTree(r.trees[group].range, rp.AE_TREE_DEPTH)
    for key in r.store.stored_keys():
        tree.update(key, token_of(key), r.store.key_digest(key))
    return tree.root()


def test_an_update_digests_at_most_the_bound_oldest_first(monkeypatch: Any) -> None:
    monkeypatch.setattr(rp, "AE_DIGESTS_PER_UPDATE", 10)
    r = replica("n1")
    r._update_trees()  # the trees exist (empty store)
    keys = [b"k%03d" % i for i in range(25)]
    for i, key in enumerate(keys):
        local_set(r, key, b"v", 10 + i)
    local_set(r, keys[0], b"again", 100)  # changed again: keeps its place (first changed)
    r._update_trees()
    assert list(r.dirty) == keys[10:]  # the 10 longest waiting were digested
    local_set(r, b"late", b"v", 200)
    r._update_trees()
    assert list(r.dirty) == keys[20:] + [b"late"]
    r._update_trees()
    assert not r.dirty
    assert r.trees[next(iter(r.trees))].root() == exact_root(r)


def test_an_update_under_the_bound_digests_every_changed_key() -> None:
    r = replica("n1")
    r._update_trees()
    for i in range(rp.AE_DIGESTS_PER_UPDATE):
        local_set(r, b"k%05d" % i, b"v", 10)
    r._update_trees()
    assert not r.dirty
    assert r.trees[next(iter(r.trees))].root() == exact_root(r)


def run_rounds(nodes: dict[str, Replica], now: int, rounds: int, sent: list[Any] | None = None) -> int:
    """Anti-entropy rounds (every node's tick, then messages until none is left); the time after.
    ``sent``: gets every message sent, in order."""
    for _ in range(rounds):
        now += 1000
        queue: list[tuple[str, Any]] = []
        for name, r in nodes.items():
            queue.extend((name, e) for e in r.tick(now, now * 1000, N3))
        while queue:
            frm, e = queue.pop(0)
            if isinstance(e, Send):
                if sent is not None:
                    sent.append(e.msg)
                msg = dm.decode(dm.encode(e.msg))
                for one in msg.msgs if isinstance(msg, dm.Batch) else (msg,):
                    queue.extend((e.to, x) for x in nodes[e.to].step(frm, one, now, now * 1000))
    return now


def test_rounds_converge_replicas_whose_backlog_exceeds_the_bound(monkeypatch: Any) -> None:
    """Each replica holds writes the others lack, more changed keys than one update digests: the
    rounds (each update digesting at most 8 keys) still bring all three to the same states."""
    monkeypatch.setattr(rp, "AE_DIGESTS_PER_UPDATE", 8)
    monkeypatch.setattr(rp, "AE_KEYS_PER_ROUND", 16)
    nodes = {n: replica(n, ae_ms=1000) for n in N3}
    for i in range(60):
        local_set(nodes[N3[i % 3]], b"key%02d" % i, b"v%d" % i, 10 + i)
    now = run_rounds(nodes, 1000, 60)
    blobs = [{k: r.store.key_blob(k) for k in r.store.stored_keys()} for r in nodes.values()]
    assert len(blobs[0]) == 60
    assert blobs[0] == blobs[1] == blobs[2]
    assert all(r.stats["ae_keys_repaired"] > 0 for r in nodes.values()) and now


def test_a_rounds_push_is_cut_into_puts_that_fit_a_frame(monkeypatch: Any) -> None:
    """Issue 9: what a round sends of its own states is one ``Put`` per ``PUT_STATES_MAX_BYTES``
    (bar its first state), not one message of every differing key, which could pass the peer
    frame limit; the replicas still converge."""
    monkeypatch.setattr(rp, "PUT_STATES_MAX_BYTES", 2500)
    nodes = {n: replica(n, ae_ms=1000) for n in N3}
    for i in range(12):
        local_set(nodes["n1"], b"key%02d" % i, b"x" * 1000, 10 + i)
    pushes: list[dm.Put] = []
    real = Replica._ae_keys

    def recorded(self: Replica, peer: str, msg: dm.LeafKeys, now_us: int, out: list[Any]) -> None:
        before = len(out)
        real(self, peer, msg, now_us, out)
        pushes.extend(e.msg for e in out[before:] if isinstance(e, Send) and isinstance(e.msg, dm.Put))

    monkeypatch.setattr(Replica, "_ae_keys", recorded)
    run_rounds(nodes, 1000, 12)
    assert any(len(p.states) > 1 for p in pushes) and len(pushes) > 2
    assert all(len(p.states) == 1 or sum(len(k) + len(b) for k, b in p.states) <= 2500 for p in pushes)
    blobs = [{k: r.store.key_blob(k) for k in r.store.stored_keys()} for r in nodes.values()]
    assert len(blobs[0]) == 12 and blobs[0] == blobs[1] == blobs[2]


def test_what_a_round_asks_for_comes_back_in_answers_of_one_key_each(monkeypatch: Any) -> None:
    """Issue 9: a round asks the peer for the states it lacks with one ``Get`` per key, since a
    ``GetReply`` cannot be cut (a key left out would read as "holds nothing") and one answer of
    every differing key of large values could pass the peer frame limit; and the repairs a
    node sends back of what the answers lack are ``Put``s cut as a round's push is. Every
    message of key states stays within ``PUT_STATES_MAX_BYTES`` (bar a single state), and the
    replicas converge."""
    monkeypatch.setattr(rp, "PUT_STATES_MAX_BYTES", 2500)
    nodes = {n: replica(n, ae_ms=1000) for n in N3}
    for i in range(12):
        local_set(nodes["n1"], b"key%02d" % i, b"x" * 1000, 10 + i)
        local_set(nodes["n2"], b"key%02d" % i, b"y" * 1000, 30 + i)  # newer: n1's answers are repaired
    sent: list[Any] = []
    run_rounds(nodes, 1000, 12, sent)

    def size(states: tuple[tuple[bytes, bytes | None], ...]) -> int:
        return sum(len(k) + len(b or b"") for k, b in states)

    gets = [m for m in sent if isinstance(m, dm.Get)]
    answers = [m for m in sent if isinstance(m, dm.GetReply)]
    assert gets and all(len(m.keys) == 1 for m in gets) and len(answers) == len(gets)
    puts = [m for m in sent if isinstance(m, dm.Put) and m.states]
    assert any(len(p.states) > 1 for p in puts)
    assert all(len(m.states) == 1 or size(m.states) <= 2500 for m in (*answers, *puts))
    blobs = [{k: r.store.key_blob(k) for k in r.store.stored_keys()} for r in nodes.values()]
    assert len(blobs[0]) == 12 and blobs[0] == blobs[1] == blobs[2]
    assert all(nodes["n3"].store.key_blob(b"key%02d" % i) == nodes["n2"].store.key_blob(b"key%02d" % i)
               for i in range(12))


def round_started(effects: list[Any]) -> bool:
    return any(isinstance(e, Send) and isinstance(e.msg, dm.TreeGet) for e in effects)


def test_a_due_round_first_digests_the_keys_waiting_then_a_tick_at_a_time(monkeypatch: Any) -> None:
    """Issue 9 (QUORUM GET p99 spikes): a round that comes due while changed keys wait does not
    start at once, leaving the backlog to its steps (then 1,000 keys a step on both members,
    10-70 ms of event loop each, and stale digests that made every leaf differ): each tick
    digests at most ``AE_DIGESTS_PER_UPDATE`` of the keys waiting when it came due, and the round
    starts once they are digested; keys changed meanwhile do not hold it back."""
    monkeypatch.setattr(rp, "AE_DIGESTS_PER_UPDATE", 10)
    r = replica("n1", ae_ms=1000)
    now = 1000
    assert not round_started(r.tick(now, now * 1000, N3))  # the first round's time is chosen
    for i in range(35):
        local_set(r, b"k%03d" % i, b"v", now + i)
    now += 1000  # past the first round's time
    waiting = [len(r.dirty)]
    started = False
    for tick in range(10):
        effects = r.tick(now + tick * 100, (now + tick * 100) * 1000, N3)
        local_set(r, b"new%d" % tick, b"v", now + tick * 100)  # changed after it came due
        started = round_started(effects)
        if started:
            break
        waiting.append(len(r.dirty) - 1)  # the key just written is not part of the backlog
    assert started and tick == 3  # 35 keys waiting, 10 a tick: the 4th tick digests the last 5 and starts it
    assert all(before - after <= 10 for before, after in zip(waiting, waiting[1:]))
    assert not any(k.startswith(b"k") for k in r.dirty)  # the backlog it waited for is digested


def test_the_first_round_comes_at_a_random_time_within_one_interval() -> None:
    """Nodes started together do not run their rounds at the same moments (every node's round,
    and the peer's part of it, came at once every interval)."""
    firsts = set()
    for seed in range(8):
        r = Replica("n1", Ring(N3, 3, 16), conflicts="lww", timeout_us=10**9, rng=random.Random(seed),
                    ae_interval_ms=1000)
        for now in range(1000, 3000, 10):
            if round_started(r.tick(now, now * 1000, N3)):
                firsts.add(now)
                break
    assert all(1000 < t < 2000 + 10 for t in firsts) and len(firsts) > 4


def test_a_round_compares_the_keys_of_at_most_AE_LEAVES_PER_ROUND_leaves(monkeypatch: Any) -> None:
    """A round whose walk finds many leaves differing asks the peer for the keys of at most
    ``AE_LEAVES_PER_ROUND`` of them (every key of 1,024 leaves was 90-240 ms of event loop on each
    side), a window from a random start; the replicas still converge over rounds."""
    monkeypatch.setattr(rp, "AE_LEAVES_PER_ROUND", 4)
    nodes = {n: replica(n, ae_ms=1000) for n in N3}
    for i in range(80):
        local_set(nodes["n1"], b"key%02d" % i, b"v%d" % i, 10 + i)
    sent: list[Any] = []
    run_rounds(nodes, 1000, 60, sent)
    leaf_gets = [m for m in sent if isinstance(m, dm.LeafGet)]
    assert leaf_gets and all(len(m.leaves) <= 4 for m in leaf_gets)
    assert len({m.leaves for m in leaf_gets}) > 1
    blobs = [{k: r.store.key_blob(k) for k in r.store.stored_keys()} for r in nodes.values()]
    assert len(blobs[0]) == 80 and blobs[0] == blobs[1] == blobs[2]
