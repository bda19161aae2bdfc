"""Prometheus ``/metrics`` on real nodes of every mode (runtime/metrics.py, issue 16): the
figures move with the traffic sent (command counters by exactly the commands sent, the
commit index with the writes, fsyncs and their latency histogram with ``--fsync always``
writes, a paused follower's lag on its leader), the text parses as Prometheus's format,
and anything but ``GET /metrics`` is refused. The Grafana board names only metrics a node
exports."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.cluster import Cluster, free_ports, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _cluster(root: Path, mode: str, n: int = 3, **options: object) -> Cluster:
    c = Cluster(root, n, **options)
    c.config.mode = mode
    ports = free_ports(n)
    c.config.nodes = {nid: dataclasses.replace(a, metrics_port=ports[i])
                      for i, (nid, a) in enumerate(c.config.nodes.items())}
    c.config.save(c.path)
    return c


@pytest.fixture
def make(tmp_path: Path) -> Iterator[object]:
    made: list[Cluster] = []

    def build(mode: str, n: int = 3, **options: object) -> Cluster:
        c = _cluster(tmp_path / f"c{len(made)}", mode, n, **options)
        made.append(c)
        c.start()
        return c

    yield build
    for c in made:
        c.close()


def scrape(c: Cluster, node: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the node's /metrics: (name, sorted labels) -> value."""
    port = c.config.nodes[node].metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"{key} exported twice"
            out[key] = s.value
    return out


