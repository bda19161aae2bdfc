"""``KeyedStore.overwrite_absent`` (a Paxos commit of a key absent on the replica,
``Replica._apply_commit``) leaves what the general path, ``apply_write`` of
``overwrite_muts``, leaves: the same entries in the same form, key contexts, tombstone times,
view hints, blobs and digests, on any history of the store."""

from __future__ import annotations

import copy
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.crdt.keyed import KeyedStore
from replikv.core.crdt.store import overwrite_muts

KEYS = [b"k1", b"k2", b"k3"]
ORIGINS = ["n1", "n2", "n3"]


def random_history(rng: random.Random, n_ops: int) -> tuple[KeyedStore, int]:
    """A store after ``n_ops`` random writes (several kinds, deletes among them, so some keys
    end as tombstones: a context and no entry), with view hints on some keys."""
    store = KeyedStore("lww")
    hlc = 1000
    for _ in range(n_ops):
        hlc += rng.randrange(1, 5)
        key = rng.choice(KEYS)
        kind = rng.randrange(7)
        if kind == 0:
            muts = overwrite_muts(store, key, rng.choice([b"a", b"bb", None]))
        elif kind == 1:
            muts = [("put", key, b"p", rng.choice([None, 5000]))]
        elif kind == 2:
            muts = overwrite_muts(store, key, None)  # a delete
        elif kind == 3:
            muts = [("incr", key, rng.choice([1, -3]))]
        elif kind == 4:
            muts = [("sadd", key, rng.choice([b"m", b"n"]))]
        elif kind == 5:
            muts = [("hset", key, b"f", b"v", None)]
        else:
            muts = [("ttl", key, rng.choice([None, 7000]))]
        store.apply_write(rng.choice(ORIGINS), hlc, muts, hlc // 10)
        if rng.random() < 0.3:
            store.hints[rng.choice(KEYS)] = {b"m"}
    return store, hlc


def assert_same(a: KeyedStore, b: KeyedStore) -> None:
    assert a.data.keys() == b.data.keys()
    for key in a.data:
        x, y = a.data[key], b.data[key]
        assert (x.one, x._reg, x._ttl, x.ctr, x.set, x.lst) == (y.one, y._reg, y._ttl, y.ctr, y.set, y.lst)
        assert x.dump() == y.dump()  # the hash part's cells too
        assert a.key_blob(key) == b.key_blob(key) and a.key_digest(key) == b.key_digest(key)
        assert a.visible(key) == b.visible(key)
    assert a.ctx == b.ctx and a.dead_ms == b.dead_ms and a.hints == b.hints


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32), n_ops=st.integers(0, 25), fresh=st.booleans(),
       value=st.sampled_from([b"y", b"", b"x" * 40]))
def test_overwrite_absent_equals_the_general_path(seed: int, n_ops: int, fresh: bool, value: bytes) -> None:
    rng = random.Random(seed)
    store, hlc = random_history(rng, n_ops)
    absent = [k for k in KEYS if k not in store.data]
    key = b"fresh" if fresh or not absent else rng.choice(absent)  # never seen, or a tombstone
    origin = rng.choice(ORIGINS)
    hlc += rng.randrange(1, 5)
    general, fast = store, copy.deepcopy(store)
    assert general.context(key).get(origin, 0) < hlc  # what the caller checks first
    changed = general.apply_write(origin, hlc, overwrite_muts(general, key, value), hlc // 10)
    assert fast.overwrite_absent(origin, hlc, key, value, hlc // 10) == changed == [key]
    assert_same(general, fast)
    # and the state goes on the same: a later write over it, by either path's store
    later = [("put", key, b"z", None)] if rng.random() < 0.5 else overwrite_muts(general, key, b"z")
    general.apply_write("n2", hlc + 1, later, hlc // 10 + 1)
    fast.apply_write("n2", hlc + 1, later, hlc // 10 + 1)
    assert_same(general, fast)


def test_overwrite_absent_refuses_a_present_key() -> None:
    store = KeyedStore("lww")
    store.apply_write("n1", 10, [("put", b"k", b"v", None)], 1)
    with pytest.raises(ValueError):
        store.overwrite_absent("n1", 11, b"k", b"w", 1)


@pytest.mark.parametrize("tombstone", [False, True])
def test_a_replicas_commit_of_an_absent_key_takes_the_direct_way_and_logs_what_replays_to_it(
        monkeypatch: pytest.MonkeyPatch, tombstone: bool) -> None:
    """``Replica._apply_commit``: a key absent here (never seen, or deleted) takes
    ``overwrite_absent``, not ``apply_write``, and its WAL entry is still ``overwrite_muts``' (a
    replay, and an older replica, apply those): replayed on the state before, it gives the same."""
    from replikv.core.dynamo import paxos as px
    from replikv.core.dynamo import paxos_messages as pm
    from replikv.core.dynamo.replica import Persist, Replica
    from replikv.core.dynamo.ring import Ring

    r = Replica("n1", Ring(["n1", "n2", "n3"], 3, 16), conflicts="lww", timeout_us=10**9, rng=random.Random(1),
                ae_interval_ms=0)
    if tombstone:
        r.store.apply_write("n2", 50, [("put", b"k", b"old", None)], 1)
        r.store.apply_write("n2", 60, overwrite_muts(r.store, b"k", None), 2)
    before = copy.deepcopy(r.store)
    store_type = type(r.store)

    def refused(*args: object) -> list[bytes]:
        raise AssertionError("the general path")

    monkeypatch.setattr(store_type, "apply_write", refused)
    out: list = []
    r._apply_commit(px.ApplyCommit(key=b"k", ballot=pm.Ballot(100, "n3"), value=b"v"), 5, out)
    monkeypatch.undo()
    (wal,) = [e.entry for e in out if isinstance(e, Persist)]
    assert wal == ["w", 100, overwrite_muts(before, b"k", b"v"), 5, "n3"]
    before.apply_write(wal[4], wal[1], wal[2], wal[3])
    assert_same(before, r.store)
    assert r._current(b"k") == (100, b"v")
