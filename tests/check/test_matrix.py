"""The matrix document: every claim listed, skipped modes say why."""

from __future__ import annotations

from pathlib import Path

from replikv.check.matrix import claims_section, kept_rows, render_doc
from replikv.check.runner import claims_for, judge
from replikv.check.checkers import CheckResult


def test_claims_cover_every_leader_follower_setting() -> None:
    text = "\n".join(claims_section())
    for setting in ("async", "semi-sync 1", "sync"):
        assert f"| leader-follower | {setting} | set | lost writes |" in text
    assert "| raft | majority | register | linearizable | yes |" in text


def test_judge_required_and_measured() -> None:
    claims = claims_for("leader-follower", "async", "set")
    lost = CheckResult("lost writes", "fail", "3 lost", count=3)
    conv = CheckResult("convergence", "pass", "equal")
    assert judge(claims, [conv, lost]) == (0, "held")  # async may lose
    assert judge(claims_for("leader-follower", "sync", "set"), [conv, lost]) == (1, "refuted")
    assert judge(claims, [CheckResult("convergence", "unknown", "?"), lost]) == (2, "undecided")


def test_render_doc_lists_skipped() -> None:
    doc = render_doc(["| leader-follower | sync | kill | set | **held** | `x` |"], ["- `raft`: not built"], 8, 6, 1)
    assert "## Not run" in doc and "`raft`: not built" in doc and "**held**" in doc


def test_rerunning_one_mode_keeps_the_other_modes_rows(tmp_path: Path) -> None:
    doc = render_doc(["| raft | majority | kill | register | **held** | `a` |",
                      "| leaderless | quorum | kill | counter | **held** | `b` |"],
                     ["- `leaderless` / `partition`: needs root", "- `raft` / `clock`: no faketime"], 8, 6, 1)
    path = tmp_path / "consistency.md"
    path.write_text(doc)
    rows, skipped = kept_rows(path, "leaderless")
    assert rows == ["| raft | majority | kill | register | **held** | `a` |"]
    assert skipped == ["- `raft` / `clock`: no faketime"]
    assert kept_rows(tmp_path / "absent.md", "raft") == ([], [])
