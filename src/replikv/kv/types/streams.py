"""Streams: ``data[key]`` is a :class:`Stream` (entries in id order, consumer groups).

Behaviour follows Redis 7.0's t_stream.c, replies and error messages
included. Unlike lists, sets and hashes, a stream may be EMPTY and keeps its
key (``XADD .. MAXLEN 0``, ``XDEL`` of every entry, ``XGROUP CREATE ..
MKSTREAM``), as in Redis: a stream's metadata (last id, groups) outlives
its entries.

Layout: ``Stream.entries`` is a ``SortedDict`` id -> flat ``[field, value,
...]`` list (ids are ``(ms, seq)`` tuples of unsigned 64-bit ints), so a
range lookup is O(log n). Redis stores entries in radix-tree nodes, each a
listpack of at most ``stream-node-max-entries`` (100) entries and
``stream-node-max-bytes`` (4096) bytes; approximate trimming (``~``) only
removes whole nodes, so its outcome depends on where the nodes are cut.
``Stream.nodes`` models them (:class:`_Node`: first id, last id, entries
incl. deleted ones, live entries, the listpack's size in bytes and its
master fields): an entry opens a new node when the last one holds 100
entries or its bytes plus the entry's field and value lengths reach 4096
(the size is computed as listpack encodes each element, ``_lp_size``), an
``XDEL`` that empties a node removes it, and trimming removes whole nodes
first, exactly as Redis decides. The node model is replicated state (in
the snapshot and the digest). XINFO's ``radix-tree-keys`` is the node
count and ``radix-tree-nodes`` the size of the compressed radix tree of the
nodes' first ids (``_rax_nodes``).

Consumer groups (``Group``): ``last_id``, ``entries_read`` (-1 = unknown),
the group PEL (``SortedDict`` id -> :class:`Nack`) and consumers by name,
each with its own PEL holding the same ``Nack`` objects.

Determinism (see ``kv/state_machine.py``): ids, delivery times and
consumers' seen times are decided once and replicated as values:

- ``XADD k * ..`` depends on the clock and the stream's last id. The
  leader-follower leader (exact rewrite) logs the id it chose (``XADD k ..
  <ms>-<seq> ..``). Raft's rewrite may not read the state, so it logs the
  command as sent and ``apply`` picks the id from the entry's time
  (``ctx.now_ms``) and the stream's last id, as Redis's auto id does
  (``max(now, last.ms)``); a log ``XADD *`` without a time is refused.
- Commands that record a time (XREADGROUP, XCLAIM, XAUTOCLAIM, XGROUP
  CREATECONSUMER) are always rewritten to an internal form: the command
  followed by ``TIME_MARK <ms>`` (two arguments appended at the end; the
  rewrite stamps every client command, so client bytes never reach apply
  unstamped and cannot pass for the pair). ``<ms>`` is the leader's clock
  in exact mode and empty in raft mode, where apply uses the entry's time.
  ``apply`` strips the pair (:func:`_split_time`); a log command without it
  is refused. Logged only when it changed something (a delivery, a claim,
  a new consumer), as ``sm.dirty`` says.
- Nothing replicated ever depends on dict/set iteration order: groups and
  consumers are listed sorted by name (Redis's radix-tree order).

Replies: XINFO's are maps (``dict``: a flat array in RESP2, a map in RESP3)
and XREAD's a ``PairMap`` (``[[key, entries], ...]`` in RESP2, a map in
RESP3), as Redis 7.0 answers.

Blocking reads: ``XREAD``/``XREADGROUP`` with ``BLOCK`` are served here as
the non-blocking form (the null array when nothing is there; the runtime
blocks and re-runs them when woken; :meth:`Stream.pin_last_ids` gives the
form to re-run, each ``$`` fixed to the last id at the time the client
blocked, as Redis does); :meth:`Stream.entries_after` is the "entries after
id X" lookup.
XREAD/XREADGROUP's keys follow STREAMS (``find_keys``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from hashlib import blake2b
from itertools import islice
from typing import TYPE_CHECKING, Any

import msgpack
from sortedcontainers import SortedDict

from replikv.core.replies import (
    NULL_ARRAY,
    OK,
    SYNTAX_ERROR,
    WRONGTYPE,
    PairMap,
    RespError,
    wrong_arity,
)
from replikv.kv.args import NEEDS_CLOCK, parse_int
from replikv.kv.commands import command
from replikv.kv.values import ValueType, value_type

if TYPE_CHECKING:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine

Reply = Any
StreamID = tuple[int, int]

U64 = (1 << 64) - 1
ZERO_ID: StreamID = (0, 0)
MAX_ID: StreamID = (U64, U64)
NODE_MAX_ENTRIES = 100  # Redis's stream-node-max-entries default
UNKNOWN_READ = -1  # entries_read when it cannot be known (Redis's SCG_INVALID_ENTRIES_READ)
TIME_MARK = b"\x00replikv-time"  # internal: ``<cmd> .. TIME_MARK <ms>`` (module docstring)

INVALID_ID = RespError("ERR Invalid stream ID specified as stream command argument")
_XADD_SMALL = RespError(
    "ERR The ID specified in XADD is equal or smaller than the target stream top item"
)
_XADD_ZERO = RespError("ERR The ID specified in XADD must be greater than 0-0")
_EXHAUSTED = RespError(
    "ERR The stream has exhausted the last possible ID, unable to add more items"
)
_NO_SUCH_KEY = RespError("ERR no such key")


# --- the value type -------------------------------------------------------------


class Nack:
    """One pending (delivered, not acknowledged) entry of a group."""

    __slots__ = ("consumer", "delivery_count", "delivery_time")

    def __init__(self, consumer: bytes, delivery_time: int, delivery_count: int) -> None:
        self.consumer = consumer
        self.delivery_time = delivery_time
        self.delivery_count = delivery_count


class Consumer:
    __slots__ = ("pel", "seen_time")

    def __init__(self, seen_time: int) -> None:
        self.seen_time = seen_time
        self.pel: SortedDict = SortedDict()  # id -> Nack (the group PEL's objects)


class Group:
    __slots__ = ("consumers", "entries_read", "last_id", "pel")

    def __init__(self, last_id: StreamID, entries_read: int) -> None:
        self.last_id = last_id
        self.entries_read = entries_read
        self.pel: SortedDict = SortedDict()  # id -> Nack
        self.consumers: dict[bytes, Consumer] = {}

    def consumer(self, name: bytes, now: int) -> Consumer:
        """The consumer ``name`` (created if missing), seen at ``now``."""
        found = self.consumers.get(name)
        if found is None:
            found = self.consumers[name] = Consumer(now)
        found.seen_time = now
        return found

    def unlink(self, sid: StreamID) -> Nack | None:
        """Remove ``sid`` from the group PEL and its consumer's; the Nack or None."""
        nack: Nack | None = self.pel.pop(sid, None)
        if nack is not None:
            self.consumers[nack.consumer].pel.pop(sid, None)
        return nack


