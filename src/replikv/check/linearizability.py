"""Linearizability checker for register histories (read / write / cas per key).

The model: one register per key, initially absent (None). `write v` sets it;
`read` returns it (the op's `value`); `cas expected -> value` sets it iff it
equals `expected`.

Rules, in the order the checker applies them:

1. P-compositionality (Herlihy & Wing 1990; Horn & Kroening 2015): a history
   of independent registers is linearizable iff each key's sub-history is, so
   each key is checked on its own.
2. Outcomes (see history.py): ok=true ops took effect between call and
   return. ok=false ops did not take effect and are dropped (a failed cas
   changed nothing; a failed read tells nothing). An ok=null write or cas may
   have taken effect at any time after its call, or never: its return is at
   +infinity and the search need not linearize it. An ok=null read says
   nothing and is dropped.
2b. Unknown-outcome writes and cas, settled up front (both sound, and both
   cut the 2^u blow-up of u optional ops that the search would otherwise
   explore when the history is not linearizable):
   - one whose value no kept op could observe (no read returns it, no cas
     expects it) is dropped: in any linearization the stretch where the
     register holds its value contains no op, so removing it leaves a
     linearization;
   - one that is the only writer of a value (not None) that a completed read
     or cas observes must take effect before that observer returns, so it
     becomes a completed op whose return is the earliest such observer's
     (never before its own call).
3. Search: Wing & Gong (1993) depth-first search for a linearization, made
   "just in time" by Lowe (2017, "Testing for linearizability", CCPE): the
   history becomes a time-ordered list of call and return entries; the search
   walks it from the front, may linearize (lift out of the list) any op whose
   call it reaches if the model allows it, and must backtrack when it reaches
   the return of an op it has not linearized. Configurations (set of
   linearized ops, register state) already explored are memoized, so each is
   expanded once; this is the algorithm of Porcupine (Athalye, 2017).
   Invariant: the lifted ops are exactly the configuration's set, each lifted
   op's call and return entries are out of the list, and `state` is the
   register after applying the lifted ops in stack order.
   Success: every op with a known return is linearized (unknown-outcome ops
   may remain, i.e. never took effect). Failure: a return is reached with an
   empty stack.
3b. Partial-order reduction for reads: when the walk reaches the call of a
   read that is legal in the current state, no return entry precedes it in
   the list (the walk would have stopped there), so every unlinearized op
   returns after the read's call, and in any linearization from here the read can
   move to the front (it changes nothing). The search therefore takes it
   greedily and never tries an alternative to it: backtracking pops through
   a read's frame, and a legal read whose successor configuration is cached
   (hence failed: a configuration with more ops linearized cannot be on the
   current path) fails the current configuration.
4. Diagnosis: the furthest return entry at which the search ever had to
   backtrack bounds the smallest failing prefix (of the history as rules 2
   and 2b rewrite it): the ops called before it are not linearizable, while
   every shorter prefix (up to the previous return) is, since the search got
   past it. The pruning of 3 and 3b never hides a configuration that would
   get further than one already explored.

Representation: states are small ints (values interned, 0 = absent); the
list is two int arrays (dancing links). The set of linearized ops is kept
canonical and small, because the memo holds one per configuration: ops that
must be linearized are numbered in call order, and the set is (base, above)
where every op numbered below `base` is linearized, op `base` is not, and
bit i of `above` says whether op base+i is; unknown-outcome ops, which may
stay unlinearized for ever, have their own bitset. All ops called long
before the search's position are linearized, so `above` spans only the ops
that overlap it (a bitset over the whole key would cost O(n) per step and
O(n) memory per memo entry).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from replikv.check.history import KeyOps, Op
from replikv.check.result import Anomaly, CheckResult, KeyChecker

__all__ = ["KeyResult", "LinearizabilityChecker", "Verdict", "check_key", "check_register_history"]

_READ, _WRITE, _CAS = 0, 1, 2
_KINDS = {"read": _READ, "write": _WRITE, "cas": _CAS}
_CHECK_EVERY = 4096  # search steps between two looks at the clock
_MAX_REPORTED = 8  # stuck states / pending ops named in an explanation


@dataclass
class Verdict:
    """The outcome of a check. `linearizable` is None when undecided (timeout)."""

    linearizable: bool | None
    bad_key: str | None
    explanation: str
    per_key: dict[str, bool | None]
    elapsed_s: float
    ops_involved: list[int] = field(default_factory=list)  # history indices


@dataclass
class KeyResult:
    """The outcome for one key's sub-history (indices are into the full history)."""

    key: str
    linearizable: bool | None
    explanation: str = ""
    ops_involved: list[int] = field(default_factory=list)
    failing_prefix: list[int] = field(default_factory=list)
    steps: int = 0
    time: int = 0  # call time of the earliest op involved (where a report places the failure)


