"""Each checker on small hand-made histories: one that passes, one with the anomaly."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from replikv.check.checkers import (
    FINAL_PROCESS,
    check_convergence,
    check_counter,
    check_linearizable,
    check_lost_writes,
    check_monotonic_reads,
    check_read_your_writes,
    check_stale_reads,
)
from replikv.check.checkers import key_checkers
from replikv.check.history import HistoryFile, Op, by_key, dump_history, load_history
from replikv.check.linearizability import LinearizabilityChecker
from replikv.check.loss import LostWrites
from replikv.check.registers import MonotonicReads, ReadYourWrites, StaleReads
from replikv.check.result import run_key_checkers
from replikv.check.synth import register_history

MS = 1_000_000


def op(p: int, name: str, key: str, value: str | None, call: int, ret: int | None, ok: bool | None = True,
       expected: str | None = None) -> Op:
    return Op(p, name, key, value, expected, ok, call * MS, None if ret is None else ret * MS)


def final(key: str, value: object, t: int = 1000) -> Op:
    return Op(FINAL_PROCESS, "final", key, json.dumps(value), None, True, t * MS, t * MS + 1)


def test_linearizable_register_passes() -> None:
    h = [op(0, "write", "k", "a", 0, 10), op(1, "read", "k", "a", 11, 12),
         op(1, "cas", "k", "b", 13, 20, expected="a"), op(0, "read", "k", "b", 21, 22)]
    assert check_linearizable(h).status == "pass"


def test_non_linearizable_cas_is_caught() -> None:
    # Both cas a->b and a->c succeed one after the other: the second saw a stale a.
    h = [op(0, "write", "k", "a", 0, 10), op(1, "cas", "k", "b", 11, 20, expected="a"),
         op(2, "cas", "k", "c", 21, 30, expected="a")]
    res = check_linearizable(h)
    assert res.status == "fail"
    assert res.anomalies and res.anomalies[0].key == "k"
    assert "linearizable" in res.anomalies[0].explanation


def test_nemesis_and_final_ops_are_ignored_by_linearizability() -> None:
    h = [Op(-1, "nemesis", "kill", "n1", None, True, 0, 5 * MS), op(0, "write", "k", "a", 0, 10),
         final("k", "a")]
    assert check_linearizable(h).status == "pass"


def test_stale_read_counted_with_staleness() -> None:
    h = [op(0, "write", "k", "a", 0, 10), op(0, "write", "k", "b", 20, 30),
         op(1, "read", "k", "a", 80, 81), op(1, "read", "k", "b", 90, 91)]
    res = check_stale_reads(h)
    assert res.count == 1
    assert res.stats["max_staleness_ms"] == 50.0
    assert res.anomalies[0].ops == [2, 1]
    # a read concurrent with the overwrite is not stale
    assert check_stale_reads([op(0, "write", "k", "a", 0, 10), op(0, "write", "k", "b", 20, 30),
                              op(1, "read", "k", "a", 25, 26)]).count == 0


def test_read_your_writes() -> None:
    good = [op(0, "write", "k", "a", 0, 10), op(0, "read", "k", "a", 11, 12)]
    assert check_read_your_writes(good).status == "pass"
    bad = [op(1, "write", "k", "a", 0, 10), op(0, "write", "k", "b", 11, 20), op(0, "read", "k", "a", 21, 22)]
    res = check_read_your_writes(bad)
    assert res.status == "fail" and res.count == 1
    # another process reading the old value is not a RYW violation
    other = [op(1, "write", "k", "a", 0, 10), op(0, "write", "k", "b", 11, 20), op(2, "read", "k", "a", 21, 22)]
    assert check_read_your_writes(other).status == "pass"
    assert check_read_your_writes([op(0, "write", "k", "a", 0, 10), op(0, "read", "k", None, 11, 12)]).count == 1


def test_monotonic_reads() -> None:
    h = [op(1, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 11, 20),
         op(0, "read", "k", "b", 21, 22), op(0, "read", "k", "a", 23, 24)]
    res = check_monotonic_reads(h)
    assert res.status == "fail" and res.anomalies[0].ops == [2, 3]
    assert check_monotonic_reads(h[:3] + [op(0, "read", "k", "b", 23, 24)]).status == "pass"


def test_lost_set_element_detected() -> None:
    h = [op(0, "add", "s", "1", 0, 5), op(1, "add", "s", "2", 1, 6), op(2, "add", "s", "3", 2, None, ok=None),
         final("s", ["1"])]
    res = check_lost_writes(h)
    assert res.status == "fail" and res.count == 1
    assert "'2'" in res.anomalies[0].explanation
    assert check_lost_writes(h[:3] + [final("s", ["1", "2"])]).status == "pass"
    assert check_lost_writes(h[:3]).status == "unknown"


def test_lost_register_write_detected() -> None:
    h = [op(0, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 20, 30), final("k", "a")]
    res = check_lost_writes(h)
    assert res.status == "fail" and res.anomalies[0].ops == [1]
    assert check_lost_writes(h[:2] + [final("k", "b")]).status == "pass"


def test_append_order_and_loss() -> None:
    h = [op(0, "append", "l", "x", 0, 5), op(1, "append", "l", "y", 10, 15), op(2, "append", "l", "z", 20, 25)]
    assert check_lost_writes(h + [final("l", ["x", "y", "z"])]).status == "pass"
    res = check_lost_writes(h + [final("l", ["y", "x", "z"])])
    assert [a.kind for a in res.anomalies] == ["reordered append"]
    res = check_lost_writes(h + [final("l", ["x", "z", "z"])])
    assert sorted(a.kind for a in res.anomalies) == ["duplicate", "lost write"]


def test_counter() -> None:
    h = [op(0, "incr", "c", "1", 0, 5), op(1, "incr", "c", "1", 0, 5), op(2, "incr", "c", "1", 0, None, ok=None)]
    assert check_counter(h + [final("c", 2)]).status == "pass"
    assert check_counter(h + [final("c", 3)]).status == "pass"
    assert check_counter(h + [final("c", 1)]).status == "fail"
    assert check_counter(h + [final("c", 4)]).anomalies[0].kind == "phantom"


def test_convergence() -> None:
    assert check_convergence({"n1": "ab", "n2": "ab"}).status == "pass"
    res = check_convergence({"n1": "ab", "n2": "cd", "n3": "ab"})
    assert res.status == "fail" and "n2" in res.summary
    assert check_convergence({"n1": "ab", "n2": None}).status == "unknown"


def test_convergence_in_parts_compares_each_share_on_the_nodes_that_hold_it() -> None:
    """Leaderless with 3 replicas on 5 nodes (or sharded raft): nodes hold different shares,
    so whole-node digests differ on a converged cluster (``replikv check --nodes 5`` reported
    5 different states). Each part is compared on the nodes it names, and must be held by
    all of them and by no other node."""
    a, b = ("n1", "n2", "n3"), ("n3", "n4", "n5")
    good = {"n1": [("keys of a", a, "aa")], "n2": [("keys of a", a, "aa")],
            "n3": [("keys of a", a, "aa"), ("keys of b", b, "bb")],
            "n4": [("keys of b", b, "bb")], "n5": [("keys of b", b, "bb")]}
    res = check_convergence(good)
    assert res.status == "pass", res.summary
    assert "2 parts over 5 nodes" in res.summary
    differs = {**good, "n4": [("keys of b", b, "cc")]}
    res = check_convergence(differs)
    assert res.status == "fail" and "keys of b" in res.summary and "n4: cc" in res.summary
    lacking = {**good, "n2": []}
    res = check_convergence(lacking)
    assert res.status == "fail" and "keys of a: not held by n2" in res.summary
    stray = {**good, "n5": [("keys of b", b, "bb"), ("keys of a", a, "aa")]}
    res = check_convergence(stray)
    assert res.status == "fail" and "held by n5, not among its nodes" in res.summary
    disagree = {**good, "n1": [("keys of a", ("n1", "n2", "n4"), "aa")]}
    assert check_convergence(disagree).status == "fail"
    # a node down: a part it should hold cannot be judged; the others can, and a difference shows
    assert check_convergence({**good, "n5": None}).status == "unknown"
    assert check_convergence({**differs, "n1": None}).status == "fail"


def test_an_unknown_outcome_write_precedes_nothing() -> None:
    # 'a' was sent and the client gave up at 5 ms (ok=None, with a return time): it may have
    # landed after the acknowledged write of 'b', so reading 'a' later is not stale, nor a
    # session violation (the shared medium.ok history has this shape).
    h = [op(0, "write", "k", "a", 0, 5, ok=None), op(0, "write", "k", "b", 10, 20),
         op(0, "read", "k", "a", 30, 31), op(1, "read", "k", "b", 25, 26), op(1, "read", "k", "a", 32, 33)]
    assert check_linearizable(h).status == "pass"
    assert check_stale_reads(h).status == "pass"
    assert check_read_your_writes(h).status == "pass"
    assert check_monotonic_reads(h).status == "pass"
    # acknowledged, the same write does precede 'b': all three see the anomaly
    acked = [op(0, "write", "k", "a", 0, 5)] + h[1:]
    assert check_stale_reads(acked).count == 2
    assert check_read_your_writes(acked).count == 1
    assert check_monotonic_reads(acked).count == 1


def _stale_reads_by_definition(history: list[Op]) -> list[tuple[int, int]]:
    """The stale-read rule applied literally: every read against every write of its key (O(n^2))."""
    keys: dict[str, list[tuple[int, Op]]] = {}
    for i, o in enumerate(history):
        if o.process >= 0:
            keys.setdefault(o.key, []).append((i, o))
    out = []
    for ops in keys.values():
        for i, r in ops:
            if r.op != "read" or r.ok is not True:
                continue
            src = None
            if r.value is not None:
                cands = [w for _, w in ops if w.op in ("write", "cas") and w.ok is not False
                         and w.value == r.value]
                if not cands:
                    continue
                src = cands[-1]
                if src.ok is not True:
                    continue
            newer = [(b.ret, j) for j, b in ops
                     if b.op in ("write", "cas") and b.ok is True and b.ret is not None
                     and b.ret < r.call and (src is None or (src.ret is not None and src.ret < b.call))]
            if newer:
                out.append((i, min(newer)[1]))
    return out


def test_stale_reads_sweep_agrees_with_the_rule_on_random_histories() -> None:
    rng = random.Random(17)
    stale_seen = 0
    for _ in range(300):
        h: list[Op] = []
        values: list[str | None] = [None]
        for n in range(rng.randrange(1, 30)):
            call = rng.randrange(100)
            ret = call + rng.randrange(1, 30)
            ok = rng.choices([True, False, None], weights=[6, 1, 1])[0]
            key = rng.choice("xy")
            if rng.random() < 0.5:
                h.append(op(rng.randrange(4), "read", key, rng.choice(values), call, ret, ok=ok))
            else:
                values.append(f"v{n}")
                h.append(op(rng.randrange(4), rng.choice(["write", "cas"]), key, f"v{n}", call,
                            rng.choice([ret, None]) if ok is None else ret, ok=ok, expected="?"))
        expected = _stale_reads_by_definition(h)
        got = check_stale_reads(h)
        assert sorted((a.ops[0], a.ops[1]) for a in got.anomalies) == sorted(expected), h
        stale_seen += len(expected)
    assert stale_seen > 50  # the generator must produce stale reads to mean anything


# --- every checker on the shared histories with known verdicts (../shared/testdata) ---

HISTORIES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "histories"
SHARED = ["small.ok.jsonl", "small.stale.jsonl", "small.lost.jsonl", "small.bad.jsonl",
          "medium.ok.jsonl", "medium.stale.jsonl", "medium.lost.jsonl", "medium.bad.jsonl",
          "large.ok.jsonl.gz", "large.bad.jsonl.gz"]


@pytest.mark.parametrize("name", SHARED)
def test_every_checker_on_the_shared_histories(name: str) -> None:
    """README.md there: `ok` is linearizable; `stale`, `lost` and `bad` inject a stale read, a
    lost acknowledged write (later reads return the older value), or both. So on `ok` no
    checker may see anything, and on the others linearizability fails and the stale-read
    checker finds the read that missed an acknowledged write. Session checkers pass on `ok`
    (a linearizable history satisfies them); on the others it depends on which client read."""
    path = HISTORIES / name
    if not path.exists():
        pytest.skip(f"shared test data not found: {path} (expected beside the clone as ../shared)")
    history = load_history(path)
    lin, stale, ryw, mono, lost = run_key_checkers(by_key(history), [
        LinearizabilityChecker(60), StaleReads(), ReadYourWrites(), MonotonicReads(), LostWrites()])
    ok = ".ok." in name
    assert lin.status == ("pass" if ok else "fail"), lin.summary
    assert stale.status == ("pass" if ok else "fail"), stale.summary
    if ok:
        assert ryw.status == "pass" and mono.status == "pass", (ryw.anomalies, mono.anomalies)
    else:
        assert stale.count >= 1 and all(a.magnitude > 0 for a in stale.anomalies)
        assert sorted(stale.anomalies[0].ops) == sorted(set(stale.anomalies[0].ops))
    # these histories carry no final reads: loss is undecidable from them, and says so
    assert lost.status == "unknown" and "no final read" in lost.summary
    if name.startswith("medium"):
        assert sorted((a.ops[0], a.ops[1]) for a in stale.anomalies) == \
            sorted(_stale_reads_by_definition(history))


def test_synthetic_histories_of_a_correct_store_pass_and_injected_anomalies_fail(tmp_path: Path) -> None:
    """synth.register_history (the benchmark's histories) through every register checker, in
    memory and streamed from a file: a correct store passes everything; injected stale reads
    and lost writes are refuted."""
    ok = register_history(20_000, seed=3)
    assert sum(1 for o in ok if o.ok is None) > 50 and sum(1 for o in ok if o.op == "cas") > 1000
    results = run_key_checkers(by_key(ok), key_checkers("register"))
    assert [r.status for r in results] == ["pass"] * 5, [r.summary for r in results]
    path = tmp_path / "history.jsonl"
    dump_history(ok, path)
    hf = HistoryFile(path)
    from_file = run_key_checkers(by_key(hf), key_checkers("register"))
    hf.close()
    assert [(r.name, r.status, r.summary) for r in from_file] == \
        [(r.name, r.status, r.summary) for r in results]

    stale = run_key_checkers(by_key(register_history(20_000, seed=3, stale=3)), key_checkers("register"))
    by = {r.name: r for r in stale}
    assert by["linearizable"].status == "fail" and by["stale reads"].count >= 1
    lost = run_key_checkers(by_key(register_history(20_000, seed=4, lost=5)), key_checkers("register"))
    assert {r.name: r for r in lost}["linearizable"].status == "fail"


def test_read_your_writes_per_node_when_every_node_takes_writes() -> None:
    """Process 0 (node 0) writes a after process 1 (node 1) wrote b in real time; node 0 had
    not received b, and b wins by last-writer-wins: process 0 reads b. With one writer that is a
    violation; with every node taking writes (node_of given) a concurrent overwrite, counted apart.
    A read of an older write of the process's own node is a violation either way."""
    h = [op(1, "write", "k", "b", 0, 5), op(0, "write", "k", "a", 6, 10), op(0, "read", "k", "b", 11, 12)]
    assert run_key_checkers(by_key(h), [ReadYourWrites()])[0].status == "fail"
    res = run_key_checkers(by_key(h), [ReadYourWrites(lambda p: p % 3)])[0]
    assert res.status == "pass" and res.stats["other_node_lww"] == 1
    same_node = [op(3, "write", "k", "b", 0, 5), op(0, "write", "k", "a", 6, 10), op(0, "read", "k", "b", 11, 12)]
    assert run_key_checkers(by_key(same_node), [ReadYourWrites(lambda p: p % 3)])[0].status == "fail"
    seen_first = [op(1, "write", "k", "b", 0, 5), op(0, "read", "k", "b", 5, 6), op(0, "write", "k", "a", 6, 10),
                  op(0, "read", "k", "b", 11, 12)]  # process 0 had read b: its node had applied it
    assert run_key_checkers(by_key(seen_first), [ReadYourWrites(lambda p: p % 3)])[0].status == "fail"