class _Node:
    """A model of one of Redis's radix-tree nodes (see the module docstring)."""

    __slots__ = ("fields", "last", "live", "master", "size", "total")

    def __init__(self, master: StreamID, last: StreamID, total: int, live: int, size: int,
                 fields: list[bytes]) -> None:
        self.master = master
        self.last = last
        self.total = total  # entries, deleted ones included
        self.live = live
        self.size = size  # bytes of the listpack
        self.fields = fields  # the master entry's fields

    @classmethod
    def opened_by(cls, sid: StreamID, fields: list[bytes]) -> _Node:
        """An empty node whose master entry takes ``fields``' field names."""
        names = fields[0::2]
        # header + end, count, deleted, number of fields, the fields, the master terminator
        size = _LP_HEADER + 1 + 3 * _lp_int_size(0) + _lp_int_size(len(names))
        size += sum(_lp_size(name) for name in names)
        return cls(sid, sid, 0, 0, size, names)

    def add(self, sid: StreamID, fields: list[bytes]) -> None:
        """Count the entry ``sid`` appended to this node and its listpack bytes."""
        values = fields[1::2]
        same = fields[0::2] == self.fields
        size = _lp_int_size(0)  # flags
        size += _lp_int_size(_i64(sid[0] - self.master[0]))
        size += _lp_int_size(_i64(sid[1] - self.master[1]))
        if same:
            size += sum(_lp_size(v) for v in values)
            size += _lp_int_size(len(values) + 3)
        else:
            size += _lp_int_size(len(values)) + sum(_lp_size(f) for f in fields)
            size += _lp_int_size(2 * len(values) + 4)
        self.size += size
        self.total += 1
        self.live += 1
        self.last = sid


# --- listpack element sizes (Redis's listpack.c encodings, for the node model)

_LP_HEADER = 6
NODE_MAX_BYTES = 4096  # Redis's stream-node-max-bytes default


def _i64(value: int) -> int:
    """``value`` wrapped to a signed 64-bit integer (the id deltas are C int64)."""
    value &= U64
    return value - (1 << 64) if value >> 63 else value


def _backlen(n: int) -> int:
    return 1 if n <= 127 else 2 if n < 16383 else 3 if n < 2097151 else 4 if n < 268435455 else 5


def _lp_int_size(v: int) -> int:
    """Bytes of an integer element (encoding, backlen)."""
    if 0 <= v <= 127:
        n = 1
    elif -4096 <= v <= 4095:
        n = 2
    elif -32768 <= v <= 32767:
        n = 3
    elif -8388608 <= v <= 8388607:
        n = 4
    elif -(1 << 31) <= v < (1 << 31):
        n = 5
    else:
        n = 9
    return n + 1


def _lp_size(value: bytes) -> int:
    """Bytes of a string element: stored as an integer when it is one."""
    if len(value) <= 20:
        try:
            return _lp_int_size(parse_int(value))
        except RespError:
            pass
    n = len(value)
    n += 1 if n <= 63 else 2 if n <= 4095 else 5
    return n + _backlen(n)


class Stream:
    """A stream: entries by id, its counters, node model and consumer groups."""

    __slots__ = ("entries", "entries_added", "groups", "last_id", "max_deleted", "nodes")

    def __init__(self) -> None:
        self.entries: SortedDict = SortedDict()  # StreamID -> [field, value, ...]
        self.last_id: StreamID = ZERO_ID
        self.max_deleted: StreamID = ZERO_ID
        self.entries_added = 0
        self.nodes: list[_Node] = []
        self.groups: dict[bytes, Group] = {}

    @property
    def first_id(self) -> StreamID:
        return self.entries.keys()[0] if self.entries else ZERO_ID

    def entries_after(self, after: StreamID, count: int = 0) -> list[tuple[StreamID, list[bytes]]]:
        """Entries with an id greater than ``after``, in order, at most ``count``
        (0: all). What a blocked ``XREAD`` serves when it is woken."""
        return self.range(after, MAX_ID, count, exclusive_start=True)

    @staticmethod
    def pin_last_ids(sm: StateMachine, argv: list[bytes], now_ms: int) -> list[bytes]:
        """``XREAD .. STREAMS k .. $ ..`` with each ``$`` replaced by its
        stream's last id now (0-0 for a missing key), as Redis fixes it when
        the client blocks: the form to attempt again on every wake-up, where
        ``$`` would otherwise mean the last id of that later moment. Any
        other argv (or one that does not parse) is returned as it is."""
        if argv[0].upper() != b"XREAD" or b"$" not in argv:
            return argv
        try:
            a = _parse_read(argv, False)
        except RespError:
            return argv
        pinned = argv[: len(argv) - len(a.ids)]
        for key, id_arg in zip(a.keys, a.ids, strict=True):
            if id_arg == b"$":
                try:
                    s = sm.live_as(key, now_ms, Stream)
                except RespError:
                    return argv  # WRONGTYPE: the attempt answers it
                id_arg = _fmt_id(ZERO_ID if s is None else s.last_id)
            pinned.append(id_arg)
        return pinned

    def range(
        self, start: StreamID, end: StreamID, count: int = 0, *, reverse: bool = False,
        exclusive_start: bool = False,
    ) -> list[tuple[StreamID, list[bytes]]]:
        if start > end:
            return []
        ids = self.entries.irange(start, end, inclusive=(not exclusive_start, True),
                                  reverse=reverse)
        out = []
        entries = self.entries
        for sid in ids:
            out.append((sid, entries[sid]))
            if len(out) == count:
                break
        return out

    # -- changes (the callers count them in sm.dirty)

    def append(self, sid: StreamID, fields: list[bytes]) -> None:
        self.entries[sid] = fields
        self.last_id = sid
        self.entries_added += 1
        nodes = self.nodes
        node = nodes[-1] if nodes else None
        if (
            node is None
            or node.total >= NODE_MAX_ENTRIES
            or node.size + sum(map(len, fields)) >= NODE_MAX_BYTES
        ):
            node = _Node.opened_by(sid, fields)
            nodes.append(node)
        node.add(sid, fields)

    def delete(self, sid: StreamID) -> bool:
        """XDEL one id; True when it was there."""
        if self.entries.pop(sid, None) is None:
            return False
        i = bisect.bisect_right(self.nodes, sid, key=_master) - 1
        node = self.nodes[i]
        node.live -= 1
        if not node.live:
            del self.nodes[i]
        self.max_deleted = max(self.max_deleted, sid)
        return True

    def trim(self, maxlen: int | None, minid: StreamID | None, approx: bool, limit: int) -> int:
        """Trim by MAXLEN or MINID as Redis does (whole nodes first; with
        ``approx`` stop at the first node that cannot go whole; ``limit`` caps
        the entries removed with whole nodes, 0 = none). Entries removed."""
        if maxlen is not None and len(self.entries) <= maxlen:
            return 0
        removed = 0
        entries = self.entries
        while self.nodes:
            node = self.nodes[0]
            if limit and removed + node.live > limit:
                break
            if maxlen is not None:
                whole = len(entries) - node.live >= maxlen
            else:
                assert minid is not None
                whole = node.last < minid
            if whole:
                for sid in list(entries.irange(node.master, node.last)):
                    del entries[sid]
                removed += node.live
                del self.nodes[0]
                continue
            if approx:
                break
            # Within the node: its entries go one by one (the node stays, even
            # emptied, as Redis only marks them deleted in its listpack).
            doomed: list[StreamID] = []
            for sid in entries.irange(node.master, node.last):
                if maxlen is not None:
                    if len(entries) - len(doomed) <= maxlen:
                        break
                elif minid is not None and sid >= minid:
                    break
                doomed.append(sid)
            for sid in doomed:
                del entries[sid]
            node.live -= len(doomed)
            removed += len(doomed)
            break
        return removed

    # -- lag and entries-read (Redis 7.0's counters of a group's progress)

    def has_tombstones_from(self, start: StreamID) -> bool:
        """A deleted entry may lie at or after ``start`` (XDEL made a gap)."""
        if not self.entries or self.max_deleted == ZERO_ID:
            return False
        if self.first_id > self.max_deleted:
            return False
        return start <= self.max_deleted

    def estimate_read(self, sid: StreamID) -> int:
        """Entries added up to ``sid`` (its logical read counter), or
        UNKNOWN_READ when gaps make it unknowable."""
        if not self.entries_added:
            return 0
        if not self.entries and sid <= self.last_id:
            return self.entries_added
        if sid == self.last_id:
            return self.entries_added
        if sid > self.last_id:
            return UNKNOWN_READ
        first = self.first_id
        if self.max_deleted == ZERO_ID or self.max_deleted < first:
            if sid < first:
                return self.entries_added - len(self.entries)
            if sid == first:
                return self.entries_added - len(self.entries) + 1
        return UNKNOWN_READ

    def lag(self, group: Group) -> int | None:
        if not self.entries_added:
            return 0
        if group.entries_read != UNKNOWN_READ and not self.has_tombstones_from(group.last_id):
            return self.entries_added - group.entries_read
        read = self.estimate_read(group.last_id)
        return None if read == UNKNOWN_READ else self.entries_added - read

    def advance(self, group: Group, sid: StreamID) -> None:
        """Move ``group``'s last delivered id forward to ``sid`` (delivered now)."""
        if sid <= group.last_id:
            return
        if group.entries_read != UNKNOWN_READ and not self.has_tombstones_from(sid):
            group.entries_read += 1
        elif self.entries_added:
            group.entries_read = self.estimate_read(sid)
        group.last_id = sid


