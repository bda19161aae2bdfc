"""The checkers, by workload, and one function per checker for a history in memory.

Each checker family lives in its own module, whose docstrings state the rule
each checker enforces and its cost:

- linearizability.py: the register history is linearizable (search);
- registers.py: stale reads, read-your-writes, monotonic reads;
- loss.py: lost writes (set, append, register), counter;
- setrm.py: sets with removes (lost adds, resurrections, phantoms: the observed-remove rule);
- convergence.py: replicas equal after heal;
- queue.py: the queue workload (lost XADDs, at-least-once, no delivery after XACK);
- bank.py: the bank workload (every read keeps the total, no transfer applied in part, no
  acknowledged transfer lost);
- txnblock.py (run by the runner, from the coordinator-kill nemesis's observations): participants
  left blocked by a coordinator that died between the two phases;
- locks.py: the lock workload (at most one holder at a time; no stale holder's write applied);
- lww.py: acknowledged writes last-writer-wins overwrote with a concurrent write
  (optional: run when a mode's claim names it, see `OPTIONAL_KEY_CHECKERS`).

Conventions shared by every checker: only client operations count
(``process >= 0``); nemesis windows are ``op="nemesis"`` with process
``NEMESIS_PROCESS`` and final reads are ``op="final"`` with process
``FINAL_PROCESS`` (history.py); values written are unique per key; outcomes
are ``ok=True`` happened, ``ok=False`` did not, ``ok=None`` may or may not
have happened. Results are `CheckResult`s (result.py).

`key_checkers(workload, extra=...)` lists the per-key checkers a workload runs (plus the optional
ones `extra` names, e.g. the checker names of a mode's claims); the
runner feeds them all in one pass over the keys (`run_key_checkers(by_key(history), ...)`), which
on a `HistoryFile` holds one key's ops in memory at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from replikv.check.bank import BankFinal, BankReads
from replikv.check.convergence import check_convergence
from replikv.check.elle import ListAppendChecker
from replikv.check.history import FINAL_PROCESS, NEMESIS_PROCESS, Op, by_key
from replikv.check.linearizability import LinearizabilityChecker
from replikv.check.locks import LockExclusion, StaleWrites
from replikv.check.loss import Counter, LostWrites
from replikv.check.lww import LwwOverwrites
from replikv.check.queue import AckedOnce, AtLeastOnce, QueueLoss
from replikv.check.registers import MonotonicReads, ReadYourWrites, StaleReads
from replikv.check.result import Anomaly, CheckResult, KeyChecker, run_key_checkers
from replikv.check.setrm import LostAdds, Phantoms, Resurrections

__all__ = [
    "FINAL_PROCESS",
    "NEMESIS_PROCESS",
    "Anomaly",
    "CheckResult",
    "check_convergence",
    "check_counter",
    "OPTIONAL_KEY_CHECKERS",
    "check_linearizable",
    "check_lost_writes",
    "check_lww_overwrites",
    "check_monotonic_reads",
    "check_read_your_writes",
    "check_set_removes",
    "check_stale_reads",
    "key_checkers",
]


# Checkers no workload runs by default, by name: a run adds the ones its claims name
# (a mode that claims "lww overwrites" for the register workload gets it counted).
OPTIONAL_KEY_CHECKERS: dict[str, Callable[[], KeyChecker]] = {
    LwwOverwrites.name: LwwOverwrites,
}


def key_checkers(workload: str, timeout_s: float = 60.0, extra: Iterable[str] = (),
                 node_of: Callable[[int], int] | None = None) -> list[KeyChecker]:
    """The per-key checkers `workload` is judged by (convergence is separate: it reads nodes),
    then the optional checkers (`OPTIONAL_KEY_CHECKERS`) that `extra` names; other names in
    `extra` (the default checkers' own, "convergence") are ignored. `node_of` (process -> the
    node it talks to), given for a mode where every node takes writes, makes read-your-writes
    judge each process on its own node (registers.ReadYourWrites)."""
    if workload == "list-append":
        out: list[KeyChecker] = [ListAppendChecker()]
    elif workload == "bank":
        out = [BankReads(), BankFinal()]
    elif workload == "queue":
        out = [QueueLoss(), AtLeastOnce(), AckedOnce()]
    elif workload in ("lock", "lock-unfenced"):
        from replikv.check.workloads import LockWorkload

        out = [LockExclusion(LockWorkload.TTL_MS), StaleWrites()]
    elif workload == "set-rm":
        out = [LostAdds(), Resurrections(), Phantoms()]
    else:
        out = [Counter() if workload == "counter" else LostWrites()]
        if workload == "register":
            out += [LinearizabilityChecker(timeout_s), StaleReads(), ReadYourWrites(node_of),
                    MonotonicReads()]
    have = {c.name for c in out}
    for name in extra:
        make = OPTIONAL_KEY_CHECKERS.get(name)
        if make is not None and name not in have:
            out.append(make())
            have.add(name)
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


def check_set_removes(history: Sequence[Op]) -> list[CheckResult]:
    """See setrm: lost adds, resurrections, phantoms (in that order)."""
    return run_key_checkers(by_key(history), [LostAdds(), Resurrections(), Phantoms()])


def check_lww_overwrites(history: Sequence[Op]) -> CheckResult:
    """See lww.LwwOverwrites."""
    return _one(LwwOverwrites(), history)
