"""The queue workload's checkers (check/queue.py) on hand-made histories."""

from __future__ import annotations

import json

from replikv.check.checkers import key_checkers
from replikv.check.history import FINAL_PROCESS, Op, by_key
from replikv.check.result import CheckResult, run_key_checkers

MS = 1_000_000


def enq(p: int, value: str, t: int, ok: bool | None = True) -> Op:
    return Op(p, "enqueue", "q0", value, None, ok, t * MS, (t + 1) * MS if ok is not None else None)


def deq(p: int, value: str | None, acked: bool, t: int) -> Op:
    body = None if value is None else {"v": value, "acked": acked}
    return Op(p, "dequeue", "q0", json.dumps(body), "new ack", True, t * MS, (t + 1) * MS)


def final(entries: list[str], drained: list[str], t: int = 100) -> Op:
    return Op(FINAL_PROCESS, "final", "q0", json.dumps({"entries": entries, "drained": drained}), None, True,
              t * MS, (t + 1) * MS)


def check(history: list[Op]) -> dict[str, CheckResult]:
    return {r.name: r for r in run_key_checkers(by_key(history), key_checkers("queue"))}


def test_a_clean_run_passes_with_a_crashed_consumer_redelivered() -> None:
    history = [enq(0, "a", 1), enq(0, "b", 3), deq(1, "a", False, 5),  # consumer 1 crashed before XACK
               deq(2, "a", True, 20), deq(2, "b", True, 22), enq(0, "c", 30),
               final(["a", "b", "c"], ["c"])]
    r = check(history)
    assert {name: res.status for name, res in r.items()} == {
        "lost writes": "pass", "at-least-once": "pass", "acked once": "pass"}
    assert r["at-least-once"].stats["redelivered"] == 1


def test_a_lost_xadd_an_undelivered_message_and_a_redelivery_after_ack() -> None:
    history = [enq(0, "a", 1), enq(0, "b", 3), enq(0, "unknown", 4, ok=None),
               deq(1, "a", True, 5),
               deq(2, "a", False, 10),  # began after a's XACK was acknowledged (at 6 ms)
               final(["a"], [])]
    r = check(history)
    assert r["lost writes"].status == "fail" and r["lost writes"].count == 1  # b
    assert "b" in r["lost writes"].anomalies[0].explanation
    assert r["at-least-once"].status == "fail" and r["at-least-once"].count == 1  # b, never delivered
    assert r["acked once"].status == "fail" and r["acked once"].anomalies[0].kind == "delivered after ack"


def test_a_delivery_concurrent_with_the_ack_is_not_a_redelivery() -> None:
    history = [enq(0, "a", 1), deq(1, "a", True, 5), Op(2, "dequeue", "q0", json.dumps({"v": "a", "acked": False}),
                                                      None, True, 5 * MS + 1, 7 * MS), final(["a"], [])]
    assert check(history)["acked once"].status == "pass"


def test_no_final_read_is_unknown() -> None:
    r = check([enq(0, "a", 1)])
    assert r["lost writes"].status == "unknown" and r["at-least-once"].status == "unknown"
