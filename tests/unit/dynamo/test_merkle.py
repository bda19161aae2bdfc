"""core/dynamo/merkle.py: order-independent hashes, incremental updates, and the walk to the differing leaves."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.dynamo.merkle import (
    MerkleError,
    MerkleTree,
    MerkleWalk,
    WalkRequest,
    children,
    compare,
    digest_of,
)
from replikv.core.dynamo.ring import Range, Ring, token_of
from replikv.core.invariant import InvariantViolation

FULL = Range(start=0, end=0)  # the whole circle


def _tree(data: dict[bytes, bytes], rng: Range = FULL, depth: int = 10) -> MerkleTree:
    return MerkleTree.build(rng, ((k, token_of(k), d) for k, d in data.items()), depth)


def _data(n: int, tag: bytes = b"v") -> dict[bytes, bytes]:
    return {f"k{i}".encode(): digest_of(tag + str(i).encode()) for i in range(n)}


def _walk(mine: MerkleTree, theirs: MerkleTree, step: int = 1) -> tuple[list[int], int]:
    walk = MerkleWalk(mine, levels_per_step=step)
    while (req := walk.request) is not None:
        walk.receive(theirs.hashes(req.level, req.indexes))
    return walk.differing_leaves, walk.rounds


def test_equal_contents_give_equal_roots_in_any_order():
    data = _data(500)
    a = _tree(data)
    b = _tree(dict(reversed(list(data.items()))))
    assert a.root() == b.root() and len(a) == len(b) == 500
    for d in range(11):
        assert a.level(d) == b.level(d) and len(a.level(d)) == 2**d
    assert a.root() != MerkleTree(FULL).root()
    assert _walk(a, b) == ([], 1)  # equal roots: one exchange, nothing more sent


def test_one_differing_key_is_found_in_exactly_its_leaf():
    data = _data(2000)
    other = dict(data)
    other[b"k1234"] = digest_of(b"changed")
    a, b = _tree(data), _tree(other)
    assert a.root() != b.root()
    leaf = a.leaf_of(token_of(b"k1234"))
    for step, rounds in ((1, 11), (3, 5), (10, 2), (20, 2)):
        assert _walk(a, b, step) == ([leaf], rounds)
        assert _walk(b, a, step) == ([leaf], rounds)
    assert a.diff(b.hashes) == [leaf]
    ours, theirs = a.keys_in_leaf(leaf), b.keys_in_leaf(leaf)
    assert {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)} == {b"k1234"}


def test_a_key_missing_on_one_side_is_found():
    data = _data(300)
    less = dict(data)
    del less[b"k7"]
    assert _tree(data).diff(_tree(less).hashes) == [_tree(data).leaf_of(token_of(b"k7"))]


def test_update_then_revert_restores_every_hash():
    tree = _tree(_data(300))
    before = [tree.level(d) for d in range(11)]
    tok = token_of(b"k5")
    old = tree.digest(b"k5", tok)
    tree.update(b"k5", tok, digest_of(b"new"))
    tree.update(b"new-key", token_of(b"new-key"), digest_of(b"x"))
    assert tree.root() != before[0][0] and len(tree) == 301
    tree.update(b"k5", tok, old)
    tree.update(b"new-key", token_of(b"new-key"), None)
    assert [tree.level(d) for d in range(11)] == before and len(tree) == 300


def test_removing_keys():
    data = _data(100)
    tree = _tree(data)
    for k in list(data)[:40]:
        tree.update(k, token_of(k), None)
    assert tree.root() == _tree(dict(list(data.items())[40:])).root() and len(tree) == 60
    assert tree.digest(b"k0", token_of(b"k0")) is None
    tree.update(b"absent", token_of(b"absent"), None)  # removing what is not there changes nothing
    assert len(tree) == 60
    for k in list(data)[40:]:
        tree.update(k, token_of(k), None)
    assert tree.root() == MerkleTree(FULL).root() and len(tree) == 0
    assert all(tree.keys_in_leaf(i) == {} for i in range(tree.leaf_count))


def test_keys_in_leaf_and_leaf_ranges_partition_the_range():
    ring = Ring(["a", "b", "c"], replicas=2, vnodes=4)
    rng = ring.ranges()[0]  # wraps past 2**64 - 1
    assert rng.start > rng.end
    keys = [k for k in (f"key{i}".encode() for i in range(20000)) if token_of(k) in rng]
    assert any(token_of(k) > rng.start for k in keys) and any(token_of(k) <= rng.end for k in keys)
    tree = MerkleTree.build(rng, ((k, token_of(k), digest_of(k)) for k in keys), depth=6)
    leaf_ranges = [tree.leaf_range(i) for i in range(64)]
    assert all(r is not None for r in leaf_ranges)
    assert sum(r.width for r in leaf_ranges if r is not None) == rng.width
    assert leaf_ranges[0] is not None and leaf_ranges[0].start == rng.start
    assert leaf_ranges[-1] is not None and leaf_ranges[-1].end == rng.end
    seen = 0
    for i, lr in enumerate(leaf_ranges):
        assert lr is not None
        in_leaf = tree.keys_in_leaf(i)
        seen += len(in_leaf)
        assert all(token_of(k) in lr and d == digest_of(k) for k, d in in_leaf.items())
    assert seen == len(keys) == len(tree)


def test_tiny_range_has_empty_buckets():
    rng = Range(start=100, end=110)  # 10 tokens, 16 leaves
    tree = MerkleTree(rng, depth=4)
    buckets = [tree.leaf_range(i) for i in range(16)]
    assert sum(b is not None for b in buckets) == 10
    assert sorted(b.end for b in buckets if b is not None) == list(range(101, 111))
    assert [tree.leaf_of(t) for t in range(101, 111)] == [i for i, b in enumerate(buckets) if b is not None]


def test_full_circle_depth_zero():
    tree = MerkleTree(FULL, depth=0)
    tree.update(b"a", token_of(b"a"), b"1")
    assert tree.level(0) == [tree.root()] and tree.leaf_range(0) == FULL
    assert tree.keys_in_leaf(0) == {b"a": b"1"}
    assert tree.diff(MerkleTree(FULL, depth=0).hashes) == [0]


def test_compare_and_children():
    assert compare([b"a", b"b", b"c"], [b"a", b"x", b"y"]) == [1, 2]
    assert compare([], []) == []
    with pytest.raises(MerkleError):
        compare([b"a"], [])
    assert children([0]) == [0, 1] and children([1, 3]) == [2, 3, 6, 7]
    assert children([1], levels=2) == [4, 5, 6, 7]


def test_bad_requests_and_misuse():
    tree = _tree(_data(10), depth=4)
    with pytest.raises(MerkleError):
        tree.hashes(5, [0])
    with pytest.raises(MerkleError):
        tree.hashes(2, [4])
    with pytest.raises(MerkleError):
        tree.hashes(1, [0] * 17)
    with pytest.raises(MerkleError):
        tree.keys_in_leaf(16)
    with pytest.raises(MerkleError):
        tree.level(-1)
    with pytest.raises(MerkleError):
        MerkleTree(FULL, depth=21)
    with pytest.raises(MerkleError):
        MerkleWalk(tree, levels_per_step=0)
    walk = MerkleWalk(tree)
    assert walk.request == WalkRequest(level=0, indexes=(0,)) and not walk.done
    with pytest.raises(InvariantViolation):
        _ = walk.differing_leaves
    with pytest.raises(MerkleError):
        walk.receive([])  # a reply of the wrong length
    walk.receive([tree.root()])
    assert walk.done and walk.differing_leaves == []
    with pytest.raises(MerkleError):
        walk.receive([tree.root()])
    with pytest.raises(InvariantViolation):
        MerkleTree(Range(start=10, end=20)).update(b"k", 25, b"d")


# -- properties -------------------------------------------------------------------

KEYS = st.binary(min_size=1, max_size=6)
DIGESTS = st.sampled_from([digest_of(bytes([i])) for i in range(4)])


@settings(max_examples=150, deadline=None)
@given(
    ours=st.dictionaries(KEYS, DIGESTS, max_size=40),
    theirs=st.dictionaries(KEYS, DIGESTS, max_size=40),
    depth=st.integers(0, 8),
    step=st.integers(1, 4),
)
def test_walk_finds_exactly_the_keys_whose_digests_differ(
    ours: dict[bytes, bytes], theirs: dict[bytes, bytes], depth: int, step: int
) -> None:
    a, b = _tree(ours, depth=depth), _tree(theirs, depth=depth)
    differing_keys = {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)}
    leaves, _ = _walk(a, b, step)
    assert leaves == sorted({a.leaf_of(token_of(k)) for k in differing_keys})
    assert (a.root() == b.root()) == (not differing_keys)
    found = set()
    for leaf in leaves:
        mine, peer = a.keys_in_leaf(leaf), b.keys_in_leaf(leaf)
        found |= {k for k in mine.keys() | peer.keys() if mine.get(k) != peer.get(k)}
    assert found == differing_keys


@settings(max_examples=100, deadline=None)
@given(
    ops=st.lists(st.tuples(KEYS, st.one_of(st.none(), DIGESTS)), max_size=80),
    depth=st.integers(0, 6),
    data=st.data(),
)
def test_incremental_updates_equal_a_fresh_build_in_any_order(
    ops: list[tuple[bytes, bytes | None]], depth: int, data: st.DataObject
) -> None:
    tree = MerkleTree(FULL, depth)
    final: dict[bytes, bytes] = {}
    for i, (key, digest) in enumerate(ops):
        tree.update(key, token_of(key), digest)
        if digest is None:
            final.pop(key, None)
        else:
            final[key] = digest
        if i % 7 == 0:
            tree.root()  # interleave lazy recomputation with updates
    shuffled = data.draw(st.permutations(list(final.items())))
    fresh = _tree(dict(shuffled), depth=depth)
    assert len(tree) == len(final)
    assert [tree.level(d) for d in range(depth + 1)] == [fresh.level(d) for d in range(depth + 1)]
