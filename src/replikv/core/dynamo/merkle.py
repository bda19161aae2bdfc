"""Merkle trees over a token range, and the level-by-level walk two replicas use to find divergence.

Sources: DeCandia et al., "Dynamo: Amazon's Highly Available Key-value Store"
(SOSP 2007), §4.7 "Handling permanent failures: Replica synchronization"
(one Merkle tree per key range; compare roots, then children, down to the
leaves that differ); Apache Cassandra documentation, "Repair" (Merkle trees of
fixed depth over a token range, exchanged between replicas to find the
mismatching sub-ranges to stream); Merkle, "A Digital Signature Based on a
Conventional Encryption Function" (CRYPTO '87) for the tree itself.

Rules implemented:

- A tree covers one token ``Range`` (ring.py) and has a fixed ``depth``: its
  ``2**depth`` leaves split the range's token span into equal buckets; the
  token at offset ``o`` from the range's first token falls in leaf
  ``o * 2**depth // width``. Two replicas build their trees of a range with
  the same range and depth, so node ``i`` at level ``d`` covers the same
  tokens on both.
- A leaf holds ``(key, digest)`` pairs; ``digest`` summarises the key's stored
  state (value and version: the caller decides what it covers, and equal
  states must give equal digests). The leaf's content value is the count of
  its pairs and the sum, mod ``2**256``, of a 256-bit BLAKE2b hash of each
  length-prefixed pair: a multiset hash (Clarke et al., "Incremental
  multiset hash functions", ASIACRYPT 2003), independent of insertion order.
  An update subtracts the old pair's hash and adds the new one: O(1).
- Level ``depth`` holds the leaves' hashes ``H(count || sum)``; an inner
  node's hash is ``H(left || right)`` of its two children; level 0 is the root.
  Hashes are recomputed lazily: an update marks its leaf dirty, and the next
  read of a hash recomputes only the dirty leaves' ancestors (O(depth) per
  dirty leaf). An empty subtree of a given height always has the same hash.
- Equal contents give equal roots whatever the order of updates; an update
  that is then reverted (or a key added then removed) restores every hash.
- The exchange (``MerkleWalk``) is message-shaped: the walking side asks the
  peer for the hashes of some nodes of one level (``WalkRequest``), compares
  them with its own (``compare``), and asks next only for the children of the
  nodes that differ, so equal subtrees are never sent. It ends with the leaves
  that differ; their keys (``keys_in_leaf``, ``leaf_range``) are then compared
  or streamed. ``levels_per_step`` trades bytes for round trips by
  descending several levels per exchange.
- A key's token never changes (it is ``token_of(key)``): the caller passes the
  same token for every update of a key, and only tokens of the tree's range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from hashlib import blake2b

from replikv.core.dynamo.ring import TOKEN_SPACE, Range
from replikv.core.invariant import invariant

__all__ = [
    "DEFAULT_DEPTH",
    "HASH_BYTES",
    "MAX_DEPTH",
    "MerkleError",
    "MerkleTree",
    "MerkleWalk",
    "WalkRequest",
    "children",
    "compare",
    "digest_of",
]

HASH_BYTES = 32
DEFAULT_DEPTH = 10
MAX_DEPTH = 20  # 2**20 leaves: the bound on a tree's size and on one request's indexes
_SUM_MOD = 1 << (8 * HASH_BYTES)
_ENTRY_PERSON = b"replikv-mk-entry"
_LEAF_PERSON = b"replikv-mk-leaf"
_NODE_PERSON = b"replikv-mk-node"


class MerkleError(ValueError):
    """A request or reply that does not fit the tree (wrong level, index or number of hashes)."""


def digest_of(data: bytes) -> bytes:
    """A 16-byte digest of a key's stored state, for ``MerkleTree.update``."""
    return blake2b(data, digest_size=16).digest()


def _entry_hash(key: bytes, digest: bytes) -> int:
    h = blake2b(len(key).to_bytes(4, "big") + key + digest, digest_size=HASH_BYTES, person=_ENTRY_PERSON)
    return int.from_bytes(h.digest(), "big")


def _leaf_hash(count: int, total: int) -> bytes:
    data = count.to_bytes(8, "big") + total.to_bytes(HASH_BYTES, "big")
    return blake2b(data, digest_size=HASH_BYTES, person=_LEAF_PERSON).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return blake2b(left + right, digest_size=HASH_BYTES, person=_NODE_PERSON).digest()


def _empty_hashes() -> list[bytes]:
    """``out[h]`` is the hash of an empty subtree of height ``h`` (0 = a leaf)."""
    out = [_leaf_hash(0, 0)]
    for _ in range(MAX_DEPTH):
        out.append(_node_hash(out[-1], out[-1]))
    return out


