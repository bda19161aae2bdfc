"""Loss checkers: did every acknowledged write survive to the final state?

Both judge a key by its final read (``op="final"``, process
``FINAL_PROCESS``, JSON value), taken on the leader after heal and
quiescence, and answer ``unknown`` for a key with acknowledged writes but no
final read. Both are `KeyChecker`s costing O(n log n) in the key's ops.
"""

from __future__ import annotations

import json

from replikv.check.history import KeyOps, Op
from replikv.check.registers import precedes
from replikv.check.result import Anomaly, CheckResult, FinalStateChecker, KeyChecker, ms

__all__ = ["Counter", "LostWrites", "final_value"]

_SENTINEL = object()


def final_value(group: KeyOps) -> object:
    """The decoded final state of the key, or `_SENTINEL` when it has no final read."""
    f = group.final
    if f is None or f.ok is not True:
        return _SENTINEL
    return json.loads(f.value) if f.value is not None else None


class LostWrites(FinalStateChecker):
    """Proves no acknowledged write was lost, from the final reads; or counts the losses.

    Rules, by the kind of the key's writes:

    - set (``add``) / append (``append``): every acknowledged element must be
      in the key's final value. Append also checks order: two acknowledged
      appends ``A.ret < B.call`` must appear in that order, and no element
      may appear twice or be one nobody appended.
    - register (``write`` / ``cas``): an acknowledged write ``w`` is lost when
      the final value is nothing, or the value of a write that precedes ``w``
      (registers.precedes: the register went back to before ``w``). A lost
      register write later overwritten is invisible here; the set workload is
      the sharp test of loss.

    ``unknown`` when a key with acknowledged writes has no final read.
    Algorithm: a set of the final elements (O(n)), and for append order a
    sweep over the appends sorted by return and by call (O(n log n)).
    """

    name = "lost writes"
    _KINDS = ("add", "append", "write", "cas")

    def __init__(self) -> None:
        super().__init__()
        self.acked = 0
        self.lost = 0

    def _lost(self, anomaly: Anomaly) -> None:
        self.lost += 1
        self.res.add(anomaly)

    def key(self, group: KeyOps) -> None:
        key = group.key
        ops = [(i, op) for i, op in zip(group.indices, group.ops)
               if op.ok is True and op.op in self._KINDS]
        if not ops:
            return
        self.acked += len(ops)
        fv = final_value(group)
        if fv is _SENTINEL:
            self.missing_final.append(key)
            return
        kind = ops[0][1].op
        if kind in ("add", "append"):
            present = list(fv) if isinstance(fv, list) else []
            have = set(present)
            for i, op in ops:
                if op.value not in have:
                    self._lost(Anomaly(
                        "lost write", key,
                        f"{kind} of {op.value!r} to {key!r} by process {op.process} was acknowledged at "
                        f"{ms(op.ret or 0):.1f} ms but is missing from the final value after heal",
                        [i], op.ret or op.call, op.process))
            if kind == "append":
                appended = {op.value for op in group.ops if op.op == "append"}
                self._append_order(key, ops, present, appended)
            return
        src = next((op for op in group.ops if op.op in ("write", "cas") and op.ok is not False
                    and op.value == fv), None) if isinstance(fv, str) else None
        for i, op in ops:
            if fv is None or (src is not None and precedes(src, op)):
                self._lost(Anomaly(
                    "lost write", key,
                    f"write of {op.value!r} to {key!r} by process {op.process} was acknowledged at "
                    f"{ms(op.ret or 0):.1f} ms, yet the final value is {fv!r}, which is older",
                    [i], op.ret or op.call, op.process))

    def _append_order(self, key: str, ops: list[tuple[int, Op]], present: list[object],
                      appended: set[str | None]) -> None:
        pos: dict[object, int] = {}
        for n, v in enumerate(present):
            if v in pos:
                self.res.add(Anomaly("duplicate", key, f"{v!r} appears twice in the final value of {key!r}"))
            elif v not in appended:
                self.res.add(Anomaly("phantom", key,
                                     f"{v!r} is in the final value of {key!r} but nobody appended it"))
            pos.setdefault(v, n)
        # A.ret < B.call => pos[A] < pos[B]: compare each op with the earlier-returned op placed last.
        by_ret = sorted((op.ret or 0, i, op) for i, op in ops if op.value in pos)
        by_call = sorted((op.call, i, op) for i, op in ops if op.value in pos)
        best: tuple[int, Op] | None = None  # among ops returned before the current call: max position
        k = 0
        for call, i, op in by_call:
            while k < len(by_ret) and by_ret[k][0] < call:
                _, j, a = by_ret[k]
                if best is None or pos[a.value] > pos[best[1].value]:
                    best = (j, a)
                k += 1
            if best is not None and pos[best[1].value] > pos[op.value]:
                a = best[1]
                self.res.add(Anomaly(
                    "reordered append", key,
                    f"append of {a.value!r} was acknowledged before the append of {op.value!r} began, "
                    f"yet the final list of {key!r} has it later", [best[0], i], call, op.process))

    def stats(self) -> dict[str, int]:
        return {"acknowledged": self.acked, **({"lost": self.lost} if self.res.count else {})}

    def _failed(self) -> str:
        return f"{self.res.count} anomalies: {self.lost} of {self.acked} acknowledged writes lost"

    def _passed(self) -> str:
        return f"all {self.acked} acknowledged writes present after heal"


class Counter(KeyChecker):
    """Proves every acknowledged increment is counted exactly once, or refutes it.

    Rule: with ``a`` acknowledged and ``u`` unknown-outcome increments of a
    key, its final value ``f`` must satisfy ``a <= f <= a + u`` (increments of
    1). Below is lost increments; above is increments applied that nobody
    made (or applied twice). O(n) per key.
    """

    name = "counter"

    def __init__(self) -> None:
        self.res = CheckResult(self.name, "pass", "")
        self.acked = 0
        self.missing_final: list[str] = []

    def key(self, group: KeyOps) -> None:
        a = sum(1 for op in group.ops if op.op == "incr" and op.ok is True)
        u = sum(1 for op in group.ops if op.op == "incr" and op.ok is None)
        if a + u == 0:
            return
        self.acked += a
        fv = final_value(group)
        if fv is _SENTINEL:
            self.missing_final.append(group.key)
            return
        f = int(fv or 0)  # type: ignore[call-overload]
        key = group.key
        if f < a:
            self.res.add(Anomaly("lost write", key, f"counter {key!r} ends at {f} but {a} increments "
                                 f"were acknowledged: {a - f} lost", magnitude=a - f))
        elif f > a + u:
            self.res.add(Anomaly("phantom", key, f"counter {key!r} ends at {f}, more than the {a} "
                                 f"acknowledged plus {u} unknown increments"))

    def result(self) -> CheckResult:
        res = self.res
        res.stats["acknowledged"] = self.acked
        if res.count:
            res.status = "fail"
            res.summary = f"{res.count} key(s) wrong"
        elif self.missing_final:
            res.status = "unknown"
            res.summary = f"no final read of {sorted(self.missing_final)[0]!r}"
        else:
            res.summary = f"{self.acked} acknowledged increments all counted"
        return res
