"""check/elle.py: transactional anomalies in list-append histories, one hand-built
history per anomaly class, and none in serial or merely concurrent ones."""

from __future__ import annotations

import random
from typing import Any

from replikv.check.elle import check_list_append, txn_value
from replikv.check.history import Op
from replikv.check.synth import list_append_history


class H:
    """Builds a history of transactions; each gets the next call time."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def txn(self, *mops: tuple[str, str, Any], ok: bool | None = True, process: int = 0) -> int:
        t = len(self.ops) * 10
        self.ops.append(Op(process, "txn", "txn", txn_value(mops), None, ok, t, t + 5 if ok is not None else None))
        return len(self.ops) - 1


def kinds(h: H) -> set[str]:
    return {a.kind for a in check_list_append(h.ops).anomalies}


def test_a_serial_history_has_no_anomaly() -> None:
    h = H()
    h.txn(("append", "x", 1), ("append", "y", 1))
    h.txn(("r", "x", [1]), ("append", "x", 2))
    h.txn(("r", "x", [1, 2]), ("r", "y", [1]), ("append", "y", 2))
    h.txn(("r", "y", [1, 2]))
    r = check_list_append(h.ops)
    assert r.status == "pass" and r.count == 0 and r.stats["transactions"] == 4


def test_g0_write_cycle() -> None:
    h = H()
    a = h.txn(("append", "x", 1), ("append", "y", 2))
    b = h.txn(("append", "x", 2), ("append", "y", 1))
    h.txn(("r", "x", [1, 2]), ("r", "y", [1, 2]))  # x: a before b; y: b before a
    r = check_list_append(h.ops)
    g0 = [x for x in r.anomalies if x.kind == "G0"]
    assert g0 and set(g0[0].ops) == {a, b}


def test_g1a_aborted_read() -> None:
    h = H()
    h.txn(("append", "x", 1), ok=False)
    h.txn(("r", "x", [1]))
    assert "G1a" in kinds(h)


def test_g1b_intermediate_read() -> None:
    h = H()
    h.txn(("append", "x", 1), ("append", "x", 2))
    h.txn(("r", "x", [1]))
    h.txn(("r", "x", [1, 2]))
    assert "G1b" in kinds(h)


def test_g1c_circular_information_flow() -> None:
    h = H()
    h.txn(("append", "x", 1), ("r", "y", [1]))
    h.txn(("append", "y", 1), ("r", "x", [1]))  # each read the other's write: wr both ways
    assert "G1c" in kinds(h) and "G0" not in kinds(h)


def test_g_single_read_skew() -> None:
    h = H()
    h.txn(("append", "x", 1), ("append", "y", 1))
    h.txn(("append", "x", 2), ("append", "y", 2))
    # saw the second write to x but not the one to y: wr from T1, rw to T1
    h.txn(("r", "x", [1, 2]), ("r", "y", [1]))
    h.txn(("r", "y", [1, 2]))
    assert kinds(h) == {"G-single"}


def test_g2_write_skew() -> None:
    h = H()
    h.txn(("r", "x", []), ("append", "y", 1))
    h.txn(("r", "y", []), ("append", "x", 1))  # each missed the other's append: two rw edges
    h.txn(("r", "x", [1]), ("r", "y", [1]))
    assert kinds(h) == {"G2"}


def test_incompatible_orders_and_duplicates() -> None:
    h = H()
    h.txn(("append", "x", 1))
    h.txn(("append", "x", 2))
    h.txn(("r", "x", [1, 2]))
    h.txn(("r", "x", [2, 1]))
    assert "incompatible-order" in kinds(h)
    d = H()
    d.txn(("append", "x", 1))
    d.txn(("r", "x", [1, 1]))
    assert "duplicate" in kinds(d)


def test_a_value_nobody_appended_is_garbage() -> None:
    h = H()
    h.txn(("r", "x", [7]))
    assert kinds(h) == {"garbage"}


def test_unknown_outcomes_may_be_observed() -> None:
    h = H()
    h.txn(("append", "x", 1), ok=None)
    h.txn(("r", "x", [1]))
    assert check_list_append(h.ops).status == "pass"


def test_a_large_serializable_history_checks_clean() -> None:
    """check/synth.py runs transactions one at a time against a dict of lists:
    serializable by construction, so no anomaly may be reported."""
    r = check_list_append(list_append_history(20_000, seed=5))
    assert r.status == "pass", r.anomalies[:3]
    assert r.stats["edges"] > 20_000


def test_a_stale_read_inside_a_transaction_can_close_a_cycle() -> None:
    r = check_list_append(list_append_history(5_000, read_skews=1, seed=1))
    assert r.status == "fail" and {a.kind for a in r.anomalies} <= {"G-single", "G2"}


def test_the_list_append_workload_rotates_its_keys() -> None:
    """Lists stay short (a read's size bounded, not growing with the run): the
    keys move on every ROTATE transactions, whichever client issues them."""
    import json
    from collections import Counter

    from replikv.check.workloads import ListAppend, make_workload

    wl = make_workload("list-append")
    assert isinstance(wl, ListAppend)
    rng = random.Random(1)
    appends: Counter[str] = Counter()
    for seq in range(10 * ListAppend.ROTATE):
        inv = wl.next(rng, seq % 6, seq)
        assert inv.op == "txn" and inv.key == "txn"
        appends.update(k for f, k, _ in json.loads(inv.value or "[]") if f == "append")
    assert len(appends) >= 10 * len(wl.keys) * 0.9
    assert max(appends.values()) <= ListAppend.ROTATE // 2  # ~40 expected: 200 txns over 6 keys
