"""Chunked state transfer on core/crdt/store.py: ``dump_keys`` / ``join_keys`` /
``join_absent`` / ``cover``.

Joining a store's chunks (in any order) then the absent keys equals joining its
whole snapshot; a transfer interleaved with new ops on both sides (the sender's
chunks read at later and later moments, the receiver delivering ops, also ones
the transfer covers, between chunks) still converges with a node that got every
op by delivery, no increment counted twice; a transfer cut off half way leaves
a state that converges too; key contexts survive a snapshot."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.crdt.store import CrdtStore
from tests.property.test_crdt_laws import random_muts, simulate

NODES = ["a", "b", "c"]


def chunks(store: CrdtStore, max_bytes: int) -> list[bytes]:
    keys = list(store.data)
    out, pos = [], 0
    while True:
        blob, pos = store.dump_keys(keys, pos, max_bytes)
        out.append(blob)
        if pos >= len(keys):
            return out


def chunked_join(into: CrdtStore, blobs: list[bytes], at: dict[str, int], vv0: dict[str, int]) -> None:
    present: set[bytes] = set()
    for blob in blobs:
        present.update(into.join_keys(blob, at)[1])
    into.join_absent(present, vv0)
    into.cover(vv0)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**9), st.integers(1, 30), st.sampled_from([1, 40, 200, 10**6]), st.randoms())
def test_chunks_in_any_order_equal_the_whole_join(seed, n_ops, max_bytes, shuffle):
    _, stores, _, _, _ = simulate(seed, n_ops)
    a, b = stores["a"], stores["b"]
    whole = CrdtStore.restore(a.snapshot(), "siblings")
    whole.join(b.snapshot())
    blobs = chunks(b, max_bytes)
    shuffle.shuffle(blobs)
    if max_bytes == 1:
        assert len(blobs) == max(1, len(b.data))  # one key per chunk, however big
    chunked_join(a, blobs, dict(b.vv), dict(b.vv))
    assert a.digest() == whole.digest()
    assert not a.kctx


class Net:
    """Three stores; ops made anywhere wait in per-node queues for causal delivery."""

    def __init__(self, seed: int, n_ops: int) -> None:
        ops, self.stores, self.pending, self.hlcs, self.rng = simulate(seed, n_ops)
        self.seqs = {n: self.stores[n].vv.get(n, 0) for n in NODES}
        self.applied = {n: 0 for n in NODES}
        self.refused = 0

    def make(self, node: str) -> None:
        s = self.stores[node]
        muts = random_muts(s, self.rng)
        if any(s.pending_context(bytes(m[1])) for m in muts):
            self.refused += 1
            return  # the runtime refuses a write from a key a transfer is joining (TRYAGAIN)
        self.seqs[node] += 1
        self.hlcs[node] += 1
        op = (node, self.seqs[node], self.hlcs[node], dict(s.vv), muts)
        s.apply(*op)
        for other in NODES:
            if other != node:
                self.pending[other].append(op)

    def deliver(self, node: str, vv: dict[str, int] | None = None) -> bool:
        """One causally ready op at ``node`` (readiness by ``vv``: the replica's vector, which a
        transfer in progress does not move); covered ones are dropped."""
        s = self.stores[node]
        vv = s.vv if vv is None else vv
        queue = self.pending[node]
        queue[:] = [op for op in queue if op[1] > vv.get(op[0], 0)]
        ready = [op for op in queue
                 if op[1] == vv.get(op[0], 0) + 1 and all(vv.get(o, 0) >= q for o, q in op[3].items())]
        if not ready:
            return False
        op = self.rng.choice(ready)
        queue.remove(op)
        s.apply(*op)
        self.applied[node] += 1
        return True

    def drain(self) -> None:
        for n in NODES:
            while self.deliver(n):
                pass
            assert not self.pending[n]

    def converged(self) -> bool:
        return len({s.digest() for s in self.stores.values()}) == 1


def _transfer(net: Net, max_bytes: int, finish: bool) -> None:
    """b streams its state to a while a, b and c keep making and delivering ops."""
    a, b = net.stores["a"], net.stores["b"]
    rng = net.rng
    vv0, keys, pos = dict(b.vv), list(b.data), 0
    present: set[bytes] = set()
    done = False
    cut_after = rng.randrange(1, max(2, len(keys)))
    sent = 0
    while not done:
        for _ in range(rng.randrange(4)):
            action = rng.randrange(5)
            if action == 0:
                net.make("b")
            elif action == 1:
                net.make("a")  # deps = a's vv: the joined chunks are not in it
            elif action == 2:
                net.deliver("a")  # possibly an op the transfer covers, onto a key already joined
            elif action == 3:
                net.deliver("b")
            else:
                net.make("c")
        blob, pos = b.dump_keys(keys, pos, max_bytes)
        assert all(b.vv.get(o, 0) >= s for o, s in vv0.items())  # at >= the announced vv
        present.update(a.join_keys(blob, dict(b.vv))[1])
        sent += 1
        done = pos >= len(keys)
        if not finish and sent >= cut_after:
            return  # cut off: a's vv never moves for it
    a.join_absent(present, vv0)
    a.cover(vv0)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**9), st.integers(1, 30), st.sampled_from([1, 60, 10**6]), st.booleans())
def test_a_transfer_interleaved_with_ops_converges(seed, n_ops, max_bytes, finish):
    net = Net(seed, n_ops)
    _transfer(net, max_bytes, finish)
    net.drain()
    assert net.converged(), {n: s.visible(b"k1") for n, s in net.stores.items()}
    for s in net.stores.values():
        s.prune_contexts()
        assert not s.kctx  # every op delivered: every key context is covered


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**9), st.integers(1, 20))
def test_two_cut_off_transfers_then_a_whole_one(seed, n_ops):
    net = Net(seed, n_ops)
    _transfer(net, 1, False)
    _transfer(net, 40, False)
    _transfer(net, 10**6, True)
    net.drain()
    assert net.converged()


def test_an_increment_the_chunk_holds_is_not_counted_again():
    a, b = CrdtStore(), CrdtStore()
    b.apply("b", 1, 1, {}, [("incr", b"c", 5)])
    vv0, keys = dict(b.vv), list(b.data)
    b.apply("b", 2, 2, {"b": 1}, [("incr", b"c", 7)])  # after the start: read into the chunk
    b.apply("b", 3, 3, {"b": 2}, [("sadd", b"s", b"x")])  # a key that did not exist at the start
    blob, _ = b.dump_keys(keys, 0, 1 << 20)
    present = set(a.join_keys(blob, dict(b.vv))[1])
    assert a.kctx == {b"c": {"b": 3}} and a.vv == {}
    a.join_absent(present, vv0)
    a.cover(vv0)
    assert a.vv == {"b": 1} and a.visible(b"c").value == b"12"
    assert a.kctx == {b"c": {"b": 3}}  # beyond vv: ops 2 and 3 are still to come as ops
    snap = CrdtStore.restore(a.snapshot())
    assert snap.kctx == a.kctx  # durable with the state it describes
    for s in (a, snap):
        s.apply("b", 2, 2, {"b": 1}, [("incr", b"c", 7)])  # covered by c's context: skipped
        s.apply("b", 3, 3, {"b": 2}, [("sadd", b"s", b"x")])
        assert s.visible(b"c").value == b"12" and s.visible(b"s").value == {b"x"}
        s.prune_contexts()
        assert not s.kctx and s.digest() == b.digest()


def test_a_key_absent_at_the_sender_loses_what_the_sender_saw_removed():
    a, b = CrdtStore(), CrdtStore()
    op1 = ("b", 1, 1, {}, [("set", b"gone", b"v", None, None)])
    op2 = ("a", 1, 2, {}, [("set", b"mine", b"w", None, None)])
    a.apply(*op1)
    a.apply(*op2)
    b.apply(*op1)
    b.apply("b", 2, 3, {"b": 1}, [("del", b"gone", {}, {})])
    blobs = chunks(b, 1 << 20)
    chunked_join(a, blobs, dict(b.vv), dict(b.vv))
    assert a.visible(b"gone") is None  # b saw it and deleted it
    assert a.visible(b"mine").value == b"w"  # b never saw it: it stays
    assert a.vv == {"a": 1, "b": 2}


def test_dump_keys_respects_the_byte_bound():
    s = CrdtStore()
    for i in range(200):
        s.apply("n", i + 1, i + 1, {"n": i}, [("set", f"k{i}".encode(), b"x" * 50, None, None)])
    blobs = chunks(s, 1000)
    assert len(blobs) > 10 and all(len(b) <= 1000 + 5 for b in blobs)
    r = CrdtStore()
    chunked_join(r, blobs, dict(s.vv), dict(s.vv))
    assert r.digest() == s.digest()


def test_random_long_runs_converge():
    for seed in range(40):
        rng = random.Random(seed)
        net = Net(seed, rng.randrange(5, 40))
        _transfer(net, rng.choice([1, 80]), bool(seed % 3))
        net.drain()
        assert net.converged(), seed
