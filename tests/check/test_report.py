"""report.html renders the verdict and the anomalies, checked in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from replikv.check.checkers import FINAL_PROCESS, NEMESIS_PROCESS
from replikv.check.history import Op
from replikv.check.report import render_report
from replikv.check.runner import RunResult, claims_for, judge, run_checkers

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
