"""Each checker on small hand-made histories: one that passes, one with the anomaly."""

from __future__ import annotations

import json

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
from replikv.check.history import Op

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
