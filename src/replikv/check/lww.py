"""What last-writer-wins overwrote: acknowledged register writes that silently
disappeared in favour of a concurrent write (issue 10, multi-leader mode).

A mode where every node accepts writes resolves two concurrent SETs of one
key by last-writer-wins: one of them vanishes although its client got OK.
This is an anomaly such a mode allows; the checker counts it and shows
examples (as Jepsen shows it), it is not a bug there.

Rule (register workload: ``write`` and ``cas``, values unique per key). An
acknowledged write ``w`` of key ``k`` counts as *overwritten by
last-writer-wins* when all of these hold:

1. some other write ``x`` of ``k`` (acknowledged, or of unknown outcome) is
   *concurrent* with ``w`` in real time: neither precedes the other
   (registers.precedes: ``a.ret < b.call`` for an acknowledged ``a``), i.e.
   their invoke..complete intervals overlap;
2. ``w`` was never observed afterwards: no acknowledged read that began after
   ``w`` completed (``r.call > w.ret``) returned ``w``'s value;
3. ``w``'s value is not the key's final value (the final read after heal);
4. ``x`` survived where ``w`` did not: a read that began after ``w``
   completed returned ``x``'s value, or ``x``'s value is the final value.
   ``x`` is the witness named in the example.

Condition 4 is what makes ``x`` the write that overwrote ``w`` (not a later,
sequential write that replaced both). A linearizable register can show the
same pattern (``w`` ordered just before the concurrent ``x``, and never read
before ``x`` replaced it: on a synthesized linearizable history of 100,000
ops by 12 clients over 10 keys, 5,279 of 35,624 acknowledged writes count),
so the count is an observation, to compare between modes and settings run
with the same workload, not a proof of last-writer-wins: the checker
``fail``s when it counts any, like "stale reads", and a mode claims it as
not required. A key with writes but no final read is judged on its reads
only (condition 3 then cannot be checked) and named in the summary.

Besides, ``overwritten_by_earlier`` counts acknowledged writes that lost to a
write that had COMPLETED BEFORE they began (the key's final value is that
earlier write's): impossible for a linearizable register, it is what
last-writer-wins by timestamp does when the later writer's clock (or hybrid
clock) is behind, or what a partition's "concurrent" writes look like when
real time ordered them.

Cost per key, O(n log n + c·m): a sort of the writes by call, the latest
read of each value, and for each of the ``m`` candidate writes (acknowledged,
unread, not final: few) a scan of the writes that may overlap it (``c``: the
concurrency of the workload).
"""

from __future__ import annotations

import json
from bisect import bisect_right

from replikv.check.history import KeyOps, Op
from replikv.check.registers import precedes
from replikv.check.result import Anomaly, CheckResult, KeyChecker, ms

__all__ = ["LwwOverwrites"]

_WRITES = ("write", "cas")
_NO_FINAL = object()


def _concurrent(a: Op, b: Op) -> bool:
    """Neither was acknowledged before the other was invoked."""
    return not precedes(a, b) and not precedes(b, a)


