"""The multi-leader key space as dot stores with a causal context (delta-state CRDTs).

Model (Almeida et al., "Delta state replicated data types", 2018). One
operation is ``(origin, seq, hlc, deps, muts)``; its dot is ``(origin, seq)``;
``deps`` is what the origin had applied when it made it. Delivery is causal
and exactly once (the caller's job), so what the origin had *observed* is
exactly the entries whose dot ``deps`` covers, plus the entries made by the
op's own earlier mutations. Every entry an op creates gets the id
``(origin, seq, i)`` (``i`` = the mutation's index in the op; list elements
``(origin, seq, i, j)``) and is stamped with the op's HLC.

Rules:

- A removal (overwrite, delete, SREM, HDEL, ...) removes the *observed*
  entries it concerns, never an entry it did not observe: a concurrent write
  survives every concurrent removal.
- Full-state join (``join``): an entry on both sides stays; an entry on one
  side only stays iff the other side's version vector does not cover its dot
  (the other side saw it and removed it). Counters join pointwise by maximum.
- Last-writer-wins order among entries: ``(hlc, origin, seq, i)``. HLCs of
  causally later ops are greater (see ``hlc.py``), so LWW never lets a write
  beat one it had seen.
- A key whose parts are all empty and which has no counter history is
  dropped (deterministically: a function of the state alone). Counter history
  is kept once a key had a counter (the totals are needed to join correctly).

Parts of one key:

- ``reg``: string register entries ``id -> (hlc, value)``; ``conflicts="siblings"``
  shows them all in ``siblings``; both modes keep concurrent entries (no
  pruning, so both converge to the same state).
- ``ctr``: string counter, ``origin -> [P, N, base_P, base_N, hlc]`` (held flat in memory:
  see "counters" in the code); value
  = sum over origins ``(P - base_P) - (N - base_N)``; live iff some origin has
  ``P > base_P`` or ``N > base_N``.
- ``set``: OR-set, ``member -> {id: hlc}``.
- ``hash``: ``field -> (reg, ctr)`` cells with the string rules.
- ``lst``: sequence without tombstones, ``id4 -> (position, value, hlc)``;
  a position is a tuple of digits ``(n, hlc, origin, seq, i, j)`` compared
  lexicographically (Logoot-style; the last digit carries the element's own
  id, so positions are unique and totally ordered).
- ``ttl``: observed-remove LWW register ``id -> (hlc, deadline_ms | None)``;
  the visible deadline is the LWW winner's value.

Visible value of a string (and of a hash field): the LWW winner of ``reg``
plus the counter when the winner is a canonical integer; the winner as is
when it is not an integer (increments concurrent with a non-integer assign
are then not shown; a later assign resets the counter it observed); the
counter alone when ``reg`` is empty.

Visible type when several parts are live (a type conflict, e.g. SET and SADD
concurrently): the part whose newest live entry has the greatest
``(hlc, origin, seq, i)`` wins; the others are kept hidden until a write that
observed them removes them (any overwrite or DEL does).

Key contexts (chunked state transfer, ``dump_keys`` / ``join_keys`` /
``join_absent``): the store's ``vv`` is the causal context of every key. A
state transfer sent in chunks brings key states read at different moments,
each with the context it was read at (``at``, the sender's vv then, plus the
sender's own key context); until the transfer is complete the receiver's
``vv`` must not cover them, so a joined key carries the part of its context
``vv`` does not cover in ``kctx[key]``. A key's context is ``vv`` merged with
``kctx[key]``; joins use it, and ``apply`` skips a mutation of a key whose
context already covers the op's dot (the key state that came in holds it: an
increment applied again would be counted twice). No local write may be made
from a key whose context ``vv`` does not cover (``pending_context``): the
caller refuses it until the ops arrive. ``kctx`` entries that ``vv``
covers are meaningless and dropped (``prune_contexts``); ``snapshot`` writes
the others (a third element, present only when there are some), so a store
with no pending key context snapshots as before.

Mutation kinds (``Mut`` = a tuple/list ``(kind, key, *args)``, msgpack-able):

``("set", key, value, totals, ctx)``
    String assign: removes the observed ``reg`` entries (observed via ``ctx``,
    a version vector, when not None: VSET ... CONTEXT), adds ``(id, hlc,
    value)``; resets the string counter with ``totals`` (``origin -> [P, N]``,
    what the origin observed) when not None.
``("incr", key, delta)``
    Adds ``delta`` to the origin's P (delta > 0) or N (delta < 0).
``("sadd", key, member)`` / ``("srem", key, member)``
    OR-set add (removes the member's observed ids, adds the new one) /
    observed remove.
``("hset", key, field, value, totals)`` / ``("hincr", key, field, delta)`` /
``("hdel", key, field, totals)``
    The string rules on one hash field; ``hdel`` removes the field's observed
    entries and resets its counter.
``("lins", key, [[prefix, n, value], ...])``
    Insert list elements; element ``j`` gets position
    ``prefix + [(n, hlc, origin, seq, i, j)]`` (``prefix`` a list of digits).
``("lrem", key, [id4, ...])``
    Remove the named list elements (explicit ids, not by ``deps``).
``("del", key, totals, htotals)``
    Key delete: removes every observed entry of every part (TTL entries too)
    and resets the string counter (``totals``) and each field counter
    (``htotals``: ``field -> totals``).
``("ttl", key, deadline_ms | None)``
    Removes the observed TTL entries, adds ``(id, hlc, deadline)``.
``("put", key, value, deadline_ms | None)``
    A string overwrite as one mutation: the effect of ``del`` with no counter
    totals, then ``set`` and ``ttl`` (every observed entry of every part goes;
    a register entry and a TTL entry are added, both with this mutation's id).
    Made only from a key state with no counter history (``put_allowed``): a
    counter reset would need the totals ``del`` carries. Applied in place when
    the key holds register and TTL entries only (a key a SET wrote before).
    Older nodes do not know it: they get it only in ``Ops`` frames of a tag
    they refuse (``core/multileader/codec.py``); a leaderless write carries it
    only when every replica of the write announced it (else ``without_put``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import msgpack

from replikv.core.crdt.vv import merge

Mut = Sequence[Any]
Eid = tuple[str, int, int]  # (origin, seq, i)
Lid = tuple[str, int, int, int]  # (origin, seq, i, j)
Digit = tuple[int, int, str, int, int, int]  # (n, hlc, origin, seq, i, j)
Pos = tuple[Digit, ...]
Ctr = list[Any]  # flat: an origin's [P, N, base_P, base_N, hlc] at its slot (see counters)

_INT = re.compile(rb"-?[1-9][0-9]*|0")
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1


def as_int(value: bytes) -> int | None:
    """The value as Redis's string2ll reads it (canonical, 64-bit), or None."""
    if len(value) > 20 or not _INT.fullmatch(value):
        return None
    n = int(value)
    return n if I64_MIN <= n <= I64_MAX else None


class Visible(NamedTuple):
    """What Redis would show for one key."""

    type: str  # "string" | "set" | "hash" | "list"
    value: Any  # bytes | set[bytes] | dict[bytes, bytes] | list[bytes]
    deadline_ms: int | None


_new_visible = tuple.__new__  # Visible(...) without the NamedTuple's Python-level __new__
# ---------------------------------------------------------------- counters
#
# A counter is one flat list (``Ctr``), not a dict of per-origin lists: every origin has a
# slot, the same in every counter of the process (``_SLOT``: origin -> offset ``5 * k``), and
# a counter holds at ``[s, s + 5)`` the origin's ``[P, N, base_P, base_N, hlc]``, or five
# Nones when the origin has no entry in it. The list ends with its last origin that has an
# entry (no trailing Nones: equal counters are equal lists), and is never empty (``Cell``:
# a cell with no counter history has ``ctr`` None). An INCR touches one list of the key,
# not a dict and a list (a cold line each on a node with many keys). Only the in-memory
# form: ``dump``, ``load``, ``ctr_totals`` and the mutations name origins as before
# (``ctr_entries`` reads a counter as ``origin -> entry`` pairs). Origins are node ids (the
# multi-leader op's origin, the leaderless dot's coordinator): a handful per process, so the
# lists stay short (a counter reaches the highest slot among its own origins).

