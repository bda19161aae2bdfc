"""Checkers: each one reads a history (see history.py) and proves or refutes one property.

Conventions shared by every checker:

- Only client operations count (``process >= 0``). Nemesis intervals are
  recorded as ``op="nemesis"`` with a negative process; final reads taken by
  the harness after heal and quiescence are ``op="final"`` with
  ``process == FINAL_PROCESS`` and the JSON-encoded state as their value.
- Values written by clients are unique per key (every write, add or append
  carries a value no other op carries), so a value read names the one write
  that produced it. This is what lets the register checkers order a read
  against writes without a search.
- Write ``A`` *precedes* write ``B`` when ``A.ret < B.call`` (real-time order):
  every linearization, and every replica that applies writes in a
  leader's order, must place ``A`` before ``B``.
- Outcomes: ``ok=True`` happened, ``ok=False`` did not, ``ok=None`` may or may
  not have happened; an acknowledged op is one with ``ok=True``.

Each checker returns a `CheckResult`: ``status`` is ``"pass"`` (the property
held in this history), ``"fail"`` (refuted; every `Anomaly` is a witness that
names the ops involved and explains in words why they break the property) or
``"unknown"`` (the checker could not decide, e.g. a timeout). What each
checker proves is in its docstring.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from replikv.check.history import Op
from replikv.check.linearizability import check_register_history

__all__ = [
    "FINAL_PROCESS",
    "NEMESIS_PROCESS",
    "Anomaly",
    "CheckResult",
    "check_convergence",
    "check_counter",
    "check_linearizable",
    "check_lost_writes",
    "check_monotonic_reads",
    "check_read_your_writes",
    "check_stale_reads",
    "final_state",
]

NEMESIS_PROCESS = -1
FINAL_PROCESS = -2
_MAX_ANOMALIES = 200  # witnesses kept per checker (counts stay exact)


@dataclass
class Anomaly:
    """One witness against a property: what kind, the ops (history indices), in words."""

    kind: str
    key: str
    explanation: str
    ops: list[int] = field(default_factory=list)
    time: int = 0  # ns, where the report places it on the timeline
    process: int | None = None
    magnitude: float = 0.0  # e.g. staleness in ms


@dataclass
class CheckResult:
    """A checker's verdict on one history; ``count`` counts anomalies (``anomalies`` is capped)."""

    name: str
    status: str  # "pass" | "fail" | "unknown"
    summary: str
    anomalies: list[Anomaly] = field(default_factory=list)
    count: int = 0
    stats: dict[str, float] = field(default_factory=dict)

    def add(self, anomaly: Anomaly) -> None:
        self.count += 1
        if len(self.anomalies) < _MAX_ANOMALIES:
            self.anomalies.append(anomaly)


def _client_ops(history: Sequence[Op]) -> Iterable[tuple[int, Op]]:
    return ((i, op) for i, op in enumerate(history) if op.process >= 0)


def _ms(ns: int) -> float:
    return ns / 1e6


# ---------------------------------------------------------------------------
# Linearizability (register workload)


def check_linearizable(history: Sequence[Op], timeout_s: float = 60.0) -> CheckResult:
    """Proves the register history (read / write / cas) is linearizable, or names the
    smallest failing prefix of a key whose sub-history is not (Wing & Gong / Lowe
    search, in linearizability.py). ``unknown`` when a key is not decided in time.
    """
    idx = [i for i, op in _client_ops(history) if op.op in ("read", "write", "cas")]
    ops = [history[i] for i in idx]
    verdict = check_register_history(ops, timeout_s)
    res = CheckResult("linearizable", "pass", verdict.explanation.splitlines()[0] if verdict.explanation else "")
    res.stats["elapsed_s"] = verdict.elapsed_s
    res.stats["keys"] = len(verdict.per_key)
    if verdict.linearizable is None:
        res.status = "unknown"
    elif verdict.linearizable is False:
        res.status = "fail"
        involved = [idx[i] for i in verdict.ops_involved]
        first = min((history[i].call for i in involved), default=0)
        res.add(Anomaly("non-linearizable", verdict.bad_key or "", verdict.explanation, involved, first))
        bad_keys = [k for k, v in verdict.per_key.items() if v is False]
        res.count = len(bad_keys)
        res.summary = f"{len(bad_keys)} key(s) not linearizable, first {verdict.bad_key!r}"
    return res


# ---------------------------------------------------------------------------
# Register helpers: the write that produced each value


@dataclass(frozen=True, slots=True)
class _Write:
    index: int
    op: Op


