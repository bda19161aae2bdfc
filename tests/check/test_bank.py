"""The bank checkers, the blocked-locks verdict and the transaction wiring, on synthetic histories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from replikv.check import bank
from replikv.check.bank import BANK_KEY, bank_accounts, check_bank, keys_in_every_group
from replikv.check.checkers import key_checkers
from replikv.check.clients import classify_error
from replikv.check.history import FINAL_PROCESS, Op
from replikv.check.matrix import (LOCK_BEGIN, LOCK_END, SECTIONS, TXN_BEGIN, TXN_END, kept_section, render_doc,
                                  render_lock_section, render_txn_section, with_section)
from replikv.check.nemesis import nemesis_available, schedule
from replikv.check.result import CheckResult
from replikv.check.runner import claims_for, default_setting, judge
from replikv.check.txnblock import check_blocked_locks, op_keys
from replikv.check.workloads import ListAppend, make_workload
from replikv.core.sharding.slots import SlotMap, key_slot

A, B, C = "a", "b", "c"
INIT = {A: 10, B: 10, C: 10}


class H:
    """A bank history under construction; times advance by 10 per op."""

    def __init__(self, init: dict[str, int] | None = INIT) -> None:
        self.ops: list[Op] = []
        self.t = 0
        if init is not None:
            self.ops.append(Op(0, "init", BANK_KEY, json.dumps(init), None, True, 0, 1))

    def _times(self) -> tuple[int, int]:
        self.t += 10
        return self.t, self.t + 5

    def transfer(self, src: str, dst: str, amount: int, ok: bool | None = True, process: int = 1) -> "H":
        call, ret = self._times()
        self.ops.append(Op(process, "transfer", BANK_KEY, json.dumps({"from": src, "to": dst, "amount": amount}),
                           None, ok, call, ret if ok is not None else None))
        return self

    def read(self, balances: dict[str, int], process: int = 2) -> "H":
        call, ret = self._times()
        self.ops.append(Op(process, "read", BANK_KEY, json.dumps(balances), None, True, call, ret))
        return self

    def final(self, balances: dict[str, int]) -> list[Op]:
        call, ret = self._times()
        return self.ops + [Op(FINAL_PROCESS, "final", BANK_KEY, json.dumps(balances), None, True, call, ret)]


def results(history: list[Op]) -> dict[str, object]:
    reads, final = check_bank(history)
    return {"reads": reads, "final": final}


def test_a_clean_history_passes_with_the_unknown_subset_found() -> None:
    h = (H().transfer(A, B, 3).read({A: 7, B: 13, C: 10})
         .transfer(B, C, 5, ok=None)  # applied (see the final state)
         .transfer(C, A, 2, ok=None)  # not applied
         .transfer(A, C, 4, ok=False)  # refused: not applied
         .read({A: 7, B: 8, C: 15}))
    reads, final = check_bank(h.final({A: 7, B: 8, C: 15}))
    assert reads.status == "pass" and reads.stats["reads"] == 2, reads.summary
    assert final.status == "pass", final.summary
    assert final.stats == {"acknowledged": 1, "failed": 1, "unknown": 2, "unknown applied": 1}
    assert "exact subset" in final.summary


def test_a_partial_transfer_is_found_in_reads_and_in_the_final_state() -> None:
    # the transfer's DECRBY applied without its INCRBY: the total drops by the amount
    h = H().transfer(A, B, 3).read({A: 7, B: 10, C: 10})
    reads, final = check_bank(h.final({A: 7, B: 10, C: 10}))
    assert reads.status == "fail" and [a.kind for a in reads.anomalies] == ["wrong total"]
    assert "sums to 27, not the initial 30" in reads.anomalies[0].explanation
    assert final.status == "fail" and final.anomalies[0].kind == "wrong total"


def test_a_changed_total_with_no_transfer_is_found() -> None:
    reads, _ = check_bank(H().read({A: 10, B: 10, C: 11}).final(INIT))
    assert reads.status == "fail" and reads.count == 2  # the total, and c beyond what any transfer allows
    assert {a.kind for a in reads.anomalies} == {"wrong total", "impossible balance"}


def test_an_impossible_balance_with_the_right_total_is_found() -> None:
    # a -> b 3 failed (definitely not applied), yet a read shows it: the total holds, the bounds do not
    h = H().transfer(A, B, 3, ok=False).read({A: 7, B: 13, C: 10})
    reads, final = check_bank(h.final({A: 7, B: 13, C: 10}))
    assert reads.status == "fail" and {a.kind for a in reads.anomalies} == {"impossible balance"}
    assert final.status == "fail" and final.anomalies[0].kind == "lost or phantom transfer"


def test_a_negative_balance_is_found() -> None:
    h = H().transfer(A, B, 12, ok=None).read({A: -2, B: 22, C: 10})
    reads, _ = check_bank(h.final({A: -2, B: 22, C: 10}))
    assert reads.status == "fail" and [a.kind for a in reads.anomalies] == ["negative balance"]


def test_a_lost_acknowledged_transfer_is_found() -> None:
    h = H().transfer(A, B, 3).transfer(B, C, 1, ok=None)
    _, final = check_bank(h.final({A: 10, B: 9, C: 11}))  # the acknowledged a -> b is missing
    assert final.status == "fail" and final.count == 1
    assert "no subset of the 1 transfer(s) with unknown outcome explains it" in final.anomalies[0].explanation
    assert "leave a +3, b -4, c +1" in final.anomalies[0].explanation  # a -> b 3 missing, b -> c 1 applied


def test_the_final_check_falls_back_to_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bank, "MAX_STATES", 2)
    h = H()
    for _ in range(4):
        h.transfer(A, B, 1, ok=None).transfer(B, C, 2, ok=None)
    _, final = check_bank(h.final({A: 9, B: 9, C: 12}))
    assert final.status == "pass" and "within the bounds" in final.summary
    _, final = check_bank(h.final({A: 5, B: 5, C: 20}))  # c gained 10, the unknown transfers give it 8 at most
    assert final.status == "fail" and final.anomalies[0].kind == "lost or phantom transfer"
    monkeypatch.setattr(bank, "subset_explaining", lambda *args: None)  # the search gave up at once
    _, final = check_bank(h.final({A: 5, B: 5, C: 20}))
    assert final.status == "fail" and "beyond what every unknown transfer" in final.anomalies[0].explanation


def test_no_setup_or_no_final_read_is_undecided() -> None:
    reads, final = check_bank(H(init=None).transfer(A, B, 1).read(INIT).final(INIT))
    assert reads.status == "unknown" and final.status == "unknown"
    reads, final = check_bank(H().transfer(A, B, 1).read({A: 9, B: 11, C: 10}).ops)
    assert reads.status == "pass" and final.status == "unknown" and "no final read" in final.summary


def test_the_bank_claims_are_judged_by_its_checkers() -> None:
    assert [c.name for c in key_checkers("bank")] == ["bank reads", "bank final"]
    claims = claims_for("raft", "shards 3", "bank")
    assert {c.checker for c in claims} == {"convergence", "bank reads", "bank final"}
    conv = CheckResult("convergence", "pass", "")
    clean = check_bank(H().transfer(A, B, 3).read({A: 7, B: 13, C: 10}).final({A: 7, B: 13, C: 10}))
    assert judge(claims, clean) == (2, "undecided")  # convergence not run
    assert judge(claims, [conv, *clean]) == (0, "held")
    partial = check_bank(H().transfer(A, B, 3).read({A: 7, B: 10, C: 10}).final({A: 7, B: 13, C: 10}))
    assert judge(claims, [conv, *partial]) == (1, "refuted")


def test_accounts_and_list_append_keys_cover_every_group() -> None:
    table = SlotMap.even(3).groups
    accounts = bank_accounts(8, 3)
    assert len(set(accounts)) == 8
    assert [table[key_slot(a.encode())] for a in accounts] == [i % 3 for i in range(8)]
    assert keys_in_every_group("x", 3, 1) == ["x0", "x1", "x2"]
    la = ListAppend(6, groups=3)
    names = [la.key_name(n) for n in range(12)]
    assert len(set(names)) == 12 and names[:6] == la.keys
    assert [table[key_slot(k.encode())] for k in names] == [n % 3 for n in range(12)]
    assert ListAppend(6).key_name(7) == "l7"  # unsharded: the names as before
    wl = make_workload("bank", groups=3)
    assert wl.keys == [BANK_KEY] and sorted(wl.slot_keys()) == sorted(accounts)


def test_transaction_errors_are_classified() -> None:
    aborted = redis.exceptions.TryAgainError("transaction aborted: a key is locked by an older transaction; retry")
    unknown = redis.exceptions.TryAgainError("transaction outcome unknown: no answer from group 2")
    parked = redis.exceptions.TryAgainError("a key stayed locked by a transaction being committed; retry")
    assert classify_error("transfer", aborted) is False
    assert classify_error("txn", aborted) is False
    assert classify_error("transfer", parked) is False
    assert classify_error("transfer", unknown) is None
    assert classify_error("transfer", redis.exceptions.ExecAbortError("Transaction discarded")) is False
    moving = redis.exceptions.TryAgainError("the key's slot is moving to another group (or has moved); retry")
    assert classify_error("transfer", moving) is False
    # redis-py raises CROSSSLOT as a class of its own, the code stripped from the message
    assert classify_error("txn", redis.exceptions.ClusterCrossSlotError("Keys in request don't hash to the "
                                                                        "same slot")) is False


def test_sharded_nemeses_and_settings() -> None:
    assert nemesis_available("reshard", "raft", "shards 3") == (True, "")
    assert nemesis_available("coordinator-kill", "raft", "shards 3") == (True, "")
    ok, why = nemesis_available("coordinator-kill", "raft", "majority")
    assert not ok and "sharded" in why
    ok, why = nemesis_available("reshard", "leader-follower", "sync")
    assert not ok and "RESHARD" in why
    assert default_setting("raft", "bank", [], None) == "shards 3"
    assert default_setting("raft", "register", ["coordinator-kill"], None) == "shards 3"
    assert default_setting("raft", "register", ["kill"], "classic") == "shards 3"
    assert default_setting("raft", "register", ["kill"], None) == "majority"
    assert {w.fault for w in schedule(["coordinator-kill"], 20, 1)} == {"coordinator-kill"}


def test_coordinator_kill_claims_differ_by_setting() -> None:
    record = [c for c in claims_for("raft", "shards 3", "bank", None, ["coordinator-kill"])
              if c.checker == "blocked locks"]
    classic = [c for c in claims_for("raft", "shards 3", "bank", "classic", ["coordinator-kill"])
               if c.checker == "blocked locks"]
    assert [c.required for c in record] == [True] and [c.required for c in classic] == [False]
    assert not [c for c in claims_for("raft", "shards 3", "bank", "classic", ["kill"]) if c.checker == "blocked locks"]


def _observation(held: bool) -> dict[str, object]:
    age = 9000 if held else 1500
    return {"node": "n2", "armed": 100, "died": 1000, "observed_until": 8000, "bound_ms": 5000,
            "max_age_ms": age, "txn": "classic" if held else "record",
            "intents": {"n2.1.7": {"groups": {"0": ["a"], "2": ["c"]}, "age_ms": age, "dead": True},
                        "n1.1.3": {"groups": {"1": ["b"]}, "age_ms": 20, "dead": False}},
            "held_at_end": ["n2.1.7"] if held else [], "held_keys": ["a", "c"] if held else [],
            "held_after_heal": ["n2.1.7"] if held else []}


def test_blocked_locks_names_the_blocked_transactions_and_what_they_cost() -> None:
    history = H().transfer(A, B, 1).ops + [
        Op(1, "transfer", BANK_KEY, json.dumps({"from": A, "to": B, "amount": 1}), None, False, 2000, 2100),
        Op(2, "transfer", BANK_KEY, json.dumps({"from": C, "to": B, "amount": 1}), None, None, 2200, None),
        Op(3, "read", BANK_KEY, None, None, False, 2300, 2400),
        Op(4, "transfer", BANK_KEY, json.dumps({"from": B, "to": B, "amount": 1}), None, True, 2500, 2600)]
    res = check_blocked_locks([_observation(True)], history)
    assert res.status == "fail" and res.count == 1
    assert "participants left blocked holding locks" in res.summary
    assert "n2.1.7 (group 0: a, group 2: c)" in res.summary and "1 still held after the heal" in res.summary
    assert res.stats["ops on held keys failed"] == 2 and res.stats["ops on held keys unknown"] == 1
    assert res.stats["ops on held keys ok"] == 0  # b -> b touches no held key; a -> b before the kill
    res = check_blocked_locks([_observation(False)], history)
    assert res.status == "pass" and "every transaction finished" in res.summary
    assert check_blocked_locks([{"node": "n1", "armed": 1, "died": None}], history).status == "unknown"


def test_op_keys() -> None:
    assert op_keys(Op(1, "transfer", BANK_KEY, json.dumps({"from": A, "to": B, "amount": 1}), None, True, 0, 1)) \
        == [A, B]
    assert op_keys(Op(1, "read", BANK_KEY, None, None, False, 0, 1), [A, B, C]) == [A, B, C]
    assert op_keys(Op(1, "txn", "txn", json.dumps([["append", "l1", "x"], ["r", "l0", None]]), None, True, 0, 1)) \
        == ["l0", "l1"]
    assert op_keys(Op(1, "add", "s1", "x", None, True, 0, 1)) == ["s1"]


def test_the_transactions_section_is_replaced_and_kept(tmp_path: Path) -> None:
    txn = (TXN_BEGIN, TXN_END)
    section = render_txn_section(["| raft | shards 3 | record | none | bank | **held** | `run` |"], [], 15, 6, 1)
    assert section.startswith(TXN_BEGIN) and section.endswith(TXN_END)
    doc = "# The guarantee matrix\n\n## What the checker saw\n\n| x |\n\n## Not run\n\n- nothing\n"
    once = with_section(doc, txn, section)
    assert once.index(TXN_BEGIN) < once.index("## Not run") and "| raft | shards 3 | record |" in once
    again = with_section(once, txn, render_txn_section([], [], 15, 6, 2))
    assert again.count(TXN_BEGIN) == 1 and "| raft | shards 3 | record |" not in again
    assert again.replace(render_txn_section([], [], 15, 6, 2), "") == once.replace(section, "")
    path = tmp_path / "consistency.md"
    path.write_text(once)
    assert kept_section(path, txn) == section
    assert kept_section(path, (LOCK_BEGIN, LOCK_END)) == ""
    assert section in render_doc([], [], 10, 4, 1, [kept_section(path, m) for m in SECTIONS])


def test_the_locks_section_is_replaced_without_touching_the_transactions_one(tmp_path: Path) -> None:
    txn = render_txn_section(["| raft | shards 3 | record | none | bank | **held** | `t` |"], [], 15, 6, 1)
    lock_row = "| raft | majority | kill,client-pause | lock | **held** | `l` |"
    locks = render_lock_section([lock_row], ["- `raft` / `partition`: needs root"], 30, 4, 1)
    assert locks.startswith(LOCK_BEGIN) and locks.endswith(LOCK_END) and "needs root" in locks
    doc = with_section(render_doc(["| raft | majority | kill | set | **held** | `a` |"], [], 8, 6, 1),
                       (TXN_BEGIN, TXN_END), txn)
    both = with_section(doc, (LOCK_BEGIN, LOCK_END), locks)
    assert both.index(TXN_BEGIN) < both.index(LOCK_BEGIN) < both.index("## Not run")
    rerun = with_section(both, (LOCK_BEGIN, LOCK_END), render_lock_section([], [], 30, 4, 2))
    assert lock_row not in rerun and txn in rerun and rerun.count(LOCK_BEGIN) == 1
    path = tmp_path / "consistency.md"
    path.write_text(both)  # a full --matrix run keeps both tables, in order, before "Not run"
    full = render_doc(["| raft | majority | kill | set | **held** | `b` |"], [], 8, 6, 1,
                      [kept_section(path, m) for m in SECTIONS])
    assert txn in full and locks in full and full.index(txn) < full.index(locks) < full.index("## Not run")


class _Pipe:
    """A stand-in for redis-py's watching pipeline whose EXEC raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __enter__(self) -> "_Pipe":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def watch(self, *keys: str) -> None:
        pass

    def get(self, key: str) -> bytes:
        return b"100"

    def multi(self) -> None:
        pass

    def decrby(self, key: str, amount: int) -> None:
        pass

    def incrby(self, key: str, amount: int) -> None:
        pass

    def execute(self) -> None:
        raise self.error


