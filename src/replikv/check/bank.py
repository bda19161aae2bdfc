"""The bank workload's checkers: transfers between accounts spread over every Raft group.

The workload (check/workloads.py ``Bank``) sets N accounts to an initial balance once
(op ``init``), then its clients run concurrently:

- ``transfer``: ``WATCH src; GET src``; when the balance covers the amount, ``MULTI; DECRBY src
  x; INCRBY dst x; EXEC`` (the WATCH makes the EXEC fail, changing nothing, if ``src`` changed
  meanwhile, so a balance never goes below zero); value = JSON ``{"from", "to", "amount"}``.
  ``ok`` True: committed; False: definitely not applied (insufficient funds, WATCH abort,
  ``TRYAGAIN transaction aborted``); None: unknown (``TRYAGAIN transaction outcome unknown``, a
  timeout): it may have been applied, as a whole or not at all.
- ``read``: ``MULTI; GET a1; ...; GET aN; EXEC``, one serializable read of every balance;
  value = JSON ``{account: balance}``.

Every op uses the key ``"bank"`` (`BANK_KEY`), so the per-key driver hands the whole history to
these checkers at once (as ``list-append`` does with ``"txn"``); the final read after heal is
one more MULTI of every GET.

Rules (the bank test of Jepsen's Galera and CockroachDB analyses, from the transfer's
definition: a transaction moves an amount from one account to another, all or nothing):

- ``bank reads`` (`BankReads`): every read sees the initial total (a transfer applied in part,
  one side without the other, changes it), no negative balance (transfers check the source under
  WATCH), and each balance within what the transfers invoked before the read returned could have
  made of it: ``initial - outgoing <= balance <= initial + incoming``, counting acknowledged and
  unknown transfers (a failed transfer may not count). O(R * N log T) for R reads, N accounts,
  T transfers (prefix sums per account, by invocation time).
- ``bank final`` (`BankFinal`): the final balances are the initial ones plus every acknowledged
  transfer plus some subset of the unknown ones (no acknowledged transfer lost, no failed one
  applied, nothing applied in part). Exact when it can be: the subset-sum search over the
  unknown transfers' effect vectors keeps the reachable residuals from which the target is still
  in reach (`subset_explaining`), at most ``MAX_STATES`` at a step; past that, per-account bounds (the residual of each account within what the
  unknown transfers in and out of it could add) and the total.

Both are ``unknown`` when the history has no ``init`` op (the setup failed) or, for the final
check, no final read (e.g. the accounts stayed locked by a transaction whose coordinator died
under ``--txn classic``).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from replikv.check.history import KeyOps, Op
from replikv.check.result import Anomaly, CheckResult, FinalStateChecker, KeyChecker
from replikv.core.sharding.slots import SlotMap, key_slot

__all__ = ["BANK_KEY", "MAX_STATES", "BankFinal", "BankReads", "Transfer", "bank_accounts", "check_bank",
           "keys_in_every_group"]

BANK_KEY = "bank"
MAX_STATES = 200_000  # residual vectors the exact final check may hold at one step


def keys_in_every_group(prefix: str, n: int, groups: int) -> list[str]:
    """``n`` key names, the i-th in group ``i mod groups`` of the initial slot map
    (`SlotMap.even`): ``<prefix><i>`` when it falls there, else ``<prefix><i>.<j>`` with the
    first ``j`` that does. With ``groups <= 1`` simply ``<prefix><i>``."""
    if groups <= 1:
        return [f"{prefix}{i}" for i in range(n)]
    table = SlotMap.even(groups).groups
    out = []
    for i in range(n):
        want = i % groups
        name, j = f"{prefix}{i}", 0
        while table[key_slot(name.encode())] != want:
            name = f"{prefix}{i}.{j}"
            j += 1
        out.append(name)
    return out


def bank_accounts(n: int, groups: int) -> list[str]:
    """The bank's account keys: ``n`` of them spread round-robin over ``groups`` groups."""
    return keys_in_every_group("acct", n, groups)


