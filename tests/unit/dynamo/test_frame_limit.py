"""Issue 9: ``Replica.frames`` cuts a peer's messages of one loop iteration into frames of at most
the transport's ``max_frame_bytes`` (a larger frame closes the link: the writes it held reach the
replica only later, through hints, after their clients were refused), its writes into several
``Puts`` where one would not fit; every message still arrives, in order. ``cut_by_bytes`` is the
cut they share with the multi-leader runtime."""

from __future__ import annotations

import random
from typing import Any

import pytest

from replikv.config import PEER_FRAME_SLACK_BYTES, NodeOptions
from replikv.core.dynamo import messages as dm
from replikv.core.dynamo.coordinator import ReadDone
from replikv.core.dynamo.replica import PUT_STATES_MAX_BYTES, Replica, Send
from replikv.core.dynamo.ring import Ring
from replikv.core.framing import cut_by_bytes
from replikv.kv.crdt_writes import translate

N3 = ["n1", "n2", "n3"]


def replica(name: str, announced: tuple[str, ...] = ("n1", "n2", "n3")) -> Replica:
    r = Replica(name, Ring(N3, 3, 16), conflicts="lww", timeout_us=10**9, rng=random.Random(1), ae_interval_ms=0)
    for peer in announced:
        if peer != name:
            r.step(peer, dm.Hello(features=dm.FEATURES), 0, 0)
    return r


def write(r: Replica, req: int, key: bytes, value: bytes) -> list[Any]:
    muts, _ = translate(r.store, [b"SET", key, value], 10, random.Random(0))
    return r.write(req, muts, r.hlc.now(10), N3, 3, N3, (), 10, 10_000)


