"""Recency and session checkers for the register workload: stale reads,
read-your-writes, monotonic reads.

Rules they share:

- Values written are unique per key, so a value read names the one write or
  cas that produced it (its *source*; ``None`` is the initial, absent value).
- Write ``A`` *precedes* op ``B`` when ``A`` was acknowledged (``ok=True``) and
  ``A.ret < B.call``: every linearization, and every replica that applies
  writes in a leader's order, must place ``A`` before ``B``. An op with an
  unknown outcome (``ok=None``) precedes nothing, even when it carries a
  return time: it may take effect at any time after its call.
- Only acknowledged reads (``ok=True``) are judged.

Each checker is a `KeyChecker` (one key's ops at a time) and costs
O(n log n) in the key's ops: a sort, then a sweep with dictionaries or a
binary search; none compares a read with every write.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable

from replikv.check.history import KeyOps, Op
from replikv.check.result import Anomaly, CheckResult, KeyChecker, ms

__all__ = ["MonotonicReads", "ReadYourWrites", "StaleReads", "precedes"]

_WRITES = ("write", "cas")


def precedes(a: Op, b: Op) -> bool:
    """``a`` was acknowledged before ``b`` was invoked (real-time order)."""
    return a.ok is True and a.ret is not None and a.ret < b.call


def _sources(group: KeyOps) -> dict[str, tuple[int, Op]]:
    """value -> (history index, op) of the write or cas that could have produced it."""
    out: dict[str, tuple[int, Op]] | None = group.memo.get("sources")
    if out is None:
        out = group.memo["sources"] = {
            op.value: (i, op) for i, op in zip(group.indices, group.ops)
            if op.op in _WRITES and op.ok is not False and op.value is not None}
    return out


def _by_call(group: KeyOps) -> list[tuple[int, Op]]:
    """The key's ops in invocation order (history order among equal calls)."""
    out: list[tuple[int, Op]] | None = group.memo.get("by_call")
    if out is None:
        out = group.memo["by_call"] = sorted(zip(group.indices, group.ops), key=lambda io: io[1].call)
    return out


class StaleReads(KeyChecker):
    """Counts stale reads and their maximum staleness; ``fail`` when there is any.

    Rule: a read ``r`` of key ``k`` is stale when it returned the value of
    write ``A`` (or nothing) although some acknowledged write ``B`` of ``k``
    that ``A`` precedes (``A.ret < B.call``; any ``B`` when ``r`` returned
    nothing) had been acknowledged before ``r`` was invoked (``B.ret <
    r.call``): a newer value was already acknowledged and ``r`` missed it.
    Its staleness is ``r.call - B.ret`` for the earliest-acknowledged such
    ``B``. A linearizable read is never stale; leader-follower reads on
    followers may be, and this says by how much.

    Algorithm, O(n log n) per key: sort the acknowledged writes by return
    time and keep the running maximum of their call times. The earliest ``B``
    with ``B.call > A.ret`` is the first position where that running maximum
    exceeds ``A.ret`` (a binary search); ``r`` is stale iff that ``B``
    returned before ``r.call``.
    """

    name = "stale reads"

    def __init__(self) -> None:
        self.res = CheckResult(self.name, "pass", "")
        self.reads = 0
        self.max_ms = 0.0

    def key(self, group: KeyOps) -> None:
        sources = _sources(group)
        acked = sorted((op.ret, i, op) for i, op in zip(group.indices, group.ops)
                       if op.op in _WRITES and op.ok is True and op.ret is not None)
        rets = [t[0] for t in acked]
        max_call: list[int] = []
        m = -1
        for _, _, op in acked:
            m = max(m, op.call)
            max_call.append(m)
        for i, r in zip(group.indices, group.ops):
            if r.op != "read" or r.ok is not True:
                continue
            self.reads += 1
            if r.value is None:
                pos = 0
            else:
                src = sources.get(r.value)
                if src is None or src[1].ok is not True or src[1].ret is None:
                    continue  # unknown value (linearizability reports it) or unknown outcome
                pos = bisect_right(max_call, src[1].ret)
            if pos == len(rets) or rets[pos] >= r.call:
                continue
            _, j, b = acked[pos]
            staleness = ms(r.call - rets[pos])
            self.max_ms = max(self.max_ms, staleness)
            self.res.add(Anomaly(
                "stale read", r.key,
                f"process {r.process} read {r.key!r} = {r.value!r} at {ms(r.call):.1f} ms, but the "
                f"write of {b.value!r} (op #{j}, acknowledged at {ms(rets[pos]):.1f} ms) had already "
                f"replaced that value: the read was {staleness:.1f} ms stale",
                [i, j], r.call, r.process, staleness))

    def result(self) -> CheckResult:
        res = self.res
        res.stats["max_staleness_ms"] = self.max_ms
        res.stats["reads"] = self.reads
        res.status = "fail" if res.count else "pass"
        res.summary = (f"{res.count} of {self.reads} reads stale, max staleness {self.max_ms:.1f} ms"
                       if res.count else f"no stale read among {self.reads} reads")
        return res


