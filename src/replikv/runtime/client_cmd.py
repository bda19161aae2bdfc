"""CLIENT: the connections of this node, as Redis 7.0 shows and controls them.

LIST and INFO write Redis's ``key=value`` line per connection (the fields
Redis clients and tools parse; ``qbuf``, ``omem`` and ``tot-mem`` are the
bytes replikv buffers for the connection). KILL takes Redis's old form
(``ip:port``: OK or "No such client") and its filters (ID, ADDR, LADDR,
USER, SKIPME, MAXAGE: the count killed). UNBLOCK answers a client blocked
in BLPOP & co (runtime/blocking.py) with its timeout reply, or with
``-UNBLOCKED``. PAUSE, UNPAUSE, REPLY, TRACKING and CACHING are not offered:
they answer an error that says so.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from replikv.core.replies import OK, SYNTAX_ERROR, RespError

if TYPE_CHECKING:
    from replikv.runtime.base import BaseRunner
    from replikv.runtime.resp_server import ClientConnection

__all__ = ["client_command", "describe"]

_NOT_OFFERED = frozenset({b"PAUSE", b"UNPAUSE", b"REPLY", b"TRACKING", b"CACHING", b"TRACKINGINFO",
                          b"GETREDIR"})
_HELP = [
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME", "    Return the name of the current connection.",
    "ID", "    Return the ID of the current connection.",
    "INFO", "    Return information about the current client connection.",
    "KILL <ip:port>", "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are: ID, ADDR, LADDR, USER, SKIPME, MAXAGE.",
    "LIST [options ...]", "    Return information about client connections. Options: TYPE normal, ID <id> ...",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]", "    Unblock the specified blocked client.",
    "SETNAME <name>", "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>", "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
    "NO-EVICT (ON|OFF)", "    Accepted; replikv never evicts clients.",
    "HELP", "    Prints this help.",
]


def describe(node: "BaseRunner", c: "ClientConnection") -> str:
    """One CLIENT LIST line for connection ``c``."""
    now = time.monotonic()
    flags = ("b" if c.blocked else "") + ("x" if c.multi is not None else "") + \
            ("P" if c.channels or c.patterns else "")
    qbuf = c.parser.pending
    omem = sum(map(len, c.out)) + (c.transport.get_write_buffer_size() if c.transport else 0)
    name = (c.name or b"").decode(errors="replace")
    return (f"id={c.id} addr={c.addr} laddr={c.laddr} fd={c.fd} name={name} age={int(now - c.created)} "
            f"idle={int(now - c.last_active)} flags={flags or 'N'} db=0 sub={len(c.channels)} "
            f"psub={len(c.patterns)} ssub=0 multi={-1 if c.multi is None else len(c.multi)} qbuf={qbuf} "
            f"qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll={len(c.queue)} omem={omem} "
            f"tot-mem={qbuf + omem} events=r cmd={c.last_cmd} user={c.user.name} redir=-1 "
            f"resp={3 if c.resp3 else 2} lib-name={c.lib_name.decode(errors='replace')} "
            f"lib-ver={c.lib_ver.decode(errors='replace')}")


# Redis 7.0's subcommand arities (over the whole argv, as COMMAND reports them)
_ARITY = {b"SETNAME": 3, b"GETNAME": 2, b"ID": 2, b"INFO": 2, b"SETINFO": 4, b"KILL": -3, b"LIST": -2,
          b"UNBLOCK": -3, b"NO-EVICT": 3, b"HELP": 2, b"PAUSE": -3, b"UNPAUSE": 2, b"REPLY": 3,
          b"TRACKING": -3, b"CACHING": 3, b"TRACKINGINFO": 2, b"GETREDIR": 2}


def client_command(node: "BaseRunner", conn: "ClientConnection", argv: list[bytes]) -> Any:
    sub = argv[1].upper()
    n = len(argv)
    arity = _ARITY.get(sub)
    if arity is None:
        return RespError(f"ERR unknown subcommand '{argv[1].decode(errors='replace')}'. Try CLIENT HELP.")
    if (n != arity) if arity > 0 else (n < -arity):
        return RespError(f"ERR wrong number of arguments for 'client|{sub.decode().lower()}' command")
    if sub == b"SETNAME" and n == 3:
        if any(ch <= 32 or ch > 126 for ch in argv[2]):
            return RespError("ERR Client names cannot contain spaces, newlines or special characters.")
        conn.name = argv[2] or None
        return OK
    if sub == b"GETNAME" and n == 2:
        return conn.name
    if sub == b"ID" and n == 2:
        return conn.id
    if sub == b"SETINFO" and n == 4:
        attr = argv[2].upper()
        if attr == b"LIB-NAME":
            conn.lib_name = argv[3]
        elif attr == b"LIB-VER":
            conn.lib_ver = argv[3]
        else:
            return RespError(f"ERR Unrecognized option '{argv[2].decode(errors='replace')}'")
        return OK
    if sub == b"INFO" and n == 2:
        return (describe(node, conn) + "\n").encode()
    if sub == b"LIST":
        return _list(node, argv[2:])
    if sub == b"KILL" and n >= 3:
        return _kill(node, conn, argv[2:])
    if sub == b"UNBLOCK":
        return _unblock(node, argv[2:]) if n <= 4 else SYNTAX_ERROR
    if sub == b"NO-EVICT" and n == 3:
        if argv[2].upper() not in (b"ON", b"OFF"):
            return SYNTAX_ERROR
        return OK
    if sub == b"HELP" and n == 2:
        return _HELP
    if sub in _NOT_OFFERED:
        return RespError(f"ERR CLIENT {sub.decode()} is not offered by replikv")
    return RespError(f"ERR unknown subcommand or wrong number of arguments for "
                     f"'{argv[1].decode(errors='replace')}'. Try CLIENT HELP.")


def _list(node: "BaseRunner", opts: list[bytes]) -> Any:
    clients = list(node.clients.values())
    i = 0
    while i < len(opts):
        opt = opts[i].upper()
        if opt == b"TYPE" and i + 1 < len(opts):
            kind = opts[i + 1].lower()
            if kind not in (b"normal", b"master", b"replica", b"slave", b"pubsub"):
                return RespError(f"ERR Unknown client type '{opts[i + 1].decode(errors='replace')}'")
            if kind == b"pubsub":
                clients = [c for c in clients if c.channels or c.patterns]
            elif kind == b"normal":
                clients = [c for c in clients if not (c.channels or c.patterns)]
            else:
                clients = []  # peers are not clients here
            i += 2
        elif opt == b"ID" and i + 1 < len(opts):
            ids = set()
            for raw in opts[i + 1:]:
                if not raw.isdigit() or int(raw) == 0:
                    return RespError("ERR Invalid client ID")
                ids.add(int(raw))
            clients = [c for c in clients if c.id in ids]
            break
        else:
            return SYNTAX_ERROR
    return "".join(describe(node, c) + "\n" for c in clients).encode()


def _kill(node: "BaseRunner", me: "ClientConnection", args: list[bytes]) -> Any:
    if len(args) == 1:  # the old form: CLIENT KILL ip:port
        victims = [c for c in node.clients.values() if c.addr.encode() == args[0]]
        if not victims:
            return RespError("ERR No such client")
        _close(victims[0])
        return OK
    if len(args) % 2:
        return SYNTAX_ERROR
    skipme = True
    tests: list[Any] = []
    for opt, value in zip(args[::2], args[1::2]):
        o = opt.upper()
        if o == b"ID":
            if not value.isdigit() or int(value) == 0:
                return RespError("ERR client-id should be greater than 0")
            tests.append(lambda c, v=int(value): c.id == v)
        elif o == b"ADDR":
            tests.append(lambda c, v=value: c.addr.encode() == v)
        elif o == b"LADDR":
            tests.append(lambda c, v=value: c.laddr.encode() == v)
        elif o == b"USER":
            if value.decode(errors="replace") not in node.acl.users:
                return RespError(f"ERR No such user '{value.decode(errors='replace')}'")
            tests.append(lambda c, v=value: c.user.name.encode() == v)
        elif o == b"SKIPME":
            if value.lower() not in (b"yes", b"no"):
                return SYNTAX_ERROR
            skipme = value.lower() == b"yes"
        elif o == b"MAXAGE":
            if not value.isdigit():
                return SYNTAX_ERROR
            tests.append(lambda c, v=int(value): time.monotonic() - c.created >= v)
        elif o == b"TYPE":
            kind = value.lower()
            if kind not in (b"normal", b"master", b"replica", b"slave", b"pubsub"):
                return RespError(f"ERR Unknown client type '{value.decode(errors='replace')}'")
            pubsub = kind == b"pubsub"
            tests.append(lambda c, p=pubsub, k=kind: (bool(c.channels or c.patterns) == p)
                         and k in (b"normal", b"pubsub"))
        else:
            return SYNTAX_ERROR
    victims = [c for c in node.clients.values()
               if all(t(c) for t in tests) and not (skipme and c is me)]
    for c in victims:
        _close(c)
    return len(victims)


def _close(c: "ClientConnection") -> None:
    c.closing = True
    if c.transport is not None:
        c.transport.close()


def _unblock(node: "BaseRunner", args: list[bytes]) -> Any:
    if not args[0].isdigit():
        return RespError("ERR value is not an integer or out of range")
    how = args[1].upper() if len(args) == 2 else b"TIMEOUT"
    if how not in (b"TIMEOUT", b"ERROR"):
        return RespError("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
    target = node.clients.get(int(args[0]))
    if target is None or not target.blocked:
        return 0
    node.blocking.unblock(target, error=how == b"ERROR")
    return 1
