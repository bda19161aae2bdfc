"""Multi-leader mode, origin side: a Redis write command -> CRDT mutations + reply.

``translate(store, argv, now_ms, rng)`` validates like Redis, computes Redis's
reply from the local visible state and returns the mutations of ONE op (see
``core/crdt/store.py`` for the mutation kinds). The caller stamps the op
(origin, seq, hlc, deps = the local version vector) and applies it locally
and everywhere. Wrong arity is checked before this module is called.

A key whose visible deadline has passed is treated as missing: the op first
deletes what it observed of it, so a write never resurrects expired content.
Relative TTLs become absolute deadlines from ``now_ms``.
"""

from __future__ import annotations

import random
from typing import Any

from replikv.core.crdt.store import (
    CrdtStore, Mut, Visible, as_int, ctr_totals, position_between, put_allowed,
)
from replikv.core.crdt.vv import parse_vv_text, vv_text
from replikv.core.replies import NOT_INTEGER, OK, SYNTAX_ERROR, WRONGTYPE, RespError
from replikv.kv.args import (
    I64_MAX, I64_MIN, NOT_POSITIVE, OVERFLOW, expire_time_error, parse_int, parse_int_min,
)

Reply = Any

__all__ = ["Refused", "refusal", "supported", "translate", "vget"]


class Refused(RespError):
    """A write this mode does not offer (the message names the reason)."""


