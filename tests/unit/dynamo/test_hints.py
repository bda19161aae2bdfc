"""core/dynamo/hints.py: hints join per key, go once delivered as sent, stay bounded."""

from __future__ import annotations

from replikv.core.crdt.hlc import Hlc
from replikv.core.crdt.keyed import KeyedStore
from replikv.core.dynamo.hints import Hints
from replikv.core.crdt.store import overwrite_muts


def state(origin: str, key: bytes, value: bytes, ms: int) -> bytes:
    store = KeyedStore()
    store.apply_write(origin, Hlc().now(ms), overwrite_muts(store, key, value), ms)
    blob = store.key_blob(key)
    assert blob is not None
    return blob


def test_two_hints_for_one_key_join_and_go_as_one_state() -> None:
    h = Hints()
    h.add("n3", b"k", state("n1", b"k", b"a", 1), 1)
    h.add("n3", b"k", state("n2", b"k", b"b", 2), 2)  # concurrent: both kept, one state
    assert h.pending("n3") == 1 and h.nodes() == ["n3"]
    [(key, blob)] = h.batch("n3", 10, 1 << 20)
    target = KeyedStore("siblings")
    target.join_key(key, blob, 3)
    assert sorted(v for _, _, v in target.siblings(b"k")) == [b"a", b"b"]


def test_a_hint_goes_only_once_the_state_sent_is_acknowledged() -> None:
    h = Hints()
    h.add("n3", b"k", state("n1", b"k", b"a", 1), 1)
    [(key, sent)] = h.batch("n3", 10, 1 << 20)
    h.add("n3", b"k", state("n1", b"k", b"later", 5), 5)  # grew while the delivery was in flight
    assert not h.delivered("n3", key, sent) and h.pending("n3") == 1
    [(_, again)] = h.batch("n3", 10, 1 << 20)
    assert h.delivered("n3", key, again) and h.pending("n3") == 0 and h.nodes() == []


def test_hints_are_bounded_and_survive_a_snapshot() -> None:
    h = Hints(max_keys=3)
    for i in range(5):
        h.add("n2", b"k%d" % i, state("n1", b"k%d" % i, b"v", i + 1), i + 1)
    assert h.pending("n2") == 3 and h.dropped == 2
    back = Hints.restore(h.snapshot(), max_keys=3)
    assert sorted(k for _, k, _ in back.items()) == sorted(k for _, k, _ in h.items())
    try:
        h.add("n2", b"x", b"\x00garbage", 9)
    except ValueError:
        pass
    else:
        raise AssertionError("a hint that is not a key state was taken")


def test_a_delivery_batch_is_bounded_in_bytes_too() -> None:
    """Issue 9: a batch of hints is one ``Put``, which must fit a peer frame: it ends before the
    state that would take it past ``max_bytes`` (its first state alone may pass it), and the
    batches after it, as each is acknowledged, hold every hint once, oldest first."""
    h = Hints()
    for i in range(7):
        h.add("n3", b"k%d" % i, state("n1", b"k%d" % i, b"x" * (3000 if i == 4 else 1000), i + 1), i + 1)
    batches = []
    while h.pending("n3"):
        batch = h.batch("n3", 10, 2500)
        batches.append([k for k, _ in batch])
        assert len(batch) == 1 or sum(len(k) + len(b) for k, b in batch) <= 2500
        for k, b in batch:
            assert h.delivered("n3", k, b)
    assert batches == [[b"k0", b"k1"], [b"k2", b"k3"], [b"k4"], [b"k5", b"k6"]]
