"""CONFIG GET / SET / RESETSTAT / REWRITE / HELP, as Redis 7.0 answers them.

Settings are this node's (as each Redis instance has its own): a CONFIG SET
is not replicated, and cluster.toml stays the source a restart reads
(CONFIG REWRITE says so instead of rewriting it). Three kinds of parameter:

- live: read by the node as it runs, changed at once (``timeout``,
  ``maxclients``, the client buffer limits, ``proto-max-bulk-len`` for new
  connections, ``requirepass``, ``slowlog-*``, ``maxmemory*``, ``loglevel``);
- fixed: answered by CONFIG GET, refused by CONFIG SET with Redis's error
  for an immutable parameter (``appendfsync``, ``databases``, ``port``,
  ``bind``, ``dir``, ``appendonly``: set in cluster.toml);
- accepted: Redis tunables that have no effect here (encodings, ``hz``,
  lazy freeing, ...), stored and reported so clients and tools that set
  them keep working; ``docs/commands.md`` lists them.

CONFIG SET with several pairs is all-or-nothing, as in Redis 7.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from replikv.config import PEER_FRAME_SLACK_BYTES
from replikv.core.replies import OK, RespError
from replikv.kv import glob

if TYPE_CHECKING:
    from replikv.runtime.base import BaseRunner

__all__ = ["MAXMEMORY_POLICIES", "config_command"]

MAXMEMORY_POLICIES = ("volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl", "allkeys-lru",
                      "allkeys-lfu", "allkeys-random", "noeviction")  # in Redis's order (its error lists them)
_LOGLEVELS = {"debug": logging.DEBUG, "verbose": logging.INFO, "notice": logging.INFO,
              "warning": logging.WARNING, "nothing": logging.CRITICAL + 10}

# Redis tunables with no effect in replikv, with Redis 7.0's defaults
ACCEPTED: dict[str, str] = {
    "hash-max-listpack-entries": "512", "hash-max-listpack-value": "64", "hash-max-ziplist-entries": "512",
    "hash-max-ziplist-value": "64", "list-max-listpack-size": "-2", "list-max-ziplist-size": "-2",
    "list-compress-depth": "0", "set-max-intset-entries": "512", "zset-max-listpack-entries": "128",
    "zset-max-listpack-value": "64", "zset-max-ziplist-entries": "128", "zset-max-ziplist-value": "64",
    "stream-node-max-bytes": "4096", "stream-node-max-entries": "100", "hz": "10", "dynamic-hz": "yes",
    "activerehashing": "yes", "active-expire-effort": "1", "lazyfree-lazy-eviction": "no",
    "lazyfree-lazy-expire": "no", "lazyfree-lazy-server-del": "no", "lazyfree-lazy-user-del": "no",
    "lazyfree-lazy-user-flush": "no", "lfu-log-factor": "10", "lfu-decay-time": "1",
    "latency-tracking": "yes", "latency-monitor-threshold": "0", "notify-keyspace-events": "",
    "tcp-keepalive": "300", "replica-read-only": "yes", "slave-read-only": "yes",
    "maxmemory-eviction-tenacity": "10", "activedefrag": "no", "lua-time-limit": "5000",
    "busy-reply-threshold": "5000", "close-on-replica-write": "yes",
}


def _int(name: str, low: int = 0, high: int = (1 << 63) - 1) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise _Bad(name, "argument couldn't be parsed into an integer") from None
        if not low <= value <= high:
            raise _Bad(name, f"argument must be between {low} and {high} inclusive")
        return value
    return parse


def _memory(name: str) -> Callable[[str], int]:
    """Redis's memory sizes: ``100mb``, ``1gb``, ``4096``."""
    units = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}

    def parse(text: str) -> int:
        t = text.lower()
        digits = t.rstrip("kmgb")
        unit = t[len(digits):]
        if not digits.isdigit() or unit not in units:
            raise _Bad(name, "argument must be a memory value")
        return int(digits) * units[unit]
    return parse


class _Bad(Exception):
    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"ERR CONFIG SET failed (possibly related to argument '{name}') - {why}")