def _master(node: _Node) -> StreamID:
    return node.master


def _state(s: Stream) -> list[Any]:
    """A canonical, msgpack-able form of a stream (the snapshot payload)."""
    groups = []
    for name in sorted(s.groups):
        g = s.groups[name]
        pel = [[*sid, n.consumer, n.delivery_time, n.delivery_count] for sid, n in g.pel.items()]
        consumers = [[c, g.consumers[c].seen_time] for c in sorted(g.consumers)]
        groups.append([name, [*g.last_id], g.entries_read, pel, consumers])
    return [
        [[*sid, fields] for sid, fields in s.entries.items()],
        [*s.last_id],
        [*s.max_deleted],
        s.entries_added,
        [[*n.master, *n.last, n.total, n.live, n.size, n.fields] for n in s.nodes],
        groups,
    ]


def _load(payload: list[Any]) -> Stream:
    entries, last_id, max_deleted, added, nodes, groups = payload
    s = Stream()
    s.entries = SortedDict({(ms, seq): list(fields) for ms, seq, fields in entries})
    s.last_id = (last_id[0], last_id[1])
    s.max_deleted = (max_deleted[0], max_deleted[1])
    s.entries_added = added
    s.nodes = [_Node((a, b), (c, d), t, v, size, list(fields))
               for a, b, c, d, t, v, size, fields in nodes]
    for name, glast, read, pel, consumers in groups:
        g = s.groups[name] = Group((glast[0], glast[1]), read)
        for cname, seen in consumers:
            g.consumers[cname] = Consumer(seen)
        for ms, seq, cname, when, count in pel:
            nack = g.pel[(ms, seq)] = Nack(cname, when, count)
            g.consumers[cname].pel[(ms, seq)] = nack
    return s


def _digest(h: Any, s: Stream) -> None:
    h.update(b"X")
    h.update(blake2b(msgpack.packb(_state(s), use_bin_type=True), digest_size=32).digest())


value_type(ValueType(Stream, "stream", 5, dump=_state, load=_load, digest=_digest))


# --- ids --------------------------------------------------------------------------

_SPACE = b" \t\n\v\f\r"


def _u64(text: bytes) -> int | None:
    """An unsigned 64-bit integer as Redis's string2ull reads it (canonical
    decimal, else what C's strtoull accepts in full), or None."""
    try:
        value = parse_int(text)
    except RespError:
        pass
    else:
        return value if value >= 0 else None
    body = text.lstrip(_SPACE)
    negative = body[:1] == b"-"
    if body[:1] in (b"-", b"+"):
        body = body[1:]
    if not body.isdigit() or not body.isascii():
        return None
    value = int(body)
    if value > U64:
        return None
    return (-value) & U64 if negative else value


def _parse_id_arg(arg: bytes, *, strict: bool, missing_seq: int = 0) -> StreamID:
    """An id argument: ``ms-seq`` or ``ms`` (seq = ``missing_seq``); ``-``
    and ``+`` (0-0, the max id) unless ``strict``. INVALID_ID otherwise."""
    return _parse_id(arg, strict, missing_seq, auto_seq=False)[0]


def _parse_id(arg: bytes, strict: bool, missing_seq: int, auto_seq: bool) -> tuple[StreamID, bool]:
    """``(id, seq_given)``; with ``auto_seq`` ``ms-*`` gives seq_given False."""
    if len(arg) > 127:
        raise INVALID_ID
    if not strict and arg in (b"-", b"+"):
        return (ZERO_ID if arg == b"-" else MAX_ID), True
    ms_part, dash, seq_part = arg.partition(b"-")
    ms = _u64(ms_part)
    if ms is None:
        raise INVALID_ID
    if not dash:
        return (ms, missing_seq), True
    if auto_seq and seq_part == b"*":
        return (ms, 0), False
    seq = _u64(seq_part)
    if seq is None:
        raise INVALID_ID
    return (ms, seq), True


def _interval(arg: bytes, missing_seq: int) -> tuple[StreamID, bool]:
    """A range bound: ``(id, exclusive)``; ``(<id>`` is exclusive."""
    if len(arg) > 1 and arg[:1] == b"(":
        return _parse_id_arg(arg[1:], strict=True, missing_seq=missing_seq), True
    return _parse_id_arg(arg, strict=False, missing_seq=missing_seq), False


def _incr(sid: StreamID) -> StreamID | None:
    if sid[1] < U64:
        return (sid[0], sid[1] + 1)
    return (sid[0] + 1, 0) if sid[0] < U64 else None


def _decr(sid: StreamID) -> StreamID | None:
    if sid[1] > 0:
        return (sid[0], sid[1] - 1)
    return (sid[0] - 1, U64) if sid[0] > 0 else None


def _bounds(start_arg: bytes, end_arg: bytes) -> tuple[StreamID, StreamID]:
    """An inclusive ``[start, end]`` from two interval arguments (XRANGE, XPENDING)."""
    start, start_ex = _interval(start_arg, 0)
    end, end_ex = _interval(end_arg, U64)
    if start_ex:
        nxt = _incr(start)
        if nxt is None:
            raise RespError("ERR invalid start ID for the interval")
        start = nxt
    if end_ex:
        prev = _decr(end)
        if prev is None:
            raise RespError("ERR invalid end ID for the interval")
        end = prev
    return start, end


def _fmt_id(sid: StreamID) -> bytes:
    return b"%d-%d" % sid


def _entry(sid: StreamID, fields: list[bytes]) -> list[Any]:
    return [_fmt_id(sid), list(fields)]


