"""Generic key commands: DEL, EXPIRE family, TTL family, TYPE, EXISTS, KEYS, SCAN, DBSIZE, FLUSHALL.

They work on a key whatever its type. The EXPIRE family's NX/XX/GT/LT
conditions and error texts are Redis 7's; a relative EXPIRE/PEXPIRE is
rewritten by the leader to ``PEXPIREAT <absolute ms>`` (``rewrite_expire``),
and one already due on a live key to ``DEL`` (as Redis replicates it).
SCAN's cursor scheme is ``kv/scan_index.py``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from replikv.core.replies import OK, SYNTAX_ERROR, RespError
from replikv.kv.args import (
    I64_MAX,
    NEVER,
    SEC_MAX,
    SEC_MIN,
    expire_time_error,
    needs_clock,
    parse_cursor,
    parse_int,
)
from replikv.kv.commands import RewriteFn, command
from replikv.kv.glob import compile_glob, matches_all
from replikv.kv.values import type_name

if TYPE_CHECKING:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine

Reply = Any
_KEYLESS = (0, 0, 0)


# --- deletion -------------------------------------------------------------------------


@command("unlink", -2, "write fast", (1, -1, 1))
@command("del", -2, "write", (1, -1, 1))
def del_(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    deleted = 0
    for key in argv[1:]:
        if sm.delete(key):
            deleted += 1
    return deleted


@command("flushall", -1, "write", _KEYLESS)
def flushall(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    for opt in argv[1:]:
        if opt.upper() not in (b"ASYNC", b"SYNC"):
            raise SYNTAX_ERROR
    if sm.data:
        sm.clear()
    return OK


# --- TTLs -----------------------------------------------------------------------------


def _parse_expire_flags(argv: list[bytes]) -> tuple[bool, bool, bool, bool]:
    """EXPIRE's NX/XX/GT/LT options, with Redis 7's error texts."""
    nx = xx = gt = lt = False
    for raw in argv[3:]:
        opt = raw.upper()
        if opt == b"NX":
            nx = True
        elif opt == b"XX":
            xx = True
        elif opt == b"GT":
            gt = True
        elif opt == b"LT":
            lt = True
        else:
            raise RespError(f"ERR Unsupported option {raw.decode('utf-8', 'replace')}")
    if nx and (xx or gt or lt):
        raise RespError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if gt and lt:
        raise RespError("ERR GT and LT options at the same time are not compatible")
    return nx, xx, gt, lt


def _expire_when(arg: bytes, unit_ms: int, base_ms: int, name: str) -> int:
    """Absolute expiry in ms from an EXPIRE-family argument, overflow-checked."""
    when = parse_int(arg)
    if unit_ms == 1000:
        if when > SEC_MAX or when < SEC_MIN:
            raise expire_time_error(name)
        when *= 1000
    if when > I64_MAX - base_ms:
        raise expire_time_error(name)
    return when + base_ms


def _expire_allowed(
    sm: StateMachine, key: bytes, when: int, nx: bool, xx: bool, gt: bool, lt: bool
) -> bool:
    """The NX/XX/GT/LT conditions of EXPIRE (no TTL counts as infinite)."""
    if not (nx or xx or gt or lt):
        return True
    current = sm.expires.get(key)
    if nx and current is not None:
        return False
    if xx and current is None:
        return False
    if gt and (current is None or when <= current):
        return False
    return not (lt and current is not None and when >= current)


def _rewrite_expire(unit_ms: int, relative: bool, name: str) -> RewriteFn:
    """EXPIRE k t [cond] -> PEXPIREAT k abs [cond]; due on a live key (exact) -> DEL k."""

    def rewrite(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
        nx, xx, gt, lt = _parse_expire_flags(argv)
        when = _expire_when(argv[2], unit_ms, now_ms if relative else 0, name)
        key = argv[1]
        if exact and when <= now_ms:  # already due: Redis replicates this as a DEL
            live = key in sm.data and sm.expires.get(key, NEVER) > now_ms
            if live and _expire_allowed(sm, key, when, nx, xx, gt, lt):
                return [b"DEL", key]
        if not relative:
            return argv
        return [b"PEXPIREAT", key, b"%d" % when, *argv[3:]]

    rewrite.__name__ = rewrite.__qualname__ = f"rewrite_{name}"
    return rewrite


def logged_pexpireat(cmd: list[bytes]) -> list[bytes]:
    """A rewritten PEXPIREAT that applied is logged without its NX/XX/GT/LT (they held)."""
    return cmd[:3]


command("expire", -3, "write fast", rewrite=_rewrite_expire(1000, True, "expire"))(needs_clock)
command("pexpire", -3, "write fast", rewrite=_rewrite_expire(1, True, "pexpire"))(needs_clock)


def _expire_at(sm: StateMachine, argv: list[bytes], unit_ms: int, name: str) -> Reply:
    nx, xx, gt, lt = _parse_expire_flags(argv)
    when = _expire_when(argv[2], unit_ms, 0, name)
    key = argv[1]
    if key not in sm.data or not _expire_allowed(sm, key, when, nx, xx, gt, lt):
        return 0
    sm.set_expire(key, when)
    sm.dirty += 1
    return 1


@command("expireat", -3, "write fast", rewrite=_rewrite_expire(1000, False, "expireat"))
def expireat(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _expire_at(sm, argv, 1000, "expireat")


@command("pexpireat", -3, "write fast", rewrite=_rewrite_expire(1, False, "pexpireat"),
         logged_as=logged_pexpireat)
def pexpireat(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _expire_at(sm, argv, 1, "pexpireat")


@command("persist", 2, "write fast")
def persist(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    key = argv[1]
    if key in sm.data and sm.expires.pop(key, None) is not None:
        sm.dirty += 1
        return 1
    return 0


def _ttl(sm: StateMachine, key: bytes, now_ms: int, absolute: bool, unit_ms: int) -> int:
    if sm.live(key, now_ms) is None:
        return -2
    when = sm.expires.get(key)
    if when is None:
        return -1
    if absolute:
        return when if unit_ms == 1 else when // 1000
    remaining = max(when - now_ms, 0)
    return remaining if unit_ms == 1 else (remaining + 500) // 1000


@command("ttl", 2, "readonly fast")
def ttl(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _ttl(sm, argv[1], now_ms, False, 1000)


@command("pttl", 2, "readonly fast")
def pttl(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _ttl(sm, argv[1], now_ms, False, 1)


@command("expiretime", 2, "readonly fast")
def expiretime(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _ttl(sm, argv[1], now_ms, True, 1000)


@command("pexpiretime", 2, "readonly fast")
def pexpiretime(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _ttl(sm, argv[1], now_ms, True, 1)


# --- the key space ----------------------------------------------------------------------


@command("exists", -2, "readonly fast", (1, -1, 1))
def exists(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return sum(1 for key in argv[1:] if sm.live(key, now_ms) is not None)


@command("type", 2, "readonly fast")
def type_(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    value = sm.live(argv[1], now_ms)
    return "none" if value is None else type_name(value)


@command("dbsize", 1, "readonly fast", _KEYLESS)
def dbsize(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return len(sm.data)


@command("keys", 2, "readonly", _KEYLESS)
def keys(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    pattern = argv[1]
    expires = sm.expires
    if matches_all(pattern):
        if not expires:
            return list(sm.data)
        return [k for k in sm.data if not (k in expires and expires[k] <= now_ms)]
    pred = compile_glob(pattern)
    return [k for k in sm.data if pred(k) and not (k in expires and expires[k] <= now_ms)]


@command("scan", -2, "readonly", _KEYLESS)
def scan(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]; see kv/scan_index.py."""
    cursor = parse_cursor(argv[1])
    pred: Callable[[bytes], bool] | None = None
    count = 10
    want_type: str | None = None
    i = 2
    while i < len(argv):
        opt = argv[i].upper()
        if i + 1 >= len(argv):
            raise SYNTAX_ERROR
        arg = argv[i + 1]
        if opt == b"COUNT":
            count = parse_int(arg)
            if count < 1:
                raise SYNTAX_ERROR
        elif opt == b"MATCH":
            pred = None if matches_all(arg) else compile_glob(arg)
        elif opt == b"TYPE":
            want_type = arg.decode("utf-8", "replace").lower()
        else:
            raise SYNTAX_ERROR
        i += 2
    nxt, found = sm.scan(cursor, count)
    out = []
    for key in found:
        value = sm.live(key, now_ms)
        if value is None:
            continue
        if pred is not None and not pred(key):
            continue
        if want_type is not None and type_name(value) != want_type:
            continue
        out.append(key)
    return [b"%d" % nxt, out]
