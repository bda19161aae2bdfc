"""What a checker returns, and how key-by-key checkers are driven over a history.

A checker's verdict is a `CheckResult`: ``status`` is ``"pass"`` (the property
held in this history), ``"fail"`` (refuted; every `Anomaly` is a witness that
names the ops involved by history index and explains in words why they break
the property) or ``"unknown"`` (the checker could not decide, e.g. a timeout or
no final read). ``count`` is exact; ``anomalies`` keeps the first
`MAX_ANOMALIES` witnesses, so a result's size is bounded whatever the history.

Most properties are per key (a register, a set, a list), so most checkers are
`KeyChecker`s: they see one key's operations at a time (`history.KeyOps`) and
keep only their running totals between keys. `run_key_checkers` feeds every
key (`history.by_key`) to several checkers in one pass over the history; on a `HistoryFile` that
pass holds one key's ops in memory at a time (bounded memory for long runs).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from replikv.check.history import KeyOps

__all__ = ["MAX_ANOMALIES", "Anomaly", "CheckResult", "KeyChecker", "run_key_checkers"]

MAX_ANOMALIES = 200  # witnesses kept per checker (counts stay exact)


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
        if len(self.anomalies) < MAX_ANOMALIES:
            self.anomalies.append(anomaly)


class KeyChecker:
    """A checker that judges each key on its own: `key` is called once per key
    (any order), then `result` once."""

    name = ""

    def key(self, group: KeyOps) -> None:
        raise NotImplementedError

    def result(self) -> CheckResult:
        raise NotImplementedError


def run_key_checkers(groups: Iterable[KeyOps], checkers: Sequence[KeyChecker]) -> list[CheckResult]:
    """Feed every key group (`history.by_key`) to each checker, one key at a time;
    their results in the same order.

    The cyclic garbage collector is paused meanwhile: the checkers build
    millions of acyclic tuples, which every full collection would rescan
    (a third of the checking time on a million ops)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        for g in groups:
            for c in checkers:
                c.key(g)
        return [c.result() for c in checkers]
    finally:
        if paused:
            gc.enable()


def ms(ns: int) -> float:
    return ns / 1e6


class FinalStateChecker(KeyChecker):
    """A key checker that judges keys by their final read after heal: it fails with the
    anomalies it counted, and is ``unknown`` when a key it needed has no final read
    (``missing_final``), since nothing can be said of that key. Subclasses count into
    ``res``, add their figures in ``stats()`` and word the outcome in ``_failed``/``_passed``."""

    what = "key(s)"  # what one judged key is, in the summary

    def __init__(self) -> None:
        self.res = CheckResult(self.name, "pass", "")
        self.missing_final: list[str] = []

    def stats(self) -> dict[str, int]:
        return {}

    def result(self) -> CheckResult:
        res = self.res
        res.stats.update(self.stats())
        if res.count:
            res.status = "fail"
            res.summary = self._failed()
        elif self.missing_final:
            res.status = "unknown"
            res.summary = (f"no final read of {len(self.missing_final)} {self.what}, e.g. "
                           f"{sorted(self.missing_final)[0]!r}")
        else:
            res.summary = self._passed()
        return res

    def _failed(self) -> str:
        return f"{self.res.count} anomalies"

    def _passed(self) -> str:
        return "holds"
