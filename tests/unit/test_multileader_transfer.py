"""core/multileader/transfer.py: StateExport streams a store in bounded chunks while it
changes; StateReceiver joins them in any order, duplicated, completes exactly once,
lets a newer transfer replace an older one and ignores one that brings nothing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.crdt import CrdtStore
from replikv.core.multileader import codec
from replikv.core.multileader.messages import StateChunk
from replikv.core.multileader.replica import covers
from replikv.core.multileader.transfer import StateExport, StateReceiver
from tests.unit.test_crdt_chunks import Net


def _needed(store: CrdtStore):
    return lambda vv: not covers(store.vv, vv)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**9), st.integers(1, 30), st.sampled_from([1, 50, 10**6]), st.randoms())
def test_chunks_shuffled_and_duplicated_complete_once_and_converge(seed, n_ops, max_bytes, rnd):
    net = Net(seed, n_ops)
    a, b = net.stores["a"], net.stores["b"]
    export = StateExport(b, "b", transfer=1, max_chunk_bytes=max_bytes)
    sent: list[StateChunk] = []
    while not export.done:
        net.make("b")  # the sender changes between chunks: later chunks are read later
        sent.append(codec.decode(codec.encode(export.next_chunk())))  # through the wire form
    assert sent[-1].last and all(not c.last for c in sent[:-1])
    assert all(c.vv == export.vv and covers(c.at, c.vv) for c in sent)
    wire = sent + rnd.sample(sent, k=len(sent) // 2)  # duplicates
    rnd.shuffle(wire)
    rx = StateReceiver()
    done = []
    for c in wire:
        net.deliver("a")  # a delivers ops meanwhile (its vv has not moved)
        _, vv = rx.chunk(a, c, _needed(a))
        if vv is not None:
            done.append(vv)
    needed_at_start = True  # a starts empty of b's ops unless simulate delivered them all
    if done:
        assert done == [export.vv] and covers(a.vv, export.vv) and rx.in_progress() == 0
    else:
        needed_at_start = False
        assert rx.incoming["b"].ignored
    net.drain()
    assert net.converged()
    assert needed_at_start or covers(a.vv, export.vv)


def test_a_newer_transfer_replaces_an_older_one_and_stragglers_are_ignored():
    a, b = CrdtStore(), CrdtStore()
    for i in range(1, 6):
        b.apply("b", i, i, {"b": i - 1}, [("incr", f"k{i}".encode(), i)])
    old = StateExport(b, "b", transfer=1, max_chunk_bytes=1)
    new = StateExport(b, "b", transfer=2, max_chunk_bytes=1)
    rx = StateReceiver()
    assert rx.chunk(a, old.next_chunk(), _needed(a))[1] is None
    first_new = new.next_chunk()
    rx.chunk(a, first_new, _needed(a))
    assert rx.incoming["b"].transfer == 2 and rx.incoming["b"].have == {0}
    while not old.done:
        assert rx.chunk(a, old.next_chunk(), _needed(a)) == ([], None)  # replaced
    assert a.vv == {}  # nothing moved yet
    results = []
    while not new.done:
        results.append(rx.chunk(a, new.next_chunk(), _needed(a))[1])
    assert results[-1] == {"b": 5} and a.vv == {"b": 5} and a.digest() == b.digest()
    assert rx.chunk(a, first_new, _needed(a)) == ([], None) or a.digest() == b.digest()


def test_a_transfer_that_brings_nothing_is_ignored_and_cancel_forgets():
    a, b = CrdtStore(), CrdtStore()
    op = ("b", 1, 1, {}, [("incr", b"k", 1)])
    a.apply(*op)
    b.apply(*op)
    rx = StateReceiver()
    export = StateExport(b, "b", transfer=1)
    assert rx.chunk(a, export.next_chunk(), _needed(a)) == ([], None)
    assert rx.incoming["b"].ignored and rx.in_progress() == 0
    c = CrdtStore()
    rx2 = StateReceiver()
    b.apply("b", 2, 2, {"b": 1}, [("incr", b"j", 1)])
    ex2 = StateExport(b, "b", transfer=3, max_chunk_bytes=1)  # two keys: two chunks
    rx2.chunk(c, ex2.next_chunk(), _needed(c))
    assert rx2.in_progress() == 1
    rx2.cancel("b")
    assert rx2.in_progress() == 0 and c.vv == {}


def test_a_completed_transfer_ends_another_senders_that_it_covers():
    a, b, c = CrdtStore(), CrdtStore(), CrdtStore()
    for i in range(1, 4):
        op = ("b", i, i, {"b": i - 1}, [("incr", f"k{i}".encode(), i)])
        b.apply(*op)
        c.apply(*op)
    from_b = StateExport(b, "b", transfer=1, max_chunk_bytes=1)
    from_c = StateExport(c, "c", transfer=1, max_chunk_bytes=1)
    rx = StateReceiver()
    rx.chunk(a, from_c.next_chunk(), _needed(a))
    assert rx.in_progress() == 1
    while not from_b.done:
        rx.chunk(a, from_b.next_chunk(), _needed(a))
    assert a.vv == {"b": 3} and rx.in_progress() == 0  # c's brings nothing more
    while not from_c.done:
        assert rx.chunk(a, from_c.next_chunk(), _needed(a)) == ([], None)
    assert a.digest() == b.digest()


def test_a_transfer_caught_up_with_meanwhile_ends_at_once_on_both_sides():
    """The receiver gets b's ops by another way while b's transfer is under way: the next
    chunk, or the heartbeat's ``drop_covered``, ends it, and b stops once a Sync shows it."""
    a, b = CrdtStore(), CrdtStore()
    ops = [("b", i, i, {"b": i - 1}, [("incr", f"k{i}".encode(), i)]) for i in range(1, 4)]
    for op in ops:
        b.apply(*op)
    export = StateExport(b, "b", transfer=1, max_chunk_bytes=1)
    rx = StateReceiver()
    rx.chunk(a, export.next_chunk(), _needed(a))
    assert rx.in_progress() == 1 and not export.unneeded(dict(a.vv))
    rx.drop_covered(_needed(a))
    assert rx.in_progress() == 1  # it still brings b:1..3
    for op in ops:
        a.apply(*op)  # delivered by a relay
    assert export.unneeded(dict(a.vv))
    assert rx.chunk(a, export.next_chunk(), _needed(a)) == ([], None)
    assert rx.in_progress() == 0
    rx2 = StateReceiver()
    c = CrdtStore()
    export2 = StateExport(b, "b", transfer=2, max_chunk_bytes=1)
    rx2.chunk(c, export2.next_chunk(), _needed(c))
    for op in ops:
        c.apply(*op)
    rx2.drop_covered(_needed(c))
    assert rx2.in_progress() == 0 and rx2.incoming["b"].present == set()
    while not export2.done:
        assert rx2.chunk(c, export2.next_chunk(), _needed(c)) == ([], None)
    assert c.digest() == b.digest()


def test_the_sender_keeps_a_window_of_unacknowledged_chunks():
    b = CrdtStore()
    for i in range(1, 11):
        b.apply("b", i, i, {"b": i - 1}, [("incr", f"k{i}".encode(), i)])
    export = StateExport(b, "b", transfer=1, max_chunk_bytes=1)
    sent = 0
    while export.may_send(3):
        export.next_chunk()
        sent += 1
    assert sent == 3
    export.on_ack(2)
    assert export.may_send(3)
    export.next_chunk()
    export.next_chunk()
    assert not export.may_send(3)  # chunks 2, 3 and 4 not acknowledged
    export.on_ack(99)  # never beyond what was sent
    assert export.acked == 5 and export.may_send(3)
