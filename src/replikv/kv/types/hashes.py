"""Hashes: ``data[key]`` is a ``dict`` field -> bytes, never empty (deleting
the last field deletes the key).

Behaviour and error texts are Redis 7.0's (``t_hash.c``). Determinism:
HRANDFIELD is a read (its random reply is never replicated); HINCRBYFLOAT
computes in emulated x87 long double (``kv/args.py``), so its result is the
same on every replica, and the leader-follower leader logs it as the
``HSET`` of its result, as Redis does (``rewrite_hincrbyfloat``). HSCAN's
cursors are ``kv/scan_index.py``'s (``scan_collection``).
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any

from replikv.core.replies import OK, SYNTAX_ERROR, WRONGTYPE, RespError, wrong_arity
from replikv.kv.args import (
    I64_MAX,
    I64_MIN,
    OVERFLOW,
    add_floats,
    format_float,
    parse_cursor,
    parse_float,
    parse_int,
    parse_random_count,
    parse_scan_options,
    random_picks,
)
from replikv.kv.commands import command
from replikv.kv.scan_index import scan_collection
from replikv.kv.values import ValueType, unordered_digest, value_type

if TYPE_CHECKING:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine

Reply = Any
HASH_NOT_INTEGER = RespError("ERR hash value is not an integer")
HASH_NOT_FLOAT = RespError("ERR hash value is not a float")
NAN_OR_INFINITY = RespError("ERR value is NaN or Infinity")


def _dump(value: dict[bytes, bytes]) -> list[bytes]:
    flat = []
    for field, fv in value.items():
        flat.append(field)
        flat.append(fv)
    return flat


def _load(flat: list[bytes]) -> dict[bytes, bytes]:
    it = iter(flat)
    return dict(zip(it, it))


def _digest(h: Any, value: dict[bytes, bytes]) -> None:
    h.update(b"h%d:" % len(value))
    h.update(unordered_digest(b"%d:%s%s" % (len(f), f, v) for f, v in value.items()))


value_type(ValueType(dict, "hash", 3, dump=_dump, load=_load, digest=_digest))


@command("hset", -4, "write denyoom fast")
def hset(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    if len(argv) % 2 == 1:
        raise wrong_arity("hset")
    fields = sm.container(argv[1], dict)
    before = len(fields)
    for i in range(2, len(argv), 2):
        fields[argv[i]] = argv[i + 1]
    sm.dirty += 1
    return len(fields) - before


@command("hdel", -3, "write fast")
def hdel(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    key = argv[1]
    fields = sm.data.get(key)
    if fields is None:
        return 0
    if type(fields) is not dict:
        raise WRONGTYPE
    removed = 0
    for field in argv[2:]:
        if fields.pop(field, None) is not None:
            removed += 1
    if removed:
        sm.shrunk(key, fields)
    return removed


@command("hincrby", 4, "write denyoom fast")
def hincrby(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    by = parse_int(argv[3])
    key = argv[1]
    fields = sm.data.get(key)
    if fields is not None and type(fields) is not dict:
        raise WRONGTYPE
    old_raw = None if fields is None else fields.get(argv[2])
    if old_raw is None:
        new = by
    else:
        try:
            old = parse_int(old_raw)
        except RespError:
            raise HASH_NOT_INTEGER from None
        new = old + by
        if not I64_MIN <= new <= I64_MAX:
            raise OVERFLOW
    if fields is None:
        sm.new_key(key)
        fields = sm.data[key] = {}
    fields[argv[2]] = b"%d" % new
    sm.dirty += 1
    return new


@command("hget", 3, "readonly fast")
def hget(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    fields = sm.live_as(argv[1], now_ms, dict)
    return None if fields is None else fields.get(argv[2])


@command("hmget", -3, "readonly fast")
def hmget(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    fields = sm.live_as(argv[1], now_ms, dict) or {}
    return [fields.get(f) for f in argv[2:]]


@command("hexists", 3, "readonly fast")
def hexists(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    fields = sm.live_as(argv[1], now_ms, dict)
    return 1 if fields is not None and argv[2] in fields else 0


@command("hgetall", 2, "readonly")
def hgetall(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    fields = sm.live_as(argv[1], now_ms, dict)
    return {} if fields is None else dict(fields)


@command("hlen", 2, "readonly fast")
def hlen(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    fields = sm.live_as(argv[1], now_ms, dict)
    return 0 if fields is None else len(fields)


@command("hsetnx", 4, "write denyoom fast")
def hsetnx(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    fields = sm.data.get(argv[1])
    if fields is not None:
        if type(fields) is not dict:
            raise WRONGTYPE
        if argv[2] in fields:
            return 0
    sm.container(argv[1], dict)[argv[2]] = argv[3]
    sm.dirty += 1
    return 1


@command("hmset", -4, "write denyoom fast")
def hmset(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    if len(argv) % 2 == 1:
        raise wrong_arity("hmset")
    hset(sm, argv, ctx)
    return OK


# --- HINCRBYFLOAT ----------------------------------------------------------------------


def _parse_increment(arg: bytes) -> Fraction:
    incr = parse_float(arg)
    if isinstance(incr, float):
        raise NAN_OR_INFINITY
    return incr


def _incremented(fields: dict[bytes, bytes] | None, field: bytes, incr: Fraction) -> bytes:
    """The new value of ``field`` after adding ``incr``, as Redis formats it."""
    old_raw = None if fields is None else fields.get(field)
    old: Fraction | float = Fraction(0)
    if old_raw is not None:
        try:
            old = parse_float(old_raw)
        except RespError:
            raise HASH_NOT_FLOAT from None
    return format_float(add_floats(old, incr))  # refused if not finite ("increment would produce...")


_RESULT = b"="  # marks an increment argument that is the computed result itself


def rewrite_hincrbyfloat(
    sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool
) -> list[bytes]:
    """Exact: ``HINCRBYFLOAT k f =<new value>``, the result computed on this state
    (applied as a plain store, logged as ``HSET k f <new value>`` as Redis
    replicates it); raft: as sent (the arithmetic is exact and platform-free,
    ``kv/args.py``). ``=...`` is never a valid increment, so no client sends it."""
    incr = _parse_increment(argv[3])
    if not exact:
        return argv
    fields = sm.live_as(argv[1], now_ms, dict)
    return [b"HINCRBYFLOAT", argv[1], argv[2], _RESULT + _incremented(fields, argv[2], incr)]


def logged_hincrbyfloat(cmd: list[bytes]) -> list[bytes]:
    """The leader-follower log form of an applied HINCRBYFLOAT: the HSET of its result."""
    return [b"HSET", cmd[1], cmd[2], cmd[3][len(_RESULT) :]]


@command("hincrbyfloat", 4, "write denyoom fast", rewrite=rewrite_hincrbyfloat,
         logged_as=logged_hincrbyfloat)
def hincrbyfloat(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """Add the increment and store the result; an ``=<value>`` argument (the
    exact rewrite's, computed on this very state) is stored as it is."""
    key, field, arg = argv[1], argv[2], argv[3]
    if arg.startswith(_RESULT):
        new = arg[len(_RESULT) :]
    else:
        incr = _parse_increment(arg)
        fields = sm.data.get(key)
        if fields is not None and type(fields) is not dict:
            raise WRONGTYPE
        new = _incremented(fields, field, incr)
    sm.container(key, dict)[field] = new
    sm.dirty += 1
    return new


# --- reads -----------------------------------------------------------------------------


@command("hkeys", 2, "readonly")
def hkeys(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    fields = sm.live_as(argv[1], now_ms, dict)
    return [] if fields is None else list(fields)


@command("hvals", 2, "readonly")
def hvals(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    fields = sm.live_as(argv[1], now_ms, dict)
    return [] if fields is None else list(fields.values())


@command("hstrlen", 3, "readonly fast")
def hstrlen(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    fields = sm.live_as(argv[1], now_ms, dict)
    value = None if fields is None else fields.get(argv[2])
    return 0 if value is None else len(value)


@command("hrandfield", -2, "readonly")
def hrandfield(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """HRANDFIELD key [count [WITHVALUES]]: random fields (``random_picks``);
    the count and options are checked before the key, as Redis does."""
    if len(argv) == 2:
        fields = sm.live_as(argv[1], now_ms, dict)
        return None if fields is None else random_picks(list(fields), 1)[0]
    count = parse_random_count(argv[2])
    with_values = len(argv) == 4 and argv[3].upper() == b"WITHVALUES"
    if len(argv) > 3 and not with_values:
        raise SYNTAX_ERROR
    fields = sm.live_as(argv[1], now_ms, dict)
    if fields is None:
        return []
    picked = random_picks(list(fields), count)
    if not with_values:
        return picked
    return [x for f in picked for x in (f, fields[f])]


@command("hscan", -3, "readonly")
def hscan(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """HSCAN key cursor [MATCH pattern] [COUNT n]; the cursor is checked first,
    a missing key answers an empty scan before the options are (as Redis)."""
    cursor = parse_cursor(argv[2])
    fields = sm.live_as(argv[1], now_ms, dict)
    if fields is None:
        return [b"0", []]
    pred, count, _ = parse_scan_options(argv, 3)
    nxt, found = scan_collection(fields, cursor, count)
    return [b"%d" % nxt, [x for f in found if pred is None or pred(f) for x in (f, fields[f])]]
