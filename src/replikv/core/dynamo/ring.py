"""Consistent hashing with virtual nodes: which N nodes hold a key (Dynamo §4.2, Cassandra vnodes).

Sources: DeCandia et al., "Dynamo: Amazon's Highly Available Key-value Store"
(SOSP 2007), §4.2 "Partitioning" and §4.3 "Replication"; Apache Cassandra
documentation, "Dynamo" architecture page ("Dataset Partitioning: Consistent
Hashing", "Virtual Nodes", "Replication Strategy").

Rules implemented:

- Tokens are unsigned 64-bit integers; the token space is a circle, walked
  clockwise in increasing token order, wrapping from ``2**64 - 1`` to ``0``.
- A key's token is the first 8 bytes (big-endian) of its BLAKE2b digest
  (``token_of``). It is the same in every process and on every machine;
  Python's ``hash()`` is salted per process and is never used.
- Each node owns ``vnodes`` tokens derived from its node id alone
  (``vnode_tokens``), so every node computes the same ring from the member
  list, whatever order it learnt the members in. Should two nodes derive the
  same token (about one chance in 2**64 / (members*vnodes)**2), the token
  goes to the smaller node id: still the same ring everywhere.
- A ring token ``t`` with predecessor ``p`` owns the range ``(p, t]`` (start
  exclusive, end inclusive, wrapping around); a key belongs to the range its
  token falls in, i.e. to the first ring token ``>= token_of(key)``.
- The preference list of a key (Dynamo §4.3) is the first ``replicas``
  *distinct* nodes met walking clockwise from the key's token: a node's
  further vnodes are skipped. With fewer nodes than ``replicas`` it holds
  every node. The first entry is the key's primary (its natural coordinator).
- ``extended_preference`` continues the same walk past those N nodes: the
  nodes that stand in for unreachable ones under a sloppy quorum, in the
  order Dynamo's hinted handoff tries them (§4.6).
- Membership changes make new rings (``with_node``/``without_node``); a
  ``Ring`` never changes after construction. ``moves(old, new)`` splits the
  circle at the union of both rings' tokens (every piece lies within one
  range of each ring) and lists, per piece, each node that replicates it in
  ``new`` but not in ``old``, with the ``old`` replicas it can stream from.
  Adding one node makes only that node gain ranges; removing one gives each
  of its ranges exactly one new replica (Dynamo §4.9, "Adding/Removing
  Storage Nodes").

Cost: the preference list of every ring range is computed once when the ring
is built, so ``preference_list`` is one hash, one ``bisect`` on a sorted
list of ints and one tuple index: O(log(nodes * vnodes)), no allocation.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import blake2b

from replikv.core.invariant import invariant

__all__ = [
    "TOKEN_BITS",
    "TOKEN_SPACE",
    "DuplicateNode",
    "Move",
    "Range",
    "RangeSpansTokens",
    "Ring",
    "RingError",
    "UnknownNode",
    "moves",
    "token_of",
    "vnode_tokens",
]

TOKEN_BITS = 64
TOKEN_SPACE = 1 << TOKEN_BITS  # tokens are 0 .. TOKEN_SPACE - 1
_KEY_PERSON = b"replikv-key"
_VNODE_PERSON = b"replikv-vnode"


class RingError(ValueError):
    """A ring was asked for something its configuration or membership cannot give."""


class DuplicateNode(RingError):
    """A node id given twice, or added to a ring it is already a member of."""


class UnknownNode(RingError):
    """A node id that is not a member of the ring."""


class RangeSpansTokens(RingError):
    """A range that is not contained in a single range of the ring."""


def token_of(key: bytes) -> int:
    """The key's position on the ring: stable across processes, machines and Python versions."""
    return int.from_bytes(blake2b(key, digest_size=8, person=_KEY_PERSON).digest(), "big")