def _describe(op: Op, idx: int) -> str:
    if op.op == "read":
        what = f"read of {op.key!r} returned {op.value!r}"
    elif op.op == "write":
        what = f"write of {op.value!r} to {op.key!r}"
    else:
        what = f"cas of {op.key!r} from {op.expected!r} to {op.value!r}"
    outcome = "" if op.ok else " (outcome unknown)"
    ret = "never" if op.ret is None else str(op.ret)
    return f"op #{idx} (process {op.process}: {what}{outcome}, call {op.call}, return {ret})"


def check_key(
    ops: Sequence[Op], indices: Sequence[int], deadline: float | None = None
) -> KeyResult:
    """Check one key's sub-history; `indices[i]` is `ops[i]`'s index in the full history.

    `ops` must all be on the same key and be read/write/cas; ok=false ops and
    unknown-outcome reads are dropped here (rule 2).
    """
    key = ops[0].key if ops else ""
    # --- rule 2: keep the ops that constrain the register ---
    kept: list[int] = []
    for i, op in enumerate(ops):
        if op.op not in _KINDS:
            raise ValueError(f"op #{indices[i]}: {op.op!r} is not a register operation")
        if op.ok is True and op.ret is None:
            raise ValueError(f"op #{indices[i]}: completed (ok=true) but has no return time")
        if op.ok is False or (op.ok is None and op.op == "read"):
            continue
        kept.append(i)
    kept, due = _settle_unknown(ops, kept)
    n = len(kept)
    if n == 0:
        return KeyResult(key, True, f"key {key!r}: no operation constrains the register")

    # --- intern values: state 0 is "absent" ---
    interned: dict[str | None, int] = {None: 0}
    names: list[str | None] = [None]

    def intern(v: str | None) -> int:
        s = interned.get(v)
        if s is None:
            s = interned[v] = len(names)
            names.append(v)
        return s

    kind = [0] * n
    arg_a = [0] * n  # read: value seen; write: value; cas: expected
    arg_b = [0] * n  # cas: new value
    known = [0] * n  # 1 iff the op has a return entry (must be linearized)
    events: list[tuple[int, int, int]] = []  # (time, 0=call/1=return, op)
    for j, i in enumerate(kept):
        op = ops[i]
        k = kind[j] = _KINDS[op.op]
        if k == _CAS:
            arg_a[j] = intern(op.expected)
            arg_b[j] = intern(op.value)
        else:
            arg_a[j] = intern(op.value)
        events.append((op.call, 0, j))
        ret = op.ret if op.ok is True else due.get(i)
        if ret is not None:
            known[j] = 1
            events.append((ret, 1, j))
    # Calls sort before returns at equal times: such ops overlap.
    events.sort()

    # --- the entry list: entries 0..E-1 in time order, HEAD = E ---
    e_count = len(events)
    head = e_count
    nxt = list(range(1, e_count + 1)) + [0]
    nxt[e_count - 1] = -1
    nxt[head] = 0
    prv = [-1] + list(range(0, e_count - 1)) + [-1]
    prv[0] = head
    is_call = [ev[1] == 0 for ev in events]
    op_of = [ev[2] for ev in events]
    match = [-1] * e_count  # call entry -> its return entry, -1 if unknown outcome
    ret_entry = [-1] * n
    for e, (_, is_ret, j) in enumerate(events):
        if is_ret:
            ret_entry[j] = e
    # rank: known ops numbered in call order, optional (unknown-outcome) ops apart
    rank = [0] * n
    counters = [0, 0]  # optional, known
    for e in range(e_count):
        if is_call[e]:
            j = op_of[e]
            match[e] = ret_entry[j]
            rank[j] = counters[known[j]]
            counters[known[j]] += 1

    # --- rule 3: just-in-time depth-first search with memoization ---
    cache: set[tuple[int, int, int, int]] = set()  # (base, above, optional, state)
    stack: list[tuple[int, int, int, int, int]] = []  # (call entry lifted, configuration before it)
    base = above = optional = 0
    state = 0
    remaining = sum(known)
    steps = 0
    budget = _CHECK_EVERY
    furthest = -1  # furthest return entry where the search had to backtrack
    stuck_states: set[int] = set()
    entry = nxt[head]
    result: bool | None = None
    while True:
        if remaining == 0:
            result = True
            break
        budget -= 1
        if budget == 0:
            budget = _CHECK_EVERY
            steps += _CHECK_EVERY
            if deadline is not None and time.monotonic() > deadline:
                result = None
                break
        if is_call[entry]:
            j = op_of[entry]
            k = kind[j]
            if k == _WRITE:
                new_state = arg_a[j]
            elif state == arg_a[j]:
                new_state = state if k == _READ else arg_b[j]
            else:
                entry = nxt[entry]
                continue
            if known[j]:
                d = rank[j] - base
                if d:
                    config = (base, above | (1 << d), optional, new_state)
                else:  # the lowest unlinearized op: the base moves past the run of ones
                    a = above | 1
                    t = ((~a) & (a + 1)).bit_length() - 1
                    config = (base + t, a >> t, optional, new_state)
            else:
                config = (base, above, optional | (1 << rank[j]), new_state)
            if config not in cache:
                cache.add(config)
                stack.append((entry, base, above, optional, state))
                # lift the call entry and its return entry out of the list
                p, q = prv[entry], nxt[entry]
                nxt[p] = q
                if q >= 0:
                    prv[q] = p
                r = match[entry]
                if r >= 0:
                    p, q = prv[r], nxt[r]
                    nxt[p] = q
                    if q >= 0:
                        prv[q] = p
                base, above, optional, state = config
                remaining -= known[j]
                entry = nxt[head]
                continue
            if k != _READ:
                entry = nxt[entry]
                continue
            # rule 3b: a legal read whose configuration already failed: so does this one
        else:
            if entry > furthest:
                furthest = entry
                stuck_states = {state}
            elif entry == furthest and len(stuck_states) < _MAX_REPORTED:
                stuck_states.add(state)
        # backtrack; a read frame offers no alternative (rule 3b), so pop through it
        while stack:
            entry, base, above, optional, state = stack.pop()
            j = op_of[entry]
            remaining += known[j]
            # unlift in reverse order of lifting (return entry first)
            r = match[entry]
            if r >= 0:
                p, q = prv[r], nxt[r]
                nxt[p] = r
                if q >= 0:
                    prv[q] = r
            p, q = prv[entry], nxt[entry]
            nxt[p] = entry
            if q >= 0:
                prv[q] = entry
            if kind[j] != _READ:
                break
        else:
            result = False
            break
        entry = nxt[entry]
    steps += _CHECK_EVERY - budget

    if result is True:
        return KeyResult(key, True, f"key {key!r}: linearizable ({n} ops)", steps=steps)
    if result is None:
        return KeyResult(
            key, None, f"key {key!r}: undecided after {steps} search steps (timeout)", steps=steps
        )

    # --- rule 4: explain the failure at the furthest stuck return ---
    stuck_op = op_of[furthest]
    stuck_time = events[furthest][0]
    prefix = sorted(indices[kept[j]] for (t, is_ret, j) in events[:furthest] if not is_ret)
    culprit = ops[kept[stuck_op]]
    # ops whose interval overlaps the culprit's: unknown-outcome ops never end
    pending = [
        j
        for (t, is_ret, j) in events[:furthest]
        if not is_ret
        and j != stuck_op
        and (not known[j] or events[ret_entry[j]][0] >= culprit.call)
    ]
    writers = {arg_a[j] if kind[j] == _WRITE else arg_b[j]: j for j in range(n) if kind[j] != _READ}
    held = []
    for s in sorted(stuck_states):
        w = writers.get(s)
        src = (
            "initial value"
            if s == 0
            else (
                f"written by {_describe(ops[kept[w]], indices[kept[w]])}" if w is not None else "?"
            )
        )
        held.append(f"{names[s]!r} ({src})")
    lines = [
        f"key {key!r}: not linearizable.",
        f"{_describe(culprit, indices[kept[stuck_op]])} could not be linearized: whenever the "
        f"search reached its return, every order of the earlier operations left the register "
        f"holding one of: {', '.join(held)}.",
        f"Smallest failing prefix: the {len(prefix)} operations on {key!r} called before "
        f"time {stuck_time} (history indices {_span(prefix)}); every shorter prefix is "
        "linearizable.",
    ]
    if pending:
        shown = pending[:_MAX_REPORTED]
        lines.append(
            "Operations concurrent with it: "
            + "; ".join(_describe(ops[kept[j]], indices[kept[j]]) for j in shown)
            + (f"; and {len(pending) - len(shown)} more" if len(pending) > len(shown) else "")
            + "."
        )
    involved = [indices[kept[stuck_op]]] + [indices[kept[j]] for j in pending]
    involved += [indices[kept[writers[s]]] for s in stuck_states if s in writers]
    by_index = dict(zip(indices, ops))
    return KeyResult(
        key,
        False,
        "\n".join(lines),
        ops_involved=sorted(set(involved)),
        failing_prefix=prefix,
        steps=steps,
        time=min(by_index[i].call for i in involved),
    )


