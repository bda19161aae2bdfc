"""core/dynamo/ring.py: placement, balance, ranges and what moves on a membership change."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.dynamo import ring as ring_mod
from replikv.core.dynamo.ring import (
    TOKEN_SPACE,
    DuplicateNode,
    Move,
    Range,
    RangeSpansTokens,
    Ring,
    RingError,
    UnknownNode,
    moves,
    token_of,
)

NODES5 = [f"n{i}" for i in range(1, 6)]
KEYS = [f"key:{i}".encode() for i in range(20_000)]


def _walk(ring: Ring, key: bytes) -> list[str]:
    """Reference: every distinct node clockwise from the key's token, by a linear scan of the tokens."""
    t = token_of(key)
    tokens = sorted(ring.tokens)
    start = next((i for i, tok in enumerate(tokens) if tok >= t), 0)
    out: list[str] = []
    for step in range(len(tokens)):
        node = ring.owner(tokens[(start + step) % len(tokens)])
        if node not in out:
            out.append(node)
    return out


def _moved_to(ms: list[Move], key: bytes) -> set[tuple[tuple[str, ...], str]]:
    tok = token_of(key)
    return {(m.from_nodes, m.to_node) for m in ms if tok in m.range}


# -- hashing is stable ------------------------------------------------------------


def test_tokens_are_pinned_values_not_python_hash():
    # Pinned: a change of hash function would re-place every key of every existing cluster.
    assert token_of(b"") == 5851545463079308414
    assert token_of(b"hello") == 9530635353101552356
    assert ring_mod.vnode_tokens("n1", 2) == [742574912532661536, 17551125915646739151]
    assert all(0 <= token_of(k) < TOKEN_SPACE for k in KEYS[:100])


# -- preference lists -------------------------------------------------------------


def test_preference_list_is_n_distinct_members_in_walk_order():
    ring = Ring(NODES5, replicas=3)
    assert len(ring.tokens) == 5 * 64 and ring.nodes == tuple(NODES5)
    for key in KEYS[:2000]:
        pref = ring.preference_list(key)
        assert len(pref) == 3 and len(set(pref)) == 3 and set(pref) <= set(NODES5)
        assert list(pref) == _walk(ring, key)[:3]
        assert ring.preference_for_token(token_of(key)) == pref


def test_fewer_nodes_than_replicas_gives_every_node():
    ring = Ring(["a", "b"], replicas=3, vnodes=8)
    for key in KEYS[:200]:
        assert sorted(ring.preference_list(key)) == ["a", "b"]
        assert ring.extended_preference(key, 3) == ()
    assert Ring([], replicas=3).preference_list(b"k") == ()
    assert Ring([], replicas=3).ranges() == []


def test_deterministic_across_instances_and_member_orders():
    a = Ring(NODES5, replicas=3)
    b = Ring(list(reversed(NODES5)), replicas=3)
    c = Ring(["n3", "n1", "n5", "n2", "n4"], replicas=3)
    assert a == b == c and hash(a) == hash(c)
    assert a.tokens == b.tokens == c.tokens
    assert a.ranges() == c.ranges()
    for key in KEYS[:2000]:
        assert a.preference_list(key) == b.preference_list(key) == c.preference_list(key)
    assert Ring(NODES5, replicas=2) != a


def test_balance_of_primaries_and_replicas():
    ring = Ring(NODES5, replicas=3, vnodes=64)
    primaries = Counter(ring.preference_list(k)[0] for k in KEYS)
    holders = Counter(n for k in KEYS for n in ring.preference_list(k))
    for node in NODES5:
        assert abs(primaries[node] - len(KEYS) / 5) <= 0.35 * len(KEYS) / 5, primaries
        assert abs(holders[node] - 3 * len(KEYS) / 5) <= 0.35 * 3 * len(KEYS) / 5, holders


def test_extended_preference_continues_the_same_walk():
    ring = Ring(NODES5 + ["n6", "n7"], replicas=3, vnodes=16)
    for key in KEYS[:500]:
        walk = _walk(ring, key)
        assert list(ring.preference_list(key)) + list(ring.extended_preference(key, 2)) == walk[:5]
        assert list(ring.extended_preference(key, 10)) == walk[3:]  # capped at the remaining nodes
        assert ring.extended_preference(key, 0) == ()


