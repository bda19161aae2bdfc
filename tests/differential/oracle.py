"""Redis 7.0 as the oracle: the same command goes to a real ``redis-server``
and to replikv's state machine along each of its write paths, and the
replies and resulting states must agree.

``Differential.run(*argv)`` sends ``argv`` to

- ``redis-server`` (a private process, no persistence), over a raw socket,
  its reply parsed by hiredis;
- replikv's leader-follower leader path: ``StateMachine.execute`` (exact
  rewrite, apply, the commands to log), or ``read`` for a read;
- a follower that applies exactly what that leader logged, with no clock
  (``apply(cmds, ApplyContext(None))``);
- raft's path: ``prepare(exact=False)`` then ``apply`` at the entry's time,
  on a third state machine.

It asserts that the leader's reply, encoded as RESP2 and parsed by the same
hiredis reader, equals Redis's (``unordered=True`` sorts the top-level array
first, for SMEMBERS and friends; ``unordered="pairs"`` sorts flat field/value
pairs, for HGETALL), that raft's reply equals the leader's, and that the three
state machines hold the same data (``digest()``). It returns Redis's reply.

Commands whose reply is random (SPOP, SRANDMEMBER, ...) cannot be compared
reply for reply: ``run_replikv`` runs them on replikv only (the replicas must
still agree), and the test checks the reply's shape itself.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import hiredis

from replikv.core.replies import RespError
from replikv.core.resp import encode_command, encode_reply
from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from replikv.ports import free_port

__all__ = ["Differential", "RedisServer", "redis_server_path"]


def redis_server_path() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """A private ``redis-server`` (no RDB, no AOF) spoken to over one raw socket."""

    def __init__(self, workdir: Path) -> None:
        exe = redis_server_path()
        assert exe is not None
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.01)
        self.reader = hiredis.Reader()

    def call(self, *argv: bytes | str | int | float) -> Any:
        """Send one command; its reply (errors as ``hiredis.ReplyError`` values)."""
        self.sock.sendall(encode_command(argv))
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise RuntimeError("redis-server closed the connection")
            self.reader.feed(chunk)

    def close(self) -> None:
        self.sock.close()
        self.proc.terminate()
        self.proc.wait(10)


def _parsed(value: Any) -> Any:
    """replikv's reply as Redis's would read: RESP2 bytes through hiredis."""
    reader = hiredis.Reader()
    reader.feed(encode_reply(value))
    return reader.gets()


def _normal(reply: Any, unordered: bool | str) -> Any:
    if isinstance(reply, hiredis.ReplyError):
        return ("error", str(reply))
    if isinstance(reply, list):
        reply = [_normal(r, False) for r in reply]
        if unordered == "pairs":
            return sorted(zip(reply[::2], reply[1::2], strict=True))
        if unordered:
            return sorted(reply, key=repr)
    return reply


class Differential:
    """One redis-server against three replikv replicas; see the module docstring."""

    def __init__(self, server: RedisServer) -> None:
        self.redis = server
        self.reset()

    def reset(self) -> None:
        """Empty Redis and start three fresh replicas."""
        assert self.redis.call("FLUSHALL") == b"OK"
        self.leader = StateMachine()
        self.follower = StateMachine()
        self.raft = StateMachine()

    def run(self, *args: bytes | str | int | float, unordered: bool | str = False) -> Any:
        argv = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        expected = self.redis.call(*argv)
        got = self.run_replikv(*argv)
        assert _normal(_parsed(got), unordered) == _normal(expected, unordered), (
            f"{b' '.join(argv)!r}: replikv {got!r}, redis {expected!r}"
        )
        return expected

    def run_replikv(self, *args: bytes | str | int | float) -> Any:
        """Run ``argv`` on the three replicas only; their states must agree. The leader's reply."""
        argv = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        now = int(time.time() * 1000)
        ctx = ApplyContext(now)
        reply, cmds = self.leader.execute(list(argv), ctx)
        if cmds:
            self.follower.apply(cmds, ApplyContext(None))
        err, raft_cmds = self.raft.prepare(list(argv), ctx, exact=False)
        if raft_cmds is None:
            raft_reply = err if err is not None else self.raft.read(list(argv), now)
        else:
            raft_reply = self.raft.apply(raft_cmds, ctx)[-1]
        if not _random_reply(argv):
            assert _parsed(raft_reply) == _parsed(reply) or _same_error(raft_reply, reply), (
                f"{b' '.join(argv)!r}: raft path {raft_reply!r}, leader {reply!r}"
            )
        digest = self.leader.digest()
        assert self.follower.digest() == digest, f"{b' '.join(argv)!r}: follower differs"
        assert self.raft.digest() == digest, f"{b' '.join(argv)!r}: raft replica differs"
        return reply


def _same_error(a: Any, b: Any) -> bool:
    return isinstance(a, RespError) and isinstance(b, RespError) and a.message == b.message


def _random_reply(argv: list[bytes]) -> bool:
    return argv[0].upper() in _RANDOM


# Commands whose reply is chosen at random (the replicas still agree on the state).
_RANDOM = {b"SPOP", b"SRANDMEMBER", b"HRANDFIELD", b"ZRANDMEMBER", b"RANDOMKEY"}


class RawPair:
    """Redis and a real replikv node: the same bytes to each on fresh
    connections, and every reply byte each sends back (runtime commands,
    connection state, Pub/Sub: what the in-process ``Differential`` cannot see)."""

    def __init__(self, redis_port: int, replikv_port: int) -> None:
        self.ports = (redis_port, replikv_port)

    def exchange(self, *commands: list[str | bytes], replies: int | None = None) -> tuple[list[Any], list[Any]]:
        """Send ``commands`` pipelined on a new connection to each server; the
        parsed replies (``replies`` of them, one per command by default)."""
        want = len(commands) if replies is None else replies
        payload = b"".join(encode_command(list(c)) for c in commands)
        out = []
        for port in self.ports:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(payload)
                reader = hiredis.Reader()
                got: list[Any] = []
                while len(got) < want:
                    reply = reader.gets()
                    if reply is False:
                        try:
                            chunk = s.recv(1 << 16)
                        except TimeoutError:
                            raise AssertionError(f"port {port}: no reply after {got}") from None
                        assert chunk, f"port {port} closed after {len(got)} replies"
                        reader.feed(chunk)
                    else:
                        got.append(_normal(reply, False))
                out.append(got)
        return out[0], out[1]

    def same(self, *commands: list[str | bytes], replies: int | None = None, skip: int = 0) -> list[Any]:
        """``exchange``, asserting replikv answered exactly as Redis did (but
        for the first ``skip`` replies, e.g. HELLO's server details); Redis's replies."""
        expected, got = self.exchange(*commands, replies=replies)
        for i, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
            assert i < skip or mine == theirs, f"reply {i} to {commands}: replikv {mine!r}, redis {theirs!r}"
        return expected
