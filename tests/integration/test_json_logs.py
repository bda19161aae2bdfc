"""``--log-format json``: a node's log is one JSON object per line (issue 16, for log collectors)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from replikv.config import ConfigError, NodeOptions
from replikv.runtime.base import JsonLogFormatter
from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration


def test_a_node_logs_json_lines(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "c", 1, log_format="json")
    try:
        c.start()
        assert c.client("n1").set("k", "v")
        c.stop("n1")

        def lines() -> list[dict[str, object]]:
            return [json.loads(line) for line in c.log_path("n1").read_text().splitlines() if line.strip()]

        logged = wait_for(lambda: (got := lines()) and any("stopping" in str(o["message"]) for o in got) and got,
                          10, "the node's stopping line")
        assert all(set(o) >= {"time", "level", "node", "logger", "message"} for o in logged)
        assert {o["node"] for o in logged} == {"n1"}
        assert any("serving" in str(o["message"]) and o["level"] == "info" for o in logged)
        assert all(str(o["time"]).endswith("Z") for o in logged)
    finally:
        c.close()


def test_the_formatter_carries_the_exception_and_the_option_is_checked() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("replikv.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    out = json.loads(JsonLogFormatter("n7").format(record))
    assert (out["node"], out["level"], out["message"]) == ("n7", "error", "failed here")
    assert "ValueError: boom" in out["exception"]
    with pytest.raises(ConfigError, match="log_format"):
        NodeOptions(log_format="xml").validate()
