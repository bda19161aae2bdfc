"""A real job-queue library runs unmodified on replikv (issue 12): python-rq
enqueues jobs and a separate `rq worker` process runs them, on a raft
cluster, including after the leader fails and another is elected (jobs
enqueued before the failure are still run, their results still there)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster, wait_for

rq = pytest.importorskip("rq", reason="needs python-rq (the test extra installs it)")
pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _work(port: int) -> None:
    """One `rq worker --burst` process: runs every queued job, then exits."""
    run = subprocess.run([sys.executable, "-m", "rq.cli", "worker", "--burst", "--url",
                          f"redis://127.0.0.1:{port}", "--path", str(REPO), "default"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def _enqueue(port: int, n: int, start: int) -> list[Any]:
    import redis

    q = rq.Queue("default", connection=redis.Redis(port=port))
    return [q.enqueue("tests.integration.rq_jobs.add", i, 1000) for i in range(start, start + n)]


def test_rq_runs_jobs_on_raft_across_a_failover(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "c", 3, election_timeout_ms=300)
    c.config.mode = "raft"
    c.config.save(c.path)
    c.start()
    try:
        leader = c.leader()
        follower = next(n for n in c.procs if n != leader)
        first = _enqueue(c.port(follower), 5, 0)  # enqueued through a follower: forwarded
        _work(c.port(leader))
        for job in first:
            job.refresh()
            assert job.get_status() == rq.job.JobStatus.FINISHED and job.return_value() == job.args[0] + 1000
        pending = _enqueue(c.port(leader), 5, 100)  # acknowledged, not yet run, when the leader dies
        c.kill(leader)
        new_leader = wait_for(lambda: (n := c.leader()) != leader and n, 30, "a new leader")
        more = _enqueue(c.port(new_leader), 3, 200)
        _work(c.port(new_leader))
        import redis

        conn = redis.Redis(port=c.port(new_leader))
        for job in first + pending + more:
            fetched = rq.job.Job.fetch(job.id, connection=conn)
            assert fetched.get_status() == rq.job.JobStatus.FINISHED, job.id
            assert fetched.return_value() == job.args[0] + 1000
        assert rq.Queue("default", connection=conn).count == 0
    finally:
        c.close()
