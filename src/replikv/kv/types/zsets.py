"""Sorted sets: ``data[key]`` is a :class:`ZSet`, never empty (removing the
last member deletes the key).

A ZSet is a dict member -> score plus a ``SortedList`` of ``(score,
member)``: ties in score are ordered by member bytes, so the order (and
every rank, range and pop) is a function of the contents alone, the same on
every replica. No command here depends on a clock or on set iteration order,
so none is rewritten: each is logged as sent (ZRANDMEMBER, the one random
command, is a read).

Behaviour follows Redis 7.0's t_zset.c as its documentation and replies
show: option parsing and its error texts, ``(``-exclusive score bounds read
by strtod (``inf``, ``-inf``, overflow to infinity accepted), ``[``/``(``
/``-``/``+`` lex bounds, ZADD's NX/XX/GT/LT/CH/INCR rules, the
union/intersection/difference family accepting plain sets as inputs (every
member scoring 1), inputs taken smallest first, ``weight * score`` counting
0 when NaN (``0 * inf``; for an intersection only in its first input, a
later NaN is aggregated: SUM turns it into 0, MIN and MAX ignore it), and
errors raised before anything changed. Scores are replied as floats (the
reply encoder writes ``%.17g``, as Redis 7.0's addReplyDouble).

Redis keeps a set of up to 128 members as a listpack, a larger one as a
skiplist; where the two answer differently this module follows the
listpack for a small set (lex ranges over members of mixed scores are
walked as Redis walks a listpack; ZSCAN returns the whole set at cursor 0).

Replies WITHSCORES are ``Pairs``: flat in RESP2, ``[member, score]``
arrays in RESP3, as Redis 7 (ZPOPMIN/ZPOPMAX nest only when given a count).

Deviations: a stored score of -0 is kept as 0 (what Redis does for a small,
listpack-encoded set; its large skiplist sets keep -0); lex ranges over a
large set of mixed scores are binary searched (Redis's skiplist answer then
depends on its random node levels; for one score, the documented use, the
answers agree); ZSCAN of a large set walks a stable crc32 position cursor (every
member present for the whole scan is returned, as Redis promises; the
order and batches differ from Redis's hash-table walk).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from zlib import crc32

from sortedcontainers import SortedList

from replikv.core.replies import NULL_ARRAY, SYNTAX_ERROR, WRONGTYPE, Pairs, RespError
from replikv.kv.args import (
    I64_MAX,
    NOT_POSITIVE,
    NUMKEYS_NOT_POSITIVE,
    format_double,
    parse_cursor,
    parse_double,
    parse_int,
    parse_int_min,
    parse_scan_options,
    parse_timeout_ms,
    strtod,
)
from replikv.kv.commands import command, keys_after_numkeys
from replikv.kv.values import ValueType, unordered_digest, value_type

if TYPE_CHECKING:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine

Reply = Any
Item = tuple[float, bytes]  # (score, member): the order of a sorted set

NAN_SCORE = RespError("ERR resulting score is not a number (NaN)")
NOT_FLOAT_RANGE = RespError("ERR min or max is not a float")
NOT_LEX_RANGE = RespError("ERR min or max not valid string range item")
OUT_OF_RANGE = RespError("ERR value is out of range")
COUNT_POSITIVE = RespError("ERR count should be greater than 0")
WEIGHT_NOT_FLOAT = RespError("ERR weight value is not a float")
LIMIT_NEGATIVE = RespError("ERR LIMIT can't be negative")
LIMIT_NEEDS_RANGE = RespError(
    "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
)
WITHSCORES_BYLEX = RespError("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
_I64_RANGE = RespError(
    f"ERR value is out of range, value must between {-I64_MAX} and {I64_MAX}"
)
_SMALL = 128  # Redis's zset-max-listpack-entries: walked, and scanned whole, as a listpack


class ZSet:
    """member -> score and the ``(score, member)`` order; see the module docstring.

    Invariants: ``order`` holds exactly ``(scores[m], m)`` for every member
    ``m``; no score is NaN or -0. ``by_position`` (None until a large set is
    first ZSCANned, then kept up to date; no part of the replicated state)
    holds ``(crc32(m), m)`` for every member.
    """

    __slots__ = ("by_position", "order", "scores")

    def __init__(self, items: Iterable[Item] = ()) -> None:
        self.scores: dict[bytes, float] = {}
        for score, member in items:
            self.scores[member] = 0.0 if score == 0 else score
        self.order: SortedList = SortedList((s, m) for m, s in self.scores.items())
        self.by_position: SortedList | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def add(self, member: bytes, score: float) -> None:
        """Insert ``member`` or move it to ``score`` (-0 is stored as 0)."""
        if score == 0:
            score = 0.0
        old = self.scores.get(member)
        if old is not None:
            self.order.remove((old, member))
        elif self.by_position is not None:
            self.by_position.add((crc32(member), member))
        self.scores[member] = score
        self.order.add((score, member))

    def remove(self, member: bytes) -> bool:
        old = self.scores.pop(member, None)
        if old is None:
            return False
        self.order.remove((old, member))
        if self.by_position is not None:
            self.by_position.remove((crc32(member), member))
        return True

    def rank(self, member: bytes) -> int | None:
        score = self.scores.get(member)
        return None if score is None else self.order.index((score, member))

    def items(self, start: int, stop: int, reverse: bool = False) -> list[Item]:
        """Positions ``[start, stop)`` of the order, highest first if ``reverse``."""
        return list(self.order.islice(start, stop, reverse=reverse))

    def delete_span(self, start: int, stop: int) -> int:
        """Remove positions ``[start, stop)``; how many."""
        doomed = self.items(start, stop)
        for _score, member in doomed:
            del self.scores[member]
            if self.by_position is not None:
                self.by_position.remove((crc32(member), member))
        del self.order[start:stop]
        return len(doomed)

    def positions(self) -> SortedList:
        """``(crc32(member), member)`` in order: ZSCAN's stable positions."""
        if self.by_position is None:
            self.by_position = SortedList((crc32(m), m) for m in self.scores)
        return self.by_position

    def first_where(self, pred: Callable[[Item], bool], lo: int = 0) -> int:
        """The first position ``>= lo`` whose item satisfies ``pred`` (len if none),
        ``pred`` being false then true along the order."""
        hi = len(self.order)
        order = self.order
        while lo < hi:
            mid = (lo + hi) // 2
            if pred(order[mid]):
                hi = mid
            else:
                lo = mid + 1
        return lo