def _next_auto_id(last: StreamID, now_ms: int) -> StreamID | None:
    """The id ``*`` gives: ``now-0`` if the clock is past the last id, else
    the last id plus one (None: exhausted)."""
    if now_ms > last[0]:
        return (now_ms, 0)
    return _incr(last)


# --- shared helpers -------------------------------------------------------------


def _stream(sm: StateMachine, key: bytes) -> Stream | None:
    """Write side: the stream at ``key`` or None; WRONGTYPE for another type."""
    value = sm.data.get(key)
    if value is not None and type(value) is not Stream:
        raise WRONGTYPE
    return value


def _split_time(
    argv: list[bytes], ctx: ApplyContext, min_argc: int = 2
) -> tuple[list[bytes], int]:
    """The internal form's arguments without ``TIME_MARK <ms>`` (at least
    ``min_argc`` of them, as the command's arity asks), and its time."""
    if len(argv) < 3 or argv[-2] != TIME_MARK:
        raise RespError("ERR internal form expected: this command is applied as rewritten")
    if len(argv) - 2 < min_argc:
        raise wrong_arity(argv[0].decode("utf-8", "replace"))
    when = argv[-1]
    if when:
        return argv[:-2], parse_int(when)
    if ctx.now_ms is None:
        raise NEEDS_CLOCK
    return argv[:-2], ctx.now_ms


