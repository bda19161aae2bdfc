"""Strings: ``data[key]`` is ``bytes``; integers are stored as their decimal bytes.

SET's options follow Redis 7 (``_parse_set``). A relative TTL (``EX``/``PX``,
SETEX, PSETEX) is rewritten by the leader to ``PXAT <absolute ms>``
(``rewrite_set``, ``rewrite_setex``) and never applied from a log
(``needs_clock``); an absolute one (``EXAT``/``PXAT``) is deterministic as sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from replikv.core.replies import OK, SYNTAX_ERROR, WRONGTYPE, RespError, wrong_arity
from replikv.kv.args import (
    I64_MAX,
    I64_MIN,
    NEEDS_CLOCK,
    OVERFLOW,
    SEC_MAX,
    expire_time_error,
    needs_clock,
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
_SET_ANY_EXPIRE = _SET_EX | _SET_PX | _SET_EXAT | _SET_PXAT
_SET_EXPIRE_OPTS = {b"EX": _SET_EX, b"PX": _SET_PX, b"EXAT": _SET_EXAT, b"PXAT": _SET_PXAT}


def _parse_set(
    argv: list[bytes], now_ms: int | None, name: str
) -> tuple[bool, bool, bool, bool, int | None, bool]:
    """SET's options as Redis 7 parses them.

    Returns ``(nx, xx, get, keepttl, when_ms, relative)``; ``relative`` is
    True when EX/PX was used (the leader must rewrite to PXAT). With
    ``now_ms=None`` (apply side) EX/PX are refused. Conflicts (NX+XX,
    KEEPTTL with a TTL, two different TTL options, a TTL option without a
    value) are ``ERR syntax error``; repeating the same option is allowed,
    the last value wins.
    """
    flags = 0
    expire_arg = b""
    i = 3
    n = len(argv)
    while i < n:
        opt = argv[i].upper()
        if opt == b"NX" and not flags & _SET_XX:
            flags |= _SET_NX
        elif opt == b"XX" and not flags & _SET_NX:
            flags |= _SET_XX
        elif opt == b"GET":
            flags |= _SET_GET
        elif opt == b"KEEPTTL" and not flags & _SET_ANY_EXPIRE:
            flags |= _SET_KEEPTTL
        elif (
            (bit := _SET_EXPIRE_OPTS.get(opt)) is not None
            and not flags & (_SET_KEEPTTL | (_SET_ANY_EXPIRE & ~bit))
            and i + 1 < n
        ):
            flags |= bit
            i += 1
            expire_arg = argv[i]
        else:
            raise SYNTAX_ERROR
        i += 1
    when = None
    relative = False
    if flags & _SET_ANY_EXPIRE:
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
            relative = True
        if ms > I64_MAX:
            raise expire_time_error(name)
        when = ms
    return (
        bool(flags & _SET_NX),
        bool(flags & _SET_XX),
        bool(flags & _SET_GET),
        bool(flags & _SET_KEEPTTL),
        when,
        relative,
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


# --- writes -----------------------------------------------------------------------------


# WRITE is the seed client's alias of SET
@command("write", -3, "write denyoom", rewrite=rewrite_set, logged_as=logged_set)
@command("set", -3, "write denyoom", rewrite=rewrite_set, logged_as=logged_set)
def set_(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    if len(argv) == 3:  # the hot path: SET k v
        key = argv[1]
        if sm.scan_index is not None and key not in sm.data:
            sm.scan_index.add(key)
        sm.data[key] = argv[2]
        if sm.expires:
            sm.expires.pop(key, None)
        sm.dirty += 1
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