def test_colliding_tokens_go_to_the_smallest_node_id(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ring_mod, "vnode_tokens", lambda node, vnodes: [10, 20] if node != "c" else [20, 30])
    ring = Ring(["c", "b", "a"], replicas=2)
    assert ring.tokens == (10, 20, 30)
    assert [ring.owner(t) for t in ring.tokens] == ["a", "a", "c"]
    assert ring.preference_for_token(15) == ("a", "c")
    assert ring.preference_for_token(25) == ("c", "a")


def test_bad_configurations_are_typed_errors():
    with pytest.raises(RingError):
        Ring(NODES5, replicas=0)
    with pytest.raises(RingError):
        Ring(NODES5, replicas=3, vnodes=0)
    with pytest.raises(DuplicateNode):
        Ring(["a", "b", "a"], replicas=2)
    with pytest.raises(RingError):
        Ring(["a", ""], replicas=2)
    ring = Ring(NODES5, replicas=3)
    with pytest.raises(DuplicateNode):
        ring.with_node("n1")
    with pytest.raises(UnknownNode):
        ring.without_node("n9")
    with pytest.raises(RingError):
        ring.owner(ring.tokens[0] + 1)
    with pytest.raises(RingError):
        Range(start=-1, end=3)
    with pytest.raises(RingError):
        Range(start=0, end=TOKEN_SPACE)


# -- ranges -----------------------------------------------------------------------


def test_range_membership_and_wraparound():
    r = Range(start=10, end=20)
    assert 10 not in r and 11 in r and 20 in r and 21 not in r and r.width == 10
    w = Range(start=TOKEN_SPACE - 5, end=3)
    assert w.width == 8
    assert TOKEN_SPACE - 5 not in w and TOKEN_SPACE - 4 in w and 0 in w and 3 in w and 4 not in w
    full = Range(start=7, end=7)
    assert full.width == TOKEN_SPACE and all(t in full for t in (0, 6, 7, 8, TOKEN_SPACE - 1))
    assert "x" not in r


def test_ranges_partition_the_circle_and_carry_their_replicas():
    ring = Ring(NODES5, replicas=3, vnodes=16)
    ranges = ring.ranges()
    assert len(ranges) == len(ring.tokens)
    assert sum(r.width for r in ranges) == TOKEN_SPACE
    assert [r.end for r in ranges] == list(ring.tokens)
    for key in KEYS[:2000]:
        tok = token_of(key)
        holding = [r for r in ranges if tok in r]
        assert len(holding) == 1
        assert ring.replicas_of_range(holding[0]) == ring.preference_list(key)
    r = ranges[3]
    sub = Range(start=r.start + 1, end=r.end - 1)
    assert ring.replicas_of_range(sub) == ring.replicas_of_range(r)
    with pytest.raises(RangeSpansTokens):
        ring.replicas_of_range(Range(start=r.start - 1, end=r.end))
    with pytest.raises(RangeSpansTokens):
        ring.replicas_of_range(Range(start=r.end, end=r.end))
    with pytest.raises(RangeSpansTokens):
        ring.replicas_of_range(Range(start=r.end - 1, end=r.end - 2))


def test_single_token_ring_owns_the_whole_circle():
    ring = Ring(["solo"], replicas=3, vnodes=1)
    (only,) = ring.ranges()
    assert only.start == only.end and only.width == TOKEN_SPACE
    assert ring.replicas_of_range(Range(start=5, end=5)) == ("solo",)
    assert ring.owned_ranges("solo") == [only]


def test_owned_ranges():
    ring = Ring(NODES5, replicas=3, vnodes=16)
    ranges = ring.ranges()
    total = 0
    for node in NODES5:
        owned = ring.owned_ranges(node)
        assert owned == [r for r in ranges if node in ring.replicas_of_range(r)]
        total += len(owned)
    assert total == 3 * len(ranges)
    assert ring.owned_ranges("n9") == []


# -- membership changes -----------------------------------------------------------


