"""core/crdt: HLC, version vectors and the documented conflict rules of the store."""

from __future__ import annotations

import gc

import pytest

from replikv.core.crdt import CrdtStore, Hlc, covers, hlc_ms, leq, merge, parse_vv_text, vv_text
from replikv.core.crdt.store import ctr_totals, position_between


def test_hlc_monotonic_and_observe():
    c = Hlc()
    a = c.now(100)
    b = c.now(100)
    assert b > a and hlc_ms(a) == 100
    c.observe((200 << 16) + 5, 100)
    assert c.now(100) > (200 << 16) + 5
    assert hlc_ms(c.now(300)) == 300


def test_vv():
    assert covers({"a": 3}, "a", 3) and not covers({"a": 3}, "a", 4) and not covers({}, "b", 1)
    assert merge({"a": 1, "b": 5}, {"a": 3}) == {"a": 3, "b": 5}
    assert leq({"a": 1}, {"a": 2, "b": 1}) and not leq({"c": 1}, {"a": 2})
    assert vv_text({"n2": 5, "n1": 3}) == b"n1:3,n2:5"
    assert parse_vv_text(b"n1:3,n2:5") == {"n1": 3, "n2": 5}
    assert parse_vv_text(b"") == {}
    for bad in (b"n1", b"n1:x", b":3", b"n1:0", b"n1:1,n1:2", b"\xff:1"):
        with pytest.raises(ValueError):
            parse_vv_text(bad)


def two():
    return CrdtStore("siblings"), CrdtStore("siblings")


def both(a, b, *op):
    a.apply(*op)
    b.apply(*op)


def test_concurrent_sets_lww_and_siblings():
    a, b = two()
    opa = ("a", 1, 10, {}, [("set", b"k", b"va", None, None)])
    opb = ("b", 1, 11, {}, [("set", b"k", b"vb", None, None)])
    a.apply(*opa); a.apply(*opb)
    b.apply(*opb); b.apply(*opa)
    assert a.digest() == b.digest()
    assert a.visible(b"k").value == b"vb"
    assert [v for _, _, v in a.siblings(b"k")] == [b"va", b"vb"]
    # VSET with the context of both removes both
    a.apply("a", 2, 12, dict(a.vv), [("set", b"k", b"v", {}, {"a": 1, "b": 1})])
    assert a.siblings(b"k") == [(12, "a", b"v")]
    lww = CrdtStore("lww")
    lww.apply(*opa); lww.apply(*opb)
    assert [v for _, _, v in lww.siblings(b"k")] == [b"vb"]


def test_counter_no_increment_lost_and_reset():
    a, b = two()
    both(a, b, "a", 1, 1, {}, [("incr", b"c", 5)])
    a.apply("a", 2, 2, {"a": 1}, [("incr", b"c", 1)])
    b.apply("b", 1, 3, {"a": 1}, [("set", b"c", b"10", {"a": [5, 0]}, None)])
    a.apply("b", 1, 3, {"a": 1}, [("set", b"c", b"10", {"a": [5, 0]}, None)])
    b.apply("a", 2, 2, {"a": 1}, [("incr", b"c", 1)])
    assert a.visible(b"c").value == b.visible(b"c").value == b"11"  # the concurrent +1 survives
    c = CrdtStore()
    c.apply("a", 1, 1, {}, [("incr", b"c", 1)])
    c.apply("a", 2, 2, {"a": 1}, [("incr", b"c", -1)])
    assert c.visible(b"c").value == b"0"  # INCR then DECR leaves "0", as Redis


def test_orset_add_wins_and_delete_keeps_concurrent_write():
    a, b = two()
    both(a, b, "a", 1, 1, {}, [("sadd", b"s", b"x")])
    rem = ("a", 2, 2, {"a": 1}, [("srem", b"s", b"x")])
    add = ("b", 1, 3, {"a": 1}, [("sadd", b"s", b"x")])
    a.apply(*rem); a.apply(*add)
    b.apply(*add); b.apply(*rem)
    assert a.visible(b"s").value == b.visible(b"s").value == {b"x"}
    d = ("a", 3, 4, {"a": 2}, [("del", b"s", {}, {})])
    a.apply(*d)
    assert a.visible(b"s").value == {b"x"}  # the DEL did not observe b's add


