"""Sets: ``data[key]`` is a ``set`` of bytes, never empty (removing the
last member deletes the key).

Behaviour and error texts are Redis 7.0's (``t_set.c``): arguments are
parsed before any key is looked up, and every key of SINTER/SUNION/SDIFF
(and their STORE forms, SINTERCARD) is type-checked before anything is
computed. A STORE form replaces its destination whatever its type (and
drops its TTL); an empty result deletes it.

Determinism. SRANDMEMBER is a read: its random reply is never replicated.
SPOP is a write with a pseudo-random outcome and follows ONE rule on every
path: the leader's rewrite (``rewrite_spop``, exact or not) logs ``SPOP key
<count or empty> <seed>`` with the write's time (``now_ms``) as the seed, and
``apply`` removes the members with the smallest ``blake2b(member,
key=seed)`` (ties, which need a hash collision, by member bytes). So every
replica applying the entry to the same set removes the same members,
whatever its set iteration order (which differs between processes) or
Python version, and the outcome depends on nothing but the set and the
entry: the same SPOP at the same millisecond on the same set removes the
same members on a leader-follower leader and on a raft cluster (a
draw from an RNG would not). This costs O(n) hashing per SPOP (Redis:
O(count)); the log entry stays O(1) instead of listing the removed members
as Redis's SREM does. A client cannot send the 4-argument form (the rewrite
refuses it as Redis does: ``ERR syntax error``); a 2- or 3-argument SPOP
found in a log (no leader writes one) uses seed 0.

SSCAN's cursors are ``kv/scan_index.py``'s (``scan_collection``).
"""

from __future__ import annotations

import heapq
from hashlib import blake2b
from typing import TYPE_CHECKING, Any

from replikv.core.replies import SYNTAX_ERROR, WRONGTYPE, RespError
from replikv.kv.args import (
    NOT_POSITIVE,
    NUMKEYS_NOT_POSITIVE,
    parse_cursor,
    parse_int,
    parse_int_min,
    parse_random_count,
    parse_scan_options,
    random_picks,
)
from replikv.kv.commands import command, keys_after_numkeys
from replikv.kv.scan_index import scan_collection
from replikv.kv.values import ValueType, unordered_digest, value_type

if TYPE_CHECKING:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine

Reply = Any
TOO_MANY_KEYS = RespError("ERR Number of keys can't be greater than number of args")
LIMIT_NEGATIVE = RespError("ERR LIMIT can't be negative")
_SEED_MASK = (1 << 63) - 1  # a seed is a non-negative 64-bit signed integer


def _digest(h: Any, value: set[bytes]) -> None:
    h.update(b"S%d:" % len(value))
    h.update(unordered_digest(value))


value_type(ValueType(set, "set", 2, dump=list, load=set, digest=_digest))