def _settle_unknown(ops: Sequence[Op], kept: list[int]) -> tuple[list[int], dict[int, int]]:
    """Rule 2b: drop unobservable unknown-outcome ops; give a return time (in
    the returned dict, by index into `ops`) to those some completed op needs."""
    writers: dict[str | None, int] = defaultdict(int)
    observable: set[str | None] = set()
    needed_by: dict[str | None, int] = {}  # value -> earliest return of a completed observer
    for i in kept:
        op = ops[i]
        seen = op.value if op.op == "read" else op.expected if op.op == "cas" else None
        if op.op != "write":
            observable.add(seen)
            if op.ok is True and op.ret is not None:
                t = needed_by.get(seen)
                needed_by[seen] = op.ret if t is None else min(t, op.ret)
        if op.op != "read":
            writers[op.value] += 1
    settled: list[int] = []
    due: dict[int, int] = {}
    for i in kept:
        op = ops[i]
        if op.ok is None:
            v = op.value
            if v not in observable:
                continue
            if v is not None and writers[v] == 1 and v in needed_by:
                due[i] = max(op.call, needed_by[v])
        settled.append(i)
    return settled, due


def _span(indices: list[int]) -> str:
    if len(indices) <= 12:
        return ", ".join(map(str, indices))
    return ", ".join(map(str, indices[:4])) + ", ..., " + ", ".join(map(str, indices[-4:]))


