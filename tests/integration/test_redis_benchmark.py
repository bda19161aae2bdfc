"""redis-benchmark's whole default suite runs to the end against replikv (issue 12):
every command it sends exists and answers as redis-benchmark expects."""

from __future__ import annotations

import csv
import shutil
import subprocess
from typing import Any

import pytest

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("redis-benchmark") is None,
                                 reason="needs redis-benchmark (Debian redis-tools; .ci/run installs it)")]

DEFAULT_SUITE = ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP", "RPOP", "SADD",
                 "HSET", "SPOP", "ZADD", "ZPOPMIN", "LPUSH (needed to benchmark LRANGE)",
                 "LRANGE_100 (first 100 elements)", "LRANGE_300 (first 300 elements)",
                 "LRANGE_500 (first 500 elements)", "LRANGE_600 (first 600 elements)", "MSET (10 keys)"]


@pytest.mark.parametrize("mode,nodes", [("leader-follower", 3), ("raft", 3)])
def test_the_default_suite_runs_to_the_end(make_cluster: Any, mode: str, nodes: int) -> None:
    c = make_cluster(nodes, start=False)
    c.config.mode = mode
    c.config.save(c.path)
    c.start()
    run = subprocess.run(["redis-benchmark", "-p", str(c.port(c.leader())), "-n", "300", "-c", "4",
                          "--csv"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "Error" not in run.stdout + run.stderr
    rows = list(csv.DictReader(line for line in run.stdout.splitlines() if line.startswith('"')))
    assert [row["test"] for row in rows] == DEFAULT_SUITE
    assert all(float(row["rps"]) > 0 for row in rows)
