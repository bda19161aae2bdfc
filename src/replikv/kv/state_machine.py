"""The replicated state machine: an in-memory Redis-like data set.

This module is the facade: the data, the entry points, and the key
bookkeeping the data-type families use. The rest lives beside it:
``commands.py`` (the one command table: arity, flags, keys, and each data
command's operation and rewrite), ``types/`` (one module per data type, the
operations), ``rewrite.py`` (the leader's deterministic rewrite),
``expiry.py`` (TTLs), ``dump.py`` (snapshot bytes and digest),
``context.py`` (ApplyContext).

Entry points that change the data, and which role uses which:

- ``apply(cmds, ctx)`` is the ONE apply path: it applies one log entry (a
  list of deterministic commands) and returns one reply per command. Every
  replica of every mode applies what it finds in the log through it:
  leader-follower followers and log replay (``ctx.now_ms`` None: the log
  states every deletion, nothing is deleted because of time), raft on every
  node including the leader once an entry commits (``ctx.now_ms`` the
  entry's time: keys a command touches that are due then are deleted before
  and after it; ``EXPIREDUE`` deletes the listed due keys). It never reads
  a clock or an RNG. Commands that need a clock (EXPIRE, PEXPIRE, SETEX,
  PSETEX, SET with EX/PX) are refused by ``apply``; no leader logs them.
- ``prepare(argv, ctx, exact=...)`` is the ONE rewrite path
  (``kv/rewrite.py``): it validates a client write and returns its
  deterministic commands WITHOUT applying them. Raft's leader proposes what
  it returns (``exact=False``) and applies it through ``apply`` once
  committed.
- ``execute(argv, ctx)`` is the leader-follower leader's fast path: one
  pass that is ``prepare(argv, ctx)`` (exact) followed by what
  ``apply(cmds, ctx_without_time)`` does, returning ``(reply,
  cmds_to_log)`` as Redis builds its replication stream. It exists because
  that leader applies a write BEFORE logging it (it answers from the
  applied state and logs only what changed something): ``cmds_to_log`` is
  None when nothing changed (an error reply, ``DEL missing``, ``SADD`` of
  members present), and a rewritten command that applied is logged in its
  minimal form (its NX/XX/GET conditions held on this very state; the
  spec's ``logged_as``). ``execute_transaction`` runs a MULTI block
  through it as one entry.

Invariant (determinism): for any state S and any now_ms, if
``execute(argv, ctx)`` on S yields ``cmds``, then ``apply(cmds,
ApplyContext(None))`` on a copy of S yields the same state (equal
``digest()``) and the same final reply (except for a script, whose
``cmds`` are the writes it made: the follower's replies are theirs); and
``prepare(argv, ctx, exact=False)`` then ``apply(cmds, ctx)`` on S yields
the same reply and state as ``execute``. Scripts (EVAL, EVALSHA) carry
their own ``execute`` in the table: the leader runs them and logs their
effects, raft logs them and runs them at apply (``kv/types/scripting.py``). The property test
``tests/property/test_state_machine_property.py`` and
``tests/unit/test_state_machine_prepare.py`` check them.

Data layout: ``data[key]`` holds a value of one of the registered value
types (``kv/values.py``): ``bytes`` (string), ``collections.deque`` (list),
``set`` (set), ``dict`` (hash, field -> bytes). ``expires[key]`` is the
absolute unix time in ms at which ``key`` expires. Invariants:
``expires.keys() <= data.keys()``; no list, set or hash is ever empty (the
key is deleted instead); integers are stored as their decimal bytes.

Errors: operations raise ``RespError``; the entry points turn it into the
reply. An operation raises only before it has changed anything, so an error
reply never leaves a half-applied command behind.

``changes`` (``kv/watch.py``) records the log index at which each key
last changed, for WATCH; the modes feed it (raft's application at apply,
leader-follower as it logs) and raft's snapshot carries it. It is not in
``snapshot()`` or ``digest()``: it is about the log, not the data.

Locks (``kv/locks.py``, ``kv/types/locks.py``): ``locks`` is the lock
table, replicated beside the key space but not in it (DEL, KEYS, DBSIZE,
FLUSHALL never touch it); it is in ``snapshot()``, ``digest()`` and a slot
move's ``export_keys``/``import_keys``/``drop_keys``.

Auxiliary indexes (not part of the replicated state, rebuilt on demand):
the expiry heap (``kv/expiry.py``) and a ``ScanIndex`` for SCAN
(``kv/scan_index.py``), both built lazily the first time they are needed
and maintained on every change afterwards through :meth:`new_key`,
:meth:`delete` and :meth:`set_expire`, which the families must use.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from replikv.core.replies import WRONGTYPE, RespError, wrong_arity
from replikv.core.resp import command_bytes
from replikv.kv import dump, expiry
from replikv.kv.args import NEEDS_CLOCK
from replikv.kv.commands import COMMANDS, unknown_command
from replikv.kv.context import ApplyContext
from replikv.kv.dump import SNAPSHOT_VERSION
from replikv.kv.expiry import EXPIRE_DUE, delete_due
from replikv.kv.locks import LockTable
from replikv.kv.lua import ScriptEngine
from replikv.kv.rewrite import prepare
from replikv.kv.scan_index import ScanIndex
from replikv.kv.watch import ChangeIndex

if TYPE_CHECKING:
    from replikv.config import NodeOptions

__all__ = ["EXPIRE_DUE", "SNAPSHOT_VERSION", "ApplyContext", "StateMachine"]

Reply = Any
Cmds = list[list[bytes]]

_spec = COMMANDS.get  # the one command table, looked up by the name as sent, then uppercased



class StateMachine:
    """The key space plus TTLs; see the module docstring for the rules."""

    __slots__ = ("_scripts", "changes", "data", "dirty", "expires", "expiry_heap", "limits", "locks",
                 "logged_in_block", "scan_index")

    def __init__(self) -> None:
        self.data: dict[bytes, Any] = {}
        self.expires: dict[bytes, int] = {}
        # Count of changes made, as Redis's server.dirty: the leader logs a
        # command iff it moved this counter (or deleted expired keys first).
        self.dirty = 0
        self.expiry_heap: list[tuple[int, bytes]] | None = None
        self.scan_index: ScanIndex | None = None
        self.changes = ChangeIndex()  # WATCH: where each key last changed (kv/watch.py)
        self.locks = LockTable()  # named locks, beside the key space (kv/locks.py)
        self._scripts: ScriptEngine | None = None
        # the node's options on a leader-follower node (None in the other modes): their
        # ``max_command_bytes`` bounds what a leader logs as one entry: one script's effects
        # (kv/types/scripting.py), a MULTI block's writes (execute_transaction)
        self.limits: NodeOptions | None = None
        # the command_bytes a MULTI block being executed has logged before its current
        # command (0 outside one): where a script in the block starts counting its effects
        self.logged_in_block = 0

    @property
    def scripts(self) -> ScriptEngine:
        """This node's Lua runtime and script cache (``kv/lua.py``), made on
        first use; not part of the replicated state (no snapshot, no digest)."""
        if self._scripts is None:
            self._scripts = ScriptEngine()
        return self._scripts

    def set_string(self, key: bytes, value: bytes) -> None:
        """``SET key value`` with no option, done: the key holds ``value`` whatever it held
        before, with no TTL, and counts as changed (``dirty``). The one copy of SET's hot path:
        ``set_`` and the multi-leader view (``kv/crdt_view.materialize``) both call it."""
        if self.scan_index is not None and key not in self.data:
            self.scan_index.add(key)
        self.data[key] = value
        if self.expires:
            self.expires.pop(key, None)
        self.dirty += 1

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

    # --------------------------------------------------------- the entry points

    def apply(self, cmds: Cmds, ctx: ApplyContext) -> list[Reply]:
        """Apply one log entry (deterministic commands); one reply each.

        With ``ctx.now_ms`` None nothing is deleted because of time; with a
        time, the keys each command touches that are due then are deleted
        before and after it. Every operation receives ``ctx``.
        """
        replies: list[Reply] = []
        now = ctx.now_ms
        for argv in cmds:
            spec = _spec(argv[0])
            if spec is None:
                spec = _spec(argv[0].upper())
            if spec is None or (fn := spec.apply) is None:
                replies.append(self._apply_non_write(argv, now))
                continue
            arity = spec.arity
            argc = len(argv)
            if (argc != arity) if arity > 0 else (argc < -arity):
                replies.append(wrong_arity(spec.name))
                continue
            if now is None:
                try:
                    replies.append(fn(self, argv, ctx))
                except RespError as err:
                    replies.append(err)
                continue
            keys = spec.keys(argv)
            if keys and self.expires:
                delete_due(self, keys, now)
            try:
                replies.append(fn(self, argv, ctx))
            except RespError as err:
                replies.append(err)
            if keys and self.expires:
                delete_due(self, keys, now)
        return replies

    def apply_entries(self, entries: Iterable[list[Any]], first_index: int, ctx: ApplyContext) -> None:
        """Apply log entries (``[epoch, cmds, ...]``, numbered from ``first_index``) as a
        replica does, with no time (``ctx.now_ms`` None: the log states every deletion),
        and record in ``changes`` the index at which each changed its keys (WATCH).

        The same as ``apply(entry[1], ctx)`` then ``changes.touch_commands(entry[1], index)``
        for each entry, replies dropped, in one pass: a one-key write (``SET k v``) is looked
        up once, applied and touched; any other command takes those two calls."""
        assert ctx.now_ms is None, "a replica applies the log with no time"
        changes = self.changes
        touch = changes.touch
        for index, entry in enumerate(entries, first_index):
            for argv in entry[1]:
                spec = _spec(argv[0])
                if spec is None:
                    spec = _spec(argv[0].upper())
                if (spec is None or (fn := spec.apply) is None or spec.first_key != 1 or spec.last_key != 1
                        or not spec.arity_ok(len(argv))):
                    self.apply([argv], ctx)
                    changes.touch_commands((argv,), index)
                    continue
                try:
                    fn(self, argv, ctx)
                except RespError:
                    pass
                touch(argv[1], index)

    def _apply_non_write(self, argv: list[bytes], now: int | None) -> Reply:
        """A log command that is no write: ``EXPIREDUE``, or a read inside a
        raft MULTI entry (served at the entry's time)."""
        if argv[0] == EXPIRE_DUE:
            return expiry.expire_due(self, argv, now)
        if now is None:
            return NEEDS_CLOCK if argv[0].upper() in COMMANDS else unknown_command(argv)
        return self.read(argv, now)

    def prepare(
        self, argv: list[bytes], ctx: ApplyContext, *, exact: bool = True
    ) -> tuple[RespError | None, Cmds | None]:
        """The deterministic rewrite of a client write, WITHOUT applying it.

        Returns ``(error, None)`` when the command is refused before it could
        change anything (arity, syntax, an invalid TTL), ``(None, None)``
        when ``argv`` is not a write (serve it with :meth:`read`), else
        ``(None, cmds)``. See ``kv/rewrite.py`` for ``exact``.
        """
        spec = _spec(argv[0]) or _spec(argv[0].upper())
        if spec is None or spec.apply is None:
            return None, None
        now = ctx.now_ms
        assert now is not None, "a client write is prepared at the time it arrived"
        return prepare(self, spec, argv, now, exact)

    def execute(self, argv: list[bytes], ctx: ApplyContext) -> tuple[Reply, Cmds | None]:
        """Run a client write on the leader-follower leader: ``(reply, cmds_to_log)``.

        :meth:`prepare` (exact), then apply, in one pass (see the module
        docstring). A read-only command is served as :meth:`read` would
        (nothing logged).
        """
        now = ctx.now_ms
        assert now is not None, "a client write is run at the time it arrived"
        spec = _spec(argv[0])
        if spec is None:
            spec = _spec(argv[0].upper())
        if spec is None or (fn := spec.apply) is None:
            return self.read(argv, now), None
        if spec.execute is not None:  # a script: it logs its own effects
            if not spec.arity_ok(len(argv)):
                return wrong_arity(spec.name), None
            return spec.execute(self, argv, ctx)
        err, cmds = prepare(self, spec, argv, now, True)
        if cmds is None:
            return err, None
        main = cmds[-1]
        pre_cmds: Cmds | None = None
        if len(cmds) > 1:
            pre_cmds = cmds[:-1]
            for pre in pre_cmds:
                self.delete(pre[1])
        if main is not argv:
            spec = COMMANDS[main[0]]  # a rewritten form: its name is uppercase
            fn = spec.apply
            assert fn is not None, "a rewrite produces a write"
        dirty = self.dirty
        try:
            reply = fn(self, main, ctx)
        except RespError as e:
            return e, pre_cmds
        if self.dirty == dirty:
            return reply, pre_cmds
        if main is not argv:
            if spec.logged_as is not None:
                main = spec.logged_as(main)
            return reply, [main] if pre_cmds is None else [*pre_cmds, main]
        return reply, cmds

    def execute_transaction(
        self, queued: list[list[bytes]], ctx: ApplyContext
    ) -> tuple[list[Reply], Cmds | None]:
        """Run a MULTI/EXEC block on the leader-follower leader: all replies,
        and its writes as ONE entry.

        Commands run in order at the same ``ctx``; one failing at run time
        (WRONGTYPE, ...) does not stop the others, as in Redis. The entry is
        None when no command changed anything.
        """
        replies: list[Reply] = []
        log: Cmds = []
        # The entry must stay within max_command_bytes (one peer message): EXEC refused a
        # block whose commands pass it, but a script's effects may be larger than the
        # script, so the block counts what it logs. A command whose arguments would take
        # the entry past the limit fails in its place (its logged form is its arguments,
        # rewritten by at most a few bytes, which the frame's slack holds); a script counts
        # from what the block logged before it (_Calls) and stops at its write that would
        # pass it. The writes before are kept, as Redis keeps a block's other writes.
        limit = self.limits.max_command_bytes if self.limits is not None else sys.maxsize
        logged = 0
        try:
            for argv in queued:
                if logged + command_bytes(argv) > limit:
                    replies.append(RespError(
                        f"ERR the transaction's writes come to more than the {limit} bytes a node "
                        "replicates as one entry; its writes before this command are kept"))
                    continue
                self.logged_in_block = logged
                reply, cmds = self.execute(argv, ctx)
                if cmds:
                    log.extend(cmds)
                    logged += sum(map(command_bytes, cmds))
                replies.append(reply)
        finally:
            self.logged_in_block = 0
        return replies, (log or None)

    def read(self, argv: list[bytes], now_ms: int) -> Reply:
        """Serve a read-only command; expired keys are invisible, nothing changes."""
        spec = _spec(argv[0])
        if spec is None:
            spec = _spec(argv[0].upper())
            if spec is None:
                return unknown_command(argv)
        fn = spec.read
        if fn is None:
            name = argv[0].decode("utf-8", "replace").lower()
            return RespError(f"ERR '{name}' is not a read-only data command")
        arity = spec.arity
        argc = len(argv)
        if (argc != arity) if arity > 0 else (argc < -arity):
            return wrong_arity(spec.name)
        try:
            return fn(self, argv, now_ms)
        except RespError as err:
            return err

    # ------------------------------------------------------------------ expiry

    def expired_keys(self, now_ms: int, limit: int) -> list[bytes]:
        """Up to ``limit`` keys expired at ``now_ms``, soonest first (``kv/expiry.py``)."""
        return expiry.expired_keys(self, now_ms, limit)

    def expire_cycle(self, now_ms: int, limit: int) -> Cmds | None:
        """Leader-follower active expiry: delete up to ``limit`` due keys and
        return the DEL commands to log as one entry, or None (``kv/expiry.py``)."""
        return expiry.expire_cycle(self, now_ms, limit)

    # ------------------------------------------------------- snapshot/digest

    def snapshot(self) -> bytes:
        """The whole state (values, TTLs and locks) as bytes (``kv/dump.py``)."""
        return dump.dump(self.data, self.expires, self.locks.state())

    def restore(self, data: bytes | memoryview) -> None:
        """Replace the whole state with a :meth:`snapshot`'s."""
        self.restore_loaded(dump.load_all(data))

    def restore_loaded(self, loaded: dump.Loaded) -> None:
        """Replace the whole state with a :meth:`snapshot`'s, decoded already
        (``dump.load_all`` or ``dump.load_steps``)."""
        self.data, self.expires, lock_rows = loaded
        old = self.locks
        self.locks = LockTable()  # a fresh lease clock: every countdown starts again in full
        self.locks.counts, self.locks.watch = old.counts, old.watch  # this replica's counters and watch go on
        self.locks.load(lock_rows)
        self.expiry_heap = None
        self.scan_index = None
        self.dirty += 1

    def export_keys(self, keys: Iterable[bytes], locks: Iterable[bytes] = ()) -> bytes:
        """These keys with their values and TTLs, and these locks, in the snapshot's form (a slot
        move's payload)."""
        data, expires = self.data, self.expires
        return dump.dump({k: data[k] for k in keys if k in data}, {k: expires[k] for k in keys if k in expires},
                         self.locks.state(locks))

    def import_keys(self, raw: bytes, index: int, keep: Callable[[bytes], bool] | None = None) -> int:
        """Store every key (and lock) of an :meth:`export_keys` payload, replacing what is there
        (a lock keeps a later token it has, ``LockTable.load``); the keys changed at log
        ``index`` (WATCH). ``keep``: only the keys it accepts. Returns how many keys."""
        data, expires, lock_rows = dump.load_all(raw)
        if keep is not None:
            data = {k: v for k, v in data.items() if keep(k)}
        if lock_rows:
            self.locks.load(lock_rows)
        for key, value in data.items():
            self.delete(key)
            self.new_key(key)
            self.data[key] = value
            when = expires.get(key)
            if when is not None:
                self.set_expire(key, when)
            self.changes.touch(key, index)
        self.dirty += 1
        return len(data)

    def drop_keys(self, keys: Iterable[bytes], index: int, locks: Iterable[bytes] = ()) -> int:
        """Delete these keys and locks (a slot moved away); the keys changed at log ``index``.
        Returns how many keys."""
        self.locks.drop(locks)
        n = 0
        for key in list(keys):
            if self.delete(key):
                self.changes.touch(key, index)
                n += 1
        return n

    def digest(self) -> bytes:
        """Order-independent 32-byte hash of keys, types, values, TTLs and locks."""
        return dump.digest(self.data, self.expires, self.locks.digest())

    # ------------------------------------ key bookkeeping (for kv/types/ only)

    def live(self, key: bytes, now_ms: int) -> Any:
        """Read side: the value of ``key``, or None if missing or expired."""
        value = self.data.get(key)
        if value is not None and self.expires:
            when = self.expires.get(key)
            if when is not None and when <= now_ms:
                return None
        return value

    def live_as(self, key: bytes, now_ms: int, py_type: type) -> Any:
        """Read side: the live value of ``key`` if it is a ``py_type``, None if
        missing or expired; WRONGTYPE if it holds another type."""
        value = self.live(key, now_ms)
        if value is not None and type(value) is not py_type:
            raise WRONGTYPE
        return value

    def container(self, key: bytes, py_type: type) -> Any:
        """Write side: the ``py_type`` value at ``key``, a new empty one if the
        key is missing (the caller must leave it non-empty); WRONGTYPE if it
        holds another type."""
        value = self.data.get(key)
        if value is None:
            self.new_key(key)
            value = self.data[key] = py_type()
        elif type(value) is not py_type:
            raise WRONGTYPE
        return value

    def shrunk(self, key: bytes, value: Any) -> None:
        """Call after removing elements from the container ``value`` at ``key``:
        counts the change and deletes the key once it is empty (no list, set
        or hash is ever empty)."""
        if not value:
            self.delete(key)
        self.dirty += 1

    def new_key(self, key: bytes) -> None:
        """Call before storing a key that is not in ``data``."""
        if self.scan_index is not None:
            self.scan_index.add(key)

    def delete(self, key: bytes) -> bool:
        """Remove ``key`` and its TTL; True when it existed."""
        if self.data.pop(key, None) is None:
            return False
        if self.expires:
            self.expires.pop(key, None)
        if self.scan_index is not None:
            self.scan_index.discard(key)
        self.dirty += 1
        return True

    def set_expire(self, key: bytes, when_ms: int) -> None:
        """Give ``key`` (present in ``data``) the absolute expiry ``when_ms``."""
        self.expires[key] = when_ms
        if self.expiry_heap is not None:
            expiry.track(self, key, when_ms)

    def clear(self) -> None:
        """Remove every key (FLUSHALL)."""
        self.data = {}
        self.expires = {}
        self.expiry_heap = None
        self.scan_index = None
        self.dirty += 1

    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """One SCAN step over the key index (``kv/scan_index.py``), expired keys included."""
        if self.scan_index is None:
            self.scan_index = ScanIndex(self.data)
        return self.scan_index.scan(cursor, count)