@command("sadd", -3, "write denyoom fast")
def sadd(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    members = sm.container(argv[1], set)
    before = len(members)
    members.update(argv[2:])
    added = len(members) - before
    if added:
        sm.dirty += 1
    return added


@command("srem", -3, "write fast")
def srem(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    key = argv[1]
    members = sm.data.get(key)
    if members is None:
        return 0
    if type(members) is not set:
        raise WRONGTYPE
    before = len(members)
    members.difference_update(argv[2:])
    removed = before - len(members)
    if removed:
        sm.shrunk(key, members)
    return removed


@command("smembers", 2, "readonly")
def smembers(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    members = sm.live_as(argv[1], now_ms, set)
    return set() if members is None else set(members)


@command("sismember", 3, "readonly fast")
def sismember(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    members = sm.live_as(argv[1], now_ms, set)
    return 1 if members is not None and argv[2] in members else 0


@command("scard", 2, "readonly fast")
def scard(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    members = sm.live_as(argv[1], now_ms, set)
    return 0 if members is None else len(members)


def _set_or_none(sm: StateMachine, key: bytes) -> set[bytes] | None:
    """Write side: the set at ``key``, None if missing, WRONGTYPE for another type."""
    members = sm.data.get(key)
    if members is not None and type(members) is not set:
        raise WRONGTYPE
    return members


@command("smismember", -3, "readonly fast")
def smismember(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    members = sm.live_as(argv[1], now_ms, set) or ()
    return [1 if m in members else 0 for m in argv[2:]]


@command("smove", 4, "write fast", (1, 2, 1))
def smove(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    src, dst, member = argv[1], argv[2], argv[3]
    source = _set_or_none(sm, src)
    if source is None:
        return 0
    _set_or_none(sm, dst)
    if member not in source:
        return 0
    if src == dst:
        return 1
    source.discard(member)
    sm.shrunk(src, source)
    sm.container(dst, set).add(member)
    return 1


# --- SINTER / SUNION / SDIFF and their STORE forms ----------------------------------------


def _sets(sm: StateMachine, keys: list[bytes], now_ms: int | None) -> list[set[bytes]]:
    """The sets at ``keys``, a missing key as an empty set; every key is
    type-checked first. ``now_ms`` None: the write side (``data`` as it is)."""
    if now_ms is None:
        found = [_set_or_none(sm, k) for k in keys]
    else:
        found = [sm.live_as(k, now_ms, set) for k in keys]
    return [set() if s is None else s for s in found]


# Each returns a new set (never one of its arguments): a STORE form keeps it.


def _inter(sets: list[set[bytes]]) -> set[bytes]:
    if not all(sets):
        return set()
    smallest, *rest = sorted(sets, key=len)
    return smallest.intersection(*rest)


def _union(sets: list[set[bytes]]) -> set[bytes]:
    return set().union(*sets)


def _diff(sets: list[set[bytes]]) -> set[bytes]:
    return sets[0].difference(*sets[1:])


def _store(sm: StateMachine, dst: bytes, result: set[bytes]) -> Reply:
    """Replace ``dst`` (any type, its TTL dropped) with ``result``; delete it if empty."""
    sm.delete(dst)
    if result:
        sm.new_key(dst)
        sm.data[dst] = result
        sm.dirty += 1
    return len(result)


@command("sinter", -2, "readonly", (1, -1, 1))
def sinter(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _inter(_sets(sm, argv[1:], now_ms))


@command("sunion", -2, "readonly", (1, -1, 1))
def sunion(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _union(_sets(sm, argv[1:], now_ms))


@command("sdiff", -2, "readonly", (1, -1, 1))
def sdiff(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _diff(_sets(sm, argv[1:], now_ms))


@command("sinterstore", -3, "write denyoom", (1, -1, 1))
def sinterstore(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _store(sm, argv[1], _inter(_sets(sm, argv[2:], None)))


@command("sunionstore", -3, "write denyoom", (1, -1, 1))
def sunionstore(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _store(sm, argv[1], _union(_sets(sm, argv[2:], None)))


@command("sdiffstore", -3, "write denyoom", (1, -1, 1))
def sdiffstore(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _store(sm, argv[1], _diff(_sets(sm, argv[2:], None)))


def _parse_sintercard(argv: list[bytes]) -> tuple[list[bytes], int]:
    """SINTERCARD numkeys key [key ...] [LIMIT limit]: ``(keys, limit)``, 0 = no limit."""
    numkeys = parse_int_min(argv[1], 1, NUMKEYS_NOT_POSITIVE)
    if numkeys > len(argv) - 2:
        raise TOO_MANY_KEYS
    limit = 0
    i = 2 + numkeys
    while i < len(argv):
        if argv[i].upper() != b"LIMIT" or i + 1 >= len(argv):
            raise SYNTAX_ERROR
        limit = parse_int_min(argv[i + 1], 0, LIMIT_NEGATIVE)
        i += 2
    return argv[2 : 2 + numkeys], limit


@command("sintercard", -3, "readonly movablekeys", (0, 0, 0), find_keys=keys_after_numkeys)
def sintercard(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    keys, limit = _parse_sintercard(argv)
    count = len(_inter(_sets(sm, keys, now_ms)))
    return min(count, limit) if limit else count


# --- random members --------------------------------------------------------------------


@command("srandmember", -2, "readonly")
def srandmember(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """SRANDMEMBER key [count]: random members (``random_picks``); the count is
    checked before the key, as Redis does."""
    if len(argv) > 3:
        raise SYNTAX_ERROR
    if len(argv) == 2:
        members = sm.live_as(argv[1], now_ms, set)
        return None if members is None else random_picks(list(members), 1)[0]
    count = parse_random_count(argv[2])
    members = sm.live_as(argv[1], now_ms, set)
    return [] if members is None else random_picks(list(members), count)


def rewrite_spop(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    """SPOP key [count] -> ``SPOP key <count or empty> <seed>`` (see the module docstring)."""
    if len(argv) > 3:
        raise SYNTAX_ERROR
    count = b""
    if len(argv) == 3:
        parse_int_min(argv[2], 0, NOT_POSITIVE)
        count = argv[2]
    return [b"SPOP", argv[1], count, b"%d" % (now_ms & _SEED_MASK)]


def _chosen(members: set[bytes], count: int, seed: int) -> list[bytes]:
    """The ``count`` members SPOP removes with ``seed``: the smallest keyed hashes."""
    if count >= len(members):
        return list(members)
    key = seed.to_bytes(8, "little")

    def rank(member: bytes) -> tuple[bytes, bytes]:
        return blake2b(member, digest_size=8, key=key).digest(), member

    if count == 1:
        return [min(members, key=rank)]
    return heapq.nsmallest(count, members, key=rank)


@command("spop", -2, "write fast", rewrite=rewrite_spop)
def spop(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    key = argv[1]
    count_arg = argv[2] if len(argv) > 2 else b""
    seed = parse_int(argv[3]) & _SEED_MASK if len(argv) > 3 else 0
    count = parse_int_min(count_arg, 0, NOT_POSITIVE) if count_arg else None
    members = _set_or_none(sm, key)
    if members is None or count == 0:
        return None if count is None else set()
    removed = _chosen(members, 1 if count is None else count, seed)
    members.difference_update(removed)
    sm.shrunk(key, members)
    return removed[0] if count is None else set(removed)


@command("sscan", -3, "readonly")
def sscan(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """SSCAN key cursor [MATCH pattern] [COUNT n]; the cursor is checked first,
    a missing key answers an empty scan before the options are (as Redis)."""
    cursor = parse_cursor(argv[2])
    members = sm.live_as(argv[1], now_ms, set)
    if members is None:
        return [b"0", []]
    pred, count, _ = parse_scan_options(argv, 3)
    nxt, found = scan_collection(members, cursor, count)
    return [b"%d" % nxt, found if pred is None else [m for m in found if pred(m)]]
