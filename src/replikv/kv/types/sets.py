"""Sets: ``data[key]`` is a ``set`` of bytes, never empty (removing the
last member deletes the key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from replikv.core.replies import WRONGTYPE
from replikv.kv.commands import command
from replikv.kv.values import ValueType, unordered_digest, value_type

if TYPE_CHECKING:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine

Reply = Any


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
