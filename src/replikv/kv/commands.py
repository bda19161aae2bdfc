"""The command table: every command replikv accepts, with Redis's metadata.

One table serves three readers: the RESP server (arity check, read or write
routing), the state machine (which keys a command touches) and the
``COMMAND`` command (what redis-cli and redis-py see).

Rules:

- ``COMMANDS`` is keyed by the UPPERCASE name as bytes; :func:`lookup` is
  case-insensitive (tries the name as sent, then ``.upper()``).
- ``arity`` follows Redis: positive = exactly that many argv entries
  (including the name), negative = at least ``-arity``.
- Routing by flags: ``write`` commands go through
  ``StateMachine.execute_write`` (the leader logs them), ``readonly`` ones
  through ``StateMachine.read`` (never logged); everything else
  (``connection`` / ``admin``) is handled by the runtime itself.
  Exactly one of ``write``, ``readonly``, ``connection``/``admin`` holds.
- Keys follow Redis's legacy triple: argv positions ``first_key`` ..
  ``last_key`` (negative counts from the end, ``-1`` = last) stepping by
  ``key_step``; ``0, 0, 0`` means the command has no key arguments.
- ``WRITE`` and ``READ`` are aliases of ``SET`` and ``GET`` (the seed's
  plain-text client sends ``write key 0`` / ``read key``).
- Flags that only replikv uses (``connection``) are not shown by
  ``COMMAND``; every other flag is a Redis flag name.
"""

from __future__ import annotations

from dataclasses import dataclass

from replikv.core.replies import RespError

__all__ = [
    "COMMANDS",
    "CommandSpec",
    "command_reply",
    "lookup",
    "unknown_command",
]