def value(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def leader_of(c: Cluster) -> str:
    return wait_for(lambda: next((n for n in c.config.nodes if c.replication(n)["role"] == "master"), None),
                    20, "a leader")


def test_leader_follower_counts_commands_and_shows_a_paused_followers_lag(make) -> None:  # type: ignore[no-untyped-def]
    c = make("leader-follower", fsync="always")
    before = scrape(c, "n1")
    r = c.client("n1")
    for i in range(25):
        r.set(f"k{i}", i)
    for i in range(7):
        r.get(f"k{i}")
    after = scrape(c, "n1")
    assert value(after, "replikv_commands_total", command="set") - value(before, "replikv_commands_total",
                                                                         command="set") == 25
    assert value(after, "replikv_commands_total", command="get") - value(before, "replikv_commands_total",
                                                                         command="get") == 7
    assert value(after, "replikv_wal_fsyncs_total") > value(before, "replikv_wal_fsyncs_total")
    fsyncs = value(after, "replikv_wal_fsync_duration_seconds_count")
    assert fsyncs > value(before, "replikv_wal_fsync_duration_seconds_count")
    assert value(after, "replikv_wal_fsync_duration_seconds_bucket", le="+Inf") == fsyncs
    writes = value(after, "replikv_command_duration_seconds_by_class_count", **{"class": "write"})
    assert writes >= 25 and value(after, "replikv_command_duration_seconds_by_class_count",
                                  **{"class": "read"}) >= 7
    assert value(after, "replikv_is_leader") == 1 and value(after, "replikv_keys") == 25
    assert value(after, "replikv_node_info", node="n1", mode="leader-follower", role="master",
                 version=next(k[1][3][1] for k in after if k[0] == "replikv_node_info")) == 1
    # a paused follower: the leader sees its lag grow, then go back to 0 after SIGCONT
    os.kill(c.procs["n2"].pid, signal.SIGSTOP)
    try:
        for i in range(30):
            r.set(f"lag{i}", i)
        wait_for(lambda: value(scrape(c, "n1"), "replikv_peer_lag_entries", peer="n2") > 0, 10,
                 "n2's lag on n1")
        wait_for(lambda: value(scrape(c, "n1"), "replikv_peer_lag_seconds", peer="n2") > 0, 10,
                 "n2's lag in seconds on n1")
    finally:
        os.kill(c.procs["n2"].pid, signal.SIGCONT)
    wait_for(lambda: value(scrape(c, "n1"), "replikv_peer_lag_entries", peer="n2") == 0, 20, "n2 to catch up")
    follower = scrape(c, "n3")
    assert value(follower, "replikv_is_leader") == 0 and value(follower, "replikv_keys") == 55


def test_raft_exports_term_and_commit_index_that_move_with_writes(make) -> None:  # type: ignore[no-untyped-def]
    c = make("raft", election_timeout_ms=300)
    leader = leader_of(c)
    before = scrape(c, leader)
    assert value(before, "replikv_term") >= 1 and value(before, "replikv_is_leader") == 1
    assert value(before, "replikv_elections_won_total") >= 1 and value(before, "replikv_term_changes_total") >= 1
    r = c.client(leader)
    for i in range(10):
        r.set(f"k{i}", i)
    after = scrape(c, leader)
    assert value(after, "replikv_commit_index") >= value(before, "replikv_commit_index") + 10
    assert value(after, "replikv_applied_index") == value(after, "replikv_commit_index")
    followers = [n for n in c.config.nodes if n != leader]
    assert {k[1][0][1] for k in after if k[0] == "replikv_peer_lag_entries"} == set(followers)
    # a paused follower: its lag in entries and in seconds on the leader, gone after SIGCONT
    paused = followers[0]
    os.kill(c.procs[paused].pid, signal.SIGSTOP)
    try:
        r.set("while-paused", 1)
        wait_for(lambda: value(scrape(c, leader), "replikv_peer_lag_seconds", peer=paused) > 0.05, 10,
                 f"{paused}'s lag in seconds")
        assert value(scrape(c, leader), "replikv_peer_lag_entries", peer=paused) >= 1
    finally:
        os.kill(c.procs[paused].pid, signal.SIGCONT)
    wait_for(lambda: value(scrape(c, leader), "replikv_peer_lag_seconds", peer=paused) == 0, 20,
             f"{paused} to catch up")
    # the lock service's counters: a grant and a release, as every replica applies them
    token = r.execute_command("LOCK", "job", "5000")
    assert r.execute_command("UNLOCK", "job", token) == 1
    for node in c.config.nodes:
        wait_for(lambda: value(scrape(c, node), "replikv_locks_released_total") == 1, 10, f"{node}'s lock counts")
        m = scrape(c, node)
        assert value(m, "replikv_locks_granted_total") == 1 and value(m, "replikv_locks_expired_total") == 0


@pytest.mark.parametrize("mode", ["multi-leader", "leaderless"])
def test_every_node_of_a_leaderless_mode_takes_writes_and_reports_its_counters(make, mode: str) -> None:  # type: ignore[no-untyped-def]
    c = make(mode)
    before = scrape(c, "n2")
    r = c.client("n2")
    for i in range(12):
        r.set(f"k{i}", i)
    after = scrape(c, "n2")
    assert value(after, "replikv_is_leader") == 1
    assert value(after, "replikv_commands_total", command="set") - value(before, "replikv_commands_total",
                                                                         command="set") == 12
    mode_counter = "replikv_ops_local_total" if mode == "multi-leader" else "replikv_writes_coordinated_total"
    assert value(after, mode_counter) - value(before, mode_counter) >= 12
    if mode == "leaderless":  # anti-entropy runs on its own: its rounds count up
        wait_for(lambda: value(scrape(c, "n2"), "replikv_ae_rounds_total") > value(after, "replikv_ae_rounds_total"),
                 20, "an anti-entropy round")
        assert ("replikv_hints_held", ()) in after and ("replikv_read_repairs_total", ()) in after


def test_multi_leader_counts_the_conflicts_it_merges(make) -> None:  # type: ignore[no-untyped-def]
    """Two nodes write one key while neither has the other's write yet (1 s links): each,
    receiving the other's, holds two concurrent values (LWW picks one) and counts a conflict."""
    c = make("multi-leader", peer_delay_ms=1000)
    c.client("n1").set("k", "from-n1")
    c.client("n2").set("k", "from-n2")
    for node in ("n1", "n2"):
        wait_for(lambda: value(scrape(c, node), "replikv_conflicts_merged_total") >= 1, 10,
                 f"{node} to merge the concurrent write")
    assert value(scrape(c, "n1"), "replikv_ops_received_total") >= 1


def test_sharded_raft_exports_each_group(make) -> None:  # type: ignore[no-untyped-def]
    c = make("raft", shards=3, election_timeout_ms=300)

    def groups() -> dict[str, float] | None:
        led: dict[str, float] = {}
        for node in c.config.nodes:
            m = scrape(c, node)
            for (name, labels), v in m.items():
                if name == "replikv_group_is_leader" and v == 1:
                    led[dict(labels)["group"]] = v
        return led if len(led) == 3 else None

    wait_for(groups, 20, "a leader for each of the 3 groups")
    m = scrape(c, "n1")
    assert {dict(k[1])["group"] for k in m if k[0] == "replikv_group_term"} == {"0", "1", "2"}
    assert value(m, "replikv_groups_hosted") == 3


def test_anything_but_get_metrics_is_refused(make) -> None:  # type: ignore[no-untyped-def]
    c = make("leader-follower", n=1)
    port = c.config.nodes["n1"].metrics_port
    for path, code in (("/", 404), ("/metrics/../x", 404)):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)
        assert e.value.code == code
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 405
    for garbage in (b"\x00\xff garbage\r\n\r\n", b"GET /metrics\r\n\r\n", b"A" * 9000):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(garbage)
            assert s.recv(100).split(b" ")[1] in (b"400", b"431")
    assert c.client("n1").ping()  # the node is unharmed


def test_the_grafana_board_names_only_exported_metrics(make) -> None:  # type: ignore[no-untyped-def]
    board = json.loads((ROOT / "deploy" / "grafana" / "replikv.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 8
    names = set()
    for mode in ("raft", "leader-follower"):
        c = make(mode, election_timeout_ms=300) if mode == "raft" else make(mode)
        leader = leader_of(c)
        c.client(leader).set("k", "v")
        for node in c.config.nodes:  # followers export what a leader does not (their staleness)
            names |= {k[0] for k in scrape(c, node)}
    for expr in exprs:
        for metric in re.findall(r"\breplikv_[a-z0-9_]+", expr):
            assert metric in names, f"{metric} in {expr!r} is not exported"