@dataclass(frozen=True, slots=True)
class Transfer:
    index: int  # in the history
    src: str
    dst: str
    amount: int
    ok: bool | None
    call: int
    ret: int | None


def _transfers(group: KeyOps) -> tuple[dict[str, int] | None, int | None, list[Transfer], list[tuple[int, Op]]]:
    """(initial balances, the init op's index, transfers, ok reads) of the bank key's ops."""
    init: dict[str, int] | None = None
    init_index: int | None = None
    transfers: list[Transfer] = []
    reads: list[tuple[int, Op]] = []
    for i, op in zip(group.indices, group.ops):
        if op.op == "init" and op.ok is True and op.value is not None:
            init, init_index = {str(k): int(v) for k, v in json.loads(op.value).items()}, i
        elif op.op == "transfer" and op.value is not None:
            t = json.loads(op.value)
            transfers.append(Transfer(i, str(t["from"]), str(t["to"]), int(t["amount"]), op.ok, op.call, op.ret))
        elif op.op == "read" and op.ok is True and op.value is not None:
            reads.append((i, op))
    return init, init_index, transfers, reads


def _balances(value: str | None) -> dict[str, Any]:
    decoded = json.loads(value) if value is not None else None
    return decoded if isinstance(decoded, dict) else {}


def _fmt(vec: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:+d}" for k, v in vec.items() if v) or "nothing"


class BankReads(KeyChecker):
    """Every read of all balances: initial total, no negative balance, each balance reachable
    (module docstring)."""

    name = "bank reads"

    def __init__(self) -> None:
        self.res = CheckResult(self.name, "pass", "")
        self.reads = 0
        self.seen_bank = False
        self.no_init = False

    def key(self, group: KeyOps) -> None:
        if group.key != BANK_KEY:
            return
        self.seen_bank = True
        init, _, transfers, reads = _transfers(group)
        if init is None:
            self.no_init = True
            return
        total = sum(init.values())
        # per account: invocation times (sorted) and prefix sums of what may flow out / in
        flows: dict[str, dict[str, tuple[list[int], list[int]]]] = {"out": {}, "in": {}}
        for direction in ("out", "in"):
            per: dict[str, list[tuple[int, int]]] = {}
            for t in transfers:
                if t.ok is False:
                    continue
                acct = t.src if direction == "out" else t.dst
                per.setdefault(acct, []).append((t.call, t.amount))
            for acct, items in per.items():
                items.sort()
                sums, run = [], 0
                for _, amount in items:
                    run += amount
                    sums.append(run)
                flows[direction][acct] = ([c for c, _ in items], sums)

        def upto(direction: str, acct: str, before: int) -> int:
            times, sums = flows[direction].get(acct, ([], []))
            n = bisect.bisect_right(times, before)
            return sums[n - 1] if n else 0

        for i, op in reads:
            self.reads += 1
            got = _balances(op.value)
            if set(got) != set(init) or any(not isinstance(v, int) for v in got.values()):
                self.res.add(Anomaly("garbage read", BANK_KEY, f"a read of every balance returned {got} (accounts "
                                     f"{sorted(init)}, integer balances expected)", [i], op.call, op.process))
                continue
            seen = sum(got.values())
            if seen != total:
                self.res.add(Anomaly(
                    "wrong total", BANK_KEY,
                    f"a read of every balance sums to {seen}, not the initial {total} (by {seen - total:+d}): "
                    "a transfer applied in part, or one applied twice or never", [i], op.call, op.process,
                    abs(seen - total)))
            for acct, bal in got.items():
                if bal < 0:
                    self.res.add(Anomaly("negative balance", BANK_KEY, f"{acct} read as {bal}; transfers never "
                                         "take more than the source holds (WATCHed)", [i], op.call, op.process))
                before = op.ret if op.ret is not None else op.call
                lo = init[acct] - upto("out", acct, before)
                hi = init[acct] + upto("in", acct, before)
                if not lo <= bal <= hi:
                    self.res.add(Anomaly(
                        "impossible balance", BANK_KEY,
                        f"{acct} read as {bal}, outside [{lo}, {hi}]: what the acknowledged and unknown "
                        "transfers invoked before the read returned could have made of its initial "
                        f"{init[acct]} (a failed transfer applied, or one applied twice)", [i], op.call,
                        op.process))

    def result(self) -> CheckResult:
        res = self.res
        res.stats["reads"] = self.reads
        if res.count:
            res.status = "fail"
            kinds: dict[str, int] = {}
            for a in res.anomalies:
                kinds[a.kind] = kinds.get(a.kind, 0) + 1
            res.summary = (f"{res.count} anomalies in {self.reads} reads of every balance ("
                           + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())) + ")")
        elif not self.seen_bank or self.no_init:
            res.status = "unknown"
            res.summary = "no initial balances in the history (the setup did not complete)"
        elif not self.reads:
            res.status = "unknown"
            res.summary = "no read of every balance completed"
        else:
            res.summary = f"{self.reads} reads of every balance, each with the initial total and possible balances"
        return res


