"""The set-rm checkers (check/setrm.py) on hand-built histories, and the set-rm workload's bookkeeping.

Each anomaly (lost add, resurrection, phantom) is detected; the outcomes the observed-remove
rule allows (a concurrent remove either way, a re-add after a remove, unknown outcomes) pass.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from replikv import modes
from replikv.check.checkers import FINAL_PROCESS, check_set_removes, key_checkers
from replikv.check.history import Op
from replikv.check.matrix import MATRIX_WORKLOADS, kept_rows, render_doc, row_order
from replikv.check.result import CheckResult
from replikv.check.workloads import Invocation, SetRemove, make_workload

MS = 1_000_000


def op(p: int, name: str, value: str | None, call: int, ret: int | None, ok: bool | None = True,
       key: str = "s0") -> Op:
    return Op(p, name, key, value, None, ok, call * MS, None if ret is None else ret * MS)


def final(members: list[str], key: str = "s0") -> Op:
    return Op(FINAL_PROCESS, "final", key, json.dumps(sorted(members)), None, True, 1000 * MS, 1000 * MS + 1)


def results(history: list[Op]) -> dict[str, CheckResult]:
    return {r.name: r for r in check_set_removes(history)}


def statuses(history: list[Op]) -> dict[str, str]:
    return {name: r.status for name, r in results(history).items()}


PASS = {"lost adds": "pass", "resurrections": "pass", "phantoms": "pass"}


def test_allowed_outcomes_pass() -> None:
    history = [
        op(0, "add", "0-1", 0, 10),              # acked, never removed: present
        op(0, "add", "0-2", 20, 30),
        op(0, "remove", "0-2", 40, 50),          # its own, after the ack: observed, gone
        op(1, "add", "1-1", 0, 10),
        op(2, "remove", "1-1", 5, 15),           # another's remove, concurrent: either outcome
        op(1, "add", "1-2", 20, 30),
        op(2, "remove", "1-2", 40, 50),          # another's, after the ack: either outcome too
        op(0, "add", "0-3", 60, 70),
        op(0, "remove", "0-3", 80, 90),
        op(0, "add", "0-3", 100, 110),           # re-added after its own remove: present
        op(1, "add", "1-3", 60, None, ok=None),  # unknown: may be there or not
        op(1, "add", "1-4", 60, 70, ok=False),   # definitely not: absent
        op(0, "read", json.dumps(["0-1"]), 95, 99),
        final(["0-1", "1-2", "0-3"]),
    ]
    res = results(history)
    assert {n: r.status for n, r in res.items()} == PASS, [r.summary for r in res.values()]
    assert res["lost adds"].stats["judged"] == 5  # 0-1, 0-2, 1-1, 1-2, 0-3 (not 1-3, 1-4)
    assert res["lost adds"].stats["unremovable"] == 2  # 0-1, and 0-3's re-add
    assert res["resurrections"].stats["judged"] == 1  # 0-2 (0-3 was added again)
    # the unknown add present instead, and the other's removes winning, pass as well
    assert statuses(history[:-1] + [final(["0-1", "0-3", "1-3"])]) == PASS


def test_lost_add_detected() -> None:
    history = [op(0, "add", "0-1", 0, 10), op(1, "add", "1-1", 0, 10), final(["1-1"])]
    res = results(history)
    assert res["lost adds"].status == "fail" and res["lost adds"].count == 1
    a = res["lost adds"].anomalies[0]
    assert a.kind == "lost add" and "'0-1'" in a.explanation and a.ops == [0] and a.process == 0
    assert res["resurrections"].status == "pass" and res["phantoms"].status == "pass"


def test_a_remove_that_ended_before_the_add_began_does_not_excuse_its_loss() -> None:
    history = [op(1, "remove", "0-1", 0, 5), op(0, "add", "0-1", 10, 20), final([])]
    assert statuses(history)["lost adds"] == "fail"
    # a remove that may have come after (overlapping, later, or of unknown outcome) does
    for remove in (op(1, "remove", "0-1", 0, 15), op(1, "remove", "0-1", 30, 40),
                   op(1, "remove", "0-1", 0, None, ok=None)):
        assert statuses([remove, op(0, "add", "0-1", 10, 20), final([])]) == PASS


def test_a_remove_that_definitely_failed_does_not_excuse_a_loss() -> None:
    history = [op(0, "add", "0-1", 0, 10), op(0, "remove", "0-1", 20, 30, ok=False), final([])]
    assert statuses(history)["lost adds"] == "fail"


def test_resurrection_detected() -> None:
    history = [op(0, "add", "0-1", 0, 10), op(0, "remove", "0-1", 20, 30), final(["0-1"])]
    res = results(history)
    assert res["resurrections"].status == "fail" and res["resurrections"].count == 1
    a = res["resurrections"].anomalies[0]
    assert a.kind == "resurrection" and a.ops == [1] and "'0-1'" in a.explanation
    assert res["lost adds"].status == "pass" and res["phantoms"].status == "pass"
    # re-added by its owner and removed again: still every add was observed by a remove
    again = history[:2] + [op(0, "add", "0-1", 40, 50), op(0, "remove", "0-1", 60, 70), final(["0-1"])]
    assert statuses(again)["resurrections"] == "fail"


def test_presence_allowed_when_some_add_was_not_observed() -> None:
    base = [op(0, "add", "0-1", 0, 10), op(0, "remove", "0-1", 20, 30)]
    allowed = [
        op(0, "add", "0-1", 40, 50),              # re-added after the remove
        op(1, "add", "0-1", 5, 15),               # another process's add: the remove did not observe it
        op(0, "add", "0-1", 25, None, ok=None),  # an add of unknown outcome
    ]
    for extra in allowed:
        assert statuses(base + [extra, final(["0-1"])]) == PASS, extra
    # a remove that began before the add was acknowledged, or another process's, observed nothing sure
    for remove in (op(0, "remove", "0-1", 5, 30), op(1, "remove", "0-1", 20, 30),
                   op(0, "remove", "0-1", 20, None, ok=None)):
        assert statuses([base[0], remove, final(["0-1"])]) == PASS, remove


def test_phantom_detected() -> None:
    res = results([op(0, "add", "0-1", 0, 10), final(["0-1", "ghost"])])
    assert res["phantoms"].status == "fail" and res["phantoms"].count == 1
    assert "'ghost'" in res["phantoms"].anomalies[0].explanation
    assert "nobody added it" in res["phantoms"].anomalies[0].explanation
    res = results([op(0, "add", "0-1", 0, 10, ok=False), final(["0-1"])])
    assert res["phantoms"].status == "fail" and "failed definitely" in res["phantoms"].anomalies[0].explanation
    assert statuses([op(0, "add", "0-1", 0, None, ok=None), final(["0-1"])]) == PASS


def test_no_final_read_is_unknown() -> None:
    history = [op(0, "add", "0-1", 0, 10), op(0, "remove", "0-1", 20, 30)]
    assert set(statuses(history).values()) == {"unknown"}
    # a key no client touched has nothing to judge; another key's missing final read still counts
    other = [op(0, "add", "0-9", 0, 10, key="s1"), final(["0-9"], key="s1")]
    assert set(statuses(other).values()) == {"pass"}
    assert set(statuses(history + other).values()) == {"unknown"}


def test_key_checkers_and_every_modes_claims_name_them() -> None:
    names = [c.name for c in key_checkers("set-rm")]
    assert names == ["lost adds", "resurrections", "phantoms"]
    for spec in modes.specs():
        if "set-rm" not in (spec.workloads or MATRIX_WORKLOADS):
            continue
        for setting in spec.settings:
            claims = spec.claims(setting, "set-rm")
            assert {c.checker for c in claims} == {"convergence", *names}, (spec.name, setting)
            required = {c.checker for c in claims if c.required}
            assert {"convergence", "phantoms"} <= required
    lf = modes.get("leader-follower")
    assert {c.checker for c in lf.claims("sync", "set-rm") if c.required} >= {"lost adds", "resurrections"}
    assert not any(c.required for c in lf.claims("async", "set-rm") if c.checker == "resurrections")
    for name in ("multi-leader", "leaderless", "raft", "single"):
        spec = modes.get(name)
        assert all(c.required for s in spec.settings for c in spec.claims(s, "set-rm")), name


class FakeSetClient:
    """What the set-rm workload calls on a redis client, over plain Python sets."""

    def __init__(self) -> None:
        self.sets: dict[str, set[str]] = {}

    def sadd(self, key: str, member: str) -> int:
        s = self.sets.setdefault(key, set())
        n = member not in s
        s.add(member)
        return int(n)

    def srem(self, key: str, member: str) -> int:
        s = self.sets.setdefault(key, set())
        n = member in s
        s.discard(member)
        return int(n)

    def smembers(self, key: str) -> set[str]:
        return set(self.sets.get(key, set()))


def test_workload_removes_own_elements_after_their_ack_and_others_from_the_pool() -> None:
    wl = make_workload("set-rm")
    assert isinstance(wl, SetRemove)
    client: Any = FakeSetClient()
    rng = random.Random(7)
    acked: dict[str, int] = {}  # element -> the process whose add was acknowledged
    removed_own: dict[int, set[str]] = {0: set(), 1: set()}
    kinds = {"own remove": 0, "other remove": 0, "re-add": 0, "add": 0, "read": 0}
    for seq in range(2000):
        process = seq % 2
        inv = wl.next(rng, process, seq)
        assert inv.process == process
        if inv.op == "read":
            kinds["read"] += 1
        elif inv.op == "remove":
            assert inv.value in acked, "a remove names an element whose add was acknowledged"
            if inv.value.startswith(f"{process}-"):
                kinds["own remove"] += 1
                assert acked[inv.value] == process
                removed_own[process].add(inv.value)
            else:
                kinds["other remove"] += 1
        elif inv.value in acked:
            kinds["re-add"] += 1
            assert inv.value in removed_own[process], "a process re-adds only what it removed itself"
        else:
            kinds["add"] += 1
            assert inv.value == f"{process}-{seq}"
        wl.execute(client, inv)
        if inv.op == "add":
            acked[inv.value or ""] = process
    assert all(n > 10 for n in kinds.values()), kinds
    assert json.loads(wl.execute(client, Invocation("read", "s0")) or "[]") == sorted(client.sets.get("s0", []))


def test_a_failed_add_is_not_owned() -> None:
    """Only an acknowledged add makes an element the process's own (execute raises on failure)."""
    wl = make_workload("set-rm", keys=1)

    class Failing(FakeSetClient):
        def sadd(self, key: str, member: str) -> int:
            raise ConnectionError("down")

    rng = random.Random(1)
    failing: Any = Failing()
    for seq in range(50):
        inv = wl.next(rng, 0, seq)
        assert inv.op in ("add", "read")
        try:
            wl.execute(failing, inv)
        except ConnectionError:
            pass


def test_matrix_reruns_one_workload_of_one_mode(tmp_path: Path) -> None:
    rows = ["| raft | majority | kill | set | **held** | `a` |",
            "| leaderless | quorum | kill | set | **held** | `b` |",
            "| leaderless | quorum | kill | set-rm | **held** | `c` |"]
    path = tmp_path / "consistency.md"
    path.write_text(render_doc(rows, [], 8, 6, 1))
    kept, _ = kept_rows(path, "leaderless", "set-rm")
    assert kept == rows[:2]
    assert kept_rows(path, "leaderless")[0] == rows[:1]
    # rows go where a full run puts them: by mode, setting, nemesis, then workload
    mixed = ["| leaderless | one | kill | set | x | `d` |", "| leaderless | quorum | pause | set-rm | x | `e` |",
             "| leaderless | quorum | kill | set-rm | x | `c` |", "| leaderless | quorum | kill | set | x | `b` |"]
    assert [r[-4] for r in sorted(mixed, key=row_order)] == ["b", "c", "e", "d"]