_SLOT: dict[str, int] = {}  # origin -> its offset in every counter list (grows, never changes)
_ORIGIN: list[str] = []  # slot number k -> origin (offset 5 * k)


def _slot(origin: str) -> int:
    """``origin``'s offset in every counter list, given on first use (stores are used from
    one thread, their node's loop: DESIGN.md's sans-I/O cores)."""
    s = _SLOT.get(origin)
    if s is None:
        s = _SLOT[origin] = 5 * len(_ORIGIN)
        _ORIGIN.append(origin)
    return s


def _ctr_at(ctr: Ctr, origin: str) -> int:
    """``origin``'s offset in ``ctr``, its entry made (zeros) when it has none."""
    s = _slot(origin)
    if len(ctr) <= s:
        ctr.extend([None] * (s + 5 - len(ctr)))
    if ctr[s] is None:
        ctr[s:s + 5] = [0, 0, 0, 0, 0]
    return s


def ctr_entries(ctr: Ctr | None) -> Iterator[tuple[str, list[int]]]:
    """``(origin, [P, N, base_P, base_N, hlc])`` of every origin with an entry in ``ctr``
    (copies), in slot order."""
    if not ctr:
        return
    origins = _ORIGIN
    for s in range(0, len(ctr), 5):
        if ctr[s] is not None:
            yield origins[s // 5], ctr[s:s + 5]


def ctr_from(entries: Iterable[Sequence[Any]]) -> Ctr | None:
    """The counter of ``[origin, P, N, base_P, base_N, hlc]`` rows (``Cell.dump``'s), None for none."""
    ctr: Ctr = []
    for o, *c in entries:
        s = _ctr_at(ctr, o)
        ctr[s:s + 5] = c
    return ctr or None


def ctr_value(ctr: Ctr | None) -> int:
    if not ctr:
        return 0
    total = 0
    for p, n, bp, bn in zip(ctr[0::5], ctr[1::5], ctr[2::5], ctr[3::5], strict=True):
        if p is not None:
            total += (p - bp) - (n - bn)
    return total


def ctr_live(ctr: Ctr | None) -> bool:
    if not ctr:
        return False
    for p, n, bp, bn in zip(ctr[0::5], ctr[1::5], ctr[2::5], ctr[3::5], strict=True):  # a loop: on every read
        if p is not None and (p > bp or n > bn):
            return True
    return False


def ctr_totals(ctr: Ctr | None) -> dict[str, list[int]]:
    """What an origin observed: ``origin -> [P, N]`` (carried by a reset), by origin."""
    if not ctr:
        return {}
    return {o: [c[0], c[1]] for o, c in sorted(ctr_entries(ctr))}


def _ctr_reset(cell: Cell, totals: Mapping[str, Sequence[int]]) -> None:
    """The reset a write that observed ``totals`` makes of ``cell``'s counter."""
    ctr = cell.counter()
    cell.ctot = None  # recounted when next read
    for o, (p, n) in totals.items():
        s = _ctr_at(ctr, o)
        ctr[s + 2] = max(ctr[s + 2], p)
        ctr[s + 3] = max(ctr[s + 3], n)
        ctr[s] = max(ctr[s], p)
        ctr[s + 1] = max(ctr[s + 1], n)


def _ctr_add(cell: Cell, origin: str, delta: int, hlc: int) -> None:
    """``origin`` adds ``delta`` to ``cell``'s counter. Its cached value (``Cell.ctot``)
    moves by ``delta`` and is live after a non-zero one: P >= base_P and N >= base_N hold
    for every origin (resets and joins take maxima), so a grown P or N is above its base."""
    s = _SLOT.get(origin)
    if s is None:
        s = _slot(origin)
    ctr = cell.ctr
    if ctr is None:  # cell.counter(), without the call
        ctr = cell.ctr = [None] * s + [0, 0, 0, 0, 0]
    elif len(ctr) <= s or ctr[s] is None:
        s = _ctr_at(ctr, origin)
    if delta >= 0:
        ctr[s] += delta
    else:
        ctr[s + 1] -= delta
    if hlc > ctr[s + 4]:
        ctr[s + 4] = hlc
    if delta:
        ctot = cell.ctot
        if ctot is not None:
            cell.ctot = ctot + delta
            cell.clive = True


def _ctr_join(cell: Cell, b: Ctr) -> bool:
    """Pointwise maximum of ``b`` into ``cell``'s counter; whether it changed."""
    a = cell.counter()
    cell.ctot = None  # recounted when next read
    changed = False
    if len(a) < len(b):
        a.extend([None] * (len(b) - len(a)))
    for s in range(0, len(b), 5):
        if b[s] is None:
            continue
        if a[s] is None:
            a[s:s + 5] = b[s:s + 5]
            changed = True
            continue
        for j in range(s, s + 5):
            if b[j] > a[j]:
                a[j] = b[j]
                changed = True
    return changed


def _ctr_rank(ctr: Ctr | None) -> tuple[int, str, int, int] | None:
    best: tuple[int, str, int, int] | None = None
    if not ctr:
        return None
    for o, (p, n, bp, bn, h) in ctr_entries(ctr):
        if p > bp or n > bn:
            r = (h, o, 0, 0)
            if best is None or r > best:
                best = r
    return best


# ------------------------------------------------------------------ cells


class Cell:
    """A string value: LWW register entries plus a counter (also a hash field).

    ``ctr`` is None while the cell has no counter history (never an empty list:
    a plain string holds no counter object); ``counter()`` creates it on the
    first increment or reset. Counter history is never removed, so once set it
    stays a non-empty list (the flat form, see "counters" above)."""

    __slots__ = ("clive", "ctot", "ctr", "reg")

    def __init__(self) -> None:
        self.reg: dict[Eid, tuple[int, bytes]] = {}
        self.ctr: Ctr | None = None
        # the counter's value and whether it is live, kept by _ctr_add (two slots, no tuple
        # per add); ctot None when unknown (after a reset, a join, a load): counter_sum()
        # recounts both; 0 and False for no counter
        self.ctot: int | None = 0
        self.clive = False

    def counter_sum(self) -> tuple[int, bool]:
        """``(ctr_value(ctr), ctr_live(ctr))``, from the cache when known: an INCR reads
        the value it adds to, and the view shows it after, without reading every origin's
        counter entry (tests/property/test_crdt_laws.py holds it to the recount)."""
        ctot = self.ctot
        if ctot is None:
            ctr = self.ctr
            ctot = self.ctot = ctr_value(ctr)
            self.clive = ctr_live(ctr)
        return ctot, self.clive

    def counter(self) -> Ctr:
        """The counter list, created on first use (the caller adds to it at once)."""
        ctr = self.ctr
        if ctr is None:
            ctr = self.ctr = []
        return ctr

    def empty(self) -> bool:
        return not self.reg and not self.ctr

    def live(self) -> bool:
        return bool(self.reg) or ctr_live(self.ctr)

    def winner(self) -> tuple[Eid, int, bytes] | None:
        reg = self.reg
        if not reg:
            return None
        if len(reg) == 1:
            for eid, (hlc, value) in reg.items():
                return eid, hlc, value
        eid = max(reg, key=lambda e: (reg[e][0], e))
        hlc, value = reg[eid]
        return eid, hlc, value

    def value(self) -> bytes | None:
        win = self.winner()
        if win is None:
            return str(ctr_value(self.ctr)).encode() if ctr_live(self.ctr) else None
        if not self.ctr:  # no counter: a canonical integer shows as itself
            return win[2]
        base = as_int(win[2])
        if base is None:
            return win[2]
        return str(base + ctr_value(self.ctr)).encode()

    def rank(self) -> tuple[int, str, int, int] | None:
        best = _ctr_rank(self.ctr)
        for eid, (hlc, _) in self.reg.items():
            r = (hlc, eid[0], eid[1], eid[2])
            if best is None or r > best:
                best = r
        return best

    def dump(self) -> list[Any]:
        ctr = self.ctr
        return [
            sorted([list(e), h, v] for e, (h, v) in self.reg.items()),
            sorted([o, *c] for o, c in ctr_entries(ctr)) if ctr else [],
        ]

    @classmethod
    def load(cls, data: Sequence[Any]) -> Cell:
        cell = cls()
        for e, h, v in data[0]:
            cell.reg[(e[0], e[1], e[2])] = (h, v)
        if data[1]:
            cell.ctr = ctr_from(data[1])
            cell.ctot = None
        return cell


class KeyState(Cell):
    """Every part of one key (see the module docstring).

    The string part is the key state itself: ``reg`` and ``ctr`` (and the
    ``Cell`` methods on them: ``winner``, ``value``, ``live``, ``rank``,
    ``counter``) are this object's, not a separate cell's. ``empty``, ``dump``
    and ``load`` are redefined for the whole key (the string part's are
    ``Cell.empty(ks)``, ``Cell.dump(ks)``).

    Invariant: ``set``, ``hash``, ``lst`` and ``ttl`` are None when the part has
    no entry, never an empty dict (and ``ctr`` never an empty list, see ``Cell``), so a
    plain string key is this object, the register dict and the TTL dict:
    reading it touches no dict of a part it does not use. A write creates a part
    on first use (``sets``, ``hashes``, ``lists``, ``ttls``); whatever may empty
    one sets it back to None (``_delete``, ``_remove_member``, the ``hdel`` and
    ``lrem`` mutations, ``join_key_state``). Nothing depends on it for
    correctness (every reader treats None as empty), but states compared field
    by field rely on it (tests/property/test_crdt_laws.py checks it).

    The one-entry form: what a ``put`` leaves when it observed every register and
    TTL entry (the common key, overwritten by SETs), one register entry and one TTL
    entry under the put's id, is held as the tuple ``one = (origin, seq, i, hlc, value,
    deadline)`` (the id's three fields in line) instead of the two dicts (``_reg`` and
    ``_ttl`` are then None): a plain string key is this object and that tuple. Flat, of
    atoms only, so the cyclic GC untracks it at its first young collection: an id tuple
    inside it is still tracked when the collector looks at ``one`` (it lists ``one``, held
    by an old KeyState, before the id it reaches through it), which kept every written key's
    tuple tracked into the middle generation, scanned again by each of its collections. ``reg`` and ``ttl`` are
    properties: reading or setting either turns ``one`` back into the two dicts
    first, so every reader of the dicts sees the same entries. The hot readers
    (``visible``, ``deadline``, ``visible_type``, ``empty``, ``dump``, the view's
    ``materialize``) read ``one`` in place; ``_put_entries`` and ``load`` make it."""

    __slots__ = ("_reg", "_ttl", "hash", "lst", "one", "set")

    def __init__(self) -> None:
        self.one: tuple[str, int, int, int, bytes, int | None] | None = None
        self._reg: dict[Eid, tuple[int, bytes]] | None = {}
        self._ttl: dict[Eid, tuple[int, int | None]] | None = None
        self.ctr = None
        self.ctot = 0
        self.clive = False
        self.set: dict[bytes, dict[Eid, int]] | None = None
        self.hash: dict[bytes, Cell] | None = None
        self.lst: dict[Lid, tuple[Pos, bytes, int]] | None = None

    def counter_alone(self) -> tuple[int, bool] | None:
        """``CrdtStore.counter_alone`` of the key in this state (a caller holding the state
        reads it without looking the key up again: ``kv/crdt_view.materialize``)."""
        if not self.ctr or self.one is not None or self._reg or self._ttl or self.set or self.hash or self.lst:
            return None
        ctot = self.ctot
        return self.counter_sum() if ctot is None else (ctot, self.clive)

    def _unpack_one(self) -> None:
        """``one`` as the two dicts it stands for."""
        one = self.one
        assert one is not None
        origin, seq, i, hlc, value, deadline = one
        eid = (origin, seq, i)
        self._reg = {eid: (hlc, value)}
        self._ttl = {eid: (hlc, deadline)}
        self.one = None

    @property
    def reg(self) -> dict[Eid, tuple[int, bytes]]:
        if self.one is not None:
            self._unpack_one()
        reg = self._reg
        assert reg is not None
        return reg

    @reg.setter
    def reg(self, value: dict[Eid, tuple[int, bytes]]) -> None:
        if self.one is not None:
            self._unpack_one()
        self._reg = value

    @property
    def ttl(self) -> dict[Eid, tuple[int, int | None]] | None:
        if self.one is not None:
            self._unpack_one()
        return self._ttl

    @ttl.setter
    def ttl(self, value: dict[Eid, tuple[int, int | None]] | None) -> None:
        if self.one is not None:
            self._unpack_one()
        self._ttl = value

    def sets(self) -> dict[bytes, dict[Eid, int]]:
        """The set part, created on first use (the caller adds to it at once)."""
        st = self.set
        if st is None:
            st = self.set = {}
        return st

    def hashes(self) -> dict[bytes, Cell]:
        """The hash part, created on first use (the caller adds to it at once)."""
        hs = self.hash
        if hs is None:
            hs = self.hash = {}
        return hs

    def lists(self) -> dict[Lid, tuple[Pos, bytes, int]]:
        """The list part, created on first use (the caller adds to it at once)."""
        ls = self.lst
        if ls is None:
            ls = self.lst = {}
        return ls

    def ttls(self) -> dict[Eid, tuple[int, int | None]]:
        """The TTL part, created on first use (the caller adds to it at once)."""
        ttl = self.ttl
        if ttl is None:
            ttl = self.ttl = {}
        return ttl

    def empty(self) -> bool:
        if self.one is not None:
            return False
        return not self.reg and not self.ctr and not self.set and not self.hash and not self.lst and not self.ttl

    def visible_type(self) -> str | None:
        # fast paths: one part only (no type conflict to rank)
        st, hs, ls = self.set, self.hash, self.lst
        if not st and not hs and not ls:
            if self.one is not None:
                return "string"
            return "string" if self.reg or (self.ctr and ctr_live(self.ctr)) else None
        if not self.reg and not self.ctr:
            if not hs:
                if not ls:
                    return "set" if st and any(st.values()) else None
                if not st:
                    return "list"
            elif not st and not ls:
                return "hash" if any(c.live() for c in hs.values()) else None  # hs: truthy here
        return self._visible_type_ranked()

    def _visible_type_ranked(self) -> str | None:
        best: tuple[int, str, int, int] | None = None
        kind: str | None = None
        r = self.rank()
        if r is not None and self.live():
            best, kind = r, "string"
        for eids in (self.set or {}).values():
            for e, h in eids.items():
                rr = (h, e[0], e[1], e[2])
                if best is None or rr > best:
                    best, kind = rr, "set"
        for cell in (self.hash or {}).values():
            if cell.live():
                rr2 = cell.rank()
                if rr2 is not None and (best is None or rr2 > best):
                    best, kind = rr2, "hash"
        for lid, (_, _, h) in (self.lst or {}).items():
            rr = (h, lid[0], lid[1], lid[2])
            if best is None or rr > best:
                best, kind = rr, "list"
        return kind

    def deadline(self) -> int | None:
        one = self.one
        if one is not None:
            return one[5]
        ttl = self.ttl
        if not ttl:
            return None
        if len(ttl) == 1:
            for _, d in ttl.values():
                return d
        eid = max(ttl, key=lambda e: (ttl[e][0], e))
        return ttl[eid][1]

    def list_order(self) -> list[Lid]:
        # positions are unique: ordering by (position, value, hlc) is by position
        lst = self.lst
        return sorted(lst, key=lst.__getitem__) if lst else []

    def dump(self) -> list[Any]:
        """The serialized form (unchanged by the None parts: an absent part dumps
        as the empty list it always did)."""
        st, hs, ls, one = self.set, self.hash, self.lst, self.one
        if one is not None:  # read in place, as Cell.dump and the TTL part would write the dicts
            origin, seq, i, hlc, value, deadline = one
            ctr = self.ctr
            string: list[Any] = [[[[origin, seq, i], hlc, value]],
                                 sorted([o, *c] for o, c in ctr_entries(ctr)) if ctr else []]
            ttl_part: list[Any] = [[[origin, seq, i], hlc, deadline]]
        else:
            ttl = self.ttl
            string = Cell.dump(self)
            ttl_part = sorted([list(e), h, d] for e, (h, d) in ttl.items()) if ttl else []
        return [
            string,
            sorted([m, sorted([list(e), h] for e, h in eids.items())] for m, eids in st.items()) if st else [],
            sorted([f, c.dump()] for f, c in hs.items()) if hs else [],
            sorted([list(lid), [list(d) for d in pos], v, h] for lid, (pos, v, h) in ls.items()) if ls else [],
            ttl_part,
        ]

    @classmethod
    def load(cls, data: Sequence[Any]) -> KeyState:
        """A ``dump`` read back; an empty part (any dump so far writes one per part)
        stays None. Empty members and fields are not stored (``dump`` never
        writes them)."""
        ks = cls()
        string = Cell.load(data[0])
        ks.reg, ks.ctr, ks.ctot, ks.clive = string.reg, string.ctr, string.ctot, string.clive
        if data[1]:
            ks.set = {m: {(e[0], e[1], e[2]): h for e, h in eids} for m, eids in data[1]}
        if data[2]:
            ks.hash = {f: Cell.load(c) for f, c in data[2]}
        if data[3]:
            ks.lst = {(lid[0], lid[1], lid[2], lid[3]): (tuple(_digit(d) for d in pos), v, h)
                      for lid, pos, v, h in data[3]}
        if data[4]:
            ks.ttl = {(e[0], e[1], e[2]): (h, d) for e, h, d in data[4]}
            ks._pack_one()
        return ks

    def _pack_one(self) -> None:
        """The two dicts as ``one`` when they hold what that form stands for."""
        reg, ttl = self._reg, self._ttl
        if reg is not None and ttl is not None and len(reg) == 1 and len(ttl) == 1:
            for eid, (hlc, value) in reg.items():
                entry = ttl.get(eid)
                if entry is not None and entry[0] == hlc:
                    self.one = (eid[0], eid[1], eid[2], hlc, value, entry[1])
                    self._reg = self._ttl = None


def _visible_parts(ks: KeyState) -> Visible | None:
    """What ``CrdtStore.visible`` shows for a key in state ``ks``, from every part (its own
    short ways for a string key and a counter alone must agree with this)."""
    kind = ks.visible_type()
    if kind is None:
        return None
    value: Any
    if kind == "string":
        value = ks.value()
    elif kind == "set":
        value = set(ks.set or ())
    elif kind == "hash":
        value = {}
        for f, cell in (ks.hash or {}).items():
            reg = cell.reg
            if len(reg) == 1 and not cell.ctr:  # the common field: one entry
                for _, one in reg.values():
                    value[f] = one
                continue
            v = cell.value()
            if v is not None:
                value[f] = v
    else:
        value = [v for _, v, _ in sorted((ks.lst or {}).values())]  # positions are unique
    return Visible(kind, value, ks.deadline())


def _digit(d: Sequence[Any]) -> Digit:
    return (int(d[0]), int(d[1]), str(d[2]), int(d[3]), int(d[4]), int(d[5]))


# ------------------------------------------------------------------ the store


class CrdtStore:
    """The whole multi-leader key space; see the module docstring."""

    __slots__ = ("conflicts", "data", "hints", "hints_view", "kctx", "vv")

    # ``apply_muts`` does the commonest put (over a key a put wrote last, which it observed)
    # inline; False in a test twin that takes every put through the general path
    inline_puts = True

    def __init__(self, conflicts: str = "lww") -> None:
        if conflicts not in ("lww", "siblings"):
            raise ValueError(f"conflicts must be 'lww' or 'siblings', not {conflicts!r}")
        self.conflicts = conflicts
        self.vv: dict[str, int] = {}
        self.data: dict[bytes, KeyState] = {}
        # For kv/crdt_view.py: ``key -> members/fields`` of a set or hash key that
        # ``hints_view`` showed exactly as visible except for these (the ones ops
        # touched since); a key not here must be compared whole.
        self.hints: dict[bytes, set[bytes]] = {}
        self.hints_view: Any = None
        # key -> the part of its causal context ``vv`` does not cover (see "Key contexts")
        self.kctx: dict[bytes, dict[str, int]] = {}

    # ------------------------------------------------------------- reading

    def __len__(self) -> int:
        return sum(1 for k in self.data if self.visible(k) is not None)

    def keys(self) -> Iterable[bytes]:
        """Keys with a visible value (expired ones included: the view hides those)."""
        return [k for k in self.data if self.visible(k) is not None]

    def context(self, key: bytes) -> Mapping[str, int]:
        """What a write to ``key`` here has observed (VGET's context): the
        node-wide version vector (``keyed.py``: the key's own context)."""
        return self.vv

    def has_state(self, key: bytes) -> bool:
        """Whether anything (visible or hidden) is stored under ``key``."""
        return key in self.data

    def state(self, key: bytes) -> KeyState | None:
        """The raw parts of ``key`` (for ``kv/crdt_writes.py``; do not mutate)."""
        return self.data.get(key)

    def visible(self, key: bytes) -> Visible | None:
        ks = self.data.get(key)
        if ks is None:
            return None
        if not ks.set and not ks.hash and not ks.lst:  # a string key: the common ones first
            packed, ctr = ks.one, ks.ctr
            if packed is None:  # the dict itself (not None without ``one``): no property call
                reg: dict[Eid, tuple[int, bytes]] = ks._reg  # type: ignore[assignment]
            elif not ctr:  # what SET leaves, in the one-entry form
                return _new_visible(Visible, ("string", packed[4], packed[5]))
            else:
                reg = ks.reg
            if not ctr and len(reg) == 1:  # one value, no counter: what SET leaves
                for _, one in reg.values():
                    return _new_visible(Visible, ("string", one, ks.deadline()))
            if ctr and not reg:  # a counter alone: what INCR leaves (Cell.value, ctr_live)
                total, live = ks.counter_sum()  # the cache, else the recount
                return _new_visible(Visible, ("string", str(total).encode(), ks.deadline())) if live else None
        return _visible_parts(ks)

    def counter_alone(self, key: bytes) -> tuple[int, bool] | None:
        """``(total, live)`` of a key that holds a counter and nothing else (no register,
        set, hash, list or TTL entry: what INCRs alone leave), from the cached sum
        (``Cell.counter_sum``); None for any other key, absent ones included. Such a key is
        visible iff ``live``, as the string ``str(total)`` with no deadline: ``visible``'s
        counter case, without building the ``Visible`` and its bytes (an INCR at its origin
        adds to the number, the view shows it; ``kv/crdt_writes.py``, ``kv/crdt_view.py``)."""
        ks = self.data.get(key)
        return None if ks is None else ks.counter_alone()

    def visible_head(self, key: bytes) -> tuple[str, int | None] | None:
        """``(type, deadline_ms)`` of :meth:`visible`, without building the value."""
        ks = self.data.get(key)
        if ks is None:
            return None
        kind = ks.visible_type()
        if kind is None:
            return None
        return kind, ks.deadline()

    def siblings(self, key: bytes) -> list[tuple[int, str, bytes]]:
        """The string register's entries ``(hlc, origin, value)``, oldest first;
        only the LWW winner with ``conflicts="lww"``. Counter increments are
        folded into each integer sibling."""
        ks = self.data.get(key)
        if ks is None or ks.visible_type() != "string":
            return []
        if not ks.reg:
            v = ks.value()
            return [] if v is None else [(0, "", v)]
        extra = ctr_value(ks.ctr)
        out = []
        for eid, (hlc, value) in ks.reg.items():
            n = as_int(value)
            out.append((hlc, eid[0], value if n is None else str(n + extra).encode(), eid))
        out.sort(key=lambda t: (t[0], t[3]))
        if self.conflicts == "lww":
            out = out[-1:]
        return [(h, o, v) for h, o, v, _ in out]

    def expiring(self) -> Iterator[tuple[bytes, int]]:
        """``(key, deadline_ms)`` for every visible key with a deadline."""
        for key, ks in self.data.items():
            d = ks.deadline()
            if d is not None and ks.visible_type() is not None:
                yield key, d

    # ------------------------------------------------------------- apply

    def apply(
        self, origin: str, seq: int, hlc: int, deps: Mapping[str, int], muts: Sequence[Mut]
    ) -> dict[bytes, bool]:
        """Apply one op (causal, exactly-once delivery is the caller's duty);
        returns the keys whose visible state may have changed, as ``apply_muts``
        does. An op ``vv`` already covers is ignored: after a transfer's keys are
        all joined the store covers the transfer's vv before the replica does
        (until the joined state is durable), and its ops may still be delivered."""
        if seq <= self.vv.get(origin, 0):
            return {}
        if len(muts) == 1 and not self.kctx:
            mut = muts[0]
            if mut[0] == "put":
                key = mut[1]
                if type(key) is not bytes:  # as apply_muts
                    key = bytes(key)
                if self._put_fast(key, mut, origin, seq, hlc, deps):
                    self.vv[origin] = seq
                    return {key: True}
        changed = self.apply_muts(origin, seq, hlc, deps, muts)
        self.vv[origin] = seq  # advance(): seq is beyond vv[origin] (checked above)
        return changed

    def apply_muts(
        self, origin: str, seq: int, hlc: int, deps: Mapping[str, int], muts: Sequence[Mut], start: int = 0,
        observed: dict[str, int] | None = None,
    ) -> dict[bytes, bool]:
        """Mutations ``start, start + 1, ...`` of op ``(origin, seq)`` (``muts[0]`` is
        mutation ``start``), without moving ``vv``: ``apply`` is this from 0 plus the
        ``vv`` step. An origin building one op from several client writes applies each
        write's mutations as it makes them (each write reads the state the earlier ones
        left), then moves ``vv`` once (``advance``); the op's earlier mutations (ids below
        ``start``) must be applied already, as they count as observed. Returns the keys
        whose visible state may have changed, each once, in first-change order, each
        mapped to whether its string register may now hold concurrent entries: False only
        where the key's last mutation here left at most one (the inline put's one-entry
        form, a counter add to a key with one register entry or none), so a caller that
        counts concurrent values (``kv/crdt_view.deliver_ops``) looks only at the others.
        ``observed``: ``{**deps, origin: seq}`` (what every mutation of the op observes, as a
        vv), which a caller applying one op in several calls may make once and pass."""
        changed: dict[bytes, bool] = {}  # an op may hold thousands of mutations (a loop iteration's writes)
        kctx, hints, data, inline = self.kctx, self.hints, self.data, self.inline_puts
        seen: Callable[[str, int], bool] | None = None  # the general path's test, made when needed
        for i, mut in enumerate(muts, start):
            # a key, a value or a delta comes as bytes or int from the wire and from translate:
            # converted only when it is not (a type test costs a quarter of the call)
            key = mut[1]
            if type(key) is not bytes:
                key = bytes(key)
            if kctx:
                ctx = kctx.get(key)
                if ctx is not None and seq <= ctx.get(origin, 0):
                    continue  # the key's state came by a transfer that holds this op already
            kind = mut[0]  # each way below records the key in ``changed`` once (it keeps its first place)
            if kind == "put":
                if observed is None:
                    observed = {**deps, origin: seq}
                ks = data.get(key) if inline else None
                one = None if ks is None else ks.one
                if one is not None and one[1] <= observed.get(one[0], 0) and not hints \
                        and not ks.set and not ks.hash and not ks.lst:  # type: ignore[union-attr]
                    # the commonest put, inline: over a key a put wrote last, which this one
                    # observed (``_put_fast`` -> ``_put_entries``' first case, without the calls)
                    value = mut[2]
                    ks.one = (origin, seq, i, hlc,  # type: ignore[union-attr]
                              value if type(value) is bytes else bytes(value),
                              None if mut[3] is None else int(mut[3]))
                    changed[key] = False
                    continue
                if self._put_fast(key, mut, origin, seq, hlc, observed, i):
                    changed[key] = True
                    continue
            elif kind == "incr":
                # _apply_one for a counter add, without the dispatch: an incr observes no
                # entry, is no member kind (a hint on the key goes) and never empties a key
                if hints:
                    hints.pop(key, None)
                ks = data.get(key)
                if ks is None:
                    ks = data[key] = KeyState()
                delta = mut[2]
                _ctr_add(ks, origin, delta if type(delta) is int else int(delta), hlc)
                reg = ks._reg  # None in the one-entry form
                changed[key] = reg is not None and len(reg) > 1
                continue
            if seen is None:
                def seen(o: str, s: int) -> bool:
                    return s <= deps.get(o, 0) or (s == seq and o == origin)
            self._apply_one(key, mut, origin, seq, i, hlc, seen)
            changed[key] = True
        return changed

    def advance(self, origin: str, seq: int) -> None:
        """``vv`` covers op ``(origin, seq)`` now: the end of an op applied by ``apply_muts``."""
        if seq > self.vv.get(origin, 0):
            self.vv[origin] = seq

    def _put_fast(
        self, key: bytes, mut: Mut, origin: str, seq: int, hlc: int, deps: Mapping[str, int], i: int = 0
    ) -> bool:
        """Mutation ``i`` of an op, a ``put``, applied without the general path's ``seen``
        closure and dispatch, when ``key`` is absent or holds register and TTL entries only
        (a key SET wrote before; False, nothing done, otherwise). The same result as
        ``_apply_one``: the caller has checked that no key context holds the op already,
        and an existing entry is observed iff ``deps`` covers its dot; the new entries get
        the id ``(origin, seq, i)``. For ``i > 0`` the op's own earlier entries are observed
        too: the caller passes its deps with ``origin`` at ``seq`` (``apply_muts``), which is
        ``seen`` exactly, as an op's deps hold its origin at ``seq - 1``."""
        ks = self.data.get(key)
        if ks is None:
            ks = self.data[key] = KeyState()
        elif ks.set or ks.hash or ks.lst:
            return False
        if self.hints:
            self.hints.pop(key, None)
        value = mut[2]
        _put_entries(ks, origin, seq, i, hlc, value if type(value) is bytes else bytes(value),
                     None if mut[3] is None else int(mut[3]), _drop_covered, deps)
        return True

    def _apply_one(
        self, key: bytes, mut: Mut, origin: str, seq: int, i: int, hlc: int, seen: Any
    ) -> None:
        """One mutation of an op, with the view hints kept (see ``hints``)."""
        kind = mut[0]
        hints = self.hints
        if hints:
            hint = hints.get(key)
            if hint is not None:
                if kind in _MEMBER_KINDS:
                    hint.add(bytes(mut[2]))
                else:
                    del hints[key]
        ks = self.data.get(key)
        if ks is None:
            ks = self.data[key] = KeyState()
        apply_mut(ks, mut, origin, seq, i, hlc, seen)
        if kind in _MAY_EMPTY and ks.empty():  # the other kinds add an entry
            del self.data[key]

    # ------------------------------------------------------- state transfer

    def snapshot(self) -> bytes:
        """The whole state (version vector included; key contexts beyond it, if
        any), deterministic bytes."""
        body: list[Any] = [
            sorted([o, s] for o, s in self.vv.items()),
            sorted([k, ks.dump()] for k, ks in self.data.items()),
        ]
        extra = self._contexts_beyond_vv()
        if extra:
            body.append(sorted([k, sorted([o, s] for o, s in c.items())] for k, c in extra.items()))
        out: bytes = msgpack.packb(body, use_bin_type=True)
        return out

    @classmethod
    def restore(cls, blob: bytes, conflicts: str = "lww") -> CrdtStore:
        store = cls(conflicts)
        body = msgpack.unpackb(blob, raw=False, use_list=True)
        vv, keys = body[0], body[1]
        store.vv = {o: s for o, s in vv}
        for k, ks in keys:
            store.data[k] = KeyState.load(ks)
        if len(body) > 2:
            store.kctx = {k: {o: s for o, s in c} for k, c in body[2]}
        return store

    def digest(self) -> bytes:
        """Equal on two stores iff their whole states are equal (convergence check)."""
        return hashlib.sha256(self.snapshot()).digest()

    def join(self, blob: bytes) -> list[bytes]:
        """Merge another store's :meth:`snapshot` (dot stores + causal contexts;
        a key with a key context on either side is joined under it)."""
        other = CrdtStore.restore(blob, self.conflicts)
        mine, theirs = self.vv, other.vv

        def keep_mine(o: str, s: int) -> bool:  # an entry only we have
            return s > theirs.get(o, 0)

        def keep_theirs(o: str, s: int) -> bool:
            return s > mine.get(o, 0)

        changed: list[bytes] = []
        keyed = set(self.kctx) | set(other.kctx)
        for key in sorted(set(self.data) | set(other.data) | keyed):
            a = self.data.get(key) or KeyState()
            b = other.data.get(key) or KeyState()
            if key in keyed:
                km, kt = self.key_context(key), other.key_context(key)
                joined = join_key_state(a, b, lambda o, s: s > kt.get(o, 0), lambda o, s: s > km.get(o, 0))
                self.kctx[key] = merge(km, kt)
            else:
                joined = join_key_state(a, b, keep_mine, keep_theirs)
            if joined:
                changed.append(key)
            if a.empty():
                self.data.pop(key, None)
            else:
                self.data[key] = a
        self.hints.clear()
        self.vv = merge(mine, theirs)
        self.prune_contexts()
        return changed

    # ------------------------------------------------ chunked state transfer

    def key_context(self, key: bytes) -> dict[str, int]:
        """The causal context of ``key``'s state here: ``vv`` and its key context."""
        extra = self.kctx.get(key)
        return merge(self.vv, extra) if extra else dict(self.vv)

    def pending_context(self, key: bytes) -> bool:
        """Does ``key``'s state hold ops ``vv`` does not cover (joined from a transfer
        not yet complete, or read by the sender after the transfer began)? A
        write must not be made from such a key's state: its mutations (counter
        totals, list element ids) would carry effects of ops its ``deps`` do not
        name, and a node applying it before those ops would diverge."""
        ctx = self.kctx.get(key) if self.kctx else None
        if ctx is None:
            return False
        vv = self.vv
        return any(s > vv.get(o, 0) for o, s in ctx.items())

    def _contexts_beyond_vv(self) -> dict[bytes, dict[str, int]]:
        vv = self.vv
        out = {}
        for key, ctx in self.kctx.items():
            beyond = {o: s for o, s in ctx.items() if s > vv.get(o, 0)}
            if beyond:
                out[key] = beyond
        return out

    def prune_contexts(self) -> None:
        """Drop the key contexts ``vv`` covers (and the parts of the others it covers)."""
        self.kctx = self._contexts_beyond_vv()

    def dump_keys(self, keys: Sequence[bytes], start: int, max_bytes: int) -> tuple[bytes, int]:
        """The states of ``keys[start:]`` as they are now, up to about ``max_bytes``:
        ``(msgpack array of [key, dump, key context beyond vv | None], next start)``.
        A key no longer stored is left out (the receiver treats it as absent,
        ``join_absent``); one key is always taken, however big."""
        data, vv, kctx = self.data, self.vv, self.kctx
        parts: list[bytes] = []
        size = 0
        i = start
        while i < len(keys):
            key = keys[i]
            ks = data.get(key)
            if ks is None:
                i += 1
                continue
            extra = None
            if kctx and key in kctx:
                extra = {o: s for o, s in kctx[key].items() if s > vv.get(o, 0)} or None
            packed: bytes = msgpack.packb([key, ks.dump(), extra], use_bin_type=True)
            if parts and size + len(packed) > max_bytes:
                break
            parts.append(packed)
            size += len(packed)
            i += 1
        return _array_header(len(parts)) + b"".join(parts), i

    def join_keys(self, blob: bytes, at: Mapping[str, int]) -> tuple[list[bytes], list[bytes]]:
        """Join key states from ``dump_keys`` read at context ``at`` (the sender's vv
        when it read them): each key's state is joined under the two keys'
        contexts, and the key's context grows by the sender's. ``vv`` does not
        move (``kctx`` holds what the key now covers beyond it). Returns
        ``(keys changed, keys joined)``."""
        changed: list[bytes] = []
        joined: list[bytes] = []
        data, vv, kctx = self.data, self.vv, self.kctx
        for key, dump, extra in msgpack.unpackb(blob, raw=False, use_list=True):
            key = bytes(key)
            theirs = merge(at, extra) if extra else at
            mine = self.key_context(key)
            a = data.get(key) or KeyState()
            if join_key_state(a, KeyState.load(dump), lambda o, s: s > theirs.get(o, 0),
                              lambda o, s: s > mine.get(o, 0)):
                changed.append(key)
                self.hints.pop(key, None)
            if a.empty():
                data.pop(key, None)
            else:
                data[key] = a
            beyond = {o: s for o, s in merge(mine, theirs).items() if s > vv.get(o, 0)}
            if beyond:
                kctx[key] = beyond
            joined.append(key)
        return changed, joined

    def join_absent(self, present: Container[bytes], ctx: Mapping[str, int]) -> list[bytes]:
        """The end of a chunked transfer announced at ``ctx`` (the sender's vv at its
        start): every key here that it did not send (not in ``present``) was
        absent there, so each is joined with an empty state under ``ctx``
        (an entry whose dot ``ctx`` covers was removed there). Returns the
        keys changed."""
        changed: list[bytes] = []
        empty = KeyState()
        for key in [k for k in self.data if k not in present]:
            mine = self.key_context(key)
            a = self.data[key]
            if join_key_state(a, empty, lambda o, s: s > ctx.get(o, 0), lambda o, s: s > mine.get(o, 0)):
                changed.append(key)
                self.hints.pop(key, None)
            if a.empty():
                del self.data[key]
        return changed

    def cover(self, vv: Mapping[str, int]) -> None:
        """Every key's context covers ``vv`` now (a transfer's keys are all joined):
        ``vv`` joins the store's own; the key contexts it covers are dropped."""
        self.vv = merge(self.vv, vv)
        self.prune_contexts()


def _array_header(n: int) -> bytes:
    """msgpack's header of an array of ``n`` items."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")



def apply_mut(ks: KeyState, mut: Mut, origin: str, seq: int, i: int, hlc: int, seen: Any) -> None:
    """Apply mutation ``i`` of op ``(origin, seq)`` stamped ``hlc`` to one key's
    parts; ``seen(o, s)`` says whether the op observed the entry with dot
    ``(o, s)`` (the op's own earlier entries included). The caller drops the
    key when a ``_MAY_EMPTY`` kind leaves it empty."""
    kind = mut[0]
    eid: Eid = (origin, seq, i)
    if kind == "put":
        _put(ks, eid, hlc, bytes(mut[2]), None if mut[3] is None else int(mut[3]), seen)
    elif kind == "set":
        _, _, value, totals, ctx = mut
        if ctx is not None:  # VSET ... CONTEXT: what the client observed, not the op

            def s(o: str, sq: int) -> bool:
                return sq <= ctx.get(o, 0) or (sq == seq and o == origin)

        else:
            s = seen
        _assign(ks, eid, hlc, bytes(value), totals, s)
    elif kind == "ttl":
        ttl = ks.ttls()
        if ttl:
            _drop_seen(ttl, seen)
        ttl[eid] = (hlc, None if mut[2] is None else int(mut[2]))
    elif kind == "del":
        _, _, totals, htotals = mut
        _delete(ks, totals, htotals, seen)
    elif kind == "incr":
        _ctr_add(ks, origin, int(mut[2]), hlc)
    elif kind == "sadd":
        member = bytes(mut[2])
        members = ks.sets()
        eids = {e: h for e, h in members.get(member, {}).items() if not seen(e[0], e[1])}
        eids[eid] = hlc
        members[member] = eids
    elif kind == "srem":
        if ks.set:
            _remove_member(ks, bytes(mut[2]), seen)
    elif kind == "hset":
        _, _, field, value, totals = mut
        cell = ks.hashes().setdefault(bytes(field), Cell())
        _assign(cell, eid, hlc, bytes(value), totals, seen)
    elif kind == "hincr":
        cell = ks.hashes().setdefault(bytes(mut[2]), Cell())
        _ctr_add(cell, origin, int(mut[3]), hlc)
    elif kind == "hdel":
        field = bytes(mut[2])
        hcell = ks.hash.get(field) if ks.hash else None
        if hcell is not None:
            hcell.reg = {e: v for e, v in hcell.reg.items() if not seen(e[0], e[1])}
            if mut[3]:
                _ctr_reset(hcell, mut[3])
            if hcell.empty():
                del ks.hash[field]  # type: ignore[union-attr]
                if not ks.hash:
                    ks.hash = None
    elif kind == "lins":
        lst = ks.lists()
        for j, (prefix, n, value) in enumerate(mut[2]):
            digit: Digit = (int(n), hlc, origin, seq, i, j)
            pos = tuple(_digit(d) for d in prefix) + (digit,)
            lst[(origin, seq, i, j)] = (pos, bytes(value), hlc)
    elif kind == "lrem":
        lst2 = ks.lst
        if lst2:
            for lid in mut[2]:
                lst2.pop((lid[0], lid[1], lid[2], lid[3]), None)
            if not lst2:
                ks.lst = None
    else:
        raise ValueError(f"unknown mutation kind {kind!r}")


def overwrite_muts(store: CrdtStore, key: bytes, value: bytes | None) -> list[Mut]:
    """The mutations of an overwrite of ``key`` with the string ``value`` (None:
    a delete) that removes everything this replica observed of the key, its
    counters reset to what it saw. Always the same three kinds in the same
    order (``del``, then ``set`` + ``ttl`` for a value), so replicas applying
    one commit under one dot give its entries the same ids."""
    ks = store.data.get(key)
    totals = ctr_totals(ks.ctr) if ks is not None else {}
    htotals = {f: ctr_totals(c.ctr) for f, c in ks.hash.items()} if ks is not None and ks.hash else {}
    muts: list[Mut] = [("del", key, totals, htotals)]
    if value is not None:
        muts += [("set", key, value, None, None), ("ttl", key, None)]
    return muts


def without_put(muts: Sequence[Mut]) -> list[Mut]:
    """``muts`` with each ``put`` replaced by the ``del`` (no counter totals: ``put_allowed``),
    ``set`` and ``ttl`` it stands for, for a peer that does not know ``put``. The same effect on
    any state; the entries get the ids of their own positions, so every replica of one write
    must be given the same list (the caller expands before applying the write anywhere)."""
    out: list[Mut] = []
    for m in muts:
        if m[0] == "put":
            out += [("del", m[1], {}, {}), ("set", m[1], m[2], None, None), ("ttl", m[1], m[3])]
        else:
            out.append(m)
    return out


def put_allowed(ks: KeyState | None) -> bool:
    """Whether an overwrite of a key in state ``ks`` (None: absent) may be the one
    ``put`` mutation: the key has no counter history (the string's or a hash
    field's), so the ``del`` it stands for would reset no counter."""
    return ks is None or (not ks.ctr and not ks.hash)


# ------------------------------------------------------------------ helpers

# mutations that change one member of a set or one field of a hash (see ``hints``)
_MEMBER_KINDS = frozenset(("sadd", "srem", "hset", "hincr", "hdel"))
# mutations that may leave a key with no entry (every other kind adds one)
_MAY_EMPTY = frozenset(("del", "srem", "hdel", "lins", "lrem"))


def _assign(cell: Cell, eid: Eid, hlc: int, value: bytes, totals: Any, seen: Any) -> None:
    if cell.reg:
        _drop_seen(cell.reg, seen)
    cell.reg[eid] = (hlc, value)
    if totals:  # an empty reset changes nothing
        _ctr_reset(cell, totals)


def _put(ks: KeyState, eid: Eid, hlc: int, value: bytes, deadline: int | None, seen: Any) -> None:
    """The ``put`` mutation: what ``_delete`` (no totals), ``_assign`` and the ``ttl``
    mutation do in turn, done in place on the register and TTL dicts. The other
    parts can hold only entries the op did not observe when the origin's state had
    none of them (``put_allowed``), but they are swept the same way regardless."""
    if ks.set or ks.hash or ks.lst:
        _delete(ks, None, None, seen)
    _put_entries(ks, eid[0], eid[1], eid[2], hlc, value, deadline, _drop_seen, seen)


def _put_entries(ks: KeyState, origin: str, seq: int, i: int, hlc: int, value: bytes, deadline: int | None,
                 drop: Callable[[dict[Eid, Any], Any], None], observed: Any) -> None:
    """A ``put``'s register and TTL entries: those ``observed`` covers removed (``drop``:
    ``_drop_seen`` with a ``seen`` closure, ``_drop_covered`` with a vv of what the op
    observed), then the op's own added. When none is left besides (the common key: one a
    ``put`` wrote last, whose entry the new one observed) the key ends in the one-entry
    form (``KeyState.one``): the old tuple is replaced, no dict is touched. The entries'
    id is ``(origin, seq, i)``. With a vv (``_drop_covered``) the shapes concurrent puts make
    are built without the drops, to the same state: a ``one`` the put did not observe stays
    beside its entries (the two dicts made at once), and dicts whose entries it all observed
    become its ``one``."""
    one = ks.one
    if one is not None:
        if drop is not _drop_covered:
            if observed(one[0], one[1]):
                ks.one = (origin, seq, i, hlc, value, deadline)
                return
            ks._unpack_one()
        elif one[1] <= observed.get(one[0], 0):
            ks.one = (origin, seq, i, hlc, value, deadline)
            return
        else:  # a concurrent put's entry stays: the two side by side (what the general way below leaves)
            o_origin, o_seq, o_i, o_hlc, o_value, o_deadline = one
            old, eid = (o_origin, o_seq, o_i), (origin, seq, i)
            ks._reg = {old: (o_hlc, o_value), eid: (hlc, value)}
            ks._ttl = {old: (o_hlc, o_deadline), eid: (hlc, deadline)}
            ks.one = None
            return
    reg, ttl = ks._reg, ks._ttl
    assert reg is not None
    if drop is _drop_covered and reg:  # concurrent entries, the next put observed them all (commonly)
        get = observed.get
        for e in reg:
            if e[1] > get(e[0], 0):
                break
        else:
            if ttl:
                for e in ttl:
                    if e[1] > get(e[0], 0):
                        break
                else:
                    ttl = None
            if not ttl:  # what the drops below would leave: nothing, so the one-entry form
                ks.one = (origin, seq, i, hlc, value, deadline)
                ks._reg = ks._ttl = None
                return
    if reg:
        drop(reg, observed)
    if ttl:
        drop(ttl, observed)
    if not reg and not ttl:
        ks.one = (origin, seq, i, hlc, value, deadline)
        ks._reg = ks._ttl = None
        return
    if ttl is None:
        ttl = ks._ttl = {}
    eid = (origin, seq, i)
    reg[eid] = (hlc, value)
    ttl[eid] = (hlc, deadline)


def _drop_seen(entries: dict[Eid, Any], seen: Any) -> None:
    """Remove, in place, the entries whose dot ``seen`` covers (most often the one entry)."""
    if len(entries) == 1:
        for e in entries:
            if seen(e[0], e[1]):
                entries.clear()
            return
    for e in [e for e in entries if seen(e[0], e[1])]:
        del entries[e]


def _drop_covered(entries: dict[Eid, Any], deps: Mapping[str, int]) -> None:
    """``_drop_seen`` for an op with no earlier entry of its own: remove, in place,
    the entries whose dot ``deps`` covers."""
    if len(entries) == 1:
        for e in entries:
            if e[1] <= deps.get(e[0], 0):
                entries.clear()
            return
    for e in [e for e in entries if e[1] <= deps.get(e[0], 0)]:
        del entries[e]


def _remove_member(ks: KeyState, member: bytes, seen: Any) -> None:
    """Remove the observed ids of ``member`` (the set part not None); the member
    goes when none is left, the part when no member is (``KeyState``'s invariant)."""
    members = ks.set
    assert members is not None
    eids = members.get(member)
    if eids is None:
        return
    left = {e: h for e, h in eids.items() if not seen(e[0], e[1])}
    if left:
        members[member] = left
    else:
        del members[member]
        if not members:
            ks.set = None


def _delete(ks: KeyState, totals: Any, htotals: Any, seen: Any) -> None:
    if ks.reg:
        _drop_seen(ks.reg, seen)
    if totals:
        _ctr_reset(ks, totals)
    if ks.set:
        for member in list(ks.set):
            _remove_member(ks, member, seen)
    hs = ks.hash
    if hs:
        htotals = htotals or {}
        for field in list(hs):
            cell = hs[field]
            cell.reg = {e: v for e, v in cell.reg.items() if not seen(e[0], e[1])}
            ftotals = htotals.get(field)
            if ftotals:
                _ctr_reset(cell, ftotals)
            if cell.empty():
                del hs[field]
        if not hs:
            ks.hash = None
    if ks.lst:
        ks.lst = {lid: v for lid, v in ks.lst.items() if not seen(lid[0], lid[1])} or None
    if ks.ttl:
        _drop_seen(ks.ttl, seen)
        if not ks.ttl:
            ks.ttl = None


def join_key_state(a: KeyState, b: KeyState, keep_mine: Any, keep_theirs: Any) -> bool:
    """Join ``b`` into ``a`` (one key): an entry on both sides stays; one on a
    single side stays iff ``keep_mine``/``keep_theirs(origin, seq)`` says the
    other side never saw it; counters join pointwise by maximum. Whether
    ``a`` changed (dict comparisons: no sorting, no encoding)."""
    changed = _join_cell(a, b, keep_mine, keep_theirs)
    if a.set or b.set:
        joined_set = _join_nested(a.set or {}, b.set or {}, keep_mine, keep_theirs) or None
        if joined_set != a.set:
            a.set, changed = joined_set, True
    if a.hash or b.hash:
        ha, hb = a.hash or {}, b.hash or {}
        for f in set(ha) | set(hb):
            ca = ha.get(f)
            if ca is None:
                ca = Cell()
            cb: Cell = hb.get(f) or Cell()
            if _join_cell(ca, cb, keep_mine, keep_theirs):
                changed = True
            if ca.empty():
                ha.pop(f, None)
            else:
                ha[f] = ca
        a.hash = ha or None
    for part in ("lst", "ttl"):
        mine = getattr(a, part)
        theirs = getattr(b, part)
        if mine or theirs:
            joined = _join_dots(mine or {}, theirs or {}, keep_mine, keep_theirs) or None
            if joined != mine:
                setattr(a, part, joined)
                changed = True
    return changed


def _join_dots(a: dict[Any, Any], b: dict[Any, Any], keep_a: Any, keep_b: Any) -> dict[Any, Any]:
    """The join of two dot maps: an entry on both sides stays (``a``'s value), one on a single
    side stays iff ``keep_a``/``keep_b`` says the other side never saw it. Equal maps (two
    replicas that agree, the common case of anti-entropy) join to ``a`` itself, the same
    entries, with one C-level comparison instead of a test per entry."""
    if a == b:
        return a
    out = {}
    for k, v in a.items():
        if k in b or keep_a(k[0], k[1]):
            out[k] = v
    for k, v in b.items():
        if k not in a and keep_b(k[0], k[1]):
            out[k] = v
    return out


def _join_nested(
    a: dict[bytes, dict[Eid, int]], b: dict[bytes, dict[Eid, int]], keep_a: Any, keep_b: Any
) -> dict[bytes, dict[Eid, int]]:
    out = {}
    for m in set(a) | set(b):
        d = _join_dots(a.get(m, {}), b.get(m, {}), keep_a, keep_b)
        if d:
            out[m] = d
    return out


def _join_cell(a: Cell, b: Cell, keep_a: Any, keep_b: Any) -> bool:
    reg = _join_dots(a.reg, b.reg, keep_a, keep_b)
    changed = reg != a.reg
    a.reg = reg
    if not b.ctr:
        return changed
    return _ctr_join(a, b.ctr) or changed


def position_between(lo: Sequence[Digit] | None, hi: Sequence[Digit] | None) -> tuple[list[Digit], int]:
    """A new list position strictly between ``lo`` and ``hi`` (None = an end), as
    ``(prefix, n)``: the element's position is ``prefix + [(n, its own id)]``
    (see the ``lins`` mutation). Positions compare lexicographically."""
    if lo is None and hi is None:
        return [], 0
    if lo is None:
        assert hi is not None
        return [], hi[0][0] - 1
    if hi is None:
        return [], lo[0][0] + 1
    prefix: list[Digit] = []
    k = 0
    while True:
        a = lo[k] if k < len(lo) else None
        b = hi[k] if k < len(hi) else None
        if a is None:
            assert b is not None  # lo < hi: lo is a prefix of hi here
            return prefix, b[0] - 1
        if b is None:
            raise ValueError("positions out of order")
        if a == b:
            prefix.append(a)
            k += 1
            continue
        if a[0] + 1 < b[0]:
            return prefix, a[0] + 1
        # no room at this level: go under ``a`` (after everything lo has there)
        prefix.append(a)
        rest = lo[k + 1 :]
        return prefix, (rest[0][0] + 1 if rest else 0)
