"""Hashes: ``data[key]`` is a ``dict`` field -> bytes, never empty (deleting
the last field deletes the key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from replikv.core.replies import WRONGTYPE, RespError, wrong_arity
from replikv.kv.args import I64_MAX, I64_MIN, OVERFLOW, parse_int
from replikv.kv.commands import command
from replikv.kv.values import ValueType, unordered_digest, value_type

if TYPE_CHECKING:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine

Reply = Any
HASH_NOT_INTEGER = RespError("ERR hash value is not an integer")


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
