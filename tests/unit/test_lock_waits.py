"""runtime/locks.py's LOCK ... WAIT service, driven by a scripted node (no processes, no clock waits).

The node answers each attempt when the test says so, so the races the service must handle (a
release that overtakes an attempt, a deadline with an attempt in flight, an attempt answered at
once) are played out exactly."""

from __future__ import annotations

from typing import Any

from replikv.check.harness import wait_for
from replikv.kv.state_machine import StateMachine
from replikv.runtime.locks import LockService
from replikv.runtime.resp_server import Slot


class FakeLoop:
    def __init__(self) -> None:
        self.timers: list[tuple[float, Any, tuple[Any, ...]]] = []

    def call_later(self, delay: float, fn: Any, *args: Any) -> "FakeTimer":
        timer = FakeTimer(fn, args)
        self.timers.append(timer)  # type: ignore[arg-type]
        return timer


class FakeTimer:
    def __init__(self, fn: Any, args: tuple[Any, ...]) -> None:
        self.fn, self.args, self.cancelled = fn, args, False

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        if not self.cancelled:
            self.fn(*self.args)


class FakeClient:
    """What a LockWaiter copies from the client's connection, and where its reply lands."""

    resp3 = False
    user = None
    cluster_aware = readonly = False
    read_level, read_bound_ms = "linearizable", 0
    write_level, write_k = "majority", 0
    session_index = 0
    closing = False

    def __init__(self) -> None:
        self.replies: list[bytes] = []

    def slot(self) -> Slot:
        return Slot(self)  # type: ignore[arg-type]

    def slot_ready(self) -> None:
        pass


class FakeNode:
    def __init__(self) -> None:
        self.loop = FakeLoop()
        self.sm = StateMachine()
        self.attempts: list[Any] = []  # waiters whose attempt awaits an answer
        self.answer_at_once: bytes | None = None
        self.dirty_clients: set[Any] = set()
        self.proposed: list[Any] = []

    def _write_one(self, conn: Any, argv: list[bytes]) -> None:
        assert argv[0] == b"LOCK" and len(argv) == 3
        if self.answer_at_once is not None:
            conn.reply_bytes(self.answer_at_once)
        else:
            self.attempts.append(conn)

    def _flush_clients(self) -> None:
        pass

    def lock_groups(self) -> list[Any]:
        return [(0, self.sm, 1, True)]

    def propose_internal(self, g: int, cmds: Any, rid: Any) -> None:
        self.proposed.append(cmds)


def start(node: FakeNode, service: LockService, name: bytes = b"l") -> tuple[FakeClient, Slot]:
    client = FakeClient()
    service.start(client, [b"LOCK", name, b"1000", b"WAIT", b"5000"], 5000)  # type: ignore[arg-type]
    waiter = node.attempts[-1]
    return client, waiter.client_slot


def free(node: FakeNode, service: LockService, name: bytes = b"l") -> None:
    """The lock is granted and released in the node's state machine; the service's tick sees it."""
    token = node.sm.locks.grant(name, 1000, 10)
    assert token is not None and node.sm.locks.release(name, token)
    service.next_tick = 0.0
    service.tick()


def test_a_nil_attempt_parks_and_a_release_attempts_the_first_waiter_again() -> None:
    node = FakeNode()
    service = LockService(node)
    _, first = start(node, service)
    _, second = start(node, service)
    for w in list(node.attempts):
        node.attempts.remove(w)
        w.reply_bytes(b"$-1\r\n")  # held: both park
    assert service.waiting_clients == 2 and not node.attempts
    free(node, service)
    assert len(node.attempts) == 1  # only the first parked is attempted again
    node.attempts.pop().reply_bytes(b":42\r\n")
    assert first.data == b":42\r\n" and second.data is None
    assert service.waiting_clients == 1


def test_a_release_that_overtakes_an_attempt_in_flight_makes_it_try_again() -> None:
    node = FakeNode()
    service = LockService(node)
    _, slot = start(node, service)
    free(node, service)  # released while the first attempt is on its way
    assert not node.attempts[1:]  # no second attempt while one is in flight
    node.attempts.pop().reply_bytes(b"$-1\r\n")  # that attempt was decided before the release
    assert len(node.attempts) == 1  # so it tries again at once
    node.attempts.pop().reply_bytes(b":7\r\n")
    assert slot.data == b":7\r\n"


def test_the_deadline_answers_nil_but_never_drops_a_token_in_flight() -> None:
    node = FakeNode()
    service = LockService(node)
    _, parked = start(node, service)
    node.attempts.pop().reply_bytes(b"$-1\r\n")
    node.loop.timers[-1].fire()
    assert parked.data == b"$-1\r\n" and service.waiting_clients == 0
    _, racing = start(node, service)
    node.loop.timers[-1].fire()  # the deadline passes with the attempt in flight
    assert racing.data is None
    node.attempts.pop().reply_bytes(b":9\r\n")  # granted after all: the client gets the token
    assert racing.data == b":9\r\n"


def test_an_attempt_answered_at_once_leaves_the_queue_safely() -> None:
    node = FakeNode()
    service = LockService(node)
    start(node, service)
    start(node, service)
    for w in list(node.attempts):
        node.attempts.remove(w)
        w.reply_bytes(b"$-1\r\n")
    node.answer_at_once = b"-TRYAGAIN no reachable leader\r\n"  # e.g. no leader right now
    free(node, service)
    assert service.waiting_clients == 1  # the first got the error; the second still waits


def test_the_leader_proposes_expiry_of_a_lease_whose_countdown_ran_out() -> None:
    node = FakeNode()
    service = LockService(node)
    token = node.sm.locks.grant(b"l", 5, 3)

    def ticked() -> list[Any]:
        service.next_tick = 0.0
        service.tick()
        return node.proposed

    assert ticked() == []  # the countdown starts at this tick: 5 ms from now
    wait_for(ticked, 5.0, "the lease to run out on the node's clock")
    assert node.proposed == [[[b"LOCKEXPIRE", b"l", b"%d" % token, b"3"]]]  # type: ignore[str-bytes-safe]