def sends(effects: list[Any]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


def received(frames: list[tuple[str, bytes]], peer: str) -> list[Any]:
    """The messages ``peer`` gets from ``frames``, in the order it reads them."""
    out: list[Any] = []
    for to, frame in frames:
        if to == peer:
            msg = dm.decode(frame)
            out.extend(msg.msgs if isinstance(msg, dm.Batch) else (msg,))
    return out


@pytest.mark.parametrize(("sizes", "budget", "ends"), [
    ([], 10, []),
    ([3, 3, 3], 10, [3]),
    ([4, 4, 4], 10, [2, 3]),
    ([4, 6, 1], 10, [2, 3]),
    ([11, 2, 12, 5, 5], 10, [1, 2, 3, 5]),  # a piece above the budget is a run of its own
    ([0, 0, 10, 0, 1], 10, [4, 5]),
])
def test_cut_by_bytes_fills_each_run_up_to_the_budget_in_order(sizes: list[int], budget: int,
                                                                 ends: list[int]) -> None:
    assert cut_by_bytes(sizes, budget) == ends


@pytest.mark.parametrize("batches", [True, False])
def test_no_frame_passes_the_limit_and_every_message_arrives_in_order(batches: bool) -> None:
    """Twelve writes of 10 KiB values, with reads, acks and a hint between them, to a peer that
    announced Puts (they become several Puts) and to one that did not (single Puts), under a
    limit of 32 KiB: every frame fits it, the peer reads every message once, in order (the
    writes in the order they were made), and applies every write."""
    n1 = replica("n1", announced=("n2", "n3") if batches else ())
    limit = 32 * 1024
    effects: list[Any] = []
    for i in range(12):
        effects.extend(write(n1, i + 1, b"k%d" % (i % 5), bytes([65 + i]) * 10_000))
        if i % 4 == 1:
            effects.append(Send(to="n2", msg=dm.Get(req=100 + i, keys=(b"x",))))
            effects.append(Send(to="n2", msg=dm.PutAck(req=200 + i, ok=True)))
    effects.append(Send(to="n2", msg=dm.Put(req=300, states=((b"h", b"s"),), hint_for="n3")))
    frames = n1.frames(sends(effects), limit)
    assert all(len(f) <= limit for _, f in frames)
    assert len([to for to, _ in frames if to == "n2"]) >= 4  # 120 KB cut in frames of 32 KiB
    msgs = received(frames, "n2")
    writes = [r for m in msgs if isinstance(m, dm.Puts) for r, _ in m.writes] if batches else [
        m.req for m in msgs if isinstance(m, dm.Put) and m.delta]
    assert writes == list(range(1, 13))  # each write once, in order
    others = [m for m in msgs if not isinstance(m, (dm.Puts, dm.PutAcks)) and not (isinstance(m, dm.Put) and m.delta)]
    if batches:
        assert others == [dm.Get(req=101, keys=(b"x",)), dm.Get(req=105, keys=(b"x",)),
                          dm.Get(req=109, keys=(b"x",)), dm.Put(req=300, states=((b"h", b"s"),), hint_for="n3")]
        assert [m for m in msgs if isinstance(m, dm.PutAcks)] == [dm.PutAcks(ok=(201, 205, 209))]
    else:
        assert others == [dm.Get(req=101, keys=(b"x",)), dm.PutAck(req=201, ok=True),
                          dm.Get(req=105, keys=(b"x",)), dm.PutAck(req=205, ok=True),
                          dm.Get(req=109, keys=(b"x",)), dm.PutAck(req=209, ok=True),
                          dm.Put(req=300, states=((b"h", b"s"),), hint_for="n3")]
    n2 = replica("n2")
    back: list[Any] = []
    for m in msgs:
        if isinstance(m, (dm.Put, dm.Puts)) and not (isinstance(m, dm.Put) and m.hint_for):
            back.extend(n2.step("n1", m, 11, 11_000))
    assert {k: n2.store.key_blob(k) for k in n1.store.stored_keys()} == {
        k: n1.store.key_blob(k) for k in n1.store.stored_keys()}
    acked = [r for m in received(n2.frames(sends(back), limit), "n1")
             for r in (m.ok if isinstance(m, dm.PutAcks) else (m.req,) if isinstance(m, dm.PutAck) else ())]
    assert sorted(acked) == list(range(1, 13))


def test_messages_that_fit_together_stay_one_frame() -> None:
    n1 = replica("n1")
    effects = [e for i in range(3) for e in write(n1, i + 1, b"k%d" % i, b"v" * 100)]
    frames = n1.frames(sends(effects), 64 * 1024)
    assert [to for to, _ in frames] == ["n2", "n3"]
    assert received(frames, "n2") == [dm.Puts(writes=tuple(
        (r, d) for m in sends(effects) if m.to == "n2" for r, d in ((m.msg.req, m.msg.delta),)))]


def test_a_write_of_one_max_size_value_fits_the_frame_limit_with_room_to_spare() -> None:
    """A SET of a value of ``max_bulk_len`` bytes (1 MiB here) is a frame of at most that and a
    few hundred bytes, far inside the transport's ``max_bulk_len`` + ``PEER_FRAME_SLACK_BYTES``;
    with other writes beside it, it leaves in a frame of its own."""
    opts = NodeOptions(max_bulk_len=1024 * 1024)
    assert opts.max_frame_bytes == opts.max_bulk_len + PEER_FRAME_SLACK_BYTES
    n1 = replica("n1")
    big = write(n1, 1, b"big", b"x" * opts.max_bulk_len)
    frames = n1.frames(sends(big), opts.max_frame_bytes)
    (alone,) = {len(f) for _, f in frames}  # one frame to each other replica
    assert alone - opts.max_bulk_len < 256
    small = [write(n1, i + 2, b"s%d" % i, b"v" * 400) for i in range(4)]
    limit = alone + 100  # the big write fits it, not with a small one
    frames = n1.frames(sends([*small[0], *big, *small[1], *small[2], *small[3]]), limit)
    assert all(len(f) <= limit for _, f in frames)
    assert [[r for m in received([(to, f)], "n2") for r, _ in m.writes] for to, f in frames if to == "n2"] == [
        [2], [1], [3, 4, 5]]  # the small writes cannot join the big one; each keeps its place


def test_a_message_above_the_limit_on_its_own_is_a_frame_of_its_own() -> None:
    """Not cut (it cannot be): its maker bounds it. The messages around it keep their order."""
    n1 = replica("n1")
    msgs = [dm.Get(req=1, keys=(b"a",)), dm.Put(req=2, states=((b"k", b"x" * 5000),)), dm.Get(req=3, keys=(b"b",))]
    frames = n1.frames([Send(to="n2", msg=m) for m in msgs], 1000)
    assert [len(f) > 1000 for _, f in frames] == [False, True, False]
    assert received(frames, "n2") == msgs


def test_a_multi_key_read_of_large_values_is_answered_in_parts_that_fit_and_joined_by_the_asker() -> None:
    """A read of five keys of ~400 KiB each (an MGET) from a peer that joins parts is answered by
    ``GetReply``s of at most ``PUT_STATES_MAX_BYTES`` bar a single larger state, in order, so each
    fits a frame of a little over 1 MiB; the asking coordinator joins them into one answer per
    replica, and completes the read only once it holds a state per key. To a peer of an older
    version (no ``FEATURE_GET_PARTS``) the answer stays one reply, as it reads it."""
    n1, n2 = replica("n1"), replica("n2")
    keys = tuple(b"m%d" % i for i in range(5)) + (b"absent",)
    for i, k in enumerate(keys[:-1]):
        for e in sends(write(n1, i + 1, k, bytes([65 + i]) * 400_000)):
            if e.to == "n2":
                n2.step("n1", e.msg, 11, 11_000)
    asked = sends(n1.read(50, keys, N3, 2, N3, 12, 12_000))
    (get,) = [e.msg for e in asked if e.to == "n2"]
    answer = sends(n2.step("n1", get, 13, 13_000))
    parts = [e.msg for e in answer]
    assert len(parts) == 3 and all(isinstance(p, dm.GetReply) and p.req == 50 for p in parts)
    assert [k for p in parts for k, _ in p.states] == list(keys)
    assert all(sum(len(k) + len(b or b"") for k, b in p.states) <= PUT_STATES_MAX_BYTES or len(p.states) == 1
               for p in parts)
    limit = PUT_STATES_MAX_BYTES + 64 * 1024
    assert all(len(f) <= limit for _, f in n2.frames(answer, limit))
    assert not [e for e in n1.step("n2", parts[0], 14, 14_000) if isinstance(e, ReadDone)]
    assert not [e for e in n1.step("n2", parts[1], 14, 14_000) if isinstance(e, ReadDone)]
    (done,) = [e for e in n1.step("n2", parts[2], 14, 14_000) if isinstance(e, ReadDone)]
    assert done.ok and done.answers == {"n2": tuple(s for p in parts for s in p.states)}
    old = replica("n2", announced=())
    for e in sends(write(n1, 9, b"m0", b"z" * 400_000)):
        if e.to == "n2":
            old.step("n1", e.msg, 15, 15_000)
    assert [type(e.msg) for e in sends(old.step("n1", get, 16, 16_000))] == [dm.GetReply]