_EMPTY = _empty_hashes()


def compare(my_nodes: Sequence[bytes], their_nodes: Sequence[bytes]) -> list[int]:
    """The positions at which two equally long lists of node hashes differ, ascending."""
    if len(my_nodes) != len(their_nodes):
        raise MerkleError(f"compared {len(my_nodes)} hashes with {len(their_nodes)}")
    return [i for i, (a, b) in enumerate(zip(my_nodes, their_nodes, strict=True)) if a != b]


def children(indexes: Iterable[int], levels: int = 1) -> list[int]:
    """The indexes of the descendants ``levels`` levels below the given nodes, ascending per node."""
    out: list[int] = []
    for i in indexes:
        out.extend(range(i << levels, (i + 1) << levels))
    return out


class MerkleTree:
    """A fixed-depth Merkle tree of the ``(key, digest)`` pairs whose tokens lie in ``range``."""

    __slots__ = ("_dirty", "_entries", "_levels", "_size", "_sums", "depth", "range")

    def __init__(self, rng: Range, depth: int = DEFAULT_DEPTH) -> None:
        if not 0 <= depth <= MAX_DEPTH:
            raise MerkleError(f"depth must be in [0, {MAX_DEPTH}], got {depth}")
        self.range = rng
        self.depth = depth
        leaves = 1 << depth
        self._sums: list[int] = [0] * leaves
        self._entries: dict[int, dict[bytes, bytes]] = {}  # leaf -> key -> digest (non-empty leaves only)
        self._size = 0
        # _levels[d] has 2**d hashes; all start as the empty subtree of height depth - d
        self._levels: list[list[bytes]] = [[_EMPTY[depth - d]] * (1 << d) for d in range(depth + 1)]
        self._dirty: set[int] = set()

    @classmethod
    def build(cls, rng: Range, items: Iterable[tuple[bytes, int, bytes]], depth: int = DEFAULT_DEPTH) -> MerkleTree:
        """A tree of ``rng`` holding the given ``(key, token, digest)`` triples."""
        tree = cls(rng, depth)
        for key, token, digest in items:
            tree.update(key, token, digest)
        return tree

    # -- contents -----------------------------------------------------------------

    @property
    def leaf_count(self) -> int:
        return 1 << self.depth

    def __len__(self) -> int:
        """How many keys the tree holds."""
        return self._size

    def leaf_of(self, token: int) -> int:
        """The leaf whose bucket holds ``token`` (which must lie in the tree's range)."""
        rng = self.range
        offset = rng.offset(token)
        invariant(offset < rng.width, lambda: f"token {token} is outside the tree's range {rng}")
        return (offset << self.depth) // rng.width

    def leaf_range(self, leaf: int) -> Range | None:
        """The tokens of ``leaf``'s bucket as a range, or None if the bucket holds no token.

        (Buckets are empty only when the range holds fewer tokens than the tree has leaves.)
        """
        self._check_index(self.depth, leaf)
        width, shift = self.range.width, self.depth
        lo = -((-leaf * width) >> shift)  # ceil(leaf * width / 2**depth): first offset in the bucket
        hi = -((-(leaf + 1) * width) >> shift)
        if lo == hi:
            return None
        start = self.range.start
        return Range(start=(start + lo) % TOKEN_SPACE, end=(start + hi) % TOKEN_SPACE)

    def update(self, key: bytes, token: int, digest: bytes | None) -> None:
        """Record that ``key`` (whose token is ``token``) now has ``digest``; None = the key is gone."""
        leaf = self.leaf_of(token)
        entries = self._entries.get(leaf)
        old = entries.get(key) if entries is not None else None
        if old == digest:
            return
        total = self._sums[leaf]
        if entries is not None and old is not None:
            total -= _entry_hash(key, old)
            del entries[key]
            self._size -= 1
        if digest is not None:
            if entries is None:
                entries = self._entries[leaf] = {}
            total += _entry_hash(key, digest)
            entries[key] = digest
            self._size += 1
        elif entries is not None and not entries:
            del self._entries[leaf]
        self._sums[leaf] = total % _SUM_MOD
        self._dirty.add(leaf)

    def digest(self, key: bytes, token: int) -> bytes | None:
        """The digest recorded for ``key``, or None."""
        entries = self._entries.get(self.leaf_of(token))
        return entries.get(key) if entries is not None else None

    def keys_in_leaf(self, leaf: int) -> dict[bytes, bytes]:
        """The ``key -> digest`` pairs of one leaf (a copy)."""
        self._check_index(self.depth, leaf)
        return dict(self._entries.get(leaf, {}))

    # -- hashes -------------------------------------------------------------------

    def _flush(self) -> None:
        """Recompute the hashes above the leaves updated since the last read."""
        if not self._dirty:
            return
        levels, dirty = self._levels, self._dirty
        leaves = levels[self.depth]
        for i in dirty:
            entries = self._entries.get(i)
            leaves[i] = _leaf_hash(len(entries) if entries else 0, self._sums[i])
        idx = {i >> 1 for i in dirty}
        for d in range(self.depth - 1, -1, -1):
            lower, here = levels[d + 1], levels[d]
            for i in idx:
                here[i] = _node_hash(lower[2 * i], lower[2 * i + 1])
            idx = {i >> 1 for i in idx}
        dirty.clear()

    def _check_index(self, level: int, index: int) -> None:
        if not 0 <= level <= self.depth:
            raise MerkleError(f"level {level} is not in [0, {self.depth}]")
        if not 0 <= index < 1 << level:
            raise MerkleError(f"index {index} is not in [0, {1 << level}) at level {level}")

    def root(self) -> bytes:
        """The root hash: equal on two replicas iff (barring hash collisions) they hold the same pairs."""
        self._flush()
        return self._levels[0][0]

    def level(self, d: int) -> list[bytes]:
        """All ``2**d`` hashes of level ``d`` (0 = root, ``depth`` = leaves), left to right."""
        self._check_index(d, 0)
        self._flush()
        return list(self._levels[d])

    def hashes(self, level: int, indexes: Sequence[int]) -> list[bytes]:
        """The hashes of the given nodes of ``level``, in the order asked (the answer to a ``WalkRequest``)."""
        if len(indexes) > self.leaf_count:
            raise MerkleError(f"{len(indexes)} indexes asked of a tree with {self.leaf_count} leaves")
        for i in indexes:
            self._check_index(level, i)
        self._flush()
        row = self._levels[level]
        return [row[i] for i in indexes]

    def diff(
        self, their_hashes: Callable[[int, Sequence[int]], Sequence[bytes]], *, levels_per_step: int = 1
    ) -> list[int]:
        """The leaves that differ from a peer's tree, asking ``their_hashes(level, indexes)`` level by level."""
        walk = MerkleWalk(self, levels_per_step=levels_per_step)
        while (req := walk.request) is not None:
            walk.receive(their_hashes(req.level, req.indexes))
        return walk.differing_leaves