# Flags replikv uses for routing that Redis does not have.
_INTERNAL_FLAGS = frozenset({"connection"})


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command's metadata (Redis's legacy COMMAND fields)."""

    name: str  # lowercase, as COMMAND reports it
    arity: int
    flags: frozenset[str]
    first_key: int
    last_key: int
    key_step: int

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

    def keys(self, argv: list[bytes]) -> list[bytes]:
        """The key arguments of ``argv`` (empty for keyless commands)."""
        if self.first_key == 0:
            return []
        last = self.last_key if self.last_key >= 0 else len(argv) + self.last_key
        return argv[self.first_key : last + 1 : self.key_step]


def _spec(
    name: str, arity: int, flags: str, first: int = 1, last: int = 1, step: int = 1
) -> CommandSpec:
    return CommandSpec(name.lower(), arity, frozenset(flags.split()), first, last, step)


_KEYLESS = (0, 0, 0)

_SPECS: tuple[CommandSpec, ...] = (
    # strings
    _spec("get", 2, "readonly fast"),
    _spec("set", -3, "write denyoom"),
    _spec("setnx", 3, "write denyoom fast"),
    _spec("cas", 4, "write denyoom fast"),
    _spec("setex", 4, "write denyoom"),
    _spec("psetex", 4, "write denyoom"),
    _spec("getset", 3, "write denyoom fast"),
    _spec("getdel", 2, "write fast"),
    _spec("mget", -2, "readonly fast", 1, -1, 1),
    _spec("mset", -3, "write denyoom", 1, -1, 2),
    _spec("append", 3, "write denyoom"),
    _spec("strlen", 2, "readonly fast"),
    _spec("incr", 2, "write denyoom fast"),
    _spec("incrby", 3, "write denyoom fast"),
    _spec("decr", 2, "write denyoom fast"),
    _spec("decrby", 3, "write denyoom fast"),
    # the seed's plain-text client: aliases of SET / GET
    _spec("write", -3, "write denyoom"),
    _spec("read", 2, "readonly fast"),
    # keyspace
    _spec("del", -2, "write", 1, -1, 1),
    _spec("unlink", -2, "write fast", 1, -1, 1),
    _spec("exists", -2, "readonly fast", 1, -1, 1),
    _spec("type", 2, "readonly fast"),
    _spec("expire", -3, "write fast"),
    _spec("pexpire", -3, "write fast"),
    _spec("expireat", -3, "write fast"),
    _spec("pexpireat", -3, "write fast"),
    _spec("persist", 2, "write fast"),
    _spec("ttl", 2, "readonly fast"),
    _spec("pttl", 2, "readonly fast"),
    _spec("expiretime", 2, "readonly fast"),
    _spec("pexpiretime", 2, "readonly fast"),
    _spec("keys", 2, "readonly", *_KEYLESS),
    _spec("scan", -2, "readonly", *_KEYLESS),
    _spec("dbsize", 1, "readonly fast", *_KEYLESS),
    _spec("flushall", -1, "write", *_KEYLESS),
    # lists
    _spec("lpush", -3, "write denyoom fast"),
    _spec("rpush", -3, "write denyoom fast"),
    _spec("lpop", -2, "write fast"),
    _spec("rpop", -2, "write fast"),
    _spec("lrange", 4, "readonly"),
    _spec("llen", 2, "readonly fast"),
    # sets
    _spec("sadd", -3, "write denyoom fast"),
    _spec("srem", -3, "write fast"),
    _spec("smembers", 2, "readonly"),
    _spec("sismember", 3, "readonly fast"),
    _spec("scard", 2, "readonly fast"),
    # hashes
    _spec("hset", -4, "write denyoom fast"),
    _spec("hget", 3, "readonly fast"),
    _spec("hmget", -3, "readonly fast"),
    _spec("hexists", 3, "readonly fast"),
    _spec("hdel", -3, "write fast"),
    _spec("hgetall", 2, "readonly"),
    _spec("hlen", 2, "readonly fast"),
    _spec("hincrby", 4, "write denyoom fast"),
    # connection and admin: handled by the runtime, listed for arity + COMMAND
    _spec("ping", -1, "fast connection", *_KEYLESS),
    _spec("echo", 2, "fast connection", *_KEYLESS),
    _spec("hello", -1, "noscript loading stale fast no_auth connection", *_KEYLESS),
    _spec("auth", -2, "noscript loading stale fast no_auth connection", *_KEYLESS),
    _spec("select", 2, "loading stale fast connection", *_KEYLESS),
    _spec("quit", -1, "noscript loading stale fast no_auth allow_busy connection", *_KEYLESS),
    _spec("multi", 1, "noscript loading stale fast allow_busy connection", *_KEYLESS),
    _spec("exec", 1, "noscript loading stale skip_slowlog connection", *_KEYLESS),
    _spec("discard", 1, "noscript loading stale fast allow_busy connection", *_KEYLESS),
    _spec("wait", 3, "noscript connection", *_KEYLESS),
    _spec("info", -1, "loading stale connection", *_KEYLESS),
    _spec("client", -2, "noscript loading stale connection", *_KEYLESS),
    _spec("command", -1, "loading stale connection", *_KEYLESS),
    _spec("consistency", -1, "fast connection", *_KEYLESS),
    _spec("session", -1, "fast connection", *_KEYLESS),
    _spec("config", -2, "admin noscript loading stale", *_KEYLESS),
    _spec("failover", -1, "admin noscript stale", *_KEYLESS),
    _spec("replikv", -2, "admin noscript loading stale", *_KEYLESS),
    _spec("cluster", -2, "connection", *_KEYLESS),
    _spec("acl", -2, "admin noscript loading stale", *_KEYLESS),
)

COMMANDS: dict[bytes, CommandSpec] = {s.name.upper().encode(): s for s in _SPECS}


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
        return [_info(s) for s in _SPECS]
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
        return len(_SPECS)
    if sub == b"LIST":
        return [s.name.encode() for s in _SPECS]
    if sub == b"INFO":
        if not rest:
            return [_info(s) for s in _SPECS]
        return [None if (spec := lookup(name)) is None else _info(spec) for name in rest]
    if sub == b"DOCS":
        specs = _SPECS if not rest else [s for s in map(lookup, rest) if s is not None]
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