def vnode_tokens(node: str, vnodes: int) -> list[int]:
    """The ``vnodes`` tokens node ``node`` owns, derived from its id alone (in vnode order)."""
    base = node.encode()
    return [
        int.from_bytes(blake2b(base + i.to_bytes(4, "big"), digest_size=8, person=_VNODE_PERSON).digest(), "big")
        for i in range(vnodes)
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Range:
    """The tokens ``t`` with ``start < t <= end`` walking clockwise, wrapping past ``2**64 - 1``.

    ``start == end`` is the whole circle (the only range of a one-token ring).
    """

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start < TOKEN_SPACE and 0 <= self.end < TOKEN_SPACE):
            raise RingError(f"range bounds must be tokens in [0, 2**64): ({self.start}, {self.end}]")

    @property
    def width(self) -> int:
        """How many tokens the range holds (``2**64`` for the whole circle)."""
        return (self.end - self.start - 1) % TOKEN_SPACE + 1

    def offset(self, token: int) -> int:
        """Position of ``token`` counted from the first token in the range (0 = ``start + 1``).

        ``token`` is in the range iff the result is ``< width``.
        """
        return (token - self.start - 1) % TOKEN_SPACE

    def __contains__(self, token: object) -> bool:
        if not isinstance(token, int):
            return False
        return self.offset(token) < self.width


@dataclass(frozen=True, slots=True, kw_only=True)
class Move:
    """``to_node`` must receive the keys of ``range``; ``from_nodes`` hold them now (old replicas, in order)."""

    range: Range
    from_nodes: tuple[str, ...]
    to_node: str


class Ring:
    """An immutable consistent-hash ring: ``nodes`` with ``vnodes`` tokens each, N = ``replicas``."""

    __slots__ = ("_nodes", "_owners", "_prefs", "_tokens", "replicas", "vnodes")

    def __init__(self, nodes: Iterable[str], replicas: int, vnodes: int = 64) -> None:
        if replicas < 1:
            raise RingError(f"replicas must be >= 1, got {replicas}")
        if vnodes < 1:
            raise RingError(f"vnodes must be >= 1, got {vnodes}")
        members = list(nodes)
        unique = sorted(set(members))
        if len(unique) != len(members):
            dupes = sorted({n for n in members if members.count(n) > 1})
            raise DuplicateNode(f"node ids given more than once: {dupes}")
        for node in unique:
            if not isinstance(node, str) or not node:
                raise RingError(f"a node id is a non-empty string, got {node!r}")
        self.replicas = replicas
        self.vnodes = vnodes
        self._nodes: tuple[str, ...] = tuple(unique)
        owner_of: dict[int, str] = {}
        for node in unique:  # ascending ids: a colliding token stays with the smallest id
            for token in vnode_tokens(node, vnodes):
                owner_of.setdefault(token, node)
        self._tokens: list[int] = sorted(owner_of)
        self._owners: tuple[str, ...] = tuple(owner_of[t] for t in self._tokens)
        want = min(replicas, len(unique))
        self._prefs: tuple[tuple[str, ...], ...] = tuple(self._walk(i, want) for i in range(len(self._tokens)))
        invariant(
            all(len(p) == want and len(set(p)) == want for p in self._prefs),
            "every ring range has min(replicas, nodes) distinct replicas",
        )

    # -- construction helpers -------------------------------------------------

    def _walk(self, position: int, count: int) -> tuple[str, ...]:
        """The first ``count`` distinct owners walking clockwise from ring position ``position``."""
        out: list[str] = []
        owners = self._owners
        n = len(owners)
        for step in range(n):
            node = owners[(position + step) % n]
            if node not in out:
                out.append(node)
                if len(out) == count:
                    break
        return tuple(out)

    def _position(self, token: int) -> int:
        """Index of the ring token whose range holds ``token`` (ring must be non-empty)."""
        i = bisect_left(self._tokens, token)
        return 0 if i == len(self._tokens) else i

    # -- membership -------------------------------------------------------------

    @property
    def nodes(self) -> tuple[str, ...]:
        """The members, sorted by id."""
        return self._nodes

    @property
    def tokens(self) -> tuple[int, ...]:
        """Every ring token, ascending."""
        return tuple(self._tokens)

    def owner(self, token: int) -> str:
        """The node owning the ring token ``token`` (which must be one of ``tokens``)."""
        i = bisect_left(self._tokens, token)
        if i == len(self._tokens) or self._tokens[i] != token:
            raise RingError(f"{token} is not a token of this ring")
        return self._owners[i]

    def __contains__(self, node: object) -> bool:
        return node in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ring):
            return NotImplemented
        return (self._nodes, self.replicas, self.vnodes) == (other._nodes, other.replicas, other.vnodes)

    def __hash__(self) -> int:
        return hash((self._nodes, self.replicas, self.vnodes))

    def __repr__(self) -> str:
        return f"Ring(nodes={list(self._nodes)!r}, replicas={self.replicas}, vnodes={self.vnodes})"

    def with_node(self, node: str) -> Ring:
        """This ring plus ``node`` (same replicas and vnodes)."""
        if node in self._nodes:
            raise DuplicateNode(f"{node!r} is already a member")
        return Ring((*self._nodes, node), self.replicas, self.vnodes)

    def without_node(self, node: str) -> Ring:
        """This ring minus ``node``."""
        if node not in self._nodes:
            raise UnknownNode(f"{node!r} is not a member")
        return Ring((n for n in self._nodes if n != node), self.replicas, self.vnodes)

    # -- placement (hot path) ---------------------------------------------------

    def preference_list(self, key: bytes) -> tuple[str, ...]:
        """The first ``replicas`` distinct nodes clockwise from the key's token (fewer if fewer nodes)."""
        tokens = self._tokens
        if not tokens:
            return ()
        i = bisect_left(tokens, token_of(key))
        return self._prefs[0 if i == len(tokens) else i]

    def preference_for_token(self, token: int) -> tuple[str, ...]:
        """``preference_list`` for a key whose token is ``token``."""
        if not self._tokens:
            return ()
        return self._prefs[self._position(token)]

    def extended_preference(self, key: bytes, n: int) -> tuple[str, ...]:
        """Up to ``n`` further distinct nodes after the key's preference list, in walk order.

        These stand in, in this order, for preference-list nodes that are down
        (sloppy quorum / hinted handoff, Dynamo §4.6).
        """
        if n <= 0 or not self._tokens:
            return ()
        want = min(len(self._prefs[0]) + n, len(self._nodes))
        walked = self._walk(self._position(token_of(key)), want)
        return walked[len(self._prefs[0]) :]

    # -- ranges -----------------------------------------------------------------

    def ranges(self) -> list[Range]:
        """The ring's ranges ``(previous token, token]`` in token order; the first one wraps."""
        t = self._tokens
        return [Range(start=t[i - 1], end=t[i]) for i in range(len(t))]

    def replicas_of_range(self, rng: Range) -> tuple[str, ...]:
        """The preference list shared by every token of ``rng``, which must lie within one ring range."""
        t = self._tokens
        if not t:
            return ()
        p = self._position(rng.end)
        if len(t) > 1:
            a = t[p - 1]  # the ring range is (a, t[p]] and holds rng.end; rng fits iff rng.start is in [a, rng.end)
            if (rng.start - a) % TOKEN_SPACE >= (rng.end - a) % TOKEN_SPACE:
                raise RangeSpansTokens(f"({rng.start}, {rng.end}] spans more than one range of the ring")
        return self._prefs[p]

    def range_of(self, token: int) -> Range:
        """The ring range that holds ``token`` (the ring must have a token)."""
        t = self._tokens
        p = self._position(token)
        return Range(start=t[p - 1], end=t[p])

    def owned_ranges(self, node: str) -> list[Range]:
        """The ring ranges for which ``node`` is among the N replicas, in token order (``[]`` if not a member)."""
        t = self._tokens
        return [Range(start=t[i - 1], end=t[i]) for i, pref in enumerate(self._prefs) if node in pref]