def test_type_conflict_newest_wins_and_others_stay_hidden():
    a = CrdtStore()
    a.apply("a", 1, 10, {}, [("set", b"k", b"v", None, None)])
    a.apply("b", 1, 11, {}, [("sadd", b"k", b"m")])
    assert a.visible(b"k").type == "set"
    a.apply("b", 2, 12, {"b": 1}, [("srem", b"k", b"m")])
    assert a.visible(b"k").value == b"v"  # the hidden string shows again
    a.apply("a", 2, 13, dict(a.vv), [("del", b"k", {}, {})])
    assert a.visible(b"k") is None and len(a) == 0


def test_list_positions_and_concurrent_pushes():
    a, b = two()
    pa = ("a", 1, 10, {}, [("lins", b"l", [[[], 0, b"a1"], [[], 1, b"a2"]])])
    pb = ("b", 1, 11, {}, [("lins", b"l", [[[], 0, b"b1"]])])
    a.apply(*pa); a.apply(*pb)
    b.apply(*pb); b.apply(*pa)
    assert a.visible(b"l").value == b.visible(b"l").value == [b"a1", b"b1", b"a2"]
    lo = ((0, 1, "a", 1, 0, 0),)
    hi = ((1, 1, "a", 1, 0, 1),)
    prefix, n = position_between(lo, hi)
    pos = tuple(prefix) + ((n, 5, "z", 1, 0, 0),)
    assert lo < pos < hi
    prefix, n = position_between(None, lo)
    assert tuple(prefix) + ((n, 5, "z", 1, 0, 0),) < lo


def test_ttl_lww_and_snapshot_roundtrip():
    a = CrdtStore()
    a.apply("a", 1, 10, {}, [("sadd", b"k", b"m"), ("ttl", b"k", 5000)])
    a.apply("b", 1, 9, {}, [("ttl", b"k", None)])  # concurrent, older HLC: loses
    assert a.visible(b"k").deadline_ms == 5000
    assert dict(a.expiring()) == {b"k": 5000}
    r = CrdtStore.restore(a.snapshot(), "lww")
    assert r.digest() == a.digest() and r.vv == {"a": 1, "b": 1}
    assert r.join(a.snapshot()) == []


def test_a_key_holds_only_the_parts_it_uses():
    """``KeyState``'s invariant: a part with no entry is None (a counter with no history
    too), so a plain string key is its state, one cell, the register and the TTL dicts;
    a part emptied by a removal goes back to None."""
    s = CrdtStore()
    s.apply("a", 1, 10, {}, [("put", b"s", b"v", None)])
    ks = s.state(b"s")
    assert ks.set is None and ks.hash is None and ks.lst is None and ks.ctr is None
    assert len(ks.reg) == 1 and len(ks.ttl) == 1
    s.apply("a", 2, 11, {"a": 1}, [("incr", b"c", 5)])
    c = s.state(b"c")
    assert c.ttl is None and c.set is None and c.hash is None and c.lst is None and c.ctr
    # a type conflict, then removals that empty the set part and the hash part
    s.apply("b", 1, 12, {"a": 1}, [("sadd", b"s", b"m"), ("hset", b"s", b"f", b"x", None)])
    assert s.state(b"s").set and s.state(b"s").hash
    s.apply("b", 2, 13, {"a": 2, "b": 1}, [("srem", b"s", b"m"), ("hdel", b"s", b"f", None)])
    ks = s.state(b"s")
    assert ks.set is None and ks.hash is None and s.visible(b"s") == ("string", b"v", None)
    s.apply("b", 3, 14, {"a": 2, "b": 2}, [("lins", b"s", [[[], 0, b"e"]])])
    lid = next(iter(s.state(b"s").lst))
    s.apply("b", 4, 15, {"a": 2, "b": 3}, [("lrem", b"s", [list(lid)])])
    assert s.state(b"s").lst is None
    s.apply("b", 5, 16, {"a": 2, "b": 4}, [("del", b"s", {}, {})])
    assert s.state(b"s") is None


