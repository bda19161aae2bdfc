"""The "lww overwrites" checker (check/lww.py) on hand-made register histories,
and how a run selects it (a claim that names it)."""

from __future__ import annotations

from replikv import modes
from replikv.check.checkers import check_lww_overwrites, key_checkers
from replikv.check.runner import judge, run_checkers
from replikv.modes import Claim
from tests.check.test_checkers import final, op  # the hand-made history helpers


def test_two_overlapping_writes_one_vanished_is_counted() -> None:
    # a (0..10) and b (5..15) overlap; both acknowledged; every later read and the final say b
    h = [op(0, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 5, 15),
         op(2, "read", "k", "b", 20, 21), op(0, "read", "k", "b", 30, 31), final("k", "b")]
    res = check_lww_overwrites(h)
    assert res.status == "fail" and res.count == 1
    assert res.anomalies[0].ops == [0, 1]
    assert res.anomalies[0].kind == "lww overwrite"
    assert "'a'" in res.anomalies[0].explanation and "'b'" in res.anomalies[0].explanation
    assert res.stats["acknowledged_writes"] == 2 and res.stats["concurrent_writes"] == 2
    assert "1 of 2" in res.summary


def test_the_winner_shown_by_the_final_value_alone() -> None:
    h = [op(0, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 5, 15), final("k", "b")]
    assert check_lww_overwrites(h).count == 1


def test_sequential_writes_are_not_counted() -> None:
    # a returns before b is invoked: b replacing a is ordinary overwriting, in any mode
    h = [op(0, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 11, 20),
         op(2, "read", "k", "b", 30, 31), final("k", "b")]
    res = check_lww_overwrites(h)
    assert res.status == "pass" and res.count == 0
    assert res.stats["concurrent_writes"] == 0


def test_a_write_seen_by_a_later_read_is_not_counted() -> None:
    # overlapping, but a read that began after a returned saw a: a was not silently lost
    h = [op(0, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 5, 15),
         op(2, "read", "k", "a", 12, 13), op(2, "read", "k", "b", 30, 31), final("k", "b")]
    assert check_lww_overwrites(h).count == 0


def test_a_read_during_the_write_does_not_count_as_observing_it() -> None:
    h = [op(0, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 5, 15),
         op(2, "read", "k", "a", 8, 9), final("k", "b")]
    assert check_lww_overwrites(h).count == 1


def test_the_final_value_is_not_counted_and_a_later_sequential_write_is_no_witness() -> None:
    # a || b, then c after both: nothing shows that b (rather than c) replaced a
    h = [op(0, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 5, 15),
         op(0, "write", "k", "c", 20, 30), final("k", "c")]
    assert check_lww_overwrites(h).count == 0
    # the write that is the final value is never counted, however concurrent: here a won, b is counted
    res = check_lww_overwrites([op(0, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 5, 15),
                                final("k", "a")])
    assert res.count == 1 and res.anomalies[0].ops == [1, 0]


def test_failed_writes_and_unknown_outcomes() -> None:
    # a failed write is never a witness nor counted; an unknown-outcome write that was read is a witness
    failed = [op(0, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 5, 15, ok=False), final("k", "a")]
    assert check_lww_overwrites(failed).count == 0
    unknown = [op(0, "write", "k", "a", 50, 60), op(1, "write", "k", "b", 0, None, ok=None),
               op(2, "read", "k", "b", 70, 71), final("k", "b")]
    res = check_lww_overwrites(unknown)
    assert res.count == 1 and "unknown outcome" in res.anomalies[0].explanation
    # an unknown write is never counted itself (it was not acknowledged)
    assert check_lww_overwrites([op(0, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 5, None, ok=None),
                                 final("k", "a")]).count == 0