def _writes_by_value(history: Sequence[Op]) -> dict[tuple[str, str], _Write]:
    """(key, value) -> the write or cas that could have produced it (ok or unknown)."""
    out: dict[tuple[str, str], _Write] = {}
    for i, op in _client_ops(history):
        if op.op in ("write", "cas") and op.ok is not False and op.value is not None:
            out[(op.key, op.value)] = _Write(i, op)
    return out


def _precedes(a: Op, b: Op) -> bool:
    return a.ret is not None and a.ret < b.call


# ---------------------------------------------------------------------------
# Stale reads


def check_stale_reads(history: Sequence[Op]) -> CheckResult:
    """Counts stale reads and their maximum staleness; ``fail`` when there is any.

    A read ``r`` of key ``k`` is stale when it returned the value of write ``A``
    (or nothing) although some acknowledged write ``B`` of ``k`` with
    ``A.ret < B.call`` had completed before ``r`` was invoked (``B.ret <
    r.call``): a newer value was already acknowledged and ``r`` missed it. Its
    staleness is ``r.call - B.ret`` for the earliest such ``B`` (how long the
    newer value had been acknowledged). A linearizable read is never stale;
    leader-follower reads on followers may be, and this says by how much.
    """
    res = CheckResult("stale reads", "pass", "")
    writes = _writes_by_value(history)
    acked: dict[str, list[tuple[int, Op]]] = defaultdict(list)
    for i, op in _client_ops(history):
        if op.op in ("write", "cas") and op.ok is True:
            acked[op.key].append((i, op))
    reads = [(i, op) for i, op in _client_ops(history) if op.op == "read" and op.ok is True]
    max_ms = 0.0
    for i, r in reads:
        if r.value is None:
            source: Op | None = None
        else:
            w = writes.get((r.key, r.value))
            if w is None:
                continue  # a value nobody wrote: the linearizability checker reports it
            source = w.op
        newer = [(j, b) for j, b in acked[r.key]
                 if b.ret is not None and b.ret < r.call and (source is None or _precedes(source, b))]
        if not newer:
            continue
        j, b = min(newer, key=lambda jb: jb[1].ret or 0)
        staleness = _ms(r.call - (b.ret or 0))
        max_ms = max(max_ms, staleness)
        res.add(Anomaly(
            "stale read", r.key,
            f"process {r.process} read {r.key!r} = {r.value!r} at {_ms(r.call):.1f} ms, but the write of "
            f"{b.value!r} (op #{j}, acknowledged at {_ms(b.ret or 0):.1f} ms) had already replaced that "
            f"value: the read was {staleness:.1f} ms stale",
            [i, j], r.call, r.process, staleness))
    res.stats["max_staleness_ms"] = max_ms
    res.stats["reads"] = len(reads)
    res.status = "fail" if res.count else "pass"
    res.summary = (f"{res.count} of {len(reads)} reads stale, max staleness {max_ms:.1f} ms"
                   if res.count else f"no stale read among {len(reads)} reads")
    return res


# ---------------------------------------------------------------------------
# Session guarantees


def check_read_your_writes(history: Sequence[Op]) -> CheckResult:
    """Proves read-your-writes per process (one client session), or refutes it.

    Violation: process ``p`` had write ``w`` of key ``k`` acknowledged, and a
    later read by ``p`` (``w.ret < r.call``) returned nothing, or the value of
    a write ``A`` that precedes ``w`` in real time (``A.ret < w.call``), so ``w``
    was not visible to the client that made it. A process id is one
    connection's session: a client whose connection failed continues as a new
    process, as in Jepsen.
    """
    res = CheckResult("read-your-writes", "pass", "")
    writes = _writes_by_value(history)
    last_write: dict[tuple[int, str], tuple[int, Op]] = {}
    for i, op in sorted(_client_ops(history), key=lambda io: io[1].call):
        if op.op in ("write", "cas") and op.ok is True:
            prev = last_write.get((op.process, op.key))
            if prev is None or (prev[1].ret or 0) < (op.ret or 0):
                last_write[(op.process, op.key)] = (i, op)
        elif op.op == "read" and op.ok is True:
            mine = last_write.get((op.process, op.key))
            if mine is None or not _precedes(mine[1], op):
                continue
            j, w = mine
            src = writes.get((op.key, op.value)) if op.value is not None else None
            if op.value is None or (src is not None and _precedes(src.op, w)):
                res.add(Anomaly(
                    "read-your-writes", op.key,
                    f"process {op.process} wrote {w.value!r} to {op.key!r} (op #{j}, acknowledged at "
                    f"{_ms(w.ret or 0):.1f} ms) and then read {op.value!r} at {_ms(op.call):.1f} ms, "
                    "a value older than its own write",
                    [j, i] + ([src.index] if src else []), op.call, op.process))
    res.status = "fail" if res.count else "pass"
    res.summary = f"{res.count} violation(s)" if res.count else "every client saw its own writes"
    return res


