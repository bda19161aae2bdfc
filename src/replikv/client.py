"""A cluster-aware replikv client on top of redis-py.

``Client(["127.0.0.1:7001", "127.0.0.1:7002"], password=...)`` talks to any
node and follows leader changes: on ``MOVED host:port`` it reconnects there,
on ``TRYAGAIN`` / ``CLUSTERDOWN`` / a connection error it tries the next
address after a short jittered backoff, until ``retry_timeout_s`` runs out.

Exactly-once writes (raft mode, Raft thesis §6.3): the client picks a random
63-bit client id once, and every write it sends is wrapped as

    REPLIKV EXEC <client-id> <seq> <command> [arg ...]

with ``seq`` increased by one per new write and kept the SAME on every retry
of that write. The cluster's replicated session table remembers, per client
id, the last seq applied and its reply, so a write retried after a leader
change (the first attempt may have committed before the leader died) is
applied once and the retry gets the first attempt's reply. Only the newest
seq is remembered: one Client must not have two writes in flight at once
(it is not thread-safe; use one per thread). Reads are sent as they are and
get the connection's read level (linearizable by default in raft mode).
"""

from __future__ import annotations

import random
import time
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["Client", "ClusterUnavailable"]

_RETRYABLE = ("TRYAGAIN", "CLUSTERDOWN", "LOADING")


class ClusterUnavailable(Exception):
    """No node answered the command (or they kept saying TRYAGAIN) before the deadline."""


def _parse(address: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(address, tuple):
        return address
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


class Client:
    def __init__(self, addresses: list[str] | list[tuple[str, int]], *, password: str | None = None,
                 client_id: int | None = None, socket_timeout_s: float = 5.0,
                 retry_timeout_s: float = 15.0, rng: random.Random | None = None) -> None:
        if not addresses:
            raise ValueError("a Client needs at least one node address")
        self.addresses = [_parse(a) for a in addresses]
        self.password = password
        self.rng = rng or random.Random()
        self.client_id = client_id if client_id is not None else self.rng.getrandbits(62) + 1
        self.seq = 0
        self.socket_timeout_s = socket_timeout_s
        self.retry_timeout_s = retry_timeout_s
        self._current = 0
        self._conn: redis.Redis | None = None
        self._override: tuple[str, int] | None = None  # where MOVED pointed
        self.retries = 0  # how many times a command was sent again (for tests and metrics)

    # -- public API ---------------------------------------------------------------
    def write(self, *args: Any) -> Any:
        """An exactly-once write: a new seq, the same seq on every retry."""
        self.seq += 1
        return self._call(["REPLIKV", "EXEC", self.client_id, self.seq, *args])

    def read(self, *args: Any) -> Any:
        return self._call(list(args))

    def set(self, key: Any, value: Any) -> Any:
        return self.write("SET", key, value)

    def incr(self, key: Any) -> Any:
        return self.write("INCR", key)

    def get(self, key: Any) -> Any:
        return self.read("GET", key)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- machinery ----------------------------------------------------------------------
    def _connection(self) -> redis.Redis:
        if self._conn is None:
            host, port = self._override or self.addresses[self._current]
            self._conn = redis.Redis(host=host, port=port, password=self.password,
                                     socket_timeout=self.socket_timeout_s,
                                     socket_connect_timeout=self.socket_timeout_s)
        return self._conn

    def _next_node(self) -> None:
        self.close()
        self._override = None
        self._current = (self._current + 1) % len(self.addresses)

    def _call(self, args: list[Any]) -> Any:
        deadline = time.monotonic() + self.retry_timeout_s
        backoff = 0.01
        attempt = 0
        while True:
            if attempt:
                self.retries += 1
            attempt += 1
            try:
                return self._connection().execute_command(*args)
            except ResponseError as e:
                text = str(e)
                moved = getattr(e, "host", None), getattr(e, "port", None)
                if text.startswith("MOVED") or moved[0]:
                    self.close()
                    if moved[0]:
                        self._override = (str(moved[0]), int(moved[1]))  # type: ignore[arg-type]
                    else:
                        self._override = _parse(text.split()[-1])
                    continue
                if not text.startswith(_RETRYABLE) and type(e).__name__ not in ("TryAgainError",
                                                                                  "ClusterDownError"):
                    raise
                self._next_node()
            except (RedisConnectionError, RedisTimeoutError, OSError):
                self._next_node()
            if time.monotonic() > deadline:
                raise ClusterUnavailable(f"no node completed {args[:1]} within {self.retry_timeout_s} s")
            time.sleep(backoff * (0.5 + self.rng.random()))
            backoff = min(backoff * 2, 0.2)
