"""Generic key commands: DEL, UNLINK, EXPIRE family, TTL family, TYPE, EXISTS, TOUCH,
KEYS, SCAN, RANDOMKEY, DBSIZE, FLUSHALL, FLUSHDB, RENAME, RENAMENX, COPY, OBJECT.

They work on a key whatever its type. The EXPIRE family's NX/XX/GT/LT
conditions and error texts are Redis 7's; a relative EXPIRE/PEXPIRE is
rewritten by the leader to ``PEXPIREAT <absolute ms>`` (``rewrite_expire``),
and one already due on a live key to ``DEL`` (as Redis replicates it).
SCAN's cursor scheme is ``kv/scan_index.py``'s.

RENAME/RENAMENX move the value and its TTL (Redis 7.0's ``renameGenericCommand``:
a missing source is ``ERR no such key`` even when both names are equal).
COPY copies value and TTL; replikv has only db 0, so ``DB n`` for any other
``n`` is Redis's "ERR DB index is out of range". FLUSHDB is FLUSHALL.
RANDOMKEY is a read whose reply is random (nothing replicated depends on it).

OBJECT answers from the value alone, since replikv keeps no encoding, LRU or
LFU data (a replica's bookkeeping would not be replicated anyway):
ENCODING is what Redis 7.0 picks for that value with its default thresholds
(strings: ``int`` for a canonical 64-bit integer of at most 20 bytes,
``embstr`` up to 44 bytes, else ``raw``; lists ``quicklist``; sets
``intset`` when every member is an integer and there are at most 512, else
``hashtable``; hashes ``listpack`` up to 512 fields with fields and values
of at most 64 bytes, else ``hashtable``; sorted sets ``listpack`` up to 128
members, else ``skiplist``: the defaults compiled into redis-server, which
the redis.conf of some packages lowers). Redis's encoding can also depend
on the value's history (APPEND/SETRANGE/SETBIT/INCRBYFLOAT results are
``raw``/``embstr`` there, a set or hash never converts back to the compact
encoding): replikv answers for the value as if it had been written at once.
REFCOUNT is Redis's shared-integer answer (``2147483647`` for an ``int``
string in [0, 10000), else 1). IDLETIME is always 0 (no access times are
kept) and FREQ is Redis's error for a server without an LFU policy.
"""

from __future__ import annotations

import copy
import random
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from replikv.core.replies import OK, SYNTAX_ERROR, RespError, wrong_arity
from replikv.kv.args import (
    I64_MAX,
    NEVER,
    SEC_MAX,
    SEC_MIN,
    expire_time_error,
    needs_clock,
    parse_cursor,
    parse_int,
    parse_scan_options,
)
from replikv.kv.commands import RewriteFn, command
from replikv.kv.glob import compile_glob, matches_all
from replikv.kv.scan_index import SPACE
from replikv.kv.values import VALUE_TYPES, type_name

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


