"""The checkers, by workload, and one function per checker for a history in memory.

Each checker family lives in its own module, whose docstrings state the rule
each checker enforces and its cost:

- linearizability.py: the register history is linearizable (search);
- registers.py: stale reads, read-your-writes, monotonic reads;
- loss.py: lost writes (set, append, register), counter;
- convergence.py: replicas equal after heal;
- queue.py: the queue workload (lost XADDs, at-least-once, no delivery after XACK).

Conventions shared by every checker: only client operations count
(``process >= 0``); nemesis windows are ``op="nemesis"`` with process
``NEMESIS_PROCESS`` and final reads are ``op="final"`` with process
``FINAL_PROCESS`` (history.py); values written are unique per key; outcomes
are ``ok=True`` happened, ``ok=False`` did not, ``ok=None`` may or may not
have happened. Results are `CheckResult`s (result.py).

`key_checkers(workload)` lists the per-key checkers a workload runs; the
runner feeds them all in one pass over the keys (`run_key_checkers(by_key(history), ...)`), which
on a `HistoryFile` holds one key's ops in memory at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

from replikv.check.convergence import check_convergence
from replikv.check.elle import ListAppendChecker
from replikv.check.history import FINAL_PROCESS, NEMESIS_PROCESS, Op, by_key
from replikv.check.linearizability import LinearizabilityChecker
from replikv.check.loss import Counter, LostWrites
from replikv.check.queue import AckedOnce, AtLeastOnce, QueueLoss
from replikv.check.registers import MonotonicReads, ReadYourWrites, StaleReads
from replikv.check.result import Anomaly, CheckResult, KeyChecker, run_key_checkers

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
    "key_checkers",
]


def key_checkers(workload: str, timeout_s: float = 60.0) -> list[KeyChecker]:
    """The per-key checkers `workload` is judged by (convergence is separate: it reads nodes)."""
    if workload == "list-append":
        return [ListAppendChecker()]
    if workload == "queue":
        return [QueueLoss(), AtLeastOnce(), AckedOnce()]
    out: list[KeyChecker] = [Counter() if workload == "counter" else LostWrites()]
    if workload == "register":
        out += [LinearizabilityChecker(timeout_s), StaleReads(), ReadYourWrites(), MonotonicReads()]
    return out


def _one(checker: KeyChecker, history: Sequence[Op]) -> CheckResult:
    return run_key_checkers(by_key(history), [checker])[0]


def check_linearizable(history: Sequence[Op], timeout_s: float = 60.0) -> CheckResult:
    """See linearizability.LinearizabilityChecker."""
    return _one(LinearizabilityChecker(timeout_s), history)


def check_stale_reads(history: Sequence[Op]) -> CheckResult:
    """See registers.StaleReads."""
    return _one(StaleReads(), history)


def check_read_your_writes(history: Sequence[Op]) -> CheckResult:
    """See registers.ReadYourWrites."""
    return _one(ReadYourWrites(), history)


def check_monotonic_reads(history: Sequence[Op]) -> CheckResult:
    """See registers.MonotonicReads."""
    return _one(MonotonicReads(), history)


def check_lost_writes(history: Sequence[Op]) -> CheckResult:
    """See loss.LostWrites."""
    return _one(LostWrites(), history)


def check_counter(history: Sequence[Op]) -> CheckResult:
    """See loss.Counter."""
    return _one(Counter(), history)