def _parameters(node: "BaseRunner") -> dict[str, tuple[Callable[[], str], Callable[[str], None] | None]]:
    """Each live or fixed parameter: (get, set or None when it cannot change at run time)."""
    opts = node.options

    def setter(attr: str, parse: Callable[[str], Any]) -> Callable[[str], None]:
        return lambda text: setattr(opts, attr, parse(text))

    def slowlog(slower: int | None = None, max_len: int | None = None) -> None:
        log = node.slowlog
        log.configure(log.slower_than_us if slower is None else slower, log.max_len if max_len is None else max_len)

    def policy(text: str) -> None:
        if text.lower() not in MAXMEMORY_POLICIES:
            raise _Bad("maxmemory-policy", "argument(s) must be one of the following: "
                       + ", ".join(MAXMEMORY_POLICIES))
        node.memory.policy = text.lower()

    def loglevel(text: str) -> None:
        level = _LOGLEVELS.get(text.lower())
        if level is None:
            raise _Bad("loglevel", "argument(s) must be one of the following: debug, verbose, notice, "
                       "warning, nothing")
        logging.getLogger().setLevel(level)
        node.loglevel = text.lower()

    def requirepass(text: str) -> None:
        node.acl.set_user("default", ["resetpass", f">{text}"] if text else ["nopass"])
        opts.requirepass = text or None

    def output_limit(text: str) -> None:
        parts = text.split()
        if len(parts) != 4 or parts[0] != "normal":
            raise _Bad("client-output-buffer-limit", "argument must be 'normal <hard> <soft> <seconds>'")
        opts.client_output_buffer_limit = _memory("client-output-buffer-limit")(parts[1]) or (1 << 62)

    def max_bulk_len(text: str) -> None:
        # The peer links' frame limit was fixed at start (``NodeOptions.max_frame_bytes``, from
        # cluster.toml's max_bulk_len, on every node): a larger bulk, or a command sized by the
        # larger limit, would be a frame no peer takes. Lowering it is live; raising it past the
        # start's value is for cluster.toml and a restart of every node.
        high = node.transport.max_frame_bytes - PEER_FRAME_SLACK_BYTES  # the start's max_bulk_len
        opts.max_bulk_len = _int("proto-max-bulk-len", 1024, high)(text)

    mem = node.memory

    def maxmemory(text: str) -> None:
        limit = _memory("maxmemory")(text)
        if limit and not node.maxmemory_offered:
            raise _Bad("maxmemory", "a sharded cluster has no node-wide data set to bound yet (each group "
                                    "holds its own); maxmemory 0 only")
        mem.maxmemory = limit

    return {
        "timeout": (lambda: str(opts.timeout), setter("timeout", _int("timeout"))),
        "maxclients": (lambda: str(opts.maxclients), setter("maxclients", _int("maxclients", 1))),
        "proto-max-bulk-len": (lambda: str(opts.max_bulk_len), max_bulk_len),
        "client-query-buffer-limit": (lambda: str(opts.client_query_buffer_limit),
                                      setter("client_query_buffer_limit",
                                             _memory("client-query-buffer-limit"))),
        "client-output-buffer-limit": (lambda: f"normal {opts.client_output_buffer_limit} 0 0 "
                                               "replica 0 0 0 pubsub 0 0 0", output_limit),
        "requirepass": (lambda: opts.requirepass or "", requirepass),
        "slowlog-log-slower-than": (lambda: str(node.slowlog.slower_than_us),
                                    lambda t: slowlog(slower=_int("slowlog-log-slower-than", -1)(t))),
        "slowlog-max-len": (lambda: str(node.slowlog.max_len),
                            lambda t: slowlog(max_len=_int("slowlog-max-len")(t))),
        "maxmemory": (lambda: str(mem.maxmemory), maxmemory),
        "maxmemory-policy": (lambda: mem.policy, policy),
        "maxmemory-samples": (lambda: str(mem.samples),
                              lambda t: setattr(mem, "samples", _int("maxmemory-samples", 1, 64)(t))),
        "loglevel": (lambda: node.loglevel, loglevel),
        "appendonly": (lambda: "yes", None),
        "appendfsync": (lambda: opts.fsync, None),
        "save": (lambda: "", None),
        "databases": (lambda: "1", None),
        "port": (lambda: str(node.address.port), None),
        "bind": (lambda: node.address.host, None),
        "dir": (lambda: str(node.data_dir), None),
    }


def config_command(node: "BaseRunner", argv: list[bytes]) -> Any:
    sub = argv[1].upper()
    args = [a.decode("utf-8", "replace") for a in argv[2:]]
    params = _parameters(node)
    if sub == b"GET" and args:
        out: dict[bytes, bytes] = {}
        for pattern in args:
            pat = pattern.lower().encode()
            for name, (get, _) in params.items():
                if glob.match(pat, name.encode()):
                    out[name.encode()] = get().encode()
            for name, value in node.accepted_config.items():
                if glob.match(pat, name.encode()):
                    out[name.encode()] = value.encode()
        return out
    if sub == b"SET" and args and len(args) % 2 == 0:
        pairs = [(args[i].lower(), args[i + 1]) for i in range(0, len(args), 2)]
        names = [n for n, _ in pairs]
        for name in names:
            if name not in params and name not in node.accepted_config:
                return RespError(f"ERR Unknown option or number of arguments for CONFIG SET - '{name}'")
            if name in params and params[name][1] is None:
                return RespError(f"ERR CONFIG SET failed (possibly related to argument '{name}') - "
                                 "can't set immutable config")
        if len(set(names)) != len(names):
            return RespError(f"ERR CONFIG SET failed (possibly related to argument '{names[-1]}') - "
                             "duplicate parameter")
        saved = {n: (params[n][0]() if n in params else node.accepted_config[n]) for n in names}
        try:
            for name, value in pairs:
                if name in params:
                    set_ = params[name][1]
                    assert set_ is not None
                    set_(value)
                else:
                    node.accepted_config[name] = value
        except _Bad as bad:
            for name, value in saved.items():  # all or nothing
                if name in params:
                    restore = params[name][1]
                    assert restore is not None
                    try:
                        restore(value)
                    except _Bad:
                        pass
                else:
                    node.accepted_config[name] = value
            return RespError(str(bad))
        return OK
    if sub == b"RESETSTAT" and not args:
        node.reset_stats()
        return OK
    if sub == b"REWRITE" and not args:
        return RespError("ERR CONFIG REWRITE is not supported: replikv reads cluster.toml at start; "
                         "edit it (or use replikv cluster commands) to keep a setting across restarts")
    if sub == b"HELP" and not args:
        return ["CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>", "    Set the configuration <directive> to <value>.",
                "RESETSTAT", "    Reset statistics reported by the INFO command.",
                "REWRITE", "    Rewrite the configuration file.", "HELP", "    Prints this help."]
    if sub in (b"GET", b"SET", b"RESETSTAT", b"REWRITE", b"HELP"):
        return RespError(f"ERR wrong number of arguments for 'config|{sub.decode().lower()}' command")
    return RespError(f"ERR unknown subcommand '{argv[1].decode(errors='replace')}'. Try CONFIG HELP.")
