"""report.html renders the verdict and the anomalies (checked in headless Chromium), and stays
under MAX_BYTES however long the run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from replikv.check.history import FINAL_PROCESS, NEMESIS_PROCESS, HistoryFile, Op, by_key, dump_history
from replikv.check.report import COLUMNS, MAX_BYTES, Summary, render_report
from replikv.check.runner import RunResult, claims_for, judge, run_checkers
from replikv.check.synth import register_history

MS = 1_000_000
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking"]


def _result(tmp_path: Path) -> RunResult:
    # A lost write (k's "b" rolled back to "a" after a failover) and a stale read.
    history = [
        Op(0, "write", "k", "a", None, True, 0, 10 * MS),
        Op(NEMESIS_PROCESS, "nemesis", "failover", "leader n1 cut off; FAILOVER TO n2 FORCE", None, True,
           15 * MS, 60 * MS),
        Op(1, "write", "k", "b", None, True, 20 * MS, 30 * MS),
        Op(2, "read", "k", "a", None, True, 40 * MS, 41 * MS),
        Op(FINAL_PROCESS, "final", "k", json.dumps("a"), None, True, 100 * MS, 101 * MS),
    ]
    claims = claims_for("leader-follower", "sync", "register")
    results = run_checkers(history, "register", {"n1": "d", "n2": "d"})
    code, verdict = judge(claims, results)
    return RunResult(code, verdict, tmp_path, results, claims, history, ["a note"],
                     {"mode": "leader-follower", "setting": "sync", "workload": "register",
                      "nemesis": ["failover"], "time_s": 1, "clients": 3, "seed": 7})


def test_sync_claim_refuted_by_lost_write(tmp_path: Path) -> None:
    res = _result(tmp_path)
    assert res.exit_code == 1 and res.verdict == "refuted"
    assert res.result("lost writes").status == "fail"  # type: ignore[union-attr]
    assert res.result("stale reads").count == 1  # type: ignore[union-attr]


def test_report_is_self_contained(tmp_path: Path) -> None:
    page = render_report(_result(tmp_path))
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "<script" not in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium (Debian package chromium) "
                    "is not installed")
@pytest.mark.integration  # starts chromium
def test_report_renders_anomalies_in_chromium(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_report(_result(tmp_path)))
    out = subprocess.run(["chromium", *CHROMIUM_FLAGS, "--dump-dom", path.as_uri()], capture_output=True,
                         text=True, timeout=60)
    dom = out.stdout
    assert "id=\"verdict\"" in dom and ">refuted<" in dom
    assert dom.count('class="anomaly"') >= 2
    assert "lost write" in dom and "stale read" in dom and "was 10.0 ms stale" in dom
    assert 'class="anomalous"' in dom and 'class="nemesis"' in dom
    shot = tmp_path / "report.png"
    subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--screenshot={shot}", "--window-size=1200,900",
                    path.as_uri()], capture_output=True, timeout=60)
    assert shot.exists() and shot.stat().st_size > 5000


def _synthetic_run(tmp_path: Path, n_ops: int, clients: int, **anomalies: int) -> RunResult:
    path = tmp_path / f"history-{n_ops}.jsonl"
    dump_history(register_history(n_ops, clients=clients, unknown=0.05, failed=0.1, seed=n_ops,
                                  **anomalies), path)
    history = HistoryFile(path)
    summary = Summary(clients)  # built during the checkers' pass, as a run does
    results = run_checkers(history, "register", {"n1": "d", "n2": "d"}, summary=summary)
    claims = claims_for("raft", "majority", "register")
    code, verdict = judge(claims, results)
    return RunResult(code, verdict, tmp_path, results, claims, history, ["a note"],
                     {"mode": "raft", "setting": "majority", "workload": "register", "nemesis": ["kill"],
                      "time_s": 600, "clients": clients, "seed": 1}, summary)


def test_report_size_is_bounded_and_anomalies_stay_at_full_detail(tmp_path: Path) -> None:
    # 60 clients (the most rows drawn), 15% of ops failed or unknown (cells of every colour
    # alternate), and anomalies: the worst case for the summarized timeline
    res = _synthetic_run(tmp_path, 200_000, clients=60, stale=30, lost=30)
    assert res.verdict == "refuted"
    page = render_report(res)
    assert len(page.encode()) < MAX_BYTES, len(page.encode())
    assert "too many to draw one by one" in page
    # every op of every kept anomaly is drawn on its own, red, with the anomaly in its tooltip
    involved = {i for r in res.results for a in r.anomalies for i in a.ops if res.history[i].process >= 0}
    assert 0 < len(involved) == page.count("<rect class='anomalous'")
    assert page.count("stale read:") >= 1
    # and a short history is still drawn op by op
    small = _synthetic_run(tmp_path, 2_000, clients=5)
    small_page = render_report(small)
    assert "too many to draw" not in small_page
    assert small_page.count("<rect x=") >= 2_000


def test_summary_keeps_fixed_size_and_exact_counts() -> None:
    ops = register_history(50_000, clients=8, seed=2)
    s = Summary.of(ops, clients=8)
    fed = Summary(8, origin=s.origin)
    assert len(list(fed.feed(by_key(ops)))) == 10
    assert (fed.ops, fed.ok, fed.other, fed.rows, fed.latency) == (s.ops, s.ok, s.other, s.rows, s.latency)
    client_ops = [o for o in ops if o.process >= 0]
    assert s.ops == len(client_ops) and s.detail is None and s.origin == min(o.call for o in ops[:1])
    assert len(s.ok) == len(s.other) == COLUMNS and len(s.rows) == 8
    assert sum(s.ok) == sum(1 for o in client_ops if o.ok is True)
    assert sum(s.other) == len(client_ops) - sum(s.ok)
    assert sum(c[2] for cells in s.rows.values() for c in cells) == sum(1 for o in client_ops if o.ok is None)
    assert s.used_columns() > COLUMNS // 2  # columns widened as the run grew, and stay well used


def test_a_report_of_long_transactions_stays_bounded(tmp_path: Path) -> None:
    """list-append transactions carry their reads (lists that grow all run): 200
    anomalies of 3,000 such transactions, each drawn with its value, stay under the bound."""
    from replikv.check.elle import txn_value
    from replikv.check.history import Op

    ops, listed = [], []
    for i in range(3000):
        listed.append(f"{i % 7}-{i}-0")
        mops = [("append", "l0", listed[-1]), ("r", "l0", list(reversed(listed)) if i % 2 else list(listed))]
        ops.append(Op(i % 7, "txn", "txn", txn_value(mops), None, True, i * 1000, i * 1000 + 500))
    path = tmp_path / "history.jsonl"
    dump_history(ops, path)
    history = HistoryFile(path)
    summary = Summary(7)
    results = run_checkers(history, "list-append", {"n1": "d"}, summary=summary)
    claims = claims_for("raft", "majority", "list-append")
    code, verdict = judge(claims, results)
    res = RunResult(code, verdict, tmp_path, results, claims, history, [],
                    {"mode": "raft", "setting": "majority", "workload": "list-append", "nemesis": [],
                     "time_s": 3, "clients": 7, "seed": 1}, summary)
    assert verdict == "refuted" and res.result("serializable").count >= 200  # type: ignore[union-attr]
    page = render_report(res)
    assert len(page.encode()) < MAX_BYTES, len(page.encode())
