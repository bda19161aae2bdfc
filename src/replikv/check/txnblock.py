"""Did a dead coordinator leave participants blocked? The ``coordinator-kill`` nemesis's verdict.

Two-phase commit's known weakness (Bernstein, Hadzilacos & Goodman, "Concurrency Control and
Recovery in Database Systems", ch. 7: 2PC is a blocking protocol): a participant that voted yes
may neither commit nor abort on its own, so when the coordinator fails between the phases and
nobody else knows the decision, the participant waits holding its locks. replikv's default
(``--txn record``) writes the decision in a transaction record in one group's Raft log
(Percolator's primary lock, CockroachDB's transaction record): any participant past the
transaction's deadline asks the record and finishes it, so the locks go within the timeout plus an
election. ``--txn classic`` keeps the coordinator's state in memory only.

The nemesis (check/nemesis.py ``_coordinator_kill``) records, per window, the prepared
transactions every live node showed (``REPLIKV TXN INTENTS``), their keys and greatest age, and
which were still held at the end of its watch and after the final heal. Rule of ``blocked
locks``: it fails when an intent was seen older than the recovery bound
(``nemesis.recovery_bound_ms``) or was still held when the watch ended; the summary names the
transactions and keys, and counts the workload's operations on those keys after the kill by
outcome (what the blocking cost the clients). ``unknown`` when no armed node died (it coordinated
no cross-group transaction).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from replikv.check.history import Op
from replikv.check.result import Anomaly, CheckResult

__all__ = ["BLOCKED_LOCKS", "check_blocked_locks", "op_keys"]

BLOCKED_LOCKS = "blocked locks"


def op_keys(op: Op, accounts: Sequence[str] = ()) -> list[str]:
    """The keys a client op touched: a bank transfer's two accounts, a bank read's every account
    (``accounts``), a list-append transaction's keys, else the op's key."""
    try:
        if op.op == "transfer" and op.value:
            t = json.loads(op.value)
            return [str(t["from"]), str(t["to"])]
        if op.op == "read" and op.key == "bank":
            return list(accounts)
        if op.op == "txn" and op.value:
            return sorted({str(m[1]) for m in json.loads(op.value)})
    except (ValueError, KeyError, TypeError, IndexError):
        return []
    return [op.key]


def check_blocked_locks(observations: Iterable[dict[str, object]], history: Iterable[Op]) -> CheckResult:
    """The ``blocked locks`` result of a run's coordinator-kill windows (module docstring)."""
    res = CheckResult(BLOCKED_LOCKS, "pass", "")
    obs = [o for o in observations if o.get("died") is not None]
    if not obs:
        res.status = "unknown"
        res.summary = "no armed node coordinated a cross-group transaction, so none was killed between the phases"
        return res
    blocked: dict[str, dict[str, list[str]]] = {}  # txn -> group -> keys
    first_death = min(int(o["died"]) for o in obs)  # type: ignore[call-overload]
    worst = 0
    bound = 0
    after_heal: set[str] = set()
    for o in obs:
        bound = int(o["bound_ms"])  # type: ignore[call-overload]
        worst = max(worst, int(o["max_age_ms"]))  # type: ignore[call-overload]
        intents: dict[str, dict[str, object]] = o["intents"]  # type: ignore[assignment]
        after_heal.update(o.get("held_after_heal", []))  # type: ignore[arg-type]
        for txn, e in intents.items():
            if txn in blocked:  # seen again by a later window: counted once
                continue
            if int(e["age_ms"]) > bound or txn in o["held_at_end"]:  # type: ignore[call-overload, operator]
                blocked[txn] = {g: list(keys) for g, keys in e["groups"].items()}  # type: ignore[attr-defined]
                res.add(Anomaly(
                    "blocked participant", ",".join(sorted(k for ks in blocked[txn].values() for k in ks)),
                    f"transaction {txn} (coordinated by {o['node']}, killed between the phases) stayed prepared "
                    f"{e['age_ms']} ms in group(s) {', '.join(sorted(blocked[txn]))}, past the {bound} ms bound",
                    [], int(o["died"])))  # type: ignore[call-overload]
    kills = ", ".join(str(o["node"]) for o in obs)
    res.stats.update({"kills": len(obs), "oldest_intent_ms": worst, "bound_ms": bound,
                      "blocked_txns": len(blocked), "held_after_heal": len(after_heal)})
    if not blocked:
        res.summary = (f"coordinator(s) {kills} killed between the phases; every transaction finished: no intent "
                       f"older than {bound} ms (timeout + election; oldest seen {worst} ms)")
        return res
    keys = sorted({k for groups in blocked.values() for ks in groups.values() for k in ks})
    held = set(keys)
    accounts: list[str] = []
    outcomes = {"ok": 0, "failed": 0, "unknown": 0}
    for op in history:
        if op.op == "init" and op.value and not accounts:
            try:
                accounts = list(json.loads(op.value))
            except ValueError:
                pass
        if op.process < 0 or op.call < first_death or not held.intersection(op_keys(op, accounts)):
            continue
        outcomes["ok" if op.ok else "failed" if op.ok is False else "unknown"] += 1
    res.stats.update({f"ops on held keys {k}": v for k, v in outcomes.items()})
    res.status = "fail"
    described = "; ".join(f"{txn} ({', '.join(f'group {g}: ' + ' '.join(ks) for g, ks in sorted(groups.items()))})"
                          for txn, groups in sorted(blocked.items()))
    res.summary = (f"participants left blocked holding locks after coordinator(s) {kills} died between the "
                   f"phases: {described}; oldest intent {worst} ms (bound {bound} ms); "
                   f"{len(after_heal)} still held after the heal and restart; the clients' operations on "
                   f"those keys since the kill: {outcomes['ok']} ok, {outcomes['failed']} failed, "
                   f"{outcomes['unknown']} unknown")
    return res