class BankFinal(FinalStateChecker):
    """The final balances = initial + acknowledged transfers + a subset of the unknown ones
    (module docstring)."""

    name = "bank final"
    what = "bank"

    def __init__(self) -> None:
        super().__init__()
        self.counts = {"acknowledged": 0, "failed": 0, "unknown": 0, "unknown applied": -1}
        self.method = ""
        self.no_init = False

    def stats(self) -> dict[str, int]:
        return {k: v for k, v in self.counts.items() if v >= 0}

    def key(self, group: KeyOps) -> None:
        if group.key != BANK_KEY:
            return
        init, init_index, transfers, _ = _transfers(group)
        for t in transfers:
            self.counts["acknowledged" if t.ok else "failed" if t.ok is False else "unknown"] += 1
        if init is None or init_index is None:
            self.no_init = True
            return
        f = group.final
        if f is None or f.ok is not True:
            self.missing_final.append(BANK_KEY)
            return
        final = _balances(f.value)
        if set(final) != set(init) or any(not isinstance(v, int) for v in final.values()):
            self.res.add(Anomaly("garbage final", BANK_KEY, f"the final read returned {final}", [init_index], f.call))
            return
        accounts = sorted(init)
        residual = {a: final[a] - init[a] for a in accounts}
        for t in transfers:
            if t.ok is True:
                residual[t.src] += t.amount
                residual[t.dst] -= t.amount
        unknown = [t for t in transfers if t.ok is None]
        total = sum(final.values()) - sum(init.values())
        if total:
            self.res.add(Anomaly("wrong total", BANK_KEY, f"the final balances sum to {sum(final.values())}, "
                                 f"not the initial {sum(init.values())}: a transfer applied in part",
                                 [init_index], f.call, magnitude=abs(total)))
            return
        applied = subset_explaining(accounts, residual, unknown)
        if applied is None:
            self.method = "bounds"
            out = {a: sum(t.amount for t in unknown if t.src == a) for a in accounts}
            inn = {a: sum(t.amount for t in unknown if t.dst == a) for a in accounts}
            bad = [a for a in accounts if not -out[a] <= residual[a] <= inn[a]]
            if bad:
                self._unexplained(residual, unknown, init_index, f.call, f"account(s) {', '.join(bad)} beyond "
                                  "what every unknown transfer in or out of them could change")
            return
        if applied is False:
            self._unexplained(residual, unknown, init_index, f.call,
                              f"no subset of the {len(unknown)} transfer(s) with unknown outcome explains it")
            return
        self.method = "exact"
        self.counts["unknown applied"] = len(applied)

    def _unexplained(self, residual: dict[str, int], unknown: list[Transfer], index: int, time: int,
                     why: str) -> None:
        self.res.add(Anomaly(
            "lost or phantom transfer", BANK_KEY,
            f"final balances minus the initial ones and every acknowledged transfer leave {_fmt(residual)}; "
            f"{why}: an acknowledged transfer was lost, or a failed one applied (in whole or in part)",
            [index] + [t.index for t in unknown][:20], time))

    def result(self) -> CheckResult:
        if self.no_init and not self.res.count:
            self.res.status, self.res.summary = "unknown", "no initial balances in the history (the setup did not complete)"
            self.res.stats.update(self.stats())
            return self.res
        if self.missing_final and not self.res.count:
            res = super().result()
            res.summary = ("no final read of the balances: reading every account after the heal failed "
                           "(see the notes; e.g. accounts still locked by a prepared transaction)")
            return res
        return super().result()

    def _failed(self) -> str:
        return f"{self.res.count} anomalies: {self.res.anomalies[0].explanation}"

    def _passed(self) -> str:
        c = self.counts
        if self.method == "exact" and not c["unknown"]:
            extra = ""
        elif self.method == "exact":
            extra = f", and {c['unknown applied']} of the {c['unknown']} unknown (exact subset found)"
        elif self.method == "bounds":
            extra = f", within the bounds of the {c['unknown']} unknown (too many for the exact search)"
        else:
            extra = ""
        return (f"final balances = initial + all {c['acknowledged']} acknowledged transfers{extra}; "
                f"none of the {c['failed']} failed ones")


