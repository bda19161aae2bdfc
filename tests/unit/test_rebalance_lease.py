"""The rebalance's lease on the cluster's lock service (rebalance_lease.py), against scripted
clients: refused while another holds the lock, renewed while held, lost when a renewal is
refused, released at the end."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from replikv.rebalance_lease import LOCK_NAME, LeaseError, RebalanceLease


class _Node:
    """A client whose answers are scripted per command; records every call."""

    def __init__(self, answers: dict[str, Any], calls: list[tuple[str, ...]]) -> None:
        self.answers, self.calls = answers, calls

    def execute_command(self, *argv: str) -> Any:
        self.calls.append(argv)
        answer = self.answers[argv[0]]
        if isinstance(answer, Exception):
            raise answer
        return answer() if callable(answer) else answer

    def close(self) -> None:
        pass


def _lease(answers: dict[str, Any], lease_ms: int = 60) -> tuple[RebalanceLease, list[tuple[str, ...]]]:
    calls: list[tuple[str, ...]] = []
    return RebalanceLease(lambda: [_Node(answers, calls)], lease_ms=lease_ms), calls  # type: ignore[list-item]


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_a_held_lock_refuses_the_second_rebalance_naming_the_holder() -> None:
    lease, calls = _lease({"LOCK": None, "LOCKINFO": ["holder", 41, "ttl-ms", 12000, "lease-ms", 30000]})
    with pytest.raises(LeaseError, match="another rebalance is running.*token 41, 12000 ms left"):
        lease.acquire()
    lease.release()
    assert [c[0] for c in calls] == ["LOCK", "LOCKINFO"]  # no UNLOCK of a lock it never held


def test_the_lease_is_renewed_while_held_and_released_at_the_end() -> None:
    lease, calls = _lease({"LOCK": 7, "RENEW": "OK", "UNLOCK": 1})
    lease.acquire()
    _wait(lambda: sum(c[0] == "RENEW" for c in calls) >= 3, "three renewals")
    lease.check()
    lease.release()
    assert ("RENEW", LOCK_NAME, "7", "60") in calls
    assert calls[-1] == ("UNLOCK", LOCK_NAME, "7")


def test_a_refused_renewal_stops_the_rebalance_before_its_next_step() -> None:
    refused = threading.Event()

    def renew() -> Any:
        refused.set()
        raise redis.ResponseError("NOTHOLDER token 7 does not hold lock 'replikv:rebalance'")

    lease, calls = _lease({"LOCK": 7, "RENEW": renew, "UNLOCK": 1})
    lease.acquire()
    _wait(lambda: lease.lost is not None, "the renewal to be refused")
    with pytest.raises(LeaseError, match="lost its lock.*NOTHOLDER"):
        lease.check()
    lease.release()
    assert not any(c[0] == "UNLOCK" for c in calls)  # it no longer holds it


def test_tryagain_is_retried_until_a_node_answers() -> None:
    answers: list[Any] = [redis.ResponseError("TRYAGAIN no leader"), 9]

    def lock() -> Any:
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    lease, _calls = _lease({"LOCK": lock, "RENEW": "OK", "UNLOCK": 1}, lease_ms=60_000)
    lease.acquire()
    assert lease.token == 9
    lease.release()