_REASONS = {
    "zset": "sorted sets have no convergent type here",
    "stream": "streams have no convergent type here (ids are chosen by one leader)",
    "float": "float increments do not add up to the same value in every order",
    "bit": "bit and bitfield writes have no convergent type here",
    "hll": "HyperLogLogs have no convergent type here",
    "geo": "geo indexes are sorted sets, which have no convergent type here",
    "keyspace": "it moves or renames keys, which has no convergent form here",
    "script": "scripts need one leader to order what they read and write",
    "blocking": "blocking pops of sorted sets have no convergent type here",
    "set-store": "storing a computed set result is not convergent under concurrent writes",
    "other": "it has no convergent form in this mode",
    "cas": "compare-and-set needs one leader to order the writes it compares",
    "lock": "fencing needs the tokens one leader's log grants (locks are offered in raft mode)",
}
_FAMILY = {
    **{n: "zset" for n in ("zadd", "zincrby", "zrem", "zremrangebyscore", "zremrangebyrank",
                           "zremrangebylex", "zpopmin", "zpopmax", "zunionstore", "zinterstore",
                           "zdiffstore", "zrangestore", "zmpop")},
    **{n: "stream" for n in ("xadd", "xdel", "xtrim", "xgroup", "xreadgroup", "xack", "xclaim",
                             "xautoclaim", "xsetid")},
    **{n: "float" for n in ("incrbyfloat", "hincrbyfloat")},
    **{n: "bit" for n in ("setbit", "bitop", "bitfield")},
    **{n: "hll" for n in ("pfadd", "pfmerge")},
    **{n: "geo" for n in ("geoadd", "georadius", "georadiusbymember", "geosearchstore")},
    **{n: "keyspace" for n in ("rename", "renamenx", "move", "copy", "restore", "swapdb", "migrate")},
    **{n: "script" for n in ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall")},
    **{n: "blocking" for n in ("bzpopmin", "bzpopmax", "bzmpop")},
    "cas": "cas",
    **{n: "set-store" for n in ("sinterstore", "sunionstore", "sdiffstore", "sort")},
    **{n: "lock" for n in ("lock", "renew", "unlock", "lockexpire", "fenced")},
}


def supported(name: str) -> bool:
    """Whether the write ``name`` (any case) is offered in multi-leader mode."""
    return name.lower() in _HANDLERS


def refusal(name: str, mode: str = "multi-leader") -> str:
    """The error message refusing the write ``name`` in ``mode``."""
    low = name.lower()
    reason = _REASONS[_FAMILY.get(low, "other")]
    if low in ("incrbyfloat", "hincrbyfloat"):
        reason = f"{low.upper()}: {reason}"
    return f"ERR '{low}' is not offered in {mode} mode: {reason}"


def translate(
    store: CrdtStore, argv: list[bytes], now_ms: int, rng: random.Random, mode: str = "multi-leader"
) -> tuple[list[Mut], Reply]:
    """The mutations of one op and the reply; ``([], error)`` when refused
    (the refusal names ``mode``: the leaderless mode translates writes too).
    Overwrites may be ``put`` mutations: the multi-leader peers refuse a frame
    that may carry one by its tag; a leaderless coordinator expands them for a
    replica that does not know them (``core/dynamo/replica.py``)."""
    short = _SHORT.get(argv[0])
    if short is not None:
        done = short(store, argv)
        if done is not None:
            return done
    name = argv[0].decode("utf-8", "replace").lower()
    fn = _HANDLERS.get(name)
    if fn is None:
        return [], Refused(refusal(name, mode))
    w = _Writer(store, now_ms, rng)
    try:
        reply = fn(w, argv)
    except RespError as err:
        return [], err
    return w.muts, reply


def vget(store: CrdtStore, key: bytes) -> Reply:
    """``VGET key``: ``[context, [values...]]`` (every sibling with conflicts=siblings)."""
    vis = store.visible(key)
    if vis is not None and vis.type != "string":
        return WRONGTYPE
    return [vv_text(store.context(key)), [v for _, _, v in store.siblings(key)]]


# ------------------------------------------------------------------ writer


class _Writer:
    """Reads the local state as this op has changed it so far (the op's own
    mutations are applied to a scratch copy lazily: simple commands only read
    before they write, multi-key ones read distinct keys)."""

    def __init__(self, store: CrdtStore, now_ms: int, rng: random.Random) -> None:
        self.store = store
        self.now = now_ms
        self.rng = rng
        self.muts: list[Mut] = []
        self.cleared: set[bytes] = set()
        # the store is not changed while an op is translated: visible states are cached
        self._vis: dict[bytes, Visible | None] = {}

    def get(self, key: bytes) -> Visible | None:
        if key in self.cleared:
            return None
        try:
            vis = self._vis[key]
        except KeyError:
            vis = self._vis[key] = self.store.visible(key)
        if vis is None:
            return None
        if vis.deadline_ms is not None and vis.deadline_ms <= self.now:
            return None
        return vis

    def live(self, key: bytes, kind: str) -> bool:
        """``typed(key, kind) is not None`` without building the value (raises
        WRONGTYPE as it does); the caller reads the parts with ``store.state``."""
        if key in self.cleared:
            return False
        if key in self._vis:
            vis = self._vis[key]
            head = None if vis is None else (vis.type, vis.deadline_ms)
        else:
            head = self.store.visible_head(key)
        if head is None or head[1] is not None and head[1] <= self.now:
            return False
        if head[0] != kind:
            raise WRONGTYPE
        return True

    def typed(self, key: bytes, kind: str) -> Any:
        vis = self.get(key)
        if vis is None:
            return None
        if vis.type != kind:
            raise WRONGTYPE
        return vis.value

    def totals(self, key: bytes) -> tuple[dict[str, list[int]], dict[bytes, dict[str, list[int]]]]:
        ks = self.store.state(key)
        if ks is None:
            return {}, {}
        return ctr_totals(ks.ctr), {f: ctr_totals(c.ctr) for f, c in (ks.hash or {}).items()}

    def field_totals(self, key: bytes, fields: Any) -> dict[bytes, dict[str, list[int]]]:
        """``totals(key)[1]`` restricted to ``fields`` (the ones an op writes)."""
        ks = self.store.state(key)
        if ks is None or not ks.hash:
            return {}
        out = {}
        for f in fields:
            c = ks.hash.get(f)
            if c is not None:
                out[f] = ctr_totals(c.ctr) if c.ctr else {}
        return out

    def delete(self, key: bytes) -> None:
        """Remove everything observed of ``key`` (visible or hidden)."""
        if self.store.has_state(key) and key not in self.cleared:
            t, ht = self.totals(key)
            self.muts.append(("del", key, t, ht))
            self.cleared.add(key)

    def fresh(self, key: bytes) -> None:
        """Before writing a container: an expired key is deleted first."""
        if self.get(key) is None and key not in self.cleared:
            self.delete(key)

    def set_string(self, key: bytes, value: bytes, deadline: int | None, keepttl: bool) -> None:
        """An overwrite: everything observed of the key goes, then the value
        (and the TTL: ``deadline``, or the current one with KEEPTTL). One ``put``
        mutation when the key has no counter history
        (``put_allowed``) and no earlier mutation of this op; else ``del`` (if
        anything is stored), ``set`` and ``ttl``."""
        if keepttl:
            vis = self.get(key)
            if vis is not None:
                deadline = vis.deadline_ms
        if key not in self.cleared and put_allowed(self.store.state(key)) \
                and not any(m[1] == key for m in self.muts):
            self.muts.append(("put", key, value, deadline))
            self.cleared.add(key)
            return
        self.delete(key)
        self.cleared.discard(key)
        self.muts.append(("set", key, value, None, None))
        self.muts.append(("ttl", key, deadline))
        self.cleared.add(key)


# ------------------------------------------------------------------ strings


def _deadline(name: str, opt: bytes, arg: bytes, now: int) -> int:
    n = parse_int(arg)
    if opt in (b"EX", b"PX") and n <= 0 or opt in (b"EXAT", b"PXAT") and n <= 0:
        raise expire_time_error(name)
    if opt == b"EX":
        return now + n * 1000
    if opt == b"PX":
        return now + n
    if opt == b"EXAT":
        return n * 1000
    return n


def _set(w: _Writer, argv: list[bytes]) -> Reply:
    key, value = argv[1], argv[2]
    nx = xx = get = keepttl = False
    deadline: int | None = None
    i = 3
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"NX" and not xx:
            nx = True
        elif opt == b"XX" and not nx:
            xx = True
        elif opt == b"GET":
            get = True
        elif opt == b"KEEPTTL" and deadline is None:
            keepttl = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and not keepttl and deadline is None:
            if i + 1 >= len(argv):
                raise SYNTAX_ERROR
            deadline = _deadline("set", opt, argv[i + 1], w.now)
            i += 1
        else:
            raise SYNTAX_ERROR
        i += 1
    vis = w.get(key) if get or nx or xx else None  # a plain SET need not read the key
    old = None
    if get:
        if vis is not None and vis.type != "string":
            raise WRONGTYPE
        old = vis.value if vis is not None else None
    if (nx and vis is not None) or (xx and vis is None):
        return old if get else None
    w.set_string(key, value, deadline, keepttl)
    return old if get else OK


def _setnx(w: _Writer, argv: list[bytes]) -> Reply:
    if w.get(argv[1]) is not None:
        return 0
    w.set_string(argv[1], argv[2], None, False)
    return 1


def _setex(w: _Writer, argv: list[bytes]) -> Reply:
    unit = b"EX" if argv[0].lower() == b"setex" else b"PX"
    deadline = _deadline(argv[0].decode().lower(), unit, argv[2], w.now)
    w.set_string(argv[1], argv[3], deadline, False)
    return OK


def _getset(w: _Writer, argv: list[bytes]) -> Reply:
    old = w.typed(argv[1], "string")
    w.set_string(argv[1], argv[2], None, False)
    return old


def _getdel(w: _Writer, argv: list[bytes]) -> Reply:
    old = w.typed(argv[1], "string")
    if old is not None:
        w.delete(argv[1])
    return old


def _getex(w: _Writer, argv: list[bytes]) -> Reply:
    key = argv[1]
    deadline: int | None = None
    persist = False
    if len(argv) == 3 and argv[2].upper() == b"PERSIST":
        persist = True
    elif len(argv) == 4 and argv[2].upper() in (b"EX", b"PX", b"EXAT", b"PXAT"):
        deadline = _deadline("getex", argv[2].upper(), argv[3], w.now)
    elif len(argv) != 2:
        raise SYNTAX_ERROR
    old = w.typed(key, "string")
    if old is not None and (persist or deadline is not None):
        w.muts.append(("ttl", key, deadline))
    return old


def _mset(w: _Writer, argv: list[bytes]) -> Reply:
    if len(argv) % 2 != 1:
        raise RespError("ERR wrong number of arguments for 'mset' command")
    last = {argv[i]: argv[i + 1] for i in range(1, len(argv), 2)}
    for key, value in last.items():
        w.set_string(key, value, None, False)
    return OK


def _msetnx(w: _Writer, argv: list[bytes]) -> Reply:
    if len(argv) % 2 != 1:
        raise RespError("ERR wrong number of arguments for 'msetnx' command")
    keys = argv[1::2]
    if any(w.get(k) is not None for k in keys):
        return 0
    _mset(w, argv)
    return 1


def _append(w: _Writer, argv: list[bytes]) -> Reply:
    old = w.typed(argv[1], "string") or b""
    new = old + argv[2]
    w.set_string(argv[1], new, None, True)
    return len(new)


def _setrange(w: _Writer, argv: list[bytes]) -> Reply:
    offset = parse_int(argv[2])
    if offset < 0:
        raise RespError("ERR offset is out of range")
    old = w.typed(argv[1], "string")
    if old is None and not argv[3]:
        return 0
    cur = old or b""
    if not argv[3]:
        return len(cur)
    cur = cur.ljust(offset, b"\0")
    new = cur[:offset] + argv[3] + cur[offset + len(argv[3]):]
    w.set_string(argv[1], new, None, True)
    return len(new)


def _incr_common(w: _Writer, key: bytes, delta: int) -> Reply:
    old = w.typed(key, "string")
    base = 0 if old is None else as_int(old)
    if base is None:
        raise NOT_INTEGER
    new = base + delta
    if not I64_MIN <= new <= I64_MAX:
        raise OVERFLOW
    if old is None:
        w.fresh(key)
    w.muts.append(("incr", key, delta))
    return new


def _incr(w: _Writer, argv: list[bytes]) -> Reply:
    name = argv[0].lower()
    if name in (b"incr", b"decr"):
        delta = 1
    else:
        delta = parse_int(argv[2])
    if name.startswith(b"decr"):
        if delta == I64_MIN:
            raise RespError("ERR decrement would overflow")
        delta = -delta
    return _incr_common(w, argv[1], delta)


def _short_set(store: CrdtStore, argv: list[bytes]) -> tuple[list[Mut], Reply] | None:
    """``SET key value`` (no option) as ``_set`` translates it with a fresh writer, when that
    is the one ``put`` (``_Writer.set_string``'s first case: nothing cleared, no earlier
    mutation, ``put_allowed``); None (the general path) otherwise."""
    if len(argv) != 3 or not put_allowed(store.state(argv[1])):
        return None
    return [("put", argv[1], argv[2], None)], OK


def _short_incr(store: CrdtStore, argv: list[bytes]) -> tuple[list[Mut], Reply] | None:
    """``INCR key`` as ``_incr_common`` translates it, when the key is a live counter alone
    (``CrdtStore.counter_alone``: no deadline, so not expired) whose value + 1 is in range:
    it reads the number without the string ``visible`` makes of it and ``as_int`` parses
    back (equal: ``str`` of an int in range is what ``as_int`` accepts). None (the general
    path, which also gives the errors) otherwise."""
    if len(argv) != 2:
        return None
    head = store.counter_alone(argv[1])
    if head is None or not head[1] or not I64_MIN <= head[0] < I64_MAX:
        return None
    return [("incr", argv[1], 1)], head[0] + 1


# the commonest writes' short ways, by the command name as clients send it (``translate``)
_SHORT = {b"SET": _short_set, b"set": _short_set, b"INCR": _short_incr, b"incr": _short_incr}


# ------------------------------------------------------------------ keys


def _del(w: _Writer, argv: list[bytes]) -> Reply:
    n = 0
    for key in dict.fromkeys(argv[1:]):
        if w.get(key) is not None:
            n += 1
        w.delete(key)
    return n


def _expire(w: _Writer, argv: list[bytes]) -> Reply:
    name = argv[0].decode().lower()
    n = parse_int(argv[2])
    flags = {a.upper() for a in argv[3:]}
    if not flags <= {b"NX", b"XX", b"GT", b"LT"} or {b"NX", b"XX"} <= flags or {b"GT", b"LT"} <= flags:
        raise SYNTAX_ERROR if not flags <= {b"NX", b"XX", b"GT", b"LT"} else RespError(
            "ERR NX and XX, GT or LT options at the same time are not compatible")
    deadline = {"expire": w.now + n * 1000, "pexpire": w.now + n, "expireat": n * 1000,
                "pexpireat": n}[name]
    vis = w.get(argv[1])
    if vis is None:
        return 0
    cur = vis.deadline_ms
    if b"NX" in flags and cur is not None or b"XX" in flags and cur is None:
        return 0
    if b"GT" in flags and (cur is None or deadline <= cur) or b"LT" in flags and cur is not None and deadline >= cur:
        return 0
    if deadline <= w.now:
        w.delete(argv[1])
    else:
        w.muts.append(("ttl", argv[1], deadline))
    return 1


def _persist(w: _Writer, argv: list[bytes]) -> Reply:
    vis = w.get(argv[1])
    if vis is None or vis.deadline_ms is None:
        return 0
    w.muts.append(("ttl", argv[1], None))
    return 1


def _flushall(w: _Writer, argv: list[bytes]) -> Reply:
    for key in sorted(w.store.data):
        w.delete(key)
    return OK


def _vset(w: _Writer, argv: list[bytes]) -> Reply:
    key, value = argv[1], argv[2]
    if len(argv) == 3:
        w.set_string(key, value, None, False)
        return OK
    if len(argv) != 5 or argv[3].upper() != b"CONTEXT":
        raise SYNTAX_ERROR
    try:
        ctx = parse_vv_text(argv[4])
    except ValueError as err:
        raise RespError("ERR invalid context") from err
    vis = w.get(key)
    if vis is not None and vis.type != "string":
        raise WRONGTYPE
    t, _ = w.totals(key)
    w.muts.append(("set", key, value, t, ctx))
    return OK


# ------------------------------------------------------------------ sets


def _sadd(w: _Writer, argv: list[bytes]) -> Reply:
    members: Any
    if w.live(argv[1], "set"):
        ks = w.store.state(argv[1])
        assert ks is not None
        members = ks.set or ()  # its keys are the visible members
    else:
        w.fresh(argv[1])
        members = ()
    n = 0
    for m in dict.fromkeys(argv[2:]):
        if m not in members:
            w.muts.append(("sadd", argv[1], m))
            n += 1
    return n


def _srem(w: _Writer, argv: list[bytes]) -> Reply:
    ks = w.store.state(argv[1])
    members: Any = (ks.set or ()) if ks is not None and w.live(argv[1], "set") else ()
    n = 0
    for m in dict.fromkeys(argv[2:]):
        if m in members:
            w.muts.append(("srem", argv[1], m))
            n += 1
    return n


def _spop(w: _Writer, argv: list[bytes]) -> Reply:
    if len(argv) > 3:
        raise SYNTAX_ERROR
    count = parse_int_min(argv[2], 0, NOT_POSITIVE) if len(argv) == 3 else None
    members = w.typed(argv[1], "set")
    if members is None:
        return None if count is None else []
    pool = sorted(members)
    picks = w.rng.sample(pool, min(len(pool), 1 if count is None else count))
    for m in picks:
        w.muts.append(("srem", argv[1], m))
    return picks[0] if count is None else picks


def _smove(w: _Writer, argv: list[bytes]) -> Reply:
    src, dst, m = argv[1], argv[2], argv[3]
    members = w.typed(src, "set")
    if members is None:
        return 0
    dmembers = w.typed(dst, "set")
    if m not in members:
        return 0
    if src == dst:
        return 1
    w.muts.append(("srem", src, m))
    if dmembers is None:
        w.fresh(dst)
    if dmembers is None or m not in dmembers:
        w.muts.append(("sadd", dst, m))
    return 1


# ------------------------------------------------------------------ hashes


def _field_visible(ks: Any, field: bytes) -> bool:
    """Whether the live hash ``ks`` shows ``field`` (as ``visible`` does)."""
    cell = ks.hash.get(field) if ks.hash else None
    return cell is not None and cell.value() is not None


def _hset(w: _Writer, argv: list[bytes]) -> Reply:
    if len(argv) % 2 != 0:
        raise RespError(f"ERR wrong number of arguments for '{argv[0].decode().lower()}' command")
    ks = w.store.state(argv[1])
    live = ks is not None and w.live(argv[1], "hash")
    if not live:
        w.fresh(argv[1])
    last = {argv[i]: argv[i + 1] for i in range(2, len(argv), 2)}
    ht = w.field_totals(argv[1], last) if argv[1] not in w.cleared else {}
    for f, v in last.items():
        w.muts.append(("hset", argv[1], f, v, ht.get(f)))
    new = len(last)
    if live:
        assert ks is not None
        new -= sum(1 for f in last if _field_visible(ks, f))
    return OK if argv[0].lower() == b"hmset" else new


def _hsetnx(w: _Writer, argv: list[bytes]) -> Reply:
    fields = w.typed(argv[1], "hash") or {}
    if argv[2] in fields:
        return 0
    return _hset(w, [b"hset", argv[1], argv[2], argv[3]])


def _hdel(w: _Writer, argv: list[bytes]) -> Reply:
    fields = w.typed(argv[1], "hash") or {}
    ht = w.field_totals(argv[1], argv[2:])
    n = 0
    for f in dict.fromkeys(argv[2:]):
        if f in fields:
            w.muts.append(("hdel", argv[1], f, ht.get(f)))
            n += 1
    return n


def _hincrby(w: _Writer, argv: list[bytes]) -> Reply:
    delta = parse_int(argv[3])
    fields = w.typed(argv[1], "hash")
    if fields is None:
        w.fresh(argv[1])
        fields = {}
    old = fields.get(argv[2])
    base = 0 if old is None else as_int(old)
    if base is None:
        raise RespError("ERR hash value is not an integer")
    new = base + delta
    if not I64_MIN <= new <= I64_MAX:
        raise OVERFLOW
    w.muts.append(("hincr", argv[1], argv[2], delta))
    return new


# ------------------------------------------------------------------ lists


def _order(w: _Writer, key: bytes) -> list[Any]:
    ks = w.store.state(key)
    return [] if ks is None or key in w.cleared else ks.list_order()


def _pos(w: _Writer, key: bytes, lid: Any) -> Any:
    ks = w.store.state(key)
    assert ks is not None and ks.lst is not None
    return ks.lst[lid][0]


def _end(w: _Writer, key: bytes, left: bool) -> Any:
    """The first (``left``) or last element's ``(position, value, hlc)``, or None."""
    ks = w.store.state(key)
    if ks is None or key in w.cleared or not ks.lst:
        return None
    # positions are unique: the least (position, value, hlc) is the first element
    return min(ks.lst.values()) if left else max(ks.lst.values())


def _push_muts(w: _Writer, key: bytes, values: list[bytes], left: bool) -> None:
    end = _end(w, key, left)
    items: list[list[Any]] = []
    if left:
        first = end[0][0][0] if end is not None else 0
        for j, v in enumerate(values):
            items.append([[], first - 1 - j, v])
    else:
        last = end[0][0][0] if end is not None else 0
        for j, v in enumerate(values):
            items.append([[], last + 1 + j, v])
    w.muts.append(("lins", key, items))


def _push(w: _Writer, argv: list[bytes]) -> Reply:
    name = argv[0].lower()
    if w.live(argv[1], "list"):
        ks = w.store.state(argv[1])
        assert ks is not None and ks.lst is not None
        length = len(ks.lst)  # every element of a visible list shows
    else:
        if name.endswith(b"x"):
            return 0
        w.fresh(argv[1])
        length = 0
    _push_muts(w, argv[1], argv[2:], name.startswith(b"l"))
    return length + len(argv) - 2


def _pop_ids(w: _Writer, key: bytes, count: int, left: bool) -> list[bytes]:
    if count == 1:
        ks0 = w.store.state(key)
        if ks0 is None or key in w.cleared or not ks0.lst:
            picked = []
        else:
            get = ks0.lst.__getitem__
            picked = [min(ks0.lst, key=get) if left else max(ks0.lst, key=get)]
    else:
        order = _order(w, key)
        picked = order[:count] if left else order[::-1][:count]
    if not picked:
        return []
    ks = w.store.state(key)
    assert ks is not None and ks.lst is not None
    w.muts.append(("lrem", key, [list(lid) for lid in picked]))
    return [ks.lst[lid][1] for lid in picked]


def _pop(w: _Writer, argv: list[bytes]) -> Reply:
    if len(argv) > 3:
        raise SYNTAX_ERROR
    count = parse_int_min(argv[2], 0, NOT_POSITIVE) if len(argv) == 3 else None
    if not w.live(argv[1], "list"):
        return None
    values = _pop_ids(w, argv[1], 1 if count is None else count, argv[0].lower() == b"lpop")
    return (values[0] if values else None) if count is None else values


def _lset(w: _Writer, argv: list[bytes]) -> Reply:
    index = parse_int(argv[2])
    cur = w.typed(argv[1], "list")
    if cur is None:
        raise RespError("ERR no such key")
    if index < 0:
        index += len(cur)
    if not 0 <= index < len(cur):
        raise RespError("ERR index out of range")
    order = _order(w, argv[1])
    lid = order[index]
    lo = _pos(w, argv[1], order[index - 1]) if index > 0 else None
    hi = _pos(w, argv[1], order[index + 1]) if index + 1 < len(order) else None
    prefix, n = position_between(lo, hi)
    w.muts.append(("lrem", argv[1], [list(lid)]))
    w.muts.append(("lins", argv[1], [[[list(d) for d in prefix], n, argv[3]]]))
    return OK


def _linsert(w: _Writer, argv: list[bytes]) -> Reply:
    where = argv[2].upper()
    if where not in (b"BEFORE", b"AFTER"):
        raise SYNTAX_ERROR
    cur = w.typed(argv[1], "list")
    if cur is None:
        return 0
    if argv[3] not in cur:
        return -1
    index = cur.index(argv[3])
    order = _order(w, argv[1])
    if where == b"BEFORE":
        lo = _pos(w, argv[1], order[index - 1]) if index > 0 else None
        hi = _pos(w, argv[1], order[index])
    else:
        lo = _pos(w, argv[1], order[index])
        hi = _pos(w, argv[1], order[index + 1]) if index + 1 < len(order) else None
    prefix, n = position_between(lo, hi)
    w.muts.append(("lins", argv[1], [[[list(d) for d in prefix], n, argv[4]]]))
    return len(cur) + 1


def _lrem(w: _Writer, argv: list[bytes]) -> Reply:
    count = parse_int(argv[2])
    cur = w.typed(argv[1], "list")
    if cur is None:
        return 0
    order = _order(w, argv[1])
    pairs = list(zip(order, cur, strict=True))
    if count < 0:
        pairs.reverse()
    hits = [lid for lid, v in pairs if v == argv[3]]
    if count != 0:
        hits = hits[: abs(count)]
    if hits:
        w.muts.append(("lrem", argv[1], [list(lid) for lid in hits]))
    return len(hits)


def _lmove(w: _Writer, argv: list[bytes]) -> Reply:
    if argv[0].lower() == b"rpoplpush":
        src, dst, wherefrom, whereto = argv[1], argv[2], b"RIGHT", b"LEFT"
    else:
        src, dst = argv[1], argv[2]
        wherefrom, whereto = argv[3].upper(), argv[4].upper()
        if wherefrom not in (b"LEFT", b"RIGHT") or whereto not in (b"LEFT", b"RIGHT"):
            raise SYNTAX_ERROR
    cur = w.typed(src, "list")
    if cur is None:
        return None
    w.typed(dst, "list")
    values = _pop_ids(w, src, 1, wherefrom == b"LEFT")
    value = values[0]
    if src == dst:
        # the pushed element is placed relative to what is left after the pop
        rest = [lid for lid in _order(w, src) if list(lid) not in w.muts[-1][2]]
        ks = w.store.state(src)
        assert ks is not None and ks.lst is not None
        if whereto == b"LEFT":
            n = ks.lst[rest[0]][0][0][0] - 1 if rest else 0
        else:
            n = ks.lst[rest[-1]][0][0][0] + 1 if rest else 0
        w.muts.append(("lins", dst, [[[], n, value]]))
    else:
        if w.get(dst) is None:
            w.fresh(dst)
        _push_muts(w, dst, [value], whereto == b"LEFT")
    return value


def _ltrim(w: _Writer, argv: list[bytes]) -> Reply:
    start, stop = parse_int(argv[2]), parse_int(argv[3])
    cur = w.typed(argv[1], "list")
    if cur is None:
        return OK
    n = len(cur)
    if start < 0:
        start = max(0, start + n)
    if stop < 0:
        stop += n
    stop = min(stop, n - 1)
    order = _order(w, argv[1])
    drop = [lid for i, lid in enumerate(order) if not start <= i <= stop]
    if drop:
        w.muts.append(("lrem", argv[1], [list(lid) for lid in drop]))
    return OK


def _lmpop(w: _Writer, argv: list[bytes]) -> Reply:
    numkeys = parse_int(argv[1])
    if numkeys <= 0:
        raise RespError("ERR numkeys should be greater than 0")
    if len(argv) < 3 + numkeys:
        raise SYNTAX_ERROR
    keys = argv[2 : 2 + numkeys]
    where = argv[2 + numkeys].upper()
    if where not in (b"LEFT", b"RIGHT"):
        raise SYNTAX_ERROR
    rest = argv[3 + numkeys :]
    count = 1
    if rest:
        if len(rest) != 2 or rest[0].upper() != b"COUNT":
            raise SYNTAX_ERROR
        count = parse_int(rest[1])
        if count <= 0:
            raise RespError("ERR count should be greater than 0")
    for key in keys:
        if w.typed(key, "list"):
            return [key, _pop_ids(w, key, count, where == b"LEFT")]
    return None


def _bpop(w: _Writer, argv: list[bytes]) -> Reply:
    """One attempt of BLPOP / BRPOP key [key ...] timeout: [key, element] of the first
    non-empty list, or None (runtime/blocking.py parks the client and tries again when a key
    changes). Pops on two nodes at once may both return one element, as LPOP's do."""
    left = argv[0].lower() == b"blpop"
    for key in argv[1:-1]:
        if w.typed(key, "list"):
            return [key, _pop_ids(w, key, 1, left)[0]]
    return None


def _bmove(w: _Writer, argv: list[bytes]) -> Reply:
    """One attempt of BLMOVE src dst wherefrom whereto timeout / BRPOPLPUSH src dst timeout."""
    if argv[0].lower() == b"brpoplpush":
        return _lmove(w, [b"RPOPLPUSH", argv[1], argv[2]])
    return _lmove(w, [b"LMOVE", *argv[1:5]])


def _blmpop(w: _Writer, argv: list[bytes]) -> Reply:
    """One attempt of BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT n]."""
    return _lmpop(w, [b"LMPOP", *argv[2:]])


_HANDLERS: dict[str, Any] = {
    "blpop": _bpop, "brpop": _bpop, "blmove": _bmove, "brpoplpush": _bmove, "blmpop": _blmpop,
    "ltrim": _ltrim, "lmpop": _lmpop,
    "set": _set, "setnx": _setnx, "setex": _setex, "psetex": _setex, "getset": _getset,
    "getdel": _getdel, "getex": _getex, "mset": _mset, "msetnx": _msetnx, "append": _append,
    "setrange": _setrange, "incr": _incr, "incrby": _incr, "decr": _incr, "decrby": _incr,
    "del": _del, "unlink": _del, "expire": _expire, "pexpire": _expire, "expireat": _expire,
    "pexpireat": _expire, "persist": _persist, "sadd": _sadd, "srem": _srem, "spop": _spop,
    "smove": _smove, "hset": _hset, "hmset": _hset, "hsetnx": _hsetnx, "hdel": _hdel,
    "hincrby": _hincrby, "lpush": _push, "rpush": _push, "lpushx": _push, "rpushx": _push,
    "lpop": _pop, "rpop": _pop, "lset": _lset, "linsert": _linsert, "lrem": _lrem,
    "lmove": _lmove, "rpoplpush": _lmove, "flushall": _flushall, "flushdb": _flushall,
    "vset": _vset,
}
