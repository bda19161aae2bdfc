"""The command table: every command replikv accepts, with Redis's metadata
and, for a data command, the operation that carries it out. There is no
other table: the RESP server routes by it, the state machine dispatches
through it, ``COMMAND`` reports it.

Rules:

- ``COMMANDS`` is keyed by the UPPERCASE name as bytes; :func:`lookup` is
  case-insensitive (tries the name as sent, then ``.upper()``).
- ``arity`` follows Redis: positive = exactly that many argv entries
  (including the name), negative = at least ``-arity``.
- Routing by flags, exactly one of which holds: a ``write`` command carries
  an ``apply`` operation (``StateMachine.execute``/``apply``; the leader
  logs it), a ``readonly`` one a ``read`` operation (``StateMachine.read``;
  never logged), a ``connection``/``admin`` one neither (the runtime
  handles it, ``runtime/commands.py``). :func:`command` enforces it.
- A data command is declared once, by the :func:`command` decorator on its
  operation in its family module under ``kv/types/`` (one module per data
  type; ``kv/types/__init__.py`` lists them). Importing anything from
  ``replikv.kv`` loads every family, so the table is always complete.
- A write may carry ``rewrite`` (the leader's deterministic form of a
  command that depends on a clock, ``kv/rewrite.py``; None: deterministic
  as sent) and ``logged_as`` (the minimal log form of a rewritten command
  that applied, its conditions having held on the leader's state).
- Keys follow Redis's legacy triple: argv positions ``first_key`` ..
  ``last_key`` (negative counts from the end, ``-1`` = last) stepping by
  ``key_step``; ``0, 0, 0`` means the command has no key arguments, unless
  it carries ``find_keys`` (Redis's ``getkeys_proc``): a command with
  movable keys (``LMPOP numkeys key ...``) has the triple ``0, 0, 0`` in
  COMMAND, as in Redis, and ``find_keys(argv)`` names its keys (for expiry
  in ``prepare`` and raft's ``apply``, ACLs and COMMAND GETKEYS); it must
  return ``[]`` rather than fail on a malformed ``argv``.
- ``WRITE`` and ``READ`` are aliases of ``SET`` and ``GET`` (the seed's
  plain-text client sends ``write key 0`` / ``read key``).
- Flags that only replikv uses (``connection``) are not shown by
  ``COMMAND``; every other flag is a Redis flag name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from replikv.core.replies import RespError

if TYPE_CHECKING:
    from replikv.kv.context import ApplyContext
    from replikv.kv.state_machine import StateMachine

__all__ = [
    "COMMANDS",
    "CommandSpec",
    "command",
    "command_reply",
    "keys_after_numkeys",
    "lookup",
    "unknown_command",
]

Reply = Any
ApplyFn = Callable[["StateMachine", list[bytes], "ApplyContext"], Reply]
ReadFn = Callable[["StateMachine", list[bytes], int], Reply]
RewriteFn = Callable[["StateMachine", list[bytes], int, bool], list[bytes]]
LogFormFn = Callable[[list[bytes]], list[bytes]]
KeysFn = Callable[[list[bytes]], list[bytes]]
ExecuteFn = Callable[
    ["StateMachine", list[bytes], "ApplyContext"], tuple[Reply, list[list[bytes]] | None]
]

# Flags replikv uses for routing that Redis does not have.
_INTERNAL_FLAGS = frozenset({"connection"})


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command: Redis's legacy COMMAND fields and, for data commands, its operation."""

    name: str  # lowercase, as COMMAND reports it
    arity: int
    flags: frozenset[str]
    first_key: int
    last_key: int
    key_step: int
    apply: ApplyFn | None = None  # write: (sm, argv, ctx) -> reply; changes the data
    read: ReadFn | None = None  # readonly: (sm, argv, now_ms) -> reply; changes nothing
    rewrite: RewriteFn | None = None  # write: (sm, argv, now_ms, exact) -> deterministic argv
    logged_as: LogFormFn | None = None  # write: minimal log form of a rewritten command
    find_keys: KeysFn | None = None  # movable keys: argv -> all its keys (the triple: the fixed ones)
    execute: ExecuteFn | None = None  # write: the leader's own (reply, cmds_to_log)

    def arity_ok(self, argc: int) -> bool:
        """True when ``argc`` (argv length, name included) fits the arity."""
        arity = self.arity
        return argc == arity if arity > 0 else argc >= -arity

    @property
    def is_write(self) -> bool:
        """The command may change the data set (the leader logs it)."""
        return "write" in self.flags

    @property
    def is_readonly(self) -> bool:
        """The command only reads the data set (served without the log)."""
        return "readonly" in self.flags

    @property
    def has_keys(self) -> bool:
        """The command may name keys (a key triple or ``find_keys``)."""
        return self.first_key != 0 or self.find_keys is not None

    def keys(self, argv: list[bytes]) -> list[bytes]:
        """The key arguments of ``argv`` (empty for keyless commands)."""
        if self.find_keys is not None:
            return self.find_keys(argv)
        if self.first_key == 0:
            return []
        if self.first_key == 1 and self.last_key == 1:
            return [argv[1]]
        last = self.last_key if self.last_key >= 0 else len(argv) + self.last_key
        return argv[self.first_key : last + 1 : self.key_step]


