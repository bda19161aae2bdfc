"""Real node processes for integration tests, and condition waits.

Every node is a separate ``python -m replikv node`` process on 127.0.0.1
with its own data directory; tests talk to it with redis-py. Nothing here
sleeps for a fixed time: ``wait_for`` polls a condition until a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis

from replikv.check.harness import HarnessError
from replikv.check.harness import wait_for as harness_wait_for
from replikv import modes
from replikv.ports import free_port_with_offset, free_ports
from replikv.config import PEER_PORT_OFFSET, ClusterConfig, NodeAddress, NodeOptions

T = TypeVar("T")


def free_port_with_peer_port() -> int:
    """A free port P whose peer port P + 10000 (the default) is free and valid too."""
    return free_port_with_offset(PEER_PORT_OFFSET)


def read_until_closed(s: socket.socket) -> bytes:
    """Everything a node sends on a raw socket until it closes it (or a reset / the socket's timeout)."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return data


def limit_peer_frames(monkeypatch: Any) -> int:
    """Peer frames of at most 3 MiB for the nodes started after this (``max_frame_bytes``: the
    ``max_bulk_len`` returned, 1 MiB, which the caller gives its nodes, and
    ``REPLIKV_PEER_FRAME_SLACK_BYTES`` 2 MiB set here; ``max_command_bytes`` is then 2 MiB): the
    limits a few large values pass, as 64 MiB of slack meets with more of them."""
    monkeypatch.setenv("REPLIKV_PEER_FRAME_SLACK_BYTES", str(2 * 1024 * 1024))
    return 1024 * 1024


def wait_for(condition: Callable[[], T], timeout: float = 20.0, what: str = "condition",
             interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns a truthy value; fail at the deadline."""
    return harness_wait_for(condition, timeout, what, interval)


class Cluster:
    def __init__(self, root: Path, n: int = 3, secret: str = "test-secret", **options: Any) -> None:
        ports = free_ports(2 * n)
        nodes = {
            f"n{i + 1}": NodeAddress(id=f"n{i + 1}", host="127.0.0.1", port=ports[2 * i],
                                     peer_port=ports[2 * i + 1], data_dir=str(root / f"n{i + 1}"))
            for i in range(n)
        }
        options.setdefault("log_level", "info")
        self.config = ClusterConfig(mode="leader-follower", secret=secret, initial_leader="n1",
                                    nodes=nodes, options=NodeOptions(**options))
        self.root = root
        self.path = root / "cluster.toml"
        root.mkdir(parents=True, exist_ok=True)
        self.config.save(self.path)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.password = options.get("requirepass")

    # -- processes ---------------------------------------------------------
    def start(self, *ids: str, config_path: Path | None = None) -> "Cluster":
        for node_id in ids or tuple(self.config.nodes):
            log = open(self.log_path(node_id), "ab")
            self.procs[node_id] = subprocess.Popen(
                [sys.executable, "-m", "replikv", "node", "--config", str(config_path or self.path), "--id", node_id],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            log.close()
        try:
            for node_id in ids or tuple(self.config.nodes):
                wait_for(lambda: self._answers_ping(node_id), 20, f"{node_id} to answer PING")
        except BaseException:
            self.close()  # a node that never answered: stop them all, leave no process behind
            raise
        return self

    def _answers_ping(self, node_id: str) -> bool:
        """PING answered; a node process that exited instead fails at once, with its log's end
        (a port taken between ``free_ports`` and the node's bind, a crash at start)."""
        proc = self.procs[node_id]
        if proc.poll() is not None:
            raise HarnessError(f"{node_id} exited with {proc.returncode} before answering PING; its log "
                               f"ends:\n{self.log_text(node_id)[-2000:]}")
        return bool(self.client(node_id, timeout=0.5).ping())

    def log_path(self, node_id: str) -> Path:
        path = self.root / f"{node_id}.log"
        return path

    def log_text(self, node_id: str) -> str:
        return self.log_path(node_id).read_text(errors="replace")

    def assert_no_peer_link_closed(self) -> None:
        """No node's log says it closed a peer link (a frame above the peer frame limit, or one
        it could not read): what the large-value tests check once their writes replicated."""
        for node in self.config.nodes:
            assert "closing peer connection" not in self.log_text(node), node

    def kill(self, node_id: str) -> None:
        proc = self.procs.pop(node_id)
        proc.kill()
        proc.wait(10)

    def stop(self, node_id: str) -> None:
        proc = self.procs.pop(node_id)
        proc.terminate()
        proc.wait(20)

    def pause(self, node_id: str) -> None:
        self.procs[node_id].send_signal(signal.SIGSTOP)

    def resume(self, node_id: str) -> None:
        self.procs[node_id].send_signal(signal.SIGCONT)

    def close(self) -> None:
        for node_id, proc in list(self.procs.items()):
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(10)
        self.procs.clear()

    # -- clients -----------------------------------------------------------------
    def port(self, node_id: str) -> int:
        return self.config.nodes[node_id].port

    def client(self, node_id: str, timeout: float = 10.0, **kw: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port(node_id), socket_timeout=timeout,
                           socket_connect_timeout=timeout, password=self.password, **kw)

    def replication(self, node_id: str) -> dict[str, Any]:
        return self.client(node_id, timeout=2).info("replication")

    def last_index(self, node_id: str) -> int:
        return int(self.replication(node_id)["master_repl_offset"])

    def digest(self, node_id: str) -> bytes:
        return self.client(node_id).execute_command("REPLIKV", "DIGEST")

    def wait_replicated(self, ids: list[str], leader: str = "n1", timeout: float = 30.0) -> None:
        target = self.last_index(leader)
        for node_id in ids:
            wait_for(lambda: self.last_index(node_id) >= target, timeout, f"{node_id} to reach index {target}")

    def wait_streaming(self, leader: str = "n1", followers: int | None = None, timeout: float = 20.0) -> None:
        """Wait until the leader streams to every follower (state=online)."""
        want = len(self.config.nodes) - 1 if followers is None else followers

        def online() -> bool:
            info = self.replication(leader)
            return sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                       and v.get("state") == "online") >= want
        wait_for(online, timeout, f"{leader} to stream to {want} followers")

    def leader(self, timeout: float = 20.0) -> str:
        """The one node that reports itself master (waits for there to be exactly one); in a
        mode where every node takes writes, the first node."""
        if not modes.get(self.config.mode).single_writer:
            return next(iter(self.config.nodes))

        def find() -> str | None:
            leaders = [n for n in self.procs if self.replication(n)["role"] == "master"]
            return leaders[0] if len(leaders) == 1 else None
        return wait_for(find, timeout, "one leader")

    def stats(self, node_id: str) -> dict[str, Any]:
        return self.client(node_id, timeout=2).info("stats")


class RawConnection:
    """One client connection without a client library's reply conversions:
    ``call`` sends a command and returns the next reply(ies) as parsed RESP."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        from replikv.core.resp import ReplyParser

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.parser = ReplyParser()

    def call(self, *argv: str | bytes | int, replies: int = 1) -> Any:
        """Send ``argv``; its reply (a list of ``replies`` replies when more than one)."""
        from replikv.core.resp import encode_command

        self.sock.sendall(encode_command([a.encode() if isinstance(a, str) else a for a in argv]))
        out: list[Any] = []
        while len(out) < replies:
            out += self.parser.replies()
            if len(out) < replies:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the node closed the connection")
                self.parser.feed(chunk)
        return out if replies > 1 else out[0]

    def close(self) -> None:
        self.sock.close()