def _dump(value: ZSet) -> list[Any]:
    flat: list[Any] = []
    for member, score in value.scores.items():
        flat.append(member)
        flat.append(score)
    return flat


def _load(flat: list[Any]) -> ZSet:
    it = iter(flat)
    return ZSet((float(score), member) for member, score in zip(it, it))


def _digest(h: Any, value: ZSet) -> None:
    h.update(b"z%d:" % len(value))
    h.update(unordered_digest(
        b"%d:%s%s" % (len(m), m, s.hex().encode()) for m, s in value.scores.items()
    ))


value_type(ValueType(ZSet, "zset", 4, dump=_dump, load=_load, digest=_digest))


# --- ranges -------------------------------------------------------------------------


def _rank_span(n: int, start: int, stop: int) -> tuple[int, int]:
    """Redis's inclusive rank range (negative from the end) as positions ``[a, b)``."""
    if start < 0:
        start += n
    if stop < 0:
        stop += n
    start = max(start, 0)
    if start > stop or start >= n:
        return 0, 0
    return start, min(stop, n - 1) + 1


def _score_bound(arg: bytes) -> tuple[float, bool]:
    """One bound of a score range: ``(value, exclusive)``, as zslParseRange
    reads it (strtod of a C string: it ends at a NUL byte)."""
    arg = arg.split(b"\0", 1)[0]
    exclusive = arg[:1] == b"("
    parsed = strtod(arg[1:] if exclusive else arg)
    if parsed is None or math.isnan(parsed[0]):
        raise NOT_FLOAT_RANGE
    return parsed[0], exclusive


def _score_range(lo_arg: bytes, hi_arg: bytes) -> tuple[float, float]:
    """A score range as the inclusive ``[lo, hi]`` it selects (exclusive bounds
    moved to the next double inward; an empty range has ``lo > hi``)."""
    lo, lo_ex = _score_bound(lo_arg)
    hi, hi_ex = _score_bound(hi_arg)
    if lo_ex:
        if lo == math.inf:
            return math.inf, -math.inf
        lo = math.nextafter(lo, math.inf)
    if hi_ex:
        if hi == -math.inf:
            return math.inf, -math.inf
        hi = math.nextafter(hi, -math.inf)
    return lo, hi


def _score_span(zset: ZSet, lo: float, hi: float) -> tuple[int, int]:
    """Positions ``[a, b)`` of the members scoring within ``[lo, hi]``."""
    if lo > hi:
        return 0, 0
    a = zset.order.bisect_left((lo,))
    b = len(zset) if hi == math.inf else zset.order.bisect_left((math.nextafter(hi, math.inf),))
    return a, max(a, b)


LexBound = tuple[int, bytes, bool]  # (-1: "-", 1: "+", 0: a member), value, exclusive


def _lex_bound(arg: bytes) -> LexBound:
    if arg == b"-":
        return -1, b"", False
    if arg == b"+":
        return 1, b"", False
    if arg[:1] == b"[":
        return 0, arg[1:], False
    if arg[:1] == b"(":
        return 0, arg[1:], True
    raise NOT_LEX_RANGE


def _lex_range(lo_arg: bytes, hi_arg: bytes) -> tuple[LexBound, LexBound]:
    lo = _lex_bound(lo_arg)
    hi = _lex_bound(hi_arg)
    return lo, hi