def test_adding_a_node_moves_only_what_it_gains():
    old = Ring(NODES5, replicas=3)
    new = old.with_node("n6")
    assert new == Ring(NODES5 + ["n6"], replicas=3)
    ms = moves(old, new)
    assert {m.to_node for m in ms} == {"n6"}
    changed = 0
    for key in KEYS:
        before, after = old.preference_list(key), new.preference_list(key)
        if before != after:
            changed += 1
            assert "n6" in after and set(after) - set(before) == {"n6"} and len(set(before) - set(after)) == 1
            assert _moved_to(ms, key) == {(before, "n6")}
        else:
            assert _moved_to(ms, key) == set()
    # roughly N / (n + 1) of the keys gain the new node
    assert abs(changed / len(KEYS) - 3 / 6) <= 0.35 * 3 / 6, changed
    # the moves to n6 are exactly the ranges n6 now owns
    assert sum(m.range.width for m in ms) == sum(r.width for r in new.owned_ranges("n6"))


def test_removing_a_node_gives_each_of_its_keys_exactly_one_new_replica():
    old = Ring(NODES5, replicas=3)
    new = old.without_node("n3")
    ms = moves(old, new)
    assert "n3" not in {m.to_node for m in ms}
    changed = 0
    for key in KEYS:
        before, after = old.preference_list(key), new.preference_list(key)
        if "n3" in before:
            changed += 1
            gained = set(after) - set(before)
            assert set(before) - set(after) == {"n3"} and len(gained) == 1
            assert _moved_to(ms, key) == {(before, gained.pop())}
        else:
            assert before == after and _moved_to(ms, key) == set()
    assert abs(changed / len(KEYS) - 3 / 5) <= 0.35 * 3 / 5, changed
    assert moves(old, old) == []


def test_moves_ranges_do_not_overlap_per_target():
    old = Ring(NODES5, replicas=3, vnodes=8)
    new = old.without_node("n1").with_node("n7")
    ms = moves(old, new)
    by_target: dict[str, list[Range]] = {}
    for m in ms:
        by_target.setdefault(m.to_node, []).append(m.range)
    for rs in by_target.values():
        assert sum(r.width for r in rs) <= TOKEN_SPACE
        probes = [r.end for r in rs] + [(r.start + 1) % TOKEN_SPACE for r in rs]
        for p in probes:
            assert sum(p in r for r in rs) == 1


def test_moves_from_and_to_an_empty_ring():
    ring = Ring(["a", "b"], replicas=2, vnodes=4)
    empty = Ring([], replicas=2)
    grow = moves(empty, ring)
    assert {m.to_node for m in grow} == {"a", "b"} and all(m.from_nodes == () for m in grow)
    for node in ("a", "b"):
        assert sum(m.range.width for m in grow if m.to_node == node) == TOKEN_SPACE
    assert moves(ring, empty) == []
    assert moves(empty, empty) == []


# -- properties -------------------------------------------------------------------

POOL = [f"node-{c}" for c in "abcdefghij"]


@settings(max_examples=60, deadline=None)
@given(
    members=st.lists(st.sampled_from(POOL), min_size=1, max_size=8, unique=True),
    replicas=st.integers(1, 5),
    vnodes=st.integers(1, 12),
    keys=st.lists(st.binary(max_size=12), min_size=1, max_size=60),
    data=st.data(),
)
def test_membership_change_properties(
    members: list[str], replicas: int, vnodes: int, keys: list[bytes], data: st.DataObject
) -> None:
    ring = Ring(members, replicas=replicas, vnodes=vnodes)
    assert ring == Ring(data.draw(st.permutations(members)), replicas=replicas, vnodes=vnodes)
    for key in keys:
        pref = ring.preference_list(key)
        assert len(pref) == min(replicas, len(members)) == len(set(pref))
        assert list(pref) == _walk(ring, key)[: len(pref)]

    outsiders = [n for n in POOL if n not in members]
    if outsiders:
        joined = data.draw(st.sampled_from(outsiders))
        grown = ring.with_node(joined)
        ms = moves(ring, grown)
        for key in keys:
            before, after = ring.preference_list(key), grown.preference_list(key)
            expect = {(before, joined)} if set(before) != set(after) else set()
            assert set(after) - set(before) <= {joined}
            assert _moved_to(ms, key) == expect
    if len(members) > 1:
        gone = data.draw(st.sampled_from(members))
        shrunk = ring.without_node(gone)
        ms = moves(ring, shrunk)
        for key in keys:
            before, after = ring.preference_list(key), shrunk.preference_list(key)
            gained = set(after) - set(before)
            if gone in before:
                assert len(gained) == (1 if len(members) > replicas else 0)
            else:
                assert before == after
            assert _moved_to(ms, key) == {(before, n) for n in gained}