@command("flushdb", -1, "write", _KEYLESS)
@command("flushall", -1, "write", _KEYLESS)
def flushall(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """FLUSHALL/FLUSHDB [ASYNC|SYNC] (one database: the same command)."""
    if len(argv) > 2 or (len(argv) == 2 and argv[1].upper() not in (b"ASYNC", b"SYNC")):
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
    pred, count, want_type = parse_scan_options(argv, 2, with_type=True)
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


@command("touch", -2, "readonly fast", (1, -1, 1))
def touch(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """The number of existing keys (replikv keeps no access times to update)."""
    return sum(1 for key in argv[1:] if sm.live(key, now_ms) is not None)


@command("randomkey", 1, "readonly", _KEYLESS)
def randomkey(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """A random live key, nil when there is none.

    As Redis, a random bucket first: the SCAN index's bucket at a random
    position (``kv/scan_index.py``), then a random key of it; after a few
    misses (empty buckets, expired keys) a draw among all live keys.
    """
    if not sm.data:
        return None
    for _ in range(8):
        _, found = sm.scan(random.randrange(SPACE), 1)
        if found:
            key = random.choice(found)
            if sm.live(key, now_ms) is not None:
                return key
    live = [k for k in sm.data if sm.live(k, now_ms) is not None]
    return random.choice(live) if live else None


# --- RENAME, COPY -------------------------------------------------------------------------

NO_SUCH_KEY = RespError("ERR no such key")
SAME_OBJECT = RespError("ERR source and destination objects are the same")
DB_OUT_OF_RANGE = RespError("ERR DB index is out of range")
NOT_INT32 = RespError("ERR value is out of range, value must between -2147483648 and 2147483647")
_SIMPLE_CONTAINERS = (deque, set, dict)  # hold only bytes: a shallow copy is a copy


def _move(sm: StateMachine, dst: bytes, value: Any, when: int | None) -> None:
    """Store ``value`` at ``dst`` (replacing what it held) with the TTL ``when``."""
    sm.delete(dst)
    sm.new_key(dst)
    sm.data[dst] = value
    if when is not None:
        sm.set_expire(dst, when)
    sm.dirty += 1


def _rename(sm: StateMachine, argv: list[bytes], nx: bool) -> bool:
    """True when RENAME(NX) moved the key; False when RENAMENX found ``dst`` taken
    or both names are the same key."""
    src, dst = argv[1], argv[2]
    value = sm.data.get(src)
    if value is None:
        raise NO_SUCH_KEY
    if src == dst:
        return False
    if nx and dst in sm.data:
        return False
    when = sm.expires.get(src)
    sm.delete(src)
    _move(sm, dst, value, when)
    return True


@command("rename", 3, "write", (1, 2, 1))
def rename(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    _rename(sm, argv, False)
    return OK


@command("renamenx", 3, "write fast", (1, 2, 1))
def renamenx(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return 1 if _rename(sm, argv, True) else 0


def _copy_value(value: Any) -> Any:
    if type(value) is bytes:
        return value
    if type(value) in _SIMPLE_CONTAINERS:
        return type(value)(value)
    return copy.deepcopy(value)  # a family with nested structure (sorted sets, streams)


def _parse_copy(argv: list[bytes]) -> bool:
    """COPY's options in Redis's order of checks; True for REPLACE."""
    replace = False
    i = 3
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"REPLACE":
            replace = True
        elif opt == b"DB" and i + 1 < len(argv):
            i += 1
            db = parse_int(argv[i])
            if not -(1 << 31) <= db < 1 << 31:
                raise NOT_INT32
            if db != 0:
                raise DB_OUT_OF_RANGE
        else:
            raise SYNTAX_ERROR
        i += 1
    return replace


@command("copy", -3, "write denyoom", (1, 2, 1))
def copy_(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """COPY source destination [DB 0] [REPLACE]: 1 if copied (value and TTL), else 0."""
    replace = _parse_copy(argv)
    src, dst = argv[1], argv[2]
    if src == dst:
        raise SAME_OBJECT
    value = sm.data.get(src)
    if value is None or (dst in sm.data and not replace):
        return 0
    _move(sm, dst, _copy_value(value), sm.expires.get(src))
    return 1


# --- OBJECT --------------------------------------------------------------------------------

_OBJECT_HELP = [
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
]
NO_LFU = RespError(
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note"
    " that when switching between policies at runtime LRU and LFU data will take some time"
    " to adjust."
)
_SHARED_REFCOUNT = 2147483647  # Redis's OBJ_SHARED_REFCOUNT
_SHARED_INTEGERS = 10000  # Redis's OBJ_SHARED_INTEGERS
# Redis 7.0's compiled-in defaults (a redis.conf may lower the hash one to 128)
_EMBSTR_MAX = 44
_INTSET_MAX = 512  # set-max-intset-entries
_HASH_LISTPACK_ENTRIES = 512  # hash-max-listpack-entries
_ZSET_LISTPACK_ENTRIES = 128  # zset-max-listpack-entries
_LISTPACK_VALUE = 64  # hash-max-listpack-value, zset-max-listpack-value


def _as_int(value: bytes) -> int | None:
    """The integer a string holds in Redis's ``int`` encoding, else None."""
    if len(value) > 20:
        return None
    try:
        return parse_int(value)
    except RespError:
        return None


def _string_encoding(value: bytes) -> str:
    if _as_int(value) is not None:
        return "int"
    return "embstr" if len(value) <= _EMBSTR_MAX else "raw"


def _set_encoding(value: set[bytes]) -> str:
    if len(value) <= _INTSET_MAX and all(_as_int(m) is not None for m in value):
        return "intset"
    return "hashtable"


def _hash_encoding(value: dict[bytes, bytes]) -> str:
    small = len(value) <= _HASH_LISTPACK_ENTRIES and all(
        len(f) <= _LISTPACK_VALUE and len(v) <= _LISTPACK_VALUE for f, v in value.items()
    )
    return "listpack" if small else "hashtable"


def _zset_encoding(value: Any) -> str:
    """By size only: replikv's sorted-set family owns its layout (members' lengths
    are not looked at here; a layout without ``len`` answers ``skiplist``)."""
    try:
        small = len(value) <= _ZSET_LISTPACK_ENTRIES
    except TypeError:
        small = False
    return "listpack" if small else "skiplist"


_ENCODINGS: dict[str, Callable[[Any], str]] = {
    "string": _string_encoding,
    "list": lambda value: "quicklist",
    "set": _set_encoding,
    "hash": _hash_encoding,
    "zset": _zset_encoding,
    "stream": lambda value: "stream",
}


def _object_encoding(value: Any) -> str:
    return _ENCODINGS[VALUE_TYPES[type(value)].name](value)


def _object_refcount(value: Any) -> int:
    if type(value) is bytes:
        number = _as_int(value)
        if number is not None and 0 <= number < _SHARED_INTEGERS:
            return _SHARED_REFCOUNT
    return 1


_OBJECT_KEY_SUBCOMMANDS: dict[bytes, Callable[[Any], Reply]] = {
    b"ENCODING": _object_encoding,
    b"REFCOUNT": _object_refcount,
    b"IDLETIME": lambda value: 0,
}


@command("object", -2, "readonly", (2, 2, 1))
def object_(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT key, OBJECT HELP (see the module docstring)."""
    sub = argv[1].upper()
    if sub == b"HELP":
        if len(argv) != 2:
            raise wrong_arity("object|help")
        return _OBJECT_HELP
    answer = _OBJECT_KEY_SUBCOMMANDS.get(sub)
    if answer is None and sub != b"FREQ":
        name = argv[1].decode("utf-8", "replace")
        raise RespError(f"ERR unknown subcommand '{name}'. Try OBJECT HELP.")
    if len(argv) != 3:
        raise wrong_arity(f"object|{sub.decode().lower()}")
    value = sm.live(argv[2], now_ms)
    if value is None:
        return None
    if answer is None:
        raise NO_LFU
    return answer(value)