class LwwOverwrites(KeyChecker):
    """Counts acknowledged writes last-writer-wins overwrote with a concurrent write (rule above)."""

    name = "lww overwrites"

    def __init__(self) -> None:
        self.res = CheckResult(self.name, "pass", "")
        self.acked = 0
        self.concurrent = 0  # acknowledged writes with at least one concurrent write
        self.earlier = 0  # acknowledged writes the final value of a write that preceded them replaced
        self.no_final: list[str] = []

    def key(self, group: KeyOps) -> None:
        writes = sorted(((op.call, i, op) for i, op in zip(group.indices, group.ops)
                         if op.op in _WRITES and op.ok is not False and op.value is not None),
                        key=lambda t: (t[0], t[1]))
        if not writes:
            return
        final: object = _NO_FINAL
        f = group.final
        if f is not None and f.ok is True:
            final = json.loads(f.value) if f.value is not None else None
        elif any(op.ok is True for _, _, op in writes):
            self.no_final.append(group.key)
        last_read: dict[str, int] = {}  # value -> latest call of an acknowledged read that returned it
        for op in group.ops:
            if op.op == "read" and op.ok is True and op.value is not None:
                if op.call > last_read.get(op.value, -1):
                    last_read[op.value] = op.call
        calls = [t[0] for t in writes]
        final_write = next((op for _, _, op in writes if final is not _NO_FINAL and op.value == final), None)
        # how far back an overlapping write may have been invoked: the longest acknowledged write;
        # writes of unknown outcome never end, so they are checked separately
        longest = max((op.ret - op.call for _, _, op in writes if op.ok is True and op.ret is not None),
                      default=0)
        open_ended = [(i, op) for _, i, op in writes if op.ok is not True or op.ret is None]

        def survived(x: Op, after: int) -> bool:
            value = x.value or ""
            return last_read.get(value, -1) > after or (final is not _NO_FINAL and value == final)

        for _, i, w in writes:
            if w.ok is not True or w.ret is None:
                continue
            self.acked += 1
            if final_write is not None and final_write.ok is True and precedes(final_write, w):
                self.earlier += 1  # a real-time later write lost to an earlier one
            lo = bisect_right(calls, w.call - longest - 1)
            hi = bisect_right(calls, w.ret)
            window = writes[lo:hi]
            overlapping = [(j, x) for _, j, x in window if j != i and _concurrent(w, x)]
            if open_ended:
                seen = {j for _, j, _ in window}
                overlapping += [(j, x) for j, x in open_ended
                                if j not in seen and j != i and _concurrent(w, x)]
            if not overlapping:
                continue
            self.concurrent += 1
            if last_read.get(w.value or "", -1) > w.ret:
                continue  # observed after it completed
            if final is not _NO_FINAL and w.value == final:
                continue  # it won
            winner = next(((j, x) for j, x in overlapping if survived(x, w.ret)), None)
            if winner is None:
                continue  # nothing shows which write replaced it
            j, x = winner
            outcome = "acknowledged" if x.ok is True else "of unknown outcome"
            span = f"{ms(x.call):.1f}..{ms(x.ret):.1f} ms" if x.ret is not None else f"from {ms(x.call):.1f} ms"
            final_text = "" if final is _NO_FINAL else f", and the final value is {final!r}"
            self.res.add(Anomaly(
                "lww overwrite", w.key,
                f"write of {w.value!r} to {w.key!r} by process {w.process} (op #{i}, "
                f"{ms(w.call):.1f}..{ms(w.ret):.1f} ms, acknowledged) was overwritten by the concurrent "
                f"write of {x.value!r} by process {x.process} (op #{j}, {span}, {outcome}): no read that "
                f"began after it returned saw it{final_text}",
                [i, j], w.ret, w.process))

    def result(self) -> CheckResult:
        res = self.res
        res.stats["acknowledged_writes"] = self.acked
        res.stats["concurrent_writes"] = self.concurrent
        res.stats["overwritten"] = res.count
        res.stats["overwritten_by_earlier"] = self.earlier
        res.status = "fail" if res.count else "pass"
        res.summary = (f"{res.count} of {self.acked} acknowledged writes overwritten by a concurrent write "
                       f"(last-writer-wins; {self.concurrent} had a concurrent write)"
                       if res.count else
                       f"no acknowledged write overwritten by a concurrent one ({self.acked} acknowledged, "
                       f"{self.concurrent} with a concurrent write)")
        if self.earlier:
            res.summary += (f"; {self.earlier} lost to a write that had completed before they began "
                            "(the final value is the earlier write's)")
        if self.no_final:
            res.summary += (f"; {len(self.no_final)} key(s) without a final read judged on reads only: "
                            + ", ".join(self.no_final[:5]))
        return res