def check_monotonic_reads(history: Sequence[Op]) -> CheckResult:
    """Proves monotonic reads per process, or refutes it.

    Violation: process ``p`` read value ``b`` (from write ``B``) of key ``k``,
    and a later read by ``p`` returned nothing, or the value of a write ``A``
    that precedes ``B`` in real time (``A.ret < B.call``): the session went
    back in time.
    """
    res = CheckResult("monotonic reads", "pass", "")
    writes = _writes_by_value(history)
    seen: dict[tuple[int, str], tuple[int, Op, Op]] = {}  # newest read so far and its write
    for i, r in sorted(_client_ops(history), key=lambda io: io[1].call):
        if r.op != "read" or r.ok is not True:
            continue
        src = writes.get((r.key, r.value)) if r.value is not None else None
        if r.value is not None and src is None:
            continue
        prev = seen.get((r.process, r.key))
        if prev is not None:
            j, prev_read, b = prev
            if src is None or _precedes(src.op, b):
                res.add(Anomaly(
                    "monotonic reads", r.key,
                    f"process {r.process} read {r.key!r} = {prev_read.value!r} (op #{j}) and later "
                    f"= {r.value!r} (op #{i}, at {_ms(r.call):.1f} ms), an older value",
                    [j, i], r.call, r.process))
                continue
            if _precedes(b, src.op):
                seen[(r.process, r.key)] = (i, r, src.op)
        elif src is not None:
            seen[(r.process, r.key)] = (i, r, src.op)
    res.status = "fail" if res.count else "pass"
    res.summary = f"{res.count} violation(s)" if res.count else "no client saw time go backwards"
    return res


# ---------------------------------------------------------------------------
# Lost acknowledged writes


def final_state(history: Sequence[Op]) -> dict[str, object]:
    """key -> decoded value of the final read (taken after heal and quiescence)."""
    out: dict[str, object] = {}
    for op in history:
        if op.process == FINAL_PROCESS and op.op == "final" and op.ok is True:
            out[op.key] = json.loads(op.value) if op.value is not None else None
    return out


def check_lost_writes(history: Sequence[Op]) -> CheckResult:
    """Proves no acknowledged write was lost, from the final reads; or counts the losses.

    - set (``add``) / append (``append``): every acknowledged element must be in
      the key's final value. Append also checks order: two acknowledged
      appends ``A.ret < B.call`` must appear in that order, and no element may
      appear twice or be one nobody appended.
    - register (``write`` / ``cas``): an acknowledged write ``w`` is lost when the
      final value is nothing, or the value of a write that precedes ``w`` in
      real time (the register went back to before ``w``). A lost register
      write later overwritten is invisible here; the set workload is the
      sharp test of loss.
    - counter: see `check_counter`.
    ``unknown`` when there is no final read of a key that has acknowledged writes.
    """
    res = CheckResult("lost writes", "pass", "")
    final = final_state(history)
    writes = _writes_by_value(history)
    acked = 0
    missing_final: set[str] = set()
    by_key: dict[str, list[tuple[int, Op]]] = defaultdict(list)
    for i, op in _client_ops(history):
        if op.ok is True and op.op in ("add", "append", "write", "cas"):
            by_key[op.key].append((i, op))
            acked += 1
    for key, ops in by_key.items():
        if key not in final:
            missing_final.add(key)
            continue
        fv = final[key]
        kind = ops[0][1].op
        if kind in ("add", "append"):
            present = list(fv) if isinstance(fv, list) else []
            have = set(present)
            for i, op in ops:
                if op.value not in have:
                    res.add(Anomaly("lost write", key,
                                    f"{kind} of {op.value!r} to {key!r} by process {op.process} was "
                                    f"acknowledged at {_ms(op.ret or 0):.1f} ms but is missing from the "
                                    "final value after heal", [i], op.ret or op.call, op.process))
            if kind == "append":
                _check_append_order(res, key, ops, present, history)
        else:
            src = writes.get((key, fv)) if isinstance(fv, str) else None
            for i, op in ops:
                if fv is None or (src is not None and _precedes(src.op, op)):
                    res.add(Anomaly("lost write", key,
                                    f"write of {op.value!r} to {key!r} by process {op.process} was "
                                    f"acknowledged at {_ms(op.ret or 0):.1f} ms, yet the final value is "
                                    f"{fv!r}, which is older", [i], op.ret or op.call, op.process))
    res.stats["acknowledged"] = acked
    if res.count:
        res.status = "fail"
        lost = res.stats["lost"] = res.count - sum(1 for a in res.anomalies if a.kind != "lost write")
        res.summary = f"{res.count} anomalies: {lost} of {acked} acknowledged writes lost"
    elif missing_final:
        res.status = "unknown"
        res.summary = f"no final read of {len(missing_final)} key(s), e.g. {sorted(missing_final)[0]!r}"
    else:
        res.summary = f"all {acked} acknowledged writes present after heal"
    return res


