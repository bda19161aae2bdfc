"""Connection and admin commands: the ones the node answers itself.

Data commands (strings, lists, sets, hashes, TTLs, SCAN, ...) live in
``kv/``; these need the connection or the node: authentication, protocol
version, transactions, consistency levels, replication status, failover.
Each handler is ``handler(node, conn, argv)`` and replies through ``conn``;
arity was already checked against ``kv/commands.py``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from replikv import __version__
from replikv import modes
from replikv.core.resp import command_bytes
from replikv.core.replies import OK, RespError, SYNTAX_ERROR, wrong_arity
from replikv.kv.commands import command_reply
from replikv.runtime.client_cmd import client_command
from replikv.runtime.config_cmd import config_command
from replikv.runtime.memory import memory_command
from replikv.kv.lua import script_command

if TYPE_CHECKING:
    from replikv.runtime.mode import Mode
    from replikv.runtime.resp_server import ClientConnection

Handler = Callable[["Mode", "ClientConnection", list[bytes]], None]
HANDLERS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn
    return register


def _int(arg: bytes) -> int:
    try:
        return int(arg)
    except ValueError:
        raise RespError("ERR value is not an integer or out of range") from None


def _dispatch(fn: Handler) -> Handler:
    """Turn a RespError raised inside a handler into the reply."""
    def wrapper(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
        try:
            fn(node, conn, argv)
        except RespError as e:
            conn.reply(e)
    wrapper.__doc__ = fn.__doc__
    return wrapper


def handler(name: str) -> Callable[[Handler], Handler]:
    return lambda fn: command(name)(_dispatch(fn))


@handler("PING")
def ping(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    if len(argv) > 2:
        raise wrong_arity("ping")
    if (conn.channels or conn.patterns) and not conn.resp3:  # Redis's reply in the subscribed context
        conn.reply([b"pong", argv[1] if len(argv) == 2 else b""])
    elif len(argv) == 2:
        conn.reply(argv[1])
    else:
        conn.reply_bytes(b"+PONG\r\n")


@handler("ECHO")
def echo(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    conn.reply(argv[1])


_WRONGPASS = RespError("WRONGPASS invalid username-password pair or user is disabled.")


def _login(node: "Mode", conn: "ClientConnection", name: bytes, password: bytes) -> None:
    """Authenticate ``conn`` as user ``name`` (runtime/acl.py) or raise WRONGPASS."""
    user = node.acl.authenticate(name, password)
    if user is None:
        raise _WRONGPASS
    conn.user = user
    if not conn.authenticated:
        conn.authenticated = True
        conn.authenticated_now()


@handler("AUTH")
def auth(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    if len(argv) > 3:
        raise SYNTAX_ERROR
    if len(argv) == 2 and node.acl.default.nopass:
        raise RespError("ERR AUTH <password> called without any password configured for the default user. "
                        "Are you sure your configuration is correct?")
    name, password = (b"default", argv[1]) if len(argv) == 2 else (argv[1], argv[2])
    _login(node, conn, name, password)
    conn.reply(OK)


@handler("ACL")
def acl(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """ACL SETUSER/GETUSER/DELUSER/LIST/USERS/WHOAMI/CAT/SAVE/LOAD (runtime/acl.py)."""
    from replikv.runtime.acl import all_categories, categories
    from replikv.kv.commands import COMMANDS

    sub = argv[1].upper()
    table = node.acl
    text = [a.decode("utf-8", "replace") for a in argv[2:]]
    if sub == b"WHOAMI" and not text:
        conn.reply(conn.user.name.encode())
    elif sub == b"SETUSER" and text:
        table.set_user(text[0], text[1:])
        conn.reply(OK)
    elif sub == b"GETUSER" and len(text) == 1:
        user = table.users.get(text[0])
        if user is None:
            conn.reply(None)
            return
        flags = [b"on" if user.enabled else b"off"] + ([b"nopass"] if user.nopass else [])
        conn.reply([b"flags", flags, b"passwords", [p.encode() for p in user.passwords],
                    b"commands", " ".join(user.command_rules or ["-@all"]).encode(),
                    b"keys", b" ".join(b"~" + p for p in user.key_patterns), b"channels", b"",
                    b"selectors", []])
    elif sub == b"DELUSER" and text:
        conn.reply(table.delete(text))
    elif sub == b"LIST" and not text:
        conn.reply([u.describe().encode() for u in table.users.values()])
    elif sub == b"USERS" and not text:
        conn.reply([name.encode() for name in table.users])
    elif sub == b"CAT" and len(text) <= 1:
        if not text:
            conn.reply([c.encode() for c in all_categories()])
        elif text[0].lower() not in all_categories():
            raise RespError(f"ERR Unknown category '{text[0]}'")
        else:
            conn.reply(sorted(s.name.encode() for s in COMMANDS.values() if "@" + text[0].lower() in categories(s)))
    elif sub == b"SAVE" and not text:
        table.save()
        conn.reply(OK)
    elif sub == b"LOAD" and not text:
        table.load()
        conn.reply(OK)
    else:
        raise RespError(f"ERR unknown subcommand or wrong number of arguments for '{argv[1].decode(errors='replace')}'. "
                        "Try ACL HELP.")


@handler("HELLO")
def hello(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    proto = None
    i = 1
    if len(argv) > 1:
        try:
            proto = int(argv[1])
        except ValueError:
            raise RespError("ERR Protocol version is not an integer or out of range") from None
        if proto not in (2, 3):
            raise RespError("NOPROTO unsupported protocol version")
        i = 2
    name = None
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"AUTH" and i + 2 < len(argv):
            _login(node, conn, argv[i + 1], argv[i + 2])
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(argv):
            name = argv[i + 1]
            i += 2
        else:
            raise RespError(f"ERR Syntax error in HELLO option '{argv[i].decode(errors='replace')}'")
    if not conn.authenticated:
        raise RespError("NOAUTH HELLO must be called with the client already authenticated, otherwise the "
                        "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
                        "select the RESP protocol version at the same time")
    if proto is not None:
        conn.resp3 = proto == 3
    if name is not None:
        conn.name = name
    conn.reply({
        "server": "redis", "version": "7.0.0", "proto": 3 if conn.resp3 else 2, "id": conn.id,
        "mode": "standalone", "role": "master" if node.is_leader else "replica", "modules": [],
        "replikv": __version__,
    })


@handler("SUBSCRIBE")
def subscribe(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    node.pubsub.subscribe(conn, argv[1:], pattern=False)


@handler("PSUBSCRIBE")
def psubscribe(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    node.pubsub.subscribe(conn, argv[1:], pattern=True)


@handler("UNSUBSCRIBE")
def unsubscribe(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    node.pubsub.unsubscribe(conn, argv[1:], pattern=False)


@handler("PUNSUBSCRIBE")
def punsubscribe(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    node.pubsub.unsubscribe(conn, argv[1:], pattern=True)


@handler("PUBLISH")
def publish(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """To this node's subscribers and every peer's (runtime/pubsub.py); answers the local count."""
    conn.reply(node.pubsub.publish(argv[1], argv[2]))


@handler("PUBSUB")
def pubsub(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    conn.reply(node.pubsub.introspect(argv))


@handler("RESET")
def reset(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """As Redis 6.2+: leave MULTI, Pub/Sub and RESP3, drop the name, back to the default user."""
    conn.multi = None
    conn.multi_dirty = False
    conn.watch = {}
    node.pubsub.drop(conn)
    conn.resp3 = False
    conn.name = None
    conn.read_level, conn.read_bound_ms = node.default_read_level()
    conn.set_write_level(node.default_ack)
    conn.user = node.acl.default
    conn.authenticated = node.acl.default.enabled and node.acl.default.nopass
    conn.reply("RESET")


@handler("SELECT")
def select(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    if _int(argv[1]) != 0:
        raise RespError("ERR DB index is out of range")
    conn.reply(OK)


@handler("CLUSTER")
def cluster(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """Redis Cluster's CLUSTER SLOTS | SHARDS | NODES | INFO | KEYSLOT | COUNTKEYSINSLOT |
    GETKEYSINSLOT | MYID: a sharded raft cluster answers them (runtime/sharded_raft.py); the
    other modes answer as a Redis without cluster support."""
    node.cluster_command(conn, argv)


@handler("READONLY")
def readonly(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """Redis Cluster's READONLY: this client knows the cluster (it follows -MOVED) and lets a
    replica serve its reads at the connection's read level; READWRITE sends them to leaders."""
    conn.cluster_aware = True
    conn.readonly = True
    conn.reply(OK)


