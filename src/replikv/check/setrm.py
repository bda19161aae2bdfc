"""The set-rm workload's checkers: sets with removes, judged by the observed-remove rule.

The workload (check/workloads.py ``SetRemove``) has clients ``add`` unique
elements (SADD), ``remove`` elements (SREM) and ``read`` (SMEMBERS). A client
removes some of its *own* elements after their add was acknowledged on the
same connection (the same history process: clients.py starts a new process
after an unknown outcome), so that remove *observed* the add: the node that
took it had the add (read-your-writes on one node). Other clients remove
elements of others, concurrently: whether such a remove saw the add is not
knowable from the client side, so either outcome is allowed. A client may
also re-add an element it removed.

The rule is the OR-set's (Shapiro et al., "A comprehensive study of
Convergent and Commutative Replicated Data Types", 2011, §3.3.5 the
observed-remove set; Redis Active-Active's sets: "add wins"): a remove
removes the adds it observed and no other, so an add concurrent with a
remove survives. A set a single leader orders (raft, leader-follower) obeys
it too (a remove after an add removes it), so every mode is held to it.

Per element ``e`` of a key, with the adds and removes of ``e`` that may have
happened (``ok`` true or unknown; ``ok=False`` did not happen) and its
presence in the final read after heal, three checkers (O(n) in the key's ops):

- ``lost adds``: ``e`` is absent although an acknowledged add ``a`` of it has
  no remove that may have taken effect after ``a`` began (``r.ret`` unknown or
  later than ``a.call``): nothing could have removed ``a``;
- ``resurrections``: ``e`` is present although every add of it that may have
  happened was observed by an acknowledged remove: an acknowledged add ``a``
  and an acknowledged remove ``r`` of the same process with ``a.ret < r.call``
  (an add of unknown outcome, or one no observing remove followed, keeps
  ``e`` allowed);
- ``phantoms``: ``e`` is present but no add of it may have happened.

Each answers ``unknown`` for a key it has something to judge on and no final
read. Convergence of the replicas is the separate ``convergence`` checker.
"""

from __future__ import annotations

import json
from collections import defaultdict

from replikv.check.history import KeyOps, Op
from replikv.check.result import Anomaly, CheckResult, FinalStateChecker, ms

__all__ = ["LostAdds", "Phantoms", "Resurrections", "SetElement", "elements", "final_members"]


class SetElement:
    """One element's adds and removes (history index, op) that may have happened."""

    __slots__ = ("adds", "removes", "failed_adds")

    def __init__(self) -> None:
        self.adds: list[tuple[int, Op]] = []
        self.removes: list[tuple[int, Op]] = []
        self.failed_adds = 0  # adds that definitely did not happen (ok=False)


def elements(group: KeyOps) -> dict[str, SetElement]:
    """The key's elements, each with its adds and removes (``ok`` not False)."""
    out: dict[str, SetElement] = defaultdict(SetElement)
    for i, op in zip(group.indices, group.ops):
        if op.process < 0 or op.value is None or op.op not in ("add", "remove"):
            continue
        e = out[op.value]
        if op.ok is False:
            if op.op == "add":
                e.failed_adds += 1
        elif op.op == "add":
            e.adds.append((i, op))
        else:
            e.removes.append((i, op))
    return dict(out)


def final_members(group: KeyOps) -> set[str] | None:
    """The members of the key's final read, or None when it has none."""
    f = group.final
    if f is None or f.ok is not True or f.value is None:
        return None
    value = json.loads(f.value)
    return {str(v) for v in value} if isinstance(value, list) else set()


def observed_by(add: Op, removes: list[tuple[int, Op]]) -> tuple[int, Op] | None:
    """An acknowledged remove of ``add``'s own process that began after ``add`` was acknowledged."""
    if add.ok is not True or add.ret is None:
        return None
    return next(((i, r) for i, r in removes
                 if r.ok is True and r.process == add.process and r.call > add.ret), None)


def may_remove(add: Op, removes: list[tuple[int, Op]]) -> bool:
    """Some remove may have taken effect after ``add`` began."""
    return any(r.ret is None or r.ret > add.call for _, r in removes)


