"""The queue workload's checkers: a stream used as a job queue (XADD, consumer groups).

The workload (check/workloads.py ``Queue``) has producers ``enqueue`` (XADD
of a unique value) and consumers ``dequeue`` in one group: XREADGROUP of one
new message (or XAUTOCLAIM of one a crashed consumer left pending), then
XACK, except that one time in ten the consumer "crashes" after reading and
never acknowledges. A dequeue's value is ``{"v": value, "acked": bool}``
(``acked`` null when the XACK's outcome is unknown: a timeout after the
message was read), or null when there was nothing. The final read (``op="final"``) has the
stream's entries and what draining the group delivered at the end (new
messages, and pending ones claimed with no idle time).

Three claims, each its own checker (O(n) in the key's ops):

- ``lost writes``: every acknowledged XADD is in the stream at the end;
- ``at-least-once``: every acknowledged XADD was delivered to the group at
  least once (during the run or by the final drain);
- ``acked once``: a message whose XACK was acknowledged is never delivered
  again by a read that began after that acknowledgement.

Deliveries of a message more than once before its ack (a crashed consumer's
message claimed by another) are what at-least-once allows: counted in
``stats["redelivered"]``, not an anomaly.
"""

from __future__ import annotations

import json
from typing import Any

from replikv.check.history import KeyOps, Op
from replikv.check.result import Anomaly, CheckResult, FinalStateChecker, ms

__all__ = ["AckedOnce", "AtLeastOnce", "QueueLoss", "deliveries", "final_state"]


def final_state(group: KeyOps) -> dict[str, Any] | None:
    f = group.final
    if f is None or f.ok is not True or f.value is None:
        return None
    state = json.loads(f.value)
    return state if isinstance(state, dict) else None


def deliveries(group: KeyOps) -> list[tuple[int, Op, str, bool]]:
    """Every delivery seen: (history index, op, value, acked), the final drain's last
    (they carry the final op and acked=False)."""
    out = []
    for i, op in zip(group.indices, group.ops):
        if op.op == "dequeue" and op.ok is True and op.value:
            d = json.loads(op.value)
            if d:
                out.append((i, op, str(d["v"]), d["acked"] is True))
    state = final_state(group)
    if state is not None and group.final is not None:
        out += [(-1, group.final, str(v), False) for v in state.get("drained", [])]
    return out


def _acked_enqueues(group: KeyOps) -> list[tuple[int, Op]]:
    return [(i, op) for i, op in zip(group.indices, group.ops) if op.op == "enqueue" and op.ok is True]


class _QueueChecker(FinalStateChecker):
    what = "queue(s)"

    def __init__(self) -> None:
        super().__init__()
        self.acked = 0

    def stats(self) -> dict[str, int]:
        return {"acknowledged": self.acked}


class QueueLoss(_QueueChecker):
    """Every acknowledged XADD is in the stream after heal."""

    name = "lost writes"

    def key(self, group: KeyOps) -> None:
        acked = _acked_enqueues(group)
        if not acked:
            return
        self.acked += len(acked)
        state = final_state(group)
        if state is None:
            self.missing_final.append(group.key)
            return
        present = set(state.get("entries", []))
        for i, op in acked:
            if op.value not in present:
                self.res.add(Anomaly("lost write", group.key,
                                     f"XADD of {op.value!r} to {group.key!r} was acknowledged at "
                                     f"{ms(op.ret or 0):.1f} ms but the stream does not hold it after heal",
                                     [i], op.ret or op.call, op.process))

    def _failed(self) -> str:
        return f"{self.res.count} of {self.acked} acknowledged XADDs lost"

    def _passed(self) -> str:
        return f"all {self.acked} acknowledged XADDs are in the stream after heal"


class AtLeastOnce(_QueueChecker):
    """Every acknowledged XADD reached a consumer of the group at least once."""

    name = "at-least-once"

    def __init__(self) -> None:
        super().__init__()
        self.redelivered = 0

    def key(self, group: KeyOps) -> None:
        acked = _acked_enqueues(group)
        self.acked += len(acked)
        if not acked:
            return
        if final_state(group) is None:
            self.missing_final.append(group.key)
            return
        count: dict[str, int] = {}
        for _, _, value, _ in deliveries(group):
            count[value] = count.get(value, 0) + 1
        self.redelivered += sum(n - 1 for n in count.values() if n > 1)
        for i, op in acked:
            if op.value not in count:
                self.res.add(Anomaly("never delivered", group.key,
                                     f"XADD of {op.value!r} was acknowledged at {ms(op.ret or 0):.1f} ms but no "
                                     "consumer of the group ever received it, not even the final drain",
                                     [i], op.ret or op.call, op.process))

    def result(self) -> CheckResult:
        res = super().result()
        res.stats["redelivered"] = self.redelivered
        return res

    def _failed(self) -> str:
        return f"{self.res.count} of {self.acked} acknowledged messages never delivered"

    def _passed(self) -> str:
        return (f"all {self.acked} acknowledged messages delivered; {self.redelivered} delivered more than "
                "once (a consumer crashed before XACK: allowed)")


class AckedOnce(_QueueChecker):
    """No delivery of a message begins after its XACK was acknowledged."""

    name = "acked once"

    def key(self, group: KeyOps) -> None:
        seen = deliveries(group)
        acked_at: dict[str, tuple[int, Op]] = {}
        for i, op, value, acked in seen:
            if acked and op.ret is not None:
                prev = acked_at.get(value)
                if prev is None or op.ret < (prev[1].ret or 0):
                    acked_at[value] = (i, op)
        self.acked += len(acked_at)
        for i, op, value, _ in seen:
            first = acked_at.get(value)
            if first is not None and first[1] is not op and op.call > (first[1].ret or 0):
                self.res.add(Anomaly("delivered after ack", group.key,
                                     f"{value!r} was acknowledged (XACK) by process {first[1].process} at "
                                     f"{ms(first[1].ret or 0):.1f} ms, yet delivered again to a read that "
                                     f"began at {ms(op.call):.1f} ms", [first[0]] + ([i] if i >= 0 else []),
                                     op.call, op.process))

    def _failed(self) -> str:
        return f"{self.res.count} deliveries after an acknowledged XACK"

    def _passed(self) -> str:
        return f"none of the {self.acked} acknowledged messages was delivered again"
