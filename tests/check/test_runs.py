"""Short real runs (~12 s of workload each) of `replikv check` on real node processes.

Each asserts that the checker's verdict matches what the setting claims:
leader-follower with async acks may lose acknowledged writes on failover
(the verdict holds, and when an old leader logs that it discarded
acknowledged writes, the lost-writes checker finds losses); with sync acks no acknowledged write is
lost under kill, partition and forced failover; multi-leader (every node
takes writes) loses no counter increment and no set add, keeps set removes
by the observed-remove rule, counts what
last-writer-wins overwrote on registers, and keeps read-your-writes per
client on its node; leaderless at QUORUM loses no counter increment, and at
ONE measures stale reads and overwrites.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from replikv.check.harness import can_partition
from replikv.check.history import HistoryFile, load_history
from replikv.check.report import MAX_BYTES
from replikv.check.runner import run_check

pytestmark = pytest.mark.integration


def _acked_discarded(directory: Path) -> int:
    total = 0
    for log in directory.glob("n*.log"):
        for m in re.finditer(r"(\d+) of them had been acknowledged", log.read_text(errors="replace")):
            total += int(m.group(1))
    return total


def test_leader_follower_async_failover_losses_are_detected(tmp_path: Path) -> None:
    res = run_check(mode="leader-follower", workload="set", nemeses=["failover"], time_s=12, clients=6,
                    seed=11, setting="async", store=tmp_path)
    assert (res.directory / "history.jsonl").exists() and (res.directory / "report.html").exists()
    lost = res.result("lost writes")
    assert lost is not None and lost.status in ("pass", "fail")
    discarded = _acked_discarded(res.directory)
    if can_partition()[0]:
        assert discarded > 0, "a leader cut off by a partition keeps acking async writes: some must be lost"
        assert lost.stats.get("lost", 0) >= 1, "the checker must see the losses the old leader logged"
    assert res.exit_code == 0, res.notes
    assert res.result("convergence").status == "pass"  # type: ignore[union-attr]


@pytest.mark.skipif(not can_partition()[0], reason=can_partition()[1] or "needs root")
def test_leader_follower_sync_loses_nothing_under_kill_partition_failover(tmp_path: Path) -> None:
    res = run_check(mode="leader-follower", workload="set", nemeses=["kill", "partition", "failover"],
                    time_s=12, clients=6, seed=5, setting="sync", store=tmp_path)
    assert res.exit_code == 0, (res.verdict, [r.summary for r in res.results], res.notes)
    assert res.result("lost writes").stats["acknowledged"] > 100  # type: ignore[union-attr]
    assert any("partition" in n for n in res.notes) and any("failover" in n for n in res.notes)


@pytest.mark.skipif(not can_partition()[0], reason=can_partition()[1] or "needs root")
def test_raft_stays_linearizable_under_partition_and_kill(tmp_path: Path) -> None:
    res = run_check(mode="raft", workload="register", nemeses=["partition", "kill"], time_s=12, clients=6,
                    seed=3, setting=None, store=tmp_path)
    assert res.exit_code == 0, (res.verdict, [r.summary for r in res.results], res.notes)
    lin = res.result("linearizable")
    assert lin is not None and lin.status == "pass", lin
    assert res.result("lost writes").stats["acknowledged"] > 50  # type: ignore[union-attr]
    # the history went to disk as it happened and was checked from there
    assert isinstance(res.history, HistoryFile) and len(res.history) > 100
    assert load_history(res.directory / "history.jsonl") == list(res.history)
    assert (res.directory / "report.html").stat().st_size < MAX_BYTES
    assert any("partition" in n for n in res.notes) and any("kill" in n for n in res.notes)


@pytest.mark.skipif(not can_partition()[0], reason=can_partition()[1] or "needs root")
def test_sharded_raft_stays_linearizable_per_key_under_partition_and_kill(tmp_path: Path) -> None:
    res = run_check(mode="raft", workload="register", nemeses=["partition", "kill"], time_s=10, clients=6,
                    seed=5, setting="shards 3", store=tmp_path)
    assert res.exit_code == 0, (res.verdict, [r.summary for r in res.results], res.notes)
    lin = res.result("linearizable")
    assert lin is not None and lin.status == "pass", lin
    assert res.result("lost writes").stats["acknowledged"] > 50  # type: ignore[union-attr]
    assert res.params["setting"] == "shards 3"
    assert any("partition" in n for n in res.notes) and any("kill" in n for n in res.notes)


@pytest.mark.skipif(not can_partition()[0], reason=can_partition()[1] or "needs root")
def test_raft_multi_exec_is_serializable_under_kill_and_partition(tmp_path: Path) -> None:
    """The list-append workload (MULTI/EXEC of appends and reads over several keys)
    on one raft group: no G0, G1 or G2 cycle (check/elle.py), and enough
    transactions committed for that to mean something. Also the phases a
    run reports to the progress display."""
    phases: list[tuple[str, float | None]] = []
    res = run_check(mode="raft", workload="list-append", nemeses=["kill", "partition"], time_s=12, clients=6,
                    seed=4, setting=None, store=tmp_path, progress=lambda p, end: phases.append((p, end)))
    ser = res.result("serializable")
    # the progress display is told every phase, in order, with the workload's expected end
    names = [p.split()[0] for p, _ in phases]
    assert names == ["starting", "list-append", "healing:", "waiting", "checking"], phases
    assert phases[1][1] is not None and phases[0][1] is None
    assert res.exit_code == 0 and ser is not None, (res.verdict, [r.summary for r in res.results], res.notes)
    assert ser.status == "pass" and ser.stats["transactions"] > 200 and ser.stats["edges"] > 200


def test_raft_job_queue_loses_nothing_and_delivers_each_job(tmp_path: Path) -> None:
    """The queue workload (XADD producers, a consumer group with XREADGROUP, XAUTOCLAIM and
    XACK, consumers crashing before their XACK) on raft under kill and partition: no
    acknowledged XADD lost, every message delivered at least once, none after its XACK."""
    res = run_check(mode="raft", workload="queue", nemeses=["kill", "partition"], time_s=12, clients=6,
                    seed=7, setting=None, store=tmp_path)
    assert res.exit_code == 0, (res.verdict, [r.summary for r in res.results], res.notes)
    for name in ("lost writes", "at-least-once", "acked once"):
        assert res.result(name).status == "pass", name  # type: ignore[union-attr]
    assert res.result("lost writes").stats["acknowledged"] > 500  # type: ignore[union-attr]
    assert res.result("acked once").stats["acknowledged"] > 300  # type: ignore[union-attr]
    assert res.result("at-least-once").stats["redelivered"] > 0  # type: ignore[union-attr]  # crashes happened


# multi-leader (issue 10): every node takes writes, clients spread over all nodes (worker w on node w mod n)

@pytest.mark.skipif(not can_partition()[0], reason=can_partition()[1] or "needs root")
def test_multi_leader_counter_loses_no_increment_under_kill_and_partition(tmp_path: Path) -> None:
    """PN-counters: the final value of each counter is the number of acknowledged increments
    (plus at most the unknown ones), with increments taken by every node on both sides of
    partitions and by a node killed and restarted."""
    res = run_check(mode="multi-leader", workload="counter", nemeses=["kill", "partition"], time_s=10,
                    clients=6, seed=1, setting=None, store=tmp_path)
    assert res.exit_code == 0, (res.verdict, [r.summary for r in res.results], res.notes)
    counter = res.result("counter")
    assert counter is not None and counter.status == "pass", counter
    assert counter.stats["acknowledged"] > 100
    assert res.result("convergence").status == "pass"  # type: ignore[union-attr]
    assert any("partition" in n for n in res.notes) and any("kill" in n for n in res.notes)


def test_multi_leader_pipelined_increments_run_as_one_op_and_lose_none_under_kill(tmp_path: Path) -> None:
    """``--pipeline 8``: each client sends its INCRs 8 at a time, so the nodes take runs of them
    as one operation each (MultiLeaderRunner._write_run), counted in INFO stats; under kill (and
    partition where it can) the counters still lose no acknowledged increment, replicas converge,
    and every pipeline slot stays a sequential history process."""
    res = run_check(mode="multi-leader", workload="counter", nemeses=["kill", "partition"], time_s=10,
                    clients=4, seed=4, setting=None, store=tmp_path, pipeline=8)
    assert res.exit_code == 0, (res.verdict, [r.summary for r in res.results], res.notes)
    counter = res.result("counter")
    assert counter is not None and counter.status == "pass", counter
    assert counter.stats["acknowledged"] > 500
    assert res.result("convergence").status == "pass"  # type: ignore[union-attr]
    assert any("kill" in n for n in res.notes), res.notes
    served = [re.search(r"served (\d+) pipelined run\(s\) of (\d+) command", n) for n in res.notes]
    runs, commands = next(map(int, m.groups()) for m in served if m)
    assert runs > 20 and commands > 2 * runs, res.notes
    assert res.params["pipeline"] == 8
    calls: dict[int, set[int]] = {}
    for op in res.history:
        if op.process >= 0:
            calls.setdefault(op.call, set()).add(op.process)
    assert max(map(len, calls.values())) > 1  # ops of one pipeline: one call time, distinct processes


@pytest.mark.skipif(not can_partition()[0], reason=can_partition()[1] or "needs root")
def test_multi_leader_register_counts_lww_overwrites_and_keeps_read_your_writes(tmp_path: Path) -> None:
    """Last-writer-wins registers under partition: concurrent SETs on different nodes overwrite
    each other (counted and shown, not claimed); a client still reads its own writes on its
    node; replicas converge after heal. The mode has no CAS: the workload issues none."""
    res = run_check(mode="multi-leader", workload="register", nemeses=["partition"], time_s=10, clients=6,
                    seed=2, setting=None, store=tmp_path)
    assert res.exit_code == 0, (res.verdict, [r.summary for r in res.results], res.notes)
    lww = res.result("lww overwrites")
    assert lww is not None and lww.status in ("pass", "fail"), lww
    assert lww.stats["acknowledged_writes"] > 100
    assert lww.stats["overwritten"] == lww.count and "overwritten_by_earlier" in lww.stats
    assert lww.stats["concurrent_writes"] >= lww.stats["overwritten"]
    ryw = res.result("read-your-writes")
    assert ryw is not None and ryw.status == "pass", ryw
    assert "other_node_lww" in ryw.stats  # judged per client on its own node
    assert res.result("convergence").status == "pass"  # type: ignore[union-attr]
    assert any("no CAS" in n for n in res.notes), res.notes
    assert not any("'cas' is not offered" in n for n in res.notes), res.notes


@pytest.mark.skipif(not can_partition()[0], reason=can_partition()[1] or "needs root")
def test_multi_leader_set_loses_no_add_under_pause_and_partition(tmp_path: Path) -> None:
    """OR-sets: every acknowledged SADD, taken by whichever node the client talks to, is in the
    final set on every replica after heal."""
    res = run_check(mode="multi-leader", workload="set", nemeses=["pause", "partition"], time_s=10, clients=6,
                    seed=3, setting=None, store=tmp_path)
    assert res.exit_code == 0, (res.verdict, [r.summary for r in res.results], res.notes)
    lost = res.result("lost writes")
    assert lost is not None and lost.status == "pass", lost
    assert lost.stats["acknowledged"] > 100 and lost.stats.get("lost", 0) == 0
    assert res.result("convergence").status == "pass"  # type: ignore[union-attr]


@pytest.mark.skipif(not can_partition()[0], reason=can_partition()[1] or "needs root")
def test_multi_leader_set_removes_follow_the_observed_remove_rule_under_partition(tmp_path: Path) -> None:
    """OR-sets with removes, every node taking writes through partitions: no acknowledged SADD is
    lost unless a remove may have followed it, an element its client removed after its own
    acknowledged SADD stays removed, nothing appears that nobody added; replicas converge."""
    res = run_check(mode="multi-leader", workload="set-rm", nemeses=["partition"], time_s=6, clients=6,
                    seed=2, setting=None, store=tmp_path)
    assert res.exit_code == 0, (res.verdict, [r.summary for r in res.results], res.notes)
    for name in ("lost adds", "resurrections", "phantoms", "convergence"):
        r = res.result(name)
        assert r is not None and r.status == "pass", r
    assert res.result("lost adds").stats["judged"] > 100  # type: ignore[union-attr]
    assert res.result("resurrections").stats["judged"] > 50  # type: ignore[union-attr]
    assert any("partition" in n for n in res.notes), res.notes


def test_leaderless_quorum_counter_loses_no_increment_under_kill_and_partition(tmp_path: Path) -> None:
    """Leaderless at QUORUM/QUORUM, 5 nodes and 3 replicas per key: PN-counters coordinated by
    every node lose no acknowledged increment through kills and partitions; replicas converge
    after heal (hints, read repair, anti-entropy), each key's share equal on its 3 replicas (the
    nodes hold different shares: whole-node digests differ, which the convergence check once
    reported as divergence)."""
    res = run_check(mode="leaderless", workload="counter", nemeses=["kill", "partition"], time_s=10,
                    clients=6, seed=4, setting="quorum", store=tmp_path, nodes=5)
    assert res.exit_code == 0, (res.verdict, [r.summary for r in res.results], res.notes)
    counter = res.result("counter")
    assert counter is not None and counter.status == "pass", counter
    assert counter.stats["acknowledged"] > 100
    converged = res.result("convergence")
    assert converged is not None and converged.status == "pass", converged
    assert "parts over 5 nodes" in converged.summary, converged.summary


def test_leaderless_one_register_measures_stale_reads_and_overwrites(tmp_path: Path) -> None:
    """Leaderless at ONE/ONE under pauses: registers converge; stale reads and last-writer-wins
    overwrites are measured (counted and shown), not claimed."""
    res = run_check(mode="leaderless", workload="register", nemeses=["pause"], time_s=10, clients=6,
                    seed=5, setting="one", store=tmp_path)
    assert res.exit_code == 0, (res.verdict, [r.summary for r in res.results], res.notes)
    stale = res.result("stale reads")
    assert stale is not None and stale.status in ("pass", "fail") and stale.stats["reads"] > 100, stale
    lww = res.result("lww overwrites")
    assert lww is not None and lww.stats["acknowledged_writes"] > 100, lww
    assert res.result("convergence").status == "pass"  # type: ignore[union-attr]
