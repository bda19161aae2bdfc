"""Scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, as Redis 7.0's eval.c
behaves (replies and error texts); the Lua side is ``kv/lua.py``.

``EVAL body numkeys key.. arg..``: ``numkeys`` must be an integer between
0 and the number of arguments left ("ERR Number of keys can't be
negative", "... can't be greater than number of args"); the first
``numkeys`` arguments are ``KEYS``, the rest ``ARGV``. EVAL caches the body
(EVALSHA may use it afterwards, on this node); EVALSHA of a sha not in
this node's cache is "NOSCRIPT No matching script. Please use EVAL.".
A Redis 7 shebang (``#!lua flags=no-writes,...``) is honoured: ``no-writes``
makes the script read-only; EVAL_RO refuses a shebang script without it.
A script runs atomically (nothing else runs on the state machine meanwhile)
and may call the data commands of the table (``redis.call``), not the
runtime's or the scripting commands ("ERR This Redis command is not allowed
from script"), except PING, ECHO, SELECT and TIME, which a script may call
as in Redis (TIME answers the write's time: see below).
EVAL_RO/EVALSHA_RO are reads: a write inside them is "ERR Write commands are
not allowed from read-only scripts.". A script that fails halfway keeps the
writes it made (as Redis: no rollback).

Replication (the determinism invariant, ``kv/state_machine.py``):

- leader-follower leader, ``StateMachine.execute``: effects replication, as
  Redis 7. The script runs on the leader's own state; each write it calls
  goes through ``execute`` (its exact rewrite: relative TTLs made
  absolute, ``DEL`` of expired keys) and the commands those produce become
  ONE log entry (nothing is logged when the script changed nothing). A
  follower applies plain commands and never runs Lua (``execute_eval``,
  the spec's ``execute``).
- raft, ``prepare(exact=False)`` then ``apply``: script replication. The
  rewrite checks what does not depend on the data (numkeys, the body
  compiles, the sha is known) and logs ``EVAL body numkeys ...`` (EVALSHA
  rewritten to EVAL with its body, so a replica that never saw the script
  can run it). ``apply`` runs it on every replica at the entry's time: each
  write it calls is ``prepare(exact=False)`` + ``apply`` at that time, each
  read is served at that time. Every replica computes the same because:
  ``math.random`` is reseeded before each script; set replies, SCAN's and
  KEYS's reach Lua sorted (a Python set's order differs between processes,
  ``_SORTED_FOR_SCRIPTS``); reads with a random reply (SRANDMEMBER,
  RANDOMKEY, ...) are refused inside scripts (a random write such as SPOP
  goes through its deterministic rewrite like any write); no clock is read but the
  entry's (TIME included); the Lua globals are read-only, so no script
  leaves state for the next one; addresses and memory use are hidden from
  scripts and the instruction limit counts instructions, not time
  (``kv/lua.py``).
- An EVAL in a log without a time (no leader writes one) is refused like
  the commands that need a clock; EVALSHA is never logged (refused too).

Random reads are refused in every mode, not only in raft's, so that a
script gets the same reply whichever mode runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from replikv.core.replies import RespError, wrong_arity
from replikv.core.resp import command_bytes
from replikv.kv.args import NEEDS_CLOCK, parse_int
from replikv.kv.commands import command, keys_after_numkeys, lookup
from replikv.kv.lua import ScriptEngine

if TYPE_CHECKING:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine

Reply = Any
Cmds = list[list[bytes]]

_KEYLESS = (0, 0, 0)
_EVAL = b"EVAL"
_EVAL_FLAGS = "noscript stale skip_monitor no_mandatory_keys movablekeys"


def _script_keys(argv: list[bytes]) -> list[bytes]:
    """``EVAL script numkeys key [key ...] arg ...``: the keys (Redis's evalGetKeys)."""
    return keys_after_numkeys(argv, 2)

NOSCRIPT = RespError("NOSCRIPT No matching script. Please use EVAL.")
_TOO_MANY_KEYS = RespError("ERR Number of keys can't be greater than number of args")
_NEGATIVE_KEYS = RespError("ERR Number of keys can't be negative")
_UNKNOWN = RespError("ERR Unknown Redis command called from script")
_NOT_ALLOWED = RespError("ERR This Redis command is not allowed from script")
_WRONG_ARGS = RespError("ERR Wrong number of args calling Redis command from script")
_RO_WRITE = RespError("ERR Write commands are not allowed from read-only scripts.")
_RO_WITH_WRITE_FLAG = RespError("ERR Can not execute a script with write flag using *_ro command.")
_NOT_LOGGED = RespError("ERR EVALSHA is never logged (the leader logs EVAL with the body)")

# Reads whose reply is random: a replica re-running the script would draw differently.
# (A random write, SPOP, is fine: the table's rule makes its rewrite deterministic, and
# a script's writes go through it.)
_RANDOM_READS = frozenset({b"SRANDMEMBER", b"HRANDFIELD", b"ZRANDMEMBER", b"RANDOMKEY"})

_LEADER, _APPLY, _READONLY = range(3)

# Replies whose order comes from a Python set (SCAN's buckets) or that Redis 5
# sorted for scripts (KEYS): a script sees them sorted, the same on every replica.
# (A reply that is a Python set, SMEMBERS's, reaches Lua sorted anyway: kv/lua.py.)
_SORTED_FOR_SCRIPTS = {
    "keys": lambda reply: sorted(reply),
    "scan": lambda reply: [reply[0], sorted(reply[1])],
}


def _ping(argv: list[bytes], now: int) -> Reply:
    if len(argv) > 2:
        return wrong_arity("ping")
    return argv[1] if len(argv) == 2 else "PONG"


def _select(argv: list[bytes], now: int) -> Reply:
    return "OK" if parse_int(argv[1]) == 0 else RespError("ERR DB index is out of range")


def _time(argv: list[bytes], now: int) -> Reply:
    """The script's time: the entry's on every replica (its milliseconds, as microseconds)."""
    return [b"%d" % (now // 1000), b"%d" % (now % 1000 * 1000)]


# Server commands a script may call, served here: they touch no data and need no
# connection (name -> (arity, fn(argv, now))). TIME is the time of the write (the
# leader's clock, the raft entry's), so a script that writes what it read from TIME
# writes the same on every replica.
_SERVED_HERE: dict[bytes, tuple[int, Callable[[list[bytes], int], Reply]]] = {
    b"PING": (-1, _ping),
    b"ECHO": (2, lambda argv, now: argv[1]),
    b"SELECT": (2, _select),
    b"TIME": (1, _time),
}


# --- arguments and the script --------------------------------------------------------


def _keys_and_args(argv: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    numkeys = parse_int(argv[2])
    if numkeys > len(argv) - 3:
        raise _TOO_MANY_KEYS
    if numkeys < 0:
        raise _NEGATIVE_KEYS
    return argv[3 : 3 + numkeys], argv[3 + numkeys :]


def _script(sm: StateMachine, argv: list[bytes]) -> bytes:
    """The sha of the script ``argv`` runs, compiled into this node's cache."""
    engine = sm.scripts
    if argv[0].upper().startswith(b"EVALSHA"):
        sha = argv[1].lower()
        if len(sha) != 40 or engine.body(sha) is None:
            raise NOSCRIPT
        return sha
    return engine.load(argv[1])


def _run(sm: StateMachine, argv: list[bytes], calls: _Calls) -> Reply:
    """Run the script of ``argv``; a ``#!lua flags=no-writes`` one as a read-only
    script, one with a shebang but no such flag is refused by EVAL_RO (Redis 7)."""
    keys, args = _keys_and_args(argv)
    sha = _script(sm, argv)
    script = sm.scripts.get(sha)
    assert script is not None
    if not script.may_write:
        calls.mode = _READONLY
    elif calls.mode == _READONLY and script.flags is not None:
        raise _RO_WITH_WRITE_FLAG
    return sm.scripts.run(sha, keys, args, calls)


# --- redis.call ------------------------------------------------------------------------


class _Calls:
    """How one script run's ``redis.call`` reaches the state machine (see the
    module docstring for the three modes)."""

    __slots__ = ("ctx", "engine", "log", "logged", "mode", "now", "sm")

    def __init__(self, sm: StateMachine, ctx: ApplyContext | None, now: int, mode: int) -> None:
        self.sm = sm
        self.engine: ScriptEngine = sm.scripts
        self.ctx = ctx
        self.now = now
        self.mode = mode
        self.log: Cmds = []
        # command_bytes of log, plus what the MULTI block running this script logged before it
        self.logged = sm.logged_in_block

    def __call__(self, argv: list[bytes]) -> tuple[bool, Any]:
        return self.engine.to_lua(self._reply(argv))

    def _reply(self, argv: list[bytes]) -> Reply:
        served = _SERVED_HERE.get(argv[0].upper())
        if served is not None:
            arity, fn = served
            argc = len(argv)
            if (argc != arity) if arity > 0 else (argc < -arity):
                return _WRONG_ARGS
            try:
                return fn(argv, self.now)
            except RespError as err:
                return err
        spec = lookup(argv[0])
        if spec is None:
            return _UNKNOWN
        if not spec.arity_ok(len(argv)):
            return _WRONG_ARGS
        if (spec.apply is None and spec.read is None) or "noscript" in spec.flags:
            return _NOT_ALLOWED
        if spec.read is not None and (
            spec.name.upper().encode() in _RANDOM_READS or "random" in spec.flags
        ):
            return RespError(
                f"ERR '{spec.name}' has a random outcome and is not allowed from scripts "
                "(every replica must compute the same)"
            )
        sm = self.sm
        if spec.read is not None:
            reply = sm.read(argv, self.now)
            sort = _SORTED_FOR_SCRIPTS.get(spec.name)
            return reply if sort is None or isinstance(reply, RespError) else sort(reply)
        if self.mode == _READONLY:
            return _RO_WRITE
        ctx = self.ctx
        assert ctx is not None
        if self.mode == _LEADER:
            if sm.limits is not None and self.logged + command_bytes(argv) > sm.limits.max_command_bytes:
                return RespError(f"ERR the script's writes come to more than the {sm.limits.max_command_bytes} "
                                 "bytes a node replicates as one entry; its writes before this one are kept")
            reply, cmds = sm.execute(argv, ctx)
            if cmds:
                self.log += cmds
                self.logged += sum(map(command_bytes, cmds))
            return reply
        err, cmds = sm.prepare(argv, ctx, exact=False)
        if cmds is None:
            return err
        return sm.apply(cmds, ctx)[-1]


# --- the commands ----------------------------------------------------------------------


def rewrite_eval(sm: StateMachine, argv: list[bytes], now_ms: int, exact: bool) -> list[bytes]:
    """Raft's log form: EVAL with the body (EVALSHA resolved on this node)."""
    _keys_and_args(argv)
    sha = _script(sm, argv)
    if argv[0].upper() == _EVAL:
        return argv
    body = sm.scripts.body(sha)
    assert body is not None
    return [_EVAL, body, *argv[2:]]


def execute_eval(
    sm: StateMachine, argv: list[bytes], ctx: ApplyContext
) -> tuple[Reply, Cmds | None]:
    """The leader-follower leader: run the script, log its effects as one entry."""
    now = ctx.now_ms
    assert now is not None
    calls = _Calls(sm, ctx, now, _LEADER)
    try:
        reply = _run(sm, argv, calls)
    except RespError as err:
        return err, None
    return reply, (calls.log or None)


@command("eval", -3, f"write {_EVAL_FLAGS} may_replicate", _KEYLESS,
         rewrite=rewrite_eval, execute=execute_eval, find_keys=_script_keys)
def eval_(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """Raft's apply: run the logged script at the entry's time."""
    now = ctx.now_ms
    if now is None:
        raise NEEDS_CLOCK
    return _run(sm, argv, _Calls(sm, ctx, now, _APPLY))


@command("evalsha", -3, f"write {_EVAL_FLAGS} may_replicate", _KEYLESS,
         rewrite=rewrite_eval, execute=execute_eval, find_keys=_script_keys)
def evalsha(sm: StateMachine, argv: list[bytes], ctx: ApplyContext) -> Reply:
    """Never applied from a log: the leader logs EVAL (raft) or the effects."""
    raise _NOT_LOGGED


@command("evalsha_ro", -3, f"readonly {_EVAL_FLAGS}", _KEYLESS, find_keys=_script_keys)
@command("eval_ro", -3, f"readonly {_EVAL_FLAGS}", _KEYLESS, find_keys=_script_keys)
def eval_ro(sm: StateMachine, argv: list[bytes], now_ms: int) -> Reply:
    return _run(sm, argv, _Calls(sm, None, now_ms, _READONLY))
