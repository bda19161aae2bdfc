"""Lists: ``data[key]`` is a ``collections.deque`` of bytes, never empty
(popping the last element deletes the key).

Behaviour and error texts are Redis 7.0's (``t_list.c``): arguments are
parsed, then the key's type checked, before anything changes; an option
error wins over a missing key where Redis checks it first (LINSERT, LPOS,
LMOVE), a missing key wins where Redis looks the key up first (LINDEX,
LSET).

Every list command is deterministic as sent. LMPOP's keys are movable
(``numkeys``): its key triple is ``0, 0, 0`` as in Redis and
``keys_after_numkeys`` names them, so expired ones are handled as for any
other command (``DEL`` logged by the leader-follower leader, deleted at the
entry's time by raft's ``apply``).
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any

from replikv.core.replies import NULL_ARRAY, OK, SYNTAX_ERROR, WRONGTYPE, RespError, wrong_arity
from replikv.kv.args import (
    I64_MIN,
    NOT_POSITIVE,
    NUMKEYS_NOT_POSITIVE,
    parse_int,
    parse_int_min,
    parse_timeout_ms,
)
from replikv.kv.commands import command, keys_after_numkeys
from replikv.kv.values import ValueType, value_type

if TYPE_CHECKING:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine

Reply = Any
NO_SUCH_KEY = RespError("ERR no such key")
INDEX_OUT_OF_RANGE = RespError("ERR index out of range")
RANK_ZERO = RespError(
    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
    "or use negative to start from the end of the list"
)
COUNT_NEGATIVE = RespError("ERR COUNT can't be negative")
MAXLEN_NEGATIVE = RespError("ERR MAXLEN can't be negative")
COUNT_NOT_POSITIVE = RespError("ERR count should be greater than 0")


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
        count = parse_int_min(argv[2], 0, NOT_POSITIVE)
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


# --- by index -----------------------------------------------------------------------------


def _index(lst: deque[bytes], index: int) -> int | None:
    """``index`` (negative counts from the tail) as a position in ``lst``, None if outside."""
    if index < 0:
        index += len(lst)
    return index if 0 <= index < len(lst) else None


def _list_or_none(sm: StateMachine, key: bytes) -> deque[bytes] | None:
    """Write side: the list at ``key``, None if missing, WRONGTYPE for another type."""
    lst = sm.data.get(key)
    if lst is not None and type(lst) is not deque:
        raise WRONGTYPE
    return lst


@command("lindex", 3, "readonly")
def lindex(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    lst = sm.live_as(argv[1], now_ms, deque)
    if lst is None:
        return None
    pos = _index(lst, parse_int(argv[2]))
    return None if pos is None else lst[pos]


@command("lset", 4, "write denyoom")
def lset(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    lst = _list_or_none(sm, argv[1])
    if lst is None:
        raise NO_SUCH_KEY
    pos = _index(lst, parse_int(argv[2]))
    if pos is None:
        raise INDEX_OUT_OF_RANGE
    lst[pos] = argv[3]
    sm.dirty += 1
    return OK


@command("linsert", 5, "write denyoom")
def linsert(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    where = argv[2].upper()
    if where not in (b"BEFORE", b"AFTER"):
        raise SYNTAX_ERROR
    lst = _list_or_none(sm, argv[1])
    if lst is None:
        return 0
    try:
        pos = lst.index(argv[3])
    except ValueError:
        return -1
    lst.insert(pos if where == b"BEFORE" else pos + 1, argv[4])
    sm.dirty += 1
    return len(lst)


@command("lrem", 4, "write")
def lrem(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """Remove up to ``count`` elements equal to ``element``: from the head if
    ``count`` > 0, from the tail if < 0, all of them if 0."""
    count = parse_int(argv[2])
    key, element = argv[1], argv[3]
    lst = _list_or_none(sm, key)
    if lst is None:
        return 0
    limit = abs(count) if count else len(lst)
    kept: list[bytes] = []
    removed = 0
    for item in (reversed(lst) if count < 0 else lst):
        if removed < limit and item == element:
            removed += 1
        else:
            kept.append(item)
    if removed:
        lst.clear()
        lst.extend(reversed(kept) if count < 0 else kept)
        sm.shrunk(key, lst)
    return removed


@command("ltrim", 4, "write")
def ltrim(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    start = parse_int(argv[2])
    stop = parse_int(argv[3])
    key = argv[1]
    lst = _list_or_none(sm, key)
    if lst is None:
        return OK
    n = len(lst)
    start = max(start + n if start < 0 else start, 0)
    stop = stop + n if stop < 0 else min(stop, n - 1)
    if start > stop or start >= n:
        start, stop = n, n - 1  # keep nothing
    drop_head, drop_tail = start, n - 1 - stop
    if drop_head or drop_tail:
        for _ in range(drop_head):
            lst.popleft()
        for _ in range(drop_tail):
            lst.pop()
        sm.shrunk(key, lst)
    return OK


# --- LPOS -----------------------------------------------------------------------------


def _parse_lpos(argv: list[bytes]) -> tuple[int, int | None, int]:
    """LPOS's ``RANK``/``COUNT``/``MAXLEN`` options: ``(rank, count, maxlen)``."""
    rank, count, maxlen = 1, None, 0
    i = 3
    while i < len(argv):
        opt = argv[i].upper()
        if i + 1 >= len(argv):
            raise SYNTAX_ERROR
        if opt == b"RANK":
            rank = parse_int(argv[i + 1])
            if rank == 0:
                raise RANK_ZERO
        elif opt == b"COUNT":
            count = parse_int_min(argv[i + 1], 0, COUNT_NEGATIVE)
        elif opt == b"MAXLEN":
            maxlen = parse_int_min(argv[i + 1], 0, MAXLEN_NEGATIVE)
        else:
            raise SYNTAX_ERROR
        i += 2
    return rank, count, maxlen