def _check_append_order(res: CheckResult, key: str, ops: list[tuple[int, Op]], present: list[object],
                        history: Sequence[Op]) -> None:
    pos: dict[object, int] = {}
    appended = {op.value for op in history if op.op == "append" and op.key == key and op.process >= 0}
    for n, v in enumerate(present):
        if v in pos:
            res.add(Anomaly("duplicate", key, f"{v!r} appears twice in the final value of {key!r}"))
        elif v not in appended:
            res.add(Anomaly("phantom", key, f"{v!r} is in the final value of {key!r} but nobody appended it"))
        pos.setdefault(v, n)
    ordered = sorted((op.ret or 0, op.call, i, op) for i, op in ops if op.value in pos)
    # A.ret < B.call => pos[A] < pos[B]; compare each op with the latest-returning earlier one.
    by_call = sorted(((op.call, i, op) for i, op in ops if op.value in pos))
    best: tuple[int, int, Op] | None = None  # among ops returned before the current call: max position
    k = 0
    for call, i, op in by_call:
        while k < len(ordered) and ordered[k][0] < call:
            _, _, j, a = ordered[k]
            if best is None or pos[a.value] > pos[best[2].value]:
                best = (a.ret or 0, j, a)
            k += 1
        if best is not None and pos[best[2].value] > pos[op.value]:
            a = best[2]
            res.add(Anomaly("reordered append", key,
                            f"append of {a.value!r} was acknowledged before the append of {op.value!r} "
                            f"began, yet the final list of {key!r} has it later", [best[1], i], call, op.process))


def check_counter(history: Sequence[Op]) -> CheckResult:
    """Proves every acknowledged increment is counted exactly once, or refutes it.

    With ``a`` acknowledged and ``u`` unknown-outcome increments of a key, its
    final value ``f`` must satisfy ``a <= f <= a + u`` (increments of 1). Below
    is lost increments; above is increments applied that nobody made (or
    applied twice).
    """
    res = CheckResult("counter", "pass", "")
    final = final_state(history)
    acked: dict[str, int] = defaultdict(int)
    unknown: dict[str, int] = defaultdict(int)
    for _, op in _client_ops(history):
        if op.op == "incr":
            if op.ok is True:
                acked[op.key] += 1
            elif op.ok is None:
                unknown[op.key] += 1
    for key in sorted(set(acked) | set(unknown)):
        if key not in final:
            res.status = "unknown"
            res.summary = f"no final read of {key!r}"
            return res
        f = int(final[key] or 0)  # type: ignore[call-overload]
        a, u = acked[key], unknown[key]
        if f < a:
            res.add(Anomaly("lost write", key, f"counter {key!r} ends at {f} but {a} increments were "
                            f"acknowledged: {a - f} lost", magnitude=a - f))
        elif f > a + u:
            res.add(Anomaly("phantom", key, f"counter {key!r} ends at {f}, more than the {a} acknowledged "
                            f"plus {u} unknown increments"))
    res.stats["acknowledged"] = sum(acked.values())
    res.status = "fail" if res.count else "pass"
    res.summary = (f"{res.count} key(s) wrong" if res.count else
                   f"{sum(acked.values())} acknowledged increments all counted")
    return res


# ---------------------------------------------------------------------------
# Convergence


def check_convergence(digests: dict[str, str | None]) -> CheckResult:
    """Proves every replica holds the same state after heal and quiescence (``REPLIKV
    DIGEST`` equal on every node), or names the ones that differ; a node that did
    not answer makes the result ``unknown``."""
    res = CheckResult("convergence", "pass", "")
    down = [n for n, d in digests.items() if d is None]
    groups: dict[str, list[str]] = defaultdict(list)
    for n, d in digests.items():
        if d is not None:
            groups[d].append(n)
    if len(groups) > 1:
        parts = "; ".join(f"{', '.join(ns)}: {d[:12]}" for d, ns in groups.items())
        res.add(Anomaly("divergence", "", f"replicas differ after heal: {parts}"))
        res.status, res.summary = "fail", f"{len(groups)} different states: {parts}"
    elif down:
        res.status, res.summary = "unknown", f"no digest from {', '.join(down)}"
    else:
        res.summary = f"all {len(digests)} replicas equal"
    return res