class LinearizabilityChecker(KeyChecker):
    """Rules 1-4 as a `KeyChecker`: each key's register ops (read / write / cas;
    other ops of the key, such as final reads, are not register operations
    and are left out) are checked when the key is fed in, under one time
    budget for the whole history that starts at the first key.

    Cost: the search is exponential in the worst case (linearizability
    checking is NP-complete, Gibbons & Korach 1997); with the memoization and
    the read reduction it is close to linear in the ops of a key for the
    histories a correct store produces (BENCHMARKS.md, check_scale.py). The
    budget bounds the worst case: a key not decided when it runs out is
    ``None`` (undecided) and the result names it and the reason.
    """

    name = "linearizable"

    def __init__(self, timeout_s: float | None = 60.0, ops_filter: bool = True) -> None:
        self.timeout_s = timeout_s
        self._filter = ops_filter
        self._start: float | None = None
        self._deadline: float | None = None
        self._results: list[KeyResult] = []
        self._ops = 0

    def key(self, group: KeyOps) -> None:
        if self._start is None:
            self._start = time.monotonic()
            self._deadline = None if self.timeout_s is None else self._start + self.timeout_s
        if self._filter:
            pairs = [(i, op) for i, op in zip(group.indices, group.ops) if op.op in _KINDS]
            idxs, ops = [i for i, _ in pairs], [op for _, op in pairs]
        else:
            idxs, ops = group.indices, group.ops
        if not ops:
            return
        self._ops += len(ops)
        if self._deadline is not None and time.monotonic() > self._deadline:
            self._results.append(KeyResult(group.key, None, f"key {group.key!r}: not checked: the "
                                           f"{self.timeout_s} s budget ran out before its turn"))
            return
        self._results.append(check_key(ops, idxs, self._deadline))

    def verdict(self) -> Verdict:
        results = self._results
        per_key = {r.key: r.linearizable for r in results}
        elapsed = 0.0 if self._start is None else time.monotonic() - self._start
        bad = next((r for r in results if r.linearizable is False), None)
        if bad is not None:
            others = [r.key for r in results if r.linearizable is False and r is not bad]
            more = f"\n(also not linearizable: {', '.join(map(repr, others))})" if others else ""
            return Verdict(False, bad.key, bad.explanation + more, per_key, elapsed, bad.ops_involved)
        undecided = [r for r in results if r.linearizable is None]
        if undecided:
            names = ", ".join(repr(r.key) for r in undecided[:_MAX_REPORTED])
            return Verdict(None, None,
                           f"undecided: {len(undecided)} of {len(results)} keys not decided within the "
                           f"{self.timeout_s} s budget ({names}); the search stopped there instead of "
                           f"running on. {undecided[0].explanation}", per_key, elapsed)
        return Verdict(True, None, f"linearizable: all {len(results)} keys ({self._ops} ops)",
                       per_key, elapsed)

    def result(self) -> CheckResult:
        v = self.verdict()
        res = CheckResult(self.name, "pass", v.explanation.splitlines()[0] if v.explanation else "")
        res.stats["elapsed_s"] = v.elapsed_s
        res.stats["keys"] = len(v.per_key)
        if v.linearizable is None:
            res.status = "unknown"
        elif v.linearizable is False:
            res.status = "fail"
            for r in self._results:
                if r.linearizable is False:
                    res.add(Anomaly("non-linearizable", r.key, r.explanation, r.ops_involved, r.time))
            res.summary = f"{res.count} key(s) not linearizable, first {v.bad_key!r}"
        return res


def check_register_history(ops: list[Op], timeout_s: float | None = 60.0) -> Verdict:
    """Decide whether a register history is linearizable (rules 1-4 above).

    Every op counts, whatever its process. `timeout_s` bounds the whole
    check; keys not decided in time are None in `per_key`, and the verdict is
    None unless some key is already known not to be linearizable. Keys are
    checked in order of first appearance; the first non-linearizable one is
    `bad_key`.
    """
    groups: dict[str, KeyOps] = {}
    for i, op in enumerate(ops):
        g = groups.get(op.key)
        if g is None:
            g = groups[op.key] = KeyOps(op.key)
        g.indices.append(i)
        g.ops.append(op)
    checker = LinearizabilityChecker(timeout_s, ops_filter=False)
    for g in groups.values():
        checker.key(g)
    return checker.verdict()