@command("lpos", -3, "readonly")
def lpos(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    """LPOS key element [RANK r] [COUNT c] [MAXLEN m]: positions of matches,
    counted from the head; a negative RANK searches from the tail (Redis
    treats RANK -2**63 like -1, its negation overflowing)."""
    rank, count, maxlen = _parse_lpos(argv)
    lst = sm.live_as(argv[1], now_ms, deque)
    if lst is None:
        return None if count is None else []
    n = len(lst)
    from_tail = rank < 0
    skip = (1 if rank == I64_MIN else -rank) if from_tail else rank
    skip -= 1
    want = count if count else n  # COUNT 0: every match
    items = reversed(lst) if from_tail else iter(lst)
    found: list[int] = []
    for i, item in enumerate(islice(items, maxlen or None)):
        if item != argv[2]:
            continue
        if skip:
            skip -= 1
            continue
        found.append(n - 1 - i if from_tail else i)
        if len(found) >= want:
            break
    if count is None:
        return found[0] if found else None
    return found


# --- moving between lists ----------------------------------------------------------------


def _parse_side(arg: bytes) -> bool:
    """LEFT -> True, RIGHT -> False, anything else ``ERR syntax error``."""
    side = arg.upper()
    if side == b"LEFT":
        return True
    if side == b"RIGHT":
        return False
    raise SYNTAX_ERROR


def _move(sm: StateMachine, src: bytes, dst: bytes, from_left: bool, to_left: bool) -> Reply:
    """Pop one element of the list ``src`` and push it onto ``dst`` (None if
    ``src`` is missing; WRONGTYPE, before any change, if either is no list)."""
    source = _list_or_none(sm, src)
    if source is None:
        return None
    if src != dst:
        _list_or_none(sm, dst)
    value = source.popleft() if from_left else source.pop()
    target = source if src == dst else sm.container(dst, deque)
    if to_left:
        target.appendleft(value)
    else:
        target.append(value)
    if not source:
        sm.delete(src)
    sm.dirty += 1
    return value


@command("lmove", 5, "write denyoom", (1, 2, 1))
def lmove(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    from_left = _parse_side(argv[3])
    to_left = _parse_side(argv[4])
    return _move(sm, argv[1], argv[2], from_left, to_left)


@command("rpoplpush", 3, "write denyoom", (1, 2, 1))
def rpoplpush(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _move(sm, argv[1], argv[2], False, True)


def _push_existing(sm: StateMachine, argv: list[bytes], left: bool) -> Reply:
    if _list_or_none(sm, argv[1]) is None:
        return 0
    return _push(sm, argv, left)


@command("lpushx", -3, "write denyoom fast")
def lpushx(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _push_existing(sm, argv, True)


@command("rpushx", -3, "write denyoom fast")
def rpushx(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    return _push_existing(sm, argv, False)


# --- LMPOP -----------------------------------------------------------------------------


def _parse_lmpop(argv: list[bytes]) -> tuple[list[bytes], bool, int]:
    """LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]: ``(keys, left, count)``."""
    numkeys = parse_int_min(argv[1], 1, NUMKEYS_NOT_POSITIVE)
    side_at = 2 + numkeys
    if side_at >= len(argv):
        raise SYNTAX_ERROR
    left = _parse_side(argv[side_at])
    rest = argv[side_at + 1 :]
    count = 1
    if rest:
        if len(rest) != 2 or rest[0].upper() != b"COUNT":
            raise SYNTAX_ERROR
        count = parse_int_min(rest[1], 1, COUNT_NOT_POSITIVE)
    return argv[2:side_at], left, count


@command("lmpop", -4, "write movablekeys", (0, 0, 0), find_keys=keys_after_numkeys)
def lmpop(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """Pop from the first of the keys holding a list (WRONGTYPE if a key
    before it holds another type)."""
    keys, left, count = _parse_lmpop(argv)
    key = next((k for k in keys if _list_or_none(sm, k) is not None), None)
    if key is None:
        return NULL_ARRAY
    lst = sm.data[key]
    pop = lst.popleft if left else lst.pop
    out = [pop() for _ in range(min(count, len(lst)))]
    sm.shrunk(key, lst)
    return [key, out]


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


@command("blmove", 6, "write denyoom noscript blocking", (1, 2, 1))
def blmove(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """BLMOVE src dst LEFT|RIGHT LEFT|RIGHT timeout, one attempt: LMOVE, or a null bulk."""
    from_left, to_left = _parse_side(argv[3]), _parse_side(argv[4])
    parse_timeout_ms(argv[5])
    return _move(sm, argv[1], argv[2], from_left, to_left)


@command("brpoplpush", 4, "write denyoom noscript blocking", (1, 2, 1))
def brpoplpush(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    parse_timeout_ms(argv[3])
    return _move(sm, argv[1], argv[2], False, True)


def _blmpop_keys(argv: list[bytes]) -> list[bytes]:
    return keys_after_numkeys(argv, at=2)  # BLMPOP timeout numkeys key ...


@command("blmpop", -5, "write blocking movablekeys", (0, 0, 0), find_keys=_blmpop_keys)
def blmpop(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count], one attempt: LMPOP."""
    parse_timeout_ms(argv[1])
    return lmpop(sm, argv[1:], ctx)