def test_long_write_overlapping_many_and_several_keys() -> None:
    # a long write l (0..100) overlaps short ones; only those never read after they returned count
    h = [op(0, "write", "k", "l", 0, 100)]
    h += [op(1, "write", "k", f"s{i}", 10 * i, 10 * i + 5) for i in range(1, 6)]
    h += [op(2, "read", "k", "s3", 36, 37)]  # s3 seen after it returned
    h += [op(3, "write", "j", "x", 0, 10), op(4, "write", "j", "y", 0, 10)]
    h += [final("k", "l"), final("j", "y")]
    res = check_lww_overwrites(h)
    counted = sorted((a.key, h[a.ops[0]].value) for a in res.anomalies)
    assert counted == [("j", "x"), ("k", "s1"), ("k", "s2"), ("k", "s4"), ("k", "s5")]


def test_no_final_read_is_judged_on_reads_and_named() -> None:
    h = [op(0, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 5, 15), op(2, "read", "k", "b", 20, 21)]
    res = check_lww_overwrites(h)
    assert res.count == 1 and "without a final read" in res.summary


def test_selected_only_by_a_claim_that_names_it() -> None:
    default = [c.name for c in key_checkers("register")]
    assert "lww overwrites" not in default
    assert [c.name for c in key_checkers("register", extra=["lww overwrites", "linearizable"])] == \
        default + ["lww overwrites"]
    assert [c.name for c in key_checkers("register", extra=["nonsense"])] == default
    h = [op(0, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 5, 15), final("k", "b")]
    names = [r.name for r in run_checkers(h, "register", {"n1": "d", "n2": "d"})]
    assert "lww overwrites" not in names
    claims = [Claim("convergence", True, "replicas converge"),
              Claim("lww overwrites", False, "concurrent writes: last-writer-wins keeps one (counted)")]
    results = run_checkers(h, "register", {"n1": "d", "n2": "d"}, claims=claims)
    lww = next(r for r in results if r.name == "lww overwrites")
    assert lww.count == 1
    assert judge(claims, results) == (0, "held")  # measured, not required: the verdict holds


def test_only_modes_where_every_node_writes_measure_it() -> None:
    """A single-writer mode orders every write in one log: nothing to count there. A mode where
    every node takes writes measures it on the register workload, never as a requirement."""
    for name in modes.names():
        spec = modes.get(name)
        for setting in spec.settings:
            for workload in ("register", "set", "counter"):
                claims = [c for c in spec.claims(setting, workload) if c.checker == "lww overwrites"]
                if spec.single_writer or workload != "register":
                    assert not claims
                else:
                    assert len(claims) == 1 and not claims[0].required


def test_runs_on_a_history_file_and_a_large_synthesized_history(tmp_path: object) -> None:
    """Same counts from memory and from disk (HistoryFile, one key at a time); a 100k-op
    linearizable-register history (12 clients) is judged in about a second."""
    import time
    from pathlib import Path

    from replikv.check.checkers import key_checkers as kc
    from replikv.check.history import HistoryFile, by_key, dump_history
    from replikv.check.result import run_key_checkers
    from replikv.check.synth import register_history

    h = register_history(100_000, keys=10, clients=12, seed=3)
    t0 = time.perf_counter()
    mem = check_lww_overwrites(h)
    elapsed = time.perf_counter() - t0
    path = Path(str(tmp_path)) / "h.jsonl"
    dump_history(h, path)
    disk = run_key_checkers(by_key(HistoryFile(path)), kc("register", extra=["lww overwrites"]))[-1]
    assert disk.name == "lww overwrites"
    assert (disk.count, disk.stats) == (mem.count, mem.stats)
    assert mem.stats["acknowledged_writes"] > 10_000 and mem.stats["concurrent_writes"] > 0
    print(f"\n100k ops: {mem.summary} ({elapsed:.2f} s)")


def test_a_later_write_lost_to_an_earlier_one_is_counted_apart() -> None:
    # a completes before b begins, yet the final value is a (b's timestamp lost): no linearizable
    # register ends like this
    h = [op(0, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 20, 30), final("k", "a")]
    res = check_lww_overwrites(h)
    assert res.stats["overwritten_by_earlier"] == 1
    assert "completed before they began" in res.summary
    sequential = [op(0, "write", "k", "a", 0, 10), op(1, "write", "k", "b", 20, 30), final("k", "b")]
    assert check_lww_overwrites(sequential).stats["overwritten_by_earlier"] == 0