def moves(old: Ring, new: Ring) -> list[Move]:
    """What must be streamed when the cluster changes from ``old`` to ``new``.

    The circle is split at the union of both rings' tokens; each piece lies
    within one range of each ring. For each piece and each node replicating it
    in ``new`` but not in ``old`` there is one ``Move``; consecutive pieces
    with the same sources and target are merged into one range. The result is
    ordered by range end token, then target.
    """
    cuts = sorted(set(old.tokens) | set(new.tokens))
    out: list[Move] = []
    open_runs: dict[tuple[tuple[str, ...], str], int] = {}  # (sources, target) -> start token of the run
    prev_end = cuts[-1] if cuts else 0
    for i, end in enumerate(cuts):
        start = cuts[i - 1]
        before = old.preference_for_token(end)
        after = new.preference_for_token(end)
        here = {(before, node) for node in after if node not in before}
        for run in [r for r in open_runs if r not in here]:
            out.append(Move(range=Range(start=open_runs.pop(run), end=prev_end), from_nodes=run[0], to_node=run[1]))
        for run in here:
            open_runs.setdefault(run, start)
        prev_end = end
    for run, start in open_runs.items():
        out.append(Move(range=Range(start=start, end=prev_end), from_nodes=run[0], to_node=run[1]))
    out.sort(key=lambda m: (m.range.end, m.to_node))
    return out