def subset_explaining(accounts: Sequence[str], residual: dict[str, int],
                      unknown: Sequence[Transfer]) -> list[Transfer] | Literal[False] | None:
    """A subset of ``unknown`` whose effects sum to ``residual`` (a transfer adds its amount to
    its destination and takes it from its source): the subset (a list) if one exists, False
    if none does, None when the search outgrew `MAX_STATES` vectors at one step.

    Breadth-first over the transfers, keeping the vectors reachable with the first k of them, less
    those from which the target is out of reach: an account's remaining difference must lie within
    what the transfers after k could still take out of it or bring in (suffix sums)."""
    n = len(accounts)
    pos = {a: i for i, a in enumerate(accounts)}
    target = tuple(residual[a] for a in accounts)
    out_after = [[0] * n for _ in range(len(unknown) + 1)]  # [k][i]: amounts out of i in transfers k..
    in_after = [[0] * n for _ in range(len(unknown) + 1)]
    for k in range(len(unknown) - 1, -1, -1):
        out_after[k] = list(out_after[k + 1])
        in_after[k] = list(in_after[k + 1])
        out_after[k][pos[unknown[k].src]] += unknown[k].amount
        in_after[k][pos[unknown[k].dst]] += unknown[k].amount

    def feasible(vec: tuple[int, ...], k: int) -> bool:
        lo, hi = out_after[k], in_after[k]
        return all(-lo[i] <= target[i] - vec[i] <= hi[i] for i in range(n))

    zero = tuple(0 for _ in accounts)
    if not feasible(zero, 0):
        return False
    # vector -> (previous vector, the transfer that led here): any recorded derivation is a witness
    parent: dict[tuple[int, ...], tuple[tuple[int, ...], int] | None] = {zero: None}
    frontier = {zero}
    for k, t in enumerate(unknown):
        s, d = pos[t.src], pos[t.dst]
        new: set[tuple[int, ...]] = set()
        for vec in frontier:
            if feasible(vec, k + 1):  # without transfer k
                new.add(vec)
            nxt = list(vec)
            nxt[s] -= t.amount
            nxt[d] += t.amount
            key = tuple(nxt)
            if key not in new and feasible(key, k + 1):
                new.add(key)
                parent.setdefault(key, (vec, k))
        frontier = new
        if not frontier:
            return False
        if len(frontier) > MAX_STATES or len(parent) > 4 * MAX_STATES:
            return None
    if target not in frontier:
        return False
    out: list[Transfer] = []
    step = parent[target]
    while step is not None:
        prev, k = step
        out.append(unknown[k])
        step = parent[prev]
    return out


def check_bank(history: Sequence[Op]) -> list[CheckResult]:
    """Both bank checkers over a history in memory (reads, then final)."""
    from replikv.check.history import by_key
    from replikv.check.result import run_key_checkers

    return run_key_checkers(by_key(history), [BankReads(), BankFinal()])