def test_a_key_a_put_wrote_is_one_tuple_until_a_concurrent_value_arrives():
    """``KeyState.one``: a put that observed every register and TTL entry leaves the key as
    one tuple (no dicts); a later put replaces it; a concurrent one (not observed) makes the
    two dicts, with both values; a put observing both makes the tuple again. Reading
    ``reg`` or ``ttl`` turns the tuple into the dicts it stands for."""
    s = CrdtStore("siblings")
    s.apply("a", 1, 10, {}, [("put", b"k", b"v1", 500)])
    ks = s.state(b"k")
    assert ks.one == ("a", 1, 0, 10, b"v1", 500) and ks._reg is None and ks._ttl is None
    assert s.visible(b"k") == ("string", b"v1", 500) and ks.one is not None  # read in place
    s.apply("a", 2, 11, {"a": 1}, [("put", b"k", b"v2", None)])
    assert ks.one == ("a", 2, 0, 11, b"v2", None)
    s.apply("b", 1, 12, {"a": 1}, [("put", b"k", b"w", None)])  # has not seen a:2
    assert ks.one is None and len(ks._reg) == 2 and len(ks._ttl) == 2
    assert [v for _, _, v in s.siblings(b"k")] == [b"v2", b"w"]
    s.apply("a", 3, 13, {"a": 2, "b": 1}, [("put", b"k", b"x", 7), ("incr", b"n", 1)])
    assert ks.one == ("a", 3, 0, 13, b"x", 7) and s.visible(b"k") == ("string", b"x", 7)
    assert ks.reg == {("a", 3, 0): (13, b"x")} and ks.ttl == {("a", 3, 0): (13, 7)}  # unpacked
    assert ks.one is None
    s.apply("a", 4, 14, {"a": 3, "b": 1}, [("put", b"k", b"y", None)])
    assert ks.one == ("a", 4, 0, 14, b"y", None)  # packed again by the next put
    restored = CrdtStore.restore(s.snapshot(), "siblings")  # the form is made on load too
    assert restored.state(b"k").one == ks.one and restored.digest() == s.digest()


def test_the_one_entry_tuple_of_an_old_key_is_untracked_by_the_first_young_collection():
    """``KeyState.one`` holds atoms only, so the first young collection that sees it stops
    the cyclic GC tracking it, although the key's KeyState (which holds it) is old: a nested
    id tuple would still be tracked when the collector looks at ``one``, and every written
    key's tuple would stay tracked into the middle generation."""
    s = CrdtStore()
    s.apply("a", 1, 10, {}, [("put", b"k", b"v1", None)])
    gc.collect()
    gc.freeze()  # the KeyState is old, as a node's keys are (BaseRunner._fsync_loop)
    try:
        s.apply("b", 1, 11, {"a": 1}, [("put", b"k", b"v2", None)])
        ks = s.state(b"k")
        assert ks.one is not None and gc.is_tracked(ks.one)  # young
        gc.collect(0)
        assert not gc.is_tracked(ks.one)
        assert s.visible(b"k") == ("string", b"v2", None)
    finally:
        gc.unfreeze()


def test_a_counters_cached_sum_follows_adds_resets_joins_and_loads():
    """``Cell.counter_sum`` (what ``visible`` shows for a counter) is the recount of the
    counter after every kind of change: kept by an add, recounted after a reset (DEL
    observed it), a join and a load."""
    from replikv.core.crdt.store import ctr_live, ctr_value

    def check(store: CrdtStore, key: bytes) -> None:
        ks = store.state(key)
        assert ks.counter_sum() == (ctr_value(ks.ctr), ctr_live(ks.ctr))

    a, b = CrdtStore(), CrdtStore()
    a.apply("a", 1, 10, {}, [("incr", b"n", 5)])
    check(a, b"n")
    assert a.visible(b"n") == ("string", b"5", None)
    a.apply("a", 2, 11, {"a": 1}, [("incr", b"n", -7)])
    assert a.visible(b"n") == ("string", b"-2", None)
    b.apply("b", 1, 12, {}, [("incr", b"n", 10)])
    a.apply("a", 3, 13, {"a": 2}, [("del", b"n", {"a": [5, 7]}, {})])  # observed a's adds only
    check(a, b"n")
    assert a.visible(b"n") is None
    a.join(b.snapshot())  # b's concurrent +10 survives the delete
    check(a, b"n")
    assert a.visible(b"n") == ("string", b"10", None)
    restored = CrdtStore.restore(a.snapshot())
    check(restored, b"n")
    restored.apply("b", 2, 14, {"a": 3, "b": 1}, [("incr", b"n", 1)])
    check(restored, b"n")
    assert restored.visible(b"n") == ("string", b"11", None)