class _SetChecker(FinalStateChecker):
    def __init__(self) -> None:
        super().__init__()
        self.judged = 0

    def key(self, group: KeyOps) -> None:
        elems = elements(group)
        if not elems:
            return
        present = final_members(group)
        if present is None:
            if any(self._relevant(e) for e in elems.values()):
                self.missing_final.append(group.key)
            return
        for value, e in elems.items():
            self._element(group.key, value, e, value in present)
        self._extra(group.key, present, elems)

    def _relevant(self, e: SetElement) -> bool:
        return True

    def _element(self, key: str, value: str, e: SetElement, present: bool) -> None:
        pass

    def _extra(self, key: str, present: set[str], elems: dict[str, SetElement]) -> None:
        pass

    def stats(self) -> dict[str, int]:
        return {"judged": self.judged}


class LostAdds(_SetChecker):
    """An acknowledged add that no remove could have removed is in the final set."""

    name = "lost adds"

    def __init__(self) -> None:
        super().__init__()
        self.unremovable = 0  # acknowledged elements no remove could have followed: must be present

    def _relevant(self, e: SetElement) -> bool:
        return any(a.ok is True for _, a in e.adds)

    def _element(self, key: str, value: str, e: SetElement, present: bool) -> None:
        acked = [(i, a) for i, a in e.adds if a.ok is True]
        if not acked:
            return
        self.judged += 1
        unremovable = [(i, a) for i, a in acked if not may_remove(a, e.removes)]
        self.unremovable += bool(unremovable)
        if unremovable and not present:
            i, a = unremovable[-1]
            tried = (f"; the {len(e.removes)} remove(s) of it all ended before it began" if e.removes
                     else "; nobody tried to remove it")
            self.res.add(Anomaly(
                "lost add", key,
                f"add of {value!r} to {key!r} by process {a.process} was acknowledged at "
                f"{ms(a.ret or 0):.1f} ms but {value!r} is missing from the final set after heal{tried}",
                [i], a.ret or a.call, a.process))

    def result(self) -> CheckResult:
        res = super().result()
        res.stats["unremovable"] = self.unremovable
        return res

    def _failed(self) -> str:
        return (f"{self.res.count} of the {self.unremovable} acknowledged elements no remove could have "
                "followed are missing")

    def _passed(self) -> str:
        return (f"all {self.unremovable} acknowledged elements no remove could have followed are present "
                f"({self.judged} acknowledged in all)")


class Resurrections(_SetChecker):
    """An element whose every add was observed by an acknowledged remove is absent."""

    name = "resurrections"

    def _relevant(self, e: SetElement) -> bool:
        return any(r.ok is True for _, r in e.removes)

    def _element(self, key: str, value: str, e: SetElement, present: bool) -> None:
        if not e.adds:
            return
        observed: list[tuple[Op, int, Op]] = []
        for _, a in e.adds:
            by = observed_by(a, e.removes)
            if by is None:
                return  # this add may still be there
            observed.append((a, *by))
        self.judged += 1
        if not present:
            return
        a, ri, r = max(observed, key=lambda obs: obs[2].ret or 0)
        self.res.add(Anomaly(
            "resurrection", key,
            f"{value!r} is in the final set of {key!r}, yet process {r.process}'s remove of it was "
            f"acknowledged at {ms(r.ret or 0):.1f} ms after its own add (acknowledged at "
            f"{ms(a.ret or 0):.1f} ms, same connection) and no add of it could have come after",
            [ri], r.ret or r.call, r.process))

    def _failed(self) -> str:
        return f"{self.res.count} of {self.judged} removed elements came back"

    def _passed(self) -> str:
        return f"all {self.judged} elements removed after their own add stay removed"


class Phantoms(_SetChecker):
    """Nothing is in the final set that no add may have put there."""

    name = "phantoms"

    def key(self, group: KeyOps) -> None:
        elems = elements(group)
        present = final_members(group)
        if present is None:
            if elems:
                self.missing_final.append(group.key)
            return
        self.judged += len(present)
        self._extra(group.key, present, elems)

    def _extra(self, key: str, present: set[str], elems: dict[str, SetElement]) -> None:
        for value in sorted(present):
            e = elems.get(value)
            if e is not None and e.adds:
                continue
            why = (f"its {e.failed_adds} add(s) all failed definitely" if e is not None and e.failed_adds
                   else "nobody added it")
            self.res.add(Anomaly("phantom", key, f"{value!r} is in the final set of {key!r} but {why}"))

    def _failed(self) -> str:
        return f"{self.res.count} elements in the final sets that no add put there"

    def _passed(self) -> str:
        return f"all {self.judged} final elements were added"