@handler("READWRITE")
def readwrite(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    conn.readonly = False
    conn.reply(OK)


@handler("ASKING")
def asking(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """Redis Cluster's ASKING (before a command sent after -ASK): a cluster-aware client."""
    conn.cluster_aware = True
    conn.reply(OK)


@handler("QUIT")
def quit_(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    conn.reply(OK)
    conn.close_after_replies()


@handler("MULTI")
def multi(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    if conn.multi is not None:
        raise RespError("ERR MULTI calls can not be nested")
    conn.multi = []
    conn.multi_dirty = False
    conn.reply(OK)


@handler("DISCARD")
def discard(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    if conn.multi is None:
        raise RespError("ERR DISCARD without MULTI")
    conn.multi = None
    conn.watch = {}
    conn.reply(OK)


@handler("EXEC")
def exec_(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """Run the queued commands as one log entry (atomic on every replica)."""
    if conn.multi is None:
        raise RespError("ERR EXEC without MULTI")
    queued, dirty, watched = conn.multi, conn.multi_dirty, conn.watch
    # (an empty block still goes to the mode when it watched keys: it may fail)
    conn.multi = None
    if dirty:
        conn.watch = {}
        raise RespError("EXECABORT Transaction discarded because of previous errors.")
    if not queued and not watched:
        conn.reply([])
        return
    size, limit = sum(map(command_bytes, queued)), node.options.max_command_bytes
    if size > limit:  # the block is replicated as one message (see NodeOptions.max_command_bytes)
        conn.watch = {}
        raise RespError(f"EXECABORT Transaction of {size} bytes is above the largest a node replicates "
                        f"({limit} bytes: proto-max-bulk-len and room for the peer message)")
    node.exec_transaction(conn, queued)  # the mode reads conn.watch now, and decides with it
    conn.watch = {}


@handler("WATCH")
def watch(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """WATCH key...: the next EXEC is aborted if one of them changes first (kv/watch.py).

    Each key is watched from this node's log position now; where the EXEC
    is decided (the leader-follower leader as it runs the block, every raft
    replica at apply) it fails iff the key changed at a later index."""
    if conn.multi is not None:
        raise RespError("ERR WATCH inside MULTI is not allowed")
    for key in argv[1:]:
        conn.watch.setdefault(key, node.watch_position(key))
    conn.reply(OK)


@handler("UNWATCH")
def unwatch(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    conn.watch = {}
    conn.reply(OK)


@handler("WAIT")
def wait(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """WAIT numreplicas timeout: followers holding this connection's last write."""
    if not node.is_leader:
        raise RespError("ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 "
                        "if a replica is configured to be writable (which is not the default) writes to "
                        "replicas are just local and are not propagated.")
    numreplicas, timeout_ms = _int(argv[1]), _int(argv[2])
    if timeout_ms < 0:
        raise RespError("ERR timeout is negative")
    node.wait_replicas(conn, numreplicas, timeout_ms)


@handler("INFO")
def info(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    conn.reply(node.info([a.decode(errors="replace") for a in argv[1:]]).encode())


@handler("CLIENT")
def client(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """CLIENT LIST / INFO / KILL / UNBLOCK / SETNAME / ... (runtime/client_cmd.py)."""
    conn.reply(client_command(node, conn, argv))  # type: ignore[arg-type]


@handler("COMMAND")
def command_(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    conn.reply(command_reply(argv[1:]))


@handler("SCRIPT")
def script(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """SCRIPT LOAD | EXISTS | FLUSH | KILL | HELP: this node's script cache (kv/lua.py)."""
    conn.reply(script_command(node.sm.scripts, argv))


@handler("CONFIG")
def config(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """CONFIG GET / SET / RESETSTAT / REWRITE / HELP (runtime/config_cmd.py)."""
    conn.reply(config_command(node, argv))  # type: ignore[arg-type]


@handler("SAVE")
def save(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """SAVE: a snapshot now, on the loop (REPLIKV SNAPSHOT); the WAL before it is dropped."""
    if node.snapshotter.running:  # type: ignore[attr-defined]
        raise RespError("ERR Background save already in progress")
    node.take_snapshot()
    node.lastsave = int(time.time())  # type: ignore[attr-defined]
    conn.reply(OK)


@handler("BGSAVE")
def bgsave(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """BGSAVE [SCHEDULE]: a snapshot in a forked child (runtime/snapshotter.py)."""
    if len(argv) > 2 or (len(argv) == 2 and argv[1].upper() != b"SCHEDULE"):
        raise SYNTAX_ERROR
    if node.snapshotter.running:  # type: ignore[attr-defined]
        if len(argv) == 2:
            conn.reply("Background saving scheduled")  # the running one covers it
            return
        raise RespError("ERR Background save already in progress")
    if not node.background_snapshot():  # type: ignore[attr-defined]
        raise RespError("ERR Background save could not start (nothing new to save, or the disk "
                        "refuses writes: see INFO persistence)")
    conn.reply("Background saving started")


@handler("LASTSAVE")
def lastsave(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """LASTSAVE: unix time of the last snapshot written (or the start, as Redis)."""
    conn.reply(max(node.lastsave, node.snapshotter.last_ok_time))  # type: ignore[attr-defined]


@handler("ROLE")
def role(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """ROLE as Redis answers it, from this node's INFO replication (every mode writes
    Redis's fields there): ["master", offset, [[ip, port, offset], ...]] or
    ["slave", master ip, master port, "connected"|"connect", offset]."""
    fields: dict[str, str] = {}
    for line in node.info(["replication"]).split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            fields[name] = value
    if fields.get("role") == "master":
        replicas = []
        for name, value in fields.items():
            if name.startswith("slave") and name[5:].isdigit():
                attrs = dict(kv.split("=", 1) for kv in value.split(",") if "=" in kv)
                replicas.append([attrs.get("ip", "").encode(), attrs.get("port", "0").encode(),
                                 attrs.get("offset", "0").encode()])
        conn.reply([b"master", int(fields.get("master_repl_offset", "0")), replicas])
        return
    state = b"connected" if fields.get("master_link_status") == "up" else b"connect"
    conn.reply([b"slave", fields.get("master_host", "").encode(), int(fields.get("master_port", "0") or 0),
                state, int(fields.get("slave_repl_offset", "0") or 0)])


@handler("SLOWLOG")
def slowlog(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    conn.reply(node.slowlog.command(argv))  # type: ignore[attr-defined]


@handler("TIME")
def time_(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """TIME: this node's clock, [seconds, microseconds] as Redis."""
    now_us = time.time_ns() // 1000
    conn.reply([b"%d" % (now_us // 1_000_000), b"%d" % (now_us % 1_000_000)])


@handler("MEMORY")
def memory(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """MEMORY USAGE key [SAMPLES n] (kv/memory.py's estimate) | STATS | PURGE | HELP."""
    conn.reply(memory_command(node, argv))  # type: ignore[arg-type]


@handler("CONSISTENCY")
def consistency(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """CONSISTENCY [READ <level> [ms] | WRITE <level> [k]]: this connection's levels.

    The levels are the mode's (``node.spec``); one it cannot give is refused
    with an error that names the modes offering it, never downgraded."""
    if len(argv) == 1:
        read = f"bounded {conn.read_bound_ms}" if conn.read_level == "bounded" else conn.read_level
        conn.reply(f"read={read.replace(' ', ':')} write={str(conn.write_level).replace(' ', ':')}".encode())
        return
    what = argv[1].upper()
    args = [a.decode(errors="replace").lower() for a in argv[2:]]
    spec = node.spec
    if what == b"READ" and args:
        level = args[0]
        if level not in spec.read_levels:
            if level in modes.READ_LEVELS:
                raise RespError(modes.level_refusal(spec, "read", level))
            if spec.parse_read is None or not level.isdigit():
                raise RespError(f"ERR unknown read level '{' '.join(args)}'; {spec.name} mode offers "
                                f"{', '.join(spec.read_levels)}")
        if spec.parse_read is not None:  # levels with a number of replicas (leaderless)
            conn.read_level, conn.read_bound_ms = spec.parse_read(args), 0
        elif level == "bounded":
            if len(args) != 2 or not (args[1].isascii() and args[1].isdigit()) or len(args[1]) > 12:
                raise RespError("ERR usage: CONSISTENCY READ bounded <ms>")
            conn.read_level, conn.read_bound_ms = "bounded", int(args[1])
        elif len(args) == 1:
            conn.read_level, conn.read_bound_ms = level, 0
        else:
            raise RespError(f"ERR usage: CONSISTENCY READ {level}")
        conn.reply(OK)
    elif what == b"WRITE" and args:
        first = args[0].replace("=", " ").split()[0]
        if first not in spec.write_levels and modes.offering("write", first):
            raise RespError(modes.level_refusal(spec, "write", first))
        conn.set_write_level(spec.parse_write(args, len(node.peer_ids)))
        conn.reply(OK)
    else:
        raise RespError("ERR usage: CONSISTENCY [READ <level> [ms] | WRITE <level> [k]]")


@handler("SESSION")
def session(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """SESSION [token]: read-your-writes across connections; the token is the
    mode's (a log index, a version vector), ``node.session_token``."""
    if len(argv) == 1:
        conn.reply(node.session_token(conn))
        return
    if len(argv) != 2:
        raise RespError("ERR usage: SESSION [token] where token is what SESSION returned")
    node.set_session(conn, argv[1])
    conn.reply(OK)


@handler("VGET")
def vget(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """VGET key: [causal context, [every sibling value]] (multi-leader, leaderless)."""
    node.vget(conn, argv)


@handler("VSET")
def vset(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """VSET key value CONTEXT ctx: a write that supersedes exactly the siblings ``ctx`` saw."""
    if argv[3].upper() != b"CONTEXT":
        raise RespError("ERR usage: VSET key value CONTEXT <context from VGET>")
    node.vset(conn, argv)


@handler("FAILOVER")
def failover(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """FAILOVER TO <node-id> [FORCE], sent to the target node itself."""
    args = [a.upper() for a in argv[1:]]
    if len(args) not in (2, 3) or args[0] != b"TO" or (len(args) == 3 and args[2] != b"FORCE"):
        raise RespError("ERR usage: FAILOVER TO <node-id> [FORCE]")
    node.failover(conn, argv[2].decode(errors="replace"), force=len(args) == 3)


@handler("REPLIKV")
def replikv(node: "Mode", conn: "ClientConnection", argv: list[bytes]) -> None:
    """Admin: REPLIKV DIGEST | DIGESTS | SNAPSHOT | ROLE on every mode; a mode's own
    subcommands (``spec.admin``, e.g. raft's EXEC and CLUSTER) go to its runner."""
    sub = argv[1].upper()
    name = sub.decode(errors="replace")
    if sub == b"DIGEST":
        conn.reply(node.digest().hex().encode())
    elif sub == b"DIGESTS":
        conn.reply([[label.encode(), [h.encode() for h in holders], d.hex().encode()]
                    for label, holders, d in node.digest_parts()])
    elif sub == b"SNAPSHOT":
        conn.reply(node.take_snapshot())
    elif sub == b"ROLE":
        conn.reply(node.role_reply())
    elif name in node.spec.admin:
        node.admin(conn, argv)
    elif any(name in s.admin for s in modes.specs()):
        having = [s.name for s in modes.specs() if name in s.admin]
        raise RespError(f"ERR REPLIKV {name} needs --mode {' or '.join(having)}")
    else:
        raise RespError("ERR usage: REPLIKV " + " | ".join(("DIGEST", "DIGESTS", "SNAPSHOT", "ROLE",
                                                            *node.spec.admin)))


from replikv.runtime import locks as _locks  # noqa: E402,F401  (registers LOCK, RENEW, UNLOCK, LOCKINFO)