# A snapshot written by the code before the parts could be None (6c69290): every kind of
# part, an expiring string and a counter.
_OLD_SNAPSHOT = bytes.fromhex(
    "929192a161049692c401639592909196a161050000000b9090909092c4016895929090909292c4016692919393"
    "a16103020cc401789092c4016792909196a161020000000c909092c4016c959290909090929494a16104000091"
    "96000da161040000c40265300d9494a1610400019196010da161040001c40265310d9092c401709592919393a1"
    "6104020dc4017790909090919393a16104020dcd138892c401739592919393a16101000ac4017690909090919393"
    "a16101000ac092c4027374959290909292c4026d31919293a16103000c92c4026d32919293a16103010c90909193"
    "93a16104010dce000182b8"
)


def test_an_old_snapshot_restores_to_the_same_state():
    """The serialized form did not change: a snapshot of the old code restores with its absent
    parts as None, shows what it showed and snapshots to the same bytes (same digest)."""
    s = CrdtStore.restore(_OLD_SNAPSHOT)
    assert s.snapshot() == _OLD_SNAPSHOT
    assert s.visible(b"s") == ("string", b"v", None)
    assert s.visible(b"p") == ("string", b"w", 5000)
    assert s.visible(b"c") == ("string", b"5", None)
    assert s.visible(b"st") == ("set", {b"m1", b"m2"}, 99000)
    assert s.visible(b"h") == ("hash", {b"f": b"x", b"g": b"2"}, None)
    assert s.visible(b"l") == ("list", [b"e0", b"e1"], None)
    ks = s.state(b"s")
    assert ks.set is None and ks.hash is None and ks.lst is None and ks.ctr is None
    assert s.state(b"c").ttl is None and s.state(b"st").ctr is None
    # and it joins with a store built by ops to the same state
    fresh = CrdtStore()
    fresh.apply("a", 1, 10, {}, [("put", b"s", b"v", None)])
    fresh.join(_OLD_SNAPSHOT)
    assert fresh.snapshot() == _OLD_SNAPSHOT


# A snapshot written by the code before counters were flat lists (a45daf0): a counter with
# three origins (one reset by a DEL that observed two of them) and a hash field counter.
_OLD_COUNTERS = bytes.fromhex(
    "929392a26e310292a26e320292a26e33029292c401639592909396a26e31280200020d96a26e32040000000c96a2"
    "6e33070007000a9090909092c4016895929090909192c4016692909296a26e32030000000e96a26e33050000000f9090"
)


def test_a_counter_is_one_flat_list_and_an_old_snapshot_of_counters_loads_to_the_same_bytes():
    """A counter is held as one list of every origin's five numbers at the origin's slot (no
    dict, no per-origin list), the same list whatever order the origins came in; the stored
    form did not change: the old code's snapshot restores, shows what it showed, snapshots to
    the same bytes, and takes adds of a known and of a new origin."""
    s = CrdtStore.restore(_OLD_COUNTERS)
    assert s.snapshot() == _OLD_COUNTERS
    assert s.visible(b"c") == ("string", b"44", None)
    assert s.visible(b"h") == ("hash", {b"f": b"8"}, None)
    ctr = s.state(b"c").ctr
    assert type(ctr) is list and len(ctr) % 5 == 0 and ctr[-5] is not None
    assert all(type(x) is int or x is None for x in ctr)
    assert ctr_totals(ctr) == {"n1": [40, 2], "n2": [4, 0], "n3": [7, 0]}
    s.apply("n1", 3, 20, dict(s.vv), [("incr", b"c", 1)])
    s.apply("z9", 1, 21, dict(s.vv), [("incr", b"c", -5), ("hincr", b"h", b"f", 2)])
    assert s.visible(b"c") == ("string", b"40", None)
    assert s.visible(b"h") == ("hash", {b"f": b"10"}, None)
    assert CrdtStore.restore(s.snapshot()).snapshot() == s.snapshot()
    # the same adds, the origins met in two orders: equal lists, equal snapshots
    one, two = CrdtStore(), CrdtStore()
    for store, order in ((one, ["q3", "q1", "q2"]), (two, ["q2", "q1", "q3"])):
        for o in order:
            store.apply(o, 1, 40, {}, [("incr", b"k", 3)])
    assert one.state(b"k").ctr == two.state(b"k").ctr
    assert one.snapshot() == two.snapshot() and one.visible(b"k") == ("string", b"9", None)