COMMANDS: dict[bytes, CommandSpec] = {}

_KEYLESS = (0, 0, 0)
_F = TypeVar("_F", bound=Callable[..., Any])


def _add(spec: CommandSpec) -> None:
    flags = spec.flags
    routes = ("write" in flags, "readonly" in flags, bool(flags & {"connection", "admin"}))
    if sum(routes) != 1:
        raise ValueError(f"{spec.name}: exactly one of write, readonly, connection/admin must hold")
    if (spec.apply is not None) != routes[0] or (spec.read is not None) != routes[1]:
        raise ValueError(f"{spec.name}: a write carries an apply operation, a readonly one a read")
    if (spec.rewrite or spec.logged_as or spec.execute) and not routes[0]:
        raise ValueError(f"{spec.name}: only a write is rewritten")
    key = spec.name.upper().encode()
    if key in COMMANDS:
        raise ValueError(f"{spec.name} is declared twice")
    COMMANDS[key] = spec


def command(
    name: str,
    arity: int,
    flags: str,
    keys: tuple[int, int, int] = (1, 1, 1),
    *,
    rewrite: RewriteFn | None = None,
    logged_as: LogFormFn | None = None,
    find_keys: KeysFn | None = None,
    execute: ExecuteFn | None = None,
) -> Callable[[_F], _F]:
    """Declare data command ``name`` with the decorated function as its operation.

    ``flags`` are Redis's; the operation is the command's ``apply`` if they
    hold ``write``, its ``read`` if they hold ``readonly``. Stack the
    decorator to declare an alias. ``find_keys`` names movable keys;
    ``execute`` is a write's own leader-side ``(reply, cmds_to_log)`` (EVAL).
    """
    flag_set = frozenset(flags.split())

    def register(fn: _F) -> _F:
        is_write = "write" in flag_set
        _add(CommandSpec(name.lower(), arity, flag_set, *keys, apply=fn if is_write else None,
                         read=None if is_write else fn, rewrite=rewrite, logged_as=logged_as,
                         find_keys=find_keys, execute=execute))
        return fn

    return register


def _runtime(name: str, arity: int, flags: str, keys: tuple[int, int, int] = _KEYLESS) -> None:
    """Declare a connection/admin command (handled in runtime/commands.py)."""
    _add(CommandSpec(name, arity, frozenset(flags.split()), *keys))


# connection and admin: handled by the runtime, listed for arity + COMMAND
_runtime("ping", -1, "fast connection")
_runtime("echo", 2, "fast connection")
_runtime("hello", -1, "noscript loading stale fast no_auth connection")
_runtime("auth", -2, "noscript loading stale fast no_auth connection")
_runtime("select", 2, "loading stale fast connection")
_runtime("quit", -1, "noscript loading stale fast no_auth allow_busy connection")
_runtime("multi", 1, "noscript loading stale fast allow_busy connection")
_runtime("exec", 1, "noscript loading stale skip_slowlog connection")
_runtime("discard", 1, "noscript loading stale fast allow_busy connection")
_runtime("watch", -2, "noscript loading stale fast allow_busy connection", (1, -1, 1))
_runtime("unwatch", 1, "noscript loading stale fast allow_busy connection")
_runtime("wait", 3, "noscript connection")
_runtime("info", -1, "loading stale connection")
_runtime("client", -2, "noscript loading stale connection")
_runtime("command", -1, "loading stale connection")
_runtime("consistency", -1, "fast connection")
_runtime("session", -1, "fast connection")
# causal context and siblings (multi-leader mode; runtime/commands.py)
_runtime("vget", 2, "fast connection", (1, 1, 1))
_runtime("vset", 5, "denyoom connection", (1, 1, 1))
_runtime("config", -2, "admin noscript loading stale")
_runtime("failover", -1, "admin noscript stale")
_runtime("replikv", -2, "admin noscript loading stale")
_runtime("cluster", -2, "connection")
_runtime("readonly", 1, "loading stale fast connection")  # Redis Cluster: reads on this connection may go to replicas
_runtime("readwrite", 1, "loading stale fast connection")
_runtime("asking", 1, "fast connection")
_runtime("acl", -2, "admin noscript loading stale")
_runtime("slowlog", -2, "admin loading stale")
_runtime("save", 1, "admin noscript")
_runtime("bgsave", -1, "admin noscript")
_runtime("lastsave", 1, "loading stale fast connection")
_runtime("role", 1, "noscript loading stale fast connection")
_runtime("time", 1, "loading stale fast connection")
_runtime("memory", -2, "connection", (2, 2, 1))  # MEMORY USAGE key
_runtime("reset", 1, "noscript loading stale fast no_auth allow_busy connection")
# Pub/Sub (runtime/pubsub.py): channels are not keys
_runtime("subscribe", -2, "pubsub noscript loading stale connection")
_runtime("psubscribe", -2, "pubsub noscript loading stale connection")
_runtime("unsubscribe", -1, "pubsub noscript loading stale connection")
_runtime("punsubscribe", -1, "pubsub noscript loading stale connection")
_runtime("publish", 3, "pubsub loading stale fast may_replicate connection")
_runtime("pubsub", -2, "pubsub loading stale connection")