class _Client:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def pipeline(self, transaction: bool = True) -> _Pipe:
        return _Pipe(self.error)


def test_a_timeout_during_exec_is_unknown_and_a_changed_watch_is_not_applied() -> None:
    """redis-py reports a timeout during a watching pipeline's EXEC as a WatchError ("A TimeoutError
    occurred while watching one or more keys"): the EXEC may have committed, so the transfer's outcome
    is unknown; a plain WatchError (EXEC answered null: the WATCHed key changed) applied nothing."""
    from replikv.check.workloads import Bank, Declined, Invocation

    wl = Bank(3, groups=3)
    inv = Invocation("transfer", BANK_KEY, json.dumps({"from": wl.accounts[0], "to": wl.accounts[1], "amount": 1}))
    timeout = redis.WatchError("A TimeoutError occurred while watching one or more keys")
    with pytest.raises(redis.ConnectionError) as e:
        wl.execute(_Client(timeout), inv)  # type: ignore[arg-type]
    assert classify_error("transfer", e.value) is None
    with pytest.raises(Declined) as d:
        wl.execute(_Client(redis.WatchError("Watched variable changed.")), inv)  # type: ignore[arg-type]
    assert classify_error("transfer", d.value) is False


def test_the_subset_search_finds_the_applied_transfers_among_many() -> None:
    """Exact with thirty unknown transfers (pruned by what the remaining ones can still do), and
    the witness it returns sums to the residual."""
    import random

    rng = random.Random(5)
    accounts = [f"x{i}" for i in range(8)]
    unknown = [bank.Transfer(i, *rng.sample(accounts, 2), rng.randint(1, 5), None, i, None) for i in range(30)]
    applied = [t for t in unknown if rng.random() < 0.3]
    residual = dict.fromkeys(accounts, 0)
    for t in applied:
        residual[t.src] -= t.amount
        residual[t.dst] += t.amount
    found = bank.subset_explaining(accounts, residual, unknown)
    assert isinstance(found, list)
    got = dict.fromkeys(accounts, 0)
    for t in found:
        got[t.src] -= t.amount
        got[t.dst] += t.amount
    assert got == residual and len(set(t.index for t in found)) == len(found)
    residual["x0"] += 1000  # beyond every transfer
    residual["x1"] -= 1000
    assert bank.subset_explaining(accounts, residual, unknown) is False
