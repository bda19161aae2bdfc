"""core/crdt: HLC, version vectors and the documented conflict rules of the store."""

from __future__ import annotations

import pytest

from replikv.core.crdt import CrdtStore, Hlc, covers, hlc_ms, leq, merge, parse_vv_text, vv_text
from replikv.core.crdt.store import position_between


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