def keys_after_numkeys(argv: list[bytes], at: int = 1) -> list[bytes]:
    """``find_keys`` of ``CMD numkeys key [key ...] ...`` (numkeys at ``argv[at]``);
    ``[]`` when numkeys is no positive integer or names more keys than there are."""
    arg = argv[at] if len(argv) > at else b""
    if not arg.isdigit() or len(arg) > 18:
        return []
    numkeys = int(arg)
    if numkeys < 1 or at + 1 + numkeys > len(argv):
        return []
    return argv[at + 1 : at + 1 + numkeys]
_runtime("script", -2, "noscript connection")  # the node's own script cache (kv/lua.py)


def lookup(name: bytes) -> CommandSpec | None:
    """The spec for ``name`` (any case), or None for an unknown command."""
    spec = COMMANDS.get(name)
    if spec is None:
        spec = COMMANDS.get(name.upper())
    return spec


def unknown_command(argv: list[bytes]) -> RespError:
    """Redis 7's reply to an unknown command, args quoted as it quotes them."""
    name = argv[0].decode("utf-8", "replace")[:128]
    args = ""
    for arg in argv[1:]:
        if len(args) >= 128:
            break
        args += "'" + arg.decode("utf-8", "replace")[: 128 - len(args)] + "' "
    return RespError(f"ERR unknown command '{name}', with args beginning with: {args}")


# --- COMMAND -----------------------------------------------------------------


def command_categories(spec: CommandSpec) -> set[str]:
    """Redis's ACL categories of a command, from its flags (runtime/acl.py adds the rest)."""
    cats = set()
    if "write" in spec.flags:
        cats.add("@write")
    if "readonly" in spec.flags:
        cats.add("@read")
    if "fast" in spec.flags:
        cats.add("@fast")
    else:
        cats.add("@slow")
    if "admin" in spec.flags:
        cats.update(("@admin", "@dangerous"))
    if "connection" in spec.flags:
        cats.add("@connection")
    return cats


def _info(spec: CommandSpec) -> list[object]:
    """One COMMAND INFO entry, Redis 7's 10-element shape."""
    flags = {f for f in spec.flags if f not in _INTERNAL_FLAGS}
    return [
        spec.name.encode(),
        spec.arity,
        flags,
        spec.first_key,
        spec.last_key,
        spec.key_step,
        command_categories(spec),
        set(),  # tips
        [],  # key specs
        [],  # subcommands
    ]


_HELP = [
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "HELP",
    "    Print this help.",
]


# Subcommand arity, counted over the whole argv (COMMAND included), as Redis.
_SUBCOMMAND_ARITY = {b"COUNT": 2, b"LIST": -2, b"INFO": -2, b"DOCS": -2, b"GETKEYS": -3, b"HELP": 2}


def command_reply(argv: list[bytes]) -> object:
    """The reply to ``COMMAND [COUNT|LIST|INFO|DOCS|GETKEYS|HELP ...]``.

    ``argv`` is either the full command (``argv[0]`` is ``COMMAND``) or only
    its arguments (``argv[0]`` is the subcommand, ``[]`` for bare COMMAND);
    the two cannot be confused since ``COMMAND`` is no subcommand.
    DOCS answers an empty map per command (clients only need the keys).
    """
    if not argv or argv[0].upper() != b"COMMAND":
        argv = [b"COMMAND", *argv]
    if len(argv) == 1:
        return [_info(s) for s in COMMANDS.values()]
    sub = argv[1].upper()
    rest = argv[2:]
    arity = _SUBCOMMAND_ARITY.get(sub)
    if arity is None:
        return RespError(
            f"ERR unknown subcommand '{argv[1].decode('utf-8', 'replace')}'. Try COMMAND HELP."
        )
    if (len(argv) != arity) if arity > 0 else (len(argv) < -arity):
        return RespError(
            f"ERR wrong number of arguments for 'command|{sub.decode().lower()}' command"
        )
    if sub == b"COUNT":
        return len(COMMANDS)
    if sub == b"LIST":
        return [s.name.encode() for s in COMMANDS.values()]
    if sub == b"INFO":
        if not rest:
            return [_info(s) for s in COMMANDS.values()]
        return [None if (spec := lookup(name)) is None else _info(spec) for name in rest]
    if sub == b"DOCS":
        specs = [s for s in map(lookup, rest) if s is not None] if rest else COMMANDS.values()
        return {s.name.encode(): {} for s in specs}
    if sub == b"GETKEYS":
        spec = lookup(rest[0])
        if spec is None:
            return RespError("ERR Invalid command specified")
        if not spec.arity_ok(len(rest)):
            return RespError("ERR Invalid number of arguments specified for command")
        keys = spec.keys(rest)
        if not keys:
            return RespError("ERR The command has no key arguments")
        return keys
    return _HELP