def _above_min(member: bytes, bound: LexBound) -> bool:
    kind, value, exclusive = bound
    if kind:
        return kind < 0
    return member > value if exclusive else member >= value


def _below_max(member: bytes, bound: LexBound) -> bool:
    kind, value, exclusive = bound
    if kind:
        return kind > 0
    return member < value if exclusive else member <= value


def _lex_start(zset: ZSet, lo: LexBound, hi: LexBound, reverse: bool) -> int | None:
    """The position a lex range starts at (its highest one if ``reverse``),
    None for an empty range: Redis's zzlFirstInLexRange / zzlLastInLexRange.

    Lex ranges assume members of one score (sorted by member). Whatever the
    scores, the range is empty unless the last member is above ``lo`` and the
    first below ``hi``. A small set (up to 128 members, Redis's listpack
    size) is then walked as Redis walks its listpack, so mixed scores give
    Redis's answer too; a larger one is binary searched (Redis's skiplist
    answer for mixed scores depends on its random node levels).
    """
    order = zset.order
    if not _above_min(order[-1][1], lo) or not _below_max(order[0][1], hi):
        return None
    n = len(order)
    if reverse:
        if n > _SMALL:
            i = zset.first_where(lambda item: not _below_max(item[1], hi)) - 1
        else:
            i = next((i for i in range(n - 1, -1, -1) if _below_max(order[i][1], hi)), -1)
        return i if i >= 0 and _above_min(order[i][1], lo) else None
    if n > _SMALL:
        i = zset.first_where(lambda item: _above_min(item[1], lo))
    else:
        i = next((i for i in range(n) if _above_min(order[i][1], lo)), n)
    return i if i < n and _below_max(order[i][1], hi) else None


def _lex_span(
    zset: ZSet, lo: LexBound, hi: LexBound, reverse: bool = False, offset: int = 0,
    limit: int = -1,
) -> tuple[int, int]:
    """Positions ``[a, b)`` a lex range selects after LIMIT ``offset``
    ``limit``: from its start, skip ``offset`` members, then take members
    while they stay below ``hi`` (above ``lo`` if ``reverse``), as Redis's
    genericZrangebylexCommand walks."""
    start = _lex_start(zset, lo, hi, reverse)
    if start is None or offset < 0:
        return 0, 0
    order = zset.order
    n = len(order)
    if reverse:
        b = start + 1 - offset
        if n > _SMALL:
            a = zset.first_where(lambda item: _above_min(item[1], lo))
        else:
            a = b
            while a > 0 and _above_min(order[a - 1][1], lo) and a != b - limit:
                a -= 1
        if limit >= 0:
            a = max(a, b - limit)
        return (a, b) if a < b else (0, 0)
    a = start + offset
    if n > _SMALL:
        b = zset.first_where(lambda item: not _below_max(item[1], hi), start)
    else:
        b = a
        while b < n and _below_max(order[b][1], hi) and b != a + limit:
            b += 1
    if limit >= 0:
        b = min(b, a + limit)
    return (a, b) if a < b else (0, 0)


def _limited(span: tuple[int, int], offset: int, limit: int, reverse: bool) -> tuple[int, int]:
    """``span`` after LIMIT offset count (a negative offset selects nothing,
    a negative count everything after the offset), from its top if ``reverse``."""
    a, b = span
    if offset < 0:
        return 0, 0
    if reverse:
        b -= offset
        if limit >= 0:
            a = max(a, b - limit)
    else:
        a += offset
        if limit >= 0:
            b = min(b, a + limit)
    return (a, b) if a < b else (0, 0)


def _flat(items: Iterable[Item], withscores: bool) -> list[Any]:
    """Members, each followed by its score with WITHSCORES (``Pairs``: flat in
    RESP2, ``[member, score]`` arrays in RESP3, as Redis 7 replies)."""
    if not withscores:
        return [member for _, member in items]
    out = Pairs()
    for score, member in items:
        out.append(member)
        out.append(score)
    return out


# --- helpers on keys ------------------------------------------------------------------


def _write_zset(sm: StateMachine, key: bytes) -> ZSet | None:
    """Write side: the sorted set at ``key``, None if missing; WRONGTYPE otherwise."""
    zset = sm.data.get(key)
    if zset is not None and type(zset) is not ZSet:
        raise WRONGTYPE
    return zset


def _store(sm: StateMachine, key: bytes, items: Iterable[Item]) -> int:
    """Replace ``key`` (whatever it held, its TTL dropped) by a sorted set of
    ``items``, or delete it when there are none; the new size."""
    zset = ZSet(items)
    sm.delete(key)
    if zset:
        sm.new_key(key)
        sm.data[key] = zset
        sm.dirty += 1
    return len(zset)


# --- ZADD / ZINCRBY / ZREM ------------------------------------------------------------