class ReadYourWrites(KeyChecker):
    """Proves read-your-writes per process (one client session), or refutes it.

    Rule: process ``p`` had write ``w`` of key ``k`` acknowledged, and a later
    read by ``p`` (``w.ret < r.call``) returned nothing, or the value of a
    write ``A`` that precedes ``w`` (``A.ret < w.call``), so ``w`` was not
    visible to the client that made it. A process id is one connection's
    session: a client whose connection failed continues as a new process, as
    in Jepsen.

    In a mode where every node takes writes (``node_of`` given: the node a
    process talks to, clients.py: worker ``w`` of ``N`` on node ``w mod n``),
    the claim is judged on the process's own node: real time does not order
    two writes taken by different nodes that had not yet seen each other, so
    a write ``A`` of another node that precedes ``w`` in real time only but
    wins by last-writer-wins (its node's hybrid clock ahead) is a concurrent
    write overwriting ``w``, which "lww overwrites" counts, not a session
    violation. ``A`` is older than ``w`` for this rule when it was taken by
    the same node as ``w`` (a node's clock only moves forward over the writes
    it has applied), or ``p`` itself had read ``A``'s value before invoking
    ``w`` (``w``'s node had applied ``A``). A read of nothing after ``w`` is a
    violation in every mode. The reads left out are counted
    (``stats["other_node_lww"]``) and named in the summary.

    Algorithm, O(n log n) per key: one sweep in invocation order keeping each
    process's latest acknowledged write (and, with ``node_of``, the values
    it read before it).
    """

    name = "read-your-writes"

    def __init__(self, node_of: Callable[[int], int] | None = None) -> None:
        self.res = CheckResult(self.name, "pass", "")
        self.node_of = node_of
        self.other_node_lww = 0

    def _older(self, a: Op, w: Op, observed: set[str]) -> bool:
        """``a`` (a source write) is older than ``w``, ``p``'s own write, on ``p``'s node."""
        if not precedes(a, w):
            return False
        if self.node_of is None:
            return True
        return self.node_of(a.process) == self.node_of(w.process) or (a.value or "") in observed

    def key(self, group: KeyOps) -> None:
        sources = _sources(group)
        last_write: dict[int, tuple[int, Op, set[str]]] = {}
        read_by: dict[int, set[str]] = {}  # process -> values it read so far (node_of only)
        for i, op in _by_call(group):
            if op.op in _WRITES and op.ok is True:
                prev = last_write.get(op.process)
                if prev is None or (prev[1].ret or 0) < (op.ret or 0):
                    last_write[op.process] = (i, op, set(read_by.get(op.process, ())))
            elif op.op == "read" and op.ok is True:
                mine = last_write.get(op.process)
                if self.node_of is not None and op.value is not None:
                    read_by.setdefault(op.process, set()).add(op.value)
                if mine is None or not precedes(mine[1], op):
                    continue
                j, w, observed = mine
                src = sources.get(op.value) if op.value is not None else None
                if (src is not None and self.node_of is not None and precedes(src[1], w)
                        and not self._older(src[1], w, observed)):
                    self.other_node_lww += 1
                    continue
                if op.value is None or (src is not None and self._older(src[1], w, observed)):
                    self.res.add(Anomaly(
                        "read-your-writes", op.key,
                        f"process {op.process} wrote {w.value!r} to {op.key!r} (op #{j}, acknowledged "
                        f"at {ms(w.ret or 0):.1f} ms) and then read {op.value!r} at "
                        f"{ms(op.call):.1f} ms, a value older than its own write",
                        [j, i] + ([src[0]] if src else []), op.call, op.process))

    def result(self) -> CheckResult:
        res = self.res
        res.status = "fail" if res.count else "pass"
        res.summary = f"{res.count} violation(s)" if res.count else "every client saw its own writes"
        if self.node_of is not None:
            res.stats["other_node_lww"] = self.other_node_lww
            if self.other_node_lww:
                res.summary += (f" (judged on each client's node: {self.other_node_lww} read(s) returned "
                                "another node's write that preceded the client's own in real time only "
                                "and won by last-writer-wins: counted as lww overwrites)")
        return res


class MonotonicReads(KeyChecker):
    """Proves monotonic reads per process, or refutes it.

    Rule: process ``p`` read value ``b`` (from write ``B``) of key ``k``, and a
    later read by ``p`` returned nothing, or the value of a write ``A`` that
    precedes ``B`` (``A.ret < B.call``): the session went back in time.

    Algorithm, O(n log n) per key: one sweep in invocation order keeping, per
    process, the newest write it has read (a later read replaces it when its
    own write follows that one in real time).
    """

    name = "monotonic reads"

    def __init__(self) -> None:
        self.res = CheckResult(self.name, "pass", "")

    def key(self, group: KeyOps) -> None:
        sources = _sources(group)
        seen: dict[int, tuple[int, Op, Op]] = {}  # process -> newest read so far, its write
        for i, r in _by_call(group):
            if r.op != "read" or r.ok is not True:
                continue
            src = sources.get(r.value) if r.value is not None else None
            if r.value is not None and src is None:
                continue
            prev = seen.get(r.process)
            if prev is not None:
                j, prev_read, b = prev
                if src is None or precedes(src[1], b):
                    self.res.add(Anomaly(
                        "monotonic reads", r.key,
                        f"process {r.process} read {r.key!r} = {prev_read.value!r} (op #{j}) and "
                        f"later = {r.value!r} (op #{i}, at {ms(r.call):.1f} ms), an older value",
                        [j, i], r.call, r.process))
                    continue
                if precedes(b, src[1]):
                    seen[r.process] = (i, r, src[1])
            elif src is not None:
                seen[r.process] = (i, r, src[1])

    def result(self) -> CheckResult:
        res = self.res
        res.status = "fail" if res.count else "pass"
        res.summary = f"{res.count} violation(s)" if res.count else "no client saw time go backwards"
        return res