@dataclass(frozen=True, slots=True, kw_only=True)
class WalkRequest:
    """Ask the peer for the hashes of these nodes of ``level`` of its tree of the same range."""

    level: int
    indexes: tuple[int, ...]


class MerkleWalk:
    """One side of a Merkle comparison, as a state machine driven by the peer's replies.

    ``request`` is what to ask the peer next (None once done); feed the peer's
    hashes, in the order asked, to ``receive``. When done, ``differing_leaves``
    lists the leaves whose contents differ, ascending. The tree must not change
    during the walk (the driver walks a snapshot or accepts a rerun).
    """

    __slots__ = ("_differing", "_request", "levels_per_step", "rounds", "tree")

    def __init__(self, tree: MerkleTree, *, levels_per_step: int = 1) -> None:
        if levels_per_step < 1:
            raise MerkleError(f"levels_per_step must be >= 1, got {levels_per_step}")
        self.tree = tree
        self.levels_per_step = levels_per_step
        self.rounds = 0  # exchanges completed
        self._differing: list[int] | None = None
        self._request: WalkRequest | None = WalkRequest(level=0, indexes=(0,))

    @property
    def request(self) -> WalkRequest | None:
        return self._request

    @property
    def done(self) -> bool:
        return self._request is None

    @property
    def differing_leaves(self) -> list[int]:
        invariant(self._differing is not None, "differing_leaves is read only once the walk is done")
        return list(self._differing or ())

    def receive(self, their_hashes: Sequence[bytes]) -> None:
        """Compare the peer's answer to the current request and move one step down (or finish)."""
        req = self._request
        if req is None:
            raise MerkleError("the walk is already done")
        mine = self.tree.hashes(req.level, req.indexes)
        differing = [req.indexes[p] for p in compare(mine, their_hashes)]
        self.rounds += 1
        depth = self.tree.depth
        if req.level == depth or not differing:
            self._differing = differing if req.level == depth else []
            self._request = None
            return
        step = min(self.levels_per_step, depth - req.level)
        self._request = WalkRequest(level=req.level + step, indexes=tuple(children(differing, step)))
