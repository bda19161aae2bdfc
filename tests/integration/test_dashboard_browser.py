"""The dashboard page in a real browser (Playwright driving Debian's chromium).

Opens the dashboard of a 3-node raft cluster, clicks kill on the leader and
checks that the page shows a new leader and the events in the timeline, then
runs the write-then-read-everywhere panel and checks the cells it shows.
Screenshots go to the test's tmp dir; with REPLIKV_DOCS_SCREENSHOT=1 the
last one is also written to docs/dashboard.png (the README's picture).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp", reason="the dashboard needs aiohttp (pip install aiohttp)")
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install playwright)")

from replikv.check.harness import Harness
from replikv.dashboard.actions import HarnessController
from replikv.dashboard.server import Dashboard, DashboardThread

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                 reason="browser tests need Debian's chromium (apt-get install chromium)")]


@pytest.fixture
def page_of_raft(tmp_path: Path) -> Iterator[tuple[Any, Harness]]:
    h = Harness(tmp_path / "c", "raft", 3, use_netns=False, election_timeout_ms=300).start()
    board = DashboardThread(Dashboard(h.config, HarnessController(h), interval_s=0.2), 0).start()
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(20_000)
                page.goto(board.url)
                yield page, h
            finally:
                browser.close()
    finally:
        board.stop()
        h.close()


def test_kill_leader_and_read_everywhere(page_of_raft: tuple[Any, Harness], tmp_path: Path) -> None:
    page, _ = page_of_raft
    expect = sync_api.expect
    expect(page.locator("#conn")).to_have_text("live")
    expect(page.locator("#leader")).to_have_text(__import__("re").compile(r"^n\d$"))
    old = page.locator("#leader").inner_text()
    expect(page.locator(f"#node-{old} .role")).to_have_text("leader")
    page.fill("#probe-value", "before")
    page.click("#probe-run")
    expect(page.locator("#probe-table td.fresh")).to_have_count(3 * 6)  # healthy: every node, every level
    page.screenshot(path=str(tmp_path / "dashboard-healthy.png"), full_page=True)

    page.click(f"button[data-action=kill][data-node={old}]")
    expect(page.locator("#message")).to_have_text(f"{old} killed (SIGKILL)")
    expect(page.locator("#leader")).not_to_have_text(old)
    expect(page.locator("#leader")).to_have_text(__import__("re").compile(r"^n\d$"))
    new = page.locator("#leader").inner_text()
    assert new != old
    expect(page.locator(f"#node-{old} .role")).to_have_text("down")
    expect(page.locator(f"#node-{new} .role")).to_have_text("leader")
    timeline = page.locator("#events")
    expect(timeline).to_contain_text(f"{old} killed (SIGKILL)")
    expect(timeline).to_contain_text(f"{old} is down")
    expect(timeline).to_contain_text(f" -> {new} (term")

    page.fill("#probe-value", "after")
    page.click("#probe-run")
    table = page.locator("#probe-table")
    expect(table).to_be_visible()
    expect(page.locator("#probe-write")).to_contain_text(f"SET demo after via {new}")
    # the killed node refuses every level (connection refused); the new leader answers every level fresh
    expect(page.locator(f"#probe-table td.refused[data-node={old}]")).to_have_count(6)
    expect(page.locator(f"#probe-table td.fresh[data-node={new}]")).to_have_count(6)
    expect(page.locator(f"#probe-table td[data-node={new}][data-level=linearizable]")).to_contain_text("after")
    page.screenshot(path=str(tmp_path / "dashboard-after-kill.png"), full_page=True)
    if os.environ.get("REPLIKV_DOCS_SCREENSHOT") == "1":
        page.screenshot(path=str(DOCS), full_page=True)
    assert (tmp_path / "dashboard-after-kill.png").stat().st_size > 10_000
