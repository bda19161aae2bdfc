"""What every node runtime shares, whatever its replication mode.

``BaseRunner`` is the part of a node that ``ClientConnection`` and the
connection/admin handlers (``runtime/commands.py``) rely on:

- the node's identity, options, data directory and protected-mode check;
- client bookkeeping (``clients``, ``dirty_clients``, ``_flush_clients``);
- command dispatch (``execute``): arity, AUTH, MULTI queueing, then routing
  to the mode's ``_write_one`` (a data write), ``_read`` (a data read) or a
  handler of ``commands.HANDLERS``;
- the INFO skeleton (server, clients, stats, keyspace sections; the mode
  adds persistence and replication).

A mode subclasses it (``NodeRunner`` for leader-follower, ``RaftRunner`` for
raft) and provides ``_write_one``, ``_read``, ``is_leader``,
``default_read_level``, ``ack_replicas``, ``default_ack`` and the INFO
sections it owns.

Invariant (pipeline order): every command gets exactly one reply through
``conn`` (directly, or through a ``Slot`` resolved later), so replies leave in
the order the commands arrived (resp_server.py).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from replikv import __version__
from replikv.config import ClusterConfig, ConfigError, NodeOptions, is_loopback
from replikv.core.invariant import InvariantViolation
from replikv.core.replies import RespError, wrong_arity
from replikv.core.resp import QUEUED_REPLY
from replikv.kv.commands import lookup, unknown_command
from replikv.runtime.resp_server import ClientConnection

log = logging.getLogger("replikv.node")

_WRITE, _READ, _HANDLER = 0, 1, 2
_BEFORE_AUTH = frozenset({"AUTH", "HELLO", "QUIT"})
_MULTI_CONTROL = frozenset({"EXEC", "DISCARD", "MULTI", "QUIT", "WATCH"})


class BaseRunner:
    def __init__(self, config: ClusterConfig, node_id: str) -> None:
        from replikv.runtime.commands import HANDLERS  # the connection/admin commands

        config.validate()
        self._handlers: dict[str, Any] = HANDLERS
        self.config = config
        self.address = config.node(node_id)
        self.id = node_id
        self.options: NodeOptions = config.options
        opts = self.options
        if not is_loopback(self.address.host) and (not opts.requirepass or not config.secret):
            raise ConfigError(
                f"protected mode: node {node_id} would listen on non-loopback address {self.address.host} "
                "without --requirepass and a cluster secret; set both, or bind to 127.0.0.1")
        self.data_dir = Path(self.address.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_dir = self.data_dir / "snapshots"
        self.snapshot_dir.mkdir(exist_ok=True)
        self.clients: dict[int, ClientConnection] = {}
        self.dirty_clients: set[ClientConnection] = set()
        self._dispatch: dict[bytes, tuple[Any, int, Any]] = {}
        self.commands_processed = 0
        self.frames_in = 0
        self.stats: dict[str, int] = {"total_connections_received": 0, "rejected_calls": 0}
        self.started = time.time()

    # -- what a mode provides -------------------------------------------------
    @property
    def is_leader(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _write_one(self, conn: ClientConnection, argv: list[bytes]) -> None:  # pragma: no cover
        raise NotImplementedError

    def _read(self, conn: ClientConnection, argv: list[bytes]) -> None:  # pragma: no cover
        raise NotImplementedError

    # -- command dispatch -------------------------------------------------------
    def _resolve(self, name: bytes) -> tuple[Any, int, Any] | None:
        """(spec, kind, handler) for a command name as sent, cached per spelling."""
        spec = lookup(name)
        if spec is None:
            return None
        upper = spec.name.upper()
        handler = self._handlers.get(upper)
        kind = _HANDLER if handler is not None else _WRITE if "write" in spec.flags else _READ
        entry = (spec, kind, handler)
        if len(self._dispatch) < 4096:
            self._dispatch[name] = entry
        return entry

    def execute(self, conn: ClientConnection, argv: list[bytes]) -> None:
        """Run one parsed command for ``conn`` (replies in pipeline order)."""
        if not argv:
            return
        self.commands_processed += 1
        entry = self._dispatch.get(argv[0]) or self._resolve(argv[0])
        if entry is None:
            self.stats["rejected_calls"] += 1
            conn.reply(unknown_command(argv))
            if conn.multi is not None:
                conn.multi_dirty = True
            return
        spec, kind, handler = entry
        arity = spec.arity
        if (len(argv) != arity) if arity > 0 else (len(argv) < -arity):
            self.stats["rejected_calls"] += 1
            conn.reply(wrong_arity(spec.name))
            if conn.multi is not None:
                conn.multi_dirty = True
            return
        if not conn.authenticated and spec.name.upper() not in _BEFORE_AUTH:
            conn.reply(RespError("NOAUTH Authentication required."))
            return
        if conn.multi is not None and spec.name.upper() not in _MULTI_CONTROL:
            if kind == _HANDLER:
                conn.reply(RespError("ERR Command not allowed inside a transaction"))
                conn.multi_dirty = True
                return
            conn.multi.append(argv)
            conn.reply_bytes(QUEUED_REPLY)
            return
        try:
            if kind == _WRITE:
                self._write_one(conn, argv)
            elif kind == _READ:
                self._read(conn, argv)
            else:
                handler(self, conn, argv)
        except InvariantViolation:
            raise
        except Exception as e:  # a bug must not take the connection (or the node) down
            log.exception("command %r failed", spec.name)
            conn.reply(RespError(f"ERR internal error running '{spec.name.lower()}': {type(e).__name__}"))

    def _flush_clients(self) -> None:
        if self.dirty_clients:
            dirty, self.dirty_clients = self.dirty_clients, set()
            for conn in dirty:
                conn.flush()

    # -- INFO ----------------------------------------------------------------------
    def info_sections(self) -> dict[str, list[str]]:
        """The sections every mode has; a mode adds persistence and replication."""
        return {
            "server": [
                "redis_version:7.0.0", f"replikv_version:{__version__}", "redis_mode:standalone",
                f"replikv_mode:{self.config.mode}", f"process_id:{os.getpid()}", f"run_id:{self.id}",
                f"tcp_port:{self.address.port}", f"uptime_in_seconds:{int(time.time() - self.started)}",
            ],
            "clients": [f"connected_clients:{len(self.clients)}"],
            "stats": [f"total_commands_processed:{self.commands_processed}",
                      f"replikv_peer_frames_in:{self.frames_in}"]
            + [f"{k}:{v}" for k, v in self.stats.items()],
        }

    @staticmethod
    def render_info(sections: dict[str, list[str]], section: str) -> str:
        """Redis's INFO text: ``# Name`` headers, ``key:value`` lines, CRLF."""
        wanted = section.lower()
        if wanted in ("", "all", "default", "everything"):
            names = list(sections)
        elif wanted in sections:
            names = [wanted]
        else:
            names = []
        out = []
        for name in names:
            out.append(f"# {name.capitalize()}")
            out += [line for line in sections[name] if line]
            out.append("")
        return "\r\n".join(out)