_ZADD_FLAGS = (b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR")


def _zadd_options(argv: list[bytes]) -> tuple[set[bytes], int]:
    """ZADD's flags and the index of its first score, with Redis 7.0's checks."""
    flags: set[bytes] = set()
    i = 2
    while i < len(argv) and (opt := argv[i].upper()) in _ZADD_FLAGS:
        flags.add(opt)
        i += 1
    pairs = len(argv) - i
    if pairs % 2 or not pairs:
        raise SYNTAX_ERROR
    if {b"NX", b"XX"} <= flags:
        raise RespError("ERR XX and NX options at the same time are not compatible")
    if (b"NX" in flags and flags & {b"GT", b"LT"}) or {b"GT", b"LT"} <= flags:
        raise RespError("ERR GT, LT, and/or NX options at the same time are not compatible")
    if b"INCR" in flags and pairs > 2:
        raise RespError("ERR INCR option supports a single increment-element pair")
    return flags, i


def _zadd_one(zset: ZSet, flags: set[bytes], score: float, member: bytes) -> tuple[str, float]:
    """Add one member under ZADD's flags: ``("added"|"updated"|"same"|"nop", score)``.

    NaN (INCR of inf by -inf) raises NAN_SCORE before anything changes.
    """
    old = zset.scores.get(member)
    if old is None:
        if b"XX" in flags:
            return "nop", score
        zset.add(member, score)
        return "added", score
    if b"NX" in flags:
        return "nop", old
    if b"INCR" in flags:
        score += old
        if math.isnan(score):
            raise NAN_SCORE
    if (b"LT" in flags and score >= old) or (b"GT" in flags and score <= old):
        return "nop", old
    if score == old:
        return "same", score
    zset.add(member, score)
    return "updated", score


def _zadd(sm: StateMachine, argv: list[bytes], flags: set[bytes], first: int) -> Reply:
    scores = [parse_double(argv[i]) for i in range(first, len(argv), 2)]
    key = argv[1]
    zset = _write_zset(sm, key)
    incr = b"INCR" in flags
    if zset is None:
        if b"XX" in flags:
            return None if incr else 0
        sm.new_key(key)
        zset = sm.data[key] = ZSet()
    added = updated = 0
    processed = False
    score = 0.0
    for score, member in zip(scores, argv[first + 1 :: 2], strict=True):
        outcome, score = _zadd_one(zset, flags, score, member)
        added += outcome == "added"
        updated += outcome == "updated"
        processed = processed or outcome != "nop"
    if added or updated:
        sm.dirty += 1
    if incr:
        return score if processed else None
    return added + updated if b"CH" in flags else added


@command("zadd", -4, "write denyoom fast")
def zadd(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]."""
    flags, first = _zadd_options(argv)
    return _zadd(sm, argv, flags, first)


@command("zincrby", 4, "write denyoom fast")
def zincrby(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """ZINCRBY key increment member: ZADD key INCR increment member."""
    return _zadd(sm, argv, {b"INCR"}, 2)


@command("zrem", -3, "write fast")
def zrem(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    key = argv[1]
    zset = _write_zset(sm, key)
    if zset is None:
        return 0
    removed = sum(1 for member in argv[2:] if zset.remove(member))
    if removed:
        sm.shrunk(key, zset)
    return removed


# --- single-member reads ----------------------------------------------------------------


def _read_zset(sm: StateMachine, key: bytes, now_ms: int) -> ZSet | None:
    zset: ZSet | None = sm.live_as(key, now_ms, ZSet)
    return zset


@command("zscore", 3, "readonly fast")
def zscore(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    zset = _read_zset(sm, argv[1], now_ms)
    return None if zset is None else zset.scores.get(argv[2])


@command("zmscore", -3, "readonly fast")
def zmscore(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    zset = _read_zset(sm, argv[1], now_ms)
    scores = {} if zset is None else zset.scores
    return [scores.get(member) for member in argv[2:]]


@command("zcard", 2, "readonly fast")
def zcard(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    zset = _read_zset(sm, argv[1], now_ms)
    return 0 if zset is None else len(zset)


def _rank(sm: StateMachine, argv: list[bytes], now_ms: int, reverse: bool) -> Reply:
    zset = _read_zset(sm, argv[1], now_ms)
    if zset is None:
        return None
    rank = zset.rank(argv[2])
    if rank is None or not reverse:
        return rank
    return len(zset) - 1 - rank


@command("zrank", 3, "readonly fast")
def zrank(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _rank(sm, argv, now_ms, False)


@command("zrevrank", 3, "readonly fast")
def zrevrank(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _rank(sm, argv, now_ms, True)


@command("zcount", 4, "readonly fast")
def zcount(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    lo, hi = _score_range(argv[2], argv[3])
    zset = _read_zset(sm, argv[1], now_ms)
    if zset is None:
        return 0
    a, b = _score_span(zset, lo, hi)
    return b - a


@command("zlexcount", 4, "readonly fast")
def zlexcount(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    lo, hi = _lex_range(argv[2], argv[3])
    zset = _read_zset(sm, argv[1], now_ms)
    if zset is None:
        return 0
    a, b = _lex_span(zset, lo, hi)
    return b - a


# --- ZRANGE and its legacy forms ----------------------------------------------------------


class _RangeQuery:
    """A parsed ZRANGE: what to select from the source set and how to reply."""

    __slots__ = ("bounds", "kind", "limit", "offset", "reverse", "withscores")

    def __init__(self, kind: str, reverse: bool, bounds: Any, withscores: bool,
                 offset: int, limit: int) -> None:
        self.kind = kind  # "rank", "score" or "lex"
        self.reverse = reverse
        self.bounds = bounds  # (start, stop) ranks, (lo, hi) scores or lex bounds
        self.withscores = withscores
        self.offset = offset
        self.limit = limit

    def select(self, zset: ZSet) -> list[Item]:
        """The items the query selects, in reply order."""
        if self.kind == "rank":
            start, stop = self.bounds
            a, b = _rank_span(len(zset), start, stop)
            if self.reverse:
                a, b = len(zset) - b, len(zset) - a
        else:
            if self.kind == "score":
                span = _score_span(zset, *self.bounds)
                a, b = _limited(span, self.offset, self.limit, self.reverse)
            else:
                lo, hi = self.bounds
                a, b = _lex_span(zset, lo, hi, self.reverse, self.offset, self.limit)
        return zset.items(a, b, self.reverse)


def _parse_zrange(
    argv: list[bytes], at: int, kind: str | None, reverse: bool | None, store: bool
) -> _RangeQuery:
    """Parse ``<src> <min> <max> [options]`` from ``argv[at]`` as Redis 7.0's
    zrangeGenericCommand: ``kind``/``reverse`` None let BYSCORE|BYLEX / REV
    choose; ``store`` (ZRANGESTORE) refuses WITHSCORES."""
    withscores = False
    offset, limit = 0, -1
    i = at + 3
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"WITHSCORES" and not store:
            withscores = True
        elif opt == b"LIMIT" and len(argv) - i - 1 >= 2:
            offset = parse_int(argv[i + 1])
            limit = parse_int(argv[i + 2])
            i += 2
        elif opt == b"REV" and reverse is None:
            reverse = True
        elif opt in (b"BYSCORE", b"BYLEX") and kind is None:
            kind = "score" if opt == b"BYSCORE" else "lex"
        else:
            raise SYNTAX_ERROR
        i += 1
    kind = kind or "rank"
    reverse = bool(reverse)
    if limit != -1 and kind == "rank":
        raise LIMIT_NEEDS_RANGE
    if withscores and kind == "lex":
        raise WITHSCORES_BYLEX
    lo, hi = argv[at + 1], argv[at + 2]
    if reverse and kind != "rank":
        lo, hi = hi, lo
    bounds: Any
    if kind == "rank":
        bounds = (parse_int(lo), parse_int(hi))
    elif kind == "score":
        bounds = _score_range(lo, hi)
    else:
        bounds = _lex_range(lo, hi)
    return _RangeQuery(kind, reverse, bounds, withscores, offset, limit)


def _zrange_read(
    sm: StateMachine, argv: list[bytes], now_ms: int, kind: str | None, reverse: bool | None
) -> Reply:
    query = _parse_zrange(argv, 1, kind, reverse, False)
    zset = _read_zset(sm, argv[1], now_ms)
    if zset is None:
        return []
    return _flat(query.select(zset), query.withscores)


@command("zrange", -4, "readonly")
def zrange(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """ZRANGE key min max [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]."""
    return _zrange_read(sm, argv, now_ms, None, None)


@command("zrevrange", -4, "readonly")
def zrevrange(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _zrange_read(sm, argv, now_ms, "rank", True)


@command("zrangebyscore", -4, "readonly")
def zrangebyscore(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _zrange_read(sm, argv, now_ms, "score", False)


@command("zrevrangebyscore", -4, "readonly")
def zrevrangebyscore(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _zrange_read(sm, argv, now_ms, "score", True)


@command("zrangebylex", -4, "readonly")
def zrangebylex(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _zrange_read(sm, argv, now_ms, "lex", False)


@command("zrevrangebylex", -4, "readonly")
def zrevrangebylex(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _zrange_read(sm, argv, now_ms, "lex", True)


@command("zrangestore", -5, "write denyoom", (1, 2, 1))
def zrangestore(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]."""
    query = _parse_zrange(argv, 2, None, None, True)
    src = _write_zset(sm, argv[2])
    return _store(sm, argv[1], () if src is None else query.select(src))


# --- removing ranges --------------------------------------------------------------------


def _remove_span(sm: StateMachine, key: bytes, span_of: Callable[[ZSet], tuple[int, int]]) -> int:
    zset = _write_zset(sm, key)
    if zset is None:
        return 0
    a, b = span_of(zset)
    if a >= b:
        return 0
    removed = zset.delete_span(a, b)
    sm.shrunk(key, zset)
    return removed


@command("zremrangebyrank", 4, "write")
def zremrangebyrank(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    start, stop = parse_int(argv[2]), parse_int(argv[3])
    return _remove_span(sm, argv[1], lambda z: _rank_span(len(z), start, stop))


@command("zremrangebyscore", 4, "write")
def zremrangebyscore(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    lo, hi = _score_range(argv[2], argv[3])
    return _remove_span(sm, argv[1], lambda z: _score_span(z, lo, hi))


@command("zremrangebylex", 4, "write")
def zremrangebylex(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    lo, hi = _lex_range(argv[2], argv[3])
    return _remove_span(sm, argv[1], lambda z: _lex_span(z, lo, hi))


# --- pops and random members ------------------------------------------------------------


def _pop(sm: StateMachine, key: bytes, zset: ZSet, count: int, top: bool) -> list[Item]:
    """Remove and return up to ``count`` lowest (highest if ``top``) members."""
    n = len(zset)
    a, b = (max(n - count, 0), n) if top else (0, min(count, n))
    items = zset.items(a, b, top)
    zset.delete_span(a, b)
    sm.shrunk(key, zset)
    return items


def _zpop(sm: StateMachine, argv: list[bytes], top: bool) -> Reply:
    if len(argv) > 3:
        raise SYNTAX_ERROR
    count = 1 if len(argv) == 2 else parse_int_min(argv[2], 0, NOT_POSITIVE)
    key = argv[1]
    zset = _write_zset(sm, key)
    if zset is None or count == 0:
        return []
    popped = _flat(_pop(sm, key, zset, count, top), True)
    return popped if len(argv) == 3 else list(popped)  # no count: flat in RESP3 too


@command("zpopmin", -2, "write fast")
def zpopmin(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """ZPOPMIN key [count]: a flat member, score, ... array."""
    return _zpop(sm, argv, False)


@command("zpopmax", -2, "write fast")
def zpopmax(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _zpop(sm, argv, True)


@command("zmpop", -4, "write movablekeys", (0, 0, 0), find_keys=keys_after_numkeys)
def zmpop(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]: pop from the first
    non-empty sorted set; ``[key, [[member, score], ...]]`` or a null array."""
    numkeys = parse_int_min(argv[1], 1, NUMKEYS_NOT_POSITIVE)
    where = 2 + numkeys
    if where >= len(argv):
        raise SYNTAX_ERROR
    side = argv[where].upper()
    if side not in (b"MIN", b"MAX"):
        raise SYNTAX_ERROR
    count = None
    i = where + 1
    while i < len(argv):
        if count is None and argv[i].upper() == b"COUNT" and i + 1 < len(argv):
            count = parse_int_min(argv[i + 1], 1, COUNT_POSITIVE)
            i += 2
        else:
            raise SYNTAX_ERROR
    for key in argv[2:where]:
        zset = _write_zset(sm, key)
        if zset is not None:
            items = _pop(sm, key, zset, count or 1, side == b"MAX")
            return [key, [[member, score] for score, member in items]]
    return NULL_ARRAY


@command("zrandmember", -2, "readonly")
def zrandmember(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """ZRANDMEMBER key [count [WITHSCORES]]: distinct members for a positive
    count (the whole set for one at least its size), repeats allowed for a
    negative one (a read: the reply is random)."""
    if len(argv) == 2:
        zset = _read_zset(sm, argv[1], now_ms)
        return None if zset is None else zset.order[random.randrange(len(zset))][1]
    count = parse_int(argv[2])
    if count < -I64_MAX:
        raise _I64_RANGE
    withscores = len(argv) == 4
    if len(argv) > 4 or (withscores and argv[3].upper() != b"WITHSCORES"):
        raise SYNTAX_ERROR
    if withscores and abs(count) > I64_MAX // 2:
        raise OUT_OF_RANGE
    zset = _read_zset(sm, argv[1], now_ms)
    if zset is None or count == 0:
        return []
    n = len(zset)
    if count >= n:  # the whole set, highest first, as Redis replies it
        return _flat(zset.items(0, n, True), withscores)
    if count > 0:
        picks = random.sample(range(n), count)
    else:
        picks = [random.randrange(n) for _ in range(-count)]
    return _flat((zset.order[i] for i in picks), withscores)


# --- union, intersection, difference ----------------------------------------------------

Source = tuple[Any, float]  # (a ZSet, a set or None, its weight)


def _source_sets(argv: list[bytes], at: int, get: Callable[[bytes], Any]) -> list[Any]:
    """The ``numkeys`` at ``argv[at]`` and the values of the keys after it
    (sorted sets or plain sets, None when missing), as Redis checks them."""
    numkeys = parse_int(argv[at])
    if numkeys < 1:
        name = argv[0].decode("utf-8", "replace").lower()
        raise RespError(f"ERR at least 1 input key is needed for '{name}' command")
    if numkeys > len(argv) - at - 1:
        raise SYNTAX_ERROR
    values = []
    for key in argv[at + 1 : at + 1 + numkeys]:
        value = get(key)
        if value is not None and type(value) is not ZSet and type(value) is not set:
            raise WRONGTYPE
        values.append(value)
    return values


class _SetOp:
    """A parsed ZUNION/ZINTER/ZDIFF[STORE]/ZINTERCARD: sources and options."""

    __slots__ = ("aggregate", "limit", "sources", "withscores")

    def __init__(self, argv: list[bytes], at: int, get: Callable[[bytes], Any], *,
                 weighted: bool, store: bool, card: bool) -> None:
        values = _source_sets(argv, at, get)
        weights = [1.0] * len(values)
        self.aggregate = b"SUM"
        self.withscores = False
        self.limit = 0
        i = at + 1 + len(values)
        while i < len(argv):
            opt = argv[i].upper()
            left = len(argv) - i
            if weighted and opt == b"WEIGHTS" and left > len(values):
                raw = argv[i + 1 : i + 1 + len(values)]
                weights = [parse_double(w, WEIGHT_NOT_FLOAT) for w in raw]
                i += 1 + len(values)
            elif weighted and opt == b"AGGREGATE" and left >= 2:
                self.aggregate = argv[i + 1].upper()
                if self.aggregate not in (b"SUM", b"MIN", b"MAX"):
                    raise SYNTAX_ERROR
                i += 2
            elif not store and not card and opt == b"WITHSCORES":
                self.withscores = True
                i += 1
            elif card and opt == b"LIMIT" and left >= 2:
                self.limit = parse_int_min(argv[i + 1], 0, LIMIT_NEGATIVE)
                i += 2
            else:
                raise SYNTAX_ERROR
        self.sources: list[Source] = list(zip(values, weights, strict=True))

    def _combine(self, a: float, b: float) -> float:
        if self.aggregate == b"SUM":
            total = a + b
            return 0.0 if math.isnan(total) else total
        if self.aggregate == b"MIN":
            return b if b < a else a
        return b if b > a else a

    def _by_size(self) -> list[Source]:
        """Smallest first, as Redis orders the inputs (stable among equal sizes)."""
        return sorted(self.sources, key=lambda src: 0 if src[0] is None else len(src[0]))

    def union(self) -> list[Item]:
        acc: dict[bytes, float] = {}
        for value, weight in self._by_size():
            for member, score in _members(value):
                score = _weighted(score, weight)
                old = acc.get(member)
                acc[member] = score if old is None else self._combine(old, score)
        return _sorted_items(acc)

    def inter(self) -> list[Item]:
        (first, weight), *rest = self._by_size()
        acc: dict[bytes, float] = {}
        for member, score in _members(first):
            total = _weighted(score, weight)
            for value, w in rest:
                other = _score_of(value, member)
                if other is None:
                    break
                total = self._combine(total, other * w)  # NaN: SUM makes 0, MIN/MAX skip it
            else:
                acc[member] = total
        return _sorted_items(acc)

    def diff(self) -> list[Item]:
        (first, _), *rest = self.sources
        acc = {member: score for member, score in _members(first)
               if all(_score_of(value, member) is None for value, _ in rest)}
        return _sorted_items(acc)

    def intercard(self) -> int:
        (first, _), *rest = self._by_size()
        count = 0
        for member, _score in _members(first):
            if all(_score_of(value, member) is not None for value, _ in rest):
                count += 1
                if count == self.limit:
                    break
        return count


def _members(value: Any) -> Iterator[tuple[bytes, float]]:
    """(member, score) of a sorted set, or of a plain set (score 1); none if missing."""
    if value is None:
        return iter(())
    if type(value) is ZSet:
        return iter(value.scores.items())
    return ((member, 1.0) for member in value)


def _score_of(value: Any, member: bytes) -> float | None:
    if value is None:
        return None
    if type(value) is ZSet:
        return value.scores.get(member)
    return 1.0 if member in value else None


def _weighted(score: float, weight: float) -> float:
    product = score * weight
    return 0.0 if math.isnan(product) else product


def _sorted_items(acc: dict[bytes, float]) -> list[Item]:
    return sorted((score, member) for member, score in acc.items())


_OPS: dict[str, Callable[[_SetOp], list[Item]]] = {
    "union": _SetOp.union, "inter": _SetOp.inter, "diff": _SetOp.diff,
}


def _setop_read(sm: StateMachine, argv: list[bytes], now_ms: int, op: str) -> Reply:
    parsed = _SetOp(argv, 1, lambda key: sm.live(key, now_ms), weighted=op != "diff",
                    store=False, card=False)
    return _flat(_OPS[op](parsed), parsed.withscores)


def _setop_store(sm: StateMachine, argv: list[bytes], op: str) -> Reply:
    parsed = _SetOp(argv, 2, sm.data.get, weighted=op != "diff", store=True, card=False)
    return _store(sm, argv[1], _OPS[op](parsed))


_READ_KEYS = keys_after_numkeys  # ZUNION numkeys key ...


def _STORE_KEYS(argv: list[bytes]) -> list[bytes]:  # noqa: N802 - a table entry, named as _READ_KEYS
    """ZUNIONSTORE dst numkeys key ...: the destination, then the sources."""
    return argv[1:2] + keys_after_numkeys(argv, 2)


@command("zunion", -3, "readonly movablekeys", (0, 0, 0), find_keys=_READ_KEYS)
def zunion(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """ZUNION numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]."""
    return _setop_read(sm, argv, now_ms, "union")


@command("zinter", -3, "readonly movablekeys", (0, 0, 0), find_keys=_READ_KEYS)
def zinter(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _setop_read(sm, argv, now_ms, "inter")


@command("zdiff", -3, "readonly movablekeys", (0, 0, 0), find_keys=_READ_KEYS)
def zdiff(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """ZDIFF numkeys key [key ...] [WITHSCORES]: the first set's members in no other."""
    return _setop_read(sm, argv, now_ms, "diff")


@command("zintercard", -3, "readonly movablekeys", (0, 0, 0), find_keys=_READ_KEYS)
def zintercard(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """ZINTERCARD numkeys key [key ...] [LIMIT limit] (0: no limit)."""
    parsed = _SetOp(argv, 1, lambda key: sm.live(key, now_ms), weighted=False, store=False,
                    card=True)
    return parsed.intercard()


@command("zunionstore", -4, "write denyoom movablekeys", find_keys=_STORE_KEYS)
def zunionstore(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """ZUNIONSTORE dst numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX]."""
    return _setop_store(sm, argv, "union")


@command("zinterstore", -4, "write denyoom movablekeys", find_keys=_STORE_KEYS)
def zinterstore(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _setop_store(sm, argv, "inter")


@command("zdiffstore", -4, "write denyoom movablekeys", find_keys=_STORE_KEYS)
def zdiffstore(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _setop_store(sm, argv, "diff")


# --- ZSCAN ------------------------------------------------------------------------------


def _scan_step(zset: ZSet, cursor: int, count: int) -> tuple[int, list[Item]]:
    """One step over a large set by crc32 position: from position ``cursor``
    on, the members of the ``count`` lowest positions (all members of the
    last one taken); the next cursor, 0 once the rest was taken."""
    index = zset.positions()
    i = index.bisect_left((cursor,))
    chosen = list(index.islice(i, i + count))
    if i + count >= len(index):
        nxt = 0
    else:
        last = chosen[-1][0]
        chosen = list(index.islice(i, index.bisect_left((last + 1,))))
        nxt = (last + 1) % (1 << 32)
    return nxt, [(zset.scores[member], member) for _, member in chosen]


@command("zscan", -3, "readonly")
def zscan(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """ZSCAN key cursor [MATCH pattern] [COUNT count]; see the module docstring."""
    cursor = parse_cursor(argv[2])
    zset = _read_zset(sm, argv[1], now_ms)
    if zset is None:
        return [b"0", []]
    pred, count, _ = parse_scan_options(argv, 3)
    if len(zset) <= _SMALL:
        nxt, items = 0, zset.items(0, len(zset))
    else:
        nxt, items = _scan_step(zset, cursor, count)
    out: list[bytes] = []
    for score, member in items:
        if pred is None or pred(member):
            out.append(member)
            out.append(format_double(score))
    return [b"%d" % nxt, out]


# --- blocking pops: what one attempt does (runtime/blocking.py waits and retries) --------------


def _bzpop(sm: StateMachine, argv: list[bytes], top: bool) -> Reply:
    """BZPOPMIN/BZPOPMAX key [key ...] timeout, one attempt: ``[key, member,
    score]`` from the first non-empty sorted set, or the null array."""
    parse_timeout_ms(argv[-1])
    for key in argv[1:-1]:
        zset = _write_zset(sm, key)
        if zset is not None:
            [(score, member)] = _pop(sm, key, zset, 1, top)
            return [key, member, score]
    return NULL_ARRAY


@command("bzpopmin", -3, "write noscript blocking fast", (1, -2, 1))
def bzpopmin(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _bzpop(sm, argv, False)


@command("bzpopmax", -3, "write noscript blocking fast", (1, -2, 1))
def bzpopmax(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _bzpop(sm, argv, True)


def _bzmpop_keys(argv: list[bytes]) -> list[bytes]:
    return keys_after_numkeys(argv, at=2)  # BZMPOP timeout numkeys key ...


@command("bzmpop", -5, "write blocking movablekeys", (0, 0, 0), find_keys=_bzmpop_keys)
def bzmpop(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count], one attempt: ZMPOP."""
    parse_timeout_ms(argv[1])
    return zmpop(sm, argv[1:], ctx)
