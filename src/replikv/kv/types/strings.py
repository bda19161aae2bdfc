"""Strings: ``data[key]`` is ``bytes``; integers are stored as their decimal bytes.

SET's options follow Redis 7 (``_parse_set``). A relative TTL (``EX``/``PX``,
SETEX, PSETEX) is rewritten by the leader to ``PXAT <absolute ms>``
(``rewrite_set``, ``rewrite_setex``) and never applied from a log
(``needs_clock``); an absolute one (``EXAT``/``PXAT``) is deterministic as sent.

GETEX (Redis 7's t_string.c behaviour): options are checked first (syntax
errors whatever the key), then the key (missing: nil, another type:
WRONGTYPE), then the TTL value, so an invalid TTL on a missing key answers
nil. The leader rewrites EX/PX to ``PXAT <abs>`` without reading the state
(an invalid relative TTL to ``PXAT 0``, which apply refuses with the same
error once the key is found); an expiry already due on a live key becomes
``GETDEL`` on the leader-follower leader (exact), as Redis replicates it as
a deletion; under raft the entry sets the past TTL and apply's expiry at the
entry's time deletes the key, with the same reply and state.

INCRBYFLOAT computes in Redis's ``long double`` (``kv/args.py``: exact,
platform-independent) and keeps the TTL. The leader-follower leader logs it
as ``SET key <result> KEEPTTL`` as Redis replicates it (its exact rewrite
computes the result on the state it is about to apply to and hands it to the
log form, ``_IncrByFloatCmd``); raft logs it as sent, which is deterministic
since the arithmetic is.

LCS follows Redis 7.0's t_string.c: the keys' types are checked first
("ERR The specified keys must contain string values"; a missing key is an
empty string), then the options; the dynamic-programming table is refused
as Redis refuses it (over ``proto-max-bulk-len`` bytes at 4 per cell); the
walk back from the end prefers a match, then the direction with the longer
LCS (``j`` on a tie), so IDX lists the same ranges, last first.

SETRANGE/GETRANGE/SUBSTR/MSETNX follow Redis 7.0, including the 512 MB limit
(``proto-max-bulk-len``) on the string SETRANGE would build.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any

from replikv.core.replies import (
    NOT_INTEGER,
    OK,
    SYNTAX_ERROR,
    WRONGTYPE,
    RespError,
    wrong_arity,
)
from replikv.kv.args import (
    I64_MAX,
    I64_MIN,
    NEEDS_CLOCK,
    NEVER,
    OVERFLOW,
    PROTO_MAX_BULK_LEN,
    SEC_MAX,
    STRING_TOO_LONG,
    add_floats,
    expire_time_error,
    format_float,
    needs_clock,
    parse_float,
    parse_int,
)
from replikv.kv.commands import command
from replikv.kv.values import ValueType, value_type

if TYPE_CHECKING:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine

Reply = Any
_PXAT = b"PXAT"


def _digest(h: Any, value: bytes) -> None:
    h.update(b"s%d:" % len(value))
    h.update(value)


value_type(ValueType(bytes, "string", 0, dump=bytes, load=bytes, digest=_digest))


# --- parsing and the leader's rewrite -----------------------------------------------

_SET_NX, _SET_XX, _SET_GET, _SET_KEEPTTL = 1, 2, 4, 8
_SET_EX, _SET_PX, _SET_EXAT, _SET_PXAT = 16, 32, 64, 128
_GETEX_PERSIST = 256
_SET_ANY_EXPIRE = _SET_EX | _SET_PX | _SET_EXAT | _SET_PXAT
_SET_EXPIRE_OPTS = {b"EX": _SET_EX, b"PX": _SET_PX, b"EXAT": _SET_EXAT, b"PXAT": _SET_PXAT}


def _parse_string_opts(argv: list[bytes], first: int, getex: bool) -> tuple[int, bytes]:
    """SET's (``getex`` False) or GETEX's options from ``argv[first:]``, as
    Redis 7 parses both in one loop: ``(flags, expire_arg)``.

    SET takes NX, XX, GET, KEEPTTL; GETEX takes PERSIST; both take one of
    EX/PX/EXAT/PXAT with a value. Conflicts (NX+XX, KEEPTTL or PERSIST with
    a TTL, two different TTL options, a TTL option without a value) and
    options of the other command are ``ERR syntax error``; repeating the
    same option is allowed, the last value wins.
    """
    flags = 0
    expire_arg = b""
    i = first
    n = len(argv)
    while i < n:
        opt = argv[i].upper()
        if opt == b"NX" and not getex and not flags & _SET_XX:
            flags |= _SET_NX
        elif opt == b"XX" and not getex and not flags & _SET_NX:
            flags |= _SET_XX
        elif opt == b"GET" and not getex:
            flags |= _SET_GET
        elif opt == b"KEEPTTL" and not getex and not flags & _SET_ANY_EXPIRE:
            flags |= _SET_KEEPTTL
        elif opt == b"PERSIST" and getex and not flags & _SET_ANY_EXPIRE:
            flags |= _GETEX_PERSIST
        elif (
            (bit := _SET_EXPIRE_OPTS.get(opt)) is not None
            and not flags & (_SET_KEEPTTL | _GETEX_PERSIST | (_SET_ANY_EXPIRE & ~bit))
            and i + 1 < n
        ):
            flags |= bit
            i += 1
            expire_arg = argv[i]
        else:
            raise SYNTAX_ERROR
        i += 1
    return flags, expire_arg


def _expire_ms(flags: int, expire_arg: bytes, now_ms: int | None, name: str) -> int:
    """The absolute expiry (ms) that SET's or GETEX's TTL option asks for.

    Errors as Redis's: not an integer, not positive, or out of range ->
    its error; a relative option (EX/PX) with ``now_ms=None`` (apply side)
    is NEEDS_CLOCK.
    """
    ms = parse_int(expire_arg)
    seconds = bool(flags & (_SET_EX | _SET_EXAT))
    if ms <= 0 or (seconds and ms > SEC_MAX):
        raise expire_time_error(name)
    if seconds:
        ms *= 1000
    if flags & (_SET_EX | _SET_PX):
        if now_ms is None:
            raise NEEDS_CLOCK
        ms += now_ms
    if ms > I64_MAX:
        raise expire_time_error(name)
    return ms


def _parse_set(
    argv: list[bytes], now_ms: int | None, name: str
) -> tuple[bool, bool, bool, bool, int | None, bool]:
    """SET's options: ``(nx, xx, get, keepttl, when_ms, relative)``.

    ``relative`` is True when EX/PX was used (the leader must rewrite to
    PXAT). With ``now_ms=None`` (apply side) EX/PX are refused.
    """
    flags, expire_arg = _parse_string_opts(argv, 3, False)
    when = _expire_ms(flags, expire_arg, now_ms, name) if flags & _SET_ANY_EXPIRE else None
    return (
        bool(flags & _SET_NX),
        bool(flags & _SET_XX),
        bool(flags & _SET_GET),
        bool(flags & _SET_KEEPTTL),
        when,
        bool(flags & (_SET_EX | _SET_PX)),
    )


def rewrite_set(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    """SET .. EX/PX t -> SET k v [NX|XX] [GET] PXAT abs; anything else as sent."""
    if len(argv) == 3:
        return argv
    nx, xx, get, _keepttl, when, relative = _parse_set(argv, now_ms, "set")
    if when is None or not relative:
        return argv
    cmd = [b"SET", argv[1], argv[2]]
    if nx:
        cmd.append(b"NX")
    if xx:
        cmd.append(b"XX")
    if get:
        cmd.append(b"GET")
    cmd += [_PXAT, b"%d" % when]
    return cmd


def logged_set(cmd: list[bytes]) -> list[bytes]:
    """A rewritten SET that applied is logged without its NX/XX/GET (they held)."""
    return [b"SET", cmd[1], cmd[2], _PXAT, cmd[-1]]


def _rewrite_setex(unit_ms: int, name: str, argv: list[bytes], now_ms: int) -> list[bytes]:
    ttl = parse_int(argv[2])
    if ttl <= 0 or (unit_ms == 1000 and ttl > SEC_MAX):
        raise expire_time_error(name)
    when = ttl * unit_ms + now_ms
    if when > I64_MAX:
        raise expire_time_error(name)
    return [b"SET", argv[1], argv[3], _PXAT, b"%d" % when]


def rewrite_setex(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    """SETEX k seconds v -> SET k v PXAT abs."""
    return _rewrite_setex(1000, "setex", argv, now_ms)


def rewrite_psetex(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    """PSETEX k ms v -> SET k v PXAT abs."""
    return _rewrite_setex(1, "psetex", argv, now_ms)


command("setex", 4, "write denyoom", rewrite=rewrite_setex)(needs_clock)
command("psetex", 4, "write denyoom", rewrite=rewrite_psetex)(needs_clock)


def rewrite_getex(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    """GETEX k EX/PX t -> GETEX k PXAT abs; due on a live key (exact) -> GETDEL k."""
    flags, expire_arg = _parse_string_opts(argv, 2, True)
    if not flags & _SET_ANY_EXPIRE:
        return argv
    key = argv[1]
    try:
        when = _expire_ms(flags, expire_arg, now_ms, "getex")
    except RespError as err:
        if err == NOT_INTEGER:
            return argv  # apply answers it once it has found the key
        return [b"GETEX", key, _PXAT, b"0"]  # invalid, refused by apply as such
    if exact and when <= now_ms and key in sm.data and sm.expires.get(key, NEVER) > now_ms:
        return [b"GETDEL", key]
    if flags & (_SET_EX | _SET_PX):
        return [b"GETEX", key, _PXAT, b"%d" % when]
    return argv


def _incrbyfloat_result(old: Any, incr: bytes) -> bytes:
    """The new value of INCRBYFLOAT on ``old`` (None: missing), as Redis prints it."""
    if old is None:
        current: Any = Fraction(0)
    elif type(old) is bytes:
        current = parse_float(old)
    else:
        raise WRONGTYPE
    return format_float(add_floats(current, parse_float(incr)))


class _IncrByFloatCmd(list):  # type: ignore[type-arg]
    """``INCRBYFLOAT key incr`` as the exact rewrite returns it: it applies as
    sent (a plain 3-element argv) and carries the result computed on the state
    it is about to apply to, which its log form needs."""

    __slots__ = ("result",)

    def __init__(self, argv: list[bytes], result: bytes) -> None:
        super().__init__(argv)
        self.result = result


def rewrite_incrbyfloat(
    sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool
) -> list[bytes]:
    """Exact: a copy of argv carrying its result (for ``logged_incrbyfloat``).

    An error is left to apply (argv as sent), which raises it after the same
    expired-key deletions as the raft path."""
    if not exact:
        return argv
    key = argv[1]
    try:
        result = _incrbyfloat_result(sm.live(key, now_ms), argv[2])
    except RespError:
        return argv
    return _IncrByFloatCmd([b"INCRBYFLOAT", key, argv[2]], result)


def logged_incrbyfloat(cmd: list[bytes]) -> list[bytes]:
    """INCRBYFLOAT is replicated as Redis does: SET key <result> KEEPTTL."""
    assert isinstance(cmd, _IncrByFloatCmd), "only the exact rewrite is logged in its SET form"
    return [b"SET", cmd[1], cmd.result, b"KEEPTTL"]


# --- writes -----------------------------------------------------------------------------


# WRITE is the seed client's alias of SET
@command("write", -3, "write denyoom", rewrite=rewrite_set, logged_as=logged_set)
@command("set", -3, "write denyoom", rewrite=rewrite_set, logged_as=logged_set)
def set_(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    if len(argv) == 3:  # the hot path: SET k v
        sm.set_string(argv[1], argv[2])
        return OK
    nx, xx, get, keepttl, when, _ = _parse_set(argv, None, "set")
    return _do_set(sm, argv[1], argv[2], nx, xx, get, keepttl, when)


def _do_set(
    sm: StateMachine,
    key: bytes,
    value: bytes,
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    when: int | None,
) -> Reply:
    data = sm.data
    old = data.get(key)
    if get and old is not None and type(old) is not bytes:
        raise WRONGTYPE
    if (nx and old is not None) or (xx and old is None):
        return old if get else None
    if old is None:
        sm.new_key(key)
    data[key] = value
    if when is not None:
        sm.set_expire(key, when)
    elif not keepttl and sm.expires:
        sm.expires.pop(key, None)
    sm.dirty += 1
    return old if get else OK


@command("setnx", 3, "write denyoom fast")
def setnx(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return 1 if _do_set(sm, argv[1], argv[2], True, False, False, False, None) == OK else 0


@command("cas", 4, "write denyoom fast")
def cas(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """CAS key expected new: set ``new`` iff the string at key equals ``expected``.

    1 if swapped, 0 if not (absent key, other value); the TTL is kept.
    Deterministic, so logged as sent (the register workload's cas).
    """
    current = sm.data.get(argv[1])
    if current is None:
        return 0
    if type(current) is not bytes:
        raise WRONGTYPE
    if current != argv[2]:
        return 0
    _do_set(sm, argv[1], argv[3], False, False, False, True, None)
    return 1


@command("getset", 3, "write denyoom fast")
def getset(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _do_set(sm, argv[1], argv[2], False, False, True, False, None)


@command("getdel", 2, "write fast")
def getdel(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    key = argv[1]
    value = sm.data.get(key)
    if value is None:
        return None
    if type(value) is not bytes:
        raise WRONGTYPE
    sm.delete(key)
    return value


@command("mset", -3, "write denyoom", (1, -1, 2))
def mset(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    if len(argv) % 2 == 0:
        raise wrong_arity("mset")
    data = sm.data
    expires = sm.expires
    for i in range(1, len(argv), 2):
        key = argv[i]
        if key not in data:
            sm.new_key(key)
        data[key] = argv[i + 1]
        if expires:
            expires.pop(key, None)
    sm.dirty += 1
    return OK


def _incrby(sm: StateMachine, key: bytes, by: int) -> int:
    data = sm.data
    old = data.get(key)
    if old is None:
        new = by
        sm.new_key(key)
    elif type(old) is bytes:
        new = parse_int(old) + by
        if not I64_MIN <= new <= I64_MAX:
            raise OVERFLOW
    else:
        raise WRONGTYPE
    data[key] = b"%d" % new
    sm.dirty += 1
    return new


@command("incr", 2, "write denyoom fast")
def incr(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _incrby(sm, argv[1], 1)


@command("decr", 2, "write denyoom fast")
def decr(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _incrby(sm, argv[1], -1)


@command("incrby", 3, "write denyoom fast")
def incrby(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _incrby(sm, argv[1], parse_int(argv[2]))


@command("decrby", 3, "write denyoom fast")
def decrby(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    by = parse_int(argv[2])
    if by == I64_MIN:
        raise RespError("ERR decrement would overflow")
    return _incrby(sm, argv[1], -by)


@command("append", 3, "write denyoom")
def append(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    key = argv[1]
    old = sm.data.get(key)
    if old is None:
        sm.new_key(key)
        new = argv[2]
    elif type(old) is bytes:
        new = old + argv[2]
    else:
        raise WRONGTYPE
    sm.data[key] = new
    sm.dirty += 1
    return len(new)


@command("incrbyfloat", 3, "write denyoom fast", rewrite=rewrite_incrbyfloat,
         logged_as=logged_incrbyfloat)
def incrbyfloat(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    key = argv[1]
    old = sm.data.get(key)
    new = _incrbyfloat_result(old, argv[2])
    if old is None:
        sm.new_key(key)
    sm.data[key] = new
    sm.dirty += 1
    return new


@command("getex", -2, "write fast", rewrite=rewrite_getex)
def getex(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    flags, expire_arg = _parse_string_opts(argv, 2, True)
    key = argv[1]
    value = sm.data.get(key)
    if value is None:
        return None
    if type(value) is not bytes:
        raise WRONGTYPE
    if flags & _SET_ANY_EXPIRE:
        sm.set_expire(key, _expire_ms(flags, expire_arg, None, "getex"))
        sm.dirty += 1
    elif flags & _GETEX_PERSIST and sm.expires.pop(key, None) is not None:
        sm.dirty += 1
    return value


_OFFSET_OUT_OF_RANGE = RespError("ERR offset is out of range")


@command("setrange", 4, "write denyoom")
def setrange(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    offset = parse_int(argv[2])
    if offset < 0:
        raise _OFFSET_OUT_OF_RANGE
    key, piece = argv[1], argv[3]
    old = sm.data.get(key)
    if old is not None and type(old) is not bytes:
        raise WRONGTYPE
    if not piece:
        return 0 if old is None else len(old)
    end = offset + len(piece)
    if end > PROTO_MAX_BULK_LEN:
        raise STRING_TOO_LONG
    if old is None:
        sm.new_key(key)
        old = b""
    if offset > len(old):
        new = old + bytes(offset - len(old)) + piece
    else:
        new = old[:offset] + piece + old[end:]
    sm.data[key] = new
    sm.dirty += 1
    return len(new)


@command("msetnx", -3, "write denyoom", (1, -1, 2))
def msetnx(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    if len(argv) % 2 == 0:
        raise wrong_arity("msetnx")
    data = sm.data
    if any(argv[i] in data for i in range(1, len(argv), 2)):
        return 0
    for i in range(1, len(argv), 2):
        key = argv[i]
        if key not in data:
            sm.new_key(key)
        data[key] = argv[i + 1]
    sm.dirty += 1
    return 1


# --- reads ----------------------------------------------------------------------------


# READ is the seed client's alias of GET
@command("read", 2, "readonly fast")
@command("get", 2, "readonly fast")
def get(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    key = argv[1]
    value = sm.data.get(key)
    if value is None:
        return None
    if sm.expires:
        when = sm.expires.get(key)
        if when is not None and when <= now_ms:
            return None
    if type(value) is bytes:
        return value
    raise WRONGTYPE


@command("mget", -2, "readonly fast", (1, -1, 1))
def mget(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    out = []
    for key in argv[1:]:
        value = sm.live(key, now_ms)
        out.append(value if type(value) is bytes else None)
    return out


@command("strlen", 2, "readonly fast")
def strlen(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    value = sm.live(argv[1], now_ms)
    if value is None:
        return 0
    if type(value) is not bytes:
        raise WRONGTYPE
    return len(value)


def _clamp_range(start: int, end: int, length: int) -> tuple[int, int]:
    """GETRANGE's ``start``/``end`` (inclusive, negative from the end) clamped to
    ``[0, length)``; an empty range comes back as ``start > end``."""
    if start < 0 and end < 0 and start > end:
        return 1, 0
    if start < 0:
        start = max(length + start, 0)
    if end < 0:
        end = max(length + end, 0)
    return start, min(end, length - 1)


@command("substr", 4, "readonly")
@command("getrange", 4, "readonly")
def getrange(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    value = sm.live_as(argv[1], now_ms, bytes)
    if not value:
        return b""
    start, end = _clamp_range(start, end, len(value))
    return value[start : end + 1] if start <= end else b""


LCS_NOT_STRINGS = RespError("ERR The specified keys must contain string values")
LCS_LEN_AND_IDX = RespError("ERR If you want both the length and indexes, please just use IDX.")
LCS_TOO_BIG = RespError(
    "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len"
)


def _lcs_options(argv: list[bytes]) -> tuple[bool, bool, int, bool]:
    """LCS's options: ``(want_len, want_idx, min_match_len, with_match_len)``."""
    want_len = want_idx = with_match_len = False
    min_match_len = 0
    i = 3
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"IDX":
            want_idx = True
        elif opt == b"LEN":
            want_len = True
        elif opt == b"WITHMATCHLEN":
            with_match_len = True
        elif opt == b"MINMATCHLEN" and i + 1 < len(argv):
            i += 1
            min_match_len = max(parse_int(argv[i]), 0)
        else:
            raise SYNTAX_ERROR
        i += 1
    if want_len and want_idx:
        raise LCS_LEN_AND_IDX
    return want_len, want_idx, min_match_len, with_match_len


def _lcs_rows(a: bytes, b: bytes) -> list[int]:
    """The LCS table of ``a`` and ``b``, one bit vector per row (bit-parallel, as
    Allison-Dix/Hyyro): bit ``j`` of ``rows[i]`` is 0 iff ``LCS(a[:i], b[:j+1])``
    is one more than ``LCS(a[:i], b[:j])``; see :func:`_lcs_at`. O(len(a))
    big-int operations of ``len(b)`` bits instead of a Python loop per cell."""
    full = (1 << len(b)) - 1
    masks: dict[int, int] = {}
    for j, c in enumerate(b):
        masks[c] = masks.get(c, 0) | (1 << j)
    row = full
    rows = [row]
    for c in a:
        matched = row & masks.get(c, 0)
        row = ((row + matched) | (row - matched)) & full
        rows.append(row)
    return rows


def _lcs_at(rows: list[int], i: int, j: int) -> int:
    """``LCS(a[:i], b[:j])`` from :func:`_lcs_rows`."""
    return j - (rows[i] & ((1 << j) - 1)).bit_count()


def _lcs_walk(
    a: bytes, b: bytes, rows: list[int], min_match_len: int, with_match_len: bool
) -> tuple[bytes, list[list[Any]]]:
    """The LCS and its matching ranges, walking back from the ends of both strings."""
    i, j = len(a), len(b)
    common = bytearray()
    matches: list[list[Any]] = []
    start: tuple[int, int] | None = None  # the current range's start in a and b
    end = (0, 0)
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            common.append(a[i - 1])
            if start is None:
                end = (i - 1, j - 1)
            start = (i - 1, j - 1)  # a match right after a match extends the range
            emit = i == 1 or j == 1
            i -= 1
            j -= 1
        else:
            if _lcs_at(rows, i - 1, j) > _lcs_at(rows, i, j - 1):
                i -= 1
            else:
                j -= 1
            emit = start is not None
        if emit and start is not None:
            length = end[0] - start[0] + 1
            if length >= min_match_len:
                match: list[Any] = [[start[0], end[0]], [start[1], end[1]]]
                if with_match_len:
                    match.append(length)
                matches.append(match)
            start = None
    common.reverse()
    return bytes(common), matches


@command("lcs", -3, "readonly", (1, 2, 1))
def lcs(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]."""
    a = sm.live(argv[1], now_ms)
    b = sm.live(argv[2], now_ms)
    if (a is not None and type(a) is not bytes) or (b is not None and type(b) is not bytes):
        raise LCS_NOT_STRINGS
    a = a or b""
    b = b or b""
    want_len, want_idx, min_match_len, with_match_len = _lcs_options(argv)
    if (len(a) + 1) * (len(b) + 1) * 4 > PROTO_MAX_BULK_LEN:
        raise LCS_TOO_BIG
    rows = _lcs_rows(a, b)
    length = _lcs_at(rows, len(a), len(b))
    if want_len:
        return length
    common, matches = _lcs_walk(a, b, rows, min_match_len, with_match_len)
    if want_idx:
        return {b"matches": matches, b"len": length}
    return common
