"""The lease a ``replikv rebalance`` (or ``cluster remove``) holds while it moves groups.

Two rebalances at once would each compute a plan from the same placement and carry out
conflicting moves (both adding a learner to one group, one removing what the other just
promoted). So a rebalance first takes a lock on the cluster's own lock service (``LOCK``,
``RENEW``, ``UNLOCK``: kv/locks.py, leases granted through a group's Raft log) and keeps it
until it is done:

- ``acquire``: ``LOCK replikv:rebalance <lease>`` on any node (forwarded to the lock's group
  leader). A nil answer means another rebalance holds it: ``LeaseError`` naming its token and
  the time left on its lease.
- A thread renews the lease every third of it. A renewal refused (``NOTHOLDER``: the lease ran
  out, say the machine was suspended, and another rebalance may have taken it) marks the lease
  lost; ``check`` raises before the rebalance's next step, so at most the step in flight runs
  unprotected.
- ``release``: ``UNLOCK``. A rebalance that dies without it holds the lock until its lease runs
  out (``LEASE_MS``); the next one then proceeds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis

__all__ = ["LEASE_MS", "LOCK_NAME", "LeaseError", "NoAnswer", "RebalanceLease", "call_any_node"]

LOCK_NAME = "replikv:rebalance"
LEASE_MS = 30_000


class LeaseError(Exception):
    """The lease could not be taken, or was lost."""


class NoAnswer(Exception):
    """No node answered in time; the message is the last error seen."""


def call_any_node(clients: Callable[[], list[redis.Redis]], deadline: float, *argv: str, done_if: str = "") -> Any:
    """``argv`` on the first node of ``clients()`` (fresh clients, closed here) that answers, again
    every 0.2 s while the cluster answers TRYAGAIN or no node answers, until ``deadline``
    (``NoAnswer``). Any other error reply is raised; one containing ``done_if`` is success,
    answered None (a retried change that had been made)."""
    while True:
        last: Exception | None = None
        for client in clients():
            try:
                return client.execute_command(*argv)
            except redis.ResponseError as e:
                if done_if and done_if in str(e):
                    return None
                if not str(e).startswith("TRYAGAIN") and not isinstance(e, redis.exceptions.TryAgainError):
                    raise
                last = e
            except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                last = e
            finally:
                client.close()
        if time.monotonic() > deadline:
            raise NoAnswer(str(last))
        time.sleep(0.2)


class RebalanceLease:
    def __init__(self, clients: Callable[[], list[redis.Redis]], lease_ms: int = LEASE_MS) -> None:
        """``clients``: a fresh client per node of the cluster, asked in turn (any node forwards
        the lock commands to the lock's group leader)."""
        self.clients = clients
        self.lease_ms = lease_ms
        self.token: int | None = None
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _call(self, deadline: float, *argv: str) -> Any:
        try:
            return call_any_node(self.clients, deadline, *argv)
        except NoAnswer as e:
            raise LeaseError(f"{argv[0]} {LOCK_NAME}: no node answered in time ({e})") from None

    def acquire(self, timeout_s: float = 30.0) -> None:
        token = self._call(time.monotonic() + timeout_s, "LOCK", LOCK_NAME, str(self.lease_ms))
        if token is None:
            info = self._call(time.monotonic() + timeout_s, "LOCKINFO", LOCK_NAME)
            fields = dict(zip(info[::2], info[1::2])) if isinstance(info, list) else {}
            raise LeaseError(f"another rebalance is running: it holds the lock {LOCK_NAME} (token "
                             f"{fields.get('holder')}, {fields.get('ttl-ms')} ms left on its lease); wait for "
                             "it to finish, or, if it died, for its lease to run out")
        self.token = int(token)
        self._thread = threading.Thread(target=self._renew, name="rebalance-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        period = self.lease_ms / 3000
        while not self._stop.wait(period):
            try:
                self._call(time.monotonic() + period, "RENEW", LOCK_NAME, str(self.token), str(self.lease_ms))
            except (redis.ResponseError, LeaseError) as e:
                self.lost = str(e)
                return

    def check(self) -> None:
        """Raise ``LeaseError`` once a renewal was refused."""
        if self.lost is not None:
            raise LeaseError(f"the rebalance lost its lock {LOCK_NAME} ({self.lost}); stopped before its next step")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.token is not None and self.lost is None:
            try:
                self._call(time.monotonic() + 10, "UNLOCK", LOCK_NAME, str(self.token))
            except (redis.ResponseError, LeaseError):
                pass  # the lease runs out by itself
        self.token = None
