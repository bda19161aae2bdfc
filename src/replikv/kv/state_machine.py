"""The replicated state machine: an in-memory Redis-like data set.

Entry points that change the data:

- ``prepare(argv, now_ms, exact=...)`` is the ONE rewrite path: it validates
  a client write and rewrites it into deterministic form without applying
  it (the raft leader proposes what it returns and applies it only once
  committed, through ``apply_entry``).
- ``execute_write(argv, now_ms)`` runs on the leader-follower LEADER: it is
  ``prepare`` (exact) followed by apply, and returns ``(reply,
  cmds_to_log)``, as Redis builds its replication stream:

  * a relative TTL becomes absolute: ``SET k v EX 10`` -> ``SET k v PXAT t``,
    ``EXPIRE k 10`` -> ``PEXPIREAT k t``, ``SETEX``/``PSETEX`` ->
    ``SET k v PXAT t``; a TTL that is already due (``EXPIRE k -1``,
    ``EXPIREAT k <past>``) becomes ``DEL k``;
  * every key the command touches that is logically expired at ``now_ms``
    is deleted first and ``[b"DEL", key]`` is logged before the command;
  * a command that is already deterministic is logged as the very ``argv``
    list it came in (no copy), so the runtime can reuse the client's bytes
    (test ``cmds[-1] is argv``);
  * ``cmds_to_log`` is None when nothing changed (an error reply before any
    change, a no-op such as ``DEL missing``, ``SADD`` of members present).

- ``apply(cmds)`` runs on FOLLOWERS and on replay: it applies one log entry
  (a list of deterministic commands) and never reads a clock or an RNG.
  The commands that need a clock (EXPIRE, PEXPIRE, SETEX, PSETEX, SET with
  EX/PX) are refused by ``apply``; the leader never logs them.

Invariant (determinism): for any state S and any now_ms, if
``execute_write(argv, now_ms)`` on S yields ``cmds``, then ``apply(cmds)``
on a copy of S yields the same state (equal ``digest()``) and the same final
reply. The property test ``tests/property/test_state_machine_property.py``
checks it.

Data layout: ``data[key]`` is ``bytes`` (string), ``collections.deque``
(list), ``set`` (set) or ``dict`` (hash, field -> bytes). ``expires[key]`` is
the absolute unix time in ms at which ``key`` expires. Invariants:
``expires.keys() <= data.keys()``; no list, set or hash is ever empty (the
key is deleted instead); integers are stored as their decimal bytes.

Expiry: a key whose ``expires`` time is ``<= now_ms`` is logically gone.
Reads hide it but never delete it (as Redis replicas do); only the leader
deletes it, through a logged DEL (lazily in ``execute_write``, actively via
``expired_keys`` / ``expire_cycle``). ``apply`` never deletes a key because
of time, so a follower's state only changes through the log.

Errors: handlers raise ``RespError``; the dispatchers turn it into the reply.
A handler raises only before it has changed anything, so an error reply
never leaves a half-applied command behind.

Auxiliary indexes (not part of the replicated state, rebuilt on demand):
a min-heap of ``(when, key)`` for active expiry and a ``ScanIndex`` for
SCAN, both built lazily the first time they are needed and maintained on
every change afterwards.
"""

from __future__ import annotations

import heapq
import re
from collections import deque
from collections.abc import Callable
from hashlib import blake2b
from itertools import islice
from typing import Any

import msgpack

from replikv.core.replies import (
    NOT_INTEGER,
    NULL_ARRAY,
    OK,
    SYNTAX_ERROR,
    WRONGTYPE,
    RespError,
    wrong_arity,
)
from replikv.kv.commands import COMMANDS, unknown_command
from replikv.kv.glob import compile_glob, matches_all
from replikv.kv.scan_index import ScanIndex

__all__ = ["SNAPSHOT_VERSION", "StateMachine"]