def _stamp(argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    """The internal form: ``argv`` + ``TIME_MARK <ms>`` (empty in raft mode)."""
    return [argv[0].upper(), *argv[1:], TIME_MARK, b"%d" % now_ms if exact else b""]


def _count_arg(arg: bytes) -> int:
    """A COUNT argument of XRANGE/XREAD: negative counts as 0 (= no limit)."""
    return max(parse_int(arg), 0)


# --- XADD / XTRIM ---------------------------------------------------------------


class _TrimArgs:
    __slots__ = ("approx", "id_arg", "id_pos", "limit", "maxlen", "minid", "nomkstream")

    def __init__(self) -> None:
        self.maxlen: int | None = None
        self.minid: StreamID | None = None
        self.approx = False
        self.limit = 0
        self.nomkstream = False
        self.id_pos = 0  # XADD: where the id is
        self.id_arg = b"*"


def _parse_trim(argv: list[bytes], xadd: bool) -> _TrimArgs:
    """XADD's options up to the id (or XTRIM's whole argv), as Redis parses them."""
    a = _TrimArgs()
    limit_given = False
    n = len(argv)
    i = 2
    while i < n:
        more = n - 1 - i
        opt = argv[i].upper()
        if xadd and argv[i] == b"*":
            break
        if opt in (b"MAXLEN", b"MINID") and more:
            if a.maxlen is not None or a.minid is not None:
                raise RespError(
                    "ERR syntax error, MAXLEN and MINID options at the same time are not compatible"
                )
            a.approx = False
            if more >= 2 and argv[i + 1] in (b"~", b"="):
                a.approx = argv[i + 1] == b"~"
                i += 1
            if opt == b"MAXLEN":
                a.maxlen = parse_int(argv[i + 1])
                if a.maxlen < 0:
                    raise RespError("ERR The MAXLEN argument must be >= 0.")
            else:
                a.minid = _parse_id_arg(argv[i + 1], strict=True)
            i += 2
            continue
        if opt == b"LIMIT" and more:
            a.limit = parse_int(argv[i + 1])
            if a.limit < 0:
                raise RespError("ERR The LIMIT argument must be >= 0.")
            limit_given = True
            i += 2
            continue
        if xadd and opt == b"NOMKSTREAM":
            a.nomkstream = True
            i += 1
            continue
        if not xadd:
            raise SYNTAX_ERROR
        a.id_arg = argv[i]
        break
    a.id_pos = i
    strategy = a.maxlen is not None or a.minid is not None
    if a.limit and not strategy:
        raise RespError(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
        )
    if not xadd and not strategy:
        raise RespError("ERR syntax error, XTRIM must be called with a trimming strategy")
    if limit_given:
        if not a.approx:
            raise RespError("ERR syntax error, LIMIT cannot be used without the special ~ option")
    elif a.approx:
        a.limit = 100 * NODE_MAX_ENTRIES
    return a


def _parse_xadd(argv: list[bytes]) -> tuple[_TrimArgs, StreamID | None, bool]:
    """``(options, id or None for *, seq_given)``; errors in Redis's order."""
    a = _parse_trim(argv, True)
    sid: StreamID | None = None
    seq_given = True
    if a.id_pos < len(argv) and a.id_arg != b"*":
        sid, seq_given = _parse_id(a.id_arg, True, 0, auto_seq=True)
        if seq_given and sid == ZERO_ID:
            raise _XADD_ZERO
    fields = len(argv) - a.id_pos - 1
    if fields < 2 or fields % 2:
        raise wrong_arity("xadd")
    return a, sid, seq_given


def _new_id(s: Stream, sid: StreamID | None, seq_given: bool, now_ms: int | None) -> StreamID:
    """The id XADD appends: explicit, ``ms-*`` or ``*`` (needs ``now_ms``)."""
    last = s.last_id
    if last == MAX_ID:
        raise _EXHAUSTED
    if sid is None:
        if now_ms is None:
            raise NEEDS_CLOCK
        nxt = _next_auto_id(last, now_ms)
        assert nxt is not None
        return nxt
    if not seq_given:
        if sid[0] == last[0]:
            if last[1] == U64:
                raise _XADD_SMALL
            return (sid[0], last[1] + 1)
        if sid[0] < last[0]:
            raise _XADD_SMALL
        return sid
    if sid <= last:
        raise _XADD_SMALL
    return sid


def rewrite_xadd(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    """Exact mode: ``XADD k .. * ..`` -> the explicit id this state gives it.
    Raft mode: as sent (apply picks the id at the entry's time)."""
    a, sid, _seq_given = _parse_xadd(argv)
    if sid is not None or not exact:
        return argv
    value = sm.live(argv[1], now_ms)
    if value is not None and type(value) is not Stream:
        return argv  # apply answers WRONGTYPE
    last = ZERO_ID if value is None else value.last_id
    nxt = _next_auto_id(last, now_ms)
    if nxt is None:
        return argv  # apply answers that the stream is exhausted
    return [*argv[: a.id_pos], _fmt_id(nxt), *argv[a.id_pos + 1 :]]


def _trim(s: Stream, a: _TrimArgs) -> int:
    return s.trim(a.maxlen, a.minid, a.approx, a.limit)


@command("xadd", -5, "write denyoom fast", rewrite=rewrite_xadd)
def xadd(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    a, sid, seq_given = _parse_xadd(argv)
    key = argv[1]
    s = _stream(sm, key)
    if s is None:
        if a.nomkstream:
            return None
        s = Stream()
    new = _new_id(s, sid, seq_given, ctx.now_ms)
    if key not in sm.data:
        sm.new_key(key)
        sm.data[key] = s
    s.append(new, argv[a.id_pos + 1 :])
    if a.maxlen is not None or a.minid is not None:
        _trim(s, a)
    sm.dirty += 1
    return _fmt_id(new)


@command("xtrim", -4, "write")
def xtrim(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    a = _parse_trim(argv, False)
    s = _stream(sm, argv[1])
    if s is None:
        return 0
    nodes = len(s.nodes)
    removed = _trim(s, a)
    if removed or len(s.nodes) != nodes:  # an emptied node may go and nothing else
        sm.dirty += 1
    return removed


@command("xdel", -3, "write fast")
def xdel(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    s = _stream(sm, argv[1])
    if s is None:
        return 0
    ids = [_parse_id_arg(arg, strict=True) for arg in argv[2:]]
    removed = sum(s.delete(sid) for sid in ids)
    if removed:
        sm.dirty += 1
    return removed


@command("xlen", 2, "readonly fast")
def xlen(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    s = sm.live_as(argv[1], now_ms, Stream)
    return 0 if s is None else len(s.entries)


# --- XRANGE / XREVRANGE -----------------------------------------------------------


def _range(sm: StateMachine, argv: list[bytes], now_ms: int, reverse: bool) -> Reply:
    start_arg, end_arg = (argv[3], argv[2]) if reverse else (argv[2], argv[3])
    start, end = _bounds(start_arg, end_arg)
    count = -1
    i = 4
    while i < len(argv):
        if argv[i].upper() == b"COUNT" and i + 1 < len(argv):
            count = _count_arg(argv[i + 1])
            i += 2
        else:
            raise SYNTAX_ERROR
    s = sm.live_as(argv[1], now_ms, Stream)
    if s is None:
        return []
    if count == 0:
        return NULL_ARRAY
    return [_entry(sid, f) for sid, f in s.range(start, end, max(count, 0), reverse=reverse)]


@command("xrange", -4, "readonly")
def xrange(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _range(sm, argv, now_ms, False)


@command("xrevrange", -4, "readonly")
def xrevrange(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _range(sm, argv, now_ms, True)


# --- XREAD / XREADGROUP -------------------------------------------------------------


class _ReadArgs:
    __slots__ = ("consumer", "count", "group", "ids", "keys", "noack")

    def __init__(self) -> None:
        self.count = 0
        self.group: bytes | None = None
        self.consumer = b""
        self.noack = False
        self.keys: list[bytes] = []
        self.ids: list[bytes] = []


def _parse_read(argv: list[bytes], xreadgroup: bool) -> _ReadArgs:
    """XREAD/XREADGROUP options (BLOCK is checked, then served non-blocking)."""
    a = _ReadArgs()
    n = len(argv)
    i = 1
    streams_at = 0
    while i < n:
        more = n - 1 - i
        opt = argv[i].upper()
        if opt == b"BLOCK" and more:
            try:
                timeout = parse_int(argv[i + 1])
            except RespError:
                raise RespError("ERR timeout is not an integer or out of range") from None
            if timeout < 0:
                raise RespError("ERR timeout is negative")
            i += 2
        elif opt == b"COUNT" and more:
            a.count = _count_arg(argv[i + 1])
            i += 2
        elif opt == b"STREAMS" and more:
            streams_at = i + 1
            if (n - streams_at) % 2:
                raise RespError(
                    "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' "
                    "must be specified."
                )
            break
        elif opt == b"GROUP" and more >= 2:
            if not xreadgroup:
                raise RespError(
                    "ERR The GROUP option is only supported by XREADGROUP. "
                    "You called XREAD instead."
                )
            a.group, a.consumer = argv[i + 1], argv[i + 2]
            i += 3
        elif opt == b"NOACK":
            if not xreadgroup:
                raise RespError(
                    "ERR The NOACK option is only supported by XREADGROUP. "
                    "You called XREAD instead."
                )
            a.noack = True
            i += 1
        else:
            raise SYNTAX_ERROR
    if not streams_at:
        raise SYNTAX_ERROR
    if xreadgroup and a.group is None:
        raise RespError("ERR Missing GROUP option for XREADGROUP")
    half = (n - streams_at) // 2
    a.keys = argv[streams_at : streams_at + half]
    a.ids = argv[streams_at + half :]
    return a


def _keys_after_streams(search_from: int) -> Callable[[list[bytes]], list[bytes]]:
    """XREAD/XREADGROUP's keys as Redis 7.0's key specs find them: the first
    half of what follows the first ``STREAMS`` at or after ``search_from``.
    On the internal form the time pair makes it over-approximate (an id
    counted as a key), which only ever lets ``apply`` delete a key that was
    due anyway."""

    def keys(argv: list[bytes]) -> list[bytes]:
        for i in range(search_from, len(argv)):
            if argv[i].upper() == b"STREAMS":
                rest = argv[i + 1 :]
                return rest[: len(rest) // 2]
        return []

    return keys


@command("xread", -4, "readonly blocking movablekeys", (0, 0, 0),
         find_keys=_keys_after_streams(1))
def xread(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    a = _parse_read(argv, False)
    starts: list[tuple[Stream | None, StreamID]] = []
    for key, id_arg in zip(a.keys, a.ids, strict=True):
        s = sm.live_as(key, now_ms, Stream)
        if id_arg == b"$":
            sid = ZERO_ID if s is None else s.last_id
        elif id_arg == b">":
            raise RespError(
                "ERR The > ID can be specified only when calling XREADGROUP using the GROUP "
                "<group> <consumer> option."
            )
        else:
            sid = _parse_id_arg(id_arg, strict=True)
        starts.append((s, sid))
    out = []
    for key, (s, sid) in zip(a.keys, starts, strict=True):
        if s is None:
            continue
        found = s.entries_after(sid, a.count)
        if found:
            out.append((key, [_entry(i, f) for i, f in found]))
    return _by_stream(out)


def _by_stream(served: list[tuple[bytes, list[Any]]]) -> Reply:
    """XREAD's reply: a map stream -> entries (RESP2: ``[[key, entries], ...]``),
    the null array when no stream was served. A key named twice keeps both
    answers, as a RESP2 array (a RESP3 map cannot hold a key twice)."""
    if not served:
        return NULL_ARRAY
    if len({key for key, _ in served}) < len(served):
        return [list(pair) for pair in served]
    return PairMap(served)


def _no_key_or_group(key: bytes, group: bytes, where: str = "") -> RespError:
    return RespError(
        f"NOGROUP No such key '{key.decode('utf-8', 'replace')}' or consumer group "
        f"'{group.decode('utf-8', 'replace')}'{where}"
    )


def rewrite_time(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    """XREADGROUP, XCLAIM, XAUTOCLAIM: the internal form carrying the time."""
    return _stamp(argv, now_ms, exact)


def _deliver_new(
    s: Stream, g: Group, c: Consumer, cname: bytes, count: int, noack: bool, now: int
) -> list[Any]:
    """XREADGROUP ``>``: entries after the group's last id, now pending on ``c``."""
    found = s.entries_after(g.last_id, count)
    for sid, _fields in found:
        s.advance(g, sid)
        if noack:
            continue
        nack = g.pel.get(sid)
        if nack is None:
            nack = g.pel[sid] = Nack(cname, now, 1)
        else:  # delivered before (SETID moved back): it moves to this consumer
            g.consumers[nack.consumer].pel.pop(sid, None)
            nack.consumer, nack.delivery_time, nack.delivery_count = cname, now, 1
        c.pel[sid] = nack
    return [_entry(sid, f) for sid, f in found]


def _deliver_history(s: Stream, c: Consumer, after: StreamID, count: int, now: int) -> list[Any]:
    """XREADGROUP with an id: the consumer's pending entries after it, again."""
    out: list[Any] = []
    for sid in c.pel.irange(after, None, inclusive=(False, True)):
        if count and len(out) == count:
            break
        fields = s.entries.get(sid)
        if fields is None:
            out.append([_fmt_id(sid), None])
            continue
        nack = c.pel[sid]
        nack.delivery_time = now
        nack.delivery_count += 1
        out.append(_entry(sid, fields))
    return out


@command("xreadgroup", -7, "write blocking movablekeys", (0, 0, 0), rewrite=rewrite_time,
         find_keys=_keys_after_streams(4))
def xreadgroup(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    argv, now = _split_time(argv, ctx, 7)
    a = _parse_read(argv, True)
    assert a.group is not None
    targets: list[tuple[bytes, Stream, Group, StreamID | None]] = []
    for key, id_arg in zip(a.keys, a.ids, strict=True):
        s = sm.live_as(key, now, Stream)
        g = None if s is None else s.groups.get(a.group)
        if s is None or g is None:
            raise _no_key_or_group(key, a.group, " in XREADGROUP with GROUP option")
        if id_arg == b"$":
            raise RespError(
                "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the "
                "history of this consumer by specifying a proper ID, or use the > ID to get new "
                "messages. The $ ID would just return an empty result set."
            )
        after = None if id_arg == b">" else _parse_id_arg(id_arg, strict=True)
        if after == MAX_ID:
            after = None  # Redis reads ">" as the max id: that id means ">" too
        targets.append((key, s, g, after))
    out = []
    for key, s, g, after in targets:
        if after is None:
            if s.entries_after(g.last_id, 1):
                c = g.consumer(a.consumer, now)
                out.append((key, _deliver_new(s, g, c, a.consumer, a.count, a.noack, now)))
        else:
            c = g.consumer(a.consumer, now)
            out.append((key, _deliver_history(s, c, after, a.count, now)))
    if out:
        sm.dirty += 1
    return _by_stream(out)


# --- XGROUP / XACK / XPENDING ---------------------------------------------------------

_XGROUP_ARITY = {b"CREATE": -5, b"SETID": -5, b"DESTROY": 4, b"CREATECONSUMER": 5,
                 b"DELCONSUMER": 5, b"HELP": 2}
_XGROUP_HELP = [
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
]


def _nogroup(key: bytes, group: bytes) -> RespError:
    return RespError(
        f"NOGROUP No such consumer group '{group.decode('utf-8', 'replace')}' for key name "
        f"'{key.decode('utf-8', 'replace')}'"
    )


def _check_xgroup(argv: list[bytes]) -> bytes:
    """XGROUP's subcommand (uppercase) once its arity is right."""
    sub = argv[1].upper()
    arity = _XGROUP_ARITY.get(sub)
    if arity is None:
        raise RespError(
            f"ERR unknown subcommand '{argv[1].decode('utf-8', 'replace')}'. Try XGROUP HELP."
        )
    if (len(argv) != arity) if arity > 0 else (len(argv) < -arity):
        raise RespError(
            f"ERR wrong number of arguments for 'xgroup|{sub.decode().lower()}' command"
        )
    return sub


def _xgroup_options(argv: list[bytes], create: bool) -> tuple[bool, int | None]:
    """CREATE/SETID options: ``(mkstream, entries_read or None)``."""
    mkstream = False
    entries_read = None
    i = 5
    while i < len(argv):
        opt = argv[i].upper()
        if create and opt == b"MKSTREAM":
            mkstream = True
            i += 1
        elif opt == b"ENTRIESREAD" and i + 1 < len(argv):
            entries_read = parse_int(argv[i + 1])
            if entries_read < UNKNOWN_READ:
                raise RespError("ERR value for ENTRIESREAD must be positive or -1")
            i += 2
        else:
            raise RespError(
                "ERR unknown subcommand or wrong number of arguments for "
                f"'{argv[1].decode('utf-8', 'replace')}'. Try XGROUP HELP."
            )
    return mkstream, entries_read


def rewrite_xgroup(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    """CREATECONSUMER records the consumer's seen time: the internal form."""
    if len(argv) > 1 and argv[1].upper() == b"CREATECONSUMER":
        return _stamp(argv, now_ms, exact)
    return argv


def _group_id(arg: bytes, s: Stream | None, strict: bool) -> StreamID:
    if arg == b"$":
        return ZERO_ID if s is None else s.last_id
    return _parse_id_arg(arg, strict=strict)


@command("xgroup", -2, "write", (2, 2, 1), rewrite=rewrite_xgroup)
def xgroup(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    now = None
    if argv[1].upper() == b"CREATECONSUMER":
        argv, now = _split_time(argv, ctx)
    sub = _check_xgroup(argv)
    if sub == b"HELP":
        return _XGROUP_HELP
    mkstream, entries_read = False, None
    if sub in (b"CREATE", b"SETID"):
        mkstream, entries_read = _xgroup_options(argv, sub == b"CREATE")
    key, name = argv[2], argv[3]
    s = _stream(sm, key)
    g = None if s is None else s.groups.get(name)
    if sub != b"CREATE" and sub != b"DESTROY" and g is None:
        if s is None:
            raise RespError(_NEEDS_KEY)
        raise _nogroup(key, name)
    if sub == b"CREATE":
        return _xgroup_create(sm, argv, s, mkstream, entries_read)
    if sub == b"DESTROY":
        if s is None:
            raise RespError(_NEEDS_KEY)
        if g is None:
            return 0
        del s.groups[name]
        sm.dirty += 1
        return 1
    assert g is not None and s is not None
    if sub == b"SETID":
        g.last_id = _group_id(argv[4], s, strict=False)
        g.entries_read = UNKNOWN_READ if entries_read is None else entries_read
        sm.dirty += 1
        return OK
    if sub == b"CREATECONSUMER":
        assert now is not None
        if argv[4] in g.consumers:
            return 0
        g.consumer(argv[4], now)
        sm.dirty += 1
        return 1
    return _delconsumer(sm, g, argv[4])


_NEEDS_KEY = (
    "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to "
    "use the MKSTREAM option to create an empty stream automatically."
)


def _xgroup_create(
    sm: StateMachine, argv: list[bytes], s: Stream | None, mkstream: bool, entries_read: int | None
) -> Reply:
    if s is None and not mkstream:
        raise RespError(_NEEDS_KEY)
    sid = _group_id(argv[4], s, strict=True)
    if s is not None and argv[3] in s.groups:
        raise RespError("BUSYGROUP Consumer Group name already exists")
    if s is None:
        s = Stream()
        sm.new_key(argv[2])
        sm.data[argv[2]] = s
    s.groups[argv[3]] = Group(sid, UNKNOWN_READ if entries_read is None else entries_read)
    sm.dirty += 1
    return OK


def _delconsumer(sm: StateMachine, g: Group, name: bytes) -> Reply:
    c = g.consumers.pop(name, None)
    if c is None:
        return 0
    for sid in c.pel:
        del g.pel[sid]
    sm.dirty += 1
    return len(c.pel)


@command("xack", -4, "write fast")
def xack(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    s = _stream(sm, argv[1])
    g = None if s is None else s.groups.get(argv[2])
    if g is None:
        return 0
    ids = [_parse_id_arg(arg, strict=True) for arg in argv[3:]]
    acked = sum(g.unlink(sid) is not None for sid in ids)
    if acked:
        sm.dirty += 1
    return acked


def _live_group(sm: StateMachine, key: bytes, name: bytes, now_ms: int) -> Group:
    """Read side: the group, or the NOGROUP error XPENDING gives."""
    s: Stream | None = sm.live_as(key, now_ms, Stream)
    g = None if s is None else s.groups.get(name)
    if g is None:
        raise _no_key_or_group(key, name)
    return g


@command("xpending", -3, "readonly")
def xpending(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    n = len(argv)
    min_idle = 0
    if n != 3 and not 6 <= n <= 9:
        raise SYNTAX_ERROR
    extended = n > 3
    if extended:
        i = 3
        if argv[3].upper() == b"IDLE":
            min_idle = parse_int(argv[4])
            if n < 8:
                raise SYNTAX_ERROR
            i = 5
        count = max(parse_int(argv[i + 2]), 0)
        start, end = _bounds(argv[i], argv[i + 1])
        cname = argv[i + 3] if i + 3 < n else None
    g = _live_group(sm, argv[1], argv[2], now_ms)
    if not extended:
        return _pending_summary(g)
    pel = g.pel
    if cname is not None:
        c = g.consumers.get(cname)
        if c is None:
            return []
        pel = c.pel
    out: list[Any] = []
    if count == 0 or start > end:
        return out
    for sid in pel.irange(start, end):
        nack = pel[sid]
        idle = now_ms - nack.delivery_time
        if min_idle and idle < min_idle:
            continue
        out.append([_fmt_id(sid), nack.consumer, max(idle, 0), nack.delivery_count])
        if len(out) == count:
            break
    return out


def _pending_summary(g: Group) -> Reply:
    if not g.pel:
        return [0, None, None, NULL_ARRAY]
    per = [[name, b"%d" % len(g.consumers[name].pel)] for name in sorted(g.consumers)
           if g.consumers[name].pel]
    return [len(g.pel), _fmt_id(g.pel.keys()[0]), _fmt_id(g.pel.keys()[-1]), per]


# --- XCLAIM / XAUTOCLAIM -------------------------------------------------------------


def _claim(g: Group, sid: StreamID, nack: Nack, cname: bytes, c: Consumer) -> None:
    """Move ``nack`` (already in the group PEL) to consumer ``c``."""
    old = g.consumers.get(nack.consumer)
    if old is not None:
        old.pel.pop(sid, None)
    nack.consumer = cname
    c.pel[sid] = nack


def _xclaim_options(
    argv: list[bytes], j: int, now: int
) -> tuple[int, int, bool, bool, StreamID | None]:
    """``(delivery_time, retrycount (-1: none), force, justid, lastid)``."""
    delivery = -1
    retry = -1
    force = justid = False
    lastid = None
    n = len(argv)
    while j < n:
        opt = argv[j].upper()
        more = n - 1 - j
        if opt == b"FORCE":
            force = True
        elif opt == b"JUSTID":
            justid = True
        elif opt in (b"IDLE", b"TIME", b"RETRYCOUNT") and more:
            j += 1
            try:
                value = parse_int(argv[j])
            except RespError:
                raise RespError(
                    f"ERR Invalid {opt.decode()} option argument for XCLAIM"
                ) from None
            if opt == b"IDLE":
                delivery = now - value
            elif opt == b"TIME":
                delivery = value
            else:
                retry = value
        elif opt == b"LASTID" and more:
            j += 1
            lastid = _parse_id_arg(argv[j], strict=True)
        else:
            raise RespError(
                f"ERR Unrecognized XCLAIM option '{argv[j].decode('utf-8', 'replace')}'"
            )
        j += 1
    if delivery < 0 or delivery > now:
        delivery = now
    return delivery, retry, force, justid, lastid


def _claim_group(sm: StateMachine, key: bytes, name: bytes) -> tuple[Stream, Group]:
    """Write side: the stream and group XCLAIM/XAUTOCLAIM work on, or NOGROUP."""
    s = _stream(sm, key)
    g = None if s is None else s.groups.get(name)
    if s is None or g is None:
        raise _no_key_or_group(key, name)
    return s, g


def _min_idle(arg: bytes, name: str) -> int:
    try:
        return max(parse_int(arg), 0)
    except RespError:
        raise RespError(f"ERR Invalid min-idle-time argument for {name}") from None


@command("xclaim", -6, "write fast", rewrite=rewrite_time)
def xclaim(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    argv, now = _split_time(argv, ctx, 6)
    s, g = _claim_group(sm, argv[1], argv[2])
    min_idle = _min_idle(argv[4], "XCLAIM")
    ids = []
    j = 5
    while j < len(argv):
        try:
            ids.append(_parse_id_arg(argv[j], strict=True))
        except RespError:
            break
        j += 1
    delivery, retry, force, justid, lastid = _xclaim_options(argv, j, now)
    changed = lastid is not None and lastid > g.last_id
    if changed:
        g.last_id = lastid  # type: ignore[assignment]
    cname = argv[3]
    c: Consumer | None = None
    out: list[Any] = []
    for sid in ids:
        nack = g.pel.get(sid)
        if sid not in s.entries:  # deleted meanwhile: it leaves the PEL, idle or not
            if nack is not None:
                g.unlink(sid)
                changed = True
            continue
        if nack is None:
            if not force:
                continue
            nack = g.pel[sid] = Nack(b"", now, 1)  # FORCE: no owner yet, no idle test
        elif min_idle and now - nack.delivery_time < min_idle:
            continue
        changed = True
        if c is None:
            c = g.consumer(cname, now)
        _claim(g, sid, nack, cname, c)
        nack.delivery_time = delivery
        if retry >= 0:
            nack.delivery_count = retry
        elif not justid:
            nack.delivery_count += 1
        out.append(_fmt_id(sid) if justid else _entry(sid, s.entries[sid]))
    if changed:
        sm.dirty += 1
    return out


@command("xautoclaim", -6, "write fast", rewrite=rewrite_time)
def xautoclaim(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    argv, now = _split_time(argv, ctx, 6)
    min_idle = _min_idle(argv[4], "XAUTOCLAIM")
    start, start_ex = _interval(argv[5], 0)
    if start_ex:
        nxt = _incr(start)
        if nxt is None:
            raise RespError("ERR invalid start ID for the interval")
        start = nxt
    count = 100
    justid = False
    j = 6
    while j < len(argv):
        opt = argv[j].upper()
        if opt == b"COUNT" and j + 1 < len(argv):
            try:
                count = parse_int(argv[j + 1])
            except RespError:
                count = 0
            if count < 1 or count > (1 << 63) // 10:
                raise RespError("ERR COUNT must be > 0")
            j += 2
        elif opt == b"JUSTID":
            justid = True
            j += 1
        else:
            raise SYNTAX_ERROR
    s, g = _claim_group(sm, argv[1], argv[2])
    cname = argv[3]
    c: Consumer | None = None
    attempts = count * 10
    claimed: list[Any] = []
    deleted: list[bytes] = []
    cursor = ZERO_ID
    # at most ``attempts`` entries are examined, and the one after is the cursor
    for sid in list(islice(g.pel.irange(start, None), attempts + 1)):
        if not attempts or not count:
            cursor = sid
            break
        attempts -= 1
        if sid not in s.entries:
            g.unlink(sid)
            deleted.append(_fmt_id(sid))
            count -= 1
            continue
        nack = g.pel[sid]
        if min_idle and now - nack.delivery_time < min_idle:
            continue
        count -= 1
        if c is None:
            c = g.consumer(cname, now)
        _claim(g, sid, nack, cname, c)
        nack.delivery_time = now
        if not justid:
            nack.delivery_count += 1
        claimed.append(_fmt_id(sid) if justid else _entry(sid, s.entries[sid]))
    if claimed or deleted:
        sm.dirty += 1
    return [_fmt_id(cursor), claimed, deleted]


# --- XSETID ---------------------------------------------------------------------------


@command("xsetid", -3, "write denyoom fast")
def xsetid(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    sid = _parse_id_arg(argv[2], strict=True)
    added: int | None = None
    max_deleted: StreamID | None = None
    i = 3
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"ENTRIESADDED" and i + 1 < len(argv):
            added = parse_int(argv[i + 1])
            if added < 0:
                raise RespError("ERR entries_added must be positive")
        elif opt == b"MAXDELETEDID" and i + 1 < len(argv):
            max_deleted = _parse_id_arg(argv[i + 1], strict=True)
            if sid < max_deleted:
                raise RespError("ERR The ID specified in XSETID is smaller than the provided "
                                "max_deleted_entry_id")
        else:
            raise SYNTAX_ERROR
        i += 2
    s = _stream(sm, argv[1])
    if s is None:
        raise _NO_SUCH_KEY
    if s.entries:
        if sid < s.entries.keys()[-1]:
            raise RespError(
                "ERR The ID specified in XSETID is smaller than the target stream top item"
            )
        if added is not None and added < len(s.entries):
            raise RespError(
                "ERR The entries_added specified in XSETID is smaller than the target stream length"
            )
    s.last_id = sid
    if added is not None:
        s.entries_added = added
    if max_deleted is not None and max_deleted != ZERO_ID:  # 0-0 leaves it, as in Redis
        s.max_deleted = max_deleted
    sm.dirty += 1
    return OK


# --- XINFO ----------------------------------------------------------------------------

_XINFO_HELP = [
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Prints this help.",
]
_XINFO_ARITY = {b"CONSUMERS": 4, b"GROUPS": 3, b"STREAM": -3, b"HELP": 2}


def _radix_nodes(s: Stream) -> int:
    """Redis's radix-tree node count for the nodes' keys (their first ids as
    16 big-endian bytes), assuming the tree is fully compressed."""
    keys = [ms.to_bytes(8, "big") + seq.to_bytes(8, "big") for ms, seq in map(_master, s.nodes)]
    return _rax_nodes(keys, 0) if keys else 1


def _rax_nodes(keys: list[bytes], depth: int) -> int:
    """Nodes of a compressed radix tree holding ``keys`` (sorted, equal
    length, sharing their first ``depth`` bytes), counted from the node at
    ``depth``: a leaf, a compressed node down to the next branch or leaf, or
    a branching node with one child node per next byte."""
    size = len(keys[0])
    if depth == size:
        return 1
    if len(keys) == 1:
        return 2
    first, last = keys[0], keys[-1]
    common = depth
    while first[common] == last[common]:
        common += 1
    if common > depth:
        return 1 + _rax_nodes(keys, common)
    total = 1
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i][depth] != keys[start][depth]:
            total += _rax_nodes(keys[start:i], depth + 1)
            start = i
    return total


def _edge(s: Stream, last: bool) -> Any:
    if not s.entries:
        return None
    sid = s.entries.keys()[-1 if last else 0]
    return _entry(sid, s.entries[sid])


def _read_or_none(value: int) -> int | None:
    return None if value == UNKNOWN_READ else value


def _group_info(s: Stream, name: bytes, g: Group) -> dict[bytes, Any]:
    return {b"name": name, b"consumers": len(g.consumers), b"pending": len(g.pel),
            b"last-delivered-id": _fmt_id(g.last_id),
            b"entries-read": _read_or_none(g.entries_read), b"lag": s.lag(g)}


def _stream_head(s: Stream) -> dict[bytes, Any]:
    return {b"length": len(s.entries), b"radix-tree-keys": len(s.nodes),
            b"radix-tree-nodes": _radix_nodes(s), b"last-generated-id": _fmt_id(s.last_id),
            b"max-deleted-entry-id": _fmt_id(s.max_deleted), b"entries-added": s.entries_added,
            b"recorded-first-entry-id": _fmt_id(s.first_id)}


def _stream_full(s: Stream, count: int) -> dict[bytes, Any]:
    entries = s.range(ZERO_ID, MAX_ID, count)
    groups = []
    for name in sorted(s.groups):
        g = s.groups[name]
        pel = [[_fmt_id(sid), n.consumer, n.delivery_time, n.delivery_count]
               for sid, n in g.pel.items()[: count or None]]
        consumers = []
        for cname in sorted(g.consumers):
            c = g.consumers[cname]
            cpel = [[_fmt_id(sid), n.delivery_time, n.delivery_count]
                    for sid, n in c.pel.items()[: count or None]]
            consumers.append({b"name": cname, b"seen-time": c.seen_time,
                              b"pel-count": len(c.pel), b"pending": cpel})
        groups.append({b"name": name, b"last-delivered-id": _fmt_id(g.last_id),
                       b"entries-read": _read_or_none(g.entries_read), b"lag": s.lag(g),
                       b"pel-count": len(g.pel), b"pending": pel, b"consumers": consumers})
    return {**_stream_head(s), b"entries": [_entry(i, f) for i, f in entries], b"groups": groups}


def _xinfo_stream(s: Stream, argv: list[bytes]) -> Reply:
    if len(argv) == 3:
        return {**_stream_head(s), b"groups": len(s.groups),
                b"first-entry": _edge(s, False), b"last-entry": _edge(s, True)}
    if argv[3].upper() != b"FULL" or len(argv) not in (4, 6) or (
        len(argv) == 6 and argv[4].upper() != b"COUNT"
    ):
        raise RespError(
            "ERR unknown subcommand or wrong number of arguments for "
            f"'{argv[1].decode('utf-8', 'replace')}'. Try XINFO HELP."
        )
    count = 10 if len(argv) == 4 else max(parse_int(argv[5]), 0)
    return _stream_full(s, count)


@command("xinfo", -2, "readonly", (2, 2, 1))
def xinfo(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    sub = argv[1].upper()
    arity = _XINFO_ARITY.get(sub)
    if arity is None:
        raise RespError(
            f"ERR unknown subcommand '{argv[1].decode('utf-8', 'replace')}'. Try XINFO HELP."
        )
    if (len(argv) != arity) if arity > 0 else (len(argv) < -arity):
        raise RespError(f"ERR wrong number of arguments for 'xinfo|{sub.decode().lower()}' command")
    if sub == b"HELP":
        return _XINFO_HELP
    s = sm.live_as(argv[2], now_ms, Stream)
    if s is None:
        raise _NO_SUCH_KEY
    if sub == b"STREAM":
        return _xinfo_stream(s, argv)
    if sub == b"GROUPS":
        return [_group_info(s, name, s.groups[name]) for name in sorted(s.groups)]
    g = s.groups.get(argv[3])
    if g is None:
        raise _nogroup(argv[2], argv[3])
    return [{b"name": name, b"pending": len(c.pel), b"idle": max(now_ms - c.seen_time, 0)}
            for name, c in sorted(g.consumers.items())]
