"""Lists: ``data[key]`` is a ``collections.deque`` of bytes, never empty
(popping the last element deletes the key)."""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any

from replikv.core.replies import NULL_ARRAY, WRONGTYPE, RespError, wrong_arity
from replikv.kv.args import parse_int, parse_timeout_ms
from replikv.kv.commands import command
from replikv.kv.values import ValueType, value_type

if TYPE_CHECKING:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine

Reply = Any
NOT_POSITIVE = RespError("ERR value is out of range, must be positive")


def _digest(h: Any, value: deque[bytes]) -> None:
    h.update(b"l%d:" % len(value))
    for item in value:
        h.update(b"%d:" % len(item))
        h.update(item)


value_type(ValueType(deque, "list", 1, dump=list, load=deque, digest=_digest))


def _push(sm: StateMachine, argv: list[bytes], left: bool) -> Reply:
    lst = sm.container(argv[1], deque)
    if left:
        lst.extendleft(argv[2:])
    else:
        lst.extend(argv[2:])
    sm.dirty += 1
    return len(lst)


@command("lpush", -3, "write denyoom fast")
def lpush(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _push(sm, argv, True)


@command("rpush", -3, "write denyoom fast")
def rpush(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _push(sm, argv, False)


def _pop(sm: StateMachine, argv: list[bytes], left: bool) -> Reply:
    if len(argv) > 3:
        raise wrong_arity("lpop" if left else "rpop")
    count = None
    if len(argv) == 3:
        try:
            count = parse_int(argv[2])
        except RespError:
            raise NOT_POSITIVE from None
        if count < 0:
            raise NOT_POSITIVE
    key = argv[1]
    lst = sm.data.get(key)
    if lst is None:
        return None if count is None else NULL_ARRAY
    if type(lst) is not deque:
        raise WRONGTYPE
    pop = lst.popleft if left else lst.pop
    if count is None:
        out: Reply = pop()
    elif count == 0:
        return []
    else:
        out = [pop() for _ in range(min(count, len(lst)))]
    sm.shrunk(key, lst)
    return out


@command("lpop", -2, "write fast")
def lpop(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _pop(sm, argv, True)


@command("rpop", -2, "write fast")
def rpop(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _pop(sm, argv, False)


@command("lrange", 4, "readonly")
def lrange(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    start = parse_int(argv[2])
    stop = parse_int(argv[3])
    lst = sm.live_as(argv[1], now_ms, deque)
    if lst is None:
        return []
    n = len(lst)
    if start < 0:
        start = max(n + start, 0)
    if stop < 0:
        stop = n + stop
    if start > stop or start >= n:
        return []
    stop = min(stop, n - 1)
    if start == 0 and stop == n - 1:
        return list(lst)
    return list(islice(lst, start, stop + 1))


@command("llen", 2, "readonly fast")
def llen(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    lst = sm.live_as(argv[1], now_ms, deque)
    return 0 if lst is None else len(lst)


# --- blocking pops: what one attempt does (runtime/blocking.py waits and retries) --------------


def _bpop(sm: StateMachine, argv: list[bytes], left: bool) -> Reply:
    """BLPOP/BRPOP key [key ...] timeout, one attempt: pop from the first
    non-empty list, ``[key, value]``; the null array when all are empty (the
    runtime then blocks the client; inside MULTI that is the reply, as Redis)."""
    parse_timeout_ms(argv[-1])
    data = sm.data
    for key in argv[1:-1]:
        lst = data.get(key)
        if lst is None:
            continue
        if type(lst) is not deque:
            raise WRONGTYPE
        value = lst.popleft() if left else lst.pop()
        sm.shrunk(key, lst)
        return [key, value]
    return NULL_ARRAY


@command("blpop", -3, "write noscript blocking", (1, -2, 1))
def blpop(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _bpop(sm, argv, True)


@command("brpop", -3, "write noscript blocking", (1, -2, 1))
def brpop(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _bpop(sm, argv, False)