Reply = Any
Cmds = list[list[bytes]]

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
_SEC_MAX = I64_MAX // 1000  # C's LLONG_MAX / 1000
_SEC_MIN = -(I64_MAX // 1000)  # C's LLONG_MIN / 1000 (truncates toward 0)

OVERFLOW = RespError("ERR increment or decrement would overflow")
HASH_NOT_INTEGER = RespError("ERR hash value is not an integer")
NOT_POSITIVE = RespError("ERR value is out of range, must be positive")
INVALID_CURSOR = RespError("ERR invalid cursor")
NEEDS_CLOCK = RespError("ERR command needs a clock and cannot be applied from the log")

SNAPSHOT_VERSION = 1
_T_STRING, _T_LIST, _T_SET, _T_HASH = 0, 1, 2, 3
_TYPE_NAMES = {bytes: "string", deque: "list", set: "set", dict: "hash"}

_DEL = b"DEL"
_PXAT = b"PXAT"


def _int(arg: bytes) -> int:
    """Parse a 64-bit signed integer exactly as Redis's string2ll does.

    Only canonical decimal is accepted: no sign ``+``, no leading zeros, no
    ``-0``, no spaces; otherwise NOT_INTEGER is raised.
    """
    # Fast path: up to 18 ASCII digits without a leading zero always fit.
    if arg.isdigit() and len(arg) < 19 and (arg[0] != 0x30 or len(arg) == 1):
        return int(arg)
    try:
        value = int(arg)
    except ValueError:
        raise NOT_INTEGER from None
    if b"%d" % value != arg or not I64_MIN <= value <= I64_MAX:
        raise NOT_INTEGER
    return value


def _expire_time_error(name: str) -> RespError:
    return RespError(f"ERR invalid expire time in '{name}' command")


def _as_list(value: Any) -> deque[bytes]:
    if type(value) is not deque:
        raise WRONGTYPE
    return value


class StateMachine:
    """The key space plus TTLs; see the module docstring for the rules."""

    __slots__ = ("_heap", "_scan", "data", "dirty", "expires")

    def __init__(self) -> None:
        self.data: dict[bytes, Any] = {}
        self.expires: dict[bytes, int] = {}
        # Count of changes made, as Redis's server.dirty: the leader logs a
        # command iff it moved this counter (or deleted expired keys first).
        self.dirty = 0
        self._heap: list[tuple[int, bytes]] | None = None
        self._scan: ScanIndex | None = None

    # ------------------------------------------------------------------ info

    @property
    def dbsize(self) -> int:
        """Number of keys, logically expired ones not yet deleted included."""
        return len(self.data)

    @property
    def expires_count(self) -> int:
        """Number of keys with a TTL."""
        return len(self.expires)

    def keyspace_info(self) -> str:
        """The INFO keyspace line for db0 (no line break)."""
        return f"db0:keys={len(self.data)},expires={len(self.expires)},avg_ttl=0"

    # ------------------------------------------------------ key bookkeeping

    def _new_key(self, key: bytes) -> None:
        """Call before storing a key that is not in ``data``."""
        if self._scan is not None:
            self._scan.add(key)

    def _del(self, key: bytes) -> bool:
        """Remove ``key`` and its TTL; True when it existed."""
        if self.data.pop(key, None) is None:
            return False
        if self.expires:
            self.expires.pop(key, None)
        if self._scan is not None:
            self._scan.discard(key)
        self.dirty += 1
        return True

    def _set_expire(self, key: bytes, when_ms: int) -> None:
        self.expires[key] = when_ms
        heap = self._heap
        if heap is not None:
            heapq.heappush(heap, (when_ms, key))
            if len(heap) > 2 * len(self.expires) + 64:
                self._heap = None  # too many stale entries: rebuild lazily

    def _live(self, key: bytes, now_ms: int) -> Any:
        """Read side: the value of ``key``, or None if missing or expired."""
        value = self.data.get(key)
        if value is not None and self.expires:
            when = self.expires.get(key)
            if when is not None and when <= now_ms:
                return None
        return value

    # ------------------------------------------------------------ leader side

    def prepare(
        self, argv: list[bytes], now_ms: int, *, exact: bool = True
    ) -> tuple[RespError | None, Cmds | None]:
        """The deterministic rewrite of a client write, WITHOUT applying it.

        Returns ``(error, None)`` when the command is refused before it could
        change anything (arity, syntax, an invalid TTL), ``(None, None)``
        when ``argv`` is not a write (serve it with :meth:`read`), else
        ``(None, cmds)``: the deterministic commands to log and apply.

        - A relative TTL becomes absolute at ``now_ms`` (``SET .. EX`` ->
          ``SET .. PXAT``, ``EXPIRE`` -> ``PEXPIREAT``, ``SETEX`` -> ``SET ..
          PXAT``); a command that is deterministic as sent is returned as
          the very ``argv`` list (``cmds[-1] is argv``).
        - ``exact=True`` (leader-follower: the cmds are applied to THIS
          state right away): every touched key logically expired at
          ``now_ms`` gets a ``DEL`` before the command, and an EXPIRE whose
          time is already due on a live key becomes ``DEL`` (as Redis
          replicates it). These decisions read the current state.
        - ``exact=False`` (raft: other entries may apply between now and
          this entry): nothing depends on the current state; the entry's
          timestamp travels with it and :meth:`apply_entry` decides expiry
          at apply time, identically on every replica.
        """
        entry = _WRITES.get(argv[0])
        if entry is None:
            entry = _WRITES.get(argv[0].upper())
            if entry is None:
                return None, None
        arity, rewrite, _apply, name, keys = entry
        argc = len(argv)
        if (argc != arity) if arity > 0 else (argc < -arity):
            return wrong_arity(name), None
        try:
            cmd = rewrite(self, argv, now_ms, exact)
        except RespError as err:
            return err, None
        if exact and self.expires and keys is not None:
            expires = self.expires
            pre = [[_DEL, k] for k in _touched(argv, keys) if expires.get(k, _NEVER) <= now_ms]
            if pre:
                pre.append(cmd)
                return None, pre
        return None, [cmd]

    def execute_write(self, argv: list[bytes], now_ms: int) -> tuple[Reply, Cmds | None]:
        """Run a client write on the leader: ``(reply, cmds_to_log)``.

        One rewrite path: :meth:`prepare` (exact), then apply. Commands that
        changed nothing (an error at apply time, ``DEL missing``) are not
        logged, and a rewritten command that did apply is logged in its
        minimal form (its NX/XX/GET conditions held on this very state).
        A read-only command is served as :meth:`read` would (nothing logged).
        """
        err, cmds = self.prepare(argv, now_ms)
        if err is not None:
            return err, None
        if cmds is None:
            return self.read(argv, now_ms), None
        main = cmds[-1]
        if len(cmds) > 1:
            for pre in cmds[:-1]:
                self._del(pre[1])
            pre_cmds: Cmds | None = cmds[:-1]
        else:
            pre_cmds = None
        entry = _WRITES.get(main[0]) or _WRITES[main[0].upper()]
        dirty = self.dirty
        try:
            reply = entry[2](self, main)
        except RespError as e:
            return e, pre_cmds
        if self.dirty == dirty:
            return reply, pre_cmds
        if main is not argv:
            if main[0] == b"SET":  # SET k v [NX|XX] [GET] PXAT t
                main = [b"SET", main[1], main[2], _PXAT, main[-1]]
            elif main[0] == b"PEXPIREAT":  # PEXPIREAT k t [NX|XX|GT|LT]
                main = main[:3]
            if pre_cmds is None:
                return reply, [main]
            return reply, [*pre_cmds, main]
        return reply, cmds

    def apply_entry(self, cmds: Cmds, now_ms: int) -> list[Reply]:
        """Apply a raft entry: :meth:`prepare` (``exact=False``) commands
        with the leader's timestamp ``now_ms`` that travels in the entry.

        For each command, every key it touches that is expired at ``now_ms``
        is deleted first and again after it ran (a TTL already due, e.g.
        ``EXPIRE k -1`` logged as ``PEXPIREAT k <past>``). A read-only
        command (a read inside MULTI) is served at ``now_ms``; ``EXPIREDUE
        key...`` (active expiry) deletes the listed keys due at ``now_ms``.
        Deterministic: the result depends only on the state and the entry.
        """
        replies: list[Reply] = []
        expires = self.expires
        for argv in cmds:
            if argv[0] == EXPIRE_DUE:
                for key in argv[1:]:
                    if self.expires.get(key, _NEVER) <= now_ms:
                        self._del(key)
                replies.append(OK)
                continue
            entry = _WRITES.get(argv[0]) or _WRITES.get(argv[0].upper())
            if entry is None:
                replies.append(self.read(argv, now_ms))
                continue
            keys = entry[4]
            touched = _touched(argv, keys) if self.expires and keys is not None else ()
            for key in touched:
                if self.expires.get(key, _NEVER) <= now_ms:
                    self._del(key)
            replies.extend(self.apply([argv]))
            expires = self.expires
            if expires and keys is not None:
                for key in _touched(argv, keys):
                    if expires.get(key, _NEVER) <= now_ms:
                        self._del(key)
        return replies

    def execute_transaction(
        self, queued: list[list[bytes]], now_ms: int
    ) -> tuple[list[Reply], Cmds | None]:
        """Run a MULTI/EXEC block: all replies, and its writes as ONE entry.

        Commands run in order at the same ``now_ms``; one failing at run time
        (WRONGTYPE, ...) does not stop the others, as in Redis. The entry is
        None when no command changed anything.
        """
        replies: list[Reply] = []
        log: Cmds = []
        for argv in queued:
            reply, cmds = self.execute_write(argv, now_ms)
            if cmds:
                log.extend(cmds)
            replies.append(reply)
        return replies, (log or None)

    def expired_keys(self, now_ms: int, limit: int) -> list[bytes]:
        """Up to ``limit`` keys expired at ``now_ms``, soonest first.

        Uses a min-heap of ``(when, key)`` (built on first use, O(n) once,
        then maintained), so a call costs O(limit log n) however many keys
        exist. Nothing is deleted: the leader logs DEL for them (see
        :meth:`expire_cycle`).
        """
        heap = self._heap
        if heap is None:
            heap = [(when, key) for key, when in self.expires.items()]
            heapq.heapify(heap)
            self._heap = heap
        expires = self.expires
        out: list[bytes] = []
        seen: set[bytes] = set()
        keep: list[tuple[int, bytes]] = []
        while heap and len(out) < limit:
            when, key = heap[0]
            if when > now_ms:
                break
            heapq.heappop(heap)
            if expires.get(key) == when and key not in seen:
                out.append(key)
                seen.add(key)
                keep.append((when, key))
            # else: stale entry (key deleted or TTL changed), dropped.
        for item in keep:  # still indexed until the DEL is applied
            heapq.heappush(heap, item)
        return out

    def expire_cycle(self, now_ms: int, limit: int) -> Cmds | None:
        """Leader's active expiry: delete up to ``limit`` due keys.

        Returns the DEL commands to log as one entry, or None.
        """
        keys = self.expired_keys(now_ms, limit)
        if not keys:
            return None
        for key in keys:
            self._del(key)
        return [[_DEL, key] for key in keys]

    # ---------------------------------------------------------- follower side

    def apply(self, cmds: Cmds) -> list[Reply]:
        """Apply one log entry (deterministic commands); one reply each.

        Never reads a clock: a TTL in the past is stored, not acted on.
        """
        replies: list[Reply] = []
        for argv in cmds:
            entry = _WRITES.get(argv[0])
            if entry is None:
                entry = _WRITES.get(argv[0].upper())
                if entry is None:
                    replies.append(unknown_command(argv))
                    continue
            arity, _rewrite, fn, name, _keys = entry
            argc = len(argv)
            if (argc != arity) if arity > 0 else (argc < -arity):
                replies.append(wrong_arity(name))
                continue
            try:
                replies.append(fn(self, argv))
            except RespError as err:
                replies.append(err)
        return replies

    # --------------------------------------------------------------- reads

    def read(self, argv: list[bytes], now_ms: int) -> Reply:
        """Serve a read-only command; expired keys are invisible, nothing changes."""
        entry = _READS.get(argv[0])
        if entry is None:
            entry = _READS.get(argv[0].upper())
            if entry is None:
                if argv[0].upper() in COMMANDS:
                    return RespError(
                        f"ERR '{argv[0].decode('utf-8', 'replace').lower()}' "
                        "is not a read-only data command"
                    )
                return unknown_command(argv)
        arity, fn, name = entry
        argc = len(argv)
        if (argc != arity) if arity > 0 else (argc < -arity):
            return wrong_arity(name)
        try:
            return fn(self, argv, now_ms)
        except RespError as err:
            return err

    # ------------------------------------------------------- snapshot/digest

    def snapshot(self) -> bytes:
        """The whole state (values and TTLs) as msgpack.

        Format: ``[SNAPSHOT_VERSION, [[key, type, payload, expire_ms|None], ...]]``
        with type 0 string (bytes), 1 list (array), 2 set (array), 3 hash
        (flat array field, value, ...).
        """
        expires = self.expires
        rows = []
        for key, value in self.data.items():
            t = type(value)
            if t is bytes:
                row = [key, _T_STRING, value]
            elif t is deque:
                row = [key, _T_LIST, list(value)]
            elif t is set:
                row = [key, _T_SET, list(value)]
            else:
                flat = []
                for field, fv in value.items():
                    flat.append(field)
                    flat.append(fv)
                row = [key, _T_HASH, flat]
            row.append(expires.get(key))
            rows.append(row)
        return msgpack.packb([SNAPSHOT_VERSION, rows], use_bin_type=True)

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a :meth:`snapshot`'s."""
        version, rows = msgpack.unpackb(data, raw=False, use_list=True)
        if version != SNAPSHOT_VERSION:
            raise ValueError(f"unknown snapshot version {version!r}")
        new_data: dict[bytes, Any] = {}
        new_expires: dict[bytes, int] = {}
        for key, t, payload, when in rows:
            if t == _T_STRING:
                value: Any = payload
            elif t == _T_LIST:
                value = deque(payload)
            elif t == _T_SET:
                value = set(payload)
            elif t == _T_HASH:
                it = iter(payload)
                value = dict(zip(it, it))
            else:
                raise ValueError(f"unknown value type {t!r} in snapshot")
            new_data[key] = value
            if when is not None:
                new_expires[key] = when
        self.data = new_data
        self.expires = new_expires
        self._heap = None
        self._scan = None
        self.dirty += 1

    def digest(self) -> bytes:
        """Order-independent 32-byte hash of keys, types, values and TTLs.

        The sum (mod 2**256) of one blake2b per key; set members and hash
        fields are likewise summed, so equal states give equal digests
        whatever the insertion order. Only the list order matters.
        """
        mask = (1 << 256) - 1
        total = 0
        expires = self.expires
        for key, value in self.data.items():
            h = blake2b(digest_size=32)
            h.update(b"%d:" % len(key))
            h.update(key)
            t = type(value)
            if t is bytes:
                h.update(b"s%d:" % len(value))
                h.update(value)
            elif t is deque:
                h.update(b"l%d:" % len(value))
                for item in value:
                    h.update(b"%d:" % len(item))
                    h.update(item)
            elif t is set:
                h.update(b"S%d:" % len(value))
                h.update(_unordered(value))
            else:
                h.update(b"h%d:" % len(value))
                h.update(_unordered(b"%d:%s%s" % (len(f), f, v) for f, v in value.items()))
            when = expires.get(key)
            h.update(b"n" if when is None else b"e%d" % when)
            total = (total + int.from_bytes(h.digest(), "little")) & mask
        return total.to_bytes(32, "little")

    # ====================================================== command handlers
    # Apply handlers: (self, argv) -> reply. Leader handlers:
    # (self, argv, now_ms) -> (reply, cmds|None). Read handlers:
    # (self, argv, now_ms) -> reply.

    # --- strings -------------------------------------------------------------

    def _a_set(self, argv: list[bytes]) -> Reply:
        if len(argv) == 3:
            key = argv[1]
            if self._scan is not None and key not in self.data:
                self._scan.add(key)
            self.data[key] = argv[2]
            if self.expires:
                self.expires.pop(key, None)
            self.dirty += 1
            return OK
        nx, xx, get, keepttl, when, _ = _parse_set(argv, None, "set")
        return self._do_set(argv[1], argv[2], nx, xx, get, keepttl, when)

    def _do_set(
        self,
        key: bytes,
        value: bytes,
        nx: bool,
        xx: bool,
        get: bool,
        keepttl: bool,
        when: int | None,
    ) -> Reply:
        data = self.data
        old = data.get(key)
        if get and old is not None and type(old) is not bytes:
            raise WRONGTYPE
        if (nx and old is not None) or (xx and old is None):
            return old if get else None
        if old is None:
            self._new_key(key)
        data[key] = value
        if when is not None:
            self._set_expire(key, when)
        elif not keepttl and self.expires:
            self.expires.pop(key, None)
        self.dirty += 1
        return old if get else OK

    def _a_needs_clock(self, argv: list[bytes]) -> Reply:
        raise NEEDS_CLOCK

    def _a_setnx(self, argv: list[bytes]) -> Reply:
        return 1 if self._do_set(argv[1], argv[2], True, False, False, False, None) == OK else 0

    def _a_cas(self, argv: list[bytes]) -> Reply:
        """CAS key expected new: set ``new`` iff the string at key equals ``expected``.

        1 if swapped, 0 if not (absent key, other value); the TTL is kept.
        Deterministic, so logged as sent (the register workload's cas).
        """
        current = self.data.get(argv[1])
        if current is None:
            return 0
        if type(current) is not bytes:
            raise WRONGTYPE
        if current != argv[2]:
            return 0
        self._do_set(argv[1], argv[3], False, False, False, True, None)
        return 1

    def _a_getset(self, argv: list[bytes]) -> Reply:
        return self._do_set(argv[1], argv[2], False, False, True, False, None)

    def _a_getdel(self, argv: list[bytes]) -> Reply:
        key = argv[1]
        value = self.data.get(key)
        if value is None:
            return None
        if type(value) is not bytes:
            raise WRONGTYPE
        self._del(key)
        return value

    def _a_mset(self, argv: list[bytes]) -> Reply:
        if len(argv) % 2 == 0:
            raise wrong_arity("mset")
        data = self.data
        expires = self.expires
        for i in range(1, len(argv), 2):
            key = argv[i]
            if key not in data:
                self._new_key(key)
            data[key] = argv[i + 1]
            if expires:
                expires.pop(key, None)
        self.dirty += 1
        return OK

    def _incrby(self, key: bytes, by: int) -> int:
        data = self.data
        old = data.get(key)
        if old is None:
            new = by
            self._new_key(key)
        elif type(old) is bytes:
            new = _int(old) + by
            if not I64_MIN <= new <= I64_MAX:
                raise OVERFLOW
        else:
            raise WRONGTYPE
        data[key] = b"%d" % new
        self.dirty += 1
        return new

    def _a_incr(self, argv: list[bytes]) -> Reply:
        return self._incrby(argv[1], 1)

    def _a_decr(self, argv: list[bytes]) -> Reply:
        return self._incrby(argv[1], -1)

    def _a_incrby(self, argv: list[bytes]) -> Reply:
        return self._incrby(argv[1], _int(argv[2]))

    def _a_decrby(self, argv: list[bytes]) -> Reply:
        by = _int(argv[2])
        if by == I64_MIN:
            raise RespError("ERR decrement would overflow")
        return self._incrby(argv[1], -by)

    def _a_append(self, argv: list[bytes]) -> Reply:
        key = argv[1]
        old = self.data.get(key)
        if old is None:
            self._new_key(key)
            new = argv[2]
        elif type(old) is bytes:
            new = old + argv[2]
        else:
            raise WRONGTYPE
        self.data[key] = new
        self.dirty += 1
        return len(new)

    def _r_get(self, argv: list[bytes], now_ms: int) -> Reply:
        key = argv[1]
        value = self.data.get(key)
        if value is None:
            return None
        if self.expires:
            when = self.expires.get(key)
            if when is not None and when <= now_ms:
                return None
        if type(value) is bytes:
            return value
        raise WRONGTYPE

    def _r_mget(self, argv: list[bytes], now_ms: int) -> Reply:
        out = []
        for key in argv[1:]:
            value = self._live(key, now_ms)
            out.append(value if type(value) is bytes else None)
        return out

    def _r_strlen(self, argv: list[bytes], now_ms: int) -> Reply:
        value = self._live(argv[1], now_ms)
        if value is None:
            return 0
        if type(value) is not bytes:
            raise WRONGTYPE
        return len(value)

    # --- keyspace --------------------------------------------------------------

    def _a_del(self, argv: list[bytes]) -> Reply:
        deleted = 0
        for key in argv[1:]:
            if self._del(key):
                deleted += 1
        return deleted

    def _a_persist(self, argv: list[bytes]) -> Reply:
        key = argv[1]
        if key in self.data and self.expires.pop(key, None) is not None:
            self.dirty += 1
            return 1
        return 0

    def _a_flushall(self, argv: list[bytes]) -> Reply:
        for opt in argv[1:]:
            if opt.upper() not in (b"ASYNC", b"SYNC"):
                raise SYNTAX_ERROR
        if self.data:
            self.data = {}
            self.expires = {}
            self._heap = None
            self._scan = None
            self.dirty += 1
        return OK

    def _a_expireat(self, argv: list[bytes], unit_ms: int, name: str) -> Reply:
        nx, xx, gt, lt = _parse_expire_flags(argv)
        when = _expire_when(argv[2], unit_ms, 0, name)
        key = argv[1]
        if key not in self.data or not self._expire_allowed(key, when, nx, xx, gt, lt):
            return 0
        self._set_expire(key, when)
        self.dirty += 1
        return 1

    def _expire_allowed(
        self, key: bytes, when: int, nx: bool, xx: bool, gt: bool, lt: bool
    ) -> bool:
        """The NX/XX/GT/LT conditions of EXPIRE (no TTL counts as infinite)."""
        if not (nx or xx or gt or lt):
            return True
        current = self.expires.get(key)
        if nx and current is not None:
            return False
        if xx and current is None:
            return False
        if gt and (current is None or when <= current):
            return False
        return not (lt and current is not None and when >= current)

    def _r_exists(self, argv: list[bytes], now_ms: int) -> Reply:
        return sum(1 for key in argv[1:] if self._live(key, now_ms) is not None)

    def _r_type(self, argv: list[bytes], now_ms: int) -> Reply:
        value = self._live(argv[1], now_ms)
        return "none" if value is None else _TYPE_NAMES[type(value)]

    def _ttl(self, key: bytes, now_ms: int, absolute: bool, unit_ms: int) -> int:
        if self._live(key, now_ms) is None:
            return -2
        when = self.expires.get(key)
        if when is None:
            return -1
        if absolute:
            return when if unit_ms == 1 else when // 1000
        remaining = max(when - now_ms, 0)
        return remaining if unit_ms == 1 else (remaining + 500) // 1000

    def _r_ttl(self, argv: list[bytes], now_ms: int) -> Reply:
        return self._ttl(argv[1], now_ms, False, 1000)

    def _r_pttl(self, argv: list[bytes], now_ms: int) -> Reply:
        return self._ttl(argv[1], now_ms, False, 1)

    def _r_expiretime(self, argv: list[bytes], now_ms: int) -> Reply:
        return self._ttl(argv[1], now_ms, True, 1000)

    def _r_pexpiretime(self, argv: list[bytes], now_ms: int) -> Reply:
        return self._ttl(argv[1], now_ms, True, 1)

    def _r_dbsize(self, argv: list[bytes], now_ms: int) -> Reply:
        return len(self.data)

    def _r_keys(self, argv: list[bytes], now_ms: int) -> Reply:
        pattern = argv[1]
        expires = self.expires
        if matches_all(pattern):
            if not expires:
                return list(self.data)
            return [k for k in self.data if not (k in expires and expires[k] <= now_ms)]
        pred = compile_glob(pattern)
        return [k for k in self.data if pred(k) and not (k in expires and expires[k] <= now_ms)]

    def _r_scan(self, argv: list[bytes], now_ms: int) -> Reply:
        """SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]; see kv/scan_index.py."""
        cursor = _parse_cursor(argv[1])
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
                count = _int(arg)
                if count < 1:
                    raise SYNTAX_ERROR
            elif opt == b"MATCH":
                pred = None if matches_all(arg) else compile_glob(arg)
            elif opt == b"TYPE":
                want_type = arg.decode("utf-8", "replace").lower()
            else:
                raise SYNTAX_ERROR
            i += 2
        if self._scan is None:
            self._scan = ScanIndex(self.data)
        nxt, keys = self._scan.scan(cursor, count)
        out = []
        for key in keys:
            value = self._live(key, now_ms)
            if value is None:
                continue
            if pred is not None and not pred(key):
                continue
            if want_type is not None and _TYPE_NAMES[type(value)] != want_type:
                continue
            out.append(key)
        return [b"%d" % nxt, out]

    # --- lists -----------------------------------------------------------------

    def _push(self, argv: list[bytes], left: bool) -> Reply:
        key = argv[1]
        lst = self.data.get(key)
        if lst is None:
            self._new_key(key)
            lst = self.data[key] = deque()
        elif type(lst) is not deque:
            raise WRONGTYPE
        if left:
            lst.extendleft(argv[2:])
        else:
            lst.extend(argv[2:])
        self.dirty += 1
        return len(lst)

    def _a_lpush(self, argv: list[bytes]) -> Reply:
        return self._push(argv, True)

    def _a_rpush(self, argv: list[bytes]) -> Reply:
        return self._push(argv, False)

    def _pop(self, argv: list[bytes], left: bool) -> Reply:
        if len(argv) > 3:
            raise wrong_arity("lpop" if left else "rpop")
        count = None
        if len(argv) == 3:
            try:
                count = _int(argv[2])
            except RespError:
                raise NOT_POSITIVE from None
            if count < 0:
                raise NOT_POSITIVE
        key = argv[1]
        lst = self.data.get(key)
        if lst is None:
            return None if count is None else NULL_ARRAY
        lst = _as_list(lst)
        pop = lst.popleft if left else lst.pop
        if count is None:
            out: Reply = pop()
        elif count == 0:
            return []
        else:
            out = [pop() for _ in range(min(count, len(lst)))]
        if not lst:
            self._del(key)
        self.dirty += 1
        return out

    def _a_lpop(self, argv: list[bytes]) -> Reply:
        return self._pop(argv, True)

    def _a_rpop(self, argv: list[bytes]) -> Reply:
        return self._pop(argv, False)

    def _r_lrange(self, argv: list[bytes], now_ms: int) -> Reply:
        start = _int(argv[2])
        stop = _int(argv[3])
        value = self._live(argv[1], now_ms)
        if value is None:
            return []
        lst = _as_list(value)
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

    def _r_llen(self, argv: list[bytes], now_ms: int) -> Reply:
        value = self._live(argv[1], now_ms)
        return 0 if value is None else len(_as_list(value))

    # --- sets ------------------------------------------------------------------

    def _a_sadd(self, argv: list[bytes]) -> Reply:
        key = argv[1]
        members = self.data.get(key)
        if members is None:
            self._new_key(key)
            members = self.data[key] = set()
        elif type(members) is not set:
            raise WRONGTYPE
        before = len(members)
        members.update(argv[2:])
        added = len(members) - before
        if added:
            self.dirty += 1
        return added

    def _a_srem(self, argv: list[bytes]) -> Reply:
        key = argv[1]
        members = self.data.get(key)
        if members is None:
            return 0
        if type(members) is not set:
            raise WRONGTYPE
        before = len(members)
        members.difference_update(argv[2:])
        removed = before - len(members)
        if removed:
            if not members:
                self._del(key)
            self.dirty += 1
        return removed

    def _set_of(self, key: bytes, now_ms: int) -> set[bytes] | None:
        value = self._live(key, now_ms)
        if value is not None and type(value) is not set:
            raise WRONGTYPE
        return value

    def _r_smembers(self, argv: list[bytes], now_ms: int) -> Reply:
        members = self._set_of(argv[1], now_ms)
        return set() if members is None else set(members)

    def _r_sismember(self, argv: list[bytes], now_ms: int) -> Reply:
        members = self._set_of(argv[1], now_ms)
        return 1 if members is not None and argv[2] in members else 0

    def _r_scard(self, argv: list[bytes], now_ms: int) -> Reply:
        members = self._set_of(argv[1], now_ms)
        return 0 if members is None else len(members)

    # --- hashes ----------------------------------------------------------------

    def _a_hset(self, argv: list[bytes]) -> Reply:
        if len(argv) % 2 == 1:
            raise wrong_arity("hset")
        key = argv[1]
        fields = self.data.get(key)
        if fields is None:
            self._new_key(key)
            fields = self.data[key] = {}
        elif type(fields) is not dict:
            raise WRONGTYPE
        before = len(fields)
        for i in range(2, len(argv), 2):
            fields[argv[i]] = argv[i + 1]
        self.dirty += 1
        return len(fields) - before

    def _a_hdel(self, argv: list[bytes]) -> Reply:
        key = argv[1]
        fields = self.data.get(key)
        if fields is None:
            return 0
        if type(fields) is not dict:
            raise WRONGTYPE
        removed = 0
        for field in argv[2:]:
            if fields.pop(field, None) is not None:
                removed += 1
        if removed:
            if not fields:
                self._del(key)
            self.dirty += 1
        return removed

    def _a_hincrby(self, argv: list[bytes]) -> Reply:
        by = _int(argv[3])
        key = argv[1]
        fields = self.data.get(key)
        if fields is not None and type(fields) is not dict:
            raise WRONGTYPE
        old_raw = None if fields is None else fields.get(argv[2])
        if old_raw is None:
            new = by
        else:
            try:
                old = _int(old_raw)
            except RespError:
                raise HASH_NOT_INTEGER from None
            new = old + by
            if not I64_MIN <= new <= I64_MAX:
                raise OVERFLOW
        if fields is None:
            self._new_key(key)
            fields = self.data[key] = {}
        fields[argv[2]] = b"%d" % new
        self.dirty += 1
        return new

    def _hash_of(self, key: bytes, now_ms: int) -> dict[bytes, bytes] | None:
        value = self._live(key, now_ms)
        if value is not None and type(value) is not dict:
            raise WRONGTYPE
        return value

    def _r_hget(self, argv: list[bytes], now_ms: int) -> Reply:
        fields = self._hash_of(argv[1], now_ms)
        return None if fields is None else fields.get(argv[2])

    def _r_hmget(self, argv: list[bytes], now_ms: int) -> Reply:
        fields = self._hash_of(argv[1], now_ms) or {}
        return [fields.get(f) for f in argv[2:]]

    def _r_hexists(self, argv: list[bytes], now_ms: int) -> Reply:
        fields = self._hash_of(argv[1], now_ms)
        return 1 if fields is not None and argv[2] in fields else 0

    def _r_hgetall(self, argv: list[bytes], now_ms: int) -> Reply:
        fields = self._hash_of(argv[1], now_ms)
        return {} if fields is None else dict(fields)

    def _r_hlen(self, argv: list[bytes], now_ms: int) -> Reply:
        fields = self._hash_of(argv[1], now_ms)
        return 0 if fields is None else len(fields)


# ============================================================ parsing helpers

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
        ms = _int(expire_arg)
        seconds = bool(flags & (_SET_EX | _SET_EXAT))
        if ms <= 0 or (seconds and ms > _SEC_MAX):
            raise _expire_time_error(name)
        if seconds:
            ms *= 1000
        if flags & (_SET_EX | _SET_PX):
            if now_ms is None:
                raise NEEDS_CLOCK
            ms += now_ms
            relative = True
        if ms > I64_MAX:
            raise _expire_time_error(name)
        when = ms
    return (
        bool(flags & _SET_NX),
        bool(flags & _SET_XX),
        bool(flags & _SET_GET),
        bool(flags & _SET_KEEPTTL),
        when,
        relative,
    )


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
    when = _int(arg)
    if unit_ms == 1000:
        if when > _SEC_MAX or when < _SEC_MIN:
            raise _expire_time_error(name)
        when *= 1000
    if when > I64_MAX - base_ms:
        raise _expire_time_error(name)
    return when + base_ms


_CURSOR_RE = re.compile(rb"[+-]?[0-9]+")


def _parse_cursor(arg: bytes) -> int:
    """A SCAN cursor as Redis reads it (strtoul: sign allowed, wraps mod 2**64)."""
    if _CURSOR_RE.fullmatch(arg) is None or len(arg) > 21:  # 2**64 has 20 digits (int() refuses > 4300)
        raise INVALID_CURSOR
    value = int(arg)
    if abs(value) >= 1 << 64:
        raise INVALID_CURSOR
    return value % (1 << 64)


def _unordered(items: Any) -> bytes:
    """Order-independent hash of a collection of distinct byte strings."""
    total = 0
    for item in items:
        total += int.from_bytes(blake2b(item, digest_size=32).digest(), "little")
    return (total & ((1 << 256) - 1)).to_bytes(32, "little")


# ============================================================ dispatch tables

RewriteFn = Callable[[StateMachine, list[bytes], int, bool], list[bytes]]
ApplyFn = Callable[[StateMachine, list[bytes]], Reply]
ReadFn = Callable[[StateMachine, list[bytes], int], Reply]
KeySpec = tuple[int, int, int] | None  # (first, last, step) as in kv/commands.py; None: keyless

EXPIRE_DUE = b"EXPIREDUE"  # log-only: active expiry in raft entries (see apply_entry)
_NEVER = I64_MAX + 1


def _touched(argv: list[bytes], keys: tuple[int, int, int]) -> list[bytes]:
    first, last, step = keys
    if first == 1 and last == 1:
        return [argv[1]]
    stop = len(argv) if last < 0 else last + 1
    return argv[first:stop:step]


def _as_sent(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    """A command deterministic as sent: logged as the very argv list."""
    return argv


def _rw_set(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    """SET .. EX/PX t -> SET k v [NX|XX] [GET] PXAT abs; anything else as sent."""
    if len(argv) == 3:
        return argv
    nx, xx, get, _keepttl, when, relative = _parse_set(argv, now_ms, "set")
    if not relative:
        return argv
    cmd = [b"SET", argv[1], argv[2]]
    if nx:
        cmd.append(b"NX")
    if xx:
        cmd.append(b"XX")
    if get:
        cmd.append(b"GET")
    cmd += [_PXAT, b"%d" % when]  # type: ignore[operator]
    return cmd


def _rw_setex(unit_ms: int) -> RewriteFn:
    name = "setex" if unit_ms == 1000 else "psetex"

    def rewrite(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
        ttl = _int(argv[2])
        if ttl <= 0 or (unit_ms == 1000 and ttl > _SEC_MAX):
            raise _expire_time_error(name)
        when = ttl * unit_ms + now_ms
        if when > I64_MAX:
            raise _expire_time_error(name)
        return [b"SET", argv[1], argv[3], _PXAT, b"%d" % when]

    return rewrite


def _rw_expire(unit_ms: int, relative: bool, name: str) -> RewriteFn:
    def rewrite(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
        nx, xx, gt, lt = _parse_expire_flags(argv)
        when = _expire_when(argv[2], unit_ms, now_ms if relative else 0, name)
        key = argv[1]
        if exact and when <= now_ms:  # already due: Redis replicates this as a DEL
            live = key in sm.data and sm.expires.get(key, _NEVER) > now_ms
            if live and sm._expire_allowed(key, when, nx, xx, gt, lt):
                return [_DEL, key]
        if not relative:
            return argv
        return [b"PEXPIREAT", key, b"%d" % when, *argv[3:]]

    return rewrite


SM = StateMachine
_K1: KeySpec = (1, 1, 1)
_WRITE_FNS: dict[str, tuple[RewriteFn, ApplyFn, KeySpec]] = {
    "set": (_rw_set, SM._a_set, _K1),
    "write": (_rw_set, SM._a_set, _K1),
    "setnx": (_as_sent, SM._a_setnx, _K1),
    "setex": (_rw_setex(1000), SM._a_needs_clock, _K1),
    "psetex": (_rw_setex(1), SM._a_needs_clock, _K1),
    "getset": (_as_sent, SM._a_getset, _K1),
    "cas": (_as_sent, SM._a_cas, _K1),
    "getdel": (_as_sent, SM._a_getdel, _K1),
    "mset": (_as_sent, SM._a_mset, (1, -1, 2)),
    "incr": (_as_sent, SM._a_incr, _K1),
    "decr": (_as_sent, SM._a_decr, _K1),
    "incrby": (_as_sent, SM._a_incrby, _K1),
    "decrby": (_as_sent, SM._a_decrby, _K1),
    "append": (_as_sent, SM._a_append, _K1),
    "del": (_as_sent, SM._a_del, (1, -1, 1)),
    "unlink": (_as_sent, SM._a_del, (1, -1, 1)),
    "persist": (_as_sent, SM._a_persist, _K1),
    "flushall": (_as_sent, SM._a_flushall, None),
    "expire": (_rw_expire(1000, True, "expire"), SM._a_needs_clock, _K1),
    "pexpire": (_rw_expire(1, True, "pexpire"), SM._a_needs_clock, _K1),
    "expireat": (
        _rw_expire(1000, False, "expireat"),
        lambda sm, argv: sm._a_expireat(argv, 1000, "expireat"),
        _K1,
    ),
    "pexpireat": (
        _rw_expire(1, False, "pexpireat"),
        lambda sm, argv: sm._a_expireat(argv, 1, "pexpireat"),
        _K1,
    ),
    "lpush": (_as_sent, SM._a_lpush, _K1),
    "rpush": (_as_sent, SM._a_rpush, _K1),
    "lpop": (_as_sent, SM._a_lpop, _K1),
    "rpop": (_as_sent, SM._a_rpop, _K1),
    "sadd": (_as_sent, SM._a_sadd, _K1),
    "srem": (_as_sent, SM._a_srem, _K1),
    "hset": (_as_sent, SM._a_hset, _K1),
    "hdel": (_as_sent, SM._a_hdel, _K1),
    "hincrby": (_as_sent, SM._a_hincrby, _K1),
}

_READ_FNS: dict[str, ReadFn] = {
    "get": SM._r_get,
    "read": SM._r_get,
    "mget": SM._r_mget,
    "strlen": SM._r_strlen,
    "exists": SM._r_exists,
    "type": SM._r_type,
    "ttl": SM._r_ttl,
    "pttl": SM._r_pttl,
    "expiretime": SM._r_expiretime,
    "pexpiretime": SM._r_pexpiretime,
    "keys": SM._r_keys,
    "scan": SM._r_scan,
    "dbsize": SM._r_dbsize,
    "lrange": SM._r_lrange,
    "llen": SM._r_llen,
    "smembers": SM._r_smembers,
    "sismember": SM._r_sismember,
    "scard": SM._r_scard,
    "hget": SM._r_hget,
    "hmget": SM._r_hmget,
    "hexists": SM._r_hexists,
    "hgetall": SM._r_hgetall,
    "hlen": SM._r_hlen,
}

# (arity, rewrite fn, apply fn, name, keys) keyed by UPPER and lower name, so
# the usual spellings cost one dict lookup.
_WRITES: dict[bytes, tuple[int, RewriteFn, ApplyFn, str, KeySpec]] = {}
_READS: dict[bytes, tuple[int, ReadFn, str]] = {}
for _name, (_rewrite, _apply, _keys) in _WRITE_FNS.items():
    _spec = COMMANDS[_name.upper().encode()]
    if not _spec.is_write:
        raise RuntimeError(f"{_name} must be flagged write in kv/commands.py")
    for _k in (_name.upper().encode(), _name.encode()):
        _WRITES[_k] = (_spec.arity, _rewrite, _apply, _name, _keys)
for _name, _read in _READ_FNS.items():
    _spec = COMMANDS[_name.upper().encode()]
    if not _spec.is_readonly:
        raise RuntimeError(f"{_name} must be flagged readonly in kv/commands.py")
    for _k in (_name.upper().encode(), _name.encode()):
        _READS[_k] = (_spec.arity, _read, _name)
del _name, _rewrite, _apply, _keys, _read, _spec, _k

#: Names of the data commands the state machine serves (uppercase).
WRITE_COMMANDS = frozenset(n.upper() for n in _WRITE_FNS)
READ_COMMANDS = frozenset(n.upper() for n in _READ_FNS)
